"""Issue 10's findings outside re-entrancy: names that are not UTF-8 or hold control
characters, modes, directories and symlinks under a map's name, refresh() of a removed map,
dump() against save(), and gc racing publishers (a bounded stress test with real processes)."""
import os
import time

import pytest

import sharedmap
from support import run_python


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
