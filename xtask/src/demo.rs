//! `cargo xtask demo`: the guided tour, built in release mode so it starts in seconds.
//!
//! 1. `buddy-core/examples/demo.rs`: a heap over a static buffer, the C project's own example
//!    (`buddy_alloc(128)`, then `buddy_free`), splits, merges, errors, stats.
//! 2. `buddy-std/examples/threads.rs`: `BuddyAlloc` as the global allocator of a threaded
//!    program, its stats, and memory given back to the OS.

use crate::util::{cargo, run_quiet as sh};

/// Runs the demo programs.
pub fn run(_args: &[String]) -> Result<(), String> {
    sh(cargo().args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "buddy-core",
        "--example",
        "demo",
        "--features",
        "log",
    ]))?;
    println!();
    sh(cargo().args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "buddy-std",
        "--example",
        "threads",
    ]))
}
