//! Hardening passes of `cargo xtask test`: checks by tools nobody here wrote (Miri, …).
//!
//! Each pass says `skipped` with the reason when its tool cannot run on this machine; `.ci/run`
//! installs the tools, so on CI they run.

use crate::test::{Outcome, Pass};
use crate::util::{describe, project_root};
use std::process::Command;

/// The hardening passes, in order.
pub fn passes() -> Vec<Pass> {
    vec![
        Pass {
            name: "miri: buddy-core unit, property and integration tests, strict provenance",
            run: miri_core,
        },
        Pass {
            name: "fuzz: buddy-core op sequences vs shadow model, 60 s (cargo fuzz)",
            run: || crate::fuzz::fuzz(60),
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

fn miri_core() -> Outcome {
    if !works(nightly(&["miri", "--version"])) {
        return Outcome::Skipped(
            "no nightly Miri (`rustup component add --toolchain nightly miri rust-src`; .ci/run does)".into(),
        );
    }
    // Tests leak their regions on purpose ('static memory, as firmware has it).
    let mut c = nightly(&["miri", "test", "-p", "buddy-core"]);
    c.env("MIRIFLAGS", "-Zmiri-strict-provenance -Zmiri-ignore-leaks");
    status(&mut c)
}
