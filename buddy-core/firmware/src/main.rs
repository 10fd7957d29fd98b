//! The smallest firmware-style use of `buddy-core`: a heap over a `static` buffer, blocks
//! allocated, written and freed (sized and size-less), a panic handler, no `std`, no `alloc`.
//!
//! Built for `thumbv7em-none-eabihf` (Cortex-M4F) with `opt-level = "s"` and LTO, it measures
//! what the allocator costs in flash: `cargo xtask test` prints the `.text` size of this
//! binary, and the README quotes it. Sizes and counts go through `black_box` so that the
//! compiler cannot fold the allocator away.
#![no_std]
#![no_main]

use core::alloc::Layout;
use core::hint::black_box;
use core::mem::MaybeUninit;
use core::panic::PanicInfo;

use buddy_core::Heap;

/// Bytes of RAM given to the heap (its metadata is carved off the front).
const HEAP_BYTES: usize = 16 * 1024;

/// The heap's memory.
static mut ARENA: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];

/// The heap: a `static` (a `Heap` is a few KiB, too much for a small stack).
static mut HEAP: Heap = Heap::new();

/// The reset handler: sets up the heap, then allocates and frees forever.
#[unsafe(no_mangle)]
pub extern "C" fn reset() -> ! {
    // SAFETY: single-threaded firmware without interrupts: this is the only reference to
    // HEAP, for the life of the program.
    let heap = unsafe { &mut *(&raw mut HEAP) };
    // SAFETY: ARENA is used by nothing but this heap, for the life of the program.
    if unsafe { heap.add_region((&raw mut ARENA).cast(), black_box(HEAP_BYTES)) }.is_err() {
        halt();
    }
    loop {
        let size = black_box(100);
        let Ok(layout) = Layout::from_size_align(size, black_box(8)) else {
            halt();
        };
        let (Ok(a), Ok(b)) = (heap.alloc(layout), heap.alloc(layout)) else {
            halt();
        };
        // SAFETY: `a` and `b` are live blocks of at least `size` bytes each.
        unsafe {
            a.as_ptr().write_bytes(0xA5, size);
            b.as_ptr().write_bytes(0x5A, size);
        }
        black_box((a, b));
        // SAFETY: `a` is live, allocated with `layout`; nothing uses it any more.
        unsafe { heap.dealloc(a, layout) };
        // SAFETY: `b` is live; nothing uses it any more. `free` finds its size itself.
        if unsafe { heap.free(b) }.is_err() {
            halt();
        }
    }
}

/// The vector table's reset entry (the linker script puts the initial stack pointer before it).
#[unsafe(link_section = ".vector_table.reset")]
#[unsafe(no_mangle)]
#[used]
pub static RESET: extern "C" fn() -> ! = reset;

/// Stops here; a debugger shows where.
fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    halt()
}
