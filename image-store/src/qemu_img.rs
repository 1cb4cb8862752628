//! Running `qemu-img` on untrusted images: always with the format named (`-f qcow2`, never
//! probing), on absolute paths (so no `proto:` prefix can be read into a file name), and for
//! under CPU-time and address-space limits, since a crafted header can make the parser
//! allocate or loop far beyond what a real image needs.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;

/// Limits for `qemu-img info`: a well-formed image is inspected in well under a second and a
/// few MiB; these leave room for huge images while stopping a hostile one.
const INFO_CPU_SECONDS: libc::rlim_t = 30;
const INFO_ADDRESS_SPACE: libc::rlim_t = 1 << 30;
/// Limits for `qemu-img convert`: it reads and writes the whole image, so CPU time grows with
/// its size (ten minutes converts hundreds of GiB of mostly-zero data), while its memory does
/// not (a few buffers and the qcow2 caches; the rest of the 4 GiB is room for glibc's
/// per-thread arenas, which count against an address-space limit).
const CONVERT_CPU_SECONDS: libc::rlim_t = 600;
const CONVERT_ADDRESS_SPACE: libc::rlim_t = 4 << 30;

/// What went wrong running qemu-img.
#[derive(Debug, thiserror::Error)]
pub enum QemuImgError {
    #[error("cannot run {program}: {source} (is qemu-utils installed?)")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("{path} is not an absolute path; qemu-img could read a relative one as a protocol")]
    RelativePath { path: PathBuf },
    #[error("qemu-img {what} on {path} was stopped by signal {signal} (resource limit reached?)")]
    Killed {
        what: &'static str,
        path: PathBuf,
        signal: i32,
    },
    #[error("qemu-img {what} on {path} failed ({status}): {stderr}")]
    Failed {
        what: &'static str,
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("cannot read qemu-img info output for {path}: {source}")]
    BadInfo {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The parts of `qemu-img info --output=json` this store uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    pub backing_filename: Option<String>,
    pub data_file: Option<String>,
    pub encrypted: bool,
}

#[derive(Deserialize)]
struct RawInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    encrypted: Option<bool>,
    #[serde(rename = "format-specific")]
    format_specific: Option<FormatSpecific>,
}

#[derive(Deserialize)]
struct FormatSpecific {
    data: Option<FormatData>,
}

#[derive(Deserialize)]
struct FormatData {
    #[serde(rename = "data-file")]
    data_file: Option<String>,
    encrypt: Option<serde_json::Value>,
}

impl ImageInfo {
    /// Parses the JSON `qemu-img info --output=json` prints.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let raw: RawInfo = serde_json::from_slice(json)?;
        let data = raw.format_specific.and_then(|f| f.data);
        let encrypted =
            raw.encrypted.unwrap_or(false) || data.as_ref().is_some_and(|d| d.encrypt.is_some());
        Ok(Self {
            format: raw.format,
            virtual_size: raw.virtual_size,
            backing_filename: raw.backing_filename,
            data_file: data.and_then(|d| d.data_file),
            encrypted,
        })
    }
}

/// The qemu-img program to run.
#[derive(Debug, Clone)]
pub struct QemuImg {
    program: PathBuf,
}

impl Default for QemuImg {
    fn default() -> Self {
        Self {
            program: PathBuf::from("qemu-img"),
        }
    }
}

impl QemuImg {
    /// Uses `program` instead of `qemu-img` from `PATH`.
    pub fn with_program(program: PathBuf) -> Self {
        Self { program }
    }

    /// `qemu-img info -f qcow2 --output=json PATH`, under resource limits.
    pub fn info_qcow2(&self, path: &Path) -> Result<ImageInfo, QemuImgError> {
        let path = absolute(path)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(["info", "-f", "qcow2", "--output=json"]).arg(path);
        limit_resources(&mut cmd, INFO_CPU_SECONDS, INFO_ADDRESS_SPACE);
        let out = self.run(cmd, "info", path)?;
        ImageInfo::from_json(&out.stdout).map_err(|source| QemuImgError::BadInfo {
            path: path.to_owned(),
            source,
        })
    }

    /// `qemu-img convert -f qcow2 -O raw SRC DST`. DST is created (or truncated) by qemu-img;
    /// runs of zeros become holes, so the result is as sparse as the source.
    pub fn convert_qcow2_to_raw(&self, src: &Path, dst: &Path) -> Result<(), QemuImgError> {
        let src = absolute(src)?;
        let dst = absolute(dst)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(src)
            .arg(dst);
        limit_resources(&mut cmd, CONVERT_CPU_SECONDS, CONVERT_ADDRESS_SPACE);
        self.run(cmd, "convert", src).map(drop)
    }

    fn run(
        &self,
        mut cmd: Command,
        what: &'static str,
        path: &Path,
    ) -> Result<Output, QemuImgError> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|source| QemuImgError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if let Some(signal) = out.status.signal() {
            return Err(QemuImgError::Killed {
                what,
                path: path.to_owned(),
                signal,
            });
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(QemuImgError::Failed {
                what,
                path: path.to_owned(),
                status: out.status.to_string(),
                // Bounded: the message ends up in API error bodies and logs.
                stderr: stderr.trim().chars().take(1000).collect(),
            });
        }
        Ok(out)
    }
}

fn absolute(path: &Path) -> Result<&Path, QemuImgError> {
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(QemuImgError::RelativePath {
            path: path.to_owned(),
        })
    }
}

fn limit_resources(cmd: &mut Command, cpu_seconds: libc::rlim_t, address_space: libc::rlim_t) {
    let cpu = libc::rlimit {
        rlim_cur: cpu_seconds,
        rlim_max: cpu_seconds,
    };
    let mem = libc::rlimit {
        rlim_cur: address_space,
        rlim_max: address_space,
    };
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed; it calls setrlimit(2) (a plain system call) on
    // values captured by copy and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0
                || libc::setrlimit(libc::RLIMIT_AS, &mem) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_qcow2_info() {
        let json = br#"{
            "children": [], "virtual-size": 67108864, "filename": "/x/a.qcow2",
            "cluster-size": 65536, "format": "qcow2", "actual-size": 200704,
            "format-specific": {"type": "qcow2", "data": {"compat": "1.1",
                "compression-type": "zlib", "lazy-refcounts": false,
                "refcount-bits": 16, "corrupt": false, "extended-l2": false}},
            "dirty-flag": false }"#;
        assert_eq!(
            ImageInfo::from_json(json).unwrap(),
            ImageInfo {
                format: "qcow2".into(),
                virtual_size: 64 << 20,
                backing_filename: None,
                data_file: None,
                encrypted: false,
            }
        );
    }

    #[test]
    fn parses_backing_data_file_and_encryption() {
        let json = br#"{"virtual-size": 1048576, "format": "qcow2",
            "backing-filename": "/etc/shadow", "encrypted": true,
            "format-specific": {"type": "qcow2", "data": {"data-file": "/dev/sda",
                "encrypt": {"format": "luks"}}}}"#;
        let info = ImageInfo::from_json(json).unwrap();
        assert_eq!(info.backing_filename.as_deref(), Some("/etc/shadow"));
        assert_eq!(info.data_file.as_deref(), Some("/dev/sda"));
        assert!(info.encrypted);
    }

    #[test]
    fn relative_paths_are_refused() {
        let err = QemuImg::default()
            .info_qcow2(Path::new("json:{}"))
            .unwrap_err();
        assert!(matches!(err, QemuImgError::RelativePath { .. }), "{err}");
    }

    #[test]
    fn missing_program_says_what_to_install() {
        let err = QemuImg::with_program("/nonexistent/qemu-img".into())
            .info_qcow2(Path::new("/tmp/x"))
            .unwrap_err();
        assert!(err.to_string().contains("qemu-utils"), "{err}");
    }
}
