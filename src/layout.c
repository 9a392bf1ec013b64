/* layout.c: the snapshot writer: a builder's entries as a snapshot (format.h), in two
 * steps.  Layout (sm_builder_layout) sorts, hashes and places every key in the table and
 * computes the header; the result is cached until the next change (dict.c drops it).
 * Write (sm_builder_write) puts the records, samples and table into the caller's buffer,
 * then the header with its checksums (smf_header_write).
 *
 * Two threads.  The entries in key order are cut in two halves at rank `split` (n / 2).
 * Hashing them (hash_range) and writing their records (write_range) are done a half
 * each, the first half on a thread started for it, the second on the caller's, when the
 * builder holds SMI_THREAD_MIN entries or more (and b->threads is not 1); below that, or
 * if no thread can be started, both halves run one after the other on the caller's
 * thread.  The halves are the same either way, so the bytes are too: the second half's
 * hashing counts its record offsets from 0 and is moved up by the first half's size
 * afterwards (a pass over the smi_kv array, no entry touched), and its writing starts at
 * the offset of record `split`, which layout keeps.  The placement in the table and the
 * body checksum (XXH64, sequential by definition) stay on one thread.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

/* pthread_create and pthread_join moved into libc at glibc 2.34 with new symbol versions;
 * the old ones still link, and keep the library at the 2.28 floor (compat.h). */
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 34) && defined(__x86_64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.2.5");
#elif __GLIBC_PREREQ(2, 34) && defined(__aarch64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.17");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.17");
#endif
#endif

void smi_run_two(void *(*job)(void *), void *a, void *b, int two) {
    pthread_t t;
    if (two && pthread_create(&t, NULL, job, a) == 0) {
        job(b);
        pthread_join(t, NULL);
        return;
    }
    job(a);
    job(b);
}

static int two_threads(const sm_builder *b) {
    return b->threads != 1 && b->count >= SMI_THREAD_MIN;
}

static uint64_t record_size(const smi_item *it) {
    return smf_varint_size(it->klen) + smf_varint_size(it->vt) + it->klen + smi_item_vlen(it);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* An entry on its way into the table is an smi_kv: key = its home, val = its slot
 * minus the displacement. */

#define PREFETCH_AHEAD 16

/* Half of hash_entries: ranks [lo, hi), their offsets counted from base. */
typedef struct hash_job {
    const sm_builder *b;
    uint64_t seed, M, base;
    smi_kv *out;
    size_t lo, hi;
    uint64_t end;  /* past its records */
    uint64_t last; /* where its last record starts (base if none) */
} hash_job;

static void *hash_range(void *arg) {
    hash_job *j = arg;
    const sm_builder *b = j->b;
    uint64_t off = j->base, last = j->base;
    for (size_t r = j->lo; r < j->hi; r++) {
        if (r + PREFETCH_AHEAD < j->hi)
            __builtin_prefetch(&b->items[b->order[r + PREFETCH_AHEAD]]);
        if (r + PREFETCH_AHEAD / 2 < j->hi)
            __builtin_prefetch(b->items[b->order[r + PREFETCH_AHEAD / 2]].data);
        const smi_item *it = &b->items[b->order[r]];
        uint64_t h = sm_hash64(it->data, (size_t)it->klen, j->seed);
        j->out[r].key = smf_home(h, j->M);
        /* an offset past SMF_MAX_OFFSET spoils the tag: hash_entries fails then */
        j->out[r].val = off | ((h & 0xFF) << SMF_SLOT_TAG_SHIFT);
        last = off;
        off += record_size(it);
    }
    j->end = off;
    j->last = last;
    return NULL;
}

/* One pass over the entries in key order: record offsets (so the records end at
 * *records_end, and record `split` starts at *split_off) and each entry's home and tag
 * under (seed, M).  SM_ETOOBIG if a record would start past SMF_MAX_OFFSET. */
static int hash_entries(const sm_builder *b, uint64_t seed, uint64_t M, smi_kv *out,
                        size_t split, uint64_t *split_off, uint64_t *records_end) {
    hash_job j[2] = {
        {b, seed, M, SMF_HEADER_SIZE, out, 0, split, 0, 0},
        {b, seed, M, 0, out, split, b->count, 0, 0},
    };
    smi_run_two(hash_range, &j[0], &j[1], two_threads(b));
    if (j[0].last > SMF_MAX_OFFSET || j[1].last > SMF_MAX_OFFSET - j[0].end)
        return SM_ETOOBIG;
    for (size_t r = split; r < b->count; r++)
        out[r].val += j[0].end; /* below the tag: no carry into it */
    *split_off = j[0].end;
    *records_end = j[0].end + j[1].end;
    return 0;
}

/* Give each entry, in home order, the first free slot at or after its home.
 * Returns 0, or 1 if some displacement would exceed SMF_DISP_MAX. */
static int place(const smi_kv *byhome, size_t n, uint64_t M, uint64_t *table, uint64_t *table_slots) {
    memset(table, 0, (size_t)(M + SMF_DISP_MAX + 1) * sizeof *table);
    uint64_t next = 0;
    for (size_t k = 0; k < n; k++) {
        uint64_t home = byhome[k].key;
        uint64_t pos = home > next ? home : next;
        uint64_t disp = pos - home;
        if (disp > SMF_DISP_MAX)
            return 1;
        table[pos] = byhome[k].val | (disp << SMF_SLOT_DISP_SHIFT);
        next = pos + 1;
    }
    *table_slots = next > M ? next : M;
    return 0;
}

int sm_builder_layout(sm_builder *b, uint64_t *size) {
    smi_layout *l = &b->lay;
    if (l->valid) {
        *size = l->h.total_size;
        return 0;
    }
    /* the scratch of the key sort serves the sort by home next: no second pair of arrays */
    size_t n = b->count;
    smi_kv *a = malloc((n ? n : 1) * sizeof *a), *t = malloc((n ? n : 1) * sizeof *t);
    uint64_t *table = NULL;
    int rc = !a || !t ? -ENOMEM : smi_builder_sort(b, a, t);
    if (rc)
        goto done;
    n = b->count; /* fewer if sm_builder_put_new repeated a key */
    uint64_t M = n ? n + n / 4 + 1 : 0, L = 0, seed = 0, records_end, split_off;
    for (int attempt = 0;; attempt++) {
        if ((rc = hash_entries(b, seed, M, a, n / 2, &split_off, &records_end)))
            goto done;
        if (!n)
            break;
        free(table);
        table = malloc((size_t)(M + SMF_DISP_MAX + 1) * sizeof *table);
        if (!table) {
            rc = -ENOMEM;
            goto done;
        }
        if (!place(smi_radix_sort(a, t, n, M > 1 ? 64u - (unsigned)__builtin_clzll(M - 1) : 0, two_threads(b)),
                   n, M, table, &L))
            break;
        /* Pathological keys: try another seed, then a sparser table. */
        if (attempt >= 3)
            M += M / 2;
        if (attempt >= 40 || M > (SIZE_MAX / sizeof *table) - SMF_DISP_MAX - 1) {
            rc = SM_ETOOBIG; /* unreachable without ~2^40 identical hashes */
            goto done;
        }
        seed++;
    }
    uint64_t nsamples = smf_nsamples(n, SMF_SAMPLE_SHIFT);
    uint64_t samples_off = align_up(records_end, SMF_SAMPLES_ALIGN);
    uint64_t table_off = align_up(samples_off + nsamples * SMF_SAMPLE_SIZE, SMF_TABLE_ALIGN);
    if (L > (UINT64_MAX - table_off) / 8) {
        rc = SM_ETOOBIG;
        goto done;
    }
    smi_layout_drop(l);
    l->valid = 1;
    l->h.version = SMF_VERSION;
    l->h.compat_flags = 0;
    l->h.key_kind = (uint8_t)(n ? b->kind : SM_KEYS_NONE);
    l->h.required_flags = l->h.key_kind == SM_KEYS_INT ? SMF_REQ_INT_KEYS : 0;
    l->h.hash_id = SMF_HASH_XXH64;
    l->h.sample_shift = SMF_SAMPLE_SHIFT;
    l->h.total_size = table_off + L * 8;
    l->h.count = n;
    l->h.hash_seed = seed;
    l->h.home_slots = M;
    l->h.table_slots = L;
    l->h.table_offset = table_off;
    l->h.samples_offset = samples_off;
    l->h.records_end = records_end;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    l->h.created = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    l->h.body_checksum = 0; /* known once the body is written */
    l->nsamples = nsamples;
    l->split = n / 2;
    l->split_off = split_off;
    l->table = table;
    table = NULL;
    *size = l->h.total_size;
    rc = 0;
done:
    free(a);
    free(t);
    free(table);
    return rc;
}

/* ---- write ---- */

/* Half of the records: ranks [lo, hi), the first at offset off, and their samples. */
typedef struct write_job {
    const sm_builder *b;
    unsigned char *p;
    size_t lo, hi;
    uint64_t off;
} write_job;

static void *write_range(void *arg) {
    const write_job *j = arg;
    const sm_builder *b = j->b;
    const smi_layout *l = &b->lay;
    unsigned char *p = j->p, *w = p + j->off;
    for (size_t r = j->lo; r < j->hi; r++) {
        if (r + PREFETCH_AHEAD < j->hi)
            __builtin_prefetch(&b->items[b->order[r + PREFETCH_AHEAD]]);
        if (r + PREFETCH_AHEAD / 2 < j->hi)
            __builtin_prefetch(b->items[b->order[r + PREFETCH_AHEAD / 2]].data);
        const smi_item *it = &b->items[b->order[r]];
        if ((r & ((1u << SMF_SAMPLE_SHIFT) - 1)) == 0) {
            unsigned char *s = p + l->h.samples_offset + (r >> SMF_SAMPLE_SHIFT) * SMF_SAMPLE_SIZE;
            smf_put64(s, (uint64_t)(w - p));
            memset(s + 8, 0, 8);
            memcpy(s + 8, it->data, it->klen < 8 ? it->klen : 8);
        }
        w = smf_put_varint(w, it->klen);
        w = smf_put_varint(w, it->vt);
        size_t n = (size_t)(it->klen + smi_item_vlen(it));
        memcpy(w, it->data, n);
        w += n;
    }
    return NULL;
}

int sm_builder_write(sm_builder *b, void *buf, uint64_t size, uint64_t created_ns) {
    uint64_t want;
    int rc = sm_builder_layout(b, &want);
    if (rc)
        return rc;
    if (size != want || !buf)
        return -EINVAL;
    const smi_layout *l = &b->lay;
    unsigned char *p = buf;

    write_job j[2] = {
        {b, p, 0, l->split, SMF_HEADER_SIZE},
        {b, p, l->split, b->count, l->split_off},
    };
    smi_run_two(write_range, &j[0], &j[1], two_threads(b));
    memset(p + l->h.records_end, 0, l->h.samples_offset - l->h.records_end);
    uint64_t samples_end = l->h.samples_offset + l->nsamples * SMF_SAMPLE_SIZE;
    memset(p + samples_end, 0, l->h.table_offset - samples_end);
    unsigned char *t = p + l->h.table_offset;
    for (uint64_t i = 0; i < l->h.table_slots; i++)
        smf_put64(t + 8 * i, l->table[i]);

    smf_header h = l->h;
    if (created_ns != SM_CREATED_AUTO)
        h.created = created_ns;
    h.body_checksum = sm_hash64(p + SMF_HEADER_SIZE, (size_t)(size - SMF_HEADER_SIZE), 0);
    smf_header_write(p, &h);
    return 0;
}
