//! The connection to etcd: one client per endpoint, this box's own member first, moving to
//! the next endpoint when one stops answering. (A single client balanced over every endpoint
//! keeps sending to a member that lost power until its requests time out; a box must keep
//! serving while any member of the quorum answers.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::Mutex;

use super::ClusterError;

/// How long one request may take before the next endpoint is tried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    current: Mutex<Current>,
}

struct Current {
    /// The endpoint in use and its client.
    client: Option<(usize, Client)>,
    /// Where the next connection attempt starts.
    start: usize,
}

impl Etcd {
    /// `endpoints` in order of preference (this box's own member first).
    pub async fn connect(endpoints: Vec<String>) -> Result<Etcd, ClusterError> {
        let etcd = Etcd {
            inner: Arc::new(Inner {
                endpoints,
                current: Mutex::new(Current {
                    client: None,
                    start: 0,
                }),
            }),
        };
        etcd.client().await?;
        Ok(etcd)
    }

    /// The client in use, connecting (from the current endpoint on) when there is none.
    pub async fn client(&self) -> Result<(usize, Client), ClusterError> {
        let mut current = self.inner.current.lock().await;
        if let Some((i, c)) = current.client.as_ref() {
            return Ok((*i, c.clone()));
        }
        let n = self.inner.endpoints.len();
        let mut last = None;
        for k in 0..n {
            let i = (current.start + k) % n;
            let endpoint = &self.inner.endpoints[i];
            let options = ConnectOptions::new()
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(REQUEST_TIMEOUT)
                .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
            match Client::connect([endpoint.as_str()], Some(options)).await {
                Ok(c) => {
                    current.client = Some((i, c.clone()));
                    return Ok((i, c));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ClusterError::Connect {
            endpoints: self.inner.endpoints.join(","),
            source: last.expect("at least one endpoint was tried"),
        })
    }

    /// Forgets client `i` after it failed, so the next call starts from the next endpoint.
    pub async fn failed(&self, i: usize) {
        let mut current = self.inner.current.lock().await;
        if current.client.as_ref().is_some_and(|(j, _)| *j == i) {
            current.client = None;
            current.start = (i + 1) % self.inner.endpoints.len().max(1);
        }
    }

    /// Runs `op` on a client, trying the next endpoint when one does not answer (each
    /// endpoint once). Only for operations that are safe to repeat: reads, and writes
    /// guarded by compare clauses.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.inner.endpoints.len() {
            let (i, client) = self.client().await?;
            match op(client).await {
                Ok(v) => return Ok(v),
                Err(e) if unavailable(&e) => {
                    tracing::warn!(
                        "etcd at {} does not answer ({e}); trying the next member",
                        self.inner.endpoints[i]
                    );
                    self.failed(i).await;
                    last = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(
            || ClusterError::Connect {
                endpoints: self.inner.endpoints.join(","),
                source: etcd_client::Error::InvalidArgs("no endpoint".into()),
            },
            ClusterError::Etcd,
        ))
    }
}

/// Whether an error says the member is unreachable (rather than that the request is wrong).
pub fn unavailable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        // gRPC codes (grpc/doc/statuscodes.md): CANCELLED 1, UNKNOWN 2, DEADLINE_EXCEEDED 4,
        // UNAVAILABLE 14.
        E::GRpcStatus(s) => matches!(s.code() as i32, 1 | 2 | 4 | 14),
        _ => false,
    }
}
