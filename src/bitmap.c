/* bitmap.c: shared bitmaps: a bitset in one file of /dev/shm that any number of processes
 * set, clear, test-and-set and read in place with atomic instructions, and resize in place.
 *
 * The file (src/bitmap.h, docs/FORMAT.md §11) is a 128-byte header followed by the bits,
 * 64 to a little-endian word.  Every handle maps it MAP_SHARED, so all processes work on
 * the same physical pages:
 *
 *   handle->base                                           reserve_len (never moves)
 *   |<- mapped: [0, 128 + capacity/8), MAP_SHARED --------->|<- PROT_NONE reservation ->|
 *   +--------+-----------------------------------------------+--------------------------+
 *   | header | bits (the file's pages)                        | room to grow to max_bits |
 *   +--------+-----------------------------------------------+--------------------------+
 *
 * Operations.  get is one atomic load of the size word and one of the bit's word; set and
 * clear are one atomic fetch-or / fetch-and on the word (so no update of another bit of the
 * same word, by any process, is ever lost); test_and_set returns the bit that fetch-or saw,
 * so exactly one caller claims a clear bit.  The size is read from the header at every
 * call, so every handle sees a resize at its next operation.
 *
 * Growing.  Each handle reserves address space for max_bits (fixed at creation) once, with
 * PROT_NONE, and maps the file over the prefix of that range that the capacity covers.
 * When an operation meets a size beyond what it has mapped, it maps the new part of the file
 * with MAP_FIXED right after the old: the address never moves, so other threads keep using
 * the handle meanwhile and pointers from sm_bitmap_bytes() stay valid until close.  The file
 * never shrinks, so no page that anyone has mapped ever goes away (no SIGBUS).
 *
 * Resizing (sm_bitmap_resize), serialised between processes by flock(LOCK_EX) on the file:
 *
 *   grow s -> n:   reserve the file (posix_fallocate; ENOSPC is returned here)
 *                  capacity = new capacity          (only after the space exists)
 *                  resize_seq++                     (odd: clearing / moving the size)
 *                  clear bits [s, min(n, old capacity or old end of file, the larger))
 *                  size = n
 *                  resize_seq++                     (even)
 *   shrink s -> n: resize_seq++; size = n; resize_seq++   (the bits past n stay as they are:
 *                  they read as clear, and the next grow clears them before revealing them)
 *
 * The race that matters: a set(i) that checked i < size, then lost the CPU while a shrink
 * hid i (and maybe a grow began revealing it again), lands its fetch-or late.  The rules
 * that make every outcome equivalent to some order of whole operations (linearizable):
 *   - a bit past the size is never trusted: a grow clears what it reveals before it stores
 *     the new size, so a late write that lands while i is hidden is wiped, and its call is
 *     ordered before the shrink that hid i;
 *   - a late write that lands after the grow cleared i but before it stored the size would
 *     be revealed as set: its call, seeing an odd resize_seq after its fetch-or, waits for
 *     the resize to finish before returning, and is ordered just after it;
 *   - get never needs to wait to return 0 (when i is hidden, "past the end" is a true
 *     answer); a 1 read while resize_seq is odd waits and then checks the size again.
 * docs/FORMAT.md §11.6 states the guarantee and its one exception (a resizer killed
 * mid-way).  Waiting is flock on the file, so a dead resizer cannot hang anyone, and the
 * next writable handle that takes the lock makes resize_seq even again.
 */
#include "bitmap.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0),
               "shared bitmaps need lock-free (address-free) 64-bit atomics");

#define RESERVE_CHUNK ((off_t)64 << 20)
/* a new capacity fills the file up to a multiple of this (a page on most systems) */
#define FILE_ALIGN 4096u

struct sm_bitmap {
    unsigned char *base; /* the reservation; the header is at base, the bits at base + 128 */
    size_t reserve_len;
    uint64_t mapped_bits; /* atomic: bits [0, mapped_bits) are mapped (== capacity then) */
    uint64_t max_bits;
    uint64_t created_ns;
    uint64_t dev, ino;
    int fd;
    int writable;
    /* Serialises remapping and every use of the file lock within this process: flock
     * belongs to an open file description, which this handle's threads share. */
    pthread_mutex_t lock;
    int lock_fd; /* the descriptor flock is taken on: fd, or after a fork one of our own */
    pid_t lock_pid;
};

/* ---------------------------------------------------------------- words */

/* The live words and the bit words are little-endian in the file. */
static inline uint64_t le_native(uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}

static inline uint64_t *live_word(const sm_bitmap *b, unsigned off) {
    return (uint64_t *)(void *)(b->base + off);
}
static inline uint64_t load_at(const unsigned char *header, unsigned off, int order) {
    return le_native(__atomic_load_n((const uint64_t *)(const void *)(header + off), order));
}
static inline uint64_t load_live(const sm_bitmap *b, unsigned off, int order) {
    return load_at(b->base, off, order);
}
static inline void store_live(const sm_bitmap *b, unsigned off, uint64_t v) {
    __atomic_store_n(live_word(b, off), le_native(v), __ATOMIC_SEQ_CST);
}
static inline uint64_t *bit_word(const sm_bitmap *b, uint64_t w) {
    return (uint64_t *)(void *)(b->base + SMB_HEADER_SIZE) + w;
}
/* The mask of bit i in its word as the CPU sees the word. */
static inline uint64_t bit_mask(uint64_t i) {
    return le_native(UINT64_C(1) << (i & 63));
}

static inline uint64_t round_up(uint64_t v, uint64_t align) {
    return (v + align - 1) / align * align;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- header */

int smb_check_fixed(const unsigned char *p, uint64_t n, smb_header *out) {
    if (n < SMB_MAGIC_LEN || memcmp(p, SMB_MAGIC, SMB_MAGIC_LEN) != 0)
        return SM_EBADMAGIC; /* B2 */
    if (n < 16)
        return SM_ETRUNCATED;
    uint32_t bom = smf_le32(p + SMB_OFF_BYTE_ORDER); /* B3 */
    if (bom != SMF_BYTE_ORDER)
        return bom == __builtin_bswap32(SMF_BYTE_ORDER) ? SM_EENDIAN : SM_EHEADER;
    if (smf_le16(p + SMB_OFF_VERSION) != SMB_VERSION) /* B4 */
        return SM_EVERSION;
    if (smf_le16(p + SMB_OFF_HEADER_SIZE) != SMB_HEADER_SIZE) /* B5 */
        return SM_EHEADER;
    if (n < SMB_HEADER_SIZE)
        return SM_ETRUNCATED;
    if (sm_hash64(p, SMB_OFF_HEADER_SUM, 0) != smf_le64(p + SMB_OFF_HEADER_SUM)) /* B6 */
        return SM_EHEADER;
    if (smf_le32(p + SMB_OFF_REQUIRED_FLAGS) != 0) /* B7 */
        return SM_EFEATURE;
    for (unsigned i = SMB_OFF_RESERVED; i < SMB_OFF_HEADER_SUM; i++) /* B8 */
        if (p[i])
            return SM_EHEADER;
    for (unsigned i = SMB_OFF_RESERVED2; i < SMB_HEADER_SIZE; i++)
        if (p[i])
            return SM_EHEADER;
    uint64_t max_bits = smf_le64(p + SMB_OFF_MAX_BITS); /* B9 */
    if (max_bits == 0 || max_bits % 64 != 0 || max_bits > SM_BITMAP_MAX_BITS)
        return SM_EHEADER;
    out->max_bits = max_bits;
    out->created_ns = smf_le64(p + SMB_OFF_CREATED);
    return 0;
}

int smb_check_live(uint64_t size, uint64_t capacity, uint64_t max_bits, uint64_t file_size) {
    if (size % 8 != 0 || capacity % 64 != 0 || size > capacity || capacity > max_bits)
        return SM_EHEADER; /* B10 */
    if (file_size < SMB_HEADER_SIZE || capacity / 8 > file_size - SMB_HEADER_SIZE)
        return SM_ETRUNCATED; /* B11 */
    return 0;
}

int smb_parse_header(const unsigned char *p, uint64_t n, uint64_t file_size, smb_header *out) {
    int rc = smb_check_fixed(p, n, out);
    if (rc)
        return rc;
    out->size = smf_le64(p + SMB_OFF_SIZE);
    out->capacity = smf_le64(p + SMB_OFF_CAPACITY);
    out->resize_seq = smf_le64(p + SMB_OFF_RESIZE_SEQ);
    out->superseded = smf_le64(p + SMB_OFF_SUPERSEDED);
    return smb_check_live(out->size, out->capacity, out->max_bits, file_size);
}

static void header_init(unsigned char *h, uint64_t max_bits, uint64_t size, uint64_t capacity) {
    memset(h, 0, SMB_HEADER_SIZE);
    memcpy(h + SMB_OFF_MAGIC, SMB_MAGIC, SMB_MAGIC_LEN);
    smf_put32(h + SMB_OFF_BYTE_ORDER, SMF_BYTE_ORDER);
    smf_put16(h + SMB_OFF_VERSION, SMB_VERSION);
    smf_put16(h + SMB_OFF_HEADER_SIZE, SMB_HEADER_SIZE);
    smf_put64(h + SMB_OFF_MAX_BITS, max_bits);
    smf_put64(h + SMB_OFF_CREATED, now_ns());
    smf_put64(h + SMB_OFF_HEADER_SUM, sm_hash64(h, SMB_OFF_HEADER_SUM, 0));
    smf_put64(h + SMB_OFF_SIZE, size);
    smf_put64(h + SMB_OFF_CAPACITY, capacity);
}

/* The capacity a file holding `size` bits gets: enough, the file filled to FILE_ALIGN,
 * never more than max_bits (both multiples of 64). */
static uint64_t capacity_for(uint64_t size, uint64_t max_bits) {
    uint64_t bytes = round_up(SMB_HEADER_SIZE + size / 8, FILE_ALIGN) - SMB_HEADER_SIZE;
    return bytes * 8 < max_bits ? bytes * 8 : max_bits;
}

/* ---------------------------------------------------------------- the file */

static int retry_flock(int fd, int op) {
    while (flock(fd, op) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* Make the file at least len bytes long with every byte reserved: posix_fallocate of the
 * new tail only (where the filesystem cannot do it, glibc emulates it by rewriting bytes,
 * which would race with the live bits before it) in chunks, retried on EINTR; where the
 * filesystem cannot reserve at all, zeros written past the end (which report ENOSPC as
 * well).  A failure can leave the file longer than before, which the format allows. */
static int extend(int fd, uint64_t len) {
    if (len > (uint64_t)INT64_MAX)
        return -EFBIG;
    struct stat st;
    if (smi_fstat(fd, &st) < 0)
        return -errno;
    for (uint64_t done = (uint64_t)st.st_size; done < len;) {
        uint64_t n = len - done < (uint64_t)RESERVE_CHUNK ? len - done : (uint64_t)RESERVE_CHUNK;
        int e = posix_fallocate(fd, (off_t)done, (off_t)n);
        if (e == EINTR)
            continue;
        if (e == EINVAL || e == EOPNOTSUPP)
            break;
        if (e)
            return -e;
        done += n;
        if (done == len)
            return 0;
    }
    if (smi_fstat(fd, &st) < 0)
        return -errno;
    static const unsigned char zeros[65536];
    for (uint64_t off = (uint64_t)st.st_size; off < len;) {
        size_t n = len - off < sizeof zeros ? (size_t)(len - off) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (uint64_t)w;
    }
    return 0;
}

/* The descriptor to flock.  A child of fork() shares its parent's open file descriptions
 * and so their flocks (its LOCK_EX would succeed while the parent holds one): the first
 * time a process locks, it opens the file again for a description of its own. */
static int lock_fd(sm_bitmap *b) {
    pid_t pid = getpid();
    if (pid == b->lock_pid)
        return b->lock_fd;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", b->fd);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (smi_fstat(fd, &st) < 0 || (uint64_t)st.st_dev != b->dev || (uint64_t)st.st_ino != b->ino) {
        close(fd);
        return -ESTALE;
    }
    if (b->lock_fd != b->fd)
        close(b->lock_fd);
    b->lock_fd = fd;
    b->lock_pid = pid;
    return fd;
}

/* With the handle's mutex held: map the file up to the capacity in the header, if the
 * mapping does not cover `need` bits yet. */
static int map_more_locked(sm_bitmap *b, uint64_t need) {
    uint64_t mapped = __atomic_load_n(&b->mapped_bits, __ATOMIC_RELAXED);
    if (need <= mapped)
        return 0;
    uint64_t cap = load_live(b, SMB_OFF_CAPACITY, __ATOMIC_ACQUIRE);
    struct stat st;
    if (smi_fstat(b->fd, &st) < 0)
        return -errno;
    if (cap < need || cap % 64 != 0 || cap > b->max_bits)
        return SM_ECORRUPT;
    if ((uint64_t)st.st_size < SMB_HEADER_SIZE || cap / 8 > (uint64_t)st.st_size - SMB_HEADER_SIZE)
        return SM_ETRUNCATED;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t off = (SMB_HEADER_SIZE + mapped / 8) / page * page;
    uint64_t end = SMB_HEADER_SIZE + cap / 8;
    int prot = PROT_READ | (b->writable ? PROT_WRITE : 0);
    if (mmap(b->base + off, (size_t)(end - off), prot, MAP_SHARED | MAP_FIXED, b->fd, (off_t)off) ==
        MAP_FAILED)
        return -errno;
    __atomic_store_n(&b->mapped_bits, cap, __ATOMIC_RELEASE);
    return 0;
}

static int map_more(sm_bitmap *b, uint64_t need) {
    pthread_mutex_lock(&b->lock);
    int rc = map_more_locked(b, need);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* The bits [0, size) must be mapped before any of them is touched. */
static inline int ensure_mapped(sm_bitmap *b, uint64_t size) {
    if (size <= __atomic_load_n(&b->mapped_bits, __ATOMIC_ACQUIRE))
        return 0;
    return map_more(b, size);
}

/* Wait until no resize is running: the lock is free once its holder finishes or dies.  A
 * writable handle takes it exclusively and ends an odd resize_seq that a dead resizer left
 * (nothing else is left to finish: the size and capacity are each one atomic store). */
static void wait_resize(sm_bitmap *b) {
    pthread_mutex_lock(&b->lock);
    int fd = lock_fd(b);
    /* if the lock cannot be taken at all (no /proc after a fork, ENOLCK), the call returns
     * without waiting: the one case where the guarantee of §11.6 is not kept */
    if (fd >= 0 && retry_flock(fd, b->writable ? LOCK_EX : LOCK_SH) == 0) {
        uint64_t seq = load_live(b, SMB_OFF_RESIZE_SEQ, __ATOMIC_SEQ_CST);
        if (b->writable && (seq & 1))
            store_live(b, SMB_OFF_RESIZE_SEQ, seq + 1);
        flock(fd, LOCK_UN);
    }
    pthread_mutex_unlock(&b->lock);
}

/* ---------------------------------------------------------------- handles */

/* A handle on the open bitmap file fd (which it takes over, whatever the outcome). */
static int bitmap_from_fd(sm_bitmap **out, int fd, int writable) {
    struct stat st;
    unsigned char head[SMB_HEADER_SIZE];
    smb_header h;
    sm_bitmap *b = NULL;
    ssize_t n;
    int rc;
    if (smi_fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = SM_ENOTSNAPSHOT; /* B1 */
        goto fail_fd;
    }
    while ((n = pread(fd, head, sizeof head, 0)) < 0 && errno == EINTR)
        ;
    if (n < 0) {
        rc = -errno;
        goto fail_fd;
    }
    /* the fixed part never changes once the file has its name: a copy is as good */
    rc = smb_check_fixed(head, (uint64_t)n, &h);
    if (rc)
        goto fail_fd;
    b = calloc(1, sizeof *b);
    if (!b) {
        rc = -ENOMEM;
        goto fail_fd;
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    b->reserve_len = (size_t)round_up(SMB_HEADER_SIZE + h.max_bits / 8, page);
    b->base = mmap(NULL, b->reserve_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (b->base == MAP_FAILED) {
        rc = -errno;
        free(b);
        goto fail_fd;
    }
    b->fd = fd;
    b->lock_fd = fd;
    b->lock_pid = getpid();
    b->writable = writable;
    b->max_bits = h.max_bits;
    b->created_ns = h.created_ns;
    b->dev = (uint64_t)st.st_dev;
    b->ino = (uint64_t)st.st_ino;
    pthread_mutex_init(&b->lock, NULL);
    /* the header's page first, to read the live words atomically (a grower may be storing
     * them): size before capacity, the reverse of the order they are stored in, then the
     * file's size, which was extended before the capacity was stored */
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    if (mmap(b->base, SMB_HEADER_SIZE, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    uint64_t size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    uint64_t cap = load_live(b, SMB_OFF_CAPACITY, __ATOMIC_ACQUIRE);
    if (smi_fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = smb_check_live(size, cap, h.max_bits, (uint64_t)st.st_size);
    if (!rc)
        rc = map_more_locked(b, cap);
    if (rc)
        goto fail;
    *out = b;
    return 0;
fail:
    sm_bitmap_close(b);
    return rc;
fail_fd:
    close(fd);
    return rc;
}

void sm_bitmap_close(sm_bitmap *b) {
    if (!b)
        return;
    munmap(b->base, b->reserve_len);
    if (b->lock_fd != b->fd)
        close(b->lock_fd);
    close(b->fd);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

int sm_bitmap_attach(sm_bitmap **out, const char *dir, const char *name, unsigned flags) {
    char pub[NAME_MAX + 1];
    int rc = smi_file_name(pub, sizeof pub, SM_BITMAP_PREFIX, name);
    if (rc)
        return rc;
    if (flags & ~SM_BITMAP_RDONLY)
        return -EINVAL;
    int writable = !(flags & SM_BITMAP_RDONLY);
    int dirfd = smi_open_dir(dir);
    if (dirfd < 0)
        return dirfd;
    /* O_NONBLOCK: a FIFO planted under the name must not hang us (B1 refuses it) */
    int fd = openat(dirfd, pub, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC |
                                    O_NONBLOCK | O_NOCTTY);
    /* a directory cannot be opened for writing: the same error as any non-file (B1) */
    rc = fd >= 0 ? 0 : errno == EISDIR ? SM_ENOTSNAPSHOT : -errno;
    close(dirfd);
    if (rc)
        return rc;
    return bitmap_from_fd(out, fd, writable);
}

/* ---------------------------------------------------------------- creating and removing */

/* Creating and removing follow the temporary-file protocol of maps (publish.c, through
 * smi_create_temp, smi_link_temp, smi_install and smi_unpublish), so the rules of
 * publishing hold for bitmaps word for word: only a regular file is replaced or removed,
 * and whoever unlinks a bitmap that has left its name sets its superseded word first. */

int sm_bitmap_create(sm_bitmap **out, const char *dir, const char *name, uint64_t size,
                     uint64_t max_bits, unsigned flags, unsigned mode) {
    char pub[NAME_MAX + 1];
    int rc = smi_file_name(pub, sizeof pub, SM_BITMAP_PREFIX, name);
    if (rc)
        return rc;
    if ((flags & ~SM_FORCE) || (mode & ~0777u))
        return -EINVAL;
    if (size > SM_BITMAP_MAX_BITS || max_bits > SM_BITMAP_MAX_BITS)
        return -EFBIG;
    size = round_up(size, 8);
    if (max_bits == 0)
        max_bits = size > SM_BITMAP_DEFAULT_MAX_BITS ? size : SM_BITMAP_DEFAULT_MAX_BITS;
    max_bits = round_up(max_bits, 64);
    if (size > max_bits)
        return -EFBIG;
    int dirfd = smi_open_dir(dir);
    if (dirfd < 0)
        return dirfd;

    char tmpname[NAME_MAX + 1];
    int allow_anon = 1, anon, named, fd;
    sm_bitmap *b = NULL;
again:
    fd = smi_create_temp(dirfd, name, mode ? mode : SM_DEFAULT_MODE, tmpname, sizeof tmpname,
                         allow_anon, &anon);
    if (fd < 0) {
        rc = fd;
        goto done;
    }
    named = !anon;
    uint64_t cap = capacity_for(size, max_bits);
    unsigned char head[SMB_HEADER_SIZE];
    header_init(head, max_bits, size, cap);
    rc = extend(fd, SMB_HEADER_SIZE + cap / 8);
    if (!rc) {
        ssize_t w = pwrite(fd, head, sizeof head, 0);
        rc = w < 0 ? -errno : w != (ssize_t)sizeof head ? -EIO : 0;
    }
    if (rc) {
        close(fd);
        goto fail_unlink;
    }
    rc = bitmap_from_fd(&b, fd, 1); /* the handle owns fd (and its lock) from here */
    if (rc)
        goto fail_unlink;
    if (anon) {
        rc = smi_link_temp(fd, dirfd, name, tmpname, sizeof tmpname);
        named = rc == 0;
        if (rc && rc != -EEXIST) {
            /* cannot name an anonymous file here: start again with a named temporary */
            sm_bitmap_close(b);
            b = NULL;
            allow_anon = 0;
            goto again;
        }
    }
    if (!rc)
        rc = smi_install(dirfd, tmpname, pub, (flags & SM_FORCE) != 0);
    if (rc) {
        sm_bitmap_close(b);
        goto fail_unlink;
    }
    flock(fd, LOCK_UN);
    *out = b;
    goto done;
fail_unlink:
    if (named)
        unlinkat(dirfd, tmpname, 0);
done:
    close(dirfd);
    return rc;
}

int sm_bitmap_remove(const char *dir, const char *name) {
    return smi_unpublish(dir, SM_BITMAP_PREFIX, name);
}

/* ---------------------------------------------------------------- bits */

uint64_t sm_bitmap_size(const sm_bitmap *b) {
    return load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
}

uint64_t sm_bitmap_max_bits(const sm_bitmap *b) {
    return b->max_bits;
}

int sm_bitmap_superseded(const sm_bitmap *b) {
    return load_live(b, SMB_OFF_SUPERSEDED, __ATOMIC_ACQUIRE) != 0;
}

int sm_bitmap_get(sm_bitmap *b, uint64_t index) {
    uint64_t size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    if (index >= size)
        return 0;
    int rc = ensure_mapped(b, size);
    if (rc)
        return rc;
    uint64_t m = bit_mask(index);
    if (!(__atomic_load_n(bit_word(b, index >> 6), __ATOMIC_ACQUIRE) & m))
        return 0;
    if (load_live(b, SMB_OFF_RESIZE_SEQ, __ATOMIC_ACQUIRE) & 1) {
        /* the 1 may have been written late into bits a grow is revealing: it counts once
         * the grow has stored its size, so wait for that, and the index may be gone */
        wait_resize(b);
        if (index >= load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE))
            return 0;
    }
    return 1;
}

/* set (1) or clear (0) the bit; returns the bit as it was (0 unless want_old), or an error.
 * Each of the four cases is its own atomic builtin, so that x86 gets one instruction for each
 * (lock or / lock and without want_old, lock bts / lock btr with it) instead of the
 * compare-and-swap loop a fetch whose result is combined from two builtins compiles to. */
static int bit_update(sm_bitmap *b, uint64_t index, int set, int want_old) {
    if (!b->writable)
        return -EBADF;
    uint64_t size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    if (index >= size)
        return -ERANGE;
    int rc = ensure_mapped(b, size);
    if (rc)
        return rc;
    uint64_t m = bit_mask(index), *w = bit_word(b, index >> 6);
    int was = 0;
    if (set && want_old)
        was = (__atomic_fetch_or(w, m, __ATOMIC_SEQ_CST) & m) != 0;
    else if (set)
        __atomic_fetch_or(w, m, __ATOMIC_SEQ_CST);
    else if (want_old)
        was = (__atomic_fetch_and(w, ~m, __ATOMIC_SEQ_CST) & m) != 0;
    else
        __atomic_fetch_and(w, ~m, __ATOMIC_SEQ_CST);
    if (load_live(b, SMB_OFF_RESIZE_SEQ, __ATOMIC_SEQ_CST) & 1)
        wait_resize(b); /* see the top of this file */
    return was;
}

int sm_bitmap_set(sm_bitmap *b, uint64_t index, int value) {
    int rc = bit_update(b, index, value != 0, 0);
    return rc < 0 ? rc : 0;
}

int sm_bitmap_test_and_set(sm_bitmap *b, uint64_t index) {
    return bit_update(b, index, 1, 1);
}

int sm_bitmap_test_and_clear(sm_bitmap *b, uint64_t index) {
    return bit_update(b, index, 0, 1);
}

int sm_bitmap_count(sm_bitmap *b, uint64_t *count) {
    uint64_t size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    int rc = ensure_mapped(b, size);
    if (rc)
        return rc;
    uint64_t n = 0, full = size >> 6;
    for (uint64_t w = 0; w < full; w++)
        n += (uint64_t)__builtin_popcountll(__atomic_load_n(bit_word(b, w), __ATOMIC_RELAXED));
    if (size & 63) {
        uint64_t v = le_native(__atomic_load_n(bit_word(b, full), __ATOMIC_RELAXED));
        n += (uint64_t)__builtin_popcountll(v & ((UINT64_C(1) << (size & 63)) - 1));
    }
    *count = n;
    return 0;
}

int sm_bitmap_next_set(sm_bitmap *b, uint64_t from, uint64_t *index) {
    uint64_t size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    if (from >= size)
        return SM_NOTFOUND;
    int rc = ensure_mapped(b, size);
    if (rc)
        return rc;
    uint64_t w = from >> 6;
    uint64_t v = le_native(__atomic_load_n(bit_word(b, w), __ATOMIC_ACQUIRE));
    v &= ~UINT64_C(0) << (from & 63);
    for (;;) {
        if (v) {
            uint64_t i = (w << 6) + (uint64_t)__builtin_ctzll(v);
            if (i >= size)
                return SM_NOTFOUND; /* the bits past the end are not the bitmap's */
            *index = i;
            return 0;
        }
        if (++w >= (size + 63) >> 6)
            return SM_NOTFOUND;
        v = le_native(__atomic_load_n(bit_word(b, w), __ATOMIC_ACQUIRE));
    }
}

int sm_bitmap_clear_all(sm_bitmap *b) {
    if (!b->writable)
        return -EBADF;
    uint64_t size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    int rc = ensure_mapped(b, size);
    if (rc)
        return rc;
    /* whole words: the bits of the last one past the size are not the bitmap's */
    for (uint64_t w = 0, n = (size + 63) >> 6; w < n; w++)
        __atomic_store_n(bit_word(b, w), 0, __ATOMIC_RELEASE);
    return 0;
}

int sm_bitmap_bytes(sm_bitmap *b, const void **data, size_t *len) {
    uint64_t size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    int rc = ensure_mapped(b, size);
    if (rc)
        return rc;
    *data = b->base + SMB_HEADER_SIZE;
    *len = (size_t)(size / 8);
    return 0;
}

/* ---------------------------------------------------------------- resizing */

/* Clear the bits [from, to) that a grow reveals: the first word keeps its bits below from;
 * the rest of every word is past the old size, so whole words are stored (all seq_cst:
 * see wait_resize's callers). */
static void clear_range(sm_bitmap *b, uint64_t from, uint64_t to) {
    if (from >= to)
        return;
    uint64_t w = from >> 6, end = (to + 63) >> 6;
    if (from & 63) {
        uint64_t keep = le_native((UINT64_C(1) << (from & 63)) - 1);
        __atomic_fetch_and(bit_word(b, w), keep, __ATOMIC_SEQ_CST);
        w++;
    }
    for (; w < end; w++)
        __atomic_store_n(bit_word(b, w), 0, __ATOMIC_SEQ_CST);
}

int sm_bitmap_resize(sm_bitmap *b, uint64_t size) {
    if (!b->writable)
        return -EBADF;
    if (size > b->max_bits)
        return -EFBIG;
    size = round_up(size, 8); /* max_bits is a multiple of 64: still <= it */
    pthread_mutex_lock(&b->lock);
    int fd = lock_fd(b);
    int rc = fd < 0 ? fd : retry_flock(fd, LOCK_EX);
    if (rc) {
        pthread_mutex_unlock(&b->lock);
        return rc;
    }
    uint64_t seq = load_live(b, SMB_OFF_RESIZE_SEQ, __ATOMIC_SEQ_CST);
    seq += seq & 1; /* a resizer died half-way: its size and capacity stand */
    uint64_t old = load_live(b, SMB_OFF_SIZE, __ATOMIC_SEQ_CST);
    uint64_t cap = load_live(b, SMB_OFF_CAPACITY, __ATOMIC_SEQ_CST);
    struct stat st;
    if (smi_fstat(b->fd, &st) < 0) {
        rc = -errno;
        goto done;
    }
    if ((rc = smb_check_live(old, cap, b->max_bits, (uint64_t)st.st_size)) != 0)
        goto done;
    if (size > old) {
        if (size > cap) {
            uint64_t newcap = capacity_for(size, b->max_bits);
            if ((rc = extend(b->fd, SMB_HEADER_SIZE + newcap / 8)) != 0)
                goto done;
            store_live(b, SMB_OFF_CAPACITY, newcap);
        }
        if ((rc = map_more_locked(b, size)) != 0)
            goto done;
        store_live(b, SMB_OFF_RESIZE_SEQ, seq + 1);
        /* Bits past the old capacity were never inside any size: those past the file's old
         * end are the zeros extend() added; a tail it already had is cleared with the rest
         * (an honest tail is zeros too, left by a grow that failed). */
        uint64_t dirty = ((uint64_t)st.st_size - SMB_HEADER_SIZE) * 8;
        dirty = dirty > cap ? dirty : cap;
        clear_range(b, old, size < dirty ? size : dirty);
        store_live(b, SMB_OFF_SIZE, size);
        seq += 2;
    } else if (size < old) {
        store_live(b, SMB_OFF_RESIZE_SEQ, seq + 1);
        store_live(b, SMB_OFF_SIZE, size);
        seq += 2;
    }
done:
    store_live(b, SMB_OFF_RESIZE_SEQ, seq);
    flock(fd, LOCK_UN);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* ---------------------------------------------------------------- information */

int sm_bitmap_stat(sm_bitmap *b, sm_bitmap_info *out) {
    struct stat st;
    if (smi_fstat(b->fd, &st) < 0)
        return -errno;
    memset(out, 0, sizeof *out);
    out->size = load_live(b, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    out->capacity = load_live(b, SMB_OFF_CAPACITY, __ATOMIC_ACQUIRE);
    out->max_bits = b->max_bits;
    out->file_size = (uint64_t)st.st_size;
    out->created_ns = b->created_ns;
    out->resizes = load_live(b, SMB_OFF_RESIZE_SEQ, __ATOMIC_ACQUIRE) / 2;
    out->dev = b->dev;
    out->ino = b->ino;
    out->format_version = SMB_VERSION;
    out->superseded = sm_bitmap_superseded(b);
    return 0;
}

/* The header of the bitmap file fd, for a listing: the fixed part from a copy, the live
 * words by atomic loads from a read-only mapping of the first page. */
static int list_one(int fd, sm_bitmap_info *info) {
    struct stat st;
    if (smi_fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return SM_ENOTSNAPSHOT;
    info->file_size = (uint64_t)st.st_size;
    info->dev = (uint64_t)st.st_dev;
    info->ino = (uint64_t)st.st_ino;
    unsigned char head[SMB_HEADER_SIZE];
    ssize_t n;
    while ((n = pread(fd, head, sizeof head, 0)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -errno;
    smb_header h;
    int rc = smb_check_fixed(head, (uint64_t)n, &h);
    if (rc)
        return rc;
    void *map = mmap(NULL, SMB_HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return -errno;
    uint64_t size = load_at(map, SMB_OFF_SIZE, __ATOMIC_ACQUIRE);
    uint64_t cap = load_at(map, SMB_OFF_CAPACITY, __ATOMIC_ACQUIRE);
    uint64_t seq = load_at(map, SMB_OFF_RESIZE_SEQ, __ATOMIC_ACQUIRE);
    int superseded = load_at(map, SMB_OFF_SUPERSEDED, __ATOMIC_ACQUIRE) != 0;
    munmap(map, SMB_HEADER_SIZE);
    if (smi_fstat(fd, &st) < 0)
        return -errno;
    info->file_size = (uint64_t)st.st_size;
    rc = smb_check_live(size, cap, h.max_bits, (uint64_t)st.st_size);
    if (rc)
        return rc;
    info->size = size;
    info->capacity = cap;
    info->max_bits = h.max_bits;
    info->created_ns = h.created_ns;
    info->resizes = seq / 2;
    info->format_version = SMB_VERSION;
    info->superseded = superseded;
    return 0;
}

typedef struct {
    sm_bitmap_list_fn fn;
    void *ctx;
} bitmap_lister;

static int list_visit(int dirfd, const char *file, const char *name, void *ctx) {
    const bitmap_lister *l = ctx;
    if (!*name)
        return 0;
    sm_bitmap_info info;
    memset(&info, 0, sizeof info);
    int fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int err = fd < 0 ? -errno : list_one(fd, &info);
    if (fd >= 0)
        close(fd);
    return l->fn(name, &info, err, l->ctx);
}

int sm_bitmap_list(const char *dir, sm_bitmap_list_fn fn, void *ctx) {
    bitmap_lister l = {fn, ctx};
    return smi_walk(dir, SM_BITMAP_PREFIX, list_visit, &l);
}
