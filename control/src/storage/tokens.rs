//! Bearer tokens, stored by the hex SHA-256 of their value with scope, expiry and revocation;
//! part of identity's door (`impl IdentityStore for Db` in `storage::identity`).

use super::{flag, StorageError};
use crate::identity::store::TokenRecord;
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension};

pub(super) fn insert(conn: &Connection, t: &TokenRecord) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO tokens (id_hash, user_id, project_id, methods, audit_id, issued_at,
                             expires_at, revoked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        (
            &t.id_hash,
            &t.user_id,
            &t.project_id,
            t.methods.join(","),
            &t.audit_id,
            t.issued_at.micros(),
            t.expires_at.micros(),
            t.revoked,
        ),
    )?;
    Ok(())
}

pub(super) fn get(conn: &Connection, id_hash: &str) -> Result<Option<TokenRecord>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id_hash, user_id, project_id, methods, audit_id, issued_at, expires_at,
                    revoked
             FROM tokens WHERE id_hash = ?1",
            [id_hash],
            |r| {
                let methods: String = r.get(3)?;
                Ok(TokenRecord {
                    id_hash: r.get(0)?,
                    user_id: r.get(1)?,
                    project_id: r.get(2)?,
                    methods: methods.split(',').map(str::to_owned).collect(),
                    audit_id: r.get(4)?,
                    issued_at: Timestamp(r.get(5)?),
                    expires_at: Timestamp(r.get(6)?),
                    revoked: flag(r.get(7)?),
                })
            },
        )
        .optional()?)
}

/// Marks a token revoked; false if there is no such token.
pub(super) fn revoke(conn: &Connection, id_hash: &str) -> Result<bool, StorageError> {
    Ok(conn.execute(
        "UPDATE tokens SET revoked = 1 WHERE id_hash = ?1",
        [id_hash],
    )? > 0)
}

/// Drops tokens that expired before `before`; they can never validate again.
pub(super) fn purge_expired(conn: &Connection, before: Timestamp) -> Result<usize, StorageError> {
    Ok(conn.execute(
        "DELETE FROM tokens WHERE expires_at < ?1",
        [before.micros()],
    )?)
}
