/* _sharedmap.c: the CPython binding of sharedmap: conversions between Python
 * objects and the C API of include/sharedmap.h, and the Python types.  The map
 * itself (format, lookup, ordering, publishing) lives in src/; nothing here
 * second-guesses it.
 *
 * Objects, and who keeps what alive
 * ---------------------------------
 *
 *     rbtree ----------------------------> sm_builder (owned)
 *       ^   ^
 *       |   +-- rbtree_iterator   (strong ref; sees insertions and deletions
 *       +------ sharedmap_keys/values/items views   through sm_builder_version)
 *
 *     sharedmap --(strong ref)--> _Snapshot ---> sm_reader (owned)
 *                                  ^  ^  ^      [+ the Py_buffer of the source
 *                                  |  |  |         object, for loads()]
 *              sharedmap_iterator -+  |  +- memoryviews from getbuffer()
 *         sharedmap_keys/values/items +     (the _Snapshot is their exporter)
 *
 * A sharedmap only points at the _Snapshot of the version it currently shows.
 * close() drops that reference and refresh() swaps it for a newer one; neither
 * can pull memory from under an iterator, a view or a memoryview, because each of
 * them holds the _Snapshot it came from.  The snapshot is unmapped when the last
 * of them goes.
 *
 * Threads: lookups never release the GIL (they are far shorter than a GIL
 * round trip).  Long builder work (layout, write, publish, save, bulk copies)
 * runs with the GIL released; meanwhile the rbtree's busy counter is non-zero and
 * every other use of that rbtree raises RuntimeError, because a builder is not
 * thread-safe (sharedmap.h).  verify() releases the GIL too, holding its own
 * reference to the _Snapshot so that a close() in another thread cannot unmap it.
 *
 * Keys are str or bytes, one kind per map.  Lookups with the other kind, or with
 * any other type, raise TypeError ("strict" lookups: get, [], in, ordered
 * queries); the set-like views and == answer "not there" instead ("soft"
 * lookups), as a set would.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sharedmap.h"

/* ------------------------------------------------------------ compatibility */

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *sm_compat_newref(PyObject *o) {
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) sm_compat_newref((PyObject *)(o))
#endif
#ifndef Py_TPFLAGS_MAPPING
#define Py_TPFLAGS_MAPPING 0
#endif
#ifndef Py_TPFLAGS_IMMUTABLETYPE
#define Py_TPFLAGS_IMMUTABLETYPE 0
#endif
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
#define Py_TPFLAGS_DISALLOW_INSTANTIATION 0
#endif

/* Cast for method tables: METH_FASTCALL and METH_KEYWORDS functions have other
 * signatures than PyCFunction; going through void (*)(void) keeps
 * -Wcast-function-type quiet, as CPython's own modules do. */
#define METH_CAST(f) ((PyCFunction)(void (*)(void))(f))

/* ------------------------------------------------------------ module state */

typedef struct {
    PyTypeObject *snapshot_type;
    PyTypeObject *reader_type;
    PyTypeObject *builder_type;
    PyTypeObject *snapiter_type;
    PyTypeObject *builditer_type;
    PyTypeObject *keys_type;
    PyTypeObject *values_type;
    PyTypeObject *items_type;
    PyObject *mapping_abc; /* collections.abc.Mapping, for == */
    PyObject *open_func;   /* this module's open() and loads(), for __reduce__ */
    PyObject *loads_func;
} module_state;

/* share(), save() and remove() calls made in this process: a reader that found its
 * map absent looks again at once when this changed (refresh()).  Process-wide, not
 * module state: remove() is a static method, and any publish may concern any reader. */
static uint64_t local_publishes;

static inline void note_publish(void) {
    __atomic_fetch_add(&local_publishes, 1, __ATOMIC_RELAXED);
}

static inline uint64_t publishes_seen(void) {
    return __atomic_load_n(&local_publishes, __ATOMIC_RELAXED);
}

static struct PyModuleDef sharedmap_module;

static inline module_state *module_get_state(PyObject *module) {
    return (module_state *)PyModule_GetState(module);
}

/* The module that defined @p tp or one of its bases (for subclasses). */
static PyObject *module_of_type(PyTypeObject *tp) {
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

static module_state *state_of(PyObject *self) {
    PyObject *mod = module_of_type(Py_TYPE(self));
    return mod ? module_get_state(mod) : NULL;
}

/* ------------------------------------------------------------ errors */

/* The one mapping from library error codes to Python exceptions.  -errno
 * becomes OSError(errno, message, context), which Python turns into its
 * subclass (FileNotFoundError, FileExistsError, PermissionError, ...); the SM_E*
 * codes of SM_ERROR_MAP map as below, everything about bad bytes or bad names
 * being a ValueError.  @p context (a name or a path, may be NULL) ends up in the
 * message, or as the OSError's filename. */
static PyObject *exception_for(int code) {
    switch (code) {
    case SM_NOTFOUND:
        return PyExc_KeyError;
    case SM_EKEYKIND:
        return PyExc_TypeError;
    case SM_ETOOBIG:
        return PyExc_OverflowError;
    default: /* SM_ENAME, SM_EBADMAGIC .. SM_ECHECKSUM, SM_EUTF8, SM_ETYPE, SM_ENOTSNAPSHOT */
        return PyExc_ValueError;
    }
}

static PyObject *set_error(int code, PyObject *context) {
    if (code == -ENOMEM)
        return PyErr_NoMemory();
    if (code < 0 && code > -4096) {
        PyObject *args = context ? Py_BuildValue("(isO)", -code, sm_strerror(code), context)
                                 : Py_BuildValue("(is)", -code, sm_strerror(code));
        /* The instance, not (OSError, args): OSError(errno, ...) picks the subclass
         * (FileNotFoundError, ...), and before Python 3.12 an exception set as a type
         * and arguments could still be matched as a plain OSError. */
        PyObject *exc = args != NULL ? PyObject_Call(PyExc_OSError, args, NULL) : NULL;
        Py_XDECREF(args);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    if (context != NULL)
        PyErr_Format(exception_for(code), "%s: %R", sm_strerror(code), context);
    else
        PyErr_SetString(exception_for(code), sm_strerror(code));
    return NULL;
}

static const char *kind_name(sm_key_kind kind) {
    return kind == SM_KEYS_STR ? "str" : kind == SM_KEYS_BYTES ? "bytes" : "no";
}

static void set_kind_error(sm_key_kind map, sm_key_kind key) {
    PyErr_Format(PyExc_TypeError, "this map has %s keys, got %s", kind_name(map), kind_name(key));
}

static PyObject *closed_error(void) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed sharedmap");
    return NULL;
}

static PyObject *nargs_error(const char *fname, Py_ssize_t nargs, Py_ssize_t lo, Py_ssize_t hi) {
    if (lo == hi)
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd argument%s (%zd given)", fname, lo,
                     lo == 1 ? "" : "s", nargs);
    else
        PyErr_Format(PyExc_TypeError, "%s() takes from %zd to %zd arguments (%zd given)", fname, lo,
                     hi, nargs);
    return NULL;
}

/* A map name (a str) as the bytes of its file name, a new reference: encoded the
 * way os encodes file names (the filesystem encoding with surrogateescape), so that
 * a name that is not UTF-8, as list_maps() gives it, opens and removes like any
 * other.  No NUL (sm_name_check does the rest).  Runs no Python code. */
static PyObject *name_to_bytes(PyObject *obj) {
    PyObject *b;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "map name must be str, not %.200s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    b = PyUnicode_EncodeFSDefault(obj);
    if (b != NULL && strlen(PyBytes_AS_STRING(b)) != (size_t)PyBytes_GET_SIZE(b)) {
        Py_DECREF(b);
        return set_error(SM_ENAME, obj);
    }
    return b;
}

/* ------------------------------------------------------------ conversions */

/* A key as the C API wants it.  data belongs to the Python key object. */
typedef struct {
    const char *data;
    Py_ssize_t size;
    sm_key_kind kind;
} key_ref;

static inline int key_parse(PyObject *key, key_ref *k) {
    if (PyUnicode_CheckExact(key) && PyUnicode_IS_COMPACT_ASCII(key)) {
        k->data = (const char *)PyUnicode_DATA(key);
        k->size = PyUnicode_GET_LENGTH(key);
        k->kind = SM_KEYS_STR;
        return 0;
    }
    if (PyBytes_CheckExact(key)) {
        k->data = PyBytes_AS_STRING(key);
        k->size = PyBytes_GET_SIZE(key);
        k->kind = SM_KEYS_BYTES;
        return 0;
    }
    if (PyUnicode_Check(key)) {
        k->data = PyUnicode_AsUTF8AndSize(key, &k->size);
        k->kind = SM_KEYS_STR;
        return k->data == NULL ? -1 : 0;
    }
    if (PyBytes_Check(key)) {
        k->data = PyBytes_AS_STRING(key);
        k->size = PyBytes_GET_SIZE(key);
        k->kind = SM_KEYS_BYTES;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "keys must be str or bytes, not %.200s", Py_TYPE(key)->tp_name);
    return -1;
}

/* How a key relates to a map with keys of kind @p map. */
typedef enum { KEY_ERROR = -1, KEY_CANNOT_BE_IN = 0, KEY_USABLE = 1 } key_fit;

static inline key_fit key_fit_map(PyObject *key, sm_key_kind map, int strict, key_ref *k) {
    if (key_parse(key, k) < 0) {
        /* A soft lookup of something that cannot be a key (not str/bytes, or a str
         * with lone surrogates) just finds nothing. */
        if (!strict && (PyErr_ExceptionMatches(PyExc_TypeError) ||
                        PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))) {
            PyErr_Clear();
            return KEY_CANNOT_BE_IN;
        }
        return KEY_ERROR;
    }
    if (k->kind != map) {
        if (map == SM_KEYS_NONE || !strict)
            return KEY_CANNOT_BE_IN;
        set_kind_error(map, k->kind);
        return KEY_ERROR;
    }
    return KEY_USABLE;
}

/* Most keys and values are short and ASCII: for those, a check of the bytes and a
 * copy into a new compact ASCII str beat the general decoder, which handles
 * everything else.  Lengths vary from one entry to the next, so both work with
 * overlapping words at offsets computed from n, not with loops whose trip count
 * the branch predictor would guess wrong: the words at 0, min(8, n - 8),
 * max(n - 16, 0) and n - 8 cover 8 <= n <= 32 without a branch; longer strings
 * add words from 32 on. */
#define STR_ASCII_FAST_MAX 64

static inline uint64_t load64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline void store64(unsigned char *p, uint64_t w) {
    memcpy(p, &w, 8);
}

/* The offsets of four words that cover [0, n), 8 <= n <= 32. */
static inline void cover32(size_t n, size_t o[4]) {
    o[0] = 0;
    o[1] = n - 8 < 8 ? n - 8 : 8;
    o[2] = n > 16 ? n - 16 : 0;
    o[3] = n - 8;
}

/* Whether the n bytes at p, 2 <= n <= STR_ASCII_FAST_MAX, are all ASCII; and,
 * unless d is NULL, a copy of them at d either way.  Inlined with d NULL, it is
 * just the check. */
static inline int ascii_scan(unsigned char *d, const unsigned char *p, size_t n) {
    if (n >= 8) {
        size_t o[4];
        uint64_t acc = 0, w;
        if (n > 32) {
            for (size_t i = 32; i < n; i += 8) {
                size_t at = i + 8 <= n ? i : n - 8;
                acc |= w = load64(p + at);
                if (d != NULL)
                    store64(d + at, w);
            }
        }
        cover32(n < 32 ? n : 32, o);
        /* All four loaded, then all four stored (overlapping words store the same
         * bytes): no branch between them. */
        uint64_t w0 = load64(p + o[0]), w1 = load64(p + o[1]), w2 = load64(p + o[2]),
                 w3 = load64(p + o[3]);
        if (d != NULL) {
            store64(d + o[0], w0);
            store64(d + o[1], w1);
            store64(d + o[2], w2);
            store64(d + o[3], w3);
        }
        acc |= w0 | w1 | w2 | w3;
        return (acc & UINT64_C(0x8080808080808080)) == 0;
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        if (d != NULL) {
            memcpy(d, &a, 4);
            memcpy(d + n - 4, &b, 4);
        }
        return ((a | b) & 0x80808080u) == 0;
    }
    uint16_t x, y;
    memcpy(&x, p, 2);
    memcpy(&y, p + n - 2, 2);
    if (d != NULL) {
        memcpy(d, &x, 2);
        memcpy(d + n - 2, &y, 2);
    }
    return ((x | y) & 0x8080u) == 0;
}

/* A new compact ASCII str of the n bytes at data, 2 <= n <= STR_ASCII_FAST_MAX,
 * which ascii_scan accepted. */
static inline PyObject *str_ascii_new(const void *data, size_t n) {
    PyObject *s = PyUnicode_New((Py_ssize_t)n, 127);
    if (s != NULL)
        ascii_scan(PyUnicode_DATA(s), data, n);
    return s;
}

/* A str from UTF-8 that the library has validated. */
static inline PyObject *str_from_utf8(const void *data, size_t n) {
    if (n >= 2 && n <= STR_ASCII_FAST_MAX && ascii_scan(NULL, data, n))
        return str_ascii_new(data, n);
    return PyUnicode_DecodeUTF8((const char *)data, (Py_ssize_t)n, NULL);
}

static inline PyObject *key_to_py(sm_key_kind kind, const sm_buf *key) {
    if (kind == SM_KEYS_STR)
        return str_from_utf8(key->data, key->size);
    return PyBytes_FromStringAndSize((const char *)key->data, (Py_ssize_t)key->size);
}

static inline PyObject *value_to_py(const sm_value *v) {
    switch (v->type) {
    case SM_STR:
        return str_from_utf8(v->as.buf.data, v->as.buf.size);
    case SM_BYTES:
        return PyBytes_FromStringAndSize((const char *)v->as.buf.data, (Py_ssize_t)v->as.buf.size);
    case SM_INT:
        return PyLong_FromLongLong((long long)v->as.i);
    case SM_FLOAT:
        return PyFloat_FromDouble(v->as.f);
    case SM_TRUE:
        Py_RETURN_TRUE;
    case SM_FALSE:
        Py_RETURN_FALSE;
    case SM_NONE:
        Py_RETURN_NONE;
    }
    return set_error(SM_ECORRUPT, NULL);
}

/* A value as the C API wants it.  Its bytes belong to the Python object, or to
 * view (bytearray, memoryview) until value_release(). */
typedef struct {
    sm_value value;
    Py_buffer view;
    int has_view;
} py_value;

static int value_from_py(PyObject *o, py_value *out) {
    out->has_view = 0;
    if (PyUnicode_Check(o)) {
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(o, &n);
        if (p == NULL)
            return -1;
        out->value = sm_value_str(p, (size_t)n);
        return 0;
    }
    if (PyBytes_Check(o)) {
        out->value = sm_value_bytes(PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o));
        return 0;
    }
    if (PyBool_Check(o)) { /* before int: bool is an int */
        out->value = sm_value_bool(o == Py_True);
        return 0;
    }
    if (PyLong_Check(o)) {
        int overflow;
        long long i = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError,
                            "int value out of range: values are signed 64-bit integers");
            return -1;
        }
        if (i == -1 && PyErr_Occurred())
            return -1;
        out->value = sm_value_int((int64_t)i);
        return 0;
    }
    if (PyFloat_Check(o)) {
        out->value = sm_value_float(PyFloat_AS_DOUBLE(o));
        return 0;
    }
    if (o == Py_None) {
        out->value = sm_value_none();
        return 0;
    }
    if (PyByteArray_Check(o) || PyMemoryView_Check(o)) {
        if (PyObject_GetBuffer(o, &out->view, PyBUF_SIMPLE) < 0)
            return -1;
        out->has_view = 1;
        out->value = sm_value_bytes(out->view.buf, (size_t)out->view.len);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "values must be str, bytes, int, float, bool or None, not %.200s",
                 Py_TYPE(o)->tp_name);
    return -1;
}

static void value_release(py_value *v) {
    if (v->has_view) {
        PyBuffer_Release(&v->view);
        v->has_view = 0;
    }
}

enum { ITER_KEYS = 0, ITER_VALUES = 1, ITER_ITEMS = 2 };

/* A new (key, value) tuple (lookups that return one item). */
static PyObject *make_item(sm_key_kind kind, const sm_entry *e) {
    PyObject *k, *v, *t;
    k = key_to_py(kind, &e->key);
    if (k == NULL)
        return NULL;
    v = value_to_py(&e->value);
    if (v == NULL) {
        Py_DECREF(k);
        return NULL;
    }
    t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(k);
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, k);
    PyTuple_SET_ITEM(t, 1, v);
    return t;
}

/* ---- What iterators hand out, from recycled objects where possible
 *
 * A loop such as `for k, v in m.items()` drops each item before it asks for the
 * next one.  dict's items iterator refills its result tuple when nobody else holds
 * it; these iterators do that too, and they also refill the strs and bytes they
 * made before.  A str that only the iterator still references (reference count 1,
 * hash never computed, not interned: the conditions under which CPython itself
 * lets PyUnicode_Fill or PyUnicode_WriteChar modify a str) receives the
 * characters of the next key or value of the same length, instead of being freed
 * while a new one is allocated.  A bytes object that only the iterator references
 * receives the next bytes of the same length and forgets its cached hash, as
 * nobody else can have read it (_PyBytes_Resize, too, changes a bytes object that
 * nobody else holds).  What the caller keeps has a second reference and is never
 * touched.  Only compact ASCII strs and bytes of 2 to STR_ASCII_FAST_MAX bytes
 * made here are recycled; they are kept by length, two per length class, because
 * the loop variables still hold the previous item while the next one is made.
 * Free-threaded builds recycle nothing (another thread could take a reference
 * between the check and the write); bytes are recycled up to Python 3.14, as the
 * field of their cached hash is deprecated (and may go; then so may the cache). */
#define RECYCLE_CLASSES (STR_ASCII_FAST_MAX + 1) /* one per length */
#define RECYCLE_WAYS 2
#if !defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030F0000
#define RECYCLE_BYTES 1
#else
#define RECYCLE_BYTES 0
#endif

typedef PyObject *recycle_set[RECYCLE_WAYS];
/* The groups of length classes: a key never evicts a value, a str never a bytes. */
enum {
    RECYCLE_KEY_STRS,
    RECYCLE_KEY_BYTES,
    RECYCLE_VALUE_STRS,
    RECYCLE_VALUE_BYTES,
    RECYCLE_GROUPS
};

typedef struct {
    PyObject *item;     /* the last items tuple */
    recycle_set *sets;  /* RECYCLE_GROUPS * RECYCLE_CLASSES, allocated when first needed */
} iter_recycler;

static void recycler_init(iter_recycler *rc) {
    rc->item = NULL;
    rc->sets = NULL;
}

static void recycler_clear(iter_recycler *rc) {
    Py_CLEAR(rc->item);
    if (rc->sets != NULL) {
        for (int c = 0; c < RECYCLE_GROUPS * RECYCLE_CLASSES; c++)
            for (int w = 0; w < RECYCLE_WAYS; w++)
                Py_CLEAR(rc->sets[c][w]);
        PyMem_Free(rc->sets);
        rc->sets = NULL;
    }
}

#ifndef Py_GIL_DISABLED
/* The set of objects of group g and length n (2 <= n <= STR_ASCII_FAST_MAX), or
 * NULL if there is no memory for the sets: recycling is only an optimisation. */
static inline PyObject **recycle_set_of(iter_recycler *rc, int g, size_t n) {
    if (rc->sets == NULL) {
        rc->sets = PyMem_Calloc(RECYCLE_GROUPS * RECYCLE_CLASSES, sizeof *rc->sets);
        if (rc->sets == NULL)
            return NULL;
    }
    return rc->sets[g * RECYCLE_CLASSES + (int)n];
}

/* Keep s, just made, in set (of its group and length); the least recently made goes. */
static inline void recycle_keep(PyObject **set, PyObject *s) {
    Py_XDECREF(set[RECYCLE_WAYS - 1]);
    memmove(set + 1, set, (RECYCLE_WAYS - 1) * sizeof *set);
    set[0] = Py_NewRef(s);
}

static inline int str_recyclable(PyObject *s) {
    return Py_REFCNT(s) == 1 && ((PyASCIIObject *)s)->hash == -1 && !PyUnicode_CHECK_INTERNED(s)
#if PY_VERSION_HEX < 0x030C0000
           && ((PyASCIIObject *)s)->wstr == NULL /* no cached wchar_t copy to go stale */
#endif
        ;
}
#endif

/* A str of the n validated UTF-8 bytes at data; g is RECYCLE_KEY_STRS or
 * RECYCLE_VALUE_STRS. */
static inline PyObject *str_recycled(iter_recycler *rc, int g, const void *data, size_t n) {
#ifndef Py_GIL_DISABLED
    PyObject **set, *s;
    if (n >= 2 && n <= STR_ASCII_FAST_MAX && (set = recycle_set_of(rc, g, n)) != NULL) {
        for (int w = 0; w < RECYCLE_WAYS; w++) {
            s = set[w]; /* of length n, as every str in this set */
            if (s != NULL && str_recyclable(s)) {
                if (ascii_scan(PyUnicode_DATA(s), data, n)) /* copies as it checks */
                    return Py_NewRef(s);
                /* Not ASCII after all: s, which nobody else sees, now holds bytes
                 * no ASCII str may hold, so it goes. */
                Py_CLEAR(set[w]);
                return PyUnicode_DecodeUTF8((const char *)data, (Py_ssize_t)n, NULL);
            }
        }
        if (!ascii_scan(NULL, data, n))
            return PyUnicode_DecodeUTF8((const char *)data, (Py_ssize_t)n, NULL);
        s = str_ascii_new(data, n);
        if (s != NULL)
            recycle_keep(set, s);
        return s;
    }
#else
    (void)rc;
    (void)g;
#endif
    return str_from_utf8(data, n);
}

/* A bytes object of the n bytes at data; g is RECYCLE_KEY_BYTES or
 * RECYCLE_VALUE_BYTES. */
static inline PyObject *bytes_recycled(iter_recycler *rc, int g, const void *data, size_t n) {
#if RECYCLE_BYTES
    PyObject **set, *b;
    if (n >= 2 && n <= STR_ASCII_FAST_MAX && (set = recycle_set_of(rc, g, n)) != NULL) {
        for (int w = 0; w < RECYCLE_WAYS; w++) {
            b = set[w]; /* of size n, as every bytes in this set */
            if (b != NULL && Py_REFCNT(b) == 1) {
                (void)ascii_scan((unsigned char *)PyBytes_AS_STRING(b), data, n); /* copies */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* from 3.11 on */
                ((PyBytesObject *)b)->ob_shash = -1; /* its hash is computed anew */
#pragma GCC diagnostic pop
                return Py_NewRef(b);
            }
        }
        b = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)n);
        if (b != NULL)
            recycle_keep(set, b);
        return b;
    }
#else
    (void)rc;
    (void)g;
#endif
    return PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)n);
}

static PyObject *key_recycled(iter_recycler *rc, sm_key_kind kind, const sm_buf *key) {
    if (kind == SM_KEYS_STR)
        return str_recycled(rc, RECYCLE_KEY_STRS, key->data, key->size);
    return bytes_recycled(rc, RECYCLE_KEY_BYTES, key->data, key->size);
}

static PyObject *value_recycled(iter_recycler *rc, const sm_value *v) {
    if (v->type == SM_STR)
        return str_recycled(rc, RECYCLE_VALUE_STRS, v->as.buf.data, v->as.buf.size);
    if (v->type == SM_BYTES)
        return bytes_recycled(rc, RECYCLE_VALUE_BYTES, v->as.buf.data, v->as.buf.size);
    return value_to_py(v);
}

/* The items tuple is reused where nothing else holds it, except on free-threaded
 * builds (as the strs) and from 3.14 on, where a tuple caches its hash. */
#if !defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
#define RECYCLE_ITEMS 1
#else
#define RECYCLE_ITEMS 0
#endif

static PyObject *item_recycled(iter_recycler *rc, sm_key_kind kind, const sm_entry *e) {
    PyObject *k, *v, *t = NULL;
#if RECYCLE_ITEMS
    if (rc->item != NULL && Py_REFCNT(rc->item) == 1) {
        /* Nobody else can see this tuple (see below), so it may be emptied, as
         * PyTuple_New returns one: the previous key and value go first, so that
         * they can be recycled.  Releasing them runs no code. */
        t = rc->item;
        for (Py_ssize_t i = 0; i < 2; i++) {
            PyObject *old = PyTuple_GET_ITEM(t, i);
            PyTuple_SET_ITEM(t, i, NULL);
            Py_XDECREF(old);
        }
    }
#endif
    /* The key and value are made before PyTuple_New, which can start a garbage
     * collection, whose finalizers and gc.callbacks may change the rbtree that e
     * points into, or call next() on this iterator and refill the batch that e is
     * in.  Making them allocates nothing the collector counts. */
    k = key_recycled(rc, kind, &e->key);
    if (k == NULL)
        return NULL;
    v = value_recycled(rc, &e->value);
    if (v == NULL) {
        Py_DECREF(k);
        return NULL;
    }
    if (t == NULL) {
        t = PyTuple_New(2);
        if (t == NULL) {
            Py_DECREF(k);
            Py_DECREF(v);
            return NULL;
        }
        /* Its items are always str, bytes, int, float, bool or None, which can be
         * in no reference cycle: the collector never needs to see it (CPython
         * untracks such tuples itself when it meets them). */
        PyObject_GC_UnTrack(t);
#if RECYCLE_ITEMS
        Py_XSETREF(rc->item, Py_NewRef(t));
#endif
    } else {
        Py_INCREF(t);
    }
    PyTuple_SET_ITEM(t, 0, k);
    PyTuple_SET_ITEM(t, 1, v);
    return t;
}

/* What an iterator in mode returns for entry e. */
static PyObject *iter_output(iter_recycler *rc, int mode, sm_key_kind kind, const sm_entry *e) {
    switch (mode) {
    case ITER_KEYS:
        return key_recycled(rc, kind, &e->key);
    case ITER_VALUES:
        return value_recycled(rc, &e->value);
    default:
        return item_recycled(rc, kind, e);
    }
}

static void format_size(char *buf, size_t n, uint64_t size) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double s = (double)size;
    int u = -1;
    if (size < 1024) {
        snprintf(buf, n, "%llu B", (unsigned long long)size);
        return;
    }
    while (s >= 1024.0 && u < 4) {
        s /= 1024.0;
        u++;
    }
    snprintf(buf, n, "%.1f %s", s, units[u]);
}

typedef enum { LOOKUP_ERROR = -1, LOOKUP_MISSING = 0, LOOKUP_FOUND = 1 } lookup_result;

/* ============================================================ _Snapshot */

typedef struct {
    PyObject_HEAD
    sm_reader *r;
    sm_key_kind kind;
    uint64_t count;
    Py_buffer source; /* loads(): the caller's buffer, held as long as the reader */
    int has_source;
    Py_ssize_t exports;
} SnapshotObject;

/* Takes ownership of @p r and of @p source (may be NULL), also on failure. */
static SnapshotObject *snapshot_new(module_state *st, sm_reader *r, Py_buffer *source) {
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

static PyType_Spec snapshot_spec = {
    .name = "sharedmap._sharedmap._Snapshot",
    .basicsize = sizeof(SnapshotObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = snapshot_slots,
};

/* Strict or soft point lookup in a snapshot; *out points into it. */
static inline lookup_result snap_lookup(SnapshotObject *s, PyObject *key, int strict,
                                        sm_value *out) {
    key_ref k;
    int rc;
    switch (key_fit_map(key, s->kind, strict, &k)) {
    case KEY_ERROR:
        return LOOKUP_ERROR;
    case KEY_CANNOT_BE_IN:
        return LOOKUP_MISSING;
    case KEY_USABLE:
        break;
    }
    rc = sm_get(s->r, k.data, (size_t)k.size, out);
    if (rc == 0)
        return LOOKUP_FOUND;
    if (rc == SM_NOTFOUND)
        return LOOKUP_MISSING;
    set_error(rc, NULL);
    return LOOKUP_ERROR;
}

/* A read-only memoryview of [p, p+n) inside the snapshot; it keeps s alive. */
static PyObject *snapshot_subview(SnapshotObject *s, const void *p, size_t n) {
    size_t size;
    const char *base = (const char *)sm_reader_data(s->r, &size);
    Py_ssize_t start = (Py_ssize_t)((const char *)p - base);
    PyObject *whole, *lo = NULL, *hi = NULL, *slice = NULL, *res = NULL;
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

/* ============================================================ sharedmap_iterator */

/* Walks the ranks [begin, end) of one snapshot, decoding entries in batches with
 * sm_cursor_read_many.  Forward: one sm_seek_rank to start, then batches in order.
 * Backward: records have no back links (sm_cursor_prev re-seeks from the block's
 * sample on every step), so each batch is the ITER_BATCH ranks below the last
 * one, sought once, read forward and handed out from the top.  Batches start
 * small and double, so that next(iter(m)) decodes one entry, not ITER_BATCH. */
#define ITER_BATCH 32

typedef struct {
    PyObject_HEAD
    SnapshotObject *snap;
    sm_cursor cur;      /* forward: where the next batch starts */
    uint64_t remaining; /* entries still to return, decoded or not */
    uint64_t below;     /* backward: the ranks still to decode are [.., below) */
    sm_entry *batch;    /* decoded entries still to return: [lo, hi) */
    int lo, hi;
    int batch_size; /* of the next batch */
    int mode;
    int reverse;
    iter_recycler rc;
} SnapIterObject;

static PyObject *snapiter_new(module_state *st, SnapshotObject *s, uint64_t begin, uint64_t end,
                              int mode, int reverse) {
    SnapIterObject *it = PyObject_GC_New(SnapIterObject, st->snapiter_type);
    if (it == NULL)
        return NULL;
    it->snap = (SnapshotObject *)Py_NewRef(s);
    it->mode = mode;
    it->reverse = reverse;
    recycler_init(&it->rc);
    it->batch = NULL;
    it->lo = it->hi = 0;
    it->batch_size = 1;
    it->remaining = begin < end ? end - begin : 0;
    it->below = end;
    memset(&it->cur, 0, sizeof it->cur);
    if (it->remaining > 0 && !reverse) {
        int rc = sm_seek_rank(s->r, begin, &it->cur);
        if (rc != 0) {
            Py_DECREF(it);
            return set_error(rc, NULL);
        }
    }
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static int snapiter_traverse(SnapIterObject *it, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(it));
    /* Not rc: it holds only str, bytes, int, float, bool and None, and a tuple of them. */
    Py_VISIT(it->snap);
    return 0;
}

static void snapiter_dealloc(SnapIterObject *it) {
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->snap);
    recycler_clear(&it->rc);
    PyMem_Free(it->batch);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

/* Decode the next batch (there are entries remaining and none decoded).  The
 * entries handed out before a damaged record are the same whatever the batch
 * size: forward, a batch that stops short of one is handed out and the next fill
 * reports the error; backward, the entries above it come first, so a batch that
 * cannot be read whole is retried one rank at a time, and the error comes with
 * the first rank that cannot be read.  After an error the iterator is exhausted. */
static int snapiter_fill(SnapIterObject *it) {
    size_t k = it->remaining < (uint64_t)it->batch_size ? (size_t)it->remaining
                                                         : (size_t)it->batch_size;
    size_t got = 0;
    int rc;
    if (it->batch == NULL) {
        it->batch = PyMem_New(sm_entry, ITER_BATCH);
        if (it->batch == NULL) {
            PyErr_NoMemory(); /* nothing lost: the next call tries again */
            return -1;
        }
    }
    if (it->reverse) {
        for (;;) {
            sm_cursor c;
            rc = sm_seek_rank(it->snap->r, it->below - k, &c);
            if (rc == 0)
                rc = sm_cursor_read_many(&c, it->batch, k, &got);
            if (rc == 0 && got < k)
                rc = SM_ECORRUPT; /* stopped before a record it cannot read */
            if (rc == 0 || k == 1)
                break;
            k = 1;
            it->batch_size = 1;
        }
        if (rc == 0)
            it->below -= k;
    } else {
        rc = sm_cursor_read_many(&it->cur, it->batch, k, &got); /* 0: got >= 1 */
    }
    if (rc != 0) {
        /* A record that cannot be read, or fewer than the header promised: the
         * snapshot is damaged. */
        it->remaining = 0;
        set_error(rc != 0 && rc != SM_NOTFOUND ? rc : SM_ECORRUPT, NULL);
        return -1;
    }
    it->lo = 0;
    it->hi = (int)got;
    if (it->batch_size < ITER_BATCH)
        it->batch_size *= 2;
    return 0;
}

static PyObject *snapiter_next(SnapIterObject *it) {
    const sm_entry *e;
    if (it->remaining == 0)
        return NULL;
    if (it->lo == it->hi && snapiter_fill(it) < 0)
        return NULL;
    e = it->reverse ? &it->batch[--it->hi] : &it->batch[it->lo++];
    it->remaining--;
    /* e is read before anything that can run Python code (a collection started by
     * PyTuple_New), which could call next() here again and refill the batch. */
    return iter_output(&it->rc, it->mode, it->snap->kind, e);
}

static PyObject *snapiter_length_hint(SnapIterObject *it, PyObject *unused) {
    (void)unused;
    return PyLong_FromUnsignedLongLong((unsigned long long)it->remaining);
}

static PyMethodDef snapiter_methods[] = {
    {"__length_hint__", (PyCFunction)snapiter_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot snapiter_slots[] = {
    {Py_tp_dealloc, (void *)snapiter_dealloc},
    {Py_tp_traverse, (void *)snapiter_traverse},
    {Py_tp_iter, (void *)PyObject_SelfIter},
    {Py_tp_iternext, (void *)snapiter_next},
    {Py_tp_methods, snapiter_methods},
    {0, NULL},
};

static PyType_Spec snapiter_spec = {
    .name = "sharedmap._sharedmap.sharedmap_iterator",
    .basicsize = sizeof(SnapIterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = snapiter_slots,
};

/* ============================================================ rbtree (builder) */

typedef struct {
    PyObject_HEAD
    sm_builder *b;
    Py_ssize_t busy;    /* > 0 while another thread works on b without the GIL */
    uint64_t epoch;     /* bumped when b is cleared or replaced (iterators check it) */
    PyObject *weakreflist;
} BuilderObject;

static inline int builder_check(BuilderObject *self) {
    if (self->busy > 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "rbtree is in use by another thread (publishing, saving or copying)");
        return -1;
    }
    return 0;
}

/* Strict or soft lookup; *out points into the builder until its next change, and
 * *k (may be NULL) receives the parsed key. */
static inline lookup_result builder_lookup(BuilderObject *self, PyObject *key, int strict,
                                           sm_value *out, key_ref *kout) {
    key_ref k;
    int rc;
    if (builder_check(self) < 0)
        return LOOKUP_ERROR;
    switch (key_fit_map(key, sm_builder_key_kind(self->b), strict, &k)) {
    case KEY_ERROR:
        return LOOKUP_ERROR;
    case KEY_CANNOT_BE_IN:
        return LOOKUP_MISSING;
    case KEY_USABLE:
        break;
    }
    if (kout != NULL)
        *kout = k;
    rc = sm_builder_get(self->b, k.data, (size_t)k.size, out);
    if (rc == 0)
        return LOOKUP_FOUND;
    if (rc == SM_NOTFOUND)
        return LOOKUP_MISSING;
    set_error(rc, NULL);
    return LOOKUP_ERROR;
}

static int builder_put(BuilderObject *self, PyObject *key, PyObject *value) {
    key_ref k;
    py_value v;
    sm_key_kind have;
    int rc;
    if (builder_check(self) < 0 || key_parse(key, &k) < 0)
        return -1;
    have = sm_builder_key_kind(self->b);
    if (have != SM_KEYS_NONE && have != k.kind) {
        set_kind_error(have, k.kind);
        return -1;
    }
    if (value_from_py(value, &v) < 0)
        return -1;
    rc = sm_builder_put(self->b, k.kind, k.data, (size_t)k.size, &v.value);
    value_release(&v);
    if (rc != 0) {
        if (rc == SM_EKEYKIND)
            set_kind_error(have, k.kind);
        else
            set_error(rc, NULL);
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
        set_error(rc, NULL);
        return -1;
    }
    return 0;
}

/* ---- rbtree_iterator: ranks 0..count-1 through sm_builder_at (O(1) each once
 * sorted); any insertion or deletion under it is an error, as with dict. */

typedef struct {
    PyObject_HEAD
    BuilderObject *owner; /* NULL once exhausted */
    size_t pos, total;
    uint64_t version, epoch;
    int mode;
    int reverse;
    iter_recycler rc;
} BuildIterObject;

static PyObject *builditer_new(module_state *st, BuilderObject *b, int mode, int reverse) {
    BuildIterObject *it;
    if (builder_check(b) < 0)
        return NULL;
    it = PyObject_GC_New(BuildIterObject, st->builditer_type);
    if (it == NULL)
        return NULL;
    it->owner = (BuilderObject *)Py_NewRef(b);
    it->pos = 0;
    it->total = sm_builder_count(b->b);
    it->version = sm_builder_version(b->b);
    it->epoch = b->epoch;
    it->mode = mode;
    it->reverse = reverse;
    recycler_init(&it->rc);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static int builditer_traverse(BuildIterObject *it, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(it));
    /* Not rc: it holds only str, bytes, int, float, bool and None, and a tuple of them. */
    Py_VISIT(it->owner);
    return 0;
}

static int builditer_clear(BuildIterObject *it) {
    Py_CLEAR(it->owner);
    recycler_clear(&it->rc);
    return 0;
}

static void builditer_dealloc(BuildIterObject *it) {
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    builditer_clear(it);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyObject *builditer_next(BuildIterObject *it) {
    BuilderObject *b = it->owner;
    sm_entry e;
    size_t rank;
    int rc;
    if (b == NULL)
        return NULL;
    if (builder_check(b) < 0)
        return NULL;
    if (sm_builder_version(b->b) != it->version || b->epoch != it->epoch) {
        Py_CLEAR(it->owner);
        PyErr_SetString(PyExc_RuntimeError, "rbtree changed size during iteration");
        return NULL;
    }
    if (it->pos >= it->total) {
        Py_CLEAR(it->owner);
        return NULL;
    }
    rank = it->reverse ? it->total - 1 - it->pos : it->pos;
    rc = sm_builder_at(b->b, rank, &e);
    if (rc != 0)
        return set_error(rc, NULL);
    it->pos++;
    return iter_output(&it->rc, it->mode, sm_builder_key_kind(b->b), &e);
}

static PyObject *builditer_length_hint(BuildIterObject *it, PyObject *unused) {
    (void)unused;
    return PyLong_FromSize_t(it->owner && it->pos < it->total ? it->total - it->pos : 0);
}

static PyMethodDef builditer_methods[] = {
    {"__length_hint__", (PyCFunction)builditer_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot builditer_slots[] = {
    {Py_tp_dealloc, (void *)builditer_dealloc},
    {Py_tp_traverse, (void *)builditer_traverse},
    {Py_tp_clear, (void *)builditer_clear},
    {Py_tp_iter, (void *)PyObject_SelfIter},
    {Py_tp_iternext, (void *)builditer_next},
    {Py_tp_methods, builditer_methods},
    {0, NULL},
};

static PyType_Spec builditer_spec = {
    .name = "sharedmap._sharedmap.rbtree_iterator",
    .basicsize = sizeof(BuildIterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = builditer_slots,
};

/* ============================================================ views
 *
 * keys(), values() and items() of both a sharedmap (owner: its _Snapshot, so the
 * view keeps showing the version it was taken from) and an rbtree (owner: the
 * rbtree, so the view is live, as dict's are).  Keys and items views are
 * set-like: ==, <, <=, ..., &, |, -, ^ and isdisjoint() behave as dict's. */

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* SnapshotObject or BuilderObject */
    int is_builder;
    int mode;
} ViewObject;

static Py_ssize_t builder_len(BuilderObject *self);

static Py_ssize_t owner_len(PyObject *owner, int is_builder) {
    if (is_builder)
        return builder_len((BuilderObject *)owner);
    return (Py_ssize_t)((SnapshotObject *)owner)->count;
}

static PyObject *owner_iter(module_state *st, PyObject *owner, int is_builder, int mode,
                            int reverse) {
    if (is_builder)
        return builditer_new(st, (BuilderObject *)owner, mode, reverse);
    return snapiter_new(st, (SnapshotObject *)owner, 0, ((SnapshotObject *)owner)->count, mode,
                        reverse);
}

static lookup_result owner_lookup(PyObject *owner, int is_builder, PyObject *key, int strict,
                                  sm_value *out) {
    if (is_builder)
        return builder_lookup((BuilderObject *)owner, key, strict, out, NULL);
    return snap_lookup((SnapshotObject *)owner, key, strict, out);
}

/* Mapping equality: 1 equal, 0 not, -1 error, 2 when other is no Mapping. */
static int owner_equal(module_state *st, PyObject *owner, int is_builder, PyObject *other) {
    PyObject *it, *item;
    Py_ssize_t n, mine;
    int r = PyDict_Check(other) ? 1 : PyObject_IsInstance(other, st->mapping_abc);
    if (r <= 0)
        return r < 0 ? -1 : 2;
    n = PyObject_Size(other);
    if (n < 0)
        return -1;
    mine = owner_len(owner, is_builder);
    if (mine < 0)
        return -1;
    if (n != mine)
        return 0;
    it = owner_iter(st, owner, is_builder, ITER_ITEMS, 0);
    if (it == NULL)
        return -1;
    r = 1;
    while (r == 1 && (item = PyIter_Next(it)) != NULL) {
        PyObject *key = PyTuple_GET_ITEM(item, 0), *val = PyTuple_GET_ITEM(item, 1), *theirs;
        if (PyDict_Check(other)) {
            theirs = PyDict_GetItemWithError(other, key);
            Py_XINCREF(theirs);
        } else {
            theirs = PyObject_GetItem(other, key);
        }
        if (theirs == NULL) {
            if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_KeyError) &&
                !PyErr_ExceptionMatches(PyExc_TypeError))
                r = -1;
            else {
                PyErr_Clear();
                r = 0;
            }
        } else {
            r = PyObject_RichCompareBool(val, theirs, Py_EQ);
            Py_DECREF(theirs);
        }
        Py_DECREF(item);
    }
    if (r == 1 && PyErr_Occurred())
        r = -1;
    Py_DECREF(it);
    return r;
}

static PyObject *view_new(PyTypeObject *type, PyObject *owner, int is_builder, int mode) {
    ViewObject *v = PyObject_GC_New(ViewObject, type);
    if (v == NULL)
        return NULL;
    v->owner = Py_NewRef(owner);
    v->is_builder = is_builder;
    v->mode = mode;
    PyObject_GC_Track(v);
    return (PyObject *)v;
}

static int view_traverse(ViewObject *v, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(v));
    Py_VISIT(v->owner);
    return 0;
}

static int view_clear(ViewObject *v) {
    Py_CLEAR(v->owner);
    return 0;
}

static void view_dealloc(ViewObject *v) {
    PyTypeObject *tp = Py_TYPE(v);
    PyObject_GC_UnTrack(v);
    view_clear(v);
    PyObject_GC_Del(v);
    Py_DECREF(tp);
}

static Py_ssize_t view_len(ViewObject *v) {
    if (v->owner == NULL)
        return 0;
    return owner_len(v->owner, v->is_builder);
}

static PyObject *view_iter_dir(ViewObject *v, int reverse) {
    module_state *st = state_of((PyObject *)v);
    if (st == NULL)
        return NULL;
    return owner_iter(st, v->owner, v->is_builder, v->mode, reverse);
}

static PyObject *view_iter(ViewObject *v) {
    return view_iter_dir(v, 0);
}

static PyObject *view_reversed(ViewObject *v, PyObject *unused) {
    (void)unused;
    return view_iter_dir(v, 1);
}

static int view_contains(ViewObject *v, PyObject *obj) {
    sm_value val;
    lookup_result found;
    PyObject *mine, *it, *x;
    int r;
    switch (v->mode) {
    case ITER_KEYS:
        found = owner_lookup(v->owner, v->is_builder, obj, 0, &val);
        return found == LOOKUP_ERROR ? -1 : found == LOOKUP_FOUND;
    case ITER_ITEMS:
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2)
            return 0;
        found = owner_lookup(v->owner, v->is_builder, PyTuple_GET_ITEM(obj, 0), 0, &val);
        if (found != LOOKUP_FOUND)
            return found == LOOKUP_ERROR ? -1 : 0;
        mine = value_to_py(&val);
        if (mine == NULL)
            return -1;
        r = PyObject_RichCompareBool(mine, PyTuple_GET_ITEM(obj, 1), Py_EQ);
        Py_DECREF(mine);
        return r;
    default:
        it = view_iter(v);
        if (it == NULL)
            return -1;
        r = 0;
        while (r == 0 && (x = PyIter_Next(it)) != NULL) {
            r = PyObject_RichCompareBool(x, obj, Py_EQ);
            Py_DECREF(x);
        }
        Py_DECREF(it);
        if (r == 0 && PyErr_Occurred())
            r = -1;
        return r;
    }
}

/* Every element of @p a is in @p b. */
static int all_contained_in(PyObject *a, PyObject *b) {
    PyObject *it = PyObject_GetIter(a), *x;
    int ok = 1;
    if (it == NULL)
        return -1;
    while (ok == 1 && (x = PyIter_Next(it)) != NULL) {
        ok = PySequence_Contains(b, x);
        Py_DECREF(x);
    }
    Py_DECREF(it);
    if (ok == 1 && PyErr_Occurred())
        ok = -1;
    return ok;
}

static int is_setview(module_state *st, PyObject *o) {
    return Py_IS_TYPE(o, st->keys_type) || Py_IS_TYPE(o, st->items_type);
}

static PyObject *view_richcompare(PyObject *self, PyObject *other, int op) {
    module_state *st = state_of(self);
    Py_ssize_t n_self, n_other;
    int ok = 0;
    if (st == NULL)
        return NULL;
    if (!PyAnySet_Check(other) && !PyDictKeys_Check(other) && !PyDictItems_Check(other) &&
        !is_setview(st, other))
        Py_RETURN_NOTIMPLEMENTED;
    n_self = PyObject_Size(self);
    if (n_self < 0)
        return NULL;
    n_other = PyObject_Size(other);
    if (n_other < 0)
        return NULL;
    switch (op) {
    case Py_NE:
    case Py_EQ:
        if (n_self == n_other)
            ok = all_contained_in(self, other);
        if (op == Py_NE && ok >= 0)
            ok = !ok;
        break;
    case Py_LT:
        if (n_self < n_other)
            ok = all_contained_in(self, other);
        break;
    case Py_LE:
        if (n_self <= n_other)
            ok = all_contained_in(self, other);
        break;
    case Py_GT:
        if (n_self > n_other)
            ok = all_contained_in(other, self);
        break;
    case Py_GE:
        if (n_self >= n_other)
            ok = all_contained_in(other, self);
        break;
    default:
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (ok < 0)
        return NULL;
    return PyBool_FromLong(ok);
}

/* set(a).<method>(b), as dict views do for their operators. */
static PyObject *view_setop(PyObject *a, PyObject *b, const char *method) {
    PyObject *result = PySet_New(a), *r;
    if (result == NULL)
        return NULL;
    r = PyObject_CallMethod(result, method, "O", b);
    if (r == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    Py_DECREF(r);
    return result;
}

static PyObject *view_and(PyObject *a, PyObject *b) {
    return view_setop(a, b, "intersection_update");
}
static PyObject *view_or(PyObject *a, PyObject *b) {
    return view_setop(a, b, "update");
}
static PyObject *view_sub(PyObject *a, PyObject *b) {
    return view_setop(a, b, "difference_update");
}
static PyObject *view_xor(PyObject *a, PyObject *b) {
    return view_setop(a, b, "symmetric_difference_update");
}

static PyObject *view_isdisjoint(PyObject *self, PyObject *other) {
    PyObject *it = PyObject_GetIter(other), *x;
    int found = 0;
    if (it == NULL)
        return NULL;
    while (found == 0 && (x = PyIter_Next(it)) != NULL) {
        found = PySequence_Contains(self, x);
        Py_DECREF(x);
    }
    Py_DECREF(it);
    if (found < 0 || (found == 0 && PyErr_Occurred()))
        return NULL;
    return PyBool_FromLong(!found);
}

static PyObject *view_repr(PyObject *self) {
    PyObject *list, *r;
    const char *name = strrchr(Py_TYPE(self)->tp_name, '.');
    name = name ? name + 1 : Py_TYPE(self)->tp_name;
    if (Py_ReprEnter(self) != 0)
        return PyUnicode_FromFormat("%s(...)", name);
    list = PySequence_List(self);
    r = list ? PyUnicode_FromFormat("%s(%R)", name, list) : NULL;
    Py_XDECREF(list);
    Py_ReprLeave(self);
    return r;
}

static PyMethodDef setview_methods[] = {
    {"__reversed__", (PyCFunction)view_reversed, METH_NOARGS,
     "Return a reverse iterator (descending key order)."},
    {"isdisjoint", (PyCFunction)view_isdisjoint, METH_O,
     "Return True if the view and the given iterable have no element in common."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef valuesview_methods[] = {
    {"__reversed__", (PyCFunction)view_reversed, METH_NOARGS,
     "Return a reverse iterator (descending key order)."},
    {NULL, NULL, 0, NULL},
};

#define VIEW_COMMON_SLOTS                                                      \
    {Py_tp_dealloc, (void *)view_dealloc}, {Py_tp_traverse, (void *)view_traverse}, \
        {Py_tp_clear, (void *)view_clear}, {Py_sq_length, (void *)view_len},       \
        {Py_sq_contains, (void *)view_contains}, {Py_tp_iter, (void *)view_iter},  \
        {Py_tp_repr, (void *)view_repr}

static PyType_Slot setview_slots[] = {
    VIEW_COMMON_SLOTS,
    {Py_tp_methods, setview_methods},
    {Py_tp_richcompare, (void *)view_richcompare},
    {Py_tp_hash, (void *)PyObject_HashNotImplemented},
    {Py_nb_and, (void *)view_and},
    {Py_nb_or, (void *)view_or},
    {Py_nb_subtract, (void *)view_sub},
    {Py_nb_xor, (void *)view_xor},
    {0, NULL},
};

static PyType_Slot valuesview_slots[] = {
    VIEW_COMMON_SLOTS,
    {Py_tp_methods, valuesview_methods},
    {0, NULL},
};

#define VIEW_FLAGS                                                                   \
    (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |           \
     Py_TPFLAGS_DISALLOW_INSTANTIATION)

static PyType_Spec keys_spec = {
    .name = "sharedmap._sharedmap.sharedmap_keys",
    .basicsize = sizeof(ViewObject),
    .flags = VIEW_FLAGS,
    .slots = setview_slots,
};
static PyType_Spec items_spec = {
    .name = "sharedmap._sharedmap.sharedmap_items",
    .basicsize = sizeof(ViewObject),
    .flags = VIEW_FLAGS,
    .slots = setview_slots,
};
static PyType_Spec values_spec = {
    .name = "sharedmap._sharedmap.sharedmap_values",
    .basicsize = sizeof(ViewObject),
    .flags = VIEW_FLAGS,
    .slots = valuesview_slots,
};

static PyObject *make_view(PyObject *self, PyObject *owner, int is_builder, int mode) {
    module_state *st = state_of(self);
    PyTypeObject *tp;
    if (st == NULL)
        return NULL;
    tp = mode == ITER_KEYS ? st->keys_type : mode == ITER_VALUES ? st->values_type : st->items_type;
    return view_new(tp, owner, is_builder, mode);
}

/* ============================================================ sharedmap (reader) */

typedef struct {
    PyObject_HEAD
    SnapshotObject *snap; /* NULL once closed */
    PyObject *name;       /* str: attached by name; else NULL */
    PyObject *fsname;     /* bytes: that name as a file name (name_to_bytes) */
    PyObject *path;       /* str or bytes, as given: opened from a file; else NULL */
    PyObject *fspath;     /* bytes: the absolute path, for refresh() and pickling */
    PyObject *weakreflist;
    /* refresh() found no map under the name or path: it looks again (an open(),
     * some microseconds) once absent_until has passed or this process has published
     * or removed something since, not on every call. */
    int absent;
    uint64_t absent_until; /* CLOCK_MONOTONIC, ns */
    uint64_t absent_publishes;
} ReaderObject;

/* The snapshot the reader shows now, as a new reference (NULL and ValueError once
 * closed).  Every method that can run Python code while it uses the snapshot (an
 * __index__, a repr, an allocation that starts a collection whose finalizers may
 * close() or refresh() this reader) holds it this way.  Only get, [], in and len
 * borrow self->snap: between reading it and the last use of what it points to
 * they run no Python code and allocate nothing the collector counts. */
static inline SnapshotObject *reader_hold(ReaderObject *self) {
    if (self->snap == NULL) {
        closed_error();
        return NULL;
    }
    return (SnapshotObject *)Py_NewRef(self->snap);
}

/* The name or path, for error messages. */
static PyObject *reader_context(ReaderObject *self) {
    return self->name ? self->name : self->path;
}

static ReaderObject *reader_alloc(PyTypeObject *type, module_state *st, sm_reader *r,
                                  Py_buffer *source) {
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
        set_error(rc, name_obj);
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
    v = make_view((PyObject *)self, (PyObject *)s, 0, mode);
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
    r = owner_equal(st, (PyObject *)s, 0, other);
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

/* ---- ordered queries (sortedcontainers.SortedDict conventions) */

/* The rank sm_seek_key gives for @p key; an empty map (no key kind yet) is
 * rank 0 for any str or bytes key. */
static int snap_seek(SnapshotObject *s, PyObject *key, sm_bound bound, uint64_t *rank) {
    key_ref k;
    sm_cursor c;
    int rc;
    switch (key_fit_map(key, s->kind, 1, &k)) {
    case KEY_ERROR:
        return -1;
    case KEY_CANNOT_BE_IN:
        *rank = 0;
        return 0;
    case KEY_USABLE:
        break;
    }
    rc = sm_seek_key(s->r, k.data, (size_t)k.size, bound, &c);
    if (rc != 0) {
        set_error(rc, NULL);
        return -1;
    }
    *rank = c.rank;
    return 0;
}

PyDoc_STRVAR(reader_irange_doc,
             "irange($self, /, minimum=None, maximum=None, inclusive=(True, True), "
             "reverse=False)\n--\n\n"
             "Iterate over the keys between minimum and maximum, in key order (descending if "
             "reverse).  None means unbounded; inclusive says whether each bound is included.  "
             "O(log n) to start, O(1) per key.");

static PyObject *reader_irange(ReaderObject *self, PyObject *args, PyObject *kwds) {
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

PyDoc_STRVAR(reader_bisect_left_doc,
             "bisect_left($self, key, /)\n--\n\n"
             "The index where key would be inserted in the sorted keys, before any equal key.");
static PyObject *reader_bisect_left(ReaderObject *self, PyObject *key) {
    return reader_bisect(self, key, SM_GE);
}

PyDoc_STRVAR(reader_bisect_right_doc,
             "bisect_right($self, key, /)\n--\n\n"
             "The index where key would be inserted in the sorted keys, after any equal key.");
static PyObject *reader_bisect_right(ReaderObject *self, PyObject *key) {
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

PyDoc_STRVAR(reader_index_doc,
             "index($self, key, start=None, stop=None, /)\n--\n\n"
             "The position of key in the sorted keys.  ValueError if key is not in the map (or "
             "not between start and stop).");

static PyObject *reader_index(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
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
        return set_error(rc, NULL);
    start = clamp_index(start, has_start, n, 0);
    stop = clamp_index(stop, has_stop, n, n);
    if (rc == SM_NOTFOUND || (Py_ssize_t)rank < start || (Py_ssize_t)rank >= stop) {
        PyErr_Format(PyExc_ValueError, "%R is not in map", args[0]);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)rank);
}

PyDoc_STRVAR(reader_peekitem_doc,
             "peekitem($self, index=-1, /)\n--\n\n"
             "The (key, value) pair at index in key order (negative counts from the end).  "
             "IndexError if out of range.");

static PyObject *reader_peekitem(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs) {
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
    item = rc == 0 ? make_item(s->kind, &e) : set_error(rc == SM_NOTFOUND ? SM_ECORRUPT : rc, NULL);
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
    switch (key_fit_map(p, s->kind, 1, &k)) {
    case KEY_ERROR:
        goto done;
    case KEY_CANNOT_BE_IN:
        break;
    case KEY_USABLE:
        rc = sm_prefix_range(s->r, k.data, (size_t)k.size, &begin, &end);
        break;
    }
    it = rc != 0 ? set_error(rc, NULL) : snapiter_new(st, s, begin, end, mode, 0);
done:
    Py_DECREF(s);
    return it;
}

PyDoc_STRVAR(reader_prefix_doc, "prefix($self, prefix, /)\n--\n\n"
                                "Iterate over the keys that start with prefix, in key order.");
static PyObject *reader_prefix(ReaderObject *self, PyObject *p) {
    return reader_prefix_mode(self, p, ITER_KEYS);
}

PyDoc_STRVAR(reader_prefix_items_doc,
             "prefix_items($self, prefix, /)\n--\n\n"
             "Iterate over the (key, value) pairs whose key starts with prefix, in key order.");
static PyObject *reader_prefix_items(ReaderObject *self, PyObject *p) {
    return reader_prefix_mode(self, p, ITER_ITEMS);
}

/* ---- zero copy */

PyDoc_STRVAR(reader_getbuffer_doc,
             "getbuffer($self, key, /)\n--\n\n"
             "A read-only memoryview of the bytes value of key (of a str value: its UTF-8), "
             "straight in the snapshot, without copying.  It keeps the snapshot mapped while it "
             "exists, even after close().  KeyError if missing; TypeError for other value types.");

static PyObject *reader_getbuffer(ReaderObject *self, PyObject *key) {
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
        return set_error(rc, reader_context(self));
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
             "superseded (whether a newer version was published since), name (or None), and path: "
             "the file the map lives in (for a map attached by name, its file in /dev/shm; None for "
             "a map made by loads()).");

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
    else if (self->name != NULL)
        path = PyUnicode_FromFormat("%s/%s%U", SM_DEFAULT_DIR, SM_NAME_PREFIX, self->name);
    else
        path = Py_NewRef(Py_None);
    if (path == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    res = Py_BuildValue(
        "{sKsKsIsdsssKsOsOsN}", "entries", (unsigned long long)info.count, "size",
        (unsigned long long)info.size, "format_version", info.format_version, "created",
        (double)info.created_ns / 1e9, "key_kind",
        info.key_kind == SM_KEYS_STR ? "str" : info.key_kind == SM_KEYS_BYTES ? "bytes" : NULL,
        "checksum", (unsigned long long)info.checksum, "superseded",
        sm_reader_superseded(s->r) ? Py_True : Py_False, "name", self->name ? self->name : Py_None,
        "path", path);
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
        PyObject *ctx = reader_context(self);
        return set_error(rc, ctx);
    }
    Py_RETURN_TRUE;
}

static PyMethodDef reader_methods[] = {
    {"get", METH_CAST(reader_get), METH_FASTCALL, reader_get_doc},
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

static PyType_Spec reader_spec = {
    .name = "sharedmap.sharedmap",
    .basicsize = sizeof(ReaderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_MAPPING |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = reader_slots,
};

/* ============================================================ rbtree methods */

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
        return set_error(rc, NULL);
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

/* Copy every entry of a snapshot in: into an empty builder with
 * sm_builder_from_reader (one linear pass), else entry by entry; either way in C,
 * without the GIL. */
static int builder_merge_snapshot(BuilderObject *self, SnapshotObject *s) {
    sm_key_kind have = sm_builder_key_kind(self->b);
    int rc = 0;
    if (s->count == 0)
        return 0;
    if (have != SM_KEYS_NONE && have != s->kind) {
        set_kind_error(have, s->kind);
        return -1;
    }
    Py_INCREF(s);
    self->busy++;
    if (sm_builder_count(self->b) == 0) {
        sm_builder *nb = NULL;
        Py_BEGIN_ALLOW_THREADS
        rc = sm_builder_from_reader(&nb, s->r);
        Py_END_ALLOW_THREADS
        if (rc == 0) {
            sm_builder_free(self->b);
            self->b = nb;
            self->epoch++;
        }
    } else {
        Py_BEGIN_ALLOW_THREADS
        sm_cursor c;
        sm_entry e;
        uint64_t i;
        rc = sm_seek_rank(s->r, 0, &c);
        for (i = 0; rc == 0 && i < s->count; i++) {
            if (i > 0 && (rc = sm_cursor_next(&c)) != 0)
                break;
            if ((rc = sm_cursor_get(&c, &e)) != 0)
                break;
            rc = sm_builder_put(self->b, s->kind, e.key.data, e.key.size, &e.value);
        }
        Py_END_ALLOW_THREADS
    }
    self->busy--;
    Py_DECREF(s);
    if (rc != 0) {
        set_error(rc == SM_NOTFOUND ? SM_ECORRUPT : rc, NULL);
        return -1;
    }
    return 0;
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
        set_error(rc, NULL);
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
            Py_ssize_t pos = 0;
            PyObject *k, *v;
            while (PyDict_Next(arg, &pos, &k, &v))
                if (builder_put(self, k, v) < 0)
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

static Py_ssize_t builder_len(BuilderObject *self) {
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

static PyObject *builder_keys(BuilderObject *self, PyObject *unused) {
    (void)unused;
    return make_view((PyObject *)self, (PyObject *)self, 1, ITER_KEYS);
}
static PyObject *builder_values(BuilderObject *self, PyObject *unused) {
    (void)unused;
    return make_view((PyObject *)self, (PyObject *)self, 1, ITER_VALUES);
}
static PyObject *builder_items(BuilderObject *self, PyObject *unused) {
    (void)unused;
    return make_view((PyObject *)self, (PyObject *)self, 1, ITER_ITEMS);
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
        return set_error(rc, NULL);
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
    PyObject *item;
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
        return set_error(rc, NULL);
    item = make_item(sm_builder_key_kind(self->b), &e);
    if (item == NULL)
        return NULL;
    /* Delete through our own copy of the key, not through e.key, which points at
     * the very entry being freed. */
    if (key_parse(PyTuple_GET_ITEM(item, 0), &k) < 0 ||
        (rc = sm_builder_del(self->b, k.data, (size_t)k.size)) != 0) {
        Py_DECREF(item);
        return PyErr_Occurred() ? NULL : set_error(rc, NULL);
    }
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
    r = owner_equal(st, (PyObject *)self, 1, other);
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

/* Permission bits of a new map or file: some of rwxrwxrwx.  0 (nobody may read
 * it) and setuid, setgid or sticky bits are refused rather than quietly changed. */
static int check_mode(int mode) {
    if (mode <= 0 || mode > 0777) {
        PyErr_Format(PyExc_ValueError,
                     "mode must be permission bits between 0o1 and 0o777 (such as 0o600 or "
                     "0o640), not %#o",
                     (unsigned)mode);
        return -1;
    }
    return 0;
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
        return set_error(rc, name_obj);
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
        return set_error(rc, path_obj);
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
        return set_error(rc, NULL);
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
        return set_error(rc, name_obj);
    Py_RETURN_TRUE;
}

static PyMethodDef builder_methods[] = {
    {"set", METH_CAST(builder_set), METH_FASTCALL, builder_set_doc},
    {"get", METH_CAST(builder_get), METH_FASTCALL, builder_get_doc},
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

static PyType_Spec builder_spec = {
    .name = "sharedmap.rbtree",
    .basicsize = sizeof(BuilderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_MAPPING |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = builder_slots,
};

/* ============================================================ module functions */

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
             "Open a snapshot file (written by rbtree.save()) read-only by mmap, as a sharedmap.  "
             "path may be str, bytes or os.PathLike.");

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
        set_error(rc, path);
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
        return set_error(rc, NULL);
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
    const char *kind = info->key_kind == SM_KEYS_STR     ? "str"
                       : info->key_kind == SM_KEYS_BYTES ? "bytes"
                                                         : NULL;
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

static PyObject *mod_list(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *fs, *list;
    int rc;
    (void)module;
    if (nargs > 1)
        return nargs_error("_list", nargs, 0, 1);
    if (dir_arg(nargs ? args[0] : NULL, &fs) < 0)
        return NULL;
    list = PyList_New(0);
    if (list == NULL) {
        Py_XDECREF(fs);
        return NULL;
    }
    rc = sm_list(fs ? PyBytes_AS_STRING(fs) : NULL, list_cb, list);
    if (rc != 0) {
        if (!PyErr_Occurred())
            set_error(rc, nargs && args[0] != Py_None ? args[0] : NULL);
        Py_DECREF(list);
        list = NULL;
    }
    Py_XDECREF(fs);
    return list;
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
        return set_error(rc, NULL);
    return PyLong_FromUnsignedLong(removed);
}

static PyMethodDef module_methods[] = {
    {"open", (PyCFunction)mod_open, METH_O, mod_open_doc},
    {"loads", (PyCFunction)mod_loads, METH_O, mod_loads_doc},
    {"_list", METH_CAST(mod_list), METH_FASTCALL, mod_list_doc},
    {"gc", METH_CAST(mod_gc), METH_FASTCALL, mod_gc_doc},
    {NULL, NULL, 0, NULL},
};

/* ============================================================ module */

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
#undef MAKE_TYPE

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
        PyModule_AddIntConstant(module, "NAME_MAX", SM_NAME_MAX) < 0)
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
    Py_VISIT(st->mapping_abc);
    Py_VISIT(st->open_func);
    Py_VISIT(st->loads_func);
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
    Py_CLEAR(st->mapping_abc);
    Py_CLEAR(st->open_func);
    Py_CLEAR(st->loads_func);
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

static struct PyModuleDef sharedmap_module = {
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
