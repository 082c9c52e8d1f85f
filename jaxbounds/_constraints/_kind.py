"""`Constraint`, the base class of the set kinds, and `Interval`, the box kind.

A kind is a frozen pytree (an `equinox.Module`): its numbers (radii,
totals, bounds) are leaves, so they can be traced, vmapped and passed to
`jax.jit` without recompiling; its ``axis`` (and anything else that shapes
the computation) is a static field. Each kind knows, for one leaf ``x``:

- `Constraint.project`: the Euclidean projection of every unit onto its set;
- `Constraint.project_in_metric`: the projection in a diagonal metric ``d``
  (``argmin sum(d * (y - x)**2)`` per unit), where the kind has one;
- `Constraint.distance`: the Euclidean distance of every unit to its set;
- `Constraint.constrain` / `Constraint.unconstrain`: a map from free values
  into the set and back, where the kind has one.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._boxmap import constrain_leaf, unconstrain_leaf
from .._clip import clip_leaf
from .._kernels import penalty_sum
from .._rounding import compute_dtype, inward_edges, violation
from ._axes import unit_axes


def concrete(value: Any) -> float | None:
    """``value`` as a Python float if it is a concrete real scalar, else `None`."""
    if isinstance(value, jax.core.Tracer) or value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"a constraint's number must be a float, got {value!r}")
    if np.ndim(value) != 0:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def positive(value: Any, what: str) -> None:
    """Raise `ValueError` if ``value`` is concrete and not a finite number > 0."""
    v = concrete(value)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {v!r}")


def _root(sq: jax.Array) -> jax.Array:
    """``sqrt(sq)`` with a finite gradient at 0; NaN stays NaN (a violation)."""
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1)), jnp.where(sq == 0, 0, sq))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def norm2(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """The L2 norm over ``axes`` (kept as size-1 axes), with a finite gradient at 0.

    The plain ``sqrt(sum(x**2))``; if a sum of squares overflows (elements
    past ``1e19`` in float32), all units are recomputed scaled by their
    largest magnitude, so the norm of finite values is finite. The
    derivative is written out (``x / ||x||``, 0 at 0), so differentiating
    never traces the fallback.
    """
    sq = jnp.sum(jnp.square(x), axis=axes, keepdims=True)

    def scaled(x: jax.Array) -> jax.Array:
        top = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
        safe = jnp.where(top > 0, top, 1)
        return safe * _root(jnp.sum(jnp.square(x / safe), axis=axes, keepdims=True))

    return jax.lax.cond(jnp.all(jnp.isfinite(sq)), lambda x: _root(sq), scaled, x)


@norm2.defjvp
def _norm2_jvp(axes: tuple[int, ...], primals: tuple, tangents: tuple) -> tuple:
    (x,), (dx,) = primals, tangents
    n = norm2(x, axes)
    pos = n > 0
    unit = x / jnp.where(pos, n, 1)
    return n, jnp.where(pos, jnp.sum(unit * dx, axis=axes, keepdims=True), 0)


class Constraint(eqx.Module):
    """Base class of a constraint kind; subclass it for a set of your own.

    A subclass implements `project` (the Euclidean projection of a leaf onto
    the set, per unit) and, if it has one, the pair `constrain` /
    `unconstrain` (a map from free values into the set and its inverse).
    `distance` defaults to ``||x - project(x)||`` per unit. Numbers that
    should be data (radii, totals) are ordinary fields; an ``axis`` field
    (`equinox.field` with ``static=True``) names the axes of a unit, as in
    NumPy (no ``axis``: the whole leaf is one unit).

    Examples:
        >>> import equinox as eqx, jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> class NonNegative(jb.Constraint):
        ...     def project(self, x):
        ...         return jnp.maximum(x, 0)
        >>> c = jb.Constraints(("w", NonNegative()))
        >>> jb.project({"w": jnp.array([-1.0, 2.0])}, c)["w"]
        Array([0., 2.], dtype=float32)
    """

    #: Whether `distance` may be 0 within a tolerance (sets without interior).
    equality: ClassVar[bool] = False

    def units(self, ndim: int) -> tuple[int, ...]:
        """The axes of one unit for a leaf of ``ndim`` dimensions (checked)."""
        return unit_axes(getattr(self, "axis", None), ndim)

    def check(self, leaf: Any) -> None:
        """Raise `ValueError` if this kind cannot act on ``leaf`` (e.g. its axis)."""
        self.units(np.ndim(leaf))

    def project(self, x: jax.Array) -> jax.Array:
        """The nearest point of the set to every unit of ``x``, in ``x``'s dtype."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement project(self, x)"
        )

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """The nearest point of the set to every unit of ``x`` in the metric ``d``.

        Per unit ``argmin over the set of sum(d * (y - x)**2)``, with ``d`` a
        positive array broadcastable to ``x`` (only its ratios within a unit
        matter). A kind without a closed form in a diagonal metric raises;
        a user's kind implements this method to take part in
        ``project(..., metric=)`` and `projected`.

        Raises:
            NotImplementedError: the kind has no projection in a metric.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no projection in a diagonal metric: "
            "implement project_in_metric(self, x, d), or project it in the "
            "Euclidean metric (project(..., metric=None), "
            "projected(..., metric='euclidean'))"
        )

    def distance(self, x: jax.Array) -> jax.Array:
        """The Euclidean distance of every unit of ``x`` to the set (compute dtype).

        The result has ``x``'s shape with the unit axes kept as size 1. Its
        gradient is ``(x - P(x)) / distance``: it points away from the set.
        """
        cd = compute_dtype(x.dtype)
        target = jax.lax.stop_gradient(self.project(x)).astype(cd)
        return norm2(x.astype(cd) - target, self.units(x.ndim))

    def summary(self, x: jax.Array) -> dict[str, jax.Array]:
        """Named scalars `violations` reports beside the distance (none here).

        A kind whose set is best read through its own quantity (the largest
        singular value, the smallest eigenvalue) returns it, the worst over
        ``x``'s units, under a short name.
        """
        return {}

    def has_bijection(self) -> bool:
        """Whether the kind maps free values into its set (`constrain`)."""
        return type(self).constrain is not Constraint.constrain

    def constrain(self, raw: jax.Array) -> jax.Array:
        """Free values mapped into the set, per unit."""
        raise NotImplementedError

    def unconstrain(self, x: jax.Array) -> jax.Array:
        """The free values that `constrain` maps to ``x`` (``x`` in the set)."""
        raise NotImplementedError


class Interval(Constraint):
    """Every element in ``[lower, upper]``: the box, as a rule.

    The same numbers as bound trees: `None` (or an infinity) is an open
    side; a float or an array broadcastable to the leaf. Its penalty is
    exactly `bounds_cost`, its projection `clip_to_bounds`, its map the box
    map of `constrain`. The units are the elements.

    Attributes:
        lower: the lower bound (`None`: none).
        upper: the upper bound (`None`: none).

    Raises:
        ValueError: concrete ``lower > upper``, or a NaN bound.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import Interval
        >>> Interval(0.0, 1.0).project(jnp.array([-1.0, 0.5, 2.0]))
        Array([0. , 0.5, 1. ], dtype=float32)
    """

    lower: Any = None
    upper: Any = None

    def __check_init__(self) -> None:
        lo, up = concrete(self.lower), concrete(self.upper)
        if (lo is not None and math.isnan(lo)) or (up is not None and math.isnan(up)):
            raise ValueError(f"Interval({self.lower!r}, {self.upper!r}): a NaN bound")
        if lo is not None and up is not None and lo > up:
            raise ValueError(f"Interval({lo!r}, {up!r}): lower > upper")

    def units(self, ndim: int) -> tuple[int, ...]:
        return ()

    def sides(self) -> tuple[Any, Any]:
        """``(lower, upper)`` with concrete infinities as `None` (open sides)."""

        def side(b: Any, open_value: float) -> Any:
            v = concrete(b)
            return None if v is not None and v == open_value else b

        return side(self.lower, -math.inf), side(self.upper, math.inf)

    def project(self, x: jax.Array) -> jax.Array:
        return clip_leaf(x, *self.sides())

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """The box is separable: every diagonal metric gives `project`."""
        del d
        return self.project(x)

    def distance(self, x: jax.Array) -> jax.Array:
        return jnp.maximum(
            violation(x.astype(compute_dtype(x.dtype)), *self.sides()), 0
        )

    def cost(self, x: jax.Array, penalty: Any) -> jax.Array:
        """The summed penalty of ``x``: exactly `bounds_cost` of this box."""
        lo, up = self.sides()
        if lo is None and up is None:
            return jnp.zeros((), compute_dtype(x.dtype))
        return penalty_sum([x], [lo], [up], penalty)

    def constrain(self, raw: jax.Array) -> jax.Array:
        return constrain_leaf(raw, *self.sides())

    def unconstrain(self, x: jax.Array) -> jax.Array:
        return unconstrain_leaf(x, *self.sides())

    def edges(self, dtype: Any) -> tuple[jax.Array, jax.Array]:
        """The bounds rounded inwards into ``dtype`` (``±inf`` for open sides)."""
        return inward_edges(*self.sides(), dtype)
