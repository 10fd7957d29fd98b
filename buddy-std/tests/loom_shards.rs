//! loom: allocation and free racing on the same shard (one chunk, one lock) and on
//! different shards (each growing its own chunk).
#![cfg(loom)]

mod common;

use common::{all_back, disjoint, give, take, tiny};
use loom::sync::Arc;

#[test]
fn same_shard_alloc_and_free_never_hand_out_a_block_twice() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 1)));
        // Set up the chunk first, so the model explores the chunk's lock.
        let kept = {
            let a = Arc::clone(&a);
            common::on_thread(move || take(&a, 32))
        };
        let t = {
            let a = Arc::clone(&a);
            common::spawn(move || {
                let p = take(&a, 48);
                let q = take(&a, 16);
                give(&a, p, 48);
                q
            })
        };
        let u = {
            let a = Arc::clone(&a);
            common::spawn(move || {
                let p = take(&a, 48);
                give(&a, kept, 32);
                p
            })
        };
        let theirs = t.join().unwrap();
        let mine = u.join().unwrap();
        assert!(mine != 0 && theirs != 0);
        assert!(disjoint(&[(mine, 48), (theirs, 16)]));
        give(&a, mine, 48);
        give(&a, theirs, 16);
        all_back(&a);
    });
}

#[test]
fn threads_of_different_shards_grow_and_use_their_own_chunks() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(2, 2)));
        let [t, u] = [0, 1].map(|_| {
            let a = Arc::clone(&a);
            common::spawn(move || (take(&a, 64), a.current_shard()))
        });
        let (theirs, their_shard) = t.join().unwrap();
        let (mine, my_shard) = u.join().unwrap();
        assert_ne!(my_shard, their_shard);
        assert!(mine != 0 && theirs != 0);
        // The checks walk whole heaps: on a thread with a big stack (the model's own has 32 KiB).
        common::on_thread(move || {
            // Two chunks, one per shard, each holding its thread's block.
            assert_eq!(a.stats().os.chunks, 2);
            for i in 0..2 {
                let (owner, s) = a.chunk_stats(i).unwrap();
                assert!(owner < 2);
                assert_eq!(s.live_allocations, 1);
            }
            assert_ne!(a.chunk_stats(0).unwrap().0, a.chunk_stats(1).unwrap().0);
            assert_ne!(mine >> 12, theirs >> 12, "blocks in different 4 KiB chunks");
            give(&a, mine, 64);
            give(&a, theirs, 64);
            all_back(&a);
        });
    });
}
