/* bitmap.c: the sharedbitmap type, the original package's second type: a bitset in
 * shared memory that every attached process sets and reads in place (sm_bitmap_* of
 * sharedmap.h; the file and the concurrency protocol are in docs/FORMAT.md §11).
 *
 * The original calls keep their meaning: sharedbitmap.create(name, size, force),
 * sharedbitmap(name), set(index, value), get(index), size(), resize(size).  Sizes count
 * bits, rounded up to a whole byte.  get() of an index at or past the size is False;
 * set() there, and any negative index, is BitIndexError (an IndexError and, as the
 * original raised, a KeyError).
 *
 * A sharedbitmap owns its sm_bitmap handle and exports the bits as a read-only buffer
 * (getbuffer()): close() waits for no one, so it refuses while a buffer is exported, as
 * mmap does.  Operations on one bit are one atomic instruction in C and keep the GIL
 * (one of them may wait, with the GIL, for a resize that another process is in the
 * middle of: a resize takes microseconds, but one stopped mid-way, by a debugger say,
 * holds up bit operations until it goes on or dies).  resize releases the GIL, and so do
 * count and clear on large bitmaps, which walk every word; each pins the handle
 * (exports) meanwhile.  Iteration walks with the GIL held, one set bit per step.
 *
 * Every method converts its arguments (which can run __index__ or __bool__, and those
 * can close the bitmap) before it looks at the handle. */
#include "binding.h"

/* Bitmaps of at least this many bits are counted or cleared without the GIL. */
#define BITMAP_NOGIL_BITS (UINT64_C(1) << 20)

typedef struct {
    PyObject_HEAD
    sm_bitmap *b;     /* NULL once closed */
    PyObject *name;   /* str */
    Py_ssize_t exports;
    int readonly;
    PyObject *weakreflist;
} BitmapObject;

static PyObject *bitmap_closed(void) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed sharedbitmap");
    return NULL;
}

#define BITMAP_CHECK(self)             \
    do {                               \
        if ((self)->b == NULL)         \
            return bitmap_closed();    \
    } while (0)

/* BitIndexError(message), its .name the bitmap's (NULL: not known here). */
static PyObject *index_error(const char *fmt, PyObject *index, PyObject *name) {
    PyObject *msg = PyUnicode_FromFormat(fmt, index);
    if (msg != NULL) {
        raise_class(SMPY_EXC_BitIndexError, msg, -ERANGE, name, NULL);
        Py_DECREF(msg);
    }
    return NULL;
}

/* A bit index: 0 and *out set; 1 if it is past any possible size (only get() may take
 * that); -1 with BitIndexError if negative, TypeError if not an integer. */
static int bit_index(PyObject *o, uint64_t *out) {
    PyObject *i = PyNumber_Index(o);
    int overflow, r = 0;
    if (i == NULL)
        return -1;
    long long v = PyLong_AsLongLongAndOverflow(i, &overflow);
    if (v == -1 && !overflow && PyErr_Occurred()) {
        r = -1;
    } else if (overflow < 0 || (!overflow && v < 0)) {
        index_error("bit index must not be negative, not %S", i, NULL);
        r = -1;
    } else if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(i);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            r = 1;
        } else {
            *out = (uint64_t)u;
        }
    } else {
        *out = (uint64_t)v;
    }
    Py_DECREF(i);
    return r;
}

/* A size in bits, 0 <= size. */
static int bit_size(PyObject *o, uint64_t *out) {
    PyObject *i = PyNumber_Index(o);
    int overflow;
    long long v;
    if (i == NULL)
        return -1;
    v = PyLong_AsLongLongAndOverflow(i, &overflow);
    Py_DECREF(i);
    if (v == -1 && !overflow && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (!overflow && v < 0)) {
        PyErr_SetString(PyExc_ValueError, "a bitmap size must not be negative");
        return -1;
    }
    if (overflow > 0 || (uint64_t)v > SM_BITMAP_MAX_BITS) {
        PyErr_Format(PyExc_ValueError, "a bitmap holds at most %llu bits",
                     (unsigned long long)SM_BITMAP_MAX_BITS);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* The exception of a failed bit operation on index (rc < 0). */
static PyObject *bit_error(BitmapObject *self, int rc, PyObject *index) {
    if (rc == -ERANGE)
        return index_error("bit index %S is past the end of the bitmap (resize() it first)",
                           index, self->name);
    if (rc == -EBADF) {
        PyErr_SetString(PyExc_PermissionError, "this sharedbitmap is attached read-only");
        return NULL;
    }
    return raise_code(rc, self->name, NULL);
}

/* ---------------------------------------------------------------- lifetime */

static BitmapObject *bitmap_wrap(PyTypeObject *type, sm_bitmap *b, PyObject *name, int readonly) {
    BitmapObject *self = (BitmapObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        sm_bitmap_close(b);
        return NULL;
    }
    self->b = b;
    self->name = Py_NewRef(name);
    self->readonly = readonly;
    return self;
}

static PyObject *bitmap_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name", "readonly", NULL};
    PyObject *name, *fs;
    int readonly = 0, rc;
    sm_bitmap *b;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p:sharedbitmap", kwlist, &name, &readonly))
        return NULL;
    if ((fs = name_to_bytes(name)) == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_bitmap_attach(&b, NULL, PyBytes_AS_STRING(fs), readonly ? SM_BITMAP_RDONLY : 0u);
    if ((rc == -EACCES || rc == -EPERM || rc == -EROFS) && !readonly) {
        /* may read but not write it (its mode, or a read-only mount): a reader, then */
        rc = sm_bitmap_attach(&b, NULL, PyBytes_AS_STRING(fs), SM_BITMAP_RDONLY);
        readonly = rc == 0;
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(fs);
    if (rc != 0)
        return raise_code(rc, name, NULL);
    return (PyObject *)bitmap_wrap(type, b, name, readonly);
}

PyDoc_STRVAR(bitmap_create_doc,
             "create(name, size, force=False, mode=0o600, max_bits=None)\n--\n\n"
             "Create the shared bitmap name with size bits (rounded up to a whole byte), all "
             "clear, and return it attached.  FileExistsError if it exists, unless force, "
             "which replaces it atomically (processes attached to the old one keep it).  "
             "max_bits: the largest size it can ever be resized to (default 2**36, or size if "
             "larger); each handle reserves max_bits / 8 bytes of address space, no memory.");

static PyObject *bitmap_create(PyObject *cls, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name", "size", "force", "mode", "max_bits", NULL};
    PyObject *name, *size_obj, *max_obj = Py_None, *fs;
    int force = 0, mode = (int)SM_DEFAULT_MODE, rc;
    uint64_t size, max_bits = 0;
    sm_bitmap *b;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|piO:create", kwlist, &name, &size_obj, &force,
                                     &mode, &max_obj))
        return NULL;
    if (bit_size(size_obj, &size) < 0 || (max_obj != Py_None && bit_size(max_obj, &max_bits) < 0))
        return NULL;
    if (check_mode(mode) < 0 || (fs = name_to_bytes(name)) == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_bitmap_create(&b, NULL, PyBytes_AS_STRING(fs), size, max_bits, force ? SM_FORCE : 0u,
                          (unsigned)mode);
    Py_END_ALLOW_THREADS
    Py_DECREF(fs);
    if (rc == -EFBIG) {
        PyErr_Format(PyExc_ValueError, "size %llu is larger than max_bits or than %llu",
                     (unsigned long long)size, (unsigned long long)SM_BITMAP_MAX_BITS);
        return NULL;
    }
    if (rc != 0)
        return raise_code(rc, name, NULL);
    return (PyObject *)bitmap_wrap((PyTypeObject *)cls, b, name, 0);
}

PyDoc_STRVAR(bitmap_remove_doc,
             "remove(name, /)\n--\n\n"
             "Remove the shared bitmap name (from any process); attached processes keep theirs.  "
             "Return True if it was removed, False if there was no such bitmap.");

static PyObject *bitmap_remove(PyObject *unused, PyObject *name) {
    PyObject *fs = name_to_bytes(name);
    int rc;
    (void)unused;
    if (fs == NULL)
        return NULL;
    rc = sm_bitmap_remove(NULL, PyBytes_AS_STRING(fs));
    Py_DECREF(fs);
    if (rc == -ENOENT)
        Py_RETURN_FALSE;
    if (rc != 0)
        return raise_code(rc, name, NULL);
    Py_RETURN_TRUE;
}

static PyObject *bitmap_close(BitmapObject *self, PyObject *unused) {
    (void)unused;
    if (self->exports > 0) {
        PyErr_SetString(PyExc_BufferError,
                        "cannot close a sharedbitmap while a buffer of it is exported");
        return NULL;
    }
    sm_bitmap_close(self->b);
    self->b = NULL;
    Py_RETURN_NONE;
}

static PyObject *bitmap_enter(BitmapObject *self, PyObject *unused) {
    (void)unused;
    BITMAP_CHECK(self);
    return Py_NewRef(self);
}

static PyObject *bitmap_exit(BitmapObject *self, PyObject *args) {
    (void)args;
    PyObject *r = bitmap_close(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static int bitmap_traverse(BitmapObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    return 0;
}

static int bitmap_clear_refs(BitmapObject *self) {
    Py_CLEAR(self->name);
    return 0;
}

static void bitmap_dealloc(BitmapObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    sm_bitmap_close(self->b); /* no export can be left: each holds a reference */
    bitmap_clear_refs(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---------------------------------------------------------------- bits */

PyDoc_STRVAR(bitmap_get_doc, "get($self, index, /)\n--\n\n"
                             "Bit index as a bool; False at or past the end.");

static PyObject *bitmap_get(BitmapObject *self, PyObject *index) {
    uint64_t i = 0;
    int r;
    BITMAP_CHECK(self);
    r = bit_index(index, &i);
    if (r < 0)
        return NULL;
    BITMAP_CHECK(self); /* __index__ may have closed it */
    if (r > 0)
        Py_RETURN_FALSE;
    r = sm_bitmap_get(self->b, i);
    if (r < 0)
        return bit_error(self, r, index);
    return PyBool_FromLong(r);
}

PyDoc_STRVAR(bitmap_set_doc,
             "set($self, index, value=True, /)\n--\n\n"
             "Set (value true) or clear bit index, atomically: no update by another process or "
             "thread is ever lost.  BitIndexError at or past the end.");

static PyObject *bitmap_set(BitmapObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t i = 0;
    int value = 1, r;
    if (nargs < 1 || nargs > 2)
        return nargs_error("set", nargs, 1, 2);
    BITMAP_CHECK(self);
    if (nargs == 2 && (value = PyObject_IsTrue(args[1])) < 0)
        return NULL;
    r = bit_index(args[0], &i);
    if (r < 0)
        return NULL;
    if (self->b == NULL) /* __bool__ or __index__ closed it */
        return bitmap_closed();
    r = r > 0 ? -ERANGE : sm_bitmap_set(self->b, i, value);
    if (r < 0)
        return bit_error(self, r, args[0]);
    Py_RETURN_NONE;
}

static PyObject *bitmap_test_and(BitmapObject *self, PyObject *index, int set) {
    uint64_t i = 0;
    int r;
    BITMAP_CHECK(self);
    r = bit_index(index, &i);
    if (r < 0)
        return NULL;
    if (self->b == NULL)
        return bitmap_closed();
    r = r > 0 ? -ERANGE : set ? sm_bitmap_test_and_set(self->b, i) : sm_bitmap_test_and_clear(self->b, i);
    if (r < 0)
        return bit_error(self, r, index);
    return PyBool_FromLong(r);
}

PyDoc_STRVAR(bitmap_test_and_set_doc,
             "test_and_set($self, index, /)\n--\n\n"
             "Set bit index and return what it was: False means this call set it.  Across every "
             "process and thread exactly one caller gets False for a clear bit (claim work once).");

static PyObject *bitmap_test_and_set(BitmapObject *self, PyObject *index) {
    return bitmap_test_and(self, index, 1);
}

PyDoc_STRVAR(bitmap_test_and_clear_doc,
             "test_and_clear($self, index, /)\n--\n\n"
             "Clear bit index and return what it was: True means this call cleared it.");

static PyObject *bitmap_test_and_clear(BitmapObject *self, PyObject *index) {
    return bitmap_test_and(self, index, 0);
}

static PyObject *bitmap_subscript(BitmapObject *self, PyObject *index) {
    return bitmap_get(self, index);
}

static int bitmap_ass_subscript(BitmapObject *self, PyObject *index, PyObject *value) {
    PyObject *args[2] = {index, value}, *r;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "bits cannot be deleted: set them to False");
        return -1;
    }
    r = bitmap_set(self, args, 2);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* ---------------------------------------------------------------- the whole bitmap */

PyDoc_STRVAR(bitmap_size_doc, "size($self, /)\n--\n\nThe size in bits (a multiple of 8).");

static PyObject *bitmap_size(BitmapObject *self, PyObject *unused) {
    (void)unused;
    BITMAP_CHECK(self);
    return PyLong_FromUnsignedLongLong((unsigned long long)sm_bitmap_size(self->b));
}

static Py_ssize_t bitmap_len(BitmapObject *self) {
    uint64_t n;
    if (self->b == NULL) {
        bitmap_closed();
        return -1;
    }
    n = sm_bitmap_size(self->b);
    if (n > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_OverflowError, "bitmap too large for len(): use size()");
        return -1;
    }
    return (Py_ssize_t)n;
}

PyDoc_STRVAR(bitmap_resize_doc,
             "resize($self, size, /)\n--\n\n"
             "Resize to size bits (rounded up to a whole byte), in place: every attached process "
             "sees the new size at its next operation.  Growing reserves the space first "
             "(OSError ENOSPC, never a crash later) and reveals clear bits; shrinking is "
             "logical: the bits past the new end read as clear (a buffer taken before still "
             "shows them) and are cleared before a later grow reveals them.  Return True.");

static PyObject *bitmap_resize(BitmapObject *self, PyObject *size_obj) {
    uint64_t size;
    sm_bitmap *b;
    int rc;
    BITMAP_CHECK(self);
    if (bit_size(size_obj, &size) < 0)
        return NULL;
    if ((b = self->b) == NULL)
        return bitmap_closed();
    Py_INCREF(self); /* close() cannot run meanwhile: it needs the GIL and sees exports */
    self->exports++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_bitmap_resize(b, size);
    Py_END_ALLOW_THREADS
    self->exports--;
    Py_DECREF(self);
    if (rc == -EFBIG) {
        PyErr_Format(PyExc_ValueError, "size %llu is larger than this bitmap's max_bits, %llu",
                     (unsigned long long)size, (unsigned long long)sm_bitmap_max_bits(b));
        return NULL;
    }
    if (rc != 0)
        return bit_error(self, rc, size_obj);
    Py_RETURN_TRUE;
}

/* Run count or clear_all, without the GIL on a large bitmap (the handle is pinned by
 * an export meanwhile, so close() refuses). */
static int bitmap_walk(BitmapObject *self, int clear, uint64_t *count) {
    sm_bitmap *b = self->b;
    int rc;
    if (sm_bitmap_size(b) < BITMAP_NOGIL_BITS)
        return clear ? sm_bitmap_clear_all(b) : sm_bitmap_count(b, count);
    self->exports++;
    Py_BEGIN_ALLOW_THREADS
    rc = clear ? sm_bitmap_clear_all(b) : sm_bitmap_count(b, count);
    Py_END_ALLOW_THREADS
    self->exports--;
    return rc;
}

PyDoc_STRVAR(bitmap_count_doc,
             "count($self, /)\n--\n\n"
             "The number of set bits (a population count; with concurrent changes, some value "
             "between the counts before and after them).");

static PyObject *bitmap_count(BitmapObject *self, PyObject *unused) {
    uint64_t n = 0;
    int rc;
    (void)unused;
    BITMAP_CHECK(self);
    rc = bitmap_walk(self, 0, &n);
    if (rc != 0)
        return raise_code(rc, self->name, NULL);
    return PyLong_FromUnsignedLongLong((unsigned long long)n);
}

PyDoc_STRVAR(bitmap_clear_doc,
             "clear($self, /)\n--\n\n"
             "Clear every bit (word by word: a bit another process sets meanwhile may stay).");

static PyObject *bitmap_clear(BitmapObject *self, PyObject *unused) {
    int rc;
    (void)unused;
    BITMAP_CHECK(self);
    rc = bitmap_walk(self, 1, NULL);
    if (rc != 0)
        return bit_error(self, rc, Py_None);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- zero copy */

static int bitmap_getbuffer(BitmapObject *self, Py_buffer *view, int flags) {
    const void *data;
    size_t len;
    int rc;
    if (self->b == NULL) {
        bitmap_closed();
        return -1;
    }
    if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError,
                        "a sharedbitmap's buffer is read-only: change bits with set()");
        return -1;
    }
    rc = sm_bitmap_bytes(self->b, &data, &len);
    if (rc != 0) {
        raise_code(rc, self->name, NULL);
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, (void *)(uintptr_t)data, (Py_ssize_t)len, 1,
                          flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void bitmap_releasebuffer(BitmapObject *self, Py_buffer *view) {
    (void)view;
    self->exports--;
}

PyDoc_STRVAR(bitmap_getbuffer_doc,
             "getbuffer($self, /)\n--\n\n"
             "A read-only memoryview of the bits, size() / 8 bytes as of now, without copying: "
             "bit i is bit i % 8 (from the least significant) of byte i // 8, so "
             "numpy.unpackbits(numpy.frombuffer(b.getbuffer(), 'u1'), bitorder='little') gives "
             "the bits.  The bytes change as processes set bits; close() waits until it is "
             "released.");

static PyObject *bitmap_getbuffer_method(BitmapObject *self, PyObject *unused) {
    (void)unused;
    BITMAP_CHECK(self);
    return PyMemoryView_FromObject((PyObject *)self);
}

/* ---------------------------------------------------------------- iteration */

/* The indices of the set bits, ascending, found with sm_bitmap_next_set from where the
 * last one was: bits set or cleared meanwhile are seen or not, as for a walk in C. */
typedef struct {
    PyObject_HEAD
    BitmapObject *bitmap;
    uint64_t next;
    int done;
} BitIterObject;

static PyObject *bititer_next(BitIterObject *it) {
    uint64_t i;
    int rc;
    if (it->done)
        return NULL;
    if (it->bitmap->b == NULL)
        return bitmap_closed();
    rc = sm_bitmap_next_set(it->bitmap->b, it->next, &i);
    if (rc == SM_NOTFOUND) {
        it->done = 1;
        return NULL;
    }
    if (rc != 0)
        return raise_code(rc, it->bitmap->name, NULL);
    it->next = i + 1;
    return PyLong_FromUnsignedLongLong((unsigned long long)i);
}

static int bititer_traverse(BitIterObject *it, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->bitmap);
    return 0;
}

static void bititer_dealloc(BitIterObject *it) {
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->bitmap);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyType_Slot bititer_slots[] = {
    {Py_tp_dealloc, (void *)bititer_dealloc},
    {Py_tp_traverse, (void *)bititer_traverse},
    {Py_tp_iter, (void *)PyObject_SelfIter},
    {Py_tp_iternext, (void *)bititer_next},
    {0, NULL},
};

PyType_Spec bititer_spec = {
    .name = "sharedmap._sharedmap.sharedbitmap_iterator",
    .basicsize = sizeof(BitIterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = bititer_slots,
};

static PyObject *bitmap_iter(BitmapObject *self) {
    module_state *st = state_of((PyObject *)self);
    BitIterObject *it;
    BITMAP_CHECK(self);
    if (st == NULL)
        return NULL;
    it = PyObject_GC_New(BitIterObject, st->bititer_type);
    if (it == NULL)
        return NULL;
    it->bitmap = (BitmapObject *)Py_NewRef(self);
    it->next = 0;
    it->done = 0;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

/* ---------------------------------------------------------------- about it */

PyDoc_STRVAR(bitmap_info_doc,
             "info($self, /)\n--\n\n"
             "A dict: size, capacity (bits the file has room for now), max_bits, file_size "
             "(bytes), created (seconds since the epoch), resizes, format_version, superseded "
             "(replaced or removed under its name since), readonly, name, path.");

static PyObject *bitmap_info(BitmapObject *self, PyObject *unused) {
    sm_bitmap_info info;
    int rc;
    (void)unused;
    BITMAP_CHECK(self);
    rc = sm_bitmap_stat(self->b, &info);
    if (rc != 0)
        return raise_code(rc, self->name, NULL);
    return Py_BuildValue("{sKsKsKsKsdsKsIsOsOsOsN}", "size", (unsigned long long)info.size,
                         "capacity", (unsigned long long)info.capacity, "max_bits",
                         (unsigned long long)info.max_bits, "file_size",
                         (unsigned long long)info.file_size, "created",
                         (double)info.created_ns / 1e9, "resizes",
                         (unsigned long long)info.resizes, "format_version", info.format_version,
                         "superseded", info.superseded ? Py_True : Py_False, "readonly",
                         self->readonly ? Py_True : Py_False, "name", self->name, "path",
                         PyUnicode_FromFormat("%s/%s%U", SM_DEFAULT_DIR, SM_BITMAP_PREFIX,
                                              self->name));
}

static PyObject *bitmap_repr(BitmapObject *self) {
    if (self->b == NULL)
        return PyUnicode_FromFormat("<sharedmap.sharedbitmap name=%R closed>", self->name);
    return PyUnicode_FromFormat("<sharedmap.sharedbitmap name=%R size=%llu>", self->name,
                                (unsigned long long)sm_bitmap_size(self->b));
}

static PyObject *bitmap_reduce(BitmapObject *self, PyObject *unused) {
    (void)unused;
    BITMAP_CHECK(self);
    return Py_BuildValue("O(OO)", (PyObject *)Py_TYPE(self), self->name,
                         self->readonly ? Py_True : Py_False);
}

static PyObject *bitmap_closed_get(BitmapObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->b == NULL);
}

static PyObject *bitmap_name_get(BitmapObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->name);
}

static PyMethodDef bitmap_methods[] = {
    {"create", METH_CAST(bitmap_create), METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     bitmap_create_doc},
    {"remove", (PyCFunction)bitmap_remove, METH_O | METH_STATIC, bitmap_remove_doc},
    {"get", (PyCFunction)bitmap_get, METH_O, bitmap_get_doc},
    {"set", METH_CAST(bitmap_set), METH_FASTCALL, bitmap_set_doc},
    {"test_and_set", (PyCFunction)bitmap_test_and_set, METH_O, bitmap_test_and_set_doc},
    {"test_and_clear", (PyCFunction)bitmap_test_and_clear, METH_O, bitmap_test_and_clear_doc},
    {"size", (PyCFunction)bitmap_size, METH_NOARGS, bitmap_size_doc},
    {"resize", (PyCFunction)bitmap_resize, METH_O, bitmap_resize_doc},
    {"count", (PyCFunction)bitmap_count, METH_NOARGS, bitmap_count_doc},
    {"clear", (PyCFunction)bitmap_clear, METH_NOARGS, bitmap_clear_doc},
    {"getbuffer", (PyCFunction)bitmap_getbuffer_method, METH_NOARGS, bitmap_getbuffer_doc},
    {"info", (PyCFunction)bitmap_info, METH_NOARGS, bitmap_info_doc},
    {"close", (PyCFunction)bitmap_close, METH_NOARGS,
     "Detach.  BufferError while a buffer of it is exported.  Calling it again does nothing."},
    {"__enter__", (PyCFunction)bitmap_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)bitmap_exit, METH_VARARGS, NULL},
    {"__reduce__", (PyCFunction)bitmap_reduce, METH_NOARGS,
     "Pickle by reference: the other process attaches by name (read-only if this one is)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef bitmap_getset[] = {
    {"closed", (getter)bitmap_closed_get, NULL, "True once close() was called.", NULL},
    {"name", (getter)bitmap_name_get, NULL, "The bitmap's name.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef bitmap_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(BitmapObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(bitmap_doc,
             "sharedbitmap(name, readonly=False)\n--\n\n"
             "Attach to the shared bitmap name (FileNotFoundError if none; read-only if this "
             "process may read but not write it).  Make one with sharedbitmap.create().\n\n"
             "A bitset in shared memory that every attached process sets and reads in place, "
             "with atomic operations: set(i), get(i), test_and_set(i), b[i], count(), "
             "iteration over the set bits, resize(), and getbuffer() for NumPy.");

static PyType_Slot bitmap_slots[] = {
    {Py_tp_new, (void *)bitmap_new},
    {Py_tp_dealloc, (void *)bitmap_dealloc},
    {Py_tp_traverse, (void *)bitmap_traverse},
    {Py_tp_clear, (void *)bitmap_clear_refs},
    {Py_tp_repr, (void *)bitmap_repr},
    {Py_tp_iter, (void *)bitmap_iter},
    {Py_tp_methods, bitmap_methods},
    {Py_tp_getset, bitmap_getset},
    {Py_tp_members, bitmap_members},
    {Py_tp_doc, (void *)bitmap_doc},
    {Py_mp_length, (void *)bitmap_len},
    {Py_mp_subscript, (void *)bitmap_subscript},
    {Py_mp_ass_subscript, (void *)bitmap_ass_subscript},
    {Py_bf_getbuffer, (void *)bitmap_getbuffer},
    {Py_bf_releasebuffer, (void *)bitmap_releasebuffer},
    {0, NULL},
};

PyType_Spec bitmap_spec = {
    .name = "sharedmap.sharedbitmap",
    .basicsize = sizeof(BitmapObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = bitmap_slots,
};
