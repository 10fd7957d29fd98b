//! [`Config`]: how a [`BuddyAlloc`](crate::BuddyAlloc) takes memory from the OS and cuts it.
//! Everything is `const`, so a configured allocator can be a `static`.

use core::fmt;

/// Most shards an allocator can have.
pub const MAX_SHARDS: usize = 64;

/// Most chunks a memory limit may span (`limit / chunk`): each chunk costs a header of a few
/// tens of KiB of address space in the allocator's directory.
pub const MAX_CHUNKS: usize = 1 << 16;

/// An upper bound of a chunk header's size, for the directory-size check.
pub(crate) const HEADER_BOUND: usize = 64 << 10;

/// When freed memory is given back to the OS (`madvise(MADV_DONTNEED)`).
///
/// The allocator never reads or writes the memory it manages (all its state is out of band),
/// so a purged page stays out of memory until a program writes to it again.
///
/// ```
/// use buddy_std::{BuddyAlloc, Config, Purge};
/// use std::alloc::{GlobalAlloc, Layout};
/// let l = Layout::from_size_align(512 << 10, 8).unwrap();
/// for (policy, purges) in [(Purge::Never, 0), (Purge::AtLeast(256 << 10), 1)] {
///     let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20).purge(policy));
///     // SAFETY: a non-zero size; freed once with the same layout.
///     unsafe { a.dealloc(a.alloc(l), l) };
///     assert_eq!(a.stats().os.purges, purges);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purge {
    /// Never: freed memory stays resident until reused (fastest when memory is reused soon).
    Never,
    /// When an allocation of at least this many bytes is freed (or shrunk by at least this
    /// many), the whole pages inside it go back to the OS before it is returned to the heap.
    ///
    /// Smaller blocks are never purged: a system call per small free would cost more than the
    /// pages are worth, and a page shared by live neighbours cannot be purged anyway.
    AtLeast(usize),
}

/// How a thread finds its shard ([`Config::shard_by`]).
///
/// ```
/// use buddy_std::{BuddyAlloc, Config, ShardBy};
/// let by_stack = BuddyAlloc::with_config(Config::new().shards(4).shard_by(ShardBy::Stack));
/// assert_eq!(by_stack.config().shard_selection(), ShardBy::Stack);
/// assert!(by_stack.current_shard() < 4);
/// assert_eq!(Config::new().shard_selection(), ShardBy::Thread); // the default
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShardBy {
    /// Round-robin, in the order threads first allocate: two threads share a shard only when
    /// there are more threads than shards. The ordinal lives in a thread-local.
    Thread,
    /// By the address of the calling thread's stack (threads' stacks are disjoint mappings,
    /// so threads usually, not always, land on different shards). Touches no thread-local at
    /// all: for an allocator inside a shared library that *is* `malloc`, where a thread-local
    /// is dynamic TLS, and glibc's `__tls_get_addr` may itself call `malloc` (when a thread's
    /// TLS vector grows after the program `dlopen`ed many libraries with TLS), re-entering
    /// the allocator. `libbuddy_malloc.so` uses it.
    Stack,
}

/// The default purge threshold: 256 KiB, the order of magnitude of glibc's `mmap` threshold,
/// above which glibc also gives memory back at every free.
pub const DEFAULT_PURGE_THRESHOLD: usize = 256 << 10;

#[cfg(target_pointer_width = "64")]
const DEFAULT_LIMIT: usize = 64 << 30;
#[cfg(not(target_pointer_width = "64"))]
const DEFAULT_LIMIT: usize = 1 << 30;

#[cfg(target_pointer_width = "64")]
const DEFAULT_CHUNK: usize = 64 << 20;
#[cfg(not(target_pointer_width = "64"))]
const DEFAULT_CHUNK: usize = 16 << 20;

/// The configuration of a [`BuddyAlloc`](crate::BuddyAlloc) or
/// [`BuddyArena`](crate::BuddyArena), built with `const` methods.
///
/// | knob | default | meaning |
/// | --- | --- | --- |
/// | [`memory_limit`](Config::memory_limit) | 64 GiB (1 GiB on 32-bit) | most bytes taken from the OS for blocks; past it requests get null |
/// | [`chunk_size`](Config::chunk_size) | 64 MiB (16 MiB on 32-bit) | unit of growth: one buddy heap, one lock; the largest block; larger requests get their own mapping |
/// | [`min_block`](Config::min_block) | 16 bytes | smallest block, and the alignment of every block |
/// | [`exact_fit`](Config::exact_fit) | on | above 4 KiB, a 5000-byte request takes a 4096 + 1024 run, not 8 KiB |
/// | [`compact`](Config::compact) | off | exact fit above 512 bytes too: tighter packing, slower |
/// | [`purge`](Config::purge) | [`Purge::AtLeast`]`(256 KiB)` | when freed memory goes back to the OS |
/// | [`shards`](Config::shards) | 4 | groups of chunks that threads spread over, so they rarely share a lock |
/// | [`shard_by`](Config::shard_by) | [`ShardBy::Thread`] | how a thread finds its shard |
///
/// ```
/// use buddy_std::{BuddyAlloc, Config, Purge};
///
/// static SMALL: BuddyAlloc = BuddyAlloc::with_config(
///     Config::new()
///         .memory_limit(256 << 20)
///         .chunk_size(16 << 20)
///         .purge(Purge::AtLeast(1 << 20))
///         .shards(2),
/// );
/// assert_eq!(SMALL.config().limit_bytes(), 256 << 20);
/// ```
///
/// An invalid configuration is refused by [`Config::validate`]; in a `static` that is a compile
/// error:
///
/// ```compile_fail
/// use buddy_std::{BuddyAlloc, Config};
/// static BAD: BuddyAlloc = BuddyAlloc::with_config(Config::new().chunk_size(1000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    limit: usize,
    chunk: usize,
    min_block: usize,
    exact_fit: bool,
    compact: bool,
    purge: Purge,
    shards: usize,
    shard_by: ShardBy,
}

impl Config {
    /// The defaults (see the table above).
    ///
    /// ```
    /// use buddy_std::{Config, DEFAULT_PURGE_THRESHOLD, Purge, ShardBy};
    /// let c = Config::new();
    /// assert_eq!((c.min_block_bytes(), c.shard_count()), (16, 4));
    /// assert!(c.is_exact_fit() && !c.is_compact());
    /// assert_eq!(c.purge_policy(), Purge::AtLeast(DEFAULT_PURGE_THRESHOLD));
    /// assert_eq!(c.shard_selection(), ShardBy::Thread);
    /// assert_eq!((c.validate(), c), (Ok(()), Config::default()));
    /// ```
    pub const fn new() -> Config {
        Config {
            limit: DEFAULT_LIMIT,
            chunk: DEFAULT_CHUNK,
            min_block: buddy_core::DEFAULT_MIN_BLOCK,
            exact_fit: true,
            compact: false,
            purge: Purge::AtLeast(DEFAULT_PURGE_THRESHOLD),
            shards: 4,
            shard_by: ShardBy::Thread,
        }
    }

    /// Sets the memory limit: the most bytes of blocks the allocator takes from the OS, chunks
    /// and direct mappings together. The virtual address range is reserved up to it on first
    /// use (no physical memory until touched). A multiple of the chunk size, from one chunk to
    /// [`MAX_CHUNKS`].
    ///
    /// ```
    /// use buddy_std::{Config, ConfigError};
    /// let c = Config::new().chunk_size(1 << 20).memory_limit(256 << 20);
    /// assert_eq!((c.limit_bytes(), c.max_chunks()), (256 << 20, 256));
    /// assert_eq!(c.memory_limit(3 << 19).validate(), Err(ConfigError::Limit)); // 1.5 chunks
    /// ```
    pub const fn memory_limit(self, bytes: usize) -> Config {
        Config {
            limit: bytes,
            ..self
        }
    }

    /// Sets the chunk size: a power of two, at least 4 KiB and the OS page size, at most 2^40.
    /// Requests larger than a chunk are served by a mapping of their own.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config, ConfigError};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// assert_eq!(Config::new().chunk_size(1000).validate(), Err(ConfigError::ChunkSize));
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(4 << 20));
    /// let l = Layout::from_size_align(2 << 20, 8).unwrap(); // two chunks' worth
    /// // SAFETY: a non-zero size; freed with the same layout.
    /// unsafe {
    ///     let p = a.alloc(l);
    ///     assert_eq!(a.stats().os.direct_allocations, 1);
    ///     a.dealloc(p, l);
    /// }
    /// ```
    pub const fn chunk_size(self, bytes: usize) -> Config {
        Config {
            chunk: bytes,
            ..self
        }
    }

    /// Sets the minimum block: a power of two from 8 bytes to the chunk size. Each block is
    /// aligned to its size, so this is also the smallest alignment handed out.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config, ConfigError};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// use std::ptr::NonNull;
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20).min_block(64));
    /// // SAFETY: a non-zero size.
    /// let p = NonNull::new(unsafe { a.alloc(Layout::new::<u8>()) }).unwrap();
    /// assert_eq!((a.usable_size(p), p.as_ptr() as usize % 64), (Ok(64), 0));
    /// assert_eq!(Config::new().min_block(24).validate(), Err(ConfigError::MinBlock));
    /// ```
    pub const fn min_block(self, bytes: usize) -> Config {
        Config {
            min_block: bytes,
            ..self
        }
    }

    /// Turns exact fit on (default) or off: off, every request is rounded up to a power of two.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// use std::ptr::NonNull;
    /// for (on, size) in [(true, 5120), (false, 8192)] {
    ///     let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20).exact_fit(on));
    ///     // SAFETY: a non-zero size.
    ///     let p = NonNull::new(unsafe { a.alloc(Layout::from_size_align(5000, 8).unwrap()) }).unwrap();
    ///     assert_eq!(a.usable_size(p), Ok(size));
    /// }
    /// ```
    pub const fn exact_fit(self, on: bool) -> Config {
        Config {
            exact_fit: on,
            ..self
        }
    }

    /// Packs tighter (off by default): each chunk's heap uses
    /// [`buddy_core::Config::compact`], exact fit above 512 bytes in runs of up to 5 pieces,
    /// instead of above 4 KiB in runs of up to 4. More of the memory taken from the OS holds
    /// data, at some cost in time (the figures are in `buddy_core::Config::compact`'s docs).
    /// Has no effect with exact fit off.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// use std::ptr::NonNull;
    ///
    /// static A: BuddyAlloc = BuddyAlloc::with_config(Config::new().compact(true));
    /// let layout = Layout::from_size_align(600, 8).unwrap();
    /// // SAFETY: a non-zero size.
    /// let p = NonNull::new(unsafe { A.alloc(layout) }).unwrap();
    /// assert_eq!(A.usable_size(p), Ok(608)); // 512 + 64 + 32; 1024 without `compact`
    /// // SAFETY: allocated above with this layout.
    /// unsafe { A.dealloc(p.as_ptr(), layout) };
    /// ```
    pub const fn compact(self, on: bool) -> Config {
        Config {
            compact: on,
            ..self
        }
    }

    /// Whether [`compact`](Config::compact) is on.
    ///
    /// ```
    /// use buddy_std::Config;
    /// assert!(!Config::new().is_compact());
    /// assert!(Config::new().compact(true).is_compact());
    /// ```
    pub const fn is_compact(&self) -> bool {
        self.compact
    }

    /// Sets the purge policy.
    ///
    /// ```
    /// use buddy_std::{BuddyAlloc, Config, Purge};
    /// use std::alloc::{GlobalAlloc, Layout};
    /// let a = BuddyAlloc::with_config(Config::new().chunk_size(1 << 20).memory_limit(1 << 20).purge(Purge::AtLeast(64 << 10)));
    /// let l = Layout::from_size_align(128 << 10, 8).unwrap();
    /// // SAFETY: a non-zero size; freed once with the same layout.
    /// unsafe { a.dealloc(a.alloc(l), l) };
    /// assert_eq!((a.stats().os.purges, a.stats().os.purged_bytes), (1, 128 << 10));
    /// ```
    pub const fn purge(self, purge: Purge) -> Config {
        Config { purge, ..self }
    }

    /// Sets the number of shards, 1 to [`MAX_SHARDS`]. Threads are spread round-robin over
    /// them; each shard grows its own chunks, so threads of different shards allocate under
    /// different locks. Memory freed by any thread goes back to the chunk it came from.
    ///
    /// ```
    /// use buddy_std::{Config, ConfigError, MAX_SHARDS};
    /// assert_eq!(Config::new().shards(8).shard_count(), 8);
    /// assert_eq!(Config::new().shards(0).validate(), Err(ConfigError::Shards));
    /// assert_eq!(Config::new().shards(MAX_SHARDS + 1).validate(), Err(ConfigError::Shards));
    /// ```
    pub const fn shards(self, n: usize) -> Config {
        Config { shards: n, ..self }
    }

    /// The memory limit in bytes.
    ///
    /// ```
    /// use buddy_std::Config;
    /// assert_eq!(Config::new().memory_limit(1 << 30).limit_bytes(), 1 << 30);
    /// ```
    pub const fn limit_bytes(&self) -> usize {
        self.limit
    }

    /// The chunk size in bytes.
    ///
    /// ```
    /// use buddy_std::Config;
    /// assert_eq!(Config::new().chunk_size(1 << 20).chunk_bytes(), 1 << 20);
    /// ```
    pub const fn chunk_bytes(&self) -> usize {
        self.chunk
    }

    /// The minimum block in bytes.
    ///
    /// ```
    /// use buddy_std::Config;
    /// assert_eq!(Config::new().min_block_bytes(), 16);
    /// assert_eq!(Config::new().min_block(64).min_block_bytes(), 64);
    /// ```
    pub const fn min_block_bytes(&self) -> usize {
        self.min_block
    }

    /// Whether exact fit is on.
    ///
    /// ```
    /// use buddy_std::Config;
    /// assert!(Config::new().is_exact_fit());
    /// assert!(!Config::new().exact_fit(false).is_exact_fit());
    /// ```
    pub const fn is_exact_fit(&self) -> bool {
        self.exact_fit
    }

    /// The purge policy.
    ///
    /// ```
    /// use buddy_std::{Config, Purge};
    /// assert_eq!(Config::new().purge(Purge::Never).purge_policy(), Purge::Never);
    /// ```
    pub const fn purge_policy(&self) -> Purge {
        self.purge
    }

    /// Sets how a thread finds its shard (default [`ShardBy::Thread`]).
    ///
    /// ```
    /// use buddy_std::{Config, ShardBy};
    /// let c = Config::new().shard_by(ShardBy::Stack);
    /// assert_eq!(c.shard_selection(), ShardBy::Stack);
    /// assert_eq!(c.validate(), Ok(()));
    /// ```
    pub const fn shard_by(self, by: ShardBy) -> Config {
        Config {
            shard_by: by,
            ..self
        }
    }

    /// How a thread finds its shard.
    ///
    /// ```
    /// use buddy_std::{Config, ShardBy};
    /// assert_eq!(Config::new().shard_selection(), ShardBy::Thread);
    /// ```
    pub const fn shard_selection(&self) -> ShardBy {
        self.shard_by
    }

    /// The number of shards.
    ///
    /// ```
    /// use buddy_std::Config;
    /// assert_eq!(Config::new().shard_count(), 4);
    /// assert_eq!(Config::new().shards(1).shard_count(), 1);
    /// ```
    pub const fn shard_count(&self) -> usize {
        self.shards
    }

    /// The number of chunks the limit allows.
    ///
    /// ```
    /// use buddy_std::Config;
    /// assert_eq!(Config::new().chunk_size(1 << 20).memory_limit(64 << 20).max_chunks(), 64);
    /// ```
    pub const fn max_chunks(&self) -> usize {
        self.limit / self.chunk
    }

    /// Checks the configuration.
    ///
    /// ```
    /// use buddy_std::{Config, ConfigError, Purge};
    /// assert_eq!(Config::new().validate(), Ok(()));
    /// match Config::new().purge(Purge::AtLeast(0)).validate() {
    ///     Err(ConfigError::PurgeThreshold) => {}
    ///     other => panic!("expected PurgeThreshold, got {other:?}"),
    /// }
    /// // Several rules broken: the first is reported.
    /// let c = Config::new().chunk_size(1000).shards(0);
    /// assert_eq!(c.validate(), Err(ConfigError::ChunkSize));
    /// ```
    ///
    /// # Errors
    /// The first rule broken, as a [`ConfigError`].
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if !self.chunk.is_power_of_two() || self.chunk < 4096 || self.chunk as u64 > 1 << 40 {
            return Err(ConfigError::ChunkSize);
        }
        if !self.min_block.is_power_of_two() || self.min_block < 8 || self.min_block > self.chunk {
            return Err(ConfigError::MinBlock);
        }
        if self.limit < self.chunk || self.limit % self.chunk != 0 {
            return Err(ConfigError::Limit);
        }
        if self.limit / self.chunk > MAX_CHUNKS {
            return Err(ConfigError::TooManyChunks);
        }
        // The directory (a header and the bitmaps per chunk) must fit the address space with
        // room to spare; only absurd chunk and minimum block sizes come near.
        let per_chunk = buddy_core::metadata_words(self.chunk, self.min_block) * 8 + HEADER_BOUND;
        match per_chunk.checked_mul(self.limit / self.chunk) {
            Some(dir) if dir <= isize::MAX as usize / 4 => {}
            _ => return Err(ConfigError::TooManyChunks),
        }
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(ConfigError::Shards);
        }
        if let Purge::AtLeast(0) = self.purge {
            return Err(ConfigError::PurgeThreshold);
        }
        Ok(())
    }

    /// The configuration of each chunk's buddy heap.
    pub(crate) const fn core(&self) -> buddy_core::Config {
        let base = if self.compact {
            buddy_core::Config::compact()
        } else {
            buddy_core::Config::new()
        };
        base.min_block(self.min_block).exact_fit(self.exact_fit)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// Why a [`Config`] was refused.
///
/// ```
/// use buddy_std::{BuddyArena, Config, ConfigError};
/// let err = Config::new().min_block(4).validate().unwrap_err();
/// assert!(matches!(err, ConfigError::MinBlock));
/// assert_eq!(err.to_string(), err.message());
/// // An arena reports it too, as `ArenaError::Config`.
/// let arena = BuddyArena::with_config(Config::new().min_block(4));
/// assert!(matches!(arena, Err(buddy_std::ArenaError::Config(ConfigError::MinBlock))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// The chunk size is not a power of two between 4 KiB and 2^40.
    ChunkSize,
    /// The minimum block is not a power of two between 8 bytes and the chunk size.
    MinBlock,
    /// The memory limit is not a non-zero multiple of the chunk size.
    Limit,
    /// The memory limit spans more than [`MAX_CHUNKS`] chunks, or their metadata would not fit
    /// the address space.
    TooManyChunks,
    /// The shard count is not between 1 and [`MAX_SHARDS`].
    Shards,
    /// The purge threshold is zero.
    PurgeThreshold,
}

impl ConfigError {
    /// The error as a static message (what `Display` prints; usable in `const` panics).
    ///
    /// ```
    /// use buddy_std::ConfigError;
    /// const MESSAGE: &str = ConfigError::PurgeThreshold.message();
    /// assert_eq!(MESSAGE, "purge threshold is zero");
    /// assert_eq!(ConfigError::PurgeThreshold.to_string(), MESSAGE);
    /// ```
    pub const fn message(&self) -> &'static str {
        match self {
            ConfigError::ChunkSize => "chunk size is not a power of two between 4 KiB and 2^40",
            ConfigError::MinBlock => {
                "minimum block is not a power of two between 8 bytes and the chunk size"
            }
            ConfigError::Limit => "memory limit is not a non-zero multiple of the chunk size",
            ConfigError::TooManyChunks => {
                "memory limit spans more than MAX_CHUNKS (65536) chunks, or their metadata does not fit"
            }
            ConfigError::Shards => "shard count is not between 1 and MAX_SHARDS (64)",
            ConfigError::PurgeThreshold => "purge threshold is zero",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new().validate(), Ok(()));
        assert_eq!(Config::new().max_chunks(), DEFAULT_LIMIT / DEFAULT_CHUNK);
    }

    #[test]
    fn each_rule_is_checked() {
        let c = Config::new();
        let cases = [
            (c.chunk_size(3 << 20), ConfigError::ChunkSize),
            (c.chunk_size(2048), ConfigError::ChunkSize),
            (c.min_block(24), ConfigError::MinBlock),
            (c.min_block(4), ConfigError::MinBlock),
            (
                c.chunk_size(4096).memory_limit(4096).min_block(8192),
                ConfigError::MinBlock,
            ),
            (c.memory_limit(0), ConfigError::Limit),
            (c.memory_limit(DEFAULT_CHUNK + 1), ConfigError::Limit),
            (
                c.chunk_size(4096).memory_limit(1 << 30),
                ConfigError::TooManyChunks,
            ),
            (c.shards(0), ConfigError::Shards),
            (c.shards(MAX_SHARDS + 1), ConfigError::Shards),
            (c.purge(Purge::AtLeast(0)), ConfigError::PurgeThreshold),
        ];
        for (config, err) in cases {
            assert_eq!(config.validate(), Err(err), "{config:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(c.shards(MAX_SHARDS).purge(Purge::Never).validate(), Ok(()));
    }
}
