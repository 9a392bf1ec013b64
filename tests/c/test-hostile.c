/* test-hostile.c: snapshots that are not valid: truncations at every length, every
 * single-byte flip, body damage with the checksums made to match (so only the
 * structural checks stand between the bytes and a crash), hostile header fields,
 * and random garbage.  Opening must fail or succeed; after a success every query and
 * sm_reader_verify must return without a crash or an out-of-bounds read (ASan and
 * UBSan watch, and buffers are malloc'ed at their exact size), and when verify says
 * the snapshot is good, it must answer consistently. */
#include "test.h"
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static volatile unsigned sink;

static void touch(const void *p, size_t n) {
    const unsigned char *s = p;
    unsigned x = 0;
    for (size_t i = 0; i < n; i++)
        x += s[i];
    sink += x;
}

static void touch_entry(const sm_entry *e) {
    touch(e->key.data, e->key.size);
    if (e->value.type == SM_BYTES || e->value.type == SM_STR)
        touch(e->value.as.buf.data, e->value.as.buf.size);
}

/* Every query on a reader of unknown health; returns what verify says.  If verify
 * says 0, checks that the snapshot answers consistently. */
static int exercise(const sm_reader *r, const model *m) {
    uint64_t n = sm_reader_count(r);
    sm_value v;
    sm_cursor c;
    sm_entry e;
    uint64_t rank, begin, end;
    sm_info info;
    size_t dsize;
    sm_reader_info(r, &info);
    touch(sm_reader_data(r, &dsize), 8);
    (void)sm_reader_superseded(r);
    (void)sm_reader_key_kind(r);

    for (size_t i = 0; i < m->n; i++) {
        if (sm_get(r, m->e[i].key, m->e[i].klen, &v) == 0 && (v.type == SM_BYTES || v.type == SM_STR))
            touch(v.as.buf.data, v.as.buf.size);
        (void)sm_rank(r, m->e[i].key, m->e[i].klen, &rank);
        for (int bound = 0; bound <= 1; bound++)
            if (sm_seek_key(r, m->e[i].key, m->e[i].klen, (sm_bound)bound, &c) == 0 &&
                sm_cursor_get(&c, &e) == 0) {
                touch_entry(&e);
                if (sm_cursor_prev(&c) == 0 && sm_cursor_get(&c, &e) == 0)
                    touch_entry(&e);
            }
        (void)sm_prefix_range(r, m->e[i].key, m->e[i].klen < 2 ? m->e[i].klen : 2, &begin, &end);
    }
    static const char *probes[] = {"", "\x00", "zzzz", "\xff\xff\xff\xff\xff\xff\xff\xff\xff", "k"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        size_t pl = i == 1 ? 1 : strlen(probes[i]);
        (void)sm_get(r, probes[i], pl, &v);
        (void)sm_get(r, probes[i], pl, NULL);
        (void)sm_prefix_range(r, probes[i], pl, &begin, &end);
        if (sm_seek_key(r, probes[i], pl, SM_GE, &c) == 0 && sm_cursor_get(&c, &e) == 0)
            touch_entry(&e);
    }
    /* walks, bounded: a damaged snapshot must not make them loop forever */
    uint64_t steps = 0;
    if (sm_seek_rank(r, 0, &c) == 0) {
        while (sm_cursor_get(&c, &e) == 0 && steps++ <= n + 1) {
            touch_entry(&e);
            if (sm_cursor_next(&c) != 0)
                break;
        }
    }
    steps = 0;
    if (sm_seek_rank(r, n, &c) == 0) {
        while (sm_cursor_prev(&c) == 0 && steps++ <= n + 1)
            if (sm_cursor_get(&c, &e) == 0)
                touch_entry(&e);
    }
    steps = 0;
    if (sm_seek_rank(r, 0, &c) == 0) {
        sm_entry batch[7];
        size_t got;
        while (steps++ <= n + 1 && sm_cursor_read_many(&c, batch, 7, &got) == 0 && got > 0)
            for (size_t j = 0; j < got; j++)
                touch_entry(&batch[j]);
    }
    for (uint64_t k = 0; k <= n && k < 40; k++)
        if (sm_seek_rank(r, k, &c) == 0 && sm_cursor_get(&c, &e) == 0)
            touch_entry(&e);
    (void)sm_seek_rank(r, n + 1, &c);

    /* the linear copy reads every record too */
    sm_builder *b = NULL;
    if (sm_builder_from_reader(&b, r) == 0) {
        sm_entry be;
        for (size_t i = 0; sm_builder_at(b, i, &be) == 0; i++)
            touch_entry(&be);
        sm_builder_free(b);
    }
    /* and so does a copy into a builder that holds a key already: all or nothing */
    if (sm_reader_key_kind(r) != SM_KEYS_NONE) {
        sm_value one = sm_value_int(1);
        sm_entry be;
        ASSERT_OK(sm_builder_new(&b));
        /* "~", or in an int map the 8-byte key of 0x7e7e7e7e7e7e7e7e - 2^63 */
        const char *tilde = sm_reader_key_kind(r) == SM_KEYS_INT ? "~~~~~~~~" : "~";
        size_t tlen = strlen(tilde);
        ASSERT_OK(sm_builder_put(b, sm_reader_key_kind(r), tilde, tlen, &one));
        uint64_t ver = sm_builder_version(b);
        if (sm_builder_put_reader(b, r) != 0) {
            ASSERT_EQ(sm_builder_count(b), 1);
            ASSERT_EQ(sm_builder_version(b), ver);
            ASSERT_OK(sm_builder_at(b, 0, &be));
            ASSERT_MEM_EQ(be.key.data, be.key.size, tilde, tlen);
            ASSERT_VALUE_EQ(&be.value, &one);
        } else {
            for (size_t i = 0; sm_builder_at(b, i, &be) == 0; i++)
                touch_entry(&be);
        }
        sm_builder_free(b);
    }

    /* sm_get_many / sm_get_many_int answer as sm_get does, key by key, damage or not */
    {
        size_t nk = m->n + sizeof probes / sizeof probes[0];
        sm_buf *keys = xcalloc(nk, sizeof *keys);
        for (size_t i = 0; i < m->n; i++)
            keys[i] = (sm_buf){m->e[i].key, m->e[i].klen};
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
            keys[m->n + i] = (sm_buf){probes[i], i == 1 ? 1 : strlen(probes[i])};
        check_get_many(r, keys, nk);
        free(keys);
    }

    int vr = sm_reader_verify(r);
    if (vr != 0)
        return vr;

    /* verify said good: the snapshot must agree with itself */
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    unsigned char prev[512];
    size_t prevlen = 0;
    for (uint64_t i = 0; i < n; i++) {
        ASSERT_OK(sm_cursor_get(&c, &e));
        ASSERT_EQ(c.rank, i);
        if (i > 0)
            ASSERT(keycmp(prev, prevlen, e.key.data, e.key.size) < 0);
        prevlen = e.key.size < sizeof prev ? e.key.size : sizeof prev;
        memcpy(prev, e.key.data, prevlen);
        ASSERT_OK(sm_get(r, e.key.data, e.key.size, &v));
        ASSERT_VALUE_EQ(&v, &e.value);
        ASSERT_OK(sm_rank(r, e.key.data, e.key.size, &rank));
        ASSERT_EQ(rank, i);
        sm_cursor c2;
        ASSERT_OK(sm_seek_key(r, e.key.data, e.key.size, SM_GE, &c2));
        ASSERT_EQ(c2.rank, i);
        ASSERT_OK(sm_seek_key(r, e.key.data, e.key.size, SM_GT, &c2));
        ASSERT_EQ(c2.rank, i + 1);
        ASSERT_ERR(sm_cursor_next(&c), i + 1 < n ? 0 : SM_NOTFOUND);
    }
    /* and batches read the same entries */
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    for (uint64_t i = 0; i < n;) {
        sm_entry batch[5];
        size_t got;
        ASSERT_OK(sm_cursor_read_many(&c, batch, 5, &got));
        ASSERT(got >= 1 && got <= 5);
        for (size_t j = 0; j < got; j++, i++) {
            sm_cursor one;
            ASSERT_OK(sm_seek_rank(r, i, &one));
            ASSERT_OK(sm_cursor_get(&one, &e));
            ASSERT_MEM_EQ(batch[j].key.data, batch[j].key.size, e.key.data, e.key.size);
            ASSERT_VALUE_EQ(&batch[j].value, &e.value);
        }
    }
    return 0;
}

/* Makes the checksums agree with the (damaged) bytes. */
static void fix_sums(unsigned char *p, size_t size) {
    if (size < SMF_HEADER_SIZE)
        return;
    smf_put64(p + SMF_OFF_BODY_SUM, sm_hash64(p + SMF_HEADER_SIZE, size - SMF_HEADER_SIZE, 0));
    smf_put64(p + SMF_OFF_HEADER_SUM, sm_hash64(p, SMF_OFF_HEADER_SUM, 0));
}

static void fix_header_sum(unsigned char *p) {
    smf_put64(p + SMF_OFF_HEADER_SUM, sm_hash64(p, SMF_OFF_HEADER_SUM, 0));
}

/* Set by the int-key variants of the tests below: small_snapshot() then makes int maps. */
static int int_keys_mode;

/* A small snapshot of every value type, and its model: bytes keys for odd seeds, str
 * keys for even ones, int keys in int_keys_mode. */
static unsigned char *small_snapshot(model *m, size_t n, uint64_t seed, size_t *size) {
    model_random(m, int_keys_mode ? SM_KEYS_INT : seed % 2 ? SM_KEYS_BYTES : SM_KEYS_STR, n, seed);
    sm_builder *b = model_builder(m);
    unsigned char *snap = snapshot_of(b, size, 0);
    sm_builder_free(b);
    return snap;
}

/* Opens [p, p+n) from an exact-size copy; exercises it if it opens.  Returns -1 if
 * it did not open, else what verify said. */
static int try_open(const unsigned char *p, size_t n, const model *m) {
    unsigned char *copy = xmemdup(p, n);
    sm_reader *r = NULL;
    int rc = sm_reader_open_mem(&r, copy, n);
    int result = -1;
    if (rc == 0) {
        result = exercise(r, m);
        sm_reader_close(r);
    } else {
        ASSERT(rc < 0);
        ASSERT(sm_strerror(rc) != NULL);
    }
    free(copy);
    return result;
}

TEST(hostile_valid_baseline) {
    model m;
    size_t size;
    unsigned char *snap = small_snapshot(&m, 40, 1, &size);
    ASSERT_EQ(try_open(snap, size, &m), 0);
    model_free(&m);
    free(snap);
}

/* A batch stops before a record that cannot be read, and the next call, which can
 * read nothing, reports it without moving the cursor. */
TEST(hostile_batch_stops_before_a_damaged_record) {
    model m;
    size_t size, got = 99;
    unsigned char *snap = small_snapshot(&m, 40, 1, &size);
    sm_reader *r = NULL;
    sm_cursor c;
    sm_entry batch[40], e;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    ASSERT_OK(sm_seek_rank(r, 20, &c));
    memset(snap + c.offset, 0xFF, 9); /* a key length far past the end of the records */
    snap[c.offset + 9] = 0x01;
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    ASSERT_OK(sm_cursor_read_many(&c, batch, 40, &got));
    ASSERT_EQ(got, 20);
    ASSERT_EQ(c.rank, 20);
    for (size_t j = 0; j < got; j++) {
        ASSERT_MEM_EQ(batch[j].key.data, batch[j].key.size, m.e[j].key, m.e[j].klen);
        ASSERT_VALUE_EQ(&batch[j].value, &m.e[j].val);
    }
    got = 99;
    ASSERT_ERR(sm_cursor_read_many(&c, batch, 40, &got), SM_ECORRUPT);
    ASSERT_EQ(got, 0);
    ASSERT_EQ(c.rank, 20);
    ASSERT_ERR(sm_cursor_read(&c, &e), SM_ECORRUPT);
    sm_reader_close(r);
    model_free(&m);
    free(snap);
}

TEST(hostile_truncations) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        model m;
        size_t size;
        unsigned char *snap = small_snapshot(&m, seed == 1 ? 0 : 30, seed, &size);
        for (size_t len = 0; len < size; len++) {
            unsigned char *copy = xmemdup(snap, len);
            sm_reader *r = NULL;
            int rc = sm_reader_open_mem(&r, copy, len);
            if (rc == 0)
                test_fail(__FILE__, __LINE__, "a snapshot of %zu bytes truncated to %zu opened", size, len);
            free(copy);
        }
        /* padded */
        unsigned char *big = xcalloc(1, size + 64);
        memcpy(big, snap, size);
        for (size_t extra = 1; extra <= 64; extra *= 2) {
            sm_reader *r = NULL;
            unsigned char *copy = xmemdup(big, size + extra);
            ASSERT_ERR(sm_reader_open_mem(&r, copy, size + extra), SM_ETRUNCATED);
            free(copy);
        }
        free(big);
        /* the same through files */
        const char *path = test_path("trunc.snap");
        for (size_t len = 0; len < size; len += (len < 200 ? 1 : 7)) {
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ASSERT(fd >= 0);
            ASSERT_EQ(write(fd, snap, len), (ssize_t)len);
            close(fd);
            sm_reader *r = NULL;
            ASSERT_FAILS(sm_reader_open_file(&r, path));
        }
        model_free(&m);
        free(snap);
    }
}

/* Every byte position, flipped with every single-bit mask and with 0xFF (and with
 * every value for the smallest snapshot). */
static void flips(size_t n, uint64_t seed, int all_values) {
    model m;
    size_t size;
    unsigned char *snap = small_snapshot(&m, n, seed, &size);
    unsigned char *copy = xmalloc(size);
    static const unsigned masks[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF};
    size_t nmasks = all_values ? 255 : sizeof masks / sizeof masks[0];
    for (size_t i = 0; i < size; i++) {
        for (size_t k = 0; k < nmasks; k++) {
            unsigned mask = all_values ? (unsigned)(k + 1) : masks[k];
            memcpy(copy, snap, size);
            copy[i] ^= (unsigned char)mask;
            int res = try_open(copy, size, &m);
            if (i < SMF_OFF_SUPERSEDED) {
                /* header and header checksum: refused at open */
                if (res != -1)
                    test_fail(__FILE__, __LINE__, "flip 0x%02x at header byte %zu: opened (verify %d)",
                              mask, i, res);
            } else if (i < SMF_HEADER_SIZE) {
                /* the superseded word: mutable, outside the checksums */
                if (res != 0)
                    test_fail(__FILE__, __LINE__, "flip 0x%02x at superseded byte %zu: %d", mask, i, res);
            } else if (res == 0) {
                test_fail(__FILE__, __LINE__,
                          "flip 0x%02x at body byte %zu of %zu: sm_reader_verify() returned 0", mask, i,
                          size);
            }
        }
    }
    free(copy);
    model_free(&m);
    free(snap);
}

TEST_TIMEOUT(hostile_flips_small, 300) {
    flips(3, 4, 1);
}

TEST_TIMEOUT(hostile_flips, 300) {
    flips(40, 5, 0);
    flips(40, 6, 0);
}

/* Body damage with both checksums recomputed: only structure checks remain. */
static void body_rechecksummed(uint64_t first_seed, uint64_t last_seed) {
    for (uint64_t seed = first_seed; seed <= last_seed; seed++) {
        model m;
        size_t size;
        unsigned char *snap = small_snapshot(&m, 40, seed, &size);
        unsigned char *copy = xmalloc(size);
        static const unsigned masks[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF, 0x7F};
        int good = 0, bad = 0;
        for (size_t i = SMF_HEADER_SIZE; i < size; i++) {
            for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++) {
                memcpy(copy, snap, size);
                copy[i] ^= (unsigned char)masks[k];
                fix_sums(copy, size);
                int res = try_open(copy, size, &m);
                ASSERT(res != -1); /* the header is valid */
                if (res == 0)
                    good++;
                else
                    bad++;
            }
        }
        printf("  seed %" PRIu64 ": %d damaged snapshots verified bad, %d still consistent\n", seed,
               bad, good);
        ASSERT(bad > 0);
        free(copy);
        model_free(&m);
        free(snap);
    }
}

TEST_TIMEOUT(hostile_body_rechecksummed, 300) {
    body_rechecksummed(7, 8);
}

/* Many random byte overwrites in one region (records, samples or table), sums fixed. */
static void regions_random(uint64_t seed, int trials) {
    rng g = {seed};
    for (int trial = 0; trial < trials; trial++) {
        model m;
        size_t size;
        unsigned char *snap = small_snapshot(&m, 1 + (size_t)rng_below(&g, 80), 1000 + (uint64_t)trial, &size);
        uint64_t records_end = smf_le64(snap + SMF_OFF_RECORDS_END);
        uint64_t samples = smf_le64(snap + SMF_OFF_SAMPLES);
        uint64_t table = smf_le64(snap + SMF_OFF_TABLE);
        uint64_t lo, hi;
        switch (trial % 4) {
        case 0: lo = SMF_HEADER_SIZE; hi = records_end; break;
        case 1: lo = samples; hi = table; break;
        case 2: lo = table; hi = size; break;
        default: lo = SMF_HEADER_SIZE; hi = size; break;
        }
        if (hi > lo) {
            size_t writes = 1 + (size_t)rng_below(&g, 8);
            for (size_t w = 0; w < writes; w++) {
                uint64_t at = lo + rng_below(&g, hi - lo);
                if (rng_below(&g, 3) == 0 && hi - at >= 8) {
                    /* a plausible-looking offset or slot */
                    uint64_t val = rng_below(&g, 2) ? rng_below(&g, size + 16)
                                                    : rng_next(&g) & (rng_below(&g, 2) ? ~UINT64_C(0) : 0xFF00FFFFFFFFFFFF);
                    smf_put64(snap + at, val);
                } else {
                    snap[at] = (unsigned char)rng_next(&g);
                }
            }
        }
        fix_sums(snap, size);
        ASSERT(try_open(snap, size, &m) != -1);
        model_free(&m);
        free(snap);
    }
}

TEST_TIMEOUT(hostile_regions_random, 300) {
    regions_random(99, 3000);
}

/* The same damage to int maps (8-byte keys, key_kind 3 with required flag bit 0). */
TEST_TIMEOUT(hostile_int_flips, 300) {
    int_keys_mode = 1;
    flips(3, 4, 1);
    flips(40, 5, 0);
}

TEST_TIMEOUT(hostile_int_body_rechecksummed, 300) {
    int_keys_mode = 1;
    body_rechecksummed(7, 8);
}

TEST_TIMEOUT(hostile_int_regions_random, 300) {
    int_keys_mode = 1;
    regions_random(98, 1500);
}

/* Header fields set to hostile values, header checksum fixed. */
TEST_TIMEOUT(hostile_header_fields, 300) {
    model m;
    size_t size;
    unsigned char *snap = small_snapshot(&m, 50, 11, &size);
    unsigned char *copy = xmalloc(size);
    static const unsigned offs64[] = {SMF_OFF_TOTAL_SIZE, SMF_OFF_COUNT, SMF_OFF_HASH_SEED,
                                      SMF_OFF_HOME_SLOTS, SMF_OFF_TABLE_SLOTS, SMF_OFF_TABLE,
                                      SMF_OFF_SAMPLES, SMF_OFF_RECORDS_END, SMF_OFF_CREATED,
                                      SMF_OFF_BODY_SUM};
    int opened = 0;
    for (size_t f = 0; f < sizeof offs64 / sizeof offs64[0]; f++) {
        uint64_t orig = smf_le64(snap + offs64[f]);
        const uint64_t vals[] = {0, 1, 2, 7, 8, 15, 16, 127, 128, 129, size - 1, size, size + 1,
                                 size / 2, size * 2, orig - 1, orig + 1, orig - 8, orig + 8,
                                 orig - 16, orig + 16, orig - 64, orig + 64, orig * 2, orig / 2,
                                 UINT64_MAX, UINT64_MAX - 7, UINT64_MAX / 8, UINT64_MAX / 16 + 1,
                                 UINT64_C(1) << 63, UINT64_C(1) << 48, (UINT64_C(1) << 48) - 1,
                                 UINT64_C(1) << 32, UINT64_C(1) << 60};
        for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
            memcpy(copy, snap, size);
            smf_put64(copy + offs64[f], vals[k]);
            fix_header_sum(copy);
            opened += try_open(copy, size, &m) != -1;
        }
    }
    /* byte fields */
    static const unsigned offs8[] = {SMF_OFF_KEY_KIND, SMF_OFF_HASH_ID, SMF_OFF_SAMPLE_SHIFT};
    for (size_t f = 0; f < 3; f++) {
        for (unsigned v = 0; v < 256; v++) {
            memcpy(copy, snap, size);
            copy[offs8[f]] = (unsigned char)v;
            fix_header_sum(copy);
            opened += try_open(copy, size, &m) != -1;
        }
    }
    /* random combinations of the structural fields */
    rng g = {12};
    for (int trial = 0; trial < 20000; trial++) {
        memcpy(copy, snap, size);
        int nf = 1 + (int)rng_below(&g, 4);
        for (int j = 0; j < nf; j++) {
            unsigned off = offs64[rng_below(&g, 8)];
            uint64_t orig = smf_le64(copy + off);
            uint64_t v;
            switch (rng_below(&g, 4)) {
            case 0: v = rng_below(&g, size + 1); break;
            case 1: v = orig + rng_below(&g, 33) - 16; break;
            case 2: v = rng_below(&g, 64); break;
            default: v = rng_next(&g); break;
            }
            smf_put64(copy + off, v);
        }
        if (rng_below(&g, 4) == 0)
            copy[SMF_OFF_SAMPLE_SHIFT] = (unsigned char)rng_below(&g, 10);
        fix_header_sum(copy);
        opened += try_open(copy, size, &m) != -1;
    }
    printf("  %d hostile headers opened (and were exercised)\n", opened);
    free(copy);
    model_free(&m);
    free(snap);
}

/* One message per cause: the header checks give their specific codes. */
TEST(hostile_header_codes) {
    model m;
    size_t size;
    unsigned char *snap = small_snapshot(&m, 10, 13, &size);
    unsigned char *c = xmalloc(size);
    sm_reader *r = NULL;

#define RESET() memcpy(c, snap, size)
    RESET();
    c[0] = 'X';
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EBADMAGIC);
    RESET();
    memcpy(c, "\x89SMP\n\x1a\n", 7); /* CR LF mangled to LF */
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EBADMAGIC);
    RESET();
    smf_put32(c + SMF_OFF_BYTE_ORDER, __builtin_bswap32(SMF_BYTE_ORDER));
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EENDIAN);
    RESET();
    smf_put16(c + SMF_OFF_VERSION, 2); /* a newer format: refused by its version field */
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EVERSION);
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EVERSION);
    RESET();
    smf_put16(c + SMF_OFF_VERSION, 0);
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EVERSION);
    RESET();
    smf_put32(c + SMF_OFF_REQUIRED_FLAGS, 8); /* a required bit nobody knows (1 and 2 are layers') */
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EFEATURE);
    RESET();
    smf_put32(c + SMF_OFF_REQUIRED_FLAGS, 9); /* ... even next to bit 0 */
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EFEATURE);
    RESET();
    smf_put32(c + SMF_OFF_REQUIRED_FLAGS, 1); /* bit 0 (int keys) without key_kind 3: R9 */
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EHEADER);
    RESET();
    c[SMF_OFF_KEY_KIND] = SM_KEYS_INT; /* key_kind 3 without bit 0: R9 */
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EHEADER);
    RESET();
    smf_put32(c + SMF_OFF_REQUIRED_FLAGS, 0x80000000u);
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EFEATURE);
    RESET();
    c[SMF_OFF_CREATED] ^= 1; /* any header byte: the header checksum */
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EHEADER);
    RESET();
    c[SMF_OFF_RESERVED + 2] = 1;
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EHEADER);
    RESET();
    smf_put64(c + SMF_OFF_TOTAL_SIZE, size + 1);
    fix_header_sum(c);
    ASSERT_FAILS(sm_reader_open_mem(&r, c, size));
    RESET();
    c[SMF_OFF_HASH_ID] = 2;
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EHEADER);
    RESET();
    c[SMF_OFF_KEY_KIND] = 0; /* none, with entries */
    fix_header_sum(c);
    ASSERT_ERR(sm_reader_open_mem(&r, c, size), SM_EHEADER);

    /* unknown compatible flags are ignored */
    RESET();
    smf_put32(c + SMF_OFF_COMPAT_FLAGS, 0xFFFFFFFFu);
    fix_header_sum(c);
    ASSERT_OK(sm_reader_open_mem(&r, c, size));
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);

    /* body damage: open is O(1) and does not see it, verify does */
    RESET();
    c[size - 1] ^= 0x40;
    ASSERT_OK(sm_reader_open_mem(&r, c, size));
    ASSERT_ERR(sm_reader_verify(r), SM_ECHECKSUM);
    sm_reader_close(r);

    /* the superseded word is outside the checksums */
    RESET();
    c[SMF_OFF_SUPERSEDED] = 1;
    ASSERT_OK(sm_reader_open_mem(&r, c, size));
    ASSERT_EQ(sm_reader_superseded(r), 1);
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);
#undef RESET
    free(c);
    model_free(&m);
    free(snap);
}

TEST_TIMEOUT(hostile_garbage, 300) {
    rng g = {2024};
    model m;
    size_t vsize;
    unsigned char *valid = small_snapshot(&m, 20, 14, &vsize);
    for (int trial = 0; trial < 20000; trial++) {
        size_t n = (size_t)rng_below(&g, trial % 2 ? 4096 : 300);
        unsigned char *buf = xmalloc(n);
        rng_fill(&g, buf, n);
        if (trial % 4 != 0 && n >= SMF_HEADER_SIZE) {
            /* a header that passes the first checks, over random bytes */
            memcpy(buf, valid, trial % 4 == 3 ? SMF_HEADER_SIZE : SMF_OFF_TOTAL_SIZE);
            smf_put64(buf + SMF_OFF_TOTAL_SIZE, n);
            if (trial % 4 == 2) {
                /* plausible offsets inside this buffer */
                uint64_t re = SMF_HEADER_SIZE + rng_below(&g, n - SMF_HEADER_SIZE + 1);
                uint64_t so = re + rng_below(&g, n - re + 1);
                uint64_t slots = (n - so) / 8 - rng_below(&g, (n - so) / 8 + 1);
                uint64_t to = n - slots * 8;
                smf_put64(buf + SMF_OFF_RECORDS_END, re);
                smf_put64(buf + SMF_OFF_SAMPLES, so);
                smf_put64(buf + SMF_OFF_TABLE, to);
                smf_put64(buf + SMF_OFF_TABLE_SLOTS, slots);
                smf_put64(buf + SMF_OFF_HOME_SLOTS, slots ? 1 + rng_below(&g, slots) : 0);
                smf_put64(buf + SMF_OFF_COUNT, slots ? rng_below(&g, slots + 1) : 0);
                buf[SMF_OFF_SAMPLE_SHIFT] = (unsigned char)rng_below(&g, 9);
                buf[SMF_OFF_KEY_KIND] = (unsigned char)(1 + rng_below(&g, 3));
                memset(buf + SMF_OFF_RESERVED, 0, 5);
                smf_put32(buf + SMF_OFF_REQUIRED_FLAGS,
                          buf[SMF_OFF_KEY_KIND] == SM_KEYS_INT ? SMF_REQ_INT_KEYS : 0);
            }
            fix_sums(buf, n);
        }
        (void)try_open(buf, n, &m);
        free(buf);
    }
    model_free(&m);
    free(valid);
}
