//! Teaching memory checkers about the arena: valgrind's memcheck (feature `memcheck`) and
//! AddressSanitizer (feature `asan`).
//!
//! Blocks come from chunks the allocator mapped itself, so the tools see one big mapping and
//! cannot tell a live block from a free one: a use after free or an overflow into a free block
//! goes unnoticed. With these features the allocator tells them, the way a `malloc` does:
//!
//! | event | memcheck (client requests) | AddressSanitizer |
//! | --- | --- | --- |
//! | arena reserved | `VALGRIND_CREATE_MEMPOOL(arena)` | — |
//! | chunk set up | `VALGRIND_MAKE_MEM_NOACCESS(chunk)` | chunk poisoned |
//! | block handed out | `VALGRIND_MEMPOOL_ALLOC(arena, p, size)` | `[p, p + size)` unpoisoned |
//! | block resized in place | `VALGRIND_MEMPOOL_CHANGE` + tail made (in)accessible | tail (un)poisoned |
//! | block freed | `VALGRIND_MEMPOOL_FREE(arena, p)` | `[p, p + size)` poisoned |
//! | allocator dropped | `VALGRIND_DESTROY_MEMPOOL(arena)` | — |
//!
//! A block is marked free *before* it goes back to its heap and marked live *after* it comes
//! out, so another thread can never have the block when its marks change.
//!
//! Without the features every function here is empty and inlined away. The memcheck requests
//! are the "magic sequence" of `valgrind.h`, which does nothing outside valgrind; the ASan
//! ones are calls into the sanitizer runtime, so `asan` links only in a build with
//! `-Zsanitizer=address`.

use core::ptr::NonNull;

/// Whether a memory checker is being told about blocks: then every block must be marked live
/// before anything writes to it, which a resize that a heap moves under its lock would not do.
pub(super) const ACTIVE: bool = cfg!(any(feature = "memcheck", feature = "asan"));

use crate::sync::AtomicPtr;

#[cfg(all(
    feature = "memcheck",
    not(all(target_arch = "x86_64", target_os = "linux"))
))]
compile_error!("the `memcheck` feature supports x86_64 Linux only");

/// Valgrind client requests (`valgrind.h`, `memcheck.h`), on x86_64.
#[cfg(feature = "memcheck")]
mod valgrind {
    /// `VG_USERREQ__CREATE_MEMPOOL`.
    pub(super) const CREATE_MEMPOOL: usize = 0x1303;
    /// `VG_USERREQ__DESTROY_MEMPOOL`.
    pub(super) const DESTROY_MEMPOOL: usize = 0x1304;
    /// `VG_USERREQ__MEMPOOL_ALLOC`.
    pub(super) const MEMPOOL_ALLOC: usize = 0x1305;
    /// `VG_USERREQ__MEMPOOL_FREE`.
    pub(super) const MEMPOOL_FREE: usize = 0x1306;
    /// `VG_USERREQ__MEMPOOL_CHANGE`.
    pub(super) const MEMPOOL_CHANGE: usize = 0x1309;
    /// `VG_USERREQ_TOOL_BASE('M', 'C')`: memcheck's own requests.
    const MC: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16;
    /// `VG_USERREQ__MAKE_MEM_NOACCESS`.
    pub(super) const MAKE_MEM_NOACCESS: usize = MC;
    /// `VG_USERREQ__MAKE_MEM_UNDEFINED`.
    pub(super) const MAKE_MEM_UNDEFINED: usize = MC + 1;

    /// `VALGRIND_DO_CLIENT_REQUEST_EXPR(0, request, a1, a2, a3, a4, 0)`: the special instruction
    /// sequence valgrind's JIT recognises (four rotations of `rdi` that add up to none, then
    /// `xchg rbx, rbx`), with `rax` pointing at the request and its arguments; the answer
    /// comes back in `rdx`. On a real CPU the sequence changes nothing and `rdx` keeps 0.
    #[inline]
    pub(super) fn request(request: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> usize {
        let args: [usize; 6] = [request, a1, a2, a3, a4, 0];
        let result: usize;
        // SAFETY: the instructions rotate `rdi` by 128 bits in total (so leave it unchanged,
        // but clobber the flags, which `asm!` assumes by default) and swap `rbx` with itself;
        // valgrind reads `args` (which lives across the block) and writes only its own shadow
        // state and `rdx`. The requests used here describe memory the allocator owns; they
        // change no byte of the program's memory.
        unsafe {
            core::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") args.as_ptr(),
                inout("rdx") 0usize => result,
                options(nostack),
            );
        }
        result
    }
}

#[cfg(feature = "asan")]
mod asan {
    // SAFETY: the AddressSanitizer runtime (linked by `-Zsanitizer=address`) defines these two
    // functions with these C signatures (`sanitizer/asan_interface.h`).
    unsafe extern "C" {
        /// Marks `[addr, addr + size)` as unaddressable: an access is reported.
        pub(super) fn __asan_poison_memory_region(addr: *const u8, size: usize);
        /// Marks `[addr, addr + size)` as addressable again.
        pub(super) fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
    }
}

/// The pool's name: the arena's address (set before any block exists). Loaded only when a tool
/// needs it, so that without the features the hooks cost nothing.
#[cfg(feature = "memcheck")]
fn pool_addr(pool: &AtomicPtr<u8>) -> usize {
    pool.load(crate::sync::Ordering::Relaxed).addr()
}

/// Marks `[p, p + len)` as inaccessible for AddressSanitizer.
#[inline(always)]
#[allow(unused_variables)]
fn poison(p: *const u8, len: usize) {
    #[cfg(feature = "asan")]
    // SAFETY: poisoning changes only ASan's shadow memory, for memory the allocator owns.
    unsafe {
        asan::__asan_poison_memory_region(p, len)
    };
}

/// Marks `[p, p + len)` as accessible for AddressSanitizer.
#[inline(always)]
#[allow(unused_variables)]
fn unpoison(p: *const u8, len: usize) {
    #[cfg(feature = "asan")]
    // SAFETY: as `poison`.
    unsafe {
        asan::__asan_unpoison_memory_region(p, len)
    };
}

/// The arena at `pool` was reserved: it becomes a memcheck memory pool, named by its address.
#[inline(always)]
#[allow(unused_variables)]
pub(super) fn arena_reserved(pool: *const u8) {
    #[cfg(feature = "memcheck")]
    valgrind::request(valgrind::CREATE_MEMPOOL, pool.addr(), 0, 0, 0);
}

/// The allocator is about to unmap its arena, whose first `used` bytes are chunks: every
/// block of the pool is forgotten (no leak reports for blocks of a dropped allocator), and
/// the chunks are unpoisoned. ASan does not see the `munmap` (rustix makes the system call
/// itself), so without this the next mapping at those addresses would start out poisoned.
#[inline(always)]
#[allow(unused_variables)]
pub(super) fn arena_released(pool: *const u8, used: usize) {
    #[cfg(feature = "memcheck")]
    valgrind::request(valgrind::DESTROY_MEMPOOL, pool.addr(), 0, 0, 0);
    unpoison(pool, used);
}

/// A chunk of `len` bytes at `start` was set up: all of it is free, so none of it may be
/// touched until handed out.
#[inline(always)]
#[allow(unused_variables)]
pub(super) fn chunk_added(start: *const u8, len: usize) {
    #[cfg(feature = "memcheck")]
    valgrind::request(valgrind::MAKE_MEM_NOACCESS, start.addr(), len, 0, 0);
    poison(start, len);
}

/// Block `p` of `size` bytes (what the caller asked for) was just taken from its heap.
#[inline(always)]
#[allow(unused_variables)]
pub(super) fn allocated(pool: &AtomicPtr<u8>, p: NonNull<u8>, size: usize) {
    #[cfg(feature = "memcheck")]
    valgrind::request(
        valgrind::MEMPOOL_ALLOC,
        pool_addr(pool),
        p.addr().get(),
        size,
        0,
    );
    unpoison(p.as_ptr(), size);
}

/// Block `p` of `size` bytes (as allocated or last resized, or its usable size) is about to
/// go back to its heap.
#[inline(always)]
#[allow(unused_variables)]
pub(super) fn freeing(pool: &AtomicPtr<u8>, p: NonNull<u8>, size: usize) {
    #[cfg(feature = "memcheck")]
    valgrind::request(
        valgrind::MEMPOOL_FREE,
        pool_addr(pool),
        p.addr().get(),
        0,
        0,
    );
    poison(p.as_ptr(), size);
}

/// Block `p` is about to shrink from `old` to `new` bytes in place (its tail goes back to
/// the heap next). Undo with [`grown`] if the heap refuses.
#[inline(always)]
#[allow(unused_variables)]
pub(super) fn shrinking(pool: &AtomicPtr<u8>, p: NonNull<u8>, old: usize, new: usize) {
    let tail = p.as_ptr().wrapping_add(new);
    #[cfg(feature = "memcheck")]
    {
        let a = p.addr().get();
        valgrind::request(valgrind::MEMPOOL_CHANGE, pool_addr(pool), a, a, new);
        valgrind::request(valgrind::MAKE_MEM_NOACCESS, tail.addr(), old - new, 0, 0);
    }
    poison(tail, old - new);
}

/// Block `p` just grew in place from `old` to `new` bytes.
#[inline(always)]
#[allow(unused_variables)]
pub(super) fn grown(pool: &AtomicPtr<u8>, p: NonNull<u8>, old: usize, new: usize) {
    let tail = p.as_ptr().wrapping_add(old);
    #[cfg(feature = "memcheck")]
    {
        let a = p.addr().get();
        valgrind::request(valgrind::MEMPOOL_CHANGE, pool_addr(pool), a, a, new);
        valgrind::request(valgrind::MAKE_MEM_UNDEFINED, tail.addr(), new - old, 0, 0);
    }
    unpoison(tail, new - old);
}

/// Runs `write` on the free range `[p, p + len)` with the tools told that it may be written,
/// then marks it free again. Only for a range of free blocks of a heap whose lock the caller
/// holds (so no one can allocate them meanwhile).
#[inline]
#[allow(unused_variables)]
pub(super) fn writing_free(p: *mut u8, len: usize, write: impl FnOnce()) {
    #[cfg(feature = "memcheck")]
    valgrind::request(valgrind::MAKE_MEM_UNDEFINED, p.addr(), len, 0, 0);
    unpoison(p, len);
    write();
    #[cfg(feature = "memcheck")]
    valgrind::request(valgrind::MAKE_MEM_NOACCESS, p.addr(), len, 0, 0);
    poison(p, len);
}
