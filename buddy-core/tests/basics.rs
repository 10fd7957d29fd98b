//! Behaviours of the heap, one per test.

mod common;

use buddy_core::{AllocError, BlockState, Config, FreeError, Heap};
use common::heap;
use std::alloc::Layout;
use std::ptr::NonNull;

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn alloc_128_then_free_gives_back_the_initial_shape() {
    let mut h = heap(1 << 16, 0, Config::new());
    let before = h.stats();
    let p = h.alloc(l(128, 8)).unwrap();
    assert_eq!(h.stats().live_allocations, 1);
    assert_eq!(h.stats().allocated_bytes, 128);
    // SAFETY: live allocation of h.
    assert_eq!(unsafe { h.free(p) }, Ok(128));
    h.flush();
    h.check().unwrap();
    let after = h.stats();
    assert_eq!(after.free_blocks, before.free_blocks);
    assert_eq!(after.free_bytes, before.free_bytes);
}

#[test]
fn lowest_address_first() {
    let mut h = heap(1 << 16, 0, Config::new());
    let a = h.alloc(l(16, 1)).unwrap().as_ptr() as usize;
    let b = h.alloc(l(16, 1)).unwrap().as_ptr() as usize;
    assert_eq!(b, a + 16);
    let (start, _) = h.ranges().next().unwrap();
    assert_eq!(a, start);
}

#[test]
fn exact_fit_run_of_96_bytes_frees_its_tail_at_once() {
    let mut h = heap(1 << 16, 0, Config::new().exact_fit_above(0));
    let p = h.alloc(l(96, 8)).unwrap();
    assert_eq!(h.stats().allocated_bytes, 96);
    let q = h.alloc(l(32, 32)).unwrap();
    // The run (32 + 64) ends where its 128-byte block ends, and the 32-byte head of the block
    // is reused right away.
    assert_eq!(q.as_ptr() as usize + 32, p.as_ptr() as usize);
    assert_eq!(h.usable_size(p), Ok(96));
    // The second piece of the run is an interior pointer.
    let second = p.as_ptr().wrapping_add(32);
    assert_eq!(
        // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
        unsafe { h.free(std::ptr::NonNull::new(second).unwrap()) },
        Err(FreeError::Interior)
    );
    // SAFETY: live allocations of h.
    assert_eq!(unsafe { h.free(p) }, Ok(96));
    // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
    assert_eq!(unsafe { h.free(q) }, Ok(32));
    h.flush();
    h.check().unwrap();
    assert_eq!(h.stats().allocated_bytes, 0);
}

#[test]
fn small_requests_take_one_block_and_large_ones_an_exact_run_by_default() {
    let mut h = heap(1 << 16, 0, Config::new());
    let small = h.alloc(l(300, 8)).unwrap();
    assert_eq!(h.usable_size(small), Ok(512));
    // 5000 bytes: a run of at most 4 pieces (5120 = 4096 + 1024) out of an 8 KiB block.
    let large = h.alloc(l(5000, 8)).unwrap();
    assert_eq!(h.usable_size(large), Ok(5120));
    assert_eq!(h.stats().allocated_bytes, 512 + 5120);
    h.check().unwrap();
}

#[test]
fn exact_fit_pieces_bound_the_run_and_its_slack() {
    for (pieces, usable) in [(1, 8192), (2, 6144), (3, 5120), (4, 5120), (64, 5008)] {
        let mut h = heap(1 << 16, 0, Config::new().exact_fit_pieces(pieces));
        let p = h.alloc(l(5000, 8)).unwrap();
        assert_eq!(h.usable_size(p), Ok(usable), "{pieces} pieces");
        // The tail of the 8 KiB block is free at once.
        assert_eq!(h.stats().free_bytes + usable, h.stats().managed_bytes);
        // SAFETY: live allocation with this layout.
        unsafe { h.dealloc(p, l(5000, 8)) };
        h.check().unwrap();
        h.flush();
        assert_eq!(h.stats().largest_free_block, 1 << 15, "{pieces} pieces");
    }
}

#[test]
fn without_exact_fit_requests_round_to_a_power_of_two() {
    let mut h = heap(1 << 16, 0, Config::new().exact_fit(false));
    let p = h.alloc(l(96, 8)).unwrap();
    assert_eq!(h.usable_size(p), Ok(128));
    assert_eq!(h.stats().allocated_bytes, 128);
}

#[test]
fn blocks_are_aligned_to_their_size_in_absolute_addresses() {
    // A region starting at an odd offset: blocks still land on absolute alignments.
    let mut h = heap(1 << 18, 48, Config::new());
    for k in 4..14 {
        let p = h.alloc(l(1 << k, 1)).unwrap().as_ptr() as usize;
        assert_eq!(p % (1 << k), 0, "block of 2^{k} at {p:#x}");
    }
    h.check().unwrap();
}

#[test]
fn every_alignment_up_to_the_largest_block_is_honoured() {
    let mut h = heap(1 << 20, 0, Config::new());
    let largest_align = 1usize << h.stats().max_order;
    let mut align = 1;
    while align <= largest_align {
        match h.alloc(l(8, align)) {
            Ok(p) => {
                assert_eq!(p.as_ptr() as usize % align, 0);
                // SAFETY: the pointer is a live allocation of this heap, with this layout.
                unsafe { h.dealloc(p, l(8, align)) };
            }
            Err(AllocError::OutOfMemory { .. }) => {
                // The largest aligned block may straddle the region edge; allowed only at the top.
                assert!(align >= largest_align / 2, "align {align} refused");
            }
            Err(e) => panic!("align {align}: {e}"),
        }
        align *= 2;
    }
    assert!(matches!(
        h.alloc(l(8, largest_align * 2)),
        Err(AllocError::AlignTooLarge { .. })
    ));
    h.check().unwrap();
}

#[test]
fn the_regions_of_a_heap_share_one_deferred_cache() {
    let mut h = Heap::new();
    for _ in 0..2 {
        let (p, len) = common::region(8192, 0);
        // SAFETY: the region is fresh leaked memory that only this heap uses.
        unsafe { h.add_region(p, len) }.unwrap();
    }
    let (r1, r1_end) = h.ranges().nth(1).unwrap();
    // The first region fills first: allocate until a block lands in the second.
    let mut live = Vec::new();
    let in_second = loop {
        let p = h.alloc(l(64, 8)).unwrap();
        if (r1..r1_end).contains(&(p.as_ptr() as usize)) {
            break p;
        }
        live.push(p);
    };
    // SAFETY: live allocation with this layout.
    unsafe { h.dealloc(in_second, l(64, 8)) };
    assert_eq!(h.stats().cached_blocks, 1);
    assert_eq!(h.block_state(in_second.as_ptr() as usize), BlockState::Free);
    // SAFETY: `free` checks its pointer; a cached block is refused (what the test checks).
    assert_eq!(unsafe { h.free(in_second) }, Err(FreeError::DoubleFree));
    assert_eq!(h.usable_size(in_second), Err(FreeError::DoubleFree));
    h.check().unwrap();
    // The next request of that order takes it back from the shared cache.
    assert_eq!(h.alloc(l(64, 8)).unwrap(), in_second);
    assert_eq!(h.stats().cached_blocks, 0);
    // SAFETY: live allocation; freed size-less this time.
    assert_eq!(unsafe { h.free(in_second) }, Ok(64));
    for p in live {
        // SAFETY: live allocations with this layout.
        unsafe { h.dealloc(p, l(64, 8)) };
    }
    h.flush();
    h.check().unwrap();
    assert_eq!(h.stats().allocated_bytes, 0);
    assert_eq!(h.stats().cached_blocks, 0);
}

#[test]
fn several_regions_serve_one_heap() {
    let mut h = Heap::new();
    for _ in 0..3 {
        let (p, len) = common::region(8192, 0);
        // SAFETY: the region is fresh leaked memory that only this heap uses.
        unsafe { h.add_region(p, len) }.unwrap();
    }
    assert_eq!(h.regions(), 3);
    let mut ptrs = Vec::new();
    while let Ok(p) = h.alloc(l(1024, 8)) {
        ptrs.push(p);
    }
    let ranges: Vec<_> = h.ranges().collect();
    for r in &ranges {
        assert!(
            ptrs.iter()
                .any(|p| (r.0..r.1).contains(&(p.as_ptr() as usize)))
        );
    }
    for p in ptrs {
        // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
        unsafe { h.free(p) }.unwrap();
    }
    h.flush();
    h.check().unwrap();
    assert_eq!(h.stats().allocated_bytes, 0);
}

#[test]
fn realloc_grows_in_place_when_the_buddy_is_free() {
    let mut h = heap(1 << 16, 0, Config::new().exact_fit_above(0));
    let p = h.alloc(l(64, 8)).unwrap();
    // SAFETY: the range lies inside a live allocation the test owns.
    unsafe { common::fill(p.as_ptr(), 64, 7) };
    // SAFETY: the pointer is a live allocation of this heap, with this old layout.
    let q = unsafe { h.realloc(p, l(64, 8), 200) }.unwrap();
    assert_eq!(p, q);
    // SAFETY: the range lies inside a live allocation the test owns.
    assert!(unsafe { common::intact(q.as_ptr(), 64, 7) });
    assert_eq!(h.usable_size(q), Ok(208));
    h.check().unwrap();
    // Shrinking is always in place.
    // SAFETY: the pointer is a live allocation of this heap, with this old layout.
    let r = unsafe { h.realloc(q, l(200, 8), 16) }.unwrap();
    assert_eq!(r, q);
    assert_eq!(h.usable_size(r), Ok(16));
    h.check().unwrap();
}

#[test]
fn a_block_grown_in_place_off_its_alignment_frees_with_its_new_layout() {
    let mut h = heap(1 << 16, 0, Config::new());
    let initial = h.stats().free_blocks;
    let a = h.alloc(l(64, 8)).unwrap();
    let b = h.alloc(l(64, 8)).unwrap();
    assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + 64);
    // `b` is 64-aligned, not 128-aligned: growing it in place makes a 64 + 64 run, a 128-byte
    // allocation that is not one 128-byte block.
    // SAFETY: live allocation with this layout.
    let c = unsafe { h.realloc(b, l(64, 8), 128) }.unwrap();
    assert_eq!(c, b);
    assert_eq!(h.usable_size(c), Ok(128));
    // SAFETY: live allocations with these layouts.
    unsafe {
        h.dealloc(c, l(128, 8));
        h.dealloc(a, l(64, 8));
    }
    h.check().unwrap();
    h.flush();
    assert_eq!(h.stats().free_blocks, initial);
    assert_eq!(h.stats().live_allocations, 0);
    assert_eq!(h.stats().allocated_bytes, 0);
}

#[test]
fn a_full_deferred_cache_sends_its_highest_block_to_the_bitmaps() {
    // CACHE_SLOTS cached blocks per order; an eviction takes the highest address among the 32
    // oldest (all of them when the stack holds 32).
    let n = buddy_core::CACHE_SLOTS;
    assert!(n >= 32);
    let mut h = heap(1 << 16, 0, Config::new());
    let mut blocks: Vec<_> = (0..n + 8).map(|_| h.alloc(l(64, 8)).unwrap()).collect();
    blocks.sort_unstable();
    let addr = |i: usize| blocks[i].as_ptr() as usize;
    // Free blocks 1..=n, lowest first: the 32 oldest are 1..=32, and with more slots than
    // that the highest cached block (n) is not among them.
    for &b in &blocks[1..=n] {
        // SAFETY: live allocations with this layout.
        unsafe { h.dealloc(b, l(64, 8)) };
    }
    assert_eq!(h.stats().cached_blocks, n);
    // A free into the full stack, below every cached block: block 32 goes to the bitmaps.
    // SAFETY: live allocation with this layout.
    unsafe { h.dealloc(blocks[0], l(64, 8)) };
    assert_eq!(h.stats().cached_blocks, n);
    assert_eq!(h.block_state(addr(32)), BlockState::Free);
    h.check().unwrap();
    // The next n requests empty the cache: blocks 0..=n but 32.
    let mut again: Vec<usize> = (0..n)
        .map(|_| h.alloc(l(64, 8)).unwrap().as_ptr() as usize)
        .collect();
    again.sort_unstable();
    let expect: Vec<usize> = (0..=n).filter(|&i| i != 32).map(addr).collect();
    assert_eq!(again, expect);
    assert_eq!(h.stats().cached_blocks, 0);
    assert_eq!(h.block_state(addr(32)), BlockState::Free);
    h.check().unwrap();
}

#[test]
fn a_heap_initialised_in_place_is_the_heap_with_config_builds() {
    let config = Config::new().min_block(32).exact_fit_pieces(2);
    let mut slot = Box::new(core::mem::MaybeUninit::<Heap>::uninit());
    let h = Heap::init_in(&mut slot, config);
    assert_eq!(h.config(), config);
    assert_eq!(h.stats(), Heap::with_config(config).stats());
    let (p, len) = common::region(1 << 16, 0);
    // SAFETY: the region is fresh, leaked and used only by this heap.
    unsafe { h.add_region(p, len) }.unwrap();
    let a = h.alloc(l(5000, 8)).unwrap();
    assert_eq!(h.usable_size(a), Ok(6144)); // two pieces: 4096 + 2048
    // SAFETY: live allocation.
    assert_eq!(unsafe { h.free(a) }, Ok(6144));
    h.flush();
    h.check().unwrap();
}

#[test]
fn realloc_moves_when_the_neighbour_is_taken() {
    let mut h = heap(1 << 16, 0, Config::new());
    let p = h.alloc(l(64, 8)).unwrap();
    let _blocker = h.alloc(l(64, 8)).unwrap();
    // SAFETY: the range lies inside a live allocation the test owns.
    unsafe { common::fill(p.as_ptr(), 64, 9) };
    // SAFETY: the pointer is a live allocation of this heap, with this old layout.
    let q = unsafe { h.realloc(p, l(64, 8), 256) }.unwrap();
    assert_ne!(p, q);
    // SAFETY: the range lies inside a live allocation the test owns.
    assert!(unsafe { common::intact(q.as_ptr(), 64, 9) });
    // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
    assert_eq!(unsafe { h.free(p) }, Err(FreeError::DoubleFree));
    h.check().unwrap();
}

#[test]
fn realloc_in_place_never_moves_and_a_refusal_changes_nothing() {
    let mut h = heap(1 << 16, 0, Config::new().exact_fit_above(0));
    // Aligned to 256, so that it can grow to 256 bytes where it is; its 192-byte tail is free.
    let p = h.alloc(l(64, 256)).unwrap();
    let blocker = h.alloc(l(64, 8)).unwrap();
    assert_eq!(blocker.as_ptr() as usize, p.as_ptr() as usize + 64);
    let before = h.stats();
    // SAFETY: p is a live allocation of h with this layout.
    let refused = unsafe { h.realloc_in_place(p, l(64, 256), 256) };
    assert_eq!(refused, Err(AllocError::OutOfMemory { size: 256 }));
    assert_eq!(h.stats(), before, "a refused resize changed the heap");
    assert_eq!(h.usable_size(p), Ok(64));
    // SAFETY: live allocation of h.
    unsafe { h.dealloc(blocker, l(64, 8)) };
    // The freed block waits in the deferred cache, free to the caller: growth takes it.
    assert_eq!(h.stats().cached_blocks, 1);
    // SAFETY: as above; now the neighbours are free.
    unsafe { h.realloc_in_place(p, l(64, 256), 256) }.unwrap();
    assert_eq!(h.usable_size(p), Ok(256));
    assert_eq!(h.stats().cached_blocks, 0);
    // SAFETY: as above, with the new layout; shrinking to a smaller block succeeds.
    unsafe { h.realloc_in_place(p, l(256, 256), 32) }.unwrap();
    assert_eq!(h.usable_size(p), Ok(32));
    assert_eq!(h.stats().failed_requests, 0);
    h.check().unwrap();
}

/// The design's promise, "realloc grows in place when the buddy is free", holds for a buddy
/// freed a moment ago, which waits in the deferred cache: `realloc_in_place` takes it out,
/// and so does every `realloc` that tries in place (buddy-std's, the C face's).
#[test]
fn realloc_in_place_grows_into_buddies_freed_a_moment_ago() {
    let (mut h, base) = aligned_heap(1 << 16, Config::new());
    let a = h.alloc(l(1024, 8)).unwrap();
    let b = h.alloc(l(1024, 8)).unwrap();
    let c = h.alloc(l(2048, 8)).unwrap();
    let at = |p: NonNull<u8>| p.as_ptr() as usize - base;
    assert_eq!((at(a), at(b), at(c)), (0, 1024, 2048));
    // SAFETY: live allocations with these layouts.
    unsafe {
        h.dealloc(b, l(1024, 8));
        h.dealloc(c, l(2048, 8));
    }
    assert_eq!(h.stats().cached_blocks, 2);
    let failed = h.stats().failed_requests;
    // Two orders up: both buddies, of 1 KiB and 2 KiB, were cached.
    // SAFETY: live with this layout.
    unsafe { h.realloc_in_place(a, l(1024, 8), 4096) }.unwrap();
    assert_eq!(h.usable_size(a), Ok(4096));
    let s = h.stats();
    assert_eq!((s.cached_blocks, s.failed_requests), (0, failed));
    h.check().unwrap();
    // A buddy that is live stops it, and a refusal leaves the cache as it was.
    let d = h.alloc(l(4096, 8)).unwrap();
    let e = h.alloc(l(8192, 8)).unwrap();
    assert_eq!((at(d), at(e)), (4096, 8192));
    // SAFETY: live with this layout.
    unsafe { h.dealloc(d, l(4096, 8)) };
    let before = h.stats();
    // SAFETY: live with the layout it grew to.
    let r = unsafe { h.realloc_in_place(a, l(4096, 8), 16384) };
    assert_eq!(r, Err(AllocError::OutOfMemory { size: 16384 }));
    assert_eq!(h.stats(), before, "a refused resize changed the heap");
    h.check().unwrap();
}

/// A smaller size can need a larger block: with a large alignment, a request at or below the
/// exact-fit threshold takes a whole block of that alignment, where a larger one above it takes
/// a shorter run. Shrinking to it is growing: refused on a full heap, the block kept.
#[test]
fn a_smaller_size_that_needs_a_larger_block_is_refused_on_a_full_heap() {
    let mut h = heap(1 << 16, 0, Config::new());
    let old = l(5000, 8192);
    let p = h.alloc(old).unwrap();
    assert_eq!(h.usable_size(p), Ok(5120));
    while h.alloc(l(16, 16)).is_ok() {}
    let before = h.stats();
    // SAFETY: live with `old`.
    let r = unsafe { h.realloc_in_place(p, old, 4000) };
    assert_eq!(r, Err(AllocError::OutOfMemory { size: 4000 }));
    // SAFETY: as above.
    let r = unsafe { h.realloc(p, old, 4000) };
    assert_eq!(r, Err(AllocError::OutOfMemory { size: 4000 }));
    assert_eq!(h.usable_size(p), Ok(5120));
    assert_eq!(h.stats().free_blocks, before.free_blocks);
    h.check().unwrap();
}

#[test]
fn zeroed_metadata_gives_the_same_heap_as_metadata_it_zeroes_itself() {
    const LEN: usize = 1 << 16;
    let words = buddy_core::metadata_words(LEN, 16);
    // Aligned to their length, so that both decompose into the same blocks.
    let aligned = || {
        // SAFETY: non-zero size; leaked.
        let p = unsafe { std::alloc::alloc_zeroed(l(LEN, LEN)) };
        assert!(!p.is_null());
        p
    };
    let (region_a, region_b) = (aligned(), aligned());
    let fresh: &'static mut [u64] = Box::leak(vec![0u64; words].into_boxed_slice());
    let dirty: &'static mut [u64] = Box::leak(vec![u64::MAX; words].into_boxed_slice());
    let (mut a, mut b) = (Heap::new(), Heap::new());
    // SAFETY: fresh leaked regions and metadata, used by these heaps only; `fresh` is zeros.
    unsafe {
        a.add_region_with_zeroed_metadata(region_a, LEN, fresh)
            .unwrap();
        b.add_region_with_metadata(region_b, LEN, dirty).unwrap();
    }
    a.check().unwrap();
    b.check().unwrap();
    assert_eq!(a.stats(), b.stats());
    let pa = a.alloc(l(1000, 64)).unwrap();
    let pb = b.alloc(l(1000, 64)).unwrap();
    assert_eq!(
        pa.as_ptr() as usize - region_a as usize,
        pb.as_ptr() as usize - region_b as usize
    );
    assert_eq!(a.stats(), b.stats());
}

#[test]
fn merged_stats_add_up_two_heaps() {
    let mut a = heap(1 << 14, 0, Config::new());
    let mut b = heap(1 << 15, 0, Config::new());
    a.alloc(l(100, 8)).unwrap();
    b.alloc(l(1000, 8)).unwrap();
    let _ = b.alloc(l(1 << 20, 8));
    let (sa, sb) = (a.stats(), b.stats());
    let mut m = sa;
    m.merge(&sb);
    assert_eq!(m.live_allocations, 2);
    assert_eq!(m.allocated_bytes, sa.allocated_bytes + sb.allocated_bytes);
    assert_eq!(m.free_bytes, sa.free_bytes + sb.free_bytes);
    assert_eq!(m.managed_bytes, sa.managed_bytes + sb.managed_bytes);
    assert_eq!(m.failed_requests, 1);
    assert_eq!(m.regions, 2);
    assert_eq!(
        m.largest_free_block,
        sa.largest_free_block.max(sb.largest_free_block)
    );
    assert_eq!(m.max_order, sa.max_order.max(sb.max_order));
    for k in 0..64 {
        assert_eq!(m.free_blocks[k], sa.free_blocks[k] + sb.free_blocks[k]);
    }
}

#[test]
fn block_state_maps_metadata_free_and_used_memory() {
    let (p, len) = common::region(1 << 14, 0);
    let mut h = Heap::new();
    // SAFETY: the region is fresh leaked memory that only this heap uses.
    unsafe { h.add_region(p, len) }.unwrap();
    let (start, end) = h.ranges().next().unwrap();
    assert_eq!(h.block_state(p as usize), BlockState::Metadata);
    assert_eq!(h.block_state(start), BlockState::Free);
    let a = h.alloc(l(16, 1)).unwrap();
    assert_eq!(h.block_state(a.as_ptr() as usize), BlockState::Used);
    assert_eq!(h.block_state(end + 4096), BlockState::Outside);
}

#[test]
fn stats_display_reads_like_buddyinfo() {
    let mut h = heap(1 << 16, 0, Config::new().exact_fit_above(0));
    h.alloc(l(100, 8)).unwrap();
    let text = h.stats().to_string();
    assert!(text.starts_with("order"), "{text}");
    assert!(text.contains("16B") && text.contains("1K"), "{text}");
    assert!(text.contains("live 1 allocations, 112 bytes"), "{text}");
}

/// Page frames at the very top of the address space (a higher-half kernel's heap, say): the
/// region's end is `usize::MAX`, so `start + len` and a block's end overflow. Never touched
/// (the frames are not even mapped here), never a panic, and `check` holds throughout.
#[test]
fn a_region_ending_at_the_top_of_the_address_space_works() {
    const LEN: usize = (1 << 20) - 1;
    let start = usize::MAX - LEN; // the region ends at usize::MAX
    let config = Config::new().min_block(4096).exact_fit(false);
    let meta = vec![0u64; buddy_core::metadata_words(LEN, 4096)].leak();
    let mut h = Heap::with_config(config);
    // SAFETY: the heap never dereferences the frames (guarantee 1); nothing else uses them.
    unsafe { h.add_region_with_metadata(std::ptr::without_provenance_mut(start), LEN, meta) }
        .unwrap();
    h.check().unwrap();
    let initial = h.stats();
    let page = l(4096, 4096);
    let mut frames = Vec::new();
    while let Ok(p) = h.alloc(page) {
        frames.push(p);
    }
    assert_eq!(frames.len(), 255, "every whole page below the top");
    h.check().unwrap();
    let last = *frames.iter().max().unwrap();
    assert_eq!(last.as_ptr() as usize, usize::MAX - 2 * 4096 + 1);
    // Growing the last frame would run past the top: refused, nothing changed.
    let before = h.stats();
    // SAFETY: live with `page`.
    let r = unsafe { h.realloc_in_place(last, page, 1 << 18) };
    assert_eq!(r, Err(AllocError::OutOfMemory { size: 1 << 18 }));
    // SAFETY: as above.
    let r = unsafe { h.realloc(last, page, 1 << 18) };
    assert_eq!(r, Err(AllocError::OutOfMemory { size: 1 << 18 }));
    assert_eq!(h.stats().free_blocks, before.free_blocks);
    h.check().unwrap();
    for p in frames {
        // SAFETY: live with `page`.
        assert_eq!(unsafe { h.free(p) }, Ok(4096));
    }
    h.flush();
    h.check().unwrap();
    assert_eq!(h.stats().free_blocks, initial.free_blocks);
}

#[test]
fn page_frames_with_separate_metadata_never_touch_the_frames() {
    const LEN: usize = if cfg!(miri) { 1 << 18 } else { 1 << 22 };
    let words = buddy_core::metadata_words(LEN, 4096);
    let meta: &'static mut [u64] = Box::leak(vec![u64::MAX; words].into_boxed_slice());
    let (p, len) = common::region(LEN, 0);
    // SAFETY: the range lies inside memory this test owns.
    unsafe { std::ptr::write_bytes(p, 0xA5, len) };
    let mut h = Heap::with_config(Config::new().min_block(4096).exact_fit(false));
    // SAFETY: the region is fresh leaked memory that only this heap uses.
    unsafe { h.add_region_with_metadata(p, len, meta) }.unwrap();
    let mut frames = Vec::new();
    for k in [0, 1, 3, 0, 2, 5] {
        frames.push((h.alloc(l(4096 << k, 4096 << k)).unwrap(), k));
    }
    for (f, k) in frames.drain(..).step_by(2) {
        // SAFETY: the pointer is a live allocation of this heap, with this layout.
        unsafe { h.dealloc(f, l(4096 << k, 4096 << k)) };
    }
    h.check().unwrap();
    // SAFETY: the region is ours; the heap never wrote a byte of it.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    assert!(bytes.iter().all(|&b| b == 0xA5));
    let s = h.stats();
    assert!(
        s.metadata_bytes * 10_000 <= LEN * 5,
        "metadata {} bytes",
        s.metadata_bytes
    );
}

/// A heap over a fresh region of `len` bytes aligned to `len` (a power of two), metadata
/// outside it, so that block addresses are known: returns the heap and the region's start.
fn aligned_heap(len: usize, config: Config) -> (Heap, usize) {
    let layout = Layout::from_size_align(len, len).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    let meta = vec![0u64; buddy_core::metadata_words(len, config.block())].leak();
    let mut h = Heap::with_config(config);
    // SAFETY: the region is fresh leaked memory that only this heap uses.
    unsafe { h.add_region_with_metadata(p, len, meta) }.unwrap();
    (h, p as usize)
}

#[test]
fn a_freed_run_waits_in_the_run_cache_for_a_request_of_its_size() {
    let mut h = heap(1 << 16, 0, Config::new());
    let initial = h.stats();
    let p = h.alloc(l(5000, 8)).unwrap();
    assert_eq!(h.usable_size(p), Ok(5120)); // 4096 + 1024
    let live = h.stats();
    // SAFETY: live allocation with this layout.
    unsafe { h.dealloc(p, l(5000, 8)) };
    let s = h.stats();
    // Its two pieces wait, free for any request but not merged.
    assert_eq!(s.cached_blocks, 2);
    assert_eq!(s.free_blocks[12], live.free_blocks[12] + 1);
    assert_eq!(s.free_blocks[10], live.free_blocks[10] + 1);
    assert_eq!(s.free_bytes, initial.free_bytes);
    assert_eq!(h.block_state(p.as_ptr() as usize + 4096), BlockState::Free);
    h.check().unwrap();
    // Checked like any free block: a double free, and its size, are refused.
    // SAFETY: `free` checks its pointer (the test checks the refusal).
    assert_eq!(unsafe { h.free(p) }, Err(FreeError::DoubleFree));
    assert_eq!(h.usable_size(p), Err(FreeError::DoubleFree));
    assert_eq!(h.stats(), s, "a refused free changed the heap");
    // The next request of that size takes it back as it is.
    let q = h.alloc(l(4990, 16)).unwrap();
    assert_eq!(q, p);
    assert_eq!(h.stats().cached_blocks, 0);
    // SAFETY: live allocation.
    assert_eq!(unsafe { h.free(q) }, Ok(5120));
    h.flush();
    assert_eq!(
        h.stats().free_blocks,
        initial.free_blocks,
        "not back to the initial shape"
    );
    h.check().unwrap();
}

#[test]
fn cached_runs_are_merged_before_a_request_fails() {
    let mut h = heap(1 << 16, 0, Config::new());
    let mut runs = Vec::new();
    while let Ok(p) = h.alloc(l(5000, 8)) {
        runs.push(p);
    }
    assert!(runs.len() >= 4);
    for p in runs {
        // SAFETY: live allocations with this layout.
        unsafe { h.dealloc(p, l(5000, 8)) };
    }
    assert!(h.stats().cached_blocks > 0);
    // The largest block there is: only whole once every cached run is merged.
    let top = 1 << h.stats().max_order;
    let big = h.alloc(l(top, 8)).unwrap();
    assert_eq!(h.stats().cached_blocks, 0);
    // SAFETY: live allocation.
    assert_eq!(unsafe { h.free(big) }, Ok(top));
    h.check().unwrap();
}

/// A run whose room is free only once a cached block is merged: the request coalesces the
/// cache and is served, not refused (a refusal followed by the same request succeeding was
/// the bug: the run was placed before the cache was merged, and not again after).
#[test]
fn a_run_is_placed_over_a_cached_block_before_the_request_fails() {
    let (mut h, base) = aligned_heap(16 << 10, Config::new());
    let a = h.alloc(l(8192, 8192)).unwrap();
    let b = h.alloc(l(4096, 4096)).unwrap();
    let c = h.alloc(l(16, 16)).unwrap();
    let d = h.alloc(l(2048, 2048)).unwrap();
    let at = |p: NonNull<u8>| p.as_ptr() as usize - base;
    assert_eq!(
        (at(a), at(b), at(c), at(d)),
        (0, 8 << 10, 12 << 10, 14 << 10)
    );
    // SAFETY: live allocations.
    unsafe { h.free(b) }.unwrap();
    h.flush();
    // SAFETY: live allocation; it waits in the deferred cache, taken in the bitmaps.
    unsafe { h.free(c) }.unwrap();
    assert_eq!(h.stats().cached_blocks, 1);
    let failed = h.stats().failed_requests;
    // 4096 + 2048 bytes at 8 KiB: free, once the cached 16 bytes at 12 KiB are merged.
    let r = h.alloc(l(6144, 8)).unwrap();
    assert_eq!(at(r), 8 << 10);
    assert_eq!(h.usable_size(r), Ok(6144));
    assert_eq!(h.stats().cached_blocks, 0);
    assert_eq!(h.stats().failed_requests, failed, "counted as a refusal");
    h.check().unwrap();
}

/// A realloc that can grow only into a buddy waiting in the deferred cache, on a heap with no
/// other room: the cache is merged and the block grows in place, not refused.
#[test]
fn realloc_grows_into_a_cached_buddy_when_nothing_else_fits() {
    let (mut h, _) = aligned_heap(4096, Config::new());
    let mut blocks = Vec::new();
    while let Ok(p) = h.alloc(l(16, 16)) {
        blocks.push(p);
    }
    // SAFETY: live allocations; the one written to is live with 16 bytes.
    unsafe {
        blocks[0].as_ptr().write_bytes(0xAB, 16);
        h.free(blocks[1]).unwrap();
    }
    assert_eq!(h.stats().cached_blocks, 1);
    let failed = h.stats().failed_requests;
    // SAFETY: live with this layout.
    let p = unsafe { h.realloc(blocks[0], l(16, 16), 32) }.unwrap();
    assert_eq!(p, blocks[0], "grown in place: there is no other room");
    assert_eq!(h.usable_size(p), Ok(32));
    assert!(
        // SAFETY: p is live with 32 bytes.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), 16) }
            .iter()
            .all(|&x| x == 0xAB)
    );
    assert_eq!(h.stats().failed_requests, failed, "counted as a refusal");
    // Now truly full: the next refusal is counted.
    // SAFETY: live with the layout the realloc gave it.
    assert!(unsafe { h.realloc(p, l(32, 16), 64) }.is_err());
    assert_eq!(h.stats().failed_requests, failed + 1);
    assert_eq!(h.usable_size(p), Ok(32));
    h.check().unwrap();
}

#[test]
fn a_run_fills_the_free_tail_before_its_largest_free_piece() {
    // Exact fit for every size, on a 32 KiB region at a 32 KiB-aligned address.
    let (mut h, base) = aligned_heap(1 << 15, Config::new().exact_fit_above(0));
    // 3 KiB = 2048 + 1024 from [0, 4K): its tail [3K, 4K) is free, and [4K, 8K) is a free
    // block whose buddy ends in that tail. (A 2 KiB alignment, which 3 KiB is not a multiple
    // of, keeps the run at the start of its block.)
    let a = h.alloc(l(3072, 2048)).unwrap();
    assert_eq!(a.as_ptr() as usize, base);
    // 5 KiB = 1024 + 4096 over [3K, 8K), where splitting a larger block would take [8K, 13K).
    let b = h.alloc(l(5120, 8)).unwrap();
    assert_eq!(b.as_ptr() as usize, base + 3072);
    assert_eq!(h.usable_size(b), Ok(5120));
    // [8K, 32K) is still whole: a 16 KiB block fits.
    let c = h.alloc(l(16384, 8)).unwrap();
    assert_eq!(c.as_ptr() as usize, base + 16384);
    h.check().unwrap();
    // Freed, the run waits in the cache; it is 1 KiB-aligned, so a request for 4 KiB
    // alignment is not given it.
    // SAFETY: live allocation.
    assert_eq!(unsafe { h.free(b) }, Ok(5120));
    let d = h.alloc(l(5120, 4096)).unwrap();
    assert_eq!(d.as_ptr() as usize % 4096, 0);
    assert_eq!(d.as_ptr() as usize, base + 8192);
    assert_eq!(h.alloc(l(5120, 8)).unwrap(), b);
    h.check().unwrap();
}

/// A run cut from a block of its own ends where the block ends, so that a run longer than a
/// page does not start on a page boundary (`Heap::carve_run` says why); it starts where the
/// block starts when its alignment does not divide its size, or when its smallest piece would
/// be a minimum block (which cannot say "the run goes on").
#[test]
fn a_run_cut_from_a_block_ends_where_the_block_ends() {
    let (mut h, base) = aligned_heap(1 << 15, Config::new());
    // 4096 + 512 from [0, 8K): [3584, 8K), its head [0, 3584) free at once.
    let r = h.alloc(l(4608, 8)).unwrap();
    assert_eq!(r.as_ptr() as usize - base, 8192 - 4608);
    assert_eq!(h.usable_size(r), Ok(4608));
    assert_eq!(h.free_extent(base), Some((base, base + 2048)));
    assert_eq!(h.free_extent(base + 3072), Some((base + 3072, base + 3584)));
    // The 4 KiB piece is not where a free may start.
    let piece = NonNull::new(r.as_ptr().wrapping_add(512)).unwrap();
    assert_eq!(h.usable_size(piece), Err(FreeError::Interior));
    h.check().unwrap();
    // A 4 KiB alignment does not divide 4608: at the start of [8K, 16K).
    let a = h.alloc(l(4608, 4096)).unwrap();
    assert_eq!(a.as_ptr() as usize - base, 8192);
    h.check().unwrap();
    // SAFETY: live allocations of h.
    unsafe {
        assert_eq!(h.free(r), Ok(4608));
        assert_eq!(h.free(a), Ok(4608));
    }
    h.flush();
    h.check().unwrap();
    assert_eq!(h.free_extent(base), Some((base, base + (1 << 15))));
    // 64 + 16 ends in a minimum block: at the start of its 128-byte block; 64 + 32 at its end.
    let (mut h, base) = aligned_heap(1 << 15, Config::new().exact_fit_above(0));
    let m = h.alloc(l(80, 8)).unwrap();
    assert_eq!((m.as_ptr() as usize - base, h.usable_size(m)), (0, Ok(80)));
    let e = h.alloc(l(96, 8)).unwrap();
    assert_eq!(
        (e.as_ptr() as usize - base, h.usable_size(e)),
        (128 + 32, Ok(96))
    );
    h.check().unwrap();
}

#[test]
fn a_run_fills_the_free_head_of_its_largest_free_pieces_buddy() {
    let (mut h, base) = aligned_heap(1 << 15, Config::new().exact_fit_above(0));
    let x = h.alloc(l(4096, 8)).unwrap();
    let y1 = h.alloc(l(1024, 8)).unwrap();
    let y2 = h.alloc(l(1024, 8)).unwrap();
    assert_eq!(
        [x, y1, y2].map(|p| p.as_ptr() as usize - base),
        [0, 4096, 5120]
    );
    // SAFETY: live allocations with these layouts.
    unsafe {
        h.dealloc(x, l(4096, 8));
        h.dealloc(y1, l(1024, 8));
    }
    h.flush();
    // [0, 4K) is free and its buddy [4K, 8K) starts with a free 1 KiB: 4096 + 1024 goes
    // there, not into [8K, 16K).
    let r = h.alloc(l(5000, 8)).unwrap();
    assert_eq!(r.as_ptr() as usize, base);
    assert_eq!(h.usable_size(r), Ok(5120));
    assert_eq!(h.block_state(base + 8192), BlockState::Free);
    h.check().unwrap();
}

#[test]
fn realloc_moves_into_a_cached_run_of_the_new_size() {
    let mut h = heap(1 << 16, 0, Config::new());
    let spare = h.alloc(l(6000, 8)).unwrap();
    let p = h.alloc(l(5000, 8)).unwrap();
    // SAFETY: live allocation; the range lies inside it.
    unsafe {
        common::fill(p.as_ptr(), 5000, 3);
        h.dealloc(spare, l(6000, 8));
    }
    // SAFETY: live allocation with this layout.
    let q = unsafe { h.realloc(p, l(5000, 8), 6000) }.unwrap();
    assert_eq!(q, spare);
    // SAFETY: q is live with at least 5000 bytes of the old data.
    assert!(unsafe { common::intact(q.as_ptr(), 5000, 3) });
    assert_eq!(h.usable_size(q), Ok(6144));
    // SAFETY: `free` checks its pointer: the old run is cached now.
    assert_eq!(unsafe { h.free(p) }, Err(FreeError::DoubleFree));
    h.check().unwrap();
}

#[test]
fn powers_of_two_above_the_exact_fit_threshold_recycle_through_the_block_cache() {
    let mut h = heap(1 << 16, 0, Config::compact());
    let p = h.alloc(l(2048, 8)).unwrap();
    assert_eq!(h.usable_size(p), Ok(2048));
    // SAFETY: live allocation with this layout.
    unsafe { h.dealloc(p, l(2048, 8)) };
    assert_eq!(h.stats().cached_blocks, 1);
    assert_eq!(h.alloc(l(2048, 16)).unwrap(), p);
    // Aligned past its size it is still exactly its size, not a block of its alignment, and
    // not a cached block of its size that is not aligned enough.
    let a = h.alloc(l(1024, 8)).unwrap();
    let b = h.alloc(l(1024, 8)).unwrap();
    let odd = if b.as_ptr() as usize % 4096 != 0 {
        b
    } else {
        a
    };
    // SAFETY: live allocation with this layout.
    unsafe { h.dealloc(odd, l(1024, 8)) };
    let q = h.alloc(l(1024, 4096)).unwrap();
    assert_eq!(q.as_ptr() as usize % 4096, 0);
    assert_eq!(h.usable_size(q), Ok(1024));
    // SAFETY: live allocations with these layouts.
    unsafe {
        h.dealloc(q, l(1024, 4096));
        h.dealloc(p, l(2048, 16));
    }
    h.flush();
    h.check().unwrap();
}

#[test]
fn stats_count_the_fast_paths_like_the_slow_ones() {
    // The first 50-byte request splits blocks (slow path); the next ones come from the
    // deferred cache and their frees go back to it (fast paths, counted by order).
    let mut h = heap(1 << 16, 0, Config::new());
    let small = l(50, 8);
    for _ in 0..3 {
        let p = h.alloc(small).unwrap();
        // SAFETY: live allocation of h, with this layout.
        unsafe { h.dealloc(p, small) };
    }
    let big = h.alloc(l(1000, 8)).unwrap();
    let p = h.alloc(small).unwrap();
    let s = h.stats();
    assert_eq!((s.allocations, s.frees, s.live_allocations), (5, 3, 2));
    assert_eq!(s.allocated_bytes, 1024 + 64);
    assert_eq!(s.allocated_bytes_total, 4 * 64 + 1024);
    assert_eq!(s.requested_bytes_total, 4 * 50 + 1000);
    assert_eq!(s.high_water_bytes, 1024 + 64);
    // SAFETY: live allocations of h.
    unsafe {
        assert_eq!(h.free(p), Ok(64));
        assert_eq!(h.free(big), Ok(1024));
    }
    let s = h.stats();
    assert_eq!((s.allocations, s.frees, s.live_allocations), (5, 5, 0));
    assert_eq!((s.allocated_bytes, s.high_water_bytes), (0, 1024 + 64));
}

#[test]
fn free_extent_agrees_with_block_state_on_every_minimum_block() {
    // Free blocks of the bitmaps, cached blocks and cached exact-fit runs, between live
    // allocations of both kinds.
    let mut h = heap(1 << 15, 0, Config::compact());
    let mut live = Vec::new();
    for (i, size) in [16, 96, 700, 1500, 64, 3000, 200, 5000, 48, 900]
        .iter()
        .enumerate()
    {
        let p = h.alloc(l(*size, 8)).unwrap();
        if i % 3 == 1 {
            // SAFETY: live allocation of h.
            unsafe { h.free(p) }.unwrap();
        } else {
            live.push(p);
        }
    }
    let s = h.stats();
    assert!(s.cached_blocks > 0, "no cached block or run to look at");
    let min = h.config().block();
    let (mut walked, mut calls) = (0, 0);
    for (start, end) in h.ranges().collect::<Vec<_>>() {
        // Every minimum block: free_extent is Some exactly where block_state says Free, and
        // the extent holds the address, is free all through, and is one block or run. (Not
        // under Miri: some 8000 scans of the caches took it 12 minutes there, and the code
        // has no `unsafe`; the extent walk below runs there too.)
        let every_block = if cfg!(miri) { 0..0 } else { start..end };
        for a in every_block.step_by(min) {
            match h.free_extent(a) {
                Some((from, to)) => {
                    assert_eq!(h.block_state(a), BlockState::Free, "{a:#x}");
                    assert!(
                        from <= a && a < to && to <= end,
                        "{a:#x}: {from:#x}..{to:#x}"
                    );
                    // The same extent from any of its addresses (so free all through: each
                    // address of it is checked against block_state in turn).
                    assert_eq!(h.free_extent(from), Some((from, to)));
                    assert_eq!(h.free_extent(to - 1), Some((from, to)));
                }
                None => assert_eq!(h.block_state(a), BlockState::Used, "{a:#x}"),
            }
        }
        // Walking extent by extent, and over each allocation whole, covers exactly the free
        // bytes.
        let mut a = start;
        while a < end {
            calls += 1;
            match h.free_extent(a) {
                Some((from, to)) => {
                    assert_eq!(from, a, "extents are disjoint and walked from their start");
                    walked += to - from;
                    a = to;
                }
                None => {
                    let p = NonNull::new(std::ptr::without_provenance_mut(a)).unwrap();
                    a += h.usable_size(p).unwrap();
                }
            }
        }
    }
    assert_eq!(walked, s.free_bytes);
    assert!(
        calls < (1 << 15) / min / 4,
        "{calls} calls: not one per free block"
    );
    // Outside the heap, and the metadata carved from the region's front.
    assert_eq!(h.free_extent(16), None);
    let meta = h.ranges().next().unwrap().0 - min;
    assert_eq!(h.block_state(meta), BlockState::Metadata);
    assert_eq!(h.free_extent(meta), None);
    for p in live {
        // SAFETY: live allocation of h.
        unsafe { h.free(p) }.unwrap();
    }
}

/// Requests of one size that take exact-fit runs lie end to end (each run starts at the next
/// multiple of two minimum blocks after the last), not one to a block of their order with
/// the block's tail left to smaller requests: 30 runs of 1,088 bytes (1,033 rounded to at
/// most 5 pieces) span 30 × 1,088 bytes, where carving each from a 2 KiB block of its own
/// spans 30 × 2 KiB. Freed, size-less, in any order, they give the heap back its initial
/// shape.
#[test]
fn same_sized_runs_lie_end_to_end() {
    let mut h = heap(1 << 16, 0, Config::compact());
    let before = h.stats();
    let mut ps = Vec::new();
    for _ in 0..30 {
        let p = h.alloc(l(1033, 8)).unwrap();
        assert_eq!(h.usable_size(p), Ok(1088));
        ps.push(p);
    }
    let addrs: Vec<usize> = ps.iter().map(|p| p.as_ptr() as usize).collect();
    for w in addrs.windows(2) {
        assert_eq!(w[1], w[0] + 1088, "runs of one size end to end");
    }
    h.check().unwrap();
    // A pointer inside a run is refused, and changes nothing.
    let inner = NonNull::new(ps[3].as_ptr().wrapping_add(64)).unwrap();
    let live = h.stats();
    // SAFETY: a wrong pointer is detected, not freed.
    assert_eq!(unsafe { h.free(inner) }, Err(FreeError::Interior));
    assert_eq!(h.stats().free_blocks, live.free_blocks);
    assert_eq!(h.stats().live_allocations, 30);
    let order = (0..30).rev().step_by(2).chain((0..30).step_by(2));
    for i in order {
        // SAFETY: live allocations of h, each freed once.
        assert_eq!(unsafe { h.free(ps[i]) }, Ok(1088));
    }
    // SAFETY: already freed: detected.
    assert_eq!(unsafe { h.free(ps[0]) }, Err(FreeError::DoubleFree));
    h.flush();
    h.check().unwrap();
    let after = h.stats();
    assert_eq!(after.free_blocks, before.free_blocks);
    assert_eq!(after.free_bytes, before.free_bytes);
}
