//! [`MmapError`]: what was asked of the OS and why it failed, printed without allocating.

use core::fmt;

use rustix::io::Errno;

/// The operation that failed, with the arguments the caller asked for (before any rounding).
///
/// ```
/// use buddy_mmap::{Op, Region};
/// let err = Region::reserve_aligned(100, 3).unwrap_err();
/// assert_eq!(err.op(), Op::ReserveAligned { len: 100, align: 3 });
/// assert!(matches!(err.op(), Op::ReserveAligned { align: 3, .. }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`Region::reserve`](crate::Region::reserve) of `len` bytes.
    Reserve {
        /// Requested length in bytes.
        len: usize,
    },
    /// [`Region::reserve_aligned`](crate::Region::reserve_aligned) of `len` bytes aligned to
    /// `align`.
    ReserveAligned {
        /// Requested length in bytes.
        len: usize,
        /// Requested alignment of the start address.
        align: usize,
    },
    /// [`Region::purge`](crate::Region::purge) of `len` bytes at `offset` in the region.
    Purge {
        /// Offset of the range from the start of the region.
        offset: usize,
        /// Length of the range in bytes.
        len: usize,
    },
    /// [`Region::advise_huge`](crate::Region::advise_huge) over a region of `len` bytes.
    AdviseHuge {
        /// Length of the region in bytes.
        len: usize,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Reserve { len } => write!(f, "reserve {}", Bytes(len)),
            Op::ReserveAligned { len, align } => {
                write!(f, "reserve {} aligned to {}", Bytes(len), Bytes(align))
            }
            Op::Purge { offset, len } => {
                write!(f, "purge {} at offset {offset}", Bytes(len))
            }
            Op::AdviseHuge { len } => write!(f, "advise huge pages on {}", Bytes(len)),
        }
    }
}

/// Why arguments were rejected before the OS was called.
///
/// ```
/// use buddy_mmap::{Invalid, Region, page_size};
/// let region = Region::reserve(page_size())?;
/// // SAFETY: refused before the OS is called: nothing changes.
/// let misaligned = unsafe { region.purge(1, page_size()) }.unwrap_err();
/// assert_eq!(misaligned.invalid_reason(), Some(Invalid::Misaligned));
/// // SAFETY: as above.
/// let past_end = unsafe { region.purge(0, 2 * page_size()) }.unwrap_err();
/// assert_eq!(past_end.invalid_reason(), Some(Invalid::OutOfRange));
/// assert_eq!(Invalid::OutOfRange.to_string(), "range extends past the end of the region");
/// # Ok::<(), buddy_mmap::MmapError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalid {
    /// A length of zero was asked for where memory must be mapped.
    ZeroLength,
    /// The alignment is not a power of two.
    AlignNotPowerOfTwo,
    /// An offset or length is not a multiple of the page size.
    Misaligned,
    /// The range does not lie inside the region.
    OutOfRange,
    /// The size, once rounded up to pages (plus the alignment slack), does not fit the address
    /// space (`isize::MAX` bytes).
    Overflow,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::ZeroLength => "length is zero",
            Invalid::AlignNotPowerOfTwo => "alignment is not a power of two",
            Invalid::Misaligned => "offset or length is not a multiple of the page size",
            Invalid::OutOfRange => "range extends past the end of the region",
            Invalid::Overflow => "size overflows the address space",
        })
    }
}

/// An error from this crate: the [`Op`] that was asked for, and either the OS's `errno` or the
/// reason the arguments were rejected before the OS was called.
///
/// `Display` and `Debug` never allocate (they do not go through `std::io::Error`), so the error
/// can be printed from inside a global allocator. Examples of `Display`:
///
/// - `reserve 4 EiB: ENOMEM`
/// - `purge 4 KiB at offset 100: invalid argument: offset or length is not a multiple of the page size`
///
/// Sizes print in B, KiB, MiB, GiB, TiB, PiB or EiB when exact, else in bytes; offsets print in
/// bytes.
///
/// ```
/// use buddy_mmap::{Errno, FaultyOs, Invalid, MmapError, Op, Region};
/// let os = FaultyOs::new().fail_map_after(0); // refuses every mapping
/// match Region::reserve_in(4 << 20, &os) {
///     Err(MmapError::Os { op, errno }) => {
///         assert_eq!((op, errno), (Op::Reserve { len: 4 << 20 }, Errno::NOMEM));
///     }
///     other => panic!("expected an OS error, got {other:?}"),
/// }
/// let err = Region::reserve(0).unwrap_err(); // rejected before the OS is called
/// assert!(matches!(err, MmapError::Invalid { reason: Invalid::ZeroLength, .. }));
/// assert_eq!(err.to_string(), "reserve 0 B: invalid argument: length is zero");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MmapError {
    /// The OS refused the request.
    Os {
        /// What was asked.
        op: Op,
        /// What the OS answered.
        errno: Errno,
    },
    /// The arguments were rejected before calling the OS; nothing was changed.
    Invalid {
        /// What was asked.
        op: Op,
        /// What is wrong with it.
        reason: Invalid,
    },
}

impl MmapError {
    pub(crate) const fn os(op: Op, errno: Errno) -> Self {
        MmapError::Os { op, errno }
    }

    pub(crate) const fn invalid(op: Op, reason: Invalid) -> Self {
        MmapError::Invalid { op, reason }
    }

    /// The operation that failed, with the caller's arguments.
    ///
    /// ```
    /// use buddy_mmap::{Op, Region};
    /// let err = Region::reserve(0).unwrap_err();
    /// assert_eq!(err.op(), Op::Reserve { len: 0 });
    /// ```
    #[must_use]
    pub const fn op(&self) -> Op {
        match *self {
            MmapError::Os { op, .. } | MmapError::Invalid { op, .. } => op,
        }
    }

    /// The OS error, if the OS was called and refused.
    ///
    /// ```
    /// use buddy_mmap::{Errno, FaultyOs, Region};
    /// let os = FaultyOs::new().fail_map_after(0).with_errno(Errno::AGAIN);
    /// assert_eq!(Region::reserve_in(4096, &os).unwrap_err().errno(), Some(Errno::AGAIN));
    /// assert_eq!(Region::reserve(0).unwrap_err().errno(), None); // the OS was not called
    /// ```
    #[must_use]
    pub const fn errno(&self) -> Option<Errno> {
        match *self {
            MmapError::Os { errno, .. } => Some(errno),
            MmapError::Invalid { .. } => None,
        }
    }

    /// Why the arguments were rejected, if they were rejected before calling the OS.
    ///
    /// ```
    /// use buddy_mmap::{FaultyOs, Invalid, Region};
    /// let err = Region::reserve(usize::MAX).unwrap_err();
    /// assert_eq!(err.invalid_reason(), Some(Invalid::Overflow));
    /// let os = FaultyOs::new().fail_map_after(0);
    /// assert_eq!(Region::reserve_in(4096, &os).unwrap_err().invalid_reason(), None);
    /// ```
    #[must_use]
    pub const fn invalid_reason(&self) -> Option<Invalid> {
        match *self {
            MmapError::Invalid { reason, .. } => Some(reason),
            MmapError::Os { .. } => None,
        }
    }
}

impl fmt::Display for MmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmapError::Os { op, errno } => write!(f, "{op}: {}", ErrnoName(*errno)),
            MmapError::Invalid { op, reason } => write!(f, "{op}: invalid argument: {reason}"),
        }
    }
}

/// Hand-written so that the errno prints as its name: `rustix`'s own `Debug` for `Errno` goes
/// through `std::io::Error` (and allocates) when its `std` feature is on.
impl fmt::Debug for MmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmapError::Os { op, errno } => f
                .debug_struct("Os")
                .field("op", op)
                .field("errno", &ErrnoName(*errno))
                .finish(),
            MmapError::Invalid { op, reason } => f
                .debug_struct("Invalid")
                .field("op", op)
                .field("reason", reason)
                .finish(),
        }
    }
}

impl core::error::Error for MmapError {}

/// A byte count printed in the largest binary unit that divides it exactly.
#[derive(Clone, Copy)]
pub(crate) struct Bytes(pub(crate) usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let n = self.0;
        if n < 1024 {
            return write!(f, "{n} B");
        }
        let mut value = n;
        let mut unit = None;
        for name in UNITS {
            if value % 1024 != 0 {
                break;
            }
            value /= 1024;
            unit = Some(name);
        }
        match unit {
            Some(name) => write!(f, "{value} {name}"),
            None => write!(f, "{n} bytes"),
        }
    }
}

/// An errno printed as its C name (`ENOMEM`), or `errno N` when it is not in the table.
#[derive(Clone, Copy)]
struct ErrnoName(Errno);

const ERRNO_NAMES: [(Errno, &str); 21] = [
    (Errno::PERM, "EPERM"),
    (Errno::NOENT, "ENOENT"),
    (Errno::INTR, "EINTR"),
    (Errno::IO, "EIO"),
    (Errno::BADF, "EBADF"),
    (Errno::AGAIN, "EAGAIN"),
    (Errno::NOMEM, "ENOMEM"),
    (Errno::ACCESS, "EACCES"),
    (Errno::FAULT, "EFAULT"),
    (Errno::BUSY, "EBUSY"),
    (Errno::EXIST, "EEXIST"),
    (Errno::NODEV, "ENODEV"),
    (Errno::INVAL, "EINVAL"),
    (Errno::NFILE, "ENFILE"),
    (Errno::MFILE, "EMFILE"),
    (Errno::NOSPC, "ENOSPC"),
    (Errno::RANGE, "ERANGE"),
    (Errno::NOSYS, "ENOSYS"),
    (Errno::OVERFLOW, "EOVERFLOW"),
    (Errno::OPNOTSUPP, "EOPNOTSUPP"),
    (Errno::HWPOISON, "EHWPOISON"),
];

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ERRNO_NAMES.iter().find(|(errno, _)| *errno == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "errno {}", self.0.raw_os_error()),
        }
    }
}

impl fmt::Debug for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn sizes_print_in_the_largest_exact_binary_unit() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(100).to_string(), "100 B");
        assert_eq!(Bytes(4096).to_string(), "4 KiB");
        assert_eq!(Bytes(1536).to_string(), "1536 bytes");
        assert_eq!(Bytes(3 << 20).to_string(), "3 MiB");
        assert_eq!(Bytes((1 << 30) + 4096).to_string(), "1048580 KiB");
        assert_eq!(Bytes(3 << 30).to_string(), "3 GiB");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn sizes_past_4_gib_print_too() {
        assert_eq!(Bytes(64 << 30).to_string(), "64 GiB");
        assert_eq!(Bytes(5 << 40).to_string(), "5 TiB");
        assert_eq!(Bytes(1 << 62).to_string(), "4 EiB");
        assert_eq!(Bytes(usize::MAX).to_string(), "18446744073709551615 bytes");
    }

    #[test]
    #[cfg(target_pointer_width = "32")]
    fn the_largest_32_bit_size_prints_in_bytes() {
        assert_eq!(Bytes(usize::MAX).to_string(), "4294967295 bytes");
    }

    #[test]
    fn os_error_prints_op_size_and_errno_name() {
        let e = MmapError::os(Op::Reserve { len: 3 << 30 }, Errno::NOMEM);
        assert_eq!(e.to_string(), "reserve 3 GiB: ENOMEM");
        let e = MmapError::os(
            Op::Purge {
                offset: 8192,
                len: 4096,
            },
            Errno::INVAL,
        );
        assert_eq!(e.to_string(), "purge 4 KiB at offset 8192: EINVAL");
        let e = MmapError::os(
            Op::ReserveAligned {
                len: 1 << 21,
                align: 1 << 26,
            },
            Errno::NOMEM,
        );
        assert_eq!(e.to_string(), "reserve 2 MiB aligned to 64 MiB: ENOMEM");
        let e = MmapError::os(Op::AdviseHuge { len: 1 << 21 }, Errno::INVAL);
        assert_eq!(e.to_string(), "advise huge pages on 2 MiB: EINVAL");
    }

    #[test]
    fn unknown_errno_prints_its_number() {
        let e = MmapError::os(Op::Reserve { len: 1 }, Errno::from_raw_os_error(4000));
        assert_eq!(e.to_string(), "reserve 1 B: errno 4000");
    }

    #[test]
    fn invalid_argument_prints_the_reason() {
        let e = MmapError::invalid(
            Op::Purge {
                offset: 100,
                len: 4096,
            },
            Invalid::Misaligned,
        );
        assert_eq!(
            e.to_string(),
            "purge 4 KiB at offset 100: invalid argument: offset or length is not a multiple of the page size"
        );
        assert_eq!(e.errno(), None);
        assert_eq!(e.invalid_reason(), Some(Invalid::Misaligned));
    }

    #[test]
    fn debug_names_the_errno_without_std_io_error() {
        let e = MmapError::os(Op::Reserve { len: 4096 }, Errno::NOMEM);
        assert_eq!(
            std::format!("{e:?}"),
            "Os { op: Reserve { len: 4096 }, errno: ENOMEM }"
        );
    }

    #[test]
    fn accessors_return_op_and_errno() {
        let e = MmapError::os(Op::Reserve { len: 4096 }, Errno::NOMEM);
        assert_eq!(e.op(), Op::Reserve { len: 4096 });
        assert_eq!(e.errno(), Some(Errno::NOMEM));
        assert_eq!(e.invalid_reason(), None);
    }
}
