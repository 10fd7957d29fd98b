//! Scribbling over free memory: `BuddyAlloc::scribble_free` writes every free byte and no live
//! one, even while other threads allocate, resize and free. The allocator keeps no state in
//! the memory it manages, so garbage there changes nothing it does.
#![cfg(not(loom))]

mod patterns;

use std::alloc::GlobalAlloc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use buddy_std::{BuddyAlloc, Config, Purge};
use patterns::{Block, Rng};

const MIB: usize = 1 << 20;

/// Steps per worker thread. Kept small enough for valgrind (`cargo xtask test` runs the test
/// binaries under it too).
const STEPS: usize = 2000;

#[test]
fn scribbling_writes_every_free_byte_and_no_live_one() {
    let a = BuddyAlloc::with_config(
        Config::new()
            .chunk_size(MIB)
            .memory_limit(MIB)
            .shards(1)
            .purge(Purge::Never),
    );
    let mut rng = Rng(7);
    let mut live = Vec::new();
    for id in 0..200 {
        let size = 1 + rng.below(3000);
        let align = 1 << rng.below(9);
        live.push(Block::new(&a, size, align, id).unwrap());
    }
    // Free every other block: free memory between live blocks, in every size.
    let mut kept = Vec::new();
    for (i, b) in live.into_iter().enumerate() {
        if i % 2 == 0 {
            // SAFETY: a live block of this test.
            unsafe { b.free(&a) };
        } else {
            kept.push(b);
        }
    }
    let free = a.stats().heap.free_bytes;
    assert_eq!(a.scribble_free(0xA5), free, "every free byte, once");
    for b in &kept {
        // SAFETY: live blocks of this test.
        unsafe { b.check() };
    }
    // Take all the free memory back in minimum blocks: every byte holds the scribble.
    let min = a.config().min_block_bytes();
    let mut taken = Vec::new();
    while let Some(b) = alloc_unfilled(&a, min) {
        // SAFETY: a fresh block of `min` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(b as *const u8, min) };
        assert!(bytes.iter().all(|&x| x == 0xA5), "block {b:#x}: {bytes:?}");
        taken.push(b);
    }
    assert_eq!(taken.len() * min, free);
    assert_eq!(a.scribble_free(0x5A), 0, "nothing is free any more");
    for b in taken {
        // SAFETY: allocated above with this layout.
        unsafe { a.dealloc(b as *mut u8, layout(min)) };
    }
    for b in kept {
        // SAFETY: live blocks of this test.
        unsafe { b.free(&a) };
    }
    a.check().unwrap();
    assert_eq!(a.stats().live_allocations(), 0);
}

fn layout(size: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(size, 1).unwrap()
}

/// A block of `size` bytes, its contents left as the allocator hands them out.
fn alloc_unfilled(a: &BuddyAlloc, size: usize) -> Option<usize> {
    // SAFETY: a valid, non-zero layout.
    let p = unsafe { a.alloc(layout(size)) };
    (!p.is_null()).then_some(p as usize)
}

#[test]
fn threads_never_see_scribbled_bytes_in_their_blocks() {
    let a = BuddyAlloc::with_config(
        Config::new()
            .chunk_size(MIB)
            .memory_limit(64 * MIB)
            .shards(2)
            // Blocks of 64 KiB and more are purged when freed: scribbling races with that too.
            .purge(Purge::AtLeast(64 << 10)),
    );
    let done = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    let workers = 4;
    std::thread::scope(|s| {
        let scribbler = s.spawn(|| {
            let mut byte = 0u8;
            while !done.load(Relaxed) {
                byte = byte.wrapping_add(0x3B);
                a.scribble_free(byte);
                rounds.fetch_add(1, Relaxed);
                // Let the workers at the chunks between rounds. Under valgrind, which runs
                // one thread at a time, a scribbler that goes straight on holds them off
                // (345k rounds against the workers' 2000 steps), and a yield is not enough
                // when the other test runs beside this one (900 s in a CI run); a sleep
                // really leaves the CPU (both tests under valgrind: 148-160 s; 37 s since
                // `scribble_free` steps over whole free blocks).
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let handles: Vec<_> = (0..workers)
            .map(|t| {
                let (a, rounds) = (&a, &rounds);
                s.spawn(move || work(a, t, rounds))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        // Stop the scribbler before reporting a worker's failure, or the scope would wait for
        // it forever.
        done.store(true, Relaxed);
        scribbler.join().unwrap();
        for r in results {
            if let Err(e) = r {
                std::panic::resume_unwind(e);
            }
        }
    });
    assert!(
        rounds.load(Relaxed) >= 3,
        "the scribbler ran only {} rounds alongside the workers",
        rounds.load(Relaxed)
    );
    let s = a.stats();
    assert_eq!(s.live_allocations(), 0);
    assert_eq!(s.heap.free_bytes, s.heap.managed_bytes);
    a.check().unwrap();
}

/// One worker: allocates, checks, resizes and frees blocks at random, checking every block's
/// pattern before it is freed or resized, and one random block at every step. It goes on past
/// `STEPS` until the scribbler has done 3 rounds (up to 50 × `STEPS`), so that the two overlap
/// however the threads are scheduled on a loaded machine.
fn work(a: &BuddyAlloc, t: usize, rounds: &AtomicUsize) {
    let mut rng = Rng(0x1234_5678 + t as u64);
    let mut live: Vec<Block> = Vec::new();
    for step in 0..50 * STEPS {
        if step >= STEPS && rounds.load(Relaxed) >= 3 {
            break;
        }
        let id = t << (usize::BITS - 8) | step;
        match rng.below(10) {
            0..=3 if live.len() < 200 => {
                let size = match rng.below(50) {
                    0 => 64 << 10,
                    _ => 1 + rng.below(4000),
                };
                let align = 1 << rng.below(8);
                live.push(Block::new(a, size, align, id).expect("memory left"));
            }
            4..=6 if !live.is_empty() => {
                let b = live.swap_remove(rng.below(live.len()));
                // SAFETY: this thread's live block.
                unsafe { b.free(a) };
            }
            7 if !live.is_empty() => {
                let i = rng.below(live.len());
                let b = live[i];
                let new_size = 1 + rng.below(6000);
                // SAFETY: this thread's live block, with its layout.
                let p = unsafe { a.realloc(b.addr as *mut u8, b.layout(), new_size) };
                assert!(!p.is_null());
                let moved = Block {
                    addr: p as usize,
                    size: new_size,
                    ..b
                };
                // SAFETY: the resized block, live, of `new_size` bytes.
                unsafe {
                    if let Some(at) = moved.first_bad(b.size.min(new_size)) {
                        panic!("{b:?} resized to {moved:?}: byte {at} lost");
                    }
                    let refreshed = Block { id, ..moved };
                    refreshed.fill();
                    live[i] = refreshed;
                }
            }
            _ => {}
        }
        if !live.is_empty() {
            // SAFETY: this thread's live block.
            unsafe { live[rng.below(live.len())].check() };
        }
    }
    for b in live {
        // SAFETY: this thread's live block.
        unsafe { b.free(a) };
    }
}
