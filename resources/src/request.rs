//! What a server asks for ([`ResourceRequest`]: amounts, traits, aggregate specs, server
//! group, zone and host hints) and the per-placement view filters and weighers read ([`SchedulingContext`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::claim::ConsumerId;
use crate::class::Resources;
use crate::host::HostId;

/// A server group's policy (Nova API 2.64+ names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPolicy {
    /// All members on one host; a host without the members is rejected.
    Affinity,
    /// Members on different hosts (at most `max_server_per_host` per host).
    AntiAffinity,
    /// Prefer hosts that already have members; never rejects.
    SoftAffinity,
    /// Prefer hosts with fewer members; never rejects.
    SoftAntiAffinity,
}

impl GroupPolicy {
    /// The API name (`anti-affinity`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPolicy::Affinity => "affinity",
            GroupPolicy::AntiAffinity => "anti-affinity",
            GroupPolicy::SoftAffinity => "soft-affinity",
            GroupPolicy::SoftAntiAffinity => "soft-anti-affinity",
        }
    }
}

impl fmt::Display for GroupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not one of Nova's four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown server group policy {0:?} (affinity, anti-affinity, soft-affinity, soft-anti-affinity)")]
pub struct UnknownPolicy(pub String);

impl FromStr for GroupPolicy {
    type Err = UnknownPolicy;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            GroupPolicy::Affinity,
            GroupPolicy::AntiAffinity,
            GroupPolicy::SoftAffinity,
            GroupPolicy::SoftAntiAffinity,
        ]
        .into_iter()
        .find(|policy| policy.as_str() == name)
        .ok_or_else(|| UnknownPolicy(name.to_string()))
    }
}

/// One existing member of a server group and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The member server.
    pub consumer_id: ConsumerId,
    /// Its host.
    pub host_id: HostId,
}

/// The server group the new server joins, with where its members already are (the control
/// service looks them up; this crate does no I/O).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerGroup {
    /// The group's id, for messages.
    pub id: String,
    /// Its policy.
    pub policy: GroupPolicy,
    /// Nova's `max_server_per_host` rule; only meaningful for anti-affinity, where it
    /// defaults to 1.
    pub max_server_per_host: Option<u32>,
    /// Existing members. The server being placed may be listed (during a resize it is);
    /// it never counts against itself.
    pub members: Vec<GroupMember>,
}

/// What one server needs from a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequest {
    /// Amount per class, all taken from one host.
    pub resources: Resources,
    /// Traits the host must have.
    pub required_traits: BTreeSet<String>,
    /// Traits the host must not have.
    pub forbidden_traits: BTreeSet<String>,
    /// Flavor extra specs matched against host aggregate metadata by
    /// `AggregateInstanceExtraSpecsFilter`: key without scope → requirement (`true`,
    /// `<or> a <or> b`, `>= 4`, ...).
    pub aggregate_extra_specs: BTreeMap<String, String>,
    /// The server group, if the server is in one.
    pub group: Option<ServerGroup>,
    /// Hosts not to consider (Nova's `ignore_hosts`: the source of a resize when resizing
    /// to the same host is not allowed).
    pub ignore_hosts: BTreeSet<HostId>,
    /// Only this host may be chosen (an admin's requested destination); filters still run.
    pub destination: Option<HostId>,
    /// Only hosts of this availability zone may be chosen (`--availability-zone`). Honoured
    /// by every scheduler, whatever its filter list, as `destination` is.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Nova's `same_host` hint, resolved by the caller from server ids to the hosts those
    /// servers run on: the host must be one of these (`SameHostFilter`). Empty means no
    /// hint, so a hint naming only servers that run nowhere must be refused by the caller,
    /// not passed as an empty set.
    #[serde(default)]
    pub same_host: BTreeSet<HostId>,
    /// Nova's `different_host` hint, resolved the same way: the host must be none of these
    /// (`DifferentHostFilter`).
    #[serde(default)]
    pub different_host: BTreeSet<HostId>,
    /// The randomness of `spread = "random"`: the caller draws it afresh for each placement
    /// (and each retry); the scheduler mixes it with the server's id, so the servers of one
    /// multi-create choose independently. A fixed value gives a reproducible choice.
    #[serde(default)]
    pub tie_break_seed: u64,
    /// The failure reserve (`[cluster] ha_reserve`): a host is chosen only if, with this
    /// server on it, the site could still take in the servers of any one host that fails
    /// ([`crate::Scheduler::failure_reserve`]). Set for creates; never for an evacuation,
    /// which is what the reserve is kept for.
    #[serde(default)]
    pub keep_failure_reserve: bool,
}

impl ResourceRequest {
    /// A request for amounts only.
    pub fn new(resources: Resources) -> Self {
        Self {
            resources,
            ..Self::default()
        }
    }

    /// Builder: the host must have `name`.
    pub fn require_trait(mut self, name: &str) -> Self {
        self.required_traits.insert(name.to_string());
        self
    }

    /// Builder: the host must not have `name`.
    pub fn forbid_trait(mut self, name: &str) -> Self {
        self.forbidden_traits.insert(name.to_string());
        self
    }

    /// Builder: only hosts of availability zone `zone`.
    pub fn in_zone(mut self, zone: &str) -> Self {
        self.availability_zone = Some(zone.to_string());
        self
    }

    /// Builder: the server joins `group`.
    pub fn in_group(mut self, group: ServerGroup) -> Self {
        self.group = Some(group);
        self
    }
}

/// What filters and weighers know about one placement besides the host and the request:
/// who is being placed and how many other members of its group each host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingContext {
    consumer_id: ConsumerId,
    group_members_per_host: BTreeMap<HostId, u32>,
}

impl SchedulingContext {
    /// The context for placing `consumer_id` with `request`.
    pub fn new(consumer_id: &ConsumerId, request: &ResourceRequest) -> Self {
        let mut group_members_per_host: BTreeMap<HostId, u32> = BTreeMap::new();
        for member in request.group.iter().flat_map(|group| &group.members) {
            if &member.consumer_id != consumer_id {
                let count = group_members_per_host
                    .entry(member.host_id.clone())
                    .or_default();
                *count = count.saturating_add(1);
            }
        }
        Self {
            consumer_id: consumer_id.clone(),
            group_members_per_host,
        }
    }

    /// The server being placed.
    pub fn consumer_id(&self) -> &ConsumerId {
        &self.consumer_id
    }

    /// How many other members of the server's group run on `host_id`.
    pub fn group_members_on(&self, host_id: &HostId) -> u32 {
        self.group_members_per_host
            .get(host_id)
            .copied()
            .unwrap_or(0)
    }

    /// Hosts running at least one other member, in id order.
    pub fn group_hosts(&self) -> impl Iterator<Item = &HostId> + '_ {
        self.group_members_per_host.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(consumer: &str, host: &str) -> GroupMember {
        GroupMember {
            consumer_id: consumer.into(),
            host_id: host.into(),
        }
    }

    #[test]
    fn policies_use_nova_names() {
        for name in [
            "affinity",
            "anti-affinity",
            "soft-affinity",
            "soft-anti-affinity",
        ] {
            let policy: GroupPolicy = name.parse().unwrap();
            assert_eq!(policy.as_str(), name);
            assert_eq!(
                serde_json::to_string(&policy).unwrap(),
                format!("\"{name}\"")
            );
        }
        assert_eq!(
            "anti_affinity".parse::<GroupPolicy>(),
            Err(UnknownPolicy("anti_affinity".into()))
        );
    }

    #[test]
    fn context_counts_other_members_per_host() {
        let group = ServerGroup {
            id: "g".into(),
            policy: GroupPolicy::AntiAffinity,
            max_server_per_host: None,
            members: vec![member("s1", "a"), member("s2", "a"), member("me", "b")],
        };
        let request = ResourceRequest::default().in_group(group);
        let ctx = SchedulingContext::new(&"me".into(), &request);
        assert_eq!(ctx.group_members_on(&"a".into()), 2);
        // The server being placed does not count against itself.
        assert_eq!(ctx.group_members_on(&"b".into()), 0);
        assert_eq!(
            ctx.group_hosts().cloned().collect::<Vec<_>>(),
            [HostId::from("a")]
        );
        let no_group = SchedulingContext::new(&"me".into(), &ResourceRequest::default());
        assert_eq!(no_group.group_hosts().count(), 0);
    }
}
