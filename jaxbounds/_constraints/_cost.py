"""`constraint_cost`: the penalty on each unit's distance to its set."""

from __future__ import annotations

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp

from .._compile import compiled
from .._paths import PyTree
from .._penalty import Penalty, one_sided, penalty_function
from ._kind import Interval
from ._resolve import BOUNDS, Resolution, resolve
from ._rules import Constraints


def distances(res: Resolution, kinds: tuple, lows: dict, ups: dict, xs: dict) -> list:
    """``[(rule, path, distances per unit)]`` for every rule on every leaf."""
    out = []
    for j, rules in res.on_leaf:
        for rule in rules:
            kind = Interval(lows.get(j), ups.get(j)) if rule == BOUNDS else kinds[rule]
            out.append((rule, res.paths[j], kind.distance(xs[j])))
    for rule, a, b in res.relations:
        d = kinds[rule].distance(xs[a], xs[b])
        out.append((rule, f"{res.paths[a]} <= {res.paths[b]}", d))
    return out


def _summed(
    res: Resolution, kinds: tuple, lows: dict, ups: dict, xs: dict, penalty: Any
) -> jax.Array:
    terms = []
    for j, rules in res.on_leaf:
        x = xs[j]
        for rule in rules:
            if rule == BOUNDS or isinstance(kinds[rule], Interval):
                kind = (
                    Interval(lows.get(j), ups.get(j)) if rule == BOUNDS else kinds[rule]
                )
                terms.append(kind.cost(x, penalty))
                continue
            fn = penalty_function(penalty, x.dtype)
            terms.append(jnp.sum(one_sided(kinds[rule].distance(x), fn)))
    for rule, a, b in res.relations:
        d = kinds[rule].distance(xs[a], xs[b])
        fn = penalty_function(penalty, jnp.promote_types(xs[a].dtype, xs[b].dtype))
        terms.append(jnp.sum(one_sided(d, fn)))
    dtype = functools.reduce(
        jnp.promote_types, [t.dtype for t in terms], jnp.dtype(jnp.float32)
    )
    return functools.reduce(jnp.add, [t.astype(dtype) for t in terms])


def _total(
    xs: tuple, lows: list, ups: list, kinds: tuple, r: Resolution, penalty: Any
) -> jax.Array:
    keys = r.constrained()
    return _summed(
        r,
        kinds,
        dict(zip(keys, lows)),
        dict(zip(keys, ups)),
        dict(zip(keys, xs)),
        penalty,
    )


@functools.partial(compiled, static=("r", "penalty"))
def total_cost(
    xs: tuple, lows: list, ups: list, kinds: tuple, *, r: Resolution, penalty: Any
) -> jax.Array:
    """The summed penalty of the constrained leaves ``xs`` (in ``r``'s order)."""
    return _total(xs, lows, ups, kinds, r, penalty)


@functools.partial(compiled, static=("r", "penalty"))
def penalised_updates(
    xs: tuple,
    lows: list,
    ups: list,
    us: tuple,
    kinds: tuple,
    scale: Any,
    *,
    r: Resolution,
    penalty: Any,
) -> list:
    """``us + scale * grad(cost)(xs)``, each rounded once into its update's dtype."""
    grads = jax.grad(lambda xs: _total(xs, lows, ups, kinds, r, penalty))(xs)
    return [(u + scale * g).astype(u.dtype) for u, g in zip(us, grads)]


def constraint_cost(
    params: PyTree, c: Constraints, *, penalty: Penalty = "exp"
) -> chex.Array:
    """The differentiable penalty of every unit of ``params`` outside its set.

    Per rule and unit, ``v`` is the Euclidean distance from the unit to the
    set (`MaxNorm`: ``max(||x|| - r, 0)``; a relation: the distance of the
    element pair to the half-plane); the penalty is applied to ``v > 0`` and
    summed, through the same penalties as `bounds_cost` (``"exp"``: 0 inside,
    ``exp(v)`` outside, overflow-safe; ``"quadratic"``, ``"linear"``, a
    callable). For `Interval` rules and ``bounds`` it is exactly
    `bounds_cost`. The gradient points away from the set, so a descent step
    moves towards it. A unit within the projection's tolerance of an
    equality set (`Simplex`, `UnitNorm`) has distance 0.

    Args:
        params: the parameter tree.
        c: the `Constraints`.
        penalty: as in `bounds_cost`.

    Returns:
        A scalar (float32, or float64 for float64 params).

    Raises:
        ValueError: as `project`.
        TypeError: as `project`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> c = jb.Constraints(("w", jb.MaxNorm(1.0)))
        >>> params = {"w": jnp.array([3.0, 4.0])}  # norm 5: 4 outside
        >>> print(jb.constraint_cost(params, c, penalty="linear"))
        4.0
        >>> print(jax.grad(jb.constraint_cost)(params, c, penalty="linear")["w"])
        [0.6 0.8]
    """
    penalty_function(penalty, jnp.float32)
    r = resolve(params, c)
    if not r.res.constrained():
        return jnp.zeros((), jnp.float32)
    return total_cost(*r.numbers(), c.kinds, r=r.res, penalty=penalty)
