"""Params, their bounds, and the parameter leaves the solver works on.

The one module of the solver that reads the core: the plan of the params
and their bounds (`_plan.plan`, its one write-back), the inward rounding of
the bounds and the exact landing of an update (`_rounding`). The rest of
the solver sees only `Split`: the parameter leaves as arrays, their bounds
elementwise, and the way back into the params' own tree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._constraints._boxes import interval_bounds
from .._constraints._rules import NO_UPPER, given_constraints
from .._plan import Plan, plan
from .._rounding import inward_edges, land


class Split(NamedTuple):
    """Params split into the parameter leaves (trees with `None` elsewhere)."""

    x: Any  # parameter leaves as arrays
    lo: Any  # their lower bounds, elementwise, rounded inwards
    up: Any  # likewise the upper bounds
    plan: Plan  # every parameter leaf of the params, and the write-back
    dtype: Any  # the solver's scalar dtype


def _box(p: jax.Array, lo: Any, up: Any) -> tuple[jax.Array, jax.Array]:
    """A leaf's bounds as arrays of its shape and dtype, rounded inwards."""
    a, b = (jnp.broadcast_to(v, np.shape(p)) for v in inward_edges(lo, up, p.dtype))
    # a fixed parameter whose value is not representable rounds to lo > up
    return jnp.minimum(a, b), b


def _bound_trees(params: Any, lower: Any, upper: Any, user: str) -> tuple[Any, Any]:
    """``(lower, upper)``, or the box of a `Constraints` of intervals in ``lower``."""
    c = given_constraints(lower, upper, user)
    return (lower, upper) if c is None else interval_bounds(params, c, user)


def split(
    params: Any, lower: Any, upper: Any = NO_UPPER, user: str = "minimize"
) -> Split:
    """Split ``params`` into parameter leaves (with their bounds) and the rest.

    Args:
        params: any pytree (Python floats in plain containers are parameters).
        lower: lower bound tree (see `make_bounds`), or a `Constraints` of
            `Interval` rules (then ``upper`` is left out).
        upper: upper bound tree.
        user: the public function, for messages.

    Returns:
        A `Split`; its ``dtype`` is the widest parameter dtype (at least
        float32), the dtype the solver's scalars are computed in.

    Raises:
        ValueError: if the bound trees do not match, or lower > upper; a
            `Constraints` with a kind other than `Interval`, or a relation.
        TypeError: if a bound is malformed, or ``upper`` is missing.

    Examples:
        >>> import jax.numpy as jnp
        >>> sp = split({"a": jnp.zeros(2), "n": 3}, {"a": 0.0, "n": None},
        ...            {"a": 1.0, "n": None})
        >>> print(sp.x["a"], sp.x["n"], sp.up["a"])
        [0. 0.] None [1. 1.]
    """
    pl = plan(params, *_bound_trees(params, lower, upper, user), every_param=True)
    sides: list[list[Any]] = [[None] * len(pl.leaves) for _ in range(3)]
    for i, lo, up in zip(pl.indices, pl.lows, pl.ups):
        p = jnp.asarray(pl.leaves[i])
        sides[0][i] = p
        sides[1][i], sides[2][i] = _box(p, lo, up)
    dts = [x.dtype for x in sides[0] if x is not None]
    dtype = jnp.result_type(jnp.float32, *dts) if dts else jnp.float32
    x, lo, up = (jax.tree_util.tree_unflatten(pl.treedef, s) for s in sides)
    return Split(x, lo, up, pl, dtype)


def as_data(sp: Split) -> Split:
    """``sp`` with its Python-float values as arrays, ready for `eqx.filter_jit`.

    `eqx.filter_jit` takes Python floats as static: a float start or bound
    changed would compile the solve again. The parameter leaves of the plan
    become the arrays of ``sp.x`` (which `join` writes over anyway), and
    finite float bounds 0-d arrays of their leaf's dtype (``sp.lo`` and
    ``sp.up`` are arrays already). `None` sides, the static pattern, stay.
    """
    flat = list(sp.plan.leaves)
    xs = _flat(sp, sp.x)
    dts = [xs[i].dtype for i in sp.plan.indices]
    for i in sp.plan.indices:
        flat[i] = xs[i]

    def data(v: Any, dt: Any) -> Any:
        return jnp.asarray(v, dt) if type(v) is float else v

    return sp._replace(
        plan=sp.plan._replace(
            leaves=flat,
            lows=[data(v, dt) for v, dt in zip(sp.plan.lows, dts)],
            ups=[data(v, dt) for v, dt in zip(sp.plan.ups, dts)],
        )
    )


def _flat(sp: Split, tree: Any) -> list[Any]:
    return sp.plan.treedef.flatten_up_to(tree)


def join(sp: Split, x: Any) -> Any:
    """The params tree with parameter leaves ``x`` (the rest as they were)."""
    return sp.plan.write_back(sp.plan.pick(_flat(sp, x)))


def land_update(base: Any, target: Any, lo: Any, up: Any) -> Any:
    """An update ``u`` with ``base + u`` (as `optax.apply_updates` rounds it) inside.

    ``target`` is in the box: `_rounding.land`, which lands on it exactly when
    an update of ``base``'s dtype can, and inside whenever ``base`` is.
    """
    return land(base, target, lo, up, base.dtype)


def param_part(sp: Split, tree: Any) -> Any:
    """The parameter leaves of a tree shaped like the params, as arrays."""
    out = [
        None if x is None else jnp.asarray(v, x.dtype)
        for x, v in zip(_flat(sp, sp.x), _flat(sp, tree))
    ]
    return jax.tree_util.tree_unflatten(sp.plan.treedef, out)


def grads_like(sp: Split, g: Any) -> Any:
    """A gradient tree shaped like the params: `None` at non-parameters."""
    return sp.plan.restore(g)


def updates_like(sp: Split, u: Any) -> Any:
    """Updates shaped like the params: zeros at other arrays, `None` elsewhere."""
    planned = set(sp.plan.indices)
    others = [
        jnp.zeros_like(r)
        if i not in planned and isinstance(r, (jax.Array, np.ndarray))
        else None
        for i, r in enumerate(sp.plan.leaves)
    ]
    return sp.plan.write_back(sp.plan.pick(_flat(sp, u)), others)
