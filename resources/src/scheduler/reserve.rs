//! The failure reserve (`[cluster] ha_reserve`, docs/cluster.md "Capacity for failure"): a
//! create is placed only where, afterwards, the other hosts could still take in every server
//! of any one host that fails, so that an evacuation never ends in NoValidHost while the
//! reserve holds.
//!
//! Whether a set of servers fits on a set of hosts is bin packing; the check places the
//! failed host's servers the way an evacuation would (this scheduler's filters and weighers,
//! one after the other) largest first, which is how packing heuristics get close to the
//! optimum. It can refuse a create that a cleverer packing would have allowed, never allow
//! one that the evacuation's own placements would then fail.

use std::fmt;

use serde::Serialize;

use super::Scheduler;
use crate::claim::{Claim, ConsumerId};
use crate::class::{ResourceClass, Resources};
use crate::cluster::Cluster;
use crate::host::HostId;
use crate::request::ResourceRequest;

/// A host whose servers would not all find room on the others if it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReserveShortfall {
    /// The host that would fail.
    pub failed: HostId,
    /// Its name, for messages.
    pub failed_name: String,
    /// How many claims it holds (a resize in progress holds two).
    pub claims: usize,
    /// The claims that would find no host, largest first.
    pub stranded: Vec<ConsumerId>,
    /// What the stranded claims need together.
    pub needs: Resources,
}

impl fmt::Display for ReserveShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needs: Vec<String> = self
            .needs
            .iter()
            .map(|(class, amount)| class.describe_amount(amount))
            .collect();
        write!(
            f,
            "the failure reserve would not hold: if {} failed, {} of its {} server(s) would \
             find no room on the other hosts (they need {})",
            self.failed_name,
            self.stranded.len(),
            self.claims,
            needs.join(", ")
        )
    }
}

impl Scheduler {
    /// Checks that for every host of `cluster`, its claims could be placed on the other
    /// hosts by this scheduler's filters and weighers, as an evacuation of that host would
    /// place them. The first host (in id order) for which they could not is returned.
    pub fn failure_reserve(&self, cluster: &Cluster) -> Result<(), ReserveShortfall> {
        for failed in cluster.hosts() {
            let mut evacuees: Vec<Claim> = failed.claims().collect();
            if evacuees.is_empty() {
                continue;
            }
            // Largest first (memory, then cores, then disk: what runs out first on an edge
            // box); the consumer id makes the order, and so the verdict, deterministic.
            evacuees.sort_by(|a, b| {
                size(&b.amounts)
                    .cmp(&size(&a.amounts))
                    .then_with(|| a.consumer_id.cmp(&b.consumer_id))
            });
            let mut trial = cluster.clone();
            let mut stranded = Vec::new();
            let mut needs = Resources::new();
            for claim in &evacuees {
                trial.release(&claim.consumer_id);
                let mut request = ResourceRequest::new(claim.amounts.clone());
                request.ignore_hosts.insert(failed.id().clone());
                if self
                    .schedule(&mut trial, &claim.consumer_id, &request)
                    .is_err()
                {
                    stranded.push(claim.consumer_id.clone());
                    needs.add(&claim.amounts);
                }
            }
            if !stranded.is_empty() {
                return Err(ReserveShortfall {
                    failed: failed.id().clone(),
                    failed_name: failed.name.clone(),
                    claims: evacuees.len(),
                    stranded,
                    needs,
                });
            }
        }
        Ok(())
    }
}

/// The order evacuees are placed in.
fn size(amounts: &Resources) -> (u64, u64, u64) {
    (
        amounts.get(&ResourceClass::MemoryMb),
        amounts.get(&ResourceClass::Vcpu),
        amounts.get(&ResourceClass::DiskGb),
    )
}
