"""Params, their bounds, and the parameter leaves the solver works on.

The one module of the solver that reads the core: the full bound trees
(``full_bounds``), the exact landing of an update (``land``) and the pure
view of a params tree (``is_none``, ``pure_view``). The rest of the solver
sees only `Split`: the parameter leaves as arrays, their bounds, and how to
put a point back into the params' own tree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._paths import is_none, pure_view
from .._plan import full_bounds
from .._rounding import land


class Split(NamedTuple):
    """Params split into the parameter leaves and the rest."""

    x: Any  # parameter leaves as arrays, None elsewhere
    lo: Any
    up: Any
    rest: list[Any]  # flat leaves, None at parameters
    treedef: Any
    restore: Callable[[Any], Any]
    dtype: Any


def split(params: Any, lower: Any, upper: Any) -> Split:
    """Split ``params`` into parameter leaves (with their bounds) and the rest.

    Args:
        params: any pytree.
        lower: lower bound tree (see `make_bounds`).
        upper: upper bound tree.

    Returns:
        A `Split`; its ``dtype`` is the widest parameter dtype (at least
        float32), the dtype the solver's scalars are computed in.

    Raises:
        ValueError: if the bound trees do not match, or lower > upper.
        TypeError: if a bound is malformed.

    Examples:
        >>> import jax.numpy as jnp
        >>> sp = split({"a": jnp.zeros(2), "n": 3}, {"a": 0.0, "n": None},
        ...            {"a": 1.0, "n": None})
        >>> print(sp.x["a"], sp.x["n"], sp.rest)
        [0. 0.] None [None, 3]
    """
    lo, up = full_bounds(params, lower, upper)
    pure, restore = pure_view(params)
    flat, treedef_ = jax.tree_util.tree_flatten(pure, is_leaf=is_none)
    treedef: Any = treedef_
    los = treedef.flatten_up_to(lo)
    ups = treedef.flatten_up_to(up)
    xs: list[Any] = []
    rest: list[Any] = []
    lo_out: list[Any] = []
    up_out: list[Any] = []
    for p, a, b in zip(flat, los, ups):
        if a is None:
            xs.append(None)
            rest.append(p)
            lo_out.append(None)
            up_out.append(None)
            continue
        a = jnp.asarray(a)
        b = jnp.asarray(b)
        xs.append(jnp.asarray(p))
        rest.append(None)
        # a fixed parameter whose value is not representable rounds to lo > up
        lo_out.append(jnp.minimum(a, b))
        up_out.append(b)
    dts = [x.dtype for x in xs if x is not None]
    dtype = jnp.result_type(jnp.float32, *dts) if dts else jnp.float32
    unflat = functools.partial(jax.tree_util.tree_unflatten, treedef)
    return Split(
        unflat(xs), unflat(lo_out), unflat(up_out), rest, treedef, restore, dtype
    )


def join(sp: Split, x: Any) -> Any:
    """The params tree with parameter leaves ``x`` (the rest as they were)."""
    flat = sp.treedef.flatten_up_to(x)
    merged = [r if v is None else v for v, r in zip(flat, sp.rest)]
    return sp.restore(jax.tree_util.tree_unflatten(sp.treedef, merged))


def land_update(base: Any, target: Any, lo: Any, up: Any) -> Any:
    """An update ``u`` with ``base + u`` (as `optax.apply_updates` rounds it) inside.

    ``target`` is in the box: `_rounding.land`, which lands on it exactly when
    an update of ``base``'s dtype can, and inside whenever ``base`` is.
    """
    return land(base, target, lo, up, base.dtype)


def param_part(sp: Split, tree: Any) -> Any:
    """The parameter leaves of a tree shaped like the params, as arrays."""
    flat = sp.treedef.flatten_up_to(tree)
    xs = sp.treedef.flatten_up_to(sp.x)
    out = [None if x is None else jnp.asarray(v, x.dtype) for x, v in zip(xs, flat)]
    return jax.tree_util.tree_unflatten(sp.treedef, out)


def grads_like(sp: Split, g: Any) -> Any:
    """A gradient tree shaped like the params: `None` at non-parameters."""
    return sp.restore(g)


def updates_like(sp: Split, u: Any) -> Any:
    """Updates shaped like the params: zeros at other arrays, `None` elsewhere."""
    flat = sp.treedef.flatten_up_to(u)
    out = []
    for v, r in zip(flat, sp.rest):
        if v is not None:
            out.append(v)
        elif isinstance(r, (jax.Array, np.ndarray)):
            out.append(jnp.zeros_like(r))
        else:
            out.append(None)
    return sp.restore(jax.tree_util.tree_unflatten(sp.treedef, out))
