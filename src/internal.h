/* internal.h: the library's private structures and helpers, shared by the .c files of src/ only.
 *
 * src/ layout.  A file per job; a file calls functions of the files on its arrow only, so
 * the calls between files form a DAG, drawn here from the top (the public entry points
 * that use the most) down to the leaves (inline helpers of this file and of format.h are
 * no calls):
 *
 *   housekeeping.c  sm_list, sm_gc                 -> publish.c open.c format.c names.c
 *   publish.c       sm_publish, sm_save, sm_unpublish: the temporary/rename protocol, and
 *                   which temporary may be removed  -> layout.c names.c
 *   layout.c        the snapshot writer: sm_builder_layout, sm_builder_write
 *                                                   -> dict.c format.c radix.c hash.c
 *   dict.c          the builder's dictionary: put/get/del/at/clear, the copies from a
 *                   reader, the builder's memory    -> iter.c radix.c hash.c utf8.c
 *   open.c          attaching a reader, what it tells (sm_reader_info)
 *                                                   -> format.c names.c
 *   find.c          sm_get                          -> hash.c
 *   iter.c          cursors, seeks, ranks, prefix ranges
 *   verify.c        sm_reader_verify                -> hash.c utf8.c
 *   bitmap.c        shared bitmaps (bitmap.h)       -> publish.c names.c hash.c
 *   format.c        the header: smf_header_parse (R1-R9), smf_header_write -> hash.c
 *   names.c         the name rule, file names, directories and their walk, sm_map_path
 *   radix.c         the radix sort of the builder
 *   errors.c        sm_strerror, sm_errname         -> compat.c
 *   hash.c, utf8.c, compat.c (with compat.h)        XXH64, UTF-8, libc past glibc 2.28
 */
#ifndef SM_INTERNAL_H
#define SM_INTERNAL_H

#include "compat.h"
#include "format.h"
#include "sharedmap.h"

#include <stddef.h>
#include <stdint.h>

/* ---- the reader: open.c makes it; find.c, iter.c and verify.c read through it ---- */

/* A reader: its snapshot's header, decoded and validated once at open (R1-R9), so that
 * hot paths read the fields from this struct and never re-trust the bytes. */
struct sm_reader {
    const unsigned char *base; /* first byte of the snapshot; h.total_size bytes */
    smf_header h;
    uint64_t nsamples;         /* smf_nsamples(h.count, h.sample_shift) */
    void *map;                 /* mmap'ed region to munmap, or NULL for memory */
    size_t map_len;
    uint64_t dev, ino;         /* identity of the file it was opened from (0 for memory) */
};

/* What sm_reader_info() tells from a header alone, with dev and ino 0 (open.c; sm_list
 * gives it for each header it reads). */
void smi_header_info(const smf_header *h, sm_info *out);

/* sm_get_many() (keys, ikeys NULL) and sm_get_many_int() (ikeys, keys NULL) with the
 * group size as a parameter, 1 to SMI_GET_MANY_WINDOW_MAX (clamped), so that the benchmark
 * can measure the choice of SM_GET_MANY_WINDOW (find.c). */
#define SMI_GET_MANY_WINDOW_MAX 64
int smi_get_many(const sm_reader *r, size_t n, const sm_buf *keys, const int64_t *ikeys,
                 sm_value *values, int *status, size_t window);

/* Parse the record at off, which must be a plausible record start: in
 * [SMF_HEADER_SIZE, records_end); in an int map its key must be 8 bytes (R10), so that
 * every key handed out of one can be decoded with sm_key_int_value().  Returns 0 or
 * SM_ECORRUPT. */
static inline int smi_record(const struct sm_reader *r, uint64_t off, smf_record *rec) {
    if (off < SMF_HEADER_SIZE || off >= r->h.records_end)
        return SM_ECORRUPT;
    if (smf_record_parse(r->base, off, r->h.records_end, rec))
        return SM_ECORRUPT;
    if (r->h.key_kind == SM_KEYS_INT && rec->klen != SMF_INT_KEY_SIZE)
        return SM_ECORRUPT;
    return 0;
}

/* A value from its type and payload, both already checked (smf_value_ok). */
static inline void smi_value_decode(unsigned type, const unsigned char *v, uint64_t vlen,
                                    sm_value *out) {
    out->type = (sm_type)type;
    switch (type) {
    case SM_INT:
        out->as.i = smf_int_decode(v, vlen);
        break;
    case SM_FLOAT: {
        uint64_t bits = smf_le64(v);
        memcpy(&out->as.f, &bits, 8);
        break;
    }
    case SM_BYTES:
    case SM_STR:
        out->as.buf.data = v;
        out->as.buf.size = (size_t)vlen;
        break;
    default:
        out->as.i = 0;
        break;
    }
}

/* Decode the value of a parsed record.  Returns 0 or SM_ECORRUPT. */
static inline int smi_value(const struct sm_reader *r, const smf_record *rec, sm_value *out) {
    if (!smf_value_ok(rec->type, rec->vlen))
        return SM_ECORRUPT;
    smi_value_decode(rec->type, r->base + rec->val, rec->vlen, out);
    return 0;
}

/* Sample i: the offset of record i << sample_shift. */
static inline uint64_t smi_sample_offset(const struct sm_reader *r, uint64_t i) {
    return smf_le64(r->base + r->h.samples_offset + i * SMF_SAMPLE_SIZE);
}
static inline uint64_t smi_sample_prefix(const struct sm_reader *r, uint64_t i) {
    return smf_prefix64(r->base + r->h.samples_offset + i * SMF_SAMPLE_SIZE + 8, 8);
}

/* Unsigned bytewise comparison, shorter first on a tie: <0, 0, >0. */
static inline int smi_keycmp(const void *a, size_t alen, const void *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF) (utf8.c). */
int smi_utf8_valid(const unsigned char *p, size_t n);

/* ---- names and directories (names.c) ---- */

/* The names of temporaries in a map directory, a map's (publish.c) or a bitmap's
 * (bitmap.c), start with this: sm_gc() removes those that no live writer holds. */
#define SMI_TMP_PREFIX ".sharedmap-tmp."

/* The file name prefix NAME, into out (cap bytes; NAME_MAX + 1 holds any of ours), if
 * sm_name_check() accepts name.  Returns 0 or SM_ENAME. */
int smi_file_name(char *out, size_t cap, const char *prefix, const char *name);

/* A descriptor of the directory dir (NULL: SM_DEFAULT_DIR), or -errno. */
int smi_open_dir(const char *dir);

/* Call visit(dirfd, file, rest, ctx) for each entry of dir (NULL: SM_DEFAULT_DIR) whose
 * name is prefix + rest, in no particular order, until one returns non-zero.  The
 * one walk of sm_list, sm_bitmap_list and sm_gc.  Returns 0, visit's non-zero value, or
 * -errno. */
typedef int (*smi_walk_fn)(int dirfd, const char *file, const char *rest, void *ctx);
int smi_walk(const char *dir, const char *prefix, smi_walk_fn visit, void *ctx);

/* ---- publishing (publish.c) ---- */

/* Remove the temporary `name` in dirfd if it is debris: a regular file whose lock no
 * live writer holds, its superseded word set first if it is a snapshot (the rule at the
 * top of publish.c; sm_gc calls this for each temporary).  Returns 1 if it removed it,
 * else 0. */
int smi_collect_temp(int dirfd, const char *name);

/* The temporary file protocol that maps and bitmaps (bitmap.c) share, steps 1 and 4 of
 * the top of publish.c.  smi_create_temp: a locked file with mode `mode`, anonymous
 * (O_TMPFILE) if allow_anon and the filesystem can (*anon = 1), else named tmpname (a
 * name made from label); its fd, or -errno.  smi_link_temp: the anonymous file fd gets
 * a temporary name in tmpname; 0 or -errno.  smi_install: the complete temporary moves
 * to name (with force replacing what is there, which must be a regular file, and
 * retiring it: its superseded word set, then unlinked); 0, -EEXIST, -EISDIR,
 * SM_ESYMLINK, SM_ENOTSNAPSHOT or -errno.  smi_unpublish: the regular file prefix NAME in
 * dir leaves its name and is retired (sm_unpublish, sm_bitmap_remove); 0, SM_ENAME,
 * -ENOENT, -EISDIR, SM_ESYMLINK, SM_ENOTSNAPSHOT or -errno.  A superseded word is a snapshot's or a bitmap's, as its magic says. */
int smi_create_temp(int dirfd, const char *label, unsigned mode, char *tmpname, size_t cap,
                    int allow_anon, int *anon);
int smi_link_temp(int fd, int dirfd, const char *label, char *tmpname, size_t cap);
int smi_install(int dirfd, const char *tmpname, const char *name, int force);
int smi_unpublish(const char *dir, const char *prefix, const char *name);

/* ---- the builder: dict.c (the dictionary) and layout.c (the snapshot writer) ---- */

/* One entry: the key and the value payload side by side in the builder's arena (the
 * payload as a snapshot stores it, see layout.c), and the key's hash under the builder's
 * own index seed.  32 bytes: the payload length and the type share one word, as they
 * share the record's second varint (vlen < 2^44 is checked at put, so it is exact). */
typedef struct smi_item {
    unsigned char *data; /* klen key bytes, then vlen payload bytes, in b->arena */
    uint64_t hash;       /* sm_hash64(key, the builder's index_seed) */
    uint64_t klen;
    uint64_t vt;         /* vlen << SMF_TYPE_BITS | type (sm_type) */
} smi_item;

static inline uint64_t smi_item_vlen(const smi_item *it) { return it->vt >> SMF_TYPE_BITS; }
static inline unsigned smi_item_type(const smi_item *it) {
    return (unsigned)(it->vt & ((1u << SMF_TYPE_BITS) - 1));
}

/* The builder's arena: the bytes of every entry (key then payload), bump-allocated in
 * chunks of SMI_ARENA_CHUNK (an entry larger than SMI_ARENA_CHUNK / 8 gets a chunk of its
 * own), so that an entry costs no malloc.  An overwrite or a deletion leaves its bytes
 * dead in their chunk; when the dead bytes outnumber the live ones (and pass one chunk),
 * dict.c copies the live entries into one fresh block and frees the old chunks, so that
 * the arena stays below about twice the live bytes under any churn. */
#define SMI_ARENA_CHUNK ((size_t)1 << 20)
typedef struct smi_arena {
    unsigned char **chunks; /* [0, nchunks): malloc'ed blocks, the last the current one */
    size_t nchunks, chunks_cap;
    size_t used, cap;       /* of the current chunk (0, 0: none) */
    uint64_t live, dead;    /* bytes of entries held, and of entries dropped */
    uint64_t compactions;   /* how many times it was compacted (tests read it) */
} smi_arena;

/* The cached layout of the snapshot (layout.c): its header, complete but for the body
 * checksum, and its table.  Every change of the builder drops it (dict.c). */
typedef struct smi_layout {
    int valid;
    smf_header h;        /* h.created: when this layout was computed */
    uint64_t nsamples;
    uint64_t *table;     /* h.table_slots slots, host order */
    size_t split;        /* the rank where the second half of the records starts */
    uint64_t split_off;  /* and its offset (layout.c writes the halves on two threads) */
} smi_layout;

/* From this many entries on, layout and write run on two threads (layout.c). */
#define SMI_THREAD_MIN 65536

/* The dictionary explained at the top of dict.c. */
struct sm_builder {
    smi_item *items;  /* [0, count): the entries, dense, in no order; cap allocated */
    size_t count, cap;
    uint32_t *index;  /* item number + 1; 0 = empty */
    size_t index_cap; /* power of two */
    uint32_t *order;  /* item numbers in key order; valid if order_valid */
    size_t order_cap;
    int order_valid;
    sm_key_kind kind;
    uint64_t version; /* bumped by every insertion, deletion and clear (sm_builder_version) */
    /* A random seed for the index, so that keys chosen to collide under a known
     * seed (XXH64 can be inverted) cannot make insertions quadratic. */
    uint64_t index_seed;
    smi_arena arena;  /* the bytes of the entries */
    int threads;      /* 1: layout, write and sort on one thread (tests); 0: two when they pay */
    smi_layout lay;
};

/* The live bytes of b's arena; its dead bytes and its count of compactions into *dead and
 * *compactions unless NULL (dict.c; for the tests). */
uint64_t smi_builder_arena_bytes(const sm_builder *b, uint64_t *dead, uint64_t *compactions);

/* Make b->order valid: the item numbers in key order (dict.c).  0 or -ENOMEM. */
int smi_builder_sort(sm_builder *b);

/* Free a cached layout and mark it invalid (dict.c, which owns the builder's memory). */
void smi_layout_drop(smi_layout *l);

/* ---- radix.c ---- */

/* A sort key and what travels with it. */
typedef struct smi_kv {
    uint64_t key;
    uint64_t val;
} smi_kv;

/* Stable LSD radix sort of a[0, n) on the low `bits` bits of the keys; t is scratch
 * space for n.  Returns the sorted array: a or t. */
smi_kv *smi_radix_sort(smi_kv *a, smi_kv *t, size_t n, unsigned bits);

#endif /* SM_INTERNAL_H */
