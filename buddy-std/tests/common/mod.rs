//! Helpers for the loom models: a memory source loom can run (no system calls) and a tiny
//! configuration, so each model explores few states.
#![allow(dead_code)]

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use buddy_mmap::{Errno, Os};
use buddy_std::{BuddyAlloc, Config, Purge};

/// An [`Os`] backed by the test process's own (system) allocator: loom cannot model `mmap`,
/// and a model runs thousands of times. Refuses the first `refuse` maps, counts the rest.
#[derive(Debug, Default)]
pub struct BufferOs {
    refuse: AtomicUsize,
    pub maps: AtomicUsize,
    pub mapped: AtomicUsize,
}

impl BufferOs {
    /// Refuses the first `n` maps.
    pub fn refusing(n: usize) -> BufferOs {
        BufferOs {
            refuse: AtomicUsize::new(n),
            ..BufferOs::default()
        }
    }
}

// SAFETY: `map` returns a fresh zeroed allocation of `len` bytes aligned to `align` from the
// system allocator, freed only by `unmap` with the same layout; `purge` zeroes the range.
unsafe impl Os for BufferOs {
    fn map(&self, len: usize, align: usize) -> Result<NonNull<u8>, Errno> {
        if self
            .refuse
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Errno::NOMEM);
        }
        let layout = Layout::from_size_align(len, align).map_err(|_| Errno::INVAL)?;
        if len == 0 {
            return Err(Errno::INVAL);
        }
        // SAFETY: non-zero size.
        let p = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or(Errno::NOMEM)?;
        self.maps.fetch_add(1, Relaxed);
        self.mapped.fetch_add(len, Relaxed);
        Ok(p)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, len: usize, align: usize) -> Result<(), Errno> {
        let layout = Layout::from_size_align(len, align).map_err(|_| Errno::INVAL)?;
        // SAFETY: the caller passes back one `map` call's pointer and arguments.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        self.mapped.fetch_sub(len, Relaxed);
        Ok(())
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller passes a range of a live mapping that nothing else accesses.
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        Ok(())
    }

    unsafe fn advise_huge(&self, _ptr: NonNull<u8>, _len: usize) -> Result<(), Errno> {
        Err(Errno::INVAL)
    }
}

/// 4 KiB chunks of 16-byte blocks, `chunks` of them at most, `shards` shards, no purging.
pub fn tiny(shards: usize, chunks: usize) -> Config {
    Config::new()
        .chunk_size(4096)
        .memory_limit(4096 * chunks)
        .shards(shards)
        .purge(Purge::Never)
}

pub type Alloc = BuddyAlloc<BufferOs>;

/// A fresh allocator over a fresh [`BufferOs`].
pub fn alloc(config: Config) -> Alloc {
    BuddyAlloc::with_os(config, BufferOs::default())
}

pub fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// Allocates `size` bytes, writes the block's first and last byte; the address, or 0 for null.
pub fn take(a: &Alloc, size: usize) -> usize {
    use std::alloc::GlobalAlloc;
    // SAFETY: a valid layout.
    let p = unsafe { a.alloc(layout(size)) };
    if !p.is_null() {
        // SAFETY: a fresh block of `size` bytes.
        unsafe {
            p.write(0xA5);
            p.add(size - 1).write(0x5A);
        }
    }
    p as usize
}

/// Frees a block from [`take`].
pub fn give(a: &Alloc, p: usize, size: usize) {
    use std::alloc::GlobalAlloc;
    // SAFETY: `p` came from `take(a, size)` and is freed once.
    unsafe { a.dealloc(p as *mut u8, layout(size)) };
}

/// The blocks `[p, p + size)` do not overlap.
pub fn disjoint(blocks: &[(usize, usize)]) -> bool {
    blocks.iter().enumerate().all(|(i, &(p, s))| {
        blocks[i + 1..]
            .iter()
            .all(|&(q, t)| p + s <= q || q + t <= p)
    })
}

/// Everything is free again and the structure is intact.
pub fn all_back(a: &Alloc) {
    let s = a.stats();
    assert_eq!(s.live_allocations(), 0);
    assert_eq!(s.heap.free_bytes, s.heap.managed_bytes);
    assert_eq!(s.heap.allocations, s.heap.frees);
    a.check().unwrap();
}

/// `loom::thread::spawn` with a 1 MiB stack: setting up a chunk's heap moves a few tens of
/// KiB through the stack, more than loom's default 32 KiB.
pub fn spawn<F, T>(f: F) -> loom::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    loom::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(f)
        .expect("spawn a loom thread")
}

/// Runs `f` on its own loom thread (with a large stack) and waits for it: the model's main
/// thread has only loom's default stack, too small to set up a chunk.
pub fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn(f).join().unwrap()
}
