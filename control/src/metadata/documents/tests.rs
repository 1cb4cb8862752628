use super::*;

pub(crate) fn instance() -> Instance {
    Instance {
        uuid: "3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b".into(),
        seq: 42,
        name: "Web 1".into(),
        hostname: "web-1".into(),
        project_id: "p1".into(),
        availability_zone: "edge-1".into(),
        flavor_name: "m1.tiny".into(),
        key: Some(("laptop".into(), "ssh-ed25519 AAAAkey me@laptop".into())),
        meta: BTreeMap::from([("role".into(), "web".into())]),
        admin_pass: Some("s3cret".into()),
        user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
        links: vec![Link {
            port_id: "9d1c0b2a-1111-2222-3333-444455556666".into(),
            network_id: "n1".into(),
            mac: "fa:16:3e:00:00:01".into(),
            mtu: 1450,
            addresses: vec![LinkAddress {
                ip: "10.0.0.5".parse().unwrap(),
                prefix_len: 24,
                gateway: Some("10.0.0.1".parse().unwrap()),
                dhcp: true,
                dns: vec!["10.0.0.2".parse().unwrap()],
            }],
        }],
    }
}

fn json_at(i: &Instance, path: &str) -> Value {
    let doc = lookup(i, path).unwrap_or_else(|| panic!("{path} missing"));
    assert!(doc.json, "{path} is JSON");
    serde_json::from_slice(&doc.body).unwrap()
}

fn text_at(i: &Instance, path: &str) -> String {
    let doc = lookup(i, path).unwrap_or_else(|| panic!("{path} missing"));
    String::from_utf8(doc.body).unwrap()
}

#[test]
fn meta_data_holds_the_servers_identity_key_and_password() {
    let i = instance();
    let md = json_at(&i, "/openstack/latest/meta_data.json");
    assert_eq!(md["uuid"], i.uuid);
    assert_eq!(md["name"], "Web 1");
    assert_eq!(md["hostname"], "web-1");
    assert_eq!(md["project_id"], "p1");
    assert_eq!(md["availability_zone"], "edge-1");
    assert_eq!(md["public_keys"]["laptop"], "ssh-ed25519 AAAAkey me@laptop");
    assert_eq!(md["keys"][0]["name"], "laptop");
    assert_eq!(md["keys"][0]["type"], "ssh");
    assert_eq!(md["meta"]["role"], "web");
    assert_eq!(md["admin_pass"], "s3cret");
    // Every dated version serves the same document.
    assert_eq!(md, json_at(&i, "/openstack/2018-08-27/meta_data.json"));

    let mut bare = instance();
    bare.key = None;
    bare.admin_pass = None;
    let md = json_at(&bare, "openstack/latest/meta_data.json");
    assert_eq!(md["public_keys"], json!({}));
    assert_eq!(md["keys"], json!([]));
    assert!(md.get("admin_pass").is_none());
}

#[test]
fn user_data_is_served_as_given_and_missing_user_data_is_a_404() {
    let i = instance();
    assert_eq!(
        lookup(&i, "/openstack/latest/user_data").unwrap().body,
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(text_at(&i, "/latest/user-data"), "#!/bin/sh\necho hi\n");
    assert!(text_at(&i, "/openstack/latest/").contains("user_data"));
    let mut none = instance();
    none.user_data = None;
    assert!(lookup(&none, "/openstack/latest/user_data").is_none());
    assert!(lookup(&none, "/latest/user-data").is_none());
    assert!(!text_at(&none, "/openstack/latest").contains("user_data"));
}

#[test]
fn versions_and_listings() {
    let i = instance();
    let versions = text_at(&i, "/openstack");
    assert_eq!(versions.lines().last(), Some("latest"));
    assert!(versions.lines().any(|v| v == "2018-08-27"));
    assert!(text_at(&i, "/").lines().any(|l| l == "openstack"));
    let dir = text_at(&i, "/openstack/latest");
    for f in [
        "meta_data.json",
        "network_data.json",
        "vendor_data.json",
        "vendor_data2.json",
    ] {
        assert!(dir.lines().any(|l| l == f), "{f} in {dir}");
    }
    assert_eq!(
        json_at(&i, "/openstack/latest/vendor_data2.json"),
        json!({})
    );
    assert!(lookup(&i, "/openstack/1999-01-01/meta_data.json").is_none());
    assert!(lookup(&i, "/openstack/latest/nothing").is_none());
    assert!(lookup(&i, "/../etc/passwd").is_none());
}

#[test]
fn network_data_describes_each_port_and_address() {
    let nd = json_at(&instance(), "/openstack/latest/network_data.json");
    let link = &nd["links"][0];
    assert_eq!(link["ethernet_mac_address"], "fa:16:3e:00:00:01");
    assert_eq!(link["mtu"], 1450);
    assert_eq!(link["vif_id"], "9d1c0b2a-1111-2222-3333-444455556666");
    let net = &nd["networks"][0];
    assert_eq!(net["link"], link["id"]);
    assert_eq!(net["type"], "ipv4_dhcp");
    assert_eq!(net["ip_address"], "10.0.0.5");
    assert_eq!(net["netmask"], "255.255.255.0");
    assert_eq!(net["network_id"], "n1");
    assert_eq!(net["routes"][0]["gateway"], "10.0.0.1");
    assert_eq!(
        nd["services"][0],
        json!({"type": "dns", "address": "10.0.0.2"})
    );
}

#[test]
fn the_ec2_tree_lists_and_answers_what_cloud_init_reads() {
    let i = instance();
    let root = text_at(&i, "/latest/meta-data/");
    for entry in [
        "instance-id",
        "hostname",
        "local-ipv4",
        "public-keys/",
        "placement/",
    ] {
        assert!(root.lines().any(|l| l == entry), "{entry} in {root}");
    }
    assert_eq!(text_at(&i, "/latest/meta-data/instance-id"), "i-0000002a");
    assert_eq!(text_at(&i, "/2009-04-04/meta-data/local-ipv4"), "10.0.0.5");
    assert_eq!(text_at(&i, "/latest/meta-data/hostname"), "web-1");
    assert_eq!(text_at(&i, "/latest/meta-data/public-keys"), "0=laptop");
    assert_eq!(
        text_at(&i, "/latest/meta-data/public-keys/0/"),
        "openssh-key"
    );
    assert_eq!(
        text_at(&i, "/latest/meta-data/public-keys/0/openssh-key"),
        "ssh-ed25519 AAAAkey me@laptop"
    );
    assert_eq!(
        text_at(&i, "/latest/meta-data/placement/availability-zone"),
        "edge-1"
    );
    assert!(lookup(&i, "/latest/meta-data/no-such-thing").is_none());
    let mut keyless = instance();
    keyless.key = None;
    assert!(lookup(&keyless, "/latest/meta-data/public-keys").is_none());
}

#[test]
fn the_drive_holds_the_same_bytes_the_service_answers() {
    let i = instance();
    let files: BTreeMap<String, Vec<u8>> = drive_files(&i).into_iter().collect();
    for name in [
        "meta_data.json",
        "network_data.json",
        "vendor_data2.json",
        "user_data",
    ] {
        let served = lookup(&i, &format!("/openstack/latest/{name}"))
            .unwrap()
            .body;
        assert_eq!(files[&format!("openstack/latest/{name}")], served, "{name}");
    }
    let ec2: Value = serde_json::from_slice(&files["ec2/latest/meta-data.json"]).unwrap();
    assert_eq!(ec2["instance-id"], "i-0000002a");
    assert_eq!(
        ec2["public-keys"]["0"]["openssh-key"],
        "ssh-ed25519 AAAAkey me@laptop"
    );
    assert_eq!(files["ec2/latest/user-data"], b"#!/bin/sh\necho hi\n");
}
