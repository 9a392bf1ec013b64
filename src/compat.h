/* compat.h: the few libc calls made without the glibc symbol that would raise the glibc a
 * build needs, so that a library or wheel built on a new glibc runs on glibc 2.28 (RHEL 8,
 * manylinux_2_28), the floor renameat2() sets.  Each replacement behaves as the call it
 * replaces; everything else in src/ calls libc directly.
 *
 *   fstat            fstat@GLIBC_2.33: before 2.33 it was an inline wrapper around
 *                    __fxstat.  smi_fstat makes the system call: on the 64-bit kernel ABIs
 *                    below, struct stat is the kernel's and glibc's own fstat hands the
 *                    buffer straight to the kernel too.  Elsewhere it is plain fstat.
 *   strerrorname_np  GLIBC_2.32, as is strerrordesc_np: compat.c has the table of names
 *                    and untranslated messages they return (glibc 2.36's, checked against
 *                    them by tests/c/test-compat.c).
 *
 * `make check-glibc` (part of `make ctest`) fails if libsharedmap.so needs a newer glibc. */
#ifndef SM_COMPAT_H
#define SM_COMPAT_H

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(SYS_fstat) && defined(__LP64__) && (defined(__x86_64__) || defined(__aarch64__))
static inline int smi_fstat(int fd, struct stat *st) {
    return (int)syscall(SYS_fstat, fd, st); /* -1 and errno on failure, as fstat */
}
#else
static inline int smi_fstat(int fd, struct stat *st) {
    return fstat(fd, st);
}
#endif

/* As glibc's strerrorname_np ("ENOENT") and strerrordesc_np ("No such file or directory"):
 * a static string, or NULL for a number that is no errno. */
const char *smi_strerrorname(int errnum);
const char *smi_strerrordesc(int errnum);

#endif
