"""`project_to_constraints` and `add_constraint_penalty`: optax transformations."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._paths import PyTree, pure_view
from .._rounding import land, stored_sum
from ._cost import _cost
from ._norms import MaxNorm
from ._project import numbers, plan_of, run_numbers
from ._projection_plan import Context
from ._resolve import resolve
from ._rules import Constraints
from ._simplex import Simplex
from ._stacked import batches, run_batch


def _holes(tree: PyTree) -> PyTree:
    """``tree`` with `optax.MaskedNode` replaced by `None` holes."""
    return jax.tree_util.tree_map(
        lambda x: None if isinstance(x, optax.MaskedNode) else x,
        tree,
        is_leaf=lambda x: x is None or isinstance(x, optax.MaskedNode),
    )


def _is_hole(x: Any) -> bool:
    return x is None or isinstance(x, optax.MaskedNode)


def _merged(updates: PyTree, r: Any, flat: list) -> PyTree:
    """``flat`` as a tree like ``updates``, its `optax.MaskedNode`s kept."""
    new = jax.tree_util.tree_unflatten(r.treedef, flat)
    return jax.tree_util.tree_map(
        lambda old, x: old if isinstance(old, optax.MaskedNode) else x,
        updates,
        new,
        is_leaf=_is_hole,
    )


def _sides(r: Any, c: Constraints) -> dict[int, str]:
    """Where a leaf may land when no update lands exactly on its projection.

    ``"down"`` / ``"up"``: the smaller / larger side of a relation;
    ``"zero"``: towards zero (norm balls, simplices: magnitudes rounded down
    keep the inequalities); otherwise exactly or nearest.
    """
    out: dict[int, str] = {}
    for j, rules in r.res.on_leaf:
        if any(k >= 0 and isinstance(c.kinds[k], (MaxNorm, Simplex)) for k in rules):
            out[j] = "zero"
    for _, a, b in r.res.relations:
        out[a], out[b] = "down", "up"
    return out


def _toward(side: str | None, t: jax.Array) -> tuple[Any, Any]:
    """The interval `land` should reach when it cannot hit ``t`` exactly."""
    if side == "down":
        return -jnp.inf, t
    if side == "up":
        return t, jnp.inf
    if side == "zero":
        return jnp.minimum(t, 0), jnp.maximum(t, 0)
    return t, t


@functools.partial(
    jax.jit, static_argnames=("plan", "keys", "sides", "tol", "max_iter")
)
def _landed(
    ps: tuple,
    us: tuple,
    kinds: tuple,
    lows: tuple,
    ups: tuple,
    *,
    plan: tuple,
    keys: tuple,
    sides: tuple,
    tol: float,
    max_iter: int,
) -> tuple:
    """Updates whose stored sums with ``ps`` are the projection of ``ps + us``."""
    pu = {j: (p, u) for j, p, u in zip(keys, ps, us)}
    side_of = dict(zip(keys, sides))
    shapes = {j: tuple(p.shape) for j, p in zip(keys, ps)}
    dtypes = {j: (p.dtype, u.dtype) for j, p, u in zip(keys, ps, us)}
    together, plan = batches(plan, kinds, shapes, dtypes)
    new: dict[int, jax.Array] = {}
    for members in together:  # stored sum, projection and landing, stacked
        side = side_of[members[0][0]]

        def step(kind: Any, pu: jax.Array, side: Any = side) -> jax.Array:
            p, u = pu[0], pu[1].astype(pu.dtype)
            t = kind.project(stored_sum(p, u))
            return land(p, t, *_toward(side, t), pu.dtype)

        stacked = {
            j: jnp.stack([pu[j][0], pu[j][1].astype(pu[j][0].dtype)])
            for j, _ in members
        }
        out = run_batch(kinds, members, stacked, step)
        new.update({j: out[j].astype(pu[j][1].dtype) for j in out})
    summed = {j: stored_sum(p, u) for j, (p, u) in pu.items() if j not in new}
    ctx = Context(kinds, dict(zip(keys, lows)), dict(zip(keys, ups)))
    targets = run_numbers(ctx, plan, summed, tol, max_iter)
    for j in summed:
        p, u = pu[j]
        new[j] = land(p, targets[j], *_toward(side_of[j], targets[j]), u.dtype)
    return tuple(new[j] for j in keys)


class _Split(NamedTuple):
    """The constrained leaves of params and their updates, and the way back."""

    r: Any  # the rules resolved against the params
    keys: tuple  # flat positions of the constrained leaves
    flat: list  # the flat updates (`None` at holes)
    rebuild: Callable[[list], PyTree]  # flat updates -> the updates' own kind

    def written(self, new: Sequence[Any]) -> PyTree:
        """The updates with the constrained leaves replaced by ``new``."""
        flat = list(self.flat)
        for j, u in zip(self.keys, new):
            flat[j] = u
        return self.rebuild(flat)


def _split(updates: PyTree, params: PyTree | None, c: Constraints) -> _Split:
    """Resolve ``c`` against ``params`` and line the updates up with it."""
    if params is None:
        raise ValueError(
            "project_to_constraints / add_constraint_penalty need the params: "
            "call update(updates, state, params)"
        )
    pure_params, _ = pure_view(params)
    pure_updates, restore = pure_view(updates)
    r = resolve(_holes(pure_params), c, partial=True)
    flat = r.treedef.flatten_up_to(_holes(pure_updates))

    def rebuild(flat: list) -> PyTree:
        return restore(_merged(pure_updates, r, flat))

    return _Split(r, tuple(r.res.leaves()), flat, rebuild)


def _stateless(
    update: Callable[[PyTree, PyTree | None], PyTree],
) -> optax.GradientTransformation:
    """A transformation with `optax.EmptyState` from ``update(updates, params)``."""

    def init_fn(params: PyTree) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(
        updates: PyTree, state: optax.EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, optax.EmptyState]:
        return update(updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def project_to_constraints(c: Constraints) -> optax.GradientTransformation:
    """Rewrite the updates so that the updated params lie in the sets of ``c``.

    The last link of a chain, as `project_to_bounds`: after
    ``optax.apply_updates(params, updates)`` each constrained leaf is
    ``project(params + updates, c)``. The update is the rounded difference
    or its neighbour, whichever lands on the projected value when optax adds
    it and rounds into the leaf's dtype (as `project_to_bounds`), so the
    projection's inequalities hold on the stored params whenever some update
    of that dtype lands there (see the numerics page for the limits).
    Unconstrained leaves are passed through as the same objects; works
    inside `optax.masked` and `optax.MultiSteps`.

    Args:
        c: the `Constraints`.

    Returns:
        An `optax.GradientTransformation` whose ``update`` needs ``params``.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> import jaxbounds as jb
        >>> c = jb.Constraints(("w", jb.MaxNorm(1.0)))
        >>> tx = optax.chain(optax.sgd(1.0), jb.project_to_constraints(c))
        >>> params = {"w": jnp.array([0.6, 0.0])}
        >>> grads = {"w": jnp.array([0.0, -0.8])}
        >>> updates, _ = tx.update(grads, tx.init(params), params)
        >>> print(optax.apply_updates(params, updates)["w"])
        [0.6 0.8]
    """

    def update(updates: PyTree, params: PyTree | None) -> PyTree:
        sp = _split(updates, params, c)
        if not sp.keys:
            return updates
        r, keys = sp.r, sp.keys
        ps = tuple(jnp.asarray(r.leaves[j]) for j in keys)
        us = tuple(jnp.asarray(sp.flat[j]) for j in keys)
        kinds, lows, highs = numbers(r, c)
        sides = _sides(r, c)
        new = _landed(
            ps,
            us,
            kinds,
            lows,
            highs,
            plan=plan_of(r, c),
            keys=keys,
            sides=tuple(sides.get(j) for j in keys),
            tol=c.tol,
            max_iter=c.max_iter,
        )
        return sp.written(new)

    return _stateless(update)


def add_constraint_penalty(
    c: Constraints, scale: Any = 1.0, *, penalty: Any = "exp"
) -> optax.GradientTransformation:
    """Add ``scale`` times the gradient of `constraint_cost` to the updates.

    The penalty lives in the optimizer chain instead of the loss, as
    `add_bounds_penalty`. Put it before the optimizer's scaling (e.g.
    ``chain(add_constraint_penalty(c), adam(1e-3))``).

    Args:
        c: the `Constraints`.
        scale: a float ``>= 0``.
        penalty: as in `constraint_cost`.

    Returns:
        An `optax.GradientTransformation` whose ``update`` needs ``params``.

    Raises:
        ValueError: a negative or non-finite ``scale``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> c = jb.Constraints(("w", jb.MaxNorm(1.0)))
        >>> tx = jb.add_constraint_penalty(c, 0.5, penalty="linear")
        >>> params = {"w": jnp.array([3.0, 4.0])}
        >>> updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
        >>> print(updates["w"])
        [0.3 0.4]
    """
    if isinstance(scale, (int, float)) and not (scale >= 0 and scale < float("inf")):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")

    def update(updates: PyTree, params: PyTree | None) -> PyTree:
        sp = _split(updates, params, c)
        if not sp.keys:
            return updates
        r, keys = sp.r, sp.keys
        xs = tuple(jnp.asarray(r.leaves[j]) for j in keys)
        lows = tuple(r.lows.get(j) for j in keys)
        ups = tuple(r.ups.get(j) for j in keys)

        def cost(xs: tuple) -> jax.Array:
            return _cost(xs, c.kinds, lows, ups, r=r.res, keys=keys, penalty=penalty)

        grads = jax.grad(cost)(xs)
        us = [jnp.asarray(sp.flat[j]) for j in keys]
        return sp.written([(u + scale * g).astype(u.dtype) for u, g in zip(us, grads)])

    return _stateless(update)
