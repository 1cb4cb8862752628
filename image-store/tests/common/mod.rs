//! Helpers shared by the integration tests: deterministic disk contents and the real
//! `qemu-img`, `md5sum` and `sha512sum` programs.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::Command;

/// Deterministic bytes that look like a small disk: pseudo-random data with long zero runs
/// (so sparseness is observable) and a length that is not a multiple of any block size.
pub fn disk_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = vec![0u8; len];
    for (i, chunk) in v.chunks_mut(64 * 1024).enumerate() {
        // Every third 64 KiB chunk stays zero.
        if i % 3 == 1 {
            continue;
        }
        for b in chunk {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
    }
    v
}

/// Runs a program and returns its stdout; panics with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// First field of `md5sum FILE`.
pub fn md5sum(path: &Path) -> String {
    first_field(&run("md5sum", &[path.to_str().unwrap()]))
}

/// First field of `sha512sum FILE`.
pub fn sha512sum(path: &Path) -> String {
    first_field(&run("sha512sum", &[path.to_str().unwrap()]))
}

fn first_field(s: &str) -> String {
    s.split_whitespace()
        .next()
        .expect("checksum output")
        .to_owned()
}

/// Writes `data` to `dir/name.raw` and converts it to `dir/name.qcow2` with qemu-img.
pub fn qcow2_from_bytes(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    let qcow2 = dir.join(format!("{name}.qcow2"));
    fs::write(&raw, data).unwrap();
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            raw.to_str().unwrap(),
            qcow2.to_str().unwrap(),
        ],
    );
    qcow2
}

/// Bytes allocated on disk for `path` (st_blocks × 512).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks() * 512
}

/// Names in a folder, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
