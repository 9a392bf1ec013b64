"""Int keys (signed 64-bit, numeric order) through every read operation of the builder and the
readers: lookups, iteration, ordered queries, views, ==, copies, pickling, publishing, verify.
The random-map properties of every key kind are in test_properties.py."""
import pickle

import pytest

import sharedmap

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
KEYS = [I64_MIN, I64_MIN + 1, -(2**32), -256, -1, 0, 1, 255, 256, 2**32, I64_MAX - 1, I64_MAX]


@pytest.fixture
def d():
    return {k: f"v{k}" for k in KEYS}


def test_numeric_order_everywhere(d, name):
    w = sharedmap.rbtree(reversed(list(d.items())))
    assert list(w) == KEYS
    w.share(name)
    with sharedmap.sharedmap(name) as m:
        assert list(m) == KEYS and list(reversed(m)) == KEYS[::-1]
        assert list(m.keys()) == KEYS and list(m.values()) == [d[k] for k in KEYS]
        assert list(m.irange(-256, 256)) == [-256, -1, 0, 1, 255, 256]
        assert list(m.irange(-256, 256, (False, False), reverse=True)) == [255, 1, 0, -1]
        assert list(m.irange(maximum=-1)) == KEYS[:5]
        assert m.bisect_left(0) == 5 and m.bisect_right(0) == 6 and m.bisect_left(2) == 7
        assert m.index(255) == 7 and m.peekitem(0) == (I64_MIN, d[I64_MIN])
        assert m.peekitem() == (I64_MAX, d[I64_MAX])
        assert m == d and m.keys() == d.keys() and dict(m.items()) == d
        assert m.info()["key_kind"] == "int" and m.verify() is True
        assert sharedmap.rbtree(m).dump()[128:] == w.dump()[128:]  # the same body


def test_ints_beyond_int64_are_absent_and_sort_past_the_ends(d):
    m = sharedmap.loads(sharedmap.rbtree(d).dump())
    for k in (2**63, -(2**63) - 1, 10**30, -(10**30)):
        assert k not in m and m.get(k) is None
        with pytest.raises(KeyError):
            m[k]
        with pytest.raises(ValueError):
            m.index(k)
    assert m.bisect_left(2**63) == len(KEYS) and m.bisect_right(10**30) == len(KEYS)
    assert m.bisect_left(-(2**63) - 1) == 0 and m.bisect_right(-(10**30)) == 0
    assert list(m.irange(-(10**30), 10**30)) == KEYS
    assert list(m.irange(2**63)) == [] and list(m.irange(maximum=-(2**64))) == []
    w = sharedmap.rbtree()
    with pytest.raises(sharedmap.TooLargeError, match="signed 64-bit"):
        w[2**63] = 1
    with pytest.raises(OverflowError):
        w[-(2**63) - 1] = 1
    assert len(w) == 0
    with pytest.raises(KeyError):
        del w[2**64]


def test_int_subclasses_are_their_value_and_other_numbers_are_not_keys():
    w = sharedmap.rbtree({0: "zero", 1: "one"})
    assert w[True] == "one" and w[False] == "zero"
    m = sharedmap.loads(w.dump())
    assert m[True] == "one" and True in m
    import enum

    class Color(enum.IntEnum):
        RED = 1

    assert m[Color.RED] == "one"
    w[Color.RED] = "uno"
    assert type(next(reversed(w))) is int and w[1] == "uno"
    with pytest.raises(TypeError, match="keys must be str, bytes or int, not float"):
        m[1.0]
    assert 1.0 not in m.keys()  # a soft lookup: not there


def test_one_kind_per_map_names_both(d):
    w = sharedmap.rbtree(d)
    with pytest.raises(sharedmap.KeyKindError, match="this map has int keys, got str"):
        w["1"] = 1
    with pytest.raises(sharedmap.KeyKindError, match="this map has int keys, got bytes"):
        w.get(b"1")
    m = sharedmap.loads(w.dump())
    with pytest.raises(TypeError, match="this map has int keys, got str"):
        m["1"]
    with pytest.raises(TypeError, match="int keys, got str"):
        m.bisect_left("a")
    s = sharedmap.rbtree({"a": 1})
    with pytest.raises(TypeError, match="this map has str keys, got int"):
        s[1] = 2
    with pytest.raises(TypeError):
        s.update(m)
    assert dict(s) == {"a": 1}
    with pytest.raises(TypeError, match="int keys have no prefixes"):
        m.prefix(1)


def test_pickling_by_reference_and_by_value(d, name, tmp_path):
    w = sharedmap.rbtree(d)
    assert dict(pickle.loads(pickle.dumps(w))) == d
    w.share(name)
    m = sharedmap.sharedmap(name)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2 == d and list(m2) == KEYS
    w[5] = "new"
    w.share(name, force=True)
    assert m.refresh() is True and m[5] == "new" and list(m)[7] == 5
    p = tmp_path / "ints.smap"
    w.save(p)
    with sharedmap.open(p) as f:
        assert f == dict(w) and f.verify() is True


def test_getbuffer_and_values_of_every_type():
    vals = {1: b"bytes", 2: "str", 3: 7, 4: 2.5, 5: None, 6: True, 7: False}
    m = sharedmap.loads(sharedmap.rbtree(vals).dump())
    assert dict(m) == vals
    assert bytes(m.getbuffer(1)) == b"bytes"


def test_the_empty_int_map_has_no_kind():
    w = sharedmap.rbtree({1: 1})
    del w[1]
    w["a"] = 1  # the kind is forgotten when the map empties
    assert dict(w) == {"a": 1}
    m = sharedmap.loads(sharedmap.rbtree().dump())
    assert m.info()["key_kind"] is None
