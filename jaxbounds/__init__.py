"""jaxbounds: constraints on JAX parameter pytrees.

Build lower/upper bound trees that mirror your parameters (`make_bounds`),
then add a differentiable penalty for leaving the box to your loss
(`bounds_cost`), chain an optax transformation (`add_bounds_penalty`,
`project_to_bounds`), or optimise through a bijection (`constrain`).

Beyond boxes, a `Constraints` holds rules such as `MaxNorm` per unit,
`Simplex`, `Ordered` and relations between parameters (`LessEqual`),
enforced by `project`, `project_to_constraints`, `constraint_cost` and
`constrain`. `minimize` (and the optax form `lbfgsb`) is a bounded L-BFGS-B
on the pytree. Bounds and constraints can be declared on equinox fields
(`field`) and on flax nnx parameters (``nnx.Param(x, lower=..., upper=...)``;
flax is imported only when used).
"""

from . import _nnx as _nnx  # registers the flax nnx view; imports no flax
from . import tree_utils
from ._bounds import Box, make_bounds
from ._clip import clip_to_bounds
from ._constraints import (
    PSD,
    Constraint,
    ConstraintReport,
    Constraints,
    Interval,
    LessEqual,
    MaxNorm,
    MinMaxNorm,
    Ordered,
    Orthogonal,
    Simplex,
    SpectralNorm,
    UnitNorm,
    add_constraint_penalty,
    constraint_cost,
    project,
    project_to_constraints,
    projected,
)
from ._constraints._report import RuleViolations
from ._cost import bounds_cost
from ._equinox import family_mask, field
from ._io import load_bounds, save_bounds
from ._lbfgsb import lbfgsb, minimize
from ._lbfgsb._minimize import MinimizeResult
from ._lbfgsb._optax import LbfgsbState
from ._optax import add_bounds_penalty, project_to_bounds
from ._paths import paths
from ._reparam import constrain, unconstrain
from ._rockpool import (
    ParameterBoundaryRegularizer,
    bounds_clip,
    summed_exp_boundary_loss,
)
from ._select import mask, set_where
from ._transform import BoundsPenaltyState
from ._violations import PathViolations, ViolationReport, violations

__version__ = "0.2.0.dev0"

__all__ = [
    "Constraint",
    "ConstraintReport",
    "Constraints",
    "Interval",
    "LessEqual",
    "MaxNorm",
    "MinMaxNorm",
    "Ordered",
    "Orthogonal",
    "PSD",
    "Simplex",
    "SpectralNorm",
    "UnitNorm",
    "Box",
    "BoundsPenaltyState",
    "LbfgsbState",
    "MinimizeResult",
    "ParameterBoundaryRegularizer",
    "PathViolations",
    "RuleViolations",
    "ViolationReport",
    "add_bounds_penalty",
    "add_constraint_penalty",
    "bounds_clip",
    "bounds_cost",
    "clip_to_bounds",
    "constrain",
    "constraint_cost",
    "family_mask",
    "field",
    "lbfgsb",
    "load_bounds",
    "make_bounds",
    "mask",
    "minimize",
    "paths",
    "project",
    "project_to_bounds",
    "project_to_constraints",
    "projected",
    "save_bounds",
    "set_where",
    "summed_exp_boundary_loss",
    "tree_utils",
    "unconstrain",
    "violations",
]
