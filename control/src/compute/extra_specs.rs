//! Flavor extra specs: free-form key/value hints for scheduling and the guest's shape.
//! Readers of a flavor read its specs; only admins change them.

use super::flavors::{self, require_admin, FlavorError, FlavorStore};
use crate::context::RequestContext;
use std::collections::BTreeMap;

/// Nova's key rule: 1..=255 of letters, digits, `-`, `_`, `:`, `.` and space.
fn check_key(key: &str) -> Result<(), FlavorError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' ');
    if key.is_empty() || key.len() > 255 || !key.chars().all(ok) {
        return Err(FlavorError::InvalidField {
            field: "extra_specs",
            value: key.to_owned(),
            reason: "keys must be 1 to 255 letters, digits, '-', '_', ':', '.' or spaces".into(),
        });
    }
    Ok(())
}

fn check_value(key: &str, value: &str) -> Result<(), FlavorError> {
    if value.chars().count() > 255 {
        return Err(FlavorError::InvalidField {
            field: "extra_specs",
            value: key.to_owned(),
            reason: "values must be at most 255 characters".into(),
        });
    }
    if let Some(reason) = crate::compute::servers::evacuation::invalid_value(key, value) {
        return Err(FlavorError::InvalidField {
            field: "extra_specs",
            value: key.to_owned(),
            reason,
        });
    }
    // I/O quotas become the monitor's token buckets: whole numbers only.
    crate::compute::servers::monitor::limits::check_spec(key, value).map_err(|e| {
        FlavorError::InvalidField {
            field: "extra_specs",
            value: key.to_owned(),
            reason: e.to_string(),
        }
    })
}

pub fn list(
    db: &dyn FlavorStore,
    ctx: &RequestContext,
    flavor_id: &str,
) -> Result<BTreeMap<String, String>, FlavorError> {
    Ok(flavors::get(db, ctx, flavor_id)?.extra_specs)
}

pub fn get(
    db: &dyn FlavorStore,
    ctx: &RequestContext,
    flavor_id: &str,
    key: &str,
) -> Result<String, FlavorError> {
    let mut specs = list(db, ctx, flavor_id)?;
    specs
        .remove(key)
        .ok_or_else(|| FlavorError::ExtraSpecNotFound {
            flavor: flavor_id.to_owned(),
            key: key.to_owned(),
        })
}

/// Adds or replaces `specs` on the flavor (other keys stay); returns what was set.
pub fn set(
    db: &dyn FlavorStore,
    ctx: &RequestContext,
    flavor_id: &str,
    specs: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, FlavorError> {
    require_admin(ctx, "os-flavor-extra-specs:create")?;
    for (k, v) in &specs {
        check_key(k)?;
        check_value(k, v)?;
    }
    // Admins see every flavor, so "no such flavor" is the only way not to see it.
    if !db.set_extra_specs(flavor_id, &specs)? {
        return Err(FlavorError::NotFound(flavor_id.to_owned()));
    }
    Ok(specs)
}

pub fn delete(
    db: &dyn FlavorStore,
    ctx: &RequestContext,
    flavor_id: &str,
    key: &str,
) -> Result<(), FlavorError> {
    require_admin(ctx, "os-flavor-extra-specs:delete")?;
    match db.delete_extra_spec(flavor_id, key)? {
        None => Err(FlavorError::NotFound(flavor_id.to_owned())),
        Some(false) => Err(FlavorError::ExtraSpecNotFound {
            flavor: flavor_id.to_owned(),
            key: key.to_owned(),
        }),
        Some(true) => Ok(()),
    }
}
