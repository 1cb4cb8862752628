//! Flavors: the sizes a server can have. Anyone scoped to a project reads public flavors; only
//! admins create, describe and delete them (Nova's default policy). Private flavors are seen
//! by admins only, as no flavor-access list exists yet.

use super::{MAX_INT, MAX_PAGE};
use crate::context::RequestContext;
use crate::random::{self, RandomError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

pub mod store;

pub use store::{Flavor, FlavorFilter, FlavorStore, SortKey};

#[derive(Debug, thiserror::Error)]
pub enum FlavorError {
    #[error("Flavor {0} could not be found.")]
    NotFound(String),
    #[error("Flavor with name {0} already exists.")]
    NameExists(String),
    #[error("Flavor with ID {0} already exists.")]
    IdExists(String),
    #[error("Flavor {flavor} has no extra specs with key {key}.")]
    ExtraSpecNotFound { flavor: String, key: String },
    #[error("Invalid input for field/attribute {field}. Value: {value}. {reason}")]
    InvalidField {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("marker [{0}] not found")]
    MarkerNotFound(String),
    #[error("Policy doesn't allow os_compute_api:{0} to be performed.")]
    Forbidden(&'static str),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, Clone)]
pub struct NewFlavor {
    pub name: String,
    /// None: a UUID is generated.
    pub id: Option<String>,
    pub ram: i64,
    pub vcpus: i64,
    pub disk: i64,
    pub ephemeral: i64,
    pub swap: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub description: Option<String>,
}

/// Which flavors a listing wants, already parsed from the query string.
#[derive(Debug, Clone)]
pub struct FlavorQuery {
    pub min_ram: Option<i64>,
    pub min_disk: Option<i64>,
    /// Honoured for admins only; `None` lists public and private flavors.
    pub is_public: Option<bool>,
    pub sort_key: SortKey,
    pub descending: bool,
    pub limit: Option<usize>,
    /// The id of the last flavor of the previous page.
    pub marker: Option<String>,
}

impl Default for FlavorQuery {
    fn default() -> Self {
        FlavorQuery {
            min_ram: None,
            min_disk: None,
            is_public: Some(true),
            sort_key: SortKey::FlavorId,
            descending: false,
            limit: None,
            marker: None,
        }
    }
}

pub(super) fn require_admin(ctx: &RequestContext, rule: &'static str) -> Result<(), FlavorError> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(FlavorError::Forbidden(rule))
    }
}

fn invalid(field: &'static str, value: impl ToString, reason: String) -> FlavorError {
    FlavorError::InvalidField {
        field,
        value: value.to_string(),
        reason,
    }
}

fn check_range(field: &'static str, v: i64, min: i64) -> Result<(), FlavorError> {
    if v < min {
        return Err(invalid(
            field,
            v,
            format!("{v} is less than the minimum of {min}"),
        ));
    }
    if v > MAX_INT {
        return Err(invalid(
            field,
            v,
            format!("{v} is greater than the maximum of {MAX_INT}"),
        ));
    }
    Ok(())
}

/// Text Nova accepts in names and descriptions: printable, no control characters.
fn check_text(field: &'static str, v: &str, min: usize, max: usize) -> Result<(), FlavorError> {
    let len = v.chars().count();
    if len < min || len > max {
        return Err(invalid(
            field,
            v,
            format!("must be {min} to {max} characters long"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(
            field,
            v,
            "must not contain control characters".into(),
        ));
    }
    Ok(())
}

impl NewFlavor {
    fn validate(&self) -> Result<(), FlavorError> {
        check_text("name", &self.name, 1, 255)?;
        if self.name.trim() != self.name {
            return Err(invalid(
                "name",
                &self.name,
                "has leading or trailing whitespace".into(),
            ));
        }
        if let Some(id) = &self.id {
            check_flavor_id(id)?;
        }
        check_range("ram", self.ram, 1)?;
        check_range("vcpus", self.vcpus, 1)?;
        check_range("disk", self.disk, 0)?;
        check_range("OS-FLV-EXT-DATA:ephemeral", self.ephemeral, 0)?;
        check_range("swap", self.swap, 0)?;
        // Nova stores rxtx_factor as a 32-bit float.
        let r = self.rxtx_factor;
        if !(r > 0.0 && r <= f64::from(f32::MAX)) {
            return Err(invalid(
                "rxtx_factor",
                r,
                format!("must be greater than 0 and at most {}", f32::MAX),
            ));
        }
        if let Some(d) = &self.description {
            check_text("description", d, 0, 65535)?;
        }
        Ok(())
    }
}

/// Nova's flavor id rule: 1..=255 of letters, digits, `.`, ` `, `_`, `-`; no edge spaces.
fn check_flavor_id(id: &str) -> Result<(), FlavorError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ' ' | '_' | '-');
    if id.is_empty() || id.len() > 255 || !id.chars().all(ok_char) || id.trim() != id {
        return Err(invalid(
            "id",
            id,
            "must be 1 to 255 letters, digits, '.', '_', '-' or inner spaces".into(),
        ));
    }
    Ok(())
}

pub fn create(
    db: &dyn FlavorStore,
    ctx: &RequestContext,
    new: NewFlavor,
) -> Result<Flavor, FlavorError> {
    require_admin(ctx, "os-flavor-manage:create")?;
    new.validate()?;
    let id = match new.id {
        Some(id) => id,
        None => random::uuid()?,
    };
    let flavor = Flavor {
        seq: 0,
        id,
        name: new.name,
        ram: new.ram,
        vcpus: new.vcpus,
        disk: new.disk,
        ephemeral: new.ephemeral,
        swap: new.swap,
        rxtx_factor: new.rxtx_factor,
        is_public: new.is_public,
        disabled: false,
        description: new.description,
        extra_specs: BTreeMap::new(),
        created_at: Timestamp::now(),
        updated_at: None,
    };
    db.create_flavor(&flavor)
}

/// The flavor `id` if the caller may see it (an admin any, others the public ones).
pub fn get(db: &dyn FlavorStore, ctx: &RequestContext, id: &str) -> Result<Flavor, FlavorError> {
    db.flavor(id)?
        .filter(|f| f.is_public || ctx.is_admin())
        .ok_or_else(|| FlavorError::NotFound(id.to_owned()))
}

/// One page of flavors, after the marker, at most `limit` (capped at [`MAX_PAGE`]).
pub fn list(
    db: &dyn FlavorStore,
    ctx: &RequestContext,
    q: &FlavorQuery,
) -> Result<Vec<Flavor>, FlavorError> {
    for (field, v) in [("minRam", q.min_ram), ("minDisk", q.min_disk)] {
        if let Some(v) = v {
            check_range(field, v, 0)?;
        }
    }
    let filter = FlavorFilter {
        min_ram: q.min_ram,
        min_disk: q.min_disk,
        is_public: if ctx.is_admin() {
            q.is_public
        } else {
            Some(true)
        },
        sort_key: q.sort_key,
        descending: q.descending,
    };
    let all = db.flavors(&filter)?;
    let start = match &q.marker {
        None => 0,
        Some(m) => {
            all.iter()
                .position(|f| &f.id == m)
                .ok_or_else(|| FlavorError::MarkerNotFound(m.clone()))?
                + 1
        }
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    Ok(all.into_iter().skip(start).take(limit).collect())
}

pub fn delete(db: &dyn FlavorStore, ctx: &RequestContext, id: &str) -> Result<(), FlavorError> {
    require_admin(ctx, "os-flavor-manage:delete")?;
    if !db.delete_flavor(id)? {
        return Err(FlavorError::NotFound(id.to_owned()));
    }
    Ok(())
}

/// Replaces the description (microversion 2.55's only mutable field).
pub fn set_description(
    db: &dyn FlavorStore,
    ctx: &RequestContext,
    id: &str,
    description: Option<String>,
) -> Result<Flavor, FlavorError> {
    require_admin(ctx, "os-flavor-manage:update")?;
    if let Some(d) = &description {
        check_text("description", d, 0, 65535)?;
    }
    db.set_flavor_description(id, description.as_deref())?
        .ok_or_else(|| FlavorError::NotFound(id.to_owned()))
}

#[cfg(test)]
mod tests;
