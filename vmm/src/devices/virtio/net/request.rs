//! virtio-net buffers (virtio 1.2 §5.1.6): a transmit chain parsed into a bounded frame
//! gathered from guest memory, a receive chain parsed into writable space a frame is
//! scattered into. The only code of the net device that touches guest memory.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryError;

use super::{MAX_FRAME_LEN, VNET_HDR_LEN};
use crate::devices::virtio::descriptor::{
    collect_segments, copy_from_segments, copy_to_segments, Segment,
};
use crate::devices::virtio::GuestMemory;

/// Far more descriptors than Linux uses for one packet (MAX_SKB_FRAGS + 2).
pub const MAX_DESCRIPTORS: usize = 128;
/// The longest transmit chain accepted: header plus the largest frame.
pub const MAX_TX_LEN: usize = VNET_HDR_LEN + MAX_FRAME_LEN;
/// An Ethernet header: anything shorter cannot be sent.
const ETH_HLEN: usize = 14;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    #[error("descriptor chain has more than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
    #[error("descriptor {index} has the wrong direction for this queue")]
    WrongDirection { index: usize },
    #[error("descriptor {index} at {addr:#x}+{len:#x} is outside guest memory")]
    OutsideMemory { index: usize, addr: u64, len: u32 },
    #[error("transmit chain of {len} bytes is over the {MAX_TX_LEN}-byte limit")]
    TxTooLong { len: u64 },
    #[error("transmit chain of {len} bytes is shorter than a header and an Ethernet header")]
    TxTooShort { len: u64 },
    #[error("receive buffer of {len} bytes cannot hold even the virtio-net header")]
    RxTooSmall { len: u64 },
}

/// Checks every segment's direction and placement and returns their total length.
fn check_segments(
    mem: &GuestMemory,
    segments: &[Segment],
    writable: bool,
) -> Result<u64, BufferError> {
    let mut total = 0u64;
    for (index, seg) in segments.iter().enumerate() {
        if seg.device_writable != writable {
            return Err(BufferError::WrongDirection { index });
        }
        if !seg.in_memory(mem) {
            return Err(BufferError::OutsideMemory {
                index,
                addr: seg.addr.0,
                len: seg.len,
            });
        }
        total += u64::from(seg.len);
    }
    Ok(total)
}

/// A frame to transmit: device-readable segments, `len` bytes in all, header included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFrame {
    pub segments: Vec<Segment>,
    pub len: usize,
}

pub fn parse_tx<M>(mem: &GuestMemory, chain: DescriptorChain<M>) -> Result<TxFrame, BufferError>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let segments =
        collect_segments(chain, MAX_DESCRIPTORS).map_err(|_| BufferError::TooManyDescriptors)?;
    let len = check_segments(mem, &segments, false)?;
    if len > MAX_TX_LEN as u64 {
        return Err(BufferError::TxTooLong { len });
    }
    if len < (VNET_HDR_LEN + ETH_HLEN) as u64 {
        return Err(BufferError::TxTooShort { len });
    }
    Ok(TxFrame {
        segments,
        len: len as usize,
    })
}

impl TxFrame {
    /// Gathers the frame into `buf` (at least [`MAX_TX_LEN`] long) and returns it.
    pub fn gather<'b>(
        &self,
        mem: &GuestMemory,
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], GuestMemoryError> {
        let len = self.len.min(buf.len());
        let n = copy_from_segments(mem, &self.segments, &mut buf[..len])?;
        Ok(&buf[..n])
    }
}

/// Space for one received frame: device-writable segments of `capacity` bytes in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxBuffer {
    pub segments: Vec<Segment>,
    pub capacity: usize,
}

pub fn parse_rx<M>(mem: &GuestMemory, chain: DescriptorChain<M>) -> Result<RxBuffer, BufferError>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let segments =
        collect_segments(chain, MAX_DESCRIPTORS).map_err(|_| BufferError::TooManyDescriptors)?;
    let len = check_segments(mem, &segments, true)?;
    if len < VNET_HDR_LEN as u64 {
        return Err(BufferError::RxTooSmall { len });
    }
    // At most 128 segments below 4 GiB each: fits in usize on 64-bit hosts.
    Ok(RxBuffer {
        segments,
        capacity: usize::try_from(len).unwrap_or(usize::MAX),
    })
}

impl RxBuffer {
    /// Scatters `frame` (vnet header first) into the buffer and returns the bytes written,
    /// or None if it does not fit. virtio 1.2 §5.1.6.4: without VIRTIO_NET_F_MRG_RXBUF a
    /// frame uses one buffer, so `num_buffers` is set to 1 (the tap leaves it undefined).
    pub fn write_frame(
        &self,
        mem: &GuestMemory,
        frame: &mut [u8],
    ) -> Result<Option<usize>, GuestMemoryError> {
        if frame.len() > self.capacity || frame.len() < VNET_HDR_LEN {
            return Ok(None);
        }
        frame[10..12].copy_from_slice(&1u16.to_le_bytes());
        copy_to_segments(mem, &self.segments, frame).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::descriptor::tests::{desc, test_memory};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn tx_gathers_a_split_frame() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 16);
        mem.write_slice(&[1u8; 12], GuestAddress(0x10_0000))
            .unwrap();
        mem.write_slice(&[2u8; 60], GuestAddress(0x20_0000))
            .unwrap();
        let chain = q
            .build_desc_chain(&[desc(0x10_0000, 12, false), desc(0x20_0000, 60, false)])
            .unwrap();
        let frame = parse_tx(&mem, chain).unwrap();
        assert_eq!(frame.len, 72);
        let mut buf = vec![0u8; MAX_TX_LEN];
        let bytes = frame.gather(&mem, &mut buf).unwrap();
        assert_eq!(bytes.len(), 72);
        assert_eq!(
            (&bytes[..12], &bytes[12..]),
            (&[1u8; 12][..], &[2u8; 60][..])
        );
    }

    #[test]
    fn tx_refuses_oversize_short_writable_and_outside_chains() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 256);
        let chain = q
            .build_desc_chain(&[
                desc(0x10_0000, 12, false),
                desc(0x20_0000, 65536, false),
                desc(0x30_0000, 100, false),
            ])
            .unwrap();
        assert_eq!(
            parse_tx(&mem, chain),
            Err(BufferError::TxTooLong { len: 65648 })
        );
        let chain = q.build_desc_chain(&[desc(0x10_0000, 12, false)]).unwrap();
        assert_eq!(
            parse_tx(&mem, chain),
            Err(BufferError::TxTooShort { len: 12 })
        );
        let chain = q
            .build_desc_chain(&[desc(0x10_0000, 12, false), desc(0x20_0000, 60, true)])
            .unwrap();
        assert_eq!(
            parse_tx(&mem, chain),
            Err(BufferError::WrongDirection { index: 1 })
        );
        let chain = q
            .build_desc_chain(&[desc((16 << 20) - 10, 100, false)])
            .unwrap();
        assert!(matches!(
            parse_tx(&mem, chain),
            Err(BufferError::OutsideMemory { index: 0, .. })
        ));
        let many: Vec<_> = (0..MAX_DESCRIPTORS + 1)
            .map(|_| desc(0x10_0000, 1, false))
            .collect();
        let chain = q.build_desc_chain(&many).unwrap();
        assert_eq!(parse_tx(&mem, chain), Err(BufferError::TooManyDescriptors));
    }

    #[test]
    fn rx_scatters_and_sets_num_buffers() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 16);
        let chain = q
            .build_desc_chain(&[desc(0x10_0000, 10, true), desc(0x20_0000, 100, true)])
            .unwrap();
        let buf = parse_rx(&mem, chain).unwrap();
        assert_eq!(buf.capacity, 110);
        let mut frame: Vec<u8> = (0..80u8).collect();
        assert_eq!(buf.write_frame(&mem, &mut frame).unwrap(), Some(80));
        let mut head = [0u8; 10];
        mem.read_slice(&mut head, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(head, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut rest = [0u8; 4];
        mem.read_slice(&mut rest, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(rest, [1, 0, 12, 13], "num_buffers = 1, then the frame");
        let mut too_big = vec![0u8; 111];
        assert_eq!(buf.write_frame(&mem, &mut too_big).unwrap(), None);
    }

    #[test]
    fn rx_refuses_readable_tiny_and_outside_buffers() {
        let mem = test_memory();
        let q = MockSplitQueue::new(&mem, 16);
        let chain = q.build_desc_chain(&[desc(0x10_0000, 100, false)]).unwrap();
        assert_eq!(
            parse_rx(&mem, chain),
            Err(BufferError::WrongDirection { index: 0 })
        );
        let chain = q.build_desc_chain(&[desc(0x10_0000, 11, true)]).unwrap();
        assert_eq!(
            parse_rx(&mem, chain),
            Err(BufferError::RxTooSmall { len: 11 })
        );
        let chain = q
            .build_desc_chain(&[desc(u64::MAX - 50, 100, true)])
            .unwrap();
        assert!(matches!(
            parse_rx(&mem, chain),
            Err(BufferError::OutsideMemory { .. })
        ));
    }
}
