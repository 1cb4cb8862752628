//! `outpost image create|list|show|save|delete`. `create --file` streams the file with a
//! progress bar (on a terminal) while hashing it, and checks the MD5 outpostd reports for
//! the bytes it received; a failed upload deletes the new record, as openstackclient does.

use super::output::{self, cell};
use super::{Api, CliError, Format};
use crate::api::request::percent_encode;
use crate::image::fields::{
    KERNEL_ID, OS_COMMAND_LINE, RAMDISK_ID, UPLOADED_CHECKSUM, UPLOADED_DISK_FORMAT,
    UPLOADED_OS_HASH_VALUE,
};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

const IMAGES: &str = "/image/v2/images";

/// Attributes shown as fields of their own; everything else is a property.
const CORE: [&str; 24] = [
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "owner",
    "tags",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    UPLOADED_DISK_FORMAT,
    UPLOADED_CHECKSUM,
];

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Create an image and upload its data.
    Create(Box<CreateArgs>),
    /// List images.
    List {
        /// More columns: formats, size, checksum, visibility.
        #[arg(long)]
        long: bool,
    },
    /// Show one image, by ID or name.
    Show { image: String },
    /// Download an image's data to a file.
    Save {
        image: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete images, by ID or name.
    Delete {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Visibility {
    Public,
    Private,
    Shared,
    Community,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// The data to upload (raw, qcow2 (stored as raw), aki, ari, iso).
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, default_value = "raw")]
    pub disk_format: String,
    /// Default: bare (aki, ari or ami for those disk formats).
    #[arg(long)]
    pub container_format: Option<String>,
    #[arg(long, value_enum)]
    pub visibility: Option<Visibility>,
    /// Minimum disk in GiB to boot it.
    #[arg(long)]
    pub min_disk: Option<i64>,
    /// Minimum RAM in MiB to boot it.
    #[arg(long)]
    pub min_ram: Option<i64>,
    #[arg(long)]
    pub protected: bool,
    /// Kernel image (aki) for direct kernel boot.
    #[arg(long)]
    pub kernel_id: Option<String>,
    /// Ramdisk image (ari) for direct kernel boot.
    #[arg(long)]
    pub ramdisk_id: Option<String>,
    /// Kernel command line for direct kernel boot.
    #[arg(long)]
    pub command_line: Option<String>,
    /// Property KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

pub fn run(api: &Api, cmd: ImageCommand, format: Format) -> Result<String, CliError> {
    match cmd {
        ImageCommand::Create(args) => Ok(show_one(&create(api, *args)?, format)),
        ImageCommand::List { long } => {
            let images = list_all(api)?;
            Ok(match format {
                Format::Json => output::json(&Value::Array(images)),
                Format::Table => table(&images, long),
            })
        }
        ImageCommand::Show { image } => Ok(show_one(&find(api, &image)?, format)),
        ImageCommand::Save { image, file } => {
            let i = find(api, &image)?;
            let mut out = std::fs::File::create(&file)
                .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", file.display())))?;
            api.download(&format!("{}/file", image_path(&i)), &mut out)?;
            Ok(String::new())
        }
        ImageCommand::Delete { images } => {
            for name_or_id in images {
                let i = find(api, &name_or_id)?;
                api.delete(&image_path(&i))?;
            }
            Ok(String::new())
        }
    }
}

fn create(api: &Api, a: CreateArgs) -> Result<Value, CliError> {
    let container = a
        .container_format
        .clone()
        .unwrap_or_else(|| match a.disk_format.as_str() {
            f @ ("aki" | "ari" | "ami") => f.to_owned(),
            _ => "bare".to_owned(),
        });
    let mut body = Map::new();
    body.insert("name".into(), json!(a.name));
    body.insert("disk_format".into(), json!(a.disk_format));
    body.insert("container_format".into(), json!(container));
    if let Some(v) = a.visibility {
        let v = format!("{v:?}").to_ascii_lowercase();
        body.insert("visibility".into(), json!(v));
    }
    if let Some(n) = a.min_disk {
        body.insert("min_disk".into(), json!(n));
    }
    if let Some(n) = a.min_ram {
        body.insert("min_ram".into(), json!(n));
    }
    if a.protected {
        body.insert("protected".into(), json!(true));
    }
    if !a.tags.is_empty() {
        body.insert("tags".into(), json!(a.tags));
    }
    for (k, v) in [
        (KERNEL_ID, &a.kernel_id),
        (RAMDISK_ID, &a.ramdisk_id),
        (OS_COMMAND_LINE, &a.command_line),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    for p in &a.properties {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--property {p:?} is not KEY=VALUE")))?;
        body.insert(k.to_owned(), json!(v));
    }
    // Open the file before making the record, so a bad path leaves nothing behind.
    let data = match &a.file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", path.display())))?;
            let len = f
                .metadata()
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?
                .len();
            Some((f, len))
        }
        None => None,
    };
    let created = api.post(IMAGES, &Value::Object(body))?;
    let Some((file, len)) = data else {
        return Ok(created);
    };
    let path = image_path(&created);
    if let Err(e) = upload(api, &path, file, len) {
        // Best effort: the record would stay queued with no data.
        let _ = api.delete(&path);
        return Err(e);
    }
    api.get(&path)
}

/// Streams the file with a progress bar, then checks outpostd received what was sent.
fn upload(api: &Api, path: &str, file: std::fs::File, len: u64) -> Result<(), CliError> {
    // indicatif draws on stderr only when it is a terminal.
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let hash = Arc::new(Mutex::new(Md5::new()));
    let reader = Hashing {
        inner: file,
        hash: hash.clone(),
    };
    let shown = bar.clone();
    let sent = api.upload(
        &format!("{path}/file"),
        Box::new(reader),
        len,
        Box::new(move |n| shown.set_position(n)),
    );
    bar.finish_and_clear();
    sent?;
    let local = crate::random::hex(
        &std::mem::take(&mut *hash.lock().unwrap_or_else(PoisonError::into_inner)).finalize(),
    );
    let image = api.get(path)?;
    // After a conversion `checksum` describes the stored raw file; the received bytes are
    // described apart.
    let received = image
        .get(UPLOADED_CHECKSUM)
        .or_else(|| image.get("checksum"))
        .map(cell)
        .unwrap_or_default();
    if received != local {
        return Err(CliError::Usage(format!(
            "outpostd received data with MD5 {received}, but the file has {local}; upload again"
        )));
    }
    Ok(())
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Arc<Mutex<Md5>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(&buf[..n]);
        Ok(n)
    }
}

fn image_path(i: &Value) -> String {
    format!("{IMAGES}/{}", percent_encode(&cell(&i["id"])))
}

/// Every image the caller may see, following Glance's `next` links.
fn list_all(api: &Api) -> Result<Vec<Value>, CliError> {
    let mut out = Vec::new();
    let mut next = Some(format!("{IMAGES}?limit=1000"));
    while let Some(path) = next.take() {
        let mut page = api.get(&path)?;
        if let Some(images) = page["images"].as_array_mut() {
            out.append(images);
        }
        // Glance's links are relative to its root (`/v2/...`).
        next = page["next"].as_str().map(|n| format!("/image{n}"));
    }
    Ok(out)
}

/// By id first; failing that, by exact name, as openstackclient does.
pub fn find(api: &Api, name_or_id: &str) -> Result<Value, CliError> {
    match api.get(&format!("{IMAGES}/{}", percent_encode(name_or_id))) {
        Ok(v) => return Ok(v),
        Err(CliError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let found = api.get(&format!(
        "{IMAGES}?visibility=all&name={}",
        percent_encode(name_or_id)
    ))?;
    let matches: Vec<Value> = found["images"].as_array().cloned().unwrap_or_default();
    super::only_match(
        matches,
        || format!("No Image found for {name_or_id}"),
        || format!("More than one image exists with the name '{name_or_id}'."),
    )
}

fn show_one(i: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(i);
    }
    let props: Map<String, Value> = i
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !CORE.contains(&k.as_str()) && k.as_str() != UPLOADED_OS_HASH_VALUE
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let tags = i["tags"]
        .as_array()
        .map(|t| t.iter().map(cell).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let mut fields = vec![
        ("id", cell(&i["id"])),
        ("name", cell(&i["name"])),
        ("status", cell(&i["status"])),
        ("disk_format", cell(&i["disk_format"])),
        ("container_format", cell(&i["container_format"])),
        ("size", cell(&i["size"])),
        ("virtual_size", cell(&i["virtual_size"])),
        ("checksum", cell(&i["checksum"])),
        ("visibility", cell(&i["visibility"])),
        ("protected", cell(&i["protected"])),
        ("min_disk", cell(&i["min_disk"])),
        ("min_ram", cell(&i["min_ram"])),
        ("owner", cell(&i["owner"])),
        ("tags", tags),
        ("properties", output::properties(&Value::Object(props))),
        ("created_at", cell(&i["created_at"])),
        ("updated_at", cell(&i["updated_at"])),
    ];
    if let Some(from) = i.get(UPLOADED_DISK_FORMAT) {
        fields.push(("uploaded_as", cell(from)));
    }
    output::fields(fields)
}

fn table(images: &[Value], long: bool) -> String {
    let mut headers = vec!["ID", "Name", "Status"];
    if long {
        headers.extend([
            "Disk Format",
            "Container Format",
            "Size",
            "Checksum",
            "Visibility",
            "Protected",
        ]);
    }
    let rows = images
        .iter()
        .map(|i| {
            let mut keys = vec!["id", "name", "status"];
            if long {
                keys.extend([
                    "disk_format",
                    "container_format",
                    "size",
                    "checksum",
                    "visibility",
                    "protected",
                ]);
            }
            keys.iter().map(|k| cell(&i[*k])).collect()
        })
        .collect();
    output::list(&headers, rows)
}
