/* edit.c: editing a published map (or a snapshot file) by delta layers, sm_edit_*
 * (docs/FORMAT.md §13.10).
 *
 *   open     lock .sharedmap-edit.<file> (editors of one name serialise), open the current
 *            version: a plain snapshot, or a layer (base + delta)
 *   put/del  into a private builder of pending changes (deletions as tombstones), read
 *            through: pending first, then the current version
 *   commit   the name must still hold the version the edit began from (SM_ECONFLICT); the
 *            old delta and the pending changes merged into a new delta over the same base,
 *            published as a layer file over the name; or, past the threshold, base and delta
 *            merged by the streaming writer into a plain snapshot, and the base let go
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>


struct sm_edit {
    smi_dest d;
    char path[PATH_MAX]; /* of the name's file, for sm_reader_open_file */
    int lockfd;
    sm_reader *cur;      /* the version the edit began from */
    sm_builder *pend;    /* pending changes, tombstones for deletions */
    int64_t net;         /* entries the pending changes add (or remove, < 0) */
    sm_edit_opts o;
};

int smi_edit_lock(int dirfd, const char *file, int nowait) {
    char lname[NAME_MAX + 1];
    if ((size_t)snprintf(lname, sizeof lname, "%s%s", SMI_EDIT_LOCK_PREFIX, file) >= sizeof lname)
        return -ENAMETOOLONG;
    for (;;) {
        int fd = openat(dirfd, lname, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        if (flock(fd, LOCK_EX | (nowait ? LOCK_NB : 0)) < 0) {
            int e = errno;
            close(fd);
            if (e == EINTR)
                continue;
            return -e;
        }
        /* a gc may have removed the lock file between our open and our lock */
        struct stat a, b;
        if (smi_fstat(fd, &a) == 0 && smi_fstatat(dirfd, lname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            return fd;
        close(fd);
    }
}

static int edit_open(sm_edit **out, smi_dest *d, int rc, const char *path, const sm_edit_opts *o) {
    sm_edit *e = NULL;
    if (!rc && !(e = calloc(1, sizeof *e)))
        rc = -ENOMEM;
    if (rc) {
        if (d->dirfd >= 0)
            close(d->dirfd);
        return rc;
    }
    e->d = *d;
    e->lockfd = -1;
    sm_edit_opts def = SM_EDIT_OPTS_INIT;
    e->o = o ? *o : def;
    if (strlen(path) >= sizeof e->path)
        rc = -ENAMETOOLONG;
    else
        strcpy(e->path, path);
    /* d's file and label point into the caller's strings, or into d itself: into e now */
    if (d->file == d->buf) {
        e->d.file = e->d.buf;
        e->d.label = e->d.buf + strlen(SM_NAME_PREFIX);
    } else {
        const char *slash = strrchr(e->path, '/');
        e->d.file = e->d.label = slash ? slash + 1 : e->path;
    }
    if (!rc && (rc = smi_edit_lock(e->d.dirfd, e->d.file, (e->o.flags & SM_EDIT_NOWAIT) != 0)) >= 0) {
        e->lockfd = rc;
        rc = 0;
    }
    if (!rc && (rc = sm_reader_open_file(&e->cur, e->path)) == -ENOENT) {
        /* nothing to edit: the lock file made for it goes too (under the lock, as sm_gc) */
        char lname[NAME_MAX + 1];
        snprintf(lname, sizeof lname, "%s%s", SMI_EDIT_LOCK_PREFIX, e->d.file);
        unlinkat(e->d.dirfd, lname, 0);
    }
    if (!rc && e->cur->set)
        rc = -EINVAL; /* a map set is not edited in place */
    if (!rc)
        rc = sm_builder_new(&e->pend);
    if (rc) {
        sm_edit_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int sm_edit_open_shm(sm_edit **out, const char *dir, const char *name, const sm_edit_opts *o) {
    smi_dest d = {.dirfd = -1};
    char path[PATH_MAX];
    int rc = sm_map_path(dir, name, path, sizeof path);
    if (!rc)
        rc = smi_dest_shm(&d, dir, name);
    return edit_open(out, &d, rc, path, o);
}

int sm_edit_open_file(sm_edit **out, const char *path, const sm_edit_opts *o) {
    smi_dest d = {.dirfd = -1};
    int rc = path && *path ? smi_dest_file(&d, path) : -EINVAL;
    return edit_open(out, &d, rc, rc ? "" : path, o);
}

void sm_edit_free(sm_edit *e) {
    if (!e)
        return;
    sm_builder_free(e->pend);
    sm_reader_close(e->cur);
    if (e->lockfd >= 0)
        close(e->lockfd); /* and the lock with it */
    if (e->d.dirfd >= 0)
        close(e->d.dirfd);
    free(e);
}

const sm_reader *sm_edit_reader(const sm_edit *e) { return e->cur; }

int sm_edit_get(const sm_edit *e, const void *key, size_t klen, sm_value *out) {
    sm_value v;
    int rc = sm_builder_get(e->pend, key, klen, &v);
    if (rc == 0) {
        if (v.type == (sm_type)SMF_TYPE_TOMBSTONE)
            return SM_NOTFOUND;
        if (out)
            *out = v;
        return 0;
    }
    return sm_get(e->cur, key, klen, out);
}

/* May the edit take keys of kind?  The kind of its pending keys, else of the current map. */
static int kind_ok(const sm_edit *e, sm_key_kind kind) {
    sm_key_kind k = SM_KEYS_NONE;
    if (sm_builder_count(e->pend))
        k = sm_builder_key_kind(e->pend);
    else if (sm_reader_count(e->cur))
        k = sm_reader_key_kind(e->cur);
    return k == SM_KEYS_NONE || k == kind;
}

int sm_edit_put(sm_edit *e, sm_key_kind kind, const void *key, size_t klen, const sm_value *value) {
    if (!kind_ok(e, kind))
        return SM_EKEYKIND;
    int had = sm_edit_get(e, key, klen, NULL);
    if (had && had != SM_NOTFOUND)
        return had;
    int rc = sm_builder_put(e->pend, kind, key, klen, value);
    if (!rc && had == SM_NOTFOUND)
        e->net++;
    return rc;
}

int sm_edit_del(sm_edit *e, const void *key, size_t klen) {
    int had = sm_edit_get(e, key, klen, NULL);
    if (had)
        return had;
    sm_key_kind kind = sm_builder_count(e->pend) ? sm_builder_key_kind(e->pend) : sm_reader_key_kind(e->cur);
    int rc = smi_builder_put_tombstone(e->pend, kind, key, klen);
    if (!rc)
        e->net--;
    return rc;
}

int sm_edit_change_at(sm_edit *e, size_t i, sm_entry *out, int *deleted) {
    int rc = sm_builder_at(e->pend, i, out);
    if (rc)
        return rc;
    *deleted = out->value.type == (sm_type)SMF_TYPE_TOMBSTONE;
    if (*deleted)
        memset(&out->value, 0, sizeof out->value);
    return 0;
}

uint64_t sm_edit_count(const sm_edit *e) { return (uint64_t)((int64_t)sm_reader_count(e->cur) + e->net); }
size_t sm_edit_changes(const sm_edit *e) { return sm_builder_count(e->pend); }

/* ---- commit ---- */

/* One entry of the new delta, before it goes into its builder. */
typedef struct change {
    sm_buf key;
    sm_value value; /* type SMF_TYPE_TOMBSTONE: a deletion */
    uint64_t base_rank;
    int w;
} change;

/* The record of the old delta at *off (rank j), as a change. */
static int old_change(const struct smi_layer *L, uint64_t j, uint64_t *off, change *c) {
    smf_record rec;
    if (smi_record(&L->delta, *off, &rec))
        return SM_ECORRUPT;
    *off = rec.next;
    c->key.data = L->delta.base + rec.key;
    c->key.size = (size_t)rec.klen;
    if (rec.type == SMF_TYPE_TOMBSTONE)
        c->value.type = (sm_type)SMF_TYPE_TOMBSTONE;
    else if (smi_value(&L->delta, &rec, &c->value))
        return SM_ECORRUPT;
    c->base_rank = smf_le64(L->index + j * SML_INDEX_ENTRY);
    int64_t a0 = (int64_t)smf_le64(L->index + j * SML_INDEX_ENTRY + 8);
    int64_t a1 = j + 1 < L->d ? (int64_t)smf_le64(L->index + (j + 1) * SML_INDEX_ENTRY + 8) : L->net;
    int64_t w;
    /* the index is untrusted (the layer was opened, not verified): a step of A is -1, 0 or 1 */
    if (__builtin_sub_overflow(a1, a0, &w) || w < -1 || w > 1 || c->base_rank > L->base.h.count ||
        (rec.type == SMF_TYPE_TOMBSTONE) != (w == -1))
        return SM_ECORRUPT;
    c->w = (int)w;
    return 0;
}

/* A pending change, classified against the base. */
static int new_change(const sm_reader *base, const sm_entry *p, change *c) {
    sm_cursor bc;
    int rc = sm_seek_key(base, p->key.data, p->key.size, SM_GE, &bc);
    if (rc)
        return rc;
    sm_entry be;
    int in_base = sm_cursor_get(&bc, &be) == 0 && be.key.size == p->key.size &&
                  memcmp(be.key.data, p->key.data, p->key.size) == 0;
    c->key = p->key;
    c->value = p->value;
    c->base_rank = bc.rank;
    int tomb = p->value.type == (sm_type)SMF_TYPE_TOMBSTONE;
    c->w = in_base ? (tomb ? -1 : 0) : (tomb ? 2 /* nothing to delete: dropped */ : 1);
    return 0;
}

/* The changes of the new delta, in key order, into *out (n of them). */
static int merge_changes(sm_edit *e, const sm_reader *base, change **out, size_t *n) {
    const struct smi_layer *L = e->cur->layer;
    uint64_t od = L ? L->d : 0;
    size_t np = sm_builder_count(e->pend);
    change *v = malloc((size_t)(od + np + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    size_t m = 0, i = 0;
    uint64_t j = 0, off = SMF_HEADER_SIZE;
    change oc;
    int have_old = 0, rc = 0;
    sm_entry pe;
    while (!rc) {
        if (!have_old && j < od) {
            if ((rc = old_change(L, j, &off, &oc)))
                break;
            have_old = 1;
            j++;
        }
        int have_new = i < np;
        if (have_new && (rc = sm_builder_at(e->pend, i, &pe)))
            break;
        if (!have_old && !have_new)
            break;
        int cmp = !have_old ? 1 : !have_new ? -1
                  : smi_keycmp(oc.key.data, oc.key.size, pe.key.data, pe.key.size);
        change c;
        if (cmp < 0) {
            c = oc;
            have_old = 0;
        } else {
            if ((rc = new_change(base, &pe, &c)))
                break;
            i++;
            if (cmp == 0)
                have_old = 0; /* the pending change replaces the old one */
        }
        if (c.w != 2)
            v[m++] = c;
    }
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = m;
    return 0;
}

typedef struct bytes_fill {
    const unsigned char *p;
    uint64_t n;
} bytes_fill;

static int fill_layer(int fd, void *ctx) {
    const bytes_fill *f = ctx;
    return smi_pwrite_all(fd, f->p, (size_t)f->n, 0);
}

/* Base and delta merged into a plain snapshot by the streaming writer, over the name. */
static int compact(sm_edit *e, const sm_reader *base, const change *v, size_t n, unsigned mode) {
    sm_writer *w;
    sm_writer_opts wo = SM_WRITER_OPTS_INIT;
    wo.flags = SM_WRITER_SORTED;
    wo.memory_limit = e->o.memory_limit;
    wo.temp_dir = e->o.temp_dir;
    int rc = smi_writer_open_dest(&w, &e->d, SM_FORCE, mode, &wo);
    if (rc)
        return rc;
    sm_cursor bc;
    rc = sm_seek_rank(base, 0, &bc);
    size_t i = 0;
    sm_key_kind kind = (sm_key_kind)(sm_reader_count(base) ? sm_reader_key_kind(base) : SM_KEYS_NONE);
    if (n && !sm_reader_count(base))
        kind = sm_builder_key_kind(e->pend) ? sm_builder_key_kind(e->pend) : sm_reader_key_kind(e->cur);
    sm_entry be;
    int have_b = 0;
    while (!rc) {
        if (!have_b && bc.rank < sm_reader_count(base)) {
            if ((rc = sm_cursor_read(&bc, &be)))
                break;
            have_b = 1;
        }
        if (!have_b && i >= n)
            break;
        int cmp = !have_b ? 1 : i >= n ? -1 : smi_keycmp(be.key.data, be.key.size, v[i].key.data, v[i].key.size);
        if (cmp < 0) {
            rc = sm_writer_add(w, kind, be.key.data, be.key.size, &be.value);
            have_b = 0;
            continue;
        }
        if (cmp == 0)
            have_b = 0;
        if (v[i].value.type != (sm_type)SMF_TYPE_TOMBSTONE)
            rc = sm_writer_add(w, kind, v[i].key.data, v[i].key.size, &v[i].value);
        i++;
    }
    if (!rc)
        rc = sm_writer_commit(w);
    sm_writer_free(w);
    return rc;
}

/* The hidden name of the base cur (a plain snapshot) beside the file `file`. */
static int base_name_of(const sm_reader *cur, const char *file, char *out, size_t cap) {
    unsigned long long id = (unsigned long long)smf_le64(cur->base + SMF_OFF_HEADER_SUM);
    if ((size_t)snprintf(out, cap, "%s%016llx.%s", SML_BASE_PREFIX, id, file) >= cap)
        return -ENAMETOOLONG;
    return 0;
}

/* Give cur, the plain snapshot under the name, its base name too (a hard link), checking that
 * the link is cur's file. */
static int link_base(sm_edit *e, const char *bname) {
    struct stat st;
    if (linkat(e->d.dirfd, e->d.file, e->d.dirfd, bname, 0) < 0 && errno != EEXIST)
        return -errno;
    if (smi_fstatat(e->d.dirfd, bname, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if ((uint64_t)st.st_dev != e->cur->dev || (uint64_t)st.st_ino != e->cur->ino) {
        /* not our file: the name changed under us, or an old base with our name */
        unlinkat(e->d.dirfd, bname, 0);
        return SM_ECONFLICT;
    }
    return 0;
}

int sm_edit_commit(sm_edit *e, int *compacted) {
    if (compacted)
        *compacted = 0;
    struct stat st;
    if (smi_fstatat(e->d.dirfd, e->d.file, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? SM_ECONFLICT : -errno;
    if ((uint64_t)st.st_dev != e->cur->dev || (uint64_t)st.st_ino != e->cur->ino)
        return SM_ECONFLICT; /* replaced since the edit began, by a publisher that does not lock */
    /* and it must at the moment of the rename, too: the publish replaces only that file */
    e->d.expect.set = 1;
    e->d.expect.dev = e->cur->dev;
    e->d.expect.ino = e->cur->ino;
    int force_compact = (e->o.flags & SM_EDIT_COMPACT) != 0;
    if (!sm_builder_count(e->pend) && !force_compact)
        return 0;
    const struct smi_layer *L = e->cur->layer;
    const sm_reader *base = L ? &L->base : e->cur;
    unsigned mode = (unsigned)st.st_mode & 0777u;
    change *v;
    size_t n;
    int rc = merge_changes(e, base, &v, &n);
    if (rc)
        return rc;
    if (!n && !L && !force_compact) {
        free(v); /* the changes cancel out (keys set, then deleted): the map is as it was */
        return 0;
    }
    double ratio = e->o.compact_ratio;
    uint64_t bc = sm_reader_count(base);
    if (force_compact || (ratio >= 0 && (double)n > ratio * (double)bc)) {
        rc = compact(e, base, v, n, mode);
        if (!rc && L)
            unlinkat(e->d.dirfd, L->base_name, 0); /* the base of no layer now */
        if (!rc && compacted)
            *compacted = 1;
        free(v);
        return rc;
    }
    char bname[NAME_MAX + 1];
    if (L)
        snprintf(bname, sizeof bname, "%s", L->base_name);
    else if (!(rc = base_name_of(base, e->d.file, bname, sizeof bname)))
        rc = link_base(e, bname);
    sm_builder *nd = NULL;
    uint64_t *ranks = malloc((n ? n : 1) * sizeof *ranks);
    int64_t *adj = malloc((n ? n : 1) * sizeof *adj);
    if (!rc && (!ranks || !adj))
        rc = -ENOMEM;
    if (!rc)
        rc = sm_builder_new(&nd);
    sm_key_kind kind = sm_builder_count(e->pend) ? sm_builder_key_kind(e->pend) : sm_reader_key_kind(e->cur);
    int64_t sum = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        ranks[i] = v[i].base_rank;
        adj[i] = sum;
        sum += v[i].w;
        if (v[i].value.type == (sm_type)SMF_TYPE_TOMBSTONE)
            rc = smi_builder_put_tombstone(nd, kind, v[i].key.data, v[i].key.size);
        else
            rc = sm_builder_put(nd, kind, v[i].key.data, v[i].key.size, &v[i].value);
    }
    unsigned char *bytes = NULL;
    uint64_t size = 0;
    if (!rc) {
        smi_layer_in in = {base, bname, nd, ranks, adj, (uint64_t)((int64_t)bc + sum), (unsigned)kind};
        rc = smi_layer_build(&in, &bytes, &size);
    }
    if (!rc) {
        bytes_fill f = {bytes, size};
        rc = smi_publish_filled(&e->d, SM_FORCE, mode, fill_layer, &f);
    }
    free(bytes);
    sm_builder_free(nd);
    free(ranks);
    free(adj);
    free(v);
    return rc;
}
