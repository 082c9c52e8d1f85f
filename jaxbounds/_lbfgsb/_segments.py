"""The quadratic model along the projected-gradient path, segment by segment.

Along ``x(t) = P(x - t g)`` the model ``m(x) = f + g^T z + z^T B z / 2``
(``z = x(t) - x``) is a quadratic on each segment between breakpoints. Its
slope and curvature just after a time follow from the path's state there,
``G`` (the moving variables' sum of ``g_i^2``), ``P = W^T d`` and
``C = W^T z`` (`state_after`, `slope`); the minimiser on a segment is a
Newton step (`newton_time`, `first_stop`). scipy's ``cauchy`` updates the
state breakpoint by breakpoint; `walk` runs the same recurrences over a
sorted chunk of breakpoints at once, as prefix sums. The walk that feeds it
chunk by chunk is `jaxbounds._lbfgsb._cauchy`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._memory import Compact, Memory, m_times, w_dot
from ._tree import leaves, tmap, total


def state_after(
    t: Any, g: Any, tb: Any, mem: Memory, cp: Compact, dtype: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The path's state just after time ``t``: one pass over the memory.

    Returns ``G = sum over moving variables of g_i^2``, ``P = W^T d(t)`` and
    ``C = W^T z(t)``, where ``d`` is the path's direction (``-g_i`` on
    variables that still move, ``t_i > t``) and ``z(t) = x(t) - x``.
    """

    d = tmap(lambda g, tl: jnp.where(tl > t.astype(tl.dtype), -g, 0), g, tb)
    z = tmap(lambda g, tl: -g * jnp.minimum(t.astype(tl.dtype), tl), g, tb)
    wv = w_dot(mem, cp, [d, z], dtype)
    gg = [
        jnp.sum(jnp.where(tl > t.astype(tl.dtype), gl**2, 0))
        for gl, tl in zip(leaves(g), leaves(tb))
    ]
    return total(gg, dtype), wv[:, 0], wv[:, 1]


def slope(
    t: Any, gg: Any, p: jax.Array, c: jax.Array, cp: Compact
) -> tuple[jax.Array, jax.Array]:
    """The model's slope and curvature along the path just after ``t``.

    ``q'(t) = -(1 - theta t) G - C^T M P`` and ``q''(t) = theta G - P^T M P``,
    from the state ``(G, P, C)`` of `state_after` (batched on the leading axis).
    """
    mp = m_times(cp, jnp.swapaxes(p, 0, -1))
    mp = jnp.swapaxes(mp, 0, -1)
    theta = cp.theta
    return (
        -(1 - theta * t) * gg - jnp.sum(c * mp, axis=-1),
        theta * gg - jnp.sum(p * mp, axis=-1),
    )


def newton_time(t: Any, f1: Any, f2: Any) -> Any:
    """``t - f1 / f2``: where the slope, linear along a segment, reaches zero.

    ``inf`` where the curvature ``f2`` is not positive (no minimiser ahead).
    """
    return jnp.where(f2 > 0, t - f1 / jnp.where(f2 > 0, f2, 1), jnp.inf)


def first_stop(
    a: Any, state: tuple[Any, Any, Any], t_next: Any, cp: Compact
) -> tuple[Any, Any]:
    """Whether the first minimiser lies on ``[a, t_next]``, and where.

    The segment from ``a`` (with ``state`` just after it) to the next
    breakpoint ``t_next`` (``inf``: none left), where the model descends
    just after ``a``: at ``t = 0`` its slope is ``-G``, and the walk only
    stands after groups with a negative slope. So the minimiser lies on the
    segment when the slope reaches zero before ``t_next``; with no curvature
    and no breakpoint left (nothing moves) it is ``a``.
    """
    f1, f2 = slope(a, state[0], state[1], state[2], cp)
    tz = newton_time(a, f1, f2)
    here = (tz <= t_next) | ~jnp.isfinite(t_next)
    return here, jnp.where(jnp.isfinite(tz), tz, a)


def walk(
    a: Any,
    state: tuple[Any, Any, Any],
    chunk: tuple[jax.Array, jax.Array, jax.Array],
    cp: Compact,
    whole: bool = False,
) -> tuple[Any, Any, Any, Any, tuple[Any, Any, Any]]:
    """scipy's recurrences over a sorted, complete chunk, as prefix sums.

    Args:
        a: the time the walk stands at; the model descends just after it.
        state: ``(G, P, C)`` just after ``a`` (see `state_after`).
        chunk: times (sorted, ``> a``; ``inf`` pads), gradients and rows of
            ``W`` of every breakpoint up to the last finite time.
        cp: the compact form.
        whole: whether the chunk holds every breakpoint left, so the segment
            after its last one runs to infinity (else it is not known yet).

    Returns:
        ``(stop, t*, c*, a', state')``: whether a minimiser was found, where,
        and ``C = W^T z`` there; the last breakpoint walked and the state
        just after it.
    """
    gg, p, c = state
    t, g, w = chunk
    real = jnp.isfinite(t)
    ts = jnp.where(real, t, a)
    gw = g[:, None] * w
    p_after = p + jnp.cumsum(gw, axis=0)  # P just after each breakpoint
    p_before = jnp.concatenate([p[None], p_after[:-1]])
    dt = jnp.diff(ts, prepend=a)
    c_at = c + jnp.cumsum(dt[:, None] * p_before, axis=0)
    gg_after = gg - jnp.cumsum(g**2)
    f1, f2 = slope(ts, gg_after, p_after, c_at, cp)
    nxt = jnp.concatenate([t[1:], jnp.full((1,), jnp.inf, t.dtype)])
    # a slope is real only after the last of a group of equal breakpoints
    group_end = real & (nxt > t)
    # the segment after the last breakpoint is not known yet, unless none follow
    last = group_end & ~jnp.isfinite(nxt) & (not whole)
    tz = newton_time(ts, f1, f2)
    rises = group_end & (f1 >= 0)
    inside = group_end & ~last & (f1 < 0) & (tz <= nxt)
    stop_at = rises | inside
    first = jnp.argmax(stop_at)
    stop = jnp.any(stop_at)
    tstar = jnp.where(rises[first], ts[first], tz[first])
    cstar = c_at[first] + (tstar - ts[first]) * p_after[first]
    j = jnp.maximum(jnp.sum(real) - 1, 0)
    any_real = jnp.any(real)
    new_a = jnp.where(any_real, ts[j], a)
    new_state = (
        jnp.where(any_real, gg_after[j], gg),
        jnp.where(any_real, p_after[j], p),
        jnp.where(any_real, c_at[j], c),
    )
    return stop, tstar, cstar, new_a, new_state


def start(
    tb: Any, g: Any, mem: Memory, cp: Compact, dtype: Any
) -> tuple[Any, Any, Any]:
    """The state ``(G, P, C)`` at ``t = 0``: ``z = 0``, so ``C = 0``; one pass."""
    d0 = tmap(lambda g, t: jnp.where(t > 0, -g, 0), g, tb)
    gg = [jnp.sum(jnp.where(t > 0, g**2, 0)) for g, t in zip(leaves(g), leaves(tb))]
    p0 = w_dot(mem, cp, [d0], dtype)[:, 0]
    return total(gg, dtype), p0, jnp.zeros_like(p0)
