"""The sort-and-threshold of Held et al. / Duchi et al.: simplex and L1-ball kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def threshold(rows: jax.Array, total: jax.Array) -> jax.Array:
    """Per row, the ``theta`` with ``sum(max(row - theta, 0)) == total``.

    ``rows`` is ``(m, n)`` and ``total`` broadcastable to ``(m, 1)``; the
    result is ``(m, 1)``. Sort descending, take the cumulative sums ``s_j``,
    and the largest ``j`` with ``u_j > (s_j - total) / j``.
    """
    n = rows.shape[-1]
    u = -jnp.sort(-rows, axis=-1)
    css = jnp.cumsum(u, axis=-1) - total
    j = jnp.arange(1, n + 1, dtype=rows.dtype)
    support = u * j > css
    rho = jnp.sum(support, axis=-1, keepdims=True)  # >= 1 for total > 0
    picked = jnp.take_along_axis(css, jnp.maximum(rho - 1, 0), axis=-1)
    return picked / jnp.maximum(rho, 1).astype(rows.dtype)


def simplex_rows(rows: jax.Array, total: jax.Array) -> jax.Array:
    """Each row projected onto ``{y >= 0, sum(y) == total}``."""
    return jnp.maximum(rows - jax.lax.stop_gradient(threshold(rows, total)), 0)


def l1_ball_rows(rows: jax.Array, radius: jax.Array) -> jax.Array:
    """Each row projected onto ``{||y||_1 <= radius}`` (rows inside are kept)."""
    a = jnp.abs(rows)
    inside = jnp.sum(a, axis=-1, keepdims=True) <= radius
    shrunk = jnp.sign(rows) * simplex_rows(a, radius)
    return jnp.where(inside, rows, shrunk)
