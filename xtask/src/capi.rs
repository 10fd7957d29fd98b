//! The C face (issue 5): the passes of `cargo xtask test` that build the C libraries and run
//! C and real programs against them, and `cargo xtask bench --preload`.
//!
//! - **C ABI**: the README's C example (taken from the README as it is) and
//!   `buddy-std/tests/c/capi_test.c`, compiled with the system `cc` against
//!   `buddy-std/include/buddy_alloc.h` and linked with `libbuddy_alloc.a`, then with
//!   `libbuddy_alloc.so`.
//! - **Drop-in malloc**: `buddy-std/tests/c/malloc_test.c`, an ordinary C program, run with
//!   `LD_PRELOAD=libbuddy_malloc.so`.
//! - **Real programs** nobody here wrote (`python3`, `sqlite3`, `git`, `perl`, and the
//!   `memcached` and PostgreSQL servers, driven by `python3`), each run twice on the same
//!   work, without and with the preload: exit status, stdout and stderr must be byte for byte
//!   the same, and the library's exit report (`BUDDY_MALLOC_STATS`) must show that every
//!   process of the preloaded run used buddy and never freed a pointer buddy did not hand out
//!   (and, for the servers, that the server's own process ran on it). A missing program skips
//!   its pass with one line.
//!
//! The tests use the debug build of the libraries (debug assertions on inside the allocator);
//! the bench uses the release build. Every program runs under a time limit, so a deadlock
//! fails the pass instead of hanging the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::test::{Outcome, Pass, TARGET_32};
use crate::util::{cargo, describe, have, project_root, run as sh};

/// The passes, in order.
pub fn passes() -> Vec<Pass> {
    vec![
        Pass {
            name: "C ABI: README example and capi_test.c with cc, static and shared libbuddy_alloc",
            run: c_abi,
        },
        Pass {
            name: "drop-in malloc: malloc_test.c under LD_PRELOAD (C semantics, threads, fork)",
            run: malloc_c,
        },
        Pass {
            name: "C ABI and drop-in malloc on 32-bit: capi_test.c and malloc_test.c with cc -m32, i686 libraries",
            run: c_32bit,
        },
        Pass {
            name: "drop-in malloc never reaches dynamic TLS (__tls_get_addr, watched with gdb)",
            run: no_dynamic_tls,
        },
        Pass {
            name: "LD_PRELOAD python3: threads, a subprocess, 300 MB allocated and freed",
            run: || preload_pass(&PYTHON),
        },
        Pass {
            name: "LD_PRELOAD sqlite3: build a 200k-row database, index and query it",
            run: || preload_pass(&SQLITE),
        },
        Pass {
            name: "LD_PRELOAD git: init, commits, branches, merge, log, gc, fsck",
            run: || preload_pass(&GIT),
        },
        Pass {
            name: "LD_PRELOAD perl: hashes, sorting, regexes, sprintf",
            run: || preload_pass(&PERL),
        },
        Pass {
            name: "LD_PRELOAD memcached: 4 worker threads serving 8 clients over loopback, every value checked",
            run: || preload_pass(&MEMCACHED),
        },
        Pass {
            name: "LD_PRELOAD PostgreSQL: initdb, a server forking a backend per connection, psql and pgbench",
            run: || preload_pass(&POSTGRES),
        },
    ]
}

// ----- building -----

/// Where cargo puts its output (`$CARGO_TARGET_DIR` or `target/`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// Builds `libbuddy_alloc.{a,so}` and `libbuddy_malloc.so`; returns their directory.
///
/// One package per cargo run, as a user would build it: built together, cargo would unify
/// buddy-std's features and `libbuddy_malloc.so` would carry the `buddy_*` functions too.
fn build_libs(release: bool) -> Result<PathBuf, String> {
    for package in ["buddy-capi", "buddy-malloc"] {
        let mut c = cargo();
        c.args(["build", "-p", package]);
        if release {
            c.arg("--release");
        }
        sh(&mut c)?;
    }
    Ok(target_dir().join(if release { "release" } else { "debug" }))
}

/// A scratch directory of ours under the target directory, emptied.
fn scratch(name: &str) -> Result<PathBuf, String> {
    let dir = target_dir().join("capi").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot empty {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn c_sources() -> PathBuf {
    project_root().join("buddy-std").join("tests").join("c")
}

fn include_dir() -> PathBuf {
    project_root().join("buddy-std").join("include")
}

/// `cc` with the warnings we hold the tests to. `-fno-builtin`: the compiler must not fold
/// `malloc(SIZE_MAX) == NULL` or a `calloc` overflow itself; the library has to answer.
fn cc(source: &Path, out: &Path) -> Command {
    let mut c = Command::new("cc");
    c.args(["-std=c11", "-O1", "-g", "-fno-builtin", "-pthread"])
        .args(["-Wall", "-Wextra", "-Werror", "-Wno-alloc-size-larger-than"])
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .arg("-o")
        .arg(out);
    c
}

/// Links against `libbuddy_alloc.a` (and what Rust's std needs from the system).
fn link_static(c: &mut Command, libs: &Path) {
    c.arg(libs.join("libbuddy_alloc.a")).args(["-ldl", "-lm"]);
}

/// Links against `libbuddy_alloc.so`, found at run time through an rpath.
fn link_shared(c: &mut Command, libs: &Path) {
    c.arg("-L")
        .arg(libs)
        .arg("-lbuddy_alloc")
        .arg(format!("-Wl,-rpath,{}", libs.display()));
}

// ----- running -----

/// Runs `cmd` with its output captured, killing it after `limit`.
fn run_limited(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    eprintln!("$ {}", describe(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    // Read both pipes while waiting, so a chatty program cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = std::io::Read::read_to_end(o, &mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = std::io::Read::read_to_end(e, &mut buf);
        }
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {} s (deadlock?): killed",
                    describe(cmd),
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {}: {e}", describe(cmd))),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `cmd` and requires success; returns its stdout.
fn run_ok(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let out = run_limited(cmd, limit)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stdout}{stderr}");
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{} failed: {}", describe(cmd), out.status))
    }
}

fn outcome(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    }
}

fn no_cc() -> Option<Outcome> {
    (!have("cc", "--version"))
        .then(|| Outcome::Skipped("no C compiler `cc` (apt-get install gcc; .ci/run does)".into()))
}

// ----- the C ABI -----

/// The README's C example and the output it shows, taken from the section `## C`: the first
/// ` ```c ` block and the ` ```text ` block after it.
fn readme_example() -> Result<(String, String), String> {
    let path = project_root().join("README.md");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("C\n"))
        .ok_or("README.md has no `## C` section")?;
    let block = |after: &str, lang: &str| -> Option<(String, usize)> {
        let fence = format!("\n```{lang}\n");
        let start = after.find(&fence)? + fence.len();
        let len = after[start..].find("\n```")?;
        Some((after[start..start + len + 1].to_string(), start + len))
    };
    let (code, end) = block(section, "c").ok_or("the C section has no ```c block")?;
    let (output, _) = block(&section[end..], "text")
        .ok_or("the C section shows no ```text output after its example")?;
    Ok((code, output))
}

fn c_abi() -> Outcome {
    if let Some(skip) = no_cc() {
        return skip;
    }
    outcome(c_abi_run())
}

fn c_abi_run() -> Result<(), String> {
    let libs = build_libs(false)?;
    let dir = scratch("abi")?;
    let limit = Duration::from_secs(300);

    // The README's example, verbatim, must print what the README says it prints.
    let (code, expected) = readme_example()?;
    let example = dir.join("readme_example.c");
    std::fs::write(&example, &code).map_err(|e| format!("cannot write the example: {e}"))?;
    for (kind, link) in [
        ("static", link_static as fn(&mut Command, &Path)),
        ("shared", link_shared),
    ] {
        let exe = dir.join(format!("readme_example_{kind}"));
        let mut c = cc(&example, &exe);
        link(&mut c, &libs);
        sh(&mut c)?;
        let out = run_ok(&mut Command::new(&exe), limit)?;
        if out != expected {
            return Err(format!(
                "the README's C example ({kind}) printed {out:?}, the README says {expected:?}"
            ));
        }
    }

    // The whole C ABI, against each library.
    let source = c_sources().join("capi_test.c");
    for (kind, link) in [
        ("static", link_static as fn(&mut Command, &Path)),
        ("shared", link_shared),
    ] {
        let exe = dir.join(format!("capi_test_{kind}"));
        let mut c = cc(&source, &exe);
        link(&mut c, &libs);
        sh(&mut c)?;
        let out = run_ok(&mut Command::new(&exe), limit)?;
        if !out.starts_with("capi_test: all checks passed") {
            return Err(format!("capi_test ({kind}) printed {out:?}"));
        }
    }
    // The shared library exports the C ABI and nothing of malloc's.
    check_exports(
        &libs.join("libbuddy_alloc.so"),
        &["buddy_alloc", "buddy_free"],
        &["malloc", "free"],
    )
}

/// With `nm`, if installed: `lib` defines every `wanted` symbol and none of `unwanted`.
fn check_exports(lib: &Path, wanted: &[&str], unwanted: &[&str]) -> Result<(), String> {
    let Ok(out) = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib)
        .output()
    else {
        eprintln!("note: no `nm`, exports of {} not checked", lib.display());
        return Ok(());
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let defined: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for w in wanted {
        if !defined.contains(w) {
            return Err(format!("{} does not export {w}", lib.display()));
        }
    }
    for u in unwanted {
        if defined.contains(u) {
            return Err(format!("{} exports {u}", lib.display()));
        }
    }
    Ok(())
}

// ----- the drop-in malloc, from C -----

fn malloc_c() -> Outcome {
    if let Some(skip) = no_cc() {
        return skip;
    }
    outcome(malloc_c_run())
}

fn malloc_c_run() -> Result<(), String> {
    let libs = build_libs(false)?;
    let lib = libs.join("libbuddy_malloc.so");
    check_exports(
        &lib,
        &[
            "malloc",
            "free",
            "calloc",
            "realloc",
            "posix_memalign",
            "aligned_alloc",
            "memalign",
            "valloc",
            "pvalloc",
            "malloc_usable_size",
        ],
        &["buddy_alloc"],
    )?;
    let dir = scratch("malloc")?;
    let exe = dir.join("malloc_test");
    let mut c = cc(&c_sources().join("malloc_test.c"), &exe);
    c.arg("-ldl");
    sh(&mut c)?;
    let out = run_ok(
        Command::new(&exe).env("LD_PRELOAD", &lib),
        Duration::from_secs(300),
    )?;
    if !out.starts_with("malloc_test: all checks passed") {
        return Err(format!("malloc_test printed {out:?}"));
    }
    Ok(())
}

// ----- the C face on a 32-bit target -----

fn c_32bit() -> Outcome {
    if let Some(skip) = no_cc().or_else(crate::test::no_32bit) {
        return skip;
    }
    outcome(c_32bit_run())
}

/// `capi_test.c` linked with the i686 `libbuddy_alloc.a`, and `malloc_test.c` under the
/// i686 `libbuddy_malloc.so`: the C face where `size_t` and pointers are 4 bytes (the
/// header's layout checks, size overflow in `calloc`, alignments past the address space).
fn c_32bit_run() -> Result<(), String> {
    for package in ["buddy-capi", "buddy-malloc"] {
        sh(cargo().args(["build", "-p", package, "--target", TARGET_32]))?;
    }
    let libs = target_dir().join(TARGET_32).join("debug");
    let dir = scratch("c32")?;
    let limit = Duration::from_secs(300);

    let exe = dir.join("capi_test");
    let mut c = cc(&c_sources().join("capi_test.c"), &exe);
    c.arg("-m32");
    link_static(&mut c, &libs);
    sh(&mut c)?;
    let out = run_ok(&mut Command::new(&exe), limit)?;
    if !out.starts_with("capi_test: all checks passed") {
        return Err(format!("capi_test (32-bit) printed {out:?}"));
    }

    let exe = dir.join("malloc_test");
    let mut c = cc(&c_sources().join("malloc_test.c"), &exe);
    c.args(["-m32", "-ldl"]);
    sh(&mut c)?;
    let lib = libs.join("libbuddy_malloc.so");
    let out = run_ok(Command::new(&exe).env("LD_PRELOAD", &lib), limit)?;
    if !out.starts_with("malloc_test: all checks passed") {
        return Err(format!("malloc_test (32-bit) printed {out:?}"));
    }
    Ok(())
}

// ----- no dynamic TLS on malloc's path -----

/// `tls_probe.c` under the preload, with a gdb breakpoint on `__tls_get_addr` set once `main`
/// is reached: any hit (a backtrace) fails the pass. glibc's `__tls_get_addr` may call
/// `malloc` itself, so the drop-in malloc must not use dynamic TLS (`ShardBy::Stack`).
fn no_dynamic_tls() -> Outcome {
    if let Some(skip) = no_cc() {
        return skip;
    }
    if !have("gdb", "--version") {
        return Outcome::Skipped("no `gdb` (apt-get install gdb; .ci/run does)".into());
    }
    match no_dynamic_tls_run() {
        Ok(None) => Outcome::Passed,
        Ok(Some(why)) => Outcome::Skipped(why),
        Err(e) => Outcome::Failed(e),
    }
}

fn no_dynamic_tls_run() -> Result<Option<String>, String> {
    let libs = build_libs(false)?;
    let dir = scratch("tls")?;
    let exe = dir.join("tls_probe");
    sh(&mut cc(&c_sources().join("tls_probe.c"), &exe))?;
    let script = dir.join("gdb.cmd");
    std::fs::write(
        &script,
        format!(
            "set pagination off\nset environment LD_PRELOAD {}\nbreak main\nrun\n\
             break __tls_get_addr\ncommands\nbt 4\ncontinue\nend\ncontinue\n",
            libs.join("libbuddy_malloc.so").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut gdb = Command::new("gdb");
    gdb.args(["-q", "-batch", "-x"]).arg(&script).arg(&exe);
    let out = run_limited(&mut gdb, Duration::from_secs(300))?;
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    eprint!("{text}");
    if !text.contains("exited normally") {
        if text.contains("ptrace") {
            return Ok(Some("gdb cannot trace here (ptrace not permitted)".into()));
        }
        return Err("the probe did not run to its end under gdb".into());
    }
    if let Some(hit) = text.lines().find(|l| l.starts_with("#1 ")) {
        return Err(format!("malloc's path reached __tls_get_addr: {hit}"));
    }
    Ok(None)
}

// ----- real programs under LD_PRELOAD -----

/// A real program's work: commands run in a fresh directory, the same for both runs.
struct Workload {
    /// The program whose presence decides whether the pass runs.
    program: &'static str,
    /// What else the commands need, checked before they run: `None` when it is all there,
    /// else the reason to skip the pass.
    also: fn() -> Option<String>,
    /// The commands, in order; their outputs are compared one by one.
    commands: fn(&Path) -> Result<Vec<Command>, String>,
    /// Fewest allocations the preloaded run must have made through buddy, all processes
    /// together (proof that the work really ran on it).
    min_allocations: usize,
    /// A process that must itself have run on buddy: its name, the file (in the work
    /// directory) where the commands leave its pid, and the fewest allocations its report
    /// line must show. For a server started by a client script, whose own process would
    /// pass the total.
    process: Option<(&'static str, &'static str, usize)>,
}

/// The result of one command, to compare.
#[derive(PartialEq)]
struct Run {
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// An exit report line of `libbuddy_malloc.so`: allocations and bad frees.
fn parse_report(line: &str) -> Option<(usize, usize)> {
    let num = |what: &str| -> Option<usize> {
        let end = line.find(what)?;
        line[..end]
            .trim_end()
            .rsplit([' ', ','])
            .next()?
            .parse()
            .ok()
    };
    Some((num(" allocations")?, num(" bad frees")?))
}

/// Runs the workload's commands in `dir`, with `preload` (a library path) or not.
fn run_workload(
    w: &Workload,
    dir: &Path,
    preload: Option<(&Path, &Path)>,
) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    for mut cmd in (w.commands)(dir)? {
        cmd.current_dir(dir);
        if let Some((lib, report)) = preload {
            cmd.env("LD_PRELOAD", lib).env("BUDDY_MALLOC_STATS", report);
        }
        let out = run_limited(&mut cmd, Duration::from_secs(600))?;
        runs.push(Run {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        });
    }
    Ok(runs)
}

/// The first of `programs` that does not answer `--version`, as the reason to skip a pass.
fn missing(programs: &[&str]) -> Option<String> {
    let absent = programs.iter().find(|p| !have(p, "--version"))?;
    Some(format!(
        "`{absent}` not found (.ci/run installs it with apt-get)"
    ))
}

fn preload_pass(w: &Workload) -> Outcome {
    if let Some(why) = missing(&[w.program]).or_else(w.also) {
        return Outcome::Skipped(why);
    }
    outcome(preload_run(w))
}

fn preload_run(w: &Workload) -> Result<(), String> {
    let libs = build_libs(false)?;
    let lib = libs.join("libbuddy_malloc.so");
    let plain_dir = scratch(&format!("{}-glibc", w.program))?;
    let buddy_dir = scratch(&format!("{}-buddy", w.program))?;
    let report = target_dir()
        .join("capi")
        .join(format!("{}-report.txt", w.program));
    let _ = std::fs::remove_file(&report);
    // Created here, writable by all: a workload may run processes as another user (the
    // PostgreSQL server refuses root), and each process appends its line.
    std::fs::write(&report, "").map_err(|e| format!("cannot create {}: {e}", report.display()))?;
    std::fs::set_permissions(&report, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .map_err(|e| format!("cannot open up {}: {e}", report.display()))?;

    let plain = run_workload(w, &plain_dir, None)?;
    let buddy = run_workload(w, &buddy_dir, Some((&lib, &report)))?;
    for (i, (p, b)) in plain.iter().zip(&buddy).enumerate() {
        let show = |r: &Run| {
            format!(
                "status {:?}, stdout {:?}, stderr {:?}",
                r.status,
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            )
        };
        if p.status != Some(0) {
            return Err(format!(
                "command {i} fails without the preload: {}",
                show(p)
            ));
        }
        if p != b {
            return Err(format!(
                "command {i} differs under LD_PRELOAD:\n  glibc: {}\n  buddy: {}",
                show(p),
                show(b)
            ));
        }
    }
    let text = std::fs::read_to_string(&report).map_err(|e| {
        format!(
            "no exit report from libbuddy_malloc.so at {} ({e}): did the preload happen?",
            report.display()
        )
    })?;
    let mut processes = 0;
    let mut allocations = 0;
    // The process that must have run on buddy, and its pid.
    let own = match w.process {
        Some((name, file, fewest)) => {
            let path = buddy_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("no pid file {} ({e})", path.display()))?;
            let pid: u32 = text
                .trim()
                .parse()
                .map_err(|_| format!("{} holds {text:?}, not a pid", path.display()))?;
            Some((name, pid, fewest))
        }
        None => None,
    };
    let mut own_seen = None;
    for line in text.lines() {
        let (a, bad) = parse_report(line).ok_or(format!("bad report line {line:?}"))?;
        if let Some((_, pid, _)) = own
            && line.contains(&format!(" pid {pid}: "))
        {
            own_seen = Some(a);
        }
        if bad != 0 {
            return Err(format!(
                "a process freed pointers buddy never handed out: {line}"
            ));
        }
        processes += 1;
        allocations += a;
    }
    eprintln!(
        "{}: outputs identical; {processes} processes ran on buddy, {allocations} allocations, 0 bad frees",
        w.program
    );
    if let Some((name, pid, fewest)) = own {
        match own_seen {
            Some(a) if a >= fewest => eprintln!("{name} (pid {pid}) made {a} allocations on buddy"),
            Some(a) => {
                return Err(format!(
                    "{name} (pid {pid}) made only {a} allocations on buddy, expected at least {fewest}"
                ));
            }
            None => {
                return Err(format!(
                    "no exit report from {name} (pid {pid}): did it run on buddy, and exit normally?"
                ));
            }
        }
    }
    if processes < plain.len() || allocations < w.min_allocations {
        return Err(format!(
            "only {processes} processes and {allocations} allocations on buddy \
             (expected at least {} and {})",
            plain.len(),
            w.min_allocations
        ));
    }
    Ok(())
}

/// `python3 -c SCRIPT`.
const PYTHON_SCRIPT: &str = r#"
import hashlib, json, subprocess, sys, threading

# A few hundred MB allocated, used and freed: 6 x 50 MB live at once, twice.
total = 0
for rnd in range(2):
    blobs = [bytearray(50 << 20) for _ in range(6)]
    for i, b in enumerate(blobs):
        b[::4096] = bytes([i + rnd]) * len(range(0, len(b), 4096))
        total += sum(b[::4096])
    del blobs
print("big blocks", total)

# Many small objects: a dict of lists of strings and tuples, serialised and hashed.
d = {str(i): [i, str(i) * 3, (i, i * i)] for i in range(200000)}
print("dict", hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest())
del d

# Threads allocating at once.
out = {}
def work(n):
    parts = [str(i * n) for i in range(60000)]
    s = set(parts)
    out[n] = (hashlib.md5("".join(parts).encode()).hexdigest(), len(s))
threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
for t in threads: t.start()
for t in threads: t.join()
for n in sorted(out): print("thread", n, *out[n])

# A subprocess (another python, under the same preload).
child = "import sys; xs = [bytes(1000) for _ in range(10**5)]; print(len(xs), sum(map(len, xs)))"
r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
print("child", r.stdout.strip())
"#;

const PYTHON: Workload = Workload {
    program: "python3",
    also: || None,
    commands: |_| {
        let mut c = Command::new("python3");
        c.args(["-c", PYTHON_SCRIPT]).env("PYTHONHASHSEED", "0");
        Ok(vec![c])
    },
    min_allocations: 100_000,
    process: None,
};

/// The SQL of the sqlite3 workload: build (one run of `sqlite3`), then query (another).
const SQL_BUILD: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, city INTEGER, born INTEGER, note TEXT);
CREATE TABLE cities (id INTEGER PRIMARY KEY, name TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO people SELECT i, 'person' || i, i % 97, 1900 + (i * 7919) % 120,
    printf('%.*c', 20 + i % 200, 'x') FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 96)
INSERT INTO cities SELECT i, 'city' || i FROM n;
CREATE INDEX people_born ON people(born);
CREATE INDEX people_city_name ON people(city, name);
UPDATE people SET note = upper(note) WHERE born % 10 = 3;
DELETE FROM people WHERE id % 13 = 0;
VACUUM;
SELECT count(*), sum(length(note)) FROM people;
";

const SQL_QUERY: &str = "
SELECT c.name, count(*), min(p.born), max(p.born), avg(length(p.note))
  FROM people p JOIN cities c ON c.id = p.city GROUP BY c.name ORDER BY count(*) DESC, c.name LIMIT 10;
SELECT born, count(*) FROM people GROUP BY born HAVING count(*) > 1700 ORDER BY born;
SELECT name FROM people WHERE born BETWEEN 1950 AND 1951 ORDER BY name DESC LIMIT 5;
SELECT group_concat(name, ',') FROM (SELECT name FROM people ORDER BY note, id LIMIT 20);
SELECT count(DISTINCT note) FROM people;
PRAGMA integrity_check;
";

const SQLITE: Workload = Workload {
    program: "sqlite3",
    also: || None,
    commands: |dir| {
        std::fs::write(dir.join("build.sql"), SQL_BUILD).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("query.sql"), SQL_QUERY).map_err(|e| e.to_string())?;
        let mut build = Command::new("sqlite3");
        build.args(["-bail", "people.db", ".read build.sql"]);
        let mut query = Command::new("sqlite3");
        query.args(["-bail", "people.db", ".read query.sql"]);
        Ok(vec![build, query])
    },
    min_allocations: 100_000,
    process: None,
};

/// `realloc_growth.c` (buffers grown by doubling): the bench's size-less resize workload,
/// compiled with `cc` into the work directory before the timed command. `cargo xtask bench
/// --preload` only (no test pass runs it: `malloc_test.c` covers `realloc`'s semantics);
/// `min_allocations` is what a preload pass would require, 10^6 `malloc`s.
const REALLOC_GROWTH: Workload = Workload {
    program: "cc",
    also: || None,
    commands: |dir| {
        let exe = dir.join("realloc_growth");
        let mut c = cc(&c_sources().join("realloc_growth.c"), &exe);
        c.arg("-O2");
        sh(&mut c)?;
        Ok(vec![Command::new(exe)])
    },
    min_allocations: 1_000_000,
    process: None,
};

/// git commands with a fixed identity and clock, so commit ids are the same in both runs.
fn git(args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Buddy Test")
        .env("GIT_AUTHOR_EMAIL", "buddy@example.invalid")
        .env("GIT_COMMITTER_NAME", "Buddy Test")
        .env("GIT_COMMITTER_EMAIL", "buddy@example.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env("LC_ALL", "C");
    c
}

/// Writes `n` files of generated text under `dir/src/`.
fn write_tree(dir: &Path, n: usize) -> Result<(), String> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    for f in 0..n {
        let mut text = String::new();
        for line in 0..200 {
            text += &format!(
                "file {f} line {line} value {}\n",
                (f * 31 + line * 7) % 1000
            );
        }
        std::fs::write(src.join(format!("f{f:03}.txt")), text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

const GIT: Workload = Workload {
    program: "git",
    also: || None,
    commands: |dir| {
        // The files are written first; git does the rest (every change below goes through it).
        write_tree(dir, 150)?;
        Ok(vec![
            git(&["init", "-q", "-b", "main", "."]),
            git(&["add", "-A"]),
            git(&["commit", "-q", "-m", "first"]),
            git(&["checkout", "-q", "-b", "feature"]),
            git(&["mv", "src/f000.txt", "src/renamed.txt"]),
            git(&["commit", "-q", "-m", "rename"]),
            git(&["checkout", "-q", "main"]),
            git(&["rm", "-q", "src/f001.txt"]),
            git(&["commit", "-q", "-m", "remove"]),
            git(&["merge", "-q", "--no-edit", "feature"]),
            git(&["log", "--stat", "--format=%H %s"]),
            git(&["diff", "--stat", "HEAD~2", "HEAD"]),
            // Delta search in several threads; its pack sizes may vary run to run, so no
            // size is printed (`count-objects` without -v counts only loose objects).
            git(&["gc", "-q", "--aggressive"]),
            git(&["fsck", "--full", "--strict"]),
            git(&["count-objects"]),
            git(&["grep", "-c", "value 99"]),
            git(&["rev-list", "--objects", "--all"]),
        ])
    },
    min_allocations: 10_000,
    process: None,
};

const PERL_SCRIPT: &str = r#"
use strict; use warnings;
my %h; my @words;
for my $i (1 .. 300000) {
    my $w = join '', map { chr(97 + ($i * $_ * 7919) % 26) } 1 .. 1 + $i % 12;
    $h{$w}++; push @words, $w;
}
my @top = (sort { $h{$b} <=> $h{$a} || $a cmp $b } keys %h)[0 .. 9];
print "distinct ", scalar(keys %h), "\n";
print "$_ $h{$_}\n" for @top;
my $text = join ' ', @words;
my @m = ($text =~ /\b(a\w*z)\b/g);
print "matches ", scalar(@m), " first $m[0] last $m[-1]\n";
(my $t = $text) =~ s/(\w)(\w*)/\U$1\E$2/g;
print "length ", length($t), " ", substr($t, 0, 40), "\n";
my @sorted = sort @words; print "sorted $sorted[0] $sorted[-1] ", scalar(@sorted), "\n";
printf "%.6f %s\n", 3.14159265358979 * $_, sprintf('%08x', $_ * 2654435761 % 4294967296) for 1 .. 5;
"#;

const PERL: Workload = Workload {
    program: "perl",
    also: || None,
    commands: |_| {
        let mut c = Command::new("perl");
        c.args(["-e", PERL_SCRIPT]);
        Ok(vec![c])
    },
    min_allocations: 100_000,
    process: None,
};

/// The client of the memcached workload (`python3 -c`): starts `memcached` on a free
/// loopback port with 4 worker threads (under the same preload), leaves its pid in
/// `memcached.pid`, and runs 8 client threads of 6000 requests each on their own
/// connections: `set` of values of 1 B to 900 KB (memcached keeps values in 1 MiB slab pages
/// it takes from `malloc`, and chunks the large ones), multi-key `get`s checked against each
/// client's own model of its keys, and `delete`s. It prints a digest of every reply, the
/// server's counters that the requests alone decide, and the server's exit status after
/// SIGTERM (a clean exit runs the library's exit report).
const MEMCACHED_SCRIPT: &str = r#"
import hashlib, os, random, socket, subprocess, threading, time

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
cmd = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", "4", "-m", "1024", "-c", "64"]
if os.geteuid() == 0:
    cmd += ["-u", "root"]
srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
with open("memcached.pid", "w") as f:
    f.write(str(srv.pid))

class Conn:
    def __init__(self):
        for _ in range(400):
            try:
                self.s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if srv.poll() is not None:
                    raise SystemExit("memcached exited: " + srv.stderr.read().decode())
                time.sleep(0.05)
        else:
            raise SystemExit("memcached is not listening after 20 s")
        self.buf = b""
    def fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise SystemExit("memcached closed a connection")
        self.buf += chunk
    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d
    def send(self, data):
        self.s.sendall(data)
    def get(self, keys):
        self.send(b"get " + b" ".join(keys) + b"\r\n")
        out = {}
        while (l := self.line()) != b"END":
            _, k, _, n = l.split()
            out[k] = self.exactly(int(n) + 2)[:-2]
        return out

def value(n, i, v, size):
    seed = hashlib.sha256(b"%d:%d:%d" % (n, i, v)).digest()
    return (seed * (size // 32 + 1))[:size]

def size(rng):
    r = rng.random()
    if r < 0.6: return rng.randint(1, 200)
    if r < 0.9: return rng.randint(200, 8000)
    if r < 0.99: return rng.randint(8000, 100000)
    return rng.randint(100000, 900000)

results = {}
def client(n):
    rng, c, model, version, h, bad = random.Random(n), Conn(), {}, 0, hashlib.sha256(), 0
    for _ in range(6000):
        r, i = rng.random(), rng.randrange(400)
        key = b"t%d:%d" % (n, i)
        if r < 0.5:
            version += 1
            val = value(n, i, version, size(rng))
            c.send(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(val), val))
            bad += c.line() != b"STORED"
            model[key] = val
        elif r < 0.85:
            keys = [key] + [b"t%d:%d" % (n, rng.randrange(400)) for _ in range(rng.randrange(8))]
            got = c.get(keys)
            for k in keys:
                bad += got.get(k) != model.get(k)
                h.update(k + b"=" + (got.get(k) or b"-"))
        else:
            c.send(b"delete %s\r\n" % key)
            bad += c.line() != (b"DELETED" if key in model else b"NOT_FOUND")
            model.pop(key, None)
    results[n] = (h.hexdigest(), len(model), sum(map(len, model.values())), "wrong replies", bad)

try:
    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    for n in range(8): print("client", n, *results[n])
    c = Conn()
    c.send(b"stats\r\n")
    stats = dict(l.decode().split(" ", 2)[1:] for l in iter(c.line, b"END"))
    for k in ["curr_items", "total_items", "get_hits", "get_misses", "delete_hits", "delete_misses", "evictions"]:
        print(k, stats[k])
    srv.terminate()
    srv.communicate(timeout=60)
    print("memcached exit status", srv.returncode)
finally:
    if srv.poll() is None:
        srv.kill()
"#;

const MEMCACHED: Workload = Workload {
    program: "memcached",
    also: || missing(&["python3"]),
    commands: |_| {
        let mut c = Command::new("python3");
        c.args(["-c", MEMCACHED_SCRIPT]);
        Ok(vec![c])
    },
    min_allocations: 100_000,
    process: Some(("memcached", "memcached.pid", 100)),
};

/// The driver of the PostgreSQL workload (`python3 -c`): `initdb` a cluster in the work
/// directory, start `postgres` on a Unix socket there (as the `postgres` user when run as
/// root: PostgreSQL refuses root), run `work.sql` with `psql`, then `pgbench -i` and 4
/// clients of 300 transactions each (2 threads), and print what `psql` printed, the
/// accounts' totals after the transactions (the same whatever their order), and the
/// server's exit status after a fast shutdown. Every process (the postmaster, a backend
/// `fork()`ed from it per connection without `exec`, its helpers, psql and pgbench) runs
/// under the same preload. It leaves the postmaster's pid in `postmaster.pid`.
const POSTGRES_SCRIPT: &str = r#"
import glob, os, subprocess, time

bins = [d for d in sorted(glob.glob("/usr/lib/postgresql/*/bin")) if os.path.exists(d + "/initdb")]
if not bins:
    raise SystemExit("no /usr/lib/postgresql/*/bin/initdb")
def tool(name):
    return os.path.join(bins[-1], name)

data, sock = os.path.abspath("data"), os.path.abspath("sock")
os.makedirs(sock)
drop = []
if os.geteuid() == 0:
    import pwd
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = pwd.getpwnam("nobody")
    for d in [".", sock]:
        os.chown(d, user.pw_uid, user.pw_gid)
    drop = ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid, "--clear-groups"]

def run(args):
    r = subprocess.run(drop + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s%s" % (args[0], r.returncode, r.stdout, r.stderr))
    return r.stdout

run([tool("initdb"), "-D", data, "-A", "trust", "-U", "buddy", "-E", "UTF8", "--locale=C", "--no-sync"])
log = open("server.log", "w")
srv = subprocess.Popen(drop + [tool("postgres"), "-D", data, "-k", sock, "-p", "5432",
    "-c", "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=20", "-c", "work_mem=64MB"],
    stdout=log, stderr=log)
try:
    conn = ["-h", sock, "-p", "5432", "-U", "buddy"]
    psql = [tool("psql")] + conn + ["-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for _ in range(600):
        if subprocess.run(drop + psql + ["-d", "postgres", "-c", "select 1"], capture_output=True).returncode == 0:
            break
        if srv.poll() is not None:
            raise SystemExit("postgres exited:\n" + open("server.log").read())
        time.sleep(0.05)
    else:
        raise SystemExit("postgres does not answer after 30 s:\n" + open("server.log").read())
    with open("postmaster.pid", "w") as f:
        f.write(str(srv.pid))
    run(psql + ["-d", "postgres", "-c", "create database work"])
    print(run(psql + ["-d", "work", "-f", "work.sql"]), end="")
    run([tool("pgbench")] + conn + ["-i", "-q", "-s", "2", "work"])
    run([tool("pgbench")] + conn + ["-c", "4", "-j", "2", "-t", "300", "--random-seed=1", "work"])
    print(run(psql + ["-d", "work", "-A", "-t", "-c",
        "select count(*), sum(abalance) from pgbench_accounts; "
        "select sum(bbalance) from pgbench_branches; "
        "select count(*), sum(delta) from pgbench_history"]), end="")
finally:
    srv.send_signal(2)  # SIGINT: fast shutdown
    try:
        srv.wait(timeout=60)
    except subprocess.TimeoutExpired:
        srv.kill()
print("postgres exit status", srv.returncode)
"#;

/// The SQL the PostgreSQL workload runs with `psql`: the sqlite3 workload's table, grown,
/// indexed, sorted and aggregated (64 MB of `work_mem`: large sorts and hashes in memory).
const POSTGRES_SQL: &str = "
create table people (id int primary key, name text, city int, born int, note text);
insert into people select i, 'person' || i, i % 97, 1900 + (i * 7919) % 120,
    repeat('x', 20 + i % 200) from generate_series(1, 200000) i;
create index on people (born);
create index on people (city, name);
update people set note = upper(note) where born % 10 = 3;
delete from people where id % 13 = 0;
vacuum analyze people;
select city, count(*), min(born), max(born), avg(length(note))::numeric(10,3)
  from people group by city order by count(*) desc, city limit 5;
select string_agg(name, ',' order by note, id)
  from (select name, note, id from people order by note, id limit 20) s;
select count(distinct note), md5(string_agg(name, '' order by name)) from people;
with recursive t(n, s) as (select 1, ''::text union all
    select n + 1, s || chr(65 + n % 26) from t where n < 2000)
  select max(length(s)), md5(max(s)) from t;
select md5(string_agg(x::text, ',' order by x))
  from (select g as x from generate_series(1, 300000) g order by g desc) s;
";

/// When run as root, the PostgreSQL driver runs the server as `postgres` (or `nobody`):
/// that user must be able to enter the target directory, where the work directory and the
/// library are. Not so in a clone under a private home (`/root` is `drwx------`): the pass
/// is then skipped with the reason.
fn postgres_cannot_enter() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let user = if have_user("postgres") {
        "postgres"
    } else {
        "nobody"
    };
    let target = target_dir();
    let _ = std::fs::create_dir_all(&target);
    let enters = Command::new("setpriv")
        .args([&format!("--reuid={user}"), &format!("--regid={user}")])
        .args(["--clear-groups", "test", "-x"])
        .arg(&target)
        .status()
        .is_ok_and(|s| s.success());
    (!enters).then(|| {
        format!(
            "the {user} user, who runs the server (PostgreSQL refuses root), cannot enter {}: \
             clone the project where other users may enter",
            target.display()
        )
    })
}

/// Whether the system has a user named `name`.
fn have_user(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const POSTGRES: Workload = Workload {
    program: "psql",
    also: || {
        missing(&["python3", "setpriv"])
            .or_else(|| {
                let server = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
                    versions
                        .flatten()
                        .any(|v| v.path().join("bin/initdb").exists())
                });
                (!server).then(|| {
                    "no PostgreSQL server (/usr/lib/postgresql/*/bin/initdb; .ci/run installs \
                 Debian's postgresql)"
                        .into()
                })
            })
            .or_else(postgres_cannot_enter)
    },
    commands: |dir| {
        std::fs::write(dir.join("work.sql"), POSTGRES_SQL).map_err(|e| e.to_string())?;
        let mut c = Command::new("python3");
        c.args(["-c", POSTGRES_SCRIPT]);
        Ok(vec![c])
    },
    min_allocations: 100_000,
    process: Some(("the postmaster", "postmaster.pid", 1_000)),
};

// ----- cargo xtask bench --preload -----

/// One allocator of the comparison: a name and the library to preload (none: glibc).
struct Subject {
    name: &'static str,
    lib: Option<PathBuf>,
}

/// `cargo xtask bench --preload [--runs N]`: one real program's wall time and peak RSS under
/// glibc's malloc, buddy (release `libbuddy_malloc.so`), and jemalloc and mimalloc where
/// Debian's packages are installed (`libjemalloc2`, `libmimalloc2.0`), measured side by side
/// (runs interleaved, median of each) with `/usr/bin/time -f "%e %U %S %M"`: wall time, and
/// CPU time (user + system), which other load on a shared machine disturbs less. The program is
/// `sqlite3` building and querying the database of the `sqlite3` test pass, `python3`
/// running the python pass's script, then `realloc_growth.c` (`buddy-std/tests/c`, compiled
/// with `cc` before it is timed: buffers grown by doubling, the cost of size-less `realloc`);
/// every run's output is checked against glibc's.
pub fn bench(args: &[String]) -> Result<(), String> {
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|n| {
            n.parse()
                .map_err(|_| format!("--runs wants a number, not {n}"))
        })
        .transpose()?
        .unwrap_or(7);
    if runs == 0 {
        return Err("--runs wants at least 1".into());
    }
    let time = PathBuf::from("/usr/bin/time");
    if !time.exists() {
        return Err("/usr/bin/time is needed for peak RSS (apt-get install time)".into());
    }
    let libs = build_libs(true)?;
    let mut subjects = vec![
        Subject {
            name: "glibc",
            lib: None,
        },
        Subject {
            name: "buddy",
            lib: Some(libs.join("libbuddy_malloc.so")),
        },
    ];
    for (name, path) in [
        ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
        ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ] {
        if Path::new(path).exists() {
            subjects.push(Subject {
                name,
                lib: Some(PathBuf::from(path)),
            });
        } else {
            eprintln!("note: {path} not installed, {name} left out");
        }
    }
    let mut table = String::from(
        "| program | allocator | wall time (s) | CPU time (s) | peak RSS (MiB) |\n| --- | --- | --- | --- | --- |\n",
    );
    for (name, w) in [
        ("sqlite3", &SQLITE),
        ("python3", &PYTHON),
        ("realloc_growth.c", &REALLOC_GROWTH),
    ] {
        if !have(w.program, "--version") {
            eprintln!("note: `{}` not found, {name} left out", w.program);
            continue;
        }
        // results[subject] = [(wall, cpu, rss_kib)]
        let mut results: Vec<Vec<(f64, f64, u64)>> = vec![Vec::new(); subjects.len()];
        let mut reference: Option<Vec<Vec<u8>>> = None;
        for round in 0..runs {
            for (s, subject) in subjects.iter().enumerate() {
                let dir = scratch(&format!("bench-{name}-{}", subject.name))?;
                let (mut wall, mut cpu) = (0.0, 0.0);
                let mut rss = 0u64;
                let mut outputs = Vec::new();
                for cmd in (w.commands)(&dir)? {
                    let stats = dir.join("time.txt");
                    let mut timed = Command::new(&time);
                    timed
                        .args(["-f", "%e %U %S %M", "-o"])
                        .arg(&stats)
                        .arg(cmd.get_program())
                        .args(cmd.get_args())
                        .current_dir(&dir);
                    for (k, v) in cmd.get_envs() {
                        match v {
                            Some(v) => timed.env(k, v),
                            None => timed.env_remove(k),
                        };
                    }
                    if let Some(lib) = &subject.lib {
                        timed.env("LD_PRELOAD", lib);
                    }
                    let out = run_limited(&mut timed, Duration::from_secs(600))?;
                    if !out.status.success() {
                        return Err(format!(
                            "{name} under {} failed: {}",
                            subject.name,
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                    outputs.push(out.stdout);
                    let line = std::fs::read_to_string(&stats).map_err(|e| e.to_string())?;
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let [e, u, s, m] = f[..] else {
                        return Err(format!("cannot parse /usr/bin/time output {line:?}"));
                    };
                    let secs = |x: &str| x.parse::<f64>().map_err(|e| e.to_string());
                    wall += secs(e)?;
                    cpu += secs(u)? + secs(s)?;
                    rss = rss.max(m.parse::<u64>().map_err(|e| e.to_string())?);
                }
                match &reference {
                    None => reference = Some(outputs),
                    Some(r) if *r != outputs => {
                        return Err(format!(
                            "{name} printed something else under {} than under glibc",
                            subject.name
                        ));
                    }
                    Some(_) => {}
                }
                eprintln!(
                    "{name} round {round} {}: {wall:.2} s wall, {cpu:.2} s CPU, {:.1} MiB",
                    subject.name,
                    rss as f64 / 1024.0
                );
                results[s].push((wall, cpu, rss));
            }
        }
        for (subject, r) in subjects.iter().zip(&mut results) {
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let wall = median(r.iter().map(|x| x.0).collect());
            let cpu = median(r.iter().map(|x| x.1).collect());
            let rss = median(r.iter().map(|x| x.2 as f64).collect());
            table += &format!(
                "| {name} | {} | {wall:.2} | {cpu:.2} | {:.1} |\n",
                subject.name,
                rss / 1024.0
            );
        }
    }
    println!(
        "\nwall time, CPU time and peak RSS, medians of {runs} interleaved runs (sqlite3: the \
         two commands of the test pass, times summed, RSS the larger; realloc_growth.c: \
         buffers grown by doubling, mostly size-less reallocs):\n\n{table}"
    );
    Ok(())
}
