/* test-snapshot.c: layout + write + sm_reader_open_mem round trips of random maps
 * of several sizes, held against the sorted model in every query (check_reader). */
#include "test.h"

#include <errno.h>
#include <stdlib.h>

static void roundtrip(size_t n, sm_key_kind kind, uint64_t seed, size_t probes) {
    model m;
    model_random(&m, kind, n, seed);
    ASSERT_EQ(m.n, n);
    sm_builder *b = model_builder(&m);
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, UINT64_C(1700000000123456789));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    check_reader(r, &m, seed, probes);

    sm_info info;
    sm_reader_info(r, &info);
    ASSERT_EQ(info.size, size);
    ASSERT_EQ(info.created_ns, UINT64_C(1700000000123456789));
    ASSERT_EQ(info.dev, 0);
    ASSERT_EQ(info.ino, 0);
    ASSERT_EQ(sm_reader_superseded(r), 0);
    size_t dsize;
    ASSERT(sm_reader_data(r, &dsize) == snap);
    ASSERT_EQ(dsize, size);

    /* the same bytes at an odd address open and read the same */
    unsigned char *odd = xmalloc(size + 1);
    memcpy(odd + 1, snap, size);
    sm_reader *r2 = NULL;
    ASSERT_OK(sm_reader_open_mem(&r2, odd + 1, size));
    check_reader(r2, &m, seed + 1, probes / 4 + 1);
    sm_reader_close(r2);
    free(odd);

    /* writing the same builder twice gives the same bytes */
    size_t size2;
    unsigned char *snap2 = snapshot_of(b, &size2, UINT64_C(1700000000123456789));
    ASSERT_MEM_EQ(snap, size, snap2, size2);
    free(snap2);

    /* a builder copied from the reader holds the same entries, in the same order */
    sm_builder *c = NULL;
    ASSERT_OK(sm_builder_from_reader(&c, r));
    ASSERT_EQ(sm_builder_count(c), n);
    ASSERT_EQ(sm_builder_key_kind(c), n ? kind : SM_KEYS_NONE);
    for (size_t i = 0; i < n; i++) {
        sm_entry e;
        ASSERT_OK(sm_builder_at(c, i, &e));
        ASSERT_MEM_EQ(e.key.data, e.key.size, m.e[i].key, m.e[i].klen);
        ASSERT_VALUE_EQ(&e.value, &m.e[i].val);
    }
    sm_reader_close(r); /* the copy owns its bytes */
    size_t size3;
    unsigned char *snap3 = snapshot_of(c, &size3, 0);
    sm_reader *r3 = NULL;
    ASSERT_OK(sm_reader_open_mem(&r3, snap3, size3));
    ASSERT_EQ(sm_reader_count(r3), n);
    ASSERT_OK(sm_reader_verify(r3));
    for (size_t i = 0; i < n; i++) {
        sm_value v;
        ASSERT_OK(sm_get(r3, m.e[i].key, m.e[i].klen, &v));
        ASSERT_VALUE_EQ(&v, &m.e[i].val);
    }
    sm_reader_close(r3);
    free(snap3);
    sm_builder_free(c);

    free(snap);
    sm_builder_free(b);
    model_free(&m);
}

TEST(roundtrip_0) {
    roundtrip(0, SM_KEYS_STR, 10, 50);
}

TEST(roundtrip_1) {
    roundtrip(1, SM_KEYS_STR, 11, 50);
    roundtrip(1, SM_KEYS_BYTES, 12, 50);
}

TEST(roundtrip_2) {
    roundtrip(2, SM_KEYS_STR, 13, 50);
    roundtrip(2, SM_KEYS_BYTES, 14, 50);
}

TEST(roundtrip_17) {
    for (uint64_t s = 0; s < 8; s++) {
        roundtrip(17, SM_KEYS_STR, 100 + s, 100);
        roundtrip(17, SM_KEYS_BYTES, 200 + s, 100);
    }
}

TEST(roundtrip_1000) {
    roundtrip(1000, SM_KEYS_STR, 15, 2000);
    roundtrip(1000, SM_KEYS_BYTES, 16, 2000);
}

TEST_TIMEOUT(roundtrip_200000, 300) {
    roundtrip(200000, SM_KEYS_STR, 17, 5000);
    roundtrip(200000, SM_KEYS_BYTES, 18, 5000);
}

/* Every size from 0 to 300: the sample index (every 16th record) and the hash table
 * sizes pass through all their edge cases. */
TEST(roundtrip_sizes) {
    for (size_t n = 0; n <= 300; n++)
        roundtrip(n, n % 2 ? SM_KEYS_BYTES : SM_KEYS_STR, 1000 + n, 20);
}

/* Keys that share long prefixes (the 8-byte sample prefixes are all equal) and keys
 * that differ only in length. */
TEST(roundtrip_shared_prefixes) {
    model m;
    model_init(&m, SM_KEYS_BYTES);
    unsigned char k[64];
    memset(k, 'p', sizeof k);
    for (size_t len = 0; len <= 40; len++) {
        for (int last = 0; last < 4; last++) {
            static const unsigned char tails[4] = {0x00, 'p', 0x80, 0xFF};
            unsigned char kk[64];
            memcpy(kk, k, len);
            kk[len] = tails[last];
            sm_value v = sm_value_int((int64_t)(len * 4 + (size_t)last));
            model_add(&m, kk, len + 1, &v);
        }
        sm_value v = sm_value_bytes(k, len);
        model_add(&m, k, len, &v);
    }
    model_sort_unique(&m);
    sm_builder *b = model_builder(&m);
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    check_reader(r, &m, 77, 500);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
    model_free(&m);
}

/* The seed example's map, read through the C API. */
TEST(seed_example_c) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    const char *kv[][2] = {{"aaa", "323"}, {"zb", "1233"}, {"tes", "32z"}, {"\xe7\xba\xa2", "32\xe6\x98\xaf"}};
    for (size_t i = 0; i < 4; i++) {
        sm_value v = sm_value_str(kv[i][1], strlen(kv[i][1]));
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, kv[i][0], strlen(kv[i][0]), &v));
    }
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    sm_value v;
    ASSERT_OK(sm_get(r, "tes", 3, &v));
    ASSERT_MEM_EQ(v.as.buf.data, v.as.buf.size, "32z", 3);
    ASSERT_OK(sm_get(r, "\xe7\xba\xa2", 3, &v));
    ASSERT_EQ(v.type, SM_STR);
    ASSERT_MEM_EQ(v.as.buf.data, v.as.buf.size, "32\xe6\x98\xaf", 5);
    /* order: aaa, tes, zb, 红 (code point order = UTF-8 byte order) */
    sm_cursor c;
    sm_entry e;
    ASSERT_OK(sm_seek_rank(r, 3, &c));
    ASSERT_OK(sm_cursor_get(&c, &e));
    ASSERT_MEM_EQ(e.key.data, e.key.size, "\xe7\xba\xa2", 3);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
}

TEST(open_mem_too_small) {
    static const unsigned char zeros[256];
    sm_reader *r = (sm_reader *)0x1;
    for (size_t n = 0; n < sizeof zeros; n++)
        ASSERT_FAILS(sm_reader_open_mem(&r, zeros, n));
    ASSERT_FAILS(sm_reader_open_mem(&r, NULL, 0));
}

TEST(hash64_vectors) {
    /* XXH64 reference values (from the xxHash test suite / spec). */
    ASSERT_EQ(sm_hash64("", 0, 0), UINT64_C(0xEF46DB3751D8E999));
    ASSERT_EQ(sm_hash64("a", 1, 0), UINT64_C(0xD24EC4F1A98C6E5B));
    ASSERT_EQ(sm_hash64("abc", 3, 0), UINT64_C(0x44BC2CF5AD770999));
    const char *fox = "The quick brown fox jumps over the lazy dog";
    ASSERT_EQ(sm_hash64(fox, strlen(fox), 0), UINT64_C(0x0B242D361FDA71BC));
    /* long inputs take the 32-byte stripe loop; the seed changes everything */
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)i;
    /* (values from an independent implementation of the XXH64 spec) */
    ASSERT_EQ(sm_hash64(buf, sizeof buf, 0), UINT64_C(0x6ef436b00eba4078));
    ASSERT_EQ(sm_hash64(buf, sizeof buf, 7), UINT64_C(0xd32eb2d2d41096db));
    ASSERT_EQ(sm_hash64(buf, 37, UINT64_C(0x9E3779B97F4A7C15)), UINT64_C(0x5475db574caa6a58));
}

TEST(strerror_names) {
    int codes[] = {SM_NOTFOUND, SM_EBADMAGIC, SM_EENDIAN, SM_EVERSION, SM_EFEATURE, SM_EHEADER,
                   SM_ETRUNCATED, SM_ECORRUPT, SM_ECHECKSUM, SM_EKEYKIND, SM_EUTF8, SM_ENAME,
                   SM_ETOOBIG, SM_ETYPE, SM_ENOTSNAPSHOT};
    const char *names[] = {"SM_NOTFOUND", "SM_EBADMAGIC", "SM_EENDIAN", "SM_EVERSION",
                           "SM_EFEATURE", "SM_EHEADER", "SM_ETRUNCATED", "SM_ECORRUPT",
                           "SM_ECHECKSUM", "SM_EKEYKIND", "SM_EUTF8", "SM_ENAME",
                           "SM_ETOOBIG", "SM_ETYPE", "SM_ENOTSNAPSHOT"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ASSERT(sm_strerror(codes[i]) != NULL);
        ASSERT(strlen(sm_strerror(codes[i])) > 3);
        ASSERT(sm_errname(codes[i]) != NULL);
        ASSERT_STR_EQ(sm_errname(codes[i]), names[i]);
    }
    ASSERT(sm_strerror(0) != NULL);
    ASSERT(sm_strerror(-ENOENT) != NULL);
    ASSERT(sm_errname(-ENOENT) != NULL);
    ASSERT_STR_EQ(sm_errname(-ENOENT), "ENOENT");
    ASSERT(sm_strerror(-99999) != NULL);
    ASSERT(sm_strerror(12345) != NULL);
    ASSERT(sm_errname(-99999) == NULL);
}

/* Key and value lengths at the varint boundaries of klen and of vword = vlen << 4 | type. */
TEST_TIMEOUT(roundtrip_lengths, 120) {
    static const size_t lens[] = {0, 1, 7, 8, 9, 127, 128, 129, 1023, 1024, 1025, 16383, 16384,
                                  16385, 131071, 131072, 131073, 1 << 20};
    size_t nl = sizeof lens / sizeof lens[0];
    unsigned char *buf = xmalloc((1 << 20) + 16);
    for (size_t i = 0; i < (1 << 20) + 16; i++)
        buf[i] = (unsigned char)('a' + (i * 7) % 26);
    model m;
    model_init(&m, SM_KEYS_STR);
    for (size_t i = 0; i < nl; i++) {
        /* key of length lens[i] (its first byte tells it apart), value of length lens[nl-1-i] */
        buf[0] = (unsigned char)('A' + i);
        sm_value v = sm_value_str((const char *)buf + 1, lens[nl - 1 - i]);
        model_add(&m, buf, lens[i] ? lens[i] : 0, &v);
        sm_value bv = sm_value_bytes(buf, lens[i]);
        char k[16];
        int kl = snprintf(k, sizeof k, "v%02zu", i);
        model_add(&m, k, (size_t)kl, &bv);
    }
    model_sort_unique(&m);
    sm_builder *b = model_builder(&m);
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    check_reader(r, &m, 5, 50);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
    model_free(&m);
    free(buf);
}

/* 300 keys that all hash to home slot 0 under seed 0: a displacement over 255, which
 * the writer must get out of (another seed, or a larger table) and still be correct. */
TEST_TIMEOUT(pathological_keys, 120) {
    const size_t n = 300;
    const uint64_t M = n + n / 4 + 1; /* the home range the writer uses (docs/FORMAT.md) */
    model m;
    model_init(&m, SM_KEYS_BYTES);
    char k[32];
    for (uint64_t i = 0; m.n < n; i++) {
        int kl = snprintf(k, sizeof k, "p%" PRIu64, i);
        uint64_t h = sm_hash64(k, (size_t)kl, 0);
        if ((uint64_t)(((unsigned __int128)h * M) >> 64) == 0) {
            sm_value v = sm_value_int((int64_t)i);
            model_add(&m, k, (size_t)kl, &v);
        }
    }
    model_sort_unique(&m);
    ASSERT_EQ(m.n, n);
    sm_builder *b = model_builder(&m);
    size_t size;
    unsigned char *snap = snapshot_of(b, &size, 0);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    check_reader(r, &m, 6, 300);
    sm_info info;
    sm_reader_info(r, &info);
    printf("  hash seed %" PRIu64 ", %" PRIu64 " bytes\n", info.hash_seed, info.size);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
    model_free(&m);
}
