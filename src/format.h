/* format.h: the on-disk layout of a snapshot (docs/FORMAT.md is its spec): its constants,
 * its header as a struct (smf_header, parsed and written by format.c), and the
 * bounds-checked primitives every reader of it goes through.
 *
 * A snapshot is one contiguous run of bytes; every offset in it is relative to its
 * first byte, every integer little-endian, nothing is assumed aligned:
 *
 *   0        128                     records_end  samples_offset    table_offset   total_size
 *   +--------+--------------------------+.........+-----------------+.....+-------------+
 *   | header | records, in key order    | pad     | samples         | pad | hash table  |
 *   +--------+--------------------------+.........+-----------------+.....+-------------+
 *
 * record   varint klen | varint (vlen << 4 | type) | key bytes | value bytes
 *          Records follow each other with no gaps, so walking them in order is a
 *          sequential scan: that is iteration, ranges and prefixes.
 * samples  one 16-byte entry per 2^sample_shift records (every 16th in v1):
 *          u64 offset of that record | first 8 key bytes, zero-padded.
 *          Binary search runs over this small array (the key prefix settles most
 *          comparisons without touching a record), then scans less than one block (15
 *          records in what this library writes, 255 at most):
 *          bisect/seek in O(log n), rank -> record in O(1).
 * table    table_slots u64 slots, open addressing with linear probing, laid out
 *          in Robin Hood order (the homes of occupied slots never decrease):
 *
 *              63      56 55     48 47                                   0
 *             +----------+---------+--------------------------------------+
 *             |  disp    |  tag    |  record offset (0 = empty slot)      |
 *             +----------+---------+--------------------------------------+
 *
 *          h = XXH64(key, hash_seed); home = (h * home_slots) >> 64 (the high
 *          half of the 128-bit product); tag = h & 0xFF; disp = slot - home.
 *          A lookup reads the slots from home on: it skips slots whose home
 *          (slot - disp) is lower, checks the tag and then the key of those whose
 *          home is equal, and stops at an empty slot or a higher home.  With
 *          home_slots = 1.25 n the run is ~2 slots, so a hit costs one cache line of
 *          table plus the record (two dependent memory accesses), and a miss
 *          usually only the cache line of table.
 */
#ifndef SM_FORMAT_H
#define SM_FORMAT_H

#include <stdint.h>
#include <string.h>

/* ---- header (128 bytes) ---- */
#define SMF_MAGIC "\x89SMP\r\n\x1a\n" /* 8 bytes: high bit, CR LF, ^Z, LF catch mangled transfers */
#define SMF_MAGIC_LEN 8
#define SMF_BYTE_ORDER 0x0A0B0C0Du /* stored LE: 0D 0C 0B 0A */
#define SMF_VERSION 1u
#define SMF_HEADER_SIZE 128u

#define SMF_OFF_MAGIC 0           /* u8[8] */
#define SMF_OFF_BYTE_ORDER 8      /* u32 */
#define SMF_OFF_VERSION 12        /* u16 */
#define SMF_OFF_HEADER_SIZE 14    /* u16 */
#define SMF_OFF_REQUIRED_FLAGS 16 /* u32: reader refuses any bit it does not know (SMF_REQ_*) */
#define SMF_OFF_COMPAT_FLAGS 20   /* u32: reader ignores bits it does not know (none in v1) */
#define SMF_OFF_KEY_KIND 24       /* u8: 0 none (only when count == 0), 1 bytes, 2 str, 3 int */
#define SMF_OFF_HASH_ID 25        /* u8: 1 = XXH64 */
#define SMF_OFF_SAMPLE_SHIFT 26   /* u8: log2 of the sample interval, 0..8 (v1 writes 4) */
#define SMF_OFF_RESERVED 27       /* u8[5]: zero */
#define SMF_OFF_TOTAL_SIZE 32     /* u64 */
#define SMF_OFF_COUNT 40          /* u64 */
#define SMF_OFF_HASH_SEED 48      /* u64 */
#define SMF_OFF_HOME_SLOTS 56     /* u64: M, the range of home positions */
#define SMF_OFF_TABLE_SLOTS 64    /* u64: L >= M, slots including the overflow tail */
#define SMF_OFF_TABLE 72          /* u64: offset of the table */
#define SMF_OFF_SAMPLES 80        /* u64: offset of the samples */
#define SMF_OFF_RECORDS_END 88    /* u64: end of the records (they start at 128) */
#define SMF_OFF_CREATED 96        /* u64: ns since the Unix epoch */
#define SMF_OFF_BODY_SUM 104      /* u64: XXH64(seed 0) of bytes [128, total_size) */
#define SMF_OFF_HEADER_SUM 112    /* u64: XXH64(seed 0) of bytes [0, 112) */
#define SMF_OFF_SUPERSEDED 120    /* u64: mutable, outside both checksums: 0, or 1 once replaced */

/* Required flags (§9): a snapshot that sets one is refused by every reader that does not
 * know it (R6), so an older reader says "unsupported feature" instead of misreading it. */
#define SMF_REQ_INT_KEYS 0x1u /* key_kind 3: 8-byte order-preserving int keys; set iff kind 3 */
#define SMF_REQ_LAYER 0x2u      /* a layer file (§13): a delta over a base named inside it */
#define SMF_REQ_TOMBSTONES 0x4u /* a delta (§13): records of type 7 are deletions */
/* what a map's own header may carry; a delta inside a layer file may also carry TOMBSTONES */
#define SMF_REQ_KNOWN SMF_REQ_INT_KEYS
#define SMF_REQ_KNOWN_DELTA (SMF_REQ_INT_KEYS | SMF_REQ_TOMBSTONES)
#define SMF_INT_KEY_SIZE 8u

#define SMF_HASH_XXH64 1u
#define SMF_SAMPLE_SHIFT 4u     /* what this library writes */
#define SMF_SAMPLE_SHIFT_MAX 8u /* what it accepts */
#define SMF_SAMPLE_SIZE 16u
#define SMF_SAMPLE_PREFIX 8u
#define SMF_TABLE_ALIGN 64u
#define SMF_SAMPLES_ALIGN 8u

/* The header decoded: every field of §2 that can vary, as smf_header_parse() hands it to a
 * reader and as smf_header_write() takes it from the writer.  The rest of the 128 bytes is
 * fixed, so it has no field: magic, byte_order and header_size (parse checks them, write
 * writes them), the reserved bytes (zero), header_checksum (write computes it, parse checks
 * it), and superseded, the one mutable word (write writes 0; publish.c sets it in the file,
 * sm_reader_superseded() loads it in place).  The number after each field is its offset. */
typedef struct smf_header {
    uint16_t version;        /* 12: SMF_VERSION, the only one parse accepts (R3) */
    uint32_t required_flags; /* 16: SMF_REQ_*; parse refuses unknown bits (R6) and a
                              * SMF_REQ_INT_KEYS that disagrees with key_kind (R9) */
    uint32_t compat_flags;   /* 20: ignored by readers; this library writes 0 */
    uint8_t key_kind;        /* 24: 0 none (only when count == 0), 1 bytes, 2 str, 3 int
                              * (sm_key_kind) */
    uint8_t hash_id;         /* 25: SMF_HASH_XXH64 */
    uint8_t sample_shift;    /* 26: log2 of the sample interval, <= SMF_SAMPLE_SHIFT_MAX */
    uint64_t total_size;     /* 32: bytes of the snapshot; parse wants the bytes it has (R8) */
    uint64_t count;          /* 40: entries */
    uint64_t hash_seed;      /* 48: seed of XXH64 for the table's homes and tags */
    uint64_t home_slots;     /* 56: M, the range of home positions */
    uint64_t table_slots;    /* 64: L >= M, slots including the overflow tail */
    uint64_t table_offset;   /* 72: where the table starts; it ends at total_size */
    uint64_t samples_offset; /* 80: where the samples start */
    uint64_t records_end;    /* 88: end of the records (they start at SMF_HEADER_SIZE) */
    uint64_t created;        /* 96: ns since the Unix epoch (informational, may be 0) */
    uint64_t body_checksum;  /* 104: XXH64(seed 0) of [SMF_HEADER_SIZE, total_size): parse
                              * only reads it, sm_reader_verify checks it (V1) */
} smf_header;

/* Checks R1-R9 of docs/FORMAT.md §7, in that order, for a snapshot of n bytes whose first
 * min(n, SMF_HEADER_SIZE) bytes are at p (all of it, or only its header for a look at a
 * file that is not mapped), and on success fills *h.  Returns 0 or the error of the first
 * check that fails: SM_EBADMAGIC, SM_ETRUNCATED, SM_EENDIAN, SM_EHEADER, SM_EVERSION,
 * SM_EFEATURE (format.c). */
int smf_header_parse(const unsigned char *p, uint64_t n, smf_header *h);
/* smf_header_parse with `known` the required flags R6 accepts (SMF_REQ_KNOWN_DELTA for the
 * delta of a layer file; with SMF_REQ_LAYER, a layer file's header, of which it makes R1-R8
 * only and fills *h with the raw fields: layer.c checks the rest). */
int smf_header_parse_as(const unsigned char *p, uint64_t n, uint32_t known, smf_header *h);

/* Writes h as the SMF_HEADER_SIZE bytes at p, with the format's constants, zero reserved
 * bytes and superseded word, and the header checksum computed last (format.c). */
void smf_header_write(unsigned char *p, const smf_header *h);

/* ---- slots ---- */
#define SMF_SLOT_OFFSET_BITS 48
#define SMF_SLOT_OFFSET_MASK ((UINT64_C(1) << SMF_SLOT_OFFSET_BITS) - 1)
#define SMF_SLOT_TAG_SHIFT 48
#define SMF_SLOT_DISP_SHIFT 56
#define SMF_DISP_MAX 255u
#define SMF_MAX_OFFSET SMF_SLOT_OFFSET_MASK /* records must start below 2^48 */

/* ---- records ---- */
#define SMF_TYPE_BITS 4
#define SMF_TYPE_MASK 0xFu
#define SMF_TYPE_MAX 6u /* SM_STR; 7..15 are invalid in v1 */
#define SMF_TYPE_TOMBSTONE 7u /* in a delta only (SMF_REQ_TOMBSTONES): the key is deleted */
#define SMF_VARINT_MAX 10u

static inline uint16_t smf_le16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t smf_le32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}
static inline uint64_t smf_le64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
static inline void smf_put16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void smf_put32(unsigned char *p, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}
static inline void smf_put64(unsigned char *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* Big-endian load of up to 8 key bytes, zero-padded: comparing two of these as
 * integers compares the byte strings' first 8 bytes. */
static inline uint64_t smf_prefix64(const unsigned char *p, size_t n) {
    uint64_t v;
    if (n >= 8) { /* one load; the copy of fewer bytes is a call to memcpy */
        memcpy(&v, p, 8);
    } else {
        unsigned char b[8] = {0};
        memcpy(b, p, n);
        memcpy(&v, b, 8);
    }
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* home = high half of h * M. */
static inline uint64_t smf_home(uint64_t h, uint64_t home_slots) {
    return (uint64_t)(((unsigned __int128)h * home_slots) >> 64);
}

/* The number of samples of count records, one per 2^shift: ceil(count / 2^shift), with
 * no sum that could wrap around. */
static inline uint64_t smf_nsamples(uint64_t count, unsigned shift) {
    return count ? ((count - 1) >> shift) + 1 : 0;
}

/* Unsigned LEB128, at most 10 bytes, value < 2^64.  Reads only [*pos, end).
 * Returns 0 and advances *pos, or -1 if it runs past end or is too long. */
static inline int smf_varint(const unsigned char *base, uint64_t *pos, uint64_t end,
                             uint64_t *out) {
    uint64_t p = *pos, v = 0;
    unsigned shift = 0;
    if (p < end) { /* the common cases first: one byte, then two */
        if (base[p] < 0x80) {
            *out = base[p];
            *pos = p + 1;
            return 0;
        }
        if (end - p >= 2 && base[p + 1] < 0x80) {
            *out = (uint64_t)(base[p] & 0x7F) | (uint64_t)base[p + 1] << 7;
            *pos = p + 2;
            return 0;
        }
    }
    for (unsigned i = 0; i < SMF_VARINT_MAX; i++) {
        if (p >= end)
            return -1;
        unsigned char c = base[p++];
        if (shift == 63 && (c & 0x7E))
            return -1; /* would overflow 64 bits */
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *pos = p;
            *out = v;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

static inline unsigned smf_varint_size(uint64_t v) {
    unsigned n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline unsigned char *smf_put_varint(unsigned char *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* A record, parsed and bounds-checked: key at [key, key+klen), value payload at
 * [val, val+vlen), next record at next. */
typedef struct smf_record {
    uint64_t key, klen, val, vlen, next;
    unsigned type;
} smf_record;

/* Parse the record at offset off, which must lie in [start, end).  Checks that
 * the whole record fits before end; does not check the type (see smf_value_ok). */
static inline int smf_record_parse(const unsigned char *base, uint64_t off, uint64_t end,
                                   smf_record *rec) {
    uint64_t p = off, klen, word;
    if (smf_varint(base, &p, end, &klen) || smf_varint(base, &p, end, &word))
        return -1;
    uint64_t vlen = word >> SMF_TYPE_BITS;
    if (klen > end - p)
        return -1;
    rec->key = p;
    rec->klen = klen;
    p += klen;
    if (vlen > end - p)
        return -1;
    rec->val = p;
    rec->vlen = vlen;
    rec->next = p + vlen;
    rec->type = (unsigned)(word & SMF_TYPE_MASK);
    return 0;
}

/* Payload length rules per type: NONE/FALSE/TRUE 0, INT 0..8, FLOAT 8, others any. */
static inline int smf_value_ok(unsigned type, uint64_t vlen) {
    switch (type) {
    case 0: case 1: case 2: return vlen == 0;
    case 3: return vlen <= 8;
    case 4: return vlen == 8;
    case 5: case 6: return 1;
    default: return 0;
    }
}

/* INT payload: 0..8 bytes of two's complement, little-endian, sign-extended. */
static inline int64_t smf_int_decode(const unsigned char *p, uint64_t n) {
    if (n == 0)
        return 0;
    uint64_t v = 0;
    for (uint64_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    if (n < 8 && (p[n - 1] & 0x80))
        v |= ~UINT64_C(0) << (8 * n);
    return (int64_t)v;
}

/* The shortest INT payload for v (0 bytes for 0). */
static inline unsigned smf_int_size(int64_t v) {
    unsigned n = 0;
    while (n < 8) {
        /* fits in n bytes if sign-extending the low n bytes gives v back */
        if (n == 0 ? v == 0 : (v >= -(INT64_C(1) << (8 * n - 1)) && v < (INT64_C(1) << (8 * n - 1))))
            return n;
        n++;
    }
    return 8;
}

/* ---- map sets (docs/FORMAT.md §12): the manifest ----
 *
 *   0        128                          strings_offset       strings_end      total_size
 *   +--------+-------------------------------+-------------------+................+
 *   | header | shard table: 64 bytes a shard | bounds and names  | packed shards  |
 *   +--------+-------------------------------+-------------------+................+
 *
 * The header has the snapshot's first 16 bytes (magic aside) and its last 24 (checksums,
 * superseded) at the same offsets. */
#define SMS_MAGIC "\x89SMS\r\n\x1a\n"
#define SMS_VERSION 1u
#define SMS_HEADER_SIZE 128u
#define SMS_ENTRY_SIZE 64u
#define SMS_SHARDS_MAX 65536u /* a set cursor keeps its shard in 16 bits */
#define SMS_MANIFEST_NAME "MANIFEST"
#define SMS_RANGE 1u          /* partitioning: by ranges of keys */
#define SMS_LAYOUT_DIR 1u     /* shards are files in the manifest's directory */
#define SMS_LAYOUT_PACKED 2u  /* shards are inside the manifest's file, after the strings */

/* offsets 0-15 as a snapshot's: magic, byte_order, version, header_size */
#define SMS_OFF_REQUIRED_FLAGS 16 /* u32: none defined; a reader refuses any bit */
#define SMS_OFF_COMPAT_FLAGS 20   /* u32: ignored by readers */
#define SMS_OFF_KEY_KIND 24       /* u8: 0 (only when count == 0), 1 bytes, 2 str, 3 int */
#define SMS_OFF_PARTITIONING 25   /* u8: SMS_RANGE */
#define SMS_OFF_LAYOUT 26         /* u8: SMS_LAYOUT_DIR or SMS_LAYOUT_PACKED */
#define SMS_OFF_RESERVED 27       /* u8[5]: zero */
#define SMS_OFF_TOTAL_SIZE 32     /* u64: bytes of this file */
#define SMS_OFF_COUNT 40          /* u64: entries of all shards */
#define SMS_OFF_SHARDS 48         /* u64: shards, 1..SMS_SHARDS_MAX; the table follows the header */
#define SMS_OFF_STRINGS_END 56    /* u64: end of the strings, which follow the table */
#define SMS_OFF_RESERVED2 64      /* u8[32]: zero */
#define SMS_OFF_CREATED 96        /* u64: ns since the Unix epoch */
#define SMS_OFF_BODY_SUM 104      /* u64: XXH64(seed 0) of [128, strings_end) */
#define SMS_OFF_HEADER_SUM 112    /* u64: XXH64(seed 0) of [0, 112) */
#define SMS_OFF_SUPERSEDED 120    /* u64: mutable, as a snapshot's (§8) */

/* a shard's entry in the table */
#define SMS_E_OFFSET 0      /* u64: packed: where the shard starts in this file; else 0 */
#define SMS_E_SIZE 8        /* u64: the shard's total_size */
#define SMS_E_COUNT 16      /* u64: its count */
#define SMS_E_BODY_SUM 24   /* u64: its body_checksum */
#define SMS_E_HEADER_SUM 32 /* u64: its header_checksum */
#define SMS_E_BOUND_OFF 40  /* u64: its lower bound, a key: offset in this file */
#define SMS_E_BOUND_LEN 48  /* u32: and length; 0 for shard 0 (no bound), > 0 for the others */
#define SMS_E_NAME_LEN 52   /* u32: directory layout: its file name's length; packed: 0 */
#define SMS_E_NAME_OFF 56   /* u64: and offset in this file */

/* ---- layer files (docs/FORMAT.md §13) ----
 * A snapshot header with SMF_REQ_LAYER: offsets 48-95 are the layer's fields, then the base
 * reference, the base's file name, the index, the filter and the delta (a snapshot with
 * SMF_REQ_TOMBSTONES), each region after the one before. */
#define SML_OFF_DELTA 48        /* u64: where the delta snapshot starts (written 64-aligned) */
#define SML_OFF_DELTA_SIZE 56   /* u64: its total_size; it ends at the layer's total_size */
#define SML_OFF_INDEX 64        /* u64: the index, 16 bytes per delta record (written 8-aligned) */
#define SML_OFF_FILTER 72       /* u64: the blocked Bloom filter (written 64-aligned; readers
                                 * rely on no alignment, §13.2) */
#define SML_OFF_FILTER_SIZE 80  /* u64: its bytes, a multiple of 64; 0 iff the delta is empty */
#define SML_OFF_NAME_LEN 88     /* u64: bytes of the base's file name, 1 to 255 */
#define SML_BASE_REF 128        /* 64 bytes: what the base must be */
#define SML_R_SIZE 0            /* u64: its total_size */
#define SML_R_COUNT 8           /* u64: its count */
#define SML_R_BODY_SUM 16       /* u64: its body_checksum */
#define SML_R_HEADER_SUM 24     /* u64: its header_checksum */
#define SML_R_SEED 32           /* u64: its hash_seed; 40..63 zero */
#define SML_NAME 192            /* the base's file name */
#define SML_INDEX_ENTRY 16      /* u64 base_rank | i64 adj */
#define SML_BASE_PREFIX ".sharedmap-base."
#define SML_FILTER_BLOCK 64
#define SML_FILTER_K 6
#define SML_FILTER_BITS_PER_KEY 16

/* The filter block of hash h among nblocks (< 2^32), and whether block p has h's k bits. */
static inline uint64_t sml_filter_block(uint64_t h, uint64_t nblocks) {
    return ((h >> 32) * nblocks) >> 32;
}
static inline int sml_filter_has(const unsigned char *block, uint64_t h) {
    uint64_t g = h * UINT64_C(0x9E3779B97F4A7C15);
    for (unsigned i = 0; i < SML_FILTER_K; i++, g >>= 9) {
        unsigned bit = (unsigned)(g & 511);
        if (!((block[bit >> 3] >> (bit & 7)) & 1))
            return 0;
    }
    return 1;
}
static inline void sml_filter_add(unsigned char *block, uint64_t h) {
    uint64_t g = h * UINT64_C(0x9E3779B97F4A7C15);
    for (unsigned i = 0; i < SML_FILTER_K; i++, g >>= 9) {
        unsigned bit = (unsigned)(g & 511);
        block[bit >> 3] |= (unsigned char)(1u << (bit & 7));
    }
}

#endif /* SM_FORMAT_H */
