"""Reductions over a parameter tree: the bounds cost and the projection.

Both start from a *plan*: the params tree is checked against its bound trees
(same structure, lower <= upper, finite bounds only on float leaves, array
bounds broadcastable), and every leaf is classified by its bounds. Bounds
given as Python floats are *static*: they go into the jit cache key, and a
leaf whose two bounds are static infinities does no work at all. Array bounds
are *dynamic*: they are passed to the compiled function as arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _penalty
from ._tree import (
    PyTree,
    _is_none,
    as_numpy_if_concrete,
    check_same_structure,
    flatten_with_paths,
    is_param_leaf,
    static_bound,
)

#: Marks a bound passed to the compiled function as an array argument.
ARRAY = "array"


class Plan(NamedTuple):
    """A params tree split by its bounds.

    ``indices[k]`` is the position (among ``leaves``) of the ``k``-th bounded
    leaf; ``spec[k]`` is its ``(lower, upper)``, each ``None`` (no bound on
    that side), a float (static) or `ARRAY`; ``arrays`` holds the array
    bounds in order of appearance in ``spec``.
    """

    treedef: Any
    leaves: list[Any]
    indices: tuple[int, ...]
    spec: tuple[tuple[Any, Any], ...]
    arrays: list[Any]


def _path(params: PyTree, index: int) -> str:
    return flatten_with_paths(params)[0][index][0] or "<root>"


def _classify(params: PyTree, index: int, leaf: Any, bound: Any, side: str) -> Any:
    """A bound as ``None`` (infinite on its own side), a float, or an array."""
    if bound is None:
        return None
    if type(bound) is float and -math.inf < bound < math.inf:
        return bound  # the common case, checked first: eager calls pay per leaf
    try:
        value = static_bound(bound)
    except TypeError:
        raise TypeError(
            f"{side} bound at {_path(params, index)!r} is a bool; use a float"
        ) from None
    if value is not None:
        if math.isnan(value):
            raise ValueError(f"{side} bound at {_path(params, index)!r} is NaN")
        if value == (-math.inf if side == "lower" else math.inf):
            return None
        if value == (math.inf if side == "lower" else -math.inf):
            raise ValueError(
                f"{side} bound at {_path(params, index)!r} is {value}: no value "
                "satisfies it"
            )
        return value
    if not hasattr(bound, "shape") or not hasattr(bound, "dtype"):
        raise TypeError(
            f"{side} bound at {_path(params, index)!r} must be a float or an "
            f"array, got {type(bound).__name__}"
        )
    shape = np.shape(leaf)
    try:
        broadcast = np.broadcast_shapes(bound.shape, shape)
    except ValueError:
        broadcast = None
    if broadcast != shape:
        raise ValueError(
            f"{side} bound at {_path(params, index)!r} has shape {bound.shape}, "
            f"which does not broadcast to the parameter's shape {shape}"
        )
    return bound


def _spans_processes(x: Any) -> bool:
    """Whether ``x`` is a global array that no single process can read whole."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


@jax.jit
def _first_crossing(lo: Any, up: Any) -> tuple[jax.Array, ...]:
    """``(any NaN, flat index of the first lo > up (else size), lo there, up there)``.

    Elementwise operations and scalar reductions only, so on arrays sharded
    over several processes (multi-host) nothing is gathered, and every
    process receives the same replicated scalars.
    """
    lo, up = jnp.broadcast_arrays(lo, up)
    flat = jnp.arange(lo.size).reshape(lo.shape)
    first = jnp.min(jnp.where(_crossed(lo, up), flat, lo.size))
    at = flat == first
    nan = jnp.any(jnp.isnan(lo)) | jnp.any(jnp.isnan(up))
    return nan, first, jnp.sum(jnp.where(at, lo, 0)), jnp.sum(jnp.where(at, up, 0))


def _crossed(lo: Any, up: Any) -> Any:
    """Where no value satisfies the bounds: lo > up, lo = inf or up = -inf."""
    return (lo > up) | (lo == math.inf) | (up == -math.inf)


def _check_order(params: PyTree, index: int, lo: Any, up: Any) -> None:
    """Raise if no value satisfies the bounds somewhere, or a bound is NaN.

    Only for values known now (not tracers). A missing side counts as its
    infinity, so a one-sided array bound is checked too.
    """
    if lo is None and up is None:
        return
    lo = -math.inf if lo is None else lo
    up = math.inf if up is None else up
    if type(lo) is float and type(up) is float and lo <= up:
        if lo < math.inf and up > -math.inf:
            return  # two Python floats in order: nothing to look at
    if isinstance(lo, jax.core.Tracer) or isinstance(up, jax.core.Tracer):
        return
    if _spans_processes(lo) or _spans_processes(up):
        nan, first, lo_at, up_at = jax.device_get(_first_crossing(lo, up))
        shape = np.broadcast_shapes(np.shape(lo), np.shape(up))
        crossed = int(first) < math.prod(shape)
        first = np.unravel_index(int(first), shape) if crossed else ()
    else:
        lo_np = as_numpy_if_concrete(lo)
        up_np = as_numpy_if_concrete(up)
        nan = np.isnan(lo_np).any() or np.isnan(up_np).any()
        bad = np.broadcast_to(_crossed(lo_np, up_np), np.broadcast(lo_np, up_np).shape)
        crossed = bad.any()
        first = tuple(np.argwhere(bad)[0]) if crossed else ()
        lo_at = np.broadcast_to(lo_np, bad.shape)[first]
        up_at = np.broadcast_to(up_np, bad.shape)[first]
    if nan:
        raise ValueError(f"bound at {_path(params, index)!r} contains NaN")
    if crossed:
        first = tuple(int(i) for i in first)
        raise ValueError(
            f"lower > upper at {_path(params, index)!r}"
            + (f", element {first}" if first else "")
            + f": {lo_at} > {up_at}"
        )


def plan(params: PyTree, lower: PyTree, upper: PyTree) -> Plan:
    """Check ``lower``/``upper`` against ``params`` and classify every leaf.

    Raises `ValueError` / `TypeError` naming the path of the first offending
    leaf. `None` leaves of ``params`` (equinox filter holes) are skipped, and
    so are non-float leaves whose bounds are infinite.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=_is_none)
    lows, lower_def = jax.tree_util.tree_flatten(lower, is_leaf=_is_none)
    ups, upper_def = jax.tree_util.tree_flatten(upper, is_leaf=_is_none)
    # Same test as check_same_structure, on trees flattened once (eager calls
    # pay for every traversal); on a mismatch it raises, naming the path.
    if lower_def != treedef:
        check_same_structure(params, lower, "lower")
    if upper_def != treedef:
        check_same_structure(params, upper, "upper")
    indices, spec, arrays = [], [], []
    for i, (p, lo, up) in enumerate(zip(leaves, lows, ups)):
        if p is None:
            continue
        lo = _classify(params, i, p, lo, "lower")
        up = _classify(params, i, p, up, "upper")
        if lo is None and up is None:
            continue
        if not is_param_leaf(p):
            raise TypeError(
                f"finite bound on {_path(params, i)!r}, which holds "
                f"{type(p).__name__} (not a float array): a bound there would be "
                "ignored; remove it or make the leaf a float array"
            )
        _check_order(params, i, lo, up)
        entry = []
        for b in (lo, up):
            if b is None or isinstance(b, float):
                entry.append(b)
            else:
                entry.append(ARRAY)
                arrays.append(b)
        indices.append(i)
        spec.append(tuple(entry))
    return Plan(treedef, leaves, tuple(indices), tuple(spec), arrays)


def _unpack(spec: tuple, arrays: list) -> list[tuple[Any, Any]]:
    it = iter(arrays)
    return [tuple(next(it) if b == ARRAY else b for b in pair) for pair in spec]


def _one_device() -> bool:
    """Whether this process sees one device only: then no array is sharded."""
    one = jax.process_count() == 1 and jax.device_count() == 1
    return one and len(jax.devices("cpu")) == 1


#: Elements per step when a large leaf is summed in a loop (see `_summed`).
_CHUNK = 1 << 20


def _summed(f: Any, x: jax.Array) -> jax.Array:
    """``sum(f(x))`` for an elementwise ``f`` and a flat ``x``.

    XLA's CPU reductions fuse only simple producers into the sum, so
    ``sum(f(x))`` first writes ``f(x)`` out in full, and a fresh buffer the
    size of a large leaf costs more than the arithmetic. On CPU, a large
    ``x`` is therefore summed in chunks in a loop (the chunk's buffer is
    reused); on other platforms it is the plain sum. Only for one device: a
    loop over slices of a sharded ``x`` would gather it.
    """
    n = x.shape[0]
    if n <= _CHUNK:
        return jnp.sum(f(x))

    def chunked(x: jax.Array) -> jax.Array:
        def step(i: Any, total: jax.Array) -> jax.Array:
            return total + jnp.sum(
                f(jax.lax.dynamic_slice(x, (i * _CHUNK,), (_CHUNK,)))
            )

        k = n // _CHUNK
        return jax.lax.fori_loop(0, k, step, jnp.sum(f(x[k * _CHUNK :])))

    return jax.lax.platform_dependent(x, cpu=chunked, default=lambda x: jnp.sum(f(x)))


def _outside(v: jax.Array, penalty: Any, fn: Any, dtype: Any) -> jax.Array:
    """``d/dv one_sided(v, fn)``: ``fn'(v)`` where ``v > 0``, else 0.

    ``fn`` only sees ``v >= 0``, as in `one_sided`.

    For "exp" the derivative is written out, ``exp(min(v, switch))`` (the
    penalty continues with slope ``exp(switch)`` past the switch): one
    exponential instead of autodiff's selects and divisions for min and max.
    """
    outside = v > 0
    zero = jnp.zeros_like(v)
    u = jax.lax.select(outside, v, zero)
    if isinstance(penalty, str) and penalty == "exp":
        slope = jnp.exp(jnp.minimum(u, _penalty.exp_switch(dtype)))
    else:
        slope = jax.jvp(fn, (u,), (jnp.ones_like(u),))[1].astype(v.dtype)
    return jax.lax.select(outside, slope, zero)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _leaf_value(
    p: jax.Array, lo: Any, up: Any, penalty: Any, ordered: bool
) -> jax.Array:
    """``sum(elementwise(p, lo, up, penalty))``.

    ``ordered``: both bounds are static floats with ``lo <= up`` (checked by
    `plan`), so at most one side is violated and one penalty evaluation per
    element suffices.
    """
    fn = _penalty.resolve(penalty, p.dtype)

    def f(p: jax.Array) -> jax.Array:
        if not ordered:
            return _penalty.elementwise(p, lo, up, fn)
        x = p.astype(_penalty.compute_dtype(p.dtype))
        v = jnp.maximum(jnp.asarray(lo, x.dtype) - x, x - jnp.asarray(up, x.dtype))
        return _penalty.one_sided(v, fn)

    if getattr(lo, "ndim", 0) or getattr(up, "ndim", 0) or not _one_device():
        return jnp.sum(f(p))  # array bounds broadcast against p; p maybe sharded
    return _summed(f, jnp.ravel(p))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _leaf_slopes(p: jax.Array, lo: Any, up: Any, penalty: Any, ordered: bool) -> tuple:
    """Per element, the derivative of `_leaf_value` with respect to ``lo`` and ``up``.

    Its derivative with respect to ``p`` is ``up_slope - lo_slope``; a side
    without a bound has slope `None`.
    """
    fn = _penalty.resolve(penalty, p.dtype)
    x = p.astype(_penalty.compute_dtype(p.dtype))
    lo_x = None if lo is None else jnp.asarray(lo, x.dtype) - x
    x_up = None if up is None else x - jnp.asarray(up, x.dtype)
    if ordered:  # one side at most is violated: one slope per element
        below = lo_x > x_up
        slope = _outside(jax.lax.select(below, lo_x, x_up), penalty, fn, p.dtype)
        zero = jnp.zeros_like(slope)
        return jax.lax.select(below, slope, zero), jax.lax.select(below, zero, slope)
    return tuple(
        None if v is None else _outside(v, penalty, fn, p.dtype) for v in (lo_x, x_up)
    )


def _tangent(slopes: tuple, dp: jax.Array, dlo: Any, dup: Any) -> jax.Array:
    """The directional derivative of `_leaf_value` from its slopes."""
    lo_slope, up_slope = slopes
    dx = dp.astype((lo_slope if up_slope is None else up_slope).dtype)
    total = jnp.zeros((), dx.dtype)
    if lo_slope is not None:
        total = total + jnp.sum(lo_slope * (jnp.asarray(dlo, dx.dtype) - dx))
    if up_slope is not None:
        total = total + jnp.sum(up_slope * (dx - jnp.asarray(dup, dx.dtype)))
    return total


def penalty_gradient(p: jax.Array, lo: Any, up: Any, penalty: Any) -> jax.Array:
    """Per element, ``d/dp sum(elementwise(p, lo, up, penalty))``, in at least float32.

    The derivative `bounds_cost` itself uses (`_leaf_slopes`), for callers
    that add the gradient directly, as `add_bounds_penalty` does.
    """
    lo_slope, up_slope = _leaf_slopes(p, lo, up, penalty, False)
    if lo_slope is None:
        return up_slope
    if up_slope is None:
        return -lo_slope
    return up_slope - lo_slope


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _leaf_cost(
    p: jax.Array, lo: Any, up: Any, penalty: Any, ordered: bool
) -> jax.Array:
    """`_leaf_value`, with its derivative written out.

    Autodiff of the penalty's double-where keeps intermediates of the value
    for the backward pass, and XLA (on CPU) writes them out as arrays the
    size of ``p``. The written-out derivative is one elementwise expression
    of ``p`` that XLA fuses into the gradient it writes; the value and the
    slopes are jitted functions, so their traces are reused across leaves
    of the same shape.
    """
    return _leaf_value(p, lo, up, penalty, ordered)


@_leaf_cost.defjvp
def _leaf_cost_jvp(
    penalty: Any, ordered: bool, primals: tuple, tangents: tuple
) -> tuple[jax.Array, jax.Array]:
    p, lo, up = primals
    dp, dlo, dup = tangents
    slopes = _leaf_slopes(p, lo, up, penalty, ordered)
    return _leaf_value(p, lo, up, penalty, ordered), _tangent(slopes, dp, dlo, dup)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _group_cost(leaves: tuple, lo: Any, up: Any, penalty: Any) -> jax.Array:
    """The summed `_leaf_cost` of leaves of one dtype with the same static bounds.

    The value is computed on the leaves concatenated: one elementwise pass
    and one reduction, where one per leaf would cost a kernel launch each
    (an eager call on a tree of many small leaves is dominated by them).
    The derivative is taken leaf by leaf: the gradient of a concatenation
    is a set of slices, which XLA compiles slowly when there are many.
    Only used with one device (concatenating sharded leaves would move
    them).
    """
    x = jnp.concatenate([jnp.ravel(p) for p in leaves])
    return _leaf_value(x, lo, up, penalty, lo is not None and up is not None)


@_group_cost.defjvp
def _group_cost_jvp(
    lo: Any, up: Any, penalty: Any, primals: tuple, tangents: tuple
) -> tuple[jax.Array, jax.Array]:
    (leaves,), (dleaves,) = primals, tangents
    ordered = lo is not None and up is not None
    parts = [
        _tangent(_leaf_slopes(p, lo, up, penalty, ordered), dp, 0.0, 0.0)
        for p, dp in zip(leaves, dleaves)
    ]
    return _group_cost(leaves, lo, up, penalty), functools.reduce(jnp.add, parts)


#: Leaves larger than this are not concatenated with others (a copy).
_GROUP_MAX_SIZE = 1 << 16


@functools.partial(jax.jit, static_argnames=("spec", "penalty"))
def _cost(leaves: list, arrays: list, spec: tuple, penalty: Any) -> jax.Array:
    # Terms are summed in leaf order (a group at its first leaf), as they are
    # when every bound is an array: the same float sum either way.
    terms, groups, one_device = {}, {}, _one_device()
    for i, (p, (lo, up), kinds) in enumerate(zip(leaves, _unpack(spec, arrays), spec)):
        p = jnp.asarray(p)
        if ARRAY in kinds:
            terms[i] = _leaf_cost(p, lo, up, penalty, False)
        else:
            alone = i if p.size > _GROUP_MAX_SIZE or not one_device else None
            groups.setdefault((lo, up, p.dtype, alone), {})[i] = p
    for (lo, up, _, _), group in groups.items():
        first, *rest = group
        if rest:
            terms[first] = _group_cost(tuple(group.values()), lo, up, penalty)
        else:
            # Sharded, the sum is kept as it is computed with traced bounds.
            ordered = lo is not None and up is not None and one_device
            terms[first] = _leaf_cost(group[first], lo, up, penalty, ordered)
    return functools.reduce(jnp.add, [terms[i] for i in sorted(terms)])


def _result_dtype(leaves: list) -> Any:
    dtypes = [_penalty.compute_dtype(jnp.result_type(x)) for x in leaves]
    return functools.reduce(jnp.promote_types, dtypes, jnp.dtype(jnp.float32))


def bounds_cost(
    params: PyTree,
    lower: PyTree,
    upper: PyTree,
    *,
    penalty: _penalty.Penalty = "exp",
) -> jax.Array:
    """Differentiable cost of the elements of ``params`` outside ``[lower, upper]``.

    Rockpool's ``bounds_cost`` on any pytree. Per element, with the violation
    ``v = lower - p`` below or ``v = p - upper`` above, the default ``"exp"``
    penalty costs ``exp(v)`` where ``v > 0`` and 0 inside, so an element just
    outside costs 1.0 and the cost grows exponentially; the costs are summed
    over elements and leaves. Past ``v = 15`` (``10`` for float16 params)
    the curve continues along its tangent, so value and gradient stay finite
    for any violation (Rockpool returns ``inf`` there); up to that point the
    numbers are Rockpool's. Other penalties: ``"quadratic"`` (``v**2``),
    ``"linear"`` (``v``), or a callable ``f(v)`` applied to the violations
    (``f`` must be finite, with a finite derivative, for ``v >= 0``; pass the
    same function object each call so the compiled function is reused).

    ``lower`` and ``upper`` must have the structure of ``params`` (see
    `make_bounds`); each leaf is a Python float (``-inf``/``inf`` or `None`:
    no bound on that side) or an array broadcastable to the parameter.
    Leaves that are `None` in ``params`` are skipped, and so are leaves whose
    two bounds are infinite Python floats (at trace time: they cost nothing).

    The computation is jit-compiled and cached on the tree structure and the
    Python-float bounds, so an eager call is a single dispatch; it also works
    inside `jax.jit`, `jax.grad` and `jax.vmap`. It runs in at least float32:
    the result is float32 for float16/bfloat16/float32 params and float64 for
    float64 params (with x64 enabled).

    Raises:
        ValueError: a bound tree has another structure (the first differing
            path is named), ``lower > upper`` at some path (checked for
            concrete bounds), or an array bound does not broadcast.
        TypeError: a finite bound sits on a leaf that is not a float array.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxbounds import make_bounds
        >>> params = {"tau_syn": jnp.array([0.1, -1e-6]), "bias": jnp.zeros(2)}
        >>> lower, upper = make_bounds(params)
        >>> lower["tau_syn"], upper["tau_syn"] = 0.0, 0.2
        >>> print(bounds_cost(params, lower, upper))
        1.000001
        >>> print(jax.grad(bounds_cost)(params, lower, upper)["tau_syn"])
        [ 0.       -1.000001]
    """
    _penalty.resolve(penalty, jnp.float32)
    p = plan(params, lower, upper)
    if not p.indices:
        return jnp.zeros((), _result_dtype([x for x in p.leaves if is_param_leaf(x)]))
    leaves = [p.leaves[i] for i in p.indices]
    return _cost(leaves, p.arrays, spec=p.spec, penalty=penalty)


def summed_exp_boundary_loss(
    data: Any,
    lower_bound: Any = None,
    upper_bound: Any = None,
) -> jax.Array:
    """Summed exponential cost of the elements of ``data`` outside the bounds.

    Rockpool's ``training.torch_loss.summed_exp_boundary_loss`` for a JAX
    array: ``sum(exp(data - upper_bound))`` over elements above the upper
    bound plus ``sum(exp(lower_bound - data))`` over elements below the lower
    bound. `None` means no bound on that side. Unlike Rockpool's torch
    version, a bound of ``0.0`` is a real bound (Rockpool skips falsy
    bounds). Overflow-safe like `bounds_cost`, whose single-leaf case this is.

    Examples:
        >>> import jax.numpy as jnp
        >>> print(summed_exp_boundary_loss(jnp.array([-1.0, 0.5]), lower_bound=0.0))
        2.7182817
        >>> print(summed_exp_boundary_loss(jnp.array([-1.0, 0.5])))
        0.0
    """
    data = jnp.asarray(data)
    if not is_param_leaf(data):
        raise TypeError(f"`data` must be a float array, got dtype {data.dtype}")
    return bounds_cost(data, lower_bound, upper_bound)


def inward(bound: Any, dtype: Any, side: str) -> jax.Array:
    """``bound`` represented in ``dtype``, rounded towards the inside of the box.

    Rounding to nearest can move a bound outwards (``float16(0.1) < 0.1``),
    so a value clipped to it would still violate the bound as `bounds_cost`
    sees it. A lower bound is rounded up, an upper bound down.
    """
    wide = jnp.asarray(bound, _penalty.compute_dtype(dtype))
    narrow = wide.astype(dtype)
    if side == "lower":
        return jnp.where(
            narrow.astype(wide.dtype) < wide, jnp.nextafter(narrow, jnp.inf), narrow
        ).astype(dtype)
    return jnp.where(
        narrow.astype(wide.dtype) > wide, jnp.nextafter(narrow, -jnp.inf), narrow
    ).astype(dtype)


def clip_leaf(p: jax.Array, lo: Any, up: Any) -> jax.Array:
    """``p`` clipped to ``[lo, up]`` (``None``: open side), in ``p``'s dtype."""
    p = jnp.asarray(p)
    if lo is not None:
        p = jnp.maximum(p, inward(lo, p.dtype, "lower"))
    if up is not None:
        p = jnp.minimum(p, inward(up, p.dtype, "upper"))
    return p


@functools.partial(jax.jit, static_argnames=("spec",))
def _clip(leaves: list, arrays: list, spec: tuple) -> list:
    return [clip_leaf(p, lo, up) for p, (lo, up) in zip(leaves, _unpack(spec, arrays))]


def clip_to_bounds(params: PyTree, lower: PyTree, upper: PyTree) -> PyTree:
    """``params`` with every element moved to the nearest point of ``[lower, upper]``.

    The projection onto the box (Rockpool's ``bounds_clip``), checked like
    `bounds_cost`. The result has exactly zero `bounds_cost`: a bound that is
    not representable in a leaf's dtype is rounded towards the inside before
    clipping, so e.g. a float16 parameter clipped to a lower bound of 0.1
    becomes ``float16(0.1001)``, not ``float16(0.09998)``. (A box narrower
    than the dtype's spacing may hold no value of that dtype; elements
    there end on the inward-rounded upper bound, just below ``lower``.)
    Dtypes are kept; unbounded, non-float and `None` leaves are returned as
    they are.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import make_bounds
        >>> params = {"tau": jnp.array([-1.0, 0.1, 3.0]), "w": jnp.ones(2)}
        >>> lower, upper = make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, 1.0
        >>> clip_to_bounds(params, lower, upper)["tau"]
        Array([0. , 0.1, 1. ], dtype=float32)
    """
    p = plan(params, lower, upper)
    leaves = list(p.leaves)
    if p.indices:
        clipped = _clip([leaves[i] for i in p.indices], p.arrays, spec=p.spec)
        for i, c in zip(p.indices, clipped):
            leaves[i] = c
    return jax.tree_util.tree_unflatten(p.treedef, leaves)


#: Rockpool's name for `clip_to_bounds`.
bounds_clip = clip_to_bounds


@dataclasses.dataclass(frozen=True)
class PathViolations:
    """How one leaf of a params tree sits against its bounds: a `ViolationReport` row.

    ``below`` / ``above`` count the elements under ``lower`` / over
    ``upper``; ``worst_below`` / ``worst_above`` are the largest distances
    outside on each side (0.0 where no element is outside); ``nan`` counts
    NaN elements, which are in no box.
    """

    path: str
    size: int
    below: int
    above: int
    worst_below: float
    worst_above: float
    nan: int

    @property
    def ok(self) -> bool:
        """Whether every element of this leaf is inside its bounds."""
        return not (self.below or self.above or self.nan)


_COLUMNS = ("path", "size", "below", "worst below", "above", "worst above", "nan")


def _cells(row: PathViolations) -> tuple[str, ...]:
    def count(n: int) -> str:
        return str(n) if n else "-"

    def worst(n: int, v: float) -> str:
        return f"{v:.4g}" if n else "-"

    return (
        row.path,
        str(row.size),
        count(row.below),
        worst(row.below, row.worst_below),
        count(row.above),
        worst(row.above, row.worst_above),
        count(row.nan),
    )


@dataclasses.dataclass(frozen=True)
class ViolationReport:
    """Per-path bound violations of a params tree, as plain Python numbers.

    Returned by `violations`. ``rows`` has one `PathViolations` per float
    leaf of the params tree (bounded or not), in tree order;
    ``report[path]`` looks one up. ``str(report)`` is an aligned table of
    the violating paths only, or one line when there are none.
    """

    rows: tuple[PathViolations, ...]

    @property
    def ok(self) -> bool:
        """Whether every parameter element is inside its bounds (and none is NaN)."""
        return all(r.ok for r in self.rows)

    @property
    def size(self) -> int:
        """The number of parameter elements checked."""
        return sum(r.size for r in self.rows)

    @property
    def violating(self) -> tuple[PathViolations, ...]:
        """The rows with at least one element outside its bounds or NaN."""
        return tuple(r for r in self.rows if not r.ok)

    def __getitem__(self, path: str) -> PathViolations:
        for r in self.rows:
            if r.path == path:
                return r
        raise KeyError(f"no float parameter at path {path!r}")

    def __str__(self) -> str:
        bad = self.violating
        if not bad:
            return f"all {self.size} parameters within bounds"
        n = sum(r.below + r.above + r.nan for r in bad)
        table = [_COLUMNS, *(_cells(r) for r in bad)]
        widths = [max(len(line[j]) for line in table) for j in range(len(_COLUMNS))]
        lines = [
            "  ".join(
                cell.ljust(w) if j == 0 else cell.rjust(w)
                for j, (cell, w) in enumerate(zip(line, widths))
            ).rstrip()
            for line in table
        ]
        return "\n".join([f"{n} of {self.size} parameters outside bounds:", *lines])


@functools.partial(jax.jit, static_argnames=("spec",))
def _violation_stats(leaves: list, arrays: list, spec: tuple) -> list:
    """Per leaf: (below, above, worst below, worst above, nan), in one pass."""
    stats = []
    for p, (lo, up) in zip(leaves, _unpack(spec, arrays)):
        x = jnp.asarray(p)
        x = x.astype(_penalty.compute_dtype(x.dtype))
        row = []
        for bound, sign in ((lo, -1), (up, 1)):
            if bound is None:
                row.append((jnp.zeros((), jnp.int32), jnp.zeros((), x.dtype)))
                continue
            v = sign * (x - jnp.asarray(bound, x.dtype))  # > 0: outside
            out = v > 0
            worst = jnp.max(jnp.where(out, v, 0), initial=0)
            row.append((jnp.sum(out), worst))
        (n_lo, w_lo), (n_up, w_up) = row
        stats.append((n_lo, n_up, w_lo, w_up, jnp.sum(jnp.isnan(x))))
    return stats


def violations(params: PyTree, lower: PyTree, upper: PyTree) -> ViolationReport:
    """Which parameters are outside their bounds, by path, on the host.

    For every float leaf: how many elements are below ``lower`` and above
    ``upper``, the worst violation on each side, and how many are NaN (a
    NaN is in no box, so it makes the report not ``ok``). Comparisons are
    made as `bounds_cost` makes them: in at least float32, with the bounds
    cast to that dtype, so ``report.ok`` exactly when the cost is zero (and
    nothing is NaN).

    Call it on concrete values, e.g. on the params a jitted training step
    returned: the numbers are computed in one compiled pass over the tree
    and read back to the host in one transfer. Bounds are checked as for
    `bounds_cost`.

    Raises:
        TypeError: called under a JAX transformation (inside `jax.jit`);
            the report is made of Python numbers. Also as `bounds_cost`.
        ValueError: as `bounds_cost`, naming the offending path.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([-0.5, 0.1, 0.3, -0.2]), "w": jnp.ones(3)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, 0.2
        >>> report = jb.violations(params, lower, upper)
        >>> report.ok, report["tau"].below, report["tau"].worst_below
        (False, 2, 0.5)
        >>> print(report)
        3 of 7 parameters outside bounds:
        path  size  below  worst below  above  worst above  nan
        tau      4      2          0.5      1          0.1    -
        >>> print(jb.violations(jb.clip_to_bounds(params, lower, upper), lower, upper))
        all 7 parameters within bounds
    """
    p = plan(params, lower, upper)
    bounded = dict(zip(p.indices, p.spec))
    named = flatten_with_paths(params)[0]
    rows, spec, leaves = [], [], []
    for i, leaf in enumerate(p.leaves):
        if leaf is None or not is_param_leaf(leaf):
            continue
        rows.append((named[i][0] or "<root>", int(np.size(leaf))))
        spec.append(bounded.get(i, (None, None)))
        leaves.append(leaf)
    if any(isinstance(x, jax.core.Tracer) for x in [*leaves, *p.arrays]):
        raise TypeError(
            "violations() returns Python numbers, so it cannot run under a JAX "
            "transformation; call it outside jax.jit, e.g. on the params a "
            "jitted step returns (use bounds_cost for a traceable measure)"
        )
    stats = jax.device_get(_violation_stats(leaves, p.arrays, spec=tuple(spec)))
    return ViolationReport(
        tuple(
            PathViolations(path, size, int(b), int(a), float(wb), float(wa), int(n))
            for (path, size), (b, a, wb, wa, n) in zip(rows, stats)
        )
    )
