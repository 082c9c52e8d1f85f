"""Constraint sets beyond boxes: norms per unit, simplices, orderings, relations.

One module per idea: `_kind` (the base class and `Interval`), `_norms`,
`_simplex`, `_ordered` (the kinds), `_units` and `_exact` (axes and inward
rounding), `_threshold` (the sort-and-threshold kernel), `_relations`
(`LessEqual`), `_rules` (`Constraints`), `_resolve` (rules against a params
tree), `_sets` and `_dykstra` (closed forms and intersections), and the
enforcements `_project`, `_cost`, `_report`, `_optax`, `_bijection`,
`_declared`.
"""

from ._bijection import constrain, unconstrain
from ._cost import constraint_cost
from ._kind import Constraint, Interval
from ._matrix import PSD, SpectralNorm
from ._norms import MaxNorm, MinMaxNorm, UnitNorm
from ._optax import add_constraint_penalty, project_to_constraints, projected
from ._ordered import Ordered
from ._orthogonal import Orthogonal
from ._project import project
from ._relations import LessEqual
from ._report import ConstraintReport, RuleViolations, violations
from ._rules import NO_UPPER, Constraints, given_constraints
from ._simplex import Simplex

__all__ = [
    "NO_UPPER",
    "given_constraints",
    "ConstraintReport",
    "Constraints",
    "LessEqual",
    "RuleViolations",
    "add_constraint_penalty",
    "constrain",
    "constraint_cost",
    "project",
    "project_to_constraints",
    "projected",
    "unconstrain",
    "violations",
    "Constraint",
    "Interval",
    "MaxNorm",
    "MinMaxNorm",
    "Ordered",
    "Orthogonal",
    "PSD",
    "Simplex",
    "SpectralNorm",
    "UnitNorm",
]
