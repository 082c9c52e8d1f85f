"""The dense path for small problems: the exact Cauchy point and a masked solve.

When the parameters number at most 16 (and 4 per stored pair; a fit of a
handful of physical constants, often one of a vmapped batch), the tree is
flattened into one short vector and the quasi-Newton matrix
``B = theta I - W M W^T`` is formed densely (``n x n``). Then

- the generalized Cauchy point is exact: every segment of the projected
  path (from a breakpoint to the next larger one) is examined at once (its
  slope and curvature from ``B``), the first one holding a minimiser wins,
  ties and interior minimisers included;
- the subspace step is one masked solve ``B_FF du_F = -r_F``.

Nothing here sorts, and the small loops are unrolled: in a vmapped batch a
sort, and each trip of a loop, is a kernel of its own, and these were the
dearest ops of a trip after the user's function (256 fits of 6 parameters:
1.13 against 1.02 ms per trip without them).

No loop runs over rounds of a breakpoint walk, so a batch of small fits costs the same
work for every fit, finished or not, and nothing waits on the slowest
bracket search.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._kernels import argsort_short
from ._breakpoints import breakpoints
from ._memory import Memory
from ._tree import leaves, reach, vdot

#: The dense path is taken for at most this many parameters per stored pair,
DENSE_PER_PAIR = 4
#: and at most this many in all: its segment products cost ``n^3``. Measured
#: (a vmapped batch of 256 box QPs, ``m = 10``, 2 quiet CPU cores, with ``B``
#: by BFGS updates), dense against walked: 21 against 38 ms at n = 10, 44
#: against 48 at 16, 62 against 65 at 18, 91 against 79 at 20, 112 against 87
#: at 24, 217 against 116 at 40 (``benchmarks/lbfgsb.py --dense-threshold``).
DENSE_MAX = 16


def use_dense(x: Any, m: int) -> bool:
    """Whether a problem of parameters ``x`` and memory ``m`` takes the dense path."""
    n = sum(int(jnp.size(v)) for v in leaves(x))
    return n <= min(DENSE_PER_PAIR * m, DENSE_MAX)


def flat(tree: Any, like: Any, dtype: Any) -> jax.Array:
    """The leaves of ``tree`` (broadcast like ``like``'s) in one vector."""
    return jnp.concatenate(
        [
            jnp.broadcast_to(jnp.asarray(v, dtype), jnp.shape(w)).reshape(-1)
            for v, w in zip(leaves(tree), leaves(like))
        ]
    )


def unflat(v: jax.Array, like: Any) -> Any:
    """A vector cut back into leaves shaped (and typed) like ``like``'s."""
    out, start = [], 0
    for w in leaves(like):
        size = int(jnp.size(w))
        out.append(v[start : start + size].reshape(jnp.shape(w)).astype(w.dtype))
        start += size
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), out)


def dense_matrix(mem: Memory, dtype: Any) -> jax.Array:
    """``B``, the memory's quasi-Newton matrix, as an ``n x n`` matrix.

    By the BFGS updates of ``theta I`` with the stored pairs, oldest first:
    the same matrix as the compact form ``theta I - W M W^T`` (Byrd, Nocedal
    and Schnabel 1994, theorem 2.2), without forming and inverting the
    ``2m x 2m`` middle matrix. For a vmapped batch of small fits that
    inversion was the dearest part of a step (a batch of 256 fits of 6
    parameters: 185 against 135 ms). A pair whose update would not stay
    positive definite in rounding (``s.B s <= 0``) is passed over.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._memory import new_memory, push
        >>> f32 = jnp.float32
        >>> mem = new_memory(jnp.zeros(2), 2, f32)
        >>> mem = push(mem, jnp.array([1.0, 0.0]), jnp.array([2.0, 0.0]), f32)
        >>> print(dense_matrix(mem, f32))  # theta = 2; the pair fixes B s = y
        [[2. 0.]
         [0. 2.]]
    """
    m = mem.age.shape[0]

    def rows(memory: Any) -> jax.Array:
        return jnp.concatenate(
            [a.reshape(m, -1).astype(dtype) for a in leaves(memory)], axis=1
        )

    order = argsort_short(mem.age)  # empty slots (age -1) first, then oldest
    s, y = rows(mem.s)[order], rows(mem.y)[order]
    filled = mem.age[order] >= 0
    sy = jnp.diagonal(mem.sy)[order].astype(dtype)
    b = mem.theta.astype(dtype) * jnp.eye(s.shape[1], dtype=dtype)
    for k in range(m):
        bs = b @ s[k]
        sbs = s[k] @ bs
        use = filled[k] & (sbs > 0) & (sy[k] > 0)
        new = b - jnp.outer(bs, bs / jnp.where(use, sbs, 1))
        new = new + jnp.outer(y[k], y[k] / jnp.where(use, sy[k], 1))
        b = jnp.where(use, new, b)
    return b


def cauchy_point(x: Any, g: Any, lo: Any, up: Any, t: Any) -> jax.Array:
    """``P(x - t g)``, with every variable whose breakpoint is passed exactly at
    its bound (as scipy's ``cauchy`` fixes it), also when ``t`` is the
    breakpoint itself: ``x - t g`` may round just inside, and the variable
    would count as free."""
    passed = (g != 0) & (breakpoints(x, g, lo, up) <= t)
    return jnp.where(passed, jnp.where(g < 0, up, lo), jnp.clip(x - t * g, lo, up))


def cauchy_time(x: Any, g: Any, lo: Any, up: Any, b: jax.Array) -> jax.Array:
    """``t*``, the first local minimiser of the model on the path ``P(x - t g)``.

    Vectors and the dense ``B``; every segment at once. A segment starts at
    0 or at a breakpoint and ends at the next larger breakpoint, so tied
    breakpoints give the same segment twice, and no sort is needed: the
    segments do not overlap, so the first one holding a minimiser holds the
    smallest.
    """
    tb = breakpoints(x, g, lo, up)
    starts = jnp.concatenate([jnp.zeros((1,), tb.dtype), tb])
    ends = jnp.min(jnp.where(tb[None, :] > starts[:, None], tb[None, :], jnp.inf), 1)
    finite = jnp.isfinite(starts)
    t0 = jnp.where(finite, starts, 0)
    moving = tb[None, :] > t0[:, None]  # (segments, n)
    d = jnp.where(moving, -g[None, :], 0)
    z = -g[None, :] * jnp.minimum(t0[:, None], tb[None, :])
    bd = d @ b
    f1 = d @ g + jnp.sum(bd * z, axis=1)
    f2 = jnp.sum(bd * d, axis=1)
    tz = t0 - f1 / jnp.where(f2 > 0, f2, 1)
    at_start = f1 >= 0
    inside = (f2 > 0) & (tz < ends)
    found = finite & (at_start | inside)
    t_found = jnp.where(found, jnp.where(at_start, t0, tz), jnp.inf)
    # no minimiser: the path ends at its last finite breakpoint
    last = jnp.max(t0)
    return jnp.where(jnp.any(found), jnp.min(t_found), last)


def solve_spd(a: jax.Array, v: jax.Array) -> jax.Array:
    """``a^{-1} v`` for a small SPD matrix ``a``, by Gauss-Jordan sweeps of
    ``[a | v]``, written out (no pivoting: ``a`` is SPD; pivots kept positive).

    One select per sweep, where inverting ``a`` first (`inv_spd`) took five
    ops and then a product. A trip of the benchmark's vmapped batch (256
    fits of 6 parameters) costs the same either way (1.07 and 1.08 ms); the
    batch's slowest fit, rounded differently, now takes 102 trips, not 114
    (121.9 -> 110.3 ms, medians of 31 interleaved; evaluations 15909 ->
    15901).

    Examples:
        >>> import jax.numpy as jnp
        >>> print(solve_spd(jnp.array([[2.0, 1.0], [1.0, 2.0]]), jnp.array([3.0, 3.0])))
        [1. 1.]
    """
    n = a.shape[0]
    tiny = jnp.finfo(a.dtype).tiny ** 0.5
    aug = jnp.concatenate([a, v[:, None].astype(a.dtype)], axis=1)
    rows = jnp.arange(n)[:, None]
    for k in range(n):
        pivot = aug[k] / jnp.maximum(aug[k, k], tiny)
        aug = jnp.where(rows == k, pivot, aug - aug[:, k : k + 1] * pivot)
    return aug[:, n]


def dense_step(
    x: Any, g: Any, lo: Any, up: Any, mem: Memory, dtype: Any
) -> tuple[Any, Any]:
    """``(x_c, x_bar)``: the exact Cauchy point and the subspace minimiser.

    Args:
        x: the iterate, inside the box.
        g: the gradient at ``x``.
        lo: lower bounds.
        up: upper bounds.
        mem: the memory.
        dtype: the dtype of the scalars.

    Returns:
        Trees like ``x``: the Cauchy point, and ``x_bar`` as `subspace`
        defines it (projected into the box when that descends, else the
        step truncated at the box).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._memory import new_memory
        >>> x, g = jnp.array([0.5, 0.5]), jnp.array([1.0, -2.0])
        >>> mem = new_memory(x, 2, jnp.float32)  # empty: B = I
        >>> xc, xbar = dense_step(x, g, 0.0, 0.6, mem, jnp.float32)
        >>> print(xc, xbar)
        [0.  0.6] [0.  0.6]
    """
    xv, gv = flat(x, x, dtype), flat(g, x, dtype)
    lv, uv = flat(lo, x, dtype), flat(up, x, dtype)
    b = dense_matrix(mem, dtype)
    t = cauchy_time(xv, gv, lv, uv, b)
    xc = cauchy_point(xv, gv, lv, uv, t)
    # subspace: B_FF du_F = -(g + B (x_c - x))_F, by a masked SPD solve
    free = (xc > lv) & (xc < uv)
    r = gv + b @ (xc - xv)
    pair = free[:, None] & free[None, :]
    a = jnp.where(pair, b, jnp.eye(b.shape[0], dtype=dtype))
    du = jnp.where(free, -solve_spd(a, jnp.where(free, r, 0)), 0)
    du = jnp.where(jnp.all(jnp.isfinite(du)), du, 0)
    projected = jnp.clip(xc + du, lv, uv)
    descent = vdot(gv, projected - xv, dtype) < 0
    alpha = reach(xc, du, lv, uv, dtype, 1.0)
    truncated = jnp.clip(xc + alpha * du, lv, uv)
    xbar = jnp.where(descent, projected, truncated)
    return unflat(xc, x), unflat(xbar, x)
