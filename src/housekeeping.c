/* housekeeping.c: what a directory of maps holds: the listing of its published maps
 * (sm_list, from each header alone), and the collection of the debris that dead writers
 * and removers leave under temporary names (sm_gc; which temporary may go, and how, is
 * publish.c's rule: smi_collect_temp).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    sm_list_fn fn;
    void *ctx;
} map_lister;

/* One published map: its header alone, checked against the file's real size. */
static int list_visit(int dirfd, const char *file, const char *name, void *ctx) {
    const map_lister *l = ctx;
    if (!*name)
        return 0;
    sm_info info;
    memset(&info, 0, sizeof info);
    int err = 0;
    int fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
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
            uint64_t len = n < (ssize_t)sizeof head ? (uint64_t)n : (uint64_t)st.st_size;
            smf_header h;
            smi_manifest m;
            if (len >= SMF_MAGIC_LEN && memcmp(head, SMS_MAGIC, SMF_MAGIC_LEN) == 0) {
                /* a packed map set: its manifest's header alone (its strings are not read) */
                err = len < SMS_HEADER_SIZE ? SM_ETRUNCATED : smi_manifest_head(head, len, &m);
                if (!err) {
                    info.count = m.count;
                    info.created_ns = m.created;
                    info.checksum = m.body_checksum;
                    info.format_version = SMS_VERSION;
                    info.key_kind = (sm_key_kind)m.key_kind;
                }
            } else {
                /* a layer file's header holds the edited map's count, created and checksum */
                err = smf_header_parse_as(head, len, SMF_REQ_KNOWN | SMF_REQ_LAYER, &h);
                if (!err && !(h.required_flags & SMF_REQ_LAYER))
                    err = smf_header_parse(head, len, &h);
                if (!err) {
                    smi_header_info(&h, &info);
                    if (h.required_flags & SMF_REQ_LAYER)
                        info.hash_seed = 0;
                }
            }
            if (!err) {
                info.dev = (uint64_t)st.st_dev;
                info.ino = (uint64_t)st.st_ino;
            }
        }
    }
    if (fd >= 0)
        close(fd);
    return l->fn(name, &info, err, l->ctx);
}

int sm_list(const char *dir, sm_list_fn fn, void *ctx) {
    map_lister l = {fn, ctx};
    return smi_walk(dir, SM_NAME_PREFIX, list_visit, &l);
}

static int gc_visit(int dirfd, const char *file, const char *rest, void *ctx) {
    (void)rest;
    *(unsigned *)ctx += (unsigned)smi_collect_temp(dirfd, file);
    return 0;
}

/* A base (SML_BASE_PREFIX <16 hex>.<file>) is debris when <file> is not a layer that names it:
 * a compaction or a full publish that replaced the layer and died before it removed the base,
 * or an edit killed between linking the base and publishing its layer.  Judged under the edit
 * lock of <file>, so that no editor is between those two steps. */
static int gc_base_visit(int dirfd, const char *entry, const char *rest, void *ctx) {
    if (strlen(rest) < 18 || rest[16] != '.')
        return 0;
    const char *file = rest + 17;
    int lock = smi_edit_lock(dirfd, file, 1);
    if (lock < 0)
        return 0; /* an editor holds it (or it cannot be locked): not ours to judge */
    int keep = 0;
    int fd = smi_open_nofollow(dirfd, file);
    if (fd >= 0) {
        unsigned char head[SML_NAME + NAME_MAX];
        ssize_t n = pread(fd, head, sizeof head, 0);
        size_t len = strlen(entry);
        if (n >= SML_NAME && memcmp(head, SMF_MAGIC, SMF_MAGIC_LEN) == 0 &&
            (smf_le32(head + SMF_OFF_REQUIRED_FLAGS) & SMF_REQ_LAYER) &&
            smf_le64(head + SML_OFF_NAME_LEN) == len && (size_t)n >= SML_NAME + len &&
            memcmp(head + SML_NAME, entry, len) == 0)
            keep = 1;
        close(fd);
    } else if (fd != -ENOENT) {
        keep = 1; /* cannot tell */
    }
    if (!keep && unlinkat(dirfd, entry, 0) == 0)
        ++*(unsigned *)ctx;
    close(lock);
    return 0;
}

/* An edit lock (SMI_EDIT_LOCK_PREFIX <file>) is debris when <file> is gone: removed under the
 * lock, which no editor holds then.  An editor that opened the lock file before the unlink
 * finds, once it holds the lock, that the name no longer has that file, and opens it again
 * (smi_edit_lock).  Not counted in sm_gc's removed: gc's own judging of bases makes such
 * locks, and they hold no bytes. */
static int gc_lock_visit(int dirfd, const char *entry, const char *file, void *ctx) {
    (void)ctx;
    int lock = smi_edit_lock(dirfd, file, 1);
    if (lock < 0)
        return 0;
    struct stat st;
    if (smi_fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
        unlinkat(dirfd, entry, 0);
    close(lock);
    return 0;
}

int sm_gc(const char *dir, unsigned *removed) {
    unsigned count = 0;
    int rc = smi_walk(dir, SMI_TMP_PREFIX, gc_visit, &count);
    if (!rc)
        rc = smi_walk(dir, SML_BASE_PREFIX, gc_base_visit, &count);
    if (!rc)
        rc = smi_walk(dir, SMI_EDIT_LOCK_PREFIX, gc_lock_visit, &count);
    if (rc)
        return rc;
    if (removed)
        *removed = count;
    return 0;
}

/* What sm_gc would remove of the one name `file` in dir, which sm_unpublish has just taken:
 * its bases and its edit lock.  Only for a name that has an edit lock (was ever edited). */
typedef struct name_gc {
    const char *file;
    unsigned count;
} name_gc;

static int gc_name_base_visit(int dirfd, const char *entry, const char *rest, void *ctx) {
    name_gc *g = ctx;
    if (strlen(rest) < 18 || strcmp(rest + 17, g->file) != 0)
        return 0;
    return gc_base_visit(dirfd, entry, rest, &g->count);
}

void smi_gc_name(const char *dir, const char *file) {
    char lname[NAME_MAX + 1];
    struct stat st;
    int dirfd = open(dir ? dir : SM_DEFAULT_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return;
    if ((size_t)snprintf(lname, sizeof lname, "%s%s", SMI_EDIT_LOCK_PREFIX, file) < sizeof lname &&
        smi_fstatat(dirfd, lname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        name_gc g = {file, 0};
        (void)smi_walk(dir, SML_BASE_PREFIX, gc_name_base_visit, &g);
        (void)gc_lock_visit(dirfd, lname, file, NULL);
    }
    close(dirfd);
}
