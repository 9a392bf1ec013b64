/* fuzz_reader.c: libFuzzer target: arbitrary bytes through every read path.
 *
 * Any input must open cleanly or fail with an error code; once open, lookups,
 * full iteration both ways, seeks, rank, prefix ranges and verify must not crash
 * or read out of bounds (ASan/UBSan watch).  And when verify accepts a snapshot,
 * the read paths must agree with each other: iteration is strictly increasing,
 * every iterated key is found by sm_get with the same value, sm_rank gives its
 * rank, and seeks land where bisect says.  sm_get_many and sm_get_many_int answer every
 * key (some from the walk, some cut from the input, repeats included) as sm_get does, on
 * damaged snapshots too.
 */
#include "sharedmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)       \
    do {                  \
        if (!(cond))      \
            abort();      \
    } while (0)

static int keycmp(sm_buf a, sm_buf b) {
    size_t m = a.size < b.size ? a.size : b.size;
    int c = m ? memcmp(a.data, b.data, m) : 0;
    return c ? c : (a.size > b.size) - (a.size < b.size);
}

static int same_value(const sm_value *a, const sm_value *b) {
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SM_INT:
        return a->as.i == b->as.i;
    case SM_FLOAT:
        return memcmp(&a->as.f, &b->as.f, sizeof a->as.f) == 0;
    case SM_BYTES:
    case SM_STR:
        return a->as.buf.size == b->as.buf.size && a->as.buf.data == b->as.buf.data;
    default:
        return 1;
    }
}

#define MANY 48

/* sm_get_many() of keys[0, n) and sm_get_many_int() of those that are 8 bytes (as integers):
 * each status and value is what sm_get() gives for the key; the return value is the first
 * error among them. */
static void check_many(const sm_reader *r, const sm_buf *keys, size_t n) {
    sm_value want[MANY], got[MANY];
    int wst[MANY], gst[MANY], first = 0;
    for (size_t i = 0; i < n; i++) {
        wst[i] = sm_get(r, keys[i].data, keys[i].size, &want[i]);
        if (wst[i] != 0 && wst[i] != SM_NOTFOUND && !first)
            first = wst[i];
    }
    CHECK(sm_get_many(r, n, keys, got, gst) == first);
    for (size_t i = 0; i < n; i++) {
        CHECK(gst[i] == wst[i]);
        if (wst[i] == 0)
            CHECK(same_value(&got[i], &want[i]));
    }
    first = 0;
    for (size_t i = 0; i < n; i++) { /* presence only */
        wst[i] = sm_get(r, keys[i].data, keys[i].size, NULL);
        if (wst[i] != 0 && wst[i] != SM_NOTFOUND && !first)
            first = wst[i];
    }
    CHECK(sm_get_many(r, n, keys, NULL, gst) == first);
    for (size_t i = 0; i < n; i++)
        CHECK(gst[i] == wst[i]);

    int64_t ik[MANY];
    size_t ni = 0;
    first = 0;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].size != SM_INT_KEY_SIZE)
            continue;
        ik[ni] = sm_key_int_value(keys[i].data);
        unsigned char kb[SM_INT_KEY_SIZE];
        sm_key_int(ik[ni], kb);
        CHECK(memcmp(kb, keys[i].data, SM_INT_KEY_SIZE) == 0);
        wst[ni] = sm_reader_key_kind(r) == SM_KEYS_INT ? sm_get(r, kb, sizeof kb, &want[ni]) : SM_NOTFOUND;
        if (wst[ni] != 0 && wst[ni] != SM_NOTFOUND && !first)
            first = wst[ni];
        ni++;
    }
    CHECK(sm_get_many_int(r, ni, ik, got, gst) == first);
    for (size_t i = 0; i < ni; i++) {
        CHECK(gst[i] == wst[i]);
        if (wst[i] == 0)
            CHECK(same_value(&got[i], &want[i]));
    }
}

/* Everything a reader can do with the bytes in copy[0, size). */
static void read_all(uint8_t *copy, size_t size, const uint8_t *data) {
    sm_reader *r;
#ifndef FUZZ_OPEN
#define FUZZ_OPEN(r, p, n) sm_reader_open_mem(r, p, n)
#endif
    if (FUZZ_OPEN(&r, copy, size) != 0)
        return;
    int verified = sm_reader_verify(r) == 0;
    uint64_t n = sm_reader_count(r);
    sm_info info;
    sm_reader_info(r, &info);
    (void)sm_reader_superseded(r);

    /* forward walk */
    sm_cursor c;
    sm_entry e, prev;
    uint64_t walked = 0;
    int rc = sm_seek_rank(r, 0, &c);
    while (rc == 0 && sm_cursor_get(&c, &e) == 0) {
        sm_value v;
        int g = sm_get(r, e.key.data, e.key.size, &v);
        if (verified) {
            CHECK(c.rank == walked);
            if (walked)
                CHECK(keycmp(prev.key, e.key) < 0);
            CHECK(g == 0 && same_value(&v, &e.value));
            uint64_t rank;
            CHECK(sm_rank(r, e.key.data, e.key.size, &rank) == 0 && rank == walked);
            sm_cursor s;
            CHECK(sm_seek_key(r, e.key.data, e.key.size, SM_GE, &s) == 0 && s.rank == walked);
            CHECK(sm_seek_key(r, e.key.data, e.key.size, SM_GT, &s) == 0 && s.rank == walked + 1);
            uint64_t b, z;
            CHECK(sm_prefix_range(r, e.key.data, e.key.size, &b, &z) == 0 && b == walked && z > walked);
        } else {
            uint64_t rank, b, z;
            sm_cursor s;
            (void)sm_rank(r, e.key.data, e.key.size, &rank);
            (void)sm_seek_key(r, e.key.data, e.key.size, SM_GT, &s);
            (void)sm_prefix_range(r, e.key.data, e.key.size, &b, &z);
        }
        prev = e;
        walked++;
        rc = sm_cursor_next(&c);
        if (walked > n)
            break;
    }
    if (verified)
        CHECK(walked == n);
    /* the same walk in batches: the same entries, the error at the same place */
    if (sm_seek_rank(r, 0, &c) == 0) {
        sm_entry batch[5], one;
        sm_cursor single = c;
        uint64_t read = 0;
        size_t got;
        while (read <= n && sm_cursor_read_many(&c, batch, 1 + read % 5, &got) == 0 && got > 0)
            for (size_t j = 0; j < got; j++, read++) {
                CHECK(sm_cursor_read(&single, &one) == 0);
                CHECK(one.key.data == batch[j].key.data && same_value(&one.value, &batch[j].value));
            }
        CHECK(c.rank == single.rank && sm_cursor_read(&single, &one) != 0);
        if (verified)
            CHECK(read == n);
    }
    /* backward walk from the end */
    if (sm_seek_rank(r, n, &c) == 0) {
        uint64_t steps = 0;
        while (sm_cursor_prev(&c) == 0 && sm_cursor_get(&c, &e) == 0 && steps++ <= n) {
        }
        if (verified)
            CHECK(steps == n);
    }
    CHECK(sm_seek_rank(r, n + 1, &c) != 0);
    /* probes cut from the input itself */
    for (size_t off = 0; off + 1 < size && off < 4096; off += 97) {
        size_t len = data[off] % 32;
        if (len > size - off - 1)
            len = size - off - 1;
        const uint8_t *k = data + off + 1;
        sm_value v;
        (void)sm_get(r, k, len, &v);
        sm_cursor s;
        if (sm_seek_key(r, k, len, (sm_bound)(off & 1), &s) == 0)
            (void)sm_cursor_get(&s, &e);
        uint64_t b, z;
        if (sm_prefix_range(r, k, len % 4, &b, &z) == 0 && verified)
            CHECK(b <= z && z <= n);
    }
    /* many keys at once: walked keys, then cuts of the input (8 bytes each every other
     * time, so that int maps get plausible keys), then the first ones again */
    {
        sm_buf keys[MANY];
        size_t nk = 0;
        if (sm_seek_rank(r, 0, &c) == 0)
            while (nk < MANY / 3 && sm_cursor_get(&c, &e) == 0) {
                keys[nk++] = e.key;
                if (sm_cursor_next(&c) != 0)
                    break;
            }
        for (size_t off = 0; nk < 2 * MANY / 3 && off + 1 < size; off += 61) {
            size_t len = nk % 2 ? SM_INT_KEY_SIZE : data[off] % 16;
            if (len > size - off - 1)
                len = size - off - 1;
            keys[nk++] = (sm_buf){copy + off + 1, len};
        }
        for (size_t i = 0; nk < MANY && i < nk; i++)
            keys[nk++] = keys[i];
        check_many(r, keys, nk);
    }
    sm_builder *copyb;
    if (verified) {
        /* a verified snapshot copies into a builder and writes back the same entries */
        CHECK(sm_builder_from_reader(&copyb, r) == 0);
        CHECK(sm_builder_count(copyb) == n);
        sm_builder_free(copyb);
    }
    sm_reader_close(r);
}

/* read_all() of the input, and again with repair(copy, size) applied if it changed anything:
 * mutations almost always break a checksum, which hides the checks behind it. */
static int fuzz_input(const uint8_t *data, size_t size, void (*repair)(uint8_t *, size_t)) {
    /* a private, exactly-sized copy so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    read_all(copy, size, data);
    repair(copy, size);
    if (size && memcmp(copy, data, size) != 0)
        read_all(copy, size, data);
    free(copy);
    return 0;
}

/* The header checksum (the 112 bytes before it) made right. */
static void repair_header(uint8_t *p, size_t size) {
    if (size < 128)
        return;
    uint64_t sum = sm_hash64(p, 112, 0);
    for (int i = 0; i < 8; i++)
        p[112 + i] = (uint8_t)(sum >> (8 * i));
}

#ifndef FUZZ_READER_NO_ENTRY /* fuzz_set.c has its own entry and repair */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_input(data, size, repair_header); }
#endif
