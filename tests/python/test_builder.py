"""The builder, sharedmap.rbtree: a MutableMapping in sorted key order that becomes a snapshot."""
import collections.abc
import enum
import os
import pathlib
import pickle
import stat
import threading
import weakref

import pytest

import sharedmap
from support import SHM_DIR, same_value


def test_constructors_like_dict():
    assert dict(sharedmap.rbtree()) == {}
    assert dict(sharedmap.rbtree({"b": 1, "a": 2})) == {"a": 2, "b": 1}
    assert dict(sharedmap.rbtree([("a", 1), ["b", 2]])) == {"a": 1, "b": 2}
    assert dict(sharedmap.rbtree(a=1, b="x")) == {"a": 1, "b": "x"}
    assert dict(sharedmap.rbtree({"a": 1}, a=2, c=3)) == {"a": 2, "c": 3}
    assert dict(sharedmap.rbtree(iter([("k", "v")]))) == {"k": "v"}
    assert dict(sharedmap.rbtree(collections.OrderedDict(z=1, y=2))) == {"y": 2, "z": 1}
    with pytest.raises(TypeError):
        sharedmap.rbtree({"a": 1}, {"b": 2})
    with pytest.raises(TypeError):
        sharedmap.rbtree(5)
    with pytest.raises(ValueError, match="element #1 has length 3"):
        sharedmap.rbtree([("a", 1), ("b", 2, 3)])
    with pytest.raises(TypeError, match="element #0"):
        sharedmap.rbtree([1])


class SameBytes(str):
    """A str whose instances are all unequal: a dict holds two with the same bytes."""

    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other


@pytest.mark.parametrize("kind", ["str", "bytes", "int"])
def test_from_a_dict_then_every_operation(kind, name):
    # rbtree(dict) appends without a hash index (sm_builder_put_new): the first lookup,
    # put or deletion builds it, and the snapshot is the one of an rbtree filled by puts
    make = {"str": lambda i: f"k\u00e9{i * 7919 % 5000:05d}", "bytes": lambda i: b"\xff%05d" % (i * 7919 % 5000),
            "int": lambda i: (i * 7919 % 5000 - 2500) * (1 << 40)}[kind]
    values = ["v", b"\x00", 0, -(2**63), 1.5, True, False, None, "\u00e9" * 20]
    d = {make(i): values[i % len(values)] for i in range(5000)}
    w = sharedmap.rbtree(d)
    assert len(w) == 5000
    by_puts = sharedmap.rbtree()
    for k, v in d.items():
        by_puts[k] = v
    mine, theirs = w.dump(), by_puts.dump()
    # all but `created` and the header checksum, which covers it
    assert mine[:96] + mine[104:112] + mine[120:] == theirs[:96] + theirs[104:112] + theirs[120:]
    assert list(w.keys()) == sorted(d)
    assert all(same_value(w[k], v) for k, v in d.items())
    w[make(1)] = "changed"
    del w[make(2)]
    w[make(5001)] = "new"
    d[make(1)] = "changed"
    del d[make(2)]
    d[make(5001)] = "new"
    assert len(w) == len(d) and dict(w.items()) == d
    w.share(name)
    m = sharedmap.sharedmap(name)
    assert dict(m.items()) == d
    m.close()


def test_from_a_dict_whose_keys_share_their_bytes_keeps_the_last():
    # two keys of one dict that are one key of the map: the later value, one entry,
    # whether the plain key comes first (appended unindexed, then looked up) or second
    for first_plain in (True, False):
        a, b = SameBytes("x"), SameBytes("x")
        d = {"x": 1, a: 2, "y": 3} if first_plain else {a: 1, "x": 2, b: 3, "y": 4}
        assert len(d) == (3 if first_plain else 4)
        w = sharedmap.rbtree(d)
        assert len(w) == 2
        assert w["x"] == (2 if first_plain else 3)
        assert list(w.items()) == [("x", 2 if first_plain else 3), ("y", 3 if first_plain else 4)]


def test_constructor_from_a_generic_mapping():
    class M(collections.abc.Mapping):
        def __getitem__(self, k):
            return {"x": 1, "y": 2}[k]

        def __iter__(self):
            return iter(["y", "x"])

        def __len__(self):
            return 2

    assert dict(sharedmap.rbtree(M())) == {"x": 1, "y": 2}


def test_from_a_reader_and_from_another_rbtree(name):
    src = {f"k{i:04}": i for i in range(1000)}
    w = sharedmap.rbtree(src)
    w.share(name)
    m = sharedmap.sharedmap(name)
    copy = sharedmap.rbtree(m)
    assert copy == src and list(copy) == sorted(src)
    copy["new"] = "value"  # editable, independent of the map
    assert "new" not in m
    copy2 = sharedmap.rbtree(w)
    assert copy2 == src
    copy2["k0000"] = "changed"
    assert w["k0000"] == 0
    # merge into a non-empty builder, from a reader and from a builder
    merged = sharedmap.rbtree({"k0001": "mine", "zzz": 1})
    merged.update(m)
    assert merged["k0001"] == 1 and merged["zzz"] == 1 and len(merged) == 1001
    merged2 = sharedmap.rbtree({"k0001": "mine", "zzz": 1})
    merged2.update(w)
    assert merged2 == merged
    # kwargs on top
    assert sharedmap.rbtree(m, extra=1)["extra"] == 1
    # a closed reader cannot be copied
    m.close()
    with pytest.raises(ValueError, match="closed"):
        sharedmap.rbtree(m)


def test_update_from_a_map_of_the_other_kind_is_a_type_error():
    w = sharedmap.rbtree({"a": 1})
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        w.update(sharedmap.rbtree({b"a": 1}))
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        w.update(sharedmap.loads(sharedmap.rbtree({b"a": 1}).dump()))
    w.update(sharedmap.rbtree())  # empty: nothing to mix
    w.update(w)
    assert w == {"a": 1}


def test_set_get_and_item_access():
    w = sharedmap.rbtree()
    assert w.set("k", "v") is True
    assert w.get("k") == "v" and w["k"] == "v"
    w["k"] = 2
    assert w["k"] == 2 and len(w) == 1
    del w["k"]
    assert len(w) == 0 and "k" not in w
    with pytest.raises(KeyError):
        del w["k"]
    with pytest.raises(KeyError):
        w["k"]
    with pytest.raises(TypeError):
        w.set("k")
    with pytest.raises(TypeError):
        del w[1.5]
    with pytest.raises(KeyError):
        del w[1]  # an int key, which an empty rbtree does not hold


def test_one_key_kind_per_map():
    w = sharedmap.rbtree({"a": 1})
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        w[b"b"] = 1
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        w.set(b"b", 1)
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        w.get(b"a")
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        del w[b"a"]
    with pytest.raises(TypeError, match="this map has str keys, got int"):
        w[1] = 1
    with pytest.raises(TypeError, match="keys must be str, bytes or int, not float"):
        w[1.0] = 1
    # the kind is forgotten when the map becomes empty
    del w["a"]
    w[b"b"] = 1
    assert list(w) == [b"b"]
    w.clear()
    w["s"] = 1
    assert list(w) == ["s"]


class Colour(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


class MyFloat(float):
    pass


def test_value_types_and_subclasses():
    w = sharedmap.rbtree()
    w["bool"] = True
    w["int"] = 1
    w["enum"] = Colour.RED
    w["mystr"] = MyStr("x")
    w["myfloat"] = MyFloat(1.5)
    w["bytearray"] = bytearray(b"ba")
    w["memoryview"] = memoryview(b"0123456789")[2:5]
    w["none"] = None
    assert w["bool"] is True
    assert type(w["enum"]) is int and w["enum"] == 1
    assert type(w["mystr"]) is str and w["mystr"] == "x"
    assert type(w["myfloat"]) is float and w["myfloat"] == 1.5
    assert w["bytearray"] == b"ba" and type(w["bytearray"]) is bytes
    assert w["memoryview"] == b"234"
    assert w["none"] is None


@pytest.mark.parametrize("bad", [[1], {"a": 1}, (1,), object(), 1j, {1}, sharedmap.rbtree])
def test_unsupported_value_types(bad):
    w = sharedmap.rbtree()
    with pytest.raises(TypeError, match="values must be str, bytes, int, float, bool or None"):
        w["k"] = bad
    assert len(w) == 0


def test_int_range_is_64_bit_signed():
    w = sharedmap.rbtree()
    w["lo"] = -(2**63)
    w["hi"] = 2**63 - 1
    for bad in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(OverflowError):
            w["x"] = bad
    assert "x" not in w
    assert sharedmap.loads(w.dump()) == {"lo": -(2**63), "hi": 2**63 - 1}


def test_floats_are_bit_exact():
    import struct

    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    w = sharedmap.rbtree(negzero=-0.0, nan=float("nan"), odd=odd_nan, big=1.7976931348623157e308)
    m = sharedmap.loads(w.dump())
    for k in ("negzero", "nan", "odd", "big"):
        assert same_value(m[k], w[k])
    assert struct.pack("<d", m["odd"]) == struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF)


def test_lone_surrogates_are_refused():
    w = sharedmap.rbtree()
    with pytest.raises(UnicodeEncodeError):
        w["\ud800"] = 1
    with pytest.raises(UnicodeEncodeError):
        w["k"] = "\udfff"
    assert len(w) == 0


def test_pop_popitem_setdefault_clear():
    w = sharedmap.rbtree({"a": 1, "c": 3, "b": 2})
    assert w.pop("a") == 1 and "a" not in w
    assert w.pop("a", "dflt") == "dflt"
    with pytest.raises(KeyError):
        w.pop("a")
    with pytest.raises(TypeError):
        w.pop(b"a")
    assert w.popitem() == ("c", 3)  # the largest key
    assert w.popitem() == ("b", 2)
    with pytest.raises(KeyError):
        w.popitem()
    assert w.setdefault("x", 5) == 5 and w["x"] == 5
    assert w.setdefault("x", 6) == 5
    assert w.setdefault("y") is None and w["y"] is None
    w.clear()
    assert len(w) == 0 and list(w) == []
    assert sharedmap.rbtree({b"": b""}).pop(b"") == b""


def test_update_variants():
    w = sharedmap.rbtree()
    w.update({"a": 1})
    w.update([("b", 2)])
    w.update(c=3)
    w.update({"a": 10}, d=4)
    w.update()
    assert dict(w) == {"a": 10, "b": 2, "c": 3, "d": 4}
    with pytest.raises(TypeError):
        w.update({"a": 1}, {"b": 2})


def test_iteration_order_and_views_are_live():
    w = sharedmap.rbtree({"b": 2, "a": 1})
    keys, items = w.keys(), w.items()
    w["c"] = 3
    assert list(keys) == ["a", "b", "c"]
    assert list(items) == [("a", 1), ("b", 2), ("c", 3)]
    assert len(keys) == 3
    assert list(reversed(w)) == ["c", "b", "a"]
    assert list(reversed(w.values())) == [3, 2, 1]


def test_changing_size_during_iteration_is_an_error():
    w = sharedmap.rbtree({"a": 1, "b": 2})
    it = iter(w)
    assert next(it) == "a"
    w["c"] = 3
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        next(it)
    it = iter(w.items())
    next(it)
    del w["a"]
    with pytest.raises(RuntimeError):
        next(it)
    it = iter(w.values())
    w.clear()
    with pytest.raises(RuntimeError):
        next(it)
    # overwriting a value is fine (as with dict)
    w.update(a=1, b=2)
    out = []
    for k in w:
        w[k] = 0
        out.append(k)
    assert out == ["a", "b"] and dict(w) == {"a": 0, "b": 0}
    # replacing everything through a linear copy from a reader is a change too
    w.clear()
    it = iter(w)
    w.update(sharedmap.loads(sharedmap.rbtree(x=1).dump()))
    with pytest.raises(RuntimeError):
        next(it)


def test_equality_repr_copy_hash():
    w = sharedmap.rbtree({"b": 2, "a": 1})
    assert w == {"a": 1, "b": 2} and w != {"a": 1}
    assert repr(w) == "rbtree({'a': 1, 'b': 2})"
    c = w.copy()
    assert type(c) is sharedmap.rbtree and c == w
    c["z"] = 0
    assert "z" not in w
    with pytest.raises(TypeError):
        hash(w)
    assert isinstance(w, collections.abc.MutableMapping)
    assert sharedmap.rbtree[str, int].__origin__ is sharedmap.rbtree


class SubTree(sharedmap.rbtree):
    pass


def test_pickle_and_weakref_and_subclass():
    w = sharedmap.rbtree({"a": b"1"})
    assert pickle.loads(pickle.dumps(w)) == w
    r = weakref.ref(w)
    assert r() is w

    s = SubTree(a=1)
    s.attr = "x"
    assert s["a"] == 1 and repr(s) == "SubTree({'a': 1})"
    assert pickle.loads(pickle.dumps(s)) == s


# ---------------------------------------------------------------- publishing


@pytest.mark.parametrize("bad", ["", "a/b", "x" * (sharedmap.NAME_MAX + 1), "a\0b"])
def test_invalid_names_are_value_errors(bad):
    w = sharedmap.rbtree(a=1)
    with pytest.raises(ValueError):
        w.share(bad)
    with pytest.raises(ValueError):
        sharedmap.sharedmap(bad)
    with pytest.raises(ValueError):
        sharedmap.rbtree.remove(bad)


def test_names_must_be_str():
    with pytest.raises(TypeError):
        sharedmap.rbtree().share(b"name")
    with pytest.raises(TypeError):
        sharedmap.sharedmap(1)


def test_longest_name_works(new_name):
    name = new_name()
    name = name + "x" * (sharedmap.NAME_MAX - len(name.encode()))
    sharedmap.rbtree(a=1).share(name)
    try:
        assert sharedmap.sharedmap(name)["a"] == 1
    finally:
        assert sharedmap.rbtree.remove(name)


def test_modes_are_exact_whatever_the_umask(new_name):
    old = os.umask(0o077)
    try:
        a, b = new_name(), new_name()
        sharedmap.rbtree(a=1).share(a)
        sharedmap.rbtree(a=1).share(b, mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(os.path.join(SHM_DIR, "sharedmap." + a)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(SHM_DIR, "sharedmap." + b)).st_mode) == 0o644
    with pytest.raises(ValueError):
        sharedmap.rbtree().share(new_name(), mode=0o10000)
    with pytest.raises(ValueError):
        sharedmap.rbtree().share(new_name(), mode=-1)


def test_save_and_open_with_every_path_type(tmp_path):
    w = sharedmap.rbtree({"a": 1, "b": "two"})
    p = tmp_path / "m.smap"
    assert w.save(p) is True
    with open(p, "rb") as f:
        assert f.read()[128:] == w.dump()[128:]
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    for path in (p, str(p), os.fsencode(str(p))):
        m = sharedmap.open(path)
        assert m == w
        assert m.path == os.fspath(path)
        assert m.name is None
    with pytest.raises(FileExistsError) as info:
        w.save(str(p))
    assert info.value.filename == str(p)
    w["c"] = None
    assert w.save(p, force=True) is True
    assert sharedmap.open(p) == w
    q = tmp_path / "q.smap"
    w.save(str(q), mode=0o640)
    assert stat.S_IMODE(os.stat(q).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["m.smap", "q.smap"]  # no temporaries left


def test_save_errors(tmp_path):
    w = sharedmap.rbtree(a=1)
    with pytest.raises(FileNotFoundError):
        w.save(tmp_path / "no" / "such" / "dir.smap")
    with pytest.raises(TypeError):
        w.save(1)
    with pytest.raises(ValueError):
        w.save("a\0b")
    # symlinks are not followed: a planted link is not written through
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (tmp_path / "link.smap").symlink_to(target)
    with pytest.raises(FileExistsError):
        w.save(tmp_path / "link.smap")
    assert target.read_bytes() == b"keep"


def test_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sharedmap.rbtree(a=1).save("rel.smap")
    m = sharedmap.open("rel.smap")
    assert m.path == "rel.smap" and m["a"] == 1
    monkeypatch.chdir("/")
    # pickled by absolute path, so it re-opens from anywhere
    assert pickle.loads(pickle.dumps(m))["a"] == 1


def test_dump_of_an_empty_map_loads():
    m = sharedmap.loads(sharedmap.rbtree().dump())
    assert len(m) == 0 and m.info()["key_kind"] is None


# ---------------------------------------------------------------- threads


def test_builder_is_busy_while_publishing_without_the_gil(new_name):
    w = sharedmap.rbtree((f"k{i}", i) for i in range(300_000))
    seen = {"busy": 0, "free": 0}
    started = threading.Event()
    done = threading.Event()

    def poke():
        started.set()
        while not done.is_set():
            try:
                w.get("k1")
                w["k1"] = 1
                seen["free"] += 1
            except RuntimeError as e:
                assert "in use by another thread" in str(e)
                seen["busy"] += 1

    t = threading.Thread(target=poke)
    t.start()
    started.wait()
    try:
        for _ in range(3):
            w.dump()
            w.share(new_name())
    finally:
        done.set()
        t.join()
    assert seen["busy"] > 0
    assert len(w) == 300_000


def test_concurrent_share_of_one_builder_from_two_threads(new_name):
    w = sharedmap.rbtree((f"k{i}", i) for i in range(200_000))
    errors, ok = [], []

    def share(n):
        try:
            ok.append(w.share(n))
        except RuntimeError as e:
            errors.append(e)

    threads = [threading.Thread(target=share, args=(new_name(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) >= 1 and len(ok) + len(errors) == 4


def test_pathlike_objects_other_than_pathlib(tmp_path):
    class P:
        def __fspath__(self):
            return str(tmp_path / "x.smap")

    sharedmap.rbtree(a=1).save(P())
    assert sharedmap.open(P())["a"] == 1
    assert isinstance(sharedmap.open(pathlib.Path(P().__fspath__())).path, str)
