//! virtio-net transmit (and receive) buffer parsing on arbitrary descriptor tables and
//! memory: gathering must stay within the 64 KiB + header bound, scattering within the
//! buffer.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use outpost_vmm::devices::virtio::net::request::{parse_rx, parse_tx, MAX_TX_LEN};
use virtio_queue::QueueOwnedT;

fuzz_target!(|data: &[u8]| {
    let (mem, mut queue) = common::guest(data);
    let mut buf = vec![0u8; MAX_TX_LEN];
    let mut frame = vec![0u8; 1514 + 12];
    let Ok(chains) = queue.iter(&mem) else {
        return;
    };
    for (i, chain) in chains.take(usize::from(common::QUEUE_SIZE)).enumerate() {
        // Alternate: the same bytes seen as a transmit and as a receive chain.
        if i % 2 == 0 {
            if let Ok(tx) = parse_tx(&mem, chain) {
                assert!(tx.len <= MAX_TX_LEN);
                if let Ok(bytes) = tx.gather(&mem, &mut buf) {
                    assert!(bytes.len() <= tx.len);
                }
            }
        } else if let Ok(rx) = parse_rx(&mem, chain) {
            if let Ok(Some(n)) = rx.write_frame(&mem, &mut frame) {
                assert!(n <= rx.capacity);
            }
        }
    }
});
