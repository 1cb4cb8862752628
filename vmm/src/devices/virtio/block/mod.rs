//! virtio-block device.
