/* cbench.c: C-level lookups of sharedmap next to the DRAM latency limit, tinycdb and LMDB.
 *
 * For each size N (default 1M and 10M) one dataset is made from a seed (keys random ASCII 8-24
 * bytes, values 8-48 bytes, the same distribution as the Python benchmark), then, in this one
 * process and run:
 *   sharedmap  sm_builder_put x N, sm_publish to /dev/shm, sm_reader_open_shm, sm_get
 *   chase      a random cyclic permutation of 64-byte-spaced pointers over a buffer as large as
 *              the snapshot (4 KiB pages, like the snapshot's tmpfs mapping): ns per dependent
 *              load, i.e. one random DRAM access with its TLB miss
 *   cdb        tinycdb: cdb_make_* into a file in /dev/shm, cdb_init (mmap), cdb_find
 *   lmdb       LMDB: an environment file in /dev/shm, sorted MDB_APPEND puts, mdb_get in one
 *              read-only transaction
 * Probe keys are copies in their own buffer (not the inserted bytes), in random order; hits and
 * misses (fresh random keys) are timed separately, each lookup also reads the value's first and
 * last byte.  Rounds alternate the contenders so drifting machine load hits all alike; each figure
 * is the median over rounds.  Prints one JSON object on stdout.
 *
 *   cbench [-n 1000000,10000000] [-p probes] [-r rounds] [-d dir] [-s seed]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cdb.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sharedmap.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static uint64_t rng_state;

static uint64_t splitmix64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return splitmix64() % n; }

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "cbench: %s: %s\n", what, msg);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1); /* zeroed: keeps -Wmaybe-uninitialized quiet, and cheap */
    if (!p)
        die("malloc", strerror(errno));
    return p;
}

/* A set of byte strings in one arena. */
typedef struct strs {
    char *arena;
    uint64_t *off; /* count + 1 offsets */
    size_t count;
} strs;

static const char *str_at(const strs *s, size_t i, size_t *len) {
    *len = (size_t)(s->off[i + 1] - s->off[i]);
    return s->arena + s->off[i];
}

static void random_strs(strs *s, size_t count, unsigned minlen, unsigned maxlen) {
    s->count = count;
    s->off = xmalloc((count + 1) * sizeof *s->off);
    size_t cap = count * (size_t)(minlen + maxlen) / 2 + 64, used = 0;
    s->arena = xmalloc(cap);
    s->off[0] = 0;
    for (size_t i = 0; i < count; i++) {
        unsigned len = minlen + (unsigned)below(maxlen - minlen + 1);
        if (used + len > cap) {
            cap = cap * 3 / 2 + len;
            s->arena = realloc(s->arena, cap);
            if (!s->arena)
                die("realloc", strerror(errno));
        }
        uint64_t bits = 0;
        for (unsigned j = 0; j < len; j++) {
            if (j % 10 == 0)
                bits = splitmix64();
            s->arena[used + j] = ALPHABET[bits & 63];
            bits >>= 6;
        }
        used += len;
        s->off[i + 1] = used;
    }
}

/* Copies of chosen strings into a fresh arena, so probes never share memory with the data. */
typedef struct probe {
    const char *p;
    size_t len;
} probe;

static probe *make_probes(const strs *src, const size_t *idx, size_t count, char **arena_out) {
    size_t total = 0, len = 0;
    for (size_t i = 0; i < count; i++) {
        str_at(src, idx[i], &len);
        total += len;
    }
    char *arena = xmalloc(total);
    probe *pr = xmalloc(count * sizeof *pr);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        const char *p = str_at(src, idx[i], &len);
        if (!p)
            die("probe", "no key");
        memcpy(arena + used, p, len);
        pr[i].p = arena + used;
        pr[i].len = len;
        used += len;
    }
    *arena_out = arena;
    return pr;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *xs, int n) {
    qsort(xs, (size_t)n, sizeof *xs, cmp_double);
    return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

static volatile uint64_t sink;

/* ------------------------------------------------------------------ sharedmap */

static double time_sm(const sm_reader *r, const probe *pr, size_t count, size_t *found) {
    uint64_t acc = 0;
    size_t f = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < count; i++) {
        sm_value v;
        if (sm_get(r, pr[i].p, pr[i].len, &v) == 0) {
            const unsigned char *d = v.as.buf.data;
            acc += v.as.buf.size + d[0] + d[v.as.buf.size - 1];
            f++;
        }
    }
    double t = now_ns() - t0;
    sink += acc;
    *found = f;
    return t / (double)count;
}

/* ------------------------------------------------------------------ pointer chase */

typedef struct chase {
    unsigned char *buf;
    size_t len;
    void **start;
} chase;

static void chase_build(chase *c, size_t bytes) {
    size_t slots = bytes / 64;
    if (slots < 2)
        slots = 2;
    c->len = slots * 64;
    c->buf = mmap(NULL, c->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c->buf == MAP_FAILED)
        die("mmap", strerror(errno));
#ifdef MADV_NOHUGEPAGE
    madvise(c->buf, c->len, MADV_NOHUGEPAGE); /* 4 KiB pages, as the snapshot's tmpfs mapping has */
#endif
    /* Sattolo's algorithm: a single cycle through every slot. */
    uint32_t *perm = xmalloc(slots * sizeof *perm);
    for (size_t i = 0; i < slots; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = slots - 1; i > 0; i--) {
        size_t j = (size_t)below(i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < slots; i++)
        *(void **)(c->buf + (size_t)i * 64) = c->buf + (size_t)perm[i] * 64;
    free(perm);
    c->start = (void **)c->buf;
}

static double time_chase(chase *c, size_t steps) {
    void **p = c->start;
    double t0 = now_ns();
    for (size_t i = 0; i < steps; i++)
        p = (void **)*p;
    double t = now_ns() - t0;
    c->start = p;
    sink += (uint64_t)(uintptr_t)p;
    return t / (double)steps;
}

/* ------------------------------------------------------------------ tinycdb */

static double time_cdb(struct cdb *db, const probe *pr, size_t count, size_t *found) {
    uint64_t acc = 0;
    size_t f = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < count; i++) {
        if (cdb_find(db, pr[i].p, (unsigned)pr[i].len) > 0) {
            const unsigned char *d = cdb_getdata(db);
            unsigned n = cdb_datalen(db);
            acc += n + d[0] + d[n - 1];
            f++;
        }
    }
    double t = now_ns() - t0;
    sink += acc;
    *found = f;
    return t / (double)count;
}

/* ------------------------------------------------------------------ LMDB */

static const strs *sort_keys;
static int cmp_key_idx(const void *a, const void *b) {
    size_t la, lb;
    const char *pa = str_at(sort_keys, *(const size_t *)a, &la);
    const char *pb = str_at(sort_keys, *(const size_t *)b, &lb);
    int c = memcmp(pa, pb, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static double time_lmdb(MDB_txn *txn, MDB_dbi dbi, const probe *pr, size_t count, size_t *found) {
    uint64_t acc = 0;
    size_t f = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < count; i++) {
        MDB_val k = {pr[i].len, (void *)pr[i].p}, v;
        if (mdb_get(txn, dbi, &k, &v) == 0) {
            const unsigned char *d = v.mv_data;
            acc += v.mv_size + d[0] + d[v.mv_size - 1];
            f++;
        }
    }
    double t = now_ns() - t0;
    sink += acc;
    *found = f;
    return t / (double)count;
}

#define CHECK_MDB(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            die(#call, mdb_strerror(rc_));                                                         \
    } while (0)

/* ------------------------------------------------------------------ one size */

/* The probes of a size: hits = copies of random keys of the map (with replacement), misses =
 * fresh random keys; *idx (free it) is left as the identity.  cbench and cbatch draw them the
 * same way, so that one seed gives both the same probes. */
static void hit_and_miss_probes(const strs *keys, size_t n, size_t nprobes, size_t **idx_out,
                                probe **hits, char **hit_arena, probe **misses, char **miss_arena) {
    size_t *idx = xmalloc(nprobes * sizeof *idx);
    for (size_t i = 0; i < nprobes; i++)
        idx[i] = (size_t)below(n);
    *hits = make_probes(keys, idx, nprobes, hit_arena);
    strs misskeys;
    random_strs(&misskeys, nprobes, 8, 24);
    for (size_t i = 0; i < nprobes; i++)
        idx[i] = i;
    *misses = make_probes(&misskeys, idx, nprobes, miss_arena);
    free(misskeys.arena);
    free(misskeys.off);
    *idx_out = idx;
}

/* A builder holding the n pairs keys[i] -> vals[i] (bytes values), and the seconds its
 * filling took, in *fill_s. */
static sm_builder *fill_builder(const strs *keys, const strs *vals, size_t n, double *fill_s) {
    sm_builder *b;
    int rc = sm_builder_new(&b);
    if (rc)
        die("sm_builder_new", sm_strerror(rc));
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        size_t kl, vl;
        const char *k = str_at(keys, i, &kl), *v = str_at(vals, i, &vl);
        sm_value val = sm_value_bytes(v, vl);
        if ((rc = sm_builder_put(b, SM_KEYS_BYTES, k, kl, &val)))
            die("sm_builder_put", sm_strerror(rc));
    }
    *fill_s = (now_ns() - t0) / 1e9;
    return b;
}

/* cbatch.c includes this file for the helpers above, with CBENCH_HELPERS_ONLY defined. */
#ifndef CBENCH_HELPERS_ONLY
static void bench_size(size_t n, size_t nprobes, int rounds, const char *dir, uint64_t seed,
                       int first) {
    char path[4096], name[64];
    double t0;
    rng_state = seed * 1000003u + n;

    strs keys, vals;
    t0 = now_ns();
    random_strs(&keys, n, 8, 24);
    random_strs(&vals, n, 8, 48);
    double gen_s = (now_ns() - t0) / 1e9;
    size_t data_bytes = (size_t)(keys.off[n] + vals.off[n]);

    /* probes: hits = random indices (with replacement), misses = fresh random keys */
    size_t *idx;
    char *hit_arena, *miss_arena;
    probe *hits, *misses;
    hit_and_miss_probes(&keys, n, nprobes, &idx, &hits, &hit_arena, &misses, &miss_arena);

    /* ---- sharedmap: build, publish, attach */
    int rc;
    double sm_fill_s;
    sm_builder *b = fill_builder(&keys, &vals, n, &sm_fill_s);
    size_t entries = sm_builder_count(b);
    snprintf(name, sizeof name, "smbench-c-%zu", n);
    t0 = now_ns();
    rc = sm_publish(b, dir, name, SM_FORCE, 0);
    if (rc)
        die("sm_publish", sm_strerror(rc));
    double sm_publish_s = (now_ns() - t0) / 1e9;
    sm_builder_free(b);
    sm_reader *r;
    t0 = now_ns();
    rc = sm_reader_open_shm(&r, dir, name);
    if (rc)
        die("sm_reader_open_shm", sm_strerror(rc));
    double sm_open_us = (now_ns() - t0) / 1e3;
    sm_info info;
    sm_reader_info(r, &info);
    /* drop miss probes that happen to be keys (vanishingly rare) */
    size_t nmiss = 0;
    for (size_t i = 0; i < nprobes; i++)
        if (sm_get(r, misses[i].p, misses[i].len, NULL) != 0)
            misses[nmiss++] = misses[i];

    /* ---- pointer chase over a buffer of the snapshot's size */
    chase ch;
    chase_build(&ch, (size_t)info.size);
    size_t chase_steps = nprobes;

    /* ---- tinycdb */
    snprintf(path, sizeof path, "%s/smbench-c-%zu.cdb", dir, n);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(path, strerror(errno));
    struct cdb_make cm;
    t0 = now_ns();
    cdb_make_start(&cm, fd);
    for (size_t i = 0; i < n; i++) {
        size_t kl, vl;
        const char *k = str_at(&keys, i, &kl), *v = str_at(&vals, i, &vl);
        if (cdb_make_add(&cm, k, (unsigned)kl, v, (unsigned)vl) != 0)
            die("cdb_make_add", strerror(errno));
    }
    if (cdb_make_finish(&cm) != 0)
        die("cdb_make_finish", strerror(errno));
    double cdb_build_s = (now_ns() - t0) / 1e9;
    close(fd);
    fd = open(path, O_RDONLY);
    struct cdb db;
    if (fd < 0 || cdb_init(&db, fd) != 0)
        die("cdb_init", strerror(errno));
    struct stat st;
    fstat(fd, &st);
    size_t cdb_size = (size_t)st.st_size;

    /* ---- LMDB */
    snprintf(path, sizeof path, "%s/smbench-c-%zu.lmdb", dir, n);
    unlink(path);
    char lockpath[4200];
    snprintf(lockpath, sizeof lockpath, "%s-lock", path);
    unlink(lockpath);
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    size_t *order = xmalloc(n * sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    t0 = now_ns();
    sort_keys = &keys;
    qsort(order, n, sizeof *order, cmp_key_idx);
    CHECK_MDB(mdb_env_create(&env));
    CHECK_MDB(mdb_env_set_mapsize(env, (size_t)data_bytes * 4 + (size_t)n * 64 + (64u << 20)));
    CHECK_MDB(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_WRITEMAP, 0600));
    CHECK_MDB(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK_MDB(mdb_dbi_open(txn, NULL, 0, &dbi));
    size_t lmdb_dups = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kl, vl;
        const char *k = str_at(&keys, order[i], &kl), *v = str_at(&vals, order[i], &vl);
        MDB_val mk = {kl, (void *)k}, mv = {vl, (void *)v};
        rc = mdb_put(txn, dbi, &mk, &mv, MDB_APPEND);
        if (rc == MDB_KEYEXIST) {
            lmdb_dups++;
            continue;
        }
        if (rc)
            die("mdb_put", mdb_strerror(rc));
    }
    CHECK_MDB(mdb_txn_commit(txn));
    double lmdb_build_s = (now_ns() - t0) / 1e9;
    free(order);
    MDB_envinfo ei;
    MDB_stat ms;
    mdb_env_info(env, &ei);
    mdb_env_stat(env, &ms);
    size_t lmdb_size = (size_t)(ei.me_last_pgno + 1) * ms.ms_psize;
    CHECK_MDB(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));

    /* ---- rounds */
    double *sm_hit = xmalloc(sizeof(double) * (size_t)rounds), *sm_miss = xmalloc(sizeof(double) * (size_t)rounds);
    double *ch_ns = xmalloc(sizeof(double) * (size_t)rounds);
    double *cdb_hit = xmalloc(sizeof(double) * (size_t)rounds), *cdb_miss = xmalloc(sizeof(double) * (size_t)rounds);
    double *lm_hit = xmalloc(sizeof(double) * (size_t)rounds), *lm_miss = xmalloc(sizeof(double) * (size_t)rounds);
    size_t f_sm = 0, f_smm = 0, f_cdb = 0, f_cdbm = 0, f_lm = 0, f_lmm = 0;
    for (int i = 0; i < rounds; i++) {
        sm_hit[i] = time_sm(r, hits, nprobes, &f_sm);
        sm_miss[i] = time_sm(r, misses, nmiss, &f_smm);
        ch_ns[i] = time_chase(&ch, chase_steps);
        cdb_hit[i] = time_cdb(&db, hits, nprobes, &f_cdb);
        cdb_miss[i] = time_cdb(&db, misses, nmiss, &f_cdbm);
        lm_hit[i] = time_lmdb(txn, dbi, hits, nprobes, &f_lm);
        lm_miss[i] = time_lmdb(txn, dbi, misses, nmiss, &f_lmm);
    }
    int ok = f_sm == nprobes && f_smm == 0 && f_cdb == nprobes && f_cdbm == 0 &&
             f_lm == nprobes && f_lmm == 0;

    printf("%s\"%zu\": {\"entries\": %zu, \"data_bytes_per_entry\": %.2f, \"gen_s\": %.3f, "
           "\"probes\": %zu, \"rounds\": %d, \"all_found\": %s,\n",
           first ? "" : ",\n", n, entries, (double)data_bytes / (double)n, gen_s, nprobes, rounds,
           ok ? "true" : "false");
    printf("  \"sharedmap\": {\"hit_ns\": %.1f, \"miss_ns\": %.1f, \"fill_s\": %.3f, \"publish_s\": %.3f, "
           "\"open_us\": %.1f, \"size\": %llu, \"bytes_per_entry\": %.2f},\n",
           median(sm_hit, rounds), median(sm_miss, rounds), sm_fill_s, sm_publish_s, sm_open_us,
           (unsigned long long)info.size, (double)info.size / (double)n);
    printf("  \"chase\": {\"ns\": %.1f, \"buffer_bytes\": %zu, \"steps\": %zu},\n", median(ch_ns, rounds),
           ch.len, chase_steps);
    printf("  \"cdb\": {\"hit_ns\": %.1f, \"miss_ns\": %.1f, \"build_s\": %.3f, \"size\": %zu, "
           "\"bytes_per_entry\": %.2f},\n",
           median(cdb_hit, rounds), median(cdb_miss, rounds), cdb_build_s, cdb_size,
           (double)cdb_size / (double)n);
    printf("  \"lmdb\": {\"hit_ns\": %.1f, \"miss_ns\": %.1f, \"build_s\": %.3f, \"size\": %zu, "
           "\"bytes_per_entry\": %.2f, \"duplicates_skipped\": %zu}}",
           median(lm_hit, rounds), median(lm_miss, rounds), lmdb_build_s, lmdb_size,
           (double)lmdb_size / (double)n, lmdb_dups);
    fflush(stdout);

    mdb_txn_abort(txn);
    mdb_env_close(env);
    unlink(path);
    unlink(lockpath);
    cdb_free(&db);
    close(fd);
    snprintf(path, sizeof path, "%s/smbench-c-%zu.cdb", dir, n);
    unlink(path);
    sm_reader_close(r);
    sm_unpublish(dir, name);
    munmap(ch.buf, ch.len);
    free(sm_hit); free(sm_miss); free(ch_ns); free(cdb_hit); free(cdb_miss); free(lm_hit); free(lm_miss);
    free(hits); free(misses); free(hit_arena); free(miss_arena); free(idx);
    free(keys.arena); free(keys.off); free(vals.arena); free(vals.off);
}

int main(int argc, char **argv) {
    const char *sizes = "1000000,10000000", *dir = "/dev/shm";
    size_t nprobes = 1000000;
    int rounds = 5;
    uint64_t seed = 1;
    int opt;
    while ((opt = getopt(argc, argv, "n:p:r:d:s:")) != -1) {
        switch (opt) {
        case 'n': sizes = optarg; break;
        case 'p': nprobes = (size_t)strtoull(optarg, NULL, 10); break;
        case 'r': rounds = atoi(optarg); break;
        case 'd': dir = optarg; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: cbench [-n sizes] [-p probes] [-r rounds] [-d dir] [-s seed]\n");
            return 2;
        }
    }
    if (rounds < 1 || nprobes < 1)
        die("arguments", "rounds and probes must be >= 1");
    printf("{\"dir\": \"%s\", \"sizes\": {\n", dir);
    char *list = strdup(sizes), *save = NULL;
    int first = 1;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t n = (size_t)strtoull(tok, NULL, 10);
        if (n < 1)
            continue;
        bench_size(n, nprobes, rounds, dir, seed, first);
        first = 0;
    }
    printf("}}\n");
    free(list);
    return 0;
}
#endif /* CBENCH_HELPERS_ONLY */
