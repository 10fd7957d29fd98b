//! Order math: sizes, shifts and the binary decomposition of addresses.
//!
//! An *order* here is an absolute shift: a block of order `k` is `1 << k` bytes long and its
//! address is a multiple of `1 << k`. With a 16-byte minimum block the smallest order is 4.
//!
//! The two relations every buddy allocator rests on, for a block at address `a` of order `k`:
//!
//! ```text
//! buddy(a, k)  = a ^ (1 << k)        the other half of the parent
//! parent(a, k) = a & !(1 << k)       at order k + 1
//! ```
//!
//! Worked example, 16-byte minimum: the 32-byte block at `0x40` (order 5) splits into
//! `0x40` and `0x50` (order 4), which are buddies: `0x40 ^ 0x10 = 0x50`. Freeing both merges them
//! back into `0x40 & !0x20 = 0x40` at order 5.

/// `floor(log2(x))` for `x >= 1`.
#[inline]
pub(crate) const fn floor_log2(x: usize) -> u32 {
    usize::BITS - 1 - x.leading_zeros()
}

/// Rounds `x` up to a multiple of `1 << shift`; `None` on overflow.
#[inline]
pub(crate) const fn align_up(x: usize, shift: u32) -> Option<usize> {
    let mask = (1usize << shift) - 1;
    match x.checked_add(mask) {
        Some(v) => Some(v & !mask),
        None => None,
    }
}

/// Rounds `x` down to a multiple of `1 << shift`.
#[inline]
pub(crate) const fn align_down(x: usize, shift: u32) -> usize {
    x & !((1usize << shift) - 1)
}

/// Number of 64-bit words that hold `bits` bits.
#[inline]
pub(crate) const fn words(bits: usize) -> usize {
    bits.div_ceil(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_log2_and_alignment_agree() {
        assert_eq!(floor_log2(1), 0);
        assert_eq!(floor_log2(96), 6);
        assert_eq!(align_up(17, 4), Some(32));
        assert_eq!(align_up(32, 4), Some(32));
        assert_eq!(align_up(usize::MAX, 4), None);
        assert_eq!(align_down(47, 4), 32);
        assert_eq!(words(0), 0);
        assert_eq!(words(65), 2);
    }

    #[test]
    fn buddy_and_parent_follow_the_worked_example() {
        let (a, k) = (0x40usize, 4u32);
        assert_eq!(a ^ (1 << k), 0x50);
        assert_eq!(0x50usize & !(1 << k), 0x40);
    }
}
