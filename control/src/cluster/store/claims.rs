//! Placement's door for a site, in etcd (docs/cluster.md, "Contested writes": Claim). Each
//! box publishes its inventory at `/placement/providers/<box>`; every claim is a key of its
//! own at `/placement/claims/<consumer>`; `/placement/usage/<box>` sums the claims on a box
//! and is rewritten by every transaction that changes them, so its `mod_revision` is the
//! box's generation. A change commits only if each box it touches is at the generation the
//! deciding box read: two boxes placing servers at once cannot both spend the same room.
//!
//! A claim for a member of a server group also rewrites `/placement/groups/<group>`, compared
//! like a box's usage: a decision made before another member was placed (anywhere) is made
//! again, so hard affinity and anti-affinity hold however many boxes place members at once.
//!
//! The read takes the providers, the member records (enabled or not), the alive keys (up or
//! down), the usages, the claims and the groups' generations in one transaction, so the scheduler decides on one
//! consistent picture of the site.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use outpost_resources::{Cluster, ConsumerId, Host, HostId, HostState, Inventory, ResourceClass};

use super::{from_json, ranges, to_json, EtcdDoors};
use crate::cluster::keys;
use crate::cluster::records::{
    Amounts, BoxRecord, ClaimRecord, GroupPlacementRecord, ProviderRecord, UsageRecord,
    CLAIM_SCHEMA, GROUP_PLACEMENT_SCHEMA, USAGE_SCHEMA,
};
use crate::compute::servers::placement::store::{ClaimChange, SiteClaims, SiteView};
use crate::store::StorageError;

/// The site's claims in etcd.
#[derive(Clone)]
pub struct EtcdSiteClaims {
    doors: EtcdDoors,
}

impl EtcdSiteClaims {
    pub(super) fn new(doors: EtcdDoors) -> EtcdSiteClaims {
        EtcdSiteClaims { doors }
    }
}

/// A box as the scheduler's host: its published inventory, its member record's switch and
/// its liveness.
fn host(name: &str, provider: &ProviderRecord, record: &BoxRecord, up: bool) -> Host {
    let mut host = Host::new(HostId(name.to_owned()), name);
    let inventories: Vec<(ResourceClass, Inventory)> = if provider.inventories.is_empty() {
        // A record from before inventories were published: the totals, no overcommit.
        [
            (ResourceClass::Vcpu, provider.total.vcpus),
            (ResourceClass::MemoryMb, provider.total.ram_mb),
            (ResourceClass::DiskGb, provider.total.disk_gb),
        ]
        .into_iter()
        .filter(|(_, total)| *total > 0)
        .map(|(class, total)| (class, Inventory::new(total)))
        .collect()
    } else {
        provider.inventories.clone().into_iter().collect()
    };
    for (class, inventory) in inventories {
        if let Err(e) = host.set_inventory(class.clone(), inventory) {
            tracing::warn!(
                "box {name}: its {} inventory is invalid: {e}",
                class.as_str()
            );
        }
    }
    host.traits = provider.traits.clone();
    // The box's configured zone; an aggregate's zone, read by placement, overrides it.
    host.availability_zone = record.availability_zone.clone();
    host.enabled = record.enabled;
    host.disabled_reason = record.disabled_reason.clone();
    host.state = if up { HostState::Up } else { HostState::Down };
    host
}

fn read_view(ranges: &[Vec<KeyValue>]) -> Result<SiteView, StorageError> {
    let [providers, boxes, alive, usages, claims, groups] = ranges else {
        return Err(StorageError::Corrupt(
            "a placement read returned the wrong number of ranges".into(),
        ));
    };
    let boxes = keys::children(boxes, &keys::boxes());
    let alive = keys::children(alive, &keys::alive_prefix());
    let mut cluster = Cluster::new();
    for (name, kv) in keys::children(providers, &keys::providers()) {
        // A provider without a member record is a removed box's leftover.
        let Some(record) = boxes.get(&name) else {
            continue;
        };
        let provider: ProviderRecord = from_json(kv)?;
        let record: BoxRecord = from_json(record)?;
        let h = host(&name, &provider, &record, alive.contains_key(&name));
        if let Err(e) = cluster.add_host(h) {
            tracing::warn!("box {name}: {e}");
        }
    }
    let generations: BTreeMap<HostId, i64> = keys::children(usages, &keys::usages())
        .into_iter()
        .map(|(name, kv)| (HostId(name), kv.mod_revision()))
        .collect();
    // The revision of a box's last claim orders the boxes for `spread = round_robin`.
    for (id, rev) in &generations {
        if let Some(h) = cluster.host_mut(id) {
            h.last_claimed = u64::try_from(*rev).unwrap_or(0);
        }
    }
    for kv in claims {
        let record: ClaimRecord = from_json(kv)?;
        // Replayed without a capacity check: a box that shrank keeps its servers.
        if let Err(e) = cluster.restore(&record.claim) {
            tracing::warn!("claim of {}: {e}", record.claim.consumer_id);
        }
    }
    let group_generations = keys::children(groups, &keys::group_placements())
        .into_iter()
        .map(|(group, kv)| (group, kv.mod_revision()))
        .collect();
    Ok(SiteView {
        cluster,
        generations,
        group_generations,
    })
}

fn usage_record(cluster: &Cluster, id: &HostId) -> UsageRecord {
    let Some(host) = cluster.host(id) else {
        return UsageRecord {
            schema: USAGE_SCHEMA,
            ..UsageRecord::default()
        };
    };
    let used = |c: ResourceClass| host.usage().get(&c);
    UsageRecord {
        schema: USAGE_SCHEMA,
        used: Amounts {
            vcpus: used(ResourceClass::Vcpu),
            ram_mb: used(ResourceClass::MemoryMb),
            disk_gb: used(ResourceClass::DiskGb),
        },
        servers: host
            .claims()
            .filter(|c| !c.consumer_id.0.starts_with("migration:"))
            .count() as u64,
    }
}

/// The compares and writes that apply `change` to the site `view` saw: each touched box's
/// usage (and the group's placement) compared at its generation and rewritten, the claims
/// put and deleted. A caller may add its own to the same transaction (an ownership move).
pub(super) fn change_ops(
    view: &SiteView,
    change: &ClaimChange,
) -> Result<(Vec<Compare>, Vec<TxnOp>), StorageError> {
    let touched = change.touched(view);
    let after = change.apply(view);
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    for id in &touched {
        let key = keys::usage(&id.0);
        compares.push(match view.generations.get(id) {
            Some(rev) => Compare::mod_revision(key.clone(), CompareOp::Equal, *rev),
            None => Compare::version(key.clone(), CompareOp::Equal, 0),
        });
        ops.push(TxnOp::put(key, to_json(&usage_record(&after, id)), None));
    }
    if let Some(group) = &change.group {
        // A member placed meanwhile changed where the others may go (docs/cluster.md,
        // "Contested writes": Claim).
        let key = keys::group_placement(group);
        compares.push(match view.group_generations.get(group) {
            Some(rev) => Compare::mod_revision(key.clone(), CompareOp::Equal, *rev),
            None => Compare::version(key.clone(), CompareOp::Equal, 0),
        });
        let record = GroupPlacementRecord {
            schema: GROUP_PLACEMENT_SCHEMA,
            last_placed: change.put.iter().map(|c| c.consumer_id.0.clone()).collect(),
        };
        ops.push(TxnOp::put(key, to_json(&record), None));
    }
    // A consumer both removed and put (a revert) is one put: etcd refuses a key twice.
    let put_too = |c: &ConsumerId| change.put.iter().any(|p| p.consumer_id == *c);
    for consumer in change.remove.iter().filter(|c| !put_too(c)) {
        ops.push(TxnOp::delete(keys::claim(&consumer.0), None));
    }
    for claim in &change.put {
        let record = ClaimRecord {
            schema: CLAIM_SCHEMA,
            claim: claim.clone(),
        };
        ops.push(TxnOp::put(
            keys::claim(&claim.consumer_id.0),
            to_json(&record),
            None,
        ));
    }
    if ops.len() > super::MAX_TXN_OPS {
        return Err(StorageError::Backend(
            format!(
                "a placement change of {} writes is too big for one transaction",
                ops.len()
            )
            .into(),
        ));
    }
    Ok((compares, ops))
}

impl SiteClaims for EtcdSiteClaims {
    fn read(&self) -> Result<SiteView, StorageError> {
        self.doors.call(|kv| async move {
            let prefixed = || Some(GetOptions::new().with_prefix());
            let txn = Txn::new().and_then(vec![
                TxnOp::get(keys::providers(), prefixed()),
                TxnOp::get(keys::boxes(), prefixed()),
                TxnOp::get(keys::alive_prefix(), prefixed()),
                TxnOp::get(keys::usages(), prefixed()),
                TxnOp::get(keys::claims(), prefixed()),
                TxnOp::get(keys::group_placements(), prefixed()),
            ]);
            let resp = kv.txn(txn).await?;
            read_view(&ranges(&resp))
        })
    }

    fn commit(&self, view: &SiteView, change: &ClaimChange) -> Result<bool, StorageError> {
        let (compares, ops) = change_ops(view, change)?;
        let txn = Txn::new().when(compares).and_then(ops);
        self.doors
            .call(|kv| async move { Ok::<_, StorageError>(kv.txn(txn).await?.succeeded()) })
    }
}
