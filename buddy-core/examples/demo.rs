//! The demo `cargo xtask demo` runs: a guided tour of buddy for newcomers, in a few seconds.
//! Run it alone with `cargo run -p buddy-core --example demo --features log`.
//!
//! The original C project's example first (`buddy_alloc(128)`, then `buddy_free`), on a heap
//! over a static buffer, printing the splits and merges each call causes (the core's `log`
//! feature, caught by a small logger here), the free blocks per order, and a map of the region.

use buddy_core::{AllocError, BlockState, Config, Heap, metadata_words};
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Mutex;

/// Size of the demo's static buffer.
const ARENA_LEN: usize = 4096;
/// Bytes per character of the map.
const MAP_GROUP: usize = 64;

/// The static buffer the heap manages, as firmware would have it (aligned so that the whole
/// buffer is one 4 KiB buddy block; any alignment works).
#[repr(C, align(4096))]
struct Arena([u8; ARENA_LEN]);
static mut ARENA: Arena = Arena([0; ARENA_LEN]);

/// The heap's bitmaps, sized at compile time: the buffer itself is never read or written.
static mut META: [u64; metadata_words(ARENA_LEN, 16)] = [0; metadata_words(ARENA_LEN, 16)];

/// Collects the core's log lines during one call.
struct Recorder;
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut l) = LINES.lock() {
            l.push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder;

/// Log lines recorded since the last call, summarised as "splits 4K→2K 2K→1K".
fn events() -> String {
    let lines = std::mem::take(&mut *LINES.lock().unwrap_or_else(|e| e.into_inner()));
    let mut splits = Vec::new();
    let mut merges = Vec::new();
    let mut other = Vec::new();
    for l in lines {
        // "buddy: split 0x.. order 9 -> 8" / "buddy: merge 0x.. order 4 -> 5"
        let words: Vec<&str> = l.split_whitespace().collect();
        let orders = (words.len() >= 6)
            .then(|| (words[4].parse::<u32>().ok(), words[6].parse::<u32>().ok()));
        match (words.get(1), orders) {
            (Some(&"split"), Some((Some(a), Some(b)))) => {
                splits.push(format!("{}→{}", size(1 << a), size(1 << b)))
            }
            (Some(&"merge"), Some((Some(a), Some(b)))) => {
                merges.push(format!("{}→{}", size(1 << a), size(1 << b)))
            }
            _ => other.push(l.trim_start_matches("buddy: ").to_string()),
        }
    }
    let mut out = Vec::new();
    if !splits.is_empty() {
        out.push(format!("splits {}", splits.join(" ")));
    }
    if !merges.is_empty() {
        out.push(format!("merges {}", merges.join(" ")));
    }
    out.extend(other);
    if out.is_empty() {
        "no split, no merge".into()
    } else {
        out.join("; ")
    }
}

/// What a free did: merges, or "kept in the deferred cache".
fn free_events(heap: &Heap, cached_before: usize) -> String {
    let ev = events();
    if heap.stats().cached_blocks > cached_before && ev == "no split, no merge" {
        "kept in the deferred cache, not merged yet".to_string()
    } else {
        ev
    }
}

fn size(b: usize) -> String {
    if b >= 1024 && b % 1024 == 0 {
        format!("{}K", b / 1024)
    } else {
        format!("{b}B")
    }
}

/// One character per `MAP_GROUP` bytes: `M` metadata, `#` used, `+` partly used, `.` free.
fn map(heap: &Heap, base: usize) -> String {
    (0..ARENA_LEN / MAP_GROUP)
        .map(|g| {
            let states: Vec<BlockState> = (0..MAP_GROUP / 16)
                .map(|i| heap.block_state(base + g * MAP_GROUP + i * 16))
                .collect();
            let used = states.iter().filter(|s| **s == BlockState::Used).count();
            let free = states.iter().filter(|s| **s == BlockState::Free).count();
            if used == states.len() {
                '#'
            } else if free == states.len() {
                '.'
            } else if used > 0 {
                '+'
            } else {
                'M'
            }
        })
        .collect()
}

fn table(heap: &Heap) -> String {
    let s = heap.stats();
    let text = s.to_string();
    let mut lines = text.lines();
    format!(
        "    {}\n    {}",
        lines.next().unwrap_or(""),
        lines.next().unwrap_or("")
    )
}

fn l(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap_or(Layout::new::<u64>())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    log::set_logger(&RECORDER).map_err(|e| e.to_string())?;
    log::set_max_level(log::LevelFilter::Trace);

    let base = (&raw mut ARENA).cast::<u8>();
    // Exact fit from 512 B up (the default, 4 KiB, is bigger than this whole buffer).
    let mut heap = Heap::with_config(Config::new().exact_fit_above(512));
    let meta = (&raw mut META).cast::<u64>();
    // SAFETY: `META` holds `metadata_words(ARENA_LEN, 16)` words, and nothing but this heap
    // uses it, for the rest of the program.
    let meta = unsafe { core::slice::from_raw_parts_mut(meta, metadata_words(ARENA_LEN, 16)) };
    // SAFETY: ARENA and META are used by nothing but this heap, for the rest of the program.
    unsafe { heap.add_region_with_metadata(base, ARENA_LEN, meta) }.map_err(|e| e.to_string())?;
    let base = base as usize;
    let _ = events();
    let (start, end) = heap.ranges().next().unwrap_or((0, 0));

    println!(
        "buddy demo: a binary buddy allocator over a static 4 KiB buffer, 16-byte minimum block"
    );
    println!(
        "  region {:#x}..{:#x} ({} bytes managed); its bitmaps: a separate static of {} bytes",
        start,
        end,
        end - start,
        heap.stats().metadata_bytes
    );
    println!("  exact fit above 512 B: larger requests take a run of blocks, the tail goes back");
    println!("  map: one char per {MAP_GROUP} B  (# used, + partly used, . free)\n");
    println!("  {}   empty heap", map(&heap, base));
    println!("{}\n", table(&heap));

    let p = alloc(&mut heap, base, 128, "ptr = buddy_alloc(128)")?;
    let q = alloc(
        &mut heap,
        base,
        96,
        "buddy_alloc(96): one 128 B block (small requests are not split)",
    )?;
    let r = alloc(
        &mut heap,
        base,
        720,
        "buddy_alloc(720): exact fit, a 512+256 run (at most 4 pieces)",
    )?;
    println!("{}\n", table(&heap));

    free(&mut heap, base, p, "buddy_free(ptr)");
    let _ = events();
    match heap.alloc(l(8192)) {
        Err(e @ AllocError::TooLarge { .. }) => println!("  buddy_alloc(8192)  -> error: {e}"),
        other => return Err(format!("8192 bytes should not fit: {other:?}")),
    }
    match heap.alloc(l(4096)) {
        Err(e @ AllocError::OutOfMemory { .. }) => println!("  buddy_alloc(4096)  -> error: {e}"),
        other => {
            return Err(format!(
                "4096 bytes should not fit next to live blocks: {other:?}"
            ));
        }
    }
    let _ = events();
    let before = heap.stats();
    match free_checked(&mut heap, p) {
        Err(e) => println!(
            "  buddy_free(ptr) again -> error: {e}; heap unharmed: {}",
            ok(&heap, &before)
        ),
        Ok(n) => return Err(format!("double free was accepted ({n} bytes)")),
    }
    let _ = events();
    free(&mut heap, base, q, "buddy_free(128-byte block)");
    free(&mut heap, base, r, "buddy_free(720-byte block)");
    heap.flush();
    println!("  {}   flush(): {}", map(&heap, base), events());
    println!("\nfinal stats:\n{}", heap.stats());
    heap.check().map_err(|e| e.to_string())?;
    println!("\nheap check: ok. Next: `cargo xtask test` runs every test.");
    Ok(())
}

fn ok(heap: &Heap, before: &buddy_core::Stats) -> &'static str {
    if heap.check().is_ok() && heap.stats().free_blocks == before.free_blocks {
        "yes"
    } else {
        "NO"
    }
}

fn alloc(heap: &mut Heap, base: usize, n: usize, what: &str) -> Result<NonNull<u8>, String> {
    let p = heap.alloc(l(n)).map_err(|e| format!("{what}: {e}"))?;
    println!(
        "  {}   {what} = {:#x}",
        map(heap, base),
        p.as_ptr() as usize
    );
    println!("  {:w$}   {}", "", events(), w = ARENA_LEN / MAP_GROUP);
    Ok(p)
}

fn free(heap: &mut Heap, base: usize, p: NonNull<u8>, what: &str) {
    let cached = heap.stats().cached_blocks;
    let freed = free_checked(heap, p);
    let ev = free_events(heap, cached);
    match freed {
        Ok(n) => println!("  {}   {what}: {n} bytes back; {ev}", map(heap, base)),
        Err(e) => println!("  {}   {what}: error {e}", map(heap, base)),
    }
}

fn free_checked(heap: &mut Heap, p: NonNull<u8>) -> Result<usize, buddy_core::FreeError> {
    // SAFETY: `free` checks its pointer: a live block is freed; a double, foreign or interior
    // free is refused and changes nothing. The demo never touches a block after freeing it.
    unsafe { heap.free(p) }
}
