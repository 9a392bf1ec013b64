"""Adapters: one class per contender, all driven the same way by worker.py.

Each adapter knows how to build its structure from a dict and publish it (build), attach to it by
name from another process (open), the loop body a user writes for one lookup (lookup), how to walk
all items (items), its published size, and how to remove it.  Imports are lazy, so this file loads
in either virtualenv (ours + peers, or the one holding the original sharedmap 1.0.6).

`lookup` returns (body, names): the statement run once per probe key `k` inside a timed loop, and
the objects it uses (bound methods, so the loop measures the call, not attribute lookups).  It
includes whatever conversion a user of that kind (str or bytes) must pay: py-lmdb wants bytes, so
a str user encodes the key and decodes the value; marisa-trie returns a list of bytes; etc.
"""
import os
import time

SHM_DIR = "/dev/shm"
FILE_DIR = os.path.join(SHM_DIR, "smbench")  # file-based peers keep their files in tmpfs too


class NA(Exception):
    """A dimension this peer cannot do (reported as n/a with the message)."""


def _unregister_shm(shm):
    # CPython < 3.13 registers every SharedMemory, even one only attached to, with the resource
    # tracker, which unlinks it when this process exits (gh-82300).  A reader exiting would destroy
    # the map for everyone, so every process that touches one unregisters it: a workaround that
    # users of these peers need too.
    try:
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")
    except Exception:
        pass


class Peer:
    name = "?"
    kinds = ("str", "bytes")
    shared = True      # one copy in RAM for all readers
    ordered = False    # items() in sorted key order
    modules = ()
    per_item_build = False  # builds by a Python-level loop per item (time-boxable)
    note = ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.kind = ctx["kind"]
        self.tag = f"smbench-{self.name}-{ctx['n']}-{self.kind}".replace(".", "_")

    def build(self, d, deadline=None):
        """Build + publish; returns {'fill_s', 'publish_s', 'size', ...}."""
        raise NotImplementedError

    def open(self):
        raise NotImplementedError

    def close(self, h):
        pass

    def body(self):
        """The statement run per probe key `k`; `get` is what getter() returns."""
        return "get(k)"

    def getter(self, h):
        return h.get

    def lookup(self, h):
        return self.body(), {"get": self.getter(h)}

    def items(self, h):
        """(iterable of (key, value), body run per item to get user-ready objects)."""
        raise NA("no iteration")

    def remove(self):
        pass


class DictPeer(Peer):
    """The in-process reference: each process has its own dict (made from the dataset)."""

    name = "dict"
    modules = ()
    shared = False
    note = "in-process; each process holds its own copy"

    def build(self, d, deadline=None):
        raise NA("the dict is the input")

    def open(self):
        import dataset

        return dataset.make(self.ctx["n"], self.ctx["seed"], self.kind)

    def items(self, h):
        return h.items(), "pass"


class OursPeer(Peer):
    name = "sharedmap"
    modules = ("sharedmap",)
    ordered = True

    def build(self, d, deadline=None):
        import sharedmap

        t0 = time.perf_counter()
        w = sharedmap.rbtree(d)
        t1 = time.perf_counter()
        w.share(self.tag, force=True)
        t2 = time.perf_counter()
        dump_len = len(w.dump()) if self.ctx["n"] <= 1_000_000 else None
        del w
        m = sharedmap.sharedmap(self.tag)
        size = m.info()["size"]
        out = {"fill_s": t1 - t0, "publish_s": t2 - t1, "size": size}
        if dump_len is not None and dump_len != size:
            out["warning"] = f"dump() gives {dump_len} bytes but info()['size'] is {size}"
        return out

    def open(self):
        import sharedmap

        return sharedmap.sharedmap(self.tag)

    def close(self, h):
        c = getattr(h, "close", None)
        if c:
            c()

    def lookup_getitem(self, h):
        return "m[k]", {"m": h}

    def items(self, h):
        return h.items(), "pass"

    def remove(self):
        import sharedmap

        try:
            sharedmap.rbtree.remove(self.tag)
        except Exception:
            pass


class OrigPeer(Peer):
    """sharedmap 1.0.6 from PyPI (its own venv): a C++ rbtree builder, an AVL snapshot in SysV shm."""

    name = "sharedmap-1.0.6"
    modules = ("sharedmap",)
    kinds = ("str",)  # stores str only: bytes keys/values come back as str
    per_item_build = True

    def build(self, d, deadline=None):
        import sharedmap

        t0 = time.perf_counter()
        w = sharedmap.rbtree()
        s = w.set
        done = 0
        if deadline is None:
            for k, v in d.items():
                s(k, v)
            done = len(d)
        else:
            it = iter(d.items())
            while True:
                chunk = 0
                for k, v in it:
                    s(k, v)
                    chunk += 1
                    if chunk == 4096:
                        break
                done += chunk
                if chunk < 4096:
                    break
                if time.perf_counter() > deadline:
                    return {"fill_s": time.perf_counter() - t0, "partial_done": done}
        t1 = time.perf_counter()
        w.share(self.tag, force=True)
        t2 = time.perf_counter()
        size = len(w.dump())  # exactly what share() writes into the segment
        return {"fill_s": t1 - t0, "publish_s": t2 - t1, "size": size}

    def open(self):
        import sharedmap

        return sharedmap.sharedmap(self.tag)

    def remove(self):
        import sharedmap

        try:
            sharedmap.rbtree.remove(self.tag)
        except Exception:
            pass


class LmdbPeer(Peer):
    name = "lmdb"
    modules = ("lmdb",)
    ordered = True
    note = "py-lmdb, one read txn; str users encode keys and decode values"

    @property
    def path(self):
        return os.path.join(FILE_DIR, self.tag + ".lmdb")

    def build(self, d, deadline=None):
        import lmdb

        os.makedirs(FILE_DIR, exist_ok=True)
        self.remove()
        est = sum(map(len, d)) + sum(map(len, d.values()))
        t0 = time.perf_counter()
        env = lmdb.open(self.path, map_size=max(1 << 24, 4 * est + 64 * len(d)), subdir=False,
                        sync=False, metasync=False, readahead=False, lock=True)
        with env.begin(write=True) as txn:
            cur = txn.cursor()
            if self.kind == "str":
                cur.putmulti((k.encode(), v.encode()) for k, v in d.items())
            else:
                cur.putmulti(d.items())
        t1 = time.perf_counter()
        env.sync(True)
        info, stat = env.info(), env.stat()
        env.close()
        t2 = time.perf_counter()
        return {"fill_s": t1 - t0, "publish_s": t2 - t1,
                "size": (info["last_pgno"] + 1) * stat["psize"]}

    def open(self):
        import lmdb

        env = lmdb.open(self.path, subdir=False, readonly=True, lock=True, readahead=False)
        return env, env.begin()

    def close(self, h):
        env, txn = h
        txn.abort()
        env.close()

    def body(self):
        if self.kind == "str":
            return "v = get(k.encode())\nif v is not None: v = v.decode()"
        return "get(k)"

    def getter(self, h):
        return h[1].get

    def items(self, h):
        cur = h[1].cursor()
        cur.first()
        it = cur.iternext(keys=True, values=True)
        return it, ("k.decode(); v.decode()" if self.kind == "str" else "pass")

    def remove(self):
        for p in (self.path, self.path + "-lock"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


class MarisaPeer(Peer):
    name = "marisa-trie"
    modules = ("marisa_trie",)
    note = "BytesTrie saved to tmpfs, readers mmap it; keys are str only (bytes users decode)"

    @property
    def path(self):
        return os.path.join(FILE_DIR, self.tag + ".marisa")

    def build(self, d, deadline=None):
        import marisa_trie

        os.makedirs(FILE_DIR, exist_ok=True)
        t0 = time.perf_counter()
        if self.kind == "str":
            t = marisa_trie.BytesTrie((k, v.encode()) for k, v in d.items())
        else:
            t = marisa_trie.BytesTrie((k.decode(), v) for k, v in d.items())
        t1 = time.perf_counter()
        tmp = self.path + ".tmp"
        t.save(tmp)
        os.rename(tmp, self.path)
        t2 = time.perf_counter()
        return {"fill_s": t1 - t0, "publish_s": t2 - t1, "size": os.path.getsize(self.path)}

    def open(self):
        import marisa_trie

        t = marisa_trie.BytesTrie()
        t.mmap(self.path)
        return t

    def body(self):
        if self.kind == "str":
            return "v = get(k)\nif v is not None: v = v[0].decode()"
        return "v = get(k.decode())\nif v is not None: v = v[0]"

    def items(self, h):
        return h.iteritems(), ("v.decode()" if self.kind == "str" else "k.encode()")

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class SmdPeer(Peer):
    """shared-memory-dict: the whole dict pickled into one segment; every read unpickles it all."""

    name = "shared-memory-dict"
    modules = ("shared_memory_dict",)
    note = "every get() copies and unpickles the whole segment"

    def build(self, d, deadline=None):
        import pickle

        from shared_memory_dict import SharedMemoryDict

        self.remove()
        # The user must give the segment's size; sizing it (one extra pickle) is not timed.
        size = len(pickle.dumps(d)) + 4096
        t0 = time.perf_counter()
        smd = SharedMemoryDict(self.tag, size)
        _unregister_shm(smd.shm)
        smd.update(d)
        t1 = time.perf_counter()
        return {"fill_s": t1 - t0, "publish_s": 0.0, "size": smd.shm.size}

    def open(self):
        from shared_memory_dict import SharedMemoryDict

        smd = SharedMemoryDict(self.tag, 1)
        _unregister_shm(smd.shm)
        return smd

    def close(self, h):
        h.cleanup()

    def items(self, h):
        return h.items(), "pass"

    def remove(self):
        try:
            os.unlink(os.path.join(SHM_DIR, "sm_" + self.tag))
        except FileNotFoundError:
            pass


class UltraPeer(Peer):
    """UltraDict: a stream of pickled updates + full pickled dumps in shared memory; every process
    keeps a full local dict, loaded when it attaches."""

    name = "UltraDict"
    modules = ("UltraDict",)
    shared = False
    per_item_build = True
    note = "each reader loads a full local copy at attach"

    def build(self, d, deadline=None):
        from UltraDict import UltraDict

        self.remove()
        t0 = time.perf_counter()
        # The documented way: UltraDict(a_dict, name=...) streams every item; the stream buffer
        # is made big enough that no intermediate full dump happens, then one full dump is
        # written so attaching processes load one pickle instead of replaying the stream.
        ud = UltraDict(name=self.tag, buffer_size=min(2**32 - 1, 64 * len(d) + 2**20),
                       auto_unlink=False, create=True)
        s = ud.__setitem__
        done = 0
        it = iter(d.items())
        while True:
            chunk = 0
            for k, v in it:
                s(k, v)
                chunk += 1
                if chunk == 4096:
                    break
            done += chunk
            if chunk < 4096:
                break
            if deadline is not None and time.perf_counter() > deadline:
                return {"fill_s": time.perf_counter() - t0, "partial_done": done}
        t1 = time.perf_counter()
        mem = ud.dump()
        t2 = time.perf_counter()
        return {"fill_s": t1 - t0, "publish_s": t2 - t1, "size": mem.size}

    def open(self):
        from UltraDict import UltraDict

        return UltraDict(name=self.tag, create=False)

    def close(self, h):
        h.close()

    def items(self, h):
        return h.items(), "pass"

    def remove(self):
        try:
            from UltraDict import UltraDict

            ud = UltraDict(name=self.tag, create=False)
            ud.unlink()
        except Exception:
            pass
        for p in os.listdir(SHM_DIR):
            if p.startswith(self.tag):
                try:
                    os.unlink(os.path.join(SHM_DIR, p))
                except OSError:
                    pass


class SqlitePeer(Peer):
    name = "sqlitedict"
    modules = ("sqlitedict",)
    note = "SQLite file in tmpfs; values pickled"

    @property
    def path(self):
        return os.path.join(FILE_DIR, self.tag + ".sqlite")

    def build(self, d, deadline=None):
        from sqlitedict import SqliteDict

        os.makedirs(FILE_DIR, exist_ok=True)
        self.remove()
        t0 = time.perf_counter()
        sd = SqliteDict(self.path, autocommit=False, outer_stack=False)
        sd.update(d)
        t1 = time.perf_counter()
        sd.commit()
        sd.close()
        t2 = time.perf_counter()
        return {"fill_s": t1 - t0, "publish_s": t2 - t1, "size": os.path.getsize(self.path)}

    def open(self):
        from sqlitedict import SqliteDict

        return SqliteDict(self.path, flag="r", outer_stack=False)

    def close(self, h):
        h.close()

    def items(self, h):
        return h.items(), "pass"

    def remove(self):
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass


class PicklePeer(Peer):
    """pickle.dumps of the dict to a tmpfs file; attaching = read + pickle.loads (a full copy)."""

    name = "pickle"
    modules = ("pickle",)
    shared = False
    note = "attach = read file + pickle.loads; each process then holds its own dict"

    @property
    def path(self):
        return os.path.join(FILE_DIR, self.tag + ".pickle")

    def build(self, d, deadline=None):
        import pickle

        os.makedirs(FILE_DIR, exist_ok=True)
        t0 = time.perf_counter()
        blob = pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)
        t1 = time.perf_counter()
        with open(self.path, "wb") as f:
            f.write(blob)
        t2 = time.perf_counter()
        return {"fill_s": t1 - t0, "publish_s": t2 - t1, "size": len(blob)}

    def open(self):
        import pickle

        with open(self.path, "rb") as f:
            return pickle.load(f)

    def items(self, h):
        return h.items(), "pass"

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


PEERS = {p.name: p for p in (DictPeer, OursPeer, OrigPeer, LmdbPeer, MarisaPeer, SmdPeer, UltraPeer,
                             SqlitePeer, PicklePeer)}
