//! The core guarantees that are not about one kind of input: bounded work per operation (no
//! scan of anything whose length grows with the heap), and no allocation on any path.
//!
//! Work is counted in metadata words touched (feature `op-count`), so the test is exact and
//! deterministic, not timed.

mod common;

use buddy_core::{__word_ops, Config, Heap};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts allocations made by this thread while armed.
struct Counting;
thread_local! {
    /// Armed on the thread under test only (tests run in parallel).
    static ARMED: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to System.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Most words one call touched, over a history built to be as bad as it gets for a buddy
/// allocator: the heap filled with minimum blocks, every other one freed (n/2 holes), then
/// requests that cannot be met, frees that merge, frees refused, and reallocs.
fn worst_words_per_call(len: usize, config: Config) -> (usize, u32) {
    let mut h = common::heap(len, 0, config);
    let orders = h.stats().max_order - h.stats().min_order + 1;
    let mut live = Vec::new();
    while let Ok(p) = h.alloc(l(16, 16)) {
        live.push(p);
    }
    let mut worst = 0;
    let mut measure = |f: &mut dyn FnMut()| {
        let before = __word_ops();
        f();
        worst = worst.max(__word_ops() - before);
    };
    let mut odd = Vec::new();
    for (i, p) in live.into_iter().enumerate() {
        if i % 2 == 0 {
            // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
            measure(&mut || assert_eq!(unsafe { h.free(p) }, Ok(16)));
        } else {
            odd.push(p);
        }
    }
    h.flush();
    for _ in 0..50 {
        measure(&mut || assert!(h.alloc(l(64, 64)).is_err()));
        // An exact-fit run with `Config::compact()`: the cache, placement, then a split.
        measure(&mut || assert!(h.alloc(l(600, 8)).is_err()));
        let interior = NonNull::new(odd[0].as_ptr().wrapping_add(8)).unwrap();
        // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
        measure(&mut || assert!(unsafe { h.free(interior) }.is_err()));
    }
    for p in odd.drain(..) {
        // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
        measure(&mut || assert_eq!(unsafe { h.free(p) }, Ok(16)));
    }
    for size in [16, 96, 4000, 1000, 2000] {
        let mut p = h.alloc(l(size, 16)).unwrap();
        // SAFETY: the pointer is a live allocation of this heap, with this old layout.
        measure(&mut || p = unsafe { h.realloc(p, l(size, 16), size * 3 + 16) }.unwrap());
        // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
        measure(&mut || assert!(unsafe { h.free(p) }.is_ok()));
    }
    (worst, orders)
}

/// The word counter is global: the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
#[cfg_attr(
    miri,
    ignore = "fills a 4 MiB heap block by block: minutes under Miri; counts are the same"
)]
fn work_per_call_grows_with_log_n_not_n() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for config in [Config::new(), Config::compact()] {
        let (small, small_orders) = worst_words_per_call(1 << 16, config);
        let (big, big_orders) = worst_words_per_call(1 << 22, config);
        // 64x more blocks: a scan would cost 64x more; a log-time walk a few more levels.
        eprintln!(
            "worst words per call ({config:?}): {small} at 64 KiB ({small_orders} orders), \
             {big} at 4 MiB ({big_orders} orders)"
        );
        assert!(
            big <= small + 24 * (big_orders - small_orders) as usize,
            "{small} -> {big}"
        );
        assert!(
            big <= 24 * big_orders as usize,
            "{big} words for {big_orders} orders"
        );
    }
}

#[test]
fn no_path_allocates() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (p, len) = common::region(1 << 18, 0);
    let meta: &'static mut [u64] =
        Box::leak(vec![0u64; buddy_core::metadata_words(1 << 18, 16)].into_boxed_slice());
    let (q, qlen) = common::region(1 << 18, 0);
    let mut h = Heap::new();
    ARMED.with(|a| a.set(true));
    // SAFETY: the region is fresh leaked memory that only this heap uses.
    unsafe { h.add_region(p, len) }.unwrap();
    // SAFETY: the region is fresh leaked memory that only this heap uses.
    unsafe { h.add_region_with_metadata(q, qlen, meta) }.unwrap();
    let mut live: [Option<NonNull<u8>>; 64] = [None; 64];
    let mut x = 12345u64;
    for i in 0..if cfg!(miri) { 300 } else { 20_000usize } {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = (x % 64) as usize;
        let size = 1 + (x >> 8) as usize % 3000;
        match live[slot].take() {
            None => live[slot] = h.alloc(l(size, 16)).ok(),
            Some(p) if i % 3 == 0 => {
                // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
                let r = unsafe { h.free(p) };
                assert!(r.is_ok());
                // SAFETY: `free` checks its pointer: a live block is freed, anything else is refused (what the test checks).
                assert!(unsafe { h.free(p) }.is_err());
            }
            Some(p) => {
                let sz = h.usable_size(p).unwrap();
                // SAFETY: the pointer is a live allocation of this heap, with this old layout.
                live[slot] = unsafe { h.realloc(p, l(sz, 16), size) }.ok().or(Some(p));
            }
        }
        let _ = h.alloc(l(1 << 30, 16));
        let _ = h.alloc(l(0, 16));
    }
    h.flush();
    let _ = h.stats();
    ARMED.with(|a| a.set(false));
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "the heap allocated");
    h.check().unwrap();
}
