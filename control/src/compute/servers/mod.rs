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
pub mod console;
pub mod evacuation;
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
pub(crate) use runner::fault;
pub use runner::Command;
pub use saga::{root_disk_bytes, wanted};

use super::flavors::{self, FlavorError};
use super::keypairs::{self, KeyPairError};
use crate::context::RequestContext;
use crate::quota::ServerQuota;
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
/// The most servers one create makes: its claims are one etcd transaction in a site.
const MAX_COUNT: usize = 32;
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
    /// Over one of Nova's quotas (a 403, as Nova answers).
    #[error(transparent)]
    Quota(#[from] crate::quota::QuotaError),
    #[error("cannot hand the request to the server's runner: {0}")]
    Fleet(#[from] FleetError),
    /// A multi-create that cannot place `min_count` servers now.
    #[error("{0}")]
    NoRoom(String),
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
    /// Nova's `adminPass`: the one asked for or the one generated for the answer.
    pub admin_pass: Option<String>,
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
    /// Nova's multi-create: at least `min_count` servers or none, up to `max_count`.
    pub min_count: usize,
    pub max_count: usize,
}

/// What a create made: its servers (one, or a multi-create's, in order) and the
/// reservation id they share.
#[derive(Debug, Clone)]
pub struct Created {
    pub servers: Vec<Server>,
    pub reservation_id: String,
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
    /// `ip` (4) and `ip6` (6): a server matches when one of its addresses of that IP version
    /// matches each.
    pub addresses: Vec<(u8, regex::Regex)>,
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
        for (k, v) in &self.metadata {
            if k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255 {
                return Err(invalid(
                    "metadata",
                    "Keys must be 1 to 255 characters and values at most 255.",
                ));
            }
            if let Some(reason) = evacuation::invalid_value(k, v) {
                return Err(invalid("metadata", reason));
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
        if self.min_count == 0 || self.min_count > self.max_count {
            return Err(ServerError::BadRequest(
                "min_count must be <= max_count".into(),
            ));
        }
        if self.max_count > MAX_COUNT {
            return Err(ServerError::BadRequest(format!(
                "max_count: this appliance creates at most {MAX_COUNT} servers per request."
            )));
        }
        if self.max_count > 1 {
            self.validate_multiple()?;
        }
        // The zone is checked against the hosts' zones when the server is made (`create`).
        Ok(())
    }
}

impl NewServer {
    /// What a multi-create cannot share between its servers: a port, a fixed address, an
    /// existing volume (Nova's refusals).
    fn validate_multiple(&self) -> Result<(), ServerError> {
        let refuse = |why: &str| {
            Err(ServerError::BadRequest(format!(
                "Failed to launch instances: {why}"
            )))
        };
        if let Networks::List(list) = &self.networks {
            if list.iter().any(|n| n.port.is_some()) {
                return refuse(
                    "Unable to launch multiple instances with a single configured port ID. \
                     Please launch your instance one by one with different ports.",
                );
            }
            if list.iter().any(|n| n.fixed_ip.is_some()) {
                return refuse("max_count cannot be greater than 1 if an fixed_ip is specified.");
            }
        }
        let existing_volume = self
            .block_devices
            .iter()
            .any(|b| matches!(b.source, block_devices::RequestedSource::Volume(_)));
        if existing_volume {
            return refuse(
                "Unable to launch multiple instances with a single configured volume. Please \
                 launch your instance one by one with different volumes.",
            );
        }
        Ok(())
    }
}

/// Nova's multi-create name: `<name>-<n>`, n from 1 (its default
/// `multi_instance_display_name_template`); a lone server keeps its name.
fn nth_name(name: &str, index: usize, of: usize) -> String {
    if of > 1 {
        format!("{name}-{}", index + 1)
    } else {
        name.to_owned()
    }
}

/// Takes `s` out of what its create recorded: its group membership and its record.
fn unrecord(fleet: &Fleet, s: &Server) -> Result<(), ServerError> {
    if let Some(group) = &s.placement.group {
        fleet.server_groups().remove_member(group, &s.id)?;
    }
    fleet.servers().delete_server(&s.id)?;
    Ok(())
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

/// A new server's `key_name` names one of its creator's own key pairs (never another
/// user's, admin or not); Nova answers one that does not exist with 400.
fn key_pair(
    fleet: &Fleet,
    ctx: &RequestContext,
    name: &str,
) -> Result<keypairs::KeyPair, ServerError> {
    match keypairs::get(fleet.keypairs(), ctx, None, name) {
        Ok(pair) => Ok(pair),
        Err(KeyPairError::Storage(e)) => Err(e.into()),
        Err(other) => Err(ServerError::BadRequest(other.to_string())),
    }
}

/// Records a new server (BUILD) and hands it to its runner, which claims, clones and boots.
/// A multi-create (`max_count` > 1) places its servers first, all through placement's one
/// decision: as many as fit up to `max_count`, at least `min_count` or none is made (409
/// with the scheduler's reasons); only the placed ones are recorded and handed on.
pub fn create(
    fleet: &Arc<Fleet>,
    ctx: &RequestContext,
    new: NewServer,
) -> Result<Created, ServerError> {
    new.validate()?;
    let project_id = ctx
        .project_id
        .clone()
        .ok_or(ServerError::Forbidden("servers:create"))?;
    // Nova's metadata_items: a limit on one server's metadata, nothing to count elsewhere.
    let metadata_items = fleet.quotas().limit(&project_id, "metadata_items")?;
    let requested = i64::try_from(new.metadata.len()).unwrap_or(i64::MAX);
    crate::quota::check("metadata_items", metadata_items, 0, requested)?;
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
    let volume_home = block_devices::home_of(fleet, ctx, &new.block_devices)?;
    if let Some((home, what)) = &volume_home {
        let refused = |why: String| {
            ServerError::Conflict(format!(
                "The server cannot run where its {what} is: {why}. A volume attaches only to \
                 a server on its own box."
            ))
        };
        match hosts.iter().find(|(h, _)| h == home) {
            None => return Err(refused(format!("its box {home} is not a compute host"))),
            Some((_, z)) if zone.as_ref().is_some_and(|zone| zone != z) => {
                return Err(refused(format!("its box {home} is in zone {z}")));
            }
            _ => {}
        }
        if let Some(h) = host.as_ref().filter(|h| *h != home) {
            return Err(refused(format!("it is on box {home}, not on host {h}")));
        }
    }
    let placement = PlacementRequest {
        availability_zone: zone,
        host,
        same_host: new.same_host.clone(),
        different_host: new.different_host.clone(),
        group: new.group.clone(),
        volume_home: volume_home.map(|(home, _)| home),
    };
    let key_data = match &new.key_name {
        Some(name) => Some(key_pair(fleet, ctx, name)?.public_key),
        None => None,
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
    let template = Server {
        seq: 0,
        id: String::new(),
        name: new.name.clone(),
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
        key_data,
        admin_pass: new.admin_pass,
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
    let reservation_id = format!("r-{}", &random::uuid()?[..8]);
    let mut recorded: Vec<Server> = Vec::with_capacity(new.max_count);
    for index in 0..new.max_count {
        let server = Server {
            id: random::uuid()?,
            name: nth_name(&new.name, index, new.max_count),
            ..template.clone()
        };
        match record(fleet, &server) {
            Ok(stored) => recorded.push(stored),
            Err(e) => {
                for s in &recorded {
                    unrecord(fleet, s)?;
                }
                return Err(e);
            }
        }
    }
    if new.max_count > 1 {
        let placed = place_together(fleet, &recorded, new.min_count);
        let kept = match placed {
            Ok(n) => n,
            Err(e) => {
                for s in &recorded {
                    unrecord(fleet, s)?;
                }
                return Err(e);
            }
        };
        // The servers that found no room were never made.
        for s in recorded.split_off(kept) {
            unrecord(fleet, &s)?;
        }
    }
    for s in &recorded {
        fleet.send(&s.id, Command::Create)?;
    }
    Ok(Created {
        servers: recorded,
        reservation_id,
    })
}

/// Records `server` (BUILD, its create at step `claim`), joins its group and takes the
/// ports it names; nothing stays recorded if any of these fails.
fn record(fleet: &Fleet, server: &Server) -> Result<Server, ServerError> {
    // Nova's instances, cores and ram: counted with the insert, in its write; a group's
    // members as the server joins. Both limits are read before anything is written.
    let quota = ServerQuota::of(fleet.quotas(), &server.project_id)?;
    let members_limit = fleet
        .quotas()
        .limit(&server.project_id, "server_group_members")?;
    let stored = fleet
        .servers()
        .insert_server(server, saga::CREATE, "claim", &quota)?;
    // The member joins before it is placed (Nova's order): placement reads the members at
    // each decision, so a member placed meanwhile is never missed.
    if let Some(group) = &stored.placement.group {
        let joined = fleet
            .server_groups()
            .add_member(group, &stored.id, members_limit);
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
        unrecord(fleet, &stored)?;
        return Err(e);
    }
    Ok(stored)
}

/// Claims room for a multi-create's servers in one decision (their runners then find their
/// claims held): how many, from the first, were placed, at least `at_least`.
fn place_together(
    fleet: &Fleet,
    servers: &[Server],
    at_least: usize,
) -> Result<usize, ServerError> {
    let Some(first) = servers.first() else {
        return Ok(0);
    };
    let wanted = saga::wanted(fleet, first).map_err(FleetError::from)?;
    let ids: Vec<String> = servers.iter().map(|s| s.id.clone()).collect();
    let claimed = fleet.placement.claim_many(
        &ids,
        at_least,
        &first.flavor,
        first.boot.volume_backed(),
        &wanted,
    );
    match claimed {
        Ok(claims) => Ok(claims.len()),
        Err(placement::PlacementError::NoValidHost(n)) => Err(ServerError::NoRoom(n.summary())),
        Err(e) => Err(FleetError::from(e).into()),
    }
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

/// Whether `addresses` (Nova's `{network: [{addr, version}]}`) has an address of IP `version`
/// that `re` matches.
fn has_address(addresses: &serde_json::Value, version: u8, re: &regex::Regex) -> bool {
    let Some(networks) = addresses.as_object() else {
        return false;
    };
    networks
        .values()
        .filter_map(|a| a.as_array())
        .flatten()
        .any(|a| {
            a["version"].as_u64() == Some(u64::from(version))
                && a["addr"].as_str().is_some_and(|addr| re.is_match(addr))
        })
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
            q.name.as_ref().is_none_or(|re| re.is_match(&s.name))
                && (q.statuses.is_empty() || q.statuses.iter().any(|st| st == status))
                && q.flavor.as_ref().is_none_or(|f| *f == s.flavor.id)
                && q.image.as_ref().is_none_or(|i| *i == s.image_ref)
                && q.host.as_ref().is_none_or(|h| Some(h) == s.host.as_ref())
        })
        .collect();
    let matching = if q.addresses.is_empty() {
        matching
    } else {
        let mut kept = Vec::with_capacity(matching.len());
        for s in matching {
            let addresses = nics::addresses(fleet, &s)?;
            if q.addresses
                .iter()
                .all(|(v, re)| has_address(&addresses, *v, re))
            {
                kept.push(s);
            }
        }
        kept
    };
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

/// `OS-EXT-AZ:availability_zone`: the zone asked for, else, once placed, its host's zone
/// (`zones`, by host; Nova's default when the host is not there); "" before placement, as
/// Nova shows it.
pub fn availability_zone<'a>(s: &'a Server, zones: &'a BTreeMap<String, String>) -> &'a str {
    match (&s.placement.availability_zone, &s.host) {
        (Some(zone), _) => zone,
        (None, Some(host)) => zones
            .get(host)
            .map_or(crate::compute::aggregates::DEFAULT_ZONE, String::as_str),
        (None, None) => "",
    }
}

/// Nova's hostname from a display name: lower case, runs of other characters as `-`.
pub fn hostname(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let cut: String = trimmed.chars().take(63).collect();
    if cut.is_empty() {
        "server".to_owned()
    } else {
        cut
    }
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
            admin_pass: None,
            config_drive: String::new(),
            disk_config: "MANUAL".into(),
            availability_zone: None,
            host: None,
            same_host: Vec::new(),
            different_host: Vec::new(),
            group: None,
            min_count: 1,
            max_count: 1,
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
        // How many items is the project's metadata_items quota's to say (403 at create, as
        // Nova), not a fixed cap here.
        n.metadata = (0..129).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(n.validate().is_ok());
        let mut n = new_server();
        n.metadata
            .insert(evacuation::POLICY_KEY.into(), "migrate".into());
        assert!(matches!(
            n.validate(),
            Err(ServerError::InvalidField {
                field: "metadata",
                ..
            })
        ));
        n.metadata
            .insert(evacuation::POLICY_KEY.into(), "stay".into());
        assert!(n.validate().is_ok());
    }

    #[test]
    fn multi_creates_are_checked_as_nova_checks_them() {
        let counts = |min, max| NewServer {
            min_count: min,
            max_count: max,
            ..new_server()
        };
        assert!(counts(2, 3).validate().is_ok());
        assert_eq!(
            counts(3, 2).validate().unwrap_err().to_string(),
            "min_count must be <= max_count"
        );
        assert!(counts(1, MAX_COUNT + 1).validate().is_err());
        let mut with_port = counts(1, 2);
        with_port.networks = Networks::List(vec![NetworkRequest {
            port: Some("p".into()),
            ..NetworkRequest::default()
        }]);
        assert!(with_port
            .validate()
            .unwrap_err()
            .to_string()
            .contains("single configured port ID"));
        with_port.max_count = 1;
        assert!(with_port.validate().is_ok(), "one server may have the port");
        let mut with_ip = counts(2, 2);
        with_ip.networks = Networks::List(vec![NetworkRequest {
            uuid: Some("n".into()),
            fixed_ip: Some("10.0.0.5".into()),
            ..NetworkRequest::default()
        }]);
        assert!(with_ip
            .validate()
            .unwrap_err()
            .to_string()
            .contains("fixed_ip"));
        assert_eq!(
            (0..3).map(|i| nth_name("web", i, 3)).collect::<Vec<_>>(),
            ["web-1", "web-2", "web-3"]
        );
        assert_eq!(nth_name("web", 0, 1), "web");
    }

    #[test]
    fn references_may_be_urls() {
        assert_eq!(last_segment("http://h/compute/v2.1/flavors/42"), "42");
        assert_eq!(last_segment("42"), "42");
        assert_eq!(last_segment("http://h/images/abc/"), "abc");
    }
}
