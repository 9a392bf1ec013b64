/* test-bitmap.c: shared bitmaps: semantics, real processes racing on the same words and on
 * resizes, threads racing a remap, names, modes, replacing and removing, listing, hostile
 * files (FORMAT.md §11.4 rules B1-B11), a full tmpfs, and killed creators and resizers. */
#include "test.h"

#include "bitmap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

static const char *bm_path(const char *dir, const char *name) {
    static char bufs[4][600];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s%s", dir ? dir : SM_DEFAULT_DIR, SM_BITMAP_PREFIX, name);
    return b;
}

static unsigned char *read_file(const char *path, size_t *n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        test_fail(__FILE__, __LINE__, "open %s: %s", path, strerror(errno));
    struct stat st;
    ASSERT_OK(fstat(fd, &st));
    unsigned char *p = xmalloc((size_t)st.st_size);
    ASSERT_EQ(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *n = (size_t)st.st_size;
    return p;
}

/* Overwrites 8 bytes of the file at off with the little-endian v. */
static void poke64(const char *path, off_t off, uint64_t v) {
    unsigned char w[8];
    smf_put64(w, v);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ASSERT(fd >= 0);
    ASSERT_EQ(pwrite(fd, w, 8, off), 8);
    close(fd);
}

static int file_mode(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        test_fail(__FILE__, __LINE__, "lstat %s: %s", path, strerror(errno));
    return (int)(st.st_mode & 07777);
}

static void *shared_mem(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

/* A start line for child processes: each says it is ready, then blocks reading the gate
 * until the parent, having heard from all of them, closes it. */
typedef struct gate {
    int fd[2], ready[2];
} gate;
static void gate_init(gate *g) {
    ASSERT_OK(pipe(g->fd));
    ASSERT_OK(pipe(g->ready));
}
static void gate_wait(gate *g) {
    close(g->fd[1]);
    char c = 'r';
    ASSERT_EQ(write(g->ready[1], &c, 1), 1);
    ASSERT_EQ(read(g->fd[0], &c, 1), 0);
}
/* Returns once every child is waiting at the gate. */
static void gate_all_ready(gate *g, int children) {
    char c;
    for (int i = 0; i < children; i++)
        ASSERT_EQ(read(g->ready[0], &c, 1), 1);
}
static void gate_release(gate *g) {
    close(g->fd[0]);
    close(g->fd[1]);
    close(g->ready[0]);
    close(g->ready[1]);
}
static void gate_open(gate *g, int children) {
    gate_all_ready(g, children);
    gate_release(g);
}

static uint64_t count_of(sm_bitmap *b) {
    uint64_t n = 0;
    ASSERT_OK(sm_bitmap_count(b, &n));
    return n;
}

/* ---------------------------------------------------------------- semantics */

TEST(bitmap_basics) {
    const char *name = test_map_name("basics");
    sm_bitmap *b = NULL;
    /* the original package's test: create(100), set(100), resize(20000000) */
    ASSERT_OK(sm_bitmap_create(&b, NULL, name, 100, 0, 0, 0));
    ASSERT_EQ(sm_bitmap_size(b), 104);
    ASSERT_EQ(sm_bitmap_max_bits(b), SM_BITMAP_DEFAULT_MAX_BITS);
    ASSERT_EQ(sm_bitmap_get(b, 100), 0);
    ASSERT_OK(sm_bitmap_set(b, 100, 1));
    ASSERT_EQ(sm_bitmap_get(b, 100), 1);
    ASSERT_OK(sm_bitmap_resize(b, 20000000));
    ASSERT_EQ(sm_bitmap_size(b), 20000000);
    ASSERT_EQ(sm_bitmap_get(b, 15475645), 0);
    ASSERT_EQ(sm_bitmap_get(b, 20000000), 0);
    ASSERT_EQ(sm_bitmap_get(b, 100), 1);

    /* bounds: past the end reads clear and cannot be set */
    ASSERT_OK(sm_bitmap_resize(b, 100));
    ASSERT_EQ(sm_bitmap_size(b), 104);
    ASSERT_OK(sm_bitmap_set(b, 103, 1));
    ASSERT_ERR(sm_bitmap_set(b, 104, 1), -ERANGE);
    ASSERT_ERR(sm_bitmap_set(b, 104, 0), -ERANGE);
    ASSERT_ERR(sm_bitmap_set(b, UINT64_MAX, 1), -ERANGE);
    ASSERT_ERR(sm_bitmap_set(b, (uint64_t)1 << 63, 1), -ERANGE);
    ASSERT_ERR(sm_bitmap_test_and_set(b, 104), -ERANGE);
    ASSERT_ERR(sm_bitmap_test_and_clear(b, UINT64_MAX), -ERANGE);
    ASSERT_EQ(sm_bitmap_get(b, 104), 0);
    ASSERT_EQ(sm_bitmap_get(b, UINT64_MAX), 0);
    uint64_t idx = 0;
    ASSERT_ERR(sm_bitmap_next_set(b, UINT64_MAX, &idx), SM_NOTFOUND);

    /* test-and-set / test-and-clear return the old bit */
    ASSERT_EQ(sm_bitmap_test_and_set(b, 7), 0);
    ASSERT_EQ(sm_bitmap_test_and_set(b, 7), 1);
    ASSERT_EQ(sm_bitmap_get(b, 7), 1);
    ASSERT_EQ(sm_bitmap_test_and_clear(b, 7), 1);
    ASSERT_EQ(sm_bitmap_test_and_clear(b, 7), 0);
    ASSERT_EQ(sm_bitmap_get(b, 7), 0);
    ASSERT_OK(sm_bitmap_set(b, 0, 1));
    ASSERT_OK(sm_bitmap_set(b, 0, 5)); /* any non-zero value sets */
    ASSERT_EQ(sm_bitmap_get(b, 0), 1);
    ASSERT_OK(sm_bitmap_set(b, 0, 0));
    ASSERT_EQ(sm_bitmap_get(b, 0), 0);

    /* count, iteration */
    ASSERT_OK(sm_bitmap_set(b, 0, 1));
    ASSERT_OK(sm_bitmap_set(b, 63, 1));
    ASSERT_OK(sm_bitmap_set(b, 64, 1));
    ASSERT_EQ(count_of(b), 5); /* 0 63 64 100 103 */
    uint64_t want[] = {0, 63, 64, 100, 103}, from = 0;
    for (size_t i = 0; i < 5; i++) {
        ASSERT_OK(sm_bitmap_next_set(b, from, &idx));
        ASSERT_EQ(idx, want[i]);
        from = idx + 1;
    }
    ASSERT_ERR(sm_bitmap_next_set(b, from, &idx), SM_NOTFOUND);
    ASSERT_OK(sm_bitmap_next_set(b, 65, &idx));
    ASSERT_EQ(idx, 100);

    /* clear_all */
    ASSERT_OK(sm_bitmap_clear_all(b));
    ASSERT_EQ(count_of(b), 0);
    ASSERT_ERR(sm_bitmap_next_set(b, 0, &idx), SM_NOTFOUND);

    /* size 0 */
    ASSERT_OK(sm_bitmap_resize(b, 0));
    ASSERT_EQ(sm_bitmap_size(b), 0);
    ASSERT_EQ(count_of(b), 0);
    ASSERT_ERR(sm_bitmap_set(b, 0, 1), -ERANGE);
    const void *data = NULL;
    size_t len = 99;
    ASSERT_OK(sm_bitmap_bytes(b, &data, &len));
    ASSERT_EQ(len, 0);

    sm_bitmap_info info;
    ASSERT_OK(sm_bitmap_stat(b, &info));
    ASSERT_EQ(info.size, 0);
    ASSERT_EQ(info.format_version, SM_BITMAP_FORMAT_VERSION);
    ASSERT_EQ(info.resizes, 3);
    ASSERT_EQ(info.superseded, 0);
    ASSERT(info.capacity >= 20000000);
    ASSERT_EQ(info.file_size, SMB_HEADER_SIZE + info.capacity / 8);
    struct stat st;
    ASSERT_OK(stat(bm_path(NULL, name), &st));
    ASSERT_EQ(info.ino, st.st_ino);
    ASSERT_EQ(file_mode(bm_path(NULL, name)), 0600);

    sm_bitmap_close(b);
    sm_bitmap_close(NULL);
    ASSERT_OK(sm_bitmap_remove(NULL, name));
}

TEST(bitmap_bit_order) {
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, test_dir(), "order", 256, 0, 0, 0));
    uint64_t bits[] = {0, 1, 7, 8, 9, 62, 63, 64, 127, 128, 200, 255};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        ASSERT_OK(sm_bitmap_set(b, bits[i], 1));
    const unsigned char *p = NULL;
    size_t len = 0;
    ASSERT_OK(sm_bitmap_bytes(b, (const void **)&p, &len));
    ASSERT_EQ(len, 32);
    /* bit i is bit i%8 (LSB first) of byte i/8: numpy.unpackbits(bitorder='little') */
    for (uint64_t i = 0; i < 256; i++) {
        int want = 0;
        for (size_t k = 0; k < sizeof bits / sizeof bits[0]; k++)
            want |= bits[k] == i;
        ASSERT_EQ((p[i / 8] >> (i % 8)) & 1, want);
        ASSERT_EQ(sm_bitmap_get(b, i), want);
        /* and bit i%64 of the little-endian word i/64 */
        ASSERT_EQ((smf_le64(p + (i / 64) * 8) >> (i % 64)) & 1, want);
    }
    ASSERT_EQ(p[0], 0x83);
    ASSERT_EQ(p[1], 0x03);
    ASSERT_EQ(p[7], 0xC0);
    /* the bytes are the file's, right after the 128-byte header */
    size_t n;
    unsigned char *file = read_file(bm_path(test_dir(), "order"), &n);
    ASSERT_MEM_EQ(file + SMB_HEADER_SIZE, 32, p, 32);
    free(file);
    sm_bitmap_close(b);
}

TEST(bitmap_readonly) {
    const char *dir = test_dir();
    sm_bitmap *w = NULL, *r = NULL;
    ASSERT_OK(sm_bitmap_create(&w, dir, "ro", 1000, 0, 0, 0640));
    ASSERT_OK(sm_bitmap_set(w, 5, 1));
    ASSERT_OK(sm_bitmap_attach(&r, dir, "ro", SM_BITMAP_RDONLY));
    ASSERT_EQ(sm_bitmap_get(r, 5), 1);
    ASSERT_ERR(sm_bitmap_set(r, 5, 0), -EBADF);
    ASSERT_ERR(sm_bitmap_test_and_set(r, 6), -EBADF);
    ASSERT_ERR(sm_bitmap_test_and_clear(r, 5), -EBADF);
    ASSERT_ERR(sm_bitmap_clear_all(r), -EBADF);
    ASSERT_ERR(sm_bitmap_resize(r, 2000), -EBADF);
    /* a read-only handle follows resizes made by others, remapping as needed */
    ASSERT_OK(sm_bitmap_resize(w, 5000000));
    ASSERT_OK(sm_bitmap_set(w, 4999999, 1));
    ASSERT_EQ(sm_bitmap_size(r), 5000000);
    ASSERT_EQ(sm_bitmap_get(r, 4999999), 1);
    ASSERT_EQ(count_of(r), 2);
    ASSERT_ERR(sm_bitmap_attach(&r, dir, "ro", 0x100), -EINVAL);
    sm_bitmap_close(r);
    sm_bitmap_close(w);
}

/* ---------------------------------------------------------------- processes */

enum { UNION_PROCS = 4, UNION_SETS = 1000000, UNION_BITS = 1 << 20 };

struct union_ctx {
    const char *name;
    gate start;
    int proc;
};

static void child_union(void *arg) {
    struct union_ctx *c = arg;
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_attach(&b, NULL, c->name, 0));
    gate_wait(&c->start);
    rng r = {(uint64_t)c->proc * 7919 + 1};
    for (int i = 0; i < UNION_SETS; i++) {
        ASSERT_OK(sm_bitmap_set(b, rng_below(&r, UNION_BITS), 1));
        if (i % 4096 == 0)
            sched_yield(); /* four processes on fewer cores: interleave them */
    }
    sm_bitmap_close(b);
}

TEST(bitmap_union_of_four_processes) {
    const char *name = test_map_name("union");
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, NULL, name, UNION_BITS, 0, 0, 0));
    struct union_ctx c[UNION_PROCS];
    gate start;
    gate_init(&start);
    pid_t pids[UNION_PROCS];
    for (int p = 0; p < UNION_PROCS; p++) {
        c[p].name = name;
        c[p].start = start;
        c[p].proc = p;
        pids[p] = test_spawn(child_union, &c[p]);
    }
    /* the model, meanwhile: the same random indices */
    unsigned char *want = xcalloc(UNION_BITS / 8, 1);
    for (int p = 0; p < UNION_PROCS; p++) {
        rng r = {(uint64_t)p * 7919 + 1};
        for (int i = 0; i < UNION_SETS; i++) {
            uint64_t k = rng_below(&r, UNION_BITS);
            want[k / 8] |= (unsigned char)(1u << (k % 8));
        }
    }
    gate_open(&start, UNION_PROCS);
    for (int p = 0; p < UNION_PROCS; p++)
        ASSERT_CHILD_OK(pids[p]);
    const void *data;
    size_t len;
    ASSERT_OK(sm_bitmap_bytes(b, &data, &len));
    ASSERT_EQ(len, UNION_BITS / 8);
    uint64_t nwant = 0;
    for (size_t i = 0; i < len; i++)
        nwant += (uint64_t)__builtin_popcount(want[i]);
    ASSERT_EQ(count_of(b), nwant);
    ASSERT(memcmp(data, want, len) == 0);
    free(want);
    sm_bitmap_close(b);
    ASSERT_OK(sm_bitmap_remove(NULL, name));
}

enum { CLAIM_PROCS = 4, CLAIM_N = 100000 };

struct claim_ctx {
    const char *dir;
    gate start;
    int proc;
    unsigned char *claimed; /* [CLAIM_PROCS][CLAIM_N], shared */
};

static uint64_t claim_index(uint64_t k) { return k * 7 + 3; } /* neighbours share words */

static void child_claim(void *arg) {
    struct claim_ctx *c = arg;
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_attach(&b, c->dir, "claims", 0));
    uint32_t *order = xmalloc(CLAIM_N * sizeof *order);
    for (uint32_t k = 0; k < CLAIM_N; k++)
        order[k] = k;
    rng r = {(uint64_t)c->proc + 100};
    for (uint32_t k = CLAIM_N - 1; k > 0; k--) {
        uint32_t j = (uint32_t)rng_below(&r, k + 1);
        uint32_t t = order[k];
        order[k] = order[j];
        order[j] = t;
    }
    gate_wait(&c->start);
    for (uint32_t k = 0; k < CLAIM_N; k++) {
        int old = sm_bitmap_test_and_set(b, claim_index(order[k]));
        ASSERT(old == 0 || old == 1);
        if (old == 0)
            c->claimed[(size_t)c->proc * CLAIM_N + order[k]] = 1;
        if (k % 1024 == 0)
            sched_yield();
    }
    free(order);
    sm_bitmap_close(b);
}

TEST(bitmap_test_and_set_claims_once) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "claims", claim_index(CLAIM_N), 0, 0, 0));
    unsigned char *claimed = shared_mem((size_t)CLAIM_PROCS * CLAIM_N);
    gate start;
    gate_init(&start);
    struct claim_ctx c[CLAIM_PROCS];
    pid_t pids[CLAIM_PROCS];
    for (int p = 0; p < CLAIM_PROCS; p++) {
        c[p] = (struct claim_ctx){dir, start, p, claimed};
        pids[p] = test_spawn(child_claim, &c[p]);
    }
    gate_open(&start, CLAIM_PROCS);
    for (int p = 0; p < CLAIM_PROCS; p++)
        ASSERT_CHILD_OK(pids[p]);
    unsigned per[CLAIM_PROCS] = {0};
    for (uint32_t k = 0; k < CLAIM_N; k++) {
        int owners = 0;
        for (int p = 0; p < CLAIM_PROCS; p++) {
            owners += claimed[(size_t)p * CLAIM_N + k];
            per[p] += claimed[(size_t)p * CLAIM_N + k];
        }
        if (owners != 1)
            test_fail(__FILE__, __LINE__, "index %u claimed %d times", k, owners);
        ASSERT_EQ(sm_bitmap_get(b, claim_index(k)), 1);
    }
    ASSERT_EQ(count_of(b), CLAIM_N);
    printf("    claims per process: %u %u %u %u\n", per[0], per[1], per[2], per[3]);
    munmap(claimed, (size_t)CLAIM_PROCS * CLAIM_N);
    sm_bitmap_close(b);
}

/* A resize in one process is seen by another at its next operation, grow and shrink. */
struct seen_ctx {
    const char *name;
    int to_child, from_child; /* pipe ends the child uses */
};

static void step_wait(int fd) {
    char c;
    ASSERT_EQ(read(fd, &c, 1), 1);
}
static void step_done(int fd) {
    char c = 's';
    ASSERT_EQ(write(fd, &c, 1), 1);
}

static void child_sees_resizes(void *arg) {
    struct seen_ctx *c = arg;
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_attach(&b, NULL, c->name, 0));
    ASSERT_EQ(sm_bitmap_size(b), 1000);
    const void *data0;
    size_t len;
    ASSERT_OK(sm_bitmap_bytes(b, &data0, &len));
    ASSERT_EQ(len, 125);
    step_done(c->from_child);

    step_wait(c->to_child); /* parent grew to 10M and set the last bit */
    ASSERT_EQ(sm_bitmap_size(b), 10000000);
    ASSERT_EQ(sm_bitmap_get(b, 9999999), 1);
    ASSERT_OK(sm_bitmap_set(b, 5000000, 1));
    const void *data1;
    ASSERT_OK(sm_bitmap_bytes(b, &data1, &len));
    ASSERT(data1 == data0); /* the bits never move */
    ASSERT_EQ(len, 1250000);
    step_done(c->from_child);

    step_wait(c->to_child); /* parent shrank to 500 */
    ASSERT_EQ(sm_bitmap_size(b), 504);
    ASSERT_EQ(sm_bitmap_get(b, 9999999), 0);
    ASSERT_EQ(sm_bitmap_get(b, 5000000), 0);
    ASSERT_ERR(sm_bitmap_set(b, 600, 1), -ERANGE);
    ASSERT_OK(sm_bitmap_set(b, 499, 1));
    ASSERT_EQ(count_of(b), 1);
    step_done(c->from_child);

    step_wait(c->to_child); /* parent grew to 10M again: what it revealed is clear */
    ASSERT_EQ(sm_bitmap_size(b), 10000000);
    ASSERT_EQ(sm_bitmap_get(b, 9999999), 0);
    ASSERT_EQ(sm_bitmap_get(b, 5000000), 0);
    ASSERT_EQ(sm_bitmap_get(b, 499), 1);
    ASSERT_EQ(count_of(b), 1);
    sm_bitmap_close(b);
}

TEST(bitmap_resize_seen_by_other_process) {
    const char *name = test_map_name("seen");
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, NULL, name, 1000, 0, 0, 0));
    int down[2], up[2];
    ASSERT_OK(pipe(down));
    ASSERT_OK(pipe(up));
    struct seen_ctx c = {name, down[0], up[1]};
    pid_t pid = test_spawn(child_sees_resizes, &c);
    step_wait(up[0]);
    ASSERT_OK(sm_bitmap_resize(b, 10000000));
    ASSERT_OK(sm_bitmap_set(b, 9999999, 1));
    step_done(down[1]);
    step_wait(up[0]);
    ASSERT_EQ(sm_bitmap_get(b, 5000000), 1);
    ASSERT_OK(sm_bitmap_resize(b, 500));
    step_done(down[1]);
    step_wait(up[0]);
    ASSERT_EQ(sm_bitmap_get(b, 499), 1);
    ASSERT_OK(sm_bitmap_resize(b, 10000000));
    step_done(down[1]);
    ASSERT_CHILD_OK(pid);
    sm_bitmap_close(b);
    ASSERT_OK(sm_bitmap_remove(NULL, name));
}

/* Concurrent resizes from four processes (one attached by name, three on the handle they
 * inherited through fork, which share one open file description) are serialised: every
 * one of them counts (a lost resize_seq update would show), they end in one size every
 * handle agrees on, and no bit below the smallest size is ever lost. */
enum { RS_PROCS = 4, RS_STEPS = 400, RS_BASE = 1000 };

struct rs_ctx {
    const char *dir;
    sm_bitmap *inherited; /* or NULL: attach */
    gate start, finish;
    int proc;
    uint64_t *sizes_seen; /* shared, [RS_PROCS] */
};

static uint64_t rs_size(int proc, int step) {
    return 128 * (uint64_t)(RS_BASE + RS_PROCS * step + proc); /* unique to (proc, step) */
}

static void child_resizer(void *arg) {
    struct rs_ctx *c = arg;
    sm_bitmap *b = c->inherited;
    if (!b)
        ASSERT_OK(sm_bitmap_attach(&b, c->dir, "rs", 0));
    gate_wait(&c->start);
    for (int s = 0; s < RS_STEPS; s++) {
        /* sizes go up and down: odd steps are small; no two calls ask for the same size */
        int step = (s & 1) ? s : RS_STEPS + s;
        ASSERT_OK(sm_bitmap_resize(b, rs_size(c->proc, step)));
        ASSERT_OK(sm_bitmap_set(b, (uint64_t)c->proc * 1000 + (uint64_t)s, 1));
        sched_yield();
    }
    gate_wait(&c->finish);
    c->sizes_seen[c->proc] = sm_bitmap_size(b);
    if (!c->inherited)
        sm_bitmap_close(b);
}

TEST(bitmap_concurrent_resizes_agree) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "rs", rs_size(0, 0), 0, 0, 0));
    uint64_t *seen = shared_mem(RS_PROCS * sizeof *seen);
    gate start, finish;
    gate_init(&start);
    gate_init(&finish);
    struct rs_ctx c[RS_PROCS];
    pid_t pids[RS_PROCS];
    for (int p = 0; p < RS_PROCS; p++) {
        c[p] = (struct rs_ctx){dir, p < 3 ? b : NULL, start, finish, p, seen};
        pids[p] = test_spawn(child_resizer, &c[p]);
    }
    gate_open(&start, RS_PROCS);
    gate_all_ready(&finish, RS_PROCS); /* every child is past its last resize */
    uint64_t final = sm_bitmap_size(b);
    gate_release(&finish);
    for (int p = 0; p < RS_PROCS; p++)
        ASSERT_CHILD_OK(pids[p]);
    int is_a_last = 0;
    for (int p = 0; p < RS_PROCS; p++) {
        ASSERT_EQ(seen[p], final);
        is_a_last |= final == rs_size(p, RS_STEPS - 1); /* the last step is odd */
    }
    ASSERT(is_a_last); /* the size is the last resize of one of the processes */
    sm_bitmap_info info;
    ASSERT_OK(sm_bitmap_stat(b, &info));
    ASSERT_EQ(info.resizes, RS_PROCS * RS_STEPS);
    for (int p = 0; p < RS_PROCS; p++)
        for (int s = 0; s < RS_STEPS; s++)
            ASSERT_EQ(sm_bitmap_get(b, (uint64_t)p * 1000 + (uint64_t)s), 1);
    ASSERT_EQ(count_of(b), RS_PROCS * RS_STEPS);
    /* and a fresh attach agrees and validates */
    sm_bitmap *again = NULL;
    ASSERT_OK(sm_bitmap_attach(&again, dir, "rs", SM_BITMAP_RDONLY));
    ASSERT_EQ(sm_bitmap_size(again), final);
    sm_bitmap_close(again);
    munmap(seen, RS_PROCS * sizeof *seen);
    sm_bitmap_close(b);
}

/* Setters racing a process that shrinks and grows: bits below the smallest size are never
 * lost, and once the setters are done a shrink and a grow reveal only clear bits, whatever
 * late writes landed past the end meanwhile. */
enum { RACE_LOW = 4096, RACE_HIGH = 65536 };

struct race_ctx {
    const char *dir;
    volatile int *stop;
    int proc;
    uint64_t *kept; /* shared: how many low bits this setter set */
};

static void child_race_setter(void *arg) {
    struct race_ctx *c = arg;
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_attach(&b, c->dir, "race", 0));
    rng r = {(uint64_t)c->proc + 5};
    uint64_t low = 0;
    while (!__atomic_load_n(c->stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 256; i++) {
            uint64_t k = RACE_LOW + rng_below(&r, RACE_HIGH - RACE_LOW);
            int rc = sm_bitmap_test_and_set(b, k);
            ASSERT(rc == 0 || rc == 1 || rc == -ERANGE);
            ASSERT(sm_bitmap_get(b, k) >= 0);
        }
        /* the low bits stay in range: setter p owns the odd/even ones */
        if (low < RACE_LOW / 2) {
            ASSERT_EQ(sm_bitmap_test_and_set(b, low * 2 + (uint64_t)c->proc), 0);
            low++;
        }
    }
    c->kept[c->proc] = low;
    sm_bitmap_close(b);
}

static void child_race_resizer(void *arg) {
    struct race_ctx *c = arg;
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_attach(&b, c->dir, "race", 0));
    rng r = {77};
    for (int i = 0; i < 400; i++)
        ASSERT_OK(sm_bitmap_resize(b, RACE_LOW + rng_below(&r, RACE_HIGH - RACE_LOW)));
    __atomic_store_n(c->stop, 1, __ATOMIC_RELEASE);
    sm_bitmap_close(b);
}

TEST(bitmap_shrink_grow_race) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "race", RACE_HIGH, 0, 0, 0));
    int *stop = shared_mem(4096);
    uint64_t *kept = (uint64_t *)(void *)((char *)stop + 64);
    struct race_ctx c[3];
    pid_t pids[3];
    for (int p = 0; p < 3; p++) {
        c[p] = (struct race_ctx){dir, stop, p, kept};
        pids[p] = test_spawn(p < 2 ? child_race_setter : child_race_resizer, &c[p]);
    }
    for (int p = 0; p < 3; p++)
        ASSERT_CHILD_OK(pids[p]);
    for (int p = 0; p < 2; p++)
        for (uint64_t k = 0; k < kept[p]; k++)
            ASSERT_EQ(sm_bitmap_get(b, k * 2 + (uint64_t)p), 1);
    uint64_t low = 0;
    for (uint64_t k = 0; k < RACE_LOW; k++)
        low += (uint64_t)sm_bitmap_get(b, k);
    ASSERT_EQ(low, kept[0] + kept[1]);
    ASSERT_OK(sm_bitmap_resize(b, RACE_LOW));
    ASSERT_OK(sm_bitmap_resize(b, RACE_HIGH));
    uint64_t idx;
    ASSERT_ERR(sm_bitmap_next_set(b, RACE_LOW, &idx), SM_NOTFOUND);
    ASSERT_EQ(count_of(b), low);
    munmap(stop, 4096);
    sm_bitmap_close(b);
}

/* A write that lands past the end (a late set, or anyone writing the file) is never
 * revealed by a grow: the grow clears what it reveals. */
TEST(bitmap_grow_clears_what_it_reveals) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "reveal", 1024, 0, 0, 0));
    for (uint64_t i = 0; i < 1024; i += 3)
        ASSERT_OK(sm_bitmap_set(b, i, 1));
    ASSERT_OK(sm_bitmap_resize(b, 516)); /* 520: the cut falls inside a word */
    ASSERT_EQ(sm_bitmap_size(b), 520);
    uint64_t n = count_of(b);
    ASSERT_EQ(n, (519 / 3) + 1);
    /* garbage past the end, straight into the file: bits 800-807 and 1000-1023 */
    const char *path = bm_path(dir, "reveal");
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ASSERT(fd >= 0);
    unsigned char ff[3] = {0xFF, 0xFF, 0xFF};
    ASSERT_EQ(pwrite(fd, ff, 1, SMB_HEADER_SIZE + 100), 1);
    ASSERT_EQ(pwrite(fd, ff, 3, SMB_HEADER_SIZE + 125), 3);
    close(fd);
    ASSERT_EQ(sm_bitmap_get(b, 800), 0); /* past the end reads clear */
    ASSERT_EQ(count_of(b), n);
    ASSERT_OK(sm_bitmap_resize(b, 2048));
    ASSERT_EQ(sm_bitmap_get(b, 800), 0);
    ASSERT_EQ(sm_bitmap_get(b, 1010), 0);
    ASSERT_EQ(count_of(b), n); /* the bits below 520 were kept, in the cut word too */
    for (uint64_t i = 0; i < 520; i++)
        ASSERT_EQ(sm_bitmap_get(b, i), i % 3 == 0);
    sm_bitmap_close(b);

    /* a file longer than its capacity, with garbage in the tail: a grow into it clears it */
    ASSERT_OK(sm_bitmap_create(&b, dir, "tail", 8, 1 << 20, 0, 0));
    sm_bitmap_info info;
    ASSERT_OK(sm_bitmap_stat(b, &info));
    ASSERT_EQ(info.file_size, 4096);
    unsigned char junk[4096];
    memset(junk, 0xFF, sizeof junk);
    fd = open(bm_path(dir, "tail"), O_WRONLY | O_APPEND | O_CLOEXEC);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    ASSERT_OK(sm_bitmap_resize(b, 60000));
    ASSERT_OK(sm_bitmap_stat(b, &info));
    ASSERT_EQ(info.file_size, 8192);
    ASSERT_EQ(info.capacity, (8192 - 128) * 8);
    ASSERT_EQ(count_of(b), 0);
    sm_bitmap_close(b);
}

/* Threads of one process use one handle while another thread grows it (remapping). */
enum { TH_SETTERS = 4, TH_SETS = 100000, TH_MAX = 1 << 22 };

struct th_ctx {
    sm_bitmap *b;
    int id;
    uint64_t *done; /* indexes whose set succeeded */
    size_t ndone;
};

static void *thread_setter(void *arg) {
    struct th_ctx *c = arg;
    rng r = {(uint64_t)c->id + 900};
    for (int i = 0; i < TH_SETS; i++) {
        uint64_t k = rng_below(&r, TH_MAX);
        int rc = sm_bitmap_set(c->b, k, 1);
        if (rc == 0)
            c->done[c->ndone++] = k;
        else if (rc != -ERANGE)
            return (void *)1;
    }
    return NULL;
}

static void *thread_grower(void *arg) {
    struct th_ctx *c = arg;
    for (uint64_t s = 64; s <= TH_MAX; s *= 2)
        if (sm_bitmap_resize(c->b, s) != 0)
            return (void *)1;
    return NULL;
}

TEST(bitmap_threads_and_remap) {
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, test_dir(), "threads", 64, 0, 0, 0));
    const void *data0, *data1;
    size_t len;
    ASSERT_OK(sm_bitmap_bytes(b, &data0, &len));
    pthread_t th[TH_SETTERS + 1];
    struct th_ctx c[TH_SETTERS + 1];
    for (int t = 0; t <= TH_SETTERS; t++) {
        c[t] = (struct th_ctx){b, t, t < TH_SETTERS ? xmalloc(TH_SETS * sizeof(uint64_t)) : NULL, 0};
        ASSERT_OK(pthread_create(&th[t], NULL, t < TH_SETTERS ? thread_setter : thread_grower, &c[t]));
    }
    for (int t = 0; t <= TH_SETTERS; t++) {
        void *ret;
        ASSERT_OK(pthread_join(th[t], &ret));
        ASSERT(ret == NULL);
    }
    ASSERT_EQ(sm_bitmap_size(b), TH_MAX);
    size_t total = 0;
    for (int t = 0; t < TH_SETTERS; t++) {
        for (size_t i = 0; i < c[t].ndone; i++)
            ASSERT_EQ(sm_bitmap_get(b, c[t].done[i]), 1);
        total += c[t].ndone;
        free(c[t].done);
    }
    ASSERT(total > 0);
    ASSERT_OK(sm_bitmap_bytes(b, &data1, &len));
    ASSERT(data0 == data1);
    ASSERT_EQ(len, TH_MAX / 8);
    sm_bitmap_close(b);
}

/* Threads of one process resizing one handle share its open file description (and so its
 * flock): the handle's mutex must serialise them; every resize counts. */
struct thr_ctx {
    sm_bitmap *b;
    int id;
};

static void *thread_resizer(void *arg) {
    struct thr_ctx *c = arg;
    for (int s = 0; s < 200; s++)
        if (sm_bitmap_resize(c->b, 64 * (uint64_t)(1 + 3 * s + c->id)) != 0)
            return (void *)1;
    return NULL;
}

TEST(bitmap_threads_resize_serialised) {
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, test_dir(), "thr", 8, 0, 0, 0));
    pthread_t th[3];
    struct thr_ctx c[3];
    for (int t = 0; t < 3; t++) {
        c[t] = (struct thr_ctx){b, t};
        ASSERT_OK(pthread_create(&th[t], NULL, thread_resizer, &c[t]));
    }
    for (int t = 0; t < 3; t++) {
        void *ret;
        ASSERT_OK(pthread_join(th[t], &ret));
        ASSERT(ret == NULL);
    }
    sm_bitmap_info info;
    ASSERT_OK(sm_bitmap_stat(b, &info));
    ASSERT_EQ(info.resizes, 600);
    uint64_t s = sm_bitmap_size(b);
    ASSERT(s == 64 * (1 + 3 * 199) || s == 64 * (2 + 3 * 199) || s == 64 * (3 + 3 * 199));
    sm_bitmap_close(b);
}

/* ---------------------------------------------------------------- names, modes, lifetime */

TEST(bitmap_create_exists_and_force) {
    const char *dir = test_dir();
    sm_bitmap *a = NULL, *b = NULL, *c = NULL;
    ASSERT_OK(sm_bitmap_create(&a, dir, "x", 1000, 0, 0, 0));
    ASSERT_OK(sm_bitmap_set(a, 10, 1));
    ASSERT_ERR(sm_bitmap_create(&b, dir, "x", 50, 0, 0, 0), -EEXIST);
    ASSERT_STR_EQ(test_listing(dir), "sharedbitmap.x");
    ASSERT_OK(sm_bitmap_attach(&c, dir, "x", 0));
    ASSERT_EQ(sm_bitmap_get(c, 10), 1); /* the first is intact */
    sm_bitmap_close(c);

    /* force: replaced atomically; the old handle keeps the old bitmap and learns it */
    ASSERT_OK(sm_bitmap_create(&b, dir, "x", 50, 0, SM_FORCE, 0));
    ASSERT_EQ(sm_bitmap_superseded(a), 1);
    ASSERT_EQ(sm_bitmap_superseded(b), 0);
    ASSERT_EQ(sm_bitmap_get(a, 10), 1);
    ASSERT_EQ(sm_bitmap_size(a), 1000);
    ASSERT_EQ(sm_bitmap_size(b), 56);
    ASSERT_EQ(sm_bitmap_get(b, 10), 0);
    ASSERT_OK(sm_bitmap_set(a, 11, 1)); /* the old one still works, on its own */
    ASSERT_EQ(sm_bitmap_get(b, 11), 0);
    ASSERT_OK(sm_bitmap_attach(&c, dir, "x", 0));
    ASSERT_EQ(sm_bitmap_size(c), 56);
    sm_bitmap_info ia, ic;
    ASSERT_OK(sm_bitmap_stat(a, &ia));
    ASSERT_OK(sm_bitmap_stat(c, &ic));
    ASSERT_NE(ia.ino, ic.ino);
    ASSERT_EQ(ia.superseded, 1);
    sm_bitmap_close(c);
    ASSERT_STR_EQ(test_listing(dir), "sharedbitmap.x");
    /* force onto a free name works too */
    ASSERT_OK(sm_bitmap_create(&c, dir, "fresh", 8, 0, SM_FORCE, 0));
    sm_bitmap_close(c);

    /* a map and a bitmap of the same name do not collide */
    sm_builder *bld = NULL;
    ASSERT_OK(sm_builder_new(&bld));
    ASSERT_OK(sm_publish(bld, dir, "x", 0, 0));
    ASSERT_STR_EQ(test_listing(dir), "sharedbitmap.fresh sharedbitmap.x sharedmap.x");
    ASSERT_OK(sm_unpublish(dir, "x"));
    sm_builder_free(bld);
    ASSERT_STR_EQ(test_listing(dir), "sharedbitmap.fresh sharedbitmap.x");
    sm_bitmap_close(a);
    sm_bitmap_close(b);
}

TEST(bitmap_remove) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL, *c = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "rm", 100, 0, 0, 0));
    ASSERT_OK(sm_bitmap_set(b, 3, 1));
    ASSERT_OK(sm_bitmap_remove(dir, "rm"));
    ASSERT_STR_EQ(test_listing(dir), "");
    ASSERT_ERR(sm_bitmap_remove(dir, "rm"), -ENOENT);
    ASSERT_ERR(sm_bitmap_attach(&c, dir, "rm", 0), -ENOENT);
    /* the handle keeps working on the removed bitmap, and knows */
    ASSERT_EQ(sm_bitmap_superseded(b), 1);
    ASSERT_EQ(sm_bitmap_get(b, 3), 1);
    ASSERT_OK(sm_bitmap_resize(b, 100000));
    ASSERT_OK(sm_bitmap_set(b, 99999, 1));
    ASSERT_EQ(count_of(b), 2);
    /* the name is free again */
    ASSERT_OK(sm_bitmap_create(&c, dir, "rm", 100, 0, 0, 0));
    ASSERT_EQ(sm_bitmap_get(c, 3), 0);
    sm_bitmap_close(c);
    sm_bitmap_close(b);
    ASSERT_OK(sm_bitmap_remove(dir, "rm"));
    ASSERT_ERR(sm_bitmap_remove("/nonexistent-dir-of-sharedmap", "rm"), -ENOENT);
    ASSERT_ERR(sm_bitmap_attach(&c, "/nonexistent-dir-of-sharedmap", "rm", 0), -ENOENT);
    ASSERT_ERR(sm_bitmap_create(&c, "/nonexistent-dir-of-sharedmap", "rm", 8, 0, 0, 0), -ENOENT);
    /* removing a map's name does not touch a bitmap, and the reverse */
    ASSERT_ERR(sm_unpublish(dir, "rm"), -ENOENT);
}

TEST(bitmap_names) {
    char long_name[256];
    memset(long_name, 'n', sizeof long_name);
    long_name[SM_NAME_MAX + 1] = 0;
    const char *bad[] = {"", "a/b", "/", "/abs", "a/", long_name, NULL};
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_ERR(sm_bitmap_create(&b, dir, bad[i], 8, 0, 0, 0), SM_ENAME);
        ASSERT_ERR(sm_bitmap_create(&b, dir, bad[i], 8, 0, SM_FORCE, 0), SM_ENAME);
        ASSERT_ERR(sm_bitmap_attach(&b, dir, bad[i], 0), SM_ENAME);
        ASSERT_ERR(sm_bitmap_remove(dir, bad[i]), SM_ENAME);
    }
    ASSERT_STR_EQ(test_listing(dir), "");
    char max_name[SM_NAME_MAX + 1];
    memset(max_name, 'm', SM_NAME_MAX);
    const char *prefix = test_map_name("max");
    memcpy(max_name, prefix, strlen(prefix));
    max_name[SM_NAME_MAX] = 0;
    const char *good[] = {max_name, "test:3325", "bbt", "\xe7\xba\xa2", "with space", "..", ".hidden"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ASSERT_OK(sm_bitmap_create(&b, dir, good[i], 8, 0, 0, 0));
        ASSERT_OK(sm_bitmap_set(b, 1, 1));
        sm_bitmap_close(b);
        ASSERT_OK(sm_bitmap_attach(&b, dir, good[i], 0));
        ASSERT_EQ(sm_bitmap_get(b, 1), 1);
        sm_bitmap_close(b);
        ASSERT_OK(sm_bitmap_remove(dir, good[i]));
    }
    /* the longest name in the default directory too (the temporary's name must fit) */
    ASSERT_OK(sm_bitmap_create(&b, NULL, max_name, 8, 0, 0, 0));
    sm_bitmap_close(b);
    ASSERT_OK(sm_bitmap_create(&b, NULL, max_name, 8, 0, SM_FORCE, 0));
    sm_bitmap_close(b);
    ASSERT_OK(sm_bitmap_remove(NULL, max_name));
    ASSERT_STR_EQ(test_listing(dir), "");
}

static void check_modes(mode_t umask_value) {
    umask(umask_value);
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "default", 8, 0, 0, 0));
    sm_bitmap_close(b);
    ASSERT_EQ(file_mode(bm_path(dir, "default")), 0600);
    ASSERT_OK(sm_bitmap_create(&b, dir, "group", 8, 0, 0, 0660));
    sm_bitmap_close(b);
    ASSERT_EQ(file_mode(bm_path(dir, "group")), 0660);
    ASSERT_OK(sm_bitmap_create(&b, dir, "group", 8, 0, SM_FORCE, 0640));
    sm_bitmap_close(b);
    ASSERT_EQ(file_mode(bm_path(dir, "group")), 0640);
    ASSERT_OK(sm_bitmap_create(&b, dir, "owner-ro", 8, 0, 0, 0400));
    ASSERT_OK(sm_bitmap_set(b, 0, 1)); /* the creator's handle was opened before the chmod */
    sm_bitmap_close(b);
    ASSERT_EQ(file_mode(bm_path(dir, "owner-ro")), 0400);
    unsigned bad[] = {01000, 02600, 04600, 01777, 010000, 0x80000000u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_ERR(sm_bitmap_create(&b, dir, "bad", 8, 0, 0, bad[i]), -EINVAL);
    ASSERT_ERR(sm_bitmap_create(&b, dir, "bad", 8, 0, 0x4, 0), -EINVAL);
    ASSERT_ERR(sm_bitmap_create(&b, dir, "bad", 8, 0, SM_BITMAP_RDONLY, 0), -EINVAL);
    ASSERT_STR_EQ(test_listing(dir), "sharedbitmap.default sharedbitmap.group sharedbitmap.owner-ro");
    ASSERT_OK(sm_bitmap_remove(dir, "default"));
    ASSERT_OK(sm_bitmap_remove(dir, "group"));
    ASSERT_OK(sm_bitmap_remove(dir, "owner-ro"));
}

static void child_modes_077(void *arg) { (void)arg; check_modes(077); }
static void child_modes_0(void *arg) { (void)arg; check_modes(0); }

TEST(bitmap_modes) {
    ASSERT_CHILD_OK(test_spawn(child_modes_077, NULL));
    ASSERT_CHILD_OK(test_spawn(child_modes_0, NULL));
}

TEST(bitmap_sizes_and_limits) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_ERR(sm_bitmap_create(&b, dir, "s", 1000, 100, 0, 0), -EFBIG);
    ASSERT_ERR(sm_bitmap_create(&b, dir, "s", 8, SM_BITMAP_MAX_BITS + 1, 0, 0), -EFBIG);
    ASSERT_ERR(sm_bitmap_create(&b, dir, "s", SM_BITMAP_MAX_BITS + 1, 0, 0, 0), -EFBIG);
    ASSERT_ERR(sm_bitmap_create(&b, dir, "s", UINT64_MAX, 0, 0, 0), -EFBIG);
    ASSERT_STR_EQ(test_listing(dir), "");
    /* max_bits is rounded up to 64; the size may reach it exactly */
    ASSERT_OK(sm_bitmap_create(&b, dir, "s", 100, 100, 0, 0));
    ASSERT_EQ(sm_bitmap_max_bits(b), 128);
    ASSERT_OK(sm_bitmap_resize(b, 128));
    ASSERT_OK(sm_bitmap_resize(b, 121)); /* rounds to 128 */
    ASSERT_EQ(sm_bitmap_size(b), 128);
    ASSERT_ERR(sm_bitmap_resize(b, 129), -EFBIG);
    ASSERT_ERR(sm_bitmap_resize(b, UINT64_MAX), -EFBIG);
    ASSERT_EQ(sm_bitmap_size(b), 128);
    ASSERT_OK(sm_bitmap_set(b, 127, 1));
    sm_bitmap_info info;
    ASSERT_OK(sm_bitmap_stat(b, &info));
    ASSERT_EQ(info.capacity, 128); /* capacity never passes max_bits */
    sm_bitmap_close(b);
    /* the largest max_bits is accepted (a 1 TiB reservation, no memory) */
    ASSERT_OK(sm_bitmap_create(&b, dir, "huge", 8, SM_BITMAP_MAX_BITS, SM_FORCE, 0));
    ASSERT_EQ(sm_bitmap_max_bits(b), SM_BITMAP_MAX_BITS);
    ASSERT_OK(sm_bitmap_resize(b, 1 << 20));
    ASSERT_OK(sm_bitmap_set(b, (1 << 20) - 1, 1));
    sm_bitmap_close(b);
}

/* ---------------------------------------------------------------- hostile files */

struct hostile_case {
    const char *what;
    size_t off;    /* byte to change, or SIZE_MAX */
    uint64_t v64;  /* written at off as a u16/u32/u64 of that width; width 1: xor'ed in */
    int width;
    int fix_sum;   /* recompute the header checksum afterwards */
    size_t len;    /* truncate to this many bytes (0: keep) */
    int want;
};

TEST(bitmap_hostile_files) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "good", 1000, 0, 0, 0));
    ASSERT_OK(sm_bitmap_set(b, 999, 1));
    sm_bitmap_close(b);
    size_t n;
    unsigned char *good = read_file(bm_path(dir, "good"), &n);
    ASSERT_EQ(n, 4096);
    smb_header h;
    ASSERT_OK(smb_parse_header(good, n, n, &h));
    ASSERT_EQ(h.size, 1000);
    ASSERT_EQ(h.capacity, (4096 - 128) * 8);

    const struct hostile_case cases[] = {
        {"B2 wrong magic", 1, 'X', 1, 0, 0, SM_EBADMAGIC},
        {"B2 snapshot magic", 3, 'B' ^ 'P', 1, 0, 0, SM_EBADMAGIC},
        {"B2 7 bytes", SIZE_MAX, 0, 0, 0, 7, SM_EBADMAGIC},
        {"B3 10 bytes", SIZE_MAX, 0, 0, 0, 10, SM_ETRUNCATED},
        {"B3 byte order swapped", SMB_OFF_BYTE_ORDER, 0x0D0C0B0A, 4, 0, 0, SM_EENDIAN},
        {"B3 byte order other", SMB_OFF_BYTE_ORDER, 0x01020304, 4, 0, 0, SM_EHEADER},
        {"B4 version 2", SMB_OFF_VERSION, 2, 2, 1, 0, SM_EVERSION},
        {"B4 version 0", SMB_OFF_VERSION, 0, 2, 1, 0, SM_EVERSION},
        {"B5 header size 64", SMB_OFF_HEADER_SIZE, 64, 2, 1, 0, SM_EHEADER},
        {"B5 100 bytes", SIZE_MAX, 0, 0, 0, 100, SM_ETRUNCATED},
        {"B5 127 bytes", SIZE_MAX, 0, 0, 0, 127, SM_ETRUNCATED},
        {"B6 checksum", SMB_OFF_HEADER_SUM, 1, 1, 0, 0, SM_EHEADER},
        {"B6 fixed byte flipped", SMB_OFF_CREATED, 0x55, 1, 0, 0, SM_EHEADER},
        {"B7 required flag", SMB_OFF_REQUIRED_FLAGS, 1, 4, 1, 0, SM_EFEATURE},
        {"compat flag ignored", SMB_OFF_COMPAT_FLAGS, 0x80000000u, 4, 1, 0, 0},
        {"B8 reserved", SMB_OFF_RESERVED + 3, 1, 1, 1, 0, SM_EHEADER},
        {"B8 reserved (live part)", SMB_OFF_RESERVED2 + 31, 1, 1, 0, 0, SM_EHEADER},
        {"B9 max_bits 0", SMB_OFF_MAX_BITS, 0, 8, 1, 0, SM_EHEADER},
        {"B9 max_bits 65", SMB_OFF_MAX_BITS, 65, 8, 1, 0, SM_EHEADER},
        {"B9 max_bits too big", SMB_OFF_MAX_BITS, SM_BITMAP_MAX_BITS + 64, 8, 1, 0, SM_EHEADER},
        {"B9 max_bits 2^64-64", SMB_OFF_MAX_BITS, UINT64_MAX - 63, 8, 1, 0, SM_EHEADER},
        {"B10 size not a byte", SMB_OFF_SIZE, 1001, 8, 0, 0, SM_EHEADER},
        {"B10 size > capacity", SMB_OFF_SIZE, (4096 - 128) * 8 + 8, 8, 0, 0, SM_EHEADER},
        {"B10 size 2^64-8", SMB_OFF_SIZE, UINT64_MAX - 7, 8, 0, 0, SM_EHEADER},
        {"B10 capacity not a word", SMB_OFF_CAPACITY, 1032, 8, 0, 0, SM_EHEADER},
        {"B10 capacity > max_bits", SMB_OFF_CAPACITY, SM_BITMAP_DEFAULT_MAX_BITS + 64, 8, 0, 0, SM_EHEADER},
        {"B10 capacity < size", SMB_OFF_CAPACITY, 960, 8, 0, 0, SM_EHEADER},
        {"B11 truncated below capacity", SIZE_MAX, 0, 0, 0, 4000, SM_ETRUNCATED},
        {"B11 header only", SIZE_MAX, 0, 0, 0, 128, SM_ETRUNCATED},
        {"smaller capacity fits", SMB_OFF_CAPACITY, 1024, 8, 0, 0, 0},
        {"odd resize_seq (a dead resizer)", SMB_OFF_RESIZE_SEQ, 7, 8, 0, 0, 0},
        {"superseded set", SMB_OFF_SUPERSEDED, 1, 8, 0, 0, 0},
    };
    unsigned char *buf = xmalloc(n);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct hostile_case *c = &cases[i];
        memcpy(buf, good, n);
        if (c->off != SIZE_MAX) {
            if (c->width == 8)
                smf_put64(buf + c->off, c->v64);
            else if (c->width == 4)
                smf_put32(buf + c->off, (uint32_t)c->v64);
            else if (c->width == 2)
                smf_put16(buf + c->off, (uint16_t)c->v64);
            else
                buf[c->off] ^= (unsigned char)c->v64;
        }
        if (c->fix_sum)
            smf_put64(buf + SMB_OFF_HEADER_SUM, sm_hash64(buf, SMB_OFF_HEADER_SUM, 0));
        size_t len = c->len ? c->len : n;
        test_write_file(bm_path(dir, "bad"), buf, len);
        int rc = sm_bitmap_attach(&b, dir, "bad", 0);
        if (rc != c->want) {
            char g[160], w[160];
            test_fail(__FILE__, __LINE__, "%s: attach gave %s, expected %s", c->what,
                      test_code(g, sizeof g, rc), test_code(w, sizeof w, c->want));
        }
        int mrc = smb_parse_header(buf, len < SMB_HEADER_SIZE ? len : SMB_HEADER_SIZE, len, &h);
        if (mrc != c->want)
            test_fail(__FILE__, __LINE__, "%s: smb_parse_header gave %d, expected %d", c->what, mrc,
                      c->want);
        if (rc == 0) {
            ASSERT_EQ(sm_bitmap_get(b, 999), 1);
            ASSERT_OK(sm_bitmap_set(b, 5, 1)); /* an odd resize_seq does not hang a set */
            ASSERT_OK(sm_bitmap_resize(b, 2000));
            sm_bitmap_info info;
            ASSERT_OK(sm_bitmap_stat(b, &info));
            ASSERT_EQ(info.superseded, c->off == SMB_OFF_SUPERSEDED);
            sm_bitmap_close(b);
        }
        /* read-only attaches check the same */
        ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", SM_BITMAP_RDONLY), c->want);
        if (c->want == 0)
            sm_bitmap_close(b);
    }
    free(buf);

    /* a file longer than its capacity is fine (a grow that failed half-way leaves one) */
    unsigned char *longer = xcalloc(n + 8192, 1);
    memcpy(longer, good, n);
    test_write_file(bm_path(dir, "bad"), longer, n + 8192);
    ASSERT_OK(sm_bitmap_attach(&b, dir, "bad", 0));
    ASSERT_EQ(sm_bitmap_get(b, 999), 1);
    sm_bitmap_close(b);
    free(longer);

    /* random bytes, an empty file, a snapshot */
    rng r = {3};
    unsigned char junk[4096];
    rng_fill(&r, junk, sizeof junk);
    test_write_file(bm_path(dir, "bad"), junk, sizeof junk);
    ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", 0), SM_EBADMAGIC);
    test_write_file(bm_path(dir, "bad"), "", 0);
    ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", 0), SM_EBADMAGIC);
    sm_builder *bld = NULL;
    ASSERT_OK(sm_builder_new(&bld));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(bld, SM_KEYS_STR, "k", 1, &v));
    ASSERT_OK(sm_publish(bld, dir, "snap", 0, 0));
    ASSERT_OK(rename(test_path("sharedmap.snap"), bm_path(dir, "bad")));
    ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", 0), SM_EBADMAGIC);
    sm_builder_free(bld);
    /* and a bitmap is not a snapshot */
    sm_reader *rd = NULL;
    ASSERT_ERR(sm_reader_open_file(&rd, bm_path(dir, "good")), SM_EBADMAGIC);

    /* not regular files */
    unlink(bm_path(dir, "bad"));
    ASSERT_OK(mkdir(bm_path(dir, "bad"), 0700));
    ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", 0), SM_ENOTSNAPSHOT);
    ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", SM_BITMAP_RDONLY), SM_ENOTSNAPSHOT);
    rmdir(bm_path(dir, "bad"));
    ASSERT_OK(mkfifo(bm_path(dir, "bad"), 0600));
    ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", 0), SM_ENOTSNAPSHOT);
    unlink(bm_path(dir, "bad"));
    ASSERT_OK(symlink(bm_path(dir, "good"), bm_path(dir, "bad")));
    ASSERT_ERR(sm_bitmap_attach(&b, dir, "bad", 0), -ELOOP);
    unlink(bm_path(dir, "bad"));
    free(good);
}

/* Someone who may write the file makes the live words inconsistent after we attached:
 * errors, never a crash. */
TEST(bitmap_hostile_live_words) {
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "live", 1000, 0, 0, 0));
    ASSERT_OK(sm_bitmap_set(b, 10, 1));
    const char *path = bm_path(dir, "live");
    sm_bitmap_info info;
    ASSERT_OK(sm_bitmap_stat(b, &info));
    /* a size past the capacity: operations past what is mapped fail cleanly */
    poke64(path, SMB_OFF_SIZE, info.capacity + 4096);
    ASSERT_EQ(sm_bitmap_size(b), info.capacity + 4096);
    ASSERT_ERR(sm_bitmap_get(b, info.capacity + 100), SM_ECORRUPT);
    ASSERT_ERR(sm_bitmap_set(b, info.capacity + 100, 1), SM_ECORRUPT);
    uint64_t cnt;
    ASSERT_ERR(sm_bitmap_count(b, &cnt), SM_ECORRUPT);
    ASSERT_ERR(sm_bitmap_resize(b, 2000), SM_EHEADER);
    /* a capacity the file does not have */
    poke64(path, SMB_OFF_CAPACITY, info.capacity * 4);
    poke64(path, SMB_OFF_SIZE, info.capacity * 2);
    ASSERT_ERR(sm_bitmap_get(b, info.capacity + 100), SM_ETRUNCATED);
    ASSERT_ERR(sm_bitmap_resize(b, 2000), SM_ETRUNCATED);
    /* a capacity past max_bits */
    poke64(path, SMB_OFF_CAPACITY, SM_BITMAP_MAX_BITS * 2);
    ASSERT_ERR(sm_bitmap_get(b, info.capacity + 100), SM_ECORRUPT);
    /* put right again, the handle works */
    poke64(path, SMB_OFF_CAPACITY, info.capacity);
    poke64(path, SMB_OFF_SIZE, 1000);
    ASSERT_EQ(sm_bitmap_get(b, 10), 1);
    ASSERT_OK(sm_bitmap_resize(b, 2000));
    sm_bitmap_close(b);
}

/* A resizer that died half-way leaves resize_seq odd: nothing hangs, the next writable
 * handle that waits or resizes makes it even again. */
TEST(bitmap_dead_resizer) {
    const char *dir = test_dir();
    sm_bitmap *w = NULL, *r = NULL;
    ASSERT_OK(sm_bitmap_create(&w, dir, "dead", 1000, 0, 0, 0));
    ASSERT_OK(sm_bitmap_set(w, 1, 1));
    ASSERT_OK(sm_bitmap_attach(&r, dir, "dead", SM_BITMAP_RDONLY));
    const char *path = bm_path(dir, "dead");
    poke64(path, SMB_OFF_RESIZE_SEQ, 5);
    ASSERT_EQ(sm_bitmap_get(r, 1), 1); /* waits (the lock is free), does not repair */
    size_t n;
    unsigned char *f = read_file(path, &n);
    ASSERT_EQ(smf_le64(f + SMB_OFF_RESIZE_SEQ), 5);
    free(f);
    ASSERT_OK(sm_bitmap_set(w, 2, 1)); /* waits, and repairs */
    f = read_file(path, &n);
    ASSERT_EQ(smf_le64(f + SMB_OFF_RESIZE_SEQ), 6);
    free(f);
    poke64(path, SMB_OFF_RESIZE_SEQ, 9);
    ASSERT_OK(sm_bitmap_resize(w, 2000));
    f = read_file(path, &n);
    ASSERT_EQ(smf_le64(f + SMB_OFF_RESIZE_SEQ), 12);
    free(f);
    ASSERT_EQ(sm_bitmap_size(r), 2000);

    /* a resizer process killed at random moments */
    for (int round = 0; round < 5; round++) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            sm_bitmap *k = NULL;
            if (sm_bitmap_attach(&k, dir, "dead", 0))
                _exit(1);
            for (uint64_t i = 0;; i++)
                if (sm_bitmap_resize(k, 8 * (1 + i % 50000)))
                    _exit(1);
        }
        struct timespec ts = {0, (long)(2 + round * 3) * 1000000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        ASSERT_EQ(waitpid(pid, &st, 0), pid);
        ASSERT(WIFSIGNALED(st));
        ASSERT_OK(sm_bitmap_set(w, 1, 1));
        ASSERT_EQ(sm_bitmap_get(r, 1), 1);
        ASSERT_OK(sm_bitmap_resize(w, 4000));
        ASSERT_EQ(sm_bitmap_size(r), 4000);
    }
    sm_bitmap_close(r);
    sm_bitmap_close(w);
}

/* A creator killed at random moments leaves whole bitmaps and nothing sm_gc() cannot
 * remove. */
TEST(bitmap_killed_creator) {
    const char *dir = test_dir();
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            char nm[32];
            for (unsigned i = 0;; i++) {
                snprintf(nm, sizeof nm, "c%u", i % 4);
                sm_bitmap *k = NULL;
                if (sm_bitmap_create(&k, dir, nm, 1u << 20, 0, SM_FORCE, 0))
                    _exit(1);
                sm_bitmap_close(k);
            }
        }
        struct timespec ts = {0, (long)(1 + round * 2) * 1000000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        ASSERT_EQ(waitpid(pid, &st, 0), pid);
        ASSERT(WIFSIGNALED(st));
    }
    ASSERT_OK(sm_gc(dir, NULL));
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    struct dirent *de;
    int seen = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
            continue;
        ASSERT(strncmp(de->d_name, SM_BITMAP_PREFIX, strlen(SM_BITMAP_PREFIX)) == 0);
        sm_bitmap *k = NULL;
        ASSERT_OK(sm_bitmap_attach(&k, dir, de->d_name + strlen(SM_BITMAP_PREFIX), 0));
        ASSERT_EQ(sm_bitmap_size(k), 1u << 20);
        ASSERT_EQ(count_of(k), 0);
        sm_bitmap_close(k);
        seen++;
    }
    closedir(d);
    ASSERT(seen >= 1);

    /* and debris of the named kind (no O_TMPFILE): unlocked, sm_gc() removes it */
    char debris[128];
    snprintf(debris, sizeof debris, "%s/.sharedmap-tmp.1.0123456789abcdef.b", dir);
    test_write_file(debris, "x", 1);
    unsigned removed = 0;
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 1);
}

/* ---------------------------------------------------------------- the document */

/* The dump of FORMAT.md §11.8, decoded from the document itself: it is what this library
 * writes (but the creation time), and it attaches with the fields the text gives. */
TEST(bitmap_format_example) {
    size_t n;
    unsigned char *doc = read_file(test_src_path("docs/FORMAT.md"), &n);
    char *text = xmalloc(n + 1);
    memcpy(text, doc, n);
    text[n] = 0;
    free(doc);
    const char *sec = strstr(text, "### 11.8");
    ASSERT(sec != NULL);
    unsigned char ex[256];
    size_t len = 0;
    for (const char *line = sec; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        unsigned off, b[16];
        int used = 0;
        if (sscanf(line, "%4x: %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x%n", &off,
                   &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10],
                   &b[11], &b[12], &b[13], &b[14], &b[15], &used) != 17 || line[4] != ':')
            continue;
        ASSERT_EQ(off, len);
        ASSERT(len + 16 <= sizeof ex);
        for (int i = 0; i < 16; i++)
            ex[len++] = (unsigned char)b[i];
    }
    free(text);
    ASSERT_EQ(len, 160);

    /* field by field, as §11.8 reads them */
    smb_header h;
    ASSERT_OK(smb_parse_header(ex, len, len, &h));
    ASSERT_EQ(h.max_bits, 256);
    ASSERT_EQ(h.created_ns, 1700000000000000000ull);
    ASSERT_EQ(h.size, 104);
    ASSERT_EQ(h.capacity, 256);
    ASSERT_EQ(smf_le64(ex + SMB_OFF_HEADER_SUM), 0x5B0FAAA2534512BBull);
    ASSERT_EQ(ex[140], 0x10);

    /* the library writes the same bytes */
    const char *dir = test_dir();
    sm_bitmap *b = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "ex", 100, 256, 0, 0));
    ASSERT_OK(sm_bitmap_set(b, 100, 1));
    sm_bitmap_close(b);
    size_t flen;
    unsigned char *file = read_file(bm_path(dir, "ex"), &flen);
    smf_put64(file + SMB_OFF_CREATED, 1700000000000000000ull);
    smf_put64(file + SMB_OFF_HEADER_SUM, sm_hash64(file, SMB_OFF_HEADER_SUM, 0));
    ASSERT_MEM_EQ(file, flen, ex, len);
    free(file);

    /* and the document's bytes attach */
    test_write_file(bm_path(dir, "doc"), ex, len);
    ASSERT_OK(sm_bitmap_attach(&b, dir, "doc", SM_BITMAP_RDONLY));
    ASSERT_EQ(sm_bitmap_size(b), 104);
    ASSERT_EQ(sm_bitmap_max_bits(b), 256);
    ASSERT_EQ(sm_bitmap_get(b, 100), 1);
    ASSERT_EQ(count_of(b), 1);
    sm_bitmap_close(b);
}

/* ---------------------------------------------------------------- listing */

struct list_seen {
    char names[8][64];
    sm_bitmap_info info[8];
    int err[8];
    int n;
};

static int list_cb(const char *name, const sm_bitmap_info *info, int err, void *ctx) {
    struct list_seen *s = ctx;
    ASSERT(s->n < 8);
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
    s->info[s->n] = *info;
    s->err[s->n] = err;
    s->n++;
    return 0;
}

static int stop_cb(const char *name, const sm_bitmap_info *info, int err, void *ctx) {
    (void)name, (void)info, (void)err, (void)ctx;
    return 42;
}

static int map_list_cb(const char *name, const sm_info *info, int err, void *ctx) {
    (void)info, (void)err;
    (*(int *)ctx)++;
    ASSERT_STR_EQ(name, "m");
    return 0;
}

TEST(bitmap_list) {
    const char *dir = test_dir();
    sm_bitmap *a = NULL, *b = NULL;
    ASSERT_OK(sm_bitmap_create(&a, dir, "a", 100, 0, 0, 0));
    ASSERT_OK(sm_bitmap_create(&b, dir, "b", 5000000, 1 << 23, 0, 0));
    test_write_file(bm_path(dir, "junk"), "not a bitmap", 12);
    sm_builder *bld = NULL;
    ASSERT_OK(sm_builder_new(&bld));
    ASSERT_OK(sm_publish(bld, dir, "m", 0, 0));
    sm_builder_free(bld);
    struct list_seen s;
    memset(&s, 0, sizeof s);
    ASSERT_OK(sm_bitmap_list(dir, list_cb, &s));
    ASSERT_EQ(s.n, 3);
    int found = 0;
    for (int i = 0; i < s.n; i++) {
        if (strcmp(s.names[i], "a") == 0) {
            ASSERT_OK(s.err[i]);
            ASSERT_EQ(s.info[i].size, 104);
            ASSERT_EQ(s.info[i].max_bits, SM_BITMAP_DEFAULT_MAX_BITS);
            ASSERT_EQ(s.info[i].file_size, 4096);
            ASSERT_EQ(s.info[i].format_version, 1);
            found |= 1;
        } else if (strcmp(s.names[i], "b") == 0) {
            ASSERT_OK(s.err[i]);
            ASSERT_EQ(s.info[i].size, 5000000);
            ASSERT_EQ(s.info[i].max_bits, 1 << 23);
            ASSERT(s.info[i].capacity >= 5000000);
            found |= 2;
        } else {
            ASSERT_STR_EQ(s.names[i], "junk");
            ASSERT_ERR(s.err[i], SM_EBADMAGIC);
            ASSERT_EQ(s.info[i].file_size, 12);
            found |= 4;
        }
    }
    ASSERT_EQ(found, 7);
    ASSERT_ERR(sm_bitmap_list(dir, stop_cb, NULL), 42);
    /* sm_list lists maps only */
    int maps = 0;
    ASSERT_OK(sm_list(dir, map_list_cb, &maps));
    ASSERT_EQ(maps, 1);
    ASSERT_ERR(sm_bitmap_list("/nonexistent-dir-of-sharedmap", list_cb, &s), -ENOENT);
    sm_bitmap_close(a);
    sm_bitmap_close(b);
}

/* ---------------------------------------------------------------- a full tmpfs */

static void child_enospc(void *arg) {
    (void)arg;
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        printf("    skipped: no private mount namespace (%s)\n", strerror(errno));
        return;
    }
    const char *dir = test_path("small");
    ASSERT_OK(mkdir(dir, 0700));
    ASSERT_OK(mount("tmpfs", dir, "tmpfs", 0, "size=1m"));
    sm_bitmap *b = NULL, *c = NULL;
    ASSERT_OK(sm_bitmap_create(&b, dir, "b", 1000, 0, 0, 0));
    ASSERT_OK(sm_bitmap_set(b, 999, 1));
    ASSERT_ERR(sm_bitmap_resize(b, 100000000), -ENOSPC); /* 12.5 MB into 1 MB */
    ASSERT_EQ(sm_bitmap_size(b), 1000);
    ASSERT_EQ(sm_bitmap_get(b, 999), 1);
    ASSERT_OK(sm_bitmap_resize(b, 4000000)); /* 0.5 MB fits */
    ASSERT_OK(sm_bitmap_set(b, 3999999, 1));
    ASSERT_EQ(count_of(b), 2);
    ASSERT_ERR(sm_bitmap_create(&c, dir, "big", 100000000, 0, 0, 0), -ENOSPC);
    ASSERT_STR_EQ(test_listing(dir), "sharedbitmap.b");
    sm_bitmap_close(b);
    ASSERT_OK(sm_bitmap_attach(&b, dir, "b", 0));
    ASSERT_EQ(sm_bitmap_get(b, 3999999), 1);
    sm_bitmap_close(b);
    umount2(dir, MNT_DETACH);
}

TEST(bitmap_full_tmpfs_is_enospc) {
    ASSERT_CHILD_OK(test_spawn(child_enospc, NULL));
}
