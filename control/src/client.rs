//! A small blocking HTTP client for outpostd's API, over the unix socket (the `outpost` CLI)
//! or TCP (tests, scripts): hyper's HTTP/1 client on a current-thread runtime, one connection
//! per request. [`error_message`] pulls the human message out of any service's error shape.
//! Image data goes both ways without being held in memory: [`Client::upload`] streams a
//! reader as the body, [`Client::download`] writes the reply's body as it arrives.

use crate::tls::CertPin;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
    /// TLS to a listener whose certificate is exactly this one (another box of the site).
    TlsPinned(SocketAddr, CertPin),
}

impl Endpoint {
    /// How to reach another box's API at `addr`: pinned TLS when its record names its
    /// certificate, plain TCP when it serves plain HTTP (a loopback listener, on a test rig).
    /// A pin that does not read is refused, never taken for "no TLS".
    pub fn of_box(addr: SocketAddr, cert_sha256: Option<&str>) -> Result<Endpoint, String> {
        match cert_sha256 {
            None => Ok(Endpoint::Tcp(addr)),
            Some(hex) => CertPin::from_hex(hex)
                .map(|pin| Endpoint::TlsPinned(addr, pin))
                .ok_or_else(|| {
                    format!("the box's certificate fingerprint {hex:?} is not SHA-256 hex")
                }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to outpostd at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("TLS with outpostd at {0} failed: {1}")]
    Tls(String, String),
    #[error("HTTP error talking to outpostd: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("cannot start the client runtime: {0}")]
    Runtime(std::io::Error),
    #[error("outpostd answered with something that is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("cannot write the downloaded data: {0}")]
    Write(std::io::Error),
}

/// A byte stream to outpostd over either transport.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

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
        let mut req = self.builder(method, path, headers);
        let payload = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload))?;
        self.runtime
            .block_on(async { collect(self.connect_and_send(req).await?).await })
    }

    /// Sends `len` bytes from `data` as the body (`application/octet-stream`), calling
    /// `progress` with the count sent so far. A reader that ends early fails the request.
    pub fn upload(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        data: Box<dyn Read + Send>,
        len: u64,
        progress: Box<dyn FnMut(u64) + Send>,
    ) -> Result<ApiResponse, ClientError> {
        let req = self
            .builder(method, path, headers)
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
            .body(ReaderBody {
                data,
                remaining: len,
                sent: 0,
                progress,
            })?;
        self.runtime
            .block_on(async { collect(self.connect_and_send(req).await?).await })
    }

    /// GETs `path` and writes a successful reply's body to `out` as it arrives; the returned
    /// response's `body` is empty then. An error reply is returned whole, nothing written.
    pub fn download(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        out: &mut dyn Write,
    ) -> Result<ApiResponse, ClientError> {
        let req = self
            .builder(Method::GET, path, headers)
            .body(Full::new(Bytes::new()))?;
        self.runtime.block_on(async {
            let resp = self.connect_and_send(req).await?;
            if !resp.status().is_success() {
                return collect(resp).await;
            }
            let (parts, mut body) = resp.into_parts();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    out.write_all(&data).map_err(ClientError::Write)?;
                }
            }
            Ok(ApiResponse {
                status: parts.status,
                headers: parts.headers,
                body: Bytes::new(),
            })
        })
    }

    fn builder(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> hyper::http::request::Builder {
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost".to_owned(),
            Endpoint::Tcp(a) | Endpoint::TlsPinned(a, _) => a.to_string(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::ACCEPT, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    }

    /// Runs `f` on the client's runtime (for [`Client::connect`]'s users).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A bare connection to outpostd, for a protocol other than a request and its reply
    /// (the serial console's websocket); every request goes over one, too.
    pub async fn connect(&self) -> Result<Box<dyn Connection>, ClientError> {
        match &self.endpoint {
            Endpoint::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => Ok(Box::new(s)),
                Err(source) => Err(ClientError::Connect {
                    endpoint: format!("{path:?}"),
                    source,
                }),
            },
            Endpoint::Tcp(addr) => Ok(Box::new(tcp(addr).await?)),
            Endpoint::TlsPinned(addr, pin) => {
                let connector = crate::tls::pinned_client(*pin)
                    .map_err(|e| ClientError::Tls(addr.to_string(), e.to_string()))?;
                let s = connector
                    .connect(crate::tls::server_name(*addr), tcp(addr).await?)
                    .await
                    .map_err(|e| ClientError::Tls(addr.to_string(), e.to_string()))?;
                Ok(Box::new(s))
            }
        }
    }

    async fn connect_and_send<B>(
        &self,
        req: Request<B>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        send(self.connect().await?, req).await
    }
}

async fn tcp(addr: &SocketAddr) -> Result<tokio::net::TcpStream, ClientError> {
    tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect {
            endpoint: addr.to_string(),
            source,
        })
}

/// Sends `req` on `stream`; the connection is driven by a task that ends with it.
async fn send<S, B>(
    stream: S,
    req: Request<B>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

async fn collect(resp: hyper::Response<hyper::body::Incoming>) -> Result<ApiResponse, ClientError> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(ApiResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A request body read from a blocking reader. Reading in `poll_frame` blocks the client's
/// (current-thread) runtime, which has nothing else to do meanwhile.
struct ReaderBody {
    data: Box<dyn Read + Send>,
    remaining: u64,
    sent: u64,
    progress: Box<dyn FnMut(u64) + Send>,
}

/// Bytes per frame of an upload.
const UPLOAD_CHUNK: usize = 256 * 1024;

impl Body for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(UPLOAD_CHUNK);
        let mut buf = vec![0u8; want];
        let n = loop {
            match this.data.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        Poll::Ready(Some(match n {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the data ended {} bytes short", this.remaining),
            )),
            Ok(n) => {
                buf.truncate(n);
                this.remaining -= n as u64;
                this.sent += n as u64;
                (this.progress)(this.sent);
                Ok(Frame::data(Bytes::from(buf)))
            }
            Err(e) => Err(e),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
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
