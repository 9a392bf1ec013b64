/* writer.c: the Writer type, the streaming writer of the C API (sm_writer): a
 * snapshot file or a shared map from a stream of pairs, in memory bounded by
 * memory_limit however many there are.  sharedmap.write() and sharedmap.publish()
 * (python/sharedmap/__init__.py) are a Writer in a with block.
 *
 * Adding converts under the GIL (the conversions are Python's); close() finishes
 * the snapshot (the merge of the spilled runs, the table, the rename) without it, under
 * the busy guard of binding.h, as rbtree's share() and save() do. */
#include "convert.h"

typedef struct {
    PyObject_HEAD
    sm_writer *w;       /* NULL once closed or aborted */
    Py_ssize_t busy;    /* > 0 while close() runs without the GIL */
    PyObject *name;     /* str: publishing under this name; else NULL */
    PyObject *path;     /* as given: writing this file; else NULL */
    uint64_t count;     /* the snapshot's entries, once closed */
    sm_key_kind kind;   /* of the keys added so far; SM_KEYS_NONE before the first */
} WriterObject;

static int writer_usable(WriterObject *self) {
    if (self->busy > 0) {
        PyErr_SetString(PyExc_RuntimeError, "Writer is in use by another thread (closing)");
        return -1;
    }
    if (self->w == NULL) {
        PyErr_SetString(PyExc_ValueError, "Writer is closed");
        return -1;
    }
    return 0;
}

static PyObject *writer_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "name", "sorted", "memory_limit", "force", "mode", "temp_dir", NULL};
    PyObject *path = Py_None, *name = Py_None, *limit = Py_None, *temp = Py_None;
    PyObject *fs = NULL, *fsname = NULL, *fstemp = NULL;
    int sorted = 0, force = 0, mode = (int)SM_DEFAULT_MODE, rc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OpOpiO:Writer", kwlist, &path, &name, &sorted,
                                     &limit, &force, &mode, &temp))
        return NULL;
    if ((path == Py_None) == (name == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "Writer() takes a path or a name=, not both");
        return NULL;
    }
    sm_writer_opts o = SM_WRITER_OPTS_INIT;
    o.flags = sorted ? SM_WRITER_SORTED : 0u;
    if (memory_limit_from_py(limit, &o.memory_limit) < 0)
        return NULL;
    if (check_mode(mode) < 0)
        return NULL;
    if (temp != Py_None && !PyUnicode_FSConverter(temp, &fstemp))
        return NULL;
    if (path != Py_None ? !PyUnicode_FSConverter(path, &fs) : (fsname = name_to_bytes(name)) == NULL) {
        Py_XDECREF(fstemp);
        return NULL;
    }
    o.temp_dir = fstemp ? PyBytes_AS_STRING(fstemp) : NULL;
    sm_writer *w = NULL;
    unsigned flags = force ? SM_FORCE : 0u;
    Py_BEGIN_ALLOW_THREADS
    rc = fs ? sm_writer_open_file(&w, PyBytes_AS_STRING(fs), flags, (unsigned)mode, &o)
            : sm_writer_open_shm(&w, NULL, PyBytes_AS_STRING(fsname), flags, (unsigned)mode, &o);
    Py_END_ALLOW_THREADS
    Py_XDECREF(fs);
    Py_XDECREF(fsname);
    Py_XDECREF(fstemp);
    if (rc != 0)
        return raise_code(rc, name != Py_None ? name : NULL, path != Py_None ? path : NULL);
    WriterObject *self = (WriterObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        sm_writer_free(w);
        return NULL;
    }
    self->w = w;
    self->kind = SM_KEYS_NONE;
    self->name = name != Py_None ? Py_NewRef(name) : NULL;
    self->path = path != Py_None ? Py_NewRef(path) : NULL;
    return (PyObject *)self;
}

static void writer_dealloc(WriterObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    sm_writer_free(self->w); /* not closed: abandoned, leaving nothing */
    Py_XDECREF(self->name);
    Py_XDECREF(self->path);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int writer_put(WriterObject *self, PyObject *key, PyObject *value) {
    key_ref k;
    py_value v;
    int rc = -1;
    /* held: the pair may be borrowed from a container that code run from here empties */
    Py_INCREF(key);
    Py_INCREF(value);
    if (value_from_py(value, &v) < 0 || key_parse(key, &k) < 0 || writer_usable(self) < 0)
        goto done;
    if (k.beyond) {
        raise_class_format(SMPY_EXC_TooLargeError, SM_ETOOBIG,
                           "int keys must fit in a signed 64-bit integer");
        goto done;
    }
    rc = sm_writer_add(self->w, k.kind, k.data, (size_t)k.size, &v.value);
    if (rc == 0) {
        self->kind = k.kind;
    } else if (rc == SM_EKEYKIND) {
        set_kind_error(self->kind, k.kind);
    } else if (rc == SM_EORDER) {
        PyObject *msg = PyUnicode_FromFormat("key %R is below the key before it (sorted=True)", key);
        if (msg != NULL) {
            raise_class(SMPY_EXC_OrderError, msg, rc, self->name, self->path);
            Py_DECREF(msg);
        }
    } else if (rc != 0) {
        raise_code(rc, self->name, self->path);
    }
    rc = rc == 0 ? 0 : -1;
done:
    Py_DECREF(key);
    Py_DECREF(value);
    return rc;
}

PyDoc_STRVAR(writer_add_doc, "add($self, key, value, /)\n--\n\nAdd one pair (a later pair with "
                             "the same key replaces it).");

static PyObject *writer_add(WriterObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2)
        return nargs_error("add", nargs, 2, 2);
    if (writer_put(self, args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Each pair of an iterable of pairs. */
static int writer_update_pairs(WriterObject *self, PyObject *iterable) {
    PyObject *it = PyObject_GetIter(iterable), *item;
    Py_ssize_t i = 0;
    int rc = 0;
    if (it == NULL)
        return -1;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2) {
            rc = writer_put(self, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
        } else {
            PyObject *pair = PySequence_Fast(item, "");
            if (pair == NULL) {
                PyErr_Format(PyExc_TypeError, "element #%zd of the pairs is not a (key, value) pair", i);
                rc = -1;
            } else if (PySequence_Fast_GET_SIZE(pair) != 2) {
                PyErr_Format(PyExc_ValueError, "element #%zd of the pairs has length %zd; 2 is required",
                             i, PySequence_Fast_GET_SIZE(pair));
                rc = -1;
            } else {
                rc = writer_put(self, PySequence_Fast_GET_ITEM(pair, 0), PySequence_Fast_GET_ITEM(pair, 1));
            }
            Py_XDECREF(pair);
        }
        Py_DECREF(item);
        i++;
    }
    Py_DECREF(it);
    return rc < 0 || PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(writer_update_doc,
             "update($self, pairs, /)\n--\n\n"
             "Add every pair of a mapping (its items()) or of an iterable of (key, value) pairs.");

static PyObject *writer_update(WriterObject *self, PyObject *arg) {
    int rc;
    /* a mapping's pairs come from its items() view, one at a time (a dict's iterator recycles
     * its pair, and raises if the dict changes size under the walk): never a list of them all,
     * which would hold the whole input beside the writer's budget */
    if (PyDict_Check(arg) || (PyObject_HasAttrString(arg, "items") && PyObject_HasAttrString(arg, "keys"))) {
        PyObject *items = PyObject_CallMethod(arg, "items", NULL);
        if (items == NULL)
            return NULL;
        rc = writer_update_pairs(self, items);
        Py_DECREF(items);
    } else {
        rc = writer_update_pairs(self, arg);
    }
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(writer_close_doc,
             "close($self, /)\n--\n\n"
             "Finish the snapshot and publish it atomically (the file, or the shared map); "
             "return its number of entries.  Runs without the GIL.");

static PyObject *writer_close(WriterObject *self, PyObject *unused) {
    (void)unused;
    int rc;
    if (writer_usable(self) < 0)
        return NULL;
    sm_writer *w = self->w;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_writer_commit(w);
    Py_END_ALLOW_THREADS
    self->busy--;
    self->count = sm_writer_count(w);
    self->w = NULL;
    sm_writer_free(w);
    note_publish();
    if (rc != 0)
        return raise_code(rc, self->name, self->path);
    return PyLong_FromUnsignedLongLong(self->count);
}

PyDoc_STRVAR(writer_abort_doc, "abort($self, /)\n--\n\nAbandon the snapshot: nothing of it "
                               "stays behind.  Closing a closed Writer does nothing.");

static PyObject *writer_abort(WriterObject *self, PyObject *unused) {
    (void)unused;
    if (self->busy > 0) {
        (void)writer_usable(self); /* the RuntimeError */
        return NULL;
    }
    sm_writer_free(self->w);
    self->w = NULL;
    Py_RETURN_NONE;
}

static PyObject *writer_enter(WriterObject *self, PyObject *unused) {
    (void)unused;
    if (writer_usable(self) < 0)
        return NULL;
    return Py_NewRef(self);
}

static PyObject *writer_exit(WriterObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3)
        return nargs_error("__exit__", nargs, 3, 3);
    if (args[0] != Py_None || self->w == NULL) /* an exception in the block: nothing is published */
        return writer_abort(self, NULL);
    PyObject *n = writer_close(self, NULL);
    if (n == NULL)
        return NULL;
    Py_DECREF(n);
    Py_RETURN_FALSE;
}

static PyObject *writer_get_count(WriterObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->w ? sm_writer_count(self->w) : self->count);
}

static PyObject *writer_get_closed(WriterObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->w == NULL);
}

static PyMethodDef writer_methods[] = {
    {"add", METH_CAST(writer_add), METH_FASTCALL, writer_add_doc},
    {"update", (PyCFunction)writer_update, METH_O, writer_update_doc},
    {"close", (PyCFunction)writer_close, METH_NOARGS, writer_close_doc},
    {"abort", (PyCFunction)writer_abort, METH_NOARGS, writer_abort_doc},
    {"__enter__", (PyCFunction)writer_enter, METH_NOARGS, NULL},
    {"__exit__", METH_CAST(writer_exit), METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef writer_getset[] = {
    {"count", (getter)writer_get_count, NULL,
     "Pairs added so far (a key added twice counts twice); after close(), the snapshot's entries.",
     NULL},
    {"closed", (getter)writer_get_closed, NULL, "True once closed or aborted.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(writer_doc,
             "Writer(path=None, *, name=None, sorted=False, memory_limit=None, force=False, "
             "mode=0o600, temp_dir=None)\n--\n\n"
             "A snapshot built from a stream of pairs in bounded memory: the file path, or the "
             "shared map name=.  add() and update() take pairs in any order (sorted=True: in "
             "ascending key order, checked, OrderError otherwise); a key given twice keeps its "
             "last value.  Pairs beyond memory_limit bytes (default 256 MiB) are sorted in runs "
             "that spill to anonymous files in temp_dir (default $TMPDIR or /tmp).  close() "
             "publishes atomically; abort(), or an exception in a with block, leaves nothing.  "
             "The snapshot is byte for byte the one rbtree(pairs) would write.");

static PyType_Slot writer_slots[] = {
    {Py_tp_new, (void *)writer_new},
    {Py_tp_dealloc, (void *)writer_dealloc},
    {Py_tp_methods, writer_methods},
    {Py_tp_getset, writer_getset},
    {Py_tp_doc, (void *)writer_doc},
    {0, NULL},
};

PyType_Spec writer_spec = {
    .name = "sharedmap.Writer",
    .basicsize = sizeof(WriterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = writer_slots,
};
