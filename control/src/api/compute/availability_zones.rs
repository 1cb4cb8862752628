//! Nova's `os-availability-zone`: the zones of the site's boxes (a box's aggregate's zone,
//! else its configured one, else `nova`), each available while one of its boxes is enabled
//! and up. `/detail` (admin) adds each zone's hosts and their nova-compute service.

use serde_json::{json, Map, Value};

use crate::api::{Call, Fault, Reply};
use crate::cluster::site::BoxView;
use crate::compute::aggregates::{self, ZoneHost};

/// The site's zones with its boxes; Cinder's zone list in a site is the same.
pub(crate) fn zones(call: &Call<'_>) -> Result<(Vec<aggregates::Zone>, Vec<BoxView>), Fault> {
    let boxes = super::site_boxes(call)?;
    let hosts: Vec<ZoneHost> = boxes
        .iter()
        .map(|b| ZoneHost {
            name: b.record.name.clone(),
            configured_zone: b.record.availability_zone.clone(),
            enabled: b.record.enabled,
            up: b.up,
        })
        .collect();
    let all = call.state.doors.aggregates.aggregates()?;
    Ok((aggregates::zones(&all, &hosts), boxes))
}

/// `GET /os-availability-zone`: every caller may list the zones, without their hosts.
pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    let (zones, _) = zones(call)?;
    let info: Vec<Value> = zones
        .iter()
        .map(|z| {
            json!({
                "zoneName": z.name,
                "zoneState": {"available": z.available},
                "hosts": null,
            })
        })
        .collect();
    Ok(Reply::ok(json!({"availabilityZoneInfo": info})))
}

/// `GET /os-availability-zone/detail` (admin): with each host's nova-compute service,
/// `available` when it is up and `active` when it is enabled, as Nova says them.
pub fn detail(call: &Call<'_>) -> Result<Reply, Fault> {
    if !call.ctx().is_admin() {
        return Err(Fault::forbidden(
            "Policy doesn't allow os_compute_api:os-availability-zone:detail to be performed.",
        ));
    }
    let (zones, boxes) = zones(call)?;
    let info: Vec<Value> = zones
        .iter()
        .map(|z| {
            let hosts: Map<String, Value> = z
                .hosts
                .iter()
                .filter_map(|h| boxes.iter().find(|b| b.record.name == *h))
                .map(|b| {
                    let service = json!({
                        "nova-compute": {
                            "available": b.up,
                            "active": b.record.enabled,
                            "updated_at": b.updated_at,
                        }
                    });
                    (b.record.name.clone(), service)
                })
                .collect();
            json!({
                "zoneName": z.name,
                "zoneState": {"available": z.available},
                "hosts": hosts,
            })
        })
        .collect();
    Ok(Reply::ok(json!({"availabilityZoneInfo": info})))
}
