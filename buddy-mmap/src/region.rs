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
///
/// ```
/// use buddy_mmap::{Region, page_size};
/// let region = Region::reserve(100)?;
/// assert_eq!(region.len(), page_size()); // rounded up to a whole page
/// assert_eq!(region.as_ptr() as usize % page_size(), 0);
/// // SAFETY: the region's bytes are readable, and only this code uses them.
/// assert_eq!(unsafe { region.as_ptr().add(99).read() }, 0); // it starts zeroed
/// drop(region); // unmapped
/// # Ok::<(), buddy_mmap::MmapError>(())
/// ```
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
    /// ```
    /// use buddy_mmap::{Invalid, Region, page_size};
    /// let region = Region::reserve(3 * page_size() + 1)?;
    /// assert_eq!(region.len(), 4 * page_size());
    /// assert_eq!(region.as_ptr() as usize % page_size(), 0);
    /// let err = Region::reserve(0).unwrap_err();
    /// assert_eq!(err.invalid_reason(), Some(Invalid::ZeroLength));
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
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
    /// ```
    /// use buddy_mmap::{Invalid, Region, page_size};
    /// let huge = Region::reserve_aligned(page_size(), 2 << 20)?;
    /// assert_eq!(huge.as_ptr() as usize % (2 << 20), 0);
    /// assert_eq!((huge.len(), huge.align()), (page_size(), 2 << 20));
    /// let small = Region::reserve_aligned(page_size(), 8)?;
    /// assert_eq!(small.align(), page_size()); // raised to the page size
    /// let err = Region::reserve_aligned(page_size(), 3).unwrap_err();
    /// assert_eq!(err.invalid_reason(), Some(Invalid::AlignNotPowerOfTwo));
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
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
    /// ```
    /// use buddy_mmap::{Errno, FaultyOs, Region};
    /// let os = FaultyOs::new().byte_budget(1 << 20);
    /// let region = Region::reserve_in(1 << 20, &os)?;
    /// assert_eq!(os.mapped_bytes(), 1 << 20);
    /// let err = Region::reserve_in(4096, &os).unwrap_err(); // over the budget
    /// assert_eq!(err.errno(), Some(Errno::NOMEM));
    /// drop(region);
    /// assert_eq!(os.mapped_bytes(), 0);
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`reserve`](Region::reserve); errors from `os` are reported as they come.
    pub fn reserve_in(len: usize, os: O) -> Result<Self, MmapError> {
        Self::reserve_with(Op::Reserve { len }, len, page_size(), os)
    }

    /// [`reserve_aligned`](Region::reserve_aligned) through the given OS layer.
    ///
    /// ```
    /// use buddy_mmap::{FaultyOs, Region};
    /// let os = FaultyOs::new();
    /// let region = Region::reserve_aligned_in(1 << 16, 1 << 20, &os)?;
    /// assert_eq!(region.as_ptr() as usize % (1 << 20), 0);
    /// assert_eq!((os.map_calls(), os.mapped_bytes()), (1, 1 << 16));
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
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
    ///
    /// ```
    /// use buddy_mmap::Region;
    /// let region = Region::reserve(1 << 16)?;
    /// let p = region.as_ptr();
    /// // SAFETY: p is valid for `len` bytes, and only this code uses them.
    /// unsafe {
    ///     p.add(region.len() - 1).write(42);
    ///     assert_eq!(p.add(region.len() - 1).read(), 42);
    /// }
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
    #[inline]
    pub const fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The start of the region, as a `NonNull`.
    ///
    /// ```
    /// use buddy_mmap::Region;
    /// let region = Region::reserve(4096)?;
    /// assert_eq!(region.as_non_null().as_ptr(), region.as_ptr());
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
    #[inline]
    pub const fn as_non_null(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length in bytes: the requested length rounded up to whole pages.
    ///
    /// ```
    /// use buddy_mmap::{Region, page_size};
    /// assert_eq!(Region::reserve(1)?.len(), page_size());
    /// assert_eq!(Region::reserve(page_size() + 1)?.len(), 2 * page_size());
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a region holds at least one page.
    ///
    /// ```
    /// use buddy_mmap::Region;
    /// assert!(!Region::reserve(1)?.is_empty());
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The alignment the start address was reserved with: the page size, or the `align`
    /// given to [`reserve_aligned`](Region::reserve_aligned) if larger.
    ///
    /// ```
    /// use buddy_mmap::{Region, page_size};
    /// assert_eq!(Region::reserve(4096)?.align(), page_size());
    /// assert_eq!(Region::reserve_aligned(4096, 1 << 20)?.align(), 1 << 20);
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
    #[inline]
    pub const fn align(&self) -> usize {
        self.align
    }

    /// The OS layer the region was reserved through.
    ///
    /// ```
    /// use buddy_mmap::{FaultyOs, Region};
    /// let region = Region::reserve_in(4096, FaultyOs::new())?;
    /// assert_eq!(region.os().map_calls(), 1);
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
    #[inline]
    pub const fn os(&self) -> &O {
        &self.os
    }

    /// Whether `ptr` points into the region.
    ///
    /// ```
    /// use buddy_mmap::Region;
    /// let region = Region::reserve(4096)?;
    /// let start = region.as_ptr();
    /// assert!(region.contains(start) && region.contains(start.wrapping_add(4095)));
    /// assert!(!region.contains(start.wrapping_add(region.len())));
    /// assert!(!region.contains(start.wrapping_sub(1)));
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
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
    /// ```
    /// use buddy_mmap::{Invalid, Region, page_size};
    /// let page = page_size();
    /// let region = Region::reserve(2 * page)?;
    /// // SAFETY: the region is ours alone; no reference into it is live.
    /// unsafe {
    ///     region.as_ptr().write_bytes(0xAB, 2 * page);
    ///     region.purge(page, page)?; // the second page only
    ///     assert_eq!((region.as_ptr().read(), region.as_ptr().add(page).read()), (0xAB, 0));
    ///     let err = region.purge(page, 2 * page).unwrap_err();
    ///     assert_eq!(err.invalid_reason(), Some(Invalid::OutOfRange));
    /// }
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
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
    /// ```
    /// use buddy_mmap::{Errno, Region};
    /// let region = Region::reserve_aligned(2 << 20, 2 << 20)?;
    /// // SAFETY: the region is ours alone.
    /// unsafe { region.as_ptr().write(7) };
    /// if let Err(e) = region.advise_huge() {
    ///     assert_eq!(e.errno(), Some(Errno::INVAL)); // a kernel without transparent huge pages
    /// }
    /// // SAFETY: as above.
    /// assert_eq!(unsafe { region.as_ptr().read() }, 7); // only advice: contents unchanged
    /// # Ok::<(), buddy_mmap::MmapError>(())
    /// ```
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
