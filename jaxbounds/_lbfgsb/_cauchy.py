"""The generalized Cauchy point, by walking the breakpoints in chunks.

The first local minimiser of the quadratic model
``m(x) = f + g^T (x - x_k) + (x - x_k)^T B (x - x_k) / 2`` along the
projected-gradient path ``P(x - t g)`` (Byrd et al. 1995, section 4). The
path is piecewise linear with a breakpoint per variable; scipy pops them in
order from a heap and updates the model's slope at each. Here each round
takes the next *chunk* of breakpoints at once (ended by
`jaxbounds._lbfgsb._threshold`, gathered by
`jaxbounds._lbfgsb._breakpoints`), sorts it, and runs scipy's recurrences
over it as prefix sums: the slope and curvature just after every
breakpoint, the first segment holding a minimiser
(`jaxbounds._lbfgsb._segments.walk`).

Only the breakpoints below the smallest missed one form a complete prefix,
so only those are walked: the result is the point the one-by-one walk
finds, ties included (a slope is read only after the last of a group of
equal breakpoints, where the path's state is real). A round that completes
nothing (a tie group larger than the chunk, or a miss at its first
breakpoint) steps over the next breakpoint with one pass over the memory.

Problems that fit in one chunk skip the rounds: their breakpoints are
sorted and walked at once (`one_pass`). A walk that reaches `MAX_ROUNDS`
(each round passes at least one group of breakpoints) stops where it stands,
a point where the model still descends: a valid, if shorter, Cauchy step.

Measured at 1M variables (a least-squares fit, float64, m = 10, 2 CPU
cores): after 12 iterations, about 3,900 breakpoints before the minimiser,
one round of 55-65 ms against 1.4 s for the previous release's probing
search; in the first iterations, with hundreds of thousands before it, 15-25
rounds. Chunks of 4096 took twice the rounds there, chunks of 16384 half
again as long per round. So only the first round takes a chunk of 8192;
the later ones take chunks ``_breakpoints.WIDE`` times larger, on problems
of at least ``_breakpoints.WIDE_FROM`` variables (issue 25,
the same fit, iterations 2-7: 25, 14, 6, 5, 4, 3 rounds, 2.8 s in all;
with chunks 2x, 4x and 8x larger after the first round, 1.8 s, 1.8 s and
2.2 s).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._kernels import argsort_times
from ._breakpoints import (
    breakpoints,
    chunk_rows,
    gather_chunk,
    one_chunk,
    w_rows,
    wide_rounds,
)
from ._memory import (
    Compact,
    Memory,
    compact,
    few_slots,
    first_columns,
    first_slots,
    holds_at_most,
    widen,
)
from ._segments import first_stop, slope, start, state_after, walk
from ._threshold import (
    Histogram,
    histogram,
    no_histogram,
    threshold,
    threshold_from,
)
from ._tree import largest, leaves, smallest, tmap

#: Rounds of the walk before it settles for the point reached.
MAX_ROUNDS = 256


class Walked(NamedTuple):
    """Where the walk ended: the time ``t*``, ``C = W^T z(t*)``, and its rounds."""

    t: jax.Array
    c: jax.Array  # (2m,)
    rounds: jax.Array


def one_pass(
    tb: Any, g: Any, mem: Memory, cp: Compact, dtype: Any, skip: Any
) -> Walked:
    """`cauchy_walk` when every variable fits in one chunk: one sorted walk.

    The variables are few (at most a chunk), so they are gathered into one
    vector (on sharded parameters, an all-gather of at most a chunk of values
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
    order = argsort_times(t)
    state = start(tb, g, mem, cp, dtype)
    zero = jnp.zeros((), dtype)
    here, t_here = first_stop(zero, state, t[order[0]], cp)
    chunk = (t[order], gv[order], w[order])
    stop, t_walk, c_walk, a, end = walk(zero, state, chunk, cp, True)
    tstar = jnp.where(here, t_here, jnp.where(stop, t_walk, a))
    # (C is 0 at t = 0, so C = t P on the first segment)
    cstar = jnp.where(here, t_here * state[1], jnp.where(stop, c_walk, end[2]))
    return Walked(
        jnp.where(skip, zero, tstar),
        jnp.where(skip, 0.0, cstar),
        jnp.where(skip | here, 0, 1),
    )


def cauchy_walk(
    x: Any,
    g: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    cp: Compact,
    dtype: Any,
    skip: Any = False,
) -> Walked:
    """``t*``, the path parameter of the generalized Cauchy point, and ``W^T z``.

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
        A `Walked`: the time, ``C = W^T (x_c - x)`` there (from the walk's
        own state, as scipy's ``cauchy`` returns it: the subspace step needs
        no pass over the memory for it), and the rounds of the walk taken.

    While the memory holds at most ``k`` pairs (`few_slots`: a large
    problem's first iterations, where the walk is longest), a wide round
    gathers and walks the ``2k`` columns of ``W`` of the first ``k`` slots
    only. The rest of the round (threshold, compaction, sort) is shared:
    narrowing the whole walk, a second compiled copy, cost 1 s of compile
    at 1M variables, this about 0.4 s.
    """
    tb = breakpoints(x, g, lo, up)
    if one_chunk(tb):
        return one_pass(tb, g, mem, cp, dtype, skip)
    wide = wide_rounds(tb)
    n = sum(t.size for t in leaves(tb))
    zero = jnp.zeros((), dtype)
    m = mem.age.shape[0]
    k = few_slots(m, n) if wide else 0
    if k:  # (`compact` reads the small products only: no rows are copied)
        few, cp_few = holds_at_most(mem, k), compact(first_slots(mem, k))

    def narrowed(walked_over: Any, state: tuple) -> tuple:
        """`walk` over the first ``k`` slots' columns of ``W``, widened back."""
        gg, p, c = state
        state_k = (gg, first_columns(p, k), first_columns(c, k))
        stop, t_walk, c_walk, new_a, (gg, p, c) = walked_over(
            first_slots(mem, k), cp_few, state_k
        )
        return stop, t_walk, widen(c_walk, m), new_a, (gg, widen(p, m), widen(c, m))

    def after(a: Any) -> Any:
        """The first breakpoint after ``a`` (``inf``: none)."""
        ts = [
            jnp.min(jnp.where(t > a, t, jnp.inf), initial=math.inf) for t in leaves(tb)
        ]
        return smallest(ts, dtype, math.inf)

    def counted(t_lo: Any) -> tuple[Any, Histogram]:
        # the last finite breakpoint, and all counted in bins: once per walk,
        # in its first chunked round (a walk that stops on its first segment,
        # as late ones often do, makes no pass for them)
        fin = [jnp.where(jnp.isfinite(t), t, -jnp.inf) for t in leaves(tb)]
        last = largest([jnp.max(t, initial=-math.inf) for t in fin], dtype, -math.inf)
        return last, histogram(tb, t_lo, last, dtype)

    def cond(carry: tuple) -> Any:
        _, _, done, _, _, rounds, _ = carry
        return ~done & (rounds < MAX_ROUNDS)

    def body(carry: tuple) -> tuple:
        a, state, _, tstar, cstar, rounds, seen = carry
        t_lo = after(a)
        here, t_here = first_stop(a, state, t_lo, cp)

        def chunked(wide: bool) -> tuple:
            # (round 0 stands at a = 0, so t_lo is the first breakpoint of
            # all; wide rounds come after it)
            if wide:
                last, hist = seen
            else:
                last, hist = jax.lax.cond(
                    rounds == 0, lambda: counted(t_lo), lambda: seen
                )
            t_hi = jnp.where(last > a, last, -jnp.inf)  # the last one after a
            top, ok = threshold_from(hist, t_lo, t_hi, n, dtype, wide)
            top = jax.lax.cond(
                ok, lambda: top, lambda: threshold(tb, a, t_lo, t_hi, dtype, wide)
            )
            t, gc, every, missed = gather_chunk(tb, g, a, top, dtype, wide)
            t = jnp.where(t < missed, t, jnp.inf)  # the complete prefix only
            order = argsort_times(t)
            t, gc, every = t[order], gc[order], every[order]

            def walked_over(mem: Memory, cp: Compact, state: tuple) -> tuple:
                w = chunk_rows(tb, every, mem, cp, dtype)
                return walk(a, state, (t, gc, w), cp)

            if wide and k:
                # a memory still filling: its first k slots' columns only
                walked = jax.lax.cond(
                    few,
                    lambda: narrowed(walked_over, state),
                    lambda: walked_over(mem, cp, state),
                )
            else:
                walked = walked_over(mem, cp, state)
            return walked, missed, (last, hist)

        def step_over() -> tuple:
            # one pass: the state just after every breakpoint equal to t_lo
            after_lo = state_after(t_lo, g, tb, mem, cp, dtype)
            f1k, _ = slope(t_lo, *after_lo, cp)
            return f1k >= 0, t_lo, after_lo[2], t_lo, after_lo

        # the first round a chunk, the later ones wide chunks on large
        # problems (``WIDE``, ``WIDE_FROM``)
        c_here = state[2] + (t_here - a) * state[1]
        branches = [
            lambda: (
                (jnp.array(True), t_here, c_here, a, state),
                jnp.asarray(jnp.inf, dtype),
                seen,
            ),
            lambda: chunked(False),
        ]
        if wide:
            branches.append(lambda: chunked(True))
        # round 0 the chunk; later rounds the last branch (wide, if any)
        walked, missed, seen = jax.lax.switch(
            jnp.where(here, 0, jnp.minimum(rounds + 1, len(branches) - 1)), branches
        )
        stuck = ~here & ~(missed > t_lo)
        stop, t_walk, c_walk, new_a, new_state = jax.lax.cond(
            stuck, step_over, lambda: walked
        )
        tstar = jnp.where(stop, t_walk, tstar)
        cstar = jnp.where(stop, c_walk, cstar)
        return new_a, new_state, stop, tstar, cstar, rounds + 1, seen

    # (a model rising at once is the first round's first_stop, at t* = 0)
    state0 = start(tb, g, mem, cp, dtype)
    rounds0 = jnp.zeros((), jnp.int32)
    unseen = (jnp.asarray(-jnp.inf, dtype), no_histogram(tb, dtype))
    init = (zero, state0, skip, zero, jnp.zeros_like(state0[2]), rounds0, unseen)
    a, end, done, tstar, cstar, rounds, _ = jax.lax.while_loop(cond, body, init)
    # a walk cut at MAX_ROUNDS (or a skipped one) stands at a
    return Walked(jnp.where(done, tstar, a), jnp.where(done, cstar, end[2]), rounds)


def cauchy(
    x: Any,
    g: Any,
    lo: Any,
    up: Any,
    mem: Memory,
    cp: Compact,
    dtype: Any,
    skip: Any = False,
) -> tuple[Any, jax.Array]:
    """The generalized Cauchy point ``x_c = P(x - t* g)`` (see `cauchy_walk`).

    Returns:
        ``(x_c, c)``: the point, and ``c = W^T (x_c - x)`` from the walk
        (``2m``; for the subspace step).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds._lbfgsb._memory import compact, new_memory
        >>> x, g = jnp.array([0.5, 0.5]), jnp.array([1.0, -2.0])
        >>> mem = new_memory(x, 2, jnp.float32)  # empty: B = I
        >>> xc, _ = cauchy(x, g, 0.0, 0.6, mem, compact(mem), jnp.float32)
        >>> print(xc)
        [0.  0.6]
    """
    walked = cauchy_walk(x, g, lo, up, mem, cp, dtype, skip)
    tstar = walked.t

    def leaf(x: Any, g: Any, lo: Any, up: Any, tb: Any) -> Any:
        # a passed breakpoint, the last one too, puts its variable exactly
        # at the bound (x - t g may round just inside: it would count as free)
        t = tstar.astype(x.dtype)
        at = jnp.where(g < 0, up, lo)
        return jnp.where((g != 0) & (tb <= t), at, jnp.clip(x - t * g, lo, up))

    return tmap(leaf, x, g, lo, up, breakpoints(x, g, lo, up)), walked.c
