"""One L-BFGS-B iteration: Cauchy point, subspace step, line search, memory.

From ``x`` with gradient ``g``:

1. the generalized Cauchy point ``x_c`` (`cauchy`);
2. the subspace minimiser ``x_bar`` over the variables free at ``x_c``
   (`subspace`); for small problems both at once, densely (`dense_step`);
3. a line search along ``d = x_bar - x`` for the strong Wolfe conditions,
   limited to the feasible segment; every trial point is clipped into the
   box, so ``fun`` is never evaluated outside it (`line_search`);
4. the pair ``(s, y)`` is stored unless its curvature ``s^T y`` is not
   positive enough.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._cauchy import cauchy
from ._dense import dense_step, use_dense
from ._memory import Memory, compact, push, reset
from ._params import land_update
from ._search import line_search
from ._subspace import subspace
from ._tree import largest, leaves, reach, smallest, tmap, vdot

#: Largest step the line search tries on an unbounded segment (scipy's).
BIG = 1e10


class Point(NamedTuple):
    """An iterate with its value and gradient."""

    x: Any
    f: jax.Array
    g: Any


def keep_pair(s: Any, y: Any, g: Any, dtype: Any) -> jax.Array:
    """Whether the pair ``(s, y)`` is stored: ``s.y > eps * |g.s|`` (scipy's test).

    A pair with ``s.y <= 0`` would make ``B`` indefinite.
    """
    eps = jnp.finfo(dtype).eps
    return vdot(s, y, dtype) > eps * -vdot(g, s, dtype)


def iteration(
    value_and_grad: Callable[[Any], tuple[Any, Any]],
    here: Point,
    base: Any | None,
    lo: Any,
    up: Any,
    mem: Memory,
    first: Any,
    dtype: Any,
    skip: Any = False,
) -> tuple[Point, Any, Memory, Any, Any]:
    """One L-BFGS-B iteration from ``here``.

    Args:
        value_and_grad: ``x -> (f, g)`` on parameter trees.
        here: the current point.
        base: the point updates are relative to (the optax params), or
            `None`.
        lo: lower bounds.
        up: upper bounds.
        mem: the memory.
        first: whether this is the first iteration (scipy's first step).
        dtype: the dtype of the scalars.
        skip: a flag for a finished fit in a batch: no inner loop runs, no
            evaluation is made, and the result is a failed step.

    Returns:
        ``(new point, update or None, memory, evaluations, line search
        succeeded)``; on failure the point is ``here`` and the memory is
        emptied.
    """
    x, f, g = here
    cp = compact(mem)
    if use_dense(x, mem.age.shape[0]):
        # a small problem: the exact Cauchy point and one masked solve
        _, xbar = dense_step(x, g, lo, up, mem, cp, dtype)
    else:
        xc = cauchy(x, g, lo, up, mem, cp, dtype, skip)
        xbar, mem = subspace(x, g, xc, lo, up, mem, cp, dtype)
    d = tmap(jnp.subtract, xbar, x)
    slope0 = vdot(g, d, dtype)
    # the feasible segment and the first trial (as scipy's lnsrlb)
    sides = leaves(lo) + leaves(up)
    bounded = largest([jnp.any(jnp.isfinite(a)) for a in sides], jnp.bool_, 0)
    boxed = smallest([jnp.all(jnp.isfinite(a)) for a in sides], jnp.bool_, 1)
    to_wall = jnp.minimum(reach(x, d, lo, up, dtype, math.inf), BIG)
    lam_max = jnp.where(bounded, jnp.where(first, 1.0, jnp.maximum(to_wall, 1.0)), BIG)
    lam_max = jnp.minimum(lam_max, BIG).astype(dtype)
    dnorm = jnp.sqrt(vdot(d, d, dtype))
    lam0 = jnp.where(first & ~boxed, jnp.minimum(1 / dnorm, lam_max), 1.0)

    def point(lam: Any) -> tuple[Any, Any]:
        # the full step is x_bar itself, as in scipy's lnsrlb: a variable it
        # puts on a bound lands there exactly (x + (x_bar - x) may round off)
        target = tmap(
            lambda x, d, lo, up, xb: jnp.where(
                lam == 1, xb, jnp.clip(x + lam.astype(x.dtype) * d, lo, up)
            ),
            x,
            d,
            lo,
            up,
            xbar,
        )
        if base is None:
            return target, None
        u = tmap(land_update, base, target, lo, up)
        return tmap(lambda b, u: (b + u).astype(b.dtype), base, u), u

    def phi(lam: Any) -> tuple[Any, Any, Any]:
        xt, u = point(lam)
        ft, gt = value_and_grad(xt)
        return ft, vdot(gt, d, dtype), (xt, gt, u)

    aux0 = (x, g, point(jnp.zeros((), dtype))[1])
    lam, f_new, (x_new, g_new, u), evals = line_search(
        phi, f.astype(dtype), slope0, lam0, lam_max, aux0, dtype, skip
    )
    ok = (lam > 0) & (slope0 < 0)
    s = tmap(jnp.subtract, x_new, x)
    y = tmap(jnp.subtract, g_new, g)
    keep = ok & keep_pair(s, y, g, dtype)
    # one row written; on failure the memory is emptied (two small fields)
    mem_new = push(mem, s, y, dtype, keep)
    mem_new = mem_new._replace(
        age=jnp.where(ok, mem_new.age, reset(mem).age),
        theta=jnp.where(ok, mem_new.theta, reset(mem).theta),
    )
    new = Point(x_new, f_new.astype(f.dtype), g_new)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, here)
    return new, u, mem_new, evals, ok


def pg_norm(x: Any, g: Any, lo: Any, up: Any, dtype: Any) -> jax.Array:
    """The infinity norm of the projected gradient ``P(x - g) - x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> x, g = jnp.array([0.0, 0.5]), jnp.array([1.0, -0.25])
        >>> print(pg_norm(x, g, 0.0, 1.0, jnp.float32))
        0.25
    """
    parts = tmap(
        lambda x, g, lo, up: jnp.max(jnp.abs(jnp.clip(x - g, lo, up) - x), initial=0),
        x,
        g,
        lo,
        up,
    )
    return largest(leaves(parts), dtype, 0.0)
