"""fmtreader.py: an independent, pure-Python reader of sharedmap snapshots, written from docs/FORMAT.md alone.

It exists to check that FORMAT.md is enough to write a reader, and to cross-check the C reader.  It is meant
to be obvious rather than fast.  Section numbers (§n) and rule ids (R1..R12, V1..V6) refer to FORMAT.md.

    snap = Snapshot(data)        # R1..R9 (O(1)), raises FormatError(rule_id, message)
    snap.get(key)                # point lookup (an int map's keys are Python ints, §3.1) through the hash table (§5); R10..R12 as records/slots are used
    list(snap.items())           # in key order, by walking the records (§3)
    snap.record_at_rank(i)       # rank -> record through the samples (§4)
    snap.bisect_left(key)        # binary search over the samples (§4), then a short walk
    snap.verify()                # V1..V6 (O(n))
"""
import struct

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MASK48",
    "MASK64",
    "FormatError",
    "int_key",
    "int_key_value",
    "Record",
    "Snapshot",
    "read_varint",
    "xxh64",
]

MASK64 = (1 << 64) - 1
MASK48 = (1 << 48) - 1
MAGIC = b"\x89SMP\r\n\x1a\n"
BYTE_ORDER = 0x0A0B0C0D
VERSION = 1
HEADER_SIZE = 128

KEY_NONE, KEY_BYTES, KEY_STR, KEY_INT = 0, 1, 2, 3
REQ_INT_KEYS = 0x1  # §9: required_flags bit 0, set exactly when key_kind is 3
REQ_KNOWN = REQ_INT_KEYS
INT_KEY_SIZE = 8  # §3.1
T_NONE, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_BYTES, T_STR = range(7)
TYPE_NAMES = ("none", "false", "true", "int", "float", "bytes", "str")


class FormatError(ValueError):
    """A snapshot breaks rule `rule` (e.g. "R7", "V3") of FORMAT.md §7."""

    def __init__(self, rule, message):
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


# ---------------------------------------------------------------------------------------------- §6 XXH64
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
P4 = 0x85EBCA77C2B2AE63
P5 = 0x27D4EB2F165667C5


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & MASK64


def _round(acc, x):
    return (_rotl((acc + x * P2) & MASK64, 31) * P1) & MASK64


def _merge(acc, v):
    return (((acc ^ _round(0, v)) * P1) + P4) & MASK64


def xxh64(data, seed=0):
    """XXH64 of `data` (bytes-like) with `seed`, exactly as FORMAT.md §6 writes it."""
    data = bytes(data)
    seed &= MASK64
    n = len(data)
    p = 0
    if n >= 32:
        v1 = (seed + P1 + P2) & MASK64
        v2 = (seed + P2) & MASK64
        v3 = seed
        v4 = (seed - P1) & MASK64
        while n - p >= 32:
            a, b, c, d = struct.unpack_from("<4Q", data, p)
            v1 = _round(v1, a)
            v2 = _round(v2, b)
            v3 = _round(v3, c)
            v4 = _round(v4, d)
            p += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & MASK64
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = (seed + P5) & MASK64
    h = (h + n) & MASK64
    while n - p >= 8:
        (x,) = struct.unpack_from("<Q", data, p)
        h = (_rotl(h ^ _round(0, x), 27) * P1 + P4) & MASK64
        p += 8
    if n - p >= 4:
        (x,) = struct.unpack_from("<I", data, p)
        h = (_rotl(h ^ ((x * P1) & MASK64), 23) * P2 + P3) & MASK64
        p += 4
    while p < n:
        h = (_rotl(h ^ ((data[p] * P5) & MASK64), 11) * P1) & MASK64
        p += 1
    h ^= h >> 33
    h = (h * P2) & MASK64
    h ^= h >> 29
    h = (h * P3) & MASK64
    h ^= h >> 32
    return h


# ---------------------------------------------------------------------------------------------- §3.1 int keys
def int_key(i):
    """The 8 key bytes of the signed 64-bit integer `i` (§3.1): i + 2^63, big-endian."""
    if not -(1 << 63) <= i < 1 << 63:
        raise OverflowError(f"{i} is not a signed 64-bit integer")
    return (i + (1 << 63)).to_bytes(INT_KEY_SIZE, "big")


def int_key_value(raw):
    """The integer of 8 int-key bytes (§3.1)."""
    return int.from_bytes(raw, "big") - (1 << 63)


# ---------------------------------------------------------------------------------------------- §3 records
def read_varint(data, pos, end):
    """Unsigned LEB128 at `pos`, not reading at or past `end`: (value, position after it).  R10 on a varint
    that runs past `end`, is longer than 10 bytes or does not fit in 64 bits."""
    value = 0
    shift = 0
    for i in range(10):
        if pos + i >= end:
            raise FormatError("R10", f"varint at {pos} runs past the end of the records ({end})")
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if value > MASK64:
                raise FormatError("R10", f"varint at {pos} does not fit in 64 bits")
            return value, pos + i + 1
        shift += 7
    raise FormatError("R10", f"varint at {pos} is longer than 10 bytes")


class Record:
    """One parsed record: where it is, its raw key, its value type and payload bounds."""

    __slots__ = ("end", "key", "offset", "payload_end", "payload_start", "type")

    def __init__(self, offset, key, vtype, payload_start, payload_end, end):
        self.offset = offset
        self.key = key
        self.type = vtype
        self.payload_start = payload_start
        self.payload_end = payload_end
        self.end = end

    def __repr__(self):
        return (
            f"Record(offset={self.offset}, key={self.key!r}, type={self.type}, "
            f"payload=[{self.payload_start}, {self.payload_end}), end={self.end})"
        )


def _check_payload_length(offset, vtype, vlen):
    """R11: the type is 0..6 and the payload length fits it."""
    if vtype > T_STR:
        raise FormatError("R11", f"record at {offset}: value type {vtype} is invalid in version 1")
    if vtype in (T_NONE, T_FALSE, T_TRUE) and vlen != 0:
        raise FormatError("R11", f"record at {offset}: {TYPE_NAMES[vtype]} value with a {vlen}-byte payload")
    if vtype == T_INT and vlen > 8:
        raise FormatError("R11", f"record at {offset}: int value with a {vlen}-byte payload")
    if vtype == T_FLOAT and vlen != 8:
        raise FormatError("R11", f"record at {offset}: float value with a {vlen}-byte payload")


def _prefix8(key):
    """The 8-byte sample prefix of a key (§4): its first 8 bytes, zero-padded."""
    return key[:8].ljust(8, b"\0")


def _compare(a, b):
    """Key order (unsigned bytewise, shorter first on a common prefix): -1, 0 or 1."""
    return (a > b) - (a < b)


# ---------------------------------------------------------------------------------------------- the reader
class Snapshot:
    """A snapshot held in a bytes-like object.  Opening checks R1..R9."""

    def __init__(self, data):
        self.data = bytes(data)
        self._parse_header()

    # ------------------------------------------------------------------ §2 header, R1..R9
    def _u(self, fmt, off):
        return struct.unpack_from("<" + fmt, self.data, off)[0]

    def _parse_header(self):
        d = self.data
        n = len(d)
        # R1: magic.
        if n < 8 or d[:8] != MAGIC:
            raise FormatError("R1", "not a sharedmap snapshot (bad magic)")
        # R2: 16 bytes (byte order, version and header size) present, then the byte order.
        if n < 16:
            raise FormatError("R2", f"truncated header: {n} bytes")
        byte_order = self._u("I", 8)
        if byte_order != BYTE_ORDER:
            if byte_order == 0x0D0C0B0A:
                raise FormatError("R2", "snapshot written with the other byte order")
            raise FormatError("R2", f"bad byte order mark 0x{byte_order:08X}")
        # R3: version, before anything else is interpreted.
        self.version = self._u("H", 12)
        if self.version != VERSION:
            raise FormatError("R3", f"format version {self.version}, this reader knows only {VERSION}")
        # R4: header size, and the whole header is present.
        self.header_size = self._u("H", 14)
        if self.header_size != HEADER_SIZE:
            raise FormatError("R4", f"header_size {self.header_size}, expected {HEADER_SIZE}")
        if n < HEADER_SIZE:
            raise FormatError("R4", f"truncated header: {n} bytes")
        # R5: header checksum over [0, 112).
        self.header_checksum = self._u("Q", 112)
        computed = xxh64(d[:112], 0)
        if computed != self.header_checksum:
            raise FormatError(
                "R5", f"header checksum 0x{self.header_checksum:016X} != computed 0x{computed:016X}"
            )
        # R6: required flags: bit 0 (int keys, §9) is the only one known.
        self.required_flags = self._u("I", 16)
        self.compat_flags = self._u("I", 20)  # unknown bits ignored
        if self.required_flags & ~REQ_KNOWN:
            raise FormatError("R6", f"unknown required flags 0x{self.required_flags & ~REQ_KNOWN:08X}")
        # The rest of the header.
        self.key_kind = d[24]
        self.hash_id = d[25]
        self.sample_shift = d[26]
        self.reserved = d[27:32]
        (
            self.total_size,
            self.count,
            self.hash_seed,
            self.home_slots,
            self.table_slots,
            self.table_offset,
            self.samples_offset,
            self.records_end,
            self.created,
            self.body_checksum,
        ) = struct.unpack_from("<10Q", d, 32)
        self.superseded = self._u("Q", 120)
        # R7: reserved bytes.
        if any(self.reserved):
            raise FormatError("R7", f"reserved header bytes 27..31 are not zero: {self.reserved.hex()}")
        # R8: total size.
        if self.total_size != n:
            raise FormatError("R8", f"total_size {self.total_size} but {n} bytes are available")
        # R9: key kind, hash id, sample shift, then the layout (Python integers do not overflow, so sums would be
        # safe here; differences anyway).
        if self.key_kind > KEY_INT:
            raise FormatError("R9", f"unknown key_kind {self.key_kind}")
        if self.key_kind == KEY_NONE and self.count != 0:
            raise FormatError("R9", f"key_kind 0 (none) with count {self.count}")
        if bool(self.required_flags & REQ_INT_KEYS) != (self.key_kind == KEY_INT):
            raise FormatError(
                "R9", f"required_flags bit 0 is {self.required_flags & REQ_INT_KEYS} with key_kind {self.key_kind}"
            )
        if self.hash_id != 1:
            raise FormatError("R9", f"unknown hash_id {self.hash_id}")
        if self.sample_shift > 8:
            raise FormatError("R9", f"sample_shift {self.sample_shift} > 8")
        if not (HEADER_SIZE <= self.records_end <= self.samples_offset <= self.table_offset <= self.total_size):
            raise FormatError(
                "R9",
                "regions out of order: need 128 <= records_end <= samples_offset <= table_offset <= total_size, "
                f"have {self.records_end}, {self.samples_offset}, {self.table_offset}, {self.total_size}",
            )
        self.sample_count = -(-self.count // (1 << self.sample_shift))  # ceil
        if 16 * self.sample_count > self.table_offset - self.samples_offset:
            raise FormatError(
                "R9", f"{self.sample_count} samples do not fit in [{self.samples_offset}, {self.table_offset})"
            )
        if self.total_size - self.table_offset != 8 * self.table_slots:
            raise FormatError(
                "R9", f"table of {self.table_slots} slots does not fill [{self.table_offset}, {self.total_size})"
            )
        if self.home_slots > self.table_slots:
            raise FormatError("R9", f"home_slots {self.home_slots} > table_slots {self.table_slots}")
        if self.count > self.table_slots:
            raise FormatError("R9", f"count {self.count} > table_slots {self.table_slots}")
        if self.count > (self.records_end - HEADER_SIZE) // 2:
            raise FormatError("R9", f"count {self.count} records cannot fit in [128, {self.records_end})")
        if self.key_kind == KEY_INT and self.count > (self.records_end - HEADER_SIZE) // 10:
            raise FormatError("R9", f"count {self.count} int records cannot fit in [128, {self.records_end})")
        if self.count > 0 and self.home_slots == 0:
            raise FormatError("R9", "home_slots is 0 with a non-empty map")

    # ------------------------------------------------------------------ keys and values
    def _decode_key(self, raw):
        if self.key_kind == KEY_INT:
            return int_key_value(raw)  # R10 made klen 8
        if self.key_kind == KEY_STR:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FormatError("V3", f"str key {raw!r} is not valid UTF-8: {e}") from None
        return raw

    def _encode_key(self, key):
        """A query key to bytes; None when it cannot be a key of this snapshot."""
        if self.key_kind == KEY_INT or (isinstance(key, int) and not isinstance(key, bool)):
            if isinstance(key, bool) or not isinstance(key, int) or self.key_kind not in (KEY_INT, KEY_NONE):
                return None  # an int map holds only int keys, and only an int map holds them
            if not -(1 << 63) <= key < 1 << 63:
                return None
            return int_key(key)
        if isinstance(key, str):
            try:
                return key.encode("utf-8")
            except UnicodeEncodeError:
                return None  # lone surrogates: no UTF-8 form, so no such key
        return bytes(key)

    def value_of(self, rec):
        """The Python value of a record: None, False, True, int, float, bytes or str."""
        payload = self.data[rec.payload_start : rec.payload_end]
        t = rec.type
        if t == T_NONE:
            return None
        if t == T_FALSE:
            return False
        if t == T_TRUE:
            return True
        if t == T_INT:
            return int.from_bytes(payload, "little", signed=True) if payload else 0
        if t == T_FLOAT:
            return struct.unpack("<d", payload)[0]
        if t == T_BYTES:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError("V3", f"str value of the record at {rec.offset} is not valid UTF-8: {e}") from None

    # ------------------------------------------------------------------ §3 records, R10/R11
    def record(self, offset):
        """Parse the record at `offset` (from a slot, a sample or the previous record): R10, R11."""
        end = self.records_end
        if not HEADER_SIZE <= offset < end:
            raise FormatError("R10", f"record offset {offset} outside [128, {end})")
        klen, pos = read_varint(self.data, offset, end)
        vword, pos = read_varint(self.data, pos, end)
        vtype, vlen = vword & 0xF, vword >> 4
        # Differences, not sums.
        if klen > end - pos:
            raise FormatError("R10", f"record at {offset}: {klen}-byte key runs past records_end {end}")
        key = self.data[pos : pos + klen]
        pos += klen
        if vlen > end - pos:
            raise FormatError("R10", f"record at {offset}: {vlen}-byte payload runs past records_end {end}")
        if self.key_kind == KEY_INT and klen != INT_KEY_SIZE:
            raise FormatError("R10", f"record at {offset}: a {klen}-byte key in an int map (§3.1: 8)")
        _check_payload_length(offset, vtype, vlen)
        return Record(offset, key, vtype, pos, pos + vlen, pos + vlen)

    def records(self):
        """The `count` records in key order, by walking from 128."""
        off = HEADER_SIZE
        for _ in range(self.count):
            rec = self.record(off)
            yield rec
            off = rec.end

    def items(self):
        for rec in self.records():
            yield self._decode_key(rec.key), self.value_of(rec)

    def keys(self):
        for rec in self.records():
            yield self._decode_key(rec.key)

    __iter__ = keys

    def __len__(self):
        return self.count

    # ------------------------------------------------------------------ §5 hash table
    def slot(self, p):
        return struct.unpack_from("<Q", self.data, self.table_offset + 8 * p)[0]

    def home_and_tag(self, raw_key):
        h = xxh64(raw_key, self.hash_seed)
        return (h * self.home_slots) >> 64, h & 0xFF

    def find(self, key):
        """The Record of `key`, or None: the §5 lookup algorithm, line by line."""
        q = self._encode_key(key)
        if q is None or self.count == 0:
            return None
        home, tag = self.home_and_tag(q)
        p = home
        while p < self.table_slots and p <= home + 255:
            s = self.slot(p)
            if s == 0:
                return None
            disp = s >> 56
            if disp > p:
                raise FormatError("R12", f"slot {p} has displacement {disp} > its index")
            if p - disp > home:
                return None  # entries of later homes begin here
            if p - disp == home and (s >> 48) & 0xFF == tag:
                rec = self.record(s & MASK48)
                if rec.key == q:
                    return rec
            p += 1
        return None

    def get(self, key, default=None):
        rec = self.find(key)
        return default if rec is None else self.value_of(rec)

    def __contains__(self, key):
        return self.find(key) is not None

    def __getitem__(self, key):
        rec = self.find(key)
        if rec is None:
            raise KeyError(key)
        return self.value_of(rec)

    # ------------------------------------------------------------------ §4 samples
    def sample(self, i):
        """Sample i: (record offset, 8-byte key prefix).  The offset is not checked here (record() does R10)."""
        if not 0 <= i < self.sample_count:
            raise IndexError(i)
        base = self.samples_offset + 16 * i
        return struct.unpack_from("<Q", self.data, base)[0], self.data[base + 8 : base + 16]

    def record_at_rank(self, rank):
        """The Record of rank `rank` (0-based, key order): its sample, then at most 2^shift - 1 steps."""
        if rank < 0:
            rank += self.count
        if not 0 <= rank < self.count:
            raise IndexError(rank)
        off, _ = self.sample(rank >> self.sample_shift)
        rec = self.record(off)
        for _ in range(rank & ((1 << self.sample_shift) - 1)):
            rec = self.record(rec.end)
        return rec

    def peekitem(self, rank=-1):
        rec = self.record_at_rank(rank)
        return self._decode_key(rec.key), self.value_of(rec)

    def _sample_cmp(self, i, q, qprefix):
        """Order of sample i's key against q (-1, 0, 1): the prefixes as big-endian integers, the full key on a tie."""
        off, prefix = self.sample(i)
        a, b = int.from_bytes(prefix, "big"), int.from_bytes(qprefix, "big")
        if a != b:
            return -1 if a < b else 1
        return _compare(self.record(off).key, q)

    def _bisect(self, key, right):
        q = self._encode_key(key)
        if q is None:
            raise ValueError(f"{key!r} cannot be a key of this snapshot (no UTF-8 form, or not an int64 of an int map)")
        if self.count == 0:
            return 0
        qprefix = _prefix8(q)
        # `before(c)`: does a key comparing `c` to q go before the insertion point?
        before = (lambda c: c <= 0) if right else (lambda c: c < 0)
        # Samples before the insertion point form a prefix of the sample list: find its length j.
        lo, hi = 0, self.sample_count
        while lo < hi:
            mid = (lo + hi) // 2
            if before(self._sample_cmp(mid, q, qprefix)):
                lo = mid + 1
            else:
                hi = mid
        j = lo
        if j == 0:
            return 0
        # The insertion point is in ((j-1) << shift, min(j << shift, count)]: walk from sample j-1.
        rank = (j - 1) << self.sample_shift
        stop = min(j << self.sample_shift, self.count)
        off, _ = self.sample(j - 1)
        rank += 1  # the sampled record itself is before the insertion point
        rec = self.record(off)
        while rank < stop:
            rec = self.record(rec.end)
            if not before(_compare(rec.key, q)):
                break
            rank += 1
        return rank

    def bisect_left(self, key):
        """Number of keys < key."""
        return self._bisect(key, right=False)

    def bisect_right(self, key):
        """Number of keys <= key."""
        return self._bisect(key, right=True)

    # ------------------------------------------------------------------ §7 full verification
    def verify(self):
        """V1..V6 (and R10..R12 on the way).  Returns True or raises FormatError."""
        d = self.data
        # V1: body checksum over [128, total_size).
        computed = xxh64(d[HEADER_SIZE : self.total_size], 0)
        if computed != self.body_checksum:
            raise FormatError("V1", f"body checksum 0x{self.body_checksum:016X} != computed 0x{computed:016X}")
        # V2..V4 in one walk, record by record, each record's checks in the order §7 lists them: R10 (and a start
        # below 2^48), R11, key order (V2), UTF-8 of a str key, then of a str value (V3), its sample (V4).
        recs = []
        off = HEADER_SIZE
        for i in range(self.count):
            if off >= self.records_end:
                raise FormatError("V2", f"only {i} records in [128, {self.records_end}), count is {self.count}")
            rec = self.record(off)  # R10, R11
            if off > MASK48:
                raise FormatError("V2", f"record {i} starts at {off}, where no slot can point")
            if recs and not recs[-1].key < rec.key:
                raise FormatError(
                    "V2", f"key {rec.key!r} at {rec.offset} does not follow {recs[-1].key!r} at {recs[-1].offset}"
                )
            self._decode_key(rec.key)  # V3
            if rec.type == T_STR:
                self.value_of(rec)  # V3
            if i & ((1 << self.sample_shift) - 1) == 0:
                s = i >> self.sample_shift
                soff, prefix = self.sample(s)
                if soff != rec.offset:
                    raise FormatError("V4", f"sample {s} points at {soff}, record {i} is at {rec.offset}")
                if prefix != _prefix8(rec.key):
                    raise FormatError("V4", f"sample {s} holds prefix {prefix!r}, the key is {rec.key!r}")
            recs.append(rec)
            off = rec.end
        # V2: ... and the records fill [128, records_end), checked once every record has passed the above.
        if off != self.records_end:
            raise FormatError("V2", f"{self.count} records end at {off}, records_end is {self.records_end}")
        # V5: padding between regions is zero.
        samples_end = self.samples_offset + 16 * self.sample_count
        for lo, hi in ((self.records_end, self.samples_offset), (samples_end, self.table_offset)):
            if any(d[lo:hi]):
                raise FormatError("V5", f"padding [{lo}, {hi}) is not zero")
        # V6: the hash table.
        by_offset = {rec.offset: rec for rec in recs}
        named = set()
        last_home = -1
        last_empty = -1
        for p in range(self.table_slots):
            s = self.slot(p)
            if s == 0:
                last_empty = p
                continue
            disp, tag, roff = s >> 56, (s >> 48) & 0xFF, s & MASK48
            if disp > p:
                raise FormatError("R12", f"slot {p} has displacement {disp} > its index")
            rec = by_offset.get(roff)
            if rec is None:
                raise FormatError("V6", f"slot {p} points at {roff}, which is not a record start")
            home, want_tag = self.home_and_tag(rec.key)
            if tag != want_tag:
                raise FormatError("V6", f"slot {p}: tag 0x{tag:02X}, the key {rec.key!r} hashes to 0x{want_tag:02X}")
            if p - disp != home:
                raise FormatError("V6", f"slot {p}: home {p - disp}, the key {rec.key!r} has home {home}")
            if home < last_home:
                raise FormatError("V6", f"slot {p}: home {home} after home {last_home} (not Robin Hood order)")
            if last_empty >= home:
                raise FormatError("V6", f"slot {p}: empty slot {last_empty} between its home {home} and it")
            if roff in named:
                raise FormatError("V6", f"record at {roff} is named by more than one slot")
            named.add(roff)
            last_home = home
        if len(named) != len(recs):
            missing = sorted(set(by_offset) - named)
            raise FormatError("V6", f"records at {missing} are named by no slot")
        return True
