"""L-BFGS-B on pytrees: the optax transformation `lbfgsb` and the solver `minimize`.

Byrd, Lu, Nocedal and Zhu (1995), "A limited memory algorithm for bound
constrained optimization", with the correction of Morales and Nocedal
(2011), written with tree operations: every vector of the method (iterate,
gradient, the ``m`` stored pairs) is a pytree shaped like the parameters,
reduced leaf by leaf; only the ``2m x 2m`` matrices of the compact
representation ``B = theta I - W M W^T`` (``W = [Y, theta S]``) are dense.

One iteration, from ``x`` with gradient ``g``:

1. the generalized Cauchy point ``x_c``: the first local minimiser of the
   quadratic model along the projected-gradient path ``P(x - t g)``. The path
   is piecewise linear with a breakpoint per variable; instead of sorting the
   breakpoints, each round probes the model's slope at a few breakpoints at
   once (one pass over the memory) and narrows the bracket that holds the
   first sign change; the slope is linear between breakpoints, so the last
   bracket is solved exactly;
2. subspace minimisation of the model over the variables free at ``x_c``
   (the direct primal method), projected back into the box; if that is not a
   descent direction, the step is truncated at the box instead (Morales and
   Nocedal);
3. a line search along ``d = x_bar - x`` for the strong Wolfe conditions,
   limited to the feasible segment; every trial point is clipped into the box,
   so ``fun`` is never evaluated outside it;
4. the pair ``(s, y)`` is stored unless its curvature ``s^T y`` is not
   positive enough.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import chex  # type: ignore[import-untyped]
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax  # type: ignore[import-untyped]

from ._paths import is_none, pure_view
from ._plan import full_bounds
from ._rounding import land

#: Probes of the model's slope per round of the Cauchy point search.
_PROBES = 8
#: Rounds of the Cauchy point search before it settles for the bracket's left end.
_MAX_ROUNDS = 64
#: Function evaluations per line search.
_MAX_EVALS = 20
#: Line search constants (scipy's L-BFGS-B): sufficient decrease and curvature.
_C1 = 1e-3
_C2 = 0.9
#: Steps in a row without a decrease of the value (at the precision limit,
#: the Armijo test passes with none) after which `minimize` gives up.
_MAX_STALL = 10
#: Largest step the line search tries on an unbounded segment (scipy's).
_BIG = 1e10


# -- tree arithmetic --------------------------------------------------------------


def _leaves(tree: Any) -> list[Any]:
    return jax.tree_util.tree_leaves(tree)


def _map(f: Callable[..., Any], *trees: Any) -> Any:
    return jax.tree_util.tree_map(f, *trees)


def _sum(values: list[Any], dtype: Any) -> jax.Array:
    total = jnp.zeros((), dtype)
    for v in values:
        total = total + v.astype(dtype)
    return total


def _vdot(a: Any, b: Any, dtype: Any) -> jax.Array:
    """``a . b`` over the whole tree, leaf by leaf."""
    return _sum([jnp.sum(x * y) for x, y in zip(_leaves(a), _leaves(b))], dtype)


def _max(values: list[Any], dtype: Any, empty: float) -> jax.Array:
    out = jnp.asarray(empty, dtype)
    for v in values:
        out = jnp.maximum(out, v.astype(dtype))
    return out


def _min(values: list[Any], dtype: Any, empty: float) -> jax.Array:
    out = jnp.asarray(empty, dtype)
    for v in values:
        out = jnp.minimum(out, v.astype(dtype))
    return out


def _inner_axes(leaf: Any) -> list[int]:
    return list(range(1, jnp.ndim(leaf) + 1))


def _replicated(x: Any) -> Any:
    """``out_sharding`` for a small result reduced from leaf ``x``.

    Under an explicit mesh a contraction over a sharded axis must say how its
    result is sharded: replicated. Elsewhere `None` (XLA decides).
    """
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh: Any = getattr(sharding, "mesh", None)
    types = getattr(mesh, "axis_types", ())
    if not any(t == jax.sharding.AxisType.Explicit for t in types):
        return None
    return jax.sharding.NamedSharding(mesh, jax.P())


def _mem_dot(mem: Any, vs: Any, dtype: Any) -> jax.Array:
    """``mem_i . v_k`` for stacked trees: ``mem`` with ``m`` rows, ``vs`` with ``k``."""
    total: Any = None
    for s, v in zip(_leaves(mem), _leaves(vs)):
        axes = list(range(1, jnp.ndim(v)))
        part = jnp.tensordot(s, v, axes=(axes, axes), out_sharding=_replicated(v))
        part = part.astype(dtype)
        total = part if total is None else total + part
    return total


def _mem_combine(coef: jax.Array, mem: Any) -> Any:
    """``sum_i coef_i mem_i``, a tree shaped like one row of ``mem``."""
    return _map(lambda s: jnp.tensordot(coef.astype(s.dtype), s, axes=1), mem)


def _gram(a: Any, b: Any, mask: Any, dtype: Any) -> jax.Array:
    """``a_i^T Z Z^T b_j``: the Gram matrix of two memories over a mask."""
    total: Any = None
    for x, y, z in zip(_leaves(a), _leaves(b), _leaves(mask)):
        axes = _inner_axes(z)
        part = jnp.tensordot(
            jnp.where(z, x, 0), y, axes=(axes, axes), out_sharding=_replicated(z)
        )
        total = part.astype(dtype) if total is None else total + part.astype(dtype)
    return total


# -- the limited memory ------------------------------------------------------------


class _Memory(NamedTuple):
    """The stored pairs, in slots; ``age`` orders them (``-1``: empty slot)."""

    s: Any  # tree, leaves (m, *shape)
    y: Any
    ss: jax.Array  # (m, m): s_i . s_j
    sy: jax.Array  # (m, m): s_i . y_j
    age: jax.Array  # (m,) int
    theta: jax.Array  # scalar


def _new_memory(x: Any, m: int, dtype: Any) -> _Memory:
    # broadcast from the leaf, so the memory keeps the leaf's sharding
    zeros = _map(lambda p: jnp.broadcast_to(jnp.zeros_like(p)[None], (m, *p.shape)), x)
    return _Memory(
        s=zeros,
        y=zeros,
        ss=jnp.zeros((m, m), dtype),
        sy=jnp.zeros((m, m), dtype),
        age=jnp.full((m,), -1, jnp.int32),
        theta=jnp.ones((), dtype),
    )


def _reset(mem: _Memory) -> _Memory:
    return mem._replace(age=jnp.full_like(mem.age, -1), theta=jnp.ones_like(mem.theta))


def _push(mem: _Memory, s: Any, y: Any, dtype: Any) -> _Memory:
    """Store the pair ``(s, y)`` in the oldest slot."""
    slot = jnp.argmin(mem.age)
    age = mem.age.at[slot].set(jnp.max(mem.age) + 1)
    new_s = _map(lambda a, v: a.at[slot].set(v.astype(a.dtype)), mem.s, s)
    new_y = _map(lambda a, v: a.at[slot].set(v.astype(a.dtype)), mem.y, y)
    pair = _map(lambda a, b: jnp.stack([a, b]), s, y)
    st = _mem_dot(new_s, pair, dtype)  # (m, 2): s_i . s, s_i . y
    ys = _mem_dot(new_y, _map(lambda a: a[None], s), dtype)[:, 0]  # y_i . s
    ss = mem.ss.at[slot, :].set(st[:, 0]).at[:, slot].set(st[:, 0])
    sy = mem.sy.at[:, slot].set(st[:, 1]).at[slot, :].set(ys)
    theta = _vdot(y, y, dtype) / st[slot, 1]
    return _Memory(new_s, new_y, ss, sy, age, theta)


def _inv_spd(a: jax.Array) -> jax.Array:
    """The inverse of a small SPD matrix by sweeping every pivot (Gauss-Jordan).

    One loop rather than LAPACK: the matrices are at most ``m x m``, and this
    compiles in a fraction of the time. Pivots are kept positive.
    """
    n = a.shape[0]
    tiny = jnp.finfo(a.dtype).tiny ** 0.5

    def sweep(k: Any, a: jax.Array) -> jax.Array:
        d = jnp.maximum(a[k, k], tiny)
        col, row = a[:, k], a[k, :]
        a = a - jnp.outer(col, row) / d
        return a.at[k, :].set(row / d).at[:, k].set(col / d).at[k, k].set(-1 / d)

    return -jax.lax.fori_loop(0, n, sweep, a)


class _Block(NamedTuple):
    """``[[-A, C^T], [C, E]]``, ready to solve: ``A^{-1}`` and the Schur inverse.

    ``A`` and ``E + C A^{-1} C^T`` are SPD; ``A^{-1}`` may be given as the
    diagonal (a vector) when ``A`` is diagonal.
    """

    ainv: jax.Array  # (m,) or (m, m)
    c: jax.Array
    sinv: jax.Array


def _block(ainv: jax.Array, c: jax.Array, e: jax.Array) -> _Block:
    aic = ainv[:, None] * c.T if ainv.ndim == 1 else ainv @ c.T
    return _Block(ainv, c, _inv_spd(e + c @ aic))


def _block_solve(f: _Block, v: jax.Array) -> jax.Array:
    """``[[-A, C^T], [C, E]]^{-1} v`` (``v``: ``2m`` rows, one or more columns)."""
    m = f.c.shape[0]
    v1, v2 = v[:m], v[m:]

    def a_inv(x: jax.Array) -> jax.Array:
        if f.ainv.ndim == 1:
            return f.ainv.reshape((m,) + (1,) * (x.ndim - 1)) * x
        return f.ainv @ x

    u2 = f.sinv @ (v2 + f.c @ a_inv(v1))
    u1 = a_inv(f.c.T @ u2 - v1)
    return jnp.concatenate([u1, u2], axis=0)


class _Compact(NamedTuple):
    """``W = [Y, theta S]`` and the middle matrix ``M`` of ``B = theta I - W M W^T``.

    ``M^{-1} = [[-D, L^T], [L, theta S^T S]]``; empty slots get identity rows
    (and zeros in every vector), so they take no part.
    """

    d: jax.Array  # (m,) s_i . y_i (1 on empty slots)
    low: jax.Array  # (m, m) L: s_i . y_j, i newer than j
    middle: _Block  # M^{-1}, ready to solve
    valid: jax.Array  # (2m,) bool
    theta: jax.Array


def _compact(mem: _Memory) -> _Compact:
    valid = mem.age >= 0
    theta = mem.theta
    pair = valid[:, None] & valid[None, :]
    d = jnp.where(valid, jnp.diagonal(mem.sy), 1.0)
    newer = (mem.age[:, None] > mem.age[None, :]) & pair
    low = jnp.where(newer, mem.sy, 0.0)
    ss = jnp.where(pair, theta * mem.ss, 0.0) + jnp.diag(jnp.where(valid, 0.0, 1.0))
    valid2 = jnp.concatenate([valid, valid])
    return _Compact(d, low, _block(1 / d, low, ss), valid2, theta)


def _m_times(cp: _Compact, v: jax.Array) -> jax.Array:
    """``M v`` (``v``: ``2m`` rows, one or more columns), zero on empty slots."""
    valid = cp.valid.reshape((-1,) + (1,) * (v.ndim - 1))
    u = _block_solve(cp.middle, jnp.where(valid, v, 0.0))
    return jnp.where(valid, u, 0.0)


def _w_dot(mem: _Memory, cp: _Compact, vs: Any, dtype: Any) -> jax.Array:
    """``W^T v_k`` for a stack of trees: ``(2m, k)``, zero on empty slots."""
    sv = _mem_dot(mem.s, vs, dtype)
    yv = _mem_dot(mem.y, vs, dtype)
    out = jnp.concatenate([yv, cp.theta * sv], axis=0)
    return jnp.where(cp.valid[:, None], out, 0.0)


def _w_times(mem: _Memory, cp: _Compact, u: jax.Array) -> Any:
    """``W u`` as a tree (``u`` of length ``2m``)."""
    m = mem.age.shape[0]
    u = jnp.where(cp.valid, u, 0.0)
    a = _mem_combine(u[:m], mem.y)
    b = _mem_combine(cp.theta * u[m:], mem.s)
    return _map(jnp.add, a, b)


# -- the generalized Cauchy point -----------------------------------------------


def _breakpoints(x: Any, g: Any, lo: Any, up: Any) -> Any:
    """``t_i``, where ``x_i - t g_i`` meets its bound (``inf``: never; 0: blocked)."""

    def leaf(x: Any, g: Any, lo: Any, up: Any) -> Any:
        safe = jnp.where(g == 0, 1, g)
        t = jnp.where(g < 0, (x - up) / safe, (x - lo) / safe)
        t = jnp.where(g == 0, jnp.inf, t)
        return jnp.maximum(t, 0)

    return _map(leaf, x, g, lo, up)


def _probe(
    ts: jax.Array, g: Any, tb: Any, mem: _Memory, cp: _Compact, dtype: Any
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

    big = _map(weights, g, tb)
    wv = _w_dot(mem, cp, big, dtype)
    gg = []
    for gl, tl in zip(_leaves(g), _leaves(tb)):
        tk = ts.reshape((k,) + (1,) * jnp.ndim(gl)).astype(tl.dtype)
        axes = tuple(range(1, jnp.ndim(gl) + 1))
        gg.append(jnp.sum(jnp.where(tl[None] > tk, gl[None] ** 2, 0), axis=axes))
    return _sum(gg, dtype), wv[:, :k].T, wv[:, k:].T


def _cauchy(
    x: Any, g: Any, lo: Any, up: Any, mem: _Memory, cp: _Compact, dtype: Any
) -> Any:
    """The generalized Cauchy point ``x_c = P(x - t* g)``."""
    theta = cp.theta
    tb = _breakpoints(x, g, lo, up)
    zero = jnp.zeros((1,), dtype)
    g0, p0, c0 = _probe(zero, g, tb, mem, cp, dtype)

    def slope(t: Any, gk: Any, p: Any, c: Any) -> tuple[Any, Any]:
        """The model's slope and curvature just after ``t`` (batched on axis 0)."""
        mp = _m_times(cp, p.T).T
        return (
            -(1 - theta * t) * gk - jnp.sum(c * mp, axis=-1),
            theta * gk - jnp.sum(p * mp, axis=-1),
        )

    def cond(carry: tuple) -> Any:
        return ~carry[-2] & (carry[-1] < _MAX_ROUNDS)

    def body(carry: tuple) -> tuple:
        a, ga, pa, ca, b, tstar, done, rounds = carry
        qa, fa2 = slope(a, ga, pa, ca)
        inside = _map(lambda t: (t > a) & (t < b), tb)
        t_lo = _min(
            [
                jnp.min(jnp.where(i, t, jnp.inf))
                for i, t in zip(_leaves(inside), _leaves(tb))
            ],
            dtype,
            math.inf,
        )
        t_hi = _max(
            [
                jnp.max(jnp.where(i, t, -jnp.inf))
                for i, t in zip(_leaves(inside), _leaves(tb))
            ],
            dtype,
            -math.inf,
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
        frac = jnp.linspace(0.0, 1.0, _PROBES, dtype=dtype)
        ts = jnp.where(finish, a, t_lo * span**frac)
        # (a pass over the memory: skipped when this round already finished)
        m2 = 2 * mem.age.shape[0]
        gk, pk, ck = jax.lax.cond(
            finish,
            lambda: (
                jnp.zeros((_PROBES,), dtype),
                jnp.zeros((_PROBES, m2), dtype),
                jnp.zeros((_PROBES, m2), dtype),
            ),
            lambda: _probe(ts, g, tb, mem, cp, dtype),
        )
        qk, _ = slope(ts, gk, pk, ck)
        up_hill = qk >= 0
        first = jnp.argmax(up_hill)
        some = jnp.any(up_hill)
        jump = ~finish & some & (first == 0)  # minimiser at the jump at t_lo
        done_new = finish | jump
        t_fin = jnp.where(jump, t_lo, t_fin)
        # narrow the bracket
        left = jnp.where(some, jnp.maximum(first - 1, 0), _PROBES - 1)
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
        ~(q0 < 0),
        jnp.zeros((), jnp.int32),
    )
    a, _, _, _, _, tstar, done, _ = jax.lax.while_loop(cond, body, init)
    tstar = jnp.where(done, tstar, a)
    return _map(
        lambda x, g, lo, up: jnp.clip(x - tstar.astype(x.dtype) * g, lo, up),
        x,
        g,
        lo,
        up,
    )


# -- subspace minimisation -----------------------------------------------------


def _subspace(
    x: Any, g: Any, xc: Any, lo: Any, up: Any, mem: _Memory, cp: _Compact, dtype: Any
) -> Any:
    """``x_bar``: the model minimised over the variables free at ``x_c``.

    The direct primal method of Byrd et al. (section 5.1), then projected into
    the box; if the projected point is not a descent direction from ``x``, the
    unprojected step is truncated at the box instead (Morales and Nocedal).
    """
    theta = cp.theta
    free = _map(lambda v, lo, up: (v > lo) & (v < up), xc, lo, up)
    zc = _map(jnp.subtract, xc, x)
    stack = _map(lambda a: a[None], zc)
    c = _w_dot(mem, cp, stack, dtype)[:, 0]
    wmc = _w_times(mem, cp, _m_times(cp, c))
    r = _map(
        lambda f, g, z, w: jnp.where(f, g + theta.astype(g.dtype) * z - w, 0),
        free,
        g,
        zc,
        wmc,
    )
    v = _w_dot(mem, cp, _map(lambda a: a[None], r), dtype)[:, 0]
    # (M^{-1} - W^T Z Z^T W / theta) u = v, as a block system: the free
    # variables' Gram matrices of Y and S, the active ones' of S
    m = mem.age.shape[0]
    valid = cp.valid[:m]
    pair = valid[:, None] & valid[None, :]
    active = _map(jnp.logical_not, free)
    yy = jnp.where(pair, _gram(mem.y, mem.y, free, dtype), 0.0)
    sy = jnp.where(pair, _gram(mem.s, mem.y, free, dtype), 0.0)
    ss = jnp.where(pair, _gram(mem.s, mem.s, active, dtype), 0.0)
    ss = theta * ss + jnp.diag(jnp.where(valid, 0.0, 1.0))
    system = _block(_inv_spd(jnp.diag(cp.d) + yy / theta), cp.low - sy, ss)
    u = jnp.where(cp.valid, _block_solve(system, jnp.where(cp.valid, v, 0.0)), 0.0)
    u = jnp.where(jnp.all(jnp.isfinite(u)), u, 0.0)
    wu = _w_times(mem, cp, u)
    du = _map(
        lambda f, r, w: jnp.where(
            f, -r / theta.astype(r.dtype) - w / (theta**2).astype(r.dtype), 0
        ),
        free,
        r,
        wu,
    )
    projected = _map(lambda v, d, lo, up: jnp.clip(v + d, lo, up), xc, du, lo, up)
    descent = _vdot(g, _map(jnp.subtract, projected, x), dtype) < 0

    def reach(v: Any, d: Any, lo: Any, up: Any) -> Any:
        safe = jnp.where(d == 0, 1, d)
        a = jnp.where(d > 0, (up - v) / safe, jnp.where(d < 0, (lo - v) / safe, 1))
        return jnp.min(jnp.clip(a, 0, 1), initial=1.0)

    alpha = _min([reach(*t) for t in zip(*map(_leaves, (xc, du, lo, up)))], dtype, 1.0)
    truncated = _map(
        lambda v, d, lo, up: jnp.clip(v + alpha.astype(v.dtype) * d, lo, up),
        xc,
        du,
        lo,
        up,
    )
    return _map(lambda a, b: jnp.where(descent, a, b), projected, truncated)


# -- the line search -------------------------------------------------------------


def _cubic_min(a: Any, fa: Any, da: Any, b: Any, fb: Any, db: Any) -> Any:
    """The minimiser of the cubic through two points with slopes (``inf`` if none).

    NaN-free (also for equal or non-finite points), for ``jax_debug_nans``.
    """
    ok = jnp.isfinite(fa) & jnp.isfinite(fb) & jnp.isfinite(da) & jnp.isfinite(db)
    ok = ok & (a != b)
    fa, fb, da, db = (jnp.where(ok, v, 0) for v in (fa, fb, da, db))
    d1 = da + db - 3 * (fa - fb) / jnp.where(ok, a - b, 1)
    disc = d1**2 - da * db
    ok = ok & (disc >= 0)
    d2 = jnp.sign(b - a) * jnp.sqrt(jnp.where(ok, disc, 0))
    den = db - da + 2 * d2
    ok = ok & (den != 0)
    t = b - (b - a) * (db + d2 - d1) / jnp.where(ok, den, 1)
    return jnp.where(ok, t, jnp.inf)


class _Search(NamedTuple):
    evals: jax.Array
    lam: jax.Array  # next trial
    lo: jax.Array  # best step with sufficient decrease (0: none yet)
    f_lo: jax.Array
    d_lo: jax.Array
    hi: jax.Array  # the other end of the bracket, once bracketed
    f_hi: jax.Array
    d_hi: jax.Array
    bracketed: jax.Array
    done: jax.Array
    aux: Any  # (x, g, extra) at ``lo``


def _line_search(
    phi: Callable[[Any], tuple[Any, Any, Any]],
    f0: Any,
    d0: Any,
    lam0: Any,
    lam_max: Any,
    aux0: Any,
    dtype: Any,
) -> tuple[Any, Any, Any, Any]:
    """A step ``lam`` in ``(0, lam_max]`` meeting the strong Wolfe conditions.

    ``phi(lam) -> (f, slope, aux)``. Returns ``(lam, f, aux, evaluations)``;
    ``lam`` is 0 when no step with sufficient decrease was found. Non-finite
    values count as too long a step.
    """

    def cond(s: _Search) -> Any:
        return ~s.done & (s.evals < _MAX_EVALS)

    def body(s: _Search) -> _Search:
        lam = s.lam
        f, dphi, aux = phi(lam)
        f = f.astype(dtype)
        dphi = dphi.astype(dtype)
        finite = jnp.isfinite(f) & jnp.isfinite(dphi)
        too_far = ~finite | (f > f0 + _C1 * lam * d0) | (f >= s.f_lo) & (s.lo > 0)
        flat = jnp.abs(dphi) <= -_C2 * d0
        accept = ~too_far & (flat | (~s.bracketed & (dphi < 0) & (lam >= lam_max)))
        # update the bracket
        to_hi = too_far
        swap = ~too_far & ~flat & s.bracketed & (dphi * (s.hi - s.lo) >= 0)
        swap = swap | (~too_far & ~flat & ~s.bracketed & (dphi >= 0))
        new_lo = ~too_far
        hi = jnp.where(to_hi, lam, jnp.where(swap, s.lo, s.hi))
        f_hi = jnp.where(to_hi, f, jnp.where(swap, s.f_lo, s.f_hi))
        d_hi = jnp.where(to_hi, dphi, jnp.where(swap, s.d_lo, s.d_hi))
        bracketed = s.bracketed | to_hi | swap
        lo = jnp.where(new_lo, lam, s.lo)
        f_lo = jnp.where(new_lo, f, s.f_lo)
        d_lo = jnp.where(new_lo, dphi, s.d_lo)
        aux = _map(lambda a, b: jnp.where(new_lo, a, b), aux, s.aux)
        # the next trial
        width = jnp.abs(hi - lo)
        left = jnp.minimum(lo, hi) + 0.1 * width
        right = jnp.maximum(lo, hi) - 0.1 * width
        cubic = _cubic_min(lo, f_lo, d_lo, hi, f_hi, d_hi)
        inner = jnp.where(
            jnp.isfinite(cubic) & (cubic >= left) & (cubic <= right),
            cubic,
            0.5 * (lo + hi),
        )
        grow = _cubic_min(s.lo, s.f_lo, s.d_lo, lam, f, dphi)
        grow = jnp.where(
            jnp.isfinite(grow) & (grow > lam),
            jnp.clip(grow, 1.1 * lam, 4 * lam),
            4 * lam,
        )
        nxt = jnp.where(bracketed, inner, jnp.minimum(grow, lam_max))
        tiny = bracketed & (width <= 1e-10 * jnp.maximum(lo, hi))
        done = accept | tiny
        return _Search(
            s.evals + 1, nxt, lo, f_lo, d_lo, hi, f_hi, d_hi, bracketed, done, aux
        )

    zero = jnp.zeros((), dtype)
    init = _Search(
        evals=jnp.zeros((), jnp.int32),
        lam=jnp.minimum(lam0, lam_max).astype(dtype),
        lo=zero,
        f_lo=f0,
        d_lo=d0,
        hi=zero,
        f_hi=f0,
        d_hi=d0,
        bracketed=jnp.zeros((), bool),
        done=jnp.zeros((), bool),
        aux=aux0,
    )
    s = jax.lax.while_loop(cond, body, init)
    return s.lo, s.f_lo, s.aux, s.evals


# -- points the optimizer takes ---------------------------------------------------


def _land(base: Any, target: Any, lo: Any, up: Any) -> Any:
    """An update ``u`` with ``base + u`` (as `optax.apply_updates` rounds it) inside.

    ``target`` is in the box: `_clip.land`, which lands on it exactly when
    an update of ``base``'s dtype can, and inside whenever ``base`` is.
    """
    return land(base, target, lo, up, base.dtype)


# -- one iteration -------------------------------------------------------------


class _Point(NamedTuple):
    x: Any
    f: jax.Array
    g: Any


def _iteration(
    value_and_grad: Callable[[Any], tuple[Any, Any]],
    here: _Point,
    base: Any | None,
    lo: Any,
    up: Any,
    mem: _Memory,
    first: Any,
    dtype: Any,
) -> tuple[_Point, Any, _Memory, Any, Any]:
    """One L-BFGS-B iteration from ``here``.

    ``base`` is the point updates are relative to (the optax params), or
    `None`. Returns ``(new point, update or None, memory, evaluations,
    line search succeeded)``; on failure the point is ``here`` and the
    memory is emptied.
    """
    x, f, g = here
    cp = _compact(mem)
    xc = _cauchy(x, g, lo, up, mem, cp, dtype)
    xbar = _subspace(x, g, xc, lo, up, mem, cp, dtype)
    d = _map(jnp.subtract, xbar, x)
    slope0 = _vdot(g, d, dtype)
    # the feasible segment and the first trial (as scipy's lnsrlb)
    bounded = _max(
        [jnp.any(jnp.isfinite(a)) for a in _leaves(lo) + _leaves(up)], jnp.bool_, 0
    )
    boxed = _min(
        [jnp.all(jnp.isfinite(a)) for a in _leaves(lo) + _leaves(up)], jnp.bool_, 1
    )

    def reach(v: Any, d: Any, lo: Any, up: Any) -> Any:
        safe = jnp.where(d == 0, 1, d)
        a = jnp.where(
            d > 0, (up - v) / safe, jnp.where(d < 0, (lo - v) / safe, jnp.inf)
        )
        return jnp.min(a, initial=jnp.inf)

    to_wall = _min([reach(*t) for t in zip(*map(_leaves, (x, d, lo, up)))], dtype, _BIG)
    lam_max = jnp.where(bounded, jnp.where(first, 1.0, jnp.maximum(to_wall, 1.0)), _BIG)
    lam_max = jnp.minimum(lam_max, _BIG).astype(dtype)
    dnorm = jnp.sqrt(_vdot(d, d, dtype))
    lam0 = jnp.where(first & ~boxed, jnp.minimum(1 / dnorm, lam_max), 1.0)

    def point(lam: Any) -> tuple[Any, Any]:
        target = _map(
            lambda x, d, lo, up: jnp.clip(x + lam.astype(x.dtype) * d, lo, up),
            x,
            d,
            lo,
            up,
        )
        if base is None:
            return target, None
        u = _map(_land, base, target, lo, up)
        return _map(lambda b, u: (b + u).astype(b.dtype), base, u), u

    def phi(lam: Any) -> tuple[Any, Any, Any]:
        xt, u = point(lam)
        ft, gt = value_and_grad(xt)
        return ft, _vdot(gt, d, dtype), (xt, gt, u)

    aux0 = (x, g, point(jnp.zeros((), dtype))[1])
    lam, f_new, (x_new, g_new, u), evals = _line_search(
        phi, f.astype(dtype), slope0, lam0, lam_max, aux0, dtype
    )
    ok = (lam > 0) & (slope0 < 0)
    s = _map(jnp.subtract, x_new, x)
    y = _map(jnp.subtract, g_new, g)
    sy = _vdot(s, y, dtype)
    eps = jnp.finfo(dtype).eps
    keep = ok & (sy > eps * -_vdot(g, s, dtype))
    pushed = _push(mem, s, y, dtype)
    mem_new = jax.tree_util.tree_map(
        lambda a, b, c: jnp.where(keep, a, jnp.where(ok, b, c)),
        pushed,
        mem,
        _reset(mem),
    )
    new = _Point(x_new, f_new.astype(f.dtype), g_new)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, here)
    return new, u, mem_new, evals, ok


def _pg_norm(x: Any, g: Any, lo: Any, up: Any, dtype: Any) -> jax.Array:
    """The infinity norm of the projected gradient ``P(x - g) - x``."""
    parts = _map(
        lambda x, g, lo, up: jnp.max(jnp.abs(jnp.clip(x - g, lo, up) - x), initial=0),
        x,
        g,
        lo,
        up,
    )
    return _max(_leaves(parts), dtype, 0.0)


# -- params, their bounds, and the parameter leaves -----------------------------------


class _Split(NamedTuple):
    """Params split into the parameter leaves and the rest."""

    x: Any  # parameter leaves as arrays, None elsewhere
    lo: Any
    up: Any
    rest: list[Any]  # flat leaves, None at parameters
    treedef: Any
    restore: Callable[[Any], Any]
    dtype: Any


def _split(params: Any, lower: Any, upper: Any) -> _Split:
    lo, up = full_bounds(params, lower, upper)
    pure, restore = pure_view(params)
    leaves, treedef_ = jax.tree_util.tree_flatten(pure, is_leaf=is_none)
    treedef: Any = treedef_
    los = treedef.flatten_up_to(lo)
    ups = treedef.flatten_up_to(up)
    xs: list[Any] = []
    rest: list[Any] = []
    lo_out: list[Any] = []
    up_out: list[Any] = []
    for p, a, b in zip(leaves, los, ups):
        if a is None:
            xs.append(None)
            rest.append(p)
            lo_out.append(None)
            up_out.append(None)
            continue
        a = jnp.asarray(a)
        b = jnp.asarray(b)
        xs.append(jnp.asarray(p))
        rest.append(None)
        # a fixed parameter whose value is not representable rounds to lo > up
        lo_out.append(jnp.minimum(a, b))
        up_out.append(b)
    dts = [x.dtype for x in xs if x is not None]
    dtype = jnp.result_type(jnp.float32, *dts) if dts else jnp.float32
    unflat = functools.partial(jax.tree_util.tree_unflatten, treedef)
    return _Split(
        unflat(xs), unflat(lo_out), unflat(up_out), rest, treedef, restore, dtype
    )


def _join(sp: _Split, x: Any) -> Any:
    flat = sp.treedef.flatten_up_to(x)
    merged = [r if v is None else v for v, r in zip(flat, sp.rest)]
    return sp.restore(jax.tree_util.tree_unflatten(sp.treedef, merged))


def _clip_tree(x: Any, lo: Any, up: Any) -> Any:
    return _map(jnp.clip, x, lo, up)


# -- minimize -------------------------------------------------------------------


class MinimizeResult(NamedTuple):
    """What `minimize` returns.

    Attributes:
        params: the solution, a tree like the params given (non-parameter
            leaves as they were).
        value: ``fun(params)``.
        num_steps: iterations taken.
        num_fun_evals: evaluations of ``fun`` (each with its gradient), the
            line searches' included.
        converged: whether the projected-gradient infinity norm reached
            ``tol`` (or the relative decrease ``ftol``, if given); `False` after
            ``max_steps``, on a NaN value, or when the line search failed
            twice in a row.
    """

    params: chex.ArrayTree
    value: chex.Array
    num_steps: chex.Array
    num_fun_evals: chex.Array
    converged: chex.Array


class _Loop(NamedTuple):
    here: _Point
    mem: _Memory
    steps: jax.Array
    evals: jax.Array
    done: jax.Array
    converged: jax.Array
    stall: jax.Array


@eqx.filter_jit
def _solve(
    fun: Callable[[Any], Any],
    sp: _Split,
    max_steps: Any,
    tol: Any,
    ftol: Any,
    memory_size: int,
) -> tuple[Any, Any, Any, Any, Any]:
    dtype = sp.dtype
    lo, up = sp.lo, sp.up

    def value_and_grad(x: Any) -> tuple[Any, Any]:
        return jax.value_and_grad(lambda x: fun(_join(sp, x)))(x)

    x0 = _clip_tree(sp.x, lo, up)
    f0, g0 = value_and_grad(x0)
    here = _Point(x0, f0, g0)
    pg = _pg_norm(x0, g0, lo, up, dtype)
    nan = ~jnp.isfinite(f0)
    init = _Loop(
        here=here,
        mem=_new_memory(x0, memory_size, dtype),
        steps=jnp.zeros((), jnp.int32),
        evals=jnp.ones((), jnp.int32),
        done=nan | (pg <= tol),
        converged=~nan & (pg <= tol),
        stall=jnp.zeros((), jnp.int32),
    )

    def cond(s: _Loop) -> Any:
        return ~s.done & (s.steps < max_steps)

    def body(s: _Loop) -> _Loop:
        empty = jnp.all(s.mem.age < 0)
        new, _, mem, evals, ok = _iteration(
            value_and_grad, s.here, None, lo, up, s.mem, s.steps == 0, dtype
        )
        pg = _pg_norm(new.x, new.g, lo, up, dtype)
        f_old = s.here.f.astype(dtype)
        f_new = new.f.astype(dtype)
        scale = jnp.maximum(jnp.maximum(jnp.abs(f_old), jnp.abs(f_new)), 1.0)
        # the relative decrease counts when the step was the full quasi-Newton
        # one: after backtracking, a small decrease says the direction was poor
        full = evals == 1
        small = ok & full & (ftol > 0) & (f_old - f_new <= ftol * scale)
        converged = ok & ((pg <= tol) | small)
        failed = ~ok & empty  # a second failure, with no memory left to drop
        stall = jnp.where(f_new < f_old, 0, s.stall + 1)
        return _Loop(
            here=new,
            mem=mem,
            steps=s.steps + 1,
            evals=s.evals + evals,
            done=converged | failed | (stall >= _MAX_STALL),
            converged=converged,
            stall=stall,
        )

    out = jax.lax.while_loop(cond, body, init)
    return out.here.x, out.here.f, out.steps, out.evals, out.converged


def minimize(
    fun: Callable[[chex.ArrayTree], chex.Array],
    params: chex.ArrayTree,
    lower: chex.ArrayTree,
    upper: chex.ArrayTree,
    *,
    max_steps: int = 1000,
    tol: float = 1e-6,
    memory_size: int = 10,
    ftol: float = 0.0,
) -> MinimizeResult:
    """Minimise ``fun`` over the box ``[lower, upper]`` with L-BFGS-B.

    Byrd, Lu, Nocedal and Zhu's L-BFGS-B with the Morales–Nocedal correction,
    on the params' own pytree (no flattening into one vector): generalized
    Cauchy point, subspace minimisation over the free variables, a Wolfe line
    search limited to the box. ``fun`` is only ever evaluated inside the
    box. The whole solve is one `jax.lax.while_loop`, so `minimize` works
    under `jax.jit` and `jax.vmap`: a batch of problems, each with its own
    data and bounds, is one ``jax.vmap`` (bounds may be traced arrays or
    scalars). Eager calls compile once per ``fun`` (the same object) and
    tree structure; bound values are arguments.

    Only leaves holding real floating arrays are optimised; other leaves
    (ints, bools, complex, Python floats, functions, `None` holes) are passed
    to ``fun`` unchanged and returned as they are. A start outside the box
    is first projected into it. Bounds may be infinite on either side, or
    equal (a fixed parameter: it stays at that value).

    Args:
        fun: the objective, ``fun(params) -> scalar``, differentiable.
        params: the starting point, any pytree.
        lower: lower bound tree (see `make_bounds`): same structure as
            ``params``, leaves a float, `None` or an array broadcastable to the
            parameter.
        upper: upper bound tree, likewise.
        max_steps: the most iterations.
        tol: stop when the infinity norm of the projected gradient
            ``P(x - grad) - x`` is at most ``tol``.
        memory_size: the number ``m`` of stored correction pairs.
        ftol: also stop when the relative decrease of the value in one step
            ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1)`` is at most ``ftol``
            (scipy's ``ftol``; 0, the default, turns the test off).

    Returns:
        A `MinimizeResult` ``(params, value, num_steps, num_fun_evals,
        converged)``; a NaN value at the start stops at once with
        ``converged=False``.

    Raises:
        ValueError: if the bound trees do not match the params' structure, a
            bound is NaN, or lower > upper somewhere (naming the path).
        TypeError: if a bound is malformed, or finite on a leaf that is not a
            parameter (naming the path).

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> def fun(p):
        ...     return jnp.sum((p["tau"] - 3.0) ** 2) + (p["w"] + 1.0) ** 2
        >>> params = {"tau": jnp.array([1.0, 2.0]), "w": jnp.array(0.0)}
        >>> lower, upper = jb.make_bounds(params)
        >>> upper["tau"], lower["w"] = 2.5, 0.0
        >>> result = jb.minimize(fun, params, lower, upper)
        >>> print(result.params["tau"], result.params["w"], result.converged)
        [2.5 2.5] 0.0 True
    """
    if memory_size < 1:
        raise ValueError(f"memory_size must be at least 1, got {memory_size}")
    sp = _split(params, lower, upper)
    if not _leaves(sp.x):
        value = fun(params)
        zero = jnp.zeros((), jnp.int32)
        return MinimizeResult(params, value, zero, zero + 1, jnp.isfinite(value))
    x, value, steps, evals, converged = _solve(
        fun,
        sp,
        jnp.asarray(max_steps, jnp.int32),
        jnp.asarray(tol, sp.dtype),
        jnp.asarray(ftol, sp.dtype),
        int(memory_size),
    )
    return MinimizeResult(_join(sp, x), value, steps, evals, converged)


# -- the optax transformation -------------------------------------------------------


class LbfgsbState(NamedTuple):
    """State of `lbfgsb`.

    ``value`` and ``grad`` are the objective and its gradient at the params
    after the last update (read by `optax.value_and_grad_from_state`; ``inf``
    before the first update).
    """

    count: chex.Array
    memory: Any
    value: chex.Array
    grad: chex.ArrayTree


def lbfgsb(
    lower: chex.ArrayTree, upper: chex.ArrayTree, *, memory_size: int = 10
) -> optax.GradientTransformationExtraArgs:
    """L-BFGS-B as an optax transformation, in `optax.lbfgs`'s calling convention.

    Each ``update(grad, state, params, value=..., grad=..., value_fn=...)``
    is one full L-BFGS-B iteration (Cauchy point, subspace step, and a line
    search that calls ``value_fn``, see `minimize`), and the returned updates
    move the params to the accepted point:
    ``optax.apply_updates(params, updates)`` is inside the box, exactly
    (each update is chosen so that the rounded sum lands where the line
    search evaluated). The state caches the value and gradient at that
    point, so `optax.value_and_grad_from_state` reuses them. Extra keyword
    arguments of ``update`` are passed to ``value_fn``. Params that start
    outside the box are projected in first (then ``value_fn`` is evaluated
    once more, at the projected point). If the line search fails, the
    update is zero (or the projection) and the memory is emptied.

    Only real floating leaves are optimised; other array leaves get zero
    updates, other leaves `None`. Use it alone, not chained after other
    transformations (it computes its own step).

    Args:
        lower: lower bound tree, shaped like the params (see `make_bounds`).
        upper: upper bound tree.
        memory_size: the number ``m`` of stored correction pairs.

    Returns:
        An `optax.GradientTransformationExtraArgs`.

    Raises:
        ValueError: (on ``init`` / ``update``) if the bound trees do not match
            the params, a bound is NaN or lower > upper, naming the path.
        TypeError: likewise for malformed bounds.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> import jaxbounds as jb
        >>> def f(x):
        ...     return jnp.sum((x - 2.0) ** 2)
        >>> params = jnp.array([0.0, 1.0, 3.0])
        >>> solver = jb.lbfgsb(0.0, 1.5)
        >>> state = solver.init(params)
        >>> value_and_grad = optax.value_and_grad_from_state(f)
        >>> for _ in range(3):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = solver.update(
        ...         grad, state, params, value=value, grad=grad, value_fn=f
        ...     )
        ...     params = optax.apply_updates(params, updates)
        >>> print(params)
        [1.5 1.5 1.5]
    """
    if memory_size < 1:
        raise ValueError(f"memory_size must be at least 1, got {memory_size}")

    def init_fn(params: chex.ArrayTree) -> LbfgsbState:
        sp = _split(params, lower, upper)
        zeros = _map(jnp.zeros_like, sp.x)
        return LbfgsbState(
            count=jnp.zeros((), jnp.int32),
            memory=_new_memory(sp.x, memory_size, sp.dtype),
            value=jnp.asarray(jnp.inf, sp.dtype),
            grad=_grads_like(sp, zeros),
        )

    def update_fn(
        updates: chex.ArrayTree,
        state: LbfgsbState,
        params: chex.ArrayTree | None = None,
        *,
        value: chex.Array | None = None,
        grad: chex.ArrayTree | None = None,
        value_fn: Callable[..., chex.Array] | None = None,
        **extra_args: Any,
    ) -> tuple[chex.ArrayTree, LbfgsbState]:
        if params is None or value_fn is None:
            raise ValueError("lbfgsb needs params and value_fn in update")
        sp = _split(params, lower, upper)
        dtype = sp.dtype
        fn_kwargs = _kwargs_for(value_fn, extra_args)

        def value_and_grad(x: Any) -> tuple[Any, Any]:
            return jax.value_and_grad(lambda x: value_fn(_join(sp, x), **fn_kwargs))(x)

        grad = updates if grad is None else grad
        g_in = _param_part(sp, grad)
        # the start, projected into the box the way apply_updates would land it
        u0 = _map(_land, sp.x, _clip_tree(sp.x, sp.lo, sp.up), sp.lo, sp.up)
        x0 = _map(lambda b, u: (b + u).astype(b.dtype), sp.x, u0)
        x0 = _clip_tree(x0, sp.lo, sp.up)
        inside = _min(
            [jnp.all(a == b) for a, b in zip(_leaves(x0), _leaves(sp.x))], jnp.bool_, 1
        )
        if value is None:
            f_in, g_in = value_and_grad(x0)
        else:
            f_in = jnp.asarray(value)

            def recompute() -> tuple[Any, Any]:
                fv, gv = value_and_grad(x0)
                return fv.astype(f_in.dtype), _map(
                    lambda a, b: a.astype(b.dtype), gv, g_in
                )

            f_in, g_in = jax.lax.cond(inside, lambda: (f_in, g_in), recompute)
        here = _Point(x0, f_in, g_in)
        new, u, mem, _, _ = _iteration(
            value_and_grad,
            here,
            sp.x,
            sp.lo,
            sp.up,
            state.memory,
            state.count == 0,
            dtype,
        )
        u = _map(_land, sp.x, new.x, sp.lo, sp.up)
        new_state = LbfgsbState(
            count=optax.safe_increment(state.count),
            memory=mem,
            value=jnp.asarray(new.f, state.value.dtype),
            grad=_grads_like(sp, new.g),
        )
        return _updates_like(sp, u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _kwargs_for(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fn`` accepts (as optax's line searches pick them)."""
    if not kwargs:
        return {}
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return dict(kwargs)
    unknown = sorted(set(kwargs) - set(sig.parameters))
    if unknown:
        raise TypeError(
            "lbfgsb.update got keyword arguments that value_fn does not take: "
            f"{unknown}"
        )
    return dict(kwargs)


def _param_part(sp: _Split, tree: Any) -> Any:
    """The parameter leaves of a tree shaped like the params, as arrays."""
    flat = sp.treedef.flatten_up_to(tree)
    xs = sp.treedef.flatten_up_to(sp.x)
    out = [None if x is None else jnp.asarray(v, x.dtype) for x, v in zip(xs, flat)]
    return jax.tree_util.tree_unflatten(sp.treedef, out)


def _grads_like(sp: _Split, g: Any) -> Any:
    """A gradient tree shaped like the params: `None` at non-parameters."""
    return sp.restore(g)


def _updates_like(sp: _Split, u: Any) -> Any:
    """Updates shaped like the params: zeros at other arrays, `None` elsewhere."""
    flat = sp.treedef.flatten_up_to(u)
    out = []
    for v, r in zip(flat, sp.rest):
        if v is not None:
            out.append(v)
        elif isinstance(r, (jax.Array, np.ndarray)):
            out.append(jnp.zeros_like(r))
        else:
            out.append(None)
    return sp.restore(jax.tree_util.tree_unflatten(sp.treedef, out))
