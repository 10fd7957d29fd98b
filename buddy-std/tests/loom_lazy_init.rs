//! loom: two threads race to make the first allocation, which reserves the memory.
#![cfg(loom)]

mod common;

use common::{BufferOs, all_back, disjoint, give, take, tiny};
use loom::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

#[test]
fn racing_first_allocations_reserve_once_and_get_distinct_blocks() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 2)));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let a = Arc::clone(&a);
                common::spawn(move || take(&a, 64))
            })
            .collect();
        let got: Vec<usize> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let (mine, theirs) = (got[0], got[1]);
        assert!(mine != 0 && theirs != 0);
        assert!(disjoint(&[(mine, 64), (theirs, 64)]));
        // The directory and the arena, each mapped exactly once.
        assert_eq!(a.os().maps.load(Relaxed), 2);
        give(&a, mine, 64);
        give(&a, theirs, 64);
        all_back(&a);
    });
}

#[test]
fn a_refused_reservation_is_retried_by_the_thread_that_waited() {
    loom::model(|| {
        // The OS refuses the first two maps: the arena of whoever reserves first, at 2 chunks
        // and at 1.
        let a = Arc::new(buddy_std::BuddyAlloc::with_os(
            tiny(1, 2),
            BufferOs::refusing(2),
        ));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let a = Arc::clone(&a);
                common::spawn(move || take(&a, 64))
            })
            .collect();
        let got: Vec<usize> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let (mine, theirs) = (got[0], got[1]);
        // Whoever went first got null; the other reserved again and succeeded.
        assert!(
            (mine == 0) != (theirs == 0),
            "mine {mine:#x}, theirs {theirs:#x}"
        );
        assert_eq!(a.os().maps.load(Relaxed), 2);
        give(&a, mine.max(theirs), 64);
        all_back(&a);
        assert_eq!(a.stats().heap.failed_requests, 1);
    });
}
