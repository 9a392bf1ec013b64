/* layout.c: the snapshot writer: a builder's entries as a snapshot (format.h), in two
 * steps.  Layout (sm_builder_layout) sorts, hashes and places every key in the table and
 * computes the header; the result is cached until the next change (dict.c drops it).
 * Write (sm_builder_write) puts the records, samples and table into the caller's buffer,
 * then the header with its checksums (smf_header_write).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static uint64_t record_size(const smi_item *it) {
    return smf_varint_size(it->klen) + smf_varint_size(it->vt) + it->klen + smi_item_vlen(it);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* An entry on its way into the table is an smi_kv: key = its home, val = its slot
 * minus the displacement. */

#define PREFETCH_AHEAD 16

/* One pass over the entries in key order: record offsets (so the records end at
 * *records_end) and each entry's home and tag under (seed, M). */
static int hash_entries(const sm_builder *b, uint64_t seed, uint64_t M, smi_kv *out,
                        uint64_t *records_end) {
    uint64_t off = SMF_HEADER_SIZE;
    for (size_t r = 0; r < b->count; r++) {
        if (r + PREFETCH_AHEAD < b->count)
            __builtin_prefetch(&b->items[b->order[r + PREFETCH_AHEAD]]);
        if (r + PREFETCH_AHEAD / 2 < b->count)
            __builtin_prefetch(b->items[b->order[r + PREFETCH_AHEAD / 2]].data);
        const smi_item *it = &b->items[b->order[r]];
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
static int place(const smi_kv *byhome, size_t n, uint64_t M, uint64_t *table, uint64_t *table_slots) {
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
    smi_layout *l = &b->lay;
    if (l->valid) {
        *size = l->h.total_size;
        return 0;
    }
    int rc = smi_builder_sort(b);
    if (rc)
        return rc;
    size_t n = b->count;
    smi_kv *a = malloc((n ? n : 1) * sizeof *a), *t = malloc((n ? n : 1) * sizeof *t);
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
        if (!place(smi_radix_sort(a, t, n, M > 1 ? 64u - (unsigned)__builtin_clzll(M - 1) : 0), n, M, table, &L))
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
    smi_layout_drop(l);
    l->valid = 1;
    l->h.version = SMF_VERSION;
    l->h.compat_flags = 0;
    l->h.key_kind = (uint8_t)(n ? b->kind : SM_KEYS_NONE);
    l->h.required_flags = l->h.key_kind == SM_KEYS_INT ? SMF_REQ_INT_KEYS : 0;
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
    const smi_layout *l = &b->lay;
    unsigned char *p = buf;

    unsigned char *w = p + SMF_HEADER_SIZE;
    for (size_t r = 0; r < b->count; r++) {
        if (r + PREFETCH_AHEAD < b->count)
            __builtin_prefetch(&b->items[b->order[r + PREFETCH_AHEAD]]);
        if (r + PREFETCH_AHEAD / 2 < b->count)
            __builtin_prefetch(b->items[b->order[r + PREFETCH_AHEAD / 2]].data);
        const smi_item *it = &b->items[b->order[r]];
        if ((r & ((1u << SMF_SAMPLE_SHIFT) - 1)) == 0) {
            unsigned char *s = p + l->h.samples_offset + (r >> SMF_SAMPLE_SHIFT) * SMF_SAMPLE_SIZE;
            smf_put64(s, (uint64_t)(w - p));
            memset(s + 8, 0, 8);
            memcpy(s + 8, it->data, it->klen < 8 ? it->klen : 8);
        }
        w = smf_put_varint(w, it->klen);
        w = smf_put_varint(w, it->vt);
        size_t n = (size_t)(it->klen + smi_item_vlen(it));
        memcpy(w, it->data, n);
        w += n;
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
