//! Emulated devices: legacy PC pieces (serial, i8042, ACPI power management) and virtio.

pub mod bus;
pub mod legacy;
pub mod virtio;
