//! The whole guest as one state file holds it, and what `PUT /snapshot/create` and
//! `PUT /snapshot/load` name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::memory::MemoryRegionState;
use super::vcpu::VcpuState;
use super::vm::VmState;
use crate::config::VmConfig;
use crate::devices::legacy::ged::GedState;
use crate::devices::legacy::i8042::I8042State;
use crate::devices::legacy::serial::SerialConsoleState;
use crate::devices::virtio::mmio::MmioTransportState;

/// Everything but guest RAM. The configuration travels as JSON: its serde shape (optional
/// fields skipped, Firecracker's names) is made for JSON and does not round-trip through
/// postcard, and it is what a restore reopens the disks and taps from.
#[derive(Debug, Serialize, Deserialize)]
pub struct GuestSnapshot {
    pub config_json: String,
    pub vm: VmState,
    /// In vCPU index order.
    pub vcpus: Vec<VcpuState>,
    pub memory: Vec<MemoryRegionState>,
    pub serial: SerialConsoleState,
    pub i8042: I8042State,
    /// Power-button presses the guest has not read yet.
    pub ged: GedState,
    /// In attach order, which is the order of their MMIO windows and GSIs.
    pub transports: Vec<MmioTransportState>,
}

/// Firecracker's `SnapshotCreateParams` (`PUT /snapshot/create`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    /// Only `Full`: every page is written (no dirty-page tracking yet).
    #[serde(default)]
    pub snapshot_type: SnapshotType,
    pub snapshot_path: PathBuf,
    pub mem_file_path: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotType {
    #[default]
    Full,
}

/// Firecracker's `SnapshotLoadParams` (`PUT /snapshot/load`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoadParams {
    pub snapshot_path: PathBuf,
    pub mem_backend: MemBackend,
    #[serde(default)]
    pub resume_vm: bool,
    /// Firecracker's: another tap for an interface of the snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_overrides: Vec<NetworkOverride>,
    /// Ours: another backing file for a drive of the snapshot (a copy of the disk as it was
    /// at the snapshot, of the same size: the guest knows its capacity and its data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drive_overrides: Vec<DriveOverride>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveOverride {
    pub drive_id: String,
    pub path_on_host: PathBuf,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("network_overrides names interface {0:?}, which the snapshot's guest does not have")]
    UnknownInterface(String),
    #[error("drive_overrides names drive {0:?}, which the snapshot's guest does not have")]
    UnknownDrive(String),
}

impl SnapshotLoadParams {
    /// Points the snapshot's configuration at the taps and files the load names instead.
    pub fn apply_overrides(&self, config: &mut VmConfig) -> Result<(), OverrideError> {
        for o in &self.network_overrides {
            let iface = config
                .network_interfaces
                .iter_mut()
                .find(|i| i.iface_id == o.iface_id)
                .ok_or_else(|| OverrideError::UnknownInterface(o.iface_id.clone()))?;
            iface.host_dev_name.clone_from(&o.host_dev_name);
        }
        for o in &self.drive_overrides {
            let drive = config
                .drives
                .iter_mut()
                .find(|d| d.drive_id == o.drive_id)
                .ok_or_else(|| OverrideError::UnknownDrive(o.drive_id.clone()))?;
            drive.path_on_host.clone_from(&o.path_on_host);
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemBackend {
    pub backend_type: MemBackendType,
    pub backend_path: PathBuf,
}

/// Only `File`: the memory file is mapped privately (Firecracker's `Uffd` is not offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemBackendType {
    File,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(overrides: serde_json::Value) -> SnapshotLoadParams {
        let mut body = json!({
            "snapshot_path": "/s/state",
            "mem_backend": {"backend_type": "File", "backend_path": "/s/mem"},
        });
        if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
            b.extend(o.clone());
        }
        serde_json::from_value(body).unwrap()
    }

    fn config() -> VmConfig {
        serde_json::from_value(json!({
            "drives": [{"drive_id": "rootfs", "path_on_host": "/old/root.img",
                        "is_root_device": true, "is_read_only": false}],
            "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap-old"}],
        }))
        .unwrap()
    }

    #[test]
    fn overrides_replace_only_the_named_tap_and_file() {
        let mut c = config();
        let params = load(json!({
            "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap-new"}],
            "drive_overrides": [{"drive_id": "rootfs", "path_on_host": "/new/root.img"}],
            "resume_vm": true
        }));
        params.apply_overrides(&mut c).unwrap();
        assert_eq!(c.network_interfaces[0].host_dev_name, "tap-new");
        assert_eq!(c.drives[0].path_on_host, PathBuf::from("/new/root.img"));
        assert!(c.drives[0].is_root_device);
        // Without overrides the snapshot's configuration stands.
        let mut c = config();
        load(json!({})).apply_overrides(&mut c).unwrap();
        assert_eq!(c, config());
    }

    #[test]
    fn an_override_for_something_the_guest_lacks_is_refused() {
        let mut c = config();
        let err = load(json!({
            "network_overrides": [{"iface_id": "eth9", "host_dev_name": "tap-new"}]
        }))
        .apply_overrides(&mut c)
        .unwrap_err();
        assert_eq!(err, OverrideError::UnknownInterface("eth9".into()));
        let err = load(json!({
            "drive_overrides": [{"drive_id": "scratch", "path_on_host": "/x"}]
        }))
        .apply_overrides(&mut c)
        .unwrap_err();
        assert_eq!(err, OverrideError::UnknownDrive("scratch".into()));
        // A typo in a field is refused, not ignored.
        let body = json!({
            "snapshot_path": "/s/state",
            "mem_backend": {"backend_type": "File", "backend_path": "/s/mem"},
            "network_overrides": [{"iface": "eth0", "host_dev_name": "t"}]
        });
        assert!(serde_json::from_value::<SnapshotLoadParams>(body).is_err());
    }
}
