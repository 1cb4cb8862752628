//! Nova v2.1 handlers: flavors and their extra specs ([`views`] renders flavors per
//! microversion), key pairs, host aggregates and availability zones, server groups, servers, their actions and volume attachments
//! ([`server_views`] renders servers).

pub mod aggregates;
pub mod availability_zones;
pub mod extra_specs;
pub mod flavors;
pub mod keypairs;
pub mod migrations;
mod nova_types;
pub mod remote_consoles;
pub mod server_actions;
pub mod server_groups;
pub mod server_ips;
mod server_query;
mod server_views;
pub mod servers;
pub mod services;
mod views;
pub mod volume_attachments;

pub(crate) use services::boxes as site_boxes;

use super::microversion::ApiVersion;
use super::Call;

/// The microversion a compute request negotiated (dispatch always negotiates under
/// `/compute/v2.1`).
fn version(call: &Call<'_>) -> ApiVersion {
    call.version.unwrap_or(super::microversion::COMPUTE.min)
}

/// Deserializes a field that may be absent, null or a value into None, Some(None) or
/// Some(Some(v)), so a request can be told apart from one that leaves the field out.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}
