//! Kernel loading. An ELF vmlinux is loaded at its physical addresses and entered through
//! PVH when it carries the note, else through the 64-bit boot protocol. A bzImage is
//! unpacked in the monitor ([`bzimage`], [`decompress`]) and booted as the ELF inside; only
//! when that cannot work is the bzImage itself loaded and its own decompressor run.

pub mod bzimage;
pub mod decompress;
pub mod params;

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{bzimage::BzImage, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::arch::layout::HIGH_MEMORY_START;
use crate::arch::regs::EntryMode;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open kernel {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel {path} is neither an ELF vmlinux nor a bzImage")]
    UnknownFormat { path: String },
    #[error("kernel {path} could not be loaded: {reason}")]
    Load { path: String, reason: String },
}

/// What the kernel loader left in guest memory, and how to enter it.
#[derive(Clone, Debug)]
pub struct LoadedKernel {
    pub entry: GuestAddress,
    pub mode: EntryMode,
    /// End of the loaded image: the initrd must not overlap it.
    pub end: u64,
    /// A bzImage's setup header, used for the zero page when its own code runs.
    pub setup_header: Option<setup_header>,
    /// How the image was loaded, for the log.
    pub how: String,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Loads the kernel at `path` into `mem`.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, LoadError> {
    let p = path.display().to_string();
    let mut file = crate::jail::files::open_read(path).map_err(|source| LoadError::Open {
        path: p.clone(),
        source,
    })?;
    let mut magic = [0u8; 4];
    let is_elf = file.read_exact(&mut magic).is_ok() && &magic == ELF_MAGIC;
    let load_err = |reason: String| LoadError::Load {
        path: p.clone(),
        reason,
    };
    if is_elf {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| load_err(e.to_string()))?;
        return load_elf(mem, &mut file, "ELF vmlinux").map_err(load_err);
    }
    let mut image = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut image))
        .map_err(|e| load_err(e.to_string()))?;
    let header =
        bzimage::parse(&image).map_err(|_| LoadError::UnknownFormat { path: p.clone() })?;
    match bzimage::unpack_payload(&image, &header) {
        Ok((codec, elf)) if elf.starts_with(ELF_MAGIC) => {
            // The compressed image is no longer needed: free it before the ELF is copied
            // into guest memory, which lowers the monitor's peak RSS.
            drop(image);
            let how = format!("bzImage, {codec:?} payload unpacked by the monitor");
            return load_elf(mem, &mut Cursor::new(elf), &how).map_err(load_err);
        }
        Ok(_) => tracing::warn!("bzImage payload is not an ELF; running its own decompressor"),
        Err(e) => {
            tracing::warn!("cannot unpack bzImage payload ({e}); running its own decompressor")
        }
    }
    let r = BzImage::load(
        mem,
        None,
        &mut Cursor::new(&image[..]),
        Some(GuestAddress(HIGH_MEMORY_START)),
    )
    .map_err(|e| load_err(e.to_string()))?;
    Ok(LoadedKernel {
        // 64-bit entry point of the protected-mode code (Documentation/x86/boot.rst).
        entry: GuestAddress(r.kernel_load.0 + 0x200),
        mode: EntryMode::Linux64,
        end: r.kernel_end,
        setup_header: r.setup_header,
        how: "bzImage with its own decompressor".into(),
    })
}

fn load_elf<F>(mem: &GuestMemoryMmap, image: &mut F, how: &str) -> Result<LoadedKernel, String>
where
    F: Read + vm_memory::ReadVolatile + Seek,
{
    let r = Elf::load(mem, None, image, Some(GuestAddress(HIGH_MEMORY_START)))
        .map_err(|e| e.to_string())?;
    let force_linux64 = std::env::var("OUTPOST_BOOT_ENTRY").is_ok_and(|v| v == "linux64");
    let (entry, mode) = match r.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) if !force_linux64 => (addr, EntryMode::Pvh),
        _ => (r.kernel_load, EntryMode::Linux64),
    };
    Ok(LoadedKernel {
        entry,
        mode,
        end: r.kernel_end,
        setup_header: None,
        how: format!("{how}, {mode:?} entry at {:#x}", entry.0),
    })
}
