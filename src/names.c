/* names.c: map names, and where a published map lives: the name rule, the directory (DIR,
 * or SM_DEFAULT_DIR), and the file name SM_NAME_PREFIX NAME in it (a bitmap's is
 * SM_BITMAP_PREFIX NAME, by the same rule), and its path (sm_map_path).
 *
 *   DIR / sharedmap.NAME           a published map (sm_publish, sm_reader_open_shm)
 *   DIR / sharedbitmap.NAME        a shared bitmap (bitmap.c)
 *   DIR / .sharedmap-tmp.PID.R.X   a temporary of either (SMI_TMP_PREFIX; sm_gc)
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int sm_name_check(const char *name) {
    if (!name)
        return SM_ENAME;
    size_t n = strlen(name);
    if (n == 0 || n > SM_NAME_MAX)
        return SM_ENAME;
    /* '/' would leave the directory; a control character (a newline, an escape
     * sequence) could make `ls` or sm_list() output show a map that is not there.
     * Bytes >= 0x80 pass, UTF-8 or not: names are bytes. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c < 0x20 || c == 0x7f)
            return SM_ENAME;
    }
    return 0;
}

int sm_map_path(const char *dir, const char *name, char *buf, size_t cap) {
    int rc = sm_name_check(name);
    if (!rc) {
        int n = snprintf(buf, cap, "%s/%s%s", dir ? dir : SM_DEFAULT_DIR, SM_NAME_PREFIX, name);
        if (n < 0 || (size_t)n >= cap)
            rc = -ENAMETOOLONG;
    }
    if (rc && cap)
        buf[0] = 0; /* never a cut path that could name another file */
    return rc;
}

int smi_file_name(char *out, size_t cap, const char *prefix, const char *name) {
    int rc = sm_name_check(name);
    if (rc)
        return rc;
    snprintf(out, cap, "%s%s", prefix, name);
    return 0;
}

int smi_open_dir(const char *dir) {
    int fd = open(dir ? dir : SM_DEFAULT_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int smi_walk(const char *dir, const char *prefix, smi_walk_fn visit, void *ctx) {
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
    size_t plen = strlen(prefix);
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL)
        if (strncmp(de->d_name, prefix, plen) == 0)
            rc = visit(dirfd, de->d_name, de->d_name + plen, ctx);
    closedir(d); /* closes dirfd */
    return rc;
}
