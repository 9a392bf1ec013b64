/* cbatch.c: batched lookups in C, ns per key: sm_get_many (group prefetching) against a sm_get
 * loop, tinycdb, LMDB and the DRAM limit, and the sweep of the prefetch window that decides
 * SM_GET_MANY_WINDOW.  The batched-lookups part of the benchmark (bench/README.md).
 *
 * It includes cbench.c for its helpers (the dataset, probes, pointer chase, the cdb and LMDB
 * loops), so the data, the probes and the contenders are cbench's own:
 *   str sizes (-n, default 10M): cbench's dataset (keys random ASCII 8-24 bytes, values 8-48
 *       bytes, the same seed gives the same keys), published to /dev/shm; contenders
 *         sm_get      one key at a time (cbench's loop)
 *         get_many    sm_get_many() in batches of -b keys (default 1000), the public window
 *         window W    smi_get_many(..., W) for W = 1, 2, 4, ..., 64 (the same batches)
 *         cdb, lmdb   cdb_find / mdb_get loops (cbench's), on files in /dev/shm
 *         chase       a random pointer chase over a buffer of the snapshot's size: one DRAM
 *                     access with its TLB miss (cbench's)
 *   int sizes (-i, default 10M): random int64 keys with int values (SM_KEYS_INT): sm_get of
 *       sm_key_int() bytes, sm_get_many_int() and the window sweep, and the chase.
 * Every lookup also reads its value (the first and last byte of a bytes value, an int's
 * number); hits are random keys of the map (copies, in their own buffer), misses fresh random
 * keys.  Rounds alternate the contenders; each figure is the median over rounds.  Prints one
 * JSON object on stdout.
 *
 *   cbatch [-n 10000000] [-i 10000000] [-p probes] [-r rounds] [-b batch] [-d dir] [-s seed]
 *   (an empty -n or -i list skips that key kind)
 */
#define CBENCH_HELPERS_ONLY
#include "cbench.c"

#include "internal.h" /* smi_get_many: the window as a parameter */

static const size_t WINDOWS[] = {1, 2, 4, 8, 16, 32, 64};
#define NWIN (sizeof WINDOWS / sizeof WINDOWS[0])

/* Batches of `batch` keys through sm_get_many (public: window SM_GET_MANY_WINDOW) or
 * smi_get_many with `window`; str keys in bufs or int keys in ikeys. */
static double time_many(const sm_reader *r, const sm_buf *bufs, const int64_t *ikeys, size_t count,
                        size_t batch, size_t window, int public_api, size_t *found) {
    static sm_value *vals;
    static int *st;
    static size_t cap;
    if (cap < batch) {
        free(vals);
        free(st);
        vals = xmalloc(batch * sizeof *vals);
        st = xmalloc(batch * sizeof *st);
        cap = batch;
    }
    uint64_t acc = 0;
    size_t f = 0;
    double t0 = now_ns();
    for (size_t start = 0; start < count; start += batch) {
        size_t m = count - start < batch ? count - start : batch;
        int rc;
        if (public_api)
            rc = ikeys ? sm_get_many_int(r, m, ikeys + start, vals, st)
                       : sm_get_many(r, m, bufs + start, vals, st);
        else
            rc = smi_get_many(r, m, ikeys ? NULL : bufs + start, ikeys ? ikeys + start : NULL, vals,
                              st, window);
        if (rc)
            die("sm_get_many", sm_strerror(rc));
        for (size_t j = 0; j < m; j++) {
            if (st[j] != 0)
                continue;
            if (ikeys) {
                acc += (uint64_t)vals[j].as.i;
            } else {
                const unsigned char *d = vals[j].as.buf.data;
                acc += vals[j].as.buf.size + d[0] + d[vals[j].as.buf.size - 1];
            }
            f++;
        }
    }
    double t = now_ns() - t0;
    sink += acc;
    *found = f;
    return t / (double)count;
}

static double time_sm_int(const sm_reader *r, const int64_t *keys, size_t count, size_t *found) {
    uint64_t acc = 0;
    size_t f = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < count; i++) {
        unsigned char kb[SM_INT_KEY_SIZE];
        sm_value v;
        sm_key_int(keys[i], kb);
        if (sm_get(r, kb, SM_INT_KEY_SIZE, &v) == 0) {
            acc += (uint64_t)v.as.i;
            f++;
        }
    }
    double t = now_ns() - t0;
    sink += acc;
    *found = f;
    return t / (double)count;
}

static sm_buf *to_bufs(const probe *pr, size_t count) {
    sm_buf *b = xmalloc(count * sizeof *b);
    for (size_t i = 0; i < count; i++) {
        b[i].data = pr[i].p;
        b[i].size = pr[i].len;
    }
    return b;
}

/* Samples of one contender: rounds x (hit, miss). */
typedef struct samples {
    double *hit, *miss;
} samples;

static samples samples_new(int rounds) {
    samples s = {xmalloc(sizeof(double) * (size_t)rounds), xmalloc(sizeof(double) * (size_t)rounds)};
    return s;
}

static void print_hm(const char *name, samples *s, int rounds, const char *extra, int comma) {
    printf("  \"%s\": {\"hit_ns\": %.2f, \"miss_ns\": %.2f%s}%s\n", name, median(s->hit, rounds),
           median(s->miss, rounds), extra ? extra : "", comma ? "," : "");
    free(s->hit);
    free(s->miss);
}

static void print_windows(samples *win, int rounds) {
    printf("  \"windows\": {");
    for (size_t w = 0; w < NWIN; w++) {
        printf("%s\"%zu\": {\"hit_ns\": %.2f, \"miss_ns\": %.2f}", w ? ", " : "", WINDOWS[w],
               median(win[w].hit, rounds), median(win[w].miss, rounds));
        free(win[w].hit);
        free(win[w].miss);
    }
    printf("},\n");
}

static sm_reader *publish(sm_builder *b, const char *dir, const char *name, double *publish_s,
                          sm_info *info) {
    double t0 = now_ns();
    int rc = sm_publish(b, dir, name, SM_FORCE, 0);
    if (rc)
        die("sm_publish", sm_strerror(rc));
    *publish_s = (now_ns() - t0) / 1e9;
    sm_builder_free(b);
    sm_reader *r;
    rc = sm_reader_open_shm(&r, dir, name);
    if (rc)
        die("sm_reader_open_shm", sm_strerror(rc));
    sm_reader_info(r, info);
    return r;
}

/* ------------------------------------------------------------------ str keys, all contenders */

static void bench_str(size_t n, size_t nprobes, int rounds, size_t batch, const char *dir,
                      uint64_t seed, int first) {
    char path[4096], lockpath[4200], name[64];
    int rc;
    rng_state = seed * 1000003u + n; /* cbench's dataset of this size */
    strs keys, vals;
    random_strs(&keys, n, 8, 24);
    random_strs(&vals, n, 8, 48);
    size_t data_bytes = (size_t)(keys.off[n] + vals.off[n]);
    size_t *idx;
    char *hit_arena, *miss_arena;
    probe *hits, *misses;
    hit_and_miss_probes(&keys, n, nprobes, &idx, &hits, &hit_arena, &misses, &miss_arena);

    /* sharedmap */
    double fill_s, publish_s;
    sm_builder *b = fill_builder(&keys, &vals, n, &fill_s);
    snprintf(name, sizeof name, "smbench-cbatch-str-%zu", n);
    sm_info info;
    sm_reader *r = publish(b, dir, name, &publish_s, &info);
    size_t nmiss = 0;
    for (size_t i = 0; i < nprobes; i++)
        if (sm_get(r, misses[i].p, misses[i].len, NULL) != 0)
            misses[nmiss++] = misses[i];
    sm_buf *hb = to_bufs(hits, nprobes), *mb = to_bufs(misses, nmiss);

    chase ch;
    chase_build(&ch, (size_t)info.size);

    /* tinycdb */
    snprintf(path, sizeof path, "%s/smbench-cbatch-%zu.cdb", dir, n);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(path, strerror(errno));
    struct cdb_make cm;
    cdb_make_start(&cm, fd);
    for (size_t i = 0; i < n; i++) {
        size_t kl, vl;
        const char *k = str_at(&keys, i, &kl), *v = str_at(&vals, i, &vl);
        if (cdb_make_add(&cm, k, (unsigned)kl, v, (unsigned)vl) != 0)
            die("cdb_make_add", strerror(errno));
    }
    if (cdb_make_finish(&cm) != 0)
        die("cdb_make_finish", strerror(errno));
    close(fd);
    fd = open(path, O_RDONLY);
    struct cdb db;
    if (fd < 0 || cdb_init(&db, fd) != 0)
        die("cdb_init", strerror(errno));
    unlink(path); /* the mapping keeps it */

    /* LMDB: sorted MDB_APPEND load, one read txn */
    snprintf(path, sizeof path, "%s/smbench-cbatch-%zu.lmdb", dir, n);
    snprintf(lockpath, sizeof lockpath, "%s-lock", path);
    unlink(path);
    unlink(lockpath);
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    size_t *order = xmalloc(n * sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sort_keys = &keys;
    qsort(order, n, sizeof *order, cmp_key_idx);
    CHECK_MDB(mdb_env_create(&env));
    CHECK_MDB(mdb_env_set_mapsize(env, (size_t)data_bytes * 4 + (size_t)n * 64 + (64u << 20)));
    CHECK_MDB(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_WRITEMAP, 0600));
    CHECK_MDB(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK_MDB(mdb_dbi_open(txn, NULL, 0, &dbi));
    for (size_t i = 0; i < n; i++) {
        size_t kl, vl;
        const char *k = str_at(&keys, order[i], &kl), *v = str_at(&vals, order[i], &vl);
        MDB_val mk = {kl, (void *)k}, mv = {vl, (void *)v};
        rc = mdb_put(txn, dbi, &mk, &mv, MDB_APPEND);
        if (rc && rc != MDB_KEYEXIST)
            die("mdb_put", mdb_strerror(rc));
    }
    CHECK_MDB(mdb_txn_commit(txn));
    free(order);
    CHECK_MDB(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));

    samples s_get = samples_new(rounds), s_many = samples_new(rounds), s_cdb = samples_new(rounds),
            s_lmdb = samples_new(rounds), win[NWIN];
    for (size_t w = 0; w < NWIN; w++)
        win[w] = samples_new(rounds);
    double *s_chase = xmalloc(sizeof(double) * (size_t)rounds);
    size_t f, bad = 0;
#define HIT_MISS(s, i, hit_expr, miss_expr)                                                        \
    do {                                                                                           \
        (s).hit[i] = (hit_expr);                                                                   \
        bad += f != nprobes;                                                                       \
        (s).miss[i] = (miss_expr);                                                                 \
        bad += f != 0;                                                                             \
    } while (0)
    for (int i = 0; i < rounds; i++) {
        HIT_MISS(s_get, i, time_sm(r, hits, nprobes, &f), time_sm(r, misses, nmiss, &f));
        HIT_MISS(s_many, i, time_many(r, hb, NULL, nprobes, batch, 0, 1, &f),
                 time_many(r, mb, NULL, nmiss, batch, 0, 1, &f));
        for (size_t w = 0; w < NWIN; w++)
            HIT_MISS(win[w], i, time_many(r, hb, NULL, nprobes, batch, WINDOWS[w], 0, &f),
                     time_many(r, mb, NULL, nmiss, batch, WINDOWS[w], 0, &f));
        s_chase[i] = time_chase(&ch, nprobes);
        HIT_MISS(s_cdb, i, time_cdb(&db, hits, nprobes, &f), time_cdb(&db, misses, nmiss, &f));
        HIT_MISS(s_lmdb, i, time_lmdb(txn, dbi, hits, nprobes, &f),
                 time_lmdb(txn, dbi, misses, nmiss, &f));
    }
    printf("%s\"%zu\": {\"entries\": %llu, \"probes\": %zu, \"misses\": %zu, \"rounds\": %d, "
           "\"batch\": %zu, \"all_found\": %s, \"snapshot_bytes\": %llu, \"fill_s\": %.3f, "
           "\"publish_s\": %.3f,\n",
           first ? "" : ",\n", n, (unsigned long long)info.count, nprobes, nmiss, rounds, batch,
           bad ? "false" : "true", (unsigned long long)info.size, fill_s, publish_s);
    char extra[64];
    snprintf(extra, sizeof extra, ", \"window\": %d", SM_GET_MANY_WINDOW);
    print_hm("sm_get", &s_get, rounds, NULL, 1);
    print_hm("get_many", &s_many, rounds, extra, 1);
    print_windows(win, rounds);
    print_hm("cdb", &s_cdb, rounds, NULL, 1);
    print_hm("lmdb", &s_lmdb, rounds, NULL, 1);
    printf("  \"chase\": {\"ns\": %.2f, \"buffer_bytes\": %zu}}", median(s_chase, rounds), ch.len);
    fflush(stdout);

    mdb_txn_abort(txn);
    mdb_env_close(env);
    unlink(path);
    unlink(lockpath);
    cdb_free(&db);
    close(fd);
    sm_reader_close(r);
    sm_unpublish(dir, name);
    munmap(ch.buf, ch.len);
    free(s_chase);
    free(hb); free(mb); free(hits); free(misses); free(hit_arena); free(miss_arena); free(idx);
    free(keys.arena); free(keys.off); free(vals.arena); free(vals.off);
}

/* ------------------------------------------------------------------ int keys */

static void bench_int(size_t n, size_t nprobes, int rounds, size_t batch, const char *dir,
                      uint64_t seed, int first) {
    char name[64];
    rng_state = seed * 1000003u + n + 0x1234567;
    int64_t *keys = xmalloc(n * sizeof *keys);
    for (size_t i = 0; i < n; i++)
        keys[i] = (int64_t)splitmix64();
    sm_builder *b;
    int rc = sm_builder_new(&b);
    if (rc)
        die("sm_builder_new", sm_strerror(rc));
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        unsigned char kb[SM_INT_KEY_SIZE];
        sm_key_int(keys[i], kb);
        sm_value v = sm_value_int((int64_t)(splitmix64() >> 17));
        if ((rc = sm_builder_put(b, SM_KEYS_INT, kb, SM_INT_KEY_SIZE, &v)))
            die("sm_builder_put", sm_strerror(rc));
    }
    double fill_s = (now_ns() - t0) / 1e9, publish_s;
    snprintf(name, sizeof name, "smbench-cbatch-int-%zu", n);
    sm_info info;
    sm_reader *r = publish(b, dir, name, &publish_s, &info);
    int64_t *hits = xmalloc(nprobes * sizeof *hits), *misses = xmalloc(nprobes * sizeof *misses);
    for (size_t i = 0; i < nprobes; i++)
        hits[i] = keys[below(n)];
    free(keys);
    size_t nmiss = 0;
    while (nmiss < nprobes) {
        int64_t k = (int64_t)splitmix64();
        unsigned char kb[SM_INT_KEY_SIZE];
        sm_key_int(k, kb);
        if (sm_get(r, kb, SM_INT_KEY_SIZE, NULL) != 0)
            misses[nmiss++] = k;
    }
    chase ch;
    chase_build(&ch, (size_t)info.size);
    samples s_get = samples_new(rounds), s_many = samples_new(rounds), win[NWIN];
    for (size_t w = 0; w < NWIN; w++)
        win[w] = samples_new(rounds);
    double *s_chase = xmalloc(sizeof(double) * (size_t)rounds);
    size_t f, bad = 0;
    for (int i = 0; i < rounds; i++) {
        HIT_MISS(s_get, i, time_sm_int(r, hits, nprobes, &f), time_sm_int(r, misses, nmiss, &f));
        HIT_MISS(s_many, i, time_many(r, NULL, hits, nprobes, batch, 0, 1, &f),
                 time_many(r, NULL, misses, nmiss, batch, 0, 1, &f));
        for (size_t w = 0; w < NWIN; w++)
            HIT_MISS(win[w], i, time_many(r, NULL, hits, nprobes, batch, WINDOWS[w], 0, &f),
                     time_many(r, NULL, misses, nmiss, batch, WINDOWS[w], 0, &f));
        s_chase[i] = time_chase(&ch, nprobes);
    }
    printf("%s\"%zu\": {\"entries\": %llu, \"probes\": %zu, \"misses\": %zu, \"rounds\": %d, "
           "\"batch\": %zu, \"all_found\": %s, \"snapshot_bytes\": %llu, \"fill_s\": %.3f, "
           "\"publish_s\": %.3f,\n",
           first ? "" : ",\n", n, (unsigned long long)info.count, nprobes, nmiss, rounds, batch,
           bad ? "false" : "true", (unsigned long long)info.size, fill_s, publish_s);
    char extra[64];
    snprintf(extra, sizeof extra, ", \"window\": %d", SM_GET_MANY_WINDOW);
    print_hm("sm_get", &s_get, rounds, NULL, 1);
    print_hm("get_many", &s_many, rounds, extra, 1);
    print_windows(win, rounds);
    printf("  \"chase\": {\"ns\": %.2f, \"buffer_bytes\": %zu}}", median(s_chase, rounds), ch.len);
    fflush(stdout);
    sm_reader_close(r);
    sm_unpublish(dir, name);
    munmap(ch.buf, ch.len);
    free(s_chase);
    free(hits);
    free(misses);
}

static void each_size(const char *list, const char *kind, size_t nprobes, int rounds, size_t batch,
                      const char *dir, uint64_t seed) {
    printf("\"%s\": {", kind);
    char *copy = strdup(list), *save = NULL;
    int first = 1;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t n = (size_t)strtoull(tok, NULL, 10);
        if (n < 1)
            continue;
        if (kind[0] == 's')
            bench_str(n, nprobes, rounds, batch, dir, seed, first);
        else
            bench_int(n, nprobes, rounds, batch, dir, seed, first);
        first = 0;
    }
    printf("}");
    free(copy);
}

int main(int argc, char **argv) {
    const char *ssizes = "10000000", *isizes = "10000000", *dir = "/dev/shm";
    size_t nprobes = 1000000, batch = 1000;
    int rounds = 5;
    uint64_t seed = 1;
    int opt;
    while ((opt = getopt(argc, argv, "n:i:p:r:b:d:s:")) != -1) {
        switch (opt) {
        case 'n': ssizes = optarg; break;
        case 'i': isizes = optarg; break;
        case 'p': nprobes = (size_t)strtoull(optarg, NULL, 10); break;
        case 'r': rounds = atoi(optarg); break;
        case 'b': batch = (size_t)strtoull(optarg, NULL, 10); break;
        case 'd': dir = optarg; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: cbatch [-n str sizes] [-i int sizes] [-p probes] [-r rounds] "
                            "[-b batch] [-d dir] [-s seed]\n");
            return 2;
        }
    }
    if (rounds < 1 || nprobes < 1 || batch < 1)
        die("arguments", "rounds, probes and batch must be >= 1");
    printf("{\"dir\": \"%s\", \"batch\": %zu, \"probes\": %zu, \"rounds\": %d, \"default_window\": %d,\n",
           dir, batch, nprobes, rounds, SM_GET_MANY_WINDOW);
    each_size(ssizes, "str", nprobes, rounds, batch, dir, seed);
    printf(",\n");
    each_size(isizes, "int", nprobes, rounds, batch, dir, seed);
    printf("}\n");
    return 0;
}
