//! What a Cinder client asks before it uses the API: the extensions served
//! (`GET /extensions`) and the availability zones volumes can be made in
//! (`GET /os-availability-zone`).

use super::check_project;
use crate::api::compute::availability_zones;
use crate::api::{Call, Fault, Reply};
use crate::volume::ZONE;
use serde_json::{json, Value};

/// Cinder's extensions this service implements (alias, name, description). Only what is
/// served whole: `os-vol-image-meta` is left out, its set and unset actions are not served.
const EXTENSIONS: &[(&str, &str, &str)] = &[
    (
        "os-availability-zone",
        "AvailabilityZones",
        "Describe Availability Zones.",
    ),
    (
        "os-extended-snapshot-attributes",
        "ExtendedSnapshotAttributes",
        "Extended attributes for snapshots: project_id and progress.",
    ),
    ("os-quota-sets", "Quotas", "Quota management support."),
    (
        "os-used-limits",
        "UsedLimits",
        "Provide data on limited resources that are being used.",
    ),
    (
        "os-vol-host-attr",
        "VolumeHostAttribute",
        "Expose host as an attribute of a volume (admins): its home box.",
    ),
    (
        "os-vol-tenant-attr",
        "VolumeTenantAttribute",
        "Expose the owning project as an attribute of a volume (admins).",
    ),
];

/// `GET /extensions`.
pub fn extensions(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let listed: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(alias, name, description)| {
            json!({
                "alias": alias,
                "name": name,
                "description": description,
                "updated": "2026-01-01T00:00:00+00:00",
                "links": [],
            })
        })
        .collect();
    Ok(Reply::ok(json!({ "extensions": listed })))
}

/// `GET /os-availability-zone`: a box alone homes volumes in its one zone; in a site a
/// volume may be asked for in any zone of the site's boxes (the home picker's zones, the
/// same Nova lists), available while one of its boxes is enabled and up.
pub fn availability_zones(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let zones: Vec<(String, bool)> = if call.state.volume_stores().homes.is_site() {
        let (zones, _) = availability_zones::zones(call)?;
        zones.into_iter().map(|z| (z.name, z.available)).collect()
    } else {
        vec![(ZONE.to_owned(), true)]
    };
    let info: Vec<Value> = zones
        .into_iter()
        .map(|(name, available)| json!({"zoneName": name, "zoneState": {"available": available}}))
        .collect();
    Ok(Reply::ok(json!({ "availabilityZoneInfo": info })))
}
