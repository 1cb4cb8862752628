//! Resizing a server's claim: hold the old and the new amounts at once, then confirm (drop
//! the old) or revert (drop the new).
//!
//! This is Nova's migration-allocation scheme: when a resize starts, the server's claim on
//! the source host is handed to the migration's id, and the server claims the new amounts
//! on the destination (which may be the same host). Until the resize ends both are held, so
//! a revert can never find the old room taken. On the same host the new claim must fit
//! beside the old one, as in Nova.

use serde::{Deserialize, Serialize};

use crate::claim::{Claim, ClaimError, ConsumerId};
use crate::class::Resources;
use crate::cluster::Cluster;
use crate::host::HostId;

/// A resize in progress. Persist it with the claims: it says which claim to drop on
/// confirm and which to give back on revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    /// The migration, which now holds the old amounts.
    pub migration_id: ConsumerId,
    /// The old amounts on the source host (held by the migration).
    pub source: Claim,
    /// The new amounts on the destination host (held by the server).
    pub dest: Claim,
}

impl Cluster {
    /// Starts a resize of `consumer_id` to `new_amounts` on `dest_host`, atomically: either
    /// the old claim moves to `migration_id` and the new one is taken, or nothing changes.
    pub fn begin_resize(
        &mut self,
        consumer_id: &ConsumerId,
        migration_id: &ConsumerId,
        dest_host: &HostId,
        new_amounts: &Resources,
    ) -> Result<Resize, ClaimError> {
        let old = self
            .claim_of(consumer_id)
            .ok_or_else(|| ClaimError::UnknownConsumer {
                consumer_id: consumer_id.clone(),
            })?;
        if let Some(holder) = self.holder(migration_id) {
            return Err(ClaimError::AlreadyClaimed {
                consumer_id: migration_id.clone(),
                host_id: holder.clone(),
            });
        }
        if self.host(dest_host).is_none() {
            return Err(ClaimError::UnknownHost {
                host_id: dest_host.clone(),
            });
        }
        self.hand_over(&old.host_id, consumer_id, migration_id);
        match self.claim(dest_host, consumer_id, new_amounts) {
            Ok(dest) => Ok(Resize {
                migration_id: migration_id.clone(),
                source: Claim {
                    consumer_id: migration_id.clone(),
                    ..old
                },
                dest,
            }),
            Err(err) => {
                self.hand_over(&old.host_id, migration_id, consumer_id);
                Err(err)
            }
        }
    }

    /// Confirms a resize: the old amounts held by the migration are released. Idempotent,
    /// like [`Cluster::release`]; returns the released claim the first time.
    pub fn confirm_resize(&mut self, migration_id: &ConsumerId) -> Option<Claim> {
        self.release(migration_id)
    }

    /// Reverts a resize: the server's new claim is released and the old amounts go back
    /// from the migration to the server. Returns the server's restored claim; refused (and
    /// nothing changes) when the migration holds nothing, e.g. after a confirm or an
    /// earlier revert.
    pub fn revert_resize(
        &mut self,
        consumer_id: &ConsumerId,
        migration_id: &ConsumerId,
    ) -> Result<Claim, ClaimError> {
        let old = self
            .claim_of(migration_id)
            .ok_or_else(|| ClaimError::UnknownConsumer {
                consumer_id: migration_id.clone(),
            })?;
        self.release(consumer_id);
        self.hand_over(&old.host_id, migration_id, consumer_id);
        Ok(Claim {
            consumer_id: consumer_id.clone(),
            ..old
        })
    }

    /// Moves a claim between consumers on one host. Callers have checked that `from` holds
    /// a claim there and `to` holds none anywhere, so this cannot fail.
    fn hand_over(&mut self, host_id: &HostId, from: &ConsumerId, to: &ConsumerId) {
        let moved = self
            .host_entry(host_id)
            .is_some_and(|host| host.rename_allocation(from, to));
        debug_assert!(
            moved,
            "hand_over: {from} holds a claim on {host_id} and {to} none"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ResourceClass;
    use crate::host::Host;
    use crate::inventory::Inventory;

    fn host(id: &str, vcpus: u64, ram: u64) -> Host {
        Host::new(id, id)
            .with_inventory(ResourceClass::Vcpu, Inventory::new(vcpus))
            .unwrap()
            .with_inventory(ResourceClass::MemoryMb, Inventory::new(ram))
            .unwrap()
    }

    fn flavor(vcpus: u64, ram: u64) -> Resources {
        Resources::new()
            .with(ResourceClass::Vcpu, vcpus)
            .with(ResourceClass::MemoryMb, ram)
    }

    fn used_ram(cluster: &Cluster, host: &str) -> u64 {
        cluster
            .host(&host.into())
            .unwrap()
            .usage()
            .get(&ResourceClass::MemoryMb)
    }

    #[test]
    fn same_host_resize_holds_both_then_confirm_drops_old() {
        let mut cluster = Cluster::from_hosts([host("a", 8, 8192)]).unwrap();
        let (srv, mig, a) = (
            ConsumerId::from("srv"),
            ConsumerId::from("mig"),
            HostId::from("a"),
        );
        cluster.claim(&a, &srv, &flavor(1, 1024)).unwrap();
        let resize = cluster
            .begin_resize(&srv, &mig, &a, &flavor(2, 2048))
            .unwrap();
        assert_eq!(resize.source.consumer_id, mig);
        assert_eq!(resize.source.amounts, flavor(1, 1024));
        assert_eq!(resize.dest.amounts, flavor(2, 2048));
        assert_eq!(used_ram(&cluster, "a"), 3072);
        assert_eq!(cluster.confirm_resize(&mig), Some(resize.source.clone()));
        assert_eq!(used_ram(&cluster, "a"), 2048);
        assert_eq!(cluster.claim_of(&srv), Some(resize.dest));
        // Confirming twice changes nothing.
        let after = cluster.clone();
        assert_eq!(cluster.confirm_resize(&mig), None);
        assert_eq!(cluster, after);
    }

    #[test]
    fn cross_host_resize_revert_gives_the_old_claim_back() {
        let mut cluster = Cluster::from_hosts([host("a", 4, 4096), host("b", 4, 4096)]).unwrap();
        let (srv, mig) = (ConsumerId::from("srv"), ConsumerId::from("mig"));
        let original = cluster.claim(&"a".into(), &srv, &flavor(1, 1024)).unwrap();
        cluster
            .begin_resize(&srv, &mig, &"b".into(), &flavor(2, 2048))
            .unwrap();
        assert_eq!(used_ram(&cluster, "a"), 1024);
        assert_eq!(used_ram(&cluster, "b"), 2048);
        assert_eq!(cluster.revert_resize(&srv, &mig), Ok(original.clone()));
        assert_eq!(cluster.claim_of(&srv), Some(original));
        assert_eq!(cluster.claim_of(&mig), None);
        assert_eq!(used_ram(&cluster, "b"), 0);
        // A second revert is refused and changes nothing.
        let after = cluster.clone();
        assert!(matches!(
            cluster.revert_resize(&srv, &mig),
            Err(ClaimError::UnknownConsumer { .. })
        ));
        assert_eq!(cluster, after);
    }

    #[test]
    fn a_resize_that_does_not_fit_changes_nothing() {
        let mut cluster = Cluster::from_hosts([host("a", 4, 4096)]).unwrap();
        let (srv, mig, a) = (
            ConsumerId::from("srv"),
            ConsumerId::from("mig"),
            HostId::from("a"),
        );
        cluster.claim(&a, &srv, &flavor(2, 3072)).unwrap();
        let before = cluster.clone();
        // 3072 + 2048 > 4096: on the same host the new claim must fit beside the old.
        let err = cluster
            .begin_resize(&srv, &mig, &a, &flavor(2, 2048))
            .unwrap_err();
        assert!(err.to_string().contains("MEMORY_MB"), "{err}");
        assert_eq!(cluster, before);
    }

    #[test]
    fn resize_refuses_unknown_consumers_hosts_and_reused_migrations() {
        let mut cluster = Cluster::from_hosts([host("a", 4, 4096)]).unwrap();
        let a = HostId::from("a");
        cluster.claim(&a, &"srv".into(), &flavor(1, 512)).unwrap();
        cluster.claim(&a, &"other".into(), &flavor(1, 512)).unwrap();
        let before = cluster.clone();
        assert!(matches!(
            cluster.begin_resize(&"ghost".into(), &"m".into(), &a, &flavor(1, 1)),
            Err(ClaimError::UnknownConsumer { .. })
        ));
        assert!(matches!(
            cluster.begin_resize(&"srv".into(), &"other".into(), &a, &flavor(1, 1)),
            Err(ClaimError::AlreadyClaimed { .. })
        ));
        assert!(matches!(
            cluster.begin_resize(&"srv".into(), &"srv".into(), &a, &flavor(1, 1)),
            Err(ClaimError::AlreadyClaimed { .. })
        ));
        assert!(matches!(
            cluster.begin_resize(&"srv".into(), &"m".into(), &"zz".into(), &flavor(1, 1)),
            Err(ClaimError::UnknownHost { .. })
        ));
        assert_eq!(cluster, before);
    }

    #[test]
    fn revert_after_the_new_claim_was_released_still_restores() {
        let mut cluster = Cluster::from_hosts([host("a", 4, 4096)]).unwrap();
        let (srv, mig, a) = (
            ConsumerId::from("srv"),
            ConsumerId::from("mig"),
            HostId::from("a"),
        );
        cluster.claim(&a, &srv, &flavor(1, 512)).unwrap();
        cluster
            .begin_resize(&srv, &mig, &a, &flavor(2, 1024))
            .unwrap();
        cluster.release(&srv);
        let restored = cluster.revert_resize(&srv, &mig).unwrap();
        assert_eq!(restored.amounts, flavor(1, 512));
        assert_eq!(used_ram(&cluster, "a"), 512);
    }

    #[test]
    fn resize_records_round_trip_through_json() {
        let mut cluster = Cluster::from_hosts([host("a", 4, 4096)]).unwrap();
        let a = HostId::from("a");
        cluster.claim(&a, &"srv".into(), &flavor(1, 512)).unwrap();
        let resize = cluster
            .begin_resize(&"srv".into(), &"mig".into(), &a, &flavor(2, 1024))
            .unwrap();
        let json = serde_json::to_string(&resize).unwrap();
        assert_eq!(serde_json::from_str::<Resize>(&json).unwrap(), resize);
    }
}
