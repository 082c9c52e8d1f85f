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
