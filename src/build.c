/* build.c: the builder (a hash-indexed dictionary that sorts on demand) and the
 * snapshot writer.
 *
 * Items live in a dense array (deletion moves the last item into the hole); an
 * open-addressing index of item numbers finds them by key.  Key order is a cached
 * permutation of item numbers ("order"), kept valid cheaply by appends of growing
 * keys (a copy of a reader, or sorted input) and by deletions, and rebuilt by a
 * radix sort on the first 8 key bytes when an insertion breaks it.
 *
 * Writing a snapshot is two steps: layout (sort, hash, place every key in the
 * table; the result is cached until the next change) and write (records, samples
 * and table into the caller's buffer, then the checksums).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

typedef struct item {
    unsigned char *data; /* key bytes, then the value payload */
    uint64_t hash;       /* sm_hash64(key, builder's index_seed) */
    size_t klen;
    size_t vlen;
    unsigned type;
} item;

/* The cached layout of the snapshot: its header, complete but for the body checksum,
 * and its table. */
typedef struct layout {
    int valid;
    smf_header h;        /* h.created: when this layout was computed */
    uint64_t nsamples;
    uint64_t *table;     /* h.table_slots slots, host order */
} layout;

struct sm_builder {
    item *items;
    size_t count, cap;
    uint32_t *index; /* item number + 1; 0 = empty */
    size_t index_cap; /* power of two */
    uint32_t *order;  /* item numbers in key order; valid if order_valid */
    size_t order_cap;
    int order_valid;
    sm_key_kind kind;
    uint64_t version;
    /* A random seed for the index, so that keys chosen to collide under a known
     * seed (XXH64 can be inverted) cannot make insertions quadratic. */
    uint64_t index_seed;
    layout lay;
};

#define MAX_ITEMS (UINT32_MAX - 1u)

int sm_builder_new(sm_builder **out) {
    sm_builder *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->order_valid = 1;
    if (getrandom(&b->index_seed, sizeof b->index_seed, GRND_NONBLOCK) != (ssize_t)sizeof b->index_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        b->index_seed = (uint64_t)ts.tv_nsec * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)(uintptr_t)b;
    }
    *out = b;
    return 0;
}

static void layout_drop(layout *l) {
    free(l->table);
    memset(l, 0, sizeof *l);
}

void sm_builder_clear(sm_builder *b) {
    if (!b)
        return;
    for (size_t i = 0; i < b->count; i++)
        free(b->items[i].data);
    b->count = 0;
    if (b->index)
        memset(b->index, 0, b->index_cap * sizeof *b->index);
    b->order_valid = 1;
    b->kind = SM_KEYS_NONE;
    b->version++;
    layout_drop(&b->lay);
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
        const item *it = &b->items[v - 1];
        if (it->hash == h && it->klen == klen && memcmp(it->data, key, klen) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int index_grow(sm_builder *b) {
    size_t ncap = b->index_cap ? b->index_cap * 2 : 16;
    uint32_t *ni = calloc(ncap, sizeof *ni);
    if (!ni)
        return -ENOMEM;
    free(b->index);
    b->index = ni;
    b->index_cap = ncap;
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

/* ---- order ---- */

static int item_cmp(const item *a, const item *b) {
    return smi_keycmp(a->data, a->klen, b->data, b->klen);
}

/* Rank of item n in the (valid) order, by binary search on its key. */
static size_t order_rank(const sm_builder *b, const void *key, size_t klen) {
    size_t lo = 0, hi = b->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const item *it = &b->items[b->order[mid]];
        if (smi_keycmp(it->data, it->klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A sort key and what travels with it. */
typedef struct kv {
    uint64_t key;
    uint64_t val;
} kv;

/* Stable LSD radix sort of a[0, n) on the low `bits` bits of the keys, 11 bits a
 * pass (a pass in which every key has the same digit is skipped); t is scratch
 * space for n.  It streams through memory instead of scattering over a key-sized
 * array.  Returns the sorted array: a or t. */
static kv *radix_sort(kv *a, kv *t, size_t n, unsigned bits) {
    for (unsigned shift = 0; shift < bits; shift += 11) {
        size_t cnt[2048] = {0};
        for (size_t i = 0; i < n; i++)
            cnt[(a[i].key >> shift) & 2047]++;
        if (n == 0 || cnt[(a[0].key >> shift) & 2047] == n)
            continue;
        size_t sum = 0;
        for (unsigned k = 0; k < 2048; k++) {
            size_t c = cnt[k];
            cnt[k] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            t[cnt[(a[i].key >> shift) & 2047]++] = a[i];
        kv *swap = a;
        a = t;
        t = swap;
    }
    return a;
}

static int cmp_items_r(const void *x, const void *y, void *ctx) {
    const item *items = ctx;
    return item_cmp(&items[((const kv *)x)->val], &items[((const kv *)y)->val]);
}

/* LSD radix sort on the big-endian 8-byte key prefix, then a comparison sort of
 * each run of equal prefixes on the full keys. */
int smi_builder_sort(sm_builder *b) {
    if (b->order_valid)
        return 0;
    size_t n = b->count;
    kv *a = malloc((n ? n : 1) * sizeof *a), *t = malloc((n ? n : 1) * sizeof *t);
    if (!a || !t) {
        free(a);
        free(t);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        a[i].key = smf_prefix64(b->items[i].data, b->items[i].klen);
        a[i].val = i;
    }
    kv *sorted = radix_sort(a, t, n, 64);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && sorted[j].key == sorted[i].key)
            j++;
        if (j - i > 1)
            qsort_r(sorted + i, j - i, sizeof *sorted, cmp_items_r, b->items);
        i = j;
    }
    uint32_t *order = realloc(b->order, (n ? n : 1) * sizeof *order);
    if (!order) {
        free(a);
        free(t);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)sorted[i].val;
    free(a);
    free(t);
    b->order = order;
    b->order_cap = n ? n : 1;
    b->order_valid = 1;
    return 0;
}

/* ---- put / get / del ---- */

static void value_fill(const item *it, sm_value *out) {
    smi_value_decode(it->type, it->data + it->klen, it->vlen, out);
}

/* The payload of a value as it is stored (the snapshot encoding). */
static int value_payload(const sm_value *v, unsigned char tmp[8], const void **p, size_t *n) {
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

int sm_builder_put(sm_builder *b, sm_key_kind kind, const void *key, size_t klen,
                   const sm_value *value) {
    if (kind != SM_KEYS_BYTES && kind != SM_KEYS_STR)
        return -EINVAL;
    if (!value || (klen && !key))
        return -EINVAL;
    if (b->count && kind != b->kind)
        return SM_EKEYKIND;
    if (kind == SM_KEYS_STR && !smi_utf8_valid(key, klen))
        return SM_EUTF8;
    unsigned char tmp[8];
    const void *payload;
    size_t plen;
    int rc = value_payload(value, tmp, &payload, &plen);
    if (rc)
        return rc;
    if (klen > SMF_MAX_OFFSET || plen > (SMF_MAX_OFFSET >> SMF_TYPE_BITS))
        return SM_ETOOBIG;
    if (!klen)
        key = tmp; /* any valid pointer for memcpy/memcmp of 0 bytes */

    if (b->count + 1 > b->index_cap / 2 && (rc = index_grow(b)))
        return rc;
    uint64_t h = sm_hash64(key, klen, b->index_seed);
    int found;
    size_t slot = index_find(b, key, klen, h, &found);
    unsigned char *data = malloc(klen + plen ? klen + plen : 1);
    if (!data)
        return -ENOMEM;
    memcpy(data, key, klen);
    memcpy(data + klen, payload, plen);
    if (found) {
        item *it = &b->items[b->index[slot] - 1];
        free(it->data);
        it->data = data;
        it->vlen = plen;
        it->type = (unsigned)value->type;
        layout_drop(&b->lay);
        return 0;
    }
    if (b->count >= MAX_ITEMS) {
        free(data);
        return SM_ETOOBIG;
    }
    if (b->count == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        item *ni = realloc(b->items, ncap * sizeof *ni);
        if (!ni) {
            free(data);
            return -ENOMEM;
        }
        b->items = ni;
        b->cap = ncap;
    }
    if (b->order_valid) {
        /* Still in order if the new key is the largest: append. */
        if (b->count && smi_keycmp(key, klen, b->items[b->order[b->count - 1]].data,
                                   b->items[b->order[b->count - 1]].klen) <= 0) {
            b->order_valid = 0;
        } else {
            if (b->count == b->order_cap) {
                uint32_t *no = realloc(b->order, b->cap * sizeof *no);
                if (!no) {
                    free(data);
                    return -ENOMEM;
                }
                b->order = no;
                b->order_cap = b->cap;
            }
            b->order[b->count] = (uint32_t)b->count;
        }
    }
    item *it = &b->items[b->count];
    it->data = data;
    it->hash = h;
    it->klen = klen;
    it->vlen = plen;
    it->type = (unsigned)value->type;
    b->index[slot] = (uint32_t)(b->count + 1);
    b->count++;
    b->kind = kind;
    b->version++;
    layout_drop(&b->lay);
    return 0;
}

int sm_builder_get(const sm_builder *b, const void *key, size_t klen, sm_value *out) {
    if (!b->count)
        return SM_NOTFOUND;
    if (!klen)
        key = "";
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
    free(b->items[n].data);
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
    layout_drop(&b->lay);
    return 0;
}

int sm_builder_at(sm_builder *b, size_t rank, sm_entry *out) {
    if (rank >= b->count)
        return SM_NOTFOUND;
    int rc = smi_builder_sort(b);
    if (rc)
        return rc;
    const item *it = &b->items[b->order[rank]];
    out->key.data = it->data;
    out->key.size = it->klen;
    value_fill(it, &out->value);
    return 0;
}

int sm_builder_from_reader(sm_builder **out, const sm_reader *r) {
    sm_builder *b;
    int rc = sm_builder_new(&b);
    if (rc)
        return rc;
    sm_cursor c;
    sm_entry e;
    sm_key_kind kind = sm_reader_key_kind(r);
    rc = sm_seek_rank(r, 0, &c);
    while (!rc && (rc = sm_cursor_get(&c, &e)) == 0) {
        if ((rc = sm_builder_put(b, kind, e.key.data, e.key.size, &e.value)))
            break;
        rc = sm_cursor_next(&c);
    }
    if (rc != SM_NOTFOUND) {
        sm_builder_free(b);
        return rc ? rc : SM_ECORRUPT;
    }
    *out = b;
    return 0;
}

/* ---- layout ---- */

static uint64_t record_size(const item *it) {
    return smf_varint_size(it->klen) + smf_varint_size(((uint64_t)it->vlen << SMF_TYPE_BITS) | it->type) +
           it->klen + it->vlen;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* An entry on its way into the table is a kv: key = its home, val = its slot
 * minus the displacement. */

#define PREFETCH_AHEAD 16

/* One pass over the entries in key order: record offsets (so the records end at
 * *records_end) and each entry's home and tag under (seed, M). */
static int hash_entries(const sm_builder *b, uint64_t seed, uint64_t M, kv *out,
                        uint64_t *records_end) {
    uint64_t off = SMF_HEADER_SIZE;
    for (size_t r = 0; r < b->count; r++) {
        if (r + PREFETCH_AHEAD < b->count)
            __builtin_prefetch(&b->items[b->order[r + PREFETCH_AHEAD]]);
        if (r + PREFETCH_AHEAD / 2 < b->count)
            __builtin_prefetch(b->items[b->order[r + PREFETCH_AHEAD / 2]].data);
        const item *it = &b->items[b->order[r]];
        if (off > SMF_MAX_OFFSET)
            return SM_ETOOBIG;
        uint64_t h = sm_hash64(it->data, it->klen, seed);
        out[r].key = smf_home(h, M);
        out[r].val = off | ((h & 0xFF) << SMF_SLOT_TAG_SHIFT);
        off += record_size(it);
    }
    *records_end = off;
    return 0;
}

/* Give each entry, in home order, the first free slot at or after its home.
 * Returns 0, or 1 if some displacement would exceed SMF_DISP_MAX. */
static int place(const kv *byhome, size_t n, uint64_t M, uint64_t *table, uint64_t *table_slots) {
    memset(table, 0, (size_t)(M + SMF_DISP_MAX + 1) * sizeof *table);
    uint64_t next = 0;
    for (size_t k = 0; k < n; k++) {
        uint64_t home = byhome[k].key;
        uint64_t pos = home > next ? home : next;
        uint64_t disp = pos - home;
        if (disp > SMF_DISP_MAX)
            return 1;
        table[pos] = byhome[k].val | (disp << SMF_SLOT_DISP_SHIFT);
        next = pos + 1;
    }
    *table_slots = next > M ? next : M;
    return 0;
}

int sm_builder_layout(sm_builder *b, uint64_t *size) {
    layout *l = &b->lay;
    if (l->valid) {
        *size = l->h.total_size;
        return 0;
    }
    int rc = smi_builder_sort(b);
    if (rc)
        return rc;
    size_t n = b->count;
    kv *a = malloc((n ? n : 1) * sizeof *a), *t = malloc((n ? n : 1) * sizeof *t);
    uint64_t *table = NULL;
    if (!a || !t) {
        rc = -ENOMEM;
        goto done;
    }
    uint64_t M = n ? n + n / 4 + 1 : 0, L = 0, seed = 0, records_end;
    for (int attempt = 0;; attempt++) {
        if ((rc = hash_entries(b, seed, M, a, &records_end)))
            goto done;
        if (!n)
            break;
        free(table);
        table = malloc((size_t)(M + SMF_DISP_MAX + 1) * sizeof *table);
        if (!table) {
            rc = -ENOMEM;
            goto done;
        }
        if (!place(radix_sort(a, t, n, M > 1 ? 64u - (unsigned)__builtin_clzll(M - 1) : 0), n, M, table, &L))
            break;
        /* Pathological keys: try another seed, then a sparser table. */
        if (attempt >= 3)
            M += M / 2;
        if (attempt >= 40 || M > (SIZE_MAX / sizeof *table) - SMF_DISP_MAX - 1) {
            rc = SM_ETOOBIG; /* unreachable without ~2^40 identical hashes */
            goto done;
        }
        seed++;
    }
    uint64_t nsamples = smf_nsamples(n, SMF_SAMPLE_SHIFT);
    uint64_t samples_off = align_up(records_end, SMF_SAMPLES_ALIGN);
    uint64_t table_off = align_up(samples_off + nsamples * SMF_SAMPLE_SIZE, SMF_TABLE_ALIGN);
    if (L > (UINT64_MAX - table_off) / 8) {
        rc = SM_ETOOBIG;
        goto done;
    }
    layout_drop(l);
    l->valid = 1;
    l->h.version = SMF_VERSION;
    l->h.required_flags = 0;
    l->h.compat_flags = 0;
    l->h.key_kind = (uint8_t)(n ? b->kind : SM_KEYS_NONE);
    l->h.hash_id = SMF_HASH_XXH64;
    l->h.sample_shift = SMF_SAMPLE_SHIFT;
    l->h.total_size = table_off + L * 8;
    l->h.count = n;
    l->h.hash_seed = seed;
    l->h.home_slots = M;
    l->h.table_slots = L;
    l->h.table_offset = table_off;
    l->h.samples_offset = samples_off;
    l->h.records_end = records_end;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    l->h.created = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    l->h.body_checksum = 0; /* known once the body is written */
    l->nsamples = nsamples;
    l->table = table;
    table = NULL;
    *size = l->h.total_size;
    rc = 0;
done:
    free(a);
    free(t);
    free(table);
    return rc;
}

/* ---- write ---- */

int sm_builder_write(sm_builder *b, void *buf, uint64_t size, uint64_t created_ns) {
    uint64_t want;
    int rc = sm_builder_layout(b, &want);
    if (rc)
        return rc;
    if (size != want || !buf)
        return -EINVAL;
    const layout *l = &b->lay;
    unsigned char *p = buf;

    unsigned char *w = p + SMF_HEADER_SIZE;
    for (size_t r = 0; r < b->count; r++) {
        if (r + PREFETCH_AHEAD < b->count)
            __builtin_prefetch(&b->items[b->order[r + PREFETCH_AHEAD]]);
        if (r + PREFETCH_AHEAD / 2 < b->count)
            __builtin_prefetch(b->items[b->order[r + PREFETCH_AHEAD / 2]].data);
        const item *it = &b->items[b->order[r]];
        if ((r & ((1u << SMF_SAMPLE_SHIFT) - 1)) == 0) {
            unsigned char *s = p + l->h.samples_offset + (r >> SMF_SAMPLE_SHIFT) * SMF_SAMPLE_SIZE;
            smf_put64(s, (uint64_t)(w - p));
            memset(s + 8, 0, 8);
            memcpy(s + 8, it->data, it->klen < 8 ? it->klen : 8);
        }
        w = smf_put_varint(w, it->klen);
        w = smf_put_varint(w, ((uint64_t)it->vlen << SMF_TYPE_BITS) | it->type);
        memcpy(w, it->data, it->klen + it->vlen);
        w += it->klen + it->vlen;
    }
    memset(w, 0, l->h.samples_offset - l->h.records_end);
    uint64_t samples_end = l->h.samples_offset + l->nsamples * SMF_SAMPLE_SIZE;
    memset(p + samples_end, 0, l->h.table_offset - samples_end);
    unsigned char *t = p + l->h.table_offset;
    for (uint64_t i = 0; i < l->h.table_slots; i++)
        smf_put64(t + 8 * i, l->table[i]);

    smf_header h = l->h;
    if (created_ns != SM_CREATED_AUTO)
        h.created = created_ns;
    h.body_checksum = sm_hash64(p + SMF_HEADER_SIZE, (size_t)(size - SMF_HEADER_SIZE), 0);
    smf_header_write(p, &h);
    return 0;
}
