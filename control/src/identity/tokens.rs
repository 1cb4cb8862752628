//! Keystone tokens: password authentication issues a random bearer token, stored by its
//! SHA-256 with its scope and expiry; validation re-reads the user, project and roles so a
//! disabled user or a removed assignment takes effect at once.

use super::{password, IdentityError, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use super::{ROLE_ADMIN, ROLE_MEMBER, ROLE_READER};
use crate::random;
use crate::storage::identity::{self as store, Project, Role, User};
use crate::storage::tokens::{self as token_store, TokenRecord};
use crate::storage::Db;
use crate::timestamp::Timestamp;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A domain named by id or by name; only Keystone's default domain exists here.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

impl DomainRef {
    fn is_default(&self) -> bool {
        match self {
            DomainRef::Id(id) => id == DEFAULT_DOMAIN_ID,
            DomainRef::Name(name) => name == DEFAULT_DOMAIN_NAME,
        }
    }
}

/// A user or project named by id, or by name within a domain.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// A password authentication request: who, the secret, and the project to scope to if any.
#[derive(Debug, Clone)]
pub struct PasswordAuth {
    pub user: NamedRef,
    pub password: String,
    pub project: Option<NamedRef>,
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub user: User,
    pub project: Option<Project>,
    /// Assigned roles plus the roles they imply; empty for an unscoped token.
    pub roles: Vec<Role>,
    pub methods: Vec<String>,
    pub audit_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A newly issued token: its secret value (given to the client once) and what it carries.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub value: String,
    pub info: TokenInfo,
}

fn digest(value: &str) -> String {
    random::hex(&Sha256::digest(value.as_bytes()))
}

/// Checks the password and issues a token valid for `ttl`.
pub fn issue(db: &Db, auth: &PasswordAuth, ttl: Duration) -> Result<IssuedToken, IdentityError> {
    let user = db.read(|c| find_user(c, &auth.user))?;
    // Verify outside the database lock: argon2 is deliberately slow.
    let stored = match &user {
        Some(u) => db.read(|c| store::password_hash(c, &u.id))?,
        None => None,
    };
    let (user, stored) = match (user, stored) {
        (Some(u), Some(h)) => (u, h),
        _ => {
            password::verify_nothing(&auth.password);
            return Err(IdentityError::InvalidCredentials);
        }
    };
    if !password::verify(&auth.password, &stored) || !user.enabled {
        return Err(IdentityError::InvalidCredentials);
    }
    let value = random::token()?;
    let issued_at = Timestamp::now();
    let record = TokenRecord {
        id_hash: digest(&value),
        user_id: user.id.clone(),
        project_id: None,
        methods: vec!["password".to_owned()],
        audit_id: random::token()?[..22].to_owned(),
        issued_at,
        expires_at: issued_at.saturating_add(ttl),
        revoked: false,
    };
    let info = db.write(|tx| -> Result<TokenInfo, IdentityError> {
        let project = match &auth.project {
            Some(p) => Some(find_project(tx, p)?.ok_or(IdentityError::InvalidCredentials)?),
            None => None,
        };
        let record = TokenRecord {
            project_id: project.as_ref().map(|p| p.id.clone()),
            ..record
        };
        let info = describe(tx, &record)?.ok_or(IdentityError::InvalidCredentials)?;
        // Tokens that expired are never valid again; drop them while holding the write lock.
        token_store::purge_expired(tx, issued_at)?;
        token_store::insert(tx, &record)?;
        Ok(info)
    })?;
    Ok(IssuedToken { value, info })
}

/// Turns "this token does not authenticate" into "no such token", for calls that name a
/// token as their subject rather than present it; other failures stay what they are.
pub fn not_found_if_invalid(e: IdentityError) -> IdentityError {
    match e {
        IdentityError::Unauthenticated => IdentityError::TokenNotFound,
        other => other,
    }
}

/// What the token `value` carries, if it is known, unexpired, unrevoked and its user, project
/// and roles still allow it.
pub fn validate(db: &Db, value: &str) -> Result<TokenInfo, IdentityError> {
    db.read(|c| {
        let record = token_store::get(c, &digest(value))?.ok_or(IdentityError::Unauthenticated)?;
        if record.revoked || record.expires_at <= Timestamp::now() {
            return Err(IdentityError::Unauthenticated);
        }
        describe(c, &record)?.ok_or(IdentityError::Unauthenticated)
    })
}

/// Revokes the token `value`; revoking an unknown or invalid token is TokenNotFound.
pub fn revoke(db: &Db, value: &str) -> Result<(), IdentityError> {
    validate(db, value).map_err(not_found_if_invalid)?;
    db.write(|tx| token_store::revoke(tx, &digest(value)))?;
    Ok(())
}

/// The user, project and effective roles of `record`, or None when the user or project is
/// gone or disabled, or a scoped token's user no longer holds any role on the project.
fn describe(c: &Connection, record: &TokenRecord) -> Result<Option<TokenInfo>, IdentityError> {
    let Some(user) = store::user(c, &record.user_id)?.filter(|u| u.enabled) else {
        return Ok(None);
    };
    let (project, roles) = match &record.project_id {
        None => (None, Vec::new()),
        Some(pid) => {
            let Some(project) = store::project(c, pid)?.filter(|p| p.enabled) else {
                return Ok(None);
            };
            let roles = effective_roles(c, store::assigned_roles(c, &user.id, pid)?)?;
            if roles.is_empty() {
                return Ok(None);
            }
            (Some(project), roles)
        }
    };
    Ok(Some(TokenInfo {
        user,
        project,
        roles,
        methods: record.methods.clone(),
        audit_id: record.audit_id.clone(),
        issued_at: record.issued_at,
        expires_at: record.expires_at,
    }))
}

/// Adds the roles implied by the assigned ones: admin ⇒ member ⇒ reader.
fn effective_roles(c: &Connection, mut roles: Vec<Role>) -> Result<Vec<Role>, IdentityError> {
    let has = |roles: &[Role], name: &str| roles.iter().any(|r| r.name == name);
    for (holder, implied) in [(ROLE_ADMIN, ROLE_MEMBER), (ROLE_MEMBER, ROLE_READER)] {
        if has(&roles, holder) && !has(&roles, implied) {
            if let Some(r) = store::role_by_name(c, implied)? {
                roles.push(r);
            }
        }
    }
    Ok(roles)
}

fn find_user(c: &Connection, r: &NamedRef) -> Result<Option<User>, IdentityError> {
    Ok(match r {
        NamedRef::Id(id) => store::user(c, id)?,
        NamedRef::Name { name, domain } if domain.is_default() => store::user_by_name(c, name)?,
        NamedRef::Name { .. } => None,
    })
}

fn find_project(c: &Connection, r: &NamedRef) -> Result<Option<Project>, IdentityError> {
    Ok(match r {
        NamedRef::Id(id) => store::project(c, id)?,
        NamedRef::Name { name, domain } if domain.is_default() => store::project_by_name(c, name)?,
        NamedRef::Name { .. } => None,
    })
}

#[cfg(test)]
mod tests;
