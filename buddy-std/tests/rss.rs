//! Freed memory goes back to the OS: the process's resident set (from `/proc/self/statm`)
//! shrinks when large blocks are freed. One test in its own binary, so that no other test's
//! memory moves the figure.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout};

use buddy_std::{BuddyAlloc, Config, Purge, resident_bytes};

const MIB: usize = 1 << 20;
const BLOCKS: usize = 128;

/// Allocates `BLOCKS` blocks of 1 MiB and writes every byte; returns them.
fn fill_128_mib<O: buddy_mmap::Os>(a: &BuddyAlloc<O>) -> Vec<*mut u8> {
    (0..BLOCKS)
        .map(|i| {
            // SAFETY: a valid layout.
            let p = unsafe { a.alloc(Layout::from_size_align(MIB, 4096).unwrap()) };
            assert!(!p.is_null());
            // SAFETY: a fresh block of 1 MiB.
            unsafe { p.write_bytes(i as u8 | 1, MIB) };
            p
        })
        .collect()
}

fn free_all<O: buddy_mmap::Os>(a: &BuddyAlloc<O>, blocks: Vec<*mut u8>) {
    for p in blocks {
        // SAFETY: allocated by `fill_128_mib` with this layout.
        unsafe { a.dealloc(p, Layout::from_size_align(MIB, 4096).unwrap()) };
    }
}

#[test]
fn freeing_128_mib_gives_the_pages_back_to_the_os_only_when_purging() {
    let rss = || resident_bytes().expect("/proc/self/statm");

    let a = BuddyAlloc::with_config(Config::new().purge(Purge::AtLeast(256 << 10)));
    let start = rss();
    let blocks = fill_128_mib(&a);
    let full = rss();
    assert!(
        full >= start + 120 * MIB,
        "RSS {start} -> {full}: the blocks are not resident"
    );
    free_all(&a, blocks);
    let freed = rss();
    assert!(
        freed + 120 * MIB <= full,
        "RSS {} MiB -> {} MiB after freeing 128 MiB: not given back",
        full / MIB,
        freed / MIB
    );
    assert_eq!(a.stats().os.purged_bytes, BLOCKS * MIB);

    // The same without purging: the memory stays resident, ready for reuse.
    let keep = BuddyAlloc::with_config(Config::new().purge(Purge::Never));
    let blocks = fill_128_mib(&keep);
    let full = rss();
    free_all(&keep, blocks);
    assert!(rss() + 8 * MIB >= full, "Purge::Never gave memory back");
    drop(keep); // unmaps it all
    assert!(
        rss() + 120 * MIB <= full,
        "dropping the allocator did not unmap its memory"
    );
}
