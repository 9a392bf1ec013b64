/* cset.c: lookups in a map set of 16 shards against one map of the same entries, in C: ns per
 * sm_get (hits and misses) and per key of sm_get_many (batches of 1000), each lookup reading its
 * value.  The map-set part of the scale benchmark (bench/scale.py, bench/README.md).
 *
 * It includes cbench.c for its helpers, so the data and the probes are cbench's own (keys random
 * ASCII 8-24 bytes, values 8-48; hits are copies of random keys of the map, misses fresh random
 * keys).  The one map is published to /dev/shm; the set is that map cut by rank into -k shards
 * of equal counts, written to a set directory in /dev/shm with its manifest (sm_set_write),
 * then packed and published under one name (sm_set_publish), as `sharedmap load-set` does, and
 * attached as readers attach.  Rounds alternate the contenders; each figure is the median over
 * rounds.  Prints one JSON object on stdout.
 *
 *   cset [-n 1000000,10000000] [-k 16] [-p probes] [-r rounds] [-d dir] [-s seed]
 */
#define CBENCH_HELPERS_ONLY
#include "cbench.c"

#include <sys/stat.h>

#define BATCH 1000
#define MAX_SHARDS 256

static double time_many(const sm_reader *r, const sm_buf *keys, size_t count, size_t *found) {
    static sm_value vals[BATCH];
    static int st[BATCH];
    uint64_t acc = 0;
    size_t f = 0;
    double t0 = now_ns();
    for (size_t start = 0; start < count; start += BATCH) {
        size_t m = count - start < BATCH ? count - start : BATCH;
        int rc = sm_get_many(r, m, keys + start, vals, st);
        if (rc)
            die("sm_get_many", sm_strerror(rc));
        for (size_t j = 0; j < m; j++)
            if (st[j] == 0) {
                const unsigned char *d = vals[j].as.buf.data;
                acc += vals[j].as.buf.size + d[0] + d[vals[j].as.buf.size - 1];
                f++;
            }
    }
    double t = now_ns() - t0;
    sink += acc;
    *found = f;
    return t / (double)count;
}

/* The one map r cut by rank into k shard files in setdir, and their manifest. */
static void write_set(const sm_reader *r, size_t k, const char *setdir) {
    uint64_t n = sm_reader_count(r);
    char path[4096], names[MAX_SHARDS][32];
    const char *np[MAX_SHARDS];
    sm_buf bounds[MAX_SHARDS];
    char *bound_copy[MAX_SHARDS] = {0};
    sm_cursor c;
    int rc = sm_seek_rank(r, 0, &c);
    for (size_t i = 0; i < k && !rc; i++) {
        uint64_t end = n * (i + 1) / k;
        sm_builder *b;
        if ((rc = sm_builder_new(&b)))
            break;
        sm_entry e;
        for (int first = 1; c.rank < end && !(rc = sm_cursor_read(&c, &e)); first = 0) {
            if (first) {
                bound_copy[i] = xmalloc(e.key.size);
                memcpy(bound_copy[i], e.key.data, e.key.size);
                bounds[i].data = bound_copy[i];
                bounds[i].size = e.key.size;
            }
            if ((rc = sm_builder_put(b, SM_KEYS_BYTES, e.key.data, e.key.size, &e.value)))
                break;
        }
        snprintf(names[i], sizeof names[i], "shard-%03zu.smap", i);
        np[i] = names[i];
        snprintf(path, sizeof path, "%s/%s", setdir, names[i]);
        if (!rc)
            rc = sm_save(b, path, SM_FORCE, 0600);
        sm_builder_free(b);
    }
    if (!rc)
        rc = sm_set_write(setdir, k, np, bounds, SM_FORCE, 0600);
    if (rc)
        die("writing the set", sm_strerror(rc));
    for (size_t i = 0; i < k; i++)
        free(bound_copy[i]);
}

static void remove_set(const char *setdir, size_t k) {
    char path[4096];
    for (size_t i = 0; i < k; i++) {
        snprintf(path, sizeof path, "%s/shard-%03zu.smap", setdir, i);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/MANIFEST", setdir);
    unlink(path);
    rmdir(setdir);
}

static void bench_size(size_t n, size_t k, size_t nprobes, int rounds, const char *dir, uint64_t seed,
                       int first) {
    rng_state = seed * 1000003u + n;
    strs keys, vals;
    random_strs(&keys, n, 8, 24);
    random_strs(&vals, n, 8, 48);
    size_t *idx;
    char *hit_arena, *miss_arena;
    probe *hits, *misses;
    hit_and_miss_probes(&keys, n, nprobes, &idx, &hits, &hit_arena, &misses, &miss_arena);
    sm_buf *hbufs = xmalloc(nprobes * sizeof *hbufs), *mbufs = xmalloc(nprobes * sizeof *mbufs);
    for (size_t i = 0; i < nprobes; i++) {
        hbufs[i] = (sm_buf){hits[i].p, hits[i].len};
        mbufs[i] = (sm_buf){misses[i].p, misses[i].len};
    }

    double fill_s;
    sm_builder *b = fill_builder(&keys, &vals, n, &fill_s);
    char one_name[64], set_name[64], setdir[4096];
    snprintf(one_name, sizeof one_name, "smbench-cset-one-%zu", n);
    snprintf(set_name, sizeof set_name, "smbench-cset-set-%zu", n);
    snprintf(setdir, sizeof setdir, "%s/smbench-cset-dir-%zu", dir, n);
    int rc = sm_publish(b, dir, one_name, SM_FORCE, 0600);
    sm_builder_free(b);
    free(keys.arena);
    free(keys.off);
    free(vals.arena);
    free(vals.off);
    if (rc)
        die("sm_publish", sm_strerror(rc));
    sm_reader *one, *set, *dirset;
    if ((rc = sm_reader_open_shm(&one, dir, one_name)))
        die("sm_reader_open_shm", sm_strerror(rc));
    mkdir(setdir, 0700);
    write_set(one, k, setdir);
    if ((rc = sm_reader_open_file(&dirset, setdir)) ||
        (rc = sm_set_publish(dirset, dir, set_name, SM_FORCE, 0600)))
        die("sm_set_publish", sm_strerror(rc));
    sm_reader_close(dirset);
    remove_set(setdir, k);
    if ((rc = sm_reader_open_shm(&set, dir, set_name)))
        die("sm_reader_open_shm (set)", sm_strerror(rc));
    if (sm_reader_shard_count(set) != k || sm_reader_count(set) != sm_reader_count(one))
        die("the set", "is not the map cut in k");

    enum { ONE_HIT, SET_HIT, ONE_MISS, SET_MISS, ONE_MANY, SET_MANY, NFIG };
    static const char *fig_names[NFIG] = {"one_hit_ns", "set_hit_ns", "one_miss_ns", "set_miss_ns",
                                          "one_many_ns", "set_many_ns"};
    double *fig[NFIG];
    for (int f = 0; f < NFIG; f++)
        fig[f] = xmalloc((size_t)rounds * sizeof **fig);
    size_t found[NFIG];
    for (int round = 0; round < rounds; round++) {
        /* alternate which goes first, so that neither always runs on a warmer cache */
        const sm_reader *a = round % 2 ? set : one, *z = round % 2 ? one : set;
        int ia = round % 2, iz = !ia;
        fig[ONE_HIT + ia][round] = time_sm(a, hits, nprobes, &found[ONE_HIT + ia]);
        fig[ONE_HIT + iz][round] = time_sm(z, hits, nprobes, &found[ONE_HIT + iz]);
        fig[ONE_MISS + ia][round] = time_sm(a, misses, nprobes, &found[ONE_MISS + ia]);
        fig[ONE_MISS + iz][round] = time_sm(z, misses, nprobes, &found[ONE_MISS + iz]);
        fig[ONE_MANY + ia][round] = time_many(a, hbufs, nprobes, &found[ONE_MANY + ia]);
        fig[ONE_MANY + iz][round] = time_many(z, hbufs, nprobes, &found[ONE_MANY + iz]);
    }
    if (found[ONE_HIT] != nprobes || found[SET_HIT] != nprobes || found[SET_MANY] != nprobes ||
        found[ONE_MISS] != found[SET_MISS])
        die("lookups", "the set and the map disagree");
    sm_info info;
    sm_reader_info(set, &info);
    printf("%s\n    \"%zu\": {\"shards\": %zu, \"set_bytes\": %llu", first ? "" : ",", n, k,
           (unsigned long long)info.size);
    for (int f = 0; f < NFIG; f++)
        printf(", \"%s\": %.1f", fig_names[f], median(fig[f], rounds));
    printf("}");
    for (int f = 0; f < NFIG; f++)
        free(fig[f]);
    sm_reader_close(one);
    sm_reader_close(set);
    sm_unpublish(dir, one_name);
    sm_unpublish(dir, set_name);
    free(hits);
    free(misses);
    free(hit_arena);
    free(miss_arena);
    free(hbufs);
    free(mbufs);
    free(idx);
}

int main(int argc, char **argv) {
    const char *sizes = "1000000,10000000", *dir = "/dev/shm";
    size_t k = 16, nprobes = 1000000;
    int rounds = 5;
    uint64_t seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n"))
            sizes = argv[i + 1];
        else if (!strcmp(argv[i], "-k"))
            k = (size_t)strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "-p"))
            nprobes = (size_t)strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "-r"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-d"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "-s"))
            seed = strtoull(argv[i + 1], NULL, 10);
        else
            die("usage", "cset [-n sizes] [-k shards] [-p probes] [-r rounds] [-d dir] [-s seed]");
    }
    if (k < 1 || k > MAX_SHARDS || rounds < 1 || nprobes < 1)
        die("usage", "1 <= shards <= 256, rounds >= 1, probes >= 1");
    printf("{\"probes\": %zu, \"rounds\": %d, \"sizes\": {", nprobes, rounds);
    char *list = strdup(sizes);
    int first = 1;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","), first = 0)
        bench_size((size_t)strtoull(tok, NULL, 10), k, nprobes, rounds, dir, seed, first);
    free(list);
    printf("\n}}\n");
    return 0;
}
