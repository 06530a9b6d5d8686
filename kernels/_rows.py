"""The row sweep: the fused pass over the rows of ``X`` that every linear-regression kernel is
made of.

For each row ``x_i`` of ``X`` (loaded from memory once, and used again while it is in cache):

* the *residual half* (``w`` given): ``r_i = x_i . w - t_i``, the sum of ``r_i^2`` (the loss)
  and ``acc += c_i x_i`` with ``c_i = coef r_i`` (the gradient ``X^T (X w - t)``, scaled);
* the *Hessian half* (``v`` given): ``p_i = x_i . v`` into ``s[i]`` and ``h += p_i x_i`` (the
  Hessian-vector product ``X^T X v``).

Either half or both run in one sweep: :mod:`kernels.optim` uses the residual half (a gradient
or a loss per step), :mod:`kernels.hypergrad` all three forms (the gradient of a forward step,
the Hessian-vector product of a reverse step, and both at once for a tangent or for a reverse
step overlapped with a recomputed forward step).

The optional parts are arguments that are an array or ``None`` (``rows``, ``w``, ``v``,
``acc``, ``coef``): Numba compiles one specialisation per combination, with the ``None``
branches pruned before typing, so a gradient pass carries no trace of the Hessian half and
costs nothing for it. The groups are register blocking: the rows of a group share each load of
``w`` (and ``v``) in the dot products and update ``acc`` (and ``h``) in one read-modify-write,
and both inner loops run over contiguous ``d`` and vectorise. The residual half alone (a
gradient, the optimizers' and the stochastic unrollers' case) takes eight rows per group
(:func:`_residual_sweep8`, about 10% faster than four on (4000, 2000)); every other form takes
four (:func:`_sweep`: the hypergradients, whose fused sweep keeps eight dot products in
registers). The grouping and where ``coef`` applies (after the sum for the
optimizers, ``c_i = (2/n) r_i`` inside for the hypergradients) fix the order of the
floating-point sums: each kernel's result depends on the data and on nothing else.

Blocks (the optimizers' determinism): a pass over many rows is cut into blocks of
``REDUCTION_BLOCK`` rows, each summed into its own buffer (:func:`gradient_block`,
:func:`loss_block`), and the buffers are added in block order (:func:`reduce_gradient_blocks`,
:func:`sum_blocks`); :func:`serial_gradient_blocks` and :func:`serial_loss_blocks` run the
blocks one after the other. The ``prange`` over blocks lives in the callers' top-level kernels:
a cached caller of a parallel callee segfaults when loaded from the cache (numba issue #8578).

The small functions here are inlined by Numba into their callers (``inline="always"``): left to
LLVM, a call into another module was not always inlined, and a call per step or per sweep cost
up to 40% on small problems. They are kept small and free of branches on ``None`` for the
same reason that a loss block and a gradient block are two functions: Numba's inliner copies
a callee's IR block by block, each copy taking the callee's whole variable scope with it, so
inlining costs about (blocks x variables) of the callee, and one generic helper holding both
kinds of block cost 0.7 s of a first ``sgd``'s compile where the two small ones cost 0.05 s.
"""

from __future__ import annotations

import numpy as np

from ._config import REDUCTION_BLOCK, jit
from ._simd.vectors import prefetch


def _sweep(X, t, w, v, rows, start, end, acc, s, h, coef):  # pragma: no cover - compiled
    """One pass over batch rows ``start <= ii < end`` in groups of four rows; batch row ``ii``
    is ``X[rows[ii]]``, or ``X[ii]`` when ``rows`` is None or empty. Returns ``sum r_i^2`` (0
    without the residual half).

    Residual half, when ``w`` is an array: ``r_i = x_i . w - t_i``, and ``acc += c_i x_i``
    with ``c_i = coef r_i`` (``r_i`` when ``coef`` is None); ``acc`` None: the sum of squares
    only (a loss pass). Hessian half, when ``v`` is an array: ``s[ii] = x_i . v`` and
    ``h += s[ii] x_i``. Accumulates into ``acc`` and ``h`` (see :func:`zero`). All sums in
    float64 whatever the dtype of ``X``.
    """
    d = X.shape[1]
    indexed = rows is not None and rows.shape[0] > 0
    ss = 0.0
    split = end - (end - start) % 4  # whole groups up to here, then one row at a time
    for ii in range(start, split, 4):
        if rows is not None and indexed:
            i0, i1, i2, i3 = rows[ii], rows[ii + 1], rows[ii + 2], rows[ii + 3]
        else:
            i0, i1, i2, i3 = ii, ii + 1, ii + 2, ii + 3
        x0, x1, x2, x3 = X[i0], X[i1], X[i2], X[i3]
        a0 = a1 = a2 = a3 = 0.0
        p0 = p1 = p2 = p3 = 0.0
        for j in range(d):
            if w is not None:
                wj = w[j]
                a0 += x0[j] * wj
                a1 += x1[j] * wj
                a2 += x2[j] * wj
                a3 += x3[j] * wj
            if v is not None:
                vj = v[j]
                p0 += x0[j] * vj
                p1 += x1[j] * vj
                p2 += x2[j] * vj
                p3 += x3[j] * vj
        if w is not None:
            r0, r1, r2, r3 = a0 - t[i0], a1 - t[i1], a2 - t[i2], a3 - t[i3]
            ss += r0 * r0
            ss += r1 * r1
            ss += r2 * r2
            ss += r3 * r3
            if coef is not None:
                r0, r1, r2, r3 = coef * r0, coef * r1, coef * r2, coef * r3
        if v is not None:
            s[ii], s[ii + 1], s[ii + 2], s[ii + 3] = p0, p1, p2, p3
        if acc is not None or v is not None:
            for j in range(d):
                # each x_i[j] loaded once for both halves (a store to acc could alias a reload)
                y0, y1, y2, y3 = x0[j], x1[j], x2[j], x3[j]
                if acc is not None:
                    acc[j] = acc[j] + (r0 * y0 + r1 * y1 + r2 * y2 + r3 * y3)
                if v is not None:
                    h[j] += p0 * y0 + p1 * y1 + p2 * y2 + p3 * y3
    return ss + _rows_one_by_one(X, t, w, v, rows, split, end, acc, s, h, coef)


@jit(inline="always")
def _rows_one_by_one(X, t, w, v, rows, start, end, acc, s, h, coef):  # pragma: no cover - compiled
    """The rows after the last whole group of a sweep, one at a time (the same halves)."""
    d = X.shape[1]
    indexed = rows is not None and rows.shape[0] > 0
    ss = 0.0
    for ii in range(start, end):
        i = ii
        if rows is not None and indexed:
            i = rows[ii]
        xi = X[i]
        a = 0.0
        p = 0.0
        for j in range(d):
            if w is not None:
                a += xi[j] * w[j]
            if v is not None:
                p += xi[j] * v[j]
        r = 0.0
        if w is not None:
            r = a - t[i]
            ss += r * r
            if coef is not None:
                r = coef * r
        if v is not None:
            s[ii] = p
        if acc is not None or v is not None:
            for j in range(d):
                y = xi[j]
                if acc is not None:
                    acc[j] += r * y
                if v is not None:
                    h[j] += p * y
    return ss


def _residual_sweep8(X, t, w, rows, start, end, acc, coef):  # pragma: no cover - compiled
    """The residual half of :func:`_sweep` (``w`` and ``acc`` given) in groups of eight rows.

    Two loops over ``j`` per group: the eight dot products (``w`` loaded once for the eight
    rows), then ``acc += sum c_i x_i`` (one read-modify-write of ``acc`` for the eight rows,
    whose loads hit the cache the first loop filled). A software-pipelined form, which formed
    the next group's dot products in the loop that updates ``acc`` with this group's rows,
    was faster on the 2-core Intel Xeon the project first ran on (one pass over (4000, 2000)
    float64 on one thread: 2.71 ms against 3.45) and slower on the 2-core Zen 5 EPYC it runs
    on now, alternating with NumPy's ``grad`` in one process: 1.61 ms against 1.24 on two
    threads, 2.55 against 2.09 on one, and 20-25% slower on (20000, 100), (4000, 500) and
    (1000, 100) too (its eight extra row streams and the loop's register pressure). The plain
    form also compiles in 0.5 s against 0.8 on a cold first call.

    Written out without helper functions: Numba's inliner would multiply the compile time
    (2.6 s against 0.9 for this function alone, cold).
    """
    d = X.shape[1]
    ss = 0.0
    split = end - (end - start) % 8
    indexed = rows is not None and rows.shape[0] > 0
    c = 1.0 if coef is None else coef
    for ii in range(start, split, 8):
        if indexed:
            i0, i1, i2, i3, i4, i5, i6, i7 = (rows[ii], rows[ii + 1], rows[ii + 2], rows[ii + 3], rows[ii + 4],
                                              rows[ii + 5], rows[ii + 6], rows[ii + 7])
        else:
            i0, i1, i2, i3, i4, i5, i6, i7 = ii, ii + 1, ii + 2, ii + 3, ii + 4, ii + 5, ii + 6, ii + 7
        x0, x1, x2, x3, x4, x5, x6, x7 = X[i0], X[i1], X[i2], X[i3], X[i4], X[i5], X[i6], X[i7]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        for j in range(d):
            wj = w[j]
            a0 += x0[j] * wj
            a1 += x1[j] * wj
            a2 += x2[j] * wj
            a3 += x3[j] * wj
            a4 += x4[j] * wj
            a5 += x5[j] * wj
            a6 += x6[j] * wj
            a7 += x7[j] * wj
        r0, r1, r2, r3 = a0 - t[i0], a1 - t[i1], a2 - t[i2], a3 - t[i3]
        r4, r5, r6, r7 = a4 - t[i4], a5 - t[i5], a6 - t[i6], a7 - t[i7]
        ss += r0 * r0
        ss += r1 * r1
        ss += r2 * r2
        ss += r3 * r3
        ss += r4 * r4
        ss += r5 * r5
        ss += r6 * r6
        ss += r7 * r7
        if coef is not None:
            r0, r1, r2, r3, r4, r5, r6, r7 = c * r0, c * r1, c * r2, c * r3, c * r4, c * r5, c * r6, c * r7
        for j in range(d):
            acc[j] = acc[j] + (r0 * x0[j] + r1 * x1[j] + r2 * x2[j] + r3 * x3[j] + r4 * x4[j] + r5 * x5[j] +
                               r6 * x6[j] + r7 * x7[j])
    return ss + _rows_one_by_one(X, t, w, None, rows, split, end, acc, None, None, coef)


#: The sweep, compiled on its own, once per combination of its optional parts: what the
#: optimizers' blocks call (Numba cannot inline a function into a ``prange`` body), and what the
#: hypergradients' small sweep helpers call. Inlined by Numba into each of those callers instead,
#: its IR (the largest here) cost 0.4 s of compile time per caller, more than compiling it once.
#: A sweep is at least a few rows of work, so the call is cheap. Only compiled code calls it, so
#: it is built without the wrappers that let Python call a kernel (less to compile).
sweep = jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)(_sweep)
#: :func:`_residual_sweep8` compiled the same way: the optimizers' gradient blocks and the
#: stochastic unrollers' batch gradients.
residual_sweep8 = jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)(_residual_sweep8)


@jit(inline="always")
def zero(acc, h):  # pragma: no cover - compiled
    """Zero the accumulators given (each an array or None) before a pass on its own."""
    if acc is not None:
        for j in range(acc.shape[0]):
            acc[j] = 0.0
    if h is not None:
        for j in range(h.shape[0]):
            h[j] = 0.0


@jit(inline="always")
def copy(dst, src):  # pragma: no cover - compiled
    """``dst[:] = src`` for two 1-D arrays of one length, as a loop. A slice assignment between
    arrays would compile Numba's shape-mismatch message with it (its string formatting: about
    2 s of a cold process's first call) for a check the callers' shapes already make."""
    for j in range(src.shape[0]):
        dst[j] = src[j]


@jit(inline="always")
def loss_block(X, t, w, rows, start, end):  # pragma: no cover - compiled
    """``sum r_i^2`` over batch rows ``start:end`` (``X[rows[ii]]``, or ``X[ii]`` when ``rows``
    is None or empty), one row at a time: the block of a loss pass.
    Each dot product is its own vectorised loop; the eight-row groups of :func:`_sweep` pay for
    themselves only where they also save the read-modify-writes of ``acc``, and without them
    LLVM combined the eight sums across rows into gathers (a pass over (20000, 100) took 1.7 ms
    that way, 0.3 ms this way)."""
    d = X.shape[1]
    indexed = rows is not None and rows.shape[0] > 0
    ss = 0.0
    for ii in range(start, end):
        i = ii
        if rows is not None and indexed:
            i = rows[ii]
        xi = X[i]
        a = 0.0
        for j in range(d):
            a += xi[j] * w[j]
        r = a - t[i]
        ss += r * r
    return ss


@jit(inline="always")
def gradient_block(X, t, w, rows, start, end, acc):  # pragma: no cover - compiled
    """The block of a gradient pass: ``acc = sum r_i x_i`` over batch rows ``start:end``,
    eight rows per group; returns ``sum r_i^2``."""
    zero(acc, None)
    return residual_sweep8(X, t, w, rows, start, end, acc, None)


@jit(inline="always")
def reduce_gradient_blocks(part, spart, nblk, g):  # pragma: no cover - compiled
    """Sum the per-block results in block order: ``g = sum_b part[b]``; returns ``sum_b
    spart[b]``. The order is fixed by the blocks, not by the threads, so the result is
    bit-identical for any ``NUMBA_NUM_THREADS``."""
    d = g.shape[0]
    for j in range(d):
        g[j] = 0.0
    ss = 0.0
    for b in range(nblk):
        ss += spart[b]
        pb = part[b]
        for j in range(d):
            g[j] += pb[j]
    return ss


@jit(inline="always")
def sum_blocks(spart, nblk):  # pragma: no cover - compiled
    """``sum_b spart[b]`` in block order (the loss pass's :func:`reduce_gradient_blocks`)."""
    ss = 0.0
    for b in range(nblk):
        ss += spart[b]
    return ss


@jit(inline="always")
def serial_gradient_blocks(X, t, w, rows, start, end, g, part, spart):  # pragma: no cover - compiled
    """The blocks of a gradient pass over batch rows ``start:end`` one after the other on this
    thread, into ``part``/``spart``, reduced into ``g`` by :func:`reduce_gradient_blocks`;
    returns the sum of squares: the very arithmetic of the parallel path, so both give the same
    bits."""
    B = REDUCTION_BLOCK
    nblk = (end - start + B - 1) // B
    for b in range(nblk):
        lo = start + b * B
        spart[b] = gradient_block(X, t, w, rows, lo, min(lo + B, end), part[b])
    return reduce_gradient_blocks(part, spart, nblk, g)


@jit(inline="always")
def serial_loss_blocks(X, t, w, rows, start, end, spart):  # pragma: no cover - compiled
    """:func:`serial_gradient_blocks` for a loss pass: the sum of squares only."""
    B = REDUCTION_BLOCK
    nblk = (end - start + B - 1) // B
    for b in range(nblk):
        lo = start + b * B
        spart[b] = loss_block(X, t, w, rows, lo, min(lo + B, end))
    return sum_blocks(spart, nblk)


@jit(inline="always")
def prefetch_rows(X, rows, start, end):  # pragma: no cover - compiled
    """Hint every cache line of batch rows ``start:end`` (``X[rows[ii]]``) into the L2 without
    waiting for them (:func:`kernels._simd.vectors.prefetch`). Issued for the next mini-batch
    before a step's pass, its random rows arrive while this one computes: a step of 32 rows
    otherwise waits on memory for most of its time, the rows one after the other."""
    d = X.shape[1]
    line = max(1, 64 // X.itemsize)
    for ii in range(start, end):
        i = rows[ii]
        for j in range(0, d, line):
            prefetch(X, i, j)
        prefetch(X, i, d - 1)  # a row need not start on a line: its last line too


@jit(inline="always")
def sumsq(w):  # pragma: no cover - compiled
    """``||w||^2`` in float64."""
    s = 0.0
    for j in range(w.shape[0]):
        s += w[j] * w[j]
    return s


@jit(inline="always")
def no_rows():  # pragma: no cover - compiled
    """The empty row index: a sweep over consecutive rows."""
    return np.empty(0, dtype=np.int64)
