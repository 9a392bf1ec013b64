/* layer.c: layer files (docs/FORMAT.md §13): a map made of a base
 * snapshot and one delta of changes over it, opened as one reader.
 *
 *   layer file   header (SMF_REQ_LAYER) | base reference | base file name | index | filter |
 *                delta (a snapshot with SMF_REQ_TOMBSTONES: type 7 records delete their key)
 *   base         a plain snapshot beside the layer file, under the name the layer gives
 *
 * Index entry j, for delta record j: base_rank[j], the base keys below delta key j, and
 * A[j] = sum of w(i) over i < j, w = +1 for a key the base lacks, 0 for a new value of a base
 * key, -1 for a deletion.  So the merged rank of delta key j is P[j] = base_rank[j] + A[j], and
 * a base entry of base rank b with j delta keys below it has merged rank b + A[j].
 *
 * Here: open (L1-L10 of §13.8), lookups, the ordered functions and cursors over the merged
 * walk, get_many, verify (LV1-LV5) and the writer of layer files (smi_layer_build).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* A cursor of a layered map: offset = j | from_delta << 63. */
#define FROM_DELTA (UINT64_C(1) << 63)

static uint64_t index_base_rank(const struct smi_layer *L, uint64_t j) {
    return smf_le64(L->index + j * SML_INDEX_ENTRY);
}

/* A[j]; A[d] is the layer's count minus the base's. */
static int64_t index_adj(const struct smi_layer *L, uint64_t j) {
    if (j >= L->d)
        return L->net;
    return (int64_t)smf_le64(L->index + j * SML_INDEX_ENTRY + 8);
}

/* A[j] checked: |A[j]| <= d in every layer (each delta record moves it by at most 1), which
 * keeps all arithmetic on it from overflowing; SM_ECORRUPT if not. */
static int adj_at(const struct smi_layer *L, uint64_t j, int64_t *a) {
    int64_t v = index_adj(L, j);
    if (v < -(int64_t)L->d || v > (int64_t)L->d)
        return SM_ECORRUPT;
    *a = v;
    return 0;
}

/* P[j] = base_rank[j] + A[j], checked: base_rank[j] <= the base's count, and adj_at. */
static int pos_at(const struct smi_layer *L, uint64_t j, int64_t *p) {
    uint64_t b = index_base_rank(L, j);
    int64_t a;
    if (b > L->base.h.count || adj_at(L, j, &a))
        return SM_ECORRUPT;
    *p = (int64_t)b + a;
    return 0;
}

static int name_ok(const unsigned char *s, size_t n) {
    size_t plen = sizeof SML_BASE_PREFIX - 1;
    return n > plen && n <= NAME_MAX && memcmp(s, SML_BASE_PREFIX, plen) == 0 && !memchr(s, '/', n) &&
           !memchr(s, 0, n);
}

/* L1-L3: the layer's own fields, its regions and its delta. */
static int layer_parse(const unsigned char *p, uint64_t n, smf_header *h, struct smi_layer *L) {
    int rc = smf_header_parse_as(p, n, SMF_REQ_KNOWN | SMF_REQ_LAYER, h); /* R1-R8 */
    if (rc)
        return rc;
    if (n < SML_NAME)
        return SM_ETRUNCATED;
    uint32_t required = smf_le32(p + SMF_OFF_REQUIRED_FLAGS);
    unsigned kind = p[SMF_OFF_KEY_KIND];
    uint64_t count = smf_le64(p + SMF_OFF_COUNT), size = smf_le64(p + SMF_OFF_TOTAL_SIZE);
    uint64_t doff = smf_le64(p + SML_OFF_DELTA), dsize = smf_le64(p + SML_OFF_DELTA_SIZE);
    uint64_t ioff = smf_le64(p + SML_OFF_INDEX), foff = smf_le64(p + SML_OFF_FILTER);
    uint64_t fsize = smf_le64(p + SML_OFF_FILTER_SIZE), nlen = smf_le64(p + SML_OFF_NAME_LEN);
    if (size != n)
        return SM_ETRUNCATED;
    if (!(required & SMF_REQ_LAYER) || kind > SM_KEYS_INT || (kind == SM_KEYS_NONE && count) ||
        ((required & SMF_REQ_INT_KEYS) != 0) != (kind == SM_KEYS_INT) ||
        p[SMF_OFF_HASH_ID] != SMF_HASH_XXH64 || p[SMF_OFF_SAMPLE_SHIFT] != 0)
        return SM_EHEADER;
    if (nlen < 1 || nlen > NAME_MAX || nlen > n - SML_NAME || SML_NAME + nlen > ioff || ioff > foff ||
        foff > doff || doff > n || dsize != n - doff || fsize % SML_FILTER_BLOCK ||
        fsize > doff - foff || fsize / SML_FILTER_BLOCK > UINT32_MAX)
        return SM_EHEADER;
    for (unsigned i = SML_BASE_REF + 40; i < SML_NAME; i++)
        if (p[i])
            return SM_EHEADER;
    if (!name_ok(p + SML_NAME, (size_t)nlen))
        return SM_EHEADER;
    rc = smi_reader_init_as(&L->delta, p + doff, dsize, SMF_REQ_KNOWN_DELTA);
    if (rc)
        return rc == SM_ETRUNCATED ? SM_EHEADER : rc;
    L->d = L->delta.h.count;
    if (L->d > (foff - ioff) / SML_INDEX_ENTRY || (L->d == 0) != (fsize == 0) ||
        (L->d && L->delta.h.key_kind != kind))
        return SM_EHEADER;
    L->index = p + ioff;
    L->filter = p + foff;
    L->filter_blocks = fsize / SML_FILTER_BLOCK;
    memcpy(L->base_name, p + SML_NAME, (size_t)nlen);
    L->base_name[nlen] = 0;
    h->version = SMF_VERSION;
    h->required_flags = required;
    h->key_kind = (uint8_t)kind;
    h->total_size = n;
    h->count = count;
    h->created = smf_le64(p + SMF_OFF_CREATED);
    h->body_checksum = smf_le64(p + SMF_OFF_BODY_SUM);
    h->hash_seed = smf_le64(p + SML_BASE_REF + SML_R_SEED);
    return 0;
}

/* Does the base L->base agree with the reference at p? */
static int base_agrees(const unsigned char *p, const smf_header *h, struct smi_layer *L) {
    const sm_reader *b = &L->base;
    const unsigned char *ref = p + SML_BASE_REF;
    if (b->h.total_size != smf_le64(ref + SML_R_SIZE) || b->h.count != smf_le64(ref + SML_R_COUNT) ||
        b->h.body_checksum != smf_le64(ref + SML_R_BODY_SUM) ||
        smf_le64(b->base + SMF_OFF_HEADER_SUM) != smf_le64(ref + SML_R_HEADER_SUM) ||
        b->h.hash_seed != smf_le64(ref + SML_R_SEED))
        return SM_EBASE;
    if (b->h.count && b->h.key_kind != h->key_kind)
        return SM_EBASE;
    return 0;
}

/* The layer's count against its base's: they differ by at most the delta's records. */
static int counts_agree(const smf_header *h, struct smi_layer *L) {
    uint64_t bc = L->base.h.count, c = h->count;
    if ((c > bc && c - bc > L->d) || (bc > c && bc - c > L->d))
        return SM_EHEADER;
    L->net = (int64_t)c - (int64_t)bc;
    L->same_seed = L->base.h.hash_seed == L->delta.h.hash_seed;
    return 0;
}

int smi_layer_open(sm_reader *r, const unsigned char *p, uint64_t n, const smi_set_where *where) {
    struct smi_layer *L = calloc(1, sizeof *L);
    if (!L)
        return -ENOMEM;
    smf_header h;
    memset(&h, 0, sizeof h);
    int rc = layer_parse(p, n, &h, L);
    int dirfd = where->dirfd, own_dirfd = -1;
    if (!rc && dirfd < 0) {
        const char *last;
        if (!where->layer_path)
            rc = SM_EBASE; /* a layer in memory: its base is nowhere */
        else if ((dirfd = own_dirfd = smi_open_parent(where->layer_path, &last)) < 0)
            rc = dirfd;
    }
    int base_open = 0;
    if (!rc) {
        int fd = smi_open_nofollow(dirfd, L->base_name);
        int why = fd < 0 ? fd : smi_reader_open_fd(&L->base, fd);
        if (fd >= 0)
            close(fd);
        base_open = why == 0;
        if (!why)
            why = base_agrees(p, &h, L);
        if (why == -ENOENT && where->retry && sm_reader_superseded(&(sm_reader){.base = p}))
            *where->retry = 1; /* a compaction took the base away after we opened the layer */
        if (why) {
            rc = SM_EBASE; /* whatever the base's own error (the base's SM_EHEADER too) */
            if (where->bad_error)
                *where->bad_error = why;
        } else {
            rc = counts_agree(&h, L);
        }
    }
    if (own_dirfd >= 0)
        close(own_dirfd);
    if (rc) {
        if (base_open && L->base.map)
            munmap(L->base.map, L->base.map_len);
        free(L);
        return rc;
    }
    r->base = p;
    r->h = h;
    r->layer = L;
    return 0;
}

void smi_layer_close(sm_reader *r) {
    struct smi_layer *L = r->layer;
    if (L->base.map)
        munmap(L->base.map, L->base.map_len);
    free(L);
    r->layer = NULL;
}

/* ---- lookups ---- */

static int filter_maybe(const struct smi_layer *L, uint64_t h) {
    if (!L->filter_blocks)
        return 0;
    return sml_filter_has(L->filter + sml_filter_block(h, L->filter_blocks) * SML_FILTER_BLOCK, h);
}

int smi_layer_get(const sm_reader *r, const void *key, size_t klen, sm_value *out) {
    const struct smi_layer *L = r->layer;
    if (!klen)
        key = "";
    uint64_t h = sm_hash64(key, klen, L->delta.h.hash_seed);
    if (filter_maybe(L, h)) {
        smf_record rec;
        int rc = smi_probe(&L->delta, key, klen, h, &rec);
        if (rc != SM_NOTFOUND) {
            if (rc)
                return rc;
            if (rec.type == SMF_TYPE_TOMBSTONE)
                return rec.vlen ? SM_ECORRUPT : SM_NOTFOUND;
            if (out)
                return smi_value(&L->delta, &rec, out);
            return smf_value_ok(rec.type, rec.vlen) ? 0 : SM_ECORRUPT;
        }
    }
    const sm_reader *b = &L->base;
    if (!b->h.count)
        return SM_NOTFOUND;
    uint64_t hb = L->same_seed ? h : sm_hash64(key, klen, b->h.hash_seed);
    smf_record rec;
    int rc = smi_probe(b, key, klen, hb, &rec);
    if (rc)
        return rc;
    if (out)
        return smi_value(b, &rec, out);
    return smf_value_ok(rec.type, rec.vlen) ? 0 : SM_ECORRUPT;
}

/* ---- the merged walk ---- */

/* Where a walk stands: the next base record (rank b, at boff) and the next delta record
 * (rank j, at doff). */
typedef struct walk {
    uint64_t b, boff, j, doff;
} walk;

static int walk_at(const struct smi_layer *L, uint64_t b, uint64_t j, walk *w) {
    sm_cursor bc, dc;
    if (b > L->base.h.count || j > L->d)
        return SM_ECORRUPT;
    int rc = sm_seek_rank(&L->base, b, &bc);
    if (!rc)
        rc = sm_seek_rank(&L->delta, j, &dc);
    if (rc)
        return rc == -ERANGE ? SM_ECORRUPT : rc;
    w->b = b;
    w->boff = bc.offset;
    w->j = j;
    w->doff = dc.offset;
    return 0;
}

/* The walk of the cursor c. */
static int walk_of(const sm_cursor *c, walk *w) {
    const struct smi_layer *L = c->reader->layer;
    uint64_t j = c->offset & ~FROM_DELTA;
    if (j > L->d)
        return SM_ECORRUPT;
    if (c->offset & FROM_DELTA)
        return j < L->d ? walk_at(L, index_base_rank(L, j), j, w) : SM_ECORRUPT;
    int64_t a;
    if (adj_at(L, j, &a) || (a > 0 && (uint64_t)a > c->rank))
        return SM_ECORRUPT;
    return walk_at(L, (uint64_t)((int64_t)c->rank - a), j, w);
}

/* The next entry of the walk: which side it comes from (*side: 0 base, 1 delta, 2 both: a
 * delta record with the base's key), skipping deletions; SM_NOTFOUND at the end of both. */
static int walk_peek(const struct smi_layer *L, walk *w, smf_record *brec, smf_record *drec, int *side) {
    for (;;) {
        int hb = w->b < L->base.h.count, hd = w->j < L->d;
        if (hb && smi_record(&L->base, w->boff, brec))
            return SM_ECORRUPT;
        if (hd && smi_record(&L->delta, w->doff, drec))
            return SM_ECORRUPT;
        if (!hb && !hd)
            return SM_NOTFOUND;
        int cmp = !hd ? -1 : !hb ? 1
                  : smi_keycmp(L->base.base + brec->key, (size_t)brec->klen,
                               L->delta.base + drec->key, (size_t)drec->klen);
        if (cmp < 0) {
            *side = 0;
            return 0;
        }
        if (drec->type != SMF_TYPE_TOMBSTONE) {
            *side = cmp == 0 ? 2 : 1;
            return 0;
        }
        /* a deletion: skip it, and the base key it deletes */
        w->j++;
        w->doff = drec->next;
        if (cmp == 0) {
            w->b++;
            w->boff = brec->next;
        }
    }
}

static void walk_step(walk *w, const smf_record *brec, const smf_record *drec, int side) {
    if (side != 1) {
        w->b++;
        w->boff = brec->next;
    }
    if (side != 0) {
        w->j++;
        w->doff = drec->next;
    }
}

/* The entry the walk is at (after walk_peek). */
static int walk_entry(const struct smi_layer *L, const smf_record *brec, const smf_record *drec,
                      int side, sm_entry *out) {
    const sm_reader *from = side ? &L->delta : &L->base;
    const smf_record *rec = side ? drec : brec;
    out->key.data = from->base + rec->key;
    out->key.size = (size_t)rec->klen;
    return smi_value(from, rec, &out->value);
}

/* The cursor at merged rank `rank` whose walk is w (peeked: side says where its entry is). */
static void cursor_set(sm_cursor *c, const sm_reader *r, uint64_t rank, const walk *w, int side,
                       int at_end) {
    c->reader = r;
    c->rank = rank;
    c->offset = at_end ? r->layer->d : w->j | (side ? FROM_DELTA : 0);
}

/* c moved to rank at the walk w: peek at its entry to say where it is. */
static int cursor_settle(sm_cursor *c, const sm_reader *r, uint64_t rank, walk *w) {
    if (rank >= r->h.count) {
        cursor_set(c, r, r->h.count, w, 0, 1);
        return 0;
    }
    smf_record brec, drec;
    int side;
    int rc = walk_peek(r->layer, w, &brec, &drec, &side);
    if (rc)
        return rc == SM_NOTFOUND ? SM_ECORRUPT : rc; /* fewer entries than the count says */
    cursor_set(c, r, rank, w, side, 0);
    return 0;
}

int smi_layer_seek_rank(const sm_reader *r, uint64_t rank, sm_cursor *c) {
    const struct smi_layer *L = r->layer;
    if (rank > r->h.count)
        return -ERANGE;
    sm_cursor at;
    if (rank == r->h.count) {
        at.reader = r;
        at.rank = rank;
        at.offset = L->d;
        *c = at;
        return 0;
    }
    /* lo = the delta records j with P[j] <= rank */
    uint64_t lo = 0, hi = L->d;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int64_t p;
        if (pos_at(L, mid, &p))
            return SM_ECORRUPT;
        if (p <= (int64_t)rank)
            lo = mid + 1;
        else
            hi = mid;
    }
    int64_t p;
    uint64_t b = 0, j = lo;
    int in_delta = 0;
    walk w;
    if (lo > 0) {
        uint64_t pj = index_base_rank(L, lo - 1);
        if (pos_at(L, lo - 1, &p))
            return SM_ECORRUPT;
        if (p == (int64_t)rank) {
            /* delta record lo - 1 is at rank, unless it is a deletion */
            int rc = walk_at(L, pj, lo - 1, &w);
            if (rc)
                return rc;
            smf_record drec;
            if (smi_record(&L->delta, w.doff, &drec))
                return SM_ECORRUPT;
            if (drec.type != SMF_TYPE_TOMBSTONE) {
                b = pj;
                j = lo - 1;
                in_delta = 1;
            }
        }
    }
    if (!in_delta) {
        /* the entry at rank is the base's: its base rank is rank - A[lo] (checked only here:
         * when every entry up to rank is new in the delta, A[lo] > rank and the entry is
         * delta record lo - 1, found above) */
        int64_t a;
        if (adj_at(L, lo, &a) || (a > 0 && (uint64_t)a > rank))
            return SM_ECORRUPT;
        b = (uint64_t)((int64_t)rank - a);
    }
    int rc = walk_at(L, b, j, &w);
    if (!rc)
        rc = cursor_settle(&at, r, rank, &w);
    if (!rc)
        *c = at;
    return rc;
}

/* The walk at the first key >= key (or > with SM_GT), and its merged rank. */
static int seek_walk(const sm_reader *r, const void *key, size_t klen, sm_bound bound, walk *w,
                     uint64_t *rank) {
    const struct smi_layer *L = r->layer;
    sm_cursor bc, dc;
    int rc = sm_seek_key(&L->base, key, klen, bound, &bc);
    if (!rc)
        rc = sm_seek_key(&L->delta, key, klen, bound, &dc);
    if (rc)
        return rc;
    int64_t a;
    if (adj_at(L, dc.rank, &a) || (a < 0 && (uint64_t)-a > bc.rank))
        return SM_ECORRUPT;
    *rank = (uint64_t)((int64_t)bc.rank + a);
    if (*rank > r->h.count)
        return SM_ECORRUPT;
    w->b = bc.rank;
    w->boff = bc.offset;
    w->j = dc.rank;
    w->doff = dc.offset;
    return 0;
}

int smi_layer_seek_key(const sm_reader *r, const void *key, size_t klen, sm_bound bound, sm_cursor *c) {
    walk w;
    uint64_t rank;
    sm_cursor at;
    int rc = seek_walk(r, key, klen, bound, &w, &rank);
    if (!rc)
        rc = cursor_settle(&at, r, rank, &w);
    if (!rc)
        *c = at;
    return rc;
}

int smi_layer_rank(const sm_reader *r, const void *key, size_t klen, uint64_t *rank) {
    int rc = smi_layer_get(r, key, klen, NULL);
    if (rc)
        return rc;
    walk w;
    uint64_t at;
    rc = seek_walk(r, key, klen, SM_GE, &w, &at);
    if (!rc && rank)
        *rank = at;
    return rc;
}

int smi_layer_prefix_range(const sm_reader *r, const void *prefix, size_t plen, uint64_t *begin,
                           uint64_t *end) {
    const struct smi_layer *L = r->layer;
    uint64_t b0, b1, j0, j1;
    int rc = sm_prefix_range(&L->base, prefix, plen, &b0, &b1);
    if (!rc)
        rc = sm_prefix_range(&L->delta, prefix, plen, &j0, &j1);
    if (rc)
        return rc;
    int64_t a0, a1;
    if (adj_at(L, j0, &a0) || adj_at(L, j1, &a1))
        return SM_ECORRUPT;
    int64_t lo = (int64_t)b0 + a0, hi = (int64_t)b1 + a1;
    if (lo < 0 || hi < lo || (uint64_t)hi > r->h.count)
        return SM_ECORRUPT;
    *begin = (uint64_t)lo;
    *end = (uint64_t)hi;
    return 0;
}

/* ---- cursors ---- */

int smi_layer_cursor_read_many(sm_cursor *c, sm_entry *out, size_t max, size_t *nread) {
    const sm_reader *r = c->reader;
    const struct smi_layer *L = r->layer;
    *nread = 0;
    if (c->rank >= r->h.count)
        return max == 0 ? 0 : SM_NOTFOUND;
    if (max > r->h.count - c->rank)
        max = (size_t)(r->h.count - c->rank);
    walk w;
    int rc = walk_of(c, &w);
    if (rc)
        return rc;
    size_t n = 0;
    while (n < max) {
        smf_record brec, drec;
        int side;
        rc = walk_peek(L, &w, &brec, &drec, &side);
        if (!rc)
            rc = walk_entry(L, &brec, &drec, side, &out[n]);
        if (rc) {
            rc = SM_ECORRUPT; /* SM_NOTFOUND too: fewer entries than the count says */
            break;
        }
        walk_step(&w, &brec, &drec, side);
        n++;
    }
    if (n == 0)
        return rc;
    sm_cursor at;
    if (cursor_settle(&at, r, c->rank + n, &w) == 0)
        *c = at;
    else { /* the entry after the batch is damaged: the next call reports it */
        c->rank += n;
        c->offset = w.j;
    }
    *nread = n;
    return 0;
}

int smi_layer_cursor_get(const sm_cursor *c, sm_entry *out) {
    sm_cursor tmp = *c;
    size_t n;
    return smi_layer_cursor_read_many(&tmp, out, 1, &n);
}

int smi_layer_cursor_read(sm_cursor *c, sm_entry *out) {
    size_t n;
    return smi_layer_cursor_read_many(c, out, 1, &n);
}

int smi_layer_cursor_next(sm_cursor *c) {
    sm_entry e;
    int rc = smi_layer_cursor_read(c, &e);
    if (rc)
        return rc;
    return c->rank == c->reader->h.count ? SM_NOTFOUND : 0;
}

/* ---- many keys, verification ---- */

/* Keys the filter passes go one by one (the delta, then the base); the others, most of them,
 * as one batch through the base's group prefetching (find.c). */
#define MANY_CHUNK 256

int smi_layer_get_many(const sm_reader *r, size_t n, const sm_buf *keys, const int64_t *ikeys,
                       sm_value *values, int *status) {
    if (n && ((!keys && !ikeys) || !status))
        return -EINVAL;
    const struct smi_layer *L = r->layer;
    if (ikeys && r->h.key_kind != SM_KEYS_INT) {
        for (size_t i = 0; i < n; i++)
            status[i] = SM_NOTFOUND;
        return 0;
    }
    sm_buf sub[MANY_CHUNK];
    sm_value subv[MANY_CHUNK];
    int subs[MANY_CHUNK];
    size_t at[MANY_CHUNK];
    unsigned char ibuf[MANY_CHUNK][SM_INT_KEY_SIZE];
    for (size_t start = 0; start < n; start += MANY_CHUNK) {
        size_t m = n - start < MANY_CHUNK ? n - start : MANY_CHUNK, nb = 0;
        for (size_t j = 0; j < m; j++) {
            size_t i = start + j;
            sm_buf k;
            if (ikeys) {
                sm_key_int(ikeys[i], ibuf[j]);
                k.data = ibuf[j];
                k.size = SM_INT_KEY_SIZE;
            } else {
                k.data = keys[i].size ? keys[i].data : "";
                k.size = keys[i].size;
            }
            uint64_t h = sm_hash64(k.data, k.size, L->delta.h.hash_seed);
            if (filter_maybe(L, h)) {
                sm_value v;
                status[i] = smi_layer_get(r, k.data, k.size, &v);
                if (!status[i] && values)
                    values[i] = v;
            } else {
                sub[nb] = k;
                at[nb++] = i;
            }
        }
        if (nb) {
            smi_get_many(&L->base, nb, sub, NULL, values ? subv : NULL, subs, SM_GET_MANY_WINDOW);
            for (size_t j = 0; j < nb; j++) {
                status[at[j]] = subs[j];
                if (!subs[j] && values)
                    values[at[j]] = subv[j];
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (status[i] && status[i] != SM_NOTFOUND)
            return status[i];
    return 0;
}

int smi_layer_verify(const sm_reader *r) {
    const struct smi_layer *L = r->layer;
    const unsigned char *p = r->base;
    if (sm_hash64(p + SMF_HEADER_SIZE, (size_t)(r->h.total_size - SMF_HEADER_SIZE), 0) !=
        r->h.body_checksum)
        return SM_ECHECKSUM;
    int rc = sm_reader_verify(&L->base);
    if (!rc)
        rc = sm_reader_verify(&L->delta);
    if (rc)
        return rc;
    /* padding between the regions */
    uint64_t nlen = smf_le64(p + SML_OFF_NAME_LEN), ioff = smf_le64(p + SML_OFF_INDEX);
    uint64_t foff = smf_le64(p + SML_OFF_FILTER), doff = smf_le64(p + SML_OFF_DELTA);
    uint64_t iend = ioff + L->d * SML_INDEX_ENTRY, fend = foff + L->filter_blocks * SML_FILTER_BLOCK;
    if (!smi_zeros(p + SML_NAME + nlen, ioff - SML_NAME - nlen) || !smi_zeros(p + iend, foff - iend) ||
        !smi_zeros(p + fend, doff - fend))
        return SM_ECORRUPT;
    /* every delta record against the base, its index entry and the filter */
    if (L->d && index_adj(L, 0) != 0)
        return SM_ECORRUPT;
    uint64_t off = SMF_HEADER_SIZE;
    for (uint64_t j = 0; j < L->d; j++) {
        smf_record rec;
        if (smi_record(&L->delta, off, &rec))
            return SM_ECORRUPT;
        off = rec.next;
        const unsigned char *key = L->delta.base + rec.key;
        sm_cursor bc;
        if ((rc = sm_seek_key(&L->base, key, (size_t)rec.klen, SM_GE, &bc)))
            return rc;
        sm_entry e;
        int in_base = sm_cursor_get(&bc, &e) == 0 && e.key.size == rec.klen &&
                      memcmp(e.key.data, key, (size_t)rec.klen) == 0;
        int64_t a0, a1;
        if (adj_at(L, j, &a0) || adj_at(L, j + 1, &a1))
            return SM_ECORRUPT;
        int64_t w = a1 - a0;
        int tomb = rec.type == SMF_TYPE_TOMBSTONE;
        if (index_base_rank(L, j) != bc.rank || w != (in_base ? (tomb ? -1 : 0) : 1) || (tomb && !in_base))
            return SM_ECORRUPT;
        uint64_t h = sm_hash64(key, (size_t)rec.klen, L->delta.h.hash_seed);
        if (!filter_maybe(L, h))
            return SM_ECORRUPT;
    }
    return 0;
}

/* ---- writing a layer file ---- */

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

int smi_layer_build(const smi_layer_in *in, unsigned char **out, uint64_t *size) {
    const sm_reader *b = in->base;
    size_t nlen = strlen(in->base_name);
    if (!name_ok((const unsigned char *)in->base_name, nlen))
        return -EINVAL;
    uint64_t dsize;
    int rc = sm_builder_layout(in->delta, &dsize);
    if (rc)
        return rc;
    uint64_t d = sm_builder_count(in->delta);
    uint64_t fsize = d ? (d + 31) / 32 * SML_FILTER_BLOCK : 0; /* SML_FILTER_BITS_PER_KEY */
    uint64_t ioff = align_up(SML_NAME + nlen, 8), foff = align_up(ioff + d * SML_INDEX_ENTRY, 64);
    uint64_t doff = align_up(foff + fsize, 64), total = doff + dsize;
    if (total > SIZE_MAX)
        return SM_ETOOBIG;
    unsigned char *p = calloc(1, (size_t)total);
    if (!p)
        return -ENOMEM;
    unsigned char *dp = p + doff;
    smf_header dh;
    if ((rc = sm_builder_write(in->delta, dp, dsize, SM_CREATED_AUTO)) ||
        (rc = smf_header_parse(dp, dsize, &dh))) {
        free(p);
        return rc;
    }
    dh.required_flags |= SMF_REQ_TOMBSTONES;
    smf_header_write(dp, &dh);
    /* the index and the filter, record by record */
    uint64_t off = SMF_HEADER_SIZE, nblocks = fsize / SML_FILTER_BLOCK;
    for (uint64_t j = 0; j < d; j++) {
        smf_record rec;
        if (smf_record_parse(dp, off, dh.records_end, &rec)) {
            free(p);
            return SM_ECORRUPT; /* cannot happen: the builder wrote it */
        }
        off = rec.next;
        smf_put64(p + ioff + j * SML_INDEX_ENTRY, in->base_rank[j]);
        smf_put64(p + ioff + j * SML_INDEX_ENTRY + 8, (uint64_t)in->adj[j]);
        uint64_t h = sm_hash64(dp + rec.key, (size_t)rec.klen, dh.hash_seed);
        sml_filter_add(p + foff + sml_filter_block(h, nblocks) * SML_FILTER_BLOCK, h);
    }
    unsigned char *ref = p + SML_BASE_REF;
    smf_put64(ref + SML_R_SIZE, b->h.total_size);
    smf_put64(ref + SML_R_COUNT, b->h.count);
    smf_put64(ref + SML_R_BODY_SUM, b->h.body_checksum);
    smf_put64(ref + SML_R_HEADER_SUM, smf_le64(b->base + SMF_OFF_HEADER_SUM));
    smf_put64(ref + SML_R_SEED, b->h.hash_seed);
    memcpy(p + SML_NAME, in->base_name, nlen);
    /* the header last: its body checksum covers all the rest */
    unsigned kind = in->count || d ? in->key_kind : SM_KEYS_NONE; /* the delta's, if it has records */
    memcpy(p, SMF_MAGIC, SMF_MAGIC_LEN);
    smf_put32(p + SMF_OFF_BYTE_ORDER, SMF_BYTE_ORDER);
    smf_put16(p + SMF_OFF_VERSION, SMF_VERSION);
    smf_put16(p + SMF_OFF_HEADER_SIZE, SMF_HEADER_SIZE);
    smf_put32(p + SMF_OFF_REQUIRED_FLAGS, SMF_REQ_LAYER | (kind == SM_KEYS_INT ? SMF_REQ_INT_KEYS : 0));
    p[SMF_OFF_KEY_KIND] = (unsigned char)kind;
    p[SMF_OFF_HASH_ID] = SMF_HASH_XXH64;
    smf_put64(p + SMF_OFF_TOTAL_SIZE, total);
    smf_put64(p + SMF_OFF_COUNT, in->count);
    smf_put64(p + SML_OFF_DELTA, doff);
    smf_put64(p + SML_OFF_DELTA_SIZE, dsize);
    smf_put64(p + SML_OFF_INDEX, ioff);
    smf_put64(p + SML_OFF_FILTER, foff);
    smf_put64(p + SML_OFF_FILTER_SIZE, fsize);
    smf_put64(p + SML_OFF_NAME_LEN, nlen);
    smf_put64(p + SMF_OFF_CREATED, dh.created);
    smf_put64(p + SMF_OFF_BODY_SUM, sm_hash64(p + SMF_HEADER_SIZE, (size_t)(total - SMF_HEADER_SIZE), 0));
    smf_put64(p + SMF_OFF_HEADER_SUM, sm_hash64(p, SMF_OFF_HEADER_SUM, 0));
    *out = p;
    *size = total;
    return 0;
}

int sm_reader_layer(const sm_reader *r, sm_layer_info *out) {
    const struct smi_layer *L = r->layer;
    if (!L)
        return 0;
    out->base_count = L->base.h.count;
    out->base_size = L->base.h.total_size;
    out->delta_records = L->d;
    out->delta_size = L->delta.h.total_size;
    out->base_file = L->base_name;
    return 1;
}
