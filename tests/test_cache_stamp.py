"""The on-disk cache of compiled kernels is stamped with the whole library's sources
(kernels/_config.py): an edit to a callee in another file must not leave stale machine code."""

from __future__ import annotations

import numpy as np

import kernels
from kernels import _config


def test_kernels_use_the_package_stamped_locator():
    assert _config.PACKAGE_STAMPED_CACHE
    kernels.maxpool2d(np.ones((1, 1, 4, 4)), 2)
    from kernels import pool

    locator = pool._maxpool2x2_kernel._cache._impl._locator
    assert type(locator).__name__.startswith("PackageStamped")
    assert locator.get_source_stamp() == _config.package_stamp()


def test_the_stamp_covers_every_library_file_and_no_app():
    sources = _config._library_sources()
    names = {p[len(_config.PACKAGE_DIR) + 1:] for p in sources}
    assert {"_config.py", "pool.py", "conv/direct.py", "_simd/stencil.py", "naive/conv.py"} <= names
    assert not any(n.startswith("apps") for n in names)


def test_an_edit_to_any_file_changes_the_stamp(tmp_path):
    caller, callee = tmp_path / "caller.py", tmp_path / "callee.py"
    caller.write_text("def f(x): return g(x)\n")
    callee.write_text("def g(x): return x + 1\n")
    paths = (str(caller), str(callee))
    before = _config.package_stamp(paths)
    callee.write_text("def g(x): return x + 2\n")
    _config.package_stamp.cache_clear()
    assert _config.package_stamp(paths) != before


def test_files_outside_the_library_keep_numbas_own_locators(tmp_path):
    other = tmp_path / "user_code.py"
    other.write_text("x = 1\n")
    for cls in _config._caching.CacheImpl._locator_classes[:3]:
        assert cls.from_function(lambda: None, str(other)) is None
