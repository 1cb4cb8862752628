//! Nova servers: the row, its states as Nova spells them, the JSON columns (flavor snapshot,
//! boot configuration, fault, monitor identity, resize), and the progress of multi-step
//! operations (`server_tasks`).

use super::StorageError;
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    Deleting => "deleting",
});

impl PowerState {
    pub fn code(self) -> i64 {
        self as i64
    }

    fn from_code(c: i64) -> Option<PowerState> {
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
    pub config_drive: String,
    pub disk_config: String,
    /// What the request asked for in `networks`, kept for when networking arrives.
    pub networks: serde_json::Value,
    pub monitor: Option<MonitorRecord>,
    pub resize: Option<ResizeRecord>,
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

const COLUMNS: &str = "seq, id, name, description, project_id, user_id, flavor, image_ref, boot, \
     vm_state, task_state, power_state, host, fault, metadata, user_data, key_name, \
     config_drive, disk_config, networks, monitor_pid, monitor_start_time, monitor_boot_id, \
     resize, created_at, updated_at, launched_at";

fn to_json<T: Serialize>(v: &T) -> Result<String, StorageError> {
    serde_json::to_string(v).map_err(|e| StorageError::Corrupt(format!("cannot encode: {e}")))
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, s: &str) -> Result<T, StorageError> {
    serde_json::from_str(s).map_err(|e| StorageError::Corrupt(format!("{what}: {e}")))
}

/// The columns as read, before the JSON and enum columns are decoded.
struct RawRow {
    seq: i64,
    id: String,
    name: String,
    description: Option<String>,
    project_id: String,
    user_id: String,
    flavor: String,
    image_ref: String,
    boot: String,
    vm_state: String,
    task_state: Option<String>,
    power_state: i64,
    host: Option<String>,
    fault: Option<String>,
    metadata: String,
    user_data: Option<String>,
    key_name: Option<String>,
    config_drive: String,
    disk_config: String,
    networks: String,
    monitor_pid: Option<i32>,
    monitor_start_time: Option<i64>,
    monitor_boot_id: Option<String>,
    resize: Option<String>,
    created_at: i64,
    updated_at: Option<i64>,
    launched_at: Option<i64>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        project_id: r.get(4)?,
        user_id: r.get(5)?,
        flavor: r.get(6)?,
        image_ref: r.get(7)?,
        boot: r.get(8)?,
        vm_state: r.get(9)?,
        task_state: r.get(10)?,
        power_state: r.get(11)?,
        host: r.get(12)?,
        fault: r.get(13)?,
        metadata: r.get(14)?,
        user_data: r.get(15)?,
        key_name: r.get(16)?,
        config_drive: r.get(17)?,
        disk_config: r.get(18)?,
        networks: r.get(19)?,
        monitor_pid: r.get(20)?,
        monitor_start_time: r.get(21)?,
        monitor_boot_id: r.get(22)?,
        resize: r.get(23)?,
        created_at: r.get(24)?,
        updated_at: r.get(25)?,
        launched_at: r.get(26)?,
    })
}

impl RawRow {
    fn decode(self) -> Result<Server, StorageError> {
        let corrupt = |what: &str, v: &str| {
            StorageError::Corrupt(format!("server {}: {what} {v:?}", self.id))
        };
        let vm_state =
            VmState::parse(&self.vm_state).ok_or_else(|| corrupt("vm_state", &self.vm_state))?;
        let task_state = match &self.task_state {
            None => None,
            Some(t) => Some(TaskState::parse(t).ok_or_else(|| corrupt("task_state", t))?),
        };
        let power_state = PowerState::from_code(self.power_state)
            .ok_or_else(|| corrupt("power_state", &self.power_state.to_string()))?;
        let monitor = match (
            self.monitor_pid,
            self.monitor_start_time,
            &self.monitor_boot_id,
        ) {
            (Some(pid), Some(start), Some(boot_id)) => Some(MonitorRecord {
                pid,
                start_time: u64::try_from(start).unwrap_or(0),
                boot_id: boot_id.clone(),
            }),
            _ => None,
        };
        Ok(Server {
            flavor: from_json("flavor", &self.flavor)?,
            boot: from_json("boot", &self.boot)?,
            fault: self
                .fault
                .as_deref()
                .map(|f| from_json("fault", f))
                .transpose()?,
            metadata: from_json("metadata", &self.metadata)?,
            networks: from_json("networks", &self.networks)?,
            resize: self
                .resize
                .as_deref()
                .map(|r| from_json("resize", r))
                .transpose()?,
            seq: self.seq,
            id: self.id,
            name: self.name,
            description: self.description,
            project_id: self.project_id,
            user_id: self.user_id,
            image_ref: self.image_ref,
            vm_state,
            task_state,
            power_state,
            host: self.host,
            user_data: self.user_data,
            key_name: self.key_name,
            config_drive: self.config_drive,
            disk_config: self.disk_config,
            monitor,
            created_at: Timestamp(self.created_at),
            updated_at: self.updated_at.map(Timestamp),
            launched_at: self.launched_at.map(Timestamp),
        })
    }
}

/// Inserts a new server (its `seq` is ignored); returns it as stored.
pub fn insert(conn: &Connection, s: &Server) -> Result<Server, StorageError> {
    conn.execute(
        "INSERT INTO servers (id, name, description, project_id, user_id, flavor, image_ref,
                              boot, vm_state, task_state, power_state, host, fault, metadata,
                              user_data, key_name, config_drive, disk_config, networks,
                              created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20)",
        rusqlite::params![
            s.id,
            s.name,
            s.description,
            s.project_id,
            s.user_id,
            to_json(&s.flavor)?,
            s.image_ref,
            to_json(&s.boot)?,
            s.vm_state.as_str(),
            s.task_state.map(TaskState::as_str),
            s.power_state.code(),
            s.host,
            s.fault.as_ref().map(to_json).transpose()?,
            to_json(&s.metadata)?,
            s.user_data,
            s.key_name,
            s.config_drive,
            s.disk_config,
            to_json(&s.networks)?,
            s.created_at.micros(),
        ],
    )?;
    by_id(conn, &s.id)?.ok_or_else(|| StorageError::Corrupt(format!("server {} vanished", s.id)))
}

/// Writes every mutable column of `s` and stamps `updated_at`.
pub fn save(conn: &Connection, s: &Server) -> Result<(), StorageError> {
    let monitor = s.monitor.as_ref();
    conn.execute(
        "UPDATE servers SET name = ?2, description = ?3, flavor = ?4, boot = ?5, vm_state = ?6,
                task_state = ?7, power_state = ?8, host = ?9, fault = ?10, metadata = ?11,
                monitor_pid = ?12, monitor_start_time = ?13, monitor_boot_id = ?14,
                resize = ?15, updated_at = ?16, launched_at = ?17
         WHERE id = ?1",
        rusqlite::params![
            s.id,
            s.name,
            s.description,
            to_json(&s.flavor)?,
            to_json(&s.boot)?,
            s.vm_state.as_str(),
            s.task_state.map(TaskState::as_str),
            s.power_state.code(),
            s.host,
            s.fault.as_ref().map(to_json).transpose()?,
            to_json(&s.metadata)?,
            monitor.map(|m| m.pid),
            monitor.map(|m| i64::try_from(m.start_time).unwrap_or(i64::MAX)),
            monitor.map(|m| m.boot_id.as_str()),
            s.resize.as_ref().map(to_json).transpose()?,
            Timestamp::now().micros(),
            s.launched_at.map(Timestamp::micros),
        ],
    )?;
    Ok(())
}

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<Server>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = ?1");
    conn.query_row(&sql, [id], raw)
        .optional()?
        .map(RawRow::decode)
        .transpose()
}

/// Every server (of `project_id` when given), newest first, as Nova sorts by default
/// (created_at descending, then the later insert first).
pub fn list(conn: &Connection, project_id: Option<&str>) -> Result<Vec<Server>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM servers WHERE (?1 IS NULL OR project_id = ?1)
         ORDER BY created_at DESC, seq DESC"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map([project_id], raw)?;
    rows.map(|r| r.map_err(StorageError::from).and_then(RawRow::decode))
        .collect()
}

/// Removes the server's row (and its task row); false if there was none.
pub fn delete(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM servers WHERE id = ?1", [id])? > 0)
}

pub fn task(conn: &Connection, server_id: &str) -> Result<Option<ServerTask>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT server_id, kind, step FROM server_tasks WHERE server_id = ?1",
            [server_id],
            |r| {
                Ok(ServerTask {
                    server_id: r.get(0)?,
                    kind: r.get(1)?,
                    step: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Records that operation `kind` of the server has reached `step` (creating the row).
pub fn set_task_step(
    conn: &Connection,
    server_id: &str,
    kind: &str,
    step: &str,
) -> Result<(), StorageError> {
    let now = Timestamp::now().micros();
    conn.execute(
        "INSERT INTO server_tasks (server_id, kind, step, started_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (server_id) DO UPDATE SET kind = excluded.kind, step = excluded.step,
             updated_at = excluded.updated_at",
        (server_id, kind, step, now),
    )?;
    Ok(())
}

pub fn clear_task(conn: &Connection, server_id: &str) -> Result<(), StorageError> {
    conn.execute("DELETE FROM server_tasks WHERE server_id = ?1", [server_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    pub(crate) fn server(id: &str, project: &str) -> Server {
        Server {
            seq: 0,
            id: id.into(),
            name: format!("vm-{id}"),
            description: None,
            project_id: project.into(),
            user_id: "u".into(),
            flavor: FlavorSnapshot {
                id: "1".into(),
                name: "m1.tiny".into(),
                vcpus: 1,
                ram: 256,
                disk: 1,
                ephemeral: 0,
                swap: 0,
                extra_specs: BTreeMap::new(),
            },
            image_ref: "img".into(),
            boot: BootConfig {
                kernel: "/k".into(),
                initrd: None,
                boot_args: "console=ttyS0".into(),
                root_source: Some("/img".into()),
                kernel_id: None,
                ramdisk_id: None,
                images: Vec::new(),
                root_volume: None,
                block_devices: Vec::new(),
            },
            vm_state: VmState::Building,
            task_state: Some(TaskState::Scheduling),
            power_state: PowerState::NoState,
            host: None,
            fault: None,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            user_data: None,
            key_name: None,
            config_drive: String::new(),
            disk_config: "MANUAL".into(),
            networks: serde_json::json!("none"),
            monitor: None,
            resize: None,
            created_at: Timestamp::now(),
            updated_at: None,
            launched_at: None,
        }
    }

    #[test]
    fn round_trips_every_column_and_lists_newest_first() {
        let db = Db::open_in_memory().unwrap();
        let a = db.write(|tx| insert(tx, &server("a", "p1"))).unwrap();
        let mut b = db.write(|tx| insert(tx, &server("b", "p2"))).unwrap();
        assert_eq!(a.metadata["k"], "v");
        b.vm_state = VmState::Error;
        b.task_state = None;
        b.power_state = PowerState::Shutdown;
        b.fault = Some(ServerFault {
            code: 500,
            message: "m".into(),
            details: None,
            created: 1,
        });
        b.monitor = Some(MonitorRecord {
            pid: 42,
            start_time: 7,
            boot_id: "boot".into(),
        });
        db.write(|tx| save(tx, &b)).unwrap();
        let got = db.read(|c| by_id(c, "b")).unwrap().unwrap();
        assert_eq!(got.vm_state, VmState::Error);
        assert_eq!(got.power_state, PowerState::Shutdown);
        assert_eq!(got.fault.unwrap().message, "m");
        assert_eq!(got.monitor.unwrap().pid, 42);
        assert!(got.updated_at.is_some());
        let all: Vec<_> = db
            .read(|c| list(c, None))
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(all, ["b", "a"]);
        assert_eq!(db.read(|c| list(c, Some("p1"))).unwrap().len(), 1);
    }

    #[test]
    fn task_rows_follow_the_server() {
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| insert(tx, &server("a", "p"))).unwrap();
        db.write(|tx| set_task_step(tx, "a", "create", "claim"))
            .unwrap();
        db.write(|tx| set_task_step(tx, "a", "create", "clone_disk"))
            .unwrap();
        let t = db.read(|c| task(c, "a")).unwrap().unwrap();
        assert_eq!(t.step, "clone_disk");
        assert!(db.write(|tx| delete(tx, "a")).unwrap());
        assert_eq!(db.read(|c| task(c, "a")).unwrap(), None);
        assert!(!db.write(|tx| delete(tx, "a")).unwrap());
    }

    #[test]
    fn states_spell_as_nova() {
        for s in ["building", "active", "stopped", "resized", "error"] {
            assert_eq!(VmState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(TaskState::PoweringOff.as_str(), "powering-off");
        assert_eq!(
            TaskState::parse("rebooting_hard"),
            Some(TaskState::RebootingHard)
        );
        assert_eq!(PowerState::Shutdown.code(), 4);
    }
}
