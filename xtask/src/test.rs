//! `cargo xtask test`: every test, pass by pass, with a summary.
//!
//! Each pass is `passed`, `failed`, or `skipped` with one line saying why (a tool this machine
//! cannot run). The summary gives each pass's wall time and their sum (`.ci/run` must stay
//! under 30 minutes on 2 cores). The last line reads `N passed, N failed, N skipped`, and the
//! exit code is non-zero iff a pass failed.
//!
//! `--quick` runs only the workspace tests; `--only TEXT` only the passes whose name contains
//! `TEXT`.

use std::time::{Duration, Instant};

use crate::util::{cargo, run as sh};

/// Outcome of one pass.
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// One pass of the test run.
pub struct Pass {
    pub name: &'static str,
    pub run: fn() -> Outcome,
}

fn from(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    }
}

/// All passes, in order: the plain ones, the C face's (`capi.rs`), then the hardening ones
/// (`harden.rs`).
fn passes() -> Vec<Pass> {
    let mut all = plain_passes();
    all.extend(crate::capi::passes());
    all.extend(crate::harden::passes());
    all
}

fn plain_passes() -> Vec<Pass> {
    vec![
        Pass {
            name: "workspace tests (unit, integration, property, doctests)",
            run: workspace,
        },
        Pass {
            name: "buddy-core without default features",
            run: core_no_default,
        },
        Pass {
            name: "buddy-core with the log feature",
            run: core_log,
        },
        Pass {
            name: "buddy-std loom models (every interleaving; one model to 3 preemptions; --cfg loom)",
            run: loom,
        },
        Pass {
            name: "demo runs (cargo xtask demo)",
            run: demo,
        },
        Pass {
            name: "buddy-core builds for bare metal (x86_64-unknown-none, thumbv7em-none-eabihf)",
            run: no_std_targets,
        },
        Pass {
            name: "buddy-core, buddy-mmap and buddy-std (with the C face) tests on a 32-bit target (i686-unknown-linux-gnu)",
            run: tests_32bit,
        },
        Pass {
            name: "bench smoke run: every allocator self-checked (cargo xtask bench --quick)",
            run: bench_smoke,
        },
    ]
}

/// The benchmark program, built as `cargo xtask bench` builds it, on a few thousand ops.
fn bench_smoke() -> Outcome {
    from(sh(&mut crate::bench::command(&["--quick".to_string()])))
}

fn workspace() -> Outcome {
    from(
        sh(cargo().args(["test", "--workspace", "--all-targets"]))
            .and_then(|()| sh(cargo().args(["test", "--workspace", "--doc"]))),
    )
}

fn core_no_default() -> Outcome {
    from(sh(cargo().args([
        "test",
        "-p",
        "buddy-core",
        "--no-default-features",
        "--lib",
        "--tests",
    ])))
}

fn core_log() -> Outcome {
    from(sh(cargo().args([
        "test",
        "-p",
        "buddy-core",
        "--features",
        "log",
        "--lib",
        "--test",
        "basics",
    ])))
}

/// The loom models of buddy-std (`buddy-std/tests/loom_*.rs`), with `--cfg loom` and debug
/// assertions, in release mode, in their own target directory so the normal build cache
/// survives. No preemption bound: the models are small enough for loom to explore every
/// interleaving (about half a minute on 2 cores, most of it compiling); set
/// `LOOM_MAX_PREEMPTIONS` in the environment to bound it if they grow.
fn loom() -> Outcome {
    let target = crate::util::project_root().join("target").join("loom");
    from(sh(cargo()
        .env("RUSTFLAGS", "--cfg loom -C debug-assertions=on")
        .env("CARGO_TARGET_DIR", target)
        .args([
            "test",
            "-p",
            "buddy-std",
            "--release",
            "--test",
            "loom_*",
        ])))
}

fn demo() -> Outcome {
    from(crate::demo::run(&[]))
}

/// Bare-metal targets the firmware promise is about.
const NO_STD_TARGETS: [&str; 2] = ["x86_64-unknown-none", "thumbv7em-none-eabihf"];

fn installed_targets() -> String {
    std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn no_std_targets() -> Outcome {
    if !crate::util::have("rustup", "--version") {
        return Outcome::Skipped("rustup not found, cannot check for bare-metal targets".into());
    }
    let installed = installed_targets();
    let missing: Vec<_> = NO_STD_TARGETS
        .iter()
        .filter(|t| !installed.contains(*t))
        .collect();
    if !missing.is_empty() {
        return Outcome::Skipped(format!(
            "target(s) {missing:?} not installed (`rustup target add` them; .ci/run does)"
        ));
    }
    for t in NO_STD_TARGETS {
        if let Err(e) = sh(cargo().args(["build", "-p", "buddy-core", "--release", "--target", t]))
        {
            return Outcome::Failed(e);
        }
    }
    Outcome::Passed
}

/// The 32-bit target the tests also run on: firmware heaps are 32-bit (a smaller cache, a
/// 4-byte `usize` in every shift and table), and so are some of the C programs the C face
/// serves; the x86_64 passes cannot see what only holds for a 64-bit `usize`.
pub const TARGET_32: &str = "i686-unknown-linux-gnu";

/// Why 32-bit code cannot be built and run here, if it cannot: the target is not installed, or
/// there is no 32-bit C library and headers to build against.
pub fn no_32bit() -> Option<Outcome> {
    if !crate::util::have("rustup", "--version") {
        return Some(Outcome::Skipped(
            "rustup not found, cannot check for the 32-bit target".into(),
        ));
    }
    if !installed_targets().lines().any(|t| t.trim() == TARGET_32) {
        return Some(Outcome::Skipped(format!(
            "target {TARGET_32} not installed (`rustup target add {TARGET_32}`; .ci/run does)"
        )));
    }
    // A 32-bit C runtime and headers: `cc -m32` of a program that includes <errno.h> (which
    // needs the <asm/...> headers gcc-multilib provides for -m32).
    let dir = std::env::temp_dir().join(format!("buddy-m32-{}", std::process::id()));
    let program = "#include <errno.h>\n#include <stdio.h>\nint main(void) { return errno; }\n";
    let linked = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("m32.c"), program))
        .is_ok()
        && std::process::Command::new("cc")
            .args(["-m32", "-o"])
            .arg(dir.join("m32"))
            .arg(dir.join("m32.c"))
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let _ = std::fs::remove_dir_all(&dir);
    if !linked {
        return Some(Outcome::Skipped(
            "no 32-bit C library or headers (`cc -m32` of a program with <errno.h> fails: install gcc-multilib; .ci/run does)"
                .into(),
        ));
    }
    None
}

/// The unit, integration, property and doc tests of buddy-core, buddy-mmap and buddy-std
/// (with the `capi` feature: the C face's Rust side), built for and run on a 32-bit target
/// (the machine runs i686 code; linking needs a 32-bit C library). The loom models compile
/// to nothing without `--cfg loom` and stay on x86_64, as valgrind does; the C programs
/// have a 32-bit pass of their own (`capi.rs`). The `memcheck` feature is x86_64 only by
/// design.
fn tests_32bit() -> Outcome {
    if let Some(skip) = no_32bit() {
        return skip;
    }
    from(sh(cargo().args([
        "test",
        "-p",
        "buddy-core",
        "-p",
        "buddy-mmap",
        "-p",
        "buddy-std",
        "--features",
        "buddy-std/capi",
        "--target",
        TARGET_32,
    ])))
}

/// `95 s` for a pass's wall time.
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// Runs every pass (or only the workspace tests with `--quick`) and prints the summary.
pub fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    // `--only TEXT`: the passes whose name contains TEXT.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    let mut results = Vec::new();
    for pass in passes()
        .into_iter()
        .filter(|p| only.is_none_or(|o| p.name.contains(o.as_str())))
    {
        if quick && results.len() == 1 {
            break;
        }
        eprintln!("\n=== {} ===", pass.name);
        let t0 = Instant::now();
        let outcome = (pass.run)();
        let took = t0.elapsed();
        let t = secs(took);
        match &outcome {
            Outcome::Passed => eprintln!("--- {}: passed ({t})", pass.name),
            Outcome::Failed(e) => eprintln!("--- {}: FAILED ({t}): {e}", pass.name),
            Outcome::Skipped(why) => eprintln!("--- {}: skipped: {why}", pass.name),
        }
        results.push((pass.name, outcome, took));
    }
    let (mut p, mut f, mut s) = (0, 0, 0);
    // Each pass's wall time: `.ci/run` must stay under 30 minutes on 2 cores.
    println!("\nsummary:");
    for (name, outcome, took) in &results {
        let t = secs(*took);
        match outcome {
            Outcome::Passed => {
                p += 1;
                println!("  passed   {t:>6}  {name}");
            }
            Outcome::Failed(e) => {
                f += 1;
                println!("  FAILED   {t:>6}  {name}: {e}");
            }
            Outcome::Skipped(why) => {
                s += 1;
                println!("  skipped  {t:>6}  {name}: {why}");
            }
        }
    }
    let total: Duration = results.iter().map(|r| r.2).sum();
    println!("  in all   {}", secs(total));
    println!("{p} passed, {f} failed, {s} skipped");
    if f == 0 {
        Ok(())
    } else {
        Err(format!("{f} pass(es) failed"))
    }
}
