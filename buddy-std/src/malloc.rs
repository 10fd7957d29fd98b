//! The C allocation functions — `malloc`, `calloc`, `realloc`, `free`, the aligned ones and
//! `malloc_usable_size` — as Rust functions over any [`BuddyAlloc`], with the C standard's
//! semantics (feature `malloc`). The C ABI (`buddy_alloc` & co., feature `capi`) and the
//! drop-in `malloc` library (`buddy-std/malloc`, `libbuddy_malloc.so`) are thin layers over
//! these; this module exports no symbol itself, so enabling the feature changes nothing for a
//! Rust program's own `malloc`.
//!
//! ```
//! use buddy_std::BuddyAlloc;
//! use buddy_std::malloc::{self, CError};
//!
//! static HEAP: BuddyAlloc = BuddyAlloc::new();
//!
//! let p = malloc::malloc(&HEAP, 100)?;
//! assert_eq!(malloc::usable_size(&HEAP, p.as_ptr()), Ok(128));
//! // SAFETY: p is live; nobody uses it after this.
//! let q = unsafe { malloc::realloc(&HEAP, p.as_ptr(), 1000) }?.expect("not freed: size > 0");
//! // SAFETY: q is live; nobody uses it after this.
//! unsafe { malloc::free(&HEAP, q.as_ptr()) }?;
//! // SAFETY: a wrong pointer is detected and changes nothing (that is what is shown).
//! assert!(matches!(unsafe { malloc::free(&HEAP, q.as_ptr()) }, Err(CError::BadPointer(_))));
//! assert_eq!(malloc::calloc(&HEAP, usize::MAX, 2), Err(CError::OutOfMemory));
//! assert_eq!(malloc::aligned_alloc(&HEAP, 24, 100), Err(CError::BadAlignment));
//! # Ok::<(), CError>(())
//! ```
//!
//! # Semantics
//!
//! | call | result |
//! | --- | --- |
//! | `malloc(0)` | a unique minimum block (16 bytes), to be freed like any other |
//! | size too large, or `n * size` overflowing (`calloc`) | [`CError::OutOfMemory`] (`ENOMEM`) |
//! | alignment not a power of two (`aligned_alloc`) | [`CError::BadAlignment`] (`EINVAL`) |
//! | `free(NULL)` | nothing |
//! | `free` / `realloc` / `usable_size` of a pointer that is not the start of a live block (double free, interior or foreign pointer) | [`CError::BadPointer`] (`EINVAL`); nothing changes |
//! | `realloc(NULL, n)` | `malloc(n)` |
//! | `realloc(p, 0)` | frees `p`, returns no block (glibc's behaviour) |
//! | `realloc` that cannot grow | [`CError::OutOfMemory`]; the old block is untouched |
//!
//! Every block is aligned to at least [`MIN_ALIGN`] (16 bytes, `alignof(max_align_t)` on
//! x86-64 and AArch64 Linux), and usable up to [`usable_size`] (the whole buddy block).
//!
//! # Why this module has `unsafe`
//!
//! It is the edge where C pointers come in: `free` and `realloc` take a raw pointer that only
//! the caller can vouch for, and `errno`, `write(2)` and `pthread_atfork` are C functions.
//! Everything else goes through [`BuddyAlloc`]'s checked, size-less API; nothing here
//! allocates, formats to the heap or panics.

use core::alloc::Layout;
use core::ffi::{c_int, c_void};
use core::fmt;
use core::ptr::NonNull;
use std::alloc::GlobalAlloc;

use buddy_core::FreeError;
use buddy_mmap::{Errno, Os};

use crate::{BuddyAlloc, Stats};

/// The smallest alignment of every block: `alignof(max_align_t)` on 64-bit Linux, and the
/// default minimum block of [`Config`](crate::Config).
pub const MIN_ALIGN: usize = 16;

/// Why a C allocation function failed. [`errno`](CError::errno) gives the C error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CError {
    /// No memory for the request, or a size too large to ever be served (`ENOMEM`).
    OutOfMemory,
    /// The alignment is not a power of two, or not one the function accepts (`EINVAL`).
    BadAlignment,
    /// The pointer is not the start of a live block of this allocator (`EINVAL`): nothing
    /// was changed.
    BadPointer(FreeError),
}

impl CError {
    /// The `errno` value C reports this with: `ENOMEM` or `EINVAL`.
    pub fn errno(self) -> c_int {
        match self {
            CError::OutOfMemory => Errno::NOMEM.raw_os_error(),
            CError::BadAlignment | CError::BadPointer(_) => Errno::INVAL.raw_os_error(),
        }
    }
}

impl fmt::Display for CError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CError::OutOfMemory => f.write_str("out of memory"),
            CError::BadAlignment => f.write_str("alignment is not a power of two"),
            CError::BadPointer(e) => write!(f, "bad pointer: {e}"),
        }
    }
}

impl core::error::Error for CError {}

/// The layout of a C request of `size` bytes aligned to `align` (a power of two): at least
/// one byte (`malloc(0)` gets a minimum block) and [`MIN_ALIGN`].
fn c_layout(size: usize, align: usize) -> Result<Layout, CError> {
    Layout::from_size_align(size.max(1), align.max(MIN_ALIGN)).map_err(|_| CError::OutOfMemory)
}

/// [`c_layout`] for a request to `heap`: a size too large for any layout is refused and
/// counted as a failed request (`Stats::failed_requests` counts every NULL a request for
/// memory gets, as `buddy_stats` documents).
fn request_layout<O: Os>(
    heap: &BuddyAlloc<O>,
    size: usize,
    align: usize,
) -> Result<Layout, CError> {
    c_layout(size, align).inspect_err(|_| heap.count_refused_request())
}

/// Refuses a request for memory before it reaches `heap` (a size that overflows, a bad
/// alignment), counting it as a failed request as the heap's own refusals are. For C faces
/// built on this module whose functions check arguments of their own (`pvalloc`'s rounding,
/// `memalign`'s alignment): every NULL they return for a request is then counted.
///
/// ```
/// use buddy_std::BuddyAlloc;
/// use buddy_std::malloc::{self, CError};
/// static HEAP: BuddyAlloc = BuddyAlloc::new();
/// assert_eq!(malloc::refuse(&HEAP, CError::BadAlignment), CError::BadAlignment);
/// assert_eq!(HEAP.stats().heap.failed_requests, 1);
/// ```
pub fn refuse<O: Os>(heap: &BuddyAlloc<O>, e: CError) -> CError {
    heap.count_refused_request();
    e
}

/// `malloc(size)`: a block of at least `size` bytes, aligned to [`MIN_ALIGN`]; `size` 0 gets a
/// minimum block.
///
/// # Errors
/// [`CError::OutOfMemory`].
pub fn malloc<O: Os>(heap: &BuddyAlloc<O>, size: usize) -> Result<NonNull<c_void>, CError> {
    let layout = request_layout(heap, size, MIN_ALIGN)?;
    // SAFETY: `layout` has a non-zero size.
    NonNull::new(unsafe { heap.alloc(layout) }.cast()).ok_or(CError::OutOfMemory)
}

/// `calloc(n, size)`: a zero-filled block for `n` elements of `size` bytes.
///
/// # Errors
/// [`CError::OutOfMemory`], also when `n * size` overflows.
pub fn calloc<O: Os>(
    heap: &BuddyAlloc<O>,
    n: usize,
    size: usize,
) -> Result<NonNull<c_void>, CError> {
    let bytes = n
        .checked_mul(size)
        .ok_or_else(|| refuse(heap, CError::OutOfMemory))?;
    let layout = request_layout(heap, bytes, MIN_ALIGN)?;
    // SAFETY: `layout` has a non-zero size.
    NonNull::new(unsafe { heap.alloc_zeroed(layout) }.cast()).ok_or(CError::OutOfMemory)
}

/// `aligned_alloc(align, size)`: a block of at least `size` bytes aligned to `align`, a power
/// of two (smaller than [`MIN_ALIGN`] gets `MIN_ALIGN`). C11's rule that `size` be a multiple
/// of `align` is not enforced (C17 dropped it; glibc does not either).
///
/// # Errors
/// [`CError::BadAlignment`] if `align` is not a power of two (0 included);
/// [`CError::OutOfMemory`] if there is no memory, or `align` exceeds the chunk size.
pub fn aligned_alloc<O: Os>(
    heap: &BuddyAlloc<O>,
    align: usize,
    size: usize,
) -> Result<NonNull<c_void>, CError> {
    if !align.is_power_of_two() {
        return Err(refuse(heap, CError::BadAlignment));
    }
    let layout = request_layout(heap, size, align)?;
    // SAFETY: `layout` has a non-zero size.
    NonNull::new(unsafe { heap.alloc(layout) }.cast()).ok_or(CError::OutOfMemory)
}

/// `free(ptr)`: frees the block at `ptr`; null does nothing. A pointer that is not the start
/// of a live block of `heap` is refused and nothing changes.
///
/// # Errors
/// [`CError::BadPointer`] with the reason (double free, interior or foreign pointer).
///
/// # Safety
/// If `ptr` is the start of a live block of `heap`, nobody uses that block any more. (A wrong
/// pointer is detected; a right one freed while still in use is not.)
pub unsafe fn free<O: Os>(heap: &BuddyAlloc<O>, ptr: *mut c_void) -> Result<(), CError> {
    let Some(p) = NonNull::new(ptr.cast::<u8>()) else {
        return Ok(());
    };
    // SAFETY: the caller's contract is `BuddyAlloc::free`'s.
    unsafe { heap.free(p) }
        .map(drop)
        .map_err(CError::BadPointer)
}

/// `realloc(ptr, size)`: the block at `ptr` resized to `size` bytes, its contents kept up to
/// the smaller size; in place when the buddy allows, else moved. `ptr` null is `malloc(size)`;
/// `size` 0 frees `ptr` and returns `None` (glibc's behaviour).
///
/// # Errors
/// [`CError::BadPointer`] if `ptr` is not null and not the start of a live block (nothing
/// changes); [`CError::OutOfMemory`] if no block fits (the old block is untouched).
///
/// # Safety
/// If `ptr` is the start of a live block of `heap`, nobody else uses it during the call, and
/// on success nobody uses `ptr` afterwards (unless it is returned).
pub unsafe fn realloc<O: Os>(
    heap: &BuddyAlloc<O>,
    ptr: *mut c_void,
    size: usize,
) -> Result<Option<NonNull<c_void>>, CError> {
    let Some(p) = NonNull::new(ptr.cast::<u8>()) else {
        return malloc(heap, size).map(Some);
    };
    if size == 0 {
        // SAFETY: the caller gives `p` up; `free` checks it.
        unsafe { free(heap, ptr) }?;
        return Ok(None);
    }
    let Ok(new) = c_layout(size, MIN_ALIGN) else {
        // A bad pointer is reported before a size no heap can serve.
        heap.usable_size(p).map_err(CError::BadPointer)?;
        return Err(refuse(heap, CError::OutOfMemory));
    };
    // SAFETY: the caller's contract is `realloc_unsized`'s; `new` is not zero-sized and
    // aligned to `MIN_ALIGN`, the minimum block.
    match unsafe { heap.realloc_unsized(p, new) } {
        Ok(Some(q)) => Ok(Some(q.cast())),
        Ok(None) => Err(CError::OutOfMemory),
        Err(e) => Err(CError::BadPointer(e)),
    }
}

/// `malloc_usable_size(ptr)`: the bytes usable in the block at `ptr` (at least what was
/// requested); 0 for null.
///
/// # Errors
/// [`CError::BadPointer`] if `ptr` is not null and not the start of a live block.
pub fn usable_size<O: Os>(heap: &BuddyAlloc<O>, ptr: *const c_void) -> Result<usize, CError> {
    match NonNull::new(ptr.cast::<u8>().cast_mut()) {
        None => Ok(0),
        Some(p) => heap.usable_size(p).map_err(CError::BadPointer),
    }
}

/// The statistics of a heap in C's shape: `struct buddy_stats` of `buddy_alloc.h`, field for
/// field (every field a `size_t`, so the layout has no padding to disagree about).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuddyStats {
    /// Free blocks per order: `free_blocks[k]` counts free blocks of `2^k` bytes.
    pub free_blocks: [usize; 64],
    /// The smallest block's order.
    pub min_order: usize,
    /// The largest block's order (a chunk's).
    pub max_order: usize,
    /// Bytes in free blocks.
    pub free_bytes: usize,
    /// Free blocks waiting in the deferred-coalescing caches (counted as free).
    pub cached_blocks: usize,
    /// Bytes the heaps manage.
    pub managed_bytes: usize,
    /// Bytes of metadata (bitmaps), kept outside the managed memory.
    pub metadata_bytes: usize,
    /// Live allocations, direct mappings included.
    pub live_allocations: usize,
    /// Bytes handed out to live allocations, direct mappings included.
    pub allocated_bytes: usize,
    /// Highest `allocated_bytes` of each chunk, summed.
    pub high_water_bytes: usize,
    /// Bytes requested by all successful allocations so far.
    pub requested_bytes_total: usize,
    /// Bytes handed out for them (requested plus rounding).
    pub allocated_bytes_total: usize,
    /// Successful allocations so far (of blocks up to a chunk).
    pub allocations: usize,
    /// Frees so far (of blocks up to a chunk).
    pub frees: usize,
    /// Requests refused.
    pub failed_requests: usize,
    /// Size of the largest free block.
    pub largest_free_block: usize,
    /// Regions (chunks) in the heaps.
    pub regions: usize,
    /// The memory limit.
    pub limit_bytes: usize,
    /// The chunk size.
    pub chunk_bytes: usize,
    /// Chunks in use.
    pub chunks: usize,
    /// Chunks the reserved range can hold.
    pub chunk_capacity: usize,
    /// Virtual memory reserved.
    pub reserved_bytes: usize,
    /// Bytes counted against the limit.
    pub committed_bytes: usize,
    /// Live allocations larger than a chunk, each a mapping of its own.
    pub direct_allocations: usize,
    /// Bytes of those mappings.
    pub direct_bytes: usize,
    /// `madvise` calls that gave freed memory back.
    pub purges: usize,
    /// Bytes given back that way.
    pub purged_bytes: usize,
    /// Purges the OS refused.
    pub purge_failures: usize,
    /// `mmap` calls the OS refused.
    pub map_failures: usize,
}

/// The number of `size_t` fields in [`BuddyStats`]; the header checks the same number.
pub const BUDDY_STATS_WORDS: usize = 64 + 28;

const _: () = assert!(
    core::mem::size_of::<BuddyStats>() == BUDDY_STATS_WORDS * core::mem::size_of::<usize>()
);

impl From<&Stats> for BuddyStats {
    fn from(s: &Stats) -> BuddyStats {
        let (h, o) = (&s.heap, &s.os);
        BuddyStats {
            free_blocks: h.free_blocks,
            min_order: h.min_order as usize,
            max_order: h.max_order as usize,
            free_bytes: h.free_bytes,
            cached_blocks: h.cached_blocks,
            managed_bytes: h.managed_bytes,
            metadata_bytes: h.metadata_bytes,
            live_allocations: s.live_allocations(),
            allocated_bytes: s.allocated_bytes(),
            high_water_bytes: h.high_water_bytes,
            requested_bytes_total: h.requested_bytes_total,
            allocated_bytes_total: h.allocated_bytes_total,
            allocations: h.allocations,
            frees: h.frees,
            failed_requests: h.failed_requests,
            largest_free_block: h.largest_free_block,
            regions: h.regions,
            limit_bytes: o.limit_bytes,
            chunk_bytes: o.chunk_bytes,
            chunks: o.chunks,
            chunk_capacity: o.chunk_capacity,
            reserved_bytes: o.reserved_bytes,
            committed_bytes: o.committed_bytes,
            direct_allocations: o.direct_allocations,
            direct_bytes: o.direct_bytes,
            purges: o.purges,
            purged_bytes: o.purged_bytes,
            purge_failures: o.purge_failures,
            map_failures: o.map_failures,
        }
    }
}

mod c {
    use core::ffi::c_int;

    unsafe extern "C" {
        pub(super) fn pthread_atfork(
            prepare: Option<unsafe extern "C" fn()>,
            parent: Option<unsafe extern "C" fn()>,
            child: Option<unsafe extern "C" fn()>,
        ) -> c_int;
    }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(value: c_int) {
    crate::line::set_errno(value);
}

/// `pthread_atfork(prepare, parent, child)`: registers fork handlers, typically three
/// `extern "C"` functions calling a static allocator's
/// [`fork_prepare`](BuddyAlloc::fork_prepare), [`fork_parent`](BuddyAlloc::fork_parent)
/// and [`fork_child`](BuddyAlloc::fork_child).
///
/// glibc's `pthread_atfork` may allocate through `malloc`: do not call it while holding one
/// of the allocator's locks, nor from inside an allocator that *is* `malloc` before the
/// process has finished starting (a library constructor is the place).
///
/// # Errors
/// The error number `pthread_atfork` returned (`ENOMEM`).
pub fn register_fork_handlers(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> Result<(), c_int> {
    // SAFETY: three valid function pointers; glibc keeps them for the process's life.
    match unsafe { c::pthread_atfork(Some(prepare), Some(parent), Some(child)) } {
        0 => Ok(()),
        e => Err(e),
    }
}

/// A line of text built on the stack (truncated at 256 bytes) and written with one `write(2)`:
/// for messages from inside an allocator, which must not allocate.
///
/// ```
/// use core::fmt::Write;
/// let mut line = buddy_std::malloc::Line::new();
/// write!(line, "freed {:#x}", 0x1000).unwrap();
/// assert_eq!(line.as_bytes(), b"freed 0x1000");
/// ```
pub use crate::line::Line;
