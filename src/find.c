/* find.c: point lookup through the hash table (see format.h for the layout).
 *
 *   home(q)                                   slots, in Robin Hood order
 *     |                                        (home = slot - disp never decreases)
 *     v
 *   [ h<q ][ h<q ][ h=q ][ h=q ][ h>q ]...
 *     skip   skip  tag,key tag,key  stop: q is absent
 *
 * One cache line of table is usually all a miss costs; a hit adds the record.  sm_get_many
 * overlaps those accesses for many keys (below).
 */
#include "internal.h"

#include <errno.h>

typedef enum probe_result { PROBE_FOUND, PROBE_ABSENT, PROBE_CORRUPT } probe_result;

/* The lookup of key, whose hash under the snapshot's seed is h. */
static probe_result probe(const sm_reader *r, const void *key, size_t klen, uint64_t h,
                          smf_record *rec) {
    uint64_t home = smf_home(h, r->h.home_slots);
    uint64_t tag = h & 0xFF;
    const unsigned char *table = r->base + r->h.table_offset;
    /* a slot past home + SMF_DISP_MAX cannot hold an entry of this home */
    uint64_t L = r->h.table_slots;
    uint64_t end = L - home > SMF_DISP_MAX ? home + SMF_DISP_MAX + 1 : L;
    for (uint64_t i = home; i < end; i++) {
        uint64_t slot = smf_le64(table + 8 * i);
        if (!slot)
            return PROBE_ABSENT;
        uint64_t disp = slot >> SMF_SLOT_DISP_SHIFT;
        if (disp > i)
            return PROBE_CORRUPT;
        uint64_t slot_home = i - disp;
        if (slot_home > home)
            return PROBE_ABSENT;
        if (slot_home == home && ((slot >> SMF_SLOT_TAG_SHIFT) & 0xFF) == tag) {
            if (smi_record(r, slot & SMF_SLOT_OFFSET_MASK, rec))
                return PROBE_CORRUPT;
            if (rec->klen == klen && memcmp(r->base + rec->key, key, klen) == 0)
                return PROBE_FOUND;
        }
    }
    return PROBE_ABSENT;
}

int smi_probe(const sm_reader *r, const void *key, size_t klen, uint64_t h, smf_record *rec) {
    switch (probe(r, key, klen, h, rec)) {
    case PROBE_FOUND:
        return 0;
    case PROBE_ABSENT:
        return SM_NOTFOUND;
    default:
        return SM_ECORRUPT;
    }
}

/* What sm_get() returns for key, of hash h. */
static int get_hashed(const sm_reader *r, const void *key, size_t klen, uint64_t h,
                      sm_value *out) {
    smf_record rec;
    switch (probe(r, key, klen, h, &rec)) {
    case PROBE_FOUND:
        if (out)
            return smi_value(r, &rec, out);
        return smf_value_ok(rec.type, rec.vlen) ? 0 : SM_ECORRUPT;
    case PROBE_ABSENT:
        return SM_NOTFOUND;
    default:
        return SM_ECORRUPT;
    }
}

int sm_get(const sm_reader *r, const void *key, size_t klen, sm_value *out) {
    if (r->set)
        r = smi_set_route(r, key, klen);
    if (r->layer)
        return smi_layer_get(r, key, klen, out);
    if (r->h.count == 0)
        return SM_NOTFOUND;
    if (!klen)
        key = "";
    return get_hashed(r, key, klen, sm_hash64(key, klen, r->h.hash_seed), out);
}

/* ---- many keys at once: group prefetching (Chen, Ailamaki, Gibbons, Mowry 2004) ----
 *
 * A group of up to `window` keys goes through three passes, each touching memory that the
 * pass before asked for, so that the cache misses of the group overlap instead of coming
 * one after another:
 *   1. hash every key, prefetch the cache line of its home slot;
 *   2. read the first slots from each home (now in cache, or on their way) and prefetch the
 *      record named by the first slot whose home and tag match the key;
 *   3. look every key up with sm_get()'s own probe (get_hashed), given the hash, whose
 *      slots and record the passes before brought in.
 * Pass 3 is the whole lookup, so the answers are sm_get()'s by construction; passes 1 and 2
 * only prefetch, which never faults, and they compute addresses inside the snapshot only
 * (a home is below home_slots <= table_slots; a record offset is used only below
 * records_end). */

/* Slots pass 2 reads from a home to find the record to prefetch: at a load of 0.8 the key
 * is in the first two nearly always. */
#define PEEK_SLOTS 4

static void prefetch_record(const sm_reader *r, uint64_t h) {
    uint64_t home = smf_home(h, r->h.home_slots), tag = h & 0xFF;
    const unsigned char *table = r->base + r->h.table_offset;
    uint64_t L = r->h.table_slots;
    for (uint64_t i = home; i < L && i < home + PEEK_SLOTS; i++) {
        uint64_t slot = smf_le64(table + 8 * i);
        uint64_t disp = slot >> SMF_SLOT_DISP_SHIFT;
        if (!slot || disp > i || i - disp > home)
            return;
        if (i - disp == home && ((slot >> SMF_SLOT_TAG_SHIFT) & 0xFF) == tag) {
            uint64_t off = slot & SMF_SLOT_OFFSET_MASK;
            if (off < r->h.records_end)
                __builtin_prefetch(r->base + off);
            return;
        }
    }
}

/* Key i of a batch: its bytes (an int key's made into buf) and, in *klen, their length. */
static inline const void *key_at(const sm_buf *keys, const int64_t *ikeys, size_t i,
                                 unsigned char *buf, size_t *klen) {
    if (ikeys != NULL) {
        sm_key_int(ikeys[i], buf);
        *klen = SM_INT_KEY_SIZE;
        return buf;
    }
    *klen = keys[i].size;
    return keys[i].size ? keys[i].data : "";
}

int smi_get_many(const sm_reader *r, size_t n, const sm_buf *keys, const int64_t *ikeys,
                 sm_value *values, int *status, size_t window) {
    if (r->layer)
        return smi_layer_get_many(r, n, keys, ikeys, values, status);
    if (n && ((!keys && !ikeys) || !status))
        return -EINVAL;
    if (window < 1)
        window = 1;
    if (window > SMI_GET_MANY_WINDOW_MAX)
        window = SMI_GET_MANY_WINDOW_MAX;
    int first_error = 0;
    if (r->h.count == 0 || (ikeys != NULL && r->h.key_kind != SM_KEYS_INT)) {
        for (size_t i = 0; i < n; i++)
            status[i] = SM_NOTFOUND;
        return 0;
    }
    const sm_reader *rd[SMI_GET_MANY_WINDOW_MAX]; /* each key's snapshot: r, or a set's shard */
    uint64_t hash[SMI_GET_MANY_WINDOW_MAX];
    const void *key[SMI_GET_MANY_WINDOW_MAX];
    size_t klen[SMI_GET_MANY_WINDOW_MAX];
    unsigned char ibuf[SMI_GET_MANY_WINDOW_MAX][SM_INT_KEY_SIZE];
    for (size_t start = 0; start < n; start += window) {
        size_t m = n - start < window ? n - start : window;
        for (size_t j = 0; j < m; j++) { /* pass 1 */
            key[j] = key_at(keys, ikeys, start + j, ibuf[j], &klen[j]);
            rd[j] = r->set ? smi_set_route(r, key[j], klen[j]) : r;
            hash[j] = sm_hash64(key[j], klen[j], rd[j]->h.hash_seed);
            if (rd[j]->h.count)
                __builtin_prefetch(rd[j]->base + rd[j]->h.table_offset +
                                   8 * smf_home(hash[j], rd[j]->h.home_slots));
        }
        if (m > 1)
            for (size_t j = 0; j < m; j++) /* pass 2 */
                if (rd[j]->h.count)
                    prefetch_record(rd[j], hash[j]);
        for (size_t j = 0; j < m; j++) { /* pass 3 */
            size_t i = start + j;
            int rc = rd[j]->h.count == 0
                         ? SM_NOTFOUND
                         : get_hashed(rd[j], key[j], klen[j], hash[j], values ? &values[i] : NULL);
            status[i] = rc;
            if (rc && rc != SM_NOTFOUND && !first_error)
                first_error = rc;
        }
    }
    return first_error;
}

int sm_get_many(const sm_reader *r, size_t n, const sm_buf *keys, sm_value *values,
                int *status) {
    if (n && !keys)
        return -EINVAL;
    return smi_get_many(r, n, keys, NULL, values, status, SM_GET_MANY_WINDOW);
}

int sm_get_many_int(const sm_reader *r, size_t n, const int64_t *keys, sm_value *values,
                    int *status) {
    if (n && !keys)
        return -EINVAL;
    return smi_get_many(r, n, NULL, keys, values, status, SM_GET_MANY_WINDOW);
}
