/* test-intkeys.c: int keys (SM_KEYS_INT, FORMAT.md §3.1) through the builder, snapshots,
 * publishing and every ordered query, in numeric order from INT64_MIN to INT64_MAX; and
 * sm_get_many / sm_get_many_int against sm_get on random maps of every kind. */
#include "test.h"
#include "format.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

static const int64_t edges[] = {INT64_MIN, INT64_MIN + 1, -(INT64_C(1) << 32), -256, -255, -2, -1,
                                0,         1,             2,                   42,   255,  256,
                                INT64_C(1) << 32, INT64_MAX - 1, INT64_MAX};
#define NEDGES (sizeof edges / sizeof edges[0])

TEST(intkeys_key_bytes) {
    /* the encodings FORMAT.md §3.1 lists */
    static const struct {
        int64_t i;
        const char *bytes;
    } listed[] = {
        {INT64_MIN, "\x00\x00\x00\x00\x00\x00\x00\x00"}, {-1, "\x7f\xff\xff\xff\xff\xff\xff\xff"},
        {0, "\x80\x00\x00\x00\x00\x00\x00\x00"},         {42, "\x80\x00\x00\x00\x00\x00\x00\x2a"},
        {INT64_MAX, "\xff\xff\xff\xff\xff\xff\xff\xff"},
    };
    unsigned char k[SM_INT_KEY_SIZE];
    for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++) {
        sm_key_int(listed[i].i, k);
        ASSERT_MEM_EQ(k, 8, listed[i].bytes, 8);
        ASSERT_EQ(sm_key_int_value(k), listed[i].i);
    }
    /* bytewise order is numeric order, and the value round-trips */
    rng g = {7};
    for (int t = 0; t < 20000; t++) {
        int64_t a = rand_int64(&g), b = rand_int64(&g);
        unsigned char ka[8], kb[8];
        sm_key_int(a, ka);
        sm_key_int(b, kb);
        int c = memcmp(ka, kb, 8);
        ASSERT_EQ(c < 0, a < b);
        ASSERT_EQ(c == 0, a == b);
        ASSERT_EQ(sm_key_int_value(ka), a);
    }
}

TEST(intkeys_builder) {
    sm_builder *b = NULL;
    sm_value v, got;
    unsigned char k[8];
    ASSERT_OK(sm_builder_new(&b));
    for (size_t i = 0; i < NEDGES; i++) {
        sm_key_int(edges[i], k);
        v = sm_value_int(edges[i] / 3);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_INT, k, 8, &v));
    }
    ASSERT_EQ(sm_builder_count(b), NEDGES);
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_INT);
    for (size_t i = 0; i < NEDGES; i++) {
        sm_key_int(edges[i], k);
        ASSERT_OK(sm_builder_get(b, k, 8, &got));
        ASSERT_EQ(got.type, SM_INT);
        ASSERT_EQ(got.as.i, edges[i] / 3);
    }
    /* sm_builder_at: numeric order */
    sm_entry e;
    for (size_t i = 0; i < NEDGES; i++) {
        ASSERT_OK(sm_builder_at(b, i, &e));
        ASSERT_EQ(e.key.size, 8);
        ASSERT_EQ(sm_key_int_value(e.key.data), edges[i]);
    }
    /* overwrite, delete */
    sm_key_int(0, k);
    v = sm_value_str("zero", 4);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_INT, k, 8, &v));
    ASSERT_EQ(sm_builder_count(b), NEDGES);
    ASSERT_OK(sm_builder_get(b, k, 8, &got));
    ASSERT_MEM_EQ(got.as.buf.data, got.as.buf.size, "zero", 4);
    ASSERT_OK(sm_builder_del(b, k, 8));
    ASSERT_ERR(sm_builder_del(b, k, 8), SM_NOTFOUND);
    ASSERT_ERR(sm_builder_get(b, k, 8, NULL), SM_NOTFOUND);
    ASSERT_EQ(sm_builder_count(b), NEDGES - 1);
    /* a key that is not 8 bytes: -EINVAL, nothing changes */
    uint64_t ver = sm_builder_version(b);
    v = sm_value_none();
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_INT, k, 7, &v), -EINVAL);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_INT, k, 9, &v), -EINVAL);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_INT, "", 0, &v), -EINVAL);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_INT, NULL, 0, &v), -EINVAL);
    ASSERT_EQ(sm_builder_version(b), ver);
    ASSERT_EQ(sm_builder_count(b), NEDGES - 1);
    /* mixing kinds, both ways */
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_STR, "abcdefgh", 8, &v), SM_EKEYKIND);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_BYTES, k, 8, &v), SM_EKEYKIND);
    ASSERT_EQ(sm_builder_version(b), ver);
    sm_builder *s = NULL;
    ASSERT_OK(sm_builder_new(&s));
    ASSERT_OK(sm_builder_put(s, SM_KEYS_STR, "abcdefgh", 8, &v));
    ASSERT_ERR(sm_builder_put(s, SM_KEYS_INT, k, 8, &v), SM_EKEYKIND);
    sm_builder_clear(s); /* an emptied builder takes any kind again */
    ASSERT_OK(sm_builder_put(s, SM_KEYS_INT, k, 8, &v));
    ASSERT_EQ(sm_builder_key_kind(s), SM_KEYS_INT);
    /* copying an int snapshot into a builder of another kind */
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, n));
    sm_builder *t = NULL;
    ASSERT_OK(sm_builder_new(&t));
    ASSERT_OK(sm_builder_put(t, SM_KEYS_BYTES, "x", 1, &v));
    ASSERT_ERR(sm_builder_put_reader(t, r), SM_EKEYKIND);
    ASSERT_EQ(sm_builder_count(t), 1);
    ASSERT_OK(sm_builder_put_reader(s, r)); /* s holds int key 0; r lacks it */
    ASSERT_EQ(sm_builder_count(s), NEDGES);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(t);
    sm_builder_free(s);
    sm_builder_free(b);
}

TEST(intkeys_snapshot_header) {
    sm_builder *b = NULL;
    unsigned char k[8];
    sm_value v = sm_value_bool(1);
    ASSERT_OK(sm_builder_new(&b));
    sm_key_int(-5, k);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_INT, k, 8, &v));
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, 0);
    ASSERT_EQ(snap[SMF_OFF_KEY_KIND], SM_KEYS_INT);
    ASSERT_EQ(smf_le32(snap + SMF_OFF_REQUIRED_FLAGS), SMF_REQ_INT_KEYS);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, n));
    ASSERT_EQ(sm_reader_key_kind(r), SM_KEYS_INT);
    sm_info info;
    sm_reader_info(r, &info);
    ASSERT_EQ(info.key_kind, SM_KEYS_INT);
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);
    /* an emptied int builder writes an empty map: kind 0, no flag */
    sm_builder_clear(b);
    free(snap);
    snap = snapshot_of(b, &n, 0);
    ASSERT_EQ(snap[SMF_OFF_KEY_KIND], SM_KEYS_NONE);
    ASSERT_EQ(smf_le32(snap + SMF_OFF_REQUIRED_FLAGS), 0);
    free(snap);
    sm_builder_free(b);
}

/* The header of an int snapshot with flags and kind changed (checksum recomputed). */
static int open_with(const unsigned char *snap, size_t n, uint32_t flags, int kind) {
    unsigned char *copy = xmemdup(snap, n);
    smf_put32(copy + SMF_OFF_REQUIRED_FLAGS, flags);
    copy[SMF_OFF_KEY_KIND] = (unsigned char)kind;
    smf_put64(copy + SMF_OFF_HEADER_SUM, sm_hash64(copy, SMF_OFF_HEADER_SUM, 0));
    sm_reader *r = NULL;
    int rc = sm_reader_open_mem(&r, copy, n);
    sm_reader_close(r);
    free(copy);
    return rc;
}

TEST(intkeys_flag_rules) {
    model m;
    model_random(&m, SM_KEYS_INT, 30, 3);
    sm_builder *b = model_builder(&m);
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, 0);
    ASSERT_OK(open_with(snap, n, 1, SM_KEYS_INT));
    ASSERT_ERR(open_with(snap, n, 0, SM_KEYS_INT), SM_EHEADER);   /* kind 3 without the flag */
    ASSERT_ERR(open_with(snap, n, 1, SM_KEYS_BYTES), SM_EHEADER); /* the flag without kind 3 */
    ASSERT_ERR(open_with(snap, n, 1, SM_KEYS_STR), SM_EHEADER);
    ASSERT_ERR(open_with(snap, n, 1, 4), SM_EHEADER);
    ASSERT_ERR(open_with(snap, n, 9, SM_KEYS_INT), SM_EFEATURE); /* an unknown bit, before R9 */
    ASSERT_ERR(open_with(snap, n, 8, SM_KEYS_INT), SM_EFEATURE);
    ASSERT_ERR(open_with(snap, n, 5, SM_KEYS_INT), SM_EFEATURE); /* a delta's bit, on a map */
    ASSERT_ERR(open_with(snap, n, 0x80000001u, SM_KEYS_INT), SM_EFEATURE);
    ASSERT_ERR(open_with(snap, n, 8, SM_KEYS_BYTES), SM_EFEATURE);
    ASSERT_ERR(open_with(snap, n, 2, SM_KEYS_BYTES), SM_EHEADER); /* bit 1: a layer file, whose fields these are not */
    /* 8-byte bytes keys: the same records read as a bytes map without the flag */
    ASSERT_OK(open_with(snap, n, 0, SM_KEYS_BYTES));
    free(snap);
    sm_builder_free(b);
    model_free(&m);
}

TEST(intkeys_bad_klen_is_corrupt) {
    /* an int snapshot whose first record's key is 7 bytes (klen patched; values long enough
     * for R9's count / 10 rule): sm_get of it, cursors and verify say SM_ECORRUPT */
    sm_builder *b = NULL;
    unsigned char k[8];
    ASSERT_OK(sm_builder_new(&b));
    for (int64_t i = -1; i <= 1; i++) {
        sm_key_int(i, k);
        sm_value v = sm_value_str("0123456789abcdef", 16);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_INT, k, 8, &v));
    }
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, 0);
    ASSERT_EQ(snap[SMF_HEADER_SIZE], 8);
    snap[SMF_HEADER_SIZE] = 7;
    smf_put64(snap + SMF_OFF_BODY_SUM, sm_hash64(snap + SMF_HEADER_SIZE, n - SMF_HEADER_SIZE, 0));
    smf_put64(snap + SMF_OFF_HEADER_SUM, sm_hash64(snap, SMF_OFF_HEADER_SUM, 0));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, n));
    sm_key_int(-1, k);
    ASSERT_ERR(sm_get(r, k, 8, NULL), SM_ECORRUPT);
    sm_cursor c;
    sm_entry e;
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    ASSERT_ERR(sm_cursor_get(&c, &e), SM_ECORRUPT);
    ASSERT_ERR(sm_reader_verify(r), SM_ECORRUPT);
    int64_t ik[3] = {-1, 0, 1};
    int st[3];
    (void)sm_get_many_int(r, 3, ik, NULL, st);
    ASSERT_EQ(st[0], SM_ECORRUPT);
    sm_buf keys[1] = {{k, 8}};
    check_get_many(r, keys, 1);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
}

TEST(intkeys_ordered_queries) {
    sm_builder *b = NULL;
    unsigned char k[8];
    ASSERT_OK(sm_builder_new(&b));
    for (size_t i = NEDGES; i-- > 0;) { /* put in reverse */
        sm_key_int(edges[i], k);
        sm_value v = sm_value_int((int64_t)i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_INT, k, 8, &v));
    }
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, n));
    sm_cursor c;
    sm_entry e;
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    for (size_t i = 0; i < NEDGES; i++) {
        ASSERT_OK(sm_cursor_get(&c, &e));
        ASSERT_EQ(sm_key_int_value(e.key.data), edges[i]);
        ASSERT_EQ(e.value.as.i, (int64_t)i);
        uint64_t rank;
        ASSERT_OK(sm_rank(r, e.key.data, 8, &rank));
        ASSERT_EQ(rank, i);
        ASSERT_ERR(sm_cursor_next(&c), i + 1 < NEDGES ? 0 : SM_NOTFOUND);
    }
    /* seeks between and at the keys */
    for (size_t i = 0; i < NEDGES; i++) {
        sm_key_int(edges[i], k);
        ASSERT_OK(sm_seek_key(r, k, 8, SM_GE, &c));
        ASSERT_EQ(c.rank, i);
        ASSERT_OK(sm_seek_key(r, k, 8, SM_GT, &c));
        ASSERT_EQ(c.rank, i + 1);
        if (edges[i] != INT64_MAX && edges[i] + 1 != (i + 1 < NEDGES ? edges[i + 1] : 0)) {
            sm_key_int(edges[i] + 1, k); /* absent, just above */
            ASSERT_ERR(sm_get(r, k, 8, NULL), SM_NOTFOUND);
            ASSERT_OK(sm_seek_key(r, k, 8, SM_GE, &c));
            ASSERT_EQ(c.rank, i + 1);
        }
    }
    /* the last entry backwards from the end is INT64_MAX, the first INT64_MIN */
    ASSERT_OK(sm_seek_rank(r, NEDGES, &c));
    ASSERT_OK(sm_cursor_prev(&c));
    ASSERT_OK(sm_cursor_get(&c, &e));
    ASSERT_EQ(sm_key_int_value(e.key.data), INT64_MAX);
    sm_key_int(INT64_MIN, k);
    ASSERT_OK(sm_seek_key(r, k, 8, SM_GE, &c));
    ASSERT_OK(sm_cursor_get(&c, &e));
    ASSERT_EQ(sm_key_int_value(e.key.data), INT64_MIN);
    /* negative keys are the prefix range of byte 0x00..0x7f: 0x80 starts the non-negative */
    uint64_t begin, end;
    ASSERT_OK(sm_prefix_range(r, "\x80", 1, &begin, &end));
    ASSERT_EQ(begin, 7); /* INT64_MIN .. -1 are 7 keys */
    ASSERT_EQ(end, 7 + 7); /* 0, 1, 2, 42, 255, 256, 2^32 */
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
}

TEST_TIMEOUT(intkeys_random_maps, 300) {
    static const size_t sizes[] = {0, 1, 2, 15, 16, 17, 300, 3000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        model m;
        model_random(&m, SM_KEYS_INT, sizes[s], 100 + s);
        sm_builder *b = model_builder(&m);
        size_t n;
        unsigned char *snap = snapshot_of(b, &n, 0);
        sm_reader *r = NULL;
        ASSERT_OK(sm_reader_open_mem(&r, snap, n));
        check_reader(r, &m, s, 200);
        for (size_t i = 1; i < m.n; i++) /* numeric order */
            ASSERT(sm_key_int_value(m.e[i - 1].key) < sm_key_int_value(m.e[i].key));
        check_get_many_model(r, &m, s, 50);
        printf("  %zu int keys: from %" PRId64 " to %" PRId64 "\n", m.n, m.n ? sm_key_int_value(m.e[0].key) : 0,
               m.n ? sm_key_int_value(m.e[m.n - 1].key) : 0);
        sm_reader_close(r);
        free(snap);
        sm_builder_free(b);
        model_free(&m);
    }
}

TEST(intkeys_publish_open) {
    model m;
    model_random(&m, SM_KEYS_INT, 500, 11);
    sm_builder *b = model_builder(&m);
    const char *name = test_map_name("int");
    ASSERT_OK(sm_publish(b, NULL, name, 0, 0));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, NULL, name));
    check_reader(r, &m, 11, 100);
    check_get_many_model(r, &m, 11, 20);
    sm_reader_close(r);
    /* save / open_file, and a copy through a builder writes the same snapshot */
    const char *path = test_path("int.snap");
    ASSERT_OK(sm_save(b, path, 0, 0600));
    ASSERT_OK(sm_reader_open_file(&r, path));
    check_reader(r, &m, 12, 50);
    sm_builder *c = NULL;
    ASSERT_OK(sm_builder_from_reader(&c, r));
    size_t n1, n2;
    unsigned char *s1 = snapshot_of(b, &n1, 1), *s2 = snapshot_of(c, &n2, 1);
    ASSERT_MEM_EQ(s1, n1, s2, n2);
    free(s1);
    free(s2);
    sm_reader_close(r);
    sm_builder_free(c);
    ASSERT_OK(sm_unpublish(NULL, name));
    sm_builder_free(b);
    model_free(&m);
}

TEST_TIMEOUT(get_many_every_kind, 300) {
    static const sm_key_kind kinds[] = {SM_KEYS_BYTES, SM_KEYS_STR, SM_KEYS_INT};
    static const size_t sizes[] = {0, 1, 5, 16, 17, 33, 1000};
    for (size_t ki = 0; ki < 3; ki++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            model m;
            model_random(&m, kinds[ki], sizes[s], 1000 * ki + s);
            sm_builder *b = model_builder(&m);
            size_t n;
            unsigned char *snap = snapshot_of(b, &n, 0);
            sm_reader *r = NULL;
            ASSERT_OK(sm_reader_open_mem(&r, snap, n));
            check_get_many_model(r, &m, s, 40);
            printf("  kind %d, %zu keys: get_many agrees\n", (int)kinds[ki], m.n);
            /* every group size of the internal entry point gives the same statuses */
            size_t nk = m.n + 5;
            sm_buf *keys = xcalloc(nk, sizeof *keys);
            for (size_t i = 0; i < m.n; i++)
                keys[i] = (sm_buf){m.e[i].key, m.e[i].klen};
            for (size_t i = m.n; i < nk; i++)
                keys[i] = (sm_buf){"miss\xff", 5};
            int *st = xcalloc(nk, sizeof *st);
            sm_value *vals = xcalloc(nk, sizeof *vals);
            static const size_t windows[] = {0, 1, 2, 3, 16, 63, 64, 65, 1000};
            for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
                ASSERT_OK(smi_get_many(r, nk, keys, NULL, vals, st, windows[w]));
                for (size_t i = 0; i < nk; i++) {
                    ASSERT_EQ(st[i], i < m.n ? 0 : SM_NOTFOUND);
                    if (i < m.n)
                        ASSERT_VALUE_EQ(&vals[i], &m.e[i].val);
                }
            }
            /* NULL keys or status with n > 0 */
            ASSERT_ERR(sm_get_many(r, 1, NULL, NULL, st), -EINVAL);
            ASSERT_ERR(sm_get_many(r, 1, keys, NULL, NULL), -EINVAL);
            int64_t ik = 0;
            ASSERT_ERR(sm_get_many_int(r, 1, NULL, NULL, st), -EINVAL);
            ASSERT_ERR(sm_get_many_int(r, 1, &ik, NULL, NULL), -EINVAL);
            free(keys);
            free(st);
            free(vals);
            sm_reader_close(r);
            free(snap);
            sm_builder_free(b);
            model_free(&m);
        }
}

TEST(get_many_empty_map) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, n));
    sm_buf keys[3] = {{"a", 1}, {NULL, 0}, {"\x80\0\0\0\0\0\0\0", 8}};
    check_get_many(r, keys, 3);
    int st[3] = {1, 1, 1};
    int64_t ik[3] = {0, INT64_MIN, INT64_MAX};
    ASSERT_OK(sm_get_many_int(r, 3, ik, NULL, st));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(st[i], SM_NOTFOUND);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
}
