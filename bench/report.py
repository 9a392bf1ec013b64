"""Merge the Python and C results; write results.json, results.md (ratios first) and plot.png.

    python report.py PYTHON.json C.json OUTDIR [CMD] [--bitmap BITMAP.json CBITMAP.json] [--only-bitmap]
                     [--batch BATCH.json CBATCH.json] [--only-batch]
Either input may be missing (the table then says what was not run).  --bitmap adds the shared-bitmap
section (bitmapreport.py); --only-bitmap writes that section alone (no plot).  --batch and
--only-batch do the same for the batched-lookups part (batchreport.py).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import batchreport  # noqa: E402
import bitmapreport  # noqa: E402

OURS = "sharedmap"
ORIG = "sharedmap-1.0.6"
ORDER = ["sharedmap", "dict", "sharedmap-1.0.6", "lmdb", "marisa-trie", "shared-memory-dict", "UltraDict",
         "sqlitedict", "pickle"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.0f} µs"
    return f"{ns:.0f} ns"


def fmt_s(s):
    if s is None:
        return "n/a"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_us(us):
    return fmt_s(us / 1e6) if us is not None else "n/a"


def fmt_x(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    return f"{x:.2f}×"


def fmt_rate(r):
    if r >= 1e6:
        return f"{r / 1e6:.2f} M/s"
    if r >= 1e3:
        return f"{r / 1e3:.1f} K/s"
    return f"{r:.1f}/s"


def mib(b):
    return f"{b / 2**20:.1f} MiB"


class Notes:
    """Footnotes for n/a and time-boxed cells."""

    def __init__(self):
        self.items = []

    def mark(self, text):
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"

    def render(self):
        return [f"{i}. {t}" for i, t in enumerate(self.items, 1)]


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


class Results:
    def __init__(self, py, c):
        self.py = py or {}
        self.c = c or {}
        self.runs = self.py.get("runs", {})
        self.sizes = sorted(int(n) for n in self.runs)
        self.csizes = sorted(int(n) for n in get(self.c, "sizes") or {})

    def peer(self, n, kind, name):
        return get(self.runs, str(n), kind, name) or {}

    def hit(self, n, kind, name, which="hit"):
        return get(self.peer(n, kind, name), "lookup", which, "ns")

    def closest(self, want, sizes=None):
        """The size to judge a target stated at `want`: want itself, or the largest run below it."""
        sizes = self.sizes if sizes is None else sizes
        if want in sizes:
            return want, ""
        below = [s for s in sizes if s < want]
        if not below:
            return None, ""
        return below[-1], f" (at {human_n(below[-1])}: {human_n(want)} not run)"


def why_na(r):
    """The reason a peer has no figure (n/a, error or time box), or None."""
    if "na" in r:
        return r["na"]
    for part in ("build", "lookup"):
        p = r.get(part) or {}
        if "error" in p:
            return f"{part} failed: {p['error'][:200]}"
        if "na" in p:
            return p["na"]
    return None


def targets(R):
    rows = []

    def row(target, measured, ok):
        rows.append((target, measured, "n/a" if ok is None else ("met" if ok else "**not met**")))

    # Python lookups vs dict
    for want, limit in ((1_000_000, 1.0), (10_000, 2.0)):
        n, note = R.closest(want)
        for which in ("hit", "miss"):
            ours, d = (R.hit(n, "str", OURS, which), R.hit(n, "str", "dict", which)) if n else (None, None)
            label = f"`m.get` at {human_n(want)}, {which}{'s' if which == 'hit' else 'es'}: ≤ {limit:.1f}× `dict.get`"
            if ours and d:
                extra = ""
                gi = R.hit(n, "str", OURS, "hit_getitem") if which == "hit" else None
                if gi:
                    extra = f"; `m[k]` {fmt_x(gi / d)}"
                row(label, f"{fmt_x(ours / d)} ({fmt_ns(ours)} vs {fmt_ns(d)}){extra}{note}", ours / d <= limit)
            else:
                row(label, "not measured", None)
    # vs lmdb and the original
    for peer, limit in (("lmdb", 1.5), (ORIG, 3.0)):
        for want in (1_000_000, 10_000_000):
            n, note = R.closest(want)
            label = f"≥ {limit}× faster than {'py-lmdb' if peer == 'lmdb' else 'the original 1.0.6'} at {human_n(want)}"
            if want == 10_000_000 and n is not None and n < 1_000_000 <= want:
                n, note = None, ""
            ratios = []
            for which in ("hit", "miss"):
                o, p = (R.hit(n, "str", OURS, which), R.hit(n, "str", peer, which)) if n else (None, None)
                if o and p:
                    ratios.append((which, p / o))
            if ratios:
                worst = min(r for _, r in ratios)
                row(label, ", ".join(f"{w}{'s' if w == 'hit' else 'es'} {fmt_x(r)}" for w, r in ratios) + note,
                    worst >= limit)
            else:
                why = why_na(R.peer(n, "str", peer)) if n else None
                row(label, f"not measured{': ' + why if why else ''}", None)
    # C level
    cs = R.csizes
    n, note = (10_000_000, "") if 10_000_000 in cs else ((cs[-1], f" (at {human_n(cs[-1])}: 10M not run)") if cs else (None, ""))
    cr = get(R.c, "sizes", str(n)) if n else None
    if cr:
        sm, ch = cr["sharedmap"], cr["chase"]["ns"]
        row("C `sm_get` at 10M: ≤ 2.0× one random DRAM access (pointer chase, same run)",
            f"hits {fmt_x(sm['hit_ns'] / ch)}, misses {fmt_x(sm['miss_ns'] / ch)} "
            f"({sm['hit_ns']:.0f} / {sm['miss_ns']:.0f} ns vs {ch:.0f} ns){note}",
            max(sm["hit_ns"], sm["miss_ns"]) / ch <= 2.0)
        for peer, name, limit in (("cdb", "tinycdb", 1.5), ("lmdb", "LMDB", 3.0)):
            h, m = cr[peer]["hit_ns"] / sm["hit_ns"], cr[peer]["miss_ns"] / sm["miss_ns"]
            row(f"C at 10M: ≥ {limit}× faster than {name}", f"hits {fmt_x(h)}, misses {fmt_x(m)}{note}",
                min(h, m) >= limit)
    else:
        row("C benchmark targets", "not run", None)
    # iteration (issue 3): a whole 1M map, items, against dict's items() in the same run
    n, note = R.closest(1_000_000)
    oi = get(R.peer(n, "str", OURS), "lookup", "iter", "items_per_s") if n else None
    di = get(R.peer(n, "str", "dict"), "lookup", "iter", "items_per_s") if n else None
    if oi and di:
        row("Iterating all items of a 1M map: ≤ 2.0× the time of `dict.items()`",
            f"{fmt_x(di / oi)} the time ({fmt_rate(oi)} vs {fmt_rate(di)} items){note}", di / oi <= 2.0)
    else:
        row("Iterating all items of a 1M map", "not measured", None)
    # attach
    att = {n: get(R.peer(n, "str", OURS), "attach", "first_us") for n in R.sizes}
    att = {n: a for n, a in att.items() if a is not None}
    if att:
        worst = max(att.values())
        row("Attach (open by name + first lookup, fresh process): ≤ 100 µs",
            ", ".join(f"{human_n(n)}: {a:.0f} µs" for n, a in att.items()), worst <= 100)
        lo, hi = min(att), max(att)
        if hi != lo:
            row("Attach independent of size: largest within 2× of smallest",
                f"{fmt_x(att[hi] / att[lo])} ({human_n(hi)} vs {human_n(lo)})", att[hi] / att[lo] <= 2.0)
    else:
        row("Attach ≤ 100 µs", "not measured", None)
    # build vs pickle.dumps
    n, note = R.closest(1_000_000)
    ob = get(R.peer(n, "str", OURS), "build", "build_s") if n else None
    pd = get(R.peer(n, "str", "pickle"), "build", "fill_s") if n else None
    if ob and pd:
        row("Build 1M from a dict + publish: faster than `pickle.dumps`",
            f"{fmt_s(ob)} vs {fmt_s(pd)} ({fmt_x(ob / pd)}){note}", ob < pd)
    else:
        row("Build 1M + publish faster than `pickle.dumps`", "not measured", None)
    # size
    over = []
    for n in R.sizes:
        b = get(R.peer(n, "str", OURS), "build")
        if b and "bytes_per_entry" in b:
            over.append((n, b["bytes_per_entry"] - b["data_bytes_per_entry"], b["bytes_per_entry"]))
    if over:
        worst = max(o for _, o, _ in over)
        row("Size: ≤ key bytes + value bytes + 16 per entry",
            ", ".join(f"{human_n(n)}: +{o:.1f} B ({b:.1f} B/entry)" for n, o, b in over), worst <= 16)
    # memory
    n, note = R.closest(1_000_000, sorted(int(k) for k in R.py.get("baseline_memory", {})))
    mem = get(R.peer(n, "str", OURS), "memory") if n else None
    base = get(R.py, "baseline_memory", str(n)) if n else None
    snap = get(R.peer(n, "str", OURS), "build", "size") if n else None
    if mem and base and snap and "Pss" in mem:
        limit = (snap + base["empty4_pss"]) * 1.10
        dictmem = get(R.peer(n, "str", "pickle"), "memory", "Pss")
        extra = f"; 4 dict holders (dict loaded by pickle): {mib(dictmem)}" if dictmem else ""
        row("Memory, 4 readers of a 1M map: summed PSS ≤ (snapshot + 4 empty interpreters) + 10%",
            f"{mib(mem['Pss'])} vs limit {mib(limit)} (snapshot {mib(snap)}, 4 empty {mib(base['empty4_pss'])})"
            f"{extra}{note}", mem["Pss"] <= limit)
    else:
        row("Memory of 4 readers", "not measured", None)
    t = get(R.peer(n, "str", OURS), "tput") if n else None
    if t and "ratio" in t:
        row("Throughput: 2 reader processes ≥ 1.8× one",
            f"{fmt_x(t['ratio'])} ({fmt_rate(t['two_per_s'])} vs {fmt_rate(t['one_per_s'])} lookups"
            f"{'; load average %.1f just before' % t['loadavg_1min_before'] if 'loadavg_1min_before' in t else ''}){note}",
            t["ratio"] >= 1.8)
    else:
        row("Throughput 2 vs 1", "not measured", None)
    return rows


def size_table(R, n, kind, notes):
    """One table per size and key kind: every contender, ratios first."""
    dh, dm = R.hit(n, kind, "dict"), R.hit(n, kind, "dict", "miss")
    oh, om = R.hit(n, kind, OURS), R.hit(n, kind, OURS, "miss")
    ob = get(R.peer(n, kind, OURS), "build", "build_s")
    oa = get(R.peer(n, kind, OURS), "attach", "first_us")
    di = get(R.peer(n, kind, "dict"), "lookup", "iter", "items_per_s")
    full = kind == "str"
    head = ["contender", "hit: × dict", "miss: × dict", "sharedmap faster (hit / miss)", "build + publish",
            "bytes / entry"]
    if full:
        head += ["attach (fresh process)", "iteration: × dict rate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = [p for p in ORDER if p in R.runs.get(str(n), {}).get(kind, {})]
    for name in names:
        r = R.peer(n, kind, name)
        why = why_na(r)
        label = f"**{name}**" if name == OURS else name
        if why and not r.get("lookup"):
            b = r.get("build", {})
            cells = [label, "n/a " + notes.mark(f"{name}: {why}")]
            if "partial" in b and "build_s" in b:
                cells += ["n/a", "n/a", f"~{fmt_s(b['build_s'])} " + notes.mark(f"{name} at {human_n(n)}: {b['partial']}"), "n/a"]
            else:
                cells += ["n/a"] * 4
            if full:
                cells += ["n/a", "n/a"]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        lk = r.get("lookup", {})

        def ratio_cell(which, ref):
            ns = get(lk, which, "ns")
            if ns is None:
                return "n/a"
            mark = notes.mark(f"{name} at {human_n(n)} {kind}: {lk[which]['partial']}") if "partial" in lk[which] else ""
            rel = f"{fmt_x(ns / ref)} " if ref else ""
            return f"{rel}({fmt_ns(ns)}){mark}"

        cells = [label, ratio_cell("hit", dh), ratio_cell("miss", dm)]
        ph, pm = get(lk, "hit", "ns"), get(lk, "miss", "ns")
        if name == OURS:
            cells.append("—")
        elif oh and om and ph and pm:
            cells.append(f"{fmt_x(ph / oh)} / {fmt_x(pm / om)}")
        else:
            cells.append("n/a")
        b = r.get("build", {})
        if "build_s" in b:
            rel = f" ({fmt_x(b['build_s'] / ob)} ours)" if ob and name != OURS else ""
            cells.append(f"{fmt_s(b['build_s'])}{rel}")
            chk = b.get("check")
            if chk not in (None, "ok"):
                cells[-1] += " " + notes.mark(f"{name} at {human_n(n)} {kind}: WRONG RESULTS in the check: {chk}")
            over = b["bytes_per_entry"] - b["data_bytes_per_entry"]
            cells.append(f"{b['bytes_per_entry']:.1f} ({over:+.1f})")
        else:
            cells += ["— (the input)" if name == "dict" else "n/a", "— (in-process)" if name == "dict" else "n/a"]
        if full:
            a = r.get("attach", {})
            if "first_us" in a:
                mark = notes.mark(f"{name} at {human_n(n)}: attach {a['partial']}") if "partial" in a else ""
                rel = f" ({fmt_x(a['first_us'] / oa)} ours)" if oa and name != OURS else ""
                cells.append(f"{fmt_us(a['first_us'])}{rel}{mark}")
            elif "error" in a:
                cells.append("n/a " + notes.mark(f"{name} attach: {a['error'][:200]}"))
            else:
                cells.append("—" if name == "dict" else "n/a")
            it = lk.get("iter", {})
            if "items_per_s" in it:
                mark = notes.mark(f"{name} at {human_n(n)}: iteration {it['partial']}") if "partial" in it else ""
                order = "" if it.get("ordered") else " unordered"
                rel = f"{fmt_x(it['items_per_s'] / di)} " if di else ""
                cells.append(f"{rel}({it['items_per_s'] / 1e6:.2f} M/s{order}){mark}")
            else:
                cells.append("n/a " + notes.mark(f"{name}: {it.get('na', 'no iteration')}") if it else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(R, n, notes):
    base = get(R.py, "baseline_memory", str(n)) or {}
    e4 = base.get("empty4_pss")
    head = ["contender", "4 readers: summed PSS", "minus 4 empty interpreters", "published size",
            "2 processes / 1 (lookups/s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ORDER:
        r = R.peer(n, "str", name)
        if not r or name == "dict":
            continue
        m, t = r.get("memory", {}), r.get("tput", {})
        if not m and not t:
            continue
        label = f"**{name}**" if name == OURS else name
        if name == "pickle":
            label += " (= 4 dict holders)"
        if "Pss" in m:
            mark = notes.mark(f"{name} memory readers: {m['partial']}") if "partial" in m else ""
            if "error" in m:
                mark += notes.mark(f"{name} memory readers: {m['error']}")
            c1 = f"{mib(m['Pss'])}{mark}"
            c2 = mib(m["Pss"] - e4) if e4 else "n/a"
        else:
            c1 = c2 = "n/a"
        size = get(r, "build", "size")
        c3 = mib(size) if size else "n/a"
        if "ratio" in t:
            c4 = f"{fmt_x(t['ratio'])} ({fmt_rate(t['two_per_s'])} vs {fmt_rate(t['one_per_s'])})"
            if "loadavg_1min_before" in t:
                c4 += f", load {t['loadavg_1min_before']:.1f}"
        else:
            c4 = "n/a" + (" " + notes.mark(f"{name} throughput: {t['error']}") if "error" in t else "")
        lines.append(f"| {label} | {c1} | {c2} | {c3} | {c4} |")
    if e4:
        lines.append("")
        lines.append(f"Baselines: 4 empty interpreters (`python -c`, running together) {mib(e4)}; one alone "
                     f"{mib(base['empty1_pss'])}; 4 harness processes that do everything a reader does "
                     f"except open a map {mib(base['harness4_pss'])}.")
    return lines


def c_table(R):
    lines = ["| N | sm_get hit | sm_get miss | DRAM pointer chase | hit / chase | tinycdb hit, miss (× sm_get) | "
             "LMDB hit, miss (× sm_get) | bytes / entry: sharedmap, cdb, LMDB |", "|" + "---|" * 8]
    for n in R.csizes:
        c = R.c["sizes"][str(n)]
        sm, ch, cdb, lm = c["sharedmap"], c["chase"]["ns"], c["cdb"], c["lmdb"]
        lines.append(
            f"| {human_n(n)} | {sm['hit_ns']:.0f} ns | {sm['miss_ns']:.0f} ns | {ch:.0f} ns | "
            f"{fmt_x(sm['hit_ns'] / ch)} | {cdb['hit_ns']:.0f}, {cdb['miss_ns']:.0f} ns "
            f"({fmt_x(cdb['hit_ns'] / sm['hit_ns'])}, {fmt_x(cdb['miss_ns'] / sm['miss_ns'])}) | "
            f"{lm['hit_ns']:.0f}, {lm['miss_ns']:.0f} ns ({fmt_x(lm['hit_ns'] / sm['hit_ns'])}, "
            f"{fmt_x(lm['miss_ns'] / sm['miss_ns'])}) | {sm['bytes_per_entry']:.1f}, {cdb['bytes_per_entry']:.1f}, "
            f"{lm['bytes_per_entry']:.1f} |")
        if not c.get("all_found", True):
            lines.append(f"| | **some lookups gave wrong answers at {human_n(n)}** | | | | | | |")
    return lines


def markdown(R, cmd, bitmap=None, batch=None):
    meta = R.py.get("meta", {})
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    out = ["# sharedmap benchmark results", ""]
    quick = " (quick mode: small sizes only, figures indicative)" if meta.get("quick") else ""
    out.append(f"Command: `{cmd}`{quick}. Run {meta.get('started', '?')} on {m.get('cpu', '?')}, "
               f"{m.get('cores', '?')} cores, {m.get('mem_gib', '?')} GiB, Linux {m.get('kernel', '?')}, "
               f"Python {m.get('python', '?')}; load average at start "
               f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_at_start', []))}; took "
               f"{meta.get('elapsed_s', 0) / 60:.1f} min (Python part).")
    if v:
        out.append("Versions: " + ", ".join(f"{k} {x}" for k, x in sorted(v.items())) + ".")
    out += ["", "Ratios are measured in the same run; times are medians of repeated measurements; "
            "\"× dict\" is time relative to `dict.get` (lower is better), \"sharedmap faster\" is the "
            "peer's time over sharedmap's (above 1: sharedmap is faster). See bench/README.md for what "
            "each column measures.", ""]
    notes = Notes()
    out += ["## Targets (issues 3 and 5)", "", "| target | measured | result |", "|---|---|---|"]
    out += [f"| {t} | {mz} | {ok} |" for t, mz, ok in targets(R)]
    for n in R.sizes:
        for kind in ("str", "bytes"):
            if kind not in R.runs.get(str(n), {}):
                continue
            title = "str → str" if kind == "str" else "bytes → bytes"
            out += ["", f"## {human_n(n)} entries, {title}", ""]
            out += size_table(R, n, kind, notes)
        if str(n) in R.py.get("baseline_memory", {}):
            out += ["", f"### {human_n(n)} entries: memory of 4 reader processes, and 2 readers vs 1", ""]
            out += memory_table(R, n, notes)
    if R.csizes:
        out += ["", "## C level (bench/cbench.c, gcc -O2)", ""]
        out += c_table(R)
    else:
        out += ["", "## C level", "", "Not run."]
    if bitmap is not None:
        out += bitmapreport.section(*bitmap)
    if batch is not None:
        out += batchreport.section(*batch)
    if notes.items:
        out += ["", "Notes:", ""] + notes.render()
    out.append("")
    return "\n".join(out)


def plot(R, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    names = [p for p in ORDER if any(R.peer(n, "str", p) for n in R.sizes)]
    colors = {p: plt.cm.tab10(i % 10) for i, p in enumerate(ORDER)}

    def series(fn):
        for p in names:
            pts = [(n, fn(n, p)) for n in R.sizes]
            pts = [(n, y) for n, y in pts if y]
            if pts:
                yield p, pts

    def lineplot(ax, fn, title, ylabel):
        for p, pts in series(fn):
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=p, color=colors[p],
                    linewidth=3 if p == OURS else 1.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("entries")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)

    lineplot(axes[0][0], lambda n, p: R.hit(n, "str", p), "lookup, hits (str)", "ns / lookup")
    lineplot(axes[0][1], lambda n, p: R.hit(n, "str", p, "miss"), "lookup, misses (str)", "ns / lookup")
    lineplot(axes[0][2], lambda n, p: get(R.peer(n, "str", p), "attach", "first_us"),
             "attach: open by name + first lookup", "µs (fresh process)")
    lineplot(axes[1][0], lambda n, p: get(R.peer(n, "str", p), "build", "build_s"),
             "build from a dict + publish", "seconds")
    axes[0][0].legend(fontsize=8)
    # bytes per entry at the largest size each peer finished
    ax = axes[1][1]
    bars = []
    for p in names:
        vals = [(n, get(R.peer(n, "str", p), "build", "bytes_per_entry")) for n in R.sizes]
        vals = [x for x in vals if x[1]]
        if vals:
            bars.append((p, vals[-1][1], vals[-1][0]))
    if bars:
        data = max((get(R.runs, str(n), "data_bytes_per_entry") or 0) for n in R.sizes)
        ax.barh([f"{p} ({human_n(n)})" for p, _, n in bars], [b for _, b, _ in bars],
                color=[colors[p] for p, _, _ in bars])
        ax.axvline(data, color="k", linestyle="--", linewidth=1)
        ax.axvline(data + 16, color="r", linestyle=":", linewidth=1)
        ax.set_title("bytes per entry published (dashed: data; dotted: data + 16)")
        ax.invert_yaxis()
    # memory of 4 readers
    ax = axes[1][2]
    mems = sorted(int(k) for k in R.py.get("baseline_memory", {}))
    if mems:
        n = mems[-1]
        rows = [(p, get(R.peer(n, "str", p), "memory", "Pss")) for p in ORDER if p != "dict"]
        rows = [(p, v) for p, v in rows if v]
        e4 = R.py["baseline_memory"][str(n)]["empty4_pss"]
        ax.barh([p + (" (dicts)" if p == "pickle" else "") for p, _ in rows], [v / 2**20 for _, v in rows],
                color=[colors[p] for p, _ in rows])
        ax.axvline(e4 / 2**20, color="k", linestyle="--", linewidth=1)
        ax.set_title(f"4 readers, summed PSS, {human_n(n)} entries\n(dashed: 4 empty interpreters)")
        ax.set_xlabel("MiB")
        ax.invert_yaxis()
    else:
        ax.set_visible(False)
    meta = R.py.get("meta", {})
    fig.suptitle(f"sharedmap benchmark — {meta.get('started', '')} — "
                 f"{get(meta, 'machine', 'cpu') or ''}, {get(meta, 'machine', 'cores') or '?'} cores"
                 + (" — quick mode" if meta.get("quick") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    argv = sys.argv[1:]
    bitmap = only_bitmap = None
    if "--bitmap" in argv:
        i = argv.index("--bitmap")
        bitmap = (load(argv[i + 1]), load(argv[i + 2]))
        del argv[i:i + 3]
    if "--only-bitmap" in argv:
        argv.remove("--only-bitmap")
        only_bitmap = True
    batch = only_batch = None
    if "--batch" in argv:
        i = argv.index("--batch")
        batch = (load(argv[i + 1]), load(argv[i + 2]))
        del argv[i:i + 3]
    if "--only-batch" in argv:
        argv.remove("--only-batch")
        only_batch = True
    py, c, outdir = load(argv[0]), load(argv[1]), argv[2]
    cmd = argv[3] if len(argv) > 3 else "make bench"
    os.makedirs(outdir, exist_ok=True)
    if bitmap is not None:
        bm = {"python": bitmap[0], "c": bitmap[1],
              "targets": [{"target": t, "measured": m, "result": ok}
                          for t, m, ok in bitmapreport.targets(bitmap[0])]}
    if only_batch and batch is None:
        batch = (None, None)
    if batch is not None:
        ba = {"python": batch[0], "c": batch[1],
              "targets": [{"target": t, "measured": m, "result": ok}
                          for t, m, ok in batchreport.targets(*batch)]}
    if only_batch:
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump({"meta": (batch[0] or {}).get("meta", {}), "batch": ba}, f, indent=1)
        with open(os.path.join(outdir, "results.md"), "w") as f:
            f.write(batchreport.standalone(batch[0], batch[1], cmd))
        print(f"wrote {outdir}/results.json, results.md (batched lookups only)", file=sys.stderr)
        return
    if only_bitmap:
        bitmap = bitmap or (None, None)
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump({"meta": (bitmap[0] or {}).get("meta", {}), "bitmap": bm}, f, indent=1)
        with open(os.path.join(outdir, "results.md"), "w") as f:
            f.write(bitmapreport.standalone(bitmap[0], bitmap[1], cmd))
        print(f"wrote {outdir}/results.json, results.md (shared bitmap only)", file=sys.stderr)
        return
    R = Results(py, c)
    merged = dict(R.py)
    merged["c"] = R.c
    merged["targets"] = [{"target": t, "measured": m, "result": ok} for t, m, ok in targets(R)]
    if bitmap is not None:
        merged["bitmap"] = bm
    if batch is not None:
        merged["batch"] = ba
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(merged, f, indent=1)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(markdown(R, cmd, bitmap, batch))
    try:
        plot(R, os.path.join(outdir, "plot.png"))
    except Exception as e:  # the table matters more than the picture
        print(f"report: no plot: {e}", file=sys.stderr)
    print(f"wrote {outdir}/results.json, results.md, plot.png", file=sys.stderr)


if __name__ == "__main__":
    main()
