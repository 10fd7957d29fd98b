/*
 * The third program of `cargo xtask bench --preload`: strings grown by reallocation, as
 * sqlite3's string builder and many C programs grow their buffers. Each round allocates a
 * buffer of 24..63 bytes and grows it by doubling (size * 2 + 13) past 3000 bytes, writing
 * its last byte after every step; 64 such buffers stay live at a time (a random one freed
 * per round). Most of the calls are `realloc`s of a block whose size only the allocator
 * knows (6.3 per `malloc`), so this is the cost of a size-less resize.
 *
 * Prints a checksum of what it read back (the same under every allocator; the bench
 * compares it), never a time: the bench times the process with /usr/bin/time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROUNDS = 1000000, KEEP = 64 };

int main(void) {
    unsigned char *keep[KEEP] = {0};
    unsigned long sum = 0;
    unsigned x = 1;
    for (int i = 0; i < ROUNDS; i++) {
        size_t size = 24 + x % 40;
        x = x * 1103515245u + 12345u;
        unsigned char *p = malloc(size);
        if (p == NULL) {
            return 1;
        }
        p[0] = (unsigned char)i;
        while (size < 3000) {
            size = size * 2 + 13;
            unsigned char *q = realloc(p, size);
            if (q == NULL) {
                return 1;
            }
            p = q;
            p[size - 1] = (unsigned char)size;
        }
        sum += p[0] + p[size - 1];
        int k = (x >> 16) % KEEP;
        free(keep[k]);
        keep[k] = p;
    }
    for (int k = 0; k < KEEP; k++) {
        free(keep[k]);
    }
    printf("%lu\n", sum);
    return 0;
}
