//! outpostd's API in this process, without a daemon: a real [`ApiState`] over an in-memory
//! SQLite database and a temporary state directory. Its servers' monitor binary does not
//! exist, so a server create is accepted and its build then fails: no guest ever boots here;
//! Neutron keeps its state but touches nothing on the host.

use hyper::{HeaderMap, Method};
use outpost_control::api::{handle, ApiState, RawRequest, Reply, Router, Transport};
use outpost_control::config::{ConfigFile, Overrides, Settings};
use outpost_control::context::RequestContext;
use outpost_control::identity::bootstrap;
use outpost_control::storage::Db;
use outpost_image_store::{ImageStore, VolumeStore};
use std::sync::Arc;
use std::time::Duration;

pub struct InProcess {
    pub state: ApiState,
    /// Who the unix socket's peer acts as: the bootstrap admin.
    pub admin: RequestContext,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// The API with bootstrap admin `admin` / `admin_password`.
    pub fn start(admin_password: &str) -> InProcess {
        let db = Db::open_in_memory().unwrap();
        let admin = bootstrap::ensure(
            &db,
            Some(admin_password),
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs.ext4");
        std::fs::write(&rootfs, [0u8; 4096]).unwrap();
        let file: ConfigFile = toml::from_str(&format!(
            "[compute]\nmonitor = \"/nonexistent/outpost-vmm\"\n[guest]\nrootfs = {:?}\n\
             [network]\nmanage_host = false\n",
            rootfs
        ))
        .unwrap();
        let settings = Settings::resolve(
            file,
            Overrides {
                state_dir: Some(dir.path().join("state")),
                ..Overrides::default()
            },
        )
        .unwrap();
        let images = Arc::new(ImageStore::open(settings.state_dir.clone()).unwrap());
        let volumes = Arc::new(VolumeStore::open(settings.state_dir.clone()).unwrap());
        let doors = outpost_control::store::Doors::sqlite(&db);
        // Neutron's state and the compute side's calls into it as in the daemon; nothing on
        // the host (`manage_host = false`).
        let network = Arc::new(outpost_control::network::NetworkService::with_store(
            doors.networks.clone(),
            doors.quotas.clone(),
            settings.network.clone(),
        ));
        let agent = outpost_control::network::agent::HostAgent::open(network.clone()).unwrap();
        let fleet = outpost_control::daemon::open_fleet(
            doors.clone(),
            &settings,
            images.clone(),
            volumes.clone(),
            Some(Arc::new(agent)),
        )
        .unwrap();
        let site = Arc::new(
            outpost_control::cluster::site::Site::alone(&settings.state_dir, fleet.clone())
                .unwrap(),
        );
        let state = ApiState {
            site,
            doors,
            base_url: "http://127.0.0.1:8080".into(),
            region: "RegionOne".into(),
            token_ttl: Duration::from_secs(600),
            socket_context: admin.clone(),
            router: Router::new(),
            policy: settings.policy.clone(),
            fleet,
            images,
            volumes,
            network,
            copy_rule: Arc::new(outpost_control::image::CopyRule::alone("box")),
            puller: None,
            logins: outpost_control::identity::logins::LoginGuard::new(Default::default()),
            evacuator: None,
        };
        InProcess {
            state,
            admin,
            _dir: dir,
        }
    }

    /// One request on `transport`, as the server would hand it to the router.
    pub fn request(
        &self,
        transport: Transport,
        method: Method,
        target: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Reply {
        handle(
            &self.state,
            transport,
            RawRequest {
                method,
                target: target.to_owned(),
                headers,
                body,
                peer: None,
                caller: None,
            },
        )
    }
}
