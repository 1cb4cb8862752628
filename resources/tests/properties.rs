//! Property-style tests: long random sequences of operations on random clusters, checked
//! against an independent re-statement of the rules after every step. The generator is
//! seeded, so a failure names the seed and step that reproduce it.

use std::collections::{BTreeMap, BTreeSet};

use outpost_resources::{
    Cluster, ConsumerId, Host, HostId, HostState, Inventory, ResourceClass, ResourceRequest,
    Resources, ScheduleError, Scheduler, SchedulerConfig,
};

/// SplitMix64: tiny, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const CLASSES: [ResourceClass; 3] = [
    ResourceClass::Vcpu,
    ResourceClass::MemoryMb,
    ResourceClass::DiskGb,
];

fn random_inventory(rng: &mut Rng, class: &ResourceClass) -> Inventory {
    let (total, step) = match class {
        ResourceClass::Vcpu => (1 + rng.below(16), 1),
        ResourceClass::MemoryMb => (256 * (1 + rng.below(64)), *rng.pick(&[1, 256])),
        _ => (1 + rng.below(200), *rng.pick(&[1, 5])),
    };
    let reserved = rng.below(total / 4 + 1);
    let ratio = *rng.pick(&[1.0, 1.5, 4.0, 0.9]);
    let min_unit = *rng.pick(&[1, step]);
    Inventory::new(total)
        .reserved(reserved)
        .allocation_ratio(ratio)
        .units(min_unit, total.max(min_unit), step)
}

fn random_host(rng: &mut Rng, index: usize) -> Host {
    let mut host = Host::new(format!("host-{index:02}"), format!("box{index}"));
    for class in &CLASSES {
        // Now and then a host lacks a class entirely.
        if rng.below(10) > 0 {
            host.set_inventory(class.clone(), random_inventory(rng, class))
                .unwrap();
        }
    }
    host.enabled = rng.below(8) > 0;
    host.state = if rng.below(8) > 0 {
        HostState::Up
    } else {
        HostState::Down
    };
    host
}

fn random_amounts(rng: &mut Rng) -> Resources {
    Resources::compute(
        rng.below(6),
        *rng.pick(&[0, 100, 256, 512, 1024, 2048, 4096]),
        rng.below(60),
    )
}

/// Placement's rule, restated independently of the crate's code.
fn oracle_fits(host: &Host, amounts: &Resources) -> bool {
    amounts.iter().all(|(class, amount)| {
        let Some(inv) = host.inventory(class) else {
            return false;
        };
        let capacity = ((inv.total - inv.reserved) as f64 * inv.allocation_ratio).floor() as u64;
        host.usage().get(class) + amount <= capacity
            && amount >= inv.min_unit
            && amount <= inv.max_unit
            && amount % inv.step_size == 0
    })
}

/// Usage equals the sum of claims, stays within capacity, and no consumer holds two claims.
fn check_invariants(cluster: &Cluster, context: &str) {
    let mut consumers = BTreeSet::new();
    for host in cluster.hosts() {
        let mut sum = Resources::new();
        for claim in host.claims() {
            assert!(
                consumers.insert(claim.consumer_id.clone()),
                "{context}: {} claimed twice",
                claim.consumer_id
            );
            for (class, amount) in claim.amounts.iter() {
                sum.set(class.clone(), sum.get(class) + amount);
            }
        }
        assert_eq!(host.usage(), &sum, "{context}: usage of {}", host.id());
        for class in &CLASSES {
            assert!(
                host.usage().get(class) <= host.capacity(class),
                "{context}: {} over capacity in {class}",
                host.id()
            );
        }
    }
}

#[test]
fn claims_releases_and_resizes_keep_the_books_straight() {
    // How often each operation succeeded and was refused, so the test can't pass vacuously.
    let mut outcomes: BTreeMap<(&str, bool), u32> = BTreeMap::new();
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let hosts = (0..1 + rng.below(5) as usize).map(|i| random_host(&mut rng, i));
        let mut cluster = Cluster::from_hosts(hosts).unwrap();
        let host_ids: Vec<HostId> = cluster.hosts().map(|h| h.id().clone()).collect();
        let servers: Vec<ConsumerId> = (0..12).map(|i| ConsumerId(format!("srv-{i}"))).collect();
        let migration = |srv: &ConsumerId| ConsumerId(format!("mig-{}", srv.0));
        for step in 0..400 {
            let context = format!("seed {seed} step {step}");
            let before = cluster.clone();
            let srv = rng.pick(&servers).clone();
            let host_id = rng.pick(&host_ids).clone();
            let op = rng.below(5);
            let changed = match op {
                0 | 1 => {
                    let amounts = random_amounts(&mut rng);
                    let expected = cluster.claim_of(&srv).is_none()
                        && oracle_fits(cluster.host(&host_id).unwrap(), &amounts);
                    let result = cluster.claim(&host_id, &srv, &amounts);
                    assert_eq!(result.is_ok(), expected, "{context}: claim {amounts:?}");
                    result.is_ok()
                }
                2 => {
                    let held = cluster.claim_of(&srv);
                    let released = cluster.release(&srv);
                    assert_eq!(released, held, "{context}: release returns what was held");
                    assert_eq!(cluster.release(&srv), None, "{context}: second release");
                    released.is_some()
                }
                3 => {
                    let amounts = random_amounts(&mut rng);
                    let mig = migration(&srv);
                    let old = cluster.claim_of(&srv);
                    let expected = old.is_some()
                        && cluster.claim_of(&mig).is_none()
                        && oracle_fits(cluster.host(&host_id).unwrap(), &amounts);
                    let result = cluster.begin_resize(&srv, &mig, &host_id, &amounts);
                    assert_eq!(result.is_ok(), expected, "{context}: resize");
                    if let Ok(resize) = &result {
                        let old = old.unwrap();
                        assert_eq!(resize.source.amounts, old.amounts, "{context}");
                        assert_eq!(cluster.claim_of(&mig).map(|c| c.host_id), Some(old.host_id));
                    }
                    result.is_ok()
                }
                _ => {
                    let mig = migration(&srv);
                    let old = cluster.claim_of(&mig);
                    if rng.below(2) == 0 {
                        cluster.confirm_resize(&mig).is_some()
                    } else {
                        let result = cluster.revert_resize(&srv, &mig);
                        assert_eq!(result.is_ok(), old.is_some(), "{context}: revert");
                        if let (Ok(restored), Some(old)) = (&result, old) {
                            assert_eq!(restored.amounts, old.amounts, "{context}");
                            assert_eq!(cluster.claim_of(&srv).as_ref(), Some(restored));
                        }
                        result.is_ok()
                    }
                }
            };
            let name = ["claim", "claim", "release", "resize", "confirm/revert"][op as usize];
            *outcomes.entry((name, changed)).or_default() += 1;
            if !changed {
                assert_eq!(
                    cluster, before,
                    "{context}: a refused operation changed nothing"
                );
            }
            check_invariants(&cluster, &context);
        }
        // Releasing everyone empties every host.
        for srv in &servers {
            cluster.release(srv);
            cluster.release(&migration(srv));
        }
        assert!(
            cluster.hosts().all(|h| h.usage().is_empty()),
            "seed {seed}: usage left after releasing everything"
        );
    }
    for name in ["claim", "release", "resize", "confirm/revert"] {
        for succeeded in [true, false] {
            let n = outcomes.get(&(name, succeeded)).copied().unwrap_or(0);
            assert!(
                n >= 50,
                "{name} succeeded={succeeded} only {n} times: {outcomes:?}"
            );
        }
    }
}

#[test]
fn scheduling_is_deterministic_and_agrees_with_the_rules() {
    // Only the RAM weigher counts, so the expected choice can be computed independently:
    // the fitting host with the most free RAM, lowest id on ties.
    let config = SchedulerConfig {
        cpu_weight_multiplier: 0.0,
        disk_weight_multiplier: 0.0,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::from_config(&config).unwrap();
    let (mut placed, mut refused) = (0, 0);
    for seed in 100..140u64 {
        let mut rng = Rng(seed);
        let hosts: Vec<Host> = (0..1 + rng.below(12) as usize)
            .map(|i| random_host(&mut rng, i))
            .collect();
        let mut cluster = Cluster::from_hosts(hosts.clone()).unwrap();
        // The same hosts added in the opposite order make the same cluster and choices.
        let mut mirror = Cluster::from_hosts(hosts.into_iter().rev()).unwrap();
        for step in 0..200 {
            let context = format!("seed {seed} step {step}");
            let consumer = ConsumerId(format!("srv-{step}"));
            let request = ResourceRequest::new(random_amounts(&mut rng));
            let eligible: Vec<&Host> = cluster
                .hosts()
                .filter(|h| h.enabled && h.state == HostState::Up)
                .filter(|h| oracle_fits(h, &request.resources))
                .collect();
            let best_free = eligible
                .iter()
                .map(|h| h.free(&ResourceClass::MemoryMb))
                .max();
            let expected = eligible
                .iter()
                .find(|h| Some(h.free(&ResourceClass::MemoryMb)) == best_free)
                .map(|h| h.id().clone());
            let result = scheduler.schedule(&mut cluster, &consumer, &request);
            let mirrored = scheduler.schedule(&mut mirror, &consumer, &request);
            match (&result, expected) {
                (Ok(selection), Some(expected)) => {
                    assert_eq!(selection.host_id, expected, "{context}");
                    assert_eq!(selection.claim.amounts, request.resources, "{context}");
                    placed += 1;
                }
                (Err(ScheduleError::NoValidHost(no_host)), None) => {
                    assert_eq!(no_host.rejections.len(), cluster.len(), "{context}");
                    for rejection in &no_host.rejections {
                        let host = cluster.host(&rejection.host_id).unwrap();
                        if rejection.stage == "ResourceFilter" {
                            // The reason names a class that really does not fit.
                            let named = request.resources.iter().any(|(class, amount)| {
                                rejection.reason.contains(&format!("{class}: needs"))
                                    && !oracle_fits(
                                        host,
                                        &Resources::new().with(class.clone(), amount),
                                    )
                            });
                            assert!(named, "{context}: {rejection}");
                        }
                    }
                    assert!(no_host.to_string().starts_with("No valid host was found."));
                    refused += 1;
                }
                (result, expected) => {
                    panic!("{context}: got {result:?}, expected a placement on {expected:?}")
                }
            }
            assert_eq!(
                result.as_ref().map(|s| &s.host_id).ok(),
                mirrored.as_ref().map(|s| &s.host_id).ok(),
                "{context}: insertion order changed the choice"
            );
            check_invariants(&cluster, &context);
        }
        assert_eq!(cluster, mirror, "seed {seed}");
    }
    // Clusters fill up until requests start failing; both outcomes are exercised.
    assert!(
        placed >= 500 && refused >= 500,
        "{placed} placed, {refused} refused"
    );
}

#[test]
fn persisted_claims_replay_into_the_same_cluster() {
    let mut rng = Rng(7);
    let hosts: Vec<Host> = (0..4).map(|i| random_host(&mut rng, i)).collect();
    let mut cluster = Cluster::from_hosts(hosts.clone()).unwrap();
    let scheduler = Scheduler::from_config(&SchedulerConfig::default()).unwrap();
    for i in 0..50 {
        let request = ResourceRequest::new(random_amounts(&mut rng));
        let _ = scheduler.schedule(&mut cluster, &ConsumerId(format!("srv-{i}")), &request);
    }
    // What the daemon would write to SQLite and read back on start.
    let saved: Vec<String> = cluster
        .claims()
        .map(|claim| serde_json::to_string(&claim).unwrap())
        .collect();
    let mut restarted = Cluster::from_hosts(hosts).unwrap();
    for row in &saved {
        restarted
            .restore(&serde_json::from_str(row).unwrap())
            .unwrap();
    }
    assert_eq!(restarted, cluster);
    let per_host: BTreeMap<HostId, usize> = cluster
        .hosts()
        .map(|h| (h.id().clone(), h.claims().count()))
        .collect();
    assert_eq!(per_host.values().sum::<usize>(), saved.len());
}
