"""Helpers shared by the sharded tests: reading collectives out of compiled
programs, placing host problems on a mesh or on one device, and running
Python in a fresh process on host devices."""

from __future__ import annotations

import math
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# ---------------------------------------------------------------------------
# Communication in compiled programs
# ---------------------------------------------------------------------------

#: A communicating HLO instruction: its result shape and its op.
COLLECTIVE = re.compile(
    r"=\s*(?P<shape>\([^=]*?\)|\S+)\s+"
    r"(?P<op>all-gather|all-to-all|ragged-all-to-all|collective-permute|"
    r"collective-broadcast|reduce-scatter|all-reduce)(?:-start|-done)?\("
)


def collectives(hlo: str) -> list[tuple[str, str]]:
    """``(op, result shape)`` of every communicating instruction in ``hlo``."""
    return [(m["op"], m["shape"]) for m in COLLECTIVE.finditer(hlo)]


def result_dims(shape: str) -> list[str]:
    """The dimension lists of an HLO result shape (one per tuple element)."""
    return re.findall(r"\w+\[([^\]]*)\]", shape)


def largest_result(shape: str) -> int:
    """Elements of the largest array in an HLO result shape."""
    sizes = [math.prod(int(d) for d in s.split(",") if d) for s in result_dims(shape)]
    return max(sizes, default=1)


def compiled_hlo(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


# ---------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------


def place(mesh, specs: dict, *trees: dict) -> tuple[dict, ...]:
    """Each tree's arrays sharded by ``specs`` (a `PartitionSpec` per key) on
    ``mesh``; floats stay floats (replicated)."""
    return tuple(
        {
            k: jax.device_put(x, NamedSharding(mesh, specs[k]))
            if isinstance(x, np.ndarray)
            else x
            for k, x in t.items()
        }
        for t in trees
    )


def on_one_device(*trees: dict) -> tuple[dict, ...]:
    """The host trees placed on a single device, for the reference numbers."""
    device = jax.devices("cpu")[0]
    return tuple(
        {
            k: jax.device_put(x, device) if isinstance(x, np.ndarray) else x
            for k, x in t.items()
        }
        for t in trees
    )


def replicate(tree, mesh):
    """Gather ``tree`` onto every device (what no jaxbounds function may do)."""
    whole = NamedSharding(mesh, P())
    if mesh.axis_types[0] == AxisType.Explicit:
        return jax.sharding.reshard(tree, whole)
    return jax.lax.with_sharding_constraint(tree, whole)


# ---------------------------------------------------------------------------
# Fresh processes
# ---------------------------------------------------------------------------


def python_env(devices: int | None = None) -> dict[str, str]:
    """This process's environment without its XLA_FLAGS, on host devices.

    ``devices``: how many host devices to simulate; `None` leaves XLA_FLAGS
    unset, so the script chooses.
    """
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"  # host devices, also where accelerators exist
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def run_python(args: list[str], devices: int | None = None):
    """``python *args`` in a fresh process on host (CPU) devices (see `python_env`)."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=python_env(devices),
        cwd=ROOT,
        timeout=180,
    )
