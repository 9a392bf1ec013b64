/* test-writer.c: the streaming writer (sm_writer_*): its snapshot is the builder's byte
 * for byte, in sorted and unsorted mode, with runs and pair chunks spilled, with
 * duplicates, with a table that needs another seed; its errors; and that it leaves
 * nothing behind. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define CREATED UINT64_C(1700000000123456789)

static unsigned char *read_file(const char *path, size_t *n) {
    int fd = open(path, O_RDONLY);
    ASSERT(fd >= 0);
    struct stat st;
    ASSERT(fstat(fd, &st) == 0);
    unsigned char *p = xmalloc((size_t)st.st_size + 1);
    ASSERT_EQ(read(fd, p, (size_t)st.st_size), st.st_size);
    close(fd);
    *n = (size_t)st.st_size;
    return p;
}

/* The spill directory of these tests, which must be empty whenever we look. */
static const char *spill_dir(void) {
    const char *d = test_path("spill");
    mkdir(d, 0700);
    return d;
}

static sm_writer_opts small_opts(unsigned flags) {
    sm_writer_opts o = SM_WRITER_OPTS_INIT;
    o.memory_limit = SM_WRITER_MEMORY_MIN; /* runs and pair chunks of a few thousand */
    o.flags = flags;
    o.temp_dir = spill_dir();
    o.created_ns = CREATED;
    return o;
}

/* Write the model's entries (in the order given by perm, or the model's) through a
 * writer to path, then compare with the builder's snapshot of the sorted model. */
static void check_same_bytes(const model *added, const model *sorted, unsigned flags, const char *path) {
    sm_writer_opts o = small_opts(flags);
    sm_writer *w;
    ASSERT_OK(sm_writer_open_file(&w, path, SM_FORCE, 0644, &o));
    for (size_t i = 0; i < added->n; i++)
        ASSERT_OK(sm_writer_add(w, added->kind, added->e[i].key, added->e[i].klen, &added->e[i].val));
    ASSERT_STR_EQ(test_listing(spill_dir()), ""); /* spill files have no names */
    ASSERT_OK(sm_writer_commit(w));
    ASSERT_EQ(sm_writer_count(w), sorted->n);
    sm_writer_free(w);
    ASSERT_STR_EQ(test_listing(spill_dir()), "");

    sm_builder *b = model_builder(sorted);
    size_t want_n, got_n;
    unsigned char *want = snapshot_of(b, &want_n, CREATED), *got = read_file(path, &got_n);
    ASSERT_MEM_EQ(got, got_n, want, want_n);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_file(&r, path));
    check_reader(r, sorted, 7, 200);
    sm_reader_close(r);
    free(want);
    free(got);
    sm_builder_free(b);
}

static void shuffle(model *m, uint64_t seed) {
    rng g = {seed};
    for (size_t i = m->n; i > 1; i--) {
        size_t j = (size_t)rng_below(&g, i);
        model_entry t = m->e[i - 1];
        m->e[i - 1] = m->e[j];
        m->e[j] = t;
    }
    for (size_t i = 0; i < m->n; i++)
        m->e[i].seq = i;
}

/* A model of n random entries, then dups entries re-added with other values. */
static void with_duplicates(model *added, model *sorted, sm_key_kind kind, size_t n, size_t dups,
                            uint64_t seed) {
    model_random(added, kind, n, seed);
    shuffle(added, seed + 1);
    rng g = {seed + 2};
    for (size_t i = 0; i < dups && n; i++) {
        const model_entry *e = &added->e[rng_below(&g, n)];
        sm_value v = sm_value_int((int64_t)i);
        unsigned char *k = xmemdup(e->key, e->klen);
        model_add(added, k, e->klen, &v);
        free(k);
    }
    model_init(sorted, kind);
    for (size_t i = 0; i < added->n; i++)
        model_add(sorted, added->e[i].key, added->e[i].klen, &added->e[i].val);
    model_sort_unique(sorted);
}

TEST_TIMEOUT(writer_unsorted_matches_builder, 300) {
    const sm_key_kind kinds[] = {SM_KEYS_STR, SM_KEYS_BYTES, SM_KEYS_INT};
    const size_t sizes[] = {0, 1, 17, 1000, 40000};
    for (size_t k = 0; k < 3; k++)
        for (size_t s = 0; s < 5; s++) {
            model added, sorted;
            with_duplicates(&added, &sorted, kinds[k], sizes[s], sizes[s] / 5, 100 * k + s);
            check_same_bytes(&added, &sorted, 0, test_path("out.smap"));
            model_free(&added);
            model_free(&sorted);
        }
}

TEST_TIMEOUT(writer_sorted_matches_builder, 300) {
    const size_t sizes[] = {0, 1, 1000, 40000};
    for (size_t s = 0; s < 4; s++) {
        model added, sorted;
        with_duplicates(&added, &sorted, SM_KEYS_STR, sizes[s], 0, s);
        /* in key order, each key twice: the second one wins */
        model twice;
        model_init(&twice, SM_KEYS_STR);
        for (size_t i = 0; i < sorted.n; i++) {
            sm_value v = sm_value_int(-1);
            model_add(&twice, sorted.e[i].key, sorted.e[i].klen, &v);
            model_add(&twice, sorted.e[i].key, sorted.e[i].klen, &sorted.e[i].val);
        }
        check_same_bytes(&twice, &sorted, SM_WRITER_SORTED, test_path("sorted.smap"));
        model_free(&twice);
        model_free(&added);
        model_free(&sorted);
    }
}

/* A value larger than the whole arena of a run. */
TEST(writer_huge_value) {
    model added, sorted;
    model_random(&added, SM_KEYS_BYTES, 100, 5);
    size_t big = 6u << 20;
    unsigned char *p = xmalloc(big);
    memset(p, 'x', big);
    sm_value v = sm_value_bytes(p, big);
    model_add(&added, "\xff\xff\xff huge", 8, &v);
    free(p);
    model_init(&sorted, SM_KEYS_BYTES);
    for (size_t i = 0; i < added.n; i++)
        model_add(&sorted, added.e[i].key, added.e[i].klen, &added.e[i].val);
    model_sort_unique(&sorted);
    check_same_bytes(&added, &sorted, 0, test_path("huge.smap"));
    model_free(&added);
    model_free(&sorted);
}

/* 260 keys with one home under the first (seed, M): no table can place them, so both
 * the builder and the writer (with its pairs spilled) go on to seed 1, and agree. */
TEST_TIMEOUT(writer_table_retry, 300) {
    const size_t n = 20000;
    const uint64_t M = n + n / 4 + 1;
    model added, sorted;
    model_init(&added, SM_KEYS_STR);
    char key[32];
    size_t found = 0;
    uint64_t want_home = UINT64_MAX;
    for (uint64_t i = 0; found < 260; i++) {
        int kl = snprintf(key, sizeof key, "c%010llu", (unsigned long long)i);
        uint64_t home = (uint64_t)(((unsigned __int128)sm_hash64(key, (size_t)kl, 0) * M) >> 64);
        if (want_home == UINT64_MAX)
            want_home = home;
        if (home != want_home)
            continue;
        sm_value v = sm_value_int((int64_t)i);
        model_add(&added, key, (size_t)kl, &v);
        found++;
    }
    for (size_t i = 0; added.n < n; i++) {
        int kl = snprintf(key, sizeof key, "other%08zu", i);
        sm_value v = sm_value_int((int64_t)i);
        model_add(&added, key, (size_t)kl, &v);
    }
    shuffle(&added, 3);
    model_init(&sorted, SM_KEYS_STR);
    for (size_t i = 0; i < added.n; i++)
        model_add(&sorted, added.e[i].key, added.e[i].klen, &added.e[i].val);
    model_sort_unique(&sorted);
    ASSERT_EQ(sorted.n, n);
    check_same_bytes(&added, &sorted, 0, test_path("retry.smap"));
    sm_reader *r;
    ASSERT_OK(sm_reader_open_file(&r, test_path("retry.smap")));
    sm_info info;
    sm_reader_info(r, &info);
    ASSERT(info.hash_seed >= 1);
    sm_reader_close(r);
    model_free(&added);
    model_free(&sorted);
}

TEST(writer_errors) {
    sm_writer_opts o = small_opts(SM_WRITER_SORTED);
    sm_writer *w;
    sm_value v = sm_value_int(1);
    ASSERT_ERR(sm_writer_open_file(&w, test_path("bad.smap"), 0, 04755, &o), -EINVAL);
    ASSERT_ERR(sm_writer_open_file(&w, test_path("dir/"), 0, 0, &o), -EISDIR);
    ASSERT_ERR(sm_writer_open_file(&w, test_path("nodir/x.smap"), 0, 0, &o), -ENOENT);
    ASSERT_ERR(sm_writer_open_shm(&w, test_dir(), "bad/name", 0, 0, &o), SM_ENAME);
    ASSERT_OK(sm_writer_open_file(&w, test_path("e.smap"), 0, 0, &o));
    ASSERT_OK(sm_writer_add(w, SM_KEYS_STR, "b", 1, &v));
    ASSERT_ERR(sm_writer_add(w, SM_KEYS_STR, "a", 1, &v), SM_EORDER);
    ASSERT_ERR(sm_writer_add(w, SM_KEYS_BYTES, "c", 1, &v), SM_EKEYKIND);
    ASSERT_ERR(sm_writer_add(w, SM_KEYS_STR, "\xff", 1, &v), SM_EUTF8);
    ASSERT_ERR(sm_writer_add(w, SM_KEYS_NONE, "c", 1, &v), -EINVAL);
    ASSERT_OK(sm_writer_add(w, SM_KEYS_STR, "c", 1, &v)); /* those errors lost nothing */
    ASSERT_OK(sm_writer_commit(w));
    ASSERT_ERR(sm_writer_commit(w), -EINVAL);
    sm_writer_free(w);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_file(&r, test_path("e.smap")));
    ASSERT_EQ(sm_reader_count(r), 2);
    sm_reader_close(r);
    /* the name exists now: without SM_FORCE the commit fails and leaves it */
    ASSERT_OK(sm_writer_open_file(&w, test_path("e.smap"), 0, 0, &o));
    ASSERT_OK(sm_writer_add(w, SM_KEYS_STR, "z", 1, &v));
    ASSERT_ERR(sm_writer_commit(w), -EEXIST);
    sm_writer_free(w);
    ASSERT_STR_EQ(test_listing(test_dir()), "e.smap spill");
}

/* A writer freed before commit leaves nothing: not its output, not a spill. */
TEST(writer_abandoned) {
    model m;
    model_random(&m, SM_KEYS_STR, 30000, 9);
    sm_writer_opts o = small_opts(0);
    sm_writer *w;
    ASSERT_OK(sm_writer_open_shm(&w, test_dir(), "gone", 0, 0, &o));
    for (size_t i = 0; i < m.n; i++)
        ASSERT_OK(sm_writer_add(w, SM_KEYS_STR, m.e[i].key, m.e[i].klen, &m.e[i].val));
    sm_writer_free(w);
    ASSERT_STR_EQ(test_listing(test_dir()), "spill");
    ASSERT_STR_EQ(test_listing(spill_dir()), "");
    model_free(&m);
}

TEST(writer_publish_shm) {
    model m;
    model_random(&m, SM_KEYS_INT, 5000, 11);
    for (int round = 0; round < 2; round++) {
        sm_writer_opts o = small_opts(0);
        sm_writer *w;
        ASSERT_OK(sm_writer_open_shm(&w, test_dir(), "pub", SM_FORCE, 0640, &o));
        for (size_t i = 0; i < m.n; i++)
            ASSERT_OK(sm_writer_add(w, SM_KEYS_INT, m.e[i].key, m.e[i].klen, &m.e[i].val));
        ASSERT_OK(sm_writer_commit(w));
        sm_writer_free(w);
    }
    model_sort_unique(&m);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "pub"));
    check_reader(r, &m, 3, 100);
    sm_reader_close(r);
    struct stat st;
    ASSERT(stat(test_path("sharedmap.pub"), &st) == 0);
    ASSERT_EQ(st.st_mode & 0777, 0640);
    model_free(&m);
}
