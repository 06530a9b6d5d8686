"""Chunked filtering over dask arrays: :func:`correlate2d`, :func:`convolve2d`, :func:`maxpool2d`
(re-exported by :mod:`kernels.dask`).

Every argument means what it means for :func:`kernels.correlate2d` (and :func:`kernels.maxpool2d`),
and the result is bit-identical to the in-memory function on the whole array, for every chunking:
each output pixel is computed by the same compiled code from the same inputs in the same order.
The kernels' paths do *not* share one per-pixel expression (the single-channel 3x3 interior is
``bias + ((s_0 + s_1) + s_2)`` with fused row sums, its border pixels ``bias`` plus each in-bounds
tap in turn), but they choose a pixel's path by its geometry alone: a pixel whose taps all lie in
the array gets the interior expression, one whose taps leave it the border one. So each chunk is
computed from an input region that reproduces that geometry: real neighbours where the whole
image has data, the kernel's own zero padding (never explicit zeros, which would be multiplied
in) where the whole image is padded; and spatial chunks are merged to at least 3 (and the
dilated filter extent), so no chunk is too narrow for the interior path where the whole image
takes it. (The many-channel path multiplies padding zeros in everywhere, so any region gives it
the same bits; max-pooling only compares.)

Output chunks follow input chunks: for stride 1 and ``'same'`` they are the same chunks. Along
each axis, output index ``o`` belongs to the input block holding ``o*stride - pad_before +
anchor`` (``anchor = min(pad_before, extent - 1)``), so an output chunk reads at most its block's
immediate neighbours.

The halo plumbing (why not ``map_overlap``): ``map_overlap`` concatenates every block with its
halo, a full copy of each block before the kernel runs; for a memory-bound 3x3 filter that copy
costs several times the filter itself (an identity ``map_overlap`` took 10x ``x.sum()`` here).
Here each output chunk is one task that receives its own block *as is* and, from one small edge
task per neighbouring block (run where that block lives, so only a few rows and columns move
between workers), the slices it reads. At stride 1 the task runs the kernel on the block alone
(its own padding standing in for the halo) straight into the output buffer (one that an earlier
task of the process let go of, when there is one: :mod:`kernels._recycled`), then recomputes the
rows and columns next to an interior edge of the block from thin strips assembled out of the
block's edge and the neighbours' slices. At a stride above 1 the task assembles the block and
the slices into one input region (a copy) and crops. Max-pooling rechunks so that every chunk
boundary falls on a window start (a multiple of the stride, offset by the padding): windows no
larger than the stride are then whole in one block, and a chunk is pooled from its block alone.

The graph has one task per output chunk and one edge task per input block (plus the merging
rechunk, if any): linear in the number of chunks; and it is lazy, nothing runs before
``.compute()``. Inside a ``dask.distributed`` worker each task runs the kernels on one Numba
thread (the workers' threads are the parallelism).
"""

from __future__ import annotations

import functools
import math

import numpy as np

import dask
import dask.array as da
from dask.array.overlap import ensure_minimum_chunksize
from dask.highlevelgraph import HighLevelGraph

from kernels import _validate as V
from kernels.conv import correlate2d as _correlate2d
from kernels.conv.geometry import _bias_array, _filter_geometry
from kernels.pool import maxpool2d as _maxpool2d

from .. import _recycled
from ._workers import _one_numba_thread_in_a_worker

__all__ = ["correlate2d", "convolve2d", "maxpool2d"]


# --------------------------------------------------------------------------- validation


def _dask_float_array(x, ndim):
    """``x`` as a dask array of float32/float64 with an allowed ndim, or raise naming ``x``."""
    if not isinstance(x, da.Array):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"x must be a dask array (or a NumPy array), got {type(x).__name__}")
        x = da.asarray(x)
    if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):
        raise TypeError(f"x must have dtype float32 or float64, got {x.dtype}")
    if x.ndim not in ndim:
        want = " or ".join(str(n) for n in ndim)
        raise ValueError(f"x must be {want}-dimensional, got shape {x.shape}")
    if any(math.isnan(s) for s in x.shape):
        raise ValueError(f"x must have known chunk sizes, got shape {x.shape} (call x.compute_chunk_sizes())")
    return x


# --------------------------------------------------------------------------- chunk geometry


class _Axis:
    """One spatial axis of a chunked sliding-window operation.

    Input ``n`` long in blocks ``bounds`` (``r_0 = 0 < ... < r_K = n``); a window of extent
    ``e`` at stride ``s`` starting at input ``o*s - pad``; ``m`` outputs. ``chunks[i] = (o0, o1,
    k, a, b)``: outputs ``[o0, o1)``, owned by input block ``k``, read input ``[a, b)`` (it may
    reach into the padding: ``a < 0`` or ``b > n``).
    """

    def __init__(self, bounds, e, s, pad, m, anchor):
        self.bounds, self.e, self.s, self.pad, self.m = bounds, e, s, pad, m
        self.n = bounds[-1]
        K = len(bounds) - 1
        cuts = [0] + [min(max(-(-(r + pad - anchor) // s), 0), m) for r in bounds[1:-1]] + [m]
        self.chunks = []
        for k in range(K):
            o0, o1 = cuts[k], cuts[k + 1]
            if o1 > o0:
                a, b = o0 * s - pad, (o1 - 1) * s - pad + e
                # guaranteed by the minimum chunk size: only the immediate neighbours are read
                assert max(a, 0) >= bounds[max(k - 1, 0)] and min(b, self.n) <= bounds[min(k + 2, K)]
                self.chunks.append((o0, o1, k, a, b))

    def size(self, k):
        return self.bounds[k + 1] - self.bounds[k]

    def depth(self):
        """The most rows (columns) any output chunk reads from a neighbouring block."""
        segs = [self.segments(k, a, b) for _, _, k, a, b in self.chunks]
        return max(max(r0 - s0, s1 - r1) for s0, r0, r1, s1 in segs)

    def out_chunks(self):
        return tuple(o1 - o0 for o0, o1, *_ in self.chunks)

    def segments(self, k, a, b):
        """(s0, r0, r1, s1): the previous block supplies ``[s0, r0)``, block k ``[r0, r1)``, the
        next block ``[r1, s1)`` of the clipped input range ``[a, b)``."""
        r0, r1 = self.bounds[k], self.bounds[k + 1]
        return (min(max(a, 0), r0), r0, r1, max(min(b, self.n), r1))


def _min_chunks(chunks, size):
    """``chunks`` merged so that each is at least ``size`` long (one chunk if the axis is shorter)."""
    total = sum(chunks)
    if total <= size:
        return (total,)
    return ensure_minimum_chunksize(size, chunks)


def _bounds(chunks):
    out = [0]
    for c in chunks:
        out.append(out[-1] + c)
    return out


# --------------------------------------------------------------------------- per-chunk work


def _edges(block, dr, dc):
    """Compact copies of a block's edges, the thin slices its neighbours read: its first and last
    ``dr`` rows and its first and last ``dc`` columns (one small task per block, run where the
    block lives; only these move between workers)."""
    H, W = block.shape[-2:]
    dr, dc = min(dr, H), min(dc, W)
    return (np.ascontiguousarray(block[..., :dr, :]), np.ascontiguousarray(block[..., H - dr :, :]),
            np.ascontiguousarray(block[..., :, :dc]), np.ascontiguousarray(block[..., :, W - dc :]))


def _assemble(grid, seg_r, seg_c, u0, u1, v0, v1):
    """Input rows ``[u0, u1)`` x columns ``[v0, v1)`` (global indices) from the 3x3 ``grid`` of a
    block and its neighbours' slices: a view of the block when the region lies inside it, else a
    copy of the pieces it spans."""

    def parts(seg, lo, hi):
        out = []
        for i in range(3):
            p0, p1 = max(lo, seg[i]), min(hi, seg[i + 1])
            if p1 > p0:
                out.append((i, p0 - seg[i], p1 - seg[i]))
        return out

    rows, cols = parts(seg_r, u0, u1), parts(seg_c, v0, v1)
    if len(rows) == 1 and len(cols) == 1:
        (i, a0, a1), (j, b0, b1) = rows[0], cols[0]
        return grid[i][j][..., a0:a1, b0:b1]
    return np.concatenate(
        [np.concatenate([grid[i][j][..., a0:a1, b0:b1] for j, b0, b1 in cols], axis=-1) for i, a0, a1 in rows],
        axis=-2,
    )


def _symmetric_pad(lo_need, hi_need, s):
    """Smallest symmetric padding ``q >= lo_need, hi_need`` with ``q - lo_need`` a multiple of the
    stride ``s`` (so the padded region's output grid lands on the global one)."""
    return lo_need + s * -(-max(0, hi_need - lo_need) // s)


def _conv_region(grid, seg_r, seg_c, oy, ox, g, out=None):
    """Output rows ``oy = (o0, o1)`` x columns ``ox`` computed from the input they read, with the
    kernel's own zero padding where the whole image is padded, cropped to the region."""
    (sh, sw), (eh, ew), (pt, pl), (H, W) = g["stride"], g["extent"], g["pad_before"], g["hw"]
    a, b = oy[0] * sh - pt, (oy[1] - 1) * sh - pt + eh
    c, d = ox[0] * sw - pl, (ox[1] - 1) * sw - pl + ew
    u0, u1, v0, v1 = max(a, 0), min(b, H), max(c, 0), min(d, W)
    # Windows that read padding only (a large stride or padding): the kernel takes the nearest
    # real row (column) with padding reaching the windows, so they get the padding's own value
    # (the bias, or NaN for a non-finite filter) as in memory; no window reaches that row.
    if u1 <= u0:
        u0, u1 = (0, 1) if b <= 0 else (H - 1, H)
    if v1 <= v0:
        v0, v1 = (0, 1) if d <= 0 else (W - 1, W)
    qy, qx = _symmetric_pad(u0 - a, b - u1, sh), _symmetric_pad(v0 - c, d - v1, sw)
    slab = _assemble(grid, seg_r, seg_c, u0, u1, v0, v1)
    y = _correlate2d(slab, g["w"], g["b"], stride=(sh, sw), padding=(qy, qx), dilation=g["dilation"])
    i0, j0 = (qy - (u0 - a)) // sh, (qx - (v0 - c)) // sw
    return y[..., i0 : i0 + oy[1] - oy[0], j0 : j0 + ox[1] - ox[0]]


def _conv_chunk(grid, seg_r, seg_c, oy, ox, g):
    """One output chunk. At stride 1: the kernel on the block alone (its padding standing in for
    the halo) straight into the output buffer, then the rows and columns next to an interior
    edge of the block recomputed from thin strips. Otherwise: one region, assembled and cropped."""
    if g["stride"] != (1, 1):
        return _conv_region(grid, seg_r, seg_c, oy, ox, g)
    block = grid[1][1]
    (eh, ew), (pt, pl), (H, W) = g["extent"], g["pad_before"], g["hw"]
    r0, r1, c0, c1 = seg_r[1], seg_r[2], seg_c[1], seg_c[2]
    a, b = oy[0] - pt, oy[1] - 1 - pt + eh
    c, d = ox[0] - pl, ox[1] - 1 - pl + ew
    qy, qx = max(r0 - a, b - r1, 0), max(c0 - c, d - c1, 0)
    w = g["w"]
    lead = block.shape[:-2] if w.ndim == 2 else (block.shape[0], w.shape[0])
    shape = (*lead, r1 - r0 + 2 * qy - eh + 1, c1 - c0 + 2 * qx - ew + 1)
    core = _correlate2d(block, w, g["b"], padding=(qy, qx), dilation=g["dilation"],
                        out=_recycled.empty(shape, block.dtype))
    i0, j0 = a - r0 + qy, c - c0 + qx
    out = core[..., i0 : i0 + oy[1] - oy[0], j0 : j0 + ox[1] - ox[0]]
    # Output rows whose taps cross an interior edge of the block (into a neighbour's data):
    # [oy0, top) above, [bottom, oy1) below; likewise columns. The core got them wrong (it saw
    # its padding there); the edges of the image are right already.
    top = min(oy[1], r0 + pt) if r0 > 0 else oy[0]
    bottom = max(top, r1 + pt - eh + 1) if r1 < H else oy[1]
    left = min(ox[1], c0 + pl) if c0 > 0 else ox[0]
    right = max(left, c1 + pl - ew + 1) if c1 < W else ox[1]
    for ry, rx in (((oy[0], top), ox), ((bottom, oy[1]), ox),
                   ((top, bottom), (ox[0], left)), ((top, bottom), (right, ox[1]))):
        if ry[1] > ry[0] and rx[1] > rx[0]:
            out[..., ry[0] - oy[0] : ry[1] - oy[0], rx[0] - ox[0] : rx[1] - ox[0]] = _conv_region(
                grid, seg_r, seg_c, ry, rx, g)
    return out


def _pool_chunk(grid, seg_r, seg_c, oy, ox, g):
    """One output chunk of max-pooling: its input region (a view of the block when the windows
    are whole in it), ``-inf`` where the whole image is padded, pooled without padding."""
    (kh, kw), (sh, sw), (ph, pw), (H, W) = g["kernel"], g["stride"], g["pad_before"], g["hw"]
    a, b = oy[0] * sh - ph, (oy[1] - 1) * sh - ph + kh
    c, d = ox[0] * sw - pw, (ox[1] - 1) * sw - pw + kw
    u0, u1, v0, v1 = max(a, 0), min(b, H), max(c, 0), min(d, W)
    slab = _assemble(grid, seg_r, seg_c, u0, u1, v0, v1)
    if (u0 - a, b - u1, v0 - c, d - v1) != (0, 0, 0, 0):
        # -inf never wins a window: the same values as the kernel's skipped padded taps
        pads = [(0, 0)] * (slab.ndim - 2) + [(u0 - a, b - u1), (v0 - c, d - v1)]
        slab = np.pad(slab, pads, constant_values=-np.inf)
    # a C-contiguous slab (a view whenever the chunk's columns are whole) keeps the kernel's
    # compiled signature the in-memory call's, instead of compiling a strided one in each worker
    return _maxpool2d(np.ascontiguousarray(slab), (kh, kw), stride=(sh, sw), padding=0)


# --------------------------------------------------------------------------- the graph


def _pieces(axis, k, seg):
    """(position in the 3x3 grid, slice of that block) of the non-empty pieces along one axis:
    0 the previous block's tail, 1 block ``k`` itself, 2 the next block's head."""
    out = []
    if seg[1] > seg[0]:
        base = axis.bounds[k - 1]
        out.append((0, slice(seg[0] - base, seg[1] - base)))
    out.append((1, slice(None)))
    if seg[3] > seg[2]:
        out.append((2, slice(0, seg[3] - seg[2])))
    return out


def _spatial_graph(x, rows, cols, func, out_lead_chunks, lead_index, token):
    """A dask array of ``func`` over every (leading block, output row chunk, output column chunk).

    ``x``: input whose last two axes are spatial, chunked by ``rows``/``cols`` (:class:`_Axis`).
    ``lead_index(idx)`` maps a leading block index of ``x`` to the output's leading indices. Each
    output task gets its block as is, and the slices of its neighbours it reads out of their
    edge tasks (:func:`_edges`, one per block, whose results are a few rows and columns).
    """
    name = f"{token}-{dask.base.tokenize(x, rows.chunks, cols.chunks, func)}"
    halo = f"halo-{name}"
    dr, dc = rows.depth(), cols.depth()
    dsk = {}
    for lead in np.ndindex(*x.numblocks[:-2]):
        for i, (oy0, oy1, k, a, b) in enumerate(rows.chunks):
            seg_r = rows.segments(k, a, b)
            for j, (ox0, ox1, l, c, d) in enumerate(cols.chunks):
                seg_c = cols.segments(l, c, d)
                grid = [[None] * 3 for _ in range(3)]
                for di, rs in _pieces(rows, k, seg_r):
                    for dj, cs in _pieces(cols, l, seg_c):
                        kn, ln = k + di - 1, l + dj - 1
                        if di == 1 and dj == 1:
                            grid[1][1] = (x.name, *lead, k, l)
                            continue
                        ring = (halo, *lead, kn, ln)
                        if ring not in dsk:
                            dsk[ring] = (_edges, (x.name, *lead, kn, ln), dr, dc)
                        Hn, Wn = rows.size(kn), cols.size(ln)
                        # which edge holds the piece, and the piece's place in that edge
                        prs, pcs = rs, cs
                        if di == 0:
                            part, prs = 1, slice(rs.start - (Hn - min(dr, Hn)), rs.stop - (Hn - min(dr, Hn)))
                        elif di == 2:
                            part = 0
                        elif dj == 0:
                            part, pcs = 3, slice(cs.start - (Wn - min(dc, Wn)), cs.stop - (Wn - min(dc, Wn)))
                        else:
                            part = 2
                        grid[di][dj] = [ring, part, prs, pcs]
                dsk[(name, *lead_index(lead), i, j)] = (
                    functools.partial(func, seg_r=seg_r, seg_c=seg_c, oy=(oy0, oy1), ox=(ox0, ox1)), grid)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    chunks = tuple(out_lead_chunks) + (rows.out_chunks(), cols.out_chunks())
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype=x.dtype))


def _task(func, g):
    """``func`` with the operation's geometry ``g`` bound, called as ``f(grid, seg_r=..., ...)``."""
    return functools.partial(_apply, func, g)


def _apply(func, g, grid, *, seg_r, seg_c, oy, ox):
    _one_numba_thread_in_a_worker()
    grid = [[p if p is None or isinstance(p, np.ndarray) else p[0][p[1]][..., p[2], p[3]] for p in row]
            for row in grid]
    return func(grid, seg_r, seg_c, oy, ox, g)


# --------------------------------------------------------------------------- public API


def _conv(x, w, bias, stride, padding, dilation, flipped):
    x = _dask_float_array(x, (2, 4))
    two_d = x.ndim == 2
    if any(s == 0 for s in x.shape[-3 if not two_d else -2:]):
        raise ValueError(f"x must not be empty, got shape {x.shape}")
    w, w4, (sh, sw), (dh, dw), (pt, _, pl, _), (eh, ew), (Ho, Wo) = _filter_geometry(
        x, w, stride, padding, dilation, flipped)
    Co = w4.shape[0]
    H, W = x.shape[-2:]
    # copies held by the graph: the caller's w and bias changed before .compute() must not change
    # the result (the flipped filter, once: convolve2d(x, w) is exactly correlate2d(x, w[..., ::-1, ::-1]))
    b = np.array(_bias_array(bias, Co, x.dtype, two_d), order="C", copy=True)
    wk = np.array(w[..., ::-1, ::-1] if flipped else w, order="C", copy=True)
    if not two_d and x.shape[0] == 0:
        return da.zeros((0, Co, Ho, Wo), dtype=x.dtype, chunks=(1, Co, Ho, Wo))
    # merged up to the filter's extent (at least 3: a 3x3 kernel's interior path needs 3
    # columns, so no chunk may fall back to another code path where the whole image does not)
    lead = {} if two_d else {1: x.shape[1]}
    x = x.rechunk({**lead, -2: _min_chunks(x.chunks[-2], max(eh, 3)), -1: _min_chunks(x.chunks[-1], max(ew, 3))})
    rows = _Axis(_bounds(x.chunks[-2]), eh, sh, pt, Ho, min(pt, eh - 1))
    cols = _Axis(_bounds(x.chunks[-1]), ew, sw, pl, Wo, min(pl, ew - 1))
    g = dict(w=wk, b=b, stride=(sh, sw), dilation=(dh, dw), extent=(eh, ew), pad_before=(pt, pl), hw=(H, W))
    func = _task(_conv_chunk, g)
    if two_d:
        return _spatial_graph(x, rows, cols, func, (), lambda lead: (), "convolve2d" if flipped else "correlate2d")
    return _spatial_graph(x, rows, cols, func, (x.chunks[0], (Co,)), lambda lead: (lead[0], 0),
                          "convolve2d" if flipped else "correlate2d")


def correlate2d(x, w, bias=None, *, stride=1, padding=0, dilation=1):
    """:func:`kernels.correlate2d` over a dask array, chunk by chunk, lazily.

    ``out[n, co, y, x] = bias[co] + sum_{ci,i,j} w[co,ci,i,j] * xpad[n, ci, y*s_h + i*d_h, x*s_w + j*d_w]``

    ``x``: dask array (H, W) or (N, C_in, H, W), float32 or float64, any chunking (spatial chunks
    included; the channel axis is rechunked to one chunk, spatial chunks shorter than the dilated
    filter are merged). ``w``, ``bias``, ``stride``, ``padding`` (int, pair, ``'same'``,
    ``'valid'``, ``'full'``) and ``dilation``: exactly as :func:`kernels.correlate2d`, validated
    here, before any graph is built. Returns a dask array (H_out, W_out) or (N, C_out, H_out,
    W_out) of ``x``'s dtype whose computed value is bit-identical to
    ``kernels.correlate2d(x.compute(), w, ...)``. Output chunks: the input's (shifted by the
    padding, divided by the stride); the batch axis keeps its chunks. See the module docstring
    for how halos are exchanged.
    """
    return _conv(x, w, bias, stride, padding, dilation, flipped=False)


def convolve2d(x, w, bias=None, *, stride=1, padding=0, dilation=1):
    """:func:`kernels.convolve2d` (true convolution, the filter flipped) over a dask array.

    ``convolve2d(x, w) == correlate2d(x, w[..., ::-1, ::-1])``, with ``'same'`` padding's odd
    pixel at the top/left as in :func:`kernels.convolve2d` (``scipy.signal.convolve2d``). Every
    other rule, and the bit-identity with the in-memory function, as :func:`correlate2d`.
    """
    return _conv(x, w, bias, stride, padding, dilation, flipped=True)


def _pool_bounds(chunks, n, s, pad, minimum):
    """Chunk sizes whose inner boundaries fall on window starts (``j*s - pad``), each at least
    ``minimum`` long: the original boundaries, each moved to the nearest window start."""
    cuts, last = [], 0
    for r in _bounds(chunks)[1:-1]:
        c = round((r + pad) / s) * s - pad
        if c - last >= minimum and n - c >= minimum:
            cuts.append(c)
            last = c
    sizes = np.diff([0] + cuts + [n])
    return tuple(int(v) for v in sizes)


def maxpool2d(x, kernel_size=2, *, stride=None, padding=0):
    """:func:`kernels.maxpool2d` (values) over a dask array, chunk by chunk, lazily.

    ``y[..., i, j] = max over a < kh, b < kw of xp[..., i*sh + a, j*sw + b]`` with ``xp`` padded by
    ``-inf`` (PyTorch's ``max_pool2d``: ties to the first maximum, NaN propagates).

    ``x``: dask array (H, W), (C, H, W) or (N, C, H, W), float32 or float64, any chunking; the
    spatial axes are rechunked so every inner boundary falls on a window start (a multiple of the
    stride, offset by the padding), which keeps windows no larger than the stride whole in one
    block (larger ones read a thin slice of the next block). ``kernel_size``, ``stride``
    (default ``kernel_size``) and ``padding`` (at most half the kernel): as
    :func:`kernels.maxpool2d`, validated here. The computed value is bit-identical to
    ``kernels.maxpool2d(x.compute(), ...)``. Indices (``return_indices``) are not offered: they
    index whole planes.
    """
    x = _dask_float_array(x, (2, 3, 4))
    (kh, kw) = V.int_pair(kernel_size, "kernel_size")
    (sh, sw) = (kh, kw) if stride is None else V.int_pair(stride, "stride")
    (ph, pw) = V.int_pair(padding, "padding", minimum=0)
    for axis, k, p in (("height", kh, ph), ("width", kw, pw)):
        if 2 * p > k:
            raise ValueError(
                f"padding must be at most half of kernel_size (as in PyTorch), got padding={padding!r} "
                f"with kernel_size={kernel_size!r} ({axis}: pad {p} > {k}/2)")
    if any(s == 0 for s in x.shape[-3 if x.ndim > 2 else -2:]):
        raise ValueError(f"x must not be empty, got shape {x.shape}")
    H, W = x.shape[-2:]
    if H + 2 * ph < kh or W + 2 * pw < kw:
        raise ValueError(f"kernel_size {(kh, kw)} is larger than the padded input {(H + 2 * ph, W + 2 * pw)} "
                         f"(x spatial shape {(H, W)}, padding {(ph, pw)})")
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if x.ndim == 4 and x.shape[0] == 0:
        return da.zeros((0, x.shape[1], Ho, Wo), dtype=x.dtype, chunks=(1, x.shape[1], Ho, Wo))
    x = x.rechunk({-2: _pool_bounds(x.chunks[-2], H, sh, ph, max(kh, sh)),
                   -1: _pool_bounds(x.chunks[-1], W, sw, pw, max(kw, sw))})
    rows = _Axis(_bounds(x.chunks[-2]), kh, sh, ph, Ho, 0)
    cols = _Axis(_bounds(x.chunks[-1]), kw, sw, pw, Wo, 0)
    g = dict(kernel=(kh, kw), stride=(sh, sw), pad_before=(ph, pw), hw=(H, W))
    return _spatial_graph(x, rows, cols, _task(_pool_chunk, g), x.chunks[:-2], lambda lead: lead, "maxpool2d")
