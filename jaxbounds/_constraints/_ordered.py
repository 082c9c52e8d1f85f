"""`Ordered`: non-decreasing along an axis, by isotonic regression (PAV, weighted)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._boxmap import raw_limit, softplus_inverse
from .._rounding import compute_dtype
from ._axes import static_axis
from ._kind import Constraint
from ._metric import unit_metric


def pav(row: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """The isotonic regression of one row (least squares, non-decreasing).

    Pool adjacent violators: push each element as a block; while the last
    two blocks are out of order, merge them (sums and weights). Block means
    are compared as they are finally computed (``sum / weight``), so the
    result is non-decreasing exactly, whatever the rounding. With
    ``weights`` (positive, the row's shape) it minimises
    ``sum(weights * (y - row)**2)``: a block's value is its weighted mean
    ``sum(w x) / sum(w)``; weights of 1 give the unweighted values bit for bit.
    """
    n = row.shape[0]
    w = jnp.ones_like(row) if weights is None else weights
    sums = jnp.zeros_like(row)
    wsum = jnp.zeros(n, row.dtype)
    counts = jnp.zeros(n, jnp.int32)

    def mean(s: jax.Array, c: jax.Array, k: jax.Array) -> jax.Array:
        return s[k] / c[k]

    def push(i: jax.Array, state: tuple) -> tuple:
        sums, wsum, counts, top = state
        sums = sums.at[top].set(w[i] * row[i])
        wsum = wsum.at[top].set(w[i])
        counts = counts.at[top].set(1)
        top = top + 1

        def violated(st: tuple) -> jax.Array:
            s, c, _, t = st
            return (t >= 2) & (mean(s, c, t - 2) > mean(s, c, jnp.maximum(t - 1, 0)))

        def merge(st: tuple) -> tuple:
            s, c, k, t = st
            s = s.at[t - 2].add(s[t - 1]).at[t - 1].set(0)
            c = c.at[t - 2].add(c[t - 1]).at[t - 1].set(0)
            k = k.at[t - 2].add(k[t - 1]).at[t - 1].set(0)
            return s, c, k, t - 1

        return jax.lax.while_loop(violated, merge, (sums, wsum, counts, top))

    sums, wsum, counts, top = jax.lax.fori_loop(
        0, n, push, (sums, wsum, counts, jnp.zeros((), jnp.int32))
    )
    live = jnp.arange(n) < top
    means = jnp.where(live, sums / jnp.where(live, wsum, 1), 0)
    reps = jnp.where(live, counts, 0)
    return jnp.repeat(means, reps, total_repeat_length=n)


class Ordered(Constraint):
    """Every unit non-decreasing along ``axis`` (``y[i] <= y[i + 1]``).

    Projection is isotonic regression by pool adjacent violators, computed
    in the compute dtype per row (a `jax.lax` loop, vmapped over rows); the
    order holds exactly on the returned values. `constrain` is cumulative
    softplus steps: ``y[0] = u[0]``, ``y[i] = y[i - 1] + softplus(u[i])``.

    Attributes:
        axis: the one axis to order along (default the last).

    Raises:
        ValueError: (when resolved) an axis out of range; TypeError for a tuple.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import Ordered
        >>> Ordered().project(jnp.array([1.0, 3.0, 2.0, 0.0]))
        Array([1.       , 1.6666666, 1.6666666, 1.6666666], dtype=float32)
    """

    axis: int = eqx.field(static=True, default=-1, converter=static_axis)

    def __check_init__(self) -> None:
        if not isinstance(self.axis, int):
            raise TypeError(f"Ordered takes one axis (an int), got {self.axis!r}")

    def _moved(self, x: jax.Array) -> jax.Array:
        return jnp.moveaxis(x, self.units(x.ndim)[0], -1)

    def _back(self, y: jax.Array, x: jax.Array) -> jax.Array:
        return jnp.moveaxis(y, -1, self.units(x.ndim)[0])

    def project(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim == 0:
            return x
        cd = compute_dtype(x.dtype)
        moved = self._moved(x.astype(cd))
        rows = moved.reshape(-1, moved.shape[-1])
        y = jax.vmap(pav)(rows).reshape(moved.shape)
        return self._back(y, x).astype(x.dtype)

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """Weighted isotonic regression: blocks take their ``d``-weighted means.

        The order holds exactly, as `project`; a uniform ``d`` gives its
        values bit for bit.
        """
        x = jnp.asarray(x)
        if x.ndim == 0:
            return x
        cd = compute_dtype(x.dtype)
        w = self._moved(unit_metric(d, x, self.units(x.ndim)))
        moved = self._moved(x.astype(cd))
        rows = moved.reshape(-1, moved.shape[-1])
        y = jax.vmap(pav)(rows, w.reshape(rows.shape)).reshape(moved.shape)
        return self._back(y, x).astype(x.dtype)

    def constrain(self, raw: jax.Array) -> jax.Array:
        raw = jnp.asarray(raw)
        if raw.ndim == 0:
            return raw
        cd = compute_dtype(raw.dtype)
        u = self._moved(raw.astype(cd))
        steps = jnp.concatenate([u[..., :1], jax.nn.softplus(u[..., 1:])], axis=-1)
        return self._back(jnp.cumsum(steps, axis=-1), raw).astype(raw.dtype)

    def unconstrain(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim == 0:
            return x
        cd = compute_dtype(x.dtype)
        y = self._moved(x.astype(cd))
        d = softplus_inverse(jnp.diff(y, axis=-1), raw_limit(x.dtype))
        u = jnp.concatenate([y[..., :1], d], axis=-1)
        return self._back(u, x).astype(x.dtype)
