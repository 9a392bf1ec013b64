"""sharedbitmap (issue 15): the original package's shared bitset, with real processes: no update
lost between processes, test_and_set claiming each index once, resizes seen by every process,
the original calls and their edge cases, and hostile files."""
import os
import pickle
import random
import stat
import subprocess
import sys

import pytest

import sharedmap
from sharedmap import sharedbitmap
from support import SHM_DIR, child_env, run_python, unique_name

SEEDS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "seeds")


def bitmap_path(name):
    return os.path.join(SHM_DIR, "sharedbitmap." + name)


@pytest.fixture
def bname():
    name = unique_name("-bits")
    yield name
    sharedbitmap.remove(name)


def test_the_original_calls():
    name = unique_name("-orig")
    b = sharedbitmap.create(name, 100, force=True)
    try:
        assert b.size() == 104  # rounded up to a whole byte, as the original reports
        b.set(100, True)
        assert b.resize(20000000) is True
        assert b.size() == 20000000
        assert b.get(15475645) is False
        assert b.get(20000000) is False  # at the end: clear, not an error
        assert b.get(100) is True
        assert sharedbitmap(name).get(100) is True
    finally:
        assert sharedbitmap.remove(name)


@pytest.mark.skipif(not os.path.exists(os.path.join(SEEDS, "original-test.py")), reason="no ../shared/seeds")
def test_the_original_packages_test_script_runs_unchanged_twice(tmp_path):
    script = os.path.join(SEEDS, "original-test.py")
    expected_tail = ["bitmap.size= 104", "bitmap.resize= 20000000", "False", "False", "True"]
    try:
        for _ in range(2):
            r = subprocess.run([sys.executable, script], capture_output=True, text=True, env=child_env(),
                               cwd=tmp_path, timeout=120)
            assert r.returncode == 0, r.stderr
            assert r.stdout.splitlines()[-5:] == expected_tail
    finally:
        sharedbitmap.remove("bbt")
        sharedmap.rbtree.remove("songkey2rid2_all_base_on_blacklist")


def test_bad_indices(bname):
    b = sharedbitmap.create(bname, 64)
    for bad in (-1, -(2**70)):
        with pytest.raises(IndexError):
            b.get(bad)
        with pytest.raises(KeyError):  # as the original raised
            b.set(bad, True)
        with pytest.raises(sharedmap.BitIndexError):
            b.test_and_set(bad)
    for past in (64, 65, 2**63, 2**70):
        assert b.get(past) is False
        assert b[past] is False
        with pytest.raises(sharedmap.BitIndexError, match="past the end"):
            b.set(past, True)
        with pytest.raises(IndexError):
            b[past] = True
    with pytest.raises(TypeError):
        b.get("1")
    with pytest.raises(TypeError):
        b.get(1.0)
    with pytest.raises(TypeError):
        del b[0]
    b.set(63)
    assert b.count() == 1 and list(b) == [63]


def test_the_whole_interface(bname):
    b = sharedbitmap.create(bname, 1000)
    assert len(b) == 1000 and b.size() == 1000
    for i in (0, 1, 63, 64, 999):
        b[i] = True
    assert b.test_and_set(5) is False and b.test_and_set(5) is True
    assert b.test_and_clear(5) is True and b.test_and_clear(5) is False
    assert list(b) == [0, 1, 63, 64, 999] and b.count() == 5
    b.set(1, False)
    assert list(b) == [0, 63, 64, 999]
    data = bytes(b.getbuffer())
    assert len(data) == 125
    assert [i for i in range(1000) if data[i // 8] >> (i % 8) & 1] == [0, 63, 64, 999]
    b.resize(64)  # a shrink clears what it hides ...
    assert list(b) == [0, 63] and b.get(999) is False
    b.resize(1000)  # ... and a grow reveals it clear
    assert list(b) == [0, 63]
    b.clear()
    assert b.count() == 0
    info = b.info()
    assert info["size"] == 1000 and info["name"] == bname and not info["superseded"]
    assert info["path"] == bitmap_path(bname)
    assert bname in repr(b)
    c = pickle.loads(pickle.dumps(b))
    b[7] = True
    assert c[7] is True  # the same bitmap, attached again by name
    with b:
        pass
    assert b.closed
    with pytest.raises(ValueError, match="closed"):
        b.get(0)
    b.close()  # again: nothing


def test_numpy_reads_the_bits_without_a_copy(bname):
    np = pytest.importorskip("numpy")
    b = sharedbitmap.create(bname, 128)
    for i in (3, 64, 127):
        b.set(i)
    bits = np.unpackbits(np.frombuffer(b.getbuffer(), dtype=np.uint8), bitorder="little")
    assert list(np.flatnonzero(bits)) == [3, 64, 127]


def test_close_refuses_while_a_buffer_is_exported_and_the_buffer_is_read_only(bname):
    b = sharedbitmap.create(bname, 64)
    view = b.getbuffer()
    assert view.readonly
    with pytest.raises(BufferError):
        b.close()
    b.set(9)
    assert view[1] == 2  # it sees the change: the same memory
    view.release()
    b.close()


def test_create_exists_force_and_names(bname):
    b = sharedbitmap.create(bname, 64)
    b.set(1)
    with pytest.raises(FileExistsError):
        sharedbitmap.create(bname, 64)
    new = sharedbitmap.create(bname, 128, force=True)  # replaced atomically
    assert new.size() == 128 and new.get(1) is False
    assert b.get(1) is True and b.info()["superseded"]  # the old one lives on for b
    assert stat.S_IMODE(os.stat(bitmap_path(bname)).st_mode) == 0o600
    with pytest.raises(FileNotFoundError):
        sharedbitmap(bname + "-none")
    for bad in ("", "a/b", "x" * 201, "nl\nname"):
        with pytest.raises(ValueError):
            sharedbitmap.create(bad, 8)
    with pytest.raises(ValueError, match="mode"):
        sharedbitmap.create(bname + "-m", 8, mode=0o4600)
    with pytest.raises(ValueError):
        sharedbitmap.create(bname + "-neg", -1)
    assert sharedbitmap.remove(bname) and not sharedbitmap.remove(bname)


def test_a_map_and_a_bitmap_of_one_name_do_not_collide(name):
    sharedmap.rbtree(a=1).share(name)
    b = sharedbitmap.create(name, 64)
    try:
        b.set(3)
        assert sharedmap.sharedmap(name)["a"] == 1
        assert sharedbitmap(name).get(3) is True
    finally:
        b.close()
        sharedbitmap.remove(name)


def test_a_file_that_is_not_a_bitmap_is_a_clear_error(bname, name):
    sharedmap.rbtree(a=1).share(name)
    with open(os.path.join(SHM_DIR, "sharedmap." + name), "rb") as f:
        snapshot = f.read()
    good = sharedbitmap.create(bname, 640)
    good.close()
    with open(bitmap_path(bname), "rb") as f:
        bitmap_bytes = f.read()
    cases = {
        "a map snapshot": snapshot,
        "random bytes": random.Random(1).randbytes(4096),
        "empty": b"",
        "truncated header": bitmap_bytes[:100],
        "truncated bits": bitmap_bytes[:140],
        "flipped header byte": bitmap_bytes[:40] + bytes([bitmap_bytes[40] ^ 1]) + bitmap_bytes[41:],
    }
    for what, data in cases.items():
        with open(bitmap_path(bname), "wb") as f:
            f.write(data)
        with pytest.raises(ValueError) as e:
            sharedbitmap(bname)
        assert isinstance(e.value, sharedmap.CorruptSnapshotError), what


# ---- real processes

SETTER = r"""
import random, sys
from sharedmap import sharedbitmap
name, seed, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b = sharedbitmap(name)
rng = random.Random(seed)
idx = [rng.randrange(size) for _ in range(n)]
sys.stdin.readline()          # all start together
for i in idx:
    b.set(i, True)
"""


def start_all(code, argsets):
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        for args in argsets
    ]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


def test_four_processes_setting_overlapping_bits_lose_no_update(bname):
    size, n = 1 << 21, 1_000_000
    b = sharedbitmap.create(bname, size)
    start_all(SETTER, [(bname, seed, n, size) for seed in range(4)])
    expected = set()
    for seed in range(4):
        rng = random.Random(seed)
        expected.update(rng.randrange(size) for _ in range(n))
    assert b.count() == len(expected)
    assert set(b) == expected


CLAIMER = r"""
import sys
from sharedmap import sharedbitmap
b = sharedbitmap(sys.argv[1])
n = int(sys.argv[2])
sys.stdin.readline()
won = [i for i in range(n) if not b.test_and_set(i)]
print(" ".join(map(str, won)))
"""


def test_test_and_set_from_four_processes_claims_each_index_exactly_once(bname):
    n = 100_000
    b = sharedbitmap.create(bname, n)
    outs = start_all(CLAIMER, [(bname, n)] * 4)
    claims = [list(map(int, out.split())) for out in outs]
    flat = [i for c in claims for i in c]
    assert len(flat) == n and sorted(flat) == list(range(n))
    assert b.count() == n


def test_a_resize_in_one_process_is_seen_by_the_others(bname):
    b = sharedbitmap.create(bname, 64)
    run_python(
        """
        import sys
        from sharedmap import sharedbitmap
        b = sharedbitmap(sys.argv[1])
        b.resize(1 << 20)
        b.set((1 << 20) - 1)
        """,
        bname,
    )
    assert b.size() == 1 << 20 and b.get((1 << 20) - 1) is True  # no reattach
    run_python("import sys; from sharedmap import sharedbitmap; sharedbitmap(sys.argv[1]).resize(8)", bname)
    assert b.size() == 8 and b.get((1 << 20) - 1) is False
    with pytest.raises(sharedmap.BitIndexError):
        b.set(8)


def test_a_reader_without_write_permission_attaches_read_only(bname):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody")
    b = sharedbitmap.create(bname, 64, mode=0o644)
    b.set(5)
    out = run_python(
        """
        import os, pwd, sys
        from sharedmap import sharedbitmap
        nobody = pwd.getpwnam("nobody")
        os.setgid(nobody.pw_gid); os.setuid(nobody.pw_uid)
        b = sharedbitmap(sys.argv[1])
        print(b.get(5), b.info()["readonly"])
        try:
            b.set(6)
        except PermissionError:
            print("read-only")
        """,
        bname,
    ).stdout.split()
    assert out == ["True", "True", "read-only"]


def test_an_index_whose_conversion_closes_the_bitmap(bname):
    b = sharedbitmap.create(bname, 64)

    class Index:
        def __index__(self):
            b.close()
            return 3

    for method in ("get", "__getitem__", "test_and_set", "test_and_clear", "set"):
        b = sharedbitmap(bname)
        with pytest.raises(ValueError, match="closed"):
            getattr(b, method)(Index())
    b = sharedbitmap(bname)
    with pytest.raises(ValueError, match="closed"):
        b[Index()] = True


def test_bitindexerror_says_its_message_and_names_the_bitmap(bname):
    b = sharedbitmap.create(bname, 8)
    with pytest.raises(sharedmap.BitIndexError) as e:
        b.set(100)
    assert str(e.value).startswith("bit index 100 is past the end")  # not KeyError's repr()
    assert e.value.name == bname and isinstance(e.value, sharedmap.Error)


def test_a_read_only_handle_pickles_read_only(bname):
    sharedbitmap.create(bname, 8).close()
    ro = sharedbitmap(bname, readonly=True)
    again = pickle.loads(pickle.dumps(ro))
    assert again.info()["readonly"]
    with pytest.raises(PermissionError):
        again.set(1)


def test_create_force_and_remove_touch_only_a_regular_file(bname, name):
    path = bitmap_path(bname)
    os.mkdir(path)
    try:
        with pytest.raises(IsADirectoryError):
            sharedbitmap.create(bname, 64, force=True)
        with pytest.raises(IsADirectoryError):
            sharedbitmap.remove(bname)
        assert os.path.isdir(path)
    finally:
        os.rmdir(path)
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(".sharedmap-tmp.") and bname in n]
    os.symlink("/dev/null", path)
    try:
        with pytest.raises(sharedmap.SymlinkError):
            sharedbitmap.create(bname, 64, force=True)
        with pytest.raises(sharedmap.SymlinkError):
            sharedbitmap.remove(bname)
        assert os.path.islink(path)
    finally:
        os.unlink(path)


def test_gc_marks_a_bitmap_a_dead_remover_left_behind(bname):
    b = sharedbitmap.create(bname, 64)
    # what a remove() killed between its rename and its retire leaves: the bitmap under an
    # unlocked temporary name
    os.rename(bitmap_path(bname), os.path.join(SHM_DIR, f".sharedmap-tmp.1.0123456789abcdef.{bname}"))
    assert not b.info()["superseded"]
    assert sharedmap.gc() >= 1
    assert b.info()["superseded"]  # gc marked it before it unlinked it
