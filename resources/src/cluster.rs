//! The set of hosts the scheduler places on — one box today, a few later — and the claims
//! held on them.
//!
//! Hosts are kept in id order so every walk over them (filtering, weighing, reports) is
//! deterministic. A consumer holds at most one claim in the whole cluster.

use std::collections::BTreeMap;

use crate::claim::{Claim, ClaimError, ConsumerId};
use crate::class::Resources;
use crate::host::{Host, HostId};

/// Why a host could not be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Ids identify hosts; two hosts with one id would share claims.
    #[error("a host with id {host_id} is already in the cluster")]
    DuplicateHost {
        /// The id in use.
        host_id: HostId,
    },
    /// No host with this id.
    #[error("no host {host_id}")]
    UnknownHost {
        /// The id asked for.
        host_id: HostId,
    },
    /// Removing a host would silently drop its servers' claims.
    #[error("host {host_id} still holds {claims} claim(s); release or move them first")]
    HostInUse {
        /// The host.
        host_id: HostId,
        /// How many claims it holds.
        claims: usize,
    },
    /// The host arrived carrying a claim whose consumer already holds one elsewhere.
    #[error("consumer {consumer_id} on host {host_id} already holds a claim in the cluster")]
    ConsumerElsewhere {
        /// The host being added.
        host_id: HostId,
        /// The consumer claimed twice.
        consumer_id: ConsumerId,
    },
}

/// All hosts, keyed and ordered by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    hosts: BTreeMap<HostId, Host>,
}

impl Cluster {
    /// A cluster without hosts.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cluster of the given hosts.
    pub fn from_hosts(hosts: impl IntoIterator<Item = Host>) -> Result<Self, ClusterError> {
        let mut cluster = Self::new();
        for host in hosts {
            cluster.add_host(host)?;
        }
        Ok(cluster)
    }

    /// Adds a host (a new box joining).
    pub fn add_host(&mut self, host: Host) -> Result<(), ClusterError> {
        if self.hosts.contains_key(host.id()) {
            return Err(ClusterError::DuplicateHost {
                host_id: host.id().clone(),
            });
        }
        if let Some(claim) = host
            .claims()
            .find(|claim| self.holder(&claim.consumer_id).is_some())
        {
            return Err(ClusterError::ConsumerElsewhere {
                host_id: host.id().clone(),
                consumer_id: claim.consumer_id,
            });
        }
        self.hosts.insert(host.id().clone(), host);
        Ok(())
    }

    /// Removes a host that holds no claims.
    pub fn remove_host(&mut self, host_id: &HostId) -> Result<Host, ClusterError> {
        let host = self
            .hosts
            .get(host_id)
            .ok_or_else(|| ClusterError::UnknownHost {
                host_id: host_id.clone(),
            })?;
        let claims = host.claims().count();
        if claims > 0 {
            return Err(ClusterError::HostInUse {
                host_id: host_id.clone(),
                claims,
            });
        }
        self.hosts
            .remove(host_id)
            .ok_or_else(|| ClusterError::UnknownHost {
                host_id: host_id.clone(),
            })
    }

    /// One host.
    pub fn host(&self, host_id: &HostId) -> Option<&Host> {
        self.hosts.get(host_id)
    }

    /// One host, to change its inventory, traits, aggregates or liveness. Claims only
    /// change through the cluster's own methods.
    pub fn host_mut(&mut self, host_id: &HostId) -> Option<&mut Host> {
        self.hosts.get_mut(host_id)
    }

    /// All hosts in id order.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> + '_ {
        self.hosts.values()
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True without hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The host where a consumer holds its claim.
    pub fn holder(&self, consumer_id: &ConsumerId) -> Option<&HostId> {
        self.hosts
            .values()
            .find(|host| host.allocation(consumer_id).is_some())
            .map(Host::id)
    }

    /// A consumer's claim.
    pub fn claim_of(&self, consumer_id: &ConsumerId) -> Option<Claim> {
        self.hosts.values().find_map(|host| {
            host.allocation(consumer_id).map(|amounts| Claim {
                consumer_id: consumer_id.clone(),
                host_id: host.id().clone(),
                amounts: amounts.clone(),
            })
        })
    }

    /// Every claim, by host then consumer (what the daemon persists).
    pub fn claims(&self) -> impl Iterator<Item = Claim> + '_ {
        self.hosts.values().flat_map(Host::claims)
    }

    /// Takes `amounts` on one host for a consumer: every class fits or nothing changes.
    /// Refused if the consumer already holds a claim anywhere.
    pub fn claim(
        &mut self,
        host_id: &HostId,
        consumer_id: &ConsumerId,
        amounts: &Resources,
    ) -> Result<Claim, ClaimError> {
        self.add(host_id, consumer_id, amounts, true)
    }

    /// Replays a persisted claim without checking capacity: after a restart with a smaller
    /// inventory or a bigger reservation, existing servers keep their resources (the host
    /// just takes nothing new until usage drops). Still refuses a consumer claimed twice.
    pub fn restore(&mut self, claim: &Claim) -> Result<(), ClaimError> {
        self.add(&claim.host_id, &claim.consumer_id, &claim.amounts, false)
            .map(|_| ())
    }

    /// Releases a consumer's claim wherever it is. Idempotent: releasing again, or
    /// releasing a consumer that never claimed, returns `None` and changes nothing.
    pub fn release(&mut self, consumer_id: &ConsumerId) -> Option<Claim> {
        self.hosts
            .values_mut()
            .find_map(|host| host.remove_allocation(consumer_id))
    }

    fn add(
        &mut self,
        host_id: &HostId,
        consumer_id: &ConsumerId,
        amounts: &Resources,
        check_capacity: bool,
    ) -> Result<Claim, ClaimError> {
        if let Some(holder) = self.holder(consumer_id) {
            return Err(ClaimError::AlreadyClaimed {
                consumer_id: consumer_id.clone(),
                host_id: holder.clone(),
            });
        }
        self.hosts
            .get_mut(host_id)
            .ok_or_else(|| ClaimError::UnknownHost {
                host_id: host_id.clone(),
            })?
            .add_allocation(consumer_id, amounts, check_capacity)
    }

    /// Crate-internal access for the resize steps, which move claims between consumers.
    pub(crate) fn host_entry(&mut self, host_id: &HostId) -> Option<&mut Host> {
        self.hosts.get_mut(host_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ResourceClass;
    use crate::inventory::Inventory;

    fn host(id: &str, vcpus: u64, ram: u64) -> Host {
        Host::new(id, id)
            .with_inventory(ResourceClass::Vcpu, Inventory::new(vcpus))
            .unwrap()
            .with_inventory(ResourceClass::MemoryMb, Inventory::new(ram))
            .unwrap()
    }

    fn two_hosts() -> Cluster {
        Cluster::from_hosts([host("b", 4, 4096), host("a", 2, 2048)]).unwrap()
    }

    fn ram(mb: u64) -> Resources {
        Resources::new()
            .with(ResourceClass::Vcpu, 1)
            .with(ResourceClass::MemoryMb, mb)
    }

    #[test]
    fn hosts_are_in_id_order_and_unique() {
        let mut cluster = two_hosts();
        let ids: Vec<_> = cluster.hosts().map(|h| h.id().0.clone()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(matches!(
            cluster.add_host(host("a", 1, 1)),
            Err(ClusterError::DuplicateHost { .. })
        ));
    }

    #[test]
    fn exhaustion_then_release_frees_room() {
        let mut cluster = two_hosts();
        let a = HostId::from("a");
        cluster.claim(&a, &"s1".into(), &ram(1024)).unwrap();
        cluster.claim(&a, &"s2".into(), &ram(1024)).unwrap();
        let err = cluster.claim(&a, &"s3".into(), &ram(1024)).unwrap_err();
        assert!(
            err.to_string()
                .contains("MEMORY_MB: needs 1024 MB RAM, 0 free"),
            "{err}"
        );
        assert!(cluster.release(&"s1".into()).is_some());
        cluster.claim(&a, &"s3".into(), &ram(1024)).unwrap();
        assert_eq!(cluster.host(&a).unwrap().free(&ResourceClass::MemoryMb), 0);
    }

    #[test]
    fn double_release_is_a_no_op() {
        let mut cluster = two_hosts();
        cluster.claim(&"a".into(), &"s1".into(), &ram(512)).unwrap();
        cluster.claim(&"a".into(), &"s2".into(), &ram(512)).unwrap();
        let released = cluster.release(&"s1".into()).unwrap();
        assert_eq!(released.amounts, ram(512));
        let after_first = cluster.clone();
        assert_eq!(cluster.release(&"s1".into()), None);
        assert_eq!(cluster.release(&"never".into()), None);
        assert_eq!(cluster, after_first);
        assert_eq!(
            cluster
                .host(&"a".into())
                .unwrap()
                .usage()
                .get(&ResourceClass::MemoryMb),
            512
        );
    }

    #[test]
    fn a_consumer_claims_once_in_the_whole_cluster() {
        let mut cluster = two_hosts();
        cluster.claim(&"a".into(), &"s1".into(), &ram(512)).unwrap();
        let before = cluster.clone();
        for target in ["a", "b"] {
            assert_eq!(
                cluster.claim(&target.into(), &"s1".into(), &ram(512)),
                Err(ClaimError::AlreadyClaimed {
                    consumer_id: "s1".into(),
                    host_id: "a".into()
                })
            );
        }
        assert_eq!(cluster, before);
    }

    #[test]
    fn claiming_on_an_unknown_host_is_refused() {
        let mut cluster = two_hosts();
        assert!(matches!(
            cluster.claim(&"zz".into(), &"s1".into(), &ram(1)),
            Err(ClaimError::UnknownHost { .. })
        ));
    }

    #[test]
    fn restore_replays_claims_even_over_capacity() {
        let mut cluster = two_hosts();
        let claim = Claim {
            consumer_id: "s1".into(),
            host_id: "a".into(),
            amounts: ram(8192),
        };
        cluster.restore(&claim).unwrap();
        assert_eq!(cluster.claim_of(&"s1".into()), Some(claim.clone()));
        assert!(cluster.restore(&claim).is_err());
        assert_eq!(cluster.claims().collect::<Vec<_>>(), [claim]);
    }

    #[test]
    fn hosts_with_claims_are_not_removed() {
        let mut cluster = two_hosts();
        cluster.claim(&"a".into(), &"s1".into(), &ram(1)).unwrap();
        assert!(matches!(
            cluster.remove_host(&"a".into()),
            Err(ClusterError::HostInUse { claims: 1, .. })
        ));
        cluster.release(&"s1".into());
        assert!(cluster.remove_host(&"a".into()).is_ok());
        assert_eq!(cluster.len(), 1);
    }

    #[test]
    fn a_host_carrying_a_known_consumer_is_refused() {
        let mut cluster = two_hosts();
        cluster.claim(&"a".into(), &"s1".into(), &ram(1)).unwrap();
        let mut other = Cluster::from_hosts([host("c", 1, 1024)]).unwrap();
        other.claim(&"c".into(), &"s1".into(), &ram(1)).unwrap();
        let c = other.host(&"c".into()).unwrap().clone();
        assert!(matches!(
            cluster.add_host(c),
            Err(ClusterError::ConsumerElsewhere { .. })
        ));
    }
}
