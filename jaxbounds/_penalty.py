"""Per-element penalties on the violation ``v = lower - p`` or ``v = p - upper``.

A penalty maps a violation ``v > 0`` to a cost; elements with ``v <= 0`` (inside
the box) cost nothing. Penalties are evaluated in at least float32, whatever
the parameter dtype, and never produce NaN for finite inputs: every branch is
fed a value it is finite at (the "double where" pattern), so gradients of the
branch not taken are finite too, also under ``jax_debug_nans``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ._rounding import compute_dtype, violation

Penalty = str | Callable[[jax.Array], jax.Array]

#: Violation past which the "exp" penalty continues linearly (value and slope
#: of ``exp`` matched there). Up to this point the numbers equal Rockpool's.
EXP_SWITCH = 15.0
#: The same for float16 parameters: their gradient ``exp(v)`` must fit in
#: float16 (largest finite value 65504, ``exp(11.09)``).
EXP_SWITCH_FLOAT16 = 10.0

PENALTIES = ("exp", "quadratic", "linear")


def exp_switch(param_dtype: Any) -> float:
    """Where the "exp" penalty turns linear for parameters of ``param_dtype``."""
    if jnp.dtype(param_dtype) == jnp.float16:
        return EXP_SWITCH_FLOAT16
    return EXP_SWITCH


def exp_penalty(v: jax.Array, switch: float = EXP_SWITCH) -> jax.Array:
    """``exp(v)`` up to ``switch``, then the tangent line of ``exp`` at ``switch``.

    Rockpool's ``exp(v)`` overflows to ``inf`` for ``v > 88`` in float32 (and
    its gradient with it). Continuing linearly keeps value and gradient finite
    for any violation a float32 can hold below ~1e32, while matching Rockpool
    exactly wherever Rockpool is finite and below the switch.

    Examples:
        >>> import jax.numpy as jnp
        >>> print(exp_penalty(jnp.array([0.0, 1.0])))
        [1.        2.7182817]
        >>> bool(exp_penalty(jnp.array(1e30)) < jnp.inf)
        True
    """
    return jnp.exp(jnp.minimum(v, switch)) * (1 + jnp.maximum(v - switch, 0))


def penalty_function(
    penalty: Penalty, param_dtype: Any
) -> Callable[[jax.Array], jax.Array]:
    """The elementwise function ``v -> cost`` named by ``penalty``.

    ``"exp"`` (Rockpool's, overflow-safe), ``"quadratic"`` (``v**2``),
    ``"linear"`` (``v``), or a callable applied to the violations as is.
    """
    if callable(penalty):
        return penalty
    if penalty == "exp":
        switch = exp_switch(param_dtype)
        return lambda v: exp_penalty(v, switch)
    if penalty == "quadratic":
        return jnp.square
    if penalty == "linear":
        return lambda v: v
    raise ValueError(
        f"unknown penalty {penalty!r}: use one of {PENALTIES} or a callable v -> cost"
    )


def one_sided(v: jax.Array, fn: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``fn(v)`` where ``v > 0``, else 0; ``fn`` only ever sees ``v >= 0``."""
    outside = v > 0
    return jnp.where(outside, fn(jnp.where(outside, v, 0)), 0)


def elementwise(
    p: jax.Array,
    lower: Any,
    upper: Any,
    penalty: Penalty = "exp",
) -> jax.Array:
    """Per-element cost of ``p`` against ``[lower, upper]`` (``None``: no bound).

    Computed in at least float32; array bounds are cast to that dtype, so
    the parameters' precision (not the bounds') sets the precision. The
    plain reference that the fused forms in `jaxbounds._kernels` must equal.

    Examples:
        >>> import jax.numpy as jnp
        >>> print(elementwise(jnp.array([-1.0, 0.5, 3.0]), 0.0, 1.0))
        [2.7182817 0.        7.389056 ]
    """
    fn = penalty_function(penalty, p.dtype)
    return one_sided(violation(p.astype(compute_dtype(p.dtype)), lower, upper), fn)
