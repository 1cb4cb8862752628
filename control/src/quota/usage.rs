//! What a project holds of each resource with a quota, for the quota and limits APIs (each
//! create counts its own resource again inside its unit of work; these counts are only
//! shown). Neutron counts its own ([`crate::network::NetworkService::quota_usage`]).

use crate::store::{Doors, StorageError};
use crate::volume::types;
use std::collections::BTreeMap;

/// Nova's usage of `project_id`; key pairs are a user's (`user_id`), as Nova counts them.
pub fn compute(
    doors: &Doors,
    project_id: &str,
    user_id: &str,
) -> Result<BTreeMap<&'static str, i64>, StorageError> {
    let servers = doors.servers.servers(Some(project_id))?;
    let groups = doors.server_groups.groups(Some(project_id))?;
    let pairs = doors.keypairs.key_pairs(user_id)?;
    Ok(BTreeMap::from([
        ("instances", count(servers.len())),
        ("cores", servers.iter().map(|s| s.flavor.vcpus).sum()),
        ("ram", servers.iter().map(|s| s.flavor.ram).sum()),
        ("key_pairs", count(pairs.len())),
        ("server_groups", count(groups.len())),
        // Per group and per server: no project-wide figure, as Nova shows 0.
        ("server_group_members", 0),
        ("metadata_items", 0),
    ]))
}

/// Cinder's usage of `project_id`: snapshots' sizes count in `gigabytes` too, as Cinder's.
pub fn volume(
    doors: &Doors,
    project_id: &str,
) -> Result<BTreeMap<&'static str, i64>, StorageError> {
    let volumes = doors.volumes.volumes(Some(project_id))?;
    let snapshots = doors.volumes.snapshots(Some(project_id))?;
    let type_of: BTreeMap<&str, &str> = volumes
        .iter()
        .map(|v| (v.id.as_str(), v.volume_type.as_str()))
        .collect();
    let mut out = BTreeMap::from([
        ("volumes", count(volumes.len())),
        (
            "gigabytes",
            volumes.iter().map(|v| v.size).sum::<i64>()
                + snapshots.iter().map(|s| s.size).sum::<i64>(),
        ),
        ("snapshots", count(snapshots.len())),
    ]);
    for t in types::ALL {
        let of_type: Vec<_> = volumes.iter().filter(|v| v.volume_type == t.name).collect();
        let snaps: Vec<_> = snapshots
            .iter()
            .filter(|s| type_of.get(s.volume_id.as_str()) == Some(&t.name))
            .collect();
        let gigabytes =
            of_type.iter().map(|v| v.size).sum::<i64>() + snaps.iter().map(|s| s.size).sum::<i64>();
        for (kind, used) in [
            ("volumes", count(of_type.len())),
            ("gigabytes", gigabytes),
            ("snapshots", count(snaps.len())),
        ] {
            if let Some((name, _)) = super::resource(&format!("{kind}_{}", t.name)) {
                out.insert(name, used);
            }
        }
    }
    Ok(out)
}

pub(crate) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
