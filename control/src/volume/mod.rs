//! Cinder's part of the control service: volumes (blank, from an image, from a snapshot; thin
//! or thick by volume type), snapshots, and attachments to servers. Files are made by
//! `outpost-image-store`'s `VolumeStore`.
//!
//! Creating a volume or a snapshot copies data, so it runs in the background as Cinder does:
//! the record is written `creating`, the request answers 202, and a worker thread makes the
//! file and records `available` or `error` (`jobs`). A volume's status also serialises work
//! on it: only an `available` volume is extended, snapshotted or deleted. A restart finishes or
//! fails whatever was in progress ([`recover`]).
//!
//! Policy: members act within their project; admins see every project's volumes with
//! `all_tenants`. Sizes are GiB, 1 to [`MAX_SIZE_GIB`].

mod attachments;
pub mod homes;
mod jobs;
pub mod metadata;
pub mod query;
mod reconcile;
mod recovery;
pub mod snapshots;
pub mod store;
pub mod types;

pub use attachments::{attach, attachments_of_server, detach, find};
pub use homes::{HomePicker, Homes, ZONE};
pub use query::{ListQuery, SortKey};
pub use reconcile::reconcile;
pub use recovery::{recover, Recovered};
pub use store::{
    Attachment, Snapshot, SnapshotStatus, Volume, VolumeRecordStore, VolumeStatus, VolumeView,
};
pub use types::VolumeType;

use crate::quota::{QuotaError, VolumeQuota};
use jobs::JobKind;

use crate::context::RequestContext;
use crate::image::{self, ConsumerKind, ImageError};
use crate::random::{self, RandomError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_image_store::size::{bytes_from_gib, SizeError, GIB};
use outpost_image_store::{ImageStore, VolumeStore};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The largest volume, in GiB: the volume store's default limit (4 TiB).
pub const MAX_SIZE_GIB: i64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("Volume {0} could not be found.")]
    NotFound(String),
    #[error("Snapshot {0} could not be found.")]
    SnapshotNotFound(String),
    #[error("Volume type {0} could not be found.")]
    TypeNotFound(String),
    #[error("Invalid input received: {0}")]
    InvalidInput(String),
    #[error("Invalid volume: {0}")]
    InvalidVolume(String),
    #[error("Invalid snapshot: {0}")]
    InvalidSnapshot(String),
    #[error("Invalid image identifier or unable to access requested image: {0}")]
    InvalidImage(#[from] ImageError),
    #[error("Volume {volume} has no metadata with key {key}.")]
    MetadataNotFound { volume: String, key: String },
    #[error("Marker {0} could not be found.")]
    MarkerNotFound(String),
    /// No box can hold a new volume.
    #[error("No valid backend was found: {0}")]
    NoHome(String),
    #[error("Policy doesn't allow {0} to be performed.")]
    Forbidden(&'static str),
    /// Over one of Cinder's quotas (a 413), in Cinder's words.
    #[error("{0}")]
    OverQuota(String),
    /// The volume store refused or failed.
    #[error("{0}")]
    Disk(#[from] outpost_image_store::VolumeError),
    #[error("cannot start a worker thread: {0}")]
    Worker(std::io::Error),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A quota refusal in Cinder's words (`VolumeLimitExceeded`, `SnapshotLimitExceeded`,
/// `VolumeSizeExceedsAvailableQuota`): a 413.
impl From<QuotaError> for VolumeError {
    fn from(e: QuotaError) -> VolumeError {
        match e {
            QuotaError::Exceeded {
                resource,
                requested,
                used,
                limit,
            } if resource.starts_with("gigabytes") => VolumeError::OverQuota(format!(
                "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed \
                 {resource} quota. Requested {requested}G, quota is {limit}G and {used}G has \
                 been consumed."
            )),
            QuotaError::Exceeded {
                resource, limit, ..
            } if resource.starts_with("snapshots") => VolumeError::OverQuota(format!(
                "SnapshotLimitExceeded: Maximum number of snapshots allowed ({limit}) exceeded \
                 for quota '{resource}'."
            )),
            QuotaError::Exceeded {
                resource, limit, ..
            } => VolumeError::OverQuota(format!(
                "VolumeLimitExceeded: Maximum number of volumes allowed ({limit}) exceeded for \
                 quota '{resource}'."
            )),
            QuotaError::Storage(e) => VolumeError::Storage(e),
            other => VolumeError::InvalidInput(other.to_string()),
        }
    }
}

/// The stores volumes live in and are copied from. Cheap to clone; workers take a clone.
#[derive(Clone)]
pub struct Stores {
    /// Cinder's door to its records.
    pub records: Arc<dyn VolumeRecordStore>,
    /// Glance's door: the images volumes are copied from and hold.
    pub image_records: Arc<dyn image::ImageRecordStore>,
    /// The volume files.
    pub volumes: Arc<VolumeStore>,
    /// The image files.
    pub images: Arc<ImageStore>,
    /// Which volumes' files are on this box, and which it is working on.
    pub homes: Arc<Homes>,
    /// Cinder's quotas, checked as a volume is recorded.
    pub quotas: crate::quota::Quotas,
}

/// `POST /volumes`, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewVolume {
    /// GiB; may be omitted when copying a snapshot (its size is used).
    pub size: Option<Value>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Type name or id; default `thin`.
    pub volume_type: Option<String>,
    pub image_ref: Option<String>,
    pub snapshot_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The zone the volume is asked for in (None: any).
    pub availability_zone: Option<String>,
}

/// A volume size from the API: a JSON integer or a string of digits (Cinder accepts both),
/// 1 to [`MAX_SIZE_GIB`].
pub fn parse_size(field: &str, v: &Value) -> Result<i64, VolumeError> {
    let bad = |why: String| VolumeError::InvalidInput(format!("{field} {v} {why}"));
    let n = match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| bad("must be an integer".into()))?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<i64>()
            .map_err(|_| bad(format!("is above the maximum of {MAX_SIZE_GIB} GiB")))?,
        _ => return Err(bad("must be an integer".into())),
    };
    if n < 1 {
        return Err(bad("must be an integer and greater than 0".into()));
    }
    if n > MAX_SIZE_GIB {
        return Err(bad(format!(
            "is above this host's maximum of {MAX_SIZE_GIB} GiB"
        )));
    }
    Ok(n)
}

fn bytes(gib: i64) -> Result<u64, VolumeError> {
    bytes_from_gib("volume", gib).map_err(|e: SizeError| VolumeError::InvalidInput(e.to_string()))
}

/// GiB needed to hold `size` bytes.
pub fn gib_for(size: i64) -> i64 {
    let gib = GIB as i64;
    size.saturating_add(gib - 1) / gib
}

fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<(), VolumeError> {
    match v {
        Some(s) if s.chars().count() > max => Err(VolumeError::InvalidInput(format!(
            "{field} is longer than {max} characters"
        ))),
        _ => Ok(()),
    }
}

fn project_of(ctx: &RequestContext) -> Result<String, VolumeError> {
    ctx.project_id
        .clone()
        .ok_or(VolumeError::Forbidden("volume:create"))
}

fn visible(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Volume, VolumeError> {
    db.volume(id)?
        .filter(|v| ctx.can_see(&v.project_id))
        .ok_or_else(|| VolumeError::NotFound(id.to_owned()))
}

/// `v` as `ctx` may see it: the volume's project never changes, so a check made on one read
/// holds for the next.
fn check_visible(ctx: &RequestContext, v: &Volume) -> Result<(), VolumeError> {
    if ctx.can_see(&v.project_id) {
        Ok(())
    } else {
        Err(VolumeError::NotFound(v.id.clone()))
    }
}

/// An image reference as Cinder takes it: an id, or a URL ending in one.
fn image_id_of(reference: &str) -> &str {
    reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(reference)
}

/// Cinder's `volume_image_metadata`: the image's core attributes and its properties.
fn image_metadata(img: &image::Image) -> BTreeMap<String, String> {
    let mut m = img.properties.clone();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("image_id", Some(img.id.clone()));
    put("image_name", img.name.clone());
    put("checksum", img.checksum.clone());
    put("disk_format", img.disk_format.clone());
    put("container_format", img.container_format.clone());
    put("size", img.size.map(|s| s.to_string()));
    put("min_disk", Some(img.min_disk.to_string()));
    put("min_ram", Some(img.min_ram.to_string()));
    m
}

/// Where the new volume's data comes from, resolved before the record is written.
enum Source {
    Blank,
    Image(PathBuf),
    Snapshot(String),
}

/// Writes the record (`creating`) and starts the copy; returns the record.
pub fn create(
    stores: &Stores,
    ctx: &RequestContext,
    new: NewVolume,
) -> Result<Volume, VolumeError> {
    let planned = begin(stores, ctx, new, None)?;
    let volume = planned.volume.clone();
    if !stores.homes.holds(&volume.home) {
        // Recorded `creating`: the home's reconciler makes the file.
        tracing::info!(
            "volume {}: to be made by its home, {}",
            volume.id,
            volume.home
        );
        return Ok(volume);
    }
    let Some(busy) = stores.homes.start(&volume.id) else {
        return Ok(volume);
    };
    planned.spawn(stores, busy)?;
    Ok(volume)
}

/// A volume made in the caller's thread with an id the caller chose (a server's create
/// saga records the id before the volume exists, so its undo can find a half-made one).
/// Returns the volume once `available`; a failed copy leaves it in `error`.
pub fn create_now(
    stores: &Stores,
    ctx: &RequestContext,
    new: NewVolume,
    id: &str,
) -> Result<Volume, VolumeError> {
    let planned = begin(stores, ctx, new, Some(id.to_owned()))?;
    let _busy = stores.homes.start(id);
    let made = planned.make(stores);
    let failed = made.as_ref().err().cloned();
    jobs::finish(stores, JobKind::Volume, id, made);
    if let Some(f) = failed {
        return Err(VolumeError::InvalidVolume(format!(
            "volume {id} could not be made: {f}"
        )));
    }
    stores
        .records
        .volume(id)?
        .ok_or_else(|| VolumeError::NotFound(id.to_owned()))
}

/// A volume whose record is written (`creating`) and whose file is still to be made.
struct Planned {
    volume: Volume,
    source: Source,
    provisioning: outpost_image_store::Provisioning,
    size_bytes: u64,
}

impl Planned {
    /// The plan of a `creating` record, as its home reads it: None while the image it is
    /// copied from has no copy on this box yet (the replicator brings one).
    fn of_record(stores: &Stores, v: &Volume) -> Result<Option<Planned>, VolumeError> {
        let source = match (&v.image_id, &v.snapshot_id) {
            (Some(image), _) => {
                let path = stores.images.image_path(image).map_err(ImageError::from)?;
                if !path.exists() {
                    return Ok(None);
                }
                Source::Image(path)
            }
            (None, Some(snap)) => Source::Snapshot(snap.clone()),
            (None, None) => Source::Blank,
        };
        Ok(Some(Planned {
            volume: v.clone(),
            source,
            provisioning: types::by_name(&v.volume_type)
                .unwrap_or(types::DEFAULT)
                .provisioning,
            size_bytes: bytes(v.size)?,
        }))
    }

    /// Makes the file on a worker thread, which records the outcome.
    fn spawn(self, stores: &Stores, busy: homes::Busy) -> Result<(), VolumeError> {
        let worker = stores.clone();
        let id = self.volume.id.clone();
        jobs::spawn(stores, "volume-create", JobKind::Volume, &id, move || {
            let made = self.make(&worker);
            jobs::finish(&worker, JobKind::Volume, &self.volume.id, made);
            drop(busy);
        })
    }

    fn make(&self, stores: &Stores) -> Result<(), String> {
        let (vs, id, size, p) = (
            &stores.volumes,
            &self.volume.id,
            self.size_bytes,
            self.provisioning,
        );
        let made = match &self.source {
            Source::Blank => vs.create_blank(id, size, p),
            Source::Image(path) => vs.create_from_image(id, path, size, p),
            Source::Snapshot(snap) => vs.create_from_snapshot(id, snap, size, p),
        };
        made.map(drop).map_err(|e| e.to_string())
    }
}

/// Checks a create request and writes its record (`creating`), holding its image.
fn begin(
    stores: &Stores,
    ctx: &RequestContext,
    new: NewVolume,
    id: Option<String>,
) -> Result<Planned, VolumeError> {
    let db = stores.records.as_ref();
    let glance = stores.image_records.as_ref();
    check_text("name", &new.name, 255)?;
    check_text("description", &new.description, 255)?;
    metadata::check(&new.metadata)?;
    let vtype = match &new.volume_type {
        None => types::DEFAULT,
        Some(t) => types::find(t).ok_or_else(|| VolumeError::TypeNotFound(t.clone()))?,
    };
    if new.image_ref.is_some() && new.snapshot_id.is_some() {
        return Err(VolumeError::InvalidInput(
            "give at most one of imageRef and snapshot_id".into(),
        ));
    }
    let mut size = new
        .size
        .as_ref()
        .map(|v| parse_size("size", v))
        .transpose()?;
    let mut source = Source::Blank;
    let mut img = None;
    // A server's build makes its volumes on its own box; a copy of a snapshot goes where the
    // snapshot's file is; any other volume where the site has room.
    let mut home = id.as_ref().map(|_| stores.homes.me().to_owned());
    if let Some(r) = &new.image_ref {
        let found = image::get(glance, ctx, image_id_of(r))?;
        if found.status != image::ImageStatus::Active {
            return Err(ImageError::NotActive(found.id).into());
        }
        let needed = gib_for(found.virtual_size.or(found.size).unwrap_or(0)).max(found.min_disk);
        let Some(s) = size else {
            return Err(VolumeError::InvalidInput(
                "size is required when creating a volume from an image".into(),
            ));
        };
        if s < needed {
            return Err(VolumeError::InvalidInput(format!(
                "Size of specified image {} is larger than volume size {s} GiB: give at least \
                 {needed} GiB",
                found.id
            )));
        }
        // The home's own copy: on another box this path is only a placeholder, and the
        // home resolves its own.
        source = Source::Image(
            stores
                .images
                .image_path(&found.id)
                .map_err(ImageError::from)?,
        );
        img = Some(found);
    }
    if let Some(snap_id) = &new.snapshot_id {
        let snap = snapshots::get(db, ctx, snap_id)?;
        if snap.status != SnapshotStatus::Available {
            return Err(VolumeError::InvalidSnapshot(format!(
                "snapshot {snap_id} is {}; it must be available",
                snap.status.as_str()
            )));
        }
        let s = *size.get_or_insert(snap.size);
        if s < snap.size {
            return Err(VolumeError::InvalidInput(format!(
                "volume size {s} GiB is smaller than the snapshot's {} GiB",
                snap.size
            )));
        }
        source = Source::Snapshot(snap_id.clone());
        if !snap.home.is_empty() {
            home = Some(snap.home.clone());
        }
    }
    let home = match home {
        Some(h) => h,
        None => stores.homes.pick(new.availability_zone.as_deref())?,
    };
    let size = size.ok_or_else(|| VolumeError::InvalidInput("size is required".into()))?;
    let size_bytes = bytes(size)?;
    let now = Timestamp::now();
    let volume = Volume {
        id: match id {
            Some(id) => id,
            None => random::uuid()?,
        },
        project_id: project_of(ctx)?,
        user_id: ctx.user_id.clone(),
        name: new.name,
        description: new.description,
        size,
        status: VolumeStatus::Creating,
        volume_type: vtype.name.to_owned(),
        image_id: img.as_ref().map(|i| i.id.clone()),
        image_metadata: img.as_ref().map(image_metadata).unwrap_or_default(),
        snapshot_id: new.snapshot_id.clone(),
        fault: None,
        metadata: new.metadata,
        attachment: None,
        home,
        created_at: now,
        updated_at: now,
    };
    // The image is held first, through Glance's door: it cannot be deleted from here on. If
    // the volume is then not recorded the hold is let go; a crash in between leaves a hold
    // with no volume, which `recover` lets go at the next start.
    if let Some(i) = &volume.image_id {
        image::hold(
            glance,
            std::slice::from_ref(i),
            ConsumerKind::Volume,
            &volume.id,
        )?;
    }
    let quota = VolumeQuota::of(&stores.quotas, &volume.project_id, &volume.volume_type)?;
    let recorded = match db.create_volume(&volume, &quota) {
        Ok(true) => Ok(()),
        Ok(false) => Err(VolumeError::InvalidSnapshot(format!(
            "snapshot {} is not available",
            volume.snapshot_id.as_deref().unwrap_or_default()
        ))),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = recorded {
        if volume.image_id.is_some() {
            if let Err(undo) = image::let_go(glance, ConsumerKind::Volume, &volume.id) {
                tracing::warn!("volume {}: cannot let go of its image: {undo}", volume.id);
            }
        }
        return Err(e);
    }
    Ok(Planned {
        volume,
        source,
        provisioning: vtype.provisioning,
        size_bytes,
    })
}

pub fn get(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Volume, VolumeError> {
    visible(db, ctx, id)
}

pub fn list(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    q: &ListQuery,
) -> Result<Vec<Volume>, VolumeError> {
    let project = if q.all_projects && ctx.is_admin() {
        None
    } else {
        Some(project_of(ctx)?)
    };
    let all = db.volumes(project.as_deref())?;
    query::page(all, q)
}

/// `PUT /volumes/{id}`: name and description (None leaves a field as it is).
pub fn update(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
    name: Option<Option<String>>,
    description: Option<Option<String>>,
) -> Result<Volume, VolumeError> {
    if let Some(n) = &name {
        check_text("name", n, 255)?;
    }
    if let Some(d) = &description {
        check_text("description", d, 255)?;
    }
    visible(db, ctx, id)?;
    db.set_volume_text(
        id,
        name.as_ref().map(Option::as_deref),
        description.as_ref().map(Option::as_deref),
    )?
    .ok_or_else(|| VolumeError::NotFound(id.to_owned()))
}

/// Statuses from which a volume may be deleted (Cinder's list, as far as they exist here).
const DELETABLE: [VolumeStatus; 3] = [
    VolumeStatus::Available,
    VolumeStatus::Error,
    VolumeStatus::ErrorDeleting,
];

/// Deletes volume `id`: refused while attached, while it has snapshots, or while it is busy.
pub fn delete(stores: &Stores, ctx: &RequestContext, id: &str) -> Result<(), VolumeError> {
    stores.records.change_volume_status(id, &mut |seen| {
        let v = &seen.volume;
        check_visible(ctx, v)?;
        if v.attachment.is_some() {
            return Err(VolumeError::InvalidVolume(format!(
                "volume {id} is attached to a server; detach it first"
            )));
        }
        let snaps = seen.snapshots.len();
        if snaps > 0 {
            return Err(VolumeError::InvalidVolume(format!(
                "volume {id} still has {snaps} dependent snapshots; delete them first"
            )));
        }
        if !DELETABLE.contains(&v.status) {
            return Err(VolumeError::InvalidVolume(format!(
                "Volume status must be available or error and must not be attached or have \
                 snapshots; volume {id} is {}",
                v.status.as_str()
            )));
        }
        Ok(Some(VolumeStatus::Deleting))
    })?;
    let v = stores.records.volume(id)?;
    let Some(_busy) = v
        .filter(|v| stores.homes.holds(&v.home))
        .and_then(|_| stores.homes.start(id))
    else {
        // Recorded `deleting`: the home removes the file and then the record.
        return Ok(());
    };
    finish_delete(stores, id)
}

/// Detaches volume `id` from server `server_id` and deletes it, for a server deleted with
/// the volume's `delete_on_termination`. The detach and the `deleting` status are one
/// transaction, so a crash in between cannot leave a detached volume that nobody deletes: a
/// restart finishes a `deleting` volume ([`recover`]). A volume with snapshots is only
/// detached (Cinder would refuse to delete it); returns whether it was deleted.
pub fn detach_and_delete(stores: &Stores, id: &str, server_id: &str) -> Result<bool, VolumeError> {
    // Held from before the volume is `deleting`, so no reconciler pass deletes it alongside.
    let busy = stores.homes.start(id);
    let to = stores.records.detach_volume(id, server_id, &mut |seen| {
        if seen.snapshots.is_empty() {
            VolumeStatus::Deleting
        } else {
            VolumeStatus::Available
        }
    })?;
    let deleting = to == Some(VolumeStatus::Deleting);
    if deleting && busy.is_some() {
        finish_delete(stores, id)?;
    }
    Ok(deleting)
}

/// Removes the file, then the record and its image use; on failure the volume is left
/// `error_deleting` (deleting it again retries).
pub(crate) fn finish_delete(stores: &Stores, id: &str) -> Result<(), VolumeError> {
    if let Err(e) = stores.volumes.delete(id) {
        let fault = e.to_string();
        stores.records.set_volume_status_if(
            id,
            &[VolumeStatus::Deleting],
            VolumeStatus::ErrorDeleting,
            Some(&fault),
        )?;
        return Err(e.into());
    }
    // The record, then the image hold: a crash in between leaves a hold with no volume,
    // which `recover` lets go.
    stores.records.delete_volume(id)?;
    image::let_go(stores.image_records.as_ref(), ConsumerKind::Volume, id)?;
    tracing::info!("volume {id}: deleted");
    Ok(())
}

/// `os-extend`: grows an available volume to `new_size` GiB (thick volumes allocate the new
/// part). Runs in the request: growing a file is one system call.
pub fn extend(
    stores: &Stores,
    ctx: &RequestContext,
    id: &str,
    new_size: &Value,
) -> Result<Volume, VolumeError> {
    let db = stores.records.as_ref();
    let new_size = parse_size("new_size", new_size)?;
    let home = visible(db, ctx, id)?.home;
    if !stores.homes.holds(&home) {
        // The size asked for is recorded with `extending`; the home grows the file to it.
        db.request_extend(id, new_size, &mut |seen| {
            check_extend(ctx, seen, id, new_size).map(drop)
        })?;
        return get(db, ctx, id);
    }
    let Some(_busy) = stores.homes.start(id) else {
        return Err(VolumeError::InvalidVolume(format!(
            "volume {id} is busy with another change on its home box"
        )));
    };
    let v = db.change_volume_status(id, &mut |seen| check_extend(ctx, seen, id, new_size))?;
    let provisioning = types::by_name(&v.volume_type)
        .unwrap_or(types::DEFAULT)
        .provisioning;
    let grown = bytes(new_size).and_then(|b| Ok(stores.volumes.extend(id, b, provisioning)?));
    db.finish_extend(id, grown.is_ok().then_some(new_size))?;
    grown?;
    tracing::info!("volume {id}: extended to {new_size} GiB");
    get(db, ctx, id)
}

/// Whether `seen` may be extended to `new_size` GiB: the status to move it to.
fn check_extend(
    ctx: &RequestContext,
    seen: &VolumeView,
    id: &str,
    new_size: i64,
) -> store::Decision<VolumeStatus> {
    let v = &seen.volume;
    check_visible(ctx, v)?;
    if new_size <= v.size {
        return Err(VolumeError::InvalidInput(format!(
            "New size for extend must be greater than current size. (current: {}, \
             extended: {new_size})",
            v.size
        )));
    }
    let snapshotting = seen
        .snapshots
        .iter()
        .any(|s| s.status == SnapshotStatus::Creating);
    if snapshotting || v.status != VolumeStatus::Available {
        return Err(VolumeError::InvalidVolume(format!(
            "Volume status must be available to extend; volume {id} is {}{}",
            v.status.as_str(),
            if snapshotting {
                " with a snapshot being taken"
            } else {
                ""
            }
        )));
    }
    Ok(Some(VolumeStatus::Extending))
}

/// Volume `id`'s file, for the monitor (attach it to a guest only while attached).
pub fn path(volumes: &VolumeStore, id: &str) -> Result<PathBuf, VolumeError> {
    Ok(volumes.path(id)?)
}

#[cfg(test)]
mod tests;
