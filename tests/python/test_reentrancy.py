"""Python code that runs in the middle of a method (issue 10, findings 1 and 2): a path's
__fspath__ that starts another thread's dump(), an __index__ that closes or refreshes the
reader, a garbage collection (started by an allocation inside a method, Python <= 3.11) whose
callback closes the reader.  Each must give a clear error or a right answer, never a crash or
a use after free (these tests also run against the ASan build of `make test`)."""
import collections.abc
import gc
import os
import sys

import pytest

import sharedmap
from support import run_python


@pytest.fixture
def reader(name):
    sharedmap.rbtree({f"k{i:03d}": f"v{i}" for i in range(100)}).share(name)
    return sharedmap.sharedmap(name)


# ---- finding 1: arguments converted before the builder's busy guard

SAVE_RACES_DUMP = """
import sys, threading, time
import sharedmap

b = sharedmap.rbtree({f"k{i:08d}": "v" * 20 for i in range(200_000)})
done = {}

def dumper():
    done["dump"] = b.dump()

def busy():
    try:
        b.get("k")
    except RuntimeError:
        return True
    return False

class Path:
    def __fspath__(self):
        # runs inside save(): another thread takes the builder for dump() meanwhile
        t = done["thread"] = threading.Thread(target=dumper)
        t.start()
        deadline = time.monotonic() + 20
        while not busy():
            if time.monotonic() > deadline:
                sys.exit("dump() never started")
            time.sleep(0.0005)
        return sys.argv[1]

try:
    b.{method}
    print("no error")
except RuntimeError as e:
    print("RuntimeError:", e)
done["thread"].join()
assert sharedmap.loads(done["dump"]).verify()
"""


@pytest.mark.parametrize("method", ["save(Path())", "save(Path(), force=True)"])
def test_save_whose_fspath_starts_a_dump_is_a_runtimeerror_not_a_corruption(tmp_path, method):
    path = tmp_path / "out.snap"
    proc = run_python(SAVE_RACES_DUMP.replace("{method}", method), str(path))
    assert proc.stdout.startswith("RuntimeError: rbtree is in use by another thread"), proc.stdout
    assert not path.exists()


def test_share_converts_its_arguments_before_taking_the_builder(name):
    # mode's __index__ runs while arguments are parsed, before the guard: it may use the builder
    b = sharedmap.rbtree(a=1)

    class Mode:
        def __index__(self):
            b["b"] = 2  # allowed: the builder is not busy yet
            return 0o600

    assert b.share(name, mode=Mode())
    assert dict(sharedmap.sharedmap(name)) == {"a": 1, "b": 2}


# ---- finding 2: no borrowed snapshot across Python code


def test_peekitem_whose_index_closes_the_reader(reader):
    class Index:
        def __index__(self):
            reader.close()
            return 0

    with pytest.raises(ValueError, match="closed"):
        reader.peekitem(Index())


def test_peekitem_whose_index_refreshes_the_reader_reads_the_new_version(reader, name):
    class Index:
        def __index__(self):
            sharedmap.rbtree({"new": "version"}).share(name, force=True)
            assert reader.refresh()
            return 0

    assert reader.peekitem(Index()) == ("new", "version")


@pytest.mark.parametrize("position", [1, 2])
def test_index_whose_bounds_close_the_reader(reader, position):
    class Index:
        def __index__(self):
            reader.close()
            return 0

    args = ["k005", 0, 100]
    args[position] = Index()
    with pytest.raises(ValueError, match="closed"):
        reader.index(*args)


def test_index_whose_bounds_refresh_the_reader_answers_for_the_new_version(reader, name):
    class Index:
        def __index__(self):
            sharedmap.rbtree({"k005": 1}).share(name, force=True)
            assert reader.refresh()
            return 0

    assert reader.index("k005", Index()) == 0


def test_irange_whose_inclusive_closes_the_reader(reader):
    class Flag:
        def __bool__(self):
            reader.close()
            return True

    with pytest.raises(ValueError, match="closed"):
        reader.irange("k001", "k005", inclusive=(Flag(), True))


def test_eq_whose_other_mapping_closes_the_reader_compares_the_version_it_started_with(reader):
    expected = dict(reader.items())

    class Other(collections.abc.Mapping):
        def __getitem__(self, key):
            reader.close()
            return expected[key]

        def __len__(self):
            return len(expected)

        def __iter__(self):
            return iter(expected)

    assert reader == Other()
    assert reader.closed


# ---- allocations that run a collection whose callback closes the reader

KEYS = [f"k{i:03d}" for i in range(100)]
CALLS = {  # the call, then how its result is read (after the collection)
    "iter": (lambda m: iter(m), list, KEYS),
    "reversed": (lambda m: reversed(m), list, KEYS[::-1]),
    "keys": (lambda m: m.keys(), list, KEYS),
    "values": (lambda m: m.values(), list, [f"v{i}" for i in range(100)]),
    "items": (lambda m: m.items(), lambda v: [k for k, _ in v], KEYS),
    "copy": (lambda m: m.copy(), list, KEYS),
    "irange": (lambda m: m.irange("k000", "k099"), list, KEYS),
    "prefix": (lambda m: m.prefix("k"), list, KEYS),
    "prefix_items": (lambda m: m.prefix_items("k"), lambda v: [k for k, _ in v], KEYS),
    "peekitem": (lambda m: m.peekitem(0), list, ["k000", "v0"]),
    "getbuffer": (lambda m: m.getbuffer("k000"), lambda v: bytes(v), b"v0"),
    "reduce": (lambda m: m.__reduce__(), lambda r: r[1], None),
}


@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="from 3.12 a collection runs between bytecodes, never inside an allocation",
)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_collection_inside_a_method_that_closes_the_reader(name, call):
    """The k-th object the collector counts after the call begins starts a collection, for k =
    1, 2, ...: one of them is an allocation inside the method, with the snapshot in hand."""
    method, read, expected = CALLS[call]
    sharedmap.rbtree({f"k{i:03d}": f"v{i}" for i in range(100)}).share(name)
    old = gc.get_threshold()
    inside = 0
    for k in range(1, 12):
        m = sharedmap.sharedmap(name)
        state = {"armed": False}

        def close_it(phase, info, m=m, state=state):
            if phase == "start" and state["armed"]:
                state["armed"] = False
                m.close()

        gc.callbacks.append(close_it)
        try:
            gc.collect()
            pad = []  # noqa: F841  the collector counts 1: the k-th allocation from here collects
            gc.set_threshold(k)
            state["armed"] = True
            try:
                result = method(m)
            except ValueError as e:  # the collection closed it before the method began
                assert "closed" in str(e)
                continue
            finally:
                gc.set_threshold(*old)
                state["armed"] = False
        finally:
            gc.callbacks.remove(close_it)
        if m.closed:  # closed inside the method, which went on with the snapshot it held
            inside += 1
            if expected is not None:
                assert read(result) == expected
    assert inside > 0, "no collection ran inside the method: the test proves nothing"


# ---- the rbtree's own conversions (a second reader's findings)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="bytearray subclasses run __buffer__ from 3.12")
def test_a_value_whose_buffer_empties_the_source_dict_keeps_its_key():
    source = {}

    class Evil(bytearray):
        def __buffer__(self, flags):
            source.clear()  # drops the only other reference to the key
            self.junk = ["Z" * 40 + str(i) for i in range(2000)]  # reuses the freed memory
            return super().__buffer__(flags)

    key = "".join(["k"] * 41)  # made at run time: only the dict refers to it
    source[key] = Evil(b"value")
    del key
    w = sharedmap.rbtree()
    w.update(source)
    assert list(w.items()) == [("k" * 41, b"value")]


BUFFER_STARTS_A_DUMP = """
import sys, threading, time
import sharedmap

w = sharedmap.rbtree({f"k{i:08d}": "v" for i in range(200_000)})
done = {}

class Evil(bytearray):
    def __buffer__(self, flags):
        t = done["t"] = threading.Thread(target=lambda: done.setdefault("dump", w.dump()))
        t.start()
        while True:  # until dump() has the builder
            try:
                w.get("k")
            except RuntimeError:
                break
            time.sleep(0.0005)
        return super().__buffer__(flags)

try:
    w["new"] = Evil(b"x")
    print("no error")
except RuntimeError as e:
    print("RuntimeError:", e)
done["t"].join()
assert sharedmap.loads(done["dump"]).verify()
"""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="bytearray subclasses run __buffer__ from 3.12")
def test_a_value_whose_buffer_starts_a_dump_is_a_runtimeerror_not_a_corruption():
    proc = run_python(BUFFER_STARTS_A_DUMP)
    assert proc.stdout.startswith("RuntimeError: rbtree is in use"), proc.stdout


POPITEM_COLLECTS = """
import gc, threading, time
import sharedmap

w = sharedmap.rbtree({"k%07d" % i: i for i in range(300_000)})
state = {"armed": False, "threads": []}

def callback(phase, info):
    if state["armed"] and phase == "start":
        state["armed"] = False
        t = threading.Thread(target=lambda: state.setdefault("dump", w.dump()))
        state["threads"].append(t)
        t.start()
        time.sleep(0.002)

gc.callbacks.append(callback)
drain = [(i, -i) for i in range(5000)]  # empties the 2-tuple free list
popped = []
gc.set_threshold(1)
for _ in range(2000):
    state["armed"] = True
    try:
        popped.append(w.popitem())
    except RuntimeError:
        pass  # the dump started by an earlier collection has the builder: refused, fine
    state["armed"] = False
    if state["threads"]:
        break
gc.set_threshold(700)
for t in state["threads"]:
    t.join()
m = sharedmap.loads(state["dump"])
assert m.verify()
assert len(w) + len(popped) == 300_000
assert not any(k in w for k, _ in popped)
print("collections inside popitem:", len(state["threads"]))
"""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="from 3.12 a collection never runs inside an allocation")
def test_popitem_whose_tuple_starts_a_collection_that_dumps_leaves_a_consistent_rbtree():
    proc = run_python(POPITEM_COLLECTS)
    assert "collections inside popitem: 1" in proc.stdout, proc.stdout
