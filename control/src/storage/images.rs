//! Glance images in SQLite, behind [`ImageRecordStore`]: the record, its additional
//! properties, tags and members, and who uses it.

use super::{flag, StorageError};
use crate::image::store::{
    Conversion, Image, ImageCopy, ImageData, ImageMember, ImageRecordStore, ImageStatus,
    ImageVisibility, MemberStatus,
};
use crate::image::{ConsumerKind, ImageError};
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::{BTreeMap, BTreeSet};

const COLUMNS: &str = "id, name, status, visibility, owner, disk_format, container_format, \
                       min_disk, min_ram, protected, size, virtual_size, checksum, os_hash_algo, \
                       os_hash_value, uploaded_disk_format, uploaded_checksum, \
                       uploaded_os_hash_value, created_at, updated_at";

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown image {what} {value:?}").into(),
    )
}

fn row(r: &Row<'_>) -> rusqlite::Result<Image> {
    let status: String = r.get(2)?;
    let visibility: String = r.get(3)?;
    let conversion = match (
        r.get::<_, Option<String>>(15)?,
        r.get::<_, Option<String>>(16)?,
        r.get::<_, Option<String>>(17)?,
    ) {
        (Some(from_format), Some(checksum), Some(os_hash_value)) => Some(Conversion {
            from_format,
            checksum,
            os_hash_value,
        }),
        _ => None,
    };
    Ok(Image {
        id: r.get(0)?,
        name: r.get(1)?,
        status: ImageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        visibility: ImageVisibility::parse(&visibility)
            .ok_or_else(|| corrupt("visibility", &visibility))?,
        owner: r.get(4)?,
        disk_format: r.get(5)?,
        container_format: r.get(6)?,
        min_disk: r.get(7)?,
        min_ram: r.get(8)?,
        protected: flag(r.get(9)?),
        size: r.get(10)?,
        virtual_size: r.get(11)?,
        checksum: r.get(12)?,
        os_hash_algo: r.get(13)?,
        os_hash_value: r.get(14)?,
        conversion,
        properties: BTreeMap::new(),
        tags: BTreeSet::new(),
        members: BTreeMap::new(),
        created_at: Timestamp(r.get(18)?),
        updated_at: Timestamp(r.get(19)?),
    })
}

/// Inserts `image` with its properties and tags.
fn insert(conn: &Connection, image: &Image) -> Result<(), StorageError> {
    conn.execute(
        &format!(
            "INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
        ),
        rusqlite::params![
            image.id,
            image.name,
            image.status.as_str(),
            image.visibility.as_str(),
            image.owner,
            image.disk_format,
            image.container_format,
            image.min_disk,
            image.min_ram,
            image.protected,
            image.size,
            image.virtual_size,
            image.checksum,
            image.os_hash_algo,
            image.os_hash_value,
            image.conversion.as_ref().map(|c| &c.from_format),
            image.conversion.as_ref().map(|c| &c.checksum),
            image.conversion.as_ref().map(|c| &c.os_hash_value),
            image.created_at.micros(),
            image.updated_at.micros(),
        ],
    )?;
    replace_properties(conn, &image.id, &image.properties)?;
    replace_tags(conn, &image.id, &image.tags)?;
    replace_members(conn, &image.id, &image.members)?;
    Ok(())
}

fn by_id(conn: &Connection, id: &str) -> Result<Option<Image>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM images WHERE id = ?1");
    let Some(mut image) = conn.query_row(&sql, [id], row).optional()? else {
        return Ok(None);
    };
    let mut st = conn.prepare("SELECT key, value FROM image_properties WHERE image_id = ?1")?;
    image.properties = st
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut st = conn.prepare("SELECT tag FROM image_tags WHERE image_id = ?1")?;
    image.tags = st
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut st = conn.prepare(&format!(
        "SELECT image_id, {MEMBER_COLUMNS} FROM image_members WHERE image_id = ?1"
    ))?;
    image.members = st
        .query_map([id], member_row)?
        .map(|m| m.map(|(_, project, member)| (project, member)))
        .collect::<Result<_, _>>()?;
    Ok(Some(image))
}

/// Every image with its properties and tags, in no particular order. Listing filters,
/// visibility and sorting are applied by the caller: an appliance holds few images.
fn all(conn: &Connection) -> Result<Vec<Image>, StorageError> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM images"))?;
    let mut images: Vec<Image> = st.query_map([], row)?.collect::<Result<_, _>>()?;
    let mut props: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut st = conn.prepare("SELECT image_id, key, value FROM image_properties")?;
    for p in st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        let (id, k, v): (String, String, String) = p?;
        props.entry(id).or_default().insert(k, v);
    }
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut st = conn.prepare("SELECT image_id, tag FROM image_tags")?;
    for t in st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        let (id, tag): (String, String) = t?;
        tags.entry(id).or_default().insert(tag);
    }
    let mut members: BTreeMap<String, BTreeMap<String, ImageMember>> = BTreeMap::new();
    let mut st = conn.prepare(&format!(
        "SELECT image_id, {MEMBER_COLUMNS} FROM image_members"
    ))?;
    for m in st.query_map([], member_row)? {
        let (id, project, member) = m?;
        members.entry(id).or_default().insert(project, member);
    }
    for image in &mut images {
        image.properties = props.remove(&image.id).unwrap_or_default();
        image.tags = tags.remove(&image.id).unwrap_or_default();
        image.members = members.remove(&image.id).unwrap_or_default();
    }
    Ok(images)
}

/// Writes the user-changeable fields of `image` (everything but status, data and creation
/// time), its properties and tags; `updated_at` becomes now.
fn save(conn: &Connection, image: &Image) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE images SET name = ?2, visibility = ?3, owner = ?4, disk_format = ?5,
                container_format = ?6, min_disk = ?7, min_ram = ?8, protected = ?9,
                updated_at = ?10
         WHERE id = ?1",
        rusqlite::params![
            image.id,
            image.name,
            image.visibility.as_str(),
            image.owner,
            image.disk_format,
            image.container_format,
            image.min_disk,
            image.min_ram,
            image.protected,
            Timestamp::now().micros(),
        ],
    )?;
    replace_properties(conn, &image.id, &image.properties)?;
    replace_tags(conn, &image.id, &image.tags)?;
    replace_members(conn, &image.id, &image.members)?;
    Ok(())
}

fn replace_properties(
    conn: &Connection,
    id: &str,
    properties: &BTreeMap<String, String>,
) -> Result<(), StorageError> {
    conn.execute("DELETE FROM image_properties WHERE image_id = ?1", [id])?;
    let mut st =
        conn.prepare("INSERT INTO image_properties (image_id, key, value) VALUES (?1, ?2, ?3)")?;
    for (k, v) in properties {
        st.execute((id, k, v))?;
    }
    Ok(())
}

const MEMBER_COLUMNS: &str = "member_id, status, created_at, updated_at";

/// (image id, member project id, member) from `image_id, MEMBER_COLUMNS`.
fn member_row(r: &Row<'_>) -> rusqlite::Result<(String, String, ImageMember)> {
    let status: String = r.get(2)?;
    let member = ImageMember {
        status: MemberStatus::parse(&status).ok_or_else(|| corrupt("member status", &status))?,
        created_at: Timestamp(r.get(3)?),
        updated_at: Timestamp(r.get(4)?),
    };
    Ok((r.get(0)?, r.get(1)?, member))
}

fn replace_members(
    conn: &Connection,
    id: &str,
    members: &BTreeMap<String, ImageMember>,
) -> Result<(), StorageError> {
    conn.execute("DELETE FROM image_members WHERE image_id = ?1", [id])?;
    let mut st = conn.prepare(&format!(
        "INSERT INTO image_members (image_id, {MEMBER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?;
    for (project, m) in members {
        st.execute((
            id,
            project,
            m.status.as_str(),
            m.created_at.micros(),
            m.updated_at.micros(),
        ))?;
    }
    Ok(())
}

fn replace_tags(conn: &Connection, id: &str, tags: &BTreeSet<String>) -> Result<(), StorageError> {
    conn.execute("DELETE FROM image_tags WHERE image_id = ?1", [id])?;
    let mut st = conn.prepare("INSERT INTO image_tags (image_id, tag) VALUES (?1, ?2)")?;
    for t in tags {
        st.execute((id, t))?;
    }
    Ok(())
}

/// Moves image `id` from one of `from` to `to`; false if it is not in one of `from` (or gone).
fn set_status_if(
    conn: &Connection,
    id: &str,
    from: &[ImageStatus],
    to: ImageStatus,
) -> Result<bool, StorageError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    super::set_status_if(conn, "images", id, &from, to.as_str(), None)
}

/// Records the stored data of image `id` and makes it active, if it is still `saving`; false
/// otherwise (it was deleted meanwhile).
/// Records the data of a `saving` image; it stays `saving` until its copies are counted.
fn record_data(conn: &Connection, id: &str, data: &ImageData) -> Result<bool, StorageError> {
    let c = data.conversion.as_ref();
    let n = conn.execute(
        "UPDATE images SET size = ?2, virtual_size = ?3, checksum = ?4,
                os_hash_algo = ?5, os_hash_value = ?6, disk_format = ?7,
                uploaded_disk_format = ?8, uploaded_checksum = ?9, uploaded_os_hash_value = ?10,
                updated_at = ?11
         WHERE id = ?1 AND status = 'saving'",
        rusqlite::params![
            id,
            data.size,
            data.virtual_size,
            data.checksum,
            data.os_hash_algo,
            data.os_hash_value,
            data.disk_format,
            c.map(|c| &c.from_format),
            c.map(|c| &c.checksum),
            c.map(|c| &c.os_hash_value),
            Timestamp::now().micros(),
        ],
    )?;
    Ok(n > 0)
}

fn copies(conn: &Connection, id: &str) -> Result<Vec<ImageCopy>, StorageError> {
    let mut st = conn.prepare(
        "SELECT holder, size, os_hash_value FROM image_copies WHERE image_id = ?1
         ORDER BY holder",
    )?;
    let rows = st.query_map([id], |r| {
        Ok(ImageCopy {
            holder: r.get(0)?,
            size: r.get(1)?,
            os_hash_value: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// [`ImageRecordStore::record_verified_copy`] inside a transaction.
fn record_copy(
    conn: &Connection,
    id: &str,
    copy: &ImageCopy,
    needed: usize,
) -> Result<Option<ImageStatus>, StorageError> {
    let Some(image) = by_id(conn, id)? else {
        return Ok(None);
    };
    let same_data = image.os_hash_value.as_deref() == Some(copy.os_hash_value.as_str())
        && image.size == Some(copy.size);
    if !(image.status == ImageStatus::Saving || image.status.has_stored_data()) || !same_data {
        return Ok(None);
    }
    conn.execute(
        "INSERT OR REPLACE INTO image_copies (image_id, holder, size, os_hash_value, verified_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            id,
            copy.holder,
            copy.size,
            copy.os_hash_value,
            Timestamp::now().micros()
        ],
    )?;
    if image.status == ImageStatus::Saving && copies(conn, id)?.len() >= needed {
        set_status_if(conn, id, &[ImageStatus::Saving], ImageStatus::Active)?;
        return Ok(Some(ImageStatus::Active));
    }
    Ok(Some(image.status))
}

fn delete(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM images WHERE id = ?1", [id])? > 0)
}

/// Ids of images in `status`.
fn ids_in_status(conn: &Connection, status: ImageStatus) -> Result<Vec<String>, StorageError> {
    let mut st = conn.prepare("SELECT id FROM images WHERE status = ?1")?;
    let ids = st.query_map([status.as_str()], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// Records that `consumer_kind` `consumer_id` uses image `image_id` (idempotent).
fn add_usage(
    conn: &Connection,
    image_id: &str,
    consumer_kind: &str,
    consumer_id: &str,
) -> Result<(), StorageError> {
    conn.execute(
        "INSERT OR IGNORE INTO image_usage (image_id, consumer_kind, consumer_id)
         VALUES (?1, ?2, ?3)",
        (image_id, consumer_kind, consumer_id),
    )?;
    Ok(())
}

/// Removes every use by `consumer_kind` `consumer_id`; returns how many were removed.
fn remove_usage(
    conn: &Connection,
    consumer_kind: &str,
    consumer_id: &str,
) -> Result<usize, StorageError> {
    Ok(conn.execute(
        "DELETE FROM image_usage WHERE consumer_kind = ?1 AND consumer_id = ?2",
        (consumer_kind, consumer_id),
    )?)
}

/// Who uses image `image_id`: (consumer kind, consumer id), sorted.
fn usage(conn: &Connection, image_id: &str) -> Result<Vec<(String, String)>, StorageError> {
    let mut st = conn.prepare(
        "SELECT consumer_kind, consumer_id FROM image_usage WHERE image_id = ?1
         ORDER BY consumer_kind, consumer_id",
    )?;
    let rows = st.query_map([image_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The SQLite implementation of Glance's door: each method one transaction.
impl ImageRecordStore for super::Db {
    fn create_image(&self, image: &Image) -> Result<(), ImageError> {
        self.write(|tx| {
            if by_id(tx, &image.id)?.is_some() {
                return Err(ImageError::IdExists(image.id.clone()));
            }
            Ok(insert(tx, image)?)
        })
    }

    fn image(&self, id: &str) -> Result<Option<Image>, StorageError> {
        self.read(|c| by_id(c, id))
    }

    fn images(&self) -> Result<Vec<Image>, StorageError> {
        self.read(all)
    }

    fn image_ids_in_status(&self, status: ImageStatus) -> Result<Vec<String>, StorageError> {
        self.read(|c| ids_in_status(c, status))
    }

    fn update_image(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut Image) -> Result<bool, ImageError>,
    ) -> Result<Option<Image>, ImageError> {
        self.write(|tx| {
            let Some(before) = by_id(tx, id)? else {
                return Ok(None);
            };
            let mut image = before.clone();
            if !change(&mut image)? {
                return Ok(Some(before));
            }
            save(tx, &image)?;
            if image.status != before.status {
                set_status_if(tx, id, &[before.status], image.status)?;
            }
            Ok(by_id(tx, id)?)
        })
    }

    fn set_image_status_if(
        &self,
        id: &str,
        from: &[ImageStatus],
        to: ImageStatus,
    ) -> Result<bool, StorageError> {
        self.write(|tx| set_status_if(tx, id, from, to))
    }

    fn record_image_data(
        &self,
        id: &str,
        data: &ImageData,
        holder: &str,
        needed: usize,
    ) -> Result<bool, StorageError> {
        self.write(|tx| {
            if !record_data(tx, id, data)? {
                return Ok(false);
            }
            let copy = ImageCopy {
                holder: holder.to_owned(),
                size: data.size,
                os_hash_value: data.os_hash_value.clone(),
            };
            record_copy(tx, id, &copy, needed)?;
            Ok(true)
        })
    }

    fn image_copies(&self, id: &str) -> Result<Vec<ImageCopy>, StorageError> {
        self.read(|c| copies(c, id))
    }

    fn record_verified_copy(
        &self,
        id: &str,
        copy: &ImageCopy,
        needed: usize,
    ) -> Result<Option<ImageStatus>, StorageError> {
        self.write(|tx| record_copy(tx, id, copy, needed))
    }

    fn drop_image_copy(&self, id: &str, holder: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM image_copies WHERE image_id = ?1 AND holder = ?2",
                [id, holder],
            )?;
            Ok(n > 0)
        })
    }

    fn delete_unheld_image(
        &self,
        id: &str,
        check: &mut dyn FnMut(&Image) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        self.write(|tx| {
            let image = by_id(tx, id)?.ok_or_else(|| ImageError::NotFound(id.to_owned()))?;
            check(&image)?;
            let users = usage(tx, id)?;
            if !users.is_empty() {
                return Err(ImageError::InUse {
                    id: id.to_owned(),
                    users: crate::image::describe_users(&users),
                });
            }
            delete(tx, id)?;
            Ok(())
        })
    }

    fn hold_images(
        &self,
        image_ids: &[String],
        kind: ConsumerKind,
        consumer: &str,
    ) -> Result<(), ImageError> {
        self.write(|tx| {
            for image_id in image_ids {
                let image =
                    by_id(tx, image_id)?.ok_or_else(|| ImageError::NotFound(image_id.clone()))?;
                if image.status != ImageStatus::Active {
                    return Err(ImageError::NotActive(image_id.clone()));
                }
                add_usage(tx, image_id, kind.as_str(), consumer)?;
            }
            Ok(())
        })
    }

    fn release_images(&self, kind: ConsumerKind, consumer: &str) -> Result<usize, StorageError> {
        self.write(|tx| remove_usage(tx, kind.as_str(), consumer))
    }

    fn image_holders(&self, id: &str) -> Result<Vec<(String, String)>, StorageError> {
        self.read(|c| usage(c, id))
    }

    fn holders_of_kind(&self, kind: ConsumerKind) -> Result<Vec<String>, StorageError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT DISTINCT consumer_id FROM image_usage WHERE consumer_kind = ?1
                 ORDER BY consumer_id",
            )?;
            let ids = st.query_map([kind.as_str()], |r| r.get(0))?;
            Ok(ids.collect::<Result<_, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    #[test]
    fn conforms_to_the_image_store_contract() {
        crate::image::store::conformance::run(|| Db::open_in_memory().unwrap());
        crate::image::store::conformance::races(|| {
            let db = Db::open_in_memory().unwrap();
            (db.clone(), db)
        });
    }

    pub(crate) fn image(id: &str) -> Image {
        Image {
            id: id.into(),
            name: Some("cirros".into()),
            status: ImageStatus::Queued,
            visibility: ImageVisibility::Shared,
            owner: Some("p1".into()),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            min_disk: 0,
            min_ram: 0,
            protected: false,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            conversion: None,
            properties: BTreeMap::from([("kernel_id".into(), "k".into())]),
            tags: BTreeSet::from(["a".into(), "b".into()]),
            members: BTreeMap::from([(
                "p2".into(),
                ImageMember {
                    status: MemberStatus::Pending,
                    created_at: Timestamp(1),
                    updated_at: Timestamp(2),
                },
            )]),
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
        }
    }

    #[test]
    fn round_trip_save_and_data() {
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| insert(tx, &image("i1"))).unwrap();
        let got = db.read(|c| by_id(c, "i1")).unwrap().unwrap();
        assert_eq!(got, image("i1"));
        let mut changed = got.clone();
        changed.name = None;
        changed.tags = BTreeSet::from(["c".into()]);
        changed.properties.clear();
        db.write(|tx| save(tx, &changed)).unwrap();
        let got = db.read(|c| by_id(c, "i1")).unwrap().unwrap();
        assert_eq!(got.name, None);
        assert_eq!(got.tags, changed.tags);
        assert!(got.properties.is_empty());

        let data = ImageData {
            size: 10,
            virtual_size: 10,
            checksum: "c".into(),
            os_hash_algo: "sha512".into(),
            os_hash_value: "h".into(),
            disk_format: "raw".into(),
            conversion: Some(Conversion {
                from_format: "qcow2".into(),
                checksum: "uc".into(),
                os_hash_value: "uh".into(),
            }),
        };
        // Only a saving image takes data.
        assert!(!db.write(|tx| record_data(tx, "i1", &data)).unwrap());
        let saving = [ImageStatus::Queued];
        assert!(db
            .write(|tx| set_status_if(tx, "i1", &saving, ImageStatus::Saving))
            .unwrap());
        assert!(!db
            .write(|tx| set_status_if(tx, "i1", &saving, ImageStatus::Saving))
            .unwrap());
        assert!(db.record_image_data("i1", &data, "box1", 1).unwrap());
        let got = db.read(|c| by_id(c, "i1")).unwrap().unwrap();
        assert_eq!(got.status, ImageStatus::Active);
        assert_eq!(got.conversion, data.conversion);
        assert_eq!(got.size, Some(10));
        assert_eq!(db.read(all).unwrap(), vec![got]);
    }

    #[test]
    fn usage_blocks_deleting_the_row() {
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| insert(tx, &image("i1"))).unwrap();
        db.write(|tx| add_usage(tx, "i1", "volume", "v1")).unwrap();
        db.write(|tx| add_usage(tx, "i1", "volume", "v1")).unwrap();
        assert_eq!(
            db.read(|c| usage(c, "i1")).unwrap(),
            vec![("volume".to_owned(), "v1".to_owned())]
        );
        assert!(db.write(|tx| delete(tx, "i1")).is_err());
        assert_eq!(db.write(|tx| remove_usage(tx, "volume", "v1")).unwrap(), 1);
        assert!(db.write(|tx| delete(tx, "i1")).unwrap());
        // Properties and tags went with it.
        let n: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM image_tags", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 0);
    }
}
