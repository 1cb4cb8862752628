//! The host side of Outpost's guest networking. The control service owns the Neutron API and
//! its state; it hands this crate the whole desired state of the box ([`HostNetworkSpec`]) and
//! [`HostNetwork::reconcile`] makes the kernel match it: one Linux bridge per network, one
//! tap per port, one dnsmasq per network with static reservations only, and one nftables
//! ruleset (security groups, anti-spoofing, NAT, a conntrack zone per network so that
//! networks with overlapping addresses are tracked apart) applied atomically.
//!
//! Everything created here carries [`NAME_PREFIX`], so a reconcile can tell what it owns and
//! remove what no longer belongs to any port or network.
//!
//! Host settings it changes: `net.ipv4.ip_forward` is set to 1 as soon as a network has
//! `nat` (and left on); `net.bridge.bridge-nf-call-iptables`/`ip6tables` are set to 1 as
//! soon as a port has port security (br_netfilter: stateful security groups on bridged
//! traffic; see [`firewall`]), and left on.

pub mod dhcp;
pub mod firewall;
mod host;
pub mod link;
pub mod spec;

pub use host::{HostNetwork, HostNetworkConfig, NetdevError, Report};
pub use spec::*;

/// Prefix of every interface, nftables table and dnsmasq instance this crate creates.
pub const NAME_PREFIX: &str = "op";
