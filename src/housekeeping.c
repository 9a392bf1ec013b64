/* housekeeping.c: what a directory of maps holds: the listing of its published maps
 * (sm_list, from each header alone), and the collection of the debris that dead writers
 * and removers leave under temporary names (sm_gc; which temporary may go, and how, is
 * publish.c's rule: smi_collect_temp).
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sm_list(const char *dir, sm_list_fn fn, void *ctx) {
    int dirfd = smi_open_dir(dir);
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
                /* the header alone, checked against the file's real size */
                uint64_t len = n < (ssize_t)sizeof head ? (uint64_t)n : (uint64_t)st.st_size;
                smf_header h;
                err = smf_header_parse(head, len, &h);
                if (!err) {
                    smi_header_info(&h, &info);
                    info.dev = (uint64_t)st.st_dev;
                    info.ino = (uint64_t)st.st_ino;
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
    int dirfd = smi_open_dir(dir);
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
        if (strncmp(de->d_name, SMI_TMP_PREFIX, strlen(SMI_TMP_PREFIX)) != 0)
            continue;
        count += (unsigned)smi_collect_temp(dirfd, de->d_name);
    }
    closedir(d);
    if (removed)
        *removed = count;
    return 0;
}
