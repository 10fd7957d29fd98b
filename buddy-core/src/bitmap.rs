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

/// Words a summarised bitmap of `n` bits occupies, summaries included.
pub(crate) const fn summarised_words(n: usize) -> usize {
    let mut total = 0;
    let mut w = words(n);
    loop {
        total += w;
        if w <= 1 {
            return total;
        }
        w = words(w);
    }
}

#[inline]
fn bit(i: usize) -> u64 {
    1u64 << (i % 64)
}

/// Tests bit `i` of the flat bitmap at `off`.
#[inline]
pub(crate) fn test(meta: &[u64], off: usize, i: usize) -> bool {
    tick();
    meta[off + i / 64] & bit(i) != 0
}

/// Sets bit `i` of the flat bitmap at `off` (no summaries).
#[inline]
pub(crate) fn set_raw(meta: &mut [u64], off: usize, i: usize) {
    tick();
    meta[off + i / 64] |= bit(i);
}

/// Clears bit `i` of the flat bitmap at `off` (no summaries).
#[inline]
pub(crate) fn clear_raw(meta: &mut [u64], off: usize, i: usize) {
    tick();
    meta[off + i / 64] &= !bit(i);
}

#[inline]
fn effective(meta: &[u64], off: usize, mask: usize, w: usize) -> u64 {
    tick();
    let v = meta[off + w];
    if mask == NO_MASK {
        v
    } else {
        v & !meta[mask + w]
    }
}

/// Sets bit `i` of the summarised bitmap (`n` bits at `off`, level 0 masked by `mask`) and
/// updates the summaries. The bit must be clear in the mask.
#[inline]
pub(crate) fn set(meta: &mut [u64], off: usize, n: usize, mask: usize, i: usize) {
    tick();
    let w = i / 64;
    let before = meta[off + w];
    meta[off + w] = before | bit(i);
    let masked = if mask == NO_MASK { 0 } else { meta[mask + w] };
    if before & !masked == 0 {
        // Word `w` of level 0 became non-empty: set its summary bit, and so on upwards.
        summary_set(meta, off, n, w);
    }
}

/// Word `w` of level 0 became non-empty: sets its bit in the summary levels above.
#[cold]
#[inline(never)]
fn summary_set(meta: &mut [u64], off: usize, n: usize, w: usize) {
    let (mut off, mut width, mut i) = (off, words(n), w);
    while width > 1 {
        tick();
        off += width;
        let w = i / 64;
        let before = meta[off + w];
        meta[off + w] = before | bit(i);
        if before != 0 {
            return;
        }
        width = words(width);
        i = w;
    }
}

/// Clears bit `i` of the summarised bitmap and updates the summaries.
#[inline]
pub(crate) fn clear(meta: &mut [u64], off: usize, n: usize, mask: usize, i: usize) {
    tick();
    let w = i / 64;
    let after = meta[off + w] & !bit(i);
    meta[off + w] = after;
    let masked = if mask == NO_MASK { 0 } else { meta[mask + w] };
    if after & !masked == 0 {
        summary_clear(meta, off, n, w);
    }
}

/// Word `w` of level 0 became empty: clears its bit in the summary levels above.
#[cold]
#[inline(never)]
fn summary_clear(meta: &mut [u64], off: usize, n: usize, w: usize) {
    let (mut off, mut width, mut i) = (off, words(n), w);
    while width > 1 {
        tick();
        off += width;
        let w = i / 64;
        meta[off + w] &= !bit(i);
        if meta[off + w] != 0 {
            return;
        }
        width = words(width);
        i = w;
    }
}

/// Index of the lowest set (unmasked) bit of the summarised bitmap, if any.
#[inline]
pub(crate) fn first(meta: &[u64], off: usize, n: usize, mask: usize) -> Option<usize> {
    let mut offs = [0usize; MAX_LEVELS];
    let mut levels = 0;
    let (mut o, mut width) = (off, words(n));
    loop {
        offs[levels] = o;
        levels += 1;
        if width <= 1 {
            break;
        }
        o += width;
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
    let word = effective(meta, off, mask, i);
    if word == 0 {
        return None;
    }
    Some(i * 64 + word.trailing_zeros() as usize)
}

/// Checks that every summary bit of the bitmap agrees with the level below it.
pub(crate) fn summaries_consistent(meta: &[u64], off: usize, n: usize, mask: usize) -> bool {
    let mut width = words(n);
    let mut lower = off;
    let mut first_level = true;
    while width > 1 {
        let upper = lower + width;
        for w in 0..width {
            let nonzero = if first_level {
                effective(meta, off, mask, w) != 0
            } else {
                meta[lower + w] != 0
            };
            if test(meta, upper, w) != nonzero {
                return false;
            }
        }
        // No stray bits past the end of the summary level.
        let up_width = words(width);
        for b in width..up_width * 64 {
            if test(meta, upper, b) {
                return false;
            }
        }
        first_level = false;
        lower = upper;
        width = up_width;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarised_bitmap_finds_the_lowest_bit_across_levels() {
        let n = 64 * 64 * 3 + 5; // three levels
        let total = summarised_words(n);
        let mut meta = [0u64; 256];
        assert!(total <= meta.len());
        assert_eq!(first(&meta, 0, n, NO_MASK), None);
        set(&mut meta, 0, n, NO_MASK, n - 1);
        assert_eq!(first(&meta, 0, n, NO_MASK), Some(n - 1));
        set(&mut meta, 0, n, NO_MASK, 4097);
        assert_eq!(first(&meta, 0, n, NO_MASK), Some(4097));
        assert!(summaries_consistent(&meta, 0, n, NO_MASK));
        clear(&mut meta, 0, n, NO_MASK, 4097);
        assert_eq!(first(&meta, 0, n, NO_MASK), Some(n - 1));
        clear(&mut meta, 0, n, NO_MASK, n - 1);
        assert_eq!(first(&meta, 0, n, NO_MASK), None);
        assert!(meta.iter().all(|&w| w == 0));
    }

    #[test]
    fn masked_bits_are_never_found() {
        let n = 200;
        let bits = summarised_words(n);
        let mut meta = [0u64; 16];
        let mask = bits;
        set_raw(&mut meta, mask, 3);
        // Bit 3 set in the mask first, then in the bitmap (raw, as the tree's run markers do):
        // masked, so not found.
        set_raw(&mut meta, 0, 3);
        assert_eq!(first(&meta, 0, n, mask), None);
        set(&mut meta, 0, n, mask, 150);
        assert_eq!(first(&meta, 0, n, mask), Some(150));
        assert!(summaries_consistent(&meta, 0, n, mask));
        clear(&mut meta, 0, n, mask, 150);
        assert_eq!(first(&meta, 0, n, mask), None);
        assert!(summaries_consistent(&meta, 0, n, mask));
    }

    #[test]
    fn words_of_a_summarised_bitmap_add_up_the_levels() {
        assert_eq!(summarised_words(1), 1);
        assert_eq!(summarised_words(64), 1);
        assert_eq!(summarised_words(65), 3);
        assert_eq!(summarised_words(64 * 64 + 1), 65 + 2 + 1);
    }
}
