"""test_mypy.py: the package's type stubs (python/sharedmap/__init__.pyi, _sharedmap.pyi) checked by mypy.

Each case is a small program.  Correct usage must type-check with no error; a line marked `# E: [code] text`
must get exactly that error (its code, and `text` as a substring of the message); a line marked
`# N: text` must get a note containing `text` (used with reveal_type).  Errors on unmarked lines fail the test.
The stubs are taken from the source tree (python/), so this runs without building the extension; the stubtest
case compares them with the built extension when it can be imported.
"""
import os
import re
import subprocess
import sys
import textwrap

import pytest

from support import child_env

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (the Makefile's venv installs it)")

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "python"))

CLEAN = {
    # The original package's README example, unchanged.
    "readme_example": """
        import sharedmap
        def t1():
            wmap = sharedmap.rbtree();
            wmap.set("aaa","323");
            wmap.set("zb","1233");
            wmap.set("tes","32z");
            wmap.set("红","32是");
            print(wmap.get("tes"));
            wmap.share("test:3325",force=True);
            print("测试写入");
        t1();
        def t2():
            rmap = sharedmap.sharedmap("test:3325");
            print(rmap.get("红"));
            print("测试读取");
        t2();
    """,
    "reader": """
        import pickle
        from collections.abc import Mapping
        import sharedmap

        def lookup(m: Mapping[str, str], key: str) -> str:
            return m.get(key, "")

        m: sharedmap.sharedmap[str, str] = sharedmap.sharedmap("vocab")
        value: str = m["a"]
        maybe: str | None = m.get("a")
        dflt: str | int = m.get("a", 0)
        lookup(m, "a")
        n: int = len(m) + m.bisect_left("a") + m.bisect_right("b") + m.index("a") + m.index("a", 0, -1)
        keys: list[str] = list(m) + list(reversed(m)) + list(m.irange("a", "c", (True, False), reverse=True))
        keys += list(m.prefix("ab")) + list(m.keys()) + list(m.irange())
        pairs: list[tuple[str, str]] = list(m.items()) + list(m.prefix_items("a")) + list(reversed(m.items()))
        common: set[str] = m.keys() & {"a", "b"}
        vals: list[str] = list(m.values())
        first: tuple[str, str] = m.peekitem(0)
        snapshot: dict[str, str] = m.copy()
        ok: bool = "a" in m and m == {"a": "b"} and m.refresh() and m.verify() and not m.closed
        view: memoryview = m.getbuffer("a")
        info = m.info()
        entries: int = info["entries"] + info["size"] + info["format_version"] + info["checksum"]
        kind: str | None = info["key_kind"]
        name: str | None = m.name or m.path or info["name"] or info["path"]
        when: float = info["created"]
        stale: bool = info["superseded"]
        limits: int = sharedmap.FORMAT_VERSION + sharedmap.NAME_MAX
        data: bytes = pickle.dumps(m)
        with sharedmap.sharedmap("vocab") as r:
            anything = r.get(b"bytes key")
        m.close()

        f = sharedmap.open("/tmp/x.smap")
        g = sharedmap.loads(b"...")
        h = sharedmap.loads(bytearray(b"..."))
        table: sharedmap.sharedmap[bytes, int] = sharedmap.open(b"/tmp/y.smap")
        number: int = table[b"k"]
        maps = sharedmap.list_maps()
        total: int = sum(x["size"] + (x["entries"] or 0) for x in maps)
        names: list[str] = [x["name"] for x in maps if x["error"] is None]
        removed: int = sharedmap.gc() + sharedmap.gc("/dev/shm")
        version: str = sharedmap.__version__
        Vocab = sharedmap.sharedmap[str, int]
        v = Vocab("vocab")
        count: int = v["word"]
    """,
    "builder": """
        import pathlib
        from collections.abc import MutableMapping
        import sharedmap

        def fill(d: MutableMapping[str, int]) -> None:
            d["x"] = 1

        w = sharedmap.rbtree()
        w["a"] = "text"
        w[b"b"] = 1
        w.set("c", None)
        w.update({"d": 1.5}, e=True)
        del w["a"]
        counts = sharedmap.rbtree({"a": 1})
        fill(counts)
        counts.setdefault("b", 2)
        popped: int = counts.pop("a") + counts.pop("zz", 0)
        k, v = counts.popitem()
        more: sharedmap.rbtree[str, int] = counts.copy()
        kw = sharedmap.rbtree(a="x", b="y")
        pairs = sharedmap.rbtree([(b"k", b"v")])
        reader: sharedmap.sharedmap[str, str] = sharedmap.sharedmap("vocab")
        edit = sharedmap.rbtree(reader)
        edit["new"] = "word"
        shared: bool = edit.share("vocab", force=True, mode=0o640) and edit.share("v2")
        saved: bool = edit.save("/tmp/v.smap") and edit.save(pathlib.Path("/tmp/w.smap"), force=True, mode=0o600)
        blob: bytes = edit.dump()
        again = sharedmap.loads(blob)
        gone: bool = sharedmap.rbtree.remove("vocab")
        for key in edit:
            print(key.upper(), edit[key].upper())
        edit.clear()
    """,
}

ERRORS = """
    import sharedmap

    m = sharedmap.sharedmap("name")
    m.get(1.5)  # E: [call-overload] No overload variant of "get"
    m["a"] = "b"  # E: [index] Unsupported target for indexed assignment
    del m["a"]  # E: [attr-defined] "__delitem__"
    m.irange(1.5, 2)  # E: [arg-type] Argument 1 to "irange"
    m.prefix(3.5)  # E: [arg-type] Argument 1 to "prefix"
    m.peekitem("last")  # E: [arg-type] Argument 1 to "peekitem"
    m.close(True)  # E: [call-arg] Too many arguments for "close"
    m.info()["nope"]  # E: [typeddict-item] "nope"
    m.pop("a")  # E: [attr-defined] "pop"
    sharedmap.sharedmap(b"name")  # E: [arg-type] Argument 1 to "sharedmap"
    sharedmap.sharedmap[float, str]  # E: [type-var] "_K" of "sharedmap" cannot be "float"
    sharedmap.sharedmap[str, list[int]]  # E: [type-var] of "sharedmap" cannot be "list[int]"
    def bad_annotation(x: sharedmap.sharedmap[float, str]) -> None: ...  # E: [type-var] subtype of "str | bytes | int"
    sharedmap.loads("text")  # E: [arg-type] Argument 1 to "loads"
    text: sharedmap.sharedmap[str, str] = sharedmap.sharedmap("name")
    number: int = text["a"]  # E: [assignment] Incompatible types in assignment
    text.get(b"bytes")  # E: [call-overload] No overload variant of "get"

    def wants_str_map(x: sharedmap.sharedmap[str, str]) -> None: ...
    wants_str_map(m)  # E: [arg-type] Argument 1 to "wants_str_map"

    w = sharedmap.rbtree()
    w.share(123)  # E: [arg-type] Argument 1 to "share" of "rbtree" has incompatible type "int"
    w.share("n", mode="0640")  # E: [arg-type] Argument "mode" to "share"
    w.save(42)  # E: [arg-type] Argument 1 to "save"
    w[1.5] = "x"  # E: [index] Invalid index type "float"
    w["a"] = [1, 2]  # E: [assignment] Incompatible types in assignment
    w.set("a", {"no": "dicts"})  # E: [arg-type] Argument 2 to "set"
    sharedmap.rbtree.remove(1)  # E: [arg-type] Argument 1 to "remove"
    sharedmap.rbtree({1.5: "a"})  # E: [type-var] "_K" of "rbtree" cannot be "float"
    counts = sharedmap.rbtree({"a": 1})
    counts["b"] = "two"  # E: [assignment] Incompatible types in assignment
    dumped: str = w.dump()  # E: [assignment] Incompatible types in assignment
    sharedmap.list_maps()[0]["bogus"]  # E: [typeddict-item] "bogus"
    gced: str = sharedmap.gc()  # E: [assignment] Incompatible types in assignment
    entries: int = sharedmap.list_maps()[0]["entries"]  # E: [assignment] "int | None"
    m.index("a", "b")  # E: [arg-type] Argument 2 to "index"
    sharedmap.sharedmap(name="n")
    sharedmap.sharedmap(path="p")  # E: [call-arg] Unexpected keyword argument "path"
    sharedmap.open(path="p")  # E: [call-arg]
    w.set("k", "v", "extra")  # E: [call-arg] Too many arguments for "set"
    sharedmap.Value  # E: [attr-defined] has no attribute "Value"
"""

REVEALS = """
    import sharedmap

    reveal_type(sharedmap.sharedmap("n"))  # N: sharedmap[str | bytes | int, str | bytes | int | float | bool | None]
    m: sharedmap.sharedmap[str, str] = sharedmap.sharedmap("n")
    reveal_type(m["k"])  # N: "str"
    reveal_type(m.get("k"))  # N: "str | None"
    reveal_type(m.get("k", 0))  # N: "str | int"
    reveal_type(m.items())  # N: sharedmap_items[str, str]
    reveal_type(list(m.keys()))  # N: "list[str]"
    reveal_type(iter(m))  # N: sharedmap_iterator[str]
    reveal_type(next(m.prefix_items("a")))  # N: "tuple[str, str]"
    reveal_type(m.peekitem())  # N: "tuple[str, str]"
    reveal_type(m.copy())  # N: "dict[str, str]"
    reveal_type(m.get_many(["k"]))  # N: "list[str | None]"
    reveal_type(m.get_many(("k",), 0))  # N: "list[str | int]"
    reveal_type(sharedmap.rbtree({1: 2.5}))  # N: rbtree[int, float]
    ids: sharedmap.sharedmap[int, bytes] = sharedmap.sharedmap("ids")
    reveal_type(ids.get_many([1, 2]))  # N: "list[bytes | None]"
    reveal_type(m.info()["key_kind"])  # N: Literal['str'] | Literal['bytes'] | Literal['int'] | None
    reveal_type(sharedmap.sharedmap[bytes, int]("n"))  # N: sharedmap[bytes, int]
    reveal_type(sharedmap.rbtree())  # N: rbtree[str | bytes | int,
    reveal_type(sharedmap.rbtree({"a": 1}))  # N: rbtree[str, int]
    reveal_type(sharedmap.rbtree(m))  # N: rbtree[str, str]
    reveal_type(sharedmap.rbtree(a=1.5))  # N: rbtree[str, float]
    reveal_type(sharedmap.rbtree([(b"k", b"v")]))  # N: rbtree[bytes, bytes]
    reveal_type(sharedmap.open("p"))  # N: sharedmap[str | bytes | int,
    with sharedmap.sharedmap[str, int]("n") as r:
        reveal_type(r)  # N: sharedmap[str, int]
"""

_MARK = re.compile(r"#\s*([EN]):\s*(?:\[([a-z-]+)\]\s*)?(.*?)\s*$")
_OUTPUT = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<msg>.*?)(?:  \[(?P<code>[a-z-]+)\])?$")


def run_mypy(tmp_path, sources, *extra):
    """Write each source as a module in tmp_path, run mypy on all of them at once; {(module, line): [(kind,
    code, message)]} for every error and reveal_type note."""
    files = []
    for name, src in sources.items():
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(src), encoding="utf-8")
        files.append(str(path))
    stdout, stderr, status = mypy_api.run(
        [
            "--no-site-packages",  # the stubs under test come from python/, nothing else from the venv
            "--no-error-summary",
            "--show-error-codes",
            "--no-color-output",
            "--hide-error-context",
            "--no-pretty",
            "--config-file=",
            f"--cache-dir={tmp_path / '.mypy_cache'}",
            *extra,
            *files,
        ]
    )
    assert status in (0, 1) and not stderr, (status, stdout, stderr)
    found = {}
    for line in stdout.splitlines():
        m = _OUTPUT.match(line)
        assert m, f"unexpected mypy output: {line}"
        if m["kind"] == "note" and not m["msg"].startswith("Revealed type"):
            continue  # explanations attached to an error
        module = os.path.splitext(os.path.basename(m["file"]))[0]
        message = re.sub(r"\b(builtins|typing)\.", "", m["msg"])  # older mypy spells builtins.str
        found.setdefault((module, int(m["line"])), []).append((m["kind"], m["code"], message))
    return found


def expectations(name, src):
    expected = {}
    for lineno, line in enumerate(textwrap.dedent(src).splitlines(), 1):
        m = _MARK.search(line)
        if m:
            expected[(name, lineno)] = ("error" if m[1] == "E" else "note", m[2], m[3])
    return expected


@pytest.fixture(autouse=True)
def stubs_from_source(monkeypatch):
    monkeypatch.setenv("MYPYPATH", PYTHON_DIR)


def test_correct_usage_is_clean(tmp_path):
    found = run_mypy(tmp_path, CLEAN, "--strict", "--allow-untyped-defs", "--allow-untyped-calls")
    assert found == {}, "\n".join(f"{k}: {v}" for k, v in sorted(found.items()))


def test_misuse_gives_the_expected_errors(tmp_path):
    found = run_mypy(tmp_path, {"misuse": ERRORS}, "--strict")
    expected = expectations("misuse", ERRORS)
    assert expected, "no marked lines"
    problems = []
    for where, (kind, code, text) in sorted(expected.items()):
        got = found.pop(where, [])
        if not any(k == kind and (code is None or c == code) and text in msg for k, c, msg in got):
            problems.append(f"line {where[1]}: expected {kind} [{code}] {text!r}, got {got}")
    for where, got in sorted(found.items()):
        problems.append(f"line {where[1]}: unexpected {got}")
    assert not problems, "\n".join(problems)


def test_reveal_types(tmp_path):
    found = run_mypy(tmp_path, {"reveals": REVEALS}, "--strict")
    expected = expectations("reveals", REVEALS)
    problems = []
    for where, (kind, _, text) in sorted(expected.items()):
        got = found.pop(where, [])
        if not any(k == "note" and text in msg for k, _, msg in got):
            problems.append(f"line {where[1]}: expected a note with {text!r}, got {got}")
    for where, got in sorted(found.items()):
        problems.append(f"line {where[1]}: unexpected {got}")
    assert not problems, "\n".join(problems)


def test_package_is_strictly_typed(tmp_path):
    """The stubs themselves and the pure-Python modules (cli/, __main__.py) pass mypy --strict."""
    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--no-site-packages",
            "--config-file=",
            f"--cache-dir={tmp_path / '.mypy_cache'}",
            "-p",
            "sharedmap",
        ]
    )
    assert status == 0, stdout + stderr


def test_stubs_match_the_extension(tmp_path):
    """mypy's stubtest: every name, signature and default in the stubs agrees with the built module."""
    env = child_env()  # the build under test, also from another working directory
    probe = subprocess.run(
        [sys.executable, "-c", "import sharedmap._sharedmap"], env=env, capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"the extension is not built/importable: {probe.stderr.strip().splitlines()[-1:]}")
    env["MYPYPATH"] = PYTHON_DIR
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "sharedmap"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no mypy configuration file there
    )
    assert r.returncode == 0, r.stdout + r.stderr
