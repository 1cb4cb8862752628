//! Scheduling across boxes: availability zones, the same_host/different_host hints, the
//! node score weigher and the spread modes that choose among equal hosts.

use super::tests::{host, no_valid_host, place, scheduler, small};
use super::*;
use crate::class::Resources;

/// Only the node score counts, or with 0, nothing: every host weighs the same.
fn weighed_by_node_score(multiplier: f64, spread: Option<TieBreak>) -> Scheduler {
    Scheduler::from_config(&SchedulerConfig {
        ram_weight_multiplier: 0.0,
        cpu_weight_multiplier: 0.0,
        disk_weight_multiplier: 0.0,
        node_score_weight_multiplier: multiplier,
        spread,
        ..SchedulerConfig::default()
    })
    .unwrap()
}

#[test]
fn a_zone_with_no_room_gives_no_valid_host_naming_the_zone() {
    let cluster = Cluster::from_hosts([
        host("a", 8, 16384).in_zone("edge-1"),
        host("b", 8, 2048).in_zone("edge-2"),
    ])
    .unwrap();
    let s = scheduler();
    assert_eq!(place(&s, &mut cluster.clone(), "x", &small(4096)), "a");
    assert_eq!(
        place(
            &s,
            &mut cluster.clone(),
            "x",
            &small(1024).in_zone("edge-2")
        ),
        "b"
    );
    let mut c = cluster.clone();
    let err = no_valid_host(
        s.schedule(&mut c, &"x".into(), &small(4096).in_zone("edge-2"))
            .unwrap_err(),
    );
    assert_eq!(c, cluster);
    let a = err.rejection(&"a".into()).unwrap();
    assert_eq!(
        (a.stage.as_str(), a.reason.as_str()),
        (
            "AvailabilityZoneFilter",
            "in availability zone edge-1, not the requested edge-2"
        )
    );
    assert_eq!(err.rejection(&"b".into()).unwrap().stage, "ResourceFilter");
    let summary = err.to_string();
    assert!(
        summary.starts_with(
            "No valid host was found. There are not enough hosts available in \
             availability zone edge-2."
        ),
        "{summary}"
    );
    // A zone no host is in: every host says which zone it is in instead.
    let err = no_valid_host(
        s.schedule(&mut c, &"x".into(), &small(1).in_zone("edge-9"))
            .unwrap_err(),
    );
    assert!(err
        .rejections
        .iter()
        .all(|r| r.stage == "AvailabilityZoneFilter" && r.reason.ends_with("edge-9")));
}

#[test]
fn a_zone_is_honoured_whatever_the_filter_list() {
    let cluster =
        Cluster::from_hosts([host("a", 8, 8192), host("b", 8, 8192).in_zone("edge")]).unwrap();
    let request = small(1).in_zone("edge");
    let bare = Scheduler::new(Vec::new(), Vec::new());
    assert_eq!(place(&bare, &mut cluster.clone(), "x", &request), "b");
    let no_filters = Scheduler::from_config(&SchedulerConfig {
        enabled_filters: Vec::new(),
        ..SchedulerConfig::default()
    })
    .unwrap();
    assert_eq!(place(&no_filters, &mut cluster.clone(), "x", &request), "b");
    // Nova configurations list it; accepted, and not run twice.
    let nova = Scheduler::from_config(&SchedulerConfig {
        enabled_filters: vec!["AvailabilityZoneFilter".into()],
        ..SchedulerConfig::default()
    })
    .unwrap();
    assert_eq!(nova.filter_names(), ["ResourceFilter", "TraitsFilter"]);
    assert_eq!(place(&nova, &mut cluster.clone(), "x", &request), "b");
}

#[test]
fn different_host_with_every_host_excluded() {
    let cluster = Cluster::from_hosts([host("a", 8, 8192), host("b", 8, 4096)]).unwrap();
    let s = scheduler();
    let mut request = small(1024);
    request.different_host = ["a".into()].into();
    assert_eq!(place(&s, &mut cluster.clone(), "x", &request), "b");
    request.different_host.insert("b".into());
    let err = no_valid_host(
        s.schedule(&mut cluster.clone(), &"x".into(), &request)
            .unwrap_err(),
    );
    assert_eq!(err.rejections.len(), 2);
    assert!(err
        .rejections
        .iter()
        .all(|r| r.stage == "DifferentHostFilter"));
}

#[test]
fn same_host_to_a_host_without_room() {
    let mut cluster = Cluster::from_hosts([host("a", 8, 4096), host("b", 8, 16384)]).unwrap();
    let s = scheduler();
    cluster
        .claim(
            &"a".into(),
            &"first".into(),
            &Resources::compute(1, 3072, 1),
        )
        .unwrap();
    let mut request = small(512);
    request.same_host = ["a".into()].into();
    // Beside the named server even though b is far emptier.
    assert_eq!(place(&s, &mut cluster.clone(), "x", &request), "a");
    let mut big = small(2048);
    big.same_host = ["a".into()].into();
    let err = no_valid_host(s.schedule(&mut cluster, &"x".into(), &big).unwrap_err());
    assert_eq!(err.rejection(&"a".into()).unwrap().stage, "ResourceFilter");
    let b = err.rejection(&"b".into()).unwrap();
    assert_eq!(b.stage, "SameHostFilter");
    assert!(b.reason.contains("run on a"), "{}", b.reason);
}

#[test]
fn hint_filters_are_on_by_default_and_can_be_left_out() {
    let names = scheduler().filter_names();
    assert!(names.contains(&"SameHostFilter") && names.contains(&"DifferentHostFilter"));
    let nova = Scheduler::from_config(&SchedulerConfig {
        enabled_filters: vec!["ComputeFilter".into()],
        ..SchedulerConfig::default()
    })
    .unwrap();
    let mut request = small(1);
    request.different_host = ["a".into()].into();
    let mut cluster = Cluster::from_hosts([host("a", 8, 8192)]).unwrap();
    assert_eq!(place(&nova, &mut cluster, "x", &request), "a");
}

#[test]
fn node_score_picks_the_emptiest_host() {
    // big is half full and still has four times small's free memory; small is empty.
    let mut cluster =
        Cluster::from_hosts([host("big", 16, 32768), host("small", 4, 4096)]).unwrap();
    cluster
        .claim(
            &"big".into(),
            &"old".into(),
            &Resources::compute(8, 16384, 50),
        )
        .unwrap();
    // Off by default: the free-amount weighers prefer big.
    assert_eq!(
        place(&scheduler(), &mut cluster.clone(), "x", &small(1)),
        "big"
    );
    assert!(!scheduler().weigher_names().contains(&"NodeScoreWeigher"));
    let with_score = Scheduler::from_config(&SchedulerConfig {
        node_score_weight_multiplier: 10.0,
        ..SchedulerConfig::default()
    })
    .unwrap();
    let ranked = with_score.rank(&cluster, &"x".into(), &small(1)).unwrap();
    assert_eq!(ranked[0].host_id, HostId::from("small"));
    let score = |id: &str| {
        let weighed = ranked.iter().find(|w| w.host_id.0 == id).unwrap();
        let part = weighed
            .parts
            .iter()
            .find(|p| p.weigher == "NodeScoreWeigher");
        part.map(|p| (p.raw, p.normalized)).unwrap()
    };
    assert_eq!(score("small"), (1.0, 1.0));
    assert_eq!(score("big"), (0.5, 0.5));
    // Alone, negative, it packs: the fullest box first.
    let fullest = weighed_by_node_score(-1.0, None);
    assert_eq!(place(&fullest, &mut cluster, "y", &small(1)), "big");
}

/// Three hosts of the same size that every weigher finds equal, a little used (a), much
/// used (b) and empty (c), last chosen in the order b, c, a.
fn three_equal_hosts() -> Cluster {
    let mut cluster =
        Cluster::from_hosts([host("a", 8, 8192), host("b", 8, 8192), host("c", 8, 8192)]).unwrap();
    let a = Resources::compute(1, 2048, 1);
    let b = Resources::compute(4, 6144, 10);
    cluster.claim(&"a".into(), &"old-a".into(), &a).unwrap();
    cluster.claim(&"b".into(), &"old-b".into(), &b).unwrap();
    for (id, ordinal) in [("a", 3), ("b", 1), ("c", 2)] {
        cluster.host_mut(&id.into()).unwrap().last_claimed = ordinal;
    }
    cluster
}

#[test]
fn without_a_spread_mode_ties_still_go_to_the_lowest_id() {
    let cluster = three_equal_hosts();
    let s = weighed_by_node_score(0.0, None);
    let ranked = s.rank(&cluster, &"x".into(), &small(1)).unwrap();
    assert!(ranked.iter().all(|w| w.weight == 0.0));
    let ids: Vec<&str> = ranked.iter().map(|w| w.host_id.0.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn pack_takes_the_most_used_and_spread_the_least_used() {
    let cluster = three_equal_hosts();
    let pack = weighed_by_node_score(0.0, Some(TieBreak::Pack));
    assert_eq!(place(&pack, &mut cluster.clone(), "x", &small(1)), "b");
    let spread = weighed_by_node_score(0.0, Some(TieBreak::Spread));
    assert_eq!(place(&spread, &mut cluster.clone(), "x", &small(1)), "c");
    // Packing fills b until it no longer fits, then the next most used.
    let mut c = cluster.clone();
    let order: Vec<String> = (0..3)
        .map(|i| place(&pack, &mut c, &format!("s{i}"), &small(1024)))
        .collect();
    assert_eq!(order, ["b", "b", "a"]);
}

#[test]
fn round_robin_takes_the_least_recently_chosen_and_moves_on() {
    let mut cluster = three_equal_hosts();
    let s = weighed_by_node_score(0.0, Some(TieBreak::RoundRobin));
    let order: Vec<String> = (0..4)
        .map(|i| place(&s, &mut cluster, &format!("s{i}"), &small(1)))
        .collect();
    assert_eq!(order, ["b", "c", "a", "b"]);
    // A batch round-robins too; one that fails leaves the ordinals as it found them.
    let before = cluster.clone();
    let ids: Vec<ConsumerId> = ["m1", "m2", "m3"].map(ConsumerId::from).to_vec();
    let hosts: Vec<String> = s
        .schedule_many(&mut cluster.clone(), &ids, &small(1))
        .unwrap()
        .into_iter()
        .map(|sel| sel.host_id.0)
        .collect();
    assert_eq!(hosts, ["c", "a", "b"]);
    // Only c is allowed and it holds two of the three: the batch fails on the third.
    let mut away = small(3072);
    away.different_host = ["a".into(), "b".into()].into();
    let err = no_valid_host(s.schedule_many(&mut cluster, &ids, &away).unwrap_err());
    assert_eq!(err.batch, Some(BatchPosition { server: 3, of: 3 }));
    assert_eq!(cluster, before);
}

#[test]
fn random_draws_any_of_the_equal_best_and_repeats_for_the_same_draw() {
    let cluster = three_equal_hosts();
    let s = weighed_by_node_score(0.0, Some(TieBreak::Random));
    let pick = |seed: u64| {
        let mut request = small(1);
        request.tie_break_seed = seed;
        place(&s, &mut cluster.clone(), "x", &request)
    };
    let picked: std::collections::BTreeSet<String> = (0..32).map(pick).collect();
    assert_eq!(picked.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(pick(7), pick(7));
    // Only equals are drawn from: with the node score on, c (empty) always wins.
    let scored = weighed_by_node_score(1.0, Some(TieBreak::Random));
    for seed in 0..16 {
        let mut request = small(1);
        request.tie_break_seed = seed;
        assert_eq!(place(&scored, &mut cluster.clone(), "x", &request), "c");
    }
}
