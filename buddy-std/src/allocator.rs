//! The allocator: chunks of OS memory, each a buddy heap behind its own lock, spread over
//! shards; [`GlobalAlloc`] and [`Allocator`]. Most of the crate's `unsafe` is here; the
//! rest is in the C faces (`capi`, `malloc`) and their stderr lines (`line`).
//!
//! # Memory layout
//!
//! On first use two ranges are reserved from the OS (virtual memory only; pages are touched as
//! they are used):
//!
//! ```text
//! arena (aligned to the chunk size)       directory (page-aligned)
//! +---------+---------+-----+---------+   +--------------------+-----+----------------+
//! | chunk 0 | chunk 1 | ... | chunk n |   | header 0 | bitmaps | ... | direct mappings |
//! +---------+---------+-----+---------+   +--------------------+-----+----------------+
//!   each chunk: one buddy `Heap`            header i: its owner shard and its `Heap`
//!   (all of it usable, largest block =      behind a lock; bitmaps i: that heap's
//!   the chunk)                              metadata (never inside the chunk)
//! ```
//!
//! The chunk of an address is `(addr - arena) >> chunk_shift`: `O(1)`, no table, no lock.
//! Chunks are initialised one at a time, as the allocator grows, up to the memory limit; they
//! are never handed back (purging gives their pages back instead).
//!
//! # Why this design
//!
//! - **One reservation, chunks inside it.** The address-to-chunk lookup every `dealloc` needs
//!   is a subtraction and a shift. Growing is a few hundred nanoseconds of metadata setup
//!   under the growth lock, with no system call. The metadata lives in the directory, so a
//!   chunk's whole power-of-two range is usable and blocks up to the chunk size exist. If the
//!   OS refuses the whole range (`ulimit -v`, strict overcommit, valgrind), half of it is
//!   tried, and so on down to one chunk.
//! - **A lock per chunk, shards of chunks.** A thread allocates from its shard's current chunk
//!   (threads take shards round-robin by a thread ordinal); a free locks the chunk the block
//!   lives in, whichever thread frees it, so a cross-thread free needs no message passing and
//!   contends only with that chunk's users. Measured with `examples/scaling.rs` (ns per
//!   free + alloc step per thread, 1 → 2 threads, on a shared 2-core machine where glibc itself
//!   went 9.4 → 19): 1 shard 177 → 553, 4 shards 167 → 300. One lock makes threads wait for
//!   each other; with shards they scale like glibc's per-thread arenas. Default: 4 shards.
//!   (The single-thread figure is the core's exact-fit split/merge work in a 64 MiB chunk.)
//! - **Requests larger than a chunk** get a mapping of their own, recorded in a fixed table in
//!   the directory (so size-less frees and `usable_size` work without allocating).
//! - **Purging outside the lock.** A freed allocation of at least the purge threshold is
//!   `madvise`d before it is handed back to its heap: it is still the caller's then, so no
//!   other thread can be using it, and no lock is held during the system call.
//! - **Never re-enters itself.** Nothing here allocates through the global allocator, formats,
//!   or prints; the OS layer (`rustix`) does not allocate either.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt::{self, Write as _};
use core::mem::{MaybeUninit, size_of};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};
use buddy_core::{CheckError, FreeError, Heap, metadata_words};
use buddy_mmap::{Errno, Os, SystemOs, page_size};

use crate::config::{Config, ConfigError, MAX_SHARDS, Purge, ShardBy};
use crate::line::Line;
use crate::stats::{OsStats, Stats};
use crate::sync::{
    self, AtomicPtr, AtomicU8, AtomicUsize, Lock, LockGuard, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release, loom_const_fn,
};

mod tools;

/// The largest resize (old and new size) that a chunk's heap makes under its lock, copying
/// if it moves the block: 4 KiB, the largest request a default heap's fast paths serve (exact
/// fit starts above it). Larger blocks are copied with no lock held.
const SMALL_RESIZE: usize = 4096;

/// `state`: nothing reserved yet (or the last attempt failed).
const UNINIT: u8 = 0;
/// `state`: a thread is reserving the ranges; the others wait.
const BUSY: u8 = 1;
/// `state`: the ranges are reserved and `arena`, `dir`, `capacity` are set.
const READY: u8 = 2;

/// `fork`: no `fork_prepare` in progress.
const FORK_NONE: u8 = 0;
/// `fork`: `fork_prepare` found nothing reserved and holds `state` at `BUSY`.
const FORK_INIT: u8 = 1;
/// `fork`: `fork_prepare` holds `grow`, every chunk's lock and `direct`.
const FORK_LOCKS: u8 = 2;

/// The header of a chunk, at the start of its stride in the directory.
///
/// The heap sits beside its lock rather than inside a `Mutex<Heap>` so that it can be built
/// in place in the directory ([`Heap::init_in`]): a `Heap` is some 35 KiB on 64-bit targets, and moving it
/// through constructors took over 128 KiB of stack in debug builds.
///
/// `repr(C)`, the lock first: every call writes the lock word and then reads the heap's fast
/// path fields, which `Heap` puts in its first kilobyte, so that no two of them lie a
/// multiple of 4 KiB apart (see `Heap`'s layout note in buddy-core; checked below).
#[repr(C)]
struct Chunk {
    /// Guards `heap`.
    lock: Lock,
    /// The shard whose thread grew this chunk; that shard's threads allocate here.
    owner: usize,
    /// The chunk's buddy heap: one region, the whole chunk, metadata in the directory. Only
    /// accessed through [`Chunk::heap`], under `lock`.
    heap: UnsafeCell<Heap>,
}

// The directory-size check (`Config::validate`) counts a chunk's header as at most
// `HEADER_BOUND` bytes: a `Heap` that outgrows it must raise the bound.
const _: () = assert!(
    size_of::<Chunk>() <= crate::config::HEADER_BOUND,
    "a chunk header outgrew HEADER_BOUND"
);
const _: () = assert!(
    core::mem::offset_of!(Chunk, lock) < core::mem::offset_of!(Chunk, heap)
        && core::mem::offset_of!(Chunk, heap) <= 64,
    "the chunk's lock is not right before its heap"
);

impl Chunk {
    /// Locks the chunk's heap.
    #[inline]
    fn heap(&self) -> HeapGuard<'_> {
        let lock = self.lock.lock();
        // SAFETY: `heap` is only ever accessed here, under `lock`, which we now hold until
        // the guard (and so this borrow) is dropped.
        let heap = unsafe { &mut *self.heap.get() };
        HeapGuard { _lock: lock, heap }
    }
}

/// A locked chunk heap.
struct HeapGuard<'a> {
    _lock: LockGuard<'a>,
    heap: &'a mut Heap,
}

impl core::ops::Deref for HeapGuard<'_> {
    type Target = Heap;
    fn deref(&self) -> &Heap {
        self.heap
    }
}

impl core::ops::DerefMut for HeapGuard<'_> {
    fn deref_mut(&mut self) -> &mut Heap {
        self.heap
    }
}

/// A slot of the direct-mapping table; `ptr` null means empty. Guarded by `BuddyAlloc::direct`.
#[derive(Clone, Copy)]
struct Direct {
    ptr: *mut u8,
    len: usize,
    align: usize,
}

/// Where things are in the directory; fixed by the [`Config`], computed at compile time.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    chunk_shift: u32,
    max_chunks: usize,
    /// Bytes from a header to its metadata.
    header: usize,
    /// Metadata words of one chunk.
    meta_words: usize,
    /// Bytes from one header to the next.
    stride: usize,
}

const fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

impl Geometry {
    /// The directory of a valid `config` ([`Config::validate`] bounds every product here).
    const fn new(config: &Config) -> Geometry {
        let chunk = config.chunk_bytes();
        let max_chunks = config.max_chunks();
        let header = round_up(size_of::<Chunk>(), 64);
        let meta_words = metadata_words(chunk, config.min_block_bytes());
        let stride = round_up(header + meta_words * 8, 64);
        Geometry {
            chunk_shift: chunk.trailing_zeros(),
            max_chunks,
            header,
            meta_words,
            stride,
        }
    }

    /// Offset of the direct-mapping table in a directory for `capacity` chunks: right after
    /// their headers. The table always has `max_chunks` slots.
    const fn table(&self, capacity: usize) -> usize {
        capacity * self.stride
    }

    /// Bytes of a directory for `capacity` chunks (before rounding up to pages).
    const fn dir_bytes(&self, capacity: usize) -> usize {
        self.table(capacity) + self.max_chunks * size_of::<Direct>()
    }
}

/// Counters that only slow paths touch.
struct Counters {
    failed: AtomicUsize,
    purges: AtomicUsize,
    purged_bytes: AtomicUsize,
    purge_failures: AtomicUsize,
    map_failures: AtomicUsize,
    direct_bytes: AtomicUsize,
}

impl Counters {
    loom_const_fn! {
        const fn new() -> Counters {
            Counters {
                failed: AtomicUsize::new(0),
                purges: AtomicUsize::new(0),
                purged_bytes: AtomicUsize::new(0),
                purge_failures: AtomicUsize::new(0),
                map_failures: AtomicUsize::new(0),
                direct_bytes: AtomicUsize::new(0),
            }
        }
    }
}

/// What [`BuddyAlloc::grow`] did.
enum Grown {
    /// A new chunk, now the shard's current one, and the block for the request that made it
    /// grow (taken before the chunk was published, so no other thread can take its room).
    New(NonNull<u8>),
    /// Another thread changed the shard's current chunk meanwhile: try that one first.
    Changed(usize),
    /// The limit (or the reserved range) is reached.
    Full,
}

/// A thread-safe buddy allocator over memory from the OS: a `#[global_allocator]`, or an
/// [`Allocator`] for collections through `&BuddyAlloc`.
///
/// ```
/// use buddy_std::BuddyAlloc;
///
/// #[global_allocator]
/// static GLOBAL: BuddyAlloc = BuddyAlloc::new();
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();
///     assert_eq!(v.iter().sum::<u64>(), 499_500);
///     assert!(GLOBAL.stats().live_allocations() >= 1);
/// }
/// ```
///
/// `new` reserves nothing: the first allocation reserves the address range up to the
/// [memory limit](Config::memory_limit) (virtual memory only) and sets up the first chunk.
/// Chunks (64 MiB by default) are buddy heaps of [`buddy_core`], each behind its own lock,
/// grouped into [shards](Config::shards) that threads spread over. Requests larger than a
/// chunk get a mapping of their own. Past the limit, allocation returns null (or
/// [`AllocError`]); the allocator never aborts by itself.
///
/// The OS layer is a type parameter ([`SystemOs`] by default) so tests can inject faults with
/// [`buddy_mmap::FaultyOs`] (see [`with_os`](BuddyAlloc::with_os)).
///
/// Dropping a `BuddyAlloc` (one that is not a `static`) gives all its memory back to the OS:
/// the borrow checker makes sure nothing allocated from it through `&BuddyAlloc` outlives it.
pub struct BuddyAlloc<O: Os = SystemOs> {
    config: Config,
    geo: Geometry,
    os: O,
    /// `UNINIT` → `BUSY` → `READY`; back to `UNINIT` if the OS refused the reservation.
    state: AtomicU8,
    /// Start of the arena (chunk-aligned); set before `state` becomes `READY`.
    arena: AtomicPtr<u8>,
    /// Start of the directory; set before `state` becomes `READY`.
    dir: AtomicPtr<u8>,
    /// Chunks the arena has room for; set before `state` becomes `READY`.
    capacity: AtomicUsize,
    /// Chunks initialised: header `i` is valid iff `i < active`. Stored (with `Release`) only
    /// under `grow`, after the header is written.
    active: AtomicUsize,
    /// Serialises growth.
    grow: Lock,
    /// Guards the direct-mapping table and `direct_live`.
    direct: Lock,
    /// The number of live direct mappings; changed only under `direct`.
    direct_live: AtomicUsize,
    /// The current chunk of each shard (`usize::MAX` until the shard grows its first one).
    /// Always `usize::MAX` or `< active` for a reader that loads it with `Acquire`.
    current: [AtomicUsize; MAX_SHARDS],
    /// Bytes counted against the limit: initialised chunks and live direct mappings.
    committed: AtomicUsize,
    counters: Counters,
    /// What [`fork_prepare`](BuddyAlloc::fork_prepare) holds: `FORK_NONE`, `FORK_INIT` (it
    /// holds off the reservation) or `FORK_LOCKS` (it holds every lock). Written only by the
    /// thread that holds them.
    fork: AtomicU8,
}

impl BuddyAlloc<SystemOs> {
    loom_const_fn! {
        /// An allocator with the default [`Config`], taking memory from the OS. Reserves
        /// nothing until the first allocation.
        ///
        /// ```
        /// use buddy_std::{BuddyAlloc, Config};
        /// static A: BuddyAlloc = BuddyAlloc::new();
        /// assert_eq!(*A.config(), Config::new());
        /// assert_eq!(A.stats().os.reserved_bytes, 0); // nothing reserved yet
        /// ```
        #[must_use]
        pub const fn new() -> BuddyAlloc {
            BuddyAlloc::with_config(Config::new())
        }
    }

    loom_const_fn! {
        /// An allocator with `config`, taking memory from the OS.
        ///
        /// ```
        /// use buddy_std::{BuddyAlloc, Config};
        /// use std::alloc::{GlobalAlloc, Layout};
        ///
        /// static A: BuddyAlloc =
        ///     BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20));
        /// let l = Layout::from_size_align(768 << 10, 8).unwrap();
        /// // SAFETY: a non-zero size.
        /// let p = unsafe { A.alloc(l) };
        /// assert!(!p.is_null());
        /// // SAFETY: as above.
        /// assert!(unsafe { A.alloc(l) }.is_null()); // past the 1 MiB limit: null, no abort
        /// ```
        ///
        /// # Panics
        /// If [`config.validate()`](Config::validate) fails: at compile time in a `static`.
        #[must_use]
        pub const fn with_config(config: Config) -> BuddyAlloc {
            BuddyAlloc::with_os(config, SystemOs)
        }
    }
}

impl Default for BuddyAlloc<SystemOs> {
    fn default() -> Self {
        BuddyAlloc::new()
    }
}

impl<O: Os> BuddyAlloc<O> {
    loom_const_fn! {
        /// An allocator with `config` that takes its memory through `os`: a
        /// [`FaultyOs`](buddy_mmap::FaultyOs) to test what happens when the OS refuses, or a
        /// reference to one (`&FaultyOs` is an [`Os`]) to watch its counters.
        ///
        /// ```
        /// use buddy_mmap::FaultyOs;
        /// use buddy_std::{BuddyAlloc, Config};
        /// use std::alloc::{GlobalAlloc, Layout};
        ///
        /// static OS: FaultyOs = FaultyOs::new();
        /// static A: BuddyAlloc<&FaultyOs> = BuddyAlloc::with_os(Config::new(), &OS);
        ///
        /// OS.set_maps_left(0); // the OS refuses every mapping from now on
        /// // SAFETY: a valid, non-zero layout.
        /// assert!(unsafe { A.alloc(Layout::new::<u64>()) }.is_null());
        /// OS.set_maps_left(usize::MAX); // and now it does not: the allocator recovers
        /// // SAFETY: as above.
        /// let p = unsafe { A.alloc(Layout::new::<u64>()) };
        /// assert!(!p.is_null());
        /// // SAFETY: allocated above with this layout.
        /// unsafe { A.dealloc(p, Layout::new::<u64>()) };
        /// ```
        ///
        /// # Panics
        /// If [`config.validate()`](Config::validate) fails: at compile time in a `static`.
        #[must_use]
        pub const fn with_os(config: Config, os: O) -> BuddyAlloc<O> {
            if let Err(e) = config.validate() {
                panic!("{}", e.message());
            }
            BuddyAlloc {
                config,
                geo: Geometry::new(&config),
                os,
                state: AtomicU8::new(UNINIT),
                arena: AtomicPtr::new(ptr::null_mut()),
                dir: AtomicPtr::new(ptr::null_mut()),
                capacity: AtomicUsize::new(0),
                active: AtomicUsize::new(0),
                grow: Lock::new(),
                direct: Lock::new(),
                direct_live: AtomicUsize::new(0),
                current: sync::unset_atomics(),
                committed: AtomicUsize::new(0),
                counters: Counters::new(),
                fork: AtomicU8::new(FORK_NONE),
            }
        }
    }

    /// The configuration.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// let a = BuddyAlloc::with_config(Config::new().shards(2));
    /// assert_eq!(a.config().shard_count(), 2);
    /// assert_eq!(a.config().min_block_bytes(), 16);
    /// ```
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The OS layer.
    ///
    /// ```
    /// use buddy_mmap::FaultyOs;
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// let a = BuddyAlloc::with_os(Config::new().chunk_size(1 << 20).memory_limit(1 << 20), FaultyOs::new());
    /// assert_eq!(a.os().map_calls(), 0); // nothing reserved yet
    /// // SAFETY: a non-zero size; freed with the same layout.
    /// unsafe { a.dealloc(a.alloc(Layout::new::<u64>()), Layout::new::<u64>()) };
    /// assert!(a.os().map_calls() > 0);
    /// ```
    pub const fn os(&self) -> &O {
        &self.os
    }

    // ----- initialisation -----

    /// Reserves the arena and the directory unless done; `false` if the OS refused.
    #[inline]
    fn ready(&self) -> bool {
        self.state.load(Acquire) == READY || self.init().is_ok()
    }

    /// Runs the reservation exactly once among racing threads; the losers wait for it. After
    /// a failure the state goes back to `UNINIT`, so a later call tries again.
    #[cold]
    fn init(&self) -> Result<(), Errno> {
        let mut round = 0;
        loop {
            match self.state.compare_exchange(UNINIT, BUSY, Acquire, Acquire) {
                Ok(_) => {
                    let r = self.reserve();
                    self.state
                        .store(if r.is_ok() { READY } else { UNINIT }, Release);
                    return r;
                }
                Err(READY) => return Ok(()),
                // `fork_prepare` holds off the reservation, and this thread is the one that
                // forks, in a fork handler registered before the allocator's: it reserves
                // (nobody else can: the others wait for `state`) and holds the new locks for
                // the rest of the fork, as `fork_prepare` would have.
                Err(_) if self.fork.load(Relaxed) == FORK_INIT && self.grow.held_by_caller() => {
                    self.reserve()?;
                    self.direct.hold();
                    self.fork.store(FORK_LOCKS, Relaxed);
                    self.state.store(READY, Release);
                    return Ok(());
                }
                Err(_) => sync::wait(&mut round),
            }
        }
    }

    fn map(&self, len: usize, align: usize) -> Result<NonNull<u8>, Errno> {
        self.os.map(len, align).inspect_err(|_| {
            self.counters.map_failures.fetch_add(1, Relaxed);
        })
    }

    /// Bytes mapped for the directory of an arena of `capacity` chunks.
    fn dir_len(&self, capacity: usize) -> usize {
        round_up(self.geo.dir_bytes(capacity), page_size())
    }

    /// Reserves the largest arena the OS grants, up to the limit, and a directory sized for
    /// it: both are tried for `max_chunks` chunks, then half as many, down to one. The
    /// directory holds a header and the metadata of each chunk (1.6 MiB per 64 MiB chunk at
    /// 16-byte blocks), so under `ulimit -v` it must shrink with the arena: one sized for the
    /// limit's 1024 chunks alone would take 1.6 GiB of address space.
    fn reserve(&self) -> Result<(), Errno> {
        let page = page_size();
        let chunk = self.config.chunk_bytes();
        if chunk < page {
            return Err(Errno::INVAL);
        }
        let mut n = self.geo.max_chunks;
        let (arena, dir) = loop {
            let arena_len = n << self.geo.chunk_shift;
            let tried = self.map(arena_len, chunk).and_then(|arena| {
                match self.map(self.dir_len(n), page) {
                    Ok(dir) => Ok((arena, dir)),
                    Err(e) => {
                        // SAFETY: `arena` is the mapping just made with these arguments;
                        // nothing has seen it.
                        let _ = unsafe { self.os.unmap(arena, arena_len, chunk) };
                        Err(e)
                    }
                }
            });
            match tried {
                Ok(both) => break both,
                Err(e) if n == 1 => return Err(e),
                Err(_) => n /= 2,
            }
        };
        self.dir.store(dir.as_ptr(), Relaxed);
        self.arena.store(arena.as_ptr(), Relaxed);
        self.capacity.store(n, Relaxed);
        tools::arena_reserved(arena.as_ptr());
        Ok(())
    }

    // ----- chunks -----

    /// Chunk `i`, if it is initialised.
    #[inline]
    fn chunk(&self, i: usize) -> Option<&Chunk> {
        if i >= self.active.load(Acquire) {
            return None;
        }
        let dir = self.dir.load(Relaxed);
        // SAFETY: `i < active`, so header `i` lies in the directory (`active <= capacity`,
        // and the directory holds `capacity` strides) and was fully written by
        // `grow` before it stored `active` with `Release`, which our `Acquire` load saw (and
        // `dir` was stored before `state` became `READY`, which `grow` had seen). It is
        // dropped only by `drop`, which has `&mut self`; until then it is only shared.
        Some(unsafe { &*dir.add(i * self.geo.stride).cast::<Chunk>() })
    }

    /// The chunk holding `ptr`, if `ptr` is inside an initialised chunk.
    #[inline]
    fn chunk_of(&self, ptr: NonNull<u8>) -> Option<&Chunk> {
        let base = self.arena.load(Relaxed);
        if base.is_null() {
            return None;
        }
        let off = ptr.as_ptr().addr().wrapping_sub(base.addr());
        self.chunk(off >> self.geo.chunk_shift)
    }

    fn commit(&self, bytes: usize) -> bool {
        let limit = self.config.limit_bytes();
        self.committed
            .fetch_update(Relaxed, Relaxed, |c| {
                c.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    fn uncommit(&self, bytes: usize) {
        self.committed.fetch_sub(bytes, Relaxed);
    }

    /// Adds a chunk for shard `s` and allocates `layout` (which fits a chunk) in it, unless
    /// another thread changed the shard's current chunk since the caller saw `observed`, or
    /// the limit is reached.
    fn grow(&self, s: usize, observed: usize, layout: Layout) -> Grown {
        let _growing = self.grow.lock();
        let current = self.current[s].load(Acquire);
        if current != observed {
            return Grown::Changed(current);
        }
        let n = self.active.load(Relaxed);
        let chunk = self.config.chunk_bytes();
        if n >= self.capacity.load(Relaxed) || !self.commit(chunk) {
            return Grown::Full;
        }
        let (dir, arena) = (self.dir.load(Relaxed), self.arena.load(Relaxed));
        // SAFETY: `n < capacity`: stride `n` lies inside the directory (it holds `capacity`
        // strides), and chunk `n` inside the arena.
        let (header, meta_ptr, start) = unsafe {
            let header = dir.add(n * self.geo.stride);
            (
                header.cast::<Chunk>(),
                header.add(self.geo.header).cast::<u64>(),
                arena.add(n << self.geo.chunk_shift),
            )
        };
        // SAFETY: header `n` is not initialised (`n >= active`) and nobody else writes it (we
        // hold `grow`); the directory is page-aligned and the stride a multiple of 64, so it
        // is aligned for `Chunk`.
        unsafe {
            ptr::addr_of_mut!((*header).owner).write(s);
            ptr::addr_of_mut!((*header).lock).write(Lock::new());
            // In place: a `Heap` is some 35 KiB on 64-bit targets, too much for a small stack.
            Heap::init_in(
                &mut *ptr::addr_of_mut!((*header).heap).cast::<MaybeUninit<Heap>>(),
                self.config.core(),
            );
        }
        // SAFETY: the metadata words of stride `n` follow its header, inside the directory,
        // 8-aligned, used by no one else: only this chunk's heap will own them, until `drop`.
        let meta = unsafe { core::slice::from_raw_parts_mut(meta_ptr, self.geo.meta_words) };
        // SAFETY: the header was just written; it is not shared yet.
        let header_ref = unsafe { &*header };
        let block = {
            let mut heap = header_ref.heap();
            // SAFETY: chunk `n` of the arena is mapped read-write for as long as the allocator
            // lives, and nothing else uses it: addresses are handed out only by this heap.
            // The heap never touches it.
            // The metadata words are fresh from `os.map` (zero-filled, by `Os`'s contract) and
            // never written before: stride `n` is used for the first time, since `active` only
            // grows (and the undo path below zeroes them again).
            let added = unsafe { heap.add_region_with_zeroed_metadata(start, chunk, meta) };
            added.ok().and_then(|()| heap.alloc(layout).ok())
        };
        let Some(block) = block else {
            // Cannot happen with a valid configuration (aligned chunk, metadata sized by
            // `metadata_words`, a request that fits a chunk); undo rather than publish a
            // broken chunk.
            // SAFETY: written above, never shared.
            unsafe { ptr::drop_in_place(header) };
            // SAFETY: the metadata words of stride `n`, no longer borrowed by any heap.
            unsafe { meta_ptr.write_bytes(0, self.geo.meta_words) };
            self.uncommit(chunk);
            return Grown::Full;
        };
        if self.fork.load(Relaxed) == FORK_LOCKS {
            // A fork is under way and this thread is the one that forks (no other gets past
            // `grow`, which `fork_prepare` holds): it allocates in a fork handler. The new
            // chunk is held from the start, as `fork_prepare` held the others, so that no
            // other thread uses it before the fork ends and `fork_release` gives back exactly
            // the chunks `0..active`.
            header_ref.lock.hold();
        }
        tools::chunk_added(start, chunk);
        self.active.store(n + 1, Release);
        self.current[s].store(n, Release);
        Grown::New(block)
    }

    // ----- allocation -----

    #[inline]
    fn fits_chunk(&self, layout: Layout) -> bool {
        layout.size() <= self.config.chunk_bytes() && layout.align() <= self.config.chunk_bytes()
    }

    #[inline]
    fn try_chunk(&self, i: usize, layout: Layout) -> Option<NonNull<u8>> {
        self.chunk(i)?.heap().alloc(layout).ok()
    }

    /// Allocates a block for `layout`, or `None` (counted as a failed request).
    #[inline]
    fn allocate_block(&self, layout: Layout) -> Option<NonNull<u8>> {
        let p = if layout.size() == 0 || !self.ready() {
            None
        } else if self.fits_chunk(layout) {
            let p = self.alloc_arena(layout);
            if let Some(p) = p {
                tools::allocated(&self.arena, p, layout.size());
            }
            p
        } else {
            self.alloc_direct(layout)
        };
        if p.is_none() {
            self.counters.failed.fetch_add(1, Relaxed);
        }
        p
    }

    /// [`allocate_block`](Self::allocate_block), zero-filled.
    fn allocate_zeroed_block(&self, layout: Layout) -> Option<NonNull<u8>> {
        let p = self.allocate_block(layout)?;
        if self.chunk_of(p).is_some() {
            // SAFETY: `p` is a fresh block of at least `layout.size()` bytes, ours to write.
            unsafe { p.as_ptr().write_bytes(0, layout.size()) };
        }
        // Else a fresh direct mapping: the OS zero-fills it.
        Some(p)
    }

    #[inline]
    fn alloc_arena(&self, layout: Layout) -> Option<NonNull<u8>> {
        let s = self.current_shard();
        let observed = self.current[s].load(Acquire);
        if let Some(p) = self.try_chunk(observed, layout) {
            return Some(p);
        }
        self.alloc_slow(s, observed, layout)
    }

    /// The shard's current chunk is full (or missing): its other chunks, newest first; then a
    /// new chunk; then, at the limit, the chunks of the other shards.
    fn alloc_slow(&self, s: usize, mut observed: usize, layout: Layout) -> Option<NonNull<u8>> {
        let owned = |i: usize| self.chunk(i).is_some_and(|c| c.owner == s);
        for i in (0..self.active.load(Acquire)).rev() {
            if i != observed && owned(i) {
                if let Some(p) = self.try_chunk(i, layout) {
                    self.current[s].store(i, Release);
                    return Some(p);
                }
            }
        }
        loop {
            match self.grow(s, observed, layout) {
                Grown::New(p) => return Some(p),
                Grown::Changed(i) => {
                    if let Some(p) = self.try_chunk(i, layout) {
                        return Some(p);
                    }
                    observed = i;
                }
                Grown::Full => break,
            }
        }
        (0..self.active.load(Acquire))
            .filter(|&i| !owned(i))
            .find_map(|i| self.try_chunk(i, layout))
    }

    /// The direct-mapping table: `max_chunks` slots (each direct mapping is larger than a
    /// chunk and counts against the limit, so no more can be live at once).
    ///
    /// Before the first allocation the directory is not mapped (`dir` is null) and neither is
    /// the table: the address is then computed without `add`, whose in-bounds promise would
    /// not hold (Miri caught `free` and `usable_size` of a foreign pointer on a fresh
    /// allocator doing so), and is read only where the directory is known to be mapped.
    ///
    /// The table follows the `capacity` headers, so it is computed from `capacity`, which
    /// `reserve` stored before `state` became `READY`: callers have seen `READY` (through
    /// [`ready`](Self::ready), or the `direct` lock of a thread that had) before they call this.
    fn table(&self) -> *mut Direct {
        self.dir
            .load(Relaxed)
            .wrapping_add(self.geo.table(self.capacity.load(Relaxed)))
            .cast::<Direct>()
    }

    /// A mapping of its own for a request larger than a chunk.
    fn alloc_direct(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() > self.config.chunk_bytes() {
            return None;
        }
        let page = page_size();
        let len = layout.size().checked_next_multiple_of(page)?;
        let align = layout.align().max(page);
        if !self.commit(len) {
            return None;
        }
        let Ok(p) = self.map(len, align) else {
            self.uncommit(len);
            return None;
        };
        let table = self.table();
        let table_lock = self.direct.lock();
        let free = (0..self.geo.max_chunks).find(|&k| {
            // SAFETY: slot `k < max_chunks` lies in the table, which only code holding
            // `direct` reads or writes; zeroed memory is an empty slot.
            unsafe { (*table.add(k)).ptr.is_null() }
        });
        if let Some(k) = free {
            // SAFETY: as above.
            unsafe {
                table.add(k).write(Direct {
                    ptr: p.as_ptr(),
                    len,
                    align,
                })
            };
            self.direct_live.fetch_add(1, Relaxed);
            drop(table_lock);
            self.counters.direct_bytes.fetch_add(len, Relaxed);
            return Some(p);
        }
        drop(table_lock);
        // Not reachable: the limit bounds the number of direct mappings by the slot count.
        // SAFETY: the mapping was just made with these arguments and never handed out.
        let _ = unsafe { self.os.unmap(p, len, align) };
        self.uncommit(len);
        None
    }

    /// Removes the direct mapping at `ptr` from the table (if `take`) and returns its slot.
    fn find_direct(&self, ptr: NonNull<u8>, take: bool) -> Option<Direct> {
        let _table_lock = self.direct.lock();
        if self.direct_live.load(Relaxed) == 0 {
            return None;
        }
        // A direct mapping is live: the `alloc_direct` that made it saw `READY` before it
        // released the lock we hold, so `capacity` is final here.
        let table = self.table();
        for k in 0..self.geo.max_chunks {
            // SAFETY: slot `k` lies in the table, which we hold the lock of.
            let d = unsafe { table.add(k).read() };
            if !d.ptr.is_null() && d.ptr.addr() == ptr.as_ptr().addr() {
                if take {
                    // SAFETY: as above.
                    unsafe {
                        table.add(k).write(Direct {
                            ptr: ptr::null_mut(),
                            len: 0,
                            align: 0,
                        })
                    };
                    self.direct_live.fetch_sub(1, Relaxed);
                }
                return Some(d);
            }
        }
        None
    }

    /// Unmaps the direct mapping at `ptr`; returns its length.
    fn free_direct(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        let d = self.find_direct(ptr, true).ok_or(FreeError::Foreign)?;
        // SAFETY: `d` is a live mapping made by `alloc_direct` with these arguments; it just
        // left the table under the lock, so no one else unmaps it; the caller freed the
        // allocation, so no one uses it.
        let _ = unsafe { self.os.unmap(ptr, d.len, d.align) };
        self.uncommit(d.len);
        self.counters.direct_bytes.fetch_sub(d.len, Relaxed);
        Ok(d.len)
    }

    // ----- freeing -----

    /// Gives the whole pages of `[ptr, ptr + len)` back to the OS if the purge policy says so.
    ///
    /// The range must be inside an arena block that the caller owns and is about to free (or
    /// no longer needs the contents of), or the tail of a direct mapping the caller owns, or
    /// the tail a shrink in place just gave up, with its heap's lock held: that is what makes
    /// the `madvise` safe.
    fn purge_freed(&self, ptr: NonNull<u8>, len: usize) {
        let Purge::AtLeast(threshold) = self.config.purge_policy() else {
            return;
        };
        if len < threshold {
            return;
        }
        let page = page_size();
        let addr = ptr.as_ptr().addr();
        let (Some(start), Some(end)) = (addr.checked_next_multiple_of(page), addr.checked_add(len))
        else {
            return;
        };
        let end = end & !(page - 1);
        let Some(start) = NonNull::new(ptr.as_ptr().with_addr(start)).filter(|_| end > start)
        else {
            return;
        };
        let bytes = end - start.as_ptr().addr();
        // SAFETY: `[start, start + bytes)` is page-aligned and inside `[ptr, ptr + len)`, a
        // block of a chunk (mapped by `os.map` in `reserve`, not unmapped while `self` lives)
        // or the tail of a direct mapping (unmapped only when freed), whose contents nobody
        // needs: the caller owns it, or (a shrunk block's split-off tail) its heap does and
        // the caller holds that heap's lock; no other thread can access it before the caller
        // hands it back or lets the lock go, after this call.
        match unsafe { self.os.purge(start, bytes) } {
            Ok(()) => {
                self.counters.purges.fetch_add(1, Relaxed);
                self.counters.purged_bytes.fetch_add(bytes, Relaxed);
            }
            Err(_) => {
                self.counters.purge_failures.fetch_add(1, Relaxed);
            }
        }
    }

    /// Whether a resize from `old` to `new` bytes is left to the chunk's heap under one lock:
    /// both sizes at most [`SMALL_RESIZE`] (a copy it may make is that short) and below the
    /// purge threshold (nothing to purge), and no memory checker to tell about the blocks
    /// (the heap would write to a block before it is marked live).
    ///
    /// Larger resizes try in place and then move the block with an allocation, a copy with no
    /// lock held, and a free: three lock round trips. A shrink to at most [`SMALL_RESIZE`]
    /// moves first (into a block the caches hold, as [`Heap::realloc`] does) and splits the
    /// block in place only when there is no room to move it.
    #[inline]
    fn small_resize(&self, old: usize, new: usize) -> bool {
        let below_purge = match self.config.purge_policy() {
            Purge::AtLeast(threshold) => old.max(new) < threshold,
            Purge::Never => true,
        };
        !tools::ACTIVE && old.max(new) <= SMALL_RESIZE && below_purge
    }

    /// Frees a block. A debug build checks `ptr` first, as [`free`](Self::free) does, and
    /// aborts on a pointer that is not a live block (`bad_dealloc`).
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator allocated with `layout` (for a resized block,
    /// the last size and the original alignment).
    unsafe fn deallocate_block(&self, ptr: NonNull<u8>, layout: Layout) {
        match self.chunk_of(ptr) {
            Some(chunk) => {
                // Debug builds check every free as `free` does (a block waiting in the deferred
                // cache is already free), before anything is touched.
                if cfg!(all(debug_assertions, not(loom)))
                    && let Err(e) = chunk.heap().usable_size(ptr)
                {
                    bad_dealloc(ptr, e);
                }
                self.purge_freed(ptr, layout.size());
                tools::freeing(&self.arena, ptr, layout.size());
                // SAFETY: the caller's contract: a live block of this chunk's heap, with this
                // layout.
                unsafe { chunk.heap().dealloc(ptr, layout) }
            }
            None => {
                let freed = self.free_direct(ptr);
                if cfg!(all(debug_assertions, not(loom)))
                    && let Err(e) = freed
                {
                    bad_dealloc(ptr, e);
                }
            }
        }
    }

    /// Resizes a block: in place when its heap can, else by moving it (a shrink of a larger
    /// block to at most [`SMALL_RESIZE`] bytes moves first, see below). A direct mapping
    /// shrunk to a size a chunk serves moves into a chunk (and is unmapped), or when no chunk
    /// has room stays where it is; otherwise it stays where it is when the mapping is long
    /// enough.
    ///
    /// # Safety
    /// As [`deallocate_block`](Self::deallocate_block) for `ptr` and `layout`. On success the
    /// block is `new_size` bytes with `layout.align()`, and `ptr` is dangling unless returned.
    unsafe fn reallocate_block(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            self.counters.failed.fetch_add(1, Relaxed);
            return None;
        };
        if new_size == 0 {
            self.counters.failed.fetch_add(1, Relaxed);
            return None;
        }
        let small = self
            .chunk_of(ptr)
            .filter(|_| self.small_resize(layout.size(), new_size));
        if let Some(chunk) = small {
            let mut heap = chunk.heap();
            // SAFETY: the caller's contract: a live block of this chunk's heap with `layout`.
            let resized = unsafe { Self::resize_small(&mut heap, ptr, layout, new_size) };
            // The lock goes before a move to another chunk takes that chunk's lock.
            drop(heap);
            if resized.is_some() {
                return resized;
            }
        }
        // SAFETY: the caller's contract; a refused small resize changed nothing.
        unsafe { self.reallocate_large(ptr, layout, new, small.is_some()) }
    }

    /// A resize of at most [`SMALL_RESIZE`] bytes (old and new size) inside `heap`, under its
    /// lock. A growth to a single block (up to the heap's exact-fit threshold) tries in place
    /// first: into a free buddy, also one that waits in the heap's deferred cache (the
    /// design's promise; the heap's fast path would move it into a cached block). Then the
    /// heap's own resize: the same block, one its caches hold (its fast path), in place, or
    /// moved inside the chunk, copying at most `SMALL_RESIZE` bytes under the lock. A growth
    /// to an exact-fit run goes straight to the heap's resize, which tries in place itself
    /// when its caches hold no run of the new size: asking here first walked the bitmaps
    /// twice for every run that could not grow (`cargo xtask bench --preload`,
    /// `realloc_growth.c`: 0.73 -> 0.66 s CPU). `None` only when the chunk has no room (the
    /// block is then as it was, and moves to another chunk, see
    /// [`reallocate_large`](Self::reallocate_large)).
    ///
    /// # Safety
    /// `ptr` is a live block of `heap` allocated with `layout` (for a resized block, the last
    /// size and the original alignment); `new_size` is not zero and fits a layout with
    /// `layout.align()`.
    unsafe fn resize_small(
        heap: &mut Heap,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let grown = new_size > layout.size()
            && new_size <= heap.config().exact_fit_threshold()
            // SAFETY: the caller's contract: a live block of this heap with `layout`.
            && unsafe { heap.realloc_in_place(ptr, layout, new_size) }.is_ok();
        if grown {
            return Some(ptr);
        }
        // SAFETY: as above; the refused resize changed nothing.
        unsafe { heap.realloc(ptr, layout, new_size) }.ok()
    }

    /// [`reallocate_block`](Self::reallocate_block) past the small resize under one lock
    /// (`small_tried`: it was tried and refused, so the block moves).
    ///
    /// # Safety
    /// As [`reallocate_block`](Self::reallocate_block); `new` is `(new_size, layout.align())`
    /// with `new_size` not zero.
    unsafe fn reallocate_large(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new: Layout,
        small_tried: bool,
    ) -> Option<NonNull<u8>> {
        let new_size = new.size();
        match self.chunk_of(ptr) {
            Some(_) if small_tried => {}
            Some(chunk) if self.fits_chunk(new) => {
                let old_size = layout.size();
                // A shrink to a size the heaps' caches serve (at most `SMALL_RESIZE`) moves
                // into such a block, as `Heap::realloc` does, copying with no lock held: the
                // large block goes back whole, where splitting it in place would leave the
                // small block pinning it and its tail to the heap's slow paths (the bench's
                // `threads` workload, sizes up to 8 KiB, one thread: 29-31 ns a call split in
                // place, 24-26 moved). No room for it anywhere: in place below.
                if new_size < old_size && new_size <= SMALL_RESIZE {
                    // SAFETY: the caller's contract is `move_block`'s.
                    if let Some(q) = unsafe { self.move_block(ptr, layout, new) } {
                        return Some(q);
                    }
                    // The block is as it was; the refusal is not a failed request unless the
                    // shrink in place fails too (counted again then).
                    self.counters.failed.fetch_sub(1, Relaxed);
                }
                if new_size < old_size {
                    tools::shrinking(&self.arena, ptr, old_size, new_size);
                }
                let resized = {
                    let mut heap = chunk.heap();
                    // SAFETY: the caller's contract: a live block of this heap with `layout`.
                    let r = unsafe { heap.realloc_in_place(ptr, layout, new_size) };
                    if r.is_ok()
                        && new_size < old_size
                        && let Some(tail) = NonNull::new(ptr.as_ptr().wrapping_add(new_size))
                    {
                        // The tail is given up: its contents do not matter any more. Only once
                        // the resize succeeded (a smaller size may still need a larger block:
                        // a large alignment rounds it up, an exact-fit run is shorter; a
                        // refused resize must leave every byte as it was), and under the
                        // heap's lock: what the resize split off is free in this heap, and no
                        // one can allocate it before the purge is done.
                        self.purge_freed(tail, old_size - new_size);
                    }
                    r
                };
                match resized {
                    Ok(()) if new_size > old_size => {
                        tools::grown(&self.arena, ptr, old_size, new_size);
                    }
                    Err(_) if new_size < old_size => {
                        tools::grown(&self.arena, ptr, new_size, old_size);
                    }
                    _ => {}
                }
                if resized.is_ok() {
                    return Some(ptr);
                }
            }
            Some(_) => {}
            // A request a chunk can serve moves into one (the rest of the mapping is unmapped
            // with it); a larger one stays in the mapping if it is long enough.
            None if !self.fits_chunk(new) && self.resize_direct_in_place(ptr, layout, new_size) => {
                return Some(ptr);
            }
            None => {}
        }
        // SAFETY: the caller's contract is `move_block`'s.
        if let Some(q) = unsafe { self.move_block(ptr, layout, new) } {
            return Some(q);
        }
        // Refused (at the limit, no chunk has room): a direct mapping long enough keeps the
        // block where it is rather than fail a shrink; a success is not a failed request.
        if self.chunk_of(ptr).is_none() && self.resize_direct_in_place(ptr, layout, new_size) {
            self.counters.failed.fetch_sub(1, Relaxed);
            return Some(ptr);
        }
        // Refused: the room may be a neighbour that waits in its heap's deferred cache (a
        // request never fails while cached blocks could serve it). Merge them, try in place
        // once more; a success is not a failed request.
        if let Some(chunk) = self.chunk_of(ptr)
            && self.fits_chunk(new)
            && new_size > layout.size()
        {
            let mut heap = chunk.heap();
            heap.flush();
            // SAFETY: the caller's contract: a live block of this heap with `layout` (the
            // refused move left it as it was).
            if unsafe { heap.realloc_in_place(ptr, layout, new_size) }.is_ok() {
                drop(heap);
                self.counters.failed.fetch_sub(1, Relaxed);
                tools::grown(&self.arena, ptr, layout.size(), new_size);
                return Some(ptr);
            }
        }
        None
    }

    /// Resizes the direct mapping at `ptr`, allocated with `layout`, to `new_size` bytes where
    /// it is, if the mapping is that long: it stays as long as it is, and the pages past the
    /// new size go back to the OS by the purge policy, as a block's in a chunk do. False, and
    /// nothing changed, if `ptr` is not a direct mapping or is too short.
    fn resize_direct_in_place(&self, ptr: NonNull<u8>, layout: Layout, new_size: usize) -> bool {
        if self
            .find_direct(ptr, false)
            .is_none_or(|d| new_size > d.len)
        {
            return false;
        }
        if new_size < layout.size()
            && let Some(tail) = NonNull::new(ptr.as_ptr().wrapping_add(new_size))
        {
            self.purge_freed(tail, layout.size() - new_size);
        }
        true
    }

    /// Moves a block to a new one for `new` (copying what fits), then frees the old one.
    ///
    /// # Safety
    /// As [`deallocate_block`](Self::deallocate_block) for `ptr` and `old`.
    unsafe fn move_block(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Option<NonNull<u8>> {
        let q = self.allocate_block(new)?;
        // SAFETY: `ptr` is live for `old.size()` bytes, `q` fresh for `new.size()`; distinct
        // blocks of this allocator, so they do not overlap.
        unsafe { ptr::copy_nonoverlapping(ptr.as_ptr(), q.as_ptr(), old.size().min(new.size())) };
        // SAFETY: the caller's contract.
        unsafe { self.deallocate_block(ptr, old) };
        Some(q)
    }

    // ----- public API beyond the traits -----

    /// Frees the allocation at `ptr` without being told its size, as C's `free` does, and
    /// returns the bytes it held. A pointer that is not the start of a live allocation (double
    /// free, interior or foreign pointer) is refused and nothing changes.
    ///
    /// ```
    /// use buddy_core::FreeError;
    /// use buddy_std::BuddyAlloc;
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// let a = BuddyAlloc::new();
    /// // SAFETY: a valid layout.
    /// let p = std::ptr::NonNull::new(unsafe { a.alloc(Layout::new::<[u8; 100]>()) }).unwrap();
    /// // SAFETY: p is live and nobody uses it any more.
    /// assert_eq!(unsafe { a.free(p) }, Ok(128)); // one 128-byte block (exact fit starts above 4 KiB)
    /// // SAFETY: a wrong pointer is detected (this is what is shown).
    /// assert_eq!(unsafe { a.free(p) }, Err(FreeError::DoubleFree));
    /// ```
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`], [`FreeError::Interior`], or [`FreeError::Foreign`] for a
    /// pointer this allocator never handed out.
    ///
    /// # Safety
    /// If `ptr` is the start of a live allocation of this allocator, nobody uses that memory
    /// any more. (A wrong pointer is detected; a right pointer freed while in use, or freed by
    /// two threads at once, is not.)
    pub unsafe fn free(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        let Some(chunk) = self.chunk_of(ptr) else {
            return self.free_direct(ptr);
        };
        let threshold = match self.config.purge_policy() {
            Purge::AtLeast(t) => t,
            _ => usize::MAX,
        };
        let mut heap = chunk.heap();
        // One lookup: a block below the threshold is freed by it. With a memory checker told
        // about blocks, none is: the checker hears of the free first (below).
        let limit = if tools::ACTIVE { 0 } else { threshold };
        // SAFETY: the caller's contract (a block below `limit` is freed here).
        let (size, freed) = unsafe { heap.free_below(ptr, limit) }?;
        if freed {
            return Ok(size);
        }
        if size >= threshold {
            drop(heap);
            self.purge_freed(ptr, size);
            heap = chunk.heap();
        }
        // Under the lock and after the check: only the caller can be freeing this block.
        tools::freeing(&self.arena, ptr, size);
        // SAFETY: the caller's contract; `free` checks the pointer again under the lock.
        unsafe { heap.free(ptr) }
    }

    /// The size of the allocation at `ptr` (at least what was asked, as rounded by the heap),
    /// checked like [`free`](Self::free) but changing nothing.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// use std::ptr::NonNull;
    ///
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20));
    /// // SAFETY: a non-zero size.
    /// let p = NonNull::new(unsafe { a.alloc(Layout::from_size_align(5000, 8).unwrap()) }).unwrap();
    /// assert_eq!(a.usable_size(p), Ok(5120)); // exact fit: 4096 + 1024
    /// let big = Layout::from_size_align(3 << 19, 8).unwrap(); // larger than a chunk
    /// // SAFETY: as above.
    /// let q = NonNull::new(unsafe { a.alloc(big) }).unwrap();
    /// assert_eq!(a.usable_size(q), Ok(3 << 19)); // a mapping of its own
    /// ```
    ///
    /// # Errors
    /// As [`free`](Self::free).
    pub fn usable_size(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        match self.chunk_of(ptr) {
            Some(chunk) => chunk.heap().usable_size(ptr),
            None => self
                .find_direct(ptr, false)
                .map(|d| d.len)
                .ok_or(FreeError::Foreign),
        }
    }

    /// The C face's `realloc`: resizes the block at `ptr`, whose size only the heap knows, to
    /// `new` (`new.align()` is the one every C block has). `ptr` is checked as
    /// [`usable_size`](Self::usable_size) checks it, and a small resize (old and new size at
    /// most [`SMALL_RESIZE`]) is done under that same lock, with the size that check found:
    /// one lock and one size lookup, where asking the size first and then resizing took two
    /// locks and looked the size up twice. A block's usable size is its exact extent in the heap (the
    /// whole buddy block, an exact-fit run, or a direct mapping's pages), and a layout of that
    /// size with `new.align()` finds the same extent again: it is a valid layout to resize the
    /// block with, whatever it was requested with. `Ok(None)`: no memory for `new`, and the
    /// block is as it was.
    ///
    /// # Errors
    /// As [`free`](Self::free); nothing changed.
    ///
    /// # Safety
    /// If `ptr` is the start of a live block of this allocator, nobody else uses it during the
    /// call, and on success nobody uses `ptr` afterwards (unless it is returned). `new` has a
    /// non-zero size.
    #[cfg(feature = "malloc")]
    pub(crate) unsafe fn realloc_unsized(
        &self,
        ptr: NonNull<u8>,
        new: Layout,
    ) -> Result<Option<NonNull<u8>>, FreeError> {
        let (old, small) = match self.chunk_of(ptr) {
            Some(chunk) => {
                let mut heap = chunk.heap();
                let old = heap.usable_size(ptr)?;
                let small = self.small_resize(old, new.size());
                if small
                    && let Ok(layout) = Layout::from_size_align(old, new.align())
                    // SAFETY: `ptr` is a live block of this heap (just checked, under the same
                    // lock), which `layout` describes (see above); `new.size()` is not zero.
                    && let Some(q) = unsafe { Self::resize_small(&mut heap, ptr, layout, new.size()) }
                {
                    return Ok(Some(q));
                }
                (old, small)
            }
            None => (self.usable_size(ptr)?, false),
        };
        // A block's size rounded up to a C alignment never overflows `isize`: not reached.
        let Ok(layout) = Layout::from_size_align(old, new.align()) else {
            return Ok(None);
        };
        // SAFETY: `ptr` is live and `layout` describes it (checked above, see the docs for
        // why a refused small resize or the lock dropped in between change nothing of that:
        // the caller alone uses the block); `new` is not zero-sized.
        Ok(unsafe { self.reallocate_large(ptr, layout, new, small) })
    }

    /// Counts a request refused before it reached the allocator (by the C face: a size that
    /// overflows, a bad alignment) as a failed request, as C callers see it: NULL.
    #[cfg(feature = "malloc")]
    pub(crate) fn count_refused_request(&self) {
        self.counters.failed.fetch_add(1, Relaxed);
    }

    /// Statistics: the heaps of all chunks as one, plus what is held from the OS. Locks each
    /// chunk in turn, briefly; reserves nothing.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20));
    /// assert_eq!((a.stats().os.chunks, a.stats().os.reserved_bytes), (0, 0));
    /// // SAFETY: a non-zero size.
    /// let p = unsafe { a.alloc(Layout::new::<[u8; 100]>()) };
    /// let s = a.stats();
    /// assert_eq!((s.heap.live_allocations, s.heap.allocated_bytes), (1, 128));
    /// assert_eq!((s.os.chunks, s.os.committed_bytes), (1, 1 << 20));
    /// // SAFETY: allocated above with this layout.
    /// unsafe { a.dealloc(p, Layout::new::<[u8; 100]>()) };
    /// ```
    pub fn stats(&self) -> Stats {
        let active = self.active.load(Acquire);
        let mut heap: Option<buddy_core::Stats> = None;
        for i in 0..active {
            if let Some(c) = self.chunk(i) {
                let s = c.heap().stats();
                match &mut heap {
                    Some(total) => total.merge(&s),
                    None => heap = Some(s),
                }
            }
        }
        let mut heap = heap.unwrap_or_else(|| buddy_core::Stats::empty(self.config.core()));
        heap.failed_requests = self.counters.failed.load(Relaxed);
        let ready = self.state.load(Acquire) == READY;
        let capacity = self.capacity.load(Relaxed);
        let direct_bytes = self.counters.direct_bytes.load(Relaxed);
        let direct_allocations = if ready {
            let _table_lock = self.direct.lock();
            self.direct_live.load(Relaxed)
        } else {
            0
        };
        let c = &self.counters;
        Stats {
            heap,
            os: OsStats {
                limit_bytes: self.config.limit_bytes(),
                chunk_bytes: self.config.chunk_bytes(),
                chunks: active,
                chunk_capacity: capacity,
                reserved_bytes: if ready {
                    (capacity << self.geo.chunk_shift) + self.dir_len(capacity) + direct_bytes
                } else {
                    0
                },
                committed_bytes: self.committed.load(Relaxed),
                direct_allocations,
                direct_bytes,
                purges: c.purges.load(Relaxed),
                purged_bytes: c.purged_bytes.load(Relaxed),
                purge_failures: c.purge_failures.load(Relaxed),
                map_failures: c.map_failures.load(Relaxed),
            },
        }
    }

    /// The shard the calling thread allocates from (`0..shards`): with
    /// [`ShardBy::Thread`](crate::ShardBy::Thread) threads take shards round-robin, in the
    /// order they first allocate; with [`ShardBy::Stack`](crate::ShardBy::Stack) the address
    /// of the thread's stack picks it.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config, ShardBy};
    /// static A: BuddyAlloc = BuddyAlloc::with_config(Config::new().shards(2));
    /// let shard = A.current_shard();
    /// assert!(shard < 2);
    /// assert_eq!(A.current_shard(), shard); // a thread keeps its shard
    /// let b = BuddyAlloc::with_config(Config::new().shards(3).shard_by(ShardBy::Stack));
    /// assert!(b.current_shard() < 3);
    /// ```
    #[inline]
    pub fn current_shard(&self) -> usize {
        let id = match self.config.shard_selection() {
            ShardBy::Thread => sync::thread_ordinal(),
            ShardBy::Stack => sync::stack_ordinal(),
        };
        id % self.config.shard_count()
    }

    // ----- fork -----

    /// Makes the allocator safe to `fork`: takes every lock it has (and holds off its lazy
    /// reservation if it has not made it yet), so that no other thread is half-way through an
    /// operation when the process is copied. Meant for `pthread_atfork`'s `prepare` handler,
    /// with [`fork_parent`](Self::fork_parent) and [`fork_child`](Self::fork_child) as the
    /// other two; until one of them runs, every other thread that allocates or frees here
    /// waits.
    ///
    /// ```
    /// use buddy_std::BuddyAlloc;
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// static A: BuddyAlloc = BuddyAlloc::new();
    /// // SAFETY: a valid, non-zero layout.
    /// let p = unsafe { A.alloc(Layout::new::<u64>()) };
    /// A.fork_prepare(); // pthread_atfork's prepare handler does this, then fork() ...
    /// // SAFETY: this thread called fork_prepare just now.
    /// unsafe { A.fork_parent() }; // ... and the parent handler this.
    /// // SAFETY: allocated above with this layout.
    /// unsafe { A.dealloc(p, Layout::new::<u64>()) };
    /// ```
    ///
    /// Locks are taken in the order every other path takes them (growth first, then the
    /// chunks, then the direct-mapping table), so this cannot deadlock with them. Holding
    /// the growth lock keeps every other thread from adding chunks until the locks are given
    /// back.
    ///
    /// The calling thread itself may go on allocating and freeing until then: glibc runs the
    /// `prepare` handlers registered *before* this one after it, and their `parent` and
    /// `child` handlers before `fork_parent` and `fork_child`, all on the thread that forks,
    /// and any of them may call `malloc`. That thread finds every lock held by itself and
    /// goes through (a lock's holder passes; in the child, whose only thread it is, too); a
    /// chunk it adds is held from the start like the others, and a reservation it makes
    /// while this call held it off is followed by holding the new locks. Every other thread
    /// still waits.
    ///
    /// Calling it again from the same thread before `fork_parent` or `fork_child` is a
    /// mistake (before the first allocation it waits forever).
    ///
    /// # Time Complexity
    /// `O(chunks)`, plus waiting for the threads inside the allocator to leave.
    pub fn fork_prepare(&self) {
        let mut round = 0;
        loop {
            match self.state.compare_exchange(UNINIT, BUSY, Acquire, Acquire) {
                // Nothing reserved, hence no chunk and no direct mapping: holding `state` at
                // `BUSY` is all it takes (a racing first allocation waits for it). `grow` is
                // held too, only to name this thread as the holder: a fork handler of its own
                // that allocates reserves then (see `init`).
                Ok(_) => {
                    self.grow.hold();
                    self.fork.store(FORK_INIT, Relaxed);
                    return;
                }
                Err(READY) => break,
                // Another thread is reserving: wait for it to finish.
                Err(_) => sync::wait(&mut round),
            }
        }
        self.grow.hold();
        for i in 0..self.active.load(Acquire) {
            if let Some(c) = self.chunk(i) {
                c.lock.hold();
            }
        }
        self.direct.hold();
        self.fork.store(FORK_LOCKS, Relaxed);
    }

    /// Gives back what [`fork_prepare`](Self::fork_prepare) took, in the parent after `fork`
    /// (`pthread_atfork`'s `parent` handler).
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// static A: BuddyAlloc =
    ///     BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20));
    /// // SAFETY: a non-zero size.
    /// unsafe { A.alloc(Layout::new::<u64>()) };
    /// A.fork_prepare(); // every lock taken ... (fork() would run here)
    /// // SAFETY: this thread called fork_prepare just now, and nothing since.
    /// unsafe { A.fork_parent() }; // ... and given back: another thread allocates again
    /// // SAFETY: a non-zero size.
    /// let other = std::thread::spawn(|| unsafe { A.alloc(Layout::new::<u64>()) } as usize);
    /// assert_ne!(other.join().unwrap(), 0);
    /// ```
    ///
    /// # Safety
    /// The calling thread called `fork_prepare` on this allocator, and neither this nor
    /// [`fork_child`](Self::fork_child) since.
    pub unsafe fn fork_parent(&self) {
        // SAFETY: the caller's contract.
        unsafe { self.fork_release() }
    }

    /// Gives back what [`fork_prepare`](Self::fork_prepare) took, in the child after `fork`
    /// (`pthread_atfork`'s `child` handler). The child's only thread then has the allocator
    /// in the consistent state the parent's threads left it in: every block allocated before
    /// the fork is live in the child too, and can be freed there.
    ///
    /// Not run: it forks the process that runs the doctests (the child frees a block
    /// allocated before the fork).
    ///
    /// ```no_run
    /// use buddy_std::BuddyAlloc;
    /// use std::alloc::{GlobalAlloc, Layout};
    /// unsafe extern "C" {
    ///     fn fork() -> i32;
    ///     fn _exit(status: i32) -> !;
    /// }
    /// static A: BuddyAlloc = BuddyAlloc::new();
    /// let l = Layout::new::<u64>();
    /// // SAFETY: a non-zero size.
    /// let p = unsafe { A.alloc(l) };
    /// A.fork_prepare();
    /// // SAFETY: fork has no preconditions; the child calls only fork_child, A and _exit.
    /// if unsafe { fork() } == 0 {
    ///     // SAFETY: the child of a fork by the thread that called fork_prepare; p is live here
    ///     // too (allocated before the fork) and freed once.
    ///     unsafe {
    ///         A.fork_child();
    ///         A.dealloc(p, l);
    ///         _exit(if A.check().is_ok() { 0 } else { 1 })
    ///     }
    /// }
    /// // SAFETY: this thread called fork_prepare and nothing since.
    /// unsafe { A.fork_parent() };
    /// ```
    ///
    /// # Safety
    /// The calling thread is the child of a `fork` made by a thread that called
    /// `fork_prepare` on this allocator (and neither `fork_parent` nor `fork_child` since).
    pub unsafe fn fork_child(&self) {
        // SAFETY: the caller's contract; the child inherits what its parent thread held.
        unsafe { self.fork_release() }
    }

    /// # Safety
    /// The calling thread holds what `fork_prepare` took (or inherited it through `fork`).
    unsafe fn fork_release(&self) {
        match self.fork.swap(FORK_NONE, Relaxed) {
            FORK_INIT => {
                // SAFETY: the caller's contract: this thread holds `grow` through
                // `fork_prepare`.
                unsafe { self.grow.release() };
                self.state.store(UNINIT, Release);
            }
            FORK_LOCKS => {
                // SAFETY: the caller's contract: this thread holds the lock through
                // `fork_prepare`, with no guard.
                unsafe { self.direct.release() };
                for i in 0..self.active.load(Acquire) {
                    if let Some(c) = self.chunk(i) {
                        // SAFETY: as above; `fork_prepare` held the chunks `0..active` of its
                        // time, and a chunk added since was added by this thread (the holder of
                        // the growth lock) and held by `grow` from the start.
                        unsafe { c.lock.release() };
                    }
                }
                // SAFETY: as above.
                unsafe { self.grow.release() };
            }
            _ => {}
        }
    }

    /// The statistics of chunk `i` alone, and the shard that owns it; `None` if there is no
    /// such chunk (yet).
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20).shards(1));
    /// assert!(a.chunk_stats(0).is_none()); // no chunk yet
    /// // SAFETY: a non-zero size.
    /// unsafe { a.alloc(Layout::new::<u64>()) };
    /// let (owner, s) = a.chunk_stats(0).unwrap();
    /// assert_eq!((owner, s.live_allocations, s.managed_bytes), (0, 1, 1 << 20));
    /// assert!(a.chunk_stats(1).is_none());
    /// ```
    pub fn chunk_stats(&self, i: usize) -> Option<(usize, buddy_core::Stats)> {
        let c = self.chunk(i)?;
        Some((c.owner, c.heap().stats()))
    }

    /// Coalesces the deferred-coalescing cache of every chunk ([`Heap::flush`]): after
    /// everything is freed, the heaps are back to their initial shape.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20));
    /// let l = Layout::new::<[u8; 64]>();
    /// // SAFETY: a non-zero size; freed once with the same layout.
    /// unsafe { a.dealloc(a.alloc(l), l) };
    /// assert_eq!(a.stats().heap.cached_blocks, 1); // free, but not merged yet
    /// a.flush();
    /// let s = a.stats().heap;
    /// assert_eq!((s.cached_blocks, s.largest_free_block), (0, 1 << 20)); // one whole chunk again
    /// ```
    pub fn flush(&self) {
        for i in 0..self.active.load(Acquire) {
            if let Some(c) = self.chunk(i) {
                c.heap().flush();
            }
        }
    }

    /// Overwrites every free byte of every chunk with `byte`, chunk by chunk under its lock,
    /// and returns the number of bytes written: a debugging aid in the spirit of the junk
    /// filling other allocators do, on demand. A program that reads memory after freeing it
    /// then reads `byte`, and a test can check that no live block is ever touched (the scribble
    /// tests do it while other threads allocate).
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config, Purge};
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20));
    /// let l = Layout::new::<[u8; 64]>();
    /// // SAFETY: (all) a valid layout; each block written while live and freed once.
    /// unsafe {
    ///     let (live, freed) = (a.alloc(l), a.alloc(l));
    ///     live.write_bytes(7, 64);
    ///     freed.write_bytes(7, 64);
    ///     a.dealloc(freed, l);
    ///     assert_eq!(a.scribble_free(0xA5), (1 << 20) - 64);
    ///     assert!((0..64).all(|i| live.add(i).read() == 7), "a live block is not touched");
    ///     // Every block handed out now holds the scribble, the one freed above included.
    ///     let again = a.alloc(l);
    ///     assert!((0..64).all(|i| again.add(i).read() == 0xA5));
    ///     a.dealloc(again, l);
    ///     a.dealloc(live, l);
    /// }
    /// ```
    ///
    /// Memory given back to the OS (purged) comes back into the process when written, so
    /// this raises the resident set to the chunks' full size. Direct mappings have no free
    /// bytes.
    ///
    /// # Time Complexity
    /// One step per free block and per live allocation (each `O(log n)`, plus a scan of the
    /// heap's caches: [`Heap::free_extent`]), and a write of every free byte; each chunk's lock
    /// is held for its part.
    pub fn scribble_free(&self, byte: u8) -> usize {
        let min = self.config.min_block_bytes();
        let arena = self.arena.load(Relaxed);
        let mut written = 0;
        for i in 0..self.active.load(Acquire) {
            let Some(c) = self.chunk(i) else { continue };
            let heap = c.heap();
            for (start, end) in heap.ranges() {
                let mut a = start;
                // One step per free block or live allocation (the scan moves from the start
                // of one to the next), not per minimum block: under valgrind the per-block
                // walk took most of `tests/scribble.rs`'s minutes.
                while a < end {
                    if let Some((_, to)) = heap.free_extent(a) {
                        let (from, to) = (a, to.min(end));
                        let p = arena.with_addr(from);
                        tools::writing_free(p, to - from, || {
                            // SAFETY: `[from, to)` is a free block (or cached run) of this
                            // chunk's heap, inside the arena (mapped read-write while `self`
                            // lives); no one owns it, and no one can take it while we hold
                            // the chunk's lock. The heap keeps no state in it.
                            unsafe { p.write_bytes(byte, to - from) }
                        });
                        written += to - from;
                        a = to;
                    } else {
                        // The start of a live allocation: skip all of it.
                        let p = NonNull::new(arena.with_addr(a));
                        a += p.and_then(|p| heap.usable_size(p).ok()).unwrap_or(min);
                    }
                }
            }
        }
        written
    }

    /// Verifies every chunk's heap ([`Heap::check`]) and the accounting of the limit. For
    /// tests and debugging: `O(n)` in minimum blocks; meaningful when no other thread is
    /// allocating.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    ///
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20));
    /// let (small, big) = (Layout::new::<u64>(), Layout::from_size_align(2 << 20, 8).unwrap());
    /// // SAFETY: non-zero sizes; each block freed once with its layout.
    /// unsafe {
    ///     let (p, q) = (a.alloc(small), a.alloc(big));
    ///     assert_eq!(a.check(), Ok(()));
    ///     a.dealloc(p, small);
    ///     a.dealloc(q, big);
    /// }
    /// assert_eq!(a.check(), Ok(()));
    /// ```
    ///
    /// # Errors
    /// The first broken invariant found.
    pub fn check(&self) -> Result<(), CheckError> {
        let active = self.active.load(Acquire);
        for i in 0..active {
            if let Some(c) = self.chunk(i) {
                c.heap().check()?;
            }
        }
        let expected = (active << self.geo.chunk_shift) + self.counters.direct_bytes.load(Relaxed);
        if self.committed.load(Relaxed) != expected {
            return Err(CheckError {
                what: "committed bytes differ from chunks plus direct mappings",
                addr: 0,
                order: 0,
            });
        }
        Ok(())
    }
}

impl<O: Os> Drop for BuddyAlloc<O> {
    /// Gives everything back to the OS: the chunks' headers are dropped, the direct mappings,
    /// the arena and the directory unmapped.
    fn drop(&mut self) {
        if self.state.load(Acquire) != READY {
            return;
        }
        let dir = self.dir.load(Relaxed);
        for i in 0..self.active.load(Acquire) {
            // SAFETY: header `i < active` was initialised by `grow`; `&mut self` means no
            // reference to it is live; it is dropped once, here.
            unsafe { ptr::drop_in_place(dir.add(i * self.geo.stride).cast::<Chunk>()) };
        }
        let table = self.table();
        for k in 0..self.geo.max_chunks {
            // SAFETY: slot `k` lies in the table; `&mut self` excludes every other user.
            let d = unsafe { table.add(k).read() };
            if let Some(p) = NonNull::new(d.ptr) {
                // SAFETY: a live direct mapping made with these arguments; the borrow checker
                // ended every allocation's use when it let us drop the allocator.
                let _ = unsafe { self.os.unmap(p, d.len, d.align) };
            }
        }
        let page = page_size();
        let chunk = self.config.chunk_bytes();
        let arena_len = self.capacity.load(Relaxed) << self.geo.chunk_shift;
        if let (Some(arena), Some(dir)) = (
            NonNull::new(self.arena.load(Relaxed)),
            NonNull::new(self.dir.load(Relaxed)),
        ) {
            tools::arena_released(
                arena.as_ptr(),
                self.active.load(Acquire) << self.geo.chunk_shift,
            );
            // SAFETY: the arena and the directory were mapped by `reserve` with exactly these
            // arguments; no block, header or metadata slice is used any more.
            unsafe {
                let _ = self.os.unmap(arena, arena_len, chunk);
                let _ = self
                    .os
                    .unmap(dir, self.dir_len(self.capacity.load(Relaxed)), page);
            }
        }
    }
}

impl<O: Os> fmt::Debug for BuddyAlloc<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuddyAlloc")
            .field("config", &self.config)
            .field("chunks", &self.active.load(Relaxed))
            .finish_non_exhaustive()
    }
}

// SAFETY: blocks come from the chunks' buddy heaps (which honour size and alignment and never
// hand out a byte twice; each heap is used under its own lock) or from fresh OS mappings
// recorded in the table; nothing here panics or allocates, and `realloc` keeps the contents
// up to the smaller size, in place or by copying.
unsafe impl<O: Os> GlobalAlloc for BuddyAlloc<O> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate_block(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.allocate_zeroed_block(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `GlobalAlloc`'s contract: `ptr` came from this allocator with `layout`.
            unsafe { self.deallocate_block(p, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return ptr::null_mut();
        };
        // SAFETY: `GlobalAlloc`'s contract: `ptr` came from this allocator with `layout`.
        unsafe { self.reallocate_block(p, layout, new_size) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}

/// An empty slice at an address aligned to `align`, for zero-sized requests.
fn dangling(align: usize) -> NonNull<[u8]> {
    let p = NonNull::new(ptr::without_provenance_mut::<u8>(align)).unwrap_or(NonNull::dangling());
    NonNull::slice_from_raw_parts(p, 0)
}

impl<O: Os> BuddyAlloc<O> {
    /// `Allocator::allocate{,_zeroed}`: zero-sized requests get a dangling, aligned pointer.
    fn api_allocate(&self, layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout.align()));
        }
        let p = if zeroed {
            self.allocate_zeroed_block(layout)
        } else {
            self.allocate_block(layout)
        };
        p.map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    /// `Allocator::deallocate`.
    ///
    /// # Safety
    /// `Allocator::deallocate`'s contract.
    unsafe fn api_deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: the caller's contract: a live non-empty block of ours with `layout`.
            unsafe { self.deallocate_block(ptr, layout) }
        }
    }

    /// `Allocator::{grow, grow_zeroed, shrink}`.
    ///
    /// # Safety
    /// `Allocator::grow`'s (or `shrink`'s) contract.
    unsafe fn api_resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero_tail: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.api_allocate(new, zero_tail);
        }
        if new.size() == 0 {
            // SAFETY: the caller's contract: a live block of ours with `old`.
            unsafe { self.deallocate_block(ptr, old) };
            return Ok(dangling(new.align()));
        }
        let p = if old.align() == new.align() {
            // SAFETY: the caller's contract.
            unsafe { self.reallocate_block(ptr, old, new.size()) }
        } else {
            // A block's size class may depend on its alignment: move it.
            // SAFETY: the caller's contract.
            unsafe { self.move_block(ptr, old, new) }
        };
        let p = p.ok_or(AllocError)?;
        if zero_tail && new.size() > old.size() {
            // SAFETY: the block holds `new.size()` bytes; the tail past `old.size()` is ours.
            unsafe {
                p.as_ptr()
                    .add(old.size())
                    .write_bytes(0, new.size() - old.size())
            };
        }
        Ok(NonNull::slice_from_raw_parts(p, new.size()))
    }
}

// SAFETY: blocks are valid for their layout until deallocated (see the `GlobalAlloc` impl);
// zero-sized requests get dangling aligned pointers that are never dereferenced or freed;
// `&BuddyAlloc` copies share one allocator, so any copy may free what another allocated.
unsafe impl<O: Os> Allocator for &BuddyAlloc<O> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        (**self).api_allocate(layout, false)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        (**self).api_allocate(layout, true)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { (**self).api_deallocate(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        unsafe { (**self).api_resize(ptr, old, new, false) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        unsafe { (**self).api_resize(ptr, old, new, true) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        unsafe { (**self).api_resize(ptr, old, new, false) }
    }
}

/// Why a [`BuddyArena`] could not be made.
///
/// ```
/// use buddy_mmap::{Errno, FaultyOs};
/// use buddy_std::{ArenaError, BuddyArena, Config, ConfigError};
///
/// match BuddyArena::new(0) {
///     Err(ArenaError::Config(e)) => assert_eq!(e, ConfigError::Limit),
///     other => panic!("expected a configuration error, got {other:?}"),
/// }
/// let refusing = FaultyOs::new().fail_map_after(0);
/// let e = BuddyArena::with_config_in(Config::new(), refusing).unwrap_err();
/// assert_eq!(e, ArenaError::Os(Errno::NOMEM));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArenaError {
    /// The configuration is invalid (a capacity of zero, for instance).
    Config(ConfigError),
    /// The OS refused to reserve the memory.
    Os(Errno),
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::Config(e) => write!(f, "invalid arena configuration: {e}"),
            ArenaError::Os(e) => write!(f, "the OS refused to reserve the arena: {e}"),
        }
    }
}

impl core::error::Error for ArenaError {}

impl From<ConfigError> for ArenaError {
    fn from(e: ConfigError) -> Self {
        ArenaError::Config(e)
    }
}

/// An arena that owns its memory and gives all of it back to the OS when dropped: pass
/// `&arena` to collections ([`Allocator`] via `allocator-api2`), drop the arena when they are
/// gone.
///
/// ```
/// use allocator_api2::vec::Vec;
/// use buddy_std::BuddyArena;
///
/// let arena = BuddyArena::new(1 << 20)?; // 1 MiB, reserved now
/// let mut v = Vec::new_in(&arena);
/// v.extend(0..1000u32);
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// assert_eq!(arena.stats().live_allocations(), 1);
/// drop(v);
/// assert_eq!(arena.stats().live_allocations(), 0);
/// drop(arena); // unmaps everything
/// # Ok::<(), buddy_std::ArenaError>(())
/// ```
///
/// It is a [`BuddyAlloc`] that reserves its memory up front (so an OS refusal is an error
/// here, not a null later), with one shard by default; [`as_alloc`](Self::as_alloc) gives the
/// whole `BuddyAlloc` API. The borrow of `&arena` keeps every collection from outliving it.
pub struct BuddyArena<O: Os = SystemOs> {
    alloc: BuddyAlloc<O>,
}

impl BuddyArena<SystemOs> {
    /// An arena of at least `capacity` bytes: one chunk of `capacity` rounded up to a power of
    /// two (at least 64 KiB) if that is at most 64 MiB, else `capacity` rounded up to 64 MiB
    /// chunks. Blocks of up to the chunk size; larger requests get mappings of their own
    /// within the capacity.
    ///
    /// ```
    /// use buddy_std::{ArenaError, BuddyArena, ConfigError};
    /// let arena = BuddyArena::new(100 << 10)?; // one chunk of 128 KiB
    /// let config = arena.as_alloc().config();
    /// assert_eq!((config.chunk_bytes(), config.limit_bytes()), (128 << 10, 128 << 10));
    /// assert_eq!(BuddyArena::new(0).unwrap_err(), ArenaError::Config(ConfigError::Limit));
    /// # Ok::<(), ArenaError>(())
    /// ```
    ///
    /// # Errors
    /// [`ArenaError::Config`] for a capacity of 0 or one too large, [`ArenaError::Os`] if the
    /// OS refuses the memory.
    pub fn new(capacity: usize) -> Result<BuddyArena, ArenaError> {
        BuddyArena::with_config(BuddyArena::config_for(capacity)?)
    }

    /// An arena with `config` (its memory limit is the capacity).
    ///
    /// ```
    /// use buddy_std::{BuddyArena, Config, Purge};
    /// let config = Config::new().chunk_size(1 << 20).memory_limit(2 << 20).purge(Purge::Never);
    /// let arena = BuddyArena::with_config(config)?;
    /// assert_eq!(*arena.as_alloc().config(), config);
    /// let os = arena.stats().os;
    /// assert_eq!((os.chunk_capacity, os.limit_bytes), (2, 2 << 20));
    /// assert!(os.reserved_bytes >= 2 << 20); // reserved up front
    /// # Ok::<(), buddy_std::ArenaError>(())
    /// ```
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_config(config: Config) -> Result<BuddyArena, ArenaError> {
        BuddyArena::with_config_in(config, SystemOs)
    }

    /// The configuration [`new`](Self::new) uses for `capacity`.
    ///
    /// ```
    /// use buddy_std::BuddyArena;
    /// let small = BuddyArena::config_for(1000)?; // one chunk, at least 64 KiB
    /// assert_eq!((small.chunk_bytes(), small.limit_bytes(), small.shard_count()), (64 << 10, 64 << 10, 1));
    /// let large = BuddyArena::config_for(100 << 20)?; // 64 MiB chunks
    /// assert_eq!((large.chunk_bytes(), large.limit_bytes()), (64 << 20, 128 << 20));
    /// assert!(BuddyArena::config_for(0).is_err());
    /// # Ok::<(), buddy_std::ArenaError>(())
    /// ```
    ///
    /// # Errors
    /// [`ArenaError::Config`] for a capacity of 0 or one too large.
    pub fn config_for(capacity: usize) -> Result<Config, ArenaError> {
        const MAX_CHUNK: usize = 64 << 20;
        const MIN_CHUNK: usize = 64 << 10;
        let limit_err = ArenaError::Config(ConfigError::Limit);
        if capacity == 0 {
            return Err(limit_err);
        }
        let chunk = capacity
            .checked_next_power_of_two()
            .ok_or(limit_err)?
            .clamp(MIN_CHUNK, MAX_CHUNK);
        let limit = capacity.checked_next_multiple_of(chunk).ok_or(limit_err)?;
        let config = Config::new()
            .chunk_size(chunk)
            .memory_limit(limit)
            .shards(1);
        config.validate()?;
        Ok(config)
    }
}

impl<O: Os> BuddyArena<O> {
    /// An arena with `config`, taking its memory through `os`.
    ///
    /// ```
    /// use buddy_mmap::FaultyOs;
    /// use buddy_std::{BuddyArena, Config};
    /// let os = FaultyOs::new();
    /// let arena = BuddyArena::with_config_in(Config::new().chunk_size(1 << 20).memory_limit(1 << 20), &os)?;
    /// assert!(os.mapped_bytes() >= 1 << 20); // reserved now, before any allocation
    /// drop(arena);
    /// assert_eq!(os.mapped_bytes(), 0); // and all given back
    /// # Ok::<(), buddy_std::ArenaError>(())
    /// ```
    ///
    /// # Errors
    /// [`ArenaError::Config`] if `config` is invalid, [`ArenaError::Os`] if `os` refuses.
    pub fn with_config_in(config: Config, os: O) -> Result<BuddyArena<O>, ArenaError> {
        config.validate()?;
        let alloc = BuddyAlloc::with_os(config, os);
        alloc.init().map_err(ArenaError::Os)?;
        Ok(BuddyArena { alloc })
    }

    /// The arena as a [`BuddyAlloc`]: `GlobalAlloc`, size-less `free`, `check`, and the rest.
    ///
    /// ```
    /// use buddy_std::BuddyArena;
    /// use std::alloc::{GlobalAlloc, Layout};
    /// use std::ptr::NonNull;
    /// let arena = BuddyArena::new(1 << 20)?;
    /// let a = arena.as_alloc();
    /// // SAFETY: a non-zero size.
    /// let p = NonNull::new(unsafe { a.alloc(Layout::new::<[u8; 100]>()) }).unwrap();
    /// // SAFETY: p is live and nothing uses it any more.
    /// assert_eq!(unsafe { a.free(p) }, Ok(128)); // size-less, like C's free
    /// assert_eq!(a.check(), Ok(()));
    /// # Ok::<(), buddy_std::ArenaError>(())
    /// ```
    pub const fn as_alloc(&self) -> &BuddyAlloc<O> {
        &self.alloc
    }

    /// Statistics (see [`BuddyAlloc::stats`]).
    ///
    /// ```
    /// use allocator_api2::vec::Vec;
    /// use buddy_std::BuddyArena;
    /// let arena = BuddyArena::new(1 << 20)?;
    /// let mut v: Vec<u64, _> = Vec::with_capacity_in(16, &arena); // 128 bytes
    /// v.push(1);
    /// let s = arena.stats();
    /// assert_eq!((s.live_allocations(), s.allocated_bytes()), (1, 128));
    /// # Ok::<(), buddy_std::ArenaError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.alloc.stats()
    }
}

impl<O: Os> fmt::Debug for BuddyArena<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuddyArena")
            .field("alloc", &self.alloc)
            .finish()
    }
}

// SAFETY: forwards to `&BuddyAlloc`, whose impl is sound; the arena lives as long as the
// borrow, so its memory does too.
unsafe impl<O: Os> Allocator for &BuddyArena<O> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.alloc.api_allocate(layout, false)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.alloc.api_allocate(layout, true)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.alloc.api_deallocate(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.alloc.api_resize(ptr, old, new, false) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.alloc.api_resize(ptr, old, new, true) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.alloc.api_resize(ptr, old, new, false) }
    }
}

/// A debug build's answer to a `dealloc` of a pointer that is not a live block of this
/// allocator (a double free, an interior or foreign pointer: undefined behaviour that a release
/// build does not look for): one line on stderr, then `abort`, as glibc's `free` does. Not a
/// panic: a panic allocates its payload, from this allocator when it is the global one, and a
/// `dealloc` usually runs in a `drop`, where unwinding is often not possible anyway.
#[cold]
#[inline(never)]
fn bad_dealloc(ptr: NonNull<u8>, e: FreeError) -> ! {
    let mut line = Line::new();
    // `Line` never fails; formatting a pointer and a `FreeError` does not allocate.
    let _ = writeln!(
        line,
        "buddy: dealloc({ptr:p}) refused: {e}; aborting (a debug build checks every free)"
    );
    line.write_to(2);
    std::process::abort()
}
