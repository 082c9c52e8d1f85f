"""`Simplex`: ``x >= 0`` and ``sum(x) == total`` along an axis."""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._core import compute_dtype
from ._kind import Constraint, norm2, positive
from ._threshold import simplex_rows
from ._units import Axis, as_rows, static_axis


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
