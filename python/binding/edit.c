/* edit.c: the _Edit type, an edit of a published map or a snapshot file (sm_edit of the
 * C API, delta layers), and its key iterator.  sharedmap.Editor (python/sharedmap/edit.py)
 * is _Edit with collections.abc.MutableMapping's mixin methods on top; sharedmap.edit()
 * and sharedmap.compact() make one.
 *
 * Opening may wait for another editor of the name, and committing writes a delta or a whole
 * compacted snapshot: both run without the GIL, commit under a busy guard as Writer's close()
 * does.  Everything else is a lookup or a change in memory, under the GIL.
 *
 * The iterator walks the version the edit began from and the pending changes (both in key
 * order) together; a change made meanwhile raises RuntimeError, as a dict's iterator does. */
#include "convert.h"

typedef struct {
    PyObject_HEAD
    sm_edit *e;         /* NULL once committed or discarded */
    Py_ssize_t busy;    /* > 0 while commit() runs without the GIL */
    PyObject *name;     /* str: editing this map; else NULL */
    PyObject *path;     /* as given: editing this file; else NULL */
    PyObject *temp;     /* bytes: the temp_dir the edit's options point into; else NULL */
    sm_key_kind kind;   /* of the edited map's keys; SM_KEYS_NONE while it has none */
    uint64_t changes;   /* bumped by every put and del (the iterators check it) */
    int compacted;      /* the commit wrote a plain snapshot */
    int committed;
} EditObject;

typedef struct {
    PyObject_HEAD
    EditObject *edit;   /* strong */
    sm_cursor c;        /* over the version the edit began from */
    size_t i;           /* the next pending change */
    uint64_t changes;   /* edit->changes when the iterator was made */
} EditIterObject;

static int edit_usable(EditObject *self) {
    if (self->busy > 0) {
        PyErr_SetString(PyExc_RuntimeError, "the edit is in use by another thread (committing)");
        return -1;
    }
    if (self->e == NULL) {
        PyErr_SetString(PyExc_ValueError, self->committed ? "the edit was committed"
                                                          : "the edit was discarded");
        return -1;
    }
    return 0;
}

static PyObject *edit_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name", "path", "compact_at", "wait", "compact", "memory_limit",
                             "temp_dir", NULL};
    PyObject *name = Py_None, *path = Py_None, *ratio = NULL, *limit = Py_None, *temp = Py_None;
    PyObject *fs = NULL, *fsname = NULL, *fstemp = NULL;
    int wait = 1, compact = 0, rc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OOppOO:Editor", kwlist, &name, &path, &ratio,
                                     &wait, &compact, &limit, &temp))
        return NULL;
    if ((path == Py_None) == (name == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "edit() takes a map name or a path=, not both");
        return NULL;
    }
    sm_edit_opts o = SM_EDIT_OPTS_INIT;
    if (ratio == Py_None) {
        o.compact_ratio = -1; /* never on its own */
    } else if (ratio != NULL) {
        o.compact_ratio = PyFloat_AsDouble(ratio);
        if (o.compact_ratio == -1.0 && PyErr_Occurred())
            return NULL;
        if (!(o.compact_ratio >= 0)) {
            PyErr_SetString(PyExc_ValueError, "compact_at must be a fraction >= 0, or None");
            return NULL;
        }
    }
    o.flags = (wait ? 0u : SM_EDIT_NOWAIT) | (compact ? SM_EDIT_COMPACT : 0u);
    if (memory_limit_from_py(limit, &o.memory_limit) < 0)
        return NULL;
    if (temp != Py_None && !PyUnicode_FSConverter(temp, &fstemp))
        return NULL;
    if (path != Py_None ? !PyUnicode_FSConverter(path, &fs) : (fsname = name_to_bytes(name)) == NULL) {
        Py_XDECREF(fstemp);
        return NULL;
    }
    if (fs != NULL && PyBytes_GET_SIZE(fs) == 0) {
        PyErr_SetString(PyExc_ValueError, "edit(): path= is empty");
        Py_DECREF(fs);
        Py_XDECREF(fstemp);
        return NULL;
    }
    o.temp_dir = fstemp ? PyBytes_AS_STRING(fstemp) : NULL;
    sm_edit *e = NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = fs ? sm_edit_open_file(&e, PyBytes_AS_STRING(fs), &o)
            : sm_edit_open_shm(&e, NULL, PyBytes_AS_STRING(fsname), &o);
    Py_END_ALLOW_THREADS
    Py_XDECREF(fs);
    Py_XDECREF(fsname);
    if (rc == -EWOULDBLOCK) {
        PyErr_Format(PyExc_BlockingIOError, "%R is being edited by another editor (wait=False)",
                     name != Py_None ? name : path);
        Py_XDECREF(fstemp);
        return NULL;
    }
    if (rc == -EINVAL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "%R is a map set: its shards are published whole, not edited",
                     name != Py_None ? name : path);
        Py_XDECREF(fstemp);
        return NULL;
    }
    if (rc != 0) {
        Py_XDECREF(fstemp);
        return raise_code(rc, name != Py_None ? name : NULL, path != Py_None ? path : NULL);
    }
    EditObject *self = (EditObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        sm_edit_free(e);
        Py_XDECREF(fstemp);
        return NULL;
    }
    self->e = e;
    self->temp = fstemp; /* the edit's options point into it until sm_edit_free */
    const sm_reader *cur = sm_edit_reader(e);
    self->kind = sm_reader_count(cur) ? sm_reader_key_kind(cur) : SM_KEYS_NONE;
    self->name = name != Py_None ? Py_NewRef(name) : NULL;
    self->path = path != Py_None ? Py_NewRef(path) : NULL;
    return (PyObject *)self;
}

static void edit_dealloc(EditObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    sm_edit_free(self->e); /* not committed: discarded, and the lock let go */
    Py_XDECREF(self->temp);
    Py_XDECREF(self->name);
    Py_XDECREF(self->path);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int edit_traverse(EditObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

/* ---- the mapping */

static lookup_result edit_lookup(EditObject *self, PyObject *key, sm_value *out, key_ref *k) {
    if (edit_usable(self) < 0)
        return LOOKUP_ERROR;
    switch (key_fit_map(key, self->kind, 1, k)) {
    case KEY_ERROR:
        return LOOKUP_ERROR;
    case KEY_CANNOT_BE_IN:
        return LOOKUP_MISSING;
    case KEY_USABLE:
        break;
    }
    int rc = sm_edit_get(self->e, k->data, (size_t)k->size, out);
    if (rc == 0)
        return LOOKUP_FOUND;
    if (rc == SM_NOTFOUND)
        return LOOKUP_MISSING;
    raise_code(rc, self->name, self->path);
    return LOOKUP_ERROR;
}

static PyObject *edit_subscript(EditObject *self, PyObject *key) {
    sm_value v;
    key_ref k;
    switch (edit_lookup(self, key, &v, &k)) {
    case LOOKUP_FOUND:
        return value_to_py(&v);
    case LOOKUP_MISSING:
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    default:
        return NULL;
    }
}

static PyObject *edit_get(EditObject *self, PyObject *const *args, Py_ssize_t nargs) {
    sm_value v;
    key_ref k;
    if (nargs != 1 && nargs != 2)
        return nargs_error("get", nargs, 1, 2);
    switch (edit_lookup(self, args[0], &v, &k)) {
    case LOOKUP_FOUND:
        return value_to_py(&v);
    case LOOKUP_MISSING:
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    default:
        return NULL;
    }
}

static int edit_contains(EditObject *self, PyObject *key) {
    key_ref k;
    lookup_result r = edit_lookup(self, key, NULL, &k);
    return r == LOOKUP_ERROR ? -1 : r == LOOKUP_FOUND;
}

static int edit_put(EditObject *self, PyObject *key, PyObject *value) {
    key_ref k;
    py_value v;
    int rc = -1;
    /* held, and the value converted first: that may run Python code (binding.h) */
    Py_INCREF(key);
    Py_INCREF(value);
    if (value_from_py(value, &v) < 0)
        goto done;
    if (edit_usable(self) == 0 && key_parse(key, &k) == 0) {
        if (self->kind != SM_KEYS_NONE && self->kind != k.kind)
            rc = SM_EKEYKIND;
        else if (k.beyond)
            rc = SM_ETOOBIG;
        else
            rc = sm_edit_put(self->e, k.kind, k.data, (size_t)k.size, &v.value);
        if (rc == 0) {
            self->kind = k.kind;
            self->changes++;
        } else if (rc == SM_EKEYKIND) {
            set_kind_error(self->kind, k.kind);
        } else if (k.beyond) {
            raise_class_format(SMPY_EXC_TooLargeError, SM_ETOOBIG,
                               "int keys must fit in a signed 64-bit integer");
        } else {
            raise_code(rc, self->name, self->path);
        }
        rc = rc == 0 ? 0 : -1;
    }
    value_release(&v);
done:
    Py_DECREF(key);
    Py_DECREF(value);
    return rc;
}

static int edit_delete(EditObject *self, PyObject *key) {
    key_ref k;
    if (edit_usable(self) < 0)
        return -1;
    switch (key_fit_map(key, self->kind, 1, &k)) {
    case KEY_ERROR:
        return -1;
    case KEY_CANNOT_BE_IN:
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    case KEY_USABLE:
        break;
    }
    int rc = sm_edit_del(self->e, k.data, (size_t)k.size);
    if (rc == SM_NOTFOUND) {
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    if (rc != 0) {
        raise_code(rc, self->name, self->path);
        return -1;
    }
    self->changes++;
    return 0;
}

static int edit_ass_subscript(EditObject *self, PyObject *key, PyObject *value) {
    return value == NULL ? edit_delete(self, key) : edit_put(self, key, value);
}

static Py_ssize_t edit_len(EditObject *self) {
    if (edit_usable(self) < 0)
        return -1;
    return (Py_ssize_t)sm_edit_count(self->e);
}

/* ---- commit and discard */

PyDoc_STRVAR(edit_commit_doc,
             "commit($self, /)\n--\n\n"
             "Publish the changes atomically under the name (or path): a delta layer over the "
             "current base, or, past compact_at (or with compact=True), one compacted snapshot.  "
             "Return True when it compacted.  ConflictError, publishing nothing, when the name was "
             "replaced since the edit began by a publisher that does not edit (share(), save(), "
             "publish()).  Runs without the GIL; the edit is spent afterwards.");

static PyObject *edit_commit(EditObject *self, PyObject *unused) {
    (void)unused;
    int rc, compacted = 0;
    if (edit_usable(self) < 0)
        return NULL;
    sm_edit *e = self->e;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_edit_commit(e, &compacted);
    sm_edit_free(e);
    Py_END_ALLOW_THREADS
    self->busy--;
    self->e = NULL;
    self->committed = 1;
    self->compacted = compacted;
    note_publish();
    if (rc != 0)
        return raise_code(rc, self->name, self->path);
    return PyBool_FromLong(compacted);
}

PyDoc_STRVAR(edit_discard_doc, "discard($self, /)\n--\n\nDrop the changes and let the name go: "
                               "nothing is published.  Discarding a spent edit does nothing.");

static PyObject *edit_discard(EditObject *self, PyObject *unused) {
    (void)unused;
    if (self->busy > 0) {
        (void)edit_usable(self); /* the RuntimeError */
        return NULL;
    }
    sm_edit_free(self->e);
    self->e = NULL;
    Py_RETURN_NONE;
}

static PyObject *edit_enter(EditObject *self, PyObject *unused) {
    (void)unused;
    if (edit_usable(self) < 0)
        return NULL;
    return Py_NewRef(self);
}

static PyObject *edit_exit(EditObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3)
        return nargs_error("__exit__", nargs, 3, 3);
    if (args[0] != Py_None || self->e == NULL) /* an exception in the block: nothing published */
        return edit_discard(self, NULL);
    PyObject *r = edit_commit(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

/* ---- attributes */

static PyObject *edit_get_changes(EditObject *self, void *closure) {
    (void)closure;
    if (edit_usable(self) < 0)
        return NULL;
    return PyLong_FromSize_t(sm_edit_changes(self->e));
}

static PyObject *edit_get_closed(EditObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->e == NULL);
}

static PyObject *edit_get_compacted(EditObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->compacted);
}

static PyObject *edit_get_key_kind(EditObject *self, void *closure) {
    (void)closure;
    if (self->kind == SM_KEYS_NONE)
        Py_RETURN_NONE;
    return PyUnicode_FromString(kind_name(self->kind));
}

static PyObject *edit_get_name(EditObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->name ? self->name : Py_None);
}

static PyObject *edit_get_path(EditObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->path ? self->path : Py_None);
}

static PyObject *edit_repr(EditObject *self) {
    const char *state = self->e ? "open" : self->committed ? "committed" : "discarded";
    if (self->e)
        return PyUnicode_FromFormat("<sharedmap.Editor of %R, %zu changes, %llu entries>",
                                    self->name ? self->name : self->path, sm_edit_changes(self->e),
                                    (unsigned long long)sm_edit_count(self->e));
    return PyUnicode_FromFormat("<sharedmap.Editor of %R, %s>", self->name ? self->name : self->path,
                                state);
}

/* ---- the iterator */

/* The order of keys in every map: bytewise, a prefix first (int keys are stored so that this
 * is their numeric order). */
static int key_order(const sm_buf *a, const sm_buf *b) {
    size_t n = a->size < b->size ? a->size : b->size;
    int c = n ? memcmp(a->data, b->data, n) : 0;
    return c ? c : (a->size > b->size) - (a->size < b->size);
}

static PyObject *edit_iter(EditObject *self) {
    module_state *st = state_of((PyObject *)self);
    if (st == NULL || edit_usable(self) < 0)
        return NULL;
    EditIterObject *it = PyObject_GC_New(EditIterObject, st->edititer_type);
    if (it == NULL)
        return NULL;
    int rc = sm_seek_rank(sm_edit_reader(self->e), 0, &it->c);
    it->edit = (EditObject *)Py_NewRef(self);
    it->i = 0;
    it->changes = self->changes;
    PyObject_GC_Track(it);
    if (rc != 0) {
        Py_DECREF(it);
        return raise_code(rc, self->name, self->path);
    }
    return (PyObject *)it;
}

static PyObject *edititer_next(EditIterObject *it) {
    EditObject *ed = it->edit;
    if (edit_usable(ed) < 0)
        return NULL;
    if (ed->changes != it->changes) {
        PyErr_SetString(PyExc_RuntimeError, "the edit changed during iteration");
        return NULL;
    }
    const sm_reader *cur = sm_edit_reader(ed->e);
    size_t np = sm_edit_changes(ed->e);
    for (;;) {
        sm_entry be, pe;
        int deleted = 0, rc;
        int have_b = it->c.rank < sm_reader_count(cur), have_p = it->i < np;
        if (!have_b && !have_p)
            return NULL;
        if (have_b && (rc = sm_cursor_get(&it->c, &be)) != 0)
            return raise_code(rc, ed->name, ed->path);
        if (have_p && (rc = sm_edit_change_at(ed->e, it->i, &pe, &deleted)) != 0)
            return raise_code(rc, ed->name, ed->path);
        int cmp = !have_p ? -1 : !have_b ? 1 : key_order(&be.key, &pe.key);
        if (cmp <= 0 && (rc = sm_cursor_next(&it->c)) != 0 && rc != SM_NOTFOUND)
            return raise_code(rc, ed->name, ed->path);
        if (cmp < 0)
            return key_to_py(ed->kind != SM_KEYS_NONE ? ed->kind : sm_reader_key_kind(cur), &be.key);
        it->i++;
        if (!deleted)
            return key_to_py(ed->kind, &pe.key);
    }
}

static void edititer_dealloc(EditIterObject *it) {
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->edit);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static int edititer_traverse(EditIterObject *it, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->edit);
    return 0;
}

static PyMethodDef edit_methods[] = {
    {"get", METH_CAST(edit_get), METH_FASTCALL, "get($self, key, default=None, /)\n--\n\n"
                                                "The value of key in the edited map, else default."},
    {"commit", (PyCFunction)edit_commit, METH_NOARGS, edit_commit_doc},
    {"discard", (PyCFunction)edit_discard, METH_NOARGS, edit_discard_doc},
    {"__enter__", (PyCFunction)edit_enter, METH_NOARGS, NULL},
    {"__exit__", METH_CAST(edit_exit), METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef edit_getset[] = {
    {"changes", (getter)edit_get_changes, NULL,
     "Pending changes: keys set or deleted since the edit began (each key once).", NULL},
    {"closed", (getter)edit_get_closed, NULL, "True once committed or discarded.", NULL},
    {"compacted", (getter)edit_get_compacted, NULL,
     "True when the commit wrote one compacted snapshot rather than a delta.", NULL},
    {"key_kind", (getter)edit_get_key_kind, NULL, "'str', 'bytes', 'int', or None (no keys yet).",
     NULL},
    {"name", (getter)edit_get_name, NULL, "The map edited (None for a file).", NULL},
    {"path", (getter)edit_get_path, NULL, "The file edited, as given (None for a map).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(edit_doc,
             "_Edit(name=None, *, path=None, compact_at=0.1, wait=True, compact=False, "
             "memory_limit=None, temp_dir=None)\n--\n\n"
             "The C half of sharedmap.Editor: an edit of the published map name (or of the "
             "snapshot file path), published by commit() as a delta layer over its base.");

static PyType_Slot edit_slots[] = {
    {Py_tp_new, (void *)edit_new},
    {Py_tp_dealloc, (void *)edit_dealloc},
    {Py_tp_traverse, (void *)edit_traverse},
    {Py_tp_repr, (void *)edit_repr},
    {Py_tp_iter, (void *)edit_iter},
    {Py_tp_methods, edit_methods},
    {Py_tp_getset, edit_getset},
    {Py_tp_doc, (void *)edit_doc},
    {Py_mp_subscript, (void *)edit_subscript},
    {Py_mp_ass_subscript, (void *)edit_ass_subscript},
    {Py_mp_length, (void *)edit_len},
    {Py_sq_contains, (void *)edit_contains},
    {0, NULL},
};

PyType_Spec edit_spec = {
    .name = "sharedmap._Edit",
    .basicsize = sizeof(EditObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = edit_slots,
};

static PyType_Slot edititer_slots[] = {
    {Py_tp_dealloc, (void *)edititer_dealloc},
    {Py_tp_traverse, (void *)edititer_traverse},
    {Py_tp_iter, (void *)PyObject_SelfIter},
    {Py_tp_iternext, (void *)edititer_next},
    {0, NULL},
};

PyType_Spec edititer_spec = {
    .name = "sharedmap._EditIterator",
    .basicsize = sizeof(EditIterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = edititer_slots,
};
