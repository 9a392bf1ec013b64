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

/* r over the snapshot of n bytes at p, if its header is valid. */
static int reader_init(sm_reader *r, const unsigned char *p, uint64_t n) {
    int rc = smf_header_parse(p, n, &r->h);
    if (rc)
        return rc;
    r->base = p;
    r->nsamples = smf_nsamples(r->h.count, r->h.sample_shift);
    return 0;
}

int sm_reader_open_mem(sm_reader **out, const void *data, size_t size) {
    if (!data && size)
        return -EINVAL;
    sm_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int rc = reader_init(r, data ? data : (const void *)"", size);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Map an open file read-only and validate it.  Takes no ownership of fd. */
static int open_fd(sm_reader **out, int fd) {
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
    sm_reader *r = calloc(1, sizeof *r);
    if (!r) {
        munmap(map, len);
        return -ENOMEM;
    }
    int rc = reader_init(r, map, len);
    if (rc) {
        munmap(map, len);
        free(r);
        return rc;
    }
    r->map = map;
    r->map_len = len;
    r->dev = (uint64_t)st.st_dev;
    r->ino = (uint64_t)st.st_ino;
    *out = r;
    return 0;
}

static int open_path(sm_reader **out, const char *path) {
    /* O_NONBLOCK: a FIFO planted under the name must not hang us (it is then
     * refused as not a regular file). */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        /* O_NOFOLLOW's ELOOP means a symlink as the final component, or too many of
         * them in the directories on the way: say which */
        int e = errno;
        struct stat st;
        if (e == ELOOP && smi_fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode))
            return SM_ESYMLINK;
        return -e;
    }
    int rc = open_fd(out, fd);
    close(fd);
    return rc;
}

int sm_reader_open_file(sm_reader **out, const char *path) {
    if (!path || !*path)
        return -EINVAL;
    return open_path(out, path);
}

int sm_reader_open_shm(sm_reader **out, const char *dir, const char *name) {
    char path[PATH_MAX];
    int rc = sm_map_path(dir, name, path, sizeof path);
    return rc ? rc : open_path(out, path);
}

void sm_reader_close(sm_reader *r) {
    if (!r)
        return;
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
    smi_header_info(&r->h, out);
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
