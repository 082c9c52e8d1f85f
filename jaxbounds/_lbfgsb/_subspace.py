"""Subspace minimisation: the model minimised over the variables free at ``x_c``.

The direct primal method of Byrd et al. (1995, section 5.1): with ``Z`` the
free variables at the Cauchy point and ``r = Z^T (g + B (x_c - x))`` the
reduced gradient there, the step is ``du = -(Z^T B Z)^{-1} r``, found by
the Sherman-Morrison-Woodbury identity from small ``2m x 2m`` systems
(the free variables' Gram matrices of ``Y`` and ``S``). Then it is
projected back into the box; if the projected point is not a descent
direction from ``x``, the unprojected step is truncated at the box instead
(Morales and Nocedal 2011).

The Gram matrices over the free variables are kept from step to step in
their own state, as scipy's ``formk`` keeps them
(`jaxbounds._lbfgsb._kept`).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ._kept import Kept, sync
from ._memory import (
    Compact,
    Memory,
    block,
    block_solve,
    inv_spd,
    m_times,
    w_dot,
    w_times,
)
from ._tree import reach, tmap, vdot


def free_step(
    x: Any,
    g: Any,
    xc: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    kept: Kept,
    cp: Compact,
    dtype: Any,
    c: Any = None,
) -> tuple[Any, Any, Kept]:
    """The Newton step of the model over the variables free at ``x_c``.

    ``c = W^T (x_c - x)`` is taken from the Cauchy walk when given (see
    `subspace`), else computed (one pass over the memory).

    Two passes over the memory, where the textbook form (and scipy's
    ``cmprlb`` and ``subsm``) takes three. The reduced gradient is
    ``r = q - Z W M c`` with ``q = Z (g + theta z)``. Its product with the
    memory, ``W^T r = W^T q - (W^T Z W) M c``, needs only ``W^T q`` (from
    `sync`'s pass) and the free variables' Gram matrices, which `sync` keeps
    anyway (``S^T Z S`` is ``S^T S`` less the kept active part). And the
    step ``du = Z (-r / theta - W u / theta^2)`` is
    ``Z (-q / theta + W (M c / theta - u / theta^2))``: one product with
    ``W``, not one for ``W M c`` and one for ``W u``. At 1M variables
    (``m = 10``) a late deconvolution step took 113 -> 103 ms, an early
    obstacle step 101 -> 93 ms (medians of 15 interleaved), with the same
    evaluations on every problem of `benchmarks/trace_lbfgsb.py`.

    Returns:
        ``(free, du, kept)``: the mask of free variables (strictly inside
        at ``x_c``), the step ``du = -(Z^T B Z)^{-1} Z^T (g + B (x_c - x))``,
        zero on the others, and the free-set products kept at this mask
        (`sync`).
    """
    theta = cp.theta
    free = tmap(lambda v, lo, up: (v > lo) & (v < up), xc, lo, up)
    zc = tmap(jnp.subtract, xc, x)
    if c is None:
        c = w_dot(mem, cp, [zc], dtype)[:, 0]
    mc = m_times(cp, c)
    # r = Z (g + theta z - W M c) = q - Z W M c; no pass forms W M c: W^T r
    # is W^T q less the free Gram matrices times M c, and du's two products
    # with W are one (see the docstring)
    q = tmap(
        lambda f, g, z: jnp.where(f, g + theta.astype(g.dtype) * z, 0), free, g, zc
    )
    # (M^{-1} - W^T Z Z^T W / theta) u = v, as a block system: the free
    # variables' Gram matrices of Y and S, the active ones' of S; and
    # W^T q from the same passes over the memory
    m = mem.age.shape[0]
    valid = cp.valid[:m]
    pair = valid[:, None] & valid[None, :]
    kept, (yy, sy, ss), (yq, sq) = sync(mem, kept, free, q, dtype)
    yy = jnp.where(pair, yy, 0.0)
    sy = jnp.where(pair, sy, 0.0)
    ss = jnp.where(pair, ss, 0.0)
    ss_free = jnp.where(pair, mem.ss, 0.0) - ss  # S^T Z Z^T S
    a, b = mc[:m], mc[m:]
    wzw_mc = jnp.concatenate(
        [yy @ a + theta * (sy.T @ b), theta * (sy @ a + theta * (ss_free @ b))]
    )
    v = jnp.where(cp.valid, jnp.concatenate([yq, theta * sq]) - wzw_mc, 0.0)
    ss = theta * ss + jnp.diag(jnp.where(valid, 0.0, 1.0))
    system = block(inv_spd(jnp.diag(cp.d) + yy / theta), cp.low - sy, ss)
    u = jnp.where(cp.valid, block_solve(system, v), 0.0)
    u = jnp.where(jnp.all(jnp.isfinite(u)), u, 0.0)
    w = w_times(mem, cp, mc / theta - u / theta**2, g)
    du = tmap(
        lambda f, q, w: jnp.where(f, w - q / theta.astype(q.dtype), 0), free, q, w
    )
    return free, du, kept


def subspace(
    x: Any,
    g: Any,
    xc: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    kept: Kept,
    cp: Compact,
    dtype: Any,
    c: Any = None,
) -> tuple[Any, Kept]:
    """``x_bar``: the subspace minimiser from ``x_c``, inside the box.

    Args:
        x: the iterate.
        g: the gradient at ``x``.
        xc: the generalized Cauchy point.
        lo: lower bounds.
        up: upper bounds.
        mem: the memory.
        kept: the free-set products kept from the last step (`Kept`).
        cp: its compact form.
        dtype: the dtype of the scalars.
        c: ``W^T (x_c - x)``, as `cauchy` returns it from its walk (at 1M
            variables it saves a pass over the memory, about 8 ms); `None`:
            computed here.

    Returns:
        ``(x_bar, kept)``: ``x_c + du`` projected into the box when that
        descends from ``x``, else ``x_c + alpha du`` with the largest
        ``alpha <= 1`` inside; and the free-set products kept for the
        next step (see `sync`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._kept import new_kept
        >>> from jaxbounds._lbfgsb._memory import compact, new_memory
        >>> x, g = jnp.array([0.5, 0.5]), jnp.array([1.0, -2.0])
        >>> mem = new_memory(x, 2, jnp.float32)  # empty: B = I
        >>> xc = jnp.array([0.4, 0.6])
        >>> kept = new_kept(x, 2, jnp.float32)
        >>> xbar, _ = subspace(x, g, xc, 0.0, 0.6, mem, kept, compact(mem), jnp.float32)
        >>> print(xbar)
        [0.  0.6]
    """
    _, du, kept = free_step(x, g, xc, lo, up, mem, kept, cp, dtype, c)
    projected = tmap(lambda v, d, lo, up: jnp.clip(v + d, lo, up), xc, du, lo, up)
    descent = vdot(g, tmap(jnp.subtract, projected, x), dtype) < 0
    alpha = reach(xc, du, lo, up, dtype, 1.0)
    truncated = tmap(
        lambda v, d, lo, up: jnp.clip(v + alpha.astype(v.dtype) * d, lo, up),
        xc,
        du,
        lo,
        up,
    )
    return tmap(lambda a, b: jnp.where(descent, a, b), projected, truncated), kept
