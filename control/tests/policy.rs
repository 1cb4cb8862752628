//! Every route of control/api/openapi.yaml, called by five callers against one project's
//! resources: no token, a reader of the project, a member of another project, a member of
//! the project and an admin, each on the TCP listener with a real token. Each answer is
//! checked against the route's rule in the policy table (api/policy.rs): 401 without a
//! token, OpenStack's 403 where the rule wants a role the caller lacks, 4xx for another
//! project's resources, never a 5xx, and never one of the project's ids in what another
//! project or an anonymous caller is told. In process, over SQLite; no guest boots.

mod common;

use common::in_process::InProcess;
use common::openapi_doc::{doc, operations, request_body, Op};
use hyper::{HeaderMap, Method, StatusCode};
use outpost_control::api::policy::{rule_of, Admits, Policy};
use outpost_control::api::{Reply, ReplyBody, Transport};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ADMIN_PASSWORD: &str = "admin-secret";
const PASSWORD: &str = "pw-123456";

/// Parameters whose value is one of the project's own resources (or the project, or its
/// member): another project's caller must never get a 2xx for them.
const PROJECT_OWNED: &[&str] = &[
    "server_id",
    "server_group_id",
    "keypair_name",
    "volume_id",
    "snapshot_id",
    "image_id",
    "network_id",
    "subnet_id",
    "port_id",
    "security_group_id",
    "rule_id",
    "project_id",
    "user_id",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Reader,
    OtherMember,
    Member,
    Admin,
}

impl Caller {
    /// The roles its token carries (implied ones included, as Keystone issues them).
    fn roles(self) -> &'static [&'static str] {
        match self {
            Caller::Anonymous => &[],
            Caller::Reader => &["reader"],
            Caller::OtherMember | Caller::Member => &["member", "reader"],
            Caller::Admin => &["admin", "member", "reader"],
        }
    }
}

/// Who setup acts as: the admin on the unix socket, nobody, or a token's holder on TCP.
#[derive(Clone, Copy)]
enum As<'a> {
    Socket,
    Anonymous,
    Token(&'a str),
}

struct Walk {
    api: InProcess,
    tokens: BTreeMap<&'static str, String>,
    /// Path parameter name → the value naming the project's resource.
    params: BTreeMap<&'static str, String>,
    /// Every id of the project's that another project must not learn.
    secrets: Vec<String>,
    /// The bystander's project: another tenant's.
    other_project: String,
}

fn text(r: &Reply) -> String {
    match &r.body {
        ReplyBody::Json(v) => v.to_string(),
        ReplyBody::Text(t) => t.clone(),
        ReplyBody::Empty | ReplyBody::File(_) => String::new(),
    }
}

impl Walk {
    fn call(&self, who: As<'_>, method: Method, target: &str, body: Option<Value>) -> Reply {
        let mut headers = HeaderMap::new();
        if let As::Token(t) = who {
            headers.insert("x-auth-token", t.parse().unwrap());
        }
        let body = match body {
            Some(v) => {
                headers.insert(
                    hyper::header::CONTENT_TYPE,
                    "application/json".parse().unwrap(),
                );
                v.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let transport = match who {
            As::Socket => Transport::Unix,
            As::Anonymous | As::Token(_) => Transport::Tcp,
        };
        self.api.request(transport, method, target, headers, body)
    }

    /// The body of a 2xx from `method target`, which setup needs to succeed.
    fn made(&self, who: As<'_>, method: Method, target: &str, body: Option<Value>) -> Value {
        let r = self.call(who, method.clone(), target, body);
        assert!(
            r.status.is_success(),
            "setup {method} {target}: {} {}",
            r.status,
            text(&r)
        );
        match r.body {
            ReplyBody::Json(v) => v,
            _ => Value::Null,
        }
    }

    fn login(&self, user: &str, password: &str, project: &str) -> String {
        let r = self.call(
            As::Anonymous,
            Method::POST,
            "/identity/v3/auth/tokens",
            Some(json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": user, "domain": {"id": "default"}, "password": password}}},
                "scope": {"project": {"name": project, "domain": {"id": "default"}}}
            }})),
        );
        assert_eq!(r.status, StatusCode::CREATED, "login {user}: {}", text(&r));
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-subject-token"))
            .map(|(_, v)| v.clone())
            .expect("a token")
    }

    /// A project with one user holding `role`; returns (project id, user id).
    fn user_in(&self, project: &str, user: &str, role: &str) -> (String, String) {
        let roles = self.made(As::Socket, Method::GET, "/identity/v3/roles", None);
        let role_id = roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == role)
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .unwrap();
        let listed = self.made(
            As::Socket,
            Method::GET,
            &format!("/identity/v3/projects?name={project}"),
            None,
        );
        let project_id = match listed["projects"].as_array().unwrap().first() {
            Some(p) => p["id"].as_str().unwrap().to_owned(),
            None => self.made(
                As::Socket,
                Method::POST,
                "/identity/v3/projects",
                Some(json!({"project": {"name": project}})),
            )["project"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        let user_id = self.made(
            As::Socket,
            Method::POST,
            "/identity/v3/users",
            Some(json!({"user": {"name": user, "password": PASSWORD,
                                 "default_project_id": project_id}})),
        )["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.made(
            As::Socket,
            Method::PUT,
            &format!("/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"),
            None,
        );
        (project_id, user_id)
    }
}

/// The project "victim" with one of each resource, made by its member; the callers' tokens.
fn setup() -> Walk {
    let mut w = Walk {
        api: InProcess::start(ADMIN_PASSWORD),
        tokens: BTreeMap::new(),
        params: BTreeMap::new(),
        secrets: Vec::new(),
        other_project: String::new(),
    };
    let (project, member_id) = w.user_in("victim", "victim-member", "member");
    let (_, reader_id) = w.user_in("victim", "victim-reader", "reader");
    w.other_project = w.user_in("bystander", "bystander-member", "member").0;
    let member = w.login("victim-member", PASSWORD, "victim");
    w.tokens.insert("member", member.clone());
    w.tokens
        .insert("reader", w.login("victim-reader", PASSWORD, "victim"));
    w.tokens
        .insert("other", w.login("bystander-member", PASSWORD, "bystander"));
    w.tokens
        .insert("admin", w.login("admin", ADMIN_PASSWORD, "admin"));
    let m = member.as_str();

    // Global things the admin makes: a flavor with an extra spec.
    w.made(
        As::Socket,
        Method::POST,
        "/compute/v2.1/flavors",
        Some(
            json!({"flavor": {"name": "policy.tiny", "id": "policy-tiny", "ram": 64,
                               "vcpus": 1, "disk": 1}}),
        ),
    );
    w.made(
        As::Socket,
        Method::POST,
        "/compute/v2.1/flavors/policy-tiny/os-extra_specs",
        Some(json!({"extra_specs": {"hw:cpu_policy": "shared"}})),
    );
    let roles = w.made(As::Socket, Method::GET, "/identity/v3/roles", None);
    let member_role = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "member")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .unwrap();

    // The project's own, each made by its member.
    let keypair = w.made(
        As::Token(m),
        Method::POST,
        "/compute/v2.1/os-keypairs",
        Some(json!({"keypair": {"name": "victim-key"}})),
    );
    let group = w.made(
        As::Token(m),
        Method::POST,
        "/compute/v2.1/os-server-groups",
        Some(json!({"server_group": {"name": "victim-group", "policies": ["anti-affinity"]}})),
    );
    let server = w.made(
        As::Token(m),
        Method::POST,
        "/compute/v2.1/servers",
        // Made before the project has a network: Nova's default "auto" finds none.
        Some(
            json!({"server": {"name": "victim-server", "flavorRef": "policy-tiny",
                               "imageRef": "outpost-guest"}}),
        ),
    );
    let image = w.made(
        As::Token(m),
        Method::POST,
        "/image/v2/images",
        Some(json!({"name": "victim-image", "disk_format": "raw",
                    "container_format": "bare"})),
    );
    let volume = w.made(
        As::Token(m),
        Method::POST,
        &format!("/volume/v3/{project}/volumes"),
        Some(json!({"volume": {"size": 1, "name": "victim-volume"}})),
    );
    let volume_id = volume["volume"]["id"].as_str().unwrap().to_owned();
    // A volume is made in the background; a snapshot needs it available.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = w.made(
            As::Token(m),
            Method::GET,
            &format!("/volume/v3/{project}/volumes/{volume_id}"),
            None,
        );
        match v["volume"]["status"].as_str() {
            Some("available") => break,
            Some("creating") if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => panic!("volume {volume_id} is {other:?}, not available"),
        }
    }
    let snapshot = w.made(
        As::Token(m),
        Method::POST,
        &format!("/volume/v3/{project}/snapshots"),
        Some(json!({"snapshot": {"volume_id": volume_id, "name": "victim-snapshot"}})),
    );
    let default_type = w.made(
        As::Token(m),
        Method::GET,
        &format!("/volume/v3/{project}/types/default"),
        None,
    );
    let network = w.made(
        As::Token(m),
        Method::POST,
        "/network/v2.0/networks",
        Some(json!({"network": {"name": "victim-net"}})),
    );
    let network_id = network["network"]["id"].as_str().unwrap().to_owned();
    let subnet = w.made(
        As::Token(m),
        Method::POST,
        "/network/v2.0/subnets",
        Some(json!({"subnet": {"network_id": network_id, "ip_version": 4,
                               "cidr": "10.66.0.0/24"}})),
    );
    let port = w.made(
        As::Token(m),
        Method::POST,
        "/network/v2.0/ports",
        Some(json!({"port": {"network_id": network_id}})),
    );
    let sg = w.made(
        As::Token(m),
        Method::POST,
        "/network/v2.0/security-groups",
        Some(json!({"security_group": {"name": "victim-sg"}})),
    );
    let sg_id = sg["security_group"]["id"].as_str().unwrap().to_owned();
    let rule = w.made(
        As::Token(m),
        Method::POST,
        "/network/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": sg_id,
                    "direction": "ingress", "protocol": "tcp",
                    "port_range_min": 22, "port_range_max": 22}})),
    );

    let id = |v: &Value| v.as_str().unwrap().to_owned();
    let owned = [
        ("server_id", id(&server["server"]["id"])),
        ("server_group_id", id(&group["server_group"]["id"])),
        ("keypair_name", id(&keypair["keypair"]["name"])),
        ("volume_id", volume_id),
        ("snapshot_id", id(&snapshot["snapshot"]["id"])),
        ("image_id", id(&image["id"])),
        ("network_id", network_id),
        ("subnet_id", id(&subnet["subnet"]["id"])),
        ("port_id", id(&port["port"]["id"])),
        ("security_group_id", sg_id),
        ("rule_id", id(&rule["security_group_rule"]["id"])),
        // Cinder's quota routes name the project twice: as the caller and as the target.
        ("target_project_id", project.clone()),
        ("project_id", project),
        ("user_id", member_id.clone()),
    ];
    // Names are the caller's to choose; ids are what must not leak.
    w.secrets = owned
        .iter()
        .filter(|(k, _)| *k != "keypair_name")
        .map(|(_, v)| v.clone())
        .chain([reader_id])
        .collect();
    w.params.extend(owned);
    w.params.extend([
        ("flavor_id", "policy-tiny".to_owned()),
        ("key", "hw:cpu_policy".to_owned()),
        ("role_id", member_role),
        ("type_id", id(&default_type["volume_type"]["id"])),
    ]);
    w
}

/// `op`'s path with the project's resources (or, for a parameter naming nothing of a
/// project's, such as a service action or an extension alias, the document's example).
fn target(w: &Walk, op: &Op) -> String {
    let mut path = op.path.clone();
    for p in op.params.iter().filter(|p| p["in"] == "path") {
        let name = p["name"].as_str().unwrap();
        let value = match w.params.get(name) {
            Some(v) => v.clone(),
            None => p["example"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no value for path parameter {name}", op.path))
                .to_owned(),
        };
        path = path.replace(&format!("{{{name}}}"), &value);
    }
    path
}

/// Whether the answer is a refusal by the policy table for `rule`.
fn refused_by_policy(r: &Reply, rule: &str) -> bool {
    r.status == StatusCode::FORBIDDEN && text(r).contains(rule)
}

struct Outcome {
    checked: usize,
    failures: Vec<String>,
}

fn run(w: &Walk, op: &Op, caller: Caller, out: &mut Outcome) {
    let method = Method::from_bytes(op.method.as_bytes()).unwrap();
    let body = request_body(&op.op);
    let raw_body = body.as_ref().map_or(&[][..], |(_, b)| b.as_slice());
    let rule = rule_of(&method, &op.path, raw_body).unwrap_or_else(|| {
        panic!(
            "{} {} has no rule in the policy table (control/src/api/policy.rs POLICY)",
            op.method, op.path
        )
    });
    let path = target(w, op);
    let token = match caller {
        Caller::Anonymous => None,
        Caller::Reader => Some(w.tokens["reader"].as_str()),
        Caller::OtherMember => Some(w.tokens["other"].as_str()),
        Caller::Member => Some(w.tokens["member"].as_str()),
        Caller::Admin => Some(w.tokens["admin"].as_str()),
    };
    let mut headers = HeaderMap::new();
    if let Some(t) = token {
        headers.insert("x-auth-token", t.parse().unwrap());
    }
    for p in &op.params {
        if p["in"] == "header" && p["required"] == true {
            headers.insert(
                hyper::header::HeaderName::from_bytes(p["name"].as_str().unwrap().as_bytes())
                    .unwrap(),
                "x".parse().unwrap(),
            );
        }
    }
    let body = match body {
        Some((media, bytes)) => {
            headers.insert(hyper::header::CONTENT_TYPE, media.parse().unwrap());
            bytes
        }
        None => Vec::new(),
    };
    let sent = format!("{path} {}", String::from_utf8_lossy(&body));
    let r = w.api.request(Transport::Tcp, method, &path, headers, body);
    let said = text(&r);
    let what = format!("{caller:?} {} {path} -> {}: {said}", op.method, r.status);
    let mut fail = |why: &str| out.failures.push(format!("{why}: {what}"));
    out.checked += 1;
    if r.status.is_server_error() {
        fail("a 5xx");
    }
    let admitted = match rule.default {
        Admits::Public => true,
        Admits::Authenticated => caller != Caller::Anonymous,
        Admits::Role(role) => caller.roles().contains(&role),
    };
    let names_the_project = op
        .params
        .iter()
        .any(|p| p["in"] == "path" && PROJECT_OWNED.contains(&p["name"].as_str().unwrap_or("")));
    match (caller, rule.default) {
        (_, Admits::Public) => {
            if r.status == StatusCode::UNAUTHORIZED {
                fail("a public route asked for a token");
            }
        }
        (Caller::Anonymous, _) => {
            if r.status != StatusCode::UNAUTHORIZED {
                fail("no token but not 401");
            }
        }
        _ if !admitted => {
            if !refused_by_policy(&r, rule.name) {
                fail(&format!("not refused by policy rule {}", rule.name));
            }
        }
        // Another project's resource: refused one way or another (OpenStack says 404 for
        // most, 403 for a Keystone project, 400 for a Cinder URL of another project).
        (Caller::OtherMember, _) if names_the_project => {
            if !r.status.is_client_error() {
                fail("another project's resource answered other than 4xx");
            }
        }
        _ => {
            if refused_by_policy(&r, rule.name) || r.status == StatusCode::UNAUTHORIZED {
                fail(&format!("refused although rule {} admits it", rule.name));
            }
        }
    }
    if matches!(caller, Caller::Anonymous | Caller::OtherMember) {
        for secret in &w.secrets {
            if said.contains(secret.as_str()) && !sent.contains(secret.as_str()) {
                fail(&format!("the answer names the project's {secret}"));
            }
        }
    }
}

#[test]
fn every_route_answers_every_caller_as_its_policy_says() {
    let doc = doc();
    let w = setup();
    let ops = operations(&doc);
    let (deletes, others): (Vec<&Op>, Vec<&Op>) = ops.iter().partition(|o| o.method == "DELETE");
    let mut out = Outcome {
        checked: 0,
        failures: Vec::new(),
    };
    // Callers that must change nothing of the project's go first, on every route; then its
    // member and the admin, deletes last (children before parents, as `operations` orders
    // them) so that every other route still finds the resources it names.
    for caller in [Caller::Anonymous, Caller::Reader, Caller::OtherMember] {
        for op in &ops {
            run(&w, op, caller, &mut out);
        }
    }
    for caller in [Caller::Member, Caller::Admin] {
        for op in &others {
            run(&w, op, caller, &mut out);
        }
    }
    for caller in [Caller::Member, Caller::Admin] {
        for op in &deletes {
            run(&w, op, caller, &mut out);
        }
    }
    assert!(
        out.failures.is_empty(),
        "{} of {} answers broke the policy:\n{}",
        out.failures.len(),
        out.checked,
        out.failures.join("\n")
    );
    // Every caller on every documented operation.
    assert_eq!(out.checked, ops.len() * 5);
}

#[test]
fn a_port_names_as_its_device_only_a_server_of_its_own_project() {
    let w = setup();
    let victim_server = w.params["server_id"].clone();
    let other = As::Token(&w.tokens["other"]);
    let net = w.made(
        other,
        Method::POST,
        "/network/v2.0/networks",
        Some(json!({"network": {"name": "bystander-net"}})),
    );
    let net_id = net["network"]["id"].as_str().unwrap();
    let port_with = |who: As<'_>, network: &str, device: &str| {
        w.call(
            who,
            Method::POST,
            "/network/v2.0/ports",
            Some(json!({"port": {"network_id": network, "device_id": device}})),
        )
    };
    // Another project's server and a label naming nothing get the same answer, so the
    // refusal tells nothing about the other project.
    let planted = port_with(other, net_id, &victim_server);
    let label = port_with(other, net_id, "no-such-server");
    for r in [&planted, &label] {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", text(r));
        assert!(text(r).contains("PolicyNotAuthorized"), "{}", text(r));
    }
    assert_eq!(
        text(&planted).replace(&victim_server, "X"),
        text(&label).replace("no-such-server", "X")
    );
    // Nor can a port already made be pointed at it, nor may the admin give another
    // project's port to the victim's server.
    let plain = w.made(
        other,
        Method::POST,
        "/network/v2.0/ports",
        Some(json!({"port": {"network_id": net_id}})),
    );
    let plain_id = plain["port"]["id"].as_str().unwrap();
    let moved = w.call(
        other,
        Method::PUT,
        &format!("/network/v2.0/ports/{plain_id}"),
        Some(json!({"port": {"device_id": victim_server}})),
    );
    assert_eq!(moved.status, StatusCode::FORBIDDEN, "{}", text(&moved));
    let by_admin = w.call(
        As::Socket,
        Method::PUT,
        &format!("/network/v2.0/ports/{plain_id}"),
        Some(json!({"port": {"device_id": victim_server}})),
    );
    assert_eq!(
        by_admin.status,
        StatusCode::FORBIDDEN,
        "{}",
        text(&by_admin)
    );
    // The victim's own member may name its own server.
    let own_net = w.params["network_id"].clone();
    let own = port_with(As::Token(&w.tokens["member"]), &own_net, &victim_server);
    assert_eq!(own.status, StatusCode::CREATED, "{}", text(&own));
}

#[test]
fn another_projects_port_naming_a_server_never_reaches_it() {
    use outpost_control::context::RequestContext;
    use outpost_control::network::ports::NewPort;
    let w = setup();
    let server = w.params["server_id"].clone();
    let member_of = |project: &str| RequestContext {
        user_id: "u".into(),
        user_name: "u".into(),
        project_id: Some(project.to_owned()),
        project_name: None,
        roles: vec!["member".into(), "reader".into()],
    };
    let network = &w.api.state.network;
    // The server's own port, as the compute side makes it.
    let own = network
        .create_device_port(
            &member_of(&w.params["project_id"]),
            &w.params["network_id"],
            &server,
            "box",
            None,
        )
        .unwrap();
    // Another tenant's port that names the server, written past the API's check (as a row
    // from before it, or another box's write, could be).
    let other = As::Token(&w.tokens["other"]);
    let net = w.made(
        other,
        Method::POST,
        "/network/v2.0/networks",
        Some(json!({"network": {"name": "bystander-net"}})),
    );
    let net_id = net["network"]["id"].as_str().unwrap().to_owned();
    w.made(
        other,
        Method::POST,
        "/network/v2.0/subnets",
        Some(json!({"subnet": {"network_id": net_id, "ip_version": 4,
                               "cidr": "10.77.0.0/24"}})),
    );
    let planted = network
        .create_port(
            &member_of(&w.other_project),
            NewPort {
                network_id: net_id,
                device_id: Some(server.clone()),
                ..NewPort::default()
            },
        )
        .unwrap();
    // What the server shows is what its monitor would get at its next start (both come from
    // compute::servers::nics::ports): its own port, not the planted one.
    let shown = w.made(
        As::Token(&w.tokens["member"]),
        Method::GET,
        &format!("/compute/v2.1/servers/{server}"),
        None,
    );
    let addresses = shown["server"]["addresses"].to_string();
    let own_ip = own.fixed_ips[0].ip_address.to_string();
    let planted_ip = planted.fixed_ips[0].ip_address.to_string();
    assert!(addresses.contains(&own_ip), "{addresses}");
    assert!(!addresses.contains(&planted_ip), "{addresses}");
    assert!(!addresses.contains("bystander-net"), "{addresses}");
}

#[test]
fn owner_only_port_fields_need_the_networks_owner_or_an_admin() {
    let mut w = setup();
    // The admin's network, shared with every project.
    let shared = w.made(
        As::Socket,
        Method::POST,
        "/network/v2.0/networks",
        Some(json!({"network": {"name": "shared", "shared": true}})),
    );
    let shared_id = shared["network"]["id"].as_str().unwrap().to_owned();
    let subnet = w.made(
        As::Socket,
        Method::POST,
        "/network/v2.0/subnets",
        Some(json!({"subnet": {"network_id": shared_id, "ip_version": 4,
                               "cidr": "10.88.0.0/24"}})),
    );
    let subnet_id = subnet["subnet"]["id"].as_str().unwrap().to_owned();
    let fields = [
        ("mac_address", json!("fa:16:3e:00:00:99")),
        ("fixed_ips", json!([{"ip_address": "10.88.0.50"}])),
        ("port_security_enabled", json!(false)),
        (
            "allowed_address_pairs",
            json!([{"ip_address": "10.88.0.1"}]),
        ),
        ("device_owner", json!("network:dhcp")),
        ("binding:host_id", json!("box")),
    ];
    let rule = |f: &str| {
        if f == "fixed_ips" {
            "fixed_ips:ip_address".to_owned()
        } else {
            f.to_owned()
        }
    };
    let port = |who: As<'_>, extra: (&str, &Value)| {
        let mut body = json!({"network_id": shared_id});
        body[extra.0] = extra.1.clone();
        w.call(
            who,
            Method::POST,
            "/network/v2.0/ports",
            Some(json!({"port": body})),
        )
    };
    let other = As::Token(&w.tokens["other"]);
    for (f, v) in &fields {
        let r = port(other, (f, v));
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{f}: {}", text(&r));
        let said = text(&r);
        assert!(said.contains("PolicyNotAuthorized"), "{said}");
        assert!(
            said.contains(&format!("rule:create_port:{}", rule(f))),
            "{said}"
        );
    }
    // A plain port there, with a subnet but no address of its choosing, is the member's to
    // make; changing any owner-only field of it is not.
    let plain = port(other, ("fixed_ips", &json!([{"subnet_id": subnet_id}])));
    assert_eq!(plain.status, StatusCode::CREATED, "{}", text(&plain));
    let plain_id = match &plain.body {
        ReplyBody::Json(v) => v["port"]["id"].as_str().unwrap().to_owned(),
        other => panic!("{other:?}"),
    };
    for (f, v) in &fields {
        let r = w.call(
            other,
            Method::PUT,
            &format!("/network/v2.0/ports/{plain_id}"),
            Some(json!({"port": {*f: v}})),
        );
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{f}: {}", text(&r));
        assert!(
            text(&r).contains(&format!("rule:update_port:{}", rule(f))),
            "{}",
            text(&r)
        );
    }
    // The admin sets each.
    for (f, v) in &fields {
        let r = port(As::Socket, (f, v));
        assert_eq!(r.status, StatusCode::CREATED, "{f}: {}", text(&r));
    }
    // On its own network a member sets them, all but the binding.
    let own_net = w.params["network_id"].clone();
    let own = w.call(
        As::Token(&w.tokens["member"]),
        Method::POST,
        "/network/v2.0/ports",
        Some(
            json!({"port": {"network_id": own_net, "mac_address": "fa:16:3e:00:00:97",
                             "port_security_enabled": false, "device_owner": "compute:nova"}}),
        ),
    );
    assert_eq!(own.status, StatusCode::CREATED, "{}", text(&own));
    // A deployment that trusts its members with MACs says so, by the rule's name.
    w.api.state.policy = Policy::new(BTreeMap::from([(
        "create_port:mac_address".to_owned(),
        vec!["member".to_owned()],
    )]))
    .unwrap();
    let other = As::Token(&w.tokens["other"]);
    let r = w.call(
        other,
        Method::POST,
        "/network/v2.0/ports",
        Some(json!({"port": {"network_id": shared_id, "mac_address": "fa:16:3e:00:00:96"}})),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", text(&r));
}
