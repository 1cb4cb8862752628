//! Neutron's door to its state: networks, subnets, ports with their addresses, security
//! groups and rules. Everything that reads or writes them goes through [`NetworkStore`]; SQLite
//! implements it for one box (`storage::networks`, `storage::security_groups`), and etcd for a
//! cluster (`cluster::store::networks`).
//!
//! Neutron's changes span several records at once (a port's network, subnets, addresses, MAC
//! and default group; a subnet's DHCP port), so the door is a unit of work over this one
//! domain: [`NetworkStore::write_networks`] runs the domain's closure on a [`NetworkTx`], and
//! everything it wrote lands together or not at all, and only if nothing it read changed
//! meanwhile. SQLite does that with one IMMEDIATE transaction; an etcd store buffers the
//! writes and commits them in one transaction comparing the revision of every key read and
//! the absence of every key created (an address, a MAC), running the closure again when it
//! lost the race. That is also what makes IP allocation contested-safe: an address is a key
//! created only if absent.

use super::NetworkError;
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use ipnet::IpNet;
use outpost_netdev::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[cfg(test)]
pub(crate) mod conformance;

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    pub shared: bool,
    pub mtu: u32,
    pub port_security_enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: i64,
}

/// One allocation pool: `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub start: IpAddr,
    pub end: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: IpNet,
    pub nexthop: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subnet {
    pub id: String,
    pub network_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub ip_version: u8,
    pub cidr: IpNet,
    pub gateway_ip: Option<IpAddr>,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<IpAddr>,
    pub allocation_pools: Vec<Pool>,
    pub host_routes: Vec<HostRoute>,
    pub ipv6_address_mode: Option<String>,
    pub ipv6_ra_mode: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: IpAddr,
}

/// Neutron's allowed_address_pairs entry: an address or prefix, and the MAC it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    pub ip_address: IpNet,
    pub mac_address: MacAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub id: String,
    pub network_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub mac_address: MacAddr,
    pub admin_state_up: bool,
    pub device_id: String,
    pub device_owner: String,
    /// `binding:host_id`; empty when unbound.
    pub host_id: String,
    pub port_security_enabled: bool,
    pub allowed_address_pairs: Vec<AddressPair>,
    /// Made by the compute side for a server; deleted (not unbound) with it.
    pub auto_delete: bool,
    pub fixed_ips: Vec<FixedIp>,
    /// Security group ids, in the order given.
    pub security_groups: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub is_default: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroupRule {
    pub id: String,
    pub security_group_id: String,
    pub project_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// As the client gave it (a name or a number), None for any.
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<IpNet>,
    pub remote_group_id: Option<String>,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: i64,
}

/// One consistent view of Neutron's records inside [`NetworkStore::read_networks`] or
/// [`NetworkStore::write_networks`]: whole records in, whole records out.
pub trait NetworkTx {
    fn insert_network(&self, n: &Network) -> Result<(), StorageError>;
    fn update_network(&self, n: &Network) -> Result<(), StorageError>;
    fn get_network(&self, id: &str) -> Result<Option<Network>, StorageError>;
    fn list_networks(&self) -> Result<Vec<Network>, StorageError>;
    /// Each network's VXLAN id, by network id: only a site's store hands them out (one box
    /// has no overlay, so none).
    fn network_vnis(&self) -> Result<Vec<(String, u32)>, StorageError> {
        Ok(Vec::new())
    }
    fn delete_network(&self, id: &str) -> Result<(), StorageError>;
    fn insert_subnet(&self, s: &Subnet) -> Result<(), StorageError>;
    fn update_subnet(&self, s: &Subnet) -> Result<(), StorageError>;
    fn get_subnet(&self, id: &str) -> Result<Option<Subnet>, StorageError>;
    /// Subnets (of `network_id`, if given).
    fn list_subnets(&self, network_id: Option<&str>) -> Result<Vec<Subnet>, StorageError>;
    fn delete_subnet(&self, id: &str) -> Result<(), StorageError>;
    /// Records a port with its fixed IPs and groups. An address already held on its network is
    /// refused (the store keeps each address once: a UNIQUE constraint, an etcd key created
    /// only if absent), so two ports can never share one.
    fn insert_port(&self, p: &Port) -> Result<(), StorageError>;
    /// Writes a port with its fixed IPs and groups (addresses held once, as for `insert_port`).
    fn update_port(&self, p: &Port) -> Result<(), StorageError>;
    fn list_ports(&self) -> Result<Vec<Port>, StorageError>;
    fn get_port(&self, id: &str) -> Result<Option<Port>, StorageError>;
    fn delete_port(&self, id: &str) -> Result<(), StorageError>;
    /// The addresses taken in `subnet_id`.
    fn allocated_ips(&self, subnet_id: &str) -> Result<Vec<IpAddr>, StorageError>;
    /// The port holding `ip` on `network_id`, if any.
    fn ip_holder(&self, network_id: &str, ip: IpAddr) -> Result<Option<String>, StorageError>;
    /// Whether a port on `network_id` has `mac`.
    fn mac_in_use(&self, network_id: &str, mac: MacAddr) -> Result<bool, StorageError>;
    /// How many ports use group `id`.
    fn ports_in_group(&self, id: &str) -> Result<i64, StorageError>;
    fn insert_group(&self, g: &SecurityGroup) -> Result<(), StorageError>;
    fn update_group(&self, g: &SecurityGroup) -> Result<(), StorageError>;
    fn get_group(&self, id: &str) -> Result<Option<SecurityGroup>, StorageError>;
    /// The project's default group, if it has one yet.
    fn default_group(&self, project_id: &str) -> Result<Option<SecurityGroup>, StorageError>;
    /// Every group, oldest first.
    fn list_groups(&self) -> Result<Vec<SecurityGroup>, StorageError>;
    fn delete_group(&self, id: &str) -> Result<(), StorageError>;
    fn insert_rule(&self, r: &SecurityGroupRule) -> Result<(), StorageError>;
    fn get_rule(&self, id: &str) -> Result<Option<SecurityGroupRule>, StorageError>;
    /// All rules, or those of one group, oldest first.
    fn list_rules(&self, group_id: Option<&str>) -> Result<Vec<SecurityGroupRule>, StorageError>;
    fn delete_rule(&self, r: &SecurityGroupRule) -> Result<(), StorageError>;
}

pub trait NetworkStore: Send + Sync {
    /// Runs `f` on one consistent view of the records, writing nothing.
    fn read_networks(
        &self,
        f: &mut dyn FnMut(&dyn NetworkTx) -> Result<(), NetworkError>,
    ) -> Result<(), NetworkError>;

    /// Runs `f` as one atomic unit of work: all it writes lands, or (when it fails) nothing.
    /// `f` may run more than once (after a lost race, on fresh records), so it must read and
    /// write only through the view and what it captures.
    fn write_networks(
        &self,
        f: &mut dyn FnMut(&dyn NetworkTx) -> Result<(), NetworkError>,
    ) -> Result<(), NetworkError>;
}
