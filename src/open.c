/* open.c: attaching to a snapshot (shared memory name, file or memory), after the O(1)
 * header validation (R1-R9, format.c) that makes every later bounds check sufficient, and
 * what a reader tells about its snapshot.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int smi_reader_init(sm_reader *r, const unsigned char *p, uint64_t n) {
    return smi_reader_init_as(r, p, n, SMF_REQ_KNOWN);
}

int smi_reader_init_as(sm_reader *r, const unsigned char *p, uint64_t n, uint32_t known) {
    int rc = smf_header_parse_as(p, n, known, &r->h);
    if (rc)
        return rc;
    r->base = p;
    r->nsamples = smf_nsamples(r->h.count, r->h.sample_shift);
    return 0;
}

/* r over the n bytes at p: a snapshot, or a map set's manifest (set.c), whose shards are
 * in the directory dirfd, or else in that of the manifest's path (neither: only a packed
 * set, which has them inside). */
static int init_any(sm_reader *r, const unsigned char *p, uint64_t n, const smi_set_where *where) {
    if (n >= SMF_MAGIC_LEN && memcmp(p, SMS_MAGIC, SMF_MAGIC_LEN) == 0)
        return smi_set_open(r, p, n, where);
    if (n >= SMF_OFF_REQUIRED_FLAGS + 4 && memcmp(p, SMF_MAGIC, SMF_MAGIC_LEN) == 0 &&
        (smf_le32(p + SMF_OFF_REQUIRED_FLAGS) & SMF_REQ_LAYER))
        return smi_layer_open(r, p, n, where);
    return smi_reader_init(r, p, n);
}

int sm_reader_open_mem(sm_reader **out, const void *data, size_t size) {
    return smi_reader_open_mem_at(out, data, size, -1);
}

int smi_reader_open_mem_at(sm_reader **out, const void *data, size_t size, int dirfd) {
    if (!data && size)
        return -EINVAL;
    sm_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    smi_set_where nowhere = {.dirfd = dirfd};
    int rc = init_any(r, data ? data : (const void *)"", size, &nowhere);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Map the regular file fd read-only into r and check its header (R1-R9; or S1-S12 of a set
 * found where `where` says, unless where is NULL: a shard is a snapshot only).  Takes no
 * ownership of fd. */
static int map_fd(sm_reader *r, int fd, const smi_set_where *where) {
    struct stat st;
    if (smi_fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return SM_ENOTSNAPSHOT;
    if (st.st_size < SMF_HEADER_SIZE) {
        /* too small to map usefully: read what is there to say why */
        unsigned char head[SMF_HEADER_SIZE];
        ssize_t n = pread(fd, head, sizeof head, 0);
        if (n < 0)
            return -errno;
        if (where && n >= SMF_MAGIC_LEN && memcmp(head, SMS_MAGIC, SMF_MAGIC_LEN) == 0) {
            smi_manifest m;
            int rc = smi_manifest_parse(head, (uint64_t)n, &m);
            return rc ? rc : SM_ETRUNCATED;
        }
        smf_header h;
        int rc = smf_header_parse(head, (uint64_t)n, &h);
        return rc ? rc : SM_ETRUNCATED;
    }
    if ((uint64_t)st.st_size > SIZE_MAX)
        return SM_ETOOBIG;
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return -errno;
    int rc = where ? init_any(r, map, len, where) : smi_reader_init(r, map, len);
    if (rc) {
        munmap(map, len);
        return rc;
    }
    r->map = map;
    r->map_len = len;
    r->dev = (uint64_t)st.st_dev;
    r->ino = (uint64_t)st.st_ino;
    return 0;
}

int smi_reader_open_fd(sm_reader *r, int fd) { return map_fd(r, fd, NULL); }

/* O_NONBLOCK: a FIFO planted under the name must not hang us (it is then refused as not a
 * regular file). */
#define OPEN_FLAGS (O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

int smi_open_nofollow(int dirfd, const char *path) {
    int fd = openat(dirfd, path, OPEN_FLAGS);
    if (fd < 0) {
        int e = errno;
        struct stat st;
        if (e == ELOOP && smi_fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            return SM_ESYMLINK;
        return -e;
    }
    return fd;
}

/* What `path` is: a snapshot, a packed set, or a set directory or its manifest (by_path: a
 * file by its path; a shared map's name is a snapshot or a packed set). */
static int open_path_once(sm_reader **out, const char *path, int by_path, uint64_t *bad_shard,
                          int *bad_error, int *retry);

/* A layer whose base a compaction removed in the moment between our opening the layer and
 * its base (retry: the layer was superseded by then) is opened again, from the name: the
 * compacted map is there.  A few times, then the error stands. */
#define OPEN_RETRIES 8

static int open_path(sm_reader **out, const char *path, int by_path, uint64_t *bad_shard,
                     int *bad_error) {
    int rc = 0;
    for (int i = 0; i < OPEN_RETRIES; i++) {
        int retry = 0;
        rc = open_path_once(out, path, by_path, bad_shard, bad_error, &retry);
        if (!retry)
            break;
    }
    return rc;
}

static int open_path_once(sm_reader **out, const char *path, int by_path, uint64_t *bad_shard,
                          int *bad_error, int *retry) {
    int fd = smi_open_nofollow(AT_FDCWD, path);
    if (fd < 0)
        return fd;
    sm_reader *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return -ENOMEM;
    }
    smi_set_where where = {.dirfd = -1, .path = by_path ? path : NULL, .layer_path = path,
                           .bad_shard = bad_shard, .bad_error = bad_error, .retry = retry};
    struct stat st;
    int rc = 0;
    if (by_path && smi_fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        where.dirfd = fd;
        where.path = NULL;
        fd = smi_open_nofollow(where.dirfd, SMS_MANIFEST_NAME);
        if (fd < 0)
            rc = fd == -ENOENT ? SM_ENOTSNAPSHOT : fd;
    }
    if (!rc)
        rc = map_fd(r, fd, &where);
    if (fd >= 0)
        close(fd);
    if (where.dirfd >= 0)
        close(where.dirfd);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int sm_reader_open_file(sm_reader **out, const char *path) {
    if (!path || !*path)
        return -EINVAL;
    return open_path(out, path, 1, NULL, NULL);
}

int sm_set_diagnose(const char *path, uint64_t *shard, int *shard_error) {
    if (!path || !*path)
        return -EINVAL;
    sm_reader *r = NULL;
    int rc = open_path(&r, path, 1, shard, shard_error);
    sm_reader_close(r);
    return rc;
}

int sm_reader_open_shm(sm_reader **out, const char *dir, const char *name) {
    char path[PATH_MAX];
    int rc = sm_map_path(dir, name, path, sizeof path);
    return rc ? rc : open_path(out, path, 0, NULL, NULL);
}

void sm_reader_close(sm_reader *r) {
    if (!r)
        return;
    if (r->set)
        smi_set_close(r);
    if (r->layer)
        smi_layer_close(r);
    if (r->map)
        munmap(r->map, r->map_len);
    free(r);
}

uint64_t sm_reader_count(const sm_reader *r) { return r->h.count; }
sm_key_kind sm_reader_key_kind(const sm_reader *r) { return (sm_key_kind)r->h.key_kind; }

void smi_header_info(const smf_header *h, sm_info *out) {
    memset(out, 0, sizeof *out);
    out->size = h->total_size;
    out->count = h->count;
    out->created_ns = h->created;
    out->hash_seed = h->hash_seed;
    out->checksum = h->body_checksum;
    out->format_version = h->version;
    out->key_kind = (sm_key_kind)h->key_kind;
}

void sm_reader_info(const sm_reader *r, sm_info *out) {
    smi_header_info(&r->h, out); /* a set's h has its manifest's figures */
    out->dev = r->dev;
    out->ino = r->ino;
}

const void *sm_reader_data(const sm_reader *r, size_t *size) {
    if (size)
        *size = (size_t)r->h.total_size;
    return r->base;
}

int sm_reader_superseded(const sm_reader *r) {
    const unsigned char *p = r->base + SMF_OFF_SUPERSEDED;
    uint64_t v;
    if (((uintptr_t)p & 7) == 0)
        v = __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_ACQUIRE);
    else
        memcpy(&v, p, 8);
    return v != 0;
}
