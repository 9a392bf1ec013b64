/* test-set.c: map sets (§12 of docs/FORMAT.md): a model split by key ranges into shard
 * files, its manifest written, and the set read as one map through every query of
 * check_reader(): as a directory, as its manifest, packed into shared memory, into a file
 * and into memory; and every way a set can be wrong (a missing, truncated, swapped,
 * replaced or out-of-bounds shard, bad bounds, mixed kinds, a damaged manifest) an error. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define CREATED UINT64_C(1700000000123456789)
#define MAX_SHARDS 32

/* A set on disk: its directory, shard names and bounds (pointers into the model). */
typedef struct test_set {
    char dir[4096];
    size_t n;
    char names[MAX_SHARDS][32];
    const char *name_ptrs[MAX_SHARDS];
    sm_buf bounds[MAX_SHARDS];
    unsigned char empty_bound[MAX_SHARDS][300]; /* the bounds of empty shards */
} test_set;

/* Save the model's entries [lo, hi) as the snapshot file `name` in dir. */
static void save_range(const model *m, size_t lo, size_t hi, const char *dir, const char *name) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    for (size_t i = lo; i < hi; i++)
        ASSERT_OK(sm_builder_put(b, m->kind, m->e[i].key, m->e[i].klen, &m->e[i].val));
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ASSERT_OK(sm_save(b, path, SM_FORCE, 0644));
    sm_builder_free(b);
}

/* Split the sorted model into n shards at ranks cut[1..n-1] (cut[0] = 0), write them and the
 * manifest.  A shard whose cut equals the next one's is empty; its bound is then the key
 * before it with a 0 byte appended (str and bytes models only), which no key lies between. */
static void make_set(test_set *s, const model *m, size_t n, const size_t *cut, const char *tag) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", test_path(tag));
    ASSERT(mkdir(s->dir, 0755) == 0 || errno == EEXIST);
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        size_t lo = cut[i], hi = i + 1 < n ? cut[i + 1] : m->n;
        snprintf(s->names[i], sizeof s->names[i], "shard-%03zu.smap", i);
        s->name_ptrs[i] = s->names[i];
        save_range(m, lo, hi, s->dir, s->names[i]);
        if (i == 0)
            continue;
        if (lo < m->n && (i + 1 == n || cut[i + 1] > lo)) {
            s->bounds[i].data = m->e[lo].key;
            s->bounds[i].size = m->e[lo].klen;
        } else { /* empty: just above the key before it */
            ASSERT(m->kind != SM_KEYS_INT && lo > 0);
            const model_entry *e = &m->e[lo - 1];
            memcpy(s->empty_bound[i], e->key, e->klen);
            s->empty_bound[i][e->klen] = 0;
            s->bounds[i].data = s->empty_bound[i];
            s->bounds[i].size = e->klen + 1;
        }
    }
    ASSERT_OK(sm_set_write(s->dir, n, s->name_ptrs, s->bounds, SM_FORCE, 0644));
}

/* Shard i's path (in one of two buffers, so that two can be arguments of one call). */
static const char *shard_path(const test_set *s, size_t i) {
    static char path[2][4200];
    static unsigned which;
    which ^= 1;
    snprintf(path[which], sizeof path[which], "%s/%s", s->dir, s->names[i]);
    return path[which];
}

static void check_set_reader(const sm_reader *r, const model *m, size_t shards) {
    ASSERT_EQ(sm_reader_shard_count(r), shards);
    check_reader(r, m, 5, 300);
    check_get_many_model(r, m, 9, 200);
    ASSERT_OK(sm_reader_verify(r));
    uint64_t total = 0;
    for (size_t i = 0; i < shards; i++) {
        const void *bound;
        size_t blen;
        const sm_reader *sh = sm_reader_shard(r, i, &bound, &blen);
        ASSERT(sh != NULL);
        ASSERT_EQ(sm_reader_shard_count(sh), 1);
        ASSERT_EQ(i == 0, bound == NULL);
        total += sm_reader_count(sh);
    }
    ASSERT(sm_reader_shard(r, shards, NULL, NULL) == NULL);
    ASSERT_EQ(total, m->n);
}

/* The model as a set of `shards` cut evenly (and, for str and bytes, with empty shards),
 * read every way a set can be. */
static void roundtrip(sm_key_kind kind, size_t n, size_t shards, int with_empty) {
    model m;
    model_random(&m, kind, n, 100 + shards);
    model_sort_unique(&m);
    size_t cut[MAX_SHARDS];
    for (size_t i = 0; i < shards; i++)
        cut[i] = m.n * i / shards;
    if (with_empty && shards > 3) {
        cut[2] = cut[3]; /* shard 2 empty */
        cut[shards - 1] = m.n; /* the last shard empty */
    }
    test_set s;
    make_set(&s, &m, shards, cut, "set");

    sm_reader *r;
    ASSERT_OK(sm_reader_open_file(&r, s.dir));
    check_set_reader(r, &m, shards);
    /* packed: into shared memory, into a file, into memory; all the same map */
    ASSERT_OK(sm_set_publish(r, test_dir(), "packed", 0, 0600));
    ASSERT_ERR(sm_set_publish(r, test_dir(), "packed", 0, 0600), -EEXIST);
    ASSERT_OK(sm_set_save(r, test_path("packed.smap"), 0, 0644));
    sm_reader_close(r);

    char manifest[4200];
    snprintf(manifest, sizeof manifest, "%s/MANIFEST", s.dir);
    ASSERT_OK(sm_reader_open_file(&r, manifest));
    check_set_reader(r, &m, shards);
    sm_reader_close(r);

    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "packed"));
    check_set_reader(r, &m, shards);
    /* a set's builder copy is the builder of its entries */
    sm_builder *b;
    ASSERT_OK(sm_builder_from_reader(&b, r));
    sm_builder *want = model_builder(&m);
    size_t got_n, want_n;
    unsigned char *got = snapshot_of(b, &got_n, CREATED), *wanted = snapshot_of(want, &want_n, CREATED);
    ASSERT_MEM_EQ(got, got_n, wanted, want_n);
    free(got);
    free(wanted);
    sm_builder_free(b);
    sm_builder_free(want);
    /* republished: readers of the old one see its superseded word */
    ASSERT_EQ(sm_reader_superseded(r), 0);
    ASSERT_OK(sm_set_publish(r, test_dir(), "packed", SM_FORCE, 0600));
    ASSERT_EQ(sm_reader_superseded(r), 1);
    size_t size;
    const void *data = sm_reader_data(r, &size);
    sm_reader *mem;
    ASSERT_OK(sm_reader_open_mem(&mem, data, size));
    check_set_reader(mem, &m, shards);
    sm_reader_close(mem);
    sm_reader_close(r);

    ASSERT_OK(sm_reader_open_file(&r, test_path("packed.smap")));
    check_set_reader(r, &m, shards);
    sm_reader_close(r);
    model_free(&m);
}

TEST(set_str) { roundtrip(SM_KEYS_STR, 3000, 7, 1); }
TEST(set_bytes) { roundtrip(SM_KEYS_BYTES, 2000, 16, 1); }
TEST(set_int) { roundtrip(SM_KEYS_INT, 3000, 5, 0); }
TEST(set_one_shard) { roundtrip(SM_KEYS_STR, 500, 1, 0); }
TEST(set_tiny_shards) { roundtrip(SM_KEYS_BYTES, 40, 30, 0); }

TEST(set_of_a_plain_snapshot_packs_it) {
    model m;
    model_random(&m, SM_KEYS_STR, 300, 3);
    model_sort_unique(&m);
    sm_builder *b = model_builder(&m);
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, CREATED);
    sm_reader *r, *p;
    ASSERT_OK(sm_reader_open_mem(&r, snap, n));
    ASSERT_OK(sm_set_publish(r, test_dir(), "one", 0, 0));
    ASSERT_OK(sm_reader_open_shm(&p, test_dir(), "one"));
    check_set_reader(p, &m, 1);
    sm_reader_close(p);
    sm_reader_close(r);
    free(snap);
    sm_builder_free(b);
    model_free(&m);
}

/* The shard-and-error of a set that does not open. */
static void expect_shard_error(const test_set *s, uint64_t shard, int why) {
    sm_reader *r = NULL;
    ASSERT_ERR(sm_reader_open_file(&r, s->dir), SM_ESHARD);
    ASSERT(r == NULL);
    uint64_t bad = 99;
    int err = 0;
    ASSERT_ERR(sm_set_diagnose(s->dir, &bad, &err), SM_ESHARD);
    ASSERT_EQ(bad, shard);
    ASSERT_EQ(err, why);
}

TEST(set_bad_shards) {
    model m;
    model_random(&m, SM_KEYS_STR, 1000, 21);
    model_sort_unique(&m);
    size_t cut[4] = {0, 250, 500, 750};
    test_set s;
    make_set(&s, &m, 4, cut, "bad");
    char aside[4300];

    /* missing */
    snprintf(aside, sizeof aside, "%s.aside", shard_path(&s, 1));
    ASSERT(rename(shard_path(&s, 1), aside) == 0);
    expect_shard_error(&s, 1, -ENOENT);
    /* a symlink in its place is never followed */
    ASSERT(symlink(aside, shard_path(&s, 1)) == 0);
    expect_shard_error(&s, 1, SM_ESYMLINK);
    ASSERT(unlink(shard_path(&s, 1)) == 0);
    ASSERT(rename(aside, shard_path(&s, 1)) == 0);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_file(&r, s.dir));
    sm_reader_close(r);

    /* truncated */
    struct stat st;
    ASSERT(stat(shard_path(&s, 2), &st) == 0);
    ASSERT(truncate(shard_path(&s, 2), st.st_size - 1) == 0);
    expect_shard_error(&s, 2, SM_ETRUNCATED);
    save_range(&m, 500, 750, s.dir, s.names[2]);
    /* the same entries again: another snapshot (another created), not the one named */
    expect_shard_error(&s, 2, SM_ESHARD);
    ASSERT_OK(sm_set_write(s.dir, 4, s.name_ptrs, s.bounds, SM_FORCE, 0));
    ASSERT_OK(sm_reader_open_file(&r, s.dir));
    sm_reader_close(r);

    /* swapped */
    snprintf(aside, sizeof aside, "%s.aside", shard_path(&s, 0));
    ASSERT(rename(shard_path(&s, 0), aside) == 0);
    ASSERT(rename(shard_path(&s, 3), shard_path(&s, 0)) == 0);
    ASSERT(rename(aside, shard_path(&s, 3)) == 0);
    expect_shard_error(&s, 0, SM_ESHARD);
    /* and a manifest written over swapped shards is refused: their keys are out of bounds */
    ASSERT_ERR(sm_set_write(s.dir, 4, s.name_ptrs, s.bounds, SM_FORCE, 0), SM_ESHARD);
    model_free(&m);
}

TEST(set_write_errors) {
    model m;
    model_random(&m, SM_KEYS_STR, 400, 22);
    model_sort_unique(&m);
    size_t cut[3] = {0, 100, 300};
    test_set s;
    make_set(&s, &m, 3, cut, "w");
    /* an existing manifest needs SM_FORCE */
    ASSERT_ERR(sm_set_write(s.dir, 3, s.name_ptrs, s.bounds, 0, 0), -EEXIST);
    /* bounds not increasing */
    sm_buf swapped[3] = {s.bounds[0], s.bounds[2], s.bounds[1]};
    ASSERT_ERR(sm_set_write(s.dir, 3, s.name_ptrs, swapped, SM_FORCE, 0), SM_EORDER);
    /* a bound above the shard's first key: keys outside their shard's range */
    sm_buf high[3] = {s.bounds[0], {m.e[101].key, m.e[101].klen}, s.bounds[2]};
    ASSERT_ERR(sm_set_write(s.dir, 3, s.name_ptrs, high, SM_FORCE, 0), SM_ESHARD);
    /* a missing bound, a bad name, no shards */
    sm_buf none[3] = {s.bounds[0], {NULL, 0}, s.bounds[2]};
    ASSERT_ERR(sm_set_write(s.dir, 3, s.name_ptrs, none, SM_FORCE, 0), -EINVAL);
    const char *bad_names[3] = {"shard-000.smap", "../shard-001.smap", "shard-002.smap"};
    ASSERT_ERR(sm_set_write(s.dir, 3, bad_names, s.bounds, SM_FORCE, 0), -EINVAL);
    ASSERT_ERR(sm_set_write(s.dir, 0, s.name_ptrs, s.bounds, SM_FORCE, 0), -EINVAL);
    /* shards of two kinds */
    model im;
    model_random(&im, SM_KEYS_INT, 50, 23);
    model_sort_unique(&im);
    save_range(&im, 0, im.n, s.dir, s.names[2]);
    ASSERT_ERR(sm_set_write(s.dir, 3, s.name_ptrs, s.bounds, SM_FORCE, 0), SM_EKEYKIND);
    /* what failed left the manifest that was there, and nothing else */
    ASSERT_STR_EQ(test_listing(s.dir), "MANIFEST shard-000.smap shard-001.smap shard-002.smap");
    model_free(&im);
    model_free(&m);
}

/* Every byte of a manifest flipped (and every length cut) is an error at open or, for the
 * superseded word only, the same map: never a crash, never another answer. */
TEST_TIMEOUT(set_hostile_manifest, 120) {
    model m;
    model_random(&m, SM_KEYS_BYTES, 120, 24);
    model_sort_unique(&m);
    size_t cut[5] = {0, 30, 60, 60, 100};
    test_set s;
    make_set(&s, &m, 5, cut, "h");
    sm_reader *r;
    ASSERT_OK(sm_reader_open_file(&r, s.dir));
    size_t n;
    const unsigned char *orig = sm_reader_data(r, &n);
    unsigned char *p = xmemdup(orig, n);
    ASSERT_OK(sm_set_save(r, test_path("packed.smap"), 0, 0644));
    sm_reader_close(r);
    char manifest[4200];
    snprintf(manifest, sizeof manifest, "%s/MANIFEST", s.dir);
    for (size_t i = 0; i < n; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            p[i] ^= (unsigned char)(1u << bit);
            test_write_file(manifest, p, n);
            int rc = sm_reader_open_file(&r, s.dir);
            if (i >= 120 && i < 128) { /* the superseded word */
                ASSERT_OK(rc); /* outside both checksums */
                check_reader(r, &m, 1, 10);
                sm_reader_close(r);
            } else {
                ASSERT(rc != 0);
            }
            p[i] ^= (unsigned char)(1u << bit);
        }
    }
    for (size_t len = 0; len < n; len++) {
        test_write_file(manifest, p, len);
        ASSERT(sm_reader_open_file(&r, s.dir) != 0);
    }
    /* a packed set cut anywhere; a flipped byte in a shard is an error at open or in
     * verification, except in a shard's superseded word */
    sm_reader *pr;
    ASSERT_OK(sm_reader_open_file(&pr, test_path("packed.smap")));
    size_t pn;
    const unsigned char *pdata = sm_reader_data(pr, &pn);
    unsigned char *packed = xmemdup(pdata, pn);
    size_t word[5];
    for (size_t i = 0; i < 5; i++)
        word[i] = (size_t)((const unsigned char *)sm_reader_data(sm_reader_shard(pr, i, NULL, NULL), NULL) -
                           pdata) + 120;
    sm_reader_close(pr);
    for (size_t len = 0; len < pn; len += 7) {
        sm_reader *mr;
        ASSERT(sm_reader_open_mem(&mr, packed, len) != 0);
    }
    for (size_t i = n; i < pn; i += 3) {
        int in_word = 0;
        for (size_t k = 0; k < 5; k++)
            in_word |= i >= word[k] && i < word[k] + 8;
        packed[i] ^= 0x10;
        sm_reader *mr;
        if (sm_reader_open_mem(&mr, packed, pn) == 0) {
            ASSERT_EQ(sm_reader_verify(mr) == 0, in_word);
            sm_reader_close(mr);
        } else {
            ASSERT(!in_word);
        }
        packed[i] ^= 0x10;
    }
    free(packed);
    free(p);
    model_free(&m);
}

TEST(set_listed_and_collected) {
    model m;
    model_random(&m, SM_KEYS_INT, 200, 25);
    model_sort_unique(&m);
    size_t cut[2] = {0, 100};
    test_set s;
    make_set(&s, &m, 2, cut, "l");
    sm_reader *r;
    ASSERT_OK(sm_reader_open_file(&r, s.dir));
    ASSERT_OK(sm_set_publish(r, test_dir(), "listed", 0, 0));
    sm_reader_close(r);
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "listed"));
    ASSERT_OK(sm_unpublish(test_dir(), "listed"));
    ASSERT_EQ(sm_reader_superseded(r), 1); /* removed: marked, as a snapshot is */
    check_reader(r, &m, 2, 20);            /* and still readable */
    sm_reader_close(r);
    model_free(&m);
}
