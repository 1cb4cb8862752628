//! The service over a real in-memory database: DHCP port lifecycle, IPAM through ports,
//! default groups, the change counter and the host spec.

use super::groups::{NewGroup, NewRule};
use super::networks::NewNetwork;
use super::ports::{FixedIpRequest, NewPort};
use super::subnets::NewSubnet;
use super::*;
use outpost_netdev::Remote;

fn ctx(project: &str, admin: bool) -> RequestContext {
    RequestContext {
        user_id: "u".into(),
        user_name: "user".into(),
        project_id: Some(project.into()),
        project_name: Some(project.into()),
        roles: if admin {
            vec!["admin".into(), "member".into()]
        } else {
            vec!["member".into()]
        },
    }
}

fn service() -> NetworkService {
    NetworkService::new(Db::open_in_memory().unwrap(), NetworkSettings::default())
}

fn subnet(svc: &NetworkService, c: &RequestContext, net: &str, cidr: &str) -> String {
    svc.create_subnet(
        c,
        NewSubnet {
            network_id: net.into(),
            ip_version: Some(serde_json::json!(if cidr.contains(':') { 6 } else { 4 })),
            cidr: Some(cidr.into()),
            ..NewSubnet::default()
        },
    )
    .unwrap()
    .id
}

#[test]
fn dhcp_port_follows_dhcp_subnets_and_ports_get_addresses() {
    let svc = service();
    let c = ctx("p1", false);
    let mut changes = svc.changes();
    let n = svc.create_network(&c, NewNetwork::default()).unwrap();
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    let s4 = subnet(&svc, &c, &n.id, "10.1.0.0/29");
    let s6 = subnet(&svc, &c, &n.id, "fd00:1::/64");
    assert!(changes.has_changed().unwrap());
    let dhcp: Vec<_> = svc.list_ports(&c).unwrap();
    assert_eq!(dhcp.len(), 1);
    assert_eq!(dhcp[0].device_owner, DHCP_OWNER);
    assert_eq!(dhcp[0].fixed_ips.len(), 2, "{:?}", dhcp[0].fixed_ips);
    assert_eq!(dhcp[0].fixed_ips[0].ip_address.to_string(), "10.1.0.2");

    let p = svc
        .create_device_port(&c, &n.id, "server-1", "box", None)
        .unwrap();
    assert_eq!(p.fixed_ips.len(), 2);
    assert_eq!(p.fixed_ips[0].ip_address.to_string(), "10.1.0.3");
    assert_eq!(p.security_groups.len(), 1);
    // The rest of the /29: .4 .5 .6, then the pool is empty.
    for _ in 0..3 {
        svc.create_port(
            &c,
            NewPort {
                network_id: n.id.clone(),
                fixed_ips: Some(vec![FixedIpRequest {
                    subnet_id: Some(s4.clone()),
                    ip_address: None,
                }]),
                ..NewPort::default()
            },
        )
        .unwrap();
    }
    let err = svc
        .create_port(
            &c,
            NewPort {
                network_id: n.id.clone(),
                ..NewPort::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.neutron_type(), "IpAddressGenerationFailure");

    let spec = svc.host_spec().unwrap();
    assert_eq!(spec.networks.len(), 1);
    let net = &spec.networks[0];
    assert!(net.nat);
    assert_eq!(net.subnets.len(), 2);
    assert_eq!(net.dhcp.as_ref().unwrap().ips.len(), 2);
    // Only the server's port has a device.
    assert_eq!(net.ports.len(), 1);
    assert_eq!(net.ports[0].id, p.id);
    let group = &spec.security_groups[0];
    assert_eq!(group.id, p.security_groups[0]);
    assert_eq!(group.rules.len(), 4);
    assert!(group
        .rules
        .iter()
        .any(|r| r.remote == Remote::Group(group.id.clone())));
    // Members are every port in the group, with or without a device: 2 + 3 addresses.
    assert_eq!(group.members.len(), 5);

    // In use: neither the subnet nor the network may go; after the server, the network may.
    assert_eq!(
        svc.delete_subnet(&c, &s6).unwrap_err().neutron_type(),
        "SubnetInUse"
    );
    assert_eq!(
        svc.delete_network(&c, &n.id).unwrap_err().neutron_type(),
        "NetworkInUse"
    );
    svc.release_device("server-1").unwrap();
    for p in svc.list_ports(&c).unwrap() {
        if p.device_owner != DHCP_OWNER {
            svc.delete_port(&c, &p.id).unwrap();
        }
    }
    svc.delete_subnet(&c, &s6).unwrap();
    assert_eq!(svc.list_ports(&c).unwrap()[0].fixed_ips.len(), 1);
    svc.delete_subnet(&c, &s4).unwrap();
    assert!(
        svc.list_ports(&c).unwrap().is_empty(),
        "the DHCP port goes with the last DHCP subnet"
    );
    svc.delete_network(&c, &n.id).unwrap();
    assert!(svc.host_spec().unwrap().networks.is_empty());
}

#[test]
fn default_group_rules_and_in_use() {
    let svc = service();
    let c = ctx("p1", false);
    let groups = svc.list_security_groups(&c).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].0.name, "default");
    let default_id = groups[0].0.id.clone();
    assert_eq!(
        svc.delete_security_group(&c, &default_id)
            .unwrap_err()
            .neutron_type(),
        "SecurityGroupCannotRemoveDefault"
    );
    let (g, rules) = svc
        .create_security_group(
            &c,
            NewGroup {
                name: Some("web".into()),
                ..NewGroup::default()
            },
        )
        .unwrap();
    assert_eq!(rules.len(), 2);
    let n = svc.create_network(&c, NewNetwork::default()).unwrap();
    let p = svc
        .create_port(
            &c,
            NewPort {
                network_id: n.id.clone(),
                security_groups: Some(vec![g.id.clone()]),
                ..NewPort::default()
            },
        )
        .unwrap();
    assert_eq!(
        svc.delete_security_group(&c, &g.id)
            .unwrap_err()
            .neutron_type(),
        "SecurityGroupInUse"
    );
    svc.set_port_security_groups(&c, &p.id, vec![default_id.clone()])
        .unwrap();
    svc.delete_security_group(&c, &g.id).unwrap();
    // Another project sees none of it.
    let other = ctx("p2", false);
    assert!(svc.get_port(&other, &p.id).is_err());
    assert_eq!(svc.list_security_groups(&other).unwrap().len(), 1);
    assert!(svc.find_security_group(&c, "default").is_ok());
}

#[test]
fn user_ports_bind_and_unbind_and_failures_do_not_notify() {
    let svc = service();
    let c = ctx("p1", false);
    let n = svc.create_network(&c, NewNetwork::default()).unwrap();
    subnet(&svc, &c, &n.id, "10.2.0.0/24");
    let mut changes = svc.changes();
    let before = *changes.borrow_and_update();
    // A refused request commits nothing and tells no one.
    assert!(svc
        .create_port(
            &c,
            NewPort {
                network_id: "nope".into(),
                ..NewPort::default()
            }
        )
        .is_err());
    assert!(!changes.has_changed().unwrap());

    let p = svc
        .create_port(
            &c,
            NewPort {
                network_id: n.id.clone(),
                ..NewPort::default()
            },
        )
        .unwrap();
    let bound = svc.bind_port(&c, &p.id, "server-9", "box").unwrap();
    assert_eq!(bound.device_owner, COMPUTE_OWNER);
    assert_eq!(bound.host_id, "box");
    assert_eq!(svc.device_ports("server-9", "p1").unwrap().len(), 1);
    assert_eq!(
        svc.bind_port(&c, &p.id, "server-10", "box")
            .unwrap_err()
            .neutron_type(),
        "PortInUse"
    );
    assert!(*changes.borrow_and_update() > before);
    assert_eq!(svc.host_spec().unwrap().networks[0].ports.len(), 1);
    // The user's port outlives the server, unbound, with its address.
    svc.release_device("server-9").unwrap();
    let after = svc.get_port(&c, &p.id).unwrap();
    assert_eq!(after.device_id, "");
    assert_eq!(after.host_id, "");
    assert_eq!(after.fixed_ips, p.fixed_ips);
    assert!(svc.host_spec().unwrap().networks[0].ports.is_empty());
}

/// A network of `owner` shared with every project, with one IPv4 subnet.
fn shared_network(svc: &NetworkService, owner: &RequestContext) -> Network {
    let n = svc
        .create_network(
            owner,
            NewNetwork {
                shared: Some(true),
                ..NewNetwork::default()
            },
        )
        .unwrap();
    subnet(svc, owner, &n.id, "10.7.0.0/24");
    n
}

#[test]
fn a_server_gets_only_its_own_projects_ports() {
    let svc = service();
    let a = ctx("pa", false);
    let b = ctx("pb", false);
    let admin = ctx("admin", true);
    let shared = shared_network(&svc, &admin);
    // Project A labels its port with B's server; B's own port is bound by the compute side.
    let planted = svc
        .create_port(
            &a,
            NewPort {
                network_id: shared.id.clone(),
                device_id: Some("server-b".into()),
                ..NewPort::default()
            },
        )
        .unwrap();
    let own = svc
        .create_device_port(&b, &shared.id, "server-b", "box", None)
        .unwrap();
    let ports = svc.device_ports("server-b", "pb").unwrap();
    assert_eq!(
        ports.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        [own.id.as_str()],
        "A's port {} must not reach B's server",
        planted.id
    );
    let a_on_shared = svc
        .create_port(
            &a,
            NewPort {
                network_id: shared.id.clone(),
                ..NewPort::default()
            },
        )
        .unwrap();
    // Even the admin's context (which sees every port) does not make it B's.
    let e = svc
        .bind_port(&ctx("pb", true), &a_on_shared.id, "server-b", "box")
        .unwrap_err();
    assert_eq!(e.neutron_type(), "PortNotUsable");
    assert!(!e.to_string().contains("pa"), "{e}");
    // And releasing B's server leaves A's port alone.
    svc.release_device("server-b").unwrap();
    assert!(svc.get_port(&a, &a_on_shared.id).is_ok());
}

/// `svc` on a fresh database whose project `p1` has `limits` set.
fn service_with_limits(limits: &[(&str, i64)]) -> NetworkService {
    use crate::quota::QuotaStore;
    let db = Db::open_in_memory().unwrap();
    let set = limits.iter().map(|&(n, l)| (n.to_owned(), l)).collect();
    db.set_quota_overrides("p1", &set).unwrap();
    NetworkService::new(db, NetworkSettings::default())
}

fn over_quota(r: Result<impl std::fmt::Debug, NetworkError>, resource: &str) {
    match r {
        Err(NetworkError::Conflict { kind, message }) => {
            assert_eq!(kind, "OverQuota");
            assert_eq!(
                message,
                format!("Quota exceeded for resources: ['{resource}'].")
            );
        }
        other => panic!("{resource} over quota: {other:?}"),
    }
}

#[test]
fn each_neutron_create_stops_at_its_projects_quota() {
    let svc = service_with_limits(&[
        ("network", 1),
        ("subnet", 1),
        ("port", 2),
        ("security_group", 2),
        ("security_group_rule", 8),
    ]);
    let c = ctx("p1", false);
    let n = svc.create_network(&c, NewNetwork::default()).unwrap();
    over_quota(svc.create_network(&c, NewNetwork::default()), "network");
    // Another project has its own (default) quota.
    svc.create_network(&ctx("p2", false), NewNetwork::default())
        .unwrap();
    subnet(&svc, &c, &n.id, "10.1.0.0/24");
    over_quota(
        svc.create_subnet(
            &c,
            NewSubnet {
                network_id: n.id.clone(),
                ip_version: Some(serde_json::json!(6)),
                cidr: Some("fd00:1::/64".into()),
                ..NewSubnet::default()
            },
        ),
        "subnet",
    );
    // The DHCP port counts: one more port fits in 2.
    let port = || NewPort {
        network_id: n.id.clone(),
        ..NewPort::default()
    };
    svc.create_port(&c, port()).unwrap();
    over_quota(svc.create_port(&c, port()), "port");
    // The default group counts: one more group fits. Its 4 rules and the new group's 2 egress
    // rules count too, as in Neutron: 2 more rules fit.
    let g = svc
        .create_security_group(&c, NewGroup::default())
        .unwrap()
        .0;
    over_quota(
        svc.create_security_group(&c, NewGroup::default()),
        "security_group",
    );
    let rule = |port: u16| NewRule {
        security_group_id: g.id.clone(),
        direction: Some("ingress".into()),
        protocol: Some(serde_json::json!("tcp")),
        port_range_min: Some(serde_json::json!(port)),
        port_range_max: Some(serde_json::json!(port)),
        ..NewRule::default()
    };
    let held = svc.quota_usage("p1").unwrap()["security_group_rule"];
    assert_eq!(held, 6);
    for p in 0..2 {
        svc.create_security_group_rule(&c, rule(22 + p as u16))
            .unwrap();
    }
    over_quota(
        svc.create_security_group_rule(&c, rule(80)),
        "security_group_rule",
    );
    let usage = svc.quota_usage("p1").unwrap();
    assert_eq!(
        (
            usage["network"],
            usage["subnet"],
            usage["port"],
            usage["security_group"]
        ),
        (1, 1, 2, 2)
    );
    assert_eq!(usage["security_group_rule"], 8);
}
