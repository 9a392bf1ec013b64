/* iter.c: ordered access: cursors, seeks by rank and by key, rank and prefix ranges.
 *
 * Rank -> record: the sample of block rank >> shift gives a record offset, then at
 * most 2^shift - 1 records are skipped (O(1)).  Key -> rank: binary search over the
 * samples, whose 8-byte key prefixes settle most comparisons without touching the
 * records, then a scan of at most one block (O(log n)).
 */
#include "internal.h"

#include <errno.h>

int sm_seek_rank(const sm_reader *r, uint64_t rank, sm_cursor *c) {
    if (r->set)
        return smi_set_seek_rank(r, rank, c);
    if (r->layer)
        return smi_layer_seek_rank(r, rank, c);
    if (rank > r->h.count)
        return -ERANGE;
    sm_cursor at = {r, rank, r->h.records_end};
    if (rank < r->h.count) {
        uint64_t block = rank >> r->h.sample_shift;
        uint64_t off = smi_sample_offset(r, block);
        smf_record rec;
        for (uint64_t k = block << r->h.sample_shift; k < rank; k++) {
            if (smi_record(r, off, &rec))
                return SM_ECORRUPT;
            off = rec.next;
        }
        if (off < SMF_HEADER_SIZE || off >= r->h.records_end)
            return SM_ECORRUPT;
        at.offset = off;
    }
    *c = at; /* only on success: a failed seek leaves the cursor where it was */
    return 0;
}

/* The record under the cursor: 0, SM_NOTFOUND past the end, SM_ECORRUPT. */
static int cursor_record(const sm_cursor *c, smf_record *rec) {
    if (c->rank >= c->reader->h.count)
        return SM_NOTFOUND;
    return smi_record(c->reader, c->offset, rec) ? SM_ECORRUPT : 0;
}

/* Move past rec, the record under the cursor. */
static void cursor_step(sm_cursor *c, const smf_record *rec) {
    c->rank++;
    c->offset = c->rank == c->reader->h.count ? c->reader->h.records_end : rec->next;
}

static int entry_of(const sm_reader *r, const smf_record *rec, sm_entry *out) {
    out->key.data = r->base + rec->key;
    out->key.size = (size_t)rec->klen;
    return smi_value(r, rec, &out->value);
}

int sm_cursor_get(const sm_cursor *c, sm_entry *out) {
    if (c->reader->set)
        return smi_set_cursor_get(c, out);
    if (c->reader->layer)
        return smi_layer_cursor_get(c, out);
    smf_record rec;
    int rc = cursor_record(c, &rec);
    return rc ? rc : entry_of(c->reader, &rec, out);
}

int sm_cursor_next(sm_cursor *c) {
    if (c->reader->set)
        return smi_set_cursor_next(c);
    if (c->reader->layer)
        return smi_layer_cursor_next(c);
    smf_record rec;
    int rc = cursor_record(c, &rec);
    if (rc)
        return rc;
    cursor_step(c, &rec);
    return c->rank == c->reader->h.count ? SM_NOTFOUND : 0;
}

int sm_cursor_read(sm_cursor *c, sm_entry *out) {
    if (c->reader->set)
        return smi_set_cursor_read(c, out);
    if (c->reader->layer)
        return smi_layer_cursor_read(c, out);
    smf_record rec;
    int rc = cursor_record(c, &rec);
    if (!rc && !(rc = entry_of(c->reader, &rec, out)))
        cursor_step(c, &rec);
    return rc;
}

int sm_cursor_read_many(sm_cursor *c, sm_entry *out, size_t max, size_t *nread) {
    if (c->reader->set)
        return smi_set_cursor_read_many(c, out, max, nread);
    if (c->reader->layer)
        return smi_layer_cursor_read_many(c, out, max, nread);
    const sm_reader *r = c->reader;
    uint64_t off = c->offset, left = c->rank < r->h.count ? r->h.count - c->rank : 0;
    size_t n = 0;
    int rc = 0;
    *nread = 0;
    if (left == 0)
        return max == 0 ? 0 : SM_NOTFOUND;
    if (max > left)
        max = (size_t)left;
    while (n < max) {
        smf_record rec;
        if (smi_record(r, off, &rec) || entry_of(r, &rec, &out[n])) {
            rc = SM_ECORRUPT;
            break;
        }
        off = rec.next;
        n++;
    }
    if (n == 0)
        return rc; /* an error is reported by the call that cannot read anything */
    c->rank += n;
    c->offset = c->rank == r->h.count ? r->h.records_end : off;
    *nread = n;
    return 0;
}

int sm_cursor_prev(sm_cursor *c) {
    if (c->rank == 0)
        return SM_NOTFOUND;
    return sm_seek_rank(c->reader, c->rank - 1, c);
}

/* How a probe key compares with stored keys: as a whole key, or as a prefix (every
 * key that starts with it compares equal). */
typedef enum cmp_mode { CMP_KEY, CMP_PREFIX } cmp_mode;

static int cmp_stored(const void *q, size_t qlen, const unsigned char *k, size_t klen,
                      cmp_mode mode) {
    if (mode == CMP_PREFIX && klen >= qlen)
        return memcmp(q, k, qlen);
    return smi_keycmp(q, qlen, k, klen);
}

/* Compare the probe with the key of sample i: <0 probe smaller, 0 equal, >0 bigger. */
static int cmp_sample(const sm_reader *r, uint64_t i, const void *q, size_t qlen, uint64_t qprefix,
                      uint64_t mask, cmp_mode mode, int *err) {
    uint64_t sp = smi_sample_prefix(r, i) & mask;
    if (qprefix != sp)
        return qprefix < sp ? -1 : 1;
    smf_record rec;
    if (smi_record(r, smi_sample_offset(r, i), &rec)) {
        *err = SM_ECORRUPT;
        return 0;
    }
    return cmp_stored(q, qlen, r->base + rec.key, (size_t)rec.klen, mode);
}

/* First rank whose key is >= (or > with strict) the probe under mode. */
static int seek(const sm_reader *r, const void *q, size_t qlen, int strict, cmp_mode mode,
                sm_cursor *c) {
    if (!qlen)
        q = "";
    uint64_t qprefix = smf_prefix64(q, qlen), mask = ~UINT64_C(0);
    if (mode == CMP_PREFIX && qlen < 8)
        mask = qlen ? ~UINT64_C(0) << (8 * (8 - qlen)) : 0;
    qprefix &= mask;
    /* first sample j whose key is >= probe (or > probe if strict) */
    uint64_t lo = 0, hi = r->nsamples;
    int err = 0;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int cmp = cmp_sample(r, mid, q, qlen, qprefix, mask, mode, &err);
        if (err)
            return err;
        if (strict ? cmp >= 0 : cmp > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return sm_seek_rank(r, 0, c);
    /* the answer lies in block lo - 1, after its first record, or at block lo */
    uint64_t rank = (lo - 1) << r->h.sample_shift, stop = lo << r->h.sample_shift;
    if (stop > r->h.count)
        stop = r->h.count;
    sm_cursor at;
    int rc = sm_seek_rank(r, rank, &at);
    if (rc)
        return rc;
    smf_record rec;
    for (; at.rank < stop; at.rank++) {
        if (smi_record(r, at.offset, &rec))
            return SM_ECORRUPT;
        int cmp = cmp_stored(q, qlen, r->base + rec.key, (size_t)rec.klen, mode);
        if (strict ? cmp < 0 : cmp <= 0)
            break;
        at.offset = rec.next;
    }
    if (at.rank == r->h.count)
        at.offset = r->h.records_end;
    *c = at;
    return 0;
}

int sm_seek_key(const sm_reader *r, const void *key, size_t klen, sm_bound bound, sm_cursor *c) {
    if (r->set)
        return smi_set_seek_key(r, key, klen, bound, c);
    if (r->layer)
        return smi_layer_seek_key(r, key, klen, bound, c);
    return seek(r, key, klen, bound == SM_GT, CMP_KEY, c);
}

int sm_rank(const sm_reader *r, const void *key, size_t klen, uint64_t *rank) {
    if (r->set)
        return smi_set_rank(r, key, klen, rank);
    if (r->layer)
        return smi_layer_rank(r, key, klen, rank);
    sm_cursor c;
    int rc = seek(r, key, klen, 0, CMP_KEY, &c);
    if (rc)
        return rc;
    sm_entry e;
    rc = sm_cursor_get(&c, &e);
    if (rc)
        return rc;
    if (e.key.size != klen || (klen && memcmp(e.key.data, key, klen) != 0))
        return SM_NOTFOUND;
    if (rank)
        *rank = c.rank;
    return 0;
}

int sm_prefix_range(const sm_reader *r, const void *prefix, size_t plen, uint64_t *begin,
                    uint64_t *end) {
    if (r->set)
        return smi_set_prefix_range(r, prefix, plen, begin, end);
    if (r->layer)
        return smi_layer_prefix_range(r, prefix, plen, begin, end);
    sm_cursor c;
    int rc = seek(r, prefix, plen, 0, CMP_PREFIX, &c);
    if (rc)
        return rc;
    *begin = c.rank;
    rc = seek(r, prefix, plen, 1, CMP_PREFIX, &c);
    if (rc)
        return rc;
    *end = c.rank;
    return 0;
}
