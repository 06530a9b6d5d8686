"""Memory (and time) of the hypergradient methods against the horizon T, measured (issue 4;
homework question 2.1.2: forward pass O(1) in T, stored-trajectory back-propagation O(T)).

    python bench/memory_scaling.py [--quick] [--out results/memory.json]

For T = 250, 500, ..., 64000 (factor 2) on X of shape (n, d) = (64, 1000), each of
``forward_pass`` (:func:`kernels.unrolled_loss`, no derivative), ``reverse``, ``checkpoint``,
``forward`` (and ``exact`` at three T) is measured in a FRESH subprocess, so peaks never mix:

1. build the problem, warm the JIT up on a tiny problem (compiles, or loads the on-disk cache,
   without leaving large freed blocks behind in the allocator), ``gc.collect()``;
2. reset the kernel's peak-RSS counter (``/proc/self/clear_refs``) and record the RSS baseline
   just before the call;
3. run the call under ``memory_profiler.memory_usage((f, args, kwargs), max_usage=True,
   interval=1 ms)``; the peak RSS is the larger of memory-profiler's sampled maximum and the
   kernel's exact high-water mark ``VmHWM`` (sampling can miss the peak of a call that lasts a
   millisecond); the wall time is taken around the call itself;
4. run the call again under ``tracemalloc`` (NumPy reports its allocations to it) for the
   peak of traced allocations.

The children run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that every array above 64 KiB is a
fresh mapping whose touched pages show up in RSS (glibc's adaptive threshold would otherwise
recycle freed heap blocks invisibly). Log-log slopes are least-squares fits of log(peak above
baseline) -- RSS and tracemalloc -- and of log(wall time) against log T; an RSS increase
below :data:`RSS_NOISE_MIB` is floored there for the fit: the interpreter's allocator moves the
RSS by up to 28 pages around a call whatever T (``rmsprop_forward``, whose tracemalloc peak is
the same at every T, measured 0.008-0.12 MiB at T = 250 ... 16000 across runs, in no order), so
smaller values are that noise, not growth; the smallest real growth measured is 0.24 MiB
(``checkpoint`` at T = 250). Writes the JSON schema that ``bench/report.py``
renders (keep it exactly)::

    {"generated", "d", "n", "T", "runs": [{"method", "T", "rss_baseline_mib", "rss_peak_mib",
     "rss_above_baseline_mib", "tracemalloc_peak_mib", "bytes_stored", "wall_s"}, ...],
     "slopes": {method: {"rss", "tracemalloc", "time"}},
     "bars": [{"text", "method", "metric", "value", "target", "pass"}]}

RMSProp (issue 15): ``rmsprop_reverse``, ``rmsprop_checkpoint``, ``rmsprop_forward`` are
:func:`kernels.hypergrad` with ``optimizer="rmsprop"`` and that method, measured the same way for
T = 250 ... 16000 (their stored trajectory is 3 rows of d per step: w, g, v), with slope bars of
their own (reverse 1, checkpoint 0.5, forward 0; the bars carry ``"issue": 15``).

``--quick`` (tests): d = 200, n = 16, T = 64 and 256, no ``exact``, two children at a time.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))
MIB = 1024.0 * 1024.0
PAGE_MIB = 4096 / MIB
#: RSS increases below this (32 pages) are the allocator's noise, floored for the slope fits
RSS_NOISE_MIB = 32 * PAGE_MIB
METHODS = ("forward_pass", "reverse", "checkpoint", "forward")
RMSPROP_METHODS = ("rmsprop_reverse", "rmsprop_checkpoint", "rmsprop_forward")
L2 = 1e-2

# (method, low, high, text) -- issue 4's bars on the slope of peak memory against T.
SLOPE_BARS = (
    ("reverse", 0.95, 1.05, "1 +- 0.05"),
    ("checkpoint", 0.4, 0.6, "0.5 +- 0.1"),
    ("forward", None, 0.05, "< 0.05"),
    ("forward_pass", None, 0.05, "< 0.05"),
    ("rmsprop_reverse", 0.95, 1.05, "1 +- 0.05"),
    ("rmsprop_checkpoint", 0.4, 0.6, "0.5 +- 0.1"),
    ("rmsprop_forward", None, 0.05, "< 0.05"),
)


def _status_mib(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _child(method, T, d, n):
    """Measure one (method, T) in this (fresh) process; print one JSON line."""
    import gc
    import tracemalloc

    import numpy as np
    from memory_profiler import memory_usage

    import kernels

    from kernels import _aligned

    rng = np.random.default_rng(0)
    # on a 64-byte boundary, as the methods would copy it there (kernels/_aligned.py): a
    # constant n d floats inside the call, present or not by the allocator's luck, that would
    # flatten the small-T end of the slope fits
    X = _aligned.aligned(rng.standard_normal((n, d)))
    t = rng.standard_normal(n)
    lr = 0.2 * kernels.critical_lr(X, L2)

    def call(X, t, steps):
        if method.startswith("rmsprop_"):
            return kernels.hypergrad(X, t, lr=1e-3, l2=L2, steps=steps, method=method[len("rmsprop_"):],
                                     optimizer="rmsprop")
        if method == "forward_pass":
            return kernels.unrolled_loss(X, t, lr=lr, l2=L2, steps=steps)
        return kernels.hypergrad(X, t, lr=lr, l2=L2, steps=steps, method=method)

    tiny = (np.ascontiguousarray(X[:8, :16]), t[:8], 5)
    call(*tiny)  # compile / load the cache, with tiny buffers
    memory_usage((call, tiny, {}), max_usage=True, interval=0.001)  # memory-profiler's own first-use costs
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    baseline = _status_mib("VmRSS")
    out = {}

    def timed():
        t0 = time.perf_counter()
        res = call(X, t, T)
        out["wall"] = time.perf_counter() - t0
        out["res"] = res

    sampled = memory_usage((timed, (), {}), max_usage=True, interval=0.001, include_children=False)
    sampled = float(sampled[0] if isinstance(sampled, (list, tuple)) else sampled)
    hwm = _status_mib("VmHWM")
    peak = max(sampled, hwm)
    if os.environ.get("MEMORY_SCALING_DEBUG"):
        sys.stderr.write(f"baseline {baseline:.3f} sampled {sampled:.3f} hwm {hwm:.3f}\n")
    res = out.pop("res")
    out["bytes"] = int(res.bytes_stored)
    del res
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    res = call(X, t, T)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del res
    gc.collect()
    # Wall time from plain calls: memory-profiler's sampling process (polling every millisecond)
    # competes for the CPU, so the time under it is not the kernel's.
    walls = []
    while len(walls) < 3 and (not walls or sum(walls) < 1.0):
        t0 = time.perf_counter()
        res = call(X, t, T)
        walls.append(time.perf_counter() - t0)
        del res
    out["wall"] = min(walls)
    print(json.dumps(dict(
        method=method, T=T, rss_baseline_mib=baseline, rss_peak_mib=peak,
        rss_above_baseline_mib=max(peak - baseline, 0.0), tracemalloc_peak_mib=traced_peak / MIB,
        bytes_stored=out["bytes"], wall_s=out["wall"],
    )))


def _slope(Ts, ys):
    import numpy as np

    if len(Ts) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(Ts, float)), np.log(np.asarray(ys, float)), 1)[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny range (tests)")
    ap.add_argument("--out", default=str(ROOT / "results" / "memory.json"))
    ap.add_argument("--child", nargs=4, metavar=("METHOD", "T", "D", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        m, T, d, n = args.child
        _child(m, int(T), int(d), int(n))
        return 0

    if args.quick:
        d, n, Ts, exact_Ts = 200, 16, [64, 256], []
        rms_Ts = Ts
    else:
        d, n = 1000, 64
        Ts = [250 * 2**k for k in range(9)]  # 250 ... 64000
        exact_Ts = [250, 4000, 64000]
        rms_Ts = Ts[:7]  # 250 ... 16000: reverse stores 3 d floats per step
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    plan = ([(m, T) for m in METHODS for T in Ts] + [("exact", T) for T in exact_Ts]
            + [(m, T) for m in RMSPROP_METHODS for T in rms_Ts])

    def measure(item):
        m, T = item
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", m, str(T), str(d), str(n)],
                              env=env, capture_output=True, text=True, cwd=ROOT)

    if args.quick:  # two children at a time: each measures only its own process, and --quick times nothing
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            procs = list(pool.map(measure, plan))
    else:
        procs = map(measure, plan)  # one at a time, so that the wall times are not shared
    runs = []
    for (m, T), proc in zip(plan, procs):
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"measurement {m} T={T} failed (exit {proc.returncode})")
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append(run)
        print(f"{m:18s} T={T:6d}  RSS +{run['rss_above_baseline_mib']:9.3f} MiB  traced {run['tracemalloc_peak_mib']:9.3f} "
              f"MiB  stored {run['bytes_stored'] / MIB:9.3f} MiB  {run['wall_s']:.4f} s", flush=True)

    slopes = {}
    for m in METHODS + ("exact",) + RMSPROP_METHODS:
        rs = [r for r in runs if r["method"] == m]
        Tm = [r["T"] for r in rs]
        if len(Tm) < 2:  # no slope from one point (exact is not run by --quick)
            continue
        slopes[m] = {
            "rss": _slope(Tm, [max(r["rss_above_baseline_mib"], RSS_NOISE_MIB) for r in rs]),
            "tracemalloc": _slope(Tm, [r["tracemalloc_peak_mib"] for r in rs]),
            "time": _slope(Tm, [r["wall_s"] for r in rs]),
        }
    bars = []
    for m, lo, hi, target in SLOPE_BARS:
        for metric in ("rss", "tracemalloc"):
            v = slopes[m][metric]
            ok = (lo is None or v >= lo) and v <= hi if not math.isnan(v) else False
            bars.append(dict(text=f"{m}: log-log slope of peak memory ({metric}) vs T is {target}", method=m,
                             metric=f"{metric}_slope", value=v, target=target, pass_=bool(ok)))
            if m.startswith("rmsprop_"):
                bars[-1]["issue"] = 15
    for b in bars:
        b["pass"] = b.pop("pass_")
    data = {"generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "d": d, "n": n,
            "T": Ts, "runs": runs, "slopes": slopes, "bars": bars}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    for m, s in slopes.items():
        print(f"slope {m:13s} rss {s['rss']:+.3f}  tracemalloc {s['tracemalloc']:+.3f}  time {s['time']:+.3f}")
    for b in bars:
        print(("PASS " if b["pass"] else "FAIL ") + b["text"] + f" (measured {b['value']:.3f})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
