//! Listing volumes and snapshots: Cinder's filters (`name`, `status`), sorting (`sort_key`,
//! `sort_dir`, `sort=key:dir`), and paging (`limit`, `marker`). Pure functions over loaded
//! records.

use super::store::{Snapshot, Volume};
use super::VolumeError;
use crate::timestamp::Timestamp;
use std::cmp::Ordering;

/// Cinder's `osapi_max_limit`.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Name,
    Status,
    Size,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "id" => Self::Id,
            "name" | "display_name" => Self::Name,
            "status" => Self::Status,
            "size" => Self::Size,
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            _ => return None,
        })
    }
}

/// A listing request. Admins see every project's records with `all_projects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub all_projects: bool,
    pub name: Option<String>,
    pub status: Option<String>,
    /// Snapshots only: of this volume.
    pub volume_id: Option<String>,
    /// (key, descending); ties go to the id, newest-first by default as in Cinder.
    pub sort: Vec<(SortKey, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    /// Cinder's `offset`: how many to skip (after the marker, when there is one).
    pub offset: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            all_projects: false,
            name: None,
            status: None,
            volume_id: None,
            sort: vec![(SortKey::CreatedAt, true)],
            limit: None,
            marker: None,
            offset: 0,
        }
    }
}

/// What listing needs from a record.
pub trait Listed {
    fn id(&self) -> &str;
    fn name(&self) -> Option<&str>;
    fn status(&self) -> &str;
    fn size(&self) -> i64;
    fn created_at(&self) -> Timestamp;
    fn updated_at(&self) -> Timestamp;
    fn volume_id(&self) -> &str;
}

impl Listed for Volume {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn status(&self) -> &str {
        self.status.as_str()
    }
    fn size(&self) -> i64 {
        self.size
    }
    fn created_at(&self) -> Timestamp {
        self.created_at
    }
    fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    fn volume_id(&self) -> &str {
        &self.id
    }
}

impl Listed for Snapshot {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn status(&self) -> &str {
        self.status.as_str()
    }
    fn size(&self) -> i64 {
        self.size
    }
    fn created_at(&self) -> Timestamp {
        self.created_at
    }
    fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    fn volume_id(&self) -> &str {
        &self.volume_id
    }
}

fn compare<T: Listed>(key: SortKey, a: &T, b: &T) -> Ordering {
    match key {
        SortKey::Id => a.id().cmp(b.id()),
        SortKey::Name => a.name().cmp(&b.name()),
        SortKey::Status => a.status().cmp(b.status()),
        SortKey::Size => a.size().cmp(&b.size()),
        SortKey::CreatedAt => a.created_at().cmp(&b.created_at()),
        SortKey::UpdatedAt => a.updated_at().cmp(&b.updated_at()),
    }
}

/// Filters, sorts and pages `items` (already restricted to what the caller may see).
pub fn page<T: Listed>(items: Vec<T>, q: &ListQuery) -> Result<Vec<T>, VolumeError> {
    let mut shown: Vec<T> = items
        .into_iter()
        .filter(|i| q.name.as_deref().is_none_or(|n| i.name() == Some(n)))
        .filter(|i| q.status.as_deref().is_none_or(|s| i.status() == s))
        .filter(|i| q.volume_id.as_deref().is_none_or(|v| i.volume_id() == v))
        .collect();
    shown.sort_by(|a, b| {
        for &(key, desc) in &q.sort {
            let o = compare(key, a, b);
            let o = if desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = a.id().cmp(b.id());
        if q.sort.last().is_some_and(|&(_, d)| d) {
            o.reverse()
        } else {
            o
        }
    });
    let start = match &q.marker {
        None => 0,
        Some(m) => {
            shown
                .iter()
                .position(|i| i.id() == m)
                .ok_or_else(|| VolumeError::MarkerNotFound(m.clone()))?
                + 1
        }
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    Ok(shown
        .into_iter()
        .skip(start.saturating_add(q.offset))
        .take(limit)
        .collect())
}
