//! Neutron's application logic: networks ([`networks`]) and subnets ([`subnets`]), ports
//! and IPAM ([`ports`], [`ipam`]), the compute side's calls ([`device`]), security groups
//! and rules ([`groups`], [`rules`]), and the box's desired host state built from all of
//! them ([`host`]). Every change runs in one database
//! transaction and, once committed, bumps the [`NetworkService::changes`] counter that the
//! host reconciler watches.

pub mod agent;
mod bulk;
pub mod device;
pub mod groups;
pub mod host;
pub mod ipam;
pub mod networks;
pub mod ports;
pub mod rules;
pub mod store;
pub mod subnets;
#[cfg(test)]
mod tests;

pub use host::{host_spec, site_host_spec, SiteView};
pub use store::{Network, NetworkStore, NetworkTx, Port, SecurityGroup, SecurityGroupRule, Subnet};

use crate::context::RequestContext;
use crate::quota::{Limit, Quotas};
use crate::random::RandomError;
use crate::storage::Db;
use crate::store::StorageError;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::watch;

/// The `[network]` section of the configuration.
///
/// ```toml
/// [network]
/// nat = true          # masquerade IPv4 from guest subnets leaving the box
/// mtu = 1500          # MTU of networks created without one
/// manage_host = true  # build bridges, taps, dnsmasq and nftables for the networks
/// run_dir = "/run/outpost/net"  # dnsmasq's files (runtime state, rebuilt by reconciles)
/// ```
///
/// `run_dir` is outside the (private, 0700) state directory because dnsmasq re-reads its
/// reservations after dropping root; it survives a daemon restart, so running dnsmasqs are
/// adopted.
///
/// `manage_host = false` keeps the API and its state but touches nothing on the host (and
/// servers get no NICs): for a second outpostd on a box whose networking another one owns,
/// such as the test suite's many daemons.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSettings {
    pub nat: bool,
    pub mtu: u32,
    pub manage_host: bool,
    pub run_dir: std::path::PathBuf,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            nat: true,
            mtu: 1500,
            manage_host: true,
            run_dir: std::path::PathBuf::from("/run/outpost/net"),
        }
    }
}

/// Device owner of the DHCP port Neutron keeps on each network with DHCP.
pub const DHCP_OWNER: &str = "network:dhcp";
/// Device owner of the ports the compute side makes for servers.
pub const COMPUTE_OWNER: &str = "compute:nova";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// `resource` is Neutron's name for the kind (`Network`, `SecurityGroupRule`, ...).
    #[error("{resource} {id} could not be found.")]
    NotFound { resource: &'static str, id: String },
    #[error("Invalid input for operation: {0}")]
    InvalidInput(String),
    /// Another 400, with Neutron's error type.
    #[error("{message}")]
    BadRequest { kind: &'static str, message: String },
    /// A 409, with Neutron's error type.
    #[error("{message}")]
    Conflict { kind: &'static str, message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The host side failed (the agent's reconcile).
    #[error("{0}")]
    Internal(String),
}

impl NetworkError {
    pub fn not_found(resource: &'static str, id: &str) -> Self {
        NetworkError::NotFound {
            resource,
            id: id.to_owned(),
        }
    }

    pub fn conflict(kind: &'static str, message: impl Into<String>) -> Self {
        NetworkError::Conflict {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        NetworkError::InvalidInput(message.into())
    }

    /// Neutron's error `type` for this error.
    pub fn neutron_type(&self) -> String {
        match self {
            NetworkError::NotFound { resource, .. } => format!("{resource}NotFound"),
            NetworkError::InvalidInput(_) => "InvalidInput".to_owned(),
            NetworkError::BadRequest { kind, .. } | NetworkError::Conflict { kind, .. } => {
                (*kind).to_owned()
            }
            NetworkError::Forbidden(_) => "PolicyNotAuthorized".to_owned(),
            NetworkError::Random(_) | NetworkError::Storage(_) | NetworkError::Internal(_) => {
                "HTTPInternalServerError".into()
            }
        }
    }
}

impl From<ipam::IpamError> for NetworkError {
    fn from(e: ipam::IpamError) -> Self {
        match e {
            ipam::IpamError::Invalid(m) => NetworkError::InvalidInput(m),
            ipam::IpamError::Conflict { kind, message } => NetworkError::Conflict { kind, message },
        }
    }
}

impl From<rules::RuleError> for NetworkError {
    fn from(e: rules::RuleError) -> Self {
        NetworkError::BadRequest {
            kind: e.kind,
            message: e.message,
        }
    }
}

/// Neutron networking for the whole daemon: its door to its state and the change counter.
pub struct NetworkService {
    store: Arc<dyn NetworkStore>,
    /// Neutron's quotas (`network`, `subnet`, `port`, `security_group`,
    /// `security_group_rule`), checked in the unit of work of each create.
    quotas: Quotas,
    settings: NetworkSettings,
    changes: watch::Sender<u64>,
}

impl NetworkService {
    /// Neutron on this box's SQLite database, with OpenStack's default quotas.
    pub fn new(db: Db, settings: NetworkSettings) -> NetworkService {
        let quotas = Quotas::new(Default::default(), Arc::new(db.clone()));
        Self::with_store(Arc::new(db), quotas, settings)
    }

    /// Neutron on any store (a cluster's).
    pub fn with_store(
        store: Arc<dyn NetworkStore>,
        quotas: Quotas,
        settings: NetworkSettings,
    ) -> NetworkService {
        NetworkService {
            store,
            quotas,
            settings,
            changes: watch::Sender::new(0),
        }
    }

    pub fn settings(&self) -> &NetworkSettings {
        &self.settings
    }

    /// A counter bumped after every committed change that may alter [`Self::host_spec`]:
    /// the host reconciler waits on `changed()` and then rebuilds the spec.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The desired host state now.
    pub fn host_spec(&self) -> Result<outpost_netdev::HostNetworkSpec, NetworkError> {
        host::host_spec(self.store.as_ref(), self.settings.nat)
    }

    /// The desired host state now of a box that is a member of a site when `site` is given.
    pub fn site_host_spec(
        &self,
        site: Option<&SiteView>,
    ) -> Result<outpost_netdev::HostNetworkSpec, NetworkError> {
        host::site_host_spec(self.store.as_ref(), self.settings.nat, site)
    }

    /// Tells the watchers of [`Self::changes`] that the records changed elsewhere (another
    /// box of the site wrote them).
    pub fn changed_elsewhere(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// What `project_id` holds of each of Neutron's resources with a quota.
    pub fn quota_usage(
        &self,
        project_id: &str,
    ) -> Result<std::collections::BTreeMap<&'static str, i64>, NetworkError> {
        use crate::quota::usage::count;
        self.read(|c| {
            let mine = |p: &str| p == project_id;
            Ok(std::collections::BTreeMap::from([
                (
                    "network",
                    count(
                        c.list_networks()?
                            .iter()
                            .filter(|n| mine(&n.project_id))
                            .count(),
                    ),
                ),
                (
                    "subnet",
                    count(
                        c.list_subnets(None)?
                            .iter()
                            .filter(|s| mine(&s.project_id))
                            .count(),
                    ),
                ),
                (
                    "port",
                    count(
                        c.list_ports()?
                            .iter()
                            .filter(|p| mine(&p.project_id))
                            .count(),
                    ),
                ),
                (
                    "security_group",
                    count(
                        c.list_groups()?
                            .iter()
                            .filter(|g| mine(&g.project_id))
                            .count(),
                    ),
                ),
                (
                    "security_group_rule",
                    count(
                        c.list_rules(None)?
                            .iter()
                            .filter(|r| mine(&r.project_id))
                            .count(),
                    ),
                ),
            ]))
        })
    }

    /// Runs `f` on one consistent view of the records.
    fn read<T>(
        &self,
        mut f: impl FnMut(&dyn NetworkTx) -> Result<T, NetworkError>,
    ) -> Result<T, NetworkError> {
        let mut out = None;
        self.store.read_networks(&mut |c| {
            out = Some(f(c)?);
            Ok(())
        })?;
        out.ok_or_else(|| NetworkError::Internal("the network store ran no read".into()))
    }

    /// Runs `f` as one unit of work (again, on fresh records, if a store without locks lost
    /// a race) and, once it committed, tells the watchers.
    fn change<T>(
        &self,
        mut f: impl FnMut(&dyn NetworkTx) -> Result<T, NetworkError>,
    ) -> Result<T, NetworkError> {
        let mut out = None;
        self.store.write_networks(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        out.ok_or_else(|| NetworkError::Internal("the network store ran no change".into()))
    }
}

impl NetworkService {
    /// `project_id`'s limit of `resource`, read before the unit of work that checks it: the
    /// limits are behind their own door, which one box's store cannot enter from inside a
    /// unit of work (its one connection is held), and a limit changing meanwhile is as if it
    /// changed just after.
    fn quota(&self, project_id: &str, resource: &'static str) -> Result<Limit, NetworkError> {
        Ok(self.quotas.limit(project_id, resource)?)
    }
}

/// Neutron's quota check, inside the unit of work that creates one more `resource`: `held`
/// was counted in it, so a concurrent create either was seen or makes this one run again
/// (etcd) or waits for it (SQLite's write lock), and two cannot both take the last one.
fn within_quota(resource: &'static str, limit: Limit, held: usize) -> Result<(), NetworkError> {
    let held = i64::try_from(held).unwrap_or(i64::MAX);
    crate::quota::check(resource, limit, held, 1).map_err(|_| {
        NetworkError::conflict(
            "OverQuota",
            format!("Quota exceeded for resources: ['{resource}']."),
        )
    })
}

/// The project a new resource belongs to: the caller's, or (admins only) the one the body
/// names with `project_id` / `tenant_id`.
fn owner(
    ctx: &RequestContext,
    project_id: Option<&str>,
    tenant_id: Option<&str>,
) -> Result<String, NetworkError> {
    let own = ctx.project_id.clone().unwrap_or_default();
    let asked = match (project_id, tenant_id) {
        (Some(p), Some(t)) if p != t => {
            return Err(NetworkError::invalid(
                "project_id and tenant_id do not match",
            ))
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => return Ok(own),
    };
    if asked != own && !ctx.is_admin() {
        return Err(NetworkError::Forbidden(
            "Only an admin may create a resource for another project.".into(),
        ));
    }
    Ok(asked.to_owned())
}

fn new_id() -> Result<String, NetworkError> {
    Ok(crate::random::uuid()?)
}

/// Neutron caps names and descriptions at 255 characters.
fn check_text(field: &str, v: &str) -> Result<(), NetworkError> {
    if v.chars().count() > 255 {
        return Err(NetworkError::invalid(format!(
            "'{field}' exceeds maximum length of 255"
        )));
    }
    Ok(())
}
