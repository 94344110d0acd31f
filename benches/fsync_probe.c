/* How long one durable 4 KiB append takes on this disk: the floor under audit `fsync` mode.
 *
 *   gcc -O2 -o /tmp/fsync_probe benches/fsync_probe.c && /tmp/fsync_probe DIR [MODE] [N]
 *
 * MODE 1: pwrite + fdatasync (what pgmoat's writer does), 2: O_DIRECT pwrite + fdatasync,
 * 3: O_DIRECT|O_DSYNC pwrite. The file is preallocated and written once first, so no sync
 * has to journal an extent change (as pgmoat's zeros ahead arrange). Prints µs per append. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double micros(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [MODE] [N]\n", argv[0]);
        return 2;
    }
    int mode = argc > 2 ? atoi(argv[2]) : 1, n = argc > 3 ? atoi(argv[3]) : 2000;
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_probe.tmp", argv[1]);
    int flags = O_RDWR | O_CREAT | O_TRUNC | (mode >= 2 ? O_DIRECT : 0) | (mode == 3 ? O_DSYNC : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0) { perror("open"); return 1; }
    size_t size = (size_t)(n / 4 + 1) * 4096;
    char *buf;
    if (posix_memalign((void **)&buf, 4096, size)) return 1;
    memset(buf, 0, size);
    if (pwrite(fd, buf, size, 0) != (ssize_t)size || fdatasync(fd)) { perror("prefill"); return 1; }
    memset(buf, 'x', 4096);
    double t0 = micros();
    for (int i = 0; i < n; i++) {
        /* Four appends land in each block, as small records do. */
        if (pwrite(fd, buf, 4096, (off_t)(i / 4) * 4096) != 4096) { perror("pwrite"); return 1; }
        if (mode != 3 && fdatasync(fd)) { perror("fdatasync"); return 1; }
    }
    printf("mode %d: %.1f us per durable append\n", mode, (micros() - t0) / n);
    unlink(path);
    return 0;
}
