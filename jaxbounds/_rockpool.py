"""Rockpool's names for the bound utilities, with Rockpool's argument conventions.

`summed_exp_boundary_loss` and `ParameterBoundaryRegularizer` are
``rockpool.training.torch_loss``'s, for JAX arrays; `bounds_clip` is
``rockpool.training.jax_loss.bounds_clip``. See the migration page for what
differs from Rockpool, and why.
"""

from __future__ import annotations

from typing import Any

import chex
import equinox as eqx
import jax
import jax.numpy as jnp

from ._clip import clip_to_bounds
from ._cost import bounds_cost

#: Rockpool's name for `clip_to_bounds`.
bounds_clip = clip_to_bounds


def summed_exp_boundary_loss(
    data: Any,
    lower_bound: Any = None,
    upper_bound: Any = None,
) -> chex.Array:
    """Summed exponential cost of the elements of ``data`` outside the bounds.

    Rockpool's ``training.torch_loss.summed_exp_boundary_loss`` for a JAX
    array: ``sum(exp(data - upper_bound))`` over elements above the upper
    bound plus ``sum(exp(lower_bound - data))`` over elements below the lower
    bound. Integer (and bool) data are promoted to JAX's default float dtype,
    as torch promotes them when it subtracts a float bound. Unlike
    Rockpool's torch version, a bound of ``0.0`` is a real bound (Rockpool
    skips falsy bounds). Overflow-safe like `bounds_cost`, whose single-leaf
    case this is.

    Args:
        data: an array (or anything `jax.numpy.asarray` takes) of real numbers.
        lower_bound: a float, an array broadcastable to ``data``, or `None`.
        upper_bound: likewise.

    Returns:
        A scalar array.

    Raises:
        TypeError: ``data`` is complex.
        ValueError: as `bounds_cost`.

    Examples:
        >>> import jax.numpy as jnp
        >>> print(summed_exp_boundary_loss(jnp.array([-1.0, 0.5]), lower_bound=0.0))
        2.7182817
        >>> print(summed_exp_boundary_loss(jnp.array([-1, 2]), 0.0, 1.0))
        5.4365635
    """
    data = jnp.asarray(data)
    if jnp.issubdtype(data.dtype, jnp.complexfloating):
        raise TypeError(f"`data` must be real, got dtype {data.dtype}")
    if not jnp.issubdtype(data.dtype, jnp.floating):
        data = data.astype(jnp.zeros(()).dtype)  # ints, bools: promoted, as torch
    return bounds_cost(data, lower_bound, upper_bound)


class ParameterBoundaryRegularizer(eqx.Module):
    """Holds a pair of bounds once; calling it gives `summed_exp_boundary_loss`.

    Rockpool's ``training.torch_loss.ParameterBoundaryRegularizer`` as an
    `equinox.Module`. `None` means no bound on that side; ``0.0`` is a real
    bound. Calling it returns the scalar cost. The bounds are ordinary
    module fields, so a regulariser stored in a model is a pytree like the
    rest of it (array bounds are leaves, Python floats are treated as
    static by `eqx.filter_jit`).

    Attributes:
        lower_bound: a float, an array or `None`.
        upper_bound: likewise.

    Examples:
        >>> import jax.numpy as jnp
        >>> reg = ParameterBoundaryRegularizer(lower_bound=0.0, upper_bound=1.0)
        >>> print(reg(jnp.array([-1.0, 0.5, 1.0])))
        2.7182817
    """

    lower_bound: Any = None
    upper_bound: Any = None

    def __call__(self, x: jax.Array) -> jax.Array:
        return summed_exp_boundary_loss(x, self.lower_bound, self.upper_bound)
