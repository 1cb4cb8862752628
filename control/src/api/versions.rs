//! Version discovery documents, in the shapes keystoneauth's discovery parses: Keystone's
//! `{"versions": {"values": [...]}}` (300) and `{"version": ...}`; Nova's and Cinder's lists
//! with `version`/`min_version` (the microversion range); Glance's list (300 at the root, 200
//! at `/versions`); Neutron's list.

use super::microversion::{Microversions, COMPUTE, VOLUME};
use super::{Call, Fault, Reply};
use hyper::StatusCode;
use serde_json::{json, Value};

fn base<'a>(call: &'a Call<'_>) -> &'a str {
    &call.state.base_url
}

fn self_link(href: String) -> Value {
    json!([{"rel": "self", "href": href}])
}

fn keystone_v3(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": self_link(format!("{base}/identity/v3/")),
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"
        }]
    })
}

pub fn identity_versions(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = json!({"versions": {"values": [keystone_v3(base(call))]}});
    Ok(Reply::json(StatusCode::MULTIPLE_CHOICES, body))
}

pub fn identity_v3(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(json!({"version": keystone_v3(base(call))})))
}

/// A microversioned API's entry: `version` is the maximum microversion, `min_version` the
/// minimum, as Nova and Cinder publish them.
fn microversioned(id: &str, href: String, range: &Microversions, media: &str) -> Value {
    json!({
        "id": id,
        "status": "CURRENT",
        "version": range.max.to_string(),
        "min_version": range.min.to_string(),
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": href},
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}
        ],
        "media-types": [{"base": "application/json", "type": media}]
    })
}

fn nova_v21(base: &str) -> Value {
    microversioned(
        "v2.1",
        format!("{base}/compute/v2.1/"),
        &COMPUTE,
        "application/vnd.openstack.compute+json;version=2.1",
    )
}

pub fn compute_versions(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(json!({"versions": [nova_v21(base(call))]})))
}

pub fn compute_v21(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(json!({"version": nova_v21(base(call))})))
}

fn cinder_v3(base: &str) -> Value {
    microversioned(
        "v3.0",
        format!("{base}/volume/v3/"),
        &VOLUME,
        "application/vnd.openstack.volume+json;version=3",
    )
}

pub fn volume_versions(call: &Call<'_>) -> Result<Reply, Fault> {
    let body = json!({"versions": [cinder_v3(base(call))]});
    Ok(Reply::json(StatusCode::MULTIPLE_CHOICES, body))
}

/// Cinder answers its versioned root with the same list form, holding v3 only.
pub fn volume_v3(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(json!({"versions": [cinder_v3(base(call))]})))
}

fn glance_versions(base: &str) -> Value {
    // Glance lists each v2 minor it supports; the newest is CURRENT.
    let entry = |id: &str, status: &str| json!({"id": id, "status": status, "links": self_link(format!("{base}/image/v2/"))});
    json!({"versions": [entry("v2.9", "CURRENT"), entry("v2.0", "SUPPORTED")]})
}

pub fn image_versions(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::json(
        StatusCode::MULTIPLE_CHOICES,
        glance_versions(base(call)),
    ))
}

pub fn image_versions_list(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(glance_versions(base(call))))
}

/// Neutron's `GET /v2.0/`: the core resources served (no subnet pools here), each with the
/// link to its collection.
pub fn network_v2(call: &Call<'_>) -> Result<Reply, Fault> {
    let resources: Vec<Value> = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
    ]
    .iter()
    .map(|(name, collection)| {
        json!({
            "name": name,
            "collection": collection,
            "links": self_link(format!("{}/network/v2.0/{collection}", base(call))),
        })
    })
    .collect();
    Ok(Reply::ok(json!({ "resources": resources })))
}

pub fn network_versions(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": self_link(format!("{}/network/v2.0/", base(call)))
    }]})))
}
