//! ACPI tables for the guest (ACPI 6.5): RSDP → XSDT → FADT (hardware-reduced, with our
//! sleep-control and reset registers), MADT (the CPUs and the IOAPIC; the stock Debian
//! kernel has no MP-table parser) and a DSDT describing the legacy devices, the power
//! button behind a Generic Event Device, and one `LNRO0005` device per virtio-mmio
//! transport, so kernels without `virtio_mmio.device=` parsing still find their disks and
//! NICs.

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
use crate::devices::legacy::ged::GED_EVENT_POWER_BUTTON;

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

/// ACPI 6.5 §5.6.6: the notification a power button sends when pressed.
const NOTIFY_POWER_BUTTON_PRESSED: u8 = 0x80;

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

/// The power button of a hardware-reduced platform, which has no fixed-feature button: a
/// control-method power button (`PNP0C0C`, ACPI 6.5 §4.8.2.2.1.2) that the Generic Event
/// Device (`ACPI0013`, §5.6.9) notifies. The GED's interrupt runs its `_EVT`, which reads
/// the monitor's event register (reading clears it, see `devices::legacy::ged`) and sends
/// the button's notification for the bit it finds.
fn power_button() -> Vec<u8> {
    let mut bytes = Vec::new();
    aml::Device::new(
        "_SB_.PWRB".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C0C")),
            &aml::Name::new("_UID".into(), &aml::ZERO),
        ],
    )
    .to_aml_bytes(&mut bytes);

    let irq = aml::Interrupt::new(true, true, false, false, ACPI_GED_IRQ);
    let crs = aml::ResourceTemplate::new(vec![&irq]);
    let region = aml::OpRegion::new(
        "GDST".into(),
        aml::OpRegionSpace::SystemIO,
        &ACPI_GED_PORT,
        &ACPI_GED_LEN,
    );
    let field = aml::Field::new(
        "GDST".into(),
        aml::FieldAccessType::Byte,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::WriteAsZeroes,
        vec![aml::FieldEntry::Named(*b"GDAT", 8)],
    );
    let (register, button) = (aml::Path::new("GDAT"), aml::Path::new("\\_SB_.PWRB"));
    let events = aml::Local(0);
    let read_events = aml::Store::new(&events, &register);
    let button_bit = aml::And::new(&aml::ZERO, &events, &GED_EVENT_POWER_BUTTON);
    let notify = aml::Notify::new(&button, &NOTIFY_POWER_BUTTON_PRESSED);
    let if_button = aml::If::new(&button_bit, vec![&notify]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&read_events, &if_button]);
    aml::Device::new(
        "_SB_.GED_".into(),
        vec![
            &aml::Name::new("_HID".into(), &"ACPI0013"),
            &aml::Name::new("_UID".into(), &aml::ZERO),
            &aml::Name::new("_CRS".into(), &crs),
            &region,
            &field,
            &evt,
        ],
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
    dsdt.append_slice(&power_button());
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

    /// AML 6.5 §20.2.4: a PkgLength's value and how many bytes it takes.
    fn pkg_length(b: &[u8]) -> (usize, usize) {
        let extra = usize::from(b[0] >> 6);
        if extra == 0 {
            return (usize::from(b[0] & 0x3f), 1);
        }
        let mut len = usize::from(b[0] & 0x0f);
        for (i, byte) in b[1..=extra].iter().enumerate() {
            len |= usize::from(*byte) << (4 + 8 * i);
        }
        (len, extra + 1)
    }

    /// AML 6.5 §20.2.2: a NameString's segments (root and prefixes dropped) and its size.
    fn name_string(b: &[u8]) -> (Vec<String>, usize) {
        let root = usize::from(b[0] == b'\\');
        let (count, at) = match b[root] {
            0x2e => (2, root + 1),
            0x2f => (usize::from(b[root + 1]), root + 2),
            _ => (1, root),
        };
        let segs = (0..count)
            .map(|i| String::from_utf8_lossy(&b[at + 4 * i..at + 4 * i + 4]).into_owned())
            .collect();
        (segs, at + 4 * count)
    }

    /// The body (after its name) of every `Device` (ExtOp 0x82) named `path` at the top
    /// level of the DSDT's definition block.
    fn device<'a>(dsdt: &'a [u8], path: &[&str]) -> Vec<&'a [u8]> {
        let mut found = Vec::new();
        let mut at = 36;
        while at + 2 < dsdt.len() {
            if dsdt[at] == 0x5b && dsdt[at + 1] == 0x82 {
                let (len, len_size) = pkg_length(&dsdt[at + 2..]);
                let end = at + 2 + len;
                let (name, name_size) = name_string(&dsdt[at + 2 + len_size..]);
                if name == path {
                    found.push(&dsdt[at + 2 + len_size + name_size..end]);
                }
                at = end;
            } else {
                at += 1;
            }
        }
        found
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// ACPI 6.5 §6.1.5: a compressed EISA id (three 5-bit letters, four hex digits, stored
    /// big-endian) back to its text.
    fn eisa_id(raw: [u8; 4]) -> String {
        let v = u32::from_be_bytes(raw);
        let letter = |shift: u32| char::from(b'@' + ((v >> shift) & 0x1f) as u8);
        format!(
            "{}{}{}{:04X}",
            letter(26),
            letter(21),
            letter(16),
            v & 0xffff
        )
    }

    /// The DSDT holds the power button (`PNP0C0C`) and the GED (`ACPI0013`): the GED's
    /// interrupt, its register as a byte in system I/O at our port, and an `_EVT` taking
    /// one argument that reads the register and notifies the button with 0x80.
    #[test]
    fn dsdt_describes_the_power_button_behind_a_ged() {
        let d = dsdt(&[]);
        let d = d.as_slice();

        let pwrb = device(d, &["_SB_", "PWRB"]);
        assert_eq!(pwrb.len(), 1, "one power button");
        // Name(_HID, DWordConst EISAID)
        let hid = pwrb[0]
            .windows(10)
            .find(|w| w[..6] == [0x08, b'_', b'H', b'I', b'D', 0x0c])
            .expect("the button has a _HID");
        assert_eq!(eisa_id([hid[6], hid[7], hid[8], hid[9]]), "PNP0C0C");

        let ged = device(d, &["_SB_", "GED_"]);
        assert_eq!(ged.len(), 1, "one GED");
        let ged = ged[0];
        assert!(contains(ged, b"\x08_HID\x0dACPI0013\0"), "GED _HID");
        // Extended Interrupt descriptor (§6.4.3.6): consumer, edge, active high, one GSI.
        let mut irq = vec![0x89, 6, 0, 0b0000_0011, 1];
        irq.extend_from_slice(&ACPI_GED_IRQ.to_le_bytes());
        assert!(contains(ged, &irq), "GED _CRS holds its edge interrupt");
        // OperationRegion(GDST, SystemIO, port, length) with word and byte constants.
        let mut region = vec![0x5b, 0x80, b'G', b'D', b'S', b'T', 0x01, 0x0b];
        region.extend_from_slice(&ACPI_GED_PORT.to_le_bytes());
        assert!(
            contains(ged, &region),
            "GED register region at {ACPI_GED_PORT:#x}"
        );
        assert!(contains(ged, b"GDAT\x08"), "an 8-bit field GDAT");

        let evt_at = ged
            .windows(4)
            .position(|w| w == b"_EVT")
            .expect("the GED has _EVT");
        assert_eq!(
            ged[evt_at - 2] & 0xc0,
            0,
            "short method for this test's decoder"
        );
        let (len, _) = pkg_length(&ged[evt_at - 1..]);
        let method = &ged[evt_at - 1..evt_at - 1 + len];
        assert_eq!(ged[evt_at - 2], 0x14, "_EVT is a Method");
        let flags = ged[evt_at + 4];
        assert_eq!(flags & 0x7, 1, "_EVT takes the GSI as its one argument");
        // Store(GDAT, Local0), then Notify(\_SB_.PWRB, 0x80) under an If.
        assert!(contains(method, &[0x70, b'G', b'D', b'A', b'T', 0x60]));
        assert!(contains(method, &[0xa0]), "the notification is conditional");
        let notify = [
            &[0x86, b'\\', 0x2e][..],
            b"_SB_PWRB",
            &[0x0a, NOTIFY_POWER_BUTTON_PRESSED],
        ]
        .concat();
        assert!(
            contains(method, &notify),
            "_EVT notifies the button: {method:02x?}"
        );
    }
}
