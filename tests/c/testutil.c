/* testutil.c: the helpers the C tests share: PRNG, the sorted model of a map that
 * serves as the oracle, snapshot construction, and check_reader(), which holds a
 * reader against the model in every query the API has. */
#include "test.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <fcntl.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>

uint64_t rng_next(rng *r) {
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

uint64_t rng_below(rng *r, uint64_t n) {
    return rng_next(r) % n;
}

void rng_fill(rng *r, void *p, size_t n) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)rng_next(r);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        test_fail(__FILE__, __LINE__, "out of memory (%zu bytes)", n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        test_fail(__FILE__, __LINE__, "out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *xmemdup(const void *p, size_t n) {
    void *q = xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

int keycmp(const void *a, size_t alen, const void *b, size_t blen) {
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* ---------------------------------------------------------------- values */

int value_eq(const sm_value *a, const sm_value *b) {
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SM_INT:
        return a->as.i == b->as.i;
    case SM_FLOAT:
        return memcmp(&a->as.f, &b->as.f, sizeof(double)) == 0;
    case SM_BYTES:
    case SM_STR:
        return a->as.buf.size == b->as.buf.size &&
               (a->as.buf.size == 0 || memcmp(a->as.buf.data, b->as.buf.data, a->as.buf.size) == 0);
    default:
        return 1;
    }
}

const char *value_fmt(char *buf, size_t n, const sm_value *v) {
    char esc[120];
    uint64_t bits;
    switch (v->type) {
    case SM_NONE: snprintf(buf, n, "None"); break;
    case SM_FALSE: snprintf(buf, n, "False"); break;
    case SM_TRUE: snprintf(buf, n, "True"); break;
    case SM_INT: snprintf(buf, n, "int %" PRId64, v->as.i); break;
    case SM_FLOAT:
        memcpy(&bits, &v->as.f, 8);
        snprintf(buf, n, "float %.17g (0x%016" PRIx64 ")", v->as.f, bits);
        break;
    case SM_BYTES:
    case SM_STR:
        snprintf(buf, n, "%s[%zu] \"%s\"", v->type == SM_STR ? "str" : "bytes", v->as.buf.size,
                 test_escape(esc, sizeof esc, v->as.buf.data, v->as.buf.size));
        break;
    default: snprintf(buf, n, "type %d", (int)v->type); break;
    }
    return buf;
}

/* ---------------------------------------------------------------- the model */

void model_init(model *m, sm_key_kind kind) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
}

void model_free(model *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].vbuf);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

static size_t model_seq;

void model_add(model *m, const void *key, size_t klen, const sm_value *v) {
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        model_entry *e = realloc(m->e, m->cap * sizeof *e);
        if (!e)
            test_fail(__FILE__, __LINE__, "out of memory");
        m->e = e;
    }
    model_entry *e = &m->e[m->n++];
    e->key = xmemdup(key, klen);
    e->klen = klen;
    e->val = *v;
    e->vbuf = NULL;
    e->seq = model_seq++;
    if (v->type == SM_BYTES || v->type == SM_STR) {
        e->vbuf = xmemdup(v->as.buf.data, v->as.buf.size);
        e->val.as.buf.data = e->vbuf;
    }
}

static int entry_cmp(const void *pa, const void *pb) {
    const model_entry *a = pa, *b = pb;
    int c = keycmp(a->key, a->klen, b->key, b->klen);
    if (c)
        return c;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

void model_sort_unique(model *m) {
    if (m->n == 0)
        return;
    qsort(m->e, m->n, sizeof *m->e, entry_cmp);
    size_t o = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (i + 1 < m->n && keycmp(m->e[i].key, m->e[i].klen, m->e[i + 1].key, m->e[i + 1].klen) == 0) {
            free(m->e[i].key); /* superseded by a later add of the same key */
            free(m->e[i].vbuf);
            continue;
        }
        m->e[o++] = m->e[i];
    }
    m->n = o;
}

size_t model_bisect(const model *m, const void *key, size_t klen, int right) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = keycmp(m->e[mid].key, m->e[mid].klen, key, klen);
        if (c < 0 || (right && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t model_find(const model *m, const void *key, size_t klen) {
    size_t i = model_bisect(m, key, klen, 0);
    if (i < m->n && keycmp(m->e[i].key, m->e[i].klen, key, klen) == 0)
        return i;
    return (size_t)-1;
}

/* Appends one random code point as UTF-8 (mostly ASCII, sometimes NUL, 2-, 3- and
 * 4-byte sequences). */
static size_t rand_utf8(rng *r, unsigned char *p) {
    uint64_t k = rng_below(r, 100);
    if (k < 80) {
        p[0] = (unsigned char)(0x20 + rng_below(r, 0x5F));
        return 1;
    }
    if (k < 83) {
        p[0] = 0;
        return 1;
    }
    if (k < 90) { /* U+0080..U+07FF */
        uint32_t c = (uint32_t)(0x80 + rng_below(r, 0x780));
        p[0] = (unsigned char)(0xC0 | (c >> 6));
        p[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (k < 97) { /* U+0800..U+FFFF without surrogates */
        uint32_t c;
        do
            c = (uint32_t)(0x800 + rng_below(r, 0xF800));
        while (c >= 0xD800 && c <= 0xDFFF);
        p[0] = (unsigned char)(0xE0 | (c >> 12));
        p[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        p[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    uint32_t c = (uint32_t)(0x10000 + rng_below(r, 0x100000)); /* U+10000..U+10FFFF */
    p[0] = (unsigned char)(0xF0 | (c >> 18));
    p[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    p[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    p[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

int64_t rand_int64(rng *r) {
    static const int64_t special[] = {INT64_MIN, INT64_MIN + 1, -256, -255, -2, -1, 0, 1, 2, 255, 256,
                                      INT64_C(2147483647), INT64_C(2147483648), INT64_MAX - 1,
                                      INT64_MAX};
    if (rng_below(r, 8) == 0)
        return special[rng_below(r, sizeof special / sizeof special[0])];
    return (int64_t)rng_next(r) >> rng_below(r, 64); /* small and large, both signs */
}

/* A random key of the model's kind into buf (at least 128 bytes); returns its length. */
static size_t rand_key(rng *r, sm_key_kind kind, unsigned char *buf) {
    static const unsigned char alphabet[] = {0x00, 0x01, 'a', 'b', 'c', 0x7F, 0x80, 0xFE, 0xFF};
    if (kind == SM_KEYS_INT) {
        sm_key_int(rand_int64(r), buf);
        return SM_INT_KEY_SIZE;
    }
    size_t want = (size_t)rng_below(r, 25), n = 0;
    if (kind == SM_KEYS_STR) {
        while (n < want)
            n += rand_utf8(r, buf + n);
        return n;
    }
    for (; n < want; n++)
        buf[n] = rng_below(r, 3) ? alphabet[rng_below(r, sizeof alphabet)]
                                 : (unsigned char)rng_next(r);
    return n;
}

static sm_value rand_value(rng *r, unsigned char *buf) {
    switch (rng_below(r, 10)) {
    case 0: return sm_value_none();
    case 1: return sm_value_bool(0);
    case 2: return sm_value_bool(1);
    case 3: {
        int shift = (int)rng_below(r, 64);
        int64_t v = (int64_t)(rng_next(r) >> shift);
        return sm_value_int(rng_below(r, 2) ? v : -v);
    }
    case 4: {
        uint64_t bits = rng_next(r);
        double d;
        if (rng_below(r, 2)) { /* an ordinary number */
            d = (double)(int64_t)rng_next(r) / 1e9;
        } else { /* any bit pattern: NaN payloads, infinities, denormals */
            memcpy(&d, &bits, 8);
        }
        return sm_value_float(d);
    }
    case 5: case 6: {
        size_t n = (size_t)rng_below(r, 49);
        rng_fill(r, buf, n);
        return sm_value_bytes(buf, n);
    }
    default: {
        size_t want = (size_t)rng_below(r, 49), n = 0;
        while (n < want)
            n += rand_utf8(r, buf + n);
        return sm_value_str((const char *)buf, n);
    }
    }
}

void model_random(model *m, sm_key_kind kind, size_t n, uint64_t seed) {
    rng r = {seed};
    unsigned char kb[128], vb[256];
    model_init(m, kind);
    while (m->n < n) {
        size_t deficit = n - m->n;
        for (size_t i = 0; i < deficit; i++) {
            size_t klen = rand_key(&r, kind, kb);
            /* longer keys avoid running out of distinct short ones at large n */
            if (n > 1000 && klen < 8 && kind != SM_KEYS_INT) {
                for (size_t j = 0; j < 8; j++)
                    kb[klen + j] = (unsigned char)('a' + rng_below(&r, 26));
                klen += 8;
            }
            sm_value v = rand_value(&r, vb);
            model_add(m, kb, klen, &v);
        }
        model_sort_unique(m);
    }
}

sm_builder *model_builder(const model *m) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    for (size_t i = 0; i < m->n; i++)
        ASSERT_OK(sm_builder_put(b, m->kind, m->e[i].key, m->e[i].klen, &m->e[i].val));
    ASSERT_EQ(sm_builder_count(b), m->n);
    return b;
}

unsigned char *snapshot_of(sm_builder *b, size_t *size, uint64_t created_ns) {
    uint64_t sz = 0;
    ASSERT_OK(sm_builder_layout(b, &sz));
    ASSERT(sz >= 128);
    unsigned char *buf = xmalloc((size_t)sz);
    ASSERT_OK(sm_builder_write(b, buf, sz, created_ns));
    *size = (size_t)sz;
    return buf;
}

/* ---------------------------------------------------------------- check_reader */

static void check_entry_at(const sm_reader *r, const model *m, const sm_cursor *c, size_t i,
                           const char *file, int line) {
    sm_entry e;
    char kb[400], mb[400], va[200], vb[200];
    int rc = sm_cursor_get(c, &e);
    if (rc != 0) {
        test_fail(file, line, "sm_cursor_get at rank %zu of %zu: %s", i, m->n,
                  test_code(kb, sizeof kb, rc));
    }
    if (c->rank != i)
        test_fail(file, line, "cursor rank %" PRIu64 ", expected %zu", c->rank, i);
    if (keycmp(e.key.data, e.key.size, m->e[i].key, m->e[i].klen) != 0)
        test_fail(file, line, "key at rank %zu: \"%s\", model has \"%s\"", i,
                  test_escape(kb, sizeof kb, e.key.data, e.key.size),
                  test_escape(mb, sizeof mb, m->e[i].key, m->e[i].klen));
    if (!value_eq(&e.value, &m->e[i].val))
        test_fail(file, line, "value at rank %zu (key \"%s\"): %s, model has %s", i,
                  test_escape(kb, sizeof kb, e.key.data, e.key.size),
                  value_fmt(va, sizeof va, &e.value), value_fmt(vb, sizeof vb, &m->e[i].val));
    (void)r;
}
#define CHECK_ENTRY_AT(r, m, c, i) check_entry_at(r, m, c, i, __FILE__, __LINE__)

/* The smallest key greater than every key starting with p: p with its last byte
 * below 0xFF incremented and the rest cut; 0 if there is none (p is all 0xFF). */
static int prefix_successor(const void *pv, size_t n, unsigned char *out, size_t *outn) {
    const unsigned char *p = pv;
    while (n > 0 && p[n - 1] == 0xFF)
        n--;
    if (n == 0)
        return 0;
    memcpy(out, p, n);
    out[n - 1]++;
    *outn = n;
    return 1;
}

static void check_seek(const sm_reader *r, const model *m, const void *k, size_t klen) {
    char kb[400];
    for (int right = 0; right <= 1; right++) {
        sm_cursor c;
        ASSERT_OK(sm_seek_key(r, k, klen, right ? SM_GT : SM_GE, &c));
        size_t want = model_bisect(m, k, klen, right);
        if (c.rank != want)
            test_fail(__FILE__, __LINE__, "sm_seek_key(\"%s\", %s) rank %" PRIu64 ", bisect gives %zu",
                      test_escape(kb, sizeof kb, k, klen), right ? "SM_GT" : "SM_GE", c.rank, want);
        if (want < m->n) {
            CHECK_ENTRY_AT(r, m, &c, want);
        } else {
            sm_entry e;
            ASSERT_ERR(sm_cursor_get(&c, &e), SM_NOTFOUND);
        }
        if (want > 0) { /* one step back from a seek */
            ASSERT_OK(sm_cursor_prev(&c));
            CHECK_ENTRY_AT(r, m, &c, want - 1);
        }
    }
    uint64_t rank = 0;
    size_t at = model_find(m, k, klen);
    if (at == (size_t)-1) {
        ASSERT_ERR(sm_rank(r, k, klen, &rank), SM_NOTFOUND);
        ASSERT_ERR(sm_get(r, k, klen, NULL), SM_NOTFOUND);
    } else {
        ASSERT_OK(sm_rank(r, k, klen, &rank));
        ASSERT_EQ(rank, at);
    }
}

static void check_prefix(const sm_reader *r, const model *m, const void *p, size_t plen) {
    uint64_t begin = 0, end = 0;
    char pb[400];
    ASSERT_OK(sm_prefix_range(r, p, plen, &begin, &end));
    size_t wb = model_bisect(m, p, plen, 0), we = m->n;
    unsigned char succ[256];
    size_t sn = 0;
    if (plen <= sizeof succ && prefix_successor(p, plen, succ, &sn))
        we = model_bisect(m, succ, sn, 0);
    if (begin != wb || end != we)
        test_fail(__FILE__, __LINE__, "sm_prefix_range(\"%s\") = [%" PRIu64 ", %" PRIu64 "), model [%zu, %zu)",
                  test_escape(pb, sizeof pb, p, plen), begin, end, wb, we);
}

void check_reader(const sm_reader *r, const model *m, uint64_t seed, size_t probes) {
    rng g = {seed ^ UINT64_C(0x5eed)};
    size_t n = m->n;
    char vb1[200], vb2[200], kb[400];

    /* header facts */
    ASSERT_EQ(sm_reader_count(r), n);
    ASSERT_EQ(sm_reader_key_kind(r), n ? m->kind : SM_KEYS_NONE);
    sm_info info;
    memset(&info, 0xAB, sizeof info);
    sm_reader_info(r, &info);
    size_t dsize = 0;
    const void *data = sm_reader_data(r, &dsize);
    ASSERT(data != NULL);
    ASSERT_EQ(info.size, dsize);
    ASSERT_EQ(info.count, n);
    ASSERT_EQ(info.format_version, SM_FORMAT_VERSION);
    ASSERT_EQ(info.key_kind, sm_reader_key_kind(r));

    /* every key */
    for (size_t i = 0; i < n; i++) {
        sm_value v;
        int rc = sm_get(r, m->e[i].key, m->e[i].klen, &v);
        if (rc != 0)
            test_fail(__FILE__, __LINE__, "sm_get(\"%s\") (rank %zu of %zu): %s",
                      test_escape(kb, sizeof kb, m->e[i].key, m->e[i].klen), i, n,
                      test_code(vb1, sizeof vb1, rc));
        if (!value_eq(&v, &m->e[i].val))
            test_fail(__FILE__, __LINE__, "sm_get(\"%s\") = %s, model has %s",
                      test_escape(kb, sizeof kb, m->e[i].key, m->e[i].klen),
                      value_fmt(vb1, sizeof vb1, &v), value_fmt(vb2, sizeof vb2, &m->e[i].val));
        ASSERT_OK(sm_get(r, m->e[i].key, m->e[i].klen, NULL));
    }

    /* absent keys: random ones, and neighbours of present ones */
    unsigned char k[300];
    for (size_t t = 0; t < probes; t++) {
        size_t klen = (size_t)rng_below(&g, 30);
        if (m->kind == SM_KEYS_STR) {
            for (size_t j = 0; j < klen; j++)
                k[j] = (unsigned char)(0x20 + rng_below(&g, 0x5F));
        } else {
            rng_fill(&g, k, klen);
        }
        if (model_find(m, k, klen) == (size_t)-1)
            ASSERT_ERR(sm_get(r, k, klen, NULL), SM_NOTFOUND);
        check_seek(r, m, k, klen);
        if (n) { /* variations of a present key */
            const model_entry *e = &m->e[rng_below(&g, n)];
            size_t el = e->klen < 250 ? e->klen : 250;
            memcpy(k, e->key, el);
            k[el] = 0; /* key + NUL: just after key */
            check_seek(r, m, k, el + 1);
            k[el] = 0xFF;
            check_seek(r, m, k, el + 1);
            if (el > 0) {
                check_seek(r, m, k, el - 1); /* a proper prefix */
                check_prefix(r, m, k, el - 1);
                k[el - 1] = (unsigned char)(k[el - 1] + 1);
                check_seek(r, m, k, el);
                k[el - 1] = (unsigned char)(k[el - 1] - 2);
                check_seek(r, m, k, el);
            }
            check_prefix(r, m, e->key, el);
            check_prefix(r, m, e->key, el / 2);
        }
        check_prefix(r, m, k, klen < 3 ? klen : 3);
    }
    check_prefix(r, m, "", 0);
    check_prefix(r, m, "\xff\xff\xff", 3);
    check_prefix(r, m, "\x00", 1);
    check_seek(r, m, "", 0);
    check_seek(r, m, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 30);

    /* every present key, or a sample of them */
    size_t step = n <= probes ? 1 : n / probes;
    for (size_t i = 0; i < n; i += step)
        check_seek(r, m, m->e[i].key, m->e[i].klen);

    /* forward walk */
    sm_cursor c;
    sm_entry e;
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    for (size_t i = 0; i < n; i++) {
        CHECK_ENTRY_AT(r, m, &c, i);
        ASSERT_ERR(sm_cursor_next(&c), i + 1 < n ? 0 : SM_NOTFOUND);
    }
    ASSERT_EQ(c.rank, n);
    ASSERT_ERR(sm_cursor_get(&c, &e), SM_NOTFOUND);
    ASSERT_ERR(sm_cursor_next(&c), SM_NOTFOUND);
    ASSERT_EQ(c.rank, n);

    /* forward walk with sm_cursor_read: the same entries, one call each */
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(sm_cursor_read(&c, &e));
        ASSERT_MEM_EQ(e.key.data, e.key.size, m->e[i].key, m->e[i].klen);
        ASSERT_VALUE_EQ(&e.value, &m->e[i].val);
        ASSERT_EQ(c.rank, i + 1);
    }
    ASSERT_ERR(sm_cursor_read(&c, &e), SM_NOTFOUND);
    ASSERT_EQ(c.rank, n);

    /* the same in batches of several sizes, from several starting ranks */
    static const size_t batches[] = {1, 2, 3, 16, 17, 1000};
    sm_entry got[17];
    for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
        size_t want = batches[bi] < 17 ? batches[bi] : 17, nread = 99;
        for (size_t start = 0; start <= n; start += n / 3 + 1) {
            ASSERT_OK(sm_seek_rank(r, start, &c));
            size_t i = start;
            while (i < n) {
                ASSERT_OK(sm_cursor_read_many(&c, got, want, &nread));
                ASSERT(nread == (n - i < want ? n - i : want));
                for (size_t j = 0; j < nread; j++, i++) {
                    ASSERT_MEM_EQ(got[j].key.data, got[j].key.size, m->e[i].key, m->e[i].klen);
                    ASSERT_VALUE_EQ(&got[j].value, &m->e[i].val);
                }
                ASSERT_EQ(c.rank, i);
            }
            ASSERT_OK(sm_cursor_read_many(&c, got, 0, &nread)); /* asks for nothing */
            ASSERT_EQ(nread, 0);
            nread = 99;
            ASSERT_ERR(sm_cursor_read_many(&c, got, want, &nread), SM_NOTFOUND);
            ASSERT_EQ(nread, 0);
            ASSERT_EQ(c.rank, n);
        }
    }

    /* backward walk from past the end */
    ASSERT_OK(sm_seek_rank(r, n, &c));
    ASSERT_ERR(sm_cursor_get(&c, &e), SM_NOTFOUND);
    for (size_t i = n; i-- > 0;) {
        ASSERT_OK(sm_cursor_prev(&c));
        CHECK_ENTRY_AT(r, m, &c, i);
    }
    ASSERT_ERR(sm_cursor_prev(&c), SM_NOTFOUND);
    ASSERT_EQ(c.rank, 0);
    if (n)
        CHECK_ENTRY_AT(r, m, &c, 0);

    /* seek_rank */
    for (size_t t = 0; t < probes && n; t++) {
        size_t i = (size_t)rng_below(&g, n);
        ASSERT_OK(sm_seek_rank(r, i, &c));
        CHECK_ENTRY_AT(r, m, &c, i);
        if (i + 1 < n) {
            ASSERT_OK(sm_cursor_next(&c));
            CHECK_ENTRY_AT(r, m, &c, i + 1);
        }
    }
    ASSERT_ERR(sm_seek_rank(r, (uint64_t)n + 1, &c), -ERANGE);
    ASSERT_ERR(sm_seek_rank(r, UINT64_MAX, &c), -ERANGE);

    ASSERT_OK(sm_reader_verify(r));
}

/* The names in dir, sorted, joined by spaces. */
const char *test_listing(const char *dir) {
    static char out[4096];
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0)
        test_fail(__FILE__, __LINE__, "scandir %s: %s", dir, strerror(errno));
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i]->d_name, ".") && strcmp(list[i]->d_name, "..")) {
            if (out[0])
                strncat(out, " ", sizeof out - strlen(out) - 1);
            strncat(out, list[i]->d_name, sizeof out - strlen(out) - 1);
        }
        free(list[i]);
    }
    free(list);
    return out;
}

void test_write_file(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        test_fail(__FILE__, __LINE__, "open %s: %s", path, strerror(errno));
    ASSERT_EQ(write(fd, data, n), (ssize_t)n);
    close(fd);
}

/* The values of two lookups agree: both failed with the same status, or both found
 * equal values. */
static void check_one_of_many(const sm_reader *r, size_t i, int single, const sm_value *sv, int many,
                              const sm_value *mv, const sm_value *untouched, const char *what) {
    char a[160], b[160];
    if (single != many)
        test_fail(__FILE__, __LINE__, "%s: key %zu of the batch: status %s, sm_get says %s", what, i,
                  test_code(a, sizeof a, many), test_code(b, sizeof b, single));
    if (mv == NULL)
        return;
    if (single == 0 && !value_eq(sv, mv))
        test_fail(__FILE__, __LINE__, "%s: key %zu: value %s, sm_get gives %s", what, i,
                  value_fmt(a, sizeof a, mv), value_fmt(b, sizeof b, sv));
    if (single != 0 && memcmp(mv, untouched, sizeof *mv) != 0)
        test_fail(__FILE__, __LINE__, "%s: key %zu (status %s): its value was written", what, i,
                  test_code(a, sizeof a, single));
    (void)r;
}

/* The first error (lowest index) among statuses, or 0. */
static int first_error(const int *status, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (status[i] != 0 && status[i] != SM_NOTFOUND)
            return status[i];
    return 0;
}

void check_get_many(const sm_reader *r, const sm_buf *keys, size_t n) {
    int *want = xcalloc(n + 1, sizeof *want), *want_p = xcalloc(n + 1, sizeof *want_p);
    int *got = xcalloc(n + 1, sizeof *got);
    sm_value *wv = xcalloc(n + 1, sizeof *wv), *gv = xcalloc(n + 1, sizeof *gv), untouched;
    int64_t *ik = xcalloc(n + 1, sizeof *ik);
    memset(&untouched, 0xA5, sizeof untouched);
    for (size_t i = 0; i < n; i++) {
        want[i] = sm_get(r, keys[i].data, keys[i].size, &wv[i]);
        want_p[i] = sm_get(r, keys[i].data, keys[i].size, NULL);
        ASSERT(want[i] == 0 || want[i] == SM_NOTFOUND || want[i] == SM_ECORRUPT);
    }
    /* with values, then presence only */
    for (size_t i = 0; i < n; i++)
        memcpy(&gv[i], &untouched, sizeof untouched);
    int rc = sm_get_many(r, n, keys, gv, got);
    ASSERT_EQ(rc, first_error(want, n));
    for (size_t i = 0; i < n; i++)
        check_one_of_many(r, i, want[i], &wv[i], got[i], &gv[i], &untouched, "sm_get_many");
    rc = sm_get_many(r, n, keys, NULL, got);
    ASSERT_EQ(rc, first_error(want_p, n));
    for (size_t i = 0; i < n; i++)
        check_one_of_many(r, i, want_p[i], NULL, got[i], NULL, &untouched, "sm_get_many (no values)");

    /* sm_get_many_int: the 8-byte keys as integers; on another kind, nothing is found */
    size_t ni = 0;
    for (size_t i = 0; i < n; i++)
        if (keys[i].size == SM_INT_KEY_SIZE)
            ik[ni++] = sm_key_int_value(keys[i].data);
    for (size_t i = 0; i < ni; i++) {
        unsigned char kb[SM_INT_KEY_SIZE];
        sm_key_int(ik[i], kb);
        if (sm_reader_key_kind(r) == SM_KEYS_INT) {
            want[i] = sm_get(r, kb, sizeof kb, &wv[i]);
            want_p[i] = sm_get(r, kb, sizeof kb, NULL);
        } else {
            want[i] = want_p[i] = SM_NOTFOUND;
        }
        memcpy(&gv[i], &untouched, sizeof untouched);
    }
    rc = sm_get_many_int(r, ni, ik, gv, got);
    ASSERT_EQ(rc, first_error(want, ni));
    for (size_t i = 0; i < ni; i++)
        check_one_of_many(r, i, want[i], &wv[i], got[i], &gv[i], &untouched, "sm_get_many_int");
    rc = sm_get_many_int(r, ni, ik, NULL, got);
    ASSERT_EQ(rc, first_error(want_p, ni));
    for (size_t i = 0; i < ni; i++)
        check_one_of_many(r, i, want_p[i], NULL, got[i], NULL, &untouched, "sm_get_many_int (no values)");

    /* n = 0 touches nothing, even through NULL pointers */
    ASSERT_OK(sm_get_many(r, 0, NULL, NULL, NULL));
    ASSERT_OK(sm_get_many_int(r, 0, NULL, NULL, NULL));
    free(want);
    free(want_p);
    free(got);
    free(wv);
    free(gv);
    free(ik);
}

void check_get_many_model(const sm_reader *r, const model *m, uint64_t seed, size_t extra) {
    rng g = {seed ^ UINT64_C(0x9e7a11)};
    size_t n = m->n + 2 * extra + 3, k = 0;
    sm_buf *keys = xcalloc(n, sizeof *keys);
    unsigned char(*miss)[16] = xcalloc(extra + 1, sizeof *miss);
    for (size_t i = 0; i < m->n; i++) /* every key, in a shuffled-ish order */
        keys[k++] = (sm_buf){m->e[(i * 7919) % m->n].key, m->e[(i * 7919) % m->n].klen};
    for (size_t i = 0; i < extra; i++) { /* misses (mostly), and duplicates of present keys */
        size_t len = m->kind == SM_KEYS_INT ? SM_INT_KEY_SIZE : (size_t)rng_below(&g, 17);
        if (m->kind == SM_KEYS_INT)
            sm_key_int(rand_int64(&g), miss[i]);
        else
            rng_fill(&g, miss[i], len);
        keys[k++] = (sm_buf){miss[i], len};
        if (m->n) {
            const model_entry *e = &m->e[rng_below(&g, m->n)];
            keys[k++] = (sm_buf){e->key, e->klen};
        } else
            keys[k++] = (sm_buf){miss[i], len};
    }
    keys[k++] = (sm_buf){NULL, 0}; /* the empty key, as NULL */
    keys[k++] = (sm_buf){"", 0};
    keys[k++] = (sm_buf){"\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9};
    ASSERT(k <= n);
    check_get_many(r, keys, k);
    for (size_t len = 0; len <= 40 && len <= k; len += 7) /* shorter batches, window boundaries */
        check_get_many(r, keys + (k - len), len);
    free(keys);
    free(miss);
}
