"""Breakpoint selection for the Cauchy point's walk: the next chunk of breakpoints.

The projected-gradient path ``P(x - t g)`` has a breakpoint per variable
(`breakpoints`). The walk (`jaxbounds._lbfgsb._cauchy`) takes them a chunk
at a time; this module sizes and gathers a chunk:

1. a chunk of about ``n / 64`` breakpoints, a power of two from `MIN_CHUNK`
   to `CHUNK` (`sizes_for`), ends at a threshold ``T`` (placed by
   `jaxbounds._lbfgsb._threshold`);
2. the breakpoints in ``(a, T]`` gathered into a small array with their
   gradients (`gather_chunk`): on one device by one compaction of their
   mask; on several, by hashing their indices into four slots per
   breakpoint (`HASHES` rounds, each a scatter over the variables; an index
   that collided every time is *missed*);
3. their rows of ``W``, in the walk's order (`chunk_rows`).

On several devices every pass is a reduction, a scatter into a small array
or a gather of a few indices: nothing sized like the parameters is sorted or
gathered, so on sharded parameters the only communication is of chunk-sized
arrays.
Problems of at most `CHUNK` variables take one chunk (`one_chunk`): the
walk sorts them all at once.

With four hash rounds a chunk of 8192 misses an index about once in 10^5
chunks (three rounds: about once in 4).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from .._kernels import one_device
from ._compaction import first_true
from ._memory import Compact, Memory
from ._tree import leaves, replicated, smallest, tmap

#: Breakpoints a round aims to walk.
CHUNK = 8192
#: The smallest chunk (problems under ``64 x CHUNK`` take smaller ones).
MIN_CHUNK = 1024
#: Slots the chunk's indices are hashed into (a power of two).
BUCKETS = 4 * CHUNK
#: Hash rounds; an index colliding in every round is missed this round.
HASHES = 4
#: Rounds after a walk's first take chunks (and hash slots) this many times
#: larger: a walk that goes on past its first chunk (the first iterations,
#: where hundreds of thousands of breakpoints may come before the minimiser)
#: takes fewer rounds, each with the same passes over the variables.
WIDE = 4
#: Problems with fewer variables take no wide rounds: the wide chunk's code
#: costs about a second of compile time (1e4 variables: 3.9 -> 5.0 s), and
#: their walks take few rounds.
WIDE_FROM = 2**18
#: Fibonacci-hashing multipliers (odd, 32-bit), one per hash round.
_MULTIPLIERS = (2654435761, 2246822519, 3266489917, 668265263)


def breakpoints(x: Any, g: Any, lo: Any, up: Any) -> Any:
    """``t_i``, where ``x_i - t g_i`` meets its bound (``inf``: never; 0: blocked).

    Examples:
        >>> import jax.numpy as jnp
        >>> x, g = jnp.array([0.5, 0.5, 0.5]), jnp.array([1.0, -2.0, 0.0])
        >>> print(breakpoints(x, g, 0.0, 1.0))
        [0.5  0.25  inf]
    """

    def leaf(x: Any, g: Any, lo: Any, up: Any) -> Any:
        safe = jnp.where(g == 0, 1, g)
        t = jnp.where(g < 0, (x - up) / safe, (x - lo) / safe)
        t = jnp.where(g == 0, jnp.inf, t)
        return jnp.maximum(t, 0)

    return tmap(leaf, x, g, lo, up)


def w_rows(y: jax.Array, s: jax.Array, cp: Compact, dtype: Any) -> jax.Array:
    """Rows of ``W = [Y, theta S]``, ``(k, 2m)``, from ``(m, k)`` columns of a leaf."""
    rows = jnp.concatenate([y, cp.theta.astype(s.dtype) * s]).T.astype(dtype)
    return jnp.where(cp.valid, rows, 0.0)


def sizes_for(n: int, wide: bool = False) -> tuple[int, int]:
    """``(chunk, hash slots)`` for ``n`` variables: a chunk of about ``n / 64``.

    A power of two from `MIN_CHUNK` to `CHUNK`, with `BUCKETS` scaled alike:
    a round's own work grows with its chunk, so smaller problems take smaller
    chunks (at 1e4 variables, chunks of 8192 made an iteration 3x slower).
    ``wide``: both `WIDE` times larger (the rounds after the first).
    """
    chunk = CHUNK
    while chunk > MIN_CHUNK and chunk * 64 > n:
        chunk //= 2
    k = WIDE if wide else 1
    return k * chunk, k * BUCKETS * chunk // CHUNK


def _offsets(tb: Any) -> tuple[list[int], list[int]]:
    """Each leaf's first index in the flat order of all variables, and its size."""
    offsets, sizes, start = [], [], 0
    for t in leaves(tb):
        offsets.append(start)
        sizes.append(t.size)
        start += t.size
    if start >= 2**31:
        raise ValueError(
            "the Cauchy point's chunked walk needs fewer than 2^31 variables"
        )
    return offsets, sizes


def gather_chunk(
    tb: Any, g: Any, a: Any, top: Any, dtype: Any, wide: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The breakpoints in ``(a, top]``, gathered (see `hashed`).

    Returns:
        ``(t, g, every, missed)``: the gathered times (``inf`` in empty
        slots), gradients and indices (in the flat order of all variables;
        ``-1`` in empty slots: `chunk_rows` takes them), and the smallest
        time in ``(a, top]`` whose index collided in every hash round
        (``inf``: none, always so on one device; ``-inf``: more than the
        slots were found). Each variable appears at most once.
    """
    offsets, sizes = _offsets(tb)
    chunk, buckets = sizes_for(sum(sizes), wide)
    # a chunk and an eighth of slots: the threshold leaves at most a chunk
    # below ``top``, give or take the breakpoints its bin edges round past,
    # and a tie group at ``top`` itself. On an overflow nothing counts as
    # complete and the walk steps over one. (Twice a chunk of slots, as
    # before, sorted and walked mostly padding: 1M deconvolution, iteration
    # 2, 7 rounds, 386 -> 338 ms; iteration 4, 187 -> 137 ms.)
    cap = min(chunk + chunk // 8, sum(sizes))
    pending = [(t > a) & (t <= top) for t in leaves(tb)]
    if hashed():
        every, missed = _hashed(tb, pending, offsets, buckets, cap, dtype)
    else:
        every, missed = _compacted(pending, cap, dtype)
    t_out = jnp.full(every.shape, jnp.inf, dtype)
    g_out = jnp.zeros(every.shape, dtype)
    for t, gl, o, n in zip(leaves(tb), leaves(g), offsets, sizes):
        mine, k = _local(every, o, n, t.shape)
        one = replicated(t)
        t_out = jnp.where(mine, t.at[k].get(out_sharding=one).astype(dtype), t_out)
        g_out = jnp.where(mine, gl.at[k].get(out_sharding=one).astype(dtype), g_out)
    return t_out, g_out, every, missed


def _local(every: Any, offset: int, size: int, shape: Any) -> tuple[Any, Any]:
    """Which of the flat indices ``every`` fall in a leaf, and their index there."""
    local = every - offset
    mine = (every >= 0) & (local >= 0) & (local < size)
    return mine, jnp.unravel_index(jnp.where(mine, local, 0), shape)


def chunk_rows(tb: Any, every: Any, mem: Memory, cp: Compact, dtype: Any) -> jax.Array:
    """The rows of ``W`` (``(slots, 2m)``) of the variables ``every`` (flat
    indices, as `gather_chunk` returns them; ``-1``: a zero row).

    Taken in the walk's order (the indices sorted by time), not gathered in
    index order and then sorted: one gather of the rows, not two.
    """
    offsets, sizes = _offsets(tb)
    m = mem.age.shape[0]
    w_out = jnp.zeros(every.shape + (2 * m,), dtype)
    for t, s, y, o, n in zip(leaves(tb), leaves(mem.s), leaves(mem.y), offsets, sizes):
        # (a memory row may be stored flat: its own shape indexes it)
        mine, k = _local(every, o, n, s.shape[1:])
        column = (slice(None), *k)
        one = replicated(t)
        rows = w_rows(
            y.at[column].get(out_sharding=one),
            s.at[column].get(out_sharding=one),
            cp,
            dtype,
        )
        w_out = jnp.where(mine[:, None], rows, w_out)
    return w_out


def hashed() -> bool:
    """Whether a chunk's indices are found by hashing (several devices).

    On one device one compaction of the chunk's mask finds them all (no
    misses): at 1e4 variables 0.2 ms against 0.6 ms for the four hash
    rounds. On several devices the mask is split: the compaction would
    gather it, while the hash rounds scatter into a small replicated array.
    """
    return not one_device()


def _compacted(pending: list[Any], cap: int, dtype: Any) -> tuple[Any, Any]:
    """``(every, missed)``: the pending indices (``-1`` pads), by one compaction."""
    every, over = first_true(jnp.concatenate([p.reshape(-1) for p in pending]), cap)
    return every, jnp.where(over, -jnp.inf, jnp.inf).astype(dtype)


def _hashed(
    tb: Any, pending: list[Any], offsets: list[int], buckets: int, cap: int, dtype: Any
) -> tuple[Any, Any]:
    """``(every, missed)``: the pending indices (``-1`` pads) found by hashing.

    Each index is hashed into ``buckets`` slots, `HASHES` times; ``missed``
    is the smallest time whose index collided every time (``inf``: none;
    ``-inf``: more than ``cap`` found).
    """
    shift = 32 - int(math.log2(buckets))
    ids = [
        jnp.arange(t.size, dtype=jnp.uint32).reshape(t.shape) + jnp.uint32(o)
        for t, o in zip(leaves(tb), offsets)
    ]
    found = []
    for mult in _MULTIPLIERS[:HASHES]:
        slot = [(i * jnp.uint32(mult)) >> shift for i in ids]
        # one scatter per leaf of (1, index): a slot's count and, when alone, owner
        tally = jnp.zeros((buckets + 1, 2), jnp.int32)
        for s, i, p in zip(slot, ids, pending):
            where = jnp.where(p, s, buckets).astype(jnp.int32)
            pair = jnp.stack([jnp.ones_like(where), i.astype(jnp.int32)], axis=-1)
            tally = tally.at[where].add(pair, out_sharding=replicated(where))
        alone = tally[:buckets, 0] == 1
        found.append(jnp.where(alone, tally[:buckets, 1], -1))
        pending = [p & ~alone[s.astype(jnp.int32)] for s, p in zip(slot, pending)]
    missed = smallest(
        [jnp.min(jnp.where(p, t, jnp.inf)) for p, t in zip(pending, leaves(tb))],
        dtype,
        math.inf,
    )
    found_all = jnp.concatenate(found)  # global index, or -1
    # compacted, so the gather and the walk do not scale with the hash slots
    pos, over = first_true(found_all >= 0, min(cap, found_all.size))
    every = jnp.where(pos >= 0, found_all[pos], -1)
    return every, jnp.where(over, -jnp.inf, missed)


def wide_rounds(tb: Any) -> bool:
    """Whether a walk over the breakpoints ``tb`` takes wide rounds after its
    first (at least `WIDE_FROM` variables)."""
    return sum(t.size for t in leaves(tb)) >= WIDE_FROM


def one_chunk(tb: Any) -> bool:
    """Whether the breakpoints ``tb`` (a tree) fit in one chunk (at most `CHUNK`)."""
    return sum(t.size for t in leaves(tb)) <= CHUNK
