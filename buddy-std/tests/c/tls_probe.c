/*
 * Allocates and frees from two threads under LD_PRELOAD=libbuddy_malloc.so while gdb watches
 * __tls_get_addr (run by `cargo xtask test`): the drop-in malloc must never reach dynamic TLS,
 * because glibc's __tls_get_addr may itself call malloc (see buddy-std/malloc's docs).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *work(void *arg) {
    for (int i = 0; i < 2000; i++) {
        char *p = malloc(16 + (size_t)i * 37 % 5000);
        if (!p) abort();
        memset(p, 1, 16);
        p = realloc(p, 9000);
        if (!p) abort();
        free(p);
        void *q = calloc(3, 100);
        if (!q) abort();
        free(q);
    }
    return arg;
}

int main(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, work, NULL) != 0) abort();
    work(NULL);
    if (pthread_join(t, NULL) != 0) abort();
    return 0;
}
