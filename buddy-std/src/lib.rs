//! A thread-safe binary buddy allocator over memory from the OS: a `#[global_allocator]`, an
//! [`allocator-api2`](allocator_api2) allocator for collections, and arenas that give all
//! their memory back when dropped.
//!
//! # As the global allocator
//!
//! ```
//! use buddy_std::BuddyAlloc;
//!
//! #[global_allocator]
//! static GLOBAL: BuddyAlloc = BuddyAlloc::new();
//!
//! fn main() {
//!     let words: Vec<String> = (0..100).map(|i| format!("word{i}")).collect();
//!     let handles: Vec<_> = (0..4)
//!         .map(|t| std::thread::spawn(move || (0..1000).map(|i| i * t).collect::<Vec<u64>>()))
//!         .collect();
//!     for h in handles {
//!         assert_eq!(h.join().unwrap().len(), 1000);
//!     }
//!     assert_eq!(words[42], "word42");
//!
//!     let stats = GLOBAL.stats();
//!     assert!(stats.heap.allocations >= 100);
//!     println!("{stats}"); // free blocks per order, like /proc/buddyinfo, and OS figures
//! }
//! ```
//!
//! [`BuddyAlloc::new`] is `const` and reserves nothing; the first allocation reserves the
//! address range up to the memory limit (virtual memory only). [`BuddyAlloc::with_config`]
//! takes a [`Config`]: memory limit, chunk size, minimum block, purge policy, shard count.
//! Past the limit, allocation returns null and the program's allocation-error handler
//! decides what happens; the allocator itself never aborts.
//!
//! # An arena for collections
//!
//! ```
//! use allocator_api2::vec::Vec;
//! use buddy_std::BuddyArena;
//!
//! let arena = BuddyArena::new(16 << 20)?; // 16 MiB, reserved now, resident only as used
//! let mut names = Vec::new_in(&arena);
//! let mut squares = Vec::new_in(&arena);
//! for i in 0..10_000u64 {
//!     names.push(i.to_string());
//!     squares.push(i * i);
//! }
//! squares.retain(|s| s % 2 == 0);
//! assert_eq!(squares.len(), 5000);
//! assert_eq!(arena.stats().live_allocations(), 2); // the two vectors' buffers
//! drop((names, squares));
//! drop(arena); // gives all of its memory back to the OS
//! # Ok::<(), buddy_std::ArenaError>(())
//! ```
//!
//! Any `allocator-api2` collection works the same way (hashbrown's `HashMap::new_in(&arena)`
//! with its `allocator-api2` feature, for instance); so does `&BuddyAlloc`.
//!
//! # From C
//!
//! Feature `capi`: the C ABI of `include/buddy_alloc.h` (module `capi`: `buddy_alloc`,
//! `buddy_free`, …), built into `libbuddy_alloc.a`/`.so` by the `buddy-capi` package in
//! `buddy-std/capi/`. Feature `malloc`: the C allocation functions' semantics over any
//! `BuddyAlloc` (module `malloc`), which the `buddy-malloc` package in `buddy-std/malloc/` exports
//! as `malloc` & co. from `libbuddy_malloc.so`, for `LD_PRELOAD`. Neither feature makes a
//! Rust program's own `malloc` buddy. See the README's C section.
//!
//! # How it works
//!
//! - **Chunks.** Memory is reserved as one range of chunks (64 MiB each by default), each a
//!   [`buddy_core::Heap`] behind its own lock with its metadata kept outside the chunk. The
//!   chunk of an address is one subtraction and one shift away. Requests larger than a chunk
//!   get a mapping of their own.
//! - **Shards.** Threads spread over a few shards (round-robin by a thread ordinal); each shard
//!   allocates from its own chunks, so threads of different shards rarely share a lock. A
//!   block freed by another thread goes back to the chunk it came from.
//! - **Purging.** A freed allocation of at least the purge threshold (256 KiB by default) has
//!   its pages given back to the OS with `madvise(MADV_DONTNEED)` before it rejoins its heap.
//!   The heap never writes into free memory, so those pages stay out of memory until reused.
//! - **Statistics.** [`BuddyAlloc::stats`] sums the heaps of all chunks ([`Stats`]) and adds
//!   what is held from the OS ([`OsStats`]).
//!
//! # Limitations
//!
//! - Linux only (as `buddy-mmap`).
//! - Alignment up to the chunk size; larger alignments get null.
//! - Only allocations of at least the purge threshold are purged when freed; memory freed in
//!   small pieces is reused but stays resident, even after its blocks merge into large free
//!   ones.
//! - Chunks, once set up, stay reserved for the allocator's life; only their pages go back.
//! - Setting up a chunk (the first allocation of each shard, and growth) runs on the
//!   allocating thread's stack: well under 64 KiB, even in debug builds (tested).
//! - Requests are not cached per thread: every allocation takes its chunk's lock (uncontended
//!   when threads are on different shards).
//!
//! # Verification
//!
//! Every concurrent piece runs under [loom](https://docs.rs/loom) in `tests/loom_*.rs`
//! (`cargo xtask test` runs them with `--cfg loom`): racing lazy initialisation, allocation
//! and free on the same and on different shards, cross-thread free, growth racing with
//! allocation, and the statistics. The `sync` module is the only place that names a
//! synchronisation primitive, so the models check the real code.
//!
//! `tests/faults.rs` injects faults through [`buddy_mmap::FaultyOs`] (maps and purges refused,
//! the limit reached by racing threads, a thread panicking between allocations);
//! `tests/scribble.rs` overwrites all free memory ([`BuddyAlloc::scribble_free`]) while threads
//! allocate. Both end with every live block intact and the whole limit allocatable again.
//!
//! Features `memcheck` and `asan` tell valgrind (client requests: each allocator a memory
//! pool) and AddressSanitizer (free memory poisoned; build with `-Zsanitizer=address`) which
//! blocks are live, so that a program's use after free or overflow into a free block is
//! reported as it would be with `malloc`: to the tools, the arena is otherwise one big
//! mapping where every access is valid. `examples/misuse.rs` shows it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
mod allocator;
// The C ABI of `include/buddy_alloc.h`: `unsafe` because it exports unmangled symbols and
// takes raw pointers from C (see the module's docs). Its `static`s need `const`
// constructors, which loom's primitives lack: not part of the loom models.
#[cfg(all(feature = "capi", not(loom)))]
#[allow(unsafe_code)]
pub mod capi;
mod config;
// A stack-formatted diagnostic written with `write(2)`: `unsafe` for the C calls (`write`,
// `errno`, the signal mask).
#[allow(unsafe_code)]
mod line;
// `malloc` & co. with C semantics: `unsafe` because C's pointers, `errno`, `write(2)` and
// `pthread_atfork` come in here (see the module's docs).
#[cfg(feature = "malloc")]
#[allow(unsafe_code)]
pub mod malloc;
mod stats;
mod sync;

pub use allocator::{ArenaError, BuddyAlloc, BuddyArena};
pub use config::{
    Config, ConfigError, DEFAULT_PURGE_THRESHOLD, MAX_CHUNKS, MAX_SHARDS, Purge, ShardBy,
};
pub use stats::{OsStats, Stats, resident_bytes};

pub use allocator_api2;
pub use buddy_core;
pub use buddy_mmap;

/// The workspace README's examples (buddy-core's and buddy-std's), run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
