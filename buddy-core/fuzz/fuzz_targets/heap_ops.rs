//! Arbitrary operation sequences against a shadow model, with `Heap::check()` after every step.
//!
//! Each input byte pair is one operation: alloc (size, alignment), sized dealloc, size-less
//! free, realloc, a bad free (interior, double, foreign), or a flush. Live blocks carry a
//! pattern that must survive; free memory is scribbled over between steps.
#![no_main]

use buddy_core::{Config, FreeError, Heap};
use core::alloc::Layout;
use core::ptr::NonNull;
use libfuzzer_sys::fuzz_target;

const LEN: usize = 1 << 16;

#[repr(C, align(4096))]
struct Arena([u8; LEN]);

struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    handed: usize,
    tag: u8,
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, ops)) = data.split_first() else { return };
    // Bit 0: minimum block; bit 1: exact fit off; bit 7: `Config::compact()` (runs from 513
    // bytes, the run cache and gap-filling placement busy); bits 2..7: the region's offset.
    let base_config = if cfg & 0x80 == 0 { Config::new() } else { Config::compact() };
    let config = base_config.min_block(if cfg & 1 == 0 { 16 } else { 64 }).exact_fit(cfg & 2 == 0);
    // Declared before the heap, so dropped after it.
    let mut arena = Box::new(Arena([0; LEN]));
    let base = arena.0.as_mut_ptr();
    let offset = (cfg >> 2 & 31) as usize * 8;
    let mut heap = Heap::with_config(config);
    // SAFETY: the arena outlives the heap and is used only by it.
    unsafe { heap.add_region(base.wrapping_add(offset), LEN - offset) }.unwrap();
    let initial = heap.stats();
    let mut live: Vec<Live> = Vec::new();
    let mut freed: Vec<NonNull<u8>> = Vec::new();
    let mut tag = 0u8;
    for op in ops.chunks(3) {
        let (a, b, c) = (op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0));
        let pick = |n: usize| (b as usize * 256 + c as usize) % n.max(1);
        match a % 8 {
            0..=2 => {
                let size = 1 + ((b as usize) << (c % 8)) + c as usize;
                let layout = Layout::from_size_align(size, 1 << (a / 8 % 10)).unwrap();
                if let Ok(p) = heap.alloc(layout) {
                    let handed = heap.usable_size(p).unwrap();
                    assert!(handed >= size && p.as_ptr() as usize % layout.align() == 0);
                    for l in &live {
                        let (x, y) = (p.as_ptr() as usize, l.ptr.as_ptr() as usize);
                        assert!(x + handed <= y || y + l.handed <= x, "overlap");
                    }
                    tag = tag.wrapping_add(1);
                    // SAFETY: a live block of `handed` bytes.
                    unsafe { p.as_ptr().write_bytes(tag, handed) };
                    freed.retain(|&f| f != p);
                    live.push(Live { ptr: p, layout, handed, tag });
                }
            }
            3 if !live.is_empty() => {
                let l = live.swap_remove(pick(live.len()));
                // SAFETY: live, allocated with this layout.
                unsafe { heap.dealloc(l.ptr, l.layout) };
                freed.push(l.ptr);
            }
            4 if !live.is_empty() => {
                let l = live.swap_remove(pick(live.len()));
                // SAFETY: `free` checks its pointer; this one is live.
                assert_eq!(unsafe { heap.free(l.ptr) }, Ok(l.handed));
                freed.push(l.ptr);
            }
            5 if !live.is_empty() => {
                let i = pick(live.len());
                let new_size = 1 + ((c as usize) << (b % 6));
                let l = &live[i];
                let (ptr, layout) = (l.ptr, l.layout);
                // SAFETY: live, allocated with this layout.
                if let Ok(p) = unsafe { heap.realloc(ptr, layout, new_size) } {
                    let keep = layout.size().min(new_size);
                    // SAFETY: p is live with at least `keep` bytes of the old contents.
                    assert!(unsafe { core::slice::from_raw_parts(p.as_ptr(), keep) }.iter().all(|&x| x == live[i].tag));
                    let handed = heap.usable_size(p).unwrap();
                    // SAFETY: p is live with `handed` bytes.
                    unsafe { p.as_ptr().write_bytes(live[i].tag, handed) };
                    if p != ptr {
                        freed.push(ptr);
                    }
                    freed.retain(|&f| f != p);
                    live[i] = Live { ptr: p, layout: Layout::from_size_align(new_size, layout.align()).unwrap(), handed, tag: live[i].tag };
                }
            }
            6 => {
                let before = heap.stats();
                let target = if !live.is_empty() && b % 2 == 0 {
                    let l = &live[pick(live.len())];
                    l.ptr.as_ptr().wrapping_add(1 + c as usize % l.handed.max(2))
                } else if let Some(&f) = freed.last() {
                    f.as_ptr()
                } else {
                    base.wrapping_add(pick(LEN))
                };
                let inside_live = live.iter().any(|l| l.ptr.as_ptr() == target);
                if !inside_live {
                    if let Some(t) = NonNull::new(target) {
                        // SAFETY: `free` checks its pointer; this one is not a live block's start.
                        let r = unsafe { heap.free(t) };
                        assert!(matches!(r, Err(FreeError::Interior | FreeError::DoubleFree | FreeError::Foreign)), "{r:?}");
                        assert_eq!(heap.stats(), before);
                    }
                }
            }
            _ => heap.flush(),
        }
        heap.check().unwrap();
        for l in &live {
            // SAFETY: live blocks.
            let bytes = unsafe { core::slice::from_raw_parts(l.ptr.as_ptr(), l.handed) };
            assert!(bytes.iter().all(|&x| x == l.tag), "block clobbered");
        }
    }
    for l in live.drain(..) {
        // SAFETY: live allocation.
        unsafe { heap.free(l.ptr) }.unwrap();
    }
    heap.flush();
    heap.check().unwrap();
    assert_eq!(heap.stats().free_blocks, initial.free_blocks);
});
