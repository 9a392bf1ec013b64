/* internal.h: the library's private structures and helpers, shared by the .c files of src/ only.
 *
 * src/ layout.  A file per job; a file calls functions of the files on its arrow only, so
 * the calls between files form a DAG, drawn here from the top (the public entry points
 * that use the most) down to the leaves (inline helpers of this file and of format.h are
 * no calls):
 *
 *   housekeeping.c  sm_list, sm_gc                 -> publish.c open.c format.c names.c
 *   set.c           map sets: the manifest, routing, cursors over shards, sm_set_write,
 *                   sm_set_publish                 -> open.c iter.c find.c verify.c publish.c
 *                   (the one loop: each public reader function of those files hands a set
 *                   reader to set.c, which calls them on its shards, plain readers)
 *   writer.c        the streaming writer, sm_writer_*: runs sorted in a memory budget,
 *                   spilled and merged  -> publish.c dict.c format.c names.c radix.c hash.c
 *   publish.c       sm_publish, sm_save, sm_unpublish: the temporary/rename protocol, and
 *                   which temporary may be removed  -> layout.c names.c
 *   layout.c        the snapshot writer: sm_builder_layout, sm_builder_write
 *                                                   -> dict.c format.c radix.c hash.c
 *   dict.c          the builder's dictionary: put/get/del/at/clear, the copies from a
 *                   reader, the builder's memory    -> iter.c radix.c hash.c utf8.c
 *   open.c          attaching a reader, what it tells (sm_reader_info)
 *                                                   -> set.c format.c names.c publish.c
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

#include <limits.h>
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
    struct smi_set *set;       /* a map set's shards (set.c), or NULL for a snapshot; a set's
                                * base is its manifest, and h holds only its version, key_kind,
                                * total_size (the manifest's), count, created, body_checksum */
    struct smi_layer *layer;   /* a layer file's base and delta (layer.c), or NULL; its h holds
                                * the layer's version, required_flags, key_kind, total_size,
                                * count, created, body_checksum and the base's hash_seed */
};

/* A plain snapshot reader over the n bytes at p, or the file fd mapped (the shards of a set;
 * open.c).  0 or the error of R1-R9. */
int smi_reader_init(sm_reader *r, const unsigned char *p, uint64_t n);
/* smi_reader_init accepting the required flags `known` (a delta: SMF_REQ_KNOWN_DELTA). */
int smi_reader_init_as(sm_reader *r, const unsigned char *p, uint64_t n, uint32_t known);
int smi_reader_open_fd(sm_reader *r, int fd);
/* sm_reader_open_mem, with a layer's base (or a directory set's shards) in dirfd (-1: none;
 * the fuzz target of layers). */
int smi_reader_open_mem_at(sm_reader **out, const void *data, size_t size, int dirfd);
/* openat(dirfd, path) for reading a snapshot, never following a symlink as the final
 * component (SM_ESYMLINK; -ELOOP is too many of them in the directories on the way) nor
 * blocking on a FIFO: the fd, or that error or -errno (open.c). */
int smi_open_nofollow(int dirfd, const char *path);

/* Are the n bytes at p zero?  (Padding, for the verifications.) */
static inline int smi_zeros(const unsigned char *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* ---- map sets (set.c, docs/FORMAT.md §12) ---- */

/* A manifest's header, checked (S1-S12) by smi_manifest_parse, which reads all n bytes:
 * 0, SM_EBADMAGIC, SM_ETRUNCATED, SM_EENDIAN, SM_EVERSION, SM_EFEATURE, SM_EMANIFEST;
 * smi_manifest_head makes S1-S9 only, which read the first 128 bytes (n is the file's
 * size: sm_list). */
typedef struct smi_manifest {
    uint8_t key_kind, layout;
    uint64_t total_size, count, shards, strings_end, created, body_checksum;
} smi_manifest;
int smi_manifest_parse(const unsigned char *p, uint64_t n, smi_manifest *m);
int smi_manifest_head(const unsigned char *p, uint64_t n, smi_manifest *m);

/* Where a set's shards are: the directory dirfd, else that of the manifest at path (both
 * absent: only a packed set opens).  On SM_ESHARD, bad_shard and bad_error (if not NULL)
 * get the shard that failed and why (its own error, or SM_ESHARD if it disagrees). */
typedef struct smi_set_where {
    int dirfd;
    const char *path;
    const char *layer_path; /* the file's own path, shared map or not: a layer's base is beside it */
    uint64_t *bad_shard;
    int *bad_error;
    int *retry; /* set if a layer's base was missing because the layer was replaced meanwhile */
} smi_set_where;

/* r over the manifest of n bytes at p, which stays mapped by the caller (r->map) */
int smi_set_open(sm_reader *r, const unsigned char *p, uint64_t n, const smi_set_where *where);
void smi_set_close(sm_reader *r);
/* A set reader's shards and how keys find them (set.c; here for the inline routing). */
struct smi_set {
    uint64_t n;                  /* shards, 1..SMS_SHARDS_MAX */
    sm_reader *shards;           /* n plain readers */
    uint64_t *before;            /* n + 1: entries in the shards before shard i */
    const unsigned char **bound; /* n: shard i's lower bound (bound[0] unused) */
    size_t *bound_len;
    uint64_t *search;            /* span: search[j] = smf_prefix64 of bound j + 1, then UINT64_MAX */
    uint64_t span;               /* the power of two >= n - 1 (1 if n is 1 or 2) */
    uint32_t *bucket;            /* SMI_SET_BUCKETS: for the keys of each 2-byte prefix, the
                                  * bounds below that prefix (low half) and at or below it (high
                                  * half); equal halves: all those keys are in that one shard */
    int packed;
};

#define SMI_SET_BUCKETS 65536u

/* The shard of a key that ties with bound above - 1 on its 8-byte prefix (set.c). */
uint64_t smi_set_route_tie(const struct smi_set *s, const void *key, size_t klen, uint64_t above);

/* The shard that holds key: the last whose bound is <= key (shard 0 has none).  Most keys
 * are settled by their first 2 bytes (a table of 64K buckets); the others by a search without
 * branches over the bounds' 8-byte prefixes, of a fixed log2(span) steps (a branch per step
 * would be mispredicted half the time with random keys, and the instructions that a lookup
 * adds leave fewer lookups in flight at once); only a key whose prefix equals a bound's
 * needs the bounds themselves. */
static inline uint64_t smi_set_shard(const struct smi_set *s, const void *key, size_t klen) {
    if (s->n == 1)
        return 0;
    uint64_t q = smf_prefix64(klen ? key : "", klen);
    uint32_t e = s->bucket[q >> 48];
    if ((e & 0xFFFFu) == e >> 16)
        return e & 0xFFFFu; /* no bound starts with the key's first 2 bytes: one load decides */
    const uint64_t *b = s->search;
    for (uint64_t step = s->span / 2; step; step /= 2)
        b += b[step - 1] <= q ? step : 0;
    uint64_t below = (uint64_t)(b - s->search) + (*b <= q); /* bounds whose prefix is <= q */
    if (below > s->n - 1)
        below = s->n - 1; /* q = UINT64_MAX passed the padding too */
    if (below == 0 || s->search[below - 1] != q)
        return below;
    return smi_set_route_tie(s, klen ? key : "", klen, below + 1);
}

/* The shard whose range holds key (set readers only). */
static inline const sm_reader *smi_set_route(const sm_reader *r, const void *key, size_t klen) {
    return &r->set->shards[smi_set_shard(r->set, key, klen)];
}

/* The public reader functions of a set reader (every one checks r->set first) */
int smi_set_verify(const sm_reader *r);
int smi_set_seek_rank(const sm_reader *r, uint64_t rank, sm_cursor *c);
int smi_set_seek_key(const sm_reader *r, const void *key, size_t klen, sm_bound bound, sm_cursor *c);
int smi_set_cursor_get(const sm_cursor *c, sm_entry *out);
int smi_set_cursor_next(sm_cursor *c);
int smi_set_cursor_read(sm_cursor *c, sm_entry *out);
int smi_set_cursor_read_many(sm_cursor *c, sm_entry *out, size_t max, size_t *nread);
int smi_set_rank(const sm_reader *r, const void *key, size_t klen, uint64_t *rank);
int smi_set_prefix_range(const sm_reader *r, const void *prefix, size_t plen, uint64_t *begin,
                         uint64_t *end);

/* The record of key, whose hash under r's seed is h, in the plain snapshot r (find.c): 0 and
 * *rec, SM_NOTFOUND, SM_ECORRUPT.  The value is not checked (a delta's tombstones). */
int smi_probe(const sm_reader *r, const void *key, size_t klen, uint64_t h, smf_record *rec);

/* ---- layer files (layer.c, docs/FORMAT.md §13) ---- */

struct smi_layer {
    sm_reader base;              /* the base snapshot, mapped from its own file */
    sm_reader delta;             /* the delta, inside the layer file (tombstones allowed) */
    const unsigned char *index;  /* d entries of SML_INDEX_ENTRY bytes */
    const unsigned char *filter; /* filter_blocks blocks of SML_FILTER_BLOCK bytes */
    uint64_t filter_blocks;
    uint64_t d;                  /* the delta's records */
    int64_t net;                 /* the layer's count minus the base's */
    int same_seed;               /* one hash serves the delta and the base */
    char base_name[NAME_MAX + 1];
};

/* r over the layer file of n bytes at p, its base found in where->dirfd or beside
 * where->layer_path: 0, the header's error, SM_EBASE (and *where->bad_error, the base's own
 * error or SM_EBASE when it is not the one named), -ENOMEM. */
int smi_layer_open(sm_reader *r, const unsigned char *p, uint64_t n, const smi_set_where *where);
void smi_layer_close(sm_reader *r);
int smi_layer_get(const sm_reader *r, const void *key, size_t klen, sm_value *out);
int smi_layer_get_many(const sm_reader *r, size_t n, const sm_buf *keys, const int64_t *ikeys,
                       sm_value *values, int *status);
int smi_layer_verify(const sm_reader *r);

/* The edit lock of `file` in dirfd (SMI_EDIT_LOCK_PREFIX file, created 0644 if missing, so
 * that everyone who may edit can lock it), taken exclusively, waiting unless nowait: the
 * locked fd, or -errno (-EWOULDBLOCK: held).  Editors hold it from open to free; sm_gc takes
 * it (nowait) before it judges a base (edit.c). */
#define SMI_EDIT_LOCK_PREFIX ".sharedmap-edit."
int smi_edit_lock(int dirfd, const char *file, int nowait);
/* After sm_unpublish took the name `file` out of dir (NULL: SM_DEFAULT_DIR): its bases and
 * edit lock, as sm_gc removes them (housekeeping.c). */
void smi_gc_name(const char *dir, const char *file);

/* What a layer file is made of: its base (a plain reader) and that base's file name, the
 * delta's entries in a builder (tombstones for deletions), their index entries in the
 * builder's key order, and the merged map's count and key kind. */
typedef struct smi_layer_in {
    const sm_reader *base;
    const char *base_name;
    sm_builder *delta;
    const uint64_t *base_rank;
    const int64_t *adj;
    uint64_t count;
    unsigned key_kind;
} smi_layer_in;
/* The layer file's bytes, malloc'ed into *out (layer.c): 0, -EINVAL (a bad base name),
 * -ENOMEM, SM_ETOOBIG, or the builder's layout error. */
int smi_layer_build(const smi_layer_in *in, unsigned char **out, uint64_t *size);
int smi_layer_seek_rank(const sm_reader *r, uint64_t rank, sm_cursor *c);
int smi_layer_seek_key(const sm_reader *r, const void *key, size_t klen, sm_bound bound, sm_cursor *c);
int smi_layer_cursor_get(const sm_cursor *c, sm_entry *out);
int smi_layer_cursor_next(sm_cursor *c);
int smi_layer_cursor_read(sm_cursor *c, sm_entry *out);
int smi_layer_cursor_read_many(sm_cursor *c, sm_entry *out, size_t max, size_t *nread);
int smi_layer_rank(const sm_reader *r, const void *key, size_t klen, uint64_t *rank);
int smi_layer_prefix_range(const sm_reader *r, const void *prefix, size_t plen, uint64_t *begin,
                           uint64_t *end);

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

/* XXH64 over bytes that arrive in pieces (hash.c): init, any number of updates, then
 * digest, which equals sm_hash64 of the concatenation (and leaves the state usable). */
typedef struct smi_xxh64 {
    uint64_t v[4], seed, total;
    unsigned char buf[32];
    size_t nbuf;
} smi_xxh64;
void smi_xxh64_init(smi_xxh64 *s, uint64_t seed);
void smi_xxh64_update(smi_xxh64 *s, const void *data, size_t len);
uint64_t smi_xxh64_digest(const smi_xxh64 *s);

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

/* The file a publish may replace, and only that one: an editor's commit, whose version must
 * still be the one it began from (set: dev and ino of that file).  smi_install_over. */
typedef struct smi_expect {
    int set;
    uint64_t dev, ino;
} smi_expect;
/* Install tmpname over name only if name holds the file *x: 0, SM_ECONFLICT (another file
 * there, or none; nothing of ours stays public), or -errno (publish.c). */
int smi_install_over(int dirfd, const char *tmpname, const char *name, const smi_expect *x);

/* A snapshot on its way to its name, for writers that fill the file themselves (the
 * streaming writer, writer.c; publish_at): smi_temp_begin opens the locked temporary
 * in dirfd (steps 1-2 of the top of publish.c); the caller writes t->fd with pwrite;
 * smi_temp_commit fsyncs it if durable, names it and installs it under name (step 4);
 * smi_temp_abort (also after a failed commit) leaves nothing behind.  dirfd stays the
 * caller's.  begin returns 0 or -errno; commit 0 or what smi_install returns. */
typedef struct smi_temp {
    int dirfd, fd;
    int named; /* tmpname names fd: it must be unlinked on abort */
    char label[NAME_MAX + 1];
    char tmpname[NAME_MAX + 1];
    smi_expect expect; /* commit installs only over this file (begin: none) */
} smi_temp;
int smi_temp_begin(smi_temp *t, int dirfd, const char *label, unsigned mode);
int smi_temp_commit(smi_temp *t, const char *name, int force, int durable);
void smi_temp_abort(smi_temp *t);

/* Where a snapshot is published: the directory dirfd, the file name there, the label of its
 * temporaries, and whether it is made durable (fsync: a file by path, not shared memory).
 * smi_dest_shm: the map `name` in dir (NULL: SM_DEFAULT_DIR), its file SM_NAME_PREFIX name;
 * smi_dest_file: the file `path` (file points into path).  Both return 0, SM_ENAME, -EINVAL
 * (an empty path), -EISDIR (a path ending in '/'), -ENOMEM or -errno, and set dirfd (-1 on
 * failure), which the caller closes.  smi_open_parent: the directory of path, open, and its
 * last component (a pointer into path); the directory's fd or one of those errors. */
typedef struct smi_dest {
    int dirfd;
    const char *file, *label;
    int durable;
    smi_expect expect; /* set: the publish replaces only this file, else SM_ECONFLICT */
    char buf[NAME_MAX + 1];
} smi_dest;
int smi_dest_shm(smi_dest *d, const char *dir, const char *name);
int smi_dest_file(smi_dest *d, const char *path);
int smi_open_parent(const char *path, const char **base);

/* Publish at d a snapshot that fill() writes into the temporary's fd (with pwrite): the
 * protocol of the top of publish.c, for sm_publish, sm_save and the packed sets of set.c.
 * mode: permission bits only (-EINVAL otherwise); 0 is SM_DEFAULT_MODE.  Returns 0, fill's
 * error, or what smi_temp_begin and smi_temp_commit return; nothing is left on failure. */
typedef int (*smi_fill_fn)(int fd, void *ctx);
int smi_publish_filled(const smi_dest *d, unsigned flags, unsigned mode, smi_fill_fn fill, void *ctx);

/* A streaming writer whose snapshot is published at d (whose dirfd stays the caller's), as
 * sm_writer_open_shm/_file make one (writer.c; the compaction of edit.c). */
int smi_writer_open_dest(sm_writer **out, const smi_dest *d, unsigned flags, unsigned mode,
                         const sm_writer_opts *opts);

/* pwrite all n bytes at off, retried on EINTR and short writes.  0 or -errno. */
int smi_pwrite_all(int fd, const void *data, size_t n, uint64_t off);

/* ---- the builder: dict.c (the dictionary) and layout.c (the snapshot writer) ---- */

/* A sort key and what travels with it (radix.c). */
typedef struct smi_kv {
    uint64_t key;
    uint64_t val;
} smi_kv;

/* One entry: the key and the value payload side by side in the builder's arena (the
 * payload as a snapshot stores it, see layout.c), and the key's hash under the builder's
 * own index seed.  32 bytes: the payload length and the type share one word, as they
 * share the record's second varint (vlen < 2^44 is checked at put, so it is exact). */
typedef struct smi_item {
    unsigned char *data; /* klen key bytes, then vlen payload bytes, in b->arena */
    uint64_t hash;       /* sm_hash64(key, the builder's index_seed); 0 until indexed */
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
    /* 1: index (and every item's hash) is current.  0: after sm_builder_put_new() into
     * an empty builder, items were appended unindexed; index_ensure() (dict.c) builds it
     * when a lookup, put or deletion needs it. */
    int indexed;
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

/* The payload of a value as a snapshot stores it (dict.c): a pointer to it in *p (into
 * v, or into tmp for the fixed-size types) and its length.  0, -EINVAL (a NULL buffer
 * with a size), SM_EUTF8 (an SM_STR that is not UTF-8) or SM_ETYPE. */
int smi_value_payload(const sm_value *v, unsigned char tmp[8], const void **p, size_t *n);

/* Put a tombstone (type SMF_TYPE_TOMBSTONE, no payload) for key: the deletions of an edit,
 * written into a delta (dict.c).  As sm_builder_put otherwise; sm_builder_get then hands out
 * a value of type 7, which only the editor's own builder ever holds. */
int smi_builder_put_tombstone(sm_builder *b, sm_key_kind kind, const void *key, size_t klen);

/* The live bytes of b's arena; its dead bytes and its count of compactions into *dead and
 * *compactions unless NULL (dict.c; for the tests). */
uint64_t smi_builder_arena_bytes(const sm_builder *b, uint64_t *dead, uint64_t *compactions);

/* Make b->order valid: the item numbers in key order (dict.c), with scratch space for
 * b->count pairs in a and t (NULL: allocated here).  0 or -ENOMEM. */
int smi_builder_sort(sm_builder *b, smi_kv *a, smi_kv *t);

/* Free a cached layout and mark it invalid (dict.c, which owns the builder's memory). */
void smi_layout_drop(smi_layout *l);

/* ---- radix.c ---- */


/* Stable radix sort of a[0, n) on the low `bits` bits of the keys; t is scratch space
 * for n; with `two`, a large sort uses a second thread.  Returns the sorted array: a or t. */
smi_kv *smi_radix_sort(smi_kv *a, smi_kv *t, size_t n, unsigned bits, int two);

/* job(a) on a thread of its own and job(b) on this one, if two is 1 and a thread can be
 * started; else both on this one (layout.c). */
void smi_run_two(void *(*job)(void *), void *a, void *b, int two);

#endif /* SM_INTERNAL_H */
