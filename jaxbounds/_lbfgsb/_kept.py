"""The subspace step's free-set Gram matrices, kept from step to step.

The subspace step (`jaxbounds._lbfgsb._subspace`) needs ``Y_F^T Y_F``,
``S_F^T Y_F`` and ``S_A^T S_A`` over the variables free at the Cauchy point
(``F``) and the others (``A``). As scipy's ``formk`` does, they are kept in
their own state (`Kept`) and brought up to date (`sync`): each step
recomputes the row of the pair stored since with one pass over the memory,
and adds or subtracts the outer products of the few variables that entered
or left the free set; when too many changed, they are rebuilt.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._compaction import first_true_sparse
from ._memory import Memory, few_slots, holds_at_most
from ._tree import (
    as_row,
    free_grams,
    leaves,
    mem_dot,
    split_sharded,
    tmap,
    total,
)

#: Leaves with fewer elements get their free-set products from scratch at
#: every step (a pass over a small leaf); larger ones keep them (`Kept`).
KEEP_FROM = 4096
#: Drift: the kept diagonals of the stalest slot may differ from fresh sums by
#: this many ulps of their value before all is refreshed.
DRIFT_ULPS = 1024


class Kept(NamedTuple):
    """The subspace step's kept products, carried from step to step.

    ``grams`` stacks ``Y_F^T Y_F``, ``S_F^T Y_F`` and ``S_A^T S_A`` (``F``
    the variables free in ``free``, ``A`` the others) over the leaves that
    keep them (the large ones); ``written`` marks the memory slots written
    since they were computed; ``stale`` counts, per slot, the incremental
    updates since its row was last computed from scratch.
    """

    free: Any  # bool tree shaped like a point: the mask ``grams`` belong to
    grams: jax.Array  # (3, m, m)
    written: jax.Array  # (m,) bool
    stale: jax.Array  # (m,) int


def new_kept(x: Any, m: int, dtype: Any) -> Kept:
    """Nothing kept yet, for points shaped like ``x`` and ``m`` slots."""
    return Kept(
        # (zero pairs: their products are zero over any mask)
        free=tmap(lambda p: jnp.zeros_like(p, dtype=jnp.bool_), x),
        grams=jnp.zeros((3, m, m), dtype),
        written=jnp.zeros((m,), jnp.bool_),
        stale=jnp.zeros((m,), jnp.int32),
    )


def budget(size: int) -> int:
    """``K``: how many variables of a leaf of ``size`` may enter or leave the
    free set in one step and be corrected for; more, and all is recomputed."""
    return min(size, max(256, size // 32))


def keeps(leaf: Any) -> bool:
    """Whether a leaf's free-set products are kept from step to step.

    Small leaves are cheaper to redo; leaves split over an explicit mesh axis
    are redone too, since finding their changed variables would gather the
    mask across devices.
    """
    return math.prod(jnp.shape(leaf)) >= KEEP_FROM and not split_sharded(leaf)


def sync(
    mem: Memory, cache: Kept, free: Any, r: Any, dtype: Any, refresh: Any = False
) -> tuple[Kept, jax.Array, jax.Array]:
    """The free-set Gram matrices at the mask ``free``, kept up to date.

    Returns ``(cache, grams, dots)``: ``grams`` stacks ``Y_F^T Y_F``,
    ``S_F^T Y_F`` and ``S_A^T S_A`` (``F`` the variables free in ``free``,
    ``A`` the others), ``(3, m, m)``; ``cache`` holds them (its large
    leaves' part) for the next step; ``dots`` stacks ``Y^T r`` and ``S^T r``
    for a tree ``r`` shaped like a point, ``(2, m)``, taken in the same
    passes over the memory (the subspace step's ``W^T q``, with
    ``q = Z (g + theta z)``). From the kept products at the previous mask,
    in the usual case:

    - the variables that entered or left the free set are found by one pass
      over the masks, at most `budget` of them per leaf gathered (a
      compaction of static size), and their outer products added or
      subtracted;
    - the row and column of the slot `push` wrote since (or, if none, of
      the slot with the most updates since its last fresh row) are
      recomputed by one pass over the memory: the products of the masked
      ``z y_j``, ``z s_j``, ``(1 - z) s_j`` (and ``r``) with ``S`` and ``Y``.
      So no row carries more than ``m - 1`` updates.

    Everything is recomputed from scratch (as `free_grams` does) when more
    than one slot was written, more variables changed than a leaf's budget,
    ``refresh`` is true, or drift is detected: the kept diagonals of the
    stalest other slot in use (``y_k^T Z Z^T y_k`` and
    ``s_k^T (I - Z Z^T) s_k``) differ from fresh masked sums of squares by
    more than `DRIFT_ULPS` ulps of their value, or a kept diagonal of a slot
    in use (a sum of squares) is negative, or a kept product of two is not
    finite. On a large problem whose memory holds few pairs (the first
    iterations, where the free set changes most and the products are
    rebuilt), the rebuild reads only the slots that can hold them
    (`jaxbounds._lbfgsb._memory.few_slots`): at 1M variables, iterations 2
    to 5 of a deconvolution, 17 ms instead of 43 ms.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._memory import new_memory, push
        >>> x = jnp.zeros(5000)
        >>> mem = push(new_memory(x, 2, jnp.float32), x + 1, x + 2, jnp.float32)
        >>> kept = new_kept(x, 2, jnp.float32)._replace(written=mem.age >= 0)
        >>> kept, grams, _ = sync(mem, kept, x < 1, x, jnp.float32)  # all free
        >>> print(grams[:, 0, 0].tolist())
        [20000.0, 10000.0, 0.0]
        >>> free = jnp.arange(5000) >= 10  # ten leave the free set
        >>> kept, grams, dots = sync(mem, kept, free, x + 3, jnp.float32)
        >>> print(grams[:, 0, 0].tolist(), dots[:, 0].tolist())
        [19960.0, 9980.0, 10.0] [30000.0, 15000.0]
    """
    m = mem.age.shape[0]
    flags = [keeps(z) for z in leaves(free)]
    parts = [leaves(t) for t in (mem.s, mem.y, cache.free, free, r)]
    kept = [[v for v, f in zip(p, flags) if f] for p in parts]
    redo = [[v for v, f in zip(p, flags) if not f] for p in parts]
    if redo[0]:
        small, small_dots = free_grams(redo[0], redo[1], redo[3], redo[4], dtype)
    else:
        small, small_dots = jnp.zeros((3, m, m), dtype), jnp.zeros((2, m), dtype)
    s_k, y_k, was, now, r_k = kept
    done = cache._replace(free=free, written=jnp.zeros_like(cache.written))
    if not s_k:
        return done, small, small_dots

    k = few_slots(m, sum(math.prod(jnp.shape(z)) for z in now))

    def scratch(_: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        def over(slots: int | None) -> Any:
            return lambda: free_grams(s_k, y_k, now, r_k, dtype, slots)

        if k:  # (a memory still filling: its first k slots only)
            grams, dots = jax.lax.cond(holds_at_most(mem, k), over(k), over(None))
        else:
            grams, dots = over(None)()
        return grams, dots, jnp.zeros_like(cache.stale)

    changed = [(a != b).reshape(-1) for a, b in zip(was, now)]
    counts = [jnp.sum(c, dtype=jnp.int32) for c in changed]
    over = jnp.sum(cache.written) > 1
    for c, n in zip(counts, changed):
        over = over | (c > budget(n.shape[0]))

    def update(_: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        grams, dots, stale, drift = _update(
            cache, s_k, y_k, now, r_k, changed, counts, mem.age >= 0, dtype
        )
        return jax.lax.cond(drift, scratch, lambda _: (grams, dots, stale), None)

    grams, dots, stale = jax.lax.cond(over | refresh, scratch, update, None)
    done = done._replace(grams=grams.astype(cache.grams.dtype), stale=stale)
    return done, grams + small, dots + small_dots


def _update(
    cache: Kept,
    s_k: list[Any],
    y_k: list[Any],
    now: list[Any],
    r: list[Any],
    changed: list[Any],
    counts: list[Any],
    valid: jax.Array,
    dtype: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """`sync`'s incremental step on the cache leaves: ``(grams, dots, stale,
    drift)``."""
    m = cache.stale.shape[0]
    grams = cache.grams.astype(dtype)
    now = [as_row(z, y) for z, y in zip(now, y_k)]  # masks shaped like the rows
    # (b) the variables that entered (+) or left (-) the free set
    for s, y, z, c, count in zip(s_k, y_k, now, changed, counts):
        cap = budget(c.shape[0])
        # (late in a solve a few dozen change: see `first_true_sparse`)
        idx = jnp.maximum(first_true_sparse(c, cap)[0], 0)
        enter = z.reshape(-1)[idx]
        live = jnp.arange(cap) < count
        sign = jnp.where(live, jnp.where(enter, 1, -1), 0).astype(dtype)
        yc = y.reshape(m, -1)[:, idx].astype(dtype)
        sc = s.reshape(m, -1)[:, idx].astype(dtype)
        grams = grams + jnp.stack(
            [(yc * sign) @ yc.T, (sc * sign) @ yc.T, -(sc * sign) @ sc.T]
        )
    # (a) a fresh row: the slot written since, else the stalest (so no row
    # carries more than m - 1 updates); one pass over the memory
    written = jnp.any(cache.written)
    j = jnp.where(written, jnp.argmax(cache.written), jnp.argmax(cache.stale))
    # y_i . (z y_j, z s_j, (1 - z) s_j, r) and s_i . (the same); the two
    # mem_dot calls stack the columns alike, and XLA builds the stack once
    cols = [
        [jnp.where(z, y[j], 0) for y, z in zip(y_k, now)],
        [jnp.where(z, s[j], 0) for s, z in zip(s_k, now)],
        [jnp.where(z, 0, s[j]) for s, z in zip(s_k, now)],
        [as_row(rl, y).astype(y.dtype) for rl, y in zip(r, y_k)],
    ]
    ry, rs = mem_dot(y_k, cols, dtype), mem_dot(s_k, cols, dtype)
    # drift: the cache diagonals of the stalest other slot against fresh sums
    k = jnp.argmax(jnp.where(jnp.arange(m) == j, -1, cache.stale))
    fresh_yy = total(
        [jnp.sum(jnp.where(z, y[k], 0) ** 2) for y, z in zip(y_k, now)], dtype
    )
    fresh_ss = total(
        [jnp.sum(jnp.where(z, 0, s[k]) ** 2) for s, z in zip(s_k, now)], dtype
    )
    tol = DRIFT_ULPS * jnp.finfo(dtype).eps
    drift = (jnp.abs(grams[0, k, k] - fresh_yy) > tol * fresh_yy) | (
        jnp.abs(grams[2, k, k] - fresh_ss) > tol * fresh_ss
    )
    # (the checks read the slots in use only: an empty slot's products take
    # no part, and a rebuild over the first slots (`few_slots`) leaves the
    # others' zero, to which the updates then add the changed variables'
    # outer products)
    drift = drift & (k != j) & valid[k]  # (k = j: m = 1)
    yy = grams[0].at[:, j].set(ry[:, 0]).at[j, :].set(ry[:, 0])
    sy = grams[1].at[:, j].set(rs[:, 0]).at[j, :].set(ry[:, 1])
    ss = grams[2].at[:, j].set(rs[:, 2]).at[j, :].set(rs[:, 2])
    grams = jnp.stack([yy, sy, ss])
    diag = jnp.concatenate([jnp.diagonal(yy), jnp.diagonal(ss)])
    negative = (diag < 0) & jnp.concatenate([valid, valid])
    pair = valid[:, None] & valid[None, :]
    drift = drift | jnp.any(negative) | ~jnp.all(jnp.isfinite(grams) | ~pair)
    stale = (cache.stale + 1).at[j].set(0)
    return grams, jnp.stack([ry[:, 3], rs[:, 3]]), stale, drift
