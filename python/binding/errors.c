/* errors.c: library error codes -> Python exceptions, and the binding's own
 * argument errors.
 *
 * The one list of codes is SM_ERROR_MAP in sharedmap.h; its third column names the
 * class each code raises.  The classes, made at module init and exposed by the
 * sharedmap package:
 *
 *     Error(Exception)                            .code .name .path
 *      +- CorruptSnapshotError(Error, ValueError)      bad bytes
 *      |   +- NotASnapshotError                        not a snapshot at all
 *      +- UnsupportedVersionError(Error, ValueError)   a newer format
 *      +- KeyKindError(Error, TypeError)               str and bytes keys mixed
 *      +- InvalidNameError(Error, ValueError)          a map name sm_name_check refuses
 *      +- TooLargeError(Error, OverflowError)          past the format's limits
 *      +- SymlinkError(Error, OSError)                 errno ELOOP, .filename
 *      +- BitIndexError(Error, IndexError, KeyError)   a sharedbitmap index out of range
 *
 * Each also derives from the built-in exception these codes raised before the
 * classes existed, so `except ValueError` keeps working.  -errno codes raise OSError
 * itself, which Python turns into its subclass (FileNotFoundError, ...), with the
 * errno and the name or path as filename; -ENOMEM is MemoryError; SM_NOTFOUND is
 * KeyError. */
#include "binding.h"

#include <stdarg.h>

#include <stdio.h>

/* ------------------------------------------------------------ the classes */

typedef struct {
    const char *name;  /* of the class, in the sharedmap package */
    int parent;        /* index of the parent in this table, or -1 */
    PyObject **extra;  /* built-in bases beside the parent, or NULL */
    PyObject **extra2;
    const char *doc;
} exc_spec;

static int make_classes(PyObject *module, module_state *st) {
    const exc_spec specs[SMPY_EXC_COUNT] = {
#define SMPY_XX_SPEC(cls, parent, extra, extra2, doc) {#cls, parent, extra, extra2, doc},
        SMPY_EXCEPTIONS(SMPY_XX_SPEC)
#undef SMPY_XX_SPEC
    };
    for (int i = 0; i < SMPY_EXC_COUNT; i++) {
        const exc_spec *e = &specs[i];
        char qualname[96];
        PyObject *bases, *dict = NULL, *cls;
        PyObject *first = e->parent >= 0 ? st->exceptions[e->parent] : PyExc_Exception;
        bases = e->extra2  ? PyTuple_Pack(3, first, *e->extra, *e->extra2)
                : e->extra ? PyTuple_Pack(2, first, *e->extra)
                           : PyTuple_Pack(1, first);
        if (bases == NULL)
            return -1;
        if (e->parent < 0 || e->extra2 == &PyExc_KeyError) {
            /* the base class: the attributes every instance has, None until set; and
             * for a class that is also a KeyError, str() of the message as it is, not
             * KeyError's repr() of it */
            dict = e->parent < 0 ? Py_BuildValue("{sOsOsO}", "code", Py_None, "name", Py_None,
                                                 "path", Py_None)
                                 : PyDict_New();
            if (dict != NULL && e->parent >= 0) {
                PyObject *str = PyObject_GetAttrString(PyExc_BaseException, "__str__");
                if (str == NULL || PyDict_SetItemString(dict, "__str__", str) < 0)
                    Py_CLEAR(dict);
                Py_XDECREF(str);
            }
            if (dict == NULL) {
                Py_DECREF(bases);
                return -1;
            }
        }
        snprintf(qualname, sizeof qualname, "sharedmap.%s", e->name);
        cls = PyErr_NewExceptionWithDoc(qualname, e->doc, bases, dict);
        Py_DECREF(bases);
        Py_XDECREF(dict);
        if (cls == NULL)
            return -1;
        st->exceptions[i] = cls;
        Py_INCREF(cls);
        if (PyModule_AddObject(module, e->name, cls) < 0) {
            Py_DECREF(cls);
            return -1;
        }
    }
    return 0;
}

int errors_setup(PyObject *module, module_state *st) {
    return make_classes(module, st);
}

/* ------------------------------------------------------------ raising */

/* The class of an SM_E* code: an index into module_state.exceptions, SMPY_EXC_KEYERROR,
 * or -1 for a code not in the list. */
static int class_of(int code) {
    switch (code) {
#define SMPY_XX_CLASS(name, value, pyclass, msg) \
    case name:                                   \
        return SMPY_EXC_##pyclass;
        SM_ERROR_MAP(SMPY_XX_CLASS)
#undef SMPY_XX_CLASS
    default:
        return -1;
    }
}

/* The built-in exception a class derives from, for when the module's classes cannot
 * be found (the module is not in sys.modules, or going away). */
static PyObject *fallback_of(int cls) {
    switch (cls) {
    case SMPY_EXC_KEYERROR:
        return PyExc_KeyError;
    case SMPY_EXC_KeyKindError:
        return PyExc_TypeError;
    case SMPY_EXC_TooLargeError:
        return PyExc_OverflowError;
    case SMPY_EXC_SymlinkError:
        return PyExc_OSError;
    case SMPY_EXC_BitIndexError:
        return PyExc_IndexError;
    default:
        return PyExc_ValueError;
    }
}

/* The exception class for index cls of this interpreter's module (a new reference).
 * Errors are rare: looking the module up in sys.modules here saves every caller
 * from carrying the module state. */
PyObject *exception_class(int cls) {
    PyObject *modname, *mod = NULL, *type = NULL;
    PyObject *pending_type, *pending_value, *pending_tb;
    if (cls >= 0 && cls < SMPY_EXC_COUNT) {
        PyErr_Fetch(&pending_type, &pending_value, &pending_tb); /* normally none */
        modname = PyUnicode_FromString(sharedmap_module.m_name);
        if (modname != NULL)
            mod = PyImport_GetModule(modname);
        Py_XDECREF(modname);
        if (mod != NULL && PyModule_Check(mod) && PyModule_GetDef(mod) == &sharedmap_module) {
            module_state *st = module_get_state(mod);
            if (st != NULL && st->exceptions[cls] != NULL)
                type = Py_NewRef(st->exceptions[cls]);
        }
        Py_XDECREF(mod);
        PyErr_Clear(); /* a failed lookup only means the fallback */
        PyErr_Restore(pending_type, pending_value, pending_tb);
    }
    return type != NULL ? type : Py_NewRef(fallback_of(cls));
}

static int set_attr(PyObject *exc, const char *attr, PyObject *value) {
    return value == NULL ? 0 : PyObject_SetAttrString(exc, attr, value);
}

/* Raise exc (a new instance of type, or NULL if making it failed) with .code, .name
 * and .path set (not on a KeyError); both references are consumed. */
static void raise_instance(PyObject *type, PyObject *exc, int code, PyObject *name,
                           PyObject *path) {
    if (exc != NULL && type != PyExc_KeyError) { /* Python's own KeyError has no such fields */
        PyObject *c = PyLong_FromLong(code);
        if (c == NULL || set_attr(exc, "code", c) < 0 || set_attr(exc, "name", name) < 0 ||
            set_attr(exc, "path", path) < 0)
            Py_CLEAR(exc);
        Py_XDECREF(c);
    }
    if (exc != NULL) {
        PyErr_SetObject(type, exc);
        Py_DECREF(exc);
    }
    Py_DECREF(type);
}

PyObject *raise_code(int code, PyObject *name, PyObject *path) {
    PyObject *context = name != NULL ? name : path, *type, *exc;
    int cls;
    if (code == -ENOMEM)
        return PyErr_NoMemory();
    if (code < 0 && code > -4096) {
        PyObject *args = context ? Py_BuildValue("(isO)", -code, sm_strerror(code), context)
                                 : Py_BuildValue("(is)", -code, sm_strerror(code));
        /* The instance, not (OSError, args): OSError(errno, ...) picks the subclass
         * (FileNotFoundError, ...), and before Python 3.12 an exception set as a type
         * and arguments could still be matched as a plain OSError. */
        exc = args != NULL ? PyObject_Call(PyExc_OSError, args, NULL) : NULL;
        Py_XDECREF(args);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    cls = class_of(code);
    type = exception_class(cls);
    if (cls == SMPY_EXC_SymlinkError) /* an OSError: errno ELOOP, the name or path its filename */
        exc = context ? PyObject_CallFunction(type, "isO", ELOOP, sm_strerror(code), context)
                      : PyObject_CallFunction(type, "is", ELOOP, sm_strerror(code));
    else if (context != NULL)
        exc = PyObject_CallFunction(type, "N", PyUnicode_FromFormat("%s: %R", sm_strerror(code), context));
    else
        exc = PyObject_CallFunction(type, "s", sm_strerror(code));
    raise_instance(type, exc, code, name, path);
    return NULL;
}

void raise_class(int cls, PyObject *message, int code, PyObject *name, PyObject *path) {
    PyObject *type = exception_class(cls);
    raise_instance(type, PyObject_CallOneArg(type, message), code, name, path);
}

void raise_class_format(int cls, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg != NULL) {
        raise_class(cls, msg, code, NULL, NULL);
        Py_DECREF(msg);
    }
}

PyObject *set_error(int code) {
    return raise_code(code, NULL, NULL);
}

/* ------------------------------------------------------------ the binding's own */

const char *kind_name(sm_key_kind kind) {
    switch (kind) {
    case SM_KEYS_STR:
        return "str";
    case SM_KEYS_BYTES:
        return "bytes";
    case SM_KEYS_INT:
        return "int";
    default:
        return "no";
    }
}

void set_kind_error(sm_key_kind map, sm_key_kind key) {
    PyObject *type = exception_class(SMPY_EXC_KeyKindError);
    PyObject *exc = PyObject_CallFunction(type, "N",
                                          PyUnicode_FromFormat("this map has %s keys, got %s",
                                                               kind_name(map), kind_name(key)));
    raise_instance(type, exc, SM_EKEYKIND, NULL, NULL);
}

PyObject *closed_error(void) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed sharedmap");
    return NULL;
}

PyObject *nargs_error(const char *fname, Py_ssize_t nargs, Py_ssize_t lo, Py_ssize_t hi) {
    if (lo == hi)
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd argument%s (%zd given)", fname, lo,
                     lo == 1 ? "" : "s", nargs);
    else
        PyErr_Format(PyExc_TypeError, "%s() takes from %zd to %zd arguments (%zd given)", fname, lo,
                     hi, nargs);
    return NULL;
}
