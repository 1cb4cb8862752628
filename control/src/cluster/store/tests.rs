//! The same conformance suites SQLite passes (`identity::store::conformance`,
//! `compute::flavors::store::conformance`, `compute::keypairs::store::conformance`, `quota::store::conformance`,
//! `compute::servers::store::conformance`,
//! `image::store::conformance`, `volume::store::conformance`, `network::store::conformance`),
//! run against a real single-member etcd: Debian's `etcd` binary on loopback, data in a
//! temporary directory, killed when the test ends. Every store a suite asks for gets a key
//! root of its own, so one member serves a whole suite; races run on two connections to one
//! root, as two boxes write the same keys.

use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{EtcdDoors, ServerEntry};
use crate::cluster::keys::{self, Keyspace};

/// One etcd member for one test; killed (and its data removed) on drop.
struct EtcdMember {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
    next_root: AtomicU32,
}

impl EtcdMember {
    fn start() -> EtcdMember {
        let dir = tempfile::tempdir().expect("a temporary directory for etcd");
        let (child, url) = crate::cluster::loopback::spawn_etcd(dir.path())
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
        self.doors_under(&format!("/test/{n}"))
    }

    /// Two connections on one fresh root, as two boxes of a cluster see the same keys.
    fn two_boxes(&self) -> (EtcdDoors, EtcdDoors) {
        let [a, b]: [EtcdDoors; 2] = self
            .boxes(2)
            .try_into()
            .unwrap_or_else(|_| unreachable!("boxes(2) makes two"));
        (a, b)
    }

    /// `n` boxes' doors on one fresh root, each its own connection and store thread.
    fn boxes(&self, n: usize) -> Vec<EtcdDoors> {
        let root = format!("/test/{}", self.next_root.fetch_add(1, Ordering::Relaxed));
        (0..n).map(|_| self.doors_under(&root).unwrap()).collect()
    }

    /// Doors (a connection and thread of their own) on keys under `root`: doors under one
    /// root share their records as the boxes of a cluster do.
    fn doors_under(&self, root: &str) -> Result<EtcdDoors, crate::cluster::ClusterError> {
        let doors = EtcdDoors::connect(vec![self.url.clone()], Keyspace::under(root))?;
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
fn etcd_key_pairs_conform_to_the_key_pair_store_contract() {
    let etcd = EtcdMember::start();
    crate::compute::keypairs::store::conformance::run(|| etcd.doors().unwrap().keypairs());
}

/// OpenStack's default quotas, with the limits set per project in `doors`' etcd.
fn quotas(doors: &EtcdDoors) -> crate::quota::Quotas {
    crate::quota::Quotas::new(Default::default(), std::sync::Arc::new(doors.quotas()))
}

#[test]
fn etcd_quotas_conform_to_the_quota_store_contract() {
    let etcd = EtcdMember::start();
    crate::quota::store::conformance::run(|| etcd.doors().unwrap().quotas());
}

#[test]
fn etcd_server_groups_conform_to_the_server_group_store_contract() {
    use crate::compute::server_groups::store::conformance;
    let etcd = EtcdMember::start();
    conformance::run(|| etcd.doors().unwrap().server_groups());
    conformance::races(|| {
        let (a, b) = etcd.two_boxes();
        (a.server_groups(), b.server_groups())
    });
}

#[test]
fn etcd_aggregates_conform_to_the_aggregate_store_contract() {
    use crate::compute::aggregates::store::conformance;
    let etcd = EtcdMember::start();
    conformance::run(|| etcd.doors().unwrap().aggregates());
    conformance::races(|| {
        let (a, b) = etcd.two_boxes();
        (a.aggregates(), b.aggregates())
    });
}

/// A member of project `p1`, for the network tests.
fn member() -> crate::context::RequestContext {
    crate::context::RequestContext {
        user_id: "u".into(),
        user_name: "user".into(),
        project_id: Some("p1".into()),
        project_name: Some("p1".into()),
        roles: vec!["member".into()],
    }
}

#[test]
fn etcd_servers_conform_to_the_server_store_contract() {
    let etcd = EtcdMember::start();
    crate::compute::servers::store::conformance::run(|| etcd.doors().unwrap().servers());
}

#[test]
fn etcd_images_conform_to_the_image_store_contract() {
    let etcd = EtcdMember::start();
    crate::image::store::conformance::run(|| etcd.doors().unwrap().images());
    crate::image::store::conformance::races(|| {
        let (a, b) = etcd.two_boxes();
        (a.images(), b.images())
    });
}

#[test]
fn etcd_volumes_conform_to_the_volume_store_contract() {
    let etcd = EtcdMember::start();
    crate::volume::store::conformance::run(|| etcd.doors().unwrap().volumes());
    crate::volume::store::conformance::races(|| {
        let (a, b) = etcd.two_boxes();
        (a.volumes(), b.volumes())
    });
}

#[test]
fn etcd_networks_conform_to_the_network_store_contract() {
    let etcd = EtcdMember::start();
    crate::network::store::conformance::run(|| etcd.doors().unwrap().networks());
}

/// Eight boxes, each with its own connection to etcd, create a port at once on a subnet with
/// four free addresses: four get one each, four are told the subnet is full, and every box
/// then sees the same four ports holding the four addresses.
#[test]
fn boxes_allocating_at_once_never_share_an_address_and_lose_none() {
    use crate::network::networks::NewNetwork;
    use crate::network::ports::{FixedIpRequest, NewPort};
    use crate::network::subnets::NewSubnet;
    use crate::network::{NetworkError, NetworkService, NetworkSettings, DHCP_OWNER};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    let etcd = EtcdMember::start();
    let boxes = etcd.boxes(8);
    let services: Vec<NetworkService> = boxes
        .iter()
        .map(|d| {
            NetworkService::with_store(
                Arc::new(d.networks()),
                quotas(d),
                NetworkSettings::default(),
            )
        })
        .collect();
    let c = member();
    let net = services[0]
        .create_network(&c, NewNetwork::default())
        .unwrap();
    // A /29: .1 is the gateway, .2 to .6 the pool, and the DHCP port takes one of them.
    let subnet = services[1]
        .create_subnet(
            &c,
            NewSubnet {
                network_id: net.id.clone(),
                ip_version: Some(serde_json::json!(4)),
                cidr: Some("10.7.0.0/29".into()),
                ..NewSubnet::default()
            },
        )
        .unwrap();
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = services
            .iter()
            .map(|svc| {
                let (c, net, subnet) = (&c, &net.id, &subnet.id);
                scope.spawn(move || {
                    svc.create_port(
                        c,
                        NewPort {
                            network_id: net.clone(),
                            fixed_ips: Some(vec![FixedIpRequest {
                                subnet_id: Some(subnet.clone()),
                                ip_address: None,
                            }]),
                            ..NewPort::default()
                        },
                    )
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 4, "{results:?}");
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                e,
                NetworkError::Conflict {
                    kind: "IpAddressGenerationFailure",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let handed_out: BTreeSet<String> = created
        .iter()
        .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address.to_string()))
        .collect();
    assert_eq!(handed_out.len(), 4, "{handed_out:?}");

    // Every box sees the same ports; with the DHCP port they hold the whole pool, each
    // address once, and each address's key names its port.
    let pool: BTreeSet<String> = (2..=6).map(|i| format!("10.7.0.{i}")).collect();
    for svc in &services {
        let ports = svc.list_ports(&c).unwrap();
        assert_eq!(ports.len(), 5);
        assert_eq!(
            ports
                .iter()
                .filter(|p| p.device_owner == DHCP_OWNER)
                .count(),
            1
        );
        let held: Vec<String> = ports
            .iter()
            .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address.to_string()))
            .collect();
        assert_eq!(held.iter().cloned().collect::<BTreeSet<_>>(), pool);
        assert_eq!(held.len(), pool.len());
        for p in created.iter().copied() {
            assert!(ports.contains(p), "{} is missing on a box", p.id);
        }
    }
    use crate::network::NetworkStore;
    boxes[7]
        .networks()
        .read_networks(&mut |tx| {
            for p in tx.list_ports()? {
                for f in &p.fixed_ips {
                    assert_eq!(tx.ip_holder(&net.id, f.ip_address)?, Some(p.id.clone()));
                }
                assert!(tx.mac_in_use(&net.id, p.mac_address)?);
            }
            Ok(())
        })
        .unwrap();
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
    site_with_doors(etcd, boxes, None).0
}

/// [`site_of`], with each box's doors (one root: the boxes share their server groups) and the
/// scheduler's `spread`.
fn site_with_doors(
    etcd: &EtcdMember,
    boxes: &[&str],
    spread: Option<outpost_resources::TieBreak>,
) -> (
    Vec<crate::compute::servers::placement::Placement>,
    Vec<EtcdDoors>,
) {
    site_keeping_reserve(etcd, boxes, spread, false)
}

/// [`site_with_doors`], each box's placement keeping the failure reserve when `reserve`.
fn site_keeping_reserve(
    etcd: &EtcdMember,
    boxes: &[&str],
    spread: Option<outpost_resources::TieBreak>,
    reserve: bool,
) -> (
    Vec<crate::compute::servers::placement::Placement>,
    Vec<EtcdDoors>,
) {
    use crate::cluster::records::{
        AliveRecord, BoxRecord, ALIVE_SCHEMA, BOX_SCHEMA, PROVIDER_SCHEMA,
    };
    use crate::compute::servers::config::{ComputeSection, ComputeSettings, Machine};
    use crate::compute::servers::placement::store::PlacementDoor;
    use crate::compute::servers::placement::Placement;
    use std::sync::Arc;
    let doors = etcd.doors().unwrap();
    let own_doors = etcd.boxes(boxes.len());
    let placements = boxes
        .iter()
        .zip(&own_doors)
        .map(|(name, own)| {
            let mut settings = ComputeSettings::resolve(
                &ComputeSection {
                    host: Some((*name).into()),
                    reserved_host_memory_mb: Some(0),
                    cpu_allocation_ratio: Some(1.0),
                    scheduler: Some(outpost_resources::SchedulerConfig {
                        spread,
                        ..Default::default()
                    }),
                    ..ComputeSection::default()
                },
                Machine {
                    vcpus: 4,
                    ram_mb: 2048,
                    disk_gb: 10,
                    root: false,
                },
            )
            .unwrap();
            settings.failure_reserve = reserve;
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
                api: None,
                api_cert_sha256: None,
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
            let groups = Arc::new(own.server_groups());
            Placement::open(
                &settings,
                PlacementDoor::Site(Arc::new(own.site_claims())),
                groups,
                Arc::new(own.aggregates()),
            )
            .unwrap()
        })
        .collect();
    (placements, own_doors)
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
fn a_server_asked_for_a_zone_lands_on_the_box_an_aggregate_puts_in_it_from_every_box() {
    use crate::compute::aggregates::store::{conformance::aggregate, AggregateStore};
    use crate::compute::aggregates::{AggregateWrite, ZONE_KEY};
    use crate::compute::servers::placement::Wanted;
    let etcd = EtcdMember::start();
    let (site, doors) = site_with_doors(&etcd, &["box1", "box2", "box3"], None);
    let mut edge = aggregate("edge");
    edge.hosts.insert("box2".into());
    edge.metadata.insert(ZONE_KEY.into(), "edge-1".into());
    doors[0]
        .aggregates()
        .write(&mut |_| Some(AggregateWrite::Create(edge.clone())))
        .unwrap();
    let zones: Vec<(String, String)> = site[2].hosts().unwrap();
    assert_eq!(
        zones,
        [
            ("box1".to_owned(), "nova".to_owned()),
            ("box2".to_owned(), "edge-1".to_owned()),
            ("box3".to_owned(), "nova".to_owned()),
        ]
    );
    let in_zone = |zone: &str| Wanted {
        availability_zone: Some(zone.into()),
        ..Wanted::default()
    };
    // Asked through each box, a server of edge-1 goes to its one box; one of nova never.
    for (i, p) in site.iter().enumerate() {
        let edge = p
            .claim(
                &format!("edge-{i}"),
                &small_flavor(),
                false,
                &in_zone("edge-1"),
            )
            .unwrap();
        assert_eq!(edge.host_id.0, "box2", "asked through box{}", i + 1);
        let nova = p
            .claim(
                &format!("nova-{i}"),
                &small_flavor(),
                false,
                &in_zone("nova"),
            )
            .unwrap();
        assert_ne!(nova.host_id.0, "box2", "asked through box{}", i + 1);
    }
    // box2 holds four such servers: a fourth of edge-1 still fits, a fifth finds no host.
    site[0]
        .claim("edge-3", &small_flavor(), false, &in_zone("edge-1"))
        .unwrap();
    assert!(site[1]
        .claim("edge-4", &small_flavor(), false, &in_zone("edge-1"))
        .is_err());
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
                        .claim(
                            &format!("server-{i}"),
                            &small_flavor(),
                            false,
                            &Default::default(),
                        )
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

/// Creates through every box at once, all in one group: an anti-affinity group never gets
/// two members on one box however the claims race, and an affinity group's members all land
/// on the box the first one took. Members join the group before they are placed, as the API
/// makes them join.
#[test]
fn members_of_one_group_placed_at_once_through_every_box_keep_its_policy() {
    use crate::compute::server_groups::store::{conformance, ServerGroupStore};
    use outpost_resources::GroupPolicy;
    use std::collections::BTreeMap;
    let etcd = EtcdMember::start();
    let boxes = ["box1", "box2", "box3"];
    // Ties broken at random, so the boxes deciding at once choose differently and the
    // group's generation (not only a box's usage) has to settle the race.
    let (site, doors) = site_with_doors(&etcd, &boxes, Some(outpost_resources::TieBreak::Random));
    let groups = doors[0].server_groups();
    let place_all = |group: &str, servers: usize| -> Vec<Option<String>> {
        for i in 0..servers {
            assert!(groups
                .add_member(group, &format!("{group}-{i}"), crate::quota::UNLIMITED)
                .unwrap());
        }
        let start = std::sync::Barrier::new(servers);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..servers)
                .map(|i| {
                    let (site, start) = (&site, &start);
                    s.spawn(move || {
                        let wanted = crate::compute::servers::placement::Wanted {
                            group: Some(group.to_owned()),
                            ..Default::default()
                        };
                        start.wait();
                        site[i % site.len()]
                            .claim(&format!("{group}-{i}"), &small_flavor(), false, &wanted)
                            .ok()
                            .map(|c| c.host_id.0)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    for round in 0..3 {
        // Six members, three boxes: three placed, one per box, three refused.
        let anti = format!("anti{round}");
        groups
            .create_group(
                &conformance::group(&anti, "p", GroupPolicy::AntiAffinity),
                crate::quota::UNLIMITED,
            )
            .unwrap();
        let placed = place_all(&anti, 6);
        let mut per_box: BTreeMap<&String, usize> = BTreeMap::new();
        for host in placed.iter().flatten() {
            *per_box.entry(host).or_default() += 1;
        }
        assert_eq!(per_box.len(), 3, "round {round}: {placed:?}");
        assert!(
            per_box.values().all(|n| *n == 1),
            "round {round}: {placed:?}"
        );
        // Three members of an affinity group: all on one box (it has room for four).
        let together = format!("affinity{round}");
        groups
            .create_group(
                &conformance::group(&together, "p", GroupPolicy::Affinity),
                crate::quota::UNLIMITED,
            )
            .unwrap();
        let placed = place_all(&together, 3);
        let hosts: std::collections::BTreeSet<_> = placed.iter().flatten().collect();
        assert_eq!(hosts.len(), 1, "round {round}: {placed:?}");
        assert_eq!(
            placed.iter().flatten().count(),
            3,
            "round {round}: {placed:?}"
        );
        // Free the boxes for the next round.
        for (i, _) in placed.iter().enumerate() {
            site[0]
                .release(&outpost_resources::ConsumerId(format!("{together}-{i}")))
                .unwrap();
        }
        for i in 0..6 {
            site[0]
                .release(&outpost_resources::ConsumerId(format!("{anti}-{i}")))
                .unwrap();
        }
    }
}

/// A multi-create's batch in an anti-affinity group is one decision over the site: one
/// member per box, and a batch whose minimum the site cannot hold takes nothing.
#[test]
fn a_batch_in_an_anti_affinity_group_takes_one_box_each_or_nothing() {
    use crate::compute::server_groups::store::{conformance, ServerGroupStore};
    use crate::compute::servers::placement::{PlacementError, Wanted};
    use outpost_resources::GroupPolicy;
    let etcd = EtcdMember::start();
    let (site, doors) = site_with_doors(&etcd, &["box1", "box2", "box3"], None);
    let groups = doors[1].server_groups();
    groups
        .create_group(
            &conformance::group("g", "p", GroupPolicy::AntiAffinity),
            crate::quota::UNLIMITED,
        )
        .unwrap();
    let batch: Vec<String> = (1..=4).map(|i| format!("s{i}")).collect();
    for id in &batch {
        groups.add_member("g", id, crate::quota::UNLIMITED).unwrap();
    }
    let wanted = Wanted {
        group: Some("g".into()),
        ..Wanted::default()
    };
    let refused = site[0]
        .claim_many(&batch, 4, &small_flavor(), false, &wanted)
        .unwrap_err();
    assert!(
        matches!(&refused, PlacementError::NoValidHost(n) if n.to_string()
            .starts_with("No valid host was found for server 4 of 4.")),
        "{refused}"
    );
    assert!(site[1].claims().unwrap().is_empty(), "nothing held");
    let placed = site[0]
        .claim_many(&batch, 2, &small_flavor(), false, &wanted)
        .unwrap();
    let hosts: std::collections::BTreeSet<String> =
        placed.iter().map(|c| c.host_id.0.clone()).collect();
    assert_eq!((placed.len(), hosts.len()), (3, 3), "{placed:?}");
    // The fourth member still finds no box, whichever box asks.
    assert!(site[2]
        .claim("s4", &small_flavor(), false, &wanted)
        .is_err());
}

#[test]
fn a_site_releases_resizes_and_reverts_claims_on_the_box_that_holds_them() {
    use outpost_resources::ConsumerId;
    let etcd = EtcdMember::start();
    let site = site_of(&etcd, &["box1", "box2"]);
    let claim = site[0]
        .claim("s1", &small_flavor(), false, &Default::default())
        .unwrap();
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
        .claim("s1", &small_flavor(), false, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(refused.contains("No valid host"), "{refused}");
    assert!(refused.contains("maintenance"), "{refused}");
}

/// Boxes (each a store with its own connection and thread) bump one counter in one server's
/// metadata at once: every bump lands, each on the count the one before it left.
#[test]
fn boxes_updating_one_server_at_once_lose_no_update() {
    use crate::compute::servers::store::{conformance, ServerStore, TaskChange};
    const BOXES: usize = 4;
    const ROUNDS: u64 = 10;
    let etcd = EtcdMember::start();
    let boxes: Vec<_> = (0..BOXES)
        .map(|_| etcd.doors_under("/race").unwrap().servers())
        .collect();
    boxes[0]
        .insert_server(
            &conformance::server("a", "p", 1),
            "create",
            "claim",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    let start = std::sync::Barrier::new(BOXES);
    let changes_run = AtomicU32::new(0);
    let bump = |s: &mut crate::compute::servers::store::Server| {
        changes_run.fetch_add(1, Ordering::Relaxed);
        let n: u64 = s
            .metadata
            .get("count")
            .map_or(Ok(0), |c| c.parse())
            .unwrap();
        s.metadata.insert("count".into(), (n + 1).to_string());
        true
    };
    let mut written: Vec<u64> = std::thread::scope(|scope| {
        let threads: Vec<_> = boxes
            .iter()
            .map(|store| {
                let (start, mut bump) = (&start, bump);
                scope.spawn(move || {
                    start.wait();
                    (0..ROUNDS)
                        .map(|_| {
                            let after = store
                                .update_server("a", TaskChange::Keep, &mut bump)
                                .unwrap()
                                .unwrap();
                            after.metadata["count"].parse::<u64>().unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    // Each update wrote a count no other update wrote, and the last one is the total.
    let total = BOXES as u64 * ROUNDS;
    written.sort_unstable();
    assert_eq!(written, (1..=total).collect::<Vec<_>>());
    let stored = boxes[1].server("a").unwrap().unwrap();
    assert_eq!(stored.metadata["count"], total.to_string());
    // The boxes did collide: some changes ran again on a newer copy.
    assert!(u64::from(changes_run.load(Ordering::Relaxed)) > total);
}

#[test]
fn a_server_s_user_data_and_progress_have_keys_of_their_own() {
    use crate::compute::servers::store::{conformance, ServerStore, TaskChange};
    let etcd = EtcdMember::start();
    let doors = etcd.doors().unwrap();
    let servers = doors.servers();
    let mut s = conformance::server("a", "p", 1);
    s.host = Some("box1".into());
    // Nova's largest user_data.
    s.user_data = Some("u".repeat(65_535));
    let stored = servers
        .insert_server(&s, "create", "claim", &crate::quota::ServerQuota::UNLIMITED)
        .unwrap();
    let keys = doors.kv.keys.clone();
    let raw = |key: String| {
        doors
            .call(|kv| async move { kv.get(key).await })
            .unwrap()
            .map(|kv| serde_json::from_slice::<serde_json::Value>(kv.value()).unwrap())
    };
    let record = raw(keys.server("a")).unwrap();
    assert_eq!(record["schema"], 1);
    assert_eq!(record["epoch"], 1);
    assert_eq!(record["owner"], "box1");
    assert!(record.get("user_data").is_none());
    assert_eq!(
        raw(keys.server_user_data("a")).unwrap()["user_data"]
            .as_str()
            .map(str::len),
        Some(65_535)
    );
    assert_eq!(raw(keys.server_task("a")).unwrap()["step"], "claim");
    // Reads put the user_data back; an update that leaves it alone keeps it.
    assert_eq!(servers.server("a").unwrap(), Some(stored.clone()));
    assert_eq!(servers.servers(None).unwrap(), [stored]);
    let renamed = servers
        .update_server("a", TaskChange::Clear, &mut |s| {
            s.name = "renamed".into();
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(renamed.user_data, s.user_data);
    assert_eq!(raw(keys.server("a")).unwrap()["epoch"], 1);
    assert_eq!(raw(keys.server_task("a")), None);
    // A progress row needs its server.
    let step = TaskChange::Step {
        kind: "create",
        step: "claim",
    };
    assert!(servers.set_server_task("zzz", step).is_err());
    assert_eq!(raw(keys.server_task("zzz")), None);
    // A second create of the same id changes nothing.
    assert!(servers
        .insert_server(&s, "create", "claim", &crate::quota::ServerQuota::UNLIMITED)
        .is_err());
    assert_eq!(
        servers.server("a").unwrap().map(|s| s.name),
        Some("renamed".into())
    );
    servers.set_server_task("a", step).unwrap();
    assert!(servers.delete_server("a").unwrap());
    for key in [
        keys.server("a"),
        keys.server_user_data("a"),
        keys.server_task("a"),
    ] {
        assert_eq!(raw(key), None);
    }
}

#[test]
fn a_reconciler_reads_every_server_at_one_revision_and_watches_from_there() {
    use crate::compute::servers::store::{conformance, Server, ServerStore, TaskChange};
    let etcd = EtcdMember::start();
    let doors = etcd.doors().unwrap();
    let servers = doors.servers();
    let mut with_data = conformance::server("a", "p1", 1);
    with_data.user_data = Some("data".into());
    servers
        .insert_server(
            &with_data,
            "create",
            "claim",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    servers
        .insert_server(
            &conformance::server("b", "p2", 2),
            "create",
            "claim",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    let b = servers
        .update_server("b", TaskChange::Keep, &mut |s| {
            s.host = Some("box2".into());
            true
        })
        .unwrap()
        .unwrap();
    let at = doors.servers_at().unwrap();
    let mut entries = at.servers.clone();
    entries.sort_by(|x, y| x.server.id.cmp(&y.server.id));
    assert_eq!(entries.len(), 2);
    assert!(entries
        .iter()
        .all(|e| e.epoch == 1 && e.mod_revision <= at.revision));
    // The update came last: its record's revision is the read's.
    assert_eq!(entries[1].mod_revision, at.revision);
    assert_eq!(
        entries[1].server,
        Server {
            user_data: None,
            ..b
        }
    );
    assert!(entries[1].mod_revision > entries[1].server.seq);
    // user_data has its own key, not read here.
    assert_eq!(entries[0].server.user_data, None);
    // Writes after the read: a watch from revision + 1 sees them all, and nothing before.
    servers
        .update_server("a", TaskChange::Keep, &mut |s| {
            s.name = "renamed".into();
            true
        })
        .unwrap();
    servers.delete_server("b").unwrap();
    let (prefix, from) = (doors.servers_prefix(), at.revision + 1);
    let events = doors
        .call(|kv| async move {
            let (_, mut client) = kv.etcd.client().await.map_err(super::backend)?;
            let options = etcd_client::WatchOptions::new()
                .with_prefix()
                .with_start_revision(from);
            let mut stream = client.watch(prefix, Some(options)).await.unwrap();
            let mut events = Vec::new();
            while events.len() < 2 {
                let next = tokio::time::timeout(Duration::from_secs(5), stream.message());
                let resp = next.await.expect("the watch answers").unwrap().unwrap();
                events.extend(resp.events().to_vec());
            }
            Ok::<_, crate::store::StorageError>(events)
        })
        .unwrap();
    let renamed = ServerEntry::from_kv(events[0].kv().unwrap()).unwrap();
    assert_eq!(renamed.server.name, "renamed");
    assert!(renamed.mod_revision > at.revision);
    assert_eq!(events[1].event_type(), etcd_client::EventType::Delete);
    assert_eq!(
        events[1].kv().unwrap().key_str().unwrap(),
        doors.kv.keys.server("b")
    );
}

/// The unit of work's own rules: one snapshot for every read, its own writes visible to it,
/// and a commit refused when a key read by name or a range listed changed meanwhile, but not
/// when only a peeked range did.
#[test]
fn a_unit_of_work_commits_only_over_what_it_read() {
    use super::unit_of_work::{Outcome, UnitOfWork};
    let etcd = EtcdMember::start();
    let doors = etcd.doors().unwrap();
    let other = etcd.doors().unwrap();
    let write = |key: &str| {
        let w = UnitOfWork::new(&other);
        w.put(key.to_owned(), b"other".to_vec()).unwrap();
        assert_eq!(w.commit().unwrap(), Outcome::Committed);
    };

    // Reads stay at the first read's revision; the work sees its own writes.
    let w = UnitOfWork::new(&doors);
    assert_eq!(w.get("/u/a").unwrap(), None);
    write("/u/b");
    assert_eq!(
        w.get("/u/b").unwrap(),
        None,
        "a read after another's commit"
    );
    w.put("/u/c".into(), b"mine".to_vec()).unwrap();
    w.put("/u/d".into(), b"mine".to_vec()).unwrap();
    w.delete("/u/d".into()).unwrap();
    assert_eq!(w.get("/u/c").unwrap(), Some(b"mine".to_vec()));
    let listed: Vec<String> = w.list("/u/").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, ["/u/c"]);
    // /u/b was created under the listed /u/ after the snapshot.
    assert_eq!(w.commit().unwrap(), Outcome::Lost);

    // A key read by name and changed meanwhile.
    let w = UnitOfWork::new(&doors);
    assert_eq!(w.get("/u/b").unwrap(), Some(b"other".to_vec()));
    write("/u/b");
    w.put("/v/x".into(), b"mine".to_vec()).unwrap();
    assert_eq!(w.commit().unwrap(), Outcome::Lost);
    assert_eq!(UnitOfWork::new(&doors).get("/v/x").unwrap(), None);

    // A peeked range changed elsewhere than the key taken: both commit.
    let w = UnitOfWork::new(&doors);
    assert!(w.peek("/p/").unwrap().is_empty());
    write("/p/1");
    assert_eq!(w.get("/p/2").unwrap(), None);
    w.put("/p/2".into(), b"mine".to_vec()).unwrap();
    assert_eq!(w.commit().unwrap(), Outcome::Committed);
    // ... but not on the same key: its own compare decides.
    let w = UnitOfWork::new(&doors);
    assert_eq!(w.peek("/p/").unwrap().len(), 2);
    write("/p/3");
    w.put("/p/3".into(), b"mine".to_vec()).unwrap();
    assert_eq!(w.commit().unwrap(), Outcome::Lost);

    // More writes than one transaction here holds: refused, nothing written.
    let w = UnitOfWork::new(&doors);
    for i in 0..65 {
        w.put(format!("/big/{i:02}"), b"x".to_vec()).unwrap();
    }
    let refused = w.commit().unwrap_err().to_string();
    assert!(refused.contains("smaller steps"), "{refused}");
    assert!(UnitOfWork::new(&doors).list("/big/").unwrap().is_empty());
}

/// Each network holds a VXLAN id of its own from 1000 up, given back when it goes.
#[test]
fn networks_hold_distinct_vxlan_ids_until_deleted() {
    use super::unit_of_work::UnitOfWork;
    use crate::network::networks::NewNetwork;
    use crate::network::{NetworkService, NetworkSettings};
    use std::sync::Arc;

    let etcd = EtcdMember::start();
    let doors = etcd.doors().unwrap();
    let svc = NetworkService::with_store(
        Arc::new(doors.networks()),
        quotas(&doors),
        NetworkSettings::default(),
    );
    let c = member();
    let vnis = || -> Vec<(String, String)> {
        let prefix = doors.kv.keys.vnis();
        UnitOfWork::new(&doors)
            .list(&prefix)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let record: serde_json::Value = serde_json::from_slice(&v).unwrap();
                let vni = k.strip_prefix(&prefix).unwrap().to_owned();
                (vni, record["network"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let a = svc.create_network(&c, NewNetwork::default()).unwrap();
    let b = svc.create_network(&c, NewNetwork::default()).unwrap();
    assert_eq!(
        vnis(),
        [
            ("1000".to_owned(), a.id.clone()),
            ("1001".to_owned(), b.id.clone())
        ]
    );
    svc.delete_network(&c, &a.id).unwrap();
    let d = svc.create_network(&c, NewNetwork::default()).unwrap();
    assert_eq!(
        vnis(),
        [("1000".to_owned(), d.id.clone()), ("1001".to_owned(), b.id)]
    );
}

/// A unit of work whose snapshot etcd compacted away while it ran is not failed: it runs
/// again on a fresh snapshot.
#[test]
fn a_unit_of_work_whose_snapshot_was_compacted_runs_again() {
    use super::unit_of_work::{Outcome, UnitOfWork};
    use crate::network::NetworkStore;
    let etcd = EtcdMember::start();
    let doors = etcd.doors().unwrap();
    let compact_now = || {
        doors.call(|kv| async move {
            kv.etcd
                .run(|mut c| async move {
                    let now = c.get("/", None).await?.header().map_or(0, |h| h.revision());
                    c.compact(now, None).await
                })
                .await
                .map_err(super::backend)
        })
    };
    let mut runs = 0;
    doors
        .networks()
        .read_networks(&mut |tx| {
            runs += 1;
            tx.list_networks()?;
            if runs == 1 {
                // Another box writes, and etcd compacts its history past this snapshot.
                let w = UnitOfWork::new(&doors);
                w.put("/elsewhere".into(), b"x".to_vec())?;
                assert_eq!(w.commit()?, Outcome::Committed);
                compact_now()?;
            }
            tx.list_ports()?;
            Ok(())
        })
        .unwrap();
    assert_eq!(runs, 2);
}

/// A member of a site builds its host spec from every box's records: its own servers' ports
/// only, the network's VXLAN (its id from etcd) to the box running the other port, with that
/// port's MAC; the MTU capped at the overlay's; security groups' members on every box.
#[test]
fn a_box_wires_its_own_ports_and_reaches_the_others_over_vxlan() {
    use crate::network::networks::NewNetwork;
    use crate::network::ports::NewPort;
    use crate::network::subnets::NewSubnet;
    use crate::network::{NetworkService, NetworkSettings, SiteView};
    use std::collections::{BTreeMap, HashMap};
    use std::net::IpAddr;
    use std::sync::Arc;

    let etcd = EtcdMember::start();
    let doors = etcd.doors().unwrap();
    let svc = NetworkService::with_store(
        Arc::new(doors.networks()),
        quotas(&doors),
        NetworkSettings::default(),
    );
    let c = member();
    let net = svc.create_network(&c, NewNetwork::default()).unwrap();
    svc.create_subnet(
        &c,
        NewSubnet {
            network_id: net.id.clone(),
            cidr: Some("10.9.0.0/24".into()),
            ip_version: Some(serde_json::json!(4)),
            ..NewSubnet::default()
        },
    )
    .unwrap();
    let port = |server: &str| {
        let p = svc
            .create_port(
                &c,
                NewPort {
                    network_id: net.id.clone(),
                    ..NewPort::default()
                },
            )
            .unwrap();
        svc.bind_port(&c, &p.id, server, "box").unwrap()
    };
    let (here, there) = (port("server-1"), port("server-2"));
    let addr = |s: &str| -> IpAddr { s.parse().unwrap() };
    let site = SiteView {
        me: "box1".into(),
        local: addr("192.0.2.1"),
        underlays: BTreeMap::from([
            ("box1".into(), addr("192.0.2.1")),
            ("box2".into(), addr("192.0.2.2")),
        ]),
        owners: HashMap::from([
            ("server-1".into(), "box1".into()),
            ("server-2".into(), "box2".into()),
        ]),
        mtu: 1450,
    };
    let spec = svc.site_host_spec(Some(&site)).unwrap();
    let n = &spec.networks[0];
    assert_eq!(n.mtu, 1450, "a 1500 network capped at the overlay's MTU");
    let ports: Vec<&str> = n.ports.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ports, [here.id.as_str()]);
    let overlay = n.overlay.as_ref().expect("a VXLAN to box2");
    assert_eq!(overlay.vni, 1000);
    assert_eq!(overlay.local, addr("192.0.2.1"));
    assert_eq!(overlay.peers, [addr("192.0.2.2")]);
    assert_eq!(
        overlay.remote_ports,
        [(there.mac_address, addr("192.0.2.2"))]
    );
    // The default group's members include the port on box2: its remote-group rule holds.
    let members: Vec<IpAddr> = spec.security_groups[0].members.clone();
    for p in [&here, &there] {
        assert!(members.contains(&p.fixed_ips[0].ip_address), "{members:?}");
    }

    // A box that runs no port of the network has its bridge, and no VXLAN.
    let box3 = SiteView {
        me: "box3".into(),
        ..site.clone()
    };
    let spec = svc.site_host_spec(Some(&box3)).unwrap();
    assert!(spec.networks[0].ports.is_empty());
    assert_eq!(spec.networks[0].overlay, None);
    // One box alone: every port, no VXLAN.
    let spec = svc.site_host_spec(None).unwrap();
    assert_eq!(spec.networks[0].ports.len(), 2);
    assert_eq!(spec.networks[0].overlay, None);
}

/// docs/cluster.md, "Contested writes": Ownership move. The server, its claim and both
/// boxes' usage move in one transaction, only while the old owner's alive key is absent and
/// nothing it read changed meanwhile.
#[test]
fn an_evacuation_moves_owner_epoch_and_claim_in_one_transaction() {
    use crate::cluster::store::OwnerMove;
    use crate::compute::servers::placement::store::SiteClaims;
    use crate::compute::servers::store::{conformance, ServerStore, TaskState, VmState};
    use outpost_resources::{ConsumerId, HostId};
    let etcd = EtcdMember::start();
    let (site, own) = site_with_doors(&etcd, &["box1", "box2", "box3"], None);
    let servers = own[0].servers();
    let mut s = conformance::server("s1", "p", 1);
    let wanted = crate::compute::servers::placement::Wanted {
        host: Some("box2".into()),
        ..Default::default()
    };
    let claim = site[1]
        .claim("s1", &small_flavor(), false, &wanted)
        .unwrap();
    assert_eq!(claim.host_id, HostId("box2".into()));
    s.host = Some("box2".into());
    s.vm_state = VmState::Active;
    s.task_state = None;
    s.flavor = small_flavor();
    servers
        .insert_server(&s, "create", "done", &crate::quota::ServerQuota::UNLIMITED)
        .unwrap();
    let entry = || {
        own[0]
            .servers_at()
            .unwrap()
            .servers
            .into_iter()
            .find(|e| e.server.id == "s1")
            .unwrap()
    };
    let plan = |view: &_| {
        site[0]
            .plan_evacuation(view, "s1", &small_flavor(), false, &wanted, None)
            .unwrap()
    };
    // box2 still alive: the move cannot commit, whatever was planned.
    let view = own[0].site_claims().read().unwrap();
    let (change, to) = plan(&view);
    let read = entry();
    let attempt = |read: &ServerEntry, view, change| {
        let record = crate::compute::migrations::record(
            crate::compute::migrations::MigrationType::Evacuation,
            &read.server,
            "box2",
            &to.host_id.0,
            crate::compute::migrations::ACCEPTED,
            None,
        )
        .unwrap();
        servers
            .move_owner(&OwnerMove {
                entry: read,
                from: "box2",
                to: &to.host_id.0,
                view,
                claims: change,
                migration: Some(&record),
            })
            .unwrap()
    };
    use crate::compute::migrations::MigrationStore;
    let records = || own[2].migrations().migrations().unwrap();
    assert!(!attempt(&read, &view, &change), "box2 is alive");
    own[0]
        .call(|kv| async move {
            kv.txn(
                etcd_client::Txn::new()
                    .and_then([etcd_client::TxnOp::delete(keys::alive("box2"), None)]),
            )
            .await
            .map(|_| ())
        })
        .unwrap();
    // Planned on the site as it is now: box2 is down, so never the destination, and the
    // admin's host named at create (box2) is not kept.
    let view = own[0].site_claims().read().unwrap();
    let (change, to) = plan(&view);
    assert_ne!(to.host_id, HostId("box2".into()));
    // A record changed since it was read loses.
    let stale = entry();
    servers
        .update_server(
            "s1",
            crate::compute::servers::store::TaskChange::Keep,
            &mut |s| {
                s.name = "renamed".into();
                true
            },
        )
        .unwrap();
    assert!(!attempt(&stale, &view, &change), "the record changed");
    assert!(
        records().is_empty(),
        "a move that did not commit left no record"
    );
    let read = entry();
    assert!(attempt(&read, &view, &change));
    let evacuations = records();
    assert_eq!(
        evacuations.len(),
        1,
        "the move's record, in its transaction"
    );
    assert_eq!(
        (
            evacuations[0].source_compute.as_str(),
            evacuations[0].dest_compute.as_deref(),
            evacuations[0].status.as_str()
        ),
        ("box2", Some(to.host_id.0.as_str()), "accepted")
    );
    let moved = entry();
    assert_eq!(moved.server.host.as_deref(), Some(to.host_id.0.as_str()));
    assert_eq!(moved.epoch, read.epoch + 1);
    assert_eq!(moved.server.task_state, Some(TaskState::Rebuilding));
    assert_eq!(moved.server.monitor, None);
    let task = servers.server_task("s1").unwrap().unwrap();
    assert_eq!(
        (task.kind.as_str(), task.step.as_str()),
        ("evacuate", "scheduled")
    );
    let after = own[0].site_claims().read().unwrap();
    assert_eq!(
        after.cluster.holder(&ConsumerId::from("s1")),
        Some(&to.host_id)
    );
    let used = |p: &crate::compute::servers::placement::Placement| p.host_usage().used;
    assert_eq!(used(&site[1]), [0; 3], "box2's usage gave the server up");
    let dest = ["box1", "box2", "box3"]
        .iter()
        .position(|b| *b == to.host_id.0)
        .unwrap();
    assert_eq!(used(&site[dest]), [1, 512, 1]);
    // The same move again, on what was read before it: the record and the usage moved on.
    assert!(!attempt(&read, &view, &change));
    assert_eq!(records().len(), 1);
}

#[test]
fn migration_records_in_etcd_keep_nova_s_ids_and_end_once() {
    let etcd = EtcdMember::start();
    crate::compute::migrations::conformance(&etcd.doors().unwrap().migrations());
}

#[test]
fn with_the_failure_reserve_a_site_takes_creates_only_while_any_box_s_servers_fit_on_the_others() {
    use crate::compute::servers::placement::{PlacementError, Wanted};
    let etcd = EtcdMember::start();
    // Three boxes of 4 vCPU and 2048 MiB: room for twelve servers of 1 vCPU and 512 MiB.
    let (site, _doors) = site_keeping_reserve(&etcd, &["box1", "box2", "box3"], None, true);
    let batch: Vec<String> = (1..=9).map(|i| format!("s{i}")).collect();
    let refused = site[0]
        .claim_many(&batch, 9, &small_flavor(), false, &Wanted::default())
        .unwrap_err();
    let PlacementError::NoValidHost(no_host) = &refused else {
        panic!("{refused}");
    };
    assert!(
        no_host
            .to_string()
            .starts_with("No valid host was found for server 9 of 9."),
        "{refused}"
    );
    assert!(
        no_host
            .rejections
            .iter()
            .all(|r| r.stage == "ha_reserve"
                && r.reason.contains("the failure reserve would not hold")),
        "{refused}"
    );
    assert!(site[1].claims().unwrap().is_empty(), "nothing held");
    // As many as keep the reserve: 3 + 3 + 2, any box's servers fit in the others' room.
    let placed = site[1]
        .claim_many(&batch, 1, &small_flavor(), false, &Wanted::default())
        .unwrap();
    assert_eq!(placed.len(), 8, "{placed:?}");
    // Asked through any box, a ninth is refused for the reserve, not for room.
    let ninth = site[2]
        .claim("s9", &small_flavor(), false, &Wanted::default())
        .unwrap_err()
        .to_string();
    assert!(ninth.contains("(ha_reserve)"), "{ninth}");
    // The same site without the reserve has the room for all nine at once.
    let (plain, _) = site_with_doors(&etcd, &["box1", "box2", "box3"], None);
    assert_eq!(
        plain[0]
            .claim_many(&batch, 9, &small_flavor(), false, &Wanted::default())
            .unwrap()
            .len(),
        9
    );
}
