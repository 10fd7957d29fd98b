//! The synchronisation facade: the only module that names a primitive from `spin`, `std` or
//! `loom`.
//!
//! Off `loom` the locks are `spin` mutexes (with a bounded spin, then `sched_yield`, so a
//! preempted lock holder does not make the others burn their time slices), the atomics are
//! `core`'s and the thread ordinal lives in a const-initialised `thread_local!` (no lazy
//! initialisation, no destructor, no allocation). Under `--cfg loom` every one of them is
//! loom's model, so `tests/loom_*.rs` explore the interleavings of the real allocator code.
//!
//! loom's primitives cannot be built in a `const fn` (tokio-rs/loom#320), so
//! [`loom_const_fn!`](crate::sync::loom_const_fn) makes a constructor `const` only off loom.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// Declares a `const fn` off loom and a plain `fn` under loom, whose primitives are not const.
macro_rules! loom_const_fn {
    ($(#[$m:meta])* $vis:vis const fn $name:ident $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$m])* $vis const fn $name $($rest)*
        #[cfg(loom)]
        $(#[$m])* $vis fn $name $($rest)*
    };
}
pub(crate) use loom_const_fn;

/// `N` atomics, each holding `usize::MAX` ("unset").
#[cfg(not(loom))]
pub(crate) const fn unset_atomics<const N: usize>() -> [AtomicUsize; N] {
    [const { AtomicUsize::new(usize::MAX) }; N]
}

/// `N` atomics, each holding `usize::MAX` ("unset").
#[cfg(loom)]
pub(crate) fn unset_atomics<const N: usize>() -> [AtomicUsize; N] {
    core::array::from_fn(|_| AtomicUsize::new(usize::MAX))
}

/// A mutual-exclusion lock that never allocates, never poisons, and is usable in a `static`.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard of a locked [`Mutex`]; unlocks on drop.
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
/// The guard of a locked [`Mutex`]; unlocks on drop.
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    loom_const_fn! {
        /// An unlocked mutex holding `value`.
        pub(crate) const fn new(value: T) -> Mutex<T> {
            Mutex {
                #[cfg(not(loom))]
                inner: spin::Mutex::new(value),
                #[cfg(loom)]
                inner: loom::sync::Mutex::new(value),
            }
        }
    }

    /// Locks, waiting as long as it takes.
    #[inline]
    #[cfg(not(loom))]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        match self.inner.try_lock() {
            Some(guard) => guard,
            None => self.lock_contended(),
        }
    }

    /// Locks, waiting as long as it takes.
    #[cfg(loom)]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        // Nothing panics while holding one of these locks, so poisoning cannot happen; if it
        // did, the data would still be consistent (every update completes before unlocking).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Spins with exponential backoff while the holder is likely running, then yields the CPU
    /// on every retry: with more threads than cores a spinning waiter would otherwise burn the
    /// time slice the preempted holder needs to finish.
    #[cold]
    #[cfg(not(loom))]
    fn lock_contended(&self) -> MutexGuard<'_, T> {
        let mut round = 0u32;
        loop {
            if !self.inner.is_locked() {
                if let Some(guard) = self.inner.try_lock() {
                    return guard;
                }
            }
            wait(&mut round);
        }
    }
}

/// One step of waiting for another thread: a few spins that double each round, then a yield to
/// the scheduler. `round` counts the caller's rounds.
#[cfg(not(loom))]
pub(crate) fn wait(round: &mut u32) {
    const SPIN_ROUNDS: u32 = 7;
    if *round < SPIN_ROUNDS {
        for _ in 0..1u32 << *round {
            core::hint::spin_loop();
        }
        *round += 1;
    } else {
        // `sched_yield`: no allocation, no lock.
        std::thread::yield_now();
    }
}

/// One step of waiting for another thread: under loom, a yield lets the model run the others.
#[cfg(loom)]
pub(crate) fn wait(_round: &mut u32) {
    loom::thread::yield_now();
}

/// A small number that identifies the calling thread: 0 for the first thread that asks, 1 for
/// the next, and so on. Threads spread round-robin over the shards with it.
///
/// Off loom: a `thread_local!` with a `const` initialiser and no destructor is a plain TLS slot
/// on Linux (no lazy registration, no allocation), filled from a global counter on first use.
#[cfg(not(loom))]
pub(crate) fn thread_ordinal() -> usize {
    use core::cell::Cell;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static ORDINAL: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    ORDINAL
        .try_with(|o| match o.get() {
            usize::MAX => {
                let n = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
                o.set(n);
                n
            }
            n => n,
        })
        .unwrap_or(0)
}

/// A small number that identifies the calling thread (see the non-loom version); under loom
/// both the counter and the slot are reset for every execution of a model.
#[cfg(loom)]
pub(crate) fn thread_ordinal() -> usize {
    use core::cell::Cell;
    loom::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }
    loom::thread_local! {
        static ORDINAL: Cell<usize> = Cell::new(usize::MAX);
    }
    ORDINAL.with(|o| match o.get() {
        usize::MAX => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            o.set(n);
            n
        }
        n => n,
    })
}
