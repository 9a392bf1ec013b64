/* publish.c: writing snapshots to shared memory and files, atomically, and unpublishing
 * them: the temporary/rename protocol, and the rule by which whoever removes a snapshot
 * (a publisher, an unpublisher, or sm_gc through smi_collect_temp) marks it first.
 *
 * A map named NAME is the regular file DIR/sharedmap.NAME (DIR = /dev/shm, a tmpfs,
 * by default).  A publish never writes into a name that readers can see:
 *
 *   1. open an anonymous file in DIR (O_TMPFILE; or, where unsupported, a new file
 *      .sharedmap-tmp.PID.RANDOM.NAME created O_EXCL|O_NOFOLLOW) and flock it:
 *      the lock, held until we finish, tells sm_gc() that the writer is alive;
 *   2. fchmod to the requested mode (the umask never decides it);
 *   3. reserve every byte with posix_fallocate (so a full tmpfs is -ENOSPC now,
 *      not a SIGBUS in whoever touches the page later), map it, write the snapshot;
 *   4. give it the temporary name (linkat), then move it to the public name:
 *      renameat2(RENAME_NOREPLACE), and with SM_FORCE, if the name exists,
 *      renameat2(RENAME_EXCHANGE), after which the temporary name holds exactly the
 *      snapshot we displaced; retire it: set its "superseded" word (so its readers
 *      learn with one memory load that a newer version exists), then unlink it.
 *      Only a regular file is ever displaced: what is under the name is checked
 *      before the exchange, what came out is checked after it (and put back if it
 *      is a directory, symlink, ... swapped in between), so nothing else ever
 *      ends up hidden under a temporary name.
 *
 * sm_unpublish() renames the map out of its name to a temporary one and retires it
 * the same way.  Who removes what, so that no reader is ever stranded:
 *
 *   - a temporary is debris only when nobody holds its lock.  A snapshot that has
 *     just left the public name (displaced, or unpublished) is unlocked, so sm_gc()
 *     may meet it before its remover retires it;
 *   - whoever unlinks a temporary that holds a snapshot (publisher, unpublisher or
 *     gc) first sets its superseded word: no snapshot leaves the namespace unmarked,
 *     whichever of them wins.  gc leaves alone a snapshot it may not write (another
 *     user's), for its owner's gc; a publisher or unpublisher allowed to move a
 *     snapshot it may not write (only in a directory without the sticky bit) still
 *     unlinks it, unmarked: the one hole in the hint (docs/FORMAT.md, section 8).
 *
 * A writer killed before step 4 leaves nothing (or a locked-then-orphaned temporary
 * that sm_gc() removes); killed after it, the new map is complete, and at worst the
 * displaced one lingers, unlocked, under a temporary name until sm_gc() marks and
 * removes it.
 */
#include "internal.h"

#include "bitmap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RESERVE_CHUNK ((off_t)64 << 20)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* posix_fallocate in chunks (a signal cannot make us redo gigabytes), retried on
 * EINTR.  Returns 0, -EOPNOTSUPP where the filesystem cannot reserve, or -errno. */
static int reserve(int fd, uint64_t size) {
    for (off_t done = 0; (uint64_t)done < size;) {
        off_t len = (off_t)(size - (uint64_t)done) < RESERVE_CHUNK ? (off_t)(size - (uint64_t)done)
                                                                   : RESERVE_CHUNK;
        int e = posix_fallocate(fd, done, len);
        if (e == EINTR)
            continue;
        if (e == EINVAL)
            e = EOPNOTSUPP;
        if (e)
            return -e;
        done += len;
    }
    return 0;
}

int smi_pwrite_all(int fd, const void *data, size_t n, uint64_t off) {
    const unsigned char *p = data;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w = pwrite(fd, p, chunk, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w, off += (uint64_t)w, n -= (size_t)w;
    }
    return 0;
}

/* Write the snapshot into fd: straight into the reserved pages through a mapping,
 * or, on filesystems that cannot reserve, through a buffer and pwrite (which
 * reports -ENOSPC itself). */
static int write_snapshot(sm_builder *b, int fd, uint64_t size) {
    if (size > SIZE_MAX || size > (uint64_t)INT64_MAX)
        return SM_ETOOBIG;
    int rc = reserve(fd, size);
    if (rc == 0) {
        void *map = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            return -errno;
        rc = sm_builder_write(b, map, size, SM_CREATED_AUTO);
        munmap(map, (size_t)size);
        return rc;
    }
    if (rc != -EOPNOTSUPP)
        return rc;
    unsigned char *buf = malloc((size_t)size);
    if (!buf)
        return -ENOMEM;
    rc = sm_builder_write(b, buf, size, SM_CREATED_AUTO);
    if (!rc)
        rc = smi_pwrite_all(fd, buf, (size_t)size, 0);
    free(buf);
    return rc;
}

static void temp_name(char *out, size_t cap, const char *label) {
    uint64_t rnd;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = now_ns() ^ ((uint64_t)getpid() << 32);
    /* the label (the map or file name) is cut so the whole name fits NAME_MAX */
    snprintf(out, cap, SMI_TMP_PREFIX "%ld.%016llx.%.200s", (long)getpid(), (unsigned long long)rnd, label);
}

/* Steps 1-2: an anonymous (or, failing that or if !allow_anon, temporary-named)
 * locked file. */
int smi_create_temp(int dirfd, const char *label, unsigned mode, char *tmpname, size_t cap,
                    int allow_anon, int *anon) {
    int fd = allow_anon ? openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
    *anon = fd >= 0;
    if (fd < 0) {
        if (allow_anon && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
            return -errno;
        for (int tries = 0; fd < 0 && tries < 16; tries++) {
            temp_name(tmpname, cap, label);
            fd = openat(dirfd, tmpname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0 && errno != EEXIST)
                return -errno;
        }
        if (fd < 0)
            return -EEXIST;
    }
    int rc = 0;
    if (flock(fd, LOCK_EX) < 0 || fchmod(fd, mode) < 0)
        rc = -errno;
    if (!rc && !*anon) {
        /* A named temporary is unlocked between its creation and the flock: sm_gc()
         * may have taken it for debris and removed it in that moment.  Then the name no
         * longer holds this file: start again with another name. */
        struct stat ours, there;
        if (smi_fstat(fd, &ours) < 0)
            rc = -errno;
        else if (smi_fstatat(dirfd, tmpname, &there, AT_SYMLINK_NOFOLLOW) < 0 ||
                 there.st_dev != ours.st_dev || there.st_ino != ours.st_ino) {
            close(fd);
            return smi_create_temp(dirfd, label, mode, tmpname, cap, 0, anon);
        }
    }
    if (rc) {
        if (!*anon)
            unlinkat(dirfd, tmpname, 0);
        close(fd);
        return rc;
    }
    return fd;
}

/* Step 4a: give an anonymous file its temporary name. */
int smi_link_temp(int fd, int dirfd, const char *label, char *tmpname, size_t cap) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    for (int tries = 0; tries < 16; tries++) {
        temp_name(tmpname, cap, label);
        if (linkat(AT_FDCWD, proc, dirfd, tmpname, AT_SYMLINK_FOLLOW) == 0)
            return 0;
        if (errno == EEXIST)
            continue;
        if (errno == ENOENT && linkat(fd, "", dirfd, tmpname, AT_EMPTY_PATH) == 0)
            return 0; /* no /proc: needs CAP_DAC_READ_SEARCH */
        return -errno;
    }
    return -EEXIST;
}

/* What sharedmap may replace or remove under a name: a regular file (a snapshot,
 * or junk), nothing else.  A directory, a symlink, a FIFO ... is refused and never
 * moved: exchanged away, it would hide under a temporary name that sm_gc() (rightly)
 * leaves alone.  Returns 0, -ENOENT, -EISDIR, SM_ESYMLINK, SM_ENOTSNAPSHOT or -errno. */
static int check_replaceable(int dirfd, const char *name) {
    struct stat st;
    if (smi_fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (S_ISREG(st.st_mode))
        return 0;
    return S_ISDIR(st.st_mode) ? -EISDIR : S_ISLNK(st.st_mode) ? SM_ESYMLINK : SM_ENOTSNAPSHOT;
}

/* What mark_fd() found and did. */
typedef enum mark_result {
    MARK_NOT_OURS, /* not a snapshot (not a regular file, too short, other magic): untouched */
    MARK_DONE,     /* a snapshot, and its superseded word is set */
    MARK_FAILED    /* a snapshot (or unreadable), and the word could not be written */
} mark_result;

/* Set the superseded word of the snapshot open as fd (with pwrite: the readers'
 * mappings share the page).  A read-only fd can still tell a snapshot, which it
 * then fails to mark, from anything else. */
static mark_result mark_fd(int fd) {
    struct stat st;
    unsigned char magic[SMF_MAGIC_LEN];
    off_t word;
    if (smi_fstat(fd, &st) < 0)
        return MARK_FAILED;
    if (!S_ISREG(st.st_mode) || st.st_size < SMF_HEADER_SIZE || st.st_size < SMB_HEADER_SIZE)
        return MARK_NOT_OURS;
    ssize_t n = pread(fd, magic, sizeof magic, 0);
    if (n < 0)
        return MARK_FAILED;
    if (n != (ssize_t)sizeof magic)
        return MARK_NOT_OURS;
    if (memcmp(magic, SMF_MAGIC, SMF_MAGIC_LEN) == 0)
        word = SMF_OFF_SUPERSEDED; /* a snapshot */
    else if (memcmp(magic, SMS_MAGIC, SMF_MAGIC_LEN) == 0)
        word = SMS_OFF_SUPERSEDED; /* a packed map set, or a set's manifest (set.c) */
    else if (memcmp(magic, SMB_MAGIC, SMB_MAGIC_LEN) == 0)
        word = SMB_OFF_SUPERSEDED; /* a shared bitmap (bitmap.c): the same rule holds */
    else
        return MARK_NOT_OURS;
    /* 0 -> 1 changes one byte: a reader's 8-byte load cannot see a third value */
    unsigned char one[8];
    smf_put64(one, 1);
    return pwrite(fd, one, 8, word) == 8 ? MARK_DONE : MARK_FAILED;
}

/* Open the temporary `name` (never following a symlink, never blocking on a FIFO):
 * read-write if we may, else read-only (enough to lock it and to tell a snapshot);
 * or -errno. */
static int open_temp(int dirfd, const char *name) {
    const int flags = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    int fd = openat(dirfd, name, O_RDWR | flags);
    if (fd < 0 && (errno == EACCES || errno == EPERM))
        fd = openat(dirfd, name, O_RDONLY | flags);
    return fd < 0 ? -errno : fd;
}

/* A descriptor that can write the superseded word of the temporary `name`, open as
 * fd: fd itself if it is writable or cannot be made so, else a new one (the caller
 * closes it too; fd stays open, as it may hold a lock).  A file of ours whose mode
 * withholds write from its owner (a map published 0444) gets u+w: it has left the
 * public name for good, so the bit guards nothing now (its readers map it
 * read-only), and without it nobody but root could ever tell them. */
static int writable_fd(int dirfd, const char *name, int fd) {
    struct stat st, st2;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY || smi_fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != geteuid() || (st.st_mode & S_IWUSR) ||
        fchmod(fd, (st.st_mode & 07777) | S_IWUSR) < 0)
        return fd;
    int rw = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (rw >= 0 && smi_fstat(rw, &st2) == 0 && st2.st_dev == st.st_dev && st2.st_ino == st.st_ino)
        return rw;
    if (rw >= 0)
        close(rw);
    return fd;
}

/* Set the superseded word of the snapshot under the public name, if it is one of
 * ours and we may write it as it is (the fallback of install(), which marks what is
 * about to be replaced: it is still public, so its mode is not ours to change). */
static void mark_superseded(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return;
    mark_fd(fd);
    close(fd);
}

/* Remove tmpname, which holds a snapshot just taken out of the public name (the one
 * RENAME_EXCHANGE displaced, or the one sm_unpublish renamed away), by the rule of
 * the top of this file: its superseded word first, then the unlink.  sm_gc() may be
 * doing the same at the same moment (it marks before it unlinks too), so a name
 * that is already gone means it is done.  A snapshot we may replace but not write
 * (another user's, in a directory without the sticky bit) is unlinked unmarked:
 * leaving it would pile up a copy of the map per publish until its owner's gc. */
static void retire(int dirfd, const char *tmpname) {
    if (check_replaceable(dirfd, tmpname) != 0)
        return; /* gone, or (install()'s put-back) not a file of ours */
    int fd = open_temp(dirfd, tmpname);
    if (fd >= 0) {
        int w = writable_fd(dirfd, tmpname, fd);
        mark_fd(w);
        if (w != fd)
            close(w);
        close(fd);
    }
    unlinkat(dirfd, tmpname, 0);
}

/* Step 4b: move the complete temporary to its final name.  With force, the
 * snapshot it displaces is retired (flagged superseded and unlinked); RENAME_EXCHANGE
 * makes that exactly the displaced one, even with concurrent publishers. */
int smi_install(int dirfd, const char *tmpname, const char *name, int force) {
    for (int tries = 0; tries < 64; tries++) {
        if (renameat2(dirfd, tmpname, dirfd, name, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EEXIST) {
            if (!force)
                return -EEXIST;
            int rc = check_replaceable(dirfd, name);
            if (rc == -ENOENT)
                continue; /* the name went away in between: try again */
            if (rc)
                return rc;
            if (renameat2(dirfd, tmpname, dirfd, name, RENAME_EXCHANGE) == 0) {
                /* tmpname now names what we displaced, and nobody else's (or nothing:
                 * sm_gc() was first, and marked it) */
                rc = check_replaceable(dirfd, tmpname);
                if (rc == 0 || rc == -ENOENT) {
                    retire(dirfd, tmpname);
                    return 0;
                }
                /* Not a regular file: it was put under the name after the check.  Put
                 * it back, and retire what comes out, our snapshot (or a later
                 * publisher's), which was public for that moment; if the name was
                 * emptied meanwhile, move it back alone. */
                if (renameat2(dirfd, tmpname, dirfd, name, RENAME_EXCHANGE) == 0)
                    retire(dirfd, tmpname);
                else
                    renameat2(dirfd, tmpname, dirfd, name, RENAME_NOREPLACE);
                return rc;
            }
            if (errno == ENOENT)
                continue; /* the name went away in between: try again */
        }
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* A filesystem without RENAME_NOREPLACE / RENAME_EXCHANGE: mark what the name
         * holds now and rename over it (a concurrent publisher may then slip a version
         * in between that is replaced unmarked), or link(), which fails atomically on
         * EEXIST. */
        if (force) {
            int rc = check_replaceable(dirfd, name);
            if (rc && rc != -ENOENT)
                return rc;
            mark_superseded(dirfd, name);
            return renameat(dirfd, tmpname, dirfd, name) < 0 ? -errno : 0;
        }
        if (linkat(dirfd, tmpname, dirfd, name, 0) < 0)
            return -errno;
        unlinkat(dirfd, tmpname, 0);
        return 0;
    }
    return -EAGAIN;
}

/* Unlink tmpname if it still names the file open as fd: after a failed install()
 * it may name what could not be put back under the public name instead. */
static void unlink_own(int dirfd, const char *tmpname, int fd) {
    struct stat ours, there;
    if (smi_fstat(fd, &ours) == 0 && smi_fstatat(dirfd, tmpname, &there, AT_SYMLINK_NOFOLLOW) == 0 &&
        ours.st_dev == there.st_dev && ours.st_ino == there.st_ino)
        unlinkat(dirfd, tmpname, 0);
}

/* ---- a temporary on its way to its name (internal.h: smi_temp) ---- */

int smi_temp_begin(smi_temp *t, int dirfd, const char *label, unsigned mode) {
    int anon;
    t->dirfd = dirfd;
    snprintf(t->label, sizeof t->label, "%s", label);
    memset(&t->expect, 0, sizeof t->expect);
    t->fd = smi_create_temp(dirfd, t->label, mode, t->tmpname, sizeof t->tmpname, 1, &anon);
    t->named = t->fd >= 0 && !anon;
    return t->fd < 0 ? t->fd : 0;
}

/* Copy the first size bytes of in into out.  0 or -errno. */
static int copy_file(int in, int out, uint64_t size) {
    unsigned char buf[1 << 16];
    for (uint64_t off = 0; off < size;) {
        size_t want = size - off < sizeof buf ? (size_t)(size - off) : sizeof buf;
        ssize_t n = pread(in, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        int rc = smi_pwrite_all(out, buf, (size_t)n, off);
        if (rc)
            return rc;
        off += (uint64_t)n;
    }
    return 0;
}

int smi_install_over(int dirfd, const char *tmpname, const char *name, const smi_expect *x) {
    struct stat st;
    if (renameat2(dirfd, tmpname, dirfd, name, RENAME_EXCHANGE) == 0) {
        /* tmpname names what we displaced: the version we replace, or another publisher's */
        if (smi_fstatat(dirfd, tmpname, &st, AT_SYMLINK_NOFOLLOW) == 0 && (uint64_t)st.st_dev == x->dev &&
            (uint64_t)st.st_ino == x->ino) {
            retire(dirfd, tmpname);
            return 0;
        }
        /* Not it: put it back, and retire ours (public for that moment, marked superseded so
         * that a reader who attached then moves on); if the name was emptied meanwhile, the
         * other file goes back alone. */
        if (renameat2(dirfd, tmpname, dirfd, name, RENAME_EXCHANGE) == 0)
            retire(dirfd, tmpname);
        else
            renameat2(dirfd, tmpname, dirfd, name, RENAME_NOREPLACE);
        return SM_ECONFLICT;
    }
    if (errno == ENOENT)
        return SM_ECONFLICT; /* the name is gone: unpublished meanwhile */
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* No RENAME_EXCHANGE here: check, then rename (a publisher may slip in between) */
    if (smi_fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? SM_ECONFLICT : -errno;
    if ((uint64_t)st.st_dev != x->dev || (uint64_t)st.st_ino != x->ino)
        return SM_ECONFLICT;
    mark_superseded(dirfd, name);
    return renameat(dirfd, tmpname, dirfd, name) < 0 ? -errno : 0;
}

/* An anonymous temporary that cannot be named here (no /proc, and no
 * CAP_DAC_READ_SEARCH on an older kernel): its bytes move into a named temporary,
 * which takes its place in t. */
static int rename_by_copy(smi_temp *t) {
    struct stat st;
    int anon;
    if (smi_fstat(t->fd, &st) < 0)
        return -errno;
    int fd = smi_create_temp(t->dirfd, t->label, st.st_mode & 0777, t->tmpname, sizeof t->tmpname, 0, &anon);
    if (fd < 0)
        return fd;
    int rc = copy_file(t->fd, fd, (uint64_t)st.st_size);
    close(t->fd);
    t->fd = fd;
    t->named = 1;
    return rc;
}

int smi_temp_commit(smi_temp *t, const char *name, int force, int durable) {
    int rc = 0;
    if (!t->named) {
        rc = smi_link_temp(t->fd, t->dirfd, t->label, t->tmpname, sizeof t->tmpname);
        if (rc == 0)
            t->named = 1;
        else if (rc != -EEXIST)
            rc = rename_by_copy(t);
    }
    if (!rc && durable && fsync(t->fd) < 0)
        rc = -errno;
    if (!rc)
        rc = t->expect.set ? smi_install_over(t->dirfd, t->tmpname, name, &t->expect)
                           : smi_install(t->dirfd, t->tmpname, name, force);
    if (rc)
        return rc;
    t->named = 0; /* the name is the public one now: abort must not touch it */
    if (durable && fsync(t->dirfd) < 0 && errno != EINVAL && errno != EROFS)
        rc = -errno; /* the rename happened, but may not survive a power cut */
    close(t->fd);
    t->fd = -1;
    return rc;
}

void smi_temp_abort(smi_temp *t) {
    if (t->fd < 0)
        return;
    if (t->named)
        unlink_own(t->dirfd, t->tmpname, t->fd);
    close(t->fd);
    t->fd = -1;
    t->named = 0;
}

/* The whole publish into dirfd under final name `name`; `label` names temporaries. */
int smi_dest_shm(smi_dest *d, const char *dir, const char *name) {
    d->dirfd = -1;
    memset(&d->expect, 0, sizeof d->expect);
    int rc = smi_file_name(d->buf, sizeof d->buf, SM_NAME_PREFIX, name);
    if (rc)
        return rc;
    d->dirfd = smi_open_dir(dir);
    d->file = d->buf;
    d->label = name;
    d->durable = 0; /* shared memory: nothing to sync */
    return d->dirfd < 0 ? d->dirfd : 0;
}

int smi_open_parent(const char *path, const char **base) {
    if (!path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    if (path[n - 1] == '/')
        return -EISDIR;
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash)
        return smi_open_dir(".");
    size_t dlen = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(dlen + 1);
    if (!dir)
        return -ENOMEM;
    memcpy(dir, path, dlen);
    dir[dlen] = 0;
    int dirfd = smi_open_dir(dir);
    free(dir);
    return dirfd;
}

int smi_dest_file(smi_dest *d, const char *path) {
    memset(&d->expect, 0, sizeof d->expect);
    d->dirfd = smi_open_parent(path, &d->file);
    d->label = d->file;
    d->durable = 1;
    return d->dirfd < 0 ? d->dirfd : 0;
}

int smi_publish_filled(const smi_dest *d, unsigned flags, unsigned mode, smi_fill_fn fill, void *ctx) {
    /* permission bits only: fchmod would take setuid, setgid and sticky too, and
     * quietly drop any higher bit */
    if (mode & ~0777u)
        return -EINVAL;
    smi_temp t;
    int rc = smi_temp_begin(&t, d->dirfd, d->label, mode ? mode : SM_DEFAULT_MODE);
    if (rc)
        return rc;
    t.expect = d->expect;
    rc = fill(t.fd, ctx);
    if (!rc)
        rc = smi_temp_commit(&t, d->file, (flags & SM_FORCE) != 0, d->durable);
    smi_temp_abort(&t);
    return rc;
}

/* A builder's snapshot, laid out before the temporary is made. */
typedef struct builder_fill {
    sm_builder *b;
    uint64_t size;
} builder_fill;

static int fill_builder(int fd, void *ctx) {
    builder_fill *f = ctx;
    return write_snapshot(f->b, fd, f->size);
}

static int publish_builder(sm_builder *b, smi_dest *d, int rc, unsigned flags, unsigned mode) {
    builder_fill f = {b, 0};
    if (!rc && (mode & ~0777u))
        rc = -EINVAL; /* before the layout's work, as smi_publish_filled would say */
    if (!rc)
        rc = sm_builder_layout(b, &f.size);
    if (!rc)
        rc = smi_publish_filled(d, flags, mode, fill_builder, &f);
    if (d->dirfd >= 0)
        close(d->dirfd);
    return rc;
}

int sm_publish(sm_builder *b, const char *dir, const char *name, unsigned flags, unsigned mode) {
    smi_dest d = {.dirfd = -1};
    return publish_builder(b, &d, smi_dest_shm(&d, dir, name), flags, mode);
}

int sm_save(sm_builder *b, const char *path, unsigned flags, unsigned mode) {
    smi_dest d = {.dirfd = -1};
    return publish_builder(b, &d, smi_dest_file(&d, path), flags, mode);
}

static int unpublish_at(int dirfd, const char *pub, const char *label) {
    /* Only a regular file is removed: a directory, a symlink, a FIFO ... under the
     * name is refused, and stays where it is. */
    int rc = check_replaceable(dirfd, pub);
    if (rc)
        return rc;
    /* Move exactly one file out of the public name (a publisher racing us may put
     * another there, which then stays), then retire it.  Once it has left the name it
     * is removed, whoever unlinks it in the end (sm_gc() may be first), and a crash in
     * between leaves an unlocked temporary that sm_gc() marks and removes. */
    char tmpname[NAME_MAX + 1];
    temp_name(tmpname, sizeof tmpname, label);
    if (renameat2(dirfd, pub, dirfd, tmpname, RENAME_NOREPLACE) < 0 &&
        (errno != EINVAL || renameat(dirfd, pub, dirfd, tmpname) < 0))
        return -errno;
    rc = check_replaceable(dirfd, tmpname);
    if (rc && rc != -ENOENT) {
        /* put under the name after the check: back it goes (unless a publisher has
         * taken the name meanwhile; then it stays under the temporary name, which gc
         * leaves alone as it is not a regular file) */
        renameat2(dirfd, tmpname, dirfd, pub, RENAME_NOREPLACE);
        return rc;
    }
    retire(dirfd, tmpname);
    return 0;
}

int smi_unpublish(const char *dir, const char *prefix, const char *name) {
    char pub[NAME_MAX + 1];
    int rc = smi_file_name(pub, sizeof pub, prefix, name);
    if (rc)
        return rc;
    int dirfd = smi_open_dir(dir);
    if (dirfd < 0)
        return dirfd;
    rc = unpublish_at(dirfd, pub, name);
    close(dirfd);
    return rc;
}

int sm_unpublish(const char *dir, const char *name) {
    int rc = smi_unpublish(dir, SM_NAME_PREFIX, name);
    char file[NAME_MAX + 1];
    if (!rc && (size_t)snprintf(file, sizeof file, "%s%s", SM_NAME_PREFIX, name) < sizeof file)
        smi_gc_name(dir, file); /* a layered map's base and edit lock go with it */
    return rc;
}

/* ---- debris (sm_gc) ---- */

int smi_collect_temp(int dirfd, const char *name) {
    /* Only a regular file can be ours: anything else under the prefix is left alone,
     * and never opened (it may be a device). */
    struct stat st;
    if (smi_fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return 0;
    int fd = open_temp(dirfd, name);
    if (fd < 0)
        return 0;
    /* A live writer holds the lock until its rename.  Getting it means the writer
     * died (or just finished, and then the name is already gone), or that this is a
     * snapshot a publisher or unpublisher has just taken out of the public name
     * (those are never locked): so it is marked before it goes, as its remover
     * would have marked it, or its readers would never learn.  One we cannot mark
     * (another user's that we may not write) stays, for its owner's gc.  The mode
     * is touched (writable_fd) only under the lock: a live writer's is its own. */
    int removed = 0;
    struct stat ours, there;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && smi_fstat(fd, &ours) == 0 &&
        smi_fstatat(dirfd, name, &there, AT_SYMLINK_NOFOLLOW) == 0 &&
        there.st_dev == ours.st_dev && there.st_ino == ours.st_ino) {
        /* Only if the name still holds the file we locked: the open may have met a
         * writer's temporary that was then installed, and the lock came free when its
         * writer finished; that file is the public map now, not debris to mark.  Only a
         * lock holder renames a locked temporary, so with the lock held the name cannot
         * move on after this check. */
        int w = writable_fd(dirfd, name, fd);
        if (mark_fd(w) != MARK_FAILED && unlinkat(dirfd, name, 0) == 0)
            removed = 1;
        if (w != fd)
            close(w);
    }
    close(fd);
    return removed;
}
