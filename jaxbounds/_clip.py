"""`clip_to_bounds`: the projection onto the box, exact in the leaf's dtype."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._compile import per_leaf
from ._paths import PyTree
from ._plan import map_bounded
from ._rounding import inward


def clip_leaf(p: jax.Array, lo: Any, up: Any) -> jax.Array:
    """``p`` clipped to ``[lo, up]`` (``None``: open side), in ``p``'s dtype.

    The bounds are rounded inwards into ``p``'s dtype first (`inward`).
    """
    p = jnp.asarray(p)
    if lo is not None:
        p = jnp.maximum(p, inward(lo, p.dtype, "lower"))
    if up is not None:
        p = jnp.minimum(p, inward(up, p.dtype, "upper"))
    return p


_clipped = per_leaf(clip_leaf)


def clip_to_bounds(params: PyTree, lower: PyTree, upper: PyTree) -> PyTree:
    """``params`` with every element moved to the nearest point of ``[lower, upper]``.

    The projection onto the box (Rockpool's ``bounds_clip``), checked like
    `bounds_cost`, with the same bounds-are-data rules (traced and batched
    bounds work; a traced infinity clips nothing). The result has exactly
    zero `bounds_cost`: a bound that is not representable in a leaf's dtype
    is rounded towards the inside before clipping, so a float16 parameter
    clipped to a lower bound of 0.1 becomes ``float16(0.10004)``, not
    ``float16(0.09998)``. (A box narrower than the dtype's spacing may hold
    no value of that dtype: see the docs' numerics page.) Dtypes are kept
    (a bounded Python-float parameter comes back as a 0-d array, as
    `jax.grad` returns it); unbounded, non-parameter and `None` leaves are
    returned as they are.

    Args:
        params: the parameter tree.
        lower: lower bounds shaped like ``params`` (see `bounds_cost`).
        upper: upper bounds, likewise.

    Returns:
        A new tree like ``params``; ``params`` is not mutated.

    Raises:
        ValueError: as `bounds_cost`, naming the offending path.
        TypeError: as `bounds_cost`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import clip_to_bounds, make_bounds
        >>> params = {"tau": jnp.array([-1.0, 0.1, 3.0]), "w": jnp.ones(2)}
        >>> lower, upper = make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, 1.0
        >>> clip_to_bounds(params, lower, upper)["tau"]
        Array([0. , 0.1, 1. ], dtype=float32)
        >>> clip_to_bounds({"tau": 1.5, "gain": 2.0}, {"tau": 0.0, "gain": None},
        ...                {"tau": 1.0, "gain": None})
        {'gain': 2.0, 'tau': Array(1., dtype=float32)}
    """
    return map_bounded(_clipped, params, lower, upper)
