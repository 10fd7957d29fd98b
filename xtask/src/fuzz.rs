//! `cargo xtask fuzz [--secs N]`: runs the buddy-core fuzz target (`buddy-core/fuzz`) with
//! `cargo fuzz` for N seconds (default 60): arbitrary operation sequences against a shadow
//! model, heap check after every step.

use crate::test::Outcome;
use crate::util::{describe, project_root};
use std::process::Command;

/// Whether `cargo fuzz` and a nightly toolchain can run here; `Err` says why not.
pub fn available() -> Result<(), String> {
    let ok = |c: &mut Command| {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c.status().is_ok_and(|s| s.success())
    };
    if !ok(Command::new("cargo").args(["+nightly", "--version"])) {
        return Err("no nightly toolchain (cargo fuzz needs -Zsanitizer)".into());
    }
    if !ok(Command::new("cargo").args(["fuzz", "--version"])) {
        return Err("cargo-fuzz not installed (`cargo install cargo-fuzz`; .ci/run does)".into());
    }
    Ok(())
}

/// Runs the fuzz target for `secs` seconds.
pub fn fuzz(secs: u64) -> Outcome {
    if let Err(why) = available() {
        return Outcome::Skipped(why);
    }
    let mut c = Command::new("cargo");
    c.current_dir(project_root().join("buddy-core"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .args(["+nightly", "fuzz", "run", "heap_ops", "--", "-max_len=4096"])
        .arg(format!("-max_total_time={secs}"));
    eprintln!("$ {}", describe(&c));
    match c.status() {
        Ok(s) if s.success() => Outcome::Passed,
        Ok(s) => Outcome::Failed(format!(
            "fuzzing found a failure ({s}); see buddy-core/fuzz/artifacts"
        )),
        Err(e) => Outcome::Failed(format!("cannot start cargo fuzz: {e}")),
    }
}

/// The `fuzz` command.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut secs = 60;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--secs needs a number of seconds")?;
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}` (usage: cargo xtask fuzz [--secs N])"
                ));
            }
        }
    }
    match fuzz(secs) {
        Outcome::Passed => Ok(()),
        Outcome::Skipped(why) => Err(format!("cannot fuzz here: {why}")),
        Outcome::Failed(e) => Err(e),
    }
}
