"""A diagonal metric per unit: its weights, and the 2-norm sets' scalar equation.

A projection in the metric ``sum(d * (y - x)**2)`` depends only on the
ratios of ``d`` within a unit (`unit_metric` scales them to a largest of
1). The 2-norm ball and spheres take ``y = d x / (d + lam)`` with ``lam``
the root of one monotone scalar equation per unit (`radius_in_metric`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._rounding import compute_dtype

#: Most Newton passes `radius_in_metric` takes (it converges in a handful).
NEWTON_PASSES = 40


def unit_metric(d: Any, x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """The metric ``d`` as weights shaped like ``x`` (compute dtype), max 1 per unit.

    Only ratios of ``d`` within a unit matter to a projection, so every unit's
    weights are divided by their largest: a uniform metric becomes exactly 1
    (and the weighted formulas give the Euclidean values bit for bit), and
    the scale of ``d`` (Adam's ``sqrt(nu)`` may be ``1e-8`` or ``1e8``) cannot
    overflow. Weights are kept above ``sqrt(tiny)`` of the compute dtype (a
    ratio past ``1e19`` in float32 is treated as that ratio).
    """
    cd = compute_dtype(x.dtype)
    w = jnp.broadcast_to(jnp.asarray(d, cd), x.shape)
    top = jnp.max(w, axis=axes, keepdims=True, initial=0)
    floor = float(np.sqrt(np.finfo(np.dtype(cd)).tiny))
    return jnp.maximum(w / jnp.where(top > 0, top, 1), floor)


def radius_in_metric(
    xc: jax.Array, w: jax.Array, axes: tuple[int, ...], n: jax.Array, target: jax.Array
) -> jax.Array:
    """Every unit moved to the norm ``target`` in the metric ``w`` (max 1 per unit).

    The nearest point of the sphere ``||y||_2 == target`` (or, from outside,
    of the ball) in ``sum(w * (y - x)**2)`` is ``y = w x / (w + lam)``, with
    ``lam`` the root of ``h(lam) = 1 / ||y(lam)|| = 1 / target``. ``h`` is
    increasing and concave on ``lam > -min(w)`` (the trust-region secular
    equation of Moré and Sorensen), so Newton's method started at the lower
    end of the bracket ``[min(w) k, max(w) k]`` (``k = ||x|| / target - 1``,
    in either order; above ``-min(w)``, bounded by the smallest weight's
    components alone) climbs monotonically to the root; it runs per unit,
    clipped to the bracket, until no unit moves (at most `NEWTON_PASSES`).
    The result is then scaled radially onto ``target`` (a correction of the
    order of the solver's rounding), and a unit whose weights are all equal
    takes the Euclidean ``x * target / ||x||`` exactly. ``n`` is ``||x||``
    (zero units stay zero; pass ``target = n`` for units to keep).
    """
    pos = n > 0
    safe = jnp.where(pos, n, 1)
    k = jnp.where(pos, n / jnp.where(target > 0, target, 1) - 1, 0)
    low = jnp.min(w, axis=axes, keepdims=True)
    eps = jnp.finfo(xc.dtype).eps
    aim = 1 / jnp.where(target > 0, target, 1)
    # the smallest weight's components alone bound lam below: lam > -low
    m = jnp.sqrt(
        jnp.sum(jnp.where(w == low, jnp.square(xc), 0), axis=axes, keepdims=True)
    )
    floor = jnp.maximum(low * (m * aim - 1), -low * (1 - jnp.sqrt(eps)))
    lo, hi = jnp.maximum(jnp.minimum(k, low * k), floor), jnp.maximum(k, low * k)

    def newton(lam: jax.Array) -> jax.Array:
        q = w / (w + lam)
        s = jnp.sum(jnp.square(q * xc), axis=axes, keepdims=True)
        ds = jnp.sum(jnp.square(q * xc) * (q / w), axis=axes, keepdims=True)
        s = jnp.where(s > 0, s, 1)
        h = jax.lax.rsqrt(s)
        slope = ds * h / s  # d/dlam of s**-1/2
        step = (aim - h) / jnp.where(slope > 0, slope, 1)
        return jnp.clip(lam + step, lo, hi)

    def cond(state: tuple) -> jax.Array:
        i, _, moved = state
        return (i < NEWTON_PASSES) & moved

    def body(state: tuple) -> tuple:
        i, lam, _ = state
        new = jnp.maximum(newton(lam), lam)
        moved = jnp.any(new - lam > 4 * eps * jnp.maximum(jnp.abs(lam), eps))
        return i + 1, new, moved

    lam = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), lo, True))[1]
    lam = jax.lax.stop_gradient(lam)
    z = xc * (w / (w + lam))
    nz = jnp.sqrt(jnp.sum(jnp.square(z), axis=axes, keepdims=True))
    z = z * (target / jnp.where(nz > 0, nz, 1))
    uniform = low == 1
    return jnp.where(uniform, xc * (target / safe), jnp.where(pos, z, xc))
