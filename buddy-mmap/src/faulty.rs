//! [`FaultyOs`]: an [`Os`] wrapper that counts calls and refuses memory on demand.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use rustix::io::Errno;

use crate::os::{Os, SystemOs};

/// An [`Os`] that forwards to an inner one (by default [`SystemOs`]), counts every call, and
/// fails on demand — to test what code built on [`Region`](crate::Region) does when the OS
/// refuses memory.
///
/// Faults, each off by default:
/// - **map calls**: after `n` calls to `map`, every further call fails
///   ([`fail_map_after`](Self::fail_map_after), [`set_maps_left`](Self::set_maps_left));
/// - **byte budget**: a `map` fails if it would bring the bytes currently mapped through this
///   `FaultyOs` above a budget ([`byte_budget`](Self::byte_budget),
///   [`set_byte_budget`](Self::set_byte_budget)); unmapping gives the bytes back, like a memory
///   limit;
/// - **purge**: every `purge` fails, changing nothing ([`set_fail_purge`](Self::set_fail_purge)).
///
/// An injected failure returns the configured errno (`ENOMEM` unless changed with
/// [`with_errno`](Self::with_errno)) without calling the inner OS. The state is atomic, so one
/// `FaultyOs` can be a `static` shared by threads (`&FaultyOs` is an `Os` too); the counters use
/// relaxed ordering, exact once the threads that use them are joined.
///
/// ```
/// use buddy_mmap::{FaultyOs, Region};
///
/// static OS: FaultyOs = FaultyOs::new().fail_map_after(1);
///
/// let first = Region::reserve_in(1 << 20, &OS)?;
/// let second = Region::reserve_in(1 << 20, &OS).unwrap_err();
/// assert_eq!(second.errno(), Some(rustix::io::Errno::NOMEM));
/// assert_eq!((OS.map_calls(), OS.failed_maps(), OS.mapped_bytes()), (2, 1, 1 << 20));
/// drop(first);
/// assert_eq!((OS.unmap_calls(), OS.mapped_bytes()), (1, 0));
/// # Ok::<(), buddy_mmap::MmapError>(())
/// ```
#[derive(Debug)]
pub struct FaultyOs<O = SystemOs> {
    inner: O,
    errno: Errno,
    maps_left: AtomicUsize,
    budget: AtomicUsize,
    fail_purge: AtomicBool,
    mapped: AtomicUsize,
    map_calls: AtomicUsize,
    failed_maps: AtomicUsize,
    unmap_calls: AtomicUsize,
    purge_calls: AtomicUsize,
}

/// `maps_left` value meaning "no limit on map calls".
const UNLIMITED: usize = usize::MAX;

impl FaultyOs<SystemOs> {
    /// A `FaultyOs` over the real OS that counts calls and fails nothing until told to.
    #[must_use]
    pub const fn new() -> Self {
        Self::wrapping(SystemOs)
    }
}

impl Default for FaultyOs<SystemOs> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O> FaultyOs<O> {
    /// A `FaultyOs` over `inner` that counts calls and fails nothing until told to.
    #[must_use]
    pub const fn wrapping(inner: O) -> Self {
        FaultyOs {
            inner,
            errno: Errno::NOMEM,
            maps_left: AtomicUsize::new(UNLIMITED),
            budget: AtomicUsize::new(usize::MAX),
            fail_purge: AtomicBool::new(false),
            mapped: AtomicUsize::new(0),
            map_calls: AtomicUsize::new(0),
            failed_maps: AtomicUsize::new(0),
            unmap_calls: AtomicUsize::new(0),
            purge_calls: AtomicUsize::new(0),
        }
    }

    /// Lets the first `n` calls to `map` through; every later one fails.
    #[must_use]
    pub const fn fail_map_after(mut self, n: usize) -> Self {
        self.maps_left = AtomicUsize::new(n);
        self
    }

    /// Fails any `map` that would bring the bytes mapped through this `FaultyOs` above `bytes`.
    #[must_use]
    pub const fn byte_budget(mut self, bytes: usize) -> Self {
        self.budget = AtomicUsize::new(bytes);
        self
    }

    /// Makes injected failures return `errno` instead of `ENOMEM`.
    #[must_use]
    pub const fn with_errno(mut self, errno: Errno) -> Self {
        self.errno = errno;
        self
    }

    /// From now on, lets `n` more calls to `map` through, then fails the rest; `usize::MAX`
    /// lifts the limit.
    pub fn set_maps_left(&self, n: usize) {
        self.maps_left.store(n, Relaxed);
    }

    /// Sets the byte budget (see [`byte_budget`](Self::byte_budget)); `usize::MAX` lifts it.
    pub fn set_byte_budget(&self, bytes: usize) {
        self.budget.store(bytes, Relaxed);
    }

    /// Makes every later `purge` fail (`true`) or go through (`false`).
    pub fn set_fail_purge(&self, fail: bool) {
        self.fail_purge.store(fail, Relaxed);
    }

    /// Bytes currently mapped through this `FaultyOs` (mapped and not yet unmapped).
    pub fn mapped_bytes(&self) -> usize {
        self.mapped.load(Relaxed)
    }

    /// Calls to `map`, failed or not.
    pub fn map_calls(&self) -> usize {
        self.map_calls.load(Relaxed)
    }

    /// Calls to `map` that failed, injected or from the inner OS.
    pub fn failed_maps(&self) -> usize {
        self.failed_maps.load(Relaxed)
    }

    /// Calls to `unmap`.
    pub fn unmap_calls(&self) -> usize {
        self.unmap_calls.load(Relaxed)
    }

    /// Calls to `purge`, failed or not.
    pub fn purge_calls(&self) -> usize {
        self.purge_calls.load(Relaxed)
    }

    /// The wrapped OS.
    pub const fn inner(&self) -> &O {
        &self.inner
    }

    fn refuse_map(&self) -> Errno {
        self.failed_maps.fetch_add(1, Relaxed);
        self.errno
    }
}

// SAFETY: memory comes only from, and goes back only to, the inner `Os` with the caller's
// arguments unchanged, so its promises hold; injected failures touch no memory.
unsafe impl<O: Os> Os for FaultyOs<O> {
    fn map(&self, len: usize, align: usize) -> Result<NonNull<u8>, Errno> {
        self.map_calls.fetch_add(1, Relaxed);
        let allowed = self
            .maps_left
            .fetch_update(Relaxed, Relaxed, |left| match left {
                0 => None,
                UNLIMITED => Some(UNLIMITED),
                n => Some(n - 1),
            });
        if allowed.is_err() {
            return Err(self.refuse_map());
        }
        let budget = self.budget.load(Relaxed);
        let charged = self.mapped.fetch_update(Relaxed, Relaxed, |mapped| {
            mapped.checked_add(len).filter(|&total| total <= budget)
        });
        if charged.is_err() {
            return Err(self.refuse_map());
        }
        self.inner.map(len, align).inspect_err(|_| {
            self.mapped.fetch_sub(len, Relaxed);
            self.failed_maps.fetch_add(1, Relaxed);
        })
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, len: usize, align: usize) -> Result<(), Errno> {
        self.unmap_calls.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract is passed on unchanged; the mapping came from `inner`.
        let result = unsafe { self.inner.unmap(ptr, len, align) };
        if result.is_ok() {
            self.mapped.fetch_sub(len, Relaxed);
        }
        result
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        self.purge_calls.fetch_add(1, Relaxed);
        if self.fail_purge.load(Relaxed) {
            return Err(self.errno);
        }
        // SAFETY: the caller's contract is passed on unchanged; the mapping came from `inner`.
        unsafe { self.inner.purge(ptr, len) }
    }

    unsafe fn advise_huge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller's contract is passed on unchanged; the mapping came from `inner`.
        unsafe { self.inner.advise_huge(ptr, len) }
    }
}
