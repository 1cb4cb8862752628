//! Nova's JSON for servers, per microversion and caller: the summary of `GET /servers`, the
//! full body of show and `/detail`, and the short body of a create. Fields by microversion:
//! 2.3 more `OS-EXT-SRV-ATTR:*`, 2.9 `locked`, 2.16 `host_status`, 2.19 `description`, 2.26
//! `tags`, 2.47 the embedded flavor, 2.63 `trusted_image_certificates`, 2.71
//! `server_groups`, 2.73 `locked_reason`. `OS-EXT-SRV-ATTR:*` and `host_status` are for
//! admins (Nova's default policy); a fault is shown in ERROR, its details to admins.

use crate::api::microversion::ApiVersion;
use crate::compute::servers::store::VmState;
use crate::compute::servers::{availability_zone, hostname, state, Server};
use crate::context::RequestContext;
use crate::timestamp::Timestamp;
use serde_json::{json, Value};
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;

const EXTENDED_ATTRS: ApiVersion = ApiVersion::new(2, 3);
const LOCKED: ApiVersion = ApiVersion::new(2, 9);
const HOST_STATUS: ApiVersion = ApiVersion::new(2, 16);
const DESCRIPTION: ApiVersion = ApiVersion::new(2, 19);
const TAGS: ApiVersion = ApiVersion::new(2, 26);
const EMBEDDED_FLAVOR: ApiVersion = ApiVersion::new(2, 47);
const TRUSTED_CERTS: ApiVersion = ApiVersion::new(2, 63);
const SERVER_GROUPS: ApiVersion = ApiVersion::new(2, 71);
const LOCKED_REASON: ApiVersion = ApiVersion::new(2, 73);

/// Statuses in which Nova shows `progress`.
const PROGRESS_STATUSES: [&str; 5] = ["ACTIVE", "BUILD", "RESIZE", "VERIFY_RESIZE", "REBUILD"];

pub fn links(id: &str, base_url: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base_url}/compute/v2.1/servers/{id}")},
        {"rel": "bookmark", "href": format!("{base_url}/compute/servers/{id}")},
    ])
}

/// An entry of `GET /servers`.
pub fn summary(s: &Server, base_url: &str) -> Value {
    json!({"id": s.id, "name": s.name, "links": links(&s.id, base_url)})
}

/// The body of a 202 to a create: Nova names the security groups asked for, `default` when
/// none were (the group the server's ports are put in then).
pub fn created(s: &Server, base_url: &str, asked_groups: &[String]) -> Value {
    let groups: Vec<Value> = if asked_groups.is_empty() {
        vec![json!({"name": crate::network::groups::DEFAULT_NAME})]
    } else {
        asked_groups.iter().map(|g| json!({"name": g})).collect()
    };
    json!({
        "id": s.id,
        "links": links(&s.id, base_url),
        "OS-DCF:diskConfig": s.disk_config,
        "security_groups": groups,
    })
}

/// Nova's `hostId`: a per-project digest of the host, so tenants can tell whether two of
/// their servers share a host without learning its name.
fn host_id(s: &Server) -> String {
    match &s.host {
        Some(h) => {
            let digest = Sha224::digest(format!("{}{h}", s.project_id).as_bytes());
            crate::random::hex(&digest)
        }
        None => String::new(),
    }
}

/// Nova's time stamps in the OS-SRV-USG fields have microseconds and no zone.
fn usage_time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.to_rfc3339_micros().trim_end_matches('Z'))
    })
}

/// The full server.
pub fn detail(s: &Server, ctx: &RequestContext, base_url: &str, v: ApiVersion) -> Value {
    let status = state::status(s.vm_state, s.task_state);
    let image = if s.image_ref.is_empty() {
        json!("")
    } else {
        json!({
            "id": s.image_ref,
            "links": [{"rel": "bookmark",
                       "href": format!("{base_url}/compute/images/{}", s.image_ref)}],
        })
    };
    let f = &s.flavor;
    let flavor = if v >= EMBEDDED_FLAVOR {
        json!({
            "vcpus": f.vcpus,
            "ram": f.ram,
            "disk": f.disk,
            "ephemeral": f.ephemeral,
            "swap": f.swap,
            "original_name": f.name,
            "extra_specs": f.extra_specs,
        })
    } else {
        json!({
            "id": f.id,
            "links": [{"rel": "bookmark",
                       "href": format!("{base_url}/compute/flavors/{}", f.id)}],
        })
    };
    let mut out = json!({
        "id": s.id,
        "name": s.name,
        "status": status,
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "metadata": s.metadata,
        "hostId": host_id(s),
        "image": image,
        "flavor": flavor,
        "created": s.created_at.to_rfc3339(),
        "updated": s.updated_at.unwrap_or(s.created_at).to_rfc3339(),
        "addresses": {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links(&s.id, base_url),
        "OS-DCF:diskConfig": s.disk_config,
        "OS-EXT-AZ:availability_zone": availability_zone(s, &BTreeMap::new()),
        "config_drive": s.config_drive,
        "key_name": s.key_name,
        "OS-SRV-USG:launched_at": usage_time(s.launched_at),
        "OS-SRV-USG:terminated_at": null,
        "OS-EXT-STS:task_state": s.task_state.map(|t| t.as_str()),
        "OS-EXT-STS:vm_state": s.vm_state.as_str(),
        "OS-EXT-STS:power_state": s.power_state.code(),
        "os-extended-volumes:volumes_attached": [],
    });
    if PROGRESS_STATUSES.contains(&status) {
        out["progress"] = json!(if status == "BUILD" { 0 } else { 100 });
    }
    if ctx.is_admin() {
        out["OS-EXT-SRV-ATTR:host"] = json!(s.host);
        out["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(s.host);
        out["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{:08x}", s.seq));
        if v >= EXTENDED_ATTRS {
            out["OS-EXT-SRV-ATTR:reservation_id"] = json!(format!("r-{:08x}", s.seq));
            out["OS-EXT-SRV-ATTR:launch_index"] = json!(0);
            out["OS-EXT-SRV-ATTR:hostname"] = json!(hostname(&s.name));
            out["OS-EXT-SRV-ATTR:kernel_id"] = json!(s.boot.kernel_id.clone().unwrap_or_default());
            out["OS-EXT-SRV-ATTR:ramdisk_id"] =
                json!(s.boot.ramdisk_id.clone().unwrap_or_default());
            out["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
            out["OS-EXT-SRV-ATTR:user_data"] = json!(s.user_data);
        }
        if v >= HOST_STATUS {
            out["host_status"] = json!(if s.host.is_some() { "UP" } else { "" });
        }
    }
    if v >= LOCKED {
        out["locked"] = json!(false);
    }
    if v >= DESCRIPTION {
        out["description"] = json!(s.description);
    }
    if v >= TAGS {
        out["tags"] = json!([]);
    }
    if v >= TRUSTED_CERTS {
        out["trusted_image_certificates"] = Value::Null;
    }
    if v >= SERVER_GROUPS {
        out["server_groups"] = json!([]);
    }
    if v >= LOCKED_REASON {
        out["locked_reason"] = Value::Null;
    }
    if let (VmState::Error, Some(fault)) = (s.vm_state, &s.fault) {
        let mut f = json!({
            "code": fault.code,
            "message": fault.message,
            "created": Timestamp(fault.created).to_rfc3339(),
        });
        if ctx.is_admin() || fault.code != 500 {
            f["details"] = json!(fault
                .details
                .clone()
                .unwrap_or_else(|| fault.message.clone()));
        }
        out["fault"] = f;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::servers::store::{
        BootConfig, FlavorSnapshot, PowerState, ServerFault, TaskState,
    };
    use std::collections::BTreeMap;

    fn server() -> Server {
        Server {
            seq: 7,
            id: "s1".into(),
            name: "My VM_1".into(),
            description: Some("d".into()),
            project_id: "p".into(),
            user_id: "u".into(),
            flavor: FlavorSnapshot {
                id: "42".into(),
                name: "m1.tiny".into(),
                vcpus: 1,
                ram: 128,
                disk: 1,
                ephemeral: 0,
                swap: 0,
                extra_specs: BTreeMap::from([("k".into(), "v".into())]),
            },
            image_ref: "img".into(),
            boot: BootConfig {
                kernel: "/k".into(),
                initrd: None,
                boot_args: String::new(),
                root_source: None,
                kernel_id: None,
                ramdisk_id: None,
                images: Vec::new(),
                root_volume: None,
                block_devices: Vec::new(),
                shutdown_timeout_secs: None,
            },
            vm_state: VmState::Active,
            task_state: None,
            power_state: PowerState::Running,
            host: Some("box".into()),
            fault: None,
            metadata: BTreeMap::new(),
            user_data: None,
            key_name: None,
            key_data: None,
            admin_pass: Some("never-shown".into()),
            config_drive: String::new(),
            disk_config: "MANUAL".into(),
            networks: json!("none"),
            monitor: None,
            resize: None,
            placement: Default::default(),
            created_at: Timestamp(0),
            updated_at: None,
            launched_at: Some(Timestamp(1_500_000)),
        }
    }

    fn ctx(admin: bool) -> RequestContext {
        RequestContext {
            user_id: "u".into(),
            user_name: "user".into(),
            project_id: Some("p".into()),
            project_name: Some("p".into()),
            roles: if admin {
                vec!["admin".into()]
            } else {
                vec!["member".into()]
            },
        }
    }

    #[test]
    fn the_flavor_is_embedded_from_2_47() {
        let old = detail(&server(), &ctx(false), "http://h", ApiVersion::new(2, 1));
        assert_eq!(old["flavor"]["id"], "42");
        assert_eq!(
            old["flavor"]["links"][0]["href"],
            "http://h/compute/flavors/42"
        );
        assert!(old.get("description").is_none());
        assert!(old.get("OS-EXT-SRV-ATTR:host").is_none());
        let new = detail(&server(), &ctx(true), "http://h", ApiVersion::new(2, 75));
        assert_eq!(new["flavor"]["original_name"], "m1.tiny");
        assert_eq!(new["flavor"]["extra_specs"]["k"], "v");
        assert!(new["flavor"].get("id").is_none());
        assert_eq!(new["status"], "ACTIVE");
        assert_eq!(new["OS-EXT-STS:power_state"], 1);
        assert_eq!(new["OS-EXT-SRV-ATTR:host"], "box");
        assert_eq!(new["OS-EXT-SRV-ATTR:hostname"], "my-vm-1");
        assert_eq!(new["OS-EXT-SRV-ATTR:instance_name"], "instance-00000007");
        assert_eq!(new["OS-SRV-USG:launched_at"], "1970-01-01T00:00:01.500000");
        assert_eq!(new["host_status"], "UP");
        assert_eq!(new["locked"], false);
        assert_eq!(new["description"], "d");
        assert_eq!(new["hostId"].as_str().unwrap().len(), 56);
        assert!(new.get("fault").is_none());
    }

    #[test]
    fn a_server_is_in_the_zone_it_asked_for_else_in_its_host_s() {
        let zones: BTreeMap<String, String> = [("box".to_owned(), "edge-1".to_owned())].into();
        let mut s = server();
        assert_eq!(availability_zone(&s, &zones), "edge-1");
        assert_eq!(availability_zone(&s, &BTreeMap::new()), "nova");
        s.placement.availability_zone = Some("asked".into());
        assert_eq!(availability_zone(&s, &zones), "asked");
        s.placement.availability_zone = None;
        s.host = None;
        assert_eq!(availability_zone(&s, &zones), "");
    }

    #[test]
    fn faults_show_in_error_with_details_for_admins() {
        let mut s = server();
        s.vm_state = VmState::Error;
        s.task_state = Some(TaskState::Deleting);
        s.fault = Some(ServerFault {
            code: 500,
            message: "No valid host was found.".into(),
            details: None,
            created: 0,
        });
        let member = detail(&s, &ctx(false), "http://h", ApiVersion::new(2, 1));
        assert_eq!(member["status"], "ERROR");
        assert_eq!(member["fault"]["message"], "No valid host was found.");
        assert!(member["fault"].get("details").is_none());
        let admin = detail(&s, &ctx(true), "http://h", ApiVersion::new(2, 1));
        assert_eq!(admin["fault"]["details"], "No valid host was found.");
    }

    #[test]
    fn the_admin_password_is_in_no_view() {
        let s = server();
        let views = [
            summary(&s, "http://h"),
            created(&s, "http://h", &[]),
            detail(&s, &ctx(false), "http://h", ApiVersion::new(2, 1)),
            detail(&s, &ctx(true), "http://h", ApiVersion::new(2, 75)),
        ];
        for v in views {
            let text = v.to_string();
            assert!(!text.contains("never-shown"), "{text}");
            assert!(v.get("adminPass").is_none() && v.get("admin_pass").is_none());
        }
    }
}
