//! `/compute/v2.1/flavors`: list, detail, show, create, update (2.55+), delete.

use super::{nova_types, present, version, views};
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::compute::flavors::{self, Flavor, FlavorQuery, NewFlavor, SortKey};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

const DESCRIPTION: ApiVersion = ApiVersion::new(2, 55);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorCreate {
    flavor: FlavorCreateBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorCreateBody {
    name: String,
    #[serde(default, deserialize_with = "nova_types::optional_id")]
    id: Option<String>,
    #[serde(deserialize_with = "nova_types::integer")]
    ram: i64,
    #[serde(deserialize_with = "nova_types::integer")]
    vcpus: i64,
    #[serde(deserialize_with = "nova_types::integer")]
    disk: i64,
    #[serde(
        rename = "OS-FLV-EXT-DATA:ephemeral",
        default,
        deserialize_with = "nova_types::integer"
    )]
    ephemeral: i64,
    #[serde(default, deserialize_with = "swap")]
    swap: i64,
    #[serde(default = "default_rxtx", deserialize_with = "nova_types::number")]
    rxtx_factor: f64,
    #[serde(
        rename = "os-flavor-access:is_public",
        default = "default_public",
        deserialize_with = "nova_types::boolean"
    )]
    is_public: bool,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// Nova's `swap`: an integer, or `""` for none (as older clients send it).
fn swap<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    if v == Value::String(String::new()) {
        return Ok(0);
    }
    nova_types::integer(v).map_err(serde::de::Error::custom)
}

fn default_rxtx() -> f64 {
    1.0
}

fn default_public() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorUpdate {
    flavor: FlavorUpdateBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorUpdateBody {
    /// Required (null clears it): `present` without a default makes a missing field an error.
    #[serde(deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// Before 2.55 `description` is not part of the schema, so sending it is an unknown field.
fn only_from(call: &Call<'_>, since: ApiVersion, field: &str) -> Result<(), Fault> {
    if version(call) < since {
        return Err(Fault::bad_request(format!(
            "Invalid input for field/attribute flavor. Additional properties are not allowed \
             ('{field}' was unexpected before microversion {since})"
        )));
    }
    Ok(())
}

fn flavor_reply(call: &Call<'_>, f: &Flavor) -> Reply {
    Reply::ok(json!({"flavor": views::detail(f, &call.state.base_url, version(call))}))
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: FlavorCreate = call.json()?;
    let b = body.flavor;
    if b.description.is_some() {
        only_from(call, DESCRIPTION, "description")?;
    }
    let new = NewFlavor {
        name: b.name,
        id: b.id,
        ram: b.ram,
        vcpus: b.vcpus,
        disk: b.disk,
        ephemeral: b.ephemeral,
        swap: b.swap,
        rxtx_factor: b.rxtx_factor,
        is_public: b.is_public,
        description: b.description.flatten(),
    };
    let f = flavors::create(call.state.flavors(), call.ctx(), new)?;
    Ok(flavor_reply(call, &f))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let f = flavors::get(call.state.flavors(), call.ctx(), call.param("flavor_id"))?;
    Ok(flavor_reply(call, &f))
}

pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    // Nova routes PUT only from 2.55; before it the resource has no such method.
    if version(call) < DESCRIPTION {
        return Err(Fault::not_found("The resource could not be found."));
    }
    let body: FlavorUpdate = call.json()?;
    let f = flavors::set_description(
        call.state.flavors(),
        call.ctx(),
        call.param("flavor_id"),
        body.flavor.description.flatten(),
    )?;
    Ok(flavor_reply(call, &f))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    flavors::delete(call.state.flavors(), call.ctx(), call.param("flavor_id"))?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "/compute/v2.1/flavors", views::summary)
}

pub fn list_detail(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "/compute/v2.1/flavors/detail", views::detail)
}

fn list_as(
    call: &Call<'_>,
    path: &str,
    view: fn(&Flavor, &str, ApiVersion) -> Value,
) -> Result<Reply, Fault> {
    let q = query(call)?;
    let page = flavors::list(call.state.flavors(), call.ctx(), &q)?;
    let base = &call.state.base_url;
    let mut body = json!({
        "flavors": page.iter().map(|f| view(f, base, version(call))).collect::<Vec<_>>()
    });
    // Nova offers a next link whenever a page came back full.
    let limit = q.limit.unwrap_or(crate::compute::MAX_PAGE);
    if let (Some(last), true) = (page.last(), page.len() >= limit) {
        let next = call.next_page_query(&last.id);
        body["flavors_links"] = json!([{"rel": "next", "href": format!("{base}{path}?{next}")}]);
    }
    Ok(Reply::ok(body))
}

/// Nova's flavor list parameters; unknown parameters are ignored, as Nova does.
fn query(call: &Call<'_>) -> Result<FlavorQuery, Fault> {
    let bad = |name: &str, v: &str| Fault::bad_request(format!("Invalid {name} filter [{v}]"));
    let int = |name: &str| -> Result<Option<i64>, Fault> {
        call.query(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| bad(name, v))
            })
            .transpose()
    };
    let is_public = match call.query("is_public") {
        None => Some(true),
        Some(v) if v.eq_ignore_ascii_case("none") => None,
        Some(v) => Some(nova_types::parse_bool(v).ok_or_else(|| bad("is_public", v))?),
    };
    let sort_key = match call.query("sort_key") {
        None => SortKey::FlavorId,
        Some(k) => sort_key(k).ok_or_else(|| {
            Fault::bad_request(format!(
                "Invalid input for query parameters sort_key. Value: {k}."
            ))
        })?,
    };
    let descending = match call.query("sort_dir") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(d) => {
            return Err(Fault::bad_request(format!(
                "Invalid input for query parameters sort_dir. Value: {d}. Must be asc or desc."
            )))
        }
    };
    let limit = match call.query("limit") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 0 => return Err(Fault::bad_request("limit param must be positive")),
            // Nova reads 0 as "no limit" (its maximum page).
            Ok(0) => None,
            Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => return Err(Fault::bad_request("limit param must be an integer")),
        },
    };
    Ok(FlavorQuery {
        min_ram: int("minRam")?,
        min_disk: int("minDisk")?,
        is_public,
        sort_key,
        descending,
        limit,
        marker: call.query("marker").map(str::to_owned),
    })
}

/// Nova's flavor sort keys (its column names).
fn sort_key(k: &str) -> Option<SortKey> {
    Some(match k {
        "created_at" => SortKey::CreatedAt,
        "description" => SortKey::Description,
        "disabled" => SortKey::Disabled,
        "ephemeral_gb" => SortKey::Ephemeral,
        "flavorid" => SortKey::FlavorId,
        "id" => SortKey::Seq,
        "is_public" => SortKey::IsPublic,
        "memory_mb" => SortKey::Ram,
        "name" => SortKey::Name,
        "root_gb" => SortKey::Disk,
        "rxtx_factor" => SortKey::RxtxFactor,
        "swap" => SortKey::Swap,
        "updated_at" => SortKey::UpdatedAt,
        "vcpus" => SortKey::Vcpus,
        _ => return None,
    })
}
