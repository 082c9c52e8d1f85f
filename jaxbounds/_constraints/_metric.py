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

#: Most secant passes `radius_in_metric` takes (it converges in a handful).
NEWTON_PASSES = 40


def unit_metric(d: Any, x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """The metric ``d`` as weights shaped like ``x`` (compute dtype), max 1 per unit.

    Only ratios of ``d`` within a unit matter to a projection, so every unit's
    weights are divided by their largest: a uniform metric becomes exactly 1
    (and the weighted formulas give the Euclidean values bit for bit), and
    the scale of ``d`` (Adam's ``sqrt(nu)`` may be ``1e-8`` or ``1e8``) cannot
    overflow. Weights are kept above ``sqrt(tiny)`` of the compute dtype (a
    ratio past ``1e19`` in float32 is treated as that ratio); a unit whose
    weights are all 0 takes weights 1.
    """
    cd = compute_dtype(x.dtype)
    w = jnp.broadcast_to(jnp.asarray(d, cd), x.shape)
    top = jnp.max(w, axis=axes, keepdims=True, initial=0)
    floor = float(np.sqrt(np.finfo(np.dtype(cd)).tiny))
    # a unit whose weights are all 0 (no second moment yet) is Euclidean
    return jnp.where(top > 0, jnp.maximum(w / jnp.where(top > 0, top, 1), floor), 1)


def radius_in_metric(
    xc: jax.Array,
    w: jax.Array,
    axes: tuple[int, ...],
    n: jax.Array,
    target: jax.Array,
    *,
    grow: bool = True,
) -> jax.Array:
    """Every unit moved to the norm ``target`` in the metric ``w`` (max 1 per unit).

    The nearest point of the sphere ``||y||_2 == target`` (or, from outside,
    of the ball) in ``sum(w * (y - x)**2)`` is ``y = w x / (w + lam)``, with
    ``lam`` the root of ``h(lam) = 1 / ||y(lam)|| = 1 / target``. ``h`` is
    increasing and concave on ``lam > -min(w)`` (the trust-region secular
    equation of Moré and Sorensen), nearly linear.
    The root lies in ``[min(w) k, max(w) k]`` (``k = ||x|| / target - 1``, in
    either order; above ``-min(w)``, bounded by the smallest weight's
    components alone when a unit grows, ``grow``). The secant method starts
    at ``k`` times the ``x**2``-weighted mean weight (the root when the
    weights are equal) with the slope ``h`` has there for equal weights,
    keeps the bracket, bisects when a step leaves it, and runs per unit until
    no unit moves and every residual ``|h - 1 / target|`` is below
    ``sqrt(eps)`` relative (at most `NEWTON_PASSES`): one reduction per pass, where
    Newton's derivative would take a second (two fused reductions run at a
    fifth of the speed of one on XLA's CPU backend). The result is then
    scaled radially onto ``target`` (a correction of the order of the
    solver's rounding), and a unit whose weights are all equal takes the
    Euclidean ``x * target / ||x||`` exactly. ``n`` is ``||x||`` (zero units
    stay zero; pass ``target = n`` for units to keep).
    """
    pos = n > 0
    safe = jnp.where(pos, n, 1)
    aim = 1 / jnp.where(target > 0, target, 1)
    k = jnp.where(pos, n * aim - 1, 0)
    low = jnp.min(w, axis=axes, keepdims=True)
    eps = jnp.finfo(xc.dtype).eps
    x2 = jnp.square(xc)
    lo, hi = jnp.minimum(k, low * k), jnp.maximum(k, low * k)
    if grow:  # the smallest weight's components alone bound lam below: > -low
        m = jnp.sqrt(jnp.sum(jnp.where(w == low, x2, 0), axis=axes, keepdims=True))
        lo = jnp.maximum(lo, jnp.maximum(low * (m * aim - 1), -low * (1 - eps**0.5)))
    mean_w = jnp.sum(w * x2, axis=axes, keepdims=True) / jnp.square(safe)
    sq = jnp.square(w) * x2  # y**2 = sq / (w + lam)**2
    # h's slope where all weights equal mean_w: a first secant
    slope0 = 1 / jnp.where(pos, mean_w * safe, 1)

    def body(state: tuple) -> tuple:
        i, lam, last, h_last, lo, hi, _ = state
        s = jnp.sum(sq / jnp.square(w + lam), axis=axes, keepdims=True)
        h = jax.lax.rsqrt(jnp.where(s > 0, s, 1))
        lo = jnp.where(h < aim, lam, lo)
        hi = jnp.where(h > aim, lam, hi)
        slope = (h - h_last) / jnp.where(lam != last, lam - last, 1)
        slope = jnp.where((lam != last) & (slope > 0), slope, slope0)
        new = lam + (aim - h) / slope
        new = jnp.where((new >= lo) & (new <= hi), new, (lo + hi) / 2)
        big = jnp.abs(new - lam) > 4 * eps * jnp.maximum(jnp.abs(lam), eps)
        # a stale secant slope can make a small step far from the root: go on
        # while the residual is clearly not rounding, in a bracket still open
        off = (jnp.abs(h - aim) > eps**0.5 * aim) & (hi > lo)
        return i + 1, new, lam, h, lo, hi, jnp.any(big | off)

    def cond(state: tuple) -> jax.Array:
        return (state[0] < NEWTON_PASSES) & state[6]

    start = jnp.clip(k * mean_w, lo, hi)
    state = (jnp.zeros((), jnp.int32), start, start, aim, lo, hi, jnp.asarray(True))
    lam = jax.lax.stop_gradient(jax.lax.while_loop(cond, body, state)[1])
    z = xc * (w / (w + lam))
    nz = jnp.sqrt(jnp.sum(jnp.square(z), axis=axes, keepdims=True))
    z = z * (target / jnp.where(nz > 0, nz, 1))
    uniform = low == 1
    return jnp.where(uniform, xc * (target / safe), jnp.where(pos, z, xc))
