/* bitmap.h: the on-disk layout of a shared bitmap (docs/FORMAT.md §11 is its spec) and the
 * library-internal entry points of src/bitmap.c (the fuzz target validates headers from
 * memory through them).
 *
 * A bitmap is one file, DIR/sharedbitmap.NAME, mapped MAP_SHARED by every process that
 * uses it and written in place with atomic instructions:
 *
 *   0            56         64                          128                  128 + capacity/8
 *   +------------+----------+---------------------------+--------------------+..............
 *   | fixed part | checksum | live words: size,         | bits: word w is    | (file may be
 *   | (written   | of [0,56)| capacity, resize_seq,     | bits 64w..64w+63,  |  longer: an
 *   |  once)     |          | superseded (atomic u64)   | u64 little-endian  |  unused tail)
 *   +------------+----------+---------------------------+--------------------+..............
 *
 * Bit i is bit (i & 63) of the little-endian word i >> 6, which is bit (i & 7), counted
 * from the least significant, of byte i >> 3: numpy.unpackbits(bytes, bitorder='little').
 *
 * The fixed part never changes once the file has its public name.  The live words change
 * under concurrent readers, always by single aligned 8-byte atomic stores:
 *   size        bits in the bitmap (a multiple of 8), read once by every operation;
 *   capacity    bits the file has room for (a multiple of 64): only grows, and only after
 *               the file has been extended to hold them;
 *   resize_seq  odd while a resize is clearing bits or moving the size, even otherwise;
 *   superseded  0, or 1 once the bitmap was replaced (SM_FORCE) or removed.
 */
#ifndef SM_BITMAP_H
#define SM_BITMAP_H

#include "format.h"
#include "sharedmap.h"

#include <stdint.h>

/* ---- header (128 bytes) ---- */
#define SMB_MAGIC "\x89SMB\r\n\x1a\n" /* 8 bytes; a snapshot's is \x89SMP\r\n\x1a\n */
#define SMB_MAGIC_LEN 8
#define SMB_VERSION 1u
#define SMB_HEADER_SIZE 128u

#define SMB_OFF_MAGIC 0           /* u8[8] */
#define SMB_OFF_BYTE_ORDER 8      /* u32: SMF_BYTE_ORDER */
#define SMB_OFF_VERSION 12        /* u16 */
#define SMB_OFF_HEADER_SIZE 14    /* u16 */
#define SMB_OFF_REQUIRED_FLAGS 16 /* u32: reader refuses any bit it does not know (none in v1) */
#define SMB_OFF_COMPAT_FLAGS 20   /* u32: reader ignores bits it does not know (none in v1) */
#define SMB_OFF_MAX_BITS 24       /* u64: the size can never exceed this; a multiple of 64 */
#define SMB_OFF_CREATED 32        /* u64: ns since the Unix epoch */
#define SMB_OFF_RESERVED 40       /* u8[16]: zero */
#define SMB_OFF_HEADER_SUM 56     /* u64: XXH64(seed 0) of bytes [0, 56) */
#define SMB_OFF_SIZE 64           /* u64, live */
#define SMB_OFF_CAPACITY 72       /* u64, live */
#define SMB_OFF_RESIZE_SEQ 80     /* u64, live */
#define SMB_OFF_SUPERSEDED 88     /* u64, live */
#define SMB_OFF_RESERVED2 96      /* u8[32]: zero */

#define SMB_FIXED_SIZE SMB_OFF_HEADER_SUM

/* What the header says, once checked. */
typedef struct smb_header {
    uint64_t max_bits;
    uint64_t created_ns;
    uint64_t size;     /* the live words, as read */
    uint64_t capacity;
    uint64_t resize_seq;
    uint64_t superseded;
} smb_header;

/* Checks B2-B9 of FORMAT.md §11.4 (everything but the live words) on the n bytes at p,
 * in that order, and fills max_bits and created_ns.  Returns 0 or an SM_E* code. */
int smb_check_fixed(const unsigned char *p, uint64_t n, smb_header *out);

/* Checks B10-B11: the live words against max_bits and the file's size in bytes. */
int smb_check_live(uint64_t size, uint64_t capacity, uint64_t max_bits, uint64_t file_size);

/* Both, reading the live words from p with plain loads: for a header copied out of a
 * file (or a fuzzer's input) of file_size bytes, of which n are at p. */
int smb_parse_header(const unsigned char *p, uint64_t n, uint64_t file_size, smb_header *out);

#endif /* SM_BITMAP_H */
