//! Project tasks, run as `cargo xtask <command>`.
//!
//! - `test`: every test of the workspace (unit, integration, property, doctests), then the
//!   extra passes each crate asks for, with a summary line per pass.
//! - `demo`: a tour of the allocator for newcomers.
//! - `bench`: buddy-core against its peers; writes `docs/BENCHMARKS.md` (`--quick`: smoke run).
//!
//! One module per command; cargo is invoked through `$CARGO`; no shell scripts.
#![forbid(unsafe_code)]

mod bench;
mod capi;
mod demo;
mod fuzz;
mod harden;
mod test;
mod util;

use std::process::ExitCode;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "test" => test::run(&rest),
        "bench" => bench::run(&rest),
        "demo" => demo::run(&rest),
        "fuzz" => fuzz::run(&rest),
        "" | "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test    run every test: workspace tests, doctests, and the extra passes (summary at the end)
  bench   buddy-core vs its peers: table, docs/bench/results.csv, bench.svg, docs/BENCHMARKS.md
          (about 4 min; --quick: a smoke run that writes nothing)
          --preload: a real program's wall time and peak RSS under glibc, buddy (LD_PRELOAD),
          jemalloc and mimalloc, side by side [--runs N]
  demo    walk through the allocator: a heap over a static buffer, splits, merges, errors, stats
  fuzz    fuzz buddy-core against its shadow model: cargo xtask fuzz [--secs N] (default 60)";
