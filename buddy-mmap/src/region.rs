//! [`Region`]: an owned range of OS memory, unmapped on drop.

use core::fmt;
use core::ptr::NonNull;

use crate::error::{Invalid, MmapError, Op};
use crate::os::{Os, SystemOs, page_size};

/// A range of anonymous private memory reserved from the OS, readable and writable, unmapped
/// when dropped.
///
/// The memory is reserved with `MAP_NORESERVE`: physical pages are used only as they are
/// touched, and [`purge`](Self::purge) gives them back. It starts zeroed. Its length is the
/// requested one rounded up to a whole number of pages, and its start is page-aligned (or
/// aligned to more, with [`reserve_aligned`](Self::reserve_aligned)).
///
/// A `Region` owns the memory but hands out only raw pointers ([`as_ptr`](Self::as_ptr)): how
/// the bytes are shared is up to the code built on it.
///
/// The OS layer is a type parameter, [`SystemOs`] by default; [`reserve_in`](Self::reserve_in)
/// takes another one, for instance a [`FaultyOs`](crate::FaultyOs) in tests.
///
/// No method allocates heap memory or panics.
pub struct Region<O: Os = SystemOs> {
    ptr: NonNull<u8>,
    len: usize,
    align: usize,
    os: O,
}

// SAFETY: a `Region` owns its mapping exclusively, like a `Box<[u8]>`: the pointer is the only
// handle to memory nobody else maps, and the OS calls behind it (`munmap`, `madvise`) may be
// made from any thread. Sending the region sends that ownership along with `O`, hence `O: Send`.
unsafe impl<O: Os + Send> Send for Region<O> {}

// SAFETY: through `&Region` one can only read the (immutable) pointer, length and alignment, call
// `advise_huge` (an `madvise` that changes no memory, safe to run concurrently) and call the
// `unsafe` `purge`, whose contract makes the caller exclude concurrent access to the purged
// bytes. The kernel serialises concurrent `madvise` calls itself. `O` is shared by reference,
// hence `O: Sync`.
unsafe impl<O: Os + Sync> Sync for Region<O> {}

impl Region<SystemOs> {
    /// Reserves `len` bytes (rounded up to whole pages) of zeroed memory from the OS,
    /// page-aligned.
    ///
    /// # Errors
    ///
    /// [`Invalid::ZeroLength`] if `len` is 0, [`Invalid::Overflow`] if the rounded length
    /// exceeds `isize::MAX`, or the OS's errno (typically `ENOMEM`).
    pub fn reserve(len: usize) -> Result<Self, MmapError> {
        Self::reserve_in(len, SystemOs)
    }

    /// Reserves `len` bytes (rounded up to whole pages) of zeroed memory from the OS, starting
    /// at an address aligned to `align`.
    ///
    /// `align` must be a power of two; one smaller than the page size is raised to it. The OS is
    /// asked for `len + align - page_size()` bytes and the excess head and tail are unmapped at
    /// once, so only `len` bytes stay reserved.
    ///
    /// # Errors
    ///
    /// As [`reserve`](Self::reserve), plus [`Invalid::AlignNotPowerOfTwo`], and
    /// [`Invalid::Overflow`] if `len + align` exceeds `isize::MAX`.
    pub fn reserve_aligned(len: usize, align: usize) -> Result<Self, MmapError> {
        Self::reserve_aligned_in(len, align, SystemOs)
    }
}

impl<O: Os> Region<O> {
    /// [`reserve`](Region::reserve) through the given OS layer.
    ///
    /// # Errors
    ///
    /// As [`reserve`](Region::reserve); errors from `os` are reported as they come.
    pub fn reserve_in(len: usize, os: O) -> Result<Self, MmapError> {
        Self::reserve_with(Op::Reserve { len }, len, page_size(), os)
    }

    /// [`reserve_aligned`](Region::reserve_aligned) through the given OS layer.
    ///
    /// # Errors
    ///
    /// As [`reserve_aligned`](Region::reserve_aligned); errors from `os` are reported as they
    /// come.
    pub fn reserve_aligned_in(len: usize, align: usize, os: O) -> Result<Self, MmapError> {
        let op = Op::ReserveAligned { len, align };
        if !align.is_power_of_two() {
            return Err(MmapError::invalid(op, Invalid::AlignNotPowerOfTwo));
        }
        Self::reserve_with(op, len, align.max(page_size()), os)
    }

    /// Validates, rounds `len` up to pages and maps it; `align` is a power of two ≥ page size.
    fn reserve_with(op: Op, len: usize, align: usize, os: O) -> Result<Self, MmapError> {
        if len == 0 {
            return Err(MmapError::invalid(op, Invalid::ZeroLength));
        }
        let page = page_size();
        let fits = len
            .checked_next_multiple_of(page)
            .and_then(|rounded| Some((rounded, rounded.checked_add(align - page)?)));
        let len = match fits {
            Some((rounded, span)) if isize::try_from(span).is_ok() => rounded,
            _ => return Err(MmapError::invalid(op, Invalid::Overflow)),
        };
        match os.map(len, align) {
            Ok(ptr) => Ok(Region {
                ptr,
                len,
                align,
                os,
            }),
            Err(errno) => Err(MmapError::os(op, errno)),
        }
    }

    /// The start of the region.
    ///
    /// Valid for reads and writes of [`len`](Self::len) bytes while the region lives.
    #[inline]
    pub const fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The start of the region, as a `NonNull`.
    #[inline]
    pub const fn as_non_null(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length in bytes: the requested length rounded up to whole pages.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a region holds at least one page.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The alignment the start address was reserved with: the page size, or the `align`
    /// given to [`reserve_aligned`](Region::reserve_aligned) if larger.
    #[inline]
    pub const fn align(&self) -> usize {
        self.align
    }

    /// The OS layer the region was reserved through.
    #[inline]
    pub const fn os(&self) -> &O {
        &self.os
    }

    /// Whether `ptr` points into the region.
    #[inline]
    pub fn contains(&self, ptr: *const u8) -> bool {
        ptr.addr().wrapping_sub(self.ptr.as_ptr().addr()) < self.len
    }

    /// `madvise(start + offset, len, MADV_DONTNEED)` — Gives the physical pages behind
    /// `offset..offset + len` back to the OS.
    ///
    /// The range stays reserved: the next access faults in fresh pages, which read as zeros.
    /// `offset` and `len` must be multiples of [`page_size`] and the range must lie inside the
    /// region; `len == 0` does nothing.
    ///
    /// Under Miri the range is validated the same way and then overwritten with zeros.
    ///
    /// # Safety
    ///
    /// The caller must not rely on the contents of the range: every byte of it reads as zero
    /// afterwards. No other thread may access the range during the call, and no Rust reference
    /// into it may be live, since its contents change underneath.
    ///
    /// # Errors
    ///
    /// [`Invalid::Misaligned`], [`Invalid::OutOfRange`] or [`Invalid::Overflow`], with nothing
    /// changed; or the OS's errno, after which any whole pages of the range may or may not have
    /// been zeroed.
    ///
    /// # References
    ///  - [Linux `madvise`](https://man7.org/linux/man-pages/man2/madvise.2.html)
    pub unsafe fn purge(&self, offset: usize, len: usize) -> Result<(), MmapError> {
        let op = Op::Purge { offset, len };
        let page = page_size();
        if offset % page != 0 || len % page != 0 {
            return Err(MmapError::invalid(op, Invalid::Misaligned));
        }
        match offset.checked_add(len) {
            None => return Err(MmapError::invalid(op, Invalid::Overflow)),
            Some(end) if end > self.len => {
                return Err(MmapError::invalid(op, Invalid::OutOfRange));
            }
            Some(_) => {}
        }
        if len == 0 {
            return Ok(());
        }
        // SAFETY: `offset < offset + len <= self.len`, so the pointer stays inside the region.
        let start = unsafe { self.ptr.add(offset) };
        // SAFETY: `start..start + len` is a page-aligned range inside our live mapping; the
        // caller guarantees nobody accesses it during the call or relies on its contents.
        unsafe { self.os.purge(start, len) }.map_err(|errno| MmapError::os(op, errno))
    }

    /// `madvise(start, len, MADV_HUGEPAGE)` — Asks the kernel to back the region with
    /// transparent huge pages.
    ///
    /// Only advice: contents are unchanged. Huge pages fit only where the region is aligned to
    /// them, so reserve with [`reserve_aligned`](Region::reserve_aligned) (2 MiB on `x86_64`).
    ///
    /// # Errors
    ///
    /// The OS's errno: `EINVAL` on a kernel without transparent huge pages (and always under
    /// Miri).
    ///
    /// # References
    ///  - [Linux `madvise`](https://man7.org/linux/man-pages/man2/madvise.2.html)
    ///  - [Linux transparent huge pages](https://www.kernel.org/doc/html/latest/admin-guide/mm/transhuge.html)
    pub fn advise_huge(&self) -> Result<(), MmapError> {
        // SAFETY: the whole region is a live page-aligned mapping of ours, and `MADV_HUGEPAGE`
        // changes no contents, so concurrent users of the memory are unaffected.
        unsafe { self.os.advise_huge(self.ptr, self.len) }
            .map_err(|errno| MmapError::os(Op::AdviseHuge { len: self.len }, errno))
    }
}

impl<O: Os> Drop for Region<O> {
    /// `munmap(start, len)`. An error (which a valid mapping does not produce) is ignored: the
    /// address space is then leaked rather than a panic raised.
    fn drop(&mut self) {
        // SAFETY: `ptr`, `len` and `align` are those of the `map` call that made this region;
        // it is unmapped only here, and `&mut self` means no borrow of the region is live.
        let _ = unsafe { self.os.unmap(self.ptr, self.len, self.align) };
    }
}

impl<O: Os> fmt::Debug for Region<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("align", &self.align)
            .finish_non_exhaustive()
    }
}
