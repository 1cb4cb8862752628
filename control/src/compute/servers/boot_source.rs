//! What a server boots: the kernel, initramfs and command line for its monitor, and the raw
//! file its root disk is cloned from. [`BootSources`] is the seam where Glance plugs in:
//! today [`LocalImages`] looks the image up in the image store's folder (booting it with the
//! appliance's default kernel), or recognises the default guest's id (`[guest] image_id`),
//! which boots `[guest] kernel`/`initrd` with a root disk cloned from `[guest] rootfs`.
//! With Glance, an image's `kernel_id`, `ramdisk_id` and `os_command_line` properties fill
//! in the rest, and `image_usage` records the server as a consumer.

use super::config::GuestSettings;
use outpost_image_store::ImageStore;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BootSourceError {
    /// Nova's message for an unknown imageRef (a 400 on create).
    #[error("Image {0} could not be found.")]
    ImageNotFound(String),
    #[error("cannot read {path:?}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
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
}

/// Resolves a create request's `imageRef`.
pub trait BootSources: Send + Sync {
    fn resolve(&self, image_ref: &str) -> Result<BootSource, BootSourceError>;
}

/// Images as files in the image store, plus the appliance's default guest.
pub struct LocalImages {
    images: ImageStore,
    guest: GuestSettings,
}

impl LocalImages {
    pub fn new(images: ImageStore, guest: GuestSettings) -> LocalImages {
        LocalImages { images, guest }
    }
}

fn size_of(path: &PathBuf) -> Result<u64, BootSourceError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BootSourceError::Unreadable {
            path: path.clone(),
            source,
        })
}

impl BootSources for LocalImages {
    fn resolve(&self, image_ref: &str) -> Result<BootSource, BootSourceError> {
        let not_found = || BootSourceError::ImageNotFound(image_ref.to_owned());
        let root_source = if image_ref == self.guest.image_id {
            self.guest.rootfs.clone()
        } else {
            // An id the store refuses (a path, say) names no image either.
            match self.images.contains(image_ref) {
                Ok(true) => self.images.image_path(image_ref).map_err(|_| not_found())?,
                _ => return Err(not_found()),
            }
        };
        Ok(BootSource {
            kernel: self.guest.kernel.clone(),
            initrd: self.guest.initrd.clone(),
            boot_args: self.guest.boot_args.clone(),
            root_size: size_of(&root_source)?,
            root_source,
            kernel_id: None,
            ramdisk_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::servers::config::GuestSection;

    #[test]
    fn stored_images_and_the_default_guest_resolve_others_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs.ext4");
        std::fs::write(&rootfs, vec![0u8; 4096]).unwrap();
        let guest = GuestSettings::resolve(&GuestSection {
            kernel: Some("/k".into()),
            rootfs: Some(rootfs.clone()),
            ..GuestSection::default()
        });
        let store = ImageStore::open(tmp.path().join("store")).unwrap();
        std::fs::write(store.images_dir().join("img-1"), vec![1u8; 8192]).unwrap();
        let local = LocalImages::new(store, guest);
        let d = local.resolve("outpost-guest").unwrap();
        assert_eq!(d.root_source, rootfs);
        assert_eq!(d.root_size, 4096);
        assert_eq!(d.kernel, PathBuf::from("/k"));
        let i = local.resolve("img-1").unwrap();
        assert_eq!(i.root_size, 8192);
        assert!(i.root_source.ends_with("images/img-1"));
        for bad in ["nope", "../etc/passwd", ""] {
            assert!(matches!(
                local.resolve(bad),
                Err(BootSourceError::ImageNotFound(_))
            ));
        }
    }
}
