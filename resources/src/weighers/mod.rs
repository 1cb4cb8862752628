//! Host weighers: rank the hosts that passed the filters, as Nova's FilterScheduler does.
//!
//! Each weigher gives every host a raw weight; the raw weights of one weigher are
//! normalized to `[0, 1]` across the candidate hosts (min-max, so units don't matter and
//! one weigher can't drown the others by scale), multiplied by the weigher's multiplier,
//! and summed. The highest total wins; equal totals go to the lowest host id, so the same
//! inputs always give the same choice (Nova picks randomly among the best
//! `host_subset_size`; we don't, to stay testable and predictable). The scheduler's
//! `spread` setting can choose differently among equal totals.

mod node_score;
mod resources;
mod server_group;

pub use node_score::NodeScoreWeigher;
pub use resources::{CpuWeigher, DiskWeigher, RamWeigher};
pub use server_group::{ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher};

use serde::Serialize;

use crate::host::{Host, HostId};
use crate::request::{ResourceRequest, SchedulingContext};

/// One preference about hosts, scaled by a multiplier (negative reverses it).
pub trait HostWeigher: Send + Sync {
    /// The weigher's Nova name (`RAMWeigher`), used in reports.
    fn name(&self) -> &'static str;

    /// Scale of this weigher's normalized weight in the total.
    fn multiplier(&self) -> f64;

    /// The raw weight of `host` for this request; higher means "prefer" before the
    /// multiplier is applied.
    fn weigh(&self, host: &Host, request: &ResourceRequest, ctx: &SchedulingContext) -> f64;

    /// Fixed bounds for normalization, when the weigher knows them (Nova's
    /// `minval`/`maxval`); `None` uses the smallest/largest raw weight seen.
    fn bounds(&self) -> (Option<f64>, Option<f64>) {
        (None, None)
    }
}

/// Min-max normalization of one weigher's raw weights to `[0, 1]`. When all weights are
/// equal the weigher expresses no preference and every host gets 0.
pub fn normalize(weights: &[f64], min: Option<f64>, max: Option<f64>) -> Vec<f64> {
    let min = min.unwrap_or_else(|| weights.iter().copied().fold(f64::INFINITY, f64::min));
    let max = max.unwrap_or_else(|| weights.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let range = max - min;
    if !(range.is_finite() && range > 0.0) {
        return vec![0.0; weights.len()];
    }
    weights.iter().map(|w| (w - min) / range).collect()
}

/// One weigher's share of a host's total weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightPart {
    /// The weigher.
    pub weigher: &'static str,
    /// Its raw weight for the host.
    pub raw: f64,
    /// After normalization, before the multiplier.
    pub normalized: f64,
    /// The weigher's multiplier.
    pub multiplier: f64,
}

/// A candidate host with its total weight and how it was made up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeighedHost {
    /// The host.
    pub host_id: HostId,
    /// Sum of `normalized * multiplier` over the weighers.
    pub weight: f64,
    /// One entry per weigher, in weigher order.
    pub parts: Vec<WeightPart>,
}

/// Weighs `hosts` and returns them best first (ties to the lowest host id).
pub fn weigh_hosts(
    weighers: &[Box<dyn HostWeigher>],
    hosts: &[&Host],
    request: &ResourceRequest,
    ctx: &SchedulingContext,
) -> Vec<WeighedHost> {
    let mut weighed: Vec<WeighedHost> = hosts
        .iter()
        .map(|host| WeighedHost {
            host_id: host.id().clone(),
            weight: 0.0,
            parts: Vec::with_capacity(weighers.len()),
        })
        .collect();
    for weigher in weighers {
        let raw: Vec<f64> = hosts
            .iter()
            .map(|host| weigher.weigh(host, request, ctx))
            .collect();
        let (min, max) = weigher.bounds();
        let multiplier = weigher.multiplier();
        for ((entry, raw), normalized) in
            weighed.iter_mut().zip(&raw).zip(normalize(&raw, min, max))
        {
            entry.weight += multiplier * normalized;
            entry.parts.push(WeightPart {
                weigher: weigher.name(),
                raw: *raw,
                normalized,
                multiplier,
            });
        }
    }
    weighed.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.host_id.cmp(&b.host_id))
    });
    weighed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_maps_to_unit_range() {
        assert_eq!(normalize(&[2.0, 4.0, 6.0], None, None), [0.0, 0.5, 1.0]);
        assert_eq!(normalize(&[5.0, 5.0], None, None), [0.0, 0.0]);
        assert_eq!(normalize(&[], None, None), Vec::<f64>::new());
        assert_eq!(normalize(&[1.0, 3.0], Some(0.0), Some(4.0)), [0.25, 0.75]);
        assert_eq!(normalize(&[-3.0, -1.0], None, None), [0.0, 1.0]);
    }

    struct Fixed(&'static str, f64, fn(&Host) -> f64);

    impl HostWeigher for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn multiplier(&self) -> f64 {
            self.1
        }
        fn weigh(&self, host: &Host, _: &ResourceRequest, _: &SchedulingContext) -> f64 {
            (self.2)(host)
        }
    }

    fn by_name_len(host: &Host) -> f64 {
        host.name.len() as f64
    }

    #[test]
    fn totals_are_normalized_weights_times_multipliers_best_first() {
        let hosts = [
            Host::new("a", "x"),
            Host::new("b", "xxx"),
            Host::new("c", "xx"),
        ];
        let refs: Vec<&Host> = hosts.iter().collect();
        let request = ResourceRequest::default();
        let ctx = SchedulingContext::new(&"s".into(), &request);
        let weighers: Vec<Box<dyn HostWeigher>> = vec![
            Box::new(Fixed("len", 2.0, by_name_len)),
            Box::new(Fixed("flat", 10.0, |_| 7.0)),
        ];
        let ranked = weigh_hosts(&weighers, &refs, &request, &ctx);
        let order: Vec<(&str, f64)> = ranked
            .iter()
            .map(|w| (w.host_id.0.as_str(), w.weight))
            .collect();
        assert_eq!(order, [("b", 2.0), ("c", 1.0), ("a", 0.0)]);
        assert_eq!(ranked[1].parts[0].raw, 2.0);
        assert_eq!(ranked[1].parts[0].normalized, 0.5);
        // The flat weigher expresses no preference, whatever its multiplier.
        assert!(ranked.iter().all(|w| w.parts[1].normalized == 0.0));
    }

    #[test]
    fn ties_go_to_the_lowest_host_id() {
        let hosts = [
            Host::new("z", "z"),
            Host::new("m", "m"),
            Host::new("b", "b"),
        ];
        let refs: Vec<&Host> = hosts.iter().collect();
        let request = ResourceRequest::default();
        let ctx = SchedulingContext::new(&"s".into(), &request);
        let weighers: Vec<Box<dyn HostWeigher>> = vec![Box::new(Fixed("len", 1.0, by_name_len))];
        let ranked = weigh_hosts(&weighers, &refs, &request, &ctx);
        let ids: Vec<&str> = ranked.iter().map(|w| w.host_id.0.as_str()).collect();
        assert_eq!(ids, ["b", "m", "z"]);
    }
}
