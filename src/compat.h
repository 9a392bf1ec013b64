/* compat.h: the few libc calls made without the glibc symbol that would raise the glibc a
 * build needs, so that a library or wheel built on a new glibc runs on glibc 2.28 (RHEL 8,
 * manylinux_2_28), the floor renameat2() sets.  Each replacement behaves as the call it
 * replaces; everything else in src/ calls libc directly.
 *
 *   fstat, fstatat   fstat@GLIBC_2.33, fstatat@GLIBC_2.33: before 2.33 they were inline
 *                    wrappers around __fxstat and __fxstatat.  smi_fstat and smi_fstatat
 *                    make the system calls (fstat, newfstatat): on the 64-bit kernel ABIs
 *                    below, struct stat is the kernel's and glibc's own functions hand the
 *                    buffer straight to the kernel too.  Elsewhere they are plain libc.
 *   strerrorname_np  GLIBC_2.32, as is strerrordesc_np: compat.c has the table of names
 *                    and untranslated messages they return (glibc 2.36's, checked against
 *                    them by tests/c/test-compat.c).
 *   pthread_create,  GLIBC_2.34 (moved into libc): layout.c binds the older versions that
 *   pthread_join     libc still exports (.symver), on x86_64 and aarch64.
 *
 * `make check-glibc` (part of `make ctest`) fails if libsharedmap.so needs a newer glibc. */
#ifndef SM_COMPAT_H
#define SM_COMPAT_H

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(SYS_fstat) && defined(SYS_newfstatat) && defined(__LP64__) && \
    (defined(__x86_64__) || defined(__aarch64__))
static inline int smi_fstat(int fd, struct stat *st) {
    return (int)syscall(SYS_fstat, fd, st); /* -1 and errno on failure, as fstat */
}
static inline int smi_fstatat(int dirfd, const char *path, struct stat *st, int flags) {
    return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
}
#else
static inline int smi_fstat(int fd, struct stat *st) {
    return fstat(fd, st);
}
static inline int smi_fstatat(int dirfd, const char *path, struct stat *st, int flags) {
    return fstatat(dirfd, path, st, flags);
}
#endif

/* As glibc's strerrorname_np ("ENOENT") and strerrordesc_np ("No such file or directory"):
 * a static string, or NULL for a number that is no errno. */
const char *smi_strerrorname(int errnum);
const char *smi_strerrordesc(int errnum);

#endif
