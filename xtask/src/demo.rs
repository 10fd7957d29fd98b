//! `cargo xtask demo`: the guided tour, `buddy-core/examples/demo.rs` (and the std part once
//! `buddy-std` exists), built in release mode so it starts in seconds.

use crate::util::{cargo, run as sh};

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
    ]))
}
