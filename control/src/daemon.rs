//! outpostd's life: prepare the state directory (0700, locked against a second daemon), open
//! the database, bootstrap the admin, bind the listeners, serve until SIGTERM or SIGINT, and
//! remove the socket on the way out.
//!
//! The tokio runtime (multi-thread, two workers: the appliance has few cores) owns the
//! listeners and connections; handlers run on its blocking pool. [`run`] returns after the
//! runtime has drained.

use crate::api::{self, ApiState, Router};
use crate::cluster::site::Site;
use crate::compute::servers::boot_source::GlanceImages;
use crate::compute::servers::config::{ComputeConfigError, ComputeSettings, Machine};
use crate::compute::servers::placement::store::PlacementDoor;
use crate::compute::servers::{Fleet, FleetError};
use crate::config::Settings;
use crate::identity::bootstrap::{self, BootstrapError};
use crate::image::copies::{CopyRule, COPIES_WANTED};
use crate::image::pull::{Caller, Puller, TokenBucket};
use crate::network::agent::HostAgent;
use crate::network::NetworkService;
use crate::quota::Quotas;
use crate::storage::Db;
use crate::store::{Doors, StorageError};
use outpost_image_store::{ImageStore, VolumeStore};
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Read on first start only: the admin's password (otherwise one is generated). In a cluster,
/// only on the box that creates the shared admin; later boxes ignore it.
pub const ADMIN_PASSWORD_ENV: &str = "OUTPOST_ADMIN_PASSWORD";
const LOCK_NAME: &str = "outpostd.lock";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create the state directory {path:?}: {source}")]
    StateDir { path: PathBuf, source: io::Error },
    #[error("another outpostd already uses the state directory {0:?}")]
    AlreadyRunning(PathBuf),
    #[error("cannot lock {path:?}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("another process is serving on {0:?}")]
    SocketInUse(PathBuf),
    #[error("cannot bind the API socket {path:?}: {source}")]
    BindSocket { path: PathBuf, source: io::Error },
    #[error("cannot listen on {addr}: {source}")]
    BindTcp {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("first-start bootstrap failed: {0}")]
    Bootstrap(#[from] BootstrapError),
    #[error("cannot open the image store: {0}")]
    ImageStore(#[from] outpost_image_store::ImageError),
    #[error("cannot open the volume store: {0}")]
    VolumeStore(#[from] outpost_image_store::VolumeError),
    #[error("configuration: {0}")]
    Compute(#[from] ComputeConfigError),
    #[error("servers: {0}")]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Network(#[from] crate::network::agent::AgentError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(
        "[compute] host = {host:?} differs from [cluster] name = {name:?}: a member of a site \
         is the site's host of its cluster name; remove [compute] host or make them equal"
    )]
    HostName { host: String, name: String },
    #[error(transparent)]
    Site(#[from] crate::cluster::site::SiteError),
    #[error(
        "[cluster] underlay = {0} is the address of no interface of this box: give the \
         address this box has on the boxes' own network"
    )]
    Underlay(std::net::IpAddr),
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(settings: Settings) -> Result<(), DaemonError> {
    create_state_dir(&settings.state_dir)?;
    let _lock = lock_state_dir(&settings.state_dir)?;
    // The one place the stores are chosen: SQLite on this box; in a cluster every domain's
    // records in etcd (shared by every box), each volume's file on its home box.
    let mut doors = Doors::sqlite(&Db::open(&settings.database_path())?);
    doors.quotas = doors.quotas.with_defaults(settings.quota.clone());
    let mut network_settings = settings.network.clone();
    let mut site_networks = None;
    let mut site_doors = None;
    if let Some(cluster) = &settings.cluster {
        let shared = crate::cluster::store::EtcdDoors::for_box(cluster)?;
        site_doors = Some(shared.clone());
        doors.identity = Arc::new(shared.identity());
        doors.flavors = Arc::new(shared.flavors());
        doors.keypairs = Arc::new(shared.keypairs());
        doors.images = Arc::new(shared.images());
        doors.servers = Arc::new(shared.servers());
        doors.server_groups = Arc::new(shared.server_groups());
        doors.aggregates = Arc::new(shared.aggregates());
        doors.migrations = Arc::new(shared.migrations());
        doors.claims = PlacementDoor::Site(Arc::new(shared.site_claims()));
        doors.networks = Arc::new(shared.networks());
        doors.volumes = Arc::new(shared.volumes());
        doors.quotas = Quotas::new(settings.quota.clone(), Arc::new(shared.quotas()));
        // Guest frames cross the boxes inside VXLAN: new networks default to what fits.
        let mtu = overlay_mtu_of(cluster.underlay)?;
        network_settings.mtu = network_settings.mtu.min(mtu);
        site_networks = Some(crate::cluster::overlay::SiteNetworks {
            doors: shared,
            servers: doors.servers.clone(),
            me: cluster.name.clone(),
            local: cluster.underlay,
            mtu,
        });
    }
    // Image copies are recorded under the box's name; a member's count of the copies an
    // image needs is read from the site once it has joined, and kept by the replicator.
    let copy_rule = Arc::new(match &settings.cluster {
        Some(cluster) => CopyRule::member(&cluster.name, COPIES_WANTED),
        None => CopyRule::alone(
            &ComputeSettings::resolve(&settings.compute, Machine::measure(&settings.state_dir))?
                .host,
        ),
    });
    // In a cluster the first box creates the admin and the others find it (bootstrap.rs).
    let env_password = std::env::var(ADMIN_PASSWORD_ENV).ok();
    let socket_context = bootstrap::ensure(
        doors.identity.as_ref(),
        env_password.as_deref(),
        &settings.admin_password_path(),
    )?;
    // Disk files live beside the database: images/, volumes/, snapshots/, instances/.
    // Opening the stores removes files a crash left half-written; recovery then settles
    // records caught mid-operation (a failure is logged, not fatal: the service still serves
    // everything else, and the next start retries).
    let images = Arc::new(ImageStore::open(settings.state_dir.clone())?);
    let volumes = Arc::new(VolumeStore::open(settings.state_dir.clone())?);
    if let Err(e) = crate::image::recover(doors.images.as_ref(), &images, copy_rule.holder()) {
        tracing::error!("recovering images after the last run failed: {e}");
    }

    // The host's networking is rebuilt before any server's runner starts, so recovered
    // guests find their taps wired and filtered.
    let network = Arc::new(NetworkService::with_store(
        doors.networks.clone(),
        doors.quotas.clone(),
        network_settings,
    ));
    let mut agent = HostAgent::open(network.clone())?;
    if let Some(site) = site_networks {
        agent = agent.in_site(Box::new(site));
    }
    let agent = Arc::new(agent);
    if let Err(e) = agent.sync() {
        tracing::error!("{e}");
    }
    let fleet = open_fleet(
        doors.clone(),
        &settings,
        images.clone(),
        volumes.clone(),
        Some(agent.clone()),
    )?;
    // Volume records come back into agreement with this box's files before any server's
    // runner uses them.
    if let Err(e) = crate::volume::recover(&fleet.stores()) {
        tracing::error!("recovering volumes after the last run failed: {e}");
    }
    fleet.recover()?;
    let puller = settings.cluster.as_ref().map(|cluster| {
        let caller = Caller {
            identity: doors.identity.clone(),
            admin: socket_context.clone(),
        };
        Arc::new(Puller::new(
            doors.images.clone(),
            images.clone(),
            copy_rule.clone(),
            caller,
            TokenBucket::megabits(cluster.image_pull_mbps),
        ))
    });
    if let Some(puller) = &puller {
        fleet.set_image_puller(puller.clone());
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("outpostd")
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let metadata = Arc::new(crate::metadata::MetadataService::new(
        fleet.clone(),
        network.clone(),
    ));
    let result = runtime.block_on(async {
        if agent.enabled() {
            tokio::spawn(crate::metadata::listener::run(
                metadata,
                agent.metadata_networks(),
            ));
        }
        tokio::spawn(agent.run());
        let unix = bind_socket(&settings.socket)?;
        let tcp = match settings.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| DaemonError::BindTcp { addr, source })?,
            ),
            None => None,
        };
        let bound = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let tls = match (&tcp, &settings.tls) {
            (Some(_), Some(source)) => {
                let tls = crate::tls::ServerTls::load(source)?;
                tracing::info!(
                    "TLS on {}: certificate {:?}, SHA-256 fingerprint {}",
                    bound.map(|a| a.to_string()).unwrap_or_default(),
                    tls.cert_path,
                    tls.pin
                );
                Some(tls)
            }
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = match (&settings.public_url, bound) {
            (Some(url), _) => url.clone(),
            (None, Some(addr)) => format!("{scheme}://{addr}"),
            (None, None) => "http://localhost".to_owned(),
        };
        tracing::info!(
            "outpostd serving on {:?}{}; public URL {base_url}",
            settings.socket,
            bound.map(|a| format!(" and {a}")).unwrap_or_default()
        );
        // This box alone, or a member of a site (bootstrap or join, then the lease and the
        // fence that stops this box's guests before the lease can expire).
        let mut fencing = None;
        let site = match &settings.cluster {
            Some(cluster) => {
                let inventory = crate::cluster::site::inventory_of(&fleet)?;
                let membership = crate::cluster::Membership::join(
                    cluster,
                    &settings.state_dir,
                    &inventory,
                    bound,
                    tls.as_ref().map(|t| t.pin),
                )
                .await?;
                tracing::info!(
                    "box {} is a member of the cluster (lease {:x})",
                    cluster.name,
                    membership.lease_id()
                );
                match (&puller, settings.listen) {
                    (Some(puller), Some(listen)) => {
                        let boxes = membership.boxes().await?;
                        copy_rule.set_boxes(boxes.len());
                        tokio::spawn(crate::cluster::replicator::run(
                            membership.clone(),
                            puller.clone(),
                            listen.port(),
                        ));
                    }
                    _ => tracing::error!(
                        "api.listen is not set: images cannot be copied between the boxes"
                    ),
                }
                crate::cluster::overlay::follow_site(membership.etcd(), network.clone());
                if cluster.etcd.len() >= crate::cluster::fencing::MIN_VOTERS {
                    fencing = Some(crate::cluster::fencing::Fencing::start(
                        membership.clone(),
                        fleet.clone(),
                        cluster.watchdog.as_deref(),
                    )?);
                    // Only where boxes fence may the site move a dead box's servers.
                    if let Some(doors) = site_doors.clone() {
                        crate::cluster::evacuation::start(membership.clone(), doors, fleet.clone());
                    }
                } else {
                    tracing::warn!(
                        "cluster: {} etcd member(s): this box does not fence its guests nor \
                         evacuate a dead box's (it cannot tell another box's death from its \
                         own isolation)",
                        cluster.etcd.len()
                    );
                }
                Site::member(membership, fleet.clone())
            }
            None => Site::alone(&settings.state_dir, fleet.clone())?,
        };
        let evacuator = site_doors.clone().map(|doors| {
            Arc::new(crate::cluster::evacuation::Evacuator::new(
                doors,
                fleet.clone(),
            ))
        });
        let state = Arc::new(ApiState {
            evacuator,
            site: Arc::new(site),
            doors,
            base_url,
            region: settings.region.clone(),
            token_ttl: settings.token_ttl,
            socket_context,
            router: Router::new(),
            policy: settings.policy.clone(),
            fleet,
            images,
            volumes,
            network,
            copy_rule,
            puller,
            logins: crate::identity::logins::LoginGuard::new(settings.logins.clone()),
        });
        let acceptor = tls.map(|t| t.acceptor);
        api::server::serve(state, unix, tcp, acceptor, termination()).await;
        if let Some(fencing) = fencing {
            fencing.stop();
        }
        Ok(())
    });
    remove_socket(&settings.socket);
    tracing::info!("outpostd stopped");
    result
}

/// The servers' side of the daemon: this host's inventory (configured, else measured), Glance
/// images and the default guest as boot sources, the daemon's one image and volume store,
/// and the saved claims. Runs no server yet ([`Fleet::recover`] does).
pub fn open_fleet(
    doors: Doors,
    settings: &Settings,
    images: Arc<ImageStore>,
    volumes: Arc<VolumeStore>,
    network: Option<Arc<HostAgent>>,
) -> Result<Arc<Fleet>, DaemonError> {
    // A member of a site is one host of the site's scheduler, named as in the cluster.
    let mut section = settings.compute.clone();
    if let Some(cluster) = &settings.cluster {
        match &section.host {
            Some(host) if *host != cluster.name => {
                return Err(DaemonError::HostName {
                    host: host.clone(),
                    name: cluster.name.clone(),
                })
            }
            _ => section.host = Some(cluster.name.clone()),
        }
    }
    let mut compute = ComputeSettings::resolve(&section, Machine::measure(&settings.state_dir))?;
    compute.failure_reserve = settings.cluster.as_ref().is_some_and(|c| c.ha_reserve);
    tracing::info!(
        "host {}: {} vCPU, {} MB RAM, {} GB disk; monitor {:?}",
        compute.host,
        compute.inventory.vcpus,
        compute.inventory.ram_mb,
        compute.inventory.disk_gb,
        compute.monitor
    );
    let boot = GlanceImages::new(doors.images.clone(), images.clone(), settings.guest.clone());
    Ok(Fleet::open(
        doors,
        &settings.state_dir,
        compute,
        volumes,
        images,
        Box::new(boot),
        network,
    )?)
}

/// The guest MTU on the underlay interface holding `underlay` (docs/cluster.md, "Networks
/// across boxes": the underlay's MTU less VXLAN's overhead).
fn overlay_mtu_of(underlay: std::net::IpAddr) -> Result<u32, DaemonError> {
    let mtu = outpost_netdev::link::mtu_at(underlay)
        .map_err(|e| DaemonError::Network(crate::network::agent::AgentError::Netdev(e.into())))?
        .ok_or(DaemonError::Underlay(underlay))?;
    Ok(crate::cluster::overlay::overlay_mtu(mtu))
}

fn create_state_dir(dir: &Path) -> Result<(), DaemonError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DaemonError::StateDir {
            path: dir.to_owned(),
            source,
        })
}

/// An exclusive flock on `<state-dir>/outpostd.lock`, held for the daemon's life (the kernel
/// drops it when the process dies, even by SIGKILL).
fn lock_state_dir(dir: &Path) -> Result<File, DaemonError> {
    let path = dir.join(LOCK_NAME);
    let failed = |source| DaemonError::Lock {
        path: path.clone(),
        source,
    };
    let file = File::create(&path).map_err(failed)?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock {
            DaemonError::AlreadyRunning(dir.to_owned())
        } else {
            failed(err)
        });
    }
    Ok(file)
}

/// Binds the API socket (mode 0660). A socket left by a daemon that died is replaced; one
/// that still answers belongs to a live process and is an error.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    if path.symlink_metadata().is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::SocketInUse(path.to_owned()));
        }
        tracing::info!("removing the stale socket {path:?}");
        let _ = fs::remove_file(path);
    }
    let failed = |source| DaemonError::BindSocket {
        path: path.to_owned(),
        source,
    };
    let listener = tokio::net::UnixListener::bind(path).map_err(failed)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660)).map_err(failed)?;
    Ok(listener)
}

fn remove_socket(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove the socket {path:?}: {e}"),
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; outpostd can only be killed");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
