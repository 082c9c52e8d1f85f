"""Constraint sets beyond boxes: norms per unit, simplices, orderings, relations.

One module per idea: `_kind` (the base class and `Interval`), `_norms`,
`_simplex`, `_ordered` (the kinds), `_units` and `_exact` (axes and inward
rounding), `_threshold` (the sort-and-threshold kernel).
"""

from ._kind import Constraint, Interval
from ._norms import MaxNorm, MinMaxNorm, UnitNorm
from ._ordered import Ordered
from ._simplex import Simplex

__all__ = [
    "Constraint",
    "Interval",
    "MaxNorm",
    "MinMaxNorm",
    "Ordered",
    "Simplex",
    "UnitNorm",
]
