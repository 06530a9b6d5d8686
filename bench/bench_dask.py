"""The kernels on Dask (issue 16): a chunked 3x3 filter against dask-image, a 16 GiB image, and a
sweep of trainings on 1 and 2 worker processes.

Every figure of a comparison is taken in one benchmark, the calls alternating round by round
(the order rotating), and kept as medians in ``extra_info["medians_s"]``; the bars compare those
medians (``min_ratio``/``max_ratio`` in the report).

* ``dask correlate2d|16384x16384 c4096 k3 same``: a float32 image persisted in 4096x4096 chunks on
  a ``LocalCluster`` of 2 single-threaded worker processes. Per round: ``x.sum()`` (reading the
  data once), ``kd.correlate2d(x, w, padding='same').sum()`` ("kernels"),
  ``dask_image.ndfilters.correlate(x, w, mode='constant').sum()`` ("dask-image", the same filter
  with zero padding, first rounds only: it takes seconds), an identity ``x.map_overlap`` with a
  halo of 1 ("identity map_overlap") and ``x.map_overlap`` around ``kernels.correlate2d`` as a
  user would first write it ("map_overlap(kernels)"). The peak memory each worker adds to the
  persisted data while "kernels" runs (its resident set sampled every 2 ms) is kept as
  ``worker peak memory`` against ``chunk input+output`` (bytes, in ``medians_s`` so a ratio bar
  reads them). The result is checked bit-identical to ``kernels.correlate2d`` across a chunk
  corner in the warm-up.
* ``dask correlate2d|65536x65536 lazy mean``: a 16 GiB float32 image generated lazily
  (``da.random``, 4096x4096 chunks), filtered and reduced to the mean of the output, one round;
  ``extra_info`` holds the workers' peak memory.
* ``dask sweep|hypergrad 200x500 T1000``: ``kd.sweep("hypergrad", configs)`` of 2,000
  configurations on 2 workers, 500 on 1 worker, and 200 run serially in this process on one
  Numba thread (per configuration, medians_s holds seconds per configuration: throughput ratios
  need no equal counts). ``extra_info`` keeps the batch chosen and the overhead fraction. A
  context row, ``2 plain processes``: the 500 configurations of the 1-worker run split over a
  spawned pool of two processes, the data sent once, no scheduler: the ceiling any engine meets
  on this machine. The clusters are the one ``kd.sweep`` starts when given no client (its
  quieter settings, ``kernels.dask.sweeps.QUIET_CLUSTER``): with Dask's defaults the workers ran
  10-13% slower per configuration than this process (``MALLOC_TRIM_THRESHOLD_``), and the
  plain processes, spawned after the nannies had set that variable in this process, too.

``KERNELS_BENCH_QUICK=1``, and the untimed smoke run of ``python -m pytest``, shrink every size
(other group names, so the bars read NOT RUN there).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import kernels
from alternating import alternate, timed

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
kd = pytest.importorskip("kernels.dask")

QUICK_ENV = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")

FULL = dict(image=16384, chunk=4096, rounds=5, image_rounds_peer=2, big=65536, big_chunk=4096,
            sweep=(200, 500, 1000), n2=2000, n1=500, n_serial=200)
QUICK = dict(image=1024, chunk=256, rounds=2, image_rounds_peer=1, big=2048, big_chunk=512,
             sweep=(20, 50, 100), n2=40, n1=20, n_serial=10)
# the untimed smoke run of the plain test command (benchmark disabled): seconds, not minutes;
# no second cluster for the 1-worker sweep
SMOKE = dict(QUICK, image=512, rounds=1, big=1024, n2=12, n1=0, n_serial=4)


def _groups(s):
    n, c = s["image"], s["chunk"]
    m, k, T = s["sweep"]
    return dict(image=f"dask correlate2d|{n}x{n} c{c} k3 same|float32",
                big=f"dask correlate2d|{s['big']}x{s['big']} lazy mean|float32",
                sweep=f"dask sweep|hypergrad {m}x{k} T{T}|float64")


_G = _groups(FULL)
BARS = [
    dict(issue=16, text="3x3 'same' on 16384^2 float32 in 4096^2 chunks, 2 workers: kd.correlate2d(...).sum() "
                        ">= 4x faster than dask_image.ndfilters.correlate(...).sum()",
         group=_G["image"], impl="alternating", ratio=("dask-image", "kernels"), min_ratio=4.0),
    dict(issue=16, text="... and within 4x of the time of x.sum() over the same array",
         group=_G["image"], impl="alternating", ratio=("kernels", "x.sum()"), max_ratio=4.0),
    dict(issue=16, text="... peak memory per worker within 4x of one chunk's input plus output "
                        "(values are bytes, not seconds)",
         group=_G["image"], impl="alternating", ratio=("worker peak memory", "chunk input+output"), max_ratio=4.0),
    dict(issue=16, text="a 65536^2 float32 image (16 GiB) filtered from a lazy dask array to the mean of the "
                        "output without running out of memory (in under 2 minutes)",
         group=_G["big"], impl="kernels", max_seconds=120.0),
    dict(issue=16, text="sweep of hypergrad 200x500 T=1000: 2 workers >= 1.7x the throughput of 1 worker",
         group=_G["sweep"], impl="alternating", ratio=("1 worker", "2 workers"), min_ratio=1.7),
    dict(issue=16, text="... 2 workers >= 0.85x the throughput of the same work run serially in-process per "
                        "worker core",
         group=_G["sweep"], impl="alternating", ratio=("serial, per core of 2", "2 workers"), min_ratio=0.85),
]


@pytest.fixture(scope="module")
def sizes(request):
    if request.config.getoption("benchmark_disable", False):
        return SMOKE
    return QUICK if QUICK_ENV else FULL


def _cluster(n_workers):
    """The cluster ``kd.sweep`` starts when given no client (its settings included), of
    ``n_workers`` workers."""
    from kernels.dask.sweeps import _start_local_cluster

    client, cluster = _start_local_cluster(n_workers)
    return cluster, client


@pytest.fixture(scope="module")
def client2():
    cluster, client = _cluster(2)
    yield client
    client.close()
    cluster.close()


class _MemorySampler:
    """The peak resident set each worker reaches above its level at start, sampled every 2 ms
    by a thread inside the worker (functions built here so they travel by value)."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        def start(dask_worker):
            import psutil

            proc = psutil.Process()
            state = {"base": proc.memory_info().rss, "peak": 0, "stop": False}

            def loop():
                while not state["stop"]:
                    state["peak"] = max(state["peak"], proc.memory_info().rss)
                    time.sleep(0.002)

            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            dask_worker._kernels_sampler = (state, thread)

        self.client.run(start)
        return self

    def __exit__(self, *exc):
        def stop(dask_worker):
            state, thread = dask_worker._kernels_sampler
            state["stop"] = True
            thread.join()
            return max(0, state["peak"] - state["base"])

        self.peaks = self.client.run(stop)

    @property
    def peak(self):
        return max(self.peaks.values())


def test_dask_correlate2d_vs_dask_image(benchmark, client2, sizes):
    ndf = pytest.importorskip("dask_image.ndfilters")
    n, c = sizes["image"], sizes["chunk"]
    w = np.random.default_rng(16).standard_normal((3, 3)).astype(np.float32)
    x = da.random.default_rng(16).random((n, n), dtype=np.float32, chunks=c).persist()
    distributed.wait(x)

    def naive(block):
        return kernels.correlate2d(block, w, padding="valid")

    calls = {
        "x.sum()": lambda: x.sum().compute(),
        "kernels": lambda: kd.correlate2d(x, w, padding="same").sum().compute(),
        "dask-image": lambda: ndf.correlate(x, w, mode="constant", cval=0.0).sum().compute(),
        "identity map_overlap": lambda: x.map_overlap(lambda b: b, depth=1, boundary=0).sum().compute(),
        "map_overlap(kernels)": lambda: x.map_overlap(naive, depth=1, boundary=0, trim=False, dtype=np.float32,
                                                      meta=np.empty((0, 0), np.float32)).sum().compute(),
    }
    # warm-up, untimed: compiled code loaded in the workers; the result across a chunk corner
    # bit-identical to the in-memory function on the same pixels
    for name, fn in calls.items():
        if name != "dask-image":
            fn()
    y = kd.correlate2d(x, w, padding="same")
    window = x[c - 6 : c + 6, c - 6 : c + 6].compute()
    assert y[c - 5 : c + 5, c - 5 : c + 5].compute().tobytes() == kernels.correlate2d(window, w).tobytes()
    benchmark.group = _groups(sizes)["image"]
    medians, counts = alternate(benchmark, calls, sizes["rounds"], {"dask-image": sizes["image_rounds_peer"]})
    with _MemorySampler(client2) as sampler:
        calls["kernels"]()
    medians["worker peak memory"] = float(sampler.peak)
    medians["chunk input+output"] = float(2 * c * c * 4)
    benchmark.extra_info.update(impl="alternating", medians_s=medians, samples=counts,
                                worker_peak_bytes=sampler.peaks, chunks=c, workers=2)


def test_dask_correlate2d_16gib_lazy_mean(benchmark, client2, sizes):
    n, c = sizes["big"], sizes["big_chunk"]
    w = np.full((3, 3), 1 / 9, dtype=np.float32)
    benchmark.group = _groups(sizes)["big"]

    def run():
        x = da.random.default_rng(65536).random((n, n), dtype=np.float32, chunks=c)
        return kd.correlate2d(x, w, padding="same").mean().compute()

    with _MemorySampler(client2) as sampler:
        mean = benchmark.pedantic(run, rounds=1, iterations=1)
    assert 0.4 < mean < 0.6  # uniform [0, 1) through an averaging filter (the border sees zeros)
    benchmark.extra_info.update(impl="kernels", worker_peak_bytes=sampler.peaks, image_bytes=n * n * 4,
                                chunk_bytes=c * c * 4, mean=float(mean))


# The context row "2 plain processes": the sweep's work split in two halves over a process pool
# with no engine at all (the data sent once, each process looping over its configurations), so
# the report shows what two processes can do on this machine before any scheduler overhead.
_PLAIN: dict = {}


def _plain_init(X, t, steps):
    import numba

    numba.set_num_threads(1)
    _PLAIN.update(X=X, t=t, steps=steps)


def _plain_run(pairs):
    for lr, l2 in pairs:
        kernels.hypergrad(_PLAIN["X"], _PLAIN["t"], lr=lr, l2=l2, steps=_PLAIN["steps"])
    return len(pairs)


def test_dask_sweep_hypergrad(benchmark, client2, sizes):
    import numba

    m, k, T = sizes["sweep"]
    rng = np.random.default_rng(2000)
    X = rng.standard_normal((m, k))
    t = X @ rng.standard_normal(k) / np.sqrt(k) + 0.1 * rng.standard_normal(m)
    lrs, l2s = np.geomspace(1e-4, 3e-3, 50), np.geomspace(1e-4, 1e-1, 40)
    configs = [dict(X=X, t=t, lr=float(lr), l2=float(l2), steps=T) for lr in lrs for l2 in l2s][: sizes["n2"]]
    benchmark.group = _groups(sizes)["sweep"]
    kd.sweep("hypergrad", configs[:4], client=client2)  # warm: compiled code loaded in the workers
    cluster1, client1 = _cluster(1) if sizes["n1"] else (None, None)
    stats = {}
    pairs = [(c["lr"], c["l2"]) for c in configs[: sizes["n1"]]]
    pool = None
    try:
        if client1 is not None:
            kd.sweep("hypergrad", configs[:2], client=client1)

        def serial():
            previous = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                for cfg in configs[: sizes["n_serial"]]:
                    kernels.hypergrad(**cfg)
            finally:
                numba.set_num_threads(previous)

        def one_worker():
            stats["1 worker"] = kd.sweep("hypergrad", configs[: sizes["n1"]], client=client1).stats

        def two_workers():
            results = kd.sweep("hypergrad", configs, client=client2)
            stats["2 workers"] = results.stats
            assert not any(isinstance(r, kd.SweepFailure) for r in results)

        if pairs:
            pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=_plain_init,
                                       initargs=(X, t, T))
            list(pool.map(_plain_run, [pairs[:1], pairs[1:2]]))  # start both, load the compiled code

        def two_plain_processes():
            stats["2 plain processes"] = timed(lambda: sum(pool.map(_plain_run, [pairs[0::2], pairs[1::2]])))

        serial()

        def one_round():
            stats["serial"] = timed(serial)
            if client1 is not None:
                one_worker()
            two_workers()
            if pairs:
                two_plain_processes()

        benchmark.pedantic(one_round, rounds=1, iterations=1)
    finally:
        if client1 is not None:
            client1.close()
            cluster1.close()
        if pool is not None:
            pool.shutdown()
    per_config = {"serial": stats["serial"] / sizes["n_serial"],
                  "2 workers": stats["2 workers"]["wall_s"] / len(configs)}
    if "1 worker" in stats:
        per_config["1 worker"] = stats["1 worker"]["wall_s"] / sizes["n1"]
    if "2 plain processes" in stats:
        per_config["2 plain processes"] = stats["2 plain processes"] / sizes["n1"]
    per_config["serial, per core of 2"] = per_config["serial"] / 2
    benchmark.extra_info.update(
        impl="alternating", medians_s=per_config, configs={"serial": sizes["n_serial"], "1 worker": sizes["n1"],
                                                           "2 plain processes": sizes["n1"],
                                                           "2 workers": len(configs)},
        batch={k: v["batch"] for k, v in stats.items() if isinstance(v, dict)},
        overhead_fraction={k: v["overhead_fraction"] for k, v in stats.items() if isinstance(v, dict)})
