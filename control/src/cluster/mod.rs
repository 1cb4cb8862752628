//! A site of several boxes (docs/cluster.md): this box's membership in the cluster kept in
//! etcd, its liveness on a lease, and the view of every box that Nova's os-services and
//! os-hypervisors show. One box runs without any of it (`[cluster]` absent).
//!
//! Keys live under `/outpost/v1/` ([`keys`]); every value is JSON with a `schema` field.

pub mod etcd;
pub mod evacuation;
pub mod fence;
pub mod fencing;
pub mod keys;
#[doc(hidden)]
pub mod loopback;
pub mod membership;
pub mod overlay;
pub mod records;
pub mod replicator;
pub mod settings;
pub mod site;
pub mod store;
pub mod watch;

pub use membership::{BoxStatus, Membership};
pub use settings::{ClusterSection, ClusterSettings};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach etcd at {endpoints}: {source}")]
    Connect {
        endpoints: String,
        source: etcd_client::Error,
    },
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the cluster holds a record this outpostd cannot read at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "box {name:?} is not a member of the cluster and has no valid join token: create one \
         on a member with `outpost cluster token create --box {name}` and set \
         [cluster] join_token (tokens expire)"
    )]
    NotInvited { name: String },
    #[error("no box named {0:?} in the cluster")]
    NoSuchBox(String),
    #[error("box {0:?} is this box: remove it from another member")]
    RemoveSelf(String),
    #[error("box {0:?} is still alive: stop its outpostd (or power it off) before removing it")]
    StillAlive(String),
    #[error("the record of box {0:?} changed while it was being updated; try again")]
    Conflict(String),
    #[error("cannot start the thread the etcd stores run on: {0}")]
    StoreThread(std::io::Error),
    #[error("cannot start the fence's thread: {0}")]
    FenceThread(std::io::Error),
    #[error(
        "cannot open the watchdog {path:?}: {source} (load softdog with soft_margin under \
         the lease's 10 s TTL, or remove [cluster] watchdog)"
    )]
    Watchdog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot keep the lease id in {path:?}: {source}")]
    LeaseFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
