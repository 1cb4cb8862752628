//! Soft server group weighers: `soft-affinity` prefers hosts running more members of the
//! group, `soft-anti-affinity` hosts running fewer. Other policies weigh every host 0.

use super::HostWeigher;
use crate::host::Host;
use crate::request::{GroupPolicy, ResourceRequest, SchedulingContext};

fn members_if(
    policy: GroupPolicy,
    host: &Host,
    request: &ResourceRequest,
    ctx: &SchedulingContext,
) -> f64 {
    match &request.group {
        Some(group) if group.policy == policy => f64::from(ctx.group_members_on(host.id())),
        _ => 0.0,
    }
}

/// Members of a `soft-affinity` group on the host (Nova's
/// `soft_affinity_weight_multiplier`, default 1.0).
#[derive(Debug, Clone, Copy)]
pub struct ServerGroupSoftAffinityWeigher {
    /// Scale of the preference.
    pub multiplier: f64,
}

impl HostWeigher for ServerGroupSoftAffinityWeigher {
    fn name(&self) -> &'static str {
        "ServerGroupSoftAffinityWeigher"
    }

    fn multiplier(&self) -> f64 {
        self.multiplier
    }

    fn weigh(&self, host: &Host, request: &ResourceRequest, ctx: &SchedulingContext) -> f64 {
        members_if(GroupPolicy::SoftAffinity, host, request, ctx)
    }
}

/// Minus the members of a `soft-anti-affinity` group on the host (Nova's
/// `soft_anti_affinity_weight_multiplier`, default 1.0).
#[derive(Debug, Clone, Copy)]
pub struct ServerGroupSoftAntiAffinityWeigher {
    /// Scale of the preference.
    pub multiplier: f64,
}

impl HostWeigher for ServerGroupSoftAntiAffinityWeigher {
    fn name(&self) -> &'static str {
        "ServerGroupSoftAntiAffinityWeigher"
    }

    fn multiplier(&self) -> f64 {
        self.multiplier
    }

    fn weigh(&self, host: &Host, request: &ResourceRequest, ctx: &SchedulingContext) -> f64 {
        -members_if(GroupPolicy::SoftAntiAffinity, host, request, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{GroupMember, ServerGroup};

    fn request(policy: GroupPolicy) -> ResourceRequest {
        let member = |c: &str, h: &str| GroupMember {
            consumer_id: c.into(),
            host_id: h.into(),
        };
        ResourceRequest::default().in_group(ServerGroup {
            id: "g".into(),
            policy,
            max_server_per_host: None,
            members: vec![member("s1", "a"), member("s2", "a")],
        })
    }

    #[test]
    fn weights_count_members_for_their_own_policy_only() {
        let a = Host::new("a", "a");
        let affinity = ServerGroupSoftAffinityWeigher { multiplier: 1.0 };
        let anti = ServerGroupSoftAntiAffinityWeigher { multiplier: 1.0 };
        let soft = request(GroupPolicy::SoftAffinity);
        let ctx = SchedulingContext::new(&"new".into(), &soft);
        assert_eq!(affinity.weigh(&a, &soft, &ctx), 2.0);
        assert_eq!(anti.weigh(&a, &soft, &ctx), 0.0);
        let soft_anti = request(GroupPolicy::SoftAntiAffinity);
        let ctx = SchedulingContext::new(&"new".into(), &soft_anti);
        assert_eq!(anti.weigh(&a, &soft_anti, &ctx), -2.0);
        assert_eq!(affinity.weigh(&a, &soft_anti, &ctx), 0.0);
    }
}
