"""`Simplex`: ``x >= 0`` and ``sum(x) == total`` along an axis, and its kernels.

The sort and threshold of Held et al. / Duchi et al. per row (`threshold`):
the simplex projection (`simplex_rows`) and the L1 ball's (`l1_ball_rows`,
used by `MaxNorm(ord=1)`), and their weighted forms in a diagonal metric
(`weighted_threshold`: ``y = max(x - tau / d, 0)``, by the same sort on the
breakpoints ``x * d``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._rounding import compute_dtype
from ._axes import Axis, as_rows, static_axis
from ._kind import Constraint, norm2, positive
from ._metric import unit_metric


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


def weighted_threshold(rows: jax.Array, d: jax.Array, total: jax.Array) -> jax.Array:
    """Per row, the ``tau`` with ``sum(max(row - tau / d, 0)) == total``.

    ``d`` (``rows``' shape, positive) is the metric: ``y = max(x - tau / d, 0)``
    is the projection onto the simplex in ``sum(d * (y - x)**2)``. Element
    ``i`` is in the support while ``tau < x_i d_i``: sort the breakpoints
    ``x_i d_i`` descending, take the cumulative sums ``X_k`` of ``x`` and
    ``W_k`` of ``1 / d`` in that order; ``tau_k = (X_k - total) / W_k``, and
    the support is the largest ``k`` with ``b_k W_k > X_k - total`` (a
    prefix: ``b_k W_k - X_k`` does not grow with ``k``). With ``d == 1`` every
    step is `threshold`'s, so the result is the same bit for bit.
    """
    neg_b, xs, inv = jax.lax.sort((-(rows * d), rows, 1 / d), dimension=-1, num_keys=1)
    css = jnp.cumsum(xs, axis=-1) - total
    cw = jnp.cumsum(inv, axis=-1)
    rho = jnp.sum(-neg_b * cw > css, axis=-1, keepdims=True)
    at = jnp.maximum(rho - 1, 0)
    return jnp.take_along_axis(css, at, axis=-1) / jnp.take_along_axis(cw, at, axis=-1)


def weighted_simplex_rows(rows: jax.Array, d: jax.Array, total: jax.Array) -> jax.Array:
    """Each row projected onto ``{y >= 0, sum(y) == total}`` in the metric ``d``."""
    tau = jax.lax.stop_gradient(weighted_threshold(rows, d, total))
    return jnp.maximum(rows - tau * (1 / d), 0)


def weighted_l1_ball_rows(
    rows: jax.Array, d: jax.Array, radius: jax.Array
) -> jax.Array:
    """Each row projected onto ``{||y||_1 <= radius}`` in the metric ``d``.

    The signs are kept and the magnitudes thresholded: ``sign(x) max(|x| -
    tau / d, 0)``, the weighted simplex of ``|x|`` (rows inside are kept).
    """
    a = jnp.abs(rows)
    inside = jnp.sum(a, axis=-1, keepdims=True) <= radius
    shrunk = jnp.sign(rows) * weighted_simplex_rows(a, d, radius)
    return jnp.where(inside, rows, shrunk)


class Simplex(Constraint):
    """Every unit non-negative and summing to ``total``.

    Projection is the sort and threshold of Held et al. / Duchi et al.,
    computed in the compute dtype (at least float32) per row; ``y >= 0``
    holds exactly, ``sum(y) == total`` to a few ulps of the unit's largest
    magnitude, and a unit within that tolerance has distance 0. `constrain`
    is ``total * softmax(u)`` (one redundant direction per unit, fixed by
    `unconstrain`, which returns centred logits).

    Attributes:
        total: the sum of a unit, ``> 0``.
        axis: the axes of one unit (default the last).

    Raises:
        ValueError: a concrete ``total`` that is not > 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import Simplex
        >>> Simplex().project(jnp.array([[0.5, 0.25, 1.25], [2.0, 0.0, 0.0]]))
        Array([[0.125, 0.   , 0.875],
               [1.   , 0.   , 0.   ]], dtype=float32)
    """

    total: Any = 1.0
    axis: Axis = eqx.field(static=True, default=-1, converter=static_axis)
    equality: ClassVar[bool] = True

    def __check_init__(self) -> None:
        positive(self.total, "Simplex's total")

    def project(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        cd = compute_dtype(x.dtype)
        rows, back = as_rows(x.astype(cd), self.units(x.ndim))
        y = simplex_rows(rows, jnp.asarray(self.total, cd))
        return back(y).astype(x.dtype)

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """The weighted threshold ``y = max(x - tau / d, 0)`` per unit.

        ``tau`` makes the unit sum to ``total``; ``y >= 0`` holds exactly, the
        sum to a few ulps, as `project`. A uniform ``d`` gives `project`'s
        values bit for bit; only ratios of ``d`` within a unit matter.
        """
        x = jnp.asarray(x)
        cd = compute_dtype(x.dtype)
        axes = self.units(x.ndim)
        rows, back = as_rows(x.astype(cd), axes)
        w, _ = as_rows(unit_metric(d, x, axes), axes)
        y = weighted_simplex_rows(rows, w, jnp.asarray(self.total, cd))
        return back(y).astype(x.dtype)

    def tolerance(self, x: jax.Array) -> jax.Array:
        """How far a unit's sum may be from ``total`` and still count as on the set."""
        cd = compute_dtype(x.dtype)
        rows, back = as_rows(x.astype(cd), self.units(x.ndim))
        k = rows.shape[-1]
        scale = jnp.maximum(
            jnp.max(jnp.abs(rows), axis=-1, keepdims=True), jnp.abs(self.total)
        )
        ulps = 2 * jnp.finfo(x.dtype).eps.astype(cd) + k * jnp.finfo(cd).eps
        return back(jnp.broadcast_to(scale * ulps * k, rows.shape))

    def distance(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        cd = compute_dtype(x.dtype)
        axes = self.units(x.ndim)
        xc = x.astype(cd)
        near = jnp.abs(jnp.sum(xc, axis=axes, keepdims=True) - self.total)
        tol = jnp.max(self.tolerance(x), axis=axes, keepdims=True)
        on = (near <= tol) & jnp.all(xc >= 0, axis=axes, keepdims=True)
        target = jax.lax.stop_gradient(self.project(x)).astype(cd)
        return jnp.where(on, 0, norm2(xc - target, axes))

    def constrain(self, raw: jax.Array) -> jax.Array:
        raw = jnp.asarray(raw)
        cd = compute_dtype(raw.dtype)
        axes = self.units(raw.ndim)
        y = jax.nn.softmax(raw.astype(cd), axis=axes) * self.total
        return y.astype(raw.dtype)

    def unconstrain(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        cd = compute_dtype(x.dtype)
        axes = self.units(x.ndim)
        tiny = jnp.finfo(cd).tiny
        logs = jnp.log(jnp.maximum(x.astype(cd), tiny))
        return (logs - jnp.mean(logs, axis=axes, keepdims=True)).astype(x.dtype)
