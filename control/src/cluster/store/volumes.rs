//! Cinder's door in etcd: `/volumes/<id>` holds a volume with its metadata and attachment
//! inline, `/snapshots/<id>` a snapshot, and `/volume-snapshots/<volume>/<snapshot>` indexes
//! a volume's snapshots (docs/cluster.md, "The keyspace").
//!
//! A status change decides on the volume and its snapshots, so its write must fail when
//! either changed after the read. Every snapshot write puts the snapshot's index key again,
//! so one range compare (`mod_revision` of every key under the volume's index at most the
//! revision read) proves no snapshot of the volume was made, changed or renamed since, and a
//! compare on the volume's own revision covers the rest. A volume copied from a snapshot puts
//! the snapshot back unchanged in its creating transaction: a decision about the snapshot
//! taken before the copy existed then fails its compare and is taken again, seeing it.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{committed_at, from_json, ranges, to_json, Decided, EtcdDoors, Kv, MAX_TXN_OPS};
use crate::quota::{QuotaError, VolumeQuota};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use crate::volume::store::{
    Attachment, Decision, Snapshot, SnapshotStatus, Volume, VolumeRecordStore, VolumeStatus,
    VolumeView,
};
use crate::volume::VolumeError;

const VOLUME_SCHEMA: u32 = 1;
const SNAPSHOT_SCHEMA: u32 = 1;
const INDEX_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct AttachmentRecord {
    id: String,
    server_id: String,
    device: Option<String>,
    attached_at: i64,
}

#[derive(Serialize, Deserialize)]
struct VolumeRecord {
    schema: u32,
    id: String,
    project_id: String,
    user_id: String,
    name: Option<String>,
    description: Option<String>,
    size: i64,
    status: String,
    volume_type: String,
    image_id: Option<String>,
    #[serde(default)]
    image_metadata: BTreeMap<String, String>,
    snapshot_id: Option<String>,
    fault: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    attachment: Option<AttachmentRecord>,
    /// The box that holds the file.
    #[serde(default)]
    home: String,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    schema: u32,
    id: String,
    project_id: String,
    user_id: String,
    volume_id: String,
    name: Option<String>,
    description: Option<String>,
    size: i64,
    status: String,
    fault: Option<String>,
    #[serde(default)]
    home: String,
    created_at: i64,
    updated_at: i64,
}

/// `/volume-snapshots/...`: the key is the whole statement.
#[derive(Serialize, Deserialize)]
struct IndexRecord {
    schema: u32,
}

fn volume_record(v: &Volume) -> Vec<u8> {
    to_json(&VolumeRecord {
        schema: VOLUME_SCHEMA,
        id: v.id.clone(),
        project_id: v.project_id.clone(),
        user_id: v.user_id.clone(),
        name: v.name.clone(),
        description: v.description.clone(),
        size: v.size,
        status: v.status.as_str().to_owned(),
        volume_type: v.volume_type.clone(),
        image_id: v.image_id.clone(),
        image_metadata: v.image_metadata.clone(),
        snapshot_id: v.snapshot_id.clone(),
        fault: v.fault.clone(),
        metadata: v.metadata.clone(),
        attachment: v.attachment.as_ref().map(|a| AttachmentRecord {
            id: a.id.clone(),
            server_id: a.server_id.clone(),
            device: a.device.clone(),
            attached_at: a.attached_at.micros(),
        }),
        home: v.home.clone(),
        created_at: v.created_at.micros(),
        updated_at: v.updated_at.micros(),
    })
}

fn snapshot_record(s: &Snapshot) -> Vec<u8> {
    to_json(&SnapshotRecord {
        schema: SNAPSHOT_SCHEMA,
        id: s.id.clone(),
        project_id: s.project_id.clone(),
        user_id: s.user_id.clone(),
        volume_id: s.volume_id.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        size: s.size,
        status: s.status.as_str().to_owned(),
        fault: s.fault.clone(),
        home: s.home.clone(),
        created_at: s.created_at.micros(),
        updated_at: s.updated_at.micros(),
    })
}

fn unknown_status(kv: &KeyValue, status: &str) -> StorageError {
    StorageError::Corrupt(format!(
        "{}: unknown status {status:?}",
        String::from_utf8_lossy(kv.key())
    ))
}

fn decode_volume(kv: &KeyValue) -> Result<Volume, StorageError> {
    let r: VolumeRecord = from_json(kv)?;
    Ok(Volume {
        status: VolumeStatus::parse(&r.status).ok_or_else(|| unknown_status(kv, &r.status))?,
        attachment: r.attachment.map(|a| Attachment {
            id: a.id,
            volume_id: r.id.clone(),
            server_id: a.server_id,
            device: a.device,
            attached_at: Timestamp(a.attached_at),
        }),
        id: r.id,
        project_id: r.project_id,
        user_id: r.user_id,
        name: r.name,
        description: r.description,
        size: r.size,
        volume_type: r.volume_type,
        image_id: r.image_id,
        image_metadata: r.image_metadata,
        snapshot_id: r.snapshot_id,
        fault: r.fault,
        metadata: r.metadata,
        home: r.home,
        created_at: Timestamp(r.created_at),
        updated_at: Timestamp(r.updated_at),
    })
}

fn decode_snapshot(kv: &KeyValue) -> Result<Snapshot, StorageError> {
    let r: SnapshotRecord = from_json(kv)?;
    Ok(Snapshot {
        status: SnapshotStatus::parse(&r.status).ok_or_else(|| unknown_status(kv, &r.status))?,
        id: r.id,
        project_id: r.project_id,
        user_id: r.user_id,
        volume_id: r.volume_id,
        name: r.name,
        description: r.description,
        size: r.size,
        fault: r.fault,
        home: r.home,
        created_at: Timestamp(r.created_at),
        updated_at: Timestamp(r.updated_at),
    })
}

/// A store-side refusal that SQLite makes with a constraint: a caller's bug, not a user's.
fn refused(why: String) -> StorageError {
    StorageError::Backend(why.into())
}

fn unchanged_since(key: String, revision: i64) -> Compare {
    Compare::mod_revision(key, CompareOp::Equal, revision)
}

fn absent(key: String) -> Compare {
    Compare::version(key, CompareOp::Equal, 0)
}

/// A volume with its snapshots as read, and what a write decided on them compares.
struct ViewRead {
    view: VolumeView,
    volume_revision: i64,
    /// The revision the volume and its index were read at.
    read_at: i64,
}

impl ViewRead {
    /// True at commit when neither the volume nor any of its snapshots changed since the read
    /// (a snapshot made since has an index key newer than the read).
    fn unchanged(&self, keys: &crate::cluster::keys::Keyspace) -> [Compare; 2] {
        let id = &self.view.volume.id;
        [
            unchanged_since(keys.volume(id), self.volume_revision),
            Compare::mod_revision(
                keys.snapshots_of_volume(id),
                CompareOp::Less,
                self.read_at + 1,
            )
            .with_prefix(),
        ]
    }
}

impl Kv {
    async fn volume_at(self, id: String) -> Result<Option<(Volume, i64)>, StorageError> {
        let Some(kv) = self.get(self.keys.volume(&id)).await? else {
            return Ok(None);
        };
        Ok(Some((decode_volume(&kv)?, kv.mod_revision())))
    }

    async fn snapshot_at(self, id: String) -> Result<Option<(Snapshot, i64)>, StorageError> {
        let Some(kv) = self.get(self.keys.snapshot(&id)).await? else {
            return Ok(None);
        };
        Ok(Some((decode_snapshot(&kv)?, kv.mod_revision())))
    }

    /// Volume `id` and its snapshots: the volume and its index in one read, then the
    /// snapshots the index names (newer than that read if they changed meanwhile, which the
    /// write's compare on the index then catches).
    async fn view_at(self, id: String) -> Result<Option<ViewRead>, StorageError> {
        let index = self.keys.snapshots_of_volume(&id);
        let reads = [
            TxnOp::get(self.keys.volume(&id), None),
            TxnOp::get(
                index.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        ];
        let resp = self.txn(Txn::new().and_then(reads)).await?;
        let read_at = super::committed_at(&resp);
        let mut got = ranges(&resp).into_iter();
        let Some(kv) = got.next().unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let snapshot_keys = got
            .next()
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| Some(self.keys.snapshot(kv.key_str().ok()?.strip_prefix(&index)?)))
            .collect();
        let mut snapshots = Vec::new();
        for kv in self.get_many(snapshot_keys).await?.into_iter().flatten() {
            snapshots.push(decode_snapshot(&kv)?);
        }
        Ok(Some(ViewRead {
            view: VolumeView {
                volume: decode_volume(&kv)?,
                snapshots,
            },
            volume_revision: kv.mod_revision(),
            read_at,
        }))
    }

    /// Every volume with its key's `mod_revision`.
    async fn all_volumes(self) -> Result<Vec<(Volume, i64)>, StorageError> {
        let kvs = self.range(self.keys.volumes(), false).await?;
        kvs.iter()
            .map(|kv| Ok((decode_volume(kv)?, kv.mod_revision())))
            .collect()
    }

    /// The volumes and snapshots of `project_id`, and the revision they were read at.
    async fn project_volumes_at(
        self,
        project_id: String,
    ) -> Result<(Vec<Volume>, Vec<Snapshot>, i64), StorageError> {
        let range = |prefix: String| TxnOp::get(prefix, Some(GetOptions::new().with_prefix()));
        let resp = self
            .txn(Txn::new().and_then([range(self.keys.volumes()), range(self.keys.snapshots())]))
            .await?;
        let mut read = ranges(&resp).into_iter();
        let (volumes, snapshots) = (
            read.next().unwrap_or_default(),
            read.next().unwrap_or_default(),
        );
        let mut mine = Vec::new();
        for kv in &volumes {
            let v = decode_volume(kv)?;
            if v.project_id == project_id {
                mine.push(v);
            }
        }
        let mut snaps = Vec::new();
        for kv in &snapshots {
            let s = decode_snapshot(kv)?;
            if s.project_id == project_id {
                snaps.push(s);
            }
        }
        Ok((mine, snaps, committed_at(&resp)))
    }

    async fn all_snapshots(self) -> Result<Vec<Snapshot>, StorageError> {
        let kvs = self.range(self.keys.snapshots(), false).await?;
        kvs.iter().map(decode_snapshot).collect()
    }
}

/// [`VolumeRecordStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdVolumes {
    doors: EtcdDoors,
}

impl EtcdVolumes {
    pub(super) fn new(doors: EtcdDoors) -> EtcdVolumes {
        EtcdVolumes { doors }
    }

    fn keys(&self) -> &crate::cluster::keys::Keyspace {
        &self.doors.kv.keys
    }

    /// Reads volume `id`, lets `change` say what to write (None: nothing) and writes it under
    /// a compare on the revision it read. Returns the volume as written, None if there is no
    /// such volume or `change` declined.
    fn write_volume_if(
        &self,
        id: &str,
        mut change: impl FnMut(Volume) -> Option<Volume>,
    ) -> Result<Option<Volume>, StorageError> {
        let key = self.keys().volume(id);
        self.doors.contested(&key, |doors| {
            let read = doors.call(|kv| kv.volume_at(id.to_owned()))?;
            let Some((after, revision)) = read.and_then(|(v, rev)| Some((change(v)?, rev))) else {
                return Ok(Decided::Done(None));
            };
            let txn = Txn::new()
                .when([unchanged_since(key.clone(), revision)])
                .and_then([TxnOp::put(key.clone(), volume_record(&after), None)]);
            Ok(Decided::Write(txn, Some(after)))
        })
    }

    /// The same for snapshot `id`; its index key is put with it (see the module's comment).
    fn write_snapshot_if(
        &self,
        id: &str,
        mut change: impl FnMut(Snapshot) -> Option<Snapshot>,
    ) -> Result<bool, StorageError> {
        let key = self.keys().snapshot(id);
        self.doors.contested(&key, |doors| {
            let read = doors.call(|kv| kv.snapshot_at(id.to_owned()))?;
            let Some((after, revision)) = read.and_then(|(s, rev)| Some((change(s)?, rev))) else {
                return Ok(Decided::Done(false));
            };
            let txn = Txn::new()
                .when([unchanged_since(key.clone(), revision)])
                .and_then(self.put_snapshot(&after));
            Ok(Decided::Write(txn, true))
        })
    }

    /// Puts snapshot `s` and its index key.
    fn put_snapshot(&self, s: &Snapshot) -> [TxnOp; 2] {
        let index = IndexRecord {
            schema: INDEX_SCHEMA,
        };
        [
            TxnOp::put(self.keys().snapshot(&s.id), snapshot_record(s), None),
            TxnOp::put(
                self.keys().volume_snapshot(&s.volume_id, &s.id),
                to_json(&index),
                None,
            ),
        ]
    }
}

/// `v` moved to `to`, with `fault` (None clears it), as SQLite's status change writes it.
fn moved(v: Volume, to: VolumeStatus, fault: Option<&str>) -> Volume {
    Volume {
        status: to,
        fault: fault.map(str::to_owned),
        updated_at: Timestamp::now(),
        ..v
    }
}

impl VolumeRecordStore for EtcdVolumes {
    fn create_volume(&self, v: &Volume, quota: &VolumeQuota) -> Result<bool, QuotaError> {
        let key = self.keys().volume(&v.id);
        let source = v.snapshot_id.as_ref().map(|s| self.keys().snapshot(s));
        let (volumes_prefix, snapshots_prefix) = (self.keys().volumes(), self.keys().snapshots());
        self.doors.contested(&key, |doors| {
            let mut when = vec![absent(key.clone())];
            if !quota.is_unlimited() {
                // The project's volumes and snapshots as of one revision; the write commits
                // only if none was recorded or changed since, so the count still holds.
                let project = v.project_id.clone();
                let (held, snaps, revision) = doors.call(|kv| kv.project_volumes_at(project))?;
                quota.check(&held, &snaps, v.size)?;
                for prefix in [&volumes_prefix, &snapshots_prefix] {
                    when.push(
                        Compare::mod_revision(prefix.as_str(), CompareOp::Less, revision + 1)
                            .with_prefix(),
                    );
                }
            }
            let mut reads = vec![key.clone()];
            reads.extend(source.clone());
            let found = doors.call(|kv| async move { kv.get_many(reads).await })?;
            if found.first().is_some_and(Option::is_some) {
                return Err(refused(format!("a volume with id {} already exists", v.id)).into());
            }
            let mut then = vec![TxnOp::put(key.clone(), volume_record(v), None)];
            if let Some(source) = &source {
                let Some(Some(snap)) = found.get(1) else {
                    return Ok(Decided::Done(false));
                };
                if decode_snapshot(snap)?.status != SnapshotStatus::Available {
                    return Ok(Decided::Done(false));
                }
                // Put back as it is, so its revision moves (see the module's comment).
                when.push(unchanged_since(source.clone(), snap.mod_revision()));
                then.push(TxnOp::put(source.clone(), snap.value(), None));
            }
            Ok(Decided::Write(Txn::new().when(when).and_then(then), true))
        })
    }

    fn volume(&self, id: &str) -> Result<Option<Volume>, StorageError> {
        let read = self.doors.call(|kv| kv.volume_at(id.to_owned()))?;
        Ok(read.map(|(v, _)| v))
    }

    fn volumes(&self, project_id: Option<&str>) -> Result<Vec<Volume>, StorageError> {
        let all = self.doors.call(Kv::all_volumes)?;
        Ok(all
            .into_iter()
            .map(|(v, _)| v)
            .filter(|v| project_id.is_none_or(|p| v.project_id == p))
            .collect())
    }

    fn volume_ids_in_status(&self, status: VolumeStatus) -> Result<Vec<String>, StorageError> {
        let all = self.doors.call(Kv::all_volumes)?;
        Ok(all
            .into_iter()
            .filter(|(v, _)| v.status == status)
            .map(|(v, _)| v.id)
            .collect())
    }

    fn set_volume_status_if(
        &self,
        id: &str,
        from: &[VolumeStatus],
        to: VolumeStatus,
        fault: Option<&str>,
    ) -> Result<bool, StorageError> {
        let written = self.write_volume_if(id, |v| {
            from.contains(&v.status).then(|| moved(v, to, fault))
        })?;
        Ok(written.is_some())
    }

    fn change_volume_status(
        &self,
        id: &str,
        decide: &mut dyn FnMut(&VolumeView) -> Decision<VolumeStatus>,
    ) -> Result<Volume, VolumeError> {
        let key = self.keys().volume(id);
        self.doors.contested(&key, |doors| {
            let read = doors
                .call(|kv| kv.view_at(id.to_owned()))?
                .ok_or_else(|| VolumeError::NotFound(id.to_owned()))?;
            let Some(to) = decide(&read.view)? else {
                return Ok(Decided::Done(read.view.volume));
            };
            let after = moved(read.view.volume.clone(), to, None);
            let txn = Txn::new()
                .when(read.unchanged(self.keys()))
                .and_then([TxnOp::put(key.clone(), volume_record(&after), None)]);
            Ok(Decided::Write(txn, read.view.volume))
        })
    }

    fn request_extend(
        &self,
        id: &str,
        new_size: i64,
        decide: &mut dyn FnMut(&VolumeView) -> Result<(), VolumeError>,
    ) -> Result<Volume, VolumeError> {
        let key = self.keys().volume(id);
        self.doors.contested(&key, |doors| {
            let read = doors
                .call(|kv| kv.view_at(id.to_owned()))?
                .ok_or_else(|| VolumeError::NotFound(id.to_owned()))?;
            decide(&read.view)?;
            let after = Volume {
                size: new_size,
                ..moved(read.view.volume.clone(), VolumeStatus::Extending, None)
            };
            let txn = Txn::new()
                .when(read.unchanged(self.keys()))
                .and_then([TxnOp::put(key.clone(), volume_record(&after), None)]);
            Ok(Decided::Write(txn, read.view.volume))
        })
    }

    fn set_volume_metadata(
        &self,
        id: &str,
        edit: &mut dyn FnMut(&mut BTreeMap<String, String>),
    ) -> Result<Option<Volume>, StorageError> {
        self.write_volume_if(id, |mut v| {
            edit(&mut v.metadata);
            v.updated_at = Timestamp::now();
            Some(v)
        })
    }

    fn set_volume_text(
        &self,
        id: &str,
        name: Option<Option<&str>>,
        description: Option<Option<&str>>,
    ) -> Result<Option<Volume>, StorageError> {
        self.write_volume_if(id, |v| {
            Some(Volume {
                name: name.map_or(v.name.clone(), |n| n.map(str::to_owned)),
                description: description.map_or(v.description.clone(), |d| d.map(str::to_owned)),
                updated_at: Timestamp::now(),
                ..v
            })
        })
    }

    fn finish_extend(&self, id: &str, new_size: Option<i64>) -> Result<bool, StorageError> {
        let written = self.write_volume_if(id, |v| {
            (v.status == VolumeStatus::Extending).then(|| Volume {
                size: new_size.unwrap_or(v.size),
                ..moved(v, VolumeStatus::Available, None)
            })
        })?;
        Ok(written.is_some())
    }

    fn delete_volume(&self, id: &str) -> Result<bool, StorageError> {
        let key = self.keys().volume(id);
        let index = self.keys().snapshots_of_volume(id);
        self.doors.contested(&key, |doors| {
            let Some(read) = doors.call(|kv| kv.view_at(id.to_owned()))? else {
                return Ok(Decided::Done(false));
            };
            // SQLite's foreign keys refuse these; the callers move the volume to `deleting`
            // only once it has neither.
            let v = &read.view.volume;
            if let Some(a) = &v.attachment {
                return Err(refused(format!(
                    "volume {id} is attached to server {}; detach it before deleting it",
                    a.server_id
                )));
            }
            if !read.view.snapshots.is_empty() {
                return Err(refused(format!(
                    "volume {id} still has snapshots; delete them before the volume"
                )));
            }
            let txn = Txn::new()
                .when([
                    unchanged_since(key.clone(), read.volume_revision),
                    Compare::version(index.clone(), CompareOp::Equal, 0).with_prefix(),
                ])
                .and_then([TxnOp::delete(key.clone(), None)]);
            Ok(Decided::Write(txn, true))
        })
    }

    fn attach_volume(
        &self,
        a: &Attachment,
        check: &mut dyn FnMut(&Volume) -> Result<(), VolumeError>,
    ) -> Result<(), VolumeError> {
        let id = &a.volume_id;
        let key = self.keys().volume(id);
        self.doors.contested(&key, |doors| {
            let (v, revision) = doors
                .call(|kv| kv.volume_at(id.clone()))?
                .ok_or_else(|| VolumeError::NotFound(id.clone()))?;
            check(&v)?;
            if v.attachment.is_some() || v.status != VolumeStatus::Available {
                return Err(VolumeError::InvalidVolume(format!(
                    "volume {id} is {}; only an available volume can be attached",
                    v.status.as_str()
                )));
            }
            let after = Volume {
                attachment: Some(a.clone()),
                ..moved(v, VolumeStatus::InUse, None)
            };
            let txn = Txn::new()
                .when([unchanged_since(key.clone(), revision)])
                .and_then([TxnOp::put(key.clone(), volume_record(&after), None)]);
            Ok(Decided::Write(txn, ()))
        })
    }

    fn detach_volume(
        &self,
        volume_id: &str,
        server_id: &str,
        then: &mut dyn FnMut(&VolumeView) -> VolumeStatus,
    ) -> Result<Option<VolumeStatus>, StorageError> {
        let key = self.keys().volume(volume_id);
        self.doors.contested(&key, |doors| {
            let read = doors.call(|kv| kv.view_at(volume_id.to_owned()))?;
            let Some(mut read) = read.filter(|r| {
                let a = r.view.volume.attachment.as_ref();
                a.is_some_and(|a| a.server_id == server_id)
            }) else {
                return Ok(Decided::Done(None));
            };
            let guard = read.unchanged(self.keys());
            read.view.volume.attachment = None;
            let to = then(&read.view);
            let mut after = read.view.volume;
            // As SQLite: the attachment goes whatever the status; the status moves only from
            // `in-use`.
            if after.status == VolumeStatus::InUse {
                after = moved(after, to, None);
            }
            let txn = Txn::new().when(guard).and_then([TxnOp::put(
                key.clone(),
                volume_record(&after),
                None,
            )]);
            Ok(Decided::Write(txn, Some(to)))
        })
    }

    fn attachments_of_server(&self, server_id: &str) -> Result<Vec<Attachment>, StorageError> {
        let all = self.doors.call(Kv::all_volumes)?;
        let mut attached: Vec<Attachment> = all
            .into_iter()
            .filter_map(|(v, _)| v.attachment)
            .filter(|a| a.server_id == server_id)
            .collect();
        attached.sort_by(|a, b| (a.attached_at, &a.id).cmp(&(b.attached_at, &b.id)));
        Ok(attached)
    }

    fn create_snapshot(
        &self,
        volume_id: &str,
        quota: &VolumeQuota,
        make: &mut dyn FnMut(&Volume) -> Result<Snapshot, VolumeError>,
    ) -> Result<Snapshot, VolumeError> {
        let key = self.keys().volume(volume_id);
        let (volumes_prefix, snapshots_prefix) = (self.keys().volumes(), self.keys().snapshots());
        self.doors.contested(&key, |doors| {
            let (v, revision) = doors
                .call(|kv| kv.volume_at(volume_id.to_owned()))?
                .ok_or_else(|| VolumeError::NotFound(volume_id.to_owned()))?;
            let snap = make(&v)?;
            let mut when = Vec::new();
            if !quota.is_unlimited() {
                // As for a volume: counted as of one revision, committed only if nothing was
                // recorded or changed since.
                let project = v.project_id.clone();
                let (held, snaps, at) = doors.call(|kv| kv.project_volumes_at(project))?;
                quota.check_snapshot(&held, &snaps, snap.size)?;
                for prefix in [&volumes_prefix, &snapshots_prefix] {
                    when.push(
                        Compare::mod_revision(prefix.as_str(), CompareOp::Less, at + 1)
                            .with_prefix(),
                    );
                }
            }
            let snap_key = self.keys().snapshot(&snap.id);
            let taken = snap_key.clone();
            if doors
                .call(|kv| async move { kv.get(taken).await })?
                .is_some()
            {
                return Err(
                    refused(format!("a snapshot with id {} already exists", snap.id)).into(),
                );
            }
            when.extend([unchanged_since(key.clone(), revision), absent(snap_key)]);
            let txn = Txn::new().when(when).and_then(self.put_snapshot(&snap));
            Ok(Decided::Write(txn, snap))
        })
    }

    fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, StorageError> {
        let read = self.doors.call(|kv| kv.snapshot_at(id.to_owned()))?;
        Ok(read.map(|(s, _)| s))
    }

    fn snapshots(&self, project_id: Option<&str>) -> Result<Vec<Snapshot>, StorageError> {
        let all = self.doors.call(Kv::all_snapshots)?;
        Ok(all
            .into_iter()
            .filter(|s| project_id.is_none_or(|p| s.project_id == p))
            .collect())
    }

    fn snapshot_ids_in_status(&self, status: SnapshotStatus) -> Result<Vec<String>, StorageError> {
        let all = self.doors.call(Kv::all_snapshots)?;
        Ok(all
            .into_iter()
            .filter(|s| s.status == status)
            .map(|s| s.id)
            .collect())
    }

    fn set_snapshot_status_if(
        &self,
        id: &str,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        fault: Option<&str>,
    ) -> Result<bool, StorageError> {
        self.write_snapshot_if(id, |s| {
            from.contains(&s.status).then(|| Snapshot {
                status: to,
                fault: fault.map(str::to_owned),
                updated_at: Timestamp::now(),
                ..s
            })
        })
    }

    fn change_snapshot_status(
        &self,
        id: &str,
        decide: &mut dyn FnMut(&Snapshot, &[Volume]) -> Decision<SnapshotStatus>,
    ) -> Result<Snapshot, VolumeError> {
        let key = self.keys().snapshot(id);
        self.doors.contested(&key, |doors| {
            let (s, revision) = doors
                .call(|kv| kv.snapshot_at(id.to_owned()))?
                .ok_or_else(|| VolumeError::SnapshotNotFound(id.to_owned()))?;
            // A copy made after the snapshot's read moved the snapshot's revision; each copy
            // read is compared too, so the decision stands on what it saw.
            let (copies, revisions): (Vec<Volume>, Vec<i64>) = doors
                .call(Kv::all_volumes)?
                .into_iter()
                .filter(|(v, _)| v.snapshot_id.as_deref() == Some(id))
                .unzip();
            let Some(to) = decide(&s, &copies)? else {
                return Ok(Decided::Done(s));
            };
            if copies.len() >= MAX_TXN_OPS {
                return Err(refused(format!(
                    "snapshot {id} has {} volumes copied from it, more than one transaction \
                     can check; change it once some are deleted",
                    copies.len()
                ))
                .into());
            }
            let mut when = vec![unchanged_since(key.clone(), revision)];
            when.extend(
                copies
                    .iter()
                    .zip(revisions)
                    .map(|(v, rev)| unchanged_since(self.keys().volume(&v.id), rev)),
            );
            let after = Snapshot {
                status: to,
                fault: None,
                updated_at: Timestamp::now(),
                ..s.clone()
            };
            let txn = Txn::new().when(when).and_then(self.put_snapshot(&after));
            Ok(Decided::Write(txn, s))
        })
    }

    fn delete_snapshot(&self, id: &str) -> Result<bool, StorageError> {
        let key = self.keys().snapshot(id);
        self.doors.contested(&key, |doors| {
            let Some((s, revision)) = doors.call(|kv| kv.snapshot_at(id.to_owned()))? else {
                return Ok(Decided::Done(false));
            };
            let txn = Txn::new()
                .when([unchanged_since(key.clone(), revision)])
                .and_then([
                    TxnOp::delete(key.clone(), None),
                    TxnOp::delete(self.keys().volume_snapshot(&s.volume_id, id), None),
                ]);
            Ok(Decided::Write(txn, true))
        })
    }
}
