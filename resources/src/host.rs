//! A compute host as the scheduler sees it: inventories, traits, aggregates, liveness, and
//! the claims (allocations) held on it.
//!
//! Usage is kept equal to the sum of the host's allocations; only this crate changes
//! allocations (through [`crate::Cluster`]), so that invariant cannot be broken from outside.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::claim::{Claim, ClaimError, ConsumerId};
use crate::class::{ResourceClass, Resources};
use crate::inventory::{ClassShortfall, Inventory, InventoryError, Shortfall};

/// A host's stable id (a UUID or a name that never changes); hosts are ordered by it, and
/// it breaks ties between equally weighed hosts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(pub String);

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for HostId {
    fn from(id: &str) -> Self {
        Self(id.to_string())
    }
}

impl From<String> for HostId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// Nova's `default_availability_zone`: the zone of a host no zone was given to.
pub const DEFAULT_AVAILABILITY_ZONE: &str = "nova";

/// Nova's `service_down_time` default: a host silent for longer is down.
pub const DEFAULT_SERVICE_DOWN_TIME: Duration = Duration::from_secs(60);

/// Whether the host's compute service is reporting in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Heard from recently.
    Up,
    /// Not heard from within the down time.
    Down,
}

impl HostState {
    /// Liveness from the last heartbeat, as Nova's service group does: up when the
    /// heartbeat is at most `service_down_time` away from `now` in either direction (a
    /// heartbeat "from the future" is clock skew, not death). Time is passed in, so this is
    /// a pure function.
    pub fn from_heartbeat(
        last_heartbeat: SystemTime,
        now: SystemTime,
        service_down_time: Duration,
    ) -> Self {
        let elapsed = match now.duration_since(last_heartbeat) {
            Ok(elapsed) => elapsed,
            Err(ahead) => ahead.duration(),
        };
        if elapsed <= service_down_time {
            HostState::Up
        } else {
            HostState::Down
        }
    }
}

/// A compute host: what it offers, what is held on it, and whether it may take more.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    id: HostId,
    /// Human name (hostname), used in messages.
    pub name: String,
    inventories: BTreeMap<ResourceClass, Inventory>,
    /// Placement-style traits (`HW_CPU_X86_AVX2`, `CUSTOM_SSD`): capabilities a request
    /// can require or forbid.
    pub traits: BTreeSet<String>,
    /// Names of the host aggregates the host belongs to.
    pub aggregates: BTreeSet<String>,
    /// Metadata of those aggregates merged per key (a key set on two aggregates with
    /// different values has both values), matched by `AggregateInstanceExtraSpecsFilter`.
    pub aggregate_metadata: BTreeMap<String, BTreeSet<String>>,
    usage: Resources,
    allocations: BTreeMap<ConsumerId, Resources>,
    /// Operator switch (Nova's service disable); a disabled host takes no new servers but
    /// keeps the ones it has.
    pub enabled: bool,
    /// Why the operator disabled the host, shown in rejection reasons.
    pub disabled_reason: Option<String>,
    /// Liveness of the host's service.
    pub state: HostState,
    /// The availability zone the host is in ([`DEFAULT_AVAILABILITY_ZONE`] unless set). A
    /// request that names a zone is placed only on that zone's hosts.
    pub availability_zone: String,
    /// When the host was last chosen, as an ordinal the caller keeps (a counter, an etcd
    /// revision); 0 means never. Read only by `spread = "round_robin"`, which gives a tie
    /// to the smallest. The crate keeps no clock or shared counter, so the caller supplies
    /// it; within one [`crate::Cluster`] the scheduler raises it itself in that mode.
    pub last_claimed: u64,
}

impl Host {
    /// An enabled, up host with no inventory, traits or aggregates.
    pub fn new(id: impl Into<HostId>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            inventories: BTreeMap::new(),
            traits: BTreeSet::new(),
            aggregates: BTreeSet::new(),
            aggregate_metadata: BTreeMap::new(),
            usage: Resources::new(),
            allocations: BTreeMap::new(),
            enabled: true,
            disabled_reason: None,
            state: HostState::Up,
            availability_zone: DEFAULT_AVAILABILITY_ZONE.to_string(),
            last_claimed: 0,
        }
    }

    /// Builder form of [`Host::set_inventory`].
    pub fn with_inventory(
        mut self,
        class: ResourceClass,
        inventory: Inventory,
    ) -> Result<Self, InventoryError> {
        self.set_inventory(class, inventory)?;
        Ok(self)
    }

    /// Builder: adds a trait.
    pub fn with_trait(mut self, name: &str) -> Self {
        self.traits.insert(name.to_string());
        self
    }

    /// Builder: puts the host in availability zone `zone`.
    pub fn in_zone(mut self, zone: &str) -> Self {
        self.availability_zone = zone.to_string();
        self
    }

    /// Builder: makes the host a member of an aggregate with the given metadata.
    pub fn with_aggregate(mut self, name: &str, metadata: &[(&str, &str)]) -> Self {
        self.aggregates.insert(name.to_string());
        for (key, value) in metadata {
            self.aggregate_metadata
                .entry((*key).to_string())
                .or_default()
                .insert((*value).to_string());
        }
        self
    }

    /// The host's stable id.
    pub fn id(&self) -> &HostId {
        &self.id
    }

    /// Sets (or replaces) the inventory of one class after checking it. Shrinking below
    /// current usage is allowed, as Placement allows it: existing claims stay, and the host
    /// takes nothing more of that class until usage drops.
    pub fn set_inventory(
        &mut self,
        class: ResourceClass,
        inventory: Inventory,
    ) -> Result<(), InventoryError> {
        inventory.validate(&class)?;
        self.inventories.insert(class, inventory);
        Ok(())
    }

    /// Removes the inventory of one class; refused while any of it is allocated.
    pub fn remove_inventory(
        &mut self,
        class: &ResourceClass,
    ) -> Result<Option<Inventory>, InventoryError> {
        let used = self.usage.get(class);
        if used > 0 {
            return Err(InventoryError::InUse {
                class: class.clone(),
                used,
            });
        }
        Ok(self.inventories.remove(class))
    }

    /// The inventory of one class, if the host has any.
    pub fn inventory(&self, class: &ResourceClass) -> Option<&Inventory> {
        self.inventories.get(class)
    }

    /// All inventories, in class order.
    pub fn inventories(&self) -> &BTreeMap<ResourceClass, Inventory> {
        &self.inventories
    }

    /// Sum of all claims on the host.
    pub fn usage(&self) -> &Resources {
        &self.usage
    }

    /// Usable capacity of one class (0 without inventory).
    pub fn capacity(&self, class: &ResourceClass) -> u64 {
        self.inventory(class).map_or(0, Inventory::capacity)
    }

    /// Capacity minus usage of one class (0 when over capacity).
    pub fn free(&self, class: &ResourceClass) -> u64 {
        self.capacity(class).saturating_sub(self.usage.get(class))
    }

    /// The host's node score: its free share (free / capacity) of VCPU, MEMORY_MB and
    /// DISK_GB, averaged over those it has capacity of; in `[0, 1]`, 1 when empty, 0 when
    /// full or without any of the three. A share rather than an amount, so a small box
    /// and a big one compare by how full they are.
    pub fn node_score(&self) -> f64 {
        let shares: Vec<f64> = [
            ResourceClass::Vcpu,
            ResourceClass::MemoryMb,
            ResourceClass::DiskGb,
        ]
        .iter()
        .filter_map(|class| {
            let capacity = self.capacity(class);
            (capacity > 0).then(|| self.free(class) as f64 / capacity as f64)
        })
        .collect();
        if shares.is_empty() {
            return 0.0;
        }
        shares.iter().sum::<f64>() / shares.len() as f64
    }

    /// Every class of `amounts` that would not fit on top of current usage; `Ok` when all
    /// fit.
    pub fn check_fit(&self, amounts: &Resources) -> Result<(), Vec<ClassShortfall>> {
        let shortfalls: Vec<ClassShortfall> = amounts
            .iter()
            .filter_map(|(class, amount)| {
                let result = match self.inventory(class) {
                    None => Err(Shortfall::NoInventory),
                    Some(inventory) => inventory.check(self.usage.get(class), amount),
                };
                result.err().map(|shortfall| ClassShortfall {
                    class: class.clone(),
                    amount,
                    shortfall,
                })
            })
            .collect();
        if shortfalls.is_empty() {
            Ok(())
        } else {
            Err(shortfalls)
        }
    }

    /// The claims held on this host, in consumer order.
    pub fn claims(&self) -> impl Iterator<Item = Claim> + '_ {
        self.allocations.iter().map(|(consumer_id, amounts)| Claim {
            consumer_id: consumer_id.clone(),
            host_id: self.id.clone(),
            amounts: amounts.clone(),
        })
    }

    /// What one consumer holds here.
    pub fn allocation(&self, consumer_id: &ConsumerId) -> Option<&Resources> {
        self.allocations.get(consumer_id)
    }

    /// Records a claim: all classes or none. With `check_capacity` false the claim is
    /// recorded even if it does not fit (replaying persisted claims after the inventory
    /// shrank must not lose them).
    pub(crate) fn add_allocation(
        &mut self,
        consumer_id: &ConsumerId,
        amounts: &Resources,
        check_capacity: bool,
    ) -> Result<Claim, ClaimError> {
        if self.allocations.contains_key(consumer_id) {
            return Err(ClaimError::AlreadyClaimed {
                consumer_id: consumer_id.clone(),
                host_id: self.id.clone(),
            });
        }
        if check_capacity {
            self.check_fit(amounts)
                .map_err(|shortfalls| ClaimError::DoesNotFit {
                    host_id: self.id.clone(),
                    host_name: self.name.clone(),
                    shortfalls,
                })?;
        }
        self.usage.add(amounts);
        self.allocations
            .insert(consumer_id.clone(), amounts.clone());
        Ok(Claim {
            consumer_id: consumer_id.clone(),
            host_id: self.id.clone(),
            amounts: amounts.clone(),
        })
    }

    /// Drops a consumer's claim; `None` when it holds none here (release is idempotent).
    pub(crate) fn remove_allocation(&mut self, consumer_id: &ConsumerId) -> Option<Claim> {
        let amounts = self.allocations.remove(consumer_id)?;
        self.usage.subtract(&amounts);
        Some(Claim {
            consumer_id: consumer_id.clone(),
            host_id: self.id.clone(),
            amounts,
        })
    }

    /// Hands a claim from one consumer to another without touching usage (a resize moves
    /// the server's old claim to the migration). False when `from` holds nothing here or
    /// `to` already holds something.
    pub(crate) fn rename_allocation(&mut self, from: &ConsumerId, to: &ConsumerId) -> bool {
        if self.allocations.contains_key(to) {
            return false;
        }
        match self.allocations.remove(from) {
            Some(amounts) => {
                self.allocations.insert(to.clone(), amounts);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_host() -> Host {
        Host::new("h1", "box1")
            .with_inventory(
                ResourceClass::Vcpu,
                Inventory::new(2).allocation_ratio(2.0).units(1, 4, 1),
            )
            .unwrap()
            .with_inventory(ResourceClass::MemoryMb, Inventory::new(2560).reserved(512))
            .unwrap()
    }

    #[test]
    fn claim_adds_usage_and_release_removes_it() {
        let mut host = small_host();
        let consumer = ConsumerId::from("srv");
        let amounts = Resources::new()
            .with(ResourceClass::Vcpu, 3)
            .with(ResourceClass::MemoryMb, 1024);
        host.add_allocation(&consumer, &amounts, true).unwrap();
        assert_eq!(host.usage(), &amounts);
        assert_eq!(host.free(&ResourceClass::Vcpu), 1);
        assert_eq!(host.free(&ResourceClass::MemoryMb), 1024);
        assert_eq!(host.remove_allocation(&consumer).unwrap().amounts, amounts);
        assert!(host.usage().is_empty());
        assert_eq!(host.remove_allocation(&consumer), None);
    }

    #[test]
    fn a_claim_that_fails_on_one_class_changes_nothing() {
        let mut host = small_host();
        let before = host.clone();
        let amounts = Resources::new()
            .with(ResourceClass::Vcpu, 1)
            .with(ResourceClass::MemoryMb, 4096);
        let err = host
            .add_allocation(&"srv".into(), &amounts, true)
            .unwrap_err();
        assert!(matches!(&err, ClaimError::DoesNotFit { shortfalls, .. }
            if shortfalls.len() == 1 && shortfalls[0].class == ResourceClass::MemoryMb));
        assert_eq!(host, before);
    }

    #[test]
    fn missing_inventory_is_a_shortfall() {
        let host = small_host();
        let shortfalls = host.check_fit(&Resources::compute(1, 1, 1)).unwrap_err();
        assert_eq!(shortfalls.len(), 1);
        assert_eq!(shortfalls[0].class, ResourceClass::DiskGb);
        assert_eq!(shortfalls[0].shortfall, Shortfall::NoInventory);
    }

    #[test]
    fn unchecked_add_records_over_capacity_claims() {
        let mut host = small_host();
        let big = Resources::new().with(ResourceClass::MemoryMb, 10_000);
        host.add_allocation(&"old".into(), &big, false).unwrap();
        assert_eq!(host.usage().get(&ResourceClass::MemoryMb), 10_000);
        assert_eq!(host.free(&ResourceClass::MemoryMb), 0);
    }

    #[test]
    fn inventory_in_use_cannot_be_removed() {
        let mut host = small_host();
        let amounts = Resources::new().with(ResourceClass::Vcpu, 1);
        host.add_allocation(&"srv".into(), &amounts, true).unwrap();
        assert!(matches!(
            host.remove_inventory(&ResourceClass::Vcpu),
            Err(InventoryError::InUse { used: 1, .. })
        ));
        assert!(host
            .remove_inventory(&ResourceClass::MemoryMb)
            .unwrap()
            .is_some());
    }

    #[test]
    fn rename_moves_a_claim_without_touching_usage() {
        let mut host = small_host();
        let amounts = Resources::new().with(ResourceClass::Vcpu, 2);
        host.add_allocation(&"srv".into(), &amounts, true).unwrap();
        host.add_allocation(&"other".into(), &amounts, true)
            .unwrap();
        assert!(!host.rename_allocation(&"srv".into(), &"other".into()));
        assert!(!host.rename_allocation(&"nobody".into(), &"mig".into()));
        assert!(host.rename_allocation(&"srv".into(), &"mig".into()));
        assert_eq!(host.allocation(&"mig".into()), Some(&amounts));
        assert_eq!(host.allocation(&"srv".into()), None);
        assert_eq!(host.usage().get(&ResourceClass::Vcpu), 4);
    }

    #[test]
    fn liveness_follows_nova_service_down_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let down = DEFAULT_SERVICE_DOWN_TIME;
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(HostState::from_heartbeat(t0, at(60), down), HostState::Up);
        assert_eq!(HostState::from_heartbeat(t0, at(61), down), HostState::Down);
        // A heartbeat slightly in the future is skew, far in the future is as bad as old.
        assert_eq!(HostState::from_heartbeat(at(30), t0, down), HostState::Up);
        assert_eq!(
            HostState::from_heartbeat(at(600), t0, down),
            HostState::Down
        );
    }

    #[test]
    fn aggregate_metadata_merges_values_per_key() {
        let host = Host::new("h", "h")
            .with_aggregate("fast", &[("ssd", "true"), ("tier", "gold")])
            .with_aggregate("eu", &[("tier", "silver")]);
        assert_eq!(host.aggregates.len(), 2);
        assert_eq!(host.aggregate_metadata["tier"].len(), 2);
        assert!(host.aggregate_metadata["ssd"].contains("true"));
    }
}
