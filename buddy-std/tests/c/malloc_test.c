/*
 * The drop-in malloc (libbuddy_malloc.so), from an ordinary C program linked against glibc
 * and run with LD_PRELOAD: run by `cargo xtask test`. Checks that the library really is the
 * process's malloc, the C semantics of every exported function, many threads, blocks freed by
 * another thread, short-lived threads, and fork() while other threads allocate. Every check
 * exits non-zero with the failing line on failure.
 */
#define _GNU_SOURCE
#include "buddy_alloc.h"
#include "width.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
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

typedef int (*stats_fn)(struct buddy_stats *);
static stats_fn heap_stats;

static struct buddy_stats stats(void) {
    struct buddy_stats s;
    CHECK(heap_stats(&s) == 0);
    return s;
}

static int aligned(const void *p, size_t align) { return ((uintptr_t)p & (align - 1)) == 0; }

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 13);
}

static int filled(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 13)) return 0;
    return 1;
}

/* The library is loaded, and malloc & co. resolve to it, glibc's own callers included. */
static void preloaded(void) {
    heap_stats = (stats_fn)dlsym(RTLD_DEFAULT, "buddy_malloc_stats");
    CHECK(heap_stats != NULL);
    Dl_info info;
    void *(*m)(size_t) = malloc;
    CHECK(dladdr((void *)m, &info) != 0 && strstr(info.dli_fname, "libbuddy_malloc") != NULL);
    void (*f)(void *) = free;
    CHECK(dladdr((void *)f, &info) != 0 && strstr(info.dli_fname, "libbuddy_malloc") != NULL);
    struct buddy_stats before = stats();
    char *s = strdup("a string copied by glibc's strdup"); /* glibc calls malloc inside */
    CHECK(s != NULL);
    struct buddy_stats after = stats();
    CHECK(after.live_allocations == before.live_allocations + 1);
    CHECK(malloc_usable_size(s) >= strlen(s) + 1);
    free(s);
    CHECK(stats().live_allocations == before.live_allocations);
    /* stdio, which allocates its buffers, works on top of it: */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    CHECK(mem != NULL);
    for (int i = 0; i < 1000; i++) fprintf(mem, "line %d\n", i);
    CHECK(fclose(mem) == 0);
    CHECK(len == 8890 && strncmp(text + len - 9, "line 999\n", 9) == 0);
    free(text);
}

static void semantics(void) {
    struct buddy_stats before = stats();
    /* malloc(0): a unique block; free(NULL): nothing. */
    void *z = malloc(0);
    CHECK(z != NULL && malloc_usable_size(z) == 16);
    free(z);
    errno = 0;
    free(NULL);
    CHECK(errno == 0);
    CHECK(malloc_usable_size(NULL) == 0);

    /* malloc: alignment, usable size, contents. */
    for (size_t n = 1; n < ((size_t)1 << 27); n = n * 3 + 1) {
        unsigned char *p = malloc(n);
        CHECK(p != NULL && aligned(p, 16) && malloc_usable_size(p) >= n);
        fill(p, n, (unsigned)n);
        CHECK(filled(p, n, (unsigned)n));
        free(p);
    }
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(ABOVE_LIMIT) == NULL && errno == ENOMEM);

    /* calloc zeroes (a dirty block handed out again) and refuses overflow. */
    for (size_t n = 1; n < 300000; n = n * 5 + 3) {
        unsigned char *d = malloc(n);
        CHECK(d != NULL);
        memset(d, 0xCD, n);
        free(d);
        unsigned char *c = calloc(n, 1);
        CHECK(c != NULL);
        for (size_t i = 0; i < n; i++) CHECK(c[i] == 0);
        free(c);
    }
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2 + 1, 2) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(SQRT_OVERFLOW, SQRT_OVERFLOW) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(NULL, SIZE_MAX, 2) == NULL && errno == ENOMEM); /* glibc, over realloc */

    /* realloc: NULL allocates, 0 frees (glibc's choice), contents kept, failure keeps the block. */
    unsigned char *r = realloc(NULL, 100);
    CHECK(r != NULL);
    fill(r, 100, 7);
    for (size_t n = 100; n < ((size_t)100 << 20); n *= 4) {
        unsigned char *q = realloc(r, n * 4);
        CHECK(q != NULL && filled(q, n > 100 ? 100 : n, 7));
        r = q;
    }
    unsigned char *q = realloc(r, 50);
    CHECK(q != NULL && filled(q, 50, 7));
    r = q;
    errno = 0;
    CHECK(realloc(r, SIZE_MAX) == NULL && errno == ENOMEM);
    CHECK(filled(r, 50, 7));
    struct buddy_stats live = stats();
    CHECK(realloc(r, 0) == NULL);
    CHECK(stats().live_allocations == live.live_allocations - 1);
    CHECK(malloc_usable_size(r) == 0); /* freed: no longer a live block */

    /* posix_memalign: EINVAL for a bad alignment, *memptr untouched on failure. */
    void *m = (void *)0x1;
    CHECK(posix_memalign(&m, 0, 16) == EINVAL && m == (void *)0x1);
    CHECK(posix_memalign(&m, sizeof(void *) / 2, 16) == EINVAL && m == (void *)0x1); /* < sizeof(void *) */
    CHECK(posix_memalign(&m, 24, 16) == EINVAL && m == (void *)0x1);
    CHECK(posix_memalign(&m, 64, SIZE_MAX / 2) == ENOMEM && m == (void *)0x1);
    for (size_t a = sizeof(void *); a <= CHUNK; a <<= 1) { /* beyond a chunk: ENOMEM */
        CHECK(posix_memalign(&m, a, 100) == 0 && m != NULL && aligned(m, a));
        free(m);
    }
    /* aligned_alloc: EINVAL unless a power of two. memalign rounds up, as glibc does. */
    errno = 0;
    CHECK(aligned_alloc(24, 48) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(0, 48) == NULL && errno == EINVAL);
    void *a = aligned_alloc(4096, 10);
    CHECK(a != NULL && aligned(a, 4096));
    free(a);
    a = memalign(24, 10);
    CHECK(a != NULL && aligned(a, 32));
    free(a);
    a = memalign(1 << 20, 10);
    CHECK(a != NULL && aligned(a, 1 << 20));
    free(a);
    long page = sysconf(_SC_PAGESIZE);
    a = valloc(10);
    CHECK(a != NULL && aligned(a, (size_t)page));
    free(a);
    a = pvalloc(1);
    CHECK(a != NULL && aligned(a, (size_t)page) && malloc_usable_size(a) >= (size_t)page);
    free(a);
    /* Refused by the argument checks before the heap, each is one failed request. */
    struct buddy_stats pre = stats();
    CHECK(posix_memalign(&m, 24, 16) == EINVAL);
    errno = 0;
    CHECK(memalign(SIZE_MAX, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(pvalloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    CHECK(stats().failed_requests - pre.failed_requests == 4);

    /* Pointers this heap did not hand out: ignored, heap unchanged. */
    unsigned char *p = malloc(256);
    CHECK(p != NULL);
    fill(p, 256, 1);
    struct buddy_stats mid = stats();
    int local;
    free(p + 16);
    free(&local);
    free((void *)64);
    errno = 0;
    CHECK(realloc(p + 32, 10) == NULL && errno == EINVAL);
    CHECK(malloc_usable_size(p + 16) == 0);
    struct buddy_stats same = stats();
    CHECK(same.live_allocations == mid.live_allocations && same.frees == mid.frees);
    CHECK(filled(p, 256, 1));
    free(p);
    free(p); /* double free: ignored */
    CHECK(stats().live_allocations == mid.live_allocations - 1);

    CHECK(stats().live_allocations == before.live_allocations);
}

/* ----- threads ----- */

#define THREADS 8
#define SLOTS 64
static _Atomic(unsigned char *) mailbox[SLOTS];
static atomic_int stop;

static unsigned next_rand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static unsigned char *make(size_t n, unsigned seed) {
    unsigned char *p = malloc(n + 16);
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
    CHECK(malloc_usable_size(p) >= n + 16);
    CHECK(filled(p + 16, n, seed));
    free(p);
}

static void *worker(void *arg) {
    unsigned s = (unsigned)(uintptr_t)arg * 31337u + 5;
    unsigned char *mine[32] = {0};
    for (int i = 0; i < 30000; i++) {
        unsigned r = next_rand(&s);
        size_t n = (r % 11 == 0) ? r % 100000 : r % 300;
        int k = r % 32;
        if (mine[k]) {
            if (r % 3 == 0) { /* grow or shrink it, keeping what fits */
                size_t old;
                unsigned seed;
                memcpy(&old, mine[k], sizeof old);
                memcpy(&seed, mine[k] + 8, sizeof seed);
                unsigned char *q = realloc(mine[k], n + 16);
                CHECK(q != NULL && filled(q + 16, old < n ? old : n, seed));
                memcpy(q, &n, sizeof n);
                fill(q + 16, n, seed);
                mine[k] = q;
                continue;
            }
            check_and_free(mine[k]);
        }
        mine[k] = (r % 4 == 0) ? calloc(1, n + 16) : make(n, r);
        CHECK(mine[k] != NULL);
        if (r % 4 == 0) {
            for (size_t j = 0; j < n + 16; j++) CHECK(mine[k][j] == 0);
            memcpy(mine[k], &n, sizeof n);
            memcpy(mine[k] + 8, &r, sizeof r);
            fill(mine[k] + 16, n, r);
        }
        if (r % 5 == 0) { /* hand it to whichever thread takes this slot next */
            unsigned char *old = atomic_exchange(&mailbox[r % SLOTS], mine[k]);
            mine[k] = NULL;
            if (old) check_and_free(old);
        }
    }
    for (int k = 0; k < 32; k++)
        if (mine[k]) check_and_free(mine[k]);
    return NULL;
}

static void *short_lived(void *arg) {
    char *s = malloc(100);
    CHECK(s != NULL);
    snprintf(s, 100, "thread %d", (int)(uintptr_t)arg);
    return s; /* freed by the thread that joins it */
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
    /* Many threads that start, allocate and end (glibc allocates their stacks' TLS too). */
    for (int round = 0; round < 20; round++) {
        pthread_t s[16];
        for (uintptr_t i = 0; i < 16; i++) CHECK(pthread_create(&s[i], NULL, short_lived, (void *)i) == 0);
        for (int i = 0; i < 16; i++) {
            void *r = NULL;
            CHECK(pthread_join(s[i], &r) == 0 && r != NULL);
            char want[32];
            snprintf(want, sizeof want, "thread %d", i);
            CHECK(strcmp(r, want) == 0);
            free(r);
        }
    }
    struct buddy_stats after = stats();
    CHECK(after.live_allocations <= before.live_allocations + 64); /* stdio, glibc caches */
    CHECK(after.allocations - before.allocations >= THREADS * 20000);
}

/* ----- fork while other threads allocate ----- */

static void *churn(void *arg) {
    unsigned s = (unsigned)(uintptr_t)arg + 77;
    while (!atomic_load(&stop)) {
        unsigned r = next_rand(&s);
        unsigned char *p = make(r % 2000, r);
        unsigned char *old = atomic_exchange(&mailbox[r % SLOTS], p);
        if (old) check_and_free(old);
        if (r % 512 == 0) {
            void *big = malloc(CHUNK + ((size_t)1 << 20)); /* a mapping of its own */
            CHECK(big != NULL);
            free(big);
        }
    }
    return NULL;
}

static void fork_while_allocating(void) {
    unsigned char *inherited = make(3000, 11);
    pthread_t t[4];
    atomic_store(&stop, 0);
    for (uintptr_t i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int round = 0; round < 60; round++) {
        usleep(1000);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10); /* a deadlocked child dies of SIGALRM, and the parent sees it */
            for (int i = 0; i < SLOTS; i++) {
                unsigned char *p = atomic_exchange(&mailbox[i], NULL);
                if (p) check_and_free(p);
            }
            CHECK(filled(inherited + 16, 3000, 11));
            char *s = NULL;
            CHECK(asprintf(&s, "child %d of round %d", (int)getpid(), round) > 0);
            free(s);
            for (int i = 0; i < 200; i++) free(make((size_t)i * 31, (unsigned)i));
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
    /* A child that execs: the new program starts on a fresh heap (the library again). */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 7", (char *)NULL);
        _exit(1);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 7);
}

int main(void) {
    preloaded();
    semantics();
    threads();
    fork_while_allocating();
    struct buddy_stats s = stats();
    printf("malloc_test: all checks passed (%zu allocations, %zu chunks)\n", s.allocations,
           s.chunks);
    return 0;
}
