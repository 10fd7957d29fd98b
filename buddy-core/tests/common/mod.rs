//! Helpers shared by the integration tests: owned regions and a pattern checker.
#![allow(dead_code)]

use buddy_core::{Config, Heap};
use std::alloc::Layout;

/// A leaked, 4 KiB-aligned buffer of `len` bytes (plus `offset` to misalign it on purpose).
pub fn region(len: usize, offset: usize) -> (*mut u8, usize) {
    let layout = Layout::from_size_align(len + offset, 4096).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!p.is_null());
    // SAFETY: offset < len + offset.
    (unsafe { p.add(offset) }, len)
}

/// A heap over one fresh region of `len` bytes, metadata carved from it.
pub fn heap(len: usize, offset: usize, config: Config) -> Heap {
    let (p, len) = region(len, offset);
    let mut h = Heap::with_config(config);
    // SAFETY: the region is fresh, leaked and used only by this heap.
    unsafe { h.add_region(p, len) }.unwrap();
    h
}

/// The byte a live block holds at offset `i`: depends on the allocation's id.
pub fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ (i as u8)
}

/// Fills `[p, p + len)` with the pattern of `id`.
///
/// # Safety
/// The range is a live allocation.
pub unsafe fn fill(p: *mut u8, len: usize, id: u64) {
    for i in 0..len {
        // SAFETY: in range by the caller's promise.
        unsafe { p.add(i).write(pattern(id, i)) };
    }
}

/// Checks `[p, p + len)` still holds the pattern of `id`.
///
/// # Safety
/// The range is a live allocation.
pub unsafe fn intact(p: *const u8, len: usize, id: u64) -> bool {
    // SAFETY: in range by the caller's promise.
    (0..len).all(|i| unsafe { p.add(i).read() } == pattern(id, i))
}
