"""2-D convolution and cross-correlation, forward and backward (issue 2; homework section 3.1).

Two conventions, one kernel
---------------------------
The homework's lecture (CSC413 lecture 4) defines convolution the way signal processing does,
with the filter *flipped*::

    (I * J)[y, x] = sum_{i, j} I[y - i, x - j] J[i, j]                      (true convolution)

Deep-learning frameworks (``torch.nn.functional.conv2d``, ``tf.nn.conv2d``, cuDNN, oneDNN) compute
*cross-correlation* and call it convolution::

    (I ⋆ J)[y, x] = sum_{i, j} I[y + i, x + j] J[i, j]                      (cross-correlation)

Both exist for good reasons. The flipped form is the one with the algebra: it is commutative and
associative, it is what the convolution theorem diagonalises, and it is the response of a linear
shift-invariant system. For a *learned* filter the flip is pointless -- the network learns the
flipped weights just as easily -- so frameworks skip it and save an index reversal. The two differ
only by a 180-degree rotation of the filter: ``convolve2d(x, w) == correlate2d(x, w[..., ::-1, ::-1])``.
For the homework's filter ``J`` with rows ``(-1,-1,-1), (0,0,0), (1,1,1)`` the rotation is exactly
``-J``, so the two conventions give results that differ exactly by sign: one detects edges where
intensity rises downwards, the other where it falls (horizontal edges either way).

:func:`correlate2d` is the deep-learning one (same result as ``torch.nn.functional.conv2d``),
:func:`convolve2d` the textbook one (same result as ``scipy.signal.convolve2d``), and
:func:`correlate2d_backward` the gradients of :func:`correlate2d` (those of :func:`convolve2d` are
the same call with the flipped filter, with ``grad_w`` flipped back; see its docstring).

Implementation notes
--------------------
The forward pass is a direct kernel, parallel over disjoint output tiles (image, block of output
channels, block of output rows; tile sizes fixed by the shape, never by the thread count, so the
result is bit-identical for any number of threads). Four inner paths:

* 3x3, stride 1, dilation 1, several channels (the ubiquitous CNN layer): the input is copied
  once into a zero-padded buffer and each tile computes four output channels in a private
  buffer whose rows are as wide as the padded rows. Output (y, x) and its tap (0, 0) are then
  a fixed flat distance apart, so there are no border cases: explicit SIMD blocks
  (:func:`kernels._simd.correlate3x3_block`) keep 4 channels x 4 vectors of positions in
  registers through all input channels, 144 fused multiply-adds per 15 vector loads, which runs
  at the machine's multiply-add rate;
* any other filter on several channels (5x5, 1x1, dilated, rectangular, strided):
  the same padded layout and register blocking, with one vector load per tap
  (:func:`kernels._simd.correlate_block`), on bands: each task copies the band of the padded
  input its output rows read, all output channels then reading it from cache (no serial copy
  of the whole batch first). At a stride the band cuts each padded plane into its phases
  (:func:`.phases._phase_band`: rows ``a, a + sh, ...`` and columns ``b, b + sw, ...``),
  on which the outputs of a row are consecutive positions and each tap a fixed distance away,
  so only the definition's products are formed (computing every stride-1 position and keeping
  one in ``sw`` formed ``sw`` times more). Where a block of positions reads more rows of the band
  over all input channels than the L1 holds (the 3x3 at stride 2: six rows of phases a channel),
  every block of output channels runs over a few input channels at a time
  (:func:`kernels._simd.correlate_block_channels`), the same sums in the same order;
* 3x3, stride 1, dilation 1, one channel (a single image, memory-bound): no copy. Explicit
  SIMD blocks (:mod:`kernels._simd`) compute four output rows at once from six input rows, each
  loaded once per vector with the shifted taps cut from neighbouring vectors, and write the
  output once, with non-temporal stores once it outgrows the cache; the border pixels get
  their in-bounds taps separately. It runs at about the speed of a copy of the image;
* anything else (one channel with a filter other than 3x3, or a stride): one vectorised loop
  per filter tap over the valid span of each output row.

Taps that fall in the zero padding are skipped rather than multiplied by zero. That differs from
the zero-padded definition only when the filter holds inf or NaN (``0 * inf = NaN``); such a
filter is sent through an explicitly zero-padded copy of the input so NaN appears exactly where
the definition puts it. The backward pass reuses the forward kernels for ``grad_x``: a
correlation with the rotated filter, one per phase of the stride (the input positions a
sub-filter's taps reach from consecutive outputs), so that no product of a spread-out zero is
formed. It computes ``grad_w`` with explicit SIMD blocks (:func:`kernels._simd.grad3x3_rows` for
3x3 at stride 1, :func:`kernels._simd.grad_pairs` for 1x1 without padding, a block of channel
pairs over flat planes, and :func:`kernels._simd.grad_tap_rows`, a run of a filter row's taps,
otherwise, at a column stride over the input's column phases): short sums in the working
precision, everything longer in float64.

Layout
------
One file per concern; the public functions are re-exported here. The compiled kernels assume
clean, C-contiguous input and only compute; :mod:`.geometry` validates at the door.

* :mod:`.forward`: :func:`correlate2d`, :func:`convolve2d` and the dispatch ``_run_forward``;
* :mod:`.backward`: :func:`correlate2d_backward`, the input gradient's phases and the column phases;
* :mod:`.filter_grad`: the ``grad_w`` and ``grad_bias`` reductions;
* :mod:`.blocked`: the register-blocked many-channel kernel (and its packed filter);
* :mod:`.direct`: the copy-free kernel, per-tap rows and the fused 3x3 tile;
* :mod:`.stencil3x3`: the single-channel 3x3 stencil spans and border pixels;
* :mod:`.geometry`: validation at the door and the zero-padded copies;
* :mod:`.phases`: the phases of a stride (the strided forward's bands, the backward's phases);
* :mod:`.tiles`: tile sizes and the streaming threshold.
"""

from __future__ import annotations

from .backward import correlate2d_backward
from .forward import convolve2d, correlate2d

__all__ = ["correlate2d", "convolve2d", "correlate2d_backward"]
