//! Server groups, multi-create, requested destinations and resizes through the scheduler.

use super::tests::{host, no_valid_host, place, scheduler, small};
use super::*;
use crate::class::{ResourceClass, Resources};
use crate::request::{GroupPolicy, ServerGroup};

fn group(policy: GroupPolicy, members: &[(&str, &str)]) -> ServerGroup {
    ServerGroup {
        id: "g1".into(),
        policy,
        max_server_per_host: None,
        members: members
            .iter()
            .map(|(c, h)| GroupMember {
                consumer_id: (*c).into(),
                host_id: (*h).into(),
            })
            .collect(),
    }
}

#[test]
fn hard_affinity_and_anti_affinity_across_a_batch() {
    let cluster =
        Cluster::from_hosts([host("a", 8, 8192), host("b", 8, 8192), host("c", 8, 8192)]).unwrap();
    let s = scheduler();
    let ids: Vec<ConsumerId> = ["s1", "s2", "s3"].map(ConsumerId::from).to_vec();

    let mut c = cluster.clone();
    let together = small(1024).in_group(group(GroupPolicy::Affinity, &[]));
    let hosts: Vec<String> = s
        .schedule_many(&mut c, &ids, &together)
        .unwrap()
        .into_iter()
        .map(|sel| sel.host_id.0)
        .collect();
    assert_eq!(hosts, ["a", "a", "a"]);

    let mut c = cluster.clone();
    let apart = small(1024).in_group(group(GroupPolicy::AntiAffinity, &[]));
    let mut hosts: Vec<String> = s
        .schedule_many(&mut c, &ids, &apart)
        .unwrap()
        .into_iter()
        .map(|sel| sel.host_id.0)
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["a", "b", "c"]);

    // A fourth member has nowhere to go; the whole batch is undone.
    let mut c = cluster.clone();
    let four: Vec<ConsumerId> = ["s1", "s2", "s3", "s4"].map(ConsumerId::from).to_vec();
    let err = no_valid_host(s.schedule_many(&mut c, &four, &apart).unwrap_err());
    assert_eq!(err.batch, Some(BatchPosition { server: 4, of: 4 }));
    assert!(err
        .rejections
        .iter()
        .all(|r| r.stage == "ServerGroupAntiAffinityFilter"));
    assert!(err
        .to_string()
        .starts_with("No valid host was found for server 4 of 4."));
    assert_eq!(c, cluster);
}

#[test]
fn affinity_follows_existing_members_even_when_another_host_is_emptier() {
    let mut cluster = Cluster::from_hosts([host("a", 8, 4096), host("b", 8, 16384)]).unwrap();
    let request = small(1024).in_group(group(GroupPolicy::Affinity, &[("s1", "a")]));
    assert_eq!(place(&scheduler(), &mut cluster, "s2", &request), "a");
    // When the group's host is full there is no valid host, with the reason.
    let big = small(8192).in_group(group(GroupPolicy::Affinity, &[("s1", "a")]));
    let err = no_valid_host(
        scheduler()
            .schedule(&mut cluster, &"s3".into(), &big)
            .unwrap_err(),
    );
    assert_eq!(err.rejection(&"a".into()).unwrap().stage, "ResourceFilter");
    assert_eq!(
        err.rejection(&"b".into()).unwrap().stage,
        "ServerGroupAffinityFilter"
    );
}

#[test]
fn soft_policies_prefer_but_never_refuse() {
    let cluster = Cluster::from_hosts([host("a", 8, 8192), host("b", 8, 8192)]).unwrap();
    // Only the group weighers count.
    let config = SchedulerConfig {
        ram_weight_multiplier: 0.0,
        cpu_weight_multiplier: 0.0,
        disk_weight_multiplier: 0.0,
        ..SchedulerConfig::default()
    };
    let s = Scheduler::from_config(&config).unwrap();
    let soft = small(1024).in_group(group(GroupPolicy::SoftAffinity, &[("s1", "b")]));
    assert_eq!(place(&s, &mut cluster.clone(), "s2", &soft), "b");
    let soft_anti = small(1024).in_group(group(GroupPolicy::SoftAntiAffinity, &[("s1", "a")]));
    assert_eq!(place(&s, &mut cluster.clone(), "s2", &soft_anti), "b");
    // Soft anti-affinity with every host taken still places, on the least loaded.
    let crowded = small(1024).in_group(group(
        GroupPolicy::SoftAntiAffinity,
        &[("s1", "a"), ("s2", "a"), ("s3", "b")],
    ));
    assert_eq!(place(&s, &mut cluster.clone(), "s4", &crowded), "b");
    // Soft affinity's host full: placed elsewhere rather than refused.
    let full = small(8192).in_group(group(GroupPolicy::SoftAffinity, &[("s1", "b")]));
    let mut c = cluster.clone();
    c.claim(&"b".into(), &"s1".into(), &Resources::compute(1, 1024, 1))
        .unwrap();
    assert_eq!(place(&s, &mut c, "s2", &full), "a");
}

#[test]
fn destination_and_ignore_hosts_narrow_the_choice() {
    let cluster = Cluster::from_hosts([host("a", 8, 8192), host("b", 8, 4096)]).unwrap();
    let mut to_b = small(1);
    to_b.destination = Some("b".into());
    assert_eq!(place(&scheduler(), &mut cluster.clone(), "x", &to_b), "b");
    let mut not_a = small(1);
    not_a.ignore_hosts.insert("a".into());
    assert_eq!(place(&scheduler(), &mut cluster.clone(), "x", &not_a), "b");
    not_a.ignore_hosts.insert("b".into());
    let err = no_valid_host(
        scheduler()
            .schedule(&mut cluster.clone(), &"x".into(), &not_a)
            .unwrap_err(),
    );
    assert!(err.rejections.iter().all(|r| r.stage == "ignore_hosts"));
}

#[test]
fn resize_on_one_box_and_away_from_the_source() {
    let mut cluster = Cluster::from_hosts([host("a", 8, 8192)]).unwrap();
    let s = scheduler();
    place(&s, &mut cluster, "srv", &small(1024));
    let bigger = small(2048);
    let resize = s
        .schedule_resize(&mut cluster, &"srv".into(), &"mig".into(), &bigger)
        .unwrap();
    assert_eq!(resize.dest.host_id, HostId::from("a"));
    assert_eq!(
        cluster
            .host(&"a".into())
            .unwrap()
            .usage()
            .get(&ResourceClass::MemoryMb),
        3072
    );
    cluster.confirm_resize(&"mig".into());
    assert_eq!(
        cluster
            .host(&"a".into())
            .unwrap()
            .usage()
            .get(&ResourceClass::MemoryMb),
        2048
    );

    // With Nova's default (no resize to the same host) a single box has nowhere to go.
    let nova = Scheduler::from_config(&SchedulerConfig {
        allow_resize_to_same_host: false,
        ..SchedulerConfig::default()
    })
    .unwrap();
    let before = cluster.clone();
    let err = nova
        .schedule_resize(&mut cluster, &"srv".into(), &"mig2".into(), &small(512))
        .unwrap_err();
    assert_eq!(no_valid_host(err).rejections[0].stage, "ignore_hosts");
    assert_eq!(cluster, before);
    cluster.add_host(host("b", 8, 8192)).unwrap();
    let moved = nova
        .schedule_resize(&mut cluster, &"srv".into(), &"mig2".into(), &small(512))
        .unwrap();
    assert_eq!(moved.dest.host_id, HostId::from("b"));
    assert!(matches!(
        nova.schedule_resize(&mut cluster, &"ghost".into(), &"m".into(), &small(1)),
        Err(ScheduleError::Claim(ClaimError::UnknownConsumer { .. }))
    ));
}
