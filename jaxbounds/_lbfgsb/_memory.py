"""The limited memory and its compact representation.

The ``m`` stored pairs ``(s_i, y_i)`` live in slots, ordered by ``age``; the
quasi-Newton matrix is ``B = theta I - W M W^T`` with ``W = [Y, theta S]``
and ``M^{-1} = [[-D, L^T], [L, theta S^T S]]`` (Byrd, Nocedal and Schnabel
1994). ``D`` is the diagonal of ``S^T Y``, ``L`` its strictly lower part in
the order the pairs were stored. Only these ``2m x 2m`` matrices are dense.
(What the subspace step keeps from one iteration to the next is its own
state, `jaxbounds._lbfgsb._kept.Kept`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._tree import as_row, mem_combine, mem_dot, row_shape, tmap, vdot


class Memory(NamedTuple):
    """The stored pairs, in slots; ``age`` orders them (``-1``: empty slot).

    `push` gives the slot it writes a new ``age`` (larger than every other),
    so a slot's age changes exactly when it is written.
    """

    s: Any  # tree, leaves (m, *row_shape(leaf)): rows flat
    y: Any
    ss: jax.Array  # (m, m): s_i . s_j
    sy: jax.Array  # (m, m): s_i . y_j
    age: jax.Array  # (m,) int
    theta: jax.Array  # scalar


def new_memory(x: Any, m: int, dtype: Any) -> Memory:
    """An empty memory of ``m`` slots for points shaped like ``x``."""

    # broadcast from the leaf, so the memory keeps the leaf's sharding; rows
    # flat (see `row_shape`)
    def rows(p: Any) -> Any:
        row = jnp.reshape(jnp.zeros_like(p), row_shape(p))
        return jnp.broadcast_to(row[None], (m, *row.shape))

    zeros = tmap(rows, x)
    return Memory(
        s=zeros,
        y=zeros,
        ss=jnp.zeros((m, m), dtype),
        sy=jnp.zeros((m, m), dtype),
        age=jnp.full((m,), -1, jnp.int32),
        theta=jnp.ones((), dtype),
    )


def reset(mem: Memory) -> Memory:
    """The memory emptied (``B = I``); the slots' contents are ignored."""
    return mem._replace(age=jnp.full_like(mem.age, -1), theta=jnp.ones_like(mem.theta))


def push(mem: Memory, s: Any, y: Any, dtype: Any, keep: Any = True) -> Memory:
    """Store the pair ``(s, y)`` in the oldest slot; ``theta = y.y / s.y``.

    With ``keep`` false the memory comes back unchanged. The row is written
    in place under `jax.jit`, and only when ``keep`` holds (a `jax.lax.cond`):
    writing back the slot's old row otherwise made XLA copy that row out
    first, in the solve's loop at 1M variables 1.5 ms per stored tree and
    step (under `jax.vmap` the cond is a select, as before). The new
    products ``s_i . s``, ``s_i . y`` and ``y_i . s`` take one pass over
    the memory.

    Examples:
        >>> import jax.numpy as jnp
        >>> mem = new_memory(jnp.zeros(2), 3, jnp.float32)
        >>> mem = push(mem, jnp.array([1.0, 0.0]), jnp.array([2.0, 0.0]), jnp.float32)
        >>> print(mem.age, mem.theta)
        [ 0 -1 -1] 2.0
    """
    slot = jnp.argmin(mem.age)

    def write(a: Any, v: Any) -> Any:
        v = as_row(v, a).astype(a.dtype)
        return jax.lax.cond(keep, lambda a: a.at[slot].set(v), lambda a: a, a)

    new_s = tmap(write, mem.s, s)
    new_y = tmap(write, mem.y, y)
    st = mem_dot(new_s, [s, y], dtype)  # (m, 2): s_i . s, s_i . y
    ys = mem_dot(new_y, [s], dtype)[:, 0]  # y_i . s
    # the small products by selects, not scatters: under vmap a scatter copies
    # its operand first (a batch of 256 fits: 123 -> 121 ms)
    at = jnp.arange(mem.age.shape[0]) == slot
    row, col = at[:, None], at[None, :]
    ss = jnp.where(row, st[None, :, 0], jnp.where(col, st[:, :1], mem.ss))
    sy = jnp.where(row, ys[None, :], jnp.where(col, st[:, 1:], mem.sy))
    age = jnp.where(at, jnp.max(mem.age) + 1, mem.age)
    theta = vdot(y, y, dtype) / st[slot, 1]
    return mem._replace(
        s=new_s,
        y=new_y,
        ss=jnp.where(keep, ss, mem.ss),
        sy=jnp.where(keep, sy, mem.sy),
        age=jnp.where(keep, age, mem.age),
        theta=jnp.where(keep, theta, mem.theta),
    )


#: Problems with fewer variables take no branch for a memory holding few
#: pairs (each is a second compiled copy of the code it narrows).
FEW_FROM = 2**18


def few_slots(m: int, n: int) -> int:
    """``k``: while a memory of ``m`` slots holds at most ``k`` pairs (all in
    its first ``k`` slots, `holds_at_most`), the free-set Gram rebuilds and
    the Cauchy walk's wide rounds of a problem of ``n`` variables read those
    slots only (`first_slots`); ``0``: never (fewer than `FEW_FROM`
    variables, or ``m = 1``).

    A memory fills over its first ``m`` iterations (and again after a
    reset): the iterations where most variables enter and leave the free
    set, the walk is longest and the Gram matrices are rebuilt. Its empty
    slots take no part in ``B``, but every pass over the memory reads their
    rows: at 1M variables, a rebuild takes 43 ms for ``m = 10`` against
    17 ms over the first 4 slots, and a wide round of the walk 13 against
    7.8 ms.
    """
    return m // 2 if n >= FEW_FROM else 0


def holds_at_most(mem: Memory, k: int) -> jax.Array:
    """Whether every pair the memory holds is in its first ``k`` slots.

    `push` fills the first empty slot, so a memory holding ``k`` pairs or
    fewer holds them in its first ``k`` slots, until it is full, and again
    after a `reset`.

    Examples:
        >>> import jax.numpy as jnp
        >>> mem = new_memory(jnp.zeros(3), 4, jnp.float32)
        >>> mem = push(mem, jnp.ones(3), 2 * jnp.ones(3), jnp.float32)
        >>> bool(holds_at_most(mem, 1)), bool(holds_at_most(mem, 0))
        (True, False)
    """
    return jnp.all(mem.age[k:] < 0)


def first_slots(mem: Memory, k: int) -> Memory:
    """The memory cut to its first ``k`` slots: the same ``B`` when it holds
    nothing beyond them (`holds_at_most`).

    Examples:
        >>> import jax.numpy as jnp
        >>> mem = new_memory(jnp.zeros(3), 4, jnp.float32)
        >>> mem = push(mem, jnp.ones(3), 2 * jnp.ones(3), jnp.float32)
        >>> first_slots(mem, 2).age.tolist()
        [0, -1]
    """
    return Memory(
        s=tmap(lambda a: a[:k], mem.s),
        y=tmap(lambda a: a[:k], mem.y),
        ss=mem.ss[:k, :k],
        sy=mem.sy[:k, :k],
        age=mem.age[:k],
        theta=mem.theta,
    )


def first_columns(v: jax.Array, k: int) -> jax.Array:
    """A vector over the ``2m`` columns of ``W``, cut to the ``2k`` columns of
    `first_slots`' ``W``."""
    m = v.shape[0] // 2
    return jnp.concatenate([v[:k], v[m : m + k]])


def widen(v: jax.Array, m: int) -> jax.Array:
    """A vector over the ``2k`` columns of `first_slots`' ``W``, on all ``2m``
    columns (zero on the others): the inverse of `first_columns` where those
    are zero.

    Examples:
        >>> import jax.numpy as jnp
        >>> print(widen(jnp.array([1.0, 2.0]), 3))
        [1. 0. 0. 2. 0. 0.]
        >>> print(first_columns(widen(jnp.array([1.0, 2.0]), 3), 1))
        [1. 2.]
    """
    k = v.shape[0] // 2
    return jnp.zeros((2 * m,), v.dtype).at[:k].set(v[:k]).at[m : m + k].set(v[k:])


def inv_spd(a: jax.Array) -> jax.Array:
    """The inverse of a small SPD matrix by sweeping every pivot (Gauss-Jordan).

    One loop rather than LAPACK: the matrices are at most ``m x m``, and this
    compiles in a fraction of the time. Pivots are kept positive. (The dense
    path of small problems solves its system by sweeps written out instead:
    `jaxbounds._lbfgsb._dense.solve_spd`.)

    Examples:
        >>> import jax.numpy as jnp
        >>> print(3 * inv_spd(jnp.array([[2.0, 1.0], [1.0, 2.0]])))
        [[ 2. -1.]
         [-1.  2.]]
    """
    n = a.shape[0]
    tiny = jnp.finfo(a.dtype).tiny ** 0.5

    def sweep(k: Any, a: jax.Array) -> jax.Array:
        d = jnp.maximum(a[k, k], tiny)
        col, row = a[:, k], a[k, :]
        a = a - jnp.outer(col, row) / d
        return a.at[k, :].set(row / d).at[:, k].set(col / d).at[k, k].set(-1 / d)

    return -jax.lax.fori_loop(0, n, sweep, a)


class Block(NamedTuple):
    """``[[-A, C^T], [C, E]]``, ready to solve: ``A^{-1}`` and the Schur inverse.

    ``A`` and ``E + C A^{-1} C^T`` are SPD; ``A^{-1}`` may be given as the
    diagonal (a vector) when ``A`` is diagonal.
    """

    ainv: jax.Array  # (m,) or (m, m)
    c: jax.Array
    sinv: jax.Array


def block(ainv: jax.Array, c: jax.Array, e: jax.Array) -> Block:
    """Factor ``[[-A, C^T], [C, E]]`` given ``A^{-1}``, ``C`` and ``E``."""
    aic = ainv[:, None] * c.T if ainv.ndim == 1 else ainv @ c.T
    return Block(ainv, c, inv_spd(e + c @ aic))


def block_solve(f: Block, v: jax.Array) -> jax.Array:
    """``[[-A, C^T], [C, E]]^{-1} v`` (``v``: ``2m`` rows, one or more columns)."""
    m = f.c.shape[0]
    v1, v2 = v[:m], v[m:]

    def a_inv(x: jax.Array) -> jax.Array:
        if f.ainv.ndim == 1:
            return f.ainv.reshape((m,) + (1,) * (x.ndim - 1)) * x
        return f.ainv @ x

    u2 = f.sinv @ (v2 + f.c @ a_inv(v1))
    u1 = a_inv(f.c.T @ u2 - v1)
    return jnp.concatenate([u1, u2], axis=0)


class Compact(NamedTuple):
    """``W = [Y, theta S]`` and the middle matrix ``M`` of ``B = theta I - W M W^T``.

    ``M^{-1} = [[-D, L^T], [L, theta S^T S]]``; empty slots get identity rows
    (and zeros in every vector), so they take no part.
    """

    d: jax.Array  # (m,) s_i . y_i (1 on empty slots)
    low: jax.Array  # (m, m) L: s_i . y_j, i newer than j
    middle: Block  # M^{-1}, ready to solve
    valid: jax.Array  # (2m,) bool
    theta: jax.Array


def compact(mem: Memory) -> Compact:
    """The compact representation of the memory's quasi-Newton matrix."""
    valid = mem.age >= 0
    theta = mem.theta
    pair = valid[:, None] & valid[None, :]
    d = jnp.where(valid, jnp.diagonal(mem.sy), 1.0)
    newer = (mem.age[:, None] > mem.age[None, :]) & pair
    low = jnp.where(newer, mem.sy, 0.0)
    ss = jnp.where(pair, theta * mem.ss, 0.0) + jnp.diag(jnp.where(valid, 0.0, 1.0))
    valid2 = jnp.concatenate([valid, valid])
    return Compact(d, low, block(1 / d, low, ss), valid2, theta)


def m_times(cp: Compact, v: jax.Array) -> jax.Array:
    """``M v`` (``v``: ``2m`` rows, one or more columns), zero on empty slots."""
    valid = cp.valid.reshape((-1,) + (1,) * (v.ndim - 1))
    u = block_solve(cp.middle, jnp.where(valid, v, 0.0))
    return jnp.where(valid, u, 0.0)


def w_dot(mem: Memory, cp: Compact, vs: Sequence[Any], dtype: Any) -> jax.Array:
    """``W^T v_k`` for ``k`` trees ``vs``: ``(2m, k)``, zero on empty slots."""
    sv = mem_dot(mem.s, vs, dtype)
    yv = mem_dot(mem.y, vs, dtype)
    out = jnp.concatenate([yv, cp.theta * sv], axis=0)
    return jnp.where(cp.valid[:, None], out, 0.0)


def w_times(mem: Memory, cp: Compact, u: jax.Array, like: Any) -> Any:
    """``W u`` as a tree shaped like the point ``like`` (``u`` of length ``2m``)."""
    m = mem.age.shape[0]
    u = jnp.where(cp.valid, u, 0.0)
    a = mem_combine(u[:m], mem.y, like)
    b = mem_combine(cp.theta * u[m:], mem.s, like)
    return tmap(jnp.add, a, b)


def b_times(mem: Memory, cp: Compact, v: Any, dtype: Any) -> Any:
    """``B v = theta v - W M W^T v`` as a tree (for tests and the dense check)."""
    wv = w_dot(mem, cp, [v], dtype)[:, 0]
    wmv = w_times(mem, cp, m_times(cp, wv), v)
    return tmap(lambda a, b: cp.theta.astype(a.dtype) * a - b, v, wmv)
