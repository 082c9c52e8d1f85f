"""Subspace minimisation: the model minimised over the variables free at ``x_c``.

The direct primal method of Byrd et al. (1995, section 5.1): with ``Z`` the
free variables at the Cauchy point and ``r = Z^T (g + B (x_c - x))`` the
reduced gradient there, the step is ``du = -(Z^T B Z)^{-1} r``, found by
the Sherman-Morrison-Woodbury identity from small ``2m x 2m`` systems
(the free variables' Gram matrices of ``Y`` and ``S``). Then it is
projected back into the box; if the projected point is not a descent
direction from ``x``, the unprojected step is truncated at the box instead
(Morales and Nocedal 2011).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

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
from ._tree import free_grams, reach, tmap, vdot


def free_step(
    x: Any, g: Any, xc: Any, lo: Any, up: Any, mem: Memory, cp: Compact, dtype: Any
) -> tuple[Any, Any]:
    """The Newton step of the model over the variables free at ``x_c``.

    Returns:
        ``(free, du)``: the mask of free variables (strictly inside at
        ``x_c``) and the step ``du = -(Z^T B Z)^{-1} Z^T (g + B (x_c - x))``,
        zero on the others.
    """
    theta = cp.theta
    free = tmap(lambda v, lo, up: (v > lo) & (v < up), xc, lo, up)
    zc = tmap(jnp.subtract, xc, x)
    stack = tmap(lambda a: a[None], zc)
    c = w_dot(mem, cp, stack, dtype)[:, 0]
    wmc = w_times(mem, cp, m_times(cp, c))
    r = tmap(
        lambda f, g, z, w: jnp.where(f, g + theta.astype(g.dtype) * z - w, 0),
        free,
        g,
        zc,
        wmc,
    )
    v = w_dot(mem, cp, tmap(lambda a: a[None], r), dtype)[:, 0]
    # (M^{-1} - W^T Z Z^T W / theta) u = v, as a block system: the free
    # variables' Gram matrices of Y and S, the active ones' of S
    m = mem.age.shape[0]
    valid = cp.valid[:m]
    pair = valid[:, None] & valid[None, :]
    yy, sy, ss = free_grams(mem.s, mem.y, free, dtype)
    yy = jnp.where(pair, yy, 0.0)
    sy = jnp.where(pair, sy, 0.0)
    ss = jnp.where(pair, ss, 0.0)
    ss = theta * ss + jnp.diag(jnp.where(valid, 0.0, 1.0))
    system = block(inv_spd(jnp.diag(cp.d) + yy / theta), cp.low - sy, ss)
    u = jnp.where(cp.valid, block_solve(system, jnp.where(cp.valid, v, 0.0)), 0.0)
    u = jnp.where(jnp.all(jnp.isfinite(u)), u, 0.0)
    wu = w_times(mem, cp, u)
    du = tmap(
        lambda f, r, w: jnp.where(
            f, -r / theta.astype(r.dtype) - w / (theta**2).astype(r.dtype), 0
        ),
        free,
        r,
        wu,
    )
    return free, du


def subspace(
    x: Any, g: Any, xc: Any, lo: Any, up: Any, mem: Memory, cp: Compact, dtype: Any
) -> Any:
    """``x_bar``: the subspace minimiser from ``x_c``, inside the box.

    Args:
        x: the iterate.
        g: the gradient at ``x``.
        xc: the generalized Cauchy point.
        lo: lower bounds.
        up: upper bounds.
        mem: the memory.
        cp: its compact form.
        dtype: the dtype of the scalars.

    Returns:
        ``x_c + du`` projected into the box when that descends from ``x``,
        else ``x_c + alpha du`` with the largest ``alpha <= 1`` inside.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._memory import compact, new_memory
        >>> x, g = jnp.array([0.5, 0.5]), jnp.array([1.0, -2.0])
        >>> mem = new_memory(x, 2, jnp.float32)  # empty: B = I
        >>> xc = jnp.array([0.4, 0.6])
        >>> print(subspace(x, g, xc, 0.0, 0.6, mem, compact(mem), jnp.float32))
        [0.  0.6]
    """
    _, du = free_step(x, g, xc, lo, up, mem, cp, dtype)
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
    return tmap(lambda a, b: jnp.where(descent, a, b), projected, truncated)
