//! Hardening passes of `cargo xtask test`: checks by tools nobody here wrote — Miri, cargo
//! fuzz, AddressSanitizer, valgrind — and the firmware size.
//!
//! Each tool has passes of its own, so the summary reads tool by tool. A pass says `skipped`
//! with the reason when its tool cannot run on this machine; `.ci/run` installs the tools, so
//! on CI they run. Each pass prints how long it took; all of them together take about
//! a quarter of an hour on 2 cores.
//!
//! The arena is one big mapping to AddressSanitizer and valgrind; buddy-std's `asan` and
//! `memcheck` features tell them which blocks are live. The `misuse` passes prove it: a use
//! after free and an overflow into a free block (`buddy-std/examples/misuse.rs`) must be
//! reported, and correct use must not be.

use crate::test::{Outcome, Pass};
use crate::util::{cargo, describe, have, project_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// The hardening passes, in order.
pub fn passes() -> Vec<Pass> {
    vec![
        Pass {
            name: "miri: buddy-core unit, property and integration tests, strict provenance",
            run: miri_core,
        },
        Pass {
            name: "miri: buddy-mmap tests, strict provenance (system calls stubbed under Miri)",
            run: miri_mmap,
        },
        Pass {
            name: "miri: buddy-std, selected tests (a fresh allocator, growth in place, the limit)",
            run: miri_std,
        },
        Pass {
            name: "fuzz: buddy-core op sequences vs shadow model, 60 s (cargo fuzz)",
            run: || crate::fuzz::fuzz(60),
        },
        Pass {
            name: "firmware size: .text of a minimal buddy-core heap on thumbv7em-none-eabihf",
            run: firmware_size,
        },
        Pass {
            name: "asan: buddy-core, buddy-mmap, buddy-std tests under AddressSanitizer (buddy-std's asan feature on)",
            run: asan_tests,
        },
        Pass {
            name: "asan: a user's use after free and overflow into a free block are reported (feature asan)",
            run: asan_misuse,
        },
        Pass {
            name: "valgrind: memcheck over the buddy-core, buddy-mmap, buddy-std test binaries",
            run: valgrind_tests,
        },
        Pass {
            name: "valgrind: a user's use after free and overflow into a free block are reported (feature memcheck)",
            run: valgrind_misuse,
        },
    ]
}

/// `cargo +nightly <args>`, from the project root.
fn nightly(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(project_root());
    // A `cargo` started by `cargo xtask` would inherit the stable toolchain through these.
    c.env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    c.arg("+nightly").args(args);
    c
}

fn works(mut c: Command) -> bool {
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.status().is_ok_and(|s| s.success())
}

fn status(c: &mut Command) -> Outcome {
    eprintln!("$ {}", describe(c));
    match c.status() {
        Ok(s) if s.success() => Outcome::Passed,
        Ok(s) => Outcome::Failed(format!("{} exited with {s}", describe(c))),
        Err(e) => Outcome::Failed(format!("cannot start {}: {e}", describe(c))),
    }
}

/// Miri runs a program on one core, so buddy-core's test targets run as separate `cargo miri
/// test` processes, [`MIRI_JOBS`] at a time, after one build: the longest two (`model`,
/// `basics`) start first and take about the same time. Every `tests/*.rs` file is run, found
/// on disk, so a new one cannot be missed.
fn miri_core() -> Outcome {
    if !works(nightly(&["miri", "--version"])) {
        return Outcome::Skipped(
            "no nightly Miri (`rustup component add --toolchain nightly miri rust-src`; .ci/run does)".into(),
        );
    }
    let start = Instant::now();
    // Tests leak their regions on purpose ('static memory, as firmware has it).
    let flags = "-Zmiri-strict-provenance -Zmiri-ignore-leaks";
    let miri = |args: &[&str]| {
        let mut c = nightly(&["miri", "test", "-p", "buddy-core"]);
        c.args(args).env("MIRIFLAGS", flags);
        c
    };
    if let Outcome::Failed(e) = status(&mut miri(&["--no-run"])) {
        return timed(start, Outcome::Failed(e));
    }
    let mut tests: Vec<String> = match std::fs::read_dir(project_root().join("buddy-core/tests")) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".rs").map(str::to_string)
            })
            .collect(),
        Err(e) => return timed(start, Outcome::Failed(format!("buddy-core/tests: {e}"))),
    };
    // Longest first, so that the two that take most of the time run side by side.
    tests.sort_by_key(|t| (t != "model", t != "basics", t.clone()));
    let mut jobs: Vec<(String, Command)> = tests
        .iter()
        .map(|t| (format!("tests/{t}.rs"), miri(&["--test", t])))
        .collect();
    jobs.push(("unit tests".into(), miri(&["--lib"])));
    jobs.push(("doctests".into(), miri(&["--doc"])));
    for (name, c) in &jobs {
        eprintln!("  {name}: $ {}", describe(c));
    }
    let failed = run_jobs(jobs, MIRI_JOBS, "passed");
    timed(
        start,
        if failed.is_empty() {
            Outcome::Passed
        } else {
            Outcome::Failed(format!("under Miri: {}", failed.join(", ")))
        },
    )
}

/// `cargo miri test` processes run at once by [`miri_core`] (one per core on CI's 2 cores).
const MIRI_JOBS: usize = 2;

fn outcome(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    }
}

/// Prints how long a pass took, and passes its outcome on.
fn timed(start: Instant, outcome: Outcome) -> Outcome {
    eprintln!("(took {:.0?})", start.elapsed());
    outcome
}

fn no_nightly() -> Option<Outcome> {
    (!works(nightly(&["--version"]))).then(|| {
        Outcome::Skipped("no nightly toolchain (`rustup toolchain install nightly`)".into())
    })
}

// ----- Miri -----

fn miri_mmap() -> Outcome {
    if !works(nightly(&["miri", "--version"])) {
        return Outcome::Skipped(
            "no nightly Miri (`rustup component add --toolchain nightly miri rust-src`; .ci/run does)".into(),
        );
    }
    let start = Instant::now();
    // Under Miri `SystemOs` takes memory from the system allocator and `purge` writes zeros
    // (see buddy-mmap's `os.rs`); the /proc tests are left out (`cfg(not(miri))`).
    let mut c = nightly(&["miri", "test", "-p", "buddy-mmap"]);
    c.env("MIRIFLAGS", "-Zmiri-strict-provenance");
    timed(start, status(&mut c))
}

/// The buddy-std tests Miri runs: whole-chunk tests write megabytes byte by byte, minutes
/// each under Miri, so only these. The first found `free` of a foreign pointer computing an
/// address from a null directory on a fresh allocator.
const MIRI_STD_TESTS: &[&str] = &[
    "a_foreign_pointer_is_refused_before_the_first_allocation",
    "realloc_grows_in_place_into_a_buddy_just_freed",
    "at_the_limit_realloc_grows_into_a_buddy_waiting_in_the_cache",
];

fn miri_std() -> Outcome {
    if !works(nightly(&["miri", "--version"])) {
        return Outcome::Skipped(
            "no nightly Miri (`rustup component add --toolchain nightly miri rust-src`; .ci/run does)".into(),
        );
    }
    let start = Instant::now();
    let mut c = nightly(&["miri", "test", "-p", "buddy-std", "--test", "api", "--"]);
    c.args(MIRI_STD_TESTS).arg("--exact");
    c.env("MIRIFLAGS", "-Zmiri-strict-provenance");
    timed(start, status(&mut c))
}

// ----- firmware size -----

/// The firmware-style program (`buddy-core/firmware`, a workspace of its own).
const FIRMWARE_TARGET: &str = "thumbv7em-none-eabihf";

fn firmware_size() -> Outcome {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !installed.lines().any(|t| t.trim() == FIRMWARE_TARGET) {
        return Outcome::Skipped(format!(
            "target {FIRMWARE_TARGET} not installed (`rustup target add {FIRMWARE_TARGET}`; .ci/run does)"
        ));
    }
    let start = Instant::now();
    let root = project_root();
    let target_dir = root.join("target").join("firmware");
    let mut c = cargo();
    c.env("CARGO_TARGET_DIR", &target_dir).args([
        "build",
        "--release",
        "--manifest-path",
        "buddy-core/firmware/Cargo.toml",
        "--target",
        FIRMWARE_TARGET,
    ]);
    if let Outcome::Failed(e) = status(&mut c) {
        return timed(start, Outcome::Failed(e));
    }
    let elf = target_dir
        .join(FIRMWARE_TARGET)
        .join("release")
        .join("firmware");
    let sections = match std::fs::read(&elf)
        .map_err(|e| format!("cannot read {}: {e}", elf.display()))
        .and_then(|bytes| elf_sections(&bytes))
    {
        Ok(s) => s,
        Err(e) => return timed(start, Outcome::Failed(e)),
    };
    let size = |name: &str| {
        sections
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s)
            .sum::<u64>()
    };
    let text = size(".text");
    eprintln!(
        "firmware ({FIRMWARE_TARGET}, opt-level \"s\", LTO): .text {text} bytes, .rodata {} bytes, \
         .data {} bytes, .bss {} bytes (the 16 KiB arena and the static Heap)",
        size(".rodata"),
        size(".data"),
        size(".bss"),
    );
    if text == 0 {
        return timed(start, Outcome::Failed("the firmware has no .text".into()));
    }
    if size(".data") != 0 {
        // `Heap::new()` is all zero bits so that a `static Heap` costs no flash image.
        return timed(
            start,
            Outcome::Failed(format!(
                "{} bytes of .data: a static Heap::new() should be all zeros (.bss)",
                size(".data")
            )),
        );
    }
    timed(start, Outcome::Passed)
}

/// The name and size of every section of an ELF file (32- or 64-bit, little-endian), from its
/// section headers.
fn elf_sections(bytes: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let read = |at: usize, n: usize| -> Result<u64, String> {
        let b = bytes
            .get(at..at + n)
            .ok_or_else(|| format!("ELF file truncated at byte {at}"))?;
        Ok(b.iter().rev().fold(0, |acc, &x| acc << 8 | u64::from(x)))
    };
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) || bytes.get(5) != Some(&1) {
        return Err("not a little-endian ELF file".into());
    }
    let wide = match bytes.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF class".into()),
    };
    // (e_shoff, e_shentsize, e_shnum, e_shstrndx) and, in a section header, (sh_offset,
    // sh_size), as offsets and widths.
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            read(0x28, 8)?,
            read(0x3A, 2)?,
            read(0x3C, 2)?,
            read(0x3E, 2)?,
        )
    } else {
        (
            read(0x20, 4)?,
            read(0x2E, 2)?,
            read(0x30, 2)?,
            read(0x32, 2)?,
        )
    };
    let (off_at, size_at, w) = if wide {
        (0x18, 0x20, 8)
    } else {
        (0x10, 0x14, 4)
    };
    let header = |i: u64| (shoff + i * shentsize) as usize;
    let strtab = read(header(shstrndx) + off_at, w)? as usize;
    let mut out = Vec::new();
    for i in 0..shnum {
        let h = header(i);
        let name_at = strtab + read(h, 4)? as usize;
        let name = bytes
            .get(name_at..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .ok_or("section name out of the file")?;
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            read(h + size_at, w)?,
        ));
    }
    Ok(out)
}

// ----- AddressSanitizer -----

/// The host target, named explicitly so that `-Zsanitizer` applies to the tests only, not
/// to build scripts and proc macros.
const HOST: &str = "x86_64-unknown-linux-gnu";

/// `cargo +nightly <args>` with AddressSanitizer, in `target/asan`.
fn asan_cargo(args: &[&str]) -> Command {
    let mut c = nightly(args);
    c.env("RUSTFLAGS", "-Zsanitizer=address")
        .env(
            "CARGO_TARGET_DIR",
            project_root().join("target").join("asan"),
        )
        .args(["--target", HOST]);
    c
}

fn asan_available() -> Result<(), Outcome> {
    if let Some(skip) = no_nightly() {
        return Err(skip);
    }
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err(Outcome::Skipped(
            "AddressSanitizer passes run on x86_64 Linux only".into(),
        ));
    }
    Ok(())
}

fn asan_tests() -> Outcome {
    if let Err(skip) = asan_available() {
        return skip;
    }
    let start = Instant::now();
    // Unit and integration tests (doctests are built without the flags). buddy-std's `asan`
    // feature poisons free blocks, so its own tests also check that the poisoning never
    // hits a live block (a race between two threads' marks would).
    let mut c = asan_cargo(&[
        "test",
        "-p",
        "buddy-core",
        "-p",
        "buddy-mmap",
        "-p",
        "buddy-std",
        "--features",
        "buddy-std/asan",
        "--lib",
        "--tests",
        "--no-fail-fast",
    ]);
    // Tests leak their regions on purpose ('static memory, as firmware has it); fewer
    // property-test cases under the sanitizer's slowdown.
    c.env("ASAN_OPTIONS", "detect_leaks=0")
        .env("PROPTEST_CASES", "64");
    timed(start, status(&mut c))
}

/// What a run of the misuse example must end with.
struct Verdict {
    /// The mode (`buddy-std/examples/misuse.rs`).
    mode: &'static str,
    /// Whether the tool must report an error.
    error: bool,
    /// Text the tool's report must contain when it does.
    report: &'static str,
}

/// Runs `run(mode)` for each verdict and checks it; `Err` says what went wrong.
fn check_misuse(verdicts: &[Verdict], run: impl Fn(&str) -> Command) -> Result<(), String> {
    for v in verdicts {
        let mut c = run(v.mode);
        eprintln!("$ {}", describe(&c));
        let Output { status, stderr, .. } = c
            .output()
            .map_err(|e| format!("cannot start {}: {e}", describe(&c)))?;
        let stderr = String::from_utf8_lossy(&stderr);
        let found = stderr.lines().find(|l| l.contains(v.report));
        match (v.error, status.success(), found) {
            (false, true, _) => eprintln!("  {}: no error reported, as expected", v.mode),
            (true, false, Some(line)) => {
                eprintln!("  {}: reported, as expected: {}", v.mode, line.trim())
            }
            (false, _, _) => {
                return Err(format!(
                    "misuse {}: correct use reported ({status}):\n{stderr}",
                    v.mode
                ));
            }
            (true, _, _) => {
                return Err(format!(
                    "misuse {}: the bug was not reported as `{}` ({status}):\n{stderr}",
                    v.mode, v.report
                ));
            }
        }
    }
    Ok(())
}

fn asan_misuse() -> Outcome {
    if let Err(skip) = asan_available() {
        return skip;
    }
    let start = Instant::now();
    let mut build = asan_cargo(&[
        "build",
        "-p",
        "buddy-std",
        "--example",
        "misuse",
        "--features",
        "asan",
    ]);
    if let Outcome::Failed(e) = status(&mut build) {
        return timed(start, Outcome::Failed(e));
    }
    let exe = project_root()
        .join("target/asan")
        .join(HOST)
        .join("debug/examples/misuse");
    let verdicts = [
        Verdict {
            mode: "clean",
            error: false,
            report: "",
        },
        Verdict {
            mode: "use-after-free",
            error: true,
            report: "ERROR: AddressSanitizer: use-after-poison",
        },
        Verdict {
            mode: "overflow",
            error: true,
            report: "ERROR: AddressSanitizer: use-after-poison",
        },
    ];
    let r = check_misuse(&verdicts, |mode| {
        let mut c = Command::new(&exe);
        c.arg(mode);
        c
    });
    timed(start, outcome(r))
}

// ----- valgrind -----

/// `valgrind` as every pass runs it: memcheck, an error (definite leaks included) makes the
/// run exit with 1. `options` go to valgrind, after the common ones.
fn valgrind(exe: &Path, options: &[&str]) -> Command {
    let mut c = Command::new("valgrind");
    c.args([
        "--error-exitcode=1",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "-q",
    ])
    .args(options)
    .arg(exe);
    c
}

fn valgrind_available() -> Result<(), Outcome> {
    if !have("valgrind", "--version") {
        return Err(Outcome::Skipped(
            "valgrind not installed (`apt-get install valgrind`; .ci/run does)".into(),
        ));
    }
    Ok(())
}

/// Test binaries, or single tests (`binary::test`), left out under valgrind, with the reason.
const NOT_UNDER_VALGRIND: [(&str, &str); 3] = [
    (
        "rss",
        "measures the process's resident set, which valgrind's own memory swamps",
    ),
    (
        "region::reserve_of_an_absurd_size_reports_enomem_and_the_size",
        "valgrind answers a 4 EiB mmap with EINVAL where Linux says ENOMEM",
    ),
    (
        "no_alloc::no_operation_allocates_whether_it_succeeds_or_fails",
        "it prints the 4 EiB mmap's errno, EINVAL under valgrind, ENOMEM under Linux",
    ),
];

/// Single tests (`binary::test`) run under valgrind in a process of their own, with the reason;
/// the binary's run skips them.
const ALONE_UNDER_VALGRIND: [(&str, &str); 1] = [(
    "api::the_forking_thread_allocates_between_prepare_and_release_in_parent_and_child",
    "it forks: valgrind checks the child for leaks too, and finds the blocks of the other \
     tests' threads, which do not exist in the child, definitely lost (952 bytes in 11 blocks, \
     std's thread handles and thread-locals; the child exited 1)",
)];

/// Binaries run at once (valgrind runs a program's threads one at a time).
const VALGRIND_JOBS: usize = 2;

fn valgrind_tests() -> Outcome {
    if let Err(skip) = valgrind_available() {
        return skip;
    }
    let start = Instant::now();
    let tests = match test_executables() {
        Ok(e) if e.is_empty() => {
            return timed(start, Outcome::Failed("no test binaries found".into()));
        }
        Ok(e) => e,
        Err(e) => return timed(start, Outcome::Failed(e)),
    };
    let mut jobs = Vec::new();
    for (package, exe) in tests {
        let file = exe.file_name().map(|n| n.to_string_lossy().into_owned());
        let file = file.unwrap_or_default();
        let stem = file
            .rsplit_once('-')
            .map_or(file.clone(), |(s, _)| s.to_string());
        if let Some((_, why)) = NOT_UNDER_VALGRIND.iter().find(|(what, _)| *what == stem) {
            eprintln!("  {stem}: left out ({why})");
            continue;
        }
        // buddy-core cannot leak (it has no `alloc`); its tests leak their regions on purpose
        // ('static memory, as firmware has it), as the Miri pass allows.
        let options: &[&str] = if package == "buddy-core" {
            &["--leak-check=no"]
        } else {
            &[]
        };
        let command = || {
            let mut c = valgrind(&exe, options);
            // Fewer property-test cases, and no backtrace capture, under valgrind's slowdown.
            c.env("PROPTEST_CASES", "8").env("RUST_BACKTRACE", "0");
            c
        };
        let mut c = command();
        for (what, why) in NOT_UNDER_VALGRIND {
            if let Some((bin, test)) = what.split_once("::")
                && bin == stem
            {
                c.args(["--skip", test]);
                eprintln!("  {stem}: {test} left out ({why})");
            }
        }
        for (what, why) in ALONE_UNDER_VALGRIND {
            if let Some((bin, test)) = what.split_once("::")
                && bin == stem
            {
                c.args(["--skip", test]);
                let mut alone = command();
                alone.args(["--exact", test]);
                eprintln!("  {stem}: {test} runs alone ({why})");
                jobs.push((format!("{stem}::{test}"), alone));
            }
        }
        jobs.push((stem, c));
    }
    // buddy-std's binaries come last in `test_executables` and take longest (`scribble`):
    // start from the end.
    jobs.reverse();
    let failed = run_jobs(jobs, VALGRIND_JOBS, "clean");
    timed(
        start,
        if failed.is_empty() {
            Outcome::Passed
        } else {
            Outcome::Failed(format!("under valgrind: {}", failed.join(", ")))
        },
    )
}

/// Runs `jobs` (name, command), `n` at a time, each with its output captured, and prints one
/// line per job as it ends: `name: <ok> (time)` and its `test result` lines, or on failure the
/// command and its whole output. Jobs start in the order given. Returns the failures.
fn run_jobs(jobs: Vec<(String, Command)>, n: usize, ok: &str) -> Vec<String> {
    let jobs = std::sync::Mutex::new(std::collections::VecDeque::from(jobs));
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                loop {
                    let Some((name, mut c)) = jobs.lock().map(|mut j| j.pop_front()).ok().flatten()
                    else {
                        break;
                    };
                    let t = Instant::now();
                    let line = describe(&c);
                    let result = c.output();
                    let elapsed = t.elapsed();
                    match result {
                        Ok(out) if out.status.success() => {
                            let stdout = String::from_utf8_lossy(&out.stdout);
                            let results: Vec<&str> = stdout
                                .lines()
                                .filter(|l| l.starts_with("test result:"))
                                .collect();
                            eprintln!("  {name}: {ok} ({elapsed:.0?})");
                            for r in results {
                                eprintln!("    {r}");
                            }
                        }
                        Ok(out) => {
                            eprintln!("$ {line}");
                            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
                            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
                            eprintln!("  {name}: FAILED ({}, {elapsed:.0?})", out.status);
                            if let Ok(mut f) = failed.lock() {
                                f.push(format!("{name} ({})", out.status));
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.push(format!("cannot start {line}: {e}"));
                            }
                        }
                    }
                }
            });
        }
    });
    failed.into_inner().unwrap_or_default()
}

/// Builds the unit and integration tests of buddy-core, buddy-mmap and buddy-std (as the
/// workspace pass does) and returns each executable with its package, from cargo's JSON
/// messages.
fn test_executables() -> Result<Vec<(String, PathBuf)>, String> {
    let mut c = cargo();
    c.args([
        "test",
        "--no-run",
        "--message-format=json",
        "-p",
        "buddy-core",
        "-p",
        "buddy-mmap",
        "-p",
        "buddy-std",
        "--lib",
        "--tests",
    ]);
    eprintln!("$ {}", describe(&c));
    let out = c
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", describe(&c)))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", describe(&c), out.status));
    }
    // One JSON object per line; test artifacts carry `"test":true` in their profile, the
    // path of the executable, and the package (`"package_id":"path+file:///…/name#0.1.0"`
    // or `"…#name@0.1.0"`).
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(key)? + key.len();
        let rest = &line[start..];
        Some(rest[..rest.find('"')?].to_string())
    };
    let mut exes: Vec<(String, PathBuf)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(r#""test":true"#))
        .filter_map(|l| {
            let exe = field(l, r#""executable":""#)?;
            let id = field(l, r#""package_id":""#)?;
            let package = ["buddy-core", "buddy-mmap", "buddy-std"]
                .into_iter()
                .find(|p| id.contains(&format!("/{p}#")) || id.contains(&format!("#{p}@")))?;
            Some((package.to_string(), PathBuf::from(exe)))
        })
        .collect();
    exes.sort();
    exes.dedup();
    Ok(exes)
}

fn valgrind_misuse() -> Outcome {
    if let Err(skip) = valgrind_available() {
        return skip;
    }
    let start = Instant::now();
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "buddy-std",
        "--example",
        "misuse",
        "--features",
        "memcheck",
    ]);
    if let Outcome::Failed(e) = status(&mut build) {
        return timed(start, Outcome::Failed(e));
    }
    let exe = project_root().join("target/debug/examples/misuse");
    let verdicts = [
        Verdict {
            mode: "clean",
            error: false,
            report: "",
        },
        Verdict {
            mode: "use-after-free",
            error: true,
            report: "Invalid read",
        },
        Verdict {
            mode: "overflow",
            error: true,
            report: "Invalid write",
        },
    ];
    let r = check_misuse(&verdicts, |mode| {
        let mut c = valgrind(&exe, &[]);
        c.arg(mode);
        c
    });
    timed(start, outcome(r))
}
