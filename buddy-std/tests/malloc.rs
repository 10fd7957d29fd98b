//! The C semantics of `buddy_std::malloc` (feature `malloc`), from Rust: what the C ABI and
//! `libbuddy_malloc.so` promise, checked against the heap's own structure check after each
//! refusal. (The C side is `buddy-std/tests/c/*.c`, run by `cargo xtask test`.)
#![cfg(feature = "malloc")]

use core::ffi::c_void;

use buddy_core::FreeError;
use buddy_std::malloc::{self, CError, MIN_ALIGN};
use buddy_std::{BuddyAlloc, Config};

fn heap() -> BuddyAlloc {
    BuddyAlloc::with_config(Config::new().memory_limit(256 << 20))
}

fn fill(p: *mut c_void, n: usize, seed: u8) {
    // SAFETY: `p` is a live block of at least `n` bytes.
    let s = unsafe { core::slice::from_raw_parts_mut(p.cast::<u8>(), n) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
}

fn filled(p: *const c_void, n: usize, seed: u8) -> bool {
    // SAFETY: `p` is a live block of at least `n` bytes.
    let s = unsafe { core::slice::from_raw_parts(p.cast::<u8>(), n) };
    s.iter()
        .enumerate()
        .all(|(i, &b)| b == seed.wrapping_add(i as u8))
}

#[test]
fn zero_sizes_get_a_unique_minimum_block() {
    let h = heap();
    let a = malloc::malloc(&h, 0).unwrap();
    let b = malloc::calloc(&h, 0, 8).unwrap();
    assert_ne!(a, b);
    assert_eq!(malloc::usable_size(&h, a.as_ptr()), Ok(MIN_ALIGN));
    // SAFETY: live blocks, freed once.
    unsafe {
        malloc::free(&h, a.as_ptr()).unwrap();
        malloc::free(&h, b.as_ptr()).unwrap();
        malloc::free(&h, core::ptr::null_mut()).unwrap();
    }
    assert_eq!(h.stats().live_allocations(), 0);
}

#[test]
fn impossible_requests_are_out_of_memory_and_bad_alignments_invalid() {
    let h = heap();
    for size in [usize::MAX, isize::MAX as usize, usize::MAX / 4, 257 << 20] {
        assert_eq!(malloc::malloc(&h, size), Err(CError::OutOfMemory), "{size}");
        assert_eq!(
            malloc::aligned_alloc(&h, 64, size),
            Err(CError::OutOfMemory)
        );
    }
    assert_eq!(
        malloc::calloc(&h, usize::MAX / 2 + 1, 2),
        Err(CError::OutOfMemory)
    );
    assert_eq!(
        malloc::calloc(&h, 1 << (usize::BITS / 2 + 1), 1 << (usize::BITS / 2 + 1)),
        Err(CError::OutOfMemory)
    );
    for align in [0, 3, 24, 4097, usize::MAX] {
        assert_eq!(
            malloc::aligned_alloc(&h, align, 16),
            Err(CError::BadAlignment)
        );
    }
    assert_eq!(CError::OutOfMemory.errno(), 12);
    assert_eq!(CError::BadAlignment.errno(), 22);
    assert_eq!(h.stats().live_allocations(), 0);
    h.check().unwrap();
}

#[test]
fn realloc_keeps_contents_across_sizes_alignments_and_direct_mappings() {
    let h = heap();
    for align in [16, 256, 4096, 1 << 20] {
        let p = malloc::aligned_alloc(&h, align, 100).unwrap();
        assert_eq!(p.as_ptr().addr() % align, 0);
        fill(p.as_ptr(), 100, 7);
        let mut p = p.as_ptr();
        let mut n = 100;
        // Up through a direct mapping (larger than a 64 MiB chunk) and back down; 5000 ->
        // 2000 is a chunk block above 4 KiB shrunk to a small one (it moves).
        for m in [1000, 5000, 2000, 1 << 20, 70 << 20, 3000, 17] {
            // SAFETY: `p` is live and used by nobody else.
            let q = unsafe { malloc::realloc(&h, p, m) }.unwrap().unwrap();
            assert!(filled(q.as_ptr(), n.min(m), 7));
            assert!(malloc::usable_size(&h, q.as_ptr()).unwrap() >= m);
            fill(q.as_ptr(), m, 7);
            (p, n) = (q.as_ptr(), m);
        }
        // SAFETY: as above; size 0 frees it.
        assert_eq!(unsafe { malloc::realloc(&h, p, 0) }, Ok(None));
        assert_eq!(
            malloc::usable_size(&h, p),
            Err(CError::BadPointer(FreeError::DoubleFree))
        );
    }
    // SAFETY: null allocates.
    let p = unsafe { malloc::realloc(&h, core::ptr::null_mut(), 10) }
        .unwrap()
        .unwrap();
    // SAFETY: live, freed once.
    unsafe { malloc::free(&h, p.as_ptr()) }.unwrap();
    assert_eq!(h.stats().live_allocations(), 0);
    h.check().unwrap();
}

#[test]
fn calloc_zeroes_a_reused_dirty_block() {
    let h = heap();
    for n in [1, 100, 600, 4096, 100_000] {
        let d = malloc::malloc(&h, n).unwrap();
        // SAFETY: a live block of `n` bytes.
        unsafe { d.as_ptr().cast::<u8>().write_bytes(0xEE, n) };
        // SAFETY: live, freed once.
        unsafe { malloc::free(&h, d.as_ptr()) }.unwrap();
        let c = malloc::calloc(&h, n, 1).unwrap();
        // SAFETY: a live block of `n` bytes.
        let s = unsafe { core::slice::from_raw_parts(c.as_ptr().cast::<u8>(), n) };
        assert!(s.iter().all(|&b| b == 0), "{n}");
        // SAFETY: live, freed once.
        unsafe { malloc::free(&h, c.as_ptr()) }.unwrap();
    }
}

#[test]
fn bad_pointers_are_refused_and_change_nothing() {
    let h = heap();
    let p = malloc::malloc(&h, 1000).unwrap().as_ptr();
    fill(p, 1000, 3);
    let before = h.stats();
    let mut local = 0u64;
    let bad: [*mut c_void; 4] = [
        p.wrapping_byte_add(16),
        p.wrapping_byte_add(1),
        (&raw mut local).cast(),
        core::ptr::without_provenance_mut(64),
    ];
    for b in bad {
        // SAFETY: refused pointers are detected and nothing is touched.
        let freed = unsafe { malloc::free(&h, b) };
        assert!(matches!(freed, Err(CError::BadPointer(_))));
        // SAFETY: as above.
        let moved = unsafe { malloc::realloc(&h, b, 10) };
        assert!(matches!(moved, Err(CError::BadPointer(_))));
        assert!(matches!(
            malloc::usable_size(&h, b),
            Err(CError::BadPointer(_))
        ));
        assert_eq!(CError::BadPointer(FreeError::Foreign).errno(), 22);
    }
    let after = h.stats();
    assert_eq!(after.heap.frees, before.heap.frees);
    assert_eq!(after.heap.free_bytes, before.heap.free_bytes);
    assert_eq!(after.live_allocations(), 1);
    assert!(filled(p, 1000, 3));
    h.check().unwrap();
    // A failed growth leaves the block where it was, contents and all.
    // SAFETY: `p` is live.
    let grown = unsafe { malloc::realloc(&h, p, usize::MAX / 4) };
    assert_eq!(grown, Err(CError::OutOfMemory));
    assert!(filled(p, 1000, 3));
    // SAFETY: live, freed once; then a double free, refused.
    unsafe {
        malloc::free(&h, p).unwrap();
        assert_eq!(
            malloc::free(&h, p),
            Err(CError::BadPointer(FreeError::DoubleFree))
        );
    }
    h.check().unwrap();
}

/// `realloc` asks the heap for the block's size and resizes a small block under the same
/// lock: a block grows in place into its buddy just freed, a run (compact configuration)
/// followed by a live run moves, contents kept either way; every refusal is the pointer's
/// before it is the size's, and changes nothing.
#[test]
fn realloc_checks_the_pointer_then_resizes_small_blocks_in_place_or_moving() {
    let h = BuddyAlloc::with_config(Config::new().memory_limit(256 << 20).compact(true));
    // Two 128-byte blocks, buddies; the right one freed (it waits in the deferred cache).
    let a = malloc::malloc(&h, 100).unwrap().as_ptr();
    let b = malloc::malloc(&h, 100).unwrap().as_ptr();
    assert_eq!(b.addr(), a.addr() + 128, "lowest address first: buddies");
    fill(a, 100, 1);
    // SAFETY: live, freed once.
    unsafe { malloc::free(&h, b) }.unwrap();
    // SAFETY: `a` is live and used by nobody else.
    let a2 = unsafe { malloc::realloc(&h, a, 200) }
        .unwrap()
        .unwrap()
        .as_ptr();
    assert_eq!(a2, a, "grown in place into the freed buddy");
    assert_eq!(malloc::usable_size(&h, a2), Ok(256));
    assert!(filled(a2, 100, 1));

    // Two runs of one size lie end to end: the first cannot grow in place, so it moves.
    let r = malloc::malloc(&h, 600).unwrap().as_ptr();
    let s = malloc::malloc(&h, 600).unwrap().as_ptr();
    let run = malloc::usable_size(&h, r).unwrap();
    assert!(
        (600..1024).contains(&run),
        "an exact-fit run, not a 1 KiB block: {run}"
    );
    assert_eq!(s.addr(), r.addr() + run, "runs of one size lie end to end");
    fill(r, 600, 2);
    fill(s, 600, 3);
    // SAFETY: `r` is live and used by nobody else; nobody uses it after this call.
    let r2 = unsafe { malloc::realloc(&h, r, 1200) }
        .unwrap()
        .unwrap()
        .as_ptr();
    assert_ne!(r2, r);
    assert!(filled(r2, 600, 2));
    assert!(filled(s, 600, 3));
    assert!(malloc::usable_size(&h, r2).unwrap() >= 1200);
    assert_eq!(
        malloc::usable_size(&h, r),
        Err(CError::BadPointer(FreeError::DoubleFree))
    );

    // Refusals: the pointer first, then the size; none changes anything.
    let before = h.stats();
    for size in [0, 10, 5000, usize::MAX] {
        // SAFETY: `r` is freed: refused, nothing touched.
        let got = unsafe { malloc::realloc(&h, r, size) };
        assert_eq!(
            got,
            Err(CError::BadPointer(FreeError::DoubleFree)),
            "{size}"
        );
        // SAFETY: an interior pointer: refused, nothing touched.
        let got = unsafe { malloc::realloc(&h, s.wrapping_byte_add(32), size) };
        assert!(matches!(got, Err(CError::BadPointer(_))), "{size}");
    }
    let after = h.stats();
    assert_eq!(after.heap.frees, before.heap.frees);
    assert_eq!(after.heap.free_bytes, before.heap.free_bytes);
    assert_eq!(after.heap.failed_requests, before.heap.failed_requests);
    assert!(filled(s, 600, 3));
    // A good pointer with a size no heap serves: out of memory, counted, block untouched.
    // SAFETY: `s` is live.
    let got = unsafe { malloc::realloc(&h, s, usize::MAX) };
    assert_eq!(got, Err(CError::OutOfMemory));
    assert_eq!(
        h.stats().heap.failed_requests,
        before.heap.failed_requests + 1
    );
    assert!(filled(s, 600, 3));
    // SAFETY: live blocks, freed once.
    unsafe {
        malloc::free(&h, a2).unwrap();
        malloc::free(&h, r2).unwrap();
        malloc::free(&h, s).unwrap();
    }
    assert_eq!(h.stats().live_allocations(), 0);
    h.check().unwrap();
}
