"""Calls timed alternating in one loop: the harness of every bar that compares implementations
side by side (``bench_interleaved.py``, ``bench_nn.py``, ``bench_dask.py``).

Each round calls each implementation once, in an order that rotates from round to round, so a
slow stretch of the machine or a cache left cold by the previous call falls on all of them
alike; the bars read the medians (``extra_info["medians_s"]``, see bench/reporting/bars.py).
"""

from __future__ import annotations

import statistics
import time


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(benchmark, calls: dict, rounds: int, only_first: dict | None = None, before=None):
    """Time ``calls`` (name -> function) alternating for ``rounds`` rounds of
    ``benchmark.pedantic``, after one untimed call of each; ``only_first`` maps a name to the
    number of first rounds it takes part in (a call too slow for every round); ``before``, if
    given, is called untimed before each timed call (to leave the caches as a program would).
    Returns the medians ``{name: seconds}`` and the sample counts ``{name: n}``."""
    only_first = only_first or {}
    for fn in calls.values():
        fn()
    names = list(calls)
    samples = {name: [] for name in names}
    state = {"round": 0}

    def one_round():
        r = state["round"]
        state["round"] += 1
        for name in names[r % len(names):] + names[: r % len(names)]:
            if r < only_first.get(name, rounds):
                if before is not None:
                    before()
                samples[name].append(timed(calls[name]))

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    return ({name: statistics.median(v) for name, v in samples.items() if v},
            {name: len(v) for name, v in samples.items()})


def record(benchmark, medians: dict, counts: dict) -> None:
    """The medians as the report reads them."""
    benchmark.extra_info["impl"] = "alternating"
    benchmark.extra_info["medians_s"] = medians
    benchmark.extra_info["samples"] = counts
