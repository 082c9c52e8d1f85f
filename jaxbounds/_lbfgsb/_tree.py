"""Tree arithmetic for the solver: dot products and reductions leaf by leaf.

Every vector of L-BFGS-B (iterate, gradient, the stored pairs) is a pytree
shaped like the parameters; nothing is ravelled into one vector. A memory of
``m`` pairs is a tree whose leaves carry a leading axis of length ``m``; each
row is stored flat (`row_shape`), and the functions here that meet a memory
read a point's leaf in its row's shape (a reshape of a contiguous array is
free).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .._kernels import one_device


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` (``None`` holes dropped)."""
    return jax.tree_util.tree_leaves(tree)


def tmap(f: Callable[..., Any], *trees: Any) -> Any:
    """`jax.tree_util.tree_map`."""
    return jax.tree_util.tree_map(f, *trees)


def total(values: list[Any], dtype: Any) -> jax.Array:
    """The sum of a list of scalars, in ``dtype`` (0 for none)."""
    out = jnp.zeros((), dtype)
    for v in values:
        out = out + v.astype(dtype)
    return out


def vdot(a: Any, b: Any, dtype: Any) -> jax.Array:
    """``a . b`` over the whole tree, leaf by leaf.

    Args:
        a: a tree.
        b: a tree of the same structure and shapes.
        dtype: the dtype of the result.

    Returns:
        The scalar ``sum_i a_i b_i``.

    Examples:
        >>> import jax.numpy as jnp
        >>> a = {"x": jnp.array([1.0, 2.0]), "y": jnp.array(3.0)}
        >>> print(vdot(a, a, jnp.float32))
        14.0
    """
    return total([jnp.sum(x * y) for x, y in zip(leaves(a), leaves(b))], dtype)


def largest(values: list[Any], dtype: Any, empty: float) -> jax.Array:
    """The maximum of a list of scalars (``empty`` for none)."""
    out = jnp.asarray(empty, dtype)
    for v in values:
        out = jnp.maximum(out, v.astype(dtype))
    return out


def smallest(values: list[Any], dtype: Any, empty: float) -> jax.Array:
    """The minimum of a list of scalars (``empty`` for none)."""
    out = jnp.asarray(empty, dtype)
    for v in values:
        out = jnp.minimum(out, v.astype(dtype))
    return out


def explicit_sharding(x: Any) -> Any:
    """Leaf ``x``'s sharding when it lies on a mesh with an explicit axis, else `None`.

    Only explicit-mesh shardings are visible when tracing.
    """
    sharding = getattr(jax.typeof(x), "sharding", None)
    types = getattr(getattr(sharding, "mesh", None), "axis_types", ())
    if not any(t == jax.sharding.AxisType.Explicit for t in types):
        return None
    return sharding


def replicated(x: Any) -> Any:
    """``out_sharding`` for a small result reduced from leaf ``x``.

    Under an explicit mesh a contraction over a sharded axis must say how its
    result is sharded: replicated. Elsewhere `None` (XLA decides).
    """
    sharding = explicit_sharding(x)
    if sharding is None:
        return None
    return jax.sharding.NamedSharding(sharding.mesh, jax.P())


def split_sharded(x: Any) -> bool:
    """Whether leaf ``x`` is split over an explicit mesh axis (known when tracing).

    Auto-mesh shardings are not visible when tracing: such leaves say `False`.
    """
    sharding = explicit_sharding(x)
    if sharding is None:
        return False
    return any(axis is not None for axis in getattr(sharding, "spec", ()))


def row_shape(x: Any) -> tuple[int, ...]:
    """The shape of one stored row of the memory for a point leaf ``x``.

    Flat on a single device: a multi-dimensional memory leaf that is written
    in place (a pair stored) and also read through a reshape (every dot
    product over a row) is copied by XLA's CPU backend around the write:
    measured (issue 25, jax 0.10, a 1000 x 1000 leaf, m = 10) eight copies
    of the memory per iteration, 150 ms of a 250 ms step. A flat row is read
    and written in place. With several devices the leaf's own shape: a leaf
    may be split over a mesh (an auto mesh is not visible when tracing), and
    a flattened split leaf would have to be gathered.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._kernels import one_device
        >>> row_shape(jnp.zeros((3, 4))) == ((12,) if one_device() else (3, 4))
        True
    """
    shape = tuple(jnp.shape(x))
    return (math.prod(shape),) if one_device() else shape


def as_row(v: Any, row: Any, stacked: int = 0) -> Any:
    """``v``, a point leaf after ``stacked`` leading axes, shaped like a memory row.

    ``row`` is a memory leaf (its first axis the ``m`` slots).
    """
    return jnp.reshape(v, (*jnp.shape(v)[:stacked], *jnp.shape(row)[1:]))


def mem_dot(mem: Any, vs: Sequence[Any], dtype: Any) -> jax.Array:
    """``mem_i . v_k`` for a memory tree with ``m`` rows and ``k`` trees ``vs``.

    The ``k`` points are stacked on a last axis, so that XLA's CPU dot reads
    the memory once at its pace: at 1M variables (``m = 10``, float64, two
    columns) 7.1 ms, against 11.2 ms with the points stacked first.

    Returns:
        The ``(m, k)`` matrix of dot products.
    """
    out: Any = None
    for s, *points in zip(leaves(mem), *map(leaves, vs)):
        v = jnp.stack([as_row(a, s) for a in points], axis=-1)
        nd = jnp.ndim(v) - 1
        axes = (list(range(1, nd + 1)), list(range(nd)))
        part = jnp.tensordot(s, v, axes=axes, out_sharding=replicated(v))
        part = part.astype(dtype)
        out = part if out is None else out + part
    return out


def mem_combine(coef: jax.Array, mem: Any, like: Any) -> Any:
    """``sum_i coef_i mem_i``, a tree shaped like the point ``like``."""
    return tmap(
        lambda s, p: jnp.tensordot(coef.astype(s.dtype), s, axes=1).reshape(
            jnp.shape(p)
        ),
        mem,
        like,
    )


#: Columns per block of `free_grams`' blocked sum over a long flat row.
#: Measured (issue 25, 1M variables, m = 10, float64, 2 CPU cores): one
#: contraction over the whole row 308 ms; blocks of 2048 columns 76 ms, 8192
#: 58 ms, 32768 95 ms (the blocks' products stay in cache).
GRAM_BLOCK = 8192


def _grams(
    s: Any, y: Any, z: Any, r: Any, dtype: Any, out: Any = None
) -> tuple[jax.Array, jax.Array]:
    """`free_grams` of one leaf (rows ``(m, ...)``; the mask ``z`` and ``r``
    shaped like a row)."""
    m = s.shape[0]
    axes = list(range(1, jnp.ndim(s)))
    yf = jnp.where(z, y, 0)
    sf = jnp.where(z, s, 0)
    top = jnp.tensordot(
        jnp.concatenate([yf, sf]), y, axes=(axes, axes), out_sharding=out
    ).astype(dtype)
    rest = jnp.tensordot(s - sf, s, axes=(axes, axes), out_sharding=out).astype(dtype)
    rr = jnp.asarray(r, s.dtype)[None]
    yr = jnp.tensordot(rr, y, axes=(axes, axes), out_sharding=out).astype(dtype)
    sr = jnp.tensordot(rr, s, axes=(axes, axes), out_sharding=out).astype(dtype)
    return jnp.stack([top[:m], top[m:], rest]), jnp.concatenate([yr, sr])


def _blocked_grams(
    s: Any, y: Any, z: Any, r: Any, dtype: Any, slots: int
) -> tuple[jax.Array, jax.Array]:
    """`_grams` of a flat row's first ``slots`` rows, summed over blocks of
    `GRAM_BLOCK` columns (each block cut from the memory, not a copy of its
    first rows: a sliced memory made the sum no faster)."""
    n = z.shape[0]
    whole = n // GRAM_BLOCK

    def block(i: Any, acc: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        def rows(a: Any) -> Any:
            return jax.lax.dynamic_slice(a, (0, i * GRAM_BLOCK), (slots, GRAM_BLOCK))

        def cut(a: Any) -> Any:
            return jax.lax.dynamic_slice_in_dim(a, i * GRAM_BLOCK, GRAM_BLOCK, -1)

        grams, dots = _grams(rows(s), rows(y), cut(z), cut(r), dtype)
        return acc[0] + grams, acc[1] + dots

    zero = (jnp.zeros((3, slots, slots), dtype), jnp.zeros((2, slots), dtype))
    grams, dots = jax.lax.fori_loop(0, whole, block, zero)
    tail = slice(whole * GRAM_BLOCK, n)
    if tail.start < n:
        more, more_dots = _grams(
            s[:slots, tail], y[:slots, tail], z[tail], r[tail], dtype
        )
        grams, dots = grams + more, dots + more_dots
    return grams, dots


def free_grams(
    s: Any, y: Any, free: Any, r: Any, dtype: Any, slots: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """The subspace step's Gram matrices of two memories over a mask ``Z``,
    and ``W^T r``'s products, from the same passes over the memories.

    Returns ``grams``, ``(3, m, m)``: ``Y^T Z Z^T Y``, ``S^T Z Z^T Y`` and
    ``S^T (I - Z Z^T) S``, the free variables' products of ``Y`` with ``Y``
    and ``S`` with ``Y``, and the others' of ``S`` with ``S``; and ``dots``,
    ``(2, m)``: ``Y^T r`` and ``S^T r`` for ``r``, a tree shaped like a point
    (the subspace step's ``Z (g + theta z)``). Per leaf, one contraction of the
    masked ``[Y; S]`` with ``Y`` and one of the complement of ``S`` with
    ``S`` (rather than three masked contractions: a quarter less memory
    traffic), and two small products with ``r``; over a long flat row on one
    device, block by block (`GRAM_BLOCK`), so that ``r``'s products read the
    block while it is in cache: at 1M variables, ``m = 10``, 45 ms against
    53 ms for the Gram matrices and then a pass of its own for ``W^T r``.
    ``slots``: the products of the first ``slots`` rows only, zero elsewhere
    (a memory still filling, `jaxbounds._lbfgsb._memory.few_slots`; at 1M
    variables, 17 ms for 4 rows against 43 ms for 10).
    """
    m = leaves(s)[0].shape[0]
    k = m if slots is None else slots
    grams = jnp.zeros((3, k, k), dtype)
    dots = jnp.zeros((2, k), dtype)
    blocks = one_device()  # (blocks of a split row would gather it)
    for sl, yl, z, rl in zip(leaves(s), leaves(y), leaves(free), leaves(r)):
        out = replicated(z)
        z, rl = as_row(z, sl), as_row(rl, sl)
        if blocks and jnp.ndim(z) == 1 and z.shape[0] >= 2 * GRAM_BLOCK:
            more, more_dots = _blocked_grams(sl, yl, z, rl, dtype, k)
        else:
            more, more_dots = _grams(sl[:k], yl[:k], z, rl, dtype, out)
        grams, dots = grams + more, dots + more_dots
    if k < m:
        grams = jnp.zeros((3, m, m), dtype).at[:, :k, :k].set(grams)
        dots = jnp.zeros((2, m), dtype).at[:, :k].set(dots)
    return grams, dots


def clip_tree(x: Any, lo: Any, up: Any) -> Any:
    """``x`` clipped into ``[lo, up]``, leaf by leaf."""
    return tmap(jnp.clip, x, lo, up)


def reach(x: Any, d: Any, lo: Any, up: Any, dtype: Any, cap: float) -> jax.Array:
    """The largest ``a`` in ``[0, cap]`` with ``x + a d`` inside the box.

    Returns ``cap`` when no bound lies in the way (``cap`` may be ``inf``).
    """

    def leaf(x: Any, d: Any, lo: Any, up: Any) -> Any:
        safe = jnp.where(d == 0, 1, d)
        a = jnp.where(d > 0, (up - x) / safe, jnp.where(d < 0, (lo - x) / safe, cap))
        if math.isfinite(cap):
            # (not with cap = inf: ``x`` is inside, so ``a >= 0`` already, and
            # a clip to inf before the min crashes XLA's CPU runtime, jax 0.10)
            a = jnp.clip(a, 0, cap)
        return jnp.min(a, initial=cap)

    parts = [leaf(*t) for t in zip(*map(leaves, (x, d, lo, up)))]
    return smallest(parts, dtype, cap)
