"""The box of a `Constraints` made of intervals: bound trees for the solver.

`minimize` and `lbfgsb` take boxes only (L-BFGS-B's projected path is a
box's). A `Constraints` whose rules are all `Interval`s (and bound trees)
is one: its bound trees are the intersection of the intervals on each
leaf. Any other kind or a relation has no such form, and the solver says
so, pointing to `constrain`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from .._paths import PyTree, pure_view
from ._kind import Interval
from ._resolve import BOUNDS, resolve
from ._rules import Constraints


def _tighter(a: Any, b: Any, side: str) -> Any:
    """The tighter of two bounds of ``side`` (`None`: open)."""
    if a is None:
        return b
    if b is None:
        return a
    if type(a) is float and type(b) is float:
        return max(a, b) if side == "lower" else min(a, b)
    return jnp.maximum(a, b) if side == "lower" else jnp.minimum(a, b)


def interval_bounds(params: PyTree, c: Constraints, user: str) -> tuple[Any, Any]:
    """``(lower, upper)`` bound trees (pure) equal to the intervals of ``c``.

    Args:
        params: the params tree the bounds are for.
        c: a `Constraints` of `Interval` rules and bound trees only.
        user: the caller's name, for messages.

    Returns:
        Two trees with the structure of ``params``' pure view: ``-inf`` /
        ``inf`` on unconstrained parameters, `None` elsewhere.

    Raises:
        ValueError: a rule that is not an interval, or a relation, naming
            the rule and the path.
    """
    r = resolve(params, c)
    for i, a, _ in r.res.relations:
        raise ValueError(
            f"{user} takes boxes only, and {c.name(i)} relates "
            f"{r.res.paths[a]!r} to another leaf: optimise raw values through "
            "jaxbounds.constrain(raw, c), or project with jaxbounds.project"
        )
    lows = [-math.inf if p else None for p in r.res.paths]
    ups = [math.inf if p else None for p in r.res.paths]
    for j, rules in r.res.on_leaf:
        for k in rules:
            if k == BOUNDS:
                lo, up = r.lows.get(j), r.ups.get(j)
            elif isinstance(c.kinds[k], Interval):
                lo, up = c.kinds[k].sides()
            else:
                raise ValueError(
                    f"{user} takes boxes only, and {c.name(k)} puts a "
                    f"{type(c.kinds[k]).__name__} on {r.res.paths[j]!r}: optimise "
                    "raw values through jaxbounds.constrain(raw, c), or use "
                    "project_to_constraints after a first-order optimizer"
                )
            lows[j] = _tighter(lows[j], lo, "lower")
            ups[j] = _tighter(ups[j], up, "upper")
    pure, _ = pure_view(params)
    treedef = jax.tree_util.tree_structure(pure, is_leaf=lambda x: x is None)
    return (
        jax.tree_util.tree_unflatten(treedef, lows),
        jax.tree_util.tree_unflatten(treedef, ups),
    )
