/* convert.h: keys and values between Python objects and the C API.  Inline: a
 * lookup converts a key in and a value out, and the binding's per-call cost is part
 * of every lookup; the colder conversions are in convert.c. */
#ifndef SMPY_CONVERT_H
#define SMPY_CONVERT_H

#include "binding.h"

/* A key as the C API wants it.  data belongs to the Python key object, except for an
 * int key, whose SM_INT_KEY_SIZE bytes (sm_key_int) are ibuf: data points there, so a
 * key_ref of an int key is used where key_parse filled it, not copied. */
typedef struct {
    const char *data;
    Py_ssize_t size;
    sm_key_kind kind;
    /* An int key outside int64_t, which no map can hold: -1 below, +1 above (then data
     * is NULL and size 0); 0 for every other key. */
    int beyond;
    unsigned char ibuf[SM_INT_KEY_SIZE];
} key_ref;

/* key_parse for every key but an exact compact ASCII str, an exact bytes or an exact
 * int (subclasses, non-ASCII str): kind SM_KEYS_NONE with an exception set if the key
 * is not str, bytes or int (TypeError) or cannot be encoded.  Returned by value, so
 * that the key_ref of the fast paths never needs to be in memory; key_parse points the
 * data of an int key at its ibuf. */
key_ref key_parse_other(PyObject *key);

/* An int key from the result of PyLong_AsLongLongAndOverflow. */
static inline void key_int(long long v, int overflow, key_ref *k) {
    k->kind = SM_KEYS_INT;
    k->beyond = overflow;
    if (overflow) {
        k->data = NULL;
        k->size = 0;
        return;
    }
    sm_key_int((int64_t)v, k->ibuf);
    k->data = (const char *)k->ibuf;
    k->size = SM_INT_KEY_SIZE;
}

static inline int key_parse(PyObject *key, key_ref *k) {
    k->beyond = 0;
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
    if (PyLong_CheckExact(key)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
        key_int(v, overflow, k);
        return 0;
    }
    *k = key_parse_other(key);
    if (k->kind == SM_KEYS_INT && !k->beyond)
        k->data = (const char *)k->ibuf;
    return k->kind == SM_KEYS_NONE ? -1 : 0;
}

/* How a key relates to a map with keys of kind @p map. */
typedef enum { KEY_ERROR = -1, KEY_CANNOT_BE_IN = 0, KEY_USABLE = 1 } key_fit;

static inline key_fit key_fit_map(PyObject *key, sm_key_kind map, int strict, key_ref *k) {
    if (key_parse(key, k) < 0) {
        /* A soft lookup of something that cannot be a key (not str/bytes/int, or a
         * str with lone surrogates) just finds nothing. */
        if (!strict && (PyErr_ExceptionMatches(PyExc_TypeError) ||
                        PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))) {
            PyErr_Clear();
            return KEY_CANNOT_BE_IN;
        }
        return KEY_ERROR;
    }
    if (__builtin_expect(k->kind == map, 1))
        return k->beyond ? KEY_CANNOT_BE_IN : KEY_USABLE;
    if (map == SM_KEYS_NONE || !strict)
        return KEY_CANNOT_BE_IN;
    set_kind_error(map, k->kind);
    return KEY_ERROR;
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
    if (kind == SM_KEYS_INT) /* 8 bytes: the library checks every key of an int map */
        return PyLong_FromLongLong((long long)sm_key_int_value(key->data));
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
    return set_error(SM_ECORRUPT);
}

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
    set_error(rc);
    return LOOKUP_ERROR;
}

/* A value as the C API wants it.  Its bytes belong to the Python object, or to
 * view (bytearray, memoryview) until value_release(). */
typedef struct {
    sm_value value;
    Py_buffer view;
    int has_view;
} py_value;

/* Convert @p o (str, bytes, bytearray, memoryview, int, float, bool, None): 0, or
 * -1 with TypeError / OverflowError.  Runs Python code only for a bytearray subclass
 * that defines __buffer__ (Python 3.12 and later): convert values before any check
 * that the code could invalidate. */
int value_from_py(PyObject *o, py_value *out);
void value_release(py_value *v);

#endif /* SMPY_CONVERT_H */
