/* publish.c: writing snapshots to shared memory and files, atomically; unpublishing,
 * listing, and collecting the debris of crashed publishes.
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
 *      snapshot we displaced: set its "superseded" word (so its readers learn with
 *      one memory load that a newer version exists) and unlink it.
 *
 * A writer killed before step 4 leaves nothing (or a locked-then-orphaned temporary
 * that sm_gc() removes); killed after it, the new map is complete (and at worst the
 * displaced one lingers, unlocked, under a temporary name until sm_gc()).
 */
#include "internal.h"

#include <dirent.h>
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

#define TMP_PREFIX ".sharedmap-tmp."
#define RESERVE_CHUNK ((off_t)64 << 20)

int sm_name_check(const char *name) {
    if (!name)
        return SM_ENAME;
    size_t n = strlen(name);
    if (n == 0 || n > SM_NAME_MAX || memchr(name, '/', n))
        return SM_ENAME;
    return 0;
}

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

static int write_all(int fd, const unsigned char *p, uint64_t n) {
    uint64_t off = 0;
    while (off < n) {
        size_t chunk = n - off > (1u << 30) ? (1u << 30) : (size_t)(n - off);
        ssize_t w = pwrite(fd, p + off, chunk, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (uint64_t)w;
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
        rc = write_all(fd, buf, size);
    free(buf);
    return rc;
}

static void temp_name(char *out, size_t cap, const char *label) {
    uint64_t rnd;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = now_ns() ^ ((uint64_t)getpid() << 32);
    /* the label (the map or file name) is cut so the whole name fits NAME_MAX */
    snprintf(out, cap, TMP_PREFIX "%ld.%016llx.%.200s", (long)getpid(), (unsigned long long)rnd, label);
}

/* Steps 1-2: an anonymous (or, failing that or if !allow_anon, temporary-named)
 * locked file. */
static int create_temp(int dirfd, const char *label, unsigned mode, char *tmpname, size_t cap,
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
    if (rc) {
        if (!*anon)
            unlinkat(dirfd, tmpname, 0);
        close(fd);
        return rc;
    }
    return fd;
}

/* Step 4a: give an anonymous file its temporary name. */
static int link_temp(int fd, int dirfd, const char *label, char *tmpname, size_t cap) {
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

/* Set (value 1) or clear (0) the superseded word of the snapshot under name, if it
 * is one of ours and we may write it.  Returns whether it did. */
static int mark_superseded(int dirfd, const char *name, uint64_t value) {
    int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return 0;
    int done = 0;
    struct stat st;
    unsigned char head[SMF_MAGIC_LEN + 8];
    if (smi_fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= SMF_HEADER_SIZE &&
        pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head &&
        memcmp(head, SMF_MAGIC, SMF_MAGIC_LEN) == 0) {
        unsigned char word[8];
        smf_put64(word, value);
        done = pwrite(fd, word, 8, SMF_OFF_SUPERSEDED) == 8;
    }
    close(fd);
    return done;
}

/* Step 4b: move the complete temporary to its final name.  With force, the
 * snapshot it displaces is flagged superseded (if mark) and unlinked; RENAME_EXCHANGE
 * makes that exactly the displaced one, even with concurrent publishers. */
static int install(int dirfd, const char *tmpname, const char *name, int force, int mark) {
    for (int tries = 0; tries < 64; tries++) {
        if (renameat2(dirfd, tmpname, dirfd, name, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EEXIST) {
            if (!force)
                return -EEXIST;
            if (renameat2(dirfd, tmpname, dirfd, name, RENAME_EXCHANGE) == 0) {
                /* tmpname now names the snapshot we displaced, and nobody else's */
                if (mark)
                    mark_superseded(dirfd, tmpname, 1);
                unlinkat(dirfd, tmpname, 0);
                return 0;
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
            if (mark)
                mark_superseded(dirfd, name, 1);
            return renameat(dirfd, tmpname, dirfd, name) < 0 ? -errno : 0;
        }
        if (linkat(dirfd, tmpname, dirfd, name, 0) < 0)
            return -errno;
        unlinkat(dirfd, tmpname, 0);
        return 0;
    }
    return -EAGAIN;
}

/* The whole publish into dirfd under final name `name`; `label` names temporaries;
 * mark: flag the replaced snapshot superseded. */
static int publish_at(sm_builder *b, int dirfd, const char *name, const char *label,
                      unsigned flags, unsigned mode, int durable, int mark) {
    uint64_t size;
    int rc = sm_builder_layout(b, &size);
    if (rc)
        return rc;
    char tmpname[NAME_MAX + 1];
    int allow_anon = 1, anon, fd, named;
again:
    fd = create_temp(dirfd, label, mode ? mode : SM_DEFAULT_MODE, tmpname, sizeof tmpname, allow_anon, &anon);
    if (fd < 0)
        return fd;
    named = !anon;
    rc = write_snapshot(b, fd, size);
    if (!rc && durable && fsync(fd) < 0)
        rc = -errno;
    if (!rc && anon) {
        rc = link_temp(fd, dirfd, label, tmpname, sizeof tmpname);
        named = rc == 0;
        if (rc && rc != -EEXIST) {
            /* cannot name an anonymous file here (no /proc, no CAP_DAC_READ_SEARCH on an
             * older kernel): start again with a named temporary */
            close(fd);
            allow_anon = 0;
            goto again;
        }
    }
    if (!rc)
        rc = install(dirfd, tmpname, name, (flags & SM_FORCE) != 0, mark);
    if (rc)
        goto fail;
    if (durable && fsync(dirfd) < 0 && errno != EINVAL && errno != EROFS) {
        rc = -errno; /* the rename happened, but may not survive a power cut */
        close(fd);
        return rc;
    }
    close(fd);
    return 0;
fail:
    if (named)
        unlinkat(dirfd, tmpname, 0);
    close(fd);
    return rc;
}

static int open_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int public_name(char *out, size_t cap, const char *name) {
    int rc = sm_name_check(name);
    if (rc)
        return rc;
    snprintf(out, cap, "%s%s", SM_NAME_PREFIX, name);
    return 0;
}

int sm_publish(sm_builder *b, const char *dir, const char *name, unsigned flags, unsigned mode) {
    char pub[NAME_MAX + 1];
    int rc = public_name(pub, sizeof pub, name);
    if (rc)
        return rc;
    int dirfd = open_dir(dir ? dir : SM_DEFAULT_DIR);
    if (dirfd < 0)
        return dirfd;
    rc = publish_at(b, dirfd, pub, name, flags, mode, 0, 1);
    close(dirfd);
    return rc;
}

int sm_save(sm_builder *b, const char *path, unsigned flags, unsigned mode) {
    if (!path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    if (path[n - 1] == '/')
        return -EISDIR;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dirfd;
    if (!slash) {
        dirfd = open_dir(".");
    } else {
        size_t dlen = slash == path ? 1 : (size_t)(slash - path);
        char *dir = malloc(dlen + 1);
        if (!dir)
            return -ENOMEM;
        memcpy(dir, path, dlen);
        dir[dlen] = 0;
        dirfd = open_dir(dir);
        free(dir);
    }
    if (dirfd < 0)
        return dirfd;
    int rc = publish_at(b, dirfd, base, base, flags, mode, 1, 1);
    close(dirfd);
    return rc;
}

int sm_unpublish(const char *dir, const char *name) {
    char pub[NAME_MAX + 1];
    int rc = public_name(pub, sizeof pub, name);
    if (rc)
        return rc;
    int dirfd = open_dir(dir ? dir : SM_DEFAULT_DIR);
    if (dirfd < 0)
        return dirfd;
    /* Move exactly one snapshot out of the public name (a publisher racing us may put
     * another there, which then stays), flag it, and unlink it.  A crash in between
     * leaves an unlocked temporary that sm_gc() removes. */
    char tmpname[NAME_MAX + 1];
    temp_name(tmpname, sizeof tmpname, name);
    if (renameat2(dirfd, pub, dirfd, tmpname, RENAME_NOREPLACE) < 0 &&
        (errno != EINVAL || renameat(dirfd, pub, dirfd, tmpname) < 0)) {
        rc = -errno;
    } else {
        mark_superseded(dirfd, tmpname, 1);
        if (unlinkat(dirfd, tmpname, 0) < 0)
            rc = -errno;
    }
    close(dirfd);
    return rc;
}

/* ---- housekeeping ---- */

int sm_list(const char *dir, sm_list_fn fn, void *ctx) {
    int dirfd = open_dir(dir ? dir : SM_DEFAULT_DIR);
    if (dirfd < 0)
        return dirfd;
    DIR *d = fdopendir(dirfd);
    if (!d) {
        int rc = -errno;
        close(dirfd);
        return rc;
    }
    int rc = 0;
    size_t plen = strlen(SM_NAME_PREFIX);
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, SM_NAME_PREFIX, plen) != 0 || !de->d_name[plen])
            continue;
        sm_info info;
        memset(&info, 0, sizeof info);
        int err = 0;
        int fd = openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        struct stat st;
        if (fd < 0) {
            err = -errno;
        } else if (smi_fstat(fd, &st) < 0) {
            err = -errno;
        } else if (!S_ISREG(st.st_mode)) {
            err = SM_ENOTSNAPSHOT;
        } else {
            unsigned char head[SMF_HEADER_SIZE];
            ssize_t n = pread(fd, head, sizeof head, 0);
            info.size = (uint64_t)st.st_size;
            if (n < 0) {
                err = -errno;
            } else {
                sm_reader r;
                memset(&r, 0, sizeof r);
                /* the header alone, checked against the file's real size */
                err = n < (ssize_t)sizeof head ? smi_parse_header(head, (uint64_t)n, &r)
                                               : smi_parse_header(head, (uint64_t)st.st_size, &r);
                if (!err) {
                    r.dev = (uint64_t)st.st_dev;
                    r.ino = (uint64_t)st.st_ino;
                    sm_reader_info(&r, &info);
                }
            }
        }
        if (fd >= 0)
            close(fd);
        rc = fn(de->d_name + plen, &info, err, ctx);
    }
    closedir(d);
    return rc;
}

int sm_gc(const char *dir, unsigned *removed) {
    unsigned count = 0;
    int dirfd = open_dir(dir ? dir : SM_DEFAULT_DIR);
    if (dirfd < 0)
        return dirfd;
    DIR *d = fdopendir(dirfd);
    if (!d) {
        int rc = -errno;
        close(dirfd);
        return rc;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
            continue;
        int fd = openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
            continue;
        /* A live writer holds the lock until its rename; getting it means the
         * writer died (or just finished, and then the name is already gone). */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dirfd, de->d_name, 0) == 0)
            count++;
        close(fd);
    }
    closedir(d);
    if (removed)
        *removed = count;
    return 0;
}
