"""jaxbounds: bound constraints on JAX parameter pytrees.

Build lower/upper bound trees that mirror your parameters (`make_bounds`),
then add a differentiable penalty for leaving the box to your loss
(`bounds_cost`), or project back into it (`clip_to_bounds`).
"""

from . import tree_utils
from ._cost import (
    ViolationReport,
    bounds_clip,
    bounds_cost,
    clip_to_bounds,
    summed_exp_boundary_loss,
    violations,
)
from ._equinox import ParameterBoundaryRegularizer, family_mask, field
from ._io import load_bounds, save_bounds
from ._optax import add_bounds_penalty, project_to_bounds
from ._reparam import constrain, unconstrain
from ._tree import make_bounds, mask, paths, set_where

__version__ = "0.1.0"

__all__ = [
    "ParameterBoundaryRegularizer",
    "ViolationReport",
    "add_bounds_penalty",
    "bounds_clip",
    "bounds_cost",
    "clip_to_bounds",
    "constrain",
    "family_mask",
    "field",
    "load_bounds",
    "make_bounds",
    "mask",
    "paths",
    "project_to_bounds",
    "save_bounds",
    "set_where",
    "summed_exp_boundary_loss",
    "tree_utils",
    "unconstrain",
    "violations",
]
