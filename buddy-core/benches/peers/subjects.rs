//! The allocators under test, behind one small trait, and the floor pool.
//!
//! Every subject is set up over the same region (except `System`, which has none) and is
//! driven through [`Subject`], whose methods are `#[inline]` so that each workload loop is
//! monomorphised per allocator: no dynamic dispatch in the timed code.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::{self, NonNull};

use buddy_core::{Config, Heap, metadata_words};

/// Memory handed to a subject: the same for every allocator of a cell.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// Start (aligned to the largest region size the bench uses).
    pub ptr: *mut u8,
    /// Length in bytes.
    pub len: usize,
}

/// What a workload asks of the subject besides the region.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Largest alignment the workload requests (buddy-alloc's leaf size follows it).
    pub max_align: usize,
}

/// An allocator as the workloads drive it. Null means "refused".
pub trait Subject: Sized {
    /// Builds the allocator over `region`.
    ///
    /// # Safety
    /// - `region` is valid for reads and writes and used by nothing else while `Self` lives.
    unsafe fn new(region: Region, setup: Setup) -> Result<Self, String>;
    /// Allocates (`l.size() > 0`).
    fn alloc(&mut self, l: Layout) -> *mut u8;
    /// Frees.
    ///
    /// # Safety
    /// - `p` is a live block of this allocator, allocated (or last reallocated) with `l`.
    unsafe fn free(&mut self, p: *mut u8, l: Layout);
    /// Resizes, moving if needed; null (and `p` still valid) on failure.
    ///
    /// # Safety
    /// - As [`free`](Subject::free); `new_size > 0`.
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8;
    /// Whether blocks come from the region (false: `System`).
    fn uses_region(&self) -> bool {
        true
    }
}

/// `realloc` as `GlobalAlloc` does it by default: allocate, copy, free.
///
/// # Safety
/// - As [`Subject::realloc`].
#[inline]
unsafe fn move_realloc<A: Subject>(a: &mut A, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
    let Ok(nl) = Layout::from_size_align(new_size, l.align()) else {
        return ptr::null_mut();
    };
    let q = a.alloc(nl);
    if !q.is_null() {
        // SAFETY: `p` is live with `l.size()` bytes, `q` fresh with `new_size`; distinct blocks.
        unsafe { ptr::copy_nonoverlapping(p, q, l.size().min(new_size)) };
        // SAFETY: the caller's contract; `p` is no longer used.
        unsafe { a.free(p, l) };
    }
    q
}

/// Which configuration of buddy-core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuddyCfg {
    /// `Heap::new()`: 16-byte blocks, exact fit, metadata carved off the region.
    Default,
    /// Page frames: `min_block(4096).exact_fit(false)`, metadata in a separate slice.
    Frames,
    /// `exact_fit(false)`: every request rounded up to a power of two (efficiency only).
    Pow2,
    /// `Config::compact()`: exact fit above 512 bytes, 5 pieces.
    Compact,
}

/// buddy-core's [`Heap`].
pub struct Buddy(Box<Heap>);

impl Buddy {
    /// Builds over `region` with `cfg`.
    ///
    /// # Safety
    /// As [`Subject::new`].
    pub unsafe fn with(region: Region, cfg: BuddyCfg) -> Result<Buddy, String> {
        match cfg {
            BuddyCfg::Default => {
                let mut h = Box::new(Heap::new());
                // SAFETY: the caller hands us the region for our exclusive use.
                unsafe { h.add_region(region.ptr, region.len) }.map_err(|e| e.to_string())?;
                Ok(Buddy(h))
            }
            BuddyCfg::Pow2 => {
                let mut h = Box::new(Heap::with_config(Config::new().exact_fit(false)));
                // SAFETY: the caller hands us the region for our exclusive use.
                unsafe { h.add_region(region.ptr, region.len) }.map_err(|e| e.to_string())?;
                Ok(Buddy(h))
            }
            BuddyCfg::Compact => {
                let mut h = Box::new(Heap::with_config(Config::compact()));
                // SAFETY: the caller hands us the region for our exclusive use.
                unsafe { h.add_region(region.ptr, region.len) }.map_err(|e| e.to_string())?;
                Ok(Buddy(h))
            }
            BuddyCfg::Frames => {
                let mut h = Box::new(Heap::with_config(
                    Config::new().min_block(4096).exact_fit(false),
                ));
                // Leaked once per setup: a few KiB at 4 KiB blocks.
                let meta = vec![0u64; metadata_words(region.len, 4096)].leak();
                // SAFETY: as above; `meta` is a fresh allocation outside the region.
                unsafe { h.add_region_with_metadata(region.ptr, region.len, meta) }
                    .map_err(|e| e.to_string())?;
                Ok(Buddy(h))
            }
        }
    }
}

/// buddy-core, default configuration.
pub struct BuddyDefault(pub Buddy);
/// buddy-core, page-frame configuration.
pub struct BuddyFrames(pub Buddy);
/// buddy-core, exact fit off.
pub struct BuddyPow2(pub Buddy);
/// buddy-core, `Config::compact()`.
pub struct BuddyCompact(pub Buddy);

macro_rules! buddy_subject {
    ($t:ident, $cfg:expr) => {
        impl Subject for $t {
            unsafe fn new(region: Region, _: Setup) -> Result<Self, String> {
                // SAFETY: forwarded contract.
                unsafe { Buddy::with(region, $cfg) }.map($t)
            }
            #[inline]
            fn alloc(&mut self, l: Layout) -> *mut u8 {
                self.0.0.alloc(l).map_or(ptr::null_mut(), NonNull::as_ptr)
            }
            #[inline]
            unsafe fn free(&mut self, p: *mut u8, l: Layout) {
                // SAFETY: forwarded contract (`p` live, allocated with `l`, so non-null).
                unsafe { self.0.0.dealloc(NonNull::new_unchecked(p), l) }
            }
            #[inline]
            unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
                // SAFETY: forwarded contract.
                unsafe { self.0.0.realloc(NonNull::new_unchecked(p), l, n) }
                    .map_or(ptr::null_mut(), NonNull::as_ptr)
            }
        }
    };
}
buddy_subject!(BuddyDefault, BuddyCfg::Default);
buddy_subject!(BuddyFrames, BuddyCfg::Frames);
buddy_subject!(BuddyPow2, BuddyCfg::Pow2);
buddy_subject!(BuddyCompact, BuddyCfg::Compact);

/// `buddy_system_allocator::Heap` (orders up to 2^31 bytes).
pub struct Bsa(Box<buddy_system_allocator::Heap<32>>);

impl Subject for Bsa {
    unsafe fn new(region: Region, _: Setup) -> Result<Self, String> {
        let mut h = Box::new(buddy_system_allocator::Heap::<32>::empty());
        // SAFETY: the region is ours, valid and disjoint from anything else.
        unsafe { h.init(region.ptr as usize, region.len) };
        Ok(Bsa(h))
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0.alloc(l).map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(NonNull::new_unchecked(p), l) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, p, l, n) }
    }
}

/// `talc` 5 (`Talc<Manual, DefaultBinning>`), realloc as its `TalcLock` does it.
pub struct Talc(Box<talc::base::Talc<talc::source::Manual, talc::DefaultBinning>>);

impl Subject for Talc {
    unsafe fn new(region: Region, _: Setup) -> Result<Self, String> {
        let mut t = Box::new(talc::base::Talc::new(talc::source::Manual));
        // SAFETY: the region is ours for as long as the allocator lives.
        unsafe { t.claim(region.ptr, region.len) }.ok_or("talc: claim failed")?;
        Ok(Talc(t))
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        // SAFETY: workloads never ask for zero bytes.
        unsafe { self.0.allocate(l) }.map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.deallocate(p, l) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        if unsafe { self.0.try_realloc_in_place(p, l, n) } {
            return p;
        }
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, p, l, n) }
    }
}

/// `rlsf::Tlsf` with 24 first-level and 32 second-level classes (blocks up to 512 MiB).
pub struct Rlsf(Box<rlsf::Tlsf<'static, u32, u32, 24, 32>>);

impl Subject for Rlsf {
    unsafe fn new(region: Region, _: Setup) -> Result<Self, String> {
        let mut t = Box::new(rlsf::Tlsf::new());
        let block = NonNull::slice_from_raw_parts(
            NonNull::new(region.ptr).ok_or("null region")?,
            region.len,
        );
        // SAFETY: the region is ours for as long as the allocator lives.
        unsafe { t.insert_free_block_ptr(block) }.ok_or("rlsf: region too small")?;
        Ok(Rlsf(t))
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0.allocate(l).map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.deallocate(NonNull::new_unchecked(p), l.align()) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let Ok(nl) = Layout::from_size_align(n, l.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: forwarded contract; same alignment.
        unsafe { self.0.reallocate(NonNull::new_unchecked(p), nl) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}

/// `linked_list_allocator::Heap` (first fit over an address-ordered hole list).
pub struct Lla(linked_list_allocator::Heap);

impl Subject for Lla {
    unsafe fn new(region: Region, _: Setup) -> Result<Self, String> {
        let mut h = linked_list_allocator::Heap::empty();
        // SAFETY: the region is ours for as long as the allocator lives.
        unsafe { h.init(region.ptr, region.len) };
        Ok(Lla(h))
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0
            .allocate_first_fit(l)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.deallocate(NonNull::new_unchecked(p), l) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, p, l, n) }
    }
}

/// `buddy-alloc`'s `BuddyAlloc`. It has no alignment parameter: blocks are aligned to the
/// leaf size only (relative to a leaf-aligned base), so the leaf is the workload's largest
/// alignment, clamped to 16..=4096 (larger alignments fail the self-check).
pub struct BuddyAllocCrate(buddy_alloc::buddy_alloc::BuddyAlloc);

impl Subject for BuddyAllocCrate {
    unsafe fn new(region: Region, setup: Setup) -> Result<Self, String> {
        let leaf = setup.max_align.clamp(16, 4096);
        let p = buddy_alloc::BuddyAllocParam::new(region.ptr, region.len, leaf);
        // SAFETY: the region is ours for as long as the allocator lives.
        Ok(BuddyAllocCrate(unsafe {
            buddy_alloc::buddy_alloc::BuddyAlloc::new(p)
        }))
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0.malloc(l.size())
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, _: Layout) {
        self.0.free(p)
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, p, l, n) }
    }
}

/// The floor: power-of-two size classes, an intrusive LIFO free list per class, and a bump
/// pointer over the region when a list is empty. No splitting, no merging, no checks: about
/// the least work an allocator can do per call.
pub struct Floor {
    heads: [*mut u8; 64],
    base: *mut u8,
    bump: usize,
    end: usize,
}

impl Floor {
    #[inline]
    fn class(l: Layout) -> usize {
        l.size().max(l.align()).max(16).next_power_of_two()
    }
}

impl Subject for Floor {
    unsafe fn new(region: Region, _: Setup) -> Result<Self, String> {
        Ok(Floor {
            heads: [ptr::null_mut(); 64],
            base: region.ptr,
            bump: region.ptr as usize,
            end: region.ptr as usize + region.len,
        })
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        let c = Floor::class(l);
        let k = c.trailing_zeros() as usize;
        let h = self.heads[k];
        if !h.is_null() {
            // SAFETY: a free block of this class holds the next pointer in its first word.
            self.heads[k] = unsafe { h.cast::<*mut u8>().read() };
            return h;
        }
        let start = (self.bump + c - 1) & !(c - 1);
        if start > self.end || self.end - start < c {
            return ptr::null_mut();
        }
        self.bump = start + c;
        self.base.wrapping_add(start - self.base as usize)
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, l: Layout) {
        let k = Floor::class(l).trailing_zeros() as usize;
        // SAFETY: `p` is a dead block of at least 16 bytes, aligned to its class (>= 16).
        unsafe { p.cast::<*mut u8>().write(self.heads[k]) };
        self.heads[k] = p;
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        match Layout::from_size_align(n, l.align()) {
            Ok(nl) if Floor::class(nl) == Floor::class(l) => p,
            // SAFETY: forwarded contract.
            _ => unsafe { move_realloc(self, p, l, n) },
        }
    }
}

/// Not an allocator: what the copies of a script's reallocs cost by themselves. A bump
/// pointer that wraps around the region hands out every block; free does nothing; a realloc
/// whose power-of-two class (of `max(size, align, 16)`) does not change keeps the block, as
/// buddy's cache and the floor do, and any other moves `min(old, new)` bytes to the bump
/// pointer. Blocks are overwritten once the pointer wraps, so it never runs the self-check
/// and is not a peer: `scaling` times it beside the allocators as the cost that any allocator
/// which moves those reallocs pays (its sequential destinations make it a low estimate).
pub struct Mover {
    base: *mut u8,
    len: usize,
    bump: usize,
}

impl Mover {
    #[inline]
    fn class(l: Layout) -> usize {
        l.size().max(l.align()).max(16).next_power_of_two()
    }
}

impl Subject for Mover {
    unsafe fn new(region: Region, _: Setup) -> Result<Self, String> {
        Ok(Mover {
            base: region.ptr,
            len: region.len,
            bump: 0,
        })
    }
    /// Reserves the whole class, so that a block a realloc kept (same class, larger size)
    /// still ends inside the region.
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        let c = Mover::class(l);
        let mut start = (self.bump + l.align() - 1) & !(l.align() - 1);
        if start + c > self.len {
            start = 0;
        }
        self.bump = start + c;
        self.base.wrapping_add(start)
    }
    #[inline]
    unsafe fn free(&mut self, _: *mut u8, _: Layout) {}
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let Ok(nl) = Layout::from_size_align(n, l.align()) else {
            return ptr::null_mut();
        };
        if Mover::class(nl) == Mover::class(l) {
            return p;
        }
        let q = self.alloc(nl);
        // SAFETY: `p` and `q` start blocks whose whole class (at least `min(old, new)` bytes)
        // lies in the region; they may overlap after a wrap, hence `copy`, not the
        // nonoverlapping one.
        unsafe { ptr::copy(p, q, l.size().min(n)) };
        q
    }
}

/// `std::alloc::System` (glibc malloc here). It ignores the region.
pub struct Sys;

impl Subject for Sys {
    unsafe fn new(_: Region, _: Setup) -> Result<Self, String> {
        Ok(Sys)
    }
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        // SAFETY: non-zero size.
        unsafe { System.alloc(l) }
    }
    #[inline]
    unsafe fn free(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) }
    }
    #[inline]
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { System.realloc(p, l, n) }
    }
    fn uses_region(&self) -> bool {
        false
    }
}

/// Every subject, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Who {
    /// buddy-core, default configuration.
    Buddy,
    /// buddy-core, page-frame configuration (frames workload only).
    BuddyFrames,
    /// buddy-core with exact fit off (efficiency only).
    BuddyPow2,
    /// buddy-core, `Config::compact()`.
    BuddyCompact,
    /// buddy_system_allocator.
    Bsa,
    /// talc.
    Talc,
    /// rlsf.
    Rlsf,
    /// linked_list_allocator.
    Lla,
    /// buddy-alloc.
    BuddyAlloc,
    /// The floor pool.
    Floor,
    /// std's System allocator.
    System,
}

impl Who {
    /// Short name for tables and files.
    pub fn name(self) -> &'static str {
        match self {
            Who::Buddy => "buddy",
            Who::BuddyFrames => "buddy (frames cfg)",
            Who::BuddyPow2 => "buddy (exact fit off)",
            Who::BuddyCompact => "buddy (compact cfg)",
            Who::Bsa => "buddy_system_allocator",
            Who::Talc => "talc",
            Who::Rlsf => "rlsf",
            Who::Lla => "linked_list_allocator",
            Who::BuddyAlloc => "buddy-alloc",
            Who::Floor => "floor",
            Who::System => "System",
        }
    }

    /// Key for `--only`: a family name, `family:variant` for other configurations.
    pub fn key(self) -> &'static str {
        match self {
            Who::Buddy => "buddy",
            Who::BuddyFrames => "buddy:frames",
            Who::BuddyPow2 => "buddy:pow2",
            Who::BuddyCompact => "buddy:compact",
            Who::Bsa => "bsa",
            Who::Talc => "talc",
            Who::Rlsf => "rlsf",
            Who::Lla => "lla",
            Who::BuddyAlloc => "buddy-alloc",
            Who::Floor => "floor",
            Who::System => "system",
        }
    }

    /// A buddy-core configuration.
    pub fn is_buddy(self) -> bool {
        matches!(
            self,
            Who::Buddy | Who::BuddyFrames | Who::BuddyPow2 | Who::BuddyCompact
        )
    }
}

/// A piece of work that can run on any subject: monomorphised per allocator by [`dispatch`].
pub trait Job {
    /// What one run yields.
    type Out;
    /// Setup for the subject.
    fn setup(&self) -> Setup;
    /// Runs on a fresh subject.
    fn run<A: Subject>(&mut self, a: &mut A) -> Self::Out;
}

/// Builds `who` over `region` and runs `job` on it.
pub fn dispatch<J: Job>(who: Who, region: Region, job: &mut J) -> Result<J::Out, String> {
    fn go<A: Subject, J: Job>(region: Region, job: &mut J) -> Result<J::Out, String> {
        // SAFETY: the bench owns the region and gives it to one subject at a time; the subject
        // is dropped (and all its blocks forgotten) before the region is handed to the next.
        let mut a = unsafe { A::new(region, job.setup()) }?;
        Ok(job.run(&mut a))
    }
    match who {
        Who::Buddy => go::<BuddyDefault, J>(region, job),
        Who::BuddyFrames => go::<BuddyFrames, J>(region, job),
        Who::BuddyPow2 => go::<BuddyPow2, J>(region, job),
        Who::BuddyCompact => go::<BuddyCompact, J>(region, job),
        Who::Bsa => go::<Bsa, J>(region, job),
        Who::Talc => go::<Talc, J>(region, job),
        Who::Rlsf => go::<Rlsf, J>(region, job),
        Who::Lla => go::<Lla, J>(region, job),
        Who::BuddyAlloc => go::<BuddyAllocCrate, J>(region, job),
        Who::Floor => go::<Floor, J>(region, job),
        Who::System => go::<Sys, J>(region, job),
    }
}
