//! What a server boots: the kernel, initramfs and command line for its monitor, the raw file
//! its root disk is cloned from, and the Glance images it holds while it exists.
//! [`GlanceImages`] resolves an `imageRef` through [`crate::image::boot_source`] (visibility
//! as the caller sees it): an image with `kernel_id`/`ramdisk_id`/`os_command_line` boots
//! those directly, a plain disk image boots the appliance's default guest kernel, initrd and
//! command line (`[guest]`) with the image as its root disk. The default guest's own id
//! (`[guest] image_id`, "outpost-guest") is not a Glance image: it boots `[guest] rootfs`
//! and holds no image, so a fresh appliance can run a server before anything is uploaded.

use super::config::GuestSettings;
use crate::context::RequestContext;
use crate::image::{self, ImageError};
use crate::store::StorageError;
use outpost_image_store::ImageStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BootSourceError {
    /// Nova's message for an unknown imageRef (a 400 on create).
    #[error("Image {0} could not be found.")]
    ImageNotFound(String),
    /// The image exists but cannot boot a server (not active, a kernel or ramdisk image,
    /// bad `kernel_id`/`ramdisk_id`): a 400 with Glance's reason.
    #[error("Image {id} cannot boot a server: {reason}")]
    Unusable { id: String, reason: String },
    #[error("cannot read {path:?}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Everything a server needs from its image.
#[derive(Debug, Clone, PartialEq)]
pub struct BootSource {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub boot_args: String,
    /// The raw file the root disk is cloned from.
    pub root_source: PathBuf,
    /// Its size in bytes: the smallest root disk that holds it.
    pub root_size: u64,
    pub kernel_id: Option<String>,
    pub ramdisk_id: Option<String>,
    /// The Glance images the server uses (image, kernel, ramdisk), recorded in
    /// `image_usage` for the server's life.
    pub images: Vec<String>,
    /// Glance's `min_disk` (GiB) and `min_ram` (MB) of the image; 0 when not set.
    pub min_disk: i64,
    pub min_ram: i64,
    /// The image's `os_shutdown_timeout`, which wins over `[compute] shutdown_timeout_secs`.
    pub shutdown_timeout_secs: Option<u64>,
}

/// Resolves a create request's `imageRef` as the caller sees it.
pub trait BootSources: Send + Sync {
    fn resolve(&self, ctx: &RequestContext, image_ref: &str)
        -> Result<BootSource, BootSourceError>;
    /// The id that boots the appliance's default guest; its kernel, initrd and command line
    /// also boot a volume that came from no image.
    fn default_image_id(&self) -> &str;
}

/// Glance images, plus the appliance's default guest.
pub struct GlanceImages {
    records: Arc<dyn image::ImageRecordStore>,
    images: Arc<ImageStore>,
    guest: GuestSettings,
}

impl GlanceImages {
    pub fn new(
        records: Arc<dyn image::ImageRecordStore>,
        images: Arc<ImageStore>,
        guest: GuestSettings,
    ) -> GlanceImages {
        GlanceImages {
            records,
            images,
            guest,
        }
    }
}

fn size_of(path: &Path) -> Result<u64, BootSourceError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BootSourceError::Unreadable {
            path: path.to_owned(),
            source,
        })
}

/// Disk formats that are parts of a direct kernel boot, not a root disk.
const NOT_ROOT_DISKS: &[&str] = &["aki", "ari"];

impl BootSources for GlanceImages {
    fn resolve(
        &self,
        ctx: &RequestContext,
        image_ref: &str,
    ) -> Result<BootSource, BootSourceError> {
        if image_ref == self.guest.image_id {
            return Ok(BootSource {
                kernel: self.guest.kernel.clone(),
                initrd: self.guest.initrd.clone(),
                boot_args: self.guest.boot_args.clone(),
                root_size: size_of(&self.guest.rootfs)?,
                root_source: self.guest.rootfs.clone(),
                kernel_id: None,
                ramdisk_id: None,
                images: Vec::new(),
                min_disk: 0,
                min_ram: 0,
                shutdown_timeout_secs: None,
            });
        }
        let unusable = |reason: String| BootSourceError::Unusable {
            id: image_ref.to_owned(),
            reason,
        };
        let b = match image::boot_source(self.records.as_ref(), &self.images, ctx, image_ref) {
            Ok(b) => b,
            // Not visible is not found, as in Glance.
            Err(ImageError::NotFound(_) | ImageError::Data(_)) => {
                return Err(BootSourceError::ImageNotFound(image_ref.to_owned()))
            }
            Err(ImageError::Storage(e)) => return Err(e.into()),
            Err(e) => return Err(unusable(e.to_string())),
        };
        if let Some(format) = b.image.disk_format.as_deref() {
            if NOT_ROOT_DISKS.contains(&format) {
                return Err(unusable(format!(
                    "its disk_format is {format}, which is a kernel or ramdisk, not a disk"
                )));
            }
        }
        // An image's own kernel comes with its own ramdisk (or none), never the default one.
        let (kernel, initrd) = match &b.kernel {
            Some(k) => (k.path.clone(), b.ramdisk.as_ref().map(|r| r.path.clone())),
            None => (
                self.guest.kernel.clone(),
                match &b.ramdisk {
                    Some(r) => Some(r.path.clone()),
                    None => self.guest.initrd.clone(),
                },
            ),
        };
        let kernel_id = b.kernel.as_ref().map(|k| k.image_id.clone());
        let ramdisk_id = b.ramdisk.as_ref().map(|r| r.image_id.clone());
        let images = std::iter::once(b.image.id.clone())
            .chain(kernel_id.clone())
            .chain(ramdisk_id.clone())
            .collect();
        Ok(BootSource {
            kernel,
            initrd,
            boot_args: b
                .command_line
                .unwrap_or_else(|| self.guest.boot_args.clone()),
            root_size: size_of(&b.path)?,
            root_source: b.path,
            kernel_id,
            ramdisk_id,
            images,
            min_disk: b.image.min_disk,
            min_ram: b.image.min_ram,
            shutdown_timeout_secs: b.shutdown_timeout_secs,
        })
    }

    fn default_image_id(&self) -> &str {
        &self.guest.image_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::servers::config::GuestSection;
    use crate::identity::testing::fixture;
    use crate::image::{NewImage, UploadChecks};
    use serde_json::json;

    #[test]
    fn glance_images_and_the_default_guest_resolve_as_the_caller_sees_them() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs.ext4");
        std::fs::write(&rootfs, vec![0u8; 4096]).unwrap();
        let guest = GuestSettings::resolve(&GuestSection {
            kernel: Some("/k".into()),
            initrd: Some("/i".into()),
            boot_args: Some("console=ttyS0".into()),
            rootfs: Some(rootfs.clone()),
            ..GuestSection::default()
        });
        let f = fixture();
        let store = Arc::new(ImageStore::open(tmp.path().join("store")).unwrap());
        let mk = |ctx: &RequestContext, attrs: serde_json::Value, size: usize| {
            let i = image::create(
                &f.db,
                ctx,
                NewImage {
                    attributes: attrs.as_object().unwrap().clone(),
                },
            )
            .unwrap();
            let data = vec![7u8; size];
            image::upload(
                &f.db,
                &store,
                &image::CopyRule::alone("box"),
                ctx,
                &i.id,
                &mut &data[..],
                UploadChecks::default(),
            )
            .unwrap();
            i.id
        };
        // Glance: aki/ari images carry the same container_format.
        let formats = |disk: &str, container: &str| json!({"disk_format": disk, "container_format": container});
        let plain = mk(&f.member, formats("raw", "bare"), 8192);
        let kernel = mk(&f.member, formats("aki", "aki"), 512);
        let ramdisk = mk(&f.member, formats("ari", "ari"), 512);
        let direct = mk(
            &f.member,
            json!({"disk_format": "raw", "container_format": "bare",
                   "kernel_id": kernel, "ramdisk_id": ramdisk,
                   "os_command_line": "root=/dev/vda"}),
            4096,
        );
        let private = mk(
            &f.admin,
            json!({"disk_format": "raw", "container_format": "bare", "visibility": "private"}),
            4096,
        );
        let patient = mk(
            &f.member,
            json!({"disk_format": "raw", "container_format": "bare",
                   "os_shutdown_timeout": "5"}),
            4096,
        );
        let garbled = mk(
            &f.member,
            json!({"disk_format": "raw", "container_format": "bare",
                   "os_shutdown_timeout": "soon"}),
            4096,
        );
        let glance = GlanceImages::new(Arc::new(f.db.clone()), store.clone(), guest);

        let d = glance.resolve(&f.member, "outpost-guest").unwrap();
        assert_eq!((d.root_source, d.root_size), (rootfs, 4096));
        assert!(d.images.is_empty());

        let p = glance.resolve(&f.member, &plain).unwrap();
        assert_eq!(p.root_source, store.image_path(&plain).unwrap());
        assert_eq!(p.root_size, 8192);
        assert_eq!(
            (p.kernel, p.initrd, p.boot_args.as_str()),
            ("/k".into(), Some("/i".into()), "console=ttyS0")
        );
        assert_eq!(p.images, vec![plain.clone()]);

        let k = glance.resolve(&f.member, &direct).unwrap();
        assert_eq!(k.kernel, store.image_path(&kernel).unwrap());
        assert_eq!(k.initrd, Some(store.image_path(&ramdisk).unwrap()));
        assert_eq!(k.boot_args, "root=/dev/vda");
        assert_eq!(k.kernel_id.as_deref(), Some(kernel.as_str()));
        assert_eq!(k.images, vec![direct, kernel.clone(), ramdisk]);

        assert!(matches!(
            glance.resolve(&f.member, &kernel),
            Err(BootSourceError::Unusable { .. })
        ));

        // os_shutdown_timeout: the image's own clean-shutdown time, or a 400 naming it.
        assert_eq!(p.shutdown_timeout_secs, None);
        let t = glance.resolve(&f.member, &patient).unwrap();
        assert_eq!(t.shutdown_timeout_secs, Some(5));
        match glance.resolve(&f.member, &garbled) {
            Err(BootSourceError::Unusable { reason, .. }) => {
                assert!(reason.contains("os_shutdown_timeout"), "{reason}")
            }
            other => panic!("a garbled os_shutdown_timeout: {other:?}"),
        }
        // Another project's private image is as unknown as a made-up id or a path.
        for bad in [private.as_str(), "nope", "../etc/passwd", ""] {
            assert!(matches!(
                glance.resolve(&f.member, bad),
                Err(BootSourceError::ImageNotFound(_))
            ));
        }
        assert!(glance.resolve(&f.admin, &private).is_ok());
    }
}
