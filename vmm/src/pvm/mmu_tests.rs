//! Page-walk and linear-memory tests over real guest RAM with hand-built page tables.

use super::*;

/// Guest RAM of 4 MiB with a 4-level page table at 0x1000 mapping:
/// - 0x40_0000_0000+page n → physical 0x10_0000 + n*4K for n in 0..16 (4K pages, RW, user per `user`)
/// - page 3 of that range read-only, page 4 not present
/// - 0x7f80_0000_0000 → 2 MiB page at physical 0x20_0000 (supervisor, RW)
pub(crate) fn guest_with_tables(user: bool) -> (GuestMemoryMmap, u64) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let us = if user { PTE_US } else { 0 };
    let (pml4, pdpt, pd, pt) = (0x1000u64, 0x2000u64, 0x3000u64, 0x4000u64);
    let pdpt2 = 0x5000u64;
    let pd2 = 0x6000u64;
    let w = |addr: u64, v: u64| mem.write_obj(v, GuestAddress(addr)).unwrap();
    // 0x40_0000_0000: PML4 index 0, PDPT index 256.
    w(pml4, pdpt | PTE_P | PTE_RW | PTE_US);
    w(pdpt + 256 * 8, pd | PTE_P | PTE_RW | PTE_US);
    w(pd, pt | PTE_P | PTE_RW | PTE_US);
    for n in 0..16u64 {
        let mut e = (0x10_0000 + n * 4096) | PTE_P | PTE_RW | us;
        if n == 3 {
            e &= !PTE_RW;
        }
        if n == 4 {
            e = 0;
        }
        w(pt + n * 8, e);
    }
    // 0x7f80_0000_0000: PML4 index 255.
    w(pml4 + 255 * 8, pdpt2 | PTE_P | PTE_RW | PTE_US);
    w(pdpt2, pd2 | PTE_P | PTE_RW | PTE_US);
    w(pd2, 0x20_0000 | PTE_P | PTE_RW | PTE_PS);
    (mem, pml4)
}

pub(crate) fn paging(cr3: u64, user: bool) -> Paging {
    Paging {
        enabled: true,
        long_mode: true,
        cr3,
        wp: true,
        user,
        ..Default::default()
    }
}

const V: u64 = 0x40_0000_0000;

#[test]
fn walks_4k_and_2m_pages_and_sets_accessed_dirty() {
    let (mem, cr3) = guest_with_tables(false);
    let p = paging(cr3, false);
    assert_eq!(translate(&mem, &p, V + 0x123, Access::Read), Ok(0x10_0123));
    assert_eq!(
        translate(&mem, &p, V + 2 * 4096 + 8, Access::Write),
        Ok(0x10_2008)
    );
    let pte2: u64 = mem.read_obj(GuestAddress(0x4000 + 16)).unwrap();
    assert_eq!(pte2 & (PTE_A | PTE_D), PTE_A | PTE_D);
    let pte0: u64 = mem.read_obj(GuestAddress(0x4000)).unwrap();
    assert_eq!(pte0 & (PTE_A | PTE_D), PTE_A);
    assert_eq!(
        translate(&mem, &p, 0x7f80_0001_2345, Access::Read),
        Ok(0x21_2345)
    );
    // Peek leaves the accessed bits alone.
    let pte5_before: u64 = mem.read_obj(GuestAddress(0x4000 + 40)).unwrap();
    assert_eq!(
        translate(&mem, &p, V + 5 * 4096, Access::Peek),
        Ok(0x10_5000)
    );
    let pte5_after: u64 = mem.read_obj(GuestAddress(0x4000 + 40)).unwrap();
    assert_eq!(pte5_before, pte5_after);
}

#[test]
fn faults_carry_architectural_error_codes() {
    let (mem, cr3) = guest_with_tables(true);
    // Not present, supervisor read.
    let e = translate(&mem, &paging(cr3, false), V + 4 * 4096 + 1, Access::Read);
    assert_eq!(
        e,
        Err(MemError::Fault(Exception::page_fault(V + 4 * 4096 + 1, 0)))
    );
    // Read-only page, supervisor write with CR0.WP.
    let e = translate(&mem, &paging(cr3, false), V + 3 * 4096, Access::Write);
    assert_eq!(
        e,
        Err(MemError::Fault(Exception::page_fault(V + 3 * 4096, 0b011)))
    );
    // Same without CR0.WP succeeds.
    let nowp = Paging {
        wp: false,
        ..paging(cr3, false)
    };
    assert!(translate(&mem, &nowp, V + 3 * 4096, Access::Write).is_ok());
    // User access to a supervisor 2 MiB page.
    let e = translate(&mem, &paging(cr3, true), 0x7f80_0000_0010, Access::Read);
    assert_eq!(
        e,
        Err(MemError::Fault(Exception::page_fault(
            0x7f80_0000_0010,
            0b101
        )))
    );
    // SMAP: supervisor touching a user page needs RFLAGS.AC.
    let smap = Paging {
        smap: true,
        ..paging(cr3, false)
    };
    assert!(matches!(
        translate(&mem, &smap, V, Access::Read),
        Err(MemError::Fault(_))
    ));
    let smap_ac = Paging { ac: true, ..smap };
    assert_eq!(translate(&mem, &smap_ac, V, Access::Read), Ok(0x10_0000));
}

#[test]
fn page_crossing_write_is_all_or_nothing() {
    let (mem, cr3) = guest_with_tables(false);
    let mut m = PagedMemory::new(&mem, paging(cr3, false));
    // Page 2 → 3 crossing: page 3 is read-only, so nothing may be written to page 2.
    let start = V + 3 * 4096 - 4;
    let e = m.write(start, &[0xaa; 8]);
    assert_eq!(
        e,
        Err(MemError::Fault(Exception::page_fault(V + 3 * 4096, 0b011)))
    );
    let mut b = [0u8; 4];
    mem.read_slice(&mut b, GuestAddress(0x10_2ffc)).unwrap();
    assert_eq!(b, [0; 4]);
    // Page 0 → 1 crossing lands in two physical pages.
    m.write(V + 4096 - 2, &[1, 2, 3, 4]).unwrap();
    let mut lo = [0u8; 2];
    let mut hi = [0u8; 2];
    mem.read_slice(&mut lo, GuestAddress(0x10_0ffe)).unwrap();
    mem.read_slice(&mut hi, GuestAddress(0x10_1000)).unwrap();
    assert_eq!((lo, hi), ([1, 2], [3, 4]));
    let mut back = [0u8; 4];
    m.read(V + 4096 - 2, &mut back).unwrap();
    assert_eq!(back, [1, 2, 3, 4]);
}

#[test]
fn cmpxchg_on_guest_ram_is_atomic_and_checked() {
    let (mem, cr3) = guest_with_tables(false);
    let mut m = PagedMemory::new(&mem, paging(cr3, false));
    let a = V + 0x40;
    m.write(
        a,
        &0x1111_2222_3333_4444_5555_6666_7777_8888u128.to_le_bytes(),
    )
    .unwrap();
    assert_eq!(
        m.cmpxchg16(a, 1, 2),
        Ok(Err(0x1111_2222_3333_4444_5555_6666_7777_8888))
    );
    assert_eq!(
        m.cmpxchg16(a, 0x1111_2222_3333_4444_5555_6666_7777_8888, 7),
        Ok(Ok(()))
    );
    let got: u128 = mem.read_obj(GuestAddress(0x10_0040)).unwrap();
    assert_eq!(got, 7);
    assert_eq!(
        m.cmpxchg16(a + 8, 0, 0),
        Err(MemError::Fault(Exception::gp0()))
    );
    assert!(matches!(
        m.cmpxchg16(V + 3 * 4096, 0, 0),
        Err(MemError::Fault(_))
    ));
    // cmpxchg8: aligned and misaligned page-crossing.
    assert_eq!(m.cmpxchg8(a, 7, 9), Ok(Ok(())));
    assert_eq!(m.cmpxchg8(a, 7, 9), Ok(Err(9)));
    let x = V + 4096 - 4;
    m.write(x, &5u64.to_le_bytes()).unwrap();
    assert_eq!(m.cmpxchg8(x, 5, 0xabcdef), Ok(Ok(())));
    let mut b = [0u8; 8];
    m.read(x, &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0xabcdef);
}

#[test]
fn tables_outside_ram_and_non_long_mode_are_errors() {
    let (mem, _) = guest_with_tables(false);
    let p = paging(0x4000_0000, false);
    assert!(matches!(
        translate(&mem, &p, 0, Access::Read),
        Err(MemError::NotRam { .. })
    ));
    let legacy = Paging {
        long_mode: false,
        ..paging(0x1000, false)
    };
    assert!(matches!(
        translate(&mem, &legacy, 0, Access::Read),
        Err(MemError::UnsupportedPaging(_))
    ));
    let off = Paging {
        enabled: false,
        ..Default::default()
    };
    assert_eq!(translate(&mem, &off, 0x1234, Access::Write), Ok(0x1234));
}

#[test]
fn five_level_walk() {
    let (mem, _) = guest_with_tables(false);
    // PML5 at 0x7000, entry 0 → the existing PML4.
    mem.write_obj(0x1000u64 | PTE_P | PTE_RW | PTE_US, GuestAddress(0x7000))
        .unwrap();
    let p = Paging {
        la57: true,
        ..paging(0x7000, false)
    };
    assert_eq!(translate(&mem, &p, V + 0x10, Access::Read), Ok(0x10_0010));
}
