//! SameHostFilter and DifferentHostFilter: Nova's `same_host` / `different_host` scheduler
//! hints, already resolved by the caller from server ids to the hosts those servers run on.

use std::collections::BTreeSet;

use super::{HostFilter, Rejection};
use crate::host::{Host, HostId};
use crate::request::{ResourceRequest, SchedulingContext};

fn list(hosts: &BTreeSet<HostId>) -> String {
    let names: Vec<&str> = hosts.iter().map(|id| id.0.as_str()).collect();
    names.join(", ")
}

/// With a `same_host` hint, only the hosts running one of the named servers pass (any one
/// of them, as in Nova).
#[derive(Debug, Clone, Copy, Default)]
pub struct SameHostFilter;

impl HostFilter for SameHostFilter {
    fn name(&self) -> &'static str {
        "SameHostFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        _ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        if request.same_host.is_empty() || request.same_host.contains(host.id()) {
            return Ok(());
        }
        Err(Rejection::new(format!(
            "same_host: the named servers run on {}, not on this host",
            list(&request.same_host)
        )))
    }
}

/// With a `different_host` hint, the hosts running any of the named servers are rejected.
#[derive(Debug, Clone, Copy, Default)]
pub struct DifferentHostFilter;

impl HostFilter for DifferentHostFilter {
    fn name(&self) -> &'static str {
        "DifferentHostFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        _ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        if request.different_host.contains(host.id()) {
            return Err(Rejection::new(
                "different_host: runs a server the request must stay away from",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        filter: &dyn HostFilter,
        host: &str,
        request: &ResourceRequest,
    ) -> Result<(), Rejection> {
        filter.passes(
            &Host::new(host, host),
            request,
            &SchedulingContext::new(&"s".into(), request),
        )
    }

    #[test]
    fn no_hint_passes_everywhere() {
        let request = ResourceRequest::default();
        assert_eq!(check(&SameHostFilter, "a", &request), Ok(()));
        assert_eq!(check(&DifferentHostFilter, "a", &request), Ok(()));
    }

    #[test]
    fn same_host_keeps_only_the_named_hosts() {
        let request = ResourceRequest {
            same_host: ["a".into(), "c".into()].into(),
            ..ResourceRequest::default()
        };
        assert_eq!(check(&SameHostFilter, "a", &request), Ok(()));
        assert_eq!(check(&SameHostFilter, "c", &request), Ok(()));
        assert_eq!(
            check(&SameHostFilter, "b", &request).unwrap_err().reason,
            "same_host: the named servers run on a, c, not on this host"
        );
    }

    #[test]
    fn different_host_rejects_the_named_hosts() {
        let request = ResourceRequest {
            different_host: ["a".into()].into(),
            ..ResourceRequest::default()
        };
        assert!(check(&DifferentHostFilter, "a", &request)
            .unwrap_err()
            .reason
            .starts_with("different_host:"));
        assert_eq!(check(&DifferentHostFilter, "b", &request), Ok(()));
    }
}
