//! Behaviours of `BuddyAlloc` and `BuddyArena` as non-global allocators.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout};

use buddy_std::{BuddyAlloc, Config};

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn smoke() {
    let a = BuddyAlloc::with_config(Config::new().memory_limit(256 << 20).chunk_size(16 << 20));
    // SAFETY: valid layouts; freed with the same layout.
    unsafe {
        let p = a.alloc(l(100, 8));
        assert!(!p.is_null());
        p.write_bytes(1, 100);
        let s = a.stats();
        println!("{s}");
        a.dealloc(p, l(100, 8));
    }
    a.check().unwrap();
    println!("{}", a.stats());
}
