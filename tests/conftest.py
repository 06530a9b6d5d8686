import os

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
