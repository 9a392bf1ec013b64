/* layer-base.h: the base snapshot that the layer files of fuzz_layer's corpus name, made the
 * same way (created 0) by make-corpus.c and by the fuzz target, which puts it beside them. */
#ifndef FUZZ_LAYER_BASE_H
#define FUZZ_LAYER_BASE_H
#include "sharedmap.h"

#include <stdio.h>
#include <stdlib.h>

/* The base's bytes (malloc'ed) and their size; exits on failure. */
static unsigned char *layer_base(size_t *size) {
    sm_builder *b;
    if (sm_builder_new(&b))
        exit(1);
    for (int i = 0; i < 60; i += 2) {
        char k[16];
        int n = snprintf(k, sizeof k, "key%03d", i);
        sm_value v = i % 3 ? sm_value_int(i * 1000) : sm_value_str(k, (size_t)n);
        if (sm_builder_put(b, SM_KEYS_STR, k, (size_t)n, &v))
            exit(1);
    }
    uint64_t n;
    unsigned char *p = NULL;
    if (sm_builder_layout(b, &n) || !(p = malloc((size_t)n)) || sm_builder_write(b, p, n, 0))
        exit(1);
    sm_builder_free(b);
    *size = (size_t)n;
    return p;
}

/* The name a layer of the file "m" gives that base: .sharedmap-base.<header checksum>.m */
static void layer_base_name(const unsigned char *p, char *out, size_t cap) {
    unsigned long long sum = 0;
    for (int i = 7; i >= 0; i--)
        sum = sum << 8 | p[112 + i];
    snprintf(out, cap, ".sharedmap-base.%016llx.m", sum);
}
#endif
