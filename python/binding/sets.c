/* sets.c: map sets (include/sharedmap.h's sm_set_*): the module's functions that write a
 * set's manifest, publish a set packed under one name, and tell a set's shards, and the
 * error of a set that does not open.  Opening one is open() of its directory (module.c)
 * or sharedmap(NAME) of a packed one: the reader type serves both, as the C reader does. */
#include "convert.h"

PyObject *raise_open_error(int code, PyObject *path, const char *fspath) {
    uint64_t shard = 0;
    int why = 0, again;
    if (code != SM_ESHARD || fspath == NULL)
        return raise_code(code, NULL, path);
    Py_BEGIN_ALLOW_THREADS
    again = sm_set_diagnose(fspath, &shard, &why);
    Py_END_ALLOW_THREADS
    if (again != SM_ESHARD || why == 0) /* it changed in between: say what it is now */
        return raise_code(again != 0 ? again : code, NULL, path);
    PyObject *msg = PyUnicode_FromFormat("shard %llu of the map set %R: %s", (unsigned long long)shard,
                                         path, sm_strerror(why));
    if (msg != NULL) {
        raise_class(SMPY_EXC_CorruptSnapshotError, msg, code, NULL, path);
        Py_DECREF(msg);
    }
    return NULL;
}

/* The bytes of a bound: a key of the set's kind (str, bytes, or an int as sm_key_int()). */
static PyObject *bound_bytes(PyObject *key, Py_ssize_t i) {
    key_ref k;
    if (key_parse(key, &k) < 0)
        return NULL;
    if (k.kind == SM_KEYS_NONE || k.beyond) {
        PyErr_Format(PyExc_TypeError, "bound #%zd must be a str, bytes or int key (int64)", i);
        return NULL;
    }
    return PyBytes_FromStringAndSize(k.data, k.size);
}

SMPY_DOC(mod_write_manifest_doc,
             "_write_manifest(dir, names, bounds, force=False, mode=0o644, /)\n--\n\n"
             "Write dir/MANIFEST for the shard files names (in dir), shard i holding the keys "
             "from bounds[i] (bounds[0] is None) to bounds[i + 1]; atomically, after checking "
             "the set as open() would (sm_set_write).");

PyObject *mod_write_manifest(PyObject *module, PyObject *args) {
    PyObject *dir, *names, *bounds, *fsdir = NULL, *nseq = NULL, *bseq = NULL, *keep = NULL;
    int force = 0, mode = 0644, rc = 0;
    const char **cnames = NULL;
    sm_buf *cbounds = NULL;
    PyObject *result = NULL;
    (void)module;
    if (!PyArg_ParseTuple(args, "OOO|pi:_write_manifest", &dir, &names, &bounds, &force, &mode))
        return NULL;
    if (check_mode(mode) < 0 || !PyUnicode_FSConverter(dir, &fsdir))
        return NULL;
    nseq = PySequence_Fast(names, "names must be a sequence");
    bseq = nseq ? PySequence_Fast(bounds, "bounds must be a sequence") : NULL;
    if (bseq == NULL)
        goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(nseq);
    if (PySequence_Fast_GET_SIZE(bseq) != n || n == 0) {
        PyErr_SetString(PyExc_ValueError, "names and bounds must have one item per shard, and a set a shard at least");
        goto done;
    }
    keep = PyList_New(0); /* the bytes the C strings point into */
    cnames = PyMem_Calloc((size_t)n, sizeof *cnames);
    cbounds = PyMem_Calloc((size_t)n, sizeof *cbounds);
    if (keep == NULL || cnames == NULL || cbounds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fs = NULL, *b = NULL, *bound = PySequence_Fast_GET_ITEM(bseq, i);
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(nseq, i), &fs))
            goto done;
        rc = PyList_Append(keep, fs);
        cnames[i] = PyBytes_AS_STRING(fs);
        Py_DECREF(fs);
        if (rc < 0)
            goto done;
        if (i == 0 || bound == Py_None)
            continue; /* no bound for shard 0; None elsewhere: sm_set_write refuses it */
        if ((b = bound_bytes(bound, i)) == NULL)
            goto done;
        rc = PyList_Append(keep, b);
        cbounds[i].data = PyBytes_AS_STRING(b);
        cbounds[i].size = (size_t)PyBytes_GET_SIZE(b);
        Py_DECREF(b);
        if (rc < 0)
            goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = sm_set_write(PyBytes_AS_STRING(fsdir), (uint64_t)n, cnames, cbounds, force ? SM_FORCE : 0u,
                      (unsigned)mode);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        raise_code(rc, NULL, dir);
    else
        result = Py_NewRef(Py_None);
done:
    PyMem_Free(cnames);
    PyMem_Free(cbounds);
    Py_XDECREF(keep);
    Py_XDECREF(nseq);
    Py_XDECREF(bseq);
    Py_XDECREF(fsdir);
    return result;
}

/* The reader's snapshot (a new reference), if arg is a sharedmap; else a TypeError. */
static SnapshotObject *held_reader(PyObject *module, PyObject *arg) {
    module_state *st = module_get_state(module);
    if (!PyObject_TypeCheck(arg, st->reader_type)) {
        PyErr_Format(PyExc_TypeError, "a sharedmap is required, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    return reader_hold((ReaderObject *)arg);
}

SMPY_DOC(mod_publish_set_doc,
             "_publish_set(reader, name, force=False, mode=0o600, /)\n--\n\n"
             "Publish the map set (or snapshot) that reader shows as the packed set name in "
             "shared memory, atomically (sm_set_publish); without the GIL.");

PyObject *mod_publish_set(PyObject *module, PyObject *args) {
    PyObject *reader, *name, *fsname;
    int force = 0, mode = 0600, rc;
    if (!PyArg_ParseTuple(args, "OO|pi:_publish_set", &reader, &name, &force, &mode))
        return NULL;
    if (check_mode(mode) < 0)
        return NULL;
    SnapshotObject *s = held_reader(module, reader);
    if (s == NULL)
        return NULL;
    if ((fsname = name_to_bytes(name)) == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS /* s is held: no close() or refresh() can unmap what is copied */
    rc = sm_set_publish(s->r, NULL, PyBytes_AS_STRING(fsname), force ? SM_FORCE : 0u, (unsigned)mode);
    Py_END_ALLOW_THREADS
    Py_DECREF(fsname);
    Py_DECREF(s);
    note_publish();
    if (rc != 0)
        return raise_code(rc, name, NULL);
    Py_RETURN_NONE;
}

SMPY_DOC(mod_shards_doc,
             "_shards(reader, /)\n--\n\n"
             "The shards of the map set that reader shows, in key order, as (lower bound or "
             "None, entries, bytes, body checksum) tuples; one for a snapshot.");

PyObject *mod_shards(PyObject *module, PyObject *reader) {
    SnapshotObject *s = held_reader(module, reader);
    if (s == NULL)
        return NULL;
    uint64_t n = sm_reader_shard_count(s->r);
    PyObject *list = PyList_New(0);
    for (uint64_t i = 0; list != NULL && i < n; i++) {
        const void *bound;
        size_t blen;
        const sm_reader *shard = sm_reader_shard(s->r, i, &bound, &blen);
        sm_info info;
        sm_reader_info(shard, &info);
        PyObject *b = Py_None, *t;
        if (bound != NULL) {
            sm_buf key = {bound, blen};
            b = key_to_py(sm_reader_key_kind(s->r), &key);
        } else {
            Py_INCREF(b);
        }
        t = b != NULL ? Py_BuildValue("(NKKK)", b, (unsigned long long)info.count,
                                      (unsigned long long)info.size, (unsigned long long)info.checksum)
                      : NULL;
        if (t == NULL || PyList_Append(list, t) < 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    Py_DECREF(s);
    return list;
}
