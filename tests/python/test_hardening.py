"""Issue 10's findings outside re-entrancy: names that are not UTF-8 or hold control
characters, modes, directories and symlinks under a map's name, refresh() of a removed map,
dump() against save(), and gc racing publishers (a bounded stress test with real processes)."""
import errno
import os
import subprocess
import sys
import time

import pytest

import sharedmap
from support import child_env, run_python, unique_name


def shm_file(name):
    return os.path.join(b"/dev/shm", b"sharedmap." + os.fsencode(name))


def test_a_name_that_is_not_utf8_lists_opens_refreshes_and_removes(name):
    sharedmap.rbtree(a=1).share(name)
    odd = name + "-\udcff"  # the byte 0xff, as os.listdir() decodes it
    os.link(shm_file(name), shm_file(odd))
    try:
        assert shm_file(odd).endswith(b"-\xff")
        assert odd in [info["name"] for info in sharedmap.list_maps()]
        m = sharedmap.sharedmap(odd)
        assert m["a"] == 1 and m.name == odd
        assert m.info()["path"] == os.fsdecode(shm_file(odd))
        w = sharedmap.rbtree(a=2)
        w.share(odd, force=True)
        assert m.refresh() and m["a"] == 2
        assert sharedmap.rbtree.remove(odd)
        assert not os.path.exists(shm_file(odd))
        assert not sharedmap.rbtree.remove(odd)
    finally:
        if os.path.exists(shm_file(odd)):
            os.unlink(shm_file(odd))


@pytest.mark.parametrize("mode", [0, 0o4600, 0o2600, 0o1600, 0o10600, -1])
def test_modes_outside_the_permission_bits_are_a_valueerror(name, tmp_path, mode):
    w = sharedmap.rbtree(a=1)
    with pytest.raises(ValueError, match="mode"):
        w.share(name, mode=mode)
    with pytest.raises(ValueError, match="mode"):
        w.save(tmp_path / "x.snap", mode=mode)
    assert not os.path.exists(shm_file(name)) and not (tmp_path / "x.snap").exists()


def test_dump_is_byte_for_byte_what_save_and_share_write(name, tmp_path):
    w = sharedmap.rbtree({f"k{i}": i for i in range(1000)})
    w.save(tmp_path / "a.snap")
    w.share(name)
    dumped = w.dump()
    assert dumped == (tmp_path / "a.snap").read_bytes()
    with open(shm_file(name), "rb") as f:
        assert dumped == f.read()
    w["another"] = 1  # a new layout: a new creation time
    assert sharedmap.loads(w.dump()).info()["created"] >= sharedmap.loads(dumped).info()["created"]


def test_refresh_of_a_removed_map_sees_it_again_when_republished_here_at_once(name):
    sharedmap.rbtree(a=1).share(name)
    m = sharedmap.sharedmap(name)
    assert sharedmap.rbtree.remove(name)
    for _ in range(1000):
        assert not m.refresh() and m["a"] == 1
    sharedmap.rbtree(a=2).share(name)
    assert m.refresh() and m["a"] == 2


def test_refresh_of_a_removed_map_sees_it_republished_by_another_process(name):
    sharedmap.rbtree(a=1).share(name)
    m = sharedmap.sharedmap(name)
    run_python("import sharedmap, sys; assert sharedmap.rbtree.remove(sys.argv[1])", name)
    assert not m.refresh() and not m.refresh()
    run_python("import sharedmap, sys; sharedmap.rbtree(a=2).share(sys.argv[1])", name)
    deadline = time.monotonic() + 10
    while not m.refresh():
        assert time.monotonic() < deadline, "refresh() never saw the map republished"
    assert m["a"] == 2


def shm_str(name):
    return os.fsdecode(shm_file(name))


def debris():
    return [n for n in os.listdir("/dev/shm") if n.startswith(".sharedmap-tmp.")]


@pytest.mark.parametrize("bad", ["new\nline", "tab\there", "bell\x07", "esc\x1b[31m", "del\x7f"])
def test_names_with_control_characters_are_a_valueerror(bad):
    bad = unique_name(bad)
    w = sharedmap.rbtree(a=1)
    try:
        with pytest.raises(sharedmap.InvalidNameError):
            w.share(bad)
        with pytest.raises(ValueError):
            sharedmap.sharedmap(bad)
        with pytest.raises(ValueError):
            sharedmap.rbtree.remove(bad)
    finally:
        if os.path.lexists(shm_file(bad)):  # published after all (by the code before the fix)
            os.unlink(shm_file(bad))


def test_share_with_force_over_a_directory_is_isadirectoryerror_and_touches_nothing(name):
    os.mkdir(shm_str(name))
    try:
        before = debris()
        with pytest.raises(IsADirectoryError):
            sharedmap.rbtree(a=1).share(name, force=True)
        with pytest.raises(IsADirectoryError):
            sharedmap.rbtree.remove(name)
        assert os.path.isdir(shm_str(name))
        assert debris() == before
    finally:
        os.rmdir(shm_str(name))


def test_save_with_force_over_a_directory_is_isadirectoryerror_and_touches_nothing(tmp_path):
    d = tmp_path / "target"
    d.mkdir()
    (d / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError):
        sharedmap.rbtree(a=1).save(d, force=True)
    assert (d / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_a_symlink_under_a_map_name_is_refused_and_says_so(name, new_name, tmp_path):
    target = new_name()
    sharedmap.rbtree(a=1).share(target)
    os.symlink(shm_str(target), shm_str(name))
    try:
        with pytest.raises(OSError, match="symbolic link") as e:
            sharedmap.sharedmap(name)
        assert e.value.errno == errno.ELOOP
        with pytest.raises(OSError, match="symbolic link"):
            sharedmap.rbtree(a=2).share(name, force=True)
        assert os.path.islink(shm_str(name))
        assert sharedmap.sharedmap(target)["a"] == 1
    finally:
        os.unlink(shm_str(name))
    link = tmp_path / "link.snap"
    link.symlink_to(shm_str(target))
    with pytest.raises(OSError, match="symbolic link"):
        sharedmap.open(link)
    with pytest.raises(OSError, match="symbolic link"):
        sharedmap.rbtree(a=2).save(link, force=True)
    assert link.is_symlink()


# ---- gc racing publishers (findings 3 and 4)

STRESS_SECONDS = float(os.environ.get("SHAREDMAP_STRESS_SECONDS", "15"))

STRESS_ROLE = r"""
import ctypes, mmap, os, sys, time
import sharedmap

role, name, board_path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
fd = os.open(board_path, os.O_RDWR)
board = mmap.mmap(fd, 64)
# 8-byte words that other processes read and write with single loads and stores (struct's
# pack_into zeroes its field before it writes it: a reader could see 0 in between)
_seq = ctypes.c_int64.from_buffer(board, 0)
_stop = ctypes.c_int64.from_buffer(board, 8)
seq = lambda: _seq.value   # operations completed by the publisher
stop = lambda: _stop.value
deadline = time.monotonic() + seconds

if role == "gc":
    removed = runs = 0
    while not stop():
        removed += sharedmap.gc()
        runs += 1
    del _seq, _stop
    print(runs, removed)

elif role == "publisher":
    ops = false_removes = 0
    w = sharedmap.rbtree({"v": 0, "pad": "x" * 100})
    while time.monotonic() < deadline:
        w["v"] = ops
        w.share(name, force=True)          # republish: displaces the current version
        ops += 1
        _seq.value = ops
        if ops % 3 == 0:
            if not sharedmap.rbtree.remove(name):   # it is there: we published it
                false_removes += 1
            ops += 1
            _seq.value = ops
    _stop.value = 1
    sharedmap.rbtree.remove(name)
    del _seq, _stop
    print(ops, false_removes)

else:  # reader: every version it attaches to must learn that it was superseded
    checks = stranded = 0
    m = None
    while not stop():
        if m is None or not m.refresh():
            try:
                m = sharedmap.sharedmap(name)
            except FileNotFoundError:
                m = None
                continue
        s1 = seq()
        # whatever m shows was installed by operation s1 + 1 at the latest; the next one
        # displaced or removed it, and whoever did must have marked it superseded
        while seq() < s1 + 2 and not stop():
            pass
        if stop():
            break
        checks += 1
        if not m.info()["superseded"]:
            stranded += 1
    del _seq, _stop  # the mmap cannot close while they export its buffer
    print(checks, stranded)
"""


@pytest.mark.heavy
def test_gc_in_a_loop_beside_publish_republish_and_remove_strands_no_reader(name, tmp_path):
    """A cron `sharedmap gc` beside a periodic publisher: no reader is ever left attached to
    a version nobody marked superseded, and remove() never says False for a map it removed."""
    board = tmp_path / "board"
    board.write_bytes(bytes(64))
    env_args = [name, str(board), str(STRESS_SECONDS)]

    def start(role):
        return subprocess.Popen(
            [sys.executable, "-c", STRESS_ROLE, role, *env_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )

    procs = {role: start(role) for role in ("gc", "publisher", "reader", "reader2")}
    out = {}
    for role, p in procs.items():
        o, e = p.communicate(timeout=STRESS_SECONDS + 120)
        assert p.returncode == 0, f"{role}: {e}"
        out[role] = tuple(int(x) for x in o.split())
    ops, false_removes = out["publisher"]
    checks = out["reader"][0] + out["reader2"][0]
    stranded = out["reader"][1] + out["reader2"][1]
    print(f"publisher ops {ops}, gc runs {out['gc'][0]} (removed {out['gc'][1]}), "
          f"reader checks {checks}")
    assert ops > 100 and checks > 100, "too little happened to prove anything"
    assert (stranded, false_removes) == (0, 0), (
        f"{stranded} of {checks} attached versions were never marked superseded; "
        f"remove() said False for {false_removes} maps it removed"
    )
