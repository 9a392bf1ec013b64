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
