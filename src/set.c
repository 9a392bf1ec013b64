/* set.c: map sets (docs/FORMAT.md §12): snapshots that partition one key range between
 * them, named by a manifest, opened as one reader.
 *
 *   manifest   header | shard table (64 bytes a shard) | strings (bounds, file names)
 *   shards     in a directory beside it (layout 1), or inside the same file after the
 *              strings (layout 2, "packed": what sm_set_publish puts in shared memory)
 *
 * Shard i holds the keys k with bound[i] <= k < bound[i + 1] (bound[0] is minus infinity,
 * bound[n] plus infinity), so the shards in order are the keys in order: a key is routed by
 * binary search over the bounds, and a rank by binary search over the entries before each
 * shard.  A set reader is an sm_reader whose `set` is not NULL: every public reader function
 * checks that first and comes here, where the work is done by the same functions on the
 * shard's own reader, so a set answers exactly as one snapshot of its entries would.
 *
 * A cursor of a set keeps its shard in the 16 bits above its record offset (offsets are
 * below 2^48, SMF_MAX_OFFSET, in any shard this accepts), so sm_cursor stays what it is.
 *
 * Opening checks everything that can be checked without reading the records (S1-S12 of
 * §12.4): the manifest whole, and each shard's header against its entry in the manifest
 * (size, count, checksums, key kind), and its first and last key against its bounds, so a
 * missing, truncated, swapped or foreign shard is an error at open, never a wrong answer.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHARD_BITS 48 /* a set cursor's offset: shard << 48 | offset in the shard */


/* ---- the manifest ---- */

typedef struct sms_entry {
    uint64_t offset, size, count, body_sum, header_sum, bound_off, name_off;
    uint32_t bound_len, name_len;
} sms_entry;

static void entry_read(const unsigned char *p, uint64_t i, sms_entry *e) {
    const unsigned char *q = p + SMS_HEADER_SIZE + i * SMS_ENTRY_SIZE;
    e->offset = smf_le64(q + SMS_E_OFFSET);
    e->size = smf_le64(q + SMS_E_SIZE);
    e->count = smf_le64(q + SMS_E_COUNT);
    e->body_sum = smf_le64(q + SMS_E_BODY_SUM);
    e->header_sum = smf_le64(q + SMS_E_HEADER_SUM);
    e->bound_off = smf_le64(q + SMS_E_BOUND_OFF);
    e->bound_len = smf_le32(q + SMS_E_BOUND_LEN);
    e->name_len = smf_le32(q + SMS_E_NAME_LEN);
    e->name_off = smf_le64(q + SMS_E_NAME_OFF);
}

/* [off, off + len) inside [lo, hi), without a sum that can wrap. */
static int inside(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi) {
    return off >= lo && off <= hi && len <= hi - off;
}

/* A file name a manifest may give: 1-255 bytes, no '/' or NUL, not "." or "..". */
static int name_ok(const unsigned char *s, size_t n) {
    if (n == 0 || n > NAME_MAX || memchr(s, '/', n) || memchr(s, 0, n))
        return 0;
    return !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

int smi_manifest_head(const unsigned char *p, uint64_t n, smi_manifest *m) {
    if (n < SMF_MAGIC_LEN || memcmp(p, SMS_MAGIC, SMF_MAGIC_LEN) != 0)
        return SM_EBADMAGIC; /* S1 */
    if (n < 16)
        return SM_ETRUNCATED;
    uint32_t order = smf_le32(p + SMF_OFF_BYTE_ORDER);
    if (order != SMF_BYTE_ORDER)
        return order == 0x0D0C0B0Au ? SM_EENDIAN : SM_EMANIFEST; /* S2 */
    if (smf_le16(p + SMF_OFF_VERSION) != SMS_VERSION)
        return SM_EVERSION; /* S3 */
    if (smf_le16(p + SMF_OFF_HEADER_SIZE) != SMS_HEADER_SIZE)
        return SM_EMANIFEST; /* S4 */
    if (n < SMS_HEADER_SIZE)
        return SM_ETRUNCATED;
    if (sm_hash64(p, SMS_OFF_HEADER_SUM, 0) != smf_le64(p + SMS_OFF_HEADER_SUM))
        return SM_EMANIFEST; /* S5 */
    if (smf_le32(p + SMS_OFF_REQUIRED_FLAGS) != 0)
        return SM_EFEATURE; /* S6 */
    for (unsigned i = SMS_OFF_RESERVED; i < SMS_OFF_TOTAL_SIZE; i++)
        if (p[i])
            return SM_EMANIFEST; /* S7 */
    for (unsigned i = SMS_OFF_RESERVED2; i < SMS_OFF_CREATED; i++)
        if (p[i])
            return SM_EMANIFEST;
    smi_manifest d;
    d.key_kind = p[SMS_OFF_KEY_KIND];
    d.layout = p[SMS_OFF_LAYOUT];
    d.total_size = smf_le64(p + SMS_OFF_TOTAL_SIZE);
    d.count = smf_le64(p + SMS_OFF_COUNT);
    d.shards = smf_le64(p + SMS_OFF_SHARDS);
    d.strings_end = smf_le64(p + SMS_OFF_STRINGS_END);
    d.created = smf_le64(p + SMS_OFF_CREATED);
    d.body_checksum = smf_le64(p + SMS_OFF_BODY_SUM);
    if (d.total_size != n)
        return SM_ETRUNCATED; /* S8 */
    /* S9: the fields, then the regions, each inside the file */
    if (d.key_kind > SM_KEYS_INT || (d.key_kind == SM_KEYS_NONE && d.count != 0) ||
        p[SMS_OFF_PARTITIONING] != SMS_RANGE || (d.layout != SMS_LAYOUT_DIR && d.layout != SMS_LAYOUT_PACKED))
        return SM_EMANIFEST;
    if (d.shards < 1 || d.shards > SMS_SHARDS_MAX)
        return SM_EMANIFEST;
    uint64_t strings = SMS_HEADER_SIZE + d.shards * SMS_ENTRY_SIZE;
    if (strings > d.strings_end || d.strings_end > n)
        return SM_EMANIFEST;
    if (d.layout == SMS_LAYOUT_DIR && d.strings_end != n)
        return SM_EMANIFEST;
    *m = d;
    return 0;
}

int smi_manifest_parse(const unsigned char *p, uint64_t n, smi_manifest *m) {
    smi_manifest d;
    int rc = smi_manifest_head(p, n, &d);
    if (rc)
        return rc;
    uint64_t strings = SMS_HEADER_SIZE + d.shards * SMS_ENTRY_SIZE;
    /* S10 */
    if (sm_hash64(p + SMS_HEADER_SIZE, (size_t)(d.strings_end - SMS_HEADER_SIZE), 0) != d.body_checksum)
        return SM_EMANIFEST;
    /* S11: each entry, and the bounds in strictly increasing order */
    uint64_t total = 0, packed_end = d.strings_end;
    const unsigned char *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < d.shards; i++) {
        sms_entry e;
        entry_read(p, i, &e);
        if (!inside(e.bound_off, e.bound_len, strings, d.strings_end) ||
            !inside(e.name_off, e.name_len, strings, d.strings_end))
            return SM_EMANIFEST;
        if (e.count > UINT64_MAX - total)
            return SM_EMANIFEST;
        total += e.count;
        if (e.size < SMF_HEADER_SIZE || e.size > SMF_MAX_OFFSET)
            return SM_EMANIFEST;
        if (d.layout == SMS_LAYOUT_DIR) {
            if (e.offset != 0 || !name_ok(p + e.name_off, e.name_len))
                return SM_EMANIFEST;
        } else {
            if (e.name_len != 0 || !inside(e.offset, e.size, packed_end, n))
                return SM_EMANIFEST;
            packed_end = e.offset + e.size;
        }
        const unsigned char *b = p + e.bound_off;
        if (i == 0) {
            if (e.bound_len != 0)
                return SM_EMANIFEST;
        } else {
            if (e.bound_len == 0 || (d.key_kind == SM_KEYS_INT && e.bound_len != SMF_INT_KEY_SIZE))
                return SM_EMANIFEST;
            if (i > 1 && smi_keycmp(prev, prev_len, b, e.bound_len) >= 0)
                return SM_EMANIFEST;
        }
        prev = b;
        prev_len = e.bound_len;
    }
    if (total != d.count)
        return SM_EMANIFEST; /* S12 */
    *m = d;
    return 0;
}

/* ---- opening ---- */

static void set_free(struct smi_set *s) {
    if (!s)
        return;
    if (s->shards && !s->packed)
        for (uint64_t i = 0; i < s->n; i++)
            if (s->shards[i].map)
                munmap(s->shards[i].map, s->shards[i].map_len);
    free(s->shards);
    free(s->before);
    free(s->bound);
    free(s->bound_len);
    free(s->search);
    free(s->bucket);
    free(s);
}

void smi_set_close(sm_reader *r) { set_free(r->set); }

/* Shard i's file in the set directory dirfd, opened into r. */
static int shard_open_file(sm_reader *r, int dirfd, const unsigned char *name, size_t len) {
    char file[NAME_MAX + 1];
    memcpy(file, name, len);
    file[len] = 0;
    int fd = smi_open_nofollow(dirfd, file);
    if (fd < 0)
        return fd;
    int rc = smi_reader_open_fd(r, fd);
    close(fd);
    return rc;
}

/* Does shard i's reader agree with its entry, the set's key kind and its bounds? */
static int shard_agrees(const struct smi_set *s, uint64_t i, const sms_entry *e, unsigned kind) {
    const sm_reader *r = &s->shards[i];
    if (r->set || r->h.total_size != e->size || r->h.count != e->count ||
        r->h.body_checksum != e->body_sum || smf_le64(r->base + SMF_OFF_HEADER_SUM) != e->header_sum)
        return SM_ESHARD;
    if (r->h.count == 0)
        return 0;
    if (r->h.key_kind != kind)
        return SM_ESHARD;
    sm_cursor c;
    sm_entry first, last;
    if (sm_seek_rank(r, 0, &c) || sm_cursor_get(&c, &first) || sm_seek_rank(r, r->h.count - 1, &c) ||
        sm_cursor_get(&c, &last))
        return SM_ESHARD;
    if (i > 0 && smi_keycmp(first.key.data, first.key.size, s->bound[i], s->bound_len[i]) < 0)
        return SM_ESHARD;
    if (i + 1 < s->n &&
        smi_keycmp(last.key.data, last.key.size, s->bound[i + 1], s->bound_len[i + 1]) >= 0)
        return SM_ESHARD;
    return 0;
}

/* The shards of the manifest m (at p, n bytes), from dirfd or from inside p, into r. */
static int set_load(sm_reader *r, const unsigned char *p, uint64_t n, const smi_manifest *mp,
                    int dirfd, const smi_set_where *where) {
    smi_manifest m = *mp;
    int rc = 0;
    struct smi_set *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->n = m.shards;
    s->packed = m.layout == SMS_LAYOUT_PACKED;
    s->shards = calloc((size_t)s->n, sizeof *s->shards);
    s->before = calloc((size_t)s->n + 1, sizeof *s->before);
    s->bound = calloc((size_t)s->n, sizeof *s->bound);
    s->bound_len = calloc((size_t)s->n, sizeof *s->bound_len);
    s->span = 1;
    while (s->span < s->n - 1)
        s->span *= 2;
    s->search = malloc((size_t)s->span * sizeof *s->search);
    s->bucket = malloc(SMI_SET_BUCKETS * sizeof *s->bucket);
    if (!s->shards || !s->before || !s->bound || !s->bound_len || !s->search || !s->bucket) {
        set_free(s);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < s->n; i++) {
        sms_entry e;
        entry_read(p, i, &e);
        s->bound[i] = p + e.bound_off;
        s->bound_len[i] = e.bound_len;
        if (i > 0)
            s->search[i - 1] = smf_prefix64(p + e.bound_off, e.bound_len);
        s->before[i + 1] = s->before[i] + e.count;
    }
    for (uint64_t j = s->n - 1; j < s->span; j++)
        s->search[j] = UINT64_MAX; /* above every prefix but the largest, which the clamp handles */
    /* the buckets: bounds (in order) whose first 2 bytes are below, and at or below, each */
    uint64_t below = 0, upto = 0;
    for (uint32_t k = 0; k < SMI_SET_BUCKETS; k++) {
        while (below < s->n - 1 && s->search[below] >> 48 < k)
            below++;
        while (upto < s->n - 1 && s->search[upto] >> 48 <= k)
            upto++;
        s->bucket[k] = (uint32_t)below | (uint32_t)upto << 16;
    }
    for (uint64_t i = 0; i < s->n && !rc; i++) {
        sms_entry e;
        entry_read(p, i, &e);
        if (s->packed)
            rc = smi_reader_init(&s->shards[i], p + e.offset, e.size);
        else
            rc = shard_open_file(&s->shards[i], dirfd, p + e.name_off, e.name_len);
        int why = rc;
        if (!rc)
            why = rc = shard_agrees(s, i, &e, m.key_kind);
        if (rc) {
            if (where->bad_shard)
                *where->bad_shard = i;
            if (where->bad_error)
                *where->bad_error = why;
            rc = SM_ESHARD;
        }
    }
    if (rc) {
        set_free(s);
        return rc;
    }
    if (s->packed)
        memset(&r->h, 0, sizeof r->h);
    r->h.version = SMS_VERSION;
    r->h.key_kind = m.key_kind;
    r->h.total_size = n;
    r->h.count = m.count;
    r->h.created = m.created;
    r->h.body_checksum = m.body_checksum;
    r->base = p;
    r->set = s;
    return 0;
}

int smi_set_open(sm_reader *r, const unsigned char *p, uint64_t n, const smi_set_where *where) {
    smi_manifest m;
    int rc = smi_manifest_parse(p, n, &m);
    if (rc)
        return rc;
    int dirfd = where->dirfd, own_dirfd = -1;
    if (m.layout == SMS_LAYOUT_DIR && dirfd < 0) {
        if (!where->path)
            return SM_ENOTSNAPSHOT; /* a directory's manifest, without its directory */
        const char *base;
        dirfd = own_dirfd = smi_open_parent(where->path, &base);
        if (dirfd < 0)
            return dirfd;
    }
    rc = set_load(r, p, n, &m, dirfd, where);
    if (own_dirfd >= 0)
        close(own_dirfd);
    return rc;
}

/* ---- what a set reader tells ---- */

uint64_t sm_reader_shard_count(const sm_reader *r) { return r->set ? r->set->n : 1; }

const sm_reader *sm_reader_shard(const sm_reader *r, uint64_t i, const void **bound, size_t *bound_len) {
    if (!r->set) {
        if (i != 0)
            return NULL;
        if (bound)
            *bound = NULL;
        if (bound_len)
            *bound_len = 0;
        return r;
    }
    if (i >= r->set->n)
        return NULL;
    if (bound)
        *bound = i ? r->set->bound[i] : NULL;
    if (bound_len)
        *bound_len = r->set->bound_len[i];
    return &r->set->shards[i];
}


/* ---- lookups ---- */

uint64_t smi_set_route_tie(const struct smi_set *s, const void *key, size_t klen, uint64_t above) {
    uint64_t lo = 1, hi = above; /* the bounds below `above` that tie decide, whole */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (smi_keycmp(s->bound[mid], s->bound_len[mid], key, klen) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* The shard that holds key (for the ordered functions here; lookups inline smi_set_route). */
static uint64_t route(const struct smi_set *s, const void *key, size_t klen) {
    return smi_set_shard(s, key, klen);
}

int smi_set_verify(const sm_reader *r) {
    const struct smi_set *s = r->set;
    for (uint64_t i = 0; i < s->n; i++) {
        int rc = sm_reader_verify(&s->shards[i]);
        if (rc)
            return rc;
    }
    if (s->packed) { /* the padding before each shard is zero (V5, for packed sets) */
        const unsigned char *at = r->base + smf_le64(r->base + SMS_OFF_STRINGS_END);
        for (uint64_t i = 0; i < s->n; i++) {
            if (!smi_zeros(at, (uint64_t)(s->shards[i].base - at)))
                return SM_ECORRUPT;
            at = s->shards[i].base + s->shards[i].h.total_size;
        }
    }
    return 0;
}

/* ---- ordered access ---- */

static uint64_t shard_of(const sm_cursor *c) { return c->offset >> SHARD_BITS; }

/* The shard cursor under a set cursor (its shard is below n: set cursors are ours). */
static sm_cursor to_shard(const sm_cursor *c) {
    const struct smi_set *s = c->reader->set;
    uint64_t i = shard_of(c);
    sm_cursor lc = {&s->shards[i], c->rank - s->before[i], c->offset & SMF_MAX_OFFSET};
    return lc;
}

/* The set cursor at shard i's cursor lc; at the end of a shard, on the first entry of the
 * next shard that has one (or past the end of the set). */
static int from_shard(const sm_reader *r, uint64_t i, sm_cursor lc, sm_cursor *c) {
    const struct smi_set *s = r->set;
    while (lc.rank == s->shards[i].h.count && i + 1 < s->n) {
        i++;
        int rc = sm_seek_rank(&s->shards[i], 0, &lc);
        if (rc)
            return rc;
    }
    c->reader = r;
    c->rank = s->before[i] + lc.rank;
    c->offset = i << SHARD_BITS | lc.offset;
    return 0;
}

int smi_set_seek_rank(const sm_reader *r, uint64_t rank, sm_cursor *c) {
    const struct smi_set *s = r->set;
    if (rank > r->h.count)
        return -ERANGE;
    /* the last shard with before[i] <= rank: the one holding it, or the last */
    uint64_t lo = 0, hi = s->n;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (s->before[mid] <= rank)
            lo = mid;
        else
            hi = mid;
    }
    sm_cursor lc;
    int rc = sm_seek_rank(&s->shards[lo], rank - s->before[lo], &lc);
    return rc ? rc : from_shard(r, lo, lc, c);
}

int smi_set_seek_key(const sm_reader *r, const void *key, size_t klen, sm_bound bound, sm_cursor *c) {
    uint64_t i = route(r->set, key, klen);
    sm_cursor lc;
    int rc = sm_seek_key(&r->set->shards[i], key, klen, bound, &lc);
    return rc ? rc : from_shard(r, i, lc, c);
}

int smi_set_cursor_get(const sm_cursor *c, sm_entry *out) {
    if (c->rank >= c->reader->h.count)
        return SM_NOTFOUND;
    sm_cursor lc = to_shard(c);
    return sm_cursor_get(&lc, out);
}

int smi_set_cursor_read(sm_cursor *c, sm_entry *out) {
    if (c->rank >= c->reader->h.count)
        return SM_NOTFOUND;
    sm_cursor lc = to_shard(c);
    int rc = sm_cursor_read(&lc, out);
    return rc ? rc : from_shard(c->reader, shard_of(c), lc, c);
}

int smi_set_cursor_next(sm_cursor *c) {
    if (c->rank >= c->reader->h.count)
        return SM_NOTFOUND;
    sm_cursor lc = to_shard(c);
    int rc = sm_cursor_next(&lc);
    if (rc && rc != SM_NOTFOUND)
        return rc;
    rc = from_shard(c->reader, shard_of(c), lc, c);
    if (rc)
        return rc;
    return c->rank == c->reader->h.count ? SM_NOTFOUND : 0;
}

int smi_set_cursor_read_many(sm_cursor *c, sm_entry *out, size_t max, size_t *nread) {
    size_t n = 0;
    *nread = 0;
    if (c->rank >= c->reader->h.count)
        return max == 0 ? 0 : SM_NOTFOUND;
    while (n < max && c->rank < c->reader->h.count) {
        sm_cursor lc = to_shard(c);
        size_t got;
        int rc = sm_cursor_read_many(&lc, out + n, max - n, &got);
        if (rc == 0)
            rc = from_shard(c->reader, shard_of(c), lc, c);
        if (rc) {
            if (n == 0)
                return rc; /* as sm_cursor_read_many: reported by the call that reads nothing */
            break;
        }
        n += got;
    }
    *nread = n;
    return 0;
}

int smi_set_rank(const sm_reader *r, const void *key, size_t klen, uint64_t *rank) {
    uint64_t i = route(r->set, key, klen), local;
    int rc = sm_rank(&r->set->shards[i], key, klen, &local);
    if (!rc && rank)
        *rank = r->set->before[i] + local;
    return rc;
}

/* Does the bound of shard i start with prefix? */
static int bound_has_prefix(const struct smi_set *s, uint64_t i, const void *prefix, size_t plen) {
    return s->bound_len[i] >= plen && memcmp(s->bound[i], prefix, plen) == 0;
}

int smi_set_prefix_range(const sm_reader *r, const void *prefix, size_t plen, uint64_t *begin,
                         uint64_t *end) {
    /* the keys with the prefix are >= it, so they start in its shard; they go on into the
     * shards after it only while those shards' bounds have the prefix too */
    const struct smi_set *s = r->set;
    uint64_t i = route(s, prefix, plen), b, e;
    int rc = sm_prefix_range(&s->shards[i], prefix, plen, &b, &e);
    if (rc)
        return rc;
    *begin = s->before[i] + b;
    *end = s->before[i] + e;
    for (uint64_t j = i + 1; j < s->n && bound_has_prefix(s, j, plen ? prefix : "", plen); j++) {
        rc = sm_prefix_range(&s->shards[j], prefix, plen, &b, &e);
        if (rc)
            return rc;
        *end = s->before[j] + e;
    }
    return 0;
}

/* ---- writing manifests ---- */

/* A shard on its way into a manifest: its header's figures, bound and file name. */
typedef struct shard_src {
    const sm_reader *r;
    const void *bound;
    size_t bound_len;
    const char *name; /* directory layout; NULL when packed */
} shard_src;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static uint64_t align64(uint64_t x) { return (x + 63) & ~UINT64_C(63); }

/* The manifest of the n shards, malloc'ed into *out (*size bytes: for a packed set the
 * manifest alone, to which the shards are then written at *offsets, and *total the size of
 * the file).  0, SM_EKEYKIND, SM_EORDER, SM_ETOOBIG, -EINVAL, -ENOMEM. */
static int manifest_make(const shard_src *src, uint64_t n, unsigned layout, unsigned char **out,
                         uint64_t *size, uint64_t *total, uint64_t *offsets) {
    if (n == 0 || n > SMS_SHARDS_MAX)
        return -EINVAL;
    unsigned kind = SM_KEYS_NONE;
    uint64_t count = 0, strings = SMS_HEADER_SIZE + n * SMS_ENTRY_SIZE, end = strings;
    for (uint64_t i = 0; i < n; i++) {
        const sm_reader *r = src[i].r;
        size_t blen = i ? src[i].bound_len : 0, nlen = src[i].name ? strlen(src[i].name) : 0;
        if (r->h.count && kind && r->h.key_kind != kind)
            return SM_EKEYKIND;
        if (r->h.count)
            kind = r->h.key_kind;
        if (i && (blen == 0 || blen > UINT32_MAX))
            return -EINVAL;
        if (i > 1 && smi_keycmp(src[i - 1].bound, src[i - 1].bound_len, src[i].bound, blen) >= 0)
            return SM_EORDER;
        if (src[i].name && !name_ok((const unsigned char *)src[i].name, nlen))
            return -EINVAL;
        count += r->h.count;
        end += blen + nlen;
    }
    for (uint64_t i = 1; i < n; i++)
        if (kind == SM_KEYS_INT && src[i].bound_len != SMF_INT_KEY_SIZE)
            return -EINVAL;
    uint64_t file = end;
    if (layout == SMS_LAYOUT_PACKED)
        for (uint64_t i = 0; i < n; i++) {
            offsets[i] = align64(file);
            file = offsets[i] + src[i].r->h.total_size;
        }
    if (end > SIZE_MAX)
        return SM_ETOOBIG;
    unsigned char *p = calloc(1, (size_t)end);
    if (!p)
        return -ENOMEM;
    uint64_t at = strings;
    for (uint64_t i = 0; i < n; i++) {
        const sm_reader *r = src[i].r;
        unsigned char *q = p + SMS_HEADER_SIZE + i * SMS_ENTRY_SIZE;
        size_t blen = i ? src[i].bound_len : 0, nlen = src[i].name ? strlen(src[i].name) : 0;
        smf_put64(q + SMS_E_OFFSET, layout == SMS_LAYOUT_PACKED ? offsets[i] : 0);
        smf_put64(q + SMS_E_SIZE, r->h.total_size);
        smf_put64(q + SMS_E_COUNT, r->h.count);
        smf_put64(q + SMS_E_BODY_SUM, r->h.body_checksum);
        smf_put64(q + SMS_E_HEADER_SUM, smf_le64(r->base + SMF_OFF_HEADER_SUM));
        smf_put64(q + SMS_E_BOUND_OFF, at);
        smf_put32(q + SMS_E_BOUND_LEN, (uint32_t)blen);
        if (blen)
            memcpy(p + at, src[i].bound, blen);
        at += blen;
        smf_put64(q + SMS_E_NAME_OFF, at);
        smf_put32(q + SMS_E_NAME_LEN, (uint32_t)nlen);
        if (nlen)
            memcpy(p + at, src[i].name, nlen);
        at += nlen;
    }
    memcpy(p, SMS_MAGIC, SMF_MAGIC_LEN);
    smf_put32(p + SMF_OFF_BYTE_ORDER, SMF_BYTE_ORDER);
    smf_put16(p + SMF_OFF_VERSION, SMS_VERSION);
    smf_put16(p + SMF_OFF_HEADER_SIZE, SMS_HEADER_SIZE);
    p[SMS_OFF_KEY_KIND] = (unsigned char)kind;
    p[SMS_OFF_PARTITIONING] = SMS_RANGE;
    p[SMS_OFF_LAYOUT] = (unsigned char)layout;
    smf_put64(p + SMS_OFF_TOTAL_SIZE, file);
    smf_put64(p + SMS_OFF_COUNT, count);
    smf_put64(p + SMS_OFF_SHARDS, n);
    smf_put64(p + SMS_OFF_STRINGS_END, end);
    smf_put64(p + SMS_OFF_CREATED, now_ns());
    smf_put64(p + SMS_OFF_BODY_SUM, sm_hash64(p + SMS_HEADER_SIZE, (size_t)(end - SMS_HEADER_SIZE), 0));
    smf_put64(p + SMS_OFF_HEADER_SUM, sm_hash64(p, SMS_OFF_HEADER_SUM, 0));
    *out = p;
    *size = end;
    *total = file;
    return 0;
}

int sm_set_write(const char *dir, uint64_t n, const char *const *names, const sm_buf *bounds,
                 unsigned flags, unsigned mode) {
    if (!dir || !names || (n > 1 && !bounds) || n == 0 || n > SMS_SHARDS_MAX || (mode & ~0777u))
        return -EINVAL;
    int dirfd = smi_open_dir(dir);
    if (dirfd < 0)
        return dirfd;
    sm_reader *shards = calloc((size_t)n, sizeof *shards);
    shard_src *src = calloc((size_t)n, sizeof *src);
    unsigned char *p = NULL;
    int rc = shards && src ? 0 : -ENOMEM;
    for (uint64_t i = 0; !rc && i < n; i++) {
        size_t len = strlen(names[i]);
        rc = name_ok((const unsigned char *)names[i], len) ? 0 : -EINVAL;
        if (!rc)
            rc = shard_open_file(&shards[i], dirfd, (const unsigned char *)names[i], len);
        src[i].r = &shards[i];
        src[i].name = names[i];
        if (i) {
            src[i].bound = bounds[i].size ? bounds[i].data : "";
            src[i].bound_len = bounds[i].size;
        }
    }
    uint64_t size = 0, total;
    if (!rc)
        rc = manifest_make(src, n, SMS_LAYOUT_DIR, &p, &size, &total, NULL);
    if (!rc) { /* what readers will check, checked now */
        sm_reader check = {0};
        smi_set_where here = {.dirfd = dirfd};
        rc = smi_set_open(&check, p, size, &here);
        smi_set_close(&check);
    }
    smi_temp t;
    if (!rc && !(rc = smi_temp_begin(&t, dirfd, SMS_MANIFEST_NAME, mode ? mode : SM_DEFAULT_MODE))) {
        rc = smi_pwrite_all(t.fd, p, (size_t)size, 0);
        if (!rc)
            rc = smi_temp_commit(&t, SMS_MANIFEST_NAME, (flags & SM_FORCE) != 0, 1);
        smi_temp_abort(&t);
    }
    for (uint64_t i = 0; shards && i < n; i++)
        if (shards[i].map)
            munmap(shards[i].map, shards[i].map_len);
    free(p);
    free(src);
    free(shards);
    close(dirfd);
    return rc;
}

typedef struct pack_fill {
    const sm_reader *r;
} pack_fill;

/* The packed set of the reader into fd: its manifest, then each shard at its offset
 * (smi_fill_fn). */
static int pack(int fd, void *ctx) {
    const sm_reader *r = ((const pack_fill *)ctx)->r;
    uint64_t n = sm_reader_shard_count(r), size, total;
    shard_src *src = calloc((size_t)n, sizeof *src);
    uint64_t *offsets = calloc((size_t)n, sizeof *offsets);
    unsigned char *p = NULL;
    int rc = src && offsets ? 0 : -ENOMEM;
    for (uint64_t i = 0; !rc && i < n; i++)
        src[i].r = sm_reader_shard(r, i, &src[i].bound, &src[i].bound_len);
    if (!rc)
        rc = manifest_make(src, n, SMS_LAYOUT_PACKED, &p, &size, &total, offsets);
    if (!rc && ftruncate(fd, (off_t)total) < 0)
        rc = -errno; /* the padding between shards: zeros */
    if (!rc)
        rc = smi_pwrite_all(fd, p, (size_t)size, 0);
    for (uint64_t i = 0; !rc && i < n; i++)
        rc = smi_pwrite_all(fd, src[i].r->base, (size_t)src[i].r->h.total_size, offsets[i]);
    free(p);
    free(offsets);
    free(src);
    return rc;
}

static int publish_packed(const sm_reader *r, smi_dest *d, int rc, unsigned flags, unsigned mode) {
    pack_fill f = {r};
    if (!rc && r->layer)
        rc = -EINVAL; /* its bytes are a layer file, whose base a packed set would not hold */
    if (!rc)
        rc = smi_publish_filled(d, flags, mode, pack, &f);
    if (d->dirfd >= 0)
        close(d->dirfd);
    return rc;
}

int sm_set_publish(const sm_reader *r, const char *dir, const char *name, unsigned flags,
                   unsigned mode) {
    smi_dest d = {.dirfd = -1};
    return publish_packed(r, &d, smi_dest_shm(&d, dir, name), flags, mode);
}

int sm_set_save(const sm_reader *r, const char *path, unsigned flags, unsigned mode) {
    smi_dest d = {.dirfd = -1};
    return publish_packed(r, &d, smi_dest_file(&d, path), flags, mode);
}
