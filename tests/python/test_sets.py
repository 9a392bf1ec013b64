"""Map sets (issue 13): a directory of range-partitioned shards opened as one map with the whole
reader API, published packed under one name, republished atomically, and every damaged set a
clear error at open."""
import os
import pickle
import shutil

import pytest

import sharedmap
from support import run_python


def make_parts(d, n_parts):
    keys = sorted(d)
    step = -(-len(keys) // n_parts)
    return [[(k, d[k]) for k in keys[i : i + step]] for i in range(0, len(keys), step)]


@pytest.fixture
def data():
    return {f"key-{i * 7919 % 20000:05d}": i for i in range(20000)}


@pytest.fixture
def set_dir(tmp_path, data):
    path = tmp_path / "set"
    assert sharedmap.write_set(path, make_parts(data, 16), sorted=True) == len(data)
    return path


def check_same(m, d):
    """m answers as the dict d (through a single snapshot of d, the reference)."""
    ref = sharedmap.loads(sharedmap.rbtree(d).dump())
    assert len(m) == len(ref) and m == d
    assert list(m) == list(ref) and list(reversed(m)) == list(reversed(ref))
    keys = list(ref)
    probes = keys[::97] + [keys[0] + "!", "", "zzz", keys[-1] + "\0"]
    for k in probes:
        assert m.get(k) == ref.get(k)
        assert (k in m) == (k in ref)
        assert m.bisect_left(k) == ref.bisect_left(k) and m.bisect_right(k) == ref.bisect_right(k)
    assert m.get_many(probes) == ref.get_many(probes)
    for lo, hi in [(None, None), (keys[100], keys[5000]), (keys[1249], keys[1251]), ("a", "key-1")]:
        assert list(m.irange(lo, hi)) == list(ref.irange(lo, hi))
        assert list(m.irange(lo, hi, inclusive=(False, False), reverse=True)) == list(
            ref.irange(lo, hi, inclusive=(False, False), reverse=True))
    for p in ["key-1", "key-12", "key-0999", "key-2", "nope", ""]:
        assert list(m.prefix(p)) == list(ref.prefix(p))
    for i in [0, 1, 1249, 1250, 1251, len(keys) - 1, -1]:
        assert m.peekitem(i) == ref.peekitem(i)
        assert m.index(keys[i]) == ref.index(keys[i])
    assert list(m.items())[::1000] == list(ref.items())[::1000]


def test_a_set_reads_as_one_map(set_dir, data):
    m = sharedmap.open(set_dir)
    check_same(m, data)
    m.verify()
    parts = sharedmap.shards(m)
    assert len(parts) == 16 and parts[0].lower is None
    assert sum(p.entries for p in parts) == len(data)
    assert [p.lower for p in parts[1:]] == sorted(p.lower for p in parts[1:])
    check_same(sharedmap.open(set_dir / "MANIFEST"), data)
    # pickled by reference: the path, opened again in the other process
    m2 = pickle.loads(pickle.dumps(m))
    assert m2 == data
    out = run_python(
        """
        import pickle, sys, sharedmap
        m = pickle.loads(bytes.fromhex(sys.argv[1]))
        print(len(m), m["key-00042"], len(sharedmap.shards(m)))
        """,
        pickle.dumps(m).hex(),
    )
    assert out.stdout.split() == [str(len(data)), str(data["key-00042"]), "16"]


def test_int_and_bytes_sets(tmp_path):
    ints = {i * 1_000_003 - 10**9: float(i) for i in range(5000)}
    sharedmap.write_set(tmp_path / "i", make_parts(ints, 7))
    m = sharedmap.open(tmp_path / "i")
    assert m == ints and list(m) == sorted(ints)
    assert m.get_many([-10**9, 0, 1_000_003 * 4999 - 10**9]) == [0.0, None, 4999.0]
    assert list(m.irange(-5, 3_000_010)) == [k for k in sorted(ints) if -5 <= k <= 3_000_010]
    byt = {bytes([i % 256, i // 256]): i for i in range(3000)}
    sharedmap.write_set(tmp_path / "b", make_parts(byt, 5))
    assert sharedmap.open(tmp_path / "b") == byt


def test_published_packed_under_one_name(set_dir, data, new_name):
    name = new_name()
    sharedmap.load_set(set_dir, name)
    m = sharedmap.sharedmap(name)
    check_same(m, data)
    assert len(sharedmap.shards(m)) == 16
    out = run_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(len(m), m["key-19999"], m.peekitem(-1)[0])
        """,
        name,
    )
    assert out.stdout.split() == [str(len(data)), str(data["key-19999"]), "key-19999"]
    listed = {e["name"]: e for e in sharedmap.list_maps()}[name]
    assert listed["entries"] == len(data) and listed["error"] is None
    with pytest.raises(FileExistsError):
        sharedmap.load_set(set_dir, name)
    # republished as a whole: readers of the old set move with refresh()
    smaller = {k: -v for k, v in list(data.items())[:100]}
    sharedmap.write_set(set_dir, make_parts(smaller, 3), force=True)
    sharedmap.load_set(set_dir, name, force=True)
    assert len(m) == len(data)
    assert m.refresh() and m == smaller and len(sharedmap.shards(m)) == 3


def test_rewritten_set_refreshes_and_keeps_two_versions(set_dir, data):
    m = sharedmap.open(set_dir)
    before = set(os.listdir(set_dir))
    with pytest.raises(FileExistsError):
        sharedmap.write_set(set_dir, make_parts(data, 2))
    assert set(os.listdir(set_dir)) == before  # the refused write left nothing
    sharedmap.write_set(set_dir, make_parts({"a": 1, "b": 2}, 2), force=True)
    assert m.refresh() and m == {"a": 1, "b": 2}
    sharedmap.write_set(set_dir, make_parts({"c": 3}, 1), force=True)
    assert m.refresh() and m == {"c": 3}
    # the shard files of this version and the one it replaced; the first version's are gone
    assert not (before - {"MANIFEST"}) & set(os.listdir(set_dir))
    assert len(os.listdir(set_dir)) == 1 + 2 + 1


def test_parts_out_of_order_are_refused(tmp_path):
    with pytest.raises(sharedmap.CorruptSnapshotError, match="shard"):
        sharedmap.write_set(tmp_path / "s", [[("b", 1), ("d", 2)], [("c", 3)]])
    with pytest.raises(sharedmap.OrderError):
        sharedmap.write_set(tmp_path / "t", [[("b", 1)], [("d", 2)], [("c", 3)]])
    with pytest.raises(sharedmap.KeyKindError):
        sharedmap.write_set(tmp_path / "u", [[("b", 1)], [(5, 2)]])
    for d in ("s", "t", "u"):
        assert os.listdir(tmp_path / d) == []  # no manifest, no shard left


def test_commit_shards_from_a_staging_directory(tmp_path):
    """What sharedmap.spark does: shards written into a staging directory in the set's, moved
    into the set by commit_shards(); after a failure abandon() removes both."""
    from sharedmap import sets

    path, gen = tmp_path / "set", sets.new_generation()
    staging = path / f".staging-{gen}"
    os.makedirs(staging)
    done = []
    for i, part in enumerate([[("a", 1), ("b", 2)], [], [("c", 3)]]):
        name = sets.shard_file(gen, i)
        done.append((i, name, sharedmap.write(staging / name, part, sorted=True), part[0][0] if part else None))
    (staging / "a-late-attempt").write_bytes(b"")
    assert sets.commit_shards(path, gen, reversed(done), staging=staging) == 3
    assert sharedmap.open(path) == {"a": 1, "b": 2, "c": 3}
    assert sorted(os.listdir(path)) == ["MANIFEST", done[0][1], done[2][1]]  # no staging, no empty shard
    # a failure after some shards were moved: abandon() leaves the set that was there
    gen2 = sets.new_generation()
    staging = path / f".staging-{gen2}"
    os.makedirs(staging)
    sharedmap.write(staging / sets.shard_file(gen2, 0), [("x", 1)])
    sharedmap.write(path / sets.shard_file(gen2, 1), [("y", 1)])
    sets.abandon(path, gen2, staging=staging)
    assert sorted(os.listdir(path)) == ["MANIFEST", done[0][1], done[2][1]]


@pytest.mark.parametrize("damage", ["missing", "truncated", "swapped", "replaced", "manifest"])
def test_a_damaged_set_is_an_error_at_open(set_dir, data, damage):
    names = sorted(f for f in os.listdir(set_dir) if f != "MANIFEST")
    a, b = set_dir / names[3], set_dir / names[4]
    if damage == "missing":
        a.unlink()
        match, cls = "shard 3 .*No such file", sharedmap.CorruptSnapshotError
    elif damage == "truncated":
        os.truncate(a, a.stat().st_size - 8)
        match, cls = "shard 3 .*size does not match", sharedmap.CorruptSnapshotError
    elif damage == "swapped":
        a.rename(set_dir / "x")
        b.rename(a)
        (set_dir / "x").rename(b)
        match, cls = "shard 3 .*not the one its manifest names", sharedmap.CorruptSnapshotError
    elif damage == "replaced":  # the same entries, written again: another snapshot
        part = dict(sharedmap.open(a))
        a.unlink()
        sharedmap.write(a, part)
        match, cls = "shard 3 .*not the one its manifest names", sharedmap.CorruptSnapshotError
    else:
        raw = bytearray((set_dir / "MANIFEST").read_bytes())
        raw[200] ^= 1
        (set_dir / "MANIFEST").write_bytes(bytes(raw))
        match, cls = "manifest is corrupt", sharedmap.CorruptSnapshotError
    with pytest.raises(cls, match=match) as e:
        sharedmap.open(set_dir)
    assert isinstance(e.value, ValueError) and e.value.path == str(set_dir)


def test_a_reader_of_a_set_whose_shards_go_keeps_reading(set_dir, data):
    m = sharedmap.open(set_dir)
    shutil.rmtree(set_dir)
    assert m == data  # its shards stay mapped
    assert not m.refresh()


def test_getbuffer_of_a_value_in_a_shard(tmp_path):
    """A set's values live in its shards, not in the manifest: getbuffer() is their bytes."""
    sharedmap.write_set(tmp_path / "s", [[("a", "AAA")], [("b", b"BBB")]])
    m = sharedmap.open(tmp_path / "s")
    assert bytes(m.getbuffer("a")) == b"AAA"
    view = m.getbuffer("b")
    m.close()
    assert bytes(view) == b"BBB"
