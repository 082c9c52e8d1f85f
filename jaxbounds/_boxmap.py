"""The box maps of one leaf: free values into ``[lo, up]`` and back.

Two-sided boxes take a logistic map computed from the nearer bound, one-sided
boxes a softplus, and each has its inverse (`two_sided_inverse`,
`softplus_inverse`). `constrain_leaf` / `unconstrain_leaf` pick the map per
element from which sides are bounded. They live below the constraint sets:
`_reparam` maps bound trees with them, and the `Interval` kind maps its box.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._rounding import compute_dtype, inward_edges

#: Largest ``|raw|`` that `unconstrain` returns, by compute dtype. A value on
#: a bound maps here instead of to infinity. The gradient of the two-sided map
#: there, ``w * exp(-80) ~ w * 1.8e-35``, is still a normal float32 for box
#: widths ``w >= 1e-3`` (XLA flushes subnormals to zero); the same holds for
#: ``exp(-700) ~ 1e-304`` in float64.
RAW_LIMIT = {"float32": 80.0, "float64": 700.0}


def raw_limit(dtype: Any) -> float:
    """The largest ``|raw|`` `unconstrain` returns for parameters of ``dtype``."""
    return RAW_LIMIT[jnp.dtype(compute_dtype(dtype)).name]


# -- the elementwise maps, on arrays in the compute dtype ---------------------


def _sigmoid_near(x: jax.Array, scale: float = 1.0) -> jax.Array:
    """``scale * sigmoid(-|x|)``: monotone in ``|x|``, never NaN.

    The scale goes into the numerator rather than multiplying the result,
    so that XLA cannot fold it into a constant width (``2 * (up/2 - lo/2)``
    would overflow for boxes wider than half the dtype's range).
    """
    return scale / (1 + jnp.exp(jnp.abs(x)))


@jax.custom_jvp
def two_sided(x: jax.Array, lo: jax.Array, up: jax.Array) -> jax.Array:
    """``lo + (up - lo) * sigmoid(x)`` for finite ``lo <= up``, from the nearer bound.

    For ``x >= 0`` the value is ``up - d``, for ``x < 0`` it is ``lo + d``,
    with ``d = (up - lo) * sigmoid(-|x|)``; both halves are clamped to the
    midpoint so that rounding cannot make the map decrease at ``x = 0``.
    The half-width is computed as ``up/2 - lo/2`` so that boxes as wide as
    the dtype's range do not overflow.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.array([-30.0, 0.0, 30.0])
        >>> print(two_sided(x, jnp.float32(0.0), jnp.float32(1.0)))
        [9.3576236e-14 5.0000000e-01 1.0000000e+00]
        >>> print(jax.grad(lambda x: two_sided(x, 0.0, 1.0))(jnp.float32(30.0)))
        9.3576236e-14
    """
    half = 0.5 * up - 0.5 * lo
    d = half * _sigmoid_near(x, 2.0)  # <= half
    mid = lo + half
    return jnp.where(x >= 0, jnp.maximum(up - d, mid), jnp.minimum(lo + d, mid))


@two_sided.defjvp
def _two_sided_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    x, lo, up = primals
    dx, dlo, dup = tangents
    near = _sigmoid_near(x)
    far = 1 - near  # sigmoid(|x|) >= 0.5: no cancellation
    # (up - lo) * sigmoid(x) * sigmoid(-x), without forming up - lo (overflow)
    # and with the small factor first, so it underflows only where it must.
    slope = (_sigmoid_near(x, 2.0) * far) * (0.5 * up - 0.5 * lo)
    to_up = jnp.where(x >= 0, far, near)  # d value / d up = sigmoid(x)
    return two_sided(x, lo, up), slope * dx + (1 - to_up) * dlo + to_up * dup


def two_sided_inverse(
    p: jax.Array, lo: jax.Array, up: jax.Array, limit: float
) -> jax.Array:
    """The ``x`` with ``two_sided(x, lo, up) == p``, clamped to ``[-limit, limit]``.

    The logit is taken of the distance to the nearer bound divided by the
    width, so it is accurate near both bounds. Values on (or outside) a bound
    give ``±limit``; a zero-width box gives 0.
    """
    half = 0.5 * up - 0.5 * lo
    upper_half = p >= lo + half
    d = jnp.where(upper_half, up - p, p - lo)
    wide = half > 0
    # u = d / (2 * half) = sigmoid(-|x|). XLA divides by multiplying with the
    # reciprocal, which is subnormal (flushed to zero) for half > 2**126 in
    # float32; dividing by the mantissa and shifting by the exponent is not.
    m, e = jnp.frexp(jnp.where(wide, half, 1))
    u = jnp.ldexp(d, -e) / (2 * m)
    u = jnp.clip(u, _sigmoid_near(jnp.asarray(limit, p.dtype)), 0.5)
    # |x| = log(1 - u) - log(u). XLA's float64 log1p is off by up to ~100 ulp
    # for arguments near -0.41; 1 - u rounds by at most half an ulp there.
    t = jnp.where(u < 0.1, jnp.log1p(-u), jnp.log(1 - u)) - jnp.log(u)
    return jnp.where(wide, jnp.where(upper_half, t, -t), 0)


def softplus_inverse(v: jax.Array, limit: float) -> jax.Array:
    """The ``x`` with ``softplus(x) == v``, at least ``-limit`` (finite for ``v <= 0``).

    ``x = v + log(-expm1(-v))`` is accurate for tiny ``v`` (where it is
    ``log(v)``) and for large ``v`` (where it is ``v``).
    """
    v = jnp.maximum(v, jax.nn.softplus(jnp.asarray(-limit, v.dtype)))
    return v + jnp.log(-jnp.expm1(-v))


@jax.custom_jvp
def _clip_straight(y: jax.Array, lo: jax.Array, up: jax.Array) -> jax.Array:
    """``clip(y, lo, up)`` whose derivative is 1: rounding fix-ups keep the slope."""
    return jnp.minimum(jnp.maximum(y, lo), up)


@_clip_straight.defjvp
def _clip_straight_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    return _clip_straight(*primals), tangents[0]


# -- per leaf ------------------------------------------------------------------


def _finite(bound: Any, c: Any, side: str) -> tuple[Any, Any]:
    """``bound`` in dtype ``c`` and where it is a real bound: a Python bool or a mask.

    The plan gives ``None`` for an open side; any other bound is a value
    (traced inside the compiled map) that may hold infinities, decided per
    element.
    """
    if bound is None:
        return None, False
    b = jnp.asarray(bound, c)
    return b, (b > -jnp.inf) if side == "lower" else (b < jnp.inf)


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return a & b


def _pick(cond: Any, if_true: Any, if_false: Any) -> jax.Array:
    """``where(cond, if_true(), if_false())``; a static ``cond`` evaluates one side."""
    if cond is True:
        return if_true()
    if cond is False:
        return if_false()
    return jnp.where(cond, if_true(), if_false())


def _safe(b: Any, cond: Any, fill: float) -> Any:
    """``b`` where ``cond``, else a finite stand-in (a "double where")."""
    return b if cond is True else jnp.where(cond, b, fill)


def _branches(x: jax.Array, lo: Any, up: Any, maps: tuple) -> jax.Array:
    """Apply ``maps = (two_sided, lower_only, upper_only)`` per element of ``x``."""
    c = x.dtype
    lo, has_lo = _finite(lo, c, "lower")
    up, has_up = _finite(up, c, "upper")
    both = _and(has_lo, has_up)
    two_sided, lower_only, upper_only = maps
    return _pick(
        both,
        lambda: two_sided(x, _safe(lo, both, 0.0), _safe(up, both, 1.0)),
        lambda: _pick(
            has_lo,
            lambda: lower_only(x, _safe(lo, has_lo, 0.0)),
            lambda: _pick(
                has_up, lambda: upper_only(x, _safe(up, has_up, 0.0)), lambda: x
            ),
        ),
    )


def constrain_leaf(raw: Any, lo: Any, up: Any) -> jax.Array:
    """One leaf of `constrain`: ``raw`` mapped into ``[lo, up]`` (``None``: open)."""
    raw = jnp.asarray(raw)
    dtype = raw.dtype
    maps = (
        two_sided,
        lambda x, lo: lo + jax.nn.softplus(x),
        lambda x, up: up - jax.nn.softplus(-x),
    )
    y = _branches(raw.astype(compute_dtype(dtype)), lo, up, maps).astype(dtype)

    # Rounding (to the dtype, or of the midpoint) must not leave the box as
    # `bounds_cost` sees it; the fix-up moves values by an ulp at most and
    # leaves the gradient alone (it is in `y` already, bounds' included).
    lo, up = (None if b is None else jax.lax.stop_gradient(b) for b in (lo, up))
    return _clip_straight(y, *inward_edges(lo, up, dtype))


def unconstrain_leaf(p: Any, lo: Any, up: Any) -> jax.Array:
    """One leaf of `unconstrain`: the raw value that `constrain_leaf` maps to ``p``."""
    p = jnp.asarray(p)
    dtype = p.dtype
    limit = raw_limit(dtype)
    maps = (
        lambda x, lo, up: two_sided_inverse(x, lo, up, limit),
        lambda x, lo: softplus_inverse(x - lo, limit),
        lambda x, up: -softplus_inverse(up - x, limit),
    )
    return _branches(p.astype(compute_dtype(dtype)), lo, up, maps).astype(dtype)
