//! The contract every [`NetworkStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests. It drives
//! Neutron's own logic ([`NetworkService`]) over the store, since what matters is what the
//! unit of work guarantees to it: addresses taken once under racing creates, one default
//! group per project, a failed change leaving nothing behind, and what goes with a record
//! (a port's addresses and MAC, a group's rules) or keeps it (a port on its network, subnet
//! or group). SQLite runs it in `storage::networks`; a cluster's store
//! runs the same.

use super::NetworkStore;
use crate::context::RequestContext;
use crate::network::groups::{NewGroup, NewRule};
use crate::network::networks::NewNetwork;
use crate::network::ports::{FixedIpRequest, NewPort, PortUpdate};
use crate::network::subnets::NewSubnet;
use crate::network::{NetworkError, NetworkService, NetworkSettings};
use std::sync::Arc;

fn member() -> RequestContext {
    RequestContext {
        user_id: "u".into(),
        user_name: "user".into(),
        project_id: Some("p1".into()),
        project_name: Some("p1".into()),
        roles: vec!["member".into()],
    }
}

/// A service over `store` with one network and one IPv4 subnet; (network id, subnet id).
fn network(store: Arc<dyn NetworkStore>) -> (NetworkService, String, String) {
    let svc = NetworkService::with_store(
        store,
        crate::quota::Quotas::in_memory(),
        NetworkSettings::default(),
    );
    let c = member();
    let n = svc.create_network(&c, NewNetwork::default()).unwrap();
    let s = svc
        .create_subnet(
            &c,
            NewSubnet {
                network_id: n.id.clone(),
                ip_version: Some(serde_json::json!(4)),
                cidr: Some("10.9.0.0/24".into()),
                ..NewSubnet::default()
            },
        )
        .unwrap();
    (svc, n.id, s.id)
}

fn port_at(network_id: &str, subnet_id: &str, ip: Option<&str>) -> NewPort {
    NewPort {
        network_id: network_id.to_owned(),
        fixed_ips: Some(vec![FixedIpRequest {
            subnet_id: Some(subnet_id.to_owned()),
            ip_address: ip.map(str::to_owned),
        }]),
        ..NewPort::default()
    }
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: NetworkStore + 'static>(fresh: impl Fn() -> S) {
    an_address_is_taken_once_under_racing_creates(Arc::new(fresh()));
    racing_allocations_get_different_addresses(Arc::new(fresh()));
    a_failed_change_writes_nothing(Arc::new(fresh()));
    racing_first_requests_make_one_default_group(Arc::new(fresh()));
    addresses_and_macs_go_back_with_their_port(Arc::new(fresh()));
    a_network_subnet_or_group_in_use_stays(Arc::new(fresh()));
    a_group_goes_with_its_rules_and_rules_named_after_it(Arc::new(fresh()));
}

fn conflict_kind(r: Result<(), NetworkError>) -> &'static str {
    match r {
        Err(NetworkError::Conflict { kind, .. }) => kind,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn ips(p: &crate::network::Port) -> Vec<String> {
    p.fixed_ips
        .iter()
        .map(|f| f.ip_address.to_string())
        .collect()
}

fn an_address_is_taken_once_under_racing_creates(store: Arc<dyn NetworkStore>) {
    let (svc, net, sub) = network(store);
    let c = member();
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| svc.create_port(&c, port_at(&net, &sub, Some("10.9.0.50")))))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, NetworkError::Conflict { .. }), "{r:?}");
    }
    let holders: Vec<_> = svc
        .list_ports(&c)
        .unwrap()
        .into_iter()
        .filter(|p| {
            p.fixed_ips
                .iter()
                .any(|f| f.ip_address.to_string() == "10.9.0.50")
        })
        .collect();
    assert_eq!(holders.len(), 1);
}

fn racing_allocations_get_different_addresses(store: Arc<dyn NetworkStore>) {
    let (svc, net, sub) = network(store);
    let c = member();
    let ports: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| svc.create_port(&c, port_at(&net, &sub, None)).unwrap()))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut ips: Vec<_> = ports
        .iter()
        .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address))
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6, "{ips:?}");
    let mut macs: Vec<_> = ports.iter().map(|p| p.mac_address).collect();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 6);
}

fn a_failed_change_writes_nothing(store: Arc<dyn NetworkStore>) {
    let (svc, net, sub) = network(store.clone());
    let c = member();
    let before = svc.list_ports(&c).unwrap();
    // The default security group is made inside the port's unit of work; the port fails
    // (an address outside the subnet), so neither may be left.
    let groups_before = svc.list_security_groups(&c).unwrap().len();
    assert!(svc
        .create_port(&c, port_at(&net, &sub, Some("192.0.2.1")))
        .is_err());
    assert_eq!(svc.list_ports(&c).unwrap(), before);
    assert_eq!(svc.list_security_groups(&c).unwrap().len(), groups_before);
    // A unit of work that fails after writing leaves nothing either.
    let failed = store.write_networks(&mut |tx| {
        let mut p = tx
            .list_ports()?
            .into_iter()
            .next()
            .ok_or_else(|| NetworkError::Internal("no port to change".into()))?;
        p.name = "changed".into();
        tx.update_port(&p)?;
        Err(NetworkError::Internal("refused after writing".into()))
    });
    assert!(failed.is_err());
    assert_eq!(svc.list_ports(&c).unwrap(), before);
}

fn racing_first_requests_make_one_default_group(store: Arc<dyn NetworkStore>) {
    let svc = NetworkService::with_store(
        store,
        crate::quota::Quotas::in_memory(),
        NetworkSettings::default(),
    );
    let c = member();
    std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| svc.list_security_groups(&c).unwrap()))
            .collect();
        for r in racers {
            r.join().unwrap();
        }
    });
    let groups = svc.list_security_groups(&c).unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(groups[0].0.is_default);
    // Neutron's four default rules, once.
    assert_eq!(groups[0].1.len(), 4, "{:?}", groups[0].1);
}

fn addresses_and_macs_go_back_with_their_port(store: Arc<dyn NetworkStore>) {
    let (svc, net, sub) = network(store);
    let c = member();
    let first = svc
        .create_port(&c, port_at(&net, &sub, Some("10.9.0.50")))
        .unwrap();
    // Moving the port to .60 frees .50 and takes .60.
    let moved = svc
        .update_port(
            &c,
            &first.id,
            PortUpdate {
                fixed_ips: Some(vec![FixedIpRequest {
                    subnet_id: Some(sub.clone()),
                    ip_address: Some("10.9.0.60".into()),
                }]),
                ..PortUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(ips(&moved), ["10.9.0.60"]);
    assert_eq!(moved.revision_number, first.revision_number + 1);
    let second = svc
        .create_port(&c, port_at(&net, &sub, Some("10.9.0.50")))
        .unwrap();
    assert_eq!(ips(&second), ["10.9.0.50"]);
    assert_eq!(
        conflict_kind(
            svc.create_port(&c, port_at(&net, &sub, Some("10.9.0.60")))
                .map(drop)
        ),
        "IpAddressAlreadyAllocated"
    );
    // A MAC is the network's once; deleting the port gives back its MAC and address.
    let same_mac = |ip: &str| NewPort {
        mac_address: Some(moved.mac_address.to_string()),
        ..port_at(&net, &sub, Some(ip))
    };
    assert_eq!(
        conflict_kind(svc.create_port(&c, same_mac("10.9.0.70")).map(drop)),
        "MacAddressInUse"
    );
    svc.delete_port(&c, &first.id).unwrap();
    let third = svc.create_port(&c, same_mac("10.9.0.60")).unwrap();
    assert_eq!(third.mac_address, moved.mac_address);
    assert_eq!(ips(&third), ["10.9.0.60"]);
    assert!(svc.get_port(&c, &first.id).is_err());
}

fn a_network_subnet_or_group_in_use_stays(store: Arc<dyn NetworkStore>) {
    let (svc, net, sub) = network(store);
    let c = member();
    let (group, _) = svc
        .create_security_group(
            &c,
            NewGroup {
                name: Some("web".into()),
                ..NewGroup::default()
            },
        )
        .unwrap();
    let port = svc
        .create_port(
            &c,
            NewPort {
                security_groups: Some(vec![group.id.clone()]),
                ..port_at(&net, &sub, None)
            },
        )
        .unwrap();
    assert_eq!(conflict_kind(svc.delete_network(&c, &net)), "NetworkInUse");
    assert_eq!(conflict_kind(svc.delete_subnet(&c, &sub)), "SubnetInUse");
    assert_eq!(
        conflict_kind(svc.delete_security_group(&c, &group.id)),
        "SecurityGroupInUse"
    );
    svc.delete_port(&c, &port.id).unwrap();
    svc.delete_security_group(&c, &group.id).unwrap();
    // With its last user port gone, the network goes with its subnet and DHCP port.
    svc.delete_network(&c, &net).unwrap();
    assert!(svc.list_ports(&c).unwrap().is_empty());
    assert!(svc.list_networks(&c).unwrap().is_empty());
    assert!(svc.subnet_ids(&net).unwrap().is_empty());
}

fn a_group_goes_with_its_rules_and_rules_named_after_it(store: Arc<dyn NetworkStore>) {
    let svc = NetworkService::with_store(
        store,
        crate::quota::Quotas::in_memory(),
        NetworkSettings::default(),
    );
    let c = member();
    let (group, rules) = svc
        .create_security_group(
            &c,
            NewGroup {
                name: Some("db".into()),
                ..NewGroup::default()
            },
        )
        .unwrap();
    assert_eq!(rules.len(), 2, "Neutron's two egress rules: {rules:?}");
    let default = svc
        .list_security_groups(&c)
        .unwrap()
        .into_iter()
        .find(|(g, _)| g.is_default)
        .unwrap()
        .0;
    // A rule of the default group admitting the new group's members.
    let rule = svc
        .create_security_group_rule(
            &c,
            NewRule {
                security_group_id: default.id.clone(),
                direction: Some("ingress".into()),
                remote_group_id: Some(group.id.clone()),
                ..NewRule::default()
            },
        )
        .unwrap();
    // A rule is a change of its group.
    let (after, _) = svc.get_security_group(&c, &default.id).unwrap();
    assert_eq!(after.revision_number, default.revision_number + 1);
    svc.delete_security_group(&c, &group.id).unwrap();
    let left = svc.list_security_group_rules(&c).unwrap();
    assert!(
        left.iter().all(|r| r.security_group_id != group.id),
        "{left:?}"
    );
    assert!(left.iter().all(|r| r.id != rule.id), "{left:?}");
    assert_eq!(
        left.len(),
        4,
        "the default group's own rules stay: {left:?}"
    );
}
