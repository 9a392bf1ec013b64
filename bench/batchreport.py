"""The "Batched lookups" section of results.md, from batchbench.py's and cbatch's JSON.

report.py calls section() for the full run's results.md, and standalone() when only the batch
part ran (BENCH_ONLY=batch, `make bench-batch`).  Targets are goals, reported met / not met.
"""
LABELS = {
    "get_many": "**sharedmap `m.get_many(keys)`**",
    "dict": "dict: `[d.get(k) for k in keys]`",
    "get_loop": "sharedmap: `[m.get(k) for k in keys]`",
    "lmdb": "py-lmdb: `Cursor.getmulti` + encode/decode",
    "redis_unix": "Redis `MGET`, Unix socket",
    "redis_tcp": "Redis `MGET`, loopback TCP",
    "get_array": "**sharedmap `m.get_array(keys, 'int64')`** (int64 array in)",
    "numpy": "NumPy `searchsorted` on sorted arrays",
}
ORDER = ("get_many", "dict", "get_loop", "lmdb", "redis_unix", "redis_tcp", "get_array", "numpy")
C_LABELS = {"get_many": "**`sm_get_many`** (window {w})", "sm_get": "`sm_get` loop",
            "cdb": "tinycdb `cdb_find`", "lmdb": "LMDB `mdb_get`"}


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def human_n(n):
    n = int(n)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}K"
    return f"{n:,}"


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.1f} ns" if ns < 100 else f"{ns:.0f} ns"


def fmt_x(x):
    if x is None:
        return "n/a"
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def _pick(avail, want):
    """The size to judge a target stated at `want`: itself, or the largest run (with a note)."""
    sizes = sorted(int(s) for s in avail)
    if not sizes:
        return None, ""
    if want in sizes:
        return want, ""
    return sizes[-1], f" (judged at {human_n(sizes[-1])}: {human_n(want)} not run)"


def _py(P, n, kind, meth, what="hit"):
    return _get(P, "runs", str(n), kind, "methods", meth, what + "_ns")


def targets(P, C):
    rows = []
    runs = (P or {}).get("runs", {})
    for want in (1_000_000, 10_000_000):
        n, note = _pick(runs, want)
        for kind in ("str", "int"):
            if n is None or kind not in runs.get(str(n), {}):
                continue
            gm = _py(P, n, kind, "get_many")
            for peer, goal, label in (("dict", 0.2, "dict comprehension"),):
                x = _py(P, n, kind, peer)
                r = gm / x if gm and x else None
                rows.append((f"Python `get_many` per key at {human_n(want)}, {kind} keys, hits: ≤ 0.2× "
                             f"the {label}{note}",
                             f"{fmt_ns(gm)} vs {fmt_ns(x)}: {fmt_x(r)}" if r else "not measured",
                             ("met" if r <= goal else "**not met**") if r else "n/a"))
    for want in (1_000_000, 10_000_000):
        n, note = _pick(runs, want)
        for kind in ("str", "int"):
            if n is None or kind not in runs.get(str(n), {}):
                continue
            gm = _py(P, n, kind, "get_many")
            for peer, goal, label in (("lmdb", 10, "lmdb `getmulti`"),
                                      ("redis_unix", 5, "Redis `MGET` over a Unix socket")):
                x = _py(P, n, kind, peer)
                r = x / gm if gm and x else None
                why = _get(runs, str(n), kind, "methods", peer, "na")
                rows.append((f"Python `get_many` at {human_n(want)}, {kind} keys, hits: ≥ {goal}× faster "
                             f"per key than {label}{note}",
                             f"{fmt_ns(gm)} vs {fmt_ns(x)}: {fmt_x(r)} faster" if r
                             else f"not measured: {why}"[:200],
                             ("met" if r >= goal else "**not met**") if r else "n/a"))
    n, note = _pick({k: v for k, v in runs.items() if "int" in v}, 10_000_000)
    ga = _py(P, n, "int", "get_array") if n else None
    rows.append((f"`get_array(int keys, 'int64')` at 10M: ≤ 60 ns per key{note}",
                 f"{fmt_ns(ga)} (NumPy searchsorted: {fmt_ns(_py(P, n, 'int', 'numpy'))})" if ga
                 else "not measured", ("met" if ga <= 60 else "**not met**") if ga else "n/a"))
    cs = (C or {}).get("str", {})
    ci = (C or {}).get("int", {})
    for kind, cc in (("str", cs), ("int", ci)):
        n, note = _pick(cc, 10_000_000)
        if n is None:
            rows.append((f"C `sm_get_many` at 10M, {kind} keys: ≤ 0.35× one DRAM access per key",
                         "not measured", "n/a"))
            continue
        c = cc[str(n)]
        gm, ch = _get(c, "get_many", "hit_ns"), _get(c, "chase", "ns")
        r = gm / ch if gm and ch else None
        rows.append((f"C `sm_get_many` at 10M, {kind} keys, hits: ≤ 0.35× one DRAM access "
                     f"(the pointer chase) per key{note}",
                     f"{fmt_ns(gm)} vs {fmt_ns(ch)}: {fmt_x(r)}" if r else "not measured",
                     ("met" if r <= 0.35 else "**not met**") if r else "n/a"))
    n, note = _pick(cs, 10_000_000)
    if n is not None:
        c = cs[str(n)]
        gm, cdb = _get(c, "get_many", "hit_ns"), _get(c, "cdb", "hit_ns")
        r = cdb / gm if gm and cdb else None
        rows.append((f"C `sm_get_many` at 10M, hits: ≥ 4× faster per key than tinycdb{note}",
                     f"{fmt_ns(gm)} vs {fmt_ns(cdb)}: {fmt_x(r)} faster" if r else "not measured",
                     ("met" if r >= 4 else "**not met**") if r else "n/a"))
    return rows


def python_tables(P):
    out = []
    cfg = _get(P, "meta", "config") or {}
    for n in sorted(P.get("runs", {}), key=int):
        for kind in ("str", "int"):
            w = P["runs"][n].get(kind)
            if w is None:
                continue
            title = "str → str (dataset.py)" if kind == "str" else "int → int (random int64 keys)"
            out += ["", f"#### Python, ns per key, batches of {w.get('batch', cfg.get('batch', '?')):,} keys: "
                        f"{human_n(n)} entries, {title}", ""]
            if "error" in w:
                out.append(f"Not measured: {w['error'][-400:]}")
                continue
            ms = w["methods"]
            gm = ms.get("get_many", {})
            out += ["| method | hits | misses | × dict (hits) | get_many faster (hits) | "
                    "get_many faster (misses) |", "|---|---|---|---|---|---|"]
            for meth in ORDER:
                x = ms.get(meth)
                if x is None or (kind == "str" and meth in ("get_array", "numpy")):
                    continue
                if "hit_ns" not in x:
                    out.append(f"| {LABELS[meth]} | n/a: {x.get('na', '?')[:150]} | | | | |")
                    continue
                chk = w.get("checks", {}).get(meth, {})
                bad = [k for k, v in chk.items() if v != "ok"]
                d = _get(ms, "dict", "hit_ns")
                cells = [LABELS[meth] + (f" **(check failed: {', '.join(bad)})**" if bad else ""),
                         fmt_ns(x["hit_ns"]), fmt_ns(x["miss_ns"]),
                         fmt_x(x["hit_ns"] / d) if d else "n/a"]
                if meth in ("get_array", "numpy") or meth == "get_many":
                    cells += ["", ""]
                else:
                    cells += [fmt_x(x["hit_ns"] / gm["hit_ns"]) if gm.get("hit_ns") else "n/a",
                              fmt_x(x["miss_ns"] / gm["miss_ns"]) if gm.get("miss_ns") else "n/a"]
                out.append("| " + " | ".join(cells) + " |")
            ga, npy = ms.get("get_array", {}), ms.get("numpy", {})
            if ga.get("hit_ns") and npy.get("hit_ns"):
                out += ["", f"`get_array` against NumPy `searchsorted`: {fmt_x(npy['hit_ns'] / ga['hit_ns'])} "
                            f"faster on hits, {fmt_x(npy['miss_ns'] / ga['miss_ns'])} on misses."]
            b = w.get("build", {})
            bits = [f"data {b.get('data_s', 0):.1f} s", f"sharedmap {b.get('sharedmap_s', 0):.1f} s "
                    f"({b.get('sharedmap_bytes', 0) / 2**20:.0f} MiB)",
                    f"lmdb {b.get('lmdb_s', 0):.1f} s ({b.get('lmdb_bytes', 0) / 2**20:.0f} MiB file)"]
            if "redis_s" in b:
                bits.append(f"Redis {b['redis_s']:.1f} s ({b.get('redis_dbsize', 0):,} keys, used_memory "
                            f"{b.get('redis_used_memory', 0) / 2**20:.0f} MiB)")
            out += ["", "Built in: " + ", ".join(bits) + f"; the worker took {w.get('elapsed_s', 0):.0f} s."]
    if P.get("runs"):
        out += ["", f"ns per key: the median of {cfg.get('reps', '?')} repetitions (after one warm-up) of "
                    f"{cfg.get('probes', 0):,} keys in batches of {cfg.get('batch', '?'):,}, every method "
                    "with fresh key objects each repetition, the methods' order rotating. \"get_many "
                    "faster\" = the method's time / get_many's (above 1: get_many is faster). Each "
                    "method returns the values a user needs: py-lmdb encodes the str keys and decodes "
                    "the values (int maps: 8-byte keys and values, `int.to_bytes`/`from_bytes`); "
                    "`getmulti` omits missing keys, so its misses row is the lookups alone; Redis "
                    "returns str (`decode_responses=True`) or, for the int map, bytes turned into int; "
                    "`get_array` takes the batch as an int64 array and fills an int64 array "
                    "(default=0 for misses); NumPy: `searchsorted`, a compare and `where` on the "
                    "sorted key array and its values (default 0). Redis runs on the same 2 cores as "
                    "the client: a round trip per batch, the server's work included in the time."]
    return out


def c_tables(C):
    out = []
    batch = C.get("batch", "?")
    for kind in ("str", "int"):
        for n in sorted(C.get(kind, {}), key=int):
            c = C[kind][n]
            ch = _get(c, "chase", "ns")
            gm = c.get("get_many", {})
            title = "cbench's str keys" if kind == "str" else "int64 keys, int values"
            out += ["", f"#### C, ns per key: {human_n(n)} entries, {title} (bench/cbatch.c, gcc -O2; "
                        f"batches of {batch:,}; median of {c.get('rounds', '?')} rounds of "
                        f"{c.get('probes', 0):,} keys; snapshot {c.get('snapshot_bytes', 0) / 2**20:.0f} MiB)", "",
                    "| contender | hits | misses | × one DRAM access (hits) | get_many faster (hits) | "
                    "get_many faster (misses) |", "|---|---|---|---|---|---|"]
            for key in ("get_many", "sm_get", "cdb", "lmdb"):
                x = c.get(key)
                if not x:
                    continue
                lab = C_LABELS[key].format(w=x.get("window", C.get("default_window", "?")))
                cells = [lab, fmt_ns(x["hit_ns"]), fmt_ns(x["miss_ns"]),
                         fmt_x(x["hit_ns"] / ch) if ch else "n/a"]
                if key == "get_many":
                    cells += ["", ""]
                else:
                    cells += [fmt_x(x["hit_ns"] / gm["hit_ns"]), fmt_x(x["miss_ns"] / gm["miss_ns"])]
                out.append("| " + " | ".join(cells) + " |")
            out.append(f"| DRAM: random pointer chase over {c.get('chase', {}).get('buffer_bytes', 0) / 2**20:.0f} MiB "
                       f"| {fmt_ns(ch)} | | 1.00× | | |")
            if not c.get("all_found", True):
                out.append("| **some lookups gave wrong answers** | | | | | |")
    # the window sweep
    cols = [(kind, n) for kind in ("str", "int") for n in sorted(C.get(kind, {}), key=int)]
    if cols:
        out += ["", f"#### C, the prefetch window: ns per key of `smi_get_many(..., window)`, batches of "
                    f"{batch:,} (SM_GET_MANY_WINDOW = {C.get('default_window', '?')})", ""]
        head = ["window"] + [f"{kind} {human_n(n)} {w}" for kind, n in cols for w in ("hits", "misses")]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        wins = sorted({int(w) for kind, n in cols for w in C[kind][n].get("windows", {})})
        best = {}
        for kind, n in cols:
            ws = C[kind][n].get("windows", {})
            for what in ("hit_ns", "miss_ns"):
                if ws:
                    best[(kind, n, what)] = min(ws, key=lambda w: ws[w][what])
        for w in wins:
            cells = [str(w) + (" (default)" if w == C.get("default_window") else "")]
            for kind, n in cols:
                for what in ("hit_ns", "miss_ns"):
                    x = _get(C, kind, n, "windows", str(w), what)
                    s = fmt_ns(x)
                    if best.get((kind, n, what)) == str(w):
                        s = f"**{s}**"
                    cells.append(s)
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Bold: the fastest window of the column. " + window_verdict(C)]
    if not any(int(n) >= 100_000_000 for n in C.get("int", {})):
        out += ["", "100M int keys are not in the default run: it fits in memory (about 13 GiB peak "
                    "RSS: the builder, the 2.5 GiB snapshot and a chase buffer as large) but takes "
                    "about 4 minutes by itself on 2 cores (most of it building and publishing), "
                    "beyond this part's 10-minute budget; `BENCH_CBATCH_INT_SIZES=10000000,100000000` "
                    "adds it."]
    return out


def window_verdict(C):
    """One sentence: does the sweep favour a window other than the default (by > 3% on hits)?"""
    dw = C.get("default_window")
    msgs = []
    for kind in ("str", "int"):
        for n in sorted(C.get(kind, {}), key=int):
            ws = C[kind][n].get("windows", {})
            if not ws or str(dw) not in ws:
                continue
            b = min(ws, key=lambda w: ws[w]["hit_ns"])
            d, x = ws[str(dw)]["hit_ns"], ws[b]["hit_ns"]
            if b != str(dw) and x < d * 0.97:
                msgs.append(f"{kind} {human_n(n)}: window {b} is {100 * (1 - x / d):.0f}% faster on hits "
                            f"than {dw} ({fmt_ns(x)} vs {fmt_ns(d)})")
            else:
                msgs.append(f"{kind} {human_n(n)}: {dw} is within 3% of the best ({b})")
    return ("Window sweep on hits: " + "; ".join(msgs) + ".") if msgs else ""


def section(P, C, level="##"):
    out = ["", f"{level} Batched lookups (`get_many`, `get_array`, `sm_get_many`)", ""]
    if not P and not C:
        return out + ["Not run (BENCH_SKIP_BATCH=1, or it failed: see the log)."]
    out += ["Targets are goals, not test thresholds.", "",
            "| target | measured | result |", "|---|---|---|"]
    out += [f"| {t} | {m} | {ok} |" for t, m, ok in targets(P, C)]
    out += python_tables(P) if P else ["", "Python part: not run."]
    out += c_tables(C) if C else ["", "C part (bench/cbatch.c): not run."]
    return out


def standalone(P, C, cmd):
    meta = (P or {}).get("meta", {})
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    load = meta.get("loadavg_at_start") or []
    out = ["# sharedmap benchmark results: batched lookups only", "",
           f"Command: `{cmd}`{' (quick mode)' if meta.get('quick') else ''}. Run {meta.get('started', '?')} "
           f"on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('mem_gib', '?')} GiB, Linux "
           f"{m.get('kernel', '?')}, Python {m.get('python', '?')}; load average at start "
           f"{', '.join(f'{x:.1f}' for x in load)}; the Python part took "
           f"{meta.get('elapsed_s', 0) / 60:.1f} min."]
    if v:
        out.append("Versions: " + ", ".join(f"{k} {x}" for k, x in sorted(v.items())) + ".")
    out += ["", "Ratios are measured in the same run. See bench/README.md for what each figure measures."]
    out += section(P, C)
    out.append("")
    return "\n".join(out)
