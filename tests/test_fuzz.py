"""Hostile input across the whole public API (issue 7): the fuzz suite.

Every public function -- conv (correlate2d, convolve2d, correlate2d_backward), pool (maxpool2d,
maxpool2d_backward), optim (loss, grad, min_norm_solution, gd, sgd, rmsprop, adagrad, adam),
hypergrad (hypergrad in its four methods, optimal_lr_one_step, tune_lr, unroll_graph) and arch
(parse, analyze, to_dense) -- is called with a valid random call in which at most one argument
has been made hostile:

* arrays: dtype int/uint/bool/complex/float16/longdouble/object, ``None``, a string, an empty or
  0-d array, one axis more or less, one axis a different length (mismatched dimensions), NaN,
  +-inf, subnormal or near-overflow (1e308) values, non-contiguous, negative-stride, Fortran,
  read-only or big-endian layouts, a nested list;
* hyper-parameters: 0, negative, NaN, +-inf, bools, strings, ``None``, floats for integers,
  huge integers (beyond int64), huge strides and paddings, tuples of the wrong length.

The invariant, for every call: either it returns the reference's answer (``kernels.naive``, or
the closed form stated beside the function) or it raises ``ValueError``/``TypeError`` whose
message names the argument that was made hostile. Whether the hostile value is *valid* is
decided here, independently of the library (the documented domains, and the convolution and
pooling geometry recomputed): a valid call that raises fails, an invalid one that returns fails,
and any other exception (a Numba typing error, an ``IndexError``, a segfault) fails.

Counts of the cases tried per function (and how each ended) are written as JSON to the file
named by ``KERNELS_FUZZ_COUNTS`` when set (``python -m kernels reliability`` does so);
``KERNELS_FUZZ_EXAMPLES`` sets the hypothesis examples per test (default 100).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import warnings
from collections import Counter, defaultdict

import numpy as np
import pytest
from numba import prange
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels import arch, naive

EXAMPLES = int(os.environ.get("KERNELS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
TOL = {F32: 1e-5, F64: 1e-12}
INT64_MAX = int(np.iinfo(np.int64).max)

COUNTS: dict = defaultdict(Counter)
MUTATIONS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    path = os.environ.get("KERNELS_FUZZ_COUNTS")
    if path:
        with open(path, "w") as fh:
            json.dump({"examples_per_test": EXAMPLES, "functions": {k: dict(v) for k, v in sorted(COUNTS.items())},
                       "mutations": dict(sorted(MUTATIONS.items()))}, fh, indent=1)


# --------------------------------------------------------------------------------------------
# the invariant
# --------------------------------------------------------------------------------------------


def names(message: str, arg) -> bool:
    """Whether ``message`` names ``arg`` (a word, not part of one; a tuple: any of them)."""
    if isinstance(arg, tuple):
        return any(names(message, a) for a in arg)
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])", message) is not None


def check(fn, call, reference, compare, target, expect, mutation):
    """Run one case: ``expect`` is "valid", "invalid" or "either" (for the hostile ``target``)."""
    COUNTS[fn]["tried"] += 1
    MUTATIONS[mutation.split(":")[0]] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = call()
    except (ValueError, TypeError) as exc:
        assert expect != "valid", f"{fn}: a valid call ({mutation} on {target}) raised {type(exc).__name__}: {exc}"
        assert target is not None and names(str(exc), target), (
            f"{fn}: {type(exc).__name__} for hostile {target} ({mutation}) does not name it: {exc}")
        COUNTS[fn]["raised"] += 1
        return
    assert expect != "invalid", f"{fn}: hostile {target} ({mutation}) was accepted and returned {got!r:.300}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = reference()
    compare(got, ref)
    COUNTS[fn]["returned"] += 1


# --------------------------------------------------------------------------------------------
# hostile values
# --------------------------------------------------------------------------------------------

BAD_DTYPES = [np.int64, np.int32, np.uint8, np.bool_, np.complex128, np.float16, np.longdouble, object]
ARRAY_MUTATIONS = ["dtype", "none", "string", "empty", "zero_d", "ndim_up", "ndim_down", "mismatch",
                   "nan", "inf", "subnormal", "huge", "noncontig", "negstride", "readonly", "fortran",
                   "bigendian", "list"]
LAYOUTS = ("noncontig", "negstride", "readonly", "fortran", "bigendian")


class Arr:
    """What an array argument accepts: ``ndims``; ``optional`` (None allowed); ``finite`` (NaN/inf
    refused); ``out`` (an output: must be writeable, native, of the exact shape)."""

    def __init__(self, ndims, optional=False, finite=False, out=False):
        self.ndims, self.optional, self.finite, self.out = tuple(ndims), optional, finite, out


def relayout(a, kind):
    if kind == "noncontig":
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == "negstride":
        return np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])[
            tuple(slice(None, None, -1) for _ in a.shape)]
    if kind == "readonly":
        b = a.copy()
        b.setflags(write=False)
        return b
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    raise AssertionError(kind)


def mutate_array(draw, a, spec: Arr):
    """(new value, expectation, label) for one hostile change of array ``a``."""
    kind = draw(st.sampled_from(ARRAY_MUTATIONS))
    if not isinstance(a, np.ndarray) and kind in LAYOUTS + ("list",):
        return a, "valid", kind  # a Python scalar has no layout
    if not isinstance(a, np.ndarray) and kind in ("nan", "inf", "subnormal", "huge"):
        # a Python scalar (a 2-D image's bias) stays a Python scalar: only its value turns hostile
        value = {"nan": math.nan, "inf": draw(st.sampled_from([math.inf, -math.inf])), "subnormal": 1e-310,
                 "huge": 1e308}[kind]
        return value, "valid", kind
    a = np.asarray(a)
    if kind == "dtype":
        dt = draw(st.sampled_from(BAD_DTYPES))
        return a.astype(dt), "invalid", f"dtype:{np.dtype(dt).name}"
    if kind == "none":
        return None, ("valid" if spec.optional else "invalid"), kind
    if kind == "string":
        return "not an array", "invalid", kind
    if kind == "empty":
        if a.ndim == 0:
            return np.empty(0, a.dtype), "invalid", kind
        shape = list(a.shape)
        shape[draw(st.integers(0, a.ndim - 1))] = 0
        return np.empty(shape, a.dtype), "invalid", kind
    if kind == "zero_d":
        return np.array(1.5, a.dtype), ("either" if 0 in spec.ndims else "invalid"), kind
    if kind in ("ndim_up", "ndim_down"):
        b = a[None] if kind == "ndim_up" or a.ndim == 0 else a[0]
        if spec.out:
            return b, "invalid", kind
        return b, ("either" if b.ndim in spec.ndims else "invalid"), kind
    if kind == "mismatch":
        if a.ndim == 0:
            return np.full(2, 1.0, a.dtype), ("either" if 1 in spec.ndims and not spec.out else "invalid"), kind
        ax = draw(st.integers(0, a.ndim - 1))
        n = a.shape[ax] + draw(st.sampled_from([-1, 1, 2]))
        if n < 1:
            n = a.shape[ax] + 1
        shape = list(a.shape)
        shape[ax] = n
        b = np.asarray(np.random.default_rng(draw(st.integers(0, 9))).standard_normal(shape), a.dtype)
        return b, ("invalid" if spec.out else "either"), kind
    if kind in ("nan", "inf", "subnormal", "huge"):
        b = a.astype(a.dtype, copy=True)
        if b.size == 0 or b.dtype.kind != "f":
            return b, "either", kind
        flat = b.reshape(-1)
        if kind in ("nan", "inf"):
            k = draw(st.integers(1, min(3, flat.size)))
            pos = draw(st.lists(st.integers(0, flat.size - 1), min_size=k, max_size=k))
            flat[pos] = np.nan if kind == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
            return b, ("either" if spec.finite is None else "invalid" if spec.finite and not spec.out else "valid"), kind
        fi = np.finfo(b.dtype)
        peak = max(float(np.max(np.abs(flat))), 1e-300)
        top = float(fi.smallest_normal) / 8 if kind == "subnormal" else (1e308 if b.dtype == F64 else 3e38)
        flat[...] = flat.astype(np.float64) / peak * top  # scaled in float64: the factor itself may not fit
        return b, "valid", kind
    if kind in LAYOUTS:
        if a.ndim == 0:
            return a, "valid", kind
        b = relayout(a, kind)
        if spec.out and kind in ("readonly", "bigendian"):
            return b, "invalid", kind
        return b, "valid", kind
    if kind == "list":
        return a.tolist(), ("invalid" if spec.out else "valid" if a.dtype == F64 else "either"), kind
    raise AssertionError(kind)


def _real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def int_in(lo, hi=INT64_MAX):
    return lambda v: _int(v) and lo <= v <= hi


def float_in(lo, hi=math.inf, lo_open=False, hi_open=False):
    def ok(v):
        if not _real(v) or not math.isfinite(float(v)):
            return False
        v = float(v)
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return ok


def pair_in(lo, hi=INT64_MAX):
    def ok(v):
        if isinstance(v, (tuple, list, np.ndarray)):
            return len(v) == 2 and all(int_in(lo, hi)(e) for e in v)
        return int_in(lo, hi)(v)
    return ok


HOSTILE_SCALARS = [0, -1, -7, 0.0, -0.5, 2.5, math.nan, math.inf, -math.inf, True, False, "2", None,
                   2**63, 2**70, [2], np.int64(2), np.float32(0.25), 1e308, 5e-324]
INT_POOL = [0, -1, 1, 2, 3, True, 2.0, "2", None, 2**63, 2**70, np.int64(2), np.uint8(1), [1]]
FLOAT_POOL = [0, 0.0, -1.0, 0.1, 0.5, math.nan, math.inf, -math.inf, True, "0.1", None, np.float32(0.25), 5e-324,
              1e308, 2, [0.1]]
PAIR_POOL = [(1, 2), [2, 1], (0, 1), (1,), (1, 2, 3), np.array([1, 2]), (1.5, 1), ("1", 1), (True, 1),
             2**70, -1, 0, "same", None]


def mutate_param(draw, pool, valid, args):
    v = draw(st.sampled_from(pool))
    ok = valid(v, args) if valid.__code__.co_argcount == 2 else valid(v)
    return v, ("valid" if ok else "invalid"), f"param:{type(v).__name__}"


# --------------------------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------------------------


def plain(v):
    """An argument as the naive references take it (they validate nothing): nested lists as
    arrays, an integer array pair as a tuple, NumPy scalars as Python numbers (NumPy 2 would
    otherwise compute ``np.float32(l2) * float`` in float32)."""
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, list):
        v = np.asarray(v)
    if isinstance(v, np.ndarray) and v.dtype.kind in "iu" and v.ndim == 1 and v.size == 2:
        return (int(v[0]), int(v[1]))
    return v


def plain_kw(d):
    return {k: plain(v) for k, v in d.items()}


def _f64(a):
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), np.abs(a), 0.0)


def close_to(got, ref, scale, nterms=1, headroom=1.0):
    """Elementwise |got - ref| <= tol*scale + a subnormal floor, NaN and inf exactly where ref
    has them; positions where a partial sum may overflow (scale near the dtype's max) are
    order-dependent and exempt (``headroom``: how much larger than ``scale`` the kernel's
    partial sums may be, e.g. ``n`` for a gradient scaled by 2/n after the sum)."""
    got, ref = np.asarray(got), np.asarray(ref)
    ref = ref.astype(ref.dtype.newbyteorder("="))  # the references keep a big-endian input's order
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
    fi = np.finfo(ref.dtype)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), ref.shape)
    det = scale * 1.001 * headroom < float(fi.max)
    g, r, s = got[det].astype(np.float64), ref[det].astype(np.float64), scale[det]
    np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
    inf = np.isinf(r)
    np.testing.assert_array_equal(g[inf], r[inf])
    fin = np.isfinite(r)
    assert np.all(np.isfinite(g[fin])), "finite reference, non-finite result"
    err = np.abs(g[fin] - r[fin])
    bound = TOL[ref.dtype] * s[fin] + 4 * (nterms + 2) * float(fi.smallest_subnormal)
    assert np.all(err <= bound), f"max excess {np.max(err - bound)} (err {err.max()})"


def norm_close(got, ref, rtol):
    """NaN/inf where ref has them; finite entries within rtol * (1 + max |ref|)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)])
    if fin.any():
        scale = 1.0 + np.max(np.abs(ref[fin]))
        assert np.max(np.abs(got[fin] - ref[fin])) <= rtol * scale, (got, ref)


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------


def conv_pads(padding, k, d, stride):
    ekh, ekw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "full":
            return (ekh, ekh, ekw, ekw)
        if stride != (1, 1):
            return None
        return (ekh // 2, ekh - ekh // 2, ekw // 2, ekw - ekw // 2)
    ph, pw = (padding, padding) if _int(padding) else tuple(int(p) for p in padding)
    return (ph, ph, pw, pw)


def conv_geometry(a):
    """Output (H, W) of a checked convolution call, or None where its geometry is invalid."""
    x, w = np.asarray(a["x"]), np.asarray(a["w"])
    if x.ndim not in (2, 4) or w.ndim != x.ndim:
        return None
    if not (pair_in(1)(a["stride"]) and pair_in(1)(a["dilation"])):
        return None
    pad = a["padding"]
    if isinstance(pad, str):
        pad = pad.lower()  # documented modes, in any case
    if not ((isinstance(pad, str) and pad in ("valid", "same", "full")) or pair_in(0)(pad)):
        return None
    two = lambda v: (int(v), int(v)) if _int(v) else (int(v[0]), int(v[1]))  # noqa: E731
    s, d, k = two(a["stride"]), two(a["dilation"]), w.shape[-2:]
    pads = conv_pads(pad, k, d, s)
    if pads is None:
        return None
    H, W = x.shape[-2:]
    eh, ew = d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1
    if eh > H + pads[0] + pads[1] or ew > W + pads[2] + pads[3]:
        return None
    return ((H + pads[0] + pads[1] - eh) // s[0] + 1, (W + pads[2] + pads[3] - ew) // s[1] + 1)


def conv_base(draw, with_bias=True):
    dtype = draw(st.sampled_from([F32, F64]))
    batch = draw(st.booleans())
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dl = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(["int", "pair", "valid", "same", "full"] if s == (1, 1) else ["int", "pair", "valid", "full"]))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    padding = {"int": p[0], "pair": p, "valid": "valid", "same": "same", "full": "full"}[mode]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    H = dl[0] * (kh - 1) + 1 + draw(st.integers(0, 6))
    W = dl[1] * (kw - 1) + 1 + draw(st.integers(0, 6))
    if batch:
        N, C, Co = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = rng.standard_normal((Co, C, kh, kw)).astype(dtype)
        bias = rng.standard_normal(Co).astype(dtype) if with_bias and draw(st.booleans()) else None
    else:
        x = rng.standard_normal((H, W)).astype(dtype)
        w = rng.standard_normal((kh, kw)).astype(dtype)
        bias = draw(st.sampled_from([None, 0.5, "arr0", "arr1"])) if with_bias else None
        if isinstance(bias, str):
            bias = np.full(() if bias == "arr0" else (1,), -0.25, dtype)
    stride = s[0] if s[0] == s[1] and draw(st.booleans()) else s
    dilation = dl[0] if dl[0] == dl[1] and draw(st.booleans()) else dl
    return dict(x=x, w=w, bias=bias, stride=stride, padding=padding, dilation=dilation), rng


CONV_ARRAYS = {"x": Arr((2, 4)), "w": Arr((2, 4)), "bias": Arr((0, 1), optional=True), "out": Arr((2, 4), optional=True, out=True)}
CONV_PARAMS = {
    "stride": (PAIR_POOL + [3, 10**9, (1, 10**9)], pair_in(1)),
    "dilation": (PAIR_POOL + [10**6], pair_in(1)),
    "padding": (PAIR_POOL + ["valid", "full", "SAME", "zero", 40, (0, 40)],
                lambda v: (isinstance(v, str) and v.lower() in ("valid", "same", "full")) or pair_in(0)(v)),
}


def conv_expect(a, target, expect):
    """Tighten the generic expectation with the geometry recomputed here."""
    if expect == "invalid":
        return expect
    geo = conv_geometry(a)
    if geo is None:
        return "invalid" if expect == "valid" else expect
    x = np.asarray(a["x"]) if isinstance(a["x"], np.ndarray) else None
    w = np.asarray(a["w"]) if isinstance(a["w"], np.ndarray) else None
    if x is not None and w is not None and x.ndim == 4 and w.ndim == 4 and x.shape[1] != w.shape[1]:
        return "invalid" if expect == "valid" else expect
    return expect


def _mutate_call(draw, a, arrays, params):
    """Mutate one argument of ``a`` in place: (target, expectation, label)."""
    choices = ["(none)"] + [k for k in arrays if a.get(k) is not None or arrays[k].optional] + list(params)
    target = draw(st.sampled_from(choices))
    if target == "(none)":
        return None, "valid", "unchanged"
    if target in params:
        pool, valid = params[target]
        a[target], expect, label = mutate_param(draw, pool, valid, a)
        return target, expect, label
    value = a.get(target)
    if value is None:  # an absent optional array: give it a hostile value
        a[target] = draw(st.sampled_from(["not an array", np.ones(3, np.int64)]))
        return target, "invalid", "present:bad"
    a[target], expect, label = mutate_array(draw, value, arrays[target])
    return target, expect, label


def _too_big_for_the_reference(a, limit=2**22):
    """Whether the zero-padded input (what the naive reference materialises) is over ``limit``."""
    if conv_geometry(a) is None:
        return False
    x, w = np.asarray(a["x"]), np.asarray(a["w"])
    two = lambda v: (int(v), int(v)) if _int(v) else (int(v[0]), int(v[1]))  # noqa: E731
    pad = a["padding"].lower() if isinstance(a["padding"], str) else a["padding"]
    pt, pb, pl, pr = conv_pads(pad, w.shape[-2:], two(a["dilation"]), two(a["stride"]))
    return (x.shape[-2] + pt + pb) * (x.shape[-1] + pl + pr) > limit


def _ref_geometry(a):
    """stride/padding/dilation as the naive references take them (padding modes lower-case)."""
    kw = plain_kw({k: a[k] for k in ("stride", "padding", "dilation")})
    if isinstance(kw["padding"], str):
        kw["padding"] = kw["padding"].lower()
    return kw


def _conv_scale(fn, a, bias):
    ref_fn = getattr(naive, fn)
    kw = _ref_geometry(a)
    b = None if bias is None else _f64(bias)
    return ref_fn(_f64(a["x"]), _f64(a["w"]), b, **kw)


@pytest.mark.parametrize("fn", ["correlate2d", "convolve2d"])
@FUZZ
@given(data=st.data())
def test_fuzz_conv_forward(fn, data):
    draw = data.draw
    a, rng = conv_base(draw)
    # an out= array of the right shape, sometimes
    geo = conv_geometry(a)
    if draw(st.booleans()):
        x = a["x"]
        shape = geo if x.ndim == 2 else (x.shape[0], a["w"].shape[0]) + geo
        a["out"] = np.full(shape, 7.0, x.dtype.newbyteorder("="))
    else:
        a["out"] = None
    target, expect, label = _mutate_call(draw, a, CONV_ARRAYS, CONV_PARAMS)
    expect = conv_expect(a, target, expect)
    if expect != "invalid" and target != "out" and isinstance(a.get("out"), np.ndarray):
        if _too_big_for_the_reference(a):
            a["out"] = None  # not terabytes of out= here
        geo = conv_geometry(a)  # keep out= consistent with a changed geometry
        x = np.asarray(a["x"])
        if geo is not None and x.ndim == 4 and np.ndim(a["w"]) == 4 and a["out"] is not None:
            a["out"] = np.full((x.shape[0], np.shape(a["w"])[0]) + geo, 7.0, x.dtype.newbyteorder("="))
        elif geo is not None and x.ndim == 2 and a["out"] is not None:
            a["out"] = np.full(geo, 7.0, x.dtype.newbyteorder("="))
    kfn, rfn = getattr(kernels, fn), getattr(naive, fn)
    kw = {k: a[k] for k in ("stride", "padding", "dilation")}
    out = a["out"]
    if expect != "invalid" and _too_big_for_the_reference(a):
        # e.g. dilation 10**6 with padding 'same'/'full': the naive reference would pad to
        # terabytes. The kernel must still answer (right shape) or refuse up front with an
        # AllocationError (a ValueError and a MemoryError) naming padding and dilation.
        COUNTS[fn]["tried"] += 1
        MUTATIONS["huge geometry"] += 1
        try:
            res = kfn(a["x"], a["w"], a["bias"], out=out, **kw)
        except MemoryError as exc:
            assert isinstance(exc, ValueError) and "padding" in str(exc), exc
            COUNTS[fn]["raised"] += 1
            return
        x = np.asarray(a["x"])
        geo = conv_geometry(a)
        assert res.shape == (geo if x.ndim == 2 else (x.shape[0], np.shape(a["w"])[0]) + geo)
        COUNTS[fn]["returned"] += 1
        return

    def call():
        res = kfn(a["x"], a["w"], a["bias"], out=out, **kw)
        if out is not None:
            assert res is out
        return np.array(res)

    def compare(got, ref):
        x = np.asarray(a["x"])
        close_to(got, ref, _conv_scale(fn, a, a["bias"]), nterms=int(np.prod(np.shape(a["w"]))))
        assert got.dtype == x.dtype.newbyteorder("=")

    ref_kw = _ref_geometry(a)
    check(fn, call, lambda: rfn(plain(a["x"]), plain(a["w"]), plain(a["bias"]), **ref_kw), compare, target,
          expect, label)


@FUZZ
@given(data=st.data())
def test_fuzz_correlate2d_backward(data):
    draw = data.draw
    a, rng = conv_base(draw, with_bias=False)
    del a["bias"]
    arrays = {"x": CONV_ARRAYS["x"], "w": CONV_ARRAYS["w"]}
    target, expect, label = _mutate_call(draw, a, arrays, CONV_PARAMS)
    expect = conv_expect(a, target, expect)
    geo = conv_geometry(a)
    x = np.asarray(a["x"]) if isinstance(a["x"], list) else a["x"]
    dtype = x.dtype.newbyteorder("=") if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype.itemsize in (4, 8) else F64
    if geo is not None and isinstance(x, np.ndarray) and x.ndim in (2, 4) and np.ndim(a["w"]) == x.ndim:
        gshape = geo if x.ndim == 2 else (x.shape[0], np.shape(a["w"])[0]) + geo
    else:
        gshape = (2, 2)
    if math.prod(gshape) > 2**22:
        return  # an output of terabytes: no grad_out can be built for it (the forward test covers it)
    a["grad_out"] = rng.standard_normal(gshape).astype(dtype)
    if target is None and draw(st.booleans()):  # hostile grad_out instead
        target = "grad_out"
        a["grad_out"], expect, label = mutate_array(draw, a["grad_out"], Arr((2, 4)))
        if label.startswith(("ndim", "zero_d", "mismatch")):
            expect = "invalid"
    kw = {k: a[k] for k in ("stride", "padding", "dilation")}
    if expect != "invalid" and target != "grad_out" and _too_big_for_the_reference(a):
        # padding that would materialise terabytes (dilation 10**6 with 'same'): the kernel pads
        # explicitly for grad_w too, so refusing up front (an AllocationError, a ValueError and a
        # MemoryError naming padding) is its answer; never a crash
        COUNTS["correlate2d_backward"]["tried"] += 1
        MUTATIONS["huge geometry"] += 1
        try:
            got = kernels.correlate2d_backward(a["grad_out"], a["x"], a["w"], **kw)
        except MemoryError as exc:
            assert isinstance(exc, ValueError) and "padding" in str(exc), exc
            COUNTS["correlate2d_backward"]["raised"] += 1
            return
        assert got[0].shape == np.shape(a["x"]) and got[1].shape == np.shape(a["w"])
        COUNTS["correlate2d_backward"]["returned"] += 1
        return

    def compare(got, ref):
        scales = naive.correlate2d_backward(_f64(a["grad_out"]), _f64(a["x"]), _f64(a["w"]), **_ref_geometry(a))
        for g, r, s in zip(got, ref, scales):
            close_to(g, r, s, nterms=int(np.size(a["grad_out"])) + int(np.size(a["w"])))

    check("correlate2d_backward", lambda: kernels.correlate2d_backward(a["grad_out"], a["x"], a["w"], **kw),
          lambda: naive.correlate2d_backward(plain(a["grad_out"]), plain(a["x"]), plain(a["w"]), **_ref_geometry(a)),
          compare, target, expect, label)


# --------------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------------


def pool_geometry(a):
    x = a["x"]
    if isinstance(x, list):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray) or x.ndim not in (2, 3, 4):
        return None
    if not pair_in(1)(a["kernel_size"]) or not (a["stride"] is None or pair_in(1)(a["stride"])) or not pair_in(0)(a["padding"]):
        return None
    two = lambda v: (int(v), int(v)) if _int(v) else (int(v[0]), int(v[1]))  # noqa: E731
    k = two(a["kernel_size"])
    s = k if a["stride"] is None else two(a["stride"])
    p = two(a["padding"])
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        return None
    H, W = x.shape[-2:]
    if H + 2 * p[0] < k[0] or W + 2 * p[1] < k[1]:
        return None
    return x.shape[:-2] + ((H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1)


def pool_base(draw):
    dtype = draw(st.sampled_from([F32, F64]))
    ndim = draw(st.sampled_from([2, 3, 4]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = None if draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    lead = tuple(draw(st.integers(1, 3)) for _ in range(ndim - 2))
    shape = lead + (k[0] + draw(st.integers(0, 6)), k[1] + draw(st.integers(0, 6)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal(shape).astype(dtype)
    if draw(st.booleans()):  # ties
        x = np.round(x).astype(dtype)
    kernel_size = k[0] if k[0] == k[1] and draw(st.booleans()) else k
    stride = s if s is None or s[0] != s[1] or draw(st.booleans()) else s[0]
    padding = p[0] if p[0] == p[1] and draw(st.booleans()) else p
    return dict(x=x, kernel_size=kernel_size, stride=stride, padding=padding,
                return_indices=draw(st.booleans())), rng


POOL_PARAMS = {
    "kernel_size": (PAIR_POOL + [2, 3, 10**6], pair_in(1)),
    "stride": (PAIR_POOL + [None, 10**9], lambda v: v is None or pair_in(1)(v)),
    "padding": (PAIR_POOL + [1, 5], pair_in(0)),
    "return_indices": ([True, False, np.bool_(True), 0, 1, "yes", None], lambda v: isinstance(v, (bool, np.bool_))),
}


def pool_equal(got, ref):
    if isinstance(ref, tuple):
        assert isinstance(got, tuple) and len(got) == 2
        np.testing.assert_array_equal(got[1], ref[1])
        assert got[1].dtype == np.int64
        got, ref = got[0], ref[0]
    assert got.dtype == ref.dtype.newbyteorder("=") and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@FUZZ
@given(data=st.data())
def test_fuzz_maxpool2d(data):
    draw = data.draw
    a, _ = pool_base(draw)
    target, expect, label = _mutate_call(draw, a, {"x": Arr((2, 3, 4))}, POOL_PARAMS)
    if expect != "invalid" and pool_geometry(a) is None:
        expect = "invalid" if expect == "valid" else expect
    kw = {k: a[k] for k in ("stride", "padding", "return_indices")}
    check("maxpool2d", lambda: kernels.maxpool2d(a["x"], a["kernel_size"], **kw),
          lambda: naive.maxpool2d(plain(a["x"]), plain(a["kernel_size"]), **plain_kw(kw)), pool_equal, target, expect,
          label)


@FUZZ
@given(data=st.data())
def test_fuzz_maxpool2d_backward(data):
    draw = data.draw
    a, rng = pool_base(draw)
    x = a["x"]
    _, idx = kernels.maxpool2d(x, a["kernel_size"], stride=a["stride"], padding=a["padding"], return_indices=True)
    c = dict(grad_y=rng.standard_normal(idx.shape).astype(x.dtype), indices=idx, input_shape=x.shape)
    kind = draw(st.sampled_from(["none", "grad_y", "indices", "input_shape"]))
    target, expect, label = None, "valid", "unchanged"
    if kind == "grad_y":
        target = "grad_y"
        c["grad_y"], expect, label = mutate_array(draw, c["grad_y"], Arr((2, 3, 4)))
        if label.startswith(("ndim", "zero_d", "mismatch")):
            expect = "either"
    elif kind == "indices":
        target = "indices"
        m = draw(st.sampled_from(["int32", "uint16", "bigendian", "noncontig", "float", "bool", "negative",
                                  "too_large", "list", "none", "mismatch", "object"]))
        ind = c["indices"]
        H, W = x.shape[-2:]
        new = {
            "int32": lambda: (ind.astype(np.int32), "valid"),
            "uint16": lambda: (ind.astype(np.uint16), "valid"),
            "bigendian": lambda: (ind.astype(">i8"), "valid"),
            "noncontig": lambda: (relayout(ind, "noncontig"), "valid"),
            "float": lambda: (ind.astype(np.float64), "invalid"),
            "bool": lambda: (ind.astype(bool), "invalid"),
            "object": lambda: (ind.astype(object), "invalid"),
            "negative": lambda: (np.where(ind == ind.flat[0], -1, ind), "invalid"),
            "too_large": lambda: (np.where(ind == ind.flat[-1], H * W + draw(st.sampled_from([0, 5, 2**40])), ind), "invalid"),
            "list": lambda: (ind.tolist(), "valid"),
            "none": lambda: (None, "invalid"),
            "mismatch": lambda: (ind[..., :-1] if ind.shape[-1] > 1 else np.concatenate([ind, ind], -1), "invalid"),
        }[m]
        c["indices"], expect = new()
        label = f"indices:{m}"
    elif kind == "input_shape":
        target = "input_shape"
        shp = x.shape
        pool = [list(shp), np.array(shp), shp[:-1], shp + (1,), tuple(float(s) for s in shp), "shape",
                None, shp[:-2] + (0, shp[-1]), shp[:-2] + (-1, shp[-1]), shp[:-2] + (True, shp[-1]),
                shp[:-2] + (shp[-2] + 3, shp[-1] + 1)]
        if len(shp) > 2:
            pool.append((shp[0] + 1,) + shp[1:])
        c["input_shape"] = draw(st.sampled_from(pool))
        v = c["input_shape"]
        ok = (isinstance(v, (tuple, list, np.ndarray)) and len(v) == len(shp) and all(_int(e) for e in v)
              and tuple(int(e) for e in v[:-2]) == shp[:-2] and all(int(e) >= 1 for e in v))
        if ok:  # a larger plane is valid when every index still lies inside it (flat indices re-read)
            expect = "valid" if tuple(int(e) for e in v[-2:]) == shp[-2:] else "either"
        else:
            expect = "invalid"
        label = "input_shape"

    def compare(got, ref):
        assert got.dtype == ref.dtype.newbyteorder("=") and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)  # same order of additions as np.add.at: bit-equal

    check("maxpool2d_backward", lambda: kernels.maxpool2d_backward(c["grad_y"], c["indices"], c["input_shape"]),
          lambda: naive.maxpool2d_backward(plain(c["grad_y"]), plain(c["indices"]), plain(c["input_shape"])), compare,
          target, expect, label)


# --------------------------------------------------------------------------------------------
# linear regression and optimizers
# --------------------------------------------------------------------------------------------


def regression_base(draw, n_min=1):
    dtype = draw(st.sampled_from([F32, F64]))
    n, d = draw(st.integers(n_min, 12)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.standard_normal((n, d)).astype(dtype)
    t = rng.standard_normal(n).astype(dtype)
    return dtype, n, d, X, t, rng


REG_ARRAYS = {"X": Arr((2,)), "t": Arr((1,))}


@pytest.mark.parametrize("fn", ["loss", "grad", "min_norm_solution"])
@FUZZ
@given(data=st.data())
def test_fuzz_regression(fn, data):
    draw = data.draw
    dtype, n, d, X, t, rng = regression_base(draw)
    a = dict(X=X, t=t)
    arrays = dict(REG_ARRAYS)
    params = {}
    if fn != "min_norm_solution":
        a["w"] = rng.standard_normal(d).astype(dtype)
        a["l2"] = draw(st.sampled_from([0.0, 0.3]))
        arrays["w"] = Arr((1,), finite=None)  # a non-finite w: refused naming w, or propagated
        params["l2"] = (FLOAT_POOL, float_in(0.0))
    if fn == "grad":
        a["out"] = np.full(d, 3.0, dtype) if draw(st.booleans()) else None
        arrays["out"] = Arr((1,), optional=True, out=True)
    target, expect, label = _mutate_call(draw, a, arrays, params)
    if fn == "min_norm_solution" and label in ("nan", "inf"):
        expect = "either"  # an SVD of non-finite data has no answer to compare: refusing is right
    kfn, rfn = getattr(kernels, fn), getattr(naive, fn)
    args = (a["X"], a["t"]) + ((a["w"],) if "w" in a else ())
    kw = {"l2": a["l2"]} if "l2" in a else {}
    if fn == "grad":
        kw_k = dict(kw, out=a["out"])
    else:
        kw_k = kw

    def compare(got, ref):
        if fn == "loss":
            assert isinstance(got, float)
            Xf, tf, wf = _f64(a["X"]), _f64(a["t"]), _f64(a["w"])
            scale = float(np.mean((Xf @ wf + tf) ** 2) + float(a["l2"]) * float(wf @ wf))
            close_to(np.float64(got), np.float64(ref), scale if math.isfinite(scale) else np.inf)
        elif fn == "grad":
            Xf, tf, wf = _f64(a["X"]), _f64(a["t"]), _f64(a["w"])
            S = (2.0 / Xf.shape[0]) * (Xf.T @ (Xf @ wf + tf)) + 2 * float(a["l2"]) * wf
            if got.dtype == F32 and ref.dtype == F32:
                pass
            close_to(got, ref, S, nterms=Xf.size, headroom=Xf.shape[0])
            if a["out"] is not None and isinstance(a["out"], np.ndarray):
                assert got is a["out"]
        else:
            Xf, tf = np.asarray(a["X"], dtype=np.float64), np.asarray(a["t"], dtype=np.float64)
            ex, et = (int(np.round(np.log2(max(np.max(np.abs(v)), 1e-320)))) for v in (Xf, tf))
            cond = np.linalg.cond(np.ldexp(Xf, -ex))
            if not np.all(np.isfinite(ref)):
                # pinv of data near the under/overflow thresholds overflows inside; scaled by
                # powers of two (exact) it does not: pinv(X/a) (t/b) * (b/a) = pinv(X) t
                ref = np.ldexp(np.linalg.pinv(np.ldexp(Xf, -ex)) @ np.ldexp(tf, -et), et - ex).astype(got.dtype)
            if math.isfinite(cond) and cond < 1e6:
                rtol = (1e-10 * cond) + (1e-6 if got.dtype == F32 else 0.0)
                norm_close(got, ref, rtol)

    check(fn, lambda: kfn(*args, **kw_k), lambda: rfn(*map(plain, args), **plain_kw(kw)), compare, target, expect, label)


OPTIMIZERS = ["gd", "sgd", "rmsprop", "adagrad", "adam"]


def optim_params(fn, a, n):
    steps_pool = [0, 1, 3, -1, True, 2.5, "3", None, 2**63, 2**70, np.int64(2)]
    p = {
        "lr": (FLOAT_POOL + [1e3], float_in(0.0, lo_open=True)),
        "l2": (FLOAT_POOL, float_in(0.0)),
        "weight_decay": ([0.0, 0.5, 0.999, 1.0, -0.1, math.nan, True, "0"], float_in(0.0, 1.0, hi_open=True)),
        "record_every": ([0, 1, 2, -1, True, 1.5, "1", 2**70, INT64_MAX, None], int_in(0)),
        "steps": (steps_pool, lambda v, args: (int_in(0)(v) and args.get("epochs") is None)
                  or (v is None and args.get("epochs") is not None)),
        "batch_size": ([None, 1, 2, n, n + 1, 0, -1, True, 2.5, "2", 2**70],
                       lambda v: v is None or int_in(1, n)(v)),
        "seed": ([0, 5, -1, True, 2.5, "1", 2**70, np.int64(3), None], int_in(0)),  # checked always
    }
    if fn == "sgd":
        p["batch_size"] = ([1, 2, n, n + 1, 0, -1, True, 2.5, "2", 2**70, None], lambda v: v is None or int_in(1, n)(v))
        p["epochs"] = ([None, 1, 2, 0, -1, True, 1.5], lambda v, args: (v is None and args.get("steps") is not None)
                       or (int_in(0)(v) and args.get("steps") is None))
    if fn == "gd":
        del p["batch_size"], p["seed"]
    if fn == "rmsprop":
        p["beta"] = ([0.0, 0.5, 0.9, 1.0, -0.1, math.nan, math.inf, True, "0.9"], float_in(0.0, 1.0, hi_open=True))
    if fn in ("rmsprop", "adagrad", "adam"):
        p["eps"] = ([0.0, 1e-8, 1e308, -1e-8, math.nan, math.inf, True, "1e-8"], float_in(0.0))
    if fn == "adam":
        p["beta1"] = ([0.0, 0.9, 1.0, -0.1, math.nan, True, "0.9"], float_in(0.0, 1.0, hi_open=True))
        p["beta2"] = ([0.0, 0.999, 1.0, 1.5, math.nan, True, "0.999"], float_in(0.0, 1.0, hi_open=True))
    return p


def result_close(got, ref, dtype):
    assert type(got).__name__ == "OptimResult"
    assert (got.diverged, got.diverged_at, got.steps) == (ref.diverged, ref.diverged_at, ref.steps), (got, ref)
    np.testing.assert_array_equal(got.recorded_steps, ref.recorded_steps)
    assert got.w.dtype == ref.w.dtype.newbyteorder("=") and got.trajectory.dtype == ref.trajectory.dtype.newbyteorder("=")
    rtol = 1e-5 if got.w.dtype == F32 else 1e-8
    norm_close(got.w, ref.w, rtol)
    norm_close(got.trajectory, ref.trajectory, rtol)
    norm_close(got.losses, ref.losses, 1e-8)


@pytest.mark.parametrize("fn", OPTIMIZERS)
@FUZZ
@given(data=st.data())
def test_fuzz_optimizer(fn, data):
    draw = data.draw
    dtype, n, d, X, t, rng = regression_base(draw)
    a = dict(X=X, t=t, lr=draw(st.sampled_from([0.01, 0.1])), steps=draw(st.integers(0, 4)),
             w0=rng.standard_normal(d).astype(dtype) if draw(st.booleans()) else None,
             l2=draw(st.sampled_from([0.0, 0.1])), weight_decay=draw(st.sampled_from([0.0, 0.05])),
             record_every=draw(st.sampled_from([0, 1, 2])))
    if fn == "sgd":
        a["batch_size"] = draw(st.integers(1, n))
        a["seed"] = draw(st.integers(0, 5))
        if draw(st.booleans()):
            a["epochs"], a["steps"] = draw(st.integers(0, 2)), None
    elif fn != "gd":
        a["batch_size"] = draw(st.sampled_from([None, max(1, n // 2)]))
        a["seed"] = draw(st.integers(0, 5))
    if fn == "rmsprop":
        a["beta"] = 0.9
    if fn in ("rmsprop", "adagrad", "adam"):
        a["eps"] = 1e-8
    arrays = dict(REG_ARRAYS, w0=Arr((1,), optional=True, finite=True))
    target, expect, label = _mutate_call(draw, a, arrays, optim_params(fn, a, n))
    if target is None and label == "unchanged":
        expect = "valid"
    call_kw = {k: v for k, v in a.items() if k not in ("X", "t")}
    check(fn, lambda: getattr(kernels, fn)(a["X"], a["t"], **call_kw),
          lambda: getattr(naive, fn)(plain(a["X"]), plain(a["t"]), **plain_kw(call_kw)),
          lambda got, ref: result_close(got, ref, dtype), target, expect, label)


# --------------------------------------------------------------------------------------------
# hypergradients
# --------------------------------------------------------------------------------------------

METHODS = ["reverse", "checkpoint", "forward", "exact"]


def hyper_base(draw):
    dtype = draw(st.sampled_from([F32, F64]))
    n, d = draw(st.integers(2, 8)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.standard_normal((n, d)).astype(dtype)
    t = rng.standard_normal(n).astype(dtype)
    crit = kernels.critical_lr(X, 0.0)
    frac = draw(st.sampled_from([0.05, 0.3, 0.7, 30.0, 1e4]))
    a = dict(X=X, t=t, lr=frac * (crit if math.isfinite(crit) else 1.0), l2=draw(st.sampled_from([0.0, 0.05])),
             steps=draw(st.integers(1, 6)), w0=rng.standard_normal(d).astype(dtype) if draw(st.booleans()) else None,
             X_val=None, t_val=None)
    if draw(st.booleans()):
        nv = draw(st.integers(1, 5))
        a["X_val"] = rng.standard_normal((nv, d)).astype(dtype)
        a["t_val"] = rng.standard_normal(nv).astype(dtype)
    return a, rng


def hyper_close(got, ref):
    assert (got.diverged, got.diverged_at) == (ref.diverged, ref.diverged_at), (got, ref)
    if got.diverged:
        assert got.loss == math.inf and math.isnan(got.d_lr) and math.isnan(got.d_l2)
        return
    for name in ("loss", "d_lr", "d_l2"):
        g, r = getattr(got, name), getattr(ref, name)
        if g == r or (math.isnan(g) and math.isnan(r)):  # equal, or the same overflow
            continue
        assert abs(g - r) <= 1e-7 * (abs(r) + 1e-3 * (1 + abs(ref.loss))), (name, g, r)
    norm_close(got.w, ref.w, 1e-9)


@pytest.mark.parametrize("method", METHODS)
@FUZZ
@given(data=st.data())
def test_fuzz_hypergrad(method, data):
    draw = data.draw
    a, rng = hyper_base(draw)
    a["method"] = method
    if method == "checkpoint" and draw(st.booleans()):
        a["checkpoints"] = draw(st.integers(1, a["steps"]))
    fin = dict(finite=True)
    arrays = {"X": Arr((2,), **fin), "t": Arr((1,), **fin), "w0": Arr((1,), optional=True, **fin),
              "X_val": Arr((2,), optional=True, **fin), "t_val": Arr((1,), optional=True, **fin)}
    steps_pool = [0, -1, 1, 2, True, 2.0, "3", None, 2**63, 2**70]
    if method == "reverse":
        steps_pool.append(10**13)  # refused up front: more memory than the machine has
    if method == "exact":
        steps_pool += [10**9, INT64_MAX]  # time independent of steps
    params = {
        "lr": (FLOAT_POOL, float_in(0.0, lo_open=True)),
        "l2": (FLOAT_POOL, float_in(0.0, 5e299)),  # 2 l2 I must not overflow
        "steps": (steps_pool, lambda v, args: int_in(1)(v) and (args.get("checkpoints") is None or v >= args["checkpoints"])
                  and not (method == "reverse" and v >= 10**12)),  # refused: more memory than the machine has
        "method": (["reverse", "checkpoint", "forward", "exact", "Reverse", "", 3, None], lambda v, args: v in METHODS and (
            args.get("checkpoints") is None or v == "checkpoint")),
    }
    if method == "checkpoint":
        params["checkpoints"] = ([None, 1, 2, 0, -1, True, 2.5, "2", 10**6],
                                 lambda v, args: v is None or (int_in(1)(v) and _int(args["steps"]) and v <= args["steps"]))
    target, expect, label = _mutate_call(draw, a, arrays, params)
    if target in ("X_val", "t_val") and (a["X_val"] is None) != (a["t_val"] is None):
        expect = "invalid"  # one without the other
    elif target in ("X_val", "t_val") and expect == "valid" and a["X_val"] is None:
        expect = "valid"
    if target in ("X", "t", "w0", "X_val", "t_val") and label in ("huge", "subnormal"):
        expect = "either"  # overflow/underflow of the whole problem: the reference decides
    kw = {k: v for k, v in a.items() if k not in ("X", "t")}
    ref_kw = dict(kw)
    if ref_kw.get("method") == "exact" and _int(ref_kw.get("steps")) and ref_kw["steps"] > 50:
        return  # the naive reverse pass cannot run 10**9 steps; the call itself was checked to raise or not below

    def call():
        return kernels.hypergrad(a["X"], a["t"], **kw)

    check(f"hypergrad[{method}]", call, lambda: naive.hypergrad(plain(a["X"]), plain(a["t"]), **plain_kw(ref_kw)), hyper_close,
          target, expect, label)


@FUZZ
@given(data=st.data())
def test_fuzz_optimal_lr_one_step(data):
    draw = data.draw
    dtype, n, d, X, t, rng = regression_base(draw)
    a = dict(X=X, t=t, w0=rng.standard_normal(d).astype(dtype) if draw(st.booleans()) else None)
    arrays = {"X": Arr((2,), finite=True), "t": Arr((1,), finite=True), "w0": Arr((1,), optional=True, finite=True)}
    target, expect, label = _mutate_call(draw, a, arrays, {})
    if label in ("huge", "subnormal"):
        expect = "either"

    def reference():
        return naive.optimal_lr_one_step(a["X"], a["t"], a["w0"])

    def compare(got, ref):
        assert isinstance(got, float)
        if math.isfinite(ref):
            assert abs(got - ref) <= 1e-9 * abs(ref) + 1e-300, (got, ref)

    def call():
        return kernels.optimal_lr_one_step(a["X"], a["t"], a["w0"])

    # a zero gradient (w0 already optimal) is refused, naming w0
    check("optimal_lr_one_step", call, reference, compare, target or "w0", expect if target else "either", label)


@FUZZ
@given(data=st.data())
def test_fuzz_tune_lr(data):
    draw = data.draw
    a, rng = hyper_base(draw)
    a["lr0"] = 0.2 * kernels.critical_lr(a["X"])
    del a["lr"]
    a.update(meta_steps=draw(st.integers(1, 3)), meta_lr=draw(st.sampled_from([0.1, 1.0])),
             method=draw(st.sampled_from(METHODS)), tune_l2=False)
    params = {
        "lr0": (FLOAT_POOL, float_in(0.0, lo_open=True)),
        "meta_steps": (INT_POOL, int_in(1)),
        "meta_lr": (FLOAT_POOL, float_in(0.0, lo_open=True)),
        "l2": ([0.0, 0.1, -1.0, math.nan, True, 1e308], float_in(0.0, 5e299)),
        "tune_l2": ([True, False, 1, "yes", None], lambda v, args: isinstance(v, (bool, np.bool_)) and (not v or args["l2"] > 0)),
        "method": (["reverse", "exact", "nope", 1], lambda v: v in METHODS),
    }
    target, expect, label = _mutate_call(draw, a, {"X": Arr((2,), finite=True)}, params)
    if label in ("huge", "subnormal"):
        expect = "either"  # overflowing data are refused naming X (see test_fuzz_hypergrad)
    if target in ("lr0", "meta_lr") and expect == "valid":
        expect = "either"  # huge: diverges (compared below), or a meta step leaves the range (refused naming meta_lr)
    kw = {k: v for k, v in a.items() if k not in ("X", "t")}

    def reference():
        """Hypergradient descent on log(lr) with the naive hypergradient (tune_lr's docstring)."""
        lr, l2, lrs = float(a["lr0"]), float(a["l2"]), []
        for _ in range(a["meta_steps"]):
            r = naive.hypergrad(a["X"], a["t"], lr=lr, l2=l2, steps=a["steps"], w0=a["w0"], X_val=a["X_val"],
                                t_val=a["t_val"])
            lrs.append(lr)
            if r.diverged:
                lr *= 0.5
                continue
            lr, l2 = (lr * math.exp(-float(a["meta_lr"]) * lr * r.d_lr),
                      l2 * math.exp(-float(a["meta_lr"]) * l2 * r.d_l2) if a["tune_l2"] else l2)
        return lr, lrs

    def compare(got, ref):
        lr, lrs = ref
        assert len(got.lr_history) == len(lrs) == a["meta_steps"]
        norm_close(got.lr_history, lrs, 1e-6)
        assert abs(got.lr - lr) <= 1e-6 * abs(lr)

    check("tune_lr", lambda: kernels.tune_lr(a["X"], a["t"], **kw), reference, compare, target, expect, label)


@FUZZ
@given(steps=st.sampled_from(HOSTILE_SCALARS + [1, 2, 3, 7, 50]))
def test_fuzz_unroll_graph(steps):
    valid = int_in(1)(steps)

    def compare(got, ref):
        assert got.startswith("digraph") and got.rstrip().endswith("}")
        nodes, edges = ref
        assert got.count("->") == edges
        assert len(re.findall(r'^\s+"[^"]+"( \[shape=\w+\])?;$', got, re.M)) == nodes

    # closed form: w0..wT, L0..LT, grad L0..L(T-1), eta and lambda~; 2 edges per loss, 5 per step
    check("unroll_graph", lambda: kernels.unroll_graph(steps),
          lambda: (3 * int(steps) + 4, 2 * (int(steps) + 1) + 5 * int(steps)), compare, "steps",
          "valid" if valid else "invalid", f"param:{type(steps).__name__}")


# --------------------------------------------------------------------------------------------
# architecture specs
# --------------------------------------------------------------------------------------------


@st.composite
def spec_tokens(draw):
    h, w, c = draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 4))
    toks = [f"in{h}x{w}x{c}"]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["conv", "pool", "fc"]))
        if kind == "conv":
            tok = f"conv{draw(st.integers(1, 7))}"
            for suf in draw(st.lists(st.sampled_from(["s", "p", "same", "valid", "d", "c", "nobias"]), max_size=3, unique=True)):
                if suf in ("p", "same", "valid") and any(x in tok[4:] for x in ("p", "same", "valid")):
                    continue
                tok += {"s": f"s{draw(st.integers(1, 3))}", "p": f"p{draw(st.integers(0, 3))}", "d": f"d{draw(st.integers(1, 3))}",
                        "c": f"c{draw(st.integers(1, 8))}"}.get(suf, suf)
        elif kind == "pool":
            tok = f"pool{draw(st.integers(1, 4))}" + (f"s{draw(st.integers(1, 3))}" if draw(st.booleans()) else "")
        else:
            tok = f"fc{draw(st.integers(1, 30))}"
        toks.append(tok)
    return toks


JUNK = ["conv", "conv0", "pool0", "fc0", "convx", "conv3s0", "conv3c0", "conv3s2s2", "conv3samevalid", "in3x3x1",
        "in0x3x1", "pool2s", "relu", "CONV3", "conv3 ", "fc-1", "conv99999999999999999999", "3", "", "conv3p-1",
        "pool2s0", "conv3d0"]


def arch_expected(tokens):
    """Shapes and parameters by the module docstring's arithmetic, or the index of the first
    layer whose geometry fails."""
    m = re.fullmatch(r"in(\d+)x(\d+)x(\d+)", tokens[0])
    h, w, c = (int(g) for g in m.groups())
    rows = [((h, w, c), 0, h * w * c)]
    for i, tok in enumerate(tokens[1:], start=1):
        if tok.startswith("conv"):
            k = int(re.match(r"conv(\d+)", tok).group(1))
            rest = tok[len(f"conv{k}"):]
            s = int(re.search(r"s(\d+)", rest).group(1)) if re.search(r"s(\d+)", rest) else 1
            dl = int(re.search(r"d(\d+)", rest).group(1)) if re.search(r"d(\d+)", rest) else 1
            co = int(re.search(r"c(\d+)", rest).group(1)) if re.search(r"c(\d+)", rest) else 1
            p = re.search(r"p(\d+)", rest)
            ke = dl * (k - 1) + 1
            if "valid" in rest or p:
                pp = int(p.group(1)) if p else 0
                if h + 2 * pp < ke or w + 2 * pp < ke:
                    return i
                h, w = (h + 2 * pp - ke) // s + 1, (w + 2 * pp - ke) // s + 1
            else:
                h, w = -(-h // s), -(-w // s)
            params = k * k * c * co + (0 if "nobias" in rest else co)
            c = co
        elif tok.startswith("pool"):
            mm = re.fullmatch(r"pool(\d+)(?:s(\d+))?", tok)
            k = int(mm.group(1))
            s = int(mm.group(2)) if mm.group(2) else k
            if h < k or w < k:
                return i
            h, w, params = (h - k) // s + 1, (w - k) // s + 1, 0
        elif tok == "relu":
            params = 0  # elementwise: shape unchanged, no parameters
        else:
            u = int(tok[2:])
            params = h * w * c * u + u
            h, w, c = 1, 1, u
        rows.append(((h, w, c), params, 0 if tok == "relu" else h * w * c))  # a relu adds no neurons
    return rows


@pytest.mark.parametrize("fn", ["parse", "analyze", "to_dense"])
@FUZZ
@given(data=st.data())
def test_fuzz_arch(fn, data):
    draw = data.draw
    tokens = draw(spec_tokens())
    target, expect, label = None, "valid", "unchanged"
    kind = draw(st.sampled_from(["none", "junk", "type"] if fn == "parse" else ["none", "junk", "type", "layers"]))
    spec = " ".join(tokens)
    if kind == "junk":
        junk = draw(st.sampled_from(JUNK))
        pos = draw(st.integers(0, len(tokens)))
        tokens = tokens[:pos] + [junk] + tokens[pos:]
        spec = " ".join(tokens)
        target, expect, label = (junk.strip() or "spec"), "either", f"junk:{junk.strip()}"
    elif kind == "type":
        spec = draw(st.sampled_from([None, 3, 2.5, b"in3x3x1", ["in3x3x1"] if fn == "parse" else 7]))
        target, expect, label = ("spec" if fn == "parse" else "layers"), "invalid", f"type:{type(spec).__name__}"
    elif kind == "layers":
        spec = draw(st.sampled_from([[], [arch.Conv(3)], [arch.Input(8, 8), "conv3"], [arch.Input(8, 8), arch.Input(8, 8)],
                                     [arch.Input(8, 8), arch.Conv(3, stride=0)], [arch.Input(True, 8)],
                                     [arch.Input(8, 8), arch.Pool(2, stride=-1)], [arch.Input(8, 8), arch.Conv(3, padding="SAME")],
                                     [arch.Input(8, 8), arch.Dense(4, shape=(2, 2, 2))], (arch.Input(4, 4), arch.Pool(2))]))
        target, expect, label = ("layer", "layers"), "either", "layers"
    parsed_ok = True
    try:
        if isinstance(spec, str):
            arch.parse(spec)
    except ValueError:
        parsed_ok = False
    fn_obj = getattr(arch, fn)

    def reference():
        return arch_expected(spec.split()) if isinstance(spec, str) else None

    def compare(got, ref):
        if fn == "parse" or not isinstance(spec, str):
            assert isinstance(got, list) and len(got) >= 1
            return
        assert not isinstance(ref, int), f"layer {ref} does not fit, but {fn} accepted {spec!r}"
        if fn == "analyze":
            assert [r.out_shape for r in got] == [r[0] for r in ref]
            assert [r.params for r in got] == [r[1] for r in ref]
            assert [r.neurons for r in got] == [r[2] for r in ref]
        else:
            rows = arch.analyze(got)
            assert [r.neurons for r in rows] == [r[2] for r in ref]
            assert all(isinstance(l, (arch.Input, arch.Dense, arch.Pool, arch.Relu)) for l in got)

    if fn != "parse" and isinstance(spec, str) and parsed_ok and kind in ("none", "junk"):
        ref = arch_expected(spec.split())
        if isinstance(ref, int):  # the geometry fails at layer ref: the error names that layer
            target, expect, label = f"layer {ref}", "invalid", label if kind == "junk" else "geometry"
    if kind == "none" and fn == "parse":
        expect = "valid"
    check(f"arch.{fn}", lambda: fn_obj(spec), reference, compare, target or "spec", expect, label)


# --------------------------------------------------------------------------------------------
# the network's compiled pass (kernels.nn.program): flat indexing into shared buffers
# --------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzz_nn_compiled_pass_matches_the_layers(data):
    """A random network (convs of any kernel, stride, padding and dilation, pools, relus, dense
    layers), its whole pass as one compiled call against the layer-by-layer pass, in float64 and
    float32: the same logits, loss and gradients (up to the order of the sums). Under NUMBA_BOUNDSCHECK=1
    (test_limits) an index outside the program's buffers raises instead."""
    import kernels.nn.model as nn_model
    from kernels import nn

    draw = data.draw
    size = draw(st.integers(3, 12))
    tokens = [f"in{size}x{draw(st.integers(3, 12))}x{draw(st.integers(1, 3))}"]
    for _ in range(draw(st.integers(1, 4))):
        tok = draw(st.sampled_from(["conv", "conv", "pool", "relu", "fc"]))
        if tok == "conv":
            tok = (f"conv{draw(st.integers(1, 4))}s{draw(st.integers(1, 3))}"
                   f"{draw(st.sampled_from(['', 'valid', 'p1', 'p2']))}{draw(st.sampled_from(['', 'd2', 'd3']))}"
                   f"c{draw(st.integers(1, 5))}{draw(st.sampled_from(['', 'nobias']))}")
        elif tok == "pool":
            k = draw(st.integers(1, 3))
            tok = f"pool{k}s{draw(st.integers(1, k))}"
        elif tok == "fc":
            tok = f"fc{draw(st.integers(1, 6))}"
        try:
            arch.analyze(" ".join(tokens + [tok]))
        except ValueError:
            continue
        tokens.append(tok)
    tokens.append(f"fc{draw(st.integers(2, 4))}")
    dtype = draw(st.sampled_from(["float64", "float32"]))  # float32: runs rounded to 16 lanes, not 8
    model = nn.build(" ".join(tokens), seed=draw(st.integers(0, 3)), dtype=dtype)
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    x = rng.standard_normal((n,) + model.input_shape).astype(dtype)
    y = rng.integers(0, model.classes, n)
    got = {}
    try:
        for compiled in (True, False):
            nn_model.FORCE_COMPILED = compiled
            got[compiled] = (model.forward(x), *model.loss_and_grad(x, y))
    finally:
        nn_model.FORCE_COMPILED = None
    (z1, loss1, grads1), (z0, loss0, grads0) = got[True], got[False]
    tol = 1e-10 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(z1, z0, rtol=tol, atol=tol * 1e-2)
    assert loss1 == pytest.approx(loss0, rel=tol)
    for g1, g0 in zip(grads1, grads0):
        np.testing.assert_allclose(g1, g0, rtol=tol, atol=tol * 1e-2 * max(1.0, float(np.abs(g0).max())))


# --------------------------------------------------------------------------------------------
# the bounds-checked build
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK") != "1", reason="only under NUMBA_BOUNDSCHECK=1 (test_limits runs it)")
def test_boundscheck_is_really_on():
    """The bounds-checked run must not load unchecked kernels from a cache: a kernel built with
    the library's options raises IndexError out of range, and caching is off."""
    from kernels import _config

    assert _config.CACHE is False and _config.describe()["boundscheck"]

    @_config.jit()
    def _read(a, i):  # pragma: no cover - compiled
        return a[i]

    with pytest.raises(IndexError):
        _read(np.zeros(3), 3)

    @_config.jit(parallel=True)
    def _shift(a, out):  # pragma: no cover - compiled
        for i in prange(out.shape[0]):
            out[i] = a[i + 2]

    # inside a parallel region Numba reports the IndexError wrapped in a SystemError, and only
    # from the calling thread's chunk: this run must use NUMBA_NUM_THREADS=1 (test_limits does)
    with pytest.raises((IndexError, SystemError)):
        _shift(np.zeros(64), np.zeros(64))  # only the last two iterations are out of range
