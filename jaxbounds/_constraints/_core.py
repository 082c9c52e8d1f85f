"""What the constraint sets use from the bounds core, imported in one place.

The core is being split into smaller modules (`_plan`, `_rounding`,
`_declare`, ...); keeping every import of it here makes that move a change
of this file only.
"""

from __future__ import annotations

from .._bounds import full_bounds, inward, make_bounds, next_float
from .._clip import clip_leaf, land, stored_sum
from .._kernels import cost as box_cost
from .._paths import (
    PyTree,
    flatten_with_paths,
    is_none,
    is_param_leaf,
    pure_view,
    shown,
)
from .._penalty import Penalty, compute_dtype, one_sided, resolve
from .._select import Where, selection

__all__ = [
    "Penalty",
    "PyTree",
    "Where",
    "box_cost",
    "clip_leaf",
    "compute_dtype",
    "flatten_with_paths",
    "full_bounds",
    "inward",
    "is_none",
    "is_param_leaf",
    "land",
    "make_bounds",
    "next_float",
    "one_sided",
    "pure_view",
    "resolve",
    "selection",
    "shown",
    "stored_sum",
]
