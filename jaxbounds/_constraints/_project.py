"""`project`: the projection of a params tree onto its constraints.

Euclidean, or in a diagonal metric ``sum(d * (y - x)**2)`` given as a tree
of positive weights (`metric_leaves`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import compiled
from .._paths import PyTree, pure_view
from .._rounding import compute_dtype
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


def run_plan(
    ctx: Context,
    plan: tuple,
    xs: dict,
    tol: float,
    max_iter: int,
    ds: dict | None = None,
) -> dict:
    """Every component of ``plan`` projected: one item directly, more by Dykstra.

    Single-kind leaves of one kind, shape and dtype are projected together
    (`_stacked`). With ``ds`` (leaf -> positive weights or `None`), every
    projection is taken in the metric ``sum(d * (y - x)**2)``.
    """
    out = dict(xs)
    shapes = {j: tuple(x.shape) for j, x in xs.items()}
    dtypes = {j: x.dtype for j, x in xs.items()}
    together, plan = batches(plan, ctx.kinds, shapes, dtypes)
    for members in together:
        if ds is None:
            out.update(run_batch(ctx.kinds, members, out, lambda k, x: k.project(x)))
        else:
            full = {j: full_metric(ds.get(j), out[j]) for j, _ in members}
            out.update(
                run_batch(
                    ctx.kinds,
                    members,
                    out,
                    lambda k, x, d: k.project_in_metric(x, d),
                    full,
                )
            )
    for group in plan:
        if len(group) == 1:
            out.update(apply(ctx, group[0], out, ds))
        else:
            part = {j: out[j] for it in group for j in it.leaves()}
            out.update(dykstra(ctx, group, part, tol, max_iter, ds))
    return out


def full_metric(d: Any, x: jax.Array) -> jax.Array:
    """``d`` (`None`: 1) as weights of ``x``'s shape in its compute dtype."""
    one = 1.0 if d is None else d
    return jnp.broadcast_to(jnp.asarray(one, compute_dtype(x.dtype)), x.shape)


def metric_leaves(metric: PyTree, r: Resolved, keys: Sequence[int]) -> tuple:
    """The metric's leaves at the constrained positions ``keys`` (`None`: none).

    ``metric`` is a tree of the params' structure (the same kind of tree:
    dicts, an equinox module, an nnx state); its leaves at constrained
    leaves are positive arrays broadcastable to them or `None`, and the
    rest are ignored.

    Raises:
        ValueError: another structure; a shape that does not broadcast to
            its leaf; a concrete weight that is not finite and > 0 (naming
            the path).
    """
    pure, _ = pure_view(metric)
    try:
        flat = r.treedef.flatten_up_to(pure)
    except (ValueError, TypeError) as err:
        raise ValueError(
            "metric must be a tree of the params' structure, with a positive "
            f"array (or None) per constrained leaf: {err}"
        ) from None
    return checked_metric(flat, r, keys, values=True)


def checked_metric(
    flat: Sequence[Any], r: Resolved, keys: Sequence[int], *, values: bool
) -> tuple:
    """``flat[j]`` for ``j`` in ``keys`` as arrays, shapes checked (and ``values``).

    Raises:
        ValueError: a shape that does not broadcast to its leaf; with
            ``values``, a concrete weight that is not finite and > 0.
    """
    out: list[Any] = []
    for j in keys:
        d, path = flat[j], r.res.paths[j] or "<root>"
        if d is None:
            out.append(None)
            continue
        shape, like = tuple(np.shape(d)), tuple(np.shape(r.values[j]))
        try:
            fits = np.broadcast_shapes(shape, like) == like
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"metric at {path!r}: shape {shape} does not broadcast to the "
                f"leaf's shape {like}"
            )
        if values and not isinstance(d, jax.core.Tracer):
            v = np.asarray(d, np.float64)
            if not (np.all(np.isfinite(v)) and np.all(v > 0)):
                bad = float(v[~(np.isfinite(v) & (v > 0))].flat[0])
                raise ValueError(
                    f"metric at {path!r} must be finite and > 0 everywhere (only "
                    f"its ratios matter), got {bad!r}"
                )
        out.append(jnp.asarray(d))
    return tuple(out)


@functools.partial(compiled, static=("plan", "keys", "tol", "max_iter"))
def projected_leaves(
    xs: tuple,
    lows: list,
    ups: list,
    kinds: tuple,
    ds: tuple | None = None,
    *,
    plan: tuple,
    keys: tuple,
    tol: float,
    max_iter: int,
) -> tuple:
    """The constrained leaves ``xs`` (in ``keys`` order) projected by ``plan``.

    ``ds``: their metric (`None`: Euclidean).
    """
    ctx = Context(kinds, dict(zip(keys, lows)), dict(zip(keys, ups)))
    metric = None if ds is None else dict(zip(keys, ds))
    out = run_plan(ctx, plan, dict(zip(keys, xs)), tol, max_iter, metric)
    return tuple(out[j] for j in keys)


def project(params: PyTree, c: Constraints, *, metric: PyTree = None) -> PyTree:
    """The projection of ``params`` onto the sets of ``c``, per unit.

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

    With ``metric``, each unit goes to ``argmin over the set of sum(d * (y -
    x)**2)`` instead: intervals and ``MaxNorm(ord=inf)`` are separable and
    unchanged, `LessEqual` moves a violating pair to its d-weighted
    midpoint, `Simplex` and ``MaxNorm(ord=1)`` threshold ``max(x - tau / d,
    0)``, `Ordered` pools by weighted means, the 2-norm ball and spheres
    scale ``d x / (d + lam)``, and intersections run Dykstra's algorithm in
    the d inner product; the inequalities hold exactly as in the Euclidean
    case. Only ratios of ``d`` matter (a uniform metric is Euclidean). The
    matrix kinds have no closed form in a metric and take their Euclidean
    projection.
    ``metric`` is data: traced, vmapped, never a recompile. It is how an
    adaptive optimizer's step is projected (`projected`).

    Args:
        params: the parameter tree (dicts, equinox or nnx models, ...).
        c: the `Constraints`.
        metric: `None` (Euclidean), or a tree of the params' structure whose
            constrained leaves are positive arrays broadcastable to them (or
            `None`: Euclidean there); other leaves are ignored. A user's
            `Constraint` takes part through its `project_in_metric`.

    Returns:
        A tree like ``params``.

    Raises:
        ValueError: a rule that cannot apply (see `Constraints`), naming the
            rule and the path; a metric of another structure, a shape that
            does not broadcast, or a concrete weight that is not finite and
            > 0, naming the path.
        NotImplementedError: a kind with no projection in a metric.
        TypeError: a rule that selects only non-float leaves.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> c = jb.Constraints(("thr", jb.Ordered()), ("p", jb.Simplex()))
        >>> params = {"thr": jnp.array([0.3, 0.1]), "p": jnp.array([2.0, 0.0])}
        >>> out = jb.project(params, c)
        >>> print(out["thr"], out["p"])
        [0.2 0.2] [1. 0.]
        >>> d = {"thr": jnp.array([1.0, 3.0]), "p": jnp.array([1.0, 1.0])}
        >>> print(jb.project(params, c, metric=d)["thr"])  # the heavy one stays
        [0.15 0.15]
    """
    r = resolve(params, c)
    keys = r.res.constrained()
    if not keys:
        return r.write_back({})
    ds = None if metric is None else metric_leaves(metric, r, keys)
    new = projected_leaves(
        *r.numbers(),
        c.kinds,
        ds,
        plan=plan_of(r, c),
        keys=keys,
        tol=c.tol,
        max_iter=c.max_iter,
    )
    return r.write_back(dict(zip(keys, new)))
