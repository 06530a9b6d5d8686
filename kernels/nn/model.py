"""A network built from a :mod:`kernels.arch` spec: parameters, forward pass, loss and gradient.

:func:`build` parses and analyses the spec (so the string that :func:`kernels.arch.analyze`
explains is the network that trains; a layer that does not fit its input is a ``ValueError``
naming it), creates one layer object per token (:mod:`kernels.nn.layers`) and initialises the
parameters as PyTorch's defaults do: every weight and bias uniform in ``[-1/sqrt(fan_in),
1/sqrt(fan_in)]`` (``kaiming_uniform_(a=sqrt(5))`` for the weights, with ``fan_in = C_in k k``
for a conv and ``in`` for a dense layer), drawn in order from ``numpy.random.default_rng(seed)``.

All parameters live in one flat buffer and all gradients in another; ``Model.params`` and the
gradient list are views into them (PyTorch's layouts), so an optimizer updates the whole model
with one compiled call (:mod:`kernels.nn.train`), and writing into ``model.params[i][...]``
changes the model.
"""

from __future__ import annotations

import math
import numbers
import threading

import numpy as np

from .. import _recycled, _validate, arch
from ..arch import Conv, Dense, Pool, Relu
from .layers import ConvLayer, DenseLayer, PoolLayer, ReluLayer
from . import layers as _layers
from . import program as _program
from .loss import softmax_cross_entropy
from .threads import single_threaded

__all__ = ["Model", "build"]

_DTYPES = {"float32": np.float32, "float64": np.float64}
_DEFERRED_RELU = object()  # a relu to be placed after the pool that follows it

#: a pass over a batch of fewer multiply-adds (convolutions and dense layers) than this runs on
#: one thread (:mod:`kernels.nn.threads`): the digits network at batch 64 (5M), every network at
#: batch 1; LeNet-5 at batch 64 (44M) keeps Numba's threads (BLAS runs on one thread always)
PARALLEL_MIN_MACS = 16_000_000

#: A pass over one image of at most COMPILED_MAX_IMAGE_MACS multiply-adds, or over a batch of
#: at most COMPILED_MAX_MACS of a network of at most COMPILED_SMALL_NET per image, runs as one
#: compiled call (:mod:`kernels.nn.program`) instead of layer by layer. Measured forward +
#: backward, float32, on the 2-core EPYC (layer by layer / compiled, in us; after the compiled
#: loops' last changes): LeNet-5 (0.69M multiply-adds an image) at batch 1 191-207/98-116, at 2
#: 309/263 and at 4 485/560 (earlier loops); the homework's 32x32 network (12k) at 1 82-87/12-13,
#: at 16 220/150, at 32 355/305, at 64 537/660; the digits network (84k, small planes of many
#: channels: short runs) at 1 68-77/42-65, at 2 90/125; one image of a 32x32x3 network of 1.6M
#: 353/312, of 5.6M 569/737, of 7.5M 837/790, of 22.6M 2536/2507 (no gain past a few million,
#: and the layers' kernels use both cores). Larger batches go to BLAS and the blocked kernels,
#: whose fixed cost per call the compiled loops cannot beat there.
COMPILED_MAX_IMAGE_MACS = 2_000_000
COMPILED_MAX_MACS = 400_000
COMPILED_SMALL_NET = 50_000
#: None: the compiled pass by :data:`COMPILED_MAX_MACS`; True or False: always or never (tests)
FORCE_COMPILED = None
_PROGRAMS_KEPT = 4  # batch sizes whose programs (and buffers) a model keeps


class Model:
    """A feed-forward network; make one with :func:`build`.

    Attributes: ``spec`` (the string), ``dtype``, ``input_shape`` ``(C, H, W)``, ``classes``
    (the number of logits), ``rows`` (:func:`kernels.arch.analyze`'s rows), ``layers`` (the layer
    objects, one per token after the input; a ``relu pool`` pair runs as pool then relu, the same
    values and gradients on a quarter of the elements), ``params`` (list of arrays, PyTorch
    layouts, views into one flat buffer ``flat_params``), ``macs_per_image``.

    Threads: forward passes (``forward``, ``predict``, :func:`~kernels.nn.accuracy`) may run in
    several threads at once, each with its own scratch buffers; a training step (``loss_and_grad``,
    :class:`~kernels.nn.Trainer`) writes the model's gradients and the layers' saved inputs, so
    one model trains from one thread at a time.
    """

    def __init__(self, spec, rows, layers, dtype, seed, parsed_layers):
        self.spec, self.rows, self.layers = spec, rows, layers
        self.dtype = np.dtype(dtype)
        h, w, c = rows[0].out_shape
        self.input_shape = (c, h, w)
        self.classes = math.prod(rows[-1].out_shape)
        shapes = [s for layer in layers for s in layer.shapes]
        # math.prod: Python ints, where np.prod wraps around int64 (a conv9223372036854775807's
        # filter would count 1 element)
        sizes = [math.prod(s) for s in shapes]
        self.size = int(sum(sizes))
        _validate.check_allocation(2 * self.size * self.dtype.itemsize, f"the parameters and gradients of {spec!r}")
        self.flat_params = np.empty(self.size, dtype=self.dtype)
        self.flat_grads = np.zeros(self.size, dtype=self.dtype)
        self._bind()
        rng = np.random.default_rng(seed)
        for layer, views in zip(layers, self._per_layer(self.params)):
            for p in views:
                bound = 1.0 / np.sqrt(layer.fan_in)
                p[...] = rng.uniform(-bound, bound, p.shape)
        self.macs_per_image = sum(
            r.neurons * (r.in_shape[2] * int(layer.kernel) ** 2 if r.kind == "conv" else math.prod(r.in_shape))
            for r, layer in zip(rows[1:], parsed_layers[1:]) if r.kind in ("conv", "fc"))
        # the bytes of a pass's activations per image (each layer's output, a relu's in place, and a
        # pool's int64 indices of its maxima), for _recycled.keep_heap: malloc then keeps up to
        # twice that, the activations and their gradients
        self._pass_bytes_per_image = sum(math.prod(r.out_shape) * (self.dtype.itemsize + 8 * (r.kind == "pool"))
                                         for r in rows[1:] if r.kind != "relu")
        # a relu first would rectify the caller's array in place: give it a copy
        self._copy_input = isinstance(layers[0], ReluLayer)
        self._local = threading.local()  # the compiled passes' programs, one set per thread

    def _bind(self):
        """``params`` and the gradients as views into the flat buffers, handed to the layers."""
        self.params, self._grads = [], []
        offset = 0
        for shape in (s for layer in self.layers for s in layer.shapes):
            size = math.prod(shape)
            self.params.append(self.flat_params[offset: offset + size].reshape(shape))
            self._grads.append(self.flat_grads[offset: offset + size].reshape(shape))
            offset += size
        for layer, params, grads in zip(self.layers, self._per_layer(self.params), self._per_layer(self._grads)):
            layer.bind(params, grads)

    def _per_layer(self, arrays):
        """``arrays`` (one per parameter) split into each layer's list."""
        out, i = [], 0
        for layer in self.layers:
            out.append(arrays[i: i + len(layer.shapes)])
            i += len(layer.shapes)
        return out

    # copy.deepcopy and pickle: the flat buffers travel, the views are made again from them (a
    # copied view would no longer be one, and training the copy would leave its layers behind),
    # and the per-thread buffers start afresh
    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("params", "_grads", "_local"):
            del state[key]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()
        self._bind()

    def __repr__(self):
        return f"Model({self.spec!r}, dtype={self.dtype.name}, params={self.size})"

    # ------------------------------------------------------------------ validation at the door
    def check_x(self, x, name="x"):
        """``x`` as a C-contiguous ``(N, C, H, W)`` array of the model's dtype, or a TypeError /
        ValueError naming ``name``: not a float32/float64 array, wrong shape for the spec, an
        empty batch, a NaN or inf, a value out of the range of the model's dtype."""
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except Exception as exc:
                raise TypeError(f"{name} must be a float array, got {type(x).__name__}: {exc}") from None
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be a float32 or float64 array, got dtype {x.dtype}")
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"{name} must have shape (N, {', '.join(map(str, self.input_shape))}) for the spec "
                             f"{self.spec!r} (N, C, H, W), got {x.shape}")
        if x.shape[0] < 1:
            raise ValueError(f"{name} must hold at least one image, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} holds non-finite values (NaN or inf): {int((~np.isfinite(x)).sum())} of {x.size}")
        # checked again after the conversion: a finite float64 beyond float32's range (1e39) is
        # inf in a float32 model, and would surface as NaN logits or a "diverged" fit
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(x, dtype=self.dtype)
        if out.dtype != x.dtype and not np.isfinite(out).all():
            raise ValueError(f"{name} holds values out of the range of the model's dtype {self.dtype.name} "
                             f"(|x| > {np.finfo(self.dtype).max:.6g}): {int((~np.isfinite(out)).sum())} of {x.size} "
                             f"would become inf")
        return out

    def check_y(self, y, n, name="y"):
        """``y`` as an int64 ``(n,)`` array of labels in ``[0, classes)``, or a TypeError / ValueError."""
        y = np.asarray(y)
        if y.dtype.kind not in "iu" or y.dtype == np.bool_:
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
        if y.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), one label per image, got {y.shape}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= self.classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ValueError(f"{name} labels must lie in [0, {self.classes}) for the {self.classes} outputs of the "
                             f"spec, got {bad}")
        return np.ascontiguousarray(y, dtype=np.int64)

    # ------------------------------------------------------------------ passes on checked input
    def _small(self, n):
        """Whether a pass over ``n`` images is small enough to run on one thread
        (:data:`PARALLEL_MIN_MACS`; :mod:`kernels.nn.threads` says why)."""
        return n * self.macs_per_image < PARALLEL_MIN_MACS

    def _compiled(self, n):
        """The program for batches of ``n`` if such a pass runs compiled, else None."""
        use = FORCE_COMPILED
        if use is None:
            use = _layers.FORCE_PATHS is None and (
                (n == 1 and self.macs_per_image <= COMPILED_MAX_IMAGE_MACS)
                or (self.macs_per_image <= COMPILED_SMALL_NET and n * self.macs_per_image <= COMPILED_MAX_MACS))
        if not use:
            return None
        # a program's buffers are written by every pass: one set per thread, so that forward
        # passes (inference) may run in several threads at once
        programs = getattr(self._local, "programs", None)
        if programs is None:
            programs = self._local.programs = {}
        program = programs.get(n)
        if program is None:
            if len(programs) >= _PROGRAMS_KEPT:
                programs.clear()
            program = programs[n] = _program.build_program(self, n)
        return program

    def _forward(self, x, keep):
        program = self._compiled(x.shape[0])
        if program is not None:
            return _program.forward(program, self.flat_params, x).copy()
        with single_threaded(self._small(x.shape[0])):
            return self._forward_pass(x, keep)

    def _forward_pass(self, x, keep):
        # the pass's arrays, freed at its end, stay with malloc for the next pass (faulted in
        # afresh every training step otherwise: _recycled.keep_heap says why)
        _recycled.keep_heap(x.shape[0] * self._pass_bytes_per_image)
        if self._copy_input:
            x = x.copy()
        for layer in self.layers:
            x = layer.forward(x, keep)
        return np.ascontiguousarray(x.reshape(x.shape[0], -1))

    def _backward(self, gz):
        h, w, c = self.rows[-1].out_shape
        g = gz.reshape(gz.shape[0], c, h, w)
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, need_gx=i > 0)

    def _loss_and_grad(self, x, y):
        """Loss (float) at checked ``x``, ``y``; gradients left in ``flat_grads``; also the logits."""
        program = self._compiled(x.shape[0])
        if program is not None:
            loss, z = _program.loss_and_grad(program, self.flat_params, self.flat_grads, x, y)
            return loss, z.copy()
        with single_threaded(self._small(x.shape[0])):
            z = self._forward_pass(x, keep=True)
            loss, gz = softmax_cross_entropy(z, y)
            self._backward(gz)
        return loss, z

    # ------------------------------------------------------------------ public
    def forward(self, x):
        """Logits ``(N, classes)`` of the batch ``x`` ``(N, C, H, W)`` (float32 or float64, converted
        to the model's dtype)."""
        return self._forward(self.check_x(x), keep=False)

    def loss_and_grad(self, x, y):
        """``(loss, grads)``: the mean softmax cross-entropy of ``forward(x)`` against the integer
        labels ``y`` (a float, accumulated in float64) and its gradient with respect to each of
        ``params`` (new arrays, aligned with ``params``, the model's dtype)."""
        x = self.check_x(x)
        y = self.check_y(y, x.shape[0])
        loss, _ = self._loss_and_grad(x, y)
        return loss, [g.copy() for g in self._grads]

    def predict(self, x):
        """The predicted class of each image of ``x``: ``argmax`` of the logits, int64 ``(N,)``."""
        return np.argmax(self.forward(x), axis=1)


def build(spec, *, seed=0, dtype="float32") -> Model:
    """Build the network of ``spec`` (the :mod:`kernels.arch` grammar: ``in{H}x{W}x{C}``, ``conv``,
    ``pool``, ``relu``, ``fc``), with PyTorch's default initialisation drawn from ``seed``.

    ``dtype`` is ``"float32"`` or ``"float64"`` (or the NumPy type). The logits are the last
    layer's outputs, flattened. Raises ``TypeError``/``ValueError`` for a spec outside the
    grammar, a layer that does not fit its input (e.g. a filter larger than the shrunk image),
    a network without parameters, a bad seed or dtype.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        dtype = _DTYPES[dtype]
    elif dtype not in (np.float32, np.float64) or isinstance(dtype, bool):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    parsed = arch.parse(spec)
    rows = arch.analyze(parsed)
    if len(parsed) < 2:
        raise ValueError(f"spec {spec!r} has no layer after its input")
    layers = []
    for index, (layer, row) in enumerate(zip(parsed[1:], rows[1:]), start=1):
        c_in = row.in_shape[2]
        if isinstance(layer, Conv):
            layers.append(ConvLayer(c_in, layer.channels, layer.kernel, layer.stride, layer.dilation, row.padding,
                                    layer.bias, dtype, row.out_shape[:2]))
        elif isinstance(layer, Pool):
            layers.append(PoolLayer(layer.kernel, layer.kernel if layer.stride is None else layer.stride))
            if len(layers) > 1 and layers[-2] is _DEFERRED_RELU:
                layers[-2] = layers[-1]
                layers[-1] = ReluLayer()
        elif isinstance(layer, Relu):
            if index + 1 < len(parsed) and isinstance(parsed[index + 1], Pool):
                # relu then max-pool == max-pool then relu (max commutes with the monotone relu),
                # with the same gradient (the window's maximum is routed the same way, and masked
                # when it is not positive): rectify the pooled map, a quarter of the size
                layers.append(_DEFERRED_RELU)
                continue
            layers.append(ReluLayer())
        elif isinstance(layer, Dense):
            layers.append(DenseLayer(math.prod(row.in_shape), layer.units, layer.bias, dtype))
    if not any(layer.shapes for layer in layers):
        raise ValueError(f"spec {spec!r} has no trainable layer (conv or fc)")
    return Model(spec, rows, layers, dtype, int(seed), parsed)
