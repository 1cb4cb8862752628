//! One dnsmasq (Debian's dnsmasq-base) per network with DHCP: bound to the network's bridge
//! only, DNS off (`port=0`), static reservations only (`static` ranges + a dhcp-hostsfile).
//! Its files live in the state directory, named after the bridge: `<bridge>.conf` (what
//! needs a restart: interface, ranges), `<bridge>.hosts` and `<bridge>.opts` (reservations and
//! options, re-read on SIGHUP), `<bridge>.leases`, `<bridge>.pid`. Everything is decided from
//! those files and /proc, not from memory, so a restarted `HostNetwork` adopts the running
//! daemons instead of starting second ones.

use crate::spec::{NetworkSpec, SubnetSpec};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Lease time handed out. Reservations are static, so a long lease only saves renewals; a
/// guest still renews well within any change we would make.
const LEASE_SECS: u32 = 86400;

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("could not write dnsmasq file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("could not start {binary} for {bridge}: {source}")]
    Spawn {
        binary: PathBuf,
        bridge: String,
        source: io::Error,
    },
    #[error("dnsmasq for {bridge} refused to start: {stderr}")]
    StartFailed { bridge: String, stderr: String },
    #[error("dnsmasq for {bridge} started but wrote no usable pid file {path}")]
    NoPid { bridge: String, path: PathBuf },
    #[error("could not signal dnsmasq pid {pid}: {source}")]
    Signal { pid: i32, source: io::Error },
}

/// The files of one network's dnsmasq, all derived from its bridge name.
#[derive(Debug, Clone)]
pub struct DnsmasqFiles {
    pub conf: PathBuf,
    pub hosts: PathBuf,
    pub opts: PathBuf,
    pub leases: PathBuf,
    pub pid: PathBuf,
}

impl DnsmasqFiles {
    pub fn new(state_dir: &Path, bridge: &str) -> DnsmasqFiles {
        let f = |ext: &str| state_dir.join(format!("{bridge}.{ext}"));
        DnsmasqFiles {
            conf: f("conf"),
            hosts: f("hosts"),
            opts: f("opts"),
            leases: f("leases"),
            pid: f("pid"),
        }
    }

    fn all(&self) -> [&Path; 5] {
        [&self.conf, &self.hosts, &self.opts, &self.leases, &self.pid]
    }
}

/// The three rendered files of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqConfig {
    pub conf: String,
    pub hosts: String,
    pub opts: String,
}

fn dhcp_subnets(net: &NetworkSpec) -> impl Iterator<Item = (usize, &SubnetSpec)> {
    net.subnets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.enable_dhcp)
}

/// Whether a network gets a dnsmasq at all: a DHCP port and at least one DHCP subnet.
pub fn wants_dhcp(net: &NetworkSpec) -> bool {
    net.dhcp.is_some() && dhcp_subnets(net).next().is_some()
}

/// Renders a network's dnsmasq files. Pure: unit-tested below. Subnets are tagged by their
/// index (`s0`, `s1`, ...), not their id, so nothing from the API reaches the file unparsed.
pub fn render(net: &NetworkSpec, bridge: &str, files: &DnsmasqFiles) -> DnsmasqConfig {
    let mut conf = String::from("# written by outpost-netdev; rewritten on every reconcile\n");
    // Bound to the bridge only (bind-interfaces: no wildcard socket that could answer on
    // another interface), no DNS, no /etc/hosts or /etc/resolv.conf.
    let _ = writeln!(conf, "interface={bridge}");
    conf.push_str("except-interface=lo\nbind-interfaces\nport=0\nno-resolv\nno-hosts\n");
    conf.push_str("dhcp-authoritative\n");
    let _ = writeln!(conf, "dhcp-leasefile={}", files.leases.display());
    let _ = writeln!(conf, "pid-file={}", files.pid.display());
    let _ = writeln!(conf, "dhcp-hostsfile={}", files.hosts.display());
    let _ = writeln!(conf, "dhcp-optsfile={}", files.opts.display());
    for (i, s) in dhcp_subnets(net) {
        let net_addr = s.cidr.network();
        match s.cidr {
            ipnet::IpNet::V4(v4) => {
                let _ = writeln!(
                    conf,
                    "dhcp-range=set:s{i},{net_addr},static,{},{LEASE_SECS}s",
                    v4.netmask()
                );
            }
            ipnet::IpNet::V6(v6) => {
                let _ = writeln!(
                    conf,
                    "dhcp-range=set:s{i},{net_addr},static,{},{LEASE_SECS}s",
                    v6.prefix_len()
                );
            }
        }
    }

    // Options go to the opts file so that a gateway or DNS change is a SIGHUP, not a restart.
    let mut opts = String::new();
    // RFC 2132 §5.1: option 26, interface MTU.
    let _ = writeln!(opts, "option:mtu,{}", net.mtu);
    for (i, s) in dhcp_subnets(net) {
        let v4 = s.cidr.addr().is_ipv4();
        if let (true, Some(gw)) = (v4, s.gateway) {
            let _ = writeln!(opts, "tag:s{i},option:router,{gw}");
        }
        if let Some(route) = metadata_route(net, s) {
            let _ = writeln!(opts, "tag:s{i},option:classless-static-route,{route}");
        }
        let dns: Vec<&IpAddr> = s
            .dns_nameservers
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .collect();
        if !dns.is_empty() {
            if v4 {
                let list: Vec<String> = dns.iter().map(|a| a.to_string()).collect();
                let _ = writeln!(opts, "tag:s{i},option:dns-server,{}", list.join(","));
            } else {
                let list: Vec<String> = dns.iter().map(|a| format!("[{a}]")).collect();
                let _ = writeln!(opts, "tag:s{i},option6:dns-server,{}", list.join(","));
            }
        }
    }

    // One line per port: MAC and its addresses inside DHCP subnets (v6 in brackets).
    let mut hosts = String::new();
    let mut by_mac: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &net.ports {
        let addrs: Vec<String> = p
            .ips
            .iter()
            .filter(|ip| dhcp_subnets(net).any(|(_, s)| s.cidr.contains(*ip)))
            .map(|ip| match ip {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            })
            .collect();
        if !addrs.is_empty() {
            by_mac.entry(p.mac.to_string()).or_default().extend(addrs);
        }
    }
    for (mac, addrs) in by_mac {
        let _ = writeln!(hosts, "{mac},{}", addrs.join(","));
    }
    DnsmasqConfig { conf, hosts, opts }
}

/// RFC 3442 (option 121) routes for a v4 subnet whose gateway is not on this box's bridge
/// (the box does not route the network, or it has no gateway): the metadata address through
/// the DHCP port, which is on the bridge, as Neutron's isolated metadata does. A client that
/// gets option 121 ignores option 3 (RFC 3442 §3), so the default route is repeated here.
fn metadata_route(net: &NetworkSpec, s: &SubnetSpec) -> Option<String> {
    if !s.cidr.addr().is_ipv4() || (net.nat && s.gateway.is_some()) {
        return None;
    }
    let dhcp_ip = net
        .dhcp
        .as_ref()?
        .ips
        .iter()
        .find(|ip| s.cidr.contains(*ip))?;
    let mut route = format!("{}/32,{dhcp_ip}", crate::spec::METADATA_ADDR);
    if let Some(gw) = s.gateway {
        let _ = write!(route, ",0.0.0.0/0,{gw}");
    }
    Some(route)
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpAction {
    Unchanged,
    Started,
    Restarted,
    Reloaded,
}

fn write_if_changed(path: &Path, text: &str) -> Result<bool, DhcpError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    // Write-then-rename: dnsmasq re-reading on SIGHUP never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| DhcpError::Write {
            path: path.to_owned(),
            source,
        })?;
    Ok(true)
}

/// The pid of the dnsmasq serving `files`, if one runs: the pid file's process must be a
/// dnsmasq started with exactly our `--conf-file`, so a recycled pid is never ours.
pub fn running_pid(files: &DnsmasqFiles) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(&files.pid)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid <= 0 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let arg0 = String::from_utf8_lossy(args.next()?).into_owned();
    let want = format!("--conf-file={}", files.conf.display());
    let ours = Path::new(&arg0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("dnsmasq"))
        && args.any(|a| a == want.as_bytes());
    ours.then_some(pid)
}

fn signal(pid: i32, sig: libc::c_int) -> Result<(), DhcpError> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is positive
    // (checked by running_pid), so this never signals a process group.
    let ret = unsafe { libc::kill(pid, sig) };
    if ret != 0 {
        return Err(DhcpError::Signal {
            pid,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn start(binary: &Path, bridge: &str, files: &DnsmasqFiles) -> Result<i32, DhcpError> {
    // dnsmasq daemonizes; its foreground parent exits only once the daemon has bound its
    // sockets and written the pid file (or with the reason it could not).
    let out = Command::new(binary)
        .arg(format!("--conf-file={}", files.conf.display()))
        .output()
        .map_err(|source| DhcpError::Spawn {
            binary: binary.to_owned(),
            bridge: bridge.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(DhcpError::StartFailed {
            bridge: bridge.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    running_pid(files).ok_or_else(|| DhcpError::NoPid {
        bridge: bridge.to_owned(),
        path: files.pid.clone(),
    })
}

/// Makes one network's dnsmasq match `cfg`: files written, the daemon running, restarted if
/// the main config changed, SIGHUP'd if only reservations or options did.
pub fn ensure(
    binary: &Path,
    bridge: &str,
    files: &DnsmasqFiles,
    cfg: &DnsmasqConfig,
) -> Result<DhcpAction, DhcpError> {
    let conf_changed = write_if_changed(&files.conf, &cfg.conf)?;
    let hosts_changed = write_if_changed(&files.hosts, &cfg.hosts)?;
    let opts_changed = write_if_changed(&files.opts, &cfg.opts)?;
    match running_pid(files) {
        None => {
            let pid = start(binary, bridge, files)?;
            tracing::info!(bridge, pid, "dnsmasq started");
            Ok(DhcpAction::Started)
        }
        Some(pid) if conf_changed => {
            stop_pid(pid);
            let pid = start(binary, bridge, files)?;
            tracing::info!(bridge, pid, "dnsmasq restarted for a new configuration");
            Ok(DhcpAction::Restarted)
        }
        Some(pid) if hosts_changed || opts_changed => {
            signal(pid, libc::SIGHUP)?;
            tracing::info!(bridge, pid, "dnsmasq reloaded (SIGHUP)");
            Ok(DhcpAction::Reloaded)
        }
        Some(_) => Ok(DhcpAction::Unchanged),
    }
}

/// SIGTERM, then wait (bounded) for the process to go, so its sockets are free for a
/// successor.
fn stop_pid(pid: i32) {
    if signal(pid, libc::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        tracing::warn!(pid, "dnsmasq ignored SIGTERM for 3 s; sending SIGKILL");
        let _ = signal(pid, libc::SIGKILL);
    }
}

/// Stops a network's dnsmasq (if it is ours and running) and removes its files. Returns
/// whether a process was stopped.
pub fn stop(files: &DnsmasqFiles) -> bool {
    let pid = running_pid(files);
    if let Some(pid) = pid {
        stop_pid(pid);
        tracing::info!(pid, conf = %files.conf.display(), "dnsmasq stopped");
    }
    for f in files.all() {
        let _ = std::fs::remove_file(f);
    }
    pid.is_some()
}

/// Bridges that have dnsmasq files in `state_dir` (names starting with `bridge_prefix`).
pub fn known_bridges(state_dir: &Path, bridge_prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".conf")?;
            stem.starts_with(bridge_prefix).then(|| stem.to_owned())
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DhcpPortSpec, MacAddr, PortSpec};

    fn net() -> NetworkSpec {
        NetworkSpec {
            id: "n1".into(),
            mtu: 1450,
            subnets: vec![
                SubnetSpec {
                    id: "s-a".into(),
                    cidr: "10.0.0.0/24".parse().unwrap(),
                    gateway: Some("10.0.0.1".parse().unwrap()),
                    dns_nameservers: vec!["9.9.9.9".parse().unwrap(), "1.1.1.1".parse().unwrap()],
                    enable_dhcp: true,
                },
                SubnetSpec {
                    id: "s-b".into(),
                    cidr: "10.1.0.0/24".parse().unwrap(),
                    gateway: None,
                    dns_nameservers: vec![],
                    enable_dhcp: false,
                },
                SubnetSpec {
                    id: "s-c".into(),
                    cidr: "fd00::/64".parse().unwrap(),
                    gateway: Some("fd00::1".parse().unwrap()),
                    dns_nameservers: vec!["fd00::53".parse().unwrap()],
                    enable_dhcp: true,
                },
            ],
            dhcp: Some(DhcpPortSpec {
                port_id: "d".into(),
                mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
                ips: vec!["10.0.0.2".parse().unwrap()],
            }),
            ports: vec![PortSpec {
                id: "p".into(),
                mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, 5]),
                ips: vec![
                    "10.0.0.5".parse().unwrap(),
                    "10.1.0.5".parse().unwrap(),
                    "fd00::5".parse().unwrap(),
                ],
                allowed_address_pairs: vec![],
                security_groups: vec![],
                port_security: true,
            }],
            nat: false,
            overlay: None,
        }
    }

    #[test]
    fn renders_bridge_bound_static_dhcp_without_dns() {
        let files = DnsmasqFiles::new(Path::new("/st"), "opbn1");
        let c = render(&net(), "opbn1", &files);
        for line in [
            "interface=opbn1",
            "bind-interfaces",
            "port=0",
            "dhcp-leasefile=/st/opbn1.leases",
            "pid-file=/st/opbn1.pid",
            "dhcp-hostsfile=/st/opbn1.hosts",
            "dhcp-optsfile=/st/opbn1.opts",
            "dhcp-range=set:s0,10.0.0.0,static,255.255.255.0,86400s",
            "dhcp-range=set:s2,fd00::,static,64,86400s",
        ] {
            assert!(c.conf.lines().any(|l| l == line), "{line} in\n{}", c.conf);
        }
        // The DHCP-disabled subnet gets no range.
        assert!(!c.conf.contains("10.1.0.0"));
        assert_eq!(
            c.opts,
            "option:mtu,1450\n\
             tag:s0,option:router,10.0.0.1\n\
             tag:s0,option:classless-static-route,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1\n\
             tag:s0,option:dns-server,9.9.9.9,1.1.1.1\n\
             tag:s2,option6:dns-server,[fd00::53]\n"
        );
        // Only addresses inside DHCP subnets are reserved.
        assert_eq!(c.hosts, "fa:16:3e:00:00:05,10.0.0.5,[fd00::5]\n");
    }

    #[test]
    fn no_gateway_no_dns_means_no_such_options() {
        let mut n = net();
        n.subnets[0].gateway = None;
        n.subnets[0].dns_nameservers.clear();
        n.subnets.truncate(1);
        n.dhcp = None;
        let c = render(&n, "opbn1", &DnsmasqFiles::new(Path::new("/st"), "opbn1"));
        assert_eq!(c.opts, "option:mtu,1450\n");
    }

    #[test]
    fn the_metadata_route_goes_through_the_dhcp_port_when_the_gateway_is_elsewhere() {
        let mut n = net();
        n.subnets.truncate(1);
        n.subnets[0].dns_nameservers.clear();
        // This box routes the network: the gateway on the bridge answers for metadata too.
        n.nat = true;
        let c = render(&n, "opbn1", &DnsmasqFiles::new(Path::new("/st"), "opbn1"));
        assert!(!c.opts.contains("classless-static-route"), "{}", c.opts);
        // No gateway at all: only the metadata route.
        n.subnets[0].gateway = None;
        let c = render(&n, "opbn1", &DnsmasqFiles::new(Path::new("/st"), "opbn1"));
        assert_eq!(
            c.opts,
            "option:mtu,1450\n\
             tag:s0,option:classless-static-route,169.254.169.254/32,10.0.0.2\n"
        );
    }

    #[test]
    fn dhcp_only_with_port_and_enabled_subnet() {
        let mut n = net();
        assert!(wants_dhcp(&n));
        n.dhcp = None;
        assert!(!wants_dhcp(&n));
        let mut n = net();
        for s in &mut n.subnets {
            s.enable_dhcp = false;
        }
        assert!(!wants_dhcp(&n));
    }

    #[test]
    fn a_pid_file_naming_someone_else_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let files = DnsmasqFiles::new(dir.path(), "opbx");
        assert_eq!(running_pid(&files), None);
        // Our own test process is alive but is not a dnsmasq with this conf file.
        std::fs::write(&files.pid, std::process::id().to_string()).unwrap();
        assert_eq!(running_pid(&files), None);
        std::fs::write(&files.pid, "junk").unwrap();
        assert_eq!(running_pid(&files), None);
    }
}
