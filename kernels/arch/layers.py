"""The layers of a :mod:`kernels.arch` network, and :class:`LayerInfo`, one row of :func:`~kernels.arch.analyze`.

Plain frozen dataclasses: :func:`~kernels.arch.parse` builds them from a spec, and a caller may
build them by hand. Their sizes are checked by :func:`~kernels.arch.analyze`, which knows the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Input", "Conv", "Pool", "Relu", "Dense", "LayerInfo"]


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
class Relu:
    """The rectifier ``max(x, 0)``, elementwise: no parameters, shape unchanged, receptive field unchanged."""

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
