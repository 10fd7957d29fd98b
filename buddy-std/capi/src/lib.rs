//! The C libraries of buddy-std: `libbuddy_alloc.a` and `libbuddy_alloc.so`, exporting the C
//! ABI of `buddy-std/include/buddy_alloc.h` (`buddy_alloc`, `buddy_free`, `buddy_calloc`,
//! `buddy_realloc`, `buddy_aligned_alloc`, `buddy_usable_size`, `buddy_stats`,
//! `buddy_set_debug`).
//!
//! ```sh
//! cargo build --release -p buddy-capi
//! cc -I buddy-std/include prog.c target/release/libbuddy_alloc.a -lpthread -ldl -lm -o prog
//! cc -I buddy-std/include prog.c -L target/release -lbuddy_alloc -o prog   # shared
//! ```
//!
//! The functions live in `buddy_std::capi` (feature `capi`); this package only gives them
//! library crate types. It is a package of its own, not crate types of buddy-std, because
//! cargo builds every crate type of a library whenever it builds the library, dependencies
//! included: every Rust user of buddy-std would link a static and a shared library it does
//! not use.
#![forbid(unsafe_code)]

pub use buddy_std::capi::{
    buddy_aligned_alloc, buddy_alloc, buddy_calloc, buddy_free, buddy_realloc, buddy_set_debug,
    buddy_stats, buddy_usable_size,
};
