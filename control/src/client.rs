//! A small blocking HTTP client for outpostd's API, over the unix socket (the `outpost` CLI)
//! or TCP (tests, scripts): hyper's HTTP/1 client on a current-thread runtime, one connection
//! per request. [`error_message`] pulls the human message out of any service's error shape.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to outpostd at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("HTTP error talking to outpostd: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("cannot start the client runtime: {0}")]
    Runtime(std::io::Error),
    #[error("outpostd answered with something that is not JSON: {0}")]
    NotJson(serde_json::Error),
}

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(ClientError::NotJson)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The service's own message for an error reply (any OpenStack shape), else the body.
    pub fn error_message(&self) -> String {
        error_message(&self.body)
    }
}

pub struct Client {
    endpoint: Endpoint,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Result<Client, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        Ok(Client { endpoint, runtime })
    }

    /// Sends one request; `body` is sent as JSON.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost".to_owned(),
            Endpoint::Tcp(a) => a.to_string(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::ACCEPT, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let payload = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload))?;
        self.runtime.block_on(async {
            match &self.endpoint {
                Endpoint::Unix(path) => {
                    let s = tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(|source| ClientError::Connect {
                            endpoint: format!("{path:?}"),
                            source,
                        })?;
                    send(s, req).await
                }
                Endpoint::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|source| ClientError::Connect {
                            endpoint: addr.to_string(),
                            source,
                        })?;
                    send(s, req).await
                }
            }
        })
    }
}

async fn send<S>(stream: S, req: Request<Full<Bytes>>) -> Result<ApiResponse, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    driver.abort();
    Ok(ApiResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The message of an OpenStack error body: Nova/Cinder `{"<fault>": {"message"}}`, Keystone
/// `{"error": {"message"}}`, Neutron `{"NeutronError": {"message"}}`, or Glance's plain text
/// (its middle paragraph). Falls back to the body itself.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        let found = map
            .values()
            .find_map(|v| v.get("message").and_then(Value::as_str));
        if let Some(m) = found {
            return m.to_owned();
        }
    }
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    match paragraphs.as_slice() {
        [status, message, ..] if status.chars().take(3).all(|c| c.is_ascii_digit()) => {
            (*message).to_owned()
        }
        _ => text.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_every_shape() {
        let nova = br#"{"itemNotFound": {"code": 404, "message": "Flavor x could not be found."}}"#;
        assert_eq!(error_message(nova), "Flavor x could not be found.");
        let ks = br#"{"error": {"code": 401, "title": "Unauthorized", "message": "no"}}"#;
        assert_eq!(error_message(ks), "no");
        let neutron =
            br#"{"NeutronError": {"type": "HTTPNotFound", "message": "gone", "detail": ""}}"#;
        assert_eq!(error_message(neutron), "gone");
        assert_eq!(
            error_message(b"404 Not Found\n\nNo image found with ID x\n\n   "),
            "No image found with ID x"
        );
        assert_eq!(error_message(b"plain trouble\n"), "plain trouble");
    }
}
