/* test-layer.c: edits published as delta layers (src/edit.c, src/layer.c): rounds of random
 * puts, deletions and re-inserts checked against a model through every read function,
 * across compactions, for str and int keys; conflicts with a publisher that does not lock. */
#include "internal.h"
#include "test.h"

#include <fcntl.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYS 3000 /* the key space: key i for i < KEYS; the map starts with every third */

typedef struct lmodel {
    sm_key_kind kind;
    int has[KEYS];
    int64_t val[KEYS];
} lmodel;

/* Key i's bytes into buf (its order is i's order for both kinds). */
static size_t key_of(sm_key_kind kind, int i, unsigned char *buf) {
    if (kind == SM_KEYS_INT) {
        sm_key_int((int64_t)i * 1000 - 1000000, buf);
        return SM_INT_KEY_SIZE;
    }
    return (size_t)sprintf((char *)buf, "k%06d", i);
}

static void check(const lmodel *m, const char *name) {
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), name));
    uint64_t count = 0;
    for (int i = 0; i < KEYS; i++)
        count += (uint64_t)m->has[i];
    ASSERT_EQ(sm_reader_count(r), count);
    uint64_t rank = 0;
    unsigned char k[16];
    for (int i = 0; i < KEYS; i++) {
        size_t kl = key_of(m->kind, i, k);
        sm_value v;
        int rc = sm_get(r, k, kl, &v);
        ASSERT_EQ(rc, m->has[i] ? 0 : SM_NOTFOUND);
        if (!rc)
            ASSERT_EQ(v.as.i, m->val[i]);
        sm_cursor c;
        ASSERT_OK(sm_seek_key(r, k, kl, SM_GE, &c));
        ASSERT_EQ(c.rank, rank);
        ASSERT_OK(sm_seek_key(r, k, kl, SM_GT, &c));
        ASSERT_EQ(c.rank, rank + (uint64_t)m->has[i]);
        if (m->has[i]) {
            uint64_t got;
            ASSERT_OK(sm_rank(r, k, kl, &got));
            ASSERT_EQ(got, rank);
            sm_entry e;
            ASSERT_OK(sm_seek_rank(r, rank, &c));
            ASSERT_OK(sm_cursor_get(&c, &e));
            ASSERT_MEM_EQ(e.key.data, e.key.size, k, kl);
            rank++;
        } else {
            ASSERT_ERR(sm_rank(r, k, kl, NULL), SM_NOTFOUND);
        }
    }
    /* the whole map, by batches of an odd size, and by single steps backwards */
    sm_cursor c;
    sm_entry batch[37];
    size_t got;
    uint64_t seen = 0;
    int i = 0, rc;
    ASSERT_OK(sm_seek_rank(r, 0, &c));
    while ((rc = sm_cursor_read_many(&c, batch, 37, &got)) == 0) {
        for (size_t b = 0; b < got; b++, i++, seen++) {
            while (!m->has[i])
                i++;
            size_t kl = key_of(m->kind, i, k);
            ASSERT_MEM_EQ(batch[b].key.data, batch[b].key.size, k, kl);
            ASSERT_EQ(batch[b].value.as.i, m->val[i]);
        }
    }
    ASSERT_EQ(rc, SM_NOTFOUND);
    ASSERT_EQ(seen, count);
    if (count) {
        ASSERT_OK(sm_seek_rank(r, count - 1, &c));
        for (uint64_t n = 1; n < count && n < 50; n++)
            ASSERT_OK(sm_cursor_prev(&c));
    }
    /* get_many of every key */
    sm_buf *keys = calloc(KEYS, sizeof *keys);
    unsigned char(*kb)[16] = calloc(KEYS, 16);
    sm_value *vals = calloc(KEYS, sizeof *vals);
    int *st = calloc(KEYS, sizeof *st);
    ASSERT(keys && kb && vals && st);
    for (int j = 0; j < KEYS; j++) {
        keys[j].size = key_of(m->kind, j, kb[j]);
        keys[j].data = kb[j];
    }
    ASSERT_OK(sm_get_many(r, KEYS, keys, vals, st));
    for (int j = 0; j < KEYS; j++) {
        ASSERT_EQ(st[j], m->has[j] ? 0 : SM_NOTFOUND);
        if (m->has[j])
            ASSERT_EQ(vals[j].as.i, m->val[j]);
    }
    free(keys);
    free(kb);
    free(vals);
    free(st);
    if (m->kind == SM_KEYS_STR) { /* keys k0001xx: i in [100, 200) */
        uint64_t b0, b1, w0 = 0, w1 = 0;
        ASSERT_OK(sm_prefix_range(r, "k0001", 5, &b0, &b1));
        for (int j = 0; j < 200; j++) {
            w0 += (uint64_t)(j < 100 && m->has[j]);
            w1 += (uint64_t)m->has[j];
        }
        ASSERT_EQ(b0, w0);
        ASSERT_EQ(b1, w1);
    }
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);
}

static void rounds(sm_key_kind kind, double ratio, int nrounds, int changes, uint64_t seed) {
    static lmodel m;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    unsigned char k[16];
    for (int i = 0; i < KEYS; i += 3) {
        sm_value v = sm_value_int(i);
        ASSERT_OK(sm_builder_put(b, kind, k, key_of(kind, i, k), &v));
        m.has[i] = 1;
        m.val[i] = i;
    }
    ASSERT_OK(sm_publish(b, test_dir(), "m", 0, 0));
    sm_builder_free(b);
    check(&m, "m");
    rng g = {seed};
    int compactions = 0;
    for (int round = 0; round < nrounds; round++) {
        sm_edit *e;
        sm_edit_opts o = SM_EDIT_OPTS_INIT;
        o.compact_ratio = ratio;
        ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "m", &o));
        for (int c = 0; c < changes; c++) {
            int i = (int)rng_below(&g, KEYS);
            size_t kl = key_of(kind, i, k);
            if (rng_below(&g, 3) == 0) {
                ASSERT_EQ(sm_edit_del(e, k, kl), m.has[i] ? 0 : SM_NOTFOUND);
                m.has[i] = 0;
            } else {
                sm_value v = sm_value_int(round * 100000 + c);
                ASSERT_OK(sm_edit_put(e, kind, k, kl, &v));
                m.has[i] = 1;
                m.val[i] = v.as.i;
            }
            sm_value v;
            int rc = sm_edit_get(e, k, kl, &v);
            ASSERT_EQ(rc, m.has[i] ? 0 : SM_NOTFOUND);
        }
        int compacted;
        ASSERT_OK(sm_edit_commit(e, &compacted));
        sm_edit_free(e);
        compactions += compacted;
        check(&m, "m");
    }
    if (ratio < 1)
        ASSERT(compactions > 0);
}

TEST_TIMEOUT(layer_str_rounds, 120) { rounds(SM_KEYS_STR, 0.3, 25, 60, 1); }
TEST_TIMEOUT(layer_int_rounds, 120) { rounds(SM_KEYS_INT, 0.3, 25, 60, 2); }
TEST_TIMEOUT(layer_never_compacts, 120) { rounds(SM_KEYS_STR, 1e9, 12, 200, 3); }

/* A full publish between an edit's open and its commit: the edit fails, nothing is lost
 * silently, and the map is the publisher's. */
TEST(layer_conflict) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "a", 1, &v));
    ASSERT_OK(sm_publish(b, test_dir(), "c", 0, 0));
    sm_edit *e;
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "c", NULL));
    sm_value two = sm_value_int(2);
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, "b", 1, &two));
    ASSERT_OK(sm_publish(b, test_dir(), "c", SM_FORCE, 0));
    ASSERT_ERR(sm_edit_commit(e, NULL), SM_ECONFLICT);
    sm_edit_free(e);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "c"));
    ASSERT_EQ(sm_reader_count(r), 1);
    sm_reader_close(r);
    sm_builder_free(b);
}

/* A second editor waits (here: NOWAIT says so at once) while the first holds the name. */
TEST(layer_editors_serialise) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "a", 1, &v));
    ASSERT_OK(sm_publish(b, test_dir(), "s", 0, 0));
    sm_builder_free(b);
    sm_edit *e1, *e2;
    sm_edit_opts o = SM_EDIT_OPTS_INIT;
    o.flags = SM_EDIT_NOWAIT;
    ASSERT_OK(sm_edit_open_shm(&e1, test_dir(), "s", &o));
    ASSERT_ERR(sm_edit_open_shm(&e2, test_dir(), "s", &o), -EWOULDBLOCK);
    sm_edit_free(e1);
    ASSERT_OK(sm_edit_open_shm(&e2, test_dir(), "s", &o));
    sm_edit_free(e2);
}

/* Readers attaching in a loop while another process edits and compacts: every attach
 * succeeds (a base removed by a compaction under an attaching reader makes it open the name
 * again) and sees a whole version: its tag and its count agree. */
TEST_TIMEOUT(layer_readers_see_whole_versions, 120) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    for (int i = 0; i < 500; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "base%04d", i);
        sm_value v = sm_value_int(i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, k, (size_t)n, &v));
    }
    sm_value zero = sm_value_int(0);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "version", 7, &zero));
    ASSERT_OK(sm_publish(b, test_dir(), "v", 0, 0));
    sm_builder_free(b);
    enum { ROUNDS = 150 };
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        for (int round = 1; round <= ROUNDS; round++) {
            sm_edit *e;
            sm_edit_opts o = SM_EDIT_OPTS_INIT;
            o.compact_ratio = 0.02; /* a compaction every ~10 rounds */
            if (sm_edit_open_shm(&e, test_dir(), "v", &o))
                _exit(2);
            char k[16];
            int n = snprintf(k, sizeof k, "new%04d", round);
            sm_value v = sm_value_int(round);
            if (sm_edit_put(e, SM_KEYS_STR, k, (size_t)n, &v) || sm_edit_put(e, SM_KEYS_STR, "version", 7, &v) ||
                sm_edit_commit(e, NULL))
                _exit(3);
            sm_edit_free(e);
        }
        _exit(0);
    }
    int status, seen_last = 0;
    long opens = 0;
    for (;;) {
        int done = waitpid(pid, &status, WNOHANG) == pid;
        sm_reader *r;
        ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "v"));
        sm_value v;
        ASSERT_OK(sm_get(r, "version", 7, &v));
        ASSERT_EQ(sm_reader_count(r), 501 + v.as.i);
        seen_last = v.as.i == ROUNDS;
        sm_reader_close(r);
        opens++;
        if (done)
            break;
    }
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT(seen_last);
    ASSERT(opens > 1);
}

/* gc removes a base that no layer names (the debris of a compaction or an edit that died) and
 * keeps the one the map's layer names, and a base whose editor holds the lock. */
TEST(layer_gc_bases) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "a", 1, &v));
    ASSERT_OK(sm_publish(b, test_dir(), "g", 0, 0));
    sm_builder_free(b);
    sm_edit *e;
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "g", NULL));
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, "b", 1, &v));
    ASSERT_OK(sm_edit_commit(e, NULL));
    sm_edit_free(e);
    test_write_file(test_path(".sharedmap-base.0123456789abcdef.sharedmap.g"), "x", 1);
    test_write_file(test_path(".sharedmap-base.0123456789abcdef.sharedmap.gone"), "x", 1);
    test_write_file(test_path(".sharedmap-base.0123456789abcdef.sharedmap.held"), "x", 1);
    int dirfd = open(test_dir(), O_RDONLY | O_DIRECTORY);
    ASSERT(dirfd >= 0);
    int lock = smi_edit_lock(dirfd, "sharedmap.held", 1); /* an editor of "held" */
    ASSERT(lock >= 0);
    unsigned removed;
    ASSERT_OK(sm_gc(test_dir(), &removed));
    ASSERT_EQ(removed, 2);
    /* the edit locks of names that are gone go too; a held one and a live map's stay */
    struct stat st;
    ASSERT(fstatat(dirfd, ".sharedmap-edit.sharedmap.gone", &st, 0) < 0 && errno == ENOENT);
    ASSERT(fstatat(dirfd, ".sharedmap-edit.sharedmap.held", &st, 0) == 0);
    ASSERT(fstatat(dirfd, ".sharedmap-edit.sharedmap.g", &st, 0) == 0);
    close(lock);
    ASSERT_OK(sm_gc(test_dir(), &removed));
    ASSERT(fstatat(dirfd, ".sharedmap-edit.sharedmap.held", &st, 0) < 0 && errno == ENOENT);
    close(dirfd);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "g"));
    ASSERT_EQ(sm_reader_count(r), 2);
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);
}

/* An editor SIGKILLed at random moments (in its edits, its commits, its compactions): the map
 * is always a whole version (its tag and count agree, it verifies), and after gc nothing is
 * left but the map, the base its layer names and the lock file. */
TEST_TIMEOUT(layer_sigkill_editor, 300) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    sm_value zero = sm_value_int(0);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "version", 7, &zero));
    for (int i = 0; i < 300; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "base%04d", i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, k, (size_t)n, &zero));
    }
    ASSERT_OK(sm_publish(b, test_dir(), "k", 0, 0));
    sm_builder_free(b);
    rng g = {42};
    for (int trial = 0; trial < 200; trial++) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            for (;;) {
                sm_edit *e;
                sm_edit_opts o = SM_EDIT_OPTS_INIT;
                o.compact_ratio = 0.05;
                if (sm_edit_open_shm(&e, test_dir(), "k", &o))
                    _exit(2);
                sm_value v;
                if (sm_edit_get(e, "version", 7, &v))
                    _exit(3);
                sm_value next = sm_value_int(v.as.i + 1);
                char k[16];
                int n = snprintf(k, sizeof k, "new%06lld", (long long)next.as.i);
                if (sm_edit_put(e, SM_KEYS_STR, k, (size_t)n, &next) ||
                    sm_edit_put(e, SM_KEYS_STR, "version", 7, &next) || sm_edit_commit(e, NULL))
                    _exit(4);
                sm_edit_free(e);
            }
        }
        usleep((useconds_t)rng_below(&g, 3000));
        kill(pid, SIGKILL);
        int status;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT(WIFSIGNALED(status));
        sm_reader *r;
        ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "k"));
        sm_value v;
        ASSERT_OK(sm_get(r, "version", 7, &v));
        ASSERT_EQ(sm_reader_count(r), 301 + v.as.i);
        if (trial % 20 == 0)
            ASSERT_OK(sm_reader_verify(r));
        sm_reader_close(r);
    }
    ASSERT_OK(sm_gc(test_dir(), NULL));
    /* what is left: the map, its lock file, and a base only if the map is a layer */
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "k"));
    ASSERT_OK(sm_reader_verify(r));
    const char *left = test_listing(test_dir());
    int bases = 0;
    for (const char *q = left; (q = strstr(q, ".sharedmap-base.")) != NULL; q++)
        bases++;
    ASSERT(bases <= 1);
    ASSERT(!strstr(left, ".sharedmap-tmp."));
    sm_reader_close(r);
}

/* Every key deleted by a delta (no compaction): an empty map of the base's kind, whose keys
 * come back with the next edit. */
TEST(layer_delete_everything) {
    static lmodel m;
    memset(&m, 0, sizeof m);
    m.kind = SM_KEYS_STR;
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    unsigned char k[16];
    for (int i = 0; i < 30; i++) {
        sm_value v = sm_value_int(i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, k, key_of(SM_KEYS_STR, i, k), &v));
        m.has[i] = 1;
        m.val[i] = i;
    }
    ASSERT_OK(sm_publish(b, test_dir(), "m", 0, 0));
    sm_builder_free(b);
    sm_edit_opts o = SM_EDIT_OPTS_INIT;
    o.compact_ratio = 1e9;
    sm_edit *e;
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "m", &o));
    for (int i = 0; i < 30; i++) {
        ASSERT_OK(sm_edit_del(e, k, key_of(SM_KEYS_STR, i, k)));
        m.has[i] = 0;
    }
    ASSERT_EQ(sm_edit_count(e), 0);
    ASSERT_OK(sm_edit_commit(e, NULL));
    sm_edit_free(e);
    check(&m, "m");
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "m", &o));
    sm_value v = sm_value_int(7);
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, k, key_of(SM_KEYS_STR, 5, k), &v));
    m.has[5] = 1;
    m.val[5] = 7;
    ASSERT_OK(sm_edit_commit(e, NULL));
    sm_edit_free(e);
    check(&m, "m");
}

/* The first entries of the map all new in the delta (new keys below every base key, or over an
 * empty base): sm_seek_rank of them once failed with SM_ECORRUPT. */
static void new_keys_first(int base_from) {
    static lmodel m;
    memset(&m, 0, sizeof m);
    m.kind = SM_KEYS_STR;
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    unsigned char k[16];
    for (int i = base_from; i < 30; i++) {
        sm_value v = sm_value_int(i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, k, key_of(SM_KEYS_STR, i, k), &v));
        m.has[i] = 1;
        m.val[i] = i;
    }
    ASSERT_OK(sm_publish(b, test_dir(), "m", 0, 0));
    sm_builder_free(b);
    sm_edit_opts o = SM_EDIT_OPTS_INIT;
    o.compact_ratio = -1; /* never */
    sm_edit *e;
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "m", &o));
    for (int i = 0; i < 5; i++) {
        sm_value v = sm_value_int(-i);
        ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, k, key_of(SM_KEYS_STR, i, k), &v));
        m.has[i] = 1;
        m.val[i] = -i;
    }
    int compacted = 1;
    ASSERT_OK(sm_edit_commit(e, &compacted));
    ASSERT_EQ(compacted, 0);
    sm_edit_free(e);
    check(&m, "m");
}

TEST(layer_new_keys_below_the_base) { new_keys_first(10); }
TEST(layer_new_keys_over_an_empty_base) { new_keys_first(30); }

/* Unpublishing a layered map takes its base and edit lock with it; its readers keep reading. */
TEST(layer_unpublish) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = {.type = SM_INT, .as.i = 1};
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "a", 1, &v));
    ASSERT_OK(sm_publish(b, test_dir(), "u", 0, 0));
    sm_builder_free(b);
    sm_edit *e;
    sm_edit_opts o = SM_EDIT_OPTS_INIT;
    o.compact_ratio = -1; /* a delta, however large beside the base */
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "u", &o));
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, "b", 1, &v));
    ASSERT_OK(sm_edit_commit(e, NULL));
    sm_edit_free(e);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "u"));
    sm_layer_info li;
    ASSERT_EQ(sm_reader_layer(r, &li), 1);
    ASSERT_EQ(li.base_count, 1);
    ASSERT_EQ(li.delta_records, 1);
    ASSERT_OK(sm_unpublish(test_dir(), "u"));
    int dirfd = open(test_dir(), O_RDONLY | O_DIRECTORY);
    ASSERT(dirfd >= 0);
    struct stat st;
    ASSERT(fstatat(dirfd, li.base_file, &st, 0) < 0 && errno == ENOENT);
    ASSERT(fstatat(dirfd, ".sharedmap-edit.sharedmap.u", &st, 0) < 0 && errno == ENOENT);
    close(dirfd);
    ASSERT_OK(sm_get(r, "b", 1, NULL));
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);
    /* an edit of a name with nothing under it leaves no lock behind either */
    ASSERT_ERR(sm_edit_open_shm(&e, test_dir(), "u", NULL), -ENOENT);
    dirfd = open(test_dir(), O_RDONLY | O_DIRECTORY);
    ASSERT(fstatat(dirfd, ".sharedmap-edit.sharedmap.u", &st, 0) < 0 && errno == ENOENT);
    close(dirfd);
}

/* ---- hostile layers and bases ---- */

/* A layered map "h" over a base of keys k000000.. (every third of 30), with a put, an
 * overwrite and a deletion in its delta; its layer file's bytes in *p (malloc'ed). */
static unsigned char *hostile_layer(size_t *n, char *base_file) {
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    unsigned char k[16];
    for (int i = 0; i < 30; i += 3) {
        sm_value v = sm_value_int(i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, k, key_of(SM_KEYS_STR, i, k), &v));
    }
    ASSERT_OK(sm_publish(b, test_dir(), "h", SM_FORCE, 0));
    sm_builder_free(b);
    sm_edit *e;
    sm_edit_opts o = SM_EDIT_OPTS_INIT;
    o.compact_ratio = -1;
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "h", &o));
    sm_value v = sm_value_int(-1);
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, k, key_of(SM_KEYS_STR, 4, k), &v));
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, k, key_of(SM_KEYS_STR, 6, k), &v));
    ASSERT_OK(sm_edit_del(e, k, key_of(SM_KEYS_STR, 9, k)));
    ASSERT_OK(sm_edit_commit(e, NULL));
    sm_edit_free(e);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "h"));
    sm_layer_info li;
    ASSERT_EQ(sm_reader_layer(r, &li), 1);
    ASSERT_EQ(li.delta_records, 3);
    if (base_file)
        strcpy(base_file, li.base_file);
    size_t size;
    const void *data = sm_reader_data(r, &size);
    unsigned char *p = xmemdup(data, size);
    sm_reader_close(r);
    *n = size;
    return p;
}

/* A base that is missing, damaged (whatever its own error) or another snapshot under its
 * name: SM_EBASE, never the layer's own header error, and sm_set_diagnose tells the base's. */
TEST(layer_base_missing_or_altered) {
    char bname[NAME_MAX + 1];
    size_t n;
    free(hostile_layer(&n, bname));
    const char *bpath = test_path(bname);
    int fd = open(bpath, O_RDWR);
    ASSERT(fd >= 0);
    struct stat st;
    ASSERT(fstat(fd, &st) == 0);
    unsigned char *orig = xmalloc((size_t)st.st_size);
    ASSERT_EQ(pread(fd, orig, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    sm_reader *r;
    uint64_t shard;
    int why;
    /* its header damaged: the base's own error is SM_EHEADER */
    unsigned char *bad = xmemdup(orig, (size_t)st.st_size);
    bad[SMF_OFF_HEADER_SUM] ^= 1;
    test_write_file(bpath, bad, (size_t)st.st_size);
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), "h"), SM_EBASE);
    ASSERT_ERR(sm_set_diagnose(test_path("sharedmap.h"), &shard, &why), SM_EBASE);
    ASSERT_EQ(why, SM_EHEADER);
    /* truncated */
    test_write_file(bpath, orig, (size_t)st.st_size - 1);
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), "h"), SM_EBASE);
    /* a valid snapshot, but not the one named (its created changed, its sum made right) */
    memcpy(bad, orig, (size_t)st.st_size);
    bad[SMF_OFF_CREATED] ^= 1; /* the same entries, another header */
    smf_put64(bad + SMF_OFF_HEADER_SUM, sm_hash64(bad, SMF_OFF_HEADER_SUM, 0));
    test_write_file(bpath, bad, (size_t)st.st_size);
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), "h"), SM_EBASE);
    ASSERT_ERR(sm_set_diagnose(test_path("sharedmap.h"), &shard, &why), SM_EBASE);
    ASSERT_EQ(why, SM_EBASE);
    /* missing */
    ASSERT(unlink(bpath) == 0);
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), "h"), SM_EBASE);
    ASSERT_ERR(sm_set_diagnose(test_path("sharedmap.h"), &shard, &why), SM_EBASE);
    ASSERT_EQ(why, -ENOENT);
    /* back as it was */
    test_write_file(bpath, orig, (size_t)st.st_size);
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "h"));
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);
    free(bad);
    free(orig);
}

/* The layer's body and header checksums made right again after a change. */
static void layer_resum(unsigned char *p, size_t n) {
    smf_put64(p + SMF_OFF_BODY_SUM, sm_hash64(p + SMF_HEADER_SIZE, n - SMF_HEADER_SIZE, 0));
    smf_put64(p + SMF_OFF_HEADER_SUM, sm_hash64(p, SMF_OFF_HEADER_SUM, 0));
}

/* Hostile index entries (checksums made right): every read function answers or says
 * SM_ECORRUPT, with no arithmetic that overflows (UBSan) nor a read out of bounds. */
TEST(layer_hostile_index) {
    size_t n;
    unsigned char *good = hostile_layer(&n, NULL);
    uint64_t ioff = smf_le64(good + SML_OFF_INDEX);
    const uint64_t vals[] = {0, 1, 2, 3, 100, (uint64_t)INT64_MAX, (uint64_t)INT64_MIN,
                             (uint64_t)INT64_MIN + 1, UINT64_MAX, UINT64_MAX - 1, (uint64_t)INT64_MAX - 1};
    size_t nv = sizeof vals / sizeof *vals;
    unsigned char k[16];
    for (unsigned field = 0; field < 3 * 2; field++) {
        for (size_t vi = 0; vi < nv; vi++) {
            unsigned char *p = xmemdup(good, n);
            smf_put64(p + ioff + (field / 2) * SML_INDEX_ENTRY + (field % 2) * 8, vals[vi]);
            layer_resum(p, n);
            test_write_file(test_path("sharedmap.h"), p, n);
            sm_reader *r;
            ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "h"));
            uint64_t count = sm_reader_count(r), b0, b1, rank;
            for (uint64_t q = 0; q <= count; q++) {
                sm_cursor c;
                sm_entry ent;
                if (sm_seek_rank(r, q, &c) == 0)
                    (void)sm_cursor_read(&c, &ent);
            }
            for (int i = 0; i < 31; i++) {
                sm_cursor c;
                sm_entry batch[8];
                size_t got;
                size_t kl = key_of(SM_KEYS_STR, i, k);
                if (sm_seek_key(r, k, kl, SM_GE, &c) == 0)
                    (void)sm_cursor_read_many(&c, batch, 8, &got);
                (void)sm_rank(r, k, kl, &rank);
                (void)sm_get(r, k, kl, NULL);
            }
            (void)sm_prefix_range(r, "k00001", 6, &b0, &b1);
            (void)sm_prefix_range(r, "", 0, &b0, &b1);
            int vr = sm_reader_verify(r);
            if (vals[vi] != smf_le64(good + ioff + (field / 2) * SML_INDEX_ENTRY + (field % 2) * 8))
                ASSERT_EQ(vr, SM_ECORRUPT);
            sm_reader_close(r);
            /* an edit over it: a bad index is refused (or the result still verifies) */
            sm_edit *e;
            sm_edit_opts o = SM_EDIT_OPTS_INIT;
            o.compact_ratio = -1; /* the base stays for the next round */
            ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "h", &o));
            sm_value v = sm_value_int(5);
            ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, "k000001", 7, &v));
            int rc = sm_edit_commit(e, NULL);
            sm_edit_free(e);
            if (rc == 0 && sm_reader_open_shm(&r, test_dir(), "h") == 0) {
                if (vr == 0)
                    ASSERT_OK(sm_reader_verify(r));
                sm_reader_close(r);
            }
            free(p);
        }
    }
    free(good);
}

/* A layered map's reader is refused by sm_set_publish/sm_set_save (its bytes are a layer file,
 * whose base the set would not hold: the set published was unreadable, SM_ESHARD), and nothing
 * is published. */
TEST(layer_set_publish_refused) {
    size_t n;
    free(hostile_layer(&n, NULL));
    sm_reader *r, *s;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "h"));
    ASSERT_ERR(sm_set_publish(r, test_dir(), "hs", 0, 0), -EINVAL);
    ASSERT_ERR(sm_reader_open_shm(&s, test_dir(), "hs"), -ENOENT);
    ASSERT_ERR(sm_set_save(r, test_path("hs.set"), 0, 0), -EINVAL);
    ASSERT_ERR(sm_reader_open_file(&s, test_path("hs.set")), -ENOENT);
    ASSERT(!strstr(test_listing(test_dir()), ".sharedmap-tmp."));
    sm_reader_close(r);
}

/* FORMAT.md §13.12, the worked example: {"a": 1, "b": 2, "c": 3} edited (b = 20, c deleted,
 * d = 4) is this layer file, byte for byte, once the created of the layer and its delta are
 * made 1700000000000000000 (and their checksums right again). */
static const unsigned char format_example[] = {
  0x89, 0x53, 0x4d, 0x50, 0x0d, 0x0a, 0x1a, 0x0a, 0x0d, 0x0c, 0x0b, 0x0a,
  0x01, 0x00, 0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x40, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x2a, 0x36, 0xfe, 0x9c, 0x97, 0x17, 0x6c, 0xb7, 0xe1, 0x65,
  0x65, 0x1a, 0x81, 0x0f, 0x16, 0xbd, 0xb5, 0x1f, 0x4d, 0x8d, 0x11, 0xd7,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x10, 0xb9, 0xd9, 0x8d, 0xf5, 0x35, 0x0e, 0x99, 0xab, 0x2e, 0xd3, 0x34,
  0xe9, 0xe4, 0x44, 0x3e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x2e, 0x73, 0x68, 0x61, 0x72, 0x65, 0x64, 0x6d, 0x61, 0x70, 0x2d, 0x62,
  0x61, 0x73, 0x65, 0x2e, 0x33, 0x65, 0x34, 0x34, 0x65, 0x34, 0x65, 0x39,
  0x33, 0x34, 0x64, 0x33, 0x32, 0x65, 0x61, 0x62, 0x2e, 0x73, 0x68, 0x61,
  0x72, 0x65, 0x64, 0x6d, 0x61, 0x70, 0x2e, 0x65, 0x78, 0x00, 0x00, 0x00,
  0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, 0x00,
  0x00, 0x40, 0x28, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x24, 0x00, 0x84, 0x00,
  0x00, 0x00, 0x80, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40,
  0x89, 0x53, 0x4d, 0x50, 0x0d, 0x0a, 0x1a, 0x0a, 0x0d, 0x0c, 0x0b, 0x0a,
  0x01, 0x00, 0x80, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x02, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x8b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x2a, 0x36, 0xfe, 0x9c, 0x97, 0x17, 0xce, 0x0b, 0xe0, 0x81,
  0x8e, 0xe3, 0xf2, 0x1c, 0xa2, 0xc8, 0x64, 0x3f, 0x57, 0x87, 0x6e, 0x4c,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x13, 0x62, 0x14,
  0x01, 0x07, 0x63, 0x01, 0x13, 0x64, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x9b, 0x00, 0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe4, 0x01,
  0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0xed, 0x01
};

TEST(layer_format_example) {
    const uint64_t t0 = UINT64_C(1700000000000000000);
    sm_builder *b;
    ASSERT_OK(sm_builder_new(&b));
    const char *keys = "abc";
    for (int i = 0; i < 3; i++) {
        sm_value v = sm_value_int(i + 1);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, keys + i, 1, &v));
    }
    size_t bn;
    unsigned char *base = snapshot_of(b, &bn, t0);
    sm_builder_free(b);
    test_write_file(test_path("sharedmap.ex"), base, bn);
    sm_edit *e;
    sm_edit_opts o = SM_EDIT_OPTS_INIT;
    o.compact_ratio = -1;
    ASSERT_OK(sm_edit_open_shm(&e, test_dir(), "ex", &o));
    sm_value v = sm_value_int(20);
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, "b", 1, &v));
    ASSERT_OK(sm_edit_del(e, "c", 1));
    v = sm_value_int(4);
    ASSERT_OK(sm_edit_put(e, SM_KEYS_STR, "d", 1, &v));
    ASSERT_OK(sm_edit_commit(e, NULL));
    sm_edit_free(e);
    sm_reader *r;
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "ex"));
    size_t n;
    const void *data = sm_reader_data(r, &n);
    unsigned char *p = xmemdup(data, n);
    sm_layer_info li;
    ASSERT_EQ(sm_reader_layer(r, &li), 1);
    ASSERT_STR_EQ(li.base_file, ".sharedmap-base.3e44e4e934d32eab.sharedmap.ex");
    sm_reader_close(r);
    uint64_t doff = smf_le64(p + SML_OFF_DELTA);
    ASSERT(doff <= n - SMF_HEADER_SIZE);
    smf_put64(p + doff + SMF_OFF_CREATED, t0);
    smf_put64(p + doff + SMF_OFF_HEADER_SUM, sm_hash64(p + doff, SMF_OFF_HEADER_SUM, 0));
    smf_put64(p + SMF_OFF_CREATED, t0);
    layer_resum(p, n);
    ASSERT_MEM_EQ(p, n, format_example, sizeof format_example);
    /* and it reads as the doc says, with the base beside it */
    test_write_file(test_path("sharedmap.ex"), format_example, sizeof format_example);
    ASSERT_OK(sm_reader_open_shm(&r, test_dir(), "ex"));
    ASSERT_OK(sm_reader_verify(r));
    ASSERT_EQ(sm_reader_count(r), 3);
    uint64_t rank;
    ASSERT_OK(sm_rank(r, "d", 1, &rank));
    ASSERT_EQ(rank, 2);
    ASSERT_ERR(sm_get(r, "c", 1, NULL), SM_NOTFOUND);
    ASSERT_OK(sm_get(r, "b", 1, &v));
    ASSERT_EQ(v.as.i, 20);
    sm_reader_close(r);
    free(p);
    free(base);
}

/* The rename of a commit replaces only the version the edit began from: a file put under the
 * name after the commit's first check is put back, and the commit's own file does not stay
 * (smi_install_over, the last step of every commit). */
TEST(layer_install_over_only_the_expected) {
    int dirfd = open(test_dir(), O_RDONLY | O_DIRECTORY);
    ASSERT(dirfd >= 0);
    test_write_file(test_path("sharedmap.x"), "old", 3);
    struct stat old;
    ASSERT(fstatat(dirfd, "sharedmap.x", &old, 0) == 0);
    /* another publisher's file took the name: ours goes, theirs stays */
    test_write_file(test_path("sharedmap.x"), "theirs", 6);
    test_write_file(test_path("ours.tmp"), "ours", 4);
    smi_expect x = {1, (uint64_t)old.st_dev, (uint64_t)old.st_ino};
    struct stat now;
    ASSERT(fstatat(dirfd, "sharedmap.x", &now, 0) == 0);
    if (now.st_ino == old.st_ino) { /* the file was rewritten in place: make it another inode */
        unlinkat(dirfd, "sharedmap.x", 0);
        test_write_file(test_path("sharedmap.x"), "theirs", 6);
        ASSERT(fstatat(dirfd, "sharedmap.x", &now, 0) == 0);
    }
    ASSERT_ERR(smi_install_over(dirfd, "ours.tmp", "sharedmap.x", &x), SM_ECONFLICT);
    struct stat st;
    ASSERT(fstatat(dirfd, "sharedmap.x", &st, 0) == 0 && st.st_ino == now.st_ino);
    ASSERT(fstatat(dirfd, "ours.tmp", &st, 0) < 0 && errno == ENOENT);
    /* the name gone: a conflict too, and ours not left there */
    unlinkat(dirfd, "sharedmap.x", 0);
    test_write_file(test_path("ours.tmp"), "ours", 4);
    ASSERT_ERR(smi_install_over(dirfd, "ours.tmp", "sharedmap.x", &x), SM_ECONFLICT);
    ASSERT(fstatat(dirfd, "sharedmap.x", &st, 0) < 0 && errno == ENOENT);
    unlinkat(dirfd, "ours.tmp", 0);
    /* the expected file: replaced */
    test_write_file(test_path("sharedmap.x"), "old", 3);
    ASSERT(fstatat(dirfd, "sharedmap.x", &old, 0) == 0);
    x.dev = (uint64_t)old.st_dev;
    x.ino = (uint64_t)old.st_ino;
    test_write_file(test_path("ours.tmp"), "ours", 4);
    ASSERT(fstatat(dirfd, "ours.tmp", &now, 0) == 0);
    ASSERT_OK(smi_install_over(dirfd, "ours.tmp", "sharedmap.x", &x));
    ASSERT(fstatat(dirfd, "sharedmap.x", &st, 0) == 0 && st.st_ino == now.st_ino);
    ASSERT(fstatat(dirfd, "ours.tmp", &st, 0) < 0 && errno == ENOENT);
    unlinkat(dirfd, "sharedmap.x", 0);
    close(dirfd);
}

