"""`project`: the Euclidean projection of a params tree onto its constraints."""

from __future__ import annotations

import functools

import numpy as np

from .._compile import compiled
from .._paths import PyTree
from ._dykstra import dykstra
from ._projection_plan import Context, apply, build
from ._resolve import Resolved, resolve
from ._rules import Constraints
from ._stacked import batches, run_batch


def plan_of(r: Resolved, c: Constraints) -> tuple:
    """The static projection plan of a resolution."""
    keys = r.res.constrained()
    shapes = {j: tuple(np.shape(r.values[j])) for j in keys}
    return build(r.res, Context(c.kinds, r.lows, r.ups), shapes)


def run_plan(ctx: Context, plan: tuple, xs: dict, tol: float, max_iter: int) -> dict:
    """Every component of ``plan`` projected: one item directly, more by Dykstra.

    Single-kind leaves of one kind, shape and dtype are projected together
    (`_stacked`).
    """
    out = dict(xs)
    shapes = {j: tuple(x.shape) for j, x in xs.items()}
    dtypes = {j: x.dtype for j, x in xs.items()}
    together, plan = batches(plan, ctx.kinds, shapes, dtypes)
    for members in together:
        out.update(run_batch(ctx.kinds, members, out, lambda k, x: k.project(x)))
    for group in plan:
        if len(group) == 1:
            out.update(apply(ctx, group[0], out))
        else:
            part = {j: out[j] for it in group for j in it.leaves()}
            out.update(dykstra(ctx, group, part, tol, max_iter))
    return out


@functools.partial(compiled, static=("plan", "keys", "tol", "max_iter"))
def projected_leaves(
    xs: tuple,
    lows: list,
    ups: list,
    kinds: tuple,
    *,
    plan: tuple,
    keys: tuple,
    tol: float,
    max_iter: int,
) -> tuple:
    """The constrained leaves ``xs`` (in ``keys`` order) projected by ``plan``."""
    ctx = Context(kinds, dict(zip(keys, lows)), dict(zip(keys, ups)))
    out = run_plan(ctx, plan, dict(zip(keys, xs)), tol, max_iter)
    return tuple(out[j] for j in keys)


def project(params: PyTree, c: Constraints) -> PyTree:
    """The Euclidean projection of ``params`` onto the sets of ``c``, per unit.

    Each rule's units (`MaxNorm(axis=0)`: each column of a Dense kernel) are
    projected onto their set; where several rules act on a leaf, or a
    relation meets intervals, the result is the projection onto the
    intersection (a closed form where DESIGN names one, otherwise Dykstra's
    algorithm to ``c.tol`` / ``c.max_iter``). For one kind and the closed
    forms, inequalities hold exactly on the returned values as computed in
    at least float32 (``||y|| <= r``, ``y >= 0``, ``y[i] <= y[i + 1]``,
    ``a <= b - margin``); equalities to a few ulps. Unconstrained leaves are
    returned as the same objects. Works under `jax.jit` and `jax.vmap`
    (numbers of ``c`` may be traced); an eager call is one compiled
    dispatch, and changed numbers do not recompile.

    Args:
        params: the parameter tree (dicts, equinox or nnx models, ...).
        c: the `Constraints`.

    Returns:
        A tree like ``params``.

    Raises:
        ValueError: a rule that cannot apply (see `Constraints`), naming the
            rule and the path.
        TypeError: a rule that selects only non-float leaves.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> c = jb.Constraints(("thr", jb.Ordered()), ("p", jb.Simplex()))
        >>> params = {"thr": jnp.array([0.3, 0.1]), "p": jnp.array([2.0, 0.0])}
        >>> out = jb.project(params, c)
        >>> print(out["thr"], out["p"])
        [0.2 0.2] [1. 0.]
    """
    r = resolve(params, c)
    keys = r.res.constrained()
    if not keys:
        return r.write_back({})
    new = projected_leaves(
        *r.numbers(),
        c.kinds,
        plan=plan_of(r, c),
        keys=keys,
        tol=c.tol,
        max_iter=c.max_iter,
    )
    return r.write_back(dict(zip(keys, new)))
