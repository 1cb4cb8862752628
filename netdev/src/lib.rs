//! The host side of Outpost's guest networking. The control service owns the Neutron API and
//! its state; it hands this crate the whole desired state of the box ([`HostNetworkSpec`]) and
//! [`HostNetwork::reconcile`] makes the kernel match it: one Linux bridge per network, one
//! tap per port, one dnsmasq per network with static reservations only, and one nftables
//! ruleset (security groups, anti-spoofing, NAT) applied atomically.
//!
//! Everything created here carries [`NAME_PREFIX`], so a reconcile can tell what it owns and
//! remove what no longer belongs to any port or network.

pub mod spec;

pub use spec::*;

/// Prefix of every interface, nftables table and dnsmasq instance this crate creates.
pub const NAME_PREFIX: &str = "op";
