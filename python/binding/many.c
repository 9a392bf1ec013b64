/* many.c: lookups of a whole batch of keys, get_many() and get_array(), for the
 * sharedmap (through sm_get_many, which overlaps the cache misses of many keys) and
 * for the rbtree (one sm_builder_get per key: its dictionary is in private memory).
 *
 *   keys (list, tuple, any iterable,       key_batch: the keys in C form, checked
 *         or a buffer: NumPy int arrays,  ---------> against the map's kind, each
 *         S<n> bytes arrays, array.array)             TypeError naming its position
 *                                                        |
 *                            lookups (GIL released for batches of BATCH_NOGIL or more)
 *                                                        |
 *          get_many: a list of values    <---------------+--------> get_array: numbers
 *          (value_to_py, default)                                   written into a NumPy
 *                                                                   array or `out`
 *
 * Nothing half-done is returned: the keys are all converted before any lookup, and an
 * error (a wrong kind, a damaged snapshot, a value of the wrong type or size) drops the
 * result.  get_array writes into `out` as it goes, so after an error `out` holds some
 * of the values (it is the caller's scratch space; nothing is returned).
 */
#include "convert.h"

#if PY_VERSION_HEX < 0x030B0000 /* public from 3.11 */
#define PyFloat_Pack2(x, p, le) _PyFloat_Pack2((x), (unsigned char *)(p), (le))
#endif

/* Below this many keys the GIL stays held: a release and reacquire costs about as
 * much as a few hundred lookups, and keeps other threads waiting for less. */
#define BATCH_NOGIL 10000

/* ------------------------------------------------------------ the keys */

/* PyMem_Malloc of n items of size bytes, NULL when n * size does not fit (a NumPy view of
 * stride 0 can have any length). */
static void *alloc_items(Py_ssize_t n, size_t size) {
    if (n < 0 || (size_t)n > (size_t)PY_SSIZE_T_MAX / size)
        return NULL;
    return PyMem_Malloc((size_t)(n ? n : 1) * size);
}

typedef struct {
    Py_ssize_t n;
    sm_key_kind kind;  /* the map's; SM_KEYS_NONE for an empty map (every key missing) */
    sm_buf *keys;      /* str and bytes maps: point into the key objects or the buffer */
    int64_t *ints;     /* int maps */
    unsigned char *absent; /* NULL, or 1 where a key cannot be in the map (an int beyond
                            * int64_t); its slot in keys/ints holds a harmless stand-in */
    PyObject *seq;     /* the list or tuple the keys came from (new ref), or NULL */
    Py_buffer view;    /* ... or the buffer */
    int has_view;
} key_batch;

static void batch_free(key_batch *b) {
    PyMem_Free(b->keys);
    PyMem_Free(b->ints);
    PyMem_Free(b->absent);
    Py_CLEAR(b->seq);
    if (b->has_view)
        PyBuffer_Release(&b->view);
    b->keys = NULL;
    b->ints = NULL;
    b->absent = NULL;
    b->has_view = 0;
}

static int batch_mark_absent(key_batch *b, Py_ssize_t i) {
    if (b->absent == NULL && (b->absent = PyMem_Calloc((size_t)b->n, 1)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->absent[i] = 1;
    return 0;
}

static char buffer_key_format(const Py_buffer *v, int *is_signed);

/* The key object at position i, for an error message (a new reference). */
static PyObject *batch_key_object(const key_batch *b, Py_ssize_t i) {
    if (b->seq != NULL)
        return Py_NewRef(PySequence_Fast_GET_ITEM(b->seq, i));
    if (b->ints != NULL && b->has_view) { /* the item as the buffer holds it: an unsigned
                                            * one past int64 has a stand-in in ints */
        int is_signed;
        const char *p = (const char *)b->view.buf + i * (b->view.strides ? b->view.strides[0]
                                                                          : b->view.itemsize);
        (void)buffer_key_format(&b->view, &is_signed);
        if (!is_signed && b->view.itemsize == 8) {
            unsigned long long u;
            memcpy(&u, p, 8);
            return PyLong_FromUnsignedLongLong(u);
        }
    }
    if (b->ints != NULL)
        return PyLong_FromLongLong((long long)b->ints[i]);
    if (b->keys != NULL)
        return PyBytes_FromStringAndSize(b->keys[i].data, (Py_ssize_t)b->keys[i].size);
    return Py_NewRef(Py_None);
}

/* The item format of a buffer of keys: 'i' integers (size bytes, signed or not), 's'
 * fixed-width bytes, or 0 for anything else. */
static char buffer_key_format(const Py_buffer *v, int *is_signed) {
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    *is_signed = 0;
    if (f[0] != '\0' && f[1] == '\0' && strchr("bhilqBHILQ", f[0]) != NULL) {
        *is_signed = strchr("bhilq", f[0]) != NULL;
        return v->itemsize == 1 || v->itemsize == 2 || v->itemsize == 4 || v->itemsize == 8 ? 'i'
                                                                                           : 0;
    }
    while (*f >= '0' && *f <= '9')
        f++;
    return f[0] == 's' && f[1] == '\0' ? 's' : 0;
}

static int64_t load_int(const char *p, Py_ssize_t size, int is_signed, int *beyond) {
    *beyond = 0;
    switch (size) {
    case 1:
        return is_signed ? (int64_t)*(const int8_t *)p : (int64_t)*(const uint8_t *)p;
    case 2: {
        uint16_t u;
        memcpy(&u, p, 2);
        return is_signed ? (int64_t)(int16_t)u : (int64_t)u;
    }
    case 4: {
        uint32_t u;
        memcpy(&u, p, 4);
        return is_signed ? (int64_t)(int32_t)u : (int64_t)u;
    }
    default: {
        uint64_t u;
        memcpy(&u, p, 8);
        if (!is_signed && u > (uint64_t)INT64_MAX)
            *beyond = 1;
        return (int64_t)u;
    }
    }
}

/* Step 1: hold what the keys come from (a buffer, or a tuple: a list is copied, so that
 * Python code run later, by a collection or another thread while the GIL is released,
 * cannot free a key under us), and count them.  This may run Python code (a generator,
 * a buffer exporter's __buffer__). */
static int batch_collect(key_batch *b, PyObject *keys, const char *fname) {
    memset(b, 0, sizeof *b);
    if (PyUnicode_Check(keys) || PyBytes_Check(keys) || PyByteArray_Check(keys)) {
        /* one key rather than many, most likely: not read as characters or small ints */
        PyErr_Format(PyExc_TypeError, "%s() takes an iterable of keys, not one %.200s", fname,
                     Py_TYPE(keys)->tp_name);
        return -1;
    }
    if (PyObject_CheckBuffer(keys)) {
        if (PyObject_GetBuffer(keys, &b->view, PyBUF_RECORDS_RO) < 0)
            return -1;
        b->has_view = 1;
        if (b->view.ndim != 1) {
            PyErr_Format(PyExc_TypeError,
                         "%s(): a buffer of keys must be one-dimensional, not %d-dimensional",
                         fname, b->view.ndim);
            return -1;
        }
        b->n = b->view.shape[0];
        return 0;
    }
    b->seq = PySequence_Fast(keys, "keys must be an iterable");
    if (b->seq == NULL)
        return -1;
    if (PyList_Check(b->seq)) {
        PyObject *t = PyList_AsTuple(b->seq);
        if (t == NULL)
            return -1;
        Py_SETREF(b->seq, t);
    }
    b->n = PyTuple_GET_SIZE(b->seq);
    return 0;
}

static int batch_alloc(key_batch *b, sm_key_kind kind) {
    if (kind == SM_KEYS_INT)
        b->ints = alloc_items(b->n, sizeof *b->ints);
    else
        b->keys = alloc_items(b->n, sizeof *b->keys);
    if (b->ints == NULL && b->keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int batch_convert_buffer(key_batch *b, const char *fname) {
    int is_signed;
    Py_buffer *v = &b->view;
    char f = buffer_key_format(v, &is_signed);
    if (f == 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s(): a buffer of keys must hold integers or fixed-width bytes "
                     "(NumPy int64 or S<n>), not format '%s'",
                     fname, v->format ? v->format : "B");
        return -1;
    }
    sm_key_kind kind = f == 'i' ? SM_KEYS_INT : SM_KEYS_BYTES;
    if (b->kind != SM_KEYS_NONE && b->kind != kind) {
        raise_class_format(SMPY_EXC_KeyKindError, SM_EKEYKIND,
                           "%s(): this map has %s keys, got a buffer of %s keys", fname,
                           kind_name(b->kind), kind_name(kind));
        return -1;
    }
    if (batch_alloc(b, kind) < 0)
        return -1;
    Py_ssize_t stride = v->strides ? v->strides[0] : v->itemsize;
    const char *p = (const char *)v->buf;
    for (Py_ssize_t i = 0; i < b->n; i++, p += stride) {
        if (kind == SM_KEYS_INT) {
            int beyond;
            b->ints[i] = load_int(p, v->itemsize, is_signed, &beyond);
            if (beyond && batch_mark_absent(b, i) < 0)
                return -1;
        } else {
            size_t len = (size_t)v->itemsize;
            while (len > 0 && p[len - 1] == '\0') /* NumPy's S<n>: trailing NULs are padding */
                len--;
            b->keys[i].data = p;
            b->keys[i].size = len;
        }
    }
    return 0;
}

SMPY_COLD static void key_position_error(const char *fname, Py_ssize_t i, sm_key_kind map,
                                         sm_key_kind got) {
    raise_class_format(SMPY_EXC_KeyKindError, SM_EKEYKIND, "%s(): key %zd is %s, this map has %s keys",
                       fname, i, kind_name(got), kind_name(map));
}

/* Step 2: the keys in C form for a map of kind @p kind, each checked against it.  Runs no
 * Python code (no __index__: only real ints are read as ints), so the caller can read
 * the map's kind just before and look up just after. */
static int batch_convert(key_batch *b, sm_key_kind kind, const char *fname) {
    b->kind = kind;
    if (b->has_view)
        return batch_convert_buffer(b, fname);
    if (batch_alloc(b, kind) < 0)
        return -1;
    PyObject **items = PySequence_Fast_ITEMS(b->seq);
    for (Py_ssize_t i = 0; i < b->n; i++) {
        PyObject *o = items[i];
        key_ref k;
        if (kind == SM_KEYS_INT && PyLong_CheckExact(o)) {
            int overflow;
            b->ints[i] = PyLong_AsLongLongAndOverflow(o, &overflow);
            if (overflow && batch_mark_absent(b, i) < 0)
                return -1;
            continue;
        }
        if (key_parse(o, &k) < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "%s(): key %zd must be str, bytes or int, not %.200s", fname, i,
                             Py_TYPE(o)->tp_name);
            }
            return -1;
        }
        if (kind == SM_KEYS_NONE)
            continue; /* an empty map: every key of a key type is missing */
        if (k.kind != kind) {
            key_position_error(fname, i, kind, k.kind);
            return -1;
        }
        if (kind == SM_KEYS_INT) {
            b->ints[i] = k.beyond ? 0 : sm_key_int_value(k.ibuf);
            if (k.beyond && batch_mark_absent(b, i) < 0)
                return -1;
        } else {
            b->keys[i].data = k.data;
            b->keys[i].size = (size_t)k.size;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ the lookups */

/* What get_many and get_array look keys up in: a snapshot or a builder. */
typedef struct {
    SnapshotObject *snap; /* held; or NULL and: */
    BuilderObject *builder;
} lookup_target;

/* Look up keys [start, start + m) of b: status and values as sm_get_many() gives them (a
 * key marked absent is SM_NOTFOUND whatever its stand-in gave).  Needs no GIL for a
 * snapshot.  For a builder the values point into it until its next change. */
static void target_lookup(const lookup_target *t, const key_batch *b, Py_ssize_t start, size_t m,
                          sm_value *values, int *status) {
    if (b->kind == SM_KEYS_NONE) {
        for (size_t j = 0; j < m; j++)
            status[j] = SM_NOTFOUND;
    } else if (t->snap != NULL) {
        /* errors are in status: the return value, the first of them, is not needed */
        if (b->kind == SM_KEYS_INT)
            (void)sm_get_many_int(t->snap->r, m, b->ints + start, values, status);
        else
            (void)sm_get_many(t->snap->r, m, b->keys + start, values, status);
    } else {
        for (size_t j = 0; j < m; j++) {
            Py_ssize_t i = start + (Py_ssize_t)j;
            unsigned char ib[SM_INT_KEY_SIZE];
            if (b->kind == SM_KEYS_INT) {
                sm_key_int(b->ints[i], ib);
                status[j] = sm_builder_get(t->builder->b, ib, SM_INT_KEY_SIZE, &values[j]);
            } else {
                status[j] = sm_builder_get(t->builder->b, b->keys[i].data, b->keys[i].size,
                                           &values[j]);
            }
        }
    }
    if (b->absent != NULL)
        for (size_t j = 0; j < m; j++)
            if (b->absent[start + (Py_ssize_t)j])
                status[j] = SM_NOTFOUND;
}

static int target_kind(const lookup_target *t, sm_key_kind *kind) {
    if (t->snap != NULL) {
        *kind = t->snap->kind;
        return 0;
    }
    if (builder_check(t->builder) < 0)
        return -1;
    *kind = sm_builder_key_kind(t->builder->b);
    return 0;
}

/* The list of values.  Errors come in the order of the keys, as from get() of each: the
 * first key whose lookup fails (a damaged snapshot) or whose value cannot be made (invalid
 * UTF-8) raises.  A snapshot's lookups run first, all of them (without the GIL for a big
 * batch), then the values are made; a builder's values are made one lookup at a time,
 * because making one can run a collection (before 3.12) whose callbacks could change the
 * builder under the next. */
static PyObject *get_many(const lookup_target *t, PyObject *keys, PyObject *dflt) {
    key_batch b;
    PyObject *list = NULL;
    sm_value *values = NULL;
    int *status = NULL;
    sm_key_kind kind;
    if (batch_collect(&b, keys, "get_many") < 0 || (list = PyList_New(b.n)) == NULL)
        goto fail;
    if (target_kind(t, &kind) < 0 || batch_convert(&b, kind, "get_many") < 0)
        goto fail;
    Py_ssize_t n = b.n, chunk = t->snap != NULL ? (n ? n : 1) : 1;
    values = alloc_items(chunk, sizeof *values);
    status = alloc_items(chunk, sizeof *status);
    if (values == NULL || status == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    if (t->snap != NULL && n >= BATCH_NOGIL) {
        Py_BEGIN_ALLOW_THREADS
        target_lookup(t, &b, 0, (size_t)n, values, status);
        Py_END_ALLOW_THREADS
    } else if (t->snap != NULL) {
        target_lookup(t, &b, 0, (size_t)n, values, status);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t j = i;
        if (t->snap == NULL) { /* one key at a time, the builder checked before each */
            if (builder_check(t->builder) < 0)
                goto fail;
            target_lookup(t, &b, i, 1, values, status);
            j = 0;
        }
        PyObject *v;
        if (status[j] == 0)
            v = value_to_py(&values[j]);
        else if (status[j] == SM_NOTFOUND)
            v = Py_NewRef(dflt);
        else
            v = set_error(status[j]);
        if (v == NULL)
            goto fail;
        PyList_SET_ITEM(list, i, v);
    }
    goto done;
fail:
    Py_CLEAR(list);
done:
    PyMem_Free(values);
    PyMem_Free(status);
    batch_free(&b);
    return list;
}

/* ------------------------------------------------------------ numbers out */

typedef struct {
    const char *name;
    char code;     /* struct module / buffer protocol format */
    int size;      /* bytes per item */
    int is_float;
    int scalar;    /* allowed without width: numeric values are converted */
} dtype_info;

static const dtype_info DTYPES[] = {
    {"int64", 'q', 8, 0, 1},   {"float64", 'd', 8, 1, 1}, {"float32", 'f', 4, 1, 1},
    {"int32", 'i', 4, 0, 1},   {"int16", 'h', 2, 0, 0},   {"int8", 'b', 1, 0, 0},
    {"uint64", 'Q', 8, 0, 0},  {"uint32", 'I', 4, 0, 0},  {"uint16", 'H', 2, 0, 0},
    {"uint8", 'B', 1, 0, 0},   {"float16", 'e', 2, 1, 0},
};

/* The dtype named by @p o: a str, or anything numpy.dtype() takes (np.float32, a dtype). */
static const dtype_info *dtype_lookup(PyObject *o) {
    PyObject *name = NULL;
    const dtype_info *found = NULL;
    if (PyUnicode_Check(o)) {
        name = Py_NewRef(o);
    } else {
        PyObject *np = PyImport_ImportModule("numpy");
        if (np == NULL) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "get_array(): dtype must be a str such as 'int64'");
            return NULL;
        }
        PyObject *dt = PyObject_CallMethod(np, "dtype", "O", o);
        Py_DECREF(np);
        if (dt == NULL)
            return NULL;
        name = PyObject_GetAttrString(dt, "name");
        Py_DECREF(dt);
        if (name == NULL)
            return NULL;
    }
    const char *s = PyUnicode_AsUTF8(name);
    if (s != NULL)
        for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
            if (strcmp(s, DTYPES[i].name) == 0)
                found = &DTYPES[i];
    if (s != NULL && found == NULL)
        PyErr_Format(PyExc_ValueError, "get_array(): unsupported dtype %R", name);
    Py_DECREF(name);
    return found;
}

/* One item of dtype d at p from a number (the default): 0, or -1 with an exception. */
static int store_number(const dtype_info *d, char *p, PyObject *o) {
    if (d->is_float) {
        double x = PyFloat_AsDouble(o);
        if (x == -1.0 && PyErr_Occurred())
            return -1;
        if (d->code == 'd') {
            memcpy(p, &x, 8);
        } else if (d->code == 'f') {
            float f = (float)x;
            memcpy(p, &f, 4);
        } else {
            return PyFloat_Pack2(x, p, 1);
        }
        return 0;
    }
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "get_array(): the default for dtype %s must be an int, not %.200s",
                     d->name, Py_TYPE(o)->tp_name);
        return -1;
    }
    if (d->code == 'Q' || d->code == 'I' || d->code == 'H' || d->code == 'B') {
        unsigned long long u = PyLong_AsUnsignedLongLong(o);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        if (d->size < 8 && u >> (8 * d->size)) {
            PyErr_Format(PyExc_OverflowError, "get_array(): the default does not fit in %s", d->name);
            return -1;
        }
        memcpy(p, &u, (size_t)d->size); /* little-endian: the low bytes */
        return 0;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (d->size < 8 && (v < -(1LL << (8 * d->size - 1)) || v >= (1LL << (8 * d->size - 1)))) {
        PyErr_Format(PyExc_OverflowError, "get_array(): the default does not fit in %s", d->name);
        return -1;
    }
    memcpy(p, &v, (size_t)d->size);
    return 0;
}

/* Why a value could not be written: found with the wrong type, or size, or range. */
typedef enum { FILL_OK = 0, FILL_MISSING, FILL_TYPE, FILL_SIZE, FILL_RANGE, FILL_CORRUPT } fill_error;

/* Store value v as item(s) of dtype d at p (width items for a row, 0 for a scalar). */
static fill_error store_value(const dtype_info *d, Py_ssize_t width, char *p, const sm_value *v) {
    if (width > 0) {
        if (v->type != SM_BYTES)
            return FILL_TYPE;
        if (v->as.buf.size != (size_t)width * (size_t)d->size)
            return FILL_SIZE;
        memcpy(p, v->as.buf.data, v->as.buf.size);
        return FILL_OK;
    }
    switch (d->code) {
    case 'q':
        if (v->type != SM_INT)
            return FILL_TYPE;
        memcpy(p, &v->as.i, 8);
        return FILL_OK;
    case 'i': {
        if (v->type != SM_INT)
            return FILL_TYPE;
        if (v->as.i < INT32_MIN || v->as.i > INT32_MAX)
            return FILL_RANGE;
        int32_t x = (int32_t)v->as.i;
        memcpy(p, &x, 4);
        return FILL_OK;
    }
    default: { /* 'd', 'f': floats, and ints as floats (as NumPy converts them) */
        double x;
        if (v->type == SM_FLOAT)
            x = v->as.f;
        else if (v->type == SM_INT)
            x = (double)v->as.i;
        else
            return FILL_TYPE;
        if (d->code == 'd') {
            memcpy(p, &x, 8);
        } else {
            float f = (float)x;
            memcpy(p, &f, 4);
        }
        return FILL_OK;
    }
    }
}

/* The buffer to fill: the caller's `out`, checked, or a new NumPy array. */
static PyObject *array_out(PyObject *out, const dtype_info *d, Py_ssize_t n, Py_ssize_t width,
                           Py_buffer *view) {
    PyObject *arr;
    if (out != NULL && out != Py_None) {
        arr = Py_NewRef(out);
    } else {
        PyObject *np = PyImport_ImportModule("numpy");
        if (np == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ImportError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ImportError,
                                "get_array() needs NumPy to make its result: install numpy, or "
                                "pass out= a writable buffer");
            }
            return NULL;
        }
        arr = width > 0 ? PyObject_CallMethod(np, "empty", "(nn)s", n, width, d->name)
                        : PyObject_CallMethod(np, "empty", "(n)s", n, d->name);
        Py_DECREF(np);
        if (arr == NULL)
            return NULL;
    }
    if (PyObject_GetBuffer(arr, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    Py_ssize_t row = (width > 0 ? width : 1) * d->size; /* no overflow: width checked */
    if (n > PY_SSIZE_T_MAX / row) {
        PyBuffer_Release(view);
        Py_DECREF(arr);
        return PyErr_NoMemory();
    }
    Py_ssize_t want = n * row;
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    char code = f[0] == 'l' && view->itemsize == 8 ? 'q' : f[0] == 'L' && view->itemsize == 8 ? 'Q' : f[0];
    if ((strcmp(f, "B") != 0 && (code != d->code || f[1] != '\0')) || view->len != want) {
        PyErr_Format(PyExc_ValueError,
                     "get_array(): out must be a C-contiguous buffer of %zd %s items (format '%c' "
                     "or bytes), got %zd bytes of format '%s'",
                     n * (width > 0 ? width : 1), d->name, d->code, view->len,
                     view->format ? view->format : "B");
        PyBuffer_Release(view);
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

#define FILL_CHUNK 256

typedef struct {
    const lookup_target *t;
    const key_batch *b;
    const dtype_info *d;
    Py_ssize_t width;
    char *out;
    const char *dflt; /* the default as one row, or NULL: a missing key is an error */
    /* where it stopped */
    Py_ssize_t at;
    fill_error why;
    int code;
} fill_job;

/* Fill out for every key, or stop at the first that cannot be stored.  Needs no GIL for a
 * snapshot: it touches no Python object. */
static void fill(fill_job *j) {
    sm_value values[FILL_CHUNK];
    int status[FILL_CHUNK];
    size_t row = (size_t)j->d->size * (size_t)(j->width > 0 ? j->width : 1);
    j->why = FILL_OK;
    for (Py_ssize_t start = 0; start < j->b->n; start += FILL_CHUNK) {
        size_t m = (size_t)(j->b->n - start < FILL_CHUNK ? j->b->n - start : FILL_CHUNK);
        target_lookup(j->t, j->b, start, m, values, status);
        for (size_t k = 0; k < m; k++) {
            Py_ssize_t i = start + (Py_ssize_t)k;
            char *p = j->out + (size_t)i * row;
            fill_error e = FILL_OK;
            if (status[k] == 0)
                e = store_value(j->d, j->width, p, &values[k]);
            else if (status[k] != SM_NOTFOUND)
                e = FILL_CORRUPT;
            else if (j->dflt != NULL)
                memcpy(p, j->dflt, row);
            else
                e = FILL_MISSING;
            if (e != FILL_OK) {
                j->at = i;
                j->why = e;
                j->code = status[k];
                return;
            }
        }
    }
}

SMPY_COLD static void fill_raise(const fill_job *j) {
    PyObject *key = batch_key_object(j->b, j->at);
    if (key == NULL)
        return;
    switch (j->why) {
    case FILL_MISSING:
        PyErr_SetObject(PyExc_KeyError, key);
        break;
    case FILL_TYPE:
        PyErr_Format(PyExc_TypeError,
                     "get_array(): the value of key %R is not %s (dtype %s%s)", key,
                     j->width > 0 ? "bytes" : j->d->is_float ? "a number" : "an int", j->d->name,
                     j->width > 0 ? ", with width" : "");
        break;
    case FILL_SIZE:
        PyErr_Format(PyExc_ValueError,
                     "get_array(): the value of key %R is not %zd bytes (width %zd of %s)", key,
                     j->width * j->d->size, j->width, j->d->name);
        break;
    case FILL_RANGE:
        PyErr_Format(PyExc_OverflowError, "get_array(): the value of key %R does not fit in %s",
                     key, j->d->name);
        break;
    default:
        set_error(j->code);
        break;
    }
    Py_DECREF(key);
}

static PyObject *get_array(const lookup_target *t, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"keys", "dtype", "default", "out", "width", NULL};
    PyObject *keys, *dtype_obj = NULL, *dflt = NULL, *out = NULL, *width_obj = Py_None;
    PyObject *arr = NULL;
    Py_ssize_t width = 0;
    key_batch b = {0};
    Py_buffer view;
    char *dflt_buf = NULL;
    const dtype_info *d;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$OOO:get_array", kwlist, &keys, &dtype_obj,
                                     &dflt, &out, &width_obj))
        return NULL;
    if ((d = dtype_lookup(dtype_obj)) == NULL)
        return NULL;
    if (width_obj != Py_None) {
        width = PyNumber_AsSsize_t(width_obj, PyExc_OverflowError);
        if (width == -1 && PyErr_Occurred())
            return NULL;
        if (width < 1) {
            PyErr_SetString(PyExc_ValueError, "get_array(): width must be at least 1");
            return NULL;
        }
        if (width > PY_SSIZE_T_MAX / d->size) {
            PyErr_Format(PyExc_OverflowError, "get_array(): width %zd is too large", width);
            return NULL;
        }
    } else if (!d->scalar) {
        PyErr_Format(PyExc_ValueError,
                     "get_array(): dtype %s needs width= (rows of raw bytes values); numbers "
                     "convert to int64, int32, float64 or float32",
                     d->name);
        return NULL;
    }
    if (batch_collect(&b, keys, "get_array") < 0)
        goto fail;
    /* The result first: its size is checked there, so the default's row below is no
     * larger than a row of a buffer that exists. */
    if ((arr = array_out(out, d, b.n, width, &view)) == NULL)
        goto fail;
    size_t row = (size_t)d->size * (size_t)(width > 0 ? width : 1);
    if (dflt != NULL) {
        dflt_buf = PyMem_Malloc(row);
        if (dflt_buf == NULL) {
            PyErr_NoMemory();
            goto fail_view;
        }
        /* one item converted (it may run a __float__ or __index__), then copied */
        if (store_number(d, dflt_buf, dflt) < 0)
            goto fail_view;
        for (size_t k = 1; k < row / (size_t)d->size; k++)
            memcpy(dflt_buf + k * (size_t)d->size, dflt_buf, (size_t)d->size);
    }
    /* Python code may run up to here (numpy.empty, a default's __float__): the map's
     * kind is read, and the keys converted, after it. */
    sm_key_kind kind;
    if (target_kind(t, &kind) < 0 || batch_convert(&b, kind, "get_array") < 0)
        goto fail_view;
    fill_job job = {t, &b, d, width, (char *)view.buf, dflt_buf, 0, FILL_OK, 0};
    if (t->snap != NULL && b.n >= BATCH_NOGIL) {
        Py_BEGIN_ALLOW_THREADS
        fill(&job);
        Py_END_ALLOW_THREADS
    } else {
        fill(&job);
    }
    PyBuffer_Release(&view);
    if (job.why != FILL_OK) {
        fill_raise(&job);
        Py_CLEAR(arr);
    }
    goto fail;
fail_view:
    PyBuffer_Release(&view);
    Py_CLEAR(arr);
fail:
    PyMem_Free(dflt_buf);
    batch_free(&b);
    return arr;
}

/* ------------------------------------------------------------ the methods */

SMPY_DOC(get_many_doc,
         "get_many($self, keys, default=None, /)\n--\n\n"
         "The values of keys, as a list in the same order (default for each missing key).\n\n"
         "keys is any iterable of keys (a tuple is read as it is, a list copied into one), or a\n"
         "buffer: a NumPy array of integers for an int map, of fixed-width bytes (S<n>, trailing\n"
         "NULs stripped) for a bytes map.  A key of the wrong kind is a KeyKindError (a\n"
         "TypeError) naming its position.  On a sharedmap the cache misses of many keys\n"
         "overlap (sm_get_many), so a batch costs far less per key than get() one by one.");

SMPY_DOC(get_array_doc,
         "get_array($self, keys, dtype, *, default=<unrepresentable>, out=None, width=None)\n--\n\n"
         "The values of keys as a NumPy array (or written into out), with no Python object per\n"
         "key.  keys: as for get_many().  dtype 'int64' or 'int32' (int values), 'float64' or\n"
         "'float32' (float and int values): a value of another type is a TypeError naming the\n"
         "key.  With width=dim, every value is bytes holding dim items of dtype (any of int8-64,\n"
         "uint8-64, float16-64, native byte order) and the result is an (n, dim) array: an\n"
         "embedding table's rows gathered in one pass; a value of another size is a ValueError\n"
         "naming the key.  A missing key takes default (a number; every item of its row), or\n"
         "is a KeyError.  out: a writable C-contiguous buffer of the right size, filled and\n"
         "returned instead of a new array (NumPy is needed only when out is not given).");

PyObject *reader_get_many(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1 && nargs != 2)
        return nargs_error("get_many", nargs, 1, 2);
    lookup_target t = {reader_hold(self), NULL};
    if (t.snap == NULL)
        return NULL;
    PyObject *res = get_many(&t, args[0], nargs == 2 ? args[1] : Py_None);
    Py_DECREF(t.snap);
    return res;
}

PyObject *reader_get_array(ReaderObject *self, PyObject *args, PyObject *kwds) {
    lookup_target t = {reader_hold(self), NULL};
    if (t.snap == NULL)
        return NULL;
    PyObject *res = get_array(&t, args, kwds);
    Py_DECREF(t.snap);
    return res;
}

PyObject *builder_get_many(BuilderObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1 && nargs != 2)
        return nargs_error("get_many", nargs, 1, 2);
    lookup_target t = {NULL, self};
    Py_INCREF(self);
    PyObject *res = get_many(&t, args[0], nargs == 2 ? args[1] : Py_None);
    Py_DECREF(self);
    return res;
}

PyObject *builder_get_array(BuilderObject *self, PyObject *args, PyObject *kwds) {
    lookup_target t = {NULL, self};
    Py_INCREF(self);
    PyObject *res = get_array(&t, args, kwds);
    Py_DECREF(self);
    return res;
}
