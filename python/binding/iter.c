/* iter.c: the two iterator types, sharedmap_iterator over a snapshot and
 * rbtree_iterator over a builder, and what they hand out: keys, values and items
 * made from recycled objects where nothing else holds them. */
#include "convert.h"

/* ------------------------------------------------------------ what iterators hand out
 *
 * From recycled objects where possible.  A loop such as `for k, v in m.items()` drops each item before it asks for the
 * next one.  dict's items iterator refills its result tuple when nobody else holds
 * it; these iterators do that too, and they also refill the strs and bytes they
 * made before.  A str that only the iterator still references (reference count 1,
 * hash never computed, not interned: the conditions under which CPython itself
 * lets PyUnicode_Fill or PyUnicode_WriteChar modify a str) receives the
 * characters of the next key or value of the same length, instead of being freed
 * while a new one is allocated.  A bytes object that only the iterator references
 * receives the next bytes of the same length and forgets its cached hash, as
 * nobody else can have read it (_PyBytes_Resize, too, changes a bytes object that
 * nobody else holds).  What the caller keeps has a second reference and is never
 * touched.  Only compact ASCII strs and bytes of 2 to STR_ASCII_FAST_MAX bytes
 * made here are recycled; they are kept by length, two per length class, because
 * the loop variables still hold the previous item while the next one is made.
 * Free-threaded builds recycle nothing (another thread could take a reference
 * between the check and the write); bytes are recycled up to Python 3.14, as the
 * field of their cached hash is deprecated (and may go; then so may the cache). */
#define RECYCLE_CLASSES (STR_ASCII_FAST_MAX + 1) /* one per length */
#define RECYCLE_WAYS 2
#if !defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030F0000
#define RECYCLE_BYTES 1
#else
#define RECYCLE_BYTES 0
#endif

typedef PyObject *recycle_set[RECYCLE_WAYS];
/* The groups of length classes: a key never evicts a value, a str never a bytes. */
enum {
    RECYCLE_KEY_STRS,
    RECYCLE_KEY_BYTES,
    RECYCLE_VALUE_STRS,
    RECYCLE_VALUE_BYTES,
    RECYCLE_GROUPS
};

typedef struct {
    PyObject *item;     /* the last items tuple */
    recycle_set *sets;  /* RECYCLE_GROUPS * RECYCLE_CLASSES, allocated when first needed */
} iter_recycler;

static void recycler_init(iter_recycler *rc) {
    rc->item = NULL;
    rc->sets = NULL;
}

static void recycler_clear(iter_recycler *rc) {
    Py_CLEAR(rc->item);
    if (rc->sets != NULL) {
        for (int c = 0; c < RECYCLE_GROUPS * RECYCLE_CLASSES; c++)
            for (int w = 0; w < RECYCLE_WAYS; w++)
                Py_CLEAR(rc->sets[c][w]);
        PyMem_Free(rc->sets);
        rc->sets = NULL;
    }
}

#ifndef Py_GIL_DISABLED
/* The set of objects of group g and length n (2 <= n <= STR_ASCII_FAST_MAX), or
 * NULL if there is no memory for the sets: recycling is only an optimisation. */
static inline PyObject **recycle_set_of(iter_recycler *rc, int g, size_t n) {
    if (rc->sets == NULL) {
        rc->sets = PyMem_Calloc(RECYCLE_GROUPS * RECYCLE_CLASSES, sizeof *rc->sets);
        if (rc->sets == NULL)
            return NULL;
    }
    return rc->sets[g * RECYCLE_CLASSES + (int)n];
}

/* Keep s, just made, in set (of its group and length); the least recently made goes. */
static inline void recycle_keep(PyObject **set, PyObject *s) {
    Py_XDECREF(set[RECYCLE_WAYS - 1]);
    memmove(set + 1, set, (RECYCLE_WAYS - 1) * sizeof *set);
    set[0] = Py_NewRef(s);
}

static inline int str_recyclable(PyObject *s) {
    return Py_REFCNT(s) == 1 && ((PyASCIIObject *)s)->hash == -1 && !PyUnicode_CHECK_INTERNED(s)
#if PY_VERSION_HEX < 0x030C0000
           && ((PyASCIIObject *)s)->wstr == NULL /* no cached wchar_t copy to go stale */
#endif
        ;
}
#endif

/* A str of the n validated UTF-8 bytes at data; g is RECYCLE_KEY_STRS or
 * RECYCLE_VALUE_STRS. */
static inline PyObject *str_recycled(iter_recycler *rc, int g, const void *data, size_t n) {
#ifndef Py_GIL_DISABLED
    PyObject **set, *s;
    if (n >= 2 && n <= STR_ASCII_FAST_MAX && (set = recycle_set_of(rc, g, n)) != NULL) {
        for (int w = 0; w < RECYCLE_WAYS; w++) {
            s = set[w]; /* of length n, as every str in this set */
            if (s != NULL && str_recyclable(s)) {
                if (ascii_scan(PyUnicode_DATA(s), data, n)) /* copies as it checks */
                    return Py_NewRef(s);
                /* Not ASCII after all: s, which nobody else sees, now holds bytes
                 * no ASCII str may hold, so it goes. */
                Py_CLEAR(set[w]);
                return PyUnicode_DecodeUTF8((const char *)data, (Py_ssize_t)n, NULL);
            }
        }
        if (!ascii_scan(NULL, data, n))
            return PyUnicode_DecodeUTF8((const char *)data, (Py_ssize_t)n, NULL);
        s = str_ascii_new(data, n);
        if (s != NULL)
            recycle_keep(set, s);
        return s;
    }
#else
    (void)rc;
    (void)g;
#endif
    return str_from_utf8(data, n);
}

/* A bytes object of the n bytes at data; g is RECYCLE_KEY_BYTES or
 * RECYCLE_VALUE_BYTES. */
static inline PyObject *bytes_recycled(iter_recycler *rc, int g, const void *data, size_t n) {
#if RECYCLE_BYTES
    PyObject **set, *b;
    if (n >= 2 && n <= STR_ASCII_FAST_MAX && (set = recycle_set_of(rc, g, n)) != NULL) {
        for (int w = 0; w < RECYCLE_WAYS; w++) {
            b = set[w]; /* of size n, as every bytes in this set */
            if (b != NULL && Py_REFCNT(b) == 1) {
                (void)ascii_scan((unsigned char *)PyBytes_AS_STRING(b), data, n); /* copies */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* from 3.11 on */
                ((PyBytesObject *)b)->ob_shash = -1; /* its hash is computed anew */
#pragma GCC diagnostic pop
                return Py_NewRef(b);
            }
        }
        b = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)n);
        if (b != NULL)
            recycle_keep(set, b);
        return b;
    }
#else
    (void)rc;
    (void)g;
#endif
    return PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)n);
}

static PyObject *key_recycled(iter_recycler *rc, sm_key_kind kind, const sm_buf *key) {
    if (kind == SM_KEYS_STR)
        return str_recycled(rc, RECYCLE_KEY_STRS, key->data, key->size);
    if (kind == SM_KEYS_INT)
        return key_to_py(kind, key);
    return bytes_recycled(rc, RECYCLE_KEY_BYTES, key->data, key->size);
}

static PyObject *value_recycled(iter_recycler *rc, const sm_value *v) {
    if (v->type == SM_STR)
        return str_recycled(rc, RECYCLE_VALUE_STRS, v->as.buf.data, v->as.buf.size);
    if (v->type == SM_BYTES)
        return bytes_recycled(rc, RECYCLE_VALUE_BYTES, v->as.buf.data, v->as.buf.size);
    return value_to_py(v);
}

/* The items tuple is reused where nothing else holds it, except on free-threaded
 * builds (as the strs) and from 3.14 on, where a tuple caches its hash. */
#if !defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
#define RECYCLE_ITEMS 1
#else
#define RECYCLE_ITEMS 0
#endif

static PyObject *item_recycled(iter_recycler *rc, sm_key_kind kind, const sm_entry *e) {
    PyObject *k, *v, *t = NULL;
#if RECYCLE_ITEMS
    if (rc->item != NULL && Py_REFCNT(rc->item) == 1) {
        /* Nobody else can see this tuple (see below), so it may be emptied, as
         * PyTuple_New returns one: the previous key and value go first, so that
         * they can be recycled.  Releasing them runs no code. */
        t = rc->item;
        for (Py_ssize_t i = 0; i < 2; i++) {
            PyObject *old = PyTuple_GET_ITEM(t, i);
            PyTuple_SET_ITEM(t, i, NULL);
            Py_XDECREF(old);
        }
    }
#endif
    /* The key and value are made before PyTuple_New, which can start a garbage
     * collection, whose finalizers and gc.callbacks may change the rbtree that e
     * points into, or call next() on this iterator and refill the batch that e is
     * in.  Making them allocates nothing the collector counts. */
    k = key_recycled(rc, kind, &e->key);
    if (k == NULL)
        return NULL;
    v = value_recycled(rc, &e->value);
    if (v == NULL) {
        Py_DECREF(k);
        return NULL;
    }
    if (t == NULL) {
        t = PyTuple_New(2);
        if (t == NULL) {
            Py_DECREF(k);
            Py_DECREF(v);
            return NULL;
        }
        /* Its items are always str, bytes, int, float, bool or None, which can be
         * in no reference cycle: the collector never needs to see it (CPython
         * untracks such tuples itself when it meets them). */
        PyObject_GC_UnTrack(t);
#if RECYCLE_ITEMS
        Py_XSETREF(rc->item, Py_NewRef(t));
#endif
    } else {
        Py_INCREF(t);
    }
    PyTuple_SET_ITEM(t, 0, k);
    PyTuple_SET_ITEM(t, 1, v);
    return t;
}

/* What an iterator in mode returns for entry e. */
static PyObject *iter_output(iter_recycler *rc, int mode, sm_key_kind kind, const sm_entry *e) {
    switch (mode) {
    case ITER_KEYS:
        return key_recycled(rc, kind, &e->key);
    case ITER_VALUES:
        return value_recycled(rc, &e->value);
    default:
        return item_recycled(rc, kind, e);
    }
}

/* ------------------------------------------------------------ sharedmap_iterator */

/* Walks the ranks [begin, end) of one snapshot, decoding entries in batches with
 * sm_cursor_read_many.  Forward: one sm_seek_rank to start, then batches in order.
 * Backward: records have no back links (sm_cursor_prev re-seeks from the block's
 * sample on every step), so each batch is the ITER_BATCH ranks below the last
 * one, sought once, read forward and handed out from the top.  Batches start
 * small and double, so that next(iter(m)) decodes one entry, not ITER_BATCH. */
#define ITER_BATCH 32

typedef struct {
    PyObject_HEAD
    SnapshotObject *snap;
    sm_cursor cur;      /* forward: where the next batch starts */
    uint64_t remaining; /* entries still to return, decoded or not */
    uint64_t below;     /* backward: the ranks still to decode are [.., below) */
    sm_entry *batch;    /* decoded entries still to return: [lo, hi) */
    int lo, hi;
    int batch_size; /* of the next batch */
    int mode;
    int reverse;
    iter_recycler rc;
} SnapIterObject;

PyObject *snapiter_new(module_state *st, SnapshotObject *s, uint64_t begin, uint64_t end, int mode,
                       int reverse) {
    SnapIterObject *it = PyObject_GC_New(SnapIterObject, st->snapiter_type);
    if (it == NULL)
        return NULL;
    it->snap = (SnapshotObject *)Py_NewRef(s);
    it->mode = mode;
    it->reverse = reverse;
    recycler_init(&it->rc);
    it->batch = NULL;
    it->lo = it->hi = 0;
    it->batch_size = 1;
    it->remaining = begin < end ? end - begin : 0;
    it->below = end;
    memset(&it->cur, 0, sizeof it->cur);
    if (it->remaining > 0 && !reverse) {
        int rc = sm_seek_rank(s->r, begin, &it->cur);
        if (rc != 0) {
            Py_DECREF(it);
            return set_error(rc);
        }
    }
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static int snapiter_traverse(SnapIterObject *it, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(it));
    /* Not rc: it holds only str, bytes, int, float, bool and None, and a tuple of them. */
    Py_VISIT(it->snap);
    return 0;
}

static void snapiter_dealloc(SnapIterObject *it) {
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->snap);
    recycler_clear(&it->rc);
    PyMem_Free(it->batch);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

/* Decode the next batch (there are entries remaining and none decoded).  The
 * entries handed out before a damaged record are the same whatever the batch
 * size: forward, a batch that stops short of one is handed out and the next fill
 * reports the error; backward, the entries above it come first, so a batch that
 * cannot be read whole is retried one rank at a time, and the error comes with
 * the first rank that cannot be read.  After an error the iterator is exhausted. */
static int snapiter_fill(SnapIterObject *it) {
    size_t k = it->remaining < (uint64_t)it->batch_size ? (size_t)it->remaining
                                                         : (size_t)it->batch_size;
    size_t got = 0;
    int rc;
    if (it->batch == NULL) {
        it->batch = PyMem_New(sm_entry, ITER_BATCH);
        if (it->batch == NULL) {
            PyErr_NoMemory(); /* nothing lost: the next call tries again */
            return -1;
        }
    }
    if (it->reverse) {
        for (;;) {
            sm_cursor c;
            rc = sm_seek_rank(it->snap->r, it->below - k, &c);
            if (rc == 0)
                rc = sm_cursor_read_many(&c, it->batch, k, &got);
            if (rc == 0 && got < k)
                rc = SM_ECORRUPT; /* stopped before a record it cannot read */
            if (rc == 0 || k == 1)
                break;
            k = 1;
            it->batch_size = 1;
        }
        if (rc == 0)
            it->below -= k;
    } else {
        rc = sm_cursor_read_many(&it->cur, it->batch, k, &got); /* 0: got >= 1 */
    }
    if (rc != 0) {
        /* A record that cannot be read, or fewer than the header promised: the
         * snapshot is damaged. */
        it->remaining = 0;
        set_error(rc != 0 && rc != SM_NOTFOUND ? rc : SM_ECORRUPT);
        return -1;
    }
    it->lo = 0;
    it->hi = (int)got;
    if (it->batch_size < ITER_BATCH)
        it->batch_size *= 2;
    return 0;
}

static PyObject *snapiter_next(SnapIterObject *it) {
    const sm_entry *e;
    if (it->remaining == 0)
        return NULL;
    if (it->lo == it->hi && snapiter_fill(it) < 0)
        return NULL;
    e = it->reverse ? &it->batch[--it->hi] : &it->batch[it->lo++];
    it->remaining--;
    /* e is read before anything that can run Python code (a collection started by
     * PyTuple_New), which could call next() here again and refill the batch. */
    return iter_output(&it->rc, it->mode, it->snap->kind, e);
}

static PyObject *snapiter_length_hint(SnapIterObject *it, PyObject *unused) {
    (void)unused;
    return PyLong_FromUnsignedLongLong((unsigned long long)it->remaining);
}

static PyMethodDef snapiter_methods[] = {
    {"__length_hint__", (PyCFunction)snapiter_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot snapiter_slots[] = {
    {Py_tp_dealloc, (void *)snapiter_dealloc},
    {Py_tp_traverse, (void *)snapiter_traverse},
    {Py_tp_iter, (void *)PyObject_SelfIter},
    {Py_tp_iternext, (void *)snapiter_next},
    {Py_tp_methods, snapiter_methods},
    {0, NULL},
};

PyType_Spec snapiter_spec = {
    .name = "sharedmap._sharedmap.sharedmap_iterator",
    .basicsize = sizeof(SnapIterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = snapiter_slots,
};

/* ------------------------------------------------------------ rbtree_iterator
 *
 * Ranks 0..count-1 through sm_builder_at (O(1) each once sorted); any insertion or
 * deletion under it is an error, as with dict. */

typedef struct {
    PyObject_HEAD
    BuilderObject *owner; /* NULL once exhausted */
    size_t pos, total;
    uint64_t version, epoch;
    int mode;
    int reverse;
    iter_recycler rc;
} BuildIterObject;

PyObject *builditer_new(module_state *st, BuilderObject *b, int mode, int reverse) {
    BuildIterObject *it;
    if (builder_check(b) < 0)
        return NULL;
    it = PyObject_GC_New(BuildIterObject, st->builditer_type);
    if (it == NULL)
        return NULL;
    it->owner = (BuilderObject *)Py_NewRef(b);
    it->pos = 0;
    it->total = sm_builder_count(b->b);
    it->version = sm_builder_version(b->b);
    it->epoch = b->epoch;
    it->mode = mode;
    it->reverse = reverse;
    recycler_init(&it->rc);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static int builditer_traverse(BuildIterObject *it, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(it));
    /* Not rc: it holds only str, bytes, int, float, bool and None, and a tuple of them. */
    Py_VISIT(it->owner);
    return 0;
}

static int builditer_clear(BuildIterObject *it) {
    Py_CLEAR(it->owner);
    recycler_clear(&it->rc);
    return 0;
}

static void builditer_dealloc(BuildIterObject *it) {
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    builditer_clear(it);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyObject *builditer_next(BuildIterObject *it) {
    BuilderObject *b = it->owner;
    sm_entry e;
    size_t rank;
    int rc;
    if (b == NULL)
        return NULL;
    if (builder_check(b) < 0)
        return NULL;
    if (sm_builder_version(b->b) != it->version || b->epoch != it->epoch) {
        Py_CLEAR(it->owner);
        PyErr_SetString(PyExc_RuntimeError, "rbtree changed size during iteration");
        return NULL;
    }
    if (it->pos >= it->total) {
        Py_CLEAR(it->owner);
        return NULL;
    }
    rank = it->reverse ? it->total - 1 - it->pos : it->pos;
    rc = sm_builder_at(b->b, rank, &e);
    if (rc != 0)
        return set_error(rc);
    it->pos++;
    return iter_output(&it->rc, it->mode, sm_builder_key_kind(b->b), &e);
}

static PyObject *builditer_length_hint(BuildIterObject *it, PyObject *unused) {
    (void)unused;
    return PyLong_FromSize_t(it->owner && it->pos < it->total ? it->total - it->pos : 0);
}

static PyMethodDef builditer_methods[] = {
    {"__length_hint__", (PyCFunction)builditer_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot builditer_slots[] = {
    {Py_tp_dealloc, (void *)builditer_dealloc},
    {Py_tp_traverse, (void *)builditer_traverse},
    {Py_tp_clear, (void *)builditer_clear},
    {Py_tp_iter, (void *)PyObject_SelfIter},
    {Py_tp_iternext, (void *)builditer_next},
    {Py_tp_methods, builditer_methods},
    {0, NULL},
};

PyType_Spec builditer_spec = {
    .name = "sharedmap._sharedmap.rbtree_iterator",
    .basicsize = sizeof(BuildIterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = builditer_slots,
};
