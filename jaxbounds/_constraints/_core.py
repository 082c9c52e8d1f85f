"""What the constraint sets use from the bounds core, imported in one place.

Keeping every import of the core (`_plan`, `_rounding`, `_declare`, ...)
here makes a move of the core a change of this file only.
"""

from __future__ import annotations

from .._bounds import Box, make_bounds
from .._clip import clip_leaf
from .._declare import declarations
from .._kernels import penalty_sum as box_cost
from .._paths import (
    PyTree,
    flatten_with_paths,
    is_none,
    nearest,
    param_flags,
    path_str,
    pure_view,
    shown,
)
from .._penalty import Penalty, one_sided, resolve
from .._plan import plan
from .._rounding import (
    compute_dtype,
    inward,
    land,
    next_float,
    stored_sum,
    violation,
)
from .._select import Where, selection

__all__ = [
    "Box",
    "Penalty",
    "PyTree",
    "Where",
    "box_cost",
    "clip_leaf",
    "compute_dtype",
    "declarations",
    "flatten_with_paths",
    "inward",
    "is_none",
    "land",
    "make_bounds",
    "nearest",
    "next_float",
    "one_sided",
    "param_flags",
    "path_str",
    "plan",
    "pure_view",
    "resolve",
    "selection",
    "shown",
    "stored_sum",
    "violation",
]
