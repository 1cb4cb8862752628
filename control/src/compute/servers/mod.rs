//! Nova servers: what the API may ask and when (validation, visibility, the state each
//! action needs), recorded in SQLite; the work itself is done by the server's runner
//! ([`runner`]), one thread per server driving one `outpost-vmm` ([`monitor`]), placed by
//! `outpost-resources` ([`placement`]), with multi-step operations that undo themselves
//! ([`saga`]) and survive a restart of outpostd ([`recovery`]).
//!
//! Requests that change a server answer at once (Nova's 202): the check of the server's
//! states and the new task_state are one transaction, so two conflicting requests can never
//! both be accepted; the loser gets Nova's 409.

mod actions;
pub mod block_devices;
pub mod boot_source;
pub mod config;
mod fleet;
pub mod monitor;
pub mod nics;
pub mod placement;
mod recovery;
mod runner;
mod saga;
pub mod state;
pub mod store;
pub mod volumes;

pub use actions::{
    confirm_resize, console_output, delete, reboot, resize, revert_resize, start, stop, update,
};
pub use fleet::{Fleet, FleetError};
pub use runner::Command;
pub use saga::root_disk_bytes;

use super::flavors::{self, FlavorError};
use crate::context::RequestContext;
use crate::random::{self, RandomError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use boot_source::BootSourceError;
use std::collections::BTreeMap;
use std::sync::Arc;
use store::{FlavorSnapshot, PlacementRequest, PowerState, TaskState, VmState};

pub use store::Server;

/// Nova's `max_limit` for one page of servers.
const MAX_PAGE: usize = super::MAX_PAGE;
/// Nova's default `metadata_items` quota.
const MAX_METADATA_ITEMS: usize = 128;
/// Nova's limit on user_data, in bytes of its base64 text.
const MAX_USER_DATA: usize = 65535;
/// The console read for os-getConsoleOutput: libvirt's log is capped near this, too.
pub const MAX_CONSOLE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("Instance {0} could not be found.")]
    NotFound(String),
    #[error("Invalid input for field/attribute {field}. {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("Flavor {0} could not be found.")]
    FlavorNotFound(String),
    #[error(transparent)]
    Image(#[from] BootSourceError),
    #[error("Cannot '{action}' instance {id} while it is in {attribute} {state}")]
    InvalidState {
        action: &'static str,
        id: String,
        attribute: &'static str,
        state: &'static str,
    },
    #[error("Policy doesn't allow os_compute_api:{0} to be performed.")]
    Forbidden(&'static str),
    #[error(
        "{0} (the legacy block device mapping) is not supported by this appliance: use \
         block_device_mapping_v2."
    )]
    VolumesUnavailable(&'static str),
    #[error("marker [{0}] not found")]
    MarkerNotFound(String),
    /// A 409 in Nova's words (a port in use, more than one network for "auto").
    #[error("{0}")]
    Conflict(String),
    /// A 404 for something other than the server (a security group).
    #[error("{0}")]
    ItemNotFound(String),
    #[error("networking: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("Instance {server} is not attached to volume {volume}.")]
    NotAttached { server: String, volume: String },
    #[error(
        "Volume {volume} is in use by the running guest of server {server}; stop the server \
         to detach it."
    )]
    VolumeOpen { server: String, volume: String },
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot hand the request to the server's runner: {0}")]
    Fleet(#[from] FleetError),
    #[error("cannot read the console of server {id}: {source}")]
    Console { id: String, source: std::io::Error },
}

/// What `networks` asked for; [`nics::plan`] resolves it against Neutron.
#[derive(Debug, Clone, PartialEq)]
pub enum Networks {
    Auto,
    None,
    List(Vec<NetworkRequest>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkRequest {
    pub uuid: Option<String>,
    pub port: Option<String>,
    pub fixed_ip: Option<String>,
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewServer {
    pub name: String,
    pub description: Option<String>,
    pub flavor_ref: String,
    /// None or "" when booting from a volume.
    pub image_ref: Option<String>,
    /// `block_device_mapping_v2`: a boot volume and data volumes.
    pub block_devices: Vec<block_devices::BlockDeviceRequest>,
    pub networks: Networks,
    /// Security group names (or ids) for the ports made for the server; empty: the
    /// project's default group.
    pub security_groups: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub key_name: Option<String>,
    pub config_drive: String,
    pub disk_config: String,
    pub availability_zone: Option<String>,
    /// 2.74: the host an admin asks for.
    pub host: Option<String>,
    /// Scheduler hints: servers to share a box with, and not to.
    pub same_host: Vec<String>,
    pub different_host: Vec<String>,
    /// Scheduler hint `group`: the server group to join.
    pub group: Option<String>,
}

/// A list request, parsed.
#[derive(Debug, Clone, Default)]
pub struct ServerQuery {
    /// `all_tenants` (admins only).
    pub all_projects: bool,
    pub project_id: Option<String>,
    pub name: Option<regex::Regex>,
    /// Upper-case statuses; empty means any.
    pub statuses: Vec<String>,
    pub flavor: Option<String>,
    pub image: Option<String>,
    pub host: Option<String>,
    /// `ip`/`ip6`: no server has an address yet, so such a filter matches nothing.
    pub by_address: bool,
    pub limit: Option<usize>,
    pub marker: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ServerError {
    ServerError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// Nova's name rule: 1 to 255 printable characters, no leading or trailing whitespace.
pub fn check_name(field: &'static str, name: &str) -> Result<(), ServerError> {
    let len = name.chars().count();
    if len == 0 || len > 255 {
        return Err(invalid(
            field,
            format!("'{name}' must be 1 to 255 characters long"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "It must not contain control characters."));
    }
    if name.trim() != name {
        return Err(invalid(
            field,
            "It must not have leading or trailing whitespace.",
        ));
    }
    Ok(())
}

/// A reference given as an id or as a URL ending in one (Nova accepts both).
pub(super) fn last_segment(reference: &str) -> &str {
    reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(reference)
}

impl NewServer {
    fn validate(&self) -> Result<(), ServerError> {
        check_name("name", &self.name)?;
        if let Some(d) = &self.description {
            if d.chars().count() > 255 || d.chars().any(|c| c.is_control() && c != '\n') {
                return Err(invalid(
                    "description",
                    "It must be at most 255 printable characters.",
                ));
            }
        }
        if self.metadata.len() > MAX_METADATA_ITEMS {
            return Err(ServerError::BadRequest(format!(
                "Quota exceeded for metadata_items: the limit is {MAX_METADATA_ITEMS}"
            )));
        }
        for (k, v) in &self.metadata {
            if k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255 {
                return Err(invalid(
                    "metadata",
                    "Keys must be 1 to 255 characters and values at most 255.",
                ));
            }
        }
        if let Some(u) = &self.user_data {
            use base64::Engine;
            if u.len() > MAX_USER_DATA {
                return Err(invalid(
                    "user_data",
                    format!("It is longer than {MAX_USER_DATA} bytes."),
                ));
            }
            if base64::engine::general_purpose::STANDARD.decode(u).is_err() {
                return Err(ServerError::BadRequest(
                    "User data needs to be valid base 64.".into(),
                ));
            }
        }
        if let Some(az) = &self.availability_zone {
            if az != "nova" {
                return Err(ServerError::BadRequest(format!(
                    "The requested availability zone is not available: {az}"
                )));
            }
        }
        Ok(())
    }
}

fn snapshot(f: &flavors::Flavor) -> FlavorSnapshot {
    FlavorSnapshot {
        id: f.id.clone(),
        name: f.name.clone(),
        vcpus: f.vcpus,
        ram: f.ram,
        disk: f.disk,
        ephemeral: f.ephemeral,
        swap: f.swap,
        extra_specs: f.extra_specs.clone(),
    }
}

/// The flavor a create or resize names; Nova answers an unknown one with 400.
fn find_flavor(
    fleet: &Fleet,
    ctx: &RequestContext,
    reference: &str,
) -> Result<flavors::Flavor, ServerError> {
    let id = last_segment(reference);
    match flavors::get(fleet.flavors(), ctx, id) {
        Ok(f) => Ok(f),
        Err(FlavorError::NotFound(_)) => Err(ServerError::FlavorNotFound(id.to_owned())),
        Err(FlavorError::Storage(e)) => Err(e.into()),
        Err(other) => Err(ServerError::BadRequest(other.to_string())),
    }
}

/// Records a new server (BUILD) and hands it to its runner, which claims, clones and boots.
pub fn create(
    fleet: &Arc<Fleet>,
    ctx: &RequestContext,
    new: NewServer,
) -> Result<Server, ServerError> {
    new.validate()?;
    let project_id = ctx
        .project_id
        .clone()
        .ok_or(ServerError::Forbidden("servers:create"))?;
    // Nova's `zone:host` form names a host too (admins only).
    let (zone, zone_host) = match new.availability_zone.as_deref() {
        Some(az) => match az.split_once(':') {
            Some((zone, host)) => (
                Some(zone.to_owned()).filter(|z| !z.is_empty()),
                Some(host.to_owned()).filter(|h| !h.is_empty()),
            ),
            None => (Some(az.to_owned()), None),
        },
        None => (None, None),
    };
    let host = new.host.clone().or(zone_host);
    let hosts = fleet.placement.hosts().map_err(FleetError::from)?;
    if let Some(host) = &host {
        if !ctx.is_admin() {
            return Err(ServerError::Forbidden(
                "servers:create:requested_destination",
            ));
        }
        if !hosts.iter().any(|(h, _)| h == host) {
            return Err(ServerError::BadRequest(format!(
                "Compute host {host} could not be found."
            )));
        }
    }
    if let Some(zone) = &zone {
        if !hosts.iter().any(|(_, z)| z == zone) {
            return Err(ServerError::BadRequest(format!(
                "The requested availability zone is not available: {zone}"
            )));
        }
    }
    for id in new.same_host.iter().chain(&new.different_host) {
        // A hint may only name servers the caller may see (Nova looks them up in the
        // caller's context).
        get(fleet, ctx, id).map_err(|_| {
            ServerError::BadRequest(format!(
                "Scheduler hint names server {id}, which does not exist."
            ))
        })?;
    }
    if let Some(group) = &new.group {
        // Looked up as the caller (Nova does too): another project's group is not found.
        let visible = fleet.server_groups().group(group)?;
        if !visible.is_some_and(|g| ctx.can_see(&g.project_id)) {
            return Err(group_not_found(group));
        }
    }
    let placement = PlacementRequest {
        availability_zone: zone,
        host,
        same_host: new.same_host.clone(),
        different_host: new.different_host.clone(),
        group: new.group.clone(),
    };
    let flavor = find_flavor(fleet, ctx, &new.flavor_ref)?;
    if flavor.disabled {
        return Err(ServerError::BadRequest(format!(
            "Flavor {} is disabled.",
            flavor.id
        )));
    }
    let planned = block_devices::plan(
        fleet,
        ctx,
        &flavor,
        new.image_ref.as_deref(),
        &new.block_devices,
    )?;
    let networks = nics::plan(fleet, ctx, &new.networks, &new.security_groups)?.to_value();
    let server = Server {
        seq: 0,
        id: random::uuid()?,
        name: new.name,
        description: new.description,
        project_id,
        user_id: ctx.user_id.clone(),
        flavor: snapshot(&flavor),
        image_ref: planned.image_ref,
        boot: planned.boot,
        vm_state: VmState::Building,
        task_state: Some(TaskState::Scheduling),
        power_state: PowerState::NoState,
        host: None,
        fault: None,
        metadata: new.metadata,
        user_data: new.user_data,
        key_name: new.key_name,
        config_drive: new.config_drive,
        disk_config: new.disk_config,
        networks,
        monitor: None,
        resize: None,
        placement,
        created_at: Timestamp::now(),
        updated_at: None,
        launched_at: None,
    };
    let stored = fleet
        .servers()
        .insert_server(&server, saga::CREATE, "claim")?;
    // The member joins before its runner places it (Nova's order): placement reads the
    // members at each decision, so a member placed meanwhile is never missed.
    if let Some(group) = &stored.placement.group {
        let joined = fleet.server_groups().add_member(group, &stored.id);
        if !matches!(joined, Ok(true)) {
            fleet.servers().delete_server(&stored.id)?;
            return Err(match joined {
                Err(e) => e.into(),
                Ok(_) => group_not_found(group),
            });
        }
    }
    // The user's ports are taken now, so a second request naming them is refused at once
    // (Nova's PortInUse); the server that could not have them never existed.
    if let Err(e) = nics::reserve_ports(fleet, &stored) {
        let _ = nics::release(fleet, &stored.id);
        if let Some(group) = &stored.placement.group {
            fleet.server_groups().remove_member(group, &stored.id)?;
        }
        fleet.servers().delete_server(&stored.id)?;
        return Err(e);
    }
    fleet.send(&stored.id, Command::Create)?;
    Ok(stored)
}

/// Nova's answer to a `group` hint naming no group the caller may see.
fn group_not_found(group: &str) -> ServerError {
    ServerError::BadRequest(format!("Instance group {group} could not be found."))
}

/// The server's owner, as whom its sagas make what the server gets (volumes, ports): Nova
/// makes them in the server's project, whoever asked for the server.
pub(super) fn owner(s: &Server) -> RequestContext {
    RequestContext {
        user_id: s.user_id.clone(),
        user_name: String::new(),
        project_id: Some(s.project_id.clone()),
        project_name: None,
        roles: Vec::new(),
    }
}

/// The server if the caller may see it (its project's members, and admins).
pub fn get(fleet: &Fleet, ctx: &RequestContext, id: &str) -> Result<Server, ServerError> {
    fleet
        .servers()
        .server(id)?
        .filter(|s| ctx.can_see(&s.project_id))
        .ok_or_else(|| ServerError::NotFound(id.to_owned()))
}

/// One page of the servers the caller may see, newest first.
pub fn list(
    fleet: &Fleet,
    ctx: &RequestContext,
    q: &ServerQuery,
) -> Result<Vec<Server>, ServerError> {
    if q.all_projects && !ctx.is_admin() {
        return Err(ServerError::Forbidden("servers:index:get_all_tenants"));
    }
    let project = match ctx.visibility(q.all_projects) {
        None => return Ok(Vec::new()),
        Some(crate::context::Visibility::All) => q.project_id.clone(),
        Some(crate::context::Visibility::Project(p)) => Some(p),
    };
    let all = fleet.servers().servers(project.as_deref())?;
    let matching: Vec<Server> = all
        .into_iter()
        .filter(|s| {
            let status = state::status(s.vm_state, s.task_state);
            !q.by_address
                && q.name.as_ref().is_none_or(|re| re.is_match(&s.name))
                && (q.statuses.is_empty() || q.statuses.iter().any(|st| st == status))
                && q.flavor.as_ref().is_none_or(|f| *f == s.flavor.id)
                && q.image.as_ref().is_none_or(|i| *i == s.image_ref)
                && q.host.as_ref().is_none_or(|h| Some(h) == s.host.as_ref())
        })
        .collect();
    let start = match &q.marker {
        None => 0,
        Some(m) => {
            matching
                .iter()
                .position(|s| &s.id == m)
                .ok_or_else(|| ServerError::MarkerNotFound(m.clone()))?
                + 1
        }
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    Ok(matching.into_iter().skip(start).take(limit).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_server() -> NewServer {
        NewServer {
            name: "vm".into(),
            description: None,
            flavor_ref: "1".into(),
            image_ref: Some("img".into()),
            block_devices: Vec::new(),
            networks: Networks::Auto,
            security_groups: Vec::new(),
            metadata: BTreeMap::new(),
            user_data: None,
            key_name: None,
            config_drive: String::new(),
            disk_config: "MANUAL".into(),
            availability_zone: None,
            host: None,
            same_host: Vec::new(),
            different_host: Vec::new(),
            group: None,
        }
    }

    #[test]
    fn requests_are_checked_as_nova_checks_them() {
        assert!(new_server().validate().is_ok());
        for bad in ["", " lead", "trail ", "ctl\u{7}"] {
            let mut n = new_server();
            n.name = bad.into();
            assert!(
                matches!(n.validate(), Err(ServerError::InvalidField { .. })),
                "{bad:?}"
            );
        }
        let mut n = new_server();
        n.user_data = Some("not base64!".into());
        assert_eq!(
            n.validate().unwrap_err().to_string(),
            "User data needs to be valid base 64."
        );
        let mut n = new_server();
        n.networks = Networks::List(vec![]);
        assert!(n.validate().is_ok());
        let mut n = new_server();
        n.metadata = (0..129).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(n.validate().is_err());
        let mut n = new_server();
        n.availability_zone = Some("elsewhere".into());
        assert!(n.validate().is_err());
    }

    #[test]
    fn references_may_be_urls() {
        assert_eq!(last_segment("http://h/compute/v2.1/flavors/42"), "42");
        assert_eq!(last_segment("42"), "42");
        assert_eq!(last_segment("http://h/images/abc/"), "abc");
    }
}
