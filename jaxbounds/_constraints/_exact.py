"""Inward rounding beyond boxes: values that satisfy ``||y|| <= r`` as computed.

A projection computed in the compute dtype (at least float32) and rounded
to nearest into the leaf's dtype can land an ulp outside: ``||y||`` as
recomputed may exceed ``r``. `toward_zero` rounds each element's magnitude
down instead, and `fit` steps the scale of the offending units until the
recomputed measure is on the right side of its limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ._core import compute_dtype, next_float

#: Scale steps `fit` takes (unrolled), ``eps * 4**k`` each.
FIT_STEPS = 1


def settled(x: jax.Array) -> jax.Array:
    """``x`` rounded into its dtype for real inside `jax.jit` (float16/bfloat16).

    XLA may keep narrow intermediates in float32 ("excess precision"); an
    optimization barrier makes the rounded value the one that is used.
    """
    if jnp.finfo(x.dtype).bits >= 32:
        return x
    return jax.lax.optimization_barrier(x)


def narrowed(v: jax.Array, dtype: Any, away: bool = False) -> jax.Array:
    """``v`` cast into ``dtype``, its magnitude rounded down (or up when ``away``)."""
    if jnp.dtype(dtype) == v.dtype:  # nothing to round
        return v
    y = settled(v.astype(dtype))
    back = y.astype(v.dtype)
    wrong = (jnp.abs(back) < jnp.abs(v)) if away else (jnp.abs(back) > jnp.abs(v))
    up = (y > 0) if away else (y < 0)
    return jnp.where(wrong & (v != 0), next_float(y, up), y)


def toward_zero(v: jax.Array, dtype: Any) -> jax.Array:
    """``v`` cast into ``dtype`` with every magnitude rounded down."""
    return narrowed(v, dtype)


def fit(
    y: jax.Array,
    measure: Callable[[jax.Array], jax.Array],
    limit: jax.Array,
    *,
    above: bool = False,
) -> jax.Array:
    """``y`` with offending units rescaled until ``measure`` is within ``limit``.

    ``measure`` maps ``y`` (cast to the compute dtype) to one value per unit,
    broadcastable against ``y``. A unit is offending when its measure exceeds
    ``limit`` (or, with ``above``, falls below it); it is multiplied by
    ``1 -/+ 4 eps * 4**k`` (``eps`` of ``y``'s dtype) and rounded towards
    zero (away from it), for ``k = 0 .. FIT_STEPS - 1``, unrolled: no loop,
    so that a tree of many leaves compiles fast. The callers aim a few ulps
    inside the limit already, so usually no step changes anything; the
    steps catch a norm summed in an unlucky order.
    """
    dtype = y.dtype
    cd = compute_dtype(dtype)
    eps = jnp.finfo(dtype).eps.astype(cd)
    for k in range(FIT_STEPS):
        m = measure(y.astype(cd))
        bad = (m < limit) if above else (m > limit)
        step = 4 * eps * 4**k
        factor = (1 + step) if above else (1 - step)
        y = jnp.where(bad, narrowed(y.astype(cd) * factor, dtype, away=above), y)
    return y
