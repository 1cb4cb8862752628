//! The whole guest as one state file holds it, and what `PUT /snapshot/create` and
//! `PUT /snapshot/load` name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::memory::MemoryRegionState;
use super::vcpu::VcpuState;
use super::vm::VmState;
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
