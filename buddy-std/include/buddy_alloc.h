/*
 * buddy_alloc.h - the C face of buddy, a binary buddy allocator.
 *
 *     void *ptr = buddy_alloc(128);
 *     buddy_free(ptr);
 *
 * Link with libbuddy_alloc.a (add -lpthread -ldl -lm) or libbuddy_alloc.so, both built by
 * `cargo build --release -p buddy-capi` into target/release/. These functions use a heap of
 * their own, separate from malloc's: free with buddy_free what buddy_alloc & co. returned,
 * and with free what malloc returned. (To make malloc itself buddy, preload
 * libbuddy_malloc.so instead; see the README.)
 *
 * Every block is aligned to at least 16 bytes and usable up to buddy_usable_size(ptr).
 * The heap grows from the OS as needed (virtual memory reserved on first use, physical pages
 * as they are touched; freed blocks of 256 KiB or more go back to the OS), up to 64 GiB.
 *
 * Errors. A failing function returns NULL (or -1, or 0 for buddy_usable_size) and sets errno:
 *   ENOMEM  no memory for the request, or a size that can never be served (SIZE_MAX,
 *           an overflowing n * size in buddy_calloc, an alignment above 64 MiB);
 *   EINVAL  an alignment that is not a power of two, or a pointer that is not the start of a
 *           live block of this heap (double free, interior or foreign pointer).
 * A bad pointer is never acted on: the heap is exactly as it was. With buddy_set_debug(1),
 * each refused pointer is also reported on stderr, one line written with write(2) (no
 * allocation, no stdio buffering), e.g.
 *   buddy: buddy_free(0x7f3a2c000040) refused: bad pointer: double free: block is already free
 *
 * Threads: every function may be called from any thread; a block may be freed by a thread
 * other than the one that allocated it. fork() while other threads allocate is safe: the
 * first allocating call registers pthread_atfork handlers that hold the heap still across the
 * fork, and the child can use and free every block it inherited.
 */
#ifndef BUDDY_ALLOC_H
#define BUDDY_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The number of orders in struct buddy_stats' free_blocks. */
#define BUDDY_STATS_ORDERS 64

/*
 * Statistics of the heap, from buddy_stats(): the figures of buddy-std's Stats. Every field
 * is a size_t. Orders are log2 of block sizes: a block of order k is 2^k bytes.
 */
struct buddy_stats {
    size_t free_blocks[BUDDY_STATS_ORDERS]; /* free blocks per order, like /proc/buddyinfo */
    size_t min_order;             /* the smallest block's order (4: 16 bytes) */
    size_t max_order;             /* the largest block's order (26: 64 MiB, a chunk) */
    size_t free_bytes;            /* bytes in free blocks: sum of free_blocks[k] << k */
    size_t cached_blocks;         /* free blocks waiting to be merged (counted as free) */
    size_t managed_bytes;         /* bytes the heap manages (chunks in use) */
    size_t metadata_bytes;        /* bytes of bitmaps describing them (kept out of band) */
    size_t live_allocations;      /* blocks handed out and not freed yet */
    size_t allocated_bytes;       /* bytes those blocks occupy */
    size_t high_water_bytes;      /* most bytes ever occupied (per chunk, summed) */
    size_t requested_bytes_total; /* bytes requested by all allocations so far */
    size_t allocated_bytes_total; /* bytes handed out for them (requested + rounding) */
    size_t allocations;           /* successful allocations so far (of blocks up to a chunk) */
    size_t frees;                 /* frees so far (of blocks up to a chunk) */
    size_t failed_requests;       /* requests for memory that got NULL (bad pointers: not counted) */
    size_t largest_free_block;    /* bytes of the largest free block */
    size_t regions;               /* regions (chunks) in the heap */
    size_t limit_bytes;           /* the memory limit */
    size_t chunk_bytes;           /* the chunk size: larger requests get a mapping of their own */
    size_t chunks;                /* chunks in use */
    size_t chunk_capacity;        /* chunks the reserved address range can hold */
    size_t reserved_bytes;        /* virtual memory reserved */
    size_t committed_bytes;       /* bytes counted against the limit */
    size_t direct_allocations;    /* live blocks larger than a chunk (own mappings) */
    size_t direct_bytes;          /* bytes of those mappings */
    size_t purges;                /* madvise(MADV_DONTNEED) calls giving freed memory back */
    size_t purged_bytes;          /* bytes given back that way */
    size_t purge_failures;        /* purges the OS refused */
    size_t map_failures;          /* mmap calls the OS refused */
};

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct buddy_stats) == (BUDDY_STATS_ORDERS + 28) * sizeof(size_t),
               "struct buddy_stats must match buddy-std's BuddyStats");
#endif

/*
 * Allocates a block of at least `size` bytes, aligned to 16. `size` 0 gets a unique minimum
 * block (not NULL), to be freed like any other. Contents are unspecified.
 * Returns NULL with errno = ENOMEM if there is no memory (or `size` is too large).
 */
void *buddy_alloc(size_t size);

/*
 * Allocates a zero-filled block for `n` elements of `size` bytes.
 * Returns NULL with errno = ENOMEM if there is no memory or `n * size` overflows.
 */
void *buddy_calloc(size_t n, size_t size);

/*
 * Allocates a block of at least `size` bytes aligned to `alignment`, a power of two (values
 * below 16 give 16). `size` need not be a multiple of `alignment`.
 * Returns NULL with errno = EINVAL if `alignment` is not a power of two (0 included),
 * ENOMEM if there is no memory or `alignment` exceeds 64 MiB.
 */
void *buddy_aligned_alloc(size_t alignment, size_t size);

/*
 * Resizes the block at `ptr` to `size` bytes, keeping its contents up to the smaller size:
 * in place when the neighbouring buddy blocks allow, else by moving it (the result is then
 * aligned to 16, whatever `ptr`'s alignment was).
 *   ptr NULL:   buddy_alloc(size).
 *   size 0:     frees ptr and returns NULL (as glibc's realloc).
 * Returns the block, or NULL with errno set and `ptr` left as it was (still yours):
 *   ENOMEM  no memory for the new size;
 *   EINVAL  `ptr` is not the start of a live block of this heap (reported as for buddy_free).
 */
void *buddy_realloc(void *ptr, size_t size);

/*
 * Frees the block at `ptr`. NULL does nothing and returns 0.
 * Returns 0, or -1 with errno = EINVAL if `ptr` is not the start of a live block of this heap
 * (a double free, a pointer inside a block, a pointer from elsewhere): nothing is freed, the
 * heap is unchanged, and with buddy_set_debug(1) a line says so on stderr.
 */
int buddy_free(void *ptr);

/*
 * The number of usable bytes in the block at `ptr` (at least what was requested; all of
 * them may be used). 0 for NULL; 0 with errno = EINVAL for a pointer that is not the start
 * of a live block of this heap.
 */
size_t buddy_usable_size(const void *ptr);

/*
 * Fills *out with the heap's statistics (a snapshot; other threads may change the heap
 * meanwhile). Returns 0, or -1 with errno = EINVAL if `out` is NULL.
 */
int buddy_stats(struct buddy_stats *out);

/*
 * Debug mode: when `on` is non-zero, every pointer refused by buddy_free, buddy_realloc or
 * buddy_usable_size is also reported on stderr (one line, written with write(2)). Off by
 * default. Returns the previous setting (0 or 1). A report that cannot be written is dropped:
 * errno is still EINVAL, and a stderr that is a pipe nobody reads raises no SIGPIPE (it is
 * blocked in the calling thread for the write).
 */
int buddy_set_debug(int on);

/*
 * Only in libbuddy_malloc.so (the drop-in malloc): the statistics of the process heap that
 * malloc uses. Returns 0, or -1 with errno = EINVAL if `out` is NULL. Look it up with
 * dlsym(RTLD_DEFAULT, "buddy_malloc_stats") to tell whether the library is preloaded.
 */
int buddy_malloc_stats(struct buddy_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* BUDDY_ALLOC_H */
