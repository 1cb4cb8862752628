//! Claims: a consumer's resources held on one host (Placement's allocations), and why a
//! claim can be refused.
//!
//! A claim is all-or-nothing across its classes, a consumer holds at most one claim, and
//! releasing is idempotent. The daemon persists claims (they serialize to JSON) and
//! replays them with [`crate::Cluster::restore`] on start.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::class::Resources;
use crate::host::HostId;
use crate::inventory::ClassShortfall;

/// Who holds a claim: a server's id, or a migration's id while a resize keeps the old
/// flavor's resources on the source host (as Nova does with migration allocations).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConsumerId(pub String);

impl fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ConsumerId {
    fn from(id: &str) -> Self {
        Self(id.to_string())
    }
}

impl From<String> for ConsumerId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// Resources held by one consumer on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The holder (server or migration id).
    pub consumer_id: ConsumerId,
    /// Where the resources are held.
    pub host_id: HostId,
    /// How much of each class.
    pub amounts: Resources,
}

/// Why a claim, release or resize step was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimError {
    /// No host with this id in the cluster.
    #[error("no host {host_id}")]
    UnknownHost {
        /// The id asked for.
        host_id: HostId,
    },
    /// Each consumer holds at most one claim; a second is a bug or a replayed request.
    #[error("consumer {consumer_id} already holds a claim on host {host_id}")]
    AlreadyClaimed {
        /// The consumer.
        consumer_id: ConsumerId,
        /// Where it already holds resources.
        host_id: HostId,
    },
    /// At least one class does not fit; every failing class is listed.
    #[error("host {host_name}: {}", join_shortfalls(.shortfalls))]
    DoesNotFit {
        /// The host.
        host_id: HostId,
        /// Its name, for the message.
        host_name: String,
        /// One entry per class that does not fit.
        shortfalls: Vec<ClassShortfall>,
    },
    /// The consumer holds no claim (resize of an unknown server, revert of an unknown
    /// migration).
    #[error("consumer {consumer_id} holds no claim")]
    UnknownConsumer {
        /// The consumer.
        consumer_id: ConsumerId,
    },
    /// The claim fits, but with it the site could no longer take in the servers of one
    /// host that fails (the request asked to keep the failure reserve).
    #[error("host {host_id}: {shortfall}")]
    BreaksFailureReserve {
        /// The host the claim was tried on.
        host_id: HostId,
        /// Which host's servers would then be stranded.
        shortfall: Box<crate::scheduler::ReserveShortfall>,
    },
}

/// "a; b; c" — several failing classes on one line.
pub(crate) fn join_shortfalls(shortfalls: &[ClassShortfall]) -> String {
    shortfalls
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ResourceClass;
    use crate::inventory::Shortfall;

    #[test]
    fn claims_round_trip_through_json() {
        let claim = Claim {
            consumer_id: "srv-1".into(),
            host_id: "box1".into(),
            amounts: Resources::compute(2, 2048, 20),
        };
        let json = serde_json::to_string(&claim).unwrap();
        assert_eq!(
            json,
            r#"{"consumer_id":"srv-1","host_id":"box1","amounts":{"VCPU":2,"MEMORY_MB":2048,"DISK_GB":20}}"#
        );
        assert_eq!(serde_json::from_str::<Claim>(&json).unwrap(), claim);
    }

    #[test]
    fn does_not_fit_lists_every_class() {
        let err = ClaimError::DoesNotFit {
            host_id: "h1".into(),
            host_name: "box1".into(),
            shortfalls: vec![
                ClassShortfall {
                    class: ResourceClass::Vcpu,
                    amount: 4,
                    shortfall: Shortfall::AboveMaxUnit { max_unit: 2 },
                },
                ClassShortfall {
                    class: ResourceClass::DiskGb,
                    amount: 1,
                    shortfall: Shortfall::NoInventory,
                },
            ],
        };
        let text = err.to_string();
        assert!(text.starts_with("host box1: VCPU: needs 4 VCPU"), "{text}");
        assert!(text.contains("; DISK_GB: needs 1 GB disk"), "{text}");
    }
}
