//! The metadata service's listeners: one TCP socket per network on this box, bound to
//! 169.254.169.254:80 and to the network's bridge (`SO_BINDTODEVICE`), so the socket a
//! connection arrives on names its network, even where two networks use the same
//! addresses. Kept in step with the networks the host agent wired (its `networks` watch);
//! each answers GET with [`documents::lookup`] for the guest [`MetadataService`] finds
//! behind the connection's source.

use super::documents;
use super::MetadataService;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use outpost_netdev::METADATA_ADDR;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Nova's and EC2's port.
const PORT: u16 = 80;
/// Connections open at once per network: a guest that opens many stalls only its network's
/// metadata, never the API.
const MAX_CONNECTIONS: usize = 64;
/// How long a guest has to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a listener that could not bind is tried again without a change of networks.
const RETRY_PERIOD: Duration = Duration::from_secs(30);

/// A listener bound to `bridge`'s metadata address.
fn bind(bridge: &str) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Restarts find the old connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    // One socket per bridge on the same address and port: the kernel only lets them share it
    // when each is bound to its own device, and delivers each connection to the socket of
    // the device it arrived on.
    socket.bind_device(Some(bridge.as_bytes()))?;
    socket.bind(SocketAddr::from((METADATA_ADDR, PORT)))?;
    socket.listen(128)
}

/// Serves every network in `networks` until the runtime stops.
pub async fn run(service: Arc<MetadataService>, mut networks: watch::Receiver<BTreeSet<String>>) {
    let mut serving: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    loop {
        let wanted = networks.borrow_and_update().clone();
        serving.retain(|id, task| {
            let keep = wanted.contains(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for id in &wanted {
            if serving.contains_key(id) {
                continue;
            }
            let bridge = outpost_netdev::bridge_name(id);
            match bind(&bridge) {
                Ok(listener) => {
                    tracing::info!(network = %id, %bridge, "metadata service listening");
                    let task = tokio::spawn(accept(service.clone(), id.clone(), listener));
                    serving.insert(id.clone(), task);
                }
                // The bridge may not hold the address yet (its network has no IPv4 address
                // on this box): tried again at the next change or period.
                Err(e) => tracing::debug!(network = %id, %bridge, "metadata: cannot listen: {e}"),
            }
        }
        tokio::select! {
            changed = networks.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY_PERIOD) => {}
        }
    }
}

async fn accept(service: Arc<MetadataService>, network: String, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let network: Arc<str> = network.into();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(%network, "metadata: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: the guest has too many open already
        };
        let (service, network) = (service.clone(), network.clone());
        let source = peer.ip();
        tokio::spawn(async move {
            let handler =
                service_fn(move |req| answer(service.clone(), network.clone(), source, req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), handler);
            if let Err(e) = conn.await {
                tracing::debug!("metadata connection from {source}: {e}");
            }
            drop(slot);
        });
    }
}

async fn answer(
    service: Arc<MetadataService>,
    network: Arc<str>,
    source: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"));
    }
    // Only the path is read: headers (Nova's X-Instance-ID and the like) are the guest's
    // word and name nothing here.
    let path = req.uri().path().to_owned();
    let found = tokio::task::spawn_blocking(move || {
        let instance = service.instance_for(&network, source)?;
        Ok::<_, super::MetadataError>(documents::lookup(&instance, &path))
    })
    .await;
    Ok(match found {
        Ok(Ok(Some(doc))) => {
            let kind = if doc.json {
                "application/json"
            } else {
                "text/plain; charset=UTF-8"
            };
            Response::builder()
                .header("Content-Type", kind)
                .body(Full::new(Bytes::from(doc.body)))
                .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "error"))
        }
        Ok(Ok(None)) => plain(StatusCode::NOT_FOUND, "Not Found"),
        // A guest decides how often it is refused: not logged above debug, so it cannot
        // flood the host's log.
        Ok(Err(e @ super::MetadataError::Refused(_))) => {
            tracing::debug!("metadata request from {source}: {e}");
            plain(StatusCode::NOT_FOUND, "Not Found")
        }
        Ok(Err(e)) => {
            tracing::warn!("metadata request from {source}: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Err(e) => {
            tracing::error!("metadata lookup failed: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}
