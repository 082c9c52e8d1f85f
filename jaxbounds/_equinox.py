"""Equinox integration: bounds declared on fields, and a regulariser module."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

from ._cost import summed_exp_boundary_loss


class ParameterBoundaryRegularizer(eqx.Module):
    """Holds a pair of bounds once; calling it gives `summed_exp_boundary_loss`.

    Rockpool's ``training.torch_loss.ParameterBoundaryRegularizer`` as an
    `equinox.Module`. `None` means no bound on that side; ``0.0`` is a real
    bound. The bounds are ordinary module fields, so a regulariser stored in
    a model is a pytree like the rest of it (array bounds are leaves,
    Python floats are treated as static by `eqx.filter_jit`).

    Example:
        >>> import jax.numpy as jnp
        >>> reg = ParameterBoundaryRegularizer(lower_bound=0.0, upper_bound=1.0)
        >>> print(reg(jnp.array([-1.0, 0.5, 1.0])))
        2.7182817
    """

    lower_bound: Any = None
    upper_bound: Any = None

    def __call__(self, x: jax.Array) -> jax.Array:
        return summed_exp_boundary_loss(x, self.lower_bound, self.upper_bound)
