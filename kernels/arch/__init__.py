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
* ``relu``: the rectifier ``max(x, 0)``, elementwise (no parameters, shape and receptive field
  unchanged), so that the spec a network trains from (:mod:`kernels.nn`) is the one analysed here.
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

Layout
------
One concern per file, every public name re-exported here (use ``kernels.arch.X``): ``layers``
(the layer dataclasses), ``spec`` (the grammar above and :func:`parse`), ``analysis``
(:func:`analyze`, :func:`totals`, :func:`markdown`, :func:`to_dense`) and ``receptive_field``
(:func:`empirical_receptive_field`, which runs the conv and pool kernels, imported lazily).
"""

from __future__ import annotations

from .analysis import analyze, markdown, to_dense, totals
from .layers import Conv, Dense, Input, LayerInfo, Pool, Relu
from .receptive_field import ReceptiveField, empirical_receptive_field
from .spec import parse

__all__ = [
    "Input",
    "Conv",
    "Pool",
    "Relu",
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
