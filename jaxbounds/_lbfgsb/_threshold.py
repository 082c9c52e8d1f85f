"""Where a round of the Cauchy walk ends: thresholds from histograms.

A round of the walk (`jaxbounds._lbfgsb._cauchy`) takes the breakpoints in
``(a, T]``, ``a`` where the walk stands, and ``T`` a threshold with about a
chunk of breakpoints before it (`jaxbounds._lbfgsb._breakpoints.sizes_for`).
``T`` comes from a histogram of the breakpoints' bit patterns: for positive
floats the pattern, read as an integer, grows with the value, about as
``log t`` does, so bins of equal steps of the patterns are nearly
log-spaced, their edges are exact floats, and a bin costs integer
arithmetic, not a logarithm.

The walk counts all its breakpoints once (`histogram`, `walk_bins` bins),
and each round reads its ``T`` from the counts (`threshold_from`); where
one bin holds more than a chunk, `threshold` refines it with two passes of
its own. Only efficiency depends on ``T``: the walk is exact for any.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._rounding import bits_dtype
from ._breakpoints import sizes_for
from ._tree import leaves, replicated

#: Bins of the histogram that places the threshold (per refinement).
BINS = 64
#: The most bins of the histogram a walk takes of all its breakpoints, once
#: (`histogram`; see `walk_bins`); its rounds read their thresholds from it.
WALK_BINS = 1 << 16


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
    and 5: 218 -> 171, 135 -> 106 and 69 -> 58 ms).
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
