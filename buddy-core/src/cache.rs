//! The deferred-coalescing cache: freed single blocks of the smallest orders, kept out of the
//! bitmaps for a while so that alloc/free pairs do not split and merge a dozen levels each time.
//!
//! One cache per heap, shared by its regions: an entry is a block's address with the index of
//! its region in the low three bits (every block is at least 8-aligned, and a heap has at most
//! [`MAX_REGIONS`] = 8 regions). A cached block is an allocated leaf in its tree's bitmaps
//! (`F = S = 0`); only the heap knows it is free.
//!
//! Per order, a stack: the block freed last is handed out first (it is likely still in the
//! caller's cache). A free into a full stack sends a block back to the bitmaps: the one at the
//! highest address among the [`EVICT_SCAN`] oldest (the whole stack where it holds only that
//! many), so that what stays cached keeps to low addresses at a bounded cost per free.
//!
//! Exact-fit runs have a cache of their own ([`RunCache`]): freed runs stay allocated in the
//! bitmaps (their pieces still marked "continues") and serve the next request of exactly
//! their length, so a run is carved and merged once for many uses. Measured with `cargo
//! xtask bench --workloads random-actions --only buddy` (64 MiB; realloc moves into cached
//! runs as it does into cached blocks): 29.5 → 22.5 ns a call at the default configuration,
//! 90 → 39 with `Config::compact()` (runs from 513 bytes up). It packs tighter too: a freed run
//! goes to the next request of its length, where a merged one leaves its pieces to smaller
//! requests (heap efficiency with `Config::compact()`, 20 seeds of the bench's workload:
//! 87.2% → 92.7%).

use crate::heap::MAX_REGIONS;

/// Orders (from the minimum up) that have a cache: 16 B to 32 KiB at the default minimum block,
/// 4 KiB to 8 MiB for page frames.
pub(crate) const CACHE_ORDERS: usize = 12;
/// Freed blocks the deferred cache holds per order (for the 12 smallest orders): 128 on
/// 64-bit targets, 32 on smaller ones, whose heaps and RAM are small (1.5 KiB of cache on
/// 32-bit instead of 6). A free into a full order sends the highest-addressed of its 32 oldest
/// blocks to the bitmaps; [`Heap::flush`](crate::Heap::flush) merges them all.
///
/// ```
/// // What `Stats::cached_blocks` can reach per order.
/// assert!(buddy_core::CACHE_SLOTS >= 32);
/// ```
///
/// Why these sizes, measured with `cargo xtask bench` (`random-actions`, 64 MiB): before the
/// run cache, 4 slots 41 ns a call, 8 slots 37, 16 slots 33, 32 slots 29-31. Since `realloc`
/// moves blocks between the caches (and needs room in the old block's order to do so), more
/// slots pay again: medians of 8 interleaved subset runs (`--workloads random-actions --only
/// buddy,talc,floor --reps 5`), buddy / talc 0.77× with 32 slots (three rounds), 0.74× with
/// 64, 0.73× with 128 when an eviction scans the whole stack, 0.70× with 128 and a scan of
/// the 32 oldest (two rounds). Scanning a stack of 128 on every eviction lengthened the tail of
/// `free` in `latency` (slowest call 441–491 ns against 170–190), hence the bounded scan.
/// Heap efficiency and failed requests do not change: a request coalesces the cache before it
/// fails.
#[cfg(target_pointer_width = "64")]
pub const CACHE_SLOTS: usize = 128;
/// Freed blocks the deferred cache holds per order (see the 64-bit definition).
#[cfg(not(target_pointer_width = "64"))]
pub const CACHE_SLOTS: usize = 32;

/// Oldest entries of a full stack that an eviction looks at (for the highest address).
pub(crate) const EVICT_SCAN: usize = if CACHE_SLOTS < 32 { CACHE_SLOTS } else { 32 };

const _: () = assert!(CACHE_SLOTS <= u8::MAX as usize, "a stack's length is a u8");

/// The low bits of an entry that hold its region's index.
const TAG: usize = 7;
const _: () = assert!(
    MAX_REGIONS <= TAG + 1,
    "region index must fit the entry's low bits"
);

/// Words per order in [`Cache`]'s table: a 0 below the stack and its `CACHE_SLOTS` entries.
/// The next row's 0 (or the table's last word) sits above them.
const ROW: usize = CACHE_SLOTS + 1;
/// Words of the table: a 0, the rows, a 0.
const WORDS: usize = 1 + CACHE_ORDERS * ROW + 1;
/// Orders a top can be kept for: every `k` with `1 << k` in a `usize`, and one more (the
/// fast paths index by an order the compiler knows to be at most `usize::BITS`).
const ORDERS: usize = usize::BITS as usize + 1;
/// A slot no block has been cached in since `init`: never an entry (an entry's address is a
/// block's, not 0), and not 0, so a push may take it.
const UNUSED: usize = 1;

const _: () = assert!(WORDS <= u16::MAX as usize, "a top index is a u16");

/// The low bits of a [`Cache::top`] word that hold the index; the bits above count pops.
const INDEX: u64 = 0xffff;

/// The cache of a heap. All zero bits is an empty cache that takes no block; it takes them
/// after [`init`](Cache::init) (which the heap calls with its first region).
///
/// Each order's stack is a row of the table between two 0 words, and its top is kept, by
/// order, as an index into the whole table: the fast paths reach the top entry in one load
/// from the order they computed, and find an empty stack by reading the 0 below it, a full
/// one by reading the 0 above, without the row's place or length. An order without a stack
/// has its top at the table's first word, a 0 with a 0 above it: empty and full at once.
/// (Callgrind on `cargo xtask bench`'s `pairs`: 4 instructions fewer a call than a length
/// per order index, 68.6 to 63.8 million over 1.2 million calls, 1.60 to 1.46 times the
/// floor in 5 interleaved rounds; keeping tops by order rather than by `k - min` took 1
/// more off, 63.8 to 62.6 million.)
///
/// The cache also counts the fast paths' calls for [`Stats`](crate::Stats), at no cost to
/// them: a top word holds, above its index, how many blocks [`pop_order`](Cache::pop_order)
/// took (one addition moves both), and the pushes follow from the pops and the index, since
/// only the pops and pushes move it. The heap's slow paths use [`pop`](Cache::pop),
/// [`push`](Cache::push) and [`remove`](Cache::remove) instead, which keep the pop count out
/// of the top word and their own moves of the index in `moved`. Measured with `cargo xtask
/// bench`'s `pairs` (8 interleaved rounds of `--workloads pairs,random-actions --only
/// buddy,floor --reps 3`, medians): 2.90 ns a call, 1.52 times the floor, with a pop and a
/// push counter per order beside the tops; 2.72 ns, 1.44 times, with this layout; 2.66 ns,
/// 1.41 times, with no counter at all (a probe with wrong statistics).
///
/// `repr(C)`, the tops first: the heap puts its fast paths' fields just before them, so that
/// all the words every fast call reads or writes, but the stack entries, lie within a few
/// hundred bytes (see [`Heap`](crate::Heap)'s layout note).
#[repr(C)]
pub(crate) struct Cache {
    /// By order `k`, in the low 16 bits ([`INDEX`]), the index in `slots` of its top entry:
    /// of the 0 below it when empty, 0 for an order without a stack (all of them before
    /// `init`). Above them, the blocks `pop_order` has taken since the count was last moved
    /// to `pops` (modulo 2^48; a `u64` on every target, so that 32-bit ones count as far).
    ///
    /// Invariant, relied on by `unsafe` hints in `pop_order` and `push_order`: every index is
    /// below `WORDS - 1`. Only `init`, `take`, `put` and `remove` write tops. `init` sets
    /// each to 0 or its row's 0. `take` and `remove` lower an index only from an entry (not
    /// 0), so to at least its row's 0 (and never below 1: no borrow from the count); `fold`
    /// clears the count and keeps the index. `put` raises an index only onto
    /// a word that is not 0: an entry or `UNUSED`, at most the last entry of the last row,
    /// `WORDS - 2` (before `init` every word is 0 and it refuses).
    top: [u64; ORDERS],
    /// By order index `r`, the pops of `pop_order` moved out of the top word (wrapping).
    pops: [usize; CACHE_ORDERS],
    /// By order index `r`, how far `init`, `pop`, `push` and `remove` moved the index
    /// (wrapping): the index less `moved` is the pushes less the pops of `push_order` and
    /// `pop_order`.
    moved: [usize; CACHE_ORDERS],
    /// Order of the first stack (`min` of the heap), set by `init`.
    min: u32,
    /// A 0, rows of `ROW` words (each a 0 then entries or [`UNUSED`]), and a final 0.
    slots: [usize; WORDS],
}

impl Cache {
    pub(crate) const fn new() -> Cache {
        Cache {
            slots: [0; WORDS],
            top: [0; ORDERS],
            pops: [0; CACHE_ORDERS],
            moved: [0; CACHE_ORDERS],
            min: 0,
        }
    }

    /// Empties the cache and makes it ready for blocks of orders `min` to `min +
    /// CACHE_ORDERS - 1` (index `r` for order `min + r`).
    ///
    /// The counts of [`fast_calls`](Cache::fast_calls) start again from 0.
    pub(crate) fn init(&mut self, min: u32) {
        self.slots.fill(UNUSED);
        self.slots[0] = 0;
        self.slots[WORDS - 1] = 0;
        self.top = [0; ORDERS];
        self.min = min;
        for r in 0..CACHE_ORDERS {
            self.slots[Self::base(r)] = 0;
            self.pops[r] = 0;
            self.moved[r] = 0;
            if let Some(top) = self.top.get_mut(min as usize + r) {
                *top = Self::base(r) as u64;
                self.moved[r] = Self::base(r);
            }
        }
    }

    /// The index part of a top word.
    #[inline(always)]
    fn index(top: u64) -> usize {
        (top & INDEX) as usize
    }

    /// The calls of [`pop_order`](Cache::pop_order) and [`push_order`](Cache::push_order)
    /// that took and gave a block of order index `r`: `(pops, pushes)`, wrapping. Exact
    /// unless `pop_order` took 2^48 blocks of one order with no `pop` or `push` of that order
    /// in between (3 days at a billion a second; those fold the count into `pops`).
    pub(crate) fn fast_calls(&self, r: usize) -> (usize, usize) {
        let Some(&top) = self.order(r).and_then(|k| self.top.get(k as usize)) else {
            return (0, 0);
        };
        let pops = self.pops[r].wrapping_add((top >> 16) as usize);
        let pushes = pops
            .wrapping_add(Self::index(top))
            .wrapping_sub(self.moved[r]);
        (pops, pushes)
    }

    /// Takes the block of order `k` freed last, adding `count << 16` to its top word.
    #[inline(always)]
    fn take(&mut self, k: u32, count: u64) -> Option<(usize, usize)> {
        let top = self.top.get_mut(k as usize)?;
        let i = Self::index(*top);
        // SAFETY: see `Cache::top`: every index is below `WORDS - 1`.
        unsafe { core::hint::assert_unchecked(i < WORDS - 1) };
        let e = *self.slots.get(i)?;
        if e == 0 {
            return None;
        }
        // `i >= 1` (the table's first word is 0): the index drops by one, no borrow.
        *top = top.wrapping_add(count << 16).wrapping_sub(1);
        Some((e & !TAG, e & TAG))
    }

    /// Caches block `a` of region `t`, of order `k`, if its stack has room.
    #[inline(always)]
    fn put(&mut self, k: u32, a: usize, t: usize) -> bool {
        let Some(top) = self.top.get_mut(k as usize) else {
            return false;
        };
        let i = Self::index(*top) + 1;
        // SAFETY: see `Cache::top`: every index is below `WORDS - 1`.
        unsafe { core::hint::assert_unchecked(i < WORDS) };
        match self.slots.get_mut(i) {
            Some(slot) if *slot != 0 => {
                *slot = a | t;
                // `i <= WORDS - 2 < INDEX`: no carry into the count.
                *top += 1;
                true
            }
            _ => false,
        }
    }

    /// Moves the pop count of order index `r` out of its top word into `pops` (every slow
    /// path's `pop` and `push` does, whether it takes or gives a block or not: the count
    /// wraps only after 2^48 fast pops with no slow call of the order in between).
    #[inline]
    fn fold(&mut self, r: usize) {
        let Some(k) = self.order(r) else { return };
        if let (Some(top), Some(pops)) = (self.top.get_mut(k as usize), self.pops.get_mut(r)) {
            *pops = pops.wrapping_add((*top >> 16) as usize);
            *top &= INDEX;
        }
    }

    /// A slow path's change of the index of order index `r` by `by` (wrapping).
    #[inline]
    fn moved_by(&mut self, r: usize, by: usize) {
        if let Some(moved) = self.moved.get_mut(r) {
            *moved = moved.wrapping_add(by);
        }
    }

    /// Index in `slots` of the 0 below the stack of order index `r`.
    fn base(r: usize) -> usize {
        1 + r * ROW
    }

    /// The order of index `r`, if it has a stack.
    fn order(&self, r: usize) -> Option<u32> {
        (r < CACHE_ORDERS).then(|| self.min + r as u32)
    }

    /// Takes the block of order `k` freed last: `(address, region)`. For the fast paths: it
    /// counts in [`fast_calls`](Cache::fast_calls).
    #[inline(always)]
    pub(crate) fn pop_order(&mut self, k: u32) -> Option<(usize, usize)> {
        self.take(k, 1)
    }

    /// Caches block `a` of region `t`, of order `k`, if its stack has room. For the fast
    /// paths: it counts in [`fast_calls`](Cache::fast_calls).
    #[inline(always)]
    pub(crate) fn push_order(&mut self, k: u32, a: usize, t: usize) -> bool {
        self.put(k, a, t)
    }

    /// Takes the block freed last of order index `r` (`k - min`): `(address, region)`. For
    /// the slow paths: not counted in [`fast_calls`](Cache::fast_calls).
    #[inline]
    pub(crate) fn pop(&mut self, r: usize) -> Option<(usize, usize)> {
        self.fold(r);
        let b = self.take(self.order(r)?, 0)?;
        self.moved_by(r, usize::MAX);
        Some(b)
    }

    /// Caches block `a` of region `t` at order index `r` if there is room. For the slow
    /// paths: not counted in [`fast_calls`](Cache::fast_calls).
    #[inline]
    pub(crate) fn push(&mut self, r: usize, a: usize, t: usize) -> bool {
        self.fold(r);
        let pushed = self.order(r).is_some_and(|k| self.put(k, a, t));
        if pushed {
            self.moved_by(r, 1);
        }
        pushed
    }

    /// Caches block `a` of region `t`; when the order is full, the block at the highest address
    /// among the [`EVICT_SCAN`] oldest makes room if it is above `a`. Returns the block that
    /// must go to the bitmaps instead, if any (`a` itself for an order without a cache).
    #[inline]
    pub(crate) fn push_or_evict(&mut self, r: usize, a: usize, t: usize) -> Option<(usize, usize)> {
        if self.push(r, a, t) {
            return None;
        }
        if self.order(r).is_none() {
            return Some((a, t));
        }
        let oldest = Self::base(r) + 1..Self::base(r) + 1 + EVICT_SCAN.min(self.len(r));
        let Some(slots) = self.slots.get_mut(oldest) else {
            return Some((a, t));
        };
        match slots.iter_mut().max_by_key(|e| **e & !TAG) {
            Some(hi) if *hi & !TAG > a => {
                let e = core::mem::replace(hi, a | t);
                Some((e & !TAG, e & TAG))
            }
            _ => Some((a, t)),
        }
    }

    /// Order `k` has a stack with room for one more block.
    #[inline]
    pub(crate) fn has_room(&self, k: u32) -> bool {
        let Some(&top) = self.top.get(k as usize) else {
            return false;
        };
        self.slots
            .get(Self::index(top) + 1)
            .is_some_and(|&w| w != 0)
    }

    /// Blocks cached at order index `r`.
    pub(crate) fn len(&self, r: usize) -> usize {
        self.order(r)
            .and_then(|k| self.top.get(k as usize))
            .map_or(0, |&t| Self::index(t).saturating_sub(Self::base(r)))
    }

    /// Block `a` of region `t` is cached at order index `r`.
    ///
    /// Every size-less free and `usable_size` of a single block asks this (a cached block
    /// looks allocated to the bitmaps), and for a live block it scans the whole stack.
    pub(crate) fn contains(&self, r: usize, a: usize, t: usize) -> bool {
        let live = match self.order(r) {
            Some(_) => Self::base(r) + 1..Self::base(r) + 1 + self.len(r),
            None => 0..0,
        };
        scan(self.slots.get(live).unwrap_or(&[]), a | t)
    }

    /// Takes block `a` of region `t` out of the stack of order index `r`, if it is there (the
    /// top entry takes its place). `O(CACHE_SLOTS)`.
    pub(crate) fn remove(&mut self, r: usize, a: usize, t: usize) -> bool {
        let Some(k) = self.order(r) else {
            return false;
        };
        let first = Self::base(r) + 1;
        let len = self.len(r);
        let Some(stack) = self.slots.get_mut(first..first + len) else {
            return false;
        };
        let Some(i) = stack.iter().position(|&e| e == a | t) else {
            return false;
        };
        // The top entry takes the found one's slot (unless it is the found one), and its own
        // slot is emptied. The stack is not empty: entry `i` is in it.
        if let Some((last, below)) = stack.split_last_mut() {
            if let Some(e) = below.get_mut(i) {
                *e = *last;
            }
            *last = UNUSED;
        }
        if let Some(tp) = self.top.get_mut(k as usize) {
            // The stack held entry `i`: its index is at least 1 above the row's 0.
            *tp -= 1;
        }
        self.moved_by(r, usize::MAX);
        true
    }

    /// The cached blocks of order index `r`, `(address, region)`, oldest first.
    pub(crate) fn entries(&self, r: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        // `base(r)` only for an index with a stack (any `r` may come here, and its product
        // could overflow).
        let live = match self.order(r) {
            Some(_) => Self::base(r) + 1..Self::base(r) + 1 + self.len(r),
            None => 0..0,
        };
        self.slots
            .get(live)
            .unwrap_or(&[])
            .iter()
            .map(|&e| (e & !TAG, e & TAG))
    }
}

/// Whether `entries` holds `v`: eight comparisons a step, or-ed together with one branch after
/// them, on the packed entries (no unpacking). On x86-64's baseline, which has no 64-bit vector
/// compare, that compiles to eight scalar compares and one branch. Entry by entry (`Iterator::any`),
/// `Heap::usable_size` of a live 64-byte block took 105 ns with its order's stack full (128
/// entries) against 47 ns now, and 33 with the stack empty.
#[inline]
fn scan(entries: &[usize], v: usize) -> bool {
    let mut chunks = entries.chunks_exact(8);
    for c in &mut chunks {
        if c.iter().fold(false, |hit, &e| hit | (e == v)) {
            return true;
        }
    }
    chunks.remainder().contains(&v)
}

/// Sets of the run cache (a power of two). 32 sets of 16 (6 KiB on 64-bit): with 8 ways the
/// alloc p99.9 of `cargo xtask bench`'s `latency` was 200 ns against 80, and `Config::compact()`
/// runs hit less often; 64 sets of 8 were no better than 32 of 16.
pub(crate) const RUN_SETS: usize = 32;
/// Runs per set.
pub(crate) const RUN_WAYS: usize = 16;

/// The deferred cache of exact-fit runs: freed runs kept allocated in the bitmaps, to serve
/// the next request of exactly their size without carving a block and merging it back.
///
/// Set-associative, keyed by the run's length in minimum blocks (`units`, never 0: a way
/// with 0 units is empty), so that any configuration's run sizes share one small table.
/// All zero bits is an empty cache.
pub(crate) struct RunCache {
    /// Address | region index, as in [`Cache`].
    addr: [[usize; RUN_WAYS]; RUN_SETS],
    units: [[u32; RUN_WAYS]; RUN_SETS],
    /// Runs cached.
    len: usize,
}

#[inline]
fn set_of(units: u32) -> usize {
    (units.wrapping_mul(0x9e37_79b9) >> (32 - RUN_SETS.trailing_zeros())) as usize
}

impl RunCache {
    pub(crate) const fn new() -> RunCache {
        RunCache {
            addr: [[0; RUN_WAYS]; RUN_SETS],
            units: [[0; RUN_WAYS]; RUN_SETS],
            len: 0,
        }
    }

    /// Runs cached.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes a cached run of `units` minimum blocks whose address is a multiple of
    /// `align_mask + 1`: `(address, region)`.
    #[inline]
    pub(crate) fn pop(&mut self, units: u32, align_mask: usize) -> Option<(usize, usize)> {
        let set = set_of(units);
        let (us, addrs) = (self.units.get_mut(set)?, self.addr.get(set)?);
        for (u, &e) in us.iter_mut().zip(addrs) {
            if *u == units && (e & !TAG) & align_mask == 0 {
                *u = 0;
                self.len -= 1;
                return Some((e & !TAG, e & TAG));
            }
        }
        None
    }

    /// Caches run `a` of region `t`, `units` minimum blocks long (`units > 0`). When its set
    /// is full, the run at the highest address in the set makes room if it is above `a`.
    /// Returns the run that must go to the bitmaps instead, if any: `(address, region,
    /// units)`.
    #[inline]
    pub(crate) fn push_or_evict(
        &mut self,
        units: u32,
        a: usize,
        t: usize,
    ) -> Option<(usize, usize, u32)> {
        let set = set_of(units);
        let (Some(us), Some(addrs)) = (self.units.get_mut(set), self.addr.get_mut(set)) else {
            return Some((a, t, units));
        };
        if let Some(w) = us.iter().position(|&u| u == 0) {
            us[w] = units;
            addrs[w] = a | t;
            self.len += 1;
            return None;
        }
        let Some(w) = (0..RUN_WAYS).max_by_key(|&w| addrs[w] & !TAG) else {
            return Some((a, t, units));
        };
        if addrs[w] & !TAG < a {
            return Some((a, t, units));
        }
        let out = (addrs[w] & !TAG, addrs[w] & TAG, us[w]);
        (addrs[w], us[w]) = (a | t, units);
        Some(out)
    }

    /// Empties the cache in one pass over its ways (`RUN_SETS × RUN_WAYS`), handing each run
    /// to `f` as `(address, region, units)`.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(usize, usize, u32)) {
        for (us, addrs) in self.units.iter_mut().zip(&self.addr) {
            if self.len == 0 {
                return;
            }
            for (u, &e) in us.iter_mut().zip(addrs) {
                if *u != 0 {
                    let units = core::mem::replace(u, 0);
                    self.len -= 1;
                    f(e & !TAG, e & TAG, units);
                }
            }
        }
    }

    /// Run `a` of region `t`, `units` long, is cached.
    pub(crate) fn contains(&self, units: u32, a: usize, t: usize) -> bool {
        let set = set_of(units);
        // All ways compared and or-ed, one branch at the end (as `scan`): every size-less
        // free and `usable_size` of a run asks, and the answer is almost always no.
        self.units[set]
            .iter()
            .zip(&self.addr[set])
            .fold(false, |hit, (&u, &e)| hit | ((u == units) & (e == a | t)))
    }

    /// The cached runs, `(address, region, units)`.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (usize, usize, u32)> + '_ {
        self.units
            .iter()
            .flatten()
            .zip(self.addr.iter().flatten())
            .filter(|(u, _)| **u != 0)
            .map(|(&u, &e)| (e & !TAG, e & TAG, u))
    }
}

/// The byte after the stack tops in a [`Cache`].
#[cfg(test)]
pub(crate) fn tops_end() -> usize {
    core::mem::offset_of!(Cache, top) + core::mem::size_of::<[u64; ORDERS]>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block address for entry `i` of a test (8-aligned, never 0).
    fn block(i: usize) -> usize {
        0x10_0000 + 64 * i
    }

    #[test]
    fn before_init_every_order_is_empty_and_refuses_blocks() {
        let mut c = Cache::new();
        for k in 0..=usize::BITS {
            assert!(!c.push_order(k, block(1), 0), "order {k}");
            assert_eq!(c.pop_order(k), None);
            assert!(!c.has_room(k));
        }
        assert!((0..CACHE_ORDERS).all(|r| c.len(r) == 0));
    }

    #[test]
    fn stacks_fill_to_their_size_and_pop_last_in_first_out() {
        let mut c = Cache::new();
        c.init(4);
        // Orders outside 4..16 have no stack.
        assert!(!c.push_order(3, block(1), 0));
        assert!(!c.push_order(16, block(1), 0));
        assert!(!c.push(CACHE_ORDERS, block(1), 0));
        for r in [0, 5, CACHE_ORDERS - 1] {
            let k = 4 + r as u32;
            for i in 0..CACHE_SLOTS {
                assert!(c.has_room(k));
                assert!(c.push_order(k, block(i), i % 8));
                assert_eq!(c.len(r), i + 1);
            }
            assert!(!c.has_room(k));
            assert!(!c.push_order(k, block(999), 0), "a full stack refuses");
            assert!(c.entries(r).eq((0..CACHE_SLOTS).map(|i| (block(i), i % 8))));
            for i in (0..CACHE_SLOTS).rev() {
                assert_eq!(c.pop_order(k), Some((block(i), i % 8)));
            }
            assert_eq!(c.pop_order(k), None, "an empty stack gives nothing");
            assert_eq!(c.len(r), 0);
        }
        // The stacks are apart: one order's blocks never come out of another.
        assert!(c.push(1, block(1), 0) && c.push(2, block(2), 0));
        assert_eq!(c.pop(1), Some((block(1), 0)));
        assert_eq!(c.pop(1), None);
        assert_eq!(c.pop(2), Some((block(2), 0)));
    }

    /// `contains` finds every entry of a stack of any length (whole steps of eight and the
    /// rest), in the right order and region only, and nothing else.
    #[test]
    fn contains_finds_exactly_the_stacked_blocks_at_every_length() {
        let mut c = Cache::new();
        c.init(4);
        let r = 2;
        // Under Miri only the lengths around whole steps of eight, and the entries around
        // the length and at the bottom.
        let checked = |len: usize| !cfg!(miri) || len % 8 <= 1 || len % 8 == 7;
        let near = |len: usize, i: usize| !cfg!(miri) || i.abs_diff(len) <= 2 || i < 2;
        for len in 0..=CACHE_SLOTS {
            for i in (0..=CACHE_SLOTS).filter(|&i| checked(len) && near(len, i)) {
                assert_eq!(
                    c.contains(r, block(i), i % 8),
                    i < len,
                    "len {len}, entry {i}"
                );
            }
            if len > 0 {
                // The same address in another region, or at another order, is not cached.
                let last = len - 1;
                assert!(!c.contains(r, block(last), (last + 1) % 8));
                assert!(!c.contains(r + 1, block(last), last % 8));
            }
            if len < CACHE_SLOTS {
                assert!(c.push(r, block(len), len % 8));
            }
        }
        assert!(!c.contains(CACHE_ORDERS, block(0), 0), "no stack");
    }

    #[test]
    fn fast_calls_count_pop_order_and_push_order_only() {
        let mut c = Cache::new();
        assert_eq!(c.fast_calls(0), (0, 0));
        c.init(4);
        let k = 4 + 3;
        assert_eq!(c.fast_calls(3), (0, 0));
        // Slow-path pushes and pops are not counted, whatever they do to the stack.
        for i in 0..5 {
            assert!(c.push(3, block(i), 0));
        }
        assert_eq!(c.pop(3), Some((block(4), 0)));
        assert_eq!(c.fast_calls(3), (0, 0));
        // Fast pushes and pops are, and survive slow calls in between (which fold the pop
        // count out of the top word).
        for round in 1..=3 {
            assert!(c.push_order(k, block(100), 0));
            assert!(c.push_order(k, block(101), 0));
            assert_eq!(c.pop_order(k), Some((block(101), 0)));
            assert_eq!(c.fast_calls(3), (round, 2 * round));
            assert!(c.remove(3, block(100), 0));
            assert!(c.push(3, block(200), 0));
            assert_eq!(c.pop(3), Some((block(200), 0)));
            assert_eq!(c.fast_calls(3), (round, 2 * round), "round {round}");
        }
        assert_eq!(c.len(3), 4);
        // Fast pops to the bottom; a slow pop that finds nothing still folds the count.
        for _ in 0..4 {
            assert!(c.pop_order(k).is_some());
        }
        assert_eq!(c.top[k as usize] >> 16, 4);
        assert_eq!(c.fast_calls(3), (7, 6));
        assert_eq!(c.pop(3), None);
        assert_eq!(c.top[k as usize] >> 16, 0);
        assert_eq!(c.fast_calls(3), (7, 6));
        // Other orders saw nothing; an order without a stack counts nothing.
        assert_eq!(c.fast_calls(2), (0, 0));
        assert_eq!(c.fast_calls(CACHE_ORDERS), (0, 0));
        // `init` starts the counts again.
        c.init(4);
        assert_eq!(c.fast_calls(3), (0, 0));
        assert_eq!(c.len(3), 0);
    }

    #[test]
    fn a_full_stack_evicts_its_highest_old_block_for_a_lower_one() {
        let mut c = Cache::new();
        c.init(4);
        for i in 0..CACHE_SLOTS {
            assert_eq!(c.push_or_evict(0, block(10 + i), 0), None);
        }
        // The highest of the EVICT_SCAN oldest is block(10 + EVICT_SCAN - 1).
        let evicted = c.push_or_evict(0, block(1), 0);
        assert_eq!(evicted, Some((block(10 + EVICT_SCAN - 1), 0)));
        assert!(c.contains(0, block(1), 0));
        // A block above every old one goes to the bitmaps itself.
        assert_eq!(c.push_or_evict(0, block(5000), 0), Some((block(5000), 0)));
        // An order without a stack sends every block back.
        assert_eq!(
            c.push_or_evict(CACHE_ORDERS, block(1), 0),
            Some((block(1), 0))
        );
        assert_eq!(c.entries(usize::MAX).count(), 0);
    }
}
