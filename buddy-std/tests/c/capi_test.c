/*
 * The C ABI of buddy-std (buddy_alloc.h), from C: run by `cargo xtask test`, linked once
 * against libbuddy_alloc.a and once against libbuddy_alloc.so. Every check exits non-zero
 * with the failing line on failure (not assert(): NDEBUG must not turn checks off).
 */
#define _GNU_SOURCE
#include "buddy_alloc.h"
#include "width.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d)\n", __FILE__, __LINE__,    \
                    #cond, errno);                                                         \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static int aligned(const void *p, size_t align) { return ((uintptr_t)p & (align - 1)) == 0; }

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}

static int filled(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

static struct buddy_stats stats(void) {
    struct buddy_stats s;
    memset(&s, 0xff, sizeof s);
    CHECK(buddy_stats(&s) == 0);
    return s;
}

/* The per-order counts add up to the free bytes: the struct's layout matches the library's. */
static void check_stats_shape(const struct buddy_stats *s) {
    size_t sum = 0;
    for (int k = 0; k < BUDDY_STATS_ORDERS; k++) sum += s->free_blocks[k] << k;
    CHECK(sum == s->free_bytes);
    CHECK(s->min_order == 4);
    CHECK(s->chunk_bytes == CHUNK);
    CHECK(s->chunks == 0 || s->max_order == CHUNK_ORDER);
    CHECK(s->limit_bytes == LIMIT);
    CHECK(s->free_bytes + s->allocated_bytes - s->direct_bytes == s->managed_bytes);
}

static void basics(void) {
    struct buddy_stats before = stats();
    unsigned char *p = buddy_alloc(128);
    CHECK(p != NULL);
    CHECK(aligned(p, 16));
    CHECK(buddy_usable_size(p) >= 128);
    fill(p, buddy_usable_size(p), 1);
    struct buddy_stats during = stats();
    check_stats_shape(&during);
    CHECK(during.live_allocations == before.live_allocations + 1);
    CHECK(during.allocations == before.allocations + 1);
    CHECK(filled(p, buddy_usable_size(p), 1));
    CHECK(buddy_free(p) == 0);
    struct buddy_stats after = stats();
    CHECK(after.live_allocations == before.live_allocations);
    CHECK(after.frees == before.frees + 1);

    /* Size 0: a unique minimum block. */
    void *z1 = buddy_alloc(0), *z2 = buddy_alloc(0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    CHECK(buddy_usable_size(z1) == 16);
    CHECK(buddy_free(z1) == 0 && buddy_free(z2) == 0);

    /* NULL: nothing, and errno untouched. */
    errno = 0;
    CHECK(buddy_free(NULL) == 0);
    CHECK(errno == 0);
    CHECK(buddy_usable_size(NULL) == 0);
    CHECK(errno == 0);

    /* Sizes from 1 byte to a direct mapping (larger than a chunk). */
    static const size_t sizes[] = {1, 15, 16, 17, 100, 511, 512, 513, 1000, 4095, 4096, 65537,
                                   1 << 20, (1 << 20) + 1, CHUNK, CHUNK + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *q = buddy_alloc(sizes[i]);
        CHECK(q != NULL && aligned(q, 16));
        CHECK(buddy_usable_size(q) >= sizes[i]);
        fill(q, sizes[i], (unsigned)i);
        CHECK(filled(q, sizes[i], (unsigned)i));
        CHECK(buddy_free(q) == 0);
    }
}

/* A block freed dirty and handed out again by buddy_calloc is zeroed. */
static void calloc_zeroes(void) {
    static const size_t sizes[] = {1, 24, 100, 512, 4000, 4096, 1 << 16, (1 << 20) + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        for (int round = 0; round < 4; round++) {
            unsigned char *d = buddy_alloc(n);
            CHECK(d != NULL);
            memset(d, 0xAB, buddy_usable_size(d));
            CHECK(buddy_free(d) == 0);
            unsigned char *c = buddy_calloc(1, n);
            CHECK(c != NULL && aligned(c, 16));
            for (size_t j = 0; j < n; j++) CHECK(c[j] == 0);
            CHECK(buddy_free(c) == 0);
        }
        unsigned char *e = buddy_calloc(n, 3);
        CHECK(e != NULL);
        for (size_t j = 0; j < n * 3; j++) CHECK(e[j] == 0);
        CHECK(buddy_free(e) == 0);
    }
    void *none = buddy_calloc(0, 10);
    CHECK(none != NULL);
    CHECK(buddy_free(none) == 0);
}

/* Growing and shrinking keep the contents, in place or moved. */
static void realloc_keeps_contents(void) {
    size_t n = 10;
    unsigned char *p = buddy_realloc(NULL, n); /* realloc(NULL, n) allocates */
    CHECK(p != NULL);
    fill(p, n, 5);
    while (n < CHUNK / 4 * 5) { /* up to a direct mapping */
        size_t m = n * 3 - 1;
        unsigned char *q = buddy_realloc(p, m);
        CHECK(q != NULL && aligned(q, 16));
        CHECK(buddy_usable_size(q) >= m);
        CHECK(filled(q, n, 5));
        fill(q, m, 5);
        p = q;
        n = m;
    }
    while (n > 7) {
        size_t m = n / 5;
        unsigned char *q = buddy_realloc(p, m);
        CHECK(q != NULL);
        CHECK(filled(q, m, 5));
        p = q;
        n = m;
    }
    /* Growing in place when the buddy is free: a fresh 64-byte block of an aligned 4 KiB one. */
    unsigned char *big = buddy_aligned_alloc(4096, 4096);
    CHECK(big != NULL);
    CHECK(buddy_free(big) == 0);
    /* realloc(p, 0) frees p and returns NULL: p is then refused. */
    errno = 0;
    CHECK(buddy_realloc(p, 0) == NULL);
    CHECK(buddy_free(p) == -1 && errno == EINVAL);
}

static void alignment(void) {
    for (size_t align = 1; align <= CHUNK; align <<= 1) {
        static const size_t sizes[] = {1, 100, 5000};
        for (size_t i = 0; i < 3; i++) {
            unsigned char *p = buddy_aligned_alloc(align, sizes[i]);
            CHECK(p != NULL);
            CHECK(aligned(p, align < 16 ? 16 : align));
            CHECK(buddy_usable_size(p) >= sizes[i]);
            fill(p, sizes[i], 9);
            /* Resizing keeps the contents (the result is only promised 16-byte alignment). */
            unsigned char *q = buddy_realloc(p, sizes[i] * 2);
            CHECK(q != NULL && filled(q, sizes[i], 9));
            CHECK(buddy_free(q) == 0);
        }
    }
}

static void failures(void) {
    struct buddy_stats before = stats();
    /* Requests for memory that get NULL: each is one failed request, whether the heap or the
       argument checks before it refused. */
    size_t refused = 0;
    /* Impossible sizes: NULL, ENOMEM. */
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX / 2, SIZE_MAX / 2 + 1, QUARTER_SPACE,
                                  ABOVE_LIMIT};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        CHECK(buddy_alloc(huge[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(buddy_calloc(1, huge[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(buddy_aligned_alloc(64, huge[i]) == NULL && errno == ENOMEM);
        refused += 3;
    }
    /* calloc overflow: n * size does not fit a size_t. */
    errno = 0;
    CHECK(buddy_calloc(SIZE_MAX / 2 + 1, 2) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(buddy_calloc(SQRT_OVERFLOW, SQRT_OVERFLOW) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(buddy_calloc(SIZE_MAX, SIZE_MAX) == NULL && errno == ENOMEM);
    refused += 3;
    /* Bad alignments: EINVAL; an alignment above the chunk size: ENOMEM. */
    static const size_t bad_align[] = {0, 3, 24, 48, 4097, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
        errno = 0;
        CHECK(buddy_aligned_alloc(bad_align[i], 16) == NULL && errno == EINVAL);
        refused++;
    }
    errno = 0;
    CHECK(buddy_aligned_alloc(CHUNK * 2, 16) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(buddy_aligned_alloc(SIZE_MAX / 2 + 1, 16) == NULL && errno == ENOMEM);
    refused += 2;

    /* A failed realloc leaves the block as it was. */
    unsigned char *p = buddy_alloc(1000);
    CHECK(p != NULL);
    fill(p, 1000, 3);
    errno = 0;
    CHECK(buddy_realloc(p, SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(buddy_realloc(p, ABOVE_LIMIT) == NULL && errno == ENOMEM);
    refused += 2;
    CHECK(filled(p, 1000, 3) && buddy_usable_size(p) >= 1000);

    /* Bad frees: -1, EINVAL, heap unchanged. */
    struct buddy_stats live = stats();
    int on_stack = 0;
    void *from_malloc = malloc(64);
    void *bad[] = {p + 16, p + 1, &on_stack, from_malloc, (void *)16, (void *)(uintptr_t)-16};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK(buddy_free(bad[i]) == -1 && errno == EINVAL);
        errno = 0;
        CHECK(buddy_usable_size(bad[i]) == 0 && errno == EINVAL);
        errno = 0;
        CHECK(buddy_realloc(bad[i], 10) == NULL && errno == EINVAL);
    }
    free(from_malloc);
    struct buddy_stats same = stats();
    CHECK(same.live_allocations == live.live_allocations);
    CHECK(same.frees == live.frees);
    CHECK(same.free_bytes == live.free_bytes);
    CHECK(filled(p, 1000, 3)); /* the interior frees did not free p */
    CHECK(buddy_free(p) == 0);
    errno = 0;
    CHECK(buddy_free(p) == -1 && errno == EINVAL); /* double free */
    errno = 0;
    CHECK(buddy_stats(NULL) == -1 && errno == EINVAL);

    struct buddy_stats after = stats();
    CHECK(after.live_allocations == before.live_allocations);
    /* Refused pointers are not requests for memory: not counted. */
    CHECK(after.failed_requests - before.failed_requests == refused);
}

/* Debug mode: a refused pointer is reported on stderr (one line); off, nothing is written. */
static void debug_messages(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(fcntl(fds[0], F_SETFL, O_NONBLOCK) == 0);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fds[1], 2) == 2);
    void *p = buddy_alloc(64);
    CHECK(p != NULL && buddy_free(p) == 0);
    CHECK(buddy_set_debug(0) == 0);
    CHECK(buddy_free(p) == -1); /* quiet */
    char buf[512];
    CHECK(read(fds[0], buf, sizeof buf) == -1 && errno == EAGAIN);
    CHECK(buddy_set_debug(1) == 0);
    CHECK(buddy_free(p) == -1); /* reported */
    CHECK(buddy_usable_size((char *)p + 8) == 0);
    CHECK(buddy_set_debug(0) == 1);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    CHECK(n > 0);
    buf[n] = 0;
    char expect[128];
    snprintf(expect, sizeof expect, "buddy: buddy_free(%p) refused: bad pointer: double free", p);
    CHECK(strstr(buf, expect) == buf);
    snprintf(expect, sizeof expect, "\nbuddy: buddy_usable_size(%p) refused: bad pointer: ",
             (void *)((char *)p + 8));
    CHECK(strstr(buf, expect) != NULL);
    CHECK(buf[n - 1] == '\n');
    close(fds[0]);
    close(fds[1]);

    /* A report that cannot be written (stderr closed: EBADF) leaves errno = EINVAL. */
    saved = dup(2);
    CHECK(saved >= 0 && close(2) == 0);
    buddy_set_debug(1);
    errno = 0;
    int r = buddy_free(p);
    int e = errno;
    buddy_set_debug(0);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    CHECK(r == -1 && e == EINVAL);

    /* A report written to a pipe nobody reads fails with EPIPE: the SIGPIPE it raises must not
     * end the program (a C program's default action), nor stay pending or blocked. */
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    CHECK(pipe(fds) == 0);
    close(fds[0]);
    saved = dup(2);
    CHECK(saved >= 0 && dup2(fds[1], 2) == 2);
    buddy_set_debug(1);
    errno = 0;
    r = buddy_free(p);
    e = errno;
    buddy_set_debug(0);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    close(fds[1]);
    CHECK(r == -1 && e == EINVAL);
    sigset_t now;
    CHECK(sigpending(&now) == 0 && !sigismember(&now, SIGPIPE));
    CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && !sigismember(&now, SIGPIPE));
}

/* ----- threads ----- */

#define THREADS 8
#define SLOTS 64

/* Blocks handed from one thread to another, to be checked and freed there. */
static _Atomic(unsigned char *) mailbox[SLOTS];
static atomic_int stop;

static unsigned next_rand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* A block's first word says its size and seed, so any thread can check and free it. */
static unsigned char *make(size_t n, unsigned seed) {
    unsigned char *p = buddy_alloc(n + 16);
    CHECK(p != NULL);
    memcpy(p, &n, sizeof n);
    memcpy(p + 8, &seed, sizeof seed);
    fill(p + 16, n, seed);
    return p;
}

static void check_and_free(unsigned char *p) {
    size_t n;
    unsigned seed;
    memcpy(&n, p, sizeof n);
    memcpy(&seed, p + 8, sizeof seed);
    CHECK(buddy_usable_size(p) >= n + 16);
    CHECK(filled(p + 16, n, seed));
    CHECK(buddy_free(p) == 0);
}

static void *worker(void *arg) {
    unsigned s = (unsigned)(uintptr_t)arg * 7919u + 1;
    unsigned char *mine[32] = {0};
    for (int i = 0; i < 20000; i++) {
        unsigned r = next_rand(&s);
        size_t n = (r % 7 == 0) ? r % 70000 : r % 600;
        int k = r % 32;
        if (mine[k]) check_and_free(mine[k]);
        mine[k] = make(n, r);
        if (r % 5 == 0) { /* hand a block to whichever thread takes this slot next */
            unsigned char *old = atomic_exchange(&mailbox[r % SLOTS], mine[k]);
            mine[k] = NULL;
            if (old) check_and_free(old);
        }
    }
    for (int k = 0; k < 32; k++)
        if (mine[k]) check_and_free(mine[k]);
    return NULL;
}

static void threads(void) {
    struct buddy_stats before = stats();
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < SLOTS; i++) {
        unsigned char *p = atomic_exchange(&mailbox[i], NULL);
        if (p) check_and_free(p);
    }
    struct buddy_stats after = stats();
    check_stats_shape(&after);
    CHECK(after.live_allocations == before.live_allocations);
    CHECK(after.allocations - before.allocations >= THREADS * 20000);
    CHECK(after.frees - before.frees == after.allocations - before.allocations);
}

/* ----- fork while other threads allocate ----- */

static void *churn(void *arg) {
    unsigned s = (unsigned)(uintptr_t)arg + 99;
    while (!atomic_load(&stop)) {
        unsigned r = next_rand(&s);
        unsigned char *p = make(r % 3000, r);
        unsigned char *old = atomic_exchange(&mailbox[r % SLOTS], p);
        if (old) check_and_free(old);
        if (r % 1024 == 0) { /* sometimes a chunk-sized block: growth and direct mappings */
            void *big = buddy_alloc(CHUNK + ((size_t)1 << 20));
            CHECK(big != NULL && buddy_free(big) == 0);
        }
    }
    return NULL;
}

/* Fork handlers of the program that allocate from this heap. main registers them before its
   first call into the library: buddy's own, registered when the library was loaded, still
   hold the heap only around these (prepare runs last-registered first, parent and child
   first-registered first), so these do not wait for it. */
static atomic_int prepares, parents;
static void handler_allocates(void) {
    void *p = buddy_alloc(200);
    CHECK(p != NULL && buddy_free(p) == 0);
}
static void on_prepare(void) {
    handler_allocates();
    atomic_fetch_add(&prepares, 1);
}
static void on_parent(void) {
    handler_allocates();
    atomic_fetch_add(&parents, 1);
}
static void on_child(void) { handler_allocates(); }

static void fork_while_allocating(void) {
    alarm(120); /* a parent deadlocked in a fork handler dies of SIGALRM */
    unsigned char *inherited = make(5000, 42);
    pthread_t t[4];
    atomic_store(&stop, 0);
    for (uintptr_t i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int round = 0; round < 60; round++) {
        usleep(1000);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10); /* a deadlocked child dies of SIGALRM and the parent sees it */
            /* The blocks the other threads were handing around are this thread's now. */
            for (int i = 0; i < SLOTS; i++) {
                unsigned char *p = atomic_exchange(&mailbox[i], NULL);
                if (p) check_and_free(p);
            }
            CHECK(filled(inherited + 16, 5000, 42));
            unsigned char *mine[100];
            for (int i = 0; i < 100; i++) mine[i] = make((size_t)i * 97, (unsigned)i);
            for (int i = 0; i < 100; i++) check_and_free(mine[i]);
            void *big = buddy_alloc(CHUNK + ((size_t)6 << 20));
            CHECK(big != NULL && buddy_free(big) == 0);
            struct buddy_stats s = stats();
            check_stats_shape(&s);
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork round %d: child %s %d\n", round,
                    WIFSIGNALED(status) ? "killed by signal" : "exited with",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            exit(1);
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < SLOTS; i++) {
        unsigned char *p = atomic_exchange(&mailbox[i], NULL);
        if (p) check_and_free(p);
    }
    check_and_free(inherited);
    CHECK(atomic_load(&prepares) == 60 && atomic_load(&parents) == 60);
    alarm(0);
}

int main(void) {
    CHECK(pthread_atfork(on_prepare, on_parent, on_child) == 0);
    struct buddy_stats start = stats();
    check_stats_shape(&start);
    basics();
    calloc_zeroes();
    realloc_keeps_contents();
    alignment();
    failures();
    debug_messages();
    threads();
    fork_while_allocating();
    struct buddy_stats end = stats();
    check_stats_shape(&end);
    CHECK(end.live_allocations == start.live_allocations);
    printf("capi_test: all checks passed (%zu allocations, %zu chunks)\n", end.allocations,
           end.chunks);
    return 0;
}
