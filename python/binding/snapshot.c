/* snapshot.c: _Snapshot, one opened snapshot.  It owns the sm_reader (and so the
 * mapping), exports the snapshot as a read-only buffer, and stays alive while any
 * reader, iterator, view or memoryview uses it: whoever holds a pointer into the
 * snapshot holds a reference to its _Snapshot. */
#include "binding.h"

SnapshotObject *snapshot_new(module_state *st, sm_reader *r, Py_buffer *source) {
    SnapshotObject *s = PyObject_New(SnapshotObject, st->snapshot_type);
    if (s == NULL) {
        sm_reader_close(r);
        if (source != NULL)
            PyBuffer_Release(source);
        return NULL;
    }
    s->r = r;
    s->kind = sm_reader_key_kind(r);
    s->count = sm_reader_count(r);
    s->exports = 0;
    s->sub = NULL;
    s->sub_size = 0;
    if (source != NULL) {
        s->source = *source;
        s->has_source = 1;
    } else {
        memset(&s->source, 0, sizeof s->source);
        s->has_source = 0;
    }
    return s;
}

static void snapshot_dealloc(SnapshotObject *s) {
    PyTypeObject *tp = Py_TYPE(s);
    sm_reader_close(s->r); /* before the source buffer it reads from */
    if (s->has_source)
        PyBuffer_Release(&s->source);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

static int snapshot_getbuffer(SnapshotObject *s, Py_buffer *view, int flags) {
    size_t size;
    const void *data = sm_reader_data(s->r, &size);
    if (s->sub != NULL) {
        data = s->sub;
        size = (size_t)s->sub_size;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)s, (void *)(uintptr_t)data, (Py_ssize_t)size, 1,
                          flags) < 0)
        return -1;
    s->exports++;
    return 0;
}

static void snapshot_releasebuffer(SnapshotObject *s, Py_buffer *view) {
    (void)view;
    s->exports--;
}

static PyObject *snapshot_nbytes(SnapshotObject *s, void *closure) {
    size_t size;
    (void)closure;
    (void)sm_reader_data(s->r, &size);
    return PyLong_FromSize_t(size);
}

static PyGetSetDef snapshot_getset[] = {
    {"nbytes", (getter)snapshot_nbytes, NULL, "size of the snapshot in bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot snapshot_slots[] = {
    {Py_tp_dealloc, (void *)snapshot_dealloc},
    {Py_bf_getbuffer, (void *)snapshot_getbuffer},
    {Py_bf_releasebuffer, (void *)snapshot_releasebuffer},
    {Py_tp_getset, snapshot_getset},
    {Py_tp_doc, (void *)"One opened snapshot (internal): owns the mapping, exports it as a "
                        "read-only buffer, and stays alive while any reader, iterator, view or "
                        "memoryview uses it."},
    {0, NULL},
};

PyType_Spec snapshot_spec = {
    .name = "sharedmap._sharedmap._Snapshot",
    .basicsize = sizeof(SnapshotObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = snapshot_slots,
};

PyObject *snapshot_subview(SnapshotObject *s, const void *p, size_t n) {
    size_t size;
    const char *base = (const char *)sm_reader_data(s->r, &size);
    PyObject *whole, *lo = NULL, *hi = NULL, *slice = NULL, *res = NULL;
    if ((const char *)p < base || (const char *)p + n > base + size) {
        /* the value is in another mapping the reader owns (a layer's base, a set's shard):
         * a view of exactly it, which holds s as the view of the file does */
        s->sub = p;
        s->sub_size = (Py_ssize_t)n;
        res = PyMemoryView_FromObject((PyObject *)s);
        s->sub = NULL;
        return res;
    }
    Py_ssize_t start = (Py_ssize_t)((const char *)p - base);
    whole = PyMemoryView_FromObject((PyObject *)s);
    if (whole == NULL)
        return NULL;
    lo = PyLong_FromSsize_t(start);
    hi = PyLong_FromSsize_t(start + (Py_ssize_t)n);
    if (lo == NULL || hi == NULL)
        goto done;
    slice = PySlice_New(lo, hi, NULL);
    if (slice == NULL)
        goto done;
    res = PyObject_GetItem(whole, slice);
done:
    Py_XDECREF(slice);
    Py_XDECREF(lo);
    Py_XDECREF(hi);
    Py_DECREF(whole);
    return res;
}
