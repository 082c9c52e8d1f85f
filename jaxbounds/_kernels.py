"""The fast forms of the penalty sum and its derivative, and of a sort.

Everything here has a plain reference it must equal (tested against it):
the penalty sum of a leaf is ``jnp.sum(_penalty.elementwise(p, lo, up))``,
with the gradient autodiff gives. The fast forms exist because of how XLA
compiles and runs these sums:

- `leaf_cost` writes its derivative out (`jax.custom_jvp`): autodiff of the
  penalty's double-where keeps intermediates the size of the leaf;
- `group_cost` concatenates many small leaves of one dtype and bound
  pattern, so that the cost of a tree of a thousand small leaves is one
  elementwise pass and one reduction (one kernel launch), not a thousand;
- `summed` sums a large leaf in chunks on CPU, where a reduction does not
  fuse its producer and would first write ``f(x)`` out in full.

The solver's Cauchy walk sorts its chunk of breakpoint times with
`argsort_times`, and its dense path orders the memory's slots with
`argsort_short`; both must equal ``jnp.argsort`` (stable): XLA's CPU sort is
fast for one integer operand only, and a sort is a kernel of its own.

Maps that return one array per leaf (clip, projection) are not grouped: on
XLA's CPU backend every slice split off a concatenation is a kernel of its
own, which compiles slower than the per-leaf map it would replace.

Bounds are `None` (open side) or values: floats, arrays broadcastable to the
leaf, or tracers. Both sides given means ``lo <= up`` (checked by the plan
when concrete), so at most one side is violated per element.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _penalty
from ._rounding import bits_dtype, compute_dtype, violation

#: Elements per step when a large leaf is summed in a loop (see `summed`).
CHUNK = 1 << 20
#: Leaves larger than this are not concatenated with others (a copy).
GROUP_MAX_SIZE = 1 << 16


def one_device() -> bool:
    """Whether this process sees one device only: then no array is sharded."""
    one = jax.process_count() == 1 and jax.device_count() == 1
    return one and len(jax.devices("cpu")) == 1


def argsort_times(t: jax.Array) -> jax.Array:
    """``jnp.argsort(t)`` (stable) for a vector of times ``t >= 0`` (``inf`` too).

    XLA's CPU sort is fast for one integer operand, and slow for floats and
    for several operands (36864 times: ``jnp.argsort`` 7.5 ms, a key-value
    sort of int64 keys 6.9 ms, one int64 operand 1.4 ms). The bit pattern of
    a non-negative float, read as an integer, orders like its value. So the
    patterns are sorted (one integer operand), each time's rank among them
    is found by binary search (`jnp.searchsorted`), and ``rank * 2^16 +
    index`` sorted (one integer operand) is the stable order: 3.5 ms, and
    0.15 against 0.26 ms at 1152 times. Vectors of ``2^16`` times or more (the
    key would not fit 32 bits) take ``jnp.argsort``.

    Examples:
        >>> import jax.numpy as jnp
        >>> print(argsort_times(jnp.array([0.5, jnp.inf, 0.25, 0.5, 0.0])))
        [4 2 0 3 1]
    """
    k = t.shape[0]
    if t.ndim != 1 or k >= 1 << 16:
        return jnp.argsort(t)
    # (abs: -0.0 as 0.0)
    bits = jax.lax.bitcast_convert_type(jnp.abs(t), bits_dtype(t.dtype))
    rank = jnp.searchsorted(jnp.sort(bits), bits, side="left").astype(jnp.uint32)
    key = rank * jnp.uint32(1 << 16) + jnp.arange(k, dtype=jnp.uint32)
    return (jnp.sort(key) & jnp.uint32(0xFFFF)).astype(jnp.int32)


def argsort_short(a: jax.Array) -> jax.Array:
    """``jnp.argsort(a)`` (stable) for a short vector without NaN, by comparing pairs.

    Element ``j``'s place is the number of elements that precede it (smaller,
    or equal with a smaller index), and the order puts each index at its
    place: ``k^2`` comparisons and no sort. For the memory's ``m`` slots
    (``m`` of a few dozen at most) in a vmapped batch of small fits, XLA's
    CPU key-value sort was a dear op of each trip (256 fits of 6 parameters,
    ``m = 10``: about 45 us per trip, out of 1.1 ms).

    Examples:
        >>> import jax.numpy as jnp
        >>> print(argsort_short(jnp.array([3, -1, 0, -1, 7])))
        [1 3 2 0 4]
    """
    k = a.shape[0]
    index = jnp.arange(k)
    first = (a[None, :] < a[:, None]) | (
        (a[None, :] == a[:, None]) & (index[None, :] < index[:, None])
    )
    place = jnp.sum(first, axis=1)  # the place of element j
    at = place[None, :] == index[:, None]  # (place, element)
    return jnp.sum(jnp.where(at, index[None, :], 0), axis=1)


def summed(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """``sum(f(x))`` for an elementwise ``f`` and a flat ``x``.

    On CPU a large ``x`` is summed in chunks of `CHUNK` in a loop (the
    chunk's buffer is reused), plus the remainder; elsewhere it is the plain
    sum. Only for one device: a loop over slices of a sharded ``x`` would
    gather it.
    """
    n = x.shape[0]
    if n <= CHUNK:
        return jnp.sum(f(x))

    def chunked(x: jax.Array) -> jax.Array:
        def step(i: Any, total: jax.Array) -> jax.Array:
            return total + jnp.sum(f(jax.lax.dynamic_slice(x, (i * CHUNK,), (CHUNK,))))

        k = n // CHUNK
        return jax.lax.fori_loop(0, k, step, jnp.sum(f(x[k * CHUNK :])))

    return jax.lax.platform_dependent(x, cpu=chunked, default=lambda x: jnp.sum(f(x)))


def _scalar_bounds(lo: Any, up: Any) -> bool:
    return not (getattr(lo, "ndim", 0) or getattr(up, "ndim", 0))


@functools.partial(jax.jit, static_argnums=(3,))
def leaf_value(p: jax.Array, lo: Any, up: Any, penalty: Any) -> jax.Array:
    """``sum(elementwise(p, lo, up, penalty))``, one penalty per element."""
    fn = _penalty.penalty_function(penalty, p.dtype)

    def f(p: jax.Array) -> jax.Array:
        x = p.astype(compute_dtype(p.dtype))
        return _penalty.one_sided(violation(x, lo, up), fn)

    if not _scalar_bounds(lo, up) or not one_device():
        return jnp.sum(f(p))  # array bounds broadcast against p; p maybe sharded
    return summed(f, jnp.ravel(p))


def _slope(v: jax.Array, penalty: Any, fn: Any, dtype: Any) -> jax.Array:
    """``d/dv one_sided(v, fn)``: ``fn'(v)`` where ``v > 0``, else 0.

    For "exp" the derivative is written out, ``exp(min(v, switch))`` (the
    penalty continues with slope ``exp(switch)`` past the switch): one
    exponential instead of autodiff's selects and divisions.
    """
    outside = v > 0
    zero = jnp.zeros_like(v)
    u = jax.lax.select(outside, v, zero)
    if isinstance(penalty, str) and penalty == "exp":
        slope = jnp.exp(jnp.minimum(u, _penalty.exp_switch(dtype)))
    else:
        slope = jax.jvp(fn, (u,), (jnp.ones_like(u),))[1].astype(v.dtype)
    return jax.lax.select(outside, slope, zero)


@functools.partial(jax.jit, static_argnums=(3,))
def leaf_slopes(p: jax.Array, lo: Any, up: Any, penalty: Any) -> tuple[Any, Any]:
    """Per element, the derivative of `leaf_value` with respect to ``lo`` and ``up``.

    Its derivative with respect to ``p`` is ``up_slope - lo_slope``; an open
    side has slope `None`.
    """
    fn = _penalty.penalty_function(penalty, p.dtype)
    x = p.astype(compute_dtype(p.dtype))
    if lo is None or up is None:
        slope = _slope(violation(x, lo, up), penalty, fn, p.dtype)
        return (None, slope) if lo is None else (slope, None)
    lo_x = jnp.asarray(lo, x.dtype) - x
    x_up = x - jnp.asarray(up, x.dtype)
    below = lo_x > x_up  # one side at most is violated: one slope per element
    slope = _slope(jax.lax.select(below, lo_x, x_up), penalty, fn, p.dtype)
    zero = jnp.zeros_like(slope)
    return jax.lax.select(below, slope, zero), jax.lax.select(below, zero, slope)


def tangent(slopes: tuple[Any, Any], dp: Any, dlo: Any, dup: Any) -> jax.Array:
    """The directional derivative of `leaf_value` from its slopes."""
    lo_slope, up_slope = slopes
    dtype = (lo_slope if up_slope is None else up_slope).dtype
    dx = jnp.asarray(dp).astype(dtype)
    total = jnp.zeros((), dtype)
    if lo_slope is not None:
        total = total + jnp.sum(lo_slope * (jnp.asarray(dlo, dtype) - dx))
    if up_slope is not None:
        total = total + jnp.sum(up_slope * (dx - jnp.asarray(dup, dtype)))
    return total


def penalty_gradient(p: jax.Array, lo: Any, up: Any, penalty: Any) -> jax.Array:
    """Per element, ``d/dp sum(elementwise(p, lo, up, penalty))``, in at least float32.

    The derivative `bounds_cost` itself uses, for callers that add the
    gradient directly (`add_bounds_penalty`).
    """
    lo_slope, up_slope = leaf_slopes(p, lo, up, penalty)
    if lo_slope is None:
        return up_slope
    if up_slope is None:
        return -lo_slope
    return up_slope - lo_slope


def _zero_if_none(t: Any) -> Any:
    return 0.0 if t is None else t


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def leaf_cost(p: jax.Array, lo: Any, up: Any, penalty: Any) -> jax.Array:
    """`leaf_value`, with its derivative written out (see the module docstring)."""
    return leaf_value(p, lo, up, penalty)


@leaf_cost.defjvp
def _leaf_cost_jvp(
    penalty: Any, primals: tuple, tangents: tuple
) -> tuple[jax.Array, jax.Array]:
    p, lo, up = primals
    dp, dlo, dup = tangents
    slopes = leaf_slopes(p, lo, up, penalty)
    value = leaf_value(p, lo, up, penalty)
    return value, tangent(slopes, dp, _zero_if_none(dlo), _zero_if_none(dup))


def _flat_bound(b: Any, p: jax.Array, dtype: Any) -> Any:
    """A bound as a flat vector of ``p``'s size (`None` stays `None`)."""
    if b is None:
        return None
    return jnp.ravel(jnp.broadcast_to(jnp.asarray(b, dtype), np.shape(p)))


def _concat(parts: Sequence[Any]) -> Any:
    return None if parts[0] is None else jnp.concatenate(parts)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def group_cost(leaves: tuple, lows: tuple, ups: tuple, penalty: Any) -> jax.Array:
    """The summed `leaf_cost` of small leaves of one dtype and one bound pattern.

    The value is computed on the leaves concatenated (bounds broadcast to
    each leaf): one elementwise pass and one reduction. The derivative is
    taken leaf by leaf: the gradient of a concatenation is a set of slices,
    which XLA compiles slowly when there are many. Only used with one device
    (concatenating sharded leaves would move them).
    """
    dtype = compute_dtype(leaves[0].dtype)
    x = jnp.concatenate([jnp.ravel(p) for p in leaves])
    lo = _concat([_flat_bound(b, p, dtype) for b, p in zip(lows, leaves)])
    up = _concat([_flat_bound(b, p, dtype) for b, p in zip(ups, leaves)])
    return leaf_value(x, lo, up, penalty)


@group_cost.defjvp
def _group_cost_jvp(
    penalty: Any, primals: tuple, tangents: tuple
) -> tuple[jax.Array, jax.Array]:
    (leaves, lows, ups), (dleaves, dlows, dups) = primals, tangents
    parts = [
        tangent(
            leaf_slopes(p, lo, up, penalty), dp, _zero_if_none(dl), _zero_if_none(du)
        )
        for p, lo, up, dp, dl, du in zip(leaves, lows, ups, dleaves, dlows, dups)
    ]
    return group_cost(leaves, lows, ups, penalty), functools.reduce(jnp.add, parts)


def _unsharded(x: Any) -> bool:
    """Whether ``x`` carries no explicit sharding (JAX's explicit-axes mode)."""
    if x is None or not hasattr(x, "shape"):
        return True
    spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", ())
    return all(s is None for s in spec)


def _groupable(p: Any, lo: Any, up: Any) -> bool:
    """A small leaf whose bounds and itself can be concatenated as they are."""
    return np.size(p) <= GROUP_MAX_SIZE and all(map(_unsharded, (p, lo, up)))


def penalty_sum(leaves: list, lows: list, ups: list, penalty: Any) -> jax.Array:
    """The summed penalty of bounded leaves (inside a compiled function).

    Small leaves are summed per `group_cost` group (dtype and bound
    pattern), large ones (and all of them with several devices) by
    `leaf_cost`. Terms are added in leaf order, a group at its first leaf.
    """
    leaves = [jnp.asarray(p) for p in leaves]  # Python-float parameters too
    terms: dict[int, Any] = {}
    groups: dict[Any, list[int]] = {}
    single = one_device()
    for i, (p, lo, up) in enumerate(zip(leaves, lows, ups)):
        if single and _groupable(p, lo, up):
            key = (jnp.result_type(p), lo is None, up is None)
            groups.setdefault(key, []).append(i)
        else:
            terms[i] = leaf_cost(p, lo, up, penalty)
    for members in groups.values():
        pick = [leaves[i] for i in members]
        if len(members) == 1:
            terms[members[0]] = leaf_cost(
                pick[0], lows[members[0]], ups[members[0]], penalty
            )
            continue
        terms[members[0]] = group_cost(
            tuple(pick),
            tuple(lows[i] for i in members),
            tuple(ups[i] for i in members),
            penalty,
        )
    return functools.reduce(jnp.add, [terms[i] for i in sorted(terms)])
