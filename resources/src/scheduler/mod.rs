//! The scheduler: filters → weighers → claim, shaped like Nova's FilterScheduler.
//!
//! Every host in the cluster is asked the filters' questions in order; the hosts that pass
//! are weighed, and the best one is claimed on. If the claim fails (it cannot when
//! `ResourceFilter` ran, but a custom filter list may omit it) the next best is tried. A
//! request that finds no host gets a [`NoValidHost`] with every host's reason.

mod config;
#[cfg(test)]
mod group_tests;
mod no_valid_host;
#[cfg(test)]
mod tests;

pub use config::{ConfigError, SchedulerConfig};
pub use no_valid_host::{BatchPosition, HostRejection, NoValidHost};

use crate::claim::{join_shortfalls, Claim, ClaimError, ConsumerId};
use crate::cluster::Cluster;
use crate::filters::{filter_by_name, HostFilter, ResourceFilter, TraitsFilter};
use crate::host::{Host, HostId};
use crate::request::{GroupMember, ResourceRequest, SchedulingContext};
use crate::resize::Resize;
use crate::weighers::{
    weigh_hosts, CpuWeigher, DiskWeigher, HostWeigher, RamWeigher, ServerGroupSoftAffinityWeigher,
    ServerGroupSoftAntiAffinityWeigher, WeighedHost,
};

/// Why scheduling did not produce a placement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// No host passes the filters and can take the claim.
    #[error(transparent)]
    NoValidHost(#[from] NoValidHost),
    /// The request itself is inconsistent with the claims: the server already holds one
    /// (create replayed), or a resized server holds none.
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

/// The chosen host and the claim taken on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The chosen host.
    pub host_id: HostId,
    /// The claim now held there by the server.
    pub claim: Claim,
    /// The host's total weight, for logs.
    pub weight: f64,
}

/// Filters and weighers, in order. Holds no state between calls: the cluster does.
pub struct Scheduler {
    filters: Vec<Box<dyn HostFilter>>,
    weighers: Vec<Box<dyn HostWeigher>>,
    allow_resize_to_same_host: bool,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("filters", &self.filter_names())
            .field("weighers", &self.weigher_names())
            .field("allow_resize_to_same_host", &self.allow_resize_to_same_host)
            .finish()
    }
}

impl Scheduler {
    /// Exactly these filters and weighers, in this order (resize to the same host allowed).
    pub fn new(filters: Vec<Box<dyn HostFilter>>, weighers: Vec<Box<dyn HostWeigher>>) -> Self {
        Self {
            filters,
            weighers,
            allow_resize_to_same_host: true,
        }
    }

    /// The Nova-shaped pipeline: `ResourceFilter` and `TraitsFilter` (Placement's part),
    /// then `enabled_filters`, then all five weighers with the configured multipliers.
    pub fn from_config(config: &SchedulerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut filters: Vec<Box<dyn HostFilter>> =
            vec![Box::new(ResourceFilter), Box::new(TraitsFilter)];
        for name in &config.enabled_filters {
            let filter = filter_by_name(name)?;
            if !filters.iter().any(|f| f.name() == filter.name()) {
                filters.push(filter);
            }
        }
        let weighers: Vec<Box<dyn HostWeigher>> = vec![
            Box::new(RamWeigher {
                multiplier: config.ram_weight_multiplier,
            }),
            Box::new(CpuWeigher {
                multiplier: config.cpu_weight_multiplier,
            }),
            Box::new(DiskWeigher {
                multiplier: config.disk_weight_multiplier,
            }),
            Box::new(ServerGroupSoftAffinityWeigher {
                multiplier: config.soft_affinity_weight_multiplier,
            }),
            Box::new(ServerGroupSoftAntiAffinityWeigher {
                multiplier: config.soft_anti_affinity_weight_multiplier,
            }),
        ];
        Ok(Self {
            filters,
            weighers,
            allow_resize_to_same_host: config.allow_resize_to_same_host,
        })
    }

    /// Names of the filters, in the order they run.
    pub fn filter_names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    /// Names of the weighers.
    pub fn weigher_names(&self) -> Vec<&'static str> {
        self.weighers.iter().map(|w| w.name()).collect()
    }

    /// The hosts that could take `consumer_id`'s request, best first, without claiming.
    pub fn rank(
        &self,
        cluster: &Cluster,
        consumer_id: &ConsumerId,
        request: &ResourceRequest,
    ) -> Result<Vec<WeighedHost>, NoValidHost> {
        let (ranked, rejections) = self.evaluate(cluster, consumer_id, request);
        if ranked.is_empty() {
            return Err(NoValidHost {
                rejections,
                batch: None,
            });
        }
        Ok(ranked)
    }

    /// Filters every host and weighs the ones that pass: (candidates best first, the
    /// others' rejections in host order).
    fn evaluate(
        &self,
        cluster: &Cluster,
        consumer_id: &ConsumerId,
        request: &ResourceRequest,
    ) -> (Vec<WeighedHost>, Vec<HostRejection>) {
        let ctx = SchedulingContext::new(consumer_id, request);
        let mut rejections = Vec::new();
        let mut candidates: Vec<&Host> = Vec::new();
        for host in cluster.hosts() {
            match self.check_host(host, request, &ctx) {
                Ok(()) => candidates.push(host),
                Err(rejection) => rejections.push(rejection),
            }
        }
        let ranked = weigh_hosts(&self.weighers, &candidates, request, &ctx);
        (ranked, rejections)
    }

    /// Places one server: filters, weighs, and claims on the best host.
    pub fn schedule(
        &self,
        cluster: &mut Cluster,
        consumer_id: &ConsumerId,
        request: &ResourceRequest,
    ) -> Result<Selection, ScheduleError> {
        if let Some(holder) = cluster.holder(consumer_id) {
            return Err(ClaimError::AlreadyClaimed {
                consumer_id: consumer_id.clone(),
                host_id: holder.clone(),
            }
            .into());
        }
        let (ranked, rejections) = self.evaluate(cluster, consumer_id, request);
        claim_best(cluster, ranked, rejections, |cluster, host_id| {
            cluster.claim(host_id, consumer_id, &request.resources)
        })
        .map(|(claim, weight)| Selection {
            host_id: claim.host_id.clone(),
            claim,
            weight,
        })
    }

    /// Places several servers with one request (Nova's multi-create), all or none: each
    /// placement sees the earlier ones (so group policies hold within the batch), and if
    /// one finds no host the claims already taken are released.
    pub fn schedule_many(
        &self,
        cluster: &mut Cluster,
        consumer_ids: &[ConsumerId],
        request: &ResourceRequest,
    ) -> Result<Vec<Selection>, ScheduleError> {
        let mut request = request.clone();
        let mut selections: Vec<Selection> = Vec::with_capacity(consumer_ids.len());
        for (index, consumer_id) in consumer_ids.iter().enumerate() {
            match self.schedule(cluster, consumer_id, &request) {
                Ok(selection) => {
                    if let Some(group) = request.group.as_mut() {
                        group.members.push(GroupMember {
                            consumer_id: consumer_id.clone(),
                            host_id: selection.host_id.clone(),
                        });
                    }
                    selections.push(selection);
                }
                Err(err) => {
                    for placed in &selections {
                        cluster.release(&placed.claim.consumer_id);
                    }
                    return Err(match err {
                        ScheduleError::NoValidHost(mut no_host) => {
                            no_host.batch = Some(BatchPosition {
                                server: index + 1,
                                of: consumer_ids.len(),
                            });
                            no_host.into()
                        }
                        other => other,
                    });
                }
            }
        }
        Ok(selections)
    }

    /// Chooses a host for a resize of `consumer_id` to `request` and starts it there
    /// ([`Cluster::begin_resize`]): the old claim moves to `migration_id`, the new one is
    /// taken. Unless resizing to the same host is allowed, the current host is skipped.
    pub fn schedule_resize(
        &self,
        cluster: &mut Cluster,
        consumer_id: &ConsumerId,
        migration_id: &ConsumerId,
        request: &ResourceRequest,
    ) -> Result<Resize, ScheduleError> {
        let source =
            cluster
                .holder(consumer_id)
                .cloned()
                .ok_or_else(|| ClaimError::UnknownConsumer {
                    consumer_id: consumer_id.clone(),
                })?;
        let mut request = request.clone();
        if !self.allow_resize_to_same_host {
            request.ignore_hosts.insert(source);
        }
        let (ranked, rejections) = self.evaluate(cluster, consumer_id, &request);
        claim_best(cluster, ranked, rejections, |cluster, host_id| {
            cluster.begin_resize(consumer_id, migration_id, host_id, &request.resources)
        })
        .map(|(resize, _weight)| resize)
    }

    /// Runs the request-level exclusions and the filters on one host.
    fn check_host(
        &self,
        host: &Host,
        request: &ResourceRequest,
        ctx: &SchedulingContext,
    ) -> Result<(), HostRejection> {
        let reject = |stage: &str, reason: String| HostRejection {
            host_id: host.id().clone(),
            host_name: host.name.clone(),
            stage: stage.to_string(),
            reason,
        };
        if let Some(destination) = request.destination.as_ref().filter(|d| *d != host.id()) {
            return Err(reject(
                "destination",
                format!("not the requested destination {destination}"),
            ));
        }
        if request.ignore_hosts.contains(host.id()) {
            return Err(reject(
                "ignore_hosts",
                "excluded by the request".to_string(),
            ));
        }
        for filter in &self.filters {
            filter
                .passes(host, request, ctx)
                .map_err(|rejection| reject(filter.name(), rejection.reason))?;
        }
        Ok(())
    }
}

/// Tries `take` on the ranked hosts in order until one succeeds; if none does, every
/// host's reason (filter or claim) is reported, in host order.
fn claim_best<T>(
    cluster: &mut Cluster,
    ranked: Vec<WeighedHost>,
    mut rejections: Vec<HostRejection>,
    mut take: impl FnMut(&mut Cluster, &HostId) -> Result<T, ClaimError>,
) -> Result<(T, f64), ScheduleError> {
    for candidate in ranked {
        let reason = match take(cluster, &candidate.host_id) {
            Ok(taken) => return Ok((taken, candidate.weight)),
            // About the consumer, not the host: no other host will do better.
            Err(err @ (ClaimError::AlreadyClaimed { .. } | ClaimError::UnknownConsumer { .. })) => {
                return Err(err.into())
            }
            Err(ClaimError::DoesNotFit { shortfalls, .. }) => join_shortfalls(&shortfalls),
            Err(err) => err.to_string(),
        };
        rejections.push(HostRejection {
            host_name: cluster
                .host(&candidate.host_id)
                .map_or_else(|| candidate.host_id.0.clone(), |h| h.name.clone()),
            host_id: candidate.host_id,
            stage: "claim".to_string(),
            reason,
        });
    }
    rejections.sort_by(|a, b| a.host_id.cmp(&b.host_id));
    Err(NoValidHost {
        rejections,
        batch: None,
    }
    .into())
}
