//! Property test of the C face (`buddy_std::malloc`, feature `malloc`): random sequences of
//! `malloc`, `calloc`, `aligned_alloc`, `realloc` (0 and huge sizes included) and `free`,
//! with bad pointers (interior, freed) thrown in, against a list of live blocks.
//!
//! A small allocator (256 KiB chunks, a 2 MiB limit) so that every path of the size-less
//! `realloc` runs: in place, moved inside its chunk, refused there and moved to another
//! chunk, above 4 KiB with the copy outside the lock, into and out of direct mappings (larger
//! than a chunk), and refused at the limit. After every step: the touched block's contents
//! (whole), every live block's ends, usable sizes at least what was asked, no two live blocks
//! overlapping, the live count; the allocator's own `check()` after every sequence, and
//! nothing live once all is freed.
#![cfg(feature = "malloc")]

use core::ffi::c_void;

use buddy_std::malloc::{self, CError};
use buddy_std::{BuddyAlloc, Config};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    AlignedAlloc(u32, usize),
    Realloc(usize, usize),
    Free(usize),
    /// `free` and `realloc` of a pointer inside a live block: refused, nothing changes.
    Interior(usize, usize),
    /// `free` and `realloc` of the block freed last (if nothing was allocated since).
    FreedAgain(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=64,
        6 => 65usize..=512,
        6 => 513usize..=4096,
        3 => 4097usize..=70_000,
        2 => 200_000usize..=600_000,
        1 => Just(usize::MAX / 4),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => size().prop_map(Op::Malloc),
        2 => (0usize..=40, 0usize..=600).prop_map(|(n, s)| Op::Calloc(n, s)),
        2 => (4u32..=13, size()).prop_map(|(a, s)| Op::AlignedAlloc(a, s)),
        10 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        6 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 1usize..=4096).prop_map(|(i, o)| Op::Interior(i, o)),
        1 => (0usize..=10_000).prop_map(Op::FreedAgain),
    ]
}

/// A live block: where, how many bytes were asked for, and the seed of its contents.
#[derive(Clone, Copy, Debug)]
struct Live {
    p: *mut c_void,
    size: usize,
    seed: u8,
}

fn byte(seed: u8, i: usize) -> u8 {
    seed.wrapping_mul(31)
        .wrapping_add((i as u8).wrapping_mul(7))
        ^ (i >> 8) as u8
}

/// Writes the pattern of `seed` over bytes `from..to` of `p`.
fn fill(p: *mut c_void, from: usize, to: usize, seed: u8) {
    // SAFETY: `p` is a live block of at least `to` bytes (the callers' use).
    let s = unsafe { core::slice::from_raw_parts_mut(p.cast::<u8>(), to) };
    for (i, b) in s.iter_mut().enumerate().skip(from) {
        *b = byte(seed, i);
    }
}

/// The first index of `range` where the block's bytes differ from the pattern.
fn differs(b: &Live, range: core::ops::Range<usize>) -> Option<usize> {
    // SAFETY: `b.p` is a live block of at least `b.size` bytes, and `range` within it.
    let s = unsafe { core::slice::from_raw_parts(b.p.cast::<u8>(), b.size) };
    range.into_iter().find(|&i| s[i] != byte(b.seed, i))
}

struct Model {
    h: BuddyAlloc,
    live: Vec<Live>,
    /// The block freed last, while no allocation has happened since.
    freed: Option<*mut c_void>,
    next_seed: u8,
}

impl Model {
    fn seed(&mut self) -> u8 {
        self.next_seed = self.next_seed.wrapping_add(1);
        self.next_seed
    }

    fn add(&mut self, p: *mut c_void, size: usize, zeroed: bool) -> Result<(), TestCaseError> {
        if zeroed {
            // SAFETY: a fresh block of at least `size` bytes.
            let s = unsafe { core::slice::from_raw_parts(p.cast::<u8>(), size) };
            prop_assert!(s.iter().all(|&b| b == 0), "calloc'd block not zeroed");
        }
        let seed = self.seed();
        fill(p, 0, size, seed);
        self.live.push(Live { p, size, seed });
        self.freed = None;
        Ok(())
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.live.is_empty()).then(|| i % self.live.len())
    }

    /// A refused call changed nothing: same live count, same contents (checked after the step).
    fn refused_bad(&self, r: Result<(), CError>, live_before: usize) -> Result<(), TestCaseError> {
        prop_assert!(matches!(r, Err(CError::BadPointer(_))), "{r:?}");
        prop_assert_eq!(self.h.stats().live_allocations(), live_before);
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<Option<usize>, TestCaseError> {
        let h = &self.h;
        match *op {
            Op::Malloc(size) => match malloc::malloc(h, size) {
                Ok(p) => self.add(p.as_ptr(), size, false)?,
                Err(e) => prop_assert_eq!(e, CError::OutOfMemory),
            },
            Op::Calloc(n, size) => match malloc::calloc(h, n, size) {
                Ok(p) => self.add(p.as_ptr(), n * size, true)?,
                Err(e) => prop_assert_eq!(e, CError::OutOfMemory),
            },
            Op::AlignedAlloc(shift, size) => match malloc::aligned_alloc(h, 1 << shift, size) {
                Ok(p) => {
                    prop_assert_eq!(p.as_ptr().addr() % (1 << shift), 0);
                    self.add(p.as_ptr(), size, false)?;
                }
                Err(e) => prop_assert_eq!(e, CError::OutOfMemory),
            },
            Op::Realloc(i, size) => {
                let Some(i) = self.pick(i) else {
                    return Ok(None);
                };
                let b = self.live[i];
                // SAFETY: `b.p` is live and used by nobody else; on success not used again.
                match unsafe { malloc::realloc(h, b.p, size) } {
                    Ok(None) => {
                        prop_assert_eq!(size, 0, "realloc returned no block");
                        self.live.swap_remove(i);
                        self.freed = Some(b.p);
                        return Ok(None);
                    }
                    Ok(Some(q)) => {
                        prop_assert!(size > 0);
                        let moved = Live {
                            p: q.as_ptr(),
                            size,
                            seed: b.seed,
                        };
                        let kept = b.size.min(size);
                        let bad = differs(
                            &Live {
                                size: kept,
                                ..moved
                            },
                            0..kept,
                        );
                        prop_assert_eq!(bad, None, "contents lost by realloc {:?} -> {}", b, size);
                        fill(q.as_ptr(), kept, size, b.seed);
                        self.live[i] = moved;
                        self.freed = None;
                        return Ok(Some(i));
                    }
                    Err(e) => {
                        prop_assert_eq!(e, CError::OutOfMemory);
                        // A request a chunk serves fails only when no new chunk fits
                        // under the limit.
                        let os = h.stats().os;
                        prop_assert!(
                            size > os.chunk_bytes
                                || os.committed_bytes + os.chunk_bytes > os.limit_bytes,
                            "realloc {} -> {} refused with room for a chunk: {:?}",
                            b.size,
                            size,
                            os
                        );
                        return Ok(Some(i));
                    }
                }
            }
            Op::Free(i) => {
                let Some(i) = self.pick(i) else {
                    return Ok(None);
                };
                let b = self.live.swap_remove(i);
                // SAFETY: live, freed once.
                prop_assert_eq!(unsafe { malloc::free(h, b.p) }, Ok(()));
                self.freed = Some(b.p);
            }
            Op::Interior(i, off) => {
                let Some(i) = self.pick(i) else {
                    return Ok(None);
                };
                let b = self.live[i];
                let usable = malloc::usable_size(h, b.p).unwrap();
                let inside =
                    b.p.wrapping_byte_add(off % usable.max(2))
                        .max(b.p.wrapping_byte_add(1));
                let before = h.stats().live_allocations();
                // SAFETY: refused: not the start of a block.
                self.refused_bad(unsafe { malloc::free(h, inside) }, before)?;
                // SAFETY: as above.
                let r = unsafe { malloc::realloc(h, inside, off) }.map(drop);
                self.refused_bad(r, before)?;
                return Ok(Some(i));
            }
            Op::FreedAgain(size) => {
                let Some(p) = self.freed else {
                    return Ok(None);
                };
                let before = h.stats().live_allocations();
                // SAFETY: refused: freed, and nothing allocated since. (A double free, or
                // an interior pointer once its block merged into a larger free one.)
                let r = unsafe { malloc::realloc(h, p, size) }.map(drop);
                self.refused_bad(r, before)?;
                // SAFETY: as above.
                self.refused_bad(unsafe { malloc::free(h, p) }, before)?;
            }
        }
        Ok(self.live.len().checked_sub(1))
    }

    /// The checks after every step; `touched`: the block the step made or changed, checked whole.
    fn verify(&self, touched: Option<usize>) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.h.stats().live_allocations(), self.live.len());
        if let Some(b) = touched.and_then(|i| self.live.get(i)) {
            prop_assert_eq!(differs(b, 0..b.size), None, "contents of {:?}", b);
        }
        let mut extents = Vec::with_capacity(self.live.len());
        for b in &self.live {
            let usable = malloc::usable_size(&self.h, b.p);
            prop_assert!(
                usable.is_ok_and(|u| u >= b.size.max(1)),
                "usable size {usable:?} of {b:?}"
            );
            let n = b.size.min(64);
            prop_assert_eq!(differs(b, 0..n), None, "start of {:?}", b);
            prop_assert_eq!(differs(b, b.size - n..b.size), None, "end of {:?}", b);
            extents.push((b.p.addr(), b.p.addr() + usable.unwrap_or(0)));
        }
        extents.sort_unstable();
        for w in extents.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "live blocks overlap: {w:?}");
        }
        Ok(())
    }
}

fn run(ops: &[Op], compact: bool) -> Result<(), TestCaseError> {
    let config = Config::new()
        .chunk_size(256 << 10)
        .memory_limit(2 << 20)
        .compact(compact);
    let mut m = Model {
        h: BuddyAlloc::with_config(config),
        live: Vec::new(),
        freed: None,
        next_seed: 0,
    };
    for op in ops {
        let touched = m.step(op)?;
        m.verify(touched)?;
    }
    prop_assert_eq!(m.h.check(), Ok(()));
    for b in core::mem::take(&mut m.live) {
        prop_assert_eq!(differs(&b, 0..b.size), None, "contents of {:?}", b);
        // SAFETY: live, freed once.
        prop_assert_eq!(unsafe { malloc::free(&m.h, b.p) }, Ok(()));
    }
    prop_assert_eq!(m.h.stats().live_allocations(), 0);
    prop_assert_eq!(m.h.check(), Ok(()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn c_face_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops, false)?;
    }

    /// The configuration of `libbuddy_malloc.so`: exact-fit runs from 513 bytes up.
    #[test]
    fn c_face_matches_the_model_compact(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops, true)?;
    }
}
