//! virtio-rng device.
