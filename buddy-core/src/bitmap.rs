//! The one place that does bit surgery: flat bitmaps and summarised bitmaps in the metadata slice.
//!
//! A *summarised* bitmap of `n` bits is level 0 (the bits) followed by summary levels: bit `w` of
//! level `l + 1` is set iff word `w` of level `l` is non-zero. The top level is one word, so the
//! first set bit of the whole bitmap is found with one `trailing_zeros` per level
//! (`ceil(log64 n)` levels: 4 levels cover 16 M words).
//!
//! Level 0 may be *masked* by a second flat bitmap of the same length (`mask`): the bits that
//! count are `bits & !mask`, and the summaries describe those. The tree uses this to give a block
//! whose free bit and split bit are both set its own meaning (an allocated run that continues, see
//! `tree.rs`) without it ever being found as free.
//!
//! ```text
//! level 2:            [0000_0001]                     one word
//! level 1:   [0000_0000_0000_0101]                    bit w = level-0 word w non-zero
//! level 0:   [..1..] [0] [..1.1] ...                  the bits (masked)
//! ```

use crate::order::words;

/// Metadata words touched so far (feature `op-count`, for the complexity tests only).
#[cfg(feature = "op-count")]
pub(crate) static WORD_OPS: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

#[inline(always)]
fn tick() {
    #[cfg(feature = "op-count")]
    WORD_OPS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// No mask: level 0 counts as it is.
pub(crate) const NO_MASK: usize = usize::MAX;

/// Largest number of levels a summarised bitmap can have (64^11 > 2^64).
const MAX_LEVELS: usize = 11;

/// Words a summarised bitmap of `n` bits occupies, summaries included, when its level-0 words
/// are `stride` words apart (2 when interleaved with a mask bitmap, which is then included).
pub(crate) const fn summarised_words(n: usize, stride: usize) -> usize {
    let mut w = words(n);
    let mut total = stride * w;
    while w > 1 {
        w = words(w);
        total += w;
    }
    total
}

#[inline]
fn bit(i: usize) -> u64 {
    1u64 << (i % 64)
}

/// Tests bit `i` of the flat bitmap at `off` whose words are `stride` apart.
#[inline]
pub(crate) fn test(meta: &[u64], off: usize, stride: usize, i: usize) -> bool {
    tick();
    meta[off + i / 64 * stride] & bit(i) != 0
}

/// Bit `i` is set in the second and clear in the first of two interleaved bitmaps (a tree
/// level above the minimum order: the free words at `off`, the split words right after each):
/// both words read from one index computation, and they share a cache line.
#[inline]
pub(crate) fn test_second_only(meta: &[u64], off: usize, i: usize) -> bool {
    tick();
    let w = off + i / 64 * 2;
    meta[w + 1] & !meta[w] & bit(i) != 0
}

/// Sets bit `i` of the flat bitmap at `off` (no summaries).
#[inline]
pub(crate) fn set_raw(meta: &mut [u64], off: usize, stride: usize, i: usize) {
    tick();
    meta[off + i / 64 * stride] |= bit(i);
}

/// Clears bit `i` of the flat bitmap at `off` (no summaries).
#[inline]
pub(crate) fn clear_raw(meta: &mut [u64], off: usize, stride: usize, i: usize) {
    tick();
    meta[off + i / 64 * stride] &= !bit(i);
}

/// A summarised bitmap: `n` bits whose level-0 words start at `off`, `stride` words apart,
/// optionally masked by the flat bitmap at `mask` (same stride; `NO_MASK` for none). The
/// summary levels follow level 0, packed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Summarised {
    pub(crate) off: usize,
    pub(crate) stride: usize,
    pub(crate) n: usize,
    pub(crate) mask: usize,
}

impl Summarised {
    /// Where summary level 1 starts.
    #[inline]
    fn summary(&self) -> usize {
        self.off + self.stride * words(self.n)
    }

    /// Level-0 word `w`, masked.
    #[inline]
    fn effective(&self, meta: &[u64], w: usize) -> u64 {
        tick();
        let v = meta[self.off + w * self.stride];
        if self.mask == NO_MASK {
            v
        } else {
            v & !meta[self.mask + w * self.stride]
        }
    }
}

/// Sets bit `i` and updates the summaries. The bit must be clear in the mask.
#[inline]
pub(crate) fn set(meta: &mut [u64], b: &Summarised, i: usize) {
    tick();
    let w = i / 64;
    let at = b.off + w * b.stride;
    let before = meta[at];
    meta[at] = before | bit(i);
    let masked = if b.mask == NO_MASK {
        0
    } else {
        meta[b.mask + w * b.stride]
    };
    if before & !masked == 0 {
        // Word `w` of level 0 became non-empty: set its summary bit, and so on upwards.
        summary_set(meta, b.summary(), words(b.n), w);
    }
}

/// Level-0 word `w` (of `width` words) became non-empty: sets its bit in the summary levels,
/// which start at `off`.
#[cold]
#[inline(never)]
fn summary_set(meta: &mut [u64], off: usize, width: usize, w: usize) {
    let (mut off, mut width, mut i) = (off, width, w);
    while width > 1 {
        tick();
        let w = i / 64;
        let before = meta[off + w];
        meta[off + w] = before | bit(i);
        if before != 0 {
            return;
        }
        off += words(width);
        width = words(width);
        i = w;
    }
}

/// Clears bit `i` and updates the summaries.
#[inline]
pub(crate) fn clear(meta: &mut [u64], b: &Summarised, i: usize) {
    tick();
    let w = i / 64;
    let at = b.off + w * b.stride;
    let after = meta[at] & !bit(i);
    meta[at] = after;
    let masked = if b.mask == NO_MASK {
        0
    } else {
        meta[b.mask + w * b.stride]
    };
    if after & !masked == 0 {
        summary_clear(meta, b.summary(), words(b.n), w);
    }
}

/// Level-0 word `w` became empty: clears its bit in the summary levels at `off`.
#[cold]
#[inline(never)]
fn summary_clear(meta: &mut [u64], off: usize, width: usize, w: usize) {
    let (mut off, mut width, mut i) = (off, width, w);
    while width > 1 {
        tick();
        let w = i / 64;
        meta[off + w] &= !bit(i);
        if meta[off + w] != 0 {
            return;
        }
        off += words(width);
        width = words(width);
        i = w;
    }
}

/// Index of the lowest set (unmasked) bit, if any: one `trailing_zeros` per level.
#[inline]
pub(crate) fn first(meta: &[u64], b: &Summarised) -> Option<usize> {
    // Offsets of the summary levels (level l >= 1 at offs[l]).
    let mut offs = [0usize; MAX_LEVELS];
    let mut levels = 1;
    let (mut o, mut width) = (b.summary(), words(b.n));
    while width > 1 {
        offs[levels] = o;
        levels += 1;
        o += words(width);
        width = words(width);
    }
    let mut i = 0usize;
    for l in (1..levels).rev() {
        tick();
        let word = meta[offs[l] + i];
        if word == 0 {
            return None;
        }
        i = i * 64 + word.trailing_zeros() as usize;
    }
    let word = b.effective(meta, i);
    if word == 0 {
        return None;
    }
    Some(i * 64 + word.trailing_zeros() as usize)
}

/// Index of the lowest set (unmasked) bit at or after `from`, if any. `O(levels)`.
pub(crate) fn next(meta: &[u64], b: &Summarised, from: usize) -> Option<usize> {
    if from >= b.n {
        return None;
    }
    let mut offs = [0usize; MAX_LEVELS];
    let mut widths = [0usize; MAX_LEVELS];
    let mut levels = 1;
    let (mut o, mut width) = (b.summary(), words(b.n));
    widths[0] = width;
    while width > 1 {
        offs[levels] = o;
        o += words(width);
        width = words(width);
        widths[levels] = width;
        levels += 1;
    }
    let w = from / 64;
    let v = b.effective(meta, w) & (u64::MAX << (from % 64));
    if v != 0 {
        return Some(w * 64 + v.trailing_zeros() as usize);
    }
    // Bits of level l index the words of level l - 1 (widths[l - 1] of them).
    let mut idx = w + 1;
    let mut l = 1;
    let mut j = loop {
        if l >= levels || idx >= widths[l - 1] {
            return None;
        }
        tick();
        let v = meta[offs[l] + idx / 64] & (u64::MAX << (idx % 64));
        if v != 0 {
            break (idx / 64) * 64 + v.trailing_zeros() as usize;
        }
        idx = idx / 64 + 1;
        l += 1;
    };
    while l > 1 {
        l -= 1;
        tick();
        j = j * 64 + meta[offs[l] + j].trailing_zeros() as usize;
    }
    let v = b.effective(meta, j);
    (v != 0).then(|| j * 64 + v.trailing_zeros() as usize)
}

/// Checks that every summary bit agrees with the level below it, and that no bit is set past
/// the end of any level.
pub(crate) fn summaries_consistent(meta: &[u64], b: &Summarised) -> bool {
    let mut width = words(b.n);
    for i in b.n..width * 64 {
        if test(meta, b.off, b.stride, i) {
            return false;
        }
    }
    let mut upper = b.summary();
    let mut lower = usize::MAX;
    while width > 1 {
        for w in 0..width {
            let nonzero = if lower == usize::MAX {
                b.effective(meta, w) != 0
            } else {
                meta[lower + w] != 0
            };
            if test(meta, upper, 1, w) != nonzero {
                return false;
            }
        }
        let up_width = words(width);
        for bit in width..up_width * 64 {
            if test(meta, upper, 1, bit) {
                return false;
            }
        }
        lower = upper;
        upper += up_width;
        width = up_width;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(n: usize) -> Summarised {
        Summarised {
            off: 0,
            stride: 1,
            n,
            mask: NO_MASK,
        }
    }

    #[test]
    fn summarised_bitmap_finds_the_lowest_bit_across_levels() {
        let n = 64 * 64 * 3 + 5; // three levels
        let b = plain(n);
        let mut meta = [0u64; 256];
        assert!(summarised_words(n, 1) <= meta.len());
        assert_eq!(first(&meta, &b), None);
        set(&mut meta, &b, n - 1);
        assert_eq!(first(&meta, &b), Some(n - 1));
        set(&mut meta, &b, 4097);
        assert_eq!(first(&meta, &b), Some(4097));
        assert!(summaries_consistent(&meta, &b));
        clear(&mut meta, &b, 4097);
        assert_eq!(first(&meta, &b), Some(n - 1));
        clear(&mut meta, &b, n - 1);
        assert_eq!(first(&meta, &b), None);
        assert!(meta.iter().all(|&w| w == 0));
    }

    #[test]
    fn next_finds_the_lowest_bit_at_or_after_any_index() {
        let n = 64 * 64 * 3 + 5; // three levels
        let b = plain(n);
        let mut meta = [0u64; 256];
        let bits = [3, 64, 65, 4095, 4096, 8190, n - 1];
        for &i in &bits {
            set(&mut meta, &b, i);
        }
        // Against a scan of the bits, from every index (and past the end).
        for from in 0..n + 70 {
            let want = bits.iter().copied().find(|&i| i >= from);
            assert_eq!(next(&meta, &b, from), want, "from {from}");
        }
        clear(&mut meta, &b, 4096);
        assert_eq!(next(&meta, &b, 4096), Some(8190));
    }

    #[test]
    fn masked_bits_are_never_found_and_interleaved_words_stay_apart() {
        let n = 200;
        // Interleaved: bits in even words, mask in odd words.
        let b = Summarised {
            off: 0,
            stride: 2,
            n,
            mask: 1,
        };
        let mut meta = [0u64; 16];
        assert_eq!(summarised_words(n, 2), 2 * 4 + 1);
        set_raw(&mut meta, 1, 2, 3);
        // Bit 3 set in the mask first, then in the bitmap (raw, as the tree's run markers do):
        // masked, so not found.
        set_raw(&mut meta, 0, 2, 3);
        assert_eq!(first(&meta, &b), None);
        assert_eq!(next(&meta, &b, 0), None);
        set(&mut meta, &b, 150);
        assert_eq!(meta[4], 1 << (150 - 128));
        assert_eq!(first(&meta, &b), Some(150));
        assert_eq!(next(&meta, &b, 0), Some(150));
        assert!(summaries_consistent(&meta, &b));
        clear(&mut meta, &b, 150);
        assert_eq!(first(&meta, &b), None);
        assert!(summaries_consistent(&meta, &b));
    }

    #[test]
    fn words_of_a_summarised_bitmap_add_up_the_levels() {
        assert_eq!(summarised_words(1, 1), 1);
        assert_eq!(summarised_words(64, 1), 1);
        assert_eq!(summarised_words(65, 1), 3);
        assert_eq!(summarised_words(65, 2), 5);
        assert_eq!(summarised_words(64 * 64 + 1, 1), 65 + 2 + 1);
    }
}
