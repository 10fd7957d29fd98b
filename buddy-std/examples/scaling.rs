//! How allocation throughput scales with threads, by shard count: the measurement behind
//! the default of 4 shards. Each thread keeps 64 blocks of 16..1024 bytes live and replaces
//! the oldest one per step (free + alloc). Prints nanoseconds per step, per thread.
//!
//! `cargo run --release -p buddy-std --example scaling [steps per thread]`
//!
//! A measurement, not a test: the figures depend on the machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Instant;

use buddy_std::{BuddyAlloc, Config};

fn work<A: GlobalAlloc>(a: &A, steps: usize, seed: u64) {
    let mut ring: [(usize, usize); 64] = [(0, 0); 64];
    let mut x = seed | 1;
    for step in 0..steps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = step % ring.len();
        let (p, size) = ring[slot];
        if p != 0 {
            // SAFETY: allocated below with this layout, freed once.
            unsafe { a.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
        }
        let size = 16 + (x as usize % 1009);
        // SAFETY: a valid non-zero layout.
        let q = unsafe { a.alloc(Layout::from_size_align(size, 8).unwrap()) };
        assert!(!q.is_null());
        // SAFETY: a fresh block of at least one byte.
        unsafe { q.write(step as u8) };
        ring[slot] = (q as usize, size);
    }
    for (p, size) in ring {
        if p != 0 {
            // SAFETY: as above.
            unsafe { a.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
        }
    }
}

/// Nanoseconds per step per thread, `threads` threads at once.
fn measure<A: GlobalAlloc + Sync>(a: &A, threads: usize, steps: usize) -> f64 {
    work(a, steps / 10, 99); // warm up: chunks set up, caches filled
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || work(a, steps, t as u64 * 7919 + 1));
        }
    });
    start.elapsed().as_nanos() as f64 / steps as f64
}

fn main() {
    let steps = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("ns per free+alloc step, {steps} steps per thread, {cores} cores");
    println!(
        "{:<22}{:>10}{:>10}{:>10}",
        "allocator", "1 thread", "2 threads", "4 threads"
    );
    let row = |name: &str, f: &dyn Fn(usize) -> f64| {
        println!("{name:<22}{:>10.1}{:>10.1}{:>10.1}", f(1), f(2), f(4));
    };
    for shards in [1, 2, 4] {
        row(&format!("BuddyAlloc, {shards} shard(s)"), &|threads| {
            let a = BuddyAlloc::with_config(Config::new().shards(shards));
            measure(&a, threads, steps)
        });
    }
    row("System (glibc)", &|threads| {
        measure(&System, threads, steps)
    });
}
