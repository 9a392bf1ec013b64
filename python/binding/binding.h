/* binding.h: what the files of the CPython binding (the extension module
 * sharedmap._sharedmap) share.  The map itself (format, lookup, ordering,
 * publishing) lives in src/ behind include/sharedmap.h; the binding converts
 * between Python objects and that C API and defines the Python types, and nothing
 * in it second-guesses the core.
 *
 * Files, one job each
 * -------------------
 *
 *     binding.h   this: module state, the object structs, what crosses files
 *     convert.h   key and value conversions, inline (they are on every lookup)
 *     module.c    module init and state, open(), loads(), _list(), gc()
 *     errors.c    library error codes -> Python exceptions
 *     convert.c   the conversions that are not on a hot path (values in, names)
 *     snapshot.c  _Snapshot: one opened snapshot, its mapping and buffer export
 *     reader.c    sharedmap: lookups, iteration, views, refresh, info, verify
 *     ordered.c   sharedmap's ordered queries and zero-copy getbuffer()
 *     builder.c   rbtree, the builder: edits, update, share, save, dump
 *     many.c      get_many() and get_array() of both: batches of keys, NumPy in and out
 *     iter.c      both iterators, and the objects they recycle
 *     views.c     keys(), values(), items() of both, through an operations table
 *     bitmap.c    sharedbitmap, the shared bitset, and its iterator
 *     writer.c    Writer, the streaming writer: a snapshot from a stream of pairs
 *     sets.c      map sets: their manifests, packed publishing, shards, open errors
 *     edit.c      _Edit, an edit published as a delta layer (sharedmap.Editor), its iterator
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
 * Python code can run in the middle of a method: an argument's __index__,
 * __fspath__ or __bool__, a repr, or a garbage collection started by an
 * allocation (up to Python 3.11), whose finalizers and gc.callbacks may do
 * anything, close() and refresh() included.  So: every argument is converted
 * before a method takes what it works on, and what it holds across such code it
 * holds by a strong reference (reader_hold), never a borrowed pointer.
 *
 * Threads: lookups never release the GIL (they are far shorter than a GIL
 * round trip), except get_many() and get_array() of 10,000 keys or more, which
 * release it around the lookups once the keys are converted (many.c).  Long builder work (layout, write, publish, save, bulk copies)
 * runs with the GIL released; meanwhile the rbtree's busy counter is non-zero and
 * every other use of that rbtree raises RuntimeError, because a builder is not
 * thread-safe (sharedmap.h).  Nothing that can run Python code may come between
 * the busy check and busy++.  verify() releases the GIL too, holding its own
 * reference to the _Snapshot so that a close() in another thread cannot unmap it.
 *
 * Keys are str, bytes or int (signed 64-bit), one kind per map.  Lookups with the other kind, or with
 * any other type, raise TypeError ("strict" lookups: get, [], in, ordered
 * queries); the set-like views and == answer "not there" instead ("soft"
 * lookups), as a set would.
 */
#ifndef SMPY_BINDING_H
#define SMPY_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

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

/* ------------------------------------------------------------ module state (module.c) */

/* The exception classes (errors.c): X(class, parent, built-in bases or NULL, doc).
 * SM_ERROR_MAP's third column names one of them (or KeyError) for each code. */
#define SMPY_EXCEPTIONS(X)                                                                         \
    X(Error, -1, NULL, NULL,                                                                       \
      "Base of the errors of sharedmap: .code is the library's error code, .name the map name "    \
      "and .path the file involved (None where there is none).")                                   \
    X(CorruptSnapshotError, SMPY_EXC_Error, &PyExc_ValueError, NULL,                               \
      "The bytes are not a valid snapshot: truncated, damaged, checksum mismatch.")                \
    X(NotASnapshotError, SMPY_EXC_CorruptSnapshotError, NULL, NULL,                                \
      "The bytes or file are not a sharedmap snapshot at all (bad magic, not a regular file).")    \
    X(UnsupportedVersionError, SMPY_EXC_Error, &PyExc_ValueError, NULL,                            \
      "The snapshot has a format version or a required feature this library does not read.")       \
    X(KeyKindError, SMPY_EXC_Error, &PyExc_TypeError, NULL,                                        \
      "A key of the other kind: str and bytes keys cannot be mixed in one map.")                   \
    X(InvalidNameError, SMPY_EXC_Error, &PyExc_ValueError, NULL,                                   \
      "A map name that is empty, too long, or holds '/', NUL or a control character.")             \
    X(TooLargeError, SMPY_EXC_Error, &PyExc_OverflowError, NULL,                                   \
      "A key, value or snapshot too large for the format.")                                        \
    X(SymlinkError, SMPY_EXC_Error, &PyExc_OSError, NULL,                                          \
      "A symbolic link where a map or snapshot file should be: sharedmap never follows one "       \
      "(errno ELOOP).")                                                                            \
    X(BitIndexError, SMPY_EXC_Error, &PyExc_IndexError, &PyExc_KeyError,                           \
      "A sharedbitmap bit index that is negative, or past the end where a bit is set (also a "     \
      "KeyError, as the original package raised).")                                          \
    X(OrderError, SMPY_EXC_Error, &PyExc_ValueError, NULL,                                         \
      "A key below the one before it, given to a Writer that was promised sorted keys "           \
      "(sorted=True).")                                                                           \
    X(ConflictError, SMPY_EXC_Error, NULL, NULL,                                                   \
      "An edit whose map was replaced meanwhile by a publisher that does not edit (share(), "     \
      "save(), publish()): nothing of the edit was published; begin it again.")

enum {
#define SMPY_XX_ENUM(cls, parent, extra, extra2, doc) SMPY_EXC_##cls,
    SMPY_EXCEPTIONS(SMPY_XX_ENUM)
#undef SMPY_XX_ENUM
    SMPY_EXC_COUNT,
    SMPY_EXC_KEYERROR, /* Python's own KeyError (SM_NOTFOUND) */
    SMPY_EXC_KeyError = SMPY_EXC_KEYERROR
};

typedef struct {
    PyTypeObject *snapshot_type;
    PyTypeObject *reader_type;
    PyTypeObject *builder_type;
    PyTypeObject *snapiter_type;
    PyTypeObject *builditer_type;
    PyTypeObject *keys_type;
    PyTypeObject *values_type;
    PyTypeObject *items_type;
    PyTypeObject *bitmap_type;
    PyTypeObject *bititer_type;
    PyTypeObject *writer_type;
    PyTypeObject *edit_type;
    PyTypeObject *edititer_type;
    PyObject *mapping_abc; /* collections.abc.Mapping, for == */
    PyObject *open_func;   /* this module's open() and loads(), for __reduce__ */
    PyObject *loads_func;
    PyObject *exceptions[SMPY_EXC_COUNT];
} module_state;

extern struct PyModuleDef sharedmap_module;

static inline module_state *module_get_state(PyObject *module) {
    return (module_state *)PyModule_GetState(module);
}

/* The module that defined @p tp or one of its bases (for subclasses). */
PyObject *module_of_type(PyTypeObject *tp);
/* The state of the module that defined @p self's type (NULL, exception set). */
module_state *state_of(PyObject *self);

/* share(), save() and remove() calls made in this process: a reader that found its
 * map absent looks again at once when this changed (refresh()).  Process-wide, not
 * module state: remove() is a static method, and any publish may concern any reader. */
extern uint64_t local_publishes;

static inline void note_publish(void) {
    __atomic_fetch_add(&local_publishes, 1, __ATOMIC_RELAXED);
}

static inline uint64_t publishes_seen(void) {
    return __atomic_load_n(&local_publishes, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ errors (errors.c) */

/* Errors are the unlikely way out of every hot path: cold, so that the compiler
 * lays the paths out for the case without them. */
#define SMPY_COLD __attribute__((cold))

/* Raise the exception of a library code (0 > code: -errno or SM_E*) for the map
 * @p name or the file @p path (either or both may be NULL; the one given is named
 * in the message, or is the OSError's filename).  Returns NULL. */
SMPY_COLD PyObject *raise_code(int code, PyObject *name, PyObject *path);
/* Raise the class of index cls (SMPY_EXC_*) with @p message, .code, .name and .path. */
SMPY_COLD void raise_class(int cls, PyObject *message, int code, PyObject *name, PyObject *path);
/* raise_class with a message made by PyUnicode_FromFormat(fmt, ...), and no name or path. */
SMPY_COLD void raise_class_format(int cls, int code, const char *fmt, ...);
/* raise_code(code, NULL, NULL). */
SMPY_COLD PyObject *set_error(int code);
/* The class of index cls (SMPY_EXC_*) of this interpreter's module, a new reference
 * (the built-in base when the module cannot be found). */
PyObject *exception_class(int cls);
/* Make the exception classes, into the module and its state (module init). */
int errors_setup(PyObject *module, module_state *st);
/* TypeError: a key of kind @p key for a map with keys of kind @p map. */
SMPY_COLD void set_kind_error(sm_key_kind map, sm_key_kind key);
/* ValueError: the reader was closed.  Returns NULL. */
SMPY_COLD PyObject *closed_error(void);
/* TypeError for a wrong argument count of a METH_FASTCALL function.  Returns NULL. */
SMPY_COLD PyObject *nargs_error(const char *fname, Py_ssize_t nargs, Py_ssize_t lo,
                               Py_ssize_t hi);
const char *kind_name(sm_key_kind kind);

/* ------------------------------------------------------------ shared enums */

/* What an iterator or view hands out. */
enum { ITER_KEYS = 0, ITER_VALUES = 1, ITER_ITEMS = 2 };

/* The three outcomes of a lookup. */
typedef enum { LOOKUP_ERROR = -1, LOOKUP_MISSING = 0, LOOKUP_FOUND = 1 } lookup_result;

/* ------------------------------------------------------------ the objects */

/* _Snapshot (snapshot.c): owns one opened sm_reader. */
typedef struct {
    PyObject_HEAD
    sm_reader *r;
    sm_key_kind kind;
    uint64_t count;
    Py_buffer source; /* loads(): the caller's buffer, held as long as the reader */
    int has_source;
    Py_ssize_t exports;
    /* set by snapshot_subview for the one export it asks for: a value outside the file
     * sm_reader_data() is (in a layer's base, a set's shard), else NULL */
    const void *sub;
    Py_ssize_t sub_size;
} SnapshotObject;

/* sharedmap (reader.c): shows one _Snapshot at a time. */
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

/* rbtree (builder.c): the original package's name for what is, in C, a builder
 * (an sm_builder: a sorted array once laid out, not a tree). */
typedef struct {
    PyObject_HEAD
    sm_builder *b;
    Py_ssize_t busy;    /* > 0 while another thread works on b without the GIL */
    uint64_t epoch;     /* bumped when b is cleared (iterators check it) */
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

/* ------------------------------------------------------------ across files */

extern PyType_Spec snapshot_spec, reader_spec, builder_spec, snapiter_spec, builditer_spec,
    keys_spec, values_spec, items_spec, bitmap_spec, bititer_spec, writer_spec,
    edit_spec, edititer_spec;

/* snapshot.c.  snapshot_new takes ownership of @p r and of @p source (may be NULL),
 * also on failure. */
SnapshotObject *snapshot_new(module_state *st, sm_reader *r, Py_buffer *source);
/* A read-only memoryview of [p, p+n) inside the snapshot; it keeps s alive. */
PyObject *snapshot_subview(SnapshotObject *s, const void *p, size_t n);

/* reader.c */
ReaderObject *reader_alloc(PyTypeObject *type, module_state *st, sm_reader *r, Py_buffer *source);
SnapshotObject *reader_hold(ReaderObject *self);

/* ordered.c: methods of the reader type, and their docstrings */
#define SMPY_DOC(name, text) const char name[] = PyDoc_STR(text)
PyObject *reader_irange(ReaderObject *self, PyObject *args, PyObject *kwds);
PyObject *reader_bisect_left(ReaderObject *self, PyObject *key);
PyObject *reader_bisect_right(ReaderObject *self, PyObject *key);
PyObject *reader_index(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *reader_peekitem(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *reader_prefix(ReaderObject *self, PyObject *p);
PyObject *reader_prefix_items(ReaderObject *self, PyObject *p);
PyObject *reader_getbuffer(ReaderObject *self, PyObject *key);
extern const char reader_irange_doc[], reader_bisect_left_doc[], reader_bisect_right_doc[],
    reader_index_doc[], reader_peekitem_doc[], reader_prefix_doc[], reader_prefix_items_doc[],
    reader_getbuffer_doc[];

/* builder.c */
Py_ssize_t builder_len(BuilderObject *self);

/* many.c: get_many() and get_array() of both types, and their docstrings */
PyObject *reader_get_many(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *reader_get_array(ReaderObject *self, PyObject *args, PyObject *kwds);
PyObject *builder_get_many(BuilderObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *builder_get_array(BuilderObject *self, PyObject *args, PyObject *kwds);
extern const char get_many_doc[], get_array_doc[];

/* iter.c: iterators over the ranks [begin, end) of a snapshot, and over a builder. */
PyObject *snapiter_new(module_state *st, SnapshotObject *s, uint64_t begin, uint64_t end, int mode,
                       int reverse);
PyObject *builditer_new(module_state *st, BuilderObject *b, int mode, int reverse);

/* views.c.  What a view needs of what it shows (a _Snapshot or an rbtree). */
typedef struct {
    Py_ssize_t (*len)(PyObject *owner);
    PyObject *(*iter)(module_state *st, PyObject *owner, int mode, int reverse);
    /* strict: TypeError for a key that cannot be in the map; soft: LOOKUP_MISSING */
    lookup_result (*lookup)(PyObject *owner, PyObject *key, int strict, sm_value *out);
} view_ops;

extern const view_ops snapshot_view_ops, builder_view_ops;

PyObject *make_view(PyObject *self, PyObject *owner, const view_ops *ops, int mode);
/* Mapping equality of owner with @p other: 1 equal, 0 not, -1 error, 2 when other
 * is no Mapping (NotImplemented). */
int mapping_equal(module_state *st, const view_ops *ops, PyObject *owner, PyObject *other);

/* sets.c: module functions, and the error of a file or set directory that does not open
 * (a set's names the shard that failed and why; fspath as given to sm_reader_open_file) */
PyObject *raise_open_error(int code, PyObject *path, const char *fspath);
PyObject *mod_write_manifest(PyObject *module, PyObject *args);
PyObject *mod_publish_set(PyObject *module, PyObject *args);
PyObject *mod_shards(PyObject *module, PyObject *reader);
extern const char mod_write_manifest_doc[], mod_publish_set_doc[], mod_shards_doc[];

/* convert.c */
PyObject *name_to_bytes(PyObject *obj);
/* Permission bits of a new map, file or bitmap: some of rwxrwxrwx.  0 (nobody may read it)
 * and setuid, setgid or sticky bits are a ValueError rather than quietly changed. */
int check_mode(int mode);
PyObject *make_item(sm_key_kind kind, const sm_entry *e);
/* memory_limit= of Writer and _Edit: None leaves *out as it is; else at least
 * SM_WRITER_MEMORY_MIN bytes (ValueError), into *out.  0 or -1 with an exception. */
int memory_limit_from_py(PyObject *limit, size_t *out);
void format_size(char *buf, size_t n, uint64_t size);

#endif /* SMPY_BINDING_H */
