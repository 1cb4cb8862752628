//! A site's control-plane figures on a real etcd (Debian's `etcd`, one member on loopback):
//! prints min/median/max, asserts nothing. `cargo bench -p outpost-control --bench site`.
//!
//! - **visibility**: a flavor created through one box's store until another box's store
//!   (its own etcd connection, as on another machine) reads it: what "a change made on one box
//!   is seen on all" costs below the API.
//! - **claims under contention**: `THREADS` boxes' placements (three boxes' worth of
//!   inventory, each placement on its own connection) claiming at once until the site is full;
//!   claims per second granted and the lost races retried.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_control::cluster::keys::{self, Keyspace};
use outpost_control::cluster::records::{
    AliveRecord, Amounts, BoxRecord, ProviderRecord, ALIVE_SCHEMA, BOX_SCHEMA, PROVIDER_SCHEMA,
};
use outpost_control::cluster::store::EtcdDoors;
use outpost_control::compute::flavors::store::{Flavor, FlavorStore};
use outpost_control::compute::servers::config::{ComputeSection, ComputeSettings, Machine};
use outpost_control::compute::servers::placement::store::PlacementDoor;
use outpost_control::compute::servers::placement::{Placement, Wanted};
use outpost_control::compute::servers::store::FlavorSnapshot;
use outpost_control::timestamp::Timestamp;

const VISIBILITY_RUNS: usize = 200;
const CLAIM_ROUNDS: usize = 5;
const THREADS: usize = 6;
const BOXES: [&str; 3] = ["box1", "box2", "box3"];

struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (child, url) = outpost_control::cluster::loopback::spawn_etcd(dir.path())
        .expect("etcd runs (Debian's etcd-server)");
    Etcd {
        child,
        url,
        _dir: dir,
    }
}

fn doors(etcd: &Etcd, root: &str) -> EtcdDoors {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(d) = EtcdDoors::connect(vec![etcd.url.clone()], Keyspace::under(root)) {
            if d.flavors().flavor("probe").is_ok() {
                return d;
            }
        }
        assert!(Instant::now() < deadline, "etcd did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(what: &str, mut samples: Vec<f64>, unit: &str) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    println!(
        "{what}: min {:.3} / median {:.3} / max {:.3} {unit} ({n} runs)",
        samples[0],
        samples[n / 2],
        samples[n - 1]
    );
}

fn flavor(id: &str) -> Flavor {
    Flavor {
        seq: 0,
        id: id.into(),
        name: id.into(),
        ram: 512,
        vcpus: 1,
        disk: 1,
        ephemeral: 0,
        swap: 0,
        rxtx_factor: 1.0,
        is_public: true,
        disabled: false,
        description: None,
        extra_specs: Default::default(),
        created_at: Timestamp::now(),
        updated_at: None,
    }
}

fn visibility(etcd: &Etcd) {
    let writer = doors(etcd, "/bench/v");
    let reader = doors(etcd, "/bench/v");
    let mut samples = Vec::new();
    for i in 0..VISIBILITY_RUNS {
        let id = format!("f{i}");
        let t0 = Instant::now();
        writer
            .flavors()
            .create_flavor(&flavor(&id))
            .expect("create");
        while reader.flavors().flavor(&id).expect("read").is_none() {}
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    report(
        "change on one box seen by another (store level)",
        samples,
        "ms",
    );
}

fn seed_site(etcd: &Etcd, settings: &ComputeSettings) {
    let d = doors(etcd, "/bench/seed");
    let inventories = settings
        .inventory
        .inventories()
        .expect("inventory")
        .into_iter()
        .collect();
    let mut ops = Vec::new();
    for name in BOXES {
        let record = BoxRecord {
            schema: BOX_SCHEMA,
            name: name.into(),
            service_id: format!("svc-{name}"),
            hypervisor_id: format!("hv-{name}"),
            underlay: "10.0.0.1".into(),
            availability_zone: "nova".into(),
            enabled: true,
            disabled_reason: None,
            joined_at: Timestamp::now().to_rfc3339(),
            api: None,
            api_cert_sha256: None,
        };
        let provider = ProviderRecord {
            schema: PROVIDER_SCHEMA,
            total: Amounts {
                vcpus: settings.inventory.vcpus,
                ram_mb: settings.inventory.ram_mb,
                disk_gb: settings.inventory.disk_gb,
            },
            inventories: Clone::clone(&inventories),
            traits: Default::default(),
            updated_at: Timestamp::now().to_rfc3339(),
        };
        let alive = AliveRecord {
            schema: ALIVE_SCHEMA,
            boot_id: "bench".into(),
            started_at: Timestamp::now().to_rfc3339(),
            version: "bench".into(),
        };
        ops.push((keys::box_record(name), serde_json::to_vec(&record).unwrap()));
        ops.push((keys::provider(name), serde_json::to_vec(&provider).unwrap()));
        ops.push((keys::alive(name), serde_json::to_vec(&alive).unwrap()));
    }
    drop(d);
    for (key, value) in ops {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.url))
            .arg("put")
            .arg(&key)
            .arg(String::from_utf8(value).expect("JSON is UTF-8"))
            .output()
            .expect("etcdctl runs (Debian's etcd-client)");
        assert!(out.status.success(), "etcdctl put {key}: {out:?}");
    }
}

fn claims() {
    // Each box: 64 vCPUs, 64 GiB, no overcommit: 128 servers of 512 MiB per box.
    let settings = |name: &str| {
        ComputeSettings::resolve(
            &ComputeSection {
                host: Some(name.into()),
                reserved_host_memory_mb: Some(0),
                cpu_allocation_ratio: Some(4.0),
                ..ComputeSection::default()
            },
            Machine {
                vcpus: 64,
                ram_mb: 65536,
                disk_gb: 1000,
                // Placement only: no monitor is started, so no jail is needed.
                root: false,
            },
        )
        .expect("settings")
    };
    let small = FlavorSnapshot {
        id: "s".into(),
        name: "s".into(),
        vcpus: 1,
        ram: 512,
        disk: 1,
        ephemeral: 0,
        swap: 0,
        extra_specs: Default::default(),
    };
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    for round in 0..CLAIM_ROUNDS {
        let etcd_round = start_etcd();
        seed_site(&etcd_round, &settings("box1"));
        let placements: Vec<Arc<Placement>> = (0..THREADS)
            .map(|i| {
                let own = doors(&etcd_round, "/bench/c");
                let door = PlacementDoor::Site(Arc::new(own.site_claims()));
                let groups = Arc::new(own.server_groups());
                let aggregates = Arc::new(own.aggregates());
                Arc::new(
                    Placement::open(&settings(BOXES[i % 3]), door, groups, aggregates)
                        .expect("placement"),
                )
            })
            .collect();
        let granted = AtomicU64::new(0);
        let t0 = Instant::now();
        let per_thread: Vec<Vec<f64>> = std::thread::scope(|s| {
            let handles: Vec<_> = placements
                .iter()
                .enumerate()
                .map(|(t, p)| {
                    let (granted, small) = (&granted, &small);
                    s.spawn(move || {
                        let mut took = Vec::new();
                        for n in 0.. {
                            let c0 = Instant::now();
                            let id = format!("r{round}-t{t}-{n}");
                            if p.claim(&id, small, false, &Wanted::default()).is_err() {
                                break;
                            }
                            took.push(c0.elapsed().as_secs_f64() * 1e3);
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                        took
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a claimer"))
                .collect()
        });
        let secs = t0.elapsed().as_secs_f64();
        rates.push(granted.load(Ordering::Relaxed) as f64 / secs);
        latencies.extend(per_thread.into_iter().flatten());
    }
    report(
        &format!("claims granted per second, {THREADS} placements on 3 boxes at once until full"),
        rates,
        "claims/s",
    );
    report(
        "one claim under that contention (read, schedule, commit, retries)",
        latencies,
        "ms",
    );
}

fn main() {
    let etcd = start_etcd();
    visibility(&etcd);
    claims();
}
