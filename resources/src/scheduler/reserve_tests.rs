//! The failure reserve: creates that keep it leave room for any one host's servers, and
//! the evacuation it is kept for then finds a host for every one of them.

use super::tests::{host, no_valid_host, scheduler};
use super::*;
use crate::class::{ResourceClass, Resources};

fn keeping_reserve(vcpus: u64, ram: u64) -> ResourceRequest {
    let mut request = ResourceRequest::new(Resources::compute(vcpus, ram, 1));
    request.keep_failure_reserve = true;
    request
}

/// Three hosts of 4 cores and 4 GiB each.
fn three_boxes() -> Cluster {
    Cluster::from_hosts([host("a", 4, 4096), host("b", 4, 4096), host("c", 4, 4096)]).unwrap()
}

/// Places `request` under fresh ids until one finds no host; how many were placed.
fn fill(s: &Scheduler, cluster: &mut Cluster, request: &ResourceRequest) -> (usize, NoValidHost) {
    for n in 0.. {
        match s.schedule(cluster, &format!("s{n}").as_str().into(), request) {
            Ok(_) => continue,
            Err(err) => return (n, no_valid_host(err)),
        }
    }
    unreachable!("the loop ends at the first refusal")
}

/// What an evacuation of `failed` does: each of its claims scheduled again, without the
/// reserve, on the others. Panics naming the server that finds no host.
fn evacuate(s: &Scheduler, cluster: &Cluster, failed: &str) -> Cluster {
    let mut after = cluster.clone();
    let failed = HostId::from(failed);
    let claims: Vec<Claim> = cluster.host(&failed).unwrap().claims().collect();
    for claim in claims {
        after.release(&claim.consumer_id);
        let mut request = ResourceRequest::new(claim.amounts.clone());
        request.ignore_hosts.insert(failed.clone());
        if let Err(e) = s.schedule(&mut after, &claim.consumer_id, &request) {
            panic!("{} of {failed} found no host: {e}", claim.consumer_id);
        }
    }
    after
}

#[test]
fn creates_keeping_the_reserve_stop_where_one_box_s_servers_still_fit_on_the_others() {
    let s = scheduler();
    let mut without = three_boxes();
    let (placed, _) = fill(
        &s,
        &mut without,
        &ResourceRequest::new(Resources::compute(1, 1024, 1)),
    );
    assert_eq!(placed, 12, "without the reserve every core is taken");

    let mut cluster = three_boxes();
    let (placed, refused) = fill(&s, &mut cluster, &keeping_reserve(1, 1024));
    // Spread 3, 3, 2: any box's three fit in the others' 1 + 2 free; a ninth would leave
    // some box with three and the others with one free each.
    assert_eq!(placed, 8);
    for id in ["a", "b", "c"] {
        let rejection = refused.rejection(&id.into()).unwrap();
        assert_eq!(rejection.stage, "ha_reserve", "{rejection}");
        assert!(
            rejection
                .reason
                .starts_with("the failure reserve would not hold: if ")
                && rejection.reason.contains("failed, 1 of its ")
                && rejection.reason.contains("server(s) would find no room")
                && rejection.reason.contains("1 VCPU, 1024 MB RAM, 1 GB disk"),
            "{rejection}"
        );
    }
    let summary = refused.to_string();
    assert!(summary.starts_with(NoValidHost::FAULT_PREFIX), "{summary}");
    assert!(summary.contains("(ha_reserve)"), "{summary}");
    // The refusal changed nothing: still eight claims.
    assert_eq!(cluster.claims().count(), 8);
    assert_eq!(s.failure_reserve(&cluster), Ok(()));
}

#[test]
fn after_creates_of_mixed_sizes_that_kept_it_any_one_box_can_be_evacuated() {
    let s = scheduler();
    let mut cluster = three_boxes();
    let sizes = [
        (1, 512),
        (2, 1024),
        (1, 2048),
        (1, 256),
        (2, 512),
        (1, 1536),
    ];
    let mut placed = 0;
    for (n, (vcpus, ram)) in sizes.iter().cycle().take(40).enumerate() {
        let id = ConsumerId(format!("s{n}"));
        if s.schedule(&mut cluster, &id, &keeping_reserve(*vcpus, *ram))
            .is_ok()
        {
            placed += 1;
        }
    }
    assert!(placed >= 4, "only {placed} placed");
    for failed in ["a", "b", "c"] {
        let after = evacuate(&s, &cluster, failed);
        assert_eq!(
            after.claims().count(),
            cluster.claims().count(),
            "every server of {failed} holds a claim elsewhere"
        );
        assert_eq!(after.host(&failed.into()).unwrap().claims().count(), 0);
    }
}

#[test]
fn a_disabled_box_takes_no_evacuee_so_it_gives_the_reserve_no_room() {
    let s = scheduler();
    let mut cluster = three_boxes();
    let c = cluster.host_mut(&"c".into()).unwrap();
    c.enabled = false;
    c.disabled_reason = Some("maintenance".into());
    // Two boxes left: each can hold only what the other has free, 2 servers each.
    let (placed, refused) = fill(&s, &mut cluster, &keeping_reserve(1, 1024));
    assert_eq!(placed, 4);
    assert_eq!(
        refused.rejection(&"c".into()).unwrap().stage,
        "ComputeFilter"
    );
    assert_eq!(refused.rejection(&"a".into()).unwrap().stage, "ha_reserve");
    assert_eq!(
        s.failure_reserve(&cluster),
        Ok(()),
        "what was placed still holds"
    );
}

#[test]
fn a_site_already_short_refuses_every_create_but_not_the_evacuation_it_holds_room_for() {
    let s = scheduler();
    let mut cluster = three_boxes();
    for n in 0..9 {
        let request = ResourceRequest::new(Resources::compute(1, 1024, 1));
        s.schedule(&mut cluster, &ConsumerId(format!("s{n}")), &request)
            .unwrap();
    }
    let shortfall = s.failure_reserve(&cluster).unwrap_err();
    assert_eq!(
        shortfall.failed,
        HostId::from("a"),
        "the first host in id order"
    );
    assert_eq!((shortfall.claims, shortfall.stranded.len()), (3, 1));
    assert_eq!(shortfall.needs.get(&ResourceClass::MemoryMb), 1024);
    let before = cluster.clone();
    let refused = no_valid_host(
        s.schedule(&mut cluster, &"late".into(), &keeping_reserve(1, 512))
            .unwrap_err(),
    );
    assert_eq!(cluster, before);
    assert!(refused.rejections.iter().all(|r| r.stage == "ha_reserve"));
    // A request that does not ask for the reserve (an evacuation's) still places.
    let request = ResourceRequest::new(Resources::compute(1, 512, 1));
    assert!(s.schedule(&mut cluster, &"late".into(), &request).is_ok());
}

#[test]
fn a_batch_keeping_the_reserve_is_all_or_nothing() {
    let s = scheduler();
    let mut cluster = three_boxes();
    let ids: Vec<ConsumerId> = (0..9).map(|n| ConsumerId(format!("s{n}"))).collect();
    let err = s
        .schedule_many(&mut cluster, &ids, &keeping_reserve(1, 1024))
        .unwrap_err();
    let refused = no_valid_host(err);
    assert_eq!(refused.batch, Some(BatchPosition { server: 9, of: 9 }));
    assert_eq!(cluster.claims().count(), 0, "the first eight were released");
    assert_eq!(
        s.schedule_many(&mut cluster, &ids[..8], &keeping_reserve(1, 1024))
            .unwrap()
            .len(),
        8
    );
}
