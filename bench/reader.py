"""A lean reader process for the memory test: attach, look up keys, unmap the probes, wait.

    python reader.py PEER KIND TAG PATH PROBEFILE COUNT BUDGET_S

It imports nothing but sys, mmap, time and the peer's own module, so that its PSS is the
interpreter plus what the map costs, and compares fairly with an empty interpreter.  The probe keys
are read one at a time from the mmap'ed probe file (fresh objects, no list kept), and the file is
unmapped before the driver reads /proc/PID/smaps_rollup.  PEER "none" does everything but open a
map (the harness's own cost).  Prints {"ready": true, "lookups": N}, then waits for a line on stdin.
"""
import mmap
import sys
import time


def open_peer(peer, kind, tag, path):
    """(handle to keep alive, get(key) -> value) for each contender."""
    if peer == "sharedmap" or peer == "sharedmap-1.0.6":
        import sharedmap

        m = sharedmap.sharedmap(tag)
        return m, m.get
    if peer == "lmdb":
        import lmdb

        env = lmdb.open(path, subdir=False, readonly=True, lock=True, readahead=False)
        txn = env.begin()
        g = txn.get
        if kind == "str":
            def get(k):
                v = g(k.encode())
                return v.decode() if v is not None else None
            return (env, txn), get
        return (env, txn), g
    if peer == "marisa-trie":
        import marisa_trie

        t = marisa_trie.BytesTrie()
        t.mmap(path)
        g = t.get

        def get(k):
            v = g(k if kind == "str" else k.decode())
            return None if v is None else (v[0].decode() if kind == "str" else v[0])
        return t, get
    if peer == "shared-memory-dict":
        from multiprocessing import resource_tracker

        from shared_memory_dict import SharedMemoryDict

        smd = SharedMemoryDict(tag, 1)
        resource_tracker.unregister(smd.shm._name, "shared_memory")  # see peers._unregister_shm
        return smd, smd.get
    if peer == "UltraDict":
        from UltraDict import UltraDict

        ud = UltraDict(name=tag, create=False)
        return ud, ud.get
    if peer == "sqlitedict":
        from sqlitedict import SqliteDict

        sd = SqliteDict(path, flag="r", outer_stack=False)
        return sd, sd.get
    if peer == "pickle":
        import pickle

        with open(path, "rb") as f:
            d = pickle.load(f)
        return d, d.get
    raise SystemExit(f"reader: unknown peer {peer}")


def main():
    peer, kind, tag, path, probe_path = sys.argv[1:6]
    count, budget = int(sys.argv[6]), float(sys.argv[7])
    f = open(probe_path, "rb")
    mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    total = int.from_bytes(mm[:8], "little")
    base = 8 + 8 * (total + 1)
    frombytes = int.from_bytes
    handle, get = (None, None) if peer == "none" else open_peer(peer, kind, tag, path)
    stop = time.perf_counter() + budget
    done = 0
    raw = k = None
    for i in range(min(count, total)):
        o = 8 + 8 * i
        raw = mm[base + frombytes(mm[o:o + 8], "little"):base + frombytes(mm[o + 8:o + 16], "little")]
        k = raw.decode("ascii") if kind == "str" else raw
        if get is not None:
            get(k)
            if time.perf_counter() > stop:
                done += 1
                break
        done += 1
    del raw, k
    mm.close()
    f.close()
    import gc

    gc.collect()
    sys.stdout.write('{"ready": true, "lookups": %d}\n' % done)
    sys.stdout.flush()
    sys.stdin.readline()
    del handle


if __name__ == "__main__":
    main()
