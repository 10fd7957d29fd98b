//! loom: a block freed by another thread (of another shard) while its owner allocates.
#![cfg(loom)]

mod common;

use common::{all_back, disjoint, give, take, tiny};
use loom::sync::Arc;

#[test]
fn a_block_freed_by_another_shard_returns_to_its_chunk_while_the_owner_allocates() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(2, 2)));
        // The first thread (shard 0) grows chunk 0 and allocates p there.
        let p = {
            let a = Arc::clone(&a);
            common::on_thread(move || take(&a, 256))
        };
        // Another thread frees p and allocates (in its own shard, growing chunk 1, or in
        // shard 0: thread ordinals follow the order of first allocation) while a third
        // allocates.
        let t = {
            let a = Arc::clone(&a);
            common::spawn(move || {
                give(&a, p, 256);
                (take(&a, 32), a.current_shard())
            })
        };
        let u = {
            let a = Arc::clone(&a);
            common::spawn(move || (take(&a, 256), a.current_shard()))
        };
        let (r, r_shard) = t.join().unwrap();
        let (q, q_shard) = u.join().unwrap();
        assert!(q != 0 && r != 0);
        assert!(disjoint(&[(q, 256), (r, 32)]));
        assert_ne!(q_shard, r_shard);
        let (owner0, chunk0) = a.chunk_stats(0).unwrap();
        assert_eq!(owner0, 0);
        assert_eq!(chunk0.frees, 1, "p went back to chunk 0");
        assert_eq!(
            chunk0.live_allocations, 1,
            "the shard-0 thread's block is in chunk 0"
        );
        give(&a, q, 256);
        give(&a, r, 32);
        all_back(&a);
    });
}
