"""The figures: speed-ups of every kernel (``speedups.png``) and the memory-scaling study's memory
and time against T (``memory_scaling.png``, ``time_scaling.png``). matplotlib is imported only
when a figure is drawn."""

from __future__ import annotations

import os

from .formatting import MIB_FLOOR, fmt_slope
from .load import OWN_IMPLS, Index
from .tables import speedups


def memory_legend(memory, method):
    """Legend labels (RSS, tracemalloc, time) of one method, with its fitted log-log slopes."""
    s = (memory.get("slopes") or {}).get(method) or {}
    return (f"{method} RSS (slope {fmt_slope(s.get('rss'))})",
            f"{method} tracemalloc (slope {fmt_slope(s.get('tracemalloc'))})",
            f"{method} (slope {fmt_slope(s.get('time'))})")


def _save(fig, path: str) -> str:
    """Lay out, write as PNG and close ``fig``; return ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_memory(memory, results_dir) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    runs = memory.get("runs", [])
    methods = sorted({r["method"] for r in runs})
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, m in enumerate(methods):
        rs = sorted((r for r in runs if r["method"] == m), key=lambda r: r["T"])
        ts = [r["T"] for r in rs]
        colour = f"C{i}"
        rss = [max(r.get("rss_above_baseline_mib") or 0.0, MIB_FLOOR) for r in rs]
        tm = [max(r.get("tracemalloc_peak_mib") or 0.0, MIB_FLOOR) for r in rs]
        rss_label, tm_label, _ = memory_legend(memory, m)
        ax.loglog(ts, rss, "o-", color=colour, label=rss_label)
        ax.loglog(ts, tm, "x--", color=colour, alpha=0.7, label=tm_label)
    ax.set_xlabel("T (gradient-descent steps)")
    ax.set_ylabel(f"peak memory above baseline (MiB, floor {MIB_FLOOR})")
    ax.set_title(f"Memory vs T (d = {memory.get('d', '?')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, os.path.join(results_dir, "memory_scaling.png")))

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, m in enumerate(methods):
        rs = sorted((r for r in runs if r["method"] == m and r.get("wall_s")), key=lambda r: r["T"])
        if rs:
            ax.loglog([r["T"] for r in rs], [r["wall_s"] for r in rs], "o-", color=f"C{i}",
                      label=memory_legend(memory, m)[2])
    ax.set_xlabel("T (gradient-descent steps)")
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"Wall time vs T (d = {memory.get('d', '?')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, os.path.join(results_dir, "time_scaling.png")))
    return written


def speedup_rows(index: Index):
    """(label, vs_reference, vs_best_peer) for every own implementation with something to beat."""
    rows = []
    for group in sorted(index.groups):
        if group.startswith(("compile|", "roofline|")):
            continue
        data, best = speedups(index, group)
        for impl, _b, vs_ref, vs_peer in data:
            if impl in OWN_IMPLS and (vs_ref is not None or vs_peer is not None):
                label = group if impl == "numba" else f"{group} [{impl}]"
                rows.append((label, vs_ref, vs_peer, best))
    return rows


def plot_speedups(index: Index, results_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = speedup_rows(index)
    path = os.path.join(results_dir, "speedups.png")
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.45 * len(rows) + 1.2)))
    if not rows:
        ax.text(0.5, 0.5, "no kernel benchmarks with a reference or peer in this run",
                ha="center", va="center")
        ax.set_axis_off()
    else:
        ys = range(len(rows))
        h = 0.38
        ref = [r[1] if r[1] is not None else float("nan") for r in rows]
        peer = [r[2] if r[2] is not None else float("nan") for r in rows]
        # Bars grow from 1 (parity), leftwards for a slow-down, so the log axis reads honestly.
        ax.barh([y - h / 2 for y in ys], [v - 1 for v in ref], left=1, height=h, color="C0",
                label="vs naive NumPy reference")
        ax.barh([y + h / 2 for y in ys], [v - 1 for v in peer], left=1, height=h, color="C1",
                label="vs best peer (named)")
        for y, (_label, r, pr, best) in zip(ys, rows):
            if r is not None:
                ax.text(r, y - h / 2, f" {r:.3g}x", va="center", fontsize=6)
            if pr is not None:
                ax.text(pr, y + h / 2, f" {pr:.3g}x vs {best}", va="center", fontsize=6)
        finite = [v for v in ref + peer if v == v]
        ax.set_xlim(min(finite + [1.0]) / 2, max(finite + [1.0]) * 4)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([r[0] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel("speed-up (median time of the other / median time of ours; log scale)")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, path)
