/* format.c: the snapshot header, bytes <-> smf_header: the checks R1-R9 of docs/FORMAT.md §7
 * that a reader makes at open (open.c, and sm_list's look at each header), and the encoding
 * the writer (layout.c) finishes a snapshot with.
 *
 * After smf_header_parse() succeeds these hold, and every reader relies on them:
 *   128 <= records_end <= samples_offset, samples_offset + 16 * nsamples <= table_offset,
 *   table_offset + 8 * table_slots == total_size, home_slots <= table_slots,
 *   nsamples == ceil(count / 2^sample_shift), count <= (records_end - 128) / 2
 *   (a record is at least 2 bytes), count <= table_slots, count == 0 or
 *   home_slots > 0.
 * Records and slots are still untrusted: each is checked when it is read (R10-R12).
 */
#include "internal.h"

int smf_header_parse(const unsigned char *p, uint64_t n, smf_header *h) {
    return smf_header_parse_as(p, n, SMF_REQ_KNOWN, h);
}

int smf_header_parse_as(const unsigned char *p, uint64_t n, uint32_t known, smf_header *h) {
    if (n < SMF_MAGIC_LEN || memcmp(p, SMF_MAGIC, SMF_MAGIC_LEN) != 0)
        return SM_EBADMAGIC; /* R1 */
    if (n < 16)
        return SM_ETRUNCATED; /* R2 */
    uint32_t bom = smf_le32(p + SMF_OFF_BYTE_ORDER);
    if (bom != SMF_BYTE_ORDER)
        return bom == __builtin_bswap32(SMF_BYTE_ORDER) ? SM_EENDIAN : SM_EHEADER;
    if (smf_le16(p + SMF_OFF_VERSION) != SMF_VERSION)
        return SM_EVERSION; /* R3 */
    if (smf_le16(p + SMF_OFF_HEADER_SIZE) != SMF_HEADER_SIZE)
        return SM_EHEADER; /* R4 */
    if (n < SMF_HEADER_SIZE)
        return SM_ETRUNCATED;
    if (sm_hash64(p, SMF_OFF_HEADER_SUM, 0) != smf_le64(p + SMF_OFF_HEADER_SUM))
        return SM_EHEADER; /* R5 */
    uint32_t required = smf_le32(p + SMF_OFF_REQUIRED_FLAGS);
    if (required & ~known)
        return SM_EFEATURE; /* R6 */
    for (unsigned i = SMF_OFF_RESERVED; i < SMF_OFF_TOTAL_SIZE; i++)
        if (p[i])
            return SM_EHEADER; /* R7 */

    smf_header d;
    d.version = SMF_VERSION;
    d.required_flags = required;
    d.compat_flags = smf_le32(p + SMF_OFF_COMPAT_FLAGS);
    d.key_kind = p[SMF_OFF_KEY_KIND];
    d.hash_id = p[SMF_OFF_HASH_ID];
    d.sample_shift = p[SMF_OFF_SAMPLE_SHIFT];
    d.total_size = smf_le64(p + SMF_OFF_TOTAL_SIZE);
    d.count = smf_le64(p + SMF_OFF_COUNT);
    d.hash_seed = smf_le64(p + SMF_OFF_HASH_SEED);
    d.home_slots = smf_le64(p + SMF_OFF_HOME_SLOTS);
    d.table_slots = smf_le64(p + SMF_OFF_TABLE_SLOTS);
    d.table_offset = smf_le64(p + SMF_OFF_TABLE);
    d.samples_offset = smf_le64(p + SMF_OFF_SAMPLES);
    d.records_end = smf_le64(p + SMF_OFF_RECORDS_END);
    d.created = smf_le64(p + SMF_OFF_CREATED);
    d.body_checksum = smf_le64(p + SMF_OFF_BODY_SUM);
    if (d.total_size != n)
        return SM_ETRUNCATED; /* R8 */
    if (required & SMF_REQ_LAYER) {
        *h = d; /* a layer file: its own rules for the rest (layer.c) */
        return 0;
    }

    /* R9: every failure is SM_EHEADER, so the order of these does not show.  Regions in
     * order, each inside the snapshot: differences only, no sums that could overflow. */
    uint64_t size = d.total_size, count = d.count, M = d.home_slots, L = d.table_slots;
    if (d.key_kind > SM_KEYS_INT || (d.key_kind == SM_KEYS_NONE && count != 0))
        return SM_EHEADER;
    if (((required & SMF_REQ_INT_KEYS) != 0) != (d.key_kind == SM_KEYS_INT))
        return SM_EHEADER;
    if (d.hash_id != SMF_HASH_XXH64 || d.sample_shift > SMF_SAMPLE_SHIFT_MAX)
        return SM_EHEADER;
    if (d.records_end < SMF_HEADER_SIZE || d.records_end > d.samples_offset ||
        d.samples_offset > d.table_offset || d.table_offset > size)
        return SM_EHEADER;
    if (count > (d.records_end - SMF_HEADER_SIZE) / 2)
        return SM_EHEADER;
    if (d.key_kind == SM_KEYS_INT && count > (d.records_end - SMF_HEADER_SIZE) / 10)
        return SM_EHEADER; /* an int record is at least 10 bytes */
    if (smf_nsamples(count, d.sample_shift) > (d.table_offset - d.samples_offset) / SMF_SAMPLE_SIZE)
        return SM_EHEADER;
    if ((size - d.table_offset) % 8 != 0 || L != (size - d.table_offset) / 8)
        return SM_EHEADER;
    if (M > L || (count && M == 0) || count > L)
        return SM_EHEADER;
    *h = d;
    return 0;
}

void smf_header_write(unsigned char *p, const smf_header *h) {
    memset(p, 0, SMF_HEADER_SIZE); /* the reserved bytes, and superseded */
    memcpy(p + SMF_OFF_MAGIC, SMF_MAGIC, SMF_MAGIC_LEN);
    smf_put32(p + SMF_OFF_BYTE_ORDER, SMF_BYTE_ORDER);
    smf_put16(p + SMF_OFF_VERSION, h->version);
    smf_put16(p + SMF_OFF_HEADER_SIZE, SMF_HEADER_SIZE);
    smf_put32(p + SMF_OFF_REQUIRED_FLAGS, h->required_flags);
    smf_put32(p + SMF_OFF_COMPAT_FLAGS, h->compat_flags);
    p[SMF_OFF_KEY_KIND] = h->key_kind;
    p[SMF_OFF_HASH_ID] = h->hash_id;
    p[SMF_OFF_SAMPLE_SHIFT] = h->sample_shift;
    smf_put64(p + SMF_OFF_TOTAL_SIZE, h->total_size);
    smf_put64(p + SMF_OFF_COUNT, h->count);
    smf_put64(p + SMF_OFF_HASH_SEED, h->hash_seed);
    smf_put64(p + SMF_OFF_HOME_SLOTS, h->home_slots);
    smf_put64(p + SMF_OFF_TABLE_SLOTS, h->table_slots);
    smf_put64(p + SMF_OFF_TABLE, h->table_offset);
    smf_put64(p + SMF_OFF_SAMPLES, h->samples_offset);
    smf_put64(p + SMF_OFF_RECORDS_END, h->records_end);
    smf_put64(p + SMF_OFF_CREATED, h->created);
    smf_put64(p + SMF_OFF_BODY_SUM, h->body_checksum);
    smf_put64(p + SMF_OFF_HEADER_SUM, sm_hash64(p, SMF_OFF_HEADER_SUM, 0));
}
