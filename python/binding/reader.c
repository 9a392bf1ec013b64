/* reader.c: the sharedmap type, a read-only Mapping over one snapshot at a time:
 * point lookups, iteration and views, ordered queries (sortedcontainers.SortedDict
 * conventions), zero-copy buffers, refresh() to a newer version, info and verify.
 * Opening by path or from bytes (open(), loads()) is in module.c. */
#include "convert.h"

#include <limits.h>
#include <time.h>

/* Strict or soft point lookup in a snapshot; *out points into it. */
static inline lookup_result snap_lookup(SnapshotObject *s, PyObject *key, int strict,
                                        sm_value *out) {
    key_ref k;
    int rc;
    switch (key_fit_map(key, s->kind, strict, &k)) {
    case KEY_ERROR:
        return LOOKUP_ERROR;
    case KEY_CANNOT_BE_IN:
        return LOOKUP_MISSING;
    case KEY_USABLE:
        break;
    }
    rc = sm_get(s->r, k.data, (size_t)k.size, out);
    if (rc == 0)
        return LOOKUP_FOUND;
    if (rc == SM_NOTFOUND)
        return LOOKUP_MISSING;
    set_error(rc);
    return LOOKUP_ERROR;
}

/* ---- what views and == need of a snapshot */

static Py_ssize_t snapshot_len(PyObject *owner) {
    return (Py_ssize_t)((SnapshotObject *)owner)->count;
}

static PyObject *snapshot_iter(module_state *st, PyObject *owner, int mode, int reverse) {
    SnapshotObject *s = (SnapshotObject *)owner;
    return snapiter_new(st, s, 0, s->count, mode, reverse);
}

static lookup_result snapshot_lookup(PyObject *owner, PyObject *key, int strict, sm_value *out) {
    return snap_lookup((SnapshotObject *)owner, key, strict, out);
}

const view_ops snapshot_view_ops = {snapshot_len, snapshot_iter, snapshot_lookup};

/* ---- the reader */

/* The snapshot the reader shows now, as a new reference (NULL and ValueError once
 * closed).  Every method that can run Python code while it uses the snapshot (an
 * __index__, a repr, an allocation that starts a collection whose finalizers may
 * close() or refresh() this reader) holds it this way.  Only get, [], in and len
 * borrow self->snap: between reading it and the last use of what it points to
 * they run no Python code and allocate nothing the collector counts. */
SnapshotObject *reader_hold(ReaderObject *self) {
    if (self->snap == NULL) {
        closed_error();
        return NULL;
    }
    return (SnapshotObject *)Py_NewRef(self->snap);
}

ReaderObject *reader_alloc(PyTypeObject *type, module_state *st, sm_reader *r, Py_buffer *source) {
    SnapshotObject *s = snapshot_new(st, r, source);
    ReaderObject *self;
    if (s == NULL)
        return NULL;
    self = (ReaderObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    self->snap = s;
    return self;
}

static PyObject *reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name", NULL};
    PyObject *name_obj, *mod, *fsname, *name = NULL;
    module_state *st;
    sm_reader *r;
    ReaderObject *self = NULL;
    int rc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:sharedmap", kwlist, &name_obj))
        return NULL;
    if ((fsname = name_to_bytes(name_obj)) == NULL)
        return NULL;
    name = Py_NewRef(name_obj);
    if ((mod = module_of_type(type)) == NULL)
        goto done;
    st = module_get_state(mod);
    rc = sm_reader_open_shm(&r, NULL, PyBytes_AS_STRING(fsname));
    if (rc != 0) {
        raise_code(rc, name_obj, NULL);
        goto done;
    }
    self = reader_alloc(type, st, r, NULL);
    if (self == NULL)
        goto done;
    self->name = Py_NewRef(name);
    self->fsname = Py_NewRef(fsname);
done:
    Py_XDECREF(name);
    Py_DECREF(fsname);
    return (PyObject *)self;
}

static int reader_traverse(ReaderObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->snap);
    Py_VISIT(self->name);
    Py_VISIT(self->fsname);
    Py_VISIT(self->path);
    Py_VISIT(self->fspath);
    return 0;
}

static int reader_clear(ReaderObject *self) {
    Py_CLEAR(self->snap);
    Py_CLEAR(self->name);
    Py_CLEAR(self->fsname);
    Py_CLEAR(self->path);
    Py_CLEAR(self->fspath);
    return 0;
}

static void reader_dealloc(ReaderObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    reader_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- point lookups */

PyDoc_STRVAR(reader_get_doc, "get($self, key, default=None, /)\n--\n\n"
                             "Return the value for key if key is in the map, else default.");

static PyObject *reader_get(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    SnapshotObject *s = self->snap;
    sm_value v;
    if (nargs != 1 && nargs != 2)
        return nargs_error("get", nargs, 1, 2);
    if (s == NULL)
        return closed_error();
    switch (snap_lookup(s, args[0], 1, &v)) {
    case LOOKUP_FOUND:
        return value_to_py(&v);
    case LOOKUP_MISSING:
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    default:
        return NULL;
    }
}

static PyObject *reader_subscript(ReaderObject *self, PyObject *key) {
    SnapshotObject *s = self->snap;
    sm_value v;
    if (s == NULL)
        return closed_error();
    switch (snap_lookup(s, key, 1, &v)) {
    case LOOKUP_FOUND:
        return value_to_py(&v);
    case LOOKUP_MISSING:
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    default:
        return NULL;
    }
}

static int reader_contains(ReaderObject *self, PyObject *key) {
    SnapshotObject *s = self->snap;
    lookup_result r;
    if (s == NULL) {
        closed_error();
        return -1;
    }
    r = snap_lookup(s, key, 1, NULL);
    return r == LOOKUP_ERROR ? -1 : r == LOOKUP_FOUND;
}

static int reader_ass_subscript(ReaderObject *self, PyObject *key, PyObject *value) {
    (void)self;
    (void)key;
    (void)value;
    PyErr_SetString(PyExc_TypeError, "sharedmap is read-only");
    return -1;
}

static Py_ssize_t reader_len(ReaderObject *self) {
    if (self->snap == NULL) {
        closed_error();
        return -1;
    }
    return (Py_ssize_t)self->snap->count;
}

/* ---- iteration and views */

static PyObject *reader_iter_dir(ReaderObject *self, int mode, int reverse) {
    SnapshotObject *s = reader_hold(self);
    module_state *st;
    PyObject *it;
    if (s == NULL)
        return NULL;
    st = state_of((PyObject *)self);
    it = st ? snapiter_new(st, s, 0, s->count, mode, reverse) : NULL;
    Py_DECREF(s);
    return it;
}

static PyObject *reader_iter(ReaderObject *self) {
    return reader_iter_dir(self, ITER_KEYS, 0);
}

static PyObject *reader_reversed(ReaderObject *self, PyObject *unused) {
    (void)unused;
    return reader_iter_dir(self, ITER_KEYS, 1);
}

static PyObject *reader_view(ReaderObject *self, int mode) {
    SnapshotObject *s = reader_hold(self);
    PyObject *v;
    if (s == NULL)
        return NULL;
    v = make_view((PyObject *)self, (PyObject *)s, &snapshot_view_ops, mode);
    Py_DECREF(s);
    return v;
}

static PyObject *reader_keys(ReaderObject *self, PyObject *unused) {
    (void)unused;
    return reader_view(self, ITER_KEYS);
}
static PyObject *reader_values(ReaderObject *self, PyObject *unused) {
    (void)unused;
    return reader_view(self, ITER_VALUES);
}
static PyObject *reader_items(ReaderObject *self, PyObject *unused) {
    (void)unused;
    return reader_view(self, ITER_ITEMS);
}

static PyObject *reader_copy(ReaderObject *self, PyObject *unused) {
    PyObject *d, *it = NULL, *item;
    module_state *st;
    (void)unused;
    if ((st = state_of((PyObject *)self)) == NULL)
        return NULL;
    d = PyDict_New();
    if (d == NULL)
        return NULL;
    it = reader_iter_dir(self, ITER_ITEMS, 0); /* it holds the snapshot */
    if (it == NULL)
        goto error;
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = PyDict_SetItem(d, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
        Py_DECREF(item);
        if (rc < 0)
            goto error;
    }
    if (PyErr_Occurred())
        goto error;
    Py_DECREF(it);
    return d;
error:
    Py_XDECREF(it);
    Py_DECREF(d);
    return NULL;
}

static PyObject *reader_richcompare(ReaderObject *self, PyObject *other, int op) {
    SnapshotObject *s;
    module_state *st;
    int r;
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    if ((st = state_of((PyObject *)self)) == NULL || (s = reader_hold(self)) == NULL)
        return NULL;
    r = mapping_equal(st, &snapshot_view_ops, (PyObject *)s, other);
    Py_DECREF(s);
    if (r < 0)
        return NULL;
    if (r == 2)
        Py_RETURN_NOTIMPLEMENTED;
    return PyBool_FromLong(op == Py_EQ ? r : !r);
}

static PyObject *reader_repr(ReaderObject *self) {
    char size[32];
    const char *tn = Py_TYPE(self)->tp_name;
    PyObject *where;
    if (self->name)
        where = PyUnicode_FromFormat("name=%R", self->name);
    else if (self->path)
        where = PyUnicode_FromFormat("path=%R", self->path);
    else
        where = PyUnicode_FromString("from bytes");
    if (where == NULL)
        return NULL;
    if (self->snap == NULL) {
        PyObject *r = PyUnicode_FromFormat("<%s %U closed>", tn, where);
        Py_DECREF(where);
        return r;
    } else {
        size_t n;
        PyObject *r;
        (void)sm_reader_data(self->snap->r, &n);
        format_size(size, sizeof size, n);
        r = PyUnicode_FromFormat("<%s %U entries=%llu size=%s>", tn, where,
                                 (unsigned long long)self->snap->count, size);
        Py_DECREF(where);
        return r;
    }
}

/* ---- lifetime */

PyDoc_STRVAR(reader_close_doc,
             "close($self, /)\n--\n\nDetach from the snapshot.  Iterators, views and memoryviews "
             "taken from it keep it mapped until they go.  Calling close() again does nothing.");

static PyObject *reader_close(ReaderObject *self, PyObject *unused) {
    (void)unused;
    Py_CLEAR(self->snap);
    Py_RETURN_NONE;
}

static PyObject *reader_enter(ReaderObject *self, PyObject *unused) {
    (void)unused;
    if (self->snap == NULL)
        return closed_error();
    return Py_NewRef(self);
}

static PyObject *reader_exit(ReaderObject *self, PyObject *args) {
    (void)args;
    Py_CLEAR(self->snap);
    Py_RETURN_FALSE;
}

static PyObject *reader_closed_get(ReaderObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->snap == NULL);
}

static PyObject *reader_name_get(ReaderObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->name ? self->name : Py_None);
}

static PyObject *reader_path_get(ReaderObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->path ? self->path : Py_None);
}

PyDoc_STRVAR(reader_reduce_doc, "Pickle by reference: re-attach by name, re-open the path, or "
                                "(for a map made by loads()) carry the bytes.");

static PyObject *reader_reduce(ReaderObject *self, PyObject *unused) {
    SnapshotObject *s;
    module_state *st;
    PyObject *r;
    (void)unused;
    if ((st = state_of((PyObject *)self)) == NULL || (s = reader_hold(self)) == NULL)
        return NULL;
    if (self->name) {
        r = Py_BuildValue("O(O)", (PyObject *)Py_TYPE(self), self->name);
    } else if (self->fspath) {
        PyObject *p = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(self->fspath),
                                                       PyBytes_GET_SIZE(self->fspath));
        r = p ? Py_BuildValue("O(N)", st->open_func, p) : NULL;
    } else if (s->has_source && PyBytes_CheckExact(s->source.obj)) {
        r = Py_BuildValue("O(O)", st->loads_func, s->source.obj);
    } else {
        size_t n;
        const void *data = sm_reader_data(s->r, &n);
        r = Py_BuildValue("O(N)", st->loads_func,
                          PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)n));
    }
    Py_DECREF(s);
    return r;
}

/* ---- ordered queries (sortedcontainers.SortedDict conventions) */

/* The rank sm_seek_key gives for @p key; an empty map (no key kind yet) is
 * rank 0 for any str or bytes key. */
static int snap_seek(SnapshotObject *s, PyObject *key, sm_bound bound, uint64_t *rank) {
    key_ref k;
    sm_cursor c;
    int rc;
    switch (key_fit_map(key, s->kind, 1, &k)) {
    case KEY_ERROR:
        return -1;
    case KEY_CANNOT_BE_IN:
        *rank = 0;
        return 0;
    case KEY_USABLE:
        break;
    }
    rc = sm_seek_key(s->r, k.data, (size_t)k.size, bound, &c);
    if (rc != 0) {
        set_error(rc);
        return -1;
    }
    *rank = c.rank;
    return 0;
}

PyDoc_STRVAR(reader_irange_doc,
             "irange($self, /, minimum=None, maximum=None, inclusive=(True, True), "
             "reverse=False)\n--\n\n"
             "Iterate over the keys between minimum and maximum, in key order (descending if "
             "reverse).  None means unbounded; inclusive says whether each bound is included.  "
             "O(log n) to start, O(1) per key.");

static PyObject *reader_irange(ReaderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"minimum", "maximum", "inclusive", "reverse", NULL};
    PyObject *lo = Py_None, *hi = Py_None, *incl = NULL, *it;
    int reverse = 0, incl_lo = 1, incl_hi = 1;
    uint64_t begin = 0, end;
    SnapshotObject *s;
    module_state *st;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOOp:irange", kwlist, &lo, &hi, &incl,
                                     &reverse))
        return NULL;
    if (incl != NULL) {
        PyObject *seq = PySequence_Fast(incl, "inclusive must be a pair of booleans");
        if (seq == NULL)
            return NULL;
        if (PySequence_Fast_GET_SIZE(seq) != 2) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "inclusive must be a pair of booleans");
            return NULL;
        }
        incl_lo = PyObject_IsTrue(PySequence_Fast_GET_ITEM(seq, 0));
        incl_hi = incl_lo < 0 ? -1 : PyObject_IsTrue(PySequence_Fast_GET_ITEM(seq, 1));
        Py_DECREF(seq);
        if (incl_lo < 0 || incl_hi < 0)
            return NULL;
    }
    if ((st = state_of((PyObject *)self)) == NULL || (s = reader_hold(self)) == NULL)
        return NULL;
    end = s->count;
    if ((lo != Py_None && snap_seek(s, lo, incl_lo ? SM_GE : SM_GT, &begin) < 0) ||
        (hi != Py_None && snap_seek(s, hi, incl_hi ? SM_GT : SM_GE, &end) < 0))
        it = NULL;
    else
        it = snapiter_new(st, s, begin, end, ITER_KEYS, reverse);
    Py_DECREF(s);
    return it;
}

static PyObject *reader_bisect(ReaderObject *self, PyObject *key, sm_bound bound) {
    SnapshotObject *s = reader_hold(self);
    uint64_t rank;
    int rc;
    if (s == NULL)
        return NULL;
    rc = snap_seek(s, key, bound, &rank);
    Py_DECREF(s);
    return rc < 0 ? NULL : PyLong_FromUnsignedLongLong((unsigned long long)rank);
}

PyDoc_STRVAR(reader_bisect_left_doc,
             "bisect_left($self, key, /)\n--\n\n"
             "The index where key would be inserted in the sorted keys, before any equal key.");
static PyObject *reader_bisect_left(ReaderObject *self, PyObject *key) {
    return reader_bisect(self, key, SM_GE);
}

PyDoc_STRVAR(reader_bisect_right_doc,
             "bisect_right($self, key, /)\n--\n\n"
             "The index where key would be inserted in the sorted keys, after any equal key.");
static PyObject *reader_bisect_right(ReaderObject *self, PyObject *key) {
    return reader_bisect(self, key, SM_GT);
}

/* An optional index argument (None or absent: *given = 0), converted through its
 * __index__, which may run any code: so every index is converted before the
 * snapshot is taken. */
static int index_arg(PyObject *o, Py_ssize_t *out, int *given) {
    *given = o != NULL && o != Py_None;
    if (!*given)
        return 0;
    *out = PyNumber_AsSsize_t(o, PyExc_IndexError);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* Slice-style normalisation of an optional bound i of a sequence of n. */
static Py_ssize_t clamp_index(Py_ssize_t i, int given, Py_ssize_t n, Py_ssize_t dflt) {
    if (!given)
        return dflt;
    if (i < 0)
        i += n;
    return i < 0 ? 0 : i > n ? n : i;
}

PyDoc_STRVAR(reader_index_doc,
             "index($self, key, start=None, stop=None, /)\n--\n\n"
             "The position of key in the sorted keys.  ValueError if key is not in the map (or "
             "not between start and stop).");

static PyObject *reader_index(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    SnapshotObject *s;
    key_ref k;
    uint64_t rank = 0;
    Py_ssize_t start = 0, stop = 0, n;
    int rc = SM_NOTFOUND, has_start, has_stop;
    if (nargs < 1 || nargs > 3)
        return nargs_error("index", nargs, 1, 3);
    if (index_arg(nargs > 1 ? args[1] : NULL, &start, &has_start) < 0 ||
        index_arg(nargs > 2 ? args[2] : NULL, &stop, &has_stop) < 0)
        return NULL;
    if ((s = reader_hold(self)) == NULL)
        return NULL;
    n = (Py_ssize_t)s->count;
    switch (key_fit_map(args[0], s->kind, 1, &k)) {
    case KEY_ERROR:
        rc = 1;
        break;
    case KEY_CANNOT_BE_IN:
        break;
    case KEY_USABLE:
        rc = sm_rank(s->r, k.data, (size_t)k.size, &rank);
        break;
    }
    Py_DECREF(s);
    if (rc == 1)
        return NULL;
    if (rc != 0 && rc != SM_NOTFOUND)
        return set_error(rc);
    start = clamp_index(start, has_start, n, 0);
    stop = clamp_index(stop, has_stop, n, n);
    if (rc == SM_NOTFOUND || (Py_ssize_t)rank < start || (Py_ssize_t)rank >= stop) {
        PyErr_Format(PyExc_ValueError, "%R is not in map", args[0]);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)rank);
}

PyDoc_STRVAR(reader_peekitem_doc,
             "peekitem($self, index=-1, /)\n--\n\n"
             "The (key, value) pair at index in key order (negative counts from the end).  "
             "IndexError if out of range.");

static PyObject *reader_peekitem(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    SnapshotObject *s;
    Py_ssize_t i = -1, n;
    sm_cursor c;
    sm_entry e;
    PyObject *item;
    int rc;
    if (nargs > 1)
        return nargs_error("peekitem", nargs, 0, 1);
    if (nargs == 1) { /* before the snapshot is taken: __index__ may close the reader */
        i = PyNumber_AsSsize_t(args[0], PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
    }
    if ((s = reader_hold(self)) == NULL)
        return NULL;
    n = (Py_ssize_t)s->count;
    if (i < 0)
        i += n;
    if (i < 0 || i >= n) {
        Py_DECREF(s);
        PyErr_SetString(PyExc_IndexError, "peekitem index out of range");
        return NULL;
    }
    rc = sm_seek_rank(s->r, (uint64_t)i, &c);
    if (rc == 0)
        rc = sm_cursor_get(&c, &e);
    /* make_item reads e before its tuple allocation can run a collection */
    item = rc == 0 ? make_item(s->kind, &e) : set_error(rc == SM_NOTFOUND ? SM_ECORRUPT : rc);
    Py_DECREF(s);
    return item;
}

static PyObject *reader_prefix_mode(ReaderObject *self, PyObject *p, int mode) {
    SnapshotObject *s;
    module_state *st;
    key_ref k;
    uint64_t begin = 0, end = 0;
    PyObject *it = NULL;
    int rc = 0;
    if ((st = state_of((PyObject *)self)) == NULL || (s = reader_hold(self)) == NULL)
        return NULL;
    switch (key_fit_map(p, s->kind, 1, &k)) {
    case KEY_ERROR:
        goto done;
    case KEY_CANNOT_BE_IN:
        break;
    case KEY_USABLE:
        rc = sm_prefix_range(s->r, k.data, (size_t)k.size, &begin, &end);
        break;
    }
    it = rc != 0 ? set_error(rc) : snapiter_new(st, s, begin, end, mode, 0);
done:
    Py_DECREF(s);
    return it;
}

PyDoc_STRVAR(reader_prefix_doc, "prefix($self, prefix, /)\n--\n\n"
                                "Iterate over the keys that start with prefix, in key order.");
static PyObject *reader_prefix(ReaderObject *self, PyObject *p) {
    return reader_prefix_mode(self, p, ITER_KEYS);
}

PyDoc_STRVAR(reader_prefix_items_doc,
             "prefix_items($self, prefix, /)\n--\n\n"
             "Iterate over the (key, value) pairs whose key starts with prefix, in key order.");
static PyObject *reader_prefix_items(ReaderObject *self, PyObject *p) {
    return reader_prefix_mode(self, p, ITER_ITEMS);
}

/* ---- zero copy */

PyDoc_STRVAR(reader_getbuffer_doc,
             "getbuffer($self, key, /)\n--\n\n"
             "A read-only memoryview of the bytes value of key (of a str value: its UTF-8), "
             "straight in the snapshot, without copying.  It keeps the snapshot mapped while it "
             "exists, even after close().  KeyError if missing; TypeError for other value types.");

static PyObject *reader_getbuffer(ReaderObject *self, PyObject *key) {
    SnapshotObject *s = reader_hold(self);
    PyObject *view = NULL;
    sm_value v;
    if (s == NULL)
        return NULL;
    switch (snap_lookup(s, key, 1, &v)) {
    case LOOKUP_FOUND:
        break;
    case LOOKUP_MISSING:
        PyErr_SetObject(PyExc_KeyError, key);
        goto done;
    default:
        goto done;
    }
    if (v.type != SM_BYTES && v.type != SM_STR) {
        static const char *const names[] = {"None", "bool", "bool", "int", "float"};
        PyErr_Format(PyExc_TypeError, "getbuffer() needs a bytes or str value, the value of %R is %s",
                     key, (unsigned)v.type < 5 ? names[v.type] : "unknown");
        goto done;
    }
    /* its memoryview allocations may collect: s is held across them */
    view = snapshot_subview(s, v.as.buf.data, v.as.buf.size);
done:
    Py_DECREF(s);
    return view;
}

/* ---- versions and integrity */

PyDoc_STRVAR(reader_refresh_doc,
             "refresh($self, /)\n--\n\n"
             "Move to the newest version of the map if it was republished since; return whether "
             "it moved.  Costs one memory read when nothing changed, so it can be called before "
             "every request.  A removed map keeps its current version (returns False); while it "
             "stays removed, refresh() looks for it again at most once a millisecond (at once "
             "after a share(), save() or remove() in this process).  Iterators, views and "
             "memoryviews taken before keep the version they had.");

/* How long refresh() takes a map it found absent to stay absent: it may see a map
 * published meanwhile by another process up to this much later. */
#define ABSENT_RECHECK_NS (1000 * 1000)

static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO: no system call */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static PyObject *reader_refresh(ReaderObject *self, PyObject *unused) {
    /* borrowed: nothing here runs Python code (snapshot_new's object is not one the
     * collector counts) */
    SnapshotObject *s = self->snap, *ns;
    module_state *st;
    sm_reader *r;
    sm_info old_info, new_info;
    int rc;
    (void)unused;
    if (s == NULL)
        return closed_error();
    if (!sm_reader_superseded(s->r) || (self->fsname == NULL && self->fspath == NULL))
        Py_RETURN_FALSE;
    if (self->absent) { /* cheap: the vDSO clock, no system call */
        if (publishes_seen() == self->absent_publishes && monotonic_ns() < self->absent_until)
            Py_RETURN_FALSE;
        self->absent = 0;
    }
    if (self->fsname != NULL)
        rc = sm_reader_open_shm(&r, NULL, PyBytes_AS_STRING(self->fsname));
    else
        rc = sm_reader_open_file(&r, PyBytes_AS_STRING(self->fspath));
    if (rc == -ENOENT) {
        self->absent = 1;
        self->absent_until = monotonic_ns() + ABSENT_RECHECK_NS;
        self->absent_publishes = publishes_seen();
        Py_RETURN_FALSE;
    }
    if (rc != 0)
        return raise_code(rc, self->name, self->path);
    sm_reader_info(s->r, &old_info);
    sm_reader_info(r, &new_info);
    if (old_info.dev == new_info.dev && old_info.ino == new_info.ino) {
        sm_reader_close(r);
        Py_RETURN_FALSE;
    }
    if ((st = state_of((PyObject *)self)) == NULL) {
        sm_reader_close(r);
        return NULL;
    }
    ns = snapshot_new(st, r, NULL);
    if (ns == NULL)
        return NULL;
    Py_SETREF(self->snap, ns);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(reader_info_doc,
             "info($self, /)\n--\n\n"
             "A dict describing the snapshot: entries, size (bytes), format_version, created "
             "(seconds since the epoch), key_kind ('str', 'bytes' or None), checksum, "
             "superseded (whether a newer version was published since), name (or None), and path: "
             "the file the map lives in (for a map attached by name, its file in /dev/shm; None for "
             "a map made by loads()).");

static PyObject *reader_info(ReaderObject *self, PyObject *unused) {
    SnapshotObject *s = reader_hold(self);
    PyObject *path, *res;
    sm_info info;
    (void)unused;
    if (s == NULL)
        return NULL;
    sm_reader_info(s->r, &info);
    if (self->path != NULL)
        path = Py_NewRef(self->path);
    else if (self->name != NULL)
        path = PyUnicode_FromFormat("%s/%s%U", SM_DEFAULT_DIR, SM_NAME_PREFIX, self->name);
    else
        path = Py_NewRef(Py_None);
    if (path == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    res = Py_BuildValue(
        "{sKsKsIsdsssKsOsOsN}", "entries", (unsigned long long)info.count, "size",
        (unsigned long long)info.size, "format_version", info.format_version, "created",
        (double)info.created_ns / 1e9, "key_kind",
        info.key_kind == SM_KEYS_STR ? "str" : info.key_kind == SM_KEYS_BYTES ? "bytes" : NULL,
        "checksum", (unsigned long long)info.checksum, "superseded",
        sm_reader_superseded(s->r) ? Py_True : Py_False, "name", self->name ? self->name : Py_None,
        "path", path);
    Py_DECREF(s);
    return res;
}

PyDoc_STRVAR(reader_verify_doc,
             "verify($self, /)\n--\n\n"
             "Check the whole snapshot (checksum, every record, order, index, UTF-8): return True, "
             "or raise ValueError saying what is wrong.  O(n); runs without the GIL.");

static PyObject *reader_verify(ReaderObject *self, PyObject *unused) {
    SnapshotObject *s = reader_hold(self); /* a close() in another thread must not unmap it */
    int rc;
    (void)unused;
    if (s == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_reader_verify(s->r);
    Py_END_ALLOW_THREADS
    Py_DECREF(s);
    if (rc != 0) {
        return raise_code(rc, self->name, self->path);
    }
    Py_RETURN_TRUE;
}

static PyMethodDef reader_methods[] = {
    {"get", METH_CAST(reader_get), METH_FASTCALL, reader_get_doc},
    {"keys", (PyCFunction)reader_keys, METH_NOARGS, "A set-like view of the keys, in key order."},
    {"values", (PyCFunction)reader_values, METH_NOARGS, "A view of the values, in key order."},
    {"items", (PyCFunction)reader_items, METH_NOARGS,
     "A set-like view of the (key, value) pairs, in key order."},
    {"copy", (PyCFunction)reader_copy, METH_NOARGS, "A dict with the same items (in key order)."},
    {"__reversed__", (PyCFunction)reader_reversed, METH_NOARGS,
     "Iterate over the keys in descending order."},
    {"close", (PyCFunction)reader_close, METH_NOARGS, reader_close_doc},
    {"__enter__", (PyCFunction)reader_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)reader_exit, METH_VARARGS, NULL},
    {"__reduce__", (PyCFunction)reader_reduce, METH_NOARGS, reader_reduce_doc},
    {"__class_getitem__", (PyCFunction)Py_GenericAlias, METH_O | METH_CLASS,
     "See PEP 585."},
    {"irange", METH_CAST(reader_irange), METH_VARARGS | METH_KEYWORDS, reader_irange_doc},
    {"bisect_left", (PyCFunction)reader_bisect_left, METH_O, reader_bisect_left_doc},
    {"bisect_right", (PyCFunction)reader_bisect_right, METH_O, reader_bisect_right_doc},
    {"index", METH_CAST(reader_index), METH_FASTCALL, reader_index_doc},
    {"peekitem", METH_CAST(reader_peekitem), METH_FASTCALL, reader_peekitem_doc},
    {"prefix", (PyCFunction)reader_prefix, METH_O, reader_prefix_doc},
    {"prefix_items", (PyCFunction)reader_prefix_items, METH_O, reader_prefix_items_doc},
    {"getbuffer", (PyCFunction)reader_getbuffer, METH_O, reader_getbuffer_doc},
    {"refresh", (PyCFunction)reader_refresh, METH_NOARGS, reader_refresh_doc},
    {"info", (PyCFunction)reader_info, METH_NOARGS, reader_info_doc},
    {"verify", (PyCFunction)reader_verify, METH_NOARGS, reader_verify_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reader_getset[] = {
    {"closed", (getter)reader_closed_get, NULL, "True once close() was called.", NULL},
    {"name", (getter)reader_name_get, NULL, "The name the map was attached by, or None.", NULL},
    {"path", (getter)reader_path_get, NULL, "The path the map was opened from, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef reader_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(ReaderObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(reader_doc,
             "sharedmap(name)\n--\n\n"
             "Attach read-only to the map published under name (FileNotFoundError if none).\n\n"
             "A read-only Mapping whose keys iterate in sorted order, with ordered queries "
             "(irange, bisect_left, bisect_right, index, peekitem, prefix) and zero-copy access "
             "(getbuffer).  sharedmap.open(path) and sharedmap.loads(data) make the same kind of "
             "object from a file or from bytes.");

static PyType_Slot reader_slots[] = {
    {Py_tp_new, (void *)reader_new},
    {Py_tp_dealloc, (void *)reader_dealloc},
    {Py_tp_traverse, (void *)reader_traverse},
    {Py_tp_clear, (void *)reader_clear},
    {Py_tp_repr, (void *)reader_repr},
    {Py_tp_hash, (void *)PyObject_HashNotImplemented},
    {Py_tp_richcompare, (void *)reader_richcompare},
    {Py_tp_iter, (void *)reader_iter},
    {Py_tp_methods, reader_methods},
    {Py_tp_getset, reader_getset},
    {Py_tp_members, reader_members},
    {Py_tp_doc, (void *)reader_doc},
    {Py_mp_length, (void *)reader_len},
    {Py_mp_subscript, (void *)reader_subscript},
    {Py_mp_ass_subscript, (void *)reader_ass_subscript},
    {Py_sq_contains, (void *)reader_contains},
    {0, NULL},
};

PyType_Spec reader_spec = {
    .name = "sharedmap.sharedmap",
    .basicsize = sizeof(ReaderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_MAPPING |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = reader_slots,
};
