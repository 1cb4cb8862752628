//! The serial console's websocket (`GET /serial-console?token=...` with an upgrade), what
//! nova-serialproxy is to Nova: the one-time token from a remote-console request
//! ([`crate::compute::servers::console`]) is spent, the server's console socket is
//! connected, and bytes flow both ways as binary frames until either side closes. Served on
//! both listeners; the token is the only credential, as the URL is all a client gets.

use super::body::ResponseBody;
use super::request::parse_query;
use super::server::HttpResponse;
use super::ApiState;
use crate::compute::servers::console::{self as domain, ConsoleError};
use futures_util::{SinkExt, StreamExt};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Where the websocket is served.
pub const PATH: &str = "/serial-console";

/// The subprotocol websockify-style clients (noVNC's, nova's `novaconsole`) ask for.
const BINARY_PROTOCOL: &str = "binary";

/// A ping this often keeps a quiet console's connection inside the listener's stall
/// timeout (server::IO_STALL_TIMEOUT): the client's pong is traffic.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// The largest frame a client may send: keystrokes and pastes, not files.
const MAX_FRAME: usize = 64 * 1024;

/// The URL a client is handed: the API's base with ws/wss for http/https.
pub fn url(base_url: &str, token: &str) -> String {
    let ws = match base_url.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => format!("ws://{base_url}"),
    };
    format!("{ws}{PATH}?token={token}")
}

fn plain(status: StatusCode, message: &str) -> HttpResponse {
    let mut r = Response::new(ResponseBody::full(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, wanted: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(wanted)))
    })
}

/// The websocket handshake's key, when the request is a well-formed RFC 6455 upgrade.
fn websocket_key(req: &Request<Incoming>) -> Result<&HeaderValue, &'static str> {
    let h = req.headers();
    if req.method() != hyper::Method::GET
        || !has_token(h, header::UPGRADE, "websocket")
        || !has_token(h, header::CONNECTION, "upgrade")
    {
        return Err("this is the serial console's websocket: connect with a websocket client");
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("only websocket version 13 (RFC 6455) is served");
    }
    h.get(header::SEC_WEBSOCKET_KEY)
        .ok_or("the websocket handshake lacks Sec-WebSocket-Key")
}

/// Answers a request for [`PATH`]: 101 and a bridge to the console, or why not.
pub async fn upgrade(mut req: Request<Incoming>, state: Arc<ApiState>) -> HttpResponse {
    let key = match websocket_key(&req) {
        Ok(k) => derive_accept_key(k.as_bytes()),
        Err(why) => return plain(StatusCode::BAD_REQUEST, why),
    };
    let token = parse_query(req.uri().query().unwrap_or(""))
        .ok()
        .and_then(|q| q.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v));
    let Some(token) = token else {
        return plain(
            StatusCode::UNAUTHORIZED,
            "no token: ask for a console URL (openstack console url show --serial SERVER)",
        );
    };
    // The server's record may be in SQLite or etcd: off the runtime's threads.
    let fleet = state.fleet.clone();
    let opened = tokio::task::spawn_blocking(move || domain::open_serial(&fleet, &token)).await;
    let socket_path = match opened {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let status = match e {
                ConsoleError::InvalidToken => StatusCode::UNAUTHORIZED,
                ConsoleError::ServerGone(_) => StatusCode::NOT_FOUND,
                ConsoleError::NotReady(_) | ConsoleError::ElsewhereRun { .. } => {
                    StatusCode::CONFLICT
                }
            };
            return plain(status, &e.to_string());
        }
        Err(e) => {
            tracing::error!("the console token check failed: {e}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "the token check failed");
        }
    };
    // Connected before the 101, so a monitor that is gone is an error the client can read.
    let guest = match UnixStream::connect(&socket_path).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot connect to the console at {socket_path:?}: {e}");
            return plain(
                StatusCode::CONFLICT,
                "the server's console is not reachable now (is its guest starting or stopping?)",
            );
        }
    };
    let binary = has_token(
        req.headers(),
        header::SEC_WEBSOCKET_PROTOCOL,
        BINARY_PROTOCOL,
    );
    let upgrading = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrading.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_frame_size(Some(MAX_FRAME))
                    .max_message_size(Some(MAX_FRAME));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                bridge(ws, guest).await;
            }
            Err(e) => tracing::debug!("the console websocket's upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(ResponseBody::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if binary {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(BINARY_PROTOCOL),
        );
    }
    r
}

/// Copies the guest's output into binary frames and the client's frames (binary or text)
/// into the console, until either side ends.
async fn bridge<S>(ws: WebSocketStream<S>, guest: UnixStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tracing::info!("serial console attached");
    let (mut to_client, mut from_client) = ws.split();
    let (mut from_guest, mut to_guest) = guest.into_split();
    let outbound = async {
        let mut buf = vec![0u8; 4096];
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        loop {
            tokio::select! {
                read = from_guest.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let frame = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if to_client.send(frame).await.is_err() {
                            break;
                        }
                    }
                },
                _ = keepalive.tick() => {
                    if to_client.send(Message::Ping(Bytes::new())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.close().await;
    };
    let inbound = async {
        while let Some(Ok(msg)) = from_client.next().await {
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                // Pings are answered by tungstenite itself; pongs are only traffic.
                _ => continue,
            };
            if to_guest.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = outbound => {}
        () = inbound => {}
    }
    tracing::info!("serial console detached");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_follows_the_apis_scheme() {
        assert_eq!(
            url("http://10.0.0.1:8774", "abc"),
            "ws://10.0.0.1:8774/serial-console?token=abc"
        );
        assert_eq!(
            url("https://edge.example", "t"),
            "wss://edge.example/serial-console?token=t"
        );
    }
}
