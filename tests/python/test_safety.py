"""Republishing, refresh, crash safety, space, names and permissions (issue 4), with real
processes: a writer killed at random moments, readers racing a writer, a full tmpfs of our
own in a private mount namespace, a reader that is not the owner."""
import errno
import itertools
import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

import sharedmap
from support import SHM_DIR, child_env, run_python

KILL_TRIALS = int(os.environ.get("SHAREDMAP_KILL_TRIALS", "200"))
RACE_SECONDS = float(os.environ.get("SHAREDMAP_RACE_SECONDS", "4"))


def shm_path(name):
    return os.path.join(SHM_DIR, "sharedmap." + name)


def versioned(tag, n):
    """A map whose every value names its version, and whose size tells it too."""
    w = sharedmap.rbtree()
    for i in range(n):
        w[f"k{i:07d}"] = f"{tag}:{i}"
    return w


def check_whole(m, sizes):
    """m must be one complete version: its length is one of sizes and every value agrees."""
    n = len(m)
    tag = sizes[n]
    for i in (0, n // 2, n - 1):
        assert m[f"k{i:07d}"] == f"{tag}:{i}"
    return tag


# ---------------------------------------------------------------- atomic replace, race


RACE_READER = r"""
import sys, time, sharedmap
name, seconds = sys.argv[1], float(sys.argv[2])
sizes = {1000: "A", 1500: "B"}
attaches = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    with sharedmap.sharedmap(name) as m:          # FileNotFoundError would fail the test
        n = len(m)
        tag = sizes[n]
        for i in (0, 1, n // 3, n // 2, n - 2, n - 1):
            v = m[f"k{i:07d}"]
            assert v == f"{tag}:{i}", (n, i, v)
        assert sum(1 for _ in m) == n
    attaches += 1
print(attaches)
"""


def test_readers_racing_a_republishing_writer_see_only_whole_versions(name):
    a, b = versioned("A", 1000), versioned("B", 1500)
    a.share(name)
    readers = [
        subprocess.Popen([sys.executable, "-c", RACE_READER, name, str(RACE_SECONDS)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        for _ in range(2)
    ]
    published = 0
    deadline = time.monotonic() + RACE_SECONDS + 0.5
    while time.monotonic() < deadline:
        (b if published % 2 == 0 else a).share(name, force=True)
        published += 1
    attaches = 0
    for p in readers:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        attaches += int(out)
    print(f"race: {published} publishes, {attaches} attaches, 0 failures")
    assert published > 10 and attaches > 10


def test_force_replaces_and_attached_readers_keep_their_version(name):
    versioned("A", 1000).share(name)
    old = sharedmap.sharedmap(name)
    assert versioned("B", 1500).share(name, force=True) is True
    assert check_whole(old, {1000: "A", 1500: "B"}) == "A"
    out = run_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(len(m), m["k0000001"])
        """,
        name,
    ).stdout.split()
    assert out == ["1500", "B:1"]
    old.close()


# ---------------------------------------------------------------- refresh


def mapped_versions(name):
    """How many distinct snapshots named name this process has mapped."""
    inodes = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) < 6:
                continue
            # a replaced version shows the (temporary) name it was unlinked under
            path = parts[5].rstrip("\n").removesuffix(" (deleted)")
            if path.startswith(SHM_DIR + "/") and (path.endswith("sharedmap." + name)
                                                  or path.endswith("." + name)):
                inodes.add(parts[4])
    return len(inodes)


def test_refresh_moves_to_the_new_version_and_frees_the_old(name):
    versioned("A", 1000).share(name)
    m = sharedmap.sharedmap(name)
    assert m.refresh() is False  # nothing changed: no reopen
    assert mapped_versions(name) == 1
    it = iter(m.items())
    view = m.getbuffer("k0000000")
    run_python(
        """
        import sys, sharedmap
        w = sharedmap.rbtree((f"k{i:07d}", f"B:{i}") for i in range(1500))
        w.share(sys.argv[1], force=True)
        """,
        name,
    )
    assert len(m) == 1000  # still the version it had
    assert m.refresh() is True
    assert len(m) == 1500 and m["k0000001"] == "B:1"
    assert m.refresh() is False
    # what was taken from the old version keeps working on it, and keeps it mapped
    assert next(it) == ("k0000000", "A:0")
    assert bytes(view) == b"A:0"
    assert mapped_versions(name) == 2
    del it
    view.release()
    del view
    assert mapped_versions(name) == 1  # the old version is unmapped: its memory is freed


def test_refresh_after_remove_keeps_the_current_version(name):
    versioned("A", 1000).share(name)
    m = sharedmap.sharedmap(name)
    assert sharedmap.rbtree.remove(name) is True
    assert m.refresh() is False
    assert len(m) == 1000
    versioned("B", 1500).share(name)
    assert m.refresh() is True and len(m) == 1500


def test_old_version_memory_is_returned_to_the_tmpfs(name):
    big = sharedmap.rbtree((f"k{i:07d}", "x" * 200) for i in range(100_000))
    big.share(name)
    m = sharedmap.sharedmap(name)

    def free():
        st = os.statvfs(SHM_DIR)
        return st.f_bavail * st.f_frsize

    before = free()
    versioned("B", 10).share(name, force=True)  # the 20 MB version is now unlinked, still mapped
    assert free() < before + 10_000_000
    m.refresh()
    assert free() > before + 10_000_000  # last reader let go: its pages are back


# ---------------------------------------------------------------- crash safety


KILLED_WRITER = r"""
import os, sys, sharedmap
name, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
w = sharedmap.rbtree((f"k{i:07d}", f"{tag}:{i}") for i in range(n))
os.write(1, b"ready\n")
sys.stdin.readline()
while True:
    w.share(name, force=True)
"""


def test_writer_killed_at_random_moments_never_leaves_a_partial_map(name):
    """SIGKILL a writer that publishes in a loop, at random moments; every time, what the name
    shows must be a whole, verified version, and no debris may outlive gc()."""
    sizes = {20_000: "A", 30_000: "B"}
    versioned("A", 20_000).share(name)
    rng = random.Random(4)
    seen = {"A": 0, "B": 0}
    for trial in range(KILL_TRIALS):
        tag = "B" if trial % 2 == 0 else "A"
        n = 30_000 if tag == "B" else 20_000
        p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, name, tag, str(n)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
        assert p.stdout.readline() == b"ready\n"
        p.stdin.write(b"go\n")
        p.stdin.flush()
        time.sleep(rng.uniform(0, 0.03))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdin.close()
        p.stdout.close()
        with sharedmap.sharedmap(name) as m:
            m.verify()
            seen[check_whole(m, sizes)] += 1
        sharedmap.gc()
        debris = [f for f in os.listdir(SHM_DIR) if f.startswith(".sharedmap-tmp.") and f.endswith(name)]
        assert debris == []
    print(f"kill test: {KILL_TRIALS} trials, versions seen {seen}, 0 partial maps")


def test_gc_removes_only_debris_of_dead_writers(name):
    import fcntl

    dead = os.path.join(SHM_DIR, f".sharedmap-tmp.999999.0000000000000001.{name}")
    live = os.path.join(SHM_DIR, f".sharedmap-tmp.{os.getpid()}.0000000000000002.{name}")
    for path in (dead, live):
        with open(path, "wb") as f:
            f.write(b"half a snapshot")
    holder = open(live, "rb")
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a writer does while it writes
    try:
        versioned("A", 10).share(name)
        assert sharedmap.gc() >= 1
        assert not os.path.exists(dead)
        assert os.path.exists(live)
        assert name in [d["name"] for d in sharedmap.list_maps()]  # debris never listed as a map
        assert len(sharedmap.sharedmap(name)) == 10
    finally:
        holder.close()
        sharedmap.gc()
    assert not os.path.exists(live)


# ---------------------------------------------------------------- space


ENOSPC_CHILD = r"""
import errno, os, sys, sharedmap
w = sharedmap.rbtree((f"k{i:07d}", "v" * 100) for i in range(50_000))   # ~6 MB
try:
    w.share("enospc-test")
except OSError as e:
    assert e.errno == errno.ENOSPC, e
    print("ENOSPC", e)
else:
    raise SystemExit("published 6 MB into a 1 MB tmpfs")
assert [f for f in os.listdir("/dev/shm")] == [], os.listdir("/dev/shm")   # nothing left behind
small = sharedmap.rbtree({"a": "b"})
small.share("enospc-test")                                # and there is room again
print(sharedmap.sharedmap("enospc-test")["a"])
"""


def test_full_tmpfs_is_an_oserror_at_publish_time_not_a_sigbus():
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/unshare"):
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    script = (
        "mount -t tmpfs -o size=1m tmpfs /dev/shm && "
        f"exec {sys.executable} -c '{ENOSPC_CHILD}'"
    )
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, env=child_env(), timeout=120)
    if p.returncode != 0 and ("Operation not permitted" in p.stderr or "unshare failed" in p.stderr):
        pytest.skip(f"mount namespaces not permitted here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("ENOSPC") and "No space left" in lines[0]
    assert lines[1] == "b"


# ---------------------------------------------------------------- names and permissions


@pytest.mark.parametrize("bad", ["", "a/b", "/abs", "x" * 201, "nul\0inside"])
def test_invalid_names_are_a_valueerror(bad):
    w = sharedmap.rbtree({"a": "b"})
    with pytest.raises(ValueError):
        w.share(bad)
    with pytest.raises(ValueError):
        sharedmap.sharedmap(bad)
    with pytest.raises(ValueError):
        sharedmap.rbtree.remove(bad)


def test_longest_name_works(new_name):
    name = new_name()
    name = name + "n" * (200 - len(name.encode()))
    sharedmap.rbtree({"a": "b"}).share(name)
    try:
        assert sharedmap.sharedmap(name)["a"] == "b"
    finally:
        sharedmap.rbtree.remove(name)


def test_modes_are_exact_whatever_the_umask(name, new_name):
    old = os.umask(0o077)
    try:
        sharedmap.rbtree({"a": "b"}).share(name)
        assert stat.S_IMODE(os.stat(shm_path(name)).st_mode) == 0o600
        other = new_name()
        sharedmap.rbtree({"a": "b"}).share(other, mode=0o640)
        assert stat.S_IMODE(os.stat(shm_path(other)).st_mode) == 0o640
    finally:
        os.umask(old)


def test_symlinks_are_never_followed(name, new_name, tmp_path):
    target = new_name()
    sharedmap.rbtree({"a": "b"}).share(target)
    os.symlink(shm_path(target), shm_path(name))
    try:
        with pytest.raises(OSError) as e:
            sharedmap.sharedmap(name)
        assert e.value.errno == errno.ELOOP
        link = tmp_path / "link.snap"
        link.symlink_to(shm_path(target))
        with pytest.raises(OSError) as e:
            sharedmap.open(link)
        assert e.value.errno == errno.ELOOP
    finally:
        os.unlink(shm_path(name))  # remove() refuses a symlink under a map name (src/publish.c)


AS_NOBODY = r"""
import os, pwd, sys, sharedmap
nobody = pwd.getpwnam("nobody")
os.setgid(nobody.pw_gid); os.setuid(nobody.pw_uid)
private, public = sys.argv[1], sys.argv[2]
try:
    sharedmap.sharedmap(private)
except PermissionError as e:
    print("PermissionError")
m = sharedmap.sharedmap(public)        # read-only access is all a reader needs
print(m["a"], m.refresh())
try:
    sharedmap.rbtree({"x": "y"}).share(public, force=True)
except PermissionError:
    print("cannot replace")
"""


def test_other_users_get_permissionerror_and_read_only_access_is_enough(name, new_name):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as nobody")
    public = new_name()
    sharedmap.rbtree({"a": "b"}).share(name)  # 0600
    sharedmap.rbtree({"a": "c"}).share(public, mode=0o644)
    out = run_python(AS_NOBODY, name, public).stdout.split()
    assert out == ["PermissionError", "c", "False", "cannot", "replace"]


# ---------------------------------------------------------------- hostile snapshots


def test_every_truncation_and_byte_flip_is_a_valueerror_or_harmless():
    w = sharedmap.rbtree({f"key{i}": (i if i % 3 else f"val{i}") for i in range(40)})
    data = w.dump()
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            sharedmap.loads(data[:cut])
    rng = random.Random(7)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        try:
            m = sharedmap.loads(bytes(bad))
        except ValueError:
            continue
        # opened (the flip was in the body): every operation works or raises ValueError
        for op in (lambda: list(m.items()), lambda: [m.get(f"key{i}") for i in range(40)],
                   lambda: list(m.irange("key1", "key3")), lambda: list(m.prefix("key2")),
                   lambda: list(reversed(m))):
            try:
                op()
            except (ValueError, KeyError):
                pass
        if pos >= 128:
            with pytest.raises(ValueError):
                m.verify()


def test_iteration_hands_out_every_entry_it_reaches_before_a_damaged_record():
    # Record 40 of 100 made unreadable (its key length a varint longer than 10 bytes).  Walking
    # forward yields ranks 0..39, then ValueError; backward, every rank from the top down that
    # peekitem can still reach (records after the damaged one in its own block cannot be), then
    # ValueError.  Iterators decode in batches; what they hand out must not depend on that.
    import fmtreader
    data = {f"key{i:03}": f"value-{i:03}" for i in range(100)}
    dump = bytearray(sharedmap.rbtree(data).dump())
    rec = list(fmtreader.Snapshot(dump).records())[40]
    dump[rec.offset:rec.offset + 11] = b"\xff" * 11
    m = sharedmap.loads(bytes(dump))
    items = sorted(data.items())
    reachable_from_top = []
    for rank in range(99, -1, -1):
        try:
            reachable_from_top.append(m.peekitem(rank))
        except ValueError:
            break
    assert 0 < len(reachable_from_top) < 59  # the damaged block is reached before rank 40
    cases = [(lambda: m.items(), items[:40]), (lambda: m.keys(), [k for k, _ in items[:40]]),
             (lambda: m.irange("key010", "key090"), [k for k, _ in items[10:40]]),
             (lambda: reversed(m.items()), reachable_from_top),
             (lambda: m.irange("key010", "key090", reverse=True),
              [k for k, _ in reachable_from_top if k <= "key090"])]
    for make_iter, expected in cases:
        got = []
        with pytest.raises(ValueError, match="corrupt|damaged"):
            for x in make_iter():
                got.append(x)
        assert got == expected
        for step in range(1, 4):  # also when taken a few at a time, with a fresh iterator
            it, got = iter(make_iter()), []
            with pytest.raises(ValueError):
                while len(got) <= len(data):  # bounded, should the error never come
                    got.extend(itertools.islice(it, step))
            assert got == expected


def test_a_file_that_is_not_a_snapshot_is_a_valueerror(tmp_path):
    for content in (b"", b"hello", b"\x89SMP\r\n\x1a\n" + b"\0" * 200, os.urandom(4096)):
        p = tmp_path / "x.snap"
        p.write_bytes(content)
        with pytest.raises(ValueError):
            sharedmap.open(p)
