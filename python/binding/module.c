/* module.c: the extension module sharedmap._sharedmap: its state (the types it
 * creates from the PyType_Spec of each file), multi-phase init, and the module
 * functions open(), loads(), _list() and gc(). */
#include "binding.h"

#include <stdlib.h>
#include <unistd.h>

uint64_t local_publishes;

PyObject *module_of_type(PyTypeObject *tp) {
#if PY_VERSION_HEX >= 0x030B0000
    return PyType_GetModuleByDef(tp, &sharedmap_module);
#else
    PyObject *mro = tp->tp_mro;
    Py_ssize_t i, n = mro ? PyTuple_GET_SIZE(mro) : 0;
    for (i = 0; i < n; i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        PyObject *mod;
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE))
            continue;
        mod = PyType_GetModule(base);
        if (mod == NULL) {
            PyErr_Clear();
            continue;
        }
        if (PyModule_GetDef(mod) == &sharedmap_module)
            return mod;
    }
    PyErr_Format(PyExc_TypeError, "%s is not a sharedmap type", tp->tp_name);
    return NULL;
#endif
}

module_state *state_of(PyObject *self) {
    PyObject *mod = module_of_type(Py_TYPE(self));
    return mod ? module_get_state(mod) : NULL;
}

/* ------------------------------------------------------------ module functions */

/* An absolute version of the fs-encoded path @p fs (bytes). */
static PyObject *absolute_fspath(PyObject *fs) {
    const char *p = PyBytes_AS_STRING(fs);
    char *cwd;
    PyObject *r;
    if (p[0] == '/')
        return Py_NewRef(fs);
    cwd = getcwd(NULL, 0);
    if (cwd == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    r = PyBytes_FromFormat("%s/%s", cwd, p);
    free(cwd);
    return r;
}

PyDoc_STRVAR(mod_open_doc,
             "open(path, /)\n--\n\n"
             "Open a snapshot file (written by rbtree.save() or write()) read-only by mmap, as a "
             "sharedmap; or a map set, its directory (or its MANIFEST) or a packed set file, as "
             "one sharedmap of all its shards.  path may be str, bytes or os.PathLike.");

static PyObject *mod_open(PyObject *module, PyObject *arg) {
    module_state *st = module_get_state(module);
    PyObject *fs = NULL, *path = NULL, *abs = NULL;
    ReaderObject *self = NULL;
    sm_reader *r;
    int rc;
    /* __fspath__ is called once: what is opened is what path and refresh() name */
    path = PyOS_FSPath(arg);
    if (path == NULL)
        return NULL;
    if (!PyUnicode_FSConverter(path, &fs)) {
        Py_DECREF(path);
        return NULL;
    }
    rc = sm_reader_open_file(&r, PyBytes_AS_STRING(fs));
    if (rc != 0) {
        raise_open_error(rc, path, PyBytes_AS_STRING(fs));
        goto done;
    }
    abs = absolute_fspath(fs);
    if (abs == NULL) {
        sm_reader_close(r);
        goto done;
    }
    self = reader_alloc(st->reader_type, st, r, NULL);
    if (self == NULL)
        goto done;
    self->path = Py_NewRef(path);
    self->fspath = Py_NewRef(abs);
done:
    Py_XDECREF(abs);
    Py_DECREF(path);
    Py_DECREF(fs);
    return (PyObject *)self;
}

PyDoc_STRVAR(mod_loads_doc,
             "loads(data, /)\n--\n\n"
             "Open a snapshot held in a bytes-like object (e.g. rbtree.dump()) as a sharedmap, "
             "without copying it: the object is kept (and its buffer held) while the map is "
             "used.");

static PyObject *mod_loads(PyObject *module, PyObject *data) {
    module_state *st = module_get_state(module);
    Py_buffer view;
    sm_reader *r;
    int rc;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    rc = sm_reader_open_mem(&r, view.buf, (size_t)view.len);
    if (rc != 0) {
        PyBuffer_Release(&view);
        return set_error(rc);
    }
    return (PyObject *)reader_alloc(st->reader_type, st, r, &view);
}

/* Optional directory argument: None means the default (/dev/shm). */
static int dir_arg(PyObject *o, PyObject **fs) {
    *fs = NULL;
    if (o == NULL || o == Py_None)
        return 0;
    return PyUnicode_FSConverter(o, fs) ? 0 : -1;
}

static int list_cb(const char *name, const sm_info *info, int err, void *ctx) {
    PyObject *list = (PyObject *)ctx, *pyname, *t;
    int rc;
    const char *kind = info->key_kind == SM_KEYS_NONE ? NULL : kind_name(info->key_kind);
    /* a name in the directory need not be UTF-8: decode it as os.listdir() would */
    pyname = PyUnicode_DecodeFSDefault(name);
    if (pyname == NULL)
        return 1;
    if (err == 0)
        t = Py_BuildValue("(NKKKzO)", pyname, (unsigned long long)info->size,
                          (unsigned long long)info->count, (unsigned long long)info->created_ns,
                          kind, Py_None);
    else
        t = Py_BuildValue("(NKOOOs)", pyname, (unsigned long long)info->size, Py_None, Py_None,
                          Py_None, sm_strerror(err));
    if (t == NULL)
        return 1;
    rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc < 0 ? 1 : 0;
}

PyDoc_STRVAR(mod_list_doc,
             "_list(dir=None, /)\n--\n\n"
             "The published maps, unsorted, as (name, size, entries, created_ns, key_kind, error) "
             "tuples; entries, created_ns and key_kind are None and error a message for maps "
             "whose header could not be read.  Use sharedmap.list_maps().");

static int bitmap_list_cb(const char *name, const sm_bitmap_info *info, int err, void *ctx) {
    PyObject *list = (PyObject *)ctx, *pyname, *t;
    int rc;
    pyname = PyUnicode_DecodeFSDefault(name);
    if (pyname == NULL)
        return 1;
    if (err == 0)
        t = Py_BuildValue("(NKKKO)", pyname, (unsigned long long)info->file_size,
                          (unsigned long long)info->size, (unsigned long long)info->created_ns,
                          Py_None);
    else
        t = Py_BuildValue("(NKOOs)", pyname, (unsigned long long)info->file_size, Py_None, Py_None,
                          sm_strerror(err));
    if (t == NULL)
        return 1;
    rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc < 0 ? 1 : 0;
}

/* _list() and _list_bitmaps(): the listing of one kind of object in dir (args[0]). */
static PyObject *listing(const char *fname, PyObject *const *args, Py_ssize_t nargs, int bitmaps) {
    PyObject *fs, *list;
    const char *dir;
    int rc;
    if (nargs > 1)
        return nargs_error(fname, nargs, 0, 1);
    if (dir_arg(nargs ? args[0] : NULL, &fs) < 0)
        return NULL;
    list = PyList_New(0);
    if (list == NULL) {
        Py_XDECREF(fs);
        return NULL;
    }
    dir = fs ? PyBytes_AS_STRING(fs) : NULL;
    rc = bitmaps ? sm_bitmap_list(dir, bitmap_list_cb, list) : sm_list(dir, list_cb, list);
    if (rc != 0) {
        if (!PyErr_Occurred())
            raise_code(rc, NULL, nargs && args[0] != Py_None ? args[0] : NULL);
        Py_DECREF(list);
        list = NULL;
    }
    Py_XDECREF(fs);
    return list;
}

static PyObject *mod_list(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return listing("_list", args, nargs, 0);
}

PyDoc_STRVAR(mod_list_bitmaps_doc,
             "_list_bitmaps(dir=None, /)\n--\n\n"
             "The shared bitmaps, unsorted, as (name, file_size, bits, created_ns, error) tuples; "
             "bits and created_ns are None and error a message for bitmaps whose header could "
             "not be read.  Use sharedmap.list_bitmaps().");

static PyObject *mod_list_bitmaps(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return listing("_list_bitmaps", args, nargs, 1);
}

PyDoc_STRVAR(mod_gc_doc,
             "gc(dir=None, /)\n--\n\n"
             "Remove the debris of publishes whose writer died (temporary objects no live process "
             "holds); never touches a published map or a publish in progress.  Return how many "
             "were removed.");

static PyObject *mod_gc(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *fs;
    unsigned removed = 0;
    int rc;
    (void)module;
    if (nargs > 1)
        return nargs_error("gc", nargs, 0, 1);
    if (dir_arg(nargs ? args[0] : NULL, &fs) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_gc(fs ? PyBytes_AS_STRING(fs) : NULL, &removed);
    Py_END_ALLOW_THREADS
    Py_XDECREF(fs);
    if (rc != 0)
        return set_error(rc);
    return PyLong_FromUnsignedLong(removed);
}

PyDoc_STRVAR(mod_error_doc,
             "_error(code, name=None, path=None, /)\n--\n\n"
             "The exception that the library's error code raises (not raised), for tests and "
             "tools; the codes are in ERROR_CODES.");

static PyObject *mod_error(PyObject *module, PyObject *args) {
    int code;
    PyObject *name = Py_None, *path = Py_None, *type, *value, *tb;
    (void)module;
    if (!PyArg_ParseTuple(args, "i|OO:_error", &code, &name, &path))
        return NULL;
    if (code >= 0) {
        PyErr_SetString(PyExc_ValueError, "error codes are negative");
        return NULL;
    }
    raise_code(code, name == Py_None ? NULL : name, path == Py_None ? NULL : path);
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* ERROR_CODES: {"SM_ECORRUPT": -30707, ...}, from SM_ERROR_MAP. */
static int add_error_codes(PyObject *module) {
    PyObject *d = PyDict_New(), *v;
    int rc = 0;
    if (d == NULL)
        return -1;
#define SMPY_XX_CODE(name, value, pyclass, msg)                                 \
    if (rc == 0) {                                                               \
        v = PyLong_FromLong(value);                                              \
        rc = v == NULL ? -1 : PyDict_SetItemString(d, #name, v);                 \
        Py_XDECREF(v);                                                           \
    }
    SM_ERROR_MAP(SMPY_XX_CODE)
#undef SMPY_XX_CODE
    if (rc == 0)
        rc = PyModule_AddObject(module, "ERROR_CODES", d);
    if (rc < 0)
        Py_DECREF(d);
    return rc;
}

PyDoc_STRVAR(mod_check_name_doc,
             "_check_name(name, /)\n--\n\n"
             "Raise InvalidNameError unless name can name a map (the library's rule: 1 to "
             "NAME_MAX bytes, no '/', NUL or control character), without touching any map.");

static PyObject *mod_check_name(PyObject *module, PyObject *name) {
    PyObject *fs = name_to_bytes(name);
    int rc;
    (void)module;
    if (fs == NULL)
        return NULL;
    rc = sm_name_check(PyBytes_AS_STRING(fs));
    Py_DECREF(fs);
    if (rc != 0)
        return raise_code(rc, name, NULL);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_check_name", (PyCFunction)mod_check_name, METH_O, mod_check_name_doc},
    {"_error", (PyCFunction)mod_error, METH_VARARGS, mod_error_doc},
    {"open", (PyCFunction)mod_open, METH_O, mod_open_doc},
    {"loads", (PyCFunction)mod_loads, METH_O, mod_loads_doc},
    {"_list", METH_CAST(mod_list), METH_FASTCALL, mod_list_doc},
    {"_list_bitmaps", METH_CAST(mod_list_bitmaps), METH_FASTCALL, mod_list_bitmaps_doc},
    {"gc", METH_CAST(mod_gc), METH_FASTCALL, mod_gc_doc},
    {"_write_manifest", (PyCFunction)mod_write_manifest, METH_VARARGS, mod_write_manifest_doc},
    {"_publish_set", (PyCFunction)mod_publish_set, METH_VARARGS, mod_publish_set_doc},
    {"_shards", (PyCFunction)mod_shards, METH_O, mod_shards_doc},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------ module init */

static int module_exec(PyObject *module) {
    module_state *st = module_get_state(module);
    PyObject *abc;

#define MAKE_TYPE(field, spec)                                                          \
    do {                                                                                \
        st->field = (PyTypeObject *)PyType_FromModuleAndSpec(module, &(spec), NULL);     \
        if (st->field == NULL)                                                          \
            return -1;                                                                  \
        if (PyModule_AddType(module, st->field) < 0)                                    \
            return -1;                                                                  \
    } while (0)

    MAKE_TYPE(snapshot_type, snapshot_spec);
    MAKE_TYPE(reader_type, reader_spec);
    MAKE_TYPE(builder_type, builder_spec);
    MAKE_TYPE(snapiter_type, snapiter_spec);
    MAKE_TYPE(builditer_type, builditer_spec);
    MAKE_TYPE(keys_type, keys_spec);
    MAKE_TYPE(values_type, values_spec);
    MAKE_TYPE(items_type, items_spec);
    MAKE_TYPE(bitmap_type, bitmap_spec);
    MAKE_TYPE(bititer_type, bititer_spec);
    MAKE_TYPE(writer_type, writer_spec);
    MAKE_TYPE(edit_type, edit_spec);
    MAKE_TYPE(edititer_type, edititer_spec);
#undef MAKE_TYPE
    if (errors_setup(module, st) < 0)
        return -1;

    abc = PyImport_ImportModule("collections.abc");
    if (abc == NULL)
        return -1;
    st->mapping_abc = PyObject_GetAttrString(abc, "Mapping");
    Py_DECREF(abc);
    if (st->mapping_abc == NULL)
        return -1;
    st->open_func = PyObject_GetAttrString(module, "open");
    st->loads_func = PyObject_GetAttrString(module, "loads");
    if (st->open_func == NULL || st->loads_func == NULL)
        return -1;

    if (PyModule_AddStringConstant(module, "__version__", SM_VERSION_STRING) < 0 ||
        PyModule_AddIntConstant(module, "FORMAT_VERSION", SM_FORMAT_VERSION) < 0 ||
        PyModule_AddIntConstant(module, "NAME_MAX", SM_NAME_MAX) < 0 || add_error_codes(module) < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg) {
    module_state *st = module_get_state(module);
    Py_VISIT(st->snapshot_type);
    Py_VISIT(st->reader_type);
    Py_VISIT(st->builder_type);
    Py_VISIT(st->snapiter_type);
    Py_VISIT(st->builditer_type);
    Py_VISIT(st->keys_type);
    Py_VISIT(st->values_type);
    Py_VISIT(st->items_type);
    Py_VISIT(st->bitmap_type);
    Py_VISIT(st->bititer_type);
    Py_VISIT(st->writer_type);
    Py_VISIT(st->edit_type);
    Py_VISIT(st->edititer_type);
    Py_VISIT(st->mapping_abc);
    Py_VISIT(st->open_func);
    Py_VISIT(st->loads_func);
    for (int i = 0; i < SMPY_EXC_COUNT; i++)
        Py_VISIT(st->exceptions[i]);
    return 0;
}

static int module_clear(PyObject *module) {
    module_state *st = module_get_state(module);
    Py_CLEAR(st->snapshot_type);
    Py_CLEAR(st->reader_type);
    Py_CLEAR(st->builder_type);
    Py_CLEAR(st->snapiter_type);
    Py_CLEAR(st->builditer_type);
    Py_CLEAR(st->keys_type);
    Py_CLEAR(st->values_type);
    Py_CLEAR(st->items_type);
    Py_CLEAR(st->bitmap_type);
    Py_CLEAR(st->bititer_type);
    Py_CLEAR(st->writer_type);
    Py_CLEAR(st->edit_type);
    Py_CLEAR(st->edititer_type);
    Py_CLEAR(st->mapping_abc);
    Py_CLEAR(st->open_func);
    Py_CLEAR(st->loads_func);
    for (int i = 0; i < SMPY_EXC_COUNT; i++)
        Py_CLEAR(st->exceptions[i]);
    return 0;
}

static void module_free(void *module) {
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
    {0, NULL},
};

PyDoc_STRVAR(module_doc, "The C core of sharedmap (see the sharedmap package).");

struct PyModuleDef sharedmap_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sharedmap._sharedmap",
    .m_doc = module_doc,
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__sharedmap(void);

PyMODINIT_FUNC PyInit__sharedmap(void) {
    return PyModuleDef_Init(&sharedmap_module);
}
