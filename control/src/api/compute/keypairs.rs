//! `/compute/v2.1/os-keypairs`: create (generate or import), list, show, delete. By
//! microversion: `type` from 2.2 (and create answers 201, delete 204), another user's pairs
//! for an admin through `user_id` from 2.10, `limit` and `marker` paging from 2.35.

use super::version;
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::compute::keypairs::{self, KeyPair, KeyPairQuery, KeyType, NewKeyPair};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

const KEY_TYPE: ApiVersion = ApiVersion::new(2, 2);
const USER_ID: ApiVersion = ApiVersion::new(2, 10);
const PAGING: ApiVersion = ApiVersion::new(2, 35);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    keypair: KeyPairCreate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPairCreate {
    name: String,
    public_key: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    user_id: Option<String>,
}

fn unexpected(field: &str, since: ApiVersion) -> Fault {
    Fault::bad_request(format!(
        "Invalid input for field/attribute keypair. Additional properties are not allowed \
         ('{field}' was unexpected before microversion {since})"
    ))
}

/// The fields every view has; `type` from 2.2.
fn common(k: &KeyPair, v: ApiVersion) -> Value {
    let mut out = json!({
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
    });
    if v >= KEY_TYPE {
        out["type"] = json!(k.key_type.as_str());
    }
    out
}

/// `GET /os-keypairs/{name}`: Nova's database row, soft-delete columns and all.
fn detail(k: &KeyPair, v: ApiVersion) -> Value {
    let mut out = common(k, v);
    out["user_id"] = json!(k.user_id);
    out["id"] = json!(k.seq);
    // Nova writes its database's naive UTC datetime: micros, no zone suffix.
    let created = k.created_at.to_rfc3339_micros();
    out["created_at"] = json!(created.trim_end_matches('Z'));
    out["updated_at"] = Value::Null;
    out["deleted_at"] = Value::Null;
    out["deleted"] = json!(false);
    out
}

/// `user_id` as a query parameter, from 2.10; ignored before, as Nova ignores it.
fn user_id(call: &Call<'_>) -> Option<String> {
    (version(call) >= USER_ID)
        .then(|| call.query("user_id").map(str::to_owned))
        .flatten()
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let v = version(call);
    let body: CreateBody = call.json()?;
    let b = body.keypair;
    if b.key_type.is_some() && v < KEY_TYPE {
        return Err(unexpected("type", KEY_TYPE));
    }
    if b.user_id.is_some() && v < USER_ID {
        return Err(unexpected("user_id", USER_ID));
    }
    let key_type = match b.key_type.as_deref() {
        None => KeyType::Ssh,
        Some(t) => KeyType::parse(t).ok_or_else(|| {
            Fault::bad_request(format!(
                "Invalid input for field/attribute type. Value: {t}. '{t}' is not one of \
                 ['ssh', 'x509']"
            ))
        })?,
    };
    let new = NewKeyPair {
        name: b.name,
        key_type,
        public_key: b.public_key,
        user_id: b.user_id,
    };
    let created = keypairs::create(
        call.state.keypairs(),
        &call.state.doors.quotas,
        call.ctx(),
        new,
    )?;
    let mut view = common(&created.pair, v);
    view["user_id"] = json!(created.pair.user_id);
    if let Some(private) = &created.private_key {
        view["private_key"] = json!(private.as_str());
    }
    let status = if v >= KEY_TYPE {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Reply::json(status, json!({"keypair": view})))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let k = keypairs::get(
        call.state.keypairs(),
        call.ctx(),
        user_id(call).as_deref(),
        call.param("keypair_name"),
    )?;
    Ok(Reply::ok(json!({"keypair": detail(&k, version(call))})))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    keypairs::delete(
        call.state.keypairs(),
        call.ctx(),
        user_id(call).as_deref(),
        call.param("keypair_name"),
    )?;
    Ok(Reply::empty(if version(call) >= KEY_TYPE {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    }))
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    let v = version(call);
    let q = query(call)?;
    let page = keypairs::list(call.state.keypairs(), call.ctx(), &q)?;
    let mut body = json!({
        "keypairs": page
            .iter()
            .map(|k| json!({"keypair": common(k, v)}))
            .collect::<Vec<_>>()
    });
    // From 2.35 a full page links to the next, as Nova's other paged lists do.
    if let (Some(limit), Some(last)) = (q.limit, page.last()) {
        if page.len() >= limit {
            let href = format!(
                "{}/compute/v2.1/os-keypairs?{}",
                call.state.base_url,
                call.next_page_query(&last.name)
            );
            body["keypairs_links"] = json!([{"rel": "next", "href": href}]);
        }
    }
    Ok(Reply::ok(body))
}

/// Nova's list parameters by microversion; unknown ones are ignored, as Nova does.
fn query(call: &Call<'_>) -> Result<KeyPairQuery, Fault> {
    let mut q = KeyPairQuery {
        user_id: user_id(call),
        ..Default::default()
    };
    if version(call) < PAGING {
        return Ok(q);
    }
    if let Some(v) = call.query("limit") {
        let n: usize = v.parse().map_err(|_| {
            Fault::bad_request(format!(
                "Invalid input for query parameters limit. Value: {v}. It must be a \
                 non-negative integer."
            ))
        })?;
        // Nova reads 0 as "no limit" (its maximum page).
        q.limit = (n > 0).then_some(n);
    }
    q.marker = call.query("marker").map(str::to_owned);
    Ok(q)
}
