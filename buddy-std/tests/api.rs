//! Behaviours of `BuddyAlloc` and `BuddyArena` used directly (not as the global allocator).
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use allocator_api2::vec::Vec as AVec;
use buddy_mmap::FaultyOs;
use buddy_std::buddy_core::FreeError;
use buddy_std::{BuddyAlloc, BuddyArena, Config, Purge};

const MIB: usize = 1 << 20;

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// 1 MiB chunks, 8 MiB limit, one shard: small enough to reach every edge quickly.
fn small() -> Config {
    Config::new()
        .chunk_size(MIB)
        .memory_limit(8 * MIB)
        .shards(1)
}

/// The byte a block holds at offset `i`, from its id.
fn pattern(id: usize, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9) >> 7) as u8 ^ i as u8
}

/// Fills `len` bytes at `p` with the pattern of `id`.
///
/// # Safety
/// `[p, p + len)` is a live block the caller owns.
unsafe fn fill(p: *mut u8, len: usize, id: usize) {
    for i in 0..len {
        // SAFETY: in range by the caller's promise.
        unsafe { p.add(i).write(pattern(id, i)) };
    }
}

/// Whether the `len` bytes at `p` still hold the pattern of `id`.
///
/// # Safety
/// As [`fill`].
unsafe fn intact(p: *const u8, len: usize, id: usize) -> bool {
    // SAFETY: in range by the caller's promise.
    (0..len).all(|i| unsafe { p.add(i).read() } == pattern(id, i))
}

#[test]
fn blocks_keep_their_contents_and_honour_size_and_alignment() {
    let a = BuddyAlloc::with_config(small());
    let mut live = Vec::new();
    for (id, (size, align)) in [
        (1, 1),
        (7, 8),
        (100, 16),
        (4096, 4096),
        (3000, 64),
        (MIB, MIB),
    ]
    .into_iter()
    .enumerate()
    {
        // SAFETY: valid non-zero layout.
        let p = unsafe { a.alloc(l(size, align)) };
        assert!(!p.is_null(), "{size} bytes aligned to {align}");
        assert_eq!(p as usize % align, 0);
        // SAFETY: a fresh block of `size` bytes.
        unsafe { fill(p, size, id) };
        live.push((p, size, align, id));
    }
    for &(p, size, align, id) in &live {
        // SAFETY: still live, `size` bytes.
        assert!(unsafe { intact(p, size, id) });
        // SAFETY: allocated above with this layout.
        unsafe { a.dealloc(p, l(size, align)) };
    }
    a.check().unwrap();
    assert_eq!(a.stats().live_allocations(), 0);
}

#[test]
fn realloc_grows_in_place_when_the_buddy_is_free_and_moves_otherwise() {
    let a = BuddyAlloc::with_config(small());
    // SAFETY: (whole test) layouts are valid; every pointer is live when used and freed with
    // the layout it has at that point.
    unsafe {
        let p = a.alloc(l(64, 4096));
        fill(p, 64, 1);
        let q = a.realloc(p, l(64, 4096), 4000);
        assert_eq!(
            q, p,
            "the buddies after the block are free: it grows where it is"
        );
        assert!(intact(q, 64, 1));
        let blocker = a.alloc(l(16, 4096));
        assert_eq!(blocker as usize, p as usize + 4096);
        let r = a.realloc(q, l(4000, 4096), 8192);
        assert_ne!(r, q, "the neighbour is taken: it moves");
        assert!(intact(r, 64, 1));
        let s = a.realloc(r, l(8192, 4096), 6000);
        assert_eq!(s, r, "shrinking stays in place");
        assert!(intact(s, 64, 1));
        // Down to a size the caches serve (at most 4 KiB) it moves into a small block, and
        // the large one goes back whole.
        let t = a.realloc(s, l(6000, 4096), 100);
        assert_ne!(t, s, "a shrink to a small size moves");
        assert!(intact(t, 64, 1));
        a.dealloc(t, l(100, 4096));
        a.dealloc(blocker, l(16, 4096));
    }
    a.check().unwrap();
    assert_eq!(a.stats().live_allocations(), 0);
}

#[test]
fn requests_larger_than_a_chunk_get_a_mapping_of_their_own() {
    let os = FaultyOs::new();
    let a = BuddyAlloc::with_os(small(), &os);
    let big = l(3 * MIB, 64);
    // SAFETY: valid layouts; freed with the layout of the moment.
    unsafe {
        let small_block = a.alloc(l(8, 8));
        let maps = os.map_calls();
        let p = a.alloc(big);
        assert!(!p.is_null());
        assert_eq!(os.map_calls(), maps + 1);
        fill(p, 3 * MIB, 5);
        let s = a.stats();
        assert_eq!((s.os.direct_allocations, s.os.direct_bytes), (1, 3 * MIB));
        assert_eq!(a.usable_size(NonNull::new(p).unwrap()), Ok(3 * MIB));
        // Down to chunk size: it moves into a chunk, contents kept.
        let q = a.realloc(p, big, 1000);
        assert!(intact(q, 1000, 5));
        assert_eq!(a.stats().os.direct_allocations, 0);
        assert_eq!(os.unmap_calls(), 1);
        // And back out.
        let r = a.realloc(q, l(1000, 64), 2 * MIB);
        assert!(intact(r, 1000, 5));
        assert_eq!(a.stats().os.direct_allocations, 1);
        a.dealloc(r, l(2 * MIB, 64));
        a.dealloc(small_block, l(8, 8));
    }
    let s = a.stats();
    assert_eq!((s.os.direct_allocations, s.os.direct_bytes), (0, 0));
    assert_eq!(s.live_allocations(), 0);
    a.check().unwrap();
}

/// A smaller size that needs a larger block (a large alignment rounds 100 bytes up to 512 KiB,
/// where the 400 000-byte block is an exact-fit run of 416 KiB) on a full chunk: refused, and
/// the block keeps every byte. The tail used to be purged before the resize was tried.
#[test]
fn a_refused_shrink_leaves_every_byte_of_the_block() {
    let a = BuddyAlloc::with_config(small().memory_limit(MIB));
    let old = l(400_000, 1 << 19);
    // SAFETY: valid layouts; every block written is live and ours.
    unsafe {
        let p = a.alloc(old);
        assert!(!p.is_null());
        fill(p, old.size(), 3);
        // Fill the rest of the chunk, so that the block can neither grow nor move.
        let mut fillers = Vec::new();
        let mut size = MIB / 2;
        while size >= 16 {
            loop {
                let q = a.alloc(l(size, 8));
                if q.is_null() {
                    break;
                }
                fillers.push((q, size));
            }
            size /= 2;
        }
        let before = a.stats();
        assert!(a.realloc(p, old, 100).is_null(), "nowhere to put 512 KiB");
        assert!(
            (0..old.size()).all(|i| *p.add(i) == pattern(3, i)),
            "a refused realloc changed the block"
        );
        let after = a.stats();
        assert_eq!(after.os.purges, before.os.purges);
        assert_eq!(after.heap.failed_requests, before.heap.failed_requests + 1);
        assert_eq!(a.usable_size(NonNull::new(p).unwrap()), Ok(416 << 10));
        a.dealloc(p, old);
        for (q, size) in fillers {
            a.dealloc(q, l(size, 8));
        }
    }
    assert_eq!(a.stats().live_allocations(), 0);
}

/// A direct mapping (larger than a chunk) shrunk in place gives the whole pages past its new
/// size back to the OS by the purge policy, as a block in a chunk does, and keeps the rest.
#[test]
fn shrinking_a_direct_mapping_purges_its_tail() {
    let a = BuddyAlloc::with_config(small().purge(Purge::AtLeast(256 << 10)));
    let big = l(4 * MIB, 8);
    // SAFETY: valid layouts; the block is live with the size it is used with.
    unsafe {
        let p = a.alloc(big);
        assert!(!p.is_null());
        fill(p, big.size(), 9);
        let before = a.stats();
        let q = a.realloc(p, big, 3 * MIB / 2);
        assert_eq!(q, p, "a direct mapping shrinks where it is");
        assert!((0..3 * MIB / 2).all(|i| *q.add(i) == pattern(9, i)));
        let after = a.stats();
        assert_eq!(after.os.purges, before.os.purges + 1);
        assert_eq!(
            after.os.purged_bytes - before.os.purged_bytes,
            4 * MIB - 3 * MIB / 2
        );
        a.dealloc(q, l(3 * MIB / 2, 8));
    }
}

/// A direct mapping shrunk to a size a chunk serves moves into a chunk, and at the memory
/// limit, with no chunk room, stays where it is instead (review repro: the shrink failed).
#[test]
fn at_the_limit_a_direct_mapping_shrinks_below_a_chunk_where_it_is() {
    let a = BuddyAlloc::with_config(
        Config::new()
            .chunk_size(MIB)
            .memory_limit(8 * MIB)
            .shards(1),
    );
    // SAFETY: valid layouts; every block is live with the size it is used with.
    unsafe {
        let whole_chunk = a.alloc(l(MIB, 8));
        let big = a.alloc(l(7 * MIB, 8)); // a direct mapping: the limit is reached
        assert!(!whole_chunk.is_null() && !big.is_null());
        fill(big, 7 * MIB, 3);
        let before = a.stats();
        let q = a.realloc(big, l(7 * MIB, 8), 512 << 10);
        assert_eq!(q, big, "no chunk has room: the mapping keeps the block");
        assert!((0..512 << 10).all(|i| *q.add(i) == pattern(3, i)));
        let after = a.stats();
        assert_eq!(after.heap.failed_requests, before.heap.failed_requests);
        assert_eq!(after.os.direct_allocations, before.os.direct_allocations);
        // Through `Allocator::shrink` as well; then freed with the last layout.
        let r = allocator_api2::alloc::Allocator::shrink(
            &&a,
            NonNull::new(q).unwrap(),
            l(512 << 10, 8),
            l(1000, 8),
        )
        .expect("shrink at the limit");
        assert_eq!(r.cast::<u8>().as_ptr(), big);
        a.dealloc(big, l(1000, 8));
        assert_eq!(a.stats().os.direct_allocations, 0);
        // With room in a chunk, the same shrink moves the block into it.
        a.dealloc(whole_chunk, l(MIB, 8));
        let big = a.alloc(l(7 * MIB, 8));
        assert!(!big.is_null());
        let q = a.realloc(big, l(7 * MIB, 8), 512 << 10);
        assert!(!q.is_null() && q != big, "moved into the chunk");
        assert_eq!(a.stats().os.direct_allocations, 0, "the mapping is gone");
        a.dealloc(q, l(512 << 10, 8));
    }
    assert_eq!(a.stats().live_allocations(), 0);
    a.check().unwrap();
}

/// `free` and `usable_size` of a pointer that is not ours, on an allocator that has mapped
/// nothing yet: refused as foreign (Miri found them computing an address from a null
/// directory on this path).
#[test]
fn a_foreign_pointer_is_refused_before_the_first_allocation() {
    let a = BuddyAlloc::with_config(small());
    let mut x = 0u64;
    let foreign = NonNull::from(&mut x).cast::<u8>();
    assert_eq!(a.usable_size(foreign), Err(FreeError::Foreign));
    // SAFETY: `free` checks its pointer; a foreign one is refused and nothing changes.
    assert_eq!(unsafe { a.free(foreign) }, Err(FreeError::Foreign));
    assert_eq!(a.stats().os.chunks, 0, "nothing mapped");
    assert_eq!(x, 0);
}

/// "realloc grows in place when the buddy is free" (the design), also when the buddy was
/// freed a moment ago and waits in its heap's deferred cache, and when that cache also holds
/// a free block of the new size (which `Heap::realloc`'s fast path would move the block into).
#[test]
fn realloc_grows_in_place_into_a_buddy_just_freed() {
    let a = BuddyAlloc::with_config(small());
    let kib = l(1024, 8);
    // SAFETY: valid layouts; blocks used only while live.
    unsafe {
        // A free 2 KiB block waiting in the cache.
        let spare = a.alloc(l(2048, 8));
        assert!(!spare.is_null());
        a.dealloc(spare, l(2048, 8));
        // A pair of buddies: a 2 KiB-aligned block and the one right after it.
        let mut pairs = Vec::new();
        let (left, right) = loop {
            let p = a.alloc(kib);
            let q = a.alloc(kib);
            assert!(!p.is_null() && !q.is_null());
            if p as usize % 2048 == 0 && q as usize == p as usize + 1024 {
                break (p, q);
            }
            pairs.push((p, q));
        };
        fill(left, 1024, 5);
        a.dealloc(right, kib);
        let r = a.realloc(left, kib, 2048);
        assert_eq!(r, left, "the buddy is free: grown in place");
        assert_ne!(r, spare);
        assert!((0..1024).all(|i| *r.add(i) == pattern(5, i)));
        assert_eq!(a.usable_size(NonNull::new(r).unwrap()), Ok(2048));
        a.dealloc(r, l(2048, 8));
        for (p, q) in pairs {
            a.dealloc(p, kib);
            a.dealloc(q, kib);
        }
    }
    assert_eq!(a.stats().live_allocations(), 0);
}

/// A small resize (both sizes at most 4 KiB) is one call into the chunk's heap: between two
/// sizes its caches hold, a block freed a moment ago is reused, and the contents move along.
#[test]
fn a_small_realloc_takes_a_block_the_cache_holds_and_keeps_the_contents() {
    let a = BuddyAlloc::with_config(small());
    // SAFETY: valid layouts; blocks used only while live.
    unsafe {
        for (old, new) in [(128, 64), (64, 128), (4096, 16), (16, 4096), (3000, 700)] {
            let p = a.alloc(l(old, 16));
            assert!(!p.is_null());
            fill(p, old, old);
            // A block of the new size, freed: it waits in the cache.
            let spare = a.alloc(l(new, 16));
            assert!(!spare.is_null());
            a.dealloc(spare, l(new, 16));
            let before = a.stats().heap;
            let q = a.realloc(p, l(old, 16), new);
            assert!(!q.is_null());
            // With a memory checker told about blocks (features `asan`, `memcheck`), a resize
            // goes the long way (in place, else allocate, copy, free), so the block it gets
            // is not fixed.
            if new < old && !cfg!(any(feature = "asan", feature = "memcheck")) {
                // A shrink never grows in place: it takes the cached block.
                assert_eq!(q, spare, "{old} -> {new}: the cached block");
            }
            assert!(intact(q, old.min(new), old), "{old} -> {new}: contents");
            let after = a.stats().heap;
            assert_eq!(after.live_allocations, before.live_allocations);
            assert_eq!(after.failed_requests, before.failed_requests);
            a.dealloc(q, l(new, 16));
        }
    }
    assert_eq!(a.stats().live_allocations(), 0);
    assert_eq!(a.stats().heap.allocated_bytes, 0);
}

/// A small resize its chunk has no room for moves the block to another chunk (the heap's
/// refusal changes nothing and is not a failed request).
#[test]
fn a_small_realloc_in_a_full_chunk_moves_to_another_chunk() {
    let a = BuddyAlloc::with_config(small().memory_limit(2 * MIB));
    let two = l(2048, 8);
    let mut blocks = Vec::new();
    // Fill the first chunk with 2 KiB blocks.
    while a.stats().os.chunks < 2 {
        // SAFETY: valid layout.
        let p = unsafe { a.alloc(two) };
        assert!(!p.is_null());
        blocks.push(p);
    }
    let second = blocks.pop().unwrap(); // the block that made the second chunk
    let first_chunk = |p: *mut u8| (p as usize) / MIB == (blocks[0] as usize) / MIB;
    assert!(!first_chunk(second));
    let p = blocks[0];
    // SAFETY: live with `two`.
    unsafe { fill(p, 2048, 9) };
    let failed = a.stats().heap.failed_requests;
    // SAFETY: live with `two`; its buddy is live, and its chunk has no 4 KiB block.
    let q = unsafe { a.realloc(p, two, 4096) };
    assert!(!q.is_null());
    assert!(!first_chunk(q), "moved to the second chunk");
    // SAFETY: q holds 4096 bytes, the first 2048 written above.
    assert!(unsafe { intact(q, 2048, 9) });
    assert_eq!(a.stats().heap.failed_requests, failed);
    blocks[0] = q;
    for (i, p) in blocks.into_iter().enumerate() {
        let layout = if i == 0 { l(4096, 8) } else { two };
        // SAFETY: live with `layout`.
        unsafe { a.dealloc(p, layout) };
    }
    // SAFETY: live with `two`.
    unsafe { a.dealloc(second, two) };
    assert_eq!(a.stats().live_allocations(), 0);
}

/// A large block shrunk to a small size (at most 4 KiB) moves into a small block and goes back
/// whole: on a full 1 MiB allocator, the 512 KiB it held can be allocated again at once. Split
/// in place, the small block would have stayed at its start and no 512 KiB block would exist.
#[test]
fn a_large_block_shrunk_to_a_small_size_moves_and_comes_back_whole() {
    let a = BuddyAlloc::with_config(small().memory_limit(MIB));
    let half = l(MIB / 2, 8);
    // SAFETY: valid layouts; every block written is live and ours, freed once with its layout.
    unsafe {
        let p = a.alloc(half);
        let quarter = a.alloc(l(MIB / 4, 8));
        assert!(!p.is_null() && !quarter.is_null());
        fill(p, 100, 5);
        let failed = a.stats().heap.failed_requests;
        let q = a.realloc(p, half, 100);
        assert!(!q.is_null());
        assert_ne!(q, p, "moved, not split in place");
        assert!(intact(q, 100, 5), "contents moved along");
        assert_eq!(a.stats().heap.failed_requests, failed);
        let again = a.alloc(half);
        assert!(!again.is_null(), "the 512 KiB block came back whole");
        a.check().unwrap();
        a.dealloc(again, half);
        a.dealloc(q, l(100, 8));
        a.dealloc(quarter, l(MIB / 4, 8));
    }
    assert_eq!(a.stats().live_allocations(), 0);
}

/// With no room anywhere for the small block, the shrink splits the large block in place
/// instead: it succeeds, keeps its contents and is not a failed request.
#[test]
fn a_large_block_shrunk_with_no_room_to_move_shrinks_in_place() {
    let a = BuddyAlloc::with_config(small().memory_limit(MIB));
    let whole = l(MIB, 8);
    // SAFETY: valid layouts; the block is live with the size it is used with, freed once.
    unsafe {
        let p = a.alloc(whole);
        assert!(!p.is_null());
        fill(p, 4096, 6);
        assert!(a.alloc(l(16, 8)).is_null(), "the allocator is full");
        let failed = a.stats().heap.failed_requests;
        let q = a.realloc(p, whole, 4096);
        assert_eq!(q, p, "split in place");
        assert!(intact(p, 4096, 6));
        assert_eq!(a.stats().heap.failed_requests, failed);
        assert_eq!(a.usable_size(NonNull::new(p).unwrap()), Ok(4096));
        // What the shrink gave up is free again.
        let other = a.alloc(l(MIB / 2, 8));
        assert!(!other.is_null());
        a.dealloc(other, l(MIB / 2, 8));
        a.dealloc(p, l(4096, 8));
    }
    assert_eq!(a.stats().live_allocations(), 0);
    a.check().unwrap();
}

/// At the limit, a block whose only room to grow is a buddy freed a moment ago (waiting in
/// the heap's deferred cache) grows into it: the realloc is not refused.
#[test]
fn at_the_limit_realloc_grows_into_a_buddy_waiting_in_the_cache() {
    let a = BuddyAlloc::with_config(small().memory_limit(MIB));
    let page = l(4096, 4096);
    let mut blocks = Vec::new();
    loop {
        // SAFETY: valid layout.
        let p = unsafe { a.alloc(page) };
        if p.is_null() {
            break;
        }
        blocks.push(p);
    }
    assert!(blocks.len() > 100, "one 1 MiB chunk");
    // A left child and its buddy on the right.
    let i = blocks
        .iter()
        .position(|&p| p as usize % 8192 == 0 && blocks.contains(&p.wrapping_add(4096)))
        .unwrap();
    let (left, right) = (blocks[i], blocks[i].wrapping_add(4096));
    // SAFETY: both live with `page`; `left` is ours to write.
    unsafe {
        fill(left, 4096, 7);
        a.dealloc(right, page);
    }
    let failed = a.stats().heap.failed_requests;
    // SAFETY: live with `page`.
    let q = unsafe { a.realloc(left, page, 8192) };
    assert_eq!(q, left, "grown in place: there is no other room");
    // SAFETY: q holds 8192 bytes, the first 4096 written above.
    assert!((0..4096).all(|j| unsafe { *q.add(j) } == pattern(7, j)));
    assert_eq!(
        a.stats().heap.failed_requests,
        failed,
        "counted as a refusal"
    );
    // Truly full now: refused, counted, and the block unchanged.
    // SAFETY: live with the new layout.
    assert!(unsafe { a.realloc(q, l(8192, 4096), 16384) }.is_null());
    assert_eq!(a.stats().heap.failed_requests, failed + 1);
    // SAFETY: q is live with 8192 bytes.
    assert!((0..4096).all(|j| unsafe { *q.add(j) } == pattern(7, j)));
    blocks.retain(|&p| p != left && p != right);
    for p in blocks {
        // SAFETY: allocated above with `page`.
        unsafe { a.dealloc(p, page) };
    }
    // SAFETY: live with the layout the realloc gave it.
    unsafe { a.dealloc(q, l(8192, 4096)) };
    assert_eq!(a.stats().live_allocations(), 0);
}

#[test]
fn growth_adds_chunks_up_to_the_limit_then_returns_null_and_recovers() {
    let a = BuddyAlloc::with_config(small().memory_limit(4 * MIB));
    let half = l(MIB / 2, 8);
    let mut blocks = Vec::new();
    loop {
        // SAFETY: valid layout.
        let p = unsafe { a.alloc(half) };
        if p.is_null() {
            break;
        }
        blocks.push(p);
        assert!(blocks.len() <= 8, "more blocks than the limit holds");
    }
    assert_eq!(blocks.len(), 8, "4 chunks of 1 MiB hold 8 half-MiB blocks");
    let s = a.stats();
    assert_eq!((s.os.chunks, s.os.committed_bytes), (4, 4 * MIB));
    assert_eq!(s.heap.failed_requests, 1);
    // Still usable: free one, allocate again.
    // SAFETY: allocated above with `half`.
    unsafe { a.dealloc(blocks.pop().unwrap(), half) };
    // SAFETY: valid layout.
    let p = unsafe { a.alloc(half) };
    assert!(!p.is_null());
    blocks.push(p);
    for p in blocks {
        // SAFETY: allocated above with `half`.
        unsafe { a.dealloc(p, half) };
    }
    a.check().unwrap();
}

#[test]
fn zero_size_gets_null_from_global_alloc_and_an_empty_block_from_allocator() {
    let a = BuddyAlloc::with_config(small());
    // SAFETY: a zero-size layout is outside GlobalAlloc's contract; the allocator refuses it
    // with null, which is what is tested.
    assert!(unsafe { a.alloc(l(0, 8)) }.is_null());
    assert_eq!(a.stats().heap.failed_requests, 1);
    let empty = allocator_api2::alloc::Allocator::allocate(&&a, l(0, 64)).unwrap();
    assert_eq!(empty.len(), 0);
    assert_eq!(empty.cast::<u8>().as_ptr() as usize % 64, 0);
    // SAFETY: the empty block from `allocate` with this layout.
    unsafe { allocator_api2::alloc::Allocator::deallocate(&&a, empty.cast(), l(0, 64)) };
    assert_eq!(a.stats().live_allocations(), 0);
    assert_usable(&a);
}

#[test]
fn a_size_of_isize_max_gets_null_and_changes_nothing() {
    let a = BuddyAlloc::with_config(small());
    assert_usable(&a);
    let before = a.stats();
    // SAFETY: valid layout (size isize::MAX, align 1).
    assert!(unsafe { a.alloc(l(isize::MAX as usize, 1)) }.is_null());
    assert!(allocator_api2::alloc::Allocator::allocate(&&a, l(isize::MAX as usize, 1)).is_err());
    let after = a.stats();
    assert_eq!(after.heap.failed_requests, before.heap.failed_requests + 2);
    assert_eq!(after.os.committed_bytes, before.os.committed_bytes);
    assert_usable(&a);
}

#[test]
fn an_alignment_beyond_the_chunk_size_gets_null() {
    let a = BuddyAlloc::with_config(small());
    for align in [2 * MIB, 1 << (usize::BITS - 2)] {
        // SAFETY: valid layout.
        assert!(unsafe { a.alloc(l(64, align)) }.is_null(), "align {align}");
        assert!(allocator_api2::alloc::Allocator::allocate(&&a, l(64, align)).is_err());
    }
    assert_eq!(a.stats().os.direct_allocations, 0);
    assert_usable(&a);
}

#[test]
fn a_direct_mapping_beyond_the_limit_gets_null_and_the_allocator_stays_usable() {
    let a = BuddyAlloc::with_config(small());
    // SAFETY: valid layout.
    let p = unsafe { a.alloc(l(6 * MIB, 8)) };
    assert!(!p.is_null());
    // 6 MiB mapped + this 3 MiB would pass the 8 MiB limit (the first chunk is 1 MiB more).
    // SAFETY: valid layout.
    assert!(unsafe { a.alloc(l(3 * MIB, 8)) }.is_null());
    // SAFETY: allocated above with this layout.
    unsafe { a.dealloc(p, l(6 * MIB, 8)) };
    // SAFETY: valid layout.
    let q = unsafe { a.alloc(l(3 * MIB, 8)) };
    assert!(!q.is_null());
    // SAFETY: allocated above with this layout.
    unsafe { a.dealloc(q, l(3 * MIB, 8)) };
    a.check().unwrap();
}

/// Allocates, writes, frees: the allocator serves requests.
fn assert_usable<O: buddy_mmap::Os>(a: &BuddyAlloc<O>) {
    let before = a.stats().live_allocations();
    // SAFETY: valid layout; freed with the same.
    unsafe {
        let p = a.alloc(l(256, 16));
        assert!(!p.is_null());
        fill(p, 256, 9);
        assert!(intact(p, 256, 9));
        a.dealloc(p, l(256, 16));
    }
    assert_eq!(a.stats().live_allocations(), before);
    a.check().unwrap();
}

#[test]
fn size_less_free_refuses_double_interior_and_foreign_pointers() {
    let a = BuddyAlloc::with_config(small());
    // SAFETY: valid layouts.
    let (p, big) = unsafe { (a.alloc(l(96, 16)), a.alloc(l(2 * MIB, 16))) };
    let (p, big) = (NonNull::new(p).unwrap(), NonNull::new(big).unwrap());
    let mut local = 0u64;
    let foreign = NonNull::from(&mut local).cast::<u8>();
    // SAFETY: (all frees) `free` checks its pointer; refusing wrong ones is what is tested.
    unsafe {
        assert_eq!(a.free(p.add(16)), Err(FreeError::Interior));
        assert_eq!(a.free(foreign), Err(FreeError::Foreign));
        assert_eq!(a.free(big.add(16)), Err(FreeError::Foreign));
        // A small request takes one power-of-two block (exact fit starts above 4 KiB).
        assert_eq!(a.usable_size(p), Ok(128));
        assert_eq!(a.free(p), Ok(128));
        assert_eq!(a.free(p), Err(FreeError::DoubleFree));
        assert_eq!(a.free(big), Ok(2 * MIB));
        assert_eq!(a.free(big), Err(FreeError::Foreign));
    }
    assert_eq!(a.stats().live_allocations(), 0);
    a.check().unwrap();
}

#[test]
fn freeing_a_block_of_the_threshold_or_more_purges_its_pages() {
    let os = FaultyOs::new();
    let a = BuddyAlloc::with_os(small().purge(Purge::AtLeast(32 << 10)), &os);
    // SAFETY: valid layouts; each freed once with its layout.
    unsafe {
        let small_block = a.alloc(l(16 << 10, 4096));
        let large = a.alloc(l(64 << 10, 4096));
        fill(large, 64 << 10, 3);
        a.dealloc(large, l(64 << 10, 4096));
        assert_eq!(os.purge_calls(), 1);
        // The block reads as zeros when handed out again: the pages really went back.
        let again = a.alloc(l(64 << 10, 4096));
        assert_eq!(again, large);
        assert!((0..64 << 10).all(|i| again.add(i).read() == 0));
        a.dealloc(small_block, l(16 << 10, 4096));
        assert_eq!(os.purge_calls(), 1, "below the threshold: kept");
        // Shrinking by the threshold or more purges the tail.
        let shrunk = a.realloc(again, l(64 << 10, 4096), 8 << 10);
        assert_eq!(shrunk, again);
        assert_eq!(os.purge_calls(), 2);
        // Down to 4 KiB it moves into a small block, and the whole 8 KiB block is freed
        // (below the threshold: kept).
        let moved = a.realloc(shrunk, l(8 << 10, 4096), 4096);
        assert_ne!(moved, shrunk);
        assert_eq!(os.purge_calls(), 2);
        a.dealloc(moved, l(4096, 4096));
        // A block of the threshold or more shrunk to a small size is purged whole.
        let large = a.alloc(l(64 << 10, 4096));
        let tiny = a.realloc(large, l(64 << 10, 4096), 100);
        assert_ne!(tiny, large);
        assert_eq!(os.purge_calls(), 3);
        a.dealloc(tiny, l(100, 4096));
    }
    let s = a.stats();
    assert_eq!(s.os.purges, 3);
    assert_eq!(s.os.purged_bytes, (64 << 10) + (56 << 10) + (64 << 10));
    let never = BuddyAlloc::with_os(small().purge(Purge::Never), &os);
    // SAFETY: valid layout, freed with it.
    unsafe { never.dealloc(never.alloc(l(MIB / 2, 8)), l(MIB / 2, 8)) };
    assert_eq!(os.purge_calls(), 3, "Purge::Never never purges");
}

#[test]
fn a_refused_purge_is_counted_and_the_block_is_still_freed() {
    let os = FaultyOs::new();
    let a = BuddyAlloc::with_os(small(), &os);
    os.set_fail_purge(true);
    // SAFETY: valid layout, freed with it.
    unsafe { a.dealloc(a.alloc(l(MIB / 2, 8)), l(MIB / 2, 8)) };
    let s = a.stats();
    assert_eq!((s.os.purges, s.os.purge_failures), (0, 1));
    assert_eq!(s.live_allocations(), 0);
    a.check().unwrap();
}

#[test]
fn the_os_refusing_the_reservation_gives_null_until_it_relents() {
    let os = FaultyOs::new().fail_map_after(0);
    let a = BuddyAlloc::with_os(small(), &os);
    // SAFETY: valid layout.
    assert!(unsafe { a.alloc(l(64, 8)) }.is_null());
    assert!(a.stats().os.map_failures >= 1);
    assert_eq!(os.mapped_bytes(), 0, "nothing half-reserved is kept");
    os.set_maps_left(usize::MAX);
    assert_usable(&a);
}

#[test]
fn a_smaller_range_is_reserved_when_the_os_refuses_the_whole_limit() {
    // 64 chunks of 1 MiB asked for; the OS grants at most 24 MiB: with their directory (a
    // header and bitmaps per chunk, some 25 KiB each), 16 chunks it is.
    let os = FaultyOs::new().byte_budget(24 * MIB);
    let a = BuddyAlloc::with_os(small().memory_limit(64 * MIB), &os);
    assert_usable(&a);
    assert_eq!(a.stats().os.chunk_capacity, 16);
    let mut n = 0;
    // SAFETY: valid layout; never freed (the allocator is dropped at the end).
    while !unsafe { a.alloc(l(MIB, 8)) }.is_null() {
        n += 1;
    }
    assert_eq!(n, 16);
}

#[test]
fn under_an_address_space_limit_the_directory_shrinks_with_the_arena() {
    // Up to 64 chunks of 16 MiB (the 32-bit default; 1024 of 64 MiB on 64-bit behave alike).
    // A directory for all 64 (a header and some 400 KiB of bitmaps each) would alone take
    // more than this limit (as `ulimit -v` sets one): it is sized for the one chunk that
    // fits with it.
    let os = FaultyOs::new().byte_budget(24 * MIB);
    let a = BuddyAlloc::with_os(
        Config::new().chunk_size(16 * MIB).memory_limit(1 << 30),
        &os,
    );
    assert_usable(&a);
    let s = a.stats().os;
    assert_eq!(s.chunk_capacity, 1);
    assert_eq!(s.reserved_bytes, os.mapped_bytes());
    assert!(s.reserved_bytes <= 24 * MIB && s.reserved_bytes > 16 * MIB);
    // The chunk of the smaller arena is usable: its header fits in the smaller directory.
    let mut blocks = Vec::new();
    // SAFETY: valid layout; each block is written inside its size and freed below.
    unsafe {
        loop {
            let p = a.alloc(l(8 * MIB, 16));
            if p.is_null() {
                break;
            }
            p.write(7);
            blocks.push(p);
        }
        assert_eq!(blocks.len(), 2, "a chunk of 16 MiB holds 2 blocks of 8 MiB");
        for p in blocks {
            a.dealloc(p, l(8 * MIB, 16));
        }
    }
    a.check().unwrap();
    drop(a);
    assert_eq!(
        os.mapped_bytes(),
        0,
        "the directory is unmapped with the length it was mapped with"
    );
}

#[test]
fn a_block_freed_by_a_thread_of_another_shard_goes_back_to_its_chunk() {
    let a = BuddyAlloc::with_config(small().shards(2));
    // Threads take shards round-robin in the order they first allocate; other tests' threads
    // may interleave, so look for one thread of each shard.
    let mut by_shard: [Option<usize>; 2] = [None, None];
    std::thread::scope(|s| {
        for _ in 0..64 {
            if by_shard.iter().all(Option::is_some) {
                break;
            }
            // Allocating pins the thread's shard and grows a chunk for it.
            let (shard, p) = s
                .spawn(|| {
                    // SAFETY: valid layout; freed below by another thread.
                    let p = unsafe { a.alloc(l(1000, 8)) } as usize;
                    (a.current_shard(), p)
                })
                .join()
                .unwrap();
            if by_shard[shard].is_none() {
                by_shard[shard] = Some(p);
            } else {
                // SAFETY: allocated above with this layout.
                unsafe { a.dealloc(p as *mut u8, l(1000, 8)) };
            }
        }
    });
    let [Some(p0), Some(p1)] = by_shard else {
        panic!("no thread landed on one of the shards");
    };
    // One chunk per shard, each holding the one block its thread kept.
    let live_by_owner = || {
        let mut live = [0usize; 2];
        for i in 0..a.stats().os.chunks {
            let (owner, s) = a.chunk_stats(i).unwrap();
            live[owner] += s.live_allocations;
        }
        live
    };
    assert_eq!(
        a.stats().os.chunks,
        2,
        "threads of different shards grow different chunks"
    );
    assert_eq!(live_by_owner(), [1, 1]);
    // Free shard 0's block from another thread (of whichever shard): it goes back to the
    // chunk of shard 0.
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: allocated above with this layout; no one else uses it.
            unsafe { a.dealloc(p0 as *mut u8, l(1000, 8)) };
        });
    });
    assert_eq!(live_by_owner(), [0, 1]);
    // SAFETY: as above.
    unsafe { a.dealloc(p1 as *mut u8, l(1000, 8)) };
    assert_eq!(live_by_owner(), [0, 0]);
    a.check().unwrap();
}

#[test]
fn threads_allocating_and_freeing_at_once_never_share_a_byte() {
    let a = BuddyAlloc::with_config(small().memory_limit(64 * MIB).shards(2));
    std::thread::scope(|s| {
        for t in 0..4usize {
            let a = &a;
            s.spawn(move || {
                let mut live: Vec<(usize, usize, usize)> = Vec::new();
                let mut seed = t as u64 * 0x9E37_79B9 + 1;
                for step in 0..4000usize {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if live.len() > 50 || (seed & 3 == 0 && !live.is_empty()) {
                        let (p, size, id) = live.swap_remove(seed as usize % live.len());
                        // SAFETY: this thread's live block of `size` bytes.
                        unsafe {
                            assert!(intact(p as *const u8, size, id), "block overwritten");
                            a.dealloc(p as *mut u8, l(size, 8));
                        }
                    } else {
                        let size = 1 + (seed >> 8) as usize % 5000;
                        let id = t * 1_000_000 + step;
                        // SAFETY: valid layout.
                        let p = unsafe { a.alloc(l(size, 8)) };
                        assert!(!p.is_null());
                        // SAFETY: fresh block of `size` bytes.
                        unsafe { fill(p, size, id) };
                        live.push((p as usize, size, id));
                    }
                }
                for (p, size, id) in live {
                    // SAFETY: as above.
                    unsafe {
                        assert!(intact(p as *const u8, size, id));
                        a.dealloc(p as *mut u8, l(size, 8));
                    }
                }
            });
        }
    });
    let s = a.stats();
    assert_eq!(s.live_allocations(), 0);
    assert_eq!(s.heap.allocations, s.heap.frees);
    assert_eq!(s.heap.free_bytes, s.heap.managed_bytes);
    a.check().unwrap();
}

#[test]
fn alloc_zeroed_gives_zeros_even_for_a_reused_block() {
    let a = BuddyAlloc::with_config(small().purge(Purge::Never));
    let layout = l(4096, 4096);
    // SAFETY: valid layout; each block freed once with it.
    unsafe {
        let p = a.alloc(layout);
        p.write_bytes(0xFF, 4096);
        a.dealloc(p, layout);
        let q = a.alloc_zeroed(layout);
        assert_eq!(q, p, "the same block, dirty, is reused");
        assert!((0..4096).all(|i| q.add(i).read() == 0));
        a.dealloc(q, layout);
    }
}

#[test]
fn vectors_and_a_hash_map_live_in_an_arena_and_resize_there() {
    let arena = BuddyArena::new(8 * MIB).unwrap();
    let mut v = AVec::new_in(&arena);
    for i in 0..100_000u32 {
        v.push(i);
    }
    let mut strings = AVec::new_in(&arena);
    strings.extend((0..1000).map(|i| format!("s{i}")));
    let mut map = hashbrown::HashMap::new_in(&arena);
    for (i, s) in strings.iter().enumerate() {
        map.insert(s.as_str(), i);
    }
    assert_eq!(map["s999"], 999);
    assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), 4_999_950_000);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.capacity(), 10);
    assert_eq!(v[9], 9);
    assert_eq!(arena.stats().live_allocations(), 3);
    drop(map);
    drop((strings, v));
    let s = arena.stats();
    assert_eq!(s.live_allocations(), 0);
    assert_eq!(s.heap.free_bytes, s.heap.managed_bytes);
    arena.as_alloc().check().unwrap();
}

#[test]
fn growing_with_a_larger_alignment_moves_the_block_and_keeps_its_contents() {
    let a = BuddyAlloc::with_config(small());
    let alloc = &a;
    let old = l(64, 8);
    let new = l(128, 1024);
    let p = allocator_api2::alloc::Allocator::allocate(&alloc, old)
        .unwrap()
        .cast::<u8>();
    // SAFETY: a live block of 64 bytes.
    unsafe { fill(p.as_ptr(), 64, 4) };
    // SAFETY: p is live with `old`; `new` is at least as large.
    let q = unsafe { allocator_api2::alloc::Allocator::grow_zeroed(&alloc, p, old, new) }.unwrap();
    let q = q.cast::<u8>();
    assert_eq!(q.as_ptr() as usize % 1024, 0);
    // SAFETY: q is live with 128 bytes.
    unsafe {
        assert!(intact(q.as_ptr(), 64, 4));
        assert!((64..128).all(|i| q.as_ptr().add(i).read() == 0));
        allocator_api2::alloc::Allocator::deallocate(&alloc, q, new);
    }
    assert_eq!(a.stats().live_allocations(), 0);
    a.check().unwrap();
}

#[test]
fn dropping_an_arena_gives_all_its_memory_back() {
    let os = FaultyOs::new();
    {
        let arena = BuddyArena::with_config_in(small(), &os).unwrap();
        assert!(os.mapped_bytes() > 0, "an arena reserves up front");
        let mut v = AVec::new_in(&arena);
        v.extend(0..1000u64);
        let mut big = AVec::<u8, _>::with_capacity_in(3 * MIB, &arena);
        big.resize(3 * MIB, 7);
        assert_eq!(arena.stats().os.direct_allocations, 1);
        // Leak both on purpose: the arena still owns their memory.
        std::mem::forget(v);
        std::mem::forget(big);
    }
    assert_eq!(os.mapped_bytes(), 0);
    assert_eq!(os.unmap_calls(), os.map_calls() - os.failed_maps());
}

#[test]
fn an_arena_reports_a_bad_capacity_or_an_os_refusal() {
    assert!(BuddyArena::new(0).is_err());
    assert!(BuddyArena::new(usize::MAX).is_err());
    let c = BuddyArena::config_for(10 * MIB).unwrap();
    assert_eq!((c.chunk_bytes(), c.limit_bytes()), (16 * MIB, 16 * MIB));
    let c = BuddyArena::config_for(100 * MIB).unwrap();
    assert_eq!((c.chunk_bytes(), c.limit_bytes()), (64 * MIB, 128 * MIB));
    let os = FaultyOs::new().fail_map_after(0);
    let err = BuddyArena::with_config_in(small(), &os).unwrap_err();
    assert_eq!(err, buddy_std::ArenaError::Os(buddy_mmap::Errno::NOMEM));
    assert!(err.to_string().contains("refused"));
}

#[test]
fn stats_count_allocations_frees_failures_and_os_figures() {
    let a = BuddyAlloc::with_config(small());
    assert_eq!(
        a.stats().os.reserved_bytes,
        0,
        "nothing reserved before the first use"
    );
    // SAFETY: valid layouts; freed with them.
    unsafe {
        let ps: Vec<_> = (0..10).map(|_| a.alloc(l(100, 8))).collect();
        let s = a.stats();
        assert_eq!((s.heap.allocations, s.heap.live_allocations), (10, 10));
        assert_eq!(s.heap.allocated_bytes, 10 * 128);
        assert_eq!(s.heap.requested_bytes_total, 1000);
        assert!(a.alloc(l(64, 1 << 30)).is_null());
        for p in ps {
            a.dealloc(p, l(100, 8));
        }
    }
    let s = a.stats();
    assert_eq!(
        (s.heap.frees, s.live_allocations(), s.heap.failed_requests),
        (10, 0, 1)
    );
    assert_eq!(
        (s.os.chunks, s.os.chunk_capacity, s.os.chunk_bytes),
        (1, 8, MIB)
    );
    assert!(s.os.reserved_bytes >= 8 * MIB);
    assert_eq!(s.os.committed_bytes, MIB);
    let text = s.to_string();
    assert!(text.contains("os: 1 of 8 chunks"), "{text}");
}

#[test]
fn a_thread_with_a_64_kib_stack_can_set_up_a_chunk() {
    let a = BuddyAlloc::with_config(small());
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn_scoped(s, || {
                // The first allocation reserves the memory and sets up the first chunk.
                // SAFETY: valid layout, freed with it.
                unsafe { a.dealloc(a.alloc(l(64, 8)), l(64, 8)) };
            })
            .unwrap();
    });
    assert_eq!(a.stats().os.chunks, 1);
}

/// What a fork handler registered before the allocator's does: glibc runs it on the thread
/// that forks, after `fork_prepare` and before `fork_parent` / `fork_child`, and it may
/// allocate. The thread passes its own locks, in the parent and in the child (another thread
/// id there), growing a chunk if need be; after the release everything is as usual.
#[test]
fn the_forking_thread_allocates_between_prepare_and_release_in_parent_and_child() {
    unsafe extern "C" {
        fn fork() -> i32;
        fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        fn alarm(seconds: u32) -> u32;
        fn _exit(status: i32) -> !;
    }
    /// Allocates `size` bytes, writes them, checks and frees them; false if refused.
    fn round_trip(a: &BuddyAlloc, size: usize) -> bool {
        // SAFETY: a valid layout; the block is written inside its size and freed once.
        unsafe {
            let p = a.alloc(l(size, 16));
            if p.is_null() {
                return false;
            }
            fill(p, size, 5);
            let ok = intact(p, size, 5);
            a.dealloc(p, l(size, 16));
            ok
        }
    }
    let a = BuddyAlloc::with_config(small());
    // SAFETY: a valid layout; freed at the end.
    let kept = unsafe { a.alloc(l(600 << 10, 16)) };
    assert!(!kept.is_null());
    // A process that waits for itself dies of SIGALRM instead of hanging the test run.
    // SAFETY: `alarm` only schedules a signal.
    unsafe { alarm(60) };
    a.fork_prepare();
    // A prepare handler: more than chunk 0 has left, so a chunk is added while held.
    assert!(round_trip(&a, 700 << 10));
    // SAFETY: plain `fork`; the child only uses `a` and system calls, then `_exit`s.
    let pid = unsafe { fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: see above; the child of the thread that called `fork_prepare`.
        unsafe {
            alarm(10);
            // Exit status 2 to 5: the step that failed (1 is valgrind's error status).
            let failed = if !round_trip(&a, 100) {
                2
            } else if !round_trip(&a, 700 << 10) {
                3
            } else {
                a.fork_child();
                if !round_trip(&a, 300 << 10) {
                    4
                } else if a.check().is_err() {
                    5
                } else {
                    0
                }
            };
            _exit(failed)
        }
    }
    // A parent handler.
    assert!(round_trip(&a, 100) && round_trip(&a, 700 << 10));
    // SAFETY: this thread called `fork_prepare` above.
    unsafe { a.fork_parent() };
    let mut status = -1;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    assert_eq!(unsafe { waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(
        status, 0,
        "the child's wait status: exit status (status >> 8) 2 to 5 is the step that failed, \
         a low byte the signal that killed it"
    );
    // SAFETY: cancels the alarm.
    unsafe { alarm(0) };
    // Another thread gets the locks as usual.
    std::thread::scope(|s| {
        assert!(s.spawn(|| round_trip(&a, 700 << 10)).join().unwrap());
    });
    assert_eq!(a.stats().os.chunks, 2);
    // SAFETY: allocated above with this layout.
    unsafe { a.dealloc(kept, l(600 << 10, 16)) };
    assert_eq!(a.stats().live_allocations(), 0);
    a.check().unwrap();
}
