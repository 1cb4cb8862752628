//! Where servers go: the cluster of hosts (this box, from `[compute]`) and its claims,
//! scheduled by `outpost-resources` (filters → weighers → claim). Every change to the
//! claims is saved through placement's door ([`store::ClaimStore`]) before it counts, each
//! in one atomic write, and the saved claims are replayed at start. One lock serialises
//! scheduling, as the resources crate expects.
//!
//! Placement's writes are its own: the saga step that takes a claim records its progress
//! first, so a crash between the claim and the server's next write is undone by releasing
//! the claim (see `saga.rs`).
//!
//! A server in a group is placed by where its group's members run, read from the group's
//! door at each decision (under the lock on one box; after the site's read in a site, whose
//! commit compares the group's placement generation). A multi-create's servers are placed
//! in one decision ([`Placement::claim_many`]).
//!
//! Each decision also reads the host aggregates (`compute::aggregates`): they give the hosts
//! their zones and the metadata AggregateInstanceExtraSpecsFilter matches.

pub mod store;

use super::config::ComputeSettings;
use crate::compute::aggregates::{self, AggregateStore};
use crate::compute::server_groups::ServerGroupStore;
use crate::compute::servers::store::FlavorSnapshot;
use crate::store::StorageError;
use outpost_resources::{
    BatchPosition, Claim, ClaimError, Cluster, ConsumerId, Flavor, FlavorError, GroupMember,
    HostId, InventoryError, NoValidHost, Resize, ResourceClass, ScheduleError, Scheduler,
    ServerGroup,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use store::{ClaimChange, ClaimStore, PlacementDoor, SiteClaims, SiteView};

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error(transparent)]
    NoValidHost(#[from] NoValidHost),
    #[error("the flavor cannot be scheduled: {0}")]
    Flavor(#[from] FlavorError),
    #[error("claim refused: {0}")]
    Claim(#[from] ClaimError),
    #[error("the host's inventory is invalid: {0}")]
    Inventory(#[from] InventoryError),
    #[error("the scheduler configuration is invalid: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the site's claims kept changing while this one was being placed; try again")]
    Contended,
}

impl From<ScheduleError> for PlacementError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::NoValidHost(n) => PlacementError::NoValidHost(n),
            ScheduleError::Claim(c) => PlacementError::Claim(c),
        }
    }
}

/// The consumer that holds a resized server's old size until confirm or revert.
pub fn migration_id(server_id: &str) -> ConsumerId {
    ConsumerId(format!("migration:{server_id}"))
}

/// The scheduler's view of a server's flavor.
pub fn resource_flavor(f: &FlavorSnapshot) -> Flavor {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Flavor {
        vcpus: n(f.vcpus),
        ram_mb: n(f.ram),
        disk_gb: n(f.disk),
        ephemeral_gb: n(f.ephemeral),
        swap_mb: n(f.swap),
        extra_specs: f.extra_specs.clone(),
    }
}

/// Where a server may go, resolved from its create request: the zone, the host an admin
/// named, the boxes that run the servers its `same_host` / `different_host` hints name, and
/// the server group it joined (whose members placement reads at each decision).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub availability_zone: Option<String>,
    pub host: Option<String>,
    pub same_host: std::collections::BTreeSet<String>,
    pub different_host: std::collections::BTreeSet<String>,
    pub group: Option<String>,
}

/// [`Placement::host_usage`]: vCPUs, MiB of RAM and GiB of disk, in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostUsage {
    pub total: [u64; 3],
    pub used: [u64; 3],
    pub consumers: u64,
    pub enabled: bool,
}

/// Where placement's state is kept.
enum Door {
    /// One box: the cluster of this one host lives here, every change saved through the
    /// box's store before it counts.
    Box {
        cluster: Mutex<Cluster>,
        store: Arc<dyn ClaimStore>,
    },
    /// A site of boxes: each decision is made on a fresh read and committed only if the
    /// boxes it touches did not change meanwhile, else made again.
    Site(Arc<dyn SiteClaims>),
}

/// How often a decision that lost its race is made again before the request fails.
const SITE_TRIES: u32 = 8;

pub struct Placement {
    door: Door,
    /// Server groups' door: a member's claim reads where the other members are.
    groups: Arc<dyn ServerGroupStore>,
    /// Host aggregates' door: the hosts' zones and aggregate metadata.
    aggregates: Arc<dyn AggregateStore>,
    scheduler: Scheduler,
    /// This box, whose usage [`Placement::host_usage`] reports.
    this: HostId,
    /// Whether creates keep the failure reserve (`[cluster] ha_reserve`; a site only).
    failure_reserve: bool,
}

impl Placement {
    /// One box's placement: the cluster of this one host, with the claims `store` holds
    /// replayed. A site's: every box, read from `site` at each decision.
    pub fn open(
        settings: &ComputeSettings,
        door: PlacementDoor,
        groups: Arc<dyn ServerGroupStore>,
        aggregates: Arc<dyn AggregateStore>,
    ) -> Result<Placement, PlacementError> {
        let scheduler = Scheduler::from_config(&settings.scheduler)
            .map_err(|e| PlacementError::Scheduler(e.to_string()))?;
        let this = HostId(settings.host.clone());
        let failure_reserve = settings.failure_reserve && matches!(door, PlacementDoor::Site(_));
        let door = match door {
            PlacementDoor::Box(store) => {
                let host = settings
                    .inventory
                    .to_host(this.clone(), settings.host.clone())?;
                let cluster = Cluster::from_hosts([host])
                    .map_err(|e| PlacementError::Scheduler(e.to_string()))?;
                let door = Door::Box {
                    cluster: Mutex::new(cluster),
                    store,
                };
                if let Door::Box { cluster, store } = &door {
                    restore(&mut lock(cluster), &store.claims()?);
                }
                door
            }
            PlacementDoor::Site(site) => Door::Site(site),
        };
        Ok(Placement {
            door,
            groups,
            aggregates,
            scheduler,
            this,
            failure_reserve,
        })
    }

    /// Makes the decision `decide` takes on the site as read, and commits it; made again on
    /// a fresh read when another box changed a box it touches first.
    fn on_site<T>(
        &self,
        site: &dyn SiteClaims,
        mut decide: impl FnMut(&SiteView) -> Result<(ClaimChange, T), PlacementError>,
    ) -> Result<T, PlacementError> {
        for attempt in 0..SITE_TRIES {
            let view = site.read()?;
            let (change, outcome) = decide(&view)?;
            if change == ClaimChange::default() || site.commit(&view, &change)? {
                return Ok(outcome);
            }
            tracing::debug!("placement: lost a race (attempt {attempt}); deciding again");
            std::thread::sleep(crate::random::retry_jitter());
        }
        Err(PlacementError::Contended)
    }

    /// Whether the boxes of a site share placement.
    pub fn is_site(&self) -> bool {
        matches!(self.door, Door::Site(_))
    }

    /// This host's inventory totals and what is claimed of them (Nova's os-hypervisors), and
    /// how many servers hold claims on it.
    pub fn host_usage(&self) -> HostUsage {
        match &self.door {
            Door::Box { cluster, .. } => usage_of(&lock(cluster), &self.this),
            Door::Site(site) => match site.read() {
                Ok(view) => usage_of(&view.cluster, &self.this),
                Err(e) => {
                    tracing::warn!("placement: cannot read the site's claims: {e}");
                    HostUsage::default()
                }
            },
        }
    }

    /// Nova's service disable on one box: a disabled host takes no new servers and keeps its
    /// own. (On a site, the box's record says it, read at every decision.)
    pub fn set_enabled(&self, enabled: bool, reason: Option<String>) {
        let Door::Box { cluster, .. } = &self.door else {
            return;
        };
        let mut cluster = lock(cluster);
        let ids: Vec<HostId> = cluster.hosts().map(|h| h.id().clone()).collect();
        for id in ids {
            if let Some(host) = cluster.host_mut(&id) {
                host.enabled = enabled;
                host.disabled_reason = if enabled { None } else { reason.clone() };
            }
        }
    }

    /// The hosts placement chooses from, with their availability zones.
    pub fn hosts(&self) -> Result<Vec<(String, String)>, PlacementError> {
        let mut cluster = match &self.door {
            Door::Box { cluster, .. } => lock(cluster).clone(),
            Door::Site(site) => site.read()?.cluster,
        };
        self.put_in_aggregates(&mut cluster)?;
        Ok(cluster
            .hosts()
            .map(|h| (h.id().0.clone(), h.availability_zone.clone()))
            .collect())
    }

    /// The zone `host` is in now (None when it is no host of placement's).
    pub fn zone_of(&self, host: &str) -> Result<Option<String>, PlacementError> {
        Ok(self
            .hosts()?
            .into_iter()
            .find_map(|(h, zone)| (h == host).then_some(zone)))
    }

    /// Puts `cluster`'s hosts in their aggregates as stored now: names, metadata and zone. A
    /// host no aggregate zones keeps its box's zone: on a site the one its record gives (read
    /// with the view), on one box Nova's default (placement's own copy may still hold a zone
    /// from an aggregate since changed).
    fn put_in_aggregates(&self, cluster: &mut Cluster) -> Result<(), PlacementError> {
        let all = self.aggregates.aggregates()?;
        let site = self.is_site();
        aggregates::place_hosts(cluster, &all, |_, current| {
            if site {
                current.to_owned()
            } else {
                aggregates::DEFAULT_ZONE.to_owned()
            }
        });
        Ok(())
    }

    /// Every claim held on this box now.
    pub fn claims(&self) -> Result<Vec<Claim>, PlacementError> {
        Ok(match &self.door {
            Door::Box { cluster, .. } => lock(cluster).claims().collect(),
            Door::Site(site) => site
                .read()?
                .cluster
                .claims()
                .filter(|c| c.host_id == self.this)
                .collect(),
        })
    }

    /// Schedules a server of `flavor` where `wanted` allows and saves its claim. Nothing is
    /// held if either fails. A server that holds a claim already (placed with its batch, or
    /// before a restart) keeps it.
    pub fn claim(
        &self,
        server_id: &str,
        flavor: &FlavorSnapshot,
        boot_from_volume: bool,
        wanted: &Wanted,
    ) -> Result<Claim, PlacementError> {
        let servers = [server_id.to_owned()];
        let mut claims = self.claim_many(&servers, 1, flavor, boot_from_volume, wanted)?;
        claims.pop().ok_or_else(|| {
            PlacementError::Scheduler("a placement of one server returned no claim".into())
        })
    }

    /// Nova's multi-create: places `servers` (all of `flavor`, all where `wanted` allows) in
    /// order, each seeing the ones before it (so a group's policy holds within the batch),
    /// up to the first that finds no host, and saves the claims of those placed in one
    /// write. Fewer than `at_least` placed: nothing is held, and the error names the server
    /// that found no host. Servers that hold a claim already keep it and count as placed.
    pub fn claim_many(
        &self,
        servers: &[String],
        at_least: usize,
        flavor: &FlavorSnapshot,
        boot_from_volume: bool,
        wanted: &Wanted,
    ) -> Result<Vec<Claim>, PlacementError> {
        let mut request = self.request(flavor, boot_from_volume, wanted)?;
        // Only creates keep the reserve: an evacuation is what it is kept for.
        request.keep_failure_reserve = self.failure_reserve;
        let consumers: Vec<ConsumerId> = servers.iter().cloned().map(ConsumerId).collect();
        match &self.door {
            Door::Box { cluster, store } => {
                let mut cluster = lock(cluster);
                // Read under the lock: a member placed before this decision is seen by it.
                let group = self.group(wanted.group.as_deref())?;
                let mut trial = cluster.clone();
                self.put_in_aggregates(&mut trial)?;
                let (claims, new) =
                    self.place(&mut trial, &consumers, at_least, &request, group.as_ref())?;
                store.put_claims(&new)?;
                *cluster = trial;
                Ok(claims)
            }
            Door::Site(site) => self.on_site(site.as_ref(), |view| {
                // The members are read after the view: a member whose claim committed before
                // the view was read had joined before that, so it is among them; one placed
                // after it changes the group's generation, and this decision is made again.
                let group = self.group(wanted.group.as_deref())?;
                let mut trial = view.cluster.clone();
                self.put_in_aggregates(&mut trial)?;
                let (claims, new) =
                    self.place(&mut trial, &consumers, at_least, &request, group.as_ref())?;
                let change = ClaimChange {
                    group: group.filter(|_| !new.is_empty()).map(|g| g.id),
                    put: new,
                    remove: Vec::new(),
                };
                Ok((change, claims))
            }),
        }
    }

    /// The decision of [`Placement::claim_many`] on `cluster`, which it changes: every
    /// server's claim in order, and those of them newly taken.
    fn place(
        &self,
        cluster: &mut Cluster,
        consumers: &[ConsumerId],
        at_least: usize,
        request: &outpost_resources::ResourceRequest,
        group: Option<&crate::compute::server_groups::ServerGroup>,
    ) -> Result<(Vec<Claim>, Vec<Claim>), PlacementError> {
        let mut claims = Vec::with_capacity(consumers.len());
        let mut new = Vec::new();
        for (index, consumer) in consumers.iter().enumerate() {
            if let Some(held) = cluster.claim_of(consumer) {
                claims.push(held);
                continue;
            }
            let mut request = request.clone();
            request.group = group.map(|g| scheduled_group(g, cluster));
            match self.scheduler.schedule(cluster, consumer, &request) {
                Ok(selection) => {
                    new.push(selection.claim.clone());
                    claims.push(selection.claim);
                }
                // As many as fit, at least `at_least`: the rest are not made.
                Err(ScheduleError::NoValidHost(_)) if index >= at_least => break,
                Err(ScheduleError::NoValidHost(mut no_host)) if consumers.len() > 1 => {
                    no_host.batch = Some(BatchPosition {
                        server: index + 1,
                        of: consumers.len(),
                    });
                    return Err(no_host.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok((claims, new))
    }

    /// The server group a request names, as its door has it now. None when the server is in
    /// no group, or its group was deleted since it joined (Nova then places it as in none).
    fn group(
        &self,
        id: Option<&str>,
    ) -> Result<Option<crate::compute::server_groups::ServerGroup>, PlacementError> {
        match id {
            Some(id) => Ok(self.groups.group(id)?),
            None => Ok(None),
        }
    }

    /// The site as placement sees it now (a site only; one box has no other box to move a
    /// server to).
    pub fn site_view(&self) -> Result<Option<SiteView>, PlacementError> {
        match &self.door {
            Door::Box { .. } => Ok(None),
            Door::Site(site) => Ok(Some(site.read()?)),
        }
    }

    /// Whether box `name` is known and down (its lease expired); a box alone is never down.
    pub fn is_down(&self, name: &str) -> Result<bool, PlacementError> {
        Ok(self.site_view()?.is_some_and(|view| {
            view.cluster
                .host(&HostId(name.to_owned()))
                .is_some_and(|h| h.state == outpost_resources::HostState::Down)
        }))
    }

    /// Where server `server_id` runs next now that its box is down (docs/cluster.md,
    /// "Evacuation"): scheduled on `view` without its own claim, with the filters and
    /// weighers of a create, its group's policy and its hints, the dead box never a
    /// candidate (it is down in `view`). Returns the claim's move, for the caller to commit
    /// with the ownership move in one transaction, and the new claim. An admin's host named
    /// at create is not kept: it named the box that died, as Nova's evacuate drops it. The
    /// host an admin's `evacuate` names (`to`) is the only one considered, filters still run.
    pub fn plan_evacuation(
        &self,
        view: &SiteView,
        server_id: &str,
        flavor: &FlavorSnapshot,
        boot_from_volume: bool,
        wanted: &Wanted,
        to: Option<&str>,
    ) -> Result<(ClaimChange, Claim), PlacementError> {
        let wanted = Wanted {
            host: to.map(str::to_owned),
            ..wanted.clone()
        };
        let mut request = self.request(flavor, boot_from_volume, &wanted)?;
        let consumer = ConsumerId(server_id.to_owned());
        let mut trial = view.cluster.clone();
        let held = trial.release(&consumer);
        let group = self.group(wanted.group.as_deref())?;
        request.group = group.as_ref().map(|g| scheduled_group(g, &trial));
        let selection = self.scheduler.schedule(&mut trial, &consumer, &request)?;
        let change = ClaimChange {
            put: vec![selection.claim.clone()],
            remove: held.map(|_| consumer).into_iter().collect(),
            group: group.map(|g| g.id),
        };
        Ok((change, selection.claim))
    }

    /// The scheduler's request for a server of `flavor` where `wanted` allows.
    fn request(
        &self,
        flavor: &FlavorSnapshot,
        boot_from_volume: bool,
        wanted: &Wanted,
    ) -> Result<outpost_resources::ResourceRequest, PlacementError> {
        let mut request = resource_flavor(flavor).to_request(boot_from_volume)?;
        request.availability_zone = wanted.availability_zone.clone();
        request.destination = wanted.host.clone().map(HostId);
        request.same_host = wanted.same_host.iter().cloned().map(HostId).collect();
        request.different_host = wanted.different_host.iter().cloned().map(HostId).collect();
        request.tie_break_seed = u64::from(crate::random::retry_jitter().subsec_nanos());
        Ok(request)
    }

    /// Releases `consumer`'s claim, in the database first (idempotent).
    pub fn release(&self, consumer: &ConsumerId) -> Result<(), PlacementError> {
        match &self.door {
            Door::Box { cluster, store } => {
                let mut cluster = lock(cluster);
                store.remove_claim(consumer, None)?;
                cluster.release(consumer);
                Ok(())
            }
            Door::Site(site) => self.on_site(site.as_ref(), |view| {
                let mut change = ClaimChange::default();
                if view.cluster.holder(consumer).is_some() {
                    change.remove.push(consumer.clone());
                }
                Ok((change, ()))
            }),
        }
    }

    /// Starts a resize to `flavor`: the old claim passes to the migration, the server
    /// claims the new size (beside the old one on this host); both saved in one write.
    pub fn begin_resize(
        &self,
        server_id: &str,
        flavor: &FlavorSnapshot,
        boot_from_volume: bool,
    ) -> Result<Resize, PlacementError> {
        let request = resource_flavor(flavor).to_request(boot_from_volume)?;
        let consumer = ConsumerId(server_id.to_owned());
        let migration = migration_id(server_id);
        match &self.door {
            Door::Box { cluster, store } => {
                let mut cluster = lock(cluster);
                // The new size must suit the box's aggregates too (their extra specs).
                self.put_in_aggregates(&mut cluster)?;
                let resize = self.scheduler.schedule_resize(
                    &mut cluster,
                    &consumer,
                    &migration,
                    &request,
                )?;
                let saved = store.put_claims(&[resize.source.clone(), resize.dest.clone()]);
                if let Err(e) = saved {
                    // Gives the old claim back to the server, as it was.
                    let _ = cluster.revert_resize(&consumer, &migration);
                    return Err(e.into());
                }
                Ok(resize)
            }
            Door::Site(site) => self.on_site(site.as_ref(), |view| {
                // The server's disks are on its box: a resize stays there (moving it is a
                // migration, which is the box-failure work's).
                let mut request = request.clone();
                request.destination = view.cluster.holder(&consumer).cloned();
                let mut cluster = view.cluster.clone();
                self.put_in_aggregates(&mut cluster)?;
                let resize = self.scheduler.schedule_resize(
                    &mut cluster,
                    &consumer,
                    &migration,
                    &request,
                )?;
                let change = ClaimChange {
                    put: vec![resize.source.clone(), resize.dest.clone()],
                    remove: Vec::new(),
                    group: None,
                };
                Ok((change, resize))
            }),
        }
    }

    /// Confirms a resize: the old size, held by the migration, is released.
    pub fn confirm_resize(&self, server_id: &str) -> Result<(), PlacementError> {
        self.release(&migration_id(server_id))
    }

    /// Reverts a resize: the new size is released and the old one goes back to the server.
    /// A resize already reverted (the migration holds nothing) changes nothing.
    pub fn revert_resize(&self, server_id: &str) -> Result<(), PlacementError> {
        let consumer = ConsumerId(server_id.to_owned());
        let migration = migration_id(server_id);
        match &self.door {
            Door::Box { cluster, store } => {
                let mut cluster = lock(cluster);
                let Some(old) = cluster.claim_of(&migration) else {
                    return Ok(());
                };
                let restored = Claim {
                    consumer_id: consumer.clone(),
                    ..old
                };
                store.remove_claim(&migration, Some(&restored))?;
                cluster.revert_resize(&consumer, &migration)?;
                Ok(())
            }
            Door::Site(site) => self.on_site(site.as_ref(), |view| {
                let mut change = ClaimChange::default();
                if let Some(old) = view.cluster.claim_of(&migration) {
                    change.remove.push(migration.clone());
                    change.remove.push(consumer.clone());
                    change.put.push(Claim {
                        consumer_id: consumer.clone(),
                        ..old
                    });
                }
                Ok((change, ()))
            }),
        }
    }
}

/// The scheduler's view of `group`: its policy and where its members that hold a claim in
/// `cluster` run.
fn scheduled_group(
    group: &crate::compute::server_groups::ServerGroup,
    cluster: &Cluster,
) -> ServerGroup {
    let members = group
        .members
        .iter()
        .filter_map(|member| {
            let consumer_id = ConsumerId(member.clone());
            let host_id = cluster.holder(&consumer_id)?.clone();
            Some(GroupMember {
                consumer_id,
                host_id,
            })
        })
        .collect();
    ServerGroup {
        id: group.id.clone(),
        policy: group.policy,
        max_server_per_host: group.max_server_per_host,
        members,
    }
}

/// Cinder's home for a new volume (docs/cluster.md, "Routing": Volume create): the box the
/// scheduler would also trust with a server (enabled, up, in the zone asked for) with the most
/// free `DISK_GB`, ties to the asking box, then to the lowest name.
impl crate::volume::HomePicker for Placement {
    fn pick_home(&self, zone: Option<&str>, me: &str) -> Result<Option<String>, String> {
        let mut cluster = match &self.door {
            Door::Box { cluster, .. } => lock(cluster).clone(),
            Door::Site(site) => site.read().map_err(|e| e.to_string())?.cluster,
        };
        self.put_in_aggregates(&mut cluster)
            .map_err(|e| e.to_string())?;
        Ok(volume_home(&cluster, zone, me))
    }
}

fn volume_home(c: &Cluster, zone: Option<&str>, me: &str) -> Option<String> {
    c.hosts()
        .filter(|h| h.enabled && h.state == outpost_resources::HostState::Up)
        .filter(|h| zone.is_none_or(|z| h.availability_zone == z))
        .map(|h| {
            (
                h.free(&ResourceClass::DiskGb),
                h.id().0 == me,
                h.id().0.clone(),
            )
        })
        // Most free disk, then this box, then the lowest name.
        .max_by(|a, b| (a.0, a.1, &b.2).cmp(&(b.0, b.1, &a.2)))
        .map(|(_, _, name)| name)
}

fn lock(cluster: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    // The cluster is only changed by calls that either complete or change nothing.
    cluster.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Replays saved claims (without re-checking capacity: a host that shrank keeps its
/// servers). A claim that cannot be replayed (its host is gone) is logged and skipped.
fn restore(cluster: &mut Cluster, saved: &[Claim]) {
    for claim in saved {
        if let Err(e) = cluster.restore(claim) {
            tracing::warn!("cannot restore the claim of {}: {e}", claim.consumer_id);
        }
    }
}

/// What `host` offers and holds in `cluster` (all zero when it is not there).
fn usage_of(cluster: &Cluster, host: &HostId) -> HostUsage {
    let Some(host) = cluster.host(host) else {
        return HostUsage::default();
    };
    let total = |c: ResourceClass| host.inventory(&c).map_or(0, |i| i.total);
    let used = |c: ResourceClass| host.usage().get(&c);
    HostUsage {
        total: [
            total(ResourceClass::Vcpu),
            total(ResourceClass::MemoryMb),
            total(ResourceClass::DiskGb),
        ],
        used: [
            used(ResourceClass::Vcpu),
            used(ResourceClass::MemoryMb),
            used(ResourceClass::DiskGb),
        ],
        // A resize's old size is a second claim of the same server.
        consumers: host
            .claims()
            .filter(|c| !c.consumer_id.0.starts_with("migration:"))
            .count() as u64,
        enabled: host.enabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::servers::config::{ComputeSection, Machine};
    use crate::storage::Db;
    use std::collections::BTreeMap;

    #[test]
    fn a_volume_goes_to_the_up_enabled_box_with_most_free_disk_ties_to_the_asking_box() {
        let host = |name: &str, disk: u64| {
            outpost_resources::Host::new(name, name)
                .with_inventory(
                    ResourceClass::DiskGb,
                    outpost_resources::Inventory::new(disk),
                )
                .unwrap()
        };
        let mut disabled = host("box4", 50);
        disabled.enabled = false;
        let mut down = host("box5", 50);
        down.state = outpost_resources::HostState::Down;
        let c = Cluster::from_hosts([
            host("box1", 10),
            host("box2", 20),
            host("box3", 20),
            disabled,
            down,
            host("box6", 100).in_zone("far"),
        ])
        .unwrap();
        let pick = |zone: Option<&str>, me: &str| volume_home(&c, zone, me);
        assert_eq!(
            pick(Some("nova"), "box1").as_deref(),
            Some("box2"),
            "lowest name"
        );
        assert_eq!(
            pick(Some("nova"), "box3").as_deref(),
            Some("box3"),
            "the asking box"
        );
        assert_eq!(pick(None, "box1").as_deref(), Some("box6"), "any zone");
        assert_eq!(pick(Some("far"), "box1").as_deref(), Some("box6"));
        assert_eq!(pick(Some("nowhere"), "box1"), None);
    }

    fn placement(db: &Db, vcpus: u64, ram_mb: u64) -> Placement {
        Placement::open(
            &settings_for(vcpus, ram_mb),
            PlacementDoor::Box(Arc::new(db.clone())),
            Arc::new(db.clone()),
            Arc::new(db.clone()),
        )
        .unwrap()
    }

    fn settings_for(vcpus: u64, ram_mb: u64) -> ComputeSettings {
        ComputeSettings::resolve(
            &ComputeSection {
                host: Some("box".into()),
                reserved_host_memory_mb: Some(0),
                cpu_allocation_ratio: Some(1.0),
                ..ComputeSection::default()
            },
            Machine {
                vcpus,
                ram_mb,
                disk_gb: 10,
                root: false,
            },
        )
        .unwrap()
    }

    fn flavor(vcpus: i64, ram: i64) -> FlavorSnapshot {
        FlavorSnapshot {
            id: "f".into(),
            name: "f".into(),
            vcpus,
            ram,
            disk: 1,
            ephemeral: 0,
            swap: 0,
            extra_specs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_box_s_aggregates_give_it_its_zone_and_the_metadata_flavors_ask_for() {
        use crate::compute::aggregates::{self as aggs, AggregateChange};
        let db = Db::open_in_memory().unwrap();
        let mut settings = settings_for(4, 2048);
        settings
            .scheduler
            .enabled_filters
            .push("AggregateInstanceExtraSpecsFilter".into());
        let p = Placement::open(
            &settings,
            PlacementDoor::Box(Arc::new(db.clone())),
            Arc::new(db.clone()),
            Arc::new(db.clone()),
        )
        .unwrap();
        let in_zone = |zone: &str| Wanted {
            availability_zone: Some(zone.into()),
            ..Wanted::default()
        };
        let ssd = |want: &str| FlavorSnapshot {
            extra_specs: [(
                "aggregate_instance_extra_specs:ssd".to_owned(),
                want.to_owned(),
            )]
            .into(),
            ..flavor(1, 256)
        };
        assert_eq!(p.zone_of("box").unwrap().as_deref(), Some("nova"));
        assert!(p
            .claim("a", &flavor(1, 256), false, &in_zone("nova"))
            .is_ok());
        assert!(p
            .claim("b", &ssd("true"), false, &Wanted::default())
            .is_err());

        let admin = crate::context::RequestContext {
            user_id: "u".into(),
            user_name: "u".into(),
            project_id: Some("p".into()),
            project_name: None,
            roles: vec!["admin".into()],
        };
        let id = aggs::create(&db, &admin, "fast", Some("edge-1"))
            .unwrap()
            .id
            .to_string();
        aggs::add_host(&db, &admin, &id, "box", &["box".into()]).unwrap();
        let meta = [("ssd".to_owned(), Some("true".to_owned()))].into();
        aggs::set_metadata(&db, &admin, &id, &meta).unwrap();
        assert_eq!(p.zone_of("box").unwrap().as_deref(), Some("edge-1"));
        assert!(matches!(
            p.claim("c", &flavor(1, 256), false, &in_zone("nova")),
            Err(PlacementError::NoValidHost(_))
        ));
        assert!(p
            .claim("d", &flavor(1, 256), false, &in_zone("edge-1"))
            .is_ok());
        assert!(p
            .claim("e", &ssd("true"), false, &Wanted::default())
            .is_ok());
        assert!(p
            .claim("f", &ssd("false"), false, &Wanted::default())
            .is_err());
        // A resize is held to the box's aggregates as a create is.
        assert!(p.begin_resize("a", &ssd("false"), false).is_err());
        assert!(p.begin_resize("a", &ssd("true"), false).is_ok());
        p.confirm_resize("a").unwrap();

        // The zone taken away, the box is back in Nova's default.
        let no_zone = AggregateChange {
            name: None,
            availability_zone: Some(None),
        };
        aggs::update(&db, &admin, &id, &no_zone).unwrap();
        assert_eq!(p.zone_of("box").unwrap().as_deref(), Some("nova"));
        assert!(p
            .claim("g", &flavor(1, 256), false, &in_zone("nova"))
            .is_ok());
    }

    #[test]
    fn claims_are_persisted_released_and_restored() {
        let db = Db::open_in_memory().unwrap();
        let p = placement(&db, 2, 1024);
        p.claim("a", &flavor(1, 512), false, &Wanted::default())
            .unwrap();
        let err = p
            .claim("b", &flavor(2, 512), false, &Wanted::default())
            .unwrap_err();
        match err {
            PlacementError::NoValidHost(n) => {
                assert!(n.to_string().starts_with("No valid host was found."), "{n}")
            }
            other => panic!("{other}"),
        }
        assert_eq!(p.claims().unwrap().len(), 1);
        let saved = db.claims().unwrap();
        assert_eq!(saved.len(), 1);
        let again = placement(&db, 2, 1024);
        assert_eq!(again.claims().unwrap(), p.claims().unwrap());
        p.release(&ConsumerId::from("a")).unwrap();
        p.release(&ConsumerId::from("a")).unwrap();
        assert!(p.claims().unwrap().is_empty());
        assert!(db.claims().unwrap().is_empty());
    }

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn a_batch_places_as_many_as_fit_and_at_least_its_minimum_or_none() {
        let db = Db::open_in_memory().unwrap();
        // Room for four servers of one vCPU.
        let p = placement(&db, 4, 4096);
        let small = flavor(1, 256);
        let refused = p
            .claim_many(&ids(5), 5, &small, false, &Wanted::default())
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with("No valid host was found for server 5 of 5."),
            "{refused}"
        );
        assert!(
            p.claims().unwrap().is_empty(),
            "none or at least the minimum"
        );
        assert!(db.claims().unwrap().is_empty());
        let placed = p
            .claim_many(&ids(6), 2, &small, false, &Wanted::default())
            .unwrap();
        let consumers: Vec<String> = placed.iter().map(|c| c.consumer_id.0.clone()).collect();
        assert_eq!(consumers, ids(4), "as many as fit, in order");
        assert_eq!(db.claims().unwrap().len(), 4);
        // A server of the batch keeps its claim when its runner asks again.
        assert_eq!(
            p.claim("s2", &small, false, &Wanted::default()).unwrap(),
            placed[1]
        );
        assert_eq!(p.claims().unwrap().len(), 4);
    }

    #[test]
    fn group_policies_hold_within_a_batch_and_across_claims() {
        use crate::compute::server_groups::store::conformance::group;
        use crate::compute::server_groups::ServerGroupStore;
        use outpost_resources::GroupPolicy;
        let db = Db::open_in_memory().unwrap();
        let p = placement(&db, 4, 4096);
        let small = flavor(1, 256);
        db.create_group(
            &group("anti", "p", GroupPolicy::AntiAffinity),
            crate::quota::UNLIMITED,
        )
        .unwrap();
        for id in ids(2) {
            db.add_member("anti", &id, crate::quota::UNLIMITED).unwrap();
        }
        let in_group = Wanted {
            group: Some("anti".into()),
            ..Wanted::default()
        };
        // One box: the second member of an anti-affinity group has nowhere to go.
        let refused = p
            .claim_many(&ids(2), 2, &small, false, &in_group)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("anti-affinity group anti"), "{refused}");
        assert_eq!(
            p.claim_many(&ids(2), 1, &small, false, &in_group)
                .unwrap()
                .len(),
            1
        );
        db.add_member("anti", "s9", crate::quota::UNLIMITED)
            .unwrap();
        assert!(p.claim("s9", &small, false, &in_group).is_err());
        // A member's claim released (the server deleted) frees its place.
        p.release(&ConsumerId::from("s1")).unwrap();
        p.claim("s9", &small, false, &in_group).unwrap();
        // Soft anti-affinity only prefers: all members fit on the one box.
        db.create_group(
            &group("soft", "p", GroupPolicy::SoftAntiAffinity),
            crate::quota::UNLIMITED,
        )
        .unwrap();
        let soft = ["a", "b", "c"].map(String::from);
        for id in &soft {
            db.add_member("soft", id, crate::quota::UNLIMITED).unwrap();
        }
        let wanted = Wanted {
            group: Some("soft".into()),
            ..Wanted::default()
        };
        assert_eq!(
            p.claim_many(&soft, 3, &small, false, &wanted)
                .unwrap()
                .len(),
            3
        );
    }

    /// A store that refuses every write.
    struct Refusing;

    impl ClaimStore for Refusing {
        fn claims(&self) -> Result<Vec<Claim>, StorageError> {
            Ok(Vec::new())
        }
        fn put_claims(&self, _: &[Claim]) -> Result<(), StorageError> {
            Err(StorageError::Corrupt("no".into()))
        }
        fn remove_claim(&self, _: &ConsumerId, _: Option<&Claim>) -> Result<bool, StorageError> {
            Err(StorageError::Corrupt("no".into()))
        }
    }

    #[test]
    fn a_claim_that_cannot_be_saved_holds_nothing() {
        let p = Placement::open(
            &settings_for(2, 1024),
            PlacementDoor::Box(Arc::new(Refusing)),
            Arc::new(Db::open_in_memory().unwrap()),
            Arc::new(Db::open_in_memory().unwrap()),
        )
        .unwrap();
        assert!(p
            .claim("c", &flavor(1, 256), false, &Wanted::default())
            .is_err());
        assert!(p.claims().unwrap().is_empty());
    }

    #[test]
    fn host_usage_counts_claims_and_a_disabled_host_takes_no_new_server() {
        let db = Db::open_in_memory().unwrap();
        let p = placement(&db, 4, 2048);
        let empty = p.host_usage();
        assert_eq!(
            (empty.total[0], empty.total[1], empty.used, empty.consumers),
            (4, 2048, [0; 3], 0)
        );
        assert!(empty.enabled);
        p.claim("a", &flavor(1, 512), false, &Wanted::default())
            .unwrap();
        p.begin_resize("a", &flavor(2, 1024), false).unwrap();
        let u = p.host_usage();
        assert_eq!(
            (u.used[0], u.used[1], u.consumers),
            (3, 1536, 1),
            "a resize is one server"
        );
        p.set_enabled(false, Some("maintenance".into()));
        assert!(!p.host_usage().enabled);
        let refused = p
            .claim("b", &flavor(1, 128), false, &Wanted::default())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("maintenance"), "{refused}");
        p.set_enabled(true, None);
        p.claim("b", &flavor(1, 128), false, &Wanted::default())
            .unwrap();
    }

    #[test]
    fn resize_holds_both_then_confirm_or_revert() {
        let db = Db::open_in_memory().unwrap();
        let p = placement(&db, 4, 2048);
        p.claim("a", &flavor(1, 512), false, &Wanted::default())
            .unwrap();
        p.begin_resize("a", &flavor(2, 1024), false).unwrap();
        assert_eq!(db.claims().unwrap().len(), 2);
        p.revert_resize("a").unwrap();
        p.revert_resize("a").unwrap();
        let left = db.claims().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0]
                .amounts
                .get(&outpost_resources::ResourceClass::MemoryMb),
            512
        );
        p.begin_resize("a", &flavor(2, 1024), false).unwrap();
        p.confirm_resize("a").unwrap();
        let left = db.claims().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0]
                .amounts
                .get(&outpost_resources::ResourceClass::MemoryMb),
            1024
        );
        // Too big beside the old size: refused, nothing changes.
        assert!(p.begin_resize("a", &flavor(3, 1024), false).is_err());
        assert_eq!(p.claims().unwrap().len(), 1);
    }
}
