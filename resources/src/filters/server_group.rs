//! Server group filters: hard affinity (same host as the group) and hard anti-affinity
//! (not on a host already running `max_server_per_host` members). The soft policies never
//! reject; their weighers prefer hosts instead.

use super::{HostFilter, Rejection};
use crate::host::Host;
use crate::request::{GroupPolicy, ResourceRequest, SchedulingContext};

/// For `affinity` groups: once any member runs somewhere, only those hosts pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerGroupAffinityFilter;

impl HostFilter for ServerGroupAffinityFilter {
    fn name(&self) -> &'static str {
        "ServerGroupAffinityFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        let Some(group) = request
            .group
            .as_ref()
            .filter(|group| group.policy == GroupPolicy::Affinity)
        else {
            return Ok(());
        };
        let hosts: Vec<&str> = ctx.group_hosts().map(|id| id.0.as_str()).collect();
        // The first member may go anywhere; it decides where the others go.
        if hosts.is_empty() || ctx.group_members_on(host.id()) > 0 {
            return Ok(());
        }
        Err(Rejection::new(format!(
            "affinity group {}: members run on {}, not on this host",
            group.id,
            hosts.join(", ")
        )))
    }
}

/// For `anti-affinity` groups: hosts already running `max_server_per_host` members (1
/// unless the group's rule says otherwise) are rejected.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerGroupAntiAffinityFilter;

impl HostFilter for ServerGroupAntiAffinityFilter {
    fn name(&self) -> &'static str {
        "ServerGroupAntiAffinityFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        let Some(group) = request
            .group
            .as_ref()
            .filter(|group| group.policy == GroupPolicy::AntiAffinity)
        else {
            return Ok(());
        };
        let max = group.max_server_per_host.unwrap_or(1).max(1);
        let running = ctx.group_members_on(host.id());
        if running < max {
            return Ok(());
        }
        Err(Rejection::new(format!(
            "anti-affinity group {}: host already runs {running} member(s), max_server_per_host {max}",
            group.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{GroupMember, ServerGroup};

    fn request(policy: GroupPolicy, max: Option<u32>, members: &[(&str, &str)]) -> ResourceRequest {
        ResourceRequest::default().in_group(ServerGroup {
            id: "g1".into(),
            policy,
            max_server_per_host: max,
            members: members
                .iter()
                .map(|(consumer, host)| GroupMember {
                    consumer_id: (*consumer).into(),
                    host_id: (*host).into(),
                })
                .collect(),
        })
    }

    fn check(
        filter: &dyn HostFilter,
        host: &str,
        request: &ResourceRequest,
    ) -> Result<(), Rejection> {
        let ctx = SchedulingContext::new(&"new".into(), request);
        filter.passes(&Host::new(host, host), request, &ctx)
    }

    #[test]
    fn affinity_sends_members_to_the_group_host() {
        let f = ServerGroupAffinityFilter;
        let empty = request(GroupPolicy::Affinity, None, &[]);
        assert_eq!(check(&f, "a", &empty), Ok(()));
        assert_eq!(check(&f, "b", &empty), Ok(()));
        let started = request(GroupPolicy::Affinity, None, &[("s1", "a")]);
        assert_eq!(check(&f, "a", &started), Ok(()));
        assert_eq!(
            check(&f, "b", &started).unwrap_err().reason,
            "affinity group g1: members run on a, not on this host"
        );
    }

    #[test]
    fn anti_affinity_keeps_members_apart() {
        let f = ServerGroupAntiAffinityFilter;
        let started = request(GroupPolicy::AntiAffinity, None, &[("s1", "a")]);
        assert_eq!(check(&f, "b", &started), Ok(()));
        assert_eq!(
            check(&f, "a", &started).unwrap_err().reason,
            "anti-affinity group g1: host already runs 1 member(s), max_server_per_host 1"
        );
        // A resize of s1 itself does not count s1 against its own host.
        let ctx = SchedulingContext::new(&"s1".into(), &started);
        assert_eq!(f.passes(&Host::new("a", "a"), &started, &ctx), Ok(()));
    }

    #[test]
    fn max_server_per_host_allows_that_many() {
        let f = ServerGroupAntiAffinityFilter;
        let two = request(GroupPolicy::AntiAffinity, Some(2), &[("s1", "a")]);
        assert_eq!(check(&f, "a", &two), Ok(()));
        let full = request(
            GroupPolicy::AntiAffinity,
            Some(2),
            &[("s1", "a"), ("s2", "a")],
        );
        assert!(check(&f, "a", &full).is_err());
    }

    #[test]
    fn soft_policies_and_other_filters_policies_never_reject() {
        let members = [("s1", "a")];
        for policy in [GroupPolicy::SoftAffinity, GroupPolicy::SoftAntiAffinity] {
            let r = request(policy, None, &members);
            assert_eq!(check(&ServerGroupAffinityFilter, "b", &r), Ok(()));
            assert_eq!(check(&ServerGroupAntiAffinityFilter, "a", &r), Ok(()));
        }
        let anti = request(GroupPolicy::AntiAffinity, None, &members);
        assert_eq!(check(&ServerGroupAffinityFilter, "a", &anti), Ok(()));
        let affinity = request(GroupPolicy::Affinity, None, &members);
        assert_eq!(
            check(&ServerGroupAntiAffinityFilter, "a", &affinity),
            Ok(())
        );
    }
}
