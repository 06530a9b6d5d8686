"""The on-disk cache of compiled kernels is stamped with the sources of every library module the
kernel's module reaches through its imports (kernels/_config.py): an edit to a callee in another
file must not leave stale machine code, and an edit to a module no kernel of a file can call must
not throw that file's cache away."""

from __future__ import annotations

import numpy as np

import kernels
from kernels import _config


def test_kernels_use_the_package_stamped_locator():
    assert _config.PACKAGE_STAMPED_CACHE
    kernels.maxpool2d(np.ones((1, 1, 4, 4)), 3)  # the general kernel, which kernels/pool.py holds
    from kernels import pool

    locator = pool._maxpool2d_kernel._cache._impl._locator
    assert type(locator).__name__.startswith("PackageStamped")
    assert locator.get_source_stamp() == _config.package_stamp("kernels.pool")
    assert locator.get_source_stamp() != _config.package_stamp("kernels")


def test_the_stamp_covers_every_library_file_and_no_app():
    sources = _config._library_sources()
    names = {p[len(_config.PACKAGE_DIR) + 1:] for p in sources}
    assert {"_config.py", "pool.py", "conv/direct.py", "_simd/stencil.py", "naive/conv.py"} <= names
    assert not any(n.startswith("apps") for n in names)
    reached = set(_config.import_closure("kernels"))
    assert {"kernels.pool", "kernels.conv.direct", "kernels.optim.rules", "kernels.hypergrad.reverse",
            "kernels._simd.stencil", "kernels._rows"} <= reached


def test_the_closure_follows_imports_across_packages_and_no_further():
    conv = _config.import_closure("kernels.conv.direct")
    # the docstring's example: a kernel in conv/direct.py calls an intrinsic in _simd/stencil.py
    assert {"kernels.conv.direct", "kernels.conv.stencil3x3", "kernels._simd", "kernels._simd.stencil",
            "kernels._config"} <= set(conv)
    assert not any(m.startswith(("kernels.optim", "kernels.hypergrad", "kernels.pool")) for m in conv)
    assert "kernels._rows" in _config.import_closure("kernels.hypergrad.reverse")


def _package(tmp_path, files):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for name, text in files.items():
        (pkg / name).write_text(text)
    return tuple(str(pkg / name) for name in files), str(tmp_path)


def test_an_edit_to_a_callee_changes_the_stamp_and_an_unrelated_edit_does_not(tmp_path):
    files = {
        "__init__.py": "",
        "sub/__init__.py": "",
        "caller.py": "from .sub import (\n    middle,\n)\ndef f(x): return middle.h(x)\n",
        "sub/middle.py": "def h(x):\n    from ..callee import g\n    return g(x)\n",
        "callee.py": "def g(x): return x + 1\n",
        "other.py": "import pkg.caller\ny = 1\n",
    }
    paths, root = _package(tmp_path, files)
    assert _config.import_closure("pkg.caller", paths, root) == ["pkg.callee", "pkg.caller", "pkg.sub", "pkg.sub.middle"]

    def stamp():
        _config._sources.cache_clear()
        _config.package_stamp.cache_clear()
        return _config.package_stamp("pkg.caller", paths, root)

    before = stamp()
    (tmp_path / "pkg" / "other.py").write_text("import pkg.caller\ny = 2\n")
    assert stamp() == before
    (tmp_path / "pkg" / "callee.py").write_text("def g(x): return x + 2\n")
    assert stamp() != before


def test_files_outside_the_library_keep_numbas_own_locators(tmp_path):
    other = tmp_path / "user_code.py"
    other.write_text("x = 1\n")
    for cls in _config._caching.CacheImpl._locator_classes[:3]:
        assert cls.from_function(lambda: None, str(other)) is None


def test_a_first_kernel_call_does_not_import_scipy_linalg_and_numba_dot_still_works():
    """Numba's arraymath probes for BLAS by importing scipy.linalg (0.2 s of a cold start);
    kernels skips that probe (_config._import_arraymath_without_scipy) and sets the flag to
    what it would have found. In a fresh process: a cached kernel call leaves scipy.linalg
    unimported, and np.dot compiled afterwards (in anyone's code) still finds SciPy's BLAS."""
    import subprocess
    import sys

    code = (
        "import importlib.util, sys, numpy as np, numba, kernels\n"
        "kernels.maxpool2d(np.ones((1, 1, 4, 4)), 2)\n"
        "import numba.np.arraymath as A, numba.np.linalg as L\n"
        "print('scipy.linalg' in sys.modules, A._HAVE_BLAS == (importlib.util.find_spec('scipy') is not None),\n"
        "      A.ensure_blas is L.ensure_blas)\n"
        "f = numba.njit(lambda a, b: np.dot(a, b))\n"
        "print(f(np.arange(4.0), np.arange(4.0)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split("\n")[:2] == ["False True True", "14.0"]
