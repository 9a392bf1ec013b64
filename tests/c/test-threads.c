/* test-threads.c: one reader shared by several threads, each with its own cursors,
 * no locks (the header's promise).  ASan watches; a data race in the reader would
 * show as wrong answers here (TSan is not part of this build). */
#include "test.h"

#include <pthread.h>
#include <stdlib.h>

struct thread_ctx {
    const sm_reader *r;
    const model *m;
    uint64_t seed;
    int failures;
};

static void *reader_thread(void *arg) {
    struct thread_ctx *c = arg;
    rng g = {c->seed};
    for (int round = 0; round < 20000; round++) {
        size_t i = (size_t)rng_below(&g, c->m->n);
        const model_entry *e = &c->m->e[i];
        sm_value v;
        if (sm_get(c->r, e->key, e->klen, &v) != 0 || !value_eq(&v, &e->val))
            c->failures++;
        sm_cursor cur;
        sm_entry got;
        if (sm_seek_key(c->r, e->key, e->klen, SM_GE, &cur) != 0 || cur.rank != i ||
            sm_cursor_get(&cur, &got) != 0 || !value_eq(&got.value, &e->val))
            c->failures++;
        if (i + 1 < c->m->n && (sm_cursor_next(&cur) != 0 || cur.rank != i + 1))
            c->failures++;
    }
    return NULL;
}

TEST(threads_share_reader) {
    model m;
    model_random(&m, SM_KEYS_STR, 5000, 31);
    sm_builder *b = model_builder(&m);
    const char *name = test_map_name("threads");
    ASSERT_OK(sm_publish(b, NULL, name, 0, 0));
    sm_reader *r = NULL;
    ASSERT_OK(sm_reader_open_shm(&r, NULL, name));
    pthread_t t[4];
    struct thread_ctx c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (struct thread_ctx){r, &m, (uint64_t)i + 1, 0};
        ASSERT_OK(pthread_create(&t[i], NULL, reader_thread, &c[i]));
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(pthread_join(t[i], NULL));
        ASSERT_EQ(c[i].failures, 0);
    }
    sm_reader_close(r);
    ASSERT_OK(sm_unpublish(NULL, name));
    sm_builder_free(b);
    model_free(&m);
}
