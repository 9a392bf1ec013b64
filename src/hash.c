/* hash.c: XXH64, the format's hash function (docs/FORMAT.md, "Hash function"). */
#include "internal.h"

#define P1 UINT64_C(0x9E3779B185EBCA87)
#define P2 UINT64_C(0xC2B2AE3D27D4EB4F)
#define P3 UINT64_C(0x165667B19E3779F9)
#define P4 UINT64_C(0x85EBCA77C2B2AE63)
#define P5 UINT64_C(0x27D4EB2F165667C5)

static inline uint64_t rotl(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t round1(uint64_t acc, uint64_t input) {
    acc += input * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static inline uint64_t merge(uint64_t acc, uint64_t val) {
    acc ^= round1(0, val);
    return acc * P1 + P4;
}

static void stripe(uint64_t v[4], const unsigned char *p) {
    v[0] = round1(v[0], smf_le64(p));
    v[1] = round1(v[1], smf_le64(p + 8));
    v[2] = round1(v[2], smf_le64(p + 16));
    v[3] = round1(v[3], smf_le64(p + 24));
}

static uint64_t converge(const uint64_t v[4]) {
    uint64_t h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
    for (int i = 0; i < 4; i++)
        h = merge(h, v[i]);
    return h;
}

/* The last (fewer than 32) bytes [p, end), then the avalanche. */
static uint64_t finish(uint64_t h, const unsigned char *p, const unsigned char *end) {
    while (end - p >= 8) {
        h ^= round1(0, smf_le64(p));
        h = rotl(h, 27) * P1 + P4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)smf_le32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * P5;
        h = rotl(h, 11) * P1;
        p++;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t sm_hash64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = len ? data : (const unsigned char *)"", *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v[4] = {seed + P1 + P2, seed + P2, seed, seed - P1};
        const unsigned char *limit = end - 32;
        do {
            stripe(v, p);
            p += 32;
        } while (p <= limit);
        h = converge(v);
    } else {
        h = seed + P5;
    }
    return finish(h + (uint64_t)len, p, end);
}

/* ---- streaming: the same XXH64 over bytes that arrive in pieces ---- */

void smi_xxh64_init(smi_xxh64 *s, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
    s->seed = seed;
}

void smi_xxh64_update(smi_xxh64 *s, const void *data, size_t len) {
    const unsigned char *p = data;
    s->total += len;
    if (s->nbuf) {
        size_t take = 32 - s->nbuf < len ? 32 - s->nbuf : len;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take;
        p += take;
        len -= take;
        if (s->nbuf < 32)
            return;
        stripe(s->v, s->buf);
        s->nbuf = 0;
    }
    for (; len >= 32; p += 32, len -= 32)
        stripe(s->v, p);
    memcpy(s->buf, p, len);
    s->nbuf = len;
}

uint64_t smi_xxh64_digest(const smi_xxh64 *s) {
    uint64_t h = s->total >= 32 ? converge(s->v) : s->seed + P5;
    return finish(h + s->total, s->buf, s->buf + s->nbuf);
}
