"""Give the multi-device tests 8 host (CPU) devices.

XLA fixes the number of host devices when its CPU backend starts, so these
tests run in their own pytest process (the main run does not collect this
directory; see ``norecursedirs`` in pyproject.toml)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m pytest -q tests/sharded

Without that flag in the environment it is added here, which works as long
as nothing has started a JAX backend yet.
"""

import os

FLAG = "--xla_force_host_platform_device_count"
if FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FLAG}=8".strip()


import jax  # noqa: E402  (after XLA_FLAGS is set)
import pytest  # noqa: E402
from jax.sharding import AxisType  # noqa: E402

#: The mesh's axis names: a 2 x 4 grid of the 8 host devices.
AXES = ("data", "model")


@pytest.fixture(
    scope="module",
    params=[AxisType.Explicit, AxisType.Auto],
    ids=["explicit", "auto"],
)
def mesh(request):
    cpus = jax.devices("cpu")
    if len(cpus) < 8:
        pytest.fail(
            f"these tests need 8 host devices, JAX has {len(cpus)}: run them in "
            "their own process, XLA_FLAGS=--xla_force_host_platform_device_count=8 "
            "python -m pytest tests/sharded"
        )
    return jax.make_mesh(
        (2, 4), AXES, axis_types=(request.param,) * 2, devices=cpus[:8]
    )
