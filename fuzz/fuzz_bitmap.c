/* fuzz_bitmap.c: libFuzzer target: arbitrary bytes as a shared bitmap file.
 *
 * The input is checked from memory (smb_parse_header) and, written to a file, attached
 * read-write and read-only and listed: all four must give the same answer, and none may
 * crash or touch memory out of bounds (ASan/UBSan watch).  When it attaches, the bitmap
 * must behave: get agrees with set / test_and_set / test_and_clear, indexes past the size
 * read clear and cannot be set, count equals both the walk of next_set and the popcount of
 * the bytes, and a small grow and a shrink-and-grow reveal only clear bits.
 */
#include "bitmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(cond)       \
    do {                  \
        if (!(cond))      \
            abort();      \
    } while (0)

static char dir[64], path[128];

static void cleanup(void) {
    unlink(path);
    rmdir(dir);
}

static void setup(void) {
    if (dir[0])
        return;
    snprintf(dir, sizeof dir, "/dev/shm/sm-fuzz.%ld", (long)getpid());
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        abort();
    snprintf(path, sizeof path, "%s/" SM_BITMAP_PREFIX "f", dir);
    atexit(cleanup);
}

static void write_input(const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        CHECK(w > 0);
        off += (size_t)w;
    }
    close(fd);
}

static int listed_err;
static int list_cb(const char *name, const sm_bitmap_info *info, int err, void *ctx) {
    (void)info;
    (void)ctx;
    CHECK(strcmp(name, "f") == 0);
    listed_err = err;
    return 0;
}

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t count_bytes(const unsigned char *p, size_t n) {
    uint64_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (uint64_t)__builtin_popcount(p[i]);
    return c;
}

static uint64_t walk(sm_bitmap *b) {
    uint64_t n = 0, from = 0, i;
    int rc;
    while ((rc = sm_bitmap_next_set(b, from, &i)) == 0) {
        CHECK(i >= from && i < sm_bitmap_size(b) && sm_bitmap_get(b, i) == 1);
        n++;
        from = i + 1;
    }
    CHECK(rc == SM_NOTFOUND);
    return n;
}

static uint64_t count(sm_bitmap *b) {
    uint64_t n = UINT64_MAX;
    CHECK(sm_bitmap_count(b, &n) == 0);
    return n;
}

/* Everything a handle can do, on the file we are the only writer of. */
static void exercise(sm_bitmap *b, uint64_t seed) {
    uint64_t size = sm_bitmap_size(b), max = sm_bitmap_max_bits(b);
    CHECK(size % 8 == 0 && size <= max && max % 64 == 0);
    const void *data;
    size_t len;
    CHECK(sm_bitmap_bytes(b, &data, &len) == 0 && len == size / 8);
    uint64_t n = count(b);
    CHECK(n == count_bytes(data, len) && n == walk(b));
    CHECK(sm_bitmap_get(b, size) == 0 && sm_bitmap_get(b, UINT64_MAX) == 0);
    CHECK(sm_bitmap_set(b, size, 1) == -ERANGE && sm_bitmap_test_and_set(b, UINT64_MAX) == -ERANGE);
    for (int k = 0; size && k < 8; k++) {
        uint64_t i = mix(&seed) % size;
        int was = sm_bitmap_get(b, i);
        CHECK(was == 0 || was == 1);
        CHECK(sm_bitmap_test_and_set(b, i) == was && sm_bitmap_get(b, i) == 1);
        CHECK(sm_bitmap_test_and_clear(b, i) == 1 && sm_bitmap_get(b, i) == 0);
        CHECK(sm_bitmap_set(b, i, was) == 0 && sm_bitmap_get(b, i) == was);
    }
    CHECK(count(b) == n);

    /* a small grow reveals clear bits */
    int rc = sm_bitmap_resize(b, size + 64);
    if (size + 64 > max) {
        CHECK(rc == -EFBIG && sm_bitmap_size(b) == size);
        return;
    }
    CHECK(rc == 0 && sm_bitmap_size(b) == size + 64);
    uint64_t i;
    CHECK(count(b) == n && sm_bitmap_next_set(b, size, &i) == SM_NOTFOUND);
    CHECK(sm_bitmap_set(b, size + 63, 1) == 0 && sm_bitmap_get(b, size + 63) == 1);
    /* shrink to half and grow back: the upper half reads clear */
    uint64_t half = size / 16 * 8;
    CHECK(sm_bitmap_bytes(b, &data, &len) == 0);
    uint64_t low = count_bytes(data, (size_t)(half / 8));
    CHECK(sm_bitmap_resize(b, half) == 0 && count(b) == low);
    CHECK(sm_bitmap_resize(b, size + 64) == 0 && count(b) == low && walk(b) == low);
    CHECK(sm_bitmap_clear_all(b) == 0 && count(b) == 0);
    sm_bitmap_info info;
    CHECK(sm_bitmap_stat(b, &info) == 0 && info.size == size + 64 && info.capacity >= info.size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    smb_header h;
    int want = smb_parse_header(data, size < SMB_HEADER_SIZE ? size : SMB_HEADER_SIZE, size, &h);
    write_input(data, size);

    listed_err = 1;
    CHECK(sm_bitmap_list(dir, list_cb, NULL) == 0 && listed_err == want);

    sm_bitmap *b = NULL;
    int rc = sm_bitmap_attach(&b, dir, "f", SM_BITMAP_RDONLY);
    CHECK(rc == want);
    if (rc == 0) {
        CHECK(sm_bitmap_size(b) == h.size && sm_bitmap_max_bits(b) == h.max_bits);
        CHECK(sm_bitmap_superseded(b) == (h.superseded != 0));
        CHECK(sm_bitmap_set(b, 0, 1) == -EBADF && sm_bitmap_resize(b, 8) == -EBADF);
        const void *bytes;
        size_t len;
        uint64_t n = count(b);
        CHECK(sm_bitmap_bytes(b, &bytes, &len) == 0 && n == count_bytes(bytes, len) && n == walk(b));
        sm_bitmap_close(b);
    }
    rc = sm_bitmap_attach(&b, dir, "f", 0);
    CHECK(rc == want);
    if (rc == 0) {
        exercise(b, sm_hash64(data, size, 1));
        sm_bitmap_close(b);
    }
    return 0;
}
