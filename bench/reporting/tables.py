"""``benchmarks.md`` (every group with its speed-ups, rooflines and bars, then compile times) and
``memory.md`` (the memory-scaling study's slopes, bars and raw runs)."""

from __future__ import annotations

import statistics

from .bars import FAIL, NOT_RUN, PASS, Verdict
from .formatting import MIB_FLOOR, fmt_num, fmt_slope, fmt_time, fmt_x, md_escape, md_table
from .load import REFERENCE_IMPL, BarSet, Index, group_parts, impl_of, is_own, median, module_of


def status_badge(status) -> str:
    return {PASS: "**PASS**", FAIL: "**FAIL**", NOT_RUN: "**NOT RUN**"}[status]


def verdict_line(v: Verdict) -> str:
    text = f"- {status_badge(v.status)} — issue {v.bar.get('issue', '?')}: {v.bar.get('text', '?')} — " \
           f"measured {v.measured}, bar {v.target}"
    if v.reason:
        text += f" ({v.reason})"
    return text


def speedups(index: Index, group: str):
    """Rows of (impl, bench, vs_reference, vs_best_peer) and the best peer's name."""
    benches = index.groups[group]
    ref = next((b for b in benches if impl_of(b) == REFERENCE_IMPL), None)
    peers = [b for b in benches if not is_own(impl_of(b)) and impl_of(b) != REFERENCE_IMPL]
    best = min(peers, key=median) if peers else None
    rows = []
    for b in sorted(benches, key=median):
        rows.append((impl_of(b), b,
                     median(ref) / median(b) if ref else None,
                     median(best) / median(b) if best else None))
    return rows, (impl_of(best) if best else None)


def roofline_text(index: Index, group: str, b) -> str:
    extra = b.get("extra_info") or {}
    parts = []
    over = (" (above the measured ceiling: the count in extra_info is nominal, or this code "
            "outruns the ceiling's libraries)")
    if extra.get("bytes"):
        bw = extra["bytes"] / median(b)
        frac = f", {bw / index.triad_bw:.0%} of triad" if index.triad_bw else ", no triad in run"
        if index.triad_bw and bw > index.triad_bw and extra.get("roofline") != "bandwidth":
            frac += over
        parts.append(f"{bw / 1e9:.1f} GB/s{frac}")
    if extra.get("flops"):
        rate = extra["flops"] / median(b)
        peak = index.gemm_peak.get(group_parts(group)[2])
        frac = f", {rate / peak[0]:.0%} of GEMM peak" if peak else ", no GEMM peak in run"
        if peak and rate > peak[0] and extra.get("roofline") != "flops":
            frac += over
        parts.append(f"{rate / 1e9:.1f} GFLOP/s{frac}")
    return "; ".join(parts) or "—"


def module_counts(index: Index):
    """(module, timed, skipped, failed) rows: what each bench module contributed to the run."""
    counts: dict = {}
    for b in index.data.get("benchmarks", []):
        counts.setdefault(module_of(b), [0, 0, 0])[0] += 1
    for o in index.outcomes:
        c = counts.setdefault(o.get("module", "?"), [0, 0, 0])
        c[1 if o.get("outcome") == "skipped" else 2] += 1
    return [(m, str(t), str(s), str(f)) for m, (t, s, f) in sorted(counts.items())]


def noise(index: Index):
    """Median and worst IQR/median over the timed benchmarks (compile rounds excluded)."""
    rel = []
    for (group, impl), b in index.by_key.items():
        if group.startswith("compile|"):
            continue
        st = b["stats"]
        if st.get("median"):
            rel.append((st["iqr"] / st["median"], f"{group} [{impl}]"))
    if not rel:
        return None
    return statistics.median(r for r, _ in rel), max(rel), len(rel)


def render_benchmarks_md(index: Index, verdicts: list, barset: BarSet) -> str:
    out = ["# Benchmarks", ""]
    if not index.data:
        out += ["**No benchmark results**: `results/benchmarks.json` is missing, so every "
                "benchmark bar below is NOT RUN.", ""]
    else:
        opts = index.data.get("kernels_options", {})
        out += [f"Run {index.data.get('datetime', '?')}; pytest-benchmark options: max-time "
                f"{opts.get('max_time', '?')} s, min-rounds {opts.get('min_rounds', '?')}. "
                "Times are medians over rounds, compilation excluded (each benchmark calls its "
                "kernel once before timing). Speed-up = median of the other / median of this row: "
                f"`vs numpy` against the naive NumPy reference, `vs best peer` against the fastest "
                "peer library in the group. Machine and threads: [README.md](README.md).", "",
                "![speed-ups of each kernel](speedups.png)", ""]
        out += ["## Rooflines measured in this run", ""]
        rows = []
        if index.triad_bw:
            rows.append(("memory bandwidth (STREAM triad, best impl)",
                         f"{index.triad_bw / 1e9:.1f} GB/s", index.triad_from))
        else:
            rows.append(("memory bandwidth", "not measured", "bench_roofline.py did not run"))
        for dtype, (rate, src) in sorted(index.gemm_peak.items()):
            rows.append((f"{dtype} GEMM peak (best impl)", f"{rate / 1e9:.1f} GFLOP/s", src))
        if not index.gemm_peak:
            rows.append(("GEMM peak", "not measured", "bench_roofline.py did not run"))
        out += [md_table(("ceiling", "value", "from"), rows), ""]
        if index.duplicates:
            out += [f"Duplicate group/impl pairs ignored: {', '.join(index.duplicates)}", ""]

    by_group: dict = {}
    for v in verdicts:
        by_group.setdefault(v.bar.get("group"), []).append(v)

    # Kernels in name order, each kernel's shapes and dtypes together ("maxpool2d" before
    # "maxpool2d indices"); the rooflines last, as they are summarised above.
    groups = sorted((g for g in index.groups if not g.startswith("compile|")),
                    key=lambda g: (g.startswith("roofline|"), group_parts(g)))
    kernel = None
    for group in groups:
        name, shape, dtype = group_parts(group)
        if name != kernel:
            out += [f"## {name}", ""]
            kernel = name
        rows_data, best = speedups(index, group)
        out += [f"### {group}", ""]
        rows = []
        for impl, b, vs_ref, vs_peer in rows_data:
            st = b["stats"]
            rows.append((impl, fmt_time(st["median"]), fmt_time(st["iqr"]),
                         f"{st['iqr'] / st['median']:.1%}" if st["median"] else "—",
                         str(st["rounds"]), fmt_x(vs_ref), fmt_x(vs_peer), roofline_text(index, group, b)))
        header = ("impl", "median", "IQR", "IQR/median", "rounds", "vs numpy",
                  f"vs best peer ({best})" if best else "vs best peer (none)", "roofline")
        out += [md_table(header, rows), ""]
        for impl, b, _, _ in rows_data:
            medians = (b.get("extra_info") or {}).get("medians_s")
            if (b.get("extra_info") or {}).get("targets"):  # bench_targets.py: one table per target
                out += targets_table(b["extra_info"])
            elif medians:  # calls timed alternating inside one benchmark (bench_interleaved.py)
                out += [f"Calls alternating in one loop ({impl}; the row above times whole rounds):", "",
                        md_table(("call", "median"), [(k, fmt_time(v)) for k, v in medians.items()]), ""]
        for v in by_group.pop(group, []):
            out.append(verdict_line(v))
        out.append("")

    compile_groups = [g for g in sorted(index.groups) if g.startswith("compile|")]
    if compile_groups:
        out += ["## Compile time", "",
                "Each row is a fresh process calling the function twice on a tiny float64 input: "
                "`cold` with an empty `NUMBA_CACHE_DIR` (the first call compiles), `cached` with the "
                "cache the cold run wrote (the first call loads machine code). `process` is the "
                "whole process (interpreter, imports, both calls); the in-process parts are medians "
                "over the rounds. `python -m kernels hw2` runs with the committed `memory.json` in "
                "its output directory, as `--out results` has it in a fresh clone (section 2.1.2 "
                "quotes the memory study); `cold-measuring` runs without it (2.1.2 measures, "
                "compiling every hypergradient method).", ""]
        rows = []
        for group in compile_groups:
            for b in sorted(index.groups[group], key=lambda b: impl_of(b) != "cold"):
                ex = b.get("extra_info") or {}
                rows.append((ex.get("function", group_parts(group)[1]), impl_of(b),
                             fmt_time(median(b)), fmt_time(ex.get("import_s")),
                             fmt_time(ex.get("first_call_s")), fmt_time(ex.get("second_call_s")),
                             str(b["stats"]["rounds"]),
                             f"{sum(ex.get('cache_hits', []))}/{sum(ex.get('cache_misses', []))}"))
        out += [md_table(("function", "phase", "process", "import", "first call",
                          "second call", "rounds", "cache hits/misses"), rows), ""]
        for group in compile_groups:
            out += [verdict_line(v) for v in by_group.pop(group, [])]
        out.append("")

    leftover = [v for g, vs in sorted(by_group.items(), key=lambda kv: str(kv[0])) for v in vs]
    if leftover:
        out += ["## Bars whose group has no results", ""]
        out += [verdict_line(v) for v in leftover] + [""]
    if barset.errors:
        out += ["## Bench modules whose bars could not be read", ""]
        out += [f"- `{m}`: {md_escape(e)}" for m, e in barset.errors] + [""]
    skipped = [o for o in index.outcomes]
    if skipped:
        out += ["## Benchmarks skipped or failed in this run", ""]
        out += [md_table(("test", "outcome", "reason"),
                         [(o["nodeid"], o["outcome"], o["reason"]) for o in skipped]), ""]
    return "\n".join(out)


def targets_table(extra: dict) -> list:
    """The per-target table of ``bench/bench_targets.py``: each case's medians for the host, an
    AVX2 and a generic x86-64 build of the kernels, PyTorch's beside them, and the ratios the
    bars read."""
    medians, targets = extra.get("medians_s", {}), extra.get("targets", {})
    names = [t for t in ("host", "avx2", "generic") if t in targets]

    def m(target, case, dtype, lib):
        return medians.get(f"{target} {case} {dtype} {lib}")

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "—"

    out = ["Per target (one process each; medians of calls alternating with the peers, 2 threads). "
           "`kernels / peer` is the kernels' time over the fastest peer's (below 1: faster); "
           "`generic / avx2` the baseline x86-64 build's time over the AVX2 build's.", ""]
    out += [md_table(("target", "kernels ISA", "vector bytes", "oneDNN ISA", "oneDNN convolution"),
                     [(t, str(targets[t].get("isa")), str(targets[t].get("vector_bytes")),
                       str((targets[t].get("onednn") or {}).get("isa")),
                       str((targets[t].get("onednn") or {}).get("convolution"))) for t in names]), ""]
    header = ["case", "dtype"]
    for t in names:
        header += [f"{t} kernels", f"{t} kernels / peer"]
    header += ["generic / avx2"]
    rows = []
    for case, dtype, libs in extra.get("cases", []):
        peers = [lib for lib in libs if lib != "kernels"]
        row = [case, dtype]
        for t in names:
            k = m(t, case, dtype, "kernels")
            best = min((v for v in (m(t, case, dtype, p) for p in peers) if v), default=None)
            row += [fmt_time(k), ratio(k, best)]
        row.append(ratio(m("generic", case, dtype, "kernels"), m("avx2", case, dtype, "kernels")))
        rows.append(row)
    return out + [md_table(header, rows), ""]


# --------------------------------------------------------------------------------------------
# memory.md


def render_memory_md(memory, verdicts) -> str:
    out = ["# Memory scaling (homework question 2.1.2, measured)", ""]
    if memory is None:
        out += ["**Not run**: `results/memory.json` is missing (the memory stage of "
                "`bench/run.py` did not run or `bench/memory_scaling.py` does not exist yet).", ""]
        return "\n".join(out)
    out += [f"Generated {memory.get('generated', '?')}; d = {memory.get('d', '?')}, "
            f"n = {memory.get('n', '?')}; T = {', '.join(str(t) for t in memory.get('T', []))}. "
            "Each run is a fresh process; peak memory is measured above the process's baseline just "
            "before the call, by memory-profiler (RSS) and tracemalloc.", "",
            "![peak memory vs T](memory_scaling.png)", "", "![wall time vs T](time_scaling.png)", "",
            "## Fitted log-log slopes against T", ""]
    slopes = memory.get("slopes", {})
    rows = [(m, fmt_slope(s.get("rss")), fmt_slope(s.get("tracemalloc")), fmt_slope(s.get("time")))
            for m, s in sorted(slopes.items())]
    out += [md_table(("method", "RSS slope", "tracemalloc slope", "time slope"), rows), "",
            "## Bars", ""]
    out += [verdict_line(v) for v in verdicts] or ["(memory.json declares no bars)"]
    floored = [f"{r.get('method')} T={r.get('T')}" for r in memory.get("runs", [])
               if (r.get("rss_above_baseline_mib") or 0.0) <= MIB_FLOOR
               or (r.get("tracemalloc_peak_mib") or 0.0) <= MIB_FLOOR]
    if floored:
        out += ["", f"On the log axes of the memory figure, {len(floored)} runs whose peak above baseline "
                f"was at most {MIB_FLOOR} MiB (nothing measurable) are drawn at {MIB_FLOOR} MiB: "
                + ", ".join(floored[:12]) + (" ..." if len(floored) > 12 else "") + "."]
    out += ["", "## Raw runs", ""]
    rows = [(r.get("method"), str(r.get("T")), fmt_num(r.get("rss_baseline_mib")), fmt_num(r.get("rss_peak_mib")),
             fmt_num(r.get("rss_above_baseline_mib")), fmt_num(r.get("tracemalloc_peak_mib")),
             str(r.get("bytes_stored", "—")), fmt_time(r.get("wall_s")))
            for r in sorted(memory.get("runs", []), key=lambda r: (str(r.get("method")), r.get("T", 0)))]
    out += [md_table(("method", "T", "RSS baseline MiB", "RSS peak MiB", "RSS above baseline MiB",
                      "tracemalloc peak MiB", "bytes stored", "wall"), rows), ""]
    return "\n".join(out)
