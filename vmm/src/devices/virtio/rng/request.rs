//! virtio-rng requests (virtio 1.2 §5.4.6): a chain of device-writable buffers to fill.
//! The only code of the rng device that touches guest memory.

use std::io::Read;
use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestMemoryError};

use crate::devices::virtio::descriptor::{collect_segments, offset_addr, Segment};
use crate::devices::virtio::GuestMemory;

/// More descriptors than a driver ever uses for entropy; bounds what a chain costs us.
pub const MAX_DESCRIPTORS: usize = 64;
/// At most this much entropy per request (virtio 1.2 §5.4.6: the device may return fewer
/// bytes than the buffers hold); a guest asking for gigabytes gets 64 KiB at a time.
pub const MAX_REQUEST_BYTES: u32 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("descriptor chain has more than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
    #[error("descriptor {index} is not device-writable")]
    NotWritable { index: usize },
    #[error("descriptor {index} at {addr:#x}+{len:#x} is outside guest memory")]
    OutsideMemory { index: usize, addr: u64, len: u32 },
}

/// Buffers to fill, checked to be device-writable and in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntropyRequest {
    pub segments: Vec<Segment>,
    /// Bytes we will write: the buffers' total, capped at [`MAX_REQUEST_BYTES`].
    pub len: u32,
}

pub fn parse_request<M>(
    mem: &GuestMemory,
    chain: DescriptorChain<M>,
) -> Result<EntropyRequest, RequestError>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let segments =
        collect_segments(chain, MAX_DESCRIPTORS).map_err(|_| RequestError::TooManyDescriptors)?;
    let mut total = 0u64;
    for (index, seg) in segments.iter().enumerate() {
        if !seg.device_writable {
            return Err(RequestError::NotWritable { index });
        }
        if !seg.in_memory(mem) {
            return Err(RequestError::OutsideMemory {
                index,
                addr: seg.addr.0,
                len: seg.len,
            });
        }
        total += u64::from(seg.len);
    }
    let len = total.min(u64::from(MAX_REQUEST_BYTES)) as u32;
    Ok(EntropyRequest { segments, len })
}

#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("reading entropy: {0}")]
    Source(std::io::Error),
    #[error("guest memory: {0}")]
    Memory(#[from] GuestMemoryError),
}

impl EntropyRequest {
    /// Fills the buffers with `self.len` bytes from `source`, through `scratch`, and returns
    /// the number of bytes written (the used length).
    pub fn fill(
        &self,
        mem: &GuestMemory,
        source: &mut impl Read,
        scratch: &mut [u8],
    ) -> Result<u32, FillError> {
        let mut left = self.len as usize;
        for seg in &self.segments {
            let mut done = 0usize;
            while left > 0 && done < seg.len as usize {
                let n = left.min(seg.len as usize - done).min(scratch.len());
                if n == 0 {
                    // Empty scratch: nothing can be moved.
                    return Ok(self.len - left as u32);
                }
                let chunk = &mut scratch[..n];
                source.read_exact(chunk).map_err(FillError::Source)?;
                mem.write_slice(chunk, offset_addr(seg.addr, done as u64)?)?;
                done += n;
                left -= n;
            }
        }
        Ok(self.len - left as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::descriptor::tests::{desc, test_memory};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    #[test]
    fn fills_writable_buffers_up_to_the_cap() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 16);
        let chain = q
            .build_desc_chain(&[desc(0x10_0000, 10, true), desc(0x20_0000, 100 << 10, true)])
            .unwrap();
        let req = parse_request(&mem, chain).unwrap();
        assert_eq!(req.len, MAX_REQUEST_BYTES);
        let mut source = std::io::repeat(0xab);
        let mut scratch = [0u8; 4096];
        assert_eq!(
            req.fill(&mem, &mut source, &mut scratch).unwrap(),
            MAX_REQUEST_BYTES
        );
        let mut first = [0u8; 10];
        mem.read_slice(&mut first, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(first, [0xab; 10]);
        let last_written = 0x20_0000 + u64::from(MAX_REQUEST_BYTES) - 10 - 1;
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(last_written)).unwrap(),
            0xab
        );
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(last_written + 1)).unwrap(),
            0
        );
    }

    #[test]
    fn refuses_readable_outside_and_overlong_chains() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 256);
        let chain = q
            .build_desc_chain(&[desc(0x10_0000, 10, true), desc(0x20_0000, 10, false)])
            .unwrap();
        assert_eq!(
            parse_request(&mem, chain),
            Err(RequestError::NotWritable { index: 1 })
        );
        let chain = q
            .build_desc_chain(&[desc((16 << 20) - 4, 10, true)])
            .unwrap();
        assert!(matches!(
            parse_request(&mem, chain),
            Err(RequestError::OutsideMemory { index: 0, .. })
        ));
        let many: Vec<_> = (0..MAX_DESCRIPTORS + 1)
            .map(|_| desc(0x10_0000, 1, true))
            .collect();
        let chain = q.build_desc_chain(&many).unwrap();
        assert_eq!(
            parse_request(&mem, chain),
            Err(RequestError::TooManyDescriptors)
        );
    }

    #[test]
    fn a_failing_source_is_an_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("no entropy"))
            }
        }
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 16);
        let chain = q.build_desc_chain(&[desc(0x10_0000, 10, true)]).unwrap();
        let req = parse_request(&mem, chain).unwrap();
        assert!(matches!(
            req.fill(&mem, &mut Broken, &mut [0u8; 16]),
            Err(FillError::Source(_))
        ));
    }
}
