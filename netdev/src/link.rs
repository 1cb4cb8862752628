//! Bridges and taps through iproute2 (`ip -json`). Why a Debian tool and not rtnetlink: the
//! operations are few and coarse (create, set master/mtu/address, up, delete), a reconcile
//! runs them rarely, and `ip` is what an operator uses to inspect the same state, so errors
//! read the same in our log and on their terminal. `ip tuntap add` makes the tap persistent
//! and non-multi-queue, which is what `outpost-vmm` opens (IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR; the vnet header is chosen per open, multi-queue must match, so none).

use serde::Deserialize;
use std::net::IpAddr;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("could not run `{args}`: {source}")]
    Spawn {
        args: String,
        source: std::io::Error,
    },
    #[error("`{args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("could not parse the output of `{args}`: {source}")]
    Parse {
        args: String,
        source: serde_json::Error,
    },
}

/// One interface as `ip -json -details link show` describes it (only what we read).
#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub ifname: String,
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub linkinfo: Option<LinkInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LinkInfo {
    #[serde(default)]
    pub info_kind: Option<String>,
    /// The kind's own settings, kept as JSON: each kind has its own shape (and types), and
    /// one odd interface of the host must not make the whole list unreadable. Read for VXLAN
    /// devices only ([`Link::vxlan`]).
    #[serde(default)]
    pub info_data: Option<serde_json::Value>,
}

/// What a VXLAN device was made with (`ip -details` `info_data`; other kinds leave it empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VxlanData {
    #[serde(default)]
    pub id: Option<u32>,
    #[serde(default)]
    pub local: Option<IpAddr>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub learning: Option<bool>,
}

/// One forwarding entry of a VXLAN device: frames to `mac` go to the box at `dst`.
#[derive(Debug, Clone, Deserialize)]
struct FdbEntry {
    mac: String,
    #[serde(default)]
    dst: Option<IpAddr>,
}

impl Link {
    pub fn kind(&self) -> Option<&str> {
        self.linkinfo.as_ref()?.info_kind.as_deref()
    }
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
    /// The VXLAN settings of a VXLAN device; None for any other kind.
    pub fn vxlan(&self) -> Option<VxlanData> {
        if self.kind() != Some("vxlan") {
            return None;
        }
        let data = self.linkinfo.as_ref()?.info_data.clone()?;
        serde_json::from_value(data).ok()
    }
}

#[derive(Debug, Deserialize)]
struct AddrEntry {
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    local: IpAddr,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

fn ip(args: &[&str]) -> Result<String, LinkError> {
    run("ip", args)
}

/// iproute2's `bridge`: the forwarding database.
fn bridge(args: &[&str]) -> Result<String, LinkError> {
    run("bridge", args)
}

fn run(tool: &str, args: &[&str]) -> Result<String, LinkError> {
    let joined = format!("{tool} {}", args.join(" "));
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| LinkError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LinkError::Failed {
            args: joined,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every interface of this network namespace.
pub fn list() -> Result<Vec<Link>, LinkError> {
    let args = ["-json", "-details", "link", "show"];
    let text = ip(&args)?;
    serde_json::from_str(&text).map_err(|source| LinkError::Parse {
        args: format!("ip {}", args.join(" ")),
        source,
    })
}

/// Global-scope addresses of `dev`, as `addr/prefixlen` (link-local ones are the kernel's).
pub fn addresses(dev: &str) -> Result<Vec<(IpAddr, u8)>, LinkError> {
    let args = ["-json", "addr", "show", "dev", dev];
    let text = ip(&args)?;
    let entries: Vec<AddrEntry> =
        serde_json::from_str(&text).map_err(|source| LinkError::Parse {
            args: format!("ip {}", args.join(" ")),
            source,
        })?;
    Ok(entries
        .into_iter()
        .flat_map(|e| e.addr_info)
        .filter(|a| a.scope != "link" && a.scope != "host")
        .map(|a| (a.local, a.prefixlen))
        .collect())
}

/// The MTU of the interface that holds `addr` (None: no interface of this namespace does).
pub fn mtu_at(addr: IpAddr) -> Result<Option<u32>, LinkError> {
    let args = ["-json", "addr", "show"];
    let text = ip(&args)?;
    let entries: Vec<AddrEntry> =
        serde_json::from_str(&text).map_err(|source| LinkError::Parse {
            args: format!("ip {}", args.join(" ")),
            source,
        })?;
    Ok(entries
        .into_iter()
        .find(|e| e.addr_info.iter().any(|a| a.local == addr))
        .map(|e| e.mtu))
}

pub fn create_bridge(name: &str) -> Result<(), LinkError> {
    // No STP and no forwarding delay: a port forwards as soon as it is up, so a guest's
    // first DHCP request is not lost in the 15 s listening/learning phases.
    ip(&[
        "link",
        "add",
        "name",
        name,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
    ])
    .map(drop)
}

pub fn create_tap(name: &str) -> Result<(), LinkError> {
    ip(&["tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr"]).map(drop)
}

pub fn delete(name: &str) -> Result<(), LinkError> {
    ip(&["link", "del", "dev", name]).map(drop)
}

pub fn set_mtu(name: &str, mtu: u32) -> Result<(), LinkError> {
    ip(&["link", "set", "dev", name, "mtu", &mtu.to_string()]).map(drop)
}

pub fn set_address(name: &str, mac: &str) -> Result<(), LinkError> {
    ip(&["link", "set", "dev", name, "address", mac]).map(drop)
}

pub fn set_master(name: &str, bridge: &str) -> Result<(), LinkError> {
    ip(&["link", "set", "dev", name, "master", bridge]).map(drop)
}

pub fn set_up(name: &str) -> Result<(), LinkError> {
    ip(&["link", "set", "dev", name, "up"]).map(drop)
}

pub fn add_address(dev: &str, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
    // nodad: the bridge's addresses are Neutron's allocations, unique by construction;
    // waiting for DAD would only delay dnsmasq binding to a v6 address.
    let a = format!("{addr}/{prefix}");
    let mut args = vec!["addr", "add", a.as_str(), "dev", dev];
    if addr.is_ipv6() {
        args.push("nodad");
    }
    ip(&args).map(drop)
}

pub fn del_address(dev: &str, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
    let a = format!("{addr}/{prefix}");
    ip(&["addr", "del", a.as_str(), "dev", dev]).map(drop)
}

/// A VXLAN device without multicast and without learning: where frames go is only what its
/// forwarding entries say ([`add_forwarding`]), so a frame with a forged source MAC cannot
/// redirect another box's traffic. The UDP source port range is the kernel's default.
pub fn create_vxlan(name: &str, vni: u32, local: IpAddr, port: u16) -> Result<(), LinkError> {
    let (vni, local, port) = (vni.to_string(), local.to_string(), port.to_string());
    ip(&[
        "link",
        "add",
        "name",
        name,
        "type",
        "vxlan",
        "id",
        &vni,
        "local",
        &local,
        "dstport",
        &port,
        "nolearning",
    ])
    .map(drop)
}

/// Turns MAC learning off on a bridge port: the bridge floods unknown destinations to it
/// instead of remembering the last box a (possibly forged) source came from.
pub fn set_port_learning_off(name: &str) -> Result<(), LinkError> {
    ip(&[
        "link",
        "set",
        "dev",
        name,
        "type",
        "bridge_slave",
        "learning",
        "off",
    ])
    .map(drop)
}

/// The forwarding entries of VXLAN device `dev` (its own, not its bridge's): (MAC, remote).
/// The all-zero MAC is the flooding list.
pub fn forwarding(dev: &str) -> Result<Vec<(String, IpAddr)>, LinkError> {
    let args = ["-json", "fdb", "show", "dev", dev];
    let text = bridge(&args)?;
    let entries: Vec<FdbEntry> =
        serde_json::from_str(&text).map_err(|source| LinkError::Parse {
            args: format!("bridge {}", args.join(" ")),
            source,
        })?;
    Ok(entries
        .into_iter()
        .filter_map(|e| Some((e.mac, e.dst?)))
        .collect())
}

/// Adds a forwarding entry (`append`: several remotes may share the all-zero MAC).
pub fn add_forwarding(dev: &str, mac: &str, dst: IpAddr) -> Result<(), LinkError> {
    let dst = dst.to_string();
    bridge(&[
        "fdb",
        "append",
        mac,
        "dev",
        dev,
        "dst",
        &dst,
        "self",
        "permanent",
    ])
    .map(drop)
}

pub fn del_forwarding(dev: &str, mac: &str, dst: IpAddr) -> Result<(), LinkError> {
    let dst = dst.to_string();
    bridge(&["fdb", "del", mac, "dev", dev, "dst", &dst, "self"]).map(drop)
}
