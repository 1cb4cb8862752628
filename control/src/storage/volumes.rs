//! Cinder volumes, their metadata and attachment, and their snapshots, in SQLite, behind
//! [`VolumeRecordStore`].

use super::StorageError;
use crate::quota::{QuotaError, VolumeQuota};
use crate::timestamp::Timestamp;
use crate::volume::store::{
    Attachment, Decision, Snapshot, SnapshotStatus, Volume, VolumeRecordStore, VolumeStatus,
    VolumeView,
};
use crate::volume::VolumeError;
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::BTreeMap;

fn unknown(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

const VOLUME_COLUMNS: &str = "id, project_id, user_id, name, description, size, status, \
                              volume_type, image_id, image_metadata, snapshot_id, fault, \
                              created_at, updated_at, home";

fn volume_row(r: &Row<'_>) -> rusqlite::Result<Volume> {
    let status: String = r.get(6)?;
    Ok(Volume {
        id: r.get(0)?,
        project_id: r.get(1)?,
        user_id: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        size: r.get(5)?,
        status: VolumeStatus::parse(&status).ok_or_else(|| unknown("volume status", &status))?,
        volume_type: r.get(7)?,
        image_id: r.get(8)?,
        image_metadata: match r.get::<_, Option<String>>(9)? {
            None => BTreeMap::new(),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, e.into())
            })?,
        },
        snapshot_id: r.get(10)?,
        fault: r.get(11)?,
        metadata: BTreeMap::new(),
        attachment: None,
        created_at: Timestamp(r.get(12)?),
        updated_at: Timestamp(r.get(13)?),
        home: r.get(14)?,
    })
}

const ATTACHMENT_COLUMNS: &str = "id, volume_id, server_id, device, attached_at";

fn attachment_row(r: &Row<'_>) -> rusqlite::Result<Attachment> {
    Ok(Attachment {
        id: r.get(0)?,
        volume_id: r.get(1)?,
        server_id: r.get(2)?,
        device: r.get(3)?,
        attached_at: Timestamp(r.get(4)?),
    })
}

fn insert_volume(conn: &Connection, v: &Volume) -> Result<(), StorageError> {
    conn.execute(
        &format!(
            "INSERT INTO volumes ({VOLUME_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        rusqlite::params![
            v.id,
            v.project_id,
            v.user_id,
            v.name,
            v.description,
            v.size,
            v.status.as_str(),
            v.volume_type,
            v.image_id,
            (!v.image_metadata.is_empty())
                .then(|| serde_json::to_string(&v.image_metadata).unwrap_or_default()),
            v.snapshot_id,
            v.fault,
            v.created_at.micros(),
            v.updated_at.micros(),
            v.home,
        ],
    )?;
    let mut st =
        conn.prepare("INSERT INTO volume_metadata (volume_id, key, value) VALUES (?1, ?2, ?3)")?;
    for (k, val) in &v.metadata {
        st.execute((&v.id, k, val))?;
    }
    Ok(())
}

fn volume(conn: &Connection, id: &str) -> Result<Option<Volume>, StorageError> {
    let sql = format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE id = ?1");
    let Some(mut v) = conn.query_row(&sql, [id], volume_row).optional()? else {
        return Ok(None);
    };
    let mut st = conn.prepare("SELECT key, value FROM volume_metadata WHERE volume_id = ?1")?;
    v.metadata = st
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    v.attachment = attachment_of(conn, id)?;
    Ok(Some(v))
}

/// Every volume (of `project_id`, if given) with metadata and attachment, unsorted.
fn volumes(conn: &Connection, project_id: Option<&str>) -> Result<Vec<Volume>, StorageError> {
    let sql = format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE ?1 IS NULL OR project_id = ?1");
    let mut st = conn.prepare(&sql)?;
    let mut vols: Vec<Volume> = st
        .query_map([project_id], volume_row)?
        .collect::<Result<_, _>>()?;
    let mut meta: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut st = conn.prepare("SELECT volume_id, key, value FROM volume_metadata")?;
    for m in st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        let (id, k, v): (String, String, String) = m?;
        meta.entry(id).or_default().insert(k, v);
    }
    let mut attached: BTreeMap<String, Attachment> = BTreeMap::new();
    let mut st = conn.prepare(&format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM volume_attachments"
    ))?;
    for a in st.query_map([], attachment_row)? {
        let a = a?;
        attached.insert(a.volume_id.clone(), a);
    }
    for v in &mut vols {
        v.metadata = meta.remove(&v.id).unwrap_or_default();
        v.attachment = attached.remove(&v.id);
    }
    Ok(vols)
}

/// Moves volume `id` from one of `from` to `to`, recording `fault` (None clears it); false if
/// it is in another status or gone.
fn set_volume_status_if(
    conn: &Connection,
    id: &str,
    from: &[VolumeStatus],
    to: VolumeStatus,
    fault: Option<&str>,
) -> Result<bool, StorageError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    super::set_status_if(conn, "volumes", id, &from, to.as_str(), Some(fault))
}

fn set_volume_size(conn: &Connection, id: &str, size_gib: i64) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE volumes SET size = ?2, updated_at = ?3 WHERE id = ?1",
        (id, size_gib, Timestamp::now().micros()),
    )?;
    Ok(())
}

fn set_volume_text(
    conn: &Connection,
    id: &str,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE volumes SET name = ?2, description = ?3, updated_at = ?4 WHERE id = ?1",
        (id, name, description, Timestamp::now().micros()),
    )?;
    Ok(())
}

fn delete_volume(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM volumes WHERE id = ?1", [id])? > 0)
}

fn volume_ids_in_status(
    conn: &Connection,
    status: VolumeStatus,
) -> Result<Vec<String>, StorageError> {
    let mut st = conn.prepare("SELECT id FROM volumes WHERE status = ?1")?;
    let ids = st.query_map([status.as_str()], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

fn insert_attachment(conn: &Connection, a: &Attachment) -> Result<(), StorageError> {
    conn.execute(
        &format!(
            "INSERT INTO volume_attachments ({ATTACHMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
        ),
        (
            &a.id,
            &a.volume_id,
            &a.server_id,
            &a.device,
            a.attached_at.micros(),
        ),
    )?;
    Ok(())
}

fn attachment_of(conn: &Connection, volume_id: &str) -> Result<Option<Attachment>, StorageError> {
    let sql = format!("SELECT {ATTACHMENT_COLUMNS} FROM volume_attachments WHERE volume_id = ?1");
    Ok(conn
        .query_row(&sql, [volume_id], attachment_row)
        .optional()?)
}

fn attachments_of_server(
    conn: &Connection,
    server_id: &str,
) -> Result<Vec<Attachment>, StorageError> {
    let sql = format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM volume_attachments WHERE server_id = ?1
         ORDER BY attached_at, id"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map([server_id], attachment_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn delete_attachment(conn: &Connection, volume_id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute(
        "DELETE FROM volume_attachments WHERE volume_id = ?1",
        [volume_id],
    )? > 0)
}

const SNAPSHOT_COLUMNS: &str = "id, project_id, user_id, volume_id, name, description, size, \
                                status, fault, created_at, updated_at, home";

fn snapshot_row(r: &Row<'_>) -> rusqlite::Result<Snapshot> {
    let status: String = r.get(7)?;
    Ok(Snapshot {
        id: r.get(0)?,
        project_id: r.get(1)?,
        user_id: r.get(2)?,
        volume_id: r.get(3)?,
        name: r.get(4)?,
        description: r.get(5)?,
        size: r.get(6)?,
        status: SnapshotStatus::parse(&status)
            .ok_or_else(|| unknown("snapshot status", &status))?,
        fault: r.get(8)?,
        created_at: Timestamp(r.get(9)?),
        updated_at: Timestamp(r.get(10)?),
        home: r.get(11)?,
    })
}

fn insert_snapshot(conn: &Connection, s: &Snapshot) -> Result<(), StorageError> {
    conn.execute(
        &format!(
            "INSERT INTO volume_snapshots ({SNAPSHOT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        rusqlite::params![
            s.id,
            s.project_id,
            s.user_id,
            s.volume_id,
            s.name,
            s.description,
            s.size,
            s.status.as_str(),
            s.fault,
            s.created_at.micros(),
            s.updated_at.micros(),
            s.home,
        ],
    )?;
    Ok(())
}

fn snapshot(conn: &Connection, id: &str) -> Result<Option<Snapshot>, StorageError> {
    let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM volume_snapshots WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], snapshot_row).optional()?)
}

/// Every snapshot (of `project_id`, if given), unsorted.
fn snapshots(conn: &Connection, project_id: Option<&str>) -> Result<Vec<Snapshot>, StorageError> {
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM volume_snapshots WHERE ?1 IS NULL OR project_id = ?1"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map([project_id], snapshot_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn snapshots_of(conn: &Connection, volume_id: &str) -> Result<Vec<Snapshot>, StorageError> {
    let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM volume_snapshots WHERE volume_id = ?1");
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map([volume_id], snapshot_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Like [`set_volume_status_if`], for snapshots.
fn set_snapshot_status_if(
    conn: &Connection,
    id: &str,
    from: &[SnapshotStatus],
    to: SnapshotStatus,
    fault: Option<&str>,
) -> Result<bool, StorageError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    super::set_status_if(
        conn,
        "volume_snapshots",
        id,
        &from,
        to.as_str(),
        Some(fault),
    )
}

fn delete_snapshot(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM volume_snapshots WHERE id = ?1", [id])? > 0)
}

fn snapshot_ids_in_status(
    conn: &Connection,
    status: SnapshotStatus,
) -> Result<Vec<String>, StorageError> {
    let mut st = conn.prepare("SELECT id FROM volume_snapshots WHERE status = ?1")?;
    let ids = st.query_map([status.as_str()], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

fn view(conn: &Connection, volume: Volume) -> Result<VolumeView, StorageError> {
    let snapshots = snapshots_of(conn, &volume.id)?;
    Ok(VolumeView { volume, snapshots })
}

/// The SQLite implementation of Cinder's door: each method one (IMMEDIATE) transaction, so
/// what a closure read still holds when the write lands.
impl VolumeRecordStore for super::Db {
    fn create_volume(&self, v: &Volume, quota: &VolumeQuota) -> Result<bool, QuotaError> {
        // IMMEDIATE: no other volume of the project is recorded between the count and the
        // insert.
        self.write(|tx| {
            if !quota.is_unlimited() {
                let project = Some(v.project_id.as_str());
                quota.check(&volumes(tx, project)?, &snapshots(tx, project)?, v.size)?;
            }
            if let Some(s) = &v.snapshot_id {
                let available =
                    snapshot(tx, s)?.is_some_and(|s| s.status == SnapshotStatus::Available);
                if !available {
                    return Ok(false);
                }
            }
            insert_volume(tx, v)?;
            Ok(true)
        })
    }

    fn volume(&self, id: &str) -> Result<Option<Volume>, StorageError> {
        self.read(|c| volume(c, id))
    }

    fn volumes(&self, project_id: Option<&str>) -> Result<Vec<Volume>, StorageError> {
        self.read(|c| volumes(c, project_id))
    }

    fn volume_ids_in_status(&self, status: VolumeStatus) -> Result<Vec<String>, StorageError> {
        self.read(|c| volume_ids_in_status(c, status))
    }

    fn set_volume_status_if(
        &self,
        id: &str,
        from: &[VolumeStatus],
        to: VolumeStatus,
        fault: Option<&str>,
    ) -> Result<bool, StorageError> {
        self.write(|tx| set_volume_status_if(tx, id, from, to, fault))
    }

    fn change_volume_status(
        &self,
        id: &str,
        decide: &mut dyn FnMut(&VolumeView) -> Decision<VolumeStatus>,
    ) -> Result<Volume, VolumeError> {
        self.write(|tx| {
            let v = volume(tx, id)?.ok_or_else(|| VolumeError::NotFound(id.to_owned()))?;
            let seen = view(tx, v)?;
            if let Some(to) = decide(&seen)? {
                set_volume_status_if(tx, id, &[seen.volume.status], to, None)?;
            }
            Ok(seen.volume)
        })
    }

    fn request_extend(
        &self,
        id: &str,
        new_size: i64,
        decide: &mut dyn FnMut(&VolumeView) -> Result<(), VolumeError>,
    ) -> Result<Volume, VolumeError> {
        self.write(|tx| {
            let v = volume(tx, id)?.ok_or_else(|| VolumeError::NotFound(id.to_owned()))?;
            let seen = view(tx, v)?;
            decide(&seen)?;
            let from = [seen.volume.status];
            set_volume_status_if(tx, id, &from, VolumeStatus::Extending, None)?;
            set_volume_size(tx, id, new_size)?;
            Ok(seen.volume)
        })
    }

    fn set_volume_metadata(
        &self,
        id: &str,
        edit: &mut dyn FnMut(&mut BTreeMap<String, String>),
    ) -> Result<Option<Volume>, StorageError> {
        self.write(|tx| {
            let Some(mut v) = volume(tx, id)? else {
                return Ok(None);
            };
            edit(&mut v.metadata);
            v.updated_at = Timestamp::now();
            tx.execute("DELETE FROM volume_metadata WHERE volume_id = ?1", [id])?;
            let mut st = tx.prepare(
                "INSERT INTO volume_metadata (volume_id, key, value) VALUES (?1, ?2, ?3)",
            )?;
            for (k, val) in &v.metadata {
                st.execute((id, k, val))?;
            }
            tx.execute(
                "UPDATE volumes SET updated_at = ?2 WHERE id = ?1",
                (id, v.updated_at.micros()),
            )?;
            Ok(Some(v))
        })
    }

    fn set_volume_text(
        &self,
        id: &str,
        name: Option<Option<&str>>,
        description: Option<Option<&str>>,
    ) -> Result<Option<Volume>, StorageError> {
        self.write(|tx| {
            let Some(v) = volume(tx, id)? else {
                return Ok(None);
            };
            let name = name.unwrap_or(v.name.as_deref());
            let description = description.unwrap_or(v.description.as_deref());
            set_volume_text(tx, id, name, description)?;
            volume(tx, id)
        })
    }

    fn finish_extend(&self, id: &str, new_size: Option<i64>) -> Result<bool, StorageError> {
        self.write(|tx| {
            let extending = [VolumeStatus::Extending];
            let was = volume(tx, id)?.is_some_and(|v| v.status == VolumeStatus::Extending);
            if was {
                if let Some(size) = new_size {
                    set_volume_size(tx, id, size)?;
                }
            }
            set_volume_status_if(tx, id, &extending, VolumeStatus::Available, None)
        })
    }

    fn delete_volume(&self, id: &str) -> Result<bool, StorageError> {
        self.write(|tx| delete_volume(tx, id))
    }

    fn attach_volume(
        &self,
        a: &Attachment,
        check: &mut dyn FnMut(&Volume) -> Result<(), VolumeError>,
    ) -> Result<(), VolumeError> {
        self.write(|tx| {
            let id = &a.volume_id;
            let v = volume(tx, id)?.ok_or_else(|| VolumeError::NotFound(id.clone()))?;
            check(&v)?;
            let available = [VolumeStatus::Available];
            if v.attachment.is_some()
                || !set_volume_status_if(tx, id, &available, VolumeStatus::InUse, None)?
            {
                return Err(VolumeError::InvalidVolume(format!(
                    "volume {id} is {}; only an available volume can be attached",
                    v.status.as_str()
                )));
            }
            insert_attachment(tx, a)?;
            Ok(())
        })
    }

    fn detach_volume(
        &self,
        volume_id: &str,
        server_id: &str,
        then: &mut dyn FnMut(&VolumeView) -> VolumeStatus,
    ) -> Result<Option<VolumeStatus>, StorageError> {
        self.write(|tx| {
            let attached = attachment_of(tx, volume_id)?.is_some_and(|a| a.server_id == server_id);
            let Some(v) = volume(tx, volume_id)?.filter(|_| attached) else {
                return Ok(None);
            };
            delete_attachment(tx, volume_id)?;
            let mut seen = view(tx, v)?;
            seen.volume.attachment = None;
            let to = then(&seen);
            set_volume_status_if(tx, volume_id, &[VolumeStatus::InUse], to, None)?;
            Ok(Some(to))
        })
    }

    fn attachments_of_server(&self, server_id: &str) -> Result<Vec<Attachment>, StorageError> {
        self.read(|c| attachments_of_server(c, server_id))
    }

    fn create_snapshot(
        &self,
        volume_id: &str,
        quota: &VolumeQuota,
        make: &mut dyn FnMut(&Volume) -> Result<Snapshot, VolumeError>,
    ) -> Result<Snapshot, VolumeError> {
        self.write(|tx| {
            let v = volume(tx, volume_id)?
                .ok_or_else(|| VolumeError::NotFound(volume_id.to_owned()))?;
            let snap = make(&v)?;
            if !quota.is_unlimited() {
                let project = Some(v.project_id.as_str());
                quota.check_snapshot(
                    &volumes(tx, project)?,
                    &snapshots(tx, project)?,
                    snap.size,
                )?;
            }
            insert_snapshot(tx, &snap)?;
            Ok(snap)
        })
    }

    fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, StorageError> {
        self.read(|c| snapshot(c, id))
    }

    fn snapshots(&self, project_id: Option<&str>) -> Result<Vec<Snapshot>, StorageError> {
        self.read(|c| snapshots(c, project_id))
    }

    fn snapshot_ids_in_status(&self, status: SnapshotStatus) -> Result<Vec<String>, StorageError> {
        self.read(|c| snapshot_ids_in_status(c, status))
    }

    fn set_snapshot_status_if(
        &self,
        id: &str,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        fault: Option<&str>,
    ) -> Result<bool, StorageError> {
        self.write(|tx| set_snapshot_status_if(tx, id, from, to, fault))
    }

    fn change_snapshot_status(
        &self,
        id: &str,
        decide: &mut dyn FnMut(&Snapshot, &[Volume]) -> Decision<SnapshotStatus>,
    ) -> Result<Snapshot, VolumeError> {
        self.write(|tx| {
            let s =
                snapshot(tx, id)?.ok_or_else(|| VolumeError::SnapshotNotFound(id.to_owned()))?;
            let copies: Vec<Volume> = volumes(tx, None)?
                .into_iter()
                .filter(|v| v.snapshot_id.as_deref() == Some(id))
                .collect();
            if let Some(to) = decide(&s, &copies)? {
                set_snapshot_status_if(tx, id, &[s.status], to, None)?;
            }
            Ok(s)
        })
    }

    fn delete_snapshot(&self, id: &str) -> Result<bool, StorageError> {
        self.write(|tx| delete_snapshot(tx, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conforms_to_the_volume_store_contract() {
        crate::volume::store::conformance::run(|| crate::storage::Db::open_in_memory().unwrap());
        crate::volume::store::conformance::races(|| {
            let db = crate::storage::Db::open_in_memory().unwrap();
            (db.clone(), db)
        });
    }
    use crate::storage::Db;

    fn vol(id: &str, project: &str) -> Volume {
        Volume {
            id: id.into(),
            project_id: project.into(),
            user_id: "u".into(),
            name: Some("v".into()),
            description: None,
            size: 1,
            status: VolumeStatus::Creating,
            volume_type: "thin".into(),
            image_id: None,
            image_metadata: BTreeMap::from([("kernel_id".into(), "k".into())]),
            snapshot_id: None,
            fault: None,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            attachment: None,
            home: "box1".into(),
            created_at: Timestamp(5),
            updated_at: Timestamp(5),
        }
    }

    #[test]
    fn volumes_attachments_and_snapshots() {
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| insert_volume(tx, &vol("v1", "p1"))).unwrap();
        db.write(|tx| insert_volume(tx, &vol("v2", "p2"))).unwrap();
        assert_eq!(
            db.read(|c| volume(c, "v1")).unwrap().unwrap(),
            vol("v1", "p1")
        );
        assert_eq!(db.read(|c| volumes(c, Some("p2"))).unwrap().len(), 1);
        assert_eq!(db.read(|c| volumes(c, None)).unwrap().len(), 2);

        let creating = [VolumeStatus::Creating];
        assert!(db
            .write(|tx| set_volume_status_if(tx, "v1", &creating, VolumeStatus::Available, None))
            .unwrap());
        assert!(!db
            .write(|tx| set_volume_status_if(tx, "v1", &creating, VolumeStatus::Error, None))
            .unwrap());

        let a = Attachment {
            id: "a1".into(),
            volume_id: "v1".into(),
            server_id: "s1".into(),
            device: Some("/dev/vdb".into()),
            attached_at: Timestamp(9),
        };
        db.write(|tx| insert_attachment(tx, &a)).unwrap();
        // One attachment per volume.
        let again = Attachment {
            id: "a2".into(),
            ..a.clone()
        };
        assert!(db.write(|tx| insert_attachment(tx, &again)).is_err());
        assert_eq!(
            db.read(|c| volume(c, "v1")).unwrap().unwrap().attachment,
            Some(a.clone())
        );
        assert_eq!(
            db.read(|c| attachments_of_server(c, "s1")).unwrap(),
            vec![a]
        );
        assert!(db.write(|tx| delete_attachment(tx, "v1")).unwrap());

        let s = Snapshot {
            id: "s1".into(),
            project_id: "p1".into(),
            user_id: "u".into(),
            volume_id: "v1".into(),
            name: None,
            description: None,
            size: 1,
            status: SnapshotStatus::Creating,
            fault: None,
            home: "box1".into(),
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
        };
        db.write(|tx| insert_snapshot(tx, &s)).unwrap();
        assert_eq!(db.read(|c| snapshots_of(c, "v1")).unwrap().len(), 1);
        // The snapshot holds its volume.
        assert!(db.write(|tx| delete_volume(tx, "v1")).is_err());
        assert!(db.write(|tx| delete_snapshot(tx, "s1")).unwrap());
        assert!(db.write(|tx| delete_volume(tx, "v1")).unwrap());
        assert_eq!(db.read(|c| volume(c, "v1")).unwrap(), None);
    }
}
