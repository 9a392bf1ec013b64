/* radix.c: a stable radix sort of (key, value) pairs, the builder's one sorting
 * primitive: of keys by their first 8 bytes (dict.c, and the streaming writer's runs) and
 * of entries by their home slot (layout.c).
 *
 * Small arrays: LSD, 11 bits a pass, only over the digits in which the keys differ (an
 * insertion sort for a few keys).  Large ones: one MSD pass on the top bits that vary (8 to
 * 16 of them, for buckets of a few hundred pairs or more), from a into t, then every bucket
 * sorted so on the bits below, in place in t with the same range of a as scratch.  A bucket
 * stays in the cache for all of its passes, where six LSD passes over the whole array would
 * each stream it through memory; and the buckets are split between two threads.  All of it
 * is stable, so the order is the one a plain LSD sort gives.
 */
#include "internal.h"

#include <stdlib.h>

#define MSD_MIN 65536u  /* below this, LSD over the whole array */
#define MSD_MAX_BITS 16u
#define INSERTION_MAX 24u

/* Stable LSD radix sort of a[0, n) on the low `bits` bits of the keys, dbits (<= 11) a
 * pass, skipping the digits in which no two keys differ; t is scratch for n.  Returns the
 * sorted array: a or t. */
static smi_kv *lsd(smi_kv *a, smi_kv *t, size_t n, unsigned bits, unsigned dbits) {
    if (n < 2)
        return a;
    const uint64_t low = bits < 64 ? ((uint64_t)1 << bits) - 1 : UINT64_MAX;
    if (n <= INSERTION_MAX) {
        for (size_t i = 1; i < n; i++) {
            smi_kv x = a[i];
            size_t j = i;
            for (; j > 0 && (a[j - 1].key & low) > (x.key & low); j--)
                a[j] = a[j - 1];
            a[j] = x;
        }
        return a;
    }
    uint64_t differ = 0;
    for (size_t i = 1; i < n; i++)
        differ |= a[i].key ^ a[0].key;
    differ &= low;
    size_t cnt[1u << 11];
    const size_t nd = (size_t)1 << dbits, mask = nd - 1;
    for (unsigned shift = 0; shift < bits; shift += dbits) {
        if (!((differ >> shift) & mask))
            continue;
        memset(cnt, 0, nd * sizeof *cnt);
        for (size_t i = 0; i < n; i++)
            cnt[(a[i].key >> shift) & mask]++;
        size_t sum = 0;
        for (size_t k = 0; k < nd; k++) {
            size_t c = cnt[k];
            cnt[k] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            t[cnt[(a[i].key >> shift) & mask]++] = a[i];
        smi_kv *swap = a;
        a = t;
        t = swap;
    }
    return a;
}

/* Buckets [lo, hi) of t (bucket k is t[start[k], start[k + 1])), each sorted on its low
 * `bits` bits with the same range of a as scratch, the result left in t. */
typedef struct bucket_job {
    smi_kv *a, *t;
    const size_t *start;
    size_t lo, hi;
    unsigned bits;
} bucket_job;

static void *sort_buckets(void *arg) {
    const bucket_job *j = arg;
    for (size_t k = j->lo; k < j->hi; k++) {
        size_t s = j->start[k], m = j->start[k + 1] - s;
        if (m < 2)
            continue;
        smi_kv *r = lsd(j->t + s, j->a + s, m, j->bits, m < 4096 ? 8 : 11);
        if (r != j->t + s)
            memcpy(j->t + s, r, m * sizeof *r);
    }
    return NULL;
}

smi_kv *smi_radix_sort(smi_kv *a, smi_kv *t, size_t n, unsigned bits, int two) {
    /* 2^d buckets, about 256 pairs each for keys spread evenly, 8 <= d <= 16 */
    unsigned d = n >= MSD_MIN ? 63u - (unsigned)__builtin_clzll((unsigned long long)n) - 8u : 8u;
    if (d > MSD_MAX_BITS)
        d = MSD_MAX_BITS;
    const size_t nb = (size_t)1 << d;
    size_t *start = NULL;
    while (n >= MSD_MIN && bits > d) {
        unsigned shift = bits - d;
        if (!start && !(start = malloc((2 * nb + 1) * sizeof *start)))
            break; /* out of memory: LSD needs none */
        size_t *pos = start + nb + 1;
        memset(pos, 0, nb * sizeof *pos);
        for (size_t i = 0; i < n; i++)
            pos[(a[i].key >> shift) & (nb - 1)]++;
        if (pos[(a[0].key >> shift) & (nb - 1)] == n) {
            bits = shift; /* one digit for all: the bits below decide */
            continue;
        }
        size_t sum = 0, half = nb;
        for (size_t k = 0; k < nb; k++) {
            start[k] = sum;
            if (half == nb && sum >= n / 2)
                half = k;
            sum += pos[k];
            pos[k] = start[k];
        }
        start[nb] = n;
        for (size_t i = 0; i < n; i++)
            t[pos[(a[i].key >> shift) & (nb - 1)]++] = a[i];
        bucket_job lo = {a, t, start, 0, half, shift}, hi = {a, t, start, half, nb, shift};
        smi_run_two(sort_buckets, &hi, &lo, two);
        free(start);
        return t;
    }
    free(start);
    return lsd(a, t, n, bits, 11);
}
