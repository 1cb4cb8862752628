//! The host agent: keeps this box's bridges, taps, dnsmasq instances and nftables ruleset
//! (`outpost_netdev`) in step with the Neutron state. It reconciles
//!
//! - at daemon start, before any server's runner needs a tap;
//! - from a server's runner, synchronously, after its ports changed and before its monitor
//!   opens their taps (so a guest never starts on a port that is not wired and filtered);
//! - after every committed Neutron change (the service's change counter), which is how a
//!   security-group rule reaches running servers;
//! - every [`REPAIR_PERIOD`], to repair what others broke (a deleted tap, a dead dnsmasq, a
//!   flushed ruleset).
//!
//! Each reconcile rebuilds the whole desired state from the database, so missed or
//! coalesced notifications cost nothing. With `[network] manage_host = false` the agent does
//! nothing and servers get no NICs.
//!
//! On a member of a site, a [`SiteSource`] says which servers this box runs and where the
//! other boxes are, and the records' changes made through other boxes reach the counter
//! through a watch on etcd (`daemon.rs`).

use super::{NetworkError, NetworkService, SiteView};
use outpost_netdev::{HostNetwork, HostNetworkConfig, NetdevError, Report};
use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How often the agent reconciles without being asked.
pub const REPAIR_PERIOD: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("host networking: {0}")]
    Netdev(#[from] NetdevError),
    #[error("host networking: reading the desired state: {0}")]
    Spec(#[from] NetworkError),
    #[error("host networking: reading the site's boxes and servers: {0}")]
    Site(String),
    #[error("host networking: cannot create {path:?}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a member of a site reads, at each reconcile, beyond Neutron's records.
pub trait SiteSource: Send + Sync {
    fn view(&self) -> Result<SiteView, AgentError>;
}

pub struct HostAgent {
    service: Arc<NetworkService>,
    /// None when the daemon does not manage the host (`manage_host = false`).
    host: Option<Mutex<HostNetwork>>,
    /// Some on a member of a site.
    site: Option<Box<dyn SiteSource>>,
    /// The networks whose bridges the last reconcile left holding the metadata address:
    /// what the metadata service listens on.
    metadata_networks: watch::Sender<BTreeSet<String>>,
}

impl HostAgent {
    /// The agent for `service`; dnsmasq's files go in `[network] run_dir`, which is made
    /// readable for the unprivileged dnsmasq (it re-reads reservations after dropping root).
    pub fn open(service: Arc<NetworkService>) -> Result<HostAgent, AgentError> {
        let host = if service.settings().manage_host {
            let dir = service.settings().run_dir.clone();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&dir)
                .map_err(|source| AgentError::RunDir {
                    path: dir.clone(),
                    source,
                })?;
            Some(Mutex::new(HostNetwork::new(HostNetworkConfig::new(dir))?))
        } else {
            None
        };
        Ok(HostAgent {
            service,
            host,
            site: None,
            metadata_networks: watch::Sender::new(BTreeSet::new()),
        })
    }

    /// The agent of a member of a site: its ports are those of the servers it runs, and its
    /// networks reach the other boxes over VXLAN.
    pub fn in_site(mut self, site: Box<dyn SiteSource>) -> HostAgent {
        self.site = Some(site);
        self
    }

    /// The networks on this box whose bridges hold the metadata address, as of the last
    /// reconcile.
    pub fn metadata_networks(&self) -> watch::Receiver<BTreeSet<String>> {
        self.metadata_networks.subscribe()
    }

    /// Whether this daemon wires servers to networks at all.
    pub fn enabled(&self) -> bool {
        self.host.is_some()
    }

    pub fn service(&self) -> &Arc<NetworkService> {
        &self.service
    }

    /// Makes the host match the database now. Blocking (it runs `ip`, `nft`, dnsmasq).
    pub fn sync(&self) -> Result<Report, AgentError> {
        let Some(host) = &self.host else {
            return Ok(Report::default());
        };
        // One reconcile at a time: the spec is read under the lock so that a later reader
        // never applies an older state over a newer one.
        let mut host = host.lock().unwrap_or_else(PoisonError::into_inner);
        let site = self.site.as_ref().map(|s| s.view()).transpose()?;
        let spec = self.service.site_host_spec(site.as_ref())?;
        let report = host.reconcile(&spec)?;
        let served: BTreeSet<String> = spec
            .networks
            .iter()
            .filter(|n| n.serves_metadata())
            .map(|n| n.id.clone())
            .collect();
        self.metadata_networks.send_if_modified(|old| {
            let changed = *old != served;
            *old = served;
            changed
        });
        if report.changed_anything() {
            tracing::info!("host network reconciled: {report:?}");
        }
        Ok(report)
    }

    /// Reconciles after every Neutron change and every [`REPAIR_PERIOD`]; runs until the
    /// runtime stops.
    pub async fn run(self: Arc<Self>) {
        if !self.enabled() {
            return;
        }
        let mut changes = self.service.changes();
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    changes.borrow_and_update();
                }
                () = tokio::time::sleep(REPAIR_PERIOD) => {}
            }
            let agent = self.clone();
            match tokio::task::spawn_blocking(move || agent.sync()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(e) => tracing::error!("host network reconcile panicked: {e}"),
            }
        }
    }
}
