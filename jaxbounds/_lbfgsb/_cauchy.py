"""The generalized Cauchy point.

The first local minimiser of the quadratic model
``m(x) = f + g^T (x - x_k) + (x - x_k)^T B (x - x_k) / 2`` along the
projected-gradient path ``P(x - t g)`` (Byrd et al. 1995, section 4). The
path is piecewise linear with a breakpoint per variable; instead of sorting
the breakpoints, each round probes the model's slope at a few breakpoints at
once (one pass over the memory) and narrows the bracket that holds the first
sign change; the slope is linear between breakpoints, so the last bracket is
solved exactly.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from ._memory import Compact, Memory, m_times, w_dot
from ._tree import largest, leaves, smallest, tmap, total

#: Probes of the model's slope per round of the Cauchy point search.
PROBES = 8
#: Rounds of the Cauchy point search before it settles for the bracket's left end.
MAX_ROUNDS = 64


def breakpoints(x: Any, g: Any, lo: Any, up: Any) -> Any:
    """``t_i``, where ``x_i - t g_i`` meets its bound (``inf``: never; 0: blocked).

    Examples:
        >>> import jax.numpy as jnp
        >>> x, g = jnp.array([0.5, 0.5, 0.5]), jnp.array([1.0, -2.0, 0.0])
        >>> print(breakpoints(x, g, 0.0, 1.0))
        [0.5  0.25  inf]
    """

    def leaf(x: Any, g: Any, lo: Any, up: Any) -> Any:
        safe = jnp.where(g == 0, 1, g)
        t = jnp.where(g < 0, (x - up) / safe, (x - lo) / safe)
        t = jnp.where(g == 0, jnp.inf, t)
        return jnp.maximum(t, 0)

    return tmap(leaf, x, g, lo, up)


def probe(
    ts: jax.Array, g: Any, tb: Any, mem: Memory, cp: Compact, dtype: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The model's state just after each probe time ``t_k`` on the path.

    Returns ``G_k = sum over moving variables of g_i^2``, ``P_k = W^T d(t_k)``
    and ``C_k = W^T z(t_k)``, where ``d`` is the path's direction (``-g_i`` on
    variables that still move, ``t_i > t``) and ``z(t) = x(t) - x``.
    """
    k = ts.shape[0]

    def weights(g: Any, t: Any) -> Any:
        tk = ts.reshape((k,) + (1,) * jnp.ndim(g)).astype(t.dtype)
        moving = t[None] > tk
        d = jnp.where(moving, -g[None], 0)
        z = -g[None] * jnp.minimum(tk, t[None])
        return jnp.concatenate([d, z], axis=0)

    big = tmap(weights, g, tb)
    wv = w_dot(mem, cp, big, dtype)
    gg = []
    for gl, tl in zip(leaves(g), leaves(tb)):
        tk = ts.reshape((k,) + (1,) * jnp.ndim(gl)).astype(tl.dtype)
        axes = tuple(range(1, jnp.ndim(gl) + 1))
        gg.append(jnp.sum(jnp.where(tl[None] > tk, gl[None] ** 2, 0), axis=axes))
    return total(gg, dtype), wv[:, :k].T, wv[:, k:].T


def cauchy_time(
    x: Any,
    g: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    cp: Compact,
    dtype: Any,
    skip: Any = False,
) -> tuple[jax.Array, jax.Array]:
    """``t*``, the path parameter of the generalized Cauchy point.

    Args:
        x: the iterate, inside the box.
        g: the gradient at ``x``.
        lo: lower bounds, a tree like ``x``.
        up: upper bounds.
        mem: the memory.
        cp: its compact form.
        dtype: the dtype of the scalars.
        skip: a flag; when true, no rounds are run (a finished fit in a batch).

    Returns:
        ``(t*, rounds)``: the time and the rounds of the search taken.
    """
    theta = cp.theta
    tb = breakpoints(x, g, lo, up)
    zero = jnp.zeros((1,), dtype)
    g0, p0, c0 = probe(zero, g, tb, mem, cp, dtype)

    def slope(t: Any, gk: Any, p: Any, c: Any) -> tuple[Any, Any]:
        """The model's slope and curvature just after ``t`` (batched on axis 0)."""
        mp = m_times(cp, p.T).T
        return (
            -(1 - theta * t) * gk - jnp.sum(c * mp, axis=-1),
            theta * gk - jnp.sum(p * mp, axis=-1),
        )

    def cond(carry: tuple) -> Any:
        return ~carry[-2] & (carry[-1] < MAX_ROUNDS)

    def body(carry: tuple) -> tuple:
        a, ga, pa, ca, b, tstar, done, rounds = carry
        qa, fa2 = slope(a, ga, pa, ca)
        inside = tmap(lambda t: (t > a) & (t < b), tb)
        pairs = list(zip(leaves(inside), leaves(tb)))
        t_lo = smallest(
            [jnp.min(jnp.where(i, t, jnp.inf)) for i, t in pairs], dtype, math.inf
        )
        t_hi = largest(
            [jnp.max(jnp.where(i, t, -jnp.inf)) for i, t in pairs], dtype, -math.inf
        )
        tz = jnp.where(fa2 > 0, a - qa / jnp.where(fa2 > 0, fa2, 1), jnp.inf)
        seg_end = jnp.minimum(t_lo, b)
        # the slope's zero lies before the next breakpoint: the minimiser
        here = tz <= seg_end
        # no breakpoint left before b: the minimiser is the jump at b
        at_b = ~here & (t_lo >= b)
        finish = here | at_b
        t_fin = jnp.where(here, tz, jnp.where(jnp.isfinite(b), b, a))
        # probe between the next and the last breakpoint of the bracket
        span = jnp.where(jnp.isfinite(t_hi) & (t_hi > t_lo), t_hi / t_lo, 1.0)
        frac = jnp.linspace(0.0, 1.0, PROBES, dtype=dtype)
        ts = jnp.where(finish, a, t_lo * span**frac)
        # (a pass over the memory: skipped when this round already finished)
        m2 = 2 * mem.age.shape[0]
        gk, pk, ck = jax.lax.cond(
            finish,
            lambda: (
                jnp.zeros((PROBES,), dtype),
                jnp.zeros((PROBES, m2), dtype),
                jnp.zeros((PROBES, m2), dtype),
            ),
            lambda: probe(ts, g, tb, mem, cp, dtype),
        )
        qk, _ = slope(ts, gk, pk, ck)
        up_hill = qk >= 0
        first = jnp.argmax(up_hill)
        some = jnp.any(up_hill)
        jump = ~finish & some & (first == 0)  # minimiser at the jump at t_lo
        done_new = finish | jump
        t_fin = jnp.where(jump, t_lo, t_fin)
        # narrow the bracket
        left = jnp.where(some, jnp.maximum(first - 1, 0), PROBES - 1)
        na = jnp.where(done_new, a, ts[left])
        nga = jnp.where(done_new, ga, gk[left])
        npa = jnp.where(done_new, pa, pk[left])
        nca = jnp.where(done_new, ca, ck[left])
        nb = jnp.where(done_new | ~some, b, ts[first])
        tstar = jnp.where(done_new, t_fin, tstar)
        return na, nga, npa, nca, nb, tstar, done_new, rounds + 1

    q0, _ = slope(zero[0], g0[0], p0[0], c0[0])
    init = (
        zero[0],
        g0[0],
        p0[0],
        c0[0],
        jnp.asarray(jnp.inf, dtype),
        zero[0],
        ~(q0 < 0) | skip,
        jnp.zeros((), jnp.int32),
    )
    a, _, _, _, _, tstar, done, rounds = jax.lax.while_loop(cond, body, init)
    return jnp.where(done, tstar, a), rounds


def cauchy(
    x: Any,
    g: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    cp: Compact,
    dtype: Any,
    skip: Any = False,
) -> Any:
    """The generalized Cauchy point ``x_c = P(x - t* g)`` (see `cauchy_time`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._memory import compact, new_memory
        >>> x, g = jnp.array([0.5, 0.5]), jnp.array([1.0, -2.0])
        >>> mem = new_memory(x, 2, jnp.float32)  # empty: B = I
        >>> print(cauchy(x, g, 0.0, 0.6, mem, compact(mem), jnp.float32))
        [0.  0.6]
    """
    tstar, _ = cauchy_time(x, g, lo, up, mem, cp, dtype, skip)
    return tmap(
        lambda x, g, lo, up: jnp.clip(x - tstar.astype(x.dtype) * g, lo, up),
        x,
        g,
        lo,
        up,
    )
