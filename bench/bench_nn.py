"""Training a CNN end to end, kernels.nn against PyTorch eager on the same network (issue 14).

Every comparison times the two implementations *alternating in one loop* (one call of each per
round, the order rotating), so both figures come from the same minutes of this noisy machine;
the medians go to ``extra_info["medians_s"]`` and the bars compare them (``ratio=("torch",
"kernels")``: the speed-up of kernels). The time comparisons run in a child process that
imports PyTorch before kernels, so that PyTorch runs with the OpenMP settings it starts with
itself (see ``_TORCH_FIRST``).

* ``nn step|NET bB|float32``: one training step (forward, backward, Adam update) on one batch
  of ``B`` images: ``nn.Trainer(model, "adam").step(x, y)`` (input checks included) against
  ``opt.zero_grad(); F.cross_entropy(net(x), y).backward(); opt.step()`` on the twin
  ``torch.nn.Sequential`` (``kernels.apps.train.peer``), same initial weights, with
  ``torch.optim.Adam`` twice: its default for-loop implementation (``torch for-loop``) and
  ``fused=True`` (``torch fused``: 10-40% faster a step here, what a user after speed writes).
  The bars read ``torch``, the faster of the two medians in that run.
  Networks: LeNet-5 on 28x28 and the homework's 32x32x1 network (question 3.2 as written, plus
  an ``fc10`` classifier), at batch 64 and batch 1 (the per-call overhead case).
* ``nn epoch|digits ...|float32``: one epoch of the issue's network on the 1,437 training digits
  (scikit-learn's bundled ``load_digits``), batch 64: ``nn.fit(..., epochs=1)`` against the PyTorch
  loop over the same permutation (both Adam implementations, as above).
* ``nn step memory|NET bB|float32``: the peak memory a training step adds, measured in a fresh
  process per implementation (``VmHWM`` after ``/proc/self/clear_refs``, minus the resident size
  before the steps, with glibc's mmap threshold fixed at 64 KiB so that freed buffers leave the
  resident set, and the buffers kernels keeps from step to step let go of first, so that the
  peak counts them; PyTorch with either Adam, ``torch`` the smaller): ``extra_info["peak_bytes"]``;
  ``medians_s`` carries the same figures in MiB
  (not seconds) so that the ratio bar can read them. The untimed smoke run measures kernels only.

``KERNELS_BENCH_QUICK=1`` runs 3 rounds instead of 30 (same groups: the figures are rough).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from alternating import alternate, record
from kernels import nn

QUICK = os.environ.get("KERNELS_BENCH_QUICK", "") not in ("", "0")
ROUNDS = 3 if QUICK else 30

NETS = {
    "lenet5": "in28x28x1 conv5c6 relu pool2 conv5c16 relu pool2 fc120 relu fc84 relu fc10",
    "hw32": "in32x32x1 conv3 pool2 conv3 pool2 conv3 pool2 fc10",  # question 3.2's network + a classifier
}
DIGITS = "in8x8x1 conv3c16 relu pool2 conv3c32 relu pool2 fc10"
LR = 1e-3
#: PyTorch's Adam implementations compared (name -> torch_optimizer's ``fused``)
TORCH_ADAMS = {"torch for-loop": False, "torch fused": True}

BARS = []
for _net, _name in (("lenet5", "LeNet-5"), ("hw32", "the homework's 32x32x1 network")):
    BARS += [
        dict(issue=14, text=f"one training step of {_name}, float32, batch 64: >= 1.5x faster than PyTorch eager "
                            "+ torch.optim, the faster of its fused and for-loop Adam (alternating)",
             group=f"nn step|{_net} b64|float32", impl="alternating", ratio=("torch", "kernels"), min_ratio=1.5),
        dict(issue=14, text=f"one training step of {_name}, float32, batch 1: >= 3x faster than PyTorch eager "
                            "+ torch.optim, the faster of its fused and for-loop Adam (alternating)",
             group=f"nn step|{_net} b1|float32", impl="alternating", ratio=("torch", "kernels"), min_ratio=3.0),
        dict(issue=14, text=f"peak memory of a training step of {_name}, float32, batch 64: no more than "
                            "PyTorch's",
             group=f"nn step memory|{_net} b64|float32", impl="alternating", ratio=("torch", "kernels"),
             min_ratio=1.0, unit="MiB"),
    ]
BARS.append(dict(issue=14, text="one epoch of the digits network on the digits, float32, batch 64: >= 2x faster "
                                "than PyTorch (alternating)",
                 group="nn epoch|digits 1437x8x8 b64|float32", impl="alternating", ratio=("torch", "kernels"),
                 min_ratio=2.0))


def _with_torch_best(figures: dict) -> dict:
    """``figures`` plus ``torch``: the smallest of its PyTorch entries (time or memory)."""
    torch_figures = [figures[name] for name in TORCH_ADAMS if name in figures]
    return dict(figures, torch=min(torch_figures)) if torch_figures else dict(figures)


def _torch_twins(model):
    """Per entry of :data:`TORCH_ADAMS`: the model's PyTorch twin (same weights) and its Adam."""
    from kernels.apps.train.peer import torch_optimizer, torch_sequential

    twins = {name: torch_sequential(model) for name in TORCH_ADAMS}
    return twins, {name: torch_optimizer("adam", twins[name].parameters(), lr=LR, fused=fused)
                   for name, fused in TORCH_ADAMS.items()}


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is the peer of every nn benchmark")


class _Rounds:
    """The part of pytest-benchmark's fixture :func:`alternating.alternate` uses, for the child
    process: ``pedantic`` runs the rounds untimed (each call is timed inside them)."""

    @staticmethod
    def pedantic(fn, rounds, iterations=1):
        for _ in range(rounds * iterations):
            fn()


def train_step_rounds(net, batch, rounds):
    """The alternating rounds of one training step of ``NETS[net]`` (kernels.nn and both PyTorch
    Adams); returns ``(medians, counts)``. Run in a child process (:func:`_torch_first`)."""
    import torch
    from kernels.apps.train.peer import torch_step

    model = nn.build(NETS[net], seed=0, dtype="float32")
    trainer = nn.Trainer(model, "adam", lr=LR)
    twins, opts = _torch_twins(model)
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + model.input_shape, dtype=np.float32)
    y = rng.integers(0, model.classes, batch)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    # the same loss at the same weights (the first step of each)
    first = trainer.step(x, y)
    for name in TORCH_ADAMS:
        theirs = torch_step(twins[name], opts[name], xt, yt).item()
        assert abs(first - theirs) <= 1e-4 * abs(theirs), (name, first, theirs)
    calls = {"kernels": lambda: trainer.step(x, y)}
    calls.update({name: (lambda n=name: torch_step(twins[n], opts[n], xt, yt)) for name in TORCH_ADAMS})
    return alternate(_Rounds, calls, rounds)


def digits_epoch_rounds(rounds):
    """The alternating rounds of one epoch of the digits network; ``(medians, counts)``."""
    import torch
    from kernels.apps.train.data import digits_split
    from kernels.apps.train.peer import torch_epoch

    X, y, _, _ = digits_split(seed=0, size=8, dtype="float32")
    model = nn.build(DIGITS, seed=0, dtype="float32")
    twins, opts = _torch_twins(model)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    seeds = iter(range(10**6))
    torch_rngs = {name: np.random.default_rng(0) for name in TORCH_ADAMS}
    calls = {"kernels": lambda: nn.fit(model, X, y, "adam", lr=LR, epochs=1, batch_size=64, seed=next(seeds),
                                       progress=False)}
    calls.update({name: (lambda n=name: torch_epoch(twins[n], opts[n], Xt, yt, batch_size=64, rng=torch_rngs[n]))
                  for name in TORCH_ADAMS})
    return alternate(_Rounds, calls, rounds)


# PyTorch and Numba share one OpenMP runtime per process, started by whichever loads it first;
# started by kernels it slows PyTorch's small parallel operations (kernels/_threads.py says how
# much and why). The comparisons run in a child process that imports PyTorch first, as a PyTorch
# program does: PyTorch at its own settings, kernels.nn with them.
_TORCH_FIRST = textwrap.dedent("""
    import torch  # first: the OpenMP runtime starts with PyTorch's settings
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import bench_nn
    print(json.dumps(getattr(bench_nn, sys.argv[2])(*json.loads(sys.argv[3]))))
""")


def _torch_first(benchmark, fn_name, args, group):
    """Run ``bench_nn.<fn_name>(*args)`` in a fresh process that imports PyTorch first, timed as
    one round; record its medians."""
    benchmark.group = group
    found = {}

    def run():
        proc = subprocess.run([sys.executable, "-c", _TORCH_FIRST, os.path.dirname(os.path.abspath(__file__)), fn_name,
                               json.dumps(args)], capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError(f"{fn_name}{tuple(args)} failed in its child process:\n{proc.stderr[-3000:]}")
        found["medians"], found["counts"] = json.loads(proc.stdout.strip().splitlines()[-1])

    benchmark.pedantic(run, rounds=1, iterations=1)
    record(benchmark, _with_torch_best(found["medians"]), found["counts"])
    benchmark.extra_info["torch_imported_first"] = True


@pytest.mark.parametrize("batch", [64, 1])
@pytest.mark.parametrize("net", sorted(NETS))
def test_train_step(benchmark, net, batch):
    _torch()
    rounds = 1 if benchmark.disabled else ROUNDS  # the untimed smoke run: one round
    _torch_first(benchmark, "train_step_rounds", [net, batch, rounds], f"nn step|{net} b{batch}|float32")
    benchmark.extra_info["spec"] = NETS[net]


def test_digits_epoch(benchmark):
    _torch()
    pytest.importorskip("sklearn")
    from kernels.apps.train.data import digits_split

    rows = digits_split(seed=0, size=8, dtype="float32")[0].shape[0]
    rounds = 1 if benchmark.disabled else max(3, ROUNDS // 3)
    _torch_first(benchmark, "digits_epoch_rounds", [rounds], f"nn epoch|digits {rows}x8x8 b64|float32")
    benchmark.extra_info["spec"] = DIGITS


_MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    impl, spec, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    from kernels import nn
    model = nn.build(spec, seed=0, dtype="float32")
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + model.input_shape, dtype=np.float32)
    y = rng.integers(0, model.classes, batch)
    if impl.startswith("torch"):
        import torch
        torch.set_num_threads({threads})
        from kernels.apps.train.peer import torch_optimizer, torch_sequential, torch_step
        net = torch_sequential(model)
        opt = torch_optimizer("adam", net.parameters(), lr=1e-3, fused=impl == "torch fused")
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        step = lambda: torch_step(net, opt, xt, yt)
    else:
        trainer = nn.Trainer(model, "adam", lr=1e-3)
        step = lambda: trainer.step(x, y)
    step(); step()  # warm: compiled code, thread pools, optimizer state
    # the buffers kernels keeps between steps (kernels._recycled) are memory the step needs:
    # let go of them so that the step's peak counts them again
    from kernels import _recycled
    _recycled.clear()

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) * 1024 for l in fh if l.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak resident size to the current one
    base = status("VmRSS")
    for _ in range(steps):
        step()
    print(json.dumps(dict(peak=status("VmHWM") - base, base=base)))
""")


def _peak_bytes(impls, spec, batch, steps):
    """``{impl: {"peak": bytes, "base": bytes}}``, one fresh process per implementation (run side
    by side: each measures only itself)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    code = _MEMORY_PROBE.replace("{threads}", str(torch_threads()))
    procs = {impl: subprocess.Popen([sys.executable, "-c", code, impl, spec, str(batch), str(steps)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for impl in impls}
    found = {}
    for impl, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe for {impl} failed:\n{err[-2000:]}")
        found[impl] = json.loads(out.strip().splitlines()[-1])
    return found


def torch_threads():
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
@pytest.mark.parametrize("net", sorted(NETS))
def test_train_step_peak_memory(benchmark, net):
    _torch()
    steps = 2 if QUICK else 5
    benchmark.group = f"nn step memory|{net} b64|float32"
    found = {}

    # the untimed smoke run (--benchmark-disable) only checks that the probe works
    impls = ("kernels",) if benchmark.disabled else ("kernels", *TORCH_ADAMS)

    def measure():
        found.update(_peak_bytes(impls, NETS[net], 64, 1 if benchmark.disabled else steps))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["impl"] = "alternating"
    benchmark.extra_info["peak_bytes"] = {k: v["peak"] for k, v in found.items()}
    benchmark.extra_info["resident_before_bytes"] = {k: v["base"] for k, v in found.items()}
    # MiB, not seconds: the ratio bar reads medians_s (at least 1 page, so the ratio is defined)
    mib = {k: max(v["peak"], 4096) / 2**20 for k, v in found.items()}
    benchmark.extra_info["medians_s"] = _with_torch_best(mib)
    benchmark.extra_info["spec"] = NETS[net]
