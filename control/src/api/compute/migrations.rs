//! Nova's `GET /os-migrations` (admin, as Nova's default policy has it): every evacuation,
//! cold migration and resize of a server, newest first, with Nova's filters (`host`,
//! `status`, `instance_uuid`, `migration_type`, `source_compute`) and the fields each
//! microversion adds (`migration_type` from 2.23, `uuid` from 2.59, the owner's project and
//! user from 2.80).

use serde_json::{json, Value};

use super::version;
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::compute::migrations::{self, Migration, MigrationFilter};
use crate::timestamp::Timestamp;

const WITH_TYPE: ApiVersion = ApiVersion::new(2, 23);
const WITH_UUID: ApiVersion = ApiVersion::new(2, 59);
const WITH_OWNER: ApiVersion = ApiVersion::new(2, 80);

/// Nova's timestamps here have no zone.
fn naive(t: Timestamp) -> String {
    let text = t.to_rfc3339_micros();
    text.trim_end_matches('Z').to_owned()
}

fn view(call: &Call<'_>, m: &Migration) -> Value {
    let v = version(call);
    // Nova names each box twice (service host and hypervisor node); a box is both.
    let mut out = json!({
        "id": m.id,
        "instance_uuid": m.instance_uuid,
        "source_compute": m.source_compute,
        "source_node": m.source_compute,
        "dest_compute": m.dest_compute,
        "dest_node": m.dest_compute,
        "dest_host": Value::Null,
        "source_region": call.state.region,
        "dest_region": call.state.region,
        "status": m.status,
        "old_instance_type_id": m.old_flavor,
        "new_instance_type_id": m.new_flavor,
        "created_at": naive(m.created_at),
        "updated_at": m.updated_at.map(naive),
    });
    if v >= WITH_TYPE {
        out["migration_type"] = json!(m.migration_type.as_str());
    }
    if v >= WITH_UUID {
        out["uuid"] = json!(m.uuid);
    }
    if v >= WITH_OWNER {
        out["project_id"] = json!(m.project_id);
        out["user_id"] = json!(m.user_id);
    }
    out
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    if !call.ctx().is_admin() {
        return Err(Fault::forbidden(
            "Policy doesn't allow os_compute_api:os-migrations:index to be performed.",
        ));
    }
    let filter = MigrationFilter {
        host: call.query("host").map(str::to_owned),
        status: call.query("status").map(str::to_owned),
        instance_uuid: call.query("instance_uuid").map(str::to_owned),
        migration_type: call.query("migration_type").map(str::to_owned),
        source_compute: call.query("source_compute").map(str::to_owned),
    };
    let all = migrations::list(call.state.fleet.migrations(), &filter).map_err(Fault::internal)?;
    let views: Vec<Value> = all.iter().map(|m| view(call, m)).collect();
    Ok(Reply::ok(json!({ "migrations": views })))
}
