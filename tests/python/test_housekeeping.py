"""Listing the published maps and collecting the debris of crashed publishes."""
import fcntl
import os
import time

import sharedmap
from support import SHM_DIR, unique_name


def test_list_maps(new_name):
    a, b = new_name("-a"), new_name("-b")
    before = time.time()
    sharedmap.rbtree({"x": 1, "y": 2}).share(a)
    sharedmap.rbtree({b"k": b"v"}).share(b)
    maps = {m["name"]: m for m in sharedmap.list_maps()}
    assert maps[a]["entries"] == 2 and maps[b]["entries"] == 1
    assert maps[a]["size"] == os.stat(os.path.join(SHM_DIR, "sharedmap." + a)).st_size
    assert maps[a]["key_kind"] == "str" and maps[b]["key_kind"] == "bytes"
    assert before - 60 < maps[a]["created"] < time.time() + 1
    assert maps[a]["error"] is None
    names = [m["name"] for m in sharedmap.list_maps()]
    assert names == sorted(names)
    sharedmap.rbtree.remove(a)
    assert a not in {m["name"] for m in sharedmap.list_maps()}


def test_list_maps_reports_unreadable_ones(new_name):
    name = new_name("-garbage")
    with open(os.path.join(SHM_DIR, "sharedmap." + name), "wb") as f:
        f.write(b"not a snapshot at all" * 10)
    entry = {m["name"]: m for m in sharedmap.list_maps()}[name]
    assert entry["entries"] is None and entry["key_kind"] is None
    assert entry["size"] == 210
    assert "magic" in entry["error"]


def test_gc_removes_orphaned_temporaries_only():
    # Temporaries are named .sharedmap-tmp.PID.RANDOM.NAME and locked by their writer
    # (src/publish.c): an unlocked one is debris of a dead writer, a locked one is a
    # publish in progress.
    orphan = os.path.join(SHM_DIR, f".sharedmap-tmp.1.0123456789abcdef.{unique_name()}")
    busy = os.path.join(SHM_DIR, f".sharedmap-tmp.1.fedcba9876543210.{unique_name()}")
    for path in (orphan, busy):
        with open(path, "wb") as f:
            f.write(b"partial")
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        removed = sharedmap.gc()
        assert removed >= 1
        assert not os.path.exists(orphan)
        assert os.path.exists(busy)
    finally:
        os.close(fd)
        os.unlink(busy)
    assert sharedmap.gc() >= 0


def test_gc_and_list_of_another_directory(tmp_path):
    assert sharedmap.gc(str(tmp_path)) == 0
    assert sharedmap._sharedmap._list(str(tmp_path)) == []
