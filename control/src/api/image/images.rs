//! `/v2/images`: create, list (filters, sorting, paging), show, update (JSON patch), delete,
//! and tags.

use super::views;
use crate::api::{Call, Fault, Reply};
use crate::image::query::MAX_LIMIT;
use crate::image::{
    self, patch, patch::Dialect, ImageQuery, ImageStatus, ImageVisibility, MemberStatus, NewImage,
    SortKey, VisibilityFilter,
};
use hyper::StatusCode;
use serde_json::{json, Map, Value};

fn image_reply(status: StatusCode, i: &image::Image) -> Reply {
    Reply::json(status, views::image(i))
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let attributes: Map<String, Value> = call.json()?;
    let i = image::create(
        call.state.image_records(),
        call.ctx(),
        NewImage { attributes },
    )?;
    let location = format!("{}/image/v2/images/{}", call.state.base_url, i.id);
    Ok(image_reply(StatusCode::CREATED, &i).header("Location", location))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let i = image::get(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
    )?;
    Ok(image_reply(StatusCode::OK, &i))
}

pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    let content_type = call.header("content-type").unwrap_or("");
    let dialect = Dialect::of_media_type(content_type).ok_or_else(|| {
        Fault::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type {content_type:?}: send {} or {}",
                Dialect::V21_MEDIA_TYPE,
                Dialect::V20_MEDIA_TYPE
            ),
        )
    })?;
    let body: Value = call.json()?;
    let changes = patch::parse(&body, dialect)?;
    let i = image::update(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
        &changes,
    )?;
    Ok(image_reply(StatusCode::OK, &i))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    let state = call.state;
    image::delete(
        state.image_records(),
        &state.images,
        call.ctx(),
        call.param("image_id"),
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub fn deactivate(call: &Call<'_>) -> Result<Reply, Fault> {
    image::deactivate(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub fn reactivate(call: &Call<'_>) -> Result<Reply, Fault> {
    image::reactivate(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub fn add_tag(call: &Call<'_>) -> Result<Reply, Fault> {
    image::add_tag(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
        call.param("tag"),
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub fn remove_tag(call: &Call<'_>) -> Result<Reply, Fault> {
    image::remove_tag(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
        call.param("tag"),
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    let q = query(call)?;
    let page = image::list(call.state.image_records(), call.ctx(), &q)?;
    let keep = call.query_but_marker();
    let first = if keep.is_empty() {
        "/v2/images".to_owned()
    } else {
        format!("/v2/images?{}", keep.join("&"))
    };
    let mut body = json!({
        "images": page.iter().map(views::image).collect::<Vec<_>>(),
        "first": first,
        "schema": "/v2/schemas/images",
    });
    // Glance offers the next page whenever this one came back full.
    if let (Some(last), true) = (page.last(), q.limit > 0 && page.len() >= q.limit) {
        body["next"] = json!(format!("/v2/images?{}", call.next_page_query(&last.id)));
    }
    Ok(Reply::ok(body))
}

/// Values of a filter: `in:a,b,c` names several, anything else one.
fn one_or_many(v: &str) -> Vec<String> {
    match v.strip_prefix("in:") {
        Some(list) => list.split(',').map(str::to_owned).collect(),
        None => vec![v.to_owned()],
    }
}

fn bad(msg: String) -> Fault {
    Fault::bad_request(msg)
}

/// Glance's list parameters. Parameters it does not know as filters are additional-property
/// filters, as in Glance.
fn query(call: &Call<'_>) -> Result<ImageQuery, Fault> {
    let mut q = ImageQuery::default();
    let mut sort_keys: Vec<SortKey> = Vec::new();
    let mut sort_dirs: Vec<bool> = Vec::new();
    let mut sort_param: Option<&str> = None;
    let int = |k: &str, v: &str| {
        v.parse::<i64>().map_err(|_| {
            bad(format!(
                "Invalid value {v:?} for {k}: an integer is required"
            ))
        })
    };
    let dir = |d: &str| match d {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(bad(format!(
            "Invalid sort direction: {other}; use asc or desc"
        ))),
    };
    let key = |k: &str| {
        SortKey::parse(k).ok_or_else(|| bad(format!("Invalid sort key: {k}. It is not sortable.")))
    };
    for (k, v) in &call.query {
        match k.as_str() {
            "limit" => {
                let n = int(k, v)?;
                if n < 0 {
                    return Err(bad("limit param must be positive".into()));
                }
                q.limit = usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
            }
            "marker" => q.marker = Some(v.clone()),
            "sort_key" => {
                for part in v.split(',') {
                    sort_keys.push(key(part.trim())?);
                }
            }
            "sort_dir" => {
                for part in v.split(',') {
                    sort_dirs.push(dir(part.trim())?);
                }
            }
            "sort" => sort_param = Some(v),
            "name" => q.names = one_or_many(v),
            "id" => q.ids = one_or_many(v),
            "disk_format" => q.disk_formats = one_or_many(v),
            "container_format" => q.container_formats = one_or_many(v),
            "status" => {
                q.statuses = one_or_many(v)
                    .iter()
                    .map(|s| {
                        ImageStatus::parse(&s.to_ascii_lowercase())
                            .ok_or_else(|| bad(format!("Invalid status value: {s}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "visibility" => {
                q.visibility = Some(if v == "all" {
                    VisibilityFilter::All
                } else {
                    VisibilityFilter::Only(ImageVisibility::parse(v).ok_or_else(|| {
                        bad(format!(
                            "Invalid visibility value: {v}; use public, private, shared, \
                             community or all"
                        ))
                    })?)
                });
            }
            "tag" => q.tags.push(v.clone()),
            "owner" => q.owner = Some(v.clone()),
            "protected" => {
                q.protected = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("Invalid value {v:?} for protected"))),
                })
            }
            "checksum" => q.checksum = Some(v.clone()),
            "os_hash_value" => q.os_hash_value = Some(v.clone()),
            "size_min" => q.size_min = Some(int(k, v)?),
            "size_max" => q.size_max = Some(int(k, v)?),
            "member_status" => {
                q.member_status = match v.as_str() {
                    "all" => None,
                    s => Some(MemberStatus::parse(s).ok_or_else(|| {
                        bad(format!(
                            "Invalid status value: {s}; use pending, accepted, rejected or all"
                        ))
                    })?),
                }
            }
            // Hidden images do not exist here.
            "os_hidden" => {}
            "created_at" | "updated_at" => {
                return Err(bad(format!("Filtering by {k} is not supported here.")))
            }
            _ => q.properties.push((k.clone(), v.clone())),
        }
    }
    if let Some(sort) = sort_param {
        if !sort_keys.is_empty() || !sort_dirs.is_empty() {
            return Err(bad(
                "The 'sort' parameter cannot be combined with sort_key or sort_dir.".into(),
            ));
        }
        q.sort = sort
            .split(',')
            .map(|part| {
                let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
                Ok((key(k.trim())?, dir(d.trim())?))
            })
            .collect::<Result<_, Fault>>()?;
    } else if !sort_keys.is_empty() || !sort_dirs.is_empty() {
        if sort_dirs.len() > sort_keys.len().max(1) {
            return Err(bad("There are more sort directions than sort keys.".into()));
        }
        if sort_keys.is_empty() {
            sort_keys.push(SortKey::CreatedAt);
        }
        // One direction applies to every key; otherwise each key has its own (desc default).
        let only = (sort_dirs.len() == 1).then(|| sort_dirs[0]);
        q.sort = sort_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    *k,
                    only.unwrap_or_else(|| sort_dirs.get(i).copied().unwrap_or(true)),
                )
            })
            .collect();
    }
    Ok(q)
}
