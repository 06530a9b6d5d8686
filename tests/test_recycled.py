"""Large outputs in recycled buffers (kernels/_recycled.py): a buffer is handed on only when the
array and every view of it are gone, the free ones kept are bounded, and the public kernels'
outputs from 32 MiB on come from there without changing a bit; and a training loop whose arrays
are each small keeps them with malloc (keep_heap) instead of faulting them in every step."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import kernels
import kernels.naive
from kernels import _recycled as R


def test_recycled_buffers_are_reused_only_when_every_view_is_gone():
    R.clear()
    shape = (R.MIN_BYTES // 4 // 64, 64)
    a = R.empty(shape, np.float32)
    assert a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 64 == 0
    view = a[3:5]
    address = a.ctypes.data
    del a
    assert R.free_bytes() == 0  # a view keeps the buffer
    b = R.empty(shape, np.float32)
    assert b.ctypes.data != address and not np.shares_memory(b, view)
    del view
    assert R.free_bytes() == R.MIN_BYTES
    c = R.empty(shape, np.float32)  # the buffer let go of, already in memory
    assert c.ctypes.data == address and R.free_bytes() == 0
    assert R.empty((4, 4), np.float32).base is None  # small arrays: plain np.empty
    del b, c
    assert R.free_bytes() == 2 * R.MIN_BYTES
    R.clear()


def test_recycled_buffers_kept_are_bounded(monkeypatch):
    R.clear()
    monkeypatch.setattr(R, "KEEP_BYTES", 2 * R.MIN_BYTES)
    arrays = [R.empty(R.MIN_BYTES, np.uint8) for _ in range(5)]
    del arrays
    assert R.free_bytes() == 2 * R.MIN_BYTES
    R.clear()


def test_large_public_outputs_are_recycled_and_stay_their_own():
    """A 2048x2048 float64 'same' correlation (32 MiB, where glibc maps fresh pages every time):
    its output goes back to the free list when dropped and the next call writes into it; an
    output still held is never written again; every call gives the bits of out= and of the
    reference. Pooling and its backward pass take their outputs from the same list."""
    R.clear()
    rng = np.random.default_rng(0)
    img, k = rng.standard_normal((2048, 2048)), rng.standard_normal((3, 3))
    want = np.empty_like(img)
    kernels.correlate2d(img, k, padding="same", out=want)
    y1 = kernels.correlate2d(img, k, padding="same")
    assert np.array_equal(y1, want) and y1.base is not None and R.free_bytes() == 0
    address = y1.ctypes.data
    del y1
    assert R.free_bytes() == img.nbytes
    y2 = kernels.correlate2d(img, 2 * k, padding="same")  # into the buffer y1 let go of
    assert y2.ctypes.data == address and R.free_bytes() == 0
    y3 = kernels.correlate2d(img, k, padding="same")  # y2 is held: a buffer of its own
    assert not np.shares_memory(y2, y3) and np.array_equal(y3, want)
    assert np.array_equal(y2, kernels.correlate2d(img, 2 * k, padding="same", out=np.empty_like(img)))
    np.testing.assert_allclose(y3[1:39, 1:39], kernels.naive.correlate2d(img[:40, :40], k), rtol=1e-12, atol=1e-12)
    del y2, y3
    x = rng.standard_normal((1, 2, 2048, 2048))  # pooling: 64 MiB in, 16 MiB out (not recycled)
    y, idx = kernels.maxpool2d(x, 2, return_indices=True)
    assert y.base is None and np.array_equal(y, kernels.naive.maxpool2d(x, 2))
    g = kernels.maxpool2d_backward(np.ones_like(y), idx, x.shape)  # 64 MiB: recycled
    assert g.base is not None and g.sum() == y.size
    R.clear()


_STEPS_FAULTS = """
import resource
import numpy as np
from kernels import nn
model = nn.build("in28x28x1 conv5c6 relu pool2 conv5c16 relu pool2 fc120 relu fc84 relu fc10", seed=0)
trainer = nn.Trainer(model, "adam", lr=1e-3)
rng = np.random.default_rng(0)
x = rng.random((64, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 64)
for _ in range(3):
    trainer.step(x, y)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    trainer.step(x, y)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap trimming (Linux)")
def test_a_training_step_faults_no_pages_in_once_warm():
    """LeNet-5's training step at batch 64 allocates a few megabytes, none much over 1 MiB, and
    frees them at its end: glibc handed them back to the system and a fresh process faulted 819
    pages in again every step (3.3 MB). With malloc's threshold raised once
    (:func:`kernels._recycled.keep_heap`) a warm step faults in none of them (a margin of 40 a
    step for whatever else the interpreter does). A fresh process: the threshold is process state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _STEPS_FAULTS], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    faults = float(out.stdout.split()[-1])
    assert faults < 40, f"{faults} page faults per step"


def test_keep_heap_frees_its_block_and_only_grows(monkeypatch):
    monkeypatch.setattr(R, "_heap_kept", 0)
    R.keep_heap(1 << 20)
    assert R._heap_kept == 1 << 20
    R.keep_heap(1 << 10)  # smaller: nothing to do
    assert R._heap_kept == 1 << 20
    R.keep_heap(1 << 40)  # capped below glibc's largest sliding threshold, and never touched
    assert R._heap_kept == R.FRESH_PAGES_BYTES - (64 << 10)
