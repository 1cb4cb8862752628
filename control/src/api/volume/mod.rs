//! Cinder v3 handlers under `/volume/v3/{project_id}`: volumes (with `os-extend`), snapshots
//! and volume types; [`views`] renders them as Cinder 3.0 does.

pub mod about;
pub mod metadata;
pub mod snapshots;
pub mod types;
mod views;
pub mod volumes;

use crate::api::{Call, Fault};
use crate::volume::query::MAX_PAGE;
use crate::volume::{ListQuery, SortKey};
use serde_json::{json, Value};

/// Cinder refuses a URL naming another project than the token's, admins included.
fn check_project(call: &Call<'_>) -> Result<(), Fault> {
    let in_url = call.param("project_id");
    if call.ctx().project_id.as_deref() != Some(in_url) {
        return Err(Fault::bad_request(format!(
            "Malformed request url: the project_id {in_url:?} in the URL is not the project \
             of the token"
        )));
    }
    Ok(())
}

/// Tells a field that is absent (None) from one that is null (Some(None)).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// oslo's bool_from_string vocabulary.
pub(super) fn flag(name: &str, v: &str) -> Result<bool, Fault> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
        _ => Err(Fault::bad_request(format!(
            "Invalid value {v:?} for {name}: a boolean is required"
        ))),
    }
}

/// Cinder's list parameters. Filters it has and this service does not are ignored, as Cinder
/// 3.0 ignores unknown filters.
fn list_query(call: &Call<'_>) -> Result<ListQuery, Fault> {
    let mut q = ListQuery::default();
    let key = |k: &str| {
        SortKey::parse(k).ok_or_else(|| Fault::bad_request(format!("Invalid sort key: {k}")))
    };
    let dir = |d: &str| match d {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(Fault::bad_request(format!(
            "Invalid sort direction: {other}; use asc or desc"
        ))),
    };
    let (mut sort_key, mut sort_dir, mut sort) = (None, None, None);
    for (k, v) in &call.query {
        match k.as_str() {
            "all_tenants" | "all_projects" => q.all_projects = flag(k, v)?,
            "name" | "display_name" => q.name = Some(v.clone()),
            "status" => q.status = Some(v.clone()),
            "volume_id" => q.volume_id = Some(v.clone()),
            "marker" => q.marker = Some(v.clone()),
            "limit" => match v.parse::<i64>() {
                Ok(n) if n >= 0 => q.limit = Some(usize::try_from(n).unwrap_or(MAX_PAGE)),
                _ => {
                    return Err(Fault::bad_request(format!(
                        "Invalid limit {v:?}: a non-negative integer is required"
                    )))
                }
            },
            "offset" => {
                q.offset = v.parse().map_err(|_| {
                    Fault::bad_request(format!(
                        "Invalid offset {v:?}: a non-negative integer is required"
                    ))
                })?
            }
            "sort_key" => sort_key = Some(key(v)?),
            "sort_dir" => sort_dir = Some(dir(v)?),
            "sort" => sort = Some(v.clone()),
            _ => {}
        }
    }
    if let Some(sort) = sort {
        if sort_key.is_some() || sort_dir.is_some() {
            return Err(Fault::bad_request(
                "The 'sort' parameter cannot be combined with sort_key or sort_dir.",
            ));
        }
        q.sort = sort
            .split(',')
            .map(|part| {
                let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
                Ok((key(k.trim())?, dir(d.trim())?))
            })
            .collect::<Result<_, Fault>>()?;
    } else if sort_key.is_some() || sort_dir.is_some() {
        q.sort = vec![(
            sort_key.unwrap_or(SortKey::CreatedAt),
            sort_dir.unwrap_or(true),
        )];
    }
    Ok(q)
}

/// Cinder's `<collection>_links` with the next page, when this one came back full.
fn next_link(
    call: &Call<'_>,
    path: &str,
    q: &ListQuery,
    last_id: Option<&str>,
    n: usize,
) -> Option<Value> {
    let full = n >= q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let last = last_id.filter(|_| full && n > 0)?;
    Some(json!([{
        "rel": "next",
        "href": format!("{}{path}?{}", call.state.base_url, call.next_page_query(last))
    }]))
}
