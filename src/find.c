/* find.c: point lookup through the hash table (see format.h for the layout).
 *
 *   home(q)                                   slots, in Robin Hood order
 *     |                                        (home = slot - disp never decreases)
 *     v
 *   [ h<q ][ h<q ][ h=q ][ h=q ][ h>q ]...
 *     skip   skip  tag,key tag,key  stop: q is absent
 *
 * One cache line of table is usually all a miss costs; a hit adds the record.
 */
#include "internal.h"

typedef enum probe_result { PROBE_FOUND, PROBE_ABSENT, PROBE_CORRUPT } probe_result;

static probe_result probe(const sm_reader *r, const void *key, size_t klen, smf_record *rec) {
    uint64_t h = sm_hash64(key, klen, r->h.hash_seed);
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

int sm_get(const sm_reader *r, const void *key, size_t klen, sm_value *out) {
    if (r->h.count == 0)
        return SM_NOTFOUND;
    if (!klen)
        key = "";
    smf_record rec;
    switch (probe(r, key, klen, &rec)) {
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
