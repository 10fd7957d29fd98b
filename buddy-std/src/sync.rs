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
/// - off loom, a state on `core`'s atomics: one compare-and-swap to lock, one store to unlock;
///   when contended, a bounded spin with exponential backoff, then `sched_yield` on every
///   retry ([`wait`]), so a preempted holder is not starved of CPU by its waiters;
/// - under loom, a `loom::sync::Mutex` whose value names the thread holding the lock with no
///   guard: a guard is the mutex's own guard (the same cost to explore as a plain mutex), and
///   `hold` records the thread and unlocks the mutex, so that `lock` finds it held and waits.
///
/// **The holder passes.** While a thread holds the lock through `hold`, its own `lock` calls
/// get a guard at once, and that guard leaves the lock held when dropped. All of `fork`'s
/// handlers run on the thread that forks, and glibc runs buddy's `prepare` handler before
/// those registered earlier and its `parent` and `child` handlers after them: such a handler
/// that allocates finds the heap held by its own thread, and must not wait for itself. No
/// other thread can use what the lock guards meanwhile (it waits as for any holder), so the
/// holder's use is exclusive. In the child of the `fork` the holder is the child's only
/// thread, under another thread id: off loom, a holder is recognised by its thread id in its
/// process, and any thread of another process (the child) is the holder too.
pub(crate) struct Lock {
    /// [`FREE`], [`LOCKED`] (through a guard) or [`HELD`] (through [`hold`](Lock::hold)).
    #[cfg(not(loom))]
    state: AtomicU8,
    /// Who holds the lock through `hold`: [`caller`]'s process and thread ids, written before
    /// `state` becomes [`HELD`] (with `Release`).
    #[cfg(not(loom))]
    holder: core::sync::atomic::AtomicU64,
    /// The thread that holds the lock through [`hold`](Lock::hold) (its [`thread_ordinal`]),
    /// if one does; a guard is this mutex's guard.
    #[cfg(loom)]
    held: loom::sync::Mutex<Option<usize>>,
    /// The same holder plus one, 0 for none: read without the mutex by
    /// [`held_by_caller`](Lock::held_by_caller), which waiting loops call on every round (a
    /// mutex there multiplies the interleavings loom explores).
    #[cfg(loom)]
    holder: AtomicUsize,
}

/// [`Lock`] states.
#[cfg(not(loom))]
const FREE: u8 = 0;
#[cfg(not(loom))]
const LOCKED: u8 = 1;
#[cfg(not(loom))]
const HELD: u8 = 2;

/// The calling thread as a [`Lock`] holder: its process id in the high half, its thread id
/// in the low half (two system calls: only asked on a lock that is held).
#[cfg(not(loom))]
fn caller() -> u64 {
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    (u64::from(pid) << 32) | u64::from(tid)
}

/// Proof of holding a [`Lock`]; unlocks on drop (unless the lock is held through `hold` by
/// this guard's thread, see [`Lock`]).
pub(crate) struct LockGuard<'a> {
    #[cfg(not(loom))]
    lock: &'a Lock,
    /// The state the drop leaves: [`FREE`], or [`HELD`] for the holder's guard.
    #[cfg(not(loom))]
    restore: u8,
    /// The mutex's guard; `None` for the holder's guard.
    #[cfg(loom)]
    _guard: Option<loom::sync::MutexGuard<'a, Option<usize>>>,
}

impl Lock {
    loom_const_fn! {
        /// An unlocked lock.
        pub(crate) const fn new() -> Lock {
            Lock {
                #[cfg(not(loom))]
                state: AtomicU8::new(FREE),
                #[cfg(not(loom))]
                holder: core::sync::atomic::AtomicU64::new(0),
                #[cfg(loom)]
                held: loom::sync::Mutex::new(None),
                #[cfg(loom)]
                holder: AtomicUsize::new(0),
            }
        }
    }

    /// Locks, waiting as long as it takes (at once for the thread holding it through `hold`).
    #[inline]
    #[cfg(not(loom))]
    pub(crate) fn lock(&self) -> LockGuard<'_> {
        let restore = if self.try_acquire() {
            FREE
        } else {
            self.acquire_contended()
        };
        LockGuard {
            lock: self,
            restore,
        }
    }

    /// Locks, waiting as long as it takes (at once for the thread holding it through `hold`).
    #[cfg(loom)]
    pub(crate) fn lock(&self) -> LockGuard<'_> {
        let mut round = 0;
        let me = thread_ordinal();
        loop {
            let guard = self.mutex();
            match *guard {
                None => {
                    return LockGuard {
                        _guard: Some(guard),
                    };
                }
                Some(holder) if holder == me => return LockGuard { _guard: None },
                Some(_) => {}
            }
            drop(guard);
            wait(&mut round);
        }
    }

    /// Locks, waiting as long as it takes, and keeps the lock with no guard: it stays locked
    /// until [`release`](Lock::release). The calling thread becomes its holder.
    pub(crate) fn hold(&self) {
        #[cfg(not(loom))]
        {
            core::mem::forget(self.lock());
            self.holder.store(caller(), Ordering::Relaxed);
            self.state.store(HELD, Ordering::Release);
        }
        #[cfg(loom)]
        {
            let me = thread_ordinal();
            let mut guard = self.lock();
            if let Some(g) = guard._guard.as_mut() {
                **g = Some(me);
            }
            self.holder.store(me + 1, Ordering::Release);
        }
    }

    /// Whether the calling thread holds the lock through [`hold`](Lock::hold) (or is the child
    /// of a `fork` made by the thread that does).
    pub(crate) fn held_by_caller(&self) -> bool {
        #[cfg(not(loom))]
        {
            self.state.load(Ordering::Acquire) == HELD && self.holder_is_caller()
        }
        #[cfg(loom)]
        {
            self.holder.load(Ordering::Acquire) == thread_ordinal() + 1
        }
    }

    /// Unlocks a lock taken with [`hold`](Lock::hold).
    ///
    /// # Safety
    /// The calling thread holds the lock through `hold` (or is the child of a `fork` made by
    /// the thread that did, which inherits it); no guard of it exists but the holder's own.
    /// Otherwise the data the lock guards could be used by two threads at once.
    #[allow(unsafe_code)] // An `unsafe fn` with nothing unsafe inside: it states a contract.
    pub(crate) unsafe fn release(&self) {
        #[cfg(not(loom))]
        self.state.store(FREE, Ordering::Release);
        #[cfg(loom)]
        {
            self.holder.store(0, Ordering::Release);
            *self.mutex() = None;
        }
    }

    /// The loom mutex; nothing panics while holding it, so poisoning cannot happen (and the
    /// value would be consistent anyway).
    #[cfg(loom)]
    fn mutex(&self) -> loom::sync::MutexGuard<'_, Option<usize>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[inline]
    #[cfg(not(loom))]
    fn try_acquire(&self) -> bool {
        self.state
            .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// The lock is [`HELD`] (read with `Acquire`, which makes `holder` current) by the
    /// calling thread: the same process and thread, or any thread of another process (the
    /// child of the holder's `fork`, whose only thread it is).
    #[cfg(not(loom))]
    fn holder_is_caller(&self) -> bool {
        let (holder, me) = (self.holder.load(Ordering::Relaxed), caller());
        holder == me || holder >> 32 != me >> 32
    }

    /// Spins with exponential backoff while the holder is likely running, then yields the CPU
    /// on every retry: with more threads than cores a spinning waiter would otherwise burn the
    /// time slice the preempted holder needs to finish. Returns the state the guard's drop
    /// leaves: [`FREE`], or [`HELD`] when the caller is the lock's holder.
    #[cold]
    #[cfg(not(loom))]
    fn acquire_contended(&self) -> u8 {
        let mut round = 0u32;
        loop {
            match self.state.load(Ordering::Acquire) {
                FREE if self.try_acquire() => return FREE,
                HELD if self.holder_is_caller() => return HELD,
                _ => {}
            }
            wait(&mut round);
        }
    }
}

#[cfg(not(loom))]
impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.state.store(self.restore, Ordering::Release);
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
