//! `/identity/v3/projects`, `/users` (and a user's projects), `/roles`, project role grants
//! and the one domain.
//!
//! Bodies are typed and refuse unknown attributes. Keystone would store unknown attributes
//! as "extras"; refusing them keeps the store's contents what the API documents.

use super::views;
use crate::api::{Call, Fault, Reply};
use crate::identity::directory::{self, Assignment, NewProject, NewRole, NewUser};
use crate::identity::{IdentityError, DEFAULT_DOMAIN_ID};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectCreate {
    project: ProjectBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectBody {
    name: String,
    description: Option<String>,
    domain_id: Option<String>,
    enabled: Option<bool>,
    is_domain: Option<bool>,
    parent_id: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserCreate {
    user: UserBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    name: String,
    password: Option<String>,
    domain_id: Option<String>,
    enabled: Option<bool>,
    default_project_id: Option<String>,
    email: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleCreate {
    role: RoleBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    name: String,
    description: Option<String>,
    domain_id: Option<String>,
}

/// Only Keystone's default domain exists; naming another one is a 400, not a silent move.
fn default_domain_only(field: &'static str, v: &Option<String>) -> Result<(), IdentityError> {
    match v.as_deref() {
        None | Some(DEFAULT_DOMAIN_ID) => Ok(()),
        Some(other) => Err(IdentityError::InvalidField {
            field,
            reason: format!("only domain {DEFAULT_DOMAIN_ID:?} exists, not {other:?}"),
        }),
    }
}

pub fn list_projects(call: &Call<'_>) -> Result<Reply, Fault> {
    let base = &call.state.base_url;
    let projects = directory::list_projects(call.state.identity(), call.ctx(), call.query("name"))?;
    let items = projects.iter().map(|p| views::project(p, base)).collect();
    Ok(Reply::ok(views::collection("projects", items, base)))
}

pub fn list_user_projects(call: &Call<'_>) -> Result<Reply, Fault> {
    let base = &call.state.base_url;
    let projects =
        directory::list_user_projects(call.state.identity(), call.ctx(), call.param("user_id"))?;
    let items = projects.iter().map(|p| views::project(p, base)).collect();
    Ok(Reply::ok(views::collection("projects", items, base)))
}

pub fn show_domain(call: &Call<'_>) -> Result<Reply, Fault> {
    directory::check_domain(call.param("domain_id"))?;
    Ok(Reply::ok(views::default_domain(&call.state.base_url)))
}

pub fn show_project(call: &Call<'_>) -> Result<Reply, Fault> {
    let p = directory::get_project(call.state.identity(), call.ctx(), call.param("project_id"))?;
    Ok(Reply::ok(
        json!({"project": views::project(&p, &call.state.base_url)}),
    ))
}

pub fn create_project(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: ProjectCreate = call.json()?;
    let b = body.project;
    default_domain_only("domain_id", &b.domain_id)?;
    default_domain_only("parent_id", &b.parent_id)?;
    if b.is_domain == Some(true) {
        return Err(IdentityError::InvalidField {
            field: "is_domain",
            reason: "projects acting as domains are not supported".into(),
        }
        .into());
    }
    if !b.tags.is_empty() {
        return Err(IdentityError::InvalidField {
            field: "tags",
            reason: "project tags are not supported".into(),
        }
        .into());
    }
    let new = NewProject {
        name: b.name,
        description: b.description.unwrap_or_default(),
        enabled: b.enabled.unwrap_or(true),
    };
    let p = directory::create_project(call.state.identity(), call.ctx(), new)?;
    let body = json!({"project": views::project(&p, &call.state.base_url)});
    Ok(Reply::json(StatusCode::CREATED, body))
}

pub fn list_users(call: &Call<'_>) -> Result<Reply, Fault> {
    let base = &call.state.base_url;
    let users = directory::list_users(call.state.identity(), call.ctx(), call.query("name"))?;
    let items = users.iter().map(|u| views::user(u, base)).collect();
    Ok(Reply::ok(views::collection("users", items, base)))
}

pub fn show_user(call: &Call<'_>) -> Result<Reply, Fault> {
    let u = directory::get_user(call.state.identity(), call.ctx(), call.param("user_id"))?;
    Ok(Reply::ok(
        json!({"user": views::user(&u, &call.state.base_url)}),
    ))
}

pub fn create_user(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: UserCreate = call.json()?;
    let b = body.user;
    default_domain_only("domain_id", &b.domain_id)?;
    let new = NewUser {
        name: b.name,
        password: b.password,
        enabled: b.enabled.unwrap_or(true),
        default_project_id: b.default_project_id,
        email: b.email,
        description: b.description.unwrap_or_default(),
    };
    let u = directory::create_user(call.state.identity(), call.ctx(), new)?;
    let body = json!({"user": views::user(&u, &call.state.base_url)});
    Ok(Reply::json(StatusCode::CREATED, body))
}

pub fn list_roles(call: &Call<'_>) -> Result<Reply, Fault> {
    let base = &call.state.base_url;
    let roles = directory::list_roles(call.state.identity(), call.ctx(), call.query("name"))?;
    let items = roles.iter().map(|r| views::role(r, base)).collect();
    Ok(Reply::ok(views::collection("roles", items, base)))
}

pub fn show_role(call: &Call<'_>) -> Result<Reply, Fault> {
    let r = directory::get_role(call.state.identity(), call.ctx(), call.param("role_id"))?;
    Ok(Reply::ok(
        json!({"role": views::role(&r, &call.state.base_url)}),
    ))
}

pub fn create_role(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: RoleCreate = call.json()?;
    let b = body.role;
    if b.domain_id.is_some() {
        return Err(IdentityError::InvalidField {
            field: "domain_id",
            reason: "domain-specific roles are not supported".into(),
        }
        .into());
    }
    let new = NewRole {
        name: b.name,
        description: b.description.unwrap_or_default(),
    };
    let r = directory::create_role(call.state.identity(), call.ctx(), new)?;
    let body = json!({"role": views::role(&r, &call.state.base_url)});
    Ok(Reply::json(StatusCode::CREATED, body))
}

fn assignment<'a>(call: &'a Call<'_>) -> Assignment<'a> {
    Assignment {
        project_id: call.param("project_id"),
        user_id: call.param("user_id"),
        role_id: call.param("role_id"),
    }
}

pub fn grant_role(call: &Call<'_>) -> Result<Reply, Fault> {
    directory::grant_role(call.state.identity(), call.ctx(), assignment(call))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub fn revoke_role(call: &Call<'_>) -> Result<Reply, Fault> {
    directory::revoke_role(call.state.identity(), call.ctx(), assignment(call))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
