"""Breakpoint selection for the Cauchy point's walk: the next chunk of breakpoints.

The projected-gradient path ``P(x - t g)`` has a breakpoint per variable
(`breakpoints`). The walk (`jaxbounds._lbfgsb._cauchy`) takes them a chunk
at a time; this module picks and gathers a chunk:

1. a threshold ``T`` with about a chunk of breakpoints in ``(a, T]`` (about
   ``n / 64``, a power of two from `MIN_CHUNK` to `CHUNK`, see `sizes_for`),
   from a histogram of their bit patterns (nearly log-spaced): the walk
   counts all its breakpoints once (`histogram`) and each round reads its
   ``T`` from those counts (`threshold_from`); where one bin holds more than
   a chunk, `threshold` refines it by two passes of its own;
2. those breakpoints gathered into a small array, with their gradients and
   rows of ``W`` (`gather_chunk`): on one device by one compaction of their
   mask; on several, by hashing their indices into four slots per
   breakpoint (`HASHES` rounds, each a scatter over the variables; an index
   that collided every time is *missed*).

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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._kernels import one_device
from .._rounding import bits_dtype
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
#: Bins of the histogram that places the threshold (per refinement).
BINS = 64
#: Rounds after a walk's first take chunks (and hash slots) this many times
#: larger: a walk that goes on past its first chunk (the first iterations,
#: where hundreds of thousands of breakpoints may come before the minimiser)
#: takes fewer rounds, each with the same passes over the variables.
WIDE = 4
#: Problems with fewer variables take no wide rounds: the wide chunk's code
#: costs about a second of compile time (1e4 variables: 3.9 -> 5.0 s), and
#: their walks take few rounds.
WIDE_FROM = 2**18
#: The most bins of the histogram a walk takes of all its breakpoints, once
#: (`histogram`; see `walk_bins`); its rounds read their thresholds from it.
WALK_BINS = 1 << 16
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


def threshold(
    tb: Any, a: Any, t_lo: Any, t_hi: Any, dtype: Any, wide: bool = False
) -> jax.Array:
    """A time ``T >= t_lo`` with at most ``chunk`` breakpoints in ``(a, T)``, and
    about that many.

    A histogram over ``[t_lo, t_hi]`` (one scatter of bin counts), then again
    over the bin where the count passes ``chunk``; ``T`` is that bin's left
    edge. The bins are equal steps of the times' bit patterns: for positive
    floats the pattern, read as an integer, grows with the value, about as
    ``log t`` does, so the bins are nearly log-spaced, their edges are exact,
    and a bin costs integer arithmetic, not a logarithm (a pass over 1M
    times: 3.1 against 7.5 ms with ``log``). Only efficiency depends on
    ``T``: the walk stays exact for any ``T``.

    Examples:
        >>> import jax.numpy as jnp
        >>> tb = jnp.arange(1.0, 5001.0)  # 1, 2, ..., 5000: chunks of 1024
        >>> t = threshold(tb, 0.0, 1.0, 5000.0, jnp.float32)
        >>> print(int(jnp.sum(tb < t)) <= 1024 < int(jnp.sum(tb <= t)) + 64)
        True
    """
    chunk, _ = sizes_for(sum(t.size for t in leaves(tb)), wide)
    as_int = _bits_of(dtype)
    lo_b, hi_b = as_int(jnp.asarray(t_lo, dtype)), as_int(jnp.asarray(t_hi, dtype))
    hi_b = jnp.maximum(hi_b, lo_b)  # none left (t_lo inf, t_hi -inf): T = t_lo
    times = [t.astype(dtype) for t in leaves(tb)]
    bits = [as_int(t) for t in times]
    below = jnp.zeros((), jnp.int32)  # breakpoints in (a, lo_b)
    for _ in range(2):
        width = (hi_b - lo_b) // BINS + 1  # >= 1: BINS bins cover [lo_b, hi_b]
        counts = jnp.zeros((BINS + 1,), jnp.int32)
        for t, b in zip(times, bits):
            inside = (t > a) & (b >= lo_b) & (b <= hi_b)
            k = jnp.where(inside, (b - lo_b) // width, BINS).astype(jnp.int32)
            counts = counts.at[k].add(1, out_sharding=replicated(t))
        cum = below + jnp.cumsum(counts[:BINS])
        j = jnp.sum(cum <= chunk)  # bins [0, j) fit
        # refine inside bin j (the one that overflows), from its left edge
        below = jnp.where(j > 0, cum[jnp.maximum(j - 1, 0)], below)
        left = jnp.minimum(lo_b + j * width, hi_b)  # all fit: T = t_hi
        hi_b = jnp.minimum(lo_b + (j + 1) * width - 1, hi_b)
        lo_b = left
    return _float_of(lo_b, dtype)


class Histogram(NamedTuple):
    """A walk's breakpoints counted once, in bins of their bit patterns (see
    `histogram`)."""

    lo: jax.Array  # the first bin's left edge, a bit pattern (integer)
    width: jax.Array  # bit patterns per bin (>= 1)
    cum: jax.Array  # (bins,) int32: the breakpoints in bins [0, k]


def walk_bins(n: int) -> int:
    """The bins of a walk's `histogram` over ``n`` breakpoints: a power of two
    near ``n / 32``, from `BINS` to `WALK_BINS` (16384 at 1M: about 1/500 of
    an octave each). On several devices the counts are summed across them,
    so they stay small next to the parameters."""
    return max(BINS, min(WALK_BINS, 1 << max(n // 32, 1).bit_length() - 1))


def histogram(tb: Any, t_lo: Any, t_hi: Any, dtype: Any) -> Histogram:
    """The breakpoints in ``[t_lo, t_hi]`` counted in bins, by one pass.

    ``t_lo`` and ``t_hi`` are the smallest positive and the largest finite
    breakpoint. The bins are equal steps of the bit patterns, as in
    `threshold`, but many more of them (`walk_bins`), so the walk's rounds
    read their thresholds from this one histogram (`threshold_from`) instead
    of making two passes each (the 1M deconvolution's walk, iterations 2, 3
    and 5: 238 -> 188, 141 -> 118 and 82 -> 66 ms).
    """
    bins = walk_bins(sum(t.size for t in leaves(tb)))
    as_int = _bits_of(dtype)
    lo_b, hi_b = as_int(jnp.asarray(t_lo, dtype)), as_int(jnp.asarray(t_hi, dtype))
    hi_b = jnp.maximum(hi_b, lo_b)
    width = (hi_b - lo_b) // bins + 1
    counts = jnp.zeros((bins + 1,), jnp.int32)
    for t in leaves(tb):
        b = as_int(t.astype(dtype))
        # (0, -0.0 and inf have patterns outside [lo_b, hi_b])
        inside = (b >= lo_b) & (b <= hi_b)
        k = jnp.where(inside, (b - lo_b) // width, bins).astype(jnp.int32)
        counts = counts.at[k].add(1, out_sharding=replicated(t))
    return Histogram(lo_b, width, jnp.cumsum(counts[:bins]))


def no_histogram(tb: Any, dtype: Any) -> Histogram:
    """A placeholder `Histogram` of ``tb`` (counting nothing), for a loop state."""
    zero = _bits_of(dtype)(jnp.zeros((), dtype))
    bins = walk_bins(sum(t.size for t in leaves(tb)))
    return Histogram(zero, zero + 1, jnp.zeros((bins,), jnp.int32))


def threshold_from(
    h: Histogram, t_lo: Any, t_hi: Any, n: int, dtype: Any, wide: bool = False
) -> tuple[jax.Array, jax.Array]:
    """`threshold` read from the walk's `histogram`: ``(T, ok)``, no pass.

    The walk stands at ``a``, and ``t_lo`` is the first breakpoint after it;
    the bins before ``t_lo``'s hold only breakpoints already walked, so the
    breakpoints in ``(a, T)``, ``T`` the left edge of a later bin, number at
    most the count from ``t_lo``'s bin to ``T``'s. ``T`` is the last such
    edge with at most a chunk (``t_hi`` when all fit). ``ok`` is false when
    ``t_lo``'s bin alone holds more than a chunk (a cluster finer than a
    bin): then `threshold` must refine it.

    Examples:
        >>> import jax.numpy as jnp
        >>> tb = jnp.arange(1.0, 5001.0)  # 1, 2, ..., 5000: chunks of 1024
        >>> h = histogram(tb, 1.0, 5000.0, jnp.float32)
        >>> t, ok = threshold_from(h, 1.0, 5000.0, 5000, jnp.float32)
        >>> print(bool(ok), 512 < int(jnp.sum(tb < t)) <= 1024)
        True True
    """
    chunk, _ = sizes_for(n, wide)
    as_int = _bits_of(dtype)
    first = (as_int(jnp.asarray(t_lo, dtype)) - h.lo) // h.width
    first = jnp.clip(first, 0, h.cum.shape[0] - 1).astype(jnp.int32)
    walked = jnp.where(first > 0, h.cum[jnp.maximum(first - 1, 0)], 0)
    j = jnp.sum(h.cum - walked <= chunk)  # bins [0, j) fit
    hi_b = as_int(jnp.asarray(t_hi, dtype))
    top = _float_of(jnp.minimum(h.lo + j * h.width, hi_b), dtype)
    return top, j > first


def _bits_of(dtype: Any) -> Any:
    """The map from floats of ``dtype`` to their bit patterns as integers, wide
    enough for the histogram's arithmetic (int64 for float64, else int32)."""
    wide = jnp.int64 if jnp.finfo(dtype).bits == 64 else jnp.int32
    return lambda v: jax.lax.bitcast_convert_type(v, bits_dtype(dtype)).astype(wide)


def _float_of(b: Any, dtype: Any) -> Any:
    """The float of ``dtype`` whose bit pattern is the integer ``b``."""
    return jax.lax.bitcast_convert_type(b.astype(bits_dtype(dtype)), dtype)


def gather_chunk(
    tb: Any,
    g: Any,
    a: Any,
    top: Any,
    mem: Memory,
    cp: Compact,
    dtype: Any,
    wide: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The breakpoints in ``(a, top]``, gathered (see `hashed`).

    Returns:
        ``(t, g, w, missed)``: the gathered times (``inf`` in empty slots),
        gradients and rows of ``W`` (``(slots, 2m)``), and the smallest time
        in ``(a, top]`` whose index collided in every hash round (``inf``:
        none, always so on one device; ``-inf``: more than the slots were
        found). Each variable appears at most once.
    """
    offsets, sizes = [], []
    start = 0
    for t in leaves(tb):
        offsets.append(start)
        sizes.append(t.size)
        start += t.size
    if start >= 2**31:
        raise ValueError(
            "the Cauchy point's chunked walk needs fewer than 2^31 variables"
        )
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
    m = mem.age.shape[0]
    t_out = jnp.full(every.shape, jnp.inf, dtype)
    g_out = jnp.zeros(every.shape, dtype)
    w_out = jnp.zeros(every.shape + (2 * m,), dtype)
    for t, gl, s, y, o, n in zip(
        leaves(tb), leaves(g), leaves(mem.s), leaves(mem.y), offsets, sizes
    ):
        local = every - o
        mine = (every >= 0) & (local >= 0) & (local < n)
        flat = jnp.where(mine, local, 0)
        k = jnp.unravel_index(flat, t.shape)
        one = replicated(t)
        t_out = jnp.where(mine, t.at[k].get(out_sharding=one).astype(dtype), t_out)
        g_out = jnp.where(mine, gl.at[k].get(out_sharding=one).astype(dtype), g_out)
        # (a memory row may be stored flat: its own shape indexes it)
        column = (slice(None), *jnp.unravel_index(flat, s.shape[1:]))
        rows = w_rows(
            y.at[column].get(out_sharding=one),
            s.at[column].get(out_sharding=one),
            cp,
            dtype,
        )
        w_out = jnp.where(mine[:, None], rows, w_out)
    return t_out, g_out, w_out, missed


def hashed() -> bool:
    """Whether a chunk's indices are found by hashing (several devices).

    On one device one compaction of the chunk's mask finds them all (no
    misses): at 1e4 variables 0.2 ms against 0.6 ms for the four hash
    rounds. On several devices the mask is split: the compaction would
    gather it, while the hash rounds scatter into a small replicated array.
    """
    return not one_device()


def _first_true(mask: Any, cap: int) -> tuple[Any, Any]:
    """The indices of ``mask``'s true entries in ``cap`` slots (``-1`` pads),
    and whether more than ``cap`` were true.

    Each true entry's rank comes from a prefix sum by `jax.lax.associative_scan`
    and its index is scattered to that slot (ranks past ``cap`` dropped): at
    1M entries 4.5 against 6.5 ms for ``jnp.nonzero(size=cap)``, whose
    ``cumsum`` is the slower scan on CPU (the 1M deconvolution's walk,
    iteration 2: 309 -> 276 ms, the same result).
    """
    flat = mask.reshape(-1)
    count = jnp.sum(flat, dtype=jnp.int32)
    rank = jax.lax.associative_scan(jnp.add, flat.astype(jnp.int32)) - 1
    slot = jnp.where(flat, rank, cap)
    index = jnp.arange(flat.size, dtype=jnp.int32)
    pos = jnp.full((cap,), -1, jnp.int32).at[slot].set(index, mode="drop")
    return pos, count > cap


def _compacted(pending: list[Any], cap: int, dtype: Any) -> tuple[Any, Any]:
    """``(every, missed)``: the pending indices (``-1`` pads), by one compaction."""
    every, over = _first_true(jnp.concatenate([p.reshape(-1) for p in pending]), cap)
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
    pos, over = _first_true(found_all >= 0, min(cap, found_all.size))
    every = jnp.where(pos >= 0, found_all[pos], -1)
    return every, jnp.where(over, -jnp.inf, missed)


def wide_rounds(tb: Any) -> bool:
    """Whether a walk over the breakpoints ``tb`` takes wide rounds after its
    first (at least `WIDE_FROM` variables)."""
    return sum(t.size for t in leaves(tb)) >= WIDE_FROM


def one_chunk(tb: Any) -> bool:
    """Whether the breakpoints ``tb`` (a tree) fit in one chunk (at most `CHUNK`)."""
    return sum(t.size for t in leaves(tb)) <= CHUNK
