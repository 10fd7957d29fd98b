//! The synchronisation facade: the only module that names a primitive from `core`, `std` or
//! `loom`.
//!
//! Off `loom` the atomics are `core`'s, the locks ([`Lock`]) are a flag on them (with a bounded
//! spin, then `sched_yield`, so a preempted lock holder does not make the others burn their
//! time slices) and the thread ordinal lives in a const-initialised `thread_local!` (no lazy
//! initialisation, no destructor, no allocation). Under `--cfg loom` every one of them is
//! loom's model (the locks a loom mutex), so `tests/loom_*.rs` explore the interleavings of
//! the real allocator code.
//!
//! loom's primitives cannot be built in a `const fn` (tokio-rs/loom#320), so
//! [`loom_const_fn!`](crate::sync::loom_const_fn) makes a constructor `const` only off loom.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
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

/// A lock that guards no data of its own: its users keep what it protects beside it (a chunk's
/// heap sits in an `UnsafeCell` next to its lock, see `allocator.rs`). Never allocates, never
/// poisons, usable in a `static`.
///
/// Besides the usual guard ([`lock`](Lock::lock)) it can be taken and kept past the end of a
/// call ([`hold`](Lock::hold)) and given back later ([`release`](Lock::release)): `fork`
/// handlers lock everything in one call and unlock it in another, in the parent and in the
/// child. A held `spin::Mutex` can only be unlocked through an `unsafe` `force_unlock`, and a
/// `loom::sync::Mutex` not at all without its guard, hence:
///
/// - off loom, a flag on `core`'s atomics: one compare-and-swap to lock, one store to unlock;
///   when contended, a bounded spin with exponential backoff, then `sched_yield` on every
///   retry ([`wait`]), so a preempted holder is not starved of CPU by its waiters;
/// - under loom, a `loom::sync::Mutex<bool>` whose flag says "held with no guard": a guard is
///   the mutex's own guard (the same cost to explore as a plain mutex), and `hold` sets the
///   flag and unlocks the mutex, so that `lock` finds the flag set and waits.
pub(crate) struct Lock {
    /// `true` iff some thread holds the lock (through a guard or [`hold`](Lock::hold)).
    #[cfg(not(loom))]
    locked: AtomicBool,
    /// `true` iff some thread holds the lock through [`hold`](Lock::hold); a guard is this
    /// mutex's guard.
    #[cfg(loom)]
    held: loom::sync::Mutex<bool>,
}

/// Proof of holding a [`Lock`]; unlocks on drop.
pub(crate) struct LockGuard<'a> {
    #[cfg(not(loom))]
    lock: &'a Lock,
    #[cfg(loom)]
    _guard: loom::sync::MutexGuard<'a, bool>,
}

impl Lock {
    loom_const_fn! {
        /// An unlocked lock.
        pub(crate) const fn new() -> Lock {
            Lock {
                #[cfg(not(loom))]
                locked: AtomicBool::new(false),
                #[cfg(loom)]
                held: loom::sync::Mutex::new(false),
            }
        }
    }

    /// Locks, waiting as long as it takes.
    #[inline]
    #[cfg(not(loom))]
    pub(crate) fn lock(&self) -> LockGuard<'_> {
        if !self.try_acquire() {
            self.acquire_contended();
        }
        LockGuard { lock: self }
    }

    /// Locks, waiting as long as it takes.
    #[cfg(loom)]
    pub(crate) fn lock(&self) -> LockGuard<'_> {
        let mut round = 0;
        loop {
            let guard = self.mutex();
            if !*guard {
                return LockGuard { _guard: guard };
            }
            drop(guard);
            wait(&mut round);
        }
    }

    /// Locks, waiting as long as it takes, and keeps the lock with no guard: it stays locked
    /// until [`release`](Lock::release).
    pub(crate) fn hold(&self) {
        #[cfg(not(loom))]
        core::mem::forget(self.lock());
        #[cfg(loom)]
        {
            let mut guard = self.lock();
            *guard._guard = true;
        }
    }

    /// Unlocks a lock taken with [`hold`](Lock::hold).
    ///
    /// # Safety
    /// The calling thread holds the lock through `hold` (or is the child of a `fork` made by
    /// the thread that did, which inherits it); no guard of it exists. Otherwise the data the
    /// lock guards could be used by two threads at once.
    #[allow(unsafe_code)] // An `unsafe fn` with nothing unsafe inside: it states a contract.
    pub(crate) unsafe fn release(&self) {
        #[cfg(not(loom))]
        self.locked.store(false, Ordering::Release);
        #[cfg(loom)]
        {
            *self.mutex() = false;
        }
    }

    /// The loom mutex; nothing panics while holding it, so poisoning cannot happen (and the
    /// flag would be consistent anyway).
    #[cfg(loom)]
    fn mutex(&self) -> loom::sync::MutexGuard<'_, bool> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[inline]
    #[cfg(not(loom))]
    fn try_acquire(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Spins with exponential backoff while the holder is likely running, then yields the CPU
    /// on every retry: with more threads than cores a spinning waiter would otherwise burn the
    /// time slice the preempted holder needs to finish.
    #[cold]
    #[cfg(not(loom))]
    fn acquire_contended(&self) {
        let mut round = 0u32;
        loop {
            if !self.locked.load(Ordering::Relaxed) && self.try_acquire() {
                return;
            }
            wait(&mut round);
        }
    }
}

#[cfg(not(loom))]
impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
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

/// A number from the address of the calling thread's stack, with no thread-local storage:
/// threads' stacks are disjoint mappings, so different threads usually get different numbers
/// (modulo a small shard count), and a thread mostly keeps its number (it may change as the
/// stack deepens past a 2 MiB boundary, which only moves where it allocates next).
///
/// The 2 MiB granule is Rust's default thread stack; the fold (`g ^ g >> 2 ^ …`) keeps the
/// low bits varied for 8 MiB strides too (glibc's default), which would otherwise all be
/// equal modulo 4.
#[inline]
pub(crate) fn stack_ordinal() -> usize {
    let marker = 0u8;
    let g = core::ptr::from_ref(core::hint::black_box(&marker)).addr() >> 21;
    g ^ (g >> 2) ^ (g >> 4) ^ (g >> 6)
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
