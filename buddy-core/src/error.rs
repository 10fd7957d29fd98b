//! Error types. Every error leaves the heap exactly as it was (see each variant).

use core::fmt;

/// Why an allocation (or reallocation) was refused.
///
/// Bad requests (`ZeroSize`, `SizeOverflow`, `AlignTooLarge`, `TooLarge`) are rejected before
/// anything is touched. `OutOfMemory` may first have coalesced deferred free blocks (the only
/// state change: no allocation and no free byte is lost), see [`Heap::flush`](crate::Heap::flush).
///
/// ```
/// use buddy_core::{AllocError, Heap};
/// use core::alloc::Layout;
/// let mut heap = Heap::new(); // no region yet
/// match heap.alloc(Layout::from_size_align(100, 8).unwrap()) {
///     Err(AllocError::OutOfMemory { size }) => assert_eq!(size, 100),
///     other => panic!("expected OutOfMemory, got {other:?}"),
/// }
/// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
/// heap.add_region_from_slice(mem).unwrap();
/// let e = heap.alloc(Layout::from_size_align(8, 1 << 20).unwrap()).unwrap_err();
/// assert_eq!(e, AllocError::AlignTooLarge { align: 1 << 20 });
/// assert_eq!(heap.alloc(Layout::new::<()>()), Err(AllocError::ZeroSize));
/// assert_eq!(heap.stats().failed_requests, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocError {
    /// The request was for zero bytes.
    ZeroSize,
    /// The size rounded up to a block does not fit in a `usize`.
    SizeOverflow,
    /// The alignment is larger than the largest block any region can hold.
    AlignTooLarge {
        /// The requested alignment.
        align: usize,
    },
    /// The request is larger than the largest block any region can hold.
    TooLarge {
        /// The requested size.
        size: usize,
    },
    /// No free block is large enough right now (or the heap has no region).
    OutOfMemory {
        /// The requested size.
        size: usize,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AllocError::ZeroSize => f.write_str("zero-size allocation"),
            AllocError::SizeOverflow => f.write_str("allocation size overflows the address space"),
            AllocError::AlignTooLarge { align } => {
                write!(f, "alignment {align} exceeds the largest block of the heap")
            }
            AllocError::TooLarge { size } => {
                write!(f, "{size} bytes exceed the largest block of the heap")
            }
            AllocError::OutOfMemory { size } => {
                write!(f, "out of memory: no free block for {size} bytes")
            }
        }
    }
}

impl core::error::Error for AllocError {}

/// Why a size-less [`free`](crate::Heap::free) was refused. The heap is unchanged.
///
/// ```
/// use buddy_core::{FreeError, Heap};
/// use core::alloc::Layout;
/// use core::ptr::NonNull;
/// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
/// let mut heap = Heap::new();
/// heap.add_region_from_slice(mem).unwrap();
/// let p = heap.alloc(Layout::from_size_align(256, 8).unwrap()).unwrap();
/// let local = 0u64;
/// // SAFETY: (all) p + 16 lies inside p's block; wrong pointers are refused, changing nothing.
/// unsafe {
///     assert_eq!(heap.free(NonNull::from(&local).cast()), Err(FreeError::Foreign));
///     assert_eq!(heap.free(p.add(16)), Err(FreeError::Interior));
///     assert_eq!(heap.free(p), Ok(256));
///     assert!(matches!(heap.free(p), Err(FreeError::DoubleFree)));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreeError {
    /// The pointer is not inside memory this heap hands out (another heap, the stack, the
    /// heap's own metadata, or a misaligned address).
    Foreign,
    /// The pointer is inside a live allocation but not at its start.
    Interior,
    /// The pointer is the start of a block that is already free: a double free.
    DoubleFree,
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FreeError::Foreign => "pointer was not handed out by this heap",
            FreeError::Interior => "pointer is inside an allocation, not at its start",
            FreeError::DoubleFree => "double free: block is already free",
        })
    }
}

impl core::error::Error for FreeError {}

/// Why a region was not added. The heap is unchanged.
///
/// ```
/// use buddy_core::{metadata_words, Heap, RegionError};
/// let meta = || -> &'static mut [u64] { Box::leak(vec![0; metadata_words(1 << 16, 16)].into()) };
/// let at = core::ptr::without_provenance_mut::<u8>; // "physical" addresses, never dereferenced
/// let mut heap = Heap::new();
/// // SAFETY: (all) the ranges are used by nothing else; the heap never dereferences them.
/// unsafe {
///     heap.add_region_with_metadata(at(0x10_0000), 1 << 16, meta()).unwrap();
///     let overlapping = heap.add_region_with_metadata(at(0x10_8000), 1 << 16, meta());
///     assert_eq!(overlapping, Err(RegionError::Overlaps));
///     match heap.add_region_with_metadata(at(0x20_0000), 1 << 16, &mut []) {
///         Err(RegionError::MetadataTooSmall { needed, got }) => assert!(got == 0 && needed > 0),
///         other => panic!("expected MetadataTooSmall, got {other:?}"),
///     }
/// }
/// assert_eq!(heap.regions(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegionError {
    /// The start pointer is null.
    Null,
    /// `start + len` wraps around the address space. A region must end below the top: one
    /// that ends exactly there (`start + len == 2^64`, `2^32` on 32-bit targets) counts as
    /// wrapping, since its end address is not a `usize`.
    Wraps,
    /// After alignment (and metadata, if carved from the region) not even one minimum block is left.
    TooSmall {
        /// A length that is enough at this start address (with the metadata, when it is
        /// carved from the region); not always the fewest.
        needed: usize,
    },
    /// The region overlaps one already in the heap or the metadata of one, or its metadata
    /// (given apart) overlaps the region itself, a region of the heap or another's metadata.
    Overlaps,
    /// The heap already holds [`MAX_REGIONS`](crate::MAX_REGIONS) regions.
    Full,
    /// The caller-provided metadata slice is too short.
    MetadataTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        got: usize,
    },
    /// The configured minimum block is not a power of two between 8 bytes and 2^40.
    BadMinBlock {
        /// The configured minimum block.
        min_block: usize,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegionError::Null => f.write_str("region start is null"),
            RegionError::Wraps => f.write_str("region wraps around the address space"),
            RegionError::TooSmall { needed } => {
                write!(f, "region too small: needs at least {needed} bytes")
            }
            RegionError::Overlaps => {
                f.write_str("region or its metadata overlaps memory the heap already uses")
            }
            RegionError::Full => f.write_str("heap already holds the maximum number of regions"),
            RegionError::MetadataTooSmall { needed, got } => {
                write!(f, "metadata too small: {needed} words needed, {got} given")
            }
            RegionError::BadMinBlock { min_block } => write!(
                f,
                "minimum block {min_block} is not a power of two between 8 bytes and 2^40"
            ),
        }
    }
}

impl core::error::Error for RegionError {}

/// What [`Heap::check`](crate::Heap::check) found wrong. Seeing one is always a bug (in buddy,
/// or memory corruption of the metadata itself).
///
/// A sound program cannot corrupt the metadata, so the example below matches on the result of
/// a passing check, and builds an error by hand to show what one prints:
///
/// ```
/// use buddy_core::{CheckError, Heap};
/// use core::alloc::Layout;
/// let mem = Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 8192]));
/// let mut heap = Heap::new();
/// heap.add_region_from_slice(mem).unwrap();
/// heap.alloc(Layout::new::<u64>()).unwrap();
/// match heap.check() {
///     Ok(()) => {}
///     Err(CheckError { what, addr, order }) => panic!("{what} at {addr:#x}, order {order}"),
/// }
/// let e = CheckError { what: "block cached twice", addr: 0x1000, order: 4 };
/// assert_eq!(e.to_string(), "heap check failed: block cached twice (block 0x1000, order 4)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// Which invariant failed.
    pub what: &'static str,
    /// Address of the block concerned (0 if none).
    pub addr: usize,
    /// Order (log2 of the size) of the block concerned.
    pub order: u32,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap check failed: {} (block {:#x}, order {})",
            self.what, self.addr, self.order
        )
    }
}

impl core::error::Error for CheckError {}
