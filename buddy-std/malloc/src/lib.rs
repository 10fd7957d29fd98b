//! `libbuddy_malloc.so`: the whole process heap swapped for buddy, without recompiling.
//!
//! ```sh
//! cargo build --release -p buddy-malloc
//! LD_PRELOAD=$PWD/target/release/libbuddy_malloc.so python3 script.py
//! ```
//!
//! Exports the functions glibc's manual lists for replacing `malloc` — `malloc`, `free`,
//! `calloc`, `realloc`, `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`,
//! `malloc_usable_size` — with the C semantics of [`buddy_std::malloc`], over one `static`
//! [`BuddyAlloc`] with the default configuration but for [`ShardBy::Stack`] (see
//! Limitations) and [`Config::compact`] (see Choices). glibc's own functions that allocate
//! (`strdup`, `reallocarray`, `fopen`, …) call these through the dynamic linker, so the
//! whole process uses buddy. It is also this library's `#[global_allocator]`: what Rust's
//! `std` allocates inside the library comes from the same heap, never from glibc's `malloc`.
//!
//! Also exported: `buddy_malloc_stats(struct buddy_stats *)` (see `buddy_alloc.h`), to tell
//! that the library is in use and how its heap is doing.
//!
//! # Choices where C leaves room
//!
//! - The heap is compact ([`Config::compact`]): requests above 512 bytes take exact-fit runs
//!   of buddy blocks, and runs of one size lie end to end. C programs make many requests of
//!   one size a little above a power of two (python3's `bytes(1000)` is a `calloc` of 1,033
//!   bytes), where a 2 KiB block each would touch twice the pages. Measured under
//!   `LD_PRELOAD` (CPU time, medians of 5 interleaved runs): python3's test-pass script 1.05 s
//!   and 279k page faults with the default configuration, 1.03 s and 249k compact (glibc
//!   0.97 s and 233k); sqlite3's build 0.82 s, 0.78 s compact (glibc 0.73 s).
//! - `malloc(0)` returns a unique minimum block (16 bytes), as glibc does.
//! - `realloc(p, 0)` frees `p` and returns NULL, as glibc does.
//! - `free`, `realloc` and `malloc_usable_size` of a pointer this heap did not hand out
//!   (double free, interior or foreign pointer) change nothing: `free` ignores it, `realloc`
//!   returns NULL with `errno = EINVAL`, `malloc_usable_size` returns 0. glibc aborts the
//!   process instead; here they are counted (see the report below).
//! - `memalign` rounds an alignment that is not a power of two up to one, as glibc does;
//!   `aligned_alloc` refuses it (`EINVAL`: C17 leaves the choice to the implementation);
//!   `posix_memalign` returns
//!   `EINVAL` unless it is a power of two and a multiple of `sizeof(void *)` (POSIX).
//! - Alignments above 64 MiB (the chunk size) get NULL with `ENOMEM`.
//!
//! # Safe where a process heap gets hurt
//!
//! - **Threads**: the heap is buddy-std's (shards of chunks, a lock per chunk); a block may be
//!   freed by any thread, it goes back to the chunk it came from.
//! - **`fork()` while other threads allocate**: a library constructor registers
//!   `pthread_atfork` handlers ([`BuddyAlloc::fork_prepare`] & co.) that take every lock of
//!   the heap before the fork and give them back in the parent and the child, so the child
//!   never inherits a lock held by a thread it does not have, nor a half-updated heap.
//!   Other fork handlers may allocate, whenever they were registered: one registered after
//!   buddy's runs its `prepare` before buddy's and its `parent`/`child` after; one registered
//!   before (by the constructor of a library initialised earlier) runs while buddy's hold
//!   the heap, on the thread that forks, which passes the locks it holds (see
//!   [`BuddyAlloc::fork_prepare`]).
//! - **Early calls**: `malloc` works from the first call the dynamic linker or libc makes,
//!   before any constructor: the heap is a `const`-initialised `static` that reserves its
//!   memory on first use, with `mmap` through rustix (raw system calls) and the page size
//!   from `sysconf`. Nothing on any path allocates: no `std::io`, no formatting to the heap, no
//!   thread-local with a destructor, no panic (the paths do not panic, and a panic could not
//!   unwind out of an `extern "C"` function anyway: it aborts).
//!
//! # Limitations
//!
//! - Threads find their shard by the address of their stack
//!   ([`ShardBy::Stack`]), not by buddy-std's default round-robin thread ordinal: that
//!   ordinal is a Rust `thread_local!`, which in a shared library is dynamic TLS, reached
//!   through glibc's `__tls_get_addr`, and after a program has `dlopen`ed enough libraries
//!   with TLS of their own that a thread's TLS vector must grow, glibc (2.36 here) may call
//!   `malloc` from inside `__tls_get_addr`, re-entering this library from its own `malloc`.
//!   (Allocators written in C avoid it with the `initial-exec` TLS model, which stable Rust
//!   cannot select.) The cost: two threads may share a shard while others are free.
//! - Alignments above 64 MiB get NULL; 64 GiB of address space is reserved on first use
//!   (halved until the OS agrees, e.g. under `ulimit -v`), as for any `BuddyAlloc`.
//!
//! # Diagnostics
//!
//! With `BUDDY_MALLOC_STATS=<file>` in the environment, each process appends one line to
//! `<file>` when it exits (from a destructor, with `open`/`write`: no allocation):
//!
//! ```text
//! buddy-malloc: pid 1234: 51234 allocations, 50981 frees, 253 live, 0 failed, 0 bad frees, peak 8388608 bytes, 2 chunks
//! ```
//!
//! `cargo xtask test` uses it to check that a program really ran on buddy (and never freed a
//! pointer buddy did not hand out).
//!
//! # Why this crate is `unsafe`
//!
//! Exporting `malloc` & co. unmangled, the constructor and destructor entries
//! (`.init_array`, `.fini_array`) and the `open`/`write`/`getenv` calls are unsafe by
//! nature. Every function is a thin call into [`buddy_std::malloc`].
#![allow(unsafe_code)]

use core::ffi::{CStr, c_char, c_int, c_void};
use core::fmt::Write;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use buddy_std::buddy_mmap::page_size;
use buddy_std::malloc::{self as c, BuddyStats, CError, Line, MIN_ALIGN};
use buddy_std::{BuddyAlloc, Config, ShardBy};

/// The process heap, and this library's Rust global allocator. Threads find their shard by
/// their stack's address, not a thread-local (see the crate docs, Limitations).
/// Compact (the crate docs, Choices, say why).
#[global_allocator]
static HEAP: BuddyAlloc =
    BuddyAlloc::with_config(Config::new().shard_by(ShardBy::Stack).compact(true));

/// Pointers given to `free`/`realloc`/`malloc_usable_size` that this heap never handed out.
static BAD_POINTERS: AtomicUsize = AtomicUsize::new(0);

fn ptr_or_errno(r: Result<NonNull<c_void>, CError>) -> *mut c_void {
    match r {
        Ok(p) => p.as_ptr(),
        Err(e) => {
            c::set_errno(e.errno());
            ptr::null_mut()
        }
    }
}

fn bad_pointer() {
    BAD_POINTERS.fetch_add(1, Relaxed);
}

/// `malloc(size)`.
#[unsafe(no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    ptr_or_errno(c::malloc(&HEAP, size))
}

/// `calloc(n, size)`: NULL with `ENOMEM` if `n * size` overflows.
#[unsafe(no_mangle)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    ptr_or_errno(c::calloc(&HEAP, n, size))
}

/// `free(ptr)`: NULL does nothing; a pointer this heap did not hand out is ignored (and
/// counted).
///
/// # Safety
/// If `ptr` is a live block of this heap, nobody uses it any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: the caller's contract is `c::free`'s.
    if unsafe { c::free(&HEAP, ptr) }.is_err() {
        bad_pointer();
    }
}

/// `realloc(ptr, size)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and
/// returns NULL; on failure NULL with `errno` set, and `ptr` untouched.
///
/// # Safety
/// If `ptr` is a live block of this heap, nobody else uses it during the call, nor after a
/// successful call (unless it is returned).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract is `c::realloc`'s.
    match unsafe { c::realloc(&HEAP, ptr, size) } {
        Ok(Some(p)) => p.as_ptr(),
        Ok(None) => ptr::null_mut(),
        Err(e) => {
            if matches!(e, CError::BadPointer(_)) {
                bad_pointer();
            }
            ptr_or_errno(Err(e))
        }
    }
}

/// `posix_memalign(memptr, alignment, size)`: 0, or `EINVAL` (alignment not a power of two
/// multiple of `sizeof(void *)`) or `ENOMEM`, with `*memptr` untouched. `errno` is not set.
///
/// # Safety
/// `memptr` is valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> c_int {
    if !alignment.is_power_of_two() || alignment % size_of::<*mut c_void>() != 0 {
        return c::refuse(&HEAP, CError::BadAlignment).errno();
    }
    match c::aligned_alloc(&HEAP, alignment, size) {
        Ok(p) => {
            // SAFETY: the caller's contract.
            unsafe { memptr.write(p.as_ptr()) };
            0
        }
        Err(e) => e.errno(),
    }
}

/// `aligned_alloc(alignment, size)`: NULL with `EINVAL` if `alignment` is not a power of two.
#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    ptr_or_errno(c::aligned_alloc(&HEAP, alignment, size))
}

/// `memalign(alignment, size)`: like glibc, an alignment that is not a power of two is
/// rounded up to one (NULL with `EINVAL` if there is none).
#[unsafe(no_mangle)]
pub extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    let Some(alignment) = alignment.max(MIN_ALIGN).checked_next_power_of_two() else {
        return ptr_or_errno(Err(c::refuse(&HEAP, CError::BadAlignment)));
    };
    ptr_or_errno(c::aligned_alloc(&HEAP, alignment, size))
}

/// `valloc(size)`: page-aligned.
#[unsafe(no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    ptr_or_errno(c::aligned_alloc(&HEAP, page_size(), size))
}

/// `pvalloc(size)`: page-aligned, `size` rounded up to whole pages (a page for 0).
#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    let Some(size) = size.max(1).checked_next_multiple_of(page) else {
        return ptr_or_errno(Err(c::refuse(&HEAP, CError::OutOfMemory)));
    };
    ptr_or_errno(c::aligned_alloc(&HEAP, page, size))
}

/// `malloc_usable_size(ptr)`: 0 for NULL and for a pointer this heap did not hand out.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    c::usable_size(&HEAP, ptr).unwrap_or_else(|_| {
        bad_pointer();
        0
    })
}

/// `int buddy_malloc_stats(struct buddy_stats *out)`: this heap's statistics (see
/// `buddy_alloc.h`); -1 with `EINVAL` if `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for writing a `struct buddy_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn buddy_malloc_stats(out: *mut BuddyStats) -> c_int {
    if out.is_null() {
        c::set_errno(CError::BadAlignment.errno());
        return -1;
    }
    // SAFETY: the caller's contract.
    unsafe { out.write_unaligned(BuddyStats::from(&HEAP.stats())) };
    0
}

// ----- fork handlers, constructor and destructor -----

unsafe extern "C" fn fork_prepare() {
    HEAP.fork_prepare();
}

unsafe extern "C" fn fork_parent() {
    // SAFETY: registered as `pthread_atfork`'s parent handler: this thread ran `fork_prepare`
    // just before the fork.
    unsafe { HEAP.fork_parent() };
}

unsafe extern "C" fn fork_child() {
    // SAFETY: registered as `pthread_atfork`'s child handler: this is the child of a fork
    // whose thread ran `fork_prepare` just before.
    unsafe { HEAP.fork_child() };
}

mod libc {
    use core::ffi::{c_char, c_int, c_uint};

    pub(crate) const O_WRONLY: c_int = 0o1;
    pub(crate) const O_CREAT: c_int = 0o100;
    pub(crate) const O_APPEND: c_int = 0o2000;
    pub(crate) const O_CLOEXEC: c_int = 0o2000000;

    unsafe extern "C" {
        pub(crate) fn getenv(name: *const c_char) -> *const c_char;
        pub(crate) fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
        pub(crate) fn close(fd: c_int) -> c_int;
        pub(crate) fn getpid() -> c_int;
    }
}

/// Where to append the exit report (`BUDDY_MALLOC_STATS`), NUL-terminated; empty: nowhere.
/// Written once by the constructor, before any thread the program starts; read by the
/// destructor.
struct ReportPath(core::cell::UnsafeCell<[u8; 512]>);

// SAFETY: written only by the constructor, which runs once, on the main thread, before the
// program can start another thread; only read after that.
unsafe impl Sync for ReportPath {}

static REPORT_PATH: ReportPath = ReportPath(core::cell::UnsafeCell::new([0; 512]));

/// The constructor: registers the fork handlers and reads the environment. It runs after
/// libc is initialised (so `pthread_atfork` and `getenv` may be called; `pthread_atfork` may
/// call `malloc`, which is this library's and works by then), before `main`.
extern "C" fn init() {
    // On failure (ENOMEM) forks are no safer than under glibc without handlers; nothing to do.
    let _ = c::register_fork_handlers(fork_prepare, fork_parent, fork_child);
    // SAFETY: a NUL-terminated name; the result is NULL or a NUL-terminated string that
    // stays valid at least until the environment is changed, and we copy it now.
    let value = unsafe { libc::getenv(c"BUDDY_MALLOC_STATS".as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: non-null, NUL-terminated (see above).
    let value = unsafe { CStr::from_ptr(value) }.to_bytes();
    // SAFETY: see `ReportPath`: no other thread exists yet, nothing reads it concurrently.
    let path = unsafe { &mut *REPORT_PATH.0.get() };
    if let Some(dst) = path.get_mut(..value.len()) {
        // A path too long for the buffer is ignored: the buffer stays empty.
        if value.len() < 512 {
            dst.copy_from_slice(value);
        }
    }
}

/// The destructor: appends the report line to `BUDDY_MALLOC_STATS`, if set.
extern "C" fn fini() {
    // SAFETY: see `ReportPath`: only read now.
    let path = unsafe { &*REPORT_PATH.0.get() };
    if path[0] == 0 {
        return;
    }
    let s = HEAP.stats();
    let mut line = Line::new();
    // SAFETY: `getpid` has no preconditions.
    let pid = unsafe { libc::getpid() };
    // `Line` never fails; formatting integers does not allocate.
    let _ = writeln!(
        line,
        "buddy-malloc: pid {pid}: {} allocations, {} frees, {} live, {} failed, {} bad frees, \
         peak {} bytes, {} chunks",
        s.heap.allocations,
        s.heap.frees,
        s.live_allocations(),
        s.heap.failed_requests,
        BAD_POINTERS.load(Relaxed),
        s.heap.high_water_bytes,
        s.os.chunks,
    );
    let path = path.as_ptr().cast::<c_char>();
    // SAFETY: `path` is NUL-terminated (the buffer is zeroed past the copied bytes).
    let fd = unsafe {
        libc::open(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd >= 0 {
        line.write_to(fd);
        // SAFETY: `fd` was opened above and is closed once.
        unsafe { libc::close(fd) };
    }
}

/// Runs [`init`] when the library is loaded.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

/// Runs [`fini`] when the process exits.
#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;
