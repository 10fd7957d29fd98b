//! `cargo xtask demo`'s std part: `BuddyAlloc` as the global allocator of a program whose
//! threads allocate, then the statistics, then memory given back to the OS (RSS before and
//! after freeing 128 MiB).
//!
//! Run it with `cargo run --release -p buddy-std --example threads`.

use std::collections::HashMap;

use buddy_std::{BuddyAlloc, resident_bytes};

#[global_allocator]
static GLOBAL: BuddyAlloc = BuddyAlloc::new();

const MIB: usize = 1 << 20;

fn main() {
    println!("buddy-std: BuddyAlloc as the global allocator");

    // Four threads build maps of strings; the main thread joins them and checks the results.
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let map: HashMap<u32, String> = (0..50_000)
                    .map(|i| (i, format!("thread {t} item {i}")))
                    .collect();
                map.values().map(String::len).sum::<usize>()
            })
        })
        .collect();
    let bytes: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let s = GLOBAL.stats();
    println!(
        "4 threads wrote {} KiB of strings: {} allocations, {} frees, {} live now",
        bytes >> 10,
        s.heap.allocations,
        s.heap.frees,
        s.live_allocations()
    );
    println!(
        "{} chunks of {} MiB in use (one group per shard), {} KiB of bitmaps, largest free block {} MiB",
        s.os.chunks,
        s.os.chunk_bytes / MIB,
        s.heap.metadata_bytes >> 10,
        s.heap.largest_free_block / MIB
    );

    // Memory given back: 128 blocks of 1 MiB, every page written, then freed.
    let rss = || resident_bytes().unwrap_or(0) / MIB;
    let before = rss();
    let blocks: Vec<Vec<u8>> = (0..128).map(|i| vec![i as u8; MIB]).collect();
    let full = rss();
    let sum: usize = blocks.iter().map(|b| b[MIB - 1] as usize).sum();
    drop(blocks);
    let after = rss();
    let s = GLOBAL.stats();
    println!("RSS {before} MiB -> {full} MiB with 128 MiB allocated (checksum {sum})");
    println!(
        "RSS {full} MiB -> {after} MiB after freeing it: {} MiB given back with madvise in {} calls",
        s.os.purged_bytes / MIB,
        s.os.purges
    );
}
