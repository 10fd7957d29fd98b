//! `threads`: thread-safe allocators shared by 1 and 2 threads, with frees from the other thread.
//!
//! Each thread plays its own `random-actions` script (its own seed and slot table) against
//! the shared allocator; on top of that, every 4th op it allocates a block for the *other*
//! thread, which frees it (handed over in batches of 32 through a mutex-protected mailbox;
//! when the other thread lags and 128 blocks already wait, the sender frees the batch itself,
//! so the live set stays bounded).
//! With one thread the mailbox loops back to itself, so the work is the same. The figure is
//! wall time over all calls of all threads: aggregate ns per call (lower is better). Each
//! thread first plays its whole script once untimed (see `Threads::run`): the timed pass
//! measures the allocators in their steady state, not the kernel's first touch of their pages.
//!
//! Subjects: `System` (glibc), talc's lock (`TalcLock` with a spin lock),
//! `buddy_system_allocator::LockedHeap`, buddy-core's own `LockedHeap` (one spin lock around
//! the core heap: the baseline buddy-std must beat), and buddy-std's `BuddyAlloc` (shards,
//! a lock per chunk; it maps its own memory, like `System`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Instant;

use crate::subjects::{Region, Setup, Subject};
use crate::workloads::{NoProbe, Op, Run, Script, Slots, check_ops};

/// A test-and-test-and-set spin lock for talc's `lock_api` parameter (the same kind of lock
/// the two buddy peers use, so the comparison is lock-for-lock).
pub struct RawSpin(AtomicBool);

// SAFETY: `lock` returns only once it has swapped the flag from false to true (Acquire), so at
// most one holder exists; `unlock` (Release) is called only by the holder.
unsafe impl talc::lock_api::RawMutex for RawSpin {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawSpin = RawSpin(AtomicBool::new(false));
    type GuardMarker = talc::lock_api::GuardSend;

    fn lock(&self) {
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.0.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    }

    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The thread-safe subjects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    /// `std::alloc::System`.
    System,
    /// `talc::TalcLock<RawSpin, Manual>`.
    Talc,
    /// `buddy_system_allocator::LockedHeap<32>`.
    Bsa,
    /// `buddy_core::LockedHeap` (default config).
    BuddyLocked,
    /// `buddy_std::BuddyAlloc` (default config; maps its own memory, ignores the region).
    BuddyStd,
}

impl Shared {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Shared::System => "System",
            Shared::Talc => "talc (TalcLock, spin)",
            Shared::Bsa => "buddy_system_allocator (LockedHeap)",
            Shared::BuddyLocked => "buddy-core LockedHeap",
            Shared::BuddyStd => "buddy-std BuddyAlloc",
        }
    }

    /// Key for `--only` (see `Who::key`).
    pub fn key(self) -> &'static str {
        match self {
            Shared::System => "system",
            Shared::Talc => "talc",
            Shared::Bsa => "bsa",
            Shared::BuddyLocked => "buddy:locked",
            Shared::BuddyStd => "buddy-std",
        }
    }

    /// The subjects, in table order.
    pub fn all() -> [Shared; 5] {
        [
            Shared::BuddyStd,
            Shared::BuddyLocked,
            Shared::System,
            Shared::Talc,
            Shared::Bsa,
        ]
    }
}

/// `&G` as a [`Subject`], so the single-thread checker and [`Slots`] can drive it.
struct Global<'g, G>(&'g G, bool);

impl<G: GlobalAlloc> Subject for Global<'_, G> {
    unsafe fn new(_: Region, _: Setup) -> Result<Self, String> {
        Err("built by `with_shared`".into())
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        // SAFETY: workloads never ask for zero bytes.
        unsafe { self.0.alloc(l) }
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(p, l) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.realloc(p, l, n) }
    }
    fn uses_region(&self) -> bool {
        self.1
    }
}

/// Work on a shared allocator, monomorphised per allocator by [`with_shared`].
pub trait SharedJob {
    /// What it yields.
    type Out;
    /// Runs on `g` (`uses_region`: its blocks come from the region).
    fn run<G: GlobalAlloc + Sync>(&mut self, g: &G, uses_region: bool) -> Self::Out;
}

/// Builds `who` over `region` and runs `job` on it.
pub fn with_shared<J: SharedJob>(
    who: Shared,
    region: Region,
    job: &mut J,
) -> Result<J::Out, String> {
    match who {
        Shared::System => Ok(job.run(&System, false)),
        Shared::Talc => {
            let t = talc::TalcLock::<RawSpin, talc::source::Manual>::new(talc::source::Manual);
            // SAFETY: the region is ours while `t` lives (see `subjects::dispatch`).
            unsafe { t.lock().claim(region.ptr, region.len) }.ok_or("talc: claim failed")?;
            Ok(job.run(&t, true))
        }
        Shared::Bsa => {
            let h = buddy_system_allocator::LockedHeap::<32>::empty();
            // SAFETY: as above.
            unsafe { h.lock().init(region.ptr as usize, region.len) };
            Ok(job.run(&h, true))
        }
        Shared::BuddyLocked => {
            let h = buddy_core::LockedHeap::new();
            // SAFETY: as above.
            unsafe { h.lock().add_region(region.ptr, region.len) }.map_err(|e| e.to_string())?;
            Ok(job.run(&h, true))
        }
        Shared::BuddyStd => {
            // A fresh allocator per run; dropping it gives its memory back to the OS.
            let a = buddy_std::BuddyAlloc::new();
            Ok(job.run(&a, false))
        }
    }
}

/// Single-thread self-check of a shared allocator over the first `limit` ops of `script`.
pub struct SharedCheck<'a> {
    /// The script.
    pub script: &'a Script,
    /// Ops checked.
    pub limit: usize,
    /// The region.
    pub region: Region,
}

impl SharedJob for SharedCheck<'_> {
    type Out = Result<u64, String>;
    fn run<G: GlobalAlloc + Sync>(&mut self, g: &G, uses_region: bool) -> Self::Out {
        let region = uses_region.then_some(self.region);
        check_ops(&mut Global(g, uses_region), self.script, self.limit, region)
    }
}

/// A block on its way to the thread that frees it.
struct Sent(NonNull<u8>, Layout);

// SAFETY: a block handed over whole: the sender never touches it again, and the allocators
// under test are `Sync` (they may be freed from any thread).
unsafe impl Send for Sent {}

/// Timed run: `scripts.len()` threads, one script each.
pub struct Threads<'a> {
    /// One script per thread.
    pub scripts: &'a [Script],
}

const BATCH: usize = 32;
/// Most blocks waiting in a mailbox; past it the sender frees its batch itself.
const MAILBOX: usize = 4 * BATCH;

impl SharedJob for Threads<'_> {
    type Out = Run;
    fn run<G: GlobalAlloc + Sync>(&mut self, g: &G, uses_region: bool) -> Run {
        let n = self.scripts.len();
        let inboxes: Vec<Mutex<Vec<Sent>>> = (0..n).map(|_| Mutex::new(Vec::new())).collect();
        let start = Barrier::new(n + 1);
        let stop = Barrier::new(n + 1);
        let drained = Barrier::new(n);
        let (elapsed, counts) = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..n)
                .map(|t| {
                    let (script, inboxes) = (&self.scripts[t], &inboxes);
                    let (start, stop, drained) = (&start, &stop, &drained);
                    sc.spawn(move || {
                        let mine = &inboxes[t];
                        let other = &inboxes[(t + 1) % n];
                        let mut a = Global(g, uses_region);
                        let mut slots = Slots::new(script.slots);
                        // Untimed: the whole script once, everything freed again, so that the
                        // timed pass finds the memory it uses already faulted in, as the
                        // region-based peers find their region (written before any run). A
                        // first touch is a page fault of a microsecond or more (with a TLB
                        // shootdown when a page read before is written); it is paid once per
                        // page, not per call. Without this pass a fresh `BuddyAlloc` paid
                        // some 2400 of them in the timed part on one thread: 67 ns a call
                        // against 35 with it, which the region-based peers never paid.
                        slots.play(&mut a, &script.ops);
                        slots.release(&mut a);
                        slots.play(&mut a, &script.ops[..script.warm]);
                        (slots.calls, slots.fails) = (0, 0);
                        let extra: Vec<Layout> = script
                            .ops
                            .iter()
                            .filter_map(|op| match *op {
                                Op::Alloc(_, l) => Some(l),
                                _ => None,
                            })
                            .take(1024)
                            .collect();
                        let mut out: Vec<Sent> = Vec::with_capacity(BATCH);
                        let mut calls = 0u64;
                        start.wait();
                        let t0 = Instant::now();
                        for (i, &op) in script.ops[script.warm..].iter().enumerate() {
                            slots.step(&mut a, op, &mut NoProbe);
                            if i % 4 == 0 {
                                let l = extra[(i / 4) % extra.len()];
                                // SAFETY: non-zero size.
                                let p = unsafe { g.alloc(l) };
                                calls += 1;
                                if let Some(p) = NonNull::new(p) {
                                    out.push(Sent(p, l));
                                }
                                if out.len() == BATCH {
                                    let mut o = other.lock().unwrap();
                                    if o.len() < MAILBOX {
                                        o.append(&mut out);
                                        drop(o);
                                    } else {
                                        // The other thread lags (preempted): free them here,
                                        // so the live set stays bounded.
                                        drop(o);
                                        for Sent(p, l) in out.drain(..) {
                                            // SAFETY: a live block of `g`, allocated with `l`.
                                            unsafe { g.dealloc(p.as_ptr(), l) };
                                            calls += 1;
                                        }
                                    }
                                    let got = std::mem::take(&mut *mine.lock().unwrap());
                                    for Sent(p, l) in got {
                                        // SAFETY: a live block of `g`, allocated with `l` and
                                        // handed over whole.
                                        unsafe { g.dealloc(p.as_ptr(), l) };
                                        calls += 1;
                                    }
                                }
                            }
                        }
                        let t1 = Instant::now();
                        stop.wait();
                        other.lock().unwrap().append(&mut out);
                        drained.wait();
                        for Sent(p, l) in std::mem::take(&mut *mine.lock().unwrap()) {
                            // SAFETY: as above.
                            unsafe { g.dealloc(p.as_ptr(), l) };
                        }
                        let (c, f) = (calls + slots.calls, slots.fails);
                        slots.release(&mut a);
                        (c, f, t0, t1)
                    })
                })
                .collect();
            start.wait();
            stop.wait();
            let counts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            // From the first thread's start to the last one's end (taken by the workers
            // themselves: this thread may wake late from a barrier).
            let t0 = counts.iter().map(|c| c.2).min().unwrap();
            let t1 = counts.iter().map(|c| c.3).max().unwrap();
            (t1 - t0, counts)
        });
        let calls: u64 = counts.iter().map(|c| c.0).sum();
        let fails: u64 = counts.iter().map(|c| c.1).sum();
        let wall = elapsed.as_nanos() as f64 / calls.max(1) as f64;
        Run {
            ns_per_call: wall,
            wall_ns_per_call: wall,
            calls,
            fails,
            cut: false,
        }
    }
}
