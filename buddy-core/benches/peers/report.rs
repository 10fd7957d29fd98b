//! Results: medians, ratios, the issue's targets, and the outputs (stdout table, CSV, SVG chart,
//! `docs/BENCHMARKS.md`). Every output is built from the same [`Table`]s.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use buddy_core::metadata_words;

use crate::subjects::Who;
use crate::threads::Shared;
use crate::workloads::Run;

/// What a row is to the ratios: buddy itself, a peer, or the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A buddy-core configuration (or buddy-std).
    Buddy,
    /// A peer allocator (System included).
    Peer,
    /// The floor pool.
    Floor,
}

/// One allocator in one workload.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The single-threaded subject, if it is one.
    pub who: Option<Who>,
    /// Name in tables.
    pub name: String,
    /// Role in the ratios.
    pub kind: Kind,
    /// Why it was not timed (self-check failure, setup error, panic).
    pub status: Option<String>,
    /// The timed repetitions.
    pub runs: Vec<Run>,
}

/// The median (the mean of the middle two for an even count), NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Cell {
    /// A single-threaded subject.
    pub fn new(who: Who) -> Cell {
        let kind = if who.is_buddy() {
            Kind::Buddy
        } else if who == Who::Floor {
            Kind::Floor
        } else {
            Kind::Peer
        };
        Cell {
            who: Some(who),
            name: who.name().to_string(),
            kind,
            status: None,
            runs: Vec::new(),
        }
    }

    /// A thread-safe subject.
    pub fn shared(s: Shared) -> Cell {
        let kind = match s {
            Shared::BuddyLocked | Shared::BuddyStd => Kind::Buddy,
            _ => Kind::Peer,
        };
        Cell {
            who: None,
            name: s.name().to_string(),
            kind,
            status: None,
            runs: Vec::new(),
        }
    }

    /// Timed and not disqualified.
    pub fn timed(&self) -> bool {
        self.status.is_none() && !self.runs.is_empty()
    }

    /// Median ns per call (NaN if not timed).
    pub fn ns(&self) -> f64 {
        if !self.timed() {
            return f64::NAN;
        }
        median(&mut self.runs.iter().map(|r| r.ns_per_call).collect::<Vec<_>>())
    }

    fn spread(&self) -> (f64, f64) {
        let v = self.runs.iter().map(|r| r.ns_per_call);
        (
            v.clone().fold(f64::INFINITY, f64::min),
            v.fold(f64::NEG_INFINITY, f64::max),
        )
    }

    /// Most failed requests in any repetition.
    pub fn fails(&self) -> u64 {
        self.runs.iter().map(|r| r.fails).max().unwrap_or(0)
    }

    fn cut(&self) -> bool {
        self.runs.iter().any(|r| r.cut)
    }
}

/// A throughput workload: one cell per allocator.
#[derive(Clone, Debug)]
pub struct Work {
    /// `pairs`, `random-actions`, …
    pub name: String,
    /// Region size in bytes.
    pub region: usize,
    /// The allocators.
    pub cells: Vec<Cell>,
}

impl Work {
    fn cell(&self, name: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.name == name)
    }

    fn ns_of(&self, name: &str) -> f64 {
        self.cell(name).map_or(f64::NAN, Cell::ns)
    }

    /// The fastest timed peer.
    fn best_peer(&self) -> Option<&Cell> {
        self.cells
            .iter()
            .filter(|c| c.kind == Kind::Peer && c.timed())
            .min_by(|a, b| a.ns().total_cmp(&b.ns()))
    }
}

/// One repetition of `latency`.
#[derive(Clone, Copy, Debug)]
pub struct LatRep {
    /// Allocations: p50, p99, p99.9, max (ns).
    pub alloc: [f64; 4],
    /// Frees: p50, p99, p99.9, max (ns).
    pub free: [f64; 4],
    /// Failed requests.
    pub fails: u64,
}

/// `latency` for one allocator.
#[derive(Clone, Debug)]
pub struct LatCell {
    /// The allocator.
    pub cell: Cell,
    /// One entry per repetition.
    pub reps: Vec<LatRep>,
    /// Slowest call with machine noise filtered out: per call, the fastest of its repetitions
    /// (the same call on the same heap state), then the slowest of those; (alloc, free).
    pub stable_max: (f64, f64),
    /// Repetitions behind `stable_max`.
    pub stable_reps: usize,
}

impl LatCell {
    /// An allocator not run yet.
    pub fn new(cell: Cell) -> LatCell {
        LatCell {
            cell,
            reps: Vec::new(),
            stable_max: (f64::NAN, f64::NAN),
            stable_reps: 0,
        }
    }

    /// Median over repetitions of each statistic: alloc then free.
    fn stats(&self) -> Option<([f64; 4], [f64; 4])> {
        if self.cell.status.is_some() || self.reps.is_empty() {
            return None;
        }
        let m =
            |f: &dyn Fn(&LatRep) -> f64| median(&mut self.reps.iter().map(f).collect::<Vec<_>>());
        let a = [0, 1, 2, 3].map(|i| m(&|r| r.alloc[i]));
        let f = [0, 1, 2, 3].map(|i| m(&|r| r.free[i]));
        Some((a, f))
    }

    /// Largest single call over all repetitions: (alloc, free).
    fn worst(&self) -> (f64, f64) {
        self.reps.iter().fold((0.0f64, 0.0f64), |(a, f), r| {
            (a.max(r.alloc[3]), f.max(r.free[3]))
        })
    }
}

/// `efficiency` for one allocator: one ratio per seed.
#[derive(Clone, Debug)]
pub struct EffCell {
    /// The allocator.
    pub cell: Cell,
    /// Live requested bytes / region size at the first failure, per seed.
    pub seeds: Vec<f64>,
}

impl EffCell {
    fn mean(&self) -> f64 {
        if self.cell.status.is_some() || self.seeds.is_empty() {
            return f64::NAN;
        }
        self.seeds.iter().sum::<f64>() / self.seeds.len() as f64
    }
}

/// Everything one run of the bench measured.
pub struct Results {
    /// Smoke run.
    pub quick: bool,
    /// Repetitions per cell.
    pub reps: usize,
    /// Main region size.
    pub main_len: usize,
    /// Regions of the scaling rows.
    pub scaling: [usize; 3],
    /// Throughput workloads (pairs, random-actions, frames, scaling-*).
    pub works: Vec<Work>,
    /// `scaling`'s reference without an allocator ([`Mover`](crate::subjects::Mover)): region
    /// length and ns per call of each run on that region's scaling script.
    pub moves: Vec<(usize, Vec<f64>)>,
    /// `latency`.
    pub latency: Vec<LatCell>,
    /// `efficiency`.
    pub efficiency: Vec<EffCell>,
    /// `threads-1`, `threads-2`.
    pub threads: Vec<Work>,
    /// TSC calibration.
    pub clock_ns_per_tick: f64,
    /// Cost of an empty timed call, subtracted from latency samples.
    pub clock_overhead_ns: f64,
    /// Smallest step the clock shows.
    pub clock_resolution_ns: f64,
    /// Single-threaded figures are thread CPU time (else wall time).
    pub cpu_time: bool,
    /// Load averages before and after the run.
    pub load: (String, String),
    /// How the region is backed (page size).
    pub pages: String,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Results {
    /// Some buddy-core configuration failed a self-check (the run then fails).
    pub fn buddy_failed_check(&self) -> bool {
        let bad = |c: &Cell| c.kind == Kind::Buddy && c.status.is_some();
        self.works
            .iter()
            .chain(&self.threads)
            .any(|w| w.cells.iter().any(bad))
            || self.latency.iter().any(|l| bad(&l.cell))
            || self.efficiency.iter().any(|e| bad(&e.cell))
    }

    fn work(&self, name: &str) -> Option<&Work> {
        self.works
            .iter()
            .chain(&self.threads)
            .find(|w| w.name == name)
    }

    fn scaling_names(&self) -> [String; 3] {
        self.scaling.map(|l| format!("scaling-{}M", l >> 20))
    }
}

/// A table rendered as aligned text (stdout) or Markdown.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: impl Into<String>, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn row(&mut self, r: Vec<String>) {
        self.rows.push(r);
    }

    fn text(&self) -> String {
        let n = self.header.len();
        let mut w = vec![0; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut s = format!("\n{}\n", self.title);
        for (k, r) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                if i == 0 {
                    line += &format!("{c}{}", " ".repeat(pad));
                } else {
                    line += &format!("  {}{c}", " ".repeat(pad));
                }
            }
            s += line.trim_end();
            s.push('\n');
            if k == 0 {
                s += &"-".repeat(w.iter().sum::<usize>() + 2 * (n - 1));
                s.push('\n');
            }
        }
        for note in &self.notes {
            s += &format!("  {note}\n");
        }
        s
    }

    fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        s += &format!("| {} |\n", self.header.join(" | "));
        s += &format!(
            "|{}\n",
            self.header
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { " --- |" } else { " ---: |" })
                .collect::<String>()
        );
        let md = |x: &str| x.replace('*', "\\*").replace('|', "\\|");
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|c| md(c)).collect();
            s += &format!("| {} |\n", cells.join(" | "));
        }
        s.push('\n');
        for note in &self.notes {
            s += &format!("{}\n\n", md(note));
        }
        s
    }
}

fn ns(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn ratio(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else if x < 0.01 {
        format!("{x:.4}×")
    } else {
        format!("{x:.2}×")
    }
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

/// ns/call of every allocator in every throughput workload.
fn ns_table(r: &Results) -> Table {
    let mut header = vec!["allocator".to_string()];
    header.extend(r.works.iter().map(|w| w.name.clone()));
    let mut t = Table::new(
        format!(
            "ns per call, median of {} repetitions ({}; lower is better)",
            r.reps,
            if r.cpu_time {
                "thread CPU time"
            } else {
                "wall time"
            }
        ),
        &header.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut names: Vec<&str> = Vec::new();
    for w in &r.works {
        for c in &w.cells {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
    }
    let (mut any_cut, mut any_nt, mut any_few, mut any_fail) = (false, false, false, false);
    for name in names {
        let mut row = vec![name.to_string()];
        for w in &r.works {
            row.push(match w.cell(name) {
                None => "".into(),
                Some(c) if c.status.is_some() => {
                    any_nt = true;
                    "n/t".into()
                }
                Some(c) => {
                    let mut x = ns(c.ns());
                    if c.cut() {
                        any_cut = true;
                        x.push('*');
                    }
                    if c.runs.len() < r.reps {
                        any_few = true;
                        x.push('†');
                    }
                    if c.fails() > 0 && w.name != "frames" {
                        any_fail = true;
                        x.push('!');
                    }
                    x
                }
            });
        }
        t.row(row);
    }
    if any_fail {
        t.notes.push(
            "! the allocator refused some requests of this workload (failed_requests in \
             results.csv); its later ops on those slots were skipped."
                .into(),
        );
    }
    if any_few {
        t.notes.push(
            "† fewer repetitions: the allocator used up its time budget for the workload (3 s)."
                .into(),
        );
    }
    if any_cut {
        t.notes.push(
            "* the timed part was cut at the time budget: the allocator is that slow; ns/call \
             over the calls it made."
                .into(),
        );
    }
    if any_nt {
        t.notes.push(
            "n/t: not timed (self-check failed or unsupported); see \"Not measured\".".into(),
        );
    }
    t.notes.push(format!(
        "Regions: {} MiB except scaling-*, fragmented-*, fixed-* and norealloc-*; frames' failed requests are in their own table. \
         Spread (min..max over repetitions) is in results.csv.",
        r.main_len >> 20
    ));
    t
}

/// buddy against the best peer, talc and the floor, per workload.
fn ratio_table(r: &Results) -> Table {
    let mut t = Table::new(
        "buddy against the best peer and the floor (ratios of median ns/call; < 1 is faster)",
        &[
            "workload",
            "buddy",
            "best peer",
            "× best peer",
            "talc",
            "× talc",
            "floor",
            "× floor",
        ],
    );
    for w in &r.works {
        let rows: Vec<&str> = if w.name == "frames" {
            vec![Who::BuddyFrames.name(), Who::Buddy.name()]
        } else {
            vec![Who::Buddy.name()]
        };
        for b in rows {
            let bn = w.ns_of(b);
            let best = w.best_peer();
            let (talc, floor) = (w.ns_of("talc"), w.ns_of("floor"));
            let label = if b == Who::Buddy.name() && w.name == "frames" {
                "frames (buddy default cfg)".to_string()
            } else {
                w.name.clone()
            };
            t.row(vec![
                label,
                ns(bn),
                best.map_or("—".into(), |c| format!("{} ({})", ns(c.ns()), c.name)),
                ratio(bn / best.map_or(f64::NAN, Cell::ns)),
                ns(talc),
                ratio(bn / talc),
                ns(floor),
                ratio(bn / floor),
            ]);
        }
    }
    t.notes.push(
        "Peers: talc, rlsf, buddy_system_allocator, linked_list_allocator, buddy-alloc, System. \
         The floor is the bench's size-class free-list pool."
            .into(),
    );
    t
}

fn frames_table(r: &Results) -> Option<Table> {
    let w = r.work("frames")?;
    let mut t = Table::new(
        "frames: failed requests at 70% fill (most in any repetition)",
        &["allocator", "failed requests", "ns/call"],
    );
    for c in &w.cells {
        t.row(vec![
            c.name.clone(),
            if c.timed() {
                c.fails().to_string()
            } else {
                "n/t".into()
            },
            ns(c.ns()),
        ]);
    }
    t.notes.push(
        "Frames of 4 KiB << k (k = 0..4, geometric), aligned to their size; the region is filled \
         to 70% (requested bytes), then frames are freed and allocated at random around that \
         level. buddy (frames cfg): min_block 4096, exact_fit off, metadata outside the region; \
         buddy: the default config (16-byte blocks, metadata carved from the region)."
            .into(),
    );
    Some(t)
}

fn latency_table(r: &Results) -> Table {
    let mut t = Table::new(
        format!(
            "latency: each call timed alone on a fragmented heap, ns (median over {} reps)",
            r.reps
        ),
        &[
            "allocator",
            "alloc p50",
            "p99",
            "p99.9",
            "max",
            "free p50",
            "p99",
            "p99.9",
            "max",
            "slowest alloc (filtered)",
            "slowest free (filtered)",
            "slowest, raw",
        ],
    );
    for l in &r.latency {
        let mut row = vec![l.cell.name.clone()];
        match l.stats() {
            Some((a, f)) => {
                row.extend(a.iter().map(|&x| ns(x)));
                row.extend(f.iter().map(|&x| ns(x)));
                row.push(ns(l.stable_max.0));
                row.push(ns(l.stable_max.1));
                let (wa, wf) = l.worst();
                row.push(ns(wa.max(wf)));
            }
            None => row.extend((0..11).map(|_| "n/t".to_string())),
        }
        t.row(row);
    }
    t.notes.push(format!(
        "10k live blocks and 10k holes (mixed sizes up to 8 KiB, aligns 8/16/64), then 20k \
         rounds of (alloc into a hole, free a random live block), each call timed alone with \
         the TSC ({:.3} ns/tick, steps of {:.0} ns; the median cost of an empty measurement, \
         {:.0} ns, is subtracted, so 0 means below the clock's step). 'filtered': per call, the \
         fastest of its repetitions (same call, same heap state), then the slowest call: a \
         delay that does not repeat is the machine (preemption, interrupts), not the \
         allocator. 'raw': the slowest single sample of any repetition.",
        r.clock_ns_per_tick, r.clock_resolution_ns, r.clock_overhead_ns
    ));
    t
}

fn efficiency_table(r: &Results) -> Table {
    let mut t = Table::new(
        format!(
            "efficiency: live requested bytes / region at the first failure ({} MiB, mean over \
             seeds)",
            r.main_len >> 20,
        ),
        &["allocator", "mean", "min", "max", "seeds"],
    );
    for e in &r.efficiency {
        let (lo, hi) = e
            .seeds
            .iter()
            .fold((f64::NAN, f64::NAN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if e.cell.status.is_some() {
            t.row(vec![
                e.cell.name.clone(),
                "n/t".into(),
                "".into(),
                "".into(),
                "".into(),
            ]);
        } else {
            t.row(vec![
                e.cell.name.clone(),
                pct(e.mean()),
                pct(lo),
                pct(hi),
                e.seeds.len().to_string(),
            ]);
        }
    }
    t.notes.push(
        "Mixed sizes up to 8 KiB (aligns 8/16/64), one free of a random live block per four \
         requests; up to 5 seeds (an allocator that has spent 3 s stops early). The region size includes any metadata the allocator carves from it. System \
         has no region and is left out."
            .into(),
    );
    t
}

/// (region, min block, bytes, fraction) for the metadata table.
fn metadata_rows(r: &Results) -> Vec<(usize, usize, usize, f64)> {
    let mut lens = vec![r.scaling[0], r.main_len, r.scaling[2]];
    lens.sort_unstable();
    lens.dedup();
    let mut v = Vec::new();
    for min in [16, 4096] {
        for &len in &lens {
            let b = metadata_words(len, min) * 8;
            v.push((len, min, b, b as f64 / len as f64));
        }
    }
    v
}

fn metadata_table(r: &Results) -> Table {
    let mut t = Table::new(
        "buddy metadata (metadata_words × 8: what a static array for the region needs)",
        &["region", "min block", "bytes", "% of region"],
    );
    for (len, min, b, f) in metadata_rows(r) {
        t.row(vec![
            format!("{} MiB", len >> 20),
            format!("{min} B"),
            b.to_string(),
            format!("{:.3}%", 100.0 * f),
        ]);
    }
    t
}

fn threads_table(r: &Results) -> Option<Table> {
    let (t1, t2) = (r.work("threads-1")?, r.work("threads-2")?);
    let mut t = Table::new(
        "threads: aggregate ns per call (wall time / calls of all threads; lower is better)",
        &[
            "allocator",
            "1 thread",
            "2 threads",
            "2 threads × System",
            "2t / 1t",
            "failed requests (1t / 2t)",
        ],
    );
    let sys2 = t2.ns_of("System");
    for c in &t2.cells {
        let (a, b) = (t1.ns_of(&c.name), c.ns());
        let nt = |c: Option<&Cell>, x: f64| {
            if c.is_some_and(|c| c.status.is_some()) {
                "n/t".into()
            } else {
                ns(x)
            }
        };
        t.row(vec![
            c.name.clone(),
            nt(t1.cell(&c.name), a),
            nt(Some(c), b),
            ratio(b / sys2),
            ratio(b / a),
            format!(
                "{} / {}",
                t1.cell(&c.name).map_or(0, Cell::fails),
                c.fails()
            ),
        ]);
    }
    t.notes.push(
        "Each thread plays its own random-actions script (8192 slots; the region-based peers \
         share one 64 MiB region, buddy-std and System map their own memory); every 4th op it \
         also allocates a block that the other thread frees (batches of 32 through a mailbox \
         of at most 128 blocks; when it is full, the sender frees the batch itself). One \
         thread: the mailbox loops back. Before the timed pass each thread plays its whole \
         script once untimed and frees everything, so that buddy-std and System find their \
         pages faulted in, as the region-based peers find their region. Wall time: with other load on the machine the \
         2-thread figures suffer most (spin locks whose holder is preempted)."
            .into(),
    );
    Some(t)
}

/// A target of the issue, evaluated.
struct Target {
    what: String,
    goal: String,
    measured: String,
    /// Some(pass) or None when it cannot be evaluated.
    pass: Option<bool>,
    /// How far off (for misses), e.g. "+19%".
    by: String,
}

fn off(measured: f64, limit: f64, upper: bool) -> String {
    if measured.is_nan() {
        return String::new();
    }
    let d = if upper {
        measured / limit - 1.0
    } else {
        1.0 - measured / limit
    };
    if d > 0.0 {
        format!("by {:.0}%", 100.0 * d)
    } else {
        String::new()
    }
}

fn upper(what: &str, goal: String, measured: f64, limit: f64, shown: String) -> Target {
    let pass = (!measured.is_nan()).then_some(measured <= limit);
    Target {
        what: what.into(),
        goal,
        measured: shown,
        pass,
        by: off(measured, limit, true),
    }
}

/// How `rows`-* grow from the smallest scaling region to the largest: buddy's ratio, the same
/// shown with `others`' ratios in brackets, and the two rows' names. `None` if either did not run.
fn growth(r: &Results, rows: &str, others: &[&str]) -> Option<(f64, String, String, String)> {
    let [n1, _, n3] = r.scaling_names().map(|n| n.replacen("scaling", rows, 1));
    let (a, b) = (r.work(&n1)?, r.work(&n3)?);
    let x = |who: &str| b.ns_of(who) / a.ns_of(who);
    let peers: Vec<String> = others
        .iter()
        .map(|w| format!("{w} {}", ratio(x(w))))
        .collect();
    let shown = format!("{} ({})", ratio(x("buddy")), peers.join(", "));
    Some((x("buddy"), shown, n1, n3))
}

fn targets(r: &Results) -> Vec<Target> {
    let mut v = Vec::new();
    if let Some(w) = r.work("random-actions") {
        let x = w.ns_of("buddy") / w.ns_of("talc");
        v.push(upper(
            "random-actions: buddy / talc",
            "≤ 0.80×".into(),
            x,
            0.8,
            ratio(x),
        ));
        // The configuration that meets the efficiency target, at its price in time.
        let c = w.ns_of(Who::BuddyCompact.name()) / w.ns_of("talc");
        if !c.is_nan() {
            v.push(Target {
                what: "(variant) random-actions: buddy (compact cfg) / talc".into(),
                goal: "≤ 0.80×".into(),
                measured: ratio(c),
                pass: None,
                by: "(information: the price of the efficiency target)".into(),
            });
        }
    }
    if let Some(w) = r.work("random-actions-norealloc") {
        let x = w.ns_of("buddy") / w.ns_of("talc");
        v.push(Target {
            what: "(variant) random-actions without realloc: buddy / talc".into(),
            goal: "≤ 0.80×".into(),
            measured: ratio(x),
            pass: None,
            by: "(information: the target is on random-actions)".into(),
        });
    }
    if let Some(w) = r.work("pairs") {
        let x = w.ns_of("buddy") / w.ns_of("floor");
        v.push(upper(
            "pairs: buddy / floor",
            "≤ 1.50×".into(),
            x,
            1.5,
            ratio(x),
        ));
    }
    if let Some(w) = r.work("frames") {
        let b = w.cell(Who::BuddyFrames.name());
        let x = b.map_or(f64::NAN, Cell::ns) / w.best_peer().map_or(f64::NAN, Cell::ns);
        v.push(upper(
            "frames: buddy (frames cfg) / best peer",
            "≤ 0.50×".into(),
            x,
            0.5,
            format!(
                "{} (best peer: {})",
                ratio(x),
                w.best_peer().map_or("—", |c| c.name.as_str())
            ),
        ));
        let clean = w
            .cells
            .iter()
            .filter(|c| c.kind == Kind::Peer && c.timed() && c.fails() == 0)
            .min_by(|a, b| a.ns().total_cmp(&b.ns()));
        let y = b.map_or(f64::NAN, Cell::ns) / clean.map_or(f64::NAN, Cell::ns);
        v.push(upper(
            "frames: … / best peer with no failed request",
            "≤ 0.50×".into(),
            y,
            0.5,
            format!("{} ({})", ratio(y), clean.map_or("—", |c| c.name.as_str())),
        ));
        let f = b
            .filter(|c| c.timed())
            .map_or(f64::NAN, |c| c.fails() as f64);
        v.push(upper(
            "frames: failed requests at 70% fill",
            "0".into(),
            f,
            0.0,
            if f.is_nan() {
                "—".into()
            } else {
                format!("{f}")
            },
        ));
    }
    let lat = |name: &str| {
        r.latency
            .iter()
            .find(|l| l.cell.name == name)
            .and_then(LatCell::stats)
    };
    if let (Some((ba, bf)), Some((ta, tf))) = (lat("buddy"), lat("talc")) {
        v.push(upper(
            "latency: alloc p99.9, buddy vs talc",
            format!("≤ talc ({} ns)", ns(ta[2])),
            ba[2],
            ta[2],
            format!("{} ns", ns(ba[2])),
        ));
        v.push(upper(
            "latency: free p99.9, buddy vs talc",
            format!("≤ talc ({} ns)", ns(tf[2])),
            bf[2],
            tf[2],
            format!("{} ns", ns(bf[2])),
        ));
        let m = r
            .latency
            .iter()
            .find(|l| l.cell.name == "buddy")
            .map_or(f64::NAN, |l| l.stable_max.0.max(l.stable_max.1));
        v.push(upper(
            "latency: slowest call, machine noise filtered",
            "≤ 2000 ns".into(),
            m,
            2000.0,
            format!("{} ns", ns(m)),
        ));
    }
    let [s1, _, s3] = r.scaling_names();
    // The issue's target: the heap grows and fragments in proportion, the working set does not
    // (see the BENCHMARKS method), so that ns/call is the allocator's and not the bench's own
    // table and copies leaving the caches. The other readings follow, for information.
    let info = |what: &str, (_, shown, n1, n3): (f64, String, String, String)| Target {
        what: format!("(variant) {what}: buddy {n3} / {n1}"),
        goal: "≤ 1.30×".into(),
        measured: shown,
        pass: None,
        by: "(information; the target is the scaling row)".into(),
    };
    if let Some((x, shown, g1, g3)) = growth(r, "fragmented", &["talc", "buddy_system_allocator"]) {
        v.push(upper(
            &format!("scaling: buddy {g3} / {g1}"),
            "≤ 1.30×".into(),
            x,
            1.3,
            shown,
        ));
    }
    if let Some(g) = growth(r, "scaling", &["floor", "talc"]) {
        v.push(info("live set growing with the region", g));
    }
    // The live set held fixed, so that only the region grows.
    if let Some(g) = growth(r, "fixed", &["floor"]) {
        v.push(info("live set fixed", g));
    }
    // The growing live set without reallocs, whose moves copy cold memory.
    if let Some(g) = growth(r, "norealloc", &["floor", "talc"]) {
        v.push(info("no realloc", g));
    }
    if let (Some(a), Some(b)) = (r.work(&s1), r.work(&s3)) {
        // No allocator at all, only the copies of the reallocs that move (`Mover`).
        let m = |len: usize| {
            r.moves
                .iter()
                .find(|(l, _)| *l == len)
                .map_or(f64::NAN, |(_, ns)| median(&mut ns.clone()))
        };
        let (m1, m3) = (m(r.scaling[0]), m(r.scaling[2]));
        if !(m1.is_nan() || m3.is_nan()) {
            v.push(Target {
                what: format!("(variant) moves only, no allocator: {s3} / {s1}"),
                goal: "≤ 1.30×".into(),
                measured: format!(
                    "{} ({} → {} ns; buddy {} → {})",
                    ratio(m3 / m1),
                    ns(m1),
                    ns(m3),
                    ns(a.ns_of("buddy")),
                    ns(b.ns_of("buddy"))
                ),
                pass: None,
                by: "(information: what the copies alone cost)".into(),
            });
        }
    }
    // The issue's lever for efficiency is an exact-fit mode: `Config::compact()` is that mode.
    // The default configuration is shown beside it, for information.
    if let Some(e) = r
        .efficiency
        .iter()
        .find(|e| e.cell.name == Who::BuddyCompact.name())
    {
        let x = e.mean();
        v.push(Target {
            what: "efficiency: buddy (compact cfg)".into(),
            goal: "≥ 90%".into(),
            measured: pct(x),
            pass: (!x.is_nan()).then_some(x >= 0.9),
            by: off(x, 0.9, false),
        });
    }
    if let Some(e) = r.efficiency.iter().find(|e| e.cell.name == "buddy") {
        v.push(Target {
            what: "(variant) efficiency: buddy (default cfg)".into(),
            goal: "≥ 90%".into(),
            measured: pct(e.mean()),
            pass: None,
            by: "(information: the default trades this for speed)".into(),
        });
    }
    for (len, min, _, f) in metadata_rows(r) {
        if len != r.main_len {
            continue;
        }
        let limit = if min == 16 { 0.025 } else { 0.0005 };
        v.push(upper(
            &format!("metadata at {min} B blocks ({} MiB)", len >> 20),
            format!("≤ {}%", 100.0 * limit),
            f,
            limit,
            format!("{:.3}%", 100.0 * f),
        ));
    }
    if let Some(w) = r.work("threads-2") {
        let name = Shared::BuddyStd.name();
        let x = w.ns_of(name) / w.ns_of("System");
        v.push(upper(
            "threads: 2-thread throughput ≥ System's (ns/call ratio)",
            "≤ 1.00×".into(),
            x,
            1.0,
            format!("{} ({name})", ratio(x)),
        ));
    }
    v
}

fn targets_table(r: &Results) -> Table {
    let mut t = Table::new(
        "targets (issue 4), measured in this run",
        &["target", "goal", "measured", "result"],
    );
    for x in targets(r) {
        let res = match x.pass {
            Some(true) => "PASS".to_string(),
            Some(false) => format!("MISS {}", x.by).trim_end().to_string(),
            None => format!("n/a {}", x.by).trim_end().to_string(),
        };
        t.row(vec![x.what, x.goal, x.measured, res]);
    }
    t
}

/// Reasons for everything that was not measured.
fn not_measured(r: &Results) -> Vec<String> {
    let mut v = Vec::new();
    let mut push = |work: &str, c: &Cell| {
        if let Some(s) = &c.status {
            v.push(format!("{} — {work}: {s}", c.name));
        }
    };
    for w in r.works.iter().chain(&r.threads) {
        for c in &w.cells {
            push(&w.name, c);
        }
    }
    for l in &r.latency {
        push("latency", &l.cell);
    }
    for e in &r.efficiency {
        push("efficiency", &e.cell);
    }
    v
}

fn tables(r: &Results) -> Vec<Table> {
    let mut v = vec![ns_table(r), ratio_table(r)];
    v.extend(frames_table(r));
    v.push(latency_table(r));
    v.push(efficiency_table(r));
    v.push(metadata_table(r));
    v.extend(threads_table(r));
    v.push(targets_table(r));
    v
}

/// Prints every table to stdout.
pub fn print(r: &Results) {
    let m = Machine::probe();
    println!(
        "\nbuddy bench{} — {} CPUs ({}), {}, {}; {:.0} s",
        if r.quick {
            " (QUICK smoke run: numbers are not meaningful)"
        } else {
            ""
        },
        m.cpus,
        m.cpu,
        m.rustc,
        m.date,
        r.elapsed.as_secs_f64()
    );
    println!("region: {}", r.pages);
    for t in tables(r) {
        print!("{}", t.text());
    }
    let nm = not_measured(r);
    if !nm.is_empty() {
        println!("\nNot measured:");
        for s in nm {
            println!("  {s}");
        }
    }
}

/// The machine, for the record.
struct Machine {
    cpus: usize,
    cpu: String,
    rustc: String,
    date: String,
    kernel: String,
    commit: String,
}

fn command_line(prog: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(prog).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// `rustc -V`: the rustc beside the cargo that runs us (no rustup proxy in between), else
/// `$RUSTC`, else `rustc` from the path.
fn rustc_version() -> String {
    let beside_cargo = std::env::var("CARGO").ok().and_then(|c| {
        let p = std::path::Path::new(&c).with_file_name("rustc");
        p.exists().then(|| p.to_string_lossy().into_owned())
    });
    beside_cargo
        .into_iter()
        .chain(std::env::var("RUSTC").ok())
        .chain(["rustc".to_string()])
        .find_map(|r| command_line(&r, &["-V"]))
        .unwrap_or_else(|| "rustc ?".into())
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock (civil-from-days, no date crate needed).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

impl Machine {
    fn probe() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            rustc: rustc_version(),
            date: utc_now(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "?".into(), |s| s.trim().to_string()),
            commit: command_line("git", &["rev-parse", "--short", "HEAD"]).map_or_else(
                || "?".into(),
                |c| {
                    // Uncommitted changes in the measured crates make a different program.
                    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
                    let dirty = command_line(
                        "git",
                        &[
                            "-C",
                            root,
                            "status",
                            "--porcelain",
                            "--",
                            "buddy-core/src",
                            "buddy-std/src",
                        ],
                    )
                    .is_some_and(|s| !s.is_empty());
                    if dirty {
                        format!("{c} + uncommitted changes to buddy-core/buddy-std src")
                    } else {
                        c
                    }
                },
            ),
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `docs/bench/results.csv`: one row per (workload, allocator, metric).
fn csv(r: &Results) -> String {
    let mut s =
        String::from("workload,region_bytes,allocator,metric,median,min,max,samples,note\n");
    let mut row = |w: &str, reg: usize, a: &str, m: &str, v: [f64; 3], n: usize, note: &str| {
        let f = |x: f64| {
            if x.is_nan() {
                String::new()
            } else {
                format!("{x:.3}")
            }
        };
        let _ = writeln!(
            s,
            "{},{reg},{},{m},{},{},{},{n},{}",
            csv_field(w),
            csv_field(a),
            f(v[0]),
            f(v[1]),
            f(v[2]),
            csv_field(note)
        );
    };
    for (len, runs) in &r.moves {
        let (lo, hi) = runs
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        row(
            &format!("scaling-{}M", len >> 20),
            *len,
            "moves only (no allocator)",
            "ns_per_call",
            [median(&mut runs.clone()), lo, hi],
            runs.len(),
            "reference: the reallocs' copies alone (Mover), not an allocator",
        );
    }
    for w in r.works.iter().chain(&r.threads) {
        let best = w.best_peer().map_or(f64::NAN, Cell::ns);
        let floor = w.ns_of("floor");
        for c in &w.cells {
            if let Some(st) = &c.status {
                row(
                    &w.name,
                    w.region,
                    &c.name,
                    "not_timed",
                    [f64::NAN; 3],
                    0,
                    st,
                );
                continue;
            }
            let (lo, hi) = c.spread();
            let note = if c.cut() {
                "cut at the time budget"
            } else {
                ""
            };
            let n = c.runs.len();
            row(
                &w.name,
                w.region,
                &c.name,
                "ns_per_call",
                [c.ns(), lo, hi],
                n,
                note,
            );
            let mut wall: Vec<f64> = c.runs.iter().map(|r| r.wall_ns_per_call).collect();
            let (wlo, whi) = wall
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
            let wm = median(&mut wall);
            row(
                &w.name,
                w.region,
                &c.name,
                "wall_ns_per_call",
                [wm, wlo, whi],
                n,
                "",
            );
            let calls = c
                .runs
                .iter()
                .map(|r| r.calls as f64)
                .fold(f64::NAN, f64::max);
            row(&w.name, w.region, &c.name, "calls_timed", [calls; 3], n, "");
            let f = c.fails() as f64;
            row(
                &w.name,
                w.region,
                &c.name,
                "failed_requests",
                [f; 3],
                n,
                "max over reps",
            );
            row(
                &w.name,
                w.region,
                &c.name,
                "ratio_best_peer",
                [c.ns() / best; 3],
                n,
                "",
            );
            row(
                &w.name,
                w.region,
                &c.name,
                "ratio_floor",
                [c.ns() / floor; 3],
                n,
                "",
            );
        }
    }
    for l in &r.latency {
        if let Some(st) = &l.cell.status {
            row(
                "latency",
                r.main_len,
                &l.cell.name,
                "not_timed",
                [f64::NAN; 3],
                0,
                st,
            );
            continue;
        }
        let names = ["p50", "p99", "p999", "max"];
        for (op, k) in [("alloc", 0), ("free", 1)] {
            for (i, nm) in names.iter().enumerate() {
                let mut v: Vec<f64> = l
                    .reps
                    .iter()
                    .map(|x| if k == 0 { x.alloc[i] } else { x.free[i] })
                    .collect();
                let (lo, hi) = v
                    .iter()
                    .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
                let m = median(&mut v);
                let metric = format!("{op}_{nm}_ns");
                row(
                    "latency",
                    r.main_len,
                    &l.cell.name,
                    &metric,
                    [m, lo, hi],
                    v.len(),
                    "",
                );
            }
        }
        let fails = l.reps.iter().map(|x| x.fails).max().unwrap_or(0) as f64;
        for (metric, x) in [
            ("alloc_slowest_filtered_ns", l.stable_max.0),
            ("free_slowest_filtered_ns", l.stable_max.1),
            ("failed_requests", fails),
        ] {
            row(
                "latency",
                r.main_len,
                &l.cell.name,
                metric,
                [x; 3],
                l.stable_reps,
                "per call: fastest of the repetitions; then the slowest call",
            );
        }
    }
    for e in &r.efficiency {
        if let Some(st) = &e.cell.status {
            row(
                "efficiency",
                r.main_len,
                &e.cell.name,
                "not_timed",
                [f64::NAN; 3],
                0,
                st,
            );
            continue;
        }
        let (lo, hi) = e
            .seeds
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        row(
            "efficiency",
            r.main_len,
            &e.cell.name,
            "efficiency",
            [e.mean(), lo, hi],
            e.seeds.len(),
            "mean over seeds",
        );
    }
    for (len, min, b, f) in metadata_rows(r) {
        let note = format!("min block {min} B");
        row(
            "metadata",
            len,
            "buddy",
            "metadata_bytes",
            [b as f64; 3],
            1,
            &note,
        );
        row(
            "metadata",
            len,
            "buddy",
            "metadata_percent",
            [100.0 * f; 3],
            1,
            &note,
        );
    }
    for t in targets(r) {
        let res = match t.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a",
        };
        let note = format!("goal {}; measured {}; {res} {}", t.goal, t.measured, t.by);
        row(
            "target",
            0,
            "buddy",
            &t.what,
            [f64::NAN; 3],
            0,
            note.trim_end(),
        );
    }
    s
}

/// Colour of an allocator in the chart, by family.
fn colour(name: &str) -> &'static str {
    match name {
        n if n.starts_with("buddy (frames") => "#f4a582",
        n if n.starts_with("buddy-std") => "#67001f",
        n if n.starts_with("buddy-core") => "#d6604d",
        n if n == "buddy" || n.starts_with("buddy (") => "#b2182b",
        n if n.starts_with("talc") => "#2166ac",
        n if n.starts_with("rlsf") => "#4dac26",
        n if n.starts_with("buddy_system") => "#8073ac",
        n if n.starts_with("linked_list") => "#8c510a",
        n if n.starts_with("buddy-alloc") => "#de77ae",
        n if n.starts_with("floor") => "#878787",
        _ => "#35978f",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `docs/bench/bench.svg`: grouped bars of median ns/call, log scale.
fn svg(r: &Results, m: &Machine) -> String {
    let groups: Vec<&Work> = r.works.iter().chain(&r.threads).collect();
    let bars = |w: &Work| -> Vec<(String, f64, u64)> {
        w.cells
            .iter()
            .filter(|c| c.timed())
            .map(|c| (c.name.clone(), c.ns(), c.fails()))
            .collect()
    };
    let all: Vec<f64> = groups
        .iter()
        .flat_map(|w| bars(w).into_iter().map(|b| b.1))
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(0.1);
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    // Headroom above the tallest bar for its rotated label.
    let (lo, hi) = (lo.log10().floor(), (hi.log10() + 0.7).ceil());
    let (bw, gap, left, top, ph) = (13.0, 26.0, 70.0, 92.0, 300.0);
    let widths: Vec<f64> = groups
        .iter()
        .map(|w| bars(w).len().max(1) as f64 * bw + gap)
        .collect();
    let width = left + widths.iter().sum::<f64>() + 20.0;
    let height = top + ph + 70.0;
    let y = |v: f64| top + ph * (1.0 - (v.log10() - lo) / (hi - lo));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="20" font-size="15" font-weight="bold">buddy-core vs peers: ns per call, median of {} reps (log scale, lower is better)</text>"#,
        r.reps
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="37" fill="#555">{} CPUs, {}, {}, {}</text>"##,
        m.cpus,
        esc(&m.cpu),
        esc(&m.rustc),
        m.date
    );
    // Legend: every allocator name, in first-seen order.
    let mut names: Vec<String> = Vec::new();
    for w in &groups {
        for (n, ..) in bars(w) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let (mut lx, mut ly) = (left, 52.0);
    for n in &names {
        let w = 18.0 + 6.2 * n.chars().count() as f64;
        if lx + w > width - 10.0 {
            lx = left;
            ly += 15.0;
        }
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            ly - 9.0,
            colour(n),
            lx + 13.0,
            ly,
            esc(n)
        );
        lx += w + 8.0;
    }
    // Grid: one line per decade.
    let mut d = lo;
    while d <= hi + 1e-9 {
        let v = 10f64.powf(d);
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.0}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{} ns</text>"##,
            width - 10.0,
            left - 6.0,
            yy + 4.0,
            if v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        );
        d += 1.0;
    }
    let mut x = left + gap / 2.0;
    for (w, gw) in groups.iter().zip(&widths) {
        for (i, (n, v, fails)) in bars(w).iter().enumerate() {
            let bx = x + i as f64 * bw;
            let by = y(*v);
            let _ = writeln!(
                s,
                r#"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} ns/call</title></rect>"#,
                bw - 2.0,
                top + ph - by,
                colour(n),
                esc(n),
                ns(*v)
            );
            let _ = writeln!(
                s,
                r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="8">{}</text>"#,
                bx + bw / 2.0 + 2.5,
                by - 3.0,
                if *fails > 0 {
                    format!("{} ({fails} failed)", ns(*v))
                } else {
                    ns(*v)
                }
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.0}" text-anchor="middle">{}</text>"#,
            x + (gw - gap) / 2.0,
            top + ph + 16.0,
            esc(&w.name)
        );
        x += gw;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.0}" y2="{:.1}" stroke="#333"/>"##,
        top + ph,
        width - 10.0,
        top + ph
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{:.0}" fill="#555">Bars missing from a group: not timed (self-check failed or unsupported). threads-*: aggregate ns/call with 1 and 2 threads.</text>"##,
        top + ph + 40.0
    );
    s += "</svg>\n";
    s
}

fn markdown(r: &Results, m: &Machine) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` (the program `buddy-core/benches/peers/`); do not edit \
         by hand.\n\n\
         | | |\n| --- | --- |\n\
         | date | {} |\n| machine | {} CPUs, {} |\n| kernel | Linux {} |\n| compiler | {} |\n\
         | commit | {} |\n| run | {} repetitions per cell, medians; {:.0} s in all |\n\
         | load average (1, 5, 15 min) | {} before, {} after |\n| region | {} |\n\n\
         ![ns per call, per workload and allocator](bench/bench.svg)\n\n\
         Raw numbers (medians, min and max over repetitions): [bench/results.csv](bench/results.csv).\n\n",
        m.date,
        m.cpus,
        m.cpu,
        m.kernel,
        m.rustc,
        m.commit,
        r.reps,
        r.elapsed.as_secs_f64(),
        r.load.0,
        r.load.1,
        r.pages
    );
    s += "## Method\n\n\
        - Every allocator manages the same region (System excepted: it has none) and plays exactly \
        the same requests: scripts generated from fixed seeds (wyrand) before anything is timed. \
        A failed allocation leaves its slot empty; later ops on it are skipped and the failure is \
        counted. The harness keeps a slot's pointer, size and alignment in one 16-byte record \
        (one cache line touched per call on a large slot table; ns/call includes this harness \
        cost for every allocator alike).\n\
        - Before timing, each allocator plays its script under a checker: a pattern written over \
        every block must be intact when it is freed or moved; alignment, region bounds and overlap \
        with every live block are checked on each allocation. An allocator that fails is reported \
        below, not timed.\n\
        - Each cell is timed 7 times (5 for threads), with the order of allocators reversed every \
        other repetition; the tables show medians. A run whose timed part exceeds 250 ms is cut \
        there (marked *); an allocator that has spent 3 s on a workload gets no more repetitions \
        (marked †); one whose untimed warm-up takes over 4 s is reported too slow.\n\
        - Single-threaded ns/call is the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) \
        over the calls: the machine is shared, and time spent descheduled by other load is not \
        the allocator's. Wall-clock figures are in the CSV (`wall_ns_per_call`); on a quiet \
        machine they agree. `threads` is wall time.\n\
        - Workloads: `pairs` alloc + immediate free, power-of-two sizes 16..4096 on an empty heap. \
        `random-actions` a table of one slot per 2 KiB of region: pick a slot, allocate if empty \
        (sizes skewed small up to 8 KiB, aligns 8/16/64), else free (2/3) or realloc (1/3); warmed \
        up with 4 ops per slot, then 400k timed ops. `random-actions-norealloc` the same script \
        generator without realloc (a full slot is always freed; talc's `--no-realloc`), for \
        information: it shows the allocators' alloc and free without the copies of the reallocs \
        that move. `scaling-*` the same at other region sizes \
        (the live set grows with the region, and with it the bench's slot table and the blocks \
        the reallocs copy, which leave the CPU caches at 256 MiB); `fragmented-*`, the scaling \
        target's rows, a heap like scaling-*'s (the same generator's warm-up on the region, \
        another seed: a live set and holes in proportion to it, never touched again), then \
        the smallest region's script (its warm-up and 400k timed ops) on a table of its own: \
        the heap and its fragmentation grow with the region, the working set does not, so \
        that the growth in ns/call is the allocator's (a free-list scan shows here, as \
        buddy_system_allocator's does); `fixed-*` the smallest region's script alone on every \
        region, so that only the region grows; `norealloc-*` the scaling-* regions and \
        live sets with the `random-actions-norealloc` generator, so that no realloc copies cold \
        memory; `moves only` (in the targets table and the CSV) is no allocator at all, timed on the \
        scaling-* scripts like the others: a bump pointer wrapping around the region hands out \
        every block, free does nothing, and a realloc that changes the power-of-two class moves \
        `min(old, new)` bytes to the bump pointer, as buddy's and the floor's do: the cost of \
        those copies alone, a low estimate since its destinations are sequential. `frames`, `latency`, `efficiency`, `threads`: see \
        the notes under their tables. ns/call counts every alloc, free and realloc as one call.\n\
        - Peers are called through their own APIs over the region (talc `Talc<Manual>`, \
        rlsf `Tlsf<u32, u32, 24, 32>`, buddy_system_allocator `Heap<32>`, linked_list_allocator \
        `Heap`, buddy-alloc `BuddyAlloc`, whose leaf is the workload's largest alignment since it \
        has no alignment parameter). Peers without realloc allocate, copy and free. Release \
        profile, no LTO: generic peers are inlined into the bench loop, buddy-core's \
        non-generic functions are called across the crate boundary, as a user would get them.\n\
        - buddy configurations: `buddy` is `Heap::new()` (exact fit above 4 KiB in runs of up to \
        4 pieces); `buddy (compact cfg)` is `Config::compact()` (exact fit above 512 bytes, up \
        to 5 pieces), the configuration the efficiency target is judged on; `buddy (exact fit \
        off)` rounds every request to a power of two (efficiency only); `buddy (frames cfg)` is \
        described under the frames table.\n\n";
    s += "## Results\n\n";
    for t in tables(r) {
        s += &t.markdown();
    }
    let nm = not_measured(r);
    s += "## Not measured\n\n";
    if nm.is_empty() {
        s += "Every allocator passed every self-check.\n";
    } else {
        for x in nm {
            s += &format!("- {x}\n");
        }
    }
    s
}

/// Writes `dir/bench/results.csv`, `dir/bench/bench.svg` and `dir/BENCHMARKS.md`.
pub fn write(r: &Results, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let m = Machine::probe();
    let bench = dir.join("bench");
    std::fs::create_dir_all(&bench)?;
    let files = [
        (bench.join("results.csv"), csv(r)),
        (bench.join("bench.svg"), svg(r, &m)),
        (dir.join("BENCHMARKS.md"), markdown(r, &m)),
    ];
    let mut out = Vec::new();
    for (p, body) in files {
        std::fs::write(&p, body)?;
        out.push(p);
    }
    Ok(out)
}
