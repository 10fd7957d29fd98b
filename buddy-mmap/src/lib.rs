//! Memory regions from the operating system, through [`rustix`]: reserve (optionally aligned),
//! purge pages back to the OS, ask for huge pages, unmap on drop.
//!
//! This crate knows nothing about allocators; `buddy-std` builds one on it. Because it runs
//! inside a global allocator, **nothing here allocates heap memory or panics**, on any path —
//! errors included: [`MmapError`] prints without allocating.
//!
//! - [`Region`]: anonymous private memory (`MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`, so
//!   physical pages are used only as touched), optionally aligned to a power of two
//!   ([`Region::reserve_aligned`]); [`Region::purge`] returns pages with
//!   `madvise(MADV_DONTNEED)`; [`Region::advise_huge`] asks for transparent huge pages; `Drop`
//!   unmaps.
//! - [`Os`]: the system calls behind a region, injectable. [`SystemOs`] is the real one;
//!   [`FaultyOs`] wraps it to count calls and refuse memory on demand, for tests.
//! - [`page_size`]: the OS's page size.
//!
//! Linux (and Android) only: `MADV_DONTNEED` zeroing private anonymous pages is a Linux
//! guarantee. Under Miri, which cannot make these system calls, [`SystemOs`] takes memory from
//! [`std::alloc::System`] and purging writes zeros, which is the same observable behaviour.
//!
//! # Example
//!
//! ```
//! use buddy_mmap::{Region, page_size};
//!
//! let page = page_size();
//! let region = Region::reserve(4 * page)?;
//! assert_eq!(region.len(), 4 * page);
//!
//! // Write to the second page.
//! let second = region.as_ptr().wrapping_add(page);
//! // SAFETY: the region is 4 pages of readable, writable memory that only this code uses.
//! unsafe { second.write_bytes(0xAB, page) };
//! // SAFETY: as above; the page was just written.
//! assert_eq!(unsafe { second.add(page - 1).read() }, 0xAB);
//!
//! // Give it back to the OS: it reads back as zeros.
//! // SAFETY: nothing relies on the page's contents and no reference into it is live.
//! unsafe { region.purge(page, page)? };
//! // SAFETY: the page is still mapped and readable; no one writes it meanwhile.
//! let bytes = unsafe { core::slice::from_raw_parts(second, page) };
//! assert!(bytes.iter().all(|&b| b == 0));
//!
//! // Misaligned or out-of-range requests are errors and change nothing.
//! // SAFETY: as above.
//! let err = unsafe { region.purge(1, page) }.unwrap_err();
//! assert!(err.to_string().contains("not a multiple of the page size"));
//! # Ok::<(), buddy_mmap::MmapError>(())
//! ```

#[cfg(not(any(target_os = "linux", target_os = "android")))]
compile_error!("buddy-mmap supports Linux and Android only (it relies on MADV_DONTNEED zeroing)");

mod error;
mod faulty;
mod os;
mod region;

pub use error::{Invalid, MmapError, Op};
pub use faulty::FaultyOs;
pub use os::{Os, SystemOs, page_size};
pub use region::Region;
/// The OS error code carried by [`MmapError`] and returned by [`Os`] methods.
pub use rustix::io::Errno;
