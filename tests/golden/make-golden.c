/* make-golden.c: writes a golden snapshot (small.snap, or int.snap with --int) and its
 * dump (small.expected, int.expected) from the fixed maps in golden-map.h.  Run by
 * `make golden`, only when the format changes on purpose; tests/c/test-golden.c then
 * holds the library to these bytes.
 *
 *   make-golden [--int] SNAP_PATH EXPECTED_PATH */
#include "golden-map.h"

#include <stdlib.h>

static int fail(const char *what, int rc) {
    fprintf(stderr, "make-golden: %s: %s\n", what, sm_strerror(rc));
    return 1;
}

int main(int argc, char **argv) {
    int int_map = argc > 1 && strcmp(argv[1], "--int") == 0;
    if (int_map) {
        argc--;
        argv++;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: make-golden [--int] SNAP_PATH EXPECTED_PATH\n");
        return 2;
    }
    sm_builder *b = NULL;
    sm_reader *r = NULL;
    int rc = sm_builder_new(&b);
    if (rc)
        return fail("sm_builder_new", rc);
    if ((rc = int_map ? golden_fill_int(b) : golden_fill(b)))
        return fail("golden_fill", rc);
    uint64_t size;
    if ((rc = sm_builder_layout(b, &size)))
        return fail("sm_builder_layout", rc);
    unsigned char *buf = malloc((size_t)size);
    if (!buf)
        return fail("malloc", -12);
    if ((rc = sm_builder_write(b, buf, size, GOLDEN_CREATED_NS)))
        return fail("sm_builder_write", rc);
    if ((rc = sm_reader_open_mem(&r, buf, (size_t)size)))
        return fail("sm_reader_open_mem", rc);
    if ((rc = sm_reader_verify(r)))
        return fail("sm_reader_verify", rc);

    FILE *f = fopen(argv[1], "wb");
    if (!f || fwrite(buf, 1, (size_t)size, f) != size || fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    f = fopen(argv[2], "w");
    if (!f || (rc = golden_dump(f, r)) != 0 || fclose(f) != 0) {
        if (rc)
            return fail("golden_dump", rc);
        perror(argv[2]);
        return 1;
    }
    printf("wrote %s (%llu bytes) and %s\n", argv[1], (unsigned long long)size, argv[2]);
    sm_reader_close(r);
    free(buf);
    sm_builder_free(b);
    return 0;
}
