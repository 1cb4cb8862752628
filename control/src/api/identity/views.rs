//! Keystone's JSON for tokens, projects, users and roles.

use crate::identity::catalog;
use crate::identity::store::{Project, Role, User};
use crate::identity::tokens::TokenInfo;
use crate::identity::{DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use serde_json::{json, Value};

fn domain() -> Value {
    json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME})
}

pub fn token(info: &TokenInfo, base_url: &str, region: &str, with_catalog: bool) -> Value {
    let mut token = json!({
        "methods": info.methods,
        "user": {
            "id": info.user.id,
            "name": info.user.name,
            "domain": domain(),
            "password_expires_at": null,
        },
        "audit_ids": [info.audit_id],
        "issued_at": info.issued_at.to_rfc3339_micros(),
        "expires_at": info.expires_at.to_rfc3339_micros(),
    });
    if let Some(p) = &info.project {
        token["project"] = json!({"id": p.id, "name": p.name, "domain": domain()});
        token["is_domain"] = json!(false);
        token["roles"] = info
            .roles
            .iter()
            .map(|r| json!({"id": r.id, "name": r.name}))
            .collect();
        if with_catalog {
            token["catalog"] = catalog_of(base_url, region, &p.id);
        }
    }
    json!({ "token": token })
}

/// The service catalog of a token scoped to `project_id`.
pub fn catalog_of(base_url: &str, region: &str, project_id: &str) -> Value {
    catalog::for_project(base_url, region, project_id)
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "type": s.service_type,
                "name": s.name,
                "endpoints": s.endpoints.into_iter().map(|e| json!({
                    "id": e.id,
                    "interface": e.interface,
                    "region": e.region,
                    "region_id": e.region,
                    "url": e.url,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The one domain there is, as Keystone shows a domain.
pub fn default_domain(base_url: &str) -> Value {
    json!({"domain": {
        "id": DEFAULT_DOMAIN_ID,
        "name": DEFAULT_DOMAIN_NAME,
        "description": "The domain every project and user is in.",
        "enabled": true,
        "tags": [],
        "options": {},
        "links": links(base_url, "domains", DEFAULT_DOMAIN_ID),
    }})
}

fn links(base_url: &str, collection: &str, id: &str) -> Value {
    json!({"self": format!("{base_url}/identity/v3/{collection}/{id}")})
}

pub fn project(p: &Project, base_url: &str) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "domain_id": DEFAULT_DOMAIN_ID,
        "enabled": p.enabled,
        "is_domain": false,
        "parent_id": DEFAULT_DOMAIN_ID,
        "tags": [],
        "options": {},
        "links": links(base_url, "projects", &p.id),
    })
}

pub fn user(u: &User, base_url: &str) -> Value {
    let mut v = json!({
        "id": u.id,
        "name": u.name,
        "domain_id": DEFAULT_DOMAIN_ID,
        "enabled": u.enabled,
        "password_expires_at": null,
        "options": {},
        "links": links(base_url, "users", &u.id),
    });
    // Keystone leaves unset optional attributes out of the body.
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    if !u.description.is_empty() {
        v["description"] = json!(u.description);
    }
    v
}

pub fn role(r: &Role, base_url: &str) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "domain_id": null,
        "description": r.description,
        "options": {},
        "links": links(base_url, "roles", &r.id),
    })
}

/// A collection: `{"<key>": [...], "links": {"self", "previous", "next"}}`.
pub fn collection(key: &str, items: Vec<Value>, base_url: &str) -> Value {
    json!({
        key: items,
        "links": {
            "self": format!("{base_url}/identity/v3/{key}"),
            "previous": null,
            "next": null,
        }
    })
}
