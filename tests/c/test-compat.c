/* test-compat.c: the glibc shims of src/compat.h behave as the calls they replace: errno
 * names and messages as strerrorname_np / strerrordesc_np give them (on glibc >= 2.32,
 * where those exist), smi_fstat as fstat. */
#include "test.h"

#include "compat.h"

#include <errno.h>
#include <fcntl.h>

TEST(compat_errno_names) {
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 32)
    for (int e = 1; e < 4096; e++) {
        const char *name = strerrorname_np(e), *desc = strerrordesc_np(e);
        const char *ours = sm_errname(-e);
        if (!name || !ours) {
            if (name != ours)
                test_fail(__FILE__, __LINE__, "errno %d: sm_errname %s, glibc %s", e,
                          ours ? ours : "NULL", name ? name : "NULL");
        } else {
            ASSERT_STR_EQ(ours, name);
        }
        ASSERT_STR_EQ(sm_strerror(-e), desc ? desc : "unknown error");
    }
#endif
    ASSERT_STR_EQ(sm_errname(-EAGAIN), "EAGAIN");
    ASSERT_STR_EQ(sm_errname(-EWOULDBLOCK), "EAGAIN");
    ASSERT_STR_EQ(sm_errname(-EHWPOISON), "EHWPOISON");
    ASSERT_STR_EQ(sm_strerror(-ENOENT), "No such file or directory");
    ASSERT(sm_errname(-4095) == NULL);
    ASSERT_STR_EQ(sm_strerror(-4095), "unknown error");
}

TEST(compat_fstat) {
    const char *path = test_path("compat-fstat");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "twelve bytes", 12), 12);
    ASSERT_EQ(fchmod(fd, 0640), 0); /* whatever the umask */
    struct stat a, b;
    memset(&a, 0xa5, sizeof a);
    ASSERT_EQ(smi_fstat(fd, &a), 0);
    ASSERT_EQ(fstat(fd, &b), 0);
    ASSERT_EQ(a.st_dev, b.st_dev);
    ASSERT_EQ(a.st_ino, b.st_ino);
    ASSERT_EQ(a.st_mode, b.st_mode);
    ASSERT(S_ISREG(a.st_mode));
    ASSERT_EQ(a.st_mode & 07777, 0640);
    ASSERT_EQ(a.st_nlink, 1);
    ASSERT_EQ(a.st_uid, getuid());
    ASSERT_EQ(a.st_size, 12);
    ASSERT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
    ASSERT_EQ(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
    ASSERT_EQ(close(fd), 0);
    errno = 0;
    ASSERT_EQ(smi_fstat(fd, &a), -1);
    ASSERT_EQ(errno, EBADF);
    unlink(path);
}

TEST(compat_fstatat) {
    const char *path = test_path("compat-fstatat");
    const char *link = test_path("compat-fstatat-link");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "seven b", 7), 7);
    ASSERT_EQ(close(fd), 0);
    ASSERT_EQ(symlink(path, link), 0);
    struct stat a, b;
    memset(&a, 0xa5, sizeof a);
    ASSERT_EQ(smi_fstatat(AT_FDCWD, path, &a, AT_SYMLINK_NOFOLLOW), 0);
    ASSERT_EQ(fstatat(AT_FDCWD, path, &b, AT_SYMLINK_NOFOLLOW), 0);
    ASSERT_EQ(a.st_ino, b.st_ino);
    ASSERT_EQ(a.st_size, 7);
    ASSERT(S_ISREG(a.st_mode));
    ASSERT_EQ(smi_fstatat(AT_FDCWD, link, &a, AT_SYMLINK_NOFOLLOW), 0);
    ASSERT(S_ISLNK(a.st_mode)); /* the link itself, not followed */
    ASSERT_EQ(smi_fstatat(AT_FDCWD, link, &a, 0), 0);
    ASSERT_EQ(a.st_ino, b.st_ino); /* followed */
    errno = 0;
    ASSERT_EQ(smi_fstatat(AT_FDCWD, test_path("compat-fstatat-none"), &a, 0), -1);
    ASSERT_EQ(errno, ENOENT);
    unlink(link);
    unlink(path);
}
