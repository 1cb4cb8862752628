//! Nova's host aggregates (`os-aggregates`) and the availability zones they make: admins group
//! hosts (box names), give a group metadata and, through its `availability_zone` key, a zone.
//! A host's zone is the zone of its aggregate that has one, else the zone its box was
//! configured with (`[cluster] availability_zone`), else Nova's default `nova`. Kept through
//! [`AggregateStore`]; placement reads the aggregates at each decision ([`place_hosts`]).

pub mod store;

pub use store::{Aggregate, AggregateStore, AggregateWrite, ZONE_KEY};

use std::collections::{BTreeMap, BTreeSet};

use crate::context::RequestContext;
use crate::random::{self, RandomError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_resources::{Cluster, HostId, DEFAULT_AVAILABILITY_ZONE};

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("Aggregate {0} could not be found.")]
    NotFound(String),
    /// Nova checks the path's id is an integer before it looks (a name is no id: clients
    /// that find by name list on this 400, as on a 404).
    #[error("Invalid input received: id must be an integer.")]
    NotAnId,
    #[error("Aggregate {0} already exists.")]
    NameExists(String),
    #[error("Compute host {0} could not be found.")]
    HostNotFound(String),
    #[error("Aggregate {id} already has host {host}.")]
    HostExists { id: i64, host: String },
    #[error("Cannot remove host {host} in aggregate {id}")]
    NoSuchMember { id: String, host: String },
    /// A host would be in two zones at once.
    #[error(
        "Cannot add host to aggregate {id}. Reason: One or more hosts already in availability \
         zone(s) {zones:?}."
    )]
    ZoneConflictOnAdd { id: i64, zones: Vec<String> },
    #[error(
        "Cannot update aggregate {id}. Reason: One or more hosts already in availability \
         zone(s) {zones:?}."
    )]
    ZoneConflictOnUpdate { id: i64, zones: Vec<String> },
    #[error("Cannot delete aggregate {0}. Reason: Host aggregate is not empty.")]
    NotEmpty(i64),
    #[error("Invalid input for field/attribute {field}. {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("Policy doesn't allow os_compute_api:os-aggregates:{0} to be performed.")]
    Forbidden(&'static str),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Nova's metadata keys: 1 to 255 of letters, digits and `-_:. /`.
fn check_key(key: &str) -> Result<(), AggregateError> {
    let ok = (1..=255).contains(&key.chars().count())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:. /".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AggregateError::InvalidField {
            field: "metadata",
            reason: format!(
                "'{key}' does not match '^[a-zA-Z0-9-_:. /]{{1,255}}$': a key is 1 to 255 \
                 letters, digits or -_:. /"
            ),
        })
    }
}

/// A name or a zone: 1 to 255 characters, no control character, no space at either end.
fn check_name(field: &'static str, value: &str) -> Result<(), AggregateError> {
    crate::compute::servers::check_name(field, value).map_err(|e| AggregateError::InvalidField {
        field,
        reason: match e {
            crate::compute::servers::ServerError::InvalidField { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

fn admin(ctx: &RequestContext, action: &'static str) -> Result<(), AggregateError> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(AggregateError::Forbidden(action))
    }
}

/// What a caller asks an aggregate to become: a name and a zone (`Some(None)` takes the zone
/// away), each left as is when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateChange {
    pub name: Option<String>,
    pub availability_zone: Option<Option<String>>,
}

/// Every aggregate, in id order.
pub fn list(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
) -> Result<Vec<Aggregate>, AggregateError> {
    admin(ctx, "index")?;
    Ok(store.aggregates()?)
}

/// The aggregate of Nova id `id` (the path's text, which may be no number at all).
pub fn get(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Aggregate, AggregateError> {
    admin(ctx, "show")?;
    find(&store.aggregates()?, id).cloned()
}

/// Makes an aggregate with no host; the zone, if given, goes into its metadata.
pub fn create(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
    name: &str,
    availability_zone: Option<&str>,
) -> Result<Aggregate, AggregateError> {
    admin(ctx, "create")?;
    check_name("name", name)?;
    if let Some(zone) = availability_zone {
        check_name("availability_zone", zone)?;
    }
    let new = Aggregate {
        id: 0,
        uuid: random::uuid()?,
        name: name.to_owned(),
        hosts: BTreeSet::new(),
        metadata: availability_zone
            .map(|z| (ZONE_KEY.to_owned(), z.to_owned()))
            .into_iter()
            .collect(),
        created_at: Timestamp::now(),
        updated_at: None,
    };
    decide(store, |all| {
        if all.iter().any(|a| a.name == new.name) {
            return Err(AggregateError::NameExists(new.name.clone()));
        }
        Ok(AggregateWrite::Create(new.clone()))
    })
}

/// Renames an aggregate or changes its zone; a zone its hosts cannot take (one of them is in
/// another aggregate of another zone) is refused.
pub fn update(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
    id: &str,
    change: &AggregateChange,
) -> Result<Aggregate, AggregateError> {
    admin(ctx, "update")?;
    if let Some(name) = &change.name {
        check_name("name", name)?;
    }
    if let Some(Some(zone)) = &change.availability_zone {
        check_name("availability_zone", zone)?;
    }
    decide(store, |all| {
        let mut a = find(all, id)?.clone();
        if let Some(name) = &change.name {
            if all.iter().any(|o| o.id != a.id && o.name == *name) {
                return Err(AggregateError::NameExists(name.clone()));
            }
            a.name = name.clone();
        }
        if let Some(zone) = &change.availability_zone {
            set_zone(&mut a, zone.as_deref());
            check_zone_on_update(all, &a)?;
        }
        a.updated_at = Some(Timestamp::now());
        Ok(AggregateWrite::Save(a))
    })
}

/// Nova's `set_metadata`: each key given a value is set, each given null is removed; the
/// others stay. `availability_zone` moves the aggregate's hosts to that zone.
pub fn set_metadata(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
    id: &str,
    metadata: &BTreeMap<String, Option<String>>,
) -> Result<Aggregate, AggregateError> {
    admin(ctx, "set_metadata")?;
    for (key, value) in metadata {
        check_key(key)?;
        if let Some(value) = value {
            if value.chars().count() > 255 {
                return Err(AggregateError::InvalidField {
                    field: "metadata",
                    reason: format!("the value of {key} is longer than 255 characters"),
                });
            }
        }
    }
    if let Some(Some(zone)) = metadata.get(ZONE_KEY) {
        check_name("availability_zone", zone)?;
    }
    decide(store, |all| {
        let mut a = find(all, id)?.clone();
        for (key, value) in metadata {
            match value {
                Some(value) => a.metadata.insert(key.clone(), value.clone()),
                None => a.metadata.remove(key),
            };
        }
        if metadata.contains_key(ZONE_KEY) {
            check_zone_on_update(all, &a)?;
        }
        a.updated_at = Some(Timestamp::now());
        Ok(AggregateWrite::Save(a))
    })
}

/// Deletes an aggregate that has no host left.
pub fn delete(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<(), AggregateError> {
    admin(ctx, "delete")?;
    decide(store, |all| {
        let a = find(all, id)?;
        if !a.hosts.is_empty() {
            return Err(AggregateError::NotEmpty(a.id));
        }
        Ok(AggregateWrite::Delete(a.id))
    })
    .map(|_| ())
}

/// Adds `host`, one of `known_hosts` (the site's boxes), to an aggregate. Refused when the
/// aggregate has a zone and the host is in another aggregate of another zone, as Nova does:
/// a host is in one zone.
pub fn add_host(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
    id: &str,
    host: &str,
    known_hosts: &[String],
) -> Result<Aggregate, AggregateError> {
    admin(ctx, "add_host")?;
    if !known_hosts.iter().any(|h| h == host) {
        return Err(AggregateError::HostNotFound(host.to_owned()));
    }
    decide(store, |all| {
        let mut a = find(all, id)?.clone();
        if a.hosts.contains(host) {
            return Err(AggregateError::HostExists {
                id: a.id,
                host: host.to_owned(),
            });
        }
        if let Some(zone) = a.availability_zone() {
            let others = other_zones(all, a.id, host, zone);
            if !others.is_empty() {
                return Err(AggregateError::ZoneConflictOnAdd {
                    id: a.id,
                    zones: others,
                });
            }
        }
        a.hosts.insert(host.to_owned());
        a.updated_at = Some(Timestamp::now());
        Ok(AggregateWrite::Save(a))
    })
}

/// Takes `host` out of an aggregate it is in.
pub fn remove_host(
    store: &dyn AggregateStore,
    ctx: &RequestContext,
    id: &str,
    host: &str,
) -> Result<Aggregate, AggregateError> {
    admin(ctx, "remove_host")?;
    decide(store, |all| {
        // Nova says the same of an unknown aggregate as of a host not in it.
        let mut a = match find(all, id) {
            Err(AggregateError::NotFound(_)) => {
                return Err(AggregateError::NoSuchMember {
                    id: id.to_owned(),
                    host: host.to_owned(),
                })
            }
            found => found?.clone(),
        };
        if !a.hosts.remove(host) {
            return Err(AggregateError::NoSuchMember {
                id: a.id.to_string(),
                host: host.to_owned(),
            });
        }
        a.updated_at = Some(Timestamp::now());
        Ok(AggregateWrite::Save(a))
    })
}

/// Runs `rule` on the aggregates as stored and writes what it decides; its refusal is the
/// answer. A write that finds nothing to write (the aggregate went away meanwhile) is a 404.
fn decide(
    store: &dyn AggregateStore,
    rule: impl Fn(&[Aggregate]) -> Result<AggregateWrite, AggregateError>,
) -> Result<Aggregate, AggregateError> {
    let mut refused = None;
    let mut target = String::new();
    let written = store.write(&mut |all: &[Aggregate]| match rule(all) {
        Ok(write) => {
            refused = None;
            target = match &write {
                AggregateWrite::Create(a) => a.name.clone(),
                AggregateWrite::Save(a) => a.id.to_string(),
                AggregateWrite::Delete(id) => id.to_string(),
            };
            Some(write)
        }
        Err(e) => {
            refused = Some(e);
            None
        }
    })?;
    if let Some(e) = refused {
        return Err(e);
    }
    written.ok_or(AggregateError::NotFound(target))
}

fn find<'a>(all: &'a [Aggregate], id: &str) -> Result<&'a Aggregate, AggregateError> {
    let wanted: i64 = id.trim().parse().map_err(|_| AggregateError::NotAnId)?;
    all.iter()
        .find(|a| a.id == wanted)
        .ok_or_else(|| AggregateError::NotFound(id.to_owned()))
}

fn set_zone(a: &mut Aggregate, zone: Option<&str>) {
    match zone {
        Some(zone) => a.metadata.insert(ZONE_KEY.to_owned(), zone.to_owned()),
        None => a.metadata.remove(ZONE_KEY),
    };
}

/// The zones other than `zone` that aggregates other than `id` give `host`.
fn other_zones(all: &[Aggregate], id: i64, host: &str, zone: &str) -> Vec<String> {
    let zones: BTreeSet<String> = all
        .iter()
        .filter(|o| o.id != id && o.hosts.contains(host))
        .filter_map(Aggregate::availability_zone)
        .filter(|z| *z != zone)
        .map(str::to_owned)
        .collect();
    zones.into_iter().collect()
}

/// `changed`'s zone (as it is to become) must be the zone every other aggregate of its hosts
/// gives them.
fn check_zone_on_update(all: &[Aggregate], changed: &Aggregate) -> Result<(), AggregateError> {
    let Some(zone) = changed.availability_zone() else {
        return Ok(());
    };
    let zones: BTreeSet<String> = changed
        .hosts
        .iter()
        .flat_map(|h| other_zones(all, changed.id, h, zone))
        .collect();
    if zones.is_empty() {
        Ok(())
    } else {
        Err(AggregateError::ZoneConflictOnUpdate {
            id: changed.id,
            zones: zones.into_iter().collect(),
        })
    }
}

/// The zone of `host`: the zone of an aggregate of it that has one, else `configured` (its
/// box's own, Nova's default when none was set).
pub fn zone_of<'a>(aggregates: &'a [Aggregate], host: &str, configured: &'a str) -> &'a str {
    aggregates
        .iter()
        .filter(|a| a.hosts.contains(host))
        .find_map(Aggregate::availability_zone)
        .unwrap_or(configured)
}

/// Puts each host of `cluster` in its aggregates, as the scheduler reads them: their names,
/// their metadata merged per key (AggregateInstanceExtraSpecsFilter), and the zone they give
/// (AvailabilityZoneFilter). `configured` is a host's zone when no aggregate gives one.
pub fn place_hosts(
    cluster: &mut Cluster,
    aggregates: &[Aggregate],
    configured: impl Fn(&HostId, &str) -> String,
) {
    let ids: Vec<HostId> = cluster.hosts().map(|h| h.id().clone()).collect();
    for id in ids {
        let Some(host) = cluster.host_mut(&id) else {
            continue;
        };
        let own = configured(&id, &host.availability_zone);
        host.availability_zone = zone_of(aggregates, &id.0, &own).to_owned();
        host.aggregates.clear();
        host.aggregate_metadata.clear();
        for a in aggregates.iter().filter(|a| a.hosts.contains(&id.0)) {
            host.aggregates.insert(a.name.clone());
            for (key, value) in &a.metadata {
                host.aggregate_metadata
                    .entry(key.clone())
                    .or_default()
                    .insert(value.clone());
            }
        }
    }
}

/// A compute host as the zone list sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneHost {
    pub name: String,
    /// The zone its box was configured with (Nova's default when none was).
    pub configured_zone: String,
    pub enabled: bool,
    pub up: bool,
}

/// An availability zone as `os-availability-zone` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    /// Whether a server asked for in it can be placed now: one of its hosts is enabled and
    /// up. (Nova calls a zone available when one of its services is enabled; a box that is
    /// down takes nothing either, so we ask both.)
    pub available: bool,
    /// Its hosts, in the order given.
    pub hosts: Vec<String>,
}

/// The zones `hosts` are in, by name; a zone no host is in is no zone (an aggregate's zone
/// appears once a host is added to it), as in Nova.
pub fn zones(aggregates: &[Aggregate], hosts: &[ZoneHost]) -> Vec<Zone> {
    let mut zones: BTreeMap<String, Zone> = BTreeMap::new();
    for h in hosts {
        let name = zone_of(aggregates, &h.name, &h.configured_zone).to_owned();
        let zone = zones.entry(name.clone()).or_insert_with(|| Zone {
            name,
            available: false,
            hosts: Vec::new(),
        });
        zone.available |= h.enabled && h.up;
        zone.hosts.push(h.name.clone());
    }
    zones.into_values().collect()
}

/// Nova's default zone, for a host no zone was configured for.
pub const DEFAULT_ZONE: &str = DEFAULT_AVAILABILITY_ZONE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;
    use outpost_resources::Host;

    fn caller(roles: &[&str]) -> RequestContext {
        RequestContext {
            user_id: "u".into(),
            user_name: "u".into(),
            project_id: Some("p".into()),
            project_name: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn boxes() -> Vec<String> {
        vec!["box1".into(), "box2".into()]
    }

    #[test]
    fn only_admins_touch_aggregates() {
        let db = Db::open_in_memory().unwrap();
        let member = caller(&["member"]);
        assert_eq!(
            create(&db, &member, "a", None).unwrap_err().to_string(),
            "Policy doesn't allow os_compute_api:os-aggregates:create to be performed."
        );
        assert!(matches!(
            list(&db, &member),
            Err(AggregateError::Forbidden("index"))
        ));
        assert!(db.aggregates().unwrap().is_empty());
    }

    #[test]
    fn names_are_unique_and_ids_must_be_integers() {
        let db = Db::open_in_memory().unwrap();
        let admin = caller(&["admin"]);
        let a = create(&db, &admin, "edge", Some("z1")).unwrap();
        assert_eq!(a.availability_zone(), Some("z1"));
        assert_eq!(
            create(&db, &admin, "edge", None).unwrap_err().to_string(),
            "Aggregate edge already exists."
        );
        let b = create(&db, &admin, "core", None).unwrap();
        let rename = AggregateChange {
            name: Some("edge".into()),
            availability_zone: None,
        };
        assert!(matches!(
            update(&db, &admin, &b.id.to_string(), &rename),
            Err(AggregateError::NameExists(_))
        ));
        assert!(matches!(
            get(&db, &admin, "edge"),
            Err(AggregateError::NotAnId)
        ));
        assert_eq!(
            get(&db, &admin, "999").unwrap_err().to_string(),
            "Aggregate 999 could not be found."
        );
        for bad in ["", " lead"] {
            assert!(matches!(
                create(&db, &admin, bad, None),
                Err(AggregateError::InvalidField { field: "name", .. })
            ));
        }
    }

    #[test]
    fn hosts_join_known_boxes_once_and_keep_one_zone() {
        let db = Db::open_in_memory().unwrap();
        let admin = caller(&["admin"]);
        let z1 = create(&db, &admin, "a", Some("z1")).unwrap().id.to_string();
        let z2 = create(&db, &admin, "b", Some("z2")).unwrap().id.to_string();
        let plain = create(&db, &admin, "c", None).unwrap().id.to_string();
        assert_eq!(
            add_host(&db, &admin, &z1, "box9", &boxes())
                .unwrap_err()
                .to_string(),
            "Compute host box9 could not be found."
        );
        let a = add_host(&db, &admin, &z1, "box1", &boxes()).unwrap();
        assert!(a.hosts.contains("box1"));
        assert!(matches!(
            add_host(&db, &admin, &z1, "box1", &boxes()),
            Err(AggregateError::HostExists { .. })
        ));
        assert_eq!(
            add_host(&db, &admin, &z2, "box1", &boxes())
                .unwrap_err()
                .to_string(),
            format!(
                "Cannot add host to aggregate {z2}. Reason: One or more hosts already in \
                 availability zone(s) [\"z1\"]."
            )
        );
        // An aggregate without a zone takes any host; giving it a zone its host is not in
        // is refused.
        add_host(&db, &admin, &plain, "box1", &boxes()).unwrap();
        let to_z2 = AggregateChange {
            name: None,
            availability_zone: Some(Some("z2".into())),
        };
        assert!(matches!(
            update(&db, &admin, &plain, &to_z2),
            Err(AggregateError::ZoneConflictOnUpdate { .. })
        ));
        let meta = [(ZONE_KEY.to_owned(), Some("z2".to_owned()))].into();
        assert!(matches!(
            set_metadata(&db, &admin, &plain, &meta),
            Err(AggregateError::ZoneConflictOnUpdate { .. })
        ));
        let meta = [(ZONE_KEY.to_owned(), Some("z1".to_owned()))].into();
        assert_eq!(
            set_metadata(&db, &admin, &plain, &meta)
                .unwrap()
                .availability_zone(),
            Some("z1")
        );
        // Not empty: not deleted; emptied: deleted.
        assert!(matches!(
            delete(&db, &admin, &z1),
            Err(AggregateError::NotEmpty(_))
        ));
        assert_eq!(
            remove_host(&db, &admin, &z1, "box2")
                .unwrap_err()
                .to_string(),
            format!("Cannot remove host box2 in aggregate {z1}")
        );
        remove_host(&db, &admin, &z1, "box1").unwrap();
        delete(&db, &admin, &z1).unwrap();
        assert!(matches!(
            get(&db, &admin, &z1),
            Err(AggregateError::NotFound(_))
        ));
    }

    #[test]
    fn set_metadata_sets_and_removes_keys_and_checks_them() {
        let db = Db::open_in_memory().unwrap();
        let admin = caller(&["admin"]);
        let id = create(&db, &admin, "a", None).unwrap().id.to_string();
        let set = [
            ("ssd".to_owned(), Some("true".to_owned())),
            ("tier".to_owned(), Some("gold".to_owned())),
        ]
        .into();
        set_metadata(&db, &admin, &id, &set).unwrap();
        let unset = [("tier".to_owned(), None)].into();
        let a = set_metadata(&db, &admin, &id, &unset).unwrap();
        assert_eq!(a.metadata, [("ssd".to_owned(), "true".to_owned())].into());
        let bad = [("no=equals".to_owned(), Some("x".to_owned()))].into();
        assert!(matches!(
            set_metadata(&db, &admin, &id, &bad),
            Err(AggregateError::InvalidField { .. })
        ));
    }

    #[test]
    fn hosts_take_their_aggregates_zone_and_metadata_else_their_own_zone() {
        let mut agg = store::conformance::aggregate("fast");
        agg.hosts.insert("box1".into());
        agg.metadata.insert(ZONE_KEY.into(), "z1".into());
        agg.metadata.insert("ssd".into(), "true".into());
        let mut cluster = Cluster::from_hosts([
            Host::new("box1", "box1"),
            Host::new("box2", "box2").in_zone("edge"),
        ])
        .unwrap();
        // A host left in a zone by an aggregate since removed is back in its own.
        cluster
            .host_mut(&HostId("box1".into()))
            .unwrap()
            .availability_zone = "stale".into();
        place_hosts(&mut cluster, std::slice::from_ref(&agg), |id, current| {
            if id.0 == "box1" {
                DEFAULT_ZONE.to_owned()
            } else {
                current.to_owned()
            }
        });
        let host = |name: &str| cluster.host(&HostId(name.into())).unwrap().clone();
        assert_eq!(host("box1").availability_zone, "z1");
        assert!(host("box1").aggregates.contains("fast"));
        assert!(host("box1").aggregate_metadata["ssd"].contains("true"));
        assert_eq!(host("box2").availability_zone, "edge");
        assert!(host("box2").aggregate_metadata.is_empty());
        let listed = zones(
            &[agg],
            &[
                ZoneHost {
                    name: "box1".into(),
                    configured_zone: DEFAULT_ZONE.into(),
                    enabled: true,
                    up: false,
                },
                ZoneHost {
                    name: "box2".into(),
                    configured_zone: DEFAULT_ZONE.into(),
                    enabled: true,
                    up: true,
                },
            ],
        );
        assert_eq!(
            listed,
            [
                Zone {
                    name: "nova".into(),
                    available: true,
                    hosts: vec!["box2".into()],
                },
                Zone {
                    name: "z1".into(),
                    available: false,
                    hosts: vec!["box1".into()],
                },
            ]
        );
    }
}
