//! outpostd's request parsing, the part every tenant reaches before a handler acts:
//! routing (path matching and parameter decoding), the query string, the microversion
//! headers, and the bodies of the requests whose parsers are domain types (Neutron's
//! create requests, Glance's JSON-patch in both dialects, an imported key pair's public
//! key). Handlers that act on a request are left out: they need a database and a host to act
//! on.

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method};
use outpost_control::api::microversion::{COMPUTE, VOLUME};
use outpost_control::api::request::parse_query;
use outpost_control::api::routes::{Router, ROUTES};
use outpost_control::network::{groups, networks, ports, subnets};
use serde_json::Value;

/// Requests per input.
const MAX_REQUESTS: usize = 8;
const METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
];
const HEADERS: &[&str] = &[
    "openstack-api-version",
    "x-openstack-nova-api-version",
    "x-auth-token",
    "content-type",
];

pub fn requests(data: &[u8]) {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    let router = ROUTER.get_or_init(Router::new);
    let mut u = Unstructured::new(data);
    let _ = script(&mut u, router);
}

fn script(u: &mut Unstructured<'_>, router: &Router) -> Result<()> {
    for _ in 0..MAX_REQUESTS {
        if u.is_empty() {
            break;
        }
        let method = u.choose(METHODS)?.clone();
        // A route's own path with its `{param}`s filled in, or anything.
        let target: String = if u.ratio(3, 4)? {
            let route = u.choose(ROUTES)?;
            let mut target = String::new();
            for segment in route.path.split('/').skip(1) {
                target.push('/');
                if segment.starts_with('{') {
                    target.push_str(u.arbitrary()?);
                } else {
                    target.push_str(segment);
                }
            }
            if u.arbitrary()? {
                target.push('?');
                target.push_str(u.arbitrary()?);
            }
            target
        } else {
            u.arbitrary()?
        };
        let mut headers = HeaderMap::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let name = HeaderName::from_static(u.choose(HEADERS)?);
            if let Ok(value) = HeaderValue::from_bytes(crate::bytes_up_to(u, 40)?) {
                headers.append(name, value);
            }
        }
        let body = crate::bytes_up_to(u, 1024)?;

        let _ = router.body_kind(&method, &target);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let _ = router.resolve(&method, path.trim_end_matches('/'));
        let _ = parse_query(query);
        let _ = COMPUTE.negotiate(&headers);
        let _ = VOLUME.negotiate(&headers);
        parse_body(body);
    }
    Ok(())
}

/// A JSON body as each domain parser takes it.
fn parse_body(body: &[u8]) {
    // An imported key pair's public key line, as `os-keypairs` vets it.
    if let Ok(line) = std::str::from_utf8(body) {
        let _ = outpost_control::compute::keypairs::fingerprint_of(line);
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let _ =
        outpost_control::image::patch::parse(&value, outpost_control::image::patch::Dialect::V21);
    let _ =
        outpost_control::image::patch::parse(&value, outpost_control::image::patch::Dialect::V20);
    let _ = serde_json::from_value::<networks::NewNetwork>(value.clone());
    let _ = serde_json::from_value::<networks::NetworkUpdate>(value.clone());
    let _ = serde_json::from_value::<subnets::NewSubnet>(value.clone());
    let _ = serde_json::from_value::<subnets::SubnetUpdate>(value.clone());
    let _ = serde_json::from_value::<ports::NewPort>(value.clone());
    let _ = serde_json::from_value::<ports::PortUpdate>(value.clone());
    let _ = serde_json::from_value::<groups::NewGroup>(value.clone());
    let _ = serde_json::from_value::<groups::GroupUpdate>(value.clone());
    let _ = serde_json::from_value::<groups::NewRule>(value);
}
