/* views.c: keys(), values() and items() of both a sharedmap (owner: its _Snapshot,
 * so the view keeps showing the version it was taken from) and an rbtree (owner:
 * the rbtree, so the view is live, as dict's are), through the operations table
 * (view_ops) of the owner's type.  Keys and items views are set-like: ==, <, <=,
 * ..., &, |, -, ^ and isdisjoint() behave as dict's.  mapping_equal() is the ==
 * of both map types. */
#include "convert.h"

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* SnapshotObject or BuilderObject */
    const view_ops *ops;
    int mode;
} ViewObject;

int mapping_equal(module_state *st, const view_ops *ops, PyObject *owner, PyObject *other) {
    PyObject *it, *item;
    Py_ssize_t n, mine;
    int r = PyDict_Check(other) ? 1 : PyObject_IsInstance(other, st->mapping_abc);
    if (r <= 0)
        return r < 0 ? -1 : 2;
    n = PyObject_Size(other);
    if (n < 0)
        return -1;
    mine = ops->len(owner);
    if (mine < 0)
        return -1;
    if (n != mine)
        return 0;
    it = ops->iter(st, owner, ITER_ITEMS, 0);
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

static PyObject *view_new(PyTypeObject *type, PyObject *owner, const view_ops *ops, int mode) {
    ViewObject *v;
    Py_INCREF(owner); /* before the allocation, which may collect: the caller may borrow it */
    v = PyObject_GC_New(ViewObject, type);
    if (v == NULL) {
        Py_DECREF(owner);
        return NULL;
    }
    v->owner = owner;
    v->ops = ops;
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
    return v->ops->len(v->owner);
}

static PyObject *view_iter_dir(ViewObject *v, int reverse) {
    module_state *st = state_of((PyObject *)v);
    if (st == NULL)
        return NULL;
    return v->ops->iter(st, v->owner, v->mode, reverse);
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
        found = v->ops->lookup(v->owner, obj, 0, &val);
        return found == LOOKUP_ERROR ? -1 : found == LOOKUP_FOUND;
    case ITER_ITEMS:
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2)
            return 0;
        found = v->ops->lookup(v->owner, PyTuple_GET_ITEM(obj, 0), 0, &val);
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

PyType_Spec keys_spec = {
    .name = "sharedmap._sharedmap.sharedmap_keys",
    .basicsize = sizeof(ViewObject),
    .flags = VIEW_FLAGS,
    .slots = setview_slots,
};
PyType_Spec items_spec = {
    .name = "sharedmap._sharedmap.sharedmap_items",
    .basicsize = sizeof(ViewObject),
    .flags = VIEW_FLAGS,
    .slots = setview_slots,
};
PyType_Spec values_spec = {
    .name = "sharedmap._sharedmap.sharedmap_values",
    .basicsize = sizeof(ViewObject),
    .flags = VIEW_FLAGS,
    .slots = valuesview_slots,
};

PyObject *make_view(PyObject *self, PyObject *owner, const view_ops *ops, int mode) {
    module_state *st = state_of(self);
    PyTypeObject *tp;
    if (st == NULL)
        return NULL;
    tp = mode == ITER_KEYS ? st->keys_type : mode == ITER_VALUES ? st->values_type : st->items_type;
    return view_new(tp, owner, ops, mode);
}
