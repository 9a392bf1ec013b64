/* convert.c: the conversions that are not on a lookup's path: values into the
 * builder, map names into file names, one-off items, sizes for repr(). */
#include "convert.h"

#include <stdio.h>

key_ref key_parse_other(PyObject *key) {
    key_ref k = {NULL, 0, SM_KEYS_NONE, 0, {0}};
    if (PyUnicode_Check(key)) {
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(key, &n);
        if (p != NULL) {
            k.data = p;
            k.size = n;
            k.kind = SM_KEYS_STR;
        }
    } else if (PyBytes_Check(key)) {
        k.data = PyBytes_AS_STRING(key);
        k.size = PyBytes_GET_SIZE(key);
        k.kind = SM_KEYS_BYTES;
    } else if (PyLong_Check(key)) { /* bool and other int subclasses: their value */
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
        if (v != -1 || overflow || !PyErr_Occurred())
            key_int(v, overflow, &k);
    } else {
        PyErr_Format(PyExc_TypeError, "keys must be str, bytes or int, not %.200s",
                     Py_TYPE(key)->tp_name);
    }
    return k;
}

int value_from_py(PyObject *o, py_value *out) {
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

void value_release(py_value *v) {
    if (v->has_view) {
        PyBuffer_Release(&v->view);
        v->has_view = 0;
    }
}

/* A new (key, value) tuple (lookups that return one item). */
PyObject *make_item(sm_key_kind kind, const sm_entry *e) {
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


/* A map name (a str) as the bytes of its file name, a new reference: encoded the
 * way os encodes file names (the filesystem encoding with surrogateescape), so that
 * a name that is not UTF-8, as list_maps() gives it, opens and removes like any
 * other.  No NUL (sm_name_check does the rest).  Runs no Python code. */
PyObject *name_to_bytes(PyObject *obj) {
    PyObject *b;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "map name must be str, not %.200s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    b = PyUnicode_EncodeFSDefault(obj);
    if (b != NULL && strlen(PyBytes_AS_STRING(b)) != (size_t)PyBytes_GET_SIZE(b)) {
        Py_DECREF(b);
        return raise_code(SM_ENAME, obj, NULL);
    }
    return b;
}

void format_size(char *buf, size_t n, uint64_t size) {
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

int check_mode(int mode) {
    char text[32];
    if (mode > 0 && mode <= 0777)
        return 0;
    /* as Python writes it (PyUnicode_FromFormat has no %o) */
    snprintf(text, sizeof text, "%s0o%o", mode < 0 ? "-" : "",
             mode < 0 ? 0u - (unsigned)mode : (unsigned)mode);
    PyErr_Format(PyExc_ValueError,
                 "mode must be permission bits between 0o1 and 0o777 (such as 0o600 or 0o640), "
                 "not %s",
                 text);
    return -1;
}

int memory_limit_from_py(PyObject *limit, size_t *out) {
    if (limit == Py_None)
        return 0;
    Py_ssize_t n = PyNumber_AsSsize_t(limit, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < (Py_ssize_t)SM_WRITER_MEMORY_MIN) {
        PyErr_Format(PyExc_ValueError, "memory_limit must be at least %zu bytes", (size_t)SM_WRITER_MEMORY_MIN);
        return -1;
    }
    *out = (size_t)n;
    return 0;
}

