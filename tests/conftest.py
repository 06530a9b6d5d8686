import os

import pytest

from hypothesis import HealthCheck, settings

# Small example counts keep the suite inside CI's budget (2 cores, compile time included);
# KERNELS_HYPOTHESIS_PROFILE=thorough runs many more.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("KERNELS_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def bench_module():
    """Loads a module of ``bench/`` (not a package) by path, for the tests of its helpers."""
    return _load_bench_module


def _load_bench_module(name):
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
