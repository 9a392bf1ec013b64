"""The streaming writer (issue 13): sharedmap.write(), sharedmap.publish() and the Writer beneath
them build a snapshot from a stream of pairs in bounded memory, and it is the snapshot rbtree()
makes of the same pairs; a failed, abandoned or killed write leaves nothing behind."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import sharedmap
from support import child_env, my_shm_entries, run_python, spawn_python

MIN_LIMIT = 4 << 20  # SM_WRITER_MEMORY_MIN


def scrambled(n, width=9):
    """n distinct str keys in an order far from sorted (a permutation of range(n))."""
    step = 2654435761 % n or 1
    while _gcd(step, n) != 1:
        step += 1
    return (f"key-{(i * step) % n:0{width}d}" for i in range(n))


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def same_snapshot(a, b):
    """Two snapshots are the same but for the created time (and the header checksum over it)."""
    assert len(a) == len(b)
    assert a[:96] == b[:96]
    assert a[104:112] == b[104:112]
    assert a[120:] == b[120:]


@pytest.mark.parametrize(
    "pairs",
    [
        {},
        {"only": 1},
        {"b": "2", "a": 1, "c": None, "d": True, "e": 1.5, "f": b"bytes", "": "empty key"},
        {b"\x00": 1, b"\xff\xfe": 2, b"": 3},
        {-(2**63): "min", 2**63 - 1: "max", 0: 0, -1: -1, 7: 7.25},
        {f"k{i}": "v" * (i % 300) for i in range(5000)},
    ],
    ids=["empty", "one", "values", "bytes-keys", "int-keys", "5000"],
)
def test_the_snapshot_is_the_one_rbtree_writes(tmp_path, pairs):
    path = tmp_path / "w.smap"
    assert sharedmap.write(path, pairs) == len(pairs)
    same_snapshot(path.read_bytes(), sharedmap.rbtree(pairs).dump())
    m = sharedmap.open(path)
    assert dict(m) == pairs and list(m) == sorted(pairs)
    m.verify()


def test_spilled_runs_merge_to_the_same_snapshot(tmp_path):
    # 300k pairs of ~40 bytes, unsorted, in the smallest budget: many runs spill and are merged
    n = 300_000
    keys = list(scrambled(n))
    spill = tmp_path / "spill"
    spill.mkdir()
    path = tmp_path / "w.smap"
    pairs = ((k, f"value of {k}") for k in keys)
    assert sharedmap.write(path, pairs, memory_limit=MIN_LIMIT, temp_dir=spill) == n
    assert os.listdir(spill) == []  # spill files are anonymous
    expected = sharedmap.rbtree((k, f"value of {k}") for k in keys).dump()
    same_snapshot(path.read_bytes(), expected)
    m = sharedmap.open(path)
    assert len(m) == n and m[keys[12345]] == f"value of {keys[12345]}"
    assert list(m.irange("key-000100000", "key-000100003")) == [f"key-00010000{i}" for i in range(4)]


def test_duplicates_keep_the_last_value_across_runs(tmp_path):
    n = 100_000
    path = tmp_path / "w.smap"

    def pairs():
        for round_ in range(3):  # every key three times, the rounds far apart in the stream
            for k in scrambled(n):
                yield k, f"{round_}:{k}"

    count = sharedmap.write(path, pairs(), memory_limit=MIN_LIMIT)
    assert count == n
    m = sharedmap.open(path)
    assert len(m) == n
    assert all(v.startswith("2:") for v in m.values())
    with sharedmap.Writer(tmp_path / "w2.smap", sorted=True) as w:
        w.add("a", 1)
        w.add("a", 2)  # equal is not below: the later one wins
        w.add("b", 3)
        assert w.count == 3  # an upper bound until closed
    assert w.count == 2
    assert dict(sharedmap.open(tmp_path / "w2.smap")) == {"a": 2, "b": 3}


def test_sorted_input_is_checked(tmp_path):
    path = tmp_path / "w.smap"
    n = 50_000
    assert sharedmap.write(path, ((f"{i:08d}", i) for i in range(n)), sorted=True) == n
    same_snapshot(path.read_bytes(), sharedmap.rbtree((f"{i:08d}", i) for i in range(n)).dump())

    bad = tmp_path / "bad.smap"
    with pytest.raises(sharedmap.OrderError, match="'b' is below") as e:
        sharedmap.write(bad, [("a", 1), ("c", 2), ("b", 3)], sorted=True)
    assert isinstance(e.value, ValueError) and e.value.path == bad
    assert not bad.exists() and os.listdir(tmp_path) == ["w.smap"]
    # int keys are in numeric order, bytes keys in byte order
    sharedmap.write(tmp_path / "i.smap", [(-5, 0), (-1, 0), (3, 0)], sorted=True)
    with pytest.raises(sharedmap.OrderError):
        sharedmap.write(tmp_path / "i2.smap", [(-1, 0), (-5, 0)], sorted=True)


def test_an_error_in_the_stream_leaves_nothing(tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    path = tmp_path / "w.smap"

    def pairs():
        yield from ((k, "x" * 50) for k in scrambled(200_000))  # spills several runs
        raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError, match="the source failed"):
        sharedmap.write(path, pairs(), memory_limit=MIN_LIMIT, temp_dir=spill)
    assert os.listdir(tmp_path) == ["spill"] and os.listdir(spill) == []


def test_bad_pairs_are_clear_errors_and_publish_nothing(tmp_path):
    path = tmp_path / "w.smap"
    with pytest.raises(sharedmap.KeyKindError, match="str"):
        sharedmap.write(path, [("a", 1), (b"b", 2)])
    with pytest.raises(TypeError, match="values must be"):
        sharedmap.write(path, [("a", [1])])
    with pytest.raises(TypeError, match="element #1"):
        sharedmap.write(path, [("a", 1), 5])
    with pytest.raises(ValueError, match="element #0 .* length 3"):
        sharedmap.write(path, [("a", 1, 2)])
    with pytest.raises(OverflowError):
        sharedmap.write(path, [(2**63, 1)])
    assert os.listdir(tmp_path) == []
    # a refused pair does not end a Writer: the caller may skip it and go on
    with sharedmap.Writer(path) as w:
        w.add("a", 1)
        with pytest.raises(sharedmap.KeyKindError):
            w.add(1, 1)
        w.add("b", 2)
    assert dict(sharedmap.open(path)) == {"a": 1, "b": 2}


def test_writer_life_cycle(tmp_path):
    path = tmp_path / "w.smap"
    w = sharedmap.Writer(path)
    assert not w.closed and w.count == 0
    w.update({"b": 2, "a": 1})
    w.update([("c", 3)])
    w.update(sharedmap.rbtree({"d": 4}))
    assert not path.exists()  # nothing is visible before close()
    assert w.close() == 4 and w.closed
    assert dict(sharedmap.open(path)) == {"a": 1, "b": 2, "c": 3, "d": 4}
    with pytest.raises(ValueError, match="closed"):
        w.add("e", 5)
    with pytest.raises(ValueError, match="closed"):
        w.close()
    w.abort()  # closing a closed writer does nothing

    w = sharedmap.Writer(tmp_path / "abandoned.smap")
    w.add("x", 1)
    w.abort()
    assert w.closed and not (tmp_path / "abandoned.smap").exists()
    w = sharedmap.Writer(tmp_path / "dropped.smap")
    w.add("x", 1)
    del w  # never closed: abandoned
    assert sorted(os.listdir(tmp_path)) == ["w.smap"]

    with pytest.raises(ZeroDivisionError):
        with sharedmap.Writer(tmp_path / "raised.smap") as w:
            w.add("x", 1)
            1 / 0
    assert w.closed and sorted(os.listdir(tmp_path)) == ["w.smap"]


def test_writer_arguments(tmp_path):
    with pytest.raises(TypeError, match="path or a name"):
        sharedmap.Writer()
    with pytest.raises(TypeError, match="path or a name"):
        sharedmap.Writer(tmp_path / "x", name="x")
    with pytest.raises(ValueError, match="memory_limit must be at least"):
        sharedmap.Writer(tmp_path / "x", memory_limit=MIN_LIMIT - 1)
    with pytest.raises(ValueError, match="mode"):
        sharedmap.Writer(tmp_path / "x", mode=0o7777)
    with pytest.raises(sharedmap.InvalidNameError):
        sharedmap.Writer(name="a/b")
    with pytest.raises(FileNotFoundError):
        sharedmap.Writer(tmp_path / "no" / "such" / "dir.smap")
    with pytest.raises(OSError):
        sharedmap.write(tmp_path / "x", {"a": 1}, temp_dir=tmp_path / "missing")
    assert os.listdir(tmp_path) == []


def test_existing_files_need_force(tmp_path):
    path = tmp_path / "w.smap"
    sharedmap.write(path, {"a": 1})
    with pytest.raises(FileExistsError):
        sharedmap.write(path, {"a": 2})
    assert dict(sharedmap.open(path)) == {"a": 1}
    old = sharedmap.open(path)
    sharedmap.write(path, {"a": 2}, force=True, mode=0o640)
    assert dict(sharedmap.open(path)) == {"a": 2}
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert old.refresh() and old["a"] == 2  # the replaced snapshot says it was superseded


def test_publish_and_attach(new_name):
    name = new_name()
    n = 200_000
    assert sharedmap.publish(name, ((k, len(k)) for k in scrambled(n)), memory_limit=MIN_LIMIT) == n
    m = sharedmap.sharedmap(name)
    assert len(m) == n and m["key-000000007"] == 13
    out = run_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(len(m), m["key-000199999"], next(iter(m)))
        """,
        name,
    )
    assert out.stdout.split() == [str(n), "13", "key-000000000"]
    with pytest.raises(FileExistsError):
        sharedmap.publish(name, {"a": 1})
    sharedmap.publish(name, {"a": 1}, force=True)
    assert len(m) == n  # the attached reader keeps its snapshot
    assert m.refresh() and dict(m) == {"a": 1}


def test_publish_of_a_failing_stream_leaves_no_map(new_name):
    name = new_name()

    def pairs():
        yield "a", 1
        raise KeyError("gone")

    with pytest.raises(KeyError):
        sharedmap.publish(name, pairs())
    with pytest.raises(FileNotFoundError):
        sharedmap.sharedmap(name)
    assert my_shm_entries() == []


KILLED_CHILD = r"""
import sys, sharedmap
def pairs():
    for i in range(10**9):
        if i == 300_000:
            print("spilling", flush=True)
        yield f"{(i * 7919) % 10**9:010d}", "v" * 40
if sys.argv[1] == "file":
    sharedmap.write(sys.argv[2], pairs(), memory_limit=4 << 20, temp_dir=sys.argv[3])
else:
    sharedmap.publish(sys.argv[2], pairs(), memory_limit=4 << 20, temp_dir=sys.argv[3])
"""


@pytest.mark.parametrize("target", ["file", "shm"])
def test_a_killed_writer_leaves_nothing_visible(tmp_path, new_name, target):
    spill = tmp_path / "spill"
    spill.mkdir()
    dest = str(tmp_path / "w.smap") if target == "file" else new_name()
    with spawn_python(KILLED_CHILD, target, dest, str(spill)) as proc:
        assert proc.stdout.readline() == "spilling\n"  # runs have spilled by now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert os.listdir(spill) == []  # the spill files died with it
    if target == "file":
        # the temporary beside the file may remain (as after a killed save()); never the file
        assert not (tmp_path / "w.smap").exists()
        with pytest.raises(FileNotFoundError):
            sharedmap.open(tmp_path / "w.smap")
    else:
        with pytest.raises(FileNotFoundError):
            sharedmap.sharedmap(dest)
        sharedmap.gc()  # the dead writer's temporary is collected
        assert my_shm_entries() == []


MEMORY_CHILD = r"""
import resource, sys, sharedmap
n, limit, path, source = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def pairs():
    for i in range(n):
        j = (i * 2654435761) % n
        yield f"key-{j:09d}", f"value-{j}" * 3
data = dict(pairs()) if source == "dict" else pairs()  # a dict is walked, never copied
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sharedmap.write(path, data, memory_limit=limit)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


@pytest.mark.heavy  # a sanitizer's shadow memory and quarantine are not the writer's
@pytest.mark.parametrize("source", ["generator", "dict"])
def test_memory_is_bounded_by_the_budget_not_the_map(tmp_path, source):
    # 1M unsorted pairs make a ~60 MiB snapshot; with an 8 MiB budget the writer's peak stays
    # near the budget (measured in a child, whose peak RSS is its own)
    path = tmp_path / "w.smap"
    out = run_python(MEMORY_CHILD, "1000000", str(8 << 20), str(path), source)
    grew = int(out.stdout)
    size = path.stat().st_size
    assert size > 50 << 20
    assert grew < (8 << 20) + (8 << 20), f"peak RSS grew by {grew >> 20} MiB for an 8 MiB budget"
    m = sharedmap.open(path)
    assert len(m) == 1_000_000 and m["key-000000042"] == "value-42" * 3


def test_enospc_while_writing_is_an_oserror_and_leaves_nothing():
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/unshare"):
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    child = textwrap.dedent(
        r"""
        import errno, os, sharedmap
        try:
            sharedmap.publish("enospc", ((f"k{i:08d}", "v" * 100) for i in range(50_000)),
                              temp_dir="/dev/shm")
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            print("ENOSPC")
        else:
            raise SystemExit("published 6 MB into a 1 MB tmpfs")
        assert os.listdir("/dev/shm") == [], os.listdir("/dev/shm")
        sharedmap.publish("enospc", {"a": "b"})
        print(sharedmap.sharedmap("enospc")["a"])
        """
    )
    script = f"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {sys.executable} -c '{child}'"
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, env=child_env(), timeout=120)
    if p.returncode != 0 and ("Operation not permitted" in p.stderr or "unshare failed" in p.stderr):
        pytest.skip(f"mount namespaces not permitted here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.split() == ["ENOSPC", "b"]
