//! Behaviour of `Region` through the real OS (and through `FaultyOs` for failures).

use buddy_mmap::{Errno, FaultyOs, Invalid, MmapError, Op, Os, Region, SystemOs, page_size};

/// Reads the whole region as a byte slice.
///
/// # Safety
///
/// Nothing writes the region while the slice lives.
unsafe fn bytes<O: Os>(region: &Region<O>) -> &[u8] {
    // SAFETY: the region is `len` readable bytes while it lives; the caller excludes writers.
    unsafe { core::slice::from_raw_parts(region.as_ptr(), region.len()) }
}

/// Fills `len` bytes at `offset` with `value`.
fn fill<O: Os>(region: &Region<O>, offset: usize, len: usize, value: u8) {
    assert!(offset + len <= region.len());
    // SAFETY: in bounds (checked above); the test owns the region and holds no slice into it.
    unsafe { region.as_ptr().add(offset).write_bytes(value, len) };
}

#[test]
fn reserve_rounds_up_to_whole_pages_and_starts_zeroed() {
    let page = page_size();
    let region = Region::reserve(page + 1).unwrap();
    assert_eq!(region.len(), 2 * page);
    assert!(!region.is_empty());
    assert_eq!(region.as_ptr() as usize % page, 0);
    assert_eq!(region.align(), page);
    // SAFETY: nothing writes the region meanwhile.
    assert!(unsafe { bytes(&region) }.iter().all(|&b| b == 0));
}

#[test]
fn reserved_memory_reads_back_what_was_written() {
    let page = page_size();
    let region = Region::reserve(16 * page).unwrap();
    for i in 0..region.len() {
        // SAFETY: `i < len`; only this test uses the region.
        unsafe { region.as_ptr().add(i).write((i % 251) as u8) };
    }
    // SAFETY: nothing writes the region meanwhile.
    let data = unsafe { bytes(&region) };
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[test]
fn reserve_of_zero_bytes_is_an_invalid_argument() {
    let err = Region::reserve(0).unwrap_err();
    assert_eq!(err.invalid_reason(), Some(Invalid::ZeroLength));
    assert_eq!(err.errno(), None);
    assert_eq!(err.op(), Op::Reserve { len: 0 });
    assert_eq!(
        err.to_string(),
        "reserve 0 B: invalid argument: length is zero"
    );
}

#[test]
fn reserve_that_overflows_when_rounded_is_an_invalid_argument() {
    for len in [
        usize::MAX,
        usize::MAX - page_size() + 2,
        isize::MAX as usize + 1,
    ] {
        let err = Region::reserve(len).unwrap_err();
        assert_eq!(err.invalid_reason(), Some(Invalid::Overflow), "len {len}");
    }
    // A quarter of the address space, plus a page, aligned to a quarter: with the slack
    // for the alignment, past `isize::MAX` on any target.
    let quarter = (usize::MAX >> 2) + 1;
    let err = Region::reserve_aligned(quarter + page_size(), quarter).unwrap_err();
    assert_eq!(err.invalid_reason(), Some(Invalid::Overflow));
}

#[test]
#[cfg_attr(miri, ignore = "Miri aborts on allocations this large")]
// On a 32-bit target every size below `isize::MAX` may fit the address space.
#[cfg(target_pointer_width = "64")]
fn reserve_of_an_absurd_size_reports_enomem_and_the_size() {
    let err = Region::reserve(1 << 62).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::NOMEM));
    assert_eq!(err.op(), Op::Reserve { len: 1 << 62 });
    let text = err.to_string();
    assert!(text.contains("ENOMEM"), "{text}");
    assert!(text.contains("4 EiB"), "{text}");
    assert_eq!(text, "reserve 4 EiB: ENOMEM");
}

#[test]
fn reserve_aligned_starts_at_the_requested_alignment() {
    let page = page_size();
    for align in [page, 2 * page, 1 << 16, 1 << 21, 1 << 26, 1 << 30] {
        if cfg!(miri) && align > 1 << 26 {
            continue; // Miri's allocations cannot be aligned beyond 2^29.
        }
        for len in [page, 3 * page + 5, 1 << 21] {
            let region = Region::reserve_aligned(len, align).unwrap();
            assert_eq!(region.as_ptr() as usize % align, 0, "align {align:#x}");
            assert_eq!(region.align(), align);
            assert_eq!(region.len(), len.next_multiple_of(page));
            fill(&region, 0, 1, 0x5A);
            fill(&region, region.len() - 1, 1, 0xA5);
            // SAFETY: nothing writes the region meanwhile.
            let data = unsafe { bytes(&region) };
            assert_eq!((data[0], data[region.len() - 1]), (0x5A, 0xA5));
        }
    }
}

#[test]
fn reserve_aligned_below_the_page_size_gives_page_alignment() {
    let region = Region::reserve_aligned(100, 8).unwrap();
    assert_eq!(region.align(), page_size());
    assert_eq!(region.as_ptr() as usize % page_size(), 0);
    assert_eq!(region.len(), page_size());
}

#[test]
fn reserve_aligned_rejects_an_alignment_that_is_not_a_power_of_two() {
    for align in [0, 3, 3 << 20] {
        let err = Region::reserve_aligned(4096, align).unwrap_err();
        assert_eq!(err.invalid_reason(), Some(Invalid::AlignNotPowerOfTwo));
        assert_eq!(err.op(), Op::ReserveAligned { len: 4096, align });
    }
}

#[test]
fn purge_makes_the_range_read_back_as_zeros_and_keeps_the_rest() {
    let page = page_size();
    let region = Region::reserve(8 * page).unwrap();
    fill(&region, 0, region.len(), 0xCD);
    // SAFETY: nothing relies on pages 2..5 and no slice into the region is live.
    unsafe { region.purge(2 * page, 3 * page) }.unwrap();
    // SAFETY: nothing writes the region meanwhile.
    let data = unsafe { bytes(&region) };
    assert!(data[..2 * page].iter().all(|&b| b == 0xCD));
    assert!(data[2 * page..5 * page].iter().all(|&b| b == 0));
    assert!(data[5 * page..].iter().all(|&b| b == 0xCD));
    // The purged pages are still usable.
    fill(&region, 2 * page, page, 7);
    // SAFETY: as above.
    let data = unsafe { bytes(&region) };
    assert!(data[2 * page..3 * page].iter().all(|&b| b == 7));
}

#[test]
fn purge_of_the_whole_region_and_of_nothing_succeed() {
    let page = page_size();
    let region = Region::reserve(4 * page).unwrap();
    fill(&region, 0, region.len(), 1);
    // SAFETY: nothing relies on the contents; no slice is live.
    unsafe { region.purge(region.len(), 0) }.unwrap();
    // SAFETY: as above.
    assert!(unsafe { bytes(&region) }.iter().all(|&b| b == 1));
    // SAFETY: as above.
    unsafe { region.purge(0, region.len()) }.unwrap();
    // SAFETY: as above.
    assert!(unsafe { bytes(&region) }.iter().all(|&b| b == 0));
}

#[test]
fn purge_with_bad_arguments_is_an_error_and_changes_nothing() {
    let page = page_size();
    let region = Region::reserve(4 * page).unwrap();
    fill(&region, 0, region.len(), 0xEE);
    let cases = [
        (1, page, Invalid::Misaligned),
        (page, 1, Invalid::Misaligned),
        (page / 2, page, Invalid::Misaligned),
        (4 * page, page, Invalid::OutOfRange),
        (3 * page, 2 * page, Invalid::OutOfRange),
        (5 * page, 0, Invalid::OutOfRange),
        (usize::MAX - page + 1, page, Invalid::Overflow),
    ];
    for (offset, len, reason) in cases {
        // SAFETY: the call is expected to fail; even if it did not, nothing relies on the
        // contents and no slice is live.
        let err = unsafe { region.purge(offset, len) }.unwrap_err();
        assert_eq!(
            err.invalid_reason(),
            Some(reason),
            "offset {offset} len {len}"
        );
        assert_eq!(err.op(), Op::Purge { offset, len });
        // SAFETY: nothing writes the region meanwhile.
        assert!(unsafe { bytes(&region) }.iter().all(|&b| b == 0xEE));
    }
    // SAFETY: as above.
    let err = unsafe { region.purge(page, 1) }.unwrap_err();
    assert_eq!(
        err.to_string(),
        "purge 1 B at offset 4096: invalid argument: offset or length is not a multiple of the page size"
            .replace("4096", &page.to_string())
    );
}

#[test]
fn advise_huge_succeeds_or_reports_einval_without_changing_contents() {
    // Under Miri (where the advice is a stub) a small region: checking 4 MiB byte by byte
    // there takes the better part of an hour.
    let (len, text) = if cfg!(miri) {
        (64 << 10, "advise huge pages on 64 KiB: EINVAL")
    } else {
        (4 << 20, "advise huge pages on 4 MiB: EINVAL")
    };
    let region = Region::reserve_aligned(len, 2 << 20).unwrap();
    fill(&region, 0, region.len(), 0x11);
    match region.advise_huge() {
        Ok(()) => {}
        Err(err) => {
            assert_eq!(err.errno(), Some(Errno::INVAL), "{err}");
            assert_eq!(err.to_string(), text);
        }
    }
    // SAFETY: nothing writes the region meanwhile.
    assert!(unsafe { bytes(&region) }.iter().all(|&b| b == 0x11));
}

#[test]
fn region_is_send_and_sync_and_threads_can_purge_their_own_pages() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Region>();
    assert_send_sync::<Region<&'static FaultyOs>>();

    let page = page_size();
    let threads = 4;
    let region = Region::reserve(threads * page).unwrap();
    std::thread::scope(|s| {
        for t in 0..threads {
            let region = &region;
            s.spawn(move || {
                for round in 0..50u8 {
                    fill(region, t * page, page, round | 1);
                    // SAFETY: each thread reads, writes and purges only its own page.
                    unsafe {
                        assert_eq!(region.as_ptr().add(t * page + page - 1).read(), round | 1);
                        region.purge(t * page, page).unwrap();
                        assert_eq!(region.as_ptr().add(t * page).read(), 0);
                    }
                }
            });
        }
    });
    let moved = std::thread::spawn(move || region.len()).join().unwrap();
    assert_eq!(moved, threads * page);
}

#[test]
fn contains_tells_addresses_inside_the_region() {
    let region = Region::reserve(page_size()).unwrap();
    let start = region.as_ptr();
    assert!(region.contains(start));
    assert!(region.contains(start.wrapping_add(region.len() - 1)));
    assert!(!region.contains(start.wrapping_add(region.len())));
    assert!(!region.contains(start.wrapping_sub(1)));
    assert!(!region.contains(core::ptr::null()));
}

#[test]
fn faulty_os_fails_maps_after_the_allowed_count() {
    static OS: FaultyOs = FaultyOs::new().fail_map_after(2);
    let page = page_size();
    let a = Region::reserve_in(page, &OS).unwrap();
    let b = Region::reserve_aligned_in(page, 1 << 21, &OS).unwrap();
    assert_eq!(b.as_ptr() as usize % (1 << 21), 0);
    let err = Region::reserve_in(page, &OS).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::NOMEM));
    assert_eq!(
        err.to_string(),
        format!("reserve {} KiB: ENOMEM", page / 1024)
    );
    assert_eq!((OS.map_calls(), OS.failed_maps()), (3, 1));
    // Re-arming lets one more through.
    OS.set_maps_left(1);
    let c = Region::reserve_in(page, &OS).unwrap();
    assert!(Region::reserve_in(page, &OS).is_err());
    OS.set_maps_left(usize::MAX);
    let d = Region::reserve_in(page, &OS).unwrap();
    assert_eq!(OS.mapped_bytes(), 4 * page);
    drop((a, b, c, d));
    assert_eq!((OS.unmap_calls(), OS.mapped_bytes()), (4, 0));
}

#[test]
fn faulty_os_refuses_maps_beyond_its_byte_budget_until_memory_is_unmapped() {
    static OS: FaultyOs = FaultyOs::new().byte_budget(1 << 20);
    let a = Region::reserve_in(768 << 10, &OS).unwrap();
    let err = Region::reserve_in(512 << 10, &OS).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::NOMEM));
    assert_eq!(err.to_string(), "reserve 512 KiB: ENOMEM");
    let b = Region::reserve_in(256 << 10, &OS).unwrap();
    assert_eq!(OS.mapped_bytes(), 1 << 20);
    drop(a);
    let c = Region::reserve_in(512 << 10, &OS).unwrap();
    assert_eq!(OS.mapped_bytes(), 768 << 10);
    OS.set_byte_budget(0);
    assert!(Region::reserve_in(4096, &OS).is_err());
    drop((b, c));
    assert_eq!(OS.mapped_bytes(), 0);
    assert_eq!(OS.failed_maps(), 2);
}

#[test]
fn faulty_os_injected_errno_and_purge_failure_change_nothing() {
    static OS: FaultyOs = FaultyOs::new().fail_map_after(0).with_errno(Errno::AGAIN);
    let err = Region::reserve_in(4096, &OS).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::AGAIN));
    assert_eq!(err.to_string(), "reserve 4 KiB: EAGAIN");

    let os = FaultyOs::new();
    let page = page_size();
    let region = Region::reserve_in(2 * page, &os).unwrap();
    fill(&region, 0, region.len(), 9);
    os.set_fail_purge(true);
    // SAFETY: nothing relies on the contents; no slice is live.
    let err = unsafe { region.purge(0, page) }.unwrap_err();
    assert_eq!(err.errno(), Some(Errno::NOMEM));
    // SAFETY: nothing writes the region meanwhile.
    assert!(unsafe { bytes(&region) }.iter().all(|&b| b == 9));
    os.set_fail_purge(false);
    // SAFETY: as above.
    unsafe { region.purge(0, page) }.unwrap();
    assert_eq!(os.purge_calls(), 2);
}

#[test]
fn drop_unmaps_exactly_what_was_mapped() {
    let os = FaultyOs::new();
    {
        let _plain = Region::reserve_in(3 * page_size(), &os).unwrap();
        let _aligned = Region::reserve_aligned_in(1 << 20, 1 << 26, &os).unwrap();
        assert_eq!(os.mapped_bytes(), 3 * page_size() + (1 << 20));
        assert_eq!(os.unmap_calls(), 0);
    }
    assert_eq!(os.unmap_calls(), 2);
    assert_eq!(os.mapped_bytes(), 0);
}

#[test]
fn errors_from_the_os_layer_are_passed_through_with_the_request() {
    /// An OS that refuses everything with `EPERM`.
    struct Refusing;
    // SAFETY: it never hands out memory.
    unsafe impl Os for Refusing {
        fn map(&self, _: usize, _: usize) -> Result<core::ptr::NonNull<u8>, Errno> {
            Err(Errno::PERM)
        }
        unsafe fn unmap(&self, _: core::ptr::NonNull<u8>, _: usize, _: usize) -> Result<(), Errno> {
            unreachable!("nothing was mapped")
        }
        unsafe fn purge(&self, _: core::ptr::NonNull<u8>, _: usize) -> Result<(), Errno> {
            unreachable!("nothing was mapped")
        }
        unsafe fn advise_huge(&self, _: core::ptr::NonNull<u8>, _: usize) -> Result<(), Errno> {
            unreachable!("nothing was mapped")
        }
    }
    let err: MmapError = Region::reserve_aligned_in(5000, 1 << 21, Refusing).unwrap_err();
    assert_eq!(
        err,
        MmapError::Os {
            op: Op::ReserveAligned {
                len: 5000,
                align: 1 << 21
            },
            errno: Errno::PERM
        }
    );
    assert_eq!(
        err.to_string(),
        "reserve 5000 bytes aligned to 2 MiB: EPERM"
    );
}

#[test]
fn system_os_rejects_bad_map_arguments_instead_of_misbehaving() {
    let page = page_size();
    for (len, align) in [
        (0, page),
        (page + 1, page),
        (page, 3 * page),
        (page, page / 2),
    ] {
        assert_eq!(SystemOs.map(len, align), Err(Errno::INVAL), "{len} {align}");
    }
}
