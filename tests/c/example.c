/* example.c: the README's C example.  Publishes a map, attaches to it by name (as any
 * other process would), looks keys up and walks it in order.
 *
 *   cc -o example example.c $(pkg-config --cflags --libs sharedmap)
 *   ./example [NAME] */
#include <sharedmap.h>

#include <stdio.h>
#include <string.h>

static int check(int rc, const char *what) {
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", what, sm_strerror(rc));
    return rc;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "example";
    const char *pairs[][2] = {{"aaa", "323"}, {"zb", "1233"}, {"tes", "32z"}, {"红", "32是"}};

    /* 1. build: a private, writable map */
    sm_builder *b;
    if (check(sm_builder_new(&b), "sm_builder_new"))
        return 1;
    for (size_t i = 0; i < 4; i++) {
        sm_value v = sm_value_str(pairs[i][1], strlen(pairs[i][1]));
        if (check(sm_builder_put(b, SM_KEYS_STR, pairs[i][0], strlen(pairs[i][0]), &v), "sm_builder_put"))
            return 1;
    }
    sm_value answer = sm_value_int(42);
    sm_builder_put(b, SM_KEYS_STR, "answer", 6, &answer);

    /* 2. publish it under a name (in /dev/shm); SM_FORCE replaces an older version */
    int rc = sm_publish(b, NULL, name, SM_FORCE, 0);
    sm_builder_free(b);
    if (check(rc, "sm_publish"))
        return 1;

    /* 3. attach (any process can do this) and read */
    sm_reader *r;
    if (check(sm_reader_open_shm(&r, NULL, name), "sm_reader_open_shm"))
        return 1;
    sm_value v;
    if (sm_get(r, "红", strlen("红"), &v) == 0 && v.type == SM_STR)
        printf("红 -> %.*s\n", (int)v.as.buf.size, (const char *)v.as.buf.data);
    if (sm_get(r, "answer", 6, &v) == 0 && v.type == SM_INT)
        printf("answer -> %lld\n", (long long)v.as.i);
    if (sm_get(r, "missing", 7, &v) == SM_NOTFOUND)
        printf("missing -> not found\n");

    /* 4. walk the entries in key order */
    sm_cursor c;
    sm_entry e;
    for (rc = sm_seek_rank(r, 0, &c); rc == 0 && sm_cursor_get(&c, &e) == 0; rc = sm_cursor_next(&c))
        printf("  %.*s\n", (int)e.key.size, (const char *)e.key.data);

    /* 5. let go; unpublish (readers still attached would keep working) */
    sm_reader_close(r);
    return check(sm_unpublish(NULL, name), "sm_unpublish") ? 1 : 0;
}
