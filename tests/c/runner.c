/* runner.c: runs the registered C tests, each in its own forked process with a
 * timeout, and prints "N passed, M failed" (the line CI reads).
 *
 *   runner               every test, in registration order
 *   runner NAME...       the named tests (shell patterns allowed: 'hostile_*')
 *   runner --list        the names
 *
 * SM_TEST_TIMEOUT=S overrides every test's timeout (seconds).  A test's process is
 * its own process group: on a timeout the whole group is killed, and after every
 * test the runner removes what the test may have left in /dev/shm. */
#include "test.h"

#include <errno.h>
#include <fnmatch.h>
#include <ftw.h>
#include <glob.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 512
#define DEFAULT_TIMEOUT 60u

static struct test_entry {
    const char *name;
    test_fn fn;
    unsigned timeout;
} tests[MAX_TESTS];
static size_t ntests;

/* In a test's process: its pid (grandchildren share the test's names and dir). */
static pid_t test_pid;
static char test_dir_buf[128];
static int test_dir_made;

void test_register(const char *name, test_fn fn, unsigned timeout_s) {
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "runner: too many tests (raise MAX_TESTS)\n");
        abort();
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    tests[ntests].timeout = timeout_s ? timeout_s : DEFAULT_TIMEOUT;
    ntests++;
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "  %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    /* _exit: the test stopped half-way, so LeakSanitizer's report would be noise. */
    _exit(1);
}

const char *test_code(char *buf, size_t n, int code) {
    const char *name = sm_errname(code);
    snprintf(buf, n, "%d (%s: %s)", code, name ? name : "?", sm_strerror(code));
    return buf;
}

const char *test_escape(char *buf, size_t n, const void *p, size_t len) {
    const unsigned char *s = p;
    size_t o = 0, shown = len < 80 ? len : 80;
    buf[0] = 0;
    for (size_t i = 0; i < shown && o + 8 < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\' && c != '"')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
    }
    if (shown < len && o + 4 < n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o < n ? o : n - 1] = 0;
    return buf;
}

const char *test_map_name(const char *tag) {
    static char bufs[8][256];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "ctest.%ld.%s", (long)test_pid, tag);
    return b;
}

const char *test_dir(void) {
    if (!test_dir_made) {
        snprintf(test_dir_buf, sizeof test_dir_buf, "/dev/shm/sm-ctest.%ld", (long)test_pid);
        if (mkdir(test_dir_buf, 0700) != 0 && errno != EEXIST)
            test_fail(__FILE__, __LINE__, "mkdir %s: %s", test_dir_buf, strerror(errno));
        test_dir_made = 1;
    }
    return test_dir_buf;
}

const char *test_path(const char *name) {
    static char bufs[8][512];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", test_dir(), name);
    return b;
}

const char *test_src_path(const char *rel) {
    static char bufs[4][1024];
    static unsigned next;
    char *b = bufs[next++ % 4];
    const char *root = getenv("SM_TEST_SRCDIR");
    snprintf(b, sizeof bufs[0], "%s/%s", root && *root ? root : ".", rel);
    return b;
}

pid_t test_spawn(void (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        test_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
    if (pid == 0) {
        fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    return pid;
}

void test_wait_ok(const char *file, int line, pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            test_fail(file, line, "waitpid: %s", strerror(errno));
    }
    if (WIFSIGNALED(st))
        test_fail(file, line, "child %ld killed by signal %d (%s)", (long)pid, WTERMSIG(st),
                  strsignal(WTERMSIG(st)));
    if (WEXITSTATUS(st) != 0)
        test_fail(file, line, "child %ld exited with status %d", (long)pid, WEXITSTATUS(st));
}

/* ---------------------------------------------------------------- the runner */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes the private directory and any map or temporary object whose name holds
 * "ctest.<pid>." from /dev/shm. */
static void cleanup_after(pid_t pid) {
    char path[256];
    snprintf(path, sizeof path, "/dev/shm/sm-ctest.%ld", (long)pid);
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(path, sizeof path, "/dev/shm/*ctest.%ld.*", (long)pid);
    glob_t g;
    if (glob(path, GLOB_NOSORT | GLOB_PERIOD, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++)
            unlink(g.gl_pathv[i]);
        globfree(&g);
    }
}

/* Runs one test in a child process; returns 1 if it passed. */
static int run_one(const struct test_entry *t, size_t index, size_t total, unsigned timeout) {
    fflush(stdout);
    fflush(stderr);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) {
        perror("runner: fork");
        return 0;
    }
    if (pid == 0) {
        setpgid(0, 0);
        test_pid = getpid();
        t->fn();
        fflush(stdout);
        fflush(stderr);
        exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
    }
    setpgid(pid, pid);

    int st = 0, timed_out = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            perror("runner: waitpid");
            return 0;
        }
        if (now_s() - t0 > (double)timeout) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            timed_out = 1;
            break;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL); /* stray grandchildren */
    cleanup_after(pid);

    double dt = now_s() - t0;
    int ok = !timed_out && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (ok)
        printf("[%3zu/%zu] ok     %s (%.2f s)\n", index, total, t->name, dt);
    else if (timed_out)
        printf("[%3zu/%zu] FAILED %s: timed out after %u s\n", index, total, t->name, timeout);
    else if (WIFSIGNALED(st))
        printf("[%3zu/%zu] FAILED %s: killed by signal %d (%s)\n", index, total, t->name,
               WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        printf("[%3zu/%zu] FAILED %s: exit status %d\n", index, total, t->name,
               WEXITSTATUS(st));
    fflush(stdout);
    return ok;
}

static int selected(const char *name, int argc, char **argv) {
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-' && fnmatch(argv[i], name, 0) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < ntests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: %s [--list] [NAME|PATTERN]...\n", argv[0]);
        return 0;
    }
    const char *env = getenv("SM_TEST_TIMEOUT");
    unsigned override = env ? (unsigned)strtoul(env, NULL, 10) : 0;

    size_t total = 0;
    for (size_t i = 0; i < ntests; i++)
        total += (size_t)selected(tests[i].name, argc, argv);
    if (total == 0) {
        fprintf(stderr, "runner: no test matches; --list shows the names\n");
        return 2;
    }
    size_t passed = 0, failed = 0, index = 0;
    static const char *failures[MAX_TESTS];
    for (size_t i = 0; i < ntests; i++) {
        if (!selected(tests[i].name, argc, argv))
            continue;
        index++;
        if (run_one(&tests[i], index, total, override ? override : tests[i].timeout))
            passed++;
        else
            failures[failed++] = tests[i].name;
    }
    if (failed) {
        printf("failed:");
        for (size_t i = 0; i < failed; i++)
            printf(" %s", failures[i]);
        printf("\n");
    }
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed ? 1 : 0;
}
