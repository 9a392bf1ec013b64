/* fuzz_build.c: libFuzzer target: random edits of a builder, then a round trip.
 *
 * The input is a little program of puts and deletes.  After running it, the
 * builder's snapshot must open, verify, hold exactly the builder's entries in key
 * order, and find each of them by sm_get.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sm_builder *b;
    if (sm_builder_new(&b))
        return 0;
    size_t p = 0;
    while (p + 2 <= size) {
        uint8_t op = data[p], klen = data[p + 1] % 24;
        p += 2;
        if (klen > size - p)
            klen = (uint8_t)(size - p);
        const uint8_t *key = data + p;
        p += klen;
        if (op & 0x80) {
            (void)sm_builder_del(b, key, klen);
            continue;
        }
        sm_value v;
        uint8_t vlen = (uint8_t)(op & 0x0F);
        if (vlen > size - p)
            vlen = (uint8_t)(size - p);
        switch ((op >> 4) & 7) {
        case 0: v = sm_value_none(); break;
        case 1: v = sm_value_bool(op & 1); break;
        case 2: {
            int64_t i = 0;
            memcpy(&i, data + p, vlen < 8 ? vlen : 8);
            v = sm_value_int(i);
            break;
        }
        case 3: {
            double f = 0;
            memcpy(&f, data + p, vlen < 8 ? vlen : 8);
            v = sm_value_float(f);
            break;
        }
        case 4: v = sm_value_str((const char *)data + p, vlen); break;
        default: v = sm_value_bytes(data + p, vlen); break;
        }
        p += vlen;
        int rc = sm_builder_put(b, (op & 0x40) ? SM_KEYS_STR : SM_KEYS_BYTES, key, klen, &v);
        CHECK(rc == 0 || rc == SM_EUTF8 || rc == SM_EKEYKIND);
    }
    uint64_t snap_size;
    CHECK(sm_builder_layout(b, &snap_size) == 0);
    uint8_t *buf = malloc((size_t)snap_size);
    CHECK(buf && sm_builder_write(b, buf, snap_size, 0) == 0);
    sm_reader *r;
    CHECK(sm_reader_open_mem(&r, buf, (size_t)snap_size) == 0);
    CHECK(sm_reader_verify(r) == 0);
    size_t n = sm_builder_count(b);
    CHECK(sm_reader_count(r) == n);
    sm_cursor c;
    CHECK(sm_seek_rank(r, 0, &c) == 0);
    for (size_t i = 0; i < n; i++) {
        sm_entry want, got;
        CHECK(sm_builder_at(b, i, &want) == 0);
        CHECK(sm_cursor_get(&c, &got) == 0);
        CHECK(want.key.size == got.key.size && memcmp(want.key.data, got.key.data, got.key.size) == 0);
        CHECK(want.value.type == got.value.type);
        sm_value v;
        CHECK(sm_get(r, want.key.data, want.key.size, &v) == 0 && v.type == want.value.type);
        (void)sm_cursor_next(&c);
    }
    CHECK(c.rank == n);
    sm_reader_close(r);
    free(buf);
    sm_builder_free(b);
    return 0;
}
