//! `outpost volume create|list|show|delete|extend`, `volume snapshot create|list|delete` and
//! `volume type list`. Cinder's URLs carry the project: the socket acts in project `admin`,
//! whose id is looked up once per command.

use super::output::{self, cell};
use super::{image, Api, CliError, Format};
use crate::api::request::percent_encode;
use crate::identity::bootstrap::ADMIN_PROJECT;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume: blank, from an image, or from a snapshot.
    Create(CreateArgs),
    /// List volumes.
    List {
        /// Every project's volumes.
        #[arg(long)]
        all_projects: bool,
        /// More columns: type, bootable, properties.
        #[arg(long)]
        long: bool,
    },
    /// Show one volume, by ID or name.
    Show { volume: String },
    /// Delete volumes, by ID or name.
    Delete {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Grow a volume.
    Extend {
        volume: String,
        /// New size in GiB (larger than the current one).
        #[arg(long)]
        size: i64,
    },
    /// Volume snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Volume types.
    #[command(subcommand)]
    Type(TypeCommand),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Size in GiB (optional with --snapshot: the snapshot's size).
    #[arg(long)]
    pub size: Option<i64>,
    /// Copy this image (ID or name).
    #[arg(long, conflicts_with = "snapshot")]
    pub image: Option<String>,
    /// Copy this snapshot (ID or name).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// thin (default) or thick.
    #[arg(long = "type")]
    pub volume_type: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Wait until the volume is available (or failed).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot a volume.
    Create {
        name: String,
        /// The volume (ID or name).
        #[arg(long)]
        volume: String,
        /// Snapshot even if the volume is attached (crash-consistent).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        description: Option<String>,
        /// Wait until the snapshot is available (or failed).
        #[arg(long)]
        wait: bool,
    },
    /// List snapshots.
    List {
        #[arg(long)]
        all_projects: bool,
    },
    /// Show one snapshot, by ID or name.
    Show { snapshot: String },
    /// Delete snapshots, by ID or name.
    Delete {
        #[arg(required = true)]
        snapshots: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TypeCommand {
    /// List volume types.
    List,
}

/// How long `--wait` waits.
const WAIT: Duration = Duration::from_secs(3600);

fn root(api: &Api) -> Result<String, CliError> {
    let found = api.get(&format!("/identity/v3/projects?name={ADMIN_PROJECT}"))?;
    let id = found["projects"][0]["id"]
        .as_str()
        .ok_or_else(|| CliError::Usage(format!("outpostd has no project {ADMIN_PROJECT}")))?;
    Ok(format!("/volume/v3/{id}"))
}

pub fn run(api: &Api, cmd: VolumeCommand, format: Format) -> Result<String, CliError> {
    let root = root(api)?;
    match cmd {
        VolumeCommand::Create(a) => {
            let mut body = json!({"name": a.name});
            if let Some(s) = a.size {
                body["size"] = json!(s);
            }
            if let Some(i) = &a.image {
                body["imageRef"] = image::find(api, i)?["id"].clone();
            }
            if let Some(s) = &a.snapshot {
                body["snapshot_id"] = find(api, &root, "snapshots", s)?["id"].clone();
            }
            if let Some(t) = a.volume_type {
                body["volume_type"] = json!(t);
            }
            if let Some(d) = a.description {
                body["description"] = json!(d);
            }
            let mut v =
                api.post(&format!("{root}/volumes"), &json!({ "volume": body }))?["volume"].take();
            if a.wait {
                v = wait(api, &root, "volumes", "volume", &v)?;
            }
            Ok(show_volume(&v, format))
        }
        VolumeCommand::List { all_projects, long } => {
            let q = if all_projects { "?all_tenants=1" } else { "" };
            let vols = api.get(&format!("{root}/volumes/detail{q}"))?["volumes"].take();
            let vols = vols.as_array().cloned().unwrap_or_default();
            Ok(match format {
                Format::Json => output::json(&Value::Array(vols)),
                Format::Table => volume_table(&vols, long),
            })
        }
        VolumeCommand::Show { volume } => {
            Ok(show_volume(&find(api, &root, "volumes", &volume)?, format))
        }
        VolumeCommand::Delete { volumes } => {
            for v in volumes {
                let v = find(api, &root, "volumes", &v)?;
                api.send(Method::DELETE, &path(&root, "volumes", &v), None)?;
            }
            Ok(String::new())
        }
        VolumeCommand::Extend { volume, size } => {
            let v = find(api, &root, "volumes", &volume)?;
            let action = format!("{}/action", path(&root, "volumes", &v));
            api.send(
                Method::POST,
                &action,
                Some(&json!({"os-extend": {"new_size": size}})),
            )?;
            Ok(String::new())
        }
        VolumeCommand::Snapshot(cmd) => snapshot(api, &root, cmd, format),
        VolumeCommand::Type(TypeCommand::List) => {
            let types = api.get(&format!("{root}/types"))?["volume_types"].take();
            let types = types.as_array().cloned().unwrap_or_default();
            Ok(match format {
                Format::Json => output::json(&Value::Array(types)),
                Format::Table => {
                    let rows = types
                        .iter()
                        .map(|t| vec![cell(&t["id"]), cell(&t["name"]), cell(&t["description"])])
                        .collect();
                    output::list(&["ID", "Name", "Description"], rows)
                }
            })
        }
    }
}

fn snapshot(
    api: &Api,
    root: &str,
    cmd: SnapshotCommand,
    format: Format,
) -> Result<String, CliError> {
    match cmd {
        SnapshotCommand::Create {
            name,
            volume,
            force,
            description,
            wait: wait_for,
        } => {
            let v = find(api, root, "volumes", &volume)?;
            let mut body = json!({"volume_id": v["id"], "name": name, "force": force});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let mut s = api.post(&format!("{root}/snapshots"), &json!({ "snapshot": body }))?
                ["snapshot"]
                .take();
            if wait_for {
                s = wait(api, root, "snapshots", "snapshot", &s)?;
            }
            Ok(show_snapshot(&s, format))
        }
        SnapshotCommand::List { all_projects } => {
            let q = if all_projects { "?all_tenants=1" } else { "" };
            let snaps = api.get(&format!("{root}/snapshots/detail{q}"))?["snapshots"].take();
            let snaps = snaps.as_array().cloned().unwrap_or_default();
            Ok(match format {
                Format::Json => output::json(&Value::Array(snaps)),
                Format::Table => {
                    let rows = snaps
                        .iter()
                        .map(|s| {
                            ["id", "name", "status", "size", "volume_id"]
                                .iter()
                                .map(|k| cell(&s[*k]))
                                .collect()
                        })
                        .collect();
                    output::list(&["ID", "Name", "Status", "Size", "Volume"], rows)
                }
            })
        }
        SnapshotCommand::Show { snapshot } => Ok(show_snapshot(
            &find(api, root, "snapshots", &snapshot)?,
            format,
        )),
        SnapshotCommand::Delete { snapshots } => {
            for s in snapshots {
                let s = find(api, root, "snapshots", &s)?;
                api.send(Method::DELETE, &path(root, "snapshots", &s), None)?;
            }
            Ok(String::new())
        }
    }
}

fn path(root: &str, kind: &str, v: &Value) -> String {
    format!("{root}/{kind}/{}", percent_encode(&cell(&v["id"])))
}

/// A volume or snapshot by id, or else by exact name.
fn find(api: &Api, root: &str, kind: &str, name_or_id: &str) -> Result<Value, CliError> {
    let one = if kind == "volumes" {
        "volume"
    } else {
        "snapshot"
    };
    match api.get(&format!("{root}/{kind}/{}", percent_encode(name_or_id))) {
        Ok(mut v) => return Ok(v[one].take()),
        Err(CliError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let mut found = api.get(&format!(
        "{root}/{kind}/detail?name={}",
        percent_encode(name_or_id)
    ))?;
    let matches = found[kind]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    super::only_match(
        matches,
        || format!("No {one} with a name or ID of '{name_or_id}' exists."),
        || format!("More than one {one} exists with the name '{name_or_id}'."),
    )
}

/// Polls until `v` is no longer `creating`; a failure is an error carrying the reason.
fn wait(api: &Api, root: &str, kind: &str, one: &str, v: &Value) -> Result<Value, CliError> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut now = api.get(&path(root, kind, v))?;
        let now = now[one].take();
        match now["status"].as_str() {
            Some("creating") if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Some("error") => {
                return Err(CliError::Usage(format!(
                    "{one} {} failed: {}",
                    cell(&now["id"]),
                    cell(&now["outpost_fault"])
                )))
            }
            _ => return Ok(now),
        }
    }
}

fn attached_to(v: &Value) -> String {
    v["attachments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    format!(
                        "Attached to {} on {}",
                        cell(&a["server_id"]),
                        cell(&a["device"])
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn show_volume(v: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(v);
    }
    let mut fields = vec![
        ("id", cell(&v["id"])),
        ("name", cell(&v["name"])),
        ("description", cell(&v["description"])),
        ("status", cell(&v["status"])),
        ("size", cell(&v["size"])),
        ("type", cell(&v["volume_type"])),
        ("bootable", cell(&v["bootable"])),
        ("attachments", attached_to(v)),
        ("snapshot_id", cell(&v["snapshot_id"])),
        ("properties", output::properties(&v["metadata"])),
        ("created_at", cell(&v["created_at"])),
        ("updated_at", cell(&v["updated_at"])),
    ];
    if let Some(meta) = v.get("volume_image_metadata") {
        fields.push(("image", cell(&meta["image_id"])));
    }
    if let Some(fault) = v.get("outpost_fault") {
        fields.push(("fault", cell(fault)));
    }
    output::fields(fields)
}

fn show_snapshot(s: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(s);
    }
    output::fields(vec![
        ("id", cell(&s["id"])),
        ("name", cell(&s["name"])),
        ("description", cell(&s["description"])),
        ("status", cell(&s["status"])),
        ("size", cell(&s["size"])),
        ("volume_id", cell(&s["volume_id"])),
        ("created_at", cell(&s["created_at"])),
    ])
}

fn volume_table(vols: &[Value], long: bool) -> String {
    let mut headers = vec!["ID", "Name", "Status", "Size", "Attached to"];
    if long {
        headers.extend(["Type", "Bootable", "Properties"]);
    }
    let rows = vols
        .iter()
        .map(|v| {
            let mut row = vec![
                cell(&v["id"]),
                cell(&v["name"]),
                cell(&v["status"]),
                cell(&v["size"]),
                attached_to(v),
            ];
            if long {
                row.push(cell(&v["volume_type"]));
                row.push(cell(&v["bootable"]));
                row.push(output::properties(&v["metadata"]));
            }
            row
        })
        .collect();
    output::list(&headers, rows)
}
