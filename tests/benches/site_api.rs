//! The API of a site of three boxes on the rig (tests/src/rig.rs): prints min/median/max,
//! asserts nothing. `cargo bench -p outpost-tests --bench site_api` (root; it builds network
//! namespaces and boots one guest).
//!
//! - a server's show, asked of the box that runs it and of another box (both read etcd);
//! - its console output asked of the box that runs it and of another (forwarded to it);
//! - a flavor created through box 1 until box 3 lists it, through the API.
//!
//! Each request is one `curl` over the box's unix socket, whose own cost (a process start)
//! is in every figure; compare the figures with each other, not with a client's in-process
//! call.

use std::time::Instant;

use outpost_tests::eventually;
use outpost_tests::rig::Rig;
use serde_json::json;

const RUNS: usize = 30;

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    println!(
        "{what}: min {:.1} / median {:.1} / max {:.1} ms ({n} runs)",
        ms[0],
        ms[n / 2],
        ms[n - 1]
    );
}

fn timed(mut f: impl FnMut()) -> Vec<f64> {
    (0..RUNS)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    let rig = Rig::site(3);
    let (_, body) = rig.boxes[0].api(
        "POST",
        "/compute/v2.1/flavors",
        Some(&json!({"flavor": {"name": "bench", "ram": 128, "vcpus": 1, "disk": 1}})),
        "2.53",
    );
    let flavor = body["flavor"]["id"].as_str().expect("a flavor").to_owned();
    let (_, body) = rig.boxes[0].api(
        "POST",
        "/compute/v2.1/servers",
        Some(
            &json!({"server": {"name": "b", "flavorRef": flavor, "imageRef": "outpost-guest",
                                "networks": "none", "host": "box3"}}),
        ),
        "2.74",
    );
    let id = body["server"]["id"].as_str().expect("a server").to_owned();
    eventually(300, "the server ACTIVE", || {
        let (_, s) = rig.boxes[0].api("GET", &format!("/compute/v2.1/servers/{id}"), None, "2.53");
        (s["server"]["status"] == "ACTIVE").then_some(())
    });
    let show = format!("/compute/v2.1/servers/{id}");
    let action = format!("/compute/v2.1/servers/{id}/action");
    let console = json!({"os-getConsoleOutput": {"length": 10}});
    for (name, i) in [("its own box (box3)", 2), ("another box (box1)", 0)] {
        let b = &rig.boxes[i];
        report(
            &format!("server show through {name}"),
            timed(|| {
                b.api("GET", &show, None, "2.53");
            }),
        );
        report(
            &format!("console output through {name}"),
            timed(|| {
                b.api("POST", &action, Some(&console), "2.53");
            }),
        );
    }
    let mut seen = Vec::new();
    for n in 0..RUNS {
        let t0 = Instant::now();
        rig.boxes[0].api(
            "POST",
            "/compute/v2.1/flavors",
            Some(&json!({"flavor": {"name": format!("v{n}"), "ram": 64, "vcpus": 1, "disk": 1}})),
            "2.53",
        );
        eventually(10, "the flavor seen through box 3", || {
            let (_, list) = rig.boxes[2].api("GET", "/compute/v2.1/flavors", None, "2.53");
            list.to_string()
                .contains(&format!("\"v{n}\""))
                .then_some(())
        });
        seen.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    report(
        "flavor created through box 1 until box 3 lists it (API)",
        seen,
    );
    rig.boxes[0].api("DELETE", &show, None, "2.53");
}
