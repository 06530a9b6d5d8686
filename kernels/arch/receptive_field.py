"""The receptive field, measured: backpropagate a unit gradient through the conv and pool kernels.

:func:`empirical_receptive_field` checks the closed form of :func:`~kernels.arch.analyze`
against :func:`kernels.correlate2d_backward` and :func:`kernels.maxpool2d_backward`, which are
imported lazily (inside the functions), so ``import kernels.arch`` stays light.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .analysis import _layer_list, analyze
from .layers import Conv, Pool, Relu
from .spec import parse

__all__ = ["ReceptiveField", "empirical_receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """The support of the input gradient of one unit, measured by :func:`empirical_receptive_field`.

    ``rf`` is the extent ``(height, width)`` of the support's bounding box ``bbox = (top,
    bottom, left, right)`` (inclusive input-pixel indices), ``centre`` its centre. ``clipped``
    is true when, on that axis, the closed-form field of :func:`~kernels.arch.analyze` (``rf``
    pixels centred on ``start + position * jump``) runs past the image into the padding: the
    measured extent is then only a lower bound of the closed form (and may stop short of the
    border, where a stride or dilation leaves gaps). Where it is false, the ``"window"`` method
    measures the closed form exactly. ``support`` is the boolean ``(H, W)`` mask itself. A unit
    whose whole field lies in the padding has an empty support: ``rf == (0, 0)``, ``bbox`` and
    ``centre`` None, ``clipped == (True, True)``.
    """

    layer: int
    position: tuple
    rf: tuple
    bbox: tuple
    centre: tuple
    clipped: tuple
    method: str
    support: np.ndarray = field(repr=False, compare=False)


def _conv_backward(g, layer, row):
    """Input gradient of a one-channel conv with an all-ones filter, via kernels.correlate2d_backward."""
    from ..conv import correlate2d_backward

    h, w = row.in_shape[:2]
    pt, pb, pl, pr = row.padding
    x = np.zeros((g.shape[0], 1, h + pt + pb, w + pl + pr))
    wts = np.ones((1, 1, layer.kernel, layer.kernel))
    # the padding is asymmetric for 'same' with an even extent or a stride: pad explicitly and
    # keep the gradient of the real pixels only
    gx, _, _ = correlate2d_backward(g, x, wts, stride=layer.stride, padding=0, dilation=layer.dilation,
                                    grads=("x",))
    return gx[:, :, pt : pt + h, pl : pl + w]


def _pool_taps(row, k, s):
    """``(1, k*k, OH, OW)`` int64: channel ``a*k + b`` holds the flat input index of tap ``(a, b)``
    of every window."""
    w = row.in_shape[1]
    oh, ow = row.out_shape[:2]
    rows_ = np.arange(oh)[:, None] * s
    cols_ = np.arange(ow)[None, :] * s
    taps = [(rows_ + a) * w + cols_ + b for a in range(k) for b in range(k)]
    return np.stack(taps)[None].astype(np.int64)


def _forward_indices(layers, rows, x, rng):
    """A forward pass of the batch ``x`` with random positive filters: each pool's indices."""
    from ..conv import correlate2d
    from ..pool import maxpool2d

    indices = {}
    for index, (layer, row) in enumerate(zip(layers, rows)):
        if index == 0:
            continue
        if isinstance(layer, Conv):
            pt, pb, pl, pr = row.padding
            wts = rng.uniform(0.5, 1.5, (1, 1, layer.kernel, layer.kernel))
            xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
            x = correlate2d(xp, wts, stride=layer.stride, padding=0, dilation=layer.dilation)
        elif isinstance(layer, Pool):
            x, idx = maxpool2d(x, layer.kernel, stride=layer.stride, return_indices=True)
            indices[index] = idx
        elif isinstance(layer, Relu):
            pass  # every value is positive here: the rectifier is the identity
        else:  # dense: all-positive weights, every output the sum of every input
            oh, ow = row.out_shape[:2]
            x = np.ascontiguousarray(np.broadcast_to(x.sum(axis=(1, 2, 3))[:, None, None, None], (x.shape[0], 1, oh, ow)))
    return indices


def empirical_receptive_field(layers, position=None, *, layer=-1, method="window", trials=32, seed=0):
    """Measure the receptive field of one unit by backpropagating a unit gradient to the input.

    A gradient of 1 at ``position`` (an ``(i, j)`` unit of layer ``layer``'s output; default its
    centre unit) is propagated back through the network with :func:`kernels.correlate2d_backward`
    (all-ones filters, so positive terms never cancel) and :func:`kernels.maxpool2d_backward`; the
    nonzero pixels of the input gradient are the field. Channels are measured as one: with
    positive weights every channel reaches every other, so the support does not depend on them.

    Max-pooling passes a gradient to one element per window (its maximum), so one backward pass
    sees a *subset* of the field. Two honest ways round that, by ``method``:

    * ``"window"`` (default, deterministic): each pool routes the gradient to every element of
      its window: ``maxpool2d_backward`` is called on ``k*k`` copies of the gradient (as
      channels), copy ``t`` with indices that pick tap ``t`` of every window, and the copies of
      the result summed. This is the field as defined (the input pixels that
      *can* affect the unit), and equals Araujo et al.'s closed form.
    * ``"union"``: ``trials`` forward passes on random inputs with random positive filters
      (seeded; the trials run as one batch), each followed by a true backward pass through the
      recorded max-pool indices; the field is the union of the supports. A lower bound that reaches the closed form once
      every window position has been the maximum on some path.

    Dense layers connect everything: their input gradient is nonzero everywhere.

    Returns a :class:`ReceptiveField`. Raises ``ValueError`` for a ``position`` outside the
    layer's output, an unknown ``method`` or a ``trials`` below 1.
    """
    from ..pool import maxpool2d_backward

    if isinstance(layers, str):
        layers = parse(layers)
    layers = _layer_list(layers)
    rows = analyze(layers)
    n = len(rows)
    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, numbers.Integral) or not -n <= layer < n:
        raise ValueError(f"layer must be an index into the {n} layers, got {layer!r}")
    last = int(layer) % n
    if method not in ("window", "union"):
        raise ValueError(f"method must be 'window' or 'union', got {method!r}")
    if isinstance(trials, (bool, np.bool_)) or not isinstance(trials, numbers.Integral) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    oh, ow = rows[last].out_shape[:2]
    if position is None:
        position = (oh // 2, ow // 2)
    if (
        not isinstance(position, (tuple, list))
        or len(position) != 2
        or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in position)
        or not (0 <= position[0] < oh and 0 <= position[1] < ow)
    ):
        raise ValueError(f"position must be a pair (i, j) inside layer {last}'s {oh}x{ow} output, got {position!r}")
    h0, w0 = rows[0].out_shape[:2]
    rng = np.random.default_rng(seed)
    # the union's trials run as one batch (one call per layer, not one per trial and layer)
    batch = trials if method == "union" else 1
    if method == "union":
        x = rng.uniform(0.0, 1.0, (batch, 1, h0, w0))
        indices = _forward_indices(layers[: last + 1], rows[: last + 1], x, rng)
    g = np.zeros((batch, 1, oh, ow))
    g[:, 0, position[0], position[1]] = 1.0
    for index in range(last, 0, -1):
        lay, row = layers[index], rows[index]
        ih, iw = row.in_shape[:2]
        if isinstance(lay, Conv):
            g = _conv_backward(g, lay, row)
        elif isinstance(lay, Pool):
            if method == "union":
                g = maxpool2d_backward(g, indices[index], (batch, 1, ih, iw))
            else:
                # one backward call routes a copy of the gradient through each tap, one tap per
                # channel; the sum over channels is the all-taps routing
                s = lay.kernel if lay.stride is None else lay.stride
                taps = _pool_taps(row, lay.kernel, s)
                g_rep = np.repeat(g, taps.shape[1], axis=1)
                g = maxpool2d_backward(g_rep, taps, (1, taps.shape[1], ih, iw)).sum(axis=1, keepdims=True)
        elif isinstance(lay, Relu):
            pass  # the forward values are positive (positive filters and inputs): gradient passes as is
        else:
            g = np.ascontiguousarray(np.broadcast_to(g.sum(axis=(1, 2, 3))[:, None, None, None], (batch, 1, ih, iw)))
    support = (g[:, 0] != 0).any(axis=0)
    rs = np.flatnonzero(support.any(axis=1))
    cs = np.flatnonzero(support.any(axis=0))
    if rs.size == 0:
        # every tap of the unit's field lands in padding (e.g. a dilated 'same' conv on a 1x1
        # map): no input pixel affects it
        return ReceptiveField(last, (int(position[0]), int(position[1])), (0, 0), None, None, (True, True),
                              method, support)
    top, bottom, left, right = int(rs[0]), int(rs[-1]), int(cs[0]), int(cs[-1])
    row = rows[last]
    clipped = []
    for ax, size in enumerate((h0, w0)):
        # start, jump and (rf - 1) / 2 are multiples of 1/2: exact in float
        centre = row.start[ax] + position[ax] * row.jump[ax]
        half = (row.rf[ax] - 1) / 2
        clipped.append(bool(centre - half < 0 or centre + half > size - 1))
    return ReceptiveField(
        layer=last,
        position=(int(position[0]), int(position[1])),
        rf=(bottom - top + 1, right - left + 1),
        bbox=(top, bottom, left, right),
        centre=((top + bottom) / 2, (left + right) / 2),
        clipped=tuple(clipped),
        method=method,
        support=support,
    )
