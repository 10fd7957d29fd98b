//! Links with `memory.x`: flash and RAM where a Cortex-M4 part (an STM32F4, say) has them.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rustc-link-arg=-T{dir}/memory.x");
    println!("cargo:rerun-if-changed=memory.x");
}
