//! The contract every [`ServerStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests. SQLite runs it
//! in `storage::servers`; a cluster's store runs the same.

use super::{
    BootConfig, FlavorSnapshot, PowerState, Server, ServerStore, TaskChange, TaskState, VmState,
};
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

pub(crate) fn server(id: &str, project: &str, created_at: i64) -> Server {
    Server {
        seq: 0,
        id: id.into(),
        name: format!("vm-{id}"),
        description: None,
        project_id: project.into(),
        user_id: "u".into(),
        flavor: FlavorSnapshot {
            id: "1".into(),
            name: "m1.tiny".into(),
            vcpus: 1,
            ram: 256,
            disk: 1,
            ephemeral: 0,
            swap: 0,
            extra_specs: BTreeMap::new(),
        },
        image_ref: "img".into(),
        boot: BootConfig {
            kernel: "/k".into(),
            initrd: None,
            boot_args: "console=ttyS0".into(),
            root_source: Some("/img".into()),
            kernel_id: None,
            ramdisk_id: None,
            images: vec!["img".into()],
            root_volume: None,
            block_devices: Vec::new(),
            shutdown_timeout_secs: None,
        },
        vm_state: VmState::Building,
        task_state: Some(TaskState::Scheduling),
        power_state: PowerState::NoState,
        host: None,
        fault: None,
        metadata: BTreeMap::from([("k".into(), "v".into())]),
        user_data: None,
        key_name: Some("laptop".into()),
        key_data: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey user@laptop".into()),
        admin_pass: Some("Tr0ub4dor".into()),
        config_drive: String::new(),
        disk_config: "MANUAL".into(),
        networks: serde_json::json!({"requested": [], "security_groups": null}),
        monitor: None,
        resize: None,
        placement: Default::default(),
        created_at: Timestamp(created_at),
        updated_at: None,
        launched_at: None,
    }
}

const STEP: TaskChange<'static> = TaskChange::Step {
    kind: "create",
    step: "clone_disk",
};

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: ServerStore>(fresh: impl Fn() -> S) {
    servers_read_back_whole_and_list_newest_first(&fresh());
    updates_write_with_their_step_or_not_at_all(&fresh());
    racing_updates_are_never_lost(&fresh());
    deleting_a_server_takes_its_progress_along(&fresh());
    racing_inserts_stay_within_the_projects_quota(&fresh());
}

/// 8 inserts of one project at once, with room for 3 instances: exactly 3 land, the others
/// are refused with Nova's message, and another project is not limited by them.
fn racing_inserts_stay_within_the_projects_quota(store: &dyn ServerStore) {
    use crate::quota::{QuotaError, ServerQuota};
    let quota = ServerQuota {
        instances: 3,
        ..ServerQuota::UNLIMITED
    };
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    store.insert_server(
                        &server(&format!("s{i}"), "p1", i),
                        "create",
                        "claim",
                        &quota,
                    )
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        3,
        "{results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                r,
                QuotaError::Exceeded {
                    resource: "instances",
                    used: 3,
                    limit: 3,
                    ..
                }
            ),
            "{r:?}"
        );
    }
    assert_eq!(store.servers(Some("p1")).unwrap().len(), 3);
    // Cores: 2 one-vCPU servers held, a third asks for 2 more of 3.
    let cores = ServerQuota {
        cores: 3,
        ..ServerQuota::UNLIMITED
    };
    for id in ["a", "b"] {
        store
            .insert_server(&server(id, "p2", 1), "create", "claim", &cores)
            .unwrap();
    }
    let mut big = server("c", "p2", 1);
    big.flavor.vcpus = 2;
    match store.insert_server(&big, "create", "claim", &cores) {
        Err(
            e @ QuotaError::Exceeded {
                resource: "cores", ..
            },
        ) => assert_eq!(
            e.to_string(),
            "Quota exceeded for cores: Requested 2, but already used 2 of 3 cores"
        ),
        other => panic!("{other:?}"),
    }
}

fn servers_read_back_whole_and_list_newest_first(store: &dyn ServerStore) {
    let a = server("a", "p1", 1_000);
    let stored = store
        .insert_server(&a, "create", "claim", &crate::quota::ServerQuota::UNLIMITED)
        .unwrap();
    assert_eq!(
        Server {
            seq: a.seq,
            ..stored.clone()
        },
        a
    );
    assert_eq!(store.server("a").unwrap(), Some(stored));
    let task = store.server_task("a").unwrap().unwrap();
    assert_eq!(
        (task.kind.as_str(), task.step.as_str()),
        ("create", "claim")
    );
    store
        .insert_server(
            &server("b", "p2", 2_000),
            "create",
            "claim",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    // Same created_at as b: the later insert comes first.
    store
        .insert_server(
            &server("c", "p1", 2_000),
            "create",
            "claim",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    let ids = |project| -> Vec<String> {
        store
            .servers(project)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(ids(None), ["c", "b", "a"]);
    assert_eq!(ids(Some("p1")), ["c", "a"]);
    assert!(ids(Some("nobody")).is_empty());
    assert_eq!(store.server("zzz").unwrap(), None);
}

fn updates_write_with_their_step_or_not_at_all(store: &dyn ServerStore) {
    store
        .insert_server(
            &server("a", "p", 1),
            "create",
            "claim",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    let after = store
        .update_server("a", STEP, &mut |s| {
            s.vm_state = VmState::Active;
            s.task_state = None;
            s.host = Some("box".into());
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(after.vm_state, VmState::Active);
    assert_eq!(after.host.as_deref(), Some("box"));
    assert!(after.updated_at.is_some());
    assert_eq!(store.server("a").unwrap(), Some(after.clone()));
    assert_eq!(store.server_task("a").unwrap().unwrap().step, "clone_disk");
    // A change that declines writes nothing, its step neither.
    let declined = store
        .update_server("a", TaskChange::Clear, &mut |s| {
            s.name = "lost".into();
            false
        })
        .unwrap();
    assert_eq!(declined, Some(after.clone()));
    assert_eq!(store.server("a").unwrap(), Some(after));
    assert!(store.server_task("a").unwrap().is_some());
    store
        .update_server("a", TaskChange::Clear, &mut |_| true)
        .unwrap();
    assert_eq!(store.server_task("a").unwrap(), None);
    // No server: no change, and no progress row for it.
    assert_eq!(
        store.update_server("zzz", STEP, &mut |_| true).unwrap(),
        None
    );
    assert_eq!(store.server_task("zzz").unwrap(), None);
    store.set_server_task("a", STEP).unwrap();
    assert_eq!(store.server_task("a").unwrap().unwrap().kind, "create");
    store.set_server_task("a", TaskChange::Clear).unwrap();
    assert_eq!(store.server_task("a").unwrap(), None);
}

fn racing_updates_are_never_lost(store: &dyn ServerStore) {
    store
        .insert_server(
            &server("a", "p", 1),
            "create",
            "claim",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in 0..5 {
                    store
                        .update_server("a", TaskChange::Keep, &mut |s| {
                            s.metadata.insert(format!("t{t}-{i}"), String::new());
                            true
                        })
                        .unwrap();
                }
            });
        }
    });
    // The 20 keys and the one from the insert: no update overwrote another.
    assert_eq!(store.server("a").unwrap().unwrap().metadata.len(), 21);
}

fn deleting_a_server_takes_its_progress_along(store: &dyn ServerStore) {
    store
        .insert_server(
            &server("a", "p", 1),
            "delete",
            "stop_monitor",
            &crate::quota::ServerQuota::UNLIMITED,
        )
        .unwrap();
    assert!(store.delete_server("a").unwrap());
    assert_eq!(store.server("a").unwrap(), None);
    assert_eq!(store.server_task("a").unwrap(), None);
    assert!(!store.delete_server("a").unwrap());
}
