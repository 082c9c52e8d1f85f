"""Hard constraints by reparameterisation: `constrain` / `unconstrain`.

A penalty lets parameters stray and a projection stops them at the wall; a
bijection instead lets the optimiser work on unconstrained *raw* values that
are mapped into the box inside the loss, so every value the model sees is
admissible and the gradient never vanishes at the wall.

Per element, the map is chosen from the bounds:

* two-sided ``[lo, up]``: ``lo + (up - lo) * sigmoid(raw)``,
* lower only: ``lo + softplus(raw)``,
* upper only: ``up - softplus(-raw)``,
* unbounded: the identity.

An open side (`None`, or a concrete infinity) picks the map at trace time;
any other bound is data (traced inside the compiled map), and where it
holds infinities the map is picked per element.

The two-sided map is not evaluated as written. In float32 ``sigmoid(17)``
rounds to 1.0, so ``lo + w * sigmoid(x)`` lands on ``up`` for ``x > 17``
and the autodiff gradient ``w * s * (1 - s)`` is exactly zero there: a
parameter that drifts to the wall is stuck for good. Here the distance to
the *nearer* bound, ``w * sigmoid(-|x|)``, is computed directly (it keeps
full relative precision down to 1e-38), and the gradient is given
analytically (a `jax.custom_jvp`) as ``w * sigmoid(-|x|) * sigmoid(|x|)``,
which stays nonzero even where the value has rounded onto the bound.
"""

from __future__ import annotations

import jax

from ._boxmap import constrain_leaf, unconstrain_leaf
from ._compile import per_leaf
from ._constraints import _bijection
from ._constraints._rules import NO_UPPER, given_constraints
from ._paths import PyTree
from ._plan import map_bounded
from ._violations import violations

_constrained = per_leaf(constrain_leaf)
_unconstrained = per_leaf(unconstrain_leaf)


# -- public --------------------------------------------------------------------


def constrain(raw: PyTree, lower: PyTree, upper: PyTree = NO_UPPER) -> PyTree:
    """Map unconstrained ``raw`` values into ``[lower, upper]``, elementwise.

    Optimise ``raw`` and call ``constrain`` at the top of the loss: every
    value the model sees is inside the box (a hard constraint), and the
    gradient reaches ``raw`` even for values pressed against a bound. The
    map per element (see the module docstring): two-sided bounds use a
    scaled sigmoid, a lower bound alone a shifted softplus, an upper bound
    alone a mirrored softplus, no bound the identity. Start from
    ``raw = unconstrain(params, lower, upper)``.

    Bounds follow the `bounds_cost` contract (same structure as ``raw``;
    Python floats or broadcastable arrays, whose infinite elements choose
    the one-sided map per element). `None` holes, non-float leaves and
    unbounded leaves are returned as they are; bounded leaves come back in
    their own dtype (a Python float leaf becomes an array).

    Numerics: computed in at least float32 (float16/bfloat16 raw values are
    mapped in float32 and cast back), never NaN or inf for finite ``raw``,
    and the result satisfies the bounds exactly as `bounds_cost` checks them
    (an out-of-dtype bound is rounded inwards, as in `clip_to_bounds`).
    Far from 0, ``raw`` values round onto a bound and the gradient, given
    analytically, eventually underflows; where that happens, by dtype and
    box width, is on the docs' numerics page. A zero-width box
    (``lower == upper``) maps everything onto the bound, with zero gradient.

    Works under `jax.jit`, `jax.grad`, `jax.vmap` and `jax_debug_nans`;
    eager calls are one compiled dispatch, cached on the tree structure and
    the bound pattern (changing a finite bound does not recompile).

    Args:
        raw: the unconstrained values, a tree with the structure of the
            params (usually from `unconstrain`).
        lower: lower bounds shaped like ``raw`` (see `bounds_cost`), or a
            `Constraints` (then ``upper`` is omitted: each leaf gets the map
            of its rule; see the "Beyond boxes" page).
        upper: upper bounds, likewise.

    Returns:
        A new tree like ``raw`` whose bounded leaves lie in their boxes.

    Raises:
        ValueError: as `bounds_cost`, naming the offending path.
        TypeError: as `bounds_cost`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([0.05, 0.1]), "gain": jnp.array(2.0)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, 0.2
        >>> lower["gain"] = 1.0
        >>> raw = jb.unconstrain(params, lower, upper)
        >>> print(raw["tau"], raw["gain"])
        [-1.0986123  0.       ] 0.54132485
        >>> jb.constrain(raw, lower, upper)["tau"]
        Array([0.05, 0.1 ], dtype=float32)
        >>> # raw values far outside still give admissible values and a gradient
        >>> loss = lambda r: jnp.sum(jb.constrain(r, lower, upper)["tau"])
        >>> far = {"tau": jnp.array([-60.0, 60.0]), "gain": jnp.array(-60.0)}
        >>> print(jb.constrain(far, lower, upper)["tau"])
        [1.7513022e-27 2.0000000e-01]
        >>> print(jax.grad(loss)(far)["tau"])
        [1.7513022e-27 1.7513022e-27]
    """
    c = given_constraints(lower, upper, "constrain")
    if c is not None:
        return _bijection.constrain(raw, c)
    return map_bounded(_constrained, raw, lower, upper)


def unconstrain(params: PyTree, lower: PyTree, upper: PyTree = NO_UPPER) -> PyTree:
    """The raw values that `constrain` maps onto ``params``: its inverse.

    ``constrain(unconstrain(p, lo, up), lo, up) == p`` to float tolerance
    for ``p`` inside the box, also close to a bound (the inverse works from
    the distance to the nearer bound). A value *on* a bound, which no finite
    raw value maps to exactly, gives a finite raw value of magnitude
    `raw_limit` (80 in float32, 700 in float64), whose image is the bound up
    to rounding and where the gradient of `constrain` is still nonzero.
    Prefer starting strictly inside, though: that far out the gradient is
    tiny (``~1.8e-35 * width`` in float32).

    ``params`` must be inside its bounds: when its values are concrete
    (outside `jax.jit`), a value outside the box or NaN raises `ValueError`
    with the `violations` table (`clip_to_bounds` first if that is what you
    mean). Under a transformation the check cannot run, and values outside
    are treated as if on the nearer bound.

    Dtypes, `None` holes and unbounded or non-float leaves are kept, as in
    `constrain`; the computation runs in at least float32.

    Args:
        params: parameter values inside their bounds.
        lower: lower bounds shaped like ``params`` (see `bounds_cost`), or a
            `Constraints` (then ``upper`` is omitted).
        upper: upper bounds, likewise.

    Returns:
        The raw tree, like ``params``, to start an optimisation from.

    Raises:
        ValueError: concrete ``params`` outside their bounds or NaN (the
            message holds the `violations` table), or as `bounds_cost`.
        TypeError: as `bounds_cost`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> p = {"w": jnp.array([0.0, 0.5, 1.0])}
        >>> print(jb.unconstrain(p, {"w": 0.0}, {"w": 1.0})["w"])
        [-80.   0.  80.]
        >>> jb.unconstrain({"w": jnp.array([2.0])}, {"w": 0.0}, {"w": 1.0})
        Traceback (most recent call last):
        ...
        ValueError: unconstrain: params outside their bounds (clip_to_bounds first?):
        1 of 1 parameters outside bounds:
        path  size  below  worst below  above  worst above  nan
        w        1      -            -      1            1    -
    """
    c = given_constraints(lower, upper, "unconstrain")
    if c is not None:
        return _bijection.unconstrain(params, c)
    leaves = jax.tree_util.tree_leaves([params, lower, upper])
    if not any(isinstance(x, jax.core.Tracer) for x in leaves):
        report = violations(params, lower, upper)
        if not report.ok:
            raise ValueError(
                f"unconstrain: params outside their bounds (clip_to_bounds first?):\n"
                f"{report}"
            )
    return map_bounded(_unconstrained, params, lower, upper)
