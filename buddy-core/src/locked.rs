//! A spin-locked [`Heap`] that implements [`GlobalAlloc`], for `#[global_allocator]` in a kernel.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use crate::{Config, Heap};

/// A [`Heap`] behind a spin lock: `#[global_allocator]` for kernels and firmware.
///
/// ```
/// use buddy_core::LockedHeap;
/// use core::alloc::{GlobalAlloc, Layout};
///
/// static HEAP: LockedHeap = LockedHeap::new();
/// static mut ARENA: [u8; 1 << 16] = [0; 1 << 16];
///
/// // SAFETY: ARENA is used by nothing else.
/// unsafe { HEAP.lock().add_region((&raw mut ARENA).cast(), 1 << 16) }.unwrap();
/// let l = Layout::from_size_align(64, 64).unwrap();
/// // SAFETY: valid non-zero layout; freed with the same layout.
/// unsafe {
///     let p = HEAP.alloc(l);
///     assert!(!p.is_null() && p as usize % 64 == 0);
///     HEAP.dealloc(p, l);
/// }
/// ```
///
/// The lock is a spin lock: never allocate from an interrupt handler that may have
/// interrupted an allocation on the same core.
pub struct LockedHeap(spin::Mutex<Heap>);

impl LockedHeap {
    /// An empty locked heap with the default [`Config`].
    ///
    /// ```
    /// use buddy_core::{Config, LockedHeap};
    /// static HEAP: LockedHeap = LockedHeap::new();
    /// let heap = HEAP.lock();
    /// assert_eq!((heap.regions(), heap.config()), (0, Config::new()));
    /// ```
    pub const fn new() -> LockedHeap {
        LockedHeap(spin::Mutex::new(Heap::new()))
    }

    /// An empty locked heap with `config`.
    ///
    /// ```
    /// use buddy_core::{Config, LockedHeap};
    /// use core::alloc::{GlobalAlloc, Layout};
    /// use core::ptr::NonNull;
    ///
    /// static FRAMES: LockedHeap = LockedHeap::with_config(Config::new().min_block(4096));
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    /// FRAMES.lock().add_region_from_slice(mem).unwrap();
    /// // SAFETY: a non-zero size.
    /// let p = NonNull::new(unsafe { FRAMES.alloc(Layout::new::<u8>()) }).unwrap();
    /// assert_eq!(FRAMES.lock().usable_size(p), Ok(4096)); // the configured minimum block
    /// ```
    pub const fn with_config(config: Config) -> LockedHeap {
        LockedHeap(spin::Mutex::new(Heap::with_config(config)))
    }

    /// Locks the heap (to add regions, read stats, or call it directly).
    ///
    /// ```
    /// use buddy_core::LockedHeap;
    /// use core::alloc::Layout;
    /// static HEAP: LockedHeap = LockedHeap::new();
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = HEAP.lock();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::new::<[u8; 100]>()).unwrap();
    /// assert_eq!(heap.stats().live_allocations, 1);
    /// // SAFETY: p is live and nothing uses it any more.
    /// assert_eq!(unsafe { heap.free(p) }, Ok(128));
    /// ```
    pub fn lock(&self) -> spin::MutexGuard<'_, Heap> {
        self.0.lock()
    }
}

impl Default for LockedHeap {
    fn default() -> Self {
        LockedHeap::new()
    }
}

// SAFETY: blocks come from `Heap::alloc`, which honours the layout's size and alignment and
// never hands out one byte twice; all access is serialised by the lock.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout`.
            unsafe { self.0.lock().dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return ptr::null_mut();
        };
        // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout`, and is live.
        unsafe { self.0.lock().realloc(p, layout, new_size) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}
