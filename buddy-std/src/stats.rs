//! [`Stats`]: the buddy heaps of all chunks as one, plus what the allocator holds from the OS.

use core::fmt;

/// A snapshot of a [`BuddyAlloc`](crate::BuddyAlloc)'s state, from
/// [`BuddyAlloc::stats`](crate::BuddyAlloc::stats).
///
/// Each figure is exact for its chunk at the moment the chunk was read; chunks are read one
/// after the other, so under concurrent use the sum mixes slightly different moments.
///
/// `Display` prints the free blocks per order like `/proc/buddyinfo`, then the figures.
///
/// ```
/// use buddy_std::{BuddyAlloc, Config};
/// use std::alloc::{GlobalAlloc, Layout};
/// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20));
/// // SAFETY: a non-zero size.
/// unsafe { a.alloc(Layout::new::<[u8; 100]>()) };
/// let stats = a.stats();
/// assert_eq!((stats.heap.live_allocations, stats.os.chunks), (1, 1));
/// let text = stats.to_string();
/// assert!(text.starts_with("order") && text.contains("os: 1 of 1 chunks of 1024 KiB"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The buddy heaps of all chunks, merged ([`buddy_core::Stats::merge`]). Requests served
    /// by a direct mapping are not in it (see [`os`](Stats::os)); `failed_requests` counts
    /// the requests this allocator refused (not the chunks it tried before finding room), and
    /// `high_water_bytes` is the sum of each chunk's peak, an upper bound of the whole peak.
    pub heap: buddy_core::Stats,
    /// What the allocator holds from the OS.
    pub os: OsStats,
}

/// What an allocator holds from the OS, and what it gave back.
///
/// ```
/// use buddy_std::{BuddyAlloc, Config};
/// use std::alloc::{GlobalAlloc, Layout};
/// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20));
/// let l = Layout::from_size_align(2 << 20, 8).unwrap(); // larger than a chunk
/// // SAFETY: a non-zero size; freed once with the same layout.
/// unsafe { a.dealloc(a.alloc(l), l) };
/// let os = a.stats().os;
/// assert_eq!((os.limit_bytes, os.chunk_bytes, os.chunks), (4 << 20, 1 << 20, 0));
/// assert_eq!((os.direct_allocations, os.committed_bytes, os.map_failures), (0, 0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OsStats {
    /// The configured memory limit.
    pub limit_bytes: usize,
    /// The chunk size.
    pub chunk_bytes: usize,
    /// Chunks in use (each a buddy heap).
    pub chunks: usize,
    /// Chunks the reserved address range has room for (the limit's, unless the OS granted
    /// less).
    pub chunk_capacity: usize,
    /// Virtual memory reserved: the chunk range, the directory of chunk metadata, and the
    /// direct mappings. Physical memory is used only where touched.
    pub reserved_bytes: usize,
    /// Bytes counted against the limit: chunks in use and direct mappings.
    pub committed_bytes: usize,
    /// Live allocations served by a mapping of their own (larger than a chunk).
    pub direct_allocations: usize,
    /// Bytes of those mappings.
    pub direct_bytes: usize,
    /// `madvise(MADV_DONTNEED)` calls made to give freed memory back.
    pub purges: usize,
    /// Bytes given back to the OS that way, in total.
    pub purged_bytes: usize,
    /// Purge calls the OS refused (the memory then simply stays resident).
    pub purge_failures: usize,
    /// `mmap` calls the OS refused.
    pub map_failures: usize,
}

impl Stats {
    /// Live allocations, in chunks and direct mappings.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20));
    /// // SAFETY: a non-zero size.
    /// unsafe { a.alloc(Layout::new::<u64>()) };
    /// // SAFETY: as above.
    /// unsafe { a.alloc(Layout::from_size_align(2 << 20, 8).unwrap()) }; // a mapping of its own
    /// let s = a.stats();
    /// assert_eq!((s.live_allocations(), s.heap.live_allocations), (2, 1));
    /// ```
    pub fn live_allocations(&self) -> usize {
        self.heap.live_allocations + self.os.direct_allocations
    }

    /// Bytes handed out to live allocations, in chunks and direct mappings.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20));
    /// // SAFETY: a non-zero size.
    /// unsafe { a.alloc(Layout::new::<[u8; 100]>()) }; // a 128-byte block
    /// // SAFETY: as above.
    /// unsafe { a.alloc(Layout::from_size_align(2 << 20, 8).unwrap()) }; // a mapping of its own
    /// let s = a.stats();
    /// assert_eq!((s.allocated_bytes(), s.heap.allocated_bytes), (128 + (2 << 20), 128));
    /// ```
    pub fn allocated_bytes(&self) -> usize {
        self.heap.allocated_bytes + self.os.direct_bytes
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.heap)?;
        let o = &self.os;
        write!(
            f,
            "os: {} of {} chunks of {} KiB, {} KiB reserved, {} KiB committed (limit {} KiB); \
             {} direct mappings ({} KiB); {} KiB purged in {} calls",
            o.chunks,
            o.chunk_capacity,
            o.chunk_bytes >> 10,
            o.reserved_bytes >> 10,
            o.committed_bytes >> 10,
            o.limit_bytes >> 10,
            o.direct_allocations,
            o.direct_bytes >> 10,
            o.purged_bytes >> 10,
            o.purges
        )
    }
}

/// The resident set size of the whole process in bytes (`/proc/self/statm`), or `None` if it
/// cannot be read. For demos and tests of purging: how much physical memory the process holds.
///
/// Reads into a stack buffer: it does not allocate, but do not call it while holding a lock
/// the allocator needs.
///
/// ```
/// let rss = buddy_std::resident_bytes().expect("Linux has /proc");
/// assert!(rss > 0);
/// ```
pub fn resident_bytes() -> Option<usize> {
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/self/statm").ok()?;
    let mut buf = [0u8; 128];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    // "size resident shared text lib data dt", in pages.
    let text = core::str::from_utf8(&buf[..len]).ok()?;
    let pages: usize = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(buddy_mmap::page_size())
}
