//! Free-resource weighers: prefer hosts with more free RAM, VCPU or disk (spread), or,
//! with a negative multiplier, with less (stack / pack). Free means capacity (after
//! reserved and allocation ratio) minus usage.

use super::HostWeigher;
use crate::class::ResourceClass;
use crate::host::Host;
use crate::request::{ResourceRequest, SchedulingContext};

fn free(host: &Host, class: &ResourceClass) -> f64 {
    host.free(class) as f64
}

/// Free MEMORY_MB (Nova's `ram_weight_multiplier`, default 1.0: spread).
#[derive(Debug, Clone, Copy)]
pub struct RamWeigher {
    /// Positive spreads, negative stacks.
    pub multiplier: f64,
}

impl HostWeigher for RamWeigher {
    fn name(&self) -> &'static str {
        "RAMWeigher"
    }

    fn multiplier(&self) -> f64 {
        self.multiplier
    }

    fn weigh(&self, host: &Host, _request: &ResourceRequest, _ctx: &SchedulingContext) -> f64 {
        free(host, &ResourceClass::MemoryMb)
    }
}

/// Free VCPU (Nova's `cpu_weight_multiplier`, default 1.0: spread).
#[derive(Debug, Clone, Copy)]
pub struct CpuWeigher {
    /// Positive spreads, negative stacks.
    pub multiplier: f64,
}

impl HostWeigher for CpuWeigher {
    fn name(&self) -> &'static str {
        "CPUWeigher"
    }

    fn multiplier(&self) -> f64 {
        self.multiplier
    }

    fn weigh(&self, host: &Host, _request: &ResourceRequest, _ctx: &SchedulingContext) -> f64 {
        free(host, &ResourceClass::Vcpu)
    }
}

/// Free DISK_GB (Nova's `disk_weight_multiplier`, default 1.0: spread).
#[derive(Debug, Clone, Copy)]
pub struct DiskWeigher {
    /// Positive spreads, negative stacks.
    pub multiplier: f64,
}

impl HostWeigher for DiskWeigher {
    fn name(&self) -> &'static str {
        "DiskWeigher"
    }

    fn multiplier(&self) -> f64 {
        self.multiplier
    }

    fn weigh(&self, host: &Host, _request: &ResourceRequest, _ctx: &SchedulingContext) -> f64 {
        free(host, &ResourceClass::DiskGb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    #[test]
    fn free_counts_ratio_and_reserved() {
        let host = Host::new("a", "a")
            .with_inventory(ResourceClass::Vcpu, Inventory::new(4).allocation_ratio(4.0))
            .unwrap()
            .with_inventory(ResourceClass::MemoryMb, Inventory::new(4096).reserved(512))
            .unwrap();
        let request = ResourceRequest::default();
        let ctx = SchedulingContext::new(&"s".into(), &request);
        assert_eq!(
            RamWeigher { multiplier: 1.0 }.weigh(&host, &request, &ctx),
            3584.0
        );
        assert_eq!(
            CpuWeigher { multiplier: 1.0 }.weigh(&host, &request, &ctx),
            16.0
        );
        assert_eq!(
            DiskWeigher { multiplier: 1.0 }.weigh(&host, &request, &ctx),
            0.0
        );
    }
}
