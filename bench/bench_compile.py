"""Compile time, measured on its own (the kernel benchmarks warm up so it never counts there).

For a representative public function of each family, a fresh Python process imports ``kernels``
and calls the function twice on a tiny float64 input:

- ``cold``: ``NUMBA_CACHE_DIR`` points at a new, empty directory, so the first call compiles;
- ``cached``: a second fresh process with the cache the cold run populated, so the first call
  only loads machine code from disk.

The timed quantity is the whole process (interpreter start, imports, both calls), which is what a
user waits for; ``extra_info`` carries the in-process parts (``import_s``, ``first_call_s``,
``second_call_s``) and Numba's cache hit and miss counts, which the test checks so a "cached"
figure cannot silently be a recompile. A family whose function does not exist yet is skipped
with a reason naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import pytest

QUICK = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# family -> (public function, its module, call on tiny float64 input)
FAMILIES = {
    "conv": ("correlate2d", "kernels.conv",
             "f(rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3)), padding=1)"),
    "pool": ("maxpool2d", "kernels.pool", "f(rng.standard_normal((2, 3, 8, 8)), 2)"),
    "optim": ("sgd", "kernels.optim",
              "f(rng.standard_normal((16, 4)), rng.standard_normal(16), lr=0.01, batch_size=4, steps=3)"),
    "hypergrad": ("hypergrad", "kernels.hypergrad",
                  "f(rng.standard_normal((8, 5)), rng.standard_normal(8), lr=0.01, steps=3, method='reverse')"),
}
COLD_ROUNDS = 1 if QUICK else 2
CACHED_ROUNDS = 1 if QUICK else 3

# Issue 12's cold-start bars. A "cold" figure is a whole fresh process (interpreter, imports, two
# calls) with an empty compile cache, "cached" the same with the cache the cold run left.
BARS: list = [
    dict(issue=12, text=f"empty cache: import plus the first {FAMILIES[f][0]} call <= 3 s",
         group=f"compile|{FAMILIES[f][0]} tiny|float64", impl="cold", max_seconds=3.0)
    for f in FAMILIES
] + [
    dict(issue=12, text="warm cache: import plus the first batched correlate2d <= 1.0 s",
         group="compile|correlate2d tiny|float64", impl="cached", max_seconds=1.0),
    dict(issue=12, text="warm cache: import plus the first batched correlate2d no slower than import torch plus "
                        "its first conv2d",
         group="compile|correlate2d tiny|float64", impl="cached", versus=("torch",), min_speedup=1.0),
    dict(issue=12, text="empty cache: python -m kernels hw2 <= 12 s",
         group="compile|python -m kernels hw2|float64", impl="cold", max_seconds=12.0),
]

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import numba
import kernels
t1 = time.perf_counter()
f = getattr(kernels, {name!r})
rng = np.random.default_rng(0)
t2 = time.perf_counter()
{call}
t3 = time.perf_counter()
{call}
t4 = time.perf_counter()
hits = misses = 0
seen = set()
for modname, mod in list(sys.modules.items()):  # the kernel may live in any kernels.* module
    if modname != "kernels" and not modname.startswith("kernels."):
        continue
    for obj in vars(mod).values():
        if isinstance(obj, numba.core.registry.CPUDispatcher) and id(obj) not in seen:
            seen.add(id(obj))
            hits += sum(obj.stats.cache_hits.values())
            misses += sum(obj.stats.cache_misses.values())
print("KERNELS_COMPILE_JSON " + json.dumps(dict(import_s=t1 - t0, first_call_s=t3 - t2,
      second_call_s=t4 - t3, cache_hits=hits, cache_misses=misses)))
"""


def _family_or_skip(family):
    name, module, call = FAMILIES[family]
    import kernels

    if not hasattr(kernels, name):
        pytest.skip(f"kernels.{name} does not exist yet: no {family} kernel to compile")
    return name, module, call


def _run_child(family, cache_dir, results):
    name, module, call = FAMILIES[family]
    code = _CHILD.format(name=name, module=module, call=call)
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, KERNELS_CACHE="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"compile child for kernels.{name} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("KERNELS_COMPILE_JSON ")][-1]
    results.append(json.loads(line.split(" ", 1)[1]))


def _group(family):
    # Set before `pedantic`: pytest-benchmark reads the group when the timing starts.
    return f"compile|{FAMILIES[family][0]} tiny|float64"


def _summarise(benchmark, family, phase, results):
    name = FAMILIES[family][0]
    benchmark.extra_info.update(
        impl=phase, family=family, function=name, rounds=len(results),
        **{k: statistics.median(r[k] for r in results)
           for k in ("import_s", "first_call_s", "second_call_s")},
        cache_hits=[r["cache_hits"] for r in results],
        cache_misses=[r["cache_misses"] for r in results],
    )


@pytest.fixture(scope="module")
def populated_caches():
    dirs: dict = {}
    yield dirs
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)


def _fresh_dir():
    return tempfile.mkdtemp(prefix="kernels-numba-cache-")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_compile_cold(benchmark, family, populated_caches):
    _family_or_skip(family)
    results: list = []
    made: list = []

    def setup():
        d = _fresh_dir()
        made.append(d)
        return (family, d, results), {}

    benchmark.group = _group(family)
    benchmark.pedantic(_run_child, setup=setup, rounds=COLD_ROUNDS, iterations=1)
    _summarise(benchmark, family, "cold", results)
    for d in made[:-1]:
        shutil.rmtree(d, ignore_errors=True)
    old = populated_caches.pop(family, None)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    populated_caches[family] = made[-1]  # the last cold run's cache feeds the cached runs
    assert all(r["cache_hits"] == 0 for r in results), f"cold run found a cache: {results}"
    assert all(r["cache_misses"] > 0 for r in results), f"cold run compiled nothing: {results}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_compile_cached(benchmark, family, populated_caches):
    _family_or_skip(family)
    if family not in populated_caches:  # run alone (-k): populate the cache first, untimed
        d = _fresh_dir()
        _run_child(family, d, [])
        populated_caches[family] = d
    results: list = []
    benchmark.group = _group(family)
    benchmark.pedantic(_run_child, args=(family, populated_caches[family], results),
                       rounds=CACHED_ROUNDS, iterations=1)
    _summarise(benchmark, family, "cached", results)
    assert all(r["cache_misses"] == 0 and r["cache_hits"] > 0 for r in results), (
        f"cached run recompiled instead of loading from {populated_caches[family]}: {results}")


_TORCH_CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import torch
t1 = time.perf_counter()
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)))
w = torch.from_numpy(rng.standard_normal((4, 3, 3, 3)))
t2 = time.perf_counter()
torch.nn.functional.conv2d(x, w, padding=1)
t3 = time.perf_counter()
torch.nn.functional.conv2d(x, w, padding=1)
t4 = time.perf_counter()
print("KERNELS_COMPILE_JSON " + json.dumps(dict(import_s=t1 - t0, first_call_s=t3 - t2, second_call_s=t4 - t3,
                                               cache_hits=0, cache_misses=0)))
"""


def test_compile_torch_reference(benchmark):
    """The reference for the warm-cache bar: a fresh process importing torch and calling its
    conv2d twice on the same tiny input (torch ships compiled code: nothing to cache)."""
    pytest.importorskip("torch")
    results: list = []

    def run():
        proc = subprocess.run([sys.executable, "-c", _TORCH_CHILD], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("KERNELS_COMPILE_JSON ")][-1]
        results.append(json.loads(line.split(" ", 1)[1]))

    benchmark.group = _group("conv")
    benchmark.pedantic(run, rounds=CACHED_ROUNDS, iterations=1)
    benchmark.extra_info.update(impl="torch", family="conv", function="torch.nn.functional.conv2d",
                                rounds=len(results),
                                **{k: statistics.median(r[k] for r in results)
                                   for k in ("import_s", "first_call_s", "second_call_s")})


@pytest.mark.parametrize("phase", ["cold", "cached", "cold-measuring"])
def test_compile_hw2_command(benchmark, phase, tmp_path, populated_caches):
    """``python -m kernels hw2`` in a fresh process, empty compile cache (``cold``) or the one
    the cold run left (``cached``): what a newcomer's first and second runs cost. Its output
    directory holds the committed ``results/memory.json``, as ``--out results`` (the default)
    does in a fresh clone, so section 2.1.2 quotes the memory study; ``cold-measuring`` (context,
    no bar) runs without it, and 2.1.2 measures (compiling every hypergradient method)."""
    # The smoke run (the test suite: timing disabled) only checks the command works, on small problems.
    quick = QUICK or benchmark.disabled
    measuring = phase == "cold-measuring"
    key = ("hw2", quick, measuring)
    if phase != "cached":
        shutil.rmtree(populated_caches.pop(key, ""), ignore_errors=True)
        populated_caches[key] = _fresh_dir()  # the cold run's cache feeds the cached run
    cache = populated_caches.get(key)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), KERNELS_CACHE="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / "out"
    out.mkdir()
    committed = os.path.join(ROOT, "results", "memory.json")
    if not measuring and os.path.exists(committed):
        shutil.copy(committed, out / "memory.json")
    cmd = [sys.executable, "-m", "kernels", "hw2", "--out", str(out)] + (["--quick"] if quick else [])
    if cache is None:  # the cached run alone (-k): populate, untimed
        cache = populated_caches[key] = _fresh_dir()
        env["NUMBA_CACHE_DIR"] = cache
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=True)

    def run():
        if phase != "cached":
            shutil.rmtree(cache, ignore_errors=True)
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]

    benchmark.group = "compile|python -m kernels hw2|float64"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(impl=phase, family="hw2", function="python -m kernels hw2")
