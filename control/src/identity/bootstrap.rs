//! First start: the built-in roles, project `admin` and user `admin` holding role `admin` on
//! it. The password comes from the caller (the daemon reads `OUTPOST_ADMIN_PASSWORD`) or is
//! generated and written to a 0600 file. Idempotent: later starts change nothing.

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
    for name in BUILTIN_ROLES {
        if db.role_by_name(name)?.is_none() {
            let role = Role {
                id: random::hex_id().map_err(IdentityError::from)?,
                name: name.to_owned(),
                description: String::new(),
            };
            db.create_role(&role)?;
        }
    }
    let project = match db.project_by_name(ADMIN_PROJECT)? {
        Some(p) => p,
        None => db.create_project(&Project {
            id: random::hex_id().map_err(IdentityError::from)?,
            name: ADMIN_PROJECT.to_owned(),
            description: "Bootstrap project for initializing the cloud.".to_owned(),
            enabled: true,
        })?,
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
        db.create_user(&user, Some(hash), Some(grant))?;
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
        tokens::issue(db, &auth, Duration::from_secs(60))
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
