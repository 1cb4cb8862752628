//! Host filters: yes/no questions asked of every host, in order, as Nova's FilterScheduler
//! does. The first filter that says no rejects the host and its reason is reported.
//!
//! [`ResourceFilter`] and [`TraitsFilter`] stand in for Placement's allocation-candidates
//! query, so the scheduler always runs them first; the rest are chosen by name like
//! Nova's `[filter_scheduler] enabled_filters`. [`AvailabilityZoneFilter`] is run by the
//! scheduler for every request, like a requested destination: naming it changes nothing.

mod aggregate;
mod availability_zone;
mod compute;
mod extra_specs_ops;
mod host_hints;
mod resources;
mod server_group;
mod traits;

pub use aggregate::AggregateInstanceExtraSpecsFilter;
pub use availability_zone::AvailabilityZoneFilter;
pub use compute::ComputeFilter;
pub use extra_specs_ops::requirement_matches;
pub use host_hints::{DifferentHostFilter, SameHostFilter};
pub use resources::ResourceFilter;
pub use server_group::{ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter};
pub use traits::TraitsFilter;

use crate::host::Host;
use crate::request::{ResourceRequest, SchedulingContext};

/// Why a filter turned a host down, written for the user who gets "No valid host".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// One line saying what did not fit and by how much.
    pub reason: String,
}

impl Rejection {
    /// A rejection with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// One yes/no question about a host.
pub trait HostFilter: Send + Sync {
    /// The filter's Nova name (`ComputeFilter`), used in config and reports.
    fn name(&self) -> &'static str;

    /// Whether `host` may take the server described by `request`.
    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        ctx: &SchedulingContext,
    ) -> Result<(), Rejection>;
}

/// A filter name that is not one we have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown filter {name:?}; known: {}", FILTER_NAMES.join(", "))]
pub struct UnknownFilter {
    /// The name asked for.
    pub name: String,
}

/// Names accepted by [`filter_by_name`].
pub const FILTER_NAMES: &[&str] = &[
    "ComputeFilter",
    "ResourceFilter",
    "TraitsFilter",
    "AggregateInstanceExtraSpecsFilter",
    "AvailabilityZoneFilter",
    "ServerGroupAffinityFilter",
    "ServerGroupAntiAffinityFilter",
    "SameHostFilter",
    "DifferentHostFilter",
];

/// The filter called `name`.
pub fn filter_by_name(name: &str) -> Result<Box<dyn HostFilter>, UnknownFilter> {
    Ok(match name {
        "ComputeFilter" => Box::new(ComputeFilter),
        "ResourceFilter" => Box::new(ResourceFilter),
        "TraitsFilter" => Box::new(TraitsFilter),
        "AggregateInstanceExtraSpecsFilter" => Box::new(AggregateInstanceExtraSpecsFilter),
        "AvailabilityZoneFilter" => Box::new(AvailabilityZoneFilter),
        "ServerGroupAffinityFilter" => Box::new(ServerGroupAffinityFilter),
        "ServerGroupAntiAffinityFilter" => Box::new(ServerGroupAntiAffinityFilter),
        "SameHostFilter" => Box::new(SameHostFilter),
        "DifferentHostFilter" => Box::new(DifferentHostFilter),
        _ => {
            return Err(UnknownFilter {
                name: name.to_string(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_builds_the_filter_of_that_name() {
        for name in FILTER_NAMES {
            assert_eq!(filter_by_name(name).map(|f| f.name()), Ok(*name));
        }
        let err = filter_by_name("RamFilter").map(|f| f.name()).unwrap_err();
        assert!(err.to_string().contains("unknown filter \"RamFilter\""));
    }
}
