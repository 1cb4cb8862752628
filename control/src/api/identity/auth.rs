//! `/identity/v3/auth/tokens`: issue (password), validate and revoke.
//!
//! The request body is Keystone's contract, not ours: fields we do not use (e.g. `token`
//! method data keystoneauth may add) are ignored rather than refused.

use super::views;
use crate::api::{Call, Fault, Reply};
use crate::identity::tokens::{self, DomainRef, NamedRef, PasswordAuth, TokenInfo};
use crate::identity::IdentityError;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

const SUBJECT_TOKEN_HEADER: &str = "X-Subject-Token";

#[derive(Deserialize)]
struct AuthRequest {
    auth: Auth,
}

#[derive(Deserialize)]
struct Auth {
    identity: Identity,
    scope: Option<Scope>,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    password: Option<PasswordMethod>,
}

#[derive(Deserialize)]
struct PasswordMethod {
    user: UserCredentials,
}

#[derive(Deserialize)]
struct UserCredentials {
    id: Option<String>,
    name: Option<String>,
    domain: Option<Named>,
    password: String,
}

#[derive(Deserialize)]
struct Named {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Scope {
    project: Option<ProjectScope>,
    domain: Option<serde_json::Value>,
    system: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ProjectScope {
    id: Option<String>,
    name: Option<String>,
    domain: Option<Named>,
}

fn domain_ref(d: Option<Named>, within: &'static str) -> Result<DomainRef, IdentityError> {
    match d {
        Some(Named { id: Some(id), .. }) => Ok(DomainRef::Id(id)),
        Some(Named {
            name: Some(name), ..
        }) => Ok(DomainRef::Name(name)),
        _ => Err(IdentityError::MissingField {
            field: "domain",
            within,
        }),
    }
}

fn named_ref(
    id: Option<String>,
    name: Option<String>,
    domain: Option<Named>,
    within: &'static str,
) -> Result<NamedRef, IdentityError> {
    match (id, name) {
        (Some(id), _) => Ok(NamedRef::Id(id)),
        (None, Some(name)) => Ok(NamedRef::Name {
            name,
            domain: domain_ref(domain, within)?,
        }),
        (None, None) => Err(IdentityError::MissingField {
            field: "id or name",
            within,
        }),
    }
}

fn password_auth(req: AuthRequest) -> Result<PasswordAuth, IdentityError> {
    let Auth { identity, scope } = req.auth;
    if identity.methods.iter().any(|m| m != "password") || identity.methods.is_empty() {
        return Err(IdentityError::UnsupportedMethod);
    }
    let user = identity
        .password
        .ok_or(IdentityError::MissingField {
            field: "password",
            within: "identity",
        })?
        .user;
    let project = match scope {
        None => None,
        Some(Scope {
            project: Some(p), ..
        }) => Some(named_ref(p.id, p.name, p.domain, "project")?),
        Some(s) if s.domain.is_some() || s.system.is_some() => {
            return Err(IdentityError::InvalidField {
                field: "scope",
                reason: "only project scope is supported".into(),
            })
        }
        Some(_) => None,
    };
    Ok(PasswordAuth {
        user: named_ref(user.id, user.name, user.domain, "user")?,
        password: user.password,
        project,
    })
}

fn token_reply(call: &Call<'_>, status: StatusCode, value: &str, info: &TokenInfo) -> Reply {
    let with_catalog = call.query("nocatalog").is_none();
    let s = call.state;
    Reply::json(
        status,
        views::token(info, &s.base_url, &s.region, with_catalog),
    )
    .header(SUBJECT_TOKEN_HEADER, value)
}

pub fn issue(call: &Call<'_>) -> Result<Reply, Fault> {
    let auth = password_auth(call.json()?)?;
    let s = call.state;
    let issued = tokens::issue(s.identity(), &auth, s.token_ttl, &s.logins, call.peer)?;
    Ok(token_reply(
        call,
        StatusCode::CREATED,
        &issued.value,
        &issued.info,
    ))
}

fn subject(call: &Call<'_>) -> Result<String, Fault> {
    call.header(SUBJECT_TOKEN_HEADER)
        .map(str::to_owned)
        .ok_or_else(|| {
            IdentityError::MissingField {
                field: "X-Subject-Token",
                within: "the request headers",
            }
            .into()
        })
}

/// The subject token's contents, if the caller may look at it: its own token, or any for an
/// admin (Keystone's `identity:validate_token` default).
fn subject_info(call: &Call<'_>, value: &str) -> Result<TokenInfo, Fault> {
    let info =
        tokens::validate(call.state.identity(), value).map_err(tokens::not_found_if_invalid)?;
    let ctx = call.ctx();
    if !ctx.is_admin() && info.user.id != ctx.user_id {
        return Err(IdentityError::Forbidden("validate_token").into());
    }
    Ok(info)
}

pub fn validate(call: &Call<'_>) -> Result<Reply, Fault> {
    let value = subject(call)?;
    let info = subject_info(call, &value)?;
    Ok(token_reply(call, StatusCode::OK, &value, &info))
}

/// `HEAD /v3/auth/tokens`: whether the subject token is valid, without its body.
pub fn check(call: &Call<'_>) -> Result<Reply, Fault> {
    let value = subject(call)?;
    subject_info(call, &value)?;
    Ok(Reply::empty(StatusCode::OK).header(SUBJECT_TOKEN_HEADER, &value))
}

/// `GET /v3/auth/catalog`: the catalog of the caller's own (project-scoped) token.
pub fn catalog(call: &Call<'_>) -> Result<Reply, Fault> {
    let s = call.state;
    let project = call
        .ctx()
        .project_id
        .as_deref()
        .ok_or(IdentityError::Forbidden("get_auth_catalog"))?;
    Ok(Reply::ok(json!({
        "catalog": views::catalog_of(&s.base_url, &s.region, project),
        "links": {"self": format!("{}/identity/v3/auth/catalog", s.base_url)},
    })))
}

pub fn revoke(call: &Call<'_>) -> Result<Reply, Fault> {
    let value = subject(call)?;
    subject_info(call, &value)?;
    tokens::revoke(call.state.identity(), &value)?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
