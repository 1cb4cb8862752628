//! The same conformance suites SQLite passes (`identity::store::conformance`,
//! `compute::flavors::store::conformance`), run against a real single-member etcd: Debian's
//! `etcd` binary on loopback, data in a temporary directory, killed when the test ends. Every
//! store a suite asks for gets a key root of its own, so one member serves a whole suite.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::EtcdDoors;
use crate::cluster::keys::Keyspace;

/// One etcd member for one test; killed (and its data removed) on drop.
struct EtcdMember {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
    next_root: AtomicU32,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl EtcdMember {
    fn start() -> EtcdMember {
        let dir = tempfile::tempdir().expect("a temporary directory for etcd");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd's log");
        let child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--logger=zap")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd's log"))
            .stderr(log)
            .spawn()
            .expect("etcd runs (Debian's etcd-server)");
        let member = EtcdMember {
            child,
            url,
            _dir: dir,
            next_root: AtomicU32::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while member.doors().is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not answer: {}",
                std::fs::read_to_string(member._dir.path().join("etcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        member
    }

    /// Doors on this member under a root no other store of the test uses, so each is empty.
    fn doors(&self) -> Result<EtcdDoors, crate::cluster::ClusterError> {
        let n = self.next_root.fetch_add(1, Ordering::Relaxed);
        let doors = EtcdDoors::connect(
            vec![self.url.clone()],
            Keyspace::under(&format!("/test/{n}")),
        )?;
        // Connecting is lazy about the member's readiness; a read proves it answers.
        use crate::compute::flavors::store::FlavorStore;
        doors
            .flavors()
            .flavor("probe")
            .map_err(|e| crate::cluster::ClusterError::Corrupt {
                key: "probe".into(),
                reason: e.to_string(),
            })?;
        Ok(doors)
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcd_identity_conforms_to_the_identity_store_contract() {
    let etcd = EtcdMember::start();
    crate::identity::store::conformance::run(|| etcd.doors().unwrap().identity());
}

#[test]
fn etcd_flavors_conform_to_the_flavor_store_contract() {
    let etcd = EtcdMember::start();
    crate::compute::flavors::store::conformance::run(|| etcd.doors().unwrap().flavors());
}

#[test]
fn a_store_works_from_a_runtime_s_blocking_pool_and_from_plain_threads() {
    use crate::compute::flavors::store::FlavorStore;
    let etcd = EtcdMember::start();
    let flavors = etcd.doors().unwrap().flavors();
    let f = crate::compute::flavors::store::conformance::flavor("1", "small", 512, 1, true);
    flavors.create_flavor(&f).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let seen = runtime.block_on(async {
        let store = flavors.clone();
        tokio::task::spawn_blocking(move || store.flavor("1"))
            .await
            .unwrap()
    });
    assert_eq!(seen.unwrap().map(|f| f.name), Some("small".into()));
    // The stores outlive a runtime that used them.
    drop(runtime);
    assert!(flavors.flavor("1").unwrap().is_some());
}
