//! Managing projects, users, roles and role assignments, with Keystone's rule that only an
//! admin changes them; listings follow [`RequestContext::visibility`].

use super::store::{Grant, IdentityStore, ListFilter, Project, Role, User};
use super::{password, IdentityError, DEFAULT_DOMAIN_ID};
use crate::context::{RequestContext, Visibility};
use crate::random;

#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub description: String,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub password: Option<String>,
    pub enabled: bool,
    pub default_project_id: Option<String>,
    pub email: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct NewRole {
    pub name: String,
    pub description: String,
}

fn require_admin(ctx: &RequestContext, action: &'static str) -> Result<(), IdentityError> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(action))
    }
}

/// Keystone's limits: names are 1..=64 characters for projects and roles, 255 for users.
fn check_name(field: &'static str, name: &str, max: usize) -> Result<(), IdentityError> {
    let len = name.chars().count();
    if len == 0 || len > max || name.trim() != name {
        return Err(IdentityError::InvalidField {
            field,
            reason: format!("must be 1 to {max} characters without leading or trailing whitespace"),
        });
    }
    Ok(())
}

fn filter<'a>(
    ctx: &'a RequestContext,
    name: Option<&'a str>,
    action: &'static str,
) -> Result<ListFilter<'a>, IdentityError> {
    let project = match ctx.visibility(true) {
        Some(Visibility::All) => None,
        Some(Visibility::Project(_)) => ctx.project_id.as_deref(),
        None => return Err(IdentityError::Forbidden(action)),
    };
    Ok(ListFilter { name, project })
}

pub fn list_projects(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    name: Option<&str>,
) -> Result<Vec<Project>, IdentityError> {
    let f = filter(ctx, name, "list_projects")?;
    Ok(db.projects(f)?)
}

pub fn get_project(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Project, IdentityError> {
    let not_found = || IdentityError::NotFound {
        kind: "project",
        id: id.to_owned(),
    };
    // A member asking for another project learns nothing about whether it exists.
    if !ctx.can_see(id) {
        return Err(IdentityError::Forbidden("get_project"));
    }
    db.project(id)?.ok_or_else(not_found)
}

/// The projects `user_id` has a role on (Keystone's `GET /v3/users/{id}/projects`): the user
/// itself or an admin may ask; to anyone else the user is not found, as [`get_user`] answers
/// a user it does not show.
pub fn list_user_projects(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    user_id: &str,
) -> Result<Vec<Project>, IdentityError> {
    if (!ctx.is_admin() && ctx.user_id != user_id) || db.user(user_id)?.is_none() {
        return Err(IdentityError::missing("user", user_id));
    }
    let mut assigned = Vec::new();
    for p in db.projects(ListFilter {
        name: None,
        project: None,
    })? {
        if !db.assigned_roles(user_id, &p.id)?.is_empty() {
            assigned.push(p);
        }
    }
    Ok(assigned)
}

/// Domain `id`, if it is the one there is: every project and user is in
/// [`DEFAULT_DOMAIN_ID`], so any caller (each one's token is of that domain) may read it.
pub fn check_domain(id: &str) -> Result<(), IdentityError> {
    if id != DEFAULT_DOMAIN_ID {
        return Err(IdentityError::missing("domain", id));
    }
    Ok(())
}

pub fn create_project(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    new: NewProject,
) -> Result<Project, IdentityError> {
    require_admin(ctx, "create_project")?;
    check_name("name", &new.name, 64)?;
    let project = Project {
        id: random::hex_id()?,
        name: new.name,
        description: new.description,
        enabled: new.enabled,
    };
    db.create_project(&project)
}

pub fn list_users(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    name: Option<&str>,
) -> Result<Vec<User>, IdentityError> {
    let f = filter(ctx, name, "list_users")?;
    Ok(db.users(f)?)
}

/// An admin sees any user; others see themselves and the users of their own project.
pub fn get_user(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<User, IdentityError> {
    let visible = if ctx.is_admin() || ctx.user_id == id {
        db.user(id)?
    } else {
        let f = filter(ctx, None, "get_user")?;
        db.users(f)?.into_iter().find(|u| u.id == id)
    };
    visible.ok_or_else(|| IdentityError::NotFound {
        kind: "user",
        id: id.to_owned(),
    })
}

pub fn create_user(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    new: NewUser,
) -> Result<User, IdentityError> {
    require_admin(ctx, "create_user")?;
    check_name("name", &new.name, 255)?;
    // Hash before taking the write lock: argon2 is deliberately slow.
    let hash = new.password.as_deref().map(password::hash).transpose()?;
    let user = User {
        id: random::hex_id()?,
        name: new.name,
        enabled: new.enabled,
        default_project_id: new.default_project_id,
        email: new.email,
        description: new.description,
    };
    db.create_user(&user, hash.as_deref(), None)
}

pub fn list_roles(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    name: Option<&str>,
) -> Result<Vec<Role>, IdentityError> {
    require_admin(ctx, "list_roles")?;
    Ok(db.roles(name)?)
}

pub fn get_role(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Role, IdentityError> {
    require_admin(ctx, "get_role")?;
    db.role(id)?.ok_or_else(|| IdentityError::NotFound {
        kind: "role",
        id: id.to_owned(),
    })
}

pub fn create_role(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    new: NewRole,
) -> Result<Role, IdentityError> {
    require_admin(ctx, "create_role")?;
    check_name("name", &new.name, 64)?;
    let role = Role {
        id: random::hex_id()?,
        name: new.name,
        description: new.description,
    };
    db.create_role(&role)
}

/// Which user, on which project, with which role: all by id.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    pub project_id: &'a str,
    pub user_id: &'a str,
    pub role_id: &'a str,
}

pub fn grant_role(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    a: Assignment<'_>,
) -> Result<(), IdentityError> {
    require_admin(ctx, "create_grant")?;
    db.grant_role(a.grant())
}

pub fn revoke_role(
    db: &dyn IdentityStore,
    ctx: &RequestContext,
    a: Assignment<'_>,
) -> Result<(), IdentityError> {
    require_admin(ctx, "revoke_grant")?;
    db.revoke_role(a.grant())
}

impl Assignment<'_> {
    fn grant(&self) -> Grant<'_> {
        Grant {
            project_id: self.project_id,
            user_id: self.user_id,
            role_id: self.role_id,
        }
    }
}

#[cfg(test)]
mod tests;
