//! Keystone tokens: password authentication issues a random bearer token, stored by its
//! SHA-256 with its scope and expiry; validation re-reads the user, project and roles so a
//! disabled user or a removed assignment takes effect at once.

use super::logins::LoginGuard;
use super::store::{IdentityStore, Project, Role, TokenRecord, User};
use super::{password, IdentityError, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use super::{ROLE_ADMIN, ROLE_MEMBER, ROLE_READER};
use crate::random;
use crate::timestamp::Timestamp;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;

/// A domain named by id or by name; only Keystone's default domain exists here.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

impl DomainRef {
    /// Whether this names the default domain. Names match in any case, as deployed
    /// Keystone's do (its MySQL columns compare case-insensitively), so the many scripts
    /// that say `user_domain_name='default'` sign in; ids match exactly.
    fn is_default(&self) -> bool {
        match self {
            DomainRef::Id(id) => id == DEFAULT_DOMAIN_ID,
            DomainRef::Name(name) => name.eq_ignore_ascii_case(DEFAULT_DOMAIN_NAME),
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

/// Checks the password, within `logins`' limits for a caller at `from`, and issues a token
/// valid for `ttl`.
pub fn issue(
    db: &dyn IdentityStore,
    auth: &PasswordAuth,
    ttl: Duration,
    logins: &LoginGuard,
    from: Option<IpAddr>,
) -> Result<IssuedToken, IdentityError> {
    logins.check_address(from)?;
    let user = find_user(db, &auth.user)?;
    // Verify outside the database lock: argon2 is deliberately slow.
    let stored = match &user {
        Some(u) => db.password_hash(&u.id)?,
        None => None,
    };
    let slot = logins.admit(user.as_ref().map(|u| u.id.as_str()), from)?;
    let (user, stored) = match (user, stored) {
        (Some(u), Some(h)) => (u, h),
        (user, _) => {
            password::verify_nothing(&auth.password);
            drop(slot);
            logins.failed(user.as_ref().map(|u| u.id.as_str()), from);
            return Err(IdentityError::InvalidCredentials);
        }
    };
    let matches = password::verify(&auth.password, &stored);
    drop(slot);
    if !matches || !user.enabled {
        logins.failed(Some(&user.id), from);
        return Err(IdentityError::InvalidCredentials);
    }
    logins.succeeded(&user.id);
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
    let project = match &auth.project {
        Some(p) => Some(find_project(db, p)?.ok_or(IdentityError::InvalidCredentials)?),
        None => None,
    };
    let record = TokenRecord {
        project_id: project.as_ref().map(|p| p.id.clone()),
        ..record
    };
    // Read, then written: a user disabled or a role taken in between is caught by the next
    // validation, which reads them all again.
    let info = describe(db, &record)?.ok_or(IdentityError::InvalidCredentials)?;
    db.insert_token(&record)?;
    Ok(IssuedToken { value, info })
}

/// A short-lived token for a caller this box vouches for itself (a request on its unix
/// socket, which carries none; the box's own background work), so that another box of the
/// site acts for it: the same user and project, every check of [`validate`] applied again
/// there. Valid on every box that shares the identity store.
pub fn mint(
    db: &dyn IdentityStore,
    user_id: &str,
    project_id: Option<&str>,
    ttl: Duration,
) -> Result<IssuedToken, IdentityError> {
    let value = random::token()?;
    let issued_at = Timestamp::now();
    let record = TokenRecord {
        id_hash: digest(&value),
        user_id: user_id.to_owned(),
        project_id: project_id.map(str::to_owned),
        methods: vec!["token".to_owned()],
        audit_id: random::token()?[..22].to_owned(),
        issued_at,
        expires_at: issued_at.saturating_add(ttl),
        revoked: false,
    };
    let info = describe(db, &record)?.ok_or(IdentityError::InvalidCredentials)?;
    db.insert_token(&record)?;
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
pub fn validate(db: &dyn IdentityStore, value: &str) -> Result<TokenInfo, IdentityError> {
    let record = db
        .token(&digest(value))?
        .ok_or(IdentityError::Unauthenticated)?;
    if record.revoked || record.expires_at <= Timestamp::now() {
        return Err(IdentityError::Unauthenticated);
    }
    describe(db, &record)?.ok_or(IdentityError::Unauthenticated)
}

/// Revokes the token `value`; revoking an unknown or invalid token is TokenNotFound.
pub fn revoke(db: &dyn IdentityStore, value: &str) -> Result<(), IdentityError> {
    validate(db, value).map_err(not_found_if_invalid)?;
    db.revoke_token(&digest(value))?;
    Ok(())
}

/// The user, project and effective roles of `record`, or None when the user or project is
/// gone or disabled, or a scoped token's user no longer holds any role on the project.
fn describe(
    db: &dyn IdentityStore,
    record: &TokenRecord,
) -> Result<Option<TokenInfo>, IdentityError> {
    let Some(user) = db.user(&record.user_id)?.filter(|u| u.enabled) else {
        return Ok(None);
    };
    let (project, roles) = match &record.project_id {
        None => (None, Vec::new()),
        Some(pid) => {
            let Some(project) = db.project(pid)?.filter(|p| p.enabled) else {
                return Ok(None);
            };
            let roles = effective_roles(db, db.assigned_roles(&user.id, pid)?)?;
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
fn effective_roles(
    db: &dyn IdentityStore,
    mut roles: Vec<Role>,
) -> Result<Vec<Role>, IdentityError> {
    let has = |roles: &[Role], name: &str| roles.iter().any(|r| r.name == name);
    for (holder, implied) in [(ROLE_ADMIN, ROLE_MEMBER), (ROLE_MEMBER, ROLE_READER)] {
        if has(&roles, holder) && !has(&roles, implied) {
            if let Some(r) = db.role_by_name(implied)? {
                roles.push(r);
            }
        }
    }
    Ok(roles)
}

fn find_user(db: &dyn IdentityStore, r: &NamedRef) -> Result<Option<User>, IdentityError> {
    Ok(match r {
        NamedRef::Id(id) => db.user(id)?,
        NamedRef::Name { name, domain } if domain.is_default() => db.user_by_name(name)?,
        NamedRef::Name { .. } => None,
    })
}

fn find_project(db: &dyn IdentityStore, r: &NamedRef) -> Result<Option<Project>, IdentityError> {
    Ok(match r {
        NamedRef::Id(id) => db.project(id)?,
        NamedRef::Name { name, domain } if domain.is_default() => db.project_by_name(name)?,
        NamedRef::Name { .. } => None,
    })
}

#[cfg(test)]
mod tests;
