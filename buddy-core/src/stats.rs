//! Statistics: what the heap holds, in the shape of Linux's `/proc/buddyinfo` and more.

use core::fmt;

/// A snapshot of a heap's state, from [`Heap::stats`](crate::Heap::stats).
///
/// Blocks in the deferred-coalescing caches count as free (they are: any request can take
/// them); `cached_blocks` says how many there are (a cached exact-fit run counts as its
/// pieces).
///
/// The running totals (`requested_bytes_total`, `allocated_bytes_total`, `allocations`,
/// `frees`) wrap around. The fast paths' share of the call counts is kept per order in 48
/// bits, which every allocation or free of that order that takes a slow path empties into
/// full words: only if 2^48 allocations of one order (three days at a billion a second) were
/// served by the fast path with none taking the slow path in between would `allocations`,
/// `frees` and `allocated_bytes_total` lose a multiple of 2^48 (`live_allocations` stays
/// exact).
///
/// `Display` prints the free blocks per order like `/proc/buddyinfo`, then the figures:
///
/// ```
/// use buddy_core::Heap;
/// use core::alloc::Layout;
/// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 4096]));
/// let mut heap = Heap::new();
/// heap.add_region_from_slice(mem).unwrap();
/// heap.alloc(Layout::new::<[u8; 100]>()).unwrap();
/// let s = heap.stats();
/// assert_eq!(s.live_allocations, 1);
/// assert_eq!(s.allocated_bytes, 128); // one power-of-two block: small requests are not split
/// println!("{s}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Free blocks per order: `free_blocks[k]` counts free blocks of `1 << k` bytes.
    pub free_blocks: [usize; 64],
    /// Smallest order (the minimum block's).
    pub min_order: u32,
    /// Largest order any region can hold.
    pub max_order: u32,
    /// Bytes in free blocks.
    pub free_bytes: usize,
    /// Free blocks held in the deferred-coalescing caches (included in `free_blocks`; a cached
    /// exact-fit run counts as its pieces).
    pub cached_blocks: usize,
    /// Bytes the heap manages (regions less metadata and alignment slack).
    pub managed_bytes: usize,
    /// Bytes of metadata (bitmaps) of all regions.
    pub metadata_bytes: usize,
    /// Live allocations.
    pub live_allocations: usize,
    /// Bytes handed out to live allocations (what they occupy, rounding included).
    pub allocated_bytes: usize,
    /// Highest `allocated_bytes` ever seen.
    pub high_water_bytes: usize,
    /// Bytes requested by all successful allocations so far (wrapping).
    pub requested_bytes_total: usize,
    /// Bytes handed out for all successful allocations so far (wrapping); against
    /// `requested_bytes_total` it gives the internal fragmentation.
    pub allocated_bytes_total: usize,
    /// Successful allocations so far.
    pub allocations: usize,
    /// Frees so far.
    pub frees: usize,
    /// Requests refused (bad requests and out of memory).
    pub failed_requests: usize,
    /// Size of the largest free block (0 if none).
    pub largest_free_block: usize,
    /// Regions in the heap.
    pub regions: usize,
}

impl Stats {
    /// The statistics of a heap with `config` and no region: what
    /// `Heap::with_config(config).stats()` returns, without building a heap.
    ///
    /// ```
    /// use buddy_core::{Config, Heap, Stats};
    /// let config = Config::new().min_block(64);
    /// assert_eq!(Stats::empty(config), Heap::with_config(config).stats());
    /// assert_eq!(Stats::empty(config).min_order, 6);
    /// ```
    pub fn empty(config: crate::Config) -> Stats {
        Stats {
            free_blocks: [0; 64],
            min_order: config.min_shift().unwrap_or_default(),
            max_order: 0,
            free_bytes: 0,
            cached_blocks: 0,
            managed_bytes: 0,
            metadata_bytes: 0,
            live_allocations: 0,
            allocated_bytes: 0,
            high_water_bytes: 0,
            requested_bytes_total: 0,
            allocated_bytes_total: 0,
            allocations: 0,
            frees: 0,
            failed_requests: 0,
            largest_free_block: 0,
            regions: 0,
        }
    }

    /// Adds the figures of `other` (another heap's) into `self`, to describe several heaps as
    /// one: counts, bytes and free blocks are summed; `min_order` becomes the smaller,
    /// `max_order` and `largest_free_block` the larger. `high_water_bytes` is summed too, so
    /// for heaps that peaked at different times it is an upper bound of the combined peak.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mut heaps = [Heap::new(), Heap::new()];
    /// for h in &mut heaps {
    ///     h.add_region_from_slice(Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 4096])))
    ///         .unwrap();
    ///     h.alloc(Layout::new::<[u8; 64]>()).unwrap();
    /// }
    /// let mut total = heaps[0].stats();
    /// total.merge(&heaps[1].stats());
    /// assert_eq!((total.live_allocations, total.allocated_bytes, total.regions), (2, 128, 2));
    /// ```
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.free_blocks.iter_mut().zip(other.free_blocks.iter()) {
            *a += b;
        }
        self.min_order = self.min_order.min(other.min_order);
        self.max_order = self.max_order.max(other.max_order);
        self.free_bytes += other.free_bytes;
        self.cached_blocks += other.cached_blocks;
        self.managed_bytes += other.managed_bytes;
        self.metadata_bytes += other.metadata_bytes;
        self.live_allocations += other.live_allocations;
        self.allocated_bytes += other.allocated_bytes;
        self.high_water_bytes += other.high_water_bytes;
        self.requested_bytes_total = self
            .requested_bytes_total
            .wrapping_add(other.requested_bytes_total);
        self.allocated_bytes_total = self
            .allocated_bytes_total
            .wrapping_add(other.allocated_bytes_total);
        self.allocations += other.allocations;
        self.frees += other.frees;
        self.failed_requests += other.failed_requests;
        self.largest_free_block = self.largest_free_block.max(other.largest_free_block);
        self.regions += other.regions;
    }

    /// Share of the handed-out bytes that was asked for, over the heap's life (1.0 = no
    /// internal fragmentation). 1.0 when nothing was allocated yet.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// assert_eq!(heap.stats().fill_ratio(), 1.0);
    /// heap.alloc(Layout::new::<[u8; 96]>()).unwrap(); // a 128-byte block
    /// assert_eq!(heap.stats().fill_ratio(), 0.75);
    /// ```
    pub fn fill_ratio(&self) -> f64 {
        if self.allocated_bytes_total == 0 {
            1.0
        } else {
            self.requested_bytes_total as f64 / self.allocated_bytes_total as f64
        }
    }
}

/// A size like `16B`, `4K`, `2M`, `1G`, kept on the stack.
pub(crate) struct Size {
    buf: [u8; 24],
    len: usize,
}

impl Size {
    /// Power-of-two-friendly short form of `bytes`.
    pub(crate) fn new(bytes: usize) -> Size {
        let bytes = bytes as u64;
        const UNITS: [(u64, u8); 4] = [
            (1 << 40, b'T'),
            (1 << 30, b'G'),
            (1 << 20, b'M'),
            (1 << 10, b'K'),
        ];
        let mut s = Size {
            buf: [0; 24],
            len: 0,
        };
        for (unit, c) in UNITS {
            if bytes >= unit && bytes % unit == 0 {
                s.push_num(bytes / unit);
                s.push(c);
                return s;
            }
        }
        s.push_num(bytes);
        s.push(b'B');
        s
    }

    fn push(&mut self, c: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = c;
            self.len += 1;
        }
    }

    fn push_num(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = 0;
        loop {
            digits[i] = b'0' + (n % 10) as u8;
            i += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while i > 0 {
            i -= 1;
            self.push(digits[i]);
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and unit letters are ever pushed.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let orders = self.min_order..=self.max_order.max(self.min_order);
        let width = |k: u32| {
            Size::new(1 << k)
                .len
                .max(digits(self.free_blocks[k as usize]))
                + 1
        };
        f.write_str("order")?;
        for k in orders.clone() {
            write!(f, "{:>w$}", Size::new(1 << k), w = width(k))?;
        }
        f.write_str("\nfree ")?;
        for k in orders {
            write!(f, "{:>w$}", self.free_blocks[k as usize], w = width(k))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "live {} allocations, {} bytes handed out (high water {}); {} free bytes, largest block {}, {} cached",
            self.live_allocations,
            self.allocated_bytes,
            self.high_water_bytes,
            self.free_bytes,
            Size::new(self.largest_free_block),
            self.cached_blocks
        )?;
        write!(
            f,
            "requested/handed out {}/{} bytes ({:.1}% used), {} failed requests, metadata {} bytes in {} region(s)",
            self.requested_bytes_total,
            self.allocated_bytes_total,
            self.fill_ratio() * 100.0,
            self.failed_requests,
            self.metadata_bytes,
            self.regions
        )
    }
}
