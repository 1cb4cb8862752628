//! Identity's door to its state: projects, users (with their password hashes), roles, role
//! assignments and issued tokens. Everything that reads or writes them goes through
//! [`IdentityStore`]; SQLite implements it for one box (`storage::identity`,
//! `storage::tokens`), and a cluster's store implements the same trait.
//!
//! Each method is atomic on its own. The contested writes are single calls: creating a
//! project, user or role checks that its name is free (and what it refers to exists) and writes
//! it as one step, so an etcd store can do each as one transaction with compare clauses.

use super::IdentityError;
use crate::store::StorageError;
use crate::timestamp::Timestamp;

#[cfg(test)]
pub(crate) mod conformance;

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub default_project_id: Option<String>,
    pub email: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
}

/// Which rows a list returns: everything, or what belongs to one project.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter<'a> {
    pub name: Option<&'a str>,
    /// `Some(p)`: only project `p` (for projects) or users holding a role on `p` (for users).
    pub project: Option<&'a str>,
}

/// A role on a project, given to a user as it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectRole<'a> {
    pub project_id: &'a str,
    pub role_id: &'a str,
}

/// A role on a project, granted to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    pub project_id: &'a str,
    pub user_id: &'a str,
    pub role_id: &'a str,
}

/// A bearer token as stored: by the hex SHA-256 of its value, never the value itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id_hash: String,
    pub user_id: String,
    pub project_id: Option<String>,
    pub methods: Vec<String>,
    pub audit_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked: bool,
}

pub trait IdentityStore: Send + Sync {
    /// Records `p` unless a project has its name ([`IdentityError::Duplicate`]).
    fn create_project(&self, p: &Project) -> Result<Project, IdentityError>;
    fn project(&self, id: &str) -> Result<Option<Project>, StorageError>;
    fn project_by_name(&self, name: &str) -> Result<Option<Project>, StorageError>;
    /// Projects passing `f`, by name.
    fn projects(&self, f: ListFilter<'_>) -> Result<Vec<Project>, StorageError>;

    /// Records `u` with its password hash unless a user has its name
    /// ([`IdentityError::Duplicate`]) or its default project does not exist
    /// ([`IdentityError::NotFound`]); with `grant`, the user gets that role on that project in
    /// the same step (refused with `NotFound` if either is missing), so a user never exists
    /// without it.
    fn create_user(
        &self,
        u: &User,
        password_hash: Option<&str>,
        grant: Option<ProjectRole<'_>>,
    ) -> Result<User, IdentityError>;
    fn user(&self, id: &str) -> Result<Option<User>, StorageError>;
    fn user_by_name(&self, name: &str) -> Result<Option<User>, StorageError>;
    /// Users passing `f` (with a project: those holding a role on it), by name.
    fn users(&self, f: ListFilter<'_>) -> Result<Vec<User>, StorageError>;
    /// The stored argon2 PHC string of a user, if the user exists and has a password.
    fn password_hash(&self, user_id: &str) -> Result<Option<String>, StorageError>;

    /// Records `r` unless a role has its name ([`IdentityError::Duplicate`]).
    fn create_role(&self, r: &Role) -> Result<Role, IdentityError>;
    fn role(&self, id: &str) -> Result<Option<Role>, StorageError>;
    fn role_by_name(&self, name: &str) -> Result<Option<Role>, StorageError>;
    /// Every role (named `name`, when given), by name.
    fn roles(&self, name: Option<&str>) -> Result<Vec<Role>, StorageError>;

    /// Grants the role if the project, user and role all exist (else `NotFound` naming the
    /// first missing one, in that order); granting twice is not an error.
    fn grant_role(&self, g: Grant<'_>) -> Result<(), IdentityError>;
    /// Takes the role back; `NotFound` as for [`Self::grant_role`], or of kind
    /// "role assignment" when the user did not hold it.
    fn revoke_role(&self, g: Grant<'_>) -> Result<(), IdentityError>;
    /// The roles `user_id` holds directly on `project_id`, by name.
    fn assigned_roles(&self, user_id: &str, project_id: &str) -> Result<Vec<Role>, StorageError>;

    /// Records an issued token (its user and project exist), and drops every token that
    /// expired before its issue (they can never validate again).
    fn insert_token(&self, t: &TokenRecord) -> Result<(), StorageError>;
    fn token(&self, id_hash: &str) -> Result<Option<TokenRecord>, StorageError>;
    /// Marks a token revoked; false if there is no such token.
    fn revoke_token(&self, id_hash: &str) -> Result<bool, StorageError>;
}
