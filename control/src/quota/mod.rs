//! Quotas as OpenStack has them: Nova's (`instances`, `cores`, `ram`, `key_pairs`, ...),
//! Cinder's (`volumes`, `gigabytes`, `snapshots`, and each per volume type) and Neutron's
//! (`network`, `subnet`, `port`, `security_group`, `security_group_rule`). A project's limit
//! is its override when an admin set one ([`QuotaStore`]), else the deployment's default
//! (the `[quota]` section, else OpenStack's). -1 means unlimited.
//!
//! Limits are only read here; each domain checks its own in the same unit of work as the
//! create it guards (Neutron's in `NetworkStore::write_networks`), so concurrent creates
//! cannot overshoot.

pub mod store;
pub mod usage;

pub use store::QuotaStore;

use crate::context::RequestContext;
use crate::store::StorageError;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The OpenStack service a quota resource belongs to: each serves and sets only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Compute,
    Volume,
    Network,
}

/// A limit: a count (or MiB, GiB) a project may hold, or [`UNLIMITED`].
pub type Limit = i64;

/// OpenStack's spelling of "no limit".
pub const UNLIMITED: Limit = -1;

/// Every resource with a quota: its name as the service's API spells it, its service, and
/// OpenStack's default limit (nova.conf `[quota]`, cinder.conf `quota_*`, neutron.conf
/// `[quotas]`). Cinder's per volume type limits are unlimited unless set, as Cinder's are.
pub const RESOURCES: &[(&str, Service, Limit)] = &[
    ("instances", Service::Compute, 10),
    ("cores", Service::Compute, 20),
    ("ram", Service::Compute, 51200),
    ("key_pairs", Service::Compute, 100),
    ("server_groups", Service::Compute, 10),
    ("server_group_members", Service::Compute, 10),
    ("metadata_items", Service::Compute, 128),
    ("volumes", Service::Volume, 10),
    ("gigabytes", Service::Volume, 1000),
    ("snapshots", Service::Volume, 10),
    ("volumes_thin", Service::Volume, UNLIMITED),
    ("gigabytes_thin", Service::Volume, UNLIMITED),
    ("snapshots_thin", Service::Volume, UNLIMITED),
    ("volumes_thick", Service::Volume, UNLIMITED),
    ("gigabytes_thick", Service::Volume, UNLIMITED),
    ("snapshots_thick", Service::Volume, UNLIMITED),
    ("network", Service::Network, 100),
    ("subnet", Service::Network, 100),
    ("port", Service::Network, 500),
    ("security_group", Service::Network, 10),
    ("security_group_rule", Service::Network, 100),
];

/// The resource `name` with its service, if it has a quota.
pub fn resource(name: &str) -> Option<(&'static str, Service)> {
    RESOURCES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(n, s, _)| (n, s))
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// Nova's message (`OverQuota`), which the other services' answers reuse.
    #[error(
        "Quota exceeded for {resource}: Requested {requested}, but already used {used} of \
         {limit} {resource}"
    )]
    Exceeded {
        resource: &'static str,
        requested: i64,
        used: i64,
        limit: Limit,
    },
    #[error("Bad key(s) in quota set: {0} (known: {1})")]
    UnknownResource(String, String),
    #[error("Quota limit {value} for {resource} must be greater than or equal to -1.")]
    BelowUnlimited { resource: String, value: i64 },
    #[error("Policy doesn't allow {0} to be performed.")]
    Forbidden(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The deployment's default limits: OpenStack's, overlaid by the config's `[quota]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaDefaults {
    limits: BTreeMap<&'static str, Limit>,
}

impl Default for QuotaDefaults {
    fn default() -> Self {
        QuotaDefaults {
            limits: RESOURCES.iter().map(|&(n, _, l)| (n, l)).collect(),
        }
    }
}

impl QuotaDefaults {
    /// OpenStack's defaults with `overrides` (the `[quota]` section: resource = limit) laid
    /// over them; an unknown resource or a limit below -1 is refused, not ignored.
    pub fn with(overrides: &BTreeMap<String, Limit>) -> Result<QuotaDefaults, QuotaError> {
        let mut out = QuotaDefaults::default();
        for (name, &value) in overrides {
            let (resource, _) = resource(name).ok_or_else(|| unknown(name))?;
            check_value(name, value)?;
            out.limits.insert(resource, value);
        }
        Ok(out)
    }

    /// The default limit of `resource` (one of [`RESOURCES`]).
    pub fn of(&self, resource: &str) -> Limit {
        self.limits.get(resource).copied().unwrap_or(UNLIMITED)
    }
}

fn unknown(name: &str) -> QuotaError {
    let known: Vec<&str> = RESOURCES.iter().map(|(n, _, _)| *n).collect();
    QuotaError::UnknownResource(name.to_owned(), known.join(", "))
}

fn check_value(resource: &str, value: Limit) -> Result<(), QuotaError> {
    if value < UNLIMITED {
        return Err(QuotaError::BelowUnlimited {
            resource: resource.to_owned(),
            value,
        });
    }
    Ok(())
}

/// Whether `requested` more fit beside `used` under `limit`; the error names all three.
pub fn check(
    resource: &'static str,
    limit: Limit,
    used: i64,
    requested: i64,
) -> Result<(), QuotaError> {
    if limit == UNLIMITED || used + requested <= limit {
        return Ok(());
    }
    Err(QuotaError::Exceeded {
        resource,
        requested,
        used,
        limit,
    })
}

/// Nova's limits on a project's servers (`instances`, `cores`, `ram`), checked together
/// in the write that records a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerQuota {
    pub instances: Limit,
    pub cores: Limit,
    pub ram: Limit,
}

impl ServerQuota {
    /// No limits: for the stores' own suites, and what a project with every limit at -1 has.
    pub const UNLIMITED: ServerQuota = ServerQuota {
        instances: UNLIMITED,
        cores: UNLIMITED,
        ram: UNLIMITED,
    };

    pub fn of(quotas: &Quotas, project_id: &str) -> Result<ServerQuota, StorageError> {
        Ok(ServerQuota {
            instances: quotas.limit(project_id, "instances")?,
            cores: quotas.limit(project_id, "cores")?,
            ram: quotas.limit(project_id, "ram")?,
        })
    }

    pub fn is_unlimited(&self) -> bool {
        *self == ServerQuota::UNLIMITED
    }

    /// Whether one more server of `vcpus` and `ram` MB fits beside `held`, the (vcpus, ram)
    /// of the project's servers; Nova's order: instances, then cores, then ram.
    pub fn check(&self, held: &[(i64, i64)], vcpus: i64, ram: i64) -> Result<(), QuotaError> {
        let count = i64::try_from(held.len()).unwrap_or(i64::MAX);
        check("instances", self.instances, count, 1)?;
        check("cores", self.cores, held.iter().map(|h| h.0).sum(), vcpus)?;
        check("ram", self.ram, held.iter().map(|h| h.1).sum(), ram)
    }
}

/// Cinder's limits on a project's volumes and snapshots (`volumes`, `gigabytes`,
/// `snapshots`, and those of one volume type), checked in the write that records a volume or
/// a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeQuota {
    pub volume_type: String,
    pub volumes: Limit,
    pub gigabytes: Limit,
    pub snapshots: Limit,
    /// `volumes_<type>`, `gigabytes_<type>` and `snapshots_<type>` of
    /// [`Self::volume_type`].
    pub of_type: [(&'static str, Limit); 3],
}

impl VolumeQuota {
    /// `project_id`'s limits for one more volume of `volume_type`.
    pub fn of(
        quotas: &Quotas,
        project_id: &str,
        volume_type: &str,
    ) -> Result<VolumeQuota, StorageError> {
        let typed = |kind: &'static str| -> Result<(&'static str, Limit), StorageError> {
            match resource(&format!("{kind}_{volume_type}")) {
                Some((name, _)) => Ok((name, quotas.limit(project_id, name)?)),
                // A type with no quota of its own: only the project's totals apply.
                None => Ok((kind, UNLIMITED)),
            }
        };
        Ok(VolumeQuota {
            volume_type: volume_type.to_owned(),
            volumes: quotas.limit(project_id, "volumes")?,
            gigabytes: quotas.limit(project_id, "gigabytes")?,
            snapshots: quotas.limit(project_id, "snapshots")?,
            of_type: [typed("volumes")?, typed("gigabytes")?, typed("snapshots")?],
        })
    }

    /// No limits on volumes of `volume_type`: for the stores' own suites.
    pub fn unlimited(volume_type: &str) -> VolumeQuota {
        VolumeQuota {
            volume_type: volume_type.to_owned(),
            volumes: UNLIMITED,
            gigabytes: UNLIMITED,
            snapshots: UNLIMITED,
            of_type: [
                ("volumes", UNLIMITED),
                ("gigabytes", UNLIMITED),
                ("snapshots", UNLIMITED),
            ],
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.volumes == UNLIMITED
            && self.gigabytes == UNLIMITED
            && self.snapshots == UNLIMITED
            && self.of_type.iter().all(|&(_, l)| l == UNLIMITED)
    }

    /// Whether one more volume of `size` GiB fits beside the project's `volumes` and
    /// `snapshots` (snapshots' sizes count in `gigabytes`, as in Cinder).
    pub fn check(
        &self,
        volumes: &[crate::volume::Volume],
        snapshots: &[crate::volume::Snapshot],
        size: i64,
    ) -> Result<(), QuotaError> {
        let held = Held::of(self, volumes, snapshots);
        let [(volumes_t, volumes_limit), (gigabytes_t, gigabytes_limit), _] = self.of_type;
        check("volumes", self.volumes, held.volumes, 1)?;
        check("gigabytes", self.gigabytes, held.gigabytes, size)?;
        check(volumes_t, volumes_limit, held.typed_volumes, 1)?;
        check(gigabytes_t, gigabytes_limit, held.typed_gigabytes, size)
    }

    /// Whether one more snapshot of `size` GiB, of a volume of [`Self::volume_type`], fits
    /// beside the project's `volumes` and `snapshots`.
    pub fn check_snapshot(
        &self,
        volumes: &[crate::volume::Volume],
        snapshots: &[crate::volume::Snapshot],
        size: i64,
    ) -> Result<(), QuotaError> {
        let held = Held::of(self, volumes, snapshots);
        let [_, (gigabytes_t, gigabytes_limit), (snapshots_t, snapshots_limit)] = self.of_type;
        check("snapshots", self.snapshots, held.snapshots, 1)?;
        check("gigabytes", self.gigabytes, held.gigabytes, size)?;
        check(snapshots_t, snapshots_limit, held.typed_snapshots, 1)?;
        check(gigabytes_t, gigabytes_limit, held.typed_gigabytes, size)
    }
}

/// What a project holds, in total and of one volume type, as Cinder counts it.
struct Held {
    volumes: i64,
    snapshots: i64,
    /// Volumes' and snapshots' sizes.
    gigabytes: i64,
    typed_volumes: i64,
    typed_snapshots: i64,
    typed_gigabytes: i64,
}

impl Held {
    fn of(
        quota: &VolumeQuota,
        volumes: &[crate::volume::Volume],
        snapshots: &[crate::volume::Snapshot],
    ) -> Held {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let typed: Vec<_> = volumes
            .iter()
            .filter(|v| v.volume_type == quota.volume_type)
            .collect();
        let typed_snaps: Vec<_> = snapshots
            .iter()
            .filter(|s| typed.iter().any(|v| v.id == s.volume_id))
            .collect();
        Held {
            volumes: count(volumes.len()),
            snapshots: count(snapshots.len()),
            gigabytes: volumes.iter().map(|v| v.size).sum::<i64>()
                + snapshots.iter().map(|s| s.size).sum::<i64>(),
            typed_volumes: count(typed.len()),
            typed_snapshots: count(typed_snaps.len()),
            typed_gigabytes: typed.iter().map(|v| v.size).sum::<i64>()
                + typed_snaps.iter().map(|s| s.size).sum::<i64>(),
        }
    }
}

/// A project's limits: the deployment's defaults and the door to the projects' overrides.
/// Cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    defaults: Arc<QuotaDefaults>,
    store: Arc<dyn QuotaStore>,
}

impl Quotas {
    pub fn new(defaults: QuotaDefaults, store: Arc<dyn QuotaStore>) -> Quotas {
        Quotas {
            defaults: Arc::new(defaults),
            store,
        }
    }

    /// The same limits set per project over other defaults (the daemon's configured ones).
    pub fn with_defaults(self, defaults: QuotaDefaults) -> Quotas {
        Quotas {
            defaults: Arc::new(defaults),
            ..self
        }
    }

    /// OpenStack's defaults, with the limits set per project in a private in-memory database:
    /// for the unit tests of the domains that check quotas.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Quotas {
        let db = crate::storage::Db::open_in_memory().expect("an in-memory SQLite database opens");
        Quotas::new(QuotaDefaults::default(), Arc::new(db))
    }

    /// The default limits of `service`'s resources, in [`RESOURCES`] order.
    pub fn defaults(&self, service: Service) -> Vec<(&'static str, Limit)> {
        RESOURCES
            .iter()
            .filter(|(_, s, _)| *s == service)
            .map(|&(n, _, _)| (n, self.defaults.of(n)))
            .collect()
    }

    /// The defaults, as read through a project's URL: its own for a member, any for an admin
    /// (the answer names the project, which another project's member may not learn of).
    pub fn defaults_for(
        &self,
        ctx: &RequestContext,
        project_id: &str,
        service: Service,
        rule: &'static str,
    ) -> Result<Vec<(&'static str, Limit)>, QuotaError> {
        if !ctx.can_see(project_id) {
            return Err(QuotaError::Forbidden(rule));
        }
        Ok(self.defaults(service))
    }

    /// `project_id`'s limit of `resource` (one of [`RESOURCES`]).
    pub fn limit(&self, project_id: &str, resource: &'static str) -> Result<Limit, StorageError> {
        let overrides = self.store.quota_overrides(project_id)?;
        Ok(overrides
            .get(resource)
            .copied()
            .unwrap_or_else(|| self.defaults.of(resource)))
    }

    /// `project_id`'s limits of `service`'s resources, in [`RESOURCES`] order.
    pub fn limits(
        &self,
        project_id: &str,
        service: Service,
    ) -> Result<Vec<(&'static str, Limit)>, StorageError> {
        let overrides = self.store.quota_overrides(project_id)?;
        Ok(self
            .defaults(service)
            .into_iter()
            .map(|(n, d)| (n, overrides.get(n).copied().unwrap_or(d)))
            .collect())
    }

    /// The limits a caller may read: its own project's, or any project's for an admin.
    pub fn limits_for(
        &self,
        ctx: &RequestContext,
        project_id: &str,
        service: Service,
        rule: &'static str,
    ) -> Result<Vec<(&'static str, Limit)>, QuotaError> {
        if !ctx.can_see(project_id) {
            return Err(QuotaError::Forbidden(rule));
        }
        Ok(self.limits(project_id, service)?)
    }

    /// Sets `project_id`'s limits of `service`'s resources named in `changes` (admins only);
    /// nothing is written unless every name and value is valid. Returns the project's limits
    /// after the change.
    pub fn set(
        &self,
        ctx: &RequestContext,
        project_id: &str,
        service: Service,
        changes: &BTreeMap<String, Limit>,
        rule: &'static str,
    ) -> Result<Vec<(&'static str, Limit)>, QuotaError> {
        if !ctx.is_admin() {
            return Err(QuotaError::Forbidden(rule));
        }
        let mut valid = BTreeMap::new();
        for (name, &value) in changes {
            let (resource, owner) = resource(name).ok_or_else(|| unknown(name))?;
            if owner != service {
                return Err(unknown(name));
            }
            check_value(name, value)?;
            valid.insert(resource.to_owned(), value);
        }
        if !valid.is_empty() {
            self.store.set_quota_overrides(project_id, &valid)?;
        }
        Ok(self.limits(project_id, service)?)
    }

    /// Drops `project_id`'s overrides of `service`'s resources, so the defaults apply again
    /// (Neutron's `DELETE /quotas/{project_id}`, Cinder's and Nova's delete). Admins only.
    pub fn reset(
        &self,
        ctx: &RequestContext,
        project_id: &str,
        service: Service,
        rule: &'static str,
    ) -> Result<(), QuotaError> {
        if !ctx.is_admin() {
            return Err(QuotaError::Forbidden(rule));
        }
        let names: Vec<&str> = self.defaults(service).into_iter().map(|(n, _)| n).collect();
        Ok(self.store.clear_quota_overrides(project_id, &names)?)
    }
}

#[cfg(test)]
mod tests;
