"""Constraints declared on a model: ``field(constraint=)``, ``nnx.Param(constraint=)``.

Adapters report a declared kind under `CONSTRAINT_KEY` through the
declarations registry (`jaxbounds._declare`); this module turns them into
rules that match their path exactly, and adds the
declared bounds (`make_bounds`).
"""

from __future__ import annotations

import math
from typing import Any

import jax

from .._bounds import make_bounds
from .._declare import declarations
from .._paths import pure_view
from ._kind import Constraint
from ._relations import LessEqual

#: Metadata key of a declared constraint (equinox fields, nnx declarations).
CONSTRAINT_KEY = "jaxbounds_constraint"


class ExactPath:
    """A selector matching one dotted path exactly (declared constraints)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, path: str, leaf: Any) -> bool:
        return path == self.path

    def __hash__(self) -> int:
        return hash(("ExactPath", self.path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExactPath) and other.path == self.path

    def __repr__(self) -> str:
        return repr(self.path)


def checked_kinds(value: Any, where: str) -> tuple[Any, ...]:
    """A declared constraint as a tuple of kinds, or `TypeError` naming ``where``."""
    kinds = value if isinstance(value, (tuple, list)) else (value,)
    for k in kinds:
        if not isinstance(k, Constraint) or isinstance(k, LessEqual):
            raise TypeError(
                f"{where}: constraint must be a Constraint kind (MaxNorm, Simplex, "
                f"...) or a tuple of them, got {type(k).__name__}; relations between "
                "leaves go in Constraints(...)"
            )
    return tuple(kinds)


def _found(model: Any) -> dict[str, Any]:
    return {
        p: d[CONSTRAINT_KEY]
        for p, d in declarations(model).items()
        if CONSTRAINT_KEY in d
    }


def _bounded(tree: Any) -> bool:
    for x in jax.tree_util.tree_leaves(tree):
        if not (isinstance(x, float) and math.isinf(x)):
            return True
    return False


def declared_rules(model: Any) -> tuple[list[tuple[Any, Any]], Any]:
    """``(rules, bounds)`` declared on ``model`` (bounds `None` if none declared)."""
    rules = []
    for path, value in _found(model).items():
        for kind in checked_kinds(value, f"the declaration at {path!r}"):
            rules.append((ExactPath(path), kind))
    lower, upper = make_bounds(model)
    lower, _ = pure_view(lower)
    upper, _ = pure_view(upper)
    bounds = (lower, upper) if _bounded(lower) or _bounded(upper) else None
    return rules, bounds
