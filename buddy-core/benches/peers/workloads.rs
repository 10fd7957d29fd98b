//! Request scripts and the loops that play them.
//!
//! A workload is a *script*: a fixed list of [`Op`]s on numbered slots, generated from a
//! fixed seed before anything is timed, so every allocator gets exactly the same requests.
//! The script never depends on what an allocator returns: when an allocation fails its slot
//! stays empty and the later free or realloc of that slot is skipped (and the failure counted).
//!
//! Each script is played three ways: once under the [`Checker`] (patterns, alignment,
//! overlap, region bounds) before anything is timed; then timed as a whole ([`Throughput`]),
//! or call by call ([`Latency`]).

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr;
use std::time::{Duration, Instant};

use crate::subjects::{Region, Setup, Subject};

/// wyrand (Wang Yi): one multiply per number, good enough statistics, no crate needed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Sizes skewed small, up to 8 KiB: a scale `8 KiB >> s` with `s` uniform in `0..10`, then a
/// size uniform in `1..=scale`. Mean ≈ 820 bytes; half the requests are 64 bytes or less.
pub fn mixed_size(r: &mut Rng) -> usize {
    let max = 8192 >> r.below(10);
    1 + r.below(max)
}

/// Alignments 8 (60%), 16 (30%), 64 (10%).
pub fn mixed_align(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=5 => 8,
        6..=8 => 16,
        _ => 64,
    }
}

/// Every layout a script allocates with. Sizes and alignments fit a `u32`, which [`Slot`]
/// relies on (a realloc's new size is a `u32` in [`Op`] already); checked here, while scripts
/// are generated, not in the timed loop.
fn layout(size: usize, align: usize) -> Layout {
    assert!(
        size <= u32::MAX as usize && align <= u32::MAX as usize,
        "script layout too large for a slot"
    );
    Layout::from_size_align(size, align).expect("valid layout")
}

/// One request of a script.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// Allocate `layout` into the (empty) slot.
    Alloc(u32, Layout),
    /// Free the slot's block.
    Free(u32),
    /// Resize the slot's block to this many bytes (same alignment).
    Realloc(u32, u32),
}

/// A generated workload: the ops, how many slots they use, and how many leading ops only warm
/// the heap up (played untimed).
#[derive(Clone, Debug)]
pub struct Script {
    /// The requests.
    pub ops: Vec<Op>,
    /// Slots used (`slot < slots`).
    pub slots: usize,
    /// Leading ops that are not timed.
    pub warm: usize,
    /// Largest alignment requested.
    pub max_align: usize,
}

/// `pairs`: alloc + immediate free, power-of-two sizes 16..=4096 (uniform), align 8.
pub fn pairs(n: usize, seed: u64) -> Script {
    let mut r = Rng::new(seed);
    let mut ops = Vec::with_capacity(2 * n);
    for _ in 0..n {
        ops.push(Op::Alloc(0, layout(16 << r.below(9), 8)));
        ops.push(Op::Free(0));
    }
    Script {
        ops,
        slots: 1,
        warm: 0,
        max_align: 8,
    }
}

/// `random-actions` (talc style): a table of `slots` slots; each op picks a slot at random:
/// empty → allocate ([`mixed_size`], [`mixed_align`]); full → free (2/3) or realloc to a new
/// [`mixed_size`] (1/3). The table settles at 60% full. The first `warm` ops are not timed.
/// Without `realloc` (talc's `--no-realloc`), a full slot is always freed (50% full).
pub fn random_actions(slots: usize, warm: usize, timed: usize, seed: u64, realloc: bool) -> Script {
    let mut r = Rng::new(seed);
    let mut full = vec![false; slots];
    let mut ops = Vec::with_capacity(warm + timed);
    for _ in 0..warm + timed {
        let s = r.below(slots);
        if !full[s] {
            let size = mixed_size(&mut r);
            ops.push(Op::Alloc(s as u32, layout(size, mixed_align(&mut r))));
            full[s] = true;
        } else if !realloc || r.below(3) < 2 {
            ops.push(Op::Free(s as u32));
            full[s] = false;
        } else {
            ops.push(Op::Realloc(s as u32, mixed_size(&mut r) as u32));
        }
    }
    Script {
        ops,
        slots,
        warm,
        max_align: 64,
    }
}

/// `fragmented-*`: the warm-up of `heap` (untimed: it leaves a live set and holes), then all
/// of `active` (its own warm-up, then its timed ops) on slots of its own after `heap`'s. The
/// blocks of `heap` are never touched again: the timed ops work on `active`'s table alone, so
/// that the heap, and its fragmentation, can grow while the working set stays the same.
pub fn fragmented(heap: &Script, active: &Script) -> Script {
    let shift = u32::try_from(heap.slots).expect("slot indices fit a u32");
    let mut ops = heap.ops[..heap.warm].to_vec();
    ops.extend(active.ops.iter().map(|&op| match op {
        Op::Alloc(s, l) => Op::Alloc(s + shift, l),
        Op::Free(s) => Op::Free(s + shift),
        Op::Realloc(s, n) => Op::Realloc(s + shift, n),
    }));
    Script {
        ops,
        slots: heap.slots + active.slots,
        warm: heap.warm + active.warm,
        max_align: heap.max_align.max(active.max_align),
    }
}

/// Page-frame size `4 KiB << k`, `k` geometric (1/2, 1/4, …) capped at 4: 4..64 KiB.
fn frame_size(r: &mut Rng) -> usize {
    let k = (r.next_u64() | 1 << 4).trailing_zeros();
    4096 << k
}

/// `frames`: page frames of `4 KiB << k` aligned to their size. Fill to `fill` of `len`
/// (requested bytes, untimed), then churn `churn` rounds: free a random live frame, then
/// allocate new random frames while the total stays within `fill`.
pub fn frames(len: usize, fill: f64, churn: usize, seed: u64) -> Script {
    struct Gen {
        r: Rng,
        next: usize,
        cap: usize,
        bytes: usize,
        live: Vec<(u32, usize)>,
        free_slots: Vec<u32>,
        slots: u32,
        ops: Vec<Op>,
    }
    impl Gen {
        fn top_up(&mut self) {
            while self.bytes + self.next <= self.cap {
                let s = self.free_slots.pop().unwrap_or_else(|| {
                    self.slots += 1;
                    self.slots - 1
                });
                self.ops.push(Op::Alloc(s, layout(self.next, self.next)));
                self.live.push((s, self.next));
                self.bytes += self.next;
                self.next = frame_size(&mut self.r);
            }
        }
    }
    let mut r = Rng::new(seed);
    let next = frame_size(&mut r);
    let mut g = Gen {
        r,
        next,
        cap: (len as f64 * fill) as usize,
        bytes: 0,
        live: Vec::new(),
        free_slots: Vec::new(),
        slots: 0,
        ops: Vec::new(),
    };
    g.top_up();
    let warm = g.ops.len();
    for _ in 0..churn {
        let i = g.r.below(g.live.len());
        let (s, size) = g.live.swap_remove(i);
        g.ops.push(Op::Free(s));
        g.bytes -= size;
        g.free_slots.push(s);
        g.top_up();
    }
    Script {
        ops: g.ops,
        slots: g.slots as usize,
        warm,
        max_align: 64 << 10,
    }
}

/// `latency`: 2·`live` blocks allocated, every other one freed (`live` blocks, `live` holes);
/// then `rounds` × (allocate into a free slot, free a random live block). Only the rounds are
/// timed, each call on its own.
pub fn latency(live: usize, rounds: usize, seed: u64) -> Script {
    let mut r = Rng::new(seed);
    let mut ops = Vec::new();
    for s in 0..2 * live {
        let size = mixed_size(&mut r);
        ops.push(Op::Alloc(s as u32, layout(size, mixed_align(&mut r))));
    }
    let mut live_slots: Vec<u32> = (0..2 * live as u32).filter(|s| s % 2 == 0).collect();
    let mut free_slots: Vec<u32> = (0..2 * live as u32).filter(|s| s % 2 == 1).collect();
    for &s in &free_slots {
        ops.push(Op::Free(s));
    }
    let warm = ops.len();
    for _ in 0..rounds {
        let j = r.below(free_slots.len());
        let s = free_slots.swap_remove(j);
        let size = mixed_size(&mut r);
        ops.push(Op::Alloc(s, layout(size, mixed_align(&mut r))));
        live_slots.push(s);
        let i = r.below(live_slots.len());
        let v = live_slots.swap_remove(i);
        ops.push(Op::Free(v));
        free_slots.push(v);
    }
    Script {
        ops,
        slots: 2 * live,
        warm,
        max_align: 64,
    }
}

/// Hooks around every successful call: nothing when timing, everything when checking.
pub trait Probe {
    /// After a successful allocation.
    fn alloc(&mut self, p: *mut u8, l: Layout, slot: u32);
    /// Before a free.
    fn free(&mut self, p: *mut u8, l: Layout);
    /// Before a realloc.
    fn before_realloc(&mut self, p: *mut u8, l: Layout);
    /// After a realloc: `q` (new block, `nl`) on success, else null (`p`, `l` still live).
    fn after_realloc(&mut self, p: *mut u8, l: Layout, q: *mut u8, nl: Layout, slot: u32);
}

/// No checks: what the timed loops use.
pub struct NoProbe;

impl Probe for NoProbe {
    #[inline(always)]
    fn alloc(&mut self, _: *mut u8, _: Layout, _: u32) {}
    #[inline(always)]
    fn free(&mut self, _: *mut u8, _: Layout) {}
    #[inline(always)]
    fn before_realloc(&mut self, _: *mut u8, _: Layout) {}
    #[inline(always)]
    fn after_realloc(&mut self, _: *mut u8, _: Layout, _: *mut u8, _: Layout, _: u32) {}
}

/// The self-check: every block gets a pattern written over all of it, checked intact when it
/// is freed or moved; alignment, region bounds and overlap with every live block are checked
/// on every allocation. Keeps the first error.
pub struct Checker {
    region: Option<(usize, usize)>,
    /// Live blocks: start → (end, pattern byte).
    live: BTreeMap<usize, (usize, u8)>,
    /// Allocations seen (varies the patterns).
    count: u64,
    /// Requested bytes of the live blocks.
    pub live_bytes: usize,
    /// The first error found.
    pub error: Option<String>,
}

impl Checker {
    /// A checker for blocks inside `region` (`None`: anywhere, for `System`).
    pub fn new(region: Option<Region>) -> Checker {
        Checker {
            region: region.map(|r| (r.ptr as usize, r.ptr as usize + r.len)),
            live: BTreeMap::new(),
            count: 0,
            live_bytes: 0,
            error: None,
        }
    }

    fn fail(&mut self, what: String) {
        if self.error.is_none() {
            self.error = Some(what);
        }
    }

    fn add(&mut self, p: *mut u8, l: Layout, slot: u32) {
        let (a, e) = (p as usize, p as usize + l.size());
        if a % l.align() != 0 {
            return self.fail(format!("block {a:#x} not aligned to {}", l.align()));
        }
        if let Some((lo, hi)) = self.region
            && (a < lo || e > hi)
        {
            return self.fail(format!("block {a:#x}+{} outside the region", l.size()));
        }
        if let Some((&s, &(pe, _))) = self.live.range(..=a).next_back()
            && pe > a
        {
            return self.fail(format!(
                "block {a:#x}+{} overlaps {s:#x}..{pe:#x}",
                l.size()
            ));
        }
        if let Some((&s, &(pe, _))) = self.live.range(a..).next()
            && s < e
        {
            return self.fail(format!(
                "block {a:#x}+{} overlaps {s:#x}..{pe:#x}",
                l.size()
            ));
        }
        self.count += 1;
        let pat = (self.count.wrapping_mul(0x9e37) as u8 ^ slot as u8) | 1;
        // SAFETY: `[p, p + size)` is a live block just handed to us.
        unsafe { ptr::write_bytes(p, pat, l.size()) };
        self.live.insert(a, (e, pat));
        self.live_bytes += l.size();
    }

    /// Checks `n` bytes at `p` hold the block's pattern; returns it.
    fn verify(&mut self, p: *mut u8, n: usize, pat: u8, what: &str) -> bool {
        // SAFETY: `p..p + n` lies in a block we filled (initialised) earlier.
        let bytes = unsafe { std::slice::from_raw_parts(p, n) };
        if let Some(i) = bytes.iter().position(|&b| b != pat) {
            self.fail(format!(
                "{what}: byte {i} of block {:#x} changed ({:#04x} != {pat:#04x})",
                p as usize, bytes[i]
            ));
            return false;
        }
        true
    }

    fn take(&mut self, p: *mut u8, l: Layout, what: &str) -> Option<u8> {
        let Some((e, pat)) = self.live.remove(&(p as usize)) else {
            self.fail(format!("{what} of unknown block {:#x}", p as usize));
            return None;
        };
        self.live_bytes -= l.size();
        if e - p as usize != l.size() {
            self.fail(format!("{what}: size mismatch at {:#x}", p as usize));
        }
        self.verify(p, l.size(), pat, what).then_some(pat)
    }
}

impl Probe for Checker {
    fn alloc(&mut self, p: *mut u8, l: Layout, slot: u32) {
        self.add(p, l, slot);
    }
    fn free(&mut self, p: *mut u8, l: Layout) {
        self.take(p, l, "free");
    }
    fn before_realloc(&mut self, p: *mut u8, l: Layout) {
        if let Some(pat) = self.take(p, l, "realloc") {
            // Re-enter it with its pattern until we know the outcome.
            self.live.insert(p as usize, (p as usize + l.size(), pat));
            self.live_bytes += l.size();
        }
    }
    fn after_realloc(&mut self, p: *mut u8, l: Layout, q: *mut u8, nl: Layout, slot: u32) {
        if q.is_null() {
            if let Some(&(_, pat)) = self.live.get(&(p as usize)) {
                self.verify(p, l.size(), pat, "failed realloc");
            }
            return;
        }
        let Some((_, pat)) = self.live.remove(&(p as usize)) else {
            return;
        };
        self.live_bytes -= l.size();
        let keep = l.size().min(nl.size());
        if self.verify(q, keep, pat, "realloc (contents moved)") {
            self.add(q, nl, slot);
        }
    }
}

/// One slot: its block and the layout it was allocated with, in 16 bytes (`Layout` is 16 on
/// its own), aligned so a slot never straddles two cache lines. At 256 MiB the table holds
/// 131k slots at random: one record per slot costs the harness one cache miss per call where
/// separate pointer and layout arrays cost two, for every allocator alike.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    ptr: *mut u8,
    size: u32,
    align: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        ptr: ptr::null_mut(),
        size: 1,
        align: 1,
    };

    #[inline(always)]
    fn layout(&self) -> Layout {
        // SAFETY: `size` and `align` were taken from a valid `Layout` by `Slot::full`, without
        // truncation: scripts' sizes and alignments fit a `u32` (`layout`, `Op::Realloc`).
        unsafe { Layout::from_size_align_unchecked(self.size as usize, self.align as usize) }
    }

    #[inline(always)]
    fn full(ptr: *mut u8, l: Layout) -> Slot {
        debug_assert!(l.size() <= u32::MAX as usize && l.align() <= u32::MAX as usize);
        Slot {
            ptr,
            size: l.size() as u32,
            align: l.align() as u32,
        }
    }
}

/// Blocks held by a script's slots.
pub struct Slots {
    slot: Vec<Slot>,
    /// Allocation and realloc failures.
    pub fails: u64,
    /// Calls made (alloc, free, realloc); skipped ops on empty slots are not calls.
    pub calls: u64,
}

impl Slots {
    /// `n` empty slots.
    pub fn new(n: usize) -> Slots {
        Slots {
            slot: vec![Slot::EMPTY; n],
            fails: 0,
            calls: 0,
        }
    }

    /// The live block of slot `s`, or null.
    pub fn ptr(&self, s: usize) -> *mut u8 {
        self.slot[s].ptr
    }

    /// Slots in the table.
    pub fn len(&self) -> usize {
        self.slot.len()
    }

    /// Plays one op. Returns whether it was an allocation (for latency, which keeps alloc and
    /// free apart); `None` if skipped.
    #[inline(always)]
    pub fn step<A: Subject, P: Probe>(&mut self, a: &mut A, op: Op, probe: &mut P) -> Option<bool> {
        match op {
            Op::Alloc(s, l) => {
                let s = s as usize;
                debug_assert!(
                    self.slot[s].ptr.is_null(),
                    "script allocates into a full slot"
                );
                let p = a.alloc(l);
                self.calls += 1;
                if p.is_null() {
                    self.fails += 1;
                } else {
                    probe.alloc(p, l, s as u32);
                }
                self.slot[s] = Slot::full(p, l);
                Some(true)
            }
            Op::Free(s) => {
                let s = s as usize;
                let slot = self.slot[s];
                let p = slot.ptr;
                if p.is_null() {
                    return None;
                }
                let l = slot.layout();
                probe.free(p, l);
                // SAFETY: `p` is the live block of this slot, allocated with `l`.
                unsafe { a.free(p, l) };
                self.calls += 1;
                self.slot[s].ptr = ptr::null_mut();
                Some(false)
            }
            Op::Realloc(s, n) => {
                let s = s as usize;
                let slot = self.slot[s];
                let p = slot.ptr;
                if p.is_null() {
                    return None;
                }
                let l = slot.layout();
                probe.before_realloc(p, l);
                // SAFETY: `p` is the live block of this slot, allocated with `l`; `n > 0`.
                let q = unsafe { a.realloc(p, l, n as usize) };
                self.calls += 1;
                // SAFETY: `n` is at most 8 KiB and `l.align()` a valid alignment.
                let nl = unsafe { Layout::from_size_align_unchecked(n as usize, l.align()) };
                probe.after_realloc(p, l, q, nl, s as u32);
                if q.is_null() {
                    self.fails += 1;
                } else {
                    self.slot[s] = Slot::full(q, nl);
                }
                Some(true)
            }
        }
    }

    /// Plays `ops` without checks.
    #[inline(never)]
    pub fn play<A: Subject>(&mut self, a: &mut A, ops: &[Op]) {
        for &op in ops {
            self.step(a, op, &mut NoProbe);
        }
    }

    /// Frees every live block (untimed cleanup; `System` would otherwise leak).
    pub fn release<A: Subject>(&mut self, a: &mut A) {
        for slot in &mut self.slot {
            if !slot.ptr.is_null() {
                // SAFETY: the live block of this slot, allocated with its layout.
                unsafe { a.free(slot.ptr, slot.layout()) };
                slot.ptr = ptr::null_mut();
            }
        }
    }
}

/// One timed run of a script.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    /// Nanoseconds per call over the timed part: CPU time of the bench thread where the OS
    /// tells it (time spent descheduled by other load does not count), else wall time.
    pub ns_per_call: f64,
    /// Nanoseconds per call by the wall clock.
    pub wall_ns_per_call: f64,
    /// Calls timed.
    pub calls: u64,
    /// Failed requests over the whole script (warm-up included).
    pub fails: u64,
    /// The timed part was cut short by the time budget (the allocator is that slow).
    pub cut: bool,
}

/// CPU time consumed by the calling thread, in ns (`CLOCK_THREAD_CPUTIME_ID`), where known.
pub fn thread_cpu_ns() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: libc's `clock_gettime` (std links libc) with a valid clock id and a pointer
        // to a `struct timespec`, which is two 64-bit fields on 64-bit Linux.
        let r = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (r == 0).then(|| ts.sec as u64 * 1_000_000_000 + ts.nsec as u64)
    }
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    {
        None
    }
}

/// Plays a script: warm-up untimed, then the rest timed in chunks, stopping early when the
/// time budget is spent.
pub struct Throughput<'a> {
    /// The script.
    pub script: &'a Script,
    /// Stop the timed part after about this long.
    pub budget: Duration,
    /// Give up (an error: "too slow") if the warm-up takes longer than this.
    pub warm_budget: Duration,
}

/// Ops between clock reads in [`Throughput`] (the clock costs ~20 ns; this keeps it < 0.1%).
const CHUNK: usize = 4096;

/// Plays the warm-up part of `sc`, untimed; an error if it takes longer than `budget`.
fn warm_up<A: Subject>(
    a: &mut A,
    slots: &mut Slots,
    sc: &Script,
    budget: Duration,
) -> Result<(), String> {
    let t0 = Instant::now();
    for (i, chunk) in sc.ops[..sc.warm].chunks(CHUNK).enumerate() {
        slots.play(a, chunk);
        if i % 4 == 3 && t0.elapsed() > budget {
            slots.release(a);
            return Err(format!(
                "too slow: warm-up ({} ops) not done after {} s ({} ops)",
                sc.warm,
                budget.as_secs(),
                (i + 1) * CHUNK
            ));
        }
    }
    slots.calls = 0;
    Ok(())
}

impl crate::subjects::Job for Throughput<'_> {
    type Out = Result<Run, String>;
    fn setup(&self) -> Setup {
        Setup {
            max_align: self.script.max_align,
        }
    }
    fn run<A: Subject>(&mut self, a: &mut A) -> Result<Run, String> {
        let sc = self.script;
        let mut slots = Slots::new(sc.slots);
        warm_up(a, &mut slots, sc, self.warm_budget)?;
        let timed = &sc.ops[sc.warm..];
        let cpu0 = thread_cpu_ns();
        let t0 = Instant::now();
        let mut cut = false;
        let mut elapsed = Duration::ZERO;
        for (i, chunk) in timed.chunks(CHUNK).enumerate() {
            slots.play(a, chunk);
            if i % 16 == 15 {
                elapsed = t0.elapsed();
                if elapsed > self.budget && (i + 1) * CHUNK < timed.len() {
                    cut = true;
                    break;
                }
            }
        }
        if !cut {
            elapsed = t0.elapsed();
        }
        let cpu = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
        let (calls, fails) = (slots.calls, slots.fails);
        slots.release(a);
        let wall = elapsed.as_nanos() as f64 / calls.max(1) as f64;
        Ok(Run {
            ns_per_call: cpu.map_or(wall, |c| c as f64 / calls.max(1) as f64),
            wall_ns_per_call: wall,
            calls,
            fails,
            cut,
        })
    }
}

/// Plays a script under the [`Checker`]: every op of the first `limit`.
pub struct Check<'a> {
    /// The script.
    pub script: &'a Script,
    /// Ops to check (the rest is skipped).
    pub limit: usize,
    /// The region the subject gets (blocks must stay inside it).
    pub region: Region,
}

impl crate::subjects::Job for Check<'_> {
    type Out = Result<u64, String>;
    fn setup(&self) -> Setup {
        Setup {
            max_align: self.script.max_align,
        }
    }
    fn run<A: Subject>(&mut self, a: &mut A) -> Result<u64, String> {
        let region = a.uses_region().then_some(self.region);
        check_ops(a, self.script, self.limit, region)
    }
}

/// Plays the first `limit` ops of `script` on `a` under a [`Checker`], then frees everything
/// through it; the number of failed requests, or the first error.
pub fn check_ops<A: Subject>(
    a: &mut A,
    script: &Script,
    limit: usize,
    region: Option<Region>,
) -> Result<u64, String> {
    let mut c = Checker::new(region);
    let mut slots = Slots::new(script.slots);
    for &op in script.ops.iter().take(limit) {
        // A script that allocates into a full slot would leak that slot's block unseen (the
        // timed loop only debug-asserts it): such a script is wrong, whoever plays it.
        if let Op::Alloc(s, _) = op
            && !slots.ptr(s as usize).is_null()
        {
            c.error = Some(format!("script error: op allocates into full slot {s}"));
            break;
        }
        slots.step(a, op, &mut c);
        if c.error.is_some() {
            break;
        }
    }
    for s in 0..slots.len() {
        if !slots.ptr(s).is_null() && c.error.is_none() {
            slots.step(a, Op::Free(s as u32), &mut c);
        }
    }
    slots.release(a);
    match c.error {
        Some(e) => Err(e),
        None => Ok(slots.fails),
    }
}

/// A clock for single calls: the TSC on x86_64 (a few ns to read), else `Instant`.
pub struct Clock {
    /// Nanoseconds per tick.
    pub ns_per_tick: f64,
    /// Smallest non-zero difference seen between two reads, in ns (AMD's TSC advances in
    /// steps of ~10 ns).
    pub resolution_ns: f64,
    /// Median cost of an empty measurement, in ticks (subtracted from every sample).
    pub overhead: u64,
}

impl Clock {
    #[inline(always)]
    fn now() -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `rdtsc` is available on every x86_64 CPU.
            unsafe { core::arch::x86_64::_rdtsc() }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            use std::sync::OnceLock;
            static START: OnceLock<Instant> = OnceLock::new();
            START.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }

    /// Calibrates against `Instant` over ~20 ms.
    pub fn calibrate() -> Clock {
        let (t0, c0) = (Instant::now(), Clock::now());
        while t0.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let (ns, ticks) = (t0.elapsed().as_nanos() as f64, Clock::now() - c0);
        let mut empty: Vec<u64> = (0..10_000)
            .map(|_| {
                let a = Clock::now();
                let b = Clock::now();
                b - a
            })
            .collect();
        empty.sort_unstable();
        let ns_per_tick = ns / ticks.max(1) as f64;
        // The most frequent non-zero difference: AMD's TSC, for one, advances in steps of ~26.
        let mut step = (1, 0);
        let mut i = 0;
        while i < empty.len() {
            let j = i + empty[i..].iter().take_while(|&&d| d == empty[i]).count();
            if empty[i] > 0 && j - i > step.1 {
                step = (empty[i], j - i);
            }
            i = j;
        }
        let step = step.0;
        Clock {
            ns_per_tick,
            resolution_ns: step as f64 * ns_per_tick,
            overhead: empty[empty.len() / 2],
        }
    }
}

/// Per-call times of one run, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Allocation calls, sorted.
    pub alloc: Vec<f64>,
    /// Free calls, sorted.
    pub free: Vec<f64>,
    /// Every timed op in script order (NaN: skipped), to compare the same call across runs.
    pub by_op: Vec<f64>,
    /// Failed requests.
    pub fails: u64,
}

/// Plays a script's timed part one call at a time, each call timed alone.
pub struct Latency<'a> {
    /// The script.
    pub script: &'a Script,
    /// The clock.
    pub clock: &'a Clock,
    /// As [`Throughput::warm_budget`].
    pub warm_budget: Duration,
}

impl crate::subjects::Job for Latency<'_> {
    type Out = Result<Samples, String>;
    fn setup(&self) -> Setup {
        Setup {
            max_align: self.script.max_align,
        }
    }
    fn run<A: Subject>(&mut self, a: &mut A) -> Result<Samples, String> {
        let sc = self.script;
        let mut slots = Slots::new(sc.slots);
        warm_up(a, &mut slots, sc, self.warm_budget)?;
        let n = sc.ops.len() - sc.warm;
        let (mut al, mut fr) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut by_op = Vec::with_capacity(n);
        for &op in &sc.ops[sc.warm..] {
            let t0 = Clock::now();
            let kind = slots.step(a, op, &mut NoProbe);
            let t = Clock::now() - t0;
            let ns = t.saturating_sub(self.clock.overhead) as f64 * self.clock.ns_per_tick;
            match kind {
                Some(true) => al.push(ns),
                Some(false) => fr.push(ns),
                None => {}
            }
            by_op.push(if kind.is_some() { ns } else { f64::NAN });
        }
        let fails = slots.fails;
        slots.release(a);
        al.sort_by(f64::total_cmp);
        fr.sort_by(f64::total_cmp);
        Ok(Samples {
            alloc: al,
            free: fr,
            by_op,
            fails,
        })
    }
}

/// The `q`-quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `efficiency`: into an empty region, allocate ([`mixed_size`], [`mixed_align`]) with a free
/// of a random live block one time in four, until the first failure; the result is the live
/// requested bytes over the region size. Played under the [`Checker`], so an allocator that
/// overlapped blocks could not score. Gives up (`None`) after `budget`.
pub struct Efficiency {
    /// Seed of the request stream.
    pub seed: u64,
    /// The region (for the checker and the ratio).
    pub region: Region,
    /// Time allowed.
    pub budget: Duration,
}

impl crate::subjects::Job for Efficiency {
    type Out = Result<Option<f64>, String>;
    fn setup(&self) -> Setup {
        Setup { max_align: 64 }
    }
    fn run<A: Subject>(&mut self, a: &mut A) -> Self::Out {
        if !a.uses_region() {
            return Ok(None);
        }
        let mut r = Rng::new(self.seed);
        let mut c = Checker::new(Some(self.region));
        let mut live: Vec<(*mut u8, Layout)> = Vec::new();
        let t0 = Instant::now();
        let mut result = None;
        for i in 0.. {
            if i % 4096 == 0 && t0.elapsed() > self.budget {
                break;
            }
            if !live.is_empty() && r.below(4) == 0 {
                let (p, l) = live.swap_remove(r.below(live.len()));
                c.free(p, l);
                // SAFETY: a live block allocated with `l`.
                unsafe { a.free(p, l) };
            } else {
                let l = layout(mixed_size(&mut r), mixed_align(&mut r));
                let p = a.alloc(l);
                if p.is_null() {
                    result = Some(c.live_bytes as f64 / self.region.len as f64);
                    break;
                }
                c.alloc(p, l, i as u32);
                live.push((p, l));
            }
            if let Some(e) = c.error.take() {
                for (p, l) in live {
                    // SAFETY: live blocks allocated with `l`.
                    unsafe { a.free(p, l) };
                }
                return Err(e);
            }
        }
        for (p, l) in live {
            // SAFETY: live blocks allocated with `l`.
            unsafe { a.free(p, l) };
        }
        Ok(result)
    }
}
