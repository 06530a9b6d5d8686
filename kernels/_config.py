"""One place for the compile options every kernel uses.

Each option can be overridden by an environment variable read once, at import:

==========================  =========  ==================================================
variable                    default    effect
==========================  =========  ==================================================
``KERNELS_PARALLEL``        ``1``      ``0`` compiles every kernel serial (no ``prange``)
``KERNELS_FASTMATH``        ``1``      ``0`` turns fast-math off entirely
``KERNELS_CACHE``           ``1``      ``0`` disables Numba's on-disk cache of compiled code
``KERNELS_BOUNDSCHECK``     unset      ``1`` compiles with bounds checking (also
                                       ``NUMBA_BOUNDSCHECK=1``, which Numba reads itself)
==========================  =========  ==================================================

The on-disk cache holds the default build only: any override of ``KERNELS_PARALLEL``,
``KERNELS_FASTMATH`` or bounds checking turns caching off. Numba's cache index keys a kernel on
its bytecode and argument types, not on ``parallel``/``fastmath``/``boundscheck`` (verified with
Numba 0.68), so a cached default kernel would silently be loaded in place of the one asked for,
and a bounds-checked or serial build would be saved over the default one.

Fast-math is the LLVM flag set *without* ``nnan`` and ``ninf``: the compiler may reassociate
sums and fuse multiply-adds (which vectorises reductions), but may not assume that NaN and inf
never occur, so divergence checks such as ``not np.isfinite(x)`` stay honest.
"""

from __future__ import annotations

import os

import numba


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


PARALLEL: bool = _flag("KERNELS_PARALLEL", True)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"} if _flag("KERNELS_FASTMATH", True) else False
BOUNDSCHECK: bool | None = True if _flag("KERNELS_BOUNDSCHECK", False) else None
# Cache only the default build (see the module docstring: the cache does not key on these flags).
CACHE: bool = (_flag("KERNELS_CACHE", True) and PARALLEL and bool(FASTMATH) and BOUNDSCHECK is None
               and not _flag("NUMBA_BOUNDSCHECK", False))

#: Parallel reductions are split into blocks of this many items, whatever the thread count,
#: and the per-block partial results are combined serially in block order, so results are
#: bit-identical for any ``NUMBA_NUM_THREADS``.
REDUCTION_BLOCK: int = 256


def jit(*, parallel: bool = False, fastmath: bool = True, cache: bool | None = None, **options):
    """Decorator: ``numba.njit`` with this module's options.

    ``parallel=True`` asks for ``prange`` parallelism; it is honoured only when
    ``KERNELS_PARALLEL`` is on. ``fastmath=False`` opts a kernel out (e.g. a compensated sum
    that reassociation would undo). No signature is given, so each dtype compiles lazily on
    first use and is cached on disk.
    """
    opts = dict(
        nogil=True,
        parallel=bool(parallel and PARALLEL),
        fastmath=FASTMATH if fastmath else False,
        cache=CACHE if cache is None else cache,
        error_model="numpy",
    )
    if BOUNDSCHECK is not None:
        opts["boundscheck"] = BOUNDSCHECK
    opts.update(options)
    return numba.njit(**opts)


def describe() -> dict:
    """The compile options in force, for reports."""
    return {
        "parallel": PARALLEL,
        "fastmath": sorted(FASTMATH) if FASTMATH else False,
        "cache": CACHE,
        "boundscheck": bool(BOUNDSCHECK) or os.environ.get("NUMBA_BOUNDSCHECK") == "1",
        "reduction_block": REDUCTION_BLOCK,
        "numba_threads": numba.get_num_threads(),
        "numba_version": numba.__version__,
    }
