"""Norms per unit: `MaxNorm` (L1, L2, L-inf balls), `MinMaxNorm`, `UnitNorm`.

Keras' kinds with a real ``axis``: a Dense kernel ``(in, out)`` with
``axis=0`` has one norm per output unit; a conv kernel ``(h, w, in, out)``
takes ``axis=(0, 1, 2)``. Inequalities hold exactly on the returned values
as computed in the compute dtype (at least float32): the radius is rounded
to nearest there, and the result is rounded inwards (`jaxbounds._rounding.fit`).

In a diagonal metric ``d`` (`Constraint.project_in_metric`) the 2-norm
sets take ``y = d x / (d + lam)`` with ``lam`` the root of a monotone
scalar equation per unit (`radius_in_metric`); the L1 ball the weighted
threshold; the L-inf ball is separable and unchanged.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._rounding import compute_dtype, fit, inward, toward_zero
from ._axes import Axis, as_rows, static_axis
from ._kind import Constraint, norm2, positive
from ._metric import radius_in_metric, unit_metric
from ._simplex import l1_ball_rows, weighted_l1_ball_rows

#: How many ulps (of the compute dtype) inside the radius a shrunk unit aims.
MARGIN_ULPS = 4


def _ord(value: Any) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "infinity"):
        return math.inf
    if value in (1, 2) or value == math.inf:
        return float(value)
    raise ValueError(f"ord must be 1, 2 or inf, got {value!r}")


def norm(x: jax.Array, axes: tuple[int, ...], ord: float) -> jax.Array:
    """The ``ord``-norm of every unit (unit axes kept as size 1)."""
    if ord == 2:
        return norm2(x, axes)
    return _norm_plain(x, axes, ord)


def _norm_plain(x: jax.Array, axes: tuple[int, ...], ord: float) -> jax.Array:
    """The norm as a plain reduction: what a projection step uses.

    For L2 no overflow fallback (a unit whose squared norm overflows, past
    ``1e19`` per element in float32, is projected to zero); the penalty
    and the reports use `norm2`, which has one.
    """
    if ord == 2:
        return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))
    if ord == 1:
        return jnp.sum(jnp.abs(x), axis=axes, keepdims=True)
    return jnp.max(jnp.abs(x), axis=axes, keepdims=True, initial=0)


def _radial(raw: jax.Array, axes: tuple[int, ...], ord: float, radius: Any) -> Any:
    """``radius * tanh(||u||) * u / ||u||`` in the compute dtype."""
    u = raw.astype(compute_dtype(raw.dtype))
    n = norm(u, axes, ord)
    pos = n > 0
    safe = jnp.where(pos, n, 1)
    return u * jnp.where(pos, jnp.tanh(safe) / safe, 1) * radius


def _radial_inverse(x: jax.Array, axes: tuple[int, ...], ord: float, radius: Any):
    cd = compute_dtype(x.dtype)
    xc = x.astype(cd)
    n = norm(xc, axes, ord)
    pos = n > 0
    safe = jnp.where(pos, n, 1)
    top = 1 - jnp.finfo(x.dtype).eps.astype(cd)
    ratio = jnp.minimum(safe / radius, top)
    return (xc * jnp.where(pos, jnp.arctanh(ratio) / safe, 1 / radius)).astype(x.dtype)


def _straight(y: jax.Array, fixed: jax.Array) -> jax.Array:
    """``fixed`` as value, ``y``'s gradient (a rounding fix-up)."""
    return y + jax.lax.stop_gradient(fixed - y)


class MaxNorm(Constraint):
    """``||unit|| <= max_value`` for every unit: Keras' ``MaxNorm`` with a real axis.

    Projection rescales a unit by ``min(1, r / ||x||)`` (``ord=2``, Keras'
    formula), thresholds the sorted magnitudes (``ord=1``) or clips
    (``ord=inf``). The map `constrain` is radial: ``r tanh(||u||) u / ||u||``.

    ``axis`` is the axes the norm runs over, so "one norm per output unit"
    depends on the layer's layout: a Keras or flax ``Dense`` kernel is
    ``(in, out)``, so ``axis=0``; an ``eqx.nn.Linear.weight`` (as PyTorch's)
    is ``(out, in)``, so ``axis=1`` (or ``-1``). ``axis=0`` on an equinox
    weight is not an error: it silently bounds the input units instead.

    Attributes:
        max_value: the radius ``r > 0`` (a float, or a traced / batched value).
        axis: the axes of one unit (`None`: the whole leaf).
        ord: 1, 2 or ``inf``.

    Raises:
        ValueError: a concrete radius that is not > 0, or another ``ord``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import MaxNorm
        >>> w = jnp.array([[3.0, 0.1], [4.0, 0.1]])  # (in, out): one norm per column
        >>> print(MaxNorm(1.0, axis=0).project(w).round(6))  # a few ulps inside
        [[0.6 0.1]
         [0.8 0.1]]
        >>> print(MaxNorm(1.0, axis=1).project(w.T).round(6))  # (out, in): per row
        [[0.6 0.8]
         [0.1 0.1]]
    """

    max_value: Any
    axis: Axis = eqx.field(static=True, default=None, converter=static_axis)
    ord: float = eqx.field(static=True, default=2.0, converter=_ord)

    def __check_init__(self) -> None:
        positive(self.max_value, "MaxNorm's max_value")

    def measure(self, x: jax.Array) -> jax.Array:
        """The norm of every unit of ``x`` (compute dtype, unit axes kept)."""
        return norm(x.astype(compute_dtype(x.dtype)), self.units(x.ndim), self.ord)

    def project(self, x: jax.Array) -> jax.Array:
        return self._onto(jnp.asarray(x), None)

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """The ball's nearest point in the metric ``d``, per unit.

        ``ord=2``: ``y = d x / (d + lam)`` (`radius_in_metric`); ``ord=1``:
        the weighted threshold ``sign(x) max(|x| - tau / d, 0)``; ``ord=inf``:
        `project` (separable). ``||y|| <= r`` holds exactly, as `project`;
        a uniform ``d`` gives `project`'s values bit for bit.
        """
        x = jnp.asarray(x)
        if self.ord == math.inf:
            return self.project(x)
        return self._onto(x, unit_metric(d, x, self.units(x.ndim)))

    def _onto(self, x: jax.Array, w: jax.Array | None) -> jax.Array:
        """The projection, Euclidean (``w`` `None`) or in the unit weights ``w``."""
        cd = compute_dtype(x.dtype)
        axes = self.units(x.ndim)
        if self.ord == math.inf:
            r = inward(jnp.asarray(self.max_value, cd), x.dtype, "upper")
            return jnp.clip(x, -r, r)
        r = jnp.asarray(self.max_value, cd)
        xc = x.astype(cd)
        n = _norm_plain(xc, axes, self.ord)
        outside = n > r
        # aim a few ulps inside, so that a norm summed in another order
        # (jnp.linalg.norm, a fused reduction) also stays within r
        aim = r * (1 - MARGIN_ULPS * jnp.finfo(cd).eps)
        if self.ord == 2 and w is None:
            shrunk = xc * (aim / jnp.where(outside, n, 1))
        elif self.ord == 2 and w is not None:
            target = jnp.where(outside, aim, n)
            shrunk = radius_in_metric(xc, w, axes, n, target, grow=False)
        else:
            rows, back = as_rows(xc, axes)
            if w is None:
                shrunk = back(l1_ball_rows(rows, aim))
            else:
                shrunk = back(weighted_l1_ball_rows(rows, as_rows(w, axes)[0], aim))
        y = jnp.where(outside, toward_zero(shrunk, x.dtype), x)
        return fit(y, lambda z: _norm_plain(z, axes, self.ord), r)

    def distance(self, x: jax.Array) -> jax.Array:
        if self.ord != 2:
            return super().distance(x)
        r = jnp.asarray(self.max_value, compute_dtype(x.dtype))
        return jnp.maximum(self.measure(x) - r, 0)

    def constrain(self, raw: jax.Array) -> jax.Array:
        raw = jnp.asarray(raw)
        y = _radial(raw, self.units(raw.ndim), self.ord, self.max_value)
        y = y.astype(raw.dtype)
        return _straight(y, jax.lax.stop_gradient(self.project(y)))

    def unconstrain(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return _radial_inverse(x, self.units(x.ndim), self.ord, self.max_value)


class MinMaxNorm(Constraint):
    """``min_value <= ||unit||_2 <= max_value`` for every unit (Keras' ``MinMaxNorm``).

    Projection rescales a unit to its clipped norm; a zero unit stays zero
    (it has no direction) and is reported as a violation. `constrain` is
    surjective, not bijective: ``u / ||u|| * (min + (max - min) tanh(||u||))``
    (a zero ``u`` maps to zero).

    Attributes:
        min_value: the smallest norm, ``>= 0``.
        max_value: the largest norm, ``> 0`` and ``>= min_value``.
        axis: the axes of one unit (`None`: the whole leaf).

    Raises:
        ValueError: concrete values out of order or not positive.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import MinMaxNorm
        >>> print(MinMaxNorm(1.0, 2.0).project(jnp.array([0.3, 0.4])).round(6))
        [0.6 0.8]
    """

    min_value: Any
    max_value: Any
    axis: Axis = eqx.field(static=True, default=None, converter=static_axis)

    def __check_init__(self) -> None:
        positive(self.max_value, "MinMaxNorm's max_value")
        try:
            lo, hi = float(self.min_value), float(self.max_value)
        except (TypeError, jax.errors.ConcretizationTypeError):
            return
        if not 0 <= lo <= hi:
            raise ValueError(
                f"MinMaxNorm needs 0 <= min_value <= max_value, got {lo!r}, {hi!r}"
            )

    def project(self, x: jax.Array) -> jax.Array:
        return self._onto(jnp.asarray(x), None)

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """The shell's nearest point in the metric ``d``: ``y = d x / (d + lam)``.

        ``lam > 0`` shrinks a unit onto the outer sphere, ``lam < 0`` grows
        it onto the inner one (`radius_in_metric`); the inequalities hold
        exactly, as `project`, and a uniform ``d`` gives its values bit for
        bit. A zero unit stays zero. Where the unit's components of smallest
        weight are all zero and the inner sphere is the target (the "hard
        case" of the trust-region problem), the result is the radial scaling
        onto it, not the exact nearest point.
        """
        x = jnp.asarray(x)
        return self._onto(x, unit_metric(d, x, self.units(x.ndim)))

    def _onto(self, x: jax.Array, w: jax.Array | None) -> jax.Array:
        """The projection, Euclidean (``w`` `None`) or in the unit weights ``w``."""
        cd = compute_dtype(x.dtype)
        axes = self.units(x.ndim)
        lo = jnp.asarray(self.min_value, cd)
        hi = jnp.asarray(self.max_value, cd)
        xc = x.astype(cd)
        n = norm2(xc, axes)
        pos = n > 0
        margin = MARGIN_ULPS * jnp.finfo(cd).eps
        aim = jnp.clip(n, lo * (1 + margin), hi * (1 - margin))
        if w is None:
            moved = xc * (aim / jnp.where(pos, n, 1))
        else:
            moved = radius_in_metric(xc, w, axes, n, aim)
        y = jnp.where(pos & (n > hi), toward_zero(moved, x.dtype), x)
        y = jnp.where(pos & (n < lo), moved.astype(x.dtype), y)
        y = fit(y, lambda z: norm2(z, axes), hi)
        return fit(
            y,
            lambda z: jnp.where(norm2(z, axes) > 0, norm2(z, axes), lo),
            lo,
            above=True,
        )

    def distance(self, x: jax.Array) -> jax.Array:
        cd = compute_dtype(x.dtype)
        n = norm2(x.astype(cd), self.units(x.ndim))
        lo = jnp.asarray(self.min_value, cd)
        hi = jnp.asarray(self.max_value, cd)
        return jnp.maximum(jnp.maximum(n - hi, lo - n), 0)

    def constrain(self, raw: jax.Array) -> jax.Array:
        raw = jnp.asarray(raw)
        cd = compute_dtype(raw.dtype)
        u = raw.astype(cd)
        n = norm2(u, self.units(raw.ndim))
        pos = n > 0
        lo = jnp.asarray(self.min_value, cd)
        hi = jnp.asarray(self.max_value, cd)
        target = lo + (hi - lo) * jnp.tanh(n)
        y = (u * jnp.where(pos, target / jnp.where(pos, n, 1), 0)).astype(raw.dtype)
        return _straight(y, jax.lax.stop_gradient(self.project(y)))

    def unconstrain(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        cd = compute_dtype(x.dtype)
        xc = x.astype(cd)
        n = norm2(xc, self.units(x.ndim))
        pos = n > 0
        lo = jnp.asarray(self.min_value, cd)
        hi = jnp.asarray(self.max_value, cd)
        top = 1 - jnp.finfo(x.dtype).eps.astype(cd)
        t = jnp.clip((n - lo) / jnp.where(hi > lo, hi - lo, 1), 0, top)
        m = jnp.arctanh(t)
        return (xc * jnp.where(pos, m / jnp.where(pos, n, 1), 0)).astype(x.dtype)


class UnitNorm(Constraint):
    """``||unit||_2 == 1`` for every unit (Keras' ``UnitNorm``).

    Projection divides a unit by its norm; a zero unit stays zero and is
    reported as a violation. The equality holds to a few ulps; a unit within
    that tolerance has distance 0. `constrain` (``u / ||u||``) is
    surjective, not bijective; `unconstrain` returns the unit itself.

    Attributes:
        axis: the axes of one unit (`None`: the whole leaf).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import UnitNorm
        >>> UnitNorm(axis=0).project(jnp.array([[3.0], [4.0]]))
        Array([[0.6],
               [0.8]], dtype=float32)
    """

    axis: Axis = eqx.field(static=True, default=None, converter=static_axis)
    equality: ClassVar[bool] = True

    def project(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        cd = compute_dtype(x.dtype)
        xc = x.astype(cd)
        n = norm2(xc, self.units(x.ndim))
        pos = n > 0
        return jnp.where(pos, xc / jnp.where(pos, n, 1), xc).astype(x.dtype)

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """The sphere's nearest point in the metric ``d``: ``y = d x / (d + lam)``.

        As `MinMaxNorm.project_in_metric` with both radii 1 (the equality to
        a few ulps, as `project`); a uniform ``d`` gives `project`'s values.
        """
        x = jnp.asarray(x)
        cd = compute_dtype(x.dtype)
        axes = self.units(x.ndim)
        xc = x.astype(cd)
        w = unit_metric(d, x, axes)
        n = norm2(xc, axes)
        y = radius_in_metric(xc, w, axes, n, jnp.ones_like(n))
        uniform = jnp.min(w, axis=axes, keepdims=True) == 1
        return jnp.where(uniform, self.project(x).astype(cd), y).astype(x.dtype)

    def tolerance(self, x: jax.Array) -> jax.Array:
        """How far from 1 a unit's norm may be and still count as on the sphere."""
        cd = compute_dtype(x.dtype)
        k = max(1, x.size // max(1, _units_count(x, self.units(x.ndim))))
        return jnp.asarray(
            2 * float(jnp.finfo(x.dtype).eps) + k * float(jnp.finfo(cd).eps), cd
        )

    def distance(self, x: jax.Array) -> jax.Array:
        cd = compute_dtype(x.dtype)
        n = norm2(x.astype(cd), self.units(x.ndim))
        d = jnp.abs(n - 1)
        return jnp.where(d <= self.tolerance(x), 0, d)

    def constrain(self, raw: jax.Array) -> jax.Array:
        return self.project(jnp.asarray(raw))

    def unconstrain(self, x: jax.Array) -> jax.Array:
        return jnp.asarray(x)


def _units_count(x: jax.Array, axes: tuple[int, ...]) -> int:
    n = 1
    for a, s in enumerate(x.shape):
        if a not in axes:
            n *= s
    return n
