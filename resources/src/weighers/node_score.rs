//! NodeScoreWeigher: prefer the host with the highest node score, its mean free share of
//! CPU, memory and disk ([`Host::node_score`]). Off unless configured
//! (`node_score_weight_multiplier`, default 0).

use super::HostWeigher;
use crate::host::Host;
use crate::request::{ResourceRequest, SchedulingContext};

/// The node score as a weight. Unlike the free-amount weighers it compares boxes of
/// different sizes by how full they are, not by how much they have left.
#[derive(Debug, Clone, Copy)]
pub struct NodeScoreWeigher {
    /// Positive prefers the emptiest host, negative the fullest.
    pub multiplier: f64,
}

impl HostWeigher for NodeScoreWeigher {
    fn name(&self) -> &'static str {
        "NodeScoreWeigher"
    }

    fn multiplier(&self) -> f64 {
        self.multiplier
    }

    fn weigh(&self, host: &Host, _request: &ResourceRequest, _ctx: &SchedulingContext) -> f64 {
        host.node_score()
    }

    /// The score is already a share: kept as it is, so a host's weight is its score and
    /// hosts equally full stay equal whatever else is in the candidate list.
    fn bounds(&self) -> (Option<f64>, Option<f64>) {
        (Some(0.0), Some(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{ResourceClass, Resources};
    use crate::cluster::Cluster;
    use crate::inventory::Inventory;

    #[test]
    fn score_is_the_mean_free_share_of_the_classes_the_host_has() {
        // 8 VCPU and 8192 MB, no disk inventory: disk does not count.
        let host = Host::new("a", "a")
            .with_inventory(ResourceClass::Vcpu, Inventory::new(8))
            .unwrap()
            .with_inventory(ResourceClass::MemoryMb, Inventory::new(8192))
            .unwrap();
        let mut cluster = Cluster::from_hosts([host]).unwrap();
        let weigh = |cluster: &Cluster| {
            let request = ResourceRequest::default();
            let ctx = SchedulingContext::new(&"s".into(), &request);
            let host = cluster.host(&"a".into()).unwrap();
            NodeScoreWeigher { multiplier: 1.0 }.weigh(host, &request, &ctx)
        };
        assert_eq!(weigh(&cluster), 1.0);
        let amounts = Resources::new()
            .with(ResourceClass::Vcpu, 2)
            .with(ResourceClass::MemoryMb, 6144);
        cluster.claim(&"a".into(), &"s1".into(), &amounts).unwrap();
        // CPU 6/8 free, memory 2048/8192 free: (0.75 + 0.25) / 2.
        assert_eq!(weigh(&cluster), 0.5);
        assert_eq!(Host::new("bare", "bare").node_score(), 0.0);
    }
}
