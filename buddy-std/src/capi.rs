//! The C ABI (feature `capi`): `buddy_alloc`, `buddy_free` and the rest of
//! `buddy-std/include/buddy_alloc.h`, over a `static` [`BuddyAlloc`] of their own (not the
//! Rust program's global allocator, and not `malloc`).
//!
//! ```c
//! void *ptr = buddy_alloc(128);
//! buddy_free(ptr);
//! ```
//!
//! The header documents each function for C users; these are the same functions, callable
//! from Rust too. Build the C libraries (`libbuddy_alloc.a`, `libbuddy_alloc.so`) from the
//! `buddy-capi` package in `buddy-std/capi/`, which only re-exports these.
//!
//! - Failures return NULL (or -1) and set `errno`: `ENOMEM` for no memory or an impossible
//!   size, `EINVAL` for a bad alignment or a pointer this heap did not hand out.
//! - A bad pointer given to `buddy_free`, `buddy_realloc` or `buddy_usable_size` changes
//!   nothing, and is also reported on stderr after `buddy_set_debug(1)` (one line, written
//!   with `write(2)`: no allocation, no stdio buffer).
//! - A process that forks while other threads use these functions is safe: `pthread_atfork`
//!   handlers hold the heap still across the `fork`. They are registered when the library is
//!   loaded (a constructor in `.init_array`; at the latest by the first call). Other fork
//!   handlers may call these functions: glibc runs the `prepare` handlers last-registered
//!   first, and the `parent` and `child` handlers first-registered first, so buddy's hold
//!   the heap around those registered after them; those registered before run while the
//!   heap is held, on the thread that forks, which passes the locks it holds (see
//!   [`BuddyAlloc::fork_prepare`]).
//!
//! # Why this module has `unsafe`
//!
//! Exporting unmangled symbols (`#[unsafe(no_mangle)]`) and taking raw pointers from C is
//! unsafe by nature; the functions themselves are thin calls into [`crate::malloc`].

use core::ffi::{c_int, c_void};
use core::fmt::Write;
use core::ptr::{self, NonNull};

use crate::BuddyAlloc;
use crate::malloc::{self, BuddyStats, CError, Line};
use crate::sync::{AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

/// The heap behind the C ABI, with the default [`Config`](crate::Config).
static HEAP: BuddyAlloc = BuddyAlloc::new();

/// Whether refused pointers are reported on stderr (`buddy_set_debug`).
static DEBUG: AtomicU8 = AtomicU8::new(0);

/// The fork handlers: 0 not registered, 1 being registered, 2 registered.
static FORK_HANDLERS: AtomicU8 = AtomicU8::new(0);

unsafe extern "C" fn fork_prepare() {
    HEAP.fork_prepare();
}

unsafe extern "C" fn fork_parent() {
    // SAFETY: registered as `pthread_atfork`'s parent handler, so this thread ran
    // `fork_prepare` just before the `fork`.
    unsafe { HEAP.fork_parent() };
}

unsafe extern "C" fn fork_child() {
    // SAFETY: registered as `pthread_atfork`'s child handler: this is the child of a `fork`
    // whose thread ran `fork_prepare` just before.
    unsafe { HEAP.fork_child() };
}

/// Registers the fork handlers when the library is loaded, before `main`, so that buddy's
/// hold the heap around the fork handlers a program registers (see the module docs).
extern "C" fn on_load() {
    fork_safe();
}

/// Runs [`on_load`] when the library (or a program linking it statically) is loaded. Where a
/// linker drops it, the first call that allocates registers the handlers instead.
#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

/// Registers the fork handlers unless done (by [`on_load`] or an earlier call). glibc's
/// `pthread_atfork` takes its memory from `malloc`, which is not this heap, and no lock of
/// ours is held here.
#[inline]
fn fork_safe() {
    if FORK_HANDLERS.load(Acquire) != 2 {
        register();
    }

    #[cold]
    fn register() {
        if FORK_HANDLERS
            .compare_exchange(0, 1, Acquire, Relaxed)
            .is_ok()
        {
            // On failure (ENOMEM) the next call tries again.
            let done = malloc::register_fork_handlers(fork_prepare, fork_parent, fork_child);
            FORK_HANDLERS.store(if done.is_ok() { 2 } else { 0 }, Release);
        }
    }
}

/// The pointer, or NULL with `errno` set.
fn c_result(r: Result<NonNull<c_void>, CError>) -> *mut c_void {
    match r {
        Ok(p) => p.as_ptr(),
        Err(e) => {
            malloc::set_errno(e.errno());
            ptr::null_mut()
        }
    }
}

/// Reports a refused pointer: a line on stderr in debug mode, and `errno = EINVAL`, set after
/// the write so that a write that fails (stderr closed) cannot change it.
fn refused(function: &str, ptr: *const c_void, e: CError) {
    if DEBUG.load(Relaxed) != 0 {
        let mut line = Line::new();
        // `Line` never fails; formatting integers and `&str`s does not allocate.
        let _ = writeln!(line, "buddy: {function}({ptr:p}) refused: {e}");
        line.write_to(2);
    }
    malloc::set_errno(e.errno());
}

/// `void *buddy_alloc(size_t size)`: a block of at least `size` bytes, aligned to 16; `size`
/// 0 gets a minimum block. NULL with `errno = ENOMEM` if there is no memory.
#[unsafe(no_mangle)]
pub extern "C" fn buddy_alloc(size: usize) -> *mut c_void {
    fork_safe();
    c_result(malloc::malloc(&HEAP, size))
}

/// `void *buddy_calloc(size_t n, size_t size)`: a zero-filled block for `n` elements of
/// `size` bytes. NULL with `errno = ENOMEM` if there is no memory or `n * size` overflows.
#[unsafe(no_mangle)]
pub extern "C" fn buddy_calloc(n: usize, size: usize) -> *mut c_void {
    fork_safe();
    c_result(malloc::calloc(&HEAP, n, size))
}

/// `void *buddy_aligned_alloc(size_t alignment, size_t size)`: a block aligned to
/// `alignment`, a power of two. NULL with `errno = EINVAL` for a bad alignment, `ENOMEM` if
/// there is no memory (or the alignment exceeds 64 MiB).
#[unsafe(no_mangle)]
pub extern "C" fn buddy_aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    fork_safe();
    c_result(malloc::aligned_alloc(&HEAP, alignment, size))
}

/// `void *buddy_realloc(void *ptr, size_t size)`: see the header. NULL `ptr` allocates;
/// `size` 0 frees `ptr` and returns NULL; failure returns NULL with `errno` set (`ENOMEM`, or
/// `EINVAL` for a pointer this heap did not hand out) and leaves `ptr` as it was.
///
/// # Safety
/// If `ptr` is a live block of this heap, nobody else uses it during the call, nor after a
/// successful call (unless it is returned).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn buddy_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    fork_safe();
    // SAFETY: the caller's contract is `malloc::realloc`'s.
    match unsafe { malloc::realloc(&HEAP, ptr, size) } {
        Ok(Some(p)) => p.as_ptr(),
        Ok(None) => ptr::null_mut(),
        Err(e @ CError::BadPointer(_)) => {
            refused("buddy_realloc", ptr, e);
            ptr::null_mut()
        }
        Err(e) => c_result(Err(e)),
    }
}

/// `int buddy_free(void *ptr)`: frees the block; NULL does nothing. Returns 0, or -1 with
/// `errno = EINVAL` (and nothing changed) for a pointer that is not the start of a live
/// block of this heap: a double free, an interior or a foreign pointer.
///
/// # Safety
/// If `ptr` is a live block of this heap, nobody uses it any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn buddy_free(ptr: *mut c_void) -> c_int {
    // SAFETY: the caller's contract is `malloc::free`'s.
    match unsafe { malloc::free(&HEAP, ptr) } {
        Ok(()) => 0,
        Err(e) => {
            refused("buddy_free", ptr, e);
            -1
        }
    }
}

/// `size_t buddy_usable_size(const void *ptr)`: the usable bytes of the block at `ptr`; 0 for
/// NULL, and 0 with `errno = EINVAL` for a pointer that is not the start of a live block.
#[unsafe(no_mangle)]
pub extern "C" fn buddy_usable_size(ptr: *const c_void) -> usize {
    match malloc::usable_size(&HEAP, ptr) {
        Ok(n) => n,
        Err(e) => {
            refused("buddy_usable_size", ptr, e);
            0
        }
    }
}

/// `int buddy_stats(struct buddy_stats *out)`: fills `*out` with the heap's statistics.
/// Returns 0, or -1 with `errno = EINVAL` if `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for writing a `struct buddy_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn buddy_stats(out: *mut BuddyStats) -> c_int {
    if out.is_null() {
        malloc::set_errno(CError::BadAlignment.errno());
        return -1;
    }
    let stats = BuddyStats::from(&HEAP.stats());
    // SAFETY: the caller's contract: `out` is valid for writing one `BuddyStats`
    // (`struct buddy_stats` has the same layout, checked on both sides).
    unsafe { out.write_unaligned(stats) };
    0
}

/// `int buddy_set_debug(int on)`: reports refused pointers on stderr from now on (`on` != 0)
/// or not (0, the default). Returns the previous setting.
#[unsafe(no_mangle)]
pub extern "C" fn buddy_set_debug(on: c_int) -> c_int {
    c_int::from(DEBUG.swap(u8::from(on != 0), Relaxed))
}
