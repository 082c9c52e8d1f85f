"""`project_to_constraints` and `add_constraint_penalty`: optax transformations."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .._compile import compiled
from .._paths import PyTree, pure_view
from .._penalty import penalty_function
from .._rounding import land, stored_sum
from .._transform import (
    check_scale,
    is_zero,
    line_up,
    needs_params,
    pick,
    scale_at,
    scale_state,
    stateless,
    with_holes,
)
from ._cost import penalised_updates
from ._norms import MaxNorm
from ._project import plan_of, run_plan
from ._projection_plan import Context
from ._resolve import resolve
from ._rules import Constraints
from ._simplex import Simplex
from ._stacked import batches, run_batch


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


@functools.partial(compiled, static=("plan", "keys", "sides", "tol", "max_iter"))
def _landed(
    ps: tuple,
    lows: list,
    ups: list,
    us: tuple,
    kinds: tuple,
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
    targets = run_plan(ctx, plan, summed, tol, max_iter)
    for j in summed:
        p, u = pu[j]
        new[j] = land(p, targets[j], *_toward(side_of[j], targets[j]), u.dtype)
    return tuple(new[j] for j in keys)


def _lined(updates: PyTree, params: PyTree | None, c: Constraints, name: str) -> tuple:
    """``(resolved params, updates lined up with them)``.

    The rules are resolved against the params with their holes (`None`,
    `optax.MaskedNode`): a rule that finds only holes is skipped.
    """
    needs_params(params, name)
    pure_params, _ = pure_view(params)
    r = resolve(with_holes(pure_params), c, partial=True)
    return r, line_up(updates, r.treedef)


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
        r, lined = _lined(updates, params, c, "project_to_constraints")
        keys = r.res.constrained()
        if not keys:
            return updates
        sides = _sides(r, c)
        new = _landed(
            *r.numbers(),
            pick(lined.flat, keys),
            c.kinds,
            plan=plan_of(r, c),
            keys=keys,
            sides=tuple(sides.get(j) for j in keys),
            tol=c.tol,
            max_iter=c.max_iter,
        )
        return lined.write_back(dict(zip(keys, new)))

    return stateless(update)


def add_constraint_penalty(
    c: Constraints, scale: Any = 1.0, *, penalty: Any = "exp"
) -> optax.GradientTransformation:
    """Add ``scale`` times the gradient of `constraint_cost` to the updates.

    The penalty lives in the optimizer chain instead of the loss, as
    `add_bounds_penalty`. Put it before the optimizer's scaling (e.g.
    ``chain(add_constraint_penalty(c), adam(1e-3))``).

    Args:
        c: the `Constraints`.
        scale: a number ``>= 0``, or an optax schedule of the step count
            (then the state is a `BoundsPenaltyState` holding the count, as
            for `add_bounds_penalty`).
        penalty: as in `constraint_cost`.

    Returns:
        An `optax.GradientTransformation` whose ``update`` needs ``params``.

    Raises:
        ValueError: a negative or non-finite ``scale``, an unknown
            ``penalty``; ``update`` without params.

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
    penalty_function(penalty, jnp.float32)
    check_scale(scale)

    def init_fn(params: PyTree) -> Any:
        del params
        return scale_state(scale)

    def update_fn(
        updates: PyTree, state: Any, params: PyTree | None = None
    ) -> tuple[PyTree, Any]:
        r, lined = _lined(updates, params, c, "add_constraint_penalty")
        keys = r.res.constrained()
        s, state = scale_at(scale, state)
        if not keys or is_zero(s):
            return updates, state
        xs, lows, ups = r.numbers()
        new = penalised_updates(
            xs, lows, ups, pick(lined.flat, keys), c.kinds, s, r=r.res, penalty=penalty
        )
        return lined.write_back(dict(zip(keys, new))), state

    return optax.GradientTransformation(init_fn, update_fn)
