"""`bounds_cost`: the differentiable penalty for leaving the box."""

from __future__ import annotations

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp

from . import _kernels, _penalty
from ._compile import compiled
from ._paths import PyTree, param_flags
from ._plan import plan
from ._rounding import compute_dtype

_summed_penalty = compiled(_kernels.penalty_sum, static=("penalty",))


def _result_dtype(leaves: list) -> Any:
    dtypes = [compute_dtype(jnp.result_type(x)) for x in leaves]
    return functools.reduce(jnp.promote_types, dtypes, jnp.dtype(jnp.float32))


def bounds_cost(
    params: PyTree,
    lower: PyTree,
    upper: PyTree,
    *,
    penalty: _penalty.Penalty = "exp",
) -> chex.Array:
    """Differentiable cost of the elements of ``params`` outside ``[lower, upper]``.

    Rockpool's ``bounds_cost`` on any pytree. Per element, with the violation
    ``v = lower - p`` below or ``v = p - upper`` above, the default ``"exp"``
    penalty costs ``exp(v)`` where ``v > 0`` and 0 inside, so an element just
    outside costs 1.0 and the cost grows exponentially; the costs are summed
    over elements and leaves. Past ``v = 15`` (``10`` for float16 params)
    the curve continues along its tangent, so value and gradient stay finite
    for any violation (Rockpool returns ``inf`` there); up to that point the
    numbers are Rockpool's (see the docs' penalty page).

    Bounds are data: finite values, Python floats included, are arguments of
    the compiled function, so changing them does not recompile, and they
    may be traced (`jax.jit` arguments) or batched (`jax.vmap`). Leaves
    whose bounds are `None` or concrete infinities are skipped at trace
    time; a traced infinite bound costs 0 with a 0 gradient (pass bounds as
    a `Box` to keep their infinities static through `jax.jit`). Traced
    bounds are assumed to satisfy ``lower <= upper``. Parameters are what
    JAX differentiates: real float arrays, and Python floats in plain
    containers (a float field of an `equinox.Module` is a hyperparameter);
    other leaves (ints, bools, complex, functions, `None` holes) cost
    nothing, and their bounds must be unbounded or traced (then ignored).

    The result is float32 for float16/bfloat16/float32 params and float64
    for float64 params (with x64 enabled): the sum runs in at least float32.
    An eager call is one compiled dispatch, cached on the tree structure and
    the bound pattern.

    Args:
        params: the parameter tree.
        lower: lower bounds, a tree with the structure of ``params`` (see
            `make_bounds`); each leaf a float, `None` or a broadcastable array.
        upper: upper bounds, likewise.
        penalty: ``"exp"`` (Rockpool's), ``"quadratic"`` (``v**2``),
            ``"linear"`` (``v``), or a callable ``f(v)`` applied to the
            violations ``v > 0`` (finite with a finite derivative for
            ``v >= 0``; pass the same function object each call so the
            compiled function is reused).

    Returns:
        A scalar array.

    Raises:
        ValueError: a bound tree has another structure (what is missing or
            extra is named), ``lower > upper`` or a NaN bound at some path
            (checked for concrete bounds), or an array bound does not
            broadcast to its parameter.
        TypeError: a concrete finite bound sits on a leaf that is not a
            parameter, or a bound is not a number, array or `None`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxbounds import bounds_cost, make_bounds
        >>> params = {"tau_syn": jnp.array([0.1, -1e-6]), "bias": jnp.zeros(2)}
        >>> lower, upper = make_bounds(params)
        >>> lower["tau_syn"], upper["tau_syn"] = 0.0, 0.2
        >>> print(bounds_cost(params, lower, upper))
        1.000001
        >>> print(jax.grad(bounds_cost)(params, lower, upper)["tau_syn"])
        [ 0.       -1.000001]
    """
    _penalty.penalty_function(penalty, jnp.float32)
    pl = plan(params, lower, upper)
    if not pl.indices:
        params = jax.tree_util.tree_unflatten(pl.treedef, pl.leaves)
        flags = param_flags(params, pl.leaves)
        return jnp.zeros((), _result_dtype([x for x, f in zip(pl.leaves, flags) if f]))
    return _summed_penalty(pl.bounded(), pl.lows, pl.ups, penalty=penalty)
