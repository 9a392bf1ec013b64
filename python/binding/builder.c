/* builder.c: the rbtree type.  "rbtree" is the original package's name for it, kept
 * for compatibility; it is no tree but the builder of the C API (sm_builder): a
 * private, writable dictionary that becomes a snapshot through share(), save() or
 * dump().  Edits, dict-style updates, copies from a reader or another rbtree, and
 * publishing.  Long work runs without the GIL, under the busy guard (binding.h). */
#include "convert.h"

/* Strict or soft lookup; *out points into the builder until its next change, and
 * *k (may be NULL) receives the parsed key. */
static inline lookup_result builder_lookup(BuilderObject *self, PyObject *key, int strict,
                                           sm_value *out, key_ref *kout) {
    /* parsed straight into *kout: an int key's data points into its key_ref (convert.h) */
    key_ref local, *k = kout != NULL ? kout : &local;
    int rc;
    if (builder_check(self) < 0)
        return LOOKUP_ERROR;
    switch (key_fit_map(key, sm_builder_key_kind(self->b), strict, k)) {
    case KEY_ERROR:
        return LOOKUP_ERROR;
    case KEY_CANNOT_BE_IN:
        return LOOKUP_MISSING;
    case KEY_USABLE:
        break;
    }
    rc = sm_builder_get(self->b, k->data, (size_t)k->size, out);
    if (rc == 0)
        return LOOKUP_FOUND;
    if (rc == SM_NOTFOUND)
        return LOOKUP_MISSING;
    set_error(rc);
    return LOOKUP_ERROR;
}

/* Put key -> value; with is_new, by sm_builder_put_new (the caller knows the key is not
 * in the builder). */
static int builder_put_as(BuilderObject *self, PyObject *key, PyObject *value, int is_new) {
    key_ref k;
    py_value v;
    int rc = -1;
    /* The key and value may be borrowed from a dict or list that Python code run from
     * here could empty: held.  The value is converted first, as that may run code (a
     * bytearray subclass's __buffer__, from 3.12), and nothing may run between the busy
     * check and the put. */
    Py_INCREF(key);
    Py_INCREF(value);
    if (value_from_py(value, &v) < 0)
        goto done;
    if (builder_check(self) == 0 && key_parse(key, &k) == 0) {
        sm_key_kind have = sm_builder_key_kind(self->b);
        if (!k.beyond)
            rc = (is_new ? sm_builder_put_new : sm_builder_put)(self->b, k.kind, k.data,
                                                               (size_t)k.size, &v.value);
        else /* an int no map can hold: the kind error first, as for any other int */
            rc = have != SM_KEYS_NONE && have != SM_KEYS_INT ? SM_EKEYKIND : SM_ETOOBIG;
        if (rc == SM_EKEYKIND)
            set_kind_error(have, k.kind);
        else if (k.beyond)
            raise_class_format(SMPY_EXC_TooLargeError, SM_ETOOBIG,
                               "int keys must fit in a signed 64-bit integer");
        else if (rc != 0)
            set_error(rc);
        rc = rc == 0 ? 0 : -1;
    }
    value_release(&v);
done:
    Py_DECREF(key);
    Py_DECREF(value);
    return rc;
}

static int builder_put(BuilderObject *self, PyObject *key, PyObject *value) {
    return builder_put_as(self, key, value, 0);
}

/* Whether key_parse() and value_from_py() take these without running Python code, and
 * equal bytes mean equal keys (not so for a subclass, which may define its own ==). */
static inline int plain_key(PyObject *k) {
    return PyUnicode_CheckExact(k) || PyBytes_CheckExact(k) || PyLong_CheckExact(k);
}
static inline int plain_value(PyObject *v) {
    return PyUnicode_CheckExact(v) || PyBytes_CheckExact(v) || PyLong_CheckExact(v) ||
           PyFloat_CheckExact(v) || PyBool_Check(v) || v == Py_None;
}

/* The items of an exact dict.  Its keys are distinct, and so are their bytes while they are
 * plain: into an empty builder those go in by sm_builder_put_new, which builds no hash
 * index (rbtree(d) then share() never needs one: rbtree(d) of 10M took 3.2 s instead of
 * 5.0 s in make bench-scale, with no index in memory).  That holds until the first entry that is not plain, whose
 * conversion might run code that puts into this builder: it and every entry after it go
 * through builder_put, which looks each key up. */
static int builder_put_dict(BuilderObject *self, PyObject *d) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int fresh = sm_builder_count(self->b) == 0;
    if (fresh && PyDict_GET_SIZE(d) > 0) {
        int rc = sm_builder_reserve(self->b, (size_t)PyDict_GET_SIZE(d));
        if (rc != 0 && rc != SM_ETOOBIG) { /* too many: the put that passes the limit says so */
            set_error(rc);
            return -1;
        }
    }
    while (PyDict_Next(d, &pos, &k, &v)) {
        fresh = fresh && plain_key(k) && plain_value(v);
        if (builder_put_as(self, k, v, fresh) < 0)
            return -1;
    }
    return 0;
}

static int builder_delete(BuilderObject *self, PyObject *key) {
    key_ref k;
    int rc;
    if (builder_check(self) < 0)
        return -1;
    switch (key_fit_map(key, sm_builder_key_kind(self->b), 1, &k)) {
    case KEY_ERROR:
        return -1;
    case KEY_CANNOT_BE_IN:
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    case KEY_USABLE:
        break;
    }
    rc = sm_builder_del(self->b, k.data, (size_t)k.size);
    if (rc == SM_NOTFOUND) {
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    if (rc != 0) {
        set_error(rc);
        return -1;
    }
    return 0;
}

static PyObject *builder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    BuilderObject *self;
    int rc;
    (void)args;
    (void)kwds;
    self = (BuilderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    rc = sm_builder_new(&self->b);
    if (rc != 0) {
        Py_DECREF(self);
        return set_error(rc);
    }
    return (PyObject *)self;
}

static void builder_dealloc(BuilderObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    sm_builder_free(self->b);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Copy every entry of a snapshot in, all or nothing (sm_builder_put_reader: one linear
 * pass into an empty builder), in C, without the GIL.  Filled in place, b changes
 * sm_builder_version for the iterators to see. */
static int builder_merge_snapshot(BuilderObject *self, SnapshotObject *s) {
    sm_key_kind have = sm_builder_key_kind(self->b);
    int rc;
    Py_INCREF(s);
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_builder_put_reader(self->b, s->r);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc == SM_EKEYKIND)
        set_kind_error(have, s->kind);
    else if (rc != 0)
        set_error(rc);
    Py_DECREF(s);
    return rc == 0 ? 0 : -1;
}

/* Copy every entry of another builder in, in C, without the GIL. */
static int builder_merge_builder(BuilderObject *self, BuilderObject *other) {
    sm_key_kind have = sm_builder_key_kind(self->b), theirs;
    size_t i, n;
    int rc = 0;
    if (other == self)
        return 0;
    if (builder_check(other) < 0)
        return -1;
    theirs = sm_builder_key_kind(other->b);
    n = sm_builder_count(other->b);
    if (n == 0)
        return 0;
    if (have != SM_KEYS_NONE && have != theirs) {
        set_kind_error(have, theirs);
        return -1;
    }
    self->busy++;
    other->busy++;
    Py_BEGIN_ALLOW_THREADS
    sm_entry e;
    for (i = 0; i < n; i++) {
        if ((rc = sm_builder_at(other->b, i, &e)) != 0)
            break;
        if ((rc = sm_builder_put(self->b, theirs, e.key.data, e.key.size, &e.value)) != 0)
            break;
    }
    Py_END_ALLOW_THREADS
    other->busy--;
    self->busy--;
    if (rc != 0) {
        set_error(rc);
        return -1;
    }
    return 0;
}

/* dict.update semantics: a mapping (anything with keys()), or an iterable of
 * pairs, then keyword arguments. */
static int builder_update_common(BuilderObject *self, PyObject *arg, PyObject *kwds) {
    module_state *st;
    if (builder_check(self) < 0)
        return -1;
    if (arg != NULL) {
        if ((st = state_of((PyObject *)self)) == NULL)
            return -1;
        if (PyObject_TypeCheck(arg, st->reader_type)) {
            SnapshotObject *s = reader_hold((ReaderObject *)arg);
            int rc = s == NULL ? -1 : builder_merge_snapshot(self, s);
            Py_XDECREF(s);
            if (rc < 0)
                return -1;
        } else if (PyObject_TypeCheck(arg, st->builder_type)) {
            if (builder_merge_builder(self, (BuilderObject *)arg) < 0)
                return -1;
        } else if (PyDict_CheckExact(arg)) {
            if (builder_put_dict(self, arg) < 0)
                return -1;
        } else if (PyObject_HasAttrString(arg, "keys")) {
            PyObject *keys = PyMapping_Keys(arg), *it, *k;
            int rc = 0;
            if (keys == NULL)
                return -1;
            it = PyObject_GetIter(keys);
            Py_DECREF(keys);
            if (it == NULL)
                return -1;
            while (rc == 0 && (k = PyIter_Next(it)) != NULL) {
                PyObject *v = PyObject_GetItem(arg, k);
                rc = v == NULL ? -1 : builder_put(self, k, v);
                Py_XDECREF(v);
                Py_DECREF(k);
            }
            Py_DECREF(it);
            if (rc < 0 || PyErr_Occurred())
                return -1;
        } else {
            PyObject *it = PyObject_GetIter(arg), *item;
            Py_ssize_t i = 0;
            int rc = 0;
            if (it == NULL)
                return -1;
            while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
                PyObject *pair = PySequence_Fast(item, "");
                if (pair == NULL) {
                    if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                        PyErr_Clear();
                        PyErr_Format(PyExc_TypeError,
                                     "cannot convert rbtree update sequence element #%zd to a "
                                     "sequence",
                                     i);
                    }
                    rc = -1;
                } else {
                    if (PySequence_Fast_GET_SIZE(pair) != 2) {
                        PyErr_Format(PyExc_ValueError,
                                     "rbtree update sequence element #%zd has length %zd; 2 is "
                                     "required",
                                     i, PySequence_Fast_GET_SIZE(pair));
                        rc = -1;
                    } else {
                        rc = builder_put(self, PySequence_Fast_GET_ITEM(pair, 0),
                                         PySequence_Fast_GET_ITEM(pair, 1));
                    }
                    Py_DECREF(pair);
                }
                Py_DECREF(item);
                i++;
            }
            Py_DECREF(it);
            if (rc < 0 || PyErr_Occurred())
                return -1;
        }
    }
    if (kwds != NULL) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(kwds, &pos, &k, &v))
            if (builder_put(self, k, v) < 0)
                return -1;
    }
    return 0;
}

static int builder_init(BuilderObject *self, PyObject *args, PyObject *kwds) {
    PyObject *arg = NULL;
    if (!PyArg_UnpackTuple(args, "rbtree", 0, 1, &arg))
        return -1;
    return builder_update_common(self, arg, kwds);
}

PyDoc_STRVAR(builder_update_doc,
             "update($self, other=(), /, **kwargs)\n--\n\n"
             "Insert the items of a mapping (or an iterable of pairs), then kwargs.  From a "
             "sharedmap or another rbtree this copies in C, without Python objects.");

static PyObject *builder_update(BuilderObject *self, PyObject *args, PyObject *kwds) {
    PyObject *arg = NULL;
    if (!PyArg_UnpackTuple(args, "update", 0, 1, &arg))
        return NULL;
    if (builder_update_common(self, arg, kwds) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(builder_set_doc, "set($self, key, value, /)\n--\n\n"
                              "Insert or overwrite; return True.  Raises on failure.");

static PyObject *builder_set(BuilderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2)
        return nargs_error("set", nargs, 2, 2);
    if (builder_put(self, args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(builder_get_doc, "get($self, key, default=None, /)\n--\n\n"
                              "Return the value for key if key is in the map, else default.");

static PyObject *builder_get(BuilderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    sm_value v;
    if (nargs != 1 && nargs != 2)
        return nargs_error("get", nargs, 1, 2);
    switch (builder_lookup(self, args[0], 1, &v, NULL)) {
    case LOOKUP_FOUND:
        return value_to_py(&v);
    case LOOKUP_MISSING:
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    default:
        return NULL;
    }
}

static PyObject *builder_subscript(BuilderObject *self, PyObject *key) {
    sm_value v;
    switch (builder_lookup(self, key, 1, &v, NULL)) {
    case LOOKUP_FOUND:
        return value_to_py(&v);
    case LOOKUP_MISSING:
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    default:
        return NULL;
    }
}

static int builder_ass_subscript(BuilderObject *self, PyObject *key, PyObject *value) {
    if (value == NULL)
        return builder_delete(self, key);
    return builder_put(self, key, value);
}

static int builder_contains(BuilderObject *self, PyObject *key) {
    lookup_result r = builder_lookup(self, key, 1, NULL, NULL);
    return r == LOOKUP_ERROR ? -1 : r == LOOKUP_FOUND;
}

Py_ssize_t builder_len(BuilderObject *self) {
    if (builder_check(self) < 0) /* b may be replaced under us by update() */
        return -1;
    return (Py_ssize_t)sm_builder_count(self->b);
}

static PyObject *builder_iter_dir(BuilderObject *self, int mode, int reverse) {
    module_state *st = state_of((PyObject *)self);
    return st ? builditer_new(st, self, mode, reverse) : NULL;
}

static PyObject *builder_iter(BuilderObject *self) {
    return builder_iter_dir(self, ITER_KEYS, 0);
}

static PyObject *builder_reversed(BuilderObject *self, PyObject *unused) {
    (void)unused;
    return builder_iter_dir(self, ITER_KEYS, 1);
}

/* ---- what views and == need of a builder */

static Py_ssize_t builder_view_len(PyObject *owner) {
    return builder_len((BuilderObject *)owner);
}

static PyObject *builder_view_iter(module_state *st, PyObject *owner, int mode, int reverse) {
    return builditer_new(st, (BuilderObject *)owner, mode, reverse);
}

static lookup_result builder_view_lookup(PyObject *owner, PyObject *key, int strict,
                                         sm_value *out) {
    return builder_lookup((BuilderObject *)owner, key, strict, out, NULL);
}

const view_ops builder_view_ops = {builder_view_len, builder_view_iter, builder_view_lookup};

static PyObject *builder_keys(BuilderObject *self, PyObject *unused) {
    (void)unused;
    return make_view((PyObject *)self, (PyObject *)self, &builder_view_ops, ITER_KEYS);
}
static PyObject *builder_values(BuilderObject *self, PyObject *unused) {
    (void)unused;
    return make_view((PyObject *)self, (PyObject *)self, &builder_view_ops, ITER_VALUES);
}
static PyObject *builder_items(BuilderObject *self, PyObject *unused) {
    (void)unused;
    return make_view((PyObject *)self, (PyObject *)self, &builder_view_ops, ITER_ITEMS);
}

PyDoc_STRVAR(builder_pop_doc,
             "pop($self, key, default=<unrepresentable>, /)\n--\n\n"
             "Remove key and return its value; if key is missing return default, or raise "
             "KeyError if no default was given.");

static PyObject *builder_pop(BuilderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    sm_value v;
    key_ref k;
    PyObject *res;
    int rc;
    if (nargs != 1 && nargs != 2)
        return nargs_error("pop", nargs, 1, 2);
    switch (builder_lookup(self, args[0], 1, &v, &k)) {
    case LOOKUP_FOUND:
        break;
    case LOOKUP_MISSING:
        if (nargs == 2)
            return Py_NewRef(args[1]);
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    default:
        return NULL;
    }
    res = value_to_py(&v); /* before the delete frees it */
    if (res == NULL)
        return NULL;
    rc = sm_builder_del(self->b, k.data, (size_t)k.size);
    if (rc != 0) {
        Py_DECREF(res);
        return set_error(rc);
    }
    return res;
}

PyDoc_STRVAR(builder_popitem_doc,
             "popitem($self, /)\n--\n\n"
             "Remove and return the (key, value) pair with the largest key (SortedDict's "
             "convention).  KeyError if the map is empty.");

static PyObject *builder_popitem(BuilderObject *self, PyObject *unused) {
    size_t n;
    sm_entry e;
    PyObject *key, *value, *item;
    key_ref k;
    int rc;
    (void)unused;
    if (builder_check(self) < 0)
        return NULL;
    n = sm_builder_count(self->b);
    if (n == 0) {
        PyErr_SetString(PyExc_KeyError, "popitem(): rbtree is empty");
        return NULL;
    }
    rc = sm_builder_at(self->b, n - 1, &e);
    if (rc != 0)
        return set_error(rc);
    /* The key and value first (no allocation the collector counts), then the delete,
     * through our own copy of the key (e.key points into the entry being freed), and
     * only then the tuple, whose allocation may start a collection whose callbacks
     * could use this rbtree: by then it is consistent again. */
    key = key_to_py(sm_builder_key_kind(self->b), &e.key);
    value = key == NULL ? NULL : value_to_py(&e.value);
    if (value == NULL || key_parse(key, &k) < 0 ||
        (rc = sm_builder_del(self->b, k.data, (size_t)k.size)) != 0) {
        Py_XDECREF(key);
        Py_XDECREF(value);
        return PyErr_Occurred() ? NULL : set_error(rc);
    }
    item = PyTuple_Pack(2, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return item;
}

PyDoc_STRVAR(builder_setdefault_doc,
             "setdefault($self, key, default=None, /)\n--\n\n"
             "Return the value of key; if key is missing, insert default first and return it.");

static PyObject *builder_setdefault(BuilderObject *self, PyObject *const *args,
                                    Py_ssize_t nargs) {
    sm_value v;
    PyObject *dflt;
    if (nargs != 1 && nargs != 2)
        return nargs_error("setdefault", nargs, 1, 2);
    dflt = nargs == 2 ? args[1] : Py_None;
    switch (builder_lookup(self, args[0], 1, &v, NULL)) {
    case LOOKUP_FOUND:
        return value_to_py(&v);
    case LOOKUP_MISSING:
        if (builder_put(self, args[0], dflt) < 0)
            return NULL;
        return Py_NewRef(dflt);
    default:
        return NULL;
    }
}

static PyObject *builder_clear_method(BuilderObject *self, PyObject *unused) {
    (void)unused;
    if (builder_check(self) < 0)
        return NULL;
    sm_builder_clear(self->b);
    self->epoch++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(builder_copy_doc, "copy($self, /)\n--\n\nA new rbtree with the same items.");

static PyObject *builder_copy(BuilderObject *self, PyObject *unused) {
    module_state *st = state_of((PyObject *)self);
    BuilderObject *copy;
    (void)unused;
    if (st == NULL || builder_check(self) < 0)
        return NULL;
    copy = (BuilderObject *)builder_new(st->builder_type, NULL, NULL);
    if (copy == NULL)
        return NULL;
    if (builder_merge_builder(copy, self) < 0) {
        Py_DECREF(copy);
        return NULL;
    }
    return (PyObject *)copy;
}

static PyObject *builder_richcompare(BuilderObject *self, PyObject *other, int op) {
    module_state *st;
    int r;
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    if ((st = state_of((PyObject *)self)) == NULL)
        return NULL;
    r = mapping_equal(st, &builder_view_ops, (PyObject *)self, other);
    if (r < 0)
        return NULL;
    if (r == 2)
        Py_RETURN_NOTIMPLEMENTED;
    return PyBool_FromLong(op == Py_EQ ? r : !r);
}

static PyObject *builder_as_dict(BuilderObject *self) {
    PyObject *d = PyDict_New(), *it, *item;
    module_state *st = state_of((PyObject *)self);
    if (d == NULL || st == NULL)
        goto error;
    it = builditer_new(st, self, ITER_ITEMS, 0);
    if (it == NULL)
        goto error;
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = PyDict_SetItem(d, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            goto error;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        goto error;
    return d;
error:
    Py_XDECREF(d);
    return NULL;
}

static PyObject *builder_repr(BuilderObject *self) {
    const char *name = strrchr(Py_TYPE(self)->tp_name, '.');
    PyObject *d, *r;
    name = name ? name + 1 : Py_TYPE(self)->tp_name;
    if (self->busy > 0)
        return PyUnicode_FromFormat("<%s (busy)>", name);
    d = builder_as_dict(self);
    if (d == NULL)
        return NULL;
    r = PyUnicode_FromFormat("%s(%R)", name, d);
    Py_DECREF(d);
    return r;
}

static PyObject *builder_reduce(BuilderObject *self, PyObject *unused) {
    PyObject *d;
    (void)unused;
    if (builder_check(self) < 0 || (d = builder_as_dict(self)) == NULL)
        return NULL;
    return Py_BuildValue("O(N)", (PyObject *)Py_TYPE(self), d);
}

PyDoc_STRVAR(builder_share_doc,
             "share($self, name, force=False, mode=0o600)\n--\n\n"
             "Publish a snapshot of the map in shared memory under name; return True.  "
             "FileExistsError if name exists, unless force, which replaces it atomically "
             "(readers attached to the old version keep it).  mode: permission bits of the new "
             "map (the umask does not apply).  Runs without the GIL.");

static PyObject *builder_share(BuilderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name", "force", "mode", NULL};
    PyObject *name_obj, *fsname;
    int force = 0, mode = (int)SM_DEFAULT_MODE, rc;
    /* Every argument is converted (which may run Python code) before the busy check:
     * nothing can run between the check and busy++. */
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|pi:share", kwlist, &name_obj, &force, &mode))
        return NULL;
    if (check_mode(mode) < 0 || (fsname = name_to_bytes(name_obj)) == NULL)
        return NULL;
    if (builder_check(self) < 0) {
        Py_DECREF(fsname);
        return NULL;
    }
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_publish(self->b, NULL, PyBytes_AS_STRING(fsname), force ? SM_FORCE : 0u, (unsigned)mode);
    Py_END_ALLOW_THREADS
    note_publish();
    self->busy--;
    Py_DECREF(fsname);
    if (rc != 0)
        return raise_code(rc, name_obj, NULL);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(builder_save_doc,
             "save($self, path, force=False, mode=0o600)\n--\n\n"
             "Write the snapshot to the file path atomically (the same bytes as dump()); return "
             "True.  FileExistsError if path exists, unless force.  Runs without the GIL.");

static PyObject *builder_save(BuilderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "force", "mode", NULL};
    PyObject *path_obj, *fs = NULL;
    int force = 0, mode = (int)SM_DEFAULT_MODE, rc;
    /* The path is converted (its __fspath__ may run any code, switch threads, even
     * start a dump() of this rbtree) before the busy check, never between the check
     * and busy++. */
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|pi:save", kwlist, &path_obj, &force, &mode))
        return NULL;
    if (check_mode(mode) < 0 || !PyUnicode_FSConverter(path_obj, &fs))
        return NULL;
    if (builder_check(self) < 0) {
        Py_DECREF(fs);
        return NULL;
    }
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_save(self->b, PyBytes_AS_STRING(fs), force ? SM_FORCE : 0u, (unsigned)mode);
    Py_END_ALLOW_THREADS
    note_publish();
    self->busy--;
    Py_DECREF(fs);
    if (rc != 0)
        return raise_code(rc, NULL, path_obj);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(builder_dump_doc,
             "dump($self, /)\n--\n\n"
             "The snapshot as bytes: exactly what share() publishes; sharedmap.loads() opens it.");

static PyObject *builder_dump(BuilderObject *self, PyObject *unused) {
    uint64_t size = 0;
    PyObject *out = NULL;
    int rc;
    (void)unused;
    if (builder_check(self) < 0)
        return NULL;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_builder_layout(self->b, &size);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        goto done;
    if (size > (uint64_t)PY_SSIZE_T_MAX) {
        rc = SM_ETOOBIG;
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL)
        goto done;
    {
        /* stamped with the time of the layout, as share() and save() are: an unchanged
         * rbtree gives the same bytes whichever way it is written */
        char *buf = PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        rc = sm_builder_write(self->b, buf, size, SM_CREATED_AUTO);
        Py_END_ALLOW_THREADS
    }
done:
    self->busy--;
    if (rc != 0) {
        Py_XDECREF(out);
        return set_error(rc);
    }
    return out;
}

PyDoc_STRVAR(builder_remove_doc,
             "remove(name, /)\n--\n\n"
             "Unpublish the map name (from any process).  Readers already attached keep "
             "working.  Return True if it was removed, False if there was no such map.");

static PyObject *builder_remove(PyObject *unused, PyObject *name_obj) {
    PyObject *fsname = name_to_bytes(name_obj);
    int rc;
    (void)unused;
    if (fsname == NULL)
        return NULL;
    rc = sm_unpublish(NULL, PyBytes_AS_STRING(fsname));
    note_publish();
    Py_DECREF(fsname);
    if (rc == -ENOENT)
        Py_RETURN_FALSE;
    if (rc != 0)
        return raise_code(rc, name_obj, NULL);
    Py_RETURN_TRUE;
}

static PyMethodDef builder_methods[] = {
    {"set", METH_CAST(builder_set), METH_FASTCALL, builder_set_doc},
    {"get", METH_CAST(builder_get), METH_FASTCALL, builder_get_doc},
    {"get_many", METH_CAST(builder_get_many), METH_FASTCALL, get_many_doc},
    {"get_array", METH_CAST(builder_get_array), METH_VARARGS | METH_KEYWORDS, get_array_doc},
    {"pop", METH_CAST(builder_pop), METH_FASTCALL, builder_pop_doc},
    {"popitem", (PyCFunction)builder_popitem, METH_NOARGS, builder_popitem_doc},
    {"setdefault", METH_CAST(builder_setdefault), METH_FASTCALL, builder_setdefault_doc},
    {"update", METH_CAST(builder_update), METH_VARARGS | METH_KEYWORDS, builder_update_doc},
    {"clear", (PyCFunction)builder_clear_method, METH_NOARGS, "Remove every item."},
    {"copy", (PyCFunction)builder_copy, METH_NOARGS, builder_copy_doc},
    {"keys", (PyCFunction)builder_keys, METH_NOARGS, "A set-like view of the keys, in key order."},
    {"values", (PyCFunction)builder_values, METH_NOARGS, "A view of the values, in key order."},
    {"items", (PyCFunction)builder_items, METH_NOARGS,
     "A set-like view of the (key, value) pairs, in key order."},
    {"__reversed__", (PyCFunction)builder_reversed, METH_NOARGS,
     "Iterate over the keys in descending order."},
    {"share", METH_CAST(builder_share), METH_VARARGS | METH_KEYWORDS, builder_share_doc},
    {"save", METH_CAST(builder_save), METH_VARARGS | METH_KEYWORDS, builder_save_doc},
    {"dump", (PyCFunction)builder_dump, METH_NOARGS, builder_dump_doc},
    {"remove", (PyCFunction)builder_remove, METH_O | METH_STATIC, builder_remove_doc},
    {"__reduce__", (PyCFunction)builder_reduce, METH_NOARGS, NULL},
    {"__class_getitem__", (PyCFunction)Py_GenericAlias, METH_O | METH_CLASS,
     "See PEP 585."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef builder_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(BuilderObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(builder_doc,
             "rbtree(other=(), /, **kwargs)\n--\n\n"
             "A private, writable dictionary, iterated in sorted key order, that becomes a shared "
             "snapshot: share(name), save(path) or dump().  Built like dict(): from a mapping, an "
             "iterable of pairs or keyword arguments; from a sharedmap it is one linear copy.\n\n"
             "Keys are str or bytes (one kind per map); values str, bytes, int (64-bit), float, "
             "bool or None.");

static PyType_Slot builder_slots[] = {
    {Py_tp_new, (void *)builder_new},
    {Py_tp_init, (void *)builder_init},
    {Py_tp_dealloc, (void *)builder_dealloc},
    {Py_tp_repr, (void *)builder_repr},
    {Py_tp_hash, (void *)PyObject_HashNotImplemented},
    {Py_tp_richcompare, (void *)builder_richcompare},
    {Py_tp_iter, (void *)builder_iter},
    {Py_tp_methods, builder_methods},
    {Py_tp_members, builder_members},
    {Py_tp_doc, (void *)builder_doc},
    {Py_mp_length, (void *)builder_len},
    {Py_mp_subscript, (void *)builder_subscript},
    {Py_mp_ass_subscript, (void *)builder_ass_subscript},
    {Py_sq_contains, (void *)builder_contains},
    {0, NULL},
};

PyType_Spec builder_spec = {
    .name = "sharedmap.rbtree",
    .basicsize = sizeof(BuilderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_MAPPING |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = builder_slots,
};
