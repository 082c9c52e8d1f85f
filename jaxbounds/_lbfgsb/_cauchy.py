"""The generalized Cauchy point, by walking the breakpoints in chunks.

The first local minimiser of the quadratic model
``m(x) = f + g^T (x - x_k) + (x - x_k)^T B (x - x_k) / 2`` along the
projected-gradient path ``P(x - t g)`` (Byrd et al. 1995, section 4). The
path is piecewise linear with a breakpoint per variable; scipy pops them in
order from a heap and updates the model's slope at each. Here each round
takes the next *chunk* of breakpoints at once:

1. a threshold ``T`` with about a chunk of breakpoints in ``(a, T]`` (about
   ``n / 64``, a power of two from `MIN_CHUNK` to `CHUNK`), from a
   log-spaced histogram (one pass, refined once);
2. those breakpoints gathered into a small array by hashing their indices
   into four slots per breakpoint (`HASHES` rounds, each a scatter over the
   variables; an index that collided every time is *missed*);
3. the gathered chunk sorted, and scipy's recurrences run over it as prefix
   sums: the slope and curvature just after every breakpoint, the first
   segment holding a minimiser.

Only the breakpoints below the smallest missed one form a complete prefix,
so only those are walked: the result is the point the one-by-one walk
finds, ties included (a slope is read only after the last of a group of
equal breakpoints, where the path's state is real). A round that completes
nothing (a tie group larger than the chunk, or a miss at its first
breakpoint) steps over the next breakpoint with one pass over the memory.

Every pass is a reduction, a scatter into a small array or a gather of a
few indices: nothing sized like the parameters is sorted or gathered, so
on sharded parameters the only communication is of chunk-sized arrays.
Problems of at most `CHUNK` variables skip all this: their breakpoints are
sorted and walked at once (`one_pass`). A walk that reaches `MAX_ROUNDS`
(each round passes at least one group of breakpoints) stops where it stands,
a point where the model still descends: a valid, if shorter, Cauchy step.

Measured at 1M variables (a least-squares fit, float64, m = 10, 2 CPU
cores): after 12 iterations, about 3,900 breakpoints before the minimiser,
one round of 55-65 ms against 1.4 s for the previous release's probing
search; in the first iterations, with hundreds of thousands before it, 15-25
rounds. Chunks of 4096 took twice the rounds there, chunks of 16384 half
again as long per round; with four hash rounds a chunk of 8192 misses an
index about once in 10^5 chunks (three rounds: about once in 4).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from ._memory import Compact, Memory, m_times, w_dot
from ._tree import largest, leaves, replicated, smallest, tmap, total

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
#: Rounds of the walk before it settles for the point reached.
MAX_ROUNDS = 256
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


def state_after(
    t: Any, g: Any, tb: Any, mem: Memory, cp: Compact, dtype: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The path's state just after time ``t``: one pass over the memory.

    Returns ``G = sum over moving variables of g_i^2``, ``P = W^T d(t)`` and
    ``C = W^T z(t)``, where ``d`` is the path's direction (``-g_i`` on
    variables that still move, ``t_i > t``) and ``z(t) = x(t) - x``.
    """

    def weights(g: Any, tl: Any) -> Any:
        moving = tl > t.astype(tl.dtype)
        z = -g * jnp.minimum(t.astype(tl.dtype), tl)
        return jnp.stack([jnp.where(moving, -g, 0), z])

    wv = w_dot(mem, cp, tmap(weights, g, tb), dtype)
    gg = [
        jnp.sum(jnp.where(tl > t.astype(tl.dtype), gl**2, 0))
        for gl, tl in zip(leaves(g), leaves(tb))
    ]
    return total(gg, dtype), wv[:, 0], wv[:, 1]


def slope(
    t: Any, gg: Any, p: jax.Array, c: jax.Array, cp: Compact
) -> tuple[jax.Array, jax.Array]:
    """The model's slope and curvature along the path just after ``t``.

    ``q'(t) = -(1 - theta t) G - C^T M P`` and ``q''(t) = theta G - P^T M P``,
    from the state ``(G, P, C)`` of `state_after` (batched on the leading axis).
    """
    mp = m_times(cp, jnp.swapaxes(p, 0, -1))
    mp = jnp.swapaxes(mp, 0, -1)
    theta = cp.theta
    return (
        -(1 - theta * t) * gg - jnp.sum(c * mp, axis=-1),
        theta * gg - jnp.sum(p * mp, axis=-1),
    )


def newton_time(t: Any, f1: Any, f2: Any) -> Any:
    """``t - f1 / f2``: where the slope, linear along a segment, reaches zero.

    ``inf`` where the curvature ``f2`` is not positive (no minimiser ahead).
    """
    return jnp.where(f2 > 0, t - f1 / jnp.where(f2 > 0, f2, 1), jnp.inf)


def first_stop(
    a: Any, state: tuple[Any, Any, Any], t_next: Any, cp: Compact
) -> tuple[Any, Any]:
    """Whether the first minimiser lies on ``[a, t_next]``, and where.

    The segment from ``a`` (with ``state`` just after it) to the next
    breakpoint ``t_next`` (``inf``: none left), where the model descends
    just after ``a``: at ``t = 0`` its slope is ``-G``, and the walk only
    stands after groups with a negative slope. So the minimiser lies on the
    segment when the slope reaches zero before ``t_next``; with no curvature
    and no breakpoint left (nothing moves) it is ``a``.
    """
    f1, f2 = slope(a, state[0], state[1], state[2], cp)
    tz = newton_time(a, f1, f2)
    here = (tz <= t_next) | ~jnp.isfinite(t_next)
    return here, jnp.where(jnp.isfinite(tz), tz, a)


def w_rows(y: jax.Array, s: jax.Array, cp: Compact, dtype: Any) -> jax.Array:
    """Rows of ``W = [Y, theta S]``, ``(k, 2m)``, from ``(m, k)`` columns of a leaf."""
    rows = jnp.concatenate([y, cp.theta.astype(s.dtype) * s]).T.astype(dtype)
    return jnp.where(cp.valid, rows, 0.0)


def sizes_for(n: int) -> tuple[int, int]:
    """``(chunk, hash slots)`` for ``n`` variables: a chunk of about ``n / 64``.

    A power of two from `MIN_CHUNK` to `CHUNK`, with `BUCKETS` scaled alike:
    a round's own work grows with its chunk, so smaller problems take smaller
    chunks (at 1e4 variables, chunks of 8192 made an iteration 3x slower).
    """
    chunk = CHUNK
    while chunk > MIN_CHUNK and chunk * 64 > n:
        chunk //= 2
    return chunk, BUCKETS * chunk // CHUNK


def threshold(tb: Any, a: Any, t_lo: Any, t_hi: Any, dtype: Any) -> jax.Array:
    """A time ``T >= t_lo`` with about ``chunk`` breakpoints in ``(a, T]``.

    A histogram of ``log t`` over ``[t_lo, t_hi]`` (one scatter of bin
    counts), then again over the bin where the count passes ``chunk``. Only
    efficiency depends on it: the walk stays exact for any ``T``.
    """
    chunk, _ = sizes_for(sum(t.size for t in leaves(tb)))
    lo_t, hi_t = t_lo, t_hi
    below = jnp.zeros((), jnp.int32)  # breakpoints in (a, lo_t)
    for _ in range(2):
        span = jnp.log(hi_t / lo_t)
        counts = jnp.zeros((BINS + 1,), jnp.int32)
        for t in leaves(tb):
            t = t.astype(dtype)
            inside = (t > a) & (t >= lo_t) & (t <= hi_t)
            safe = jnp.where(inside, t, lo_t)
            frac = jnp.log(safe / lo_t) / jnp.where(span > 0, span, 1)
            b = jnp.clip(jnp.floor(frac * BINS), 0, BINS - 1).astype(jnp.int32)
            counts = counts.at[jnp.where(inside, b, BINS)].add(
                1, out_sharding=replicated(t)
            )
        cum = below + jnp.cumsum(counts[:BINS])
        j = jnp.sum(cum <= chunk)  # bins [0, j) fit
        # refine inside bin j (the one that overflows), from its left edge
        below = jnp.where(j > 0, cum[jnp.maximum(j - 1, 0)], below)
        left = lo_t * jnp.exp(span * j / BINS)
        hi_t = jnp.minimum(lo_t * jnp.exp(span * (j + 1) / BINS), hi_t)
        lo_t = jnp.maximum(left, t_lo)
    return lo_t


def gather_chunk(
    tb: Any, g: Any, a: Any, top: Any, mem: Memory, cp: Compact, dtype: Any
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The breakpoints in ``(a, top]``, gathered by hashing their indices.

    Returns:
        ``(t, g, w, missed)``: the gathered times (``inf`` in empty slots),
        gradients and rows of ``W`` (``(slots, 2m)``), and the smallest time
        in ``(a, top]`` whose index collided in every hash round (``inf``:
        none). Each variable appears at most once.
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
    chunk, buckets = sizes_for(sum(sizes))
    shift = 32 - int(math.log2(buckets))
    ids = [
        jnp.arange(n, dtype=jnp.uint32).reshape(t.shape) + jnp.uint32(o)
        for t, n, o in zip(leaves(tb), sizes, offsets)
    ]
    pending = [(t > a) & (t <= top) for t in leaves(tb)]
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
    # compacted to 2 chunk slots (the threshold keeps about a chunk in the
    # chunk), so the gather and the walk do not scale with the hash slots; on
    # an overflow nothing counts as complete and the walk steps over one
    hit = found_all >= 0
    cap = min(2 * chunk, found_all.size)
    (pos,) = jnp.nonzero(hit, size=cap, fill_value=0)
    kept = jnp.arange(cap) < jnp.sum(hit)
    every = jnp.where(kept, found_all[pos], -1)
    missed = jnp.where(jnp.sum(hit) > cap, -jnp.inf, missed)
    m = mem.age.shape[0]
    t_out = jnp.full(every.shape, jnp.inf, dtype)
    g_out = jnp.zeros(every.shape, dtype)
    w_out = jnp.zeros(every.shape + (2 * m,), dtype)
    for t, gl, s, y, o, n in zip(
        leaves(tb), leaves(g), leaves(mem.s), leaves(mem.y), offsets, sizes
    ):
        local = every - o
        mine = (every >= 0) & (local >= 0) & (local < n)
        k = jnp.unravel_index(jnp.where(mine, local, 0), t.shape)
        one = replicated(t)
        t_out = jnp.where(mine, t.at[k].get(out_sharding=one).astype(dtype), t_out)
        g_out = jnp.where(mine, gl.at[k].get(out_sharding=one).astype(dtype), g_out)
        column = (slice(None), *k)
        rows = w_rows(
            y.at[column].get(out_sharding=one),
            s.at[column].get(out_sharding=one),
            cp,
            dtype,
        )
        w_out = jnp.where(mine[:, None], rows, w_out)
    return t_out, g_out, w_out, missed


def walk(
    a: Any,
    state: tuple[Any, Any, Any],
    chunk: tuple[jax.Array, jax.Array, jax.Array],
    cp: Compact,
    whole: bool = False,
) -> tuple[Any, Any, Any, tuple[Any, Any, Any]]:
    """scipy's recurrences over a sorted, complete chunk, as prefix sums.

    Args:
        a: the time the walk stands at; the model descends just after it.
        state: ``(G, P, C)`` just after ``a`` (see `state_after`).
        chunk: times (sorted, ``> a``; ``inf`` pads), gradients and rows of
            ``W`` of every breakpoint up to the last finite time.
        cp: the compact form.
        whole: whether the chunk holds every breakpoint left, so the segment
            after its last one runs to infinity (else it is not known yet).

    Returns:
        ``(stop, t*, a', state')``: whether a minimiser was found and where,
        else the last breakpoint walked and the state just after it.
    """
    gg, p, c = state
    t, g, w = chunk
    real = jnp.isfinite(t)
    ts = jnp.where(real, t, a)
    gw = g[:, None] * w
    p_after = p + jnp.cumsum(gw, axis=0)  # P just after each breakpoint
    p_before = jnp.concatenate([p[None], p_after[:-1]])
    dt = jnp.diff(ts, prepend=a)
    c_at = c + jnp.cumsum(dt[:, None] * p_before, axis=0)
    gg_after = gg - jnp.cumsum(g**2)
    f1, f2 = slope(ts, gg_after, p_after, c_at, cp)
    nxt = jnp.concatenate([t[1:], jnp.full((1,), jnp.inf, t.dtype)])
    # a slope is real only after the last of a group of equal breakpoints
    group_end = real & (nxt > t)
    # the segment after the last breakpoint is not known yet, unless none follow
    last = group_end & ~jnp.isfinite(nxt) & (not whole)
    tz = newton_time(ts, f1, f2)
    rises = group_end & (f1 >= 0)
    inside = group_end & ~last & (f1 < 0) & (tz <= nxt)
    stop_at = rises | inside
    first = jnp.argmax(stop_at)
    stop = jnp.any(stop_at)
    tstar = jnp.where(rises[first], ts[first], tz[first])
    j = jnp.maximum(jnp.sum(real) - 1, 0)
    any_real = jnp.any(real)
    new_a = jnp.where(any_real, ts[j], a)
    new_state = (
        jnp.where(any_real, gg_after[j], gg),
        jnp.where(any_real, p_after[j], p),
        jnp.where(any_real, c_at[j], c),
    )
    return stop, tstar, new_a, new_state


def start(
    tb: Any, g: Any, mem: Memory, cp: Compact, dtype: Any
) -> tuple[Any, Any, Any]:
    """The state ``(G, P, C)`` at ``t = 0``: ``z = 0``, so ``C = 0``; one pass."""
    d0 = tmap(lambda g, t: jnp.where(t > 0, -g, 0)[None], g, tb)
    gg = [jnp.sum(jnp.where(t > 0, g**2, 0)) for g, t in zip(leaves(g), leaves(tb))]
    p0 = w_dot(mem, cp, d0, dtype)[:, 0]
    return total(gg, dtype), p0, jnp.zeros_like(p0)


def one_pass(
    tb: Any, g: Any, mem: Memory, cp: Compact, dtype: Any, skip: Any
) -> tuple[jax.Array, jax.Array]:
    """`cauchy_time` when every variable fits in one chunk: one sorted walk.

    The variables are few (at most `CHUNK`), so they are gathered into one
    vector (on sharded parameters, an all-gather of at most `CHUNK` values
    and rows) and walked at once: no loop, a fraction of the compile time.
    """
    m = mem.age.shape[0]
    t = jnp.concatenate([v.reshape(-1).astype(dtype) for v in leaves(tb)])
    gv = jnp.concatenate([v.reshape(-1).astype(dtype) for v in leaves(g)])
    w = jnp.concatenate(
        [
            w_rows(y.reshape(m, -1), s.reshape(m, -1), cp, dtype)
            for s, y in zip(leaves(mem.s), leaves(mem.y))
        ]
    )
    t = jnp.where(t > 0, t, jnp.inf)  # blocked variables never move
    order = jnp.argsort(t)
    state = start(tb, g, mem, cp, dtype)
    zero = jnp.zeros((), dtype)
    here, t_here = first_stop(zero, state, t[order[0]], cp)
    stop, t_walk, a, _ = walk(zero, state, (t[order], gv[order], w[order]), cp, True)
    tstar = jnp.where(here, t_here, jnp.where(stop, t_walk, a))
    return jnp.where(skip, zero, tstar), jnp.where(skip | here, 0, 1)


def cauchy_time(
    x: Any,
    g: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    cp: Compact,
    dtype: Any,
    skip: Any = False,
) -> tuple[jax.Array, jax.Array]:
    """``t*``, the path parameter of the generalized Cauchy point.

    Args:
        x: the iterate, inside the box.
        g: the gradient at ``x``.
        lo: lower bounds, a tree like ``x``.
        up: upper bounds.
        mem: the memory.
        cp: its compact form.
        dtype: the dtype of the scalars.
        skip: a flag; when true, no rounds are run (a finished fit in a batch).

    Returns:
        ``(t*, rounds)``: the time and the rounds of the walk taken.
    """
    tb = breakpoints(x, g, lo, up)
    if sum(t.size for t in leaves(tb)) <= CHUNK:
        return one_pass(tb, g, mem, cp, dtype, skip)
    zero = jnp.zeros((), dtype)

    def after(a: Any) -> tuple[Any, Any]:
        ts = [jnp.where(t > a, t, jnp.inf) for t in leaves(tb)]
        fin = [jnp.where(jnp.isfinite(t), t, -jnp.inf) for t in ts]
        return (
            smallest([jnp.min(t, initial=math.inf) for t in ts], dtype, math.inf),
            largest([jnp.max(t, initial=-math.inf) for t in fin], dtype, -math.inf),
        )

    def cond(carry: tuple) -> Any:
        return ~carry[2] & (carry[4] < MAX_ROUNDS)

    def body(carry: tuple) -> tuple:
        a, state, _, tstar, rounds = carry
        t_lo, t_hi = after(a)
        here, t_here = first_stop(a, state, t_lo, cp)

        def chunked() -> tuple:
            top = threshold(tb, a, t_lo, t_hi, dtype)
            t, gc, w, missed = gather_chunk(tb, g, a, top, mem, cp, dtype)
            t = jnp.where(t < missed, t, jnp.inf)  # the complete prefix only
            order = jnp.argsort(t)
            return walk(a, state, (t[order], gc[order], w[order]), cp), missed

        def step_over() -> tuple:
            # one pass: the state just after every breakpoint equal to t_lo
            after_lo = state_after(t_lo, g, tb, mem, cp, dtype)
            f1k, _ = slope(t_lo, *after_lo, cp)
            return f1k >= 0, t_lo, t_lo, after_lo

        (stop, t_walk, new_a, new_state), missed = jax.lax.cond(
            here,
            lambda: ((jnp.array(True), t_here, a, state), jnp.asarray(jnp.inf, dtype)),
            chunked,
        )
        stuck = ~here & ~(missed > t_lo)
        stop, t_walk, new_a, new_state = jax.lax.cond(
            stuck, step_over, lambda: (stop, t_walk, new_a, new_state)
        )
        tstar = jnp.where(stop, t_walk, tstar)
        return new_a, new_state, stop, tstar, rounds + 1

    # (a model rising at once is the first round's first_stop, at t* = 0)
    init = (zero, start(tb, g, mem, cp, dtype), skip, zero, jnp.zeros((), jnp.int32))
    a, _, done, tstar, rounds = jax.lax.while_loop(cond, body, init)
    return jnp.where(done, tstar, a), rounds


def cauchy(
    x: Any,
    g: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    cp: Compact,
    dtype: Any,
    skip: Any = False,
) -> Any:
    """The generalized Cauchy point ``x_c = P(x - t* g)`` (see `cauchy_time`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._memory import compact, new_memory
        >>> x, g = jnp.array([0.5, 0.5]), jnp.array([1.0, -2.0])
        >>> mem = new_memory(x, 2, jnp.float32)  # empty: B = I
        >>> print(cauchy(x, g, 0.0, 0.6, mem, compact(mem), jnp.float32))
        [0.  0.6]
    """
    tstar, _ = cauchy_time(x, g, lo, up, mem, cp, dtype, skip)

    def leaf(x: Any, g: Any, lo: Any, up: Any, tb: Any) -> Any:
        # a passed breakpoint, the last one too, puts its variable exactly
        # at the bound (x - t g may round just inside: it would count as free)
        t = tstar.astype(x.dtype)
        at = jnp.where(g < 0, up, lo)
        return jnp.where((g != 0) & (tb <= t), at, jnp.clip(x - t * g, lo, up))

    return tmap(leaf, x, g, lo, up, breakpoints(x, g, lo, up))
