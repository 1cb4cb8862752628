//! ACPI tables for the guest (ACPI 6.5): RSDP → XSDT → FADT (hardware-reduced, with our
//! sleep-control and reset registers), MADT (the CPUs and the IOAPIC; the stock Debian
//! kernel has no MP-table parser) and a DSDT describing the legacy devices and one
//! `LNRO0005` device per virtio-mmio transport, so kernels without
//! `virtio_mmio.device=` parsing still find their disks and NICs.

use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::*;

const OEM_ID: [u8; 6] = *b"OUTPST";
const OEM_TABLE_ID: [u8; 8] = *b"OUTPOST ";
const OEM_REVISION: u32 = 1;

/// Offsets in our power-management port block ([`ACPI_PM_PORT`]).
pub const PM_SLEEP_CONTROL: u16 = 0;
pub const PM_SLEEP_STATUS: u16 = 1;
pub const PM_RESET: u16 = 2;
/// Value the guest writes to the reset register to reboot.
pub const PM_RESET_VALUE: u8 = 0x0f;
/// SLP_TYP the DSDT's `_S5_` object hands the OS for soft-off.
pub const SLP_TYP_S5: u8 = 5;

/// IAPC_BOOT_ARCH (ACPI 6.5 §5.2.9.3): an 8042 exists, no VGA.
const IAPC_BOOT_ARCH_8042: u16 = 1 << 1;
const IAPC_BOOT_ARCH_NO_VGA: u16 = 1 << 2;

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("ACPI tables need {needed} bytes, the BIOS area has {available}")]
    TooLarge { needed: u64, available: u64 },
    #[error("cannot write ACPI tables to guest memory: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// A virtio-mmio transport as the DSDT describes it.
#[derive(Clone, Copy, Debug)]
pub struct MmioDeviceInfo {
    pub base: u64,
    pub len: u64,
    pub gsi: u32,
}

fn legacy_devices() -> Vec<u8> {
    let mut bytes = Vec::new();
    let (com1_io, com1_irq) = (
        aml::IO::new(COM1_PORT, COM1_PORT, 1, 8),
        aml::Interrupt::new(true, true, false, false, COM1_IRQ),
    );
    let com1_crs = aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    aml::Device::new(
        "_SB_.COM1".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501")),
            &aml::Name::new("_UID".into(), &aml::ZERO),
            &aml::Name::new("_CRS".into(), &com1_crs),
        ],
    )
    .to_aml_bytes(&mut bytes);
    let (kbd_data, kbd_cmd, kbd_irq) = (
        aml::IO::new(I8042_PORT, I8042_PORT, 1, 1),
        aml::IO::new(I8042_PORT + 4, I8042_PORT + 4, 1, 1),
        aml::Interrupt::new(true, true, false, false, I8042_IRQ),
    );
    let kbd_crs = aml::ResourceTemplate::new(vec![&kbd_data, &kbd_cmd, &kbd_irq]);
    aml::Device::new(
        "_SB_.PS2K".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0303")),
            &aml::Name::new("_CRS".into(), &kbd_crs),
        ],
    )
    .to_aml_bytes(&mut bytes);
    // ACPI 6.5 §7.4.2: the \_S5 package gives SLP_TYP for soft-off.
    aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&SLP_TYP_S5, &0u8, &0u8, &0u8]),
    )
    .to_aml_bytes(&mut bytes);
    bytes
}

fn virtio_device(index: usize, dev: &MmioDeviceInfo) -> Vec<u8> {
    let mut bytes = Vec::new();
    let (window, irq) = (
        aml::Memory32Fixed::new(true, dev.base as u32, dev.len as u32),
        aml::Interrupt::new(true, true, false, false, dev.gsi),
    );
    let crs = aml::ResourceTemplate::new(vec![&window, &irq]);
    let uid = index as u32;
    aml::Device::new(
        format!("_SB_.V{index:03X}").as_str().into(),
        vec![
            &aml::Name::new("_HID".into(), &"LNRO0005"),
            &aml::Name::new("_UID".into(), &uid),
            &aml::Name::new("_CCA".into(), &aml::ONE),
            &aml::Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(&mut bytes);
    bytes
}

/// Builds the DSDT.
pub fn dsdt(mmio: &[MmioDeviceInfo]) -> Sdt {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&legacy_devices());
    for (i, d) in mmio.iter().enumerate() {
        dsdt.append_slice(&virtio_device(i, d));
    }
    dsdt.update_checksum();
    dsdt
}

/// Writes all tables at [`ACPI_START`] and returns the RSDP's address.
pub fn create_acpi_tables(
    mem: &GuestMemoryMmap,
    vcpus: u8,
    mmio: &[MmioDeviceInfo],
) -> Result<u64, AcpiError> {
    let rsdp_addr = ACPI_START;
    let xsdt_addr = rsdp_addr + 64;
    let mut next = xsdt_addr + 64 + 8 * 4;
    let mut place = |len: usize| {
        let at = next;
        next = (next + len as u64 + 7) & !7;
        at
    };

    let dsdt = dsdt(mmio);
    let dsdt_bytes = dsdt.as_slice().to_vec();
    let dsdt_addr = place(dsdt_bytes.len());

    let io = |port: u16| {
        GAS::new(
            AddressSpace::SystemIo,
            8,
            0,
            AccessSize::ByteAccess,
            port.into(),
        )
    };
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        .dsdt_64(dsdt_addr);
    fadt.sleep_control_reg = io(ACPI_PM_PORT + PM_SLEEP_CONTROL);
    fadt.sleep_status_reg = io(ACPI_PM_PORT + PM_SLEEP_STATUS);
    fadt.reset_reg = io(ACPI_PM_PORT + PM_RESET);
    fadt.reset_value = PM_RESET_VALUE;
    fadt.iapc_boot_arch = (IAPC_BOOT_ARCH_8042 | IAPC_BOOT_ARCH_NO_VGA).into();
    let mut fadt_bytes = Vec::new();
    fadt.finalize().to_aml_bytes(&mut fadt_bytes);
    let fadt_addr = place(fadt_bytes.len());

    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR as u32),
    );
    for cpu in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, IOAPIC_ADDR as u32, 0));
    let mut madt_bytes = Vec::new();
    madt.to_aml_bytes(&mut madt_bytes);
    let madt_addr = place(madt_bytes.len());

    if next > ACPI_END {
        return Err(AcpiError::TooLarge {
            needed: next - ACPI_START,
            available: ACPI_END - ACPI_START,
        });
    }
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let mut xsdt_bytes = Vec::new();
    xsdt.to_aml_bytes(&mut xsdt_bytes);
    let mut rsdp_bytes = Vec::new();
    Rsdp::new(OEM_ID, xsdt_addr).to_aml_bytes(&mut rsdp_bytes);

    for (addr, bytes) in [
        (rsdp_addr, &rsdp_bytes),
        (xsdt_addr, &xsdt_bytes),
        (dsdt_addr, &dsdt_bytes),
        (fadt_addr, &fadt_bytes),
        (madt_addr, &madt_bytes),
    ] {
        mem.write_slice(bytes, GuestAddress(addr))?;
    }
    Ok(rsdp_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    #[test]
    fn tables_are_linked_and_checksummed() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let devs = [
            MmioDeviceInfo {
                base: VIRTIO_MMIO_START,
                len: 0x1000,
                gsi: 5,
            },
            MmioDeviceInfo {
                base: VIRTIO_MMIO_START + 0x1000,
                len: 0x1000,
                gsi: 6,
            },
        ];
        let rsdp = create_acpi_tables(&mem, 2, &devs).unwrap();
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, GuestAddress(rsdp)).unwrap();
        assert_eq!(&r[..8], b"RSD PTR ");
        assert!(checksum_ok(&r[..20]) && checksum_ok(&r));
        let xsdt_addr = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let mut hdr = [0u8; 36];
        mem.read_slice(&mut hdr, GuestAddress(xsdt_addr)).unwrap();
        assert_eq!(&hdr[..4], b"XSDT");
        let len = u32::from_le_bytes(hdr[4..8].try_into().unwrap()) as usize;
        let mut x = vec![0u8; len];
        mem.read_slice(&mut x, GuestAddress(xsdt_addr)).unwrap();
        assert!(checksum_ok(&x));
        let mut sigs = Vec::new();
        for e in x[36..].chunks(8) {
            let a = u64::from_le_bytes(e.try_into().unwrap());
            let mut h = [0u8; 8];
            mem.read_slice(&mut h, GuestAddress(a)).unwrap();
            let l = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
            let mut t = vec![0u8; l];
            mem.read_slice(&mut t, GuestAddress(a)).unwrap();
            assert!(checksum_ok(&t), "{:?}", &h[..4]);
            sigs.push(h[..4].to_vec());
        }
        assert_eq!(sigs, vec![b"FACP".to_vec(), b"APIC".to_vec()]);
    }

    #[test]
    fn dsdt_names_each_virtio_device() {
        let devs: Vec<_> = (0..3)
            .map(|i| MmioDeviceInfo {
                base: VIRTIO_MMIO_START + i * 0x1000,
                len: 0x1000,
                gsi: 5 + i as u32,
            })
            .collect();
        let d = dsdt(&devs);
        let s = d.as_slice();
        let count = s.windows(8).filter(|w| w == b"LNRO0005").count();
        assert_eq!(count, 3);
        assert!(s.windows(4).any(|w| w == b"_S5_"));
    }
}
