"""CNN architecture analysis: shapes, neurons, parameters and receptive fields, per layer.

Homework section 3.2 (neurons and parameters of a small CNN and of its fully-connected
counterpart) and 3.3 (receptive fields), for any network written in a short spec::

    >>> from kernels import arch
    >>> rows = arch.analyze(arch.parse("in32x32x1 conv3 pool2 conv3 pool2 conv3 pool2"))
    >>> [(r.name, r.out_shape, r.rf) for r in rows][:4]
    [('input', (32, 32, 1), (1, 1)), ('conv1', (32, 32, 1), (3, 3)), ('pool1', (16, 16, 1), (4, 4)), ('conv2', (16, 16, 1), (8, 8))]

Spec grammar (tokens separated by spaces; case-sensitive):

* ``in{H}x{W}x{C}``, first and only first: the input image, height x width x channels.
* ``conv{k}`` with optional suffixes, each at most once, in any order: ``s{stride}``, ``p{pad}``
  or ``same`` or ``valid``, ``d{dilation}``, ``c{out_channels}``, ``nobias``. Defaults: stride 1,
  ``same``, dilation 1, one output channel, a bias. E.g. ``conv3s2p1c64``, ``conv11s4validc96``.
* ``pool{k}`` with an optional ``s{stride}`` (default ``k``): ``k x k`` max-pooling, no padding.
* ``fc{units}``: a fully-connected layer (with bias) on the flattened input.

Anything else is a ``ValueError`` that names the bad token, its position and the reason.

Conventions
-----------
* Shapes are ``(H, W, C)``. Output size of a conv or pool: ``floor((n + p_lo + p_hi - k_eff) / s) + 1``
  with the effective kernel ``k_eff = d*(k - 1) + 1``. ``'valid'`` is no padding; an integer ``p``
  pads ``p`` on every side; ``'same'`` gives ``ceil(n / s)`` outputs with the total padding
  ``max((ceil(n/s) - 1)*s + k_eff - n, 0)`` split with the odd pixel at the bottom/right (PyTorch's
  rule at stride 1, where this is ``n`` outputs; TensorFlow's at any stride).
* Neurons of a layer: its number of output units, ``H*W*C``. Parameters: weights plus biases,
  ``k*k*C_in*C_out + C_out`` for a conv, ``in*out + out`` for a dense layer, 0 for pooling.
* Receptive fields follow Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional
  Neural Networks", Distill 2019, https://doi.org/10.23915/distill.00021, eqs. (1)-(2) and the
  recursions of its section "Solving for the receptive field": with ``k_l`` the effective kernel,
  ``s_l`` the stride and ``p_l`` the top/left padding of layer ``l``,

      r_l     = r_{l-1} + (k_l - 1) * j_{l-1}            (receptive field size, r_0 = 1)
      j_l     = j_{l-1} * s_l                            (jump: input pixels between adjacent units, j_0 = 1)
      start_l = start_{l-1} + ((k_l - 1)/2 - p_l) * j_{l-1}   (centre of the first unit's field, start_0 = 0)

  in input-pixel coordinates (pixel ``i`` is centred at ``i``; the field of unit ``u`` of layer
  ``l`` is centred at ``start_l + u*j_l`` and spans ``r_l`` pixels, padding included). Each figure
  is a pair ``(along height, along width)``.
* A dense layer connects every unit to its whole input: it is the conv whose kernel covers the
  input (``k = H_in``, ``W_in``, no padding), so ``r`` grows by ``(H_in - 1)*j``, and every one of
  its units sees the same field, so its jump is 0 (with ``j = 0`` the recursions above leave
  ``r`` and ``start`` unchanged through any later layer, which is right: nothing can see more).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Input",
    "Conv",
    "Pool",
    "Dense",
    "LayerInfo",
    "ReceptiveField",
    "parse",
    "analyze",
    "to_dense",
    "totals",
    "markdown",
    "empirical_receptive_field",
]


# --------------------------------------------------------------------------------------------
# layers


@dataclass(frozen=True)
class Input:
    """The input image: ``height x width x channels``."""

    height: int
    width: int
    channels: int = 1
    token: str = ""  #: the spec token it was parsed from, for messages


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with ``channels`` output channels of ``kernel x kernel`` filters.

    ``padding`` is an int (each side), ``'same'`` or ``'valid'``.
    """

    kernel: int
    stride: int = 1
    padding: int | str = "same"
    dilation: int = 1
    channels: int = 1
    bias: bool = True
    token: str = ""


@dataclass(frozen=True)
class Pool:
    """``kernel x kernel`` max-pooling with stride ``stride`` (default ``kernel``), no padding."""

    kernel: int
    stride: int | None = None
    token: str = ""


@dataclass(frozen=True)
class Dense:
    """A fully-connected layer with ``units`` outputs.

    ``shape`` arranges the outputs as ``(H, W, C)`` (``H*W*C == units``), which is how
    :func:`to_dense` keeps the layers after a replaced conv (pools) well-defined; ``None`` means
    ``(1, 1, units)``.
    """

    units: int
    bias: bool = True
    shape: tuple | None = None
    token: str = ""


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`analyze`: the figures of one layer (``index`` 0 is the input).

    ``rf``, ``jump`` and ``start`` are ``(along height, along width)``; ``padding`` is the
    ``(top, bottom, left, right)`` padding actually applied (conv layers; zeros elsewhere).
    """

    index: int
    name: str
    kind: str
    spec: str
    in_shape: tuple
    out_shape: tuple
    neurons: int
    params: int
    rf: tuple
    jump: tuple
    start: tuple
    padding: tuple = (0, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# parsing

_IN = re.compile(r"in(\d+)x(\d+)x(\d+)")
_CONV = re.compile(r"conv(\d+)(.*)")
_POOL = re.compile(r"pool(\d+)(?:s(\d+))?")
_FC = re.compile(r"fc(\d+)")
_CONV_SUFFIX = re.compile(r"s(\d+)|p(\d+)|same|valid|d(\d+)|c(\d+)|nobias")


def _token_error(spec_tokens, i, reason):
    """A ValueError pointing at token ``i``: its position, its text and a caret under it."""
    line = " ".join(spec_tokens)
    col = sum(len(t) + 1 for t in spec_tokens[:i])
    caret = " " * col + "^" * max(len(spec_tokens[i]), 1)
    return ValueError(
        f"spec token {i + 1} of {len(spec_tokens)}, {spec_tokens[i]!r}: {reason}\n  {line}\n  {caret}"
    )


def _positive(text, what, tokens, i, minimum=1):
    value = int(text)
    if value < minimum:
        raise _token_error(tokens, i, f"{what} must be >= {minimum}, got {value}")
    return value


def _parse_conv(tokens, i, k_text, rest):
    tok = tokens[i]
    kw = dict(kernel=_positive(k_text, "kernel size", tokens, i), token=tok)
    seen = set()
    pos = 0
    while pos < len(rest):
        m = _CONV_SUFFIX.match(rest, pos)
        if m is None:
            raise _token_error(
                tokens, i,
                f"unknown suffix {rest[pos:]!r} after 'conv{k_text}' (expected s<stride>, p<pad>, same, "
                f"valid, d<dilation>, c<channels> or nobias)",
            )
        text = m.group(0)
        key = {"s": "stride", "p": "padding", "d": "dilation", "c": "channels", "n": "bias"}.get(text[0])
        if text in ("same", "valid"):
            key = "padding"
        if key in seen:
            raise _token_error(tokens, i, f"{key} given twice (at {text!r})")
        seen.add(key)
        if key == "stride":
            kw["stride"] = _positive(m.group(1), "stride", tokens, i)
        elif key == "padding":
            kw["padding"] = text if text in ("same", "valid") else _positive(m.group(2), "padding", tokens, i, 0)
        elif key == "dilation":
            kw["dilation"] = _positive(m.group(3), "dilation", tokens, i)
        elif key == "channels":
            kw["channels"] = _positive(m.group(4), "output channels", tokens, i)
        else:
            kw["bias"] = False
        pos = m.end()
    return Conv(**kw)


def parse(spec: str) -> list:
    """Parse a spec string (grammar in the module docstring) into a list of layers.

    Returns ``[Input, ...]`` of :class:`Input`, :class:`Conv`, :class:`Pool` and :class:`Dense`.
    Raises ``TypeError`` if ``spec`` is not a string and ``ValueError`` naming the bad token
    (position, text, reason) for anything outside the grammar. Sizes are checked by
    :func:`analyze`, which knows the shapes.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string, got {type(spec).__name__} {spec!r}")
    tokens = spec.split()
    if not tokens:
        raise ValueError(f"spec must hold at least an input token 'in<H>x<W>x<C>', got {spec!r}")
    layers = []
    for i, tok in enumerate(tokens):
        m = _IN.fullmatch(tok)
        if m:
            if i != 0:
                raise _token_error(tokens, i, "the input token may only come first")
            h, w, c = (_positive(g, what, tokens, i) for g, what in zip(m.groups(), ("height", "width", "channels")))
            layers.append(Input(h, w, c, token=tok))
            continue
        if i == 0:
            raise _token_error(tokens, i, "the spec must start with the input, 'in<H>x<W>x<C>' (e.g. 'in32x32x1')")
        m = _CONV.fullmatch(tok)
        if m:
            layers.append(_parse_conv(tokens, i, m.group(1), m.group(2)))
            continue
        m = _POOL.fullmatch(tok)
        if m:
            k = _positive(m.group(1), "pool size", tokens, i)
            s = _positive(m.group(2), "stride", tokens, i) if m.group(2) is not None else None
            layers.append(Pool(k, s, token=tok))
            continue
        m = _FC.fullmatch(tok)
        if m:
            layers.append(Dense(_positive(m.group(1), "units", tokens, i), token=tok))
            continue
        raise _token_error(tokens, i, "not a layer: expected in<H>x<W>x<C>, conv<k>[suffixes], pool<k>[s<stride>] or fc<units>")
    return layers


# --------------------------------------------------------------------------------------------
# analysis


def _describe(layer, index):
    tok = getattr(layer, "token", "") or repr(layer)
    return f"layer {index} ({tok})"


def _check_int(value, what, layer, index, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{_describe(layer, index)}: {what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _same_padding(n, k_eff, s):
    out = -(-n // s)
    total = max((out - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2


def _conv_geometry(layer, index, h, w):
    """(k_eff, stride, (top, bottom, left, right), (out_h, out_w)) of a conv on an h x w input."""
    k = _check_int(layer.kernel, "kernel", layer, index, 1)
    s = _check_int(layer.stride, "stride", layer, index, 1)
    d = _check_int(layer.dilation, "dilation", layer, index, 1)
    k_eff = d * (k - 1) + 1
    pad = layer.padding
    if pad == "same":
        pads = _same_padding(h, k_eff, s) + _same_padding(w, k_eff, s)
    elif pad == "valid":
        pads = (0, 0, 0, 0)
    else:
        p = _check_int(pad, "padding ('same', 'valid' or an int)", layer, index, 0)
        pads = (p, p, p, p)
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if hp < k_eff or wp < k_eff:
        raise ValueError(
            f"{_describe(layer, index)}: effective kernel {k_eff} is larger than the padded input {hp}x{wp}"
        )
    return k_eff, s, pads, ((hp - k_eff) // s + 1, (wp - k_eff) // s + 1)


def _pool_geometry(layer, index, h, w):
    k = _check_int(layer.kernel, "kernel", layer, index, 1)
    s = k if layer.stride is None else _check_int(layer.stride, "stride", layer, index, 1)
    if h < k or w < k:
        raise ValueError(f"{_describe(layer, index)}: pool size {k} is larger than its input {h}x{w}")
    return k, s, ((h - k) // s + 1, (w - k) // s + 1)


def _layer_list(layers) -> list:
    """``layers`` (a spec string already parsed by the caller) as a list, or a TypeError naming it."""
    try:
        return list(layers)
    except TypeError:
        raise TypeError(f"layers must be a spec string or a list of layers, got {type(layers).__name__} {layers!r}") from None


def analyze(layers) -> list:
    """One :class:`LayerInfo` per layer, the input first: shapes, neurons, parameters, receptive field.

    ``layers`` is what :func:`parse` returns (or a hand-made list of :class:`Input`,
    :class:`Conv`, :class:`Pool`, :class:`Dense`), or a spec string. Formulas in the module
    docstring (output size; ``k*k*C_in*C_out + C_out`` and ``in*out + out`` parameters;
    Araujo et al. 2019's recursions for ``rf``, ``jump`` and ``start``).

    Raises ``TypeError`` for a non-layer and ``ValueError`` naming the layer when it does not
    fit its input (a kernel larger than the padded input, a dense ``shape`` that does not hold
    ``units``, ...).
    """
    if isinstance(layers, str):
        layers = parse(layers)
    layers = _layer_list(layers)
    if not layers or not isinstance(layers[0], Input):
        raise ValueError(f"layers must start with an Input layer, got {layers[:1]!r}")
    inp = layers[0]
    h = _check_int(inp.height, "height", inp, 0, 1)
    w = _check_int(inp.width, "width", inp, 0, 1)
    c = _check_int(inp.channels, "channels", inp, 0, 1)
    rf = np.array([1.0, 1.0])
    jump = np.array([1.0, 1.0])
    start = np.array([0.0, 0.0])
    rows = [LayerInfo(0, "input", "input", inp.token or f"in{h}x{w}x{c}", (h, w, c), (h, w, c), h * w * c, 0,
                      (1, 1), (1, 1), (0.0, 0.0))]
    counts: dict = {}
    for index, layer in enumerate(layers[1:], start=1):
        in_shape = (h, w, c)
        pads = (0, 0, 0, 0)
        if isinstance(layer, Conv):
            k_eff, s, pads, (h, w) = _conv_geometry(layer, index, h, w)
            c_out = _check_int(layer.channels, "channels", layer, index, 1)
            params = layer.kernel * layer.kernel * c * c_out + (c_out if layer.bias else 0)
            k = np.array([k_eff, k_eff], float)
            stride = np.array([s, s], float)
            p_lo = np.array([pads[0], pads[2]], float)
            c = c_out
            kind = "conv"
        elif isinstance(layer, Pool):
            kp, s, (h, w) = _pool_geometry(layer, index, h, w)
            params = 0
            k = np.array([kp, kp], float)
            stride = np.array([s, s], float)
            p_lo = np.zeros(2)
            kind = "pool"
        elif isinstance(layer, Dense):
            units = _check_int(layer.units, "units", layer, index, 1)
            shape = (1, 1, units) if layer.shape is None else tuple(int(v) for v in layer.shape)
            if len(shape) != 3 or math.prod(shape) != units or min(shape) < 1:
                raise ValueError(f"{_describe(layer, index)}: shape {layer.shape!r} must be (H, W, C) with H*W*C == units == {units}")
            n_in = h * w * c
            params = n_in * units + (units if layer.bias else 0)
            # the conv whose kernel covers the whole input, stride 1, no padding
            k = np.array([h, w], float)
            stride = np.zeros(2)  # every unit sees the same field: jump 0
            p_lo = np.zeros(2)
            h, w, c = shape
            kind = "fc" if layer.shape is None else "dense"
        elif isinstance(layer, Input):
            raise ValueError(f"{_describe(layer, index)}: an Input layer may only come first")
        else:
            raise TypeError(f"layer {index} must be an Input, Conv, Pool or Dense, got {type(layer).__name__} {layer!r}")
        # Araujo et al. (2019): r_l = r_{l-1} + (k_l - 1) j_{l-1}; start_l = start_{l-1} + ((k_l - 1)/2 - p_l) j_{l-1};
        # j_l = j_{l-1} s_l (both use j_{l-1}, so update start and r before j)
        rf = rf + (k - 1) * jump
        start = start + ((k - 1) / 2 - p_lo) * jump
        jump = jump * stride
        counts[kind] = counts.get(kind, 0) + 1
        rows.append(LayerInfo(
            index=index, name=f"{kind}{counts[kind]}", kind=kind, spec=getattr(layer, "token", "") or kind,
            in_shape=in_shape, out_shape=(h, w, c), neurons=h * w * c, params=int(params),
            rf=tuple(int(v) for v in rf), jump=tuple(int(v) for v in jump),
            start=tuple(float(v) for v in start), padding=tuple(pads),
        ))
    return rows


def totals(rows, *, include_input: bool = False) -> dict:
    """``{"neurons": ..., "params": ...}`` summed over the rows of :func:`analyze`.

    The input image's pixels are not neurons of the network unless ``include_input`` (courses
    differ on this; homework 3.2 leaves it to the student, so say which one you report).
    """
    rows = list(rows)
    body = rows if include_input else [r for r in rows if r.kind != "input"]
    return {"neurons": sum(r.neurons for r in body), "params": sum(r.params for r in rows)}


def _pair_text(pair):
    a, b = pair
    fmt = (lambda v: f"{v:g}") if isinstance(a, float) else str
    return fmt(a) if a == b else f"{fmt(a)}x{fmt(b)}"


def markdown(rows) -> str:
    """The rows of :func:`analyze` as a Markdown table, with a totals line (input excluded)."""
    rows = list(rows)
    lines = [
        "| layer | spec | output (HxWxC) | neurons | params | rf | jump | start |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for r in rows:
        shape = "x".join(str(v) for v in r.out_shape)
        lines.append(
            f"| {r.name} | `{r.spec}` | {shape} | {r.neurons:,} | {r.params:,} | {_pair_text(r.rf)} | "
            f"{_pair_text(r.jump)} | {_pair_text(r.start)} |"
        )
    t = totals(rows)
    lines.append(f"| **total** (input excluded) | | | {t['neurons']:,} | {t['params']:,} | | | |")
    return "\n".join(lines)


def to_dense(layers) -> list:
    """The fully-connected counterpart of a conv network (homework 3.2's FCNN).

    Each :class:`Conv` becomes a :class:`Dense` layer from its input size to its output size
    (``in*out + out`` parameters with a bias, ``in*out`` without), keeping the conv's output
    arrangement ``(H, W, C)`` so that the pools after it stay "an otherwise identical
    architecture". Input, pools and fc layers are kept as they are. ``layers`` may be a spec.
    """
    if isinstance(layers, str):
        layers = parse(layers)
    layers = _layer_list(layers)
    rows = analyze(layers)
    out = [layers[0]]
    for layer, row in zip(layers[1:], rows[1:]):
        if isinstance(layer, Conv):
            out.append(Dense(row.neurons, bias=layer.bias, shape=row.out_shape, token=f"dense[{row.spec}]"))
        else:
            out.append(layer)
    return out


# --------------------------------------------------------------------------------------------
# the receptive field, measured


@dataclass(frozen=True)
class ReceptiveField:
    """The support of the input gradient of one unit, measured by :func:`empirical_receptive_field`.

    ``rf`` is the extent ``(height, width)`` of the support's bounding box ``bbox = (top,
    bottom, left, right)`` (inclusive input-pixel indices), ``centre`` its centre. ``clipped``
    is true when the box touches the image border on that axis, where the field may extend into
    the padding and the measured extent is then only a lower bound. ``support`` is the boolean
    ``(H, W)`` mask itself. A unit whose whole field lies in the padding has an empty support:
    ``rf == (0, 0)``, ``bbox`` and ``centre`` None, ``clipped == (True, True)``.
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
    from .conv import correlate2d_backward

    h, w = row.in_shape[:2]
    pt, pb, pl, pr = row.padding
    x = np.zeros((g.shape[0], 1, h + pt + pb, w + pl + pr))
    wts = np.ones((1, 1, layer.kernel, layer.kernel))
    # the padding is asymmetric for 'same' with an even extent or a stride: pad explicitly and
    # keep the gradient of the real pixels only
    gx, _, _ = correlate2d_backward(g, x, wts, stride=layer.stride, padding=0, dilation=layer.dilation)
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
    from .conv import correlate2d
    from .pool import maxpool2d

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
    from .pool import maxpool2d_backward

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
    return ReceptiveField(
        layer=last,
        position=(int(position[0]), int(position[1])),
        rf=(bottom - top + 1, right - left + 1),
        bbox=(top, bottom, left, right),
        centre=((top + bottom) / 2, (left + right) / 2),
        clipped=(top == 0 or bottom == h0 - 1, left == 0 or right == w0 - 1),
        method=method,
        support=support,
    )
