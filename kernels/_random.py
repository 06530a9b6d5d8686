"""``numpy.random.default_rng(seed).permutation(n)``, epoch after epoch, compiled: the same
integers, drawn in a fraction of the time.

A mini-batch optimizer draws one permutation of the ``n`` rows per epoch from
``default_rng(seed)``, and its results are promised to be those of a NumPy loop drawing the
same permutations. NumPy's own call costs more than the epoch's arithmetic on small problems:
constructing the generator hashes the seed in Python (``SeedSequence``: 10 us alone, 0.15 ms
measured in a loop that also calls NumPy and PyTorch, whose code evicts it from the caches), and
``permutation(20000)`` takes 0.2 ms. Here the seeded state is computed once per seed (cached)
and the shuffle runs compiled, with the generator's state in registers.

What it reproduces, from NumPy's sources (``Generator.shuffle`` of a 1-D array,
``random_interval`` and PCG64): ``a = arange(n)``, then for ``i = n - 1`` down to 1 swap
``a[i]`` with ``a[j]``, ``j = random_interval(i)``: the smallest all-ones ``mask >= i``, and
draws ``v & mask`` until one is ``<= i``, a draw being the generator's buffered 32-bit output
(each 64-bit output gives its low half, then its high half) while ``i < 2**32`` (NumPy draws
64-bit integers beyond: such ``n`` are left to NumPy). PCG64 steps ``state = state * M + inc``
(mod ``2**128``) and outputs ``rotr64(hi ^ lo, state >> 122)``. NumPy promises no stability of
``Generator`` streams across versions, so :class:`Permutations` checks the compiled shuffle
against the installed NumPy once per process and falls back to NumPy's ``permutation`` when
they differ.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._config import jit

#: PCG64's 128-bit multiplier (NumPy's ``PCG_DEFAULT_MULTIPLIER_128``).
_MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341
_U32_MAX = np.uint64(0xFFFFFFFF)
_I_STATE_HI, _I_STATE_LO, _I_INC_HI, _I_INC_LO, _I_HAS32, _I_U32 = range(6)


@intrinsic
def _lcg128(typingctx, hi, lo, inc_hi, inc_lo):
    """``(hi, lo) * _MULTIPLIER + (inc_hi, inc_lo)`` mod ``2**128``, as (hi, lo): uint64s."""
    u64 = types.uint64
    sig = types.UniTuple(u64, 2)(u64, u64, u64, u64)

    def codegen(context, builder, sig, args):
        i128 = ir.IntType(128)

        def join(h, l):
            wide = builder.shl(builder.zext(h, i128), ir.Constant(i128, 64))
            return builder.or_(wide, builder.zext(l, i128))

        state = builder.add(builder.mul(join(args[0], args[1]), ir.Constant(i128, _MULTIPLIER)),
                            join(args[2], args[3]))
        new_hi = builder.trunc(builder.lshr(state, ir.Constant(i128, 64)), ir.IntType(64))
        new_lo = builder.trunc(state, ir.IntType(64))
        return context.make_tuple(builder, sig.return_type, (new_hi, new_lo))

    return sig, codegen


@jit(inline="always")
def _output(hi, lo):  # pragma: no cover - compiled
    """PCG64's XSL-RR output of a state."""
    x = hi ^ lo
    rot = hi >> np.uint64(58)
    return (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))


@jit()
def _fill(st, out):  # pragma: no cover - compiled
    """Each row of ``out`` (epochs, n), ``n <= 2**32``, gets the next permutation of ``0..n-1``
    the generator whose state is ``st`` (see :func:`_state`) draws; ``st`` is left as the
    generator would be."""
    hi, lo, ihi, ilo = st[_I_STATE_HI], st[_I_STATE_LO], st[_I_INC_HI], st[_I_INC_LO]
    has32, u32 = st[_I_HAS32], st[_I_U32]
    n = out.shape[1]
    for e in range(out.shape[0]):
        a = out[e]
        for i in range(n):
            a[i] = i
        for i in range(n - 1, 0, -1):
            top = np.uint64(i)
            mask = top
            mask |= mask >> np.uint64(1)
            mask |= mask >> np.uint64(2)
            mask |= mask >> np.uint64(4)
            mask |= mask >> np.uint64(8)
            mask |= mask >> np.uint64(16)
            mask |= mask >> np.uint64(32)
            while True:  # n <= 2**32: every draw is a buffered 32-bit one
                if has32 != 0:
                    has32 = np.uint64(0)
                    v = u32
                else:
                    hi, lo = _lcg128(hi, lo, ihi, ilo)
                    r = _output(hi, lo)
                    has32 = np.uint64(1)
                    u32 = r >> np.uint64(32)
                    v = r & _U32_MAX
                v &= mask
                if v <= top:
                    break
            j = np.int64(v)
            tmp = a[j]
            a[j] = a[i]
            a[i] = tmp
    st[_I_STATE_HI], st[_I_STATE_LO], st[_I_HAS32], st[_I_U32] = hi, lo, has32, u32


@functools.lru_cache(maxsize=64)
def _seeded(seed: int) -> tuple:
    s = np.random.default_rng(seed).bit_generator.state
    state, inc = s["state"]["state"], s["state"]["inc"]
    m = (1 << 64) - 1
    return state >> 64, state & m, inc >> 64, inc & m, s["has_uint32"], s["uinteger"]


def _state(seed: int) -> np.ndarray:
    """The state of ``default_rng(seed)`` as ``_fill`` takes it (a fresh array)."""
    return np.array(_seeded(seed), dtype=np.uint64)


@functools.lru_cache(maxsize=1)
def _agrees_with_numpy() -> bool:
    """Whether the compiled shuffle draws what the installed NumPy draws (checked once)."""
    rng = np.random.default_rng(12345)
    want = np.stack([rng.permutation(n) for n in (1000, 1000)])
    got = np.empty((2, 1000), dtype=np.int64)
    _fill(_state(12345), got)
    return bool(np.array_equal(want, got))


#: Fewer rows than this are shuffled by NumPy itself: its draw then costs tens of microseconds
#: at most, and a small problem's first call does not compile :func:`_fill`. So are more than
#: ``2**32`` rows, where NumPy draws 64-bit integers (a path :func:`_fill` does not have).
COMPILED_MIN_ROWS = 4096
COMPILED_MAX_ROWS = 1 << 32


class Permutations:
    """The permutations of ``range(n)`` that ``numpy.random.default_rng(seed).permutation(n)``
    gives on successive calls, drawn by :meth:`fill`."""

    def __init__(self, seed: int, n: int):
        self.n = n
        self._compiled = COMPILED_MIN_ROWS <= n <= COMPILED_MAX_ROWS and _agrees_with_numpy()
        if self._compiled:
            self._st = _state(int(seed))
        else:
            self._rng = np.random.default_rng(seed)

    def fill(self, out: np.ndarray) -> np.ndarray:
        """Each row of ``out`` (epochs, n), int64 and C-contiguous, gets the next permutation."""
        if self._compiled:
            _fill(self._st, out)
        else:
            for k in range(out.shape[0]):
                out[k] = self._rng.permutation(self.n)
        return out
