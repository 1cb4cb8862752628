//! The JSON records this module keeps in etcd. Every record carries `schema`; readers accept
//! any schema up to theirs and ignore unknown fields (docs/cluster.md, "Schema versions").

use outpost_resources::{Claim, Inventory, ResourceClass};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const BOX_SCHEMA: u32 = 1;
pub const ALIVE_SCHEMA: u32 = 1;
pub const CLUSTER_SCHEMA: u32 = 1;
pub const TOKEN_SCHEMA: u32 = 1;
pub const PROVIDER_SCHEMA: u32 = 1;
pub const USAGE_SCHEMA: u32 = 1;
pub const CLAIM_SCHEMA: u32 = 1;
pub const GROUP_PLACEMENT_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub schema: u32,
    pub id: String,
    pub created_by: String,
    pub created_at: String,
}

/// `/boxes/<name>`: what the site knows of a member, alive or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxRecord {
    pub schema: u32,
    pub name: String,
    /// Stable id of the box's nova-compute service (Nova's service UUID).
    pub service_id: String,
    /// Stable id of the box as a hypervisor.
    pub hypervisor_id: String,
    pub underlay: String,
    pub availability_zone: String,
    pub enabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    pub joined_at: String,
    /// Where the box's API listens for the others (`[api] listen`), when it does: requests
    /// that need the bytes only this box has are forwarded there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// SHA-256 (hex) of the certificate that listener presents when it speaks TLS: the other
    /// boxes pin it ([`crate::tls`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_cert_sha256: Option<String>,
}

/// `/alive/<name>`, on the box's lease: present while the box renews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliveRecord {
    pub schema: u32,
    /// Differs after every outpostd start.
    pub boot_id: String,
    pub started_at: String,
    pub version: String,
}

/// `/join-tokens/<sha256>`, on a lease that ends with its validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub schema: u32,
    /// The only box the token admits, when given.
    #[serde(default)]
    pub for_box: Option<String>,
    pub created_by: String,
    pub expires_at: String,
}

/// Amounts of the three resources Nova reports per hypervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    pub vcpus: u64,
    pub ram_mb: u64,
    pub disk_gb: u64,
}

/// `/placement/providers/<name>`: the box's inventory, as it publishes it (at start and
/// when its configuration changes). What is claimed of it is in [`UsageRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub schema: u32,
    pub total: Amounts,
    /// Placement's inventory per resource class (reserved amounts, allocation ratios,
    /// units): what the scheduler checks claims against.
    #[serde(default)]
    pub inventories: BTreeMap<ResourceClass, Inventory>,
    #[serde(default)]
    pub traits: BTreeSet<String>,
    pub updated_at: String,
}

/// `/placement/usage/<name>`: what the claims on the box add up to. Every claim transaction
/// on the box rewrites it and compares its revision, which is the box's generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub schema: u32,
    pub used: Amounts,
    /// Servers holding claims (a resize's second claim not counted).
    pub servers: u64,
}

/// `/placement/groups/<group>`: rewritten by each claim of a member of the group, so its
/// revision is the group's placement generation. Where members run is read from their
/// claims; the record only names the members its last write placed, for the curious.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPlacementRecord {
    pub schema: u32,
    pub last_placed: Vec<String>,
}

/// `/placement/claims/<consumer>`: one consumer's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub schema: u32,
    #[serde(flatten)]
    pub claim: Claim,
}
