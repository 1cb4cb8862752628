//! Projects, users, roles and role assignments (Keystone's model, one domain).

use super::{flag, StorageError};
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};

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

pub fn insert_project(conn: &Connection, p: &Project) -> Result<(), StorageError> {
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

pub fn project(conn: &Connection, id: &str) -> Result<Option<Project>, StorageError> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], project_row).optional()?)
}

pub fn project_by_name(conn: &Connection, name: &str) -> Result<Option<Project>, StorageError> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?1");
    Ok(conn.query_row(&sql, [name], project_row).optional()?)
}

pub fn projects(conn: &Connection, f: ListFilter<'_>) -> Result<Vec<Project>, StorageError> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects
         WHERE (?1 IS NULL OR name = ?1) AND (?2 IS NULL OR id = ?2)
         ORDER BY name"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map((f.name, f.project), project_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete_project(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM projects WHERE id = ?1", [id])? > 0)
}

pub fn insert_user(
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

pub fn user(conn: &Connection, id: &str) -> Result<Option<User>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], user_row).optional()?)
}

pub fn user_by_name(conn: &Connection, name: &str) -> Result<Option<User>, StorageError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1");
    Ok(conn.query_row(&sql, [name], user_row).optional()?)
}

/// The stored argon2 PHC string of a user, if the user has a password.
pub fn password_hash(conn: &Connection, user_id: &str) -> Result<Option<String>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT password_hash FROM users WHERE id = ?1",
            [user_id],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

pub fn users(conn: &Connection, f: ListFilter<'_>) -> Result<Vec<User>, StorageError> {
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

pub fn delete_user(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM users WHERE id = ?1", [id])? > 0)
}

pub fn insert_role(conn: &Connection, r: &Role) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO roles (id, name, description) VALUES (?1, ?2, ?3)",
        (&r.id, &r.name, &r.description),
    )?;
    Ok(())
}

pub fn role(conn: &Connection, id: &str) -> Result<Option<Role>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id, name, description FROM roles WHERE id = ?1",
            [id],
            role_row,
        )
        .optional()?)
}

pub fn role_by_name(conn: &Connection, name: &str) -> Result<Option<Role>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id, name, description FROM roles WHERE name = ?1",
            [name],
            role_row,
        )
        .optional()?)
}

pub fn roles(conn: &Connection, name: Option<&str>) -> Result<Vec<Role>, StorageError> {
    let mut st = conn.prepare(
        "SELECT id, name, description FROM roles WHERE (?1 IS NULL OR name = ?1) ORDER BY name",
    )?;
    let rows = st.query_map([name], role_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Grants `role_id` to `user_id` on `project_id`; granting twice is not an error.
pub fn assign_role(
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

pub fn unassign_role(
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
pub fn assigned_roles(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

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
