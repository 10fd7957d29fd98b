//! loom: statistics read while other threads allocate, free and fail.
#![cfg(loom)]

mod common;

use common::{all_back, give, take, tiny};
use loom::sync::Arc;

#[test]
fn stats_read_during_allocation_are_consistent_and_counters_lose_nothing() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 1)));
        let kept = {
            let a = Arc::clone(&a);
            common::on_thread(move || take(&a, 16)) // the chunk exists
        };
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let a = Arc::clone(&a);
                common::spawn(move || {
                    let p = take(&a, 100);
                    assert_eq!(take(&a, 1 << 20), 0, "larger than the limit");
                    give(&a, p, 100);
                })
            })
            .collect();
        let s = a.stats();
        // A snapshot of one chunk is taken under its lock: it adds up.
        assert_eq!(
            s.heap.free_bytes + s.heap.allocated_bytes,
            s.heap.managed_bytes
        );
        assert!(s.heap.live_allocations >= 1 && s.heap.live_allocations <= 3);
        assert!(s.heap.failed_requests <= 2);
        for w in workers {
            w.join().unwrap();
        }
        let s = a.stats();
        assert_eq!((s.heap.allocations, s.heap.frees), (3, 2));
        assert_eq!(s.heap.failed_requests, 2, "no failure lost between threads");
        give(&a, kept, 16);
        all_back(&a);
    });
}
