"""test_format.py: docs/FORMAT.md checked by an independent reader (fmtreader.py, written from the document alone).

- XXH64 against the §6 test vectors;
- the §10 worked example decoded field by field, from its bytes transcribed here;
- every reader rule R1..R12 and verification rule V1..V6 (§7), each by snapshots that break it, made by mutating
  the §10 bytes (or, where a mutation cannot fit in them, by a small writer written from FORMAT.md);
- when the sharedmap package is importable: its dump() against this reader, and its reader against the same
  broken snapshots.
"""
import bisect
import math
import pathlib
import random
import re
import struct

import pytest
from fmtreader import MASK48, MASK64, FormatError, Snapshot, int_key, int_key_value, read_varint, xxh64
from support import same_value

FORMAT_MD = pathlib.Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"

# ------------------------------------------------------------------------------------------ the §10 bytes
# The xxd dump of FORMAT.md §10, transcribed (row offset: 16 bytes).
EXAMPLE = bytes.fromhex(
    "89534d500d0a1a0a0d0c0b0a01008000"  # 0x00
    "00000000000000000201040000000000"  # 0x10
    "e0000000000000000300000000000000"  # 0x20
    "00000000000000000400000000000000"  # 0x30
    "0400000000000000c000000000000000"  # 0x40
    "98000000000000009200000000000000"  # 0x50
    "00002a36fe9c971711b6244dce22d6bd"  # 0x60
    "886963f21cac73910000000000000000"  # 0x70
    "03366161613332330313746573fe0202"  # 0x80
    "7a620000000000008000000000000000"  # 0x90
    "61616100000000000000000000000000"  # 0xa0
    "00000000000000000000000000000000"  # 0xb0
    "8800000000004f008e00000000000400"  # 0xc0
    "8000000000005b000000000000000000"  # 0xd0
)
EXAMPLE_MAP = {"aaa": "323", "tes": -2, "zb": True}
EXAMPLE_CREATED = 1700000000000000000

# Header fields: name -> (offset, struct format).
FIELDS = {
    "magic": (0, "8s"),
    "byte_order": (8, "I"),
    "version": (12, "H"),
    "header_size": (14, "H"),
    "required_flags": (16, "I"),
    "compat_flags": (20, "I"),
    "key_kind": (24, "B"),
    "hash_id": (25, "B"),
    "sample_shift": (26, "B"),
    "reserved": (27, "5s"),
    "total_size": (32, "Q"),
    "count": (40, "Q"),
    "hash_seed": (48, "Q"),
    "home_slots": (56, "Q"),
    "table_slots": (64, "Q"),
    "table_offset": (72, "Q"),
    "samples_offset": (80, "Q"),
    "records_end": (88, "Q"),
    "created": (96, "Q"),
    "body_checksum": (104, "Q"),
    "header_checksum": (112, "Q"),
    "superseded": (120, "Q"),
}


def field(data, name):
    off, fmt = FIELDS[name]
    return struct.unpack_from("<" + fmt, data, off)[0]


def slot_word(offset, tag, disp=0):
    return disp << 56 | tag << 48 | offset


def mutate(base=EXAMPLE, *, patches=(), fields=None, slots=None, seal_body=True, seal_header=True):
    """A copy of `base` with `patches` ((offset, bytes), ...), header `fields` and table `slots` ({p: u64})
    changed, then the body checksum and the header checksum recomputed (unless told not to, or set explicitly
    in `fields`), so that the rule a test aims at fires rather than V1 or R5."""
    buf = bytearray(base)
    for off, raw in patches:
        buf[off : off + len(raw)] = raw
    for name, value in (fields or {}).items():
        off, fmt = FIELDS[name]
        struct.pack_into("<" + fmt, buf, off, value)
    table_offset = field(buf, "table_offset")
    for p, word in (slots or {}).items():
        struct.pack_into("<Q", buf, table_offset + 8 * p, word)
    fields = fields or {}
    if seal_body and "body_checksum" not in fields and len(buf) >= 128:
        end = min(field(buf, "total_size"), len(buf))
        struct.pack_into("<Q", buf, 104, xxh64(buf[128:end]))
    if seal_header and "header_checksum" not in fields and len(buf) >= 128:
        struct.pack_into("<Q", buf, 112, xxh64(buf[:112]))
    return bytes(buf)


# ------------------------------------------------------------------------------------------ a small writer
# Written from FORMAT.md too (§3, §4, §5 and the layout of §10): for snapshots the §10 bytes are too small for.
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_value(v):
    """(type, payload) of a Python value, as §3 says writers encode it."""
    if v is None:
        return 0, b""
    if v is False:
        return 1, b""
    if v is True:
        return 2, b""
    if isinstance(v, int):
        n = 0
        while not (v == 0 if n == 0 else -(1 << (8 * n - 1)) <= v < 1 << (8 * n - 1)):
            n += 1
        return 3, v.to_bytes(n, "little", signed=True)
    if isinstance(v, float):
        return 4, struct.pack("<d", v)
    if isinstance(v, bytes):
        return 5, v
    if isinstance(v, str):
        return 6, v.encode("utf-8")
    raise TypeError(v)


def encode_record(key, vtype, payload):
    return varint(len(key)) + varint(len(payload) << 4 | vtype) + key + payload


def align(n, a):
    return -(-n // a) * a


def build(
    entries,
    *,
    key_kind=None,
    seed=0,
    sample_shift=4,
    home_slots=None,
    created=0,
    sort=True,
    raw_records=None,
    required_flags=None,
):
    """A snapshot of `entries`: [(key, value)] with str/bytes/int keys and Python values, or values given as
    ("raw", type, payload).  `sort=False` keeps the given record order (to break V2); `raw_records` {index:
    bytes} replaces the encoding of some records (the hash table still names them by their key).  An int map
    (key_kind 3, §3.1) gets required_flags bit 0 unless `required_flags` says otherwise."""
    norm = []
    for key, value in entries:
        kind = 3 if isinstance(key, int) else 2 if isinstance(key, str) else 1
        if key_kind is None:
            key_kind = kind
        if isinstance(key, int):
            kb = int_key(key)
        else:
            kb = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else bytes(key)
        tv = value[1:] if isinstance(value, tuple) and value[:1] == ("raw",) else encode_value(value)
        norm.append((kb, *tv))
    if key_kind is None:
        key_kind = 0
    if required_flags is None:
        required_flags = 1 if key_kind == 3 else 0
    if sort:
        norm.sort(key=lambda e: e[0])
    n = len(norm)
    raw_records = raw_records or {}
    body = bytearray()
    offsets = []
    for i, (kb, vtype, payload) in enumerate(norm):
        offsets.append(128 + len(body))
        body += raw_records.get(i, encode_record(kb, vtype, payload))
    records_end = 128 + len(body)
    samples_offset = align(records_end, 8)
    nsamples = -(-n // (1 << sample_shift))
    samples = bytearray()
    for i in range(nsamples):
        r = i << sample_shift
        samples += struct.pack("<Q", offsets[r]) + norm[r][0][:8].ljust(8, b"\0")
    table_offset = align(samples_offset + len(samples), 64)
    M = n + n // 4 + 1 if home_slots is None else home_slots
    placed = {}
    nxt = 0
    hashes = [xxh64(kb, seed) for kb, _, _ in norm]
    for i in sorted(range(n), key=lambda i: (hashes[i] * M) >> 64):
        home = (hashes[i] * M) >> 64
        p = max(nxt, home)
        if p - home > 255:
            raise ValueError("displacement over 255")
        placed[p] = slot_word(offsets[i], hashes[i] & 0xFF, p - home)
        nxt = p + 1
    L = max(M, nxt)
    table = b"".join(struct.pack("<Q", placed.get(p, 0)) for p in range(L))
    total = table_offset + 8 * L
    buf = bytearray(total)
    buf[128:records_end] = body
    buf[samples_offset : samples_offset + len(samples)] = samples
    buf[table_offset:total] = table
    struct.pack_into("<8sIHHIIBBB5s", buf, 0, b"\x89SMP\r\n\x1a\n", 0x0A0B0C0D, 1, 128, required_flags, 0,
                     key_kind, 1, sample_shift, bytes(5))
    struct.pack_into("<9Q", buf, 32, total, n, seed, M, L, table_offset, samples_offset, records_end, created)
    struct.pack_into("<Q", buf, 104, xxh64(buf[128:]))
    struct.pack_into("<Q", buf, 112, xxh64(buf[:112]))
    return bytes(buf)


def record_offsets(data):
    snap = Snapshot(data)
    return [r.offset for r in snap.records()]


# ------------------------------------------------------------------------------------------ §6 XXH64
XXH64_VECTORS = [
    (b"", 0, 0xEF46DB3751D8E999),
    (b"abc", 0, 0x44BC2CF5AD770999),
    (b"aaa", 0, 0xAE01F066E602375B),
    (b"0123456789abcdefghijklmnopqrstuv", 0, 0xBF7C9DBE16B5C6E2),
    (b"0123456789abcdefghijklmnopqrstuvwxyz", 0, 0x69196C1B3AF0BFF9),
    (b"0123456789abcdefghijklmnopqrstuvwxyz", 12345, 0x0050FDEDCF288068),
    ("红".encode(), 1, 0x61A721D62FC1D507),
]


@pytest.mark.parametrize("data,seed,expected", XXH64_VECTORS, ids=lambda v: repr(v)[:20])
def test_xxh64_vectors_section6(data, seed, expected):
    assert xxh64(data, seed) == expected


def test_xxh64_aaa_home_and_tag_section6():
    h = xxh64(b"aaa", 0)
    assert h & 0xFF == 0x5B
    assert (h * 4) >> 64 == 2


def test_xxh64_against_xxhash_package_every_length():
    xxhash = pytest.importorskip("xxhash")
    rng = random.Random(6)
    for n in range(100):
        data = rng.randbytes(n)
        for seed in (0, 1, 2**64 - 1, rng.getrandbits(64)):
            assert xxh64(data, seed) == xxhash.xxh64_intdigest(data, seed), (n, seed)


# ------------------------------------------------------------------------------------------ §10, decoded
def test_example_transcription_matches_the_document():
    """The bytes above are the xxd dump printed in FORMAT.md §10."""
    text = FORMAT_MD.read_text(encoding="utf-8")
    section = text[text.index("## 10.") : text.index("### 10.1")]
    rows = re.findall(r"^([0-9a-f]{8}): ((?:[0-9a-f]{4} ){7}[0-9a-f]{4})  ", section, re.MULTILINE)
    assert [int(off, 16) for off, _ in rows] == list(range(0, 224, 16))
    assert bytes.fromhex("".join(hexes.replace(" ", "") for _, hexes in rows)) == EXAMPLE
    assert "(224 bytes)" in section and len(EXAMPLE) == 224


def test_example_header_fields_section10():
    d = EXAMPLE
    assert field(d, "magic") == b"\x89SMP\r\n\x1a\n" == bytes.fromhex("89534D500D0A1A0A")
    assert d[8:12] == bytes.fromhex("0D0C0B0A") and field(d, "byte_order") == 0x0A0B0C0D
    assert field(d, "version") == 1
    assert field(d, "header_size") == 128
    assert field(d, "required_flags") == 0 and field(d, "compat_flags") == 0
    assert field(d, "key_kind") == 2
    assert field(d, "hash_id") == 1
    assert field(d, "sample_shift") == 4
    assert field(d, "reserved") == bytes(5)
    assert field(d, "total_size") == 0xE0 == len(d)  # 224
    assert field(d, "count") == 3
    assert field(d, "hash_seed") == 0
    assert field(d, "home_slots") == 4 == 3 + 3 // 4 + 1
    assert field(d, "table_slots") == 4
    assert field(d, "table_offset") == 0xC0  # 192
    assert field(d, "samples_offset") == 0x98  # 152
    assert field(d, "records_end") == 0x92  # 146
    assert field(d, "created") == 0x1797_9CFE_362A_0000 == EXAMPLE_CREATED
    assert field(d, "body_checksum") == 0xBDD6_22CE_4D24_B611 == xxh64(d[128:224], 0)
    assert field(d, "header_checksum") == 0x9173_AC1C_F263_6988 == xxh64(d[:112], 0)
    assert field(d, "superseded") == 0

    snap = Snapshot(d)
    assert (snap.version, snap.header_size, snap.required_flags, snap.compat_flags) == (1, 128, 0, 0)
    assert (snap.key_kind, snap.hash_id, snap.sample_shift) == (2, 1, 4)
    assert (snap.total_size, snap.count, snap.hash_seed, snap.home_slots, snap.table_slots) == (224, 3, 0, 4, 4)
    assert (snap.table_offset, snap.samples_offset, snap.records_end) == (192, 152, 146)
    assert (snap.created, snap.body_checksum, snap.header_checksum, snap.superseded) == (
        EXAMPLE_CREATED, 0xBDD622CE4D24B611, 0x9173AC1CF2636988, 0)


def test_example_records_section10():
    d = EXAMPLE
    # 03 36 "aaa" "323"
    assert d[128:136] == b"\x03\x36aaa323"
    assert read_varint(d, 128, 146) == (3, 129) and read_varint(d, 129, 146) == (0x36, 130)
    assert 0x36 == 3 << 4 | 6
    # 03 13 "tes" FE
    assert d[136:142] == b"\x03\x13tes\xfe"
    assert 0x13 == 1 << 4 | 3
    # 02 02 "zb"
    assert d[142:146] == b"\x02\x02zb"
    snap = Snapshot(d)
    recs = list(snap.records())
    assert [(r.offset, r.key, r.type, r.payload_start, r.payload_end, r.end) for r in recs] == [
        (128, b"aaa", 6, 133, 136, 136),
        (136, b"tes", 3, 141, 142, 142),
        (142, b"zb", 2, 146, 146, 146),
    ]
    assert recs[-1].end == snap.records_end == 146
    assert [snap.value_of(r) for r in recs] == ["323", -2, True]
    assert list(snap.items()) == [("aaa", "323"), ("tes", -2), ("zb", True)]
    assert list(snap) == ["aaa", "tes", "zb"]


def test_example_padding_and_sample_section10():
    d = EXAMPLE
    assert d[146:152] == bytes(6)
    snap = Snapshot(d)
    assert snap.sample_count == 1
    assert snap.sample(0) == (128, b"aaa\0\0\0\0\0")
    assert d[152:168] == struct.pack("<Q", 128) + b"aaa".ljust(8, b"\0")
    assert d[168:192] == bytes(24)
    assert 192 % 64 == 0


def test_example_slots_section10():
    snap = Snapshot(EXAMPLE)
    slots = [snap.slot(p) for p in range(4)]
    assert slots == [0x004F_0000_0000_0088, 0x0004_0000_0000_008E, 0x005B_0000_0000_0080, 0]
    decoded = [(s >> 56, (s >> 48) & 0xFF, s & MASK48) for s in slots[:3]]
    assert decoded == [(0, 0x4F, 136), (0, 0x04, 142), (0, 0x5B, 128)]
    for key, (p, tag) in {b"tes": (0, 0x4F), b"zb": (1, 0x04), b"aaa": (2, 0x5B)}.items():
        h = xxh64(key, 0)
        assert h & 0xFF == tag
        assert (h * 4) >> 64 == p
        assert snap.home_and_tag(key) == (p, tag)


def test_example_lookups_section10():
    snap = Snapshot(EXAMPLE)
    assert snap.get("aaa") == "323"
    assert snap.get("tes") == -2
    assert snap.get("zb") is True
    for absent in ["", "a", "aa", "aaaa", "aab", "b", "te", "tes\0", "test", "z", "zb\0", "zc", "红", "\udc80"]:
        assert snap.get(absent, "ABSENT") == "ABSENT", absent
        assert absent not in snap
    with pytest.raises(KeyError):
        snap["nope"]
    assert snap.verify() is True


def test_example_ordered_queries_section10():
    snap = Snapshot(EXAMPLE)
    assert [snap.peekitem(i) for i in range(3)] == [("aaa", "323"), ("tes", -2), ("zb", True)]
    assert snap.peekitem() == ("zb", True)
    with pytest.raises(IndexError):
        snap.record_at_rank(3)
    probes = {"": (0, 0), "aaa": (0, 1), "aab": (1, 1), "tes": (1, 2), "u": (2, 2), "zb": (2, 3), "zz": (3, 3)}
    for key, (left, right) in probes.items():
        assert (snap.bisect_left(key), snap.bisect_right(key)) == (left, right), key


def test_our_writer_reproduces_the_example():
    """The layout rules that §10 shows (8-aligned samples, 64-aligned table, M = n + n/4 + 1, slots by home)."""
    assert build(EXAMPLE_MAP.items(), created=EXAMPLE_CREATED) == EXAMPLE


# ------------------------------------------------------------------------------------------ reading larger maps
def random_key(rng, kind):
    alphabet = ["", "a", "b", "\0", "é", "红", "\U0001F600", "zz", "\x7f", "\x80"]
    s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6)))
    if rng.random() < 0.2:
        s = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(6, 20)))
    return s if kind == "str" else s.encode("utf-8") + bytes([rng.randrange(256)]) * rng.randrange(2)


SPECIAL_VALUES = [None, False, True, 0, 1, -1, -2, 127, 128, 255, 256, -128, -129, 2**63 - 1, -(2**63), 2**31,
                  0.0, -0.0, math.nan, math.inf, -math.inf, 1.5, 5e-324, 1.7976931348623157e308,
                  b"", b"\0", b"\xff\xfe", "", "红", "a\0b"]


def random_value(rng):
    r = rng.random()
    if r < 0.5:
        return rng.choice(SPECIAL_VALUES)
    if r < 0.7:
        return rng.randrange(-(2**63), 2**63) >> rng.randrange(64)
    if r < 0.8:
        return struct.unpack("<d", rng.randbytes(8))[0]
    if r < 0.9:
        return rng.randbytes(rng.randrange(40))
    return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(20)))


def random_map(rng, kind, n):
    m = {}
    while len(m) < n:
        m[random_key(rng, kind)] = random_value(rng)
    return m


@pytest.mark.parametrize("sample_shift", [0, 1, 4, 8])
@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_reader_on_our_writer(kind, sample_shift):
    rng = random.Random(f"{kind}{sample_shift}")
    m = random_map(rng, kind, 150)
    snap = Snapshot(build(m.items(), sample_shift=sample_shift, seed=rng.getrandbits(64)))
    assert snap.verify()
    keys = sorted(m, key=lambda k: k.encode("utf-8") if kind == "str" else k)
    got = list(snap.items())
    assert [k for k, _ in got] == keys
    assert all(same_value(v, m[k]) for k, v in got)
    for k in keys:
        assert same_value(snap.get(k), m[k])
    for i, k in enumerate(keys):
        assert snap.peekitem(i)[0] == k
    enc = (lambda k: k.encode("utf-8")) if kind == "str" else bytes
    raw = [enc(k) for k in keys]
    for _ in range(200):
        q = random_key(rng, kind)
        assert snap.bisect_left(q) == bisect.bisect_left(raw, enc(q))
        assert snap.bisect_right(q) == bisect.bisect_right(raw, enc(q))
        if q not in m:
            assert snap.get(q, "ABSENT") == "ABSENT"


def test_overflow_tail_and_displacement_255():
    """M = 1: every key has home 0, so entry i sits in slot i with disp i, up to 255 (§5: the tail [M, L))."""
    m = {f"k{i:03d}": i for i in range(256)}
    snap = Snapshot(build(m.items(), home_slots=1))
    assert (snap.home_slots, snap.table_slots) == (1, 256)
    assert snap.slot(255) >> 56 == 255
    assert snap.verify()
    assert all(snap.get(k) == v for k, v in m.items())
    assert snap.get("k256") is None
    with pytest.raises(ValueError):
        build({f"k{i:03d}": i for i in range(257)}.items(), home_slots=1)


def test_a_miss_reads_at_most_256_slots():
    """§5: a lookup never reads more than 256 slots, even when 256 entries share the probe's home and
    the next slot belongs to a later home (a slot past home + 255 cannot hold an entry of this home)."""
    home0, home1 = [], []
    i = 0
    while len(home0) < 257 or not home1:
        k = f"x{i}".encode()
        (home0 if xxh64(k) >> 63 == 0 else home1).append(k)  # M = 2: home = top bit
        i += 1
    probe = home0.pop()
    data = build([(k, None) for k in home0[:256]] + [(home1[0], None)], home_slots=2)
    snap = Snapshot(data)
    assert snap.verify() and snap.table_slots == 257
    reads = []
    orig = snap.slot
    snap.slot = lambda p: reads.append(p) or orig(p)
    assert snap.get(probe, "ABSENT") == "ABSENT"
    assert reads == list(range(256))


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_empty_maps(kind):
    """count = 0: key_kind 0 (R9 allows 1 and 2 too), M = 1; and the smallest layout R9 allows (no table)."""
    full = mutate(build([]), fields={"key_kind": kind})
    bare = bytearray(128)
    bare[:128] = full[:128]
    bare = mutate(bytes(bare), fields={"total_size": 128, "home_slots": 0, "table_slots": 0,
                                       "table_offset": 128, "samples_offset": 128, "records_end": 128})
    for data in (full, bare):
        snap = Snapshot(data)
        assert snap.count == 0 and len(snap) == 0
        assert list(snap.items()) == []
        assert snap.get("", "ABSENT") == "ABSENT" and snap.get(b"x", "ABSENT") == "ABSENT"
        assert snap.bisect_left("a") == snap.bisect_right("") == 0
        assert snap.verify()


def test_lenient_encodings_are_read():
    """Writers use the shortest varints and ints (§3); nothing in §7 makes a reader refuse longer ones."""
    rec = b"\x83\x00" + b"\xb3\x80\x00" + b"abc" + b"\x05\x00\x00"  # klen 3, vword int vlen 3 (both padded)
    data = build([("abc", ("raw", 3, b"\x05\x00\x00"))], raw_records={0: rec})
    snap = Snapshot(data)
    assert snap.get("abc") == 5
    assert snap.verify()


def test_int_sign_extension_and_lengths():
    for v, payload in [(0, b""), (-2, b"\xfe"), (255, b"\xff\x00"), (-1, b"\xff"), (2**63 - 1, b"\xff" * 7 + b"\x7f"),
                       (-(2**63), bytes(7) + b"\x80"), (128, b"\x80\x00"), (-129, b"\x7f\xff")]:
        assert encode_value(v) == (3, payload)
        assert Snapshot(build([("k", v)])).get("k") == v


def test_floats_keep_every_bit():
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    snap = Snapshot(build([("a", -0.0), ("b", nan_payload), ("c", math.inf)]))
    assert struct.pack("<d", snap.get("a")) == struct.pack("<d", -0.0)
    assert struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF) == struct.pack("<d", snap.get("b"))
    assert snap.get("c") == math.inf


# ------------------------------------------------------------------------------------------ §7 rules
class Case:
    """A snapshot that breaks `rule`, and what to do to it for a reader to notice: "open", "verify", "items",
    ("get", key), ("rank", i), ("bisect", key)."""

    def __init__(self, rule, name, data, action="open", codes=None):
        self.rule, self.name, self.data, self.action = rule, name, data, action
        # The C error codes §7 gives for the rule (R4 has two: EHEADER for header_size, ETRUNCATED for length).
        self.codes = codes or RULE_CODES[rule]

    def run(self, snap_factory=Snapshot):
        snap = snap_factory(self.data)
        if self.action == "open":
            return snap
        if self.action == "verify":
            return snap.verify()
        if self.action == "items":
            return list(snap.items())
        what, arg = self.action
        if what == "get":
            return snap.get(arg)
        if what == "rank":
            return snap.peekitem(arg)
        if what == "bisect":
            return snap.bisect_left(arg)
        raise AssertionError(self.action)


RULE_CODES = {
    "R1": ("SM_EBADMAGIC",), "R2": ("SM_EENDIAN",), "R3": ("SM_EVERSION",), "R4": ("SM_EHEADER",),
    "R5": ("SM_EHEADER",), "R6": ("SM_EFEATURE",), "R7": ("SM_EHEADER",), "R8": ("SM_ETRUNCATED",),
    "R9": ("SM_EHEADER",), "R10": ("SM_ECORRUPT",), "R11": ("SM_ECORRUPT",), "R12": ("SM_ECORRUPT",),
    "V1": ("SM_ECHECKSUM",), "V2": ("SM_ECORRUPT",), "V3": ("SM_EUTF8",), "V4": ("SM_ECORRUPT",),
    "V5": ("SM_ECORRUPT",), "V6": ("SM_ECORRUPT",),
}
TRUNCATED = ("SM_ETRUNCATED",)


def _key_with_home(M, home, seen, prefix="k"):
    i = 0
    while True:
        k = f"{prefix}{i}".encode()
        if (xxh64(k) * M) >> 64 == home and k not in seen:
            return k
        i += 1


def _homes_decrease_without_gap():
    """Keys A (home 0), B (home 1), C (home 0); Robin Hood gives slots A, C, B; we store A, B, C (C with disp 2):
    no empty slot between C's home and C, but homes 0, 1, 0."""
    a = _key_with_home(4, 0, set())
    c = _key_with_home(4, 0, {a})
    b = _key_with_home(4, 1, set())
    data = build([(a, 1), (b, 2), (c, 3)])
    snap = Snapshot(data)
    off = {r.key: r.offset for r in snap.records()}
    tag = {k: xxh64(k) & 0xFF for k in (a, b, c)}
    slots = {0: slot_word(off[a], tag[a]), 1: slot_word(off[b], tag[b]), 2: slot_word(off[c], tag[c], 2), 3: 0}
    return mutate(data, slots=slots), c


def _fill_slots_example():
    return {0: slot_word(136, 0x4F), 1: slot_word(142, 0x04), 2: slot_word(128, 0x5B), 3: 0}


_decreasing, _decreasing_key = _homes_decrease_without_gap()

# Int maps (§3.1): the map of the §10 int example, and damaged ones.
INT_EXAMPLE_MAP = {-2: "323", 42: -2, 2**63 - 1: True}
INT_EXAMPLE = build(INT_EXAMPLE_MAP.items())
# Keys of 1 byte in a snapshot that says int: R9's count / 10 rule refuses it before any record is read.
INT_SHORT_KEYS = build([(bytes([c]), None) for c in b"abcde"], key_kind=3)


def _int_klen(n):
    """An int map whose record of key 42 has an n-byte key (the slot still names it by 42's hash).  The values are
    long enough for R9's count / 10 rule to pass, so that R10 is what fires."""
    entries = [(-2, "x" * 20), (42, -2), (2**63 - 1, "y" * 20)]
    key = (int_key(42) * 2)[:n]
    return build(entries, raw_records={1: encode_record(key, 3, b"\xfe")})


INT_KLEN = {n: _int_klen(n) for n in (0, 7, 9, 16)}
_big = build({f"key{i:02d}": i for i in range(40)}.items())
_big_samples = Snapshot(_big).samples_offset

CASES = [
    # R1: at least 8 bytes and the magic.
    Case("R1", "empty", b""),
    Case("R1", "7_bytes", EXAMPLE[:7]),
    Case("R1", "first_byte", mutate(patches=[(0, b"\x88")])),
    Case("R1", "png", b"\x89PNG\r\n\x1a\n" + EXAMPLE[8:]),
    Case("R1", "last_magic_byte", mutate(patches=[(7, b"\x0d")])),
    # R2: byte order.
    Case("R2", "swapped", mutate(patches=[(8, bytes.fromhex("0A0B0C0D"))])),
    # §7 gives SM_EENDIAN for R2; for a mark that is neither order, the C reader says SM_EHEADER.
    Case("R2", "zero", mutate(fields={"byte_order": 0}), codes=("SM_EENDIAN", "SM_EHEADER")),
    Case("R2", "swapped_stale_checksum", mutate(patches=[(8, bytes.fromhex("0A0B0C0D"))], seal_header=False)),
    # R2 also needs 16 bytes, before it reads the byte order (SM_ETRUNCATED).
    Case("R2", "truncated_13", EXAMPLE[:13], codes=TRUNCATED),
    Case("R2", "truncated_10", EXAMPLE[:10], codes=TRUNCATED),
    Case("R2", "truncated_15_bad_byte_order", mutate(fields={"byte_order": 0})[:15], codes=TRUNCATED),
    Case("R2", "truncated_14_version_2", mutate(fields={"version": 2})[:14], codes=TRUNCATED),
    # R3: version, checked before header_size and the checksum.
    Case("R3", "version_2", mutate(fields={"version": 2})),
    Case("R3", "version_0", mutate(fields={"version": 0})),
    Case("R3", "version_256", mutate(patches=[(12, b"\x00\x01")])),
    Case("R3", "version_2_bad_header_size_stale_checksum",
         mutate(fields={"version": 2, "header_size": 64}, seal_header=False)),
    Case("R3", "version_2_truncated", mutate(fields={"version": 2})[:64]),
    # R4: header size, and 128 bytes present.
    Case("R4", "header_size_127", mutate(fields={"header_size": 127})),
    Case("R4", "header_size_256", mutate(fields={"header_size": 256})),
    Case("R4", "header_size_stale_checksum", mutate(fields={"header_size": 0}, seal_header=False)),
    Case("R4", "truncated_127", EXAMPLE[:127], codes=TRUNCATED),
    Case("R4", "truncated_64", EXAMPLE[:64], codes=TRUNCATED),
    Case("R4", "truncated_16", EXAMPLE[:16], codes=TRUNCATED),
    # R5: header checksum.
    Case("R5", "created_changed", mutate(fields={"created": 1}, seal_header=False)),
    Case("R5", "count_changed", mutate(fields={"count": 2}, seal_header=False)),
    Case("R5", "body_checksum_changed", mutate(fields={"body_checksum": 1}, seal_header=False)),
    Case("R5", "checksum_flipped", mutate(fields={"header_checksum": 0x9173AC1CF2636989})),
    Case("R5", "checksum_zero", mutate(fields={"header_checksum": 0})),
    Case("R5", "flags_stale_checksum", mutate(fields={"required_flags": 1}, seal_header=False)),
    # R6: required flags: bit 0 (int keys, §9) is known, every other bit refused (before R9 looks at bit 0).
    Case("R6", "bit3", mutate(fields={"required_flags": 8})),  # bits 1 and 2 are §13's
    Case("R6", "bit31", mutate(fields={"required_flags": 0x80000000})),
    Case("R6", "bit0_and_bit3", mutate(fields={"required_flags": 9})),
    Case("R6", "int_map_bit3", mutate(INT_EXAMPLE, fields={"required_flags": 9})),
    Case("R6", "int_map_bit16", mutate(INT_EXAMPLE, fields={"required_flags": 0x10001})),
    Case("R6", "int_map_unknown_bit_without_bit0", mutate(INT_EXAMPLE, fields={"required_flags": 16})),
    Case("R6", "unknown_bit_and_bad_reserved", mutate(fields={"required_flags": 8}, patches=[(27, b"\x01")])),
    # R7: reserved bytes.
    Case("R7", "reserved_27", mutate(patches=[(27, b"\x01")])),
    Case("R7", "reserved_31", mutate(patches=[(31, b"\x80")])),
    # R8: total_size is the size available.
    Case("R8", "extra_byte", EXAMPLE + b"\0"),
    Case("R8", "missing_byte", EXAMPLE[:-1]),
    Case("R8", "total_size_225", mutate(fields={"total_size": 225})),
    Case("R8", "total_size_max", mutate(fields={"total_size": MASK64})),
    Case("R8", "extra_byte_and_key_kind_3", mutate(fields={"key_kind": 3}) + b"\0"),  # R8 comes before R9
    # R9: key_kind, required_flags bit 0 iff key_kind 3, hash_id, sample_shift.
    Case("R9", "key_kind_3", mutate(fields={"key_kind": 3})),  # str records, and no flag
    Case("R9", "key_kind_4", mutate(INT_EXAMPLE, fields={"key_kind": 4})),
    Case("R9", "flag_bit0_with_str_keys", mutate(fields={"required_flags": 1})),
    Case("R9", "flag_bit0_with_bytes_keys", mutate(fields={"required_flags": 1, "key_kind": 1})),
    Case("R9", "flag_bit0_empty_kind_0", mutate(build([]), fields={"required_flags": 1})),
    Case("R9", "int_map_without_flag", mutate(INT_EXAMPLE, fields={"required_flags": 0})),
    Case("R9", "int_map_as_str_with_flag", mutate(INT_EXAMPLE, fields={"key_kind": 2})),
    Case("R9", "int_map_as_bytes_with_flag", mutate(INT_EXAMPLE, fields={"key_kind": 1})),
    Case("R9", "int_map_kind_0_with_flag", mutate(INT_EXAMPLE, fields={"key_kind": 0})),
    Case("R9", "int_empty_without_flag", mutate(build([], key_kind=3, required_flags=0))),
    # count <= (records_end - 128) / 10 in an int map: the example's 3 records pass /2 but not /10 at 29 bytes.
    Case("R9", "int_count_over_tenth_of_records", mutate(INT_EXAMPLE, fields={"records_end": 128 + 29})),
    Case("R9", "int_count_over_tenth_of_records_short_keys", INT_SHORT_KEYS),
    Case("R9", "key_kind_255", mutate(fields={"key_kind": 255})),
    Case("R9", "key_kind_0_with_entries", mutate(fields={"key_kind": 0})),
    Case("R9", "hash_id_0", mutate(fields={"hash_id": 0})),
    Case("R9", "hash_id_2", mutate(fields={"hash_id": 2})),
    Case("R9", "sample_shift_9", mutate(fields={"sample_shift": 9})),
    Case("R9", "sample_shift_255", mutate(fields={"sample_shift": 255})),
    # R9: the layout.
    Case("R9", "records_end_127", mutate(fields={"records_end": 127})),
    Case("R9", "records_end_after_samples", mutate(fields={"records_end": 153})),
    Case("R9", "samples_after_table", mutate(fields={"samples_offset": 193})),
    Case("R9", "table_after_end", mutate(fields={"table_offset": 232, "table_slots": 0})),
    Case("R9", "table_offset_near_2_64", mutate(fields={"table_offset": MASK64 - 7})),
    Case("R9", "samples_do_not_fit", mutate(fields={"samples_offset": 184})),
    Case("R9", "samples_do_not_fit_shift_0", mutate(fields={"sample_shift": 0})),
    Case("R9", "table_slots_3", mutate(fields={"table_slots": 3})),
    Case("R9", "table_slots_5", mutate(fields={"table_slots": 5})),
    Case("R9", "table_slots_wraps_in_u64", mutate(fields={"table_slots": 4 + 2**61})),
    Case("R9", "home_slots_over_table_slots", mutate(fields={"home_slots": 5})),
    Case("R9", "count_over_table_slots", mutate(fields={"count": 5})),
    Case("R9", "count_over_half_records", mutate(fields={"records_end": 133})),
    Case("R9", "count_near_2_64", mutate(fields={"count": MASK64})),
    Case("R9", "home_slots_0", mutate(fields={"home_slots": 0})),
    # R10: record offsets from slots and samples, and the records they lead to.
    Case("R10", "slot_offset_records_end", mutate(slots={2: slot_word(146, 0x5B)}), ("get", "aaa")),
    Case("R10", "slot_offset_127", mutate(slots={2: slot_word(127, 0x5B)}), ("get", "aaa")),
    Case("R10", "slot_offset_0", mutate(slots={2: slot_word(0, 0x5B)}), ("get", "aaa")),
    Case("R10", "slot_offset_in_table", mutate(slots={2: slot_word(200, 0x5B)}), ("get", "aaa")),
    Case("R10", "slot_offset_max", mutate(slots={2: slot_word(MASK48, 0x5B)}), ("get", "aaa")),
    Case("R10", "slot_record_key_overruns", mutate(slots={2: slot_word(145, 0x5B)}), ("get", "aaa")),
    Case("R10", "varint_runs_off_records", mutate(patches=[(142, b"\x80\x80\x80\x80")]), ("get", "zb")),
    Case("R10", "varint_11_bytes", mutate(patches=[(128, b"\x80" * 10 + b"\x00")]), ("get", "aaa")),
    Case("R10", "varint_over_64_bits", mutate(patches=[(128, b"\xff" * 9 + b"\x7f")]), ("get", "aaa")),
    Case("R10", "varint_2_64", mutate(patches=[(128, b"\x80" * 9 + b"\x02")]), ("get", "aaa")),
    Case("R10", "klen_2_64_minus_1", mutate(patches=[(128, b"\xff" * 9 + b"\x01")]), ("get", "aaa")),
    Case("R10", "key_overruns", mutate(patches=[(142, b"\x05")]), ("get", "zb")),
    Case("R10", "payload_overruns", mutate(patches=[(143, b"\x15")]), ("get", "zb")),
    Case("R10", "records_end_cuts_last_record", mutate(fields={"records_end": 145}), ("get", "zb")),
    Case("R10", "walk_key_overruns", mutate(patches=[(136, b"\x7f")]), "items"),
    Case("R10", "sample_offset_records_end", mutate(patches=[(152, struct.pack("<Q", 146))]), ("rank", 0)),
    Case("R10", "sample_offset_0", mutate(patches=[(152, struct.pack("<Q", 0))]), ("bisect", "b")),
    Case("R10", "sample_offset_max", mutate(patches=[(152, struct.pack("<Q", MASK64))]), ("rank", 1)),
    # R10 in an int map: klen is 8 (§3.1), on every record parsed.
    Case("R10", "int_klen_9_get", INT_KLEN[9], ("get", 42)),
    Case("R10", "int_klen_7_get", INT_KLEN[7], ("get", 42)),
    Case("R10", "int_klen_0_get", INT_KLEN[0], ("get", 42)),
    Case("R10", "int_klen_16_get", INT_KLEN[16], ("get", 42)),
    Case("R10", "int_klen_9_verify", INT_KLEN[9], "verify"),
    Case("R10", "int_klen_7_items", INT_KLEN[7], "items"),
    Case("R10", "int_klen_0_rank", INT_KLEN[0], ("rank", 2)),
    Case("R10", "int_klen_7_bisect", INT_KLEN[7], ("bisect", 2**62)),
    Case("R10", "int_first_klen_patched_to_7", mutate(INT_EXAMPLE, patches=[(128, b"\x07")]), ("rank", 0)),
    # R11: value type and payload length.
    Case("R11", "type_7", mutate(patches=[(137, b"\x17")]), ("get", "tes")),
    Case("R11", "type_15", mutate(patches=[(137, b"\x1f")]), ("get", "tes")),
    Case("R11", "none_with_payload", mutate(patches=[(129, b"\x30")]), ("get", "aaa")),
    Case("R11", "false_with_payload", mutate(patches=[(129, b"\x31")]), ("get", "aaa")),
    Case("R11", "true_with_payload", mutate(patches=[(137, b"\x12")]), ("get", "tes")),
    Case("R11", "float_3_bytes", mutate(patches=[(129, b"\x34")]), ("get", "aaa")),
    Case("R11", "type_9_while_walking", mutate(patches=[(129, b"\x39")]), "items"),
    Case("R11", "int_9_bytes", build([("k", ("raw", 3, bytes(9)))]), ("get", "k")),
    Case("R11", "float_9_bytes", build([("k", ("raw", 4, bytes(9)))]), ("get", "k")),
    Case("R11", "float_0_bytes", build([("k", ("raw", 4, b""))]), ("rank", 0)),
    # R12: a slot's displacement is not larger than its index.
    Case("R12", "slot0_disp1", mutate(slots={0: slot_word(136, 0x4F, 1)}), ("get", "tes")),
    Case("R12", "slot1_disp2", mutate(slots={1: slot_word(142, 0x04, 2)}), ("get", "zb")),
    Case("R12", "slot0_disp255", mutate(slots={0: slot_word(136, 0x4F, 255)}), ("get", "tes")),
    # V1: body checksum.
    Case("V1", "value_changed", mutate(patches=[(135, b"4")], seal_body=False), "verify"),
    Case("V1", "padding_changed", mutate(patches=[(170, b"\x01")], seal_body=False), "verify"),
    Case("V1", "slot_changed", mutate(slots={3: 1 << 63}, seal_body=False), "verify"),
    Case("V1", "checksum_field", mutate(fields={"body_checksum": 0xBDD622CE4D24B610}), "verify"),
    # V2: exactly count records fill [128, records_end), keys strictly increasing.
    Case("V2", "count_2", mutate(fields={"count": 2}), "verify"),
    Case("V2", "count_4", mutate(fields={"count": 4}), "verify"),
    Case("V2", "records_end_147", mutate(fields={"records_end": 147}), "verify"),
    Case("V2", "unsorted", build([("zb", True), ("aaa", "323"), ("tes", -2)], sort=False), "verify"),
    Case("V2", "duplicate", build([("aaa", 1), ("aaa", 2), ("b", 3)]), "verify"),
    Case("V2", "longer_before_prefix", build([(b"ab", 1), (b"a", 2)], sort=False), "verify"),
    Case("V2", "signed_byte_order", build([(b"\x80", 1), (b"\x7f", 2)], sort=False), "verify"),
    Case("V2", "int_unsorted", build([(42, 1), (-2, 2)], sort=False), "verify"),
    Case("V2", "int_duplicate", build([(7, 1), (7, 2)]), "verify"),
    # V3: UTF-8 of str keys and str values.
    Case("V3", "value_surrogate", mutate(patches=[(133, b"\xed\xa0\x80")]), "verify"),
    Case("V3", "value_overlong", mutate(patches=[(133, b"\xe0\x80\xaf")]), "verify"),
    Case("V3", "value_overlong_2", mutate(patches=[(133, b"\xc0\xaf")]), "verify"),
    Case("V3", "value_ff", mutate(patches=[(133, b"\xff")]), "verify"),
    Case("V3", "value_truncated", mutate(patches=[(135, b"\xc3")]), "verify"),
    Case("V3", "value_over_10ffff", build([("k", ("raw", 6, b"\xf4\x90\x80\x80"))]), "verify"),
    Case("V3", "value_lone_continuation", build([("k", ("raw", 6, b"a\x80"))]), "verify"),
    Case("V3", "key_ff", build([("a", 1), (b"\xff", 2)], key_kind=2), "verify"),
    Case("V3", "key_cesu_surrogate_pair", build([("\ud83d\ude00", 1)]), "verify"),
    # V4: samples.
    Case("V4", "sample_points_at_record_1", mutate(patches=[(152, struct.pack("<Q", 136))]), "verify"),
    Case("V4", "sample_points_inside_record", mutate(patches=[(152, struct.pack("<Q", 129))]), "verify"),
    Case("V4", "sample_prefix", mutate(patches=[(160, b"aab")]), "verify"),
    Case("V4", "sample_prefix_padding", mutate(patches=[(167, b"\x01")]), "verify"),
    Case("V4", "samples_swapped", mutate(_big, patches=[(_big_samples + 16, _big[_big_samples + 32:_big_samples + 48]),
                                                         (_big_samples + 32, _big[_big_samples + 16:_big_samples + 32])]),
         "verify"),
    # V5: padding.
    Case("V5", "after_records", mutate(patches=[(146, b"\x01")]), "verify"),
    Case("V5", "before_samples", mutate(patches=[(151, b"\xff")]), "verify"),
    Case("V5", "after_samples", mutate(patches=[(168, b"\x01")]), "verify"),
    Case("V5", "before_table", mutate(patches=[(191, b"\x01")]), "verify"),
    # V6: the hash table.
    Case("V6", "wrong_tag", mutate(slots={0: slot_word(136, 0x50)}), "verify"),
    Case("V6", "wrong_home", mutate(slots={0: slot_word(142, 0x04), 1: slot_word(136, 0x4F, 1)}), "verify"),
    Case("V6", "named_twice", mutate(slots={3: slot_word(128, 0x5B, 1)}), "verify"),
    Case("V6", "not_named", mutate(slots={1: 0}), "verify"),
    Case("V6", "inside_a_record", mutate(slots={1: slot_word(137, 0x04)}), "verify"),
    Case("V6", "empty_between_home_and_slot", mutate(slots={2: 0, 3: slot_word(128, 0x5B, 1)}), "verify"),
    Case("V6", "homes_decrease", _decreasing, "verify"),
    Case("V6", "extra_slot_in_tail", mutate(slots={3: slot_word(136, 0x4F, 3)}), "verify"),
]

# Records that break several of V2..V4 (§7): the first record in the walk that breaks one decides, and within a
# record the first check in §7's list.  (name, snapshot, the rule reported, its C error code.)
ORDER_CASES = [
    # record 1: out of order (check 3) and its str key invalid UTF-8 (check 4)
    ("order_before_utf8_key", build([(b"tes", 1), (b"ta\xff", 2)], key_kind=2, sort=False), "V2", "SM_ECORRUPT"),
    # record 0: str value invalid UTF-8 (check 5) and sample 0's prefix wrong (check 6)
    ("utf8_value_before_sample", mutate(patches=[(133, b"\xff"), (160, b"aab")]), "V3", "SM_EUTF8"),
    # record 0: sample 0's prefix wrong; record 2: key "z\xff" invalid UTF-8 (in order)
    ("sample_of_record_0_before_utf8_of_record_2", mutate(patches=[(160, b"aab"), (145, b"\xff")]), "V4",
     "SM_ECORRUPT"),
    # count 2: the two records end at 142, not at records_end (146); record 0's str value invalid UTF-8
    ("utf8_before_records_end", mutate(patches=[(133, b"\xff")], fields={"count": 2}), "V3", "SM_EUTF8"),
    # count 4: the walk reaches records_end after 3 records; record 2's key invalid UTF-8 first
    ("utf8_before_running_out", mutate(patches=[(145, b"\xff")], fields={"count": 4}), "V3", "SM_EUTF8"),
]


@pytest.mark.parametrize("data,rule,code", [pytest.param(d, r, c, id=n) for n, d, r, c in ORDER_CASES])
def test_verify_order_within_the_walk(data, rule, code):
    snap = Snapshot(data)
    with pytest.raises(FormatError) as info:
        snap.verify()
    assert info.value.rule == rule, str(info.value)
    assert code in RULE_CODES[rule]


RULES = [f"R{i}" for i in range(1, 13)] + [f"V{i}" for i in range(1, 7)]


def cases(rule):
    return [pytest.param(c, id=c.name) for c in CASES if c.rule == rule]


def check(case):
    with pytest.raises(FormatError) as info:
        case.run()
    assert info.value.rule == case.rule, str(info.value)
    # Every mutation of the example is a valid snapshot up to the step that breaks it: for verify cases,
    # opening and the O(1) reads pass.
    if case.action == "verify":
        Snapshot(case.data)


def test_every_rule_has_cases():
    assert sorted({c.rule for c in CASES}, key=RULES.index) == RULES
    assert len({(c.rule, c.name) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", cases("R1"))
def test_R1_magic(case):
    check(case)


@pytest.mark.parametrize("case", cases("R2"))
def test_R2_byte_order(case):
    check(case)


@pytest.mark.parametrize("case", cases("R3"))
def test_R3_version(case):
    check(case)


@pytest.mark.parametrize("case", cases("R4"))
def test_R4_header_size_and_truncation(case):
    check(case)


@pytest.mark.parametrize("case", cases("R5"))
def test_R5_header_checksum(case):
    check(case)


def test_R5_superseded_and_nothing_else_is_outside_the_header_checksum():
    snap = Snapshot(mutate(fields={"superseded": 1}, seal_header=False, seal_body=False))
    assert snap.superseded == 1 and snap.verify()
    for off in range(112):
        buf = bytearray(EXAMPLE)
        buf[off] ^= 0x01
        with pytest.raises(FormatError) as info:
            Snapshot(bytes(buf))
        assert info.value.rule in ("R1", "R2", "R3", "R4", "R5"), off


@pytest.mark.parametrize("case", cases("R6"))
def test_R6_required_flags(case):
    check(case)


def test_R6_compat_flags_are_ignored():
    snap = Snapshot(mutate(fields={"compat_flags": 0xFFFFFFFF}))
    assert snap.get("zb") is True and snap.verify()


@pytest.mark.parametrize("case", cases("R7"))
def test_R7_reserved_bytes(case):
    check(case)


def test_R9_bytes_keys_read_the_same_records():
    snap = Snapshot(mutate(fields={"key_kind": 1}))
    assert list(snap.items()) == [(b"aaa", "323"), (b"tes", -2), (b"zb", True)]
    assert snap.get(b"aaa") == "323" and snap.verify()


@pytest.mark.parametrize("case", cases("R8"))
def test_R8_total_size(case):
    check(case)


@pytest.mark.parametrize("case", cases("R9"))
def test_R9_layout(case):
    check(case)


@pytest.mark.parametrize("case", cases("R10"))
def test_R10_record_bounds(case):
    check(case)


@pytest.mark.parametrize("case", cases("R11"))
def test_R11_value_types(case):
    check(case)


@pytest.mark.parametrize("case", cases("R12"))
def test_R12_slot_displacement(case):
    check(case)


def test_R10_to_R12_only_when_used():
    """R10..R12 are checked when a record or slot is used: a lookup that never reaches the bad one succeeds."""
    data = mutate(slots={2: slot_word(146, 0x5B)})
    snap = Snapshot(data)
    assert snap.get("tes") == -2 and snap.get("zb") is True
    with pytest.raises(FormatError) as info:
        snap.verify()
    assert info.value.rule in ("R10", "V6")


@pytest.mark.parametrize("case", cases("V1"))
def test_V1_body_checksum(case):
    check(case)


def test_V1_is_not_checked_by_lookups():
    snap = Snapshot(mutate(patches=[(135, b"4")], seal_body=False))
    assert snap.get("aaa") == "324"


@pytest.mark.parametrize("case", cases("V2"))
def test_V2_records(case):
    check(case)


@pytest.mark.parametrize("case", cases("V3"))
def test_V3_utf8(case):
    check(case)


def test_V3_bytes_keys_need_not_be_utf8():
    snap = Snapshot(build([(b"\xff", b"\xff"), (b"\xed\xa0\x80", 1)]))
    assert snap.verify() and snap.get(b"\xff") == b"\xff"


@pytest.mark.parametrize("case", cases("V4"))
def test_V4_samples(case):
    check(case)


@pytest.mark.parametrize("case", cases("V5"))
def test_V5_padding(case):
    check(case)


@pytest.mark.parametrize("case", cases("V6"))
def test_V6_hash_table(case):
    check(case)


def test_V6_breakage_is_what_makes_lookups_miss():
    assert Snapshot(mutate(slots={0: slot_word(136, 0x50)})).get("tes") is None
    assert Snapshot(_decreasing).get(_decreasing_key) is None


# ------------------------------------------------------------------------------------------ the sharedmap package
def _pkg():
    return pytest.importorskip("sharedmap")


def test_package_dump_of_the_example():
    sharedmap = _pkg()
    w = sharedmap.rbtree()
    for k, v in EXAMPLE_MAP.items():
        w[k] = v
    data = w.dump()
    assert len(data) == len(EXAMPLE)
    # All but `created` (96..104) and the header checksum (112..120) that covers it.
    assert data[:96] + data[104:112] + data[120:] == EXAMPLE[:96] + EXAMPLE[104:112] + EXAMPLE[120:]
    assert Snapshot(data).verify()
    assert sharedmap.rbtree(EXAMPLE_MAP).dump()[:96] == EXAMPLE[:96]


def _package_map(sharedmap, m):
    w = sharedmap.rbtree()
    for k, v in m.items():
        w[k] = v
    return w


def _homes(snap):
    """(slot, home) of every occupied slot: what §5 fixes, whatever the order of entries of equal home."""
    return [(p, p - (snap.slot(p) >> 56)) for p in range(snap.table_slots) if snap.slot(p)]


@pytest.mark.parametrize("n", [0, 1, 2, 17, 300])
@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_package_cross_check(kind, n):
    sharedmap = _pkg()
    rng = random.Random(f"x{kind}{n}")
    m = random_map(rng, kind, n)
    if n:  # the corner keys and values, always
        corner_keys = ["", "\0", "a\0", "é", "红", "\U0001F600", "\x7f", "\x80"]
        for i, k in enumerate(corner_keys):
            m[k if kind == "str" else k.encode("utf-8")] = SPECIAL_VALUES[i % len(SPECIAL_VALUES)]
        for i, v in enumerate(SPECIAL_VALUES):
            m[f"v{i}" if kind == "str" else f"v{i}".encode()] = v
    data = _package_map(sharedmap, m).dump()
    mine = Snapshot(data)
    theirs = sharedmap.loads(data)
    assert mine.verify() and theirs.verify()
    assert len(mine) == len(theirs) == len(m)
    mine_items = list(mine.items())
    theirs_items = list(theirs.items())
    assert [k for k, _ in mine_items] == [k for k, _ in theirs_items] == sorted(
        m, key=lambda k: k.encode("utf-8") if kind == "str" else k)
    assert all(same_value(a, b) for (_, a), (_, b) in zip(mine_items, theirs_items))
    for k, v in m.items():
        assert same_value(mine.get(k), v) and same_value(theirs[k], v), k
    probes = [random_key(rng, kind) for _ in range(100)]
    for q in probes:
        assert (q in mine) == (q in theirs) == (q in m)
        assert mine.bisect_left(q) == theirs.bisect_left(q)
        assert mine.bisect_right(q) == theirs.bisect_right(q)
    for i in range(0, n, max(1, n // 20)):
        assert mine.peekitem(i)[0] == theirs.peekitem(i)[0]
    info = theirs.info()
    assert info["entries"] == mine.count and info["size"] == mine.total_size
    assert info["format_version"] == mine.version and info["checksum"] == mine.body_checksum
    assert info["key_kind"] == (None if n == 0 else {0: None, 1: "bytes", 2: "str"}[mine.key_kind])
    # Our writer, given the package's seed and M, lays out the same records, samples and home runs.
    if n:
        assert mine.home_slots >= n + n // 4 + 1  # §5 (larger after a retry)
        ours = Snapshot(build(m.items(), seed=mine.hash_seed, home_slots=mine.home_slots))
        assert ours.data[128 : ours.table_offset] == data[128 : mine.table_offset]
        assert (ours.table_offset, ours.table_slots) == (mine.table_offset, mine.table_slots)
        assert _homes(ours) == _homes(mine)


def test_package_checks_R11_on_entries_it_hands_out():
    """§7: the C reader makes R11 on the value of an entry it hands out (a lookup's hit, even for `in`; each entry
    iterated, keys alone too), not on a record it only steps over or compares keys with while seeking."""
    sharedmap = _pkg()
    snap = sharedmap.loads(mutate(patches=[(137, b"\x17")]))  # "tes": type 7
    for use in (lambda: snap.get("tes"), lambda: "tes" in snap, lambda: list(snap.keys()),
                lambda: snap.peekitem(1)):
        with pytest.raises(ValueError):
            use()
    assert snap.get("zb") is True and snap.peekitem(2) == ("zb", True)
    assert snap.bisect_left("u") == 2  # the walk from sample 0 steps over "tes"


def test_package_offsets_round_up():
    """§1: samples_offset is records_end rounded up to a multiple of 8, table_offset the end of the samples rounded
    up to a multiple of 64; an offset already on a multiple stays (no padding)."""
    sharedmap = _pkg()
    stayed = set()
    for n in (1, 2, 17):
        for vlen in range(80):
            m = {f"k{i:02d}": "x" * vlen for i in range(n)}
            snap = Snapshot(_package_map(sharedmap, m).dump())
            samples_end = snap.samples_offset + 16 * snap.sample_count
            assert snap.samples_offset == (snap.records_end + 7) & ~7, (n, vlen)
            assert snap.table_offset == (samples_end + 63) & ~63, (n, vlen)
            if snap.records_end % 8 == 0:
                stayed.add("samples")
            if samples_end % 64 == 0:
                stayed.add("table")
    assert stayed == {"samples", "table"}
    empty = Snapshot(sharedmap.rbtree().dump())
    assert (empty.records_end, empty.samples_offset, empty.table_offset, empty.total_size) == (128, 128, 128, 128)
    assert (empty.home_slots, empty.table_slots, empty.key_kind) == (0, 0, 0)


def _writer_attempts(n):
    """The (hash_seed, M) of the writer's attempts for n > 0 entries, as §5 gives them."""
    M = n + n // 4 + 1
    for k in range(41):
        if k >= 4:
            M += M // 2
        yield k, M


def _key_with_hash(h, seed):
    """The 8-byte key whose XXH64 under `seed` is h: §6 run backwards (for 8 bytes: one 8-byte step, then the
    final mix; every step is invertible modulo 2^64)."""
    def rotr(x, r):
        return ((x >> r) | (x << (64 - r))) & MASK64

    def unshift(y, k):  # inverse of x ^= x >> k
        x = y
        for _ in range(64 // k + 1):
            x = y ^ (x >> k)
        return x

    P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                          0x27D4EB2F165667C5)

    def inv(a):
        return pow(a, -1, 1 << 64)

    h = unshift(h, 32) * inv(P3) & MASK64
    h = unshift(h, 29) * inv(P2) & MASK64
    h = unshift(h, 33)
    r = rotr((h - P4) * inv(P1) & MASK64, 27) ^ ((seed + P5 + 8) & MASK64)  # r = round(0, w)
    return (rotr(r * inv(P1) & MASK64, 31) * inv(P2) & MASK64).to_bytes(8, "little")


def test_writer_attempts_as_the_document_lists_them():
    assert list(_writer_attempts(3))[:7] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 6), (5, 9), (6, 13)]
    rng = random.Random(8)
    for _ in range(50):
        h, seed = rng.getrandbits(64), rng.getrandbits(64)
        assert xxh64(_key_with_hash(h, seed), seed) == h


def test_package_retries_seeds_then_grows_M():
    """§5: a displacement over 255 makes the writer try the next (hash_seed, M): seeds 1, 2, 3 with the same M,
    then M grown by floor(M / 2) before each further seed.  257 keys share home 0 under each of the first five
    attempts (so each of those has a displacement of 256), which leaves (5, M(5)) as the first that succeeds; the
    package writes exactly what our writer writes with it."""
    sharedmap = _pkg()
    failing = 5
    n = 257 * failing
    attempts = list(_writer_attempts(n))
    rng = random.Random(5)
    keys = set()
    for seed, M in attempts[:failing]:
        for _ in range(257):
            keys.add(_key_with_hash(rng.randrange(MASK64 // M + 1), seed))  # h * M < 2^64: home 0
    assert len(keys) == n
    entries = [(k, i) for i, k in enumerate(sorted(keys))]
    for seed, M in attempts[:failing]:
        with pytest.raises(ValueError, match="displacement"):
            build(entries, seed=seed, home_slots=M)
    seed, M = attempts[failing]
    assert (seed, M) == (5, 3615)  # M(0..3) = 1285 + 321 + 1 = 1607, M(4) = 1607 + 803, M(5) = 2410 + 1205
    ours = build(entries, seed=seed, home_slots=M)
    data = _package_map(sharedmap, dict(entries)).dump()
    snap = Snapshot(data)
    assert (snap.hash_seed, snap.home_slots) == (seed, M)
    # All but `created` (96..104) and the header checksum (112..120) that covers it.
    assert data[:96] + data[104:112] + data[120:] == ours[:96] + ours[104:112] + ours[120:]
    assert snap.verify() and sharedmap.loads(data).verify()
    assert all(snap.get(k) == v for k, v in entries[::50])


def _error_messages():
    """SM_E* code -> message, from the public header (the package raises ValueError(message))."""
    header = FORMAT_MD.parents[1] / "include" / "sharedmap.h"
    if not header.exists():
        return {}
    return dict(re.findall(r'XX\((SM_E\w+), -?\d+, "([^"]*)"\)', header.read_text(encoding="utf-8")))


@pytest.mark.parametrize("data,code", [pytest.param(d, c, id=n) for n, d, _, c in ORDER_CASES])
def test_package_verify_order_within_the_walk(data, code):
    """The C verification reports the error §7's order gives for records that break several rules."""
    sharedmap = _pkg()
    snap = sharedmap.loads(data)
    with pytest.raises(ValueError) as info:
        snap.verify()
    messages = _error_messages()
    if messages:
        assert str(info.value) == messages[code]


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.rule}-{c.name}") for c in CASES])
def test_package_rejects_what_we_reject(case):
    """The package's reader refuses each broken snapshot too (at the latest when verifying), with the error
    code §7 gives for the rule."""
    sharedmap = _pkg()
    with pytest.raises(ValueError) as info:
        snap = sharedmap.loads(case.data)
        action = case.action
        if isinstance(action, tuple) and action[0] == "get":
            snap.get(action[1])
        elif isinstance(action, tuple) and action[0] == "rank":
            snap.peekitem(action[1])
        elif isinstance(action, tuple) and action[0] == "bisect":
            snap.bisect_left(action[1])
        elif action == "items":
            list(snap.items())
        snap.verify()
    messages = _error_messages()
    if messages:
        assert str(info.value) in [messages[c] for c in case.codes], (case.codes, str(info.value))


# ------------------------------------------------------------------------------------------ §3.1 int keys
def test_int_key_bytes_section3_1():
    """The five encodings §3.1 lists, and bytewise order = numeric order."""
    listed = {-(2**63): "0000000000000000", -1: "7FFFFFFFFFFFFFFF", 0: "8000000000000000",
              42: "800000000000002A", 2**63 - 1: "FFFFFFFFFFFFFFFF"}
    for i, hexes in listed.items():
        assert int_key(i) == bytes.fromhex(hexes) and int_key_value(bytes.fromhex(hexes)) == i
    rng = random.Random(31)
    ints = sorted({rng.randrange(-(2**63), 2**63) >> rng.randrange(64) for _ in range(500)} | set(listed))
    assert sorted(ints, key=int_key) == ints
    for bad in (2**63, -(2**63) - 1):
        with pytest.raises(OverflowError):
            int_key(bad)


def test_int_example_reads_and_verifies():
    snap = Snapshot(INT_EXAMPLE)
    assert (snap.key_kind, snap.required_flags, snap.count) == (3, 1, 3)
    assert list(snap.items()) == sorted(INT_EXAMPLE_MAP.items())
    assert [r.key for r in snap.records()] == [int_key(k) for k in sorted(INT_EXAMPLE_MAP)]
    assert snap.sample(0) == (128, int_key(-2))  # the 8-byte prefix is the whole key
    for k, v in INT_EXAMPLE_MAP.items():
        assert snap.get(k) == v
    for absent in (-1, 0, 1, 41, 43, -(2**63), 2**63 - 2, 2**63, -(2**63) - 1, "a", b"\x80" * 8, True):
        assert snap.get(absent, "ABSENT") == "ABSENT", absent
    assert [snap.bisect_left(q) for q in (-(2**63), -2, -1, 42, 43, 2**63 - 1)] == [0, 0, 1, 1, 2, 2]
    assert [snap.bisect_right(q) for q in (-(2**63), -2, -1, 42, 43, 2**63 - 1)] == [0, 1, 1, 2, 2, 3]
    assert snap.peekitem() == (2**63 - 1, True) and snap.peekitem(0) == (-2, "323")
    assert snap.verify()


def random_int_key(rng):
    r = rng.random()
    if r < 0.2:
        return rng.choice([-(2**63), -(2**63) + 1, -1, 0, 1, 2**63 - 2, 2**63 - 1, 255, 256, -256, 2**31, -(2**31)])
    return rng.randrange(-(2**63), 2**63) >> rng.randrange(64)


@pytest.mark.parametrize("sample_shift", [0, 1, 4, 8])
def test_reader_on_our_writer_int(sample_shift):
    rng = random.Random(f"int{sample_shift}")
    m = {}
    while len(m) < 150:
        m[random_int_key(rng)] = random_value(rng)
    snap = Snapshot(build(m.items(), sample_shift=sample_shift, seed=rng.getrandbits(64)))
    assert snap.verify()
    keys = sorted(m)
    assert [k for k, _ in snap.items()] == keys
    assert all(same_value(snap.get(k), m[k]) for k in keys)
    assert [snap.peekitem(i)[0] for i in range(len(keys))] == keys
    for _ in range(200):
        q = random_int_key(rng)
        assert snap.bisect_left(q) == bisect.bisect_left(keys, q)
        assert snap.bisect_right(q) == bisect.bisect_right(keys, q)
        if q not in m:
            assert snap.get(q, "ABSENT") == "ABSENT"


def test_int_empty_map_needs_the_flag():
    """An empty map may say key_kind 3 (R9 allows it for count 0), and then it sets bit 0 like any int map."""
    snap = Snapshot(build([], key_kind=3))
    assert (snap.key_kind, snap.required_flags, snap.count) == (3, 1, 0)
    assert snap.get(5, "ABSENT") == "ABSENT" and snap.bisect_left(5) == 0 and snap.verify()


def test_int_R9_tenth_rule_at_the_boundary():
    """count = (records_end - 128) / 10 exactly passes R9 (10-byte records: klen 8, empty payloads)."""
    snap = Snapshot(build([(i, None) for i in range(5)]))
    assert snap.records_end - 128 == 50 and snap.verify()
    with pytest.raises(FormatError) as info:
        Snapshot(mutate(snap.data, fields={"count": 6}))
    assert info.value.rule == "R9"


def _package_int_map(sharedmap, m):
    w = sharedmap.rbtree()
    for k, v in m.items():
        w[k] = v
    return w


def _agree_on(sharedmap, data, m, probes=()):
    """fmtreader and the package read `data` (an int map holding m) the same."""
    mine = Snapshot(data)
    theirs = sharedmap.loads(data)
    assert mine.verify() and theirs.verify()
    assert (mine.key_kind, mine.required_flags) == ((3, 1) if m else (0, 0))
    assert len(mine) == len(theirs) == len(m)
    keys = sorted(m)
    assert list(mine) == list(theirs) == keys
    assert all(same_value(a, b) for (_, a), (_, b) in zip(mine.items(), theirs.items()))
    for k, v in m.items():
        assert same_value(mine.get(k), v) and same_value(theirs[k], v), k
    for q in probes:
        assert (q in mine) == (q in theirs) == (q in m), q
        assert mine.bisect_left(q) == theirs.bisect_left(q) == bisect.bisect_left(keys, q), q
        assert mine.bisect_right(q) == theirs.bisect_right(q) == bisect.bisect_right(keys, q), q
    for i in range(0, len(m), max(1, len(m) // 20)):
        assert mine.peekitem(i)[0] == theirs.peekitem(i)[0] == keys[i]
    assert theirs.info()["key_kind"] == ("int" if m else None)
    if m:  # our writer, given the package's seed and M, writes the same bytes (but `created`)
        ours = build(m.items(), seed=mine.hash_seed, home_slots=mine.home_slots)
        assert ours[:96] + ours[104:112] + ours[120:] == data[:96] + data[104:112] + data[120:]


@pytest.mark.parametrize("n", [0, 1, 2, 17, 300])
def test_package_cross_check_int(n):
    sharedmap = _pkg()
    rng = random.Random(f"xint{n}")
    m = {}
    while len(m) < n:
        m[random_int_key(rng)] = random_value(rng)
    if n:
        for i, k in enumerate([-(2**63), 2**63 - 1, -1, 0, 1]):
            m[k] = SPECIAL_VALUES[i]
    _agree_on(sharedmap, _package_map(sharedmap, m).dump(), m, [random_int_key(rng) for _ in range(100)])


def test_package_dump_of_the_int_example():
    sharedmap = _pkg()
    data = _package_map(sharedmap, INT_EXAMPLE_MAP).dump()
    assert data[:96] + data[104:112] + data[120:] == INT_EXAMPLE[:96] + INT_EXAMPLE[104:112] + INT_EXAMPLE[120:]


try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - the venv has it
    given = None

if given is not None:
    _int64 = st.one_of(st.integers(-(2**63), 2**63 - 1),
                       st.sampled_from([-(2**63), -(2**63) + 1, -1, 0, 1, 2**63 - 2, 2**63 - 1]))
    _values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                        st.binary(max_size=20), st.text(max_size=10))

    @given(st.dictionaries(_int64, _values, max_size=60), st.lists(_int64, max_size=20))
    def test_package_agrees_on_random_int_maps(m, probes):
        sharedmap = _pkg()
        _agree_on(sharedmap, _package_map(sharedmap, m).dump(), m, probes)


# The damaged int snapshots and flag cases: the package's exception class and code, and that both readers stop.
INT_HOSTILE = [
    # (name, data, action, fmtreader rule, package exception class name, code)
    ("kind3_without_flag", mutate(INT_EXAMPLE, fields={"required_flags": 0}), "open", "R9",
     "CorruptSnapshotError", "SM_EHEADER"),
    ("flag_without_kind3_str", mutate(fields={"required_flags": 1}), "open", "R9", "CorruptSnapshotError",
     "SM_EHEADER"),
    ("flag_without_kind3_bytes", mutate(INT_EXAMPLE, fields={"key_kind": 1}), "open", "R9", "CorruptSnapshotError",
     "SM_EHEADER"),
    ("unknown_bit_int_map", mutate(INT_EXAMPLE, fields={"required_flags": 9}), "open", "R6",
     "UnsupportedVersionError", "SM_EFEATURE"),
    ("unknown_bit_str_map", mutate(fields={"required_flags": 1 << 7}), "open", "R6", "UnsupportedVersionError",
     "SM_EFEATURE"),
    ("unknown_bit_beats_kind3_without_flag", mutate(INT_EXAMPLE, fields={"required_flags": 8}), "open", "R6",
     "UnsupportedVersionError", "SM_EFEATURE"),
    ("tenth_rule", mutate(INT_EXAMPLE, fields={"records_end": 128 + 29}), "open", "R9", "CorruptSnapshotError",
     "SM_EHEADER"),
    ("klen_9_get", INT_KLEN[9], ("get", 42), "R10", "CorruptSnapshotError", "SM_ECORRUPT"),
    ("klen_7_get", INT_KLEN[7], ("get", 42), "R10", "CorruptSnapshotError", "SM_ECORRUPT"),
    ("klen_0_get", INT_KLEN[0], ("get", 42), "R10", "CorruptSnapshotError", "SM_ECORRUPT"),
    ("klen_16_verify", INT_KLEN[16], "verify", "R10", "CorruptSnapshotError", "SM_ECORRUPT"),
    ("klen_7_verify", INT_KLEN[7], "verify", "R10", "CorruptSnapshotError", "SM_ECORRUPT"),
    ("klen_9_items", INT_KLEN[9], "items", "R10", "CorruptSnapshotError", "SM_ECORRUPT"),
]


@pytest.mark.parametrize("name,data,action,rule,cls,code", INT_HOSTILE, ids=[c[0] for c in INT_HOSTILE])
def test_int_hostile_both_readers_refuse(name, data, action, rule, cls, code):
    sharedmap = _pkg()
    case = Case(rule, name, data, action)
    with pytest.raises(FormatError) as mine:
        case.run()
    assert mine.value.rule == rule, str(mine.value)
    with pytest.raises(getattr(sharedmap, cls)) as theirs:
        snap = sharedmap.loads(data)
        if action == "verify":
            snap.verify()
        elif action == "items":
            list(snap.items())
        elif isinstance(action, tuple):
            snap.get(action[1])
    assert theirs.value.code == sharedmap._sharedmap.ERROR_CODES[code], (theirs.value, code)
    # A lookup that meets no damage answers the same in both (the other records are whole).
    if isinstance(action, tuple) or action in ("verify", "items"):
        snap = sharedmap.loads(data)
        assert same_value(Snapshot(data).get(-2), snap.get(-2))
        assert Snapshot(data).get(7, "ABSENT") == snap.get(7, "ABSENT") == "ABSENT"


# ------------------------------------------------------------------------------------------ §10.1, an int map
def _int_example_transcription():
    text = FORMAT_MD.read_text(encoding="utf-8")
    section = text[text.index("### 10.1") : text.index("## 11.")]
    rows = re.findall(r"^([0-9a-f]{8}): ((?:[0-9a-f]{4} ){7}[0-9a-f]{4})  ", section, re.MULTILINE)
    assert [int(off, 16) for off, _ in rows] == list(range(0, 224, 16))
    assert "(224 bytes" in section
    return bytes.fromhex("".join(hexes.replace(" ", "") for _, hexes in rows))


def test_int_example_section10_1():
    """The §10.1 dump is what our writer (from FORMAT.md) writes for that map, and its fields are as explained."""
    d = _int_example_transcription()
    assert d == build(INT_EXAMPLE_MAP.items(), created=EXAMPLE_CREATED)
    assert (field(d, "required_flags"), field(d, "key_kind")) == (1, 3)
    assert (field(d, "records_end"), field(d, "samples_offset"), field(d, "table_offset")) == (162, 168, 192)
    assert field(d, "body_checksum") == 0xF122_40D5_259B_5FD3 == xxh64(d[128:])
    assert field(d, "header_checksum") == 0x1064_A438_4CDC_222E == xxh64(d[:112])
    snap = Snapshot(d)
    assert [r.offset for r in snap.records()] == [128, 141, 152]
    assert d[128:141] == bytes.fromhex("08367FFFFFFFFFFFFFFE") + b"323"
    assert d[141:152] == bytes.fromhex("0813800000000000002AFE")
    assert d[152:162] == bytes.fromhex("0802FFFFFFFFFFFFFFFF")
    assert snap.sample(0) == (128, int_key(-2))
    assert [snap.slot(p) for p in range(4)] == [0, 0x00DF_0000_0000_008D, 0x00B9_0000_0000_0080,
                                                0x01C9_0000_0000_0098]
    for k, (home, tag) in {-2: (2, 0xB9), 42: (1, 0xDF), 2**63 - 1: (2, 0xC9)}.items():
        assert snap.home_and_tag(int_key(k)) == (home, tag)
    assert dict(snap.items()) == INT_EXAMPLE_MAP and snap.verify()


def test_package_writes_the_int_example_section10_1():
    """The library writes exactly the §10.1 bytes: the package's dump() but `created` (and the header checksum that
    covers it) is the same, and its reader reads the document's bytes as the map."""
    sharedmap = _pkg()
    d = _int_example_transcription()
    data = _package_map(sharedmap, INT_EXAMPLE_MAP).dump()
    assert data[:96] + data[104:112] + data[120:] == d[:96] + d[104:112] + d[120:]
    snap = sharedmap.loads(d)
    assert snap.verify()
    assert list(snap.items()) == sorted(INT_EXAMPLE_MAP.items())
    assert snap.info()["created"] == EXAMPLE_CREATED / 1e9 and snap.info()["key_kind"] == "int"


# ------------------------------------------------------------------------------------------ tests/golden/int.snap
GOLDEN_DIR = FORMAT_MD.parents[1] / "tests" / "golden"


def _golden_int_expected():
    """(key, type, text) rows of tests/golden/int.expected (golden-map.h's dump: decimal keys, floats as bits)."""
    rows = []
    for line in (GOLDEN_DIR / "int.expected").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            key, vtype, text = line.split("\t")
            rows.append((int(key), vtype, text))
    return rows


def _as_golden_text(value):
    if value is None or isinstance(value, bool):
        return {None: "none", False: "false", True: "true"}[value], ""
    if isinstance(value, int):
        return "int", str(value)
    if isinstance(value, float):
        return "float", "0x%016x" % struct.unpack("<Q", struct.pack("<d", value))[0]
    return ("bytes", value.decode("ascii")) if isinstance(value, bytes) else ("str", value)


def test_golden_int_snapshot_reads_as_expected():
    """The C-written golden int map (make-golden --int) read by this reader and by the package, as int.expected says."""
    data = (GOLDEN_DIR / "int.snap").read_bytes()
    snap = Snapshot(data)
    assert snap.verify() and (snap.key_kind, snap.required_flags, snap.created) == (3, 1, EXAMPLE_CREATED)
    want = _golden_int_expected()
    assert [(k, *_as_golden_text(v)) for k, v in snap.items()] == want
    assert [k for k, _, _ in want] == sorted(k for k, _, _ in want)
    assert want[0][0] == -(2**63) and want[-1][0] == 2**63 - 1
    sharedmap = _pkg()
    theirs = sharedmap.loads(data)
    assert theirs.verify() and theirs.info()["key_kind"] == "int"
    assert [(k, *_as_golden_text(v)) for k, v in theirs.items()] == want
    # the package writes the same bytes for the same map (but `created` and the header checksum)
    again = _package_map(sharedmap, dict(snap.items())).dump()
    assert again[:96] + again[104:112] + again[120:] == data[:96] + data[104:112] + data[120:]


# ------------------------------------------------------------------------------------------ §13 layers


def test_a_reader_of_plain_snapshots_refuses_a_layer_by_r6(tmp_path):
    """This reader knows required flag bit 0 only, as a reader older than §13: a real layer file (bit 1,
    LAYER) is refused by R6, never misread; the library reads it as base + delta."""
    sharedmap = pytest.importorskip("sharedmap")
    path = tmp_path / "m.smap"
    sharedmap.rbtree({f"k{i}": i for i in range(100)}).save(str(path))
    with sharedmap.edit(path=str(path), compact_at=None) as e:
        e["k5"] = "five"
        del e["k6"]
    data = path.read_bytes()
    assert struct.unpack_from("<I", data, 16)[0] & 0x2  # required_flags: LAYER
    with pytest.raises(FormatError) as info:
        Snapshot(data)
    assert info.value.rule == "R6"
    m = sharedmap.open(str(path))
    assert len(m) == 99 and m["k5"] == "five" and "k6" not in m and m.verify()
