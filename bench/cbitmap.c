/* cbitmap.c: C-level cost of one shared-bitmap operation (sm_bitmap_set / get / test_and_set),
 * alone and with two processes on the same cache line.
 *
 * Uncontended, in this one process, three cases:
 *   random_big    random indices over a large bitmap (default 2^30 bits = 128 MiB: far past the
 *                 caches and the TLB's reach with 4 KiB pages, so most operations miss both)
 *   random_cache  random indices over a small one (default 2^16 bits = 8 KiB: in L1)
 *   sequential    indices 0, 2, 4, ... over the large one
 * each for three implementations of the same operation on the same number of bits:
 *   sm            sm_bitmap_* on a bitmap in /dev/shm (what a C user calls)
 *   atomic        the bare instruction inline: __atomic_fetch_or / a plain load on a
 *                 MAP_SHARED anonymous mapping (shmem, 4 KiB pages, like the tmpfs file)
 *   plain         non-atomic inline `w |= m` (wrong across processes: the floor)
 * and four operations: set (bits with even indices), get of those set bits (the same indices
 * in another order), get of clear bits (odd indices, never set) and test_and_set (fresh even
 * indices).  Indices are made beforehand into an array (the loop reads it sequentially).
 * Rounds alternate implementations and cases; each figure is the median over rounds.
 *
 * Contended: two forked processes, each attaching the bitmap itself and pinned to its own CPU
 * when it can be, start together (on a shared flag) and run until the parent says stop after
 * a fixed time (-t, 0.3 s), each counting its operations, on bits of a small bitmap placed
 *   same_word     in one 64-bit word (process p: bits p, p+2, p+4, ...)
 *   same_line     in two words of one 64-byte cache line (process p: word p)
 *   own_line      in words 4 KiB apart (no line shared; the adjacent-line prefetcher neither)
 * and, for reference, one process alone doing the same loop (alone).  Operations: both set,
 * both test_and_set, or one get while the other sets (the reader's figure); `atomic_set` is
 * the bare lock-or on a MAP_SHARED mapping, the hardware's own price for the same placement.
 * Each process reports its ns per operation and its start/end times, from which the overlap of
 * the two (1.0: they ran side by side the whole time; lower: the scheduler did not give them
 * two CPUs at once, and the figure shows less contention than there was to be had), and its
 * CPU time / wall time: a run where either had less than 90% of a CPU is run again (up to 5
 * times; the best one is kept, and the JSON counts the repeats).
 *
 * Prints one JSON object on stdout.  Names: smbench-cbitmap-* (removed at the end; run.sh's
 * cleanup removes them if this is killed).
 *
 *   cbitmap [-b big_bits] [-c cache_bits] [-p ops] [-r rounds] [-t contended_seconds] [-d dir]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sharedmap.h"

static uint64_t rng_state;

static uint64_t splitmix64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "cbitmap: %s: %s\n", what, msg);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        die("malloc", strerror(errno));
    return p;
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

/* A MAP_SHARED anonymous mapping (shmem) with 4 KiB pages, zeroed. */
static uint64_t *shared_words(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap", strerror(errno));
#ifdef MADV_NOHUGEPAGE
    madvise(p, bytes, MADV_NOHUGEPAGE);
#endif
    return p;
}

static sm_bitmap *make_bitmap(const char *dir, const char *name, uint64_t bits) {
    sm_bitmap *b;
    int rc = sm_bitmap_create(&b, dir, name, bits, 0, SM_FORCE, 0600);
    if (rc)
        die("sm_bitmap_create", sm_strerror(rc));
    return b;
}

/* ------------------------------------------------------------------ uncontended */

enum { OP_SET, OP_GET, OP_GET_CLEAR, OP_TAS, N_OPS };
static const char *const OP_NAMES[N_OPS] = {"set", "get", "get_clear", "test_and_set"};
enum { IMPL_SM, IMPL_ATOMIC, IMPL_PLAIN, N_IMPLS };
static const char *const IMPL_NAMES[N_IMPLS] = {"sm", "atomic", "plain"};
enum { CASE_RANDOM_BIG, CASE_RANDOM_CACHE, CASE_SEQUENTIAL, N_CASES };
static const char *const CASE_NAMES[N_CASES] = {"random_big", "random_cache", "sequential"};

static double run_sm(sm_bitmap *b, int op, const uint64_t *idx, size_t n) {
    uint64_t acc = 0;
    double t0 = now_ns();
    switch (op) {
    case OP_SET:
        for (size_t i = 0; i < n; i++)
            acc += (uint64_t)sm_bitmap_set(b, idx[i], 1);
        break;
    case OP_GET:
    case OP_GET_CLEAR:
        for (size_t i = 0; i < n; i++)
            acc += (uint64_t)sm_bitmap_get(b, idx[i]);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            acc += (uint64_t)sm_bitmap_test_and_set(b, idx[i]);
    }
    double t = now_ns() - t0;
    sink += acc;
    return t / (double)n;
}

static double run_atomic(uint64_t *w, int op, const uint64_t *idx, size_t n) {
    uint64_t acc = 0;
    double t0 = now_ns();
    switch (op) {
    case OP_SET:
        for (size_t i = 0; i < n; i++)
            __atomic_fetch_or(&w[idx[i] >> 6], UINT64_C(1) << (idx[i] & 63), __ATOMIC_SEQ_CST);
        break;
    case OP_GET:
    case OP_GET_CLEAR:
        for (size_t i = 0; i < n; i++)
            acc += (__atomic_load_n(&w[idx[i] >> 6], __ATOMIC_ACQUIRE) >> (idx[i] & 63)) & 1;
        break;
    default:
        for (size_t i = 0; i < n; i++) {
            uint64_t m = UINT64_C(1) << (idx[i] & 63);
            acc += (__atomic_fetch_or(&w[idx[i] >> 6], m, __ATOMIC_SEQ_CST) & m) != 0;
        }
    }
    double t = now_ns() - t0;
    sink += acc;
    return t / (double)n;
}

static double run_plain(uint64_t *w, int op, const uint64_t *idx, size_t n) {
    uint64_t acc = 0;
    double t0 = now_ns();
    switch (op) {
    case OP_SET:
        for (size_t i = 0; i < n; i++)
            w[idx[i] >> 6] |= UINT64_C(1) << (idx[i] & 63);
        break;
    case OP_GET:
    case OP_GET_CLEAR:
        for (size_t i = 0; i < n; i++)
            acc += (w[idx[i] >> 6] >> (idx[i] & 63)) & 1;
        break;
    default:
        for (size_t i = 0; i < n; i++) {
            uint64_t *p = &w[idx[i] >> 6], m = UINT64_C(1) << (idx[i] & 63);
            acc += (*p & m) != 0;
            *p |= m;
        }
    }
    /* keep the stores: the compiler must not drop them for a buffer it could prove unread */
    __asm__ __volatile__("" ::: "memory");
    double t = now_ns() - t0;
    sink += acc;
    return t / (double)n;
}

/* Index arrays of one case: idx[op], n each. */
typedef struct indices {
    uint64_t *idx[N_OPS];
} indices;

static void make_indices(indices *ix, int c, uint64_t bits, size_t n) {
    uint64_t half = bits / 2;
    for (int op = 0; op < N_OPS; op++)
        ix->idx[op] = xmalloc(n * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++) {
        if (c == CASE_SEQUENTIAL) {
            ix->idx[OP_SET][i] = (i % half) * 2;
            ix->idx[OP_GET][i] = (i % half) * 2;
            ix->idx[OP_GET_CLEAR][i] = (i % half) * 2 + 1;
            ix->idx[OP_TAS][i] = (i % half) * 2;
        } else {
            ix->idx[OP_SET][i] = (splitmix64() % half) * 2;
            ix->idx[OP_GET_CLEAR][i] = (splitmix64() % half) * 2 + 1;
            ix->idx[OP_TAS][i] = (splitmix64() % half) * 2;
        }
    }
    if (c != CASE_SEQUENTIAL) { /* get: the bits just set, in another order (Fisher-Yates) */
        memcpy(ix->idx[OP_GET], ix->idx[OP_SET], n * sizeof(uint64_t));
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)(splitmix64() % (i + 1));
            uint64_t t = ix->idx[OP_GET][i];
            ix->idx[OP_GET][i] = ix->idx[OP_GET][j];
            ix->idx[OP_GET][j] = t;
        }
    }
}

static void free_indices(indices *ix) {
    for (int op = 0; op < N_OPS; op++)
        free(ix->idx[op]);
}

/* ------------------------------------------------------------------ contended */

enum { PL_ALONE, PL_SAME_WORD, PL_SAME_LINE, PL_OWN_LINE, N_PLACES };
static const char *const PLACE_NAMES[N_PLACES] = {"alone", "same_word", "same_line", "own_line"};
enum { CO_SET, CO_TAS, CO_GET_VS_SET, CO_ATOMIC_SET, N_COPS };
static const char *const COP_NAMES[N_COPS] = {"set", "test_and_set", "get_vs_set", "atomic_set"};
#define CONTENDED_BITS (UINT64_C(1) << 16) /* 8 KiB: two pages */

typedef struct proc_result {
    double ns, start, end, cpu_s;
    uint64_t ops;
    int cpu;
} proc_result;

typedef struct control {
    int ready;
    int go;
    int stop;
    proc_result res[2];
} control;

/* The bit process p uses at step k for a placement (bits 0..63 of its word or, in one word,
 * every other bit). */
static inline uint64_t place_index(int place, int p, uint64_t k) {
    switch (place) {
    case PL_SAME_WORD: return ((k & 31) << 1) | (uint64_t)p;
    case PL_SAME_LINE: return (uint64_t)p * 64 + (k & 63);
    default: return (uint64_t)p * 32768 + (k & 63); /* alone, own_line: 4 KiB apart */
    }
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void contender(control *ctl, int p, int nprocs, int place, int cop, const char *dir,
                      const char *name, uint64_t *raw, double seconds) {
    /* if the parent dies (killed), so does this child, instead of spinning on forever */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(1);
    cpu_set_t set;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (nprocs > 1 && ncpu >= 2) {
        CPU_ZERO(&set);
        CPU_SET(p % (int)ncpu, &set);
        sched_setaffinity(0, sizeof set, &set); /* a hint: failure leaves it to the scheduler */
    }
    sm_bitmap *b = NULL;
    if (cop != CO_ATOMIC_SET) {
        int rc = sm_bitmap_attach(&b, dir, name, 0);
        if (rc)
            die("sm_bitmap_attach", sm_strerror(rc));
    }
    /* both ready, then go */
    __atomic_fetch_add(&ctl->ready, 1, __ATOMIC_SEQ_CST);
    double deadline = now_ns() + 60e9 + seconds * 10e9; /* a safety net: the parent says stop */
    while (!__atomic_load_n(&ctl->go, __ATOMIC_ACQUIRE)) {
        sched_yield(); /* the parent needs a CPU to say go */
        if (now_ns() > deadline)
            _exit(1);
    }
    double cpu0 = cpu_seconds();
    double t0 = now_ns();
    deadline = t0 + 60e9 + seconds * 10e9;
    uint64_t acc = 0;
    int reader = cop == CO_GET_VS_SET && p == 0;
    uint64_t i = 0;
    while (!__atomic_load_n(&ctl->stop, __ATOMIC_RELAXED)) {
        for (uint64_t end = i + 4096; i < end; i++) {
            uint64_t ix = place_index(place, p, i);
            if (cop == CO_ATOMIC_SET)
                __atomic_fetch_or(&raw[ix >> 6], UINT64_C(1) << (ix & 63), __ATOMIC_SEQ_CST);
            else if (reader) /* its own bits: in the writer's word, line, or its own page */
                acc += (uint64_t)sm_bitmap_get(b, ix);
            else if (cop == CO_TAS)
                acc += (uint64_t)sm_bitmap_test_and_set(b, ix);
            else
                acc += (uint64_t)sm_bitmap_set(b, ix, 1);
        }
        if (now_ns() > deadline)
            _exit(1);
    }
    double t1 = now_ns();
    sink += acc;
    proc_result *r = &ctl->res[p];
    r->ns = (t1 - t0) / (double)i;
    r->ops = i;
    r->start = t0;
    r->end = t1;
    r->cpu_s = cpu_seconds() - cpu0;
    r->cpu = sched_getcpu();
    sm_bitmap_close(b);
}

/* One run: nprocs processes (1 or 2); fills out[0..nprocs). */
static void contended_run(int nprocs, int place, int cop, const char *dir, const char *name,
                          double seconds, proc_result *out) {
    control *ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED)
        die("mmap", strerror(errno));
    memset(ctl, 0, sizeof *ctl);
    uint64_t *raw = shared_words(CONTENDED_BITS / 8);
    fflush(stdout);
    pid_t pids[2];
    for (int p = 0; p < nprocs; p++) {
        pids[p] = fork();
        if (pids[p] < 0)
            die("fork", strerror(errno));
        if (pids[p] == 0) {
            contender(ctl, p, nprocs, place, cop, dir, name, raw, seconds);
            _exit(0);
        }
    }
    while (__atomic_load_n(&ctl->ready, __ATOMIC_ACQUIRE) < nprocs)
        usleep(100);
    __atomic_store_n(&ctl->go, 1, __ATOMIC_RELEASE);
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    __atomic_store_n(&ctl->stop, 1, __ATOMIC_RELEASE);
    for (int p = 0; p < nprocs; p++) {
        int st;
        if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("contender", "a child failed");
        out[p] = ctl->res[p];
    }
    munmap(raw, CONTENDED_BITS / 8);
    munmap(ctl, sizeof *ctl);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    uint64_t big_bits = UINT64_C(1) << 30, cache_bits = UINT64_C(1) << 16;
    double cseconds = 0.3;
    size_t nops = 4000000;
    int rounds = 5, opt;
    const char *dir = "/dev/shm";
    while ((opt = getopt(argc, argv, "b:c:p:r:t:d:")) != -1) {
        switch (opt) {
        case 'b': big_bits = strtoull(optarg, NULL, 10); break;
        case 'c': cache_bits = strtoull(optarg, NULL, 10); break;
        case 'p': nops = (size_t)strtoull(optarg, NULL, 10); break;
        case 'r': rounds = atoi(optarg); break;
        case 't': cseconds = strtod(optarg, NULL); break;
        case 'd': dir = optarg; break;
        default:
            fprintf(stderr, "usage: cbitmap [-b big_bits] [-c cache_bits] [-p ops] [-r rounds] "
                            "[-t contended_seconds] [-d dir]\n");
            return 2;
        }
    }
    if (rounds < 1 || nops < 2 || !(cseconds > 0) || big_bits < 1024 || cache_bits < 1024 ||
        big_bits % 64 || cache_bits % 64)
        die("arguments", "rounds, ops >= 1; bit counts multiples of 64, at least 1024");
    rng_state = 1;

    /* ---- uncontended */
    const uint64_t case_bits[N_CASES] = {big_bits, cache_bits, big_bits};
    sm_bitmap *bm[N_CASES];
    uint64_t *raw[N_CASES];
    indices ix[N_CASES];
    bm[CASE_RANDOM_BIG] = bm[CASE_SEQUENTIAL] = make_bitmap(dir, "smbench-cbitmap-big", big_bits);
    bm[CASE_RANDOM_CACHE] = make_bitmap(dir, "smbench-cbitmap-cache", cache_bits);
    raw[CASE_RANDOM_BIG] = raw[CASE_SEQUENTIAL] = shared_words(big_bits / 8);
    raw[CASE_RANDOM_CACHE] = shared_words(cache_bits / 8);
    for (int c = 0; c < N_CASES; c++)
        make_indices(&ix[c], c, case_bits[c], nops);
    /* touch every page of every buffer once, so no round pays the first faults */
    for (int c = 0; c < N_CASES; c++) {
        for (uint64_t i = 1; i < case_bits[c]; i += 4096 * 8) {
            sm_bitmap_set(bm[c], i, 0); /* an odd bit: stays clear */
            raw[c][i >> 6] = 0;
        }
    }
    double *samples = xmalloc(sizeof(double) * (size_t)rounds * N_CASES * N_IMPLS * N_OPS);
#define SAMPLE(r, c, im, op) samples[(((size_t)(r) * N_CASES + (c)) * N_IMPLS + (im)) * N_OPS + (op)]
    double t_start = now_ns();
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < N_CASES; c++) {
            for (int k = 0; k < N_IMPLS; k++) {
                int im = (k + r) % N_IMPLS; /* rotate which implementation goes first */
                for (int op = 0; op < N_OPS; op++) {
                    const uint64_t *id = ix[c].idx[op];
                    double ns = im == IMPL_SM       ? run_sm(bm[c], op, id, nops)
                                : im == IMPL_ATOMIC ? run_atomic(raw[c], op, id, nops)
                                                    : run_plain(raw[c], op, id, nops);
                    SAMPLE(r, c, im, op) = ns;
                }
            }
        }
    }
    double unc_s = (now_ns() - t_start) / 1e9;
    /* a check: the set bits read set, the clear ones clear, through the library */
    int ok = 1;
    for (int c = 0; c < N_CASES; c++) {
        for (size_t i = 0; i < nops; i += 997) {
            if (sm_bitmap_get(bm[c], ix[c].idx[OP_GET][i]) != 1 ||
                sm_bitmap_get(bm[c], ix[c].idx[OP_GET_CLEAR][i]) != 0)
                ok = 0;
        }
    }
    printf("{\"dir\": \"%s\", \"big_bits\": %llu, \"cache_bits\": %llu, \"ops\": %zu, "
           "\"rounds\": %d, \"check\": \"%s\", \"uncontended_s\": %.1f,\n \"uncontended\": {",
           dir, (unsigned long long)big_bits, (unsigned long long)cache_bits, nops, rounds,
           ok ? "ok" : "WRONG", unc_s);
    double *xs = xmalloc(sizeof(double) * (size_t)rounds);
    for (int c = 0; c < N_CASES; c++) {
        printf("%s\n  \"%s\": {\"bits\": %llu", c ? "," : "", CASE_NAMES[c],
               (unsigned long long)case_bits[c]);
        for (int im = 0; im < N_IMPLS; im++) {
            printf(", \"%s\": {", IMPL_NAMES[im]);
            for (int op = 0; op < N_OPS; op++) {
                printf("%s\"%s\": ", op ? ", " : "", OP_NAMES[op]);
                for (int r = 0; r < rounds; r++)
                    xs[r] = SAMPLE(r, c, im, op);
                printf("%.2f", median(xs, rounds));
            }
            printf("}");
        }
        printf("}");
    }
    printf("},\n");
    fflush(stdout);
    for (int c = 0; c < N_CASES; c++)
        free_indices(&ix[c]);
    sm_bitmap_close(bm[CASE_RANDOM_BIG]);
    sm_bitmap_close(bm[CASE_RANDOM_CACHE]);
    sm_bitmap_remove(dir, "smbench-cbitmap-big");
    sm_bitmap_remove(dir, "smbench-cbitmap-cache");
    munmap(raw[CASE_RANDOM_BIG], big_bits / 8);
    munmap(raw[CASE_RANDOM_CACHE], cache_bits / 8);
    free(samples);

    /* ---- contended: rounds of every (operation, placement), the median per process */
    const char *cname = "smbench-cbitmap-contended";
    sm_bitmap *cb = make_bitmap(dir, cname, CONTENDED_BITS);
    int crounds = rounds < 3 ? rounds : 3, retries = 0;
    proc_result *cres = xmalloc(sizeof(proc_result) * 2 * (size_t)crounds * N_COPS * N_PLACES);
#define CRES(r, co, pl, p) cres[((((size_t)(r) * N_COPS + (co)) * N_PLACES + (pl)) * 2) + (p)]
    t_start = now_ns();
    for (int r = 0; r < crounds; r++) {
        for (int co = 0; co < N_COPS; co++) {
            for (int pl = 0; pl < N_PLACES; pl++) {
                if (co == CO_GET_VS_SET && pl == PL_ALONE)
                    continue; /* "alone" for get is the reader with no writer: the set row's alone */
                /* a run in which either process had less than 90% of a CPU (other work took
                 * it) shows less contention than there is: it is run again, up to 5 times,
                 * and the run with the largest least share is kept */
                int np = pl == PL_ALONE ? 1 : 2;
                double best = -1;
                for (int attempt = 0; attempt < 5 && best < 0.9; attempt++) {
                    proc_result got[2];
                    sm_bitmap_clear_all(cb);
                    contended_run(np, pl, co, dir, cname, cseconds, got);
                    double share = 1.0;
                    for (int p = 0; p < np; p++) {
                        double f = got[p].cpu_s / ((got[p].end - got[p].start) / 1e9);
                        share = f < share ? f : share;
                    }
                    retries += attempt > 0;
                    if (share > best) {
                        best = share;
                        memcpy(&CRES(r, co, pl, 0), got, sizeof(proc_result) * (size_t)np);
                    }
                }
            }
        }
    }
    double con_s = (now_ns() - t_start) / 1e9;
    printf(" \"contended\": {\"seconds_per_run\": %.2f, \"rounds\": %d, \"seconds\": %.1f, "
           "\"cpus_online\": %ld, \"runs_repeated\": %d",
           cseconds, crounds, con_s, sysconf(_SC_NPROCESSORS_ONLN), retries);
    for (int co = 0; co < N_COPS; co++) {
        printf(",\n  \"%s\": {", COP_NAMES[co]);
        int first = 1;
        for (int pl = 0; pl < N_PLACES; pl++) {
            if (co == CO_GET_VS_SET && pl == PL_ALONE)
                continue;
            int np = pl == PL_ALONE ? 1 : 2;
            printf("%s\"%s\": {\"ns\": [", first ? "" : ", ", PLACE_NAMES[pl]);
            first = 0;
            double ov[16];
            for (int p = 0; p < np; p++) {
                for (int r = 0; r < crounds; r++)
                    xs[r] = CRES(r, co, pl, p).ns;
                printf("%s%.2f", p ? ", " : "", median(xs, crounds));
            }
            printf("], \"ns_cpu\": [");
            for (int p = 0; p < np; p++) {
                for (int r = 0; r < crounds; r++)
                    xs[r] = CRES(r, co, pl, p).cpu_s * 1e9 / (double)CRES(r, co, pl, p).ops;
                printf("%s%.2f", p ? ", " : "", median(xs, crounds));
            }
            printf("], \"ops\": [");
            for (int p = 0; p < np; p++)
                printf("%s%llu", p ? ", " : "", (unsigned long long)CRES(0, co, pl, p).ops);
            printf("]");
            if (np == 2) {
                /* overlap of the two processes' intervals / the longer one, per round */
                for (int r = 0; r < crounds; r++) {
                    proc_result *a = &CRES(r, co, pl, 0), *b = &CRES(r, co, pl, 1);
                    double lo = a->start > b->start ? a->start : b->start;
                    double hi = a->end < b->end ? a->end : b->end;
                    double la = a->end - a->start, lb = b->end - b->start;
                    ov[r] = hi > lo ? (hi - lo) / (la > lb ? la : lb) : 0.0;
                }
                printf(", \"overlap\": [");
                for (int r = 0; r < crounds; r++)
                    printf("%s%.2f", r ? ", " : "", ov[r]);
                printf("], \"cpu\": [%d, %d]", CRES(0, co, pl, 0).cpu, CRES(0, co, pl, 1).cpu);
                /* cpu time / wall time of the slower process: below 1, it was descheduled */
                double busy = 1.0;
                for (int r = 0; r < crounds; r++)
                    for (int p = 0; p < 2; p++) {
                        proc_result *x = &CRES(r, co, pl, p);
                        double f = x->cpu_s / ((x->end - x->start) / 1e9);
                        if (f < busy)
                            busy = f;
                    }
                printf(", \"min_cpu_share\": %.2f", busy);
            }
            printf("}");
        }
        printf("}");
    }
    printf("}}\n");
    sm_bitmap_close(cb);
    sm_bitmap_remove(dir, cname);
    free(cres);
    free(xs);
    return ok ? 0 : 1;
}
