//! Neutron v2.0's JSON for networks, subnets, ports, security groups and rules: every field
//! the openstack CLI and openstacksdk read, `tenant_id` beside `project_id`.

use crate::network::{Network, Port, SecurityGroup, SecurityGroupRule, Subnet, DHCP_OWNER};
use serde_json::{json, Value};

/// Neutron's one availability zone name, as devstack has it.
const ZONE: &str = "nova";

pub fn network(n: &Network, subnet_ids: &[String]) -> Value {
    json!({
        "id": n.id,
        "name": n.name,
        "description": n.description,
        "project_id": n.project_id,
        "tenant_id": n.project_id,
        "admin_state_up": n.admin_state_up,
        "status": "ACTIVE",
        "subnets": subnet_ids,
        "shared": n.shared,
        "mtu": n.mtu,
        "port_security_enabled": n.port_security_enabled,
        "router:external": false,
        "availability_zone_hints": [],
        "availability_zones": [ZONE],
        "ipv4_address_scope": null,
        "ipv6_address_scope": null,
        "l2_adjacency": true,
        "is_default": false,
        "qos_policy_id": null,
        "tags": [],
        "created_at": n.created_at.to_rfc3339(),
        "updated_at": n.updated_at.to_rfc3339(),
        "revision_number": n.revision_number,
    })
}

pub fn subnet(s: &Subnet) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "network_id": s.network_id,
        "project_id": s.project_id,
        "tenant_id": s.project_id,
        "ip_version": s.ip_version,
        "cidr": s.cidr.to_string(),
        "gateway_ip": s.gateway_ip.map(|g| g.to_string()),
        "allocation_pools": s.allocation_pools.iter()
            .map(|p| json!({"start": p.start.to_string(), "end": p.end.to_string()}))
            .collect::<Vec<_>>(),
        "dns_nameservers": s.dns_nameservers.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "host_routes": s.host_routes.iter()
            .map(|r| json!({"destination": r.destination.to_string(), "nexthop": r.nexthop.to_string()}))
            .collect::<Vec<_>>(),
        "enable_dhcp": s.enable_dhcp,
        "ipv6_address_mode": s.ipv6_address_mode,
        "ipv6_ra_mode": s.ipv6_ra_mode,
        "subnetpool_id": null,
        "segment_id": null,
        "service_types": [],
        "tags": [],
        "created_at": s.created_at.to_rfc3339(),
        "updated_at": s.updated_at.to_rfc3339(),
        "revision_number": s.revision_number,
    })
}

pub fn port(p: &Port) -> Value {
    let bound = !p.host_id.is_empty();
    // ACTIVE once bound to this box (or the DHCP port, which the box always serves).
    let status = if p.admin_state_up && (bound || p.device_owner == DHCP_OWNER) {
        "ACTIVE"
    } else {
        "DOWN"
    };
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "network_id": p.network_id,
        "project_id": p.project_id,
        "tenant_id": p.project_id,
        "mac_address": p.mac_address.to_string(),
        "fixed_ips": p.fixed_ips.iter()
            .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address.to_string()}))
            .collect::<Vec<_>>(),
        "security_groups": p.security_groups,
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "admin_state_up": p.admin_state_up,
        "status": status,
        "port_security_enabled": p.port_security_enabled,
        "allowed_address_pairs": p.allowed_address_pairs.iter()
            .map(|a| json!({"ip_address": pair_address(&a.ip_address), "mac_address": a.mac_address.to_string()}))
            .collect::<Vec<_>>(),
        "binding:host_id": p.host_id,
        "binding:vif_type": if bound { "tap" } else { "unbound" },
        "binding:vnic_type": "normal",
        "binding:vif_details": {},
        "binding:profile": {},
        "extra_dhcp_opts": [],
        "qos_policy_id": null,
        "propagate_uplink_status": false,
        "tags": [],
        "created_at": p.created_at.to_rfc3339(),
        "updated_at": p.updated_at.to_rfc3339(),
        "revision_number": p.revision_number,
    })
}

pub fn rule(r: &SecurityGroupRule, default_group: bool) -> Value {
    json!({
        "id": r.id,
        "security_group_id": r.security_group_id,
        "project_id": r.project_id,
        "tenant_id": r.project_id,
        "direction": r.direction,
        "ethertype": r.ethertype,
        "protocol": r.protocol,
        "port_range_min": r.port_range_min,
        "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix.map(|p| p.to_string()),
        "normalized_cidr": r.remote_ip_prefix.map(|p| p.trunc().to_string()),
        "remote_group_id": r.remote_group_id,
        "remote_address_group_id": null,
        "belongs_to_default_sg": default_group,
        "description": r.description,
        "created_at": r.created_at.to_rfc3339(),
        "updated_at": r.updated_at.to_rfc3339(),
        "revision_number": r.revision_number,
    })
}

pub fn group(g: &SecurityGroup, rules: &[SecurityGroupRule]) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "project_id": g.project_id,
        "tenant_id": g.project_id,
        "security_group_rules": rules.iter().map(|r| rule(r, g.is_default)).collect::<Vec<_>>(),
        "stateful": true,
        "shared": false,
        "tags": [],
        "created_at": g.created_at.to_rfc3339(),
        "updated_at": g.updated_at.to_rfc3339(),
        "revision_number": g.revision_number,
    })
}

/// An allowed address pair's address as Neutron echoes it: one address is written without a
/// prefix (`10.0.0.5`, not `10.0.0.5/32`), a range as a CIDR.
fn pair_address(net: &ipnet::IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}
