//! The scheduler: filters → weighers → claim, shaped like Nova's FilterScheduler.
//!
//! Every host in the cluster is asked the filters' questions in order; the hosts that pass
//! are weighed, and the best one is claimed on (among hosts of equal weight, the one the
//! configured [`TieBreak`] prefers). If the claim fails (it cannot when `ResourceFilter`
//! ran, but a custom filter list may omit it) the next best is tried. A request that finds
//! no host gets a [`NoValidHost`] with every host's reason.

mod config;
#[cfg(test)]
mod group_tests;
mod no_valid_host;
mod reserve;
#[cfg(test)]
mod reserve_tests;
#[cfg(test)]
mod site_tests;
#[cfg(test)]
mod tests;
mod tie_break;

pub use config::{ConfigError, SchedulerConfig};
pub use no_valid_host::{BatchPosition, HostRejection, NoValidHost};
pub use reserve::ReserveShortfall;
pub use tie_break::{TieBreak, TIE_EPSILON};

use crate::claim::{join_shortfalls, Claim, ClaimError, ConsumerId};
use crate::cluster::Cluster;
use crate::filters::{
    filter_by_name, AvailabilityZoneFilter, HostFilter, ResourceFilter, TraitsFilter,
};
use crate::host::{Host, HostId};
use crate::request::{GroupMember, ResourceRequest, SchedulingContext};
use crate::resize::Resize;
use crate::weighers::{
    weigh_hosts, CpuWeigher, DiskWeigher, HostWeigher, NodeScoreWeigher, RamWeigher,
    ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher, WeighedHost,
};
use tie_break::break_tie;

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
    tie_break: Option<TieBreak>,
    allow_resize_to_same_host: bool,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("filters", &self.filter_names())
            .field("weighers", &self.weigher_names())
            .field("tie_break", &self.tie_break)
            .field("allow_resize_to_same_host", &self.allow_resize_to_same_host)
            .finish()
    }
}

impl Scheduler {
    /// Exactly these filters and weighers, in this order (resize to the same host allowed,
    /// ties to the lowest host id). The request's own constraints (destination, ignored
    /// hosts, availability zone) are checked before the filters all the same.
    pub fn new(filters: Vec<Box<dyn HostFilter>>, weighers: Vec<Box<dyn HostWeigher>>) -> Self {
        Self {
            filters,
            weighers,
            tie_break: None,
            allow_resize_to_same_host: true,
        }
    }

    /// Builder: how to choose among hosts of equal weight (`None`: the lowest host id).
    pub fn with_tie_break(mut self, tie_break: Option<TieBreak>) -> Self {
        self.tie_break = tie_break;
        self
    }

    /// The Nova-shaped pipeline: `ResourceFilter` and `TraitsFilter` (Placement's part),
    /// then `enabled_filters`, then the five Nova weighers with the configured multipliers,
    /// and `NodeScoreWeigher` when its multiplier is not 0.
    pub fn from_config(config: &SchedulerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut filters: Vec<Box<dyn HostFilter>> =
            vec![Box::new(ResourceFilter), Box::new(TraitsFilter)];
        for name in &config.enabled_filters {
            let filter = filter_by_name(name)?;
            // The zone is checked for every request (`check_host`); a Nova configuration
            // that lists its filter is accepted and needs no second run.
            let always_run = filter.name() == AvailabilityZoneFilter.name();
            if !always_run && !filters.iter().any(|f| f.name() == filter.name()) {
                filters.push(filter);
            }
        }
        let mut weighers: Vec<Box<dyn HostWeigher>> = vec![
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
        // Left out at 0 so that, unless configured, weights and their breakdown are
        // exactly what they were before the weigher existed.
        if config.node_score_weight_multiplier != 0.0 {
            weighers.push(Box::new(NodeScoreWeigher {
                multiplier: config.node_score_weight_multiplier,
            }));
        }
        Ok(Self {
            filters,
            weighers,
            tie_break: config.spread,
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
            return Err(no_valid_host(rejections, request));
        }
        Ok(ranked)
    }

    /// Filters every host and weighs the ones that pass: (candidates best first, equal
    /// best ones in the tie-break's order; the others' rejections in host order).
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
        let mut ranked = weigh_hosts(&self.weighers, &candidates, request, &ctx);
        if let Some(mode) = self.tie_break {
            let host = |weighed: &WeighedHost| cluster.host(&weighed.host_id);
            break_tie(&mut ranked, mode, host, request.tie_break_seed, consumer_id);
        }
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
        let (claim, weight) = claim_best(cluster, ranked, rejections, request, |cluster, id| {
            let claim = cluster.claim(id, consumer_id, &request.resources)?;
            if request.keep_failure_reserve {
                if let Err(shortfall) = self.failure_reserve(cluster) {
                    cluster.release(consumer_id);
                    return Err(ClaimError::BreaksFailureReserve {
                        host_id: id.clone(),
                        shortfall: Box::new(shortfall),
                    });
                }
            }
            Ok(claim)
        })?;
        self.mark_chosen(cluster, &claim.host_id);
        Ok(Selection {
            host_id: claim.host_id.clone(),
            claim,
            weight,
        })
    }

    /// Under round robin, makes `host_id` the most recently chosen host (the highest
    /// `last_claimed` plus one), so the next placement through this cluster, a later
    /// server of the same batch included, prefers another among equals. Callers that keep
    /// their own ordinal overwrite it when they next load the hosts.
    fn mark_chosen(&self, cluster: &mut Cluster, host_id: &HostId) {
        if self.tie_break != Some(TieBreak::RoundRobin) {
            return;
        }
        let latest = cluster.hosts().map(|h| h.last_claimed).max().unwrap_or(0);
        if let Some(host) = cluster.host_mut(host_id) {
            host.last_claimed = latest.saturating_add(1);
        }
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
        // Round robin moves these as it places; a failed batch puts them back with the claims.
        let ordinals: Vec<(HostId, u64)> = cluster
            .hosts()
            .map(|h| (h.id().clone(), h.last_claimed))
            .collect();
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
                    for (host_id, ordinal) in &ordinals {
                        if let Some(host) = cluster.host_mut(host_id) {
                            host.last_claimed = *ordinal;
                        }
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
        let (resize, _weight) =
            claim_best(cluster, ranked, rejections, &request, |cluster, id| {
                cluster.begin_resize(consumer_id, migration_id, id, &request.resources)
            })?;
        self.mark_chosen(cluster, &resize.dest.host_id);
        Ok(resize)
    }

    /// Runs the request's own constraints (destination, ignored hosts, zone) and then the
    /// filters on one host. The constraints are the user's or the caller's explicit
    /// choice, so no filter list can drop them.
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
        // A filter run here rather than from the list, for the reason above. Nova today
        // also honours the zone before any filter (a Placement pre-filter).
        AvailabilityZoneFilter
            .passes(host, request, ctx)
            .map_err(|rejection| reject(AvailabilityZoneFilter.name(), rejection.reason))?;
        for filter in &self.filters {
            filter
                .passes(host, request, ctx)
                .map_err(|rejection| reject(filter.name(), rejection.reason))?;
        }
        Ok(())
    }
}

/// "No valid host" for `request`, with these reasons.
fn no_valid_host(rejections: Vec<HostRejection>, request: &ResourceRequest) -> NoValidHost {
    NoValidHost {
        rejections,
        batch: None,
        availability_zone: request.availability_zone.clone(),
    }
}

/// Tries `take` on the ranked hosts in order until one succeeds; if none does, every
/// host's reason (filter or claim) is reported, in host order.
fn claim_best<T>(
    cluster: &mut Cluster,
    ranked: Vec<WeighedHost>,
    mut rejections: Vec<HostRejection>,
    request: &ResourceRequest,
    mut take: impl FnMut(&mut Cluster, &HostId) -> Result<T, ClaimError>,
) -> Result<(T, f64), ScheduleError> {
    for candidate in ranked {
        let (stage, reason) = match take(cluster, &candidate.host_id) {
            Ok(taken) => return Ok((taken, candidate.weight)),
            // About the consumer, not the host: no other host will do better.
            Err(err @ (ClaimError::AlreadyClaimed { .. } | ClaimError::UnknownConsumer { .. })) => {
                return Err(err.into())
            }
            Err(ClaimError::DoesNotFit { shortfalls, .. }) => {
                ("claim", join_shortfalls(&shortfalls))
            }
            // Named after the setting, so that a fault says which switch refused it.
            Err(ClaimError::BreaksFailureReserve { shortfall, .. }) => {
                ("ha_reserve", shortfall.to_string())
            }
            Err(err) => ("claim", err.to_string()),
        };
        rejections.push(HostRejection {
            host_name: cluster
                .host(&candidate.host_id)
                .map_or_else(|| candidate.host_id.0.clone(), |h| h.name.clone()),
            host_id: candidate.host_id,
            stage: stage.to_string(),
            reason,
        });
    }
    rejections.sort_by(|a, b| a.host_id.cmp(&b.host_id));
    Err(no_valid_host(rejections, request).into())
}
