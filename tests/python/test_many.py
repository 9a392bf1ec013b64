"""get_many() and get_array(): batches of keys against get() one by one and a dict, on readers and
builders, with lists, iterables and buffers (NumPy arrays when NumPy is installed, array.array and
memoryview always); int keys through the batch paths; errors that name the key or its position.
"""
import array
import random
import subprocess
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sharedmap
from support import same_value

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def readers(d):
    """The map d as an rbtree and as a reader of its bytes."""
    w = sharedmap.rbtree(d)
    return [w, sharedmap.loads(w.dump())]


def check_batch(m, d, keys):
    got = m.get_many(keys)
    assert len(got) == len(keys)
    for g, k in zip(got, keys):
        assert same_value(g, d.get(k)) and same_value(g, m.get(k))


KEYS = {
    "str": st.text(max_size=6),
    "bytes": st.binary(max_size=6),
    "int": st.integers(I64_MIN, I64_MAX) | st.sampled_from([I64_MIN, I64_MAX, 0, -1]),
}


@given(st.sampled_from(sorted(KEYS)).flatmap(lambda k: st.tuples(
    st.dictionaries(KEYS[k], st.integers(I64_MIN, I64_MAX) | st.text() | st.none(), max_size=50),
    st.lists(KEYS[k], max_size=30))))
def test_get_many_equals_get_of_each_key_on_random_maps(case):
    d, extra = case
    keys = list(d)[:20] + extra + list(d)[:3]
    for m in readers(d):
        check_batch(m, d, keys)
        check_batch(m, d, tuple(keys))
        assert m.get_many(iter(keys), 7) == [d.get(k, 7) for k in keys]


def test_empty_batches_duplicates_and_defaults():
    d = {"a": 1, "b": None}
    for m in readers(d):
        assert m.get_many([]) == [] and m.get_many(()) == [] and m.get_many(iter([])) == []
        assert m.get_many(["a", "a", "zz", "b", "a"]) == [1, 1, None, None, 1]
        sentinel = object()
        got = m.get_many(["zz", "b"], sentinel)
        assert got[0] is sentinel and got[1] is None
    for m in readers({}):
        assert m.get_many(["a", b"b", 3]) == [None, None, None]  # an empty map has no kind yet


def test_a_key_of_the_wrong_kind_names_its_position_and_returns_nothing():
    for m in readers({"a": 1, "b": 2}):
        with pytest.raises(sharedmap.KeyKindError, match=r"key 2 is bytes, this map has str keys"):
            m.get_many(["a", "b", b"c"])
        with pytest.raises(TypeError, match=r"key 1 must be str, bytes or int, not float"):
            m.get_many(["a", 1.5])
        with pytest.raises(TypeError, match="not one str"):
            m.get_many("ab")
        with pytest.raises(TypeError, match="iterable"):
            m.get_many(5)
    for m in readers({1: "x"}):
        with pytest.raises(TypeError, match=r"key 0 is str, this map has int keys"):
            m.get_many(["1"])


def test_int_keys_at_the_ends_of_int64_and_beyond():
    d = {I64_MIN: "min", I64_MAX: "max", 0: "zero", -1: "minus one"}
    for m in readers(d):
        assert m.get_many([I64_MAX, I64_MIN, 2**63, -(2**63) - 1, 2**100, 0, -1, True]) == [
            "max", "min", None, None, None, "zero", "minus one", None]
        assert m.get_many([False]) == ["zero"]  # bool is an int, as in a dict
        assert list(m) == [I64_MIN, -1, 0, I64_MAX]


def test_buffers_of_int_keys_without_numpy():
    d = {i * 3: i for i in range(-50, 50)}
    for m in readers(d):
        for code in "bhilq":
            keys = array.array(code, [0, 3, 4, -3, 120, -120])
            assert m.get_many(keys) == [d.get(k) for k in keys]
        for code in "BHILQ":
            keys = array.array(code, [0, 3, 4, 120, 147])
            assert m.get_many(keys) == [d.get(k) for k in keys]
        assert m.get_many(array.array("Q", [2**64 - 1, 3])) == [None, 1]  # past int64: absent
        assert m.get_many(memoryview(array.array("q", [9, 12]))) == [3, 4]
        assert m.get_many(memoryview(array.array("q", [9, 1, 12, 1]))[::2]) == [3, 4]
        with pytest.raises(TypeError, match="integers or fixed-width bytes"):
            m.get_many(array.array("d", [1.0]))
        with pytest.raises(TypeError, match="one-dimensional"):
            m.get_many(memoryview(bytes(16)).cast("q", (2, 1)))


def test_a_buffer_of_int_keys_for_a_str_map_is_a_kind_error():
    for m in readers({"a": 1}):
        with pytest.raises(sharedmap.KeyKindError, match="str keys, got a buffer of int keys"):
            m.get_many(array.array("q", [1]))
        with pytest.raises(sharedmap.KeyKindError, match="str keys, got a buffer of int keys"):
            m.get_many(memoryview(b"ab"))  # a buffer of small ints, as iterating it gives


def test_numpy_keys_int64_and_fixed_width_bytes():
    np = pytest.importorskip("numpy")
    d = {i: i * i for i in range(1000)}
    for m in readers(d):
        keys = np.array([5, 999, 1000, -1, 5], dtype=np.int64)
        assert m.get_many(keys) == [25, 998001, None, None, 25]
        assert m.get_many(keys[::-2]) == [25, None, 25]
        assert m.get_many(np.arange(10, dtype=np.int32)) == [i * i for i in range(10)]
        assert m.get_many(np.array([], dtype=np.int64)) == []
    b = {b"ab": 1, b"a": 2, b"abc\0x": 3, b"": 4}
    for m in readers(b):
        keys = np.array([b"ab", b"a", b"abc\0x", b"zz", b""], dtype="S5")
        # NumPy strips trailing NULs: b"a" is stored as b"a\0\0\0\0" and read back as b"a"
        assert m.get_many(keys) == [1, 2, 3, None, 4]
        assert list(keys) == [b"ab", b"a", b"abc\0x", b"zz", b""]


def test_get_array_numbers():
    np = pytest.importorskip("numpy")
    d = {i: i * 10 for i in range(100)}
    d.update({1000 + i: i / 4 for i in range(10)})
    for m in readers(d):
        keys = np.array([1, 2, 99], dtype=np.int64)
        got = m.get_array(keys, "int64")
        assert got.dtype == np.int64 and got.tolist() == [10, 20, 990]
        assert m.get_array(keys, np.int32).dtype == np.int32
        assert m.get_array([1000, 1001, 3], "float64").tolist() == [0.0, 0.25, 30.0]
        assert m.get_array([1001], np.dtype("float32")).tolist() == [0.25]
        got = m.get_array([1, -5, 2], "float64", default=float("nan"))
        assert got[0] == 10 and np.isnan(got[1]) and got[2] == 20
        assert m.get_array([1, -5], "int64", default=-1).tolist() == [10, -1]
        assert m.get_array([], "int64").shape == (0,)
        with pytest.raises(KeyError) as e:
            m.get_array([1, -5], "int64")
        assert e.value.args == (-5,)
        with pytest.raises(TypeError, match="the value of key 1001 is not an int"):
            m.get_array([1, 1001], "int64")


def test_get_array_type_errors_name_the_key_for_str_and_bytes_maps():
    np = pytest.importorskip("numpy")
    for m in readers({"a": 1, "b": "text", "c": 2**40}):
        with pytest.raises(TypeError, match=r"the value of key 'b' is not a number"):
            m.get_array(["a", "b"], "float64")
        with pytest.raises(OverflowError, match="key 'c' does not fit in int32"):
            m.get_array(["c"], "int32")
        assert m.get_array(["c"], "int64").tolist() == [2**40]
    with pytest.raises(ValueError, match="unsupported dtype"):
        readers({"a": 1})[1].get_array(["a"], "complex128")
    with pytest.raises(ValueError, match="needs width"):
        readers({"a": 1})[1].get_array(["a"], "uint8")
    assert np  # used


def test_get_array_rows_of_an_embedding_table():
    np = pytest.importorskip("numpy")
    dim = 8
    table = np.random.default_rng(1).standard_normal((50, dim)).astype(np.float32)
    d = {i: table[i].tobytes() for i in range(50)}
    d[99] = b"short"
    d[98] = 7
    for m in readers(d):
        ids = np.array([3, 0, 49, 3], dtype=np.int64)
        rows = m.get_array(ids, "float32", width=dim)
        assert rows.shape == (4, dim) and rows.dtype == np.float32
        assert np.array_equal(rows, table[ids])
        rows = m.get_array([1, 500], "float32", width=dim, default=0.0)
        assert np.array_equal(rows[0], table[1]) and not rows[1].any()
        with pytest.raises(KeyError):
            m.get_array([500], "float32", width=dim)
        with pytest.raises(ValueError, match=r"the value of key 99 is not 32 bytes \(width 8 of float32\)"):
            m.get_array([1, 99], "float32", width=dim)
        with pytest.raises(TypeError, match="the value of key 98 is not bytes"):
            m.get_array([98], "float32", width=dim)
        as_f16 = m.get_array([5], "float16", width=2 * dim)  # the same bytes seen as 16 halves
        assert as_f16.tobytes() == table[5].tobytes()
        with pytest.raises(ValueError, match="at least 1"):
            m.get_array([1], "float32", width=0)


def test_get_array_into_a_buffer_of_ones_own_without_numpy():
    d = {i: i + 0.5 for i in range(10)}
    for m in readers(d):
        out = bytearray(8 * 3)
        assert m.get_array([1, 2, 3], "float64", out=out) is out
        assert array.array("d", bytes(out)).tolist() == [1.5, 2.5, 3.5]
        out = array.array("d", [0.0] * 2)
        assert m.get_array(array.array("q", [9, 0]), "float64", out=out) is out
        assert out.tolist() == [9.5, 0.5]
        with pytest.raises(ValueError, match="out must be a C-contiguous buffer of 3 float64"):
            m.get_array([1, 2, 3], "float64", out=bytearray(16))
        with pytest.raises(ValueError, match="format 'd'"):
            m.get_array([1, 2], "float64", out=array.array("q", [0, 0]))
        with pytest.raises(BufferError):
            m.get_array([1], "float64", out=bytes(8))  # not writable


def test_get_array_without_numpy_says_what_to_do():
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import sharedmap\n"
        "m = sharedmap.loads(sharedmap.rbtree({1: 2}).dump())\n"
        "out = bytearray(8); m.get_array([1], 'int64', out=out); assert out == (2).to_bytes(8, 'little')\n"
        "try:\n    m.get_array([1], 'int64')\nexcept ImportError as e:\n    print(e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs NumPy" in res.stdout and "out=" in res.stdout


def test_big_batches_release_the_gil_and_hold_their_keys():
    # 60,000 keys: the lookups run without the GIL.  Another thread swaps the list's contents
    # meanwhile; the batch must be one of the two lists whole, with every key alive.
    n = 30_000
    d = {f"k{i}": i for i in range(n)}
    m = sharedmap.loads(sharedmap.rbtree(d).dump())
    a = [f"k{random.randrange(2 * n)}" for _ in range(2 * n)]
    b = [f"k{random.randrange(2 * n)}x" for _ in range(2 * n)]  # all missing
    keys = list(a)
    stop = threading.Event()
    swaps = []

    def other():
        while not stop.is_set():
            keys[:] = b if keys[0] == a[0] else a
            swaps.append(1)

    t = threading.Thread(target=other)
    t.start()
    try:
        results = [m.get_many(keys) for _ in range(20)]
    finally:
        stop.set()
        t.join()
    from_a, from_b = [d.get(k) for k in a], [None] * len(b)
    assert all(r == from_a or r == from_b for r in results)
    assert swaps


def test_close_in_another_thread_during_a_big_batch():
    n = 20_000
    w = sharedmap.rbtree({i: i for i in range(n)})
    for _ in range(3):
        m = sharedmap.loads(w.dump())
        keys = list(range(4 * n))
        t = threading.Thread(target=m.close)
        t.start()
        try:
            got = m.get_many(keys)
        except ValueError as e:  # closed before get_many took its snapshot
            assert "closed" in str(e)
        else:
            assert got == [k if k < n else None for k in keys]
        t.join()


def test_a_corrupt_snapshot_is_an_error_not_a_crash():
    d = {f"key{i}": i / 2 for i in range(200)}
    raw = bytearray(sharedmap.rbtree(d).dump())
    records_end = int.from_bytes(raw[88:96], "little")
    # the key length of every record of a key1* key broken: klen, then a 2-byte vword (8 << 4
    # | 4); klen made a varint that goes on into the next bytes, a key far past the end
    for i in range(128, records_end):
        if raw[i : i + 4] == b"key1":
            raw[i - 3] = 0xFF
    m = sharedmap.loads(bytes(raw))
    keys = list(d)
    with pytest.raises(sharedmap.CorruptSnapshotError):
        m.get_many(keys)
    with pytest.raises(sharedmap.CorruptSnapshotError):
        m.get_array(keys, "float64", default=0.0, out=bytearray(8 * len(keys)))  # no NumPy needed
    # keys whose records are whole still answer, one by one and in a batch
    whole = [k for k in keys if not k.startswith("key1")]
    assert m.get_many(whole) == [d[k] for k in whole]


def test_rbtree_in_use_by_another_thread_refuses_a_batch():
    w = sharedmap.rbtree({i: i for i in range(200_000)})
    errors = []
    done = threading.Event()

    def dump():
        w.dump()
        done.set()

    t = threading.Thread(target=dump)
    t.start()
    while not done.is_set():
        try:
            assert w.get_many([1, 2]) == [1, 2]
        except RuntimeError as e:
            errors.append(e)
    t.join()
    assert all("in use by another thread" in str(e) for e in errors)


# ---- regressions found by a second reader of get_many and int keys


def test_pop_of_an_int_key_deletes_that_key():
    # builder_lookup handed back a copy of the parsed key whose bytes were in its own frame
    w = sharedmap.rbtree({i: i * 10 for i in range(10)})
    assert w.pop(3) == 30 and w.pop(I64_MAX, "none") == "none"
    assert list(w) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    w[I64_MIN] = "min"
    assert w.pop(I64_MIN) == "min" and w.popitem() == (9, 90) and len(w) == 8


def test_sizes_that_overflow_are_errors_not_overflows():
    m = sharedmap.loads(sharedmap.rbtree({1: b"\0" * 8}).dump())
    with pytest.raises(OverflowError, match="too large"):
        m.get_array([1], "int64", default=0, width=2**61)
    with pytest.raises((MemoryError, ValueError)):
        m.get_array([1], "int8", default=0, width=2**40, out=bytearray(8))
    np = pytest.importorskip("numpy")
    huge = np.broadcast_to(np.int8(1), (2**61,))  # stride 0: any length, no memory
    with pytest.raises(MemoryError):
        m.get_many(huge)
    with pytest.raises(MemoryError):
        m.get_array(huge, "int64", out=bytearray(0))


def test_a_collection_during_an_rbtree_batch_cannot_free_its_values():
    import gc

    b = sharedmap.rbtree({b"k%d" % i: b"value-%d-" % i * 8 for i in range(100)})
    keys = tuple(b"k%d" % i for i in range(100))
    fired = []

    def cb(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            b.clear()  # frees every entry; the batch goes on with what it finds after
            for i in range(1000):
                b[b"x%d" % i] = b"Z" * 200

    threshold = gc.get_threshold()
    gc.callbacks.append(cb)
    gc.set_threshold(1)
    try:
        got = b.get_many(keys)
    finally:
        gc.callbacks.remove(cb)
        gc.set_threshold(*threshold)
    # each value is either the one the key had, or None once the rbtree was emptied
    assert all(v in (b"value-%d-" % i * 8, None) for i, v in enumerate(got))


def _slot_of(data, key_bytes):
    """(slot index, record offset) of the record of an int map whose key is key_bytes."""
    import struct

    table, slots = struct.unpack_from("<Q", data, 72)[0], struct.unpack_from("<Q", data, 64)[0]
    for s in range(slots):
        off = struct.unpack_from("<Q", data, table + 8 * s)[0] & ((1 << 48) - 1)
        if off and data[off + 2 : off + 10] == key_bytes:
            return table + 8 * s, off
    raise AssertionError("no such key")


def _damage_slot(data, key_bytes):
    """Point the slot of that record at offset 100, below the records (R10)."""
    at, _ = _slot_of(data, key_bytes)
    data[at : at + 6] = (100).to_bytes(6, "little")


def test_ints_beyond_int64_are_missing_even_where_their_stand_in_is_damaged():
    data = bytearray(sharedmap.rbtree({i: "v%d" % i for i in range(-25, 25)}).dump())
    _damage_slot(data, (2**63 - 1).to_bytes(8, "big"))  # the key -1
    m = sharedmap.loads(bytes(data))
    with pytest.raises(sharedmap.CorruptSnapshotError):
        m.get(-1)
    assert m.get(2**64) is None and m.get_many([2**64]) == [None]
    assert m.get_many([5, 2**64, -(2**63) - 1]) == ["v5", None, None]
    assert m.get_many(array.array("Q", [2**64 - 1])) == [None]
    assert m.get_array([2**64], "int64", default=-1).tolist() == [-1] if _has_numpy() else True


def _has_numpy():
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def test_errors_come_in_the_order_of_the_keys():
    data = bytearray(sharedmap.rbtree({1: "abc", 2: "xyz", 3: "q"}).dump())
    _, off = _slot_of(data, (1 + 2**63).to_bytes(8, "big"))
    data[off + 10] = 0xFF  # the value of key 1: invalid UTF-8
    _damage_slot(data, (2 + 2**63).to_bytes(8, "big"))
    m = sharedmap.loads(bytes(data))
    for keys in ([1, 2], [3, 1, 2]):
        with pytest.raises(UnicodeDecodeError):
            [m.get(k) for k in keys]
        with pytest.raises(UnicodeDecodeError):
            m.get_many(keys)
    with pytest.raises(sharedmap.CorruptSnapshotError):
        m.get_many([3, 2, 1])


def test_a_missing_unsigned_key_is_named_as_given():
    m = sharedmap.loads(sharedmap.rbtree({1: 1}).dump())
    out = bytearray(8)
    for k in (2**64 - 1, 2**63):
        with pytest.raises(KeyError) as e:
            m.get_array(array.array("Q", [k]), "int64", out=out)
        assert e.value.args == (k,)


def test_an_int_beyond_int64_into_a_str_rbtree_is_a_kind_error():
    w = sharedmap.rbtree({"a": 1})
    with pytest.raises(sharedmap.KeyKindError, match="this map has str keys, got int"):
        w[2**70] = 1


def test_one_bytes_or_bytearray_is_not_a_batch():
    for m in readers({b"a": 1}) + readers({1: 1}):
        for one in (b"ab", bytearray(b"ab"), "ab"):
            with pytest.raises(TypeError, match="takes an iterable of keys, not one"):
                m.get_many(one)
            with pytest.raises(TypeError, match="takes an iterable of keys, not one"):
                m.get_array(one, "int64", default=0)
    assert readers({1: 1})[1].get_many(memoryview(b"\x01")) == [1]  # a buffer of small ints


def test_errors_leak_no_references():
    import sys as _sys

    m = sharedmap.loads(sharedmap.rbtree({1: 1}).dump())
    w = sharedmap.rbtree({"a": 1})
    if not hasattr(_sys, "gettotalrefcount"):  # a release build: count objects instead
        import gc

        def live():
            gc.collect()
            return len(gc.get_objects())
    else:
        live = _sys.gettotalrefcount
    for f in (lambda: m.get_many(["a"]), lambda: w.get_many(array.array("q", [1])),
              lambda: w.__setitem__(2**70, 1)):
        for _ in range(100):
            with pytest.raises(TypeError):
                f()
        before = live()
        for _ in range(1000):
            with pytest.raises(TypeError):
                f()
        assert live() - before < 50
