//! The contract every [`NetworkStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests. It drives
//! Neutron's own logic ([`NetworkService`]) over the store, since what matters is what the
//! unit of work guarantees to it: addresses taken once under racing creates, and a failed
//! change leaving nothing behind. SQLite runs it in `storage::networks`; a cluster's store
//! runs the same.

use super::NetworkStore;
use crate::context::RequestContext;
use crate::network::networks::NewNetwork;
use crate::network::ports::{FixedIpRequest, NewPort};
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
    let svc = NetworkService::with_store(store, NetworkSettings::default());
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
