//! The buddy tree of one region: orders, blocks, split and merge, over bitmaps in a metadata slice.
//!
//! # The data structure
//!
//! The region's usable range `[start, end)` (aligned to the minimum block) is covered by blocks
//! of orders `min..=top`, aligned in absolute addresses. At order `k` the bitmaps cover every
//! order-`k` block that intersects the range: absolute block number `a >> k` is bit
//! `(a >> k) - first[k]`. Blocks partly outside the range are permanently split; blocks wholly
//! outside are permanently "used" and never touched. No byte of `[start, end)` is ever read or
//! written: all state lives in `meta`.
//!
//! Each block has two bits, `F` (free bitmap, summarised for find-first) and `S` (split bitmap,
//! orders above `min` only). Their four states:
//!
//! ```text
//!  F S
//!  1 0  free                      found by `first`, counted in `free_count`
//!  0 1  split                     both children are tree nodes
//!  0 0  allocated (or cached)     an allocation, or the last piece of an exact-fit run,
//!                                 or a block in the deferred-coalescing cache
//!  1 1  allocated, continues      a piece of an exact-fit run that is followed by the next
//!                                 piece at `a + 2^k` (masked out of find-first)
//! ```
//!
//! Invariants (checked by [`Tree::check`]):
//! - a free block's buddy is never free (coalescing is eager, outside the cache);
//! - the tree nodes are exactly the blocks whose every ancestor is split; below an allocated or
//!   free block all bits are zero;
//! - `free_count[k]` is the number of free blocks of order `k`; bit `k - min` of `nonempty` is set
//!   iff `free_count[k] > 0`;
//! - a cached block (the heap's cache, `cache.rs`) is an allocated leaf with `F = S = 0`.
//!
//! # Exact-fit runs
//!
//! A request of `s` bytes (a multiple of the minimum block; the heap rounds it so that it has
//! at most `Config::exact_fit_pieces` binary digits) that is not a power of two takes
//! the block of order `ceil(log2 s)` and gives its unused part back at once: the block is cut
//! into pieces whose sizes are the binary digits of `s`, and every piece but the last is marked
//! "continues" (`F = S = 1`). [`Tree::carve_end`] puts the run at the block's end, smallest
//! piece first (the heap's choice when the alignment allows: a run then does not start on a
//! page boundary); [`Tree::carve`] at its start, largest piece first. A free of the head
//! walks the pieces in `O(log n)`; a free of any later piece is refused as an interior
//! pointer.
//!
//! A run may also start anywhere (a multiple of the minimum block whose first piece is
//! larger than it): [`Tree::claim`] takes any free range as the greedy decomposition of
//! `[p, p + s)`, smaller pieces at both ends around the largest. The heap uses that to grow a
//! run in place, to put a run right after the last run of the same size, and to place a run
//! in the free space beside a free block of its largest order (found with
//! [`Tree::free_at_edge`]) before it splits a larger block.

use crate::bitmap::{self, NO_MASK};
use crate::order::{align_down, floor_log2, words};
use crate::trace;

/// Most orders one tree can span (from its minimum block up).
pub(crate) const MAX_ORDERS: usize = 48;

/// Where one order's bitmaps live in `meta` and which blocks they cover.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Level {
    /// Word offset of the summarised free bitmap.
    free_off: usize,
    /// Word offset of the split bitmap (`NO_MASK` at the minimum order, which cannot split).
    /// Above the minimum order the two are interleaved word by word (`free_off + 1`), so that
    /// a block's two bits share a cache line.
    split_off: usize,
    /// Absolute block number (`addr >> k`) of bit 0.
    first: usize,
    /// Number of blocks covered.
    n: usize,
}

impl Level {
    /// Distance between consecutive level-0 words: 2 when interleaved (above the minimum
    /// order), else 1.
    #[inline]
    fn stride(&self) -> usize {
        if self.split_off == NO_MASK { 1 } else { 2 }
    }

    /// The summarised free bitmap, masked by the split bitmap.
    #[inline]
    fn free(&self) -> bitmap::Summarised {
        bitmap::Summarised {
            off: self.free_off,
            stride: self.stride(),
            n: self.n,
            mask: self.split_off,
        }
    }
}

/// The metadata plan of a usable range: orders and where their bitmaps go.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) min: u32,
    pub(crate) top: u32,
    pub(crate) words: usize,
    levels: [Level; MAX_ORDERS],
}

impl Plan {
    /// Plans the bitmaps for the usable range `[start, end)` (both multiples of `1 << min`,
    /// `end - start >= 1 << min`).
    pub(crate) fn new(start: usize, end: usize, min: u32) -> Plan {
        let top = floor_log2(end - start).min(min + MAX_ORDERS as u32 - 1);
        let mut levels = [Level::default(); MAX_ORDERS];
        let mut cursor = 0;
        for k in min..=top {
            let first = start >> k;
            let n = ((end - 1) >> k) - first + 1;
            let free_off = cursor;
            let (split_off, stride) = if k > min {
                (free_off + 1, 2)
            } else {
                (NO_MASK, 1)
            };
            cursor += bitmap::summarised_words(n, stride);
            levels[(k - min) as usize] = Level {
                free_off,
                split_off,
                first,
                n,
            };
        }
        Plan {
            min,
            top,
            words: cursor,
            levels,
        }
    }
}

/// A buddy tree over one region.
pub(crate) struct Tree {
    meta: &'static mut [u64],
    /// The region as the caller gave it (metadata included when carved from it).
    pub(crate) region_start: usize,
    pub(crate) region_len: usize,
    /// The usable range, multiples of `1 << min`.
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) min: u32,
    pub(crate) top: u32,
    levels: [Level; MAX_ORDERS],
    /// Free blocks per order (`k - min`), cache excluded.
    free_count: [usize; MAX_ORDERS],
    /// Bit `k - min` set iff order `k` has a free block in the bitmaps.
    nonempty: u64,
    /// Words of `meta` in use.
    pub(crate) meta_words: usize,
}

impl Tree {
    /// Builds the tree for the usable range of `plan`, all of it free.
    ///
    /// `meta` must hold at least `plan.words` words; only those are written. They are zeroed
    /// first unless `zeroed` says they are zero already (then only the words the free blocks
    /// need are written, and untouched pages of fresh OS memory stay untouched).
    pub(crate) fn new(
        meta: &'static mut [u64],
        region_start: usize,
        region_len: usize,
        start: usize,
        end: usize,
        plan: &Plan,
        zeroed: bool,
    ) -> Tree {
        if !zeroed {
            meta[..plan.words].fill(0);
        }
        let mut t = Tree {
            meta,
            region_start,
            region_len,
            start,
            end,
            min: plan.min,
            top: plan.top,
            levels: plan.levels,
            free_count: [0; MAX_ORDERS],
            nonempty: 0,
            meta_words: plan.words,
        };
        // Greedy decomposition into maximal aligned blocks; their ancestors straddle the edge
        // of the range and stay split for ever.
        let mut a = start;
        while a < end {
            let k = a.trailing_zeros().min(floor_log2(end - a)).min(t.top);
            t.set_free(a, k);
            for j in k + 1..=t.top {
                t.set_split(align_down(a, j), j);
            }
            a += 1 << k;
        }
        t
    }

    #[inline]
    fn level(&self, k: u32) -> &Level {
        &self.levels[(k - self.min) as usize]
    }

    /// Bit index of block `a` at order `k`, if the bitmaps cover it.
    #[inline]
    fn index(&self, a: usize, k: u32) -> Option<usize> {
        let l = self.level(k);
        let i = (a >> k).wrapping_sub(l.first);
        if i < l.n { Some(i) } else { None }
    }

    #[inline]
    fn idx(&self, a: usize, k: u32) -> usize {
        (a >> k) - self.level(k).first
    }

    /// Raw free bit.
    #[inline]
    fn f(&self, a: usize, k: u32) -> bool {
        let l = self.level(k);
        bitmap::test(self.meta, l.free_off, l.stride(), self.idx(a, k))
    }

    /// Raw split bit (always clear at the minimum order).
    #[inline]
    fn s(&self, a: usize, k: u32) -> bool {
        k > self.min && {
            let l = self.level(k);
            bitmap::test(self.meta, l.split_off, l.stride(), self.idx(a, k))
        }
    }

    /// Tree node `(a, k)` (covered by the bitmaps) is split: `S = 1, F = 0`, read together
    /// (the walks between leaves test nothing else).
    #[inline]
    fn split_node(&self, a: usize, k: u32) -> bool {
        k > self.min && {
            let l = self.level(k);
            bitmap::test_second_only(self.meta, l.free_off, self.idx(a, k))
        }
    }

    /// Block `a` of order `k` (covered by the bitmaps) is neither free, split, nor a piece
    /// that a run continues from: given that its parent is split, an allocated leaf, which is
    /// what a cached block is. Two bits, in the same words as [`is_free`](Tree::is_free)'s.
    #[inline]
    pub(crate) fn is_taken_leaf(&self, a: usize, k: u32) -> bool {
        self.index(a, k).is_some() && !self.f(a, k) && !self.s(a, k)
    }

    /// Block `a` of order `k` is free (and covered by the bitmaps).
    #[inline]
    pub(crate) fn is_free(&self, a: usize, k: u32) -> bool {
        match self.index(a, k) {
            Some(i) => {
                let l = self.level(k);
                bitmap::test(self.meta, l.free_off, l.stride(), i)
                    && !(k > self.min && bitmap::test(self.meta, l.split_off, l.stride(), i))
            }
            None => false,
        }
    }

    /// Block is an allocated piece that continues into the next one.
    #[inline]
    fn is_cont(&self, a: usize, k: u32) -> bool {
        k > self.min && self.f(a, k) && self.s(a, k)
    }

    #[inline]
    fn set_free(&mut self, a: usize, k: u32) {
        let i = self.idx(a, k);
        let b = self.level(k).free();
        bitmap::set(self.meta, &b, i);
        let r = (k - self.min) as usize;
        self.free_count[r] += 1;
        self.nonempty |= 1 << r;
    }

    #[inline]
    fn clear_free(&mut self, a: usize, k: u32) {
        let i = self.idx(a, k);
        let b = self.level(k).free();
        bitmap::clear(self.meta, &b, i);
        let r = (k - self.min) as usize;
        self.free_count[r] -= 1;
        if self.free_count[r] == 0 {
            self.nonempty &= !(1 << r);
        }
    }

    #[inline]
    fn set_split(&mut self, a: usize, k: u32) {
        let i = self.idx(a, k);
        let l = self.level(k);
        let (off, stride) = (l.split_off, l.stride());
        bitmap::set_raw(self.meta, off, stride, i);
    }

    #[inline]
    fn clear_split(&mut self, a: usize, k: u32) {
        let i = self.idx(a, k);
        let l = self.level(k);
        let (off, stride) = (l.split_off, l.stride());
        bitmap::clear_raw(self.meta, off, stride, i);
    }

    /// Marks allocated piece `a` (order > min) as continuing: `F = S = 1`. The split bit goes in
    /// first, so the summaries never see the free bit.
    #[inline]
    fn set_cont(&mut self, a: usize, k: u32) {
        let i = self.idx(a, k);
        let l = *self.level(k);
        bitmap::set_raw(self.meta, l.split_off, l.stride(), i);
        bitmap::set_raw(self.meta, l.free_off, l.stride(), i);
    }

    #[inline]
    fn clear_cont(&mut self, a: usize, k: u32) {
        let i = self.idx(a, k);
        let l = *self.level(k);
        bitmap::clear_raw(self.meta, l.free_off, l.stride(), i);
        bitmap::clear_raw(self.meta, l.split_off, l.stride(), i);
    }

    /// The address is inside the usable range.
    #[inline]
    pub(crate) fn contains(&self, a: usize) -> bool {
        a >= self.start && a < self.end
    }

    /// The bytes of this tree's metadata, `[start, end)`.
    pub(crate) fn meta_range(&self) -> (usize, usize) {
        let start = self.meta.as_ptr() as usize;
        (start, start + core::mem::size_of_val(&*self.meta))
    }

    /// The address is inside the region as given (usable range, metadata, alignment slack).
    #[inline]
    pub(crate) fn owns(&self, a: usize) -> bool {
        a.wrapping_sub(self.region_start) < self.region_len
    }

    /// The tree node (a leaf: free or allocated) containing address `p` of the usable range.
    ///
    /// Walks *up* from the minimum order to the first ancestor that is split: below a leaf all
    /// bits are zero and a leaf itself is never "split" (`S = 1, F = 0`), so the first split
    /// ancestor is the leaf's parent. Small blocks (the common case) are found in a step or
    /// two. `O(top - min)`.
    #[inline]
    pub(crate) fn leaf(&self, p: usize) -> (usize, u32) {
        let mut k = self.min;
        while k < self.top {
            let parent = align_down(p, k + 1);
            if self.split_node(parent, k + 1) {
                break;
            }
            k += 1;
        }
        (align_down(p, k), k)
    }

    /// The leaf starting at `q`, searching down from order `k` (`q` aligned to `1 << k` and
    /// block `(q, k)` a tree node).
    #[inline]
    fn leaf_from(&self, q: usize, mut k: u32) -> u32 {
        while self.split_node(q, k) {
            k -= 1;
        }
        k
    }

    /// The leaf containing `n = q + 2^h`, the address right after piece `(q, h)`.
    ///
    /// Walks up from order `h` to the first split ancestor of `n`; if that is `n`'s parent at
    /// `h + 1`, block `(n, h)` is a tree node and the leaf is found walking down from it.
    /// `O(|h' - h|)` for a next piece of order `h'`, so walking a whole run is `O(log n)`.
    #[inline]
    fn next_leaf(&self, q: usize, h: u32) -> (usize, u32) {
        let n = q + (1 << h);
        let mut k = h;
        while k < self.top {
            let parent = align_down(n, k + 1);
            if self.split_node(parent, k + 1) {
                break;
            }
            k += 1;
        }
        if k == h {
            (n, self.leaf_from(n, h))
        } else {
            (align_down(n, k), k)
        }
    }

    /// Order of the next piece of a run over `[q, q + rem)`: the largest block aligned at `q`
    /// that fits (the greedy decomposition, largest blocks in the middle).
    #[inline]
    pub(crate) fn piece(&self, q: usize, rem: usize) -> u32 {
        q.trailing_zeros().min(floor_log2(rem)).min(self.top)
    }

    /// Splits free-and-taken block `(a, j)` down to order `k`, keeping the child that contains
    /// `p` at each step and freeing the other.
    #[inline]
    pub(crate) fn split_down(&mut self, p: usize, mut j: u32, k: u32) {
        while j > k {
            self.set_split(align_down(p, j), j);
            j -= 1;
            let keep = align_down(p, j);
            self.set_free(keep ^ (1 << j), j);
            trace!(
                "buddy: split {:#x} order {} -> {}",
                align_down(p, j + 1),
                j + 1,
                j
            );
        }
    }

    /// Takes a block of order `k` from the bitmaps: the lowest-addressed free block of the
    /// smallest order that fits, split down. `O(log n)`.
    #[inline]
    pub(crate) fn alloc_from_bitmaps(&mut self, k: u32) -> Option<usize> {
        if k < self.min || k > self.top {
            return None;
        }
        let r = k - self.min;
        let mask = self.nonempty & (u64::MAX << r);
        if mask == 0 {
            return None;
        }
        let j = self.min + mask.trailing_zeros();
        let l = *self.level(j);
        let i = bitmap::first(self.meta, &l.free())?;
        let a = (l.first + i) << j;
        self.clear_free(a, j);
        self.split_down(a, j, k);
        Some(a)
    }

    /// Lowest free block of order exactly `k` at or after address `from`, if any.
    pub(crate) fn next_free(&self, k: u32, from: usize) -> Option<usize> {
        if k < self.min || k > self.top || self.free_count[(k - self.min) as usize] == 0 {
            return None;
        }
        let l = *self.level(k);
        let i = (from >> k).saturating_sub(l.first);
        let i = bitmap::next(self.meta, &l.free(), i)?;
        Some((l.first + i) << k)
    }

    /// Block `a` of order `k` is split (and covered by the bitmaps).
    #[inline]
    fn is_split(&self, a: usize, k: u32) -> bool {
        k > self.min && self.index(a, k).is_some() && self.split_node(a, k)
    }

    /// Free bytes at the start of tree node `(q, k)` (at its end with `at_end`), counted until
    /// they reach `need` or a byte that is not free. Walks down that edge: `O(k - min)`.
    pub(crate) fn free_at_edge(
        &self,
        mut q: usize,
        mut k: u32,
        need: usize,
        at_end: bool,
    ) -> usize {
        let mut n = 0;
        while n < need {
            if self.is_free(q, k) {
                return n + (1 << k);
            }
            if !self.is_split(q, k) {
                break;
            }
            // The child at the edge free: count it and go on in the other one; else go down
            // the edge.
            k -= 1;
            let (near, far) = if at_end {
                (q + (1 << k), q)
            } else {
                (q, q + (1 << k))
            };
            if self.is_free(near, k) {
                n += 1 << k;
                q = far;
            } else {
                q = near;
            }
        }
        n
    }

    /// Cuts allocated block `(a, k)` into an exact-fit run of `s` bytes (`s` a multiple of the
    /// minimum block, `s <= 1 << k`) that starts where the block starts, freeing the tail at
    /// once. `O(k - min)`.
    pub(crate) fn carve(&mut self, mut a: usize, mut k: u32, mut s: usize) {
        while s != 1 << k {
            self.set_split(a, k);
            let h = k - 1;
            trace!("buddy: split {:#x} order {} -> {}", a, k, h);
            if s > 1 << h {
                // Left half is a whole piece, and the run goes on in the right half.
                self.set_cont(a, h);
                a += 1 << h;
                s -= 1 << h;
            } else {
                self.set_free(a + (1 << h), h);
            }
            k = h;
        }
    }

    /// Cuts allocated block `(a, k)` into an exact-fit run of `s` bytes that ends where the
    /// block ends (`s` a multiple of twice the minimum block, `s < 1 << k`), freeing the head
    /// at once; returns the run's start, `a + 2^k - s`. The mirror of [`carve`](Tree::carve):
    /// its pieces are the binary digits of `s`, smallest first, every one but the last
    /// marked "continues" (so the first, smallest one must be above the minimum order).
    /// `O(k - min)`.
    pub(crate) fn carve_end(&mut self, mut a: usize, mut k: u32, mut s: usize) -> usize {
        // Whether the run's last piece (the first whole half found) is still to be found.
        let mut last = true;
        while s != 1 << k {
            self.set_split(a, k);
            let h = k - 1;
            trace!("buddy: split {:#x} order {} -> {}", a, k, h);
            if s > 1 << h {
                // The right half is a whole piece, and the run begins in the left half.
                if !last {
                    self.set_cont(a + (1 << h), h);
                }
                last = false;
                s -= 1 << h;
            } else {
                self.set_free(a, h);
                a += 1 << h;
            }
            k = h;
        }
        if !last {
            self.set_cont(a, k);
        }
        a
    }

    /// Frees block `(a, k)` into the bitmaps, merged with its free buddies. `O(top - k)`.
    #[inline(never)]
    pub(crate) fn merge(&mut self, mut a: usize, mut k: u32) {
        while k < self.top {
            let b = a ^ (1 << k);
            if !self.is_free(b, k) {
                break;
            }
            self.clear_free(b, k);
            a &= !(1 << k);
            k += 1;
            self.clear_split(a, k);
            trace!("buddy: merge {:#x} order {} -> {}", a, k - 1, k);
        }
        self.set_free(a, k);
    }

    /// Frees the run of `s` bytes at `a` (its pieces: the greedy decomposition of `[a, a + s)`
    /// into aligned blocks) into the bitmaps. `O(log n)`.
    pub(crate) fn free_run(&mut self, mut a: usize, s: usize) {
        let mut rem = s;
        while rem != 0 {
            let h = self.piece(a, rem);
            rem -= 1 << h;
            if rem != 0 {
                self.clear_cont(a, h);
            }
            self.merge(a, h);
            a += 1 << h;
        }
    }

    /// Validates a size-less free of `p` (in the usable range, aligned to the minimum block)
    /// without changing anything; returns the run's size in bytes. `O(log n)`.
    pub(crate) fn run_at(&self, p: usize) -> Result<usize, crate::FreeError> {
        use crate::FreeError;
        let (a, k) = self.leaf(p);
        if a != p {
            return Err(FreeError::Interior);
        }
        if self.is_free(a, k) {
            return Err(FreeError::DoubleFree);
        }
        if p > self.start {
            let (b, j) = self.leaf(p - 1);
            if self.is_cont(b, j) {
                return Err(FreeError::Interior);
            }
        }
        let (mut q, mut k) = (a, k);
        let mut s = 1usize << k;
        while self.is_cont(q, k) {
            let (b, j) = self.next_leaf(q, k);
            if b != q + (1 << k) || self.is_free(b, j) {
                // A continuing piece is always followed by an allocated one.
                return Err(FreeError::Interior);
            }
            (q, k) = (b, j);
            s += 1 << k;
        }
        Ok(s)
    }

    /// Takes the run of `s` bytes at `p` (a multiple of the minimum block) if all of
    /// `[p, p + s)` is free, cut into the greedy pieces (as [`carve`](Tree::carve) does for a
    /// run at the start of its block). Nothing changes when it is not. `O(log n)`: each piece's
    /// leaf is found from the previous piece.
    pub(crate) fn claim(&mut self, p: usize, s: usize) -> bool {
        if s == 0 || !self.contains(p) || p.checked_add(s).is_none_or(|e| e > self.end) {
            return false;
        }
        // A piece of the minimum order has no split bit, so it cannot say "the run goes on":
        // only the last piece may be that small, so the first one must be larger.
        if s != 1 << self.min && p & (1 << self.min) != 0 {
            return false;
        }
        if !self.range_free(p, s) {
            return false;
        }
        // Take.
        let (mut q, mut rem) = (p, s);
        let (mut a, mut j) = self.leaf(p);
        loop {
            let h = self.piece(q, rem);
            rem -= 1 << h;
            self.clear_free(a, j);
            self.split_down(q, j, h);
            if rem == 0 {
                return true;
            }
            self.set_cont(q, h);
            (a, j) = self.next_leaf(q, h);
            q += 1 << h;
        }
    }

    /// All of `[p, p + s)` (`p` in the usable range and a multiple of the minimum block, `s` a
    /// non-zero multiple of it, `p + s <= end`) lies in free blocks of the bitmaps. Read-only,
    /// `O(log n)`: the range is walked in its greedy pieces, each piece's leaf found from the
    /// previous one.
    pub(crate) fn range_free(&self, p: usize, s: usize) -> bool {
        let (mut q, mut rem) = (p, s);
        let (mut a, mut j) = self.leaf(p);
        loop {
            let h = self.piece(q, rem);
            if j < h || !self.is_free(a, j) {
                return false;
            }
            rem -= 1 << h;
            if rem == 0 || q + (1 << h) + rem <= a + (1 << j) {
                // The rest of the range lies in this same free block.
                return true;
            }
            (a, j) = self.next_leaf(q, h);
            q += 1 << h;
        }
    }

    /// Resizes allocated block `(p, k)` to `(p, k2)` in place: shrinking gives the right
    /// halves back (their buddies stay allocated, so nothing merges); growing takes the free
    /// right buddies at orders `k..k2` (all must be free, `p` aligned to `2^k2`). Returns
    /// whether it was done; nothing changes otherwise. `O(|k2 - k|)`.
    pub(crate) fn resize_block(&mut self, p: usize, k: u32, k2: u32) -> bool {
        if k2 < k {
            self.split_down(p, k, k2);
            return true;
        }
        if k2 > self.top || p & ((1 << k2) - 1) != 0 {
            return false;
        }
        if !(k..k2).all(|j| self.is_free(p + (1 << j), j)) {
            return false;
        }
        for j in k..k2 {
            self.clear_free(p + (1 << j), j);
            self.clear_split(p, j + 1);
        }
        true
    }

    /// Adds this tree's free blocks per order (the bitmaps') into `out` (indexed by order).
    pub(crate) fn add_free_counts(&self, out: &mut [usize; 64]) {
        for k in self.min..=self.top {
            let r = (k - self.min) as usize;
            out[k as usize] += self.free_count[r];
        }
    }

    /// Block `(a, k)` is an allocated leaf: what a cached block must be.
    pub(crate) fn is_allocated_leaf(&self, a: usize, k: u32) -> bool {
        k >= self.min
            && k <= self.top
            && self.contains(a)
            && a % (1 << k) == 0
            && self.leaf(a) == (a, k)
            && !self.f(a, k)
    }

    /// Order of the largest free block in the bitmaps.
    pub(crate) fn largest_free_order(&self) -> Option<u32> {
        (self.nonempty != 0).then(|| self.min + 63 - self.nonempty.leading_zeros())
    }

    /// Verifies every invariant of the structure (see the module docs). `O(n)` in minimum blocks.
    pub(crate) fn check(&self) -> Result<(), crate::CheckError> {
        let mut counts = [0usize; MAX_ORDERS];
        let top_first = align_down(self.start, self.top);
        let mut a = top_first;
        while a < self.end {
            self.check_node(a, self.top, &mut counts)?;
            // A span that ends at the top of the address space has no next block.
            match a.checked_add(1 << self.top) {
                Some(next) => a = next,
                None => break,
            }
        }
        for k in self.min..=self.top {
            let r = (k - self.min) as usize;
            let err = |what| crate::CheckError {
                what,
                addr: 0,
                order: k,
            };
            if counts[r] != self.free_count[r] {
                return Err(err("free count differs from the bitmap"));
            }
            if (self.nonempty >> r) & 1 != (self.free_count[r] > 0) as u64 {
                return Err(err("non-empty order mask is stale"));
            }
            let l = self.level(k);
            if !bitmap::summaries_consistent(self.meta, &l.free()) {
                return Err(err("summary bits disagree with the free bitmap"));
            }
            // No bits past the covered blocks.
            for i in l.n..words(l.n) * 64 {
                if bitmap::test(self.meta, l.free_off, l.stride(), i)
                    || (k > self.min && bitmap::test(self.meta, l.split_off, l.stride(), i))
                {
                    return Err(err("bit set past the end of a bitmap"));
                }
            }
        }
        Ok(())
    }

    fn check_node(
        &self,
        a: usize,
        k: u32,
        counts: &mut [usize; MAX_ORDERS],
    ) -> Result<(), crate::CheckError> {
        let err = |what| {
            Err(crate::CheckError {
                what,
                addr: a,
                order: k,
            })
        };
        // The block's last byte: `a + 2^k` itself overflows for a block that ends at the top
        // of the address space (a region there is valid).
        let last = a + ((1 << k) - 1);
        let covered = self.index(a, k).is_some();
        let (f, s) = if covered {
            (self.f(a, k), self.s(a, k))
        } else {
            (false, false)
        };
        if last < self.start || a >= self.end {
            // Wholly outside the range (only at the edges of the covered span).
            if f || s {
                return err("block outside the region is marked");
            }
            return Ok(());
        }
        let inside = a >= self.start && last < self.end;
        if !inside && (!s || f) {
            return err("block straddling the region edge is not split");
        }
        match (f, s) {
            (true, false) => {
                counts[(k - self.min) as usize] += 1;
                if k < self.top && self.is_free(a ^ (1 << k), k) {
                    return err("free block has a free buddy (missed merge)");
                }
                self.check_clear_below(a, k)
            }
            (false, true) => {
                self.check_node(a, k - 1, counts)?;
                self.check_node(a + (1 << (k - 1)), k - 1, counts)
            }
            (true, true) => {
                // Continuing piece: the next piece starts right after it and is allocated.
                let Some(q) = last.checked_add(1).filter(|&q| q < self.end) else {
                    return err("run continues past the region");
                };
                let (b, j) = self.leaf(q);
                if b != q || self.is_free(b, j) {
                    return err("run continues into a free or misaligned block");
                }
                self.check_clear_below(a, k)
            }
            (false, false) => self.check_clear_below(a, k),
        }
    }

    /// Below a leaf every bit is zero.
    fn check_clear_below(&self, a: usize, k: u32) -> Result<(), crate::CheckError> {
        for j in self.min..k {
            for i in 0..1usize << (k - j) {
                let b = a + (i << j);
                if self.f(b, j) || self.s(b, j) {
                    return Err(crate::CheckError {
                        what: "bits set below a leaf",
                        addr: b,
                        order: j,
                    });
                }
            }
        }
        Ok(())
    }
}
