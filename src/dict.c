/* dict.c: the builder's dictionary, and its memory: a hash-indexed array of entries that
 * sorts on demand (put, get, del, at, clear, and the copies from a reader).
 *
 *   items  [ "pear" | "fig" | "kiwi" | "apple" ]  the entries, dense, in insertion order
 *                0       1       2        3         (a deletion moves the last one into
 *                                                   the hole)
 *   index  [ 0 | 3 | 0 | 0 | 1 | 4 | 0 | 2 ]      item number + 1 (0: empty), by the
 *                                                   key's hash under index_seed: open
 *                                                   addressing, linear probing, deletion
 *                                                   without tombstones
 *   order  [ 3 | 1 | 2 | 0 ]                      item numbers in key order: apple, fig,
 *                                                   kiwi, pear
 *
 * The order is a cache: appends of growing keys (a copy of a reader, sorted input) and
 * deletions keep it valid; an insertion that breaks it marks it invalid, and the next
 * use (sm_builder_at, a layout) rebuilds it by a radix sort on the first 8 key bytes,
 * then a comparison sort of each run of equal prefixes.
 *
 * The index is a cache too, of a builder filled by sm_builder_put_new (the keys of one
 * dict, which the caller knows to be distinct): those are appended to items unhashed and
 * unindexed (indexed = 0), and index_ensure builds the index when a get, put or del
 * first needs it.  A builder filled that way and then written never has one: its layout
 * needs only the order.  A key appended twice after all is found there (by the index, or
 * by the sort as two equal keys in one run) and the later value kept.
 *
 * The bytes of the entries (key, then payload) live in the builder's arena (internal.h):
 * bump-allocated chunks, so that an entry costs no malloc of its own.  A deletion or an
 * overwrite leaves dead bytes behind; the put or del that makes them outnumber the live
 * bytes compacts the arena (arena_compact: one block of the live bytes, then the old
 * chunks freed), which moves every entry's bytes: pointers handed out are valid until
 * the next modification, as sharedmap.h says.
 *
 * Writing the entries out as a snapshot is layout.c's; every change here drops the
 * layout it cached.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#define MAX_ITEMS (UINT32_MAX - 1u)

int sm_builder_new(sm_builder **out) {
    sm_builder *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->order_valid = 1;
    b->indexed = 1;
    if (getrandom(&b->index_seed, sizeof b->index_seed, GRND_NONBLOCK) != (ssize_t)sizeof b->index_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        b->index_seed = (uint64_t)ts.tv_nsec * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)(uintptr_t)b;
    }
    *out = b;
    return 0;
}

void smi_layout_drop(smi_layout *l) {
    free(l->table);
    memset(l, 0, sizeof *l);
}

/* ---- arena ---- */

static unsigned char arena_empty[1]; /* the data of an entry of 0 bytes */

/* n bytes of a's, or NULL (out of memory). */
static unsigned char *arena_alloc(smi_arena *a, size_t n) {
    if (!n)
        return arena_empty;
    if (n > a->cap - a->used) {
        size_t size = n > SMI_ARENA_CHUNK / 8 ? n : SMI_ARENA_CHUNK;
        if (a->nchunks == a->chunks_cap) {
            size_t ncap = a->chunks_cap ? a->chunks_cap * 2 : 16;
            unsigned char **nc = realloc(a->chunks, ncap * sizeof *nc);
            if (!nc)
                return NULL;
            a->chunks = nc;
            a->chunks_cap = ncap;
        }
        unsigned char *c = malloc(size);
        if (!c)
            return NULL;
        if (size == n && a->nchunks) {
            /* an entry of its own: slot it below the current chunk, which stays current */
            a->chunks[a->nchunks] = a->chunks[a->nchunks - 1];
            a->chunks[a->nchunks - 1] = c;
            a->nchunks++;
            a->live += n;
            return c;
        }
        a->chunks[a->nchunks++] = c;
        a->used = 0;
        a->cap = size;
    }
    unsigned char *p = a->chunks[a->nchunks - 1] + a->used;
    a->used += n;
    a->live += n;
    return p;
}

/* The n bytes at p, from arena_alloc, are no longer used: the last allocation is taken
 * back, any other becomes dead bytes. */
static void arena_release(smi_arena *a, unsigned char *p, size_t n) {
    if (!n)
        return;
    a->live -= n;
    if (a->nchunks && p + n == a->chunks[a->nchunks - 1] + a->used && a->used >= n)
        a->used -= n;
    else
        a->dead += n;
}

static void arena_free(smi_arena *a) {
    for (size_t i = 0; i < a->nchunks; i++)
        free(a->chunks[i]);
    free(a->chunks);
    memset(a, 0, sizeof *a);
}

/* When the dead bytes outnumber the live ones: the bytes of items[0, count) copied into one
 * block, the old chunks freed.  Out of memory, it leaves things as they are (the
 * compaction is an economy, never needed). */
static void arena_compact(sm_builder *b) {
    smi_arena *a = &b->arena;
    if (a->dead <= a->live || a->dead < SMI_ARENA_CHUNK)
        return;
    size_t total = 0;
    for (size_t i = 0; i < b->count; i++)
        total += (size_t)(b->items[i].klen + smi_item_vlen(&b->items[i]));
    unsigned char **nc = malloc(sizeof *nc);
    unsigned char *block = malloc(total ? total : 1);
    if (!nc || !block) {
        free(nc);
        free(block);
        return;
    }
    size_t off = 0;
    for (size_t i = 0; i < b->count; i++) {
        smi_item *it = &b->items[i];
        size_t n = (size_t)(it->klen + smi_item_vlen(it));
        if (!n)
            continue;
        memcpy(block + off, it->data, n);
        it->data = block + off;
        off += n;
    }
    uint64_t compactions = a->compactions + 1;
    arena_free(a);
    a->chunks = nc;
    a->chunks[0] = block;
    a->nchunks = a->chunks_cap = 1;
    a->used = a->cap = total; /* full: the next entry starts a chunk */
    a->live = total;
    a->compactions = compactions;
}

uint64_t smi_builder_arena_bytes(const sm_builder *b, uint64_t *dead, uint64_t *compactions) {
    if (dead)
        *dead = b->arena.dead;
    if (compactions)
        *compactions = b->arena.compactions;
    return b->arena.live;
}

void sm_builder_clear(sm_builder *b) {
    if (!b)
        return;
    arena_free(&b->arena);
    b->count = 0;
    if (b->index)
        memset(b->index, 0, b->index_cap * sizeof *b->index);
    b->indexed = 1;
    b->order_valid = 1;
    b->kind = SM_KEYS_NONE;
    b->version++;
    smi_layout_drop(&b->lay);
}

void sm_builder_free(sm_builder *b) {
    if (!b)
        return;
    sm_builder_clear(b);
    free(b->items);
    free(b->index);
    free(b->order);
    free(b);
}

size_t sm_builder_count(const sm_builder *b) { return b->count; }
sm_key_kind sm_builder_key_kind(const sm_builder *b) { return b->kind; }
uint64_t sm_builder_version(const sm_builder *b) { return b->version; }

/* ---- index ---- */

static inline size_t index_home(const sm_builder *b, uint64_t h) {
    return (size_t)(h >> 20) & (b->index_cap - 1); /* low bits of h pick the snapshot tag */
}

/* The index slot holding key, or of the empty slot where it would go. */
static size_t index_find(const sm_builder *b, const void *key, size_t klen, uint64_t h,
                         int *found) {
    size_t mask = b->index_cap - 1, i = index_home(b, h);
    for (;;) {
        uint32_t v = b->index[i];
        if (!v) {
            *found = 0;
            return i;
        }
        const smi_item *it = &b->items[v - 1];
        if (it->hash == h && it->klen == klen && memcmp(it->data, key, klen) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* An empty index of ncap slots in place of b's.  0 or -ENOMEM (b's kept). */
static int index_replace(sm_builder *b, size_t ncap) {
    uint32_t *ni = calloc(ncap, sizeof *ni);
    if (!ni)
        return -ENOMEM;
    free(b->index);
    b->index = ni;
    b->index_cap = ncap;
    return 0;
}

static int index_grow(sm_builder *b) {
    size_t ncap = b->index_cap ? b->index_cap * 2 : 16;
    uint32_t *ni;
    if (index_replace(b, ncap))
        return -ENOMEM;
    ni = b->index;
    for (size_t n = 0; n < b->count; n++) {
        size_t i = index_home(b, b->items[n].hash);
        while (ni[i])
            i = (i + 1) & (ncap - 1);
        ni[i] = (uint32_t)(n + 1);
    }
    return 0;
}

/* Remove slot i, shifting later members of its cluster back (no tombstones). */
static void index_remove(sm_builder *b, size_t i) {
    size_t mask = b->index_cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t v = b->index[j];
        if (!v)
            break;
        size_t home = index_home(b, b->items[v - 1].hash);
        /* move v into the hole at i unless its home lies cyclically in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            b->index[i] = v;
            i = j;
        }
    }
    b->index[i] = 0;
}

static size_t index_slot_of(const sm_builder *b, size_t n) {
    size_t mask = b->index_cap - 1, i = index_home(b, b->items[n].hash);
    while (b->index[i] != n + 1)
        i = (i + 1) & mask;
    return i;
}

static void item_replace(sm_builder *b, size_t n, const smi_item *it); /* put / get / del */

/* Make the index current for items appended unindexed by sm_builder_put_new(): each
 * hashed and inserted in the order appended.  A key appended twice (the caller's promise
 * broken, which is not an error) keeps its first item's place with the later value, as
 * sm_builder_put() would have, and the later item goes (the items after it move down).
 * 0 or -ENOMEM, with b as it was. */
static int index_ensure(sm_builder *b) {
    if (b->indexed)
        return 0;
    size_t cap = 16;
    while (cap / 2 < b->count)
        cap *= 2;
    if (index_replace(b, cap))
        return -ENOMEM;
    size_t kept = 0;
    for (size_t n = 0; n < b->count; n++) {
        smi_item it = b->items[n];
        it.hash = sm_hash64(it.data, (size_t)it.klen, b->index_seed);
        int found;
        size_t slot = index_find(b, it.data, (size_t)it.klen, it.hash, &found);
        if (found) {
            item_replace(b, b->index[slot] - 1, &it);
            continue;
        }
        b->items[kept] = it;
        b->index[slot] = (uint32_t)(kept + 1);
        kept++;
    }
    if (kept != b->count) {
        b->count = kept;
        b->version++; /* fewer entries: iterators that counted them must see it */
        b->order_valid = 0; /* items moved (never the case in order: appends in order are distinct) */
        arena_compact(b);
    }
    b->indexed = 1;
    return 0;
}

/* ---- order ---- */

static int item_cmp(const smi_item *a, const smi_item *b) {
    return smi_keycmp(a->data, a->klen, b->data, b->klen);
}

/* Rank of item n in the (valid) order, by binary search on its key. */
static size_t order_rank(const sm_builder *b, const void *key, size_t klen) {
    size_t lo = 0, hi = b->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const smi_item *it = &b->items[b->order[mid]];
        if (smi_keycmp(it->data, it->klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int cmp_items_r(const void *x, const void *y, void *ctx) {
    const smi_item *items = ctx;
    return item_cmp(&items[((const smi_kv *)x)->val], &items[((const smi_kv *)y)->val]);
}

/* Radix sort on the big-endian 8-byte key prefix, then a comparison sort of each run of
 * equal prefixes on the full keys. */
int smi_builder_sort(sm_builder *b, smi_kv *scratch_a, smi_kv *scratch_t) {
    if (b->order_valid)
        return 0;
    size_t n = b->count;
    smi_kv *a = scratch_a, *t = scratch_t;
    if (!a) {
        a = malloc((n ? n : 1) * sizeof *a);
        t = malloc((n ? n : 1) * sizeof *t);
        if (!a || !t) {
            free(a);
            free(t);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        a[i].key = smf_prefix64(b->items[i].data, b->items[i].klen);
        a[i].val = i;
    }
    smi_kv *sorted = smi_radix_sort(a, t, n, 64, b->threads != 1 && n >= SMI_THREAD_MIN);
    int repeated = 0; /* a key appended twice by sm_builder_put_new (equal keys, equal prefixes) */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && sorted[j].key == sorted[i].key)
            j++;
        if (j - i > 1) {
            qsort_r(sorted + i, j - i, sizeof *sorted, cmp_items_r, b->items);
            for (size_t k = i + 1; !b->indexed && k < j; k++)
                repeated |= cmp_items_r(&sorted[k - 1], &sorted[k], b->items) == 0;
        }
        i = j;
    }
    if (repeated) {
        /* the index drops the earlier entry of each repeated key; then sort again */
        int rc = index_ensure(b);
        if (!rc)
            rc = smi_builder_sort(b, a, t); /* fewer items now: the scratch still fits */
        if (!scratch_a) {
            free(a);
            free(t);
        }
        return rc;
    }
    uint32_t *order = realloc(b->order, (n ? n : 1) * sizeof *order);
    for (size_t i = 0; order && i < n; i++)
        order[i] = (uint32_t)sorted[i].val;
    if (!scratch_a) {
        free(a);
        free(t);
    }
    if (!order)
        return -ENOMEM;
    b->order = order;
    b->order_cap = n ? n : 1;
    b->order_valid = 1;
    return 0;
}

/* ---- put / get / del ---- */

static void value_fill(const smi_item *it, sm_value *out) {
    smi_value_decode(smi_item_type(it), it->data + it->klen, smi_item_vlen(it), out);
}

/* The payload of a value as it is stored (the snapshot encoding). */
int smi_value_payload(const sm_value *v, unsigned char tmp[8], const void **p, size_t *n) {
    switch (v->type) {
    case SM_NONE:
    case SM_FALSE:
    case SM_TRUE:
        *p = tmp, *n = 0;
        return 0;
    case SM_INT: {
        unsigned k = smf_int_size(v->as.i);
        uint64_t u = (uint64_t)v->as.i;
        for (unsigned i = 0; i < k; i++)
            tmp[i] = (unsigned char)(u >> (8 * i));
        *p = tmp, *n = k;
        return 0;
    }
    case SM_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &v->as.f, 8);
        smf_put64(tmp, bits);
        *p = tmp, *n = 8;
        return 0;
    }
    case SM_BYTES:
    case SM_STR:
        if (v->as.buf.size && !v->as.buf.data)
            return -EINVAL;
        if (v->type == SM_STR && !smi_utf8_valid(v->as.buf.data, v->as.buf.size))
            return SM_EUTF8;
        *p = v->as.buf.data ? v->as.buf.data : (const void *)tmp, *n = v->as.buf.size;
        return 0;
    default:
        return SM_ETYPE;
    }
}

/* A new entry for key and value, checked as sm_builder_put() checks them (all but the
 * kind against the builder's): key and payload copied into b's arena, the key's hash
 * under b's index seed if `hashed` (else 0: index_ensure hashes it).  0, SM_EUTF8, SM_ETYPE, -EINVAL (also an int key that is not 8
 * bytes), SM_ETOOBIG or -ENOMEM.  Until it is held (appended or replacing), item_drop()
 * gives its bytes back. */
static int item_make(sm_builder *b, smi_item *it, sm_key_kind kind, const void *key,
                     size_t klen, const sm_value *value, int hashed) {
    if (kind == SM_KEYS_STR && !smi_utf8_valid(key, klen))
        return SM_EUTF8;
    if (kind == SM_KEYS_INT && klen != SMF_INT_KEY_SIZE)
        return -EINVAL;
    unsigned char tmp[8];
    const void *payload;
    size_t plen;
    int rc = smi_value_payload(value, tmp, &payload, &plen);
    if (rc)
        return rc;
    if (klen > SMF_MAX_OFFSET || plen > (SMF_MAX_OFFSET >> SMF_TYPE_BITS))
        return SM_ETOOBIG;
    if (!klen)
        key = tmp; /* any valid pointer for memcpy/memcmp of 0 bytes */
    unsigned char *data = arena_alloc(&b->arena, klen + plen);
    if (!data)
        return -ENOMEM;
    if (klen)
        memcpy(data, key, klen);
    if (plen)
        memcpy(data + klen, payload, plen);
    it->data = data;
    it->hash = hashed ? sm_hash64(key, klen, b->index_seed) : 0;
    it->klen = klen;
    it->vt = (uint64_t)plen << SMF_TYPE_BITS | (unsigned)value->type;
    return 0;
}

static void item_drop(sm_builder *b, const smi_item *it) {
    arena_release(&b->arena, it->data, (size_t)(it->klen + smi_item_vlen(it)));
}

/* Overwrite the value of item n, which has the key of the new item `it`, with that item's,
 * taking its data. */
static void item_replace(sm_builder *b, size_t n, const smi_item *it) {
    smi_item *old = &b->items[n];
    item_drop(b, old);
    old->data = it->data;
    old->vt = it->vt;
    smi_layout_drop(&b->lay);
}

/* Append it, whose key b does not hold and would be at the empty index slot `slot`
 * (SIZE_MAX: b is not indexed), taking its data.  Fails only to grow, with b unchanged: SM_ETOOBIG or -ENOMEM; never
 * when the room was made beforehand (items, and order if valid, for count + 1). */
static int item_append(sm_builder *b, sm_key_kind kind, size_t slot, const smi_item *it) {
    if (b->count >= MAX_ITEMS)
        return SM_ETOOBIG;
    if (b->count == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        smi_item *ni = realloc(b->items, ncap * sizeof *ni);
        if (!ni)
            return -ENOMEM;
        b->items = ni;
        b->cap = ncap;
    }
    if (b->order_valid) {
        /* Still in order if the new key is the largest: append. */
        if (b->count && smi_keycmp(it->data, it->klen, b->items[b->order[b->count - 1]].data,
                                   b->items[b->order[b->count - 1]].klen) <= 0) {
            b->order_valid = 0;
        } else {
            if (b->count == b->order_cap) {
                uint32_t *no = realloc(b->order, b->cap * sizeof *no);
                if (!no)
                    return -ENOMEM;
                b->order = no;
                b->order_cap = b->cap;
            }
            b->order[b->count] = (uint32_t)b->count;
        }
    }
    b->items[b->count] = *it;
    if (slot != SIZE_MAX)
        b->index[slot] = (uint32_t)(b->count + 1);
    b->count++;
    b->kind = kind;
    b->version++;
    smi_layout_drop(&b->lay);
    return 0;
}

/* The checks of sm_builder_put's arguments that item_make does not make: 0 or its error. */
static int put_check(const sm_builder *b, sm_key_kind kind, const void *key, size_t klen,
                     const sm_value *value) {
    if (kind != SM_KEYS_BYTES && kind != SM_KEYS_STR && kind != SM_KEYS_INT)
        return -EINVAL;
    if (!value || (klen && !key))
        return -EINVAL;
    if (b->count && kind != b->kind)
        return SM_EKEYKIND;
    return 0;
}

int sm_builder_put(sm_builder *b, sm_key_kind kind, const void *key, size_t klen,
                   const sm_value *value) {
    smi_item it;
    int rc = put_check(b, kind, key, klen, value);
    if (rc || (rc = index_ensure(b)))
        return rc;
    if (rc)
        return rc;
    if ((rc = item_make(b, &it, kind, key, klen, value, 1)))
        return rc;
    if (b->count + 1 > b->index_cap / 2 && (rc = index_grow(b))) {
        item_drop(b, &it);
        return rc;
    }
    int found;
    size_t slot = index_find(b, it.data, (size_t)it.klen, it.hash, &found);
    if (found) {
        item_replace(b, b->index[slot] - 1, &it);
        arena_compact(b);
        return 0;
    }
    rc = item_append(b, kind, slot, &it);
    if (rc)
        item_drop(b, &it);
    return rc;
}

int sm_builder_put_new(sm_builder *b, sm_key_kind kind, const void *key, size_t klen,
                       const sm_value *value) {
    if (b->indexed && b->count)
        return sm_builder_put(b, kind, key, klen, value);
    int rc = put_check(b, kind, key, klen, value);
    if (rc)
        return rc;
    if (b->indexed) { /* empty: the index goes until it is needed */
        free(b->index);
        b->index = NULL;
        b->index_cap = 0;
        b->indexed = 0;
    }
    smi_item it;
    if ((rc = item_make(b, &it, kind, key, klen, value, 0)))
        return rc;
    rc = item_append(b, kind, SIZE_MAX, &it);
    if (rc)
        item_drop(b, &it);
    return rc;
}

int smi_builder_put_tombstone(sm_builder *b, sm_key_kind kind, const void *key, size_t klen) {
    sm_value none = sm_value_none();
    int rc = sm_builder_put(b, kind, key, klen, &none);
    if (rc)
        return rc;
    int found;
    size_t slot = index_find(b, klen ? key : "", klen, sm_hash64(klen ? key : "", klen, b->index_seed), &found);
    smi_item *it = &b->items[b->index[slot] - 1];
    it->vt = (it->vt & ~(uint64_t)((1u << SMF_TYPE_BITS) - 1)) | SMF_TYPE_TOMBSTONE;
    return 0;
}

int sm_builder_get(const sm_builder *b, const void *key, size_t klen, sm_value *out) {
    if (!b->count)
        return SM_NOTFOUND;
    if (!klen)
        key = "";
    /* The index is a cache the first lookup after sm_builder_put_new() builds: b is
     * logically unchanged, and never a const object (sm_builder_new allocates it). */
    int rc = index_ensure((sm_builder *)b);
    if (rc)
        return rc;
    int found;
    size_t slot = index_find(b, key, klen, sm_hash64(key, klen, b->index_seed), &found);
    if (!found)
        return SM_NOTFOUND;
    if (out)
        value_fill(&b->items[b->index[slot] - 1], out);
    return 0;
}

int sm_builder_del(sm_builder *b, const void *key, size_t klen) {
    if (!b->count)
        return SM_NOTFOUND;
    if (!klen)
        key = "";
    int rc = index_ensure(b);
    if (rc)
        return rc;
    int found;
    size_t slot = index_find(b, key, klen, sm_hash64(key, klen, b->index_seed), &found);
    if (!found)
        return SM_NOTFOUND;
    size_t n = b->index[slot] - 1, last = b->count - 1;
    if (b->order_valid) {
        size_t r = order_rank(b, key, klen);
        memmove(b->order + r, b->order + r + 1, (last - r) * sizeof *b->order);
    }
    index_remove(b, slot);
    item_drop(b, &b->items[n]);
    b->count--; /* order[0, count) is valid again, naming item `last` if n != last */
    if (n != last) {
        /* move the last item into the hole; repoint its index slot and its rank */
        size_t s = index_slot_of(b, last);
        b->items[n] = b->items[last];
        b->index[s] = (uint32_t)(n + 1);
        if (b->order_valid) {
            size_t r = order_rank(b, b->items[n].data, b->items[n].klen);
            b->order[r] = (uint32_t)n;
        }
    }
    if (!b->count)
        b->kind = SM_KEYS_NONE;
    b->version++;
    smi_layout_drop(&b->lay);
    arena_compact(b);
    return 0;
}

int sm_builder_at(sm_builder *b, size_t rank, sm_entry *out) {
    if (rank >= b->count)
        return SM_NOTFOUND;
    int rc = smi_builder_sort(b, NULL, NULL);
    if (rc)
        return rc;
    if (rank >= b->count)
        return SM_NOTFOUND; /* the sort merged a key sm_builder_put_new appended twice */
    const smi_item *it = &b->items[b->order[rank]];
    out->key.data = it->data;
    out->key.size = it->klen;
    value_fill(it, &out->value);
    return 0;
}

/* Room for want items in b->items (their count stays).  0 or -ENOMEM. */
static int items_reserve(sm_builder *b, size_t want) {
    if (want <= b->cap)
        return 0;
    if (want > SIZE_MAX / sizeof *b->items)
        return -ENOMEM;
    smi_item *ni = realloc(b->items, want * sizeof *ni);
    if (!ni)
        return -ENOMEM;
    b->items = ni;
    b->cap = want;
    return 0;
}

int sm_builder_reserve(sm_builder *b, size_t n) {
    if (n > MAX_ITEMS)
        return SM_ETOOBIG;
    return items_reserve(b, n);
}

#define READ_BATCH 64

/* All or nothing, in three steps.  1: every entry of r is read, checked and copied into
 * the spare room of b->items past count (new items, not yet indexed).  2: room in the
 * index and the order for every copy to be appended, as if b held none of r's keys (when
 * that many would pass MAX_ITEMS, the copies whose key b lacks are counted first, so that
 * SM_ETOOBIG means what it says).  3: each copy, in key order, overwrites its key's entry
 * or is appended, which moves it down to b->items[count] (never above it: count <=
 * base + i), with nothing left to fail.  A failure in 1 or 2 frees the copies, and b
 * holds what it held (only its spare room may have grown).  Counting in step 1 always
 * would reserve exactly, but costs a second lookup of every key, each a cache miss or two
 * (1M keys into a builder of 500k took twice as long), where reserving for all of them
 * costs at most an index twice the size it needs. */
int sm_builder_put_reader(sm_builder *b, const sm_reader *r) {
    uint64_t n = r->h.count;
    sm_key_kind kind = (sm_key_kind)r->h.key_kind;
    if (n == 0)
        return 0;
    if (b->count && kind != b->kind)
        return SM_EKEYKIND;
    if (n > MAX_ITEMS)
        return SM_ETOOBIG;
    int rc = index_ensure(b);
    if (rc)
        return rc;
    size_t base = b->count, made = 0, fresh = 0; /* fresh: copies that may be appended */
    int count_fresh = base + (size_t)n > MAX_ITEMS;
    rc = items_reserve(b, base + (size_t)n);

    sm_cursor c;
    if (!rc)
        rc = sm_seek_rank(r, 0, &c);
    while (!rc && made < n) {
        sm_entry batch[READ_BATCH];
        size_t got;
        rc = sm_cursor_read_many(&c, batch, READ_BATCH, &got);
        for (size_t k = 0; !rc && k < got; k++) {
            smi_item *it = &b->items[base + made];
            rc = item_make(b, it, kind, batch[k].key.data, batch[k].key.size, &batch[k].value, 1);
            if (rc)
                break;
            made++;
            int found = 0;
            if (count_fresh)
                (void)index_find(b, it->data, (size_t)it->klen, it->hash, &found);
            fresh += !found; /* a key r repeats (a damaged r) counts twice: room to spare */
        }
    }
    if (rc == SM_NOTFOUND)
        rc = SM_ECORRUPT; /* fewer records than the header's count */
    if (!rc && base + fresh > MAX_ITEMS)
        rc = SM_ETOOBIG;

    if (!rc && !base)
        b->order_valid = 1; /* an empty order is in order: appends in key order keep it */
    while (!rc && base + fresh > b->index_cap / 2)
        rc = index_grow(b);
    if (!rc && b->order_valid && b->order_cap < base + fresh) {
        uint32_t *no = realloc(b->order, b->cap * sizeof *no);
        if (no) {
            b->order = no;
            b->order_cap = b->cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc) {
        for (size_t i = made; i-- > 0;) /* last first: the arena takes the bytes back */
            item_drop(b, &b->items[base + i]);
        return rc;
    }

    for (size_t i = 0; i < made; i++) {
        smi_item it = b->items[base + i];
        int found;
        size_t slot = index_find(b, it.data, (size_t)it.klen, it.hash, &found);
        if (found)
            item_replace(b, b->index[slot] - 1, &it);
        else
            (void)item_append(b, kind, slot, &it); /* cannot fail: the room is made */
    }
    arena_compact(b); /* after the loop: a compaction moves items[0, count) only */
    return 0;
}

int sm_builder_from_reader(sm_builder **out, const sm_reader *r) {
    sm_builder *b;
    int rc = sm_builder_new(&b);
    if (rc)
        return rc;
    rc = sm_builder_put_reader(b, r);
    if (rc) {
        sm_builder_free(b);
        return rc;
    }
    *out = b;
    return 0;
}
