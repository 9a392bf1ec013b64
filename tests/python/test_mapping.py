"""One suite of read-only Mapping behaviour, run against four implementations of it: the builder
(rbtree), a reader attached by name (shared memory), a reader of a file, and a reader of bytes.
A plain dict is the oracle throughout.
"""
import collections.abc
import itertools
import math
import pickle
import sys

import pytest

import sharedmap
from support import same_items, same_value

IMPLS = ["rbtree", "shm", "file", "bytes"]


@pytest.fixture(params=IMPLS)
def make(request, new_name, tmp_path):
    """make(d) -> a mapping with the items of d, of the implementation under test."""
    counter = iter(range(10**6))

    def build(d=()):
        w = sharedmap.rbtree(d)
        if request.param == "rbtree":
            return w
        if request.param == "shm":
            name = new_name()
            w.share(name)
            return sharedmap.sharedmap(name)
        if request.param == "file":
            path = tmp_path / f"map{next(counter)}.smap"
            w.save(path)
            return sharedmap.open(path)
        return sharedmap.loads(w.dump())

    build.impl = request.param
    return build


STR_DATA = {"b": "2", "a": "1", "": "empty key", "ä": b"bytes", "a\0": 3, "zz": None, "红": True}
BYTES_DATA = {b"b": "2", b"a": 1.5, b"": b"", b"\xff\x00": False, b"\x00": -7}


@pytest.fixture(params=["str", "bytes"])
def data(request):
    return STR_DATA if request.param == "str" else BYTES_DATA


def test_len_and_bool(make, data):
    m = make(data)
    assert len(m) == len(data)
    assert bool(m) is True
    e = make({})
    assert len(e) == 0 and bool(e) is False


def test_lookups(make, data):
    m = make(data)
    for k, v in data.items():
        assert same_value(m[k], v)
        assert same_value(m.get(k), v)
        assert same_value(m.get(k, "default"), v)
        assert k in m
        assert m.__contains__(k) is True


def test_missing_keys(make, data):
    m = make(data)
    missing = "nope" if isinstance(next(iter(data)), str) else b"nope"
    assert m.get(missing) is None
    assert m.get(missing, 5) == 5
    assert missing not in m
    with pytest.raises(KeyError) as info:
        m[missing]
    assert info.value.args == (missing,)


def test_iteration_is_in_sorted_key_order(make, data):
    m = make(data)
    assert list(m) == sorted(data)
    assert list(reversed(m)) == sorted(data, reverse=True)
    assert list(m.keys()) == sorted(data)
    assert same_items(m.items(), sorted(data.items()))
    assert [type(v) for v in m.values()] == [type(data[k]) for k in sorted(data)]
    assert list(reversed(m.keys())) == sorted(data, reverse=True)
    assert same_items(reversed(m.items()), sorted(data.items(), reverse=True))
    assert same_items(zip(sorted(data, reverse=True), reversed(m.values())),
                      sorted(data.items(), reverse=True))


def test_code_point_order_not_utf16_order(make):
    keys = ["\uffff", "\U00010000", "\ud7ff", "\ue000", "a", "\x7f", "\x80"]
    m = make({k: 1 for k in keys})
    assert list(m) == sorted(keys)


def test_iterator_protocol(make, data):
    m = make(data)
    it = iter(m)
    assert iter(it) is it
    assert isinstance(it, collections.abc.Iterator)
    assert it.__length_hint__() == len(data)
    next(it)
    assert it.__length_hint__() == len(data) - 1
    assert list(it) == sorted(data)[1:]
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_views_basics(make, data):
    m = make(data)
    keys, values, items = m.keys(), m.values(), m.items()
    assert isinstance(keys, collections.abc.KeysView)
    assert isinstance(values, collections.abc.ValuesView)
    assert isinstance(items, collections.abc.ItemsView)
    assert len(keys) == len(values) == len(items) == len(data)
    for k, v in data.items():
        assert k in keys
        assert (k, v) in items
        assert v in values
    assert ("nope", 1) not in items and 42 not in keys
    assert (next(iter(data)), "a value that is not there") not in items
    assert ("wrong", "shape", 3) not in items and "not a tuple" not in items
    assert object() not in values
    with pytest.raises(TypeError):
        hash(keys)
    with pytest.raises(TypeError):
        hash(items)
    assert repr(keys) == f"sharedmap_keys({sorted(data)!r})"
    assert repr(items).startswith("sharedmap_items([")


def test_keys_view_set_operations(make, data):
    m = make(data)
    ks = set(data)
    some = set(list(ks)[:2]) | {"x", b"x", 1}
    for view in (m.keys(), m.items()):
        ref = set(data) if view == m.keys() else set(data.items())
        other = set(list(ref)[:2]) | {("q", 1), "x"}
        assert view & other == ref & other
        assert other & view == ref & other
        assert view | other == ref | other
        assert view - other == ref - other
        assert other - view == other - ref
        assert view ^ other == ref ^ other
        assert view & list(other) == ref & other
        assert view.isdisjoint(other) == ref.isdisjoint(other)
        assert view.isdisjoint([("nothing", "here")])
        assert view == ref and not view != ref
        assert view <= ref and view >= ref and not view < ref and not view > ref
        assert view < ref | {"extra"} and ref | {"extra"} > view
        assert not view == ref | {"extra"}
        assert view != list(ref)
    assert m.keys() == dict.fromkeys(data).keys()
    assert m.items() == dict(data).items()
    assert m.keys() & some == ks & some


def test_equality_with_mappings(make, data, new_name):
    m = make(data)
    assert m == data and data == m
    assert not (m != data)
    assert m == dict(data)
    assert m == sharedmap.loads(sharedmap.rbtree(data).dump())
    assert m == sharedmap.rbtree(data)
    changed = dict(data)
    k0 = next(iter(changed))
    changed[k0] = "something else"
    assert m != changed
    fewer = dict(data)
    del fewer[k0]
    assert m != fewer
    renamed = dict(fewer)
    renamed[k0 * 2 + k0[:0] + (b"~" if isinstance(k0, bytes) else "~")] = data[k0]
    assert m != renamed

    class Custom(collections.abc.Mapping):
        def __init__(self, d):
            self.d = d

        def __getitem__(self, k):
            return self.d[k]

        def __iter__(self):
            return iter(self.d)

        def __len__(self):
            return len(self.d)

    assert m == Custom(data) and Custom(data) == m
    assert m != Custom(changed)
    # not mappings
    assert m != list(data) and not (m == list(data))
    assert m != 1 and m != None  # noqa: E711
    # mappings with keys of the other kind, or of other types, are just different
    assert m != {1: 2}
    assert make({"a": 1}) != {b"a": 1}
    assert make({b"a": 1}) != {"a": 1}
    assert make({}) == {}


def test_unhashable_and_a_mapping(make, data):
    m = make(data)
    with pytest.raises(TypeError):
        hash(m)
    assert isinstance(m, collections.abc.Mapping)


@pytest.mark.skipif(sys.version_info < (3, 10), reason="the match statement is Python 3.10+")
def test_match_statement_sees_a_mapping(make):
    m = make({"a": 1})
    # compiled at run time, so that this file still parses on Python 3.9
    code = compile('match m:\n'
                   '    case {"a": value}: matched = value\n'
                   '    case _: matched = None\n', "<match>", "exec")
    ns = {"m": m}
    exec(code, ns)
    assert ns["matched"] == 1


@pytest.mark.parametrize("bad", [None, 1.5, ("a",), bytearray(b"a"), memoryview(b"a")])
def test_lookup_with_a_non_key_type_is_a_type_error(make, data, bad):
    m = make(data)
    with pytest.raises(TypeError, match="keys must be str, bytes or int"):
        m[bad]
    with pytest.raises(TypeError):
        m.get(bad)
    with pytest.raises(TypeError):
        bad in m


def test_lookup_with_the_other_key_kind_is_a_type_error(make):
    s = make({"a": 1})
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        s[b"a"]
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        s.get(b"a")
    with pytest.raises(TypeError):
        b"a" in s
    b = make({b"a": 1})
    with pytest.raises(TypeError, match="this map has bytes keys, got str"):
        b.get("a", None)
    # the views answer like sets: just "not there"
    assert b"a" not in s.keys() and 1 not in s.keys() and (b"a", 1) not in s.items()


def test_empty_map_accepts_every_key_kind(make):
    m = make({})
    for key in ("a", b"a", "", b"", 0, -(2**63), 2**70):
        assert m.get(key) is None
        assert key not in m
        with pytest.raises(KeyError):
            m[key]
    with pytest.raises(TypeError):
        m.get(1.5)
    assert list(m) == [] and list(m.items()) == [] and list(reversed(m)) == []


def test_lone_surrogates_cannot_be_keys(make):
    m = make({"a": 1})
    with pytest.raises(UnicodeEncodeError):
        m.get("\ud800")
    assert "\ud800" not in m.keys()


def test_str_and_bytes_subclasses_work_as_keys(make):
    class S(str):
        pass

    class B(bytes):
        pass

    assert make({"ab": 1})[S("ab")] == 1
    assert make({b"ab": 1})[B(b"ab")] == 1


def test_every_value_type_reads_back_as_itself(make):
    values = {
        "str": "text ✓",
        "str0": "",
        "nul": "a\0b",
        "bytes": b"\x00\x01\xff",
        "bytes0": b"",
        "int": 42,
        "intmin": -(2**63),
        "intmax": 2**63 - 1,
        "zero": 0,
        "float": 3.25,
        "negzero": -0.0,
        "inf": float("-inf"),
        "nan": float("nan"),
        "tiny": 5e-324,
        "true": True,
        "false": False,
        "none": None,
    }
    m = make(values)
    for k, v in values.items():
        assert same_value(m[k], v), k
    assert math.copysign(1.0, m["negzero"]) == -1.0
    assert m["true"] is True and m["false"] is False and m["none"] is None


def test_get_argument_checking(make):
    m = make({"a": 1})
    with pytest.raises(TypeError):
        m.get()
    with pytest.raises(TypeError):
        m.get("a", 1, 2)
    with pytest.raises(TypeError):
        m.get(key="a")


def test_class_getitem(make):
    m = make({"a": 1})
    alias = type(m)[str, int]
    assert alias.__origin__ is type(m)
    assert alias.__args__ == (str, int)


def test_to_dict_and_copy(make, data):
    m = make(data)
    assert dict(m) == data
    c = m.copy()
    assert c == data
    if make.impl == "rbtree":
        assert type(c) is sharedmap.rbtree and c is not m
    else:
        assert type(c) is dict and list(c) == sorted(data)


def test_pickle_round_trip(make, data):
    m = make(data)
    m2 = pickle.loads(pickle.dumps(m))
    assert type(m2) is type(m)
    assert m2 == m and list(m2) == list(m)


# ---- Iterators refill the tuples, strs and bytes that the caller has dropped (see "What
# iterators hand out" in _sharedmap.c).  What the caller still holds must never change, and what
# it gets must always be exact, whichever way it drops or keeps them.

def recycling_data():
    """Many keys and values of a few UTF-8 lengths, ASCII and not at the same length (the 4-byte
    "é12" beside "k123"), with some values that are not str, so that iterators refill objects on
    most steps and meet every case of the refill."""
    d = {}
    for i in range(400):
        k = f"k{i:03}" if i % 5 else f"é{i % 100:02}"
        if k in d:
            k = f"x{i:03}"
        v = [f"v{i:03}", f"ü{i % 100:02}", f"value-{i}", i, None, f"{i:02}"[-2:]][i % 6]
        d[k] = v
    return d


RECYCLING = recycling_data()
# The same with bytes keys, and bytes values beside the str ones (the same lengths in both).
RECYCLING_BYTES = {k.encode(): (v.encode() if isinstance(v, str) and i % 2 else v)
                   for i, (k, v) in enumerate(RECYCLING.items())}


@pytest.fixture(params=["str keys", "bytes keys"])
def recycling(request):
    return RECYCLING if request.param == "str keys" else RECYCLING_BYTES


def fresh(x):
    """An equal str or bytes that is a new object, its hash never computed."""
    return x.encode().decode() if isinstance(x, str) else bytes(bytearray(x))


def test_iterating_while_dropping_every_item(make, recycling):
    m = make(recycling)
    expected = sorted(recycling.items())
    checks = {
        "items": lambda got, k, v: type(got) is tuple and got[0] == k and same_value(got[1], v),
        "keys": lambda got, k, v: got == k,
        "values": lambda got, k, v: same_value(got, v),
    }
    for kind, check in checks.items():
        for reverse in (False, True):
            want = expected[::-1] if reverse else expected
            view = getattr(m, kind)()
            n = 0
            for got in reversed(view) if reverse else view:  # compared, then dropped
                assert check(got, *want[n]), (kind, reverse, n)
                n += 1
            assert n == len(want)


def test_what_the_caller_keeps_never_changes(make, recycling):
    m = make(recycling)
    expected = sorted(recycling.items())
    kept = []
    prev = None
    for n, item in enumerate(m.items()):
        k, v = item
        if prev is not None:
            assert prev[0] < k  # the previous item, still held here, is intact
        if n % 7 == 0:
            kept.append((n, item, k, v))
        prev = (k, v)
    for n, item, k, v in kept:
        assert item == expected[n] and k == expected[n][0] and same_value(v, expected[n][1])
    it = iter(m)
    first = next(it)
    rest = list(it)
    assert first == expected[0][0] and rest == [k for k, _ in expected[1:]]


def test_hashes_of_handed_out_objects_are_their_own(make, recycling):
    # A str whose hash was computed is never refilled, and a bytes object that is refilled
    # forgets its hash: a cached hash must never go stale.  Every key and value is hashed, then
    # dropped, so that the next one of its length can be made in the same object.
    m = make(recycling)
    for k, v in m.items():
        assert hash(k) == hash(fresh(k))
        if isinstance(v, (str, bytes)):
            assert hash(v) == hash(fresh(v))
    for k in m:
        assert hash(k) == hash(fresh(k))
    assert {k: v for k, v in m.items()} == recycling
    texts = (str, bytes)
    assert {v for v in m.values() if isinstance(v, texts)} == {
        v for v in recycling.values() if isinstance(v, texts)}


def test_items_tuples_kept_by_the_caller_are_intact_and_collectable(make, recycling):
    import gc
    m = make(recycling)
    expected = sorted(recycling.items())
    it = iter(m.items())
    held = [next(it) for _ in range(3)]
    for n, item in enumerate(it, 3):
        if n % 50 == 0:
            gc.collect()  # the collector never sees a half-made item
    assert held == expected[:3]
    assert not any(gc.is_tracked(x) for x in held)  # atomic contents: nothing to collect


@pytest.fixture
def collections_midway():
    """Make the cyclic collector start on nearly every allocation it counts, and run
    hook(phase) from gc.callbacks at each collection (never re-entered): on Python 3.9-3.11
    a collection can start inside an iterator's next(), while it makes an items tuple.  Pairs
    come from a free list before they are counted: it is emptied first."""
    import gc
    hooks = []
    pairs = [(i, -i) for i in range(5000)]  # noqa: F841 (held until the test ends)
    busy = [False]

    def callback(phase, info):
        if busy[0]:
            return
        busy[0] = True
        try:
            for hook in hooks:
                hook(phase)
        finally:
            busy[0] = False

    threshold = gc.get_threshold()
    gc.set_threshold(1)
    gc.callbacks.append(callback)
    try:
        yield hooks
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*threshold)


def test_next_from_a_collection_midway_loses_and_repeats_nothing(
        make, recycling, collections_midway):
    # The items are kept, so that every step makes a new tuple, and a collection can start
    # there; the callback then takes an item itself from the same iterator.
    m = make(recycling)
    for reverse in (False, True):
        it = reversed(m.items()) if reverse else iter(m.items())
        got = []

        def take(phase):
            if phase == "start":
                got.extend(itertools.islice(it, 1))

        collections_midway.append(take)
        got.extend(it)
        collections_midway.remove(take)
        assert len(got) == len(recycling)
        assert sorted(got) == sorted(recycling.items())


def test_an_rbtree_refilled_by_a_collection_midway_gives_a_whole_item_then_runtimeerror(
        collections_midway):
    # The callback empties the tree and fills it with other entries of the same sizes, which
    # may take the memory of the old ones: the item being made must be all old.
    data = {f"key{i:06}": f"value-{i:06}" for i in range(20000)}
    other = {k.upper(): v.upper() for k, v in data.items()}
    w = sharedmap.rbtree(data)
    it = iter(w.items())
    armed = [False]

    def refill(phase):
        if phase == "start" and armed[0]:
            armed[0] = False
            w.clear()
            w.update(other)

    collections_midway.append(refill)
    got = []
    armed[0] = True
    while armed[0]:  # nothing here but next() allocates what the collector counts
        got.append(next(it))
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        next(it)
    assert w == other
    assert all(data.get(k) == v for k, v in got)


@pytest.mark.parametrize("kind", [str, bytes])
def test_strs_and_bytes_of_every_length_with_a_non_ascii_char_anywhere(make, kind):
    # Short ASCII strs are checked and copied a word at a time (8-byte words that overlap to
    # cover 8..32 bytes, a loop beyond), and refilled by iterators, as bytes are: every UTF-8
    # length from 0 to 72, all ASCII or with an "é" at each byte position, as keys and values.
    strs = []
    for n in range(73):
        base = "".join(chr(ord("a") + (n * 7 + i) % 26) for i in range(n))
        strs.append(base)
        strs += [base[:p] + "é" + base[p + 2:] for p in range(n - 1)]  # n bytes, é at byte p
    if kind is bytes:
        strs = [s.encode() for s in strs]
    data = {s: s[::-1] for s in strs}
    m = make(data)
    assert all(m[s] == data[s] for s in strs)
    want = sorted(data.items())
    n = 0
    for (k, v), (wk, wv) in zip(m.items(), want):  # each compared, then dropped: refilled
        assert k == wk and v == wv
        n += 1
    assert n == len(want)
    assert list(m.items()) == want  # each item kept: nothing refilled
    assert [k for k in reversed(m)] == [k for k, _ in reversed(want)]
