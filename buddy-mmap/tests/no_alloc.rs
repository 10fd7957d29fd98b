//! No path of the crate touches the heap — success, failure, or printing an error — since it
//! runs inside a global allocator. A counting global allocator watches this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write;

use buddy_mmap::{Errno, FaultyOs, MmapError, Op, Region, page_size};

struct Counting;

thread_local! {
    /// Heap calls made by this thread while `WATCHING` is set.
    static CALLS: Cell<usize> = const { Cell::new(0) };
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the slots may be gone while a thread exits.
    let _ = WATCHING.try_with(|watching| {
        if watching.get() {
            let _ = CALLS.try_with(|calls| calls.set(calls.get() + 1));
        }
    });
}

// SAFETY: forwards to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap calls made by `f` on this thread.
fn heap_calls(f: impl FnOnce()) -> usize {
    CALLS.with(|c| c.set(0));
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    CALLS.with(|c| c.get())
}

/// A `fmt::Write` into a fixed buffer on the stack.
struct StackBuf {
    buf: [u8; 256],
    len: usize,
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[test]
fn the_counting_allocator_does_count() {
    let calls = heap_calls(|| drop(std::hint::black_box(Box::new(1u8))));
    assert_eq!(calls, 2);
}

#[test]
fn no_operation_allocates_whether_it_succeeds_or_fails() {
    static OS: FaultyOs = FaultyOs::new().fail_map_after(1);
    let page = page_size();
    // A reservation the OS refuses: 4 EiB on 64-bit targets. On 32-bit ones any size up to
    // `isize::MAX` may fit, so there the refusal is ours: half the address space overflows.
    let (huge_len, huge_text) = if cfg!(target_pointer_width = "64") {
        ((usize::MAX >> 2) + 1, "reserve 4 EiB: ENOMEM")
    } else {
        (
            (usize::MAX >> 1) + 1,
            "reserve 2 GiB: invalid argument: size overflows the address space",
        )
    };
    let mut out = StackBuf {
        buf: [0; 256],
        len: 0,
    };
    let calls = heap_calls(|| {
        let region = Region::reserve(16 * page).unwrap();
        let aligned = Region::reserve_aligned(page, 1 << 21).unwrap();
        // SAFETY: in bounds; only this test uses the regions.
        unsafe {
            region.as_ptr().write_bytes(3, region.len());
            region.purge(page, 4 * page).unwrap();
            aligned.as_ptr().write(1);
        }
        let _ = aligned.advise_huge();
        // SAFETY: expected to fail with nothing changed.
        let bad = unsafe { region.purge(1, page) }.unwrap_err();
        // Miri cannot even try the 4 EiB allocation: build the error it would give.
        let huge = if cfg!(miri) && cfg!(target_pointer_width = "64") {
            MmapError::Os {
                op: Op::Reserve { len: huge_len },
                errno: Errno::NOMEM,
            }
        } else {
            Region::reserve(huge_len).unwrap_err()
        };
        let zero = Region::reserve(0).unwrap_err();
        let faulty = Region::reserve_in(page, &OS).unwrap();
        let refused = Region::reserve_in(page, &OS).unwrap_err();
        for err in [bad, huge, zero, refused] {
            write!(out, "{err}|{err:?}|").unwrap();
            out.len = 0;
        }
        write!(out, "{huge}").unwrap();
        drop((region, aligned, faulty));
    });
    assert_eq!(calls, 0);
    assert_eq!(std::str::from_utf8(&out.buf[..out.len]).unwrap(), huge_text);
}
