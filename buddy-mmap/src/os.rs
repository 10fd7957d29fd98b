//! The OS layer: the [`Os`] trait and the real implementation, [`SystemOs`].

use core::ptr::NonNull;

use rustix::io::Errno;

/// The size of a page in bytes, from the OS.
///
/// `getpagesize()`, read once from the auxiliary vector by `rustix` and cached.
///
/// ```
/// let page = buddy_mmap::page_size();
/// assert!(page.is_power_of_two() && page >= 4096);
/// assert_eq!(buddy_mmap::Region::reserve(1)?.len(), page);
/// # Ok::<(), buddy_mmap::MmapError>(())
/// ```
///
/// # References
///  - [Linux `getauxval(AT_PAGESZ)`](https://man7.org/linux/man-pages/man3/getauxval.3.html)
#[inline]
#[must_use]
pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// Checks the arguments of [`Os::map`]: `len` a nonzero multiple of the page size, `align` a
/// power of two no smaller than the page size.
fn map_args_ok(len: usize, align: usize) -> bool {
    let page = page_size();
    len != 0 && len % page == 0 && align.is_power_of_two() && align >= page
}

/// The operating-system calls a [`Region`](crate::Region) is made of.
///
/// [`SystemOs`] is the real one. Other implementations wrap it to inject faults or count calls
/// (see [`FaultyOs`](crate::FaultyOs)); `&T` is an `Os` wherever `T` is, so a `static` instance
/// can be shared by many regions.
///
/// [`Region`](crate::Region) calls [`map`](Os::map) only with `len` a nonzero multiple of
/// [`page_size`] and `align` a power of two no smaller than it, with `len + align` not above
/// `isize::MAX`. Because `map` is safe to call, an implementation must still answer any other
/// arguments with an error (not undefined behaviour).
///
/// ```
/// use buddy_mmap::{Os, SystemOs, page_size};
/// let (os, page) = (SystemOs, page_size());
/// let p = os.map(page, page).unwrap();
/// // SAFETY: (all) p is a fresh mapping of one page from `map`, used by nothing else.
/// unsafe {
///     assert_eq!(p.read(), 0); // zero-filled
///     p.write(1);
///     os.purge(p, page).unwrap();
///     assert_eq!(p.read(), 0); // zero again after a purge
///     os.unmap(p, page, page).unwrap();
/// }
/// ```
///
/// # Safety
///
/// Regions hand their memory to code that reads and writes it, so an implementation promises:
///
/// - A successful `map(len, align)` returns the start of `len` bytes that are readable, writable,
///   zero-filled, aligned to `align`, not part of any other live allocation or mapping, and that
///   stay so until they are passed to [`unmap`](Os::unmap).
/// - A successful [`purge`](Os::purge) leaves the range mapped, readable and writable, and every
///   byte of it reads as zero afterwards. A failed one may have zeroed any whole pages of it, and
///   left the others as they were.
/// - [`advise_huge`](Os::advise_huge) never changes the contents or the validity of memory.
pub unsafe trait Os {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)`,
    /// aligned to `align` — Reserves `len` bytes of zero-filled memory.
    ///
    /// Physical pages are used only as they are touched.
    ///
    /// # Errors
    ///
    /// The OS's errno: `ENOMEM` when the address space or a limit is exhausted, `EINVAL` for
    /// arguments outside the contract above.
    ///
    /// # References
    ///  - [Linux `mmap`](https://man7.org/linux/man-pages/man2/mmap.2.html)
    fn map(&self, len: usize, align: usize) -> Result<NonNull<u8>, Errno>;

    /// `munmap(ptr, len)` — Gives a whole mapping back to the OS.
    ///
    /// # Errors
    ///
    /// The OS's errno; a valid mapping is not expected to produce one.
    ///
    /// # Safety
    ///
    /// `ptr`, `len` and `align` are exactly those of one successful [`map`](Os::map) call on
    /// this same `Os` whose memory has not been unmapped yet, and nothing accesses that memory
    /// any more (no Rust reference into it is live).
    ///
    /// # References
    ///  - [Linux `munmap`](https://man7.org/linux/man-pages/man2/munmap.2.html)
    unsafe fn unmap(&self, ptr: NonNull<u8>, len: usize, align: usize) -> Result<(), Errno>;

    /// `madvise(ptr, len, MADV_DONTNEED)` — Gives the physical pages behind a range back to the
    /// OS; the range stays mapped and reads back as zeros.
    ///
    /// # Errors
    ///
    /// The OS's errno (`EINVAL`, `ENOMEM` for a range that is not mapped).
    ///
    /// # Safety
    ///
    /// `ptr` is page-aligned, `len` a multiple of the page size, and `ptr..ptr + len` lies inside
    /// memory returned by [`map`](Os::map) on this same `Os` and not yet unmapped. Nothing reads
    /// or writes the range during the call, no Rust reference into it is live, and nothing relies
    /// on its former contents.
    ///
    /// # References
    ///  - [Linux `madvise`](https://man7.org/linux/man-pages/man2/madvise.2.html)
    unsafe fn purge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno>;

    /// `madvise(ptr, len, MADV_HUGEPAGE)` — Asks for transparent huge pages behind a range.
    ///
    /// # Errors
    ///
    /// `EINVAL` on a kernel built without transparent huge pages.
    ///
    /// # Safety
    ///
    /// `ptr` is page-aligned, `len` a multiple of the page size, and `ptr..ptr + len` lies inside
    /// memory returned by [`map`](Os::map) on this same `Os` and not yet unmapped.
    ///
    /// # References
    ///  - [Linux `madvise`](https://man7.org/linux/man-pages/man2/madvise.2.html)
    ///  - [Linux transparent huge pages](https://www.kernel.org/doc/html/latest/admin-guide/mm/transhuge.html)
    unsafe fn advise_huge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno>;
}

// SAFETY: every call is forwarded unchanged to `T`, which keeps the promises of `Os`.
unsafe impl<T: Os + ?Sized> Os for &T {
    #[inline]
    fn map(&self, len: usize, align: usize) -> Result<NonNull<u8>, Errno> {
        (**self).map(len, align)
    }

    #[inline]
    unsafe fn unmap(&self, ptr: NonNull<u8>, len: usize, align: usize) -> Result<(), Errno> {
        // SAFETY: the caller's contract for `unmap` is passed on unchanged; `&T` and `T` map and
        // unmap the same memory.
        unsafe { (**self).unmap(ptr, len, align) }
    }

    #[inline]
    unsafe fn purge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller's contract for `purge` is passed on unchanged.
        unsafe { (**self).purge(ptr, len) }
    }

    #[inline]
    unsafe fn advise_huge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller's contract for `advise_huge` is passed on unchanged.
        unsafe { (**self).advise_huge(ptr, len) }
    }
}

/// The real OS: `mmap`, `munmap` and `madvise` through `rustix`.
///
/// An aligned mapping is made by reserving `len + align - page_size()` bytes and unmapping the
/// misaligned head and the excess tail, so it costs address space only for the duration of the
/// call.
///
/// Under Miri, which cannot run these system calls, the memory comes from
/// [`std::alloc::System`] (zeroed, with the requested alignment), `purge` writes zeros over the
/// range (the observable effect of `MADV_DONTNEED` on private anonymous memory), and
/// `advise_huge` fails with `EINVAL` like a kernel without transparent huge pages.
///
/// ```
/// use buddy_mmap::{Region, SystemOs};
/// // `Region::reserve` is `Region::reserve_in(len, SystemOs)`.
/// let region = Region::reserve_aligned_in(1 << 16, 1 << 16, SystemOs)?;
/// assert_eq!(region.as_ptr() as usize % (1 << 16), 0);
/// assert_eq!(*region.os(), SystemOs);
/// # Ok::<(), buddy_mmap::MmapError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SystemOs;

#[cfg(not(miri))]
mod sys {
    use core::ptr::{self, NonNull};

    use rustix::io::Errno;
    use rustix::mm::{self, Advice, MapFlags, ProtFlags};

    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)`.
    pub(super) fn map_anywhere(len: usize) -> Result<NonNull<u8>, Errno> {
        // SAFETY: a null hint without `MAP_FIXED` lets the kernel choose a range that overlaps no
        // existing mapping, so no memory that Rust code may be using is touched.
        let addr = unsafe {
            mm::mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        match NonNull::new(addr.cast::<u8>()) {
            Some(ptr) => Ok(ptr),
            None => {
                // A mapping at address 0 is only possible with `vm.mmap_min_addr = 0`; it cannot
                // be told apart from null, so give it back and report failure.
                // SAFETY: `addr..addr + len` is the mapping just made, which nothing else knows.
                let _ = unsafe { mm::munmap(addr, len) };
                Err(Errno::NOMEM)
            }
        }
    }

    /// `munmap(ptr, len)`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` is a page-aligned part of a mapping made by [`map_anywhere`] that nothing
    /// accesses any more.
    pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // SAFETY: guaranteed by the caller.
        unsafe { mm::munmap(ptr.as_ptr().cast(), len) }
    }

    /// `madvise(ptr, len, advice)`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` is a page-aligned part of a live mapping made by [`map_anywhere`], and
    /// the effect of `advice` on its contents is acceptable to the caller.
    pub(super) unsafe fn advise(ptr: NonNull<u8>, len: usize, advice: Advice) -> Result<(), Errno> {
        // SAFETY: guaranteed by the caller.
        unsafe { mm::madvise(ptr.as_ptr().cast(), len, advice) }
    }
}

#[cfg(not(miri))]
// SAFETY: `map` returns fresh private anonymous memory, which the kernel zero-fills, mapped
// read-write, of exactly `len` bytes at an address aligned to `align` (checked below), overlapping
// nothing (no `MAP_FIXED`); it stays mapped until `unmap`. `MADV_DONTNEED` on private anonymous
// memory keeps the range mapped and makes it read back as zeros. `MADV_HUGEPAGE` changes no
// contents.
unsafe impl Os for SystemOs {
    fn map(&self, len: usize, align: usize) -> Result<NonNull<u8>, Errno> {
        if !map_args_ok(len, align) {
            return Err(Errno::INVAL);
        }
        let page = page_size();
        if align == page {
            return sys::map_anywhere(len);
        }
        // Every page-aligned address is at most `align - page` below an `align`-aligned one.
        let span = len.checked_add(align - page).ok_or(Errno::NOMEM)?;
        let base = sys::map_anywhere(span)?;
        let head = base.as_ptr().addr().wrapping_neg() & (align - 1);
        let tail = span - head - len;
        // SAFETY: `head <= align - page`, so `base + head` and `base + head + len <= base + span`
        // stay inside the mapping just made.
        let (start, end) = unsafe { (base.add(head), base.add(head + len)) };
        if head != 0 {
            // SAFETY: `base..start` is the page-aligned head of our fresh mapping; nobody uses it.
            if let Err(errno) = unsafe { sys::unmap(base, head) } {
                // SAFETY: the whole mapping is still ours and unused.
                let _ = unsafe { sys::unmap(base, span) };
                return Err(errno);
            }
        }
        if tail != 0 {
            // SAFETY: `end..end + tail` is the page-aligned tail of our fresh mapping; unused.
            if let Err(errno) = unsafe { sys::unmap(end, tail) } {
                // SAFETY: `start..end + tail` is what is left of the mapping; unused.
                let _ = unsafe { sys::unmap(start, len + tail) };
                return Err(errno);
            }
        }
        Ok(start)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, len: usize, _align: usize) -> Result<(), Errno> {
        // SAFETY: the caller passes a whole live mapping from `map` that nothing uses any more.
        unsafe { sys::unmap(ptr, len) }
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // `Advice::LinuxDontNeed` is `MADV_DONTNEED`; rustix's `Advice::DontNeed` is
        // `POSIX_MADV_DONTNEED`, which Linux ignores.
        // SAFETY: the caller passes a page-aligned range of a live mapping whose contents nobody
        // relies on or accesses during the call.
        unsafe { sys::advise(ptr, len, rustix::mm::Advice::LinuxDontNeed) }
    }

    unsafe fn advise_huge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller passes a page-aligned range of a live mapping; `MADV_HUGEPAGE` does
        // not change its contents.
        unsafe { sys::advise(ptr, len, rustix::mm::Advice::LinuxHugepage) }
    }
}

#[cfg(miri)]
// SAFETY: `map` returns a fresh zeroed allocation of `len` bytes aligned to `align` from the
// system allocator, freed only by `unmap` with the same layout; `purge` zeroes the range in place.
unsafe impl Os for SystemOs {
    fn map(&self, len: usize, align: usize) -> Result<NonNull<u8>, Errno> {
        use std::alloc::{GlobalAlloc, Layout, System};
        if !map_args_ok(len, align) {
            return Err(Errno::INVAL);
        }
        let layout = Layout::from_size_align(len, align).map_err(|_| Errno::NOMEM)?;
        // `System`, not `std::alloc::alloc_zeroed`: this may run inside the global allocator.
        // SAFETY: `len != 0`, so the layout has a nonzero size.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        NonNull::new(ptr).ok_or(Errno::NOMEM)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, len: usize, align: usize) -> Result<(), Errno> {
        use std::alloc::{GlobalAlloc, Layout, System};
        let layout = Layout::from_size_align(len, align).map_err(|_| Errno::INVAL)?;
        // SAFETY: the caller passes the pointer, length and alignment of one `map` call, which
        // allocated from `System` with exactly this layout.
        unsafe { System.dealloc(ptr.as_ptr(), layout) };
        Ok(())
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller passes a range inside a live allocation that nothing else accesses
        // during the call.
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        Ok(())
    }

    unsafe fn advise_huge(&self, _ptr: NonNull<u8>, _len: usize) -> Result<(), Errno> {
        Err(Errno::INVAL)
    }
}
