/*
 * Sizes the C tests choose by the width of size_t: 8 bytes on x86_64, 4 on i686 (the 32-bit
 * pass of `cargo xtask test`). CHUNK and LIMIT are buddy-std's defaults for that width
 * (`Config::new()`: 64 MiB chunks and a 64 GiB limit on 64-bit targets, 16 MiB and 1 GiB on
 * 32-bit ones).
 */
#ifndef BUDDY_TESTS_WIDTH_H
#define BUDDY_TESTS_WIDTH_H

#include <stdint.h>

#if SIZE_MAX > 0xffffffffu
#define CHUNK ((size_t)64 << 20)
#define CHUNK_ORDER 26
#define LIMIT ((size_t)64 << 30)
/* Squared, past SIZE_MAX: a calloc whose n * size overflows. */
#define SQRT_OVERFLOW ((size_t)1 << 33)
#else
#define CHUNK ((size_t)16 << 20)
#define CHUNK_ORDER 24
#define LIMIT ((size_t)1 << 30)
#define SQRT_OVERFLOW ((size_t)1 << 17)
#endif

/* A quarter of the address space: at least the whole limit (1 GiB on 32-bit targets), so
   more than it allows on top of the chunk already mapped. */
#define QUARTER_SPACE (SIZE_MAX / 4 + 1)
/* Half again the limit. */
#define ABOVE_LIMIT (LIMIT / 2 * 3)

#endif
