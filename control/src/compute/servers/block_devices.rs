//! Nova's `block_device_mapping_v2` on create, and booting from a volume: what a create
//! request's mappings and `imageRef` mean ([`plan`], checked before anything is written), the
//! create saga's step that makes the new volumes through Cinder's code and attaches them all
//! ([`make_and_attach`]), its undo, and what a delete does with them
//! ([`release_on_delete`]).
//!
//! A volume-backed server's root disk is the volume's own file (`/dev/vda`, no clone), and it
//! claims no local disk (Nova's root_gb = 0). Its kernel, initrd and command line come from
//! the image the volume was copied from, else from the appliance's default guest. Nova's image
//! minimums hold for both kinds: `min_disk` against the flavor's disk (or the root volume's
//! size), `min_ram` against the flavor's memory.

use super::boot_source::{BootSource, BootSourceError};
use super::runner::RunError;
use super::{last_segment, Fleet, ServerError};
use crate::compute::flavors::Flavor;
use crate::compute::servers::store::{BlockDevice, BlockSource, BootConfig, Server};
use crate::context::RequestContext;
use crate::random;
use crate::volume::{self, NewVolume, VolumeError, VolumeStatus};
use std::collections::BTreeSet;

const GIB: u64 = 1 << 30;
/// vdb..vdz beside the root disk.
const MAX_DEVICES: usize = 25;

/// One mapping of a create request, as the API parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockDeviceRequest {
    pub source: RequestedSource,
    /// GiB; required for a new volume from an image or a blank one.
    pub volume_size: Option<i64>,
    /// `boot_index: 0`.
    pub boot: bool,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestedSource {
    Volume(String),
    Image(String),
    Snapshot(String),
    Blank,
}

/// What a create boots and which volumes it has.
#[derive(Debug)]
pub(super) struct Planned {
    /// The server's `image` ("" when volume-backed, as Nova shows it).
    pub image_ref: String,
    pub boot: BootConfig,
}

fn invalid_bdm(reason: impl std::fmt::Display) -> ServerError {
    ServerError::BadRequest(format!("Block Device Mapping is Invalid: {reason}"))
}

fn bytes(gib: i64) -> u64 {
    u64::try_from(gib).unwrap_or(0).saturating_mul(GIB)
}

/// Nova's checks of a flavor against an image's `min_disk`/`min_ram`. `root_gib` is the root
/// volume's size for a volume-backed server, None for a local disk of the flavor's size.
pub(super) fn check_minimums(
    flavor_disk: i64,
    flavor_ram: i64,
    root_gib: Option<i64>,
    min_disk: i64,
    min_ram: i64,
) -> Result<(), ServerError> {
    // Nova checks memory first.
    if min_ram > flavor_ram {
        return Err(ServerError::BadRequest(
            "Flavor's memory is too small for requested image.".into(),
        ));
    }
    match root_gib {
        Some(size) if min_disk > size => {
            return Err(ServerError::BadRequest(format!(
                "Volume is smaller than the minimum size specified in image metadata. Volume \
                 size is {} bytes, minimum size is {} bytes.",
                bytes(size),
                bytes(min_disk)
            )))
        }
        // A flavor disk of 0 means "the image's size" (Nova skips the check then).
        None if flavor_disk > 0 && min_disk > flavor_disk => {
            return Err(ServerError::BadRequest(format!(
                "Flavor's disk is too small for requested image. Flavor disk is {} bytes, \
                 minimum size is {} bytes.",
                bytes(flavor_disk),
                bytes(min_disk)
            )))
        }
        _ => {}
    }
    Ok(())
}

fn config(source: BootSource, root_source: bool) -> BootConfig {
    BootConfig {
        kernel: source.kernel,
        initrd: source.initrd,
        boot_args: source.boot_args,
        root_source: root_source.then_some(source.root_source),
        kernel_id: source.kernel_id,
        ramdisk_id: source.ramdisk_id,
        images: source.images,
        root_volume: None,
        block_devices: Vec::new(),
        shutdown_timeout_secs: source.shutdown_timeout_secs,
    }
}

/// The kernel, initrd and command line of a volume copied from `image_id`: the image's own
/// when it still resolves, else the default guest's. `min_disk`/`min_ram` are the image's.
fn volume_boot(
    fleet: &Fleet,
    ctx: &RequestContext,
    image_id: Option<&str>,
) -> Result<BootSource, ServerError> {
    let sources = fleet.boot_sources();
    if let Some(found) = image_id.and_then(|i| sources.resolve(ctx, i).ok()) {
        return Ok(found);
    }
    Ok(sources.resolve(ctx, sources.default_image_id())?)
}

/// An existing volume a mapping names: visible to the caller and `available`.
fn available_volume(
    fleet: &Fleet,
    ctx: &RequestContext,
    id: &str,
) -> Result<volume::Volume, ServerError> {
    let v = match volume::get(fleet.volume_records(), ctx, id) {
        Ok(v) => v,
        Err(VolumeError::NotFound(_)) => {
            return Err(invalid_bdm(format_args!("failed to get volume {id}.")))
        }
        Err(e) => return Err(e.into()),
    };
    if v.status != VolumeStatus::Available || v.attachment.is_some() {
        return Err(ServerError::BadRequest(format!(
            "Invalid volume: volume '{id}' status must be 'available'. Currently in '{}'",
            v.status.as_str()
        )));
    }
    Ok(v)
}

fn metadata_int(v: &volume::Volume, key: &str) -> i64 {
    v.image_metadata
        .get(key)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Checks a create's `imageRef` and mappings against what exists, and decides what the
/// server boots; nothing is written.
pub(super) fn plan(
    fleet: &Fleet,
    ctx: &RequestContext,
    flavor: &Flavor,
    image_ref: Option<&str>,
    requests: &[BlockDeviceRequest],
) -> Result<Planned, ServerError> {
    let image_ref = image_ref.map(last_segment).filter(|i| !i.is_empty());
    let boots = requests.iter().filter(|r| r.boot).count();
    // Nova maps imageRef to a boot_index 0 device of its own, so a second one is a clash.
    if boots + usize::from(image_ref.is_some()) > 1 {
        return Err(invalid_bdm(
            "Boot sequence for the instance and image/block device mapping combination is not \
             valid.",
        ));
    }
    if requests.len() > MAX_DEVICES {
        return Err(invalid_bdm(format_args!(
            "at most {MAX_DEVICES} volumes can be given to one server."
        )));
    }
    let mut devices = Vec::with_capacity(requests.len());
    let mut named = BTreeSet::new();
    let mut root: Option<(BootSource, i64)> = None;
    for r in requests {
        let (source, volume_id, size_gib) = match &r.source {
            RequestedSource::Volume(id) => {
                if !named.insert(id.clone()) {
                    return Err(invalid_bdm(format_args!("volume {id} is given twice.")));
                }
                let v = available_volume(fleet, ctx, id)?;
                if r.boot {
                    let mut b = volume_boot(fleet, ctx, v.image_id.as_deref())?;
                    b.min_disk = metadata_int(&v, "min_disk");
                    b.min_ram = metadata_int(&v, "min_ram");
                    root = Some((b, v.size));
                }
                (BlockSource::Volume, v.id, None)
            }
            RequestedSource::Image(image) => {
                let image = last_segment(image).to_owned();
                let size = r.volume_size.ok_or_else(|| {
                    invalid_bdm(
                        "Images with destination_type 'volume' need to have a non-zero size \
                         specified",
                    )
                })?;
                let b = fleet.boot_sources().resolve(ctx, &image)?;
                if b.images.first() != Some(&image) {
                    // The default guest's id is no Glance image a volume can be copied from.
                    return Err(BootSourceError::ImageNotFound(image).into());
                }
                if b.root_size > bytes(size) {
                    return Err(invalid_bdm(format_args!(
                        "Size of image {image} ({} bytes) is larger than the volume size \
                         ({size} GiB).",
                        b.root_size
                    )));
                }
                if r.boot {
                    root = Some((b, size));
                } else {
                    check_minimums(0, 0, Some(size), b.min_disk, 0)?;
                }
                (
                    BlockSource::Image { image_id: image },
                    random::uuid()?,
                    Some(size),
                )
            }
            RequestedSource::Snapshot(snap) => {
                let s =
                    volume::snapshots::get(fleet.volume_records(), ctx, snap).map_err(
                        |e| match e {
                            VolumeError::SnapshotNotFound(_) => {
                                invalid_bdm(format_args!("failed to get snapshot {snap}."))
                            }
                            other => other.into(),
                        },
                    )?;
                let size = r.volume_size.unwrap_or(s.size).max(s.size);
                if r.boot {
                    let parent = volume::get(fleet.volume_records(), ctx, &s.volume_id).ok();
                    let mut b = volume_boot(
                        fleet,
                        ctx,
                        parent.as_ref().and_then(|p| p.image_id.as_deref()),
                    )?;
                    b.min_disk = parent.as_ref().map_or(0, |p| metadata_int(p, "min_disk"));
                    b.min_ram = parent.as_ref().map_or(0, |p| metadata_int(p, "min_ram"));
                    root = Some((b, size));
                }
                (
                    BlockSource::Snapshot { snapshot_id: s.id },
                    random::uuid()?,
                    Some(size),
                )
            }
            RequestedSource::Blank => {
                if r.boot {
                    return Err(invalid_bdm(
                        "Boot sequence for the instance and image/block device mapping \
                         combination is not valid.",
                    ));
                }
                let size = r.volume_size.ok_or_else(|| {
                    invalid_bdm("a blank volume needs a volume_size of at least 1 GiB.")
                })?;
                (BlockSource::Blank, random::uuid()?, Some(size))
            }
        };
        if let Some(size) = size_gib {
            volume::parse_size("volume_size", &serde_json::json!(size)).map_err(invalid_bdm)?;
        }
        devices.push(BlockDevice {
            volume_id,
            source,
            size_gib,
            boot: r.boot,
            delete_on_termination: r.delete_on_termination,
        });
    }
    let (image_ref, mut boot) = match (image_ref, root) {
        (Some(image), _) => {
            let source = fleet.boot_sources().resolve(ctx, image)?;
            let flavor_bytes = bytes(flavor.disk);
            if flavor.disk > 0 && source.root_size > flavor_bytes {
                return Err(ServerError::BadRequest(format!(
                    "Flavor's disk is too small for requested image. Flavor disk is \
                     {flavor_bytes} bytes, image is {} bytes.",
                    source.root_size
                )));
            }
            check_minimums(
                flavor.disk,
                flavor.ram,
                None,
                source.min_disk,
                source.min_ram,
            )?;
            (image.to_owned(), config(source, true))
        }
        (None, Some((source, size))) => {
            check_minimums(
                flavor.disk,
                flavor.ram,
                Some(size),
                source.min_disk,
                source.min_ram,
            )?;
            let mut boot = config(source, false);
            // The volume holds the image it is copied from; the server holds only the kernel
            // and ramdisk images it boots.
            boot.images = boot
                .kernel_id
                .iter()
                .chain(boot.ramdisk_id.iter())
                .cloned()
                .collect();
            boot.root_volume = devices.iter().find(|d| d.boot).map(|d| d.volume_id.clone());
            (String::new(), boot)
        }
        (None, None) => {
            return Err(ServerError::BadRequest(
                "imageRef is required unless the server boots from a volume.".into(),
            ))
        }
    };
    boot.block_devices = devices;
    Ok(Planned { image_ref, boot })
}

/// The box that holds the existing volumes and snapshots a create's mappings name, with the
/// first of them named ("volume V"): the server must run there, since a volume is attached
/// only on its home box (new volumes are made on the server's box). None when they name none;
/// a conflict when they are on different boxes, since a server runs on one.
pub(super) fn home_of(
    fleet: &Fleet,
    ctx: &RequestContext,
    requests: &[BlockDeviceRequest],
) -> Result<Option<(String, String)>, ServerError> {
    let mut found: Option<(String, String)> = None;
    for r in requests {
        // A volume or snapshot the caller cannot see is Nova's 400 "Block Device Mapping is
        // Invalid", as the mappings' own check (`plan`) says it.
        let (found_home, what) = match &r.source {
            RequestedSource::Volume(id) => (
                Ok(available_volume(fleet, ctx, id)?.home),
                format!("volume {id}"),
            ),
            RequestedSource::Snapshot(id) => (
                volume::snapshots::get(fleet.volume_records(), ctx, id).map(|s| s.home),
                format!("snapshot {id}"),
            ),
            RequestedSource::Image(_) | RequestedSource::Blank => continue,
        };
        let home = match found_home {
            Ok(home) => home,
            Err(volume::VolumeError::NotFound(_) | volume::VolumeError::SnapshotNotFound(_)) => {
                return Err(invalid_bdm(format_args!("failed to get {what}.")));
            }
            Err(e) => return Err(e.into()),
        };
        match &found {
            // Recorded by a box alone before homes were: that box's own.
            _ if home.is_empty() => {}
            None => found = Some((home, what)),
            Some((first, named)) if *first != home => {
                return Err(ServerError::Conflict(format!(
                    "{named} is on box {first} and {what} on box {home}: a server runs on one \
                     box, and a volume attaches only to a server on its own box."
                )));
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// The create saga's volume step: makes each new volume (in the saga's thread, under the id
/// recorded in the server's row) and attaches every volume, the root one as `/dev/vda`.
pub(super) fn make_and_attach(fleet: &Fleet, s: &Server) -> Result<(), RunError> {
    let stores = fleet.stores();
    let ctx = super::owner(s);
    for d in &s.boot.block_devices {
        let exists = volume::find(fleet.volume_records(), &d.volume_id)?.is_some();
        if d.source.is_new() && !exists {
            let (image_ref, snapshot_id) = match &d.source {
                BlockSource::Image { image_id } => (Some(image_id.clone()), None),
                BlockSource::Snapshot { snapshot_id } => (None, Some(snapshot_id.clone())),
                BlockSource::Blank | BlockSource::Volume => (None, None),
            };
            let new = NewVolume {
                size: d.size_gib.map(serde_json::Value::from),
                name: Some(format!(
                    "{}-{}",
                    s.name.chars().take(200).collect::<String>(),
                    if d.boot { "root" } else { "data" }
                )),
                image_ref,
                snapshot_id,
                ..NewVolume::default()
            };
            volume::create_now(&stores, &ctx, new, &d.volume_id)?;
        }
        let attached = volume::attachments_of_server(fleet.volume_records(), &s.id)?;
        if attached.iter().any(|a| a.volume_id == d.volume_id) {
            continue;
        }
        let device = if d.boot {
            Some("/dev/vda".to_owned())
        } else {
            super::volumes::next_device(&attached)
        };
        volume::attach(
            fleet.volume_records(),
            &d.volume_id,
            &s.id,
            device.as_deref(),
        )?;
    }
    Ok(())
}

/// Undoes [`make_and_attach`]: every volume is detached, and those the saga made are
/// deleted (a half-made one is in `error` by now, which may be deleted).
pub(super) fn undo(fleet: &Fleet, s: &Server) -> Result<(), RunError> {
    super::volumes::detach_all(fleet, &s.id)?;
    let stores = fleet.stores();
    let ctx = super::owner(s);
    for d in s.boot.block_devices.iter().filter(|d| d.source.is_new()) {
        match volume::delete(&stores, &ctx, &d.volume_id) {
            Ok(()) | Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A delete's part: every volume is detached (`available` again), and those the create
/// request gave `delete_on_termination` are deleted, each detached and marked `deleting` in
/// one transaction so a crash cannot orphan it. A volume that cannot be deleted (it has
/// snapshots) is left, as Nova leaves it, and logged.
pub(super) fn release_on_delete(fleet: &Fleet, s: &Server) -> Result<(), RunError> {
    let stores = fleet.stores();
    for a in volume::attachments_of_server(fleet.volume_records(), &s.id)? {
        if !s.boot.delete_on_termination(&a.volume_id) {
            volume::detach(fleet.volume_records(), &a.volume_id, &s.id)?;
            continue;
        }
        match volume::detach_and_delete(&stores, &a.volume_id, &s.id) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "server {}: volume {} has snapshots; it is detached, not deleted",
                s.id,
                a.volume_id
            ),
            Err(e) => tracing::warn!(
                "server {}: volume {} is left (delete_on_termination): {e}",
                s.id,
                a.volume_id
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_minimums_are_checked_as_nova_checks_them() {
        assert!(check_minimums(1, 256, None, 1, 256).is_ok());
        // A flavor disk of 0 takes the image's size: no disk check.
        assert!(check_minimums(0, 256, None, 5, 0).is_ok());
        let e = check_minimums(1, 256, None, 2, 0).unwrap_err().to_string();
        assert!(
            e.starts_with("Flavor's disk is too small for requested image."),
            "{e}"
        );
        assert!(
            e.contains("1073741824 bytes") && e.contains("2147483648 bytes"),
            "{e}"
        );
        assert_eq!(
            check_minimums(1, 128, None, 0, 256)
                .unwrap_err()
                .to_string(),
            "Flavor's memory is too small for requested image."
        );
        // Volume-backed: the volume's size counts, not the flavor's disk.
        assert!(check_minimums(0, 256, Some(2), 2, 0).is_ok());
        let e = check_minimums(10, 256, Some(1), 2, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Volume is smaller than the minimum size"),
            "{e}"
        );
    }
}
