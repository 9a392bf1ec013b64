"""Ordered queries of the reader, in sortedcontainers.SortedDict's conventions, against a sorted
list of the keys as the model."""
import bisect

import pytest

import sharedmap

WORDS = ["", "a", "aa", "ab", "abc", "abd", "b", "ba", "bb", "c", "ca", "caa", "d", "红", "红色", "😀"]


@pytest.fixture(params=["shm", "file", "bytes"])
def reader(request, new_name, tmp_path):
    def make(keys):
        w = sharedmap.rbtree({k: i for i, k in enumerate(keys)})
        if request.param == "shm":
            name = new_name()
            w.share(name)
            return sharedmap.sharedmap(name)
        if request.param == "file":
            w.save(tmp_path / "o.smap", force=True)
            return sharedmap.open(tmp_path / "o.smap")
        return sharedmap.loads(w.dump())

    return make


def model_irange(keys, lo, hi, inclusive=(True, True), reverse=False):
    out = [
        k
        for k in sorted(keys)
        if (lo is None or (k >= lo if inclusive[0] else k > lo))
        and (hi is None or (k <= hi if inclusive[1] else k < hi))
    ]
    return out[::-1] if reverse else out


PROBES = ["", "a", "ab", "abz", "b", "bz", "c", "zz", "红", "红色色", "\U0010ffff", None]


def test_irange(reader):
    m = reader(WORDS)
    for lo in PROBES:
        for hi in PROBES:
            for inc in ((True, True), (False, False), (True, False), (False, True)):
                for rev in (False, True):
                    got = list(m.irange(lo, hi, inc, rev))
                    assert got == model_irange(WORDS, lo, hi, inc, rev), (lo, hi, inc, rev)
    assert list(m.irange()) == sorted(WORDS)
    assert list(m.irange(minimum="b")) == model_irange(WORDS, "b", None)
    assert list(m.irange(maximum="b", reverse=True)) == model_irange(WORDS, None, "b", reverse=True)
    assert list(m.irange("b", "a")) == []
    assert list(m.irange(inclusive=[False, False])) == sorted(WORDS)


def test_irange_argument_errors(reader):
    m = reader(WORDS)
    with pytest.raises(TypeError, match="this map has str keys, got bytes"):
        m.irange(b"a")
    with pytest.raises(TypeError):
        m.irange(1)
    with pytest.raises(ValueError):
        m.irange("a", "b", (True,))
    with pytest.raises(TypeError):
        m.irange("a", "b", True)
    with pytest.raises(TypeError):
        m.irange(nonsense=1)


def test_irange_is_lazy_and_steps_from_a_cursor(reader):
    keys = [f"{i:06}" for i in range(50000)]
    m = reader(keys)
    it = m.irange("012345", reverse=True)
    assert next(it) == "049999"
    it = m.irange("012345", "012350")
    assert it.__length_hint__() == 6
    assert list(it) == keys[12345:12351]


def test_bisect(reader):
    m = reader(WORDS)
    ks = sorted(WORDS)
    for p in PROBES[:-1] + WORDS:
        assert m.bisect_left(p) == bisect.bisect_left(ks, p), p
        assert m.bisect_right(p) == bisect.bisect_right(ks, p), p
    with pytest.raises(TypeError):
        m.bisect_left(b"a")
    with pytest.raises(TypeError):
        m.bisect_right(None)


def test_index(reader):
    m = reader(WORDS)
    ks = sorted(WORDS)
    for i, k in enumerate(ks):
        assert m.index(k) == i
    with pytest.raises(ValueError, match="'zz' is not in map"):
        m.index("zz")
    assert m.index("b", 2) == ks.index("b")
    assert m.index("b", -len(ks), len(ks)) == ks.index("b")
    with pytest.raises(ValueError):
        m.index("b", ks.index("b") + 1)
    with pytest.raises(ValueError):
        m.index("b", 0, ks.index("b"))
    with pytest.raises(TypeError):
        m.index(b"b")
    with pytest.raises(TypeError):
        m.index()


def test_peekitem(reader):
    m = reader(WORDS)
    items = sorted((k, i) for i, k in enumerate(WORDS))
    assert m.peekitem() == items[-1]
    for i in range(-len(items), len(items)):
        assert m.peekitem(i) == items[i]
    for bad in (len(items), -len(items) - 1, 10**30):
        with pytest.raises(IndexError):
            m.peekitem(bad)
    with pytest.raises(TypeError):
        m.peekitem("0")


def test_prefix(reader):
    m = reader(WORDS)
    for p in ["", "a", "ab", "abc", "abcd", "b", "红", "x", "\U0010ffff"]:
        expected = [k for k in sorted(WORDS) if k.startswith(p)]
        assert list(m.prefix(p)) == expected, p
        assert list(m.prefix_items(p)) == [(k, WORDS.index(k)) for k in expected]
    with pytest.raises(TypeError):
        m.prefix(b"a")


def test_bytes_prefix_with_ff_bytes():
    keys = [b"\xff", b"\xff\xff", b"\xff\xff\x00", b"\xfe\xff", b"\x00", b"\x00\xff", b"a\xff"]
    m = sharedmap.loads(sharedmap.rbtree({k: 1 for k in keys}).dump())
    for p in [b"", b"\xff", b"\xff\xff", b"\x00", b"\xfe", b"a"]:
        assert list(m.prefix(p)) == [k for k in sorted(keys) if k.startswith(p)]


def test_ordered_queries_on_an_empty_map():
    m = sharedmap.loads(sharedmap.rbtree().dump())
    assert list(m.irange("a", "b")) == [] and list(m.irange(b"a")) == []
    assert m.bisect_left("x") == 0 and m.bisect_right(b"x") == 0
    with pytest.raises(ValueError):
        m.index("x")
    with pytest.raises(IndexError):
        m.peekitem()
    assert list(m.prefix("a")) == [] and list(m.prefix(b"")) == []
    assert m.bisect_left(3) == 0 and list(m.irange(-5, 5)) == []
    with pytest.raises(TypeError):
        m.bisect_left(3.5)
    with pytest.raises(TypeError, match="int keys have no prefixes"):
        m.prefix(3)


def test_reverse_walks_across_block_and_chunk_boundaries():
    # Iterators decode batches of 1, 2, 4, ... 32 entries (the binding), backwards by
    # seeking to each batch's first rank, over blocks of 16 records (the format): walk
    # windows of every size around those boundaries, both ways.
    for n in (0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100):
        keys = [f"{i:04}" for i in range(n)]
        m = sharedmap.loads(sharedmap.rbtree({k: i for i, k in enumerate(keys)}).dump())
        assert list(m) == keys
        assert list(reversed(m)) == keys[::-1]
        assert [v for v in reversed(m.values())] == list(range(n))[::-1]
        assert list(reversed(m.items())) == [(k, i) for i, k in enumerate(keys)][::-1]
        for lo in range(0, n, 7):
            for hi in range(lo, n, 5):
                got = list(m.irange(keys[lo], keys[hi], reverse=True))
                assert got == keys[lo : hi + 1][::-1], (n, lo, hi)
                assert list(m.irange(keys[lo], keys[hi])) == keys[lo : hi + 1], (n, lo, hi)
    m = sharedmap.loads(sharedmap.rbtree({f"{i:05}": i for i in range(1000)}).dump())
    it = reversed(m)
    assert it.__length_hint__() == 1000
    assert [next(it) for _ in range(40)] == [f"{i:05}" for i in range(999, 959, -1)]
    assert it.__length_hint__() == 960
