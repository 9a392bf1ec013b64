"""The original sharedmap API (SPEC §1, issue 2), with writers and readers in separate processes."""
import os
import subprocess
import sys

import pytest

import sharedmap
from support import SHM_DIR, child_env, finish, run_python, spawn_python, tell

# The README example of the original package, verbatim (its indentation is tabs).
SEED_WRITER = """import sharedmap

def t1():
\twmap = sharedmap.rbtree();
\twmap.set("aaa","323");
\twmap.set("zb","1233");
\twmap.set("tes","32z");
\twmap.set("红","32是");
\tprint(wmap.get("tes"));
\twmap.share("test:3325",force=True);


print("测试写入");
t1();
"""

SEED_READER = """

def t2():
\trmap = sharedmap.sharedmap("test:3325");
\tprint(rmap.get("红"));

print("测试读取");
t2();
"""


def run_file(path):
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, env=child_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    return proc.stdout.decode("utf-8")


@pytest.fixture
def seed_cleanup():
    yield
    sharedmap.rbtree.remove("test:3325")


def test_seed_example_writer_and_reader_in_separate_processes(tmp_path, seed_cleanup):
    writer = tmp_path / "writer.py"
    writer.write_text(SEED_WRITER, encoding="utf-8")
    # The reader half of the example, in its own process (it needs the import too).
    reader = tmp_path / "reader.py"
    reader.write_text("import sharedmap\n" + SEED_READER, encoding="utf-8")
    assert run_file(writer) == "测试写入\n32z\n"
    assert run_file(reader) == "测试读取\n32是\n"


def test_seed_example_whole_file_unchanged(tmp_path, seed_cleanup):
    script = tmp_path / "seed.py"
    script.write_text(SEED_WRITER + SEED_READER, encoding="utf-8")
    assert run_file(script) == "测试写入\n32z\n测试读取\n32是\n"


ALL_TYPES = {
    "str": "红",
    "empty": "",
    "bytes": b"\x00\xff",
    "int": -(2**63),
    "big": 2**63 - 1,
    "float": -0.0,
    "inf": float("inf"),
    "true": True,
    "false": False,
    "none": None,
}


def test_share_then_attach_from_another_process(name):
    w = sharedmap.rbtree(ALL_TYPES)
    assert w.share(name) is True
    out = run_python(
        """
        import math, sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(sorted((k, type(v).__name__, repr(v)) for k, v in m.items()))
        """,
        name,
    ).stdout
    expected = sorted((k, type(v).__name__, repr(v)) for k, v in ALL_TYPES.items())
    assert out.strip() == repr(expected)


def test_attach_in_this_process_to_a_map_shared_by_another(name):
    run_python(
        """
        import sys, sharedmap
        w = sharedmap.rbtree()
        w.set("a", "1")
        w["b"] = 2
        w.share(sys.argv[1])
        """,
        name,
    )
    m = sharedmap.sharedmap(name)
    assert dict(m) == {"a": "1", "b": 2}
    assert m.get("a") == "1"
    assert m.get("zz") is None


def test_share_without_force_raises_file_exists_and_keeps_the_old_map(name):
    sharedmap.rbtree({"v": 1}).share(name)
    with pytest.raises(FileExistsError) as info:
        sharedmap.rbtree({"v": 2}).share(name)
    assert info.value.filename == name
    assert sharedmap.sharedmap(name)["v"] == 1
    # force=False spelled out, and positional force
    with pytest.raises(FileExistsError):
        sharedmap.rbtree({"v": 2}).share(name, force=False)
    with pytest.raises(FileExistsError):
        sharedmap.rbtree({"v": 2}).share(name, False)


def test_force_replaces_the_map_and_attached_readers_keep_their_version(name):
    sharedmap.rbtree({"v": "old"}).share(name)
    with spawn_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(m["v"])
        sys.stdin.readline()               # the parent replaces the map now
        print(m["v"], sharedmap.sharedmap(sys.argv[1])["v"])
        """,
        name,
    ) as child:
        assert child.stdout.readline() == "old\n"
        assert sharedmap.rbtree({"v": "new"}).share(name, force=True) is True
        tell(child)
        assert finish(child) == "old new\n"
    assert sharedmap.sharedmap(name)["v"] == "new"


def test_remove_while_a_reader_is_attached(name):
    sharedmap.rbtree({"k": "v", "n": 5}).share(name)
    with spawn_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print("attached")
        sys.stdin.readline()               # the parent removes the map now
        print(m["k"], m.get("n"), len(m), sorted(m))
        try:
            sharedmap.sharedmap(sys.argv[1])
        except FileNotFoundError as e:
            print("FileNotFoundError", e.filename)
        """,
        name,
    ) as child:
        assert child.stdout.readline() == "attached\n"
        assert sharedmap.rbtree.remove(name) is True
        tell(child)
        assert finish(child) == f"v 5 2 ['k', 'n']\nFileNotFoundError {name}\n"
    assert not os.path.exists(os.path.join(SHM_DIR, "sharedmap." + name))


def test_remove_from_another_process_and_remove_twice(name):
    sharedmap.rbtree({"a": 1}).share(name)
    out = run_python(
        "import sys, sharedmap; print(sharedmap.rbtree.remove(sys.argv[1]))", name
    ).stdout
    assert out == "True\n"
    assert sharedmap.rbtree.remove(name) is False
    with pytest.raises(FileNotFoundError):
        sharedmap.sharedmap(name)
    # the name can be used again
    sharedmap.rbtree({"a": 2}).share(name)
    assert sharedmap.sharedmap(name)["a"] == 2


def test_attach_to_a_missing_map(name):
    with pytest.raises(FileNotFoundError) as info:
        sharedmap.sharedmap(name)
    assert info.value.filename == name


def test_missing_keys(name):
    w = sharedmap.rbtree({"a": "1"})
    w.share(name)
    for m in (w, sharedmap.sharedmap(name)):
        assert m.get("b") is None
        assert m.get("b", 7) == 7
        assert "b" not in m
        with pytest.raises(KeyError) as info:
            m["b"]
        assert info.value.args == ("b",)


def test_empty_map(name):
    w = sharedmap.rbtree()
    assert w.get("x") is None and len(w) == 0 and not w
    w.share(name)
    m = sharedmap.sharedmap(name)
    assert len(m) == 0 and not m and list(m) == [] and dict(m) == {}
    # no key kind yet: either kind is a fine question, with no answer
    assert m.get("x") is None and m.get(b"x") is None
    assert "x" not in m and b"x" not in m
    assert m.info()["key_kind"] is None
    assert run_python("import sys, sharedmap; print(len(sharedmap.sharedmap(sys.argv[1])))", name).stdout == "0\n"


@pytest.mark.parametrize("key", ["", b""])
def test_empty_key_and_empty_value(name, key):
    w = sharedmap.rbtree()
    w.set(key, key)
    w.set(key * 0 + (b"x" if isinstance(key, bytes) else "x"), "")
    w.share(name)
    m = sharedmap.sharedmap(name)
    assert m[key] == key and type(m[key]) is type(key)
    assert list(m)[0] == key  # the empty key sorts first


def test_non_ascii_and_nul_keys_across_processes(name):
    keys = ["a\0b", "\0", "a", "a\0", "红", "😀", "é", "e\u0301", "\uffff", "\U0010ffff", "Ω≈ç√"]
    w = sharedmap.rbtree({k: k[::-1] for k in keys})
    w.share(name)
    out = run_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(ascii(list(m.items())))
        """,
        name,
    ).stdout
    expected = sorted((k, k[::-1]) for k in keys)
    assert out == ascii(expected) + "\n"


def test_bytes_keys_across_processes(name):
    keys = [b"", b"\x00", b"\x00\x00", b"\xff", b"\x80abc", b"abc", bytes(range(256))]
    w = sharedmap.rbtree({k: k + b"!" for k in keys})
    w.share(name)
    out = run_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        print(list(m.items()) == sorted((k, k + b"!") for k in m), list(m) == sorted(m), len(m))
        print(m[b"\\xff"], m.get("x") if False else "")
        """,
        name,
    ).stdout
    assert out.splitlines()[0] == f"True True {len(keys)}"
    m = sharedmap.sharedmap(name)
    assert list(m) == sorted(keys)
    with pytest.raises(TypeError, match="this map has bytes keys, got str"):
        m.get("abc")


def test_names_with_colons_and_unicode(new_name):
    for tag in (":3325", ":红", " with spaces"):
        name = new_name(tag)
        sharedmap.rbtree({"k": 1}).share(name)
        assert sharedmap.sharedmap(name)["k"] == 1


def test_a_million_entries_round_trip(name):
    n = 1_000_000
    w = sharedmap.rbtree((f"key{i}", i) for i in range(n))
    assert len(w) == n
    w.share(name)
    out = run_python(
        """
        import sys, sharedmap
        m = sharedmap.sharedmap(sys.argv[1])
        n = int(sys.argv[2])
        assert len(m) == n
        bad = sum(1 for k, v in m.items() if k != f"key{v}")
        missing = sum(1 for i in range(0, n, 7) if m.get(f"key{i}") != i)
        print(len(m), bad, missing, m.get("key-1"))
        """,
        name,
        str(n),
    ).stdout
    assert out == f"{n} 0 0 None\n"
    assert sharedmap.sharedmap(name) == w


def test_dump_is_the_published_snapshot_and_loads_again(name):
    w = sharedmap.rbtree({"b": b"2", "a": "1", "c": 3.5})
    data = w.dump()
    assert isinstance(data, bytes)
    m = sharedmap.loads(data)
    assert m == w and dict(m) == {"a": "1", "b": b"2", "c": 3.5}
    assert list(m) == ["a", "b", "c"]
    w.share(name)
    with open(os.path.join(SHM_DIR, "sharedmap." + name), "rb") as f:
        published = f.read()
    # Same length and the same body; only the header's creation time (and with it the
    # header checksum) may differ.
    assert len(published) == len(data)
    assert published[128:] == data[128:]
    assert sharedmap.loads(published) == sharedmap.loads(data)
