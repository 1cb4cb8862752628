//! Projects, users, roles and role assignments (Keystone's model, one domain) in SQLite,
//! behind [`IdentityStore`] (with the tokens of `storage::tokens`).

use super::{flag, tokens, StorageError};
use crate::identity::store::{
    Grant, IdentityStore, ListFilter, Project, ProjectRole, Role, TokenRecord, User,
};
use crate::identity::IdentityError;
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};

const PROJECT_COLUMNS: &str = "id, name, description, enabled";
const USER_COLUMNS: &str = "id, name, enabled, default_project_id, email, description";

fn project_row(r: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        enabled: flag(r.get(3)?),
    })
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        enabled: flag(r.get(2)?),
        default_project_id: r.get(3)?,
        email: r.get(4)?,
        description: r.get(5)?,
    })
}

fn role_row(r: &Row<'_>) -> rusqlite::Result<Role> {
    Ok(Role {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
    })
}

fn insert_project(conn: &Connection, p: &Project) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO projects (id, name, description, enabled, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        (
            &p.id,
            &p.name,
            &p.description,
            p.enabled,
            Timestamp::now().micros(),
        ),
    )?;
    Ok(())
}

fn project(conn: &Connection, id: &str) -> Result<Option<Project>, StorageError> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], project_row).optional()?)
}

fn project_by_name(conn: &Connection, name: &str) -> Result<Option<Project>, StorageError> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?1");
    Ok(conn.query_row(&sql, [name], project_row).optional()?)
}

fn projects(conn: &Connection, f: ListFilter<'_>) -> Result<Vec<Project>, StorageError> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects
         WHERE (?1 IS NULL OR name = ?1) AND (?2 IS NULL OR id = ?2)
         ORDER BY name"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map((f.name, f.project), project_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Only the test of the cascade deletes projects: the API has no delete yet.
#[cfg(test)]
fn delete_project(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM projects WHERE id = ?1", [id])? > 0)
}

fn insert_user(
    conn: &Connection,
    u: &User,
    password_hash: Option<&str>,
) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO users (id, name, password_hash, enabled, default_project_id, email,
                            description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        (
            &u.id,
            &u.name,
            password_hash,
            u.enabled,
            &u.default_project_id,
            &u.email,
            &u.description,
            Timestamp::now().micros(),
        ),
    )?;
    Ok(())
}

fn user(conn: &Connection, id: &str) -> Result<Option<User>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], user_row).optional()?)
}

fn user_by_name(conn: &Connection, name: &str) -> Result<Option<User>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1");
    Ok(conn.query_row(&sql, [name], user_row).optional()?)
}

/// The stored argon2 PHC string of a user, if the user has a password.
fn password_hash(conn: &Connection, user_id: &str) -> Result<Option<String>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT password_hash FROM users WHERE id = ?1",
            [user_id],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

fn users(conn: &Connection, f: ListFilter<'_>) -> Result<Vec<User>, StorageError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users
         WHERE (?1 IS NULL OR name = ?1)
           AND (?2 IS NULL OR id IN (SELECT user_id FROM role_assignments WHERE project_id = ?2))
         ORDER BY name"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map((f.name, f.project), user_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn insert_role(conn: &Connection, r: &Role) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO roles (id, name, description) VALUES (?1, ?2, ?3)",
        (&r.id, &r.name, &r.description),
    )?;
    Ok(())
}

fn role(conn: &Connection, id: &str) -> Result<Option<Role>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id, name, description FROM roles WHERE id = ?1",
            [id],
            role_row,
        )
        .optional()?)
}

fn role_by_name(conn: &Connection, name: &str) -> Result<Option<Role>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id, name, description FROM roles WHERE name = ?1",
            [name],
            role_row,
        )
        .optional()?)
}

fn roles(conn: &Connection, name: Option<&str>) -> Result<Vec<Role>, StorageError> {
    let mut st = conn.prepare(
        "SELECT id, name, description FROM roles WHERE (?1 IS NULL OR name = ?1) ORDER BY name",
    )?;
    let rows = st.query_map([name], role_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Grants `role_id` to `user_id` on `project_id`; granting twice is not an error.
fn assign_role(
    conn: &Connection,
    project_id: &str,
    user_id: &str,
    role_id: &str,
) -> Result<(), StorageError> {
    conn.execute(
        "INSERT OR IGNORE INTO role_assignments (project_id, user_id, role_id)
         VALUES (?1, ?2, ?3)",
        (project_id, user_id, role_id),
    )?;
    Ok(())
}

fn unassign_role(
    conn: &Connection,
    project_id: &str,
    user_id: &str,
    role_id: &str,
) -> Result<bool, StorageError> {
    Ok(conn.execute(
        "DELETE FROM role_assignments WHERE project_id = ?1 AND user_id = ?2 AND role_id = ?3",
        (project_id, user_id, role_id),
    )? > 0)
}

/// The roles `user_id` holds directly on `project_id`.
fn assigned_roles(
    conn: &Connection,
    user_id: &str,
    project_id: &str,
) -> Result<Vec<Role>, StorageError> {
    let mut st = conn.prepare(
        "SELECT r.id, r.name, r.description FROM roles r
         JOIN role_assignments a ON a.role_id = r.id
         WHERE a.user_id = ?1 AND a.project_id = ?2 ORDER BY r.name",
    )?;
    let rows = st.query_map([user_id, project_id], role_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The SQLite implementation of identity's door: each method one transaction.
impl IdentityStore for super::Db {
    fn create_project(&self, p: &Project) -> Result<Project, IdentityError> {
        self.write(|tx| {
            if project_by_name(tx, &p.name)?.is_some() {
                return Err(IdentityError::duplicate("Project", &p.name));
            }
            insert_project(tx, p)?;
            Ok(p.clone())
        })
    }

    fn project(&self, id: &str) -> Result<Option<Project>, StorageError> {
        self.read(|c| project(c, id))
    }

    fn project_by_name(&self, name: &str) -> Result<Option<Project>, StorageError> {
        self.read(|c| project_by_name(c, name))
    }

    fn projects(&self, f: ListFilter<'_>) -> Result<Vec<Project>, StorageError> {
        self.read(|c| projects(c, f))
    }

    fn create_user(
        &self,
        u: &User,
        password_hash: Option<&str>,
        grant: Option<ProjectRole<'_>>,
    ) -> Result<User, IdentityError> {
        self.write(|tx| {
            if user_by_name(tx, &u.name)?.is_some() {
                return Err(IdentityError::duplicate("User", &u.name));
            }
            if let Some(pid) = &u.default_project_id {
                if project(tx, pid)?.is_none() {
                    return Err(IdentityError::missing("project", pid));
                }
            }
            insert_user(tx, u, password_hash)?;
            if let Some(g) = grant {
                let g = Grant {
                    project_id: g.project_id,
                    user_id: &u.id,
                    role_id: g.role_id,
                };
                check_grant(tx, g)?;
                assign_role(tx, g.project_id, g.user_id, g.role_id)?;
            }
            Ok(u.clone())
        })
    }

    fn user(&self, id: &str) -> Result<Option<User>, StorageError> {
        self.read(|c| user(c, id))
    }

    fn user_by_name(&self, name: &str) -> Result<Option<User>, StorageError> {
        self.read(|c| user_by_name(c, name))
    }

    fn users(&self, f: ListFilter<'_>) -> Result<Vec<User>, StorageError> {
        self.read(|c| users(c, f))
    }

    fn password_hash(&self, user_id: &str) -> Result<Option<String>, StorageError> {
        self.read(|c| password_hash(c, user_id))
    }

    fn create_role(&self, r: &Role) -> Result<Role, IdentityError> {
        self.write(|tx| {
            if role_by_name(tx, &r.name)?.is_some() {
                return Err(IdentityError::duplicate("Role", &r.name));
            }
            insert_role(tx, r)?;
            Ok(r.clone())
        })
    }

    fn role(&self, id: &str) -> Result<Option<Role>, StorageError> {
        self.read(|c| role(c, id))
    }

    fn role_by_name(&self, name: &str) -> Result<Option<Role>, StorageError> {
        self.read(|c| role_by_name(c, name))
    }

    fn roles(&self, name: Option<&str>) -> Result<Vec<Role>, StorageError> {
        self.read(|c| roles(c, name))
    }

    fn grant_role(&self, g: Grant<'_>) -> Result<(), IdentityError> {
        self.write(|tx| {
            check_grant(tx, g)?;
            Ok(assign_role(tx, g.project_id, g.user_id, g.role_id)?)
        })
    }

    fn revoke_role(&self, g: Grant<'_>) -> Result<(), IdentityError> {
        self.write(|tx| {
            check_grant(tx, g)?;
            if !unassign_role(tx, g.project_id, g.user_id, g.role_id)? {
                return Err(IdentityError::missing(
                    "role assignment",
                    &format!("{}/{}/{}", g.project_id, g.user_id, g.role_id),
                ));
            }
            Ok(())
        })
    }

    fn assigned_roles(&self, user_id: &str, project_id: &str) -> Result<Vec<Role>, StorageError> {
        self.read(|c| assigned_roles(c, user_id, project_id))
    }

    fn insert_token(&self, t: &TokenRecord) -> Result<(), StorageError> {
        self.write(|tx| {
            tokens::purge_expired(tx, t.issued_at)?;
            tokens::insert(tx, t)
        })
    }

    fn token(&self, id_hash: &str) -> Result<Option<TokenRecord>, StorageError> {
        self.read(|c| tokens::get(c, id_hash))
    }

    fn revoke_token(&self, id_hash: &str) -> Result<bool, StorageError> {
        self.write(|tx| tokens::revoke(tx, id_hash))
    }
}

/// The project, user and role of `g` exist (else NotFound naming the first missing one).
fn check_grant(c: &Connection, g: Grant<'_>) -> Result<(), IdentityError> {
    if project(c, g.project_id)?.is_none() {
        return Err(IdentityError::missing("project", g.project_id));
    }
    if user(c, g.user_id)?.is_none() {
        return Err(IdentityError::missing("user", g.user_id));
    }
    if role(c, g.role_id)?.is_none() {
        return Err(IdentityError::missing("role", g.role_id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    #[test]
    fn conforms_to_the_identity_store_contract() {
        crate::identity::store::conformance::run(|| Db::open_in_memory().unwrap());
    }

    fn new_project(id: &str, name: &str) -> Project {
        Project {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            enabled: true,
        }
    }

    fn new_user(id: &str, name: &str) -> User {
        User {
            id: id.into(),
            name: name.into(),
            enabled: true,
            default_project_id: None,
            email: None,
            description: String::new(),
        }
    }

    #[test]
    fn users_listed_for_a_project_are_those_with_a_role_on_it() {
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| -> Result<(), StorageError> {
            insert_project(tx, &new_project("p1", "one"))?;
            insert_project(tx, &new_project("p2", "two"))?;
            insert_user(tx, &new_user("u1", "alice"), None)?;
            insert_user(tx, &new_user("u2", "bob"), Some("$argon2id$x"))?;
            insert_role(
                tx,
                &Role {
                    id: "r1".into(),
                    name: "member".into(),
                    description: String::new(),
                },
            )?;
            assign_role(tx, "p1", "u1", "r1")?;
            assign_role(tx, "p1", "u1", "r1")?;
            assign_role(tx, "p2", "u2", "r1")
        })
        .unwrap();
        db.read(|c| -> Result<(), StorageError> {
            let in_p1 = users(
                c,
                ListFilter {
                    name: None,
                    project: Some("p1"),
                },
            )?;
            assert_eq!(in_p1.len(), 1);
            assert_eq!(in_p1[0].name, "alice");
            let all = users(
                c,
                ListFilter {
                    name: None,
                    project: None,
                },
            )?;
            assert_eq!(all.len(), 2);
            assert_eq!(assigned_roles(c, "u1", "p1")?.len(), 1);
            assert!(assigned_roles(c, "u1", "p2")?.is_empty());
            assert_eq!(password_hash(c, "u2")?.as_deref(), Some("$argon2id$x"));
            assert_eq!(password_hash(c, "u1")?, None);
            Ok(())
        })
        .unwrap();
        // Deleting a project drops its assignments with it.
        db.write(|tx| delete_project(tx, "p1")).unwrap();
        let left = db.read(|c| assigned_roles(c, "u1", "p1")).unwrap();
        assert!(left.is_empty());
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let db = Db::open_in_memory().unwrap();
        let r = db.write(|tx| -> Result<(), StorageError> {
            insert_project(tx, &new_project("p1", "one"))?;
            // Same name: violates UNIQUE, so the whole transaction rolls back.
            insert_project(tx, &new_project("p2", "one"))
        });
        assert!(r.is_err());
        assert!(db.read(|c| project(c, "p1")).unwrap().is_none());
    }
}
