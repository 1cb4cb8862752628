//! Glance's door in etcd: `/images/<id>` holds an image with its properties and tags inline,
//! `/image-holders/<image>/<kind>:<consumer>` each hold on it (docs/cluster.md, "The
//! keyspace"). A hold is put under a compare on the revision of the image it found active,
//! and a delete compares the image's revision and that no key is left under its holders, so
//! a hold and a delete racing never both commit ("Contested writes").
//!
//! Finding one consumer's holds reads the keys of every hold: holds are keyed by image because
//! a delete must see an image's holders in one range compare, and a cluster has few of them
//! (one per server or volume made from an image).

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::{Compare, CompareOp, DeleteOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::{from_json, to_json, Decided, EtcdDoors, Kv, MAX_TXN_OPS};
use crate::image::store::{
    Conversion, Image, ImageCopy, ImageData, ImageMember, ImageRecordStore, ImageStatus,
    ImageVisibility, MemberStatus,
};
use crate::image::{describe_users, ConsumerKind, ImageError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;

const IMAGE_SCHEMA: u32 = 1;
const HOLDER_SCHEMA: u32 = 1;
const COPY_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct ConversionRecord {
    from_format: String,
    checksum: String,
    os_hash_value: String,
}

#[derive(Serialize, Deserialize)]
struct ImageRecord {
    schema: u32,
    id: String,
    name: Option<String>,
    status: String,
    visibility: String,
    owner: Option<String>,
    disk_format: Option<String>,
    container_format: Option<String>,
    min_disk: i64,
    min_ram: i64,
    protected: bool,
    size: Option<i64>,
    virtual_size: Option<i64>,
    checksum: Option<String>,
    os_hash_algo: Option<String>,
    os_hash_value: Option<String>,
    conversion: Option<ConversionRecord>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    tags: BTreeSet<String>,
    /// By project id; absent in records written before image members were served.
    #[serde(default)]
    members: BTreeMap<String, MemberRecord>,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
    updated_at: i64,
}

/// A project the image is shared with, inline in its image's record: members change with
/// the image's revision, so a member added while the image is made private is seen.
#[derive(Serialize, Deserialize)]
struct MemberRecord {
    status: String,
    created_at: i64,
    updated_at: i64,
}

/// `/image-holders/...`: the key is the whole statement.
#[derive(Serialize, Deserialize)]
struct HolderRecord {
    schema: u32,
}

/// `/image-copies/<image>/<box>`: a box's verified copy. Only verified copies are recorded:
/// a pull in progress is the puller's own business until its bytes are checked.
#[derive(Serialize, Deserialize)]
struct CopyRecord {
    schema: u32,
    state: String,
    size: i64,
    os_hash_value: String,
    /// Microseconds since the epoch, as [`Timestamp`].
    verified_at: i64,
}

const VERIFIED: &str = "verified";

fn copy_record(c: &ImageCopy) -> Vec<u8> {
    to_json(&CopyRecord {
        schema: COPY_SCHEMA,
        state: VERIFIED.to_owned(),
        size: c.size,
        os_hash_value: c.os_hash_value.clone(),
        verified_at: Timestamp::now().micros(),
    })
}

fn record(i: &Image) -> Vec<u8> {
    to_json(&ImageRecord {
        schema: IMAGE_SCHEMA,
        id: i.id.clone(),
        name: i.name.clone(),
        status: i.status.as_str().to_owned(),
        visibility: i.visibility.as_str().to_owned(),
        owner: i.owner.clone(),
        disk_format: i.disk_format.clone(),
        container_format: i.container_format.clone(),
        min_disk: i.min_disk,
        min_ram: i.min_ram,
        protected: i.protected,
        size: i.size,
        virtual_size: i.virtual_size,
        checksum: i.checksum.clone(),
        os_hash_algo: i.os_hash_algo.clone(),
        os_hash_value: i.os_hash_value.clone(),
        conversion: i.conversion.as_ref().map(|c| ConversionRecord {
            from_format: c.from_format.clone(),
            checksum: c.checksum.clone(),
            os_hash_value: c.os_hash_value.clone(),
        }),
        properties: i.properties.clone(),
        tags: i.tags.clone(),
        members: i
            .members
            .iter()
            .map(|(project, m)| {
                let record = MemberRecord {
                    status: m.status.as_str().to_owned(),
                    created_at: m.created_at.micros(),
                    updated_at: m.updated_at.micros(),
                };
                (project.clone(), record)
            })
            .collect(),
        created_at: i.created_at.micros(),
        updated_at: i.updated_at.micros(),
    })
}

fn decode(kv: &KeyValue) -> Result<Image, StorageError> {
    let r: ImageRecord = from_json(kv)?;
    let unknown = |what: &str, value: &str| {
        StorageError::Corrupt(format!(
            "{}: unknown image {what} {value:?}",
            String::from_utf8_lossy(kv.key())
        ))
    };
    let members = r
        .members
        .into_iter()
        .map(|(project, m)| {
            let status = MemberStatus::parse(&m.status)
                .ok_or_else(|| unknown("member status", &m.status))?;
            let member = ImageMember {
                status,
                created_at: Timestamp(m.created_at),
                updated_at: Timestamp(m.updated_at),
            };
            Ok((project, member))
        })
        .collect::<Result<_, StorageError>>()?;
    Ok(Image {
        status: ImageStatus::parse(&r.status).ok_or_else(|| unknown("status", &r.status))?,
        visibility: ImageVisibility::parse(&r.visibility)
            .ok_or_else(|| unknown("visibility", &r.visibility))?,
        id: r.id,
        name: r.name,
        owner: r.owner,
        disk_format: r.disk_format,
        container_format: r.container_format,
        min_disk: r.min_disk,
        min_ram: r.min_ram,
        protected: r.protected,
        size: r.size,
        virtual_size: r.virtual_size,
        checksum: r.checksum,
        os_hash_algo: r.os_hash_algo,
        os_hash_value: r.os_hash_value,
        conversion: r.conversion.map(|c| Conversion {
            from_format: c.from_format,
            checksum: c.checksum,
            os_hash_value: c.os_hash_value,
        }),
        properties: r.properties,
        tags: r.tags,
        members,
        created_at: Timestamp(r.created_at),
        updated_at: Timestamp(r.updated_at),
    })
}

/// What an update may change, as SQLite's update writes it: everything but the stored data
/// (written only by [`ImageRecordStore::record_image_data`]) and the id and creation time.
fn updated(before: &Image, edited: Image) -> Image {
    Image {
        name: edited.name,
        status: edited.status,
        visibility: edited.visibility,
        owner: edited.owner,
        disk_format: edited.disk_format,
        container_format: edited.container_format,
        min_disk: edited.min_disk,
        min_ram: edited.min_ram,
        protected: edited.protected,
        properties: edited.properties,
        tags: edited.tags,
        members: edited.members,
        updated_at: Timestamp::now(),
        ..before.clone()
    }
}

/// Writes `image` back if its key is still at `revision`.
fn write_back(key: String, revision: i64, image: &Image) -> Txn {
    Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            revision,
        )])
        .and_then([TxnOp::put(key, record(image), None)])
}

/// One hold, as its key under `/image-holders/` spells it.
#[derive(Debug, PartialEq)]
struct Hold {
    key: String,
    kind: String,
    consumer: String,
}

impl Hold {
    fn parse(key: &str, prefix: &str) -> Option<Hold> {
        let (_image, holder) = key.strip_prefix(prefix)?.split_once('/')?;
        let (kind, consumer) = holder.split_once(':')?;
        Some(Hold {
            key: key.to_owned(),
            kind: kind.to_owned(),
            consumer: consumer.to_owned(),
        })
    }
}

impl Kv {
    /// Image `id` with its key's `mod_revision`.
    async fn image_at(self, id: String) -> Result<Option<(Image, i64)>, StorageError> {
        let Some(kv) = self.get(self.keys.image(&id)).await? else {
            return Ok(None);
        };
        Ok(Some((decode(&kv)?, kv.mod_revision())))
    }

    async fn images(self) -> Result<Vec<Image>, StorageError> {
        let kvs = self.range(self.keys.images(), false).await?;
        kvs.iter().map(decode).collect()
    }

    /// The verified copies of image `id`, by holder, each with its key's `mod_revision`.
    async fn copies_at(self, id: String) -> Result<Vec<(ImageCopy, i64)>, StorageError> {
        let prefix = self.keys.copies_of_image(&id);
        let kvs = self.range(prefix.clone(), false).await?;
        let mut copies = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let r: CopyRecord = from_json(kv)?;
            let Some(holder) = kv.key_str().ok().and_then(|k| k.strip_prefix(&prefix)) else {
                continue;
            };
            if r.state != VERIFIED {
                continue;
            }
            let copy = ImageCopy {
                holder: holder.to_owned(),
                size: r.size,
                os_hash_value: r.os_hash_value,
            };
            copies.push((copy, kv.mod_revision()));
        }
        copies.sort_by(|a, b| a.0.holder.cmp(&b.0.holder));
        Ok(copies)
    }

    /// Every hold on every image.
    async fn holds(&self) -> Result<Vec<Hold>, StorageError> {
        let prefix = self.keys.image_holders();
        let kvs = self.range(prefix.clone(), true).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| Hold::parse(kv.key_str().ok()?, &prefix))
            .collect())
    }

    /// Who holds image `id`: (consumer kind, consumer id), sorted.
    async fn image_holders(self, id: String) -> Result<Vec<(String, String)>, StorageError> {
        let prefix = self.keys.holders_of_image(&id);
        let kvs = self.range(prefix.clone(), true).await?;
        let mut holders: Vec<(String, String)> = kvs
            .iter()
            .filter_map(|kv| {
                let (kind, consumer) = kv.key_str().ok()?.strip_prefix(&prefix)?.split_once(':')?;
                Some((kind.to_owned(), consumer.to_owned()))
            })
            .collect();
        holders.sort();
        Ok(holders)
    }

    async fn release_images(
        self,
        kind: ConsumerKind,
        consumer: String,
    ) -> Result<usize, StorageError> {
        let keys: Vec<String> = self
            .holds()
            .await?
            .into_iter()
            .filter(|h| h.kind == kind.as_str() && h.consumer == consumer)
            .map(|h| h.key)
            .collect();
        // Counted from what etcd deleted: a release racing this one counts its own.
        let mut released = 0;
        for chunk in keys.chunks(MAX_TXN_OPS) {
            let deletes: Vec<TxnOp> = chunk
                .iter()
                .map(|k| TxnOp::delete(k.clone(), None))
                .collect();
            let resp = self.txn(Txn::new().and_then(deletes)).await?;
            for r in resp.op_responses() {
                if let TxnOpResponse::Delete(d) = r {
                    released += usize::try_from(d.deleted()).unwrap_or(0);
                }
            }
        }
        Ok(released)
    }
}

/// [`ImageRecordStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdImages {
    doors: EtcdDoors,
}

impl EtcdImages {
    pub(super) fn new(doors: EtcdDoors) -> EtcdImages {
        EtcdImages { doors }
    }

    /// Reads image `id`, lets `change` say what to write (None: nothing) and writes it under a
    /// compare on the revision it read, again from a fresh read after a lost race. Whether it
    /// wrote: false if there is no such image or `change` declined.
    fn write_if(
        &self,
        id: &str,
        mut change: impl FnMut(Image) -> Option<Image>,
    ) -> Result<bool, StorageError> {
        let key = self.doors.kv.keys.image(id);
        self.doors.contested(&key, |doors| {
            let read = doors.call(|kv| kv.image_at(id.to_owned()))?;
            let Some((after, revision)) = read.and_then(|(i, rev)| Some((change(i)?, rev))) else {
                return Ok(Decided::Done(false));
            };
            Ok(Decided::Write(
                write_back(key.clone(), revision, &after),
                true,
            ))
        })
    }

    /// Records `copy` of image `id` (with the image's `data` first, for the upload's own copy)
    /// and activates a `saving` image whose copies reach `needed`, in one transaction that
    /// compares the image and every copy it counted (docs/cluster.md, "Contested writes").
    fn record_copy(
        &self,
        id: &str,
        copy: &ImageCopy,
        data: Option<&ImageData>,
        needed: usize,
    ) -> Result<Option<ImageStatus>, StorageError> {
        let keys = &self.doors.kv.keys;
        let key = keys.image(id);
        let copy_key = keys.image_copy(id, &copy.holder);
        self.doors.contested(&key, |doors| {
            let Some((image, revision)) = doors.call(|kv| kv.image_at(id.to_owned()))? else {
                return Ok(Decided::Done(None));
            };
            let before = image.status;
            let image = match data {
                Some(data) if image.status == ImageStatus::Saving => with_data(image, data),
                Some(_) => return Ok(Decided::Done(None)),
                None => image,
            };
            let same_data = image.os_hash_value.as_deref() == Some(copy.os_hash_value.as_str())
                && image.size == Some(copy.size);
            if !(image.status == ImageStatus::Saving || image.status.has_stored_data())
                || !same_data
            {
                return Ok(Decided::Done(None));
            }
            let read = doors.call(|kv| kv.copies_at(id.to_owned()))?;
            let newest = read.iter().map(|(_, rev)| *rev).max().unwrap_or(0);
            let others: Vec<(ImageCopy, i64)> = read
                .into_iter()
                .filter(|(c, _)| c.holder != copy.holder)
                .collect();
            let activate = image.status == ImageStatus::Saving && others.len() + 1 >= needed;
            let mut when = vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )];
            // Each counted copy unchanged (not dropped), and none created since the read:
            // every key under the prefix was created at or before the newest one read.
            when.extend(others.iter().map(|(c, rev)| {
                Compare::mod_revision(keys.image_copy(id, &c.holder), CompareOp::Equal, *rev)
            }));
            when.push(
                Compare::create_revision(
                    keys.copies_of_image(id),
                    CompareOp::Less,
                    newest.max(revision) + 1,
                )
                .with_prefix(),
            );
            let mut then = vec![TxnOp::put(copy_key.clone(), copy_record(copy), None)];
            let after = Image {
                status: if activate {
                    ImageStatus::Active
                } else {
                    image.status
                },
                ..image
            };
            if data.is_some() || after.status != before {
                let after = Image {
                    updated_at: Timestamp::now(),
                    ..after.clone()
                };
                then.push(TxnOp::put(key.clone(), record(&after), None));
            }
            let txn = Txn::new().when(when).and_then(then);
            Ok(Decided::Write(txn, Some(after.status)))
        })
    }
}

/// `image` with the stored data of its upload (its status unchanged).
fn with_data(image: Image, data: &ImageData) -> Image {
    Image {
        size: Some(data.size),
        virtual_size: Some(data.virtual_size),
        checksum: Some(data.checksum.clone()),
        os_hash_algo: Some(data.os_hash_algo.clone()),
        os_hash_value: Some(data.os_hash_value.clone()),
        disk_format: Some(data.disk_format.clone()),
        conversion: data.conversion.clone(),
        ..image
    }
}

impl ImageRecordStore for EtcdImages {
    fn create_image(&self, image: &Image) -> Result<(), ImageError> {
        let key = self.doors.kv.keys.image(&image.id);
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, record(image), None)]);
        let created = self
            .doors
            .call(|kv| async move { Ok::<_, StorageError>(kv.txn(txn).await?.succeeded()) })?;
        if created {
            Ok(())
        } else {
            Err(ImageError::IdExists(image.id.clone()))
        }
    }

    fn image(&self, id: &str) -> Result<Option<Image>, StorageError> {
        let read = self.doors.call(|kv| kv.image_at(id.to_owned()))?;
        Ok(read.map(|(image, _)| image))
    }

    fn images(&self) -> Result<Vec<Image>, StorageError> {
        self.doors.call(Kv::images)
    }

    fn image_ids_in_status(&self, status: ImageStatus) -> Result<Vec<String>, StorageError> {
        let images = self.doors.call(Kv::images)?;
        Ok(images
            .into_iter()
            .filter(|i| i.status == status)
            .map(|i| i.id)
            .collect())
    }

    fn update_image(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut Image) -> Result<bool, ImageError>,
    ) -> Result<Option<Image>, ImageError> {
        let key = self.doors.kv.keys.image(id);
        self.doors.contested(&key, |doors| {
            let Some((before, revision)) = doors.call(|kv| kv.image_at(id.to_owned()))? else {
                return Ok(Decided::Done(None));
            };
            let mut edited = before.clone();
            if !change(&mut edited)? {
                return Ok(Decided::Done(Some(before)));
            }
            let after = updated(&before, edited);
            let txn = write_back(key.clone(), revision, &after);
            Ok(Decided::Write(txn, Some(after)))
        })
    }

    fn set_image_status_if(
        &self,
        id: &str,
        from: &[ImageStatus],
        to: ImageStatus,
    ) -> Result<bool, StorageError> {
        let change = |mut image: Image| {
            if !from.contains(&image.status) {
                return None;
            }
            image.status = to;
            image.updated_at = Timestamp::now();
            Some(image)
        };
        self.write_if(id, change)
    }

    fn record_image_data(
        &self,
        id: &str,
        data: &ImageData,
        holder: &str,
        needed: usize,
    ) -> Result<bool, StorageError> {
        let copy = ImageCopy {
            holder: holder.to_owned(),
            size: data.size,
            os_hash_value: data.os_hash_value.clone(),
        };
        Ok(self.record_copy(id, &copy, Some(data), needed)?.is_some())
    }

    fn image_copies(&self, id: &str) -> Result<Vec<ImageCopy>, StorageError> {
        let copies = self.doors.call(|kv| kv.copies_at(id.to_owned()))?;
        Ok(copies.into_iter().map(|(c, _)| c).collect())
    }

    fn record_verified_copy(
        &self,
        id: &str,
        copy: &ImageCopy,
        needed: usize,
    ) -> Result<Option<ImageStatus>, StorageError> {
        self.record_copy(id, copy, None, needed)
    }

    fn drop_image_copy(&self, id: &str, holder: &str) -> Result<bool, StorageError> {
        let key = self.doors.kv.keys.image_copy(id, holder);
        self.doors.call(|kv| async move {
            let resp = kv
                .txn(Txn::new().and_then([TxnOp::delete(key, None)]))
                .await?;
            Ok(resp
                .op_responses()
                .into_iter()
                .any(|r| matches!(r, TxnOpResponse::Delete(d) if d.deleted() > 0)))
        })
    }

    fn delete_unheld_image(
        &self,
        id: &str,
        check: &mut dyn FnMut(&Image) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        let keys = &self.doors.kv.keys;
        let key = keys.image(id);
        let holders_key = keys.holders_of_image(id);
        let copies_key = keys.copies_of_image(id);
        self.doors.contested(&key, |doors| {
            let (image, revision) = doors
                .call(|kv| kv.image_at(id.to_owned()))?
                .ok_or_else(|| ImageError::NotFound(id.to_owned()))?;
            check(&image)?;
            let users = doors.call(|kv| kv.image_holders(id.to_owned()))?;
            if !users.is_empty() {
                return Err(ImageError::InUse {
                    id: id.to_owned(),
                    users: describe_users(&users),
                });
            }
            // A hold put after the read fails the version compare; the next try sees it.
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(key.clone(), CompareOp::Equal, revision),
                    Compare::version(holders_key.clone(), CompareOp::Equal, 0).with_prefix(),
                ])
                .and_then([
                    TxnOp::delete(key.clone(), None),
                    TxnOp::delete(copies_key.clone(), Some(DeleteOptions::new().with_prefix())),
                ]);
            Ok(Decided::Write(txn, ()))
        })
    }

    fn hold_images(
        &self,
        image_ids: &[String],
        kind: ConsumerKind,
        consumer: &str,
    ) -> Result<(), ImageError> {
        // Each image once: etcd refuses a transaction that puts one key twice.
        let mut seen = BTreeSet::new();
        let ids: Vec<&String> = image_ids.iter().filter(|i| seen.insert(*i)).collect();
        let Some(first) = ids.first() else {
            return Ok(());
        };
        if ids.len() > MAX_TXN_OPS {
            return Err(StorageError::Backend(
                format!(
                    "{} images cannot be held in one step; at most {MAX_TXN_OPS}",
                    ids.len()
                )
                .into(),
            )
            .into());
        }
        let keys = &self.doors.kv.keys;
        let image_keys: Vec<String> = ids.iter().map(|i| keys.image(i)).collect();
        self.doors.contested(&keys.image(first), |doors| {
            let read = image_keys.clone();
            let found = doors.call(|kv| async move { kv.get_many(read).await })?;
            let mut when = Vec::with_capacity(ids.len());
            let mut then = Vec::with_capacity(ids.len());
            for ((id, key), kv) in ids.iter().zip(&image_keys).zip(found) {
                let kv = kv.ok_or_else(|| ImageError::NotFound((*id).clone()))?;
                if decode(&kv)?.status != ImageStatus::Active {
                    return Err(ImageError::NotActive((*id).clone()));
                }
                when.push(Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                ));
                let hold = HolderRecord {
                    schema: HOLDER_SCHEMA,
                };
                then.push(TxnOp::put(
                    keys.image_holder(id, kind.as_str(), consumer),
                    to_json(&hold),
                    None,
                ));
            }
            Ok(Decided::Write(Txn::new().when(when).and_then(then), ()))
        })
    }

    fn release_images(&self, kind: ConsumerKind, consumer: &str) -> Result<usize, StorageError> {
        let consumer = consumer.to_owned();
        self.doors.call(|kv| kv.release_images(kind, consumer))
    }

    fn image_holders(&self, id: &str) -> Result<Vec<(String, String)>, StorageError> {
        self.doors.call(|kv| kv.image_holders(id.to_owned()))
    }

    fn holders_of_kind(&self, kind: ConsumerKind) -> Result<Vec<String>, StorageError> {
        let holds = self.doors.call(|kv| async move { kv.holds().await })?;
        let consumers: BTreeSet<String> = holds
            .into_iter()
            .filter(|h| h.kind == kind.as_str())
            .map(|h| h.consumer)
            .collect();
        Ok(consumers.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_parse_back_from_their_keys() {
        let keys = crate::cluster::keys::Keyspace::default();
        let key = keys.image_holder("i1", "volume", "v1");
        let hold = Hold::parse(&key, &keys.image_holders()).unwrap();
        assert_eq!(
            (hold.kind.as_str(), hold.consumer.as_str()),
            ("volume", "v1")
        );
        assert_eq!(hold.key, key);
        assert_eq!(Hold::parse(&keys.image("i1"), &keys.image_holders()), None);
    }
}
