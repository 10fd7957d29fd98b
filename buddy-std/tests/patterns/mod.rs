//! Blocks that carry a pattern of their own: a test writes it when it gets a block and checks
//! it before it frees the block, so any byte the allocator (or another thread) touched shows.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout};

use buddy_mmap::Os;
use buddy_std::BuddyAlloc;

/// The byte block `id` holds at offset `i`.
pub fn pattern(id: usize, i: usize) -> u8 {
    ((id.wrapping_mul(0x9E37_79B9) >> 5) as u8).wrapping_add(i as u8) ^ (i >> 8) as u8
}

/// A live block: where, its layout, and whose pattern it holds.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub addr: usize,
    pub size: usize,
    pub align: usize,
    pub id: usize,
}

impl Block {
    /// Allocates `size` bytes aligned to `align` from `a` and fills them with the pattern of
    /// `id`; `None` if the allocator returned null.
    pub fn new<O: Os>(a: &BuddyAlloc<O>, size: usize, align: usize, id: usize) -> Option<Block> {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: a valid, non-zero layout.
        let p = unsafe { a.alloc(layout) };
        if p.is_null() {
            return None;
        }
        assert_eq!(p as usize % align, 0, "misaligned block");
        let b = Block {
            addr: p as usize,
            size,
            align,
            id,
        };
        // SAFETY: a fresh block of `size` bytes.
        unsafe { b.fill() };
        Some(b)
    }

    pub fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align).unwrap()
    }

    /// Writes the pattern of `self.id` over the block.
    ///
    /// # Safety
    /// The block is live and owned by the caller.
    pub unsafe fn fill(&self) {
        let p = self.addr as *mut u8;
        for i in 0..self.size {
            // SAFETY: in the block, by the caller's promise.
            unsafe { p.add(i).write(pattern(self.id, i)) };
        }
    }

    /// The offset of the first byte of the first `len` that does not hold the pattern.
    ///
    /// # Safety
    /// As [`fill`](Self::fill), and `len <= self.size`.
    pub unsafe fn first_bad(&self, len: usize) -> Option<usize> {
        let p = self.addr as *const u8;
        // SAFETY: in the block, by the caller's promise.
        (0..len).find(|&i| unsafe { p.add(i).read() } != pattern(self.id, i))
    }

    /// Panics unless the block still holds its pattern.
    ///
    /// # Safety
    /// As [`fill`](Self::fill).
    pub unsafe fn check(&self) {
        // SAFETY: the caller's promise.
        if let Some(i) = unsafe { self.first_bad(self.size) } {
            panic!("{self:?} overwritten at offset {i}");
        }
    }

    /// Checks the pattern, then frees the block.
    ///
    /// # Safety
    /// As [`fill`](Self::fill); the block is not used afterwards.
    pub unsafe fn free<O: Os>(self, a: &BuddyAlloc<O>) {
        // SAFETY: the caller's promise.
        unsafe {
            self.check();
            a.dealloc(self.addr as *mut u8, self.layout());
        }
    }
}

/// A small xorshift generator: tests stay reproducible without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
