//! `ShardBy::Stack`: threads find their shard by their stack's address, with no thread-local
//! (what `libbuddy_malloc.so` uses). Threads spread over the shards, and blocks go back to
//! their chunk whichever thread frees them.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Barrier;

use buddy_std::{BuddyAlloc, Config, ShardBy};

#[test]
fn threads_spread_over_shards_by_stack_and_free_across_them() {
    let a = BuddyAlloc::with_config(
        Config::new()
            .chunk_size(1 << 20)
            .memory_limit(64 << 20)
            .shards(4)
            .shard_by(ShardBy::Stack),
    );
    assert_eq!(a.config().shard_selection(), ShardBy::Stack);
    let layout = Layout::from_size_align(256, 16).unwrap();
    let barrier = Barrier::new(8);
    // Eight threads alive at once, on glibc/Rust default stacks (disjoint 2 MiB+ mappings).
    let results: Vec<(usize, usize, Vec<usize>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let shard = a.current_shard();
                    let again = a.current_shard();
                    // SAFETY: a valid layout; the blocks are freed below, by another thread.
                    let blocks = (0..100)
                        .map(|_| unsafe { a.alloc(layout) }.addr())
                        .collect::<Vec<_>>();
                    barrier.wait();
                    (shard, again, blocks)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut shards: Vec<usize> = results.iter().map(|r| r.0).collect();
    for (shard, again, blocks) in &results {
        assert!(*shard < 4);
        assert_eq!(
            shard, again,
            "a thread keeps its shard at the same stack depth"
        );
        assert!(blocks.iter().all(|&b| b != 0));
    }
    shards.sort_unstable();
    shards.dedup();
    assert!(
        shards.len() >= 2,
        "eight threads all on one shard: {shards:?}"
    );
    // Each thread's blocks freed by the next thread: back to their own chunks.
    std::thread::scope(|s| {
        for (i, _) in results.iter().enumerate() {
            let theirs = &results[(i + 1) % results.len()].2;
            let a = &a;
            s.spawn(move || {
                for &b in theirs {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { a.dealloc(b as *mut u8, layout) };
                }
            });
        }
    });
    assert_eq!(a.stats().live_allocations(), 0);
    a.check().unwrap();
}
