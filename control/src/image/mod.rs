//! Glance's part of the control service: image records (validation, visibility, policy),
//! their data in `outpost-image-store`, and who uses them, all kept through Glance's door
//! ([`store::ImageRecordStore`]). Servers read images through [`boot_source`] and hold them
//! with [`hold`]/[`let_go`]; an image in use cannot be deleted ([`in_use`]).
//!
//! Policy follows Glance's defaults: anyone in a project creates images (owned by the
//! project); only admins make them public or give them another owner; owners and admins
//! change and delete them; a protected image cannot be deleted; owners share `shared` images
//! with other projects ([`members`]).

pub mod copies;
mod data;
pub mod fields;
pub mod members;
pub mod metadefs;
pub mod patch;
pub mod pull;
pub mod query;
mod recovery;
pub mod schema;
pub mod store;
mod usage;

pub use copies::CopyRule;
pub use data::{download, upload, ImageFile, UploadChecks};
pub use query::{ImageQuery, SortKey, VisibilityFilter};
pub use recovery::recover;
pub use store::{
    Image, ImageCopy, ImageMember, ImageRecordStore, ImageStatus, ImageVisibility, MemberStatus,
};
pub(crate) use usage::describe as describe_users;
pub use usage::{hold, holders, in_use, let_go, users, ConsumerKind};

use crate::context::RequestContext;
use crate::random::{self, RandomError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_image_store::ImageStore;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The methods of Glance's interoperable image import (`POST /v2/images/{id}/import`) served:
/// none, data arrives by `PUT /v2/images/{id}/file` only.
pub const IMPORT_METHODS: &[&str] = &[];

/// Glance's policy rule names, in messages.
const PUBLICIZE: &str = "publicize_image";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No image found with ID {0}")]
    NotFound(String),
    #[error("Invalid value for '{field}': {reason}")]
    InvalidField { field: String, reason: String },
    #[error("Attribute '{0}' is read-only.")]
    ReadOnly(String),
    #[error("Attribute '{0}' is reserved.")]
    Reserved(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("Image {0} is protected and cannot be deleted; set protected to false first.")]
    Protected(String),
    #[error("Image {id} is in use by {users}; delete those first.")]
    InUse { id: String, users: String },
    #[error("Image with identifier {0} already exists!")]
    IdExists(String),
    #[error("Image {id} is {status}; its data can only be uploaded while it is queued.")]
    NotQueued { id: String, status: &'static str },
    #[error("Image {0} is not active, so its data cannot be used.")]
    NotActive(String),
    #[error("Property {0} does not exist.")]
    NoSuchProperty(String),
    #[error("Property {0} already present.")]
    AlreadyPresent(String),
    #[error("Maximum number of image properties ({0}) exceeded.")]
    TooManyProperties(usize),
    #[error("Project {member_id} is already a member of image {image_id}.")]
    MemberExists { image_id: String, member_id: String },
    #[error("Maximum number of image members ({0}) exceeded; remove one first.")]
    TooManyMembers(usize),
    #[error("{0}")]
    BadPatch(String),
    #[error("Invalid marker. Image {0} could not be found.")]
    MarkerNotFound(String),
    #[error("Properties disk_format, container_format must be set prior to saving data.")]
    FormatsUnset,
    #[error(
        "The upload of image {id} was interrupted ({reason}); the image is queued again and \
         its data can be uploaded anew."
    )]
    Interrupted { id: String, reason: String },
    #[error(
        "Image {id}: the received data has SHA-256 {actual}, not {expected} as property \
         owner_specified.openstack.sha256 says; nothing was stored and the image is queued again."
    )]
    Sha256Mismatch {
        id: String,
        expected: String,
        actual: String,
    },
    /// The image store refused or failed; the API tells client mistakes from host failures.
    #[error("{0}")]
    Data(#[from] outpost_image_store::ImageError),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// `POST /v2/images`: the attributes as given (core fields and additional properties).
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    pub attributes: Map<String, Value>,
}

fn not_found(id: &str) -> ImageError {
    ImageError::NotFound(id.to_owned())
}

/// Image `id` if `ctx` may see it.
fn visible(db: &dyn ImageRecordStore, ctx: &RequestContext, id: &str) -> Result<Image, ImageError> {
    db.image(id)?
        .filter(|i| query::can_see(ctx, i))
        .ok_or_else(|| not_found(id))
}

/// `image` may be changed by `ctx`: it sees it, and owns it (or is admin).
fn check_modifiable(ctx: &RequestContext, image: &Image) -> Result<(), ImageError> {
    if !query::can_see(ctx, image) {
        return Err(not_found(&image.id));
    }
    if !query::can_modify(ctx, image) {
        return Err(ImageError::Forbidden(format!(
            "You are not permitted to modify image {}: it belongs to another project.",
            image.id
        )));
    }
    Ok(())
}

/// The checks a change must pass beyond field validation: who may publish or re-own an image,
/// and that formats are fixed once data exists.
fn check_policy(
    ctx: &RequestContext,
    before: Option<&Image>,
    after: &Image,
) -> Result<(), ImageError> {
    let changed = |f: fn(&Image) -> bool| before.is_none_or(|b| f(b) != f(after));
    if after.visibility == ImageVisibility::Public
        && changed(|i| i.visibility == ImageVisibility::Public)
        && !ctx.is_admin()
    {
        return Err(ImageError::Forbidden(format!(
            "You are not authorized to complete {PUBLICIZE} action: only admins make images \
             public."
        )));
    }
    let owner_changed = before.map_or(after.owner != ctx.project_id, |b| b.owner != after.owner);
    if owner_changed && !ctx.is_admin() {
        return Err(ImageError::Forbidden(
            "Only admins may set an image's owner to another project.".into(),
        ));
    }
    if let Some(b) = before {
        let formats_changed =
            b.disk_format != after.disk_format || b.container_format != after.container_format;
        if formats_changed && b.status != ImageStatus::Queued {
            return Err(ImageError::Forbidden(format!(
                "Attributes disk_format and container_format can only be changed while the \
                 image is queued; image {} is {}.",
                b.id,
                b.status.as_str()
            )));
        }
    }
    Ok(())
}

pub fn create(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    new: NewImage,
) -> Result<Image, ImageError> {
    let mut attributes = new.attributes;
    let id = match attributes.remove("id") {
        None | Some(Value::Null) => random::uuid()?,
        Some(Value::String(id)) if fields::is_uuid(&id) => id.to_ascii_lowercase(),
        Some(other) => {
            return Err(ImageError::InvalidField {
                field: "id".into(),
                reason: format!("{other} is not a UUID"),
            })
        }
    };
    let now = Timestamp::now();
    let mut image = Image {
        id,
        name: None,
        status: ImageStatus::Queued,
        // Glance's default since Pike: `shared`, which without members is the owner's alone.
        visibility: ImageVisibility::Shared,
        owner: ctx.project_id.clone(),
        disk_format: None,
        container_format: None,
        min_disk: 0,
        min_ram: 0,
        protected: false,
        size: None,
        virtual_size: None,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        conversion: None,
        properties: BTreeMap::new(),
        tags: BTreeSet::new(),
        members: BTreeMap::new(),
        created_at: now,
        updated_at: now,
    };
    for (k, v) in &attributes {
        fields::set(&mut image, k, v)?;
    }
    fields::check_format_pair(&image)?;
    check_policy(ctx, None, &image)?;
    db.create_image(&image)?;
    Ok(image)
}

pub fn get(db: &dyn ImageRecordStore, ctx: &RequestContext, id: &str) -> Result<Image, ImageError> {
    visible(db, ctx, id)
}

pub fn list(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    q: &ImageQuery,
) -> Result<Vec<Image>, ImageError> {
    let all = db.images()?;
    query::page(ctx, all, q)
}

/// `PATCH`: applies `changes` all or nothing.
pub fn update(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    id: &str,
    changes: &[patch::Change],
) -> Result<Image, ImageError> {
    db.update_image(id, &mut |image| {
        check_modifiable(ctx, image)?;
        let after = patch::apply(image, changes)?;
        check_policy(ctx, Some(image), &after)?;
        *image = after;
        Ok(true)
    })?
    .ok_or_else(|| not_found(id))
}

/// Adds one tag (`PUT /v2/images/{id}/tags/{tag}`); adding a present tag changes nothing.
pub fn add_tag(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    id: &str,
    tag: &str,
) -> Result<(), ImageError> {
    let tag = fields::tag(&Value::String(tag.to_owned()))?;
    db.update_image(id, &mut |image| {
        check_modifiable(ctx, image)?;
        if !image.tags.insert(tag.clone()) {
            return Ok(false);
        }
        if image.tags.len() > fields::MAX_TAGS {
            return Err(ImageError::InvalidField {
                field: "tags".into(),
                reason: format!("more than {} tags", fields::MAX_TAGS),
            });
        }
        Ok(true)
    })?
    .ok_or_else(|| not_found(id))?;
    Ok(())
}

/// Removes one tag; a tag the image does not have is a 404, as in Glance.
pub fn remove_tag(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    id: &str,
    tag: &str,
) -> Result<(), ImageError> {
    db.update_image(id, &mut |image| {
        check_modifiable(ctx, image)?;
        if !image.tags.remove(tag) {
            return Err(ImageError::NotFound(format!("{id} with tag {tag}")));
        }
        Ok(true)
    })?
    .ok_or_else(|| not_found(id))?;
    Ok(())
}

/// Deletes the record, then the data. Refused while protected or in use. An upload in progress
/// notices the record is gone when it finishes and removes what it wrote.
pub fn delete(
    db: &dyn ImageRecordStore,
    images: &ImageStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<(), ImageError> {
    db.delete_unheld_image(id, &mut |image| {
        check_modifiable(ctx, image)?;
        if image.protected {
            return Err(ImageError::Protected(id.to_owned()));
        }
        Ok(())
    })?;
    // A crash between the two leaves an unreferenced file, which `recover` removes.
    images.delete_image(id)?;
    Ok(())
}

/// What a server needs to boot from an image: its raw file and, for direct kernel boot (AMI
/// style, as Nova reads `kernel_id`/`ramdisk_id`), the kernel and ramdisk files and the
/// command line.
#[derive(Debug, Clone, PartialEq)]
pub struct BootSource {
    pub image: Image,
    /// The stored data (raw for disk images).
    pub path: PathBuf,
    pub kernel: Option<BootFile>,
    pub ramdisk: Option<BootFile>,
    /// `os_command_line`, if set.
    pub command_line: Option<String>,
    /// `os_shutdown_timeout` in seconds, if set.
    pub shutdown_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BootFile {
    pub image_id: String,
    pub path: PathBuf,
}

/// Resolves image `id` for booting as `ctx`: it and its kernel and ramdisk (if named) must be
/// visible to `ctx` and active; the kernel must be an `aki` image and the ramdisk an `ari`.
pub fn boot_source(
    db: &dyn ImageRecordStore,
    images: &ImageStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<BootSource, ImageError> {
    let image = active(db, ctx, id)?;
    let part = |key: &str, format: &str| -> Result<Option<BootFile>, ImageError> {
        let Some(part_id) = image.properties.get(key) else {
            return Ok(None);
        };
        let part = active(db, ctx, part_id)?;
        if part.disk_format.as_deref() != Some(format) {
            return Err(ImageError::InvalidField {
                field: key.to_owned(),
                reason: format!(
                    "image {part_id} has disk_format {}, not {format}",
                    part.disk_format.as_deref().unwrap_or("(none)")
                ),
            });
        }
        Ok(Some(BootFile {
            path: images.image_path(part_id)?,
            image_id: part_id.clone(),
        }))
    };
    let shutdown_timeout_secs = image
        .properties
        .get(fields::OS_SHUTDOWN_TIMEOUT)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ImageError::InvalidField {
                    field: fields::OS_SHUTDOWN_TIMEOUT.to_owned(),
                    reason: format!("{v:?} is not a whole number of seconds (0 or more)"),
                })
        })
        .transpose()?;
    Ok(BootSource {
        kernel: part(fields::KERNEL_ID, "aki")?,
        ramdisk: part(fields::RAMDISK_ID, "ari")?,
        command_line: image.properties.get(fields::OS_COMMAND_LINE).cloned(),
        shutdown_timeout_secs,
        path: images.image_path(id)?,
        image,
    })
}

/// Glance's deactivate (its owner's members or an admin, Glance's default policy): an active
/// image keeps its data but is taken out of use; deactivating a deactivated image changes
/// nothing.
pub fn deactivate(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<(), ImageError> {
    set_activation(db, ctx, id, ImageStatus::Active, ImageStatus::Deactivated)
}

/// Glance's reactivate (its owner or an admin): a deactivated image is active again;
/// reactivating an active image changes nothing.
pub fn reactivate(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<(), ImageError> {
    set_activation(db, ctx, id, ImageStatus::Deactivated, ImageStatus::Active)
}

fn set_activation(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    id: &str,
    from: ImageStatus,
    to: ImageStatus,
) -> Result<(), ImageError> {
    let image = visible(db, ctx, id)?;
    let action = if to == ImageStatus::Active {
        "reactivate"
    } else {
        "deactivate"
    };
    if !query::can_modify(ctx, &image) {
        return Err(ImageError::Forbidden(format!(
            "You are not authorized to {action} image {id}: it belongs to another project."
        )));
    }
    // One compare-and-set, so a delete or a concurrent change in between is seen, not undone.
    if image.status == to || db.set_image_status_if(id, &[from, to], to)? {
        return Ok(());
    }
    let now = db.image(id)?.ok_or_else(|| not_found(id))?;
    Err(ImageError::Forbidden(format!(
        "Not allowed to {action} image {id} in status '{}'.",
        now.status.as_str()
    )))
}

fn active(db: &dyn ImageRecordStore, ctx: &RequestContext, id: &str) -> Result<Image, ImageError> {
    let image = visible(db, ctx, id)?;
    if image.status != ImageStatus::Active {
        return Err(ImageError::NotActive(id.to_owned()));
    }
    Ok(image)
}

#[cfg(test)]
mod tests;
