//! Nova servers in SQLite, behind [`ServerStore`]: the row, its states as Nova spells them,
//! the JSON columns (flavor snapshot, boot configuration, fault, monitor identity, resize),
//! and the progress of multi-step operations (`server_tasks`).

use super::StorageError;
use crate::compute::servers::store::{
    MonitorRecord, PowerState, Server, ServerStore, ServerTask, TaskChange, TaskState, VmState,
};
use crate::quota::{QuotaError, ServerQuota};
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

const COLUMNS: &str = "seq, id, name, description, project_id, user_id, flavor, image_ref, boot, \
     vm_state, task_state, power_state, host, fault, metadata, user_data, key_name, \
     config_drive, disk_config, networks, monitor_pid, monitor_start_time, monitor_boot_id, \
     resize, created_at, updated_at, launched_at, placement, key_data, \
     admin_pass";

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
    placement: String,
    key_data: Option<String>,
    admin_pass: Option<String>,
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
        placement: r.get(27)?,
        key_data: r.get(28)?,
        admin_pass: r.get(29)?,
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
            placement: from_json("placement", &self.placement)?,
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
            key_data: self.key_data,
            admin_pass: self.admin_pass,
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
fn insert(conn: &Connection, s: &Server) -> Result<Server, StorageError> {
    conn.execute(
        "INSERT INTO servers (id, name, description, project_id, user_id, flavor, image_ref,
                              boot, vm_state, task_state, power_state, host, fault, metadata,
                              user_data, key_name, config_drive, disk_config, networks,
                              created_at, placement, key_data, admin_pass)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22, ?23)",
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
            to_json(&s.placement)?,
            s.key_data,
            s.admin_pass,
        ],
    )?;
    by_id(conn, &s.id)?.ok_or_else(|| StorageError::Corrupt(format!("server {} vanished", s.id)))
}

/// Writes every mutable column of `s` and stamps `updated_at`.
fn save(conn: &Connection, s: &Server) -> Result<(), StorageError> {
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

fn by_id(conn: &Connection, id: &str) -> Result<Option<Server>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE id = ?1");
    conn.query_row(&sql, [id], raw)
        .optional()?
        .map(RawRow::decode)
        .transpose()
}

/// Every server (of `project_id` when given), newest first, as Nova sorts by default
/// (created_at descending, then the later insert first).
fn list(conn: &Connection, project_id: Option<&str>) -> Result<Vec<Server>, StorageError> {
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
fn delete(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM servers WHERE id = ?1", [id])? > 0)
}

fn task(conn: &Connection, server_id: &str) -> Result<Option<ServerTask>, StorageError> {
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
fn set_task_step(
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

fn clear_task(conn: &Connection, server_id: &str) -> Result<(), StorageError> {
    conn.execute("DELETE FROM server_tasks WHERE server_id = ?1", [server_id])?;
    Ok(())
}

/// The SQLite implementation of the servers' door: each method one transaction.
impl ServerStore for super::Db {
    fn insert_server(
        &self,
        s: &Server,
        kind: &str,
        step: &str,
        quota: &ServerQuota,
    ) -> Result<Server, QuotaError> {
        // IMMEDIATE: no other server of the project is recorded between the count and the
        // insert.
        self.write(|tx| {
            if !quota.is_unlimited() {
                let held: Vec<(i64, i64)> = list(tx, Some(&s.project_id))?
                    .iter()
                    .map(|h| (h.flavor.vcpus, h.flavor.ram))
                    .collect();
                quota.check(&held, s.flavor.vcpus, s.flavor.ram)?;
            }
            let stored = insert(tx, s)?;
            set_task_step(tx, &stored.id, kind, step)?;
            Ok(stored)
        })
    }

    fn server(&self, id: &str) -> Result<Option<Server>, StorageError> {
        self.read(|c| by_id(c, id))
    }

    fn servers(&self, project_id: Option<&str>) -> Result<Vec<Server>, StorageError> {
        self.read(|c| list(c, project_id))
    }

    fn update_server(
        &self,
        id: &str,
        task: TaskChange<'_>,
        change: &mut dyn FnMut(&mut Server) -> bool,
    ) -> Result<Option<Server>, StorageError> {
        // IMMEDIATE: the row read here cannot change before it is written back.
        self.write(|tx| {
            let Some(read) = by_id(tx, id)? else {
                return Ok(None);
            };
            let mut s = read.clone();
            if !change(&mut s) {
                return Ok(Some(read));
            }
            apply_task(tx, id, task)?;
            save(tx, &s)?;
            Ok(Some(by_id(tx, id)?.unwrap_or(s)))
        })
    }

    fn delete_server(&self, id: &str) -> Result<bool, StorageError> {
        self.write(|tx| delete(tx, id))
    }

    fn server_task(&self, id: &str) -> Result<Option<ServerTask>, StorageError> {
        self.read(|c| task(c, id))
    }

    fn set_server_task(&self, id: &str, task: TaskChange<'_>) -> Result<(), StorageError> {
        self.write(|tx| apply_task(tx, id, task))
    }
}

fn apply_task(conn: &Connection, id: &str, task: TaskChange<'_>) -> Result<(), StorageError> {
    match task {
        TaskChange::Keep => Ok(()),
        TaskChange::Step { kind, step } => set_task_step(conn, id, kind, step),
        TaskChange::Clear => clear_task(conn, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::servers::store::{BootConfig, FlavorSnapshot, ServerFault};
    use crate::storage::Db;
    use std::collections::BTreeMap;

    #[test]
    fn conforms_to_the_server_store_contract() {
        crate::compute::servers::store::conformance::run(|| Db::open_in_memory().unwrap());
    }

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
                shutdown_timeout_secs: None,
            },
            vm_state: VmState::Building,
            task_state: Some(TaskState::Scheduling),
            power_state: PowerState::NoState,
            host: None,
            fault: None,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            user_data: None,
            key_name: None,
            key_data: None,
            admin_pass: None,
            config_drive: String::new(),
            disk_config: "MANUAL".into(),
            networks: serde_json::json!("none"),
            monitor: None,
            resize: None,
            placement: Default::default(),
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
