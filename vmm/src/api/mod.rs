//! The Firecracker-compatible REST API over a unix socket.
//!
//! [`serve`] binds the socket (mode 0600) and runs hyper on a current-thread tokio runtime on
//! its own thread, `api_server`. Each request is parsed ([`routes`]), handed to the shared
//! [`Controller`] on a blocking worker (InstanceStart loads a kernel and must not stall the
//! runtime) and rendered ([`render`]). The thread owns the listener and its connections, and
//! the timer that pauses the guest when its deadline (`PUT /vm/deadline`) lapses; it stops
//! when the [`ApiServerHandle`] is stopped or dropped, which also removes the socket.

mod render;
pub mod routes;

use crate::controller::{Controller, VmmAction, VmmData};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use render::{Fault, HttpResponse};
use routes::RequestError;
use std::convert::Infallible;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Largest request body accepted; Firecracker's own default limit is 51200 bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an oversized body is read and dropped so the client can see the 413.
const MAX_DRAIN_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("API socket {path:?} already exists: remove it or choose another --api-sock")]
    SocketExists { path: PathBuf },
    #[error("cannot bind the API socket {path:?}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot restrict the API socket {path:?} to mode 0600: {source}")]
    Permissions { path: PathBuf, source: io::Error },
    #[error("cannot set up the API server: {0}")]
    Setup(io::Error),
}

/// A running API server. Stopping or dropping it ends the server thread and removes the socket.
pub struct ApiServerHandle {
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServerHandle {
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Stops serving, waits for the server thread and removes the socket.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            // The thread may already be gone (its runtime failed); nothing to tell then.
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the API server thread panicked");
            }
        }
        match std::fs::remove_file(&self.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove the API socket {:?}: {e}", self.socket),
        }
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Binds `socket` and serves the API for `controller` until the handle is stopped.
/// Fails, leaving nothing behind, if the socket path already exists (as Firecracker does).
pub fn serve(
    socket: PathBuf,
    controller: Arc<Mutex<Controller>>,
) -> Result<ApiServerHandle, ApiError> {
    if socket.symlink_metadata().is_ok() {
        return Err(ApiError::SocketExists { path: socket });
    }
    let listener =
        std::os::unix::net::UnixListener::bind(&socket).map_err(|source| ApiError::Bind {
            path: socket.clone(),
            source,
        })?;
    // From here on the handle owns the socket file, so every early return removes it.
    let mut handle = ApiServerHandle {
        socket,
        shutdown: None,
        thread: None,
    };
    std::fs::set_permissions(&handle.socket, std::fs::Permissions::from_mode(0o600)).map_err(
        |source| ApiError::Permissions {
            path: handle.socket.clone(),
            source,
        },
    )?;
    listener.set_nonblocking(true).map_err(ApiError::Setup)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ApiError::Setup)?;
    let (tx, rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("api_server".into())
        .spawn(move || {
            // Until a start over the API, this thread may build the VM (seccomp.rs).
            crate::seccomp::install_or_exit(crate::seccomp::ThreadKind::Api);
            runtime.block_on(accept_loop(listener, controller, rx));
            // An InstanceStart still loading a kernel must not keep the process from exiting.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(ApiError::Setup)?;
    handle.shutdown = Some(tx);
    handle.thread = Some(thread);
    tracing::info!("API server listening on {:?}", handle.socket);
    Ok(handle)
}

async fn accept_loop(
    listener: std::os::unix::net::UnixListener,
    controller: Arc<Mutex<Controller>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("API server cannot use its socket: {e}");
            return;
        }
    };
    let deadline_moved = Arc::new(Notify::new());
    tokio::spawn(enforce_deadline(controller.clone(), deadline_moved.clone()));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (controller, moved) = (controller.clone(), deadline_moved.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            handle_request(req, controller.clone(), moved.clone())
                        });
                        if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                            tracing::debug!("API connection ended with an error: {e}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning on the error.
                    tracing::warn!("API server cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Sleeps until the guest's deadline and pauses it then, unless a new deadline arrives
/// first (`moved` is notified after each `PUT /vm/deadline`). A tokio timer on this thread's
/// runtime is an epoll timeout: it needs no syscall beyond the API thread's filter.
async fn enforce_deadline(controller: Arc<Mutex<Controller>>, moved: Arc<Notify>) {
    let lock = || controller.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let deadline = lock().deadline();
        match deadline {
            None => moved.notified().await,
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {
                    lock().enforce_deadline(std::time::Instant::now());
                }
                () = moved.notified() => {}
            },
        }
    }
}

async fn handle_request(
    req: Request<Incoming>,
    controller: Arc<Mutex<Controller>>,
    deadline_moved: Arc<Notify>,
) -> Result<HttpResponse, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match respond(req, controller, &deadline_moved).await {
        Ok(data) => render::success(&data),
        Err(fault) => {
            tracing::info!("API {method} {path}: {fault}");
            render::fault(&fault)
        }
    };
    tracing::debug!("API {method} {path} -> {}", response.status());
    Ok(response)
}

/// parse → controller → data: the whole of a request's handling.
async fn respond(
    req: Request<Incoming>,
    controller: Arc<Mutex<Controller>>,
    deadline_moved: &Notify,
) -> Result<VmmData, Fault> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = read_body(req).await?;
    let action = routes::parse(&method, &path, &body)?;
    let moves_deadline = matches!(action, VmmAction::PutDeadline(_));
    // Handled on this thread, not a blocking pool's: every action is short (a start is built
    // by the main thread, see controller::Starter) and a pool would need thread creation,
    // which this thread's seccomp filter does not allow.
    // A poisoned lock means an earlier request panicked; handle() commits state only after
    // each step succeeds, so the controller is still consistent.
    let mut controller = controller.lock().unwrap_or_else(PoisonError::into_inner);
    let result = controller.handle(action).map_err(Fault::from);
    if moves_deadline && result.is_ok() {
        deadline_moved.notify_one();
    }
    if controller.is_started() {
        // The guest runs: this thread gives up checking files for new configuration.
        narrow_after_start().map_err(|e| Fault::Internal(e.to_string()))?;
    }
    result
}

/// Stacks the `Started` filter on the API thread, once.
fn narrow_after_start() -> Result<(), crate::seccomp::SeccompError> {
    thread_local! {
        static NARROWED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if NARROWED.with(|n| n.replace(true)) {
        return Ok(());
    }
    crate::seccomp::install(crate::seccomp::ThreadKind::Started)
}

async fn read_body(req: Request<Incoming>) -> Result<Vec<u8>, RequestError> {
    let too_large = || RequestError::BodyTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let ceiling = (MAX_BODY_BYTES + MAX_DRAIN_BYTES) as u64;
    if declared.is_some_and(|len| len > ceiling) {
        return Err(too_large());
    }
    // An oversized body is still read (up to MAX_DRAIN_BYTES more) and dropped: closing a unix
    // socket with unread data makes the client's read fail with ECONNRESET, and it would
    // never see the 413.
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RequestError::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= MAX_BODY_BYTES {
                bytes.extend_from_slice(&data);
            } else if total as u64 > ceiling {
                return Err(too_large());
            }
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}
