//! Neutron v2.0 over the real daemon: resource shapes, list filters and `fields=`, IPAM
//! (requested and allocated addresses, uniqueness under concurrent creates, exhaustion,
//! reuse), the DHCP port's lifecycle, in-use refusals, security groups and rule validation,
//! project isolation and shared networks, and that the host spec built from the daemon's
//! database shows what the API did.

mod common;

use common::{Api, Daemon, Text};
use outpost_control::client::ApiResponse;
use outpost_control::storage::Db;
use serde_json::{json, Value};
use std::collections::HashSet;

const NET: &str = "/network/v2.0";

/// A member of a new project: its client, project id and token.
fn member(d: &Daemon, name: &str) -> (Api, String, String) {
    let (pid, _) = d.make_member(name, "pw-123456", &format!("{name}-project"));
    let token = d.login(name, "pw-123456", Some(&format!("{name}-project")));
    (d.tcp(Some(&token)), pid, token)
}

/// Asserts a Neutron error of `status` and `kind`.
fn neutron_error(r: &ApiResponse, status: u16, kind: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    let b = r.body_json();
    assert_eq!(b["NeutronError"]["type"], kind, "{b}");
    assert!(b["NeutronError"]["message"].is_string(), "{b}");
    assert_eq!(b["NeutronError"]["detail"], "", "{b}");
}

fn created(r: ApiResponse, key: &str) -> Value {
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    r.body_json()[key].clone()
}

fn ok(r: ApiResponse) -> Value {
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn ips(port: &Value) -> Vec<String> {
    port["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["ip_address"].as_str().unwrap().to_owned())
        .collect()
}

fn port_on(api: &Api, net: &str, extra: Value) -> ApiResponse {
    let mut body = json!({"network_id": net});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    api.post(&format!("{NET}/ports"), &json!({ "port": body }))
}

fn dhcp_ports(api: &Api, net: &str) -> Vec<Value> {
    ok(api.get(&format!(
        "{NET}/ports?network_id={net}&device_owner=network:dhcp"
    )))["ports"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn networks_subnets_ports_ipam_and_dhcp() {
    let d = Daemon::start();
    let (api, project, token) = member(&d, "alice");

    // Network shape.
    let net = created(
        api.post(
            &format!("{NET}/networks"),
            &json!({"network": {"name": "private"}}),
        ),
        "network",
    );
    let nid = id(&net);
    assert_eq!(net["project_id"], project);
    assert_eq!(net["tenant_id"], project);
    assert_eq!(net["mtu"], 1500);
    assert_eq!(net["status"], "ACTIVE");
    assert_eq!(net["shared"], false);
    assert_eq!(net["router:external"], false);
    assert_eq!(net["subnets"], json!([]));
    assert_eq!(net["tags"], json!([]));
    assert_eq!(net["revision_number"], 1);
    assert!(net["created_at"].as_str().unwrap().ends_with('Z'));
    neutron_error(
        &api.post(
            &format!("{NET}/networks"),
            &json!({"network": {"bogus": 1}}),
        ),
        400,
        "InvalidInput",
    );
    neutron_error(
        &api.post(
            &format!("{NET}/networks"),
            &json!({"network": {"shared": true}}),
        ),
        403,
        "PolicyNotAuthorized",
    );

    // Subnet defaults: gateway first host, pool the rest.
    let sub = created(
        api.post(
            &format!("{NET}/subnets"),
            &json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.20.0.0/27",
                    "dns_nameservers": ["192.0.2.53"]}}),
        ),
        "subnet",
    );
    let sid = id(&sub);
    assert_eq!(sub["gateway_ip"], "10.20.0.1");
    assert_eq!(
        sub["allocation_pools"],
        json!([{"start": "10.20.0.2", "end": "10.20.0.30"}])
    );
    assert_eq!(sub["host_routes"], json!([]));
    assert_eq!(sub["enable_dhcp"], true);
    assert_eq!(sub["tenant_id"], project);
    for (body, kind) in [
        (
            json!({"network_id": nid, "ip_version": 4, "cidr": "10.20.0.5/27"}),
            "InvalidInput",
        ),
        (
            json!({"network_id": nid, "ip_version": 6, "cidr": "10.30.0.0/24"}),
            "InvalidInput",
        ),
        (
            json!({"network_id": nid, "cidr": "10.30.0.0/24"}),
            "InvalidInput",
        ),
        (
            json!({"network_id": nid, "ip_version": 4, "cidr": "10.20.0.0/28"}),
            "InvalidInput",
        ),
    ] {
        neutron_error(
            &api.post(&format!("{NET}/subnets"), &json!({"subnet": body})),
            400,
            kind,
        );
    }
    neutron_error(
        &api.post(
            &format!("{NET}/subnets"),
            &json!({"subnet": {"network_id": "no-such-net", "ip_version": 4, "cidr": "10.9.0.0/24"}}),
        ),
        404,
        "NetworkNotFound",
    );
    let shown = ok(api.get(&format!("{NET}/networks/{nid}")));
    assert_eq!(shown["network"]["subnets"], json!([sid]));

    // The DHCP port took the first pool address.
    let dhcp = dhcp_ports(&api, &nid);
    assert_eq!(dhcp.len(), 1);
    assert_eq!(ips(&dhcp[0]), ["10.20.0.2"]);
    assert_eq!(dhcp[0]["status"], "ACTIVE");

    // Requested addresses.
    let p10 = created(
        port_on(
            &api,
            &nid,
            json!({"name": "ten", "fixed_ips": [{"ip_address": "10.20.0.10"}]}),
        ),
        "port",
    );
    assert_eq!(
        p10["fixed_ips"],
        json!([{"subnet_id": sid, "ip_address": "10.20.0.10"}])
    );
    assert!(p10["mac_address"]
        .as_str()
        .unwrap()
        .starts_with("fa:16:3e:"));
    assert_eq!(p10["tenant_id"], project);
    assert_eq!(p10["status"], "DOWN");
    assert_eq!(p10["binding:host_id"], "");
    assert_eq!(p10["port_security_enabled"], true);
    assert_eq!(p10["security_groups"].as_array().unwrap().len(), 1);
    for (ip, status, kind) in [
        ("10.20.0.10", 409, "IpAddressAlreadyAllocated"),
        ("10.20.0.2", 409, "IpAddressAlreadyAllocated"),
        ("10.20.0.1", 409, "IpAddressAlreadyAllocated"),
        ("10.20.0.31", 400, "InvalidInput"),
        ("10.99.0.5", 400, "InvalidInput"),
    ] {
        neutron_error(
            &port_on(
                &api,
                &nid,
                json!({"fixed_ips": [{"subnet_id": sid, "ip_address": ip}]}),
            ),
            status,
            kind,
        );
    }
    neutron_error(
        &port_on(&api, &nid, json!({"mac_address": p10["mac_address"]})),
        409,
        "MacAddressInUse",
    );
    // Changing a port's fixed IPs hands the old address back.
    let put_ips = |ip: &str| {
        api.put(
            &format!("{NET}/ports/{}", id(&p10)),
            Some(&json!({"port": {"fixed_ips": [{"ip_address": ip}]}})),
        )
    };
    assert_eq!(ips(&ok(put_ips("10.20.0.11"))["port"]), ["10.20.0.11"]);
    let interim = created(
        port_on(
            &api,
            &nid,
            json!({"fixed_ips": [{"ip_address": "10.20.0.10"}]}),
        ),
        "port",
    );
    neutron_error(&put_ips("10.20.0.10"), 409, "IpAddressAlreadyAllocated");
    assert_eq!(
        api.delete(&format!("{NET}/ports/{}", id(&interim)))
            .status
            .as_u16(),
        204
    );
    assert_eq!(ips(&ok(put_ips("10.20.0.10"))["port"]), ["10.20.0.10"]);

    // Filters and fields.
    let by_ip = ok(api.get(&format!("{NET}/ports?fixed_ips=ip_address%3D10.20.0.10")));
    assert_eq!(by_ip["ports"].as_array().unwrap().len(), 1);
    assert_eq!(by_ip["ports"][0]["id"], p10["id"]);
    let by_mac = ok(api.get(&format!(
        "{NET}/ports?mac_address={}",
        p10["mac_address"].as_str().unwrap()
    )));
    assert_eq!(by_mac["ports"][0]["id"], p10["id"]);
    let by_name = ok(api.get(&format!("{NET}/ports?name=ten&fields=id&fields=name")));
    assert_eq!(by_name["ports"], json!([{"id": p10["id"], "name": "ten"}]));
    let by_subnet = ok(api.get(&format!("{NET}/ports?fixed_ips=subnet_id%3D{sid}")));
    assert_eq!(by_subnet["ports"].as_array().unwrap().len(), 2);
    assert_eq!(
        ok(api.get(&format!("{NET}/networks?name=private")))["networks"][0]["id"],
        nid
    );
    assert_eq!(
        ok(api.get(&format!("{NET}/networks?name=nope")))["networks"],
        json!([])
    );
    assert_eq!(
        ok(api.get(&format!("{NET}/subnets?network_id={nid}")))["subnets"][0]["id"],
        sid
    );
    assert_eq!(
        ok(api.get(&format!("{NET}/networks?tenant_id={project}&fields=id")))["networks"],
        json!([{"id": nid}])
    );
    neutron_error(
        &api.get(&format!("{NET}/ports/no-such-port")),
        404,
        "PortNotFound",
    );
    neutron_error(
        &api.get(&format!("{NET}/networks/no-such-net")),
        404,
        "NetworkNotFound",
    );

    // 20 concurrent creates on the /27: all succeed, all distinct.
    let addrs: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let api = d.tcp(Some(&token));
                let nid = nid.clone();
                s.spawn(move || {
                    let p = created(port_on(&api, &nid, json!({})), "port");
                    (
                        ips(&p)[0].clone(),
                        p["mac_address"].as_str().unwrap().to_owned(),
                    )
                })
            })
            .collect();
        let got: Vec<(String, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let macs: HashSet<&String> = got.iter().map(|(_, m)| m).collect();
        assert_eq!(macs.len(), 20);
        got.into_iter().map(|(ip, _)| ip).collect()
    });
    let distinct: HashSet<&String> = addrs.iter().collect();
    assert_eq!(distinct.len(), 20, "{addrs:?}");
    assert!(!distinct.contains(&"10.20.0.10".to_owned()));
    assert!(!distinct.contains(&"10.20.0.2".to_owned()));
    // 29 in the pool: DHCP, .10 and 20 taken, 7 left; then the pool is exhausted.
    let mut last = None;
    for _ in 0..7 {
        last = Some(created(port_on(&api, &nid, json!({})), "port"));
    }
    neutron_error(
        &port_on(&api, &nid, json!({})),
        409,
        "IpAddressGenerationFailure",
    );
    // A deleted port's address is free again.
    let last = last.unwrap();
    let freed = ips(&last)[0].clone();
    assert_eq!(
        api.delete(&format!("{NET}/ports/{}", id(&last)))
            .status
            .as_u16(),
        204
    );
    let again = created(port_on(&api, &nid, json!({})), "port");
    assert_eq!(ips(&again), [freed]);

    // A server's port, as the compute side binds it: in the host spec with its group. Its
    // binding is the admin's to set (Neutron's `create_port:binding:host_id`).
    let admin = d.unix();
    let server_port = created(
        port_on(
            &admin,
            &nid,
            json!({"fixed_ips": [], "device_id": "server-1", "device_owner": "compute:nova",
                   "binding:host_id": "box"}),
        ),
        "port",
    );
    assert_eq!(server_port["status"], "ACTIVE");
    let compute = ok(admin.put(
        &format!("{NET}/ports/{}", id(&p10)),
        Some(
            &json!({"port": {"device_id": "server-2", "device_owner": "compute:nova",
                             "binding:host_id": "box", "name": "renamed"}}),
        ),
    ))["port"]
        .clone();
    assert_eq!(compute["revision_number"], 4);
    let db = Db::open(&d.state_dir().join("outpost.db")).unwrap();
    let spec = outpost_control::network::host_spec(&db, true).unwrap();
    assert_eq!(spec.networks.len(), 1);
    let n = &spec.networks[0];
    assert_eq!(n.id, nid);
    assert_eq!(n.mtu, 1500);
    assert_eq!(n.subnets[0].cidr.to_string(), "10.20.0.0/27");
    assert_eq!(n.subnets[0].gateway.unwrap().to_string(), "10.20.0.1");
    assert_eq!(n.subnets[0].dns_nameservers[0].to_string(), "192.0.2.53");
    assert_eq!(n.dhcp.as_ref().unwrap().ips[0].to_string(), "10.20.0.2");
    let mut spec_ports: Vec<&str> = n.ports.iter().map(|p| p.id.as_str()).collect();
    spec_ports.sort_unstable();
    let mut want = vec![id(&server_port), id(&p10)];
    want.sort_unstable();
    assert_eq!(spec_ports, want);
    let p10_spec = n.ports.iter().find(|p| p.id == id(&p10)).unwrap();
    assert_eq!(p10_spec.ips[0].to_string(), "10.20.0.10");
    assert_eq!(
        p10_spec.mac.to_string(),
        p10["mac_address"].as_str().unwrap()
    );
    let group = &spec.security_groups[0];
    assert_eq!(group.id, p10_spec.security_groups[0]);
    assert_eq!(group.rules.len(), 4);
    // Members: every port in the default group (29 addresses less the DHCP port's).
    assert_eq!(group.members.len(), 28);

    // In use: the network and the subnet stay.
    neutron_error(
        &api.delete(&format!("{NET}/networks/{nid}")),
        409,
        "NetworkInUse",
    );
    neutron_error(
        &api.delete(&format!("{NET}/subnets/{sid}")),
        409,
        "SubnetInUse",
    );
    for p in ok(api.get(&format!("{NET}/ports?network_id={nid}")))["ports"]
        .as_array()
        .unwrap()
    {
        if p["device_owner"] != "network:dhcp" {
            assert_eq!(
                api.delete(&format!("{NET}/ports/{}", id(p)))
                    .status
                    .as_u16(),
                204
            );
        }
    }
    // The DHCP port goes with the last DHCP subnet and comes back with DHCP.
    assert_eq!(
        api.delete(&format!("{NET}/subnets/{sid}")).status.as_u16(),
        204
    );
    assert!(dhcp_ports(&api, &nid).is_empty());
    let quiet = created(
        api.post(
            &format!("{NET}/subnets"),
            &json!({"subnet": {"network_id": nid, "ip_version": 6, "cidr": "fd00:20::/64",
                    "enable_dhcp": false, "gateway_ip": null}}),
        ),
        "subnet",
    );
    assert_eq!(quiet["gateway_ip"], Value::Null);
    assert!(dhcp_ports(&api, &nid).is_empty());
    ok(api.put(
        &format!("{NET}/subnets/{}", id(&quiet)),
        Some(&json!({"subnet": {"enable_dhcp": true}})),
    ));
    let dhcp = dhcp_ports(&api, &nid);
    assert_eq!(ips(&dhcp[0]), ["fd00:20::1"]);
    assert_eq!(
        api.delete(&format!("{NET}/networks/{nid}")).status.as_u16(),
        204
    );
    assert_eq!(ok(api.get(&format!("{NET}/ports")))["ports"], json!([]));
    assert!(outpost_control::network::host_spec(&db, true)
        .unwrap()
        .networks
        .is_empty());
}

#[test]
fn security_groups_rules_and_project_isolation() {
    let d = Daemon::start();
    let (alice, alice_project, _) = member(&d, "alice");
    let (bob, _, _) = member(&d, "bob");

    // The default group, made on first list, with Neutron's four rules.
    let groups =
        ok(alice.get(&format!("{NET}/security-groups?name=default")))["security_groups"].clone();
    assert_eq!(groups.as_array().unwrap().len(), 1);
    let default = groups[0].clone();
    let did = id(&default);
    assert_eq!(default["tenant_id"], alice_project);
    let rules = default["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    for ethertype in ["IPv4", "IPv6"] {
        assert!(rules.iter().any(|r| r["direction"] == "egress"
            && r["ethertype"] == ethertype
            && r["remote_group_id"].is_null()
            && r["protocol"].is_null()));
        assert!(rules.iter().any(|r| r["direction"] == "ingress"
            && r["ethertype"] == ethertype
            && r["remote_group_id"] == did.as_str()));
    }
    neutron_error(
        &alice.post(
            &format!("{NET}/security-groups"),
            &json!({"security_group": {"name": "default"}}),
        ),
        409,
        "SecurityGroupDefaultAlreadyExists",
    );
    neutron_error(
        &alice.delete(&format!("{NET}/security-groups/{did}")),
        409,
        "SecurityGroupCannotRemoveDefault",
    );

    let web = created(
        alice.post(
            &format!("{NET}/security-groups"),
            &json!({"security_group": {"name": "web", "description": "w"}}),
        ),
        "security_group",
    );
    let wid = id(&web);
    assert_eq!(web["security_group_rules"].as_array().unwrap().len(), 2);
    let rule = |body: Value| {
        let mut b = json!({"security_group_id": wid, "direction": "ingress"});
        if let (Some(o), Some(e)) = (b.as_object_mut(), body.as_object()) {
            o.extend(e.clone());
        }
        alice.post(
            &format!("{NET}/security-group-rules"),
            &json!({"security_group_rule": b}),
        )
    };
    let ssh = created(
        rule(
            json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                    "remote_ip_prefix": "192.0.2.0/24"}),
        ),
        "security_group_rule",
    );
    assert_eq!(ssh["ethertype"], "IPv4");
    assert_eq!(ssh["port_range_min"], 22);
    assert_eq!(ssh["tenant_id"], alice_project);
    neutron_error(
        &rule(
            json!({"protocol": "6", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "192.0.2.0/24"}),
        ),
        409,
        "SecurityGroupRuleExists",
    );
    created(
        rule(json!({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0})),
        "security_group_rule",
    );
    created(rule(json!({"protocol": 132})), "security_group_rule");
    for (body, kind) in [
        (
            json!({"protocol": "tcp", "port_range_min": 90, "port_range_max": 80}),
            "SecurityGroupInvalidPortRange",
        ),
        (
            json!({"protocol": "tcp", "port_range_min": 0, "port_range_max": 80}),
            "SecurityGroupInvalidPortValue",
        ),
        (
            json!({"port_range_min": 80, "port_range_max": 80}),
            "SecurityGroupProtocolRequiredWithPorts",
        ),
        (
            json!({"protocol": "300"}),
            "SecurityGroupRuleInvalidProtocol",
        ),
        (
            json!({"protocol": "icmp", "port_range_max": 0}),
            "SecurityGroupMissingIcmpType",
        ),
        (
            json!({"remote_ip_prefix": "fd00::/64"}),
            "SecurityGroupRuleParameterConflict",
        ),
        (
            json!({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": did}),
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
        ),
        (
            json!({"ethertype": "IPv5"}),
            "SecurityGroupRuleInvalidEtherType",
        ),
        (json!({"direction": "up"}), "InvalidInput"),
    ] {
        neutron_error(&rule(body), 400, kind);
    }
    neutron_error(
        &rule(json!({"remote_group_id": "no-such-group"})),
        404,
        "SecurityGroupNotFound",
    );
    let listed = ok(alice.get(&format!(
        "{NET}/security-group-rules?security_group_id={wid}"
    )));
    assert_eq!(listed["security_group_rules"].as_array().unwrap().len(), 5);
    assert_eq!(
        alice
            .delete(&format!("{NET}/security-group-rules/{}", id(&ssh)))
            .status
            .as_u16(),
        204
    );
    neutron_error(
        &alice.get(&format!("{NET}/security-group-rules/{}", id(&ssh))),
        404,
        "SecurityGroupRuleNotFound",
    );

    // A group in use stays.
    let net = created(
        alice.post(
            &format!("{NET}/networks"),
            &json!({"network": {"name": "n"}}),
        ),
        "network",
    );
    let nid = id(&net);
    let port = created(
        port_on(&alice, &nid, json!({"security_groups": [wid]})),
        "port",
    );
    assert_eq!(port["security_groups"], json!([wid]));
    neutron_error(
        &alice.delete(&format!("{NET}/security-groups/{wid}")),
        409,
        "SecurityGroupInUse",
    );
    neutron_error(
        &port_on(
            &alice,
            &nid,
            json!({"port_security_enabled": false, "security_groups": [wid]}),
        ),
        409,
        "PortSecurityAndIPRequiredForSecurityGroups",
    );
    let open = created(
        port_on(&alice, &nid, json!({"port_security_enabled": false})),
        "port",
    );
    assert_eq!(open["security_groups"], json!([]));

    // Bob sees none of Alice's things and cannot use them.
    neutron_error(
        &bob.get(&format!("{NET}/networks/{nid}")),
        404,
        "NetworkNotFound",
    );
    neutron_error(
        &bob.get(&format!("{NET}/security-groups/{wid}")),
        404,
        "SecurityGroupNotFound",
    );
    neutron_error(
        &bob.get(&format!("{NET}/ports/{}", id(&port))),
        404,
        "PortNotFound",
    );
    neutron_error(&port_on(&bob, &nid, json!({})), 404, "NetworkNotFound");
    assert_eq!(
        ok(bob.get(&format!("{NET}/networks")))["networks"],
        json!([])
    );
    assert_eq!(ok(bob.get(&format!("{NET}/ports")))["ports"], json!([]));
    let bob_groups = ok(bob.get(&format!("{NET}/security-groups")))["security_groups"].clone();
    assert_eq!(
        bob_groups.as_array().unwrap().len(),
        1,
        "only Bob's own default group"
    );
    assert_ne!(bob_groups[0]["id"], did.as_str());
    neutron_error(
        &port_on(
            &alice,
            &nid,
            json!({"security_groups": [bob_groups[0]["id"]]}),
        ),
        404,
        "SecurityGroupNotFound",
    );

    // A shared network (admin's) is visible to all and takes their ports.
    let admin = d.unix();
    let shared = created(
        admin.post(
            &format!("{NET}/networks"),
            &json!({"network": {"name": "public", "shared": true}}),
        ),
        "network",
    );
    created(
        admin.post(
            &format!("{NET}/subnets"),
            &json!({"subnet": {"network_id": id(&shared), "ip_version": 4, "cidr": "10.50.0.0/24"}}),
        ),
        "subnet",
    );
    let bob_nets = ok(bob.get(&format!("{NET}/networks")))["networks"].clone();
    assert_eq!(bob_nets.as_array().unwrap().len(), 1);
    assert_eq!(bob_nets[0]["shared"], true);
    let bob_port = created(port_on(&bob, &id(&shared), json!({})), "port");
    assert_eq!(ips(&bob_port), ["10.50.0.3"]);
    // Bob may not add subnets to a network he does not own.
    neutron_error(
        &bob.post(
            &format!("{NET}/subnets"),
            &json!({"subnet": {"network_id": id(&shared), "ip_version": 4, "cidr": "10.51.0.0/24"}}),
        ),
        403,
        "PolicyNotAuthorized",
    );
    // The admin sees every project's ports.
    let all = ok(admin.get(&format!("{NET}/ports")))["ports"]
        .as_array()
        .unwrap()
        .len();
    assert!(all >= 4, "{all}");
}

/// Neutron echoes an allowed address pair's address as written: one address without a
/// prefix, a range as its CIDR; the pair's MAC defaults to the port's. And `GET /v2.0/` lists
/// the core resources with their collections.
#[test]
fn address_pairs_echo_as_written_and_v2_lists_its_resources() {
    let d = Daemon::start();
    let (api, _, _) = member(&d, "pairs");
    let net = id(&created(
        api.post(
            &format!("{NET}/networks"),
            &json!({"network": {"name": "n"}}),
        ),
        "network",
    ));
    created(
        api.post(
            &format!("{NET}/subnets"),
            &json!({"subnet": {"network_id": net, "cidr": "10.9.0.0/24", "ip_version": 4}}),
        ),
        "subnet",
    );
    let port = created(
        port_on(
            &api,
            &net,
            json!({"allowed_address_pairs": [
                {"ip_address": "10.9.0.50", "mac_address": "fa:16:3e:00:00:01"},
                {"ip_address": "10.9.0.64/28"},
                {"ip_address": "2001:db8::3"},
            ]}),
        ),
        "port",
    );
    let pairs = &port["allowed_address_pairs"];
    assert_eq!(pairs[0]["ip_address"], "10.9.0.50", "{pairs}");
    assert_eq!(pairs[0]["mac_address"], "fa:16:3e:00:00:01", "{pairs}");
    assert_eq!(pairs[1]["ip_address"], "10.9.0.64/28", "{pairs}");
    assert_eq!(pairs[1]["mac_address"], port["mac_address"], "{pairs}");
    assert_eq!(pairs[2]["ip_address"], "2001:db8::3", "{pairs}");
    let shown = ok(api.get(&format!("{NET}/ports/{}", id(&port))));
    assert_eq!(shown["port"]["allowed_address_pairs"], *pairs);
    let root = ok(api.get(&format!("{NET}/")));
    let names: Vec<&str> = root["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["network", "subnet", "port"]);
    let href = root["resources"][2]["links"][0]["href"].as_str().unwrap();
    assert!(href.ends_with("/network/v2.0/ports"), "{href}");
}

#[test]
fn bulk_creates_make_every_item_or_none() {
    let d = Daemon::start();
    let (api, _, _) = member(&d, "bulk");
    let nets = created(
        api.post(
            &format!("{NET}/networks"),
            &json!({"networks": [{"name": "a"}, {"name": "b", "mtu": 1400}]}),
        ),
        "networks",
    );
    let names: Vec<_> = nets
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].clone())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(nets[1]["mtu"], 1400);
    let (a, b) = (id(&nets[0]), id(&nets[1]));
    let listed = ok(api.get(&format!("{NET}/networks"))).to_string();
    assert!(listed.contains(&a) && listed.contains(&b), "{listed}");

    // The second network is refused (an MTU below IPv4's minimum): the first is undone.
    let networks_before = ok(api.get(&format!("{NET}/networks")));
    let r = api.post(
        &format!("{NET}/networks"),
        &json!({"networks": [{"name": "c"}, {"name": "d", "mtu": 10}]}),
    );
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(ok(api.get(&format!("{NET}/networks"))), networks_before);

    let subnets = created(
        api.post(
            &format!("{NET}/subnets"),
            &json!({"subnets": [
                {"network_id": a, "ip_version": 4, "cidr": "10.7.0.0/24"},
                {"network_id": b, "ip_version": 4, "cidr": "10.8.0.0/24"},
            ]}),
        ),
        "subnets",
    );
    assert_eq!(subnets[0]["cidr"], "10.7.0.0/24");
    assert_eq!(subnets[1]["network_id"], b.as_str());
    // An overlapping second subnet: nothing of the request stays.
    let subnets_before = ok(api.get(&format!("{NET}/subnets")));
    let r = api.post(
        &format!("{NET}/subnets"),
        &json!({"subnets": [
            {"network_id": b, "ip_version": 4, "cidr": "10.9.0.0/24"},
            {"network_id": a, "ip_version": 4, "cidr": "10.7.0.0/25"},
        ]}),
    );
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(ok(api.get(&format!("{NET}/subnets"))), subnets_before);

    let ports = created(
        api.post(
            &format!("{NET}/ports"),
            &json!({"ports": [{"network_id": a, "name": "p1"}, {"network_id": b, "name": "p2"}]}),
        ),
        "ports",
    );
    assert_eq!(ports[0]["name"], "p1");
    assert_eq!(ips(&ports[1]).len(), 1, "{}", ports[1]);
    // A second port asking for the first's address: both refused, the address free again.
    let taken = ips(&ports[0])[0].clone();
    let ports_before = ok(api.get(&format!("{NET}/ports")));
    let r = api.post(
        &format!("{NET}/ports"),
        &json!({"ports": [
            {"network_id": a, "name": "p3", "fixed_ips": [{"ip_address": "10.7.0.77"}]},
            {"network_id": a, "name": "p4", "fixed_ips": [{"ip_address": taken}]},
        ]}),
    );
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert_eq!(ok(api.get(&format!("{NET}/ports"))), ports_before);
    let again = port_on(
        &api,
        &a,
        json!({"fixed_ips": [{"ip_address": "10.7.0.77"}]}),
    );
    assert_eq!(ips(&created(again, "port")), ["10.7.0.77"]);

    // Malformed bulk bodies.
    let networks_before = ok(api.get(&format!("{NET}/networks")));
    for body in [
        json!({"networks": []}),
        json!({"networks": {"name": "x"}}),
        json!({"networks": [{"name": "x"}], "network": {"name": "y"}}),
        json!({"networks": [{"bogus": 1}]}),
    ] {
        let r = api.post(&format!("{NET}/networks"), &body);
        assert_eq!(r.status.as_u16(), 400, "{body}: {}", r.text());
    }
    assert_eq!(ok(api.get(&format!("{NET}/networks"))), networks_before);
}
