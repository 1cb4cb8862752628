//! The same conformance suites SQLite passes (`identity::store::conformance`,
//! `compute::flavors::store::conformance`), run against a real single-member etcd: Debian's
//! `etcd` binary on loopback, data in a temporary directory, killed when the test ends. Every
//! store a suite asks for gets a key root of its own, so one member serves a whole suite.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::EtcdDoors;
use crate::cluster::keys::{self, Keyspace};

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

/// A site of `boxes` boxes in `etcd`, each with 4 vCPUs, 2 GiB of RAM (nothing reserved, no
/// overcommit) and 10 GiB of disk, up and enabled; one placement per box, each on its own
/// connection as on separate machines.
fn site_of(
    etcd: &EtcdMember,
    boxes: &[&str],
) -> Vec<crate::compute::servers::placement::Placement> {
    use crate::cluster::records::{
        AliveRecord, BoxRecord, ALIVE_SCHEMA, BOX_SCHEMA, PROVIDER_SCHEMA,
    };
    use crate::compute::servers::config::{ComputeSection, ComputeSettings, Machine};
    use crate::compute::servers::placement::store::PlacementDoor;
    use crate::compute::servers::placement::Placement;
    use std::sync::Arc;
    let doors = etcd.doors().unwrap();
    boxes
        .iter()
        .map(|name| {
            let settings = ComputeSettings::resolve(
                &ComputeSection {
                    host: Some((*name).into()),
                    reserved_host_memory_mb: Some(0),
                    cpu_allocation_ratio: Some(1.0),
                    ..ComputeSection::default()
                },
                Machine {
                    vcpus: 4,
                    ram_mb: 2048,
                    disk_gb: 10,
                },
            )
            .unwrap();
            let record = BoxRecord {
                schema: BOX_SCHEMA,
                name: (*name).into(),
                service_id: format!("svc-{name}"),
                hypervisor_id: format!("hv-{name}"),
                underlay: "10.0.0.1".into(),
                availability_zone: "nova".into(),
                enabled: true,
                disabled_reason: None,
                joined_at: "2026-12-06T00:00:00Z".into(),
            };
            let provider = crate::cluster::records::ProviderRecord {
                schema: PROVIDER_SCHEMA,
                total: crate::cluster::records::Amounts {
                    vcpus: 4,
                    ram_mb: 2048,
                    disk_gb: 10,
                },
                inventories: settings
                    .inventory
                    .inventories()
                    .unwrap()
                    .into_iter()
                    .collect(),
                traits: Default::default(),
                updated_at: "2026-12-06T00:00:00Z".into(),
            };
            let alive = AliveRecord {
                schema: ALIVE_SCHEMA,
                boot_id: "b".into(),
                started_at: "2026-12-06T00:00:00Z".into(),
                version: "test".into(),
            };
            let puts = vec![
                etcd_client::TxnOp::put(keys::box_record(name), super::to_json(&record), None),
                etcd_client::TxnOp::put(keys::provider(name), super::to_json(&provider), None),
                etcd_client::TxnOp::put(keys::alive(name), super::to_json(&alive), None),
            ];
            doors
                .call(|kv| async move {
                    kv.txn(etcd_client::Txn::new().and_then(puts))
                        .await
                        .map(|_| ())
                })
                .unwrap();
            let own = etcd.doors().unwrap();
            Placement::open(&settings, PlacementDoor::Site(Arc::new(own.site_claims()))).unwrap()
        })
        .collect()
}

fn small_flavor() -> crate::compute::servers::store::FlavorSnapshot {
    crate::compute::servers::store::FlavorSnapshot {
        id: "f".into(),
        name: "f".into(),
        vcpus: 1,
        ram: 512,
        disk: 1,
        ephemeral: 0,
        swap: 0,
        extra_specs: Default::default(),
    }
}

#[test]
fn thirty_creates_at_once_through_three_boxes_never_over_commit_a_box() {
    use crate::compute::servers::placement::store::SiteClaims;
    use outpost_resources::ResourceClass;
    let etcd = EtcdMember::start();
    let site = std::sync::Arc::new(site_of(&etcd, &["box1", "box2", "box3"]));
    // Each box holds four such servers (2048 MiB / 512 MiB, 4 vCPUs): twelve fit in all.
    let placed: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let site = site.clone();
                s.spawn(move || {
                    site[i % 3]
                        .claim(&format!("server-{i}"), &small_flavor(), false)
                        .ok()
                        .map(|c| c.host_id.0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let granted = placed.iter().flatten().count();
    assert_eq!(granted, 12, "placed: {placed:?}");
    let view = etcd.doors().unwrap().site_claims().read().unwrap();
    for host in view.cluster.hosts() {
        assert_eq!(
            host.usage().get(&ResourceClass::MemoryMb),
            2048,
            "{}",
            host.name
        );
        assert_eq!(host.usage().get(&ResourceClass::Vcpu), 4, "{}", host.name);
        assert_eq!(host.claims().count(), 4, "{}", host.name);
    }
    // The usage records the API shows add up to the claims.
    for (i, p) in site.iter().enumerate() {
        let u = p.host_usage();
        assert_eq!(
            (u.used[0], u.used[1], u.consumers),
            (4, 2048, 4),
            "box{}",
            i + 1
        );
    }
}

#[test]
fn a_site_releases_resizes_and_reverts_claims_on_the_box_that_holds_them() {
    use outpost_resources::ConsumerId;
    let etcd = EtcdMember::start();
    let site = site_of(&etcd, &["box1", "box2"]);
    let claim = site[0].claim("s1", &small_flavor(), false).unwrap();
    let holder = if claim.host_id.0 == "box1" { 0 } else { 1 };
    // Any box may release or resize a claim held on another.
    let bigger = crate::compute::servers::store::FlavorSnapshot {
        ram: 1024,
        ..small_flavor()
    };
    let other = 1 - holder;
    let resize = site[other].begin_resize("s1", &bigger, false).unwrap();
    assert_eq!(
        resize.dest.host_id, claim.host_id,
        "a resize stays on its box"
    );
    assert_eq!(site[holder].host_usage().used[1], 1536);
    site[other].revert_resize("s1").unwrap();
    site[other].revert_resize("s1").unwrap();
    assert_eq!(site[holder].host_usage().used[1], 512);
    assert_eq!(site[holder].claims().unwrap(), vec![claim]);
    site[other].release(&ConsumerId::from("s1")).unwrap();
    site[other].release(&ConsumerId::from("s1")).unwrap();
    assert_eq!(site[holder].host_usage().used, [0; 3]);
    assert!(site[holder].claims().unwrap().is_empty());
}

#[test]
fn a_disabled_or_dead_box_takes_no_new_claim() {
    let etcd = EtcdMember::start();
    let site = site_of(&etcd, &["box1", "box2"]);
    let doors = etcd.doors().unwrap();
    // box2 is gone (its alive key expired), box1 is disabled by its operator.
    let mut record: crate::cluster::records::BoxRecord = doors
        .call(|kv| async move { kv.get(keys::box_record("box1")).await })
        .map(|kv| super::from_json(&kv.unwrap()).unwrap())
        .unwrap();
    record.enabled = false;
    record.disabled_reason = Some("maintenance".into());
    let ops = vec![
        etcd_client::TxnOp::delete(keys::alive("box2"), None),
        etcd_client::TxnOp::put(keys::box_record("box1"), super::to_json(&record), None),
    ];
    doors
        .call(|kv| async move {
            kv.txn(etcd_client::Txn::new().and_then(ops))
                .await
                .map(|_| ())
        })
        .unwrap();
    let refused = site[1]
        .claim("s1", &small_flavor(), false)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("No valid host"), "{refused}");
    assert!(refused.contains("maintenance"), "{refused}");
}
