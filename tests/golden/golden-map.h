/* golden-map.h: the fixed small maps of the golden test (str keys: small.*; int keys:
 * int.*), and the text dump of a snapshot that the .expected files hold.  Shared by
 * make-golden.c (which wrote tests/golden/{small,int}.{snap,expected} once) and
 * tests/c/test-golden.c (which checks that the library still writes and reads exactly
 * those). */
#ifndef SM_GOLDEN_MAP_H
#define SM_GOLDEN_MAP_H

#include "sharedmap.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The created time stored in the golden snapshot: 2023-11-14T22:13:20Z. */
#define GOLDEN_CREATED_NS UINT64_C(1700000000000000000)

/* Fills b with the golden map (str keys, every value type, 36 entries so that the
 * sample index has three samples).  Returns 0 or the first error. */
static inline int golden_fill(sm_builder *b) {
    static char long_value[301];
    uint64_t nan_bits = UINT64_C(0x7ff8000000000001);
    double nan_value;
    memcpy(&nan_value, &nan_bits, 8);
    memset(long_value, 'L', 300);
    struct {
        const char *key;
        size_t klen;
        sm_value v;
    } e[] = {
        {"", 0, sm_value_str("empty key", 9)},
        {"aaa", 3, sm_value_str("323", 3)},
        {"zb", 2, sm_value_str("1233", 4)},
        {"tes", 3, sm_value_str("32z", 3)},
        {"\xe7\xba\xa2", 3, sm_value_str("32\xe6\x98\xaf", 5)},
        {"key\0nul", 7, sm_value_str("v\0v", 3)},
        {"int.zero", 8, sm_value_int(0)},
        {"int.minus1", 10, sm_value_int(-1)},
        {"int.small", 9, sm_value_int(42)},
        {"int.large", 9, sm_value_int(INT64_C(1234567890123))},
        {"int.max", 7, sm_value_int(INT64_MAX)},
        {"int.min", 7, sm_value_int(INT64_MIN)},
        {"float.zero", 10, sm_value_float(0.0)},
        {"float.minus0", 12, sm_value_float(-0.0)},
        {"float.pi", 8, sm_value_float(3.141592653589793)},
        {"float.inf", 9, sm_value_float(INFINITY)},
        {"float.nan", 9, sm_value_float(nan_value)},
        {"bool.true", 9, sm_value_bool(1)},
        {"bool.false", 10, sm_value_bool(0)},
        {"none", 4, sm_value_none()},
        {"bytes", 5, sm_value_bytes("\x00\x01\xfe\xff", 4)},
        {"bytes.empty", 11, sm_value_bytes("", 0)},
        {"str.empty", 9, sm_value_str("", 0)},
        {"str.long", 8, sm_value_str(long_value, 300)},
        {"\xf0\x9f\x98\x80", 4, sm_value_str("emoji", 5)},
    };
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        int rc = sm_builder_put(b, SM_KEYS_STR, e[i].key, e[i].klen, &e[i].v);
        if (rc)
            return rc;
    }
    for (int i = 0; i < 11; i++) {
        char k[8], v[16];
        int kl = snprintf(k, sizeof k, "k%02d", i);
        int vl = snprintf(v, sizeof v, "value %d", i * i);
        sm_value sv = sm_value_str(v, (size_t)vl);
        int rc = sm_builder_put(b, SM_KEYS_STR, k, (size_t)kl, &sv);
        if (rc)
            return rc;
    }
    return 0;
}

/* Fills b with the golden int map (key_kind 3, FORMAT.md §3.1): 20 keys from INT64_MIN
 * to INT64_MAX, so that the sample index has two samples, with values of every type. */
static inline int golden_fill_int(sm_builder *b) {
    static const int64_t keys[] = {INT64_MIN, INT64_MIN + 1, -(INT64_C(1) << 32), -1000, -256, -2, -1,
                                   0,         1,             2,                   42,    255,  256,
                                   65536,     INT64_C(1) << 31, INT64_C(1) << 32, INT64_C(1234567890123),
                                   INT64_C(1) << 62, INT64_MAX - 1, INT64_MAX};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char text[32];
        int tl = snprintf(text, sizeof text, "v%" PRId64, keys[i]);
        sm_value v;
        switch (i % 7) {
        case 0: v = sm_value_str(text, (size_t)tl); break;
        case 1: v = sm_value_int(-keys[i] / 2); break;
        case 2: v = sm_value_bool(1); break;
        case 3: v = sm_value_none(); break;
        case 4: v = sm_value_float((double)keys[i]); break;
        case 5: v = sm_value_bytes(text, (size_t)tl); break;
        default: v = sm_value_bool(0); break;
        }
        unsigned char k[SM_INT_KEY_SIZE];
        sm_key_int(keys[i], k);
        int rc = sm_builder_put(b, SM_KEYS_INT, k, sizeof k, &v);
        if (rc)
            return rc;
    }
    return 0;
}

/* Bytes as text: printable ASCII as is (but backslash), the rest as \xHH. */
static inline void golden_escape(FILE *f, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\')
            fputc(s[i], f);
        else
            fprintf(f, "\\x%02x", s[i]);
    }
}

/* One line per entry, in key order: KEY<TAB>TYPE<TAB>VALUE; floats as their bits; an
 * int map's keys in decimal.  Returns 0 or the first error. */
static inline int golden_dump(FILE *f, const sm_reader *r) {
    sm_info info;
    sm_reader_info(r, &info);
    fprintf(f, "# format %u, %" PRIu64 " entries, %" PRIu64 " bytes, key kind %d, seed %" PRIu64
               ", created_ns %" PRIu64 ", checksum %016" PRIx64 "\n",
            info.format_version, info.count, info.size, (int)info.key_kind, info.hash_seed,
            info.created_ns, info.checksum);
    sm_cursor c;
    sm_entry e;
    int rc = sm_seek_rank(r, 0, &c);
    if (rc)
        return rc;
    while ((rc = sm_cursor_get(&c, &e)) == 0) {
        if (info.key_kind == SM_KEYS_INT)
            fprintf(f, "%" PRId64, sm_key_int_value(e.key.data));
        else
            golden_escape(f, e.key.data, e.key.size);
        uint64_t bits;
        switch (e.value.type) {
        case SM_NONE: fputs("\tnone\t", f); break;
        case SM_FALSE: fputs("\tfalse\t", f); break;
        case SM_TRUE: fputs("\ttrue\t", f); break;
        case SM_INT: fprintf(f, "\tint\t%" PRId64, e.value.as.i); break;
        case SM_FLOAT:
            memcpy(&bits, &e.value.as.f, 8);
            fprintf(f, "\tfloat\t0x%016" PRIx64, bits);
            break;
        case SM_BYTES:
        case SM_STR:
            fputs(e.value.type == SM_STR ? "\tstr\t" : "\tbytes\t", f);
            golden_escape(f, e.value.as.buf.data, e.value.as.buf.size);
            break;
        default: fprintf(f, "\ttype%d\t", (int)e.value.type); break;
        }
        fputc('\n', f);
        rc = sm_cursor_next(&c);
        if (rc == SM_NOTFOUND)
            return 0;
        if (rc)
            return rc;
    }
    return rc == SM_NOTFOUND ? 0 : rc;
}

#endif /* SM_GOLDEN_MAP_H */
