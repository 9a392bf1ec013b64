"""Deterministic benchmark datasets and probe sets (stdlib only: also runs in the sharedmap-1.0.6 venv).

A dataset of N entries is made from a seed: keys are random ASCII 8-24 bytes, values random ASCII
8-48 bytes, drawn from a 64-character alphabet.  The same (n, seed) always gives the same map, in
either kind: 'str' (str -> str) or 'bytes' (bytes -> bytes, the same characters).

Probe sets are stored as one blob plus an offset table, so a process can rebuild *fresh* key
objects from them whenever it wants (slicing a blob always makes a new object): lookups never get a
key object that is the one inserted, nor one whose hash is already cached from an earlier run.
"""
import array
import itertools
import mmap
import os
import random

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CHARS = bytes(ALPHABET[b & 63] for b in range(256))
_KLEN = bytes(8 + b % 17 for b in range(256))  # 8..24
_VLEN = bytes(8 + b % 41 for b in range(256))  # 8..48
_CHUNK = 1 << 20


def _rng(seed, what):
    return random.Random(f"sharedmap-bench/{seed}/{what}")


def _strings(rng, count, table):
    """count random ASCII byte strings with lengths drawn through table, as (blob, offsets)."""
    lens = rng.randbytes(count).translate(table)
    offs = array.array("Q", [0])
    offs.extend(itertools.accumulate(lens))
    blob = rng.randbytes(offs[-1]).translate(_CHARS)
    return blob, offs


def _slices(blob, offs):
    return [blob[a:b] for a, b in zip(offs, itertools.islice(offs, 1, None))]


def _chunk(rng, m, kind):
    """The next m pairs of the generation, lazily: one chunk's blobs are all they hold."""
    kblob, koffs = _strings(rng, m, _KLEN)
    vblob, voffs = _strings(rng, m, _VLEN)
    if kind == "str":
        kblob, vblob = kblob.decode("ascii"), vblob.decode("ascii")
    # Keys and values are made alternately, as a loader parsing records would, so they lie
    # interleaved in memory (a dict made of all keys first, then all values, looks up faster
    # than one loaded from a file).
    keys = map(kblob.__getitem__, map(slice, koffs, itertools.islice(koffs, 1, None)))
    vals = map(vblob.__getitem__, map(slice, voffs, itertools.islice(voffs, 1, None)))
    return zip(keys, vals)


def make(n, seed=1, kind="str"):
    """The dataset as a dict of exactly n entries (insertion order = generation order)."""
    rng = _rng(seed, "data")
    d = {}
    while len(d) < n:
        # setdefault: a (very rare) duplicate key keeps its first value, as if never drawn again.
        for k, v in _chunk(rng, min(_CHUNK, n - len(d)), kind):
            d.setdefault(k, v)
    if len(d) > n:  # only when duplicates shortened a chunk and the next overshot: impossible, but cheap
        d = dict(itertools.islice(d.items(), n))
    return d


def stream(n, seed=1, kind="str"):
    """The pairs make(n) puts in its dict, in its order, generated chunk by chunk as make() does:
    nothing is held but the current chunk's blobs.  Exactly n pairs: where make() skips a
    duplicate key and draws one more, this yields the duplicate (about 0.07 are expected in
    100M pairs, almost none in fewer)."""
    rng = _rng(seed, "data")
    while n:
        m = min(_CHUNK, n)
        yield from _chunk(rng, m, kind)
        n -= m


class Probes:
    """A probe set: a blob + offsets; fresh() makes a new list of new key objects each call."""

    def __init__(self, blob, offs):
        self.blob = blob
        self.offs = offs

    def __len__(self):
        return len(self.offs) - 1

    def fresh(self, kind, count=None):
        blob = self.blob.decode("ascii") if kind == "str" else bytes(self.blob)
        offs = self.offs if count is None else self.offs[: count + 1]
        return _slices(blob, offs)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(len(self).to_bytes(8, "little"))
            f.write(self.offs.tobytes())
            f.write(self.blob)

    @classmethod
    def load(cls, path):
        with open(path, "rb") as f:
            count = int.from_bytes(f.read(8), "little")
            offs = array.array("Q")
            offs.frombytes(f.read(8 * (count + 1)))
            blob = f.read()
        return cls(blob, offs)


class MappedProbes:
    """Probes read straight from the file by mmap, one key at a time, so a memory-measuring
    reader holds no probe list; close() unmaps the file before its PSS is read."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.mm = mmap.mmap(self.f.fileno(), 0, prot=mmap.PROT_READ)
        self.count = int.from_bytes(self.mm[:8], "little")
        self.base = 8 + 8 * (self.count + 1)

    def key(self, i, kind):
        o = 8 + 8 * i
        a = int.from_bytes(self.mm[o:o + 8], "little")
        b = int.from_bytes(self.mm[o + 8:o + 16], "little")
        raw = self.mm[self.base + a:self.base + b]
        return raw.decode("ascii") if kind == "str" else raw

    def close(self):
        self.mm.close()
        self.f.close()


def hit_probes(d, count, seed=1):
    """count keys of d chosen at random (with replacement when count > len(d)), shuffled."""
    rng = _rng(seed, "hits")
    keys = list(d)
    if count <= len(keys):
        picked = rng.sample(keys, count)
    else:
        picked = [keys[rng.randrange(len(keys))] for _ in range(count)]
    return _pack(picked)


def miss_probes(d, count, seed=1):
    """count fresh random keys (same length distribution) that are not in d."""
    rng = _rng(seed, "misses")
    kind_str = isinstance(next(iter(d)), str) if d else True
    out = []
    while len(out) < count:
        blob, offs = _strings(rng, count - len(out) + 16, _KLEN)
        if kind_str:
            blob = blob.decode("ascii")
        out.extend(k for k in _slices(blob, offs) if k not in d)
    return _pack(out[:count])


def _pack(keys):
    raw = [k.encode("ascii") if isinstance(k, str) else k for k in keys]
    offs = array.array("Q", [0])
    offs.extend(itertools.accumulate(len(k) for k in raw))
    return Probes(b"".join(raw), offs)


def data_bytes(d):
    """Key bytes + value bytes of a dataset (all ASCII: a str's len is its UTF-8 length)."""
    return sum(map(len, d)) + sum(map(len, d.values()))


if __name__ == "__main__":  # quick self-check / timing
    import sys
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    t = time.perf_counter()
    d = make(n)
    print(f"make({n}): {time.perf_counter() - t:.2f} s, {data_bytes(d) / n:.1f} data bytes/entry,",
          "pid", os.getpid())
    t = time.perf_counter()
    h = hit_probes(d, 200_000)
    m = miss_probes(d, 200_000)
    print(f"probes: {time.perf_counter() - t:.2f} s", h.fresh("str", 3), m.fresh("str", 3))
