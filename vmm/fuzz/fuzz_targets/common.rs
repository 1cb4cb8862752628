//! Guest memory and a split queue built from fuzz input: the input's bytes are the first
//! 64 KiB of guest memory, so the descriptor table, the available ring and every buffer
//! the descriptors point to are all attacker-chosen.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const MEM_SIZE: usize = 0x1_0000;
pub const QUEUE_SIZE: u16 = 16;
pub const DESC_TABLE: u64 = 0x0;
pub const AVAIL_RING: u64 = 0x100;
pub const USED_RING: u64 = 0x200;

pub fn guest(data: &[u8]) -> (GuestMemoryMmap, Queue) {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
        .expect("64 KiB of anonymous memory");
    let n = data.len().min(MEM_SIZE);
    mem.write_slice(&data[..n], GuestAddress(0))
        .expect("in range");
    let mut q = Queue::new(QUEUE_SIZE).expect("valid size");
    q.try_set_desc_table_address(GuestAddress(DESC_TABLE))
        .expect("aligned");
    q.try_set_avail_ring_address(GuestAddress(AVAIL_RING))
        .expect("aligned");
    q.try_set_used_ring_address(GuestAddress(USED_RING))
        .expect("aligned");
    q.set_ready(true);
    (mem, q)
}
