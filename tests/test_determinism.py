"""Determinism (issue 7): every kernel gives bit-identical results run to run, in fresh processes,
and across ``NUMBA_NUM_THREADS=1`` and ``2``; seeded mini-batch runs reproduce across processes.

The oracle is :func:`kernels.apps.reliability.fingerprints`: the SHA-256 of every output's exact
bytes (floats as hex) for every public function on seeded inputs sized to span several
parallel tiles and reduction blocks (e.g. 1100 rows = 5 blocks of ``REDUCTION_BLOCK``), so a
partition that followed the thread count, or a reduction combined in completion order, would
change a hash. ``python -m kernels reliability`` reports the same comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels.apps import reliability as R


@pytest.fixture(scope="module")
def here():
    return R.fingerprints()


def test_fingerprints_cover_every_public_function(here):
    covered = {k.split("[")[0] for k in here}
    public = {"correlate2d", "convolve2d", "correlate2d_backward", "maxpool2d", "maxpool2d_backward", "loss", "grad",
              "min_norm_solution", "gd", "sgd", "rmsprop", "adagrad", "adam", "hypergrad", "optimal_lr_one_step",
              "tune_lr", "unroll_graph", "arch.analyze", "arch.to_dense"}
    assert public <= covered
    assert {"hypergrad[reverse]", "hypergrad[checkpoint]", "hypergrad[forward]", "hypergrad[exact]"} <= set(here)


def test_digest_sees_one_ulp_and_the_dtype():
    x = np.linspace(0.0, 1.0, 7)
    y = x.copy()
    y[3] = np.nextafter(y[3], 2.0)
    assert R.digest(x) != R.digest(y)
    assert R.digest(x) != R.digest(x.astype(np.float32).astype(np.float64)) or np.array_equal(x, x.astype(np.float32))
    assert R.digest(x) != R.digest(x.reshape(1, 7))
    assert R.digest(1.0) != R.digest(np.nextafter(1.0, 2.0))


def test_every_kernel_is_bit_identical_run_to_run(here):
    again = R.fingerprints()
    assert [k for k in here if again[k] != here[k]] == []


@pytest.mark.parametrize("threads", [1, 2])
def test_every_kernel_is_bit_identical_across_thread_counts(here, threads):
    """A fresh process with NUMBA_NUM_THREADS=threads against this process (default threads)."""
    other = R.fingerprints_in_subprocess(NUMBA_NUM_THREADS=threads)
    assert other.keys() == here.keys()
    assert [k for k in here if other[k] != here[k]] == []


def test_seeded_minibatch_runs_reproduce_across_processes(here):
    names = ["sgd", "rmsprop", "adam"]
    first = R.fingerprints_in_subprocess(names)
    second = R.fingerprints_in_subprocess(names)
    assert first == second == {k: here[k] for k in names}


def test_the_seed_matters():
    """Reproducible is not constant: another seed draws other batches."""
    rng = np.random.default_rng(0)
    X, t = rng.standard_normal((50, 4)), rng.standard_normal(50)
    a = kernels.sgd(X, t, lr=0.05, batch_size=5, steps=30, seed=1)
    b = kernels.sgd(X, t, lr=0.05, batch_size=5, steps=30, seed=2)
    c = kernels.sgd(X, t, lr=0.05, batch_size=5, steps=30, seed=1)
    assert not np.array_equal(a.w, b.w)
    assert np.array_equal(a.w, c.w)
