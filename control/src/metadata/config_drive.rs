//! The config drive (Nova's `config_drive`): a small vfat disk labelled `config-2` holding
//! [`documents::drive_files`], the same bytes the metadata service answers, attached to the
//! guest read-only after its other disks. cloud-init's ConfigDrive source finds it by label
//! (vfat or iso9660). Made with Debian's dosfstools (`mkfs.vfat`) and mtools (`mmd`,
//! `mcopy`), which write into the image file without mounting it.

use super::documents::{self, Instance};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The volume label cloud-init looks for.
pub const LABEL: &str = "config-2";
/// Nova's switch for it in a flavor's extra specs or an image's properties.
pub const PROPERTY: &str = "img_config_drive";

#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    #[error("config drive {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config drive {path}: cannot run {tool}: {source} (install Debian's dosfstools and \
         mtools: scripts/install-deps.sh)"
    )]
    Spawn {
        path: PathBuf,
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("config drive {path}: {tool} failed: {stderr}")]
    Tool {
        path: PathBuf,
        tool: &'static str,
        stderr: String,
    },
}

/// Whether a server gets a config drive: it asked for one (`config_drive` true, as Nova
/// takes it), or its flavor's extra specs make it `mandatory`.
pub fn wanted(config_drive: &str, extra_specs: &BTreeMap<String, String>) -> bool {
    let asked = matches!(
        config_drive.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    );
    asked || extra_specs.get(PROPERTY).map(String::as_str) == Some("mandatory")
}

/// Size of the image for `bytes` of files: room for the FAT, directories and cluster
/// rounding, at least 1 MiB (mkfs.vfat's FAT12 floor is far below; a round size is simpler
/// to reason about). In KiB, as mkfs.vfat counts.
fn size_kib(bytes: usize) -> u64 {
    let kib = u64::try_from(bytes / 1024).unwrap_or(u64::MAX / 4);
    (kib * 2 + 1024).div_ceil(1024) * 1024
}

fn run(
    tool: &'static str,
    args: &[&std::ffi::OsStr],
    image: &Path,
) -> Result<(), ConfigDriveError> {
    let out = Command::new(tool)
        .args(args)
        // mtools refuses an image whose geometry it cannot guess unless told not to check.
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|source| ConfigDriveError::Spawn {
            path: image.to_owned(),
            tool,
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ConfigDriveError::Tool {
            path: image.to_owned(),
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Writes the config drive of `instance` at `image` (replacing it), through `image` plus
/// `.tmp` so a guest never gets half a drive.
pub fn write(instance: &Instance, image: &Path) -> Result<(), ConfigDriveError> {
    let files = documents::drive_files(instance);
    let tmp = image.with_extension("tmp");
    let io = |source| ConfigDriveError::Io {
        path: tmp.clone(),
        source,
    };
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let size = size_kib(total).to_string();
    run(
        "mkfs.vfat",
        &[
            "-C".as_ref(),
            "-n".as_ref(),
            LABEL.as_ref(),
            tmp.as_os_str(),
            size.as_ref(),
        ],
        &tmp,
    )?;
    // The files go in from a staging folder beside the image: mcopy reads paths.
    let staging = image.with_extension("d");
    let _ = std::fs::remove_dir_all(&staging);
    let staged = (|| -> Result<(), ConfigDriveError> {
        let mut dirs: Vec<String> = Vec::new();
        for (path, bytes) in &files {
            let mut prefix = String::new();
            for part in path.split('/').take(path.split('/').count() - 1) {
                prefix = if prefix.is_empty() {
                    part.to_owned()
                } else {
                    format!("{prefix}/{part}")
                };
                if !dirs.contains(&prefix) {
                    dirs.push(prefix.clone());
                }
            }
            let on_host = staging.join(path);
            if let Some(parent) = on_host.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(&on_host, bytes).map_err(io)?;
        }
        for dir in &dirs {
            let target = format!("::{dir}");
            run(
                "mmd",
                &["-i".as_ref(), tmp.as_os_str(), target.as_ref()],
                &tmp,
            )?;
        }
        for (path, _) in &files {
            let target = format!("::{path}");
            let source = staging.join(path);
            run(
                "mcopy",
                &[
                    "-i".as_ref(),
                    tmp.as_os_str(),
                    source.as_os_str(),
                    target.as_ref(),
                ],
                &tmp,
            )?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    staged?;
    std::fs::rename(&tmp, image).map_err(|source| ConfigDriveError::Io {
        path: image.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_for_or_made_mandatory_by_the_flavor() {
        let none = BTreeMap::new();
        assert!(wanted("True", &none));
        assert!(wanted("true", &none));
        assert!(!wanted("", &none));
        assert!(!wanted("False", &none));
        let mandatory = BTreeMap::from([(PROPERTY.to_owned(), "mandatory".to_owned())]);
        assert!(wanted("", &mandatory));
        let optional = BTreeMap::from([(PROPERTY.to_owned(), "optional".to_owned())]);
        assert!(!wanted("", &optional));
    }

    fn mtools(args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Builds a real image with the Debian tools and reads it back with mtools.
    #[test]
    fn the_drive_is_a_vfat_labelled_config_2_holding_both_trees() {
        if Command::new("mkfs.vfat").arg("--help").output().is_err() {
            panic!("mkfs.vfat is missing: run scripts/install-deps.sh");
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("config-drive.img");
        let mut instance = super::super::documents::tests_instance();
        // Bigger than one cluster, so sizing is exercised.
        instance.user_data = Some(vec![b'x'; 300 * 1024]);
        write(&instance, &image).unwrap();
        let img = image.to_str().unwrap();
        let label = mtools(&["mlabel", "-s", "-i", img, "::"]);
        assert!(label.contains("config-2"), "{label}");
        let md = mtools(&["mtype", "-i", img, "::openstack/latest/meta_data.json"]);
        let md: serde_json::Value = serde_json::from_str(&md).unwrap();
        assert_eq!(md, documents::meta_data(&instance));
        let ec2 = mtools(&["mtype", "-i", img, "::ec2/latest/meta-data.json"]);
        let ec2: serde_json::Value = serde_json::from_str(&ec2).unwrap();
        assert_eq!(ec2["instance-id"], "i-0000002a");
        let listed = mtools(&["mdir", "-b", "-i", img, "::openstack/latest"]);
        for f in [
            "meta_data.json",
            "network_data.json",
            "vendor_data2.json",
            "user_data",
        ] {
            assert!(listed.contains(f), "{f} in {listed}");
        }
        // Written again (a restart): replaced whole, no staging left behind.
        instance.user_data = None;
        write(&instance, &image).unwrap();
        let listed = mtools(&["mdir", "-b", "-i", img, "::openstack/latest"]);
        assert!(!listed.contains("user_data"), "{listed}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
