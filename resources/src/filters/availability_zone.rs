//! AvailabilityZoneFilter: a request that names a zone goes only to that zone's hosts.
//!
//! The scheduler runs it for every request whatever its filter list (Nova today does the
//! same with a Placement pre-filter), so it is not one of the `enabled_filters` choices.

use super::{HostFilter, Rejection};
use crate::host::Host;
use crate::request::{ResourceRequest, SchedulingContext};

/// Rejects hosts outside the requested availability zone; a request without a zone passes
/// everywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct AvailabilityZoneFilter;

impl HostFilter for AvailabilityZoneFilter {
    fn name(&self) -> &'static str {
        "AvailabilityZoneFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        _ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        match &request.availability_zone {
            Some(zone) if *zone != host.availability_zone => Err(Rejection::new(format!(
                "in availability zone {}, not the requested {zone}",
                host.availability_zone
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::DEFAULT_AVAILABILITY_ZONE;

    fn check(host: &Host, request: &ResourceRequest) -> Result<(), Rejection> {
        AvailabilityZoneFilter.passes(host, request, &SchedulingContext::new(&"s".into(), request))
    }

    #[test]
    fn only_the_requested_zone_passes() {
        let edge = Host::new("a", "a").in_zone("edge-1");
        assert_eq!(check(&edge, &ResourceRequest::default()), Ok(()));
        assert_eq!(
            check(&edge, &ResourceRequest::default().in_zone("edge-1")),
            Ok(())
        );
        assert_eq!(
            check(&edge, &ResourceRequest::default().in_zone("edge-2"))
                .unwrap_err()
                .reason,
            "in availability zone edge-1, not the requested edge-2"
        );
        // A host nobody put in a zone is in Nova's default one.
        let plain = Host::new("b", "b");
        assert_eq!(plain.availability_zone, DEFAULT_AVAILABILITY_ZONE);
        assert_eq!(
            check(&plain, &ResourceRequest::default().in_zone("nova")),
            Ok(())
        );
    }
}
