//! virtio-blk request parsing and execution on arbitrary descriptor tables and memory.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_vmm::devices::virtio::block::request::{parse_request, ExecuteContext};
use outpost_vmm::devices::virtio::block::{DiskImage, ID_BYTES};
use virtio_queue::QueueOwnedT;

/// A 64-sector read-only disk, shared by all runs (writes are refused before touching it).
fn disk() -> &'static DiskImage {
    static DISK: OnceLock<DiskImage> = OnceLock::new();
    DISK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("outpost-fuzz-disk-{}", std::process::id()));
        std::fs::write(&path, vec![0x5a; 64 * 512]).expect("temp disk");
        let disk = DiskImage::open(&path, true).expect("open temp disk");
        let _ = std::fs::remove_file(&path);
        disk
    })
}

fuzz_target!(|data: &[u8]| {
    let (mem, mut queue) = common::guest(data);
    let disk = disk();
    let mut scratch = vec![0u8; 4096];
    let serial = [b's'; ID_BYTES];
    let Ok(chains) = queue.iter(&mem) else {
        return;
    };
    for chain in chains.take(usize::from(common::QUEUE_SIZE)) {
        if let Ok(request) = parse_request(&mem, chain, disk.capacity_sectors()) {
            assert!(
                request.data_len <= outpost_vmm::devices::virtio::block::request::MAX_REQUEST_BYTES
            );
            let mut ctx = ExecuteContext {
                disk,
                serial: &serial,
                flush: false,
                scratch: &mut scratch,
            };
            let _ = request.execute(&mem, &mut ctx);
        }
    }
});
