//! buddy-core against its peers: `cargo xtask bench` (or `cargo bench -p buddy-core --bench
//! peers`). A program, not a test: it prints a table of medians, and writes
//! `docs/bench/results.csv`, `docs/bench/bench.svg` and `docs/BENCHMARKS.md`.
//!
//! Every allocator gets the same region and exactly the same requests (scripts generated from
//! fixed seeds, see `workloads.rs`), passes a self-check on its own script before it is timed
//! (or is reported and left out), and is timed `REPS` times with the order of allocators
//! reversed every other repetition; tables show medians.
//!
//! - `--quick`: a smoke run (a few thousand ops per workload, one repetition, every op
//!   self-checked); writes nothing. Also what runs under `cargo test` (no `--bench` flag).
//! - `--only buddy,talc,…`: only these allocators (keys: buddy — with its other configs —,
//!   talc, rlsf, bsa, lla, buddy-alloc, floor, system, buddy-std).
//! - `--workloads pairs,random-actions,frames,scaling,latency,efficiency,threads`
//!   (`random-actions` also runs `random-actions-norealloc`; `scaling` runs `scaling-*`,
//!   `fragmented-*`, `fixed-*`, `norealloc-*` and the moves-only reference).
//! - `--reps N`: repetitions per cell.
//! - `--no-cut`: no time budgets (for profilers: `valgrind --tool=callgrind
//!   --toggle-collect='*Throughput*run*' <bench binary> --bench --only buddy --workloads pairs
//!   --reps 1 --no-cut`).
//! - `--huge-pages`: the region on 2 MiB pages (`MADV_HUGEPAGE`; the report says how much of
//!   it the kernel gave), to tell cache misses from TLB misses on the large regions.
//! - `--write`: write the files even for a quick or filtered run (they are not, by default).
//!
//! The exit code is non-zero if any buddy configuration fails its self-check.

mod report;
mod subjects;
mod threads;
mod workloads;

use std::alloc::Layout;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use subjects::{Job, Mover, Region, Subject, Who, dispatch};
use threads::{Shared, SharedCheck, Threads, with_shared};
use workloads::{Check, Clock, Efficiency, Latency, Op, Script, Throughput, quantile};

const MIB: usize = 1 << 20;

/// How big and how long: the full run or the smoke run.
struct Plan {
    quick: bool,
    reps: usize,
    /// Ops checked per script before timing (`usize::MAX`: all).
    check_limit: usize,
    /// Time allowed for the timed part of one run before it is cut.
    budget: Duration,
    /// Time allowed for the untimed warm-up of one run ("too slow" past it).
    warm_budget: Duration,
    /// Once a subject has spent this long in one workload, it gets no more repetitions.
    cell_budget: Duration,
    /// Time allowed to fill the region in one `efficiency` run.
    efficiency_budget: Duration,
    pairs: usize,
    /// Region of `random-actions`, `frames`, `latency`, `efficiency`, `threads`.
    main_len: usize,
    /// Regions of `scaling` (the main region is added to the row).
    scaling: [usize; 3],
    timed_ops: usize,
    frames_churn: usize,
    latency_live: usize,
    latency_rounds: usize,
    efficiency_seeds: u64,
    thread_ops: usize,
    thread_slots: usize,
    /// `--only`: allocator keys (all when empty).
    only: Vec<String>,
    /// `--workloads`: workload names (all when empty).
    workloads: Vec<String>,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            reps: 7,
            check_limit: 60_000,
            budget: Duration::from_millis(250),
            warm_budget: Duration::from_secs(4),
            cell_budget: Duration::from_secs(3),
            efficiency_budget: Duration::from_secs(6),
            pairs: 300_000,
            main_len: 64 * MIB,
            scaling: [MIB, 16 * MIB, 256 * MIB],
            timed_ops: 400_000,
            frames_churn: 100_000,
            latency_live: 10_000,
            latency_rounds: 20_000,
            efficiency_seeds: 5,
            thread_ops: 200_000,
            thread_slots: 8192,
            only: Vec::new(),
            workloads: Vec::new(),
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            reps: 1,
            check_limit: usize::MAX,
            budget: Duration::from_millis(200),
            warm_budget: Duration::from_secs(4),
            cell_budget: Duration::from_secs(3),
            efficiency_budget: Duration::from_secs(4),
            pairs: 2000,
            main_len: 4 * MIB,
            scaling: [MIB, 2 * MIB, 8 * MIB],
            timed_ops: 4000,
            frames_churn: 1000,
            latency_live: 1000,
            latency_rounds: 2000,
            efficiency_seeds: 1,
            thread_ops: 4000,
            thread_slots: 256,
            only: Vec::new(),
            workloads: Vec::new(),
        }
    }

    /// Whether `--only` lets the allocator with this key run.
    fn wants(&self, key: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|k| {
                key == k
                    || key
                        .strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with(':'))
            })
    }

    /// Whether `--workloads` lets this workload run.
    fn runs(&self, workload: &str) -> bool {
        self.workloads.is_empty() || self.workloads.iter().any(|w| w == workload)
    }

    /// The subjects of `who` that `--only` lets run.
    fn subjects(&self, who: &[Who]) -> Vec<Who> {
        who.iter()
            .copied()
            .filter(|w| self.wants(w.key()))
            .collect()
    }

    /// `random-actions` over `len`: one slot per 2 KiB of region (the table settles 60% full,
    /// ~25% of the region requested), warmed up with 4 ops per slot.
    fn random_actions(&self, len: usize, seed: u64) -> Script {
        let slots = len / 2048;
        workloads::random_actions(slots, 4 * slots, self.timed_ops, seed, true)
    }

    /// The same without reallocs (talc's `--no-realloc`): a full slot is always freed.
    fn random_actions_no_realloc(&self, len: usize, seed: u64) -> Script {
        let slots = len / 2048;
        workloads::random_actions(slots, 4 * slots, self.timed_ops, seed, false)
    }
}

/// One big region, aligned to its size, touched once so that no allocator pays page faults.
struct Arena {
    ptr: *mut u8,
    layout: Layout,
    /// How the region is backed, for the report (`--huge-pages`).
    pages: String,
}

impl Arena {
    /// `len` bytes aligned to `len`, every page faulted in; with `huge`, advised
    /// `MADV_HUGEPAGE` first, so that the kernel backs it with 2 MiB pages if it can.
    fn new(len: usize, huge: bool) -> Arena {
        let layout = Layout::from_size_align(len, len).expect("power-of-two region");
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(
            !ptr.is_null(),
            "cannot allocate the {} MiB region",
            len / MIB
        );
        let before = huge.then(anon_huge_kib).flatten();
        if huge {
            // SAFETY: `[ptr, ptr + len)` is ours, just allocated and aligned to `len`, a power
            // of two of at least a page; `MADV_HUGEPAGE` changes no contents.
            let advised =
                unsafe { rustix::mm::madvise(ptr.cast(), len, rustix::mm::Advice::LinuxHugepage) };
            if let Err(e) = advised {
                eprintln!("warning: madvise(MADV_HUGEPAGE) refused ({e}): 4 KiB pages");
            }
        }
        // SAFETY: `ptr` is valid for `len` bytes.
        unsafe { ptr.write_bytes(0, len) };
        let pages = if huge {
            let got = anon_huge_kib()
                .zip(before)
                .map(|(a, b)| a.saturating_sub(b));
            format!(
                "2 MiB pages asked (`--huge-pages`, `MADV_HUGEPAGE`): {} MiB of the {} MiB region on huge pages",
                got.map_or("?".into(), |k| (k >> 10).to_string()),
                len / MIB
            )
        } else {
            "4 KiB pages (the default; `--huge-pages` asks for 2 MiB pages)".into()
        };
        Arena { ptr, layout, pages }
    }

    fn region(&self, len: usize) -> Region {
        assert!(len <= self.layout.size());
        Region { ptr: self.ptr, len }
    }
}

/// The process's anonymous memory on transparent huge pages (`/proc/self/smaps_rollup`), KiB.
fn anon_huge_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = s.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// Runs `f`, turning a panic into an error (a peer that panics is reported, not fatal).
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => Err(format!(
            "panicked: {}",
            e.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    }
}

/// The allocators of the throughput and latency workloads, in table order.
const SUBJECTS: [Who; 9] = [
    Who::Buddy,
    Who::BuddyCompact,
    Who::Talc,
    Who::Rlsf,
    Who::Bsa,
    Who::Lla,
    Who::BuddyAlloc,
    Who::Floor,
    Who::System,
];

/// The order of a repetition: forward on even reps, backward on odd ones.
fn order<T: Copy>(items: &[T], rep: usize) -> Vec<(usize, T)> {
    let mut v: Vec<(usize, T)> = items.iter().copied().enumerate().collect();
    if rep % 2 == 1 {
        v.reverse();
    }
    v
}

fn progress(msg: &str) {
    eprintln!(
        "[{:>6.1}s] {msg}",
        START.with(|s| s.elapsed().as_secs_f64())
    );
}

thread_local! {
    static START: Instant = Instant::now();
}

/// Self-check, then `reps` timed runs of every subject on `script`.
fn throughput(
    plan: &Plan,
    arena: &Arena,
    name: &str,
    len: usize,
    script: &Script,
    who: &[Who],
) -> report::Work {
    let who = &plan.subjects(who);
    progress(&format!(
        "{name}: {} ops, {} MiB region",
        script.ops.len(),
        len / MIB
    ));
    let region = arena.region(len);
    let mut cells: Vec<report::Cell> = who.iter().map(|&w| report::Cell::new(w)).collect();
    for c in &mut cells {
        let mut job = Check {
            script,
            limit: plan.check_limit,
            region,
        };
        if let Err(e) = guarded(|| dispatch(c.who.unwrap(), region, &mut job)?) {
            c.status = Some(format!("self-check failed: {e}"));
        }
    }
    let mut spent = vec![Duration::ZERO; who.len()];
    for rep in 0..plan.reps {
        for (i, w) in order(who, rep) {
            if cells[i].status.is_some() || spent[i] > plan.cell_budget {
                continue;
            }
            let mut job = Throughput {
                script,
                budget: plan.budget,
                warm_budget: plan.warm_budget,
            };
            let t0 = Instant::now();
            match guarded(|| dispatch(w, region, &mut job)?) {
                Ok(run) => cells[i].runs.push(run),
                Err(e) => cells[i].status = Some(e),
            }
            spent[i] += t0.elapsed();
        }
    }
    report::Work {
        name: name.to_string(),
        region: len,
        cells,
    }
}

/// [`Mover`] timed on `script` as the allocators are (`plan.reps` runs of [`Throughput`]):
/// ns per call of each run that finished.
fn moves_only(plan: &Plan, arena: &Arena, len: usize, script: &Script) -> Vec<f64> {
    progress(&format!("moves only (no allocator): {} MiB", len / MIB));
    let region = arena.region(len);
    let mut ns = Vec::new();
    for _ in 0..plan.reps {
        let mut job = Throughput {
            script,
            budget: plan.budget,
            warm_budget: plan.warm_budget,
        };
        // SAFETY: the bench owns the region and lends it to one subject at a time.
        if let Ok(mut m) = unsafe { Mover::new(region, job.setup()) }
            && let Ok(run) = job.run(&mut m)
        {
            ns.push(run.ns_per_call);
        }
    }
    ns
}

fn latency(plan: &Plan, arena: &Arena, clock: &Clock) -> Vec<report::LatCell> {
    let script = workloads::latency(plan.latency_live, plan.latency_rounds, 0x1a7e);
    progress(&format!(
        "latency: {} live, {} holes, {} timed calls",
        plan.latency_live,
        plan.latency_live,
        2 * plan.latency_rounds
    ));
    let region = arena.region(plan.main_len);
    let who = plan.subjects(&SUBJECTS);
    let mut cells: Vec<report::LatCell> = who
        .iter()
        .map(|&w| report::LatCell::new(report::Cell::new(w)))
        .collect();
    for c in &mut cells {
        let mut job = Check {
            script: &script,
            limit: plan.check_limit,
            region,
        };
        if let Err(e) = guarded(|| dispatch(c.cell.who.unwrap(), region, &mut job)?) {
            c.cell.status = Some(format!("self-check failed: {e}"));
        }
    }
    // Per timed op, the fastest of its repetitions: the same call on the same heap state, so
    // a slow call that does not repeat was the machine, not the allocator.
    let mut fastest: Vec<Vec<f64>> = vec![Vec::new(); who.len()];
    let mut spent = vec![Duration::ZERO; who.len()];
    for rep in 0..plan.reps {
        for (i, w) in order(&who, rep) {
            if cells[i].cell.status.is_some() || spent[i] > plan.cell_budget {
                continue;
            }
            let mut job = Latency {
                script: &script,
                clock,
                warm_budget: plan.warm_budget,
            };
            let t0 = Instant::now();
            let r = guarded(|| dispatch(w, region, &mut job)?);
            spent[i] += t0.elapsed();
            match r {
                Ok(s) => {
                    let st = |v: &[f64]| {
                        [
                            quantile(v, 0.5),
                            quantile(v, 0.99),
                            quantile(v, 0.999),
                            v.last().copied().unwrap_or(f64::NAN),
                        ]
                    };
                    cells[i].reps.push(report::LatRep {
                        alloc: st(&s.alloc),
                        free: st(&s.free),
                        fails: s.fails,
                    });
                    if fastest[i].is_empty() {
                        fastest[i] = s.by_op;
                    } else {
                        for (f, x) in fastest[i].iter_mut().zip(s.by_op) {
                            *f = f.min(x);
                        }
                    }
                }
                Err(e) => cells[i].cell.status = Some(e),
            }
        }
    }
    for (c, f) in cells.iter_mut().zip(&fastest) {
        let mut m = (0.0f64, 0.0f64);
        for (op, &t) in script.ops[script.warm..].iter().zip(f) {
            match op {
                Op::Alloc(..) => m.0 = m.0.max(t),
                _ => m.1 = m.1.max(t),
            }
        }
        c.stable_max = m;
        c.stable_reps = c.reps.len();
    }
    cells
}

fn efficiency(plan: &Plan, arena: &Arena) -> Vec<report::EffCell> {
    let region = arena.region(plan.main_len);
    progress(&format!(
        "efficiency: {} seeds, {} MiB region",
        plan.efficiency_seeds,
        plan.main_len / MIB
    ));
    let who = plan.subjects(&[
        Who::Buddy,
        Who::BuddyCompact,
        Who::BuddyPow2,
        Who::Talc,
        Who::Rlsf,
        Who::Bsa,
        Who::Lla,
        Who::BuddyAlloc,
        Who::Floor,
    ]);
    let mut out = Vec::new();
    for w in who {
        let mut cell = report::EffCell {
            cell: report::Cell::new(w),
            seeds: Vec::new(),
        };
        let t0 = Instant::now();
        for seed in 0..plan.efficiency_seeds {
            // Seeds agree within a fraction of a point: a slow allocator stops early.
            if seed > 0 && t0.elapsed() > plan.cell_budget {
                break;
            }
            let mut job = Efficiency {
                seed: 0xeff + seed,
                region,
                budget: plan.efficiency_budget,
            };
            match guarded(|| dispatch(w, region, &mut job)?) {
                Ok(Some(e)) => cell.seeds.push(e),
                Ok(None) => {
                    cell.cell.status = Some(format!(
                        "too slow: region not full after {} s",
                        plan.efficiency_budget.as_secs()
                    ));
                    break;
                }
                Err(e) => {
                    cell.cell.status = Some(format!("self-check failed: {e}"));
                    break;
                }
            }
        }
        out.push(cell);
    }
    out
}

fn threads(plan: &Plan, arena: &Arena) -> Vec<report::Work> {
    let region = arena.region(plan.main_len);
    let subjects: Vec<Shared> = Shared::all()
        .into_iter()
        .filter(|s| plan.wants(s.key()))
        .collect();
    let mut out = Vec::new();
    for n in [1usize, 2] {
        let scripts: Vec<Script> = (0..n)
            .map(|t| {
                let s = plan.thread_slots;
                workloads::random_actions(s, 4 * s, plan.thread_ops, 0x7ead + t as u64, true)
            })
            .collect();
        progress(&format!("threads-{n}: {} ops per thread", plan.thread_ops));
        let mut cells: Vec<report::Cell> =
            subjects.iter().map(|&s| report::Cell::shared(s)).collect();
        for (c, &s) in cells.iter_mut().zip(&subjects) {
            let mut job = SharedCheck {
                script: &scripts[0],
                limit: plan.check_limit,
                region,
            };
            if let Err(e) = guarded(|| with_shared(s, region, &mut job)?) {
                c.status = Some(format!("self-check failed: {e}"));
            }
        }
        let mut spent = vec![Duration::ZERO; subjects.len()];
        for rep in 0..plan.reps.min(5) {
            for (i, s) in order(&subjects, rep) {
                if cells[i].status.is_some() || spent[i] > plan.cell_budget {
                    continue;
                }
                let mut job = Threads { scripts: &scripts };
                let t0 = Instant::now();
                match guarded(|| with_shared(s, region, &mut job)) {
                    Ok(run) => cells[i].runs.push(run),
                    Err(e) => cells[i].status = Some(e),
                }
                spent[i] += t0.elapsed();
            }
        }
        out.push(report::Work {
            name: format!("threads-{n}"),
            region: plan.main_len,
            cells,
        });
    }
    out
}

/// The three load averages, as the kernel shows them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The value after `flag`, split at commas.
fn list(args: &[String], flag: &str) -> Vec<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(|s| s.trim().to_lowercase()).collect())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    // `cargo bench` passes `--bench`; without it we run under `cargo test`: smoke mode.
    let quick = has("--quick") || !has("--bench");
    let mut plan = if quick { Plan::quick() } else { Plan::full() };
    plan.only = list(&args, "--only");
    plan.workloads = list(&args, "--workloads");
    if let Some(n) = list(&args, "--reps").first().and_then(|n| n.parse().ok()) {
        plan.reps = n;
    }
    if has("--no-cut") {
        // Under a profiler (callgrind runs ~50x slower) every op must still run.
        plan.budget = Duration::MAX;
        plan.warm_budget = Duration::MAX;
        plan.cell_budget = Duration::MAX;
        plan.efficiency_budget = Duration::MAX;
    }
    let partial = !plan.only.is_empty() || !plan.workloads.is_empty();
    let write = has("--write") || !(quick || partial);
    START.with(|_| ());
    let load_before = loadavg();
    std::panic::set_hook(Box::new(|info| {
        eprintln!("  (a subject panicked: {info})");
    }));

    let largest = plan.scaling[2].max(plan.main_len);
    let arena = Arena::new(largest, has("--huge-pages"));
    let clock = Clock::calibrate();
    let main_len = plan.main_len;

    let mut works = Vec::new();
    let mut moves = Vec::new();
    if plan.runs("pairs") {
        let s = workloads::pairs(plan.pairs, 0x9a1);
        works.push(throughput(&plan, &arena, "pairs", main_len, &s, &SUBJECTS));
    }
    if plan.runs("random-actions") {
        let s = plan.random_actions(main_len, 0x5eed);
        let w = throughput(&plan, &arena, "random-actions", main_len, &s, &SUBJECTS);
        works.push(w);
        // Information, not a target: the same without realloc, whose copies are most of the
        // difference between allocators that resize in place and one that moves.
        let s = plan.random_actions_no_realloc(main_len, 0x5eed);
        let name = "random-actions-norealloc";
        works.push(throughput(&plan, &arena, name, main_len, &s, &SUBJECTS));
    }
    if plan.runs("frames") {
        let s = workloads::frames(main_len, 0.7, plan.frames_churn, 0xf4a);
        let mut who = vec![Who::BuddyFrames];
        who.extend_from_slice(&SUBJECTS);
        works.push(throughput(&plan, &arena, "frames", main_len, &s, &who));
    }
    if plan.runs("scaling") {
        // The live set grows with the region (one slot per 2 KiB): so do the bench's own
        // slot table and the blocks the reallocs copy, which leave the caches.
        for len in plan.scaling {
            let s = plan.random_actions(len, 0x5eed);
            let name = format!("scaling-{}M", len / MIB);
            works.push(throughput(&plan, &arena, &name, len, &s, &SUBJECTS));
        }
        // The target's rows: a heap like the row above's (the same generator's warm-up, another
        // seed: a live set and holes in proportion to the region), then the timed ops on the
        // smallest region's table in slots of their own. The heap and its fragmentation grow
        // with the region; the working set does not.
        let small = plan.random_actions(plan.scaling[0], 0x5eed);
        for len in plan.scaling {
            let heap = plan.random_actions(len, 0xf4a9);
            let s = workloads::fragmented(&heap, &small);
            let name = format!("fragmented-{}M", len / MIB);
            works.push(throughput(&plan, &arena, &name, len, &s, &SUBJECTS));
        }
        // The smallest region's script alone on every region: only the region, and so the
        // allocator's structures, grow (the heap stays as fragmented as at 1 MiB).
        for len in plan.scaling {
            let name = format!("fixed-{}M", len / MIB);
            works.push(throughput(&plan, &arena, &name, len, &small, &SUBJECTS));
        }
        // The growing live set without reallocs: what the allocators' own calls cost as the
        // heap grows, without the copies of the reallocs that move (on cold memory at 256 MiB).
        for len in plan.scaling {
            let s = plan.random_actions_no_realloc(len, 0x5eed);
            let name = format!("norealloc-{}M", len / MIB);
            works.push(throughput(&plan, &arena, &name, len, &s, &SUBJECTS));
        }
        // No allocator at all: the copies of the scaling scripts' moving reallocs, alone.
        for len in plan.scaling {
            let s = plan.random_actions(len, 0x5eed);
            moves.push((len, moves_only(&plan, &arena, len, &s)));
        }
    }
    let latency = if plan.runs("latency") {
        latency(&plan, &arena, &clock)
    } else {
        Vec::new()
    };
    let efficiency = if plan.runs("efficiency") {
        efficiency(&plan, &arena)
    } else {
        Vec::new()
    };
    let threads = if plan.runs("threads") {
        threads(&plan, &arena)
    } else {
        Vec::new()
    };

    let results = report::Results {
        quick: plan.quick,
        reps: plan.reps,
        main_len,
        scaling: plan.scaling,
        works,
        moves,
        latency,
        efficiency,
        threads,
        clock_ns_per_tick: clock.ns_per_tick,
        clock_overhead_ns: clock.overhead as f64 * clock.ns_per_tick,
        clock_resolution_ns: clock.resolution_ns,
        cpu_time: workloads::thread_cpu_ns().is_some(),
        load: (load_before, loadavg()),
        pages: arena.pages.clone(),
        elapsed: START.with(|s| s.elapsed()),
    };
    report::print(&results);
    if write {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        match report::write(&results, &dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("error: cannot write the results: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if results.buddy_failed_check() {
        eprintln!("error: a buddy configuration failed its self-check");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
