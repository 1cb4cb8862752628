//! Serving the API with hyper on the unix socket and, when configured, a TCP listener. Both
//! accept loops run on one tokio runtime; each request's body is read (bounded) and handed
//! to [`super::handle`] on the blocking pool, except on routes that stream their body (image
//! uploads), whose handler reads it as it arrives ([`super::body`]). [`serve`] returns once `shutdown` resolves,
//! after the listeners are closed and in-flight requests have finished (bounded by
//! [`DRAIN_TIMEOUT`]).

use super::body::{ResponseBody, UploadReader};
use super::routes::BodyKind;
use super::{auth, routes, Transport};
use super::{fault, handle_streaming, ApiState, Fault, RawRequest, ReplyBody, ServiceKind};
use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;

/// Largest request body read into memory: JSON bodies are small. Routes that stream their
/// body (image uploads) are not bound by it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client has to send a request's head, counted from the connection's start or
/// the end of its previous request: an idle connection is closed after this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read of the body or a write of the answer may stall (a client that stops
/// sending its upload or reading its download) before the connection is closed.
pub const IO_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once on each listener; beyond, a new connection is closed at once.
/// The unix socket has its own, so the box's operator always gets in.
pub const MAX_TCP_CONNECTIONS: usize = 4096;
pub const MAX_UNIX_CONNECTIONS: usize = 256;

pub type HttpResponse = Response<ResponseBody>;

/// Serves until `shutdown` resolves, then stops accepting and drains. The TCP listener's
/// connections speak TLS when `tls` is given ([`crate::tls`]).
pub async fn serve(
    state: Arc<ApiState>,
    unix: UnixListener,
    tcp: Option<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    // hyper-util's GracefulShutdown watches no HTTP/1 connection that may be upgraded (the
    // serial console's websocket): the stop is broadcast here instead, each connection ends
    // after its request in flight, and the drain waits for every slot to come back.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let unix_slots = Arc::new(Semaphore::new(MAX_UNIX_CONNECTIONS));
    let tcp_slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = unix.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(slot) = admit(&unix_slots, Transport::Unix) {
                        connection(stop.clone(), stream, state.clone(), Transport::Unix, None, slot);
                    }
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = accept_tcp(tcp.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    if let Some(slot) = admit(&tcp_slots, Transport::Tcp) {
                        let peer = Some(peer.ip());
                        let stop = stop.clone();
                        match &tls {
                            None => connection(stop, stream, state.clone(), Transport::Tcp, peer, slot),
                            Some(tls) => {
                                tokio::spawn(handshake(tls.clone(), stop, stream, state.clone(), peer, slot));
                            }
                        }
                    }
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }
    // Closing the listeners refuses new connections while the old ones finish.
    drop(unix);
    drop(tcp);
    let open = (MAX_UNIX_CONNECTIONS - unix_slots.available_permits())
        + (MAX_TCP_CONNECTIONS - tcp_slots.available_permits());
    tracing::info!("shutting down: waiting for {open} open connection(s)");
    let _ = stop_tx.send(true);
    let drained = async {
        let unix = unix_slots.acquire_many(MAX_UNIX_CONNECTIONS as u32).await;
        let tcp = tcp_slots.acquire_many(MAX_TCP_CONNECTIONS as u32).await;
        (unix, tcp)
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// A connection's place among the listener's; None (and the connection dropped, closing it)
/// when every place is taken.
fn admit(slots: &Arc<Semaphore>, t: Transport) -> Option<OwnedSemaphorePermit> {
    /// Connections closed for want of a place, since the start.
    static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let slot = slots.clone().try_acquire_owned().ok();
    if slot.is_none() {
        let n = REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        // A flood of connections must not become a flood of log lines: the 1st, 2nd, 4th...
        if n.is_power_of_two() {
            tracing::warn!("{t:?}: too many open connections; {n} new ones closed so far");
        }
    }
    slot
}

async fn accept_tcp(
    tcp: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match tcp {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_failed(e: std::io::Error) {
    // E.g. out of file descriptors: back off instead of spinning on the error.
    tracing::warn!("cannot accept a connection: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The TLS handshake of a TCP connection, bounded like a request's head (a client that opens
/// a connection and says nothing costs its place for that long, no more), then its requests.
async fn handshake(
    tls: tokio_rustls::TlsAcceptor,
    stop: Stop,
    stream: tokio::net::TcpStream,
    state: Arc<ApiState>,
    peer: Option<IpAddr>,
    slot: OwnedSemaphorePermit,
) {
    match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => connection(stop, stream, state, Transport::Tcp, peer, slot),
        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer:?} failed: {e}"),
        Err(_) => tracing::debug!("TLS handshake with {peer:?} timed out"),
    }
}

fn connection<S>(
    stop: Stop,
    stream: S,
    state: Arc<ApiState>,
    t: Transport,
    peer: Option<IpAddr>,
    slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut stream = TimeoutStream::new(stream);
    stream.set_read_timeout(Some(IO_STALL_TIMEOUT));
    stream.set_write_timeout(Some(IO_STALL_TIMEOUT));
    let service = service_fn(move |req| respond(req, state.clone(), t, peer));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(Box::pin(stream)), service)
        // The serial console's websocket takes its connection over (api::console).
        .with_upgrades();
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            () = stopped(stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!("connection ended with an error: {e}");
        }
        drop(slot);
    });
}

/// Set when the server stops (see [`serve`]).
type Stop = tokio::sync::watch::Receiver<bool>;

/// Resolves once the server stops (or is gone).
async fn stopped(mut stop: Stop) {
    // The flag is copied out before any await: the borrow holds the channel's lock.
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    state: Arc<ApiState>,
    transport: Transport,
    peer: Option<IpAddr>,
) -> Result<HttpResponse, Infallible> {
    if req.uri().path() == super::console::PATH {
        let reply = super::console::upgrade(req, state).await;
        tracing::info!(
            "{transport:?} GET {} -> {}",
            super::console::PATH,
            reply.status().as_u16()
        );
        return Ok(reply);
    }
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // On TCP the token is checked before any of the body is read or a worker is given to
    // the request: an unauthenticated client costs a header parse and a token lookup.
    let caller = if transport == Transport::Tcp && state.router.needs_caller(&parts.method, &target)
    {
        let checking = state.clone();
        let headers = parts.headers.clone();
        let checked =
            tokio::task::spawn_blocking(move || auth::authenticate(&checking, transport, &headers))
                .await;
        match checked {
            Ok(Ok(ctx)) => Some(ctx),
            Ok(Err(fault)) => {
                let service = ServiceKind::of_path(parts.uri.path());
                tracing::info!(
                    "{transport:?} {} {target} -> {}",
                    parts.method,
                    fault.status.as_u16()
                );
                return Ok(to_http(routes::fault_reply(&state, service, &fault)));
            }
            Err(e) => {
                return Ok(finish(
                    Err(e),
                    transport,
                    &parts.method,
                    &target,
                    parts.uri.path(),
                ))
            }
        }
    } else {
        None
    };
    if state.router.body_kind(&parts.method, &target) == BodyKind::Streamed {
        let runtime = tokio::runtime::Handle::current();
        let raw = RawRequest {
            method: parts.method.clone(),
            target: target.clone(),
            headers: parts.headers,
            body: Vec::new(),
            peer,
            caller,
        };
        // The reader is made on the blocking thread: its drop may block on the runtime.
        let reply = tokio::task::spawn_blocking(move || {
            let upload: super::request::UploadBody =
                Box::new(UploadReader::new(body, runtime, declared));
            handle_streaming(&state, transport, raw, Some(upload))
        })
        .await;
        return Ok(finish(
            reply,
            transport,
            &parts.method,
            &target,
            parts.uri.path(),
        ));
    }
    // A declared length over the limit is refused before any of the body is read.
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        let fault = Fault::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        let service = ServiceKind::of_path(parts.uri.path());
        return Ok(to_http(fault::render(service, &fault)));
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            let (status, msg) = if too_large {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            } else {
                (StatusCode::BAD_REQUEST, "cannot read the request body")
            };
            tracing::debug!("{} {target}: {msg}: {e}", parts.method);
            let service = ServiceKind::of_path(parts.uri.path());
            return Ok(to_http(fault::render(service, &Fault::new(status, msg))));
        }
    };
    let method = parts.method.clone();
    let raw = RawRequest {
        method: parts.method,
        target: target.clone(),
        headers: parts.headers,
        body,
        peer,
        caller,
    };
    let reply =
        tokio::task::spawn_blocking(move || handle_streaming(&state, transport, raw, None)).await;
    Ok(finish(reply, transport, &method, &target, parts.uri.path()))
}

/// Logs the outcome of a request's blocking task and turns it into the HTTP response.
fn finish(
    reply: Result<super::Reply, tokio::task::JoinError>,
    transport: Transport,
    method: &hyper::Method,
    target: &str,
    path: &str,
) -> HttpResponse {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{method} {target}: the request's worker failed: {e}");
            let service = ServiceKind::of_path(path);
            let fault = Fault::internal("the request's worker failed");
            return to_http(fault::render(service, &fault));
        }
    };
    tracing::info!(
        "{transport:?} {method} {target} -> {}",
        reply.status.as_u16()
    );
    to_http(reply)
}

fn to_http(reply: super::Reply) -> HttpResponse {
    let (content_type, body) = match reply.body {
        ReplyBody::Empty => (None, ResponseBody::full(Bytes::new())),
        ReplyBody::Json(v) => (
            Some("application/json"),
            ResponseBody::full(Bytes::from(v.to_string())),
        ),
        ReplyBody::Text(t) => (
            Some("text/plain; charset=UTF-8"),
            ResponseBody::full(Bytes::from(t)),
        ),
        ReplyBody::File(f) => (Some("application/octet-stream"), ResponseBody::file(f)),
    };
    let mut r = Response::new(body);
    *r.status_mut() = reply.status;
    let headers = r.headers_mut();
    if let Some(ct) = content_type {
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ct),
        );
    }
    for (name, value) in reply.headers {
        match (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.insert(n, v);
            }
            _ => tracing::warn!("dropping a reply header that is not valid HTTP: {name}"),
        }
    }
    r
}
