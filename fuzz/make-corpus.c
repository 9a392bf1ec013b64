/* make-corpus.c: writes the seed corpus: valid snapshots of varied shapes for
 * fuzz_reader, small edit programs for fuzz_build, bitmap files for fuzz_bitmap.  Run by
 * fuzz/run.sh when the corpus is missing; the output is deterministic. */
#include "bitmap.h"
#include "layer-base.h"
#include "sharedmap.h"

#include <limits.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned long long state = 0x2545F4914F6CDD1DULL;
static unsigned rnd(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (unsigned)(state >> 32);
}

static void emit(const char *dir, const char *name, sm_builder *b) {
    uint64_t size;
    if (sm_builder_layout(b, &size))
        exit(1);
    unsigned char *buf = malloc((size_t)size);
    if (!buf || sm_builder_write(b, buf, size, 0))
        exit(1);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, (size_t)size, f) != size || fclose(f))
        exit(1);
    free(buf);
    sm_builder_clear(b);
}

static void put(sm_builder *b, sm_key_kind kind, const void *k, size_t kl, sm_value v) {
    if (sm_builder_put(b, kind, k, kl, &v))
        exit(1);
}

/* The file of bitmap `name` in tmp, with its creation time fixed (so the seed is the same
 * on every run), its live words optionally changed, and `tail` bytes of 0xFF after it. */
static void emit_bitmap(const char *out_dir, const char *out_name, const char *tmp, const char *name,
                        uint64_t seq, uint64_t superseded, size_t tail) {
    char path[512];
    snprintf(path, sizeof path, "%s/" SM_BITMAP_PREFIX "%s", tmp, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        exit(1);
    unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - tail, f);
    fclose(f);
    if (n < SMB_HEADER_SIZE)
        exit(1);
    smf_put64(buf + SMB_OFF_CREATED, 1700000000000000000ull);
    smf_put64(buf + SMB_OFF_HEADER_SUM, sm_hash64(buf, SMB_OFF_HEADER_SUM, 0));
    smf_put64(buf + SMB_OFF_RESIZE_SEQ, seq);
    smf_put64(buf + SMB_OFF_SUPERSEDED, superseded);
    memset(buf + n, 0xFF, tail);
    snprintf(path, sizeof path, "%s/%s", out_dir, out_name);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n + tail, f) != n + tail || fclose(f))
        exit(1);
}

static sm_bitmap *bitmap(const char *tmp, const char *name, uint64_t size, uint64_t max_bits) {
    sm_bitmap *b = NULL;
    if (sm_bitmap_create(&b, tmp, name, size, max_bits, 0, 0))
        exit(1);
    return b;
}

static void bitmap_seeds(const char *out) {
    char tmp[] = "/dev/shm/sm-corpus.XXXXXX";
    if (!mkdtemp(tmp))
        exit(1);
    /* FORMAT.md §11.8 */
    sm_bitmap *b = bitmap(tmp, "example", 100, 256);
    sm_bitmap_set(b, 100, 1);
    sm_bitmap_close(b);
    emit_bitmap(out, "example.bm", tmp, "example", 0, 0, 0);
    emit_bitmap(out, "tail.bm", tmp, "example", 0, 0, 64);
    b = bitmap(tmp, "empty", 0, 64);
    sm_bitmap_close(b);
    emit_bitmap(out, "empty.bm", tmp, "empty", 0, 0, 0);
    b = bitmap(tmp, "bits", 1000, 0);
    for (uint64_t i = 0; i < 1000; i += 7)
        sm_bitmap_set(b, i, 1);
    sm_bitmap_close(b);
    emit_bitmap(out, "bits-1000.bm", tmp, "bits", 0, 0, 0);
    emit_bitmap(out, "dead-resizer-superseded.bm", tmp, "bits", 3, 1, 0);
    /* garbage past the size */
    b = bitmap(tmp, "shrunk", 2000, 1 << 16);
    for (uint64_t i = 0; i < 2000; i++)
        sm_bitmap_set(b, i, 1);
    sm_bitmap_resize(b, 1000);
    sm_bitmap_close(b);
    emit_bitmap(out, "shrunk.bm", tmp, "shrunk", 2, 0, 0);
    b = bitmap(tmp, "grown", 8, 1 << 16);
    sm_bitmap_resize(b, 40000);
    sm_bitmap_set(b, 39999, 1);
    sm_bitmap_set(b, 31744, 1);
    sm_bitmap_close(b);
    emit_bitmap(out, "grown.bm", tmp, "grown", 2, 0, 0);
    const char *names[] = {"example", "empty", "bits", "shrunk", "grown"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        sm_bitmap_remove(tmp, names[i]);
    rmdir(tmp);
}

/* A packed map set of the builders' entries into out/name: each builder a shard written
 * into the set directory tmp (created 0), the manifest with the given bounds, the packed
 * file with its created time fixed (so the seed is the same on every run). */
static void emit_set(const char *out, const char *name, const char *tmp, sm_builder **shards,
                     size_t n, const sm_buf *bounds) {
    char path[512], names[8][16];
    const char *np[8];
    mkdir(tmp, 0700);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "s%zu", i);
        np[i] = names[i];
        snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
        uint64_t size;
        unsigned char *buf;
        if (sm_builder_layout(shards[i], &size) || !(buf = malloc((size_t)size)) ||
            sm_builder_write(shards[i], buf, size, 0))
            exit(1);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, (size_t)size, f) != size || fclose(f))
            exit(1);
        free(buf);
    }
    sm_reader *r;
    snprintf(path, sizeof path, "%s/%s", out, name);
    if (sm_set_write(tmp, n, np, bounds, SM_FORCE, 0600) || sm_reader_open_file(&r, tmp) ||
        sm_set_save(r, path, SM_FORCE, 0600))
        exit(1);
    sm_reader_close(r);
    FILE *f = fopen(path, "r+b");
    unsigned char head[112];
    if (!f || fread(head, 1, sizeof head, f) != sizeof head)
        exit(1);
    memset(head + 96, 0, 8); /* created */
    uint64_t sum = sm_hash64(head, sizeof head, 0);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(sum >> (8 * i));
    if (fseek(f, 0, SEEK_SET) || fwrite(head, 1, sizeof head, f) != sizeof head ||
        fwrite(le, 1, 8, f) != 8 || fclose(f))
        exit(1);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/MANIFEST", tmp);
    unlink(path);
    rmdir(tmp);
}

static void set_seeds(const char *out) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/.tmp-set", out);
    sm_builder *b[3];
    for (int i = 0; i < 3; i++)
        if (sm_builder_new(&b[i]))
            exit(1);
    /* str: "a".."h" | "i".."p" | (empty) , bounds "i" and "q" */
    for (char c = 'a'; c <= 'p'; c++)
        put(b[c < 'i' ? 0 : 1], SM_KEYS_STR, &c, 1, sm_value_int(c));
    sm_buf sb[3] = {{NULL, 0}, {"i", 1}, {"q", 1}};
    emit_set(out, "str-3.set", tmp, b, 3, sb);
    emit_set(out, "one.set", tmp, b, 1, sb);
    /* int keys across two shards, bound 0 */
    for (int i = 0; i < 3; i++)
        sm_builder_clear(b[i]);
    unsigned char ik[SM_INT_KEY_SIZE], bound[SM_INT_KEY_SIZE];
    for (int64_t k = -40; k < 40; k += 3) {
        sm_key_int(k, ik);
        put(b[k < 0 ? 0 : 1], SM_KEYS_INT, ik, sizeof ik, sm_value_str("v", 1));
    }
    sm_key_int(0, bound);
    sm_buf ib[2] = {{NULL, 0}, {bound, sizeof bound}};
    emit_set(out, "int-2.set", tmp, b, 2, ib);
    for (int i = 0; i < 3; i++)
        sm_builder_free(b[i]);
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The layer file at path copied to out/name with its created times (the layer's and its
 * delta's) zeroed and the checksums made right again, so the seed is the same on every run. */
static void copy_layer(const char *path, const char *out, const char *name) {
    FILE *f = fopen(path, "rb");
    static unsigned char p[1 << 20];
    size_t n = f ? fread(p, 1, sizeof p, f) : 0;
    if (!f || n < 192 || fclose(f))
        exit(1);
    uint64_t doff = 0;
    for (int i = 7; i >= 0; i--)
        doff = doff << 8 | p[48 + i];
    memset(p + doff + 96, 0, 8);
    put_le64(p + doff + 112, sm_hash64(p + doff, 112, 0));
    memset(p + 96, 0, 8);
    put_le64(p + 104, sm_hash64(p + 128, n - 128, 0));
    put_le64(p + 112, sm_hash64(p, 112, 0));
    char dst[512];
    snprintf(dst, sizeof dst, "%s/%s", out, name);
    if (!(f = fopen(dst, "wb")) || fwrite(p, 1, n, f) != n || fclose(f))
        exit(1);
}

/* Layer files over layer-base.h's base (the file "m" of a scratch directory, edited), each
 * edit's delta merged with the one before. */
static void layer_seeds(const char *out) {
    char tmp[512], path[600], bname[NAME_MAX + 1], bpath[600];
    snprintf(tmp, sizeof tmp, "%s/.tmp-layer", out);
    mkdir(tmp, 0700);
    size_t n;
    unsigned char *base = layer_base(&n);
    layer_base_name(base, bname, sizeof bname);
    snprintf(path, sizeof path, "%s/m", tmp);
    snprintf(bpath, sizeof bpath, "%s/%s", tmp, bname);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(base, 1, n, f) != n || fclose(f))
        exit(1);
    free(base);
    static const char *const names[] = {"puts.layer", "deletes.layer", "mixed.layer"};
    for (int round = 0; round < 3; round++) {
        sm_edit *e;
        if (sm_edit_open_file(&e, path, NULL))
            exit(1);
        for (int i = round; i < 64; i += 5) {
            char k[16];
            int kl = snprintf(k, sizeof k, "key%03d", i);
            sm_value v = sm_value_int(-i);
            int rc = round == 1 || (round == 2 && i % 2) ? sm_edit_del(e, k, (size_t)kl)
                                                         : sm_edit_put(e, SM_KEYS_STR, k, (size_t)kl, &v);
            if (rc && rc != SM_NOTFOUND)
                exit(1);
        }
        if (sm_edit_commit(e, NULL))
            exit(1);
        sm_edit_free(e);
        copy_layer(path, out, names[round]);
    }
    char lock[600];
    snprintf(lock, sizeof lock, "%s/.sharedmap-edit.m", tmp);
    unlink(lock);
    unlink(path);
    unlink(bpath);
    rmdir(tmp);
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: make-corpus READER_DIR BUILD_DIR [BITMAP_DIR [SET_DIR [LAYER_DIR]]]\n");
        return 2;
    }
    if (argc >= 4)
        bitmap_seeds(argv[3]);
    if (argc >= 5)
        set_seeds(argv[4]);
    if (argc == 6)
        layer_seeds(argv[5]);
    const char *rd = argv[1], *bd = argv[2];
    sm_builder *b;
    if (sm_builder_new(&b))
        return 1;
    emit(rd, "empty.snap", b);
    put(b, SM_KEYS_STR, "k", 1, sm_value_str("v", 1));
    emit(rd, "one.snap", b);
    put(b, SM_KEYS_STR, "aaa", 3, sm_value_str("323", 3));
    put(b, SM_KEYS_STR, "tes", 3, sm_value_int(-2));
    put(b, SM_KEYS_STR, "zb", 2, sm_value_bool(1));
    emit(rd, "format-example.snap", b);
    /* every type */
    put(b, SM_KEYS_STR, "", 0, sm_value_none());
    put(b, SM_KEYS_STR, "f", 1, sm_value_bool(0));
    put(b, SM_KEYS_STR, "t", 1, sm_value_bool(1));
    put(b, SM_KEYS_STR, "imin", 4, sm_value_int(INT64_MIN));
    put(b, SM_KEYS_STR, "imax", 4, sm_value_int(INT64_MAX));
    put(b, SM_KEYS_STR, "i0", 2, sm_value_int(0));
    put(b, SM_KEYS_STR, "i255", 4, sm_value_int(255));
    put(b, SM_KEYS_STR, "fneg0", 5, sm_value_float(-0.0));
    put(b, SM_KEYS_STR, "fpi", 3, sm_value_float(3.14159));
    put(b, SM_KEYS_STR, "bytes", 5, sm_value_bytes("\0\1\2\xff", 4));
    put(b, SM_KEYS_STR, "\xe7\xba\xa2", 3, sm_value_str("32\xe6\x98\xaf", 5));
    put(b, SM_KEYS_STR, "long", 4, sm_value_str("0123456789012345678901234567890123456789", 40));
    emit(rd, "types.snap", b);
    /* bytes keys with NUL and 0xFF, shared prefixes across sample blocks */
    for (unsigned i = 0; i < 100; i++) {
        unsigned char k[6] = {(unsigned char)(i % 3 == 0 ? 0 : 0xFF), 'p', (unsigned char)(i / 10), (unsigned char)i, 0, 0xFF};
        put(b, SM_KEYS_BYTES, k, 2 + i % 5, sm_value_int((int64_t)i * 1000003));
    }
    emit(rd, "bytes-keys.snap", b);
    /* a few hundred random str keys */
    for (unsigned i = 0; i < 300; i++) {
        char k[32], v[48];
        unsigned kl = 1 + rnd() % 20, vl = rnd() % 40;
        for (unsigned j = 0; j < kl; j++)
            k[j] = (char)('a' + rnd() % 6);
        for (unsigned j = 0; j < vl; j++)
            v[j] = (char)('A' + rnd() % 26);
        put(b, SM_KEYS_STR, k, kl, sm_value_str(v, vl));
    }
    emit(rd, "random-300.snap", b);
    /* int keys (key_kind 3, required flag bit 0): FORMAT.md §10.1's map, then int64 edges and
     * more, over two sample blocks */
    unsigned char ik[SM_INT_KEY_SIZE];
    sm_key_int(-2, ik);
    put(b, SM_KEYS_INT, ik, sizeof ik, sm_value_str("323", 3));
    sm_key_int(42, ik);
    put(b, SM_KEYS_INT, ik, sizeof ik, sm_value_int(-2));
    sm_key_int(INT64_MAX, ik);
    put(b, SM_KEYS_INT, ik, sizeof ik, sm_value_bool(1));
    emit(rd, "int-example.snap", b);
    static const int64_t edges[] = {INT64_MIN, INT64_MIN + 1, -65536, -256, -1, 0, 1, 255, 256, 65536,
                                    INT64_MAX - 1, INT64_MAX};
    for (unsigned i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        sm_key_int(edges[i], ik);
        put(b, SM_KEYS_INT, ik, sizeof ik, sm_value_int(edges[i]));
    }
    for (unsigned i = 0; i < 30; i++) {
        sm_key_int((int64_t)i * 1000003 - 7000000, ik);
        put(b, SM_KEYS_INT, ik, sizeof ik, sm_value_int((int64_t)i));
    }
    emit(rd, "int-keys.snap", b);
    sm_builder_free(b);

    /* fuzz_build programs: op, klen, key, value bytes */
    for (int f = 0; f < 8; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/prog-%d", bd, f);
        FILE *out = fopen(path, "wb");
        if (!out)
            return 1;
        for (int i = 0; i < 40 + 20 * f; i++) {
            unsigned char op = (unsigned char)(rnd() & (f & 1 ? 0xFF : 0x7F));
            if (f < 4)
                op = (unsigned char)((op & 0xBF) | 0x40); /* str keys */
            fputc(op, out);
            fputc((int)(rnd() % 6), out);
            for (int j = 0; j < 24; j++)
                fputc("abc\0\xff"[rnd() % 5], out);
        }
        fclose(out);
    }
    return 0;
}
