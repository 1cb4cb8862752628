//! Helpers shared by the API and command-line tests: a raw HTTP/1.1 client over a unix
//! socket, a real tap device, and a directory of host files a configuration can point at.
#![allow(dead_code)] // each test crate uses a different subset

pub mod openapi;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use vmm_sys_util::tempdir::TempDir;

/// A response: status, raw header block, body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `fault_message` of an error response (panics if the body has none).
    pub fn fault(&self) -> String {
        match self.json().get("fault_message") {
            Some(Value::String(m)) => m.clone(),
            _ => panic!("no fault_message in {} {:?}", self.status, self.body),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// One request on a fresh connection (`Connection: close`, so the body ends at EOF).
pub fn http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    let mut stream =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {socket:?}: {e}"));
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let raw = String::from_utf8(raw).expect("response is UTF-8");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    HttpResponse {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

/// A real, non-persistent tap device; it disappears when this is dropped (fd closed).
pub struct Tap {
    _file: std::fs::File,
    pub name: String,
}

impl Tap {
    pub fn new() -> Tap {
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca; // _IOW('T', 202, int)
        const IFF_TAP: libc::c_short = 0x0002;
        const IFF_NO_PI: libc::c_short = 0x1000;
        #[repr(C)]
        struct IfReq {
            name: [u8; libc::IFNAMSIZ],
            flags: libc::c_short,
            _pad: [u8; 22],
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("these tests need /dev/net/tun (run as root)");
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..7].copy_from_slice(b"otest%d");
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which IfReq lays out (40 bytes).
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        let len = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(req.name.len());
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        Tap { _file: file, name }
    }
}

/// Host files a configuration can name: a "kernel" that is really text, an initrd, two disks.
pub struct HostFiles {
    pub dir: TempDir,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub rootfs: PathBuf,
    pub data: PathBuf,
}

impl HostFiles {
    pub fn new() -> HostFiles {
        let dir = TempDir::new_with_prefix("/tmp/outpost-vmm-test-").expect("temp dir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.as_path().join(name);
            std::fs::write(&path, bytes).expect("write temp file");
            path
        };
        HostFiles {
            kernel: write("vmlinux", b"not a kernel, just text\n"),
            initrd: write("initrd.img", b"not an initrd either\n"),
            rootfs: write("rootfs.ext4", &[0u8; 4096]),
            data: write("data.img", &[0u8; 4096]),
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.as_path().join(name)
    }

    /// A configuration that passes every pre-boot check (its kernel is text, so only the
    /// builder can tell it is not a kernel).
    pub fn valid_config(&self) -> Value {
        json!({
            "boot-source": {
                "kernel_image_path": self.kernel,
                "boot_args": "console=ttyS0 reboot=k panic=1",
                "initrd_path": self.initrd,
            },
            "machine-config": { "vcpu_count": 2, "mem_size_mib": 128 },
            "drives": [
                { "drive_id": "rootfs", "path_on_host": self.rootfs, "is_root_device": true, "is_read_only": false },
                { "drive_id": "data", "path_on_host": self.data, "is_root_device": false, "is_read_only": true },
            ],
        })
    }
}
