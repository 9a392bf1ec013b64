/* open.c: attaching to a snapshot (shared memory name, file or memory) and the O(1)
 * header validation that makes every later bounds check sufficient.
 *
 * After smi_parse_header() succeeds these hold, and every reader relies on them:
 *   128 <= records_end <= samples_off, samples_off + 16 * nsamples <= table_off,
 *   table_off + 8 * table_slots == size, home_slots <= table_slots,
 *   nsamples == ceil(count / 2^sample_shift), count <= (records_end - 128) / 2
 *   (a record is at least 2 bytes), count <= table_slots, count == 0 or
 *   home_slots > 0.
 * Records and slots are still untrusted: each is checked when it is read.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int smi_parse_header(const unsigned char *p, uint64_t len, struct sm_reader *r) {
    if (len < SMF_MAGIC_LEN || memcmp(p, SMF_MAGIC, SMF_MAGIC_LEN) != 0)
        return SM_EBADMAGIC;
    if (len < 16)
        return SM_ETRUNCATED;
    uint32_t bom = smf_le32(p + SMF_OFF_BYTE_ORDER);
    if (bom != SMF_BYTE_ORDER)
        return bom == __builtin_bswap32(SMF_BYTE_ORDER) ? SM_EENDIAN : SM_EHEADER;
    if (smf_le16(p + SMF_OFF_VERSION) != SMF_VERSION)
        return SM_EVERSION;
    if (smf_le16(p + SMF_OFF_HEADER_SIZE) != SMF_HEADER_SIZE)
        return SM_EHEADER;
    if (len < SMF_HEADER_SIZE)
        return SM_ETRUNCATED;
    if (sm_hash64(p, SMF_OFF_HEADER_SUM, 0) != smf_le64(p + SMF_OFF_HEADER_SUM))
        return SM_EHEADER;
    if (smf_le32(p + SMF_OFF_REQUIRED_FLAGS) != 0)
        return SM_EFEATURE;
    for (unsigned i = 0; i < 5; i++)
        if (p[SMF_OFF_RESERVED + i])
            return SM_EHEADER;

    uint64_t size = smf_le64(p + SMF_OFF_TOTAL_SIZE);
    if (size != len)
        return SM_ETRUNCATED;
    unsigned kind = p[SMF_OFF_KEY_KIND];
    unsigned shift = p[SMF_OFF_SAMPLE_SHIFT];
    uint64_t count = smf_le64(p + SMF_OFF_COUNT);
    uint64_t M = smf_le64(p + SMF_OFF_HOME_SLOTS);
    uint64_t L = smf_le64(p + SMF_OFF_TABLE_SLOTS);
    uint64_t table_off = smf_le64(p + SMF_OFF_TABLE);
    uint64_t samples_off = smf_le64(p + SMF_OFF_SAMPLES);
    uint64_t records_end = smf_le64(p + SMF_OFF_RECORDS_END);
    if (kind > SM_KEYS_STR || (kind == SM_KEYS_NONE && count != 0))
        return SM_EHEADER;
    if (p[SMF_OFF_HASH_ID] != SMF_HASH_XXH64 || shift > SMF_SAMPLE_SHIFT_MAX)
        return SM_EHEADER;
    /* regions in order, each inside the snapshot; differences only, no sums that
     * could overflow */
    if (records_end < SMF_HEADER_SIZE || records_end > samples_off || samples_off > table_off ||
        table_off > size)
        return SM_EHEADER;
    if (count > (records_end - SMF_HEADER_SIZE) / 2)
        return SM_EHEADER;
    uint64_t nsamples = count ? ((count - 1) >> shift) + 1 : 0;
    if (nsamples > (table_off - samples_off) / SMF_SAMPLE_SIZE)
        return SM_EHEADER;
    if ((size - table_off) % 8 != 0 || L != (size - table_off) / 8)
        return SM_EHEADER;
    if (M > L || (count && M == 0) || count > L)
        return SM_EHEADER;

    r->base = p;
    r->size = size;
    r->count = count;
    r->home_slots = M;
    r->table_slots = L;
    r->table_off = table_off;
    r->samples_off = samples_off;
    r->nsamples = nsamples;
    r->records_end = records_end;
    r->seed = smf_le64(p + SMF_OFF_HASH_SEED);
    r->created_ns = smf_le64(p + SMF_OFF_CREATED);
    r->body_sum = smf_le64(p + SMF_OFF_BODY_SUM);
    r->sample_shift = shift;
    r->version = SMF_VERSION;
    r->kind = (sm_key_kind)kind;
    return 0;
}

int sm_reader_open_mem(sm_reader **out, const void *data, size_t size) {
    if (!data && size)
        return -EINVAL;
    sm_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int rc = smi_parse_header(data ? data : "", size, r);
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
        sm_reader tmp;
        int rc = smi_parse_header(head, (uint64_t)n, &tmp);
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
    int rc = smi_parse_header(map, len, r);
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
    int rc = sm_name_check(name);
    if (rc)
        return rc;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s%s", dir ? dir : SM_DEFAULT_DIR, SM_NAME_PREFIX, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return -ENAMETOOLONG;
    return open_path(out, path);
}

void sm_reader_close(sm_reader *r) {
    if (!r)
        return;
    if (r->map)
        munmap(r->map, r->map_len);
    free(r);
}

uint64_t sm_reader_count(const sm_reader *r) { return r->count; }
sm_key_kind sm_reader_key_kind(const sm_reader *r) { return r->kind; }

void sm_reader_info(const sm_reader *r, sm_info *out) {
    memset(out, 0, sizeof *out);
    out->size = r->size;
    out->count = r->count;
    out->created_ns = r->created_ns;
    out->hash_seed = r->seed;
    out->checksum = r->body_sum;
    out->dev = r->dev;
    out->ino = r->ino;
    out->format_version = r->version;
    out->key_kind = r->kind;
}

const void *sm_reader_data(const sm_reader *r, size_t *size) {
    if (size)
        *size = (size_t)r->size;
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
