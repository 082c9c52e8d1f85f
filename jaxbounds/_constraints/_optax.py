"""The optax transformations of the sets: project_to_constraints, projected, penalty."""

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
from ._preconditioner import hints, preconditioner
from ._project import checked_metric, full_metric, plan_of, run_plan
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
    ds: tuple | None = None,
    *,
    plan: tuple,
    keys: tuple,
    sides: tuple,
    tol: float,
    max_iter: int,
) -> tuple:
    """Updates whose stored sums with ``ps`` are the projection of ``ps + us``.

    ``ds``: the metric of each leaf (`None`: Euclidean).
    """
    pu = {j: (p, u) for j, p, u in zip(keys, ps, us)}
    side_of = dict(zip(keys, sides))
    metric = None if ds is None else dict(zip(keys, ds))
    shapes = {j: tuple(p.shape) for j, p in zip(keys, ps)}
    dtypes = {j: (p.dtype, u.dtype) for j, p, u in zip(keys, ps, us)}
    together, plan = batches(plan, kinds, shapes, dtypes)
    new: dict[int, jax.Array] = {}
    for members in together:  # stored sum, projection and landing, stacked
        side = side_of[members[0][0]]

        def step(kind: Any, pu: jax.Array, *d: Any, side: Any = side) -> jax.Array:
            p, u = pu[0], pu[1].astype(pu.dtype)
            s = stored_sum(p, u)
            t = kind.project_in_metric(s, d[0]) if d else kind.project(s)
            return land(p, t, *_toward(side, t), pu.dtype)

        stacked = {
            j: jnp.stack([pu[j][0], pu[j][1].astype(pu[j][0].dtype)])
            for j, _ in members
        }
        full = None
        if metric is not None:
            full = {j: full_metric(metric.get(j), pu[j][0]) for j, _ in members}
        out = run_batch(kinds, members, stacked, step, full)
        new.update({j: out[j].astype(pu[j][1].dtype) for j in out})
    summed = {j: stored_sum(p, u) for j, (p, u) in pu.items() if j not in new}
    ctx = Context(kinds, dict(zip(keys, lows)), dict(zip(keys, ups)))
    targets = run_plan(ctx, plan, summed, tol, max_iter, metric)
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
        return _project_step(updates, params, c, None, "project_to_constraints")

    return stateless(update)


def _project_step(
    updates: PyTree, params: PyTree | None, c: Constraints, metric: Any, name: str
) -> PyTree:
    """The updates landing on the projection of the step (in ``metric``, a tree)."""
    r, lined = _lined(updates, params, c, name)
    keys = r.res.constrained()
    if not keys:
        return updates
    ds = None
    if metric is not None:
        ds = checked_metric(line_up(metric, r.treedef).flat, r, keys, values=False)
    sides = _sides(r, c)
    new = _landed(
        *r.numbers(),
        pick(lined.flat, keys),
        c.kinds,
        ds,
        plan=plan_of(r, c),
        keys=keys,
        sides=tuple(sides.get(j) for j in keys),
        tol=c.tol,
        max_iter=c.max_iter,
    )
    return lined.write_back(dict(zip(keys, new)))


def projected(
    tx: optax.GradientTransformation, c: Constraints, *, metric: Any = "auto"
) -> optax.GradientTransformationExtraArgs:
    """``tx``, with each step projected onto ``c`` in ``tx``'s own metric.

    An adaptive optimizer steps in its own diagonal metric: Adam moves a
    coordinate by ``lr m / (sqrt(nu) + eps)``. Projected in the Euclidean
    metric (``chain(tx, project_to_constraints(c))``) such a step can stop
    where the constrained problem is not solved: with ``LessEqual`` a pair
    on the boundary never moves again (Adam's equal and opposite steps cancel
    at the midpoint), and on simplices and norm balls it settles away from
    the optimum. Projected in the optimizer's metric, ``argmin over the sets
    of sum(d * (y - x)**2)`` (`project` with ``metric=``), the constrained
    optimum is a fixed point of the step, the projection that the
    convergence proofs of AdaGrad and AMSGrad take.

    After ``optax.apply_updates(params, updates)`` each constrained leaf is
    that projection of ``params + tx's update``, landing exactly as with
    `project_to_constraints` (the inequalities hold on the stored params).
    Boxes (`Interval`, bound trees) are separable: every metric gives the
    box projection. The matrix kinds (`Orthogonal`, `SpectralNorm`, `PSD`)
    have no closed form in a diagonal metric and take their Euclidean
    projection, as in `project_to_constraints`. Unconstrained leaves keep
    ``tx``'s updates. The state is ``(tx's state, optax.EmptyState())``, as
    the chain's.

    ``metric="auto"`` reads the metric from ``tx``'s state after its update
    (the preconditioner that step used): ``sqrt(nu_hat) + eps`` for adam,
    adamw, nadam, radam, lamb, yogi and adabelief; ``sqrt(nu_max) + eps``
    for amsgrad; ``sqrt(nu + eps)`` for rmsprop (with its
    ``bias_correction``, ``centered`` and ``eps_in_sqrt``); the root sum of
    squares ``sqrt(sum g**2 + eps)`` for adagrad; the identity (the
    Euclidean projection) for sgd and momentum (the step is a multiple of
    the gradient) and lion (a sign: every coordinate moves by the same
    ``lr``). Hyperparameters are read from ``inject_hyperparams``' state or
    from the ``scale_by_*`` transformation inside ``tx``, through
    `optax.chain`, `optax.masked`, `optax.multi_transform` and
    `optax.MultiSteps`. A preconditioner that is not understood (adafactor's
    factored moments, sm3, novograd, ...) raises, naming it.

    Args:
        tx: the optimizer, an optax transformation.
        c: the `Constraints`.
        metric: ``"auto"`` (read from ``tx``'s state), ``"euclidean"``
            (exactly ``optax.chain(tx, project_to_constraints(c))``), or a
            callable ``(state, params) -> d``: ``state`` is ``tx``'s state
            after the update, ``d`` a tree like the params with positive
            arrays (or `None`) at constrained leaves.

    Returns:
        An `optax.GradientTransformationExtraArgs` whose ``update`` needs
        ``params``.

    Raises:
        ValueError: another ``metric``; (in ``update``) no params, a
            preconditioner ``"auto"`` does not understand.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> import jaxbounds as jb
        >>> c = jb.Constraints(jb.LessEqual("tau_syn", "tau_mem"))
        >>> loss = lambda p: (p["tau_syn"] - 0.08) ** 2 + (p["tau_mem"] - 0.01) ** 2
        >>> tx = jb.projected(optax.adam(1e-2), c)
        >>> p = {"tau_syn": jnp.array(0.01), "tau_mem": jnp.array(0.02)}
        >>> state = tx.init(p)
        >>> for _ in range(300):
        ...     u, state = tx.update(jax.grad(loss)(p), state, p)
        ...     p = optax.apply_updates(p, u)
        >>> print(round(float(p["tau_syn"]), 3), round(float(p["tau_mem"]), 3))
        0.045 0.045
    """
    euclid = project_to_constraints(c)
    if isinstance(metric, str) and metric == "euclidean":
        return optax.chain(tx, euclid)
    if not (callable(metric) or (isinstance(metric, str) and metric == "auto")):
        raise ValueError(
            "metric must be 'auto', 'euclidean' or a callable (state, params) -> d, "
            f"got {metric!r}"
        )
    inner = optax.with_extra_args_support(tx)
    found = hints(tx) if isinstance(metric, str) else ()

    def init_fn(params: PyTree) -> tuple:
        return inner.init(params), optax.EmptyState()

    def update_fn(
        updates: PyTree, state: tuple, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, tuple]:
        needs_params(params, "projected")
        tx_state, empty = state
        updates, tx_state = inner.update(updates, tx_state, params, **extra)
        if isinstance(metric, str):
            d = preconditioner(tx_state, found)
        else:
            d = metric(tx_state, params)
        updates = _project_step(updates, params, c, d, "projected")
        return updates, (tx_state, empty)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
