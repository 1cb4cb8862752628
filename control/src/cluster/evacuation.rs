//! Evacuation (docs/cluster.md, "Evacuation"): when a box's alive key is gone (its lease
//! expired, so its fence has stopped the guests the site may move), one box, the controller,
//! moves each of its `rebuild` servers to another box in one transaction (owner, epoch,
//! claim) and the new owner's reconciler builds it there. `stay` servers wait for their box;
//! a server that cannot be served elsewhere goes to ERROR with a fault saying why.
//!
//! The controller is elected with `/controller` on its own box lease: it is replaced within
//! one lease TTL when it dies. Sites of fewer than [`super::fencing::MIN_VOTERS`] etcd
//! members never start this (nothing fences there, so nothing may move).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::keys;
use super::store::{EtcdDoors, EtcdServers, OwnerMove, ServerEntry};
use super::{ClusterError, Membership};
use crate::compute::migrations::{self, MigrationType};
use crate::compute::servers::evacuation::EvacuationPolicy;
use crate::compute::servers::placement::PlacementError;
use crate::compute::servers::store::{Server, TaskChange, VmState};
use crate::compute::servers::{self, Fleet};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_resources::NoValidHost;

const CONTROLLER_SCHEMA: u32 = 1;
/// How often the controller looks at the site when no alive key changed.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How often a move that lost its race is decided again before the pass gives up on it
/// (the next pass tries again).
const MOVE_TRIES: u32 = 8;

/// How a move of one server ended.
enum Moved {
    /// Owned by this box now, which rebuilds it.
    To(String),
    /// No box may take it.
    Nowhere(NoValidHost),
    /// It is gone, moved by someone else, or its box came back: nothing was done.
    Changed,
}

/// `/controller`, on the winner's box lease.
#[derive(Debug, Serialize, Deserialize)]
struct ControllerRecord {
    schema: u32,
    #[serde(rename = "box")]
    box_name: String,
    since: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EvacuationError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// What evacuation does with one server of a dead box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Move it to another box, which builds it again.
    Move,
    /// Leave it for its box: its policy says so, or it is not running, or a request to it
    /// (a delete, a stop) waits for its box.
    Wait,
    /// It cannot run elsewhere: ERROR, with this as the fault.
    Fail(String),
}

/// The verdict for `s`, whose box `dead` is down; `volume_homes` are the homes of its
/// volumes (root and attached), by volume id. Pure, so the rules are tested without a site.
pub fn verdict(s: &Server, dead: &str, volume_homes: &[(String, String)]) -> Verdict {
    if EvacuationPolicy::of(s) == EvacuationPolicy::Stay {
        return Verdict::Wait;
    }
    // Only a running server with nothing asked of it moves: what was asked of a dead box's
    // server (stop, delete, resize) is done by that box when it returns (docs/cluster.md,
    // "Routing"), and a stopped one has nothing to restart.
    if s.vm_state != VmState::Active || s.task_state.is_some() {
        return Verdict::Wait;
    }
    if let Some((volume, _)) = volume_homes.iter().find(|(_, home)| home == dead) {
        return Verdict::Fail(format!(
            "Evacuation of the server failed: its volume {volume} lives on box {dead}, which \
             is down; the server can run only there. Its policy ({}) asks for a rebuild \
             elsewhere: set {} = stay to have it wait for its box.",
            EvacuationPolicy::Rebuild.as_str(),
            servers::evacuation::POLICY_KEY,
        ));
    }
    Verdict::Move
}

/// Starts the controller's loop on the current tokio runtime: campaign for `/controller`,
/// and while this box holds it, evacuate the servers of every box found down.
pub fn start(membership: Membership, doors: EtcdDoors, fleet: Arc<Fleet>) {
    tokio::spawn(run(membership, doors, fleet));
}

async fn run(membership: Membership, doors: EtcdDoors, fleet: Arc<Fleet>) {
    let mut alive = super::watch::changes(membership.etcd(), keys::alive_prefix());
    let mut leading = false;
    // The boxes already reported down: each is logged once per death.
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        match campaign(&membership).await {
            Ok(now) => {
                if now != leading {
                    tracing::info!(
                        "cluster: box {} {} the controller",
                        membership.name(),
                        if now { "is" } else { "is no longer" }
                    );
                }
                leading = now;
            }
            Err(e) => {
                tracing::warn!("cluster: campaigning for the controller: {e}");
                leading = false;
            }
        }
        if leading {
            match membership.boxes().await {
                Ok(boxes) => {
                    let down: BTreeSet<String> = boxes
                        .iter()
                        .filter(|b| !b.is_up())
                        .map(|b| b.record.name.clone())
                        .collect();
                    reported.retain(|name| down.contains(name));
                    for name in &down {
                        if reported.insert(name.clone()) {
                            tracing::warn!("cluster: box {name} is down (its lease expired)");
                        }
                    }
                    if !down.is_empty() {
                        let evacuator = Evacuator::new(doors.clone(), fleet.clone());
                        let pass = tokio::task::spawn_blocking(move || evacuator.pass(&down));
                        match pass.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!("cluster: evacuating: {e}"),
                            Err(e) => tracing::error!("cluster: the evacuation pass failed: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("cluster: reading the members: {e}"),
            }
        }
        tokio::select! {
            changed = alive.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

/// Takes `/controller` on this box's lease if nobody holds it; whether this box holds it.
/// A box that restarted within its lease's TTL finds the key its lease still carries.
async fn campaign(membership: &Membership) -> Result<bool, ClusterError> {
    let me = membership.name().to_owned();
    let record = ControllerRecord {
        schema: CONTROLLER_SCHEMA,
        box_name: me.clone(),
        since: Timestamp::now().to_rfc3339(),
    };
    let value = serde_json::to_vec(&record).map_err(|e| ClusterError::Corrupt {
        key: keys::controller(),
        reason: e.to_string(),
    })?;
    let lease = membership.lease_id();
    let resp = membership
        .etcd()
        .run(|mut c| {
            let value = value.clone();
            async move {
                let txn = Txn::new()
                    .when([Compare::version(keys::controller(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        keys::controller(),
                        value,
                        Some(PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(keys::controller(), None)]);
                c.txn(txn).await
            }
        })
        .await?;
    if resp.succeeded() {
        return Ok(true);
    }
    let holder = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    Ok(holder
        .and_then(|v| serde_json::from_slice::<ControllerRecord>(&v).ok())
        .is_some_and(|r| r.box_name == me))
}

/// Why an admin's `evacuate` was refused, in Nova's words where Nova has them.
#[derive(Debug, thiserror::Error)]
pub enum AdminEvacuationError {
    #[error("Instance {0} could not be found.")]
    NotFound(String),
    /// The box is up: the server runs there, and running it twice is what evacuation must
    /// never do.
    #[error("Compute service of {0} is still in use.")]
    HostInUse(String),
    #[error("Cannot 'evacuate' instance {id} while it is in {state}")]
    InvalidState { id: String, state: String },
    #[error("The target host can't be the same one.")]
    SameHost,
    #[error("Compute host {0} could not be found.")]
    UnknownHost(String),
    /// Its data lives only on the dead box.
    #[error("{0}")]
    DataOnDeadBox(String),
    #[error(transparent)]
    NoValidHost(#[from] NoValidHost),
    #[error(transparent)]
    Evacuation(#[from] EvacuationError),
}

/// Moves servers off dead boxes: the controller's passes, and an admin's `evacuate`.
pub struct Evacuator {
    doors: EtcdDoors,
    servers: EtcdServers,
    fleet: Arc<Fleet>,
}

impl Evacuator {
    pub fn new(doors: EtcdDoors, fleet: Arc<Fleet>) -> Evacuator {
        Evacuator {
            servers: doors.servers(),
            doors,
            fleet,
        }
    }

    /// Nova's `evacuate` server action (admin): server `id`, whose box must be down, moved to
    /// `host` or where the scheduler puts it, and rebuilt there as the controller's moves are.
    /// Unlike the controller's pass it moves `stay` servers and stopped or failed ones too:
    /// the admin says the box is gone. The box that returns kills its monitor before it puts
    /// its alive key. Returns the box it moved to.
    pub fn evacuate_by_admin(
        &self,
        id: &str,
        host: Option<&str>,
    ) -> Result<String, AdminEvacuationError> {
        let at = self.doors.servers_at().map_err(EvacuationError::from)?;
        let entry = at
            .servers
            .into_iter()
            .find(|e| e.server.id == id)
            .ok_or_else(|| AdminEvacuationError::NotFound(id.to_owned()))?;
        let s = &entry.server;
        // A server never placed (NoValidHost at its create) has no box to be evacuated from.
        let Some(dead) = s.host.clone() else {
            return Err(AdminEvacuationError::InvalidState {
                id: id.to_owned(),
                state: format!("vm_state {} on no host", s.vm_state.as_str()),
            });
        };
        let placement = self.fleet.placement();
        if !placement.is_down(&dead).map_err(EvacuationError::from)? {
            return Err(AdminEvacuationError::HostInUse(dead));
        }
        if let Some(task) = s.task_state {
            return Err(AdminEvacuationError::InvalidState {
                id: id.to_owned(),
                state: format!("task_state {}", task.as_str()),
            });
        }
        if !matches!(
            s.vm_state,
            VmState::Active | VmState::Stopped | VmState::Error
        ) {
            return Err(AdminEvacuationError::InvalidState {
                id: id.to_owned(),
                state: format!("vm_state {}", s.vm_state.as_str()),
            });
        }
        if let Some(host) = host {
            if host == dead {
                return Err(AdminEvacuationError::SameHost);
            }
            let known = placement
                .hosts()
                .map_err(EvacuationError::from)?
                .iter()
                .any(|(h, _)| h == host);
            if !known {
                return Err(AdminEvacuationError::UnknownHost(host.to_owned()));
            }
        }
        let homes = self
            .volume_homes(s)
            .map_err(|e| AdminEvacuationError::Evacuation(e.into()))?;
        if let Some((volume, _)) = homes.iter().find(|(_, home)| *home == dead) {
            return Err(AdminEvacuationError::DataOnDeadBox(format!(
                "Cannot evacuate server {id}: its volume {volume} lives on box {dead}, which is \
                 down; the server can run only there."
            )));
        }
        match self.move_away(entry, &dead, host)? {
            Moved::To(to) => Ok(to),
            Moved::Nowhere(n) => Err(n.into()),
            // Another move (the controller's) or a change won: say what the server is now.
            Moved::Changed => Err(AdminEvacuationError::InvalidState {
                id: id.to_owned(),
                state: "a state changed meanwhile (it may have been evacuated already)".into(),
            }),
        }
    }

    fn pass(&self, down: &BTreeSet<String>) -> Result<(), EvacuationError> {
        let at = self.doors.servers_at()?;
        for entry in at.servers {
            let Some(dead) = entry.server.host.clone().filter(|h| down.contains(h)) else {
                continue;
            };
            let homes = self.volume_homes(&entry.server)?;
            match verdict(&entry.server, &dead, &homes) {
                Verdict::Wait => {}
                Verdict::Fail(message) => self.fail(&entry.server.id, &message)?,
                Verdict::Move => {
                    if let Err(e) = self.evacuate(entry, &dead) {
                        tracing::warn!("cluster: evacuating a server of box {dead}: {e}");
                    }
                }
            }
        }
        Ok(())
    }

    /// The home of each volume `s` uses, root included.
    fn volume_homes(&self, s: &Server) -> Result<Vec<(String, String)>, StorageError> {
        let records = self.fleet.volume_records();
        let mut ids: Vec<String> = s.boot.root_volume.iter().cloned().collect();
        ids.extend(
            records
                .attachments_of_server(&s.id)?
                .into_iter()
                .map(|a| a.volume_id),
        );
        let mut homes = Vec::new();
        for id in ids {
            if let Some(v) = records.volume(&id)? {
                homes.push((id, v.home));
            }
        }
        Ok(homes)
    }

    /// The controller's move of a server of `dead`: NoValidHost is the server's ERROR.
    fn evacuate(&self, entry: ServerEntry, dead: &str) -> Result<(), EvacuationError> {
        let id = entry.server.id.clone();
        if let Moved::Nowhere(n) = self.move_away(entry, dead, None)? {
            let message = format!(
                "Evacuation of the server from box {dead}, which is down, failed: {}",
                n.summary()
            );
            self.fail(&id, &message)?;
        }
        Ok(())
    }

    /// Schedules `entry`'s server away from `dead` (to `host` only, when given) and moves it
    /// there in one transaction; a lost race is decided again on a fresh read.
    fn move_away(
        &self,
        mut entry: ServerEntry,
        dead: &str,
        host: Option<&str>,
    ) -> Result<Moved, EvacuationError> {
        let placement = self.fleet.placement();
        let id = entry.server.id.clone();
        for _ in 0..MOVE_TRIES {
            let Some(view) = placement.site_view()? else {
                return Ok(Moved::Changed);
            };
            let s = &entry.server;
            let wanted = servers::wanted(&self.fleet, s)?;
            let planned = placement.plan_evacuation(
                &view,
                &id,
                &s.flavor,
                s.boot.volume_backed(),
                &wanted,
                host,
            );
            let (change, claim) = match planned {
                Ok(p) => p,
                Err(PlacementError::NoValidHost(n)) => return Ok(Moved::Nowhere(n)),
                Err(e) => return Err(e.into()),
            };
            let to = claim.host_id.0.clone();
            let record = migrations::record(
                MigrationType::Evacuation,
                s,
                dead,
                &to,
                migrations::ACCEPTED,
                None,
            )
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let moved = self.servers.move_owner(&OwnerMove {
                entry: &entry,
                from: dead,
                to: &to,
                view: &view,
                claims: &change,
                migration: Some(&record),
            })?;
            if moved {
                tracing::warn!(
                    "cluster: server {id} evacuated from box {dead} to box {to} (epoch {})",
                    entry.epoch + 1
                );
                return Ok(Moved::To(to));
            }
            // The record, a box's usage or the dead box's liveness changed: read again.
            let at = self.doors.servers_at()?;
            let Some(now) = at.servers.into_iter().find(|e| e.server.id == id) else {
                return Ok(Moved::Changed);
            };
            if now.server.host.as_deref() != Some(dead) || now.epoch != entry.epoch {
                return Ok(Moved::Changed);
            }
            entry = now;
            std::thread::sleep(crate::random::retry_jitter());
        }
        Err(PlacementError::Contended.into())
    }

    /// ERROR with `message` as the fault, once.
    fn fail(&self, id: &str, message: &str) -> Result<(), StorageError> {
        let fault = servers::fault(message);
        self.fleet
            .servers()
            .update_server(id, TaskChange::Keep, &mut |s| {
                if s.vm_state == VmState::Error {
                    return false;
                }
                tracing::warn!("cluster: server {id}: {message}");
                s.vm_state = VmState::Error;
                s.fault = Some(fault.clone());
                true
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::servers::evacuation::POLICY_KEY;
    use crate::compute::servers::store::conformance::server;
    use crate::compute::servers::store::TaskState;

    fn running_on(dead: &str) -> Server {
        let mut s = server("s1", "p", 1);
        s.vm_state = VmState::Active;
        s.task_state = None;
        s.host = Some(dead.into());
        s.metadata.clear();
        s
    }

    #[test]
    fn image_booted_servers_move_by_default_and_stay_servers_wait() {
        let s = running_on("box2");
        assert_eq!(verdict(&s, "box2", &[]), Verdict::Move);
        let mut stay = s.clone();
        stay.metadata.insert(POLICY_KEY.into(), "stay".into());
        assert_eq!(verdict(&stay, "box2", &[]), Verdict::Wait);
        // The flavor's spec counts when the metadata says nothing; the metadata wins.
        let mut by_flavor = s.clone();
        by_flavor
            .flavor
            .extra_specs
            .insert(POLICY_KEY.into(), "stay".into());
        assert_eq!(verdict(&by_flavor, "box2", &[]), Verdict::Wait);
        by_flavor
            .metadata
            .insert(POLICY_KEY.into(), "rebuild".into());
        assert_eq!(verdict(&by_flavor, "box2", &[]), Verdict::Move);
    }

    #[test]
    fn volume_backed_servers_stay_unless_asked_and_then_fail_with_a_reason() {
        let mut s = running_on("box2");
        s.boot.root_volume = Some("v1".into());
        let homes = [("v1".to_owned(), "box2".to_owned())];
        assert_eq!(verdict(&s, "box2", &homes), Verdict::Wait);
        s.metadata.insert(POLICY_KEY.into(), "rebuild".into());
        let Verdict::Fail(why) = verdict(&s, "box2", &homes) else {
            panic!("a server whose volume is on the dead box cannot move");
        };
        assert!(why.contains("v1") && why.contains("box2"), "{why}");
        // A volume on a live box does not hold it back.
        let elsewhere = [("v1".to_owned(), "box3".to_owned())];
        assert_eq!(verdict(&s, "box2", &elsewhere), Verdict::Move);
    }

    #[test]
    fn what_was_asked_of_a_dead_box_waits_for_it() {
        let mut s = running_on("box2");
        s.task_state = Some(TaskState::Deleting);
        assert_eq!(verdict(&s, "box2", &[]), Verdict::Wait);
        let mut stopped = running_on("box2");
        stopped.vm_state = VmState::Stopped;
        assert_eq!(verdict(&stopped, "box2", &[]), Verdict::Wait);
    }
}
