/* test.h: the C test harness (libuv style): TEST() registration, ASSERT_* macros
 * that print both sides, and the helpers the tests share (a PRNG, a sorted model
 * of a map, child processes, per-test names and directories).
 *
 * Every test runs in its own forked process with a timeout (runner.c), so a crash,
 * a sanitizer report, a leak or a hang fails that test alone.  An ASSERT that fails
 * prints where and why and ends the test's process with status 1. */
#ifndef SM_TEST_H
#define SM_TEST_H

#include "sharedmap.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* ---------------------------------------------------------------- registration */

typedef void (*test_fn)(void);

void test_register(const char *name, test_fn fn, unsigned timeout_s);

/* TEST(name) { ... } defines a test; TEST_TIMEOUT(name, s) one with its own
 * timeout in seconds (the default is 60). */
#define TEST_TIMEOUT(name, secs)                                                \
    static void test_##name(void);                                             \
    __attribute__((constructor)) static void test_register_##name(void) {      \
        test_register(#name, test_##name, secs);                               \
    }                                                                          \
    static void test_##name(void)
#define TEST(name) TEST_TIMEOUT(name, 0)

/* ---------------------------------------------------------------- assertions */

__attribute__((noreturn, format(printf, 3, 4))) void test_fail(const char *file, int line,
                                                               const char *fmt, ...);
/* Prints a code as "-30707 (SM_ECORRUPT: snapshot data is corrupt)" into buf. */
const char *test_code(char *buf, size_t n, int code);
/* Prints bytes with C escapes (at most 80 of them) into buf. */
const char *test_escape(char *buf, size_t n, const void *p, size_t len);

#define ASSERT(cond)                                                            \
    do {                                                                        \
        if (!(cond))                                                            \
            test_fail(__FILE__, __LINE__, "ASSERT(%s) failed", #cond);          \
    } while (0)

#define ASSERT_EQ(a, b)                                                         \
    do {                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                     \
        if (a_ != b_)                                                           \
            test_fail(__FILE__, __LINE__,                                       \
                      "ASSERT_EQ(%s, %s) failed: %lld (0x%llx) != %lld (0x%llx)", \
                      #a, #b, a_, (unsigned long long)a_, b_, (unsigned long long)b_); \
    } while (0)

#define ASSERT_NE(a, b)                                                         \
    do {                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                     \
        if (a_ == b_)                                                           \
            test_fail(__FILE__, __LINE__, "ASSERT_NE(%s, %s) failed: both %lld", \
                      #a, #b, a_);                                              \
    } while (0)

#define ASSERT_OK(call)                                                         \
    do {                                                                        \
        int rc_ = (call);                                                       \
        char cb_[160];                                                          \
        if (rc_ != 0)                                                           \
            test_fail(__FILE__, __LINE__, "%s returned %s, expected 0", #call,  \
                      test_code(cb_, sizeof cb_, rc_));                         \
    } while (0)

#define ASSERT_ERR(call, code)                                                  \
    do {                                                                        \
        int rc_ = (call), want_ = (code);                                       \
        char cb_[160], wb_[160];                                                \
        if (rc_ != want_)                                                       \
            test_fail(__FILE__, __LINE__, "%s returned %s, expected %s", #call, \
                      test_code(cb_, sizeof cb_, rc_),                          \
                      test_code(wb_, sizeof wb_, want_));                       \
    } while (0)

/* Any failure (non-zero) is accepted. */
#define ASSERT_FAILS(call)                                                      \
    do {                                                                        \
        int rc_ = (call);                                                       \
        if (rc_ == 0)                                                           \
            test_fail(__FILE__, __LINE__, "%s succeeded, expected an error", #call); \
    } while (0)

#define ASSERT_MEM_EQ(p, plen, q, qlen)                                         \
    do {                                                                        \
        const void *p_ = (p), *q_ = (q);                                        \
        size_t pl_ = (size_t)(plen), ql_ = (size_t)(qlen);                      \
        char pb_[400], qb_[400];                                                \
        if (pl_ != ql_ || (pl_ && memcmp(p_, q_, pl_) != 0))                    \
            test_fail(__FILE__, __LINE__,                                       \
                      "ASSERT_MEM_EQ(%s, %s) failed:\n  %zu bytes \"%s\"\n  %zu bytes \"%s\"", \
                      #p, #q, pl_, test_escape(pb_, sizeof pb_, p_, pl_), ql_,  \
                      test_escape(qb_, sizeof qb_, q_, ql_));                   \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                     \
    do {                                                                        \
        const char *a_ = (a), *b_ = (b);                                        \
        if (strcmp(a_, b_) != 0)                                                \
            test_fail(__FILE__, __LINE__, "ASSERT_STR_EQ(%s, %s) failed: \"%s\" != \"%s\"", \
                      #a, #b, a_, b_);                                          \
    } while (0)

/* ---------------------------------------------------------------- helpers */

/* splitmix64: a small deterministic PRNG. */
typedef struct rng {
    uint64_t s;
} rng;
uint64_t rng_next(rng *r);
uint64_t rng_below(rng *r, uint64_t n); /* uniform in [0, n), n > 0 */
void rng_fill(rng *r, void *p, size_t n);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xmemdup(const void *p, size_t n);

/* Bytewise comparison, shorter first on a tie (the library's key order). */
int keycmp(const void *a, size_t alen, const void *b, size_t blen);

/* The model of a map: entries owning their key and value bytes, and the oracle
 * for every query once sorted. */
typedef struct model_entry {
    unsigned char *key;
    size_t klen;
    sm_value val; /* buf payloads point at vbuf */
    unsigned char *vbuf;
    size_t seq; /* insertion order, for model_sort_unique */
} model_entry;

typedef struct model {
    model_entry *e;
    size_t n, cap;
    sm_key_kind kind;
} model;

void model_init(model *m, sm_key_kind kind);
void model_free(model *m);
/* Appends (no duplicate check: use model_sort_unique). Copies key and payload. */
void model_add(model *m, const void *key, size_t klen, const sm_value *v);
/* Sorts by key; of equal keys keeps the last added (as an overwrite does). */
void model_sort_unique(model *m);
/* bisect over the sorted model: first index with key >= (right=0) or > (right=1). */
size_t model_bisect(const model *m, const void *key, size_t klen, int right);
/* index of key, or (size_t)-1 */
size_t model_find(const model *m, const void *key, size_t klen);

/* Random model of n unique entries: str keys (ASCII and some multi-byte UTF-8) when
 * kind is SM_KEYS_STR, arbitrary bytes (NUL, 0xFF, empty) for SM_KEYS_BYTES, the
 * sm_key_int() bytes of random int64s (INT64_MIN/MAX among them) for SM_KEYS_INT, and
 * values of every type. */
void model_random(model *m, sm_key_kind kind, size_t n, uint64_t seed);

/* A random int64: all magnitudes, both signs, INT64_MIN/MAX and other edges often. */
int64_t rand_int64(rng *r);

/* A builder holding the model's entries (asserts every put succeeds). */
sm_builder *model_builder(const model *m);

/* Lays out and writes the builder's snapshot into a fresh malloc'ed buffer of the
 * exact size (so ASan sees any read past it). */
unsigned char *snapshot_of(sm_builder *b, size_t *size, uint64_t created_ns);

/* Two values are equal: same type and same payload (floats bit for bit). */
int value_eq(const sm_value *a, const sm_value *b);
#define ASSERT_VALUE_EQ(a, b)                                                   \
    do {                                                                        \
        const sm_value *va_ = (a), *vb_ = (b);                                  \
        char fa_[200], fb_[200];                                                \
        if (!value_eq(va_, vb_))                                                \
            test_fail(__FILE__, __LINE__, "ASSERT_VALUE_EQ(%s, %s) failed: %s != %s", \
                      #a, #b, value_fmt(fa_, sizeof fa_, va_),                  \
                      value_fmt(fb_, sizeof fb_, vb_));                         \
    } while (0)
const char *value_fmt(char *buf, size_t n, const sm_value *v);

/* Checks a reader against a sorted model: count, kind, every key found with its
 * value, absent keys not found, cursor walks both ways, seeks, ranks, prefixes,
 * seek_rank and verify.  probes bounds the number of seek/rank probes. */
void check_reader(const sm_reader *r, const model *m, uint64_t seed, size_t probes);

/* sm_get_many() of keys[0..n), with values and without, gives what sm_get() of each key
 * gives (status, value; a value left alone where the status is not 0), and returns the
 * first error; sm_get_many_int() of the 8-byte ones as integers likewise (all
 * SM_NOTFOUND on a map that is not an int map); n = 0 with NULL pointers is 0. */
void check_get_many(const sm_reader *r, const sm_buf *keys, size_t n);
/* check_get_many() on every key of the model (in a scrambled order), `extra` misses and
 * as many duplicates, the empty key (NULL and ""), and shorter batches. */
void check_get_many_model(const sm_reader *r, const model *m, uint64_t seed, size_t extra);

/* A map name unique to this test process: "ctest.<pid>.<tag>" (static storage,
 * eight rotating buffers).  The runner removes leftovers after the test. */
const char *test_map_name(const char *tag);
/* A private directory for this test (created on first use, removed by the runner
 * after the test): "/dev/shm/sm-ctest.<pid>". */
const char *test_dir(void);
/* test_dir() "/" name, in static storage (eight rotating buffers). */
const char *test_path(const char *name);
/* The names in dir, sorted, joined by spaces (static storage). */
const char *test_listing(const char *dir);
/* Create (or truncate) path, 0600, holding the n bytes at data. */
void test_write_file(const char *path, const void *data, size_t n);
/* Where tests/golden lives (SM_TEST_SRCDIR or "."), joined with rel. */
const char *test_src_path(const char *rel);

/* Runs fn(arg) in a child process; returns its pid.  The child exits 0 when fn
 * returns, 1 when an ASSERT in it fails. */
pid_t test_spawn(void (*fn)(void *), void *arg);
/* Waits for the child and asserts it exited 0. */
#define ASSERT_CHILD_OK(pid) test_wait_ok(__FILE__, __LINE__, pid)
void test_wait_ok(const char *file, int line, pid_t pid);

#endif /* SM_TEST_H */
