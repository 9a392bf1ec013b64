"""The reader, sharedmap.sharedmap: lifetime (close, with), zero-copy buffers, refresh, info,
verify, damaged snapshots, pickling by reference (through real worker processes), threads."""
import contextlib
import gc
import multiprocessing
import os
import pickle
import threading
import time
import weakref

import pytest

import sharedmap
from support import finish, run_python, spawn_python, tell, worker_lookup


class SubMap(sharedmap.sharedmap):
    pass


@pytest.fixture
def shared(name):
    """A map published under name, and a reader attached to it."""
    w = sharedmap.rbtree({"a": "1", "b": b"bytes value", "c": 3, "d": "ünïcode", "e": 2.5})
    w.share(name)
    return sharedmap.sharedmap(name)


# ---------------------------------------------------------------- close and with

USES_AFTER_CLOSE = [
    lambda m: m.get("a"),
    lambda m: m["a"],
    lambda m: "a" in m,
    lambda m: len(m),
    lambda m: bool(m),
    lambda m: iter(m),
    lambda m: reversed(m),
    lambda m: m.keys(),
    lambda m: m.values(),
    lambda m: m.items(),
    lambda m: m.copy(),
    lambda m: m == {},
    lambda m: list(m.irange()),
    lambda m: m.bisect_left("a"),
    lambda m: m.bisect_right("a"),
    lambda m: m.index("a"),
    lambda m: m.peekitem(),
    lambda m: m.prefix("a"),
    lambda m: m.prefix_items("a"),
    lambda m: m.getbuffer("b"),
    lambda m: m.refresh(),
    lambda m: m.info(),
    lambda m: m.verify(),
    lambda m: pickle.dumps(m),
    lambda m: m.__enter__(),
    lambda m: sharedmap.rbtree(m),
]


@pytest.mark.parametrize("use", USES_AFTER_CLOSE)
def test_every_use_after_close_is_a_value_error(shared, use):
    shared.close()
    with pytest.raises(ValueError, match="operation on a closed sharedmap"):
        use(shared)


def test_close_and_with(shared, name):
    assert shared.closed is False
    shared.close()
    assert shared.closed is True
    shared.close()  # again: nothing
    assert repr(shared) == f"<sharedmap.sharedmap name={name!r} closed>"
    with pytest.raises(TypeError, match="read-only"):
        shared["a"] = 1
    with sharedmap.sharedmap(name) as m:
        assert m["a"] == "1"
    assert m.closed
    with pytest.raises(ZeroDivisionError):
        with sharedmap.sharedmap(name) as m:
            1 / 0
    assert m.closed


def test_iterators_and_views_outlive_close(shared):
    it = iter(shared.items())
    keys = shared.keys()
    values = shared.values()
    first = next(it)
    shared.close()
    del shared
    gc.collect()
    assert first == ("a", "1")
    assert [k for k, _ in it] == ["b", "c", "d", "e"]
    assert list(keys) == ["a", "b", "c", "d", "e"] and "c" in keys
    assert 3 in values


def test_read_only(shared):
    with pytest.raises(TypeError, match="sharedmap is read-only"):
        shared["a"] = "x"
    with pytest.raises(TypeError, match="sharedmap is read-only"):
        del shared["a"]
    for method in ("pop", "popitem", "setdefault", "update", "clear", "set"):
        assert not hasattr(shared, method)


def test_repr_name_path(shared, name, tmp_path):
    assert repr(shared).startswith(f"<sharedmap.sharedmap name={name!r} entries=5 size=")
    assert repr(shared).endswith(" B>") or repr(shared).endswith("KiB>")
    assert shared.name == name and shared.path is None
    p = tmp_path / "f.smap"
    sharedmap.rbtree(shared).save(p)
    f = sharedmap.open(p)
    assert repr(f).startswith(f"<sharedmap.sharedmap path={str(p)!r} entries=5 size=")
    assert f.name is None and f.path == str(p)
    b = sharedmap.loads(sharedmap.rbtree(shared).dump())
    assert repr(b).startswith("<sharedmap.sharedmap from bytes entries=5 size=")
    assert b.name is None and b.path is None
    big = sharedmap.loads(sharedmap.rbtree((f"{i:07}", "x" * 100) for i in range(20000)).dump())
    assert " MiB>" in repr(big)


def test_subclass_and_weakref(shared, name):
    s = SubMap(name)
    assert isinstance(s, sharedmap.sharedmap) and s["a"] == "1"
    assert repr(s).startswith("<SubMap name=")
    s2 = pickle.loads(pickle.dumps(s))
    assert type(s2) is SubMap and s2 == s
    r = weakref.ref(s)
    assert r() is s
    s.extra = 1  # subclasses have a __dict__
    assert sharedmap.sharedmap(name=name) == s


# ---------------------------------------------------------------- zero copy


def test_getbuffer(shared):
    mv = shared.getbuffer("b")
    assert isinstance(mv, memoryview)
    assert mv.readonly and mv.format == "B" and mv.ndim == 1
    assert bytes(mv) == b"bytes value" and mv.nbytes == 11
    assert mv.tobytes() == shared["b"]
    with pytest.raises(TypeError):
        mv[0] = 1
    assert bytes(shared.getbuffer("d")) == "ünïcode".encode()  # str: its UTF-8
    with pytest.raises(TypeError, match="int"):
        shared.getbuffer("c")
    with pytest.raises(TypeError, match="float"):
        shared.getbuffer("e")
    with pytest.raises(KeyError):
        shared.getbuffer("zz")
    with pytest.raises(TypeError):
        shared.getbuffer(b"b")
    assert type(mv.obj).__name__ == "_Snapshot"
    assert mv.obj.nbytes == shared.info()["size"]
    mv.release()


def test_getbuffer_keeps_the_snapshot_mapped_after_close_and_remove(shared, name):
    mv = shared.getbuffer("b")
    whole = memoryview(mv.obj)
    shared.close()
    sharedmap.rbtree.remove(name)
    del shared
    gc.collect()
    assert bytes(mv) == b"bytes value"
    assert bytes(whole[:4]) == b"\x89SMP"


def test_getbuffer_large_value_and_empty_value():
    big = bytes(range(256)) * 4096
    m = sharedmap.loads(sharedmap.rbtree({b"big": big, b"empty": b""}).dump())
    assert m.getbuffer(b"big") == big
    assert m.getbuffer(b"empty").nbytes == 0


def test_loads_holds_the_source_buffer():
    data = bytearray(sharedmap.rbtree(a=1).dump())
    m = sharedmap.loads(data)
    with pytest.raises(BufferError):
        data.extend(b"x")  # cannot be resized under the reader
    m.close()
    del m
    gc.collect()
    data.extend(b"x")  # released with the snapshot
    mv_source = memoryview(bytes(sharedmap.rbtree(a=2).dump()))
    assert sharedmap.loads(mv_source)["a"] == 2
    with pytest.raises(TypeError):
        sharedmap.loads("not bytes")


# ---------------------------------------------------------------- refresh


def test_refresh_by_name(name):
    sharedmap.rbtree(v=1).share(name)
    m = sharedmap.sharedmap(name)
    assert m.refresh() is False
    old_items = iter(m.items())
    old_keys = m.keys()
    old_buf = sharedmap.loads(sharedmap.rbtree(x=b"x").dump()).getbuffer("x")  # unrelated
    sharedmap.rbtree(v=2, w=3).share(name, force=True)
    assert m["v"] == 1  # keeps its version until refresh()
    assert m.info()["superseded"] is True
    assert m.refresh() is True
    assert m["v"] == 2 and len(m) == 2
    assert m.refresh() is False
    assert list(old_items) == [("v", 1)] and list(old_keys) == ["v"]
    assert bytes(old_buf) == b"x"


def test_refresh_after_remove_keeps_the_version(name):
    sharedmap.rbtree(v=1).share(name)
    m = sharedmap.sharedmap(name)
    sharedmap.rbtree.remove(name)
    assert m.refresh() is False
    assert m["v"] == 1
    sharedmap.rbtree(v=5).share(name)  # published again
    assert m.refresh() is True and m["v"] == 5


def test_refresh_across_processes(name):
    sharedmap.rbtree(v=0).share(name)
    m = sharedmap.sharedmap(name)
    with spawn_python(
        """
        import sys, sharedmap
        for i in range(1, 4):
            sys.stdin.readline()
            sharedmap.rbtree(v=i).share(sys.argv[1], force=True)
            print("published", flush=True)
        """,
        name,
    ) as child:
        for i in range(1, 4):
            tell(child)
            assert child.stdout.readline() == "published\n"
            assert m.refresh() is True and m["v"] == i
        finish(child)


def test_refresh_of_a_file_and_of_bytes(tmp_path):
    p = tmp_path / "r.smap"
    sharedmap.rbtree(v=1).save(p)
    m = sharedmap.open(p)
    assert m.refresh() is False
    sharedmap.rbtree(v=2).save(p, force=True)
    assert m.refresh() is True and m["v"] == 2
    b = sharedmap.loads(sharedmap.rbtree(v=1).dump())
    assert b.refresh() is False


def test_refresh_does_not_look_at_the_name_unless_flagged(name, new_name):
    """The fast path of refresh() is one load of the snapshot's superseded word, no system
    call: a replacement that bypasses the flag (a plain rename behind sharedmap's back) goes
    unnoticed until a real republish flags the version the reader has."""
    import os

    sharedmap.rbtree(v=1).share(name)
    m = sharedmap.sharedmap(name)
    other = new_name()
    sharedmap.rbtree(v=2).share(other)
    os.rename(f"/dev/shm/sharedmap.{other}", f"/dev/shm/sharedmap.{name}")
    for _ in range(1000):
        assert m.refresh() is False  # did not reopen the name
    assert m["v"] == 1
    sharedmap.rbtree(v=3).share(name, force=True)  # flags the v=2 snapshot, not ours
    assert m.refresh() is False
    m2 = sharedmap.sharedmap(name)
    sharedmap.rbtree(v=4).share(name, force=True)
    assert m2.refresh() is True and m2["v"] == 4


# ---------------------------------------------------------------- info and verify


def test_info(shared, name):
    before = time.time()
    info = shared.info()
    assert info["entries"] == 5
    assert info["size"] == len(sharedmap.rbtree(shared).dump())
    assert info["format_version"] == sharedmap.FORMAT_VERSION
    assert before - 60 < info["created"] <= before + 1
    assert info["key_kind"] == "str"
    assert isinstance(info["checksum"], int)
    assert info["name"] == name and info["superseded"] is False
    assert info["path"] == f"/dev/shm/sharedmap.{name}" and os.path.exists(info["path"])
    assert shared.path is None  # the property says how it was opened: by name
    assert sharedmap.loads(sharedmap.rbtree({b"x": 1}).dump()).info()["key_kind"] == "bytes"


def test_verify(shared):
    assert shared.verify() is True
    data = bytearray(sharedmap.rbtree(shared).dump())
    data[-1] ^= 0x40  # the last byte of the body
    damaged = sharedmap.loads(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        damaged.verify()


def test_verify_names_the_file(tmp_path):
    p = tmp_path / "v.smap"
    sharedmap.rbtree(a=1, b=2).save(p)
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="v.smap"):
        sharedmap.open(p).verify()


# ---------------------------------------------------------------- damaged snapshots


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: b"",
        lambda d: d[:10],
        lambda d: d[:127],
        lambda d: d[:-1],
        lambda d: d + b"\0",
        lambda d: b"x" * len(d),
        lambda d: d.replace(b"\r\n", b"\n", 1),  # a text-mode transfer
        lambda d: d[:8] + bytes(reversed(d[8:12])) + d[12:],  # wrong byte order mark
        lambda d: d[:12] + b"\x63\x00" + d[14:],  # unknown version
    ],
)
def test_malformed_snapshots_are_value_errors(mangle):
    data = sharedmap.rbtree(a=1, b="two").dump()
    with pytest.raises(ValueError):
        sharedmap.loads(mangle(data))


def exercise(m):
    """Every read operation; damaged data may raise ValueError or KeyError, never crash."""
    try:
        keys = list(m)
        list(reversed(m))
        list(m.items())
        for k in keys:
            m.get(k)
            m.bisect_left(k)
            list(m.prefix(k[:1]))
            try:
                m.index(k)
            except ValueError:
                pass
        for i in range(len(m)):
            m.peekitem(i)
        list(m.irange(reverse=True))
        m.verify()
    except (ValueError, KeyError, IndexError):
        pass


def test_every_single_byte_corruption_is_caught_or_harmless():
    w = sharedmap.rbtree({"alpha": "1", "beta": b"\x00\x01", "gamma": 3, "delta": 4.5, "ε": None})
    data = w.dump()
    outcomes = {"refused at open": 0, "caught by verify": 0, "harmless": 0}
    for pos in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[pos] ^= flip
            try:
                m = sharedmap.loads(bytes(damaged))
            except ValueError:
                outcomes["refused at open"] += 1
                continue
            exercise(m)
            try:
                m.verify()
                outcomes["harmless"] += 1
            except ValueError:
                outcomes["caught by verify"] += 1
    # only the mutable "superseded" word (8 bytes) and padding may be harmless
    assert outcomes["harmless"] <= 3 * 64, outcomes


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        sharedmap.open(tmp_path / "missing.smap")
    assert info.value.filename == str(tmp_path / "missing.smap")
    with pytest.raises(ValueError, match="not a regular file"):
        sharedmap.open(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        sharedmap.open(tmp_path / "empty")
    sharedmap.rbtree(a=1).save(tmp_path / "real.smap")
    (tmp_path / "link.smap").symlink_to(tmp_path / "real.smap")
    with pytest.raises(OSError) as info:
        sharedmap.open(tmp_path / "link.smap")  # symlinks are never followed
    assert info.value.errno == 40  # ELOOP
    with pytest.raises(TypeError):
        sharedmap.open(3.5)


# ---------------------------------------------------------------- pickling by reference


def test_pickle_by_name_is_a_reference(name):
    w = sharedmap.rbtree((f"k{i}", "v" * 50) for i in range(10000))
    w.share(name)
    m = sharedmap.sharedmap(name)
    data = pickle.dumps(m)
    assert len(data) < 200  # how to re-attach, not the contents
    assert pickle.loads(data) == m
    sharedmap.rbtree.remove(name)
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)


def test_pickle_of_bytes_reader_carries_the_bytes():
    data = sharedmap.rbtree(a=1).dump()
    m = sharedmap.loads(data)
    assert pickle.loads(pickle.dumps(m)) == {"a": 1}
    m2 = sharedmap.loads(bytearray(data))
    assert pickle.loads(pickle.dumps(m2)) == {"a": 1}


def test_pickling_to_spawned_worker_processes(name, tmp_path):
    w = sharedmap.rbtree({f"k{i}": i for i in range(1000)})
    w.share(name)
    w.save(tmp_path / "w.smap")
    readers = [
        sharedmap.sharedmap(name),
        sharedmap.open(tmp_path / "w.smap"),
        sharedmap.loads(w.dump()),
    ]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(worker_lookup, [(m, ["k1", "k999", "nope"]) for m in readers])
    for m, (values, where) in zip(readers, results):
        assert values == [1, 999, None]
        assert where == (m.name, m.path)


# ---------------------------------------------------------------- threads


def test_threads_reading_while_another_closes(name):
    sharedmap.rbtree((f"k{i}", i) for i in range(20000)).share(name)
    m = sharedmap.sharedmap(name)
    errors = []
    stop = threading.Event()

    def read():
        try:
            it = iter(m.items())
            while not stop.is_set():
                try:
                    m.get("k5")
                    next(it, None)
                except ValueError as e:
                    if "closed" not in str(e):
                        raise
                    return
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def verify():
        while not stop.is_set():
            try:
                m.verify()
            except ValueError:
                return

    threads = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=verify)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    m.close()
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []


def test_readers_in_many_processes_at_once(name):
    sharedmap.rbtree({f"k{i}": i for i in range(50000)}).share(name)
    code = """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(sum(m[f"k{i}"] for i in range(50000)))
        """
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(spawn_python(code, name)) for _ in range(4)]
        outs = [finish(p) for p in procs]
    assert outs == [f"{sum(range(50000))}\n"] * 4
    assert run_python("import sharedmap, sys; print(len(sharedmap.sharedmap(sys.argv[1])))", name).stdout == "50000\n"
