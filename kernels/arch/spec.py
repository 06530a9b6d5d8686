"""The spec parser: a string such as ``"in32x32x1 conv3s2c8 pool2 fc10"`` into a list of layers.

The grammar is documented in the :mod:`kernels.arch` package docstring; errors name the bad
token, its position and the reason, with a caret under it.
"""

from __future__ import annotations

import re

from .._validate import MAX_INT
from .layers import Conv, Dense, Input, Pool, Relu

__all__ = ["parse"]

# re.ASCII: without it \d also matches other scripts' digits ("in٨x8x1"), which int() accepts
_IN = re.compile(r"in(\d+)x(\d+)x(\d+)", re.ASCII)
_CONV = re.compile(r"conv(\d+)(.*)", re.ASCII)
_POOL = re.compile(r"pool(\d+)(?:s(\d+))?", re.ASCII)
_FC = re.compile(r"fc(\d+)", re.ASCII)
_CONV_SUFFIX = re.compile(r"s(\d+)|p(\d+)|same|valid|d(\d+)|c(\d+)|nobias", re.ASCII)


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
    if value > MAX_INT:
        raise _token_error(tokens, i, f"{what} must be <= {MAX_INT} (compiled code takes it as int64), got {value}")
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
    """Parse a spec string (grammar in the :mod:`kernels.arch` docstring) into a list of layers.

    Returns ``[Input, ...]`` of :class:`Input`, :class:`Conv`, :class:`Pool`, :class:`Relu` and
    :class:`Dense`.
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
        if tok == "relu":
            layers.append(Relu(token=tok))
            continue
        m = _FC.fullmatch(tok)
        if m:
            layers.append(Dense(_positive(m.group(1), "units", tokens, i), token=tok))
            continue
        raise _token_error(tokens, i, "not a layer: expected in<H>x<W>x<C>, conv<k>[suffixes], pool<k>[s<stride>], relu or fc<units>")
    return layers
