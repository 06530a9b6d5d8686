"""The explicit-SIMD paths never touch memory outside their arrays (issue 7's promise, for the
code that ``NUMBA_BOUNDSCHECK`` cannot see).

:mod:`kernels._simd` reads and writes through raw pointers, so the bounds-checked fuzz run in
``test_limits`` says nothing about it. Here every array those paths read -- the caller's input,
the zero-padded copies and bands with their slack, ``grad_out`` -- and the ``out=`` they write is placed
flush against an inaccessible page (``mprotect(PROT_NONE)``), once ending right before one and
once starting right after one: a single element read or written past either end is a
segmentation fault. The geometries are the edge cases of each path (widths just under, at and
over a vector, one row, one output channel, leftover row groups, streaming forced on). It runs
in a subprocess so that a fault fails this test instead of killing the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect guard pages: Linux only")

SCRIPT = textwrap.dedent(
    r'''
    import ctypes, mmap, sys
    import numpy as np
    import kernels
    from kernels import naive
    from kernels.conv import geometry, tiles

    PAGE = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    KEEP = []

    def guarded(shape, dtype, side):
        """An uninitialised array whose bytes end right before (side='after') or start right
        after (side='before') a PROT_NONE page."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        data = -(-nbytes // PAGE) * PAGE
        m = mmap.mmap(-1, data + 2 * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        for guard in (base, base + PAGE + data):
            assert libc.mprotect(guard, PAGE, 0) == 0, ctypes.get_errno()
        KEEP.append(m)
        offset = PAGE + (data - nbytes if side == "after" else 0)
        return np.frombuffer(m, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)

    def like(a, side):
        g = guarded(a.shape, a.dtype, side)
        g[...] = a
        return g

    real_pad_flat = geometry._pad_flat

    def pad_flat(xc, pads, slack=0):
        flat, shape = real_pad_flat(xc, pads, slack)
        return like(flat, SIDE), shape

    # the padded copies (and their slack) get guard pages too: in every kernels.conv module
    # that calls _pad_flat
    users = [m for name, m in sorted(sys.modules.items())
             if name.startswith("kernels.conv.") and getattr(m, "_pad_flat", None) is real_pad_flat]
    assert {m.__name__ for m in users} >= {"kernels.conv.geometry", "kernels.conv.forward",
                                           "kernels.conv.backward"}, users
    for m in users:
        m._pad_flat = pad_flat

    # and the bands the strided many-channel forward copies, one task per image (each task's
    # band ends where the next begins: with one image, the guard page sits right after the only
    # band)
    from kernels.conv import forward
    forward._bands = lambda tasks, size, dtype: guarded((tasks * size,), dtype, SIDE)
    tiles._PHASE_BAND_TASKS_PER_THREAD = 0  # bands as large as the byte cap allows: one per image

    rng = np.random.default_rng(0)
    checked = 0
    for SIDE in ("after", "before"):
        for stream in (False, True):
            tiles._STREAM_MIN_BYTES = 0 if stream else 1 << 62
            for dtype in (np.float32, np.float64):
                # single channel: widths under, at and over a vector; one row; leftover row groups
                for H, W in ((1, 3), (3, 3), (5, 15), (7, 16), (6, 17), (9, 64), (11, 130), (4, 200)):
                    x = like(rng.standard_normal((H, W)).astype(dtype), SIDE)
                    w = rng.standard_normal((3, 3)).astype(dtype)
                    for padding in ("same", 0, "full", (2, 0)):
                        if padding == 0 and (H < 3 or W < 3):
                            continue
                        ref = naive.correlate2d(x, w, padding=padding)
                        out = guarded(ref.shape, dtype, SIDE)
                        kernels.correlate2d(x, w, padding=padding, out=out)
                        assert np.allclose(out, ref, rtol=1e-4, atol=1e-4), (H, W, padding)
                        checked += 1
                # many channels (register-blocked forward for any filter at stride 1, filter
                # gradient, grad_x)
                for xs, co in (((1, 1, 3, 3), 2), ((2, 3, 5, 17), 1), ((1, 5, 7, 16), 5), ((2, 4, 9, 33), 3)):
                    x = like(rng.standard_normal(xs).astype(dtype), SIDE)
                    for ks, kw in (((3, 3), dict(padding=1)), ((3, 3), dict(padding=0)), ((1, 1), dict(padding=0)),
                                   ((3, 2), dict(padding=(2, 1))), ((2, 3), dict(padding=2, dilation=(1, 2))),
                                   ((3, 3), dict(padding=1, stride=2)), ((1, 3), dict(padding=0, stride=(3, 1))),
                                   ((2, 2), dict(padding=1, stride=(1, 2)))):
                        w = rng.standard_normal((co, xs[1]) + ks).astype(dtype)
                        try:
                            ref = naive.correlate2d(x, w, **kw)
                        except ValueError:
                            continue  # the filter does not fit this input
                        out = guarded(ref.shape, dtype, SIDE)
                        kernels.correlate2d(x, w, out=out, **kw)
                        assert np.allclose(out, ref, rtol=1e-4, atol=1e-4), (xs, co, ks, kw)
                        g = like(rng.standard_normal(ref.shape).astype(dtype), SIDE)
                        got = kernels.correlate2d_backward(g, x, w, **kw)
                        want = naive.correlate2d_backward(g, x, w, **kw)
                        for a, b in zip(got, want):
                            assert np.allclose(a, b, rtol=1e-3, atol=1e-3), (xs, co, ks, kw)
                        checked += 2
    print("checked", checked)
    '''
)


def test_simd_paths_stay_inside_their_arrays():
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode} (-11 is a segmentation fault)\n{proc.stdout}\n{proc.stderr}"
    assert int(proc.stdout.split()[-1]) > 300  # every case ran
