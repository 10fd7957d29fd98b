//! `cargo xtask bench`: buddy-core against its peers (issue 4).
//!
//! Runs the benchmark program `buddy-core/benches/peers/` through `cargo bench` (release
//! profile). It prints the table of medians and writes `docs/bench/results.csv`,
//! `docs/bench/bench.svg` and `docs/BENCHMARKS.md`. About four minutes on two cores.
//!
//! - `--quick`: a smoke run (a few thousand self-checked ops per workload, one repetition);
//!   writes nothing. Other arguments go to the program (`--write` writes even when quick).
//!
//! The build gets `--cfg buddy_bench`, which drops buddy-core's test-only `op-count` feature
//! (an atomic add per metadata word touched) from the bench; that changes `RUSTFLAGS`, so it
//! builds in its own target dir (`target/bench`) and the normal build cache survives.

use crate::util::{cargo, project_root, run as sh};

/// The `cargo bench` command of the benchmark, with `extra` arguments for the program.
pub fn command(extra: &[String]) -> std::process::Command {
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !flags.is_empty() {
        flags.push(' ');
    }
    flags.push_str("--cfg buddy_bench");
    let mut c = cargo();
    c.env("RUSTFLAGS", flags)
        .env(
            "CARGO_TARGET_DIR",
            project_root().join("target").join("bench"),
        )
        .args(["bench", "-p", "buddy-core", "--bench", "peers", "--"])
        .args(extra);
    c
}

/// Runs the benchmark (`--quick` for the smoke run; `--preload`: the drop-in malloc under
/// real programs instead, see `capi::bench`).
pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--preload") {
        return crate::capi::bench(args);
    }
    sh(&mut command(args))
}
