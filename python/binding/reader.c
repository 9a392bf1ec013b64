/* reader.c: the sharedmap type, a read-only Mapping over one snapshot at a time:
 * point lookups, iteration and views, refresh() to a newer version, info and verify.
 * The ordered queries and getbuffer() are in ordered.c; opening by path or from
 * bytes (open(), loads()) is in module.c. */
#include "convert.h"

#include <limits.h>
#include <time.h>

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
        return self->fsname != NULL ? raise_code(rc, self->name, NULL)
                                    : raise_open_error(rc, self->path, PyBytes_AS_STRING(self->fspath));
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
             "superseded (whether a newer version was published since), name (or None), path: "
             "the file the map lives in (for a map attached by name, its file in /dev/shm; None for "
             "a map made by loads()), and layer: None for a plain snapshot, or for a map edited by "
             "delta layers (sharedmap.edit) a dict of its base (base_file, base_entries, "
             "base_size) and its delta (delta_records, puts and deletions, and delta_size); size "
             "is then the layer file's.");

/* The path of the map named fsname in the default directory, decoded as os decodes file
 * names (the inverse of name_to_bytes). */
static PyObject *map_path(PyObject *fsname) {
    char buf[PATH_MAX];
    int rc = sm_map_path(NULL, PyBytes_AS_STRING(fsname), buf, sizeof buf);
    if (rc != 0)
        return set_error(rc);
    return PyUnicode_DecodeFSDefault(buf);
}

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
    else if (self->fsname != NULL)
        path = map_path(self->fsname);
    else
        path = Py_NewRef(Py_None);
    if (path == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    sm_layer_info li;
    PyObject *layer = Py_None;
    if (sm_reader_layer(s->r, &li)) {
        layer = Py_BuildValue("{sNsKsKsKsK}", "base_file", PyUnicode_DecodeFSDefault(li.base_file),
                              "base_entries", (unsigned long long)li.base_count, "base_size",
                              (unsigned long long)li.base_size, "delta_records",
                              (unsigned long long)li.delta_records, "delta_size",
                              (unsigned long long)li.delta_size);
        if (layer == NULL) {
            Py_DECREF(s);
            Py_DECREF(path);
            return NULL;
        }
    } else {
        Py_INCREF(layer);
    }
    res = Py_BuildValue(
        "{sKsKsIsdsssKsOsOsNsN}", "entries", (unsigned long long)info.count, "size",
        (unsigned long long)info.size, "format_version", info.format_version, "created",
        (double)info.created_ns / 1e9, "key_kind",
        info.key_kind == SM_KEYS_NONE ? NULL : kind_name(info.key_kind),
        "checksum", (unsigned long long)info.checksum, "superseded",
        sm_reader_superseded(s->r) ? Py_True : Py_False, "name", self->name ? self->name : Py_None,
        "path", path, "layer", layer);
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
    {"get_many", METH_CAST(reader_get_many), METH_FASTCALL, get_many_doc},
    {"get_array", METH_CAST(reader_get_array), METH_VARARGS | METH_KEYWORDS, get_array_doc},
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
