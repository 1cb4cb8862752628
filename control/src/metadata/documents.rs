//! The documents a guest reads about itself, built from plain values ([`Instance`]) with no
//! I/O: the OpenStack tree (`openstack/<version>/meta_data.json`, `user_data`,
//! `network_data.json`, `vendor_data.json`, `vendor_data2.json`) and the EC2 tree
//! (`<version>/meta-data/...`, `<version>/user-data`) in the shapes Nova's metadata API gives
//! them and cloud-init reads. The metadata service answers paths with [`lookup`]; the config
//! drive writes [`drive_files`]: the same bytes either way.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The OpenStack metadata versions served (Nova's list); each serves the same documents,
/// which hold every field the newest of them has. cloud-init asks for the newest it knows.
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "latest",
];

/// The EC2 metadata versions served (as Nova's, each the same tree).
pub const EC2_VERSIONS: &[&str] = &["1.0", "2007-01-19", "2009-04-04", "latest"];

/// What a guest is told about itself: copied from its server's record and its ports.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub uuid: String,
    /// Nova's integer id, which the EC2 tree's `instance-id` is made from (`i-%08x`).
    pub seq: i64,
    pub name: String,
    pub hostname: String,
    pub project_id: String,
    pub availability_zone: String,
    pub flavor_name: String,
    /// The key pair's name and public key (Nova's `key_data`), if the server was given one.
    pub key: Option<(String, String)>,
    pub meta: BTreeMap<String, String>,
    pub admin_pass: Option<String>,
    /// `user_data`, decoded from the base64 the create request gave.
    pub user_data: Option<Vec<u8>>,
    pub links: Vec<Link>,
}

/// One of the guest's ports and the addresses it holds there.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub port_id: String,
    pub network_id: String,
    pub mac: String,
    pub mtu: u32,
    pub addresses: Vec<LinkAddress>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkAddress {
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub dhcp: bool,
    pub dns: Vec<IpAddr>,
}

/// A document's bytes and whether it is JSON (for the answer's content type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub body: Vec<u8>,
    pub json: bool,
}

impl Document {
    fn text(s: impl Into<String>) -> Document {
        Document {
            body: s.into().into_bytes(),
            json: false,
        }
    }

    fn json(v: &Value) -> Document {
        Document {
            body: v.to_string().into_bytes(),
            json: true,
        }
    }
}

/// Nova's `meta_data.json`.
pub fn meta_data(i: &Instance) -> Value {
    let mut public_keys = serde_json::Map::new();
    let mut keys = Vec::new();
    if let Some((name, data)) = &i.key {
        public_keys.insert(name.clone(), json!(data));
        keys.push(json!({"name": name, "type": "ssh", "data": data}));
    }
    let mut md = json!({
        "uuid": i.uuid,
        "name": i.name,
        "hostname": i.hostname,
        "project_id": i.project_id,
        "availability_zone": i.availability_zone,
        "public_keys": public_keys,
        "keys": keys,
        "meta": i.meta,
        "devices": [],
    });
    if let Some(p) = &i.admin_pass {
        md["admin_pass"] = json!(p);
    }
    md
}

/// Nova's `network_data.json`: one link per port, one network per address, DNS services.
pub fn network_data(i: &Instance) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    let mut services = Vec::new();
    for link in &i.links {
        let link_id = format!("tap{}", short(&link.port_id));
        links.push(json!({
            "id": link_id,
            "vif_id": link.port_id,
            "type": "tap",
            "mtu": link.mtu,
            "ethernet_mac_address": link.mac,
        }));
        for a in &link.addresses {
            let v4 = a.ip.is_ipv4();
            let kind = match (v4, a.dhcp) {
                (true, true) => "ipv4_dhcp",
                (true, false) => "ipv4",
                (false, true) => "ipv6_dhcp",
                (false, false) => "ipv6",
            };
            let mut routes = Vec::new();
            if let Some(gw) = a.gateway {
                let (net, mask) = if v4 {
                    ("0.0.0.0", "0.0.0.0")
                } else {
                    ("::", "::")
                };
                routes.push(json!({"network": net, "netmask": mask, "gateway": gw}));
            }
            let dns: Vec<Value> = a
                .dns
                .iter()
                .map(|d| json!({"type": "dns", "address": d}))
                .collect();
            for d in &dns {
                if !services.contains(d) {
                    services.push(d.clone());
                }
            }
            networks.push(json!({
                "id": format!("network{}", networks.len()),
                "type": kind,
                "link": link_id,
                "ip_address": a.ip,
                "netmask": netmask(a.ip, a.prefix_len),
                "routes": routes,
                "network_id": link.network_id,
                "services": dns,
            }));
        }
    }
    json!({"links": links, "networks": networks, "services": services})
}

fn short(id: &str) -> String {
    id.chars().filter(|c| *c != '-').take(11).collect()
}

fn netmask(ip: IpAddr, prefix_len: u8) -> String {
    match ip {
        IpAddr::V4(_) => ipnet::Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, prefix_len)
            .map(|n| n.netmask().to_string())
            .unwrap_or_default(),
        IpAddr::V6(_) => ipnet::Ipv6Net::new(std::net::Ipv6Addr::UNSPECIFIED, prefix_len)
            .map(|n| n.netmask().to_string())
            .unwrap_or_default(),
    }
}

/// The EC2 tree's leaves under `meta-data/`, by path.
fn ec2_leaves(i: &Instance) -> BTreeMap<String, String> {
    let local_ipv4 = i
        .links
        .iter()
        .flat_map(|l| &l.addresses)
        .find(|a| a.ip.is_ipv4())
        .map(|a| a.ip.to_string());
    let mut leaves = BTreeMap::from([
        // Nova's ec2 id of an instance: its integer id as `i-%08x`.
        ("instance-id".to_owned(), format!("i-{:08x}", i.seq)),
        ("hostname".to_owned(), i.hostname.clone()),
        ("local-hostname".to_owned(), i.hostname.clone()),
        ("public-hostname".to_owned(), i.hostname.clone()),
        ("instance-type".to_owned(), i.flavor_name.clone()),
        (
            "placement/availability-zone".to_owned(),
            i.availability_zone.clone(),
        ),
    ]);
    if let Some(ip) = local_ipv4 {
        leaves.insert("local-ipv4".to_owned(), ip);
    }
    if let Some((_, data)) = &i.key {
        leaves.insert("public-keys/0/openssh-key".to_owned(), data.clone());
    }
    leaves
}

/// The EC2 `meta-data` tree as one JSON object (the config drive's `ec2/.../meta-data.json`).
pub fn ec2_meta_data(i: &Instance) -> Value {
    let mut root = json!({});
    for (path, value) in ec2_leaves(i) {
        let mut node = &mut root;
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node[part] = json!(value);
            } else {
                if node.get(part).is_none() {
                    node[part] = json!({});
                }
                node = &mut node[part];
            }
        }
    }
    root
}

/// The names a directory lists: files bare, directories with a trailing `/`.
fn listing(entries: impl IntoIterator<Item = String>) -> Document {
    let mut v: Vec<String> = entries.into_iter().collect();
    v.dedup();
    Document::text(v.join("\n"))
}

/// The document at `path` (below the metadata root, without the leading `/`), if any.
/// `None` is a 404, as Nova answers a path it does not have, and `user_data` of a server
/// that was given none.
pub fn lookup(i: &Instance, path: &str) -> Option<Document> {
    let path = path.trim_start_matches('/');
    let mut parts: Vec<&str> = path.split('/').collect();
    // A trailing slash asks for the same node's listing.
    if parts.last() == Some(&"") {
        parts.pop();
    }
    match parts.as_slice() {
        [] => Some(listing(
            EC2_VERSIONS
                .iter()
                .map(|v| (*v).to_owned())
                .chain(["openstack".to_owned()]),
        )),
        ["openstack"] => Some(listing(OPENSTACK_VERSIONS.iter().map(|v| (*v).to_owned()))),
        ["openstack", v, rest @ ..] if OPENSTACK_VERSIONS.contains(v) => openstack(i, rest),
        [v, rest @ ..] if EC2_VERSIONS.contains(v) => ec2(i, rest),
        _ => None,
    }
}

fn openstack(i: &Instance, rest: &[&str]) -> Option<Document> {
    match rest {
        [] => {
            let mut names = vec!["meta_data.json", "network_data.json"];
            if i.user_data.is_some() {
                names.push("user_data");
            }
            names.extend(["vendor_data.json", "vendor_data2.json"]);
            Some(listing(names.into_iter().map(str::to_owned)))
        }
        ["meta_data.json"] => Some(Document::json(&meta_data(i))),
        ["network_data.json"] => Some(Document::json(&network_data(i))),
        // No vendor data is configured: both are empty objects, as Nova's without providers.
        ["vendor_data.json"] | ["vendor_data2.json"] => Some(Document::json(&json!({}))),
        ["user_data"] => i.user_data.as_ref().map(|u| Document {
            body: u.clone(),
            json: false,
        }),
        _ => None,
    }
}

fn ec2(i: &Instance, rest: &[&str]) -> Option<Document> {
    match rest {
        [] => {
            let mut names = vec!["meta-data/".to_owned()];
            if i.user_data.is_some() {
                names.push("user-data".to_owned());
            }
            Some(listing(names))
        }
        ["user-data"] => i.user_data.as_ref().map(|u| Document {
            body: u.clone(),
            json: false,
        }),
        ["meta-data", path @ ..] => {
            let leaves = ec2_leaves(i);
            let joined = path.join("/");
            if let Some(v) = leaves.get(&joined) {
                return Some(Document::text(v.clone()));
            }
            // EC2 lists a key by index and name (`0=mykey`); its directory is the index.
            if joined == "public-keys" {
                let (name, _) = i.key.as_ref()?;
                return Some(Document::text(format!("0={name}")));
            }
            let prefix = if joined.is_empty() {
                String::new()
            } else {
                format!("{joined}/")
            };
            let children: Vec<String> = leaves
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|tail| match tail.split_once('/') {
                    Some((dir, _)) => format!("{dir}/"),
                    None => tail.to_owned(),
                })
                .collect();
            (!children.is_empty()).then(|| listing(children))
        }
        _ => None,
    }
}

/// The config drive's files (path inside the drive, bytes): the `latest` documents of both
/// trees, the same bytes the metadata service answers.
pub fn drive_files(i: &Instance) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "openstack/latest/meta_data.json".to_owned(),
            meta_data(i).to_string().into_bytes(),
        ),
        (
            "openstack/latest/network_data.json".to_owned(),
            network_data(i).to_string().into_bytes(),
        ),
        (
            "openstack/latest/vendor_data.json".to_owned(),
            b"{}".to_vec(),
        ),
        (
            "openstack/latest/vendor_data2.json".to_owned(),
            b"{}".to_vec(),
        ),
        (
            "ec2/latest/meta-data.json".to_owned(),
            ec2_meta_data(i).to_string().into_bytes(),
        ),
    ];
    if let Some(u) = &i.user_data {
        files.push(("openstack/latest/user_data".to_owned(), u.clone()));
        files.push(("ec2/latest/user-data".to_owned(), u.clone()));
    }
    files
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
pub(crate) use tests::instance as tests_instance;
