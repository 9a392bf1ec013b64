/* verify.c: the full O(n) integrity check of a snapshot.
 *
 * Everything the O(1) open trusts only lazily is checked here: the body checksum,
 * every record (bounds, type, payload length, UTF-8), strict key order, the
 * samples, zero padding, and the hash table (each slot names a record start whose
 * key hashes to that slot's home and tag; homes never decrease; no gaps between a
 * key's home and its slot; every record is named exactly once).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

/* Index of off in the sorted array offs[0, n), or n. */
static uint64_t find_offset(const uint64_t *offs, uint64_t n, uint64_t off) {
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (offs[mid] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && offs[lo] == off ? lo : n;
}

int sm_reader_verify(const sm_reader *r) {
    if (r->set)
        return smi_set_verify(r);
    if (r->layer)
        return smi_layer_verify(r);
    const unsigned char *base = r->base;
    uint64_t body = r->h.total_size - SMF_HEADER_SIZE;
    if (sm_hash64(base + SMF_HEADER_SIZE, (size_t)body, 0) != r->h.body_checksum)
        return SM_ECHECKSUM;
    uint64_t n = r->h.count;
    uint64_t *offs = malloc((size_t)(n ? n : 1) * sizeof *offs);
    unsigned char *seen = calloc((size_t)(n ? n : 1), 1);
    int rc = SM_ECORRUPT;
    if (!offs || !seen) {
        rc = -ENOMEM;
        goto done;
    }
    /* records */
    uint64_t off = SMF_HEADER_SIZE, prev_key = 0, prev_klen = 0;
    uint64_t block_mask = (UINT64_C(1) << r->h.sample_shift) - 1;
    int tombstones = (r->h.required_flags & SMF_REQ_TOMBSTONES) != 0;
    for (uint64_t i = 0; i < n; i++) {
        smf_record rec;
        if (smi_record(r, off, &rec) || off > SMF_MAX_OFFSET)
            goto done;
        if (!smf_value_ok(rec.type, rec.vlen) &&
            !(tombstones && rec.type == SMF_TYPE_TOMBSTONE && rec.vlen == 0))
            goto done; /* a delta's deletions have type 7 and no payload */
        if (i && smi_keycmp(base + prev_key, (size_t)prev_klen, base + rec.key, (size_t)rec.klen) >= 0)
            goto done;
        if (r->h.key_kind == SM_KEYS_STR && !smi_utf8_valid(base + rec.key, (size_t)rec.klen)) {
            rc = SM_EUTF8;
            goto done;
        }
        if (rec.type == SM_STR && !smi_utf8_valid(base + rec.val, (size_t)rec.vlen)) {
            rc = SM_EUTF8;
            goto done;
        }
        if ((i & block_mask) == 0) {
            uint64_t s = i >> r->h.sample_shift;
            unsigned char want[8] = {0};
            memcpy(want, base + rec.key, rec.klen < 8 ? (size_t)rec.klen : 8);
            if (smi_sample_offset(r, s) != off ||
                memcmp(base + r->h.samples_offset + s * SMF_SAMPLE_SIZE + 8, want, 8) != 0)
                goto done;
        }
        offs[i] = off;
        prev_key = rec.key;
        prev_klen = rec.klen;
        off = rec.next;
    }
    if (off != r->h.records_end)
        goto done;
    uint64_t samples_end = r->h.samples_offset + r->nsamples * SMF_SAMPLE_SIZE;
    if (!smi_zeros(base + r->h.records_end, r->h.samples_offset - r->h.records_end) ||
        !smi_zeros(base + samples_end, r->h.table_offset - samples_end))
        goto done;
    /* table */
    const unsigned char *table = base + r->h.table_offset;
    uint64_t occupied = 0, last_home = 0, after_empty = 0; /* first slot after the last empty one */
    for (uint64_t i = 0; i < r->h.table_slots; i++) {
        uint64_t slot = smf_le64(table + 8 * i);
        if (!slot) {
            after_empty = i + 1;
            continue;
        }
        uint64_t disp = slot >> SMF_SLOT_DISP_SHIFT;
        if (disp > i)
            goto done;
        uint64_t home = i - disp;
        /* homes never decrease, and no empty slot lies between a key's home and its slot */
        if (home >= r->h.home_slots || (occupied && home < last_home) || home < after_empty)
            goto done;
        uint64_t k = find_offset(offs, n, slot & SMF_SLOT_OFFSET_MASK);
        if (k == n || seen[k])
            goto done;
        seen[k] = 1;
        smf_record rec;
        if (smi_record(r, offs[k], &rec))
            goto done;
        uint64_t h = sm_hash64(base + rec.key, (size_t)rec.klen, r->h.hash_seed);
        if (smf_home(h, r->h.home_slots) != home ||
            ((slot >> SMF_SLOT_TAG_SHIFT) & 0xFF) != (h & 0xFF))
            goto done;
        last_home = home;
        occupied++;
    }
    if (occupied != n)
        goto done;
    rc = 0;
done:
    free(offs);
    free(seen);
    return rc;
}
