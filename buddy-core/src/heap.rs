//! The heap: pointers and `Layout`s on top of the trees of one or several regions.

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::cache::{CACHE_ORDERS, Cache, RunCache};
use crate::order::{align_down, align_up, floor_log2};
use crate::stats::Stats;
use crate::tree::{MAX_ORDERS, Plan, Tree};
use crate::{AllocError, CheckError, FreeError, RegionError, bitmap, debug, log_warn};

/// Most regions one [`Heap`] can hold.
pub const MAX_REGIONS: usize = 8;

/// The default minimum block: 16 bytes, the alignment `malloc` promises on 64-bit targets.
pub const DEFAULT_MIN_BLOCK: usize = 16;

/// How a [`Heap`] cuts memory. Built with `const` methods, so it fits in a `static`.
///
/// ```
/// use buddy_core::{Config, Heap};
/// // A page-frame allocator: 4 KiB blocks, every request rounded to a power of two.
/// static FRAMES: spin::Mutex<Heap> =
///     spin::Mutex::new(Heap::with_config(Config::new().min_block(4096).exact_fit(false)));
/// assert_eq!(FRAMES.lock().config().block(), 4096);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Config {
    // Each field is stored as its difference from the default (XOR), so that `Config::new()`,
    // and with it `Heap::new()`, is all zero bits: a `static Heap` then goes to `.bss` (zeroed
    // at start-up) instead of `.data` (an image of the whole heap in flash, copied to RAM).
    min_block_x: usize,
    exact_fit_off: bool,
    exact_fit_above_x: usize,
    exact_fit_pieces_x: u32,
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("min_block", &self.block())
            .field("exact_fit", &self.is_exact_fit())
            .field("exact_fit_above", &self.exact_fit_threshold())
            .field("exact_fit_pieces", &self.exact_fit_max_pieces())
            .finish()
    }
}

/// Requests up to this size take one power-of-two block even with exact fit on (see
/// [`Config::exact_fit_above`]).
pub const DEFAULT_EXACT_FIT_ABOVE: usize = 4096;

/// Most pieces an exact-fit run is cut into by default (see [`Config::exact_fit_pieces`]).
pub const DEFAULT_EXACT_FIT_PIECES: u32 = 4;

impl Config {
    /// 16-byte minimum block, exact fit on.
    ///
    /// ```
    /// use buddy_core::{Config, DEFAULT_EXACT_FIT_ABOVE, DEFAULT_EXACT_FIT_PIECES};
    /// let c = Config::new();
    /// assert_eq!(c.block(), 16);
    /// assert!(c.is_exact_fit());
    /// assert_eq!(c.exact_fit_threshold(), DEFAULT_EXACT_FIT_ABOVE);
    /// assert_eq!(c.exact_fit_max_pieces(), DEFAULT_EXACT_FIT_PIECES);
    /// assert_eq!(c, Config::default());
    /// ```
    pub const fn new() -> Config {
        Config {
            min_block_x: 0,
            exact_fit_off: false,
            exact_fit_above_x: 0,
            exact_fit_pieces_x: 0,
        }
    }

    /// A configuration that packs tighter than the default, for heaps where memory is scarcer
    /// than time: exact fit above 512 bytes ([`exact_fit_above`](Config::exact_fit_above)) in
    /// runs of up to 5 pieces ([`exact_fit_pieces`](Config::exact_fit_pieces)): a request
    /// of 513 bytes to 4 KiB is rounded up to 1/32 of its block instead of to the whole block.
    ///
    /// Measured with `cargo xtask bench` (64 MiB region, sizes skewed small up to 8 KiB, the
    /// `buddy (compact cfg)` rows): heap efficiency at the first failure 92.7% against 79.7%
    /// for [`Config::new`] (talc 97.2%), and `random-actions` about 40 against 24–26 ns a
    /// call (talc 29–31): runs are carved and merged where single blocks come from the cache.
    ///
    /// ```
    /// use buddy_core::{Config, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    /// let mut heap = Heap::with_config(Config::compact());
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::from_size_align(600, 8).unwrap()).unwrap();
    /// assert_eq!(heap.usable_size(p), Ok(608)); // 512 + 64 + 32, where the default takes 1024
    /// ```
    pub const fn compact() -> Config {
        Config::new().exact_fit_above(512).exact_fit_pieces(5)
    }

    /// Sets the minimum block: a power of two from 8 bytes to 2^40 (checked when a region is
    /// added: [`RegionError::BadMinBlock`]). 4096 serves page frames.
    ///
    /// ```
    /// use buddy_core::{Config, Heap, RegionError};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    /// let mut frames = Heap::with_config(Config::new().min_block(4096));
    /// frames.add_region_from_slice(mem).unwrap();
    /// let p = frames.alloc(Layout::new::<u8>()).unwrap();
    /// assert_eq!(frames.usable_size(p), Ok(4096)); // no block is smaller
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 4096]));
    /// let mut bad = Heap::with_config(Config::new().min_block(24)); // not a power of two
    /// assert_eq!(bad.add_region_from_slice(mem), Err(RegionError::BadMinBlock { min_block: 24 }));
    /// ```
    pub const fn min_block(self, min_block: usize) -> Config {
        Config {
            min_block_x: min_block ^ DEFAULT_MIN_BLOCK,
            ..self
        }
    }

    /// Exact fit (on by default): a request larger than
    /// [`exact_fit_above`](Config::exact_fit_above) bytes whose size is not a power of two
    /// takes a run of at most [`exact_fit_pieces`](Config::exact_fit_pieces) buddy blocks
    /// (5000 bytes: 5120 = 4096 + 1024, where a power of two would take 8192) and the unused
    /// rest of its block goes back to the free lists at once. Off: every request is rounded up
    /// to a power of two.
    ///
    /// ```
    /// use buddy_core::{Config, Heap};
    /// use core::alloc::Layout;
    /// for (on, size) in [(true, 5120), (false, 8192)] {
    ///     let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    ///     let mut heap = Heap::with_config(Config::new().exact_fit(on));
    ///     heap.add_region_from_slice(mem).unwrap();
    ///     let p = heap.alloc(Layout::from_size_align(5000, 8).unwrap()).unwrap();
    ///     assert_eq!(heap.usable_size(p), Ok(size));
    /// }
    /// ```
    pub const fn exact_fit(self, on: bool) -> Config {
        Config {
            exact_fit_off: !on,
            ..self
        }
    }

    /// Requests of at most `bytes` take one power-of-two block even with exact fit on
    /// (default [`DEFAULT_EXACT_FIT_ABOVE`], 4 KiB). Why: a single block can wait in the
    /// deferred cache and serve the next request of its order without any split or merge (the
    /// inlined fast path), while a run takes the out-of-line path: the run cache serves it
    /// only when a run of exactly its length was freed, else it is carved, and merged when
    /// freed.
    ///
    /// A lower threshold packs tighter and costs time: [`Config::compact`] (512 bytes, with 5
    /// pieces) is the measured trade-off.
    ///
    /// ```
    /// use buddy_core::{Config, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    /// let mut heap = Heap::with_config(Config::new().exact_fit_above(1024));
    /// heap.add_region_from_slice(mem).unwrap();
    /// let small = heap.alloc(Layout::from_size_align(1000, 8).unwrap()).unwrap();
    /// assert_eq!(heap.usable_size(small), Ok(1024)); // at most 1024 bytes: one block
    /// let run = heap.alloc(Layout::from_size_align(1500, 8).unwrap()).unwrap();
    /// assert_eq!(heap.usable_size(run), Ok(1536)); // 1024 + 512, where the default takes 2048
    /// ```
    pub const fn exact_fit_above(self, bytes: usize) -> Config {
        Config {
            exact_fit_above_x: bytes ^ DEFAULT_EXACT_FIT_ABOVE,
            ..self
        }
    }

    /// Most pieces an exact-fit run is cut into (default [`DEFAULT_EXACT_FIT_PIECES`]; 0 counts
    /// as 1, which is a power of two). A request whose block is `2^k` bytes is rounded up to a
    /// multiple of `2^(k - pieces)` (and of the minimum block): with 4 pieces at most 1/8 of
    /// it is slack (5000 bytes take 5120), with 64 none beyond the minimum block (5008).
    ///
    /// Why 4: every piece is a split and a merge at its own order, each a metadata word of its
    /// own, so fewer pieces are faster, and larger pieces leave tails that later requests can
    /// use. Measured with `cargo xtask bench` (64 MiB, sizes skewed small up to 8 KiB):
    /// against unlimited pieces, 4 pieces cut `random-actions` from ~41 to ~37 ns a call and
    /// the alloc p99.9 of `latency` from 180 to 110 ns, for one point of heap efficiency
    /// (80.6% to 79.6%, 20 seeds; measured before runs had a cache of their own).
    ///
    /// ```
    /// use buddy_core::{Config, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    /// let mut heap = Heap::with_config(Config::new().exact_fit_pieces(2));
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::from_size_align(5000, 8).unwrap()).unwrap();
    /// assert_eq!(heap.usable_size(p), Ok(6144)); // 4096 + 2048
    /// ```
    pub const fn exact_fit_pieces(self, pieces: u32) -> Config {
        Config {
            exact_fit_pieces_x: if pieces == 0 { 1 } else { pieces } ^ DEFAULT_EXACT_FIT_PIECES,
            ..self
        }
    }

    /// Most pieces an exact-fit run is cut into.
    ///
    /// ```
    /// use buddy_core::{Config, DEFAULT_EXACT_FIT_PIECES};
    /// assert_eq!(Config::new().exact_fit_max_pieces(), DEFAULT_EXACT_FIT_PIECES);
    /// assert_eq!(Config::compact().exact_fit_max_pieces(), 5);
    /// assert_eq!(Config::new().exact_fit_pieces(0).exact_fit_max_pieces(), 1); // 0 counts as 1
    /// ```
    pub const fn exact_fit_max_pieces(&self) -> u32 {
        self.exact_fit_pieces_x ^ DEFAULT_EXACT_FIT_PIECES
    }

    /// The minimum block in bytes.
    ///
    /// ```
    /// use buddy_core::Config;
    /// assert_eq!(Config::new().block(), 16);
    /// assert_eq!(Config::new().min_block(4096).block(), 4096);
    /// ```
    pub const fn block(&self) -> usize {
        self.min_block_x ^ DEFAULT_MIN_BLOCK
    }

    /// Whether exact fit is on.
    ///
    /// ```
    /// use buddy_core::Config;
    /// assert!(Config::new().is_exact_fit());
    /// assert!(!Config::new().exact_fit(false).is_exact_fit());
    /// ```
    pub const fn is_exact_fit(&self) -> bool {
        !self.exact_fit_off
    }

    /// Size up to which requests take one power-of-two block even with exact fit on.
    ///
    /// ```
    /// use buddy_core::Config;
    /// assert_eq!(Config::new().exact_fit_threshold(), 4096);
    /// assert_eq!(Config::compact().exact_fit_threshold(), 512);
    /// assert_eq!(Config::new().exact_fit_above(1024).exact_fit_threshold(), 1024);
    /// ```
    pub const fn exact_fit_threshold(&self) -> usize {
        self.exact_fit_above_x ^ DEFAULT_EXACT_FIT_ABOVE
    }

    pub(crate) const fn min_shift(&self) -> Option<u32> {
        let b = self.block();
        if b.is_power_of_two() && b >= 8 && b as u64 <= 1 << 40 {
            Some(b.trailing_zeros())
        } else {
            None
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// Metadata words a region of `len` bytes needs with minimum block `min_block`, whatever its
/// start address: size a `static` array with it for
/// [`Heap::add_region_with_metadata`]. Returns 0 if `min_block` is invalid or `len` is smaller
/// than one block.
///
/// About 3 bits per minimum block (2.4% of the region at 16-byte blocks, 0.01% at 4 KiB).
///
/// ```
/// use buddy_core::metadata_words;
/// const LEN: usize = 1 << 20;
/// static mut META: [u64; metadata_words(LEN, 4096)] = [0; metadata_words(LEN, 4096)];
/// assert!(metadata_words(LEN, 4096) * 8 < LEN / 1000);
/// ```
pub const fn metadata_words(len: usize, min_block: usize) -> usize {
    // `Config::min_block`'s valid range (see `Config::min_shift`).
    if !min_block.is_power_of_two()
        || min_block < 8
        || min_block as u64 > 1 << 40
        || len < min_block
    {
        return 0;
    }
    let min = min_block.trailing_zeros();
    let mut top = floor_log2(len);
    if top > min + MAX_ORDERS as u32 - 1 {
        top = min + MAX_ORDERS as u32 - 1;
    }
    let mut total = 0;
    let mut k = min;
    while k <= top {
        // Blocks of order k that an interval of `len` bytes can touch.
        let n = (len >> k) + 2;
        // Free bits, with the split bits interleaved above the minimum order.
        total += bitmap::summarised_words(n, if k > min { 2 } else { 1 });
        k += 1;
    }
    total
}

/// A region length that is enough at its start address, with the metadata carved from its
/// front after `pad` bytes of alignment: the metadata of that length (`metadata_words`), then
/// one minimum block of `2^min` bytes whatever the alignment of both ends (`3 * 2^min - 2`
/// bytes hold one). The metadata grows with the length, so the length is found by iterating
/// from below (a few rounds: the metadata is a few percent of the length).
fn carved_len_enough(pad: usize, min: u32) -> usize {
    let block = 1usize << min;
    let mut len = 0usize;
    loop {
        let next = metadata_words(len, block)
            .saturating_mul(8)
            .saturating_add(pad)
            .saturating_add(3 * block - 2);
        if next <= len {
            return len;
        }
        len = next;
    }
}

/// Free blocks of a run's largest order that [`Heap::place_run`] tries before it splits a
/// larger block. Measured with `Config::compact()` (`cargo xtask bench --workloads
/// latency,random-actions --only buddy:compact,talc` and the efficiency workload's generator,
/// 20 seeds): 1, 2, 4 and 8 tries all fill 92.7% of the region (the run cache does the rest),
/// while the alloc p99.9 of `latency` grows with them: 260, 310, 421, 601 ns.
const PLACE_TRIES: u32 = 1;

/// An allocation of `s` bytes at `p` is one buddy block (not an exact-fit run).
#[inline]
fn single_block(p: usize, s: usize) -> bool {
    s.is_power_of_two() && p & (s - 1) == 0
}

/// The figures behind [`Stats`].
///
/// The slow paths count calls in totals here; the fast paths' calls are counted by the
/// cache, in the same word as its stacks' tops ([`Cache::fast_calls`]); [`Heap::stats`]
/// adds them up. The high-water mark is kept with `slack`, how
/// far the live bytes are below it: an allocation takes from the slack and raises the mark
/// only by what it lacks, a free adds to it. One counter instead of bytes handed out and
/// given back plus a compare (callgrind on `cargo xtask bench`'s `pairs`: 1.5 instructions
/// fewer a call, 70.4 to 68.6 million over 1.2 million calls).
///
/// Alloc and free share that counter, a chain of stores between them. Measured anyway
/// (`pairs`, 5 interleaved rounds): 1.66 to 1.60 times the floor when it came in, and later
/// the chain-free form (handed and returned bytes, a branch for the mark) was slower, 1.51
/// against 1.49. The slack alone costs 6% there: 1.38 with its updates removed (a probe).
#[derive(Clone, Copy, Debug)]
struct Counters {
    /// Allocations by the slow paths.
    allocations: usize,
    /// Frees by the slow paths.
    frees: usize,
    /// Bytes handed out by the slow paths.
    handed: usize,
    high_water: usize,
    /// `high_water` less the live bytes.
    slack: usize,
    requested_total: usize,
    failed: usize,
}

impl Counters {
    /// Bytes handed out and not given back.
    fn allocated(&self) -> usize {
        self.high_water.wrapping_sub(self.slack)
    }

    /// `bytes` more are live.
    #[inline(always)]
    fn take(&mut self, bytes: usize) {
        let (s, short) = self.slack.overflowing_sub(bytes);
        self.slack = s;
        if short {
            // The live bytes pass the mark by what the slack lacked.
            self.high_water = self.high_water.wrapping_add(s.wrapping_neg());
            self.slack = 0;
        }
    }

    /// `bytes` fewer are live.
    #[inline(always)]
    fn give(&mut self, bytes: usize) {
        // No overflow: the slack is at most the high-water mark, at most the heap's size.
        self.slack = self.slack.wrapping_add(bytes);
    }

    /// An in-place resize of a live allocation from `old` to `new` bytes.
    fn resize(&mut self, old: usize, new: usize) {
        if new >= old {
            self.take(new - old);
        } else {
            self.give(old - new);
        }
    }
}

/// A buddy heap over one or several caller-provided regions.
///
/// `&mut self` and no locks: wrap it in a lock ([`LockedHeap`](crate::LockedHeap)) to share it.
/// All bookkeeping lives in metadata bitmaps, never in the managed memory; see the
/// [crate docs](crate) for the guarantees.
///
/// # Example: firmware heap over a static buffer
///
/// ```
/// use buddy_core::Heap;
/// use core::alloc::Layout;
///
/// static mut ARENA: [u8; 64 * 1024] = [0; 64 * 1024];
///
/// let mut heap = Heap::new();
/// // SAFETY: ARENA is used by nothing else, for as long as the heap lives.
/// unsafe { heap.add_region((&raw mut ARENA).cast(), 64 * 1024) }.unwrap();
///
/// let p = heap.alloc(Layout::from_size_align(128, 8).unwrap()).unwrap();
/// // SAFETY: p came from this heap and is live.
/// assert_eq!(unsafe { heap.free(p) }, Ok(128));
/// // SAFETY: a double free is detected and changes nothing.
/// assert!(unsafe { heap.free(p) }.is_err());
/// ```
// Layout: `repr(C)`, the fields of the fast paths first (then the cache, whose stack tops
// come first in it), so that every word a fast alloc or free reads or writes, but the stack
// entries, lies within the first 1 KiB (`hot_fields_share_the_first_kilobyte` checks it).
// With the layout Rust picked, the stack top of order 11 and `fast_max` were 16 KiB + 88
// bytes apart: the same offset in their pages. A fast call stores the one and the next one
// loads the other, and on the Intel Xeon of the 2026-11-28 bench runs that cost ~10 cycles a
// call in about one heap placement in eight (physical pages matter too: giving either page a
// fresh frame cured it). That was the `pairs` slow state of earlier notes: a probe (alloc +
// free of 16..4096 bytes, the heap copied to 48 placements per process, 6 processes, 8
// offsets in the page) had 10-15% of placements at ~4.4 ns a call against ~1.7, and none
// with this layout (0 of 384); `cargo xtask bench`'s `pairs` had 2 of 8 processes at
// 1.7-1.8x the floor, and 0 of 28 after (1.09-1.35x).
#[repr(C)]
pub struct Heap {
    /// Pointers of the regions as given (in `trees`' order; null past them), to hand out
    /// pointers with their provenance. A plain array: indexed by a region number masked to
    /// `MAX_REGIONS - 1` it needs no bounds check on the fast path.
    bases: [*mut u8; MAX_REGIONS],
    /// Shift of the minimum block (valid whenever a region exists).
    min: u32,
    /// Largest order any region can hold (0 without regions).
    max_top: u32,
    /// Largest `max(size, align)` the fast paths serve from the deferred cache: a single
    /// power-of-two block of a cached order of the first region (0 without regions).
    fast_max: usize,
    /// The minimum block less one (0 without regions): or-ed into a request's size by the
    /// fast paths so that its order is at least the minimum.
    min_mask: usize,
    /// Largest power-of-two size the fast paths serve above `fast_max` (0 without regions):
    /// exact fit takes one block for a power of two at least as large as its alignment.
    fast_pow2_max: usize,
    /// Start and length of the first region's usable range (0 and 0 without regions): the
    /// fast path of `dealloc` checks a pointer against them without going through `trees`.
    first_start: usize,
    first_len: usize,
    /// Calls, bytes and failures for [`Stats`] (every call updates them).
    counters: Counters,
    /// Freed small blocks of every region, not merged yet (`cache.rs`).
    cache: Cache,
    /// Freed exact-fit runs of every region, not merged yet (`cache.rs`).
    runs: RunCache,
    /// The last exact-fit run handed out: its region, end address and size (all 0 before the
    /// first). A run of the same size is tried right after it (`after_last_run`).
    last_run: (usize, usize, usize),
    trees: heapless::Vec<Tree, MAX_REGIONS>,
    config: Config,
}

// SAFETY: the heap exclusively owns its regions and metadata (the callers of `add_region*`
// promised so); the raw pointers are never shared with anything tied to a thread.
unsafe impl Send for Heap {}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("config", &self.config)
            .field("regions", &self.trees.len())
            .field("live_allocations", &self.stats().live_allocations)
            .finish_non_exhaustive()
    }
}

impl Heap {
    /// An empty heap with the default [`Config`]; usable in a `static`. All zero bits, so a
    /// `static` heap lives in `.bss` and costs no flash image.
    ///
    /// ```
    /// use buddy_core::{AllocError, Config, Heap};
    /// use core::alloc::Layout;
    /// static HEAP: spin::Mutex<Heap> = spin::Mutex::new(Heap::new());
    /// let mut heap = HEAP.lock();
    /// assert_eq!((heap.regions(), heap.config()), (0, Config::new()));
    /// // No region yet: nothing to allocate from.
    /// let e = heap.alloc(Layout::new::<u64>());
    /// assert_eq!(e, Err(AllocError::OutOfMemory { size: 8 }));
    /// ```
    pub const fn new() -> Heap {
        Heap::with_config(Config::new())
    }

    /// An empty heap with `config`.
    ///
    /// ```
    /// use buddy_core::{Config, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::with_config(Config::new().min_block(64));
    /// assert_eq!(heap.regions(), 0);
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::new::<u8>()).unwrap();
    /// assert_eq!(heap.usable_size(p), Ok(64)); // the configured minimum block
    /// ```
    pub const fn with_config(config: Config) -> Heap {
        Heap {
            config,
            trees: heapless::Vec::new(),
            bases: [core::ptr::null_mut(); MAX_REGIONS],
            // Set with the first region (a region is only added with a valid minimum block).
            min: 0,
            max_top: 0,
            fast_max: 0,
            min_mask: 0,
            first_start: 0,
            first_len: 0,
            fast_pow2_max: 0,
            cache: Cache::new(),
            runs: RunCache::new(),
            last_run: (0, 0, 0),
            counters: Counters {
                allocations: 0,
                frees: 0,
                handed: 0,
                high_water: 0,
                slack: 0,
                requested_total: 0,
                failed: 0,
            },
        }
    }

    /// Writes an empty heap with `config` into `slot`, in place: a `Heap` is some 35 KiB on 64-bit targets, and
    /// `slot.write(Heap::with_config(config))` may build it on the stack first (always in
    /// debug builds), too much for a thread with a small stack.
    ///
    /// ```
    /// use buddy_core::{Config, Heap};
    /// use core::mem::MaybeUninit;
    /// let mut slot = Box::new(MaybeUninit::<Heap>::uninit());
    /// let heap = Heap::init_in(&mut slot, Config::new().min_block(64));
    /// assert_eq!(heap.config().block(), 64);
    /// assert_eq!(heap.regions(), 0);
    /// ```
    pub fn init_in(slot: &mut MaybeUninit<Heap>, config: Config) -> &mut Heap {
        let p = slot.as_mut_ptr();
        // SAFETY: `p` is valid for writes of one `Heap`. All zero bits is `Heap::new()`: every
        // field of it is zero (`Config` stores its fields as differences from the defaults;
        // counters, orders, lengths and base pointers are 0 or null) but the uninitialised
        // buffer of `trees`, for which zeros are as good as anything (a static `Heap::new()` lands in `.bss`: the
        // firmware pass of `cargo xtask test` checks it). `with_config` differs from it in
        // `config` only.
        unsafe {
            p.write_bytes(0, 1);
            core::ptr::addr_of_mut!((*p).config).write(config);
            slot.assume_init_mut()
        }
    }

    /// The configuration.
    ///
    /// ```
    /// use buddy_core::{Config, Heap};
    /// let heap = Heap::with_config(Config::compact());
    /// assert_eq!(heap.config(), Config::compact());
    /// assert_eq!(heap.config().exact_fit_threshold(), 512);
    /// ```
    pub const fn config(&self) -> Config {
        self.config
    }

    /// Number of regions added.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::mem::MaybeUninit;
    /// let mut heap = Heap::new();
    /// assert_eq!(heap.regions(), 0);
    /// heap.add_region_from_slice(Box::leak(Box::new([MaybeUninit::uninit(); 4096]))).unwrap();
    /// heap.add_region_from_slice(Box::leak(Box::new([MaybeUninit::uninit(); 4096]))).unwrap();
    /// assert_eq!(heap.regions(), 2);
    /// ```
    pub fn regions(&self) -> usize {
        self.trees.len()
    }

    fn check_new_region(&self, start: *mut u8, len: usize) -> Result<(usize, u32), RegionError> {
        let min = self.config.min_shift().ok_or(RegionError::BadMinBlock {
            min_block: self.config.block(),
        })?;
        if start.is_null() {
            return Err(RegionError::Null);
        }
        let s = start as usize;
        let e = s.checked_add(len).ok_or(RegionError::Wraps)?;
        if self.trees.is_full() {
            return Err(RegionError::Full);
        }
        if self.overlaps(s, e) {
            return Err(RegionError::Overlaps);
        }
        Ok((e, min))
    }

    /// `[s, e)` overlaps a region of this heap or the metadata of one (metadata given apart
    /// from its region lies outside it).
    fn overlaps(&self, s: usize, e: usize) -> bool {
        self.trees.iter().any(|t| {
            let (ms, me) = t.meta_range();
            (s < t.region_start + t.region_len && t.region_start < e) || (s < me && ms < e)
        })
    }

    /// Adds the region `[start, start + len)`, carving its metadata off the front of it.
    ///
    /// About 2.4% of the region goes to metadata at 16-byte blocks (see [`metadata_words`]).
    /// The region may start and end anywhere; blocks stay aligned to their size in absolute
    /// addresses.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    ///
    /// static mut RAM: [u8; 1 << 16] = [0; 1 << 16];
    /// let ram = (&raw mut RAM).cast::<u8>();
    /// let mut heap = Heap::new();
    /// // SAFETY: RAM is used by nothing but this heap (its first 3 bytes by nothing at all).
    /// unsafe { heap.add_region(ram.wrapping_add(3), (1 << 16) - 3) }.unwrap();
    /// let (start, end) = heap.ranges().next().unwrap();
    /// assert!(start > ram as usize + 3 && end <= ram as usize + (1 << 16)); // metadata in front
    /// let p = heap.alloc(Layout::from_size_align(256, 8).unwrap()).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 256, 0); // aligned to its size, whatever the start
    /// ```
    ///
    /// # Errors
    /// [`RegionError`] if `start` is null, the range wraps, overlaps a region of this heap
    /// (or the metadata of one),
    /// leaves no whole block after metadata and alignment, the heap is full, or the configured
    /// minimum block is invalid. The heap is then unchanged.
    ///
    /// # Safety
    /// - `[start, start + len)` is valid for reads and writes, and used by nothing but this heap
    ///   for as long as the heap (or any allocation from it) lives.
    pub unsafe fn add_region(&mut self, start: *mut u8, len: usize) -> Result<(), RegionError> {
        let (e, min) = self.check_new_region(start, len)?;
        let s = start as usize;
        let bound = metadata_words(len, self.config.block());
        let meta_start = align_up(s, 3).ok_or(RegionError::Wraps)?;
        let too_small = RegionError::TooSmall {
            needed: carved_len_enough(meta_start - s, min),
        };
        let meta_end = bound
            .checked_mul(8)
            .and_then(|b| meta_start.checked_add(b))
            .ok_or(too_small)?;
        let ustart = align_up(meta_end, min).ok_or(too_small)?;
        let uend = align_down(e, min);
        if ustart >= uend || uend - ustart < 1 << min {
            return Err(too_small);
        }
        let plan = Plan::new(ustart, uend, min);
        debug_assert!(plan.words <= bound);
        // SAFETY: `[meta_start, meta_start + 8 * plan.words)` lies inside the region (it ends at
        // or before `meta_end <= ustart < uend <= e`), which the caller gave us for our exclusive
        // use; it is 8-aligned, and no other part of the heap covers it (usable memory starts at
        // `ustart`). Zeroed by `Tree::new` before any read.
        let meta = unsafe {
            core::slice::from_raw_parts_mut(start.add(meta_start - s).cast::<u64>(), plan.words)
        };
        self.push_tree(Tree::new(meta, s, len, ustart, uend, &plan, false), start);
        Ok(())
    }

    /// Adds the region `[start, start + len)` with its metadata in `meta`, so that no byte of
    /// the region is ever read or written by the heap: page frames, device memory, memory that
    /// must stay untouched. `meta` needs [`metadata_words(len, min_block)`](metadata_words)
    /// words (fewer may do for a well-aligned region; the exact need is checked).
    ///
    /// # Example: a page-frame allocator
    ///
    /// ```
    /// use buddy_core::{metadata_words, Config, Heap};
    /// use core::alloc::Layout;
    ///
    /// const RAM: usize = 4 << 20; // 4 MiB of "physical memory" at some address
    /// static mut META: [u64; metadata_words(RAM, 4096)] = [0; metadata_words(RAM, 4096)];
    ///
    /// let mut frames = Heap::with_config(Config::new().min_block(4096).exact_fit(false));
    /// let phys = core::ptr::without_provenance_mut::<u8>(0x8000_0000); // never dereferenced
    /// // SAFETY: the "RAM" is not used by anything else and META only by this heap.
    /// unsafe { frames.add_region_with_metadata(phys, RAM, &mut *(&raw mut META)) }.unwrap();
    ///
    /// let two_pages = Layout::from_size_align(8192, 8192).unwrap();
    /// let f = frames.alloc(two_pages).unwrap();
    /// assert_eq!(f.as_ptr() as usize % 8192, 0);
    /// assert_eq!(f.as_ptr() as usize, 0x8000_0000);
    /// // SAFETY: f came from this heap with this layout.
    /// unsafe { frames.dealloc(f, two_pages) };
    /// ```
    ///
    /// # Errors
    /// As [`add_region`](Heap::add_region), plus [`RegionError::MetadataTooSmall`], and
    /// [`RegionError::Overlaps`] if `meta` overlaps the region, a region of this heap or the
    /// metadata of one.
    ///
    /// # Safety
    /// - Memory in `[start, start + len)` is not used by anything else while the heap hands it
    ///   out (the heap itself never dereferences it).
    pub unsafe fn add_region_with_metadata(
        &mut self,
        start: *mut u8,
        len: usize,
        meta: &'static mut [u64],
    ) -> Result<(), RegionError> {
        // SAFETY: the caller's contract; `zeroed: false` asks for nothing more.
        unsafe { self.add_region_with_meta(start, len, meta, false) }
    }

    /// [`add_region_with_metadata`](Heap::add_region_with_metadata) for metadata that is
    /// known to be all zeros already, such as fresh anonymous memory from the OS: the heap
    /// skips zero-filling it, so its pages are touched only as the heap's bitmaps need them
    /// (a few words for an aligned region, instead of all ~2.4% of it).
    ///
    /// ```
    /// use buddy_core::{metadata_words, Config, Heap};
    ///
    /// const LEN: usize = 1 << 20;
    /// // Zeroed metadata (in a real program: fresh pages from the OS, untouched so far).
    /// let meta: &'static mut [u64] = Box::leak(vec![0; metadata_words(LEN, 4096)].into());
    /// let mut frames = Heap::with_config(Config::new().min_block(4096));
    /// let phys = core::ptr::without_provenance_mut::<u8>(0x4000_0000); // never dereferenced
    /// // SAFETY: the "RAM" is used by nothing else, and every word of `meta` is zero.
    /// unsafe { frames.add_region_with_zeroed_metadata(phys, LEN, meta) }.unwrap();
    /// assert_eq!(frames.stats().free_bytes, LEN); // metadata apart: all of it is usable
    /// ```
    ///
    /// # Errors
    /// As [`add_region_with_metadata`](Heap::add_region_with_metadata).
    ///
    /// # Safety
    /// - As [`add_region_with_metadata`](Heap::add_region_with_metadata).
    /// - Every word of `meta` is zero.
    pub unsafe fn add_region_with_zeroed_metadata(
        &mut self,
        start: *mut u8,
        len: usize,
        meta: &'static mut [u64],
    ) -> Result<(), RegionError> {
        debug_assert!(
            meta.iter().take(64).all(|&w| w == 0),
            "metadata is not zeroed"
        );
        // SAFETY: the caller's contract, including that `meta` is all zeros.
        unsafe { self.add_region_with_meta(start, len, meta, true) }
    }

    /// Adds a region with caller-provided metadata, zeroing it unless `zeroed`.
    ///
    /// # Safety
    /// As [`add_region_with_metadata`](Heap::add_region_with_metadata); if `zeroed`, `meta`
    /// is all zeros.
    unsafe fn add_region_with_meta(
        &mut self,
        start: *mut u8,
        len: usize,
        meta: &'static mut [u64],
        zeroed: bool,
    ) -> Result<(), RegionError> {
        let (e, min) = self.check_new_region(start, len)?;
        let s = start as usize;
        let ustart = align_up(s, min).ok_or(RegionError::Wraps)?;
        let uend = align_down(e, min);
        if ustart >= uend || uend - ustart < 1 << min {
            return Err(RegionError::TooSmall {
                needed: (2 << min) - 1,
            });
        }
        let plan = Plan::new(ustart, uend, min);
        if meta.len() < plan.words {
            return Err(RegionError::MetadataTooSmall {
                needed: plan.words,
                got: meta.len(),
            });
        }
        let (ms, me) = (
            meta.as_ptr() as usize,
            meta.as_ptr() as usize + meta.len() * 8,
        );
        if (ms < e && s < me) || self.overlaps(ms, me) {
            return Err(RegionError::Overlaps);
        }
        self.push_tree(Tree::new(meta, s, len, ustart, uend, &plan, zeroed), start);
        Ok(())
    }

    /// Safe twin of [`add_region`](Heap::add_region): the `'static` borrow proves the memory is
    /// the heap's alone.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::mem::MaybeUninit;
    /// let mem: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new([MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// assert!(heap.stats().free_bytes > 7000);
    /// ```
    ///
    /// # Errors
    /// As [`add_region`](Heap::add_region).
    pub fn add_region_from_slice(
        &mut self,
        mem: &'static mut [MaybeUninit<u8>],
    ) -> Result<(), RegionError> {
        // SAFETY: a `'static` exclusive borrow: valid for reads and writes, and nobody else can
        // use the memory any more.
        unsafe { self.add_region(mem.as_mut_ptr().cast(), mem.len()) }
    }

    fn push_tree(&mut self, tree: Tree, base: *mut u8) {
        // Both vectors have room: `check_new_region` rejected a full heap, and they grow together.
        self.max_top = self.max_top.max(tree.top);
        if self.trees.is_empty() {
            self.cache.init(tree.min);
            self.min = tree.min;
            // Requests of at most `fast_max` bytes are exactly those that `request` gives one
            // block of a cached order of this tree (no exact-fit run).
            let m = self.min;
            let cached = 1usize << (m + CACHE_ORDERS as u32 - 1).min(tree.top);
            let single = if self.config.is_exact_fit() {
                align_down(self.config.exact_fit_threshold(), m)
            } else {
                usize::MAX
            };
            self.fast_max = cached.min(single);
            self.fast_pow2_max = cached;
            self.min_mask = (1 << m) - 1;
            (self.first_start, self.first_len) = (tree.region_start, tree.region_len);
        }
        self.bases[self.trees.len() % MAX_REGIONS] = base;
        let _ = self.trees.push(tree);
    }

    /// Order and handed-out size of a request, or why it cannot be served by any region.
    #[inline]
    fn request(&self, layout: Layout) -> Result<(u32, usize), AllocError> {
        let size = layout.size();
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        // `max_top` is 0 until a region is added, and a region is only added with a valid
        // minimum block, so `min` is valid whenever the request can be served.
        let (min, top) = (self.min, self.max_top);
        if top == 0 {
            return Err(AllocError::OutOfMemory { size });
        }
        // `Layout` keeps `size <= isize::MAX`, so neither the rounding nor the shift overflows.
        let mask = (1usize << min) - 1;
        let s = (size + mask) & !mask;
        let k = usize::BITS - (s - 1).leading_zeros();
        let a = layout.align().trailing_zeros();
        let k = k.max(a).max(min);
        if k > top {
            return Err(if a > top {
                AllocError::AlignTooLarge {
                    align: layout.align(),
                }
            } else {
                AllocError::TooLarge { size }
            });
        }
        // Exact fit for requests above the threshold; smaller ones take one power-of-two
        // block, which the deferred cache serves without splitting or merging.
        let s = if self.config.is_exact_fit() && s > self.config.exact_fit_threshold() {
            // At most `pieces` pieces: round up to a multiple of 2^(k - pieces).
            let g = k
                .saturating_sub(self.config.exact_fit_max_pieces())
                .max(min);
            let g = (1usize << g) - 1;
            (s + g) & !g
        } else {
            1 << k
        };
        Ok((k, s))
    }

    #[inline]
    fn tree_of(&self, p: usize) -> Option<usize> {
        self.trees.iter().position(|t| t.owns(p))
    }

    #[inline]
    fn ptr(&self, t: usize, a: usize) -> NonNull<u8> {
        let base = self.bases[t % MAX_REGIONS];
        // SAFETY: `a` is inside region `t` (it is a block of its tree), so not null.
        unsafe { NonNull::new_unchecked(base.with_addr(a)) }
    }

    /// Allocates a block for `layout`: aligned to `layout.align()`, at least `layout.size()` bytes.
    ///
    /// ```
    /// use buddy_core::{AllocError, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::from_size_align(100, 64).unwrap()).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// assert!(heap.usable_size(p).unwrap() >= 100);
    /// let huge = Layout::from_size_align(1 << 20, 8).unwrap();
    /// assert_eq!(heap.alloc(huge), Err(AllocError::TooLarge { size: 1 << 20 }));
    /// assert_eq!(heap.stats().live_allocations, 1); // the refusal changed nothing
    /// ```
    ///
    /// # Errors
    /// [`AllocError`]; the heap is then unchanged (an out-of-memory failure may first coalesce
    /// the deferred cache).
    ///
    /// # Time Complexity
    /// `O(log n)` in minimum blocks, whatever the history.
    #[inline(always)]
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // Fast path: a recently freed block of the right order, from any region.
        if let Some(k) = self.fast_order(layout)
            && let Some((a, t)) = self.cache.pop_order(k)
        {
            self.note_pop(layout.size(), k);
            return Ok(self.ptr(t, a));
        }
        self.alloc_slow(layout)
    }

    /// The order of a request the fast paths can serve, else `None`. They serve a single
    /// block of a cached order of the first region: up to `fast_max` bytes, or a power of
    /// two at least as large as its alignment up to `fast_pow2_max` (exact fit takes one
    /// block for those: `Vec`'s doubling capacities, say).
    #[inline(always)]
    fn fast_order(&self, layout: Layout) -> Option<u32> {
        // `m`: `max(size, align, minimum block) - 1` has the same highest bit as the or of
        // the three less one (the alignment and the minimum block are powers of two), which
        // is at least as large. So below a power of two (`fast_pow2_max`, and `fast_max` by
        // default) `m < limit` exactly when `max(size, align) <= limit`; below another, a
        // request at the very edge takes the slow path, which serves it the same. A size of
        // 0 wraps to all ones. `size & m == 0` is a power-of-two size at least as large as
        // the alignment (and then `m = size - 1`).
        let m = layout.size().wrapping_sub(1) | (layout.align() - 1) | self.min_mask;
        if m < self.fast_max || (m < self.fast_pow2_max && layout.size() & m == 0) {
            // `request`'s order: at least `min` (a region exists, so `min_mask` is
            // `2^min - 1`) and a cached one (`fast_pow2_max <= 2^(min + CACHE_ORDERS - 1)`).
            // `| 1` only tells the compiler that `m` is not 0.
            return Some((m | 1).ilog2() + 1);
        }
        None
    }

    #[inline(never)]
    fn alloc_slow(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let r = self.alloc_uncounted(layout);
        if let Err(e) = r {
            self.refused(layout, e);
        }
        r
    }

    /// Counts (and logs) a refused request.
    #[cold]
    #[cfg_attr(not(feature = "log"), allow(unused_variables))]
    fn refused(&mut self, layout: Layout, e: AllocError) {
        self.counters.failed += 1;
        log_warn!("buddy: alloc {:?} refused: {}", layout, e);
    }

    /// [`alloc`](Heap::alloc) past the fast path, without counting a refusal: the run cache,
    /// a run placed beside a free block, one block (coalescing the caches if need be), and
    /// after that coalescing a run placed again.
    fn alloc_uncounted(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let (k, s) = self.request(layout)?;
        if s < 1 << k {
            return self.alloc_run(layout, k, s);
        }
        if let Some((a, t)) = self.take_block(k) {
            self.note_alloc(layout.size(), s);
            return Ok(self.ptr(t, a));
        }
        Err(AllocError::OutOfMemory {
            size: layout.size(),
        })
    }

    /// [`alloc_uncounted`](Heap::alloc_uncounted) of an exact-fit run of `s < 2^k` bytes.
    fn alloc_run(&mut self, layout: Layout, k: u32, s: usize) -> Result<NonNull<u8>, AllocError> {
        let align = layout.align();
        let placed = self
            .run_units(s)
            .and_then(|u| self.runs.pop(u, align - 1))
            .or_else(|| self.after_last_run(s, align))
            .or_else(|| self.place_run(k, s, align))
            .or_else(|| {
                let (a, t) = self.take_block(k)?;
                Some((self.carve_run(t, a, k, s, align), t))
            })
            // `take_block` coalesced every cached block and run before it failed: the space
            // of one may now complete a run after the last one or beside a free block (a
            // request never fails while cached blocks could serve it).
            .or_else(|| self.after_last_run(s, align))
            .or_else(|| self.place_run(k, s, align));
        let Some((a, t)) = placed else {
            return Err(AllocError::OutOfMemory {
                size: layout.size(),
            });
        };
        self.last_run = (t, a + s, s);
        self.note_alloc(layout.size(), s);
        Ok(self.ptr(t, a))
    }

    /// A run of `s` bytes right after the last run handed out, if that one had the same size
    /// and the space after it is free: requests of one size (a program's objects of one
    /// type) then lie end to end, where a run carved from a block of its own order leaves the
    /// block's tail free for smaller requests only. This departs from lowest address first
    /// for those runs only; a request of another size, or one whose place is taken, goes the
    /// usual way. `O(log n)`: one [`Tree::claim`].
    ///
    /// Measured under `LD_PRELOAD` with [`Config::compact`] (1,088-byte runs), RSS from
    /// `/usr/bin/time`: 100,000 `calloc(1, 1033)` touched 204 MB before (a 2 KiB block each),
    /// 109 MB with it (glibc 105 MB); python3 making 10^5 `bytes(1000)` 217 MB and 65k page
    /// faults before, 123 MB and 41k with it (glibc 117 MB, 35k). The bench's random workloads, whose consecutive
    /// requests rarely share a size, did not move (random-actions 19.7 and 19.3 ns against
    /// 19.8 and 21.1 in interleaved runs; efficiency 92.7% either way).
    fn after_last_run(&mut self, s: usize, align: usize) -> Option<(usize, usize)> {
        let (t, end, size) = self.last_run;
        if size != s {
            return None;
        }
        // The first piece of a run must be larger than the minimum block (`Tree::claim`).
        let p = end.checked_next_multiple_of(align.max(2 << self.min))?;
        let tree = self.trees.get_mut(t)?;
        tree.claim(p, s).then_some((p, t))
    }

    /// Cuts taken block `(a, k)` of region `t` into a run of `s < 2^k` bytes and frees the
    /// rest; returns the run's start. The run ends where the block ends when its start can be
    /// aligned to `align` and its first, smallest piece can say "the run goes on" (`s` a
    /// multiple of `align` and of two minimum blocks); else it starts where the block starts.
    ///
    /// Why the end: a run at the start of its block begins on a page boundary (a run is longer
    /// than 4 KiB by default), and a caller that puts a small header first (sqlite's 8-byte
    /// size) then `read`s a page of a file into it has the kernel copy a page-aligned source
    /// to a destination 8 bytes further on: on this machine's AMD EPYC, whose `rep movsb`
    /// stalls when a store lands just past a load in the same 4 KiB offset, a `pread` of 4 KiB
    /// took 1952 ns there against 630 at other offsets. Ending at the block's end puts the
    /// start at `-s mod 4096` instead. `O(k - min)`, as the carve from the start.
    fn carve_run(&mut self, t: usize, a: usize, k: u32, s: usize, align: usize) -> usize {
        let tree = &mut self.trees[t];
        if s % align == 0 && s % (2 << self.min) == 0 {
            return tree.carve_end(a, k, s);
        }
        tree.carve(a, k, s);
        a
    }

    /// Takes one block of order `k` (a valid order of some region): the cache, then the
    /// bitmaps (smallest fitting order, lowest address, first region first), then a larger
    /// cached block split down, then after coalescing the smaller cached orders one at a time,
    /// largest first (a request never fails while cached blocks could serve it). `O(log n)`.
    fn take_block(&mut self, k: u32) -> Option<(usize, usize)> {
        let r = (k - self.min) as usize;
        if let Some(b) = self.cache.pop(r) {
            return Some(b);
        }
        if let Some(b) = self.take_from_bitmaps(k) {
            return Some(b);
        }
        for rr in r + 1..CACHE_ORDERS {
            if let Some((a, t)) = self.cache.pop(rr) {
                self.trees[t].split_down(a, self.min + rr as u32, k);
                return Some((a, t));
            }
        }
        if self.runs.len() > 0 {
            self.flush_runs();
            if let Some(b) = self.take_from_bitmaps(k) {
                return Some(b);
            }
        }
        for rr in (0..r.min(CACHE_ORDERS)).rev() {
            if self.cache.len(rr) > 0 {
                self.flush_order(rr);
                if let Some(b) = self.take_from_bitmaps(k) {
                    return Some(b);
                }
            }
        }
        None
    }

    /// Places a run of `s` bytes (`s < 2^k`) in the free space
    /// beside a free block `b` of order `h = k - 1`, its largest piece, instead of splitting
    /// a block of order `k`: at `b` over a free prefix of `b`'s buddy when `b` is a left
    /// child, or ending at `b + 2^h` over a free suffix of the buddy when `b` is a right
    /// child. Tries the lowest free blocks of order `h`, first region first, [`PLACE_TRIES`]
    /// in all; `None`, and nothing changed, when none has the room.
    ///
    /// Why: carving every run from a block of its own order leaves its tail free in small
    /// blocks, and when more tails are freed than small requests take, they pile up between
    /// live runs where no large request fits. Filling the space beside a free block instead
    /// uses those tails and keeps large blocks whole. Measured with the bench's `efficiency`
    /// workload (64 MiB, 20 seeds, [`Config::compact`]): 91.0% without, 92.7% with (82.3% and
    /// 87.2% without the run cache). No effect at the default configuration (79.6%), whose
    /// runs are all above 4 KiB.
    ///
    /// `O(PLACE_TRIES × log n)`: each try is a find-first, a walk down the buddy, and a claim.
    fn place_run(&mut self, k: u32, s: usize, align: usize) -> Option<(usize, usize)> {
        let h = k - 1;
        // A small run in a block of a large alignment has no piece of order `h`.
        let r = s.checked_sub(1 << h).filter(|&r| r > 0)?;
        let mut tries = PLACE_TRIES;
        for (t, tree) in self.trees.iter_mut().enumerate() {
            let mut from = 0;
            while tries > 0 {
                let Some(b) = tree.next_free(h, from) else {
                    break;
                };
                tries -= 1;
                from = b + (1 << h);
                let buddy = b ^ (1 << h);
                // A left child extends into the start of its buddy, a right child into its end.
                let right_child = b & (1 << h) != 0;
                if tree.free_at_edge(buddy, h, r, right_child) < r {
                    continue;
                }
                let p = if right_child { b - r } else { b };
                if p % align == 0 && tree.claim(p, s) {
                    return Some((p, t));
                }
            }
        }
        None
    }

    /// A block of order `k` from the first region's bitmaps that has one.
    fn take_from_bitmaps(&mut self, k: u32) -> Option<(usize, usize)> {
        self.trees
            .iter_mut()
            .enumerate()
            .find_map(|(t, tree)| tree.alloc_from_bitmaps(k).map(|a| (a, t)))
    }

    /// Frees the live allocation of `s` bytes at `p` in region `t`, and counts it: one block
    /// (the common case) to the deferred cache, a run straight to the bitmaps.
    fn release(&mut self, t: usize, p: usize, s: usize) {
        if single_block(p, s) {
            self.free_single(p, s.trailing_zeros(), t);
        } else if let Some(u) = self.run_units(s) {
            if let Some((a, ta, u)) = self.runs.push_or_evict(u, p, t) {
                self.trees[ta].free_run(a, (u as usize) << self.min);
            }
        } else {
            self.trees[t].free_run(p, s);
        }
        self.note_free(s);
    }

    /// Frees single block `(a, k)` of region `t`: into the cache, or merged (the cache's
    /// highest block instead of it when the order is full).
    fn free_single(&mut self, a: usize, k: u32, t: usize) {
        if let Some((v, vt)) = self.cache.push_or_evict((k - self.min) as usize, a, t) {
            self.trees[vt].merge(v, k);
        }
    }

    /// Length in minimum blocks of a run of `s` bytes that the run cache takes: not a power of
    /// two (those are single blocks, or runs grown in place that no request asks for) and
    /// shorter than the largest cached order.
    #[inline]
    fn run_units(&self, s: usize) -> Option<u32> {
        let u = s >> self.min;
        (!s.is_power_of_two() && u < 1 << CACHE_ORDERS).then_some(u as u32)
    }

    /// Frees every cached run into its region's bitmaps.
    fn flush_runs(&mut self) {
        let (trees, min) = (&mut self.trees, self.min);
        self.runs.drain(|a, t, u| {
            if let Some(tree) = trees.get_mut(t) {
                tree.free_run(a, (u as usize) << min);
            }
        });
    }

    /// Merges the cached blocks of order index `r` into their regions' bitmaps.
    fn flush_order(&mut self, r: usize) {
        while let Some((a, t)) = self.cache.pop(r) {
            self.trees[t].merge(a, self.min + r as u32);
        }
    }

    /// Checks a size-less free of `p` in region `t`: the run's size, or why not (a cached block
    /// looks allocated to the bitmaps).
    fn run_at(&self, t: usize, p: usize) -> Result<usize, FreeError> {
        let s = self.trees[t].run_at(p)?;
        let r = s.trailing_zeros().wrapping_sub(self.min) as usize;
        if single_block(p, s) && self.cache.contains(r, p, t) {
            return Err(FreeError::DoubleFree);
        }
        if let Some(u) = self.run_units(s)
            && self.runs.contains(u, p, t)
        {
            return Err(FreeError::DoubleFree);
        }
        Ok(s)
    }

    #[inline]
    fn note_alloc(&mut self, requested: usize, handed: usize) {
        let c = &mut self.counters;
        c.allocations = c.allocations.wrapping_add(1);
        c.handed = c.handed.wrapping_add(handed);
        c.take(handed);
        c.requested_total = c.requested_total.wrapping_add(requested);
    }

    #[inline]
    fn note_free(&mut self, handed: usize) {
        let c = &mut self.counters;
        c.frees = c.frees.wrapping_add(1);
        c.give(handed);
    }

    /// A fast-path allocation: one block of order `k` (the cache counted the call).
    #[inline(always)]
    fn note_pop(&mut self, requested: usize, k: u32) {
        let c = &mut self.counters;
        c.take(1 << k);
        c.requested_total = c.requested_total.wrapping_add(requested);
    }

    /// A fast-path free: one block of order `k` (the cache counted the call).
    #[inline(always)]
    fn note_push(&mut self, k: u32) {
        self.counters.give(1 << k);
    }

    /// Frees a block allocated with `layout`.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let free_before = heap.stats().free_bytes;
    /// let layout = Layout::from_size_align(256, 16).unwrap();
    /// let p = heap.alloc(layout).unwrap();
    /// // SAFETY: p came from this heap with this layout, and nothing uses it any more.
    /// unsafe { heap.dealloc(p, layout) };
    /// assert_eq!(heap.stats().live_allocations, 0);
    /// assert_eq!(heap.stats().free_bytes, free_before);
    /// ```
    ///
    /// # Safety
    /// - `ptr` was returned by [`alloc`](Heap::alloc) (or `realloc`) of this heap with this
    ///   `layout` (for `realloc`, the new size and the old alignment) and is not freed yet.
    ///
    /// Use [`free`](Heap::free) when the pointer cannot be trusted: it checks.
    ///
    /// # Time Complexity
    /// `O(log n)`.
    #[inline(always)]
    pub unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let p = ptr.as_ptr() as usize;
        // Fast path: a single block of a cached order of the first region, cache not full
        // (other regions go through the slow path to the same cache). An allocation resized
        // in place may be a run of a power-of-two size that is not aligned to it: that takes
        // the slow path too.
        if let Some(k) = self.fast_order(layout)
            && ptr.addr().trailing_zeros() >= k
            && p.wrapping_sub(self.first_start) < self.first_len
        {
            debug_assert_eq!(
                self.trees[0].run_at(p),
                Ok(1 << k),
                "dealloc with a wrong layout"
            );
            if self.cache.push_order(k, p, 0) {
                self.note_push(k);
                return;
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.dealloc_slow(ptr, layout) }
    }

    /// [`dealloc`](Heap::dealloc) past the fast path.
    ///
    /// # Safety
    /// As [`dealloc`](Heap::dealloc).
    #[inline(never)]
    unsafe fn dealloc_slow(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let p = ptr.as_ptr() as usize;
        let (Ok((_, s)), Some(t)) = (self.request(layout), self.tree_of(p)) else {
            debug_assert!(
                false,
                "dealloc of a pointer or layout this heap never handed out"
            );
            return;
        };
        debug_assert_eq!(self.run_at(t, p), Ok(s), "dealloc with a wrong layout");
        self.release(t, p, s);
    }

    /// Frees the allocation starting at `ptr` without being told its size (C's `free`): the
    /// size comes from the metadata. Returns the number of bytes handed back.
    ///
    /// A pointer that is not the start of a live allocation is refused and nothing changes.
    ///
    /// ```
    /// use buddy_core::{FreeError, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::from_size_align(5000, 8).unwrap()).unwrap();
    /// // SAFETY: p + 16 lies inside p's allocation; a pointer into it is refused, changing nothing.
    /// assert_eq!(unsafe { heap.free(p.add(16)) }, Err(FreeError::Interior));
    /// // SAFETY: p is live and nothing uses it any more.
    /// assert_eq!(unsafe { heap.free(p) }, Ok(5120)); // the size comes from the metadata
    /// // SAFETY: a double free is detected and changes nothing.
    /// assert_eq!(unsafe { heap.free(p) }, Err(FreeError::DoubleFree));
    /// ```
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`], [`FreeError::Interior`] or [`FreeError::Foreign`].
    ///
    /// # Safety
    /// - If `ptr` is the start of a live allocation of this heap, nobody uses that memory any
    ///   more (a wrong pointer is detected; a right pointer freed too early is not).
    ///
    /// # Time Complexity
    /// `O(log n)`.
    pub unsafe fn free(&mut self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        // SAFETY: forwarded contract; every size is below `usize::MAX`, so it is freed.
        unsafe { self.free_below(ptr, usize::MAX) }.map(|(s, _)| s)
    }

    /// [`free`](Heap::free) of an allocation smaller than `limit` bytes; a larger one is
    /// checked the same way and left live. Returns the allocation's size and whether it was
    /// freed: one metadata lookup for a caller that must act on a large block's memory before
    /// it frees it (buddy-std gives its pages back to the OS first) and on a small one not at
    /// all, where [`usable_size`](Heap::usable_size) and then [`free`](Heap::free) look the
    /// block up twice.
    ///
    /// ```
    /// use buddy_core::{FreeError, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let small = heap.alloc(Layout::from_size_align(100, 8).unwrap()).unwrap();
    /// let large = heap.alloc(Layout::from_size_align(5000, 8).unwrap()).unwrap();
    /// // SAFETY: both are live and nothing uses them any more.
    /// unsafe {
    ///     assert_eq!(heap.free_below(small, 4096), Ok((128, true))); // freed
    ///     assert_eq!(heap.free_below(large, 4096), Ok((5120, false))); // still live
    ///     assert_eq!(heap.free_below(small, 4096), Err(FreeError::DoubleFree));
    ///     assert_eq!(heap.free(large), Ok(5120));
    /// }
    /// ```
    ///
    /// # Errors
    /// As [`free`](Heap::free); nothing changes.
    ///
    /// # Safety
    /// As [`free`](Heap::free) when the allocation is smaller than `limit`.
    ///
    /// # Time Complexity
    /// `O(log n)`.
    pub unsafe fn free_below(
        &mut self,
        ptr: NonNull<u8>,
        limit: usize,
    ) -> Result<(usize, bool), FreeError> {
        let p = ptr.as_ptr() as usize;
        let r = match self.tree_of(p) {
            Some(t) if self.trees[t].contains(p) && p % self.config.block() == 0 => {
                self.run_at(t, p).map(|s| (t, s))
            }
            _ => Err(FreeError::Foreign),
        };
        match r {
            Ok((t, s)) if s < limit => {
                self.release(t, p, s);
                Ok((s, true))
            }
            Ok((_, s)) => Ok((s, false)),
            Err(e) => {
                log_warn!("buddy: free({:#x}) refused: {}", p, e);
                Err(e)
            }
        }
    }

    /// Size in bytes of the allocation starting at `ptr` (at least what was asked), checked
    /// like [`free`](Heap::free) but changing nothing.
    ///
    /// ```
    /// use buddy_core::{FreeError, Heap};
    /// use core::alloc::Layout;
    /// use core::ptr::NonNull;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::from_size_align(100, 8).unwrap()).unwrap();
    /// assert_eq!(heap.usable_size(p), Ok(128)); // one power-of-two block
    /// assert_eq!(heap.usable_size(p), Ok(128)); // still live: nothing changed
    /// let local = 0u64;
    /// assert_eq!(heap.usable_size(NonNull::from(&local).cast()), Err(FreeError::Foreign));
    /// ```
    ///
    /// # Errors
    /// As [`free`](Heap::free).
    pub fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        let p = ptr.as_ptr() as usize;
        match self.tree_of(p) {
            Some(t) if self.trees[t].contains(p) && p % self.config.block() == 0 => {
                self.run_at(t, p)
            }
            _ => Err(FreeError::Foreign),
        }
    }

    /// Resizes the allocation at `ptr` to `new_size` bytes (alignment `old.align()`) without
    /// moving it: growing succeeds when the blocks after the allocation are free; shrinking
    /// succeeds unless the smaller size needs a larger block (a small request with a large
    /// alignment takes a whole block of that alignment, where a larger request above the
    /// exact-fit threshold takes a shorter run: `(5000, 8192)` holds 5120 bytes, `(4000,
    /// 8192)` needs 8192), which is growing. For callers that move the data themselves
    /// (outside a lock, say).
    ///
    /// On success the allocation is `new_size` bytes long and must be freed with the layout
    /// `(new_size, old.align())`. Nothing is counted as a failed request. A single block grows
    /// into buddies freed a moment ago (waiting whole in the deferred cache: they are taken
    /// out of it); other cached blocks count as taken here, and [`flush`](Heap::flush) merges
    /// them.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// // Aligned to 1 KiB, so that the block can grow to 1 KiB where it is.
    /// let old = Layout::from_size_align(64, 1024).unwrap();
    /// let p = heap.alloc(old).unwrap();
    /// // SAFETY: p is live with layout `old`; the blocks after it are free.
    /// unsafe { heap.realloc_in_place(p, old, 1024) }.unwrap();
    /// assert_eq!(heap.usable_size(p), Ok(1024));
    /// ```
    ///
    /// # Errors
    /// [`AllocError::OutOfMemory`] if the neighbouring blocks are not free (or `ptr` is not
    /// aligned for the new size's largest block); the bad-request errors of
    /// [`alloc`](Heap::alloc) for a bad `new_size`. The heap is then unchanged.
    ///
    /// # Safety
    /// - `ptr` was allocated by this heap with `old` and is live.
    ///
    /// # Time Complexity
    /// `O(log n)`.
    pub unsafe fn realloc_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let new =
            Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError::SizeOverflow)?;
        let (_, s_new) = self.request(new)?;
        let p = ptr.as_ptr() as usize;
        let (Ok((_, s_old)), Some(t)) = (self.request(old), self.tree_of(p)) else {
            debug_assert!(
                false,
                "realloc of a pointer or layout this heap never handed out"
            );
            return Err(AllocError::OutOfMemory { size: new_size });
        };
        if s_new == s_old {
            return Ok(());
        }
        if single_block(p, s_old) && single_block(p, s_new) {
            // One block to another: split off, or absorb, the buddies on the right. No merge
            // up and split down again, and nothing touched if it cannot be done.
            let (k, k2) = (s_old.trailing_zeros(), s_new.trailing_zeros());
            let resized = self.trees[t].resize_block(p, k, k2)
                || (self.uncache_right_buddies(t, p, k, k2)
                    && self.trees[t].resize_block(p, k, k2));
            if !resized {
                return Err(AllocError::OutOfMemory { size: new_size });
            }
            self.counters.resize(s_old, s_new);
            return Ok(());
        }
        let tree = &mut self.trees[t];
        // Give the run back (no cache), then take the new run at the same address.
        // `tree.end - p`, not `p + s_new`: a region may end at the top of the address space.
        if s_new > s_old && (s_new > tree.end - p || !tree.range_free(p + s_old, s_new - s_old)) {
            // Growing needs the memory right after the run: when it is taken, fail before
            // touching anything (the common refusal, and the cheap one).
            return Err(AllocError::OutOfMemory { size: new_size });
        }
        tree.free_run(p, s_old);
        if tree.claim(p, s_new) {
            self.counters.resize(s_old, s_new);
            return Ok(());
        }
        // The old run is free and coalesced, so taking it back restores the heap exactly.
        let restored = tree.claim(p, s_old);
        debug_assert!(restored);
        Err(AllocError::OutOfMemory { size: new_size })
    }

    /// Growing block `(p, k)` of region `t` in place to order `k2` takes the buddy on its
    /// right at every order in `k..k2`: those that wait whole in the deferred cache (blocks
    /// freed a moment ago: free to the caller, taken in the bitmaps) go to the bitmaps, when
    /// that leaves every one of them free. Returns whether it did; else nothing changed.
    ///
    /// So `realloc` grows in place into a neighbour just freed, as the design promises, where
    /// the bitmaps alone would refuse. `O((k2 - k) × CACHE_SLOTS)`: a scan of one order's
    /// stack per buddy, on a path that was about to refuse.
    fn uncache_right_buddies(&mut self, t: usize, p: usize, k: u32, k2: u32) -> bool {
        let tree = &self.trees[t];
        if k2 <= k || k2 > tree.top || p & ((1 << k2) - 1) != 0 {
            return false;
        }
        let cached = |j: u32| (j - self.min) as usize;
        let mut any = false;
        for j in k..k2 {
            let q = p + (1 << j);
            if tree.is_free(q, j) {
                continue;
            }
            // A cached block is an allocated leaf (its parent here holds `p`, so is split):
            // the cache is scanned only for those.
            if !tree.is_taken_leaf(q, j) || !self.cache.contains(cached(j), q, t) {
                return false;
            }
            any = true;
        }
        if !any {
            return false;
        }
        for j in k..k2 {
            let q = p + (1 << j);
            if self.cache.remove(cached(j), q, t) {
                // Its buddy holds `p`, which is live: it stays a free block of order `j`.
                self.trees[t].merge(q, j);
            }
        }
        true
    }

    /// Resizes the allocation at `ptr` to `new_size` bytes (alignment `old.align()`), in place
    /// when the block or its free buddies allow, else by moving it (copying
    /// `min(old.size(), new_size)` bytes: the only time the heap touches managed memory, at
    /// the caller's request).
    ///
    /// The order of attempts: first, whatever its size, the allocation moves when the
    /// deferred caches hold a block or exact-fit run of exactly the new handed-out size (and
    /// alignment), and the old one goes back to a cache: that touches no metadata, where a
    /// resize in place writes or reads a metadata word per order in between (see
    /// [`flush`](Heap::flush) for the caches). Then in place, then into a new block. So a
    /// block may move even where it could have grown or shrunk in place; use
    /// [`realloc_in_place`](Heap::realloc_in_place) to never move.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let old = Layout::from_size_align(64, 8).unwrap();
    /// let p = heap.alloc(old).unwrap();
    /// // SAFETY: p is live and 64 bytes long.
    /// unsafe { p.write_bytes(7, 64) };
    /// // SAFETY: p was allocated with `old`, is live, and is not used after this call.
    /// let q = unsafe { heap.realloc(p, old, 1000) }.unwrap();
    /// assert_eq!(heap.usable_size(q), Ok(1024));
    /// // SAFETY: q is live and at least 1000 bytes long; its first 64 came from p.
    /// assert!((0..64).all(|i| unsafe { q.add(i).read() } == 7));
    /// ```
    ///
    /// # Errors
    /// [`AllocError`] if no block fits; `ptr` is then still valid and the heap unchanged.
    ///
    /// # Safety
    /// - `ptr` was allocated by this heap with `old` and is live.
    /// - On success the old pointer must not be used any more (unless equal to the new one).
    ///
    /// # Time Complexity
    /// `O(log n)` plus the copy when it moves.
    #[inline(always)]
    pub unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        // Fast path: both sizes single blocks of cached orders: the same order, or a move
        // between the caches.
        if let Some(k_old) = self.fast_order(old)
            && let Ok(new) = Layout::from_size_align(new_size, old.align())
            && let Some(k_new) = self.fast_order(new)
        {
            if k_old == k_new {
                // The same power-of-two size: nothing to do.
                return Ok(ptr);
            }
            if let Some(moved) = self.move_via_cache(ptr, old, new, k_old, k_new) {
                return Ok(moved);
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.realloc_slow(ptr, old, new_size) }
    }

    /// [`realloc`](Heap::realloc) past the fast path: any block or run, through the caches,
    /// in place, or moved.
    ///
    /// # Safety
    /// As [`realloc`](Heap::realloc).
    #[inline(never)]
    unsafe fn realloc_slow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let new = match Layout::from_size_align(new_size, old.align()) {
            Ok(l) => l,
            Err(_) => {
                self.counters.failed += 1;
                return Err(AllocError::SizeOverflow);
            }
        };
        if let Some(moved) = self.move_via_caches(ptr, old, new) {
            return Ok(moved);
        }
        // SAFETY: the caller's contract is `realloc_in_place`'s.
        match unsafe { self.realloc_in_place(ptr, old, new_size) } {
            Ok(()) => return Ok(ptr),
            Err(AllocError::OutOfMemory { .. }) => {}
            Err(e) => {
                self.counters.failed += 1;
                return Err(e);
            }
        }
        let moved = match self.alloc_uncounted(new) {
            Ok(m) => m,
            Err(e) => {
                // The refusal coalesced the caches: a neighbour that was only cached may be
                // free now, and the allocation grow where it is.
                if matches!(e, AllocError::OutOfMemory { .. }) {
                    // SAFETY: as above; the refused attempts changed nothing.
                    if unsafe { self.realloc_in_place(ptr, old, new_size) }.is_ok() {
                        return Ok(ptr);
                    }
                }
                self.refused(new, e);
                return Err(e);
            }
        };
        // SAFETY: both blocks are live allocations of this heap, distinct, and at least
        // `min(old.size(), new_size)` bytes long.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), moved.as_ptr(), old.size().min(new_size))
        };
        // SAFETY: the caller gave us `ptr` allocated with `old`.
        unsafe { self.dealloc(ptr, old) };
        Ok(moved)
    }

    /// Resizes a single block of a cached order to another order by moving it into a cached
    /// block of the new order and caching the old block: no metadata touched, only the copy.
    /// Splitting in place writes a word at every order in between, and growing in place
    /// reads the buddies' words; on a large heap each of those is a cache miss, dearer than
    /// copying a small block (`cargo xtask bench`, random-actions: 50 -> 41 ns a call).
    /// `None`, and nothing changed, when the caches cannot do it.
    ///
    /// `ptr` is a live allocation of this heap with layout `old`, `new.align() == old.align()`,
    /// `k_old != k_new` their fast-path orders.
    #[inline]
    fn move_via_cache(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        k_old: u32,
        k_new: u32,
    ) -> Option<NonNull<u8>> {
        let p = ptr.as_ptr() as usize;
        if p & ((1 << k_old) - 1) != 0 {
            return None;
        }
        let t = self.tree_of(p)?;
        if !self.cache.has_room(k_old) {
            return None;
        }
        let (a, ta) = self.cache.pop_order(k_new)?;
        let pushed = self.cache.push_order(k_old, p, t);
        debug_assert!(pushed);
        let moved = self.ptr(ta, a);
        // SAFETY: `ptr` is live with `old.size()` bytes (the caller's contract) and `moved` was
        // a free block of `2^k_new >= new.size()` bytes, so they are distinct and both hold
        // the `min` of the two sizes that is copied.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), moved.as_ptr(), new.size().min(old.size()))
        };
        self.note_push(k_old);
        self.note_pop(new.size(), k_new);
        Some(moved)
    }

    /// Resizes any allocation by moving it into a cached block or run of the new size
    /// (the old one is released as by `dealloc`). `None`, and nothing changed, when no cache
    /// holds one. `ptr` is a live allocation of this heap with layout `old`,
    /// `new.align() == old.align()`.
    fn move_via_caches(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Option<NonNull<u8>> {
        let (k_new, s_new) = self.request(new).ok()?;
        let (_, s_old) = self.request(old).ok()?;
        let p = ptr.as_ptr() as usize;
        let t = self.tree_of(p)?;
        if s_new == s_old {
            return Some(ptr);
        }
        let (a, ta) = if s_new == 1 << k_new {
            self.cache.pop((k_new - self.min) as usize)?
        } else {
            self.runs.pop(self.run_units(s_new)?, new.align() - 1)?
        };
        let moved = self.ptr(ta, a);
        // SAFETY: `ptr` is live with `old.size()` bytes (the caller's contract) and `moved` was
        // a free block or run of `s_new >= new.size()` bytes, so they are distinct and both
        // hold the `min` of the two sizes that is copied.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), moved.as_ptr(), new.size().min(old.size()))
        };
        self.release(t, p, s_old);
        self.note_alloc(new.size(), s_new);
        Some(moved)
    }

    /// Coalesces the deferred caches: every recently freed block or run is merged with its
    /// buddies.
    ///
    /// Freed small blocks are kept out of the bitmaps for a while (up to
    /// [`CACHE_SLOTS`](crate::CACHE_SLOTS) per order for the 12 smallest orders), and so are
    /// freed exact-fit runs (up to 512, by length; both caches are shared by all regions), so
    /// that alloc/free pairs do not split and merge a dozen levels each time. They are served like any free block and counted as free in
    /// [`Stats`]; the only visible difference is the shape of the free lists. After freeing
    /// everything, call `flush` to get the heap back to exactly its initial shape.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let initial = heap.stats().free_blocks;
    /// let l = Layout::new::<[u8; 48]>();
    /// let blocks = [heap.alloc(l).unwrap(), heap.alloc(l).unwrap(), heap.alloc(l).unwrap()];
    /// for p in blocks {
    ///     // SAFETY: p came from this heap with `l`, and is freed once.
    ///     unsafe { heap.dealloc(p, l) };
    /// }
    /// assert_eq!(heap.stats().cached_blocks, 3); // free, but not merged yet
    /// heap.flush();
    /// assert_eq!(heap.stats().cached_blocks, 0);
    /// assert_eq!(heap.stats().free_blocks, initial);
    /// ```
    ///
    /// # Time Complexity
    /// `O(log n)` for each of at most `12 ×` [`CACHE_SLOTS`](crate::CACHE_SLOTS) cached
    /// blocks (1536 on 64-bit targets, 384 on 32-bit ones) and 512 cached runs, plus one pass
    /// over the run cache's 512 slots.
    pub fn flush(&mut self) {
        for r in 0..CACHE_ORDERS {
            self.flush_order(r);
        }
        self.flush_runs();
        debug!("buddy: deferred cache flushed");
    }

    /// Statistics: free blocks per order (`/proc/buddyinfo` via `Display`), live and high-water
    /// bytes, requested vs handed-out bytes, failed requests, largest free block.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::new::<[u8; 100]>()).unwrap();
    /// assert!(heap.alloc(Layout::new::<[u8; 0]>()).is_err()); // a failed request
    /// // SAFETY: p is live and nothing uses it any more.
    /// unsafe { heap.free(p) }.unwrap();
    /// let s = heap.stats();
    /// assert_eq!((s.live_allocations, s.allocated_bytes, s.high_water_bytes), (0, 0, 128));
    /// assert_eq!((s.requested_bytes_total, s.allocated_bytes_total), (100, 128));
    /// assert_eq!((s.failed_requests, s.free_bytes), (1, s.managed_bytes));
    /// ```
    ///
    /// # Time Complexity
    /// `O(regions × orders)`; the counters behind it cost nothing on the alloc path beyond
    /// a few additions.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let mut s = Stats::empty(self.config);
        s.allocated_bytes = c.allocated();
        s.high_water_bytes = c.high_water;
        s.requested_bytes_total = c.requested_total;
        s.allocated_bytes_total = c.handed;
        s.allocations = c.allocations;
        s.frees = c.frees;
        for r in 0..CACHE_ORDERS {
            let (pops, pushes) = self.cache.fast_calls(r);
            // Orders past the largest never pop (and would overflow the shift).
            let bytes = 1usize.checked_shl(self.min + r as u32).unwrap_or(0);
            s.allocated_bytes_total = s
                .allocated_bytes_total
                .wrapping_add(pops.wrapping_mul(bytes));
            s.allocations = s.allocations.wrapping_add(pops);
            s.frees = s.frees.wrapping_add(pushes);
        }
        s.live_allocations = s.allocations.wrapping_sub(s.frees);
        s.failed_requests = c.failed;
        s.regions = self.trees.len();
        for r in 0..CACHE_ORDERS {
            let n = self.cache.len(r);
            if n > 0 {
                let k = self.min + r as u32;
                s.free_blocks[k as usize] += n;
                s.cached_blocks += n;
                s.largest_free_block = s.largest_free_block.max(1 << k);
            }
        }
        for (a, t, u) in self.runs.entries() {
            let tree = &self.trees[t];
            let (mut q, mut rem) = (a, (u as usize) << self.min);
            while rem != 0 {
                let k = tree.piece(q, rem);
                s.free_blocks[k as usize] += 1;
                s.cached_blocks += 1;
                s.largest_free_block = s.largest_free_block.max(1 << k);
                q += 1 << k;
                rem -= 1 << k;
            }
        }
        for t in &self.trees {
            t.add_free_counts(&mut s.free_blocks);
            s.managed_bytes += t.end - t.start;
            s.metadata_bytes += t.meta_words * 8;
            s.max_order = s.max_order.max(t.top);
            if let Some(k) = t.largest_free_order() {
                s.largest_free_block = s.largest_free_block.max(1 << k);
            }
        }
        // `checked_shl`: orders past a `usize`'s width (32 and up on 32-bit targets) hold no
        // block, and a plain shift by them overflows.
        s.free_bytes = (0..)
            .zip(s.free_blocks)
            .map(|(k, n)| n.checked_shl(k).unwrap_or(0))
            .sum();
        s
    }

    /// Verifies the whole structure: bitmaps, summaries, counts, the cache, and that no two
    /// free buddies were left unmerged. For tests and debugging: `O(n)` in minimum blocks.
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::from_size_align(300, 8).unwrap()).unwrap();
    /// assert_eq!(heap.check(), Ok(()));
    /// // SAFETY: p is live and nothing uses it any more.
    /// unsafe { heap.free(p) }.unwrap();
    /// assert_eq!(heap.check(), Ok(()));
    /// ```
    ///
    /// # Errors
    /// The first broken invariant found.
    pub fn check(&self) -> Result<(), CheckError> {
        for t in &self.trees {
            t.check()?;
        }
        for r in 0..CACHE_ORDERS {
            let k = self.min + r as u32;
            for (n, (a, t)) in self.cache.entries(r).enumerate() {
                let err = |what| CheckError {
                    what,
                    addr: a,
                    order: k,
                };
                if !self
                    .trees
                    .get(t)
                    .is_some_and(|tree| tree.is_allocated_leaf(a, k))
                {
                    return Err(err("cached block is not an allocated leaf of its region"));
                }
                if self.cache.entries(r).take(n).any(|e| e == (a, t)) {
                    return Err(err("block cached twice"));
                }
            }
        }
        for (n, (a, t, u)) in self.runs.entries().enumerate() {
            let size = (u as usize) << self.min;
            let err = |what| CheckError {
                what,
                addr: a,
                order: size.trailing_zeros(),
            };
            if self.trees.get(t).and_then(|tree| tree.run_at(a).ok()) != Some(size) {
                return Err(err("cached run is not an allocated run of its region"));
            }
            if self.runs.entries().take(n).any(|e| (e.0, e.1) == (a, t)) {
                return Err(err("run cached twice"));
            }
        }
        let s = self.stats();
        if s.free_bytes + s.allocated_bytes != s.managed_bytes {
            return Err(CheckError {
                what: "free + allocated bytes != managed bytes",
                addr: 0,
                order: 0,
            });
        }
        Ok(())
    }

    /// The usable ranges `(start, end)` of the regions, in the order they were added (for
    /// maps and tests; metadata carved from a region lies before its `start`).
    ///
    /// ```
    /// use buddy_core::{metadata_words, Heap};
    /// let mut heap = Heap::new();
    /// let meta = Box::leak(vec![0; metadata_words(4096, 16)].into());
    /// let phys = core::ptr::without_provenance_mut::<u8>(0x10_0000); // never dereferenced
    /// // SAFETY: the range is used by nothing else (and the heap never dereferences it).
    /// unsafe { heap.add_region_with_metadata(phys, 4096, meta) }.unwrap();
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let start = mem.as_ptr() as usize;
    /// heap.add_region_from_slice(mem).unwrap();
    /// let ranges: Vec<(usize, usize)> = heap.ranges().collect();
    /// assert_eq!(ranges[0], (0x10_0000, 0x10_1000)); // metadata apart: the whole region
    /// assert!(ranges[1].0 > start && ranges[1].1 <= start + 8192); // metadata carved in front
    /// ```
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.trees.iter().map(|t| (t.start, t.end))
    }

    /// State of the minimum block at `addr`: for maps like the demo's. `O(log n)`.
    ///
    /// ```
    /// use buddy_core::{BlockState, Heap};
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let start = mem.as_ptr() as usize;
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::new::<[u8; 64]>()).unwrap();
    /// assert_eq!(heap.block_state(p.as_ptr() as usize + 32), BlockState::Used);
    /// assert_eq!(heap.block_state(start), BlockState::Metadata); // carved from the front
    /// assert_eq!(heap.block_state(0x10), BlockState::Outside);
    /// // SAFETY: p is live and nothing uses it any more.
    /// unsafe { heap.free(p) }.unwrap();
    /// assert_eq!(heap.block_state(p.as_ptr() as usize), BlockState::Free); // cached, yet free
    /// ```
    pub fn block_state(&self, addr: usize) -> BlockState {
        let Some(t) = self.tree_of(addr) else {
            return BlockState::Outside;
        };
        if !self.trees[t].contains(addr) {
            return BlockState::Metadata;
        }
        match self.free_extent_in(t, addr) {
            Some(_) => BlockState::Free,
            None => BlockState::Used,
        }
    }

    /// The free block that holds `addr`, as `(start, end)`: a free block of the bitmaps, a
    /// cached block or a cached exact-fit run (all free: any request can take them). `None`
    /// when `addr` is not in a free block (inside an allocation, metadata, or no region).
    ///
    /// A walk over a region's free memory takes one call per free block, where
    /// [`block_state`](Heap::block_state) takes one per minimum block:
    ///
    /// ```
    /// use buddy_core::Heap;
    /// use core::alloc::Layout;
    /// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
    /// let mut heap = Heap::new();
    /// heap.add_region_from_slice(mem).unwrap();
    /// let p = heap.alloc(Layout::new::<[u8; 64]>()).unwrap().as_ptr() as usize;
    /// assert_eq!(heap.free_extent(p), None); // live
    /// let (from, to) = heap.free_extent(p + 64).unwrap(); // the free block right after it
    /// assert!(from == p + 64 && to > from && to % (to - from) == 0);
    ///
    /// // Every free byte of the region, block by block.
    /// let (start, end) = heap.ranges().next().unwrap();
    /// let (mut a, mut free, mut calls) = (start, 0, 0);
    /// while a < end {
    ///     calls += 1;
    ///     match heap.free_extent(a) {
    ///         Some((from, to)) => {
    ///             free += to - a.max(from);
    ///             a = to;
    ///         }
    ///         None => a += heap.config().block(),
    ///     }
    /// }
    /// assert_eq!(free, heap.stats().free_bytes);
    /// assert!(calls < 20); // the free blocks and the live one's minimum blocks
    /// ```
    ///
    /// # Time Complexity
    /// `O(log n)`, plus a scan of the cached blocks of the block's order (at most
    /// [`CACHE_SLOTS`](crate::CACHE_SLOTS)) and, when exact-fit runs are cached, of the run
    /// cache (512 entries).
    pub fn free_extent(&self, addr: usize) -> Option<(usize, usize)> {
        let t = self.tree_of(addr)?;
        if !self.trees[t].contains(addr) {
            return None;
        }
        self.free_extent_in(t, addr)
    }

    /// [`free_extent`](Heap::free_extent) of `addr`, in the usable range of region `t`.
    fn free_extent_in(&self, t: usize, addr: usize) -> Option<(usize, usize)> {
        let tree = &self.trees[t];
        let (a, k) = tree.leaf(addr);
        if tree.is_free(a, k) || self.cache.contains(k.wrapping_sub(self.min) as usize, a, t) {
            return Some((a, a + (1 << k)));
        }
        // The run cache is scanned whole (its sets are keyed by length, not address), so an
        // empty one is skipped: a map of a heap calls this for every minimum block.
        if self.runs.len() == 0 {
            return None;
        }
        self.runs
            .entries()
            .find(|&(q, rt, u)| rt == t && addr.wrapping_sub(q) < (u as usize) << self.min)
            .map(|(q, _, u)| (q, q + ((u as usize) << self.min)))
    }
}

/// What [`Heap::block_state`] reports for an address.
///
/// ```
/// use buddy_core::{BlockState, Heap};
/// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
/// let mut heap = Heap::new();
/// heap.add_region_from_slice(mem).unwrap();
/// let (start, end) = heap.ranges().next().unwrap();
/// let free = (start..end).step_by(16).filter(|&a| heap.block_state(a) == BlockState::Free);
/// assert_eq!(free.count() * 16, heap.stats().free_bytes); // a fresh heap: all free
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockState {
    /// Not in any region of the heap.
    Outside,
    /// In a region but not handed out: metadata carved from the region, or alignment slack.
    Metadata,
    /// Inside a free block (cached blocks included).
    Free,
    /// Inside a live allocation.
    Used,
}

#[cfg(test)]
mod layout {
    use super::Heap;
    use core::mem::offset_of;

    /// The bytes after each field of the fast paths, by name.
    macro_rules! ends {
        ($($field:ident),*) => {
            [$((stringify!($field), offset_of!(Heap, $field) + size_of_field(|h: &Heap| &h.$field))),*]
        };
    }

    fn size_of_field<T>(_: impl Fn(&Heap) -> &T) -> usize {
        core::mem::size_of::<T>()
    }

    /// The words of the fast paths (see the layout note on [`Heap`]) end within its first
    /// 1 KiB, so no two of them can lie a multiple of 4 KiB apart.
    #[test]
    fn hot_fields_share_the_first_kilobyte() {
        let fields = ends!(
            bases,
            min,
            fast_max,
            min_mask,
            fast_pow2_max,
            first_start,
            first_len,
            counters
        );
        let tops = (
            "cache tops",
            offset_of!(Heap, cache) + crate::cache::tops_end(),
        );
        for (name, end) in fields.into_iter().chain([tops]) {
            assert!(end <= 1024, "{name} ends at byte {end} of the heap");
        }
    }
}
