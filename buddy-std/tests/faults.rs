//! Fault injection: the OS refusing memory (maps and purges, through `FaultyOs`), the memory
//! limit reached while threads race to grow, a thread panicking while others allocate. Each
//! test ends the same way: every live block still holds its pattern, and once everything is
//! freed the allocator is empty and serves the same total again (nothing leaked, nothing
//! stuck). The single-fault basics (a refused reservation, a refused purge counted) are in
//! `api.rs`.
#![cfg(not(loom))]

mod patterns;

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::{Barrier, Mutex};

use buddy_mmap::{FaultyOs, Os};
use buddy_std::{BuddyAlloc, Config, Purge};
use patterns::{Block, Rng};

/// Where a block id keeps its thread's index: above the 24 (32-bit) or 56 bits of a
/// per-thread count.
const THREAD_SHIFT: u32 = usize::BITS - 8;

const MIB: usize = 1 << 20;

/// 1 MiB chunks, so that growth and direct mappings come quickly.
fn config(limit: usize, shards: usize) -> Config {
    Config::new()
        .chunk_size(MIB)
        .memory_limit(limit)
        .shards(shards)
}

/// Frees `blocks` (checking each), then checks that the allocator is empty and whole: no live
/// block, every managed byte free, structure and accounting intact.
fn free_all_and_check_empty<O: Os>(a: &BuddyAlloc<O>, blocks: Vec<Block>) {
    for b in blocks {
        // SAFETY: live blocks of the calling test.
        unsafe { b.free(a) };
    }
    a.flush();
    a.check().unwrap();
    let s = a.stats();
    assert_eq!(s.live_allocations(), 0);
    assert_eq!(s.allocated_bytes(), 0);
    assert_eq!((s.os.direct_allocations, s.os.direct_bytes), (0, 0));
    assert_eq!(
        s.heap.free_bytes, s.heap.managed_bytes,
        "free memory was lost"
    );
    assert_eq!(s.os.committed_bytes, s.os.chunks * s.os.chunk_bytes);
}

/// Allocates `size`-byte blocks until the allocator says no; returns how many it got, and
/// frees them. (Unfilled: this counts room, and filling it all is slow under valgrind.)
fn count_until_full<O: Os>(a: &BuddyAlloc<O>, size: usize) -> usize {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let mut blocks = Vec::new();
    loop {
        // SAFETY: a valid, non-zero layout.
        let p = unsafe { a.alloc(layout) };
        if p.is_null() {
            break;
        }
        blocks.push(p);
    }
    let n = blocks.len();
    for p in blocks {
        // SAFETY: allocated above with this layout.
        unsafe { a.dealloc(p, layout) };
    }
    free_all_and_check_empty(a, Vec::new());
    n
}

#[test]
fn the_os_refusing_maps_mid_run_fails_only_direct_mappings_and_loses_nothing() {
    let os = FaultyOs::new();
    let a = BuddyAlloc::with_os(config(16 * MIB, 1), &os);
    let mut rng = Rng(11);
    let mut live = Vec::new();
    for id in 0..300 {
        live.push(Block::new(&a, 1 + rng.below(8000), 8, id).unwrap());
    }
    let direct = Block::new(&a, 2 * MIB, 64, 1000).unwrap();
    let chunks_before = a.stats().os.chunks;

    os.set_maps_left(0);
    let failures = a.stats().os.map_failures;
    // A request larger than a chunk needs a mapping: refused, counted, nothing committed.
    assert!(Block::new(&a, 3 * MIB, 64, 2000).is_none());
    assert_eq!(a.stats().os.map_failures, failures + 1);
    a.check()
        .expect("a refused mapping is not counted against the limit");
    // Growing a block past the chunk size needs one too: refused, the block stays valid.
    let b = live.pop().unwrap();
    // SAFETY: a live block of this test, with its layout.
    let p = unsafe { a.realloc(b.addr as *mut u8, b.layout(), 2 * MIB) };
    assert!(p.is_null());
    // SAFETY: still live (the failed realloc left it alone).
    unsafe { b.check() };
    live.push(b);
    // Chunks need no mapping (they are carved from the reservation): growth goes on.
    for id in 3000..3000 + 1000 {
        live.push(Block::new(&a, 4000, 8, id).expect("chunk growth needs no mapping"));
    }
    assert!(a.stats().os.chunks > chunks_before, "the test made it grow");
    for b in &live {
        // SAFETY: live blocks of this test.
        unsafe { b.check() };
    }

    os.set_maps_left(usize::MAX);
    let big = Block::new(&a, 3 * MIB, 64, 4000).expect("the OS relented");
    live.push(big);
    live.push(direct);
    free_all_and_check_empty(&a, live);
    // All of the limit once more, in pages: the chunks grown so far and the rest.
    assert_eq!(count_until_full(&a, 4096), 16 * MIB / 4096);
}

#[test]
fn the_os_refusing_purges_still_frees_blocks_by_every_path_and_spares_their_neighbours() {
    let os = FaultyOs::new();
    let a = BuddyAlloc::with_os(config(8 * MIB, 1).purge(Purge::AtLeast(64 << 10)), &os);
    let neighbour = |id| Block::new(&a, 4096, 4096, id).unwrap();
    let (n1, big1, n2, big2, n3, big3, n4) = (
        neighbour(1),
        Block::new(&a, 256 << 10, 4096, 2).unwrap(),
        neighbour(3),
        Block::new(&a, 256 << 10, 4096, 4).unwrap(),
        neighbour(5),
        Block::new(&a, 256 << 10, 4096, 6).unwrap(),
        neighbour(7),
    );
    os.set_fail_purge(true);
    let before = a.stats().os;
    // Sized free, size-less free, and a shrink that gives up 248 KiB: each purges first.
    // SAFETY: live blocks of this test, freed once, with their layouts.
    unsafe {
        big1.free(&a);
        assert_eq!(
            a.free(NonNull::new(big2.addr as *mut u8).unwrap()),
            Ok(256 << 10)
        );
        let p = a.realloc(big3.addr as *mut u8, big3.layout(), 8 << 10);
        assert_eq!(p as usize, big3.addr, "shrinking stays in place");
        let shrunk = Block {
            size: 8 << 10,
            ..big3
        };
        assert_eq!(shrunk.first_bad(8 << 10), None);
        shrunk.free(&a);
    }
    let after = a.stats().os;
    assert_eq!(after.purge_failures - before.purge_failures, 3);
    assert_eq!(after.purges, before.purges);
    for n in [n1, n2, n3, n4] {
        // SAFETY: live blocks of this test.
        unsafe { n.check() };
    }
    // The freed blocks are reusable at once, purged or not.
    let again: Vec<_> = (10..13)
        .map(|id| Block::new(&a, 256 << 10, 4096, id).expect("freed memory is reusable"))
        .collect();
    os.set_fail_purge(false);
    let mut all = vec![n1, n2, n3, n4];
    all.extend(again);
    free_all_and_check_empty(&a, all);
    assert_eq!(a.stats().os.purges, 3, "purging works again");
    assert_eq!(count_until_full(&a, 64 << 10), 8 * 16);
}

#[test]
fn threads_racing_to_grow_past_the_limit_get_null_and_lose_nothing() {
    let limit = 8 * MIB;
    let threads = 4;
    let a = BuddyAlloc::with_config(config(limit, threads));
    let start = Barrier::new(threads);
    let per_thread: Vec<Vec<Block>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (a, start) = (&a, &start);
                s.spawn(move || {
                    let mut rng = Rng(0x51 + t as u64);
                    let mut mine = Vec::new();
                    let mut refused = 0;
                    start.wait();
                    // Until the allocator has said no a few times in a row: the limit is
                    // reached while the others are still growing.
                    while refused < 8 {
                        let size = 1 + rng.below(64 << 10);
                        match Block::new(a, size, 16, t << THREAD_SHIFT | mine.len()) {
                            Some(b) => {
                                mine.push(b);
                                refused = 0;
                            }
                            None => refused += 1,
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let s = a.stats();
    assert_eq!((s.os.chunks, s.os.committed_bytes), (8, limit));
    assert!(s.heap.failed_requests >= 8 * threads);
    assert!(
        s.heap.allocated_bytes > limit / 2,
        "only {} bytes handed out",
        s.heap.allocated_bytes
    );
    // Free every other block; the rest is intact, and the freed room is served again.
    let mut kept = Vec::new();
    for (i, b) in per_thread.into_iter().flatten().enumerate() {
        if i % 2 == 0 {
            // SAFETY: a live block of this test.
            unsafe { b.free(&a) };
        } else {
            kept.push(b);
        }
    }
    let mut id = 1 << (usize::BITS - 4);
    while let Some(b) = Block::new(&a, 4096, 16, id) {
        kept.push(b);
        id += 1;
    }
    free_all_and_check_empty(&a, kept);
    // All of the limit, as whole chunks, once more.
    assert_eq!(count_until_full(&a, MIB), 8);
}

#[test]
fn a_thread_panicking_between_allocations_leaves_the_allocator_usable_and_whole() {
    let threads = 4;
    let a = BuddyAlloc::with_config(config(32 * MIB, 2));
    // Blocks the panicking threads leave behind without freeing them.
    let orphans: Mutex<Vec<Block>> = Mutex::new(Vec::new());
    let start = Barrier::new(threads);
    let outcomes: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (a, start, orphans) = (&a, &start, &orphans);
                s.spawn(move || {
                    /// Frees its block when dropped, unwinding included.
                    struct Owned<'a>(&'a BuddyAlloc, Block);
                    impl Drop for Owned<'_> {
                        fn drop(&mut self) {
                            // SAFETY: the block is live and owned by this guard.
                            unsafe { self.1.free(self.0) };
                        }
                    }
                    let mut rng = Rng(0x77 + t as u64);
                    let mut owned = Vec::new();
                    start.wait();
                    for step in 0..2000 {
                        let b = Block::new(a, 1 + rng.below(3000), 8, t << THREAD_SHIFT | step)
                            .unwrap();
                        if step % 10 == 0 {
                            orphans.lock().unwrap().push(b);
                        } else {
                            owned.push(Owned(a, b));
                        }
                        if owned.len() > 50 {
                            owned.swap_remove(rng.below(owned.len()));
                        }
                        // Threads 1 and 3 fail half-way, with blocks in hand.
                        if t % 2 == 1 && step == 1000 {
                            std::panic::panic_any(format!("thread {t} gives up"));
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().is_ok()).collect()
    });
    assert_eq!(outcomes, [true, false, true, false]);
    // The unwinding freed what the panicking threads owned; the others freed theirs.
    let orphans = orphans.into_inner().unwrap();
    assert_eq!(a.stats().live_allocations(), orphans.len());
    // Every shard still serves (no lock was left held): threads take shards round-robin.
    std::thread::scope(|s| {
        for t in 0..4 {
            let a = &a;
            s.spawn(move || {
                let b = Block::new(a, 100, 8, 1 << (usize::BITS - 2) | t).unwrap();
                // SAFETY: just allocated.
                unsafe { b.free(a) };
            });
        }
    });
    free_all_and_check_empty(&a, orphans);
    assert_eq!(count_until_full(&a, MIB), 32);
}

#[test]
fn a_failed_request_of_every_kind_changes_nothing() {
    let os = FaultyOs::new();
    let a = BuddyAlloc::with_os(config(4 * MIB, 1), &os);
    let live: Vec<_> = (0..100)
        .map(|id| Block::new(&a, 10 * id + 1, 8, id).unwrap())
        .collect();
    a.flush();
    let before = a.stats();
    os.set_maps_left(0);
    let bad = [
        Layout::from_size_align(8 * MIB, 8).unwrap(), // over the limit, needs a mapping
        Layout::from_size_align(64, 2 * MIB).unwrap(), // alignment over the chunk size
        Layout::from_size_align(isize::MAX as usize - 4096, 1).unwrap(),
    ];
    for l in bad {
        // SAFETY: valid layouts; refused, which is what is tested.
        assert!(unsafe { a.alloc(l) }.is_null(), "{l:?}");
    }
    os.set_maps_left(usize::MAX);
    let after = a.stats();
    assert_eq!(after.heap.failed_requests, before.heap.failed_requests + 3);
    assert_eq!(
        after.heap.free_blocks, before.heap.free_blocks,
        "same shape"
    );
    assert_eq!(after.os.committed_bytes, before.os.committed_bytes);
    assert_eq!(after.live_allocations(), before.live_allocations());
    free_all_and_check_empty(&a, live);
}
