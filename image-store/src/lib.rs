//! `outpost-image-store`: the bytes on disk behind Outpost's Glance images and Cinder volumes.
//!
//! [`ImageStore`] receives image uploads (checksummed, format-checked, qcow2 converted to raw)
//! and [`VolumeStore`] makes raw disk files from them: blank, cloned from an image or a
//! snapshot, thin or thick. Every file appears under its final name only when complete (temp
//! name, fsync, rename); leftovers of a crash are removed when a store is opened. Metadata
//! lives in the control service's database, not here.

pub mod digest;
pub mod format;
pub mod id;
pub mod image;
pub mod partial;
pub mod qemu_img;
pub mod size;
pub mod sparse;
pub mod volume;

pub use digest::{Digests, OS_HASH_ALGO};
pub use format::{ContentFormat, DiskFormat};
pub use image::{ExpectedFormat, ImageError, ImageStore, ImageStoreConfig, StoredImage, Upload};
pub use volume::{
    CloneMethod, DiskKind, Provisioning, Volume, VolumeError, VolumeStore, VolumeStoreConfig,
};

#[cfg(test)]
mod tests {
    /// The control service shares the stores between request tasks and moves uploads into
    /// blocking tasks; this fails to compile if that stops being possible.
    #[test]
    fn stores_are_shareable_and_uploads_movable() {
        fn shared<T: Send + Sync>() {}
        fn movable<T: Send + 'static>() {}
        shared::<super::ImageStore>();
        shared::<super::VolumeStore>();
        movable::<super::Upload>();
        movable::<super::ImageError>();
        movable::<super::VolumeError>();
    }
}
