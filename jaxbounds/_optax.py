"""Optimizer glue: bounds as optax `GradientTransformation`s.

`add_bounds_penalty` adds the gradient of `bounds_cost` to the updates, so the
penalty lives in the optimizer chain instead of the loss. `project_to_bounds`
rewrites the updates so that `optax.apply_updates` lands inside the box.

Both check the params against the bound trees on every call (at trace time
under `jax.jit`, so a compiled step pays nothing) and hand only the bounded
leaves to one internal `jax.jit`-compiled function; every other leaf of the
updates is returned as the same object. Inside `optax.masked` the params and
updates arrive with `optax.MaskedNode` in place of masked-out subtrees; the
bound trees (built for the full params) are masked the same way here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from . import _kernels
from ._compile import per_leaf
from ._paths import PyTree, pure_view
from ._penalty import Penalty, penalty_function
from ._plan import Plan, plan
from ._rounding import compute_dtype, inward_edges, land, stored_sum
from ._transform import (
    check_scale,
    is_zero,
    keep_masked,
    needs_params,
    scale_at,
    scale_state,
    stateless,
)


def _planned(
    updates: PyTree, params: PyTree, lower: PyTree, upper: PyTree, name: str
) -> tuple[Plan, list[Any], Callable[[PyTree], Any]]:
    """The plan of the bounded leaves that have an update, and the flat updates.

    Returns ``(plan, flat updates, the updates' restore)``; `None` update
    leaves are left out of the plan, so they stay `None`.
    """
    needs_params(params, name)
    params, _ = pure_view(params)
    lower, _ = pure_view(lower)
    upper, _ = pure_view(upper)
    pl = plan(params, keep_masked(params, lower), keep_masked(params, upper))
    flat, restore = pl.flat_like(updates, "updates")
    return pl.only([u is not None for u in pl.pick(flat)]), flat, restore


def _penalised(
    p: jax.Array, lo: Any, up: Any, u: jax.Array, *, scale: Any, penalty: Any
) -> jax.Array:
    """``u + scale * d/dp penalty``, summed wide and rounded once into ``u``'s dtype."""
    u = jnp.asarray(u)
    g = _kernels.penalty_gradient(p, lo, up, penalty)
    wide = jnp.promote_types(g.dtype, compute_dtype(u.dtype))
    return (u.astype(wide) + scale * g).astype(u.dtype)


_add_penalty = per_leaf(_penalised, static=("penalty",))


def _not_scheduled(params: PyTree, lower: PyTree, upper: PyTree) -> None:
    """Raise if `optax.inject_hyperparams` replaced a bound tree by a schedule value.

    optax takes every callable argument for a schedule and passes its value
    at the step count instead: a bound tree that is a callable equinox
    module arrives as a single array.
    """
    if params is None or jax.tree_util.treedef_is_leaf(
        jax.tree_util.tree_structure(params)
    ):
        return
    for name, bound in (("lower", lower), ("upper", upper)):
        if isinstance(bound, jax.Array):
            raise ValueError(
                f"`{name}` is a single array but params is a tree. If this "
                "transformation comes from optax.inject_hyperparams, optax called "
                f"the `{name}` bound tree (a callable equinox module) as a "
                "schedule; list the bounds in static_args: optax.inject_hyperparams("
                "jaxbounds.add_bounds_penalty, static_args=('lower', 'upper'))"
            )


def add_bounds_penalty(
    lower: PyTree,
    upper: PyTree,
    scale: optax.ScalarOrSchedule = 1.0,
    *,
    penalty: Penalty = "exp",
) -> optax.GradientTransformation:
    """Add ``scale * grad(bounds_cost)(params)`` to the updates.

    The penalty of `bounds_cost` as a link in an optax chain: put it in front
    of the optimizer and the loss stays free of bound terms,
    ``optax.chain(add_bounds_penalty(lower, upper, 1e-2), optax.adam(1e-3))``.
    The penalty only pushes towards the box; to keep parameters inside
    exactly, end the chain with `project_to_bounds`.

    Bounds follow `bounds_cost`'s rules (bounds are data: they may be jit
    arguments or vmapped). Params with `None` holes (`eqx.partition`) and
    bound trees built for the full model line up, and inside `optax.masked`
    the bounds are masked like the params. Only leaves with a bound are
    touched: all other update leaves are returned as the same objects, and
    under `jax.jit` no operation is traced for them. A `None` update leaf
    stays `None`. The gradient is computed in at least float32 and the sum
    is rounded once into each update's dtype.

    With `optax.inject_hyperparams`, ``scale`` is the injected
    hyperparameter. optax takes every callable argument for a schedule and
    calls it with the step count, so a callable ``penalty``, and bound trees
    that are callable (those of an equinox model with a ``__call__``, e.g.
    `equinox.nn.MLP`), must be listed in ``static_args``; bound trees that
    are dicts (Rockpool params, flax nnx) are left alone. When optax has
    replaced a bound tree by an array, ``init`` says so and names the fix.

    Args:
        lower: lower bounds shaped like the params (see `make_bounds`).
        upper: upper bounds, likewise.
        scale: a number ``>= 0`` or an optax schedule of the step count (then
            the state holds the count, as in `optax.add_decayed_weights`);
            ``0`` returns the updates unchanged.
        penalty: as in `bounds_cost`.

    Returns:
        An `optax.GradientTransformation` whose ``update`` needs ``params``.

    Raises:
        ValueError: ``scale`` is negative or not finite; ``update`` gets no
            params (optax's message), or bound trees that do not fit them
            (as `bounds_cost`, naming the path).

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([-1.0, 0.5]), "w": jnp.ones(2)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"] = 0.0
        >>> tx = jb.add_bounds_penalty(lower, upper, scale=0.5)
        >>> grads = {"tau": jnp.zeros(2), "w": jnp.ones(2)}
        >>> updates, _ = tx.update(grads, tx.init(params), params)
        >>> print(updates["tau"])  # 0.5 * d/dp exp(0 - p) at p = -1
        [-1.3591409  0.       ]
        >>> updates["w"] is grads["w"]
        True

        With a scheduled scale through `optax.inject_hyperparams`, and the
        bound trees of a callable model kept static:

        >>> import equinox as eqx, jax
        >>> mlp = eqx.nn.MLP(2, 1, 3, 1, key=jax.random.key(0))
        >>> params = eqx.filter(mlp, eqx.is_inexact_array)
        >>> lower, upper = jb.make_bounds(mlp)
        >>> lower = jb.set_where(lower, "layers.0.bias", 1.0)
        >>> inject = optax.inject_hyperparams(
        ...     jb.add_bounds_penalty, static_args=("lower", "upper")
        ... )
        >>> tx = inject(lower, upper, scale=optax.linear_schedule(0.0, 1.0, 10))
        >>> state = tx.init(params)
        >>> grads = jax.tree.map(jnp.zeros_like, params)
        >>> for _ in range(2):
        ...     _, state = tx.update(grads, state, params)
        >>> print(round(float(state.hyperparams["scale"]), 6))
        0.1
    """
    penalty_function(penalty, jnp.float32)
    check_scale(scale)

    def init_fn(params: PyTree) -> Any:
        _not_scheduled(params, lower, upper)
        return scale_state(scale)

    def update_fn(
        updates: PyTree, state: Any, params: PyTree | None = None
    ) -> tuple[PyTree, Any]:
        _not_scheduled(params, lower, upper)
        pl, flat, restore = _planned(
            updates, params, lower, upper, "add_bounds_penalty"
        )
        s, state = scale_at(scale, state)
        if not pl.indices or is_zero(s):
            return updates, state
        new = _add_penalty(
            pl.bounded(), pl.lows, pl.ups, pl.pick(flat), scale=s, penalty=penalty
        )
        return pl.write_back(new, flat, restore), state

    return optax.GradientTransformation(init_fn, update_fn)


def _projected_update(p: jax.Array, lo: Any, up: Any, u: jax.Array) -> jax.Array:
    """An update in ``u``'s dtype that lands ``p`` on ``clip(p + u)`` (see `land`).

    The target is the stored sum ``p + u`` clipped to the bounds rounded
    inwards into ``p``'s dtype.
    """
    u = jnp.asarray(u)
    low, high = inward_edges(lo, up, p.dtype)
    return land(p, jnp.clip(stored_sum(p, u), low, high), low, high, u.dtype)


_project = per_leaf(_projected_update)


def project_to_bounds(lower: PyTree, upper: PyTree) -> optax.GradientTransformation:
    """Rewrite the updates so that the updated params lie inside the box exactly.

    Meant as the last link of a chain: after
    ``new = optax.apply_updates(params, updates)``, each element of ``new`` is
    ``clip_to_bounds(params + updates)``, i.e. the step is taken and then
    projected onto ``[lower, upper]``; params that start outside are moved to
    the nearest bound.

    Exactness: optax adds ``p + u`` and rounds into ``p``'s dtype, so the
    naive ``u' = clip(p + u) - p`` can land an ulp outside. Here ``u'`` is
    the rounded difference or its neighbour, whichever lands on the target,
    evaluated the way `optax.apply_updates` does. So a param that starts
    inside stays inside, the result is exactly ``clip(p + u)`` whenever some
    update of that dtype gives it, and a param that starts outside lands
    inside whenever some update of that dtype gets it there. The limits (a
    box narrower than the float spacing of the step, subnormals, XLA's excess
    precision for float16/bfloat16 inside one `jax.jit`) are on the docs'
    numerics page. NaN updates stay NaN.

    Not after `optax.lbfgs`: its line search stores the value and gradient
    of the point it accepted, `optax.value_and_grad_from_state` hands them
    back on the next step, and after the projection they belong to a point
    the params never reached (its curvature pairs, too, describe steps that
    were not taken). The run stays inside the box and silently ends away
    from the bounded optimum. Use `lbfgsb` or `minimize`, which keep the
    line search inside the box.

    Bounds follow `bounds_cost`'s rules (bounds are data); `None` holes and
    `optax.masked` work as in `add_bounds_penalty`. Unbounded leaves and
    `None` update leaves are returned as the same objects; dtypes and shapes
    of the updates are kept.

    Args:
        lower: lower bounds shaped like the params (see `make_bounds`).
        upper: upper bounds, likewise.

    Returns:
        An `optax.GradientTransformation` whose ``update`` needs ``params``;
        its state is `optax.EmptyState`.

    Raises:
        ValueError: ``update`` gets no params (optax's message), or bound
            trees that do not fit them (as `bounds_cost`, naming the path).

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([0.5, 0.9]), "w": jnp.ones(2)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, 1.0
        >>> tx = optax.chain(optax.sgd(1.0), jb.project_to_bounds(lower, upper))
        >>> grads = {"tau": jnp.array([1.0, -1.0]), "w": jnp.ones(2)}
        >>> updates, _ = tx.update(grads, tx.init(params), params)
        >>> optax.apply_updates(params, updates)["tau"]
        Array([0., 1.], dtype=float32)
    """

    def update(updates: PyTree, params: PyTree | None) -> PyTree:
        pl, flat, restore = _planned(updates, params, lower, upper, "project_to_bounds")
        if not pl.indices:
            return updates
        new = _project(pl.bounded(), pl.lows, pl.ups, pl.pick(flat))
        return pl.write_back(new, flat, restore)

    return stateless(update)
