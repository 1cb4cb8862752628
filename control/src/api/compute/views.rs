//! Nova's JSON for flavors. Fields by microversion: `description` from 2.55, `extra_specs`
//! from 2.61, and `swap` is "" when zero before 2.75 and an integer always from 2.75.

use crate::api::microversion::ApiVersion;
use crate::compute::flavors::Flavor;
use serde_json::{json, Value};

const DESCRIPTION: ApiVersion = ApiVersion::new(2, 55);
const EXTRA_SPECS: ApiVersion = ApiVersion::new(2, 61);
const SWAP_AS_INT: ApiVersion = ApiVersion::new(2, 75);

fn links(f: &Flavor, base_url: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base_url}/compute/v2.1/flavors/{}", f.id)},
        {"rel": "bookmark", "href": format!("{base_url}/compute/flavors/{}", f.id)},
    ])
}

/// The entry of `GET /flavors`.
pub fn summary(f: &Flavor, base_url: &str, v: ApiVersion) -> Value {
    let mut out = json!({"id": f.id, "name": f.name, "links": links(f, base_url)});
    if v >= DESCRIPTION {
        out["description"] = json!(f.description);
    }
    out
}

/// The full flavor, as in `GET /flavors/{id}` and `GET /flavors/detail`.
pub fn detail(f: &Flavor, base_url: &str, v: ApiVersion) -> Value {
    let swap = if f.swap == 0 && v < SWAP_AS_INT {
        json!("")
    } else {
        json!(f.swap)
    };
    let mut out = json!({
        "id": f.id,
        "name": f.name,
        "ram": f.ram,
        "vcpus": f.vcpus,
        "disk": f.disk,
        "swap": swap,
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral,
        "OS-FLV-DISABLED:disabled": f.disabled,
        "os-flavor-access:is_public": f.is_public,
        "rxtx_factor": f.rxtx_factor,
        "links": links(f, base_url),
    });
    if v >= DESCRIPTION {
        out["description"] = json!(f.description);
    }
    if v >= EXTRA_SPECS {
        out["extra_specs"] = json!(f.extra_specs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;
    use std::collections::BTreeMap;

    fn flavor(swap: i64) -> Flavor {
        Flavor {
            seq: 1,
            id: "1".into(),
            name: "m1.tiny".into(),
            ram: 512,
            vcpus: 1,
            disk: 1,
            ephemeral: 0,
            swap,
            rxtx_factor: 1.0,
            is_public: true,
            disabled: false,
            description: Some("d".into()),
            extra_specs: BTreeMap::from([("k".into(), "v".into())]),
            created_at: Timestamp(0),
            updated_at: None,
        }
    }

    #[test]
    fn fields_follow_the_microversion() {
        let base = "http://h";
        let old = detail(&flavor(0), base, ApiVersion::new(2, 1));
        assert_eq!(old["swap"], "");
        assert!(old.get("description").is_none());
        assert!(old.get("extra_specs").is_none());
        assert_eq!(old["links"][0]["href"], "http://h/compute/v2.1/flavors/1");
        assert_eq!(old["links"][1]["href"], "http://h/compute/flavors/1");
        let v255 = detail(&flavor(512), base, ApiVersion::new(2, 55));
        assert_eq!(v255["swap"], 512);
        assert_eq!(v255["description"], "d");
        assert!(v255.get("extra_specs").is_none());
        let v261 = detail(&flavor(0), base, ApiVersion::new(2, 61));
        assert_eq!(v261["extra_specs"]["k"], "v");
        assert_eq!(v261["swap"], "");
        let v275 = detail(&flavor(0), base, ApiVersion::new(2, 75));
        assert_eq!(v275["swap"], 0);
        let s = summary(&flavor(0), base, ApiVersion::new(2, 55));
        assert_eq!(s["description"], "d");
        assert!(s.get("ram").is_none());
    }
}
