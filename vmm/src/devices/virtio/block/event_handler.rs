//! The block device on the device event loop: the activate eventfd (queue registration
//! follows activation and reset) and kicks of the request queue.

use event_manager::{EventOps, Events, MutEventSubscriber};
use virtio_queue::DescriptorChain;

use super::device::{Block, BlockMetrics};
use super::request::{
    parse_request, write_status, ExecuteContext, ExecuteError, RequestError, RequestType,
    STATUS_IOERR, STATUS_OK,
};
use super::QUEUE_SIZE;
use crate::devices::virtio::activation::{
    drain_eventfd, queue_of_event, LoopRegistrations, EVENT_ACTIVATE,
};
use crate::devices::virtio::guest_fault::note;
use crate::devices::virtio::GuestMemory;

const DEVICE: &str = "virtio-blk";

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        LoopRegistrations::init(ops, &self.activate_evt, DEVICE);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            EVENT_ACTIVATE => {
                if let Err(e) = drain_eventfd(&self.activate_evt) {
                    note(
                        &mut self.metrics.queue_errors,
                        DEVICE,
                        &format_args!("activate eventfd: {e}"),
                    );
                }
                let wanted = self.active.as_ref().map_or(&[][..], |a| &a.queue_evts[..]);
                if let Err(e) = self.registrations.sync(ops, wanted) {
                    note(
                        &mut self.metrics.queue_errors,
                        DEVICE,
                        &format_args!("queue eventfds: {e}"),
                    );
                }
            }
            data => {
                if let Some(index) = queue_of_event(data) {
                    self.process_queue_event(index);
                }
            }
        }
    }
}

impl Block {
    /// A kick of queue `index`: serve at most one queue's worth of requests; if more are
    /// pending the queue eventfd is re-signalled and the loop comes back after other work.
    pub(super) fn process_queue_event(&mut self, index: usize) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if let Some(evt) = active.queue_evts.get(index) {
            if let Err(e) = drain_eventfd(evt) {
                note(
                    &mut self.metrics.queue_errors,
                    DEVICE,
                    &format_args!("queue eventfd: {e}"),
                );
            }
        }
        let metrics = &mut self.metrics;
        let mut ctx = ExecuteContext {
            disk: &self.disk,
            serial: &self.serial,
            flush: self.flush,
            scratch: &mut self.scratch,
        };
        let result = active.process(index, usize::from(QUEUE_SIZE), |mem, chain| {
            handle_chain(mem, chain, &mut ctx, metrics)
        });
        if let Err(e) = result {
            note(&mut self.metrics.queue_errors, DEVICE, &e);
        }
    }
}

/// Serves one chain and returns its used length: bytes written to data buffers, plus the
/// status byte when there is one.
fn handle_chain(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    ctx: &mut ExecuteContext,
    metrics: &mut BlockMetrics,
) -> u32 {
    let request = match parse_request(mem, chain, ctx.disk.capacity_sectors()) {
        Ok(request) => request,
        Err(rejected) => {
            let counter = match rejected.error {
                RequestError::OutOfRange { .. } => &mut metrics.out_of_range_requests,
                _ if rejected.status.is_none() => &mut metrics.malformed_without_status,
                _ => &mut metrics.malformed_requests,
            };
            note(counter, DEVICE, &rejected.error);
            let Some(status) = rejected.status else {
                return 0;
            };
            return match write_status(mem, status, STATUS_IOERR) {
                Ok(()) => 1,
                Err(e) => {
                    note(&mut metrics.queue_errors, DEVICE, &e);
                    0
                }
            };
        }
    };

    let (status, written) = match request.execute(mem, ctx) {
        Ok(written) => {
            match request.request_type {
                RequestType::In => {
                    metrics.read_requests += 1;
                    metrics.read_bytes += request.data_len;
                }
                RequestType::Out => {
                    metrics.write_requests += 1;
                    metrics.write_bytes += request.data_len;
                }
                RequestType::Flush => metrics.flush_requests += 1,
                RequestType::GetId => metrics.get_id_requests += 1,
                RequestType::Unsupported(_) => {}
            }
            (STATUS_OK, written)
        }
        Err(e) => {
            let counter = match e {
                ExecuteError::ReadOnly => &mut metrics.read_only_writes,
                ExecuteError::Disk { .. } => &mut metrics.io_errors,
                ExecuteError::Memory(_) => &mut metrics.queue_errors,
                ExecuteError::FlushNotOffered | ExecuteError::Unsupported(_) => {
                    &mut metrics.unsupported_requests
                }
            };
            note(counter, DEVICE, &e);
            (e.status(), 0)
        }
    };
    match write_status(mem, request.status, status) {
        Ok(()) => written.saturating_add(1),
        Err(e) => {
            note(&mut metrics.queue_errors, DEVICE, &e);
            written
        }
    }
}
