//! Managing projects, users, roles and role assignments, with Keystone's rule that only an
//! admin changes them; listings follow [`RequestContext::visibility`].

use super::{password, IdentityError};
use crate::context::{RequestContext, Visibility};
use crate::random;
use crate::storage::identity::{self as store, ListFilter, Project, Role, User};
use crate::storage::Db;

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
    db: &Db,
    ctx: &RequestContext,
    name: Option<&str>,
) -> Result<Vec<Project>, IdentityError> {
    let f = filter(ctx, name, "list_projects")?;
    db.read(|c| Ok(store::projects(c, f)?))
}

pub fn get_project(db: &Db, ctx: &RequestContext, id: &str) -> Result<Project, IdentityError> {
    let not_found = || IdentityError::NotFound {
        kind: "project",
        id: id.to_owned(),
    };
    // A member asking for another project learns nothing about whether it exists.
    if !ctx.can_see(id) {
        return Err(IdentityError::Forbidden("get_project"));
    }
    db.read(|c| store::project(c, id))?.ok_or_else(not_found)
}

pub fn create_project(
    db: &Db,
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
    db.write(|tx| {
        if store::project_by_name(tx, &project.name)?.is_some() {
            return Err(IdentityError::Duplicate {
                kind: "Project",
                name: project.name.clone(),
            });
        }
        store::insert_project(tx, &project)?;
        Ok(project)
    })
}

pub fn list_users(
    db: &Db,
    ctx: &RequestContext,
    name: Option<&str>,
) -> Result<Vec<User>, IdentityError> {
    let f = filter(ctx, name, "list_users")?;
    db.read(|c| Ok(store::users(c, f)?))
}

/// An admin sees any user; others see themselves and the users of their own project.
pub fn get_user(db: &Db, ctx: &RequestContext, id: &str) -> Result<User, IdentityError> {
    let visible = if ctx.is_admin() || ctx.user_id == id {
        db.read(|c| store::user(c, id))?
    } else {
        let f = filter(ctx, None, "get_user")?;
        db.read(|c| store::users(c, f))?
            .into_iter()
            .find(|u| u.id == id)
    };
    visible.ok_or_else(|| IdentityError::NotFound {
        kind: "user",
        id: id.to_owned(),
    })
}

pub fn create_user(db: &Db, ctx: &RequestContext, new: NewUser) -> Result<User, IdentityError> {
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
    db.write(|tx| {
        if store::user_by_name(tx, &user.name)?.is_some() {
            return Err(IdentityError::Duplicate {
                kind: "User",
                name: user.name.clone(),
            });
        }
        if let Some(pid) = &user.default_project_id {
            if store::project(tx, pid)?.is_none() {
                return Err(IdentityError::NotFound {
                    kind: "project",
                    id: pid.clone(),
                });
            }
        }
        store::insert_user(tx, &user, hash.as_deref())?;
        Ok(user)
    })
}

pub fn list_roles(
    db: &Db,
    ctx: &RequestContext,
    name: Option<&str>,
) -> Result<Vec<Role>, IdentityError> {
    require_admin(ctx, "list_roles")?;
    db.read(|c| Ok(store::roles(c, name)?))
}

pub fn get_role(db: &Db, ctx: &RequestContext, id: &str) -> Result<Role, IdentityError> {
    require_admin(ctx, "get_role")?;
    db.read(|c| store::role(c, id))?
        .ok_or_else(|| IdentityError::NotFound {
            kind: "role",
            id: id.to_owned(),
        })
}

pub fn create_role(db: &Db, ctx: &RequestContext, new: NewRole) -> Result<Role, IdentityError> {
    require_admin(ctx, "create_role")?;
    check_name("name", &new.name, 64)?;
    let role = Role {
        id: random::hex_id()?,
        name: new.name,
        description: new.description,
    };
    db.write(|tx| {
        if store::role_by_name(tx, &role.name)?.is_some() {
            return Err(IdentityError::Duplicate {
                kind: "Role",
                name: role.name.clone(),
            });
        }
        store::insert_role(tx, &role)?;
        Ok(role)
    })
}

/// Which user, on which project, with which role: all by id.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    pub project_id: &'a str,
    pub user_id: &'a str,
    pub role_id: &'a str,
}

pub fn grant_role(db: &Db, ctx: &RequestContext, a: Assignment<'_>) -> Result<(), IdentityError> {
    require_admin(ctx, "create_grant")?;
    db.write(|tx| {
        check_assignment_parts(tx, a)?;
        Ok(store::assign_role(tx, a.project_id, a.user_id, a.role_id)?)
    })
}

pub fn revoke_role(db: &Db, ctx: &RequestContext, a: Assignment<'_>) -> Result<(), IdentityError> {
    require_admin(ctx, "revoke_grant")?;
    db.write(|tx| {
        check_assignment_parts(tx, a)?;
        if !store::unassign_role(tx, a.project_id, a.user_id, a.role_id)? {
            return Err(IdentityError::NotFound {
                kind: "role assignment",
                id: format!("{}/{}/{}", a.project_id, a.user_id, a.role_id),
            });
        }
        Ok(())
    })
}

fn check_assignment_parts(
    c: &rusqlite::Connection,
    a: Assignment<'_>,
) -> Result<(), IdentityError> {
    let missing = |kind, id: &str| IdentityError::NotFound {
        kind,
        id: id.to_owned(),
    };
    if store::project(c, a.project_id)?.is_none() {
        return Err(missing("project", a.project_id));
    }
    if store::user(c, a.user_id)?.is_none() {
        return Err(missing("user", a.user_id));
    }
    if store::role(c, a.role_id)?.is_none() {
        return Err(missing("role", a.role_id));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
