//! virtio-blk requests (virtio 1.2 §5.2.6): a descriptor chain parsed once into a typed
//! [`BlockRequest`] with every length and address checked, then executed against the disk.
//! This is the only code of the block device that reads or writes guest memory.
//!
//! Accepted framing (what Linux and every other driver send): a 16-byte device-readable
//! header descriptor, then the data descriptors, then a 1-byte device-writable status
//! descriptor.

use std::ops::Deref;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::DescriptorChain;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryError};

use super::disk::DiskImage;
use super::{ID_BYTES, SECTOR_SIZE, SEG_MAX, SIZE_MAX};
use crate::devices::virtio::descriptor::{collect_segments, offset_addr, Segment};
use crate::devices::virtio::GuestMemory;

/// Header, `SEG_MAX` data descriptors, status.
pub const MAX_DESCRIPTORS: usize = SEG_MAX as usize + 2;
/// The most data one request may move: what `seg_max` × `size_max` lets a driver build.
pub const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;

/// virtio 1.2 §5.2.6: `struct virtio_blk_req` up to the data.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct RequestHeader {
    request_type: u32,
    reserved: u32,
    sector: u64,
}

// SAFETY: RequestHeader is plain old data: integer fields only, no padding (4 + 4 + 8 bytes
// with 8-byte alignment), so every byte pattern is a valid value.
unsafe impl ByteValued for RequestHeader {}

const HEADER_LEN: u32 = std::mem::size_of::<RequestHeader>() as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Unsupported(u32),
}

impl From<u32> for RequestType {
    fn from(value: u32) -> Self {
        match value {
            VIRTIO_BLK_T_IN => RequestType::In,
            VIRTIO_BLK_T_OUT => RequestType::Out,
            VIRTIO_BLK_T_FLUSH => RequestType::Flush,
            VIRTIO_BLK_T_GET_ID => RequestType::GetId,
            other => RequestType::Unsupported(other),
        }
    }
}

/// Why a chain is not a well-formed request. All of these are the guest's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("descriptor chain has more than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
    #[error("descriptor chain has {count} descriptors; a request needs a header and a status")]
    DescriptorChainTooShort { count: usize },
    #[error("status descriptor is not device-writable")]
    StatusNotWritable,
    #[error("status descriptor is {len} bytes, not 1")]
    StatusLength { len: u32 },
    #[error("status descriptor at {addr:#x} is outside guest memory")]
    StatusOutsideMemory { addr: u64 },
    #[error("request header descriptor is device-writable")]
    HeaderWritable,
    #[error("request header descriptor is {len} bytes, not {HEADER_LEN}")]
    HeaderLength { len: u32 },
    #[error("request header at {addr:#x} is outside guest memory")]
    HeaderOutsideMemory { addr: u64 },
    #[error("data descriptor {index} has the wrong direction for a {request_type:?} request")]
    DataDirection {
        index: usize,
        request_type: RequestType,
    },
    #[error("data descriptor {index} at {addr:#x}+{len:#x} is outside guest memory")]
    DataOutsideMemory { index: usize, addr: u64, len: u32 },
    #[error("data length {len} is not a multiple of {SECTOR_SIZE}")]
    DataLengthUnaligned { len: u64 },
    #[error("data length {len} is over the {MAX_REQUEST_BYTES}-byte limit")]
    DataTooLong { len: u64 },
    #[error("a flush request carries {len} bytes of data")]
    FlushWithData { len: u64 },
    #[error("sectors {sector}+{len}B are beyond the disk's {capacity} sectors")]
    OutOfRange {
        sector: u64,
        len: u64,
        capacity: u64,
    },
}

/// A chain that cannot be served. `status` is where to report VIRTIO_BLK_S_IOERR, if the
/// chain has a usable status descriptor; otherwise the chain is returned with nothing written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub error: RequestError,
    pub status: Option<GuestAddress>,
}

/// A validated request: data segments all in guest memory with the right direction, the
/// total a multiple of 512 within [`MAX_REQUEST_BYTES`], and the sector range on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRequest {
    pub request_type: RequestType,
    pub sector: u64,
    pub data: Vec<Segment>,
    pub data_len: u64,
    pub status: GuestAddress,
}

/// Parses `chain` for a disk of `capacity_sectors`.
pub fn parse_request<M>(
    mem: &GuestMemory,
    chain: DescriptorChain<M>,
    capacity_sectors: u64,
) -> Result<BlockRequest, Rejected>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let reject = |error, status| Rejected { error, status };
    let segments = collect_segments(chain, MAX_DESCRIPTORS)
        .map_err(|_| reject(RequestError::TooManyDescriptors, None))?;
    let count = segments.len();
    let (header, status) = match segments.as_slice() {
        [header, .., status] => (*header, *status),
        _ => {
            return Err(reject(
                RequestError::DescriptorChainTooShort { count },
                None,
            ))
        }
    };

    // virtio 1.2 §5.2.6: the status byte is the last thing in the chain, device-writable.
    if !status.device_writable {
        return Err(reject(RequestError::StatusNotWritable, None));
    }
    if status.len != 1 {
        return Err(reject(RequestError::StatusLength { len: status.len }, None));
    }
    if !status.in_memory(mem) {
        let addr = status.addr.0;
        return Err(reject(RequestError::StatusOutsideMemory { addr }, None));
    }
    let status = status.addr;
    let fail = |error| Rejected {
        error,
        status: Some(status),
    };

    if header.device_writable {
        return Err(fail(RequestError::HeaderWritable));
    }
    if header.len != HEADER_LEN {
        return Err(fail(RequestError::HeaderLength { len: header.len }));
    }
    let hdr: RequestHeader = mem.read_obj(header.addr).map_err(|_| {
        fail(RequestError::HeaderOutsideMemory {
            addr: header.addr.0,
        })
    })?;
    let request_type = RequestType::from(u32::from_le(hdr.request_type));
    let sector = u64::from_le(hdr.sector);
    let data = &segments[1..count - 1];

    let expect_writable = match request_type {
        // Unknown requests get VIRTIO_BLK_S_UNSUPP; their data is never touched.
        RequestType::Unsupported(_) => {
            return Ok(BlockRequest {
                request_type,
                sector,
                data: Vec::new(),
                data_len: 0,
                status,
            });
        }
        RequestType::In | RequestType::GetId => true,
        RequestType::Out | RequestType::Flush => false,
    };
    let mut data_len = 0u64;
    for (index, seg) in data.iter().enumerate() {
        if seg.device_writable != expect_writable {
            return Err(fail(RequestError::DataDirection {
                index,
                request_type,
            }));
        }
        if !seg.in_memory(mem) {
            let (addr, len) = (seg.addr.0, seg.len);
            return Err(fail(RequestError::DataOutsideMemory { index, addr, len }));
        }
        // At most 128 segments of < 4 GiB each: this cannot overflow.
        data_len += u64::from(seg.len);
    }
    if data_len > MAX_REQUEST_BYTES {
        return Err(fail(RequestError::DataTooLong { len: data_len }));
    }
    match request_type {
        RequestType::In | RequestType::Out => {
            if data_len % SECTOR_SIZE != 0 {
                return Err(fail(RequestError::DataLengthUnaligned { len: data_len }));
            }
            let end = sector
                .checked_mul(SECTOR_SIZE)
                .and_then(|start| start.checked_add(data_len));
            let capacity_bytes = capacity_sectors.saturating_mul(SECTOR_SIZE);
            if end.is_none_or(|end| end > capacity_bytes) {
                let capacity = capacity_sectors;
                return Err(fail(RequestError::OutOfRange {
                    sector,
                    len: data_len,
                    capacity,
                }));
            }
        }
        RequestType::Flush if data_len != 0 => {
            return Err(fail(RequestError::FlushWithData { len: data_len }));
        }
        _ => {}
    }
    Ok(BlockRequest {
        request_type,
        sector,
        data: data.to_vec(),
        data_len,
        status,
    })
}

/// Why a valid request failed on the host side, or was refused by device policy.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("disk I/O at byte {offset}: {source}")]
    Disk { offset: u64, source: std::io::Error },
    #[error("guest memory: {0}")]
    Memory(#[from] GuestMemoryError),
    #[error("flush requested but VIRTIO_BLK_F_FLUSH was not offered")]
    FlushNotOffered,
    #[error("request type {0} is not supported")]
    Unsupported(u32),
}

impl ExecuteError {
    /// virtio 1.2 §5.2.6.1: the status the driver sees.
    pub fn status(&self) -> u8 {
        match self {
            ExecuteError::FlushNotOffered | ExecuteError::Unsupported(_) => {
                VIRTIO_BLK_S_UNSUPP as u8
            }
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// What a request needs from the device besides the disk.
pub struct ExecuteContext<'a> {
    pub disk: &'a DiskImage,
    pub serial: &'a [u8; ID_BYTES],
    /// VIRTIO_BLK_F_FLUSH was offered.
    pub flush: bool,
    /// Bounce buffer; data moves in chunks of its size, whatever the request size.
    pub scratch: &'a mut [u8],
}

impl BlockRequest {
    /// Performs the request and returns the number of data bytes written into the guest
    /// (the used length, without the status byte).
    pub fn execute(
        &self,
        mem: &GuestMemory,
        ctx: &mut ExecuteContext,
    ) -> Result<u32, ExecuteError> {
        match self.request_type {
            RequestType::In => {
                self.transfer(
                    ctx,
                    |disk, chunk, offset| disk.read_at(chunk, offset),
                    |chunk, addr| mem.write_slice(chunk, addr),
                )?;
                // Validated: at most MAX_REQUEST_BYTES, far below 4 GiB.
                Ok(u32::try_from(self.data_len).unwrap_or(u32::MAX))
            }
            RequestType::Out => {
                if ctx.disk.read_only() {
                    return Err(ExecuteError::ReadOnly);
                }
                self.transfer(
                    ctx,
                    |disk, chunk, offset| disk.write_at(chunk, offset),
                    |chunk, addr| mem.read_slice(chunk, addr),
                )?;
                Ok(0)
            }
            RequestType::Flush => {
                if !ctx.flush {
                    return Err(ExecuteError::FlushNotOffered);
                }
                ctx.disk
                    .flush()
                    .map_err(|source| ExecuteError::Disk { offset: 0, source })?;
                Ok(0)
            }
            RequestType::GetId => {
                // virtio 1.2 §5.2.6.1: up to 20 bytes, NUL-padded, not necessarily terminated.
                let n = self.data_len.min(ID_BYTES as u64) as usize;
                let written = crate::devices::virtio::descriptor::copy_to_segments(
                    mem,
                    &self.data,
                    &ctx.serial[..n],
                )?;
                Ok(written as u32)
            }
            RequestType::Unsupported(t) => Err(ExecuteError::Unsupported(t)),
        }
    }

    /// Moves the data between disk and guest through `ctx.scratch`, chunk by chunk. For a
    /// read `disk_op` fills the chunk and `mem_op` stores it; for a write `mem_op` fills it
    /// and `disk_op` stores it. The order is fixed by which one reads into the chunk first.
    fn transfer<D, G>(
        &self,
        ctx: &mut ExecuteContext,
        disk_op: D,
        mem_op: G,
    ) -> Result<(), ExecuteError>
    where
        D: Fn(&DiskImage, &mut [u8], u64) -> std::io::Result<()>,
        G: Fn(&mut [u8], GuestAddress) -> Result<(), GuestMemoryError>,
    {
        if ctx.scratch.is_empty() {
            let source = std::io::Error::other("empty bounce buffer");
            return Err(ExecuteError::Disk { offset: 0, source });
        }
        let to_guest = self.request_type == RequestType::In;
        let disk = ctx.disk;
        let scratch = &mut *ctx.scratch;
        let mut offset = self.sector * SECTOR_SIZE;
        for seg in &self.data {
            let mut done = 0u64;
            while done < u64::from(seg.len) {
                let n = (u64::from(seg.len) - done).min(scratch.len() as u64) as usize;
                let chunk = &mut scratch[..n];
                let addr = offset_addr(seg.addr, done)?;
                let disk_error = |source| ExecuteError::Disk { offset, source };
                if to_guest {
                    disk_op(disk, chunk, offset).map_err(disk_error)?;
                    mem_op(chunk, addr)?;
                } else {
                    mem_op(chunk, addr)?;
                    disk_op(disk, chunk, offset).map_err(disk_error)?;
                }
                done += n as u64;
                offset += n as u64;
            }
        }
        Ok(())
    }
}

/// Writes the status byte of a request (virtio 1.2 §5.2.6).
pub fn write_status(
    mem: &GuestMemory,
    status: GuestAddress,
    value: u8,
) -> Result<(), GuestMemoryError> {
    mem.write_obj(value, status)
}

/// The status byte for success.
pub const STATUS_OK: u8 = VIRTIO_BLK_S_OK as u8;
/// The status byte for a malformed or failed request.
pub const STATUS_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::devices::virtio::descriptor::tests::{desc, test_memory};
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;

    pub(crate) const HDR: u64 = 0x10_0000;
    pub(crate) const DATA: u64 = 0x20_0000;
    pub(crate) const STATUS: u64 = 0x30_0000;

    pub(crate) fn write_header(mem: &GuestMemory, addr: u64, request_type: u32, sector: u64) {
        let hdr = RequestHeader {
            request_type: request_type.to_le(),
            reserved: 0,
            sector: sector.to_le(),
        };
        mem.write_obj(hdr, GuestAddress(addr)).unwrap();
    }

    fn parse(
        mem: &GuestMemory,
        descs: &[RawDescriptor],
        capacity: u64,
    ) -> Result<BlockRequest, Rejected> {
        let q = MockSplitQueue::new(mem, 256);
        let chain = q.build_desc_chain(descs).unwrap();
        parse_request(mem, chain, capacity)
    }

    fn rejected(
        mem: &GuestMemory,
        descs: &[RawDescriptor],
        capacity: u64,
    ) -> (RequestError, Option<GuestAddress>) {
        let r = parse(mem, descs, capacity).expect_err("chain must be rejected");
        (r.error, r.status)
    }

    const ST: Option<GuestAddress> = Some(GuestAddress(STATUS));

    #[test]
    fn parses_a_read() {
        let mem = test_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 2);
        let r = parse(
            &mem,
            &[
                desc(HDR, 16, false),
                desc(DATA, 1024, true),
                desc(DATA + 4096, 512, true),
                desc(STATUS, 1, true),
            ],
            8,
        )
        .unwrap();
        assert_eq!(r.request_type, RequestType::In);
        assert_eq!(
            (r.sector, r.data_len, r.data.len(), r.status),
            (2, 1536, 2, GuestAddress(STATUS))
        );
    }

    #[test]
    fn chains_without_a_usable_status_are_not_answered() {
        let mem = test_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        assert_eq!(
            rejected(&mem, &[desc(HDR, 16, false)], 8),
            (RequestError::DescriptorChainTooShort { count: 1 }, None)
        );
        assert_eq!(
            rejected(&mem, &[desc(HDR, 16, false), desc(STATUS, 1, false)], 8).1,
            None
        );
        assert_eq!(
            rejected(&mem, &[desc(HDR, 16, false), desc(STATUS, 2, true)], 8),
            (RequestError::StatusLength { len: 2 }, None)
        );
        assert_eq!(
            rejected(&mem, &[desc(HDR, 16, false), desc(16 << 20, 1, true)], 8),
            (RequestError::StatusOutsideMemory { addr: 16 << 20 }, None)
        );
    }

    #[test]
    fn bad_headers_get_ioerr() {
        let mem = test_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        assert_eq!(
            rejected(&mem, &[desc(HDR, 16, true), desc(STATUS, 1, true)], 8),
            (RequestError::HeaderWritable, ST)
        );
        assert_eq!(
            rejected(&mem, &[desc(HDR, 8, false), desc(STATUS, 1, true)], 8),
            (RequestError::HeaderLength { len: 8 }, ST)
        );
        assert_eq!(
            rejected(&mem, &[desc(HDR, 4096, false), desc(STATUS, 1, true)], 8),
            (RequestError::HeaderLength { len: 4096 }, ST)
        );
        let beyond = (16 << 20) - 8;
        assert_eq!(
            rejected(&mem, &[desc(beyond, 16, false), desc(STATUS, 1, true)], 8),
            (RequestError::HeaderOutsideMemory { addr: beyond }, ST)
        );
    }

    #[test]
    fn data_direction_length_and_range_are_checked() {
        let mem = test_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        let (e, s) = rejected(
            &mem,
            &[
                desc(HDR, 16, false),
                desc(DATA, 512, true),
                desc(DATA, 512, false),
                desc(STATUS, 1, true),
            ],
            8,
        );
        assert_eq!(
            (e, s),
            (
                RequestError::DataDirection {
                    index: 1,
                    request_type: RequestType::In
                },
                ST
            )
        );
        write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 0);
        let (e, _) = rejected(
            &mem,
            &[
                desc(HDR, 16, false),
                desc(DATA, 512, true),
                desc(STATUS, 1, true),
            ],
            8,
        );
        assert_eq!(
            e,
            RequestError::DataDirection {
                index: 0,
                request_type: RequestType::Out
            }
        );
        assert_eq!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(DATA, 100, false),
                    desc(STATUS, 1, true)
                ],
                8
            ),
            (RequestError::DataLengthUnaligned { len: 100 }, ST)
        );
        // Sector 7 of 8 with 1 KiB: one sector too far.
        write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 7);
        assert_eq!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(DATA, 1024, false),
                    desc(STATUS, 1, true)
                ],
                8
            )
            .0,
            RequestError::OutOfRange {
                sector: 7,
                len: 1024,
                capacity: 8
            }
        );
        // Exactly the last sector is fine.
        assert!(parse(
            &mem,
            &[
                desc(HDR, 16, false),
                desc(DATA, 512, false),
                desc(STATUS, 1, true)
            ],
            8
        )
        .is_ok());
        // sector * 512 overflows.
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, u64::MAX / 256);
        assert!(matches!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(DATA, 512, true),
                    desc(STATUS, 1, true)
                ],
                u64::MAX
            )
            .0,
            RequestError::OutOfRange { .. }
        ));
        // sector * 512 + len overflows.
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, u64::MAX / 512);
        assert!(matches!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(DATA, 1024, true),
                    desc(STATUS, 1, true)
                ],
                u64::MAX
            )
            .0,
            RequestError::OutOfRange { .. }
        ));
        // A data buffer running off the end of guest memory.
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        assert_eq!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc((16 << 20) - 512, 1024, true),
                    desc(STATUS, 1, true)
                ],
                8
            )
            .0,
            RequestError::DataOutsideMemory {
                index: 0,
                addr: (16 << 20) - 512,
                len: 1024
            }
        );
        // Absurd lengths: two 15 MiB buffers are over the per-request limit.
        assert_eq!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(0x10_0000, 15 << 20, true),
                    desc(0x10_0000, 15 << 20, true),
                    desc(STATUS, 1, true)
                ],
                u64::MAX
            )
            .0,
            RequestError::DataTooLong { len: 30 << 20 }
        );
        let huge = u32::MAX - 100;
        assert_eq!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(DATA, huge, true),
                    desc(STATUS, 1, true)
                ],
                u64::MAX
            ),
            (
                RequestError::DataOutsideMemory {
                    index: 0,
                    addr: DATA,
                    len: huge
                },
                ST
            )
        );
        // A chain over 4 GiB in total ends where it overflows (virtio-queue's guard).
        assert_eq!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(DATA, u32::MAX, true),
                    desc(STATUS, 1, true)
                ],
                u64::MAX
            ),
            (RequestError::DescriptorChainTooShort { count: 1 }, None)
        );
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let mem = test_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        let mut descs = vec![desc(HDR, 16, false)];
        descs.extend((0..MAX_DESCRIPTORS - 1).map(|_| desc(DATA, 512, true)));
        descs.push(desc(STATUS, 1, true));
        assert_eq!(
            rejected(&mem, &descs, u64::MAX),
            (RequestError::TooManyDescriptors, None)
        );
        descs.remove(1);
        assert!(parse(&mem, &descs, u64::MAX).is_ok());
    }

    #[test]
    fn flush_get_id_and_unknown_types() {
        let mem = test_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
        assert_eq!(
            parse(&mem, &[desc(HDR, 16, false), desc(STATUS, 1, true)], 8)
                .unwrap()
                .request_type,
            RequestType::Flush
        );
        assert_eq!(
            rejected(
                &mem,
                &[
                    desc(HDR, 16, false),
                    desc(DATA, 512, false),
                    desc(STATUS, 1, true)
                ],
                8
            )
            .0,
            RequestError::FlushWithData { len: 512 }
        );
        write_header(&mem, HDR, VIRTIO_BLK_T_GET_ID, 0);
        let r = parse(
            &mem,
            &[
                desc(HDR, 16, false),
                desc(DATA, 20, true),
                desc(STATUS, 1, true),
            ],
            8,
        )
        .unwrap();
        assert_eq!((r.request_type, r.data_len), (RequestType::GetId, 20));
        write_header(&mem, HDR, 99, 0);
        let r = parse(
            &mem,
            &[
                desc(HDR, 16, false),
                desc(DATA, 7, false),
                desc(STATUS, 1, true),
            ],
            8,
        )
        .unwrap();
        assert_eq!(
            (r.request_type, r.data.len()),
            (RequestType::Unsupported(99), 0)
        );
    }

    #[test]
    fn indirect_tables_are_followed_and_bounded() {
        let mem = test_memory();
        let table = 0x40_0000u64;
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        let next = VRING_DESC_F_NEXT as u16;
        let entries = [
            SplitDescriptor::new(HDR, 16, next, 1),
            SplitDescriptor::new(DATA, 512, next | 2, 2),
            SplitDescriptor::new(STATUS, 1, 2, 0),
        ];
        for (i, d) in entries.iter().enumerate() {
            mem.write_obj(RawDescriptor::from(*d), GuestAddress(table + 16 * i as u64))
                .unwrap();
        }
        let head = RawDescriptor::from(SplitDescriptor::new(
            table,
            48,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ));
        let r = parse(&mem, &[head], 8).unwrap();
        assert_eq!((r.request_type, r.data_len), (RequestType::In, 512));

        // An indirect table of 4096 entries all chained together: we stop at our limit.
        let big = 0x50_0000u64;
        for i in 0..4096u64 {
            let d = SplitDescriptor::new(DATA, 512, next | 2, (i + 1) as u16);
            mem.write_obj(RawDescriptor::from(d), GuestAddress(big + 16 * i))
                .unwrap();
        }
        let head = RawDescriptor::from(SplitDescriptor::new(
            big,
            4096 * 16,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ));
        assert_eq!(
            rejected(&mem, &[head], 8),
            (RequestError::TooManyDescriptors, None)
        );

        // An indirect entry pointing to another indirect table ends the chain (virtio 1.2
        // §2.7.5.3.1 forbids nesting); the rest is too short to be a request.
        mem.write_obj(head, GuestAddress(table + 16)).unwrap();
        let head = RawDescriptor::from(SplitDescriptor::new(
            table,
            48,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ));
        assert!(parse(&mem, &[head], 8).is_err());
        // An indirect table whose length is not a multiple of 16 yields no descriptors.
        let head = RawDescriptor::from(SplitDescriptor::new(
            table,
            47,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ));
        assert_eq!(
            rejected(&mem, &[head], 8),
            (RequestError::DescriptorChainTooShort { count: 0 }, None)
        );
        // An indirect table outside guest memory likewise.
        let head = RawDescriptor::from(SplitDescriptor::new(
            u64::MAX - 15,
            48,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ));
        assert!(rejected(&mem, &[head], 8).1.is_none());
    }

    #[test]
    fn looping_chains_terminate() {
        let mem = test_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        let q = MockSplitQueue::new(&mem, 16);
        let next = VRING_DESC_F_NEXT as u16;
        // 0 -> 1 -> 2 -> 1 -> 2 ...
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(HDR, 16, next, 1)),
            RawDescriptor::from(SplitDescriptor::new(DATA, 512, next | 2, 2)),
            RawDescriptor::from(SplitDescriptor::new(STATUS, 1, next | 2, 1)),
        ];
        let chain = q.build_multiple_desc_chains(&descs).unwrap();
        // virtio-queue stops after 16 descriptors; the last is data, not a 1-byte status.
        let r = parse_request(&mem, chain, 8).unwrap_err();
        assert_eq!(r.status, None);
        // A next index beyond the table ends the chain there.
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(HDR, 16, next, 1)),
            RawDescriptor::from(SplitDescriptor::new(STATUS, 1, next | 2, 999)),
        ];
        let chain = q.build_multiple_desc_chains(&descs).unwrap();
        assert_eq!(parse_request(&mem, chain, 8).unwrap().data_len, 0);
    }
}
