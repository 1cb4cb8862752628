//! ResourceFilter: every requested class fits the host's inventory (ratios, reserved,
//! min/max unit, step size), as Placement's allocation candidates would.

use super::{HostFilter, Rejection};
use crate::claim::join_shortfalls;
use crate::host::Host;
use crate::request::{ResourceRequest, SchedulingContext};

/// Rejects hosts where any requested class does not fit; the reason lists every class
/// that does not, with the numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceFilter;

impl HostFilter for ResourceFilter {
    fn name(&self) -> &'static str {
        "ResourceFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        _ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        host.check_fit(&request.resources)
            .map_err(|shortfalls| Rejection::new(join_shortfalls(&shortfalls)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{ResourceClass, Resources};
    use crate::inventory::Inventory;

    fn host() -> Host {
        Host::new("h1", "box1")
            .with_inventory(ResourceClass::Vcpu, Inventory::new(2).allocation_ratio(4.0))
            .unwrap()
            .with_inventory(ResourceClass::MemoryMb, Inventory::new(2560).reserved(512))
            .unwrap()
            .with_inventory(ResourceClass::DiskGb, Inventory::new(100))
            .unwrap()
    }

    fn check(host: &Host, resources: Resources) -> Result<(), Rejection> {
        let request = ResourceRequest::new(resources);
        ResourceFilter.passes(
            host,
            &request,
            &SchedulingContext::new(&"s".into(), &request),
        )
    }

    #[test]
    fn overcommitted_cpus_fit_up_to_the_ratio() {
        // 2 cores at ratio 4.0 offer 8 VCPU, capped per server by max_unit (2).
        assert_eq!(check(&host(), Resources::compute(2, 2048, 100)), Ok(()));
        let reason = check(&host(), Resources::compute(3, 1, 1))
            .unwrap_err()
            .reason;
        assert!(
            reason.starts_with("VCPU: needs 3 VCPU, above the largest"),
            "{reason}"
        );
    }

    #[test]
    fn reserved_memory_is_not_offered() {
        let reason = check(&host(), Resources::compute(1, 2049, 1))
            .unwrap_err()
            .reason;
        assert_eq!(
            reason,
            "MEMORY_MB: needs 2049 MB RAM, 2048 free of 2048 capacity (total 2560, reserved 512, ratio 1.0)"
        );
    }

    #[test]
    fn every_failing_class_is_named() {
        let reason = check(&host(), Resources::compute(1, 4096, 200))
            .unwrap_err()
            .reason;
        assert!(reason.contains("MEMORY_MB: needs 4096 MB RAM"), "{reason}");
        assert!(
            reason.contains("DISK_GB: needs 200 GB disk, 100 free"),
            "{reason}"
        );
        assert!(!reason.contains("VCPU"), "{reason}");
    }

    #[test]
    fn an_empty_request_fits_anywhere() {
        assert_eq!(check(&Host::new("x", "x"), Resources::new()), Ok(()));
    }
}
