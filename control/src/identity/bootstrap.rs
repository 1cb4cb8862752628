//! First start: the built-in roles, project `admin` and user `admin` holding role `admin` on
//! it. The password comes from the caller (the daemon reads `OUTPOST_ADMIN_PASSWORD`) or is
//! generated and written to a 0600 file. Idempotent: later starts change nothing.
//!
//! In a cluster the identities are shared, so the same holds across boxes: the first box to
//! start creates them, and every later box finds them and writes nothing, no password file
//! either. A joining box's admin is the cluster's one admin, whose password is the one the
//! first box was given or wrote to its own `admin-password`. Boxes starting at once may both
//! try: each identity is created by one name-guarded write, so the loser finds the winner's
//! and removes the password file it wrote for an admin it did not create.

use super::store::{IdentityStore, Project, ProjectRole, Role, User};
use super::{password, IdentityError, BUILTIN_ROLES, ROLE_ADMIN};
use crate::context::RequestContext;
use crate::random;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const ADMIN_PROJECT: &str = "admin";
pub const ADMIN_USER: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the admin password given is empty")]
    EmptyPassword,
    #[error("cannot write the generated admin password to {path:?}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bootstrap admin {0} is missing from the database")]
    AdminMissing(&'static str),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl From<crate::store::StorageError> for BootstrapError {
    fn from(e: crate::store::StorageError) -> Self {
        BootstrapError::Identity(e.into())
    }
}

/// Ensures the bootstrap identities exist and returns the context the unix socket's peer acts
/// as: user `admin` in project `admin` with every built-in role.
///
/// `password`: the admin's password when it has to be created; None generates one and
/// writes it to `password_file`.
pub fn ensure(
    db: &dyn IdentityStore,
    password: Option<&str>,
    password_file: &Path,
) -> Result<RequestContext, BootstrapError> {
    if password.is_some_and(str::is_empty) {
        return Err(BootstrapError::EmptyPassword);
    }
    let exists = db.user_by_name(ADMIN_USER)?.is_some();
    // Hash (slow) before the write transaction; only needed the first time.
    let new_secret = if exists {
        None
    } else {
        let secret = match password {
            Some(p) => p.to_owned(),
            None => random::password().map_err(IdentityError::from)?,
        };
        let hash = password::hash(&secret)?;
        Some((secret, hash))
    };
    // Each identity is made in its own write, if missing; a start interrupted half-way
    // finds what it made and goes on.
    // A Duplicate is another box (of a cluster) that made it first: take theirs.
    for name in BUILTIN_ROLES {
        if db.role_by_name(name)?.is_none() {
            let role = Role {
                id: random::hex_id().map_err(IdentityError::from)?,
                name: name.to_owned(),
                description: String::new(),
            };
            match db.create_role(&role) {
                Ok(_) | Err(IdentityError::Duplicate { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let project = match db.project_by_name(ADMIN_PROJECT)? {
        Some(p) => p,
        None => match db.create_project(&Project {
            id: random::hex_id().map_err(IdentityError::from)?,
            name: ADMIN_PROJECT.to_owned(),
            description: "Bootstrap project for initializing the cloud.".to_owned(),
            enabled: true,
        }) {
            Ok(p) => p,
            Err(IdentityError::Duplicate { .. }) => db
                .project_by_name(ADMIN_PROJECT)?
                .ok_or(BootstrapError::AdminMissing("project"))?,
            Err(e) => return Err(e.into()),
        },
    };
    if let Some((secret, hash)) = &new_secret {
        let admin = db
            .role_by_name(ROLE_ADMIN)?
            .ok_or(BootstrapError::AdminMissing("role"))?;
        // Written before the user: if writing fails no user exists, and the next start
        // generates a new password (and overwrites a file left by a user that failed).
        if password.is_none() {
            write_secret(password_file, secret)?;
            tracing::info!("generated admin password written to {password_file:?}");
        }
        let user = User {
            id: random::hex_id().map_err(IdentityError::from)?,
            name: ADMIN_USER.to_owned(),
            enabled: true,
            default_project_id: Some(project.id.clone()),
            email: None,
            description: String::new(),
        };
        // The user and its admin role in one write: the admin never exists without it.
        let grant = ProjectRole {
            project_id: &project.id,
            role_id: &admin.id,
        };
        match db.create_user(&user, Some(hash), Some(grant)) {
            Ok(_) => {}
            Err(IdentityError::Duplicate { .. }) => {
                tracing::info!("another box created the admin first; its password stands");
                if password.is_none() {
                    remove_secret(password_file);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    socket_context(db)
}

/// The identity of the unix socket's peer, read from the database.
fn socket_context(db: &dyn IdentityStore) -> Result<RequestContext, BootstrapError> {
    let user = db
        .user_by_name(ADMIN_USER)?
        .ok_or(BootstrapError::AdminMissing("user"))?;
    let project = db
        .project_by_name(ADMIN_PROJECT)?
        .ok_or(BootstrapError::AdminMissing("project"))?;
    Ok(RequestContext {
        user_id: user.id,
        user_name: user.name,
        project_id: Some(project.id),
        project_name: Some(project.name),
        roles: BUILTIN_ROLES.iter().map(|r| (*r).to_owned()).collect(),
    })
}

/// Removes a password file that names no admin's password (best effort: a leftover only
/// misleads, it grants nothing).
fn remove_secret(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!("cannot remove {path:?}, which holds no admin's password: {e}");
    }
}

fn write_secret(path: &Path, secret: &str) -> Result<(), BootstrapError> {
    let failed = |source| BootstrapError::PasswordFile {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    // mode() applies only when the file is created; a file left from before gets it too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(failed)?;
    writeln!(f, "{secret}").map_err(failed)?;
    f.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::tokens::{self, DomainRef, NamedRef, PasswordAuth};
    use crate::storage::Db;
    use std::time::Duration;

    fn login(db: &Db, password: &str) -> Result<tokens::IssuedToken, IdentityError> {
        let by_name = |name: &str| NamedRef::Name {
            name: name.to_owned(),
            domain: DomainRef::Name("Default".to_owned()),
        };
        let auth = PasswordAuth {
            user: by_name(ADMIN_USER),
            password: password.to_owned(),
            project: Some(by_name(ADMIN_PROJECT)),
        };
        let logins = crate::identity::logins::LoginGuard::new(Default::default());
        tokens::issue(db, &auth, Duration::from_secs(60), &logins, None)
    }

    #[test]
    fn generates_a_password_file_once_and_the_admin_can_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin-password");
        let db = Db::open_in_memory().unwrap();
        let ctx = ensure(&db, None, &file).unwrap();
        assert!(ctx.is_admin());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let secret = std::fs::read_to_string(&file).unwrap();
        let token = login(&db, secret.trim()).unwrap();
        let roles: Vec<_> = token.info.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(roles, ["admin", "member", "reader"]);
        // A second start neither changes the password nor duplicates anything.
        let again = ensure(&db, None, &file).unwrap();
        assert_eq!(again, ctx);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), secret);
        assert!(login(&db, secret.trim()).is_ok());
    }

    /// What a second box of a cluster sees: the identities exist (made by another box), or
    /// another box makes them while this one runs (every create answers Duplicate).
    #[test]
    fn a_second_box_finds_the_admin_and_one_that_lost_the_race_keeps_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let (file1, file2) = (dir.path().join("one"), dir.path().join("two"));
        let db = Db::open_in_memory().unwrap();
        let first = ensure(&db, None, &file1).unwrap();
        assert_eq!(ensure(&db, None, &file2).unwrap(), first);
        assert!(
            !file2.exists(),
            "a box that found the admin writes no password"
        );
        let late = Late {
            db: &db,
            looks: Default::default(),
        };
        assert_eq!(ensure(&late, None, &file2).unwrap(), first);
        assert!(
            !file2.exists(),
            "a box that lost the race keeps no password"
        );
        let secret = std::fs::read_to_string(&file1).unwrap();
        assert!(login(&db, secret.trim()).is_ok());
    }

    /// A store that hides the bootstrap identities from the first look at each (the
    /// builtin roles, the project, the user), as if another box made them in between.
    struct Late<'a> {
        db: &'a Db,
        /// Looks so far at roles, the project and the user, by name.
        looks: [std::sync::atomic::AtomicUsize; 3],
    }

    impl Late<'_> {
        fn hidden(&self, what: usize, first: usize) -> bool {
            self.looks[what].fetch_add(1, std::sync::atomic::Ordering::Relaxed) < first
        }
    }

    impl IdentityStore for Late<'_> {
        fn create_project(&self, p: &Project) -> Result<Project, IdentityError> {
            self.db.create_project(p)
        }
        fn project(&self, id: &str) -> Result<Option<Project>, crate::store::StorageError> {
            self.db.project(id)
        }
        fn project_by_name(
            &self,
            name: &str,
        ) -> Result<Option<Project>, crate::store::StorageError> {
            if self.hidden(1, 1) {
                return Ok(None);
            }
            self.db.project_by_name(name)
        }
        fn projects(
            &self,
            f: crate::identity::store::ListFilter<'_>,
        ) -> Result<Vec<Project>, crate::store::StorageError> {
            self.db.projects(f)
        }
        fn create_user(
            &self,
            u: &User,
            h: Option<&str>,
            g: Option<ProjectRole<'_>>,
        ) -> Result<User, IdentityError> {
            self.db.create_user(u, h, g)
        }
        fn user(&self, id: &str) -> Result<Option<User>, crate::store::StorageError> {
            self.db.user(id)
        }
        fn user_by_name(&self, name: &str) -> Result<Option<User>, crate::store::StorageError> {
            if self.hidden(2, 1) {
                return Ok(None);
            }
            self.db.user_by_name(name)
        }
        fn users(
            &self,
            f: crate::identity::store::ListFilter<'_>,
        ) -> Result<Vec<User>, crate::store::StorageError> {
            self.db.users(f)
        }
        fn password_hash(&self, id: &str) -> Result<Option<String>, crate::store::StorageError> {
            self.db.password_hash(id)
        }
        fn create_role(&self, r: &Role) -> Result<Role, IdentityError> {
            self.db.create_role(r)
        }
        fn role(&self, id: &str) -> Result<Option<Role>, crate::store::StorageError> {
            self.db.role(id)
        }
        fn role_by_name(&self, name: &str) -> Result<Option<Role>, crate::store::StorageError> {
            if self.hidden(0, BUILTIN_ROLES.len()) {
                return Ok(None);
            }
            self.db.role_by_name(name)
        }
        fn roles(&self, name: Option<&str>) -> Result<Vec<Role>, crate::store::StorageError> {
            self.db.roles(name)
        }
        fn grant_role(&self, g: crate::identity::store::Grant<'_>) -> Result<(), IdentityError> {
            self.db.grant_role(g)
        }
        fn revoke_role(&self, g: crate::identity::store::Grant<'_>) -> Result<(), IdentityError> {
            self.db.revoke_role(g)
        }
        fn assigned_roles(
            &self,
            u: &str,
            p: &str,
        ) -> Result<Vec<Role>, crate::store::StorageError> {
            self.db.assigned_roles(u, p)
        }
        fn insert_token(
            &self,
            t: &crate::identity::store::TokenRecord,
        ) -> Result<(), crate::store::StorageError> {
            self.db.insert_token(t)
        }
        fn token(
            &self,
            h: &str,
        ) -> Result<Option<crate::identity::store::TokenRecord>, crate::store::StorageError>
        {
            self.db.token(h)
        }
        fn revoke_token(&self, h: &str) -> Result<bool, crate::store::StorageError> {
            self.db.revoke_token(h)
        }
    }

    #[test]
    fn uses_the_given_password_and_writes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin-password");
        let db = Db::open_in_memory().unwrap();
        ensure(&db, Some("s3cret!"), &file).unwrap();
        assert!(!file.exists());
        assert!(login(&db, "s3cret!").is_ok());
        assert!(matches!(
            login(&db, "wrong"),
            Err(IdentityError::InvalidCredentials)
        ));
        assert!(matches!(
            ensure(&db, Some(""), &file),
            Err(BootstrapError::EmptyPassword)
        ));
    }
}
