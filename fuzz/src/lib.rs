//! Fuzz targets for everything a guest or a tenant hands the monitor or outpostd to parse.
//! Each target is a function from bytes to nothing that must never panic, hang or allocate
//! without bound; [`TARGETS`] names them all. The binaries in `fuzz_targets/` hand each to
//! libFuzzer (`scripts/fuzz.sh`), and `tests/corpus.rs` replays the corpus in `corpus/`
//! through them on every `cargo test`.

pub mod control_api;
pub mod kernel;
pub mod legacy;
pub mod pvm;
pub mod snapshot;
pub mod virtio;
pub mod vmm_api;

/// One fuzz target: its name (also its binary's and its corpus directory's) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order scripts/fuzz.sh runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pvm_emulate",
        run: pvm::emulate,
    },
    Target {
        name: "virtio_mmio",
        run: virtio::mmio,
    },
    Target {
        name: "virtio_rng",
        run: virtio::rng,
    },
    Target {
        name: "virtio_block",
        run: virtio::block,
    },
    Target {
        name: "legacy_serial",
        run: legacy::serial,
    },
    Target {
        name: "legacy_i8042",
        run: legacy::i8042,
    },
    Target {
        name: "kernel_loader",
        run: kernel::loader,
    },
    Target {
        name: "kernel_decompress",
        run: kernel::decompress,
    },
    Target {
        name: "vmm_api",
        run: vmm_api::requests,
    },
    Target {
        name: "outpostd_api",
        run: control_api::requests,
    },
    Target {
        name: "snapshot_devices",
        run: snapshot::devices,
    },
];

/// Up to `max` bytes of the input, as many as it says.
pub(crate) fn bytes_up_to<'a>(
    u: &mut arbitrary::Unstructured<'a>,
    max: usize,
) -> arbitrary::Result<&'a [u8]> {
    let len = u.int_in_range(0..=max)?;
    u.bytes(len)
}

/// What is left of the input.
pub(crate) fn rest<'a>(u: &mut arbitrary::Unstructured<'a>) -> &'a [u8] {
    let len = u.len();
    u.bytes(len).unwrap_or_default()
}
