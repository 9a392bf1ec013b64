"""The "Shared bitmap" section of results.md (issue 15), from bitmapbench.py's and cbitmap's JSON.

report.py calls section() for the full run's results.md, and standalone() when only the bitmap
part ran (BENCH_ONLY=bitmap, `make bench-bitmap`).
"""
OURS, ORIG, SHM, BYTEARRAY = "sharedmap", "sharedmap-1.0.6", "SharedMemory", "bytearray"
VARIANTS = (OURS, ORIG, SHM, BYTEARRAY)
LABELS = {OURS: "**sharedmap**", ORIG: "sharedmap 1.0.6", SHM: "SharedMemory, pure Python [a]",
          BYTEARRAY: "bytearray (in-process floor)"}
OP_LABELS = {"set": "`set(i, True)`", "get": "`get(i)`, a set bit", "get_clear": "`get(i)`, a clear bit",
             "test_and_set": "`test_and_set(i)`"}
NOTE_A = ("[a] `buf[i >> 3] |= 1 << (i & 7)` and `buf[i >> 3] >> (i & 7) & 1` on a "
          "`multiprocessing.shared_memory.SharedMemory` buffer (for test_and_set: read the byte, "
          "write it back with the bit, test the old byte). Not atomic across processes: two "
          "processes updating bits of the same byte can lose each other's updates (see \"Lost "
          "updates\"). The bytearray column runs the same statements on a private `bytearray`.")


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    return f"{ns:.1f} ns" if ns < 10 else f"{ns:.0f} ns"


def fmt_x(x):
    if x is None:
        return "n/a"
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def bits_label(n):
    n = int(n)
    if n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1} bits ({n:,})"
    return f"{n:,} bits"


def size_label(nbytes):
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:.0f} MiB" if nbytes % 2**20 == 0 else f"{nbytes / 2**20:.1f} MiB"
    return f"{nbytes / 2**10:.0f} KiB" if nbytes >= 2**10 else f"{nbytes} B"


def targets(B):
    """Issue 15's memory target: one bit per bit plus a small header, 8x less than 1.0.6."""
    rows = []
    mem = (B or {}).get("memory", {})
    o, g = mem.get(OURS, {}), mem.get(ORIG, {})
    if "size" in o:
        n = o["bits"]
        limit = -(-n // 8) + 128 + 4096  # the bits, the 128-byte header, the page rounding
        rows.append((f"Shared bitmap of {n:,} bits: one bit per bit plus a small header "
                     f"(≤ N/8 + 128 + 4096 bytes)",
                     f"{o['size']:,} bytes, {o['bytes_per_bit']:.5f} B/bit (N/8 = {n // 8:,})",
                     "met" if o["size"] <= limit else "**not met**"))
    else:
        rows.append(("Shared bitmap: one bit per bit plus a small header", "not measured", "n/a"))
    if "size" in o and "size" in g:
        r = g["size"] / o["size"]
        n8 = -(-o["bits"] // 8)
        want = 8 * n8 / (n8 + 128 + 4096)  # 8x, but for our header and the page rounding
        rows.append((f"Shared bitmap: 8× less shared memory than 1.0.6's (but for our header and "
                     f"page rounding: ≥ {want:.4f}× at this size)",
                     f"{fmt_x(r)} ({r:.4f}: {g['size']:,} vs {o['size']:,} bytes)",
                     "met" if r >= want else "**not met**"))
    else:
        why = g.get("error") or g.get("na") or "not measured"
        rows.append(("Shared bitmap: 8× less shared memory than 1.0.6's", f"not measured: {why}"[:200], "n/a"))
    return rows


def python_tables(B):
    out = []
    calls = B.get("calls", {})
    cfg = _get(B, "meta", "config") or {}
    for bits in sorted(calls, key=int):
        per = calls[bits]
        n = int(bits)
        out += ["", f"#### Python, ns per call, {bits_label(n)}: {size_label(n // 8)} for sharedmap, "
                    f"{size_label(n)} for 1.0.6", ""]
        names = [v for v in VARIANTS if v in per]
        head = ["operation"] + [LABELS[v] for v in names] + ["sharedmap faster than 1.0.6",
                                                            "sharedmap / bytearray"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def ns(v, op):
            return _get(per, v, "ops", op, "ns")

        for op in ("set", "get", "get_clear", "test_and_set"):
            cells = [OP_LABELS[op]]
            for v in names:
                r = per[v]
                if "ops" not in r:
                    cells.append("n/a: " + (r.get("na") or r.get("error", "?"))[:80])
                    continue
                x = ns(v, op)
                cells.append(fmt_ns(x) if x is not None else "n/a (none)" if v == ORIG else "n/a")
                rm = _get(per, v, "ops", op, "round_medians") or []
                if x is not None and len(rm) > 1:  # the spread between fresh processes
                    cells[-1] += f" ({min(rm):.0f}–{max(rm):.0f})"
                if r.get("check", "ok") != "ok":
                    cells[-1] += f" **(check: {r['check']})**"
            o, g, f = ns(OURS, op), ns(ORIG, op), ns(BYTEARRAY, op)
            cells.append(fmt_x(g / o) if o and g else "n/a")
            cells.append(fmt_x(o / f) if o and f else "n/a")
            out.append("| " + " | ".join(cells) + " |")
    if calls:
        out += ["", f"Each figure: the median of {cfg.get('reps', '?')} repetitions × "
                    f"{cfg.get('rounds', '?')} rounds (fresh processes, variants alternating) of "
                    f"{cfg.get('probes', 0):,} calls at random indices, the empty loop subtracted "
                    "(in parentheses: the lowest and highest of the rounds' medians: fresh processes "
                    "differ, most at 2^24 bits, where our 2 MiB is the size of a core's L2); "
                    "\"sharedmap faster\" = 1.0.6's time / ours (above 1: ours is faster); "
                    "\"/ bytearray\" = our time / the pure-Python bytearray's (below 1: a sharedmap "
                    "call costs less than the two or three bytecode operations of the bit "
                    "arithmetic).", "", NOTE_A]
    return out


def memory_table(B):
    mem = B.get("memory", {})
    if not mem:
        return []
    n = next((m["bits"] for m in mem.values() if "bits" in m), None)
    out = ["", f"#### Memory of a bitmap of {n:,} bits" if n else "#### Memory", "",
           "| variant | where | bytes | bytes per bit | resident after touching every page | × sharedmap |",
           "|---|---|---|---|---|---|"]
    ours = _get(mem, OURS, "size")
    for v in VARIANTS:
        m = mem.get(v)
        if not m:
            continue
        if "size" not in m:
            out.append(f"| {LABELS[v]} | n/a: {(m.get('error') or '?')[:120]} | | | | |")
            continue
        rel = fmt_x(m["size"] / ours) if ours else "n/a"
        out.append(f"| {LABELS[v]} | {m['what']} | {m['size']:,} | {m['bytes_per_bit']:.4f} | "
                   f"{m['resident']:,} | {rel} |")
    out += ["", "sharedmap: a 128-byte header, then the bits, the file filled to a 4 KiB page "
                "(posix_fallocate'd, so resident from the start); it reserves max_bits / 8 bytes of "
                "address space per process, no memory. 1.0.6: `create(name, N)` makes a segment of "
                "N + 8 bytes and uses 8 bits of each 64-bit word (`index >> 3` picks the word, "
                "`index % 8` the bit)."]
    return out


def race_table(B):
    race = B.get("race", {})
    if not race:
        return []
    secs = next((r.get("seconds") for r in race.values() if "seconds" in r), None)
    out = ["", "#### Lost updates: 2 processes, each setting, testing and clearing its own bit of one "
               f"word{f' for {secs:g} s' if secs else ''}", "",
           "| variant | lost updates (own bit found clear right after setting it) | sets done | "
           "overlap of the 2 processes |", "|---|---|---|---|"]
    for v in VARIANTS:
        r = race.get(v)
        if not r:
            continue
        if "lost" not in r:
            out.append(f"| {LABELS[v]} | n/a: {r.get('error', '?')[:150]} | | |")
            continue
        out.append(f"| {LABELS[v]} | {r['lost']:,} | {r['iterations']:,} | {r['overlap']:.2f} |")
    out += ["", "A lost update is the other process writing back a stale word over this one's set "
                "(a read-modify-write that is not one atomic instruction). 0 here does not prove "
                "atomicity (the processes may not have overlapped); sharedmap's updates are "
                "atomic read-modify-writes (locked instructions) by construction."]
    return out


C_CASES = {"random_big": "random, large", "random_cache": "random, in cache", "sequential": "sequential, large"}


def c_tables(C):
    out = []
    unc = C.get("uncontended")
    if unc:
        out += ["", f"#### C, ns per operation, one process (bench/cbitmap.c, gcc -O2; median of "
                    f"{C.get('rounds', '?')} rounds of {C.get('ops', 0):,} operations)", "",
                "| case | operation | `sm_bitmap_*` | inline atomic | inline plain (not atomic) | "
                "sm − atomic |", "|---|---|---|---|---|---|"]
        for case, label in C_CASES.items():
            c = unc.get(case)
            if not c:
                continue
            for op in ("set", "get", "get_clear", "test_and_set"):
                sm, at, pl = c["sm"][op], c["atomic"][op], c["plain"][op]
                name = {"set": "set", "get": "get, a set bit", "get_clear": "get, a clear bit",
                        "test_and_set": "test_and_set"}[op]
                out.append(f"| {label}: {bits_label(c['bits'])} | {name} | {fmt_ns(sm)} | {fmt_ns(at)} | "
                           f"{fmt_ns(pl)} | {sm - at:+.1f} ns |")
        if C.get("check") not in (None, "ok"):
            out.append(f"| | **check: {C['check']}** | | | | |")
        out += ["", "Inline atomic: `__atomic_fetch_or` (a `lock or`) and an atomic load on a "
                    "MAP_SHARED anonymous mapping of the same size (shmem, 4 KiB pages, like the "
                    "bitmap's tmpfs file); plain: `w |= m`, which loses updates across processes. "
                    "Random gets are independent loads, so several misses overlap (memory-level "
                    "parallelism): their ns is a throughput, not one DRAM latency. A get of a set bit "
                    "also loads the resize sequence word (FORMAT.md §11.6)."]
    con = C.get("contended")
    if con:
        out += ["", f"#### C, contention: ns per operation of each of 2 processes (fork, pinned, "
                    f"{con.get('seconds_per_run', 0):g} s per run, median of {con.get('rounds', '?')} runs)", "",
                "| operation | 1 process alone | same 64-bit word | same cache line, own word | "
                "own cache line (4 KiB apart) | both on a CPU (min CPU share, overlap) |",
                "|---|---|---|---|---|---|"]
        labels = {"set": "`sm_bitmap_set`, both", "test_and_set": "`sm_bitmap_test_and_set`, both",
                  "get_vs_set": "`sm_bitmap_get` (reader) while the other sets (writer)",
                  "atomic_set": "inline `lock or`, both (the hardware's price)"}
        for op, label in labels.items():
            r = con.get(op)
            if not isinstance(r, dict):
                continue
            alone = r.get("alone") or (con.get("set", {}).get("alone") if op == "get_vs_set" else None)
            cells = [label]
            if op == "get_vs_set":
                cells.append("(get alone: see the table above)")
            else:
                cells.append(fmt_ns(alone["ns"][0]) if alone else "n/a")
            shares = []
            for pl in ("same_word", "same_line", "own_line"):
                x = r.get(pl)
                if not x:
                    cells.append("n/a")
                    continue
                a, b = x["ns"]
                cells.append(f"{fmt_ns(a)} / {fmt_ns(b)}")
                shares.append(f"{x.get('min_cpu_share', 0):.2f}, {min(x.get('overlap', [0])):.2f}")
            cells.append("; ".join(shares))
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Cells: process 0 / process 1 (for get: the reader / the writer). Same word: "
                    "process p sets bits p, p+2, ... of word 0; same line: word p of one 64-byte "
                    "line; own line: words 4 KiB apart. `sm_bitmap_set` always does a locked "
                    "read-modify-write, even on a bit already set, so every call takes the line "
                    "exclusively. The last column, per "
                    "placement: the least CPU time / wall time of either process, and the least "
                    "overlap of their runs (1.00, 1.00: side by side throughout; lower: other work "
                    "had a CPU, and contention is understated). A run where either process had "
                    "less than 90% of a CPU is run again, up to 5 times, keeping the best"
                    + (f" ({con['runs_repeated']} runs repeated here)." if "runs_repeated" in con
                       else ".")]
    return out


def section(B, C, level="##"):
    """The markdown lines of the shared-bitmap section (B: Python JSON, C: cbitmap JSON)."""
    out = ["", f"{level} Shared bitmap (issue 15)", ""]
    if not B and not C:
        return out + ["Not run (BENCH_SKIP_BITMAP=1, or it failed: see the log)."]
    out += ["| target | measured | result |", "|---|---|---|"]
    out += [f"| {t} | {m} | {ok} |" for t, m, ok in targets(B)]
    if B:
        out += python_tables(B) + memory_table(B) + race_table(B)
    else:
        out += ["", "Python part: not run."]
    if C:
        out += c_tables(C)
    else:
        out += ["", "C part (bench/cbitmap.c): not run."]
    return out


def standalone(B, C, cmd):
    """results.md of a bitmap-only run."""
    meta = (B or {}).get("meta", {})
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    load = meta.get("loadavg_at_start") or []
    out = ["# sharedmap benchmark results: shared bitmap only", "",
           f"Command: `{cmd}`{' (quick mode)' if meta.get('quick') else ''}. Run {meta.get('started', '?')} "
           f"on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('mem_gib', '?')} GiB, Linux "
           f"{m.get('kernel', '?')}, Python {m.get('python', '?')}; load average at start "
           f"{', '.join(f'{x:.1f}' for x in load)}; the Python part took "
           f"{meta.get('elapsed_s', 0) / 60:.1f} min."]
    if v:
        out.append("Versions: " + ", ".join(f"{k} {x}" for k, x in sorted(v.items())) + ".")
    out += ["", "Ratios are measured in the same run. See bench/README.md for what each figure measures."]
    out += section(B, C)
    out.append("")
    return "\n".join(out)
