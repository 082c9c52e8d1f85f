"""Rounding as `bounds_cost` sees it: neighbours, inward bounds, stored sums, landing.

A bound is compared with a parameter in the *compute dtype* (the
parameter's dtype, but at least float32). A bound that is not representable
in a low-precision parameter dtype must therefore be rounded towards the
inside of the box before anything is clipped to it (`inward`), and an
update that `optax.apply_updates` adds to a parameter must be chosen so that
the *stored* sum lands where it should (`stored_sum`, `land`). The one
violation formula, `violation`, lives here too: the penalty, the
projection's landing and the report all measure "how far outside" with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def compute_dtype(dtype: Any) -> jnp.dtype:
    """The dtype bounds are compared and penalties computed in: at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def violation(x: jax.Array, lo: Any, up: Any) -> jax.Array:
    """``max(lo - x, x - up)`` over the sides given (`None`: open); > 0 outside.

    The one formula for "how far outside the box" in jaxbounds: negative
    inside (the distance to the nearer bound), NaN only for NaN ``x``.
    Bounds are cast to ``x``'s dtype, so the caller picks the precision by
    casting ``x`` (to `compute_dtype`). With no side given it is ``-inf``.

    Examples:
        >>> import jax.numpy as jnp
        >>> print(violation(jnp.array([-1.0, 0.5, 3.0]), 0.0, 1.0))
        [ 1.  -0.5  2. ]
    """
    parts = []
    if lo is not None:
        parts.append(jnp.asarray(lo, x.dtype) - x)
    if up is not None:
        parts.append(x - jnp.asarray(up, x.dtype))
    if not parts:
        return jnp.full_like(x, -jnp.inf)
    return parts[0] if len(parts) == 1 else jnp.maximum(*parts)


def bits_dtype(dtype: Any) -> jnp.dtype:
    """The signed integer dtype as wide as the float ``dtype``: the one its bit
    patterns are read as (a non-negative float's pattern grows with it).

    Examples:
        >>> import jax.numpy as jnp
        >>> print(bits_dtype(jnp.bfloat16), bits_dtype(jnp.float32))
        int16 int32
    """
    return jnp.dtype(f"int{jnp.finfo(dtype).bits}")


def next_float(x: jax.Array, up: Any) -> jax.Array:
    """The float next to ``x`` towards ``+inf`` where ``up``, else towards ``-inf``.

    `jnp.nextafter` by stepping the bit pattern: floats are sign-magnitude,
    so the integer of a positive float grows with it. A few integer
    operations where `jnp.nextafter` lowers to some thirty, which matters to
    compile time when every leaf of a large tree asks for it. Zeros step to
    the smallest subnormal of the right sign, NaN stays NaN, an infinity
    steps to the largest finite float towards zero and stays put outwards;
    no NaN is made on the way (``jax_debug_nans``).

    Examples:
        >>> import jax.numpy as jnp
        >>> print(next_float(jnp.float16(1.0), True))
        1.001
    """
    x = jnp.asarray(x)
    bits = bits_dtype(x.dtype)
    i = jax.lax.bitcast_convert_type(x, bits)
    outwards = (x > 0) == up
    # Zeros and infinities stepped outwards are not stepped here: their bit
    # patterns would pass through NaN (``jax_debug_nans`` sees it).
    still = (x == 0) | (jnp.isinf(x) & outwards)
    step = jnp.where(still, 0, jnp.where(outwards, 1, -1)).astype(bits)
    nxt = jax.lax.bitcast_convert_type(i + step, x.dtype)
    tiny = jax.lax.bitcast_convert_type(jnp.ones((), bits), x.dtype)
    return jnp.where(x == 0, jnp.where(up, tiny, -tiny), nxt)


def _inward_on_host(bound: Any, dtype: Any, side: str) -> np.ndarray:
    """`inward` in NumPy, for bounds known on the host."""
    wide = np.asarray(bound, np.dtype(compute_dtype(dtype)))
    narrow = wide.astype(np.dtype(dtype))
    back = narrow.astype(wide.dtype)
    fix = back < wide if side == "lower" else back > wide
    towards = np.asarray(np.inf if side == "lower" else -np.inf, narrow.dtype)
    return np.where(fix, np.nextafter(narrow, towards), narrow)


def inward(bound: Any, dtype: Any, side: str) -> jax.Array:
    """``bound`` represented in ``dtype``, rounded towards the inside of the box.

    Rounding to nearest can move a bound outwards (``float16(0.1) < 0.1``),
    so a value clipped to it would still violate the bound as `bounds_cost`
    sees it (in at least float32). A lower bound is rounded up, an upper
    bound down. Infinities stay infinite. A bound known on the host (a Python
    number, a NumPy array) is rounded there, in NumPy, and enters a trace as
    one constant rather than a dozen operations per leaf.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(inward(0.1, jnp.float16, "lower")), float(jnp.float16(0.1))
        (0.10003662109375, 0.0999755859375)
    """
    if isinstance(bound, (float, int, np.ndarray, np.generic)):
        return jnp.asarray(_inward_on_host(bound, dtype, side), dtype)
    wide = jnp.asarray(bound, compute_dtype(dtype))
    return directed(wide, dtype, "up" if side == "lower" else "down")


def inward_edges(lo: Any, up: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """``(low, high)``: a box's bounds rounded inwards into ``dtype`` (`inward`).

    An open side (`None`) is ``-inf`` / ``inf``. The edges that the
    projections clip to and that `land` aims inside of.
    """
    low = inward(-jnp.inf if lo is None else lo, dtype, "lower")
    high = inward(jnp.inf if up is None else up, dtype, "upper")
    return low, high


def rounded(x: jax.Array) -> jax.Array:
    """``x`` rounded into its dtype for real, also inside `jax.jit`.

    XLA may carry float16/bfloat16 intermediates in float32 and drop the
    rounding in between ("excess precision"): inside a compiled function
    ``(p + u).astype(jnp.float32)`` can differ from the stored ``p + u``.
    An optimization barrier makes the rounded value the one that is used.
    """
    if jnp.finfo(x.dtype).bits >= 32:
        return x
    return jax.lax.optimization_barrier(x)


#: The directions `directed` rounds in.
DIRECTIONS = ("up", "down", "toward_zero", "away_from_zero")


def directed(v: jax.Array, dtype: Any, direction: str) -> jax.Array:
    """``v`` cast into ``dtype``, rounded in ``direction`` instead of to nearest.

    The one directed rounding of jaxbounds: ``"up"`` / ``"down"`` (a bound
    rounded inwards, the two sides of a relation), ``"toward_zero"`` /
    ``"away_from_zero"`` (magnitudes that must not grow, or shrink: norm
    balls, simplices). The cast is rounded to nearest (`rounded`, so that
    XLA's excess precision cannot skip it) and stepped by one float where
    it went the wrong way. ``v`` is in a dtype at least as wide as ``dtype``.

    Examples:
        >>> import jax.numpy as jnp
        >>> v, f16 = jnp.float32(0.1), jnp.float16
        >>> float(directed(v, f16, "down")), float(directed(v, f16, "up"))
        (0.0999755859375, 0.10003662109375)
    """
    if jnp.dtype(dtype) == v.dtype:  # nothing to round
        return v
    y = rounded(v.astype(dtype))
    back = y.astype(v.dtype)
    if direction == "up":
        return jnp.where(back < v, next_float(y, True), y)
    if direction == "down":
        return jnp.where(back > v, next_float(y, False), y)
    if direction == "toward_zero":
        wrong = (jnp.abs(back) > jnp.abs(v)) & (v != 0)
        return jnp.where(wrong, next_float(y, y < 0), y)
    if direction == "away_from_zero":
        wrong = (jnp.abs(back) < jnp.abs(v)) & (v != 0)
        return jnp.where(wrong, next_float(y, y > 0), y)
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def toward_zero(v: jax.Array, dtype: Any) -> jax.Array:
    """``v`` cast into ``dtype`` with every magnitude rounded down."""
    return directed(v, dtype, "toward_zero")


#: Scale steps `fit` takes (unrolled), ``eps * 4**k`` each.
FIT_STEPS = 1


def fit(
    y: jax.Array,
    measure: Callable[[jax.Array], jax.Array],
    limit: jax.Array,
    *,
    above: bool = False,
) -> jax.Array:
    """``y`` with offending units rescaled until ``measure`` is within ``limit``.

    Inequalities beyond boxes (``||y|| <= r``) as computed: a projection
    computed in the compute dtype and rounded to nearest into the leaf's
    dtype can land an ulp outside. ``measure`` maps ``y`` (cast to the
    compute dtype) to one value per unit, broadcastable against ``y``. A
    unit is offending when its measure exceeds ``limit`` (or, with
    ``above``, falls below it); it is multiplied by ``1 -/+ 4 eps * 4**k``
    (``eps`` of ``y``'s dtype) and rounded towards zero (away from it), for
    ``k = 0 .. FIT_STEPS - 1``, unrolled: no loop, so that a tree of many
    leaves compiles fast. The callers aim a few ulps inside the limit
    already, so usually no step changes anything; the steps catch a norm
    summed in an unlucky order. Each step runs under `jax.lax.cond` on
    whether any unit offends: when none does (the usual case), the check
    is the one reduction over ``y`` and nothing more is read or written.
    """
    dtype = y.dtype
    cd = compute_dtype(dtype)
    eps = jnp.finfo(dtype).eps.astype(cd)
    way = "away_from_zero" if above else "toward_zero"
    for k in range(FIT_STEPS):
        m = measure(y.astype(cd))
        bad = (m < limit) if above else (m > limit)
        step = 4 * eps * 4**k
        factor = (1 + step) if above else (1 - step)

        def fix(y: jax.Array, bad: jax.Array = bad, factor: Any = factor) -> jax.Array:
            return jnp.where(bad, directed(y.astype(cd) * factor, dtype, way), y)

        y = jax.lax.cond(jnp.any(bad), fix, lambda y: y, y)
    return y


def stored_sum(p: jax.Array, u: jax.Array) -> jax.Array:
    """One leaf of `optax.apply_updates` (``(p + u).astype(p.dtype)``), as stored."""
    return rounded(rounded(jnp.asarray(p + u)).astype(p.dtype))


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
    step = rounded(rounded(target.astype(wide) - p.astype(wide)).astype(dtype))
    landed = stored_sum(p, step)
    other = next_float(step, landed < target)
    reached = stored_sum(p, other)
    cdtype = compute_dtype(p.dtype)

    def off(r: jax.Array) -> jax.Array:
        return jnp.maximum(violation(r.astype(cdtype), low, high), 0)

    better = (landed != target) & ((reached == target) | (off(reached) < off(landed)))
    return jnp.where(better, other, step)
