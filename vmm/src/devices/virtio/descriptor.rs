//! A descriptor chain read into a bounded list of segments (virtio 1.2 §2.7.5), and byte
//! copies between segments and host buffers. This module gives the bytes no meaning: each
//! device's `request.rs` decides what a chain must look like.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory as _, GuestMemoryError, Permissions};

use super::GuestMemory;

/// One descriptor of a chain: a guest buffer and the direction the device may use it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
    /// VIRTQ_DESC_F_WRITE: the device writes this buffer (otherwise it only reads it).
    pub device_writable: bool,
}

impl Segment {
    /// Whether the whole buffer lies in guest memory, accessible in its direction.
    pub fn in_memory(&self, mem: &GuestMemory) -> bool {
        let access = if self.device_writable {
            Permissions::Write
        } else {
            Permissions::Read
        };
        // A zero-length buffer is never accessed, wherever it points.
        self.len == 0 || mem.check_range(self.addr, self.len as usize, access)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("descriptor chain has more than {max} descriptors")]
    TooManyDescriptors { max: usize },
}

/// Walks `chain` (following an indirect table if there is one) and records at most `max`
/// descriptors. virtio-queue already stops a looping chain after queue-size (or indirect
/// table size) steps, ends the chain at an out-of-table index or unreadable descriptor, and
/// refuses chains longer than 4 GiB in total; `max` bounds what we allocate on top of that.
pub fn collect_segments<M>(
    chain: DescriptorChain<M>,
    max: usize,
) -> Result<Vec<Segment>, ChainError>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let mut segments = Vec::new();
    for desc in chain {
        if segments.len() == max {
            return Err(ChainError::TooManyDescriptors { max });
        }
        segments.push(Segment {
            addr: desc.addr(),
            len: desc.len(),
            device_writable: desc.is_write_only(),
        });
    }
    Ok(segments)
}

/// Copies `data` into `segments` in order, filling each before the next, and returns how many
/// bytes were copied (less than `data.len()` when the segments are too small).
pub fn copy_to_segments(
    mem: &GuestMemory,
    segments: &[Segment],
    data: &[u8],
) -> Result<usize, GuestMemoryError> {
    let mut done = 0;
    for seg in segments {
        let rest = &data[done..];
        if rest.is_empty() {
            break;
        }
        let n = rest.len().min(seg.len as usize);
        mem.write_slice(&rest[..n], seg.addr)?;
        done += n;
    }
    Ok(done)
}

/// Copies from `segments` in order into `buf` and returns how many bytes were copied (less
/// than `buf.len()` when the segments hold less).
pub fn copy_from_segments(
    mem: &GuestMemory,
    segments: &[Segment],
    buf: &mut [u8],
) -> Result<usize, GuestMemoryError> {
    let mut done = 0;
    for seg in segments {
        let rest = &mut buf[done..];
        if rest.is_empty() {
            break;
        }
        let n = rest.len().min(seg.len as usize);
        mem.read_slice(&mut rest[..n], seg.addr)?;
        done += n;
    }
    Ok(done)
}

/// `addr + offset`, or an error naming the overflow (a segment validated by
/// [`Segment::in_memory`] never overflows, but the check costs nothing).
pub fn offset_addr(addr: GuestAddress, offset: u64) -> Result<GuestAddress, GuestMemoryError> {
    addr.checked_add(offset)
        .ok_or(GuestMemoryError::InvalidGuestAddress(addr))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;

    /// 16 MiB of guest memory at 0; mock queues live at 0, buffers from 1 MiB.
    pub(crate) fn test_memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("16 MiB test memory")
    }

    pub(crate) fn desc(addr: u64, len: u32, writable: bool) -> RawDescriptor {
        let flags = if writable {
            VRING_DESC_F_WRITE as u16
        } else {
            0
        };
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    #[test]
    fn collects_directions_and_bounds_count() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 16);
        let chain = q
            .build_desc_chain(&[desc(0x10_0000, 16, false), desc(0x20_0000, 1, true)])
            .unwrap();
        let segs = collect_segments(chain.clone(), 8).unwrap();
        assert_eq!(segs.len(), 2);
        assert!(!segs[0].device_writable && segs[1].device_writable);
        assert_eq!(segs[1].addr, GuestAddress(0x20_0000));
        assert_eq!(
            collect_segments(chain, 1),
            Err(ChainError::TooManyDescriptors { max: 1 })
        );
    }

    #[test]
    fn looping_chain_ends_after_queue_size_steps() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 4);
        // Descriptor 0 -> 1 -> 0 -> ...: virtio-queue's ttl ends it after 4 steps.
        let looping = [
            RawDescriptor::from(SplitDescriptor::new(
                0x10_0000,
                1,
                VRING_DESC_F_NEXT as u16,
                1,
            )),
            RawDescriptor::from(SplitDescriptor::new(
                0x10_0000,
                1,
                VRING_DESC_F_NEXT as u16,
                0,
            )),
        ];
        let chain = q.build_multiple_desc_chains(&looping).unwrap();
        assert_eq!(collect_segments(chain, 100).unwrap().len(), 4);
    }

    #[test]
    fn copies_across_segments_and_checks_memory() {
        let mem = test_memory();
        let segs = [
            Segment {
                addr: GuestAddress(0x10_0000),
                len: 3,
                device_writable: true,
            },
            Segment {
                addr: GuestAddress(0x20_0000),
                len: 10,
                device_writable: true,
            },
        ];
        assert_eq!(copy_to_segments(&mem, &segs, b"hello").unwrap(), 5);
        let mut buf = [0u8; 8];
        assert_eq!(copy_from_segments(&mem, &segs, &mut buf).unwrap(), 8);
        assert_eq!(&buf[..5], b"hello");
        assert!(segs[0].in_memory(&mem));
        let outside = Segment {
            addr: GuestAddress((16 << 20) - 2),
            len: 4,
            device_writable: false,
        };
        assert!(!outside.in_memory(&mem));
        let wraps = Segment {
            addr: GuestAddress(u64::MAX - 1),
            len: 4,
            device_writable: true,
        };
        assert!(!wraps.in_memory(&mem));
        assert!(offset_addr(GuestAddress(u64::MAX), 1).is_err());
    }
}
