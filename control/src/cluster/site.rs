//! The boxes this outpostd answers for: itself alone, or every member of its cluster. Nova's
//! os-services and os-hypervisors read them here; a service disable is applied here.
//!
//! A box alone keeps its service record (stable ids, enabled or not) in `box.json` in its
//! state directory. A member keeps it in etcd, where every box's scheduler reads it with the
//! box's inventory (published by a background task) and its usage (kept by the claims).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::membership::Inventory;
use super::records::{Amounts, BoxRecord, BOX_SCHEMA};
use super::{ClusterError, Membership};
use crate::compute::servers::Fleet;
use crate::timestamp::Timestamp;

const BOX_FILE: &str = "box.json";

/// One box as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxView {
    pub record: BoxRecord,
    pub up: bool,
    /// When the box last reported (its alive key's start, or its last usage report).
    pub updated_at: String,
    pub total: Amounts,
    pub used: Amounts,
    pub running_vms: u64,
}

pub enum Site {
    Alone {
        /// Boxed: a record is far larger than a member's handle.
        record: Box<Mutex<BoxRecord>>,
        file: PathBuf,
        fleet: Arc<Fleet>,
    },
    Member {
        membership: Membership,
        fleet: Arc<Fleet>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot keep the box's service record in {path:?}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no box named {0:?}")]
    NoSuchBox(String),
}

impl Site {
    /// A box alone: its record from `box.json`, made on first start.
    pub fn alone(state_dir: &Path, fleet: Arc<Fleet>) -> Result<Site, SiteError> {
        let file = state_dir.join(BOX_FILE);
        let record = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SiteError::File {
                path: file.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = || {
                    crate::random::uuid().map_err(|e| SiteError::File {
                        path: file.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })
                };
                let record = BoxRecord {
                    schema: BOX_SCHEMA,
                    name: fleet.host().to_owned(),
                    service_id: id()?,
                    hypervisor_id: id()?,
                    underlay: "127.0.0.1".to_owned(),
                    availability_zone: "nova".to_owned(),
                    enabled: true,
                    disabled_reason: None,
                    joined_at: Timestamp::now().to_rfc3339(),
                    api: None,
                    api_cert_sha256: None,
                };
                save(&file, &record)?;
                record
            }
            Err(source) => return Err(SiteError::File { path: file, source }),
        };
        fleet.set_host_enabled(record.enabled, record.disabled_reason.clone());
        Ok(Site::Alone {
            record: Box::new(Mutex::new(record)),
            file,
            fleet,
        })
    }

    /// A member: starts the task that keeps the local scheduler and the published usage in
    /// step with the cluster.
    pub fn member(membership: Membership, fleet: Arc<Fleet>) -> Site {
        tokio::spawn(sync_member(membership.clone(), fleet.clone()));
        if fleet.is_site() {
            tokio::spawn(reconcile_owned(membership.clone(), fleet.clone()));
            tokio::spawn(reconcile_homed(membership.clone(), fleet.clone()));
        }
        Site::Member { membership, fleet }
    }

    /// This box's name.
    pub fn own_name(&self) -> String {
        match self {
            Site::Alone { record, .. } => lock(record).name.clone(),
            Site::Member { membership, .. } => membership.name().to_owned(),
        }
    }

    /// Every box, sorted by name.
    pub async fn boxes(&self) -> Result<Vec<BoxView>, SiteError> {
        match self {
            Site::Alone { record, fleet, .. } => {
                let record = lock(record).clone();
                let (total, used, running_vms) = local_usage(fleet);
                Ok(vec![BoxView {
                    record,
                    up: true,
                    updated_at: Timestamp::now().to_rfc3339(),
                    total,
                    used,
                    running_vms,
                }])
            }
            Site::Member { membership, .. } => Ok(membership
                .boxes()
                .await?
                .into_iter()
                .map(|b| {
                    let up = b.is_up();
                    let (total, updated_at) = match &b.provider {
                        Some(p) => (p.total, p.updated_at.clone()),
                        None => Default::default(),
                    };
                    let (used, running_vms) = b
                        .usage
                        .as_ref()
                        .map_or((Amounts::default(), 0), |u| (u.used, u.servers));
                    BoxView {
                        record: b.record,
                        up,
                        updated_at,
                        total,
                        used,
                        running_vms,
                    }
                })
                .collect()),
        }
    }

    /// Enables or disables new placements on box `name`.
    pub async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<BoxRecord, SiteError> {
        match self {
            Site::Alone {
                record,
                file,
                fleet,
            } => {
                let mut r = lock(record);
                if r.name != name {
                    return Err(SiteError::NoSuchBox(name.to_owned()));
                }
                let mut next = r.clone();
                next.enabled = enabled;
                next.disabled_reason = if enabled { None } else { reason };
                save(file, &next)?;
                fleet.set_host_enabled(next.enabled, next.disabled_reason.clone());
                *r = next.clone();
                Ok(next)
            }
            // Every box's scheduler reads the record at each decision.
            Site::Member { membership, .. } => {
                Ok(membership.set_enabled(name, enabled, reason).await?)
            }
        }
    }
}

fn lock(record: &Mutex<BoxRecord>) -> std::sync::MutexGuard<'_, BoxRecord> {
    record.lock().unwrap_or_else(PoisonError::into_inner)
}

fn save(file: &Path, record: &BoxRecord) -> Result<(), SiteError> {
    let tmp = file.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(record).expect("a box record serializes");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|source| SiteError::File {
            path: file.to_owned(),
            source,
        })
}

fn local_usage(fleet: &Fleet) -> (Amounts, Amounts, u64) {
    let u = fleet.host_usage();
    let amounts = |a: [u64; 3]| Amounts {
        vcpus: a[0],
        ram_mb: a[1],
        disk_gb: a[2],
    };
    (amounts(u.total), amounts(u.used), u.consumers)
}

/// What this box offers, as it publishes it for the site's scheduler.
pub fn inventory_of(fleet: &Fleet) -> Result<Inventory, ClusterError> {
    let config = fleet.host_config();
    let inventories = config
        .inventories()
        .map_err(|e| ClusterError::Corrupt {
            key: "[compute] inventory".into(),
            reason: e.to_string(),
        })?
        .into_iter()
        .collect();
    Ok(Inventory {
        total: Amounts {
            vcpus: config.vcpus,
            ram_mb: config.ram_mb,
            disk_gb: config.disk_gb,
        },
        inventories,
        traits: Default::default(),
    })
}

/// Every second: this box's inventory published again if it changed or its record went
/// missing (a reload, or an operator's repair), so every box's scheduler sees it.
async fn sync_member(membership: Membership, fleet: Arc<Fleet>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut published: Option<Inventory> = None;
    loop {
        tick.tick().await;
        let inventory = match inventory_of(&fleet) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("cluster: {e}");
                continue;
            }
        };
        let listed = match membership.boxes().await {
            Ok(boxes) => {
                let me = boxes.iter().find(|b| b.record.name == membership.name());
                // A box whose placement is its own applies its record's switch to it.
                if let Some(r) = me.map(|b| &b.record).filter(|_| !fleet.is_site()) {
                    if fleet.host_usage().enabled != r.enabled {
                        fleet.set_host_enabled(r.enabled, r.disabled_reason.clone());
                    }
                }
                me.is_some_and(|b| b.provider.is_some())
            }
            Err(e) => {
                tracing::warn!("cluster: reading the members: {e}");
                continue;
            }
        };
        if listed && published.as_ref() == Some(&inventory) {
            continue;
        }
        match membership.publish(&inventory).await {
            Ok(()) => published = Some(inventory),
            Err(e) => tracing::warn!("cluster: publishing this box's inventory: {e}"),
        }
    }
}

/// How often this box's servers are reconciled when no change was seen.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// On every change to the servers (or every few seconds): hands this box's runners what was
/// asked of its servers through any box (`Fleet::reconcile`).
async fn reconcile_owned(membership: Membership, fleet: Arc<Fleet>) {
    let mut notices = super::watch::changes(
        membership.etcd(),
        super::keys::Keyspace::default().servers(),
    );
    let handed = Arc::new(Mutex::new(std::collections::HashMap::new()));
    loop {
        let fleet = fleet.clone();
        let handed = handed.clone();
        let pass = tokio::task::spawn_blocking(move || {
            let mut handed = handed.lock().unwrap_or_else(PoisonError::into_inner);
            fleet.reconcile(&mut handed)
        })
        .await;
        match pass {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cluster: reconciling this box's servers: {e}"),
            Err(e) => tracing::error!("cluster: the servers' reconciler failed: {e}"),
        }
        tokio::select! {
            changed = notices.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
    }
}

/// On every change to the volumes or snapshots (or every few seconds): carries out what was
/// asked through any box of the volumes homed on this one (`volume::reconcile`).
async fn reconcile_homed(membership: Membership, fleet: Arc<Fleet>) {
    let keys = super::keys::Keyspace::default();
    let mut volumes = super::watch::changes(membership.etcd(), keys.volumes());
    let mut snapshots = super::watch::changes(membership.etcd(), keys.snapshots());
    let stores = fleet.stores();
    loop {
        let pass = stores.clone();
        match tokio::task::spawn_blocking(move || crate::volume::reconcile(&pass)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cluster: reconciling this box's volumes: {e}"),
            Err(e) => tracing::error!("cluster: the volumes' reconciler failed: {e}"),
        }
        tokio::select! {
            changed = volumes.changed() => if changed.is_err() { return },
            changed = snapshots.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
    }
}
