//! The JSON values of Neutron's keys, each with its `schema`, and their conversions to and
//! from the domain's records. Timestamps are microseconds since the epoch, as [`Timestamp`].

use std::net::IpAddr;

use ipnet::IpNet;
use outpost_netdev::MacAddr;
use serde::{Deserialize, Serialize};

use crate::network::store::{
    AddressPair, FixedIp, HostRoute, Network, Pool, Port, SecurityGroup, SecurityGroupRule, Subnet,
};
use crate::timestamp::Timestamp;

const NETWORK_SCHEMA: u32 = 1;
const VNI_SCHEMA: u32 = 1;
const SUBNET_SCHEMA: u32 = 1;
const PORT_SCHEMA: u32 = 1;
const ADDRESS_SCHEMA: u32 = 1;
const MAC_SCHEMA: u32 = 1;
const GROUP_SCHEMA: u32 = 1;
const RULE_SCHEMA: u32 = 1;
const MEMBER_SCHEMA: u32 = 1;

/// `/networks/<id>`.
#[derive(Serialize, Deserialize)]
pub(super) struct NetworkRecord {
    schema: u32,
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    pub shared: bool,
    pub mtu: u32,
    pub port_security_enabled: bool,
    /// The network's VXLAN id across boxes, held by `/vni/<vni>`.
    pub vni: u32,
    pub created_at: i64,
    pub updated_at: i64,
    pub revision_number: i64,
}

impl NetworkRecord {
    pub(super) fn new(n: &Network, vni: u32) -> NetworkRecord {
        NetworkRecord {
            schema: NETWORK_SCHEMA,
            id: n.id.clone(),
            project_id: n.project_id.clone(),
            name: n.name.clone(),
            description: n.description.clone(),
            admin_state_up: n.admin_state_up,
            shared: n.shared,
            mtu: n.mtu,
            port_security_enabled: n.port_security_enabled,
            vni,
            created_at: n.created_at.micros(),
            updated_at: n.updated_at.micros(),
            revision_number: n.revision_number,
        }
    }

    pub(super) fn into_network(self) -> Network {
        Network {
            id: self.id,
            project_id: self.project_id,
            name: self.name,
            description: self.description,
            admin_state_up: self.admin_state_up,
            shared: self.shared,
            mtu: self.mtu,
            port_security_enabled: self.port_security_enabled,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            revision_number: self.revision_number,
        }
    }
}

/// `/vni/<vni>`: the network holding a VXLAN id.
#[derive(Serialize, Deserialize)]
pub(super) struct VniRecord {
    schema: u32,
    pub network: String,
}

impl VniRecord {
    pub(super) fn new(network: &str) -> VniRecord {
        VniRecord {
            schema: VNI_SCHEMA,
            network: network.to_owned(),
        }
    }
}

/// `/subnets/<id>`.
#[derive(Serialize, Deserialize)]
pub(super) struct SubnetRecord {
    schema: u32,
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
    pub created_at: i64,
    pub updated_at: i64,
    pub revision_number: i64,
}

impl SubnetRecord {
    pub(super) fn new(s: &Subnet) -> SubnetRecord {
        SubnetRecord {
            schema: SUBNET_SCHEMA,
            id: s.id.clone(),
            network_id: s.network_id.clone(),
            project_id: s.project_id.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            ip_version: s.ip_version,
            cidr: s.cidr,
            gateway_ip: s.gateway_ip,
            enable_dhcp: s.enable_dhcp,
            dns_nameservers: s.dns_nameservers.clone(),
            allocation_pools: s.allocation_pools.clone(),
            host_routes: s.host_routes.clone(),
            ipv6_address_mode: s.ipv6_address_mode.clone(),
            ipv6_ra_mode: s.ipv6_ra_mode.clone(),
            created_at: s.created_at.micros(),
            updated_at: s.updated_at.micros(),
            revision_number: s.revision_number,
        }
    }

    pub(super) fn into_subnet(self) -> Subnet {
        Subnet {
            id: self.id,
            network_id: self.network_id,
            project_id: self.project_id,
            name: self.name,
            description: self.description,
            ip_version: self.ip_version,
            cidr: self.cidr,
            gateway_ip: self.gateway_ip,
            enable_dhcp: self.enable_dhcp,
            dns_nameservers: self.dns_nameservers,
            allocation_pools: self.allocation_pools,
            host_routes: self.host_routes,
            ipv6_address_mode: self.ipv6_address_mode,
            ipv6_ra_mode: self.ipv6_ra_mode,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            revision_number: self.revision_number,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct FixedIpRecord {
    pub subnet_id: String,
    pub ip_address: IpAddr,
}

/// `/ports/<id>`: the port with its fixed IPs and groups in their order; `/ipam/`,
/// `/macs/` and `/sg-ports/` hold the same facts as keys, for uniqueness and lookups.
#[derive(Serialize, Deserialize)]
pub(super) struct PortRecord {
    schema: u32,
    pub id: String,
    pub network_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub mac_address: MacAddr,
    pub admin_state_up: bool,
    pub device_id: String,
    pub device_owner: String,
    pub host_id: String,
    pub port_security_enabled: bool,
    pub allowed_address_pairs: Vec<AddressPair>,
    pub auto_delete: bool,
    pub fixed_ips: Vec<FixedIpRecord>,
    pub security_groups: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub revision_number: i64,
}

impl PortRecord {
    pub(super) fn new(p: &Port) -> PortRecord {
        PortRecord {
            schema: PORT_SCHEMA,
            id: p.id.clone(),
            network_id: p.network_id.clone(),
            project_id: p.project_id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            mac_address: p.mac_address,
            admin_state_up: p.admin_state_up,
            device_id: p.device_id.clone(),
            device_owner: p.device_owner.clone(),
            host_id: p.host_id.clone(),
            port_security_enabled: p.port_security_enabled,
            allowed_address_pairs: p.allowed_address_pairs.clone(),
            auto_delete: p.auto_delete,
            fixed_ips: p
                .fixed_ips
                .iter()
                .map(|f| FixedIpRecord {
                    subnet_id: f.subnet_id.clone(),
                    ip_address: f.ip_address,
                })
                .collect(),
            security_groups: p.security_groups.clone(),
            created_at: p.created_at.micros(),
            updated_at: p.updated_at.micros(),
            revision_number: p.revision_number,
        }
    }

    pub(super) fn into_port(self) -> Port {
        Port {
            id: self.id,
            network_id: self.network_id,
            project_id: self.project_id,
            name: self.name,
            description: self.description,
            mac_address: self.mac_address,
            admin_state_up: self.admin_state_up,
            device_id: self.device_id,
            device_owner: self.device_owner,
            host_id: self.host_id,
            port_security_enabled: self.port_security_enabled,
            allowed_address_pairs: self.allowed_address_pairs,
            auto_delete: self.auto_delete,
            fixed_ips: self
                .fixed_ips
                .into_iter()
                .map(|f| FixedIp {
                    subnet_id: f.subnet_id,
                    ip_address: f.ip_address,
                })
                .collect(),
            security_groups: self.security_groups,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            revision_number: self.revision_number,
        }
    }
}

/// `/ipam/<network>/<ip>`: the port holding an address, and the subnet it is from.
#[derive(PartialEq, Serialize, Deserialize)]
pub(super) struct AddressRecord {
    schema: u32,
    pub port: String,
    pub subnet: String,
}

impl AddressRecord {
    pub(super) fn new(port: &str, subnet: &str) -> AddressRecord {
        AddressRecord {
            schema: ADDRESS_SCHEMA,
            port: port.to_owned(),
            subnet: subnet.to_owned(),
        }
    }
}

/// `/macs/<network>/<mac>`: the port holding a MAC.
#[derive(PartialEq, Serialize, Deserialize)]
pub(super) struct MacRecord {
    schema: u32,
    pub port: String,
}

impl MacRecord {
    pub(super) fn new(port: &str) -> MacRecord {
        MacRecord {
            schema: MAC_SCHEMA,
            port: port.to_owned(),
        }
    }
}

/// `/sg-ports/<group>/<port>`: the key is the fact.
#[derive(Serialize, Deserialize)]
pub(super) struct MemberRecord {
    schema: u32,
}

impl MemberRecord {
    pub(super) fn new() -> MemberRecord {
        MemberRecord {
            schema: MEMBER_SCHEMA,
        }
    }
}

/// `/security-groups/<id>`.
#[derive(Serialize, Deserialize)]
pub(super) struct GroupRecord {
    schema: u32,
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub is_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub revision_number: i64,
}

impl GroupRecord {
    pub(super) fn new(g: &SecurityGroup) -> GroupRecord {
        GroupRecord {
            schema: GROUP_SCHEMA,
            id: g.id.clone(),
            project_id: g.project_id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            is_default: g.is_default,
            created_at: g.created_at.micros(),
            updated_at: g.updated_at.micros(),
            revision_number: g.revision_number,
        }
    }

    pub(super) fn into_group(self) -> SecurityGroup {
        SecurityGroup {
            id: self.id,
            project_id: self.project_id,
            name: self.name,
            description: self.description,
            is_default: self.is_default,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            revision_number: self.revision_number,
        }
    }
}

/// `/sg-rules/<id>`: a rule with its group's id.
#[derive(Serialize, Deserialize)]
pub(super) struct RuleRecord {
    schema: u32,
    pub id: String,
    pub security_group_id: String,
    pub project_id: String,
    pub direction: String,
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<IpNet>,
    pub remote_group_id: Option<String>,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub revision_number: i64,
}

impl RuleRecord {
    pub(super) fn new(r: &SecurityGroupRule) -> RuleRecord {
        RuleRecord {
            schema: RULE_SCHEMA,
            id: r.id.clone(),
            security_group_id: r.security_group_id.clone(),
            project_id: r.project_id.clone(),
            direction: r.direction.clone(),
            ethertype: r.ethertype.clone(),
            protocol: r.protocol.clone(),
            port_range_min: r.port_range_min,
            port_range_max: r.port_range_max,
            remote_ip_prefix: r.remote_ip_prefix,
            remote_group_id: r.remote_group_id.clone(),
            description: r.description.clone(),
            created_at: r.created_at.micros(),
            updated_at: r.updated_at.micros(),
            revision_number: r.revision_number,
        }
    }

    pub(super) fn into_rule(self) -> SecurityGroupRule {
        SecurityGroupRule {
            id: self.id,
            security_group_id: self.security_group_id,
            project_id: self.project_id,
            direction: self.direction,
            ethertype: self.ethertype,
            protocol: self.protocol,
            port_range_min: self.port_range_min,
            port_range_max: self.port_range_max,
            remote_ip_prefix: self.remote_ip_prefix,
            remote_group_id: self.remote_group_id,
            description: self.description,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            revision_number: self.revision_number,
        }
    }
}
