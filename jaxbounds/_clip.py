"""`clip_to_bounds`: the projection onto the box, exact in the leaf's dtype."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from . import _penalty
from ._bounds import compiled, inward, map_bounded, next_float
from ._paths import PyTree


def clip_leaf(p: jax.Array, lo: Any, up: Any) -> jax.Array:
    """``p`` clipped to ``[lo, up]`` (``None``: open side), in ``p``'s dtype.

    The bounds are rounded inwards into ``p``'s dtype first (`inward`).
    """
    p = jnp.asarray(p)
    if lo is not None:
        p = jnp.maximum(p, inward(lo, p.dtype, "lower"))
    if up is not None:
        p = jnp.minimum(p, inward(up, p.dtype, "upper"))
    return p


def _rounded(x: jax.Array) -> jax.Array:
    """``x`` rounded into its dtype for real, also inside `jax.jit`.

    XLA may carry float16/bfloat16 intermediates in float32 and drop the
    rounding in between ("excess precision"): inside a compiled function
    ``(p + u).astype(jnp.float32)`` can differ from the stored ``p + u``.
    An optimization barrier makes the rounded value the one that is used.
    """
    if jnp.finfo(x.dtype).bits >= 32:
        return x
    return jax.lax.optimization_barrier(x)


def stored_sum(p: jax.Array, u: jax.Array) -> jax.Array:
    """One leaf of `optax.apply_updates` (``(p + u).astype(p.dtype)``), as stored."""
    return _rounded(_rounded(jnp.asarray(p + u)).astype(p.dtype))


def _outside_by(r: jax.Array, low: Any, high: Any) -> jax.Array:
    """How far ``r`` is outside ``[low, high]``: 0 inside, NaN only for NaN ``r``."""
    return jnp.maximum(jnp.maximum(low - r, r - high), 0)


def land(p: jax.Array, target: jax.Array, low: Any, high: Any, dtype: Any) -> jax.Array:
    """An update of ``dtype`` whose stored sum with ``p`` is ``target``, if any is.

    ``target`` lies in ``[low, high]`` (bounds already in ``p``'s dtype).
    ``d = target - p`` rounded into ``dtype`` is one of the two floats that
    bracket the exact difference, and the stored sum ``p + d`` tells which:
    if it falls short of ``target``, ``d`` is below the exact difference and
    the other bracketing float is the next one up, else the next one down.
    Since the stored sum is monotone in the update, the updates that land on
    ``target`` (or in the box) form an interval around the exact difference,
    so if any float of ``dtype`` lands there, one of the two does. Keeping
    ``d`` when it hits ``target``, else the neighbour when it hits or lands
    closer to the box, is therefore exact whenever an exact update exists,
    and inside whenever ``p`` is (see the docs' numerics page). Two
    candidates, not a search: compile time matters with thousands of leaves.
    """
    wide = jnp.promote_types(p.dtype, dtype)
    step = _rounded(_rounded(target.astype(wide) - p.astype(wide)).astype(dtype))
    landed = stored_sum(p, step)
    other = next_float(step, landed < target)
    reached = stored_sum(p, other)
    cdtype = _penalty.compute_dtype(p.dtype)

    def off(r: jax.Array) -> jax.Array:
        low_, high_ = jnp.asarray(low, cdtype), jnp.asarray(high, cdtype)
        return _outside_by(r.astype(cdtype), low_, high_)

    better = (landed != target) & ((reached == target) | (off(reached) < off(landed)))
    return jnp.where(better, other, step)


@compiled
def _clipped(leaves: list, lows: list, ups: list) -> list:
    return [clip_leaf(*args) for args in zip(leaves, lows, ups)]


def clip_to_bounds(params: PyTree, lower: PyTree, upper: PyTree) -> PyTree:
    """``params`` with every element moved to the nearest point of ``[lower, upper]``.

    The projection onto the box (Rockpool's ``bounds_clip``), checked like
    `bounds_cost`, with the same bounds-are-data rules (traced and batched
    bounds work; a traced infinity clips nothing). The result has exactly
    zero `bounds_cost`: a bound that is not representable in a leaf's dtype
    is rounded towards the inside before clipping, so a float16 parameter
    clipped to a lower bound of 0.1 becomes ``float16(0.10004)``, not
    ``float16(0.09998)``. (A box narrower than the dtype's spacing may hold
    no value of that dtype: see the docs' numerics page.) Dtypes are kept;
    unbounded, non-parameter and `None` leaves are returned as they are.

    Args:
        params: the parameter tree.
        lower: lower bounds shaped like ``params`` (see `bounds_cost`).
        upper: upper bounds, likewise.

    Returns:
        A new tree like ``params``; ``params`` is not mutated.

    Raises:
        ValueError: as `bounds_cost`, naming the offending path.
        TypeError: as `bounds_cost`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import clip_to_bounds, make_bounds
        >>> params = {"tau": jnp.array([-1.0, 0.1, 3.0]), "w": jnp.ones(2)}
        >>> lower, upper = make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, 1.0
        >>> clip_to_bounds(params, lower, upper)["tau"]
        Array([0. , 0.1, 1. ], dtype=float32)
    """
    return map_bounded(_clipped, params, lower, upper)
