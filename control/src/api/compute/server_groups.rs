//! `/compute/v2.1/os-server-groups`: create, list, show, delete. The body and the view follow
//! the microversion: `policies` (one of two, four from 2.15) until 2.63, `policy` and
//! `rules.max_server_per_host` from 2.64; `project_id` and `user_id` from 2.13.

use super::version;
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::compute::server_groups::{self, NewServerGroup, ServerGroup};
use hyper::StatusCode;
use outpost_resources::GroupPolicy;
use serde_json::{json, Map, Value};

const OWNER_FIELDS: ApiVersion = ApiVersion::new(2, 13);
const SOFT_POLICIES: ApiVersion = ApiVersion::new(2, 15);
const POLICY_AND_RULES: ApiVersion = ApiVersion::new(2, 64);

/// The policies a microversion accepts, in the order Nova's schema lists them.
fn policies_at(v: ApiVersion) -> &'static [GroupPolicy] {
    const ALL: [GroupPolicy; 4] = [
        GroupPolicy::AntiAffinity,
        GroupPolicy::Affinity,
        GroupPolicy::SoftAntiAffinity,
        GroupPolicy::SoftAffinity,
    ];
    if v >= SOFT_POLICIES {
        &ALL
    } else {
        &ALL[..2]
    }
}

fn invalid(field: &str, value: &Value, why: &str) -> Fault {
    Fault::bad_request(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}

/// One policy name checked against the microversion's list (jsonschema's `enum` message).
fn policy(field: &str, value: &Value, v: ApiVersion) -> Result<GroupPolicy, Fault> {
    let allowed = policies_at(v);
    value
        .as_str()
        .and_then(|name| name.parse().ok())
        .filter(|p| allowed.contains(p))
        .ok_or_else(|| {
            let names: Vec<String> = allowed.iter().map(|p| format!("'{p}'")).collect();
            invalid(
                field,
                value,
                &format!("{value} is not one of [{}]", names.join(", ")),
            )
        })
}

/// The create body, checked as Nova's schema for the microversion checks it.
fn parse_create(body: &Value, v: ApiVersion) -> Result<NewServerGroup, Fault> {
    let group = body
        .as_object()
        .and_then(|b| b.get("server_group"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Fault::bad_request(
                "Invalid input for field/attribute server_group. 'server_group' is a required \
                 property",
            )
        })?;
    let modern = v >= POLICY_AND_RULES;
    let known: &[&str] = if modern {
        &["name", "policy", "rules"]
    } else {
        &["name", "policies"]
    };
    if let Some(extra) = group.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Fault::bad_request(format!(
            "Invalid input for field/attribute server_group. Additional properties are not \
             allowed ('{extra}' was unexpected)"
        )));
    }
    let required = |name: &str| {
        group.get(name).ok_or_else(|| {
            Fault::bad_request(format!(
                "Invalid input for field/attribute server_group. '{name}' is a required property"
            ))
        })
    };
    let name = required("name")?;
    let name = name
        .as_str()
        .ok_or_else(|| invalid("name", name, &format!("{name} is not of type 'string'")))?
        .to_owned();
    if !modern {
        let policies = required("policies")?;
        let list = policies
            .as_array()
            .ok_or_else(|| invalid("policies", policies, "It must be a list"))?;
        let [only] = list.as_slice() else {
            let why = if list.is_empty() {
                format!("{policies} is too short")
            } else {
                format!("{policies} is too long")
            };
            return Err(invalid("policies", policies, &why));
        };
        return Ok(NewServerGroup {
            name,
            policy: policy("0", only, v)?,
            max_server_per_host: None,
        });
    }
    let policy = policy("policy", required("policy")?, v)?;
    let max_server_per_host = match group.get("rules") {
        None => None,
        Some(rules) => max_server_per_host(rules)?,
    };
    Ok(NewServerGroup {
        name,
        policy,
        max_server_per_host,
    })
}

/// `rules`: at most `max_server_per_host`, a positive integer (a number or its digits).
fn max_server_per_host(rules: &Value) -> Result<Option<u32>, Fault> {
    let rules: &Map<String, Value> = rules
        .as_object()
        .ok_or_else(|| invalid("rules", rules, &format!("{rules} is not of type 'object'")))?;
    if let Some(extra) = rules.keys().find(|k| *k != "max_server_per_host") {
        return Err(Fault::bad_request(format!(
            "Invalid input for field/attribute rules. Additional properties are not allowed \
             ('{extra}' was unexpected)"
        )));
    }
    let Some(value) = rules.get("max_server_per_host") else {
        return Ok(None);
    };
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .filter(|n| (1..=crate::compute::MAX_INT as u64).contains(&u64::from(*n)));
    n.map(Some).ok_or_else(|| {
        invalid(
            "max_server_per_host",
            value,
            &format!("{value} is not a positive integer"),
        )
    })
}

/// A group as Nova renders it at `v`.
fn view(g: &ServerGroup, v: ApiVersion) -> Value {
    let mut out = json!({
        "id": g.id,
        "name": g.name,
        "members": g.members,
    });
    if v >= POLICY_AND_RULES {
        out["policy"] = json!(g.policy.as_str());
        out["rules"] = match g.max_server_per_host {
            Some(max) => json!({"max_server_per_host": max}),
            None => json!({}),
        };
    } else {
        out["policies"] = json!([g.policy.as_str()]);
        out["metadata"] = json!({});
    }
    if v >= OWNER_FIELDS {
        out["project_id"] = json!(g.project_id);
        out["user_id"] = json!(g.user_id);
    }
    out
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: Value = call.json()?;
    let new = parse_create(&body, version(call))?;
    let g = server_groups::create(
        call.state.fleet.server_groups(),
        &call.state.doors.quotas,
        call.ctx(),
        new,
    )?;
    Ok(Reply::ok(json!({"server_group": view(&g, version(call))})))
}

/// Nova's `limit` and `offset`: non-negative integers.
fn paging(call: &Call<'_>, name: &str) -> Result<Option<usize>, Fault> {
    call.query(name)
        .map(|raw| {
            raw.parse::<usize>().map_err(|_| {
                Fault::bad_request(format!(
                    "Invalid input for query parameters {name}. Value: {raw}. '{raw}' does not \
                     match '^[0-9]*$'"
                ))
            })
        })
        .transpose()
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    // Nova reads the parameter's presence, whatever its value.
    let all_projects = call.query("all_projects").is_some();
    let limit = paging(call, "limit")?
        .unwrap_or(crate::compute::MAX_PAGE)
        .min(crate::compute::MAX_PAGE);
    let offset = paging(call, "offset")?.unwrap_or(0);
    let groups = server_groups::list(call.state.fleet.server_groups(), call.ctx(), all_projects)?;
    let v = version(call);
    let page: Vec<Value> = groups
        .iter()
        .skip(offset)
        .take(limit)
        .map(|g| view(g, v))
        .collect();
    Ok(Reply::ok(json!({"server_groups": page})))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let g = server_groups::get(
        call.state.fleet.server_groups(),
        call.ctx(),
        call.param("server_group_id"),
    )?;
    Ok(Reply::ok(json!({"server_group": view(&g, version(call))})))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    server_groups::delete(
        call.state.fleet.server_groups(),
        call.ctx(),
        call.param("server_group_id"),
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: ApiVersion = ApiVersion::new(2, 1);
    const SOFT: ApiVersion = ApiVersion::new(2, 15);
    const NEW: ApiVersion = ApiVersion::new(2, 64);

    fn parse(body: Value, v: ApiVersion) -> Result<NewServerGroup, String> {
        parse_create(&body, v).map_err(|f| f.message)
    }

    #[test]
    fn bodies_follow_the_microversion() {
        let old = parse(
            json!({"server_group": {"name": "g", "policies": ["anti-affinity"]}}),
            OLD,
        )
        .unwrap();
        assert_eq!(
            (old.policy, old.max_server_per_host),
            (GroupPolicy::AntiAffinity, None)
        );
        assert_eq!(
            parse(
                json!({"server_group": {"name": "g", "policies": ["soft-affinity"]}}),
                OLD
            )
            .unwrap_err(),
            "Invalid input for field/attribute 0. Value: \"soft-affinity\". \"soft-affinity\" \
             is not one of ['anti-affinity', 'affinity']"
        );
        assert_eq!(
            parse(
                json!({"server_group": {"name": "g", "policies": ["soft-affinity"]}}),
                SOFT
            )
            .unwrap()
            .policy,
            GroupPolicy::SoftAffinity
        );
        let new = parse(
            json!({"server_group": {"name": "g", "policy": "anti-affinity",
                                    "rules": {"max_server_per_host": 3}}}),
            NEW,
        )
        .unwrap();
        assert_eq!(new.max_server_per_host, Some(3));
        assert_eq!(
            parse(
                json!({"server_group": {"name": "g", "policies": ["affinity"]}}),
                NEW
            )
            .unwrap_err(),
            "Invalid input for field/attribute server_group. Additional properties are not \
             allowed ('policies' was unexpected)"
        );
        assert_eq!(
            parse(
                json!({"server_group": {"name": "g", "policy": "affinity"}}),
                OLD
            )
            .unwrap_err(),
            "Invalid input for field/attribute server_group. Additional properties are not \
             allowed ('policy' was unexpected)"
        );
    }

    #[test]
    fn bad_bodies_are_refused_in_nova_s_words() {
        for (body, v, message) in [
            (json!({}), NEW, "'server_group' is a required property"),
            (
                json!({"server_group": {"policy": "affinity"}}),
                NEW,
                "'name' is a required property",
            ),
            (
                json!({"server_group": {"name": "g"}}),
                NEW,
                "'policy' is a required property",
            ),
            (
                json!({"server_group": {"name": "g", "policies": []}}),
                OLD,
                "[] is too short",
            ),
            (
                json!({"server_group": {"name": "g", "policies": ["affinity", "anti-affinity"]}}),
                OLD,
                "is too long",
            ),
            (
                json!({"server_group": {"name": "g", "policy": "anti-affinity",
                                        "rules": {"max_server_per_host": 0}}}),
                NEW,
                "0 is not a positive integer",
            ),
            (
                json!({"server_group": {"name": "g", "policy": "anti-affinity",
                                        "rules": {"max_servers": 2}}}),
                NEW,
                "('max_servers' was unexpected)",
            ),
            (
                json!({"server_group": {"name": 5, "policy": "affinity"}}),
                NEW,
                "is not of type 'string'",
            ),
        ] {
            let got = parse(body.clone(), v).unwrap_err();
            assert!(got.contains(message), "{body}: {got}");
        }
    }

    #[test]
    fn views_follow_the_microversion() {
        let g = ServerGroup {
            seq: 1,
            id: "g1".into(),
            name: "web".into(),
            project_id: "p".into(),
            user_id: "u".into(),
            policy: GroupPolicy::AntiAffinity,
            max_server_per_host: Some(2),
            members: vec!["s1".into()],
            created_at: crate::timestamp::Timestamp(0),
        };
        assert_eq!(
            view(&g, OLD),
            json!({"id": "g1", "name": "web", "members": ["s1"],
                   "policies": ["anti-affinity"], "metadata": {}})
        );
        assert_eq!(
            view(&g, NEW),
            json!({"id": "g1", "name": "web", "members": ["s1"], "policy": "anti-affinity",
                   "rules": {"max_server_per_host": 2}, "project_id": "p", "user_id": "u"})
        );
        assert_eq!(view(&g, SOFT)["project_id"], "p");
    }
}
