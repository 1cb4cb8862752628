//! The servers this outpostd runs: what their runners share (database, placement, disks,
//! boot sources, settings), the registry of runners (one thread per server, see
//! [`super::runner`]), and the sweep at start that leaves no orphan process, disk, folder
//! or claim behind before every server's runner recovers it.

use super::boot_source::BootSources;
use super::config::ComputeSettings;
use super::monitor::{process, ServerDir};
use super::placement::{migration_id, Placement, PlacementError};
use super::runner::{Command, Runner};
use super::store::ServerStore;
use crate::network::agent::HostAgent;
use crate::store::{Doors, StorageError};
use crate::timestamp::Timestamp;
use outpost_image_store::{DiskKind, ImageStore, VolumeError, VolumeStore};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error("server disks: {0}")]
    Volumes(#[from] VolumeError),
    #[error("cannot create {path:?}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start a server's runner thread: {0}")]
    Thread(std::io::Error),
}

pub struct Fleet {
    /// Every domain's door (servers, placement, and those a server's saga goes through).
    doors: Doors,
    pub(super) placement: Arc<Placement>,
    /// Where volumes live, shared by every request and job (see [`crate::volume::Homes`]).
    homes: Arc<crate::volume::Homes>,
    /// The daemon's one volume store, shared with Cinder (server disks live beside volumes).
    pub(super) volumes: Arc<VolumeStore>,
    /// Glance's image store, which volumes made from images are copied from.
    images: Arc<ImageStore>,
    pub(super) boot_sources: Box<dyn BootSources>,
    pub(super) settings: ComputeSettings,
    /// Neutron and the host agent that wires servers' ports (None only in tests of the
    /// compute side alone).
    network: Option<Arc<HostAgent>>,
    servers_dir: PathBuf,
    runners: Mutex<HashMap<String, Sender<Command>>>,
    /// In a site: how a build fetches the image data this box lacks (set once, at start).
    image_puller: std::sync::OnceLock<Arc<crate::image::pull::Puller>>,
    /// The evacuated servers being built here at once (a few, not a dead box's all).
    evacuations: super::evacuation::StartSlots,
    /// One-time tokens for serial consoles (this daemon's memory only: see console.rs).
    console_tokens: super::console::ConsoleTokens,
}

impl Fleet {
    /// Builds this host's placement and replays the saved claims; server disks go in
    /// `volumes` (the daemon's store), runtime folders under `state_dir/servers`. Runs no
    /// server yet: [`Fleet::recover`] does.
    pub fn open(
        doors: Doors,
        state_dir: &Path,
        settings: ComputeSettings,
        volumes: Arc<VolumeStore>,
        images: Arc<ImageStore>,
        boot_sources: Box<dyn BootSources>,
        network: Option<Arc<HostAgent>>,
    ) -> Result<Arc<Fleet>, FleetError> {
        let servers_dir = state_dir.join("servers");
        std::fs::create_dir_all(&servers_dir).map_err(|source| FleetError::Dir {
            path: servers_dir.clone(),
            source,
        })?;
        let placement = Arc::new(Placement::open(
            &settings,
            doors.claims.clone(),
            doors.server_groups.clone(),
            doors.aggregates.clone(),
        )?);
        // In a site a new volume goes where the site's placement sees room.
        let homes = Arc::new(if placement.is_site() {
            crate::volume::Homes::in_site(&settings.host, placement.clone())
        } else {
            crate::volume::Homes::alone(&settings.host)
        });
        Ok(Arc::new(Fleet {
            doors,
            placement,
            homes,
            volumes,
            images,
            boot_sources,
            settings,
            network,
            servers_dir,
            runners: Mutex::new(HashMap::new()),
            image_puller: std::sync::OnceLock::new(),
            evacuations: Default::default(),
            console_tokens: Default::default(),
        }))
    }

    /// The serial consoles' outstanding one-time tokens.
    pub fn console_tokens(&self) -> &super::console::ConsoleTokens {
        &self.console_tokens
    }

    /// Where servers go (the evacuation's scheduling reads the site through it).
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// A place among the evacuated servers this box builds at once; waits for one.
    pub(super) fn evacuation_slot(&self) -> super::evacuation::StartSlot<'_> {
        self.evacuations.take()
    }

    /// Neutron and its host agent.
    pub fn network(&self) -> Option<&Arc<HostAgent>> {
        self.network.as_ref()
    }

    /// This host's inventory and usage, and whether it takes new servers.
    pub fn host_usage(&self) -> super::placement::HostUsage {
        self.placement.host_usage()
    }

    /// Each host's availability zone now, by host name.
    pub fn host_zones(&self) -> Result<std::collections::BTreeMap<String, String>, PlacementError> {
        Ok(self.placement.hosts()?.into_iter().collect())
    }

    /// Nova's service enable/disable for this host.
    pub fn set_host_enabled(&self, enabled: bool, reason: Option<String>) {
        self.placement.set_enabled(enabled, reason);
    }

    /// What this host offers, as configured (or measured).
    pub fn host_config(&self) -> &outpost_resources::HostConfig {
        &self.settings.inventory
    }

    pub fn host(&self) -> &str {
        &self.settings.host
    }

    /// The servers' door to their state.
    /// Every project's quota limits.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        &self.doors.quotas
    }

    pub fn servers(&self) -> &dyn ServerStore {
        self.doors.servers.as_ref()
    }

    /// The server groups' door (a create joins one, a delete leaves it).
    pub fn server_groups(&self) -> &dyn crate::compute::server_groups::ServerGroupStore {
        self.doors.server_groups.as_ref()
    }

    /// The flavors' door (a create or resize names a flavor).
    pub fn flavors(&self) -> &dyn crate::compute::flavors::FlavorStore {
        self.doors.flavors.as_ref()
    }

    /// The key pairs' door (a new server names one of its creator's by `key_name`).
    pub fn keypairs(&self) -> &dyn crate::compute::keypairs::KeyPairStore {
        self.doors.keypairs.as_ref()
    }

    /// In a site, builds fetch the image data this box lacks through `puller`.
    pub fn set_image_puller(&self, puller: Arc<crate::image::pull::Puller>) {
        if self.image_puller.set(puller).is_err() {
            tracing::warn!("the image puller was set twice; the first stays");
        }
    }

    /// Makes sure this box holds a verified copy of each of `images`, pulling the ones it
    /// lacks now, unthrottled (a build waits for them). A box alone holds them all.
    pub(super) fn fetch_images(
        &self,
        images: &[String],
    ) -> Result<(), crate::image::pull::PullError> {
        let Some(puller) = self.image_puller.get() else {
            return Ok(());
        };
        for id in images {
            if !puller.holds(id)? {
                tracing::info!("image {id}: no copy on this box; pulling one for a build");
                puller.ensure(id, false)?;
            }
        }
        Ok(())
    }

    /// `boot` with the paths of the Glance images it names (the root image, the kernel and the
    /// ramdisk) taken from this box's image store: the box that accepted the request may keep
    /// its copies elsewhere (each box has its own state directory), and on a site the build
    /// runs where the server was placed. Paths of the default guest stay as they are.
    pub(super) fn local_boot(
        &self,
        image_ref: &str,
        boot: &super::store::BootConfig,
    ) -> Result<super::store::BootConfig, outpost_image_store::ImageError> {
        let mut local = boot.clone();
        let is_image = |id: &str| boot.images.iter().any(|i| i == id);
        if local.root_source.is_some() && is_image(image_ref) {
            local.root_source = Some(self.images.image_path(image_ref)?);
        }
        if let Some(id) = boot.kernel_id.as_deref().filter(|id| is_image(id)) {
            local.kernel = self.images.image_path(id)?;
        }
        if let Some(id) = boot.ramdisk_id.as_deref().filter(|id| is_image(id)) {
            local.initrd = Some(self.images.image_path(id)?);
        }
        Ok(local)
    }

    /// Glance's door (the images a server holds).
    pub fn image_records(&self) -> &dyn crate::image::ImageRecordStore {
        self.doors.images.as_ref()
    }

    /// Cinder's door (the volumes a server has).
    /// Nova's migration records: what moved or resized a server.
    pub fn migrations(&self) -> &dyn crate::compute::migrations::MigrationStore {
        self.doors.migrations.as_ref()
    }

    pub fn volume_records(&self) -> &dyn crate::volume::VolumeRecordStore {
        self.doors.volumes.as_ref()
    }

    /// Cinder's stores: for the API, for the volumes a create makes or a delete removes, and
    /// for the volume reconciler.
    pub fn stores(&self) -> crate::volume::Stores {
        crate::volume::Stores {
            records: self.doors.volumes.clone(),
            image_records: self.doors.images.clone(),
            volumes: self.volumes.clone(),
            images: self.images.clone(),
            homes: self.homes.clone(),
            quotas: self.doors.quotas.clone(),
        }
    }

    pub fn boot_sources(&self) -> &dyn BootSources {
        self.boot_sources.as_ref()
    }

    pub fn dir(&self, server_id: &str) -> ServerDir {
        ServerDir::new(self.servers_dir.join(server_id))
    }

    /// The runtime folder of every server this box has run and not deleted, read from the
    /// disk alone: the fence needs it while etcd, which holds the records, is unreachable.
    pub fn local_server_dirs(&self) -> Vec<ServerDir> {
        let Ok(entries) = std::fs::read_dir(&self.servers_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .map(|name| self.dir(&name))
            .collect()
    }

    fn runners(&self) -> MutexGuard<'_, HashMap<String, Sender<Command>>> {
        self.runners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `command` to the server's runner, starting one if it has none.
    pub fn send(self: &Arc<Self>, server_id: &str, command: Command) -> Result<(), FleetError> {
        let mut runners = self.runners();
        let command = match runners.get(server_id) {
            Some(tx) => match tx.send(command) {
                Ok(()) => return Ok(()),
                // The runner ended (its server was deleted) between lookups.
                Err(mpsc::SendError(c)) => c,
            },
            None => command,
        };
        let (tx, rx) = mpsc::channel();
        // Cannot fail: the receiver is alive in this scope.
        let _ = tx.send(command);
        let runner = Runner::new(self.clone(), server_id.to_owned());
        std::thread::Builder::new()
            .name(format!("server-{}", short(server_id)))
            .spawn(move || runner.run(rx))
            .map_err(FleetError::Thread)?;
        runners.insert(server_id.to_owned(), tx);
        Ok(())
    }

    /// Whether placement is the site's (boxes share servers) rather than this box's alone.
    pub fn is_site(&self) -> bool {
        self.placement.is_site()
    }

    /// Hands `command` to the runner on the box that must act: this one when it runs the
    /// server, when no box runs it yet (a failed create), or on one box. On a site, a
    /// server another box runs is that box's: its reconciler finds the request in the
    /// record the caller has just written (docs/cluster.md, "Routing").
    pub fn dispatch(
        self: &Arc<Self>,
        server_id: &str,
        host: Option<&str>,
        command: Command,
    ) -> Result<(), FleetError> {
        match host {
            Some(owner) if self.is_site() && owner != self.host() => Ok(()),
            _ => self.send(server_id, command),
        }
    }

    /// Called by a runner about to end: it may only end if no command is waiting, else it
    /// gets that command back to handle.
    pub(super) fn retire(&self, server_id: &str, rx: &Receiver<Command>) -> Option<Command> {
        let mut runners = self.runners();
        match rx.try_recv() {
            Ok(c) => Some(c),
            Err(_) => {
                runners.remove(server_id);
                None
            }
        }
    }

    /// At start: removes what no server owns (monitor processes and folders under
    /// `servers/`, root disks, claims on this box), then has every server's runner recover
    /// it (adopt its running monitor, or record how it ended; finish or undo a half-done
    /// operation). On a site every box's servers are listed, and this box recovers those it
    /// runs (one still being placed is the placing box's business).
    pub fn recover(self: &Arc<Self>) -> Result<(), FleetError> {
        let rows = self.servers().servers(None)?;
        let known: BTreeSet<&str> = rows.iter().map(|s| s.id.as_str()).collect();
        self.sweep(&known)?;
        let site = self.is_site();
        if site {
            self.let_go_of_moved(&rows)?;
        }
        for s in rows
            .iter()
            .filter(|s| !site || s.host.as_deref() == Some(self.host()))
        {
            self.send(&s.id, Command::Recover)?;
        }
        Ok(())
    }

    /// A box back from the dead (docs/cluster.md, "What the follow-up builds on"): before
    /// this box says it is alive, every monitor of a server another box now owns (moved away
    /// while this box was down) is killed, and its folder, root disk and any claim left on
    /// this box go. The site runs it elsewhere: this box must never run it a second time.
    /// A server whose move was not recorded yet (a create being placed names no box) is left.
    fn let_go_of_moved(&self, rows: &[super::store::Server]) -> Result<(), FleetError> {
        let me = self.host();
        let moved: Vec<&str> = rows
            .iter()
            .filter(|s| s.host.as_deref().is_some_and(|h| h != me))
            .map(|s| s.id.as_str())
            .collect();
        for id in &moved {
            let dir = self.dir(id);
            if !dir.path().exists() {
                continue;
            }
            let killed = process::kill_all_using(&dir.api_sock());
            tracing::warn!(
                "server {id} runs on another box now: {killed} monitor process(es) of it \
                 killed here, its folder and disk removed"
            );
            if let Err(e) = dir.remove() {
                tracing::warn!("{e}");
            }
            self.volumes.remove_server_disks(id)?;
        }
        for claim in self.placement.claims()? {
            if moved.contains(&claim.consumer_id.0.as_str()) {
                tracing::warn!(
                    "releasing the claim of {} on this box: the server runs on another",
                    claim.consumer_id
                );
                self.placement.release(&claim.consumer_id)?;
            }
        }
        Ok(())
    }

    fn sweep(&self, known: &BTreeSet<&str>) -> Result<(), FleetError> {
        if let Ok(entries) = std::fs::read_dir(&self.servers_dir) {
            for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
                if known.contains(name.as_str()) {
                    continue;
                }
                let dir = self.dir(&name);
                let killed = process::kill_all_using(&dir.api_sock());
                tracing::info!("removing {:?}, which belongs to no server ({killed} orphan process(es) killed)", dir.path());
                if let Err(e) = dir.remove() {
                    tracing::warn!("{e}");
                }
            }
        }
        for id in self.volumes.list(DiskKind::ServerDisk)? {
            if !known.contains(id.as_str()) {
                tracing::info!("removing the root disk of {id}, which belongs to no server");
                self.volumes.remove_server_disks(&id)?;
            }
        }
        for claim in self.placement.claims()? {
            let owner = &claim.consumer_id;
            let owned = known
                .iter()
                .any(|id| owner.0 == *id || *owner == migration_id(id));
            if !owned {
                tracing::info!("releasing the claim of {owner}, which belongs to no server");
                self.placement.release(owner)?;
            }
        }
        Ok(())
    }

    /// On a site: hands this box's runners what was asked of its servers through other
    /// boxes (a create placed here, a stop, a delete), found in the records as a task_state.
    /// `handed` remembers what was handed over, so an unchanged record is handed again only
    /// after [`REPAIR_AFTER`] (a request whose handling failed is tried again). Handing a
    /// request twice is harmless: each command first checks the task_state it serves.
    pub fn reconcile(
        self: &Arc<Self>,
        handed: &mut HashMap<String, (String, Instant)>,
    ) -> Result<(), FleetError> {
        let rows = self.servers().servers(None)?;
        let mut pending = BTreeSet::new();
        for s in rows
            .iter()
            .filter(|s| s.host.as_deref() == Some(self.host()))
        {
            let Some(task) = s.task_state else {
                continue;
            };
            pending.insert(s.id.clone());
            let marker = format!(
                "{}@{}",
                task.as_str(),
                s.updated_at.map_or(0, Timestamp::micros)
            );
            if let Some((seen, at)) = handed.get(&s.id) {
                if *seen == marker && at.elapsed() < REPAIR_AFTER {
                    continue;
                }
            }
            self.send(&s.id, Command::Recover)?;
            handed.insert(s.id.clone(), (marker, Instant::now()));
        }
        handed.retain(|id, _| pending.contains(id));
        Ok(())
    }
}

/// How long a request handed to a runner may stay unchanged before it is handed again.
pub const REPAIR_AFTER: Duration = Duration::from_secs(30);

/// The first block of a UUID, for thread names (at most 15 bytes on Linux).
fn short(id: &str) -> &str {
    id.split('-').next().unwrap_or(id).get(..8).unwrap_or(id)
}
