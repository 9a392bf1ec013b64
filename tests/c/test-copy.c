/* test-copy.c: copying a snapshot into a builder (sm_builder_put_reader, and
 * sm_builder_from_reader through it): into empty and non-empty builders, the key kind
 * rules, and damaged snapshots, after which the builder holds what it held. */
#include "format.h"
#include "test.h"

#include <stdlib.h>

/* The builder holds exactly the sorted model's entries, in order. */
static void check_builder(sm_builder *b, const model *m) {
    ASSERT_EQ(sm_builder_count(b), m->n);
    ASSERT_EQ(sm_builder_key_kind(b), m->n ? m->kind : SM_KEYS_NONE);
    for (size_t i = 0; i < m->n; i++) {
        sm_entry e;
        ASSERT_OK(sm_builder_at(b, i, &e));
        ASSERT_MEM_EQ(e.key.data, e.key.size, m->e[i].key, m->e[i].klen);
        ASSERT_VALUE_EQ(&e.value, &m->e[i].val);
        sm_value v;
        ASSERT_OK(sm_builder_get(b, m->e[i].key, m->e[i].klen, &v));
        ASSERT_VALUE_EQ(&v, &m->e[i].val);
    }
    sm_entry e;
    ASSERT_ERR(sm_builder_at(b, m->n, &e), SM_NOTFOUND);
}

/* A reader of the model's snapshot; *snap is its buffer, to free after closing it. */
static sm_reader *reader_of(const model *m, unsigned char **snap) {
    sm_builder *b = model_builder(m);
    size_t size;
    *snap = snapshot_of(b, &size, 1);
    sm_builder_free(b);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, *snap, size));
    return r;
}

static void copy_into_empty(sm_key_kind kind, size_t n, uint64_t seed) {
    model m;
    model_random(&m, kind, n, seed);
    unsigned char *snap;
    sm_reader *r = reader_of(&m, &snap);

    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    uint64_t ver = sm_builder_version(b);
    ASSERT_OK(sm_builder_put_reader(b, r));
    check_builder(b, &m);
    if (n)
        ASSERT_NE(sm_builder_version(b), ver); /* iterators see the change */
    /* in place, the same entries as a builder filled by hand: the same snapshot */
    size_t size, size2;
    unsigned char *again = snapshot_of(b, &size, 1);
    size_t want;
    (void)sm_reader_data(r, &want);
    ASSERT_MEM_EQ(again, size, snap, want);
    free(again);

    /* the copy owns its bytes */
    sm_reader_close(r);
    free(snap);
    check_builder(b, &m);

    /* a builder emptied by deletions, its order cache broken first, fills the same way */
    sm_builder *c = NULL;
    ASSERT_OK(sm_builder_new(&c));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(c, kind, "z", 1, &v));
    ASSERT_OK(sm_builder_put(c, kind, "a", 1, &v)); /* out of order */
    ASSERT_OK(sm_builder_del(c, "z", 1));
    ASSERT_OK(sm_builder_del(c, "a", 1));
    ASSERT_EQ(sm_builder_count(c), 0);
    unsigned char *snap2;
    r = reader_of(&m, &snap2);
    ASSERT_OK(sm_builder_put_reader(c, r));
    check_builder(c, &m);
    unsigned char *again2 = snapshot_of(c, &size2, 1);
    ASSERT_MEM_EQ(again2, size2, snap2, want);
    free(again2);
    sm_reader_close(r);
    free(snap2);

    sm_builder_free(c);
    sm_builder_free(b);
    model_free(&m);
}

TEST(put_reader_into_empty) {
    copy_into_empty(SM_KEYS_STR, 0, 1);
    copy_into_empty(SM_KEYS_STR, 1, 2);
    copy_into_empty(SM_KEYS_BYTES, 17, 3);
    copy_into_empty(SM_KEYS_STR, 1000, 4);
    copy_into_empty(SM_KEYS_BYTES, 5000, 5);
}

/* Into a builder that holds some of the keys: the snapshot's values win, the others stay. */
static void copy_into_full(sm_key_kind kind, size_t n1, size_t n2, uint64_t seed) {
    model mine, theirs, want;
    model_random(&mine, kind, n1, seed);
    model_random(&theirs, kind, n2, seed + 100);
    for (size_t i = 0; i < mine.n; i += 3) { /* every third key of mine, with a new value */
        sm_value v = sm_value_int((int64_t)i - 1000000);
        model_add(&theirs, mine.e[i].key, mine.e[i].klen, &v);
    }
    model_sort_unique(&theirs);
    model_init(&want, kind);
    for (size_t i = 0; i < mine.n; i++)
        model_add(&want, mine.e[i].key, mine.e[i].klen, &mine.e[i].val);
    for (size_t i = 0; i < theirs.n; i++)
        model_add(&want, theirs.e[i].key, theirs.e[i].klen, &theirs.e[i].val);
    model_sort_unique(&want); /* the last added of equal keys: theirs */

    sm_builder *b = model_builder(&mine);
    unsigned char *snap;
    sm_reader *r = reader_of(&theirs, &snap);
    ASSERT_OK(sm_builder_put_reader(b, r));
    sm_reader_close(r);
    free(snap);
    check_builder(b, &want);

    /* and as a snapshot, the same bytes as the merged model's */
    size_t size, size2;
    unsigned char *got = snapshot_of(b, &size, 1);
    sm_builder *wb = model_builder(&want);
    unsigned char *expect = snapshot_of(wb, &size2, 1);
    ASSERT_MEM_EQ(got, size, expect, size2);
    free(got);
    free(expect);
    sm_builder_free(wb);

    /* a copy of what b already holds overwrites only: the version does not move */
    r = reader_of(&want, &snap);
    uint64_t ver = sm_builder_version(b);
    ASSERT_OK(sm_builder_put_reader(b, r));
    ASSERT_EQ(sm_builder_version(b), ver);
    check_builder(b, &want);
    sm_reader_close(r);
    free(snap);

    sm_builder_free(b);
    model_free(&mine);
    model_free(&theirs);
    model_free(&want);
}

TEST(put_reader_into_full) {
    copy_into_full(SM_KEYS_STR, 1, 1, 10);
    copy_into_full(SM_KEYS_BYTES, 40, 7, 11);
    copy_into_full(SM_KEYS_STR, 300, 1000, 12);
    copy_into_full(SM_KEYS_BYTES, 3000, 200, 13);
}

TEST(put_reader_key_kinds) {
    sm_builder *b = NULL, *other = NULL;
    ASSERT_OK(sm_builder_new(&b));
    ASSERT_OK(sm_builder_new(&other));
    sm_value v = sm_value_int(5);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "s", 1, &v));
    ASSERT_OK(sm_builder_put(other, SM_KEYS_BYTES, "b", 1, &v));
    size_t size;
    unsigned char *snap = snapshot_of(other, &size, 1);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));

    uint64_t ver = sm_builder_version(b);
    ASSERT_ERR(sm_builder_put_reader(b, r), SM_EKEYKIND);
    ASSERT_EQ(sm_builder_count(b), 1);
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_STR);
    ASSERT_EQ(sm_builder_version(b), ver);

    /* an empty builder takes the snapshot's kind, and then refuses the other */
    sm_builder_clear(b);
    ASSERT_OK(sm_builder_put_reader(b, r));
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_BYTES);
    ASSERT_ERR(sm_builder_put(b, SM_KEYS_STR, "s", 1, &v), SM_EKEYKIND);
    sm_reader_close(r);
    free(snap);

    /* a snapshot with no entries changes nothing, of whatever kind it says it is */
    sm_builder_clear(other);
    snap = snapshot_of(other, &size, 1);
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    ver = sm_builder_version(b);
    ASSERT_OK(sm_builder_put_reader(b, r));
    ASSERT_EQ(sm_builder_count(b), 1);
    ASSERT_EQ(sm_builder_version(b), ver);
    sm_reader_close(r);
    /* key_kind str with no entries (allowed, R9), under a header checksum that agrees */
    snap[SMF_OFF_KEY_KIND] = SM_KEYS_STR;
    smf_put64(snap + SMF_OFF_HEADER_SUM, sm_hash64(snap, SMF_OFF_HEADER_SUM, 0));
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    ASSERT_EQ(sm_reader_key_kind(r), SM_KEYS_STR);
    ASSERT_OK(sm_builder_put_reader(b, r));
    ASSERT_EQ(sm_builder_key_kind(b), SM_KEYS_BYTES);
    ASSERT_EQ(sm_builder_version(b), ver);
    sm_builder *e = NULL;
    ASSERT_OK(sm_builder_new(&e));
    ASSERT_OK(sm_builder_put_reader(e, r));
    ASSERT_EQ(sm_builder_key_kind(e), SM_KEYS_NONE);
    sm_builder_free(e);
    sm_reader_close(r);
    free(snap);

    sm_builder_free(other);
    sm_builder_free(b);
}

/* A snapshot of keys k0000.. with str values value0000..: record i's bytes are
 * klen (1 byte) | vlen << 4 | type (2 bytes) | key (5) | value (9). */
static unsigned char *str_snapshot(size_t n, size_t *size) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    for (size_t i = 0; i < n; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "k%04zu", i);
        snprintf(v, sizeof v, "value%04zu", i);
        sm_value sv = sm_value_str(v, 9);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, k, 5, &sv));
    }
    unsigned char *snap = snapshot_of(b, size, 1);
    sm_builder_free(b);
    return snap;
}

/* The byte offset of record `rank`. */
static uint64_t record_offset(const unsigned char *snap, size_t size, uint64_t rank) {
    sm_reader *r = NULL;
    sm_cursor c;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size));
    ASSERT_OK(sm_seek_rank(r, rank, &c));
    sm_reader_close(r);
    return c.offset;
}

/* Copying the damaged snapshot fails with `want` and leaves the builders as they were:
 * an empty one, and one holding int values under some of the same keys. */
static void check_damage(unsigned char *snap, size_t size, int want) {
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, snap, size)); /* the header is intact */

    sm_builder *empty = NULL;
    ASSERT_OK(sm_builder_new(&empty));
    uint64_t ver = sm_builder_version(empty);
    ASSERT_ERR(sm_builder_put_reader(empty, r), want);
    ASSERT_EQ(sm_builder_count(empty), 0);
    ASSERT_EQ(sm_builder_key_kind(empty), SM_KEYS_NONE);
    ASSERT_EQ(sm_builder_version(empty), ver);
    sm_builder_free(empty);
    sm_builder *copy = (sm_builder *)1;
    ASSERT_ERR(sm_builder_from_reader(&copy, r), want);
    ASSERT(copy == (sm_builder *)1);

    model mine;
    model_init(&mine, SM_KEYS_STR);
    for (size_t i = 0; i < 100; i += 2) { /* k0000, k0002, ..: before and after the damage */
        char k[32];
        snprintf(k, sizeof k, "k%04zu", i);
        sm_value v = sm_value_int((int64_t)i);
        model_add(&mine, k, 5, &v);
    }
    sm_value yes = sm_value_bool(1);
    model_add(&mine, "zzz", 3, &yes);
    model_sort_unique(&mine);
    sm_builder *b = model_builder(&mine);
    ver = sm_builder_version(b);
    ASSERT_ERR(sm_builder_put_reader(b, r), want);
    ASSERT_EQ(sm_builder_version(b), ver);
    check_builder(b, &mine);
    sm_builder_free(b);
    model_free(&mine);
    sm_reader_close(r);
}

TEST(put_reader_damaged) {
    size_t size;
    unsigned char *good = str_snapshot(200, &size);
    unsigned char *snap = xmalloc(size);
    const uint64_t ranks[] = {0, 51, 199}; /* the first, one in the middle, the last */
    for (size_t k = 0; k < sizeof ranks / sizeof ranks[0]; k++) {
        uint64_t off = record_offset(good, size, ranks[k]);
        /* a str value that is not UTF-8 */
        memcpy(snap, good, size);
        ASSERT_EQ(snap[off + 8], 'v');
        snap[off + 8] = 0xFF;
        check_damage(snap, size, SM_EUTF8);
        /* a type no value has (15): the record cannot be read */
        memcpy(snap, good, size);
        ASSERT_EQ(snap[off + 1], (((9 << 4) | SM_STR) & 0x7F) | 0x80);
        snap[off + 1] = (unsigned char)(snap[off + 1] | 0x0F);
        check_damage(snap, size, SM_ECORRUPT);
        /* a str key that is not UTF-8 */
        memcpy(snap, good, size);
        ASSERT_EQ(snap[off + 3], 'k');
        snap[off + 3] = 0xC0;
        check_damage(snap, size, SM_EUTF8);
    }
    /* a key so long that the last record runs past records_end */
    memcpy(snap, good, size);
    snap[record_offset(good, size, 199)] = 0x7F;
    check_damage(snap, size, SM_ECORRUPT);
    free(snap);
    free(good);
}
