//! loom: growth racing with allocation, and two growths racing for the last chunk.
#![cfg(loom)]

mod common;

use common::{all_back, disjoint, give, take, tiny};
use loom::sync::Arc;

#[test]
fn growth_racing_with_allocation_in_the_full_chunk() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 2)));
        let half = {
            let a = Arc::clone(&a);
            common::on_thread(move || take(&a, 2048)) // chunk 0 is half used
        };
        let t = {
            let a = Arc::clone(&a);
            common::spawn(move || take(&a, 4096)) // does not fit: grows chunk 1
        };
        let u = {
            let a = Arc::clone(&a);
            common::spawn(move || take(&a, 1024)) // fits in chunk 0, racing with the growth
        };
        let whole = t.join().unwrap();
        let small = u.join().unwrap();
        assert!(small != 0 && whole != 0);
        assert!(disjoint(&[(half, 2048), (small, 1024), (whole, 4096)]));
        assert_eq!(a.stats().os.chunks, 2);
        for (p, s) in [(half, 2048), (small, 1024), (whole, 4096)] {
            give(&a, p, s);
        }
        all_back(&a);
    });
}

#[test]
fn two_growths_racing_for_the_last_chunk_give_it_to_one() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 2)));
        let first = {
            let a = Arc::clone(&a);
            common::on_thread(move || take(&a, 16)) // chunk 0 exists and is no longer whole
        };
        let [t, u] = [0, 1].map(|_| {
            let a = Arc::clone(&a);
            common::spawn(move || take(&a, 4096))
        });
        let theirs = t.join().unwrap();
        let mine = u.join().unwrap();
        // Only one more chunk fits in the limit: exactly one whole-chunk request succeeds.
        assert!(
            (mine == 0) != (theirs == 0),
            "mine {mine:#x}, theirs {theirs:#x}"
        );
        let s = a.stats();
        assert_eq!((s.os.chunks, s.os.committed_bytes), (2, 8192));
        assert_eq!(s.heap.failed_requests, 1);
        give(&a, mine.max(theirs), 4096);
        give(&a, first, 16);
        all_back(&a);
    });
}
