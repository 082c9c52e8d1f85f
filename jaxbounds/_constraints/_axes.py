"""Units of a leaf: the axes a norm, sum or order runs over, and rows of units."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: An axis as the kinds take it: `None` (the whole leaf), an int or a tuple.
Axis = int | tuple[int, ...] | None


def static_axis(axis: Any) -> Axis:
    """``axis`` as a hashable value: `None`, an int or a tuple of ints.

    Integers are anything `operator.index` takes (NumPy integers too);
    bools, strings and floats are refused, alone or inside the tuple.

    Raises:
        TypeError: anything else.
    """
    if axis is None:
        return None
    if _integer(axis):
        return operator.index(axis)
    if not isinstance(axis, str):
        try:
            given = tuple(axis)
        except TypeError:
            given = None
        if given is not None and all(_integer(a) for a in given):
            return tuple(operator.index(a) for a in given)
    raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}")


def _integer(a: Any) -> bool:
    """An integer axis: `operator.index` takes it and it is not a bool."""
    if isinstance(a, (bool, np.bool_)):
        return False
    try:
        operator.index(a)
    except TypeError:
        return False
    return True


def unit_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """The non-negative axes of the units for a leaf of ``ndim`` dimensions.

    Raises:
        ValueError: an axis out of range or given twice.
    """
    if axis is None:
        return tuple(range(ndim))
    given = (axis,) if isinstance(axis, int) else axis
    out = []
    for a in given:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"axis {a} is out of range for a leaf of {ndim} dimension(s)"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis!r} names an axis twice")
    return tuple(sorted(out))


def as_rows(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, Callable]:
    """``x`` as a 2-D array, one unit per row, and the function back to ``x``'s shape.

    The unit axes are moved to the end (in order) and flattened into one.
    """
    rest = tuple(a for a in range(x.ndim) if a not in axes)
    moved = jnp.transpose(x, rest + axes)
    kept_shape = moved.shape[: len(rest)]
    rows = moved.reshape((-1, max(1, _size(moved.shape[len(rest) :]))))
    inverse = [0] * x.ndim
    for i, a in enumerate(rest + axes):
        inverse[a] = i

    def back(r: jax.Array) -> jax.Array:
        return jnp.transpose(r.reshape(moved.shape), inverse)

    del kept_shape
    return rows, back


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
