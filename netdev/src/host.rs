//! [`HostNetwork`]: the reconcile loop that makes this box's bridges, taps, dnsmasqs and
//! nftables ruleset match a [`HostNetworkSpec`], and removes what it owns but the spec no
//! longer has.

use crate::dhcp::{self, DhcpAction, DhcpError, DnsmasqFiles};
use crate::firewall::{self, FirewallError};
use crate::link::{self, Link, LinkError};
use crate::spec::{HostNetworkSpec, NetworkSpec, OverlaySpec, METADATA_ADDR, VXLAN_PORT};
use crate::{bridge_name, tap_name, vxlan_name, NAME_PREFIX};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Dhcp(#[from] DhcpError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error("could not create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network {network}: address {addr} is in none of its subnets")]
    AddressOutsideSubnets { network: String, addr: IpAddr },
}

/// Where and how [`HostNetwork`] works.
#[derive(Debug, Clone)]
pub struct HostNetworkConfig {
    /// dnsmasq's config, reservation, lease and pid files. Must survive a daemon restart
    /// (so running dnsmasqs are adopted) and be readable by the `dnsmasq` user (it re-reads
    /// reservations after dropping root); e.g. /var/lib/outpost/net.
    pub state_dir: PathBuf,
    /// The dnsmasq binary (Debian's dnsmasq-base: /usr/sbin/dnsmasq).
    pub dnsmasq: PathBuf,
    /// Names of the nftables tables (bridge and inet families). Interfaces always use
    /// [`NAME_PREFIX`], since their names are part of the spec ([`bridge_name`], [`tap_name`]).
    pub table: String,
}

impl HostNetworkConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> HostNetworkConfig {
        HostNetworkConfig {
            state_dir: state_dir.into(),
            dnsmasq: PathBuf::from("/usr/sbin/dnsmasq"),
            table: NAME_PREFIX.to_owned(),
        }
    }
}

/// What one reconcile changed. All zero / false: the kernel already matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub bridges_created: usize,
    pub bridges_removed: usize,
    pub taps_created: usize,
    /// Ports whose interface existed and was attached, re-attached or re-configured.
    pub ports_updated: usize,
    pub interfaces_removed: usize,
    /// VXLAN devices made (or remade with another VNI or local address).
    pub overlays_created: usize,
    /// VXLAN forwarding entries added or removed (a peer box, a remote port).
    pub forwarding_changed: usize,
    pub addresses_changed: usize,
    pub dnsmasq_started: usize,
    pub dnsmasq_reloaded: usize,
    pub dnsmasq_stopped: usize,
    /// Whether the nftables ruleset was (re)applied, and how long `nft -f` took.
    pub ruleset_applied: bool,
    pub ruleset_apply_time: Option<Duration>,
}

impl Report {
    pub fn changed_anything(&self) -> bool {
        *self != Report::default()
    }
}

/// The host side of guest networking. Call [`HostNetwork::reconcile`] after every change
/// to the desired state and periodically (it repairs what others broke: a deleted tap, a
/// dead dnsmasq, a flushed ruleset).
#[derive(Debug)]
pub struct HostNetwork {
    config: HostNetworkConfig,
    /// The ruleset we applied last; re-applied only when it differs or our tables vanished.
    applied_ruleset: Option<String>,
    /// Conntrack zone of each network in that ruleset: kept while the network exists, so a
    /// zone collision resolved once stays resolved the same way (see `firewall::zones`).
    zones: firewall::Zones,
}

fn owned_bridge(name: &str) -> bool {
    name.strip_prefix(NAME_PREFIX)
        .is_some_and(|r| r.starts_with('b'))
}

/// A tap or a VXLAN device: what hangs on one of our bridges.
fn owned_port(name: &str) -> bool {
    name.strip_prefix(NAME_PREFIX)
        .is_some_and(|r| r.starts_with('t') || r.starts_with('x'))
}

impl HostNetwork {
    pub fn new(config: HostNetworkConfig) -> Result<HostNetwork, NetdevError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| NetdevError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        Ok(HostNetwork {
            config,
            applied_ruleset: None,
            zones: firewall::Zones::new(),
        })
    }

    pub fn config(&self) -> &HostNetworkConfig {
        &self.config
    }

    /// Makes the kernel match `spec`. Idempotent; safe to call at any time. Order: links
    /// first (dnsmasq binds to the bridge), then the ruleset (it names taps), then dnsmasq,
    /// then removal of what is gone.
    pub fn reconcile(&mut self, spec: &HostNetworkSpec) -> Result<Report, NetdevError> {
        let mut report = Report::default();
        let mut links: HashMap<String, Link> = link::list()?
            .into_iter()
            .map(|l| (l.ifname.clone(), l))
            .collect();

        let mut want_bridges = BTreeSet::new();
        let mut want_ports = BTreeSet::new();
        for net in &spec.networks {
            let bridge = bridge_name(&net.id);
            self.ensure_bridge(net, &bridge, &mut links, &mut report)?;
            want_bridges.insert(bridge.clone());
            for port in &net.ports {
                let tap = tap_name(&port.id);
                self.ensure_port(&tap, &bridge, net.mtu, &mut links, &mut report)?;
                want_ports.insert(tap);
            }
            if let Some(overlay) = &net.overlay {
                let vxlan = vxlan_name(&net.id);
                self.ensure_overlay(net, overlay, &vxlan, &bridge, &mut links, &mut report)?;
                want_ports.insert(vxlan);
            }
        }

        // Remove ports before bridges: an unwanted interface of ours enslaved to a wanted
        // bridge must go too.
        let mut stale: Vec<&Link> = links
            .values()
            .filter(|l| {
                (owned_port(&l.ifname) && !want_ports.contains(&l.ifname))
                    || (owned_bridge(&l.ifname) && !want_bridges.contains(&l.ifname))
            })
            .collect();
        stale.sort_by_key(|l| (owned_bridge(&l.ifname), l.ifname.clone()));
        for l in stale {
            // A veth's peer may already have taken it with it.
            match link::delete(&l.ifname) {
                Ok(()) => {}
                Err(e)
                    if !std::path::Path::new("/sys/class/net")
                        .join(&l.ifname)
                        .exists() =>
                {
                    tracing::debug!(name = %l.ifname, error = %e, "already gone");
                }
                Err(e) => return Err(e.into()),
            }
            if owned_bridge(&l.ifname) {
                report.bridges_removed += 1;
            } else {
                report.interfaces_removed += 1;
            }
            tracing::info!(name = %l.ifname, kind = ?l.kind(), "removed interface no longer in the spec");
        }

        self.apply_ruleset(spec, &mut report)?;

        let mut want_dhcp = BTreeSet::new();
        for net in spec.networks.iter().filter(|n| dhcp::wants_dhcp(n)) {
            let bridge = bridge_name(&net.id);
            let files = DnsmasqFiles::new(&self.config.state_dir, &bridge);
            let cfg = dhcp::render(net, &bridge, &files);
            match dhcp::ensure(&self.config.dnsmasq, &bridge, &files, &cfg)? {
                DhcpAction::Unchanged => {}
                DhcpAction::Started | DhcpAction::Restarted => report.dnsmasq_started += 1,
                DhcpAction::Reloaded => report.dnsmasq_reloaded += 1,
            }
            want_dhcp.insert(bridge);
        }
        let bridge_prefix = format!("{NAME_PREFIX}b");
        for bridge in dhcp::known_bridges(&self.config.state_dir, &bridge_prefix) {
            if !want_dhcp.contains(&bridge)
                && dhcp::stop(&DnsmasqFiles::new(&self.config.state_dir, &bridge))
            {
                report.dnsmasq_stopped += 1;
            }
        }

        if report.changed_anything() {
            tracing::info!(?report, "host network reconciled");
        } else {
            tracing::debug!("host network already matched the spec");
        }
        Ok(report)
    }

    /// Removes everything this crate owns: prefixed bridges and taps, our dnsmasqs and
    /// their files, our nftables tables. IPv4 forwarding stays on.
    pub fn teardown(&mut self) -> Result<Report, NetdevError> {
        let report = self.reconcile(&HostNetworkSpec::default())?;
        firewall::remove(&self.config.table)?;
        self.applied_ruleset = None;
        self.zones.clear();
        tracing::info!("host network torn down");
        Ok(report)
    }

    fn ensure_bridge(
        &self,
        net: &NetworkSpec,
        bridge: &str,
        links: &mut HashMap<String, Link>,
        report: &mut Report,
    ) -> Result<(), NetdevError> {
        let existing = links.get(bridge).filter(|l| l.kind() == Some("bridge"));
        if existing.is_none() {
            if links.contains_key(bridge) {
                // Something else holds the name: it is ours by prefix, so replace it.
                link::delete(bridge)?;
            }
            link::create_bridge(bridge)?;
            report.bridges_created += 1;
            tracing::info!(bridge, network = %net.id, "created bridge");
        }
        let existing = existing.cloned();
        let mtu_ok = existing.as_ref().is_some_and(|l| l.mtu == net.mtu);
        if !mtu_ok {
            link::set_mtu(bridge, net.mtu)?;
        }
        if let Some(dhcp) = &net.dhcp {
            let mac = dhcp.mac.to_string();
            if existing.as_ref().is_none_or(|l| l.address != mac) {
                link::set_address(bridge, &mac)?;
            }
        }
        if !existing.as_ref().is_some_and(|l| l.is_up()) {
            link::set_up(bridge)?;
        }

        // Addresses: the DHCP port's, plus the gateways when the box routes the network.
        let mut want: BTreeSet<(IpAddr, u8)> = BTreeSet::new();
        let dhcp_ips = net.dhcp.iter().flat_map(|d| d.ips.iter().copied());
        let gateways = net
            .subnets
            .iter()
            .filter(|_| net.nat)
            .filter_map(|s| s.gateway);
        for addr in dhcp_ips.chain(gateways) {
            let subnet = net
                .subnets
                .iter()
                .find(|s| s.cidr.contains(&addr))
                .ok_or_else(|| NetdevError::AddressOutsideSubnets {
                    network: net.id.clone(),
                    addr,
                })?;
            want.insert((addr, subnet.cidr.prefix_len()));
        }
        // The metadata service's address, where the host can answer a guest from the bridge:
        // the control service listens on it, bound to this bridge (its requests name their
        // network by the bridge they arrive on).
        if net.serves_metadata() {
            want.insert((IpAddr::V4(METADATA_ADDR), 32));
        }
        let have: BTreeSet<(IpAddr, u8)> = link::addresses(bridge)?.into_iter().collect();
        for (a, p) in have.difference(&want) {
            link::del_address(bridge, *a, *p)?;
            report.addresses_changed += 1;
        }
        for (a, p) in want.difference(&have) {
            link::add_address(bridge, *a, *p)?;
            report.addresses_changed += 1;
        }
        Ok(())
    }

    fn ensure_port(
        &self,
        tap: &str,
        bridge: &str,
        mtu: u32,
        links: &mut HashMap<String, Link>,
        report: &mut Report,
    ) -> Result<(), NetdevError> {
        let existing = links.get(tap).cloned();
        if existing.is_none() {
            link::create_tap(tap)?;
            report.taps_created += 1;
            tracing::info!(tap, bridge, "created tap");
        }
        let mut touched = false;
        if existing.as_ref().is_none_or(|l| l.mtu != mtu) {
            link::set_mtu(tap, mtu)?;
            touched = true;
        }
        if existing
            .as_ref()
            .is_none_or(|l| l.master.as_deref() != Some(bridge))
        {
            link::set_master(tap, bridge)?;
            touched = true;
        }
        if !existing.as_ref().is_some_and(|l| l.is_up()) {
            link::set_up(tap)?;
            touched = true;
        }
        if existing.is_some() && touched {
            report.ports_updated += 1;
            tracing::info!(tap, bridge, "attached/updated port interface");
        }
        links.remove(tap);
        Ok(())
    }

    /// The network's VXLAN device on its bridge, and its forwarding entries: the all-zero
    /// MAC to every peer (flooding), each remote port's MAC to its box.
    fn ensure_overlay(
        &self,
        net: &NetworkSpec,
        overlay: &OverlaySpec,
        vxlan: &str,
        bridge: &str,
        links: &mut HashMap<String, Link>,
        report: &mut Report,
    ) -> Result<(), NetdevError> {
        let existing = links.remove(vxlan);
        // A device's VNI, source and port are fixed at creation: one made otherwise (an older
        // spec, or someone's hand) is made again.
        let fits = existing.as_ref().and_then(Link::vxlan).is_some_and(|v| {
            v.id == Some(overlay.vni)
                && v.local == Some(overlay.local)
                && v.port == Some(VXLAN_PORT)
                && v.learning == Some(false)
        });
        let existing = if fits {
            existing
        } else {
            if existing.is_some() {
                link::delete(vxlan)?;
            }
            link::create_vxlan(vxlan, overlay.vni, overlay.local, VXLAN_PORT)?;
            report.overlays_created += 1;
            tracing::info!(vxlan, vni = overlay.vni, network = %net.id, "created VXLAN device");
            None
        };
        if existing.as_ref().is_none_or(|l| l.mtu != net.mtu) {
            link::set_mtu(vxlan, net.mtu)?;
        }
        if existing
            .as_ref()
            .is_none_or(|l| l.master.as_deref() != Some(bridge))
        {
            link::set_master(vxlan, bridge)?;
            link::set_port_learning_off(vxlan)?;
        }
        if !existing.as_ref().is_some_and(|l| l.is_up()) {
            link::set_up(vxlan)?;
        }

        const FLOOD: &str = "00:00:00:00:00:00";
        let want: BTreeSet<(String, IpAddr)> = overlay
            .peers
            .iter()
            .map(|p| (FLOOD.to_owned(), *p))
            .chain(
                overlay
                    .remote_ports
                    .iter()
                    .map(|(mac, at)| (mac.to_string(), *at)),
            )
            .collect();
        let have: BTreeSet<(String, IpAddr)> = link::forwarding(vxlan)?.into_iter().collect();
        for (mac, dst) in have.difference(&want) {
            link::del_forwarding(vxlan, mac, *dst)?;
            report.forwarding_changed += 1;
        }
        for (mac, dst) in want.difference(&have) {
            link::add_forwarding(vxlan, mac, *dst)?;
            report.forwarding_changed += 1;
        }
        Ok(())
    }

    fn apply_ruleset(
        &mut self,
        spec: &HostNetworkSpec,
        report: &mut Report,
    ) -> Result<(), NetdevError> {
        if spec.networks.iter().any(|n| n.nat) {
            firewall::enable_ipv4_forwarding()?;
        }
        if spec
            .networks
            .iter()
            .any(|n| n.ports.iter().any(|p| p.port_security))
        {
            firewall::ensure_br_netfilter()?;
        }
        // Nothing to filter or translate: no table at all, so a box whose networks are all
        // deleted carries no nftables object of ours.
        if spec.networks.is_empty() {
            if self.applied_ruleset.is_some() || firewall::any_table_present(&self.config.table) {
                firewall::remove(&self.config.table)?;
                self.applied_ruleset = None;
                self.zones.clear();
                report.ruleset_applied = true;
            }
            return Ok(());
        }
        let zones = firewall::zones::assign(spec, &self.zones);
        let text = firewall::render_with_zones(spec, &self.config.table, &zones);
        if self.applied_ruleset.as_deref() == Some(text.as_str())
            && firewall::tables_present(&self.config.table)
        {
            return Ok(());
        }
        let start = Instant::now();
        firewall::apply(&text)?;
        let took = start.elapsed();
        tracing::info!(?took, bytes = text.len(), "applied nftables ruleset");
        report.ruleset_applied = true;
        report.ruleset_apply_time = Some(took);
        self.applied_ruleset = Some(text);
        self.zones = zones;
        Ok(())
    }
}
