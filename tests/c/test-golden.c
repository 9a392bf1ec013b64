/* test-golden.c: the library still writes exactly the bytes of tests/golden/small.snap
 * for the map in golden-map.h, and reads them back as tests/golden/small.expected
 * says.  A failure here means the format changed: if that was intended, bump the
 * format version as docs/FORMAT.md requires and run `make golden`. */
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

static void assert_same_bytes(const unsigned char *got, size_t gn, const unsigned char *want, size_t wn) {
    size_t n = gn < wn ? gn : wn;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            test_fail(__FILE__, __LINE__,
                      "snapshot differs from tests/golden/small.snap at byte %zu (0x%zx): 0x%02x, golden 0x%02x "
                      "(sizes %zu and %zu): the format changed",
                      i, i, got[i], want[i], gn, wn);
    if (gn != wn)
        test_fail(__FILE__, __LINE__, "snapshot is %zu bytes, tests/golden/small.snap %zu", gn, wn);
}

TEST(golden_write) {
    size_t gn;
    unsigned char *golden = read_all(test_src_path("tests/golden/small.snap"), &gn);
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    ASSERT_OK(golden_fill(b));
    size_t n;
    unsigned char *snap = snapshot_of(b, &n, GOLDEN_CREATED_NS);
    assert_same_bytes(snap, n, golden, gn);
    /* a builder copied from the golden snapshot writes the same bytes again */
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_mem(&r, golden, gn));
    sm_builder *c = NULL;
    ASSERT_OK(sm_builder_from_reader(&c, r));
    size_t n2;
    unsigned char *snap2 = snapshot_of(c, &n2, GOLDEN_CREATED_NS);
    assert_same_bytes(snap2, n2, golden, gn);
    sm_reader_close(r);
    sm_builder_free(c);
    sm_builder_free(b);
    free(snap);
    free(snap2);
    free(golden);
}

TEST(golden_read) {
    size_t en;
    unsigned char *expected = read_all(test_src_path("tests/golden/small.expected"), &en);
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_file(&r, test_src_path("tests/golden/small.snap")));
    ASSERT_OK(sm_reader_verify(r));
    size_t dn;
    char *dump = dump_to_string(r, &dn);
    if (dn != en || memcmp(dump, expected, en) != 0) {
        fprintf(stderr, "--- tests/golden/small.expected\n%.*s--- read back now\n%s", (int)en,
                (const char *)expected, dump);
        test_fail(__FILE__, __LINE__, "the golden snapshot no longer reads back as expected");
    }
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
    free(dump);
    free(expected);
    sm_reader_close(r);
}
