"""Delta layers from Python (issue 14): sharedmap.edit() / Editor / compact(), checked against a
dict model through every read op across commits and compactions, the Editor's API and errors,
ConflictError, and real processes: readers attaching while an editor publishes and compacts,
concurrent editors, editors SIGKILLed mid-commit, a base removed or replaced under a layer."""
import bisect
import ctypes
import json
import mmap
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, strategies as st

import sharedmap
from sharedmap import _sharedmap
from support import (SHM_DIR, child_env, finish, run_python, same_items, same_value, spawn_python,
                     tell, unique_name)

EBASE = _sharedmap.ERROR_CODES["SM_EBASE"]
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def files_of(name, directory=SHM_DIR, file=None):
    """Everything in directory that belongs to the name (or file): the map itself, its bases,
    its edit lock, temporaries of it (hidden files included: glob would skip them)."""
    file = file or f"sharedmap.{name}"
    return sorted(f for f in os.listdir(directory) if f == file or f.endswith("." + file))


def bases_of(name, directory=SHM_DIR, file=None):
    return [f for f in files_of(name, directory, file) if f.startswith(".sharedmap-base.")]


# ---- a reader against a dict model, through every read op


def sort_key(kind):
    return (lambda k: k.encode()) if kind == "str" else None


def absent_probes(kind, model):
    pool = {
        "str": ["", "a", "a\x00", "\x00", "zz", "é", "日本", "\U0001F600", "k5", "ÿ"],
        "bytes": [b"", b"\x00", b"a", b"\xff", b"\xff\xff", b"k5", b"ab\x00"],
        "int": [I64_MIN, I64_MIN + 1, -1, 0, 1, 7, I64_MAX - 1, I64_MAX],
    }[kind]
    return [k for k in pool if k not in model]


def check_reader(m, model, kind):
    """m answers exactly as the dict model (keys of kind) through every read op."""
    keys = sorted(model, key=sort_key(kind))
    items = [(k, model[k]) for k in keys]
    assert len(m) == len(model)
    assert list(m) == keys and list(reversed(m)) == keys[::-1]
    assert list(m.keys()) == keys
    assert same_items(zip(keys, m.values()), items)
    assert same_items(m.items(), items)
    assert m == model and not (m != model)
    absent = absent_probes(kind, model)
    for k, v in items:
        assert same_value(m[k], v) and same_value(m.get(k), v) and k in m
    for k in absent:
        assert k not in m and m.get(k) is None and m.get(k, "dflt") == "dflt"
        with pytest.raises(KeyError):
            m[k]
    probes = keys + absent
    got = m.get_many(probes, "dflt")
    assert all(same_value(g, model.get(k, "dflt")) for g, k in zip(got, probes))
    assert [g is None for g in m.get_many(absent)] == [True] * len(absent)
    # ordered queries, against bisect over the sorted keys
    enc = sort_key(kind) or (lambda k: k)
    ekeys = [enc(k) for k in keys]
    for k in probes:
        assert m.bisect_left(k) == bisect.bisect_left(ekeys, enc(k))
        assert m.bisect_right(k) == bisect.bisect_right(ekeys, enc(k))
    for i, k in enumerate(keys):
        assert m.index(k) == i
    for k in absent[:2]:
        with pytest.raises(ValueError):
            m.index(k)
    if keys:
        for i in {0, len(keys) // 2, len(keys) - 1, -1, -len(keys)}:
            assert same_items([m.peekitem(i)], [items[i]])
        assert same_items([m.peekitem()], [items[-1]])
    with pytest.raises(IndexError):
        m.peekitem(len(keys))
    bounds = sorted(set(probes), key=enc)
    rng = random.Random(len(keys))
    pairs = [(None, None)] + [tuple(sorted(rng.sample(bounds, 2), key=enc)) for _ in range(3)
                              if len(bounds) >= 2]
    pairs += [(bounds[0], None), (None, bounds[-1])] if bounds else []
    for lo, hi in pairs:
        for inc in [(True, True), (False, False), (True, False), (False, True)]:
            want = [k for k in keys
                    if (lo is None or (enc(k) >= enc(lo) if inc[0] else enc(k) > enc(lo)))
                    and (hi is None or (enc(k) <= enc(hi) if inc[1] else enc(k) < enc(hi)))]
            assert list(m.irange(lo, hi, inclusive=inc)) == want
            assert list(m.irange(lo, hi, inclusive=inc, reverse=True)) == want[::-1]
    if kind != "int":
        prefixes = {k[:n] for k in probes for n in (0, 1, 2)}
        for p in prefixes:
            want = [k for k in keys if enc(k).startswith(enc(p))]
            assert list(m.prefix(p)) == want
            assert same_items(m.prefix_items(p), [(k, model[k]) for k in want])
    for k, v in items:
        if isinstance(v, (bytes, str)):
            with m.getbuffer(k) as mv:
                assert bytes(mv) == (v if isinstance(v, bytes) else v.encode())
        else:
            with pytest.raises(TypeError):
                m.getbuffer(k)
    for k in absent[:1]:
        with pytest.raises(KeyError):
            m.getbuffer(k)
    assert m.verify() is True


# ---- hypothesis: random edit sequences across commits and compactions

KEYS = {
    "str": st.one_of(st.sampled_from(["", "a", "ab", "é", "日本", "a\x00", "z", "ß", "\U0001F600"]),
                     st.text(st.characters(blacklist_categories=("Cs",)), max_size=4)),
    "bytes": st.one_of(st.sampled_from([b"", b"\x00", b"\xff", b"a", b"ab", b"\x80\x00"]),
                       st.binary(max_size=4)),
    "int": st.one_of(st.sampled_from([I64_MIN, I64_MAX, -1, 0, 1, -(2**31), 2**32]),
                     st.integers(-1000, 1000), st.integers(I64_MIN, I64_MAX)),
}
VALUES = st.one_of(st.text(max_size=8), st.binary(max_size=8), st.integers(I64_MIN, I64_MAX),
                   st.floats(allow_nan=False), st.booleans(), st.none())


def ops_of(keys):
    op = st.one_of(
        st.tuples(st.just("set"), keys, VALUES),
        st.tuples(st.just("del"), keys),
        st.tuples(st.just("pop"), keys),
        st.tuples(st.just("setdefault"), keys, VALUES),
        st.tuples(st.just("update"), st.dictionaries(keys, VALUES, max_size=3)),
        st.tuples(st.just("probe"), keys),
        st.tuples(st.just("popitem")),
    )
    return st.lists(op, max_size=12)


def apply_op(e, model, op, touched):
    """One op on the Editor e and on the dict model alike; answers compared."""
    kind, key = op[0], op[1] if len(op) > 1 else None
    if kind == "set":
        e[key] = op[2]
        model[key] = op[2]
        touched.add(key)
    elif kind in ("del", "pop"):
        if key in model:
            if kind == "del":
                del e[key]
            else:
                assert same_value(e.pop(key), model[key])
            del model[key]
            touched.add(key)
        else:
            with pytest.raises(KeyError):
                if kind == "del":
                    del e[key]
                else:
                    e.pop(key)
            assert e.pop(key, "dflt") == "dflt"
    elif kind == "setdefault":
        if key not in model:
            touched.add(key)
        want = model.setdefault(key, op[2])
        assert same_value(e.setdefault(key, op[2]), want)
    elif kind == "update":
        e.update(op[1])
        model.update(op[1])
        touched.update(op[1])
    elif kind == "popitem":   # MutableMapping's: the first key in iteration order
        if model:
            k, v = e.popitem()
            first = min(model, key=sort_key("str" if isinstance(k, str) else None))
            assert k == first and same_value(v, model.pop(k))
            touched.add(k)
        else:
            with pytest.raises(KeyError):
                e.popitem()
    else:
        assert (key in e) == (key in model)
        assert same_value(e.get(key, "dflt"), model.get(key, "dflt"))


def check_editor(e, model, kind):
    keys = sorted(model, key=sort_key(kind))
    assert len(e) == len(model)
    assert list(e) == keys
    assert same_items(e.items(), [(k, model[k]) for k in keys])
    assert list(e.keys()) == keys and same_items(zip(keys, e.values()), e.items())
    assert e == model and len(e.keys()) == len(model)
    assert all(k in e and same_value(e[k], model[k]) for k in keys)
    assert all(k not in e and e.get(k) is None for k in absent_probes(kind, model))


def run_sequence(kind, initial, commits):
    """Publish initial, then per commit: an Editor (compact_at chosen per commit) applies the
    ops; after each commit a fresh reader and a refreshed attached one answer as the model, and
    info()['layer'] says what the commit wrote."""
    name = unique_name("-hyp")
    try:
        sharedmap.rbtree(initial).share(name)
        model, base = dict(initial), dict(initial)   # base: the map at the last compaction
        since = set()              # keys set or deleted since the last compaction
        layered = False
        attached = sharedmap.sharedmap(name)
        check_reader(attached, model, kind)
        for how, ops in commits:
            ratio = {"never": None, "always": 0, "default": 0.1, "compact": None}[how]
            touched = set()
            with sharedmap.edit(name, compact_at=ratio) as e:
                for op in ops:
                    apply_op(e, model, op, touched)
                check_editor(e, model, kind)
                assert e.changes == len(touched)
            since |= touched
            # the new delta: every key touched since the base that the base or the map has
            delta = len([k for k in since if k in base or k in model])
            want_compacted = bool(touched) and ratio is not None and delta > ratio * len(base)
            assert e.compacted is want_compacted and e.closed
            # changes that cancel out over a plain map publish nothing
            published = bool(touched) and (want_compacted or layered or delta > 0)
            if published:
                layered = not want_compacted
            if how == "compact":
                assert sharedmap.compact(name) == len(model)
                want_compacted, layered = True, False
            if want_compacted:
                base, since = dict(model), set()
            m = sharedmap.sharedmap(name)
            layer = m.info()["layer"]
            if layered:
                assert layer is not None and layer["base_entries"] == len(base)
                assert layer["delta_records"] == delta
                assert bases_of(name) == [layer["base_file"]]
            else:
                assert layer is None and bases_of(name) == []
            check_reader(m, model, kind)
            assert attached.refresh() is (published or how == "compact")
            assert attached.refresh() is False
            check_reader(attached, model, kind)
    finally:
        sharedmap.rbtree.remove(name)
    assert files_of(name) == []


PAD = {"str": lambda i: f"pad{i:03d}", "bytes": lambda i: b"pad%03d" % i,
       "int": lambda i: i * 1_000_003 - 30_000_000}


@pytest.mark.parametrize("kind", ["str", "bytes", "int"])
@given(data=st.data())
def test_edit_sequences_read_as_the_model(kind, data):
    keys = KEYS[kind]
    initial = data.draw(st.dictionaries(keys, VALUES, max_size=15), label="initial")
    # sometimes a base big enough that the default compact_at leaves several commits as deltas
    pad = data.draw(st.sampled_from([0, 0, 60]), label="pad")
    initial.update({PAD[kind](i): i for i in range(pad)})
    commits = data.draw(st.lists(st.tuples(st.sampled_from(["never", "always", "default", "compact"]),
                                           ops_of(keys)), min_size=1, max_size=5), label="commits")
    run_sequence(kind, initial, commits)


@pytest.mark.parametrize("kind", ["str", "bytes", "int"])
def test_delete_everything_then_reinsert(kind):
    """Every key deleted in a delta (count 0 over a full base), then re-inserted with new values
    and types, never compacting: the layer reads as the model throughout."""
    ks = {"str": ["", "a", "é", "日本"], "bytes": [b"", b"\x00", b"\xff"],
          "int": [I64_MIN, -1, 0, I64_MAX]}[kind]
    initial = {k: i for i, k in enumerate(ks)}
    commits = [("never", [("del", k) for k in ks]),
               ("never", [("set", k, v) for k, v in zip(ks, ["x", b"y", 1.5, None])]),
               ("never", [("del", ks[0]), ("set", ks[0], True), ("del", ks[1])]),
               ("always", [("set", ks[1], False)])]
    run_sequence(kind, initial, commits)


@pytest.mark.parametrize("base", [{}, {"b": 1, "c": 2, "d": 3}])
def test_new_keys_below_every_base_key(name, base):
    """The first entries of the map all new in the delta (ranks 0.. only the delta has): every
    ordered op from rank 0 finds them (the rank seek did not, once, over an empty base too)."""
    sharedmap.rbtree(base).share(name)
    with sharedmap.edit(name, compact_at=None) as e:
        e["a"] = 0
        e["a0"] = b"zero"
    model = {**base, "a": 0, "a0": b"zero"}
    m = sharedmap.sharedmap(name)
    assert m.info()["layer"]["delta_records"] == 2
    check_reader(m, model, "str")


def test_getbuffer_of_a_value_in_the_base(name):
    """A layered map's values live in two files: getbuffer() of one in the base is its bytes
    too, not an empty view (nor one of the layer file's bytes)."""
    sharedmap.rbtree({"a": "in base", "b": b"base bytes", "c": "x"}).share(name)
    with sharedmap.edit(name, compact_at=None) as e:
        e["c"] = "in delta"
    m = sharedmap.sharedmap(name)
    assert m.info()["layer"] is not None
    assert bytes(m.getbuffer("a")) == b"in base"
    assert bytes(m.getbuffer("b")) == b"base bytes"
    assert bytes(m.getbuffer("c")) == b"in delta"
    view = m.getbuffer("b")
    m.close()   # the view keeps the mapping (of the base too)
    assert view.readonly and bytes(view) == b"base bytes"


# ---- the Editor's API

HOLD_EDIT = """
import sys, sharedmap
e = sharedmap.edit(sys.argv[1])
e["held"] = 1
print("holding", flush=True)
sys.stdin.readline()
e.discard() if sys.argv[2] == "discard" else e.commit()
print("done", flush=True)
"""


def test_wait_false_while_another_process_edits(name):
    sharedmap.rbtree(a=1).share(name)
    with spawn_python(HOLD_EDIT, name, "commit") as child:
        assert child.stdout.readline().strip() == "holding"
        with pytest.raises(BlockingIOError):
            sharedmap.edit(name, wait=False)
        with pytest.raises(BlockingIOError):
            sharedmap.compact(name, wait=False)
        tell(child)
        assert finish(child).split() == ["done"]
    with sharedmap.edit(name, wait=False) as e:   # free again
        assert e["held"] == 1
        e["b"] = 2
    assert sharedmap.sharedmap(name) == {"a": 1, "held": 1, "b": 2}


def test_a_waiting_editor_sees_the_commit_it_waited_for(name):
    sharedmap.rbtree(n=0).share(name)
    with spawn_python(HOLD_EDIT, name, "commit") as child:
        assert child.stdout.readline().strip() == "holding"
        waiter = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent("""
                import sys, sharedmap
                with sharedmap.edit(sys.argv[1]) as e:   # waits for the holder
                    e["n"] = e["n"] + 1
                    e["saw_held"] = "held" in e
            """), name], env=child_env(), stderr=subprocess.PIPE, text=True)
        tell(child)
        finish(child)
        _, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
    assert sharedmap.sharedmap(name) == {"n": 1, "held": 1, "saw_held": True}


def test_an_exception_in_the_block_publishes_nothing(name):
    sharedmap.rbtree(a=1).share(name)
    m = sharedmap.sharedmap(name)
    with pytest.raises(ZeroDivisionError):
        with sharedmap.edit(name) as e:
            e["b"] = 2
            del e["a"]
            1 / 0
    assert e.closed and not e.compacted
    assert m.refresh() is False and m == {"a": 1} and m.info()["layer"] is None
    assert sharedmap.sharedmap(name) == {"a": 1}
    with sharedmap.edit(name, wait=False) as e2:   # the lock went with the discard
        assert "b" not in e2
    e3 = sharedmap.edit(name)
    e3["x"] = 1
    e3.discard()
    e3.discard()  # a spent edit: nothing
    assert sharedmap.sharedmap(name) == {"a": 1}
    with pytest.raises(ValueError, match="discarded"):
        e3["y"] = 2


def test_commit_result_compacted_and_a_spent_editor(name):
    sharedmap.rbtree({f"k{i:02d}": i for i in range(50)}).share(name)
    e = sharedmap.edit(name)
    e["k00"] = "changed"
    assert e.changes == 1 and not e.closed and "1 changes" in repr(e)
    assert e.commit() is False and e.compacted is False and e.closed
    assert "committed" in repr(e)
    for use in [lambda: e["k00"], lambda: e.get("k00"), lambda: len(e), lambda: "k00" in e,
                lambda: e.__setitem__("z", 1), lambda: e.__delitem__("k01"), lambda: iter(e),
                e.commit, lambda: e.changes, lambda: e.__enter__()]:
        with pytest.raises(ValueError, match="committed"):
            use()
    e.discard()  # nothing
    e = sharedmap.edit(name, compact_at=0)
    e["k01"] = "also"
    assert e.commit() is True and e.compacted is True
    m = sharedmap.sharedmap(name)
    assert m.info()["layer"] is None and m["k00"] == "changed" and m["k01"] == "also"
    # an edit without changes publishes nothing
    with sharedmap.edit(name, compact_at=0) as e:
        assert e["k02"] == 2
    assert e.compacted is False and m.refresh() is False
    assert e.name == name and e.path is None and e.key_kind == "str"


def test_key_kinds_and_int64(name, new_name):
    sharedmap.rbtree(a=1).share(name)
    with sharedmap.edit(name) as e:
        with pytest.raises(sharedmap.KeyKindError):
            e[1] = 2
        with pytest.raises(TypeError):
            e[b"a"] = 2
        with pytest.raises(TypeError):
            e[1.5] = 2
        with pytest.raises(TypeError):
            e["v"] = object()
        # lookups of another kind are the reader's KeyKindError too
        for probe in (lambda: e.get(1), lambda: 1 in e, lambda: e[b"a"],
                      lambda: e.__delitem__(1)):
            with pytest.raises(sharedmap.KeyKindError):
                probe()
        assert e.changes == 0 and e["a"] == 1
    ints = new_name()
    sharedmap.rbtree({0: 0}).share(ints)
    with sharedmap.edit(ints) as e:
        for big in (I64_MAX + 1, I64_MIN - 1, 2**100):
            with pytest.raises(sharedmap.TooLargeError):
                e[big] = 1
            assert big not in e and e.get(big) is None
        e[I64_MAX] = "max"
        e[I64_MIN] = "min"
        with pytest.raises(sharedmap.KeyKindError):
            e["0"] = 1
    assert list(sharedmap.sharedmap(ints).items()) == [(I64_MIN, "min"), (0, 0), (I64_MAX, "max")]
    # an empty map takes the kind of its first key
    empty = new_name()
    sharedmap.rbtree().share(empty)
    with sharedmap.edit(empty) as e:
        assert e.key_kind is None and len(e) == 0 and list(e) == []
        e[b"x"] = 1
        assert e.key_kind == "bytes"
        with pytest.raises(sharedmap.KeyKindError):
            e["x"] = 1
    assert sharedmap.sharedmap(empty) == {b"x": 1}


def test_iteration_invalidated_by_a_change(name):
    sharedmap.rbtree({"a": 1, "b": 2, "c": 3}).share(name)
    with sharedmap.edit(name) as e:
        it = iter(e)
        assert next(it) == "a"
        e["bb"] = 0
        with pytest.raises(RuntimeError):
            next(it)
        it = iter(e)
        assert [next(it), next(it)] == ["a", "b"]
        del e["c"]
        with pytest.raises(RuntimeError):
            next(it)
        assert list(e) == ["a", "b", "bb"]
        it = iter(e)
        e.commit()
    with pytest.raises(ValueError):
        next(it)


def test_edit_of_a_missing_name_a_set_and_bad_arguments(name, new_name, tmp_path):
    with pytest.raises(FileNotFoundError):
        sharedmap.edit(name)
    with pytest.raises(FileNotFoundError):
        sharedmap.compact(name)
    assert files_of(name) == []   # no lock left behind
    with pytest.raises(FileNotFoundError):
        sharedmap.edit(path=tmp_path / "nothing")
    assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError):
        sharedmap.edit(name, path=tmp_path / "x")
    with pytest.raises(TypeError):
        sharedmap.edit()
    with pytest.raises(sharedmap.InvalidNameError):
        sharedmap.edit("a/b")
    sharedmap.rbtree(a=1).share(name)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError):
            sharedmap.edit(name, compact_at=bad)
    assert sharedmap.edit(name, wait=False).discard() is None
    set_dir = tmp_path / "set"
    sharedmap.write_set(set_dir, [[("a", 1)], [("b", 2)]])
    s = new_name()
    sharedmap.load_set(set_dir, s)
    with pytest.raises(ValueError, match="map set"):
        sharedmap.edit(s)
    with pytest.raises(ValueError, match="map set"):
        sharedmap.compact(s)
    assert sharedmap.sharedmap(s) == {"a": 1, "b": 2}


def test_edit_of_a_snapshot_file(tmp_path):
    path = tmp_path / "snap.smp"
    sharedmap.rbtree({f"k{i:03d}": i for i in range(100)}).save(path)
    with sharedmap.edit(path=path) as e:
        assert e.path == path and e.name is None
        e["new"] = "v"
        del e["k000"]
    (base,) = bases_of(None, tmp_path, "snap.smp")
    assert re.fullmatch(r"\.sharedmap-base\.[0-9a-f]{16}\.snap\.smp", base)
    assert sorted(os.listdir(tmp_path)) == sorted([base, ".sharedmap-edit.snap.smp", "snap.smp"])
    m = sharedmap.open(path)
    layer = m.info()["layer"]
    assert layer["base_file"] == base and layer["base_entries"] == 100
    assert layer["base_size"] == os.stat(tmp_path / base).st_size
    assert len(m) == 100 and m["new"] == "v" and "k000" not in m and m.verify()
    assert sharedmap.compact(path=str(path)) == 100
    assert sorted(os.listdir(tmp_path)) == [".sharedmap-edit.snap.smp", "snap.smp"]
    assert m.refresh() and m.info()["layer"] is None and m["new"] == "v"
    assert sharedmap.loads(path.read_bytes()) == m
    # a save(force=True) meanwhile is a conflict for a file too
    e = sharedmap.edit(path=path)
    e["lost"] = 1
    sharedmap.rbtree(saved=1).save(path, force=True)
    with pytest.raises(sharedmap.ConflictError) as exc:
        e.commit()
    assert exc.value.path == path and sharedmap.open(path) == {"saved": 1}


# ---- ConflictError


def test_a_replacement_by_a_publisher_that_does_not_edit_is_a_conflict(name):
    sharedmap.rbtree(a=1, b=2).share(name)
    with sharedmap.edit(name, compact_at=None) as e:
        e["c"] = 3
    assert sharedmap.sharedmap(name).info()["layer"] is not None
    e = sharedmap.edit(name)
    e["d"] = 4
    sharedmap.rbtree(x=9).share(name, force=True)
    with pytest.raises(sharedmap.ConflictError):
        e.commit()
    assert e.closed
    m = sharedmap.sharedmap(name)
    assert m == {"x": 9} and m.info()["layer"] is None
    # the base of the replaced layer is debris: gc takes it
    assert len(bases_of(name)) == 1
    assert sharedmap.gc() >= 1
    assert bases_of(name) == []
    # as a with block: the exception leaves it, nothing published
    with pytest.raises(sharedmap.ConflictError):
        with sharedmap.edit(name) as e:
            e["y"] = 1
            sharedmap.rbtree(z=0).share(name, force=True)
    assert sharedmap.sharedmap(name) == {"z": 0}
    # removed meanwhile: a conflict too, and the name stays removed
    e = sharedmap.edit(name)
    e["w"] = 1
    assert sharedmap.rbtree.remove(name)
    with pytest.raises(sharedmap.ConflictError):
        e.commit()
    with pytest.raises(FileNotFoundError):
        sharedmap.sharedmap(name)
    sharedmap.gc()
    assert files_of(name) == []


def test_a_replacement_from_another_process_is_a_conflict(name):
    sharedmap.rbtree(a=1).share(name)
    with spawn_python(HOLD_EDIT, name, "commit") as child:
        assert child.stdout.readline().strip() == "holding"
        run_python("""
            import sys, sharedmap
            sharedmap.rbtree({"replaced": True}).share(sys.argv[1], force=True)
        """, name)
        tell(child)
        out, err = child.communicate(timeout=60)
        assert child.returncode != 0 and "ConflictError" in err, err
    assert sharedmap.sharedmap(name) == {"replaced": True}
    # and the other way round: this process's edit, another's replacement
    e = sharedmap.edit(name)
    e["mine"] = 1
    run_python("""
        import sys, sharedmap
        sharedmap.rbtree({"again": 2}).share(sys.argv[1], force=True)
    """, name)
    with pytest.raises(sharedmap.ConflictError):
        e.commit()
    assert sharedmap.sharedmap(name) == {"again": 2}


# ---- real processes

READER_LOOP = r"""
import ctypes, json, mmap, os, sys, sharedmap
name, stop, board_path, me = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fd = os.open(board_path, os.O_RDWR)
board = mmap.mmap(fd, 64)
done = ctypes.c_int64.from_buffer(board, 8 * me)   # attaches this reader has checked

def whole(m):
    v = m["v"]
    marks = list(m.prefix("m"))
    assert len(marks) == v, (v, len(marks))
    assert all(m[k] == int(k[1:]) for k in marks)
    assert marks == [f"m{i:05d}" for i in range(1, v + 1)], v
    assert len(m) == 200 + 1 + v and m.get_many(["v", f"m{v:05d}"]) == [v, v or None]
    return v

seen, attaches, last = set(), 0, -1
held = sharedmap.sharedmap(name)
print("ready", flush=True)
while not os.path.exists(stop):
    m = sharedmap.sharedmap(name)
    attaches += 1
    v = whole(m)
    assert v >= last, (v, last)      # a later attach never sees an older version
    last = v
    seen.add(v)
    if held.refresh():
        seen.add(whole(held))
    m.close()
    done.value = attaches
last = whole(sharedmap.sharedmap(name))   # after the stop: the last version
del done
print(json.dumps({"attaches": attaches, "versions": len(seen), "last": last}))
"""


def test_readers_attaching_while_an_editor_publishes_and_compacts(name, tmp_path):
    """Two readers attach in a loop while this process edits 150 times (deltas, compactions by
    compact_at and by compact()): each version they see is whole.  After each commit the editor
    waits until both have attached once more (a progress count, not a time), so that they see
    many versions, attaching while the next commit runs."""
    sharedmap.rbtree({**{f"p{i:04d}": "pad" for i in range(200)}, "v": 0}).share(name)
    stop, board_path = tmp_path / "stop", tmp_path / "board"
    board_path.write_bytes(bytes(64))
    readers = [subprocess.Popen([sys.executable, "-c", READER_LOOP, name, str(stop),
                                 str(board_path), str(i)], env=child_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    fd = os.open(board_path, os.O_RDWR)
    board = mmap.mmap(fd, 64)
    os.close(fd)
    counts = [ctypes.c_int64.from_buffer(board, 8 * i) for i in range(2)]
    try:
        for r in readers:
            assert r.stdout.readline().strip() == "ready", r.stderr.read()
        compactions = 0
        for v in range(1, 151):
            with sharedmap.edit(name) as e:
                e["v"] = v
                e[f"m{v:05d}"] = v
            compactions += e.compacted
            if v % 40 == 0:
                sharedmap.compact(name)
                compactions += 1
            assert len(bases_of(name)) <= 1
            before = [c.value for c in counts]
            while any(c.value == b for c, b in zip(counts, before)):
                for r in readers:
                    assert r.poll() is None, r.stderr.read()
                os.sched_yield()
    finally:
        stop.write_text("")
        results = []
        for r in readers:
            out, err = r.communicate(timeout=120)
            assert r.returncode == 0, err
            results.append(json.loads(out.splitlines()[-1]))
        del counts
        board.close()
    assert compactions >= 5
    for res in results:
        assert res["attaches"] >= 150 and res["last"] == 150, res
    m = sharedmap.sharedmap(name)
    assert m["v"] == 150 and m.verify()


EDITOR_ROUNDS = r"""
import sys, sharedmap
name, me, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for r in range(rounds):
    with sharedmap.edit(name, compact_at=0.5 if r % 7 else 0) as e:
        e[f"w{me}-{r:03d}"] = r
        e["count"] += 1
        e.setdefault(f"first-{r:03d}", me)
"""


def test_concurrent_editors_lose_no_update(name):
    writers, rounds = 3, 30
    sharedmap.rbtree({"count": 0, **{f"p{i}": i for i in range(20)}}).share(name)
    procs = [subprocess.Popen([sys.executable, "-c", EDITOR_ROUNDS, name, str(w), str(rounds)],
                              env=child_env(), stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    m = sharedmap.sharedmap(name)
    assert m["count"] == writers * rounds
    assert all(f"w{w}-{r:03d}" in m for w in range(writers) for r in range(rounds))
    assert all(m[f"first-{r:03d}"] in range(writers) for r in range(rounds))
    assert len(m) == 1 + 20 + writers * rounds + rounds and m.verify()
    sharedmap.gc()
    assert len(bases_of(name)) == (m.info()["layer"] is not None)


KILLED_EDITOR = r"""
import sys, sharedmap
name = sys.argv[1]
v = sharedmap.sharedmap(name)["v"]
while True:
    v += 1
    with sharedmap.edit(name, compact_at=None if v % 5 else 0) as e:
        e["v"] = v
        e[f"m{v:05d}"] = v
        e[f"p{v % 50:04d}"] = "x" * (v % 300)
    if v % 11 == 0:
        sharedmap.compact(name)
    print(v, flush=True)
"""

KILL_TRIALS = int(os.environ.get("SHAREDMAP_EDIT_KILL_TRIALS", "30"))


def test_an_editor_killed_mid_commit_leaves_the_old_or_the_new_version(name):
    sharedmap.rbtree({**{f"p{i:04d}": "" for i in range(50)}, "v": 0}).share(name)
    rng = random.Random(1234)
    last = 0
    for trial in range(KILL_TRIALS):
        child = subprocess.Popen([sys.executable, "-u", "-c", KILLED_EDITOR, name], env=child_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        printed = last
        for _ in range(rng.randrange(1, 12)):
            line = child.stdout.readline()
            assert line, child.stderr.read()
        for _ in range(rng.randrange(0, 20000)):   # a random moment in a later commit
            pass
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
        rest = child.stdout.read()   # what the parent's buffer and the pipe still hold
        assert child.stderr.read() == ""
        child.stdout.close()
        child.stderr.close()
        printed = int((line + rest).split()[-1])
        m = sharedmap.sharedmap(name)
        v = m["v"]
        # what it printed was committed; at most the one commit after it was too
        assert v in (printed, printed + 1), (trial, v, printed)
        assert sorted(k for k in m.prefix("m")) == [f"m{i:05d}" for i in range(1, v + 1)]
        assert all(m[f"m{i:05d}"] == i for i in range(1, v + 1))
        assert m.verify()
        last = v
        # the dead editor's lock went with it
        sharedmap.edit(name, wait=False).discard()
        sharedmap.gc()
        bases = bases_of(name)
        layer = m.info()["layer"]
        assert bases == ([layer["base_file"]] if layer else []), (trial, bases, layer)
    assert last >= KILL_TRIALS
    assert sharedmap.rbtree.remove(name)
    sharedmap.gc()
    assert files_of(name) == []


def layered(name, n=100):
    sharedmap.rbtree({f"k{i:03d}": i for i in range(n)}).share(name)
    with sharedmap.edit(name) as e:
        e["k000"] = "edited"
        del e["k001"]
    m = sharedmap.sharedmap(name)
    base = os.path.join(SHM_DIR, m.info()["layer"]["base_file"])
    model = {f"k{i:03d}": i for i in range(n)}
    model["k000"] = "edited"
    del model["k001"]
    return m, base, model


def test_a_base_removed_under_a_layer(name):
    m, base, model = layered(name)
    os.unlink(base)
    with pytest.raises(sharedmap.CorruptSnapshotError) as exc:
        sharedmap.sharedmap(name)
    assert exc.value.code == EBASE and exc.value.name == name
    assert "base of a layered map" in str(exc.value)
    out = run_python("""
        import sys, sharedmap
        try:
            sharedmap.sharedmap(sys.argv[1])
        except sharedmap.CorruptSnapshotError as e:
            print(e.code)
    """, name)
    assert out.stdout.split() == [str(EBASE)]
    check_reader(m, model, "str")   # attached before: keeps its mapping of the base
    with pytest.raises(sharedmap.CorruptSnapshotError):
        sharedmap.edit(name)
    assert sharedmap.rbtree.remove(name)
    assert files_of(name) == []


@pytest.mark.parametrize("how", ["renamed-over", "rewritten-in-place", "same-size-other-map"])
def test_a_base_replaced_under_a_layer(name, how, tmp_path):
    m, base, model = layered(name)
    if how == "renamed-over":
        other = tmp_path / "other"
        sharedmap.rbtree({f"k{i:03d}": -i for i in range(100)}).save(other)
        tmp = base + ".tmp-test"
        with open(tmp, "wb") as f:
            f.write(other.read_bytes())
        os.rename(tmp, base)
    elif how == "rewritten-in-place":
        m.close()   # its mapping of the base would change under it
        with open(base, "r+b") as f:
            f.write(sharedmap.rbtree({"other": 1}).dump())
    else:
        m.close()
        other = sharedmap.rbtree({f"k{i:03d}": i + 1 for i in range(100)}).dump()
        assert len(other) == os.path.getsize(base)
        with open(base, "r+b") as f:
            f.write(other)
    with pytest.raises(sharedmap.CorruptSnapshotError) as exc:
        sharedmap.sharedmap(name)
    assert exc.value.code == EBASE
    if how == "renamed-over":
        check_reader(m, model, "str")
    assert sharedmap.rbtree.remove(name)
    assert files_of(name) == []


def test_a_base_damaged_inside_its_body_fails_verify(name):
    m, base, model = layered(name)
    m.close()
    with open(base, "r+b") as f:   # a value's byte: the headers still agree, the body does not
        data = f.read()
        at = data.index(b"k050") + 4
        f.seek(at)
        f.write(bytes([data[at] ^ 0x01]))
    fresh = sharedmap.sharedmap(name)
    with pytest.raises(sharedmap.CorruptSnapshotError):
        fresh.verify()
    fresh.close()
    sharedmap.rbtree.remove(name)


# ---- pickling, info(), refresh(), cleanup


def lookup_in_child(m, keys):
    return [m.get(k) for k in keys], m.info()["layer"] is not None


def test_pickling_a_reader_of_a_layered_map(name):
    import multiprocessing
    m, base, model = layered(name)
    again = pickle.loads(pickle.dumps(m))
    assert again == model and again.info()["layer"] == m.info()["layer"]
    keys = ["k000", "k001", "k002", "k099"]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got, was_layered = pool.apply(lookup_in_child, (m, keys))
    assert got == [model.get(k) for k in keys] and was_layered


def test_info_layer_and_refresh(name):
    sharedmap.rbtree({f"k{i:03d}": i for i in range(100)}).share(name)
    m = sharedmap.sharedmap(name)
    plain = m.info()
    assert plain["layer"] is None
    with sharedmap.edit(name) as e:
        for i in range(5):
            e[f"new{i}"] = i
        del e["k000"]
        e["k001"] = "set"
    # not moved until refresh(), but told that it was superseded
    assert m.info() == {**plain, "superseded": True} and len(m) == 100
    assert m.refresh() is True and m.refresh() is False
    info = m.info()
    layer = info["layer"]
    assert set(layer) == {"base_file", "base_entries", "base_size", "delta_records", "delta_size"}
    assert re.fullmatch(rf"\.sharedmap-base\.[0-9a-f]{{16}}\.sharedmap\.{re.escape(name)}",
                        layer["base_file"])
    assert layer["base_entries"] == 100 and layer["base_size"] == plain["size"]
    assert layer["base_size"] == os.stat(os.path.join(SHM_DIR, layer["base_file"])).st_size
    assert layer["delta_records"] == 7 and 0 < layer["delta_size"] < info["size"]
    assert info["entries"] == 104 == len(m)
    assert info["size"] == os.stat(os.path.join(SHM_DIR, f"sharedmap.{name}")).st_size
    assert info["key_kind"] == "str" and info["name"] == name and not info["superseded"]
    # a second delta over the same base: the old layer superseded, the base kept
    old = sharedmap.sharedmap(name)
    with sharedmap.edit(name) as e:
        e["new0"] = "again"
    assert old.info()["superseded"] and m.refresh()
    assert m.info()["layer"]["base_file"] == layer["base_file"]
    assert m.info()["layer"]["delta_records"] == 7
    assert old["new0"] == 0 and m["new0"] == "again"
    # a discarded edit and an edit without changes do not move readers
    with sharedmap.edit(name) as e:
        pass
    e = sharedmap.edit(name)
    e["zzz"] = 1
    e.discard()
    assert m.refresh() is False
    assert sharedmap.compact(name) == 104
    assert m.refresh() is True and m.info()["layer"] is None and bases_of(name) == []
    assert old["k050"] == 50 and old.verify()   # still maps the removed base


def test_remove_takes_the_base_and_the_lock_and_gc_takes_orphans(name, new_name):
    m, base, model = layered(name)
    assert len(files_of(name)) == 3   # the layer, its base, the edit lock
    assert sharedmap.rbtree.remove(name)
    assert files_of(name) == []
    assert m == model            # an attached reader keeps reading
    # removed while an editor (another process) holds the lock: gc takes what is left
    other = new_name()
    layered(other)
    with spawn_python(HOLD_EDIT, other, "discard") as child:
        assert child.stdout.readline().strip() == "holding"
        assert sharedmap.rbtree.remove(other)
        with pytest.raises(FileNotFoundError):
            sharedmap.sharedmap(other)
        tell(child)
        finish(child)
    sharedmap.gc()
    assert files_of(other) == []
    # a plain map that was edited once, then republished by a non-editor: base orphaned
    third = new_name()
    layered(third)
    sharedmap.rbtree(a=1).share(third, force=True)
    assert len(bases_of(third)) == 1
    sharedmap.gc()
    assert bases_of(third) == []
    assert files_of(third) == [".sharedmap-edit.sharedmap." + third, "sharedmap." + third]
    sharedmap.rbtree.remove(third)
    assert files_of(third) == []


@pytest.mark.heavy
def test_many_editors_and_readers_at_once(name, tmp_path):
    """Six editors and three attaching readers together, many rounds: every version a reader
    sees is whole, and no editor's update is lost."""
    writers, rounds = 6, 60
    sharedmap.rbtree({"count": 0, **{f"p{i}": i for i in range(200)}}).share(name)
    stop = tmp_path / "stop"
    reader_code = r"""
import os, sys, sharedmap
name, stop, writers = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
n = 0
while not os.path.exists(stop):
    m = sharedmap.sharedmap(name)
    mine = sum(1 for _ in m.prefix("w"))
    assert m["count"] == mine, (m["count"], mine)
    assert len(m) == 1 + 200 + mine + sum(1 for _ in m.prefix("first-"))
    assert m.verify()
    n += 1
print(n)
"""
    readers = [subprocess.Popen([sys.executable, "-c", reader_code, name, str(stop), str(writers)],
                                env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(3)]
    try:
        for r in readers:
            assert r.stdout.readline().strip() == "ready", r.stderr.read()
        procs = [subprocess.Popen([sys.executable, "-c", EDITOR_ROUNDS, name, str(w), str(rounds)],
                                  env=child_env(), stderr=subprocess.PIPE, text=True)
                 for w in range(writers)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        stop.write_text("")
        for r in readers:
            out, err = r.communicate(timeout=120)
            assert r.returncode == 0, err
    m = sharedmap.sharedmap(name)
    assert m["count"] == writers * rounds
    assert sorted(m.prefix("w")) == sorted(f"w{w}-{r:03d}" for w in range(writers)
                                           for r in range(rounds))


def test_a_commit_keeps_the_files_mode(name):
    sharedmap.rbtree({f"k{i}": i for i in range(50)}).share(name, mode=0o640)
    path = os.path.join(SHM_DIR, f"sharedmap.{name}")
    with sharedmap.edit(name) as e:
        e["k1"] = "delta"
    assert not e.compacted and os.stat(path).st_mode & 0o777 == 0o640
    with sharedmap.edit(name, compact_at=0) as e:
        e["k2"] = "compacted"
    assert e.compacted and os.stat(path).st_mode & 0o777 == 0o640
    assert sharedmap.sharedmap(name)["k2"] == "compacted"


def test_compaction_with_a_memory_limit_and_a_temp_dir(name, tmp_path):
    n = 30000
    sharedmap.publish(name, ((f"k{i:06d}", "v" * (i % 40)) for i in range(n)), sorted=True)
    temp = tmp_path / "temp"
    temp.mkdir()
    with pytest.raises(ValueError, match="memory_limit"):
        sharedmap.edit(name, memory_limit=1)
    with sharedmap.edit(name, compact_at=0, memory_limit=4 << 20, temp_dir=temp) as e:
        for i in range(0, n, 3):
            e[f"k{i:06d}"] = i
        for i in range(1, n, 300):
            del e[f"k{i:06d}"]
    assert e.compacted and os.listdir(temp) == []
    m = sharedmap.sharedmap(name)
    assert len(m) == n - len(range(1, n, 300)) and m.info()["layer"] is None
    assert m["k000003"] == 3 and m["k000002"] == "v" * 2 and "k000001" not in m and m.verify()
    assert sharedmap.compact(name, memory_limit=4 << 20, temp_dir=str(temp)) == len(m)
    assert m.refresh() and m.verify()


def read_inherited(conn, m, keys):
    """Run in a forked child: m is the parent's reader, mapping and all."""
    before = [m.get(k) for k in keys]
    moved = m.refresh()
    conn.send((before, moved, [m.get(k) for k in keys], bytes(m.getbuffer("zzz")), m.verify()))
    conn.close()


def test_a_forked_child_reads_the_parents_layered_reader(name):
    import multiprocessing
    m, base, model = layered(name)
    keys = ["k000", "k001", "k002", "k050", "zzz"]
    old = [model.get(k) for k in keys]
    with sharedmap.edit(name, compact_at=None) as e:
        e["k002"] = "2"
        e["zzz"] = b"new"
    model.update({"k002": "2", "zzz": b"new"})
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=read_inherited, args=(child, m, keys))
    p.start()
    got = parent.recv()
    p.join(60)
    assert p.exitcode == 0
    assert got == (old, True, [model.get(k) for k in keys], b"new", True)
    assert [m.get(k) for k in keys] == old   # the parent's reader did not move


def test_changes_that_cancel_out_publish_nothing(new_name):
    """A key set and then deleted in one edit of a plain map leaves the map as it was: no layer,
    no base beside it, the same file under the name."""
    name = new_name("cancel")
    sharedmap.rbtree({"a": 1, "b": 2}).share(name)
    before = os.stat(f"/dev/shm/sharedmap.{name}").st_ino
    with sharedmap.edit(name) as e:
        e["new"] = 3
        del e["new"]
        assert e.changes == 1 and len(e) == 2
    assert os.stat(f"/dev/shm/sharedmap.{name}").st_ino == before
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(".sharedmap-base.") and f.endswith(name)]
    assert sharedmap.sharedmap(name).info()["layer"] is None
