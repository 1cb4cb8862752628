//! HostNetwork on the real kernel: network namespaces stand in for guests (a veth pair whose
//! host end has the port's tap name, the other end in a netns with the port's MAC), a real
//! dnsmasq serves DHCP to busybox udhcpc, busybox nc and ping probe the security groups, and
//! a second netns behind the host plays "outside" for NAT.
//!
//! Reconcile owns every `op*` interface and the `op` tables, so the tests run one at a time
//! (a mutex); ids carry the pid so nothing collides with another process.

use outpost_netdev::*;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn run(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) -> Output {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

fn pid() -> u32 {
    std::process::id()
}

/// A netns "guest" with eth0 whose host end is named `host_if`. Dropped: netns and veth go.
struct Guest {
    ns: String,
    children: Vec<Child>,
}

impl Guest {
    fn new(tag: &str, host_if: &str, mac: Option<&str>) -> Guest {
        let ns = format!("opnt{}{tag}", pid());
        let _ = run(&["ip", "netns", "del", &ns]);
        ok(&["ip", "netns", "add", &ns]);
        ok(&[
            "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        if let Some(mac) = mac {
            ok(&["ip", "-n", &ns, "link", "set", "eth0", "address", mac]);
        }
        ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        Guest {
            ns,
            children: Vec::new(),
        }
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", self.ns.as_str()];
        all.extend_from_slice(args);
        ok(&all);
    }

    fn ping(&self, addr: &str) -> bool {
        in_ns(&self.ns, &["ping", "-c", "1", "-W", "1", addr])
            .status
            .success()
    }

    /// Connects with busybox nc, sends a line, and says whether it came back (echo server).
    fn echo(&self, addr: &str, port: u16) -> bool {
        echo_from(Some(&self.ns), addr, port)
    }

    fn spawn(&mut self, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// Tears the host network down even when a test fails half-way.
struct Host {
    net: HostNetwork,
    _dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        // dnsmasq re-reads reservations as the unprivileged `dnsmasq` user.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let net = HostNetwork::new(HostNetworkConfig::new(dir.path().join("net"))).unwrap();
        Host { net, _dir: dir }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.net.teardown();
    }
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, (pid() >> 8) as u8, pid() as u8, last])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(tag: &str, last: u8, addr: &str, groups: &[&str]) -> PortSpec {
    PortSpec {
        id: format!("{:08x}{tag}", pid()),
        mac: mac(last),
        ips: vec![ip(addr)],
        allowed_address_pairs: vec![],
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        port_security: true,
    }
}

fn rule(
    id: &str,
    dir: Direction,
    proto: Option<Protocol>,
    p: Option<u16>,
    remote: Remote,
) -> RuleSpec {
    RuleSpec {
        id: id.into(),
        direction: dir,
        ethertype: EtherType::IPv4,
        protocol: proto,
        port_range_min: p,
        port_range_max: p,
        remote,
    }
}

/// A subnet for this process: 100.64.0.0/10 (shared address space), third octet per test.
fn subnet_base(test: u8) -> String {
    format!("100.{}.{test}", 64 + pid() % 60)
}

fn our_links() -> Vec<String> {
    let out = run(&["ip", "-o", "link", "show"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with("opb") || n.starts_with("opt"))
        .collect()
}

fn tables() -> String {
    String::from_utf8_lossy(&run(&["nft", "list", "tables"]).stdout).into_owned()
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn dnsmasq_pid(h: &Host, network_id: &str) -> Option<i32> {
    let path = h
        .net
        .config()
        .state_dir
        .join(format!("{}.pid", bridge_name(network_id)));
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn guests_get_dhcp_talk_through_groups_and_nat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut host = Host::new();
    let base = subnet_base(1);
    let gw = format!("{base}.1");
    let net_id = format!("{:08x}net1", pid());
    let (a, b, s) = (
        port("pa01", 0x0a, &format!("{base}.10"), &["basic", "admins"]),
        port("pb01", 0x0b, &format!("{base}.11"), &["basic"]),
        port("ps01", 0x0c, &format!("{base}.12"), &["basic", "web"]),
    );
    // n: port security but no groups (everything but DHCP dropped); u: no port security.
    let n = port("pn01", 0x1a, &format!("{base}.20"), &[]);
    let mut u = port("pu01", 0x1b, &format!("{base}.21"), &[]);
    u.port_security = false;
    let ssh_rule = rule(
        "ssh",
        Direction::Ingress,
        Some(Protocol::Tcp),
        Some(22),
        Remote::Group("admins".into()),
    );
    let mut spec = HostNetworkSpec {
        networks: vec![NetworkSpec {
            id: net_id.clone(),
            mtu: 1400,
            subnets: vec![SubnetSpec {
                id: "sub".into(),
                cidr: format!("{base}.0/24").parse().unwrap(),
                gateway: Some(ip(&gw)),
                dns_nameservers: vec![ip("9.9.9.9")],
                enable_dhcp: true,
            }],
            dhcp: Some(DhcpPortSpec {
                port_id: "dhcp".into(),
                mac: mac(0x02),
                ips: vec![ip(&format!("{base}.2"))],
            }),
            ports: vec![a.clone(), b.clone(), s.clone(), n.clone(), u.clone()],
            nat: true,
            overlay: None,
        }],
        security_groups: vec![
            SecurityGroupSpec {
                id: "basic".into(),
                rules: vec![
                    rule("out", Direction::Egress, None, None, Remote::Any),
                    rule(
                        "ping",
                        Direction::Ingress,
                        Some(Protocol::Icmp),
                        None,
                        Remote::Any,
                    ),
                ],
                members: vec![a.ips[0], b.ips[0], s.ips[0]],
            },
            SecurityGroupSpec {
                id: "admins".into(),
                rules: vec![],
                members: vec![a.ips[0]],
            },
            SecurityGroupSpec {
                id: "web".into(),
                rules: vec![ssh_rule],
                members: vec![s.ips[0]],
            },
        ],
    };
    let mut ga = Guest::new("a", &tap_name(&a.id), Some(&a.mac.to_string()));
    let gb = Guest::new("b", &tap_name(&b.id), Some(&b.mac.to_string()));
    let mut gs = Guest::new("s", &tap_name(&s.id), Some(&s.mac.to_string()));
    let gn = Guest::new("n", &tap_name(&n.id), Some(&n.mac.to_string()));
    let gu = Guest::new("u", &tap_name(&u.id), Some(&u.mac.to_string()));

    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report.bridges_created, 1, "{report:?}");
    assert_eq!(
        report.taps_created, 0,
        "the veths are attached, not replaced: {report:?}"
    );
    assert_eq!(report.ports_updated, 5, "{report:?}");
    assert_eq!(report.dnsmasq_started, 1, "{report:?}");
    assert!(report.ruleset_applied);
    eprintln!("first ruleset apply: {:?}", report.ruleset_apply_time);

    // DHCP: the reservation, the gateway, the MTU (option 26).
    let script = host._dir.path().join("udhcpc.sh");
    let result = host._dir.path().join("udhcpc.out");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip router=$router mtu=$mtu subnet=$subnet dns=$dns\" > {}\nexit 0\n",
            result.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let udhcpc = |ns: &str| {
        let _ = std::fs::remove_file(&result);
        let out = in_ns(
            ns,
            &[
                "busybox",
                "udhcpc",
                "-i",
                "eth0",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "1",
                "-O",
                "mtu",
                "-s",
                script.to_str().unwrap(),
            ],
        );
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            std::fs::read_to_string(&result).unwrap_or_default(),
        )
    };
    let (stderr, got) = udhcpc(&ga.ns);
    assert_eq!(
        got.trim(),
        format!("ip={base}.10 router={gw} mtu=1400 subnet=255.255.255.0 dns=9.9.9.9"),
        "udhcpc: {stderr}"
    );
    // DHCP is allowed before (and regardless of) any security group rule.
    let (stderr, got) = udhcpc(&gn.ns);
    assert!(got.starts_with(&format!("ip={base}.20 ")), "{got} {stderr}");

    for (g, p) in [(&ga, &a), (&gb, &b), (&gs, &s), (&gn, &n), (&gu, &u)] {
        g.ip(&["addr", "add", &format!("{}/24", p.ips[0]), "dev", "eth0"]);
        g.ip(&["route", "add", "default", "via", &gw]);
    }
    let (ip_a, ip_b, ip_s) = (
        a.ips[0].to_string(),
        b.ips[0].to_string(),
        s.ips[0].to_string(),
    );
    assert!(ga.ping(&ip_b), "a pings b");
    // No group: nothing out (not even to the host's gateway address), nothing in.
    let ip_n = n.ips[0].to_string();
    assert!(!gn.ping(&gw), "n has no egress rule, not even to the host");
    assert!(!gn.ping(&a.ips[0].to_string()), "n has no egress rule");
    assert!(!ga.ping(&ip_n), "n has no ingress rule");
    assert!(
        !run(&["ping", "-c", "1", "-W", "1", &ip_n]).status.success(),
        "nor from the host"
    );
    // ...and it was n's own chains that dropped those packets (n is the 4th filtered port).
    for chain in ["e4", "i4"] {
        let listing =
            String::from_utf8_lossy(&run(&["nft", "list", "chain", "inet", "op", chain]).stdout)
                .into_owned();
        let dropped: u64 = listing
            .split("counter packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(dropped > 0, "{listing}");
    }
    // No port security: unfiltered, even from an address that is not its own.
    assert!(gu.ping(&a.ips[0].to_string()), "u pings a");
    gu.ip(&["addr", "add", &format!("{base}.99/24"), "dev", "eth0"]);
    assert!(
        in_ns(
            &gu.ns,
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                &format!("{base}.99"),
                &s.ips[0].to_string()
            ]
        )
        .status
        .success(),
        "u sends from an address that is not its own"
    );
    assert!(gb.ping(&ip_a), "b pings a");
    assert!(
        ga.ping(&gw),
        "a pings its gateway (the host, through a's filters)"
    );

    // tcp/22 on s only from members of "admins".
    gs.spawn(&["busybox", "nc", "-ll", "-p", "22", "-e", "/bin/cat"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(ga.echo(&ip_s, 22), "a (admins) reaches s:22");
    assert!(!gb.echo(&ip_s, 22), "b (not in admins) does not reach s:22");
    // The host is filtered like any other source: it may ping a (icmp from anywhere) but
    // not open a's port 22, which no rule allows.
    ga.spawn(&["busybox", "nc", "-ll", "-p", "22", "-e", "/bin/cat"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        run(&["ping", "-c", "1", "-W", "1", &ip_a]).status.success(),
        "host pings a"
    );
    assert!(!echo_from(None, &ip_a, 22), "host does not reach a:22");
    assert!(!gs.echo(&ip_a, 22), "nor does s");

    // An established connection survives the rule's removal; a new one does not.
    let mut conn = Command::new("ip")
        .args(["netns", "exec", &ga.ns, "busybox", "nc", &ip_s, "22"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn_in = conn.stdin.take().unwrap();
    let mut conn_out = BufReader::new(conn.stdout.take().unwrap());
    let mut line = String::new();
    conn_in.write_all(b"one\n").unwrap();
    conn_out.read_line(&mut line).unwrap();
    assert_eq!(line, "one\n");
    spec.security_groups[2].rules.clear();
    let started = Instant::now();
    let report = host.net.reconcile(&spec).unwrap();
    let whole = started.elapsed();
    assert!(report.ruleset_applied, "{report:?}");
    assert_eq!(
        report.dnsmasq_started + report.dnsmasq_reloaded,
        0,
        "{report:?}"
    );
    eprintln!(
        "rule removal: nft -f {:?}, whole reconcile {whole:?}",
        report.ruleset_apply_time
    );
    line.clear();
    conn_in.write_all(b"two\n").unwrap();
    conn_out.read_line(&mut line).unwrap();
    assert_eq!(line, "two\n", "the established connection survives");
    assert!(
        !ga.echo(&ip_s, 22),
        "a new connection is refused after the rule went"
    );
    drop(conn_in);
    let _ = conn.kill();
    let _ = conn.wait();

    // Forged source IP (b claims a's address) and forged MAC get nothing through.
    gb.ip(&["addr", "flush", "dev", "eth0"]);
    gb.ip(&["addr", "add", &format!("{ip_a}/24"), "dev", "eth0"]);
    assert!(!gb.ping(&ip_s), "forged source IP");
    gb.ip(&["addr", "flush", "dev", "eth0"]);
    gb.ip(&["addr", "add", &format!("{ip_b}/24"), "dev", "eth0"]);
    assert!(gb.ping(&ip_s), "b with its own address again");
    gb.ip(&["link", "set", "eth0", "address", &mac(0x77).to_string()]);
    assert!(!gb.ping(&ip_s), "forged MAC");
    gb.ip(&["link", "set", "eth0", "address", &b.mac.to_string()]);

    // NAT: "outside" is a netns behind a host veth, with no route back to the guests'
    // subnet: replies can only come back to the masqueraded host address.
    let outside_host_if = format!("xo{}", pid());
    let o = pid() % 250 + 1;
    let outside = Guest::new("o", &outside_host_if, None);
    ok(&[
        "ip",
        "addr",
        "add",
        &format!("198.18.{o}.1/30"),
        "dev",
        &outside_host_if,
    ]);
    ok(&["ip", "link", "set", &outside_host_if, "up"]);
    outside.ip(&["addr", "add", &format!("198.18.{o}.2/30"), "dev", "eth0"]);
    assert!(
        ga.ping(&format!("198.18.{o}.2")),
        "a reaches outside through NAT"
    );
    // Tracked in the network's zone in the original direction only: the reply came in on
    // the uplink (zone 0) and found the entry by its masqueraded reply tuple.
    let zone = firewall::zones::assign(&spec, &firewall::Zones::new())[&net_id];
    let outside_ip = format!("198.18.{o}.2");
    assert!(
        zone_of_flows("icmp", &ip_a, &outside_ip).contains(&format!("zone-orig={zone}")),
        "{:?}",
        zone_of_flows("icmp", &ip_a, &outside_ip)
    );

    // Idempotent.
    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report, Report::default());

    // A tap the spec wants and nobody made is created as a persistent tap the monitor can
    // open; deleted behind our back, it is rebuilt.
    let d = port("pd01", 0x0d, &format!("{base}.13"), &["basic"]);
    spec.networks[0].ports.push(d.clone());
    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report.taps_created, 1, "{report:?}");
    assert_eq!(
        report.dnsmasq_reloaded, 1,
        "new reservation: SIGHUP: {report:?}"
    );
    let tap = tap_name(&d.id);
    open_like_the_monitor(&tap);
    ok(&["ip", "link", "del", &tap]);
    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report.taps_created, 1, "{report:?}");

    // Empty spec: nothing of ours is left.
    let dns_pid = dnsmasq_pid(&host, &net_id).unwrap();
    let report = host.net.reconcile(&HostNetworkSpec::default()).unwrap();
    assert_eq!(report.bridges_removed, 1, "{report:?}");
    assert_eq!(report.dnsmasq_stopped, 1, "{report:?}");
    assert_eq!(our_links(), Vec::<String>::new());
    assert!(!pid_alive(dns_pid));
    host.net.teardown().unwrap();
    assert!(!tables().contains("table inet op\n") && !tables().contains("table bridge op\n"));
    let _ = run(&["ip", "link", "del", &outside_host_if]);
}

/// Attaches to `name` exactly as outpost-vmm does: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR.
fn open_like_the_monitor(name: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .unwrap();
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `req` is, for the call only.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    assert_eq!(
        ret,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: as above, all zeroes is a valid ifreq.
    let mut get: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: as above; TUNGETIFF writes the flags into `get`.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNGETIFF, &mut get) };
    assert_eq!(ret, 0);
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = unsafe { get.ifr_ifru.ifru_flags } as libc::c_int;
    assert_ne!(flags & libc::IFF_PERSIST, 0, "tap {name} is persistent");
}

#[test]
fn dnsmasq_is_adopted_reloaded_and_restarted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut host = Host::new();
    let base = subnet_base(2);
    let net_id = format!("{:08x}net2", pid());
    let p = port("pe01", 0x0e, &format!("{base}.10"), &[]);
    let mut spec = HostNetworkSpec {
        networks: vec![NetworkSpec {
            id: net_id.clone(),
            mtu: 1500,
            subnets: vec![SubnetSpec {
                id: "sub".into(),
                cidr: format!("{base}.0/24").parse().unwrap(),
                gateway: None,
                dns_nameservers: vec![],
                enable_dhcp: true,
            }],
            dhcp: Some(DhcpPortSpec {
                port_id: "dhcp".into(),
                mac: mac(0x03),
                ips: vec![ip(&format!("{base}.2"))],
            }),
            ports: vec![p],
            nat: false,
            overlay: None,
        }],
        security_groups: vec![],
    };
    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report.dnsmasq_started, 1, "{report:?}");
    assert_eq!(report.taps_created, 1, "{report:?}");
    let first = dnsmasq_pid(&host, &net_id).unwrap();

    // A new HostNetwork (daemon restart) adopts the running dnsmasq.
    let config = host.net.config().clone();
    host.net = HostNetwork::new(config).unwrap();
    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report.dnsmasq_started, 0, "{report:?}");
    assert!(
        report.ruleset_applied,
        "a new HostNetwork re-applies its ruleset once"
    );
    assert_eq!(dnsmasq_pid(&host, &net_id), Some(first));

    // A new reservation is a SIGHUP to the same process.
    spec.networks[0]
        .ports
        .push(port("pf01", 0x0f, &format!("{base}.11"), &[]));
    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report.dnsmasq_reloaded, 1, "{report:?}");
    assert_eq!(dnsmasq_pid(&host, &net_id), Some(first));
    let hosts = std::fs::read_to_string(
        host.net
            .config()
            .state_dir
            .join(format!("{}.hosts", bridge_name(&net_id))),
    )
    .unwrap();
    assert!(
        hosts.contains(&format!("{},{base}.11", mac(0x0f))),
        "{hosts}"
    );

    // Died: restarted.
    // SAFETY: kill(2) with a positive pid we read from our own dnsmasq's pid file.
    unsafe { libc::kill(first, libc::SIGKILL) };
    while pid_alive(first)
        && std::fs::read_to_string(format!("/proc/{first}/stat")).is_ok_and(|s| !s.contains(") Z"))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = host.net.reconcile(&spec).unwrap();
    assert_eq!(report.dnsmasq_started, 1, "{report:?}");
    let second = dnsmasq_pid(&host, &net_id).unwrap();
    assert_ne!(second, first);

    // Teardown: no interface, table or dnsmasq left.
    host.net.teardown().unwrap();
    assert!(!pid_alive(second));
    assert_eq!(our_links(), Vec::<String>::new());
    let t = tables();
    assert!(
        !t.contains("table inet op\n") && !t.contains("table bridge op\n"),
        "{t}"
    );
}

/// Connects with busybox nc (from `ns`, or the host), sends a line, and says whether it came
/// back from the echo server.
fn echo_from(ns: Option<&str>, addr: &str, port: u16) -> bool {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "busybox"]);
            c
        }
        None => Command::new("busybox"),
    };
    let mut c = cmd
        .args(["nc", "-w", "2", addr])
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let _ = stdin.write_all(b"hello\n");
    let mut line = String::new();
    let stdout = c.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = BufReader::new(stdout).read_line(&mut line);
        line
    });
    std::thread::sleep(Duration::from_millis(1500));
    drop(stdin);
    let _ = c.kill();
    let _ = c.wait();
    reader.join().unwrap() == "hello\n"
}

/// IPv6 between guests: neighbour discovery passes the filters, an icmpv6 rule lets echo in
/// one way only, and a forged v6 source gets nothing through.
#[test]
fn ipv6_guests_reach_each_other_only_as_the_rules_say() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut host = Host::new();
    let prefix = format!("fd00:{:x}:3", pid());
    let v6 = |last: u8| ip(&format!("{prefix}::{last:x}"));
    let echo_in = RuleSpec {
        id: "ping6".into(),
        direction: Direction::Ingress,
        ethertype: EtherType::IPv6,
        protocol: Some(Protocol::Icmpv6),
        port_range_min: Some(128),
        port_range_max: None,
        remote: Remote::Any,
    };
    let out_any = RuleSpec {
        id: "out6".into(),
        direction: Direction::Egress,
        ethertype: EtherType::IPv6,
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote: Remote::Any,
    };
    let mut a = port("p6a1", 0x2a, "0.0.0.0", &["out"]);
    a.ips = vec![v6(0xa)];
    let mut b = port("p6b1", 0x2b, "0.0.0.0", &["out", "pingable"]);
    b.ips = vec![v6(0xb)];
    let spec = HostNetworkSpec {
        networks: vec![NetworkSpec {
            id: format!("{:08x}net3", pid()),
            mtu: 1500,
            subnets: vec![SubnetSpec {
                id: "sub6".into(),
                cidr: format!("{prefix}::/64").parse().unwrap(),
                gateway: None,
                dns_nameservers: vec![],
                enable_dhcp: false,
            }],
            dhcp: None,
            ports: vec![a.clone(), b.clone()],
            nat: false,
            overlay: None,
        }],
        security_groups: vec![
            SecurityGroupSpec {
                id: "out".into(),
                rules: vec![out_any],
                members: vec![a.ips[0], b.ips[0]],
            },
            SecurityGroupSpec {
                id: "pingable".into(),
                rules: vec![echo_in],
                members: vec![b.ips[0]],
            },
        ],
    };
    let ga = Guest::new("6a", &tap_name(&a.id), Some(&a.mac.to_string()));
    let gb = Guest::new("6b", &tap_name(&b.id), Some(&b.mac.to_string()));
    host.net.reconcile(&spec).unwrap();
    for (g, p) in [(&ga, &a), (&gb, &b)] {
        g.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", p.ips[0]),
            "dev",
            "eth0",
            "nodad",
        ]);
    }
    let ping6 = |g: &Guest, to: &str, from: Option<&str>| {
        let mut args = vec!["ping", "-6", "-c", "1", "-W", "1"];
        if let Some(f) = from {
            args.extend(["-I", f]);
        }
        args.push(to);
        in_ns(&g.ns, &args).status.success()
    };
    // Link-local addresses may still be tentative right after the link came up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ping6(&ga, &b.ips[0].to_string(), None) && Instant::now() < deadline {}
    assert!(
        ping6(&ga, &b.ips[0].to_string(), None),
        "a pings b (b allows echo in)"
    );
    assert!(
        !ping6(&gb, &a.ips[0].to_string(), None),
        "b does not ping a (a has no ingress rule)"
    );
    let forged = v6(0xf).to_string();
    ga.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{forged}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    assert!(
        !ping6(&ga, &b.ips[0].to_string(), Some(&forged)),
        "forged v6 source"
    );
    host.net.teardown().unwrap();
    assert_eq!(our_links(), Vec::<String>::new());
}

/// The conntrack entries (from /proc/net/nf_conntrack, root netns) whose original
/// direction is `src` → `dst` with these ports.
fn conntrack_entries(proto: &str, src: &str, dst: &str, sport: u16, dport: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap();
    let want = format!("src={src} dst={dst} sport={sport} dport={dport} ");
    table
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(proto))
        .filter(|l| l.contains(&want))
        .map(str::to_owned)
        .collect()
}

/// One UDP datagram from `sport` to `addr:dport` (python3); whether the echo came back.
fn udp_echo(ns: &str, sport: u16, addr: &str, dport: u16, text: &str) -> bool {
    let script = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.bind(('', {sport})); s.settimeout(2); s.sendto(b'{text}', ('{addr}', {dport})); \
         print(s.recv(100).decode())"
    );
    let out = in_ns(ns, &["/usr/bin/python3", "-c", &script]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == text
}

/// Two tenants with the same subnet and the same guest addresses on one box: each network
/// works on its own (DHCP, ping, TCP), a flow established on one is not "established" for
/// an identical 5-tuple on the other, and conntrack holds the two in different zones.
#[test]
fn overlapping_networks_track_identical_flows_in_their_own_zones() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut host = Host::new();
    let base = subnet_base(4);
    let (c_ip, s_ip) = (format!("{base}.10"), format!("{base}.11"));
    let any_out = rule("out", Direction::Egress, None, None, Remote::Any);
    let ping_in = rule(
        "ping",
        Direction::Ingress,
        Some(Protocol::Icmp),
        None,
        Remote::Any,
    );
    let tcp22 = rule(
        "tcp22",
        Direction::Ingress,
        Some(Protocol::Tcp),
        Some(22),
        Remote::Any,
    );
    let udp6000 = rule(
        "udp6000",
        Direction::Ingress,
        Some(Protocol::Udp),
        Some(6000),
        Remote::Any,
    );
    let network = |tag: &str, dhcp_last: u8, ports: Vec<PortSpec>| NetworkSpec {
        id: format!("{:08x}ovl{tag}", pid()),
        mtu: 1500,
        subnets: vec![SubnetSpec {
            id: format!("sub{tag}"),
            cidr: format!("{base}.0/24").parse().unwrap(),
            gateway: None,
            dns_nameservers: vec![],
            enable_dhcp: true,
        }],
        dhcp: Some(DhcpPortSpec {
            port_id: format!("dhcp{tag}"),
            mac: mac(dhcp_last),
            ips: vec![ip(&format!("{base}.2"))],
        }),
        ports,
        nat: false,
        overlay: None,
    };
    let (ca, sa) = (
        port("ca01", 0x31, &c_ip, &["client"]),
        port("sa01", 0x32, &s_ip, &["server_a"]),
    );
    let (cb, sb) = (
        port("cb01", 0x41, &c_ip, &["client"]),
        port("sb01", 0x42, &s_ip, &["server_b"]),
    );
    let group = |id: &str, rules: Vec<RuleSpec>| SecurityGroupSpec {
        id: id.into(),
        rules,
        members: vec![],
    };
    let mut spec = HostNetworkSpec {
        networks: vec![
            network("a", 0x30, vec![ca.clone(), sa.clone()]),
            network("b", 0x40, vec![cb.clone(), sb.clone()]),
        ],
        security_groups: vec![
            group("client", vec![any_out.clone()]),
            group(
                "server_a",
                vec![
                    any_out.clone(),
                    ping_in.clone(),
                    tcp22.clone(),
                    udp6000.clone(),
                ],
            ),
            // Network B's server does not let UDP 6000 in.
            group("server_b", vec![any_out, ping_in, tcp22]),
        ],
    };
    let mut guests = Vec::new();
    for (tag, p) in [("ca", &ca), ("sa", &sa), ("cb", &cb), ("sb", &sb)] {
        guests.push(Guest::new(tag, &tap_name(&p.id), Some(&p.mac.to_string())));
    }
    let [gca, gsa, gcb, gsb] = &mut guests[..] else {
        unreachable!("four guests")
    };
    host.net.reconcile(&spec).unwrap();
    let zones = firewall::zones::assign(&spec, &firewall::Zones::new());
    let (za, zb) = (zones[&spec.networks[0].id], zones[&spec.networks[1].id]);
    assert!(za != zb && za != 0 && zb != 0, "{zones:?}");

    // (a) Each network on its own: DHCP from its own dnsmasq (same server address on both
    // bridges), ping and TCP between the same two addresses.
    for g in [&*gca, &*gcb] {
        let out = in_ns(
            &g.ns,
            &[
                "busybox",
                "udhcpc",
                "-i",
                "eth0",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "1",
                "-s",
                "/bin/true",
            ],
        );
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.contains(&format!("lease of {c_ip} obtained")),
            "{}: {said}",
            g.ns
        );
    }
    for (g, p) in [(&*gca, &ca), (&*gsa, &sa), (&*gcb, &cb), (&*gsb, &sb)] {
        g.ip(&["addr", "add", &format!("{}/24", p.ips[0]), "dev", "eth0"]);
    }
    assert!(gca.ping(&s_ip), "network A: client pings server");
    assert!(gcb.ping(&s_ip), "network B: client pings server");
    for g in [&mut *gsa, &mut *gsb] {
        g.spawn(&["busybox", "nc", "-ll", "-p", "22", "-e", "/bin/cat"]);
    }
    // Each server is a UDP echo on 6000 that also logs what it received.
    let logs = [
        host._dir.path().join("sa.log"),
        host._dir.path().join("sb.log"),
    ];
    for (g, log) in [(&mut *gsa, &logs[0]), (&mut *gsb, &logs[1])] {
        std::fs::write(log, "").unwrap();
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('', 6000))\nwhile True:\n    d, a = s.recvfrom(100)\n    \
             open('{}', 'ab').write(d + b'\\n')\n    s.sendto(d, a)\n",
            log.display()
        );
        g.spawn(&["/usr/bin/python3", "-c", &script]);
    }
    std::thread::sleep(Duration::from_millis(800));
    assert!(gca.echo(&s_ip, 22), "network A: TCP to the server");
    assert!(gcb.echo(&s_ip, 22), "network B: TCP to the server");

    // (b) A UDP flow client:5000 → server:6000 established on A...
    assert!(udp_echo(&gca.ns, 5000, &s_ip, 6000, "froma"), "A's flow");
    let on_a = conntrack_entries("udp", &c_ip, &s_ip, 5000, 6000);
    assert_eq!(on_a.len(), 1, "{on_a:?}");
    assert!(on_a[0].contains(&format!(" zone={za} ")), "{on_a:?}");
    // ...and the same 5-tuple on B is a new flow there, which B's server does not let in
    // (in one shared zone it would have matched A's entry and passed as established).
    assert!(
        !udp_echo(&gcb.ns, 5000, &s_ip, 6000, "fromb"),
        "B's identical 5-tuple is not let in"
    );
    assert_eq!(
        std::fs::read_to_string(&logs[1]).unwrap(),
        "",
        "B's server got nothing"
    );
    assert_eq!(std::fs::read_to_string(&logs[0]).unwrap(), "froma\n");

    // (c) Allowed on B too, the identical flows live side by side, one per zone.
    spec.security_groups[2].rules.push(udp6000);
    assert!(host.net.reconcile(&spec).unwrap().ruleset_applied);
    assert!(udp_echo(&gcb.ns, 5000, &s_ip, 6000, "fromb"), "B's flow");
    assert_eq!(std::fs::read_to_string(&logs[1]).unwrap(), "fromb\n");
    assert!(
        udp_echo(&gca.ns, 5000, &s_ip, 6000, "froma"),
        "A's flow still works"
    );
    let entries = conntrack_entries("udp", &c_ip, &s_ip, 5000, 6000);
    let mut zones_seen: Vec<String> = entries
        .iter()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("zone=")))
        .map(str::to_owned)
        .collect();
    zones_seen.sort();
    let mut want = vec![format!("zone={za}"), format!("zone={zb}")];
    want.sort();
    assert_eq!(zones_seen, want, "{entries:#?}");

    drop(guests);
    host.net.teardown().unwrap();
    assert_eq!(our_links(), Vec::<String>::new());
}

/// The zone fields (`zone=`, `zone-orig=`, `zone-reply=`) of the conntrack entries whose
/// original direction is `src` → `dst`.
fn zone_of_flows(proto: &str, src: &str, dst: &str) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap();
    let want = format!("src={src} dst={dst} ");
    table
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(proto) && l.contains(&want))
        .flat_map(|l| {
            l.split_whitespace()
                .filter(|w| w.starts_with("zone"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Two NAT networks on one box: a guest of one reaches a guest of the other through the
/// host (masqueraded to the other network's gateway), and the replies, which come back
/// from the other network's bridge to a host address, find the flow.
#[test]
fn routed_flows_between_nat_networks_find_their_replies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut host = Host::new();
    let network = |test: u8, p: PortSpec| {
        let base = subnet_base(test);
        NetworkSpec {
            id: format!("{:08x}rt{test}", pid()),
            mtu: 1500,
            subnets: vec![SubnetSpec {
                id: format!("sub{test}"),
                cidr: format!("{base}.0/24").parse().unwrap(),
                gateway: Some(ip(&format!("{base}.1"))),
                dns_nameservers: vec![],
                enable_dhcp: false,
            }],
            dhcp: None,
            ports: vec![p],
            nat: true,
            overlay: None,
        }
    };
    let (base_a, base_m) = (subnet_base(5), subnet_base(6));
    let a = port("ra01", 0x51, &format!("{base_a}.10"), &["open"]);
    let m = port("rm01", 0x61, &format!("{base_m}.10"), &["open"]);
    let spec = HostNetworkSpec {
        networks: vec![network(5, a.clone()), network(6, m.clone())],
        security_groups: vec![SecurityGroupSpec {
            id: "open".into(),
            rules: vec![
                rule("out", Direction::Egress, None, None, Remote::Any),
                rule(
                    "ping",
                    Direction::Ingress,
                    Some(Protocol::Icmp),
                    None,
                    Remote::Any,
                ),
                rule(
                    "tcp22",
                    Direction::Ingress,
                    Some(Protocol::Tcp),
                    Some(22),
                    Remote::Any,
                ),
            ],
            members: vec![],
        }],
    };
    let ga = Guest::new("ra", &tap_name(&a.id), Some(&a.mac.to_string()));
    let mut gm = Guest::new("rm", &tap_name(&m.id), Some(&m.mac.to_string()));
    host.net.reconcile(&spec).unwrap();
    for (g, p, base) in [(&ga, &a, &base_a), (&gm, &m, &base_m)] {
        g.ip(&["addr", "add", &format!("{}/24", p.ips[0]), "dev", "eth0"]);
        g.ip(&["route", "add", "default", "via", &format!("{base}.1")]);
    }
    gm.spawn(&["busybox", "nc", "-ll", "-p", "22", "-e", "/bin/cat"]);
    std::thread::sleep(Duration::from_millis(300));
    let (ip_a, ip_m) = (a.ips[0].to_string(), m.ips[0].to_string());
    assert!(ga.ping(&ip_m), "a pings m through the host");
    assert!(ga.echo(&ip_m, 22), "a reaches m:22 through the host");
    // Host ↔ guest on the second network still works (the gateway is a host address).
    assert!(gm.ping(&format!("{base_m}.1")), "m pings its gateway");
    let zone = firewall::zones::assign(&spec, &firewall::Zones::new())[&spec.networks[0].id];
    let seen = zone_of_flows("icmp", &ip_a, &ip_m);
    assert!(seen.contains(&format!("zone-orig={zone}")), "{seen:?}");
    drop((ga, gm));
    host.net.teardown().unwrap();
}
