//! The servers' door to their state: the server records and the progress rows of their
//! multi-step operations. Everything in compute that reads or writes a server goes through
//! [`ServerStore`]; SQLite implements it for one box (`storage::servers`), and a cluster's
//! store implements the same trait.
//!
//! Every method is atomic on its own. A read-modify-write is one call ([`ServerStore::update`])
//! so that a store without locks can run it as a compare-and-swap on the record's revision,
//! running `change` again on the newer copy when it lost the race.

use crate::quota::{QuotaError, ServerQuota};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[cfg(test)]
pub(crate) mod conformance;

/// Nova's `vm_state`: what the server is, between operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Building,
    Active,
    Stopped,
    /// A resize is done and waits for confirmResize or revertResize.
    Resized,
    Error,
}

/// Nova's `task_state`: the operation under way, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Scheduling,
    BlockDeviceMapping,
    Networking,
    Spawning,
    PoweringOff,
    PoweringOn,
    Rebooting,
    RebootingHard,
    ResizePrep,
    ResizeMigrating,
    ResizeMigrated,
    ResizeFinish,
    ResizeReverting,
    ResizeConfirming,
    /// Evacuated: being built again on the box it moved to (Nova's evacuate sets it).
    Rebuilding,
    Deleting,
}

/// Nova's `power_state` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    NoState = 0,
    Running = 1,
    Shutdown = 4,
    Crashed = 6,
}

macro_rules! spelled {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
            pub fn parse(s: &str) -> Option<$ty> {
                match s { $($text => Some($ty::$variant),)* _ => None }
            }
        }
    };
}

spelled!(VmState {
    Building => "building",
    Active => "active",
    Stopped => "stopped",
    Resized => "resized",
    Error => "error",
});

spelled!(TaskState {
    Scheduling => "scheduling",
    BlockDeviceMapping => "block_device_mapping",
    Networking => "networking",
    Spawning => "spawning",
    PoweringOff => "powering-off",
    PoweringOn => "powering-on",
    Rebooting => "rebooting",
    RebootingHard => "rebooting_hard",
    ResizePrep => "resize_prep",
    ResizeMigrating => "resize_migrating",
    ResizeMigrated => "resize_migrated",
    ResizeFinish => "resize_finish",
    ResizeReverting => "resize_reverting",
    ResizeConfirming => "resize_confirming",
    Rebuilding => "rebuilding",
    Deleting => "deleting",
});

impl PowerState {
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(c: i64) -> Option<PowerState> {
        Some(match c {
            0 => PowerState::NoState,
            1 => PowerState::Running,
            4 => PowerState::Shutdown,
            6 => PowerState::Crashed,
            _ => return None,
        })
    }
}

/// The flavor a server was built (or resized) with, copied so later flavor changes or
/// deletion do not change the server (Nova keeps the same copy in `instance_extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlavorSnapshot {
    pub id: String,
    pub name: String,
    pub vcpus: i64,
    pub ram: i64,
    pub disk: i64,
    pub ephemeral: i64,
    pub swap: i64,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
}

/// How the server's monitor is configured: everything a (re)start needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub boot_args: String,
    /// The raw file the root disk is cloned from (an image, or the default guest's rootfs).
    pub root_source: Option<PathBuf>,
    /// Glance ids of the kernel and ramdisk, when they came from image properties.
    pub kernel_id: Option<String>,
    pub ramdisk_id: Option<String>,
    /// The Glance images the server holds (`image_usage`) from its create saga's claim to
    /// its delete: the image, kernel and ramdisk; empty for the default guest.
    #[serde(default)]
    pub images: Vec<String>,
    /// Booted from a volume: the volume whose file is the root disk (`/dev/vda`, no clone);
    /// `root_source` is None then.
    #[serde(default)]
    pub root_volume: Option<String>,
    /// The volumes `block_device_mapping_v2` asked for, in request order. Ids of volumes
    /// the create saga makes are chosen when the request is accepted, so an interrupted
    /// create can find (and undo) a half-made volume.
    #[serde(default)]
    pub block_devices: Vec<BlockDevice>,
    /// The image's `os_shutdown_timeout` (seconds) as it was at create, as Nova keeps image
    /// properties with the instance; None: `[compute] shutdown_timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_secs: Option<u64>,
}

impl BootConfig {
    /// Nova's volume-backed server: its root disk is a volume, and it claims no local disk.
    pub fn volume_backed(&self) -> bool {
        self.root_volume.is_some()
    }

    /// Whether deleting the server deletes volume `volume_id` (it was made or named by the
    /// create request with `delete_on_termination`).
    pub fn delete_on_termination(&self, volume_id: &str) -> bool {
        self.block_devices
            .iter()
            .any(|b| b.volume_id == volume_id && b.delete_on_termination)
    }
}

/// One volume of a `block_device_mapping_v2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub volume_id: String,
    pub source: BlockSource,
    /// GiB of a volume to be made (image or blank source).
    pub size_gib: Option<i64>,
    /// `boot_index: 0`: the root disk.
    pub boot: bool,
    pub delete_on_termination: bool,
}

/// Where a block device's volume comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockSource {
    /// An existing volume, attached as it is.
    Volume,
    /// A new volume copied from this Glance image.
    Image { image_id: String },
    /// A new volume copied from this volume snapshot.
    Snapshot { snapshot_id: String },
    /// A new empty volume.
    Blank,
}

impl BlockSource {
    /// The create saga made this volume (and its undo removes it).
    pub fn is_new(&self) -> bool {
        !matches!(self, BlockSource::Volume)
    }
}

/// Nova's instance fault: why the server is in ERROR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFault {
    pub code: u16,
    pub message: String,
    /// The whole story (admins see it); `message` is its first 255 characters.
    pub details: Option<String>,
    /// Microseconds since the epoch.
    pub created: i64,
}

/// Which process runs the server's monitor: the supervising shim's pid, its start time in
/// clock ticks since boot (field 22 of `/proc/<pid>/stat`) and the host's boot id, which
/// together recognise it after outpostd restarts (a pid alone may have been reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorRecord {
    pub pid: i32,
    pub start_time: u64,
    pub boot_id: String,
}

/// Where a create request asked its server to go (Nova's request spec): read by the
/// scheduler when the server is placed, which may be after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// `availability_zone`: only boxes of this zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// The host an admin asked for (2.74 `host`, or the `zone:host` form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Scheduler hint `same_host`: servers to share a box with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_host: Vec<String>,
    /// Scheduler hint `different_host`: servers not to share a box with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub different_host: Vec<String>,
    /// Scheduler hint `group`: the server group the server joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The box that holds the existing volumes (or snapshots) the server is given: it runs
    /// there, since a volume attaches only on its own box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_home: Option<String>,
}

/// A resize from `old_flavor` to `new_flavor`, kept until confirmed or reverted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResizeRecord {
    pub old_flavor: FlavorSnapshot,
    pub new_flavor: FlavorSnapshot,
    /// Whether the server ran before the resize (it runs again after, as in Nova).
    pub was_running: bool,
    /// The root disk's size before the resize, to restore on revert.
    pub old_disk_bytes: u64,
    /// The claims: the migration holds the old size, the server the new one.
    pub claims: Option<outpost_resources::Resize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub seq: i64,
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub project_id: String,
    pub user_id: String,
    pub flavor: FlavorSnapshot,
    /// The image the server was booted from, as the request named it ("" when booted from
    /// a volume).
    pub image_ref: String,
    pub boot: BootConfig,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    pub host: Option<String>,
    pub fault: Option<ServerFault>,
    pub metadata: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub key_name: Option<String>,
    /// The public key of `key_name` as it was when the server was made (Nova's `key_data`):
    /// what the guest is given, even if the pair is deleted or replaced later.
    pub key_data: Option<String>,
    /// The admin password the create answered with (Nova's `adminPass`), kept for the guest
    /// alone: the metadata service and the config drive give it as `admin_pass`; no API view
    /// shows it.
    pub admin_pass: Option<String>,
    pub config_drive: String,
    pub disk_config: String,
    /// What the request asked for in `networks`, kept for when networking arrives.
    pub networks: serde_json::Value,
    pub monitor: Option<MonitorRecord>,
    pub resize: Option<ResizeRecord>,
    /// Where the create request asked the server to go.
    pub placement: PlacementRequest,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
    pub launched_at: Option<Timestamp>,
}

/// A multi-step operation's progress: the step written before its effect starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTask {
    pub server_id: String,
    pub kind: String,
    pub step: String,
}

/// What a write does to the server's progress row (`server_tasks`): the step of a multi-step
/// operation, recorded before its effect starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskChange<'a> {
    Keep,
    /// Operation `kind` has reached `step`.
    Step {
        kind: &'a str,
        step: &'a str,
    },
    /// The operation is over.
    Clear,
}

pub trait ServerStore: Send + Sync {
    /// Records a new server (its `seq` is ignored) with operation `kind` at `step`, both or
    /// neither, if its project's servers with it stay within `quota`, counted in the same
    /// write (so concurrent creates cannot overshoot it together); returns the server as
    /// stored.
    fn insert_server(
        &self,
        s: &Server,
        kind: &str,
        step: &str,
        quota: &ServerQuota,
    ) -> Result<Server, QuotaError>;

    fn server(&self, id: &str) -> Result<Option<Server>, StorageError>;

    /// Every server (of `project_id` when given), newest first (created_at descending, then
    /// the later insert first), as Nova lists them.
    fn servers(&self, project_id: Option<&str>) -> Result<Vec<Server>, StorageError>;

    /// Reads server `id`, lets `change` edit it and writes it back with `task`, as one
    /// atomic step: no other write to the server lands in between. `change` returning false
    /// writes nothing. `change` may run more than once (on a newer copy), so it must only
    /// edit the server and what it captures. Returns the server as stored afterwards (as read
    /// when nothing was written), None when there is no such server (and `task` is not
    /// applied).
    fn update_server(
        &self,
        id: &str,
        task: TaskChange<'_>,
        change: &mut dyn FnMut(&mut Server) -> bool,
    ) -> Result<Option<Server>, StorageError>;

    /// Removes the server and its progress row; false if there was none.
    fn delete_server(&self, id: &str) -> Result<bool, StorageError>;

    /// The operation under way, if its progress is recorded.
    fn server_task(&self, id: &str) -> Result<Option<ServerTask>, StorageError>;

    /// Records `task` alone (the server must exist for [`TaskChange::Step`]).
    fn set_server_task(&self, id: &str, task: TaskChange<'_>) -> Result<(), StorageError>;
}
