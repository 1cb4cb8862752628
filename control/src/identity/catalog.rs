//! The service catalog a scoped token carries: where each OpenStack service of this appliance
//! answers. Every service is served by the same listener under a devstack-style prefix, so the
//! public, internal and admin endpoints of a service are the same URL.

use crate::random;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub interface: &'static str,
    pub region: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: String,
    pub service_type: &'static str,
    pub name: &'static str,
    pub endpoints: Vec<Endpoint>,
}

/// (type, name, path under the base URL). Cinder is listed under both its current type,
/// `block-storage`, and `volumev3`, which older clients still look up.
const SERVICES: [(&str, &str, &str); 6] = [
    ("identity", "keystone", "/identity"),
    ("compute", "nova", "/compute/v2.1"),
    ("image", "glance", "/image"),
    ("block-storage", "cinder", "/volume/v3/{project_id}"),
    ("volumev3", "cinderv3", "/volume/v3/{project_id}"),
    ("network", "neutron", "/network"),
];

const INTERFACES: [&str; 3] = ["public", "internal", "admin"];

/// Stable ids: the catalog is derived from configuration, not stored, yet clients may
/// remember endpoint ids between tokens.
fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    random::hex(&h.finalize()[..16])
}

/// The catalog for a token scoped to `project_id`, with URLs under `base_url` (no trailing
/// slash).
pub fn for_project(base_url: &str, region: &str, project_id: &str) -> Vec<Service> {
    SERVICES
        .iter()
        .map(|&(service_type, name, path)| {
            let url = format!("{base_url}{}", path.replace("{project_id}", project_id));
            Service {
                id: stable_id(&[service_type]),
                service_type,
                name,
                endpoints: INTERFACES
                    .iter()
                    .map(|&interface| Endpoint {
                        id: stable_id(&[service_type, interface, region]),
                        interface,
                        region: region.to_owned(),
                        url: url.clone(),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_three_interfaces_under_the_base_url() {
        let c = for_project("http://10.0.0.1:5000", "RegionOne", "p1");
        let types: Vec<_> = c.iter().map(|s| s.service_type).collect();
        assert_eq!(
            types,
            [
                "identity",
                "compute",
                "image",
                "block-storage",
                "volumev3",
                "network"
            ]
        );
        for s in &c {
            assert_eq!(s.endpoints.len(), 3);
            assert!(s.endpoints.iter().all(|e| e.region == "RegionOne"));
        }
        assert_eq!(c[3].endpoints[0].url, "http://10.0.0.1:5000/volume/v3/p1");
        assert_eq!(c[1].endpoints[2].url, "http://10.0.0.1:5000/compute/v2.1");
        // Ids are stable across calls and distinct per endpoint.
        assert_eq!(c, for_project("http://10.0.0.1:5000", "RegionOne", "p1"));
        assert_ne!(c[0].endpoints[0].id, c[0].endpoints[1].id);
    }
}
