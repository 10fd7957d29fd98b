//! loom: `fork_prepare` racing with threads inside the allocator (pthread_atfork's handlers).
//!
//! loom cannot fork a process, so each model checks what makes the child safe: `fork_prepare`
//! returns only once no other thread is inside the allocator, and holds them all off until
//! `fork_parent` / `fork_child` (an allocation or free cannot start and finish in between:
//! it would have found the heap unlocked, which in a real child means possibly half-updated);
//! it never deadlocks with them; and afterwards everything works and every block comes back.
#![cfg(loom)]

mod common;

use common::{all_back, give, take, tiny};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// Runs `op` on a thread while this thread prepares for a fork, runs `handler` (a fork handler
/// registered before the allocator's, which glibc runs on this thread while everything is
/// held) and releases with `parent` or `child`; `op` must not both start and end while
/// everything is held.
fn race_with_fork(
    a: &Arc<common::Alloc>,
    child: bool,
    op: fn(&common::Alloc),
    handler: fn(&common::Alloc),
) {
    let held = Arc::new(AtomicBool::new(false));
    let t = {
        let (a, held) = (Arc::clone(a), Arc::clone(&held));
        common::spawn(move || {
            let before = held.load(SeqCst);
            op(&a);
            let after = held.load(SeqCst);
            assert!(
                !(before && after),
                "an allocator operation ran while fork_prepare held everything"
            );
        })
    };
    a.fork_prepare();
    held.store(true, SeqCst);
    handler(a);
    held.store(false, SeqCst);
    if child {
        // SAFETY: this thread called fork_prepare just now (the child of a fork is the same
        // thread in a copy of the process).
        unsafe { a.fork_child() };
    } else {
        // SAFETY: this thread called fork_prepare just now.
        unsafe { a.fork_parent() };
    }
    t.join().unwrap();
}

#[test]
fn fork_prepare_holds_off_an_allocation_and_free_in_the_same_chunk() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 1)));
        let kept = {
            let a = Arc::clone(&a);
            common::on_thread(move || take(&a, 32))
        };
        race_with_fork(
            &a,
            false,
            |a| {
                let p = take(a, 48);
                assert_ne!(p, 0);
                give(a, p, 48);
            },
            |_| {},
        );
        give(&a, kept, 32);
        all_back(&a);
    });
}

#[test]
fn fork_prepare_holds_off_growth_and_the_child_can_use_the_new_chunk() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 2)));
        let kept = {
            let a = Arc::clone(&a);
            common::on_thread(move || take(&a, 32))
        };
        // A whole chunk: chunk 0 cannot hold it any more, so the thread grows chunk 1.
        race_with_fork(
            &a,
            true,
            |a| {
                let p = take(a, 4096);
                assert_ne!(p, 0);
                give(a, p, 4096);
            },
            |_| {},
        );
        assert_eq!(a.stats().os.chunks, 2);
        let p = common::on_thread({
            let a = Arc::clone(&a);
            move || take(&a, 4096)
        });
        assert_ne!(p, 0);
        give(&a, p, 4096);
        give(&a, kept, 32);
        all_back(&a);
    });
}

#[test]
fn fork_prepare_before_the_first_allocation_holds_off_the_reservation() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 1)));
        race_with_fork(
            &a,
            true,
            |a| {
                let p = take(a, 64);
                assert_ne!(p, 0);
                give(a, p, 64);
            },
            |_| {},
        );
        all_back(&a);
        assert_eq!(a.os().maps.load(std::sync::atomic::Ordering::Relaxed), 2);
    });
}

/// A fork handler registered before the allocator's allocates and frees on the thread that
/// forks, while everything is held: it goes through (it would wait for itself otherwise),
/// growing a chunk that is held from the start; the other thread still waits.
#[test]
fn the_forking_thread_allocates_while_it_holds_everything_and_the_others_still_wait() {
    loom::model(|| {
        let a = Arc::new(common::alloc(tiny(1, 2)));
        let kept = take(&a, 32);
        race_with_fork(
            &a,
            false,
            |a| {
                let p = take(a, 48);
                assert_ne!(p, 0);
                give(a, p, 48);
            },
            |a| {
                // A whole chunk: chunk 0 holds `kept`, so this grows chunk 1.
                let p = take(a, 4096);
                assert_ne!(p, 0);
                let q = take(a, 16);
                assert_ne!(q, 0);
                give(a, q, 16);
                give(a, p, 4096);
            },
        );
        assert_eq!(a.stats().os.chunks, 2);
        // Chunk 1, added during the fork, was given back with the others.
        let p = common::on_thread({
            let a = Arc::clone(&a);
            move || take(&a, 4096)
        });
        assert_ne!(p, 0);
        give(&a, p, 4096);
        give(&a, kept, 32);
        all_back(&a);
    });
}

/// The same before the first allocation: the handler's allocation makes the reservation that
/// `fork_prepare` held off, and the locks it then holds are given back by `fork_child`.
///
/// With at most 3 preemptions: every interleaving takes over 2 minutes (the other thread
/// spins on the reservation while the handler makes it); the bound keeps the ones where the
/// other thread arrives before, during and after the handler's reservation.
#[test]
fn the_forking_thread_makes_the_first_allocation_while_it_holds_off_the_reservation() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let a = Arc::new(common::alloc(tiny(1, 1)));
        race_with_fork(
            &a,
            true,
            |a| {
                let p = take(a, 64);
                assert_ne!(p, 0);
                give(a, p, 64);
            },
            |a| {
                let p = take(a, 32);
                assert_ne!(p, 0);
                give(a, p, 32);
            },
        );
        all_back(&a);
        assert_eq!(a.os().maps.load(std::sync::atomic::Ordering::Relaxed), 2);
    });
}
