/* ordered.c: the ordered queries of a sharedmap (the conventions of
 * sortedcontainers.SortedDict: irange, bisect_left/right, index, peekitem, prefix)
 * and getbuffer(), its zero-copy access to a value.  Methods of the reader type
 * (reader.c lists them), apart because they are a job of their own. */
#include "convert.h"

/* The rank sm_seek_key gives for @p key; an empty map (no key kind yet) is
 * rank 0 for any str, bytes or int key, and an int beyond int64_t is below or above
 * every key of an int map. */
static int snap_seek(SnapshotObject *s, PyObject *key, sm_bound bound, uint64_t *rank) {
    key_ref k;
    sm_cursor c;
    int rc;
    switch (key_fit_map(key, s->kind, 1, &k)) {
    case KEY_ERROR:
        return -1;
    case KEY_CANNOT_BE_IN:
        *rank = k.beyond > 0 && s->kind == SM_KEYS_INT ? s->count : 0;
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

SMPY_DOC(reader_irange_doc,
             "irange($self, /, minimum=None, maximum=None, inclusive=(True, True), "
             "reverse=False)\n--\n\n"
             "Iterate over the keys between minimum and maximum, in key order (descending if "
             "reverse).  None means unbounded; inclusive says whether each bound is included.  "
             "O(log n) to start, O(1) per key.");

PyObject *reader_irange(ReaderObject *self, PyObject *args, PyObject *kwds) {
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

SMPY_DOC(reader_bisect_left_doc,
             "bisect_left($self, key, /)\n--\n\n"
             "The index where key would be inserted in the sorted keys, before any equal key.");
PyObject *reader_bisect_left(ReaderObject *self, PyObject *key) {
    return reader_bisect(self, key, SM_GE);
}

SMPY_DOC(reader_bisect_right_doc,
             "bisect_right($self, key, /)\n--\n\n"
             "The index where key would be inserted in the sorted keys, after any equal key.");
PyObject *reader_bisect_right(ReaderObject *self, PyObject *key) {
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

SMPY_DOC(reader_index_doc,
             "index($self, key, start=None, stop=None, /)\n--\n\n"
             "The position of key in the sorted keys.  ValueError if key is not in the map (or "
             "not between start and stop).");

PyObject *reader_index(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
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

SMPY_DOC(reader_peekitem_doc,
             "peekitem($self, index=-1, /)\n--\n\n"
             "The (key, value) pair at index in key order (negative counts from the end).  "
             "IndexError if out of range.");

PyObject *reader_peekitem(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
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
    if (s->kind == SM_KEYS_INT || PyLong_Check(p)) {
        PyErr_SetString(PyExc_TypeError, "prefix() needs str or bytes keys: int keys have no prefixes");
        goto done;
    }
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

SMPY_DOC(reader_prefix_doc, "prefix($self, prefix, /)\n--\n\n"
                                "Iterate over the keys that start with prefix, in key order.");
PyObject *reader_prefix(ReaderObject *self, PyObject *p) {
    return reader_prefix_mode(self, p, ITER_KEYS);
}

SMPY_DOC(reader_prefix_items_doc,
             "prefix_items($self, prefix, /)\n--\n\n"
             "Iterate over the (key, value) pairs whose key starts with prefix, in key order.");
PyObject *reader_prefix_items(ReaderObject *self, PyObject *p) {
    return reader_prefix_mode(self, p, ITER_ITEMS);
}

/* ---------------------------------------------------------------- zero copy */

SMPY_DOC(reader_getbuffer_doc,
             "getbuffer($self, key, /)\n--\n\n"
             "A read-only memoryview of the bytes value of key (of a str value: its UTF-8), "
             "straight in the snapshot, without copying.  It keeps the snapshot mapped while it "
             "exists, even after close().  KeyError if missing; TypeError for other value types.");

PyObject *reader_getbuffer(ReaderObject *self, PyObject *key) {
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
