/* radix.c: a stable LSD radix sort of (key, value) pairs, the builder's one sorting
 * primitive: of keys by their first 8 bytes (dict.c) and of entries by their home slot
 * (layout.c).
 */
#include "internal.h"

/* Stable LSD radix sort of a[0, n) on the low `bits` bits of the keys, 11 bits a
 * pass (a pass in which every key has the same digit is skipped); t is scratch
 * space for n.  It streams through memory instead of scattering over a key-sized
 * array.  Returns the sorted array: a or t. */
smi_kv *smi_radix_sort(smi_kv *a, smi_kv *t, size_t n, unsigned bits) {
    for (unsigned shift = 0; shift < bits; shift += 11) {
        size_t cnt[2048] = {0};
        for (size_t i = 0; i < n; i++)
            cnt[(a[i].key >> shift) & 2047]++;
        if (n == 0 || cnt[(a[0].key >> shift) & 2047] == n)
            continue;
        size_t sum = 0;
        for (unsigned k = 0; k < 2048; k++) {
            size_t c = cnt[k];
            cnt[k] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            t[cnt[(a[i].key >> shift) & 2047]++] = a[i];
        smi_kv *swap = a;
        a = t;
        t = swap;
    }
    return a;
}
