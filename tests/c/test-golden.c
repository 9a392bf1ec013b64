/* test-golden.c: the library still writes exactly the bytes of tests/golden/small.snap
 * and tests/golden/int.snap for the maps in golden-map.h, and reads them back as
 * tests/golden/small.expected and int.expected say.  A failure here means the format
 * changed: if that was intended, bump the format version as docs/FORMAT.md requires and
 * run `make golden`. */
#include "test.h"
#include "golden-map.h"

#include <errno.h>
#include <stdlib.h>

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        test_fail(__FILE__, __LINE__, "%s: %s (run from the repository root or set SM_TEST_SRCDIR)",
                  path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ASSERT(buf != NULL);
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

static char *dump_to_string(const sm_reader *r, size_t *n) {
    char *text = NULL;
    FILE *f = open_memstream(&text, n);
    ASSERT(f != NULL);
    ASSERT_OK(golden_dump(f, r));
    ASSERT_EQ(fclose(f), 0);
    return text;
}

static void assert_same_bytes(const unsigned char *got, size_t gn, const unsigned char *want, size_t wn,
                              const char *golden_path) {
    size_t n = gn < wn ? gn : wn;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            test_fail(__FILE__, __LINE__,
                      "snapshot differs from %s at byte %zu (0x%zx): 0x%02x, golden 0x%02x "
                      "(sizes %zu and %zu): the format changed",
                      golden_path, i, i, got[i], want[i], gn, wn);
    if (gn != wn)
        test_fail(__FILE__, __LINE__, "snapshot is %zu bytes, %s %zu", gn, golden_path, wn);
}

static void check_golden_write(const char *golden_path, int (*fill)(sm_builder *)) {
    size_t gn;
    unsigned char *golden = read_all(test_src_path(golden_path), &gn);
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    ASSERT_OK(fill(b));
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, GOLDEN_CREATED_NS);
    assert_same_bytes(snap, n, golden, gn, golden_path);
    /* a builder copied from the golden snapshot writes the same bytes again */
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, golden, gn));
    sm_builder *c = NULL;
    ASSERT_OK(sm_builder_from_reader(&c, r));
    size_t n2;
    unsigned char *snap2 = snapshot_of(c, &n2, GOLDEN_CREATED_NS);
    assert_same_bytes(snap2, n2, golden, gn, golden_path);
    sm_reader_close(r);
    sm_builder_free(c);
    sm_builder_free(b);
    free(snap);
    free(snap2);
    free(golden);
}

TEST(golden_write) {
    check_golden_write("tests/golden/small.snap", golden_fill);
}

TEST(golden_int_write) {
    check_golden_write("tests/golden/int.snap", golden_fill_int);
}

/* Opens the golden snapshot at snap_path, verifies it and checks that it dumps as
 * expected_path says; returns the reader. */
static sm_reader *check_golden_read(const char *snap_path, const char *expected_path) {
    size_t en;
    unsigned char *expected = read_all(test_src_path(expected_path), &en);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_file(&r, test_src_path(snap_path)));
    ASSERT_OK(sm_reader_verify(r));
    size_t dn;
    char *dump = dump_to_string(r, &dn);
    if (dn != en || memcmp(dump, expected, en) != 0) {
        fprintf(stderr, "--- %s\n%.*s--- read back now\n%s", expected_path, (int)en, (const char *)expected,
                dump);
        test_fail(__FILE__, __LINE__, "the golden snapshot %s no longer reads back as expected", snap_path);
    }
    free(dump);
    free(expected);
    return r;
}

TEST(golden_read) {
    sm_reader *r = check_golden_read("tests/golden/small.snap", "tests/golden/small.expected");
    /* spot checks that do not depend on the dump code */
    sm_value v;
    ASSERT_OK(sm_get(r, "tes", 3, &v));
    ASSERT_MEM_EQ(v.as.buf.data, v.as.buf.size, "32z", 3);
    ASSERT_OK(sm_get(r, "int.min", 7, &v));
    ASSERT_EQ(v.type, SM_INT);
    ASSERT_EQ(v.as.i, INT64_MIN);
    ASSERT_OK(sm_get(r, "key\0nul", 7, &v));
    ASSERT_MEM_EQ(v.as.buf.data, v.as.buf.size, "v\0v", 3);
    ASSERT_EQ(sm_reader_count(r), 36);
    sm_reader_close(r);
}

TEST(golden_int_read) {
    sm_reader *r = check_golden_read("tests/golden/int.snap", "tests/golden/int.expected");
    /* spot checks that do not depend on the dump code */
    ASSERT_EQ(sm_reader_key_kind(r), SM_KEYS_INT);
    ASSERT_EQ(sm_reader_count(r), 20);
    size_t n;
    const unsigned char *p = sm_reader_data(r, &n);
    ASSERT_EQ(p[16], 1); /* required_flags bit 0 */
    ASSERT_EQ(p[24], 3); /* key_kind */
    unsigned char k[8];
    sm_value v;
    sm_key_int(INT64_MIN, k);
    ASSERT_OK(sm_get(r, k, 8, &v));
    ASSERT_EQ(v.type, SM_STR);
    ASSERT_MEM_EQ(v.as.buf.data, v.as.buf.size, "v-9223372036854775808", 21);
    sm_key_int(42, k);
    ASSERT_OK(sm_get(r, k, 8, &v));
    ASSERT_EQ(v.type, SM_NONE);
    sm_key_int(43, k);
    ASSERT_ERR(sm_get(r, k, 8, &v), SM_NOTFOUND);
    /* the first record is INT64_MIN's: klen 8, vword D6 02 (21 << 4 | 6: a 21-byte str), then
     * its key bytes, all zero */
    ASSERT_EQ(p[128], 8);
    ASSERT_EQ(p[129], 0xD6);
    ASSERT_EQ(p[130], 0x02);
    ASSERT_MEM_EQ(p + 131, 8, "\0\0\0\0\0\0\0\0", 8);
    sm_cursor c;
    sm_entry e;
    ASSERT_OK(sm_seek_rank(r, 19, &c));
    ASSERT_OK(sm_cursor_get(&c, &e));
    ASSERT_EQ(sm_key_int_value(e.key.data), INT64_MAX);
    sm_reader_close(r);
}
