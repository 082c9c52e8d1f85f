"""Validation of bound values: one scalar-bound validator, order and shape checks.

Every bound that reaches jaxbounds (a bound tree's leaf, a `field` or
`nnx.Param` declaration, a value read from a file) is checked here, so a
malformed bound gives the same message wherever it comes from, naming the
path. Checks run on concrete values only: a traced bound is taken as it is
(its maths is written so that an infinity still gives 0 cost and no NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._paths import describe

#: The infinity that means "no bound", by side.
OPEN = {"lower": -math.inf, "upper": math.inf}


def scalar_bound(value: Any, where: str | Callable[[], str], side: str) -> float | None:
    """A bound given as a real number, checked, as a float; `None` for an array.

    The one validator of scalar bounds (bound trees, `field`, saved files):
    a bool is a `TypeError`; NaN, and an infinity no value satisfies
    (``lower=inf``, ``upper=-inf``), are `ValueError`. Equal bounds on both
    sides (a zero-width box) are fine.
    """

    def name() -> str:
        return where() if callable(where) else where

    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name()} is a bool; use a float")
    if isinstance(value, (int, float, np.integer, np.floating)):
        bound = float(value)
    else:
        return None
    if math.isnan(bound):
        raise ValueError(f"{name()} is NaN")
    if bound == -OPEN[side]:
        raise ValueError(f"{name()} is {bound}: no value satisfies it")
    return bound


def _first_crossing(lo: Any, up: Any) -> tuple[Any, ...]:
    """``(any NaN, flat index of the first lo > up (else size), lo there, up there)``.

    Elementwise operations and scalar reductions only (jitted by the caller's
    `jax.jit` below), so on arrays sharded over several processes nothing is
    gathered, and every process receives the same replicated scalars.
    """
    lo, up = jnp.broadcast_arrays(lo, up)
    flat = jnp.arange(lo.size).reshape(lo.shape)
    first = jnp.min(jnp.where(_crossed(lo, up), flat, lo.size))
    at = flat == first
    nan = jnp.any(jnp.isnan(lo)) | jnp.any(jnp.isnan(up))
    return nan, first, jnp.sum(jnp.where(at, lo, 0)), jnp.sum(jnp.where(at, up, 0))


first_crossing = jax.jit(_first_crossing)


def _crossed(lo: Any, up: Any) -> Any:
    """Where no value satisfies the bounds: lo > up, lo = inf or up = -inf."""
    return (lo > up) | (lo == math.inf) | (up == -math.inf)


def _spans_processes(x: Any) -> bool:
    """Whether ``x`` is a global array that no single process can read whole."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def check_order(lo: Any, up: Any, where: Callable[[], str]) -> None:
    """Raise if no value satisfies the bounds somewhere, or a bound is NaN.

    Only for values known now (not tracers). A missing side counts as its
    infinity, so a one-sided array bound is checked too. ``where()`` names
    the path (built only for the message).
    """
    lo = -math.inf if lo is None else lo
    up = math.inf if up is None else up
    if type(lo) is float and type(up) is float:
        if lo <= up:
            return  # two checked Python floats in order: nothing to look at
        raise ValueError(f"lower > upper at {where()}: {lo} > {up}")
    if isinstance(lo, jax.core.Tracer) or isinstance(up, jax.core.Tracer):
        return
    if _spans_processes(lo) or _spans_processes(up):
        nan, first, lo_at, up_at = jax.device_get(first_crossing(lo, up))
        shape = np.broadcast_shapes(np.shape(lo), np.shape(up))
        crossed = int(first) < math.prod(shape)
        index = np.unravel_index(int(first), shape) if crossed else ()
    else:
        lo_np, up_np = np.asarray(lo), np.asarray(up)
        nan = np.isnan(lo_np).any() or np.isnan(up_np).any()
        bad = np.broadcast_to(_crossed(lo_np, up_np), np.broadcast(lo_np, up_np).shape)
        crossed = bool(bad.any())
        index = tuple(np.argwhere(bad)[0]) if crossed else ()
        lo_at = np.broadcast_to(lo_np, bad.shape)[index]
        up_at = np.broadcast_to(up_np, bad.shape)[index]
    if nan:
        raise ValueError(f"bound at {where()} contains NaN")
    if crossed:
        element = tuple(int(i) for i in index)
        raise ValueError(
            f"lower > upper at {where()}"
            + (f", element {element}" if element else "")
            + f": {lo_at} > {up_at}"
        )


def bound_side(bound: Any, side: str, leaf: Any, param: bool, where: Callable[[], str]):
    """One bound leaf as `None` (no bound on this side) or the value to use.

    Raises for a bound that is malformed, that no value satisfies, that does
    not broadcast to the leaf, or that is concretely finite on a leaf that
    is not a parameter.
    """
    if bound is None:
        return None
    if type(bound) is float:  # the common cases first: eager calls pay per leaf
        if bound == OPEN[side]:
            return None
        if param and -math.inf < bound < math.inf:
            return bound
    value = scalar_bound(bound, lambda: f"{side} bound at {where()}", side)
    if value is not None:
        if value == OPEN[side]:
            return None
        if not param:
            raise _not_a_parameter(side, leaf, where)
        return value
    if not (hasattr(bound, "shape") and hasattr(bound, "dtype")):
        raise TypeError(
            f"{side} bound at {where()} must be a float, an array or None, got "
            f"{type(bound).__name__}"
        )
    if not jnp.issubdtype(bound.dtype, jnp.integer) and not jnp.issubdtype(
        bound.dtype, jnp.floating
    ):
        raise TypeError(
            f"{side} bound at {where()} has dtype {bound.dtype}; a bound must be "
            "real-valued"
        )
    traced = isinstance(bound, jax.core.Tracer)
    if not param:
        if traced or (
            not _spans_processes(bound) and np.all(np.asarray(bound) == OPEN[side])
        ):
            return None  # a traced or infinite bound on a non-parameter: ignored
        raise _not_a_parameter(side, leaf, where)
    shape = np.shape(leaf)
    try:
        fits = np.broadcast_shapes(bound.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{side} bound at {where()} has shape {tuple(bound.shape)}, which does "
            f"not broadcast to the parameter's shape {shape}"
        )
    return bound


def _not_a_parameter(side: str, leaf: Any, where: Callable[[], str]) -> TypeError:
    return TypeError(
        f"finite bound on {where()} ({side}), which holds {describe(leaf)}, not a "
        "parameter (a real float array or a Python float in a plain container): "
        "a bound there would be ignored; remove it (None or an infinity) or make "
        "the leaf a float"
    )
