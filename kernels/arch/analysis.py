"""Per-layer analysis of a :mod:`kernels.arch` network: shapes, neurons, parameters, receptive fields.

:func:`analyze` (one :class:`~kernels.arch.LayerInfo` per layer), :func:`totals`,
:func:`markdown` and :func:`to_dense` (the fully-connected counterpart). The formulas and
conventions are in the :mod:`kernels.arch` package docstring.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._validate import MAX_INT
from .layers import Conv, Dense, Input, LayerInfo, Pool, Relu
from .spec import parse

__all__ = ["analyze", "totals", "markdown", "to_dense"]


def _describe(layer, index):
    tok = getattr(layer, "token", "") or repr(layer)
    return f"layer {index} ({tok})"


def _check_int(value, what, layer, index, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{_describe(layer, index)}: {what} must be an integer >= {minimum}, got {value!r}")
    if value > MAX_INT:
        raise ValueError(f"{_describe(layer, index)}: {what} must be <= {MAX_INT} (compiled code takes it as int64), "
                         f"got {value!r}")
    return int(value)


def _dense_shape(layer, index):
    shape = layer.shape
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(f"{_describe(layer, index)}: shape must be None or a tuple (H, W, C) of 3 integers, "
                         f"got {shape!r}")
    return tuple(_check_int(v, f"shape[{i}]", layer, index, 1) for i, v in enumerate(shape))


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
    :class:`Conv`, :class:`Pool`, :class:`Relu`, :class:`Dense`), or a spec string. Formulas in the module
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
        elif isinstance(layer, Relu):
            # elementwise: the identity for shapes and fields (a 1x1 kernel, stride 1); its units
            # are the previous layer's neurons, activated, so it adds none to the count
            params = 0
            k = np.ones(2)
            stride = np.ones(2)
            p_lo = np.zeros(2)
            kind = "relu"
        elif isinstance(layer, Dense):
            units = _check_int(layer.units, "units", layer, index, 1)
            shape = (1, 1, units) if layer.shape is None else _dense_shape(layer, index)
            if math.prod(shape) != units:
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
            raise TypeError(f"layer {index} must be an Input, Conv, Pool or Dense, got {type(layer).__name__} {layer!r} "
                            f"(a Relu is accepted too)")
        # Araujo et al. (2019): r_l = r_{l-1} + (k_l - 1) j_{l-1}; start_l = start_{l-1} + ((k_l - 1)/2 - p_l) j_{l-1};
        # j_l = j_{l-1} s_l (both use j_{l-1}, so update start and r before j)
        rf = rf + (k - 1) * jump
        start = start + ((k - 1) / 2 - p_lo) * jump
        jump = jump * stride
        counts[kind] = counts.get(kind, 0) + 1
        rows.append(LayerInfo(
            index=index, name=f"{kind}{counts[kind]}", kind=kind, spec=getattr(layer, "token", "") or kind,
            in_shape=in_shape, out_shape=(h, w, c), neurons=0 if kind == "relu" else h * w * c, params=int(params),
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
    architecture". Input, pools, relus and fc layers are kept as they are. ``layers`` may be a spec.
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
