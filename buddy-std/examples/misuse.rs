//! A program with a memory bug in the blocks it gets from `BuddyAlloc` (its global
//! allocator), for checking that valgrind and AddressSanitizer catch such bugs once the
//! allocator tells them which blocks are live (features `memcheck` and `asan`).
//!
//! ```sh
//! cargo build -p buddy-std --example misuse --features memcheck
//! valgrind --error-exitcode=1 target/debug/examples/misuse use-after-free   # exits 1
//! RUSTFLAGS=-Zsanitizer=address cargo +nightly run -p buddy-std --features asan \
//!     --target x86_64-unknown-linux-gnu --example misuse -- overflow          # aborts
//! ```
//!
//! Modes (the first argument):
//! - `clean`: allocates, uses and frees blocks correctly; the tools must report nothing;
//! - `use-after-free`: reads a 64-byte block after freeing it;
//! - `overflow`: writes the byte just past a live 64-byte block, into its neighbour, a free
//!   block.
//!
//! `cargo xtask test` runs each mode under valgrind and under AddressSanitizer and checks the
//! verdicts. Without the features, both bugs go unnoticed: the arena is one big mapping to the
//! tools, every byte of it addressable.

use std::alloc::{Layout, alloc, dealloc};
use std::hint::black_box;

use buddy_std::{BuddyAlloc, Config};

/// Small, so that valgrind does not have to refuse a 64 GiB reservation first.
#[global_allocator]
static GLOBAL: BuddyAlloc =
    BuddyAlloc::with_config(Config::new().memory_limit(256 << 20).chunk_size(16 << 20));

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    // Correct use first, in every mode: strings, vectors, growth, a map.
    let words: Vec<String> = (0..1000).map(|i| format!("word{i}")).collect();
    let mut map = std::collections::HashMap::new();
    for (i, w) in words.iter().enumerate() {
        map.insert(w.as_str(), i);
    }
    assert_eq!(map["word999"], 999);
    let mut v = Vec::new();
    for i in 0..10_000u32 {
        v.push(i);
    }
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.iter().sum::<u32>(), 45);
    drop(map);
    drop((words, v));

    match mode.as_str() {
        "clean" => {}
        "use-after-free" => {
            let block = Box::new([7u8; 64]);
            let p: *const u8 = block.as_ptr();
            drop(block);
            // SAFETY: none: `p` was freed just above. This is the bug the tools must report.
            let stale = unsafe { p.add(8).read_volatile() };
            black_box(stale);
        }
        "overflow" => {
            // Two neighbouring 64-byte blocks; the second one is freed.
            let layout = Layout::from_size_align(64, 64).expect("a valid layout");
            let mut held = Vec::new();
            let (first, second) = loop {
                // SAFETY: a valid, non-zero layout.
                let (a, b) = unsafe { (alloc(layout), alloc(layout)) };
                assert!(!a.is_null() && !b.is_null());
                if b.addr() == a.addr() + 64 {
                    break (a, b);
                }
                held.push((a, b));
                assert!(held.len() < 1000, "no two neighbouring blocks");
            };
            // SAFETY: allocated above with this layout.
            unsafe { dealloc(second, layout) };
            // SAFETY: none: `first` holds 64 bytes, so this writes past its end, into the
            // free block `second`. This is the bug the tools must report.
            unsafe { first.add(64).write_volatile(1) };
            black_box(first);
            // SAFETY: (cleanup) allocated above with this layout.
            unsafe { dealloc(first, layout) };
            for (a, b) in held {
                // SAFETY: allocated above with this layout.
                unsafe { (dealloc(a, layout), dealloc(b, layout)) };
            }
        }
        other => {
            eprintln!("usage: misuse clean|use-after-free|overflow (got `{other}`)");
            std::process::exit(2);
        }
    }
    println!("misuse {mode}: done");
}
