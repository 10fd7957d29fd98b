//! A binary buddy allocator over caller-provided memory: `no_std`, no `alloc`, no OS.
//!
//! Hand it a `static` buffer, several RAM banks, or physical page frames it must never touch,
//! and it hands out blocks aligned to their size in `O(log n)` worst-case time.
//!
//! ```
//! use buddy_core::Heap;
//! use core::alloc::Layout;
//!
//! static mut RAM: [u8; 1 << 16] = [0; 1 << 16];
//! let mut heap = Heap::new();
//! // SAFETY: RAM is used by nothing but this heap.
//! unsafe { heap.add_region((&raw mut RAM).cast(), 1 << 16) }.unwrap();
//!
//! let p = heap.alloc(Layout::from_size_align(128, 16).unwrap()).unwrap();
//! // SAFETY: p is a live allocation of this heap. `free` needs no size, like C's.
//! unsafe { heap.free(p) }.unwrap();
//! ```
//!
//! # Guarantees
//!
//! - **Metadata outside the managed memory.** All state is bitmaps in a metadata slice (given
//!   by the caller, or carved off the front of the region). The heap never reads or writes a
//!   byte it hands out, so it can manage page frames and device memory, and a buffer overflow
//!   into a free block cannot corrupt it.
//! - **Sized statically**: [`metadata_words`] is a `const fn`.
//! - **Bounded time**: alloc, dealloc, size-less free and realloc are `O(log n)` in minimum
//!   blocks, worst case. Free blocks are found with one `trailing_zeros` per summary level;
//!   no list is ever scanned.
//! - **Any region**: any start and length, up to [`MAX_REGIONS`] disjoint regions per heap.
//!   A block of order `k` is aligned to `2^k` in absolute addresses.
//! - **Layout honoured**: any power-of-two alignment up to the largest block; size 0 and
//!   overflowing sizes are errors.
//! - **Checked free**: [`Heap::free`] finds the size in the metadata and refuses double,
//!   foreign and interior frees without changing anything.
//! - **Never panics, never allocates** on the alloc and free paths.
//! - **Statistics** ([`Stats`]) in the shape of `/proc/buddyinfo`, and more.
//!
//! # How it works
//!
//! Per order, a bitmap of free blocks with 64-ary summaries above it, and a bitmap of split
//! blocks; a word whose bit `k` says "order `k` has a free block" gives the smallest fitting
//! order in one instruction. Freed small blocks wait in a small per-order cache before they
//! are merged (deferred coalescing, like Linux's per-CPU page lists); a request never fails
//! while cached blocks could serve it. Requests above 4 KiB (configurable) that are not a power
//! of two take an exact-fit run of at most 4 blocks (configurable; 5000 bytes take
//! 5120 = 4096 + 1024, not 8192) and give the rest of the block back at once; a run fills the free space
//! beside a free block of its largest piece before it splits a larger block, and freed runs
//! wait in a cache of their own. [`Config::compact`] packs tighter (exact fit above 512
//! bytes), at some cost in time.
//!
//! # Features
//!
//! - `spin` (default): [`LockedHeap`], a spin-locked `GlobalAlloc`.
//! - `log`: logs splits and merges (`trace`), cache flushes (`debug`), refused requests and
//!   frees (`warn`) through the `log` crate. A logger that allocates must not be backed by the
//!   heap it logs.
#![no_std]
#![warn(missing_docs)]

mod bitmap;
mod cache;
mod error;
mod heap;
#[cfg(feature = "spin")]
mod locked;
mod log;
mod order;
mod stats;
mod tree;

pub(crate) use log::{debug, log_warn, trace};

pub use cache::CACHE_SLOTS;
pub use error::{AllocError, CheckError, FreeError, RegionError};
pub use heap::{
    BlockState, Config, DEFAULT_EXACT_FIT_ABOVE, DEFAULT_EXACT_FIT_PIECES, DEFAULT_MIN_BLOCK, Heap,
    MAX_REGIONS, metadata_words,
};
#[cfg(feature = "spin")]
pub use locked::LockedHeap;
pub use stats::Stats;

/// Metadata words read or written so far by all heaps (feature `op-count`; for the tests that
/// prove the `O(log n)` bound, not for users).
#[cfg(feature = "op-count")]
#[doc(hidden)]
pub fn __word_ops() -> usize {
    bitmap::WORD_OPS.load(core::sync::atomic::Ordering::Relaxed)
}
