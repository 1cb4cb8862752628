//! The kernel loaders: an image file (ELF vmlinux or bzImage, whatever the tenant uploaded
//! as a kernel) loaded into guest memory, and the bzImage payload decompressors.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use outpost_vmm::boot::{self, bzimage, decompress};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest RAM the loader writes into: enough for the 1 MiB load address and a small kernel,
/// so a well-formed input loads and a misplaced one fails on bounds.
const MEM_SIZE: usize = 8 << 20;

/// `load_kernel` on the input as the kernel file; then the bzImage steps on their own,
/// which `load_kernel` skips for inputs that are not a bzImage its first step accepts.
pub fn loader(data: &[u8]) {
    if let Some((mem, image)) = loader_state() {
        if let Ok(image) = image.lock() {
            if image.0.set_len(0).is_ok() && image.0.write_all_at(data, 0).is_ok() {
                let _ = boot::load_kernel(mem, &image.1);
            }
        }
    }
    if let Ok(header) = bzimage::parse(data) {
        let _ = bzimage::payload(data, &header);
        let _ = bzimage::unpack_payload(data, &header);
    }
}

/// Every decompressor: the first byte picks the codec, whose magic is put in front of the
/// rest, so the fuzzer does not spend its time finding seven magic numbers.
pub fn decompress(data: &[u8]) {
    const MAGICS: [&[u8]; 7] = [
        &[0x1f, 0x8b],
        b"BZh",
        &[0x5d, 0x00, 0x00],
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        &[0x89, b'L', b'Z', b'O'],
        &[0x02, 0x21, 0x4c, 0x18],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let magic = MAGICS[usize::from(pick) % MAGICS.len()];
    // Inputs that already start with a magic (seeds made by the real tools) go as they are.
    let payload = if decompress::detect(rest).is_ok() {
        rest.to_vec()
    } else {
        [magic, rest].concat()
    };
    let _ = decompress::decompress(&payload);
}

type LoaderState = (GuestMemoryMmap, Mutex<(std::fs::File, PathBuf)>);

/// Guest memory and the kernel file, made once per process (the file is unlinked and
/// reached through /proc/self/fd, so nothing is left behind).
fn loader_state() -> Option<&'static LoaderState> {
    static STATE: OnceLock<Option<LoaderState>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).ok()?;
            let file = tempfile::tempfile().ok()?;
            let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            Some((mem, Mutex::new((file, path))))
        })
        .as_ref()
}
