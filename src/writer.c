/* writer.c: the streaming writer (sm_writer_*): a snapshot from a stream of entries,
 * in memory bounded by memory_limit whatever their number.
 *
 *   add ──> sorted input: one pending record, held until a greater key comes (a
 *   │       smaller one is SM_EORDER, an equal one replaces it)
 *   │       any order: a run of records in the snapshot's own encoding, in an arena;
 *   │       a full run is sorted (radix on the first 8 key bytes, then the full keys
 *   │       and the order of arrival), stripped of all but the last of equal keys,
 *   │       and spilled to an anonymous temporary file
 *   v
 *   emit ──> each record in key order: appended to the output at the offset it will
 *   │        keep (pwrite through a buffer; the body checksum runs alongside), a sample
 *   │        for every 16th to a spill file, and its (hash, offset | tag) pair to a
 *   │        chunk that is sorted by hash and spilled when full
 *   v
 *   commit ──> the last run, or the k-way merge of the spilled runs (the later run
 *              wins a tie), through emit; then the samples are copied in; then the
 *              table: the pair chunks merged in hash order are in home order (home =
 *              high64(h × M) does not decrease as h grows), each group of one home is
 *              put in offset order (key order), and the slots stream out as
 *              layout.c's place() would set them, so the snapshot is the builder's
 *              byte for byte.  A displacement past 255 starts the table again with the
 *              next (seed, M) of FORMAT.md §5, rehashing the records read back from the
 *              output.  Last the header, and the temporary protocol of publish.c.
 *
 * Every spill file is O_TMPFILE (or unlinked as soon as it is created), so a writer
 * that fails, is freed or is killed leaves nothing behind but the output temporary,
 * which is publish.c's to clean up (sm_gc).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SINK_BUF ((size_t)1 << 20)
#define SOURCE_BUF_MIN ((size_t)64 << 10)
#define GROUP_MAX (SMF_DISP_MAX + 1) /* a home with more entries cannot be placed */

/* ---- files written and read through a buffer ---- */

/* Bytes appended to fd from offset start; sum, if set, sees each of them. */
typedef struct sink {
    int fd;
    uint64_t off; /* file offset of buf[0] */
    unsigned char *buf;
    size_t len, cap;
    smi_xxh64 *sum;
} sink;

static int sink_init(sink *s, int fd, uint64_t off, size_t cap) {
    s->fd = fd;
    s->off = off;
    s->len = 0;
    s->cap = cap;
    s->sum = NULL;
    s->buf = malloc(cap);
    return s->buf ? 0 : -ENOMEM;
}

static int sink_flush(sink *s) {
    int rc = smi_pwrite_all(s->fd, s->buf, s->len, s->off);
    s->off += s->len;
    s->len = 0;
    return rc;
}

static int sink_put(sink *s, const void *p, size_t n) {
    if (s->sum)
        smi_xxh64_update(s->sum, p, n);
    if (s->len + n > s->cap) {
        int rc = sink_flush(s);
        if (rc)
            return rc;
        if (n >= s->cap) {
            rc = smi_pwrite_all(s->fd, p, n, s->off);
            s->off += n;
            return rc;
        }
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

static int sink_zeros(sink *s, uint64_t n) {
    static const unsigned char zero[4096];
    while (n) {
        size_t k = n < sizeof zero ? (size_t)n : sizeof zero;
        int rc = sink_put(s, zero, k);
        if (rc)
            return rc;
        n -= k;
    }
    return 0;
}

static uint64_t sink_pos(const sink *s) { return s->off + s->len; }

/* Bytes [pos, end) of fd, read through a window that grows to hold any one record. */
typedef struct source {
    int fd;
    uint64_t pos, end; /* file offset of buf[0]; end of the data */
    unsigned char *buf;
    size_t len, at, cap;
} source;

static int source_init(source *s, int fd, uint64_t start, uint64_t end, size_t cap) {
    s->fd = fd;
    s->pos = start;
    s->end = end;
    s->len = s->at = 0;
    s->cap = cap;
    s->buf = malloc(cap);
    return s->buf ? 0 : -ENOMEM;
}

/* Make at least need bytes (or all that are left) readable at buf + at.  0 or -errno. */
static int source_want(source *s, size_t need) {
    if (s->len - s->at >= need)
        return 0;
    memmove(s->buf, s->buf + s->at, s->len - s->at);
    s->pos += s->at;
    s->len -= s->at;
    s->at = 0;
    if (need > s->cap) {
        unsigned char *nb = realloc(s->buf, need);
        if (!nb)
            return -ENOMEM;
        s->buf = nb;
        s->cap = need;
    }
    while (s->len < s->cap && s->pos + s->len < s->end) {
        uint64_t left = s->end - s->pos - s->len;
        size_t want = s->cap - s->len < left ? s->cap - s->len : (size_t)left;
        ssize_t n = pread(s->fd, s->buf + s->len, want, (off_t)(s->pos + s->len));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        s->len += (size_t)n;
        if (s->len - s->at >= need)
            break;
    }
    return 0;
}

/* A record in its snapshot encoding: bytes [p, p + size), its key at key. */
typedef struct rec {
    const unsigned char *p, *key;
    size_t size, klen;
} rec;

/* Decode the lengths of the record at p (n bytes readable).  0, or 1 if more bytes are
 * needed (*size: how many, at least), or -EIO if it is not a record (a spill file we
 * wrote ourselves cannot be that, but a disk can lie). */
static int rec_at(const unsigned char *p, size_t n, rec *r) {
    uint64_t pos = 0, klen, word;
    if (smf_varint(p, &pos, n, &klen) || smf_varint(p, &pos, n, &word)) {
        r->size = n + SMF_VARINT_MAX * 2;
        return n >= 2 * SMF_VARINT_MAX ? -EIO : 1;
    }
    uint64_t size = pos + klen + (word >> SMF_TYPE_BITS);
    if (size > SIZE_MAX / 2)
        return -EIO;
    r->p = p;
    r->key = p + pos;
    r->klen = (size_t)klen;
    r->size = (size_t)size;
    return size > n;
}

/* The next record of s into *r (valid until the next call), 0, SM_NOTFOUND at the end,
 * or -errno. */
static int source_next(source *s, rec *r) {
    if (s->pos + s->at >= s->end)
        return SM_NOTFOUND;
    for (size_t need = 2 * SMF_VARINT_MAX;;) {
        int rc = source_want(s, need);
        if (rc == 0)
            rc = rec_at(s->buf + s->at, s->len - s->at, r);
        if (rc <= 0) {
            if (rc == 0)
                s->at += r->size;
            return rc;
        }
        if (s->pos + s->len >= s->end)
            return -EIO; /* the file ends inside a record */
        need = r->size;
    }
}

/* An anonymous read-write file in dir: O_TMPFILE, or else a new name unlinked at once. */
static int spill_open(const char *dir) {
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd < 0 ? -errno : fd;
    size_t n = strlen(dir);
    char *path = malloc(n + 32);
    if (!path)
        return -ENOMEM;
    memcpy(path, dir, n);
    memcpy(path + n, "/.sharedmap-spill.XXXXXX", sizeof "/.sharedmap-spill.XXXXXX");
    fd = mkostemp(path, O_CLOEXEC);
    int rc = fd < 0 ? -errno : fd;
    if (fd >= 0)
        unlink(path);
    free(path);
    return rc;
}

/* ---- the writer ---- */

typedef struct spill {
    int fd;
    uint64_t size, n; /* bytes; entries (pair runs) */
} spill;

typedef struct spills {
    spill *v;
    size_t n, cap;
} spills;

/* The arena of the run being filled (unsorted input). */
typedef struct run {
    unsigned char *data;
    size_t len, cap;
    smi_kv *idx, *tmp; /* key: the first 8 key bytes; val: the record's offset in data */
    size_t n, icap;
} run;

struct sm_writer {
    smi_temp out_t;
    int dirfd;
    int durable, force, committed;
    char name[NAME_MAX + 1];
    size_t limit;
    unsigned wflags;
    char *temp_dir;
    uint64_t created;
    int err; /* sticky: the first error of an add or an emit */
    sm_key_kind kind;
    uint64_t added;

    sink out;        /* the output, from SMF_HEADER_SIZE */
    smi_xxh64 sum;   /* the body checksum */
    uint64_t count;  /* records emitted */
    sink samples;    /* (offset, prefix) of every 16th record */
    int samples_fd;

    smi_kv *pa, *pt; /* the pair chunk being filled and its scratch */
    size_t pn, pcap;
    spills pairs;    /* spilled chunks, each sorted by hash */

    unsigned char *pend; /* sorted input: the record waiting for a greater key */
    size_t pend_len, pend_cap, pend_koff, pend_klen;
    int have_pend;
    unsigned char *scratch; /* the record being added */
    size_t scratch_cap;

    run r;
    spills runs;     /* spilled runs, in order of arrival */
};

static int spills_push(spills *s, spill sp) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        spill *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = sp;
    return 0;
}

static void spills_free(spills *s) {
    for (size_t i = 0; i < s->n; i++)
        close(s->v[i].fd);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int pairs_flush(sm_writer *w) {
    if (!w->pn)
        return 0;
    smi_kv *sorted = smi_radix_sort(w->pa, w->pt, w->pn, 64, 0);
    int fd = spill_open(w->temp_dir);
    if (fd < 0)
        return fd;
    spill sp = {fd, (uint64_t)w->pn * sizeof *sorted, w->pn};
    int rc = smi_pwrite_all(fd, sorted, w->pn * sizeof *sorted, 0);
    if (!rc)
        rc = spills_push(&w->pairs, sp);
    if (rc)
        close(fd);
    w->pn = 0;
    return rc;
}

static int pair_add(sm_writer *w, uint64_t h, uint64_t off) {
    if (w->pn == w->pcap) {
        int rc = pairs_flush(w);
        if (rc)
            return rc;
    }
    w->pa[w->pn].key = h;
    w->pa[w->pn].val = off | ((h & 0xFF) << SMF_SLOT_TAG_SHIFT);
    w->pn++;
    return 0;
}

/* Append one record, the next in key order, to the output. */
static int emit(sm_writer *w, const rec *r) {
    uint64_t off = sink_pos(&w->out);
    if (off > SMF_MAX_OFFSET)
        return SM_ETOOBIG;
    int rc;
    if ((w->count & ((1u << SMF_SAMPLE_SHIFT) - 1)) == 0) {
        unsigned char s[SMF_SAMPLE_SIZE] = {0};
        smf_put64(s, off);
        memcpy(s + 8, r->key, r->klen < 8 ? r->klen : 8);
        if ((rc = sink_put(&w->samples, s, sizeof s)))
            return rc;
    }
    if ((rc = pair_add(w, sm_hash64(r->key, r->klen, 0), off)))
        return rc;
    w->count++;
    return sink_put(&w->out, r->p, r->size);
}

/* ---- unsorted input: runs ---- */

static const unsigned char *run_key(const run *r, uint64_t off, size_t *klen) {
    rec x;
    rec_at(r->data + off, r->len - (size_t)off, &x);
    *klen = x.klen;
    return x.key;
}

static int cmp_run_r(const void *a, const void *b, void *ctx) {
    const run *r = ctx;
    const smi_kv *x = a, *y = b;
    size_t xl, yl;
    const unsigned char *xk = run_key(r, x->val, &xl), *yk = run_key(r, y->val, &yl);
    int c = smi_keycmp(xk, xl, yk, yl);
    return c ? c : (x->val > y->val) - (x->val < y->val);
}

/* Sort the run: by key, and among equal keys by arrival.  Returns the sorted index. */
static const smi_kv *run_sort(run *r) {
    smi_kv *s = smi_radix_sort(r->idx, r->tmp, r->n, 64, 0);
    for (size_t i = 0; i < r->n;) {
        size_t j = i + 1;
        while (j < r->n && s[j].key == s[i].key)
            j++;
        if (j - i > 1)
            qsort_r(s + i, j - i, sizeof *s, cmp_run_r, r);
        i = j;
    }
    return s;
}

/* Each record of the sorted run but those a later equal key replaces, to out or, if
 * out is NULL, to emit. */
static int run_drain(sm_writer *w, sink *out) {
    run *r = &w->r;
    const smi_kv *s = run_sort(r);
    int rc = 0;
    for (size_t i = 0; i < r->n && !rc; i++) {
        rec x, y;
        rec_at(r->data + s[i].val, r->len - (size_t)s[i].val, &x);
        if (i + 1 < r->n && s[i + 1].key == s[i].key) {
            rec_at(r->data + s[i + 1].val, r->len - (size_t)s[i + 1].val, &y);
            if (smi_keycmp(x.key, x.klen, y.key, y.klen) == 0)
                continue; /* the later one wins */
        }
        rc = out ? sink_put(out, x.p, x.size) : emit(w, &x);
    }
    r->n = r->len = 0;
    return rc;
}

static int run_spill(sm_writer *w) {
    int fd = spill_open(w->temp_dir);
    if (fd < 0)
        return fd;
    sink s;
    int rc = sink_init(&s, fd, 0, SINK_BUF);
    if (!rc)
        rc = run_drain(w, &s);
    if (!rc)
        rc = sink_flush(&s);
    free(s.buf);
    spill sp = {fd, s.off, 0};
    if (!rc)
        rc = spills_push(&w->runs, sp);
    if (rc)
        close(fd);
    return rc;
}

static int run_add(sm_writer *w, const unsigned char *p, size_t size, uint64_t prefix) {
    run *r = &w->r;
    if ((r->len + size > r->cap || r->n == r->icap) && r->n) {
        int rc = run_spill(w);
        if (rc)
            return rc;
    }
    if (size > r->cap) { /* one record larger than the whole arena: it gets its own */
        unsigned char *d = realloc(r->data, size);
        if (!d)
            return -ENOMEM;
        r->data = d;
        r->cap = size;
    }
    memcpy(r->data + r->len, p, size);
    r->idx[r->n].key = prefix;
    r->idx[r->n].val = r->len;
    r->n++;
    r->len += size;
    return 0;
}

/* A spilled run being merged. */
typedef struct cursor {
    source s;
    rec cur;
    size_t run; /* its number: the later run wins a tie */
} cursor;

static int cursor_less(const cursor *a, const cursor *b) {
    int c = smi_keycmp(a->cur.key, a->cur.klen, b->cur.key, b->cur.klen);
    return c ? c < 0 : a->run > b->run;
}

static void heap_down(cursor **h, size_t n, size_t i) {
    for (;;) {
        size_t m = i, l = 2 * i + 1, r = l + 1;
        if (l < n && cursor_less(h[l], h[m]))
            m = l;
        if (r < n && cursor_less(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        cursor *t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Advance the heap's top; it leaves the heap at its end.  0 or -errno. */
static int heap_advance(cursor **h, size_t *n) {
    int rc = source_next(&h[0]->s, &h[0]->cur);
    if (rc == SM_NOTFOUND) {
        h[0] = h[--*n];
        rc = 0;
    }
    if (*n)
        heap_down(h, *n, 0);
    return rc;
}

/* Merge the spilled runs into emit: each key once, from the latest run that has it. */
static int runs_merge(sm_writer *w) {
    size_t k = w->runs.n, n = 0;
    cursor *c = calloc(k ? k : 1, sizeof *c);
    cursor **h = calloc(k ? k : 1, sizeof *h);
    size_t last_len = 0, last_cap = 64;
    unsigned char *last = malloc(last_cap); /* the key emitted last (never NULL: memcmp) */
    int rc = c && h && last ? 0 : -ENOMEM;
    size_t per = w->limit / 4 / (k ? k : 1);
    for (size_t i = 0; i < k && !rc; i++) {
        rc = source_init(&c[i].s, w->runs.v[i].fd, 0, w->runs.v[i].size,
                         per > SOURCE_BUF_MIN ? per : SOURCE_BUF_MIN);
        c[i].run = i;
        if (!rc && (rc = source_next(&c[i].s, &c[i].cur)) == 0)
            h[n++] = &c[i];
        else if (rc == SM_NOTFOUND)
            rc = 0;
    }
    for (size_t i = n / 2; i-- > 0;)
        heap_down(h, n, i);
    while (n && !rc) {
        rec *top = &h[0]->cur;
        if ((rc = emit(w, top)))
            break;
        if (top->klen > last_cap) {
            unsigned char *nl = realloc(last, top->klen);
            if (!nl) {
                rc = -ENOMEM;
                break;
            }
            last = nl;
            last_cap = top->klen;
        }
        memcpy(last, top->key, top->klen);
        last_len = top->klen;
        rc = heap_advance(h, &n);
        while (!rc && n && smi_keycmp(h[0]->cur.key, h[0]->cur.klen, last, last_len) == 0)
            rc = heap_advance(h, &n); /* an older run's entry for the same key */
    }
    for (size_t i = 0; c && i < k; i++)
        free(c[i].s.buf);
    free(c);
    free(h);
    free(last);
    return rc;
}

/* ---- the table ---- */

static int cmp_val(const void *a, const void *b) {
    uint64_t x = ((const smi_kv *)a)->val & SMF_SLOT_OFFSET_MASK;
    uint64_t y = ((const smi_kv *)b)->val & SMF_SLOT_OFFSET_MASK;
    return (x > y) - (x < y);
}

/* A source of pairs in hash order: the one chunk in memory, or the merge of the
 * spilled ones. */
typedef struct pair_iter {
    const smi_kv *mem;
    size_t mem_n, mem_at;
    source *src; /* one per spilled chunk */
    smi_kv *head;
    size_t k;
} pair_iter;

static int pair_src_next(source *s, smi_kv *out) {
    if (s->pos + s->at >= s->end)
        return SM_NOTFOUND;
    int rc = source_want(s, sizeof *out);
    if (rc)
        return rc;
    if (s->len - s->at < sizeof *out)
        return -EIO;
    memcpy(out, s->buf + s->at, sizeof *out);
    s->at += sizeof *out;
    return 0;
}

/* The next pair, 0, SM_NOTFOUND at the end, or -errno.  The chunks are few (n over
 * memory_limit / 256), so a linear scan of their heads beats a heap's branches. */
static int pair_next(pair_iter *it, smi_kv *out) {
    if (!it->src) {
        if (it->mem_at == it->mem_n)
            return SM_NOTFOUND;
        *out = it->mem[it->mem_at++];
        return 0;
    }
    size_t best = it->k;
    for (size_t i = 0; i < it->k; i++)
        if (it->src[i].fd >= 0 && (best == it->k || it->head[i].key < it->head[best].key))
            best = i;
    if (best == it->k)
        return SM_NOTFOUND;
    *out = it->head[best];
    int rc = pair_src_next(&it->src[best], &it->head[best]);
    if (rc == SM_NOTFOUND) {
        it->src[best].fd = -1;
        rc = 0;
    }
    return rc;
}

/* Stream the slots of the table under M to the output; 0, 1 if some displacement
 * would pass SMF_DISP_MAX, or an error.  *L: the table's slots. */
static int table_write(sm_writer *w, uint64_t M, uint64_t *L) {
    pair_iter it = {0};
    int rc = 0;
    smi_kv *sorted = NULL;
    if (w->pairs.n == 0) {
        sorted = smi_radix_sort(w->pa, w->pt, w->pn, 64, 0);
        it.mem = sorted;
        it.mem_n = w->pn;
    } else {
        if ((rc = pairs_flush(w)))
            return rc;
        it.k = w->pairs.n;
        it.src = calloc(it.k, sizeof *it.src);
        it.head = calloc(it.k, sizeof *it.head);
        if (!it.src || !it.head)
            rc = -ENOMEM;
        size_t per = w->limit / 8 / it.k;
        for (size_t i = 0; i < it.k && !rc; i++) {
            spill *sp = &w->pairs.v[i];
            rc = source_init(&it.src[i], sp->fd, 0, sp->size, per > SOURCE_BUF_MIN ? per : SOURCE_BUF_MIN);
            if (!rc && (rc = pair_src_next(&it.src[i], &it.head[i])) == SM_NOTFOUND) {
                it.src[i].fd = -1;
                rc = 0;
            }
        }
    }
    smi_kv group[GROUP_MAX], p;
    size_t g = 0;
    uint64_t next = 0, ghome = 0;
    int more = rc == 0;
    while (more) {
        rc = pair_next(&it, &p);
        if (rc && rc != SM_NOTFOUND)
            break;
        more = rc == 0;
        rc = 0;
        uint64_t home = more ? smf_home(p.key, M) : 0;
        if (g && (!more || home != ghome)) {
            /* the group of ghome, complete: in key order, each in the first free slot */
            if (g > 1)
                qsort(group, g, sizeof *group, cmp_val);
            uint64_t pos = ghome > next ? ghome : next;
            if (pos + g - 1 - ghome > SMF_DISP_MAX) {
                rc = 1;
                break;
            }
            if ((rc = sink_zeros(&w->out, 8 * (pos - next))))
                break;
            for (size_t i = 0; i < g && !rc; i++, pos++) {
                unsigned char slot[8];
                smf_put64(slot, group[i].val | ((pos - ghome) << SMF_SLOT_DISP_SHIFT));
                rc = sink_put(&w->out, slot, 8);
            }
            next = pos;
            g = 0;
        }
        if (more) {
            if (g == GROUP_MAX) {
                rc = 1;
                break;
            }
            ghome = home;
            group[g++] = p;
        }
    }
    if (!rc)
        rc = sink_zeros(&w->out, 8 * ((next > M ? next : M) - next));
    *L = next > M ? next : M;
    for (size_t i = 0; it.src && i < it.k; i++)
        free(it.src[i].buf);
    free(it.src);
    free(it.head);
    return rc;
}

/* The pairs anew under seed, from the records read back from the output. */
static int rehash(sm_writer *w, uint64_t seed, uint64_t records_end) {
    spills_free(&w->pairs);
    w->pn = 0;
    int rc = sink_flush(&w->out);
    source s;
    if (!rc)
        rc = source_init(&s, w->out.fd, SMF_HEADER_SIZE, records_end, SINK_BUF);
    if (rc)
        return rc;
    for (;;) {
        uint64_t off = s.pos + s.at;
        rec x;
        if ((rc = source_next(&s, &x))) {
            rc = rc == SM_NOTFOUND ? 0 : rc;
            break;
        }
        if ((rc = pair_add(w, sm_hash64(x.key, x.klen, seed), off)))
            break;
    }
    free(s.buf);
    return rc;
}

/* After the records: the samples, the table, the header. */
static int finish(sm_writer *w) {
    uint64_t n = w->count, records_end = sink_pos(&w->out);
    uint64_t samples_off = (records_end + SMF_SAMPLES_ALIGN - 1) / SMF_SAMPLES_ALIGN * SMF_SAMPLES_ALIGN;
    uint64_t nsamples = smf_nsamples(n, SMF_SAMPLE_SHIFT);
    uint64_t samples_end = samples_off + nsamples * SMF_SAMPLE_SIZE;
    uint64_t table_off = (samples_end + SMF_TABLE_ALIGN - 1) / SMF_TABLE_ALIGN * SMF_TABLE_ALIGN;
    int rc = sink_zeros(&w->out, samples_off - records_end);
    if (!rc)
        rc = sink_flush(&w->samples);
    for (uint64_t off = 0; !rc && off < nsamples * SMF_SAMPLE_SIZE;) {
        /* the samples' own buffer, empty now, carries them over */
        uint64_t left = nsamples * SMF_SAMPLE_SIZE - off;
        ssize_t got = pread(w->samples_fd, w->samples.buf, left < w->samples.cap ? (size_t)left : w->samples.cap,
                            (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            rc = got < 0 ? -errno : -EIO;
        else
            rc = sink_put(&w->out, w->samples.buf, (size_t)got);
        off += got > 0 ? (uint64_t)got : 0;
    }
    if (!rc)
        rc = sink_zeros(&w->out, table_off - samples_end);
    if (!rc)
        rc = sink_flush(&w->out);
    if (rc)
        return rc;
    /* FORMAT.md §5: attempt k uses seed k and M(k) */
    uint64_t M = n ? n + n / 4 + 1 : 0, L = 0, seed = 0;
    smi_xxh64 at_table = w->sum;
    for (int attempt = 0; n; attempt++) {
        if ((rc = table_write(w, M, &L)) != 1)
            break;
        if (attempt >= 3)
            M += M / 2;
        if (attempt >= 40 || M > (UINT64_MAX - table_off) / 8 - SMF_DISP_MAX - 1)
            return SM_ETOOBIG;
        seed++;
        w->out.len = 0;
        w->out.off = table_off;
        w->sum = at_table;
        if ((rc = rehash(w, seed, records_end)))
            return rc;
    }
    if (!rc)
        rc = sink_flush(&w->out);
    if (rc)
        return rc;
    smf_header h = {0};
    h.version = SMF_VERSION;
    h.key_kind = (uint8_t)(n ? w->kind : SM_KEYS_NONE);
    h.required_flags = h.key_kind == SM_KEYS_INT ? SMF_REQ_INT_KEYS : 0;
    h.hash_id = SMF_HASH_XXH64;
    h.sample_shift = SMF_SAMPLE_SHIFT;
    h.total_size = table_off + L * 8;
    h.count = n;
    h.hash_seed = seed;
    h.home_slots = M;
    h.table_slots = L;
    h.table_offset = table_off;
    h.samples_offset = samples_off;
    h.records_end = records_end;
    h.created = w->created;
    if (h.created == SM_CREATED_AUTO) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        h.created = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    h.body_checksum = smi_xxh64_digest(&w->sum);
    unsigned char hdr[SMF_HEADER_SIZE];
    smf_header_write(hdr, &h);
    rc = smi_pwrite_all(w->out.fd, hdr, sizeof hdr, 0);
    if (!rc && ftruncate(w->out.fd, (off_t)h.total_size) < 0)
        rc = -errno; /* a table that failed may have been written past the end */
    return rc;
}

/* ---- the API ---- */

/* The writer of name in dirfd (which it owns from here, failing or not). */
static int writer_open(sm_writer **out, int dirfd, const char *name, const char *label,
                       unsigned flags, unsigned mode, int durable, const sm_writer_opts *opts) {
    *out = NULL;
    sm_writer_opts o = SM_WRITER_OPTS_INIT;
    if (opts)
        o = *opts;
    int bad = (mode & ~0777u) || (o.flags & ~SM_WRITER_SORTED) || (flags & ~SM_FORCE);
    sm_writer *w = bad ? NULL : calloc(1, sizeof *w);
    if (!w) {
        close(dirfd);
        return bad ? -EINVAL : -ENOMEM;
    }
    w->out_t.fd = -1;
    w->samples_fd = -1;
    w->dirfd = dirfd;
    w->durable = durable;
    w->force = (flags & SM_FORCE) != 0;
    snprintf(w->name, sizeof w->name, "%s", name);
    w->limit = o.memory_limit ? o.memory_limit : SM_WRITER_MEMORY_DEFAULT;
    if (w->limit < SM_WRITER_MEMORY_MIN)
        w->limit = SM_WRITER_MEMORY_MIN;
    w->wflags = o.flags;
    w->created = o.created_ns;
    const char *td = o.temp_dir ? o.temp_dir : getenv("TMPDIR");
    w->temp_dir = strdup(td && *td ? td : "/tmp");
    int rc = w->temp_dir ? 0 : -ENOMEM;
    /* the budget: 1/8 for the pair chunk and its scratch; 1/2 for the run (3/8 records,
     * 1/8 index and scratch); the rest for the merge's buffers and the sinks */
    w->pcap = w->limit / 8 / (2 * sizeof(smi_kv));
    if (!rc) {
        w->pa = malloc(w->pcap * sizeof *w->pa);
        w->pt = malloc(w->pcap * sizeof *w->pt);
        if (!w->pa || !w->pt)
            rc = -ENOMEM;
    }
    if (!rc && !(w->wflags & SM_WRITER_SORTED)) {
        w->r.cap = w->limit / 8 * 3;
        w->r.icap = w->limit / 8 / (2 * sizeof(smi_kv));
        w->r.data = malloc(w->r.cap);
        w->r.idx = malloc(w->r.icap * sizeof *w->r.idx);
        w->r.tmp = malloc(w->r.icap * sizeof *w->r.tmp);
        if (!w->r.data || !w->r.idx || !w->r.tmp)
            rc = -ENOMEM;
    }
    if (!rc && (w->samples_fd = spill_open(w->temp_dir)) < 0)
        rc = w->samples_fd;
    if (!rc)
        rc = sink_init(&w->samples, w->samples_fd, 0, SINK_BUF);
    if (!rc)
        rc = smi_temp_begin(&w->out_t, dirfd, label, mode ? mode : SM_DEFAULT_MODE);
    if (!rc)
        rc = sink_init(&w->out, w->out_t.fd, SMF_HEADER_SIZE, SINK_BUF);
    if (rc) {
        sm_writer_free(w);
        return rc;
    }
    smi_xxh64_init(&w->sum, 0);
    w->out.sum = &w->sum;
    *out = w;
    return 0;
}

int sm_writer_open_shm(sm_writer **out, const char *dir, const char *name, unsigned flags,
                       unsigned mode, const sm_writer_opts *opts) {
    smi_dest d;
    *out = NULL;
    int rc = smi_dest_shm(&d, dir, name);
    return rc ? rc : writer_open(out, d.dirfd, d.file, d.label, flags, mode, d.durable, opts);
}

int sm_writer_open_file(sm_writer **out, const char *path, unsigned flags, unsigned mode,
                        const sm_writer_opts *opts) {
    smi_dest d;
    *out = NULL;
    int rc = smi_dest_file(&d, path);
    return rc ? rc : writer_open(out, d.dirfd, d.file, d.label, flags, mode, d.durable, opts);
}

/* The record of (key, value) into buf (grown as needed); its size and key offset. */
static int encode(unsigned char **buf, size_t *cap, sm_key_kind kind, const void *key, size_t klen,
                  const sm_value *value, size_t *size, size_t *koff) {
    if (!value || (klen && !key))
        return -EINVAL;
    if (kind == SM_KEYS_STR && !smi_utf8_valid(key, klen))
        return SM_EUTF8;
    if (kind == SM_KEYS_INT && klen != SMF_INT_KEY_SIZE)
        return -EINVAL;
    unsigned char tmp[8];
    const void *payload;
    size_t plen;
    int rc = smi_value_payload(value, tmp, &payload, &plen);
    if (rc)
        return rc;
    if (klen > SMF_MAX_OFFSET || plen > (SMF_MAX_OFFSET >> SMF_TYPE_BITS))
        return SM_ETOOBIG;
    uint64_t word = ((uint64_t)plen << SMF_TYPE_BITS) | (unsigned)value->type;
    size_t need = smf_varint_size(klen) + smf_varint_size(word) + klen + plen;
    if (need > *cap) {
        size_t c = need > 2 * *cap ? need : 2 * *cap;
        unsigned char *nb = realloc(*buf, c);
        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *cap = c;
    }
    unsigned char *p = smf_put_varint(*buf, klen);
    p = smf_put_varint(p, word);
    *koff = (size_t)(p - *buf);
    if (klen)
        memcpy(p, key, klen);
    if (plen)
        memcpy(p + klen, payload, plen);
    *size = need;
    return 0;
}

/* Sorted input: the new record is encoded (and so checked) first; the pending one
 * goes out when a greater key arrives, and the new one takes its place. */
static int add_sorted(sm_writer *w, sm_key_kind kind, const void *key, size_t klen,
                      const sm_value *value) {
    size_t size, koff;
    int rc = encode(&w->scratch, &w->scratch_cap, kind, key, klen, value, &size, &koff);
    if (rc)
        return rc;
    if (w->have_pend) {
        int c = smi_keycmp(key, klen, w->pend + w->pend_koff, w->pend_klen);
        if (c < 0)
            return SM_EORDER;
        rec x = {w->pend, w->pend + w->pend_koff, w->pend_len, w->pend_klen};
        if (c > 0 && (rc = emit(w, &x)))
            return rc;
    }
    unsigned char *t = w->pend;
    size_t tcap = w->pend_cap;
    w->pend = w->scratch, w->pend_cap = w->scratch_cap;
    w->scratch = t, w->scratch_cap = tcap;
    w->pend_len = size, w->pend_koff = koff, w->pend_klen = klen;
    w->have_pend = 1;
    return 0;
}

int sm_writer_add(sm_writer *w, sm_key_kind kind, const void *key, size_t klen,
                  const sm_value *value) {
    if (!w || w->committed)
        return -EINVAL;
    if (w->err)
        return w->err;
    int rc = 0;
    if (kind != SM_KEYS_BYTES && kind != SM_KEYS_STR && kind != SM_KEYS_INT)
        return -EINVAL; /* not sticky: nothing was added */
    if (w->kind != SM_KEYS_NONE && kind != w->kind)
        return SM_EKEYKIND;
    if (w->wflags & SM_WRITER_SORTED) {
        rc = add_sorted(w, kind, key, klen, value);
    } else {
        size_t size, koff;
        rc = encode(&w->scratch, &w->scratch_cap, kind, key, klen, value, &size, &koff);
        if (!rc)
            rc = run_add(w, w->scratch, size, smf_prefix64(w->scratch + koff, klen));
    }
    if (rc == 0) {
        w->kind = kind;
        w->added++;
    } else if (rc != SM_EUTF8 && rc != SM_ETYPE && rc != -EINVAL && rc != SM_ETOOBIG &&
               rc != SM_EORDER) {
        w->err = rc; /* the output or a spill may now be missing a record */
    }
    return rc;
}

uint64_t sm_writer_count(const sm_writer *w) {
    return w->committed ? w->count : w->added;
}

int sm_writer_commit(sm_writer *w) {
    if (!w || w->committed)
        return -EINVAL;
    int rc = w->err;
    if (!rc && w->have_pend) {
        rec x = {w->pend, w->pend + w->pend_koff, w->pend_len, w->pend_klen};
        rc = emit(w, &x);
        w->have_pend = 0;
    }
    if (!rc && !(w->wflags & SM_WRITER_SORTED)) {
        if (w->runs.n == 0) {
            rc = run_drain(w, NULL);
        } else {
            rc = w->r.n ? run_spill(w) : 0;
            /* the arena is no longer needed: the merge's buffers take its place */
            free(w->r.data);
            free(w->r.idx);
            free(w->r.tmp);
            w->r.data = NULL;
            w->r.idx = w->r.tmp = NULL;
            if (!rc)
                rc = runs_merge(w);
            spills_free(&w->runs);
        }
    }
    if (!rc)
        rc = finish(w);
    if (!rc)
        rc = smi_temp_commit(&w->out_t, w->name, w->force, w->durable);
    w->committed = 1;
    if (rc)
        w->err = rc;
    return rc;
}

void sm_writer_free(sm_writer *w) {
    if (!w)
        return;
    smi_temp_abort(&w->out_t);
    if (w->dirfd >= 0)
        close(w->dirfd);
    if (w->samples_fd >= 0)
        close(w->samples_fd);
    spills_free(&w->pairs);
    spills_free(&w->runs);
    free(w->out.buf);
    free(w->samples.buf);
    free(w->pa);
    free(w->pt);
    free(w->pend);
    free(w->scratch);
    free(w->r.data);
    free(w->r.idx);
    free(w->r.tmp);
    free(w->temp_dir);
    free(w);
}

int smi_writer_open_dest(sm_writer **out, const smi_dest *d, unsigned flags, unsigned mode,
                         const sm_writer_opts *opts) {
    *out = NULL;
    int dirfd = fcntl(d->dirfd, F_DUPFD_CLOEXEC, 0);
    if (dirfd < 0)
        return -errno;
    int rc = writer_open(out, dirfd, d->file, d->label, flags, mode, d->durable, opts);
    if (!rc)
        (*out)->out_t.expect = d->expect;
    return rc;
}
