//! The server operations made of several steps, each recorded in `server_tasks` before its
//! effect starts and each with its undo (the shape of Omicron's sagas):
//!
//! - create: claim → hold the Glance images (`image_usage`) → make and attach the volumes of
//!   `block_device_mapping_v2` (a volume-backed server's root among them) → clone the root
//!   disk (image-backed only) → start the monitor → ACTIVE; a failure undoes the steps
//!   done, in reverse (kill the monitor, remove the disk, detach the volumes and delete the
//!   ones it made, let the images go, release the claim) and leaves the server in ERROR
//!   with the fault;
//! - delete: stop the monitor → detach the volumes (deleting those with
//!   `delete_on_termination`), remove the disk and folder → release the claims → let the
//!   images go and delete the row (one transaction); every step is idempotent, so a delete
//!   always runs forward to its end;
//! - resize: claim the new size beside the old → stop → grow the disk → start with the new
//!   size → VERIFY_RESIZE; undone (revertResize, or a failure) by stopping, shrinking the
//!   disk back, giving the old claim back and starting with the old size.
//!
//! Each step writes through the door of the domain it changes (placement's claims, Glance's
//! image holds, Cinder's volumes, Neutron's ports, the server's own record), each write
//! atomic on its own; no transaction spans two domains. What keeps a crash between two such
//! writes safe is the step recorded before them: recovery undoes from there, and every undo
//! is idempotent (releasing a claim or an image hold that was never taken changes nothing).

use super::placement::{migration_id, PlacementError, Wanted};
use super::runner::{fault, retask, retask_from, Flow, RunError, Runner};
use super::store::{FlavorSnapshot, PowerState, Server, TaskChange, TaskState, VmState};
use crate::compute::migrations::{self, MigrationType};
use crate::image::{self, ConsumerKind};
use crate::timestamp::Timestamp;
use outpost_image_store::Provisioning;
use outpost_resources::ConsumerId;
use std::path::Path;

pub(super) const CREATE: &str = "create";
pub(super) const DELETE: &str = "delete";
pub(super) const RESIZE: &str = "resize";
/// A create placed on another box of the site: that box builds it from here.
pub(super) const CREATE_SCHEDULED: &str = "scheduled";
/// The create step after which only the guest's start remains.
pub(super) const CREATE_START_MONITOR: &str = "start_monitor";

const GIB: u64 = 1 << 30;

/// Where `s` may go: its request's zone, host (or its volumes' home) and group, and the boxes that run the servers
/// its `same_host` / `different_host` hints name (a named server that runs nowhere, or is
/// gone, leaves `same_host` with no box to offer: NoValidHost, as in Nova).
pub fn wanted(fleet: &super::Fleet, s: &Server) -> Result<Wanted, PlacementError> {
    let request = &s.placement;
    let host_of = |id: &String| -> Result<Option<String>, PlacementError> {
        Ok(fleet.servers().server(id)?.and_then(|o| o.host))
    };
    let mut wanted = Wanted {
        availability_zone: request.availability_zone.clone(),
        // The create refused an admin's host other than the volumes' home.
        host: request.host.clone().or_else(|| request.volume_home.clone()),
        group: request.group.clone(),
        ..Wanted::default()
    };
    for id in &request.different_host {
        wanted.different_host.extend(host_of(id)?);
    }
    if !request.same_host.is_empty() {
        for id in &request.same_host {
            wanted.same_host.extend(host_of(id)?);
        }
        if wanted.same_host.is_empty() {
            // No box qualifies; a name no box has makes the filter say so.
            wanted.same_host.insert(String::new());
        }
    }
    Ok(wanted)
}

/// The root disk's size: the flavor's, or the image's when the flavor says 0 (as in Nova),
/// and never smaller than the image.
pub fn root_disk_bytes(flavor: &FlavorSnapshot, image_bytes: u64) -> u64 {
    let flavor_bytes = u64::try_from(flavor.disk).unwrap_or(0).saturating_mul(GIB);
    flavor_bytes.max(image_bytes)
}

fn set_disk_len(path: &Path, bytes: u64) -> Result<(), RunError> {
    let failed = |source| RunError::DiskResize {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(failed)?;
    f.set_len(bytes).map_err(failed)?;
    f.sync_all().map_err(failed)
}

impl Runner {
    // ---- create ----

    pub(super) fn create(&mut self) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        if s.vm_state != VmState::Building {
            return Ok(Flow::Continue);
        }
        self.set_step(CREATE, "claim")?;
        let id = self.id.clone();
        // Recorded before the claim: a crash before the next write finds step "claim" and
        // the undo releases whatever was claimed.
        let claimed = self
            .wanted(&s)
            .and_then(|wanted| {
                self.fleet
                    .placement
                    .claim(&id, &s.flavor, s.boot.volume_backed(), &wanted)
            })
            .and_then(|claim| {
                let host = claim.host_id.0.clone();
                // Another box of the site builds it: the record names it, and that box's
                // reconciler takes the build from step `scheduled`.
                let here = host == self.fleet.host();
                let step = if here {
                    "hold_images"
                } else {
                    CREATE_SCHEDULED
                };
                let recorded = self.update_with(TaskChange::Step { kind: CREATE, step }, |row| {
                    row.host = Some(host.clone());
                    if here {
                        retask(row, Some(TaskState::BlockDeviceMapping));
                    }
                });
                match recorded {
                    Ok(_) => Ok(claim),
                    Err(e) => {
                        // Not recorded, so not held: the build fails with nothing claimed.
                        let _ = self.fleet.placement.release(&ConsumerId(id.clone()));
                        Err(e.into())
                    }
                }
            });
        match claimed {
            Ok(claim) if claim.host_id.0 != self.fleet.host() => {
                tracing::info!(
                    "server {id}: placed on box {}, which builds it",
                    claim.host_id
                );
                return Ok(Flow::End);
            }
            Ok(claim) => tracing::info!("server {id}: claimed on {}", claim.host_id),
            Err(PlacementError::NoValidHost(n)) => {
                tracing::info!("server {id}: {n}");
                self.fail(&n.summary())?;
                return Ok(Flow::Continue);
            }
            Err(e) => {
                self.fail(&format!("Build of the server failed: {e}"))?;
                return Ok(Flow::Continue);
            }
        }
        self.build_claimed(&s)?;
        Ok(Flow::Continue)
    }

    /// Where `s` may go (see [`wanted`]).
    fn wanted(&self, s: &Server) -> Result<Wanted, PlacementError> {
        wanted(&self.fleet, s)
    }

    /// Builds a server whose claim is on this box (after its claim here, or when another
    /// box placed it here); a failure undoes the build and leaves the server in ERROR.
    pub(super) fn build_claimed(&mut self, s: &Server) -> Result<(), RunError> {
        let id = self.id.clone();
        if let Err(e) = self.update_with(
            TaskChange::Step {
                kind: CREATE,
                step: "hold_images",
            },
            |row| retask(row, Some(TaskState::BlockDeviceMapping)),
        ) {
            tracing::warn!("server {id}: cannot record the build's start: {e}");
            return Err(e.into());
        }
        match self.build(s) {
            Ok(()) => self.finish_create()?,
            Err(e) => {
                tracing::warn!("server {id}: build failed: {e}");
                if let Err(undo) = self.undo_create() {
                    tracing::error!("server {id}: undoing the build failed: {undo}");
                }
                self.fail(&format!("Build of the server failed: {e}"))?;
            }
        }
        Ok(())
    }

    fn build(&mut self, s: &Server) -> Result<(), RunError> {
        // Held from here, so the image cannot be deleted while its data is being cloned; an
        // image deleted or deactivated since the request fails the build here.
        image::hold(
            self.fleet.image_records(),
            &s.boot.images,
            ConsumerKind::Server,
            &self.id,
        )?;
        self.set_step(CREATE, "volumes")?;
        super::block_devices::make_and_attach(&self.fleet, s)?;
        self.set_step(CREATE, "fetch_image")?;
        self.fleet.fetch_images(&s.boot.images)?;
        self.set_step(CREATE, "clone_disk")?;
        let boot = self.fleet.local_boot(&s.image_ref, &s.boot)?;
        if let Some(source) = &boot.root_source {
            // A disk from an earlier, interrupted attempt is not this build's.
            self.fleet.volumes.remove_server_disks(&self.id)?;
            let image_bytes = std::fs::metadata(source).map(|m| m.len()).unwrap_or(0);
            let size = root_disk_bytes(&s.flavor, image_bytes);
            self.fleet
                .volumes
                .clone_for_server(&self.id, source, size, Provisioning::Thin)?;
        }
        self.update(|row| retask(row, Some(TaskState::Networking)))?;
        self.set_step(CREATE, "network")?;
        super::nics::allocate(&self.fleet, s)?;
        self.update(|row| retask(row, Some(TaskState::Spawning)))?;
        self.set_step(CREATE, CREATE_START_MONITOR)?;
        let current = self.load()?.unwrap_or_else(|| s.clone());
        self.start_monitor(&current)
    }

    /// The build is done: ACTIVE, and the task row goes.
    pub(super) fn finish_create(&self) -> Result<(), RunError> {
        self.update_with(TaskChange::Clear, |s| {
            s.vm_state = VmState::Active;
            s.power_state = PowerState::Running;
            retask(s, None);
            s.launched_at.get_or_insert_with(Timestamp::now);
        })?;
        tracing::info!("server {}: ACTIVE", self.id);
        Ok(())
    }

    /// The create's steps, undone in reverse; each is a no-op when its step never ran.
    pub(super) fn undo_create(&mut self) -> Result<(), RunError> {
        self.stop_monitor(None)?;
        self.fleet.volumes.remove_server_disks(&self.id)?;
        super::nics::release(&self.fleet, &self.id)?;
        if let Some(s) = self.load()? {
            super::block_devices::undo(&self.fleet, &s)?;
        }
        image::let_go(self.fleet.image_records(), ConsumerKind::Server, &self.id)?;
        self.fleet.placement.release(&ConsumerId(self.id.clone()))?;
        self.update(|s| s.host = None)?;
        Ok(())
    }

    // ---- delete ----

    pub(super) fn delete(&mut self) -> Result<Flow, RunError> {
        if self.load()?.is_none() {
            return Ok(Flow::End);
        }
        self.update(|s| s.task_state = Some(TaskState::Deleting))?;
        match self.destroy() {
            Ok(()) => {
                tracing::info!("server {}: deleted", self.id);
                Ok(Flow::End)
            }
            Err(e) => {
                tracing::error!("server {}: delete failed: {e}", self.id);
                self.fail(&format!("Could not delete the server: {e}"))?;
                Ok(Flow::Continue)
            }
        }
    }

    fn destroy(&mut self) -> Result<(), RunError> {
        self.set_step(DELETE, "stop_monitor")?;
        // Nova's delete is a hard stop; ours asks the guest first, as issue 15 wants, so a
        // server with a volume leaves it consistent.
        if let Some(s) = self.load()? {
            self.clean_shutdown(self.shutdown_timeout(&s));
        }
        self.stop_monitor(None)?;
        self.set_step(DELETE, "remove_disk")?;
        if let Some(s) = self.load()? {
            super::block_devices::release_on_delete(&self.fleet, &s)?;
        }
        self.fleet.volumes.remove_server_disks(&self.id)?;
        self.dir.remove()?;
        self.set_step(DELETE, "release_ports")?;
        super::nics::release(&self.fleet, &self.id)?;
        self.set_step(DELETE, "release_claim")?;
        self.fleet.placement.release(&ConsumerId(self.id.clone()))?;
        self.fleet.placement.release(&migration_id(&self.id))?;
        self.set_step(DELETE, "delete_row")?;
        // Writes, each in its own domain: a crash between them re-runs this step, and
        // leaving a group or letting go of images already left or let go changes nothing.
        if let Some(group) = self.load()?.and_then(|s| s.placement.group) {
            self.fleet.server_groups().remove_member(&group, &self.id)?;
        }
        image::let_go(self.fleet.image_records(), ConsumerKind::Server, &self.id)?;
        self.fleet.servers().delete_server(&self.id)?;
        Ok(())
    }

    // ---- resize ----

    pub(super) fn resize(&mut self) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        if s.task_state != Some(TaskState::ResizePrep) {
            return Ok(Flow::Continue);
        }
        let Some(record) = s.resize.clone() else {
            self.update(|s| retask_from(s, TaskState::ResizePrep, None))?;
            return Ok(Flow::Continue);
        };
        self.set_step(RESIZE, "claim")?;
        let was_running = self.monitor.is_some();
        let old_disk_bytes = match &s.boot.root_source {
            Some(_) => {
                let disk = self.fleet.volumes.server_disk_path(&self.id)?;
                std::fs::metadata(&disk).map(|m| m.len()).unwrap_or(0)
            }
            None => 0,
        };
        let id = self.id.clone();
        // Both claims are saved first, then the server's record of them. A crash between
        // the two leaves step "claim" and a resize record without claims; recovery then
        // gives the old claim back (see `recovery.rs`).
        let begun = self
            .fleet
            .placement
            .begin_resize(&id, &record.new_flavor, s.boot.volume_backed())
            .and_then(|claims| {
                let recorded = self.update_with(
                    TaskChange::Step {
                        kind: RESIZE,
                        step: "stop",
                    },
                    |row| {
                        if let Some(r) = row.resize.as_mut() {
                            r.claims = Some(claims.clone());
                            r.was_running = was_running;
                            r.old_disk_bytes = old_disk_bytes;
                        }
                        retask_from(row, TaskState::ResizePrep, Some(TaskState::ResizeMigrating));
                    },
                );
                match recorded {
                    Ok(_) => Ok(claims),
                    Err(e) => {
                        let _ = self.fleet.placement.revert_resize(&id);
                        Err(e.into())
                    }
                }
            });
        if let Err(e) = begun {
            // Nothing is held: the server stays as it was, with the reason as its fault
            // (Nova records it as a failed instance action).
            tracing::info!("server {id}: resize refused: {e}");
            let reason = fault(&e.to_string());
            self.update_with(TaskChange::Clear, |row| {
                row.resize = None;
                row.fault = Some(reason.clone());
                retask_from(row, TaskState::ResizeMigrating, None);
                retask_from(row, TaskState::ResizePrep, None);
            })?;
            return Ok(Flow::Continue);
        }
        self.record_resize(&s, &record.new_flavor.id);
        match self.migrate(&record.new_flavor, was_running, old_disk_bytes) {
            Ok(()) => {
                self.update_with(TaskChange::Clear, |row| {
                    row.vm_state = VmState::Resized;
                    retask(row, None);
                })?;
                tracing::info!("server {id}: resized, waiting for confirmation");
                self.end_resize_record(migrations::FINISHED);
            }
            Err(e) => {
                tracing::warn!("server {id}: resize failed: {e}");
                if let Err(undo) = self.undo_resize() {
                    tracing::error!("server {id}: undoing the resize failed: {undo}");
                }
                self.fail(&format!("Resize of the server failed: {e}"))?;
                self.end_resize_record(migrations::ERROR);
            }
        }
        Ok(Flow::Continue)
    }

    /// The resize's record (os-migrations), on this box to this box: a resize stays on the
    /// server's box. Records report; a failure to write one is logged, never the resize's.
    fn record_resize(&self, s: &Server, new_flavor: &str) {
        let host = self.fleet.host();
        let written = migrations::record(
            MigrationType::Resize,
            s,
            host,
            host,
            migrations::MIGRATING,
            Some(new_flavor),
        )
        .map_err(|e| e.to_string())
        .and_then(|m| {
            self.fleet
                .migrations()
                .add_migration(&m)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::warn!("server {}: the resize's record: {e}", self.id);
        }
    }

    /// Ends the resize's open record with `status`.
    fn end_resize_record(&self, status: &str) {
        let store = self.fleet.migrations();
        if let Err(e) = migrations::end_open(store, &self.id, MigrationType::Resize, status) {
            tracing::warn!("server {}: the resize's record: {e}", self.id);
        }
    }

    fn migrate(
        &mut self,
        new_flavor: &FlavorSnapshot,
        was_running: bool,
        old_disk_bytes: u64,
    ) -> Result<(), RunError> {
        self.stop_monitor(Some(self.fleet.settings.stop_timeout))?;
        self.update(|s| {
            s.power_state = PowerState::Shutdown;
            retask_from(
                s,
                TaskState::ResizeMigrating,
                Some(TaskState::ResizeMigrated),
            );
        })?;
        self.set_step(RESIZE, "grow_disk")?;
        if old_disk_bytes > 0 {
            let new_bytes = root_disk_bytes(new_flavor, old_disk_bytes);
            if new_bytes > old_disk_bytes {
                set_disk_len(&self.fleet.volumes.server_disk_path(&self.id)?, new_bytes)?;
            }
        }
        self.set_step(RESIZE, "start")?;
        let Some(s) = self.update(|s| {
            s.flavor = new_flavor.clone();
            retask_from(s, TaskState::ResizeMigrated, Some(TaskState::ResizeFinish));
        })?
        else {
            return Ok(());
        };
        if was_running {
            self.start_monitor(&s)?;
        }
        Ok(())
    }

    /// Back to the size before the resize: the monitor stopped, the disk shrunk back to its
    /// old length (Nova restores the old disk too, losing what the guest wrote meanwhile),
    /// the old claim and flavor restored, and the server started again if it ran before.
    pub(super) fn undo_resize(&mut self) -> Result<(), RunError> {
        let Some(s) = self.load()? else {
            return Ok(());
        };
        let Some(record) = s.resize.clone() else {
            return Ok(());
        };
        self.stop_monitor(None)?;
        if record.old_disk_bytes > 0 {
            set_disk_len(
                &self.fleet.volumes.server_disk_path(&self.id)?,
                record.old_disk_bytes,
            )?;
        }
        self.fleet.placement.revert_resize(&self.id)?;
        let Some(s) = self.update(|s| {
            s.flavor = record.old_flavor.clone();
            s.resize = None;
            s.power_state = PowerState::Shutdown;
        })?
        else {
            return Ok(());
        };
        if record.was_running {
            self.start_monitor(&s)?;
        }
        Ok(())
    }

    pub(super) fn confirm_resize(&mut self) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        if s.task_state != Some(TaskState::ResizeConfirming) {
            return Ok(Flow::Continue);
        }
        self.fleet.placement.confirm_resize(&self.id)?;
        let running = self.monitor.is_some();
        self.update(|s| {
            s.resize = None;
            s.vm_state = if running {
                VmState::Active
            } else {
                VmState::Stopped
            };
            retask_from(s, TaskState::ResizeConfirming, None);
        })?;
        self.end_resize_record(migrations::CONFIRMED);
        Ok(Flow::Continue)
    }

    pub(super) fn revert_resize(&mut self) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        if s.task_state != Some(TaskState::ResizeReverting) {
            return Ok(Flow::Continue);
        }
        self.set_step(RESIZE, "revert")?;
        match self.undo_resize() {
            Ok(()) => {
                self.end_resize_task()?;
                self.end_resize_record(migrations::REVERTED);
            }
            Err(e) => self.fail(&format!("Revert of the resize failed: {e}"))?,
        }
        Ok(Flow::Continue)
    }

    /// After an undone resize: ACTIVE or SHUTOFF as the monitor is, no task.
    pub(super) fn end_resize_task(&self) -> Result<(), RunError> {
        let running = self.monitor.is_some();
        self.update_with(TaskChange::Clear, |row| {
            row.resize = None;
            row.vm_state = if running {
                VmState::Active
            } else {
                VmState::Stopped
            };
            row.power_state = if running {
                PowerState::Running
            } else {
                PowerState::Shutdown
            };
            retask(row, None);
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn root_disks_take_the_flavor_size_or_the_image_size() {
        let mut f = FlavorSnapshot {
            id: "1".into(),
            name: "f".into(),
            vcpus: 1,
            ram: 128,
            disk: 1,
            ephemeral: 0,
            swap: 0,
            extra_specs: BTreeMap::new(),
        };
        assert_eq!(root_disk_bytes(&f, 64 << 20), 1 << 30);
        f.disk = 0;
        assert_eq!(root_disk_bytes(&f, 64 << 20), 64 << 20);
        assert_eq!(root_disk_bytes(&f, 0), 0);
    }
}
