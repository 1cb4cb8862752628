//! Each server's monitor in its jail (docs/security.md, "The jail"), against the real
//! outpostd, real monitors and real guests. One guest does the I/O and carries every check
//! (a second, network-less one is the neighbour whose disk must stay out of reach):
//!
//! - the monitor runs as a uid of its own (not root, not the neighbour's), with no
//!   capability in any set, `NoNewPrivs: 1`, its seccomp filter, on every thread;
//! - its `/` holds only its API socket: the database, the state directory and the
//!   neighbour's disk cannot even be named from it, and every descriptor it holds is one of
//!   its own files (handed over by outpostd);
//! - its cgroup is its own, with `memory.max`, `pids.max` and the flavor's `cpu.max` and
//!   `cpu.weight` where the host's cgroup v2 offers those controllers, their cgroup v1
//!   equivalents in its own v1 directories where they are bound to v1 (a hybrid host);
//! - the guest boots from its disk, writes and reads it back, and its network carries the
//!   test's steps (the remote control in [`common::guestctl`]);
//! - kill -9 of outpostd: the new one adopts the jailed monitor, whose guest still answers;
//! - killing the server's cgroup ends that guest and nothing else (the neighbour, outpostd).
//!
//! Runs as root (it jails, and manages the host's networking for the guest's NIC).

mod common;

use common::guestctl::GuestControl;
use common::guests::*;
use common::Text;
use serde_json::json;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(180);

/// Removes the network's bridge and its dnsmasq if the test ends before it deletes the
/// network itself (a fresh outpostd on a fresh state directory would not know them).
/// Made before the daemon, so it is dropped after it: a live outpostd would make the bridge
/// again.
struct Bridge(Option<String>);

impl Drop for Bridge {
    fn drop(&mut self) {
        let Some(net) = &self.0 else { return };
        let name: String = format!("opb{}", net.replace('-', ""))
            .chars()
            .take(15)
            .collect();
        for pid in processes_naming(&format!("/run/outpost/net/{name}.conf")) {
            // SAFETY: kill() on the dnsmasq serving this test's bridge.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .status();
    }
}

/// Uid of the monitor `pid`, after checking every thread has no privilege left.
fn assert_unprivileged(pid: i32) -> u32 {
    let mut uid = None;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for task in tasks {
        let path = task.unwrap().path().join("status");
        let status = std::fs::read_to_string(&path).unwrap();
        let ids = |name| -> Vec<u32> {
            status_field(&status, name)
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect()
        };
        let uids = ids("Uid");
        let gids = ids("Gid");
        // Real, effective, saved and file-system ids: one, and not root.
        assert!(
            uids.iter().all(|u| *u == uids[0] && *u != 0),
            "{path:?}: {uids:?}"
        );
        assert!(
            gids.iter().all(|g| *g == gids[0] && *g != 0),
            "{path:?}: {gids:?}"
        );
        assert_eq!(status_field(&status, "Groups"), "", "{path:?}");
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(
                status_field(&status, set),
                "0000000000000000",
                "{path:?} {set}"
            );
        }
        assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{path:?}");
        assert_eq!(
            *uid.get_or_insert(uids[0]),
            uids[0],
            "threads differ in uid"
        );
    }
    uid.unwrap()
}

/// The cgroup v2 path of `pid` under the v2 mount.
fn cgroup_of(pid: i32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mount = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_owned())
        })
        .expect("cgroup v2 mounted");
    Path::new(&mount).join(rel.trim_start_matches('/'))
}

/// The directory of `pid`'s cgroup in the v1 hierarchy holding `controller`, if the host
/// has one.
fn v1_cgroup_of(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim_start_matches('/').to_owned())
    })?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mount = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup") && f.get(3)?.split(',').any(|o| o == controller))
            .then(|| f[1].to_owned())
    })?;
    Some(Path::new(&mount).join(rel))
}

#[test]
fn each_monitor_runs_jailed_with_its_own_files_and_cgroup() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let pid = std::process::id();
    let x = (pid % 200) as u8;
    let mut bridge = Bridge(None);
    let (mut d, _sweep) = start_daemon("[network]\nnat = true\n");
    let net = neutron_post(
        &d,
        "networks",
        json!({"network": {"name": format!("jail{pid}")}}),
    )["network"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bridge.0 = Some(net.clone());
    let prefix = format!("10.202.{x}");
    let gateway = format!("{prefix}.1");
    neutron_post(
        &d,
        "subnets",
        json!({"subnet": {"network_id": net, "ip_version": 4,
                          "cidr": format!("{prefix}.0/24")}}),
    );
    let gw_ip: IpAddr = gateway.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ctl = loop {
        if let Ok(l) = std::net::TcpListener::bind((gw_ip, 0)) {
            drop(l);
            break GuestControl::bind(gw_ip);
        }
        assert!(Instant::now() < deadline, "no gateway:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let image = image_with_checks(&d, "jail-guest", &ctl.boot_script());
    create_flavor(&d, "jailed", 1, 192, 1);
    let r = api(&d).post(
        "/compute/v2.1/flavors/jailed/os-extra_specs",
        // One CPU at most, and twice the default weight: the checks see the settings land
        // without a loaded host starving the guests' boots.
        &json!({"extra_specs": {"quota:cpu_quota": "100000", "quota:cpu_period": "100000",
                                "quota:cpu_shares": "2048"}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let ip = format!("{prefix}.10");
    let r = api(&d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "jailed", "flavorRef": "jailed", "imageRef": image,
                           "networks": [{"uuid": net, "fixed_ip": ip}]}}),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let id = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    wait_status(&d, &id, "ACTIVE");
    assert!(
        ctl.wait_seen(&ip, 2 * BOOT_TIMEOUT),
        "{}",
        console(&d, &id, None)
    );
    let dir = server_dir(&d, &id);
    let step = |script: &str| {
        let n = ctl.submit(&ip, script);
        ctl.wait(&ip, n, STEP).unwrap_or_else(|| {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let console = read("console.log");
            let tail: Vec<&str> = console.lines().rev().take(40).collect();
            panic!(
                "the guest did not finish {script:?} in {STEP:?}\nconsole (last lines \
                 first):\n{}\nvmm.log:\n{}",
                tail.join("\n"),
                read("vmm.log")
            )
        })
    };

    // The guest's disk and network work from inside the jail (the steps come and go over
    // its NIC), before the neighbour boots: two boots at once starve a small host.
    let io = step(
        // Not from /dev/urandom: without an entropy device a young guest's pool can take
        // minutes to be ready.
        "seq 1 300000 > /root/blob && sync && echo 3 > /proc/sys/vm/drop_caches && \
         md5sum /root/blob",
    );
    assert!(io.ok(), "{}", io.output);
    let digest = io.output.lines().next().unwrap().to_owned();
    assert!(digest.ends_with("/root/blob"), "{}", io.output);
    let neighbour = create_server(&d, "neighbour", "jailed");
    wait_status(&d, &neighbour, "ACTIVE");
    // Its boot done, it leaves the CPU to the guest whose steps follow.
    // (The first guest's monitor still takes its share while idle: a slow host needs longer.)
    wait_marker_within(&d, &neighbour, 1, 2 * BOOT_TIMEOUT);

    // Privileges: a uid of its own per server, nothing else.
    let vmm = vmm_pid(&d, &id);
    let uid = assert_unprivileged(vmm);
    let neighbour_uid = assert_unprivileged(vmm_pid(&d, &neighbour));
    assert_ne!(uid, neighbour_uid);
    let status = std::fs::read_to_string(format!("/proc/{vmm}/status")).unwrap();
    // The process-wide view; the vCPU threads carry no filter on a PVM host (seccomp.rs).
    assert_eq!(status_field(&status, "Seccomp"), "2");

    // Its root holds its API and console sockets only; the host's files are not there to be
    // named.
    let root = PathBuf::from(format!("/proc/{vmm}/root"));
    let mut listing: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listing.sort();
    assert_eq!(listing, ["api.sock", "console.sock"]);
    let meta = std::fs::metadata(&root).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700));
    let state = d.state_dir();
    for host_path in [
        state.join("outpost.db"),
        state.clone(),
        root_disk(&d, &neighbour),
        PathBuf::from("/dev/kvm"),
        PathBuf::from("/proc/self"),
    ] {
        let inside = root.join(host_path.strip_prefix("/").unwrap());
        assert!(!inside.exists(), "{host_path:?} is reachable in the jail");
    }
    // What it holds open is its own: its disk, the kernel, its console and log, /dev/kvm,
    // /dev/urandom, its tap, and anonymous KVM, event and socket descriptors.
    let own_disk = root_disk(&d, &id);
    let own_dir = server_dir(&d, &id);
    for fd in std::fs::read_dir(format!("/proc/{vmm}/fd")).unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap();
        let text = target.to_string_lossy();
        let allowed = !text.starts_with('/')
            || target == own_disk
            || target.starts_with(&own_dir)
            || target.starts_with(ASSETS)
            || ["/dev/kvm", "/dev/urandom", "/dev/null", "/dev/net/tun"].contains(&&*text)
            || text.starts_with("/var/cache/outpost/");
        assert!(allowed, "the monitor holds {target:?}");
        assert!(!target.starts_with(state.join("outpost.db")));
        assert_ne!(target, root_disk(&d, &neighbour));
    }

    // Its cgroup, which it has alone.
    let cgroup = cgroup_of(vmm);
    assert!(cgroup.ends_with(format!("outpost/{id}")), "{cgroup:?}");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert_eq!(
        procs.split_whitespace().collect::<Vec<_>>(),
        [vmm.to_string()]
    );
    // Each limit in cgroup v2 where the host's v2 offers the controller, else in the
    // server's own directory of the controller's v1 hierarchy (a hybrid host).
    let read = |dir: &Path, file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let memory = ((192u64 + 128) << 20).to_string();
    let mut unavailable = Vec::new();
    let mut v1_dirs: Vec<PathBuf> = Vec::new();
    for (controller, v2, v1) in [
        (
            "memory",
            vec![("memory.max", memory.clone())],
            vec![("memory.limit_in_bytes", memory)],
        ),
        (
            "pids",
            vec![("pids.max", "33".to_owned())],
            vec![("pids.max", "33".to_owned())],
        ),
        (
            "cpu",
            // 2048 cgroup v1 shares on v2's weight scale.
            vec![
                ("cpu.max", "100000 100000".to_owned()),
                ("cpu.weight", "79".to_owned()),
            ],
            vec![
                ("cpu.cfs_quota_us", "100000".to_owned()),
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.shares", "2048".to_owned()),
            ],
        ),
    ] {
        let (dir, files) = if read(&cgroup, v2[0].0).is_some() {
            (cgroup.clone(), v2)
        } else if let Some(dir) = v1_cgroup_of(vmm, controller) {
            assert!(dir.ends_with(format!("outpost/{id}")), "{dir:?}");
            (dir, v1)
        } else {
            unavailable.push(controller);
            continue;
        };
        for (file, want) in files {
            assert_eq!(read(&dir, file).as_deref(), Some(&*want), "{dir:?} {file}");
        }
        if dir != cgroup && !v1_dirs.contains(&dir) {
            v1_dirs.push(dir);
        }
    }
    if !unavailable.is_empty() {
        eprintln!("this host offers no {unavailable:?} controller: not checked");
        assert!(
            d.log()
                .contains("servers' monitors run without those limits"),
            "no warning in\n{}",
            d.log()
        );
    }

    // kill -9 of outpostd: the jailed monitor runs on and the next outpostd adopts it.
    d.kill9();
    d.spawn();
    wait_status(&d, &id, "ACTIVE");
    assert!(
        d.log().contains("adopted its running monitor"),
        "{}",
        d.log()
    );
    assert_eq!(vmm_pid(&d, &id), vmm);
    let again = step("echo 3 > /proc/sys/vm/drop_caches && md5sum /root/blob");
    assert!(
        again.ok() && again.output.contains(&digest),
        "{}",
        again.output
    );

    // Killing the server's cgroup ends its guest, and nothing else.
    let neighbour_vmm = vmm_pid(&d, &neighbour);
    let daemon_pid = d.pid();
    std::fs::write(cgroup.join("cgroup.kill"), "1").unwrap();
    let s = wait_status(&d, &id, "ERROR");
    let fault = s["fault"]["message"].as_str().unwrap();
    assert!(
        fault.starts_with("The server's monitor stopped:"),
        "{fault}"
    );
    assert_eq!(vmm_pid(&d, &neighbour), neighbour_vmm);
    assert!(Path::new(&format!("/proc/{daemon_pid}")).exists());
    assert_eq!(server(&d, &neighbour)["status"], "ACTIVE");

    // Deleting the servers removes their cgroups with everything else, the killed one's too.
    delete_leaving_nothing(&d, &id);
    for dir in std::iter::once(&cgroup).chain(&v1_dirs) {
        assert!(!dir.exists(), "{dir:?} left; daemon log:\n{}", d.log());
    }
    delete_leaving_nothing(&d, &neighbour);
    let r = d.unix().delete(&format!("/network/v2.0/networks/{net}"));
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
}
