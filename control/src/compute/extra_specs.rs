//! Flavor extra specs: free-form key/value hints for scheduling and the guest's shape.
//! Readers of a flavor read its specs; only admins change them.

use super::flavors::{require_admin, visible, FlavorError};
use crate::context::RequestContext;
use crate::storage::flavors as store;
use crate::storage::Db;
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
    Ok(())
}

pub fn list(
    db: &Db,
    ctx: &RequestContext,
    flavor_id: &str,
) -> Result<BTreeMap<String, String>, FlavorError> {
    Ok(db.read(|c| visible(c, ctx, flavor_id))?.extra_specs)
}

pub fn get(
    db: &Db,
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
    db: &Db,
    ctx: &RequestContext,
    flavor_id: &str,
    specs: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, FlavorError> {
    require_admin(ctx, "os-flavor-extra-specs:create")?;
    for (k, v) in &specs {
        check_key(k)?;
        check_value(k, v)?;
    }
    db.write(|tx| {
        let f = visible(tx, ctx, flavor_id)?;
        store::set_extra_specs(tx, f.seq, &specs)?;
        Ok(specs)
    })
}

pub fn delete(
    db: &Db,
    ctx: &RequestContext,
    flavor_id: &str,
    key: &str,
) -> Result<(), FlavorError> {
    require_admin(ctx, "os-flavor-extra-specs:delete")?;
    db.write(|tx| {
        let f = visible(tx, ctx, flavor_id)?;
        if !store::delete_extra_spec(tx, f.seq, key)? {
            return Err(FlavorError::ExtraSpecNotFound {
                flavor: flavor_id.to_owned(),
                key: key.to_owned(),
            });
        }
        Ok(())
    })
}
