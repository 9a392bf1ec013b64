"""Property tests: random maps (str, bytes or int keys, including empty, non-ASCII and NUL; every value
type) through the builder and the readers, with a dict (sorted, for ordered queries) as the model.
"""
import bisect
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sharedmap
from support import same_items, same_value, unique_name

SPECIAL_CHARS = st.sampled_from(["\0", "a", "b", "é", "\u0301", "红", "😀", "\uffff", "\U0010ffff"])
STR_KEYS = st.text(alphabet=st.one_of(SPECIAL_CHARS, st.characters(exclude_categories=("Cs",))), max_size=8)
BYTES_KEYS = st.binary(max_size=8) | st.sampled_from([b"", b"\0", b"\xff", b"\xff\xff", b"\0\xff"])
VALUES = st.one_of(
    st.text(max_size=16),
    st.binary(max_size=16),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
INT_KEYS = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.sampled_from(
    [0, -1, 1, 255, 256, -(2**63), 2**63 - 1, -(2**63) + 1, 2**63 - 2, 2**32, -(2**32)]
)
STR_MAPS = st.dictionaries(STR_KEYS, VALUES, max_size=40)
BYTES_MAPS = st.dictionaries(BYTES_KEYS, VALUES, max_size=40)
INT_MAPS = st.dictionaries(INT_KEYS, VALUES, max_size=40)
MAPS = STR_MAPS | BYTES_MAPS | INT_MAPS


def kind_of(d):
    return type(next(iter(d))) if d else str


def probes_for(data, d, n=6):
    """Keys to ask about: some present, some random of the same kind."""
    kind = {str: STR_KEYS, bytes: BYTES_KEYS, int: INT_KEYS}[kind_of(d)]
    present = st.sampled_from(sorted(d)) if d else kind
    return data.draw(st.lists(present | kind, max_size=n))


def check_mapping(m, d, probes):
    ks = sorted(d)
    assert len(m) == len(d) and bool(m) == bool(d)
    assert list(m) == ks
    assert list(reversed(m)) == ks[::-1]
    assert same_items(m.items(), sorted(d.items()))
    assert same_items(zip(ks, m.values()), sorted(d.items()))
    assert set(m.keys()) == set(d) and m.keys() == d.keys()
    for k in ks:
        assert same_value(m[k], d[k]) and k in m
    for p in probes:
        assert (p in m) == (p in d)
        if p in d:
            assert same_value(m.get(p), d[p])
        else:
            assert m.get(p, "missing") == "missing"
    batch = probes + ks[:5] + probes[:2]  # with duplicates
    got = m.get_many(batch, "missing")
    assert len(got) == len(batch)
    assert all(same_value(g, d.get(p, "missing")) for g, p in zip(got, batch))
    assert all(same_value(g, m.get(p)) for g, p in zip(m.get_many(iter(batch)), batch))


def check_ordered(m, d, probes):
    ks = sorted(d)
    for p in probes:
        assert m.bisect_left(p) == bisect.bisect_left(ks, p)
        assert m.bisect_right(p) == bisect.bisect_right(ks, p)
        if p in d:
            assert m.index(p) == ks.index(p)
        if not isinstance(p, int):
            assert list(m.prefix(p)) == [k for k in ks if k.startswith(p)]
    for lo, hi in itertools.product(probes[:3] + [None], repeat=2):
        for inc in ((True, True), (False, True), (True, False), (False, False)):
            expected = [
                k
                for k in ks
                if (lo is None or (k >= lo if inc[0] else k > lo))
                and (hi is None or (k <= hi if inc[1] else k < hi))
            ]
            assert list(m.irange(lo, hi, inc)) == expected
            assert list(m.irange(lo, hi, inc, reverse=True)) == expected[::-1]
    for i in range(-len(ks), len(ks)):
        k, v = m.peekitem(i)
        assert k == ks[i] and same_value(v, d[ks[i]])


@given(d=MAPS, data=st.data())
def test_builder_and_bytes_reader_match_the_model(d, data):
    probes = probes_for(data, d)
    w = sharedmap.rbtree(d)
    check_mapping(w, d, probes)
    m = sharedmap.loads(w.dump())
    check_mapping(m, d, probes)
    check_ordered(m, d, probes)
    assert m.verify() is True
    assert sharedmap.rbtree(m).dump()[128:] == w.dump()[128:]  # copy from a reader is exact


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=MAPS, data=st.data())
def test_shm_and_file_readers_match_the_model(d, data, tmp_path):
    probes = probes_for(data, d)
    w = sharedmap.rbtree(d)
    name = unique_name()
    w.share(name)
    try:
        with sharedmap.sharedmap(name) as m:
            check_mapping(m, d, probes)
            check_ordered(m, d, probes)
    finally:
        sharedmap.rbtree.remove(name)
    path = tmp_path / "p.smap"
    w.save(path, force=True)
    with sharedmap.open(path) as m:
        check_mapping(m, d, probes)
        check_ordered(m, d, probes)


OPS = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 30), VALUES),
    st.tuples(st.just("del"), st.integers(0, 30)),
    st.tuples(st.just("pop"), st.integers(0, 30)),
    st.tuples(st.just("popitem")),
    st.tuples(st.just("setdefault"), st.integers(0, 30), VALUES),
    st.tuples(st.just("clear")),
)


@given(st.lists(OPS, max_size=60), st.sampled_from(["str", "bytes", "int"]))
def test_builder_mutations_match_a_dict(ops, kind):
    def key(i):
        if kind == "int":
            return (i - 15) * 2**58  # negatives, zero, and near the ends of int64
        return f"k{i:02}é" if kind == "str" else b"k%02d\xff" % i

    w, d = sharedmap.rbtree(), {}
    for op in ops:
        if op[0] == "set":
            w[key(op[1])] = op[2]
            d[key(op[1])] = op[2]
        elif op[0] == "del":
            assert (key(op[1]) in w) == (key(op[1]) in d)
            if key(op[1]) in d:
                del w[key(op[1])]
                del d[key(op[1])]
        elif op[0] == "pop":
            assert same_value(w.pop(key(op[1]), "none"), d.pop(key(op[1]), "none"))
        elif op[0] == "popitem":
            if d:
                k, v = w.popitem()
                assert k == max(d) and same_value(v, d.pop(k))
        elif op[0] == "setdefault":
            assert same_value(w.setdefault(key(op[1]), op[2]), d.setdefault(key(op[1]), op[2]))
        else:
            w.clear()
            d.clear()
        assert len(w) == len(d)
    check_mapping(w, d, [key(i) for i in range(31)])
    check_mapping(sharedmap.loads(w.dump()), d, [key(i) for i in range(31)])


@given(MAPS, MAPS)
def test_update_from_reader_and_builder_matches_dict_update(a, b):
    same_kind = not a or not b or type(next(iter(a))) is type(next(iter(b)))
    if not same_kind:
        return
    expected = dict(a)
    expected.update(b)
    for source in (sharedmap.rbtree(b), sharedmap.loads(sharedmap.rbtree(b).dump()), b):
        w = sharedmap.rbtree(a)
        w.update(source)
        check_mapping(w, expected, [])
