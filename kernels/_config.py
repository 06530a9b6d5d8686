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
``KERNELS_GC``              ``1``      ``0`` leaves Python's garbage collector alone: no
                                       pause while Numba compiles, no freeze at exit
==========================  =========  ==================================================

The on-disk cache holds the default build only: any override of ``KERNELS_PARALLEL``,
``KERNELS_FASTMATH`` or bounds checking turns caching off. Numba's cache index keys a kernel on
its bytecode and argument types, not on ``parallel``/``fastmath``/``boundscheck`` (verified with
Numba 0.68), so a cached default kernel would silently be loaded in place of the one asked for,
and a bounds-checked or serial build would be saved over the default one.

Numba stamps a cached kernel with the content of the file that defines it, so an edit to a
function it calls in *another* file (a kernel in ``conv/direct.py`` calling an intrinsic in
``_simd/stencil.py``) would leave the stale machine code in the cache. The package's kernels
are therefore stamped with a hash of the library source files their defining module reaches
through its imports, transitively (:func:`import_closure`, :func:`package_stamp`): an edit to
a file recompiles every kernel that can call into it, and no other (an edit to
``kernels/nn/`` leaves the convolution's cache valid, since ``kernels/conv/`` never imports
it). A compiled kernel can only call code its module imports (the package passes no compiled
function as an argument), so the closure covers every callee. An installed package never
changes, so this costs users nothing but one read of the sources (a few ms) per process.

Fast-math is the LLVM flag set *without* ``nnan`` and ``ninf``: the compiler may reassociate
sums and fuse multiply-adds (which vectorises reductions), but may not assume that NaN and inf
never occur, so divergence checks such as ``not np.isfinite(x)`` stay honest.
"""

from __future__ import annotations

import atexit
import functools
import gc
import hashlib
import os
import re

import numba
import numba.core.event
from numba.core import caching as _caching

from . import _threads


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


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: Applications live here; they define no kernels, so editing them recompiles nothing.
_APPS_DIR = os.path.join(PACKAGE_DIR, "apps")


def _library_sources() -> list[str]:
    paths = []
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and os.path.join(root, d) != _APPS_DIR)
        paths += [os.path.join(root, f) for f in sorted(files) if f.endswith(".py")]
    return paths


_FROM_IMPORT = re.compile(rb"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)", re.M)
_PLAIN_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([^\n#]*)", re.M)


def _module_of(path: str, root: str = os.path.dirname(PACKAGE_DIR)) -> str:
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=None)
def _sources(paths: tuple[str, ...], root: str) -> dict:
    """module name (relative to ``root``) -> (path, content) for ``paths``."""
    out = {}
    for path in paths:
        with open(path, "rb") as fh:
            out[_module_of(path, root)] = (path, fh.read())
    return out


def _imported_modules(module: str, path: str, text: bytes, known) -> set[str]:
    """The modules of ``known`` that ``text`` imports (module level or inside functions)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for target, names in _FROM_IMPORT.findall(text):
        target = target.decode()
        dots = len(target) - len(target.lstrip("."))
        if dots:
            base = package.split(".")
            base = base[: len(base) - (dots - 1)]
            target = ".".join(base + ([target[dots:]] if target[dots:] else []))
        for name in names.decode().strip("()").replace("\n", " ").split(","):
            name = name.strip().split(" ")[0]
            sub = f"{target}.{name}"
            found.add(sub if sub in known else target)
    for names in _PLAIN_IMPORT.findall(text):
        for name in names.decode().split(","):
            found.add(name.strip().split(" ")[0])
    out = set()
    for name in found:  # `import kernels.a.b` names a module; keep its longest known prefix
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_closure(module: str, paths: tuple[str, ...] | None = None,
                   root: str = os.path.dirname(PACKAGE_DIR)) -> list[str]:
    """The library modules ``module`` reaches through its imports, itself included, sorted.
    ``paths`` (default: the library's sources) are named as modules relative to ``root``."""
    sources = _sources(paths if paths is not None else tuple(_library_sources()), root)
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or name not in sources:
            continue
        seen.add(name)
        path, text = sources[name]
        todo += _imported_modules(name, path, text, sources)
    return sorted(seen)


@functools.lru_cache(maxsize=None)
def package_stamp(module: str = "kernels", paths: tuple[str, ...] | None = None,
                  root: str = os.path.dirname(PACKAGE_DIR)) -> str:
    """SHA-256 over the names and contents of the library source files (``kernels/`` less
    ``kernels/apps/``) in the import closure of ``module``: the freshness stamp of every cached
    kernel that ``module`` defines. ``kernels`` itself reaches every library module."""
    sources = _sources(paths if paths is not None else tuple(_library_sources()), root)
    h = hashlib.sha256()
    for name in import_closure(module, paths, root):
        path, text = sources[name]
        h.update(os.path.relpath(path, PACKAGE_DIR).encode() + b"\0")
        h.update(hashlib.sha256(text).digest())
    return h.hexdigest()


def _in_library(py_file: str) -> bool:
    path = os.path.abspath(py_file)
    return path.startswith(PACKAGE_DIR + os.sep) and not path.startswith(_APPS_DIR + os.sep)


def _package_stamped(base):
    """Numba's cache locator ``base``, for this package's files only, stamped by
    :func:`package_stamp` instead of the one defining file."""

    class Locator(base):
        def get_source_stamp(self):
            return package_stamp(_module_of(self._py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            return super().from_function(py_func, py_file) if _in_library(py_file) else None

    Locator.__name__ = Locator.__qualname__ = f"PackageStamped{base.__name__}"
    return Locator


def _install_locators() -> bool:
    """Put the package-stamped locators first in Numba's list (they decline other files, which
    fall through to Numba's own). False where this Numba lays out its cache differently."""
    try:
        impl = _caching.CacheImpl
        bases = [_caching.UserProvidedCacheLocator, _caching.InTreeCacheLocator, _caching.UserWideCacheLocator]
    except AttributeError:
        return False
    if any(getattr(c, "__name__", "").startswith("PackageStamped") for c in impl._locator_classes):
        return True
    impl._locator_classes[:0] = [_package_stamped(b) for b in bases]
    return True


PACKAGE_STAMPED_CACHE: bool = _install_locators()


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


def specialise(f, name: str, *, parallel: bool = False, **constants):
    """``f`` compiled (with :func:`jit`) as a copy of its code named ``name`` whose globals
    ``constants`` override: each is a compile-time constant to Numba, so a branch on one is
    pruned before typing, and a global function so bound is the one the copy calls. Each copy
    has its own name, hence its own entry in the on-disk cache (which keys a kernel on its name
    and bytecode, not on its globals). How one source gives builds that compile only the code
    they run (see :mod:`kernels.optim.drivers`, :mod:`kernels.conv.direct`)."""
    import types

    g = types.FunctionType(f.__code__, dict(f.__globals__, **constants), name, f.__defaults__, f.__closure__)
    g.__qualname__, g.__module__, g.__doc__ = name, f.__module__, f.__doc__
    return jit(parallel=parallel)(g)


# Numba's and OpenBLAS's pools set to share the cores (kernels/_threads.py says why and how).
_threads.configure(PARALLEL)


def _import_arraymath_without_scipy() -> None:
    """Import ``numba.np.arraymath`` without its import-time BLAS probe.

    Numba imports that module on the first compile or cache load of a process, and at import it
    sets ``_HAVE_BLAS`` by importing ``scipy.linalg.cython_blas``, which imports all of
    ``scipy.linalg``: 0.14-0.2 s of every cold start on the project's machine (a third of the
    first cached ``correlate2d``), for a flag that only picks ``np.dot`` over a plain loop in
    a few of Numba's implementations. No kernel here calls BLAS. The probe is skipped while the
    module imports, the flag set to whether SciPy is installed (without importing it), and
    Numba's own ``ensure_blas`` restored: ``np.dot`` in anyone's compiled code still checks
    for SciPy when it compiles, as before. Nothing is done if Numba is not laid out so (another
    version) or the module is already imported."""
    import importlib.util
    import sys

    if "numba.np.arraymath" in sys.modules:
        return
    try:
        from numba.np import linalg
    except ImportError:  # pragma: no cover - another Numba
        return
    real = getattr(linalg, "ensure_blas", None)
    if real is None:  # pragma: no cover - another Numba
        return
    linalg.ensure_blas = lambda: None
    try:
        import numba.np.arraymath as arraymath
    finally:
        linalg.ensure_blas = real
    if getattr(arraymath, "ensure_blas", None) is not real and hasattr(arraymath, "_HAVE_BLAS"):
        arraymath.ensure_blas = real
        arraymath._HAVE_BLAS = importlib.util.find_spec("scipy") is not None


_import_arraymath_without_scipy()


class _NoCycleCollectionWhileCompiling(numba.core.event.Listener):
    """Python's cycle collector paused while Numba compiles (the outermost ``numba:compile``
    event, which Numba sends only for a real compile, under its compiler lock).

    A compile allocates hundreds of thousands of objects (IR nodes, types, LLVM wrappers), which
    set off the generational collector again and again, each full pass traversing everything
    Numba keeps alive: 12% of a cold first ``sgd`` on the project's machine (sampled with
    ``perf``). Paused, the cycles a compile leaves are found by the first collection after it.
    It applies to every Numba compile once ``kernels`` is imported (a user's own ``@njit`` too)
    and to nothing else, and puts the collector back as it found it (off stays off). The cost is
    memory: a cold process running the first ``sgd``, ``hypergrad`` and ``correlate2d`` peaked
    at 221 MB against 202."""

    def __init__(self):
        self._depth = 0
        self._reenable = False

    def on_start(self, event):
        if self._depth == 0:
            self._reenable = gc.isenabled()
            gc.disable()
        self._depth += 1

    def on_end(self, event):
        self._depth -= 1
        if self._depth == 0 and self._reenable:
            gc.enable()


def _collect_and_freeze():
    """At exit: one collection, then every object left is frozen (``gc.freeze``), so the
    collections of the interpreter's shutdown skip them.

    A process that compiled holds Numba's compile results (some 60,000 objects after a first
    ``sgd``), and CPython's shutdown traverses them in collection after collection: 0.38 s of a
    cold ``sgd`` process's exit on the project's machine, 0.02 s frozen (plus 0.08 s for this
    collection). The collection first finalises the garbage that exists at exit, as shutdown
    would; what is frozen is what was still reachable, which Python does not promise to
    finalise at exit anyway (the ``object.__del__`` documentation); the operating system frees
    it all with the process. Registered at import, so it runs after the handlers registered
    later (a user's own) and before the earlier ones (``logging`` still flushes)."""
    gc.collect()
    gc.freeze()


#: ``KERNELS_GC=0`` leaves Python's garbage collector alone (no pause, no freeze at exit).
GC_TUNED: bool = _flag("KERNELS_GC", True)
if GC_TUNED:
    numba.core.event.register("numba:compile", _NoCycleCollectionWhileCompiling())
    atexit.register(_collect_and_freeze)


def describe() -> dict:
    """The compile options in force, for reports."""
    return {
        "parallel": PARALLEL,
        "fastmath": sorted(FASTMATH) if FASTMATH else False,
        "cache": CACHE,
        "cache_stamp": "package" if PACKAGE_STAMPED_CACHE else "file",
        "boundscheck": bool(BOUNDSCHECK) or os.environ.get("NUMBA_BOUNDSCHECK") == "1",
        "reduction_block": REDUCTION_BLOCK,
        "gc_tuned": GC_TUNED,
        "numba_threads": numba.get_num_threads(),
        "thread_pools": _threads.describe(),
        "numba_version": numba.__version__,
    }
