/* test-publish.c: publishing, attaching (from real child processes), replacing,
 * unpublishing, names, permissions, files, symlinks, listing and garbage collection. */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A builder of n random str->any entries and its model. */
static sm_builder *random_builder(model *m, size_t n, uint64_t seed) {
    model_random(m, SM_KEYS_STR, n, seed);
    return model_builder(m);
}

/* A map whose every value is the int `version`: a reader can tell versions apart. */
static sm_builder *versioned_builder(model *m, size_t n, int64_t version) {
    model_init(m, SM_KEYS_STR);
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, "key%06zu", i);
        sm_value v = sm_value_int(version);
        model_add(m, key, (size_t)kl, &v);
    }
    model_sort_unique(m);
    return model_builder(m);
}

static int file_mode(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        test_fail(__FILE__, __LINE__, "lstat %s: %s", path, strerror(errno));
    return (int)(st.st_mode & 07777);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *shm_path(const char *dir, const char *name) {
    static char bufs[4][600];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s%s", dir ? dir : SM_DEFAULT_DIR, SM_NAME_PREFIX, name);
    return b;
}

struct attach_ctx {
    const model *m;
    const char *dir, *name;
};

static void child_attach_check(void *arg) {
    const struct attach_ctx *c = arg;
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, c->dir, c->name));
    check_reader(r, c->m, 5, 200);
    ASSERT_EQ(sm_reader_superseded(r), 0);
    sm_reader_close(r);
}

static void child_publish(void *arg) {
    const struct attach_ctx *c = arg;
    sm_builder *b = model_builder(c->m);
    ASSERT_OK(sm_publish(b, c->dir, c->name, 0, 0));
    sm_builder_free(b);
}

TEST(publish_attach_child) {
    model m;
    sm_builder *b = random_builder(&m, 500, 42);
    const char *name = test_map_name("attach");
    ASSERT_OK(sm_publish(b, NULL, name, 0, 0));
    ASSERT(exists(shm_path(NULL, name)));

    /* a reader in another process */
    struct attach_ctx c = {&m, NULL, name};
    ASSERT_CHILD_OK(test_spawn(child_attach_check, &c));
    ASSERT_CHILD_OK(test_spawn(child_attach_check, &c));

    /* a writer in another process that has exited: the map stays */
    model m2;
    model_random(&m2, SM_KEYS_STR, 300, 43);
    const char *name2 = test_map_name("attach2");
    struct attach_ctx c2 = {&m2, NULL, name2};
    ASSERT_CHILD_OK(test_spawn(child_publish, &c2));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, NULL, name2));
    check_reader(r, &m2, 6, 200);
    sm_reader_close(r);

    ASSERT_OK(sm_unpublish(NULL, name));
    ASSERT_OK(sm_unpublish(NULL, name2));
    ASSERT(!exists(shm_path(NULL, name)));
    sm_builder_free(b);
    model_free(&m);
    model_free(&m2);
}

TEST(publish_eexist) {
    const char *dir = test_dir();
    model m1, m2;
    sm_builder *b1 = versioned_builder(&m1, 50, 1);
    sm_builder *b2 = versioned_builder(&m2, 70, 2);
    ASSERT_OK(sm_publish(b1, dir, "map", 0, 0));
    ASSERT_ERR(sm_publish(b2, dir, "map", 0, 0), -EEXIST);
    ASSERT_ERR(sm_publish(b2, dir, "map", 0, 0600), -EEXIST);
    /* the first map is intact and nothing was left behind */
    ASSERT_STR_EQ(test_listing(dir), "sharedmap.map");
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, dir, "map"));
    check_reader(r, &m1, 1, 50);
    sm_reader_close(r);
    sm_builder_free(b1);
    sm_builder_free(b2);
    model_free(&m1);
    model_free(&m2);
}

struct hold_ctx {
    const model *m;
    const char *dir, *name;
    int ready_w, go_r;
};

/* Attaches, tells the parent, waits for the replacement, then checks that it still
 * reads the old version and that it has learned it is superseded. */
static void child_hold_old(void *arg) {
    const struct hold_ctx *c = arg;
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, c->dir, c->name));
    ASSERT_EQ(sm_reader_superseded(r), 0);
    char x = 'r';
    ASSERT_EQ(write(c->ready_w, &x, 1), 1);
    ASSERT_EQ(read(c->go_r, &x, 1), 1);
    check_reader(r, c->m, 9, 100);
    ASSERT_EQ(sm_reader_superseded(r), 1);
    sm_reader_close(r);
}

static void check_force_replace(const char *dir) {
    const char *name = test_map_name("force");
    model m1, m2;
    sm_builder *b1 = versioned_builder(&m1, 100, 1);
    sm_builder *b2 = versioned_builder(&m2, 150, 2);
    ASSERT_OK(sm_publish(b1, dir, name, 0, 0));

    int ready[2], go[2];
    ASSERT_OK(pipe(ready));
    ASSERT_OK(pipe(go));
    struct hold_ctx c = {&m1, dir, name, ready[1], go[0]};
    pid_t pid = test_spawn(child_hold_old, &c);
    char x;
    ASSERT_EQ(read(ready[0], &x, 1), 1);

    sm_reader *r1 = NULL, *r2 = NULL;
    ASSERT_OK(sm_reader_open_shm(&r1, dir, name));
    ASSERT_OK(sm_publish(b2, dir, name, SM_FORCE, 0));
    ASSERT_EQ(write(go[1], &x, 1), 1);

    check_reader(r1, &m1, 3, 100); /* the old version, still */
    ASSERT_EQ(sm_reader_superseded(r1), 1);
    ASSERT_OK(sm_reader_open_shm(&r2, dir, name));
    check_reader(r2, &m2, 4, 100);
    ASSERT_EQ(sm_reader_superseded(r2), 0);
    sm_info i1, i2;
    sm_reader_info(r1, &i1);
    sm_reader_info(r2, &i2);
    ASSERT_NE(i1.ino, i2.ino);
    ASSERT_CHILD_OK(pid);

    /* force onto a name that does not exist yet works too */
    const char *fresh = test_map_name("force-fresh");
    ASSERT_OK(sm_publish(b1, dir, fresh, SM_FORCE, 0));
    ASSERT_OK(sm_unpublish(dir, fresh));

    sm_reader_close(r1);
    sm_reader_close(r2);
    ASSERT_OK(sm_unpublish(dir, name));
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    sm_builder_free(b1);
    sm_builder_free(b2);
    model_free(&m1);
    model_free(&m2);
}

TEST(publish_force_replace) {
    check_force_replace(NULL);
    check_force_replace(test_dir());
    /* no debris in the private directory */
    ASSERT_STR_EQ(test_listing(test_dir()), "");
}

TEST(unpublish_while_attached) {
    const char *name = test_map_name("unpub");
    model m;
    sm_builder *b = random_builder(&m, 200, 7);
    ASSERT_OK(sm_publish(b, NULL, name, 0, 0));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, NULL, name));
    ASSERT_OK(sm_unpublish(NULL, name));
    ASSERT(!exists(shm_path(NULL, name)));
    check_reader(r, &m, 8, 100); /* still readable */
    ASSERT_EQ(sm_reader_superseded(r), 1);
    sm_reader *r2 = NULL;
    ASSERT_ERR(sm_reader_open_shm(&r2, NULL, name), -ENOENT);
    ASSERT_ERR(sm_unpublish(NULL, name), -ENOENT);
    /* the name is free again */
    ASSERT_OK(sm_publish(b, NULL, name, 0, 0));
    ASSERT_OK(sm_reader_open_shm(&r2, NULL, name));
    ASSERT_EQ(sm_reader_superseded(r2), 0);
    sm_reader_close(r2);
    sm_reader_close(r); /* after its name was reused */
    ASSERT_OK(sm_unpublish(NULL, name));
    sm_builder_free(b);
    model_free(&m);
}

TEST(open_unknown) {
    sm_reader *r = NULL;
    ASSERT_ERR(sm_reader_open_shm(&r, NULL, test_map_name("nothing")), -ENOENT);
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), "nothing"), -ENOENT);
    ASSERT_ERR(sm_reader_open_shm(&r, "/nonexistent-dir-of-sharedmap", "x"), -ENOENT);
    ASSERT_ERR(sm_reader_open_file(&r, "/nonexistent-dir-of-sharedmap/x"), -ENOENT);
    ASSERT_ERR(sm_reader_open_file(&r, test_path("nothing.snap")), -ENOENT);
    ASSERT_ERR(sm_unpublish(NULL, test_map_name("nothing")), -ENOENT);
    ASSERT_ERR(sm_unpublish(test_dir(), "nothing"), -ENOENT);
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    ASSERT_ERR(sm_publish(b, "/nonexistent-dir-of-sharedmap", "x", 0, 0), -ENOENT);
    sm_builder_free(b);
}

TEST(names) {
    char long_name[256];
    memset(long_name, 'n', sizeof long_name);
    long_name[SM_NAME_MAX + 1] = 0; /* 201 bytes */
    /* control characters could spoof what `ls` shows: "ok\nsharedmap.fake", escapes */
    const char *bad[] = {"", "a/b", "/", "/abs", "a/", long_name, "a\nb", "\x01", "x\x1f",
                         "\x7f", "tab\there", "\x1b[31mred", "cr\r"};
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_str("v", 1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "k", 1, &v));
    sm_reader *r = NULL;
    ASSERT_ERR(sm_name_check(NULL), SM_ENAME);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_ERR(sm_name_check(bad[i]), SM_ENAME);
        ASSERT_ERR(sm_publish(b, test_dir(), bad[i], 0, 0), SM_ENAME);
        ASSERT_ERR(sm_publish(b, test_dir(), bad[i], SM_FORCE, 0), SM_ENAME);
        ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), bad[i]), SM_ENAME);
        ASSERT_ERR(sm_unpublish(test_dir(), bad[i]), SM_ENAME);
    }
    ASSERT_STR_EQ(test_listing(test_dir()), "");

    /* the longest name, and names of the kind users pick, work */
    char max_name[SM_NAME_MAX + 1];
    const char *prefix = test_map_name("max");
    memset(max_name, 'm', SM_NAME_MAX);
    memcpy(max_name, prefix, strlen(prefix));
    max_name[SM_NAME_MAX] = 0;
    const char *good[] = {max_name, "test:3325", "\xe7\xba\xa2", "with space", "..", ".hidden",
                          "a\\b", "x", " ", "~", "\x80\xff", "\xc3\x28" /* not UTF-8: names are bytes */};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ASSERT_OK(sm_name_check(good[i]));
        ASSERT_OK(sm_publish(b, test_dir(), good[i], 0, 0));
        ASSERT_OK(sm_publish(b, test_dir(), good[i], SM_FORCE, 0));
        ASSERT_OK(sm_reader_open_shm(&r, test_dir(), good[i]));
        sm_value got;
        ASSERT_OK(sm_get(r, "k", 1, &got));
        ASSERT_MEM_EQ(got.as.buf.data, got.as.buf.size, "v", 1);
        sm_reader_close(r);
        ASSERT_OK(sm_unpublish(test_dir(), good[i]));
    }
    /* the longest name in the default directory too */
    ASSERT_OK(sm_publish(b, NULL, max_name, 0, 0));
    ASSERT_OK(sm_publish(b, NULL, max_name, SM_FORCE, 0));
    ASSERT_OK(sm_unpublish(NULL, max_name));
    ASSERT_STR_EQ(test_listing(test_dir()), "");
    sm_builder_free(b);
}

/* sm_map_path: the file a publish creates and an attach by name opens, or nothing. */
TEST(map_path) {
    char buf[PATH_MAX];
    ASSERT_OK(sm_map_path(NULL, "x", buf, sizeof buf));
    ASSERT_STR_EQ(buf, "/dev/shm/sharedmap.x");
    ASSERT_OK(sm_map_path("rel/dir", "\x80\xff", buf, sizeof buf)); /* names are bytes */
    ASSERT_STR_EQ(buf, "rel/dir/sharedmap.\x80\xff");

    /* it names what sm_publish made: open it as a file, and remove it by its path */
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(7);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "k", 1, &v));
    const char *name = test_map_name("path");
    ASSERT_OK(sm_publish(b, test_dir(), name, 0, 0));
    ASSERT_OK(sm_map_path(test_dir(), name, buf, sizeof buf));
    ASSERT_STR_EQ(buf, shm_path(test_dir(), name));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_file(&r, buf));
    sm_value got;
    ASSERT_OK(sm_get(r, "k", 1, &got));
    ASSERT_EQ(got.as.i, 7);
    sm_reader_close(r);
    ASSERT_EQ(unlink(buf), 0);
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), name), -ENOENT);
    sm_builder_free(b);

    /* a name the rule refuses, whatever the room */
    const char *bad[] = {"", "a/b", "a\nb", "\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(buf, "untouched");
        ASSERT_ERR(sm_map_path(NULL, bad[i], buf, sizeof buf), SM_ENAME);
        ASSERT_STR_EQ(buf, "");
        ASSERT_ERR(sm_map_path(NULL, bad[i], NULL, 0), SM_ENAME);
    }
    ASSERT_ERR(sm_map_path(NULL, NULL, buf, sizeof buf), SM_ENAME);

    /* room for the path and its NUL exactly, and one byte less: never a cut path */
    size_t need = strlen("/dev/shm/sharedmap.x") + 1;
    ASSERT_OK(sm_map_path(NULL, "x", buf, need));
    ASSERT_STR_EQ(buf, "/dev/shm/sharedmap.x");
    ASSERT_ERR(sm_map_path(NULL, "x", buf, need - 1), -ENAMETOOLONG);
    ASSERT_STR_EQ(buf, "");
    ASSERT_ERR(sm_map_path(NULL, "x", NULL, 0), -ENAMETOOLONG);

    /* a directory too long for any path: the attach by name says so too */
    char *dir = xmalloc(PATH_MAX + 2);
    memset(dir, 'd', PATH_MAX + 1);
    dir[PATH_MAX + 1] = 0;
    ASSERT_ERR(sm_map_path(dir, "x", buf, sizeof buf), -ENAMETOOLONG);
    ASSERT_ERR(sm_reader_open_shm(&r, dir, "x"), -ENAMETOOLONG);
    free(dir);
}

/* Modes are exact, whatever the umask. */
static void check_modes(mode_t umask_value) {
    umask(umask_value);
    const char *dir = test_dir();
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "k", 1, &v));

    ASSERT_OK(sm_publish(b, dir, "default", 0, 0));
    ASSERT_EQ(file_mode(shm_path(dir, "default")), 0600);
    ASSERT_OK(sm_publish(b, dir, "group", 0, 0640));
    ASSERT_EQ(file_mode(shm_path(dir, "group")), 0640);
    ASSERT_OK(sm_publish(b, dir, "world", 0, 0644));
    ASSERT_EQ(file_mode(shm_path(dir, "world")), 0644);
    ASSERT_OK(sm_publish(b, dir, "explicit", 0, SM_DEFAULT_MODE));
    ASSERT_EQ(file_mode(shm_path(dir, "explicit")), 0600);
    /* a forced replacement takes the new mode */
    ASSERT_OK(sm_publish(b, dir, "default", SM_FORCE, 0640));
    ASSERT_EQ(file_mode(shm_path(dir, "default")), 0640);
    ASSERT_OK(sm_publish(b, dir, "group", SM_FORCE, 0));
    ASSERT_EQ(file_mode(shm_path(dir, "group")), 0600);

    ASSERT_OK(sm_save(b, test_path("default.snap"), 0, 0));
    ASSERT_EQ(file_mode(test_path("default.snap")), 0600);
    ASSERT_OK(sm_save(b, test_path("group.snap"), 0, 0640));
    ASSERT_EQ(file_mode(test_path("group.snap")), 0640);

    const char *names[] = {"default", "group", "world", "explicit"};
    for (size_t i = 0; i < 4; i++)
        ASSERT_OK(sm_unpublish(dir, names[i]));
    unlink(test_path("default.snap"));
    unlink(test_path("group.snap"));
    ASSERT_STR_EQ(test_listing(dir), "");
    sm_builder_free(b);
}

static void child_modes_077(void *arg) {
    (void)arg;
    check_modes(077);
}

static void child_modes_0(void *arg) {
    (void)arg;
    check_modes(0);
}

static void child_modes_027(void *arg) {
    (void)arg;
    check_modes(027);
}

TEST(publish_modes) {
    ASSERT_CHILD_OK(test_spawn(child_modes_077, NULL));
    ASSERT_CHILD_OK(test_spawn(child_modes_0, NULL));
    ASSERT_CHILD_OK(test_spawn(child_modes_027, NULL));
}

/* Finding 6: a mode is permission bits, 0 to 0777; setuid, setgid, sticky or any
 * higher bit is -EINVAL (fchmod took the first three and dropped the rest). */
TEST(publish_bad_modes) {
    const char *dir = test_dir();
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "k", 1, &v));
    const unsigned bad[] = {04600, 02600, 01600, 07777, 010000, 010600, 0x80000000u, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_ERR(sm_publish(b, dir, "m", 0, bad[i]), -EINVAL);
        ASSERT_ERR(sm_publish(b, dir, "m", SM_FORCE, bad[i]), -EINVAL);
        ASSERT_ERR(sm_save(b, test_path("m.snap"), 0, bad[i]), -EINVAL);
    }
    ASSERT_STR_EQ(test_listing(dir), "");
    /* nor does a bad mode replace anything */
    ASSERT_OK(sm_publish(b, dir, "m", 0, 0640));
    ASSERT_ERR(sm_publish(b, dir, "m", SM_FORCE, 04640), -EINVAL);
    ASSERT_ERR(sm_save(b, shm_path(dir, "m"), SM_FORCE, 02640), -EINVAL);
    ASSERT_EQ(file_mode(shm_path(dir, "m")), 0640);
    /* every permission bit is fine */
    ASSERT_OK(sm_publish(b, dir, "m", SM_FORCE, 0777));
    ASSERT_EQ(file_mode(shm_path(dir, "m")), 0777);
    ASSERT_OK(sm_unpublish(dir, "m"));
    sm_builder_free(b);
}

TEST(save_open_file) {
    model m1, m2;
    sm_builder *b1 = random_builder(&m1, 400, 21);
    sm_builder *b2 = random_builder(&m2, 300, 22);
    const char *path = test_path("map.snap");
    ASSERT_OK(sm_save(b1, path, 0, 0));
    ASSERT_EQ(file_mode(path), 0600);
    sm_reader *r1 = NULL, *r2 = NULL;
    ASSERT_OK(sm_reader_open_file(&r1, path));
    check_reader(r1, &m1, 1, 200);
    struct stat st;
    ASSERT_OK(stat(path, &st));
    sm_info info;
    sm_reader_info(r1, &info);
    ASSERT_EQ(info.ino, st.st_ino);
    ASSERT_EQ(info.dev, st.st_dev);
    ASSERT_EQ(info.size, st.st_size);

    /* the file holds exactly the bytes sm_builder_write makes (but the time) */
    size_t size;
    unsigned char *snap = snapshot_of(b1, &size, info.created_ns);
    size_t dsize;
    const unsigned char *data = sm_reader_data(r1, &dsize);
    ASSERT_MEM_EQ(data, dsize, snap, size);
    free(snap);

    ASSERT_ERR(sm_save(b2, path, 0, 0), -EEXIST);
    ASSERT_OK(sm_save(b2, path, SM_FORCE, 0));
    ASSERT_OK(sm_reader_open_file(&r2, path));
    check_reader(r2, &m2, 2, 200);
    check_reader(r1, &m1, 3, 50); /* the old one, still mapped */
    ASSERT_STR_EQ(test_listing(test_dir()), "map.snap");

    /* a relative path (no directory part) */
    char cwd[4096];
    ASSERT(getcwd(cwd, sizeof cwd) != NULL);
    ASSERT_OK(chdir(test_dir()));
    ASSERT_OK(sm_save(b1, "rel.snap", 0, 0));
    sm_reader *r3 = NULL;
    ASSERT_OK(sm_reader_open_file(&r3, "rel.snap"));
    ASSERT_EQ(sm_reader_count(r3), m1.n);
    sm_reader_close(r3);
    ASSERT_OK(chdir(cwd));

    /* paths that cannot be files */
    ASSERT_FAILS(sm_save(b1, "", 0, 0));
    ASSERT_FAILS(sm_save(b1, test_path("dir/"), 0, 0));
    ASSERT_ERR(sm_save(b1, "/nonexistent-dir-of-sharedmap/x.snap", 0, 0), -ENOENT);
    ASSERT_FAILS(sm_reader_open_file(&r3, ""));
    ASSERT_ERR(sm_reader_open_file(&r3, test_dir()), SM_ENOTSNAPSHOT);

    sm_reader_close(r1);
    sm_reader_close(r2);
    sm_builder_free(b1);
    sm_builder_free(b2);
    model_free(&m1);
    model_free(&m2);
}

TEST(nofollow) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(5);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_STR, "k", 1, &v));
    const char *target = test_path("target.snap");
    ASSERT_OK(sm_save(b, target, 0, 0));

    /* a symlink to a valid snapshot is refused, as a file and as a map name, with an
     * error that says why (not ELOOP's "too many levels of symbolic links") */
    const char *link = test_path("link.snap");
    ASSERT_OK(symlink(target, link));
    sm_reader *r = NULL;
    ASSERT_ERR(sm_reader_open_file(&r, link), SM_ESYMLINK);
    ASSERT_OK(symlink(target, shm_path(test_dir(), "evil")));
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), "evil"), SM_ESYMLINK);
    ASSERT_OK(symlink(test_dir(), test_path("dir.snap")));
    ASSERT_ERR(sm_reader_open_file(&r, test_path("dir.snap")), SM_ESYMLINK);
    /* a real ELOOP, in the directories of the path, stays one */
    ASSERT_OK(symlink("loop", test_path("loop")));
    ASSERT_ERR(sm_reader_open_file(&r, test_path("loop/x.snap")), -ELOOP);
    ASSERT_ERR(sm_reader_open_shm(&r, test_path("loop"), "x"), -ELOOP);
    ASSERT_STR_EQ(sm_errname(SM_ESYMLINK), "SM_ESYMLINK");

    /* saving, publishing or unpublishing onto a symlink never writes through it,
     * nor replaces or removes the link: it is refused */
    sm_builder *b2 = NULL;
    ASSERT_OK(sm_builder_new(&b2));
    sm_value v2 = sm_value_int(6);
    ASSERT_OK(sm_builder_put(b2, SM_KEYS_STR, "k", 1, &v2));
    ASSERT_ERR(sm_save(b2, link, 0, 0), -EEXIST);
    ASSERT_ERR(sm_publish(b2, test_dir(), "evil", 0, 0), -EEXIST);
    ASSERT_ERR(sm_save(b2, link, SM_FORCE, 0), SM_ESYMLINK);
    ASSERT_ERR(sm_publish(b2, test_dir(), "evil", SM_FORCE, 0), SM_ESYMLINK);
    ASSERT_ERR(sm_unpublish(test_dir(), "evil"), SM_ESYMLINK);
    struct stat st;
    ASSERT_OK(lstat(link, &st));
    ASSERT(S_ISLNK(st.st_mode));
    ASSERT_OK(lstat(shm_path(test_dir(), "evil"), &st));
    ASSERT(S_ISLNK(st.st_mode));
    ASSERT_OK(sm_reader_open_file(&r, target)); /* the target is untouched */
    sm_value got;
    ASSERT_OK(sm_get(r, "k", 1, &got));
    ASSERT_EQ(got.as.i, 5);
    ASSERT_EQ(sm_reader_superseded(r), 0);
    sm_reader_close(r);

    /* a dangling symlink under a map name: refused, never created through */
    ASSERT_OK(symlink(test_path("absent"), shm_path(test_dir(), "dangling")));
    ASSERT_ERR(sm_reader_open_shm(&r, test_dir(), "dangling"), SM_ESYMLINK);
    ASSERT_ERR(sm_publish(b2, test_dir(), "dangling", 0, 0), -EEXIST);
    ASSERT_ERR(sm_publish(b2, test_dir(), "dangling", SM_FORCE, 0), SM_ESYMLINK);
    ASSERT_ERR(sm_unpublish(test_dir(), "dangling"), SM_ESYMLINK);
    ASSERT(!exists(test_path("absent")));
    ASSERT_OK(lstat(shm_path(test_dir(), "dangling"), &st));
    ASSERT(S_ISLNK(st.st_mode));
    ASSERT(strstr(test_listing(test_dir()), ".sharedmap-tmp") == NULL);

    /* a symlink to a directory of maps is fine for the directory itself */
    char dirlink[600];
    snprintf(dirlink, sizeof dirlink, "%s/dirlink", test_dir());
    ASSERT_OK(mkdir(test_path("maps"), 0700));
    ASSERT_OK(symlink(test_path("maps"), dirlink));
    ASSERT_OK(sm_publish(b2, dirlink, "m", 0, 0));
    ASSERT_OK(sm_reader_open_shm(&r, test_path("maps"), "m"));
    sm_reader_close(r);
    sm_builder_free(b);
    sm_builder_free(b2);
}

TEST(not_regular_files) {
    const char *dir = test_dir();
    sm_reader *r = NULL;
    /* a FIFO must not hang the open */
    ASSERT_OK(mkfifo(shm_path(dir, "fifo"), 0600));
    ASSERT_ERR(sm_reader_open_shm(&r, dir, "fifo"), SM_ENOTSNAPSHOT);
    ASSERT_ERR(sm_reader_open_file(&r, shm_path(dir, "fifo")), SM_ENOTSNAPSHOT);
    ASSERT_OK(mkdir(shm_path(dir, "dir"), 0700));
    ASSERT_ERR(sm_reader_open_shm(&r, dir, "dir"), SM_ENOTSNAPSHOT);
    /* empty, short and garbage files */
    test_write_file(shm_path(dir, "empty"), "", 0);
    ASSERT_FAILS(sm_reader_open_shm(&r, dir, "empty"));
    test_write_file(shm_path(dir, "short"), "\x89SMP\r\n\x1a\n", 8);
    ASSERT_FAILS(sm_reader_open_shm(&r, dir, "short"));
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    test_write_file(shm_path(dir, "junk"), junk, sizeof junk);
    ASSERT_ERR(sm_reader_open_shm(&r, dir, "junk"), SM_EBADMAGIC);
}

/* Finding 3: a directory, FIFO (or anything but a regular file) under the target
 * name of a forced publish or save, or of an unpublish, is refused and left where
 * it is.  RENAME_EXCHANGE used to swap it away under a temporary name that gc does
 * not remove, and say 0. */
TEST(replace_only_regular_files) {
    const char *dir = test_dir();
    model m;
    sm_builder *b = versioned_builder(&m, 10, 1);
    ASSERT_OK(mkdir(shm_path(dir, "d"), 0700));
    ASSERT_OK(mkfifo(shm_path(dir, "f"), 0600));
    ASSERT_OK(mkdir(test_path("d.snap"), 0700));
    ASSERT_OK(mkfifo(test_path("f.snap"), 0600));
    const char *before = "d.snap f.snap sharedmap.d sharedmap.f";

    ASSERT_ERR(sm_publish(b, dir, "d", 0, 0), -EEXIST);
    ASSERT_ERR(sm_publish(b, dir, "d", SM_FORCE, 0), -EISDIR);
    ASSERT_ERR(sm_unpublish(dir, "d"), -EISDIR);
    ASSERT_ERR(sm_publish(b, dir, "f", 0, 0), -EEXIST);
    ASSERT_ERR(sm_publish(b, dir, "f", SM_FORCE, 0), SM_ENOTSNAPSHOT);
    ASSERT_ERR(sm_unpublish(dir, "f"), SM_ENOTSNAPSHOT);
    ASSERT_ERR(sm_save(b, test_path("d.snap"), 0, 0), -EEXIST);
    ASSERT_ERR(sm_save(b, test_path("d.snap"), SM_FORCE, 0), -EISDIR);
    ASSERT_ERR(sm_save(b, test_path("f.snap"), SM_FORCE, 0), SM_ENOTSNAPSHOT);
    /* nothing moved, nothing hidden */
    ASSERT_STR_EQ(test_listing(dir), before);
    struct stat st;
    ASSERT_OK(lstat(shm_path(dir, "d"), &st));
    ASSERT(S_ISDIR(st.st_mode));
    ASSERT_OK(lstat(test_path("f.snap"), &st));
    ASSERT(S_ISFIFO(st.st_mode));
    unsigned removed = 9;
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 0);

    /* a regular file that is no snapshot is replaced, and removed, as before */
    test_write_file(shm_path(dir, "junk"), "junk", 4);
    ASSERT_OK(sm_publish(b, dir, "junk", SM_FORCE, 0));
    ASSERT_OK(sm_unpublish(dir, "junk"));
    test_write_file(shm_path(dir, "junk"), "junk", 4);
    ASSERT_OK(sm_unpublish(dir, "junk"));
    ASSERT_STR_EQ(test_listing(dir), before);
    sm_builder_free(b);
    model_free(&m);
}

/* The name flips between a regular file and a directory (RENAME_EXCHANGE with
 * "other") while we publish and unpublish over it: whatever the timing, the
 * directory is never swapped away, or left under a temporary name. */
static void child_flip_dir(void *arg) {
    const char *dir = arg;
    char name[600], other[600];
    snprintf(name, sizeof name, "%s/sharedmap.x", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    uint64_t end = monotonic_ms() + 1000;
    while (monotonic_ms() < end)
        renameat2(AT_FDCWD, name, AT_FDCWD, other, RENAME_EXCHANGE);
}

TEST(replace_only_regular_files_race) {
    const char *dir = test_dir();
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "k", 1, &v));
    ASSERT_OK(mkdir(test_path("other"), 0700));
    test_write_file(test_path("other/marker"), "m", 1);
    ASSERT_OK(sm_publish(b, dir, "x", 0, 0));
    pid_t pid = test_spawn(child_flip_dir, (void *)dir);
    unsigned ok = 0;
    for (unsigned i = 0; waitpid(pid, NULL, WNOHANG) == 0; i++) {
        int rc = i % 4 == 3 ? sm_unpublish(dir, "x") : sm_publish(b, dir, "x", SM_FORCE, 0);
        if (rc != -EISDIR)
            ASSERT_OK(rc);
        ok += rc == 0;
    }
    ASSERT(ok > 0);
    /* the directory is under one of its two names, with what it holds */
    ASSERT(exists(test_path("other/marker")) || exists(shm_path(dir, "x/marker")));
    ASSERT(strstr(test_listing(dir), ".sharedmap-tmp") == NULL);
    unsigned removed = 9;
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 0);
    sm_builder_free(b);
}

struct list_seen {
    int n, junk_err, stop_after;
    uint64_t count[4], size[4];
    int err[4];
    const char *names[4];
};

static int list_cb(const char *name, const sm_info *info, int err, void *ctx) {
    struct list_seen *s = ctx;
    for (int i = 0; i < 4 && s->names[i]; i++) {
        if (strcmp(name, s->names[i]) == 0) {
            s->count[i] = info->count;
            s->size[i] = info->size;
            s->err[i] = err;
        }
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after ? 7 : 0;
}

TEST(list_maps) {
    const char *dir = test_dir();
    model m1, m2;
    sm_builder *b1 = versioned_builder(&m1, 3, 1);
    sm_builder *b2 = versioned_builder(&m2, 5, 1);
    ASSERT_OK(sm_publish(b1, dir, "three", 0, 0));
    ASSERT_OK(sm_publish(b2, dir, "five", 0, 0));
    test_write_file(shm_path(dir, "junk"), "junk", 4);
    test_write_file(test_path(".sharedmap-tmp.1.0000000000000000.three"), "x", 1);
    test_write_file(test_path("unrelated"), "x", 1);

    struct list_seen s;
    memset(&s, 0, sizeof s);
    s.names[0] = "three";
    s.names[1] = "five";
    s.names[2] = "junk";
    ASSERT_OK(sm_list(dir, list_cb, &s));
    ASSERT_EQ(s.n, 3); /* three, five, junk: not the temporary, not "unrelated" */
    ASSERT_EQ(s.err[0], 0);
    ASSERT_EQ(s.count[0], 3);
    ASSERT_EQ(s.err[1], 0);
    ASSERT_EQ(s.count[1], 5);
    struct stat st;
    ASSERT_OK(stat(shm_path(dir, "five"), &st));
    ASSERT_EQ(s.size[1], st.st_size);
    ASSERT_NE(s.err[2], 0);
    ASSERT_EQ(s.size[2], 4);

    /* the callback stops the listing */
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    ASSERT_EQ(sm_list(dir, list_cb, &s), 7);
    ASSERT_EQ(s.n, 1);

    /* the default directory */
    const char *name = test_map_name("listed");
    ASSERT_OK(sm_publish(b2, NULL, name, 0, 0));
    memset(&s, 0, sizeof s);
    s.names[0] = name;
    s.count[0] = 999;
    ASSERT_OK(sm_list(NULL, list_cb, &s));
    ASSERT_EQ(s.count[0], 5);
    ASSERT_OK(sm_unpublish(NULL, name));

    ASSERT_ERR(sm_list("/nonexistent-dir-of-sharedmap", list_cb, &s), -ENOENT);
    sm_builder_free(b1);
    sm_builder_free(b2);
    model_free(&m1);
    model_free(&m2);
}

struct lock_ctx {
    const char *path;
    int ready_w, go_r;
};

/* A live writer: creates a temporary, locks it, waits. */
static void child_hold_temp(void *arg) {
    const struct lock_ctx *c = arg;
    int fd = open(c->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    ASSERT_OK(flock(fd, LOCK_EX));
    char x = 'r';
    ASSERT_EQ(write(c->ready_w, &x, 1), 1);
    ASSERT_EQ(read(c->go_r, &x, 1), 1);
    close(fd);
}

/* A writer that dies holding its temporary (as a crash mid-publish leaves it). */
static void child_die_with_temp(void *arg) {
    const char *path = arg;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    ASSERT_OK(flock(fd, LOCK_EX));
    ASSERT_EQ(write(fd, "\x89SMP\r\n\x1a\n", 8), 8);
    _exit(0);
}

TEST(gc_debris) {
    const char *dir = test_dir();
    model m;
    sm_builder *b = versioned_builder(&m, 10, 1);
    ASSERT_OK(sm_publish(b, dir, "live", 0, 0));

    char stale[600], dead[600], held[600];
    snprintf(stale, sizeof stale, "%s/.sharedmap-tmp.999999.0123456789abcdef.live", dir);
    snprintf(dead, sizeof dead, "%s/.sharedmap-tmp.%ld.fedcba9876543210.live", dir, (long)getpid());
    snprintf(held, sizeof held, "%s/.sharedmap-tmp.%ld.00000000deadbeef.live", dir, (long)getpid());
    test_write_file(stale, "stale", 5);
    ASSERT_CHILD_OK(test_spawn(child_die_with_temp, dead));

    int ready[2], go[2];
    ASSERT_OK(pipe(ready));
    ASSERT_OK(pipe(go));
    struct lock_ctx c = {held, ready[1], go[0]};
    pid_t pid = test_spawn(child_hold_temp, &c);
    char x;
    ASSERT_EQ(read(ready[0], &x, 1), 1);

    unsigned removed = 12345;
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 2);
    ASSERT(!exists(stale));
    ASSERT(!exists(dead));
    ASSERT(exists(held)); /* its writer is alive */
    ASSERT(exists(shm_path(dir, "live")));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, dir, "live"));
    ASSERT_OK(sm_reader_verify(r));
    sm_reader_close(r);

    /* the writer dies: its temporary is debris now */
    ASSERT_EQ(write(go[1], &x, 1), 1);
    ASSERT_CHILD_OK(pid);
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 1);
    ASSERT_STR_EQ(test_listing(dir), "sharedmap.live");
    ASSERT_OK(sm_gc(dir, NULL));
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 0);
    ASSERT_OK(sm_gc(NULL, NULL)); /* the default directory: must leave others' live work alone */
    ASSERT_ERR(sm_gc("/nonexistent-dir-of-sharedmap", &removed), -ENOENT);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    sm_builder_free(b);
    model_free(&m);
}

/* Readers attaching in a loop while the writer replaces the map: every attach sees
 * one whole version (all values agree, the count matches), never ENOENT. */
struct race_ctx {
    const char *dir, *name;
    int rounds;
};

static void child_attach_loop(void *arg) {
    const struct race_ctx *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        sm_reader *r = NULL;
        ASSERT_OK(sm_reader_open_shm(&r, c->dir, c->name));
        uint64_t n = sm_reader_count(r);
        sm_cursor cur;
        sm_entry e;
        ASSERT_OK(sm_seek_rank(r, 0, &cur));
        ASSERT_OK(sm_cursor_get(&cur, &e));
        int64_t version = e.value.as.i;
        ASSERT_EQ(n, (uint64_t)(100 + version % 2 * 50));
        uint64_t seen = 0;
        while (sm_cursor_get(&cur, &e) == 0) {
            ASSERT_EQ(e.value.as.i, version);
            seen++;
            sm_cursor_next(&cur);
        }
        ASSERT_EQ(seen, n);
        ASSERT_OK(sm_reader_verify(r));
        sm_reader_close(r);
    }
}

TEST_TIMEOUT(publish_race_small, 120) {
    struct race_ctx c = {test_dir(), "race", 300};
    model m;
    sm_builder *b = versioned_builder(&m, 100, 0);
    ASSERT_OK(sm_publish(b, c.dir, c.name, 0, 0));
    sm_builder_free(b);
    model_free(&m);
    sm_builder *bs[2];
    model ms[2];
    bs[0] = versioned_builder(&ms[0], 100, 2);
    bs[1] = versioned_builder(&ms[1], 150, 1);
    pid_t p1 = test_spawn(child_attach_loop, &c);
    pid_t p2 = test_spawn(child_attach_loop, &c);
    for (int i = 0; i < 300; i++)
        ASSERT_OK(sm_publish(bs[i % 2], c.dir, c.name, SM_FORCE, 0));
    ASSERT_CHILD_OK(p1);
    ASSERT_CHILD_OK(p2);
    ASSERT_STR_EQ(test_listing(c.dir), "sharedmap.race");
    for (int i = 0; i < 2; i++) {
        sm_builder_free(bs[i]);
        model_free(&ms[i]);
    }
}

TEST(publish_empty) {
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    const char *name = test_map_name("empty");
    ASSERT_OK(sm_publish(b, NULL, name, 0, 0));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, NULL, name));
    model m;
    model_init(&m, SM_KEYS_STR);
    check_reader(r, &m, 1, 20);
    sm_reader_close(r);
    ASSERT_OK(sm_save(b, test_path("empty.snap"), 0, 0));
    ASSERT_OK(sm_reader_open_file(&r, test_path("empty.snap")));
    check_reader(r, &m, 2, 20);
    sm_reader_close(r);
    ASSERT_OK(sm_unpublish(NULL, name));
    sm_builder_free(b);
}

/* Review finding F1/F2: with several SM_FORCE publishers and an unpublisher racing on
 * one name, every snapshot that is no longer the published one must say superseded
 * (each publisher flags exactly the snapshot it displaced, via RENAME_EXCHANGE). */
static void child_force_publisher(void *arg) {
    const char *dir = arg;
    for (int i = 0; i < 400; i++) {
        sm_builder *b = NULL;
        ASSERT_OK(sm_builder_new(&b));
        sm_value v = sm_value_int((int64_t)getpid() * 1000000 + i);
        ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "k", 1, &v));
        ASSERT_OK(sm_publish(b, dir, "m", SM_FORCE, 0));
        sm_builder_free(b);
        if (i % 50 == 49) {
            int rc = sm_unpublish(dir, "m");
            ASSERT(rc == 0 || rc == -ENOENT);
        }
    }
}

TEST_TIMEOUT(publish_race_every_replaced_is_flagged, 120) {
    const char *dir = test_dir();
    enum { NPUB = 3, MAXR = 4000 };
    pid_t pids[NPUB];
    for (int p = 0; p < NPUB; p++)
        pids[p] = test_spawn(child_force_publisher, (void *)dir);
    sm_reader **seen = xmalloc(MAXR * sizeof *seen);
    size_t nseen = 0;
    uint64_t last_ino = 0;
    int alive = NPUB;
    while (alive > 0 && nseen < MAXR) {
        for (int p = 0; p < NPUB; p++)
            if (pids[p] && waitpid(pids[p], NULL, WNOHANG) == pids[p])
                pids[p] = 0, alive--;
        sm_reader *r = NULL;
        if (sm_reader_open_shm(&r, dir, "m") != 0)
            continue;
        sm_info in;
        sm_reader_info(r, &in);
        if (in.ino == last_ino) {
            sm_reader_close(r);
            continue;
        }
        last_ino = in.ino;
        seen[nseen++] = r;
    }
    for (int p = 0; p < NPUB; p++)
        if (pids[p])
            ASSERT_CHILD_OK(pids[p]);
    uint64_t current = 0;
    sm_reader *fin = NULL;
    if (sm_reader_open_shm(&fin, dir, "m") == 0) {
        sm_info fi;
        sm_reader_info(fin, &fi);
        current = fi.ino;
        sm_reader_close(fin);
    }
    size_t stale = 0;
    for (size_t i = 0; i < nseen; i++) {
        sm_info in;
        sm_reader_info(seen[i], &in);
        if (in.ino != current && !sm_reader_superseded(seen[i]))
            stale++;
        sm_reader_close(seen[i]);
    }
    free(seen);
    ASSERT(nseen > 1);
    ASSERT_EQ(stale, 0);
    unsigned removed = 0;
    ASSERT_OK(sm_gc(dir, &removed)); /* nothing may linger either */
    ASSERT_EQ(removed, 0);
}

/* Findings 1-2: sm_gc racing a forced publish or an unpublish.  Between the rename
 * that takes a snapshot out of the public name (RENAME_EXCHANGE, or unpublish's
 * rename) and its unlink, it sits unlocked under a temporary name; a gc that
 * unlinked it there without setting its superseded word stranded every reader of it,
 * and an unpublish whose temporary gc had unlinked said -ENOENT for a map it had
 * removed.  Real processes for a few seconds: a gc loop, one publisher (the only
 * one, so every step it takes displaces exactly the snapshot the step before put
 * there), and readers that attach and then wait for the next two steps. */
struct gc_race {
    uint64_t steps; /* publishes and unpublishes the publisher has finished */
    int done;
    uint64_t checked, stranded, false_enoent, unpublished, gc_removed;
};

enum { GC_RACE_MS = 3000 };

static void child_gc_loop(void *arg) {
    struct gc_race *s = arg;
    while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE)) {
        unsigned n = 0;
        ASSERT_OK(sm_gc(test_dir(), &n));
        __atomic_add_fetch(&s->gc_removed, n, __ATOMIC_RELAXED);
    }
}

static void child_race_publisher(void *arg) {
    struct gc_race *s = arg;
    sm_builder *b = NULL;
    ASSERT_OK(sm_builder_new(&b));
    sm_value v = sm_value_int(1);
    ASSERT_OK(sm_builder_put(b, SM_KEYS_BYTES, "k", 1, &v));
    uint64_t end = monotonic_ms() + GC_RACE_MS;
    sm_reader *last = NULL; /* attached to what the step before published */
    /* publish, replace, unpublish: both windows in turn */
    for (unsigned i = 0; monotonic_ms() < end; i++) {
        if (i % 3 == 2) {
            int rc = sm_unpublish(test_dir(), "m");
            if (rc == -ENOENT)
                __atomic_add_fetch(&s->false_enoent, 1, __ATOMIC_RELAXED);
            else
                ASSERT_OK(rc);
            __atomic_add_fetch(&s->unpublished, 1, __ATOMIC_RELAXED);
        } else {
            ASSERT_OK(sm_publish(b, test_dir(), "m", SM_FORCE, 0));
        }
        if (last) {
            __atomic_add_fetch(&s->checked, 1, __ATOMIC_RELAXED);
            if (!sm_reader_superseded(last))
                __atomic_add_fetch(&s->stranded, 1, __ATOMIC_RELAXED);
            sm_reader_close(last);
            last = NULL;
        }
        __atomic_add_fetch(&s->steps, 1, __ATOMIC_RELEASE);
        if (i % 3 != 2) /* the name holds what we just published: gc never touches it */
            ASSERT_OK(sm_reader_open_shm(&last, test_dir(), "m"));
    }
    sm_reader_close(last);
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    sm_builder_free(b);
}

static void child_race_reader(void *arg) {
    struct gc_race *s = arg;
    while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE)) {
        sm_reader *r = NULL;
        if (sm_reader_open_shm(&r, test_dir(), "m") != 0)
            continue; /* between an unpublish and the next publish */
        /* The snapshot was put under the name by step `seen + 1` at the latest (it may
         * be in progress), so step `seen + 2` displaced or removed it. */
        uint64_t seen = __atomic_load_n(&s->steps, __ATOMIC_ACQUIRE);
        while (__atomic_load_n(&s->steps, __ATOMIC_ACQUIRE) < seen + 2 &&
               !__atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
            nanosleep(&(struct timespec){0, 20000}, NULL); /* leave the cores to gc and publisher */
        if (__atomic_load_n(&s->steps, __ATOMIC_ACQUIRE) >= seen + 2) {
            __atomic_add_fetch(&s->checked, 1, __ATOMIC_RELAXED);
            if (!sm_reader_superseded(r))
                __atomic_add_fetch(&s->stranded, 1, __ATOMIC_RELAXED);
        }
        sm_reader_close(r);
    }
}

TEST_TIMEOUT(gc_race_publish_unpublish, 60) {
    struct gc_race *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(s != MAP_FAILED);
    memset(s, 0, sizeof *s);
    test_dir();
    enum { NREADERS = 2 };
    pid_t readers[NREADERS];
    pid_t gc = test_spawn(child_gc_loop, s);
    for (int i = 0; i < NREADERS; i++)
        readers[i] = test_spawn(child_race_reader, s);
    pid_t pub = test_spawn(child_race_publisher, s);
    ASSERT_CHILD_OK(pub);
    for (int i = 0; i < NREADERS; i++)
        ASSERT_CHILD_OK(readers[i]);
    ASSERT_CHILD_OK(gc);
    if (s->checked < 100 || s->stranded || s->false_enoent)
        test_fail(__FILE__, __LINE__,
                  "%" PRIu64 " steps, %" PRIu64 " attaches checked (want >= 100), %" PRIu64
                  " stranded (want 0), %" PRIu64 " of %" PRIu64
                  " unpublishes said ENOENT (want 0), gc removed %" PRIu64,
                  s->steps, s->checked, s->stranded, s->false_enoent, s->unpublished,
                  s->gc_removed);
    /* nothing is left behind but the map itself */
    ASSERT_OK(sm_gc(test_dir(), NULL));
    const char *left = test_listing(test_dir());
    ASSERT(strcmp(left, "") == 0 || strcmp(left, "sharedmap.m") == 0);
    munmap(s, sizeof *s);
}

/* A publisher killed between its RENAME_EXCHANGE and the retiring of what it
 * displaced, or an unpublisher killed after its rename, leaves a complete snapshot
 * unlocked under a temporary name: gc marks it before it removes it. */
TEST(gc_marks_what_a_killed_publisher_displaced) {
    const char *dir = test_dir();
    model m1, m2;
    sm_builder *b1 = versioned_builder(&m1, 20, 1);
    sm_builder *b2 = versioned_builder(&m2, 30, 2);
    ASSERT_OK(sm_publish(b1, dir, "m", 0, 0));
    sm_reader *r1 = NULL, *r2 = NULL;
    ASSERT_OK(sm_reader_open_shm(&r1, dir, "m"));
    /* steps 1-4a and the exchange of a publish, and then nothing */
    const char *tmp = test_path(".sharedmap-tmp.1.00000000000000ff.m");
    ASSERT_OK(sm_save(b2, tmp, 0, 0));
    ASSERT_OK(renameat2(AT_FDCWD, tmp, AT_FDCWD, shm_path(dir, "m"), RENAME_EXCHANGE));
    ASSERT_EQ(sm_reader_superseded(r1), 0);
    unsigned removed = 0;
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 1);
    ASSERT_EQ(sm_reader_superseded(r1), 1);
    check_reader(r1, &m1, 1, 20); /* still readable */
    ASSERT_STR_EQ(test_listing(dir), "sharedmap.m");

    /* an unpublish's rename, and then nothing */
    ASSERT_OK(sm_reader_open_shm(&r2, dir, "m"));
    check_reader(r2, &m2, 2, 20);
    ASSERT_OK(rename(shm_path(dir, "m"), tmp));
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 1);
    ASSERT_EQ(sm_reader_superseded(r2), 1);
    ASSERT_STR_EQ(test_listing(dir), "");
    sm_reader_close(r1);
    sm_reader_close(r2);
    sm_builder_free(b1);
    sm_builder_free(b2);
    model_free(&m1);
    model_free(&m2);
}

/* As another user: the directory of the test is root's. */
static void become_nobody(void) {
    struct passwd *pw = getpwnam("nobody");
    ASSERT(pw != NULL);
    ASSERT_OK(setgid(pw->pw_gid));
    ASSERT_OK(setuid(pw->pw_uid));
}

static void child_gc_as_nobody(void *arg) {
    const char *dir = arg;
    become_nobody();
    unsigned removed = 99;
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 0);
}

/* A map published read-only (0444) is still marked by its owner, when replaced, when
 * removed, and when a killed publisher left it to gc. */
static void child_readonly_maps(void *arg) {
    const char *dir = arg;
    become_nobody();
    model m;
    sm_builder *b = versioned_builder(&m, 10, 1);
    sm_reader *r = NULL;
    ASSERT_OK(sm_publish(b, dir, "ro", 0, 0444));
    ASSERT_OK(sm_reader_open_shm(&r, dir, "ro"));
    ASSERT_OK(sm_publish(b, dir, "ro", SM_FORCE, 0444));
    ASSERT_EQ(sm_reader_superseded(r), 1);
    sm_reader_close(r);
    ASSERT_OK(sm_reader_open_shm(&r, dir, "ro"));
    ASSERT_OK(sm_unpublish(dir, "ro"));
    ASSERT_EQ(sm_reader_superseded(r), 1);
    sm_reader_close(r);

    ASSERT_OK(sm_publish(b, dir, "ro", 0, 0444));
    ASSERT_OK(sm_reader_open_shm(&r, dir, "ro"));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/.sharedmap-tmp.1.00000000000000ee.ro", dir);
    ASSERT_OK(rename(shm_path(dir, "ro"), tmp));
    unsigned removed = 0;
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 1);
    ASSERT_EQ(sm_reader_superseded(r), 1);
    sm_reader_close(r);

    /* a live writer's read-only temporary: gc leaves it, and its mode */
    snprintf(tmp, sizeof tmp, "%s/.sharedmap-tmp.1.00000000000000dd.ro", dir);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    ASSERT(fd >= 0);
    ASSERT_OK(fchmod(fd, 0444));
    ASSERT_OK(flock(fd, LOCK_EX));
    ASSERT_OK(sm_gc(dir, &removed));
    ASSERT_EQ(removed, 0);
    ASSERT_EQ(file_mode(tmp), 0444);
    ASSERT_OK(unlink(tmp));
    close(fd);
    sm_builder_free(b);
    model_free(&m);
}

TEST(gc_and_snapshots_it_may_not_write) {
    if (geteuid() != 0) {
        printf("    skipped: needs root, to act as nobody\n");
        return;
    }
    /* a directory anyone may write, without the sticky bit: nobody may unlink root's
     * files in it, but cannot write them */
    ASSERT_OK(chmod(test_dir(), 0711));
    const char *shared = test_path("shared");
    ASSERT_OK(mkdir(shared, 0777));
    ASSERT_OK(chmod(shared, 0777));
    model m;
    sm_builder *b = versioned_builder(&m, 10, 1);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/.sharedmap-tmp.1.00000000000000aa.m", shared);
    ASSERT_OK(sm_save(b, tmp, 0, 0644));
    /* gc cannot mark it, so it leaves it: unlinking it unmarked would strand its readers */
    ASSERT_CHILD_OK(test_spawn(child_gc_as_nobody, (void *)shared));
    ASSERT(exists(tmp));
    /* root's gc can */
    unsigned removed = 0;
    ASSERT_OK(sm_gc(shared, &removed));
    ASSERT_EQ(removed, 1);

    ASSERT_CHILD_OK(test_spawn(child_readonly_maps, (void *)shared));
    ASSERT_STR_EQ(test_listing(shared), "");
    sm_builder_free(b);
    model_free(&m);
}
