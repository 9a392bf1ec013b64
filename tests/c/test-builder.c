/* test-builder.c: the builder on its own: put/get/del/overwrite/clear/count, the key
 * kind rules, UTF-8 validation, every value type, sm_builder_at order, its arena under
 * churn, and a build above the threshold of the threaded layout (byte for byte the
 * snapshot of one thread). */
#include "test.h"

#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static sm_value str_value(const char *s) {
    return sm_value_str(s, strlen(s));
}

TEST(builder_empty) {
    sm_builder *b = NULL;
    sm_entry e;
    sm_value v;
    ASSERT_OK(sm_builder_new(&b));
    ASSERT(b != NULL);
    ASSERT_EQ(sm_builder_count(b), 0);
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_NONE);
    ASSERT_ERR(sm_builder_get(b, "a", 1, &v), SM_NOTFOUND);
    ASSERT_ERR(sm_builder_get(b, "", 0, NULL), SM_NOTFOUND);
    ASSERT_ERR(sm_builder_del(b, "a", 1), SM_NOTFOUND);
    ASSERT_ERR(sm_builder_at(b, 0, &e), SM_NOTFOUND);
    sm_builder_clear(b);
    ASSERT_EQ(sm_builder_count(b), 0);
    sm_builder_free(b);
    sm_builder_free(NULL);
    sm_reader_close(NULL);
}

TEST(builder_put_get_del) {
    sm_builder *b = NULL;
    sm_value v, got;
    ASSERT_OK(sm_builder_new(&b));
    uint64_t ver0 = sm_builder_version(b);

    v = str_value("323");
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "aaa", 3, &v));
    uint64_t ver1 = sm_builder_version(b);
    ASSERT_NE(ver1, ver0);
    v = str_value("1233");
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "zb", 2, &v));
    ASSERT_EQ(sm_builder_count(b), 2);
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_STR);

    ASSERT_OK(sm_builder_get(b, "aaa", 3, &got));
    ASSERT_EQ(got.type, SM_STR);
    ASSERT_MEM_EQ(got.as.buf.data, got.as.buf.size, "323", 3);
    ASSERT_OK(sm_builder_get(b, "zb", 2, NULL));
    ASSERT_ERR(sm_builder_get(b, "aa", 2, &got), SM_NOTFOUND);
    ASSERT_ERR(sm_builder_get(b, "aaaa", 4, &got), SM_NOTFOUND);

    /* overwrite: same count, new value, version unchanged */
    uint64_t ver2 = sm_builder_version(b);
    v = sm_value_int(-7);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "aaa", 3, &v));
    ASSERT_EQ(sm_builder_count(b), 2);
    ASSERT_EQ(sm_builder_version(b), ver2);
    ASSERT_OK(sm_builder_get(b, "aaa", 3, &got));
    ASSERT_EQ(got.type, SM_INT);
    ASSERT_EQ(got.as.i, -7);

    /* the key and value bytes are copied */
    char kbuf[8] = "key", vbuf[8] = "val";
    v = sm_value_bytes(vbuf, 3);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, kbuf, 3, &v));
    memcpy(kbuf, "XXX", 3);
    memcpy(vbuf, "YYY", 3);
    ASSERT_OK(sm_builder_get(b, "key", 3, &got));
    ASSERT_EQ(got.type, SM_BYTES);
    ASSERT_MEM_EQ(got.as.buf.data, got.as.buf.size, "val", 3);
    ASSERT_ERR(sm_builder_get(b, "XXX", 3, NULL), SM_NOTFOUND);

    /* delete */
    uint64_t ver3 = sm_builder_version(b);
    ASSERT_OK(sm_builder_del(b, "aaa", 3));
    ASSERT_NE(sm_builder_version(b), ver3);
    ASSERT_EQ(sm_builder_count(b), 2);
    ASSERT_ERR(sm_builder_get(b, "aaa", 3, NULL), SM_NOTFOUND);
    ASSERT_ERR(sm_builder_del(b, "aaa", 3), SM_NOTFOUND);
    ASSERT_OK(sm_builder_get(b, "zb", 2, NULL));

    /* re-insert after delete */
    v = sm_value_none();
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "aaa", 3, &v));
    ASSERT_OK(sm_builder_get(b, "aaa", 3, &got));
    ASSERT_EQ(got.type, SM_NONE);
    ASSERT_EQ(sm_builder_count(b), 3);

    /* empty key and empty value */
    v = str_value("");
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "", 0, &v));
    ASSERT_OK(sm_builder_get(b, "", 0, &got));
    ASSERT_EQ(got.type, SM_STR);
    ASSERT_EQ(got.as.buf.size, 0);
    ASSERT_EQ(sm_builder_count(b), 4);

    /* clear */
    sm_builder_clear(b);
    ASSERT_EQ(sm_builder_count(b), 0);
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_NONE);
    ASSERT_ERR(sm_builder_get(b, "zb", 2, NULL), SM_NOTFOUND);
    v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "zb", 2, &v)); /* kind forgotten */
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_BYTES);
    sm_builder_free(b);
}

TEST(builder_many) {
    /* 5000 inserts, overwrites of every other one, deletes of every third: against a model */
    model m;
    model_init(&m, SM_KEYS_BYTES);
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int kl = snprintf(key, sizeof key, "k%07d", (i * 7919) % 5000);
        sm_value v = sm_value_int(i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, key, (size_t)kl, &v));
        model_add(&m, key, (size_t)kl, &v);
    }
    for (int i = 0; i < 5000; i += 2) {
        int kl = snprintf(key, sizeof key, "k%07d", i);
        sm_value v = sm_value_int(-i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, key, (size_t)kl, &v));
        model_add(&m, key, (size_t)kl, &v);
    }
    model_sort_unique(&m);
    ASSERT_EQ(m.n, 5000);
    ASSERT_EQ(sm_builder_count(b), 5000);
    for (int i = 0; i < 5000; i += 3) {
        int kl = snprintf(key, sizeof key, "k%07d", i);
        ASSERT_OK(sm_builder_del(b, key, (size_t)kl));
    }
    for (int i = 0; i < 5000; i++) {
        int kl = snprintf(key, sizeof key, "k%07d", i);
        sm_value got;
        if (i % 3 == 0) {
            ASSERT_ERR(sm_builder_get(b, key, (size_t)kl, &got), SM_NOTFOUND);
        } else {
            ASSERT_OK(sm_builder_get(b, key, (size_t)kl, &got));
            ASSERT_VALUE_EQ(&got, &m.e[i].val);
        }
    }
    ASSERT_EQ(sm_builder_count(b), 5000 - 1667);
    /* sm_builder_at walks the survivors in order */
    size_t r = 0;
    for (int i = 0; i < 5000; i++) {
        if (i % 3 == 0)
            continue;
        sm_entry e;
        ASSERT_OK(sm_builder_at(b, r, &e));
        ASSERT_MEM_EQ(e.key.data, e.key.size, m.e[i].key, m.e[i].klen);
        ASSERT_VALUE_EQ(&e.value, &m.e[i].val);
        r++;
    }
    sm_entry e;
    ASSERT_ERR(sm_builder_at(b, r, &e), SM_NOTFOUND);
    sm_builder_free(b);
    model_free(&m);
}

TEST(builder_key_kind) {
    sm_builder *b = NULL;
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_new(&b));
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_NONE, "a", 1, &v), -EINVAL);
    ASSERT_ERR(sm_builder_put(b, (sm_key_kind)7, "a", 1, &v), -EINVAL);
    ASSERT_EQ(sm_builder_count(b), 0);

    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "a", 1, &v));
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_STR);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_BYTES, "b", 1, &v), SM_EKEYKIND);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_BYTES, "a", 1, &v), SM_EKEYKIND);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_NONE, "a", 1, &v), -EINVAL);
    ASSERT_EQ(sm_builder_count(b), 1);
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_STR);

    /* emptied by deletion: the kind is forgotten */
    ASSERT_OK(sm_builder_del(b, "a", 1));
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_NONE);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "\xff", 1, &v));
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_BYTES);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_STR, "c", 1, &v), SM_EKEYKIND);
    ASSERT_EQ(sm_builder_count(b), 1);
    sm_builder_free(b);
}

TEST(builder_utf8) {
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"\xff", 1},
        {"\x80", 1},                 /* lone continuation byte */
        {"\xc0\x80", 2},             /* overlong NUL */
        {"\xc1\xbf", 2},             /* overlong */
        {"\xe0\x80\xaf", 3},         /* overlong '/' */
        {"\xed\xa0\x80", 3},         /* surrogate U+D800 */
        {"\xed\xbf\xbf", 3},         /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 4},     /* U+110000 */
        {"\xf5\x80\x80\x80", 4},
        {"\xe4\xb8", 2},             /* truncated */
        {"a\xe7\xba", 3},            /* truncated at the end */
        {"\xe7\xba\xa2\xa2", 4},     /* extra continuation */
        {"ab\xfe" "cd", 5},
    };
    static const struct {
        const char *s;
        size_t n;
    } good[] = {
        {"", 0},
        {"a\0b", 3},                 /* NUL is valid UTF-8 */
        {"\xe7\xba\xa2", 3},         /* 红 */
        {"\xf0\x9f\x98\x80", 4},     /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4},     /* U+10FFFF */
        {"\xef\xbf\xbf", 3},         /* U+FFFF */
        {"\xc2\x80", 2},             /* U+0080 */
        {"\xee\x80\x80", 3},         /* U+E000, just past the surrogates */
    };
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value ok = sm_value_int(1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sm_value sv = sm_value_str(bad[i].s, bad[i].n);
        ASSERT_ERR(sm_builder_put(b, SM_KEYS_STR, bad[i].s, bad[i].n, &ok), SM_EUTF8);
        ASSERT_ERR(sm_builder_put(b, SM_KEYS_STR, "k", 1, &sv), SM_EUTF8);
        ASSERT_ERR(sm_builder_put(b, SM_KEYS_BYTES, "k", 1, &sv), SM_EUTF8);
    }
    ASSERT_EQ(sm_builder_count(b), 0);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        sm_value sv = sm_value_str(good[i].s, good[i].n);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, good[i].s, good[i].n, &sv));
    }
    ASSERT_EQ(sm_builder_count(b), sizeof good / sizeof good[0]);
    sm_builder_free(b);

    /* bytes keys and bytes values take any bytes */
    ASSERT_OK(sm_builder_new(&b));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sm_value bv = sm_value_bytes(bad[i].s, bad[i].n);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, bad[i].s, bad[i].n, &bv));
    }
    ASSERT_EQ(sm_builder_count(b), sizeof bad / sizeof bad[0]);
    sm_builder_free(b);
}

TEST(builder_bad_type) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(0);
    v.type = (sm_type)7;
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_STR, "a", 1, &v), SM_ETYPE);
    v.type = (sm_type)-1;
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_STR, "a", 1, &v), SM_ETYPE);
    ASSERT_EQ(sm_builder_count(b), 0);
    sm_builder_free(b);
}

/* Every value type, through the builder and through a snapshot. */
TEST(values_roundtrip) {
    static unsigned char mib[1 << 20];
    for (size_t i = 0; i < sizeof mib; i++)
        mib[i] = (unsigned char)(i * 131 + (i >> 9));
    char *mib_str = xmalloc(sizeof mib);
    for (size_t i = 0; i < sizeof mib; i++)
        mib_str[i] = (char)('a' + i % 26);
    uint64_t nan_bits = UINT64_C(0x7ff8dead0000beef), snan_bits = UINT64_C(0xfff0000000000001);
    double nan1, snan;
    memcpy(&nan1, &nan_bits, 8);
    memcpy(&snan, &snan_bits, 8);

    struct {
        const char *key;
        sm_value v;
    } cases[] = {
        {"int_0", sm_value_int(0)},
        {"int_1", sm_value_int(1)},
        {"int_m1", sm_value_int(-1)},
        {"int_127", sm_value_int(127)},
        {"int_128", sm_value_int(128)},
        {"int_m128", sm_value_int(-128)},
        {"int_m129", sm_value_int(-129)},
        {"int_255", sm_value_int(255)},
        {"int_65536", sm_value_int(65536)},
        {"int_2p31", sm_value_int(INT64_C(2147483648))},
        {"int_m2p31", sm_value_int(-INT64_C(2147483648))},
        {"int_2p55", sm_value_int(INT64_C(1) << 55)},
        {"int_2p56", sm_value_int(INT64_C(1) << 56)},
        {"int_large", sm_value_int(INT64_C(1234567890123456789))},
        {"int_max", sm_value_int(INT64_MAX)},
        {"int_min", sm_value_int(INT64_MIN)},
        {"int_min1", sm_value_int(INT64_MIN + 1)},
        {"float_0", sm_value_float(0.0)},
        {"float_m0", sm_value_float(-0.0)},
        {"float_pi", sm_value_float(3.141592653589793)},
        {"float_inf", sm_value_float(INFINITY)},
        {"float_minf", sm_value_float(-INFINITY)},
        {"float_nan", sm_value_float(nan1)},
        {"float_snan", sm_value_float(snan)},
        {"float_denorm", sm_value_float(4.9e-324)},
        {"float_max", sm_value_float(1.7976931348623157e308)},
        {"true", sm_value_bool(1)},
        {"false", sm_value_bool(0)},
        {"none", sm_value_none()},
        {"bytes_empty", sm_value_bytes("", 0)},
        {"bytes_nul", sm_value_bytes("\0\0\xff", 3)},
        {"str_empty", sm_value_str("", 0)},
        {"str_red", sm_value_str("32\xe6\x98\xaf", 5)},
        {"bytes_1mib", sm_value_bytes(mib, sizeof mib)},
        {"str_1mib", sm_value_str(mib_str, sizeof mib)},
    };
    size_t n = sizeof cases / sizeof cases[0];
    model m;
    model_init(&m, SM_KEYS_STR);
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, cases[i].key, strlen(cases[i].key), &cases[i].v));
        model_add(&m, cases[i].key, strlen(cases[i].key), &cases[i].v);
    }
    for (size_t i = 0; i < n; i++) {
        sm_value got;
        ASSERT_OK(sm_builder_get(b, cases[i].key, strlen(cases[i].key), &got));
        ASSERT_VALUE_EQ(&got, &cases[i].v);
    }
    model_sort_unique(&m);
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, 0);
    ASSERT(size > 2 * sizeof mib);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    check_reader(r, &m, 1, 50);
    for (size_t i = 0; i < n; i++) {
        sm_value got;
        ASSERT_OK(sm_get(r, cases[i].key, strlen(cases[i].key), &got));
        ASSERT_VALUE_EQ(&got, &cases[i].v);
        if (got.type == SM_FLOAT) { /* the bits, not just ==, survive */
            ASSERT_EQ(memcmp(&got.as.f, &cases[i].v.as.f, 8), 0);
        }
    }
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
    model_free(&m);
    free(mib_str);
}

/* sm_builder_at: bytewise unsigned order, shorter first; NUL and 0xFF bytes. */
TEST(builder_at_order) {
    static const struct {
        const char *s;
        size_t n;
    } sorted[] = {
        {"", 0},
        {"\0", 1},
        {"\0\0", 2},
        {"\0\xff", 2},
        {"\x01", 1},
        {"a", 1},
        {"a\0", 2},
        {"a\0\0", 3},
        {"a\x01", 2},
        {"aa", 2},
        {"ab", 2},
        {"b", 1},
        {"\x7f", 1},
        {"\x80", 1},
        {"\x80\0", 2},
        {"\xfe\xff", 2},
        {"\xff", 1},
        {"\xff\0", 2},
        {"\xff\xff", 2},
        {"\xff\xff\xff", 3},
    };
    size_t n = sizeof sorted / sizeof sorted[0];
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    /* insert in a scrambled order */
    for (size_t j = 0; j < n; j++) {
        size_t i = (j * 7 + 3) % n;
        sm_value v = sm_value_int((int64_t)i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, sorted[i].s, sorted[i].n, &v));
    }
    ASSERT_EQ(sm_builder_count(b), n);
    for (size_t i = 0; i < n; i++) {
        sm_entry e;
        ASSERT_OK(sm_builder_at(b, i, &e));
        ASSERT_MEM_EQ(e.key.data, e.key.size, sorted[i].s, sorted[i].n);
        ASSERT_EQ(e.value.type, SM_INT);
        ASSERT_EQ(e.value.as.i, (int64_t)i);
    }
    sm_entry e;
    ASSERT_ERR(sm_builder_at(b, n, &e), SM_NOTFOUND);
    ASSERT_ERR(sm_builder_at(b, SIZE_MAX, &e), SM_NOTFOUND);

    /* modify, and the order is recomputed */
    ASSERT_OK(sm_builder_del(b, "a", 1));
    sm_value v = sm_value_int(100);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "a\0\0\0", 4, &v));
    ASSERT_OK(sm_builder_at(b, 5, &e));
    ASSERT_MEM_EQ(e.key.data, e.key.size, "a\0", 2);
    ASSERT_OK(sm_builder_at(b, 7, &e));
    ASSERT_MEM_EQ(e.key.data, e.key.size, "a\0\0\0", 4);

    /* the same order survives a snapshot */
    model m;
    model_init(&m, SM_KEYS_BYTES);
    for (size_t i = 0; i < sm_builder_count(b); i++) {
        ASSERT_OK(sm_builder_at(b, i, &e));
        model_add(&m, e.key.data, e.key.size, &e.value);
    }
    for (size_t i = 1; i < m.n; i++)
        ASSERT(keycmp(m.e[i - 1].key, m.e[i - 1].klen, m.e[i].key, m.e[i].klen) < 0);
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    check_reader(r, &m, 2, 100);
    sm_reader_close(r);
    free(snap);
    model_free(&m);
    sm_builder_free(b);
}

TEST(builder_write_size) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_str("x", 1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "k", 1, &v));
    uint64_t size = 0;
    ASSERT_OK(sm_builder_layout(b, &size));
    unsigned char *buf = xcalloc(1, (size_t)size + 1);
    ASSERT_ERR(sm_builder_write(b, buf, size - 1, 0), -EINVAL);
    ASSERT_ERR(sm_builder_write(b, buf, size + 1, 0), -EINVAL);
    ASSERT_OK(sm_builder_write(b, buf, size, 0));
    /* writing without an explicit layout first works too, after a modification */
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "k2", 2, &v));
    uint64_t size2 = 0;
    ASSERT_OK(sm_builder_layout(b, &size2));
    ASSERT(size2 > size);
    free(buf);
    buf = xmalloc((size_t)size2);
    ASSERT_OK(sm_builder_write(b, buf, size2, 0));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, buf, (size_t)size2));
    ASSERT_EQ(sm_reader_count(r), 2);
    sm_reader_close(r);
    free(buf);
    sm_builder_free(b);
}

/* NULL with length 0 is an empty key or value (as from an empty buffer), everywhere. */
TEST(null_empty_buffers) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_bytes(NULL, 0);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, NULL, 0, &v));
    sm_value s = sm_value_str(NULL, 0);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "s", 1, &s));
    sm_value got;
    ASSERT_OK(sm_builder_get(b, NULL, 0, &got));
    ASSERT_EQ(got.type, SM_BYTES);
    ASSERT_EQ(got.as.buf.size, 0);
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    ASSERT_OK(sm_get(r, NULL, 0, &got));
    ASSERT_EQ(got.type, SM_BYTES);
    ASSERT_EQ(got.as.buf.size, 0);
    uint64_t rank = 9, begin = 9, end = 9;
    ASSERT_OK(sm_rank(r, NULL, 0, &rank));
    ASSERT_EQ(rank, 0);
    sm_cursor c;
    ASSERT_OK(sm_seek_key(r, NULL, 0, SM_GE, &c));
    ASSERT_EQ(c.rank, 0);
    ASSERT_OK(sm_seek_key(r, NULL, 0, SM_GT, &c));
    ASSERT_EQ(c.rank, 1);
    ASSERT_OK(sm_prefix_range(r, NULL, 0, &begin, &end));
    ASSERT_EQ(begin, 0);
    ASSERT_EQ(end, 2);
    ASSERT_OK(sm_builder_del(b, NULL, 0));
    ASSERT_EQ(sm_builder_count(b), 1);
    ASSERT_EQ(sm_hash64(NULL, 0, 0), UINT64_C(0xEF46DB3751D8E999));
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
}

/* The value stored for key i in round `round` of builder_arena_churn: 1 to 200 bytes. */
static size_t churn_value(char *out, int i, int round) {
    size_t n = 1 + (size_t)((i * 31 + round * 17) % 200);
    memset(out, 'a' + (i + round) % 26, n);
    return n;
}

TEST(builder_arena_churn) {
    /* 50 rounds of overwriting every live key and deleting and re-adding a third: the
     * results match the rule that made them, and the arena stays within about twice
     * its live bytes (dict.c compacts it) */
    enum { N = 4000, ROUNDS = 50 };
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    char key[32], val[256];
    int round_of[N]; /* the round whose value key i holds, or -1 */
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            int kl = snprintf(key, sizeof key, "key%05d", i);
            if (round % 3 == 1 && i % 3 == round % 2) {
                int rc = sm_builder_del(b, key, (size_t)kl);
                ASSERT(rc == 0 || rc == SM_NOTFOUND);
                round_of[i] = -1;
                continue;
            }
            size_t vl = churn_value(val, i, round);
            sm_value v = sm_value_bytes(val, vl);
            ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, key, (size_t)kl, &v));
            round_of[i] = round;
        }
        uint64_t dead, live = smi_builder_arena_bytes(b, &dead, NULL);
        ASSERT(dead <= live + SMI_ARENA_CHUNK + 256);
    }
    uint64_t compactions;
    (void)smi_builder_arena_bytes(b, NULL, &compactions);
    ASSERT(compactions > 0);
    size_t count = 0;
    for (int i = 0; i < N; i++) {
        int kl = snprintf(key, sizeof key, "key%05d", i);
        sm_value got;
        if (round_of[i] < 0) {
            ASSERT_ERR(sm_builder_get(b, key, (size_t)kl, &got), SM_NOTFOUND);
            continue;
        }
        count++;
        size_t vl = churn_value(val, i, round_of[i]);
        ASSERT_OK(sm_builder_get(b, key, (size_t)kl, &got));
        ASSERT_EQ(got.type, SM_BYTES);
        ASSERT_MEM_EQ(got.as.buf.data, got.as.buf.size, val, vl);
    }
    ASSERT_EQ(sm_builder_count(b), count);
    /* a snapshot of the churned builder reads back the same */
    uint64_t size;
    ASSERT_OK(sm_builder_layout(b, &size));
    unsigned char *buf = malloc((size_t)size);
    ASSERT(buf != NULL);
    ASSERT_OK(sm_builder_write(b, buf, size, 1));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, buf, (size_t)size));
    ASSERT_EQ(sm_reader_count(r), count);
    for (int i = 0; i < N; i += 7) {
        int kl = snprintf(key, sizeof key, "key%05d", i);
        sm_value got;
        int rc = sm_get(r, key, (size_t)kl, &got);
        ASSERT_EQ(rc, round_of[i] < 0 ? SM_NOTFOUND : 0);
    }
    sm_reader_close(r);
    free(buf);
    sm_builder_clear(b);
    ASSERT_EQ(smi_builder_arena_bytes(b, NULL, NULL), 0);
    sm_builder_free(b);
}
/* The snapshot of b, with created fixed, into *out (malloc'ed); its size. */
static size_t fixed_snapshot(sm_builder *b, unsigned char **out) {
    uint64_t size;
    if (sm_builder_layout(b, &size))
        return 0;
    *out = malloc((size_t)size);
    if (!*out || sm_builder_write(b, *out, size, 12345))
        return 0;
    return (size_t)size;
}

TEST(builder_large) {
    /* 200k entries, above SMI_THREAD_MIN: the snapshot made with threads is the one made
     * with one thread, byte for byte, and reads back */
    enum { N = 200000 };
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    char key[32], val[64];
    uint64_t x = 1;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        int kl = snprintf(key, sizeof key, "%llx", (unsigned long long)(x >> 20));
        size_t vl = 8 + (size_t)(x >> 58) % 40;
        memset(val, 'v', vl);
        sm_value v = (i % 5) ? sm_value_str(val, vl) : sm_value_int((int64_t)x);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, key, (size_t)kl, &v));
    }
    size_t n = sm_builder_count(b);
    ASSERT(n > 190000);
    unsigned char *threaded = NULL, *single = NULL;
    size_t size1 = fixed_snapshot(b, &threaded);
    ASSERT(size1 > 0);
    smi_layout_drop(&b->lay);
    b->order_valid = 0;
    b->threads = 1;
    size_t size2 = fixed_snapshot(b, &single);
    ASSERT_EQ(size1, size2);
    ASSERT(memcmp(threaded, single, size1) == 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, threaded, size1));
    ASSERT_EQ(sm_reader_count(r), n);
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);
    free(threaded);
    free(single);
    sm_builder_free(b);
}

/* sm_builder_put_new: distinct keys appended unindexed give the snapshot sm_builder_put
 * gives, byte for byte; the index is built by the first get/put/del, and a key appended
 * twice after all is deduplicated (the later value wins) by the index or by the sort. */
TEST(builder_put_new) {
    static const sm_key_kind kinds[] = {SM_KEYS_STR, SM_KEYS_BYTES, SM_KEYS_INT};
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) {
        model m;
        model_random(&m, kinds[ki], 3000, 41 + ki);
        sm_builder *want = model_builder(&m), *b = NULL;
        ASSERT_OK(sm_builder_new(&b));
        ASSERT_OK(sm_builder_reserve(b, m.n));
        /* scattered: every 7th of the sorted entries, so that the order must be sorted */
        for (size_t i = 0, j = 0; i < m.n; i++, j = (j + 7) % m.n)
            ASSERT_OK(sm_builder_put_new(b, m.kind, m.e[j].key, m.e[j].klen, &m.e[j].val));
        ASSERT_EQ(sm_builder_count(b), m.n);
        size_t n1, n2;
        unsigned char *s1 = snapshot_of(want, &n1, 5), *s2 = snapshot_of(b, &n2, 5);
        ASSERT_MEM_EQ(s1, n1, s2, n2);
        free(s1);
        free(s2);
        /* lookups build the index; then every operation works as on want */
        for (size_t i = 0; i < m.n; i += 13) {
            sm_value got;
            ASSERT_OK(sm_builder_get(b, m.e[i].key, m.e[i].klen, &got));
            ASSERT_VALUE_EQ(&got, &m.e[i].val);
        }
        sm_value v = sm_value_int(-1);
        ASSERT_OK(sm_builder_put(b, m.kind, m.e[5].key, m.e[5].klen, &v));
        ASSERT_OK(sm_builder_del(b, m.e[6].key, m.e[6].klen));
        ASSERT_OK(sm_builder_put(want, m.kind, m.e[5].key, m.e[5].klen, &v));
        ASSERT_OK(sm_builder_del(want, m.e[6].key, m.e[6].klen));
        ASSERT_EQ(sm_builder_count(b), m.n - 1);
        /* indexed now, put_new is put: an existing key is overwritten, not repeated */
        ASSERT_OK(sm_builder_put_new(b, m.kind, m.e[7].key, m.e[7].klen, &v));
        ASSERT_OK(sm_builder_put(want, m.kind, m.e[7].key, m.e[7].klen, &v));
        ASSERT_EQ(sm_builder_count(b), m.n - 1);
        s1 = snapshot_of(want, &n1, 5);
        s2 = snapshot_of(b, &n2, 5);
        ASSERT_MEM_EQ(s1, n1, s2, n2);
        free(s1);
        free(s2);
        sm_builder_free(want);
        sm_builder_free(b);
        model_free(&m);
    }

    /* the promise broken: found by the first lookup, or by the sort of a layout */
    for (int by_sort = 0; by_sort < 2; by_sort++) {
        for (int intkeys = 0; intkeys < 2; intkeys++) {
            sm_key_kind kind = intkeys ? SM_KEYS_INT : SM_KEYS_STR;
            unsigned char ka[8], kb[8];
            const void *a = "apple", *bk = "applesauce"; /* one 8-byte prefix: one sort run */
            size_t alen = 5, blen = 10;
            if (intkeys) {
                sm_key_int(7, ka);
                sm_key_int(-3, kb);
                a = ka, bk = kb, alen = blen = 8;
            }
            sm_builder *b = NULL;
            ASSERT_OK(sm_builder_new(&b));
            sm_value v1 = sm_value_int(1), v2 = sm_value_int(2), v3 = sm_value_int(3), got;
            ASSERT_OK(sm_builder_put_new(b, kind, a, alen, &v1));
            ASSERT_OK(sm_builder_put_new(b, kind, bk, blen, &v2));
            ASSERT_OK(sm_builder_put_new(b, kind, a, alen, &v3));
            ASSERT_EQ(sm_builder_count(b), 3); /* as documented, until the index or the order */
            uint64_t version = sm_builder_version(b);
            if (by_sort == 1 && intkeys) {
                /* the last rank of the count taken before the merge: gone, not read past */
                sm_entry last;
                ASSERT_ERR(sm_builder_at(b, 2, &last), SM_NOTFOUND);
                ASSERT_EQ(sm_builder_count(b), 2);
            }
            if (by_sort) {
                size_t n;
                unsigned char *s = snapshot_of(b, &n, 1);
                ASSERT_EQ(sm_builder_count(b), 2);
                sm_reader *r = NULL;
                ASSERT_OK(sm_reader_open_mem(&r, s, n));
                ASSERT_EQ(sm_reader_count(r), 2);
                ASSERT_OK(sm_reader_verify(r));
                ASSERT_OK(sm_get(r, a, alen, &got));
                ASSERT_VALUE_EQ(&got, &v3);
                sm_reader_close(r);
                free(s);
            } else {
                ASSERT_OK(sm_builder_get(b, a, alen, &got));
                ASSERT_VALUE_EQ(&got, &v3);
                ASSERT_EQ(sm_builder_count(b), 2);
                ASSERT_OK(sm_builder_get(b, bk, blen, &got));
                ASSERT_VALUE_EQ(&got, &v2);
            }
            ASSERT(sm_builder_version(b) != version); /* one entry fewer */
            sm_entry e;
            ASSERT_OK(sm_builder_at(b, intkeys ? 1 : 0, &e));
            ASSERT_MEM_EQ(e.key.data, e.key.size, a, alen);
            ASSERT_VALUE_EQ(&e.value, &v3);
            ASSERT_ERR(sm_builder_at(b, 2, &e), SM_NOTFOUND);
            /* cleared, it starts unindexed again */
            sm_builder_clear(b);
            ASSERT_OK(sm_builder_put_new(b, SM_KEYS_BYTES, "x", 1, &v1));
            ASSERT_ERR(sm_builder_put_new(b, SM_KEYS_STR, "y", 1, &v1), SM_EKEYKIND);
            ASSERT_ERR(sm_builder_put_new(b, SM_KEYS_BYTES, NULL, 1, &v1), -EINVAL);
            ASSERT_OK(sm_builder_get(b, "x", 1, &got));
            ASSERT_ERR(sm_builder_get(b, "y", 1, &got), SM_NOTFOUND);
            sm_builder_free(b);
        }
    }
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    ASSERT_ERR(sm_builder_reserve(b, (size_t)UINT32_MAX), SM_ETOOBIG);
    sm_builder_free(b);
}

static int kv_cmp_stable(const void *pa, const void *pb) {
    const smi_kv *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a->val < b->val ? -1 : a->val > b->val; /* val = the input position: stability */
}

/* smi_radix_sort against qsort, stable, on both sides of its MSD and insertion-sort
 * thresholds: random 64-bit keys, keys whose top bits are all one value (the MSD pass moves
 * down to the bits that vary), keys of few values (long runs of equal keys), and 24-bit
 * homes; one thread and two. */
TEST(radix_sort) {
    static const size_t sizes[] = {0, 1, 2, 24, 25, 1000, 65535, 65536, 65537, 300000};
    rng r = {77};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        smi_kv *a = xmalloc((n + 1) * sizeof *a), *t = xmalloc((n + 1) * sizeof *t);
        smi_kv *want = xmalloc((n + 1) * sizeof *want);
        for (int shape = 0; shape < 4; shape++) {
            for (int two = 0; two < 2; two++) {
                unsigned bits = shape == 3 ? 24 : 64;
                for (size_t i = 0; i < n; i++) {
                    uint64_t x = rng_next(&r);
                    a[i].key = shape == 0   ? x
                               : shape == 1 ? UINT64_C(0xABCD000000000000) | (x >> 40)
                               : shape == 2 ? x % 7
                                            : x >> 40;
                    a[i].val = i;
                }
                memcpy(want, a, n * sizeof *a);
                qsort(want, n, sizeof *want, kv_cmp_stable);
                smi_kv *got = smi_radix_sort(a, t, n, bits, two);
                ASSERT(got == a || got == t);
                ASSERT(n == 0 || memcmp(got, want, n * sizeof *got) == 0);
            }
        }
        free(a);
        free(t);
        free(want);
    }
}
