"""The generalized Cauchy point against the piecewise quadratic, in NumPy.

The reference walks the projected path ``x(t) = P(x - t g)`` segment by
segment with the dense BFGS matrix (an implementation independent of the
solver's chunked walk), and a fine grid checks that the point found is the
path's *first* local minimiser. Small chunk, bucket and hash settings make
the walk take many rounds, miss indices and step over tie groups larger
than a chunk on problems of a dozen variables.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb import _breakpoints, _cauchy, _memory
from jaxbounds._lbfgsb._cauchy import cauchy, cauchy_walk
from jaxbounds._lbfgsb._memory import compact, new_memory, push

from .problems import (
    dense_bfgs,
    first_minimiser,
    grouped_problem,
    long_walk,
    memory_of,
    model_on_path,
    problem,
    random_pairs,
)

#: (chunk, buckets, hashes, hashed): the default, and settings small enough
#: that a dozen variables take many rounds, collide in the hash and step over
#: ties (hashed: as on several devices; else one compaction, as on one).
SETTINGS = {
    "default": (_breakpoints.CHUNK, _breakpoints.BUCKETS, _breakpoints.HASHES, False),
    "chunks of 2": (2, 8, 3, True),
    "chunks of 2, compacted": (2, 8, 3, False),
    "one hash in 4 slots": (3, 4, 1, True),
    "groups split by a miss": (20, 32, 1, True),
}


_SOLVERS: dict = {}


@pytest.fixture(params=list(SETTINGS))
def walk_time(request, monkeypatch):
    """``cauchy_walk`` jitted under one setting (traced once per setting)."""
    chunk, buckets, hashes, hashed = SETTINGS[request.param]
    monkeypatch.setattr(_breakpoints, "hashed", lambda: hashed)
    monkeypatch.setattr(_breakpoints, "CHUNK", chunk)
    monkeypatch.setattr(_breakpoints, "BUCKETS", buckets)
    monkeypatch.setattr(_breakpoints, "HASHES", hashes)
    monkeypatch.setattr(_breakpoints, "WIDE_FROM", 0)  # wide rounds after the first
    if request.param not in _SOLVERS:
        _SOLVERS[request.param] = jax.jit(
            lambda x, g, lo, up, mem: cauchy_walk(
                x, g, lo, up, mem, compact(mem), jnp.float64
            )
        )
    return _SOLVERS[request.param]


def w_transpose(mem):
    """``W^T = [Y, theta S]^T`` in slot order, empty slots zero (NumPy)."""
    s_rows, y_rows = np.asarray(mem.s), np.asarray(mem.y)
    filled = np.tile(np.asarray(mem.age) >= 0, 2)[:, None]
    return np.vstack([y_rows, float(mem.theta) * s_rows]) * filled


# Seed 1 has a local minimiser inside a segment and a lower one later: the
# probing search of the previous release stepped over the first.
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_cauchy_point_is_the_first_minimiser_of_the_path(seed, ties, walk_time):
    x, g, lo, up, pairs, m = problem(seed, ties=ties)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    t, c, _ = walk_time(*[jnp.asarray(v) for v in (x, g, lo, up)], mem)
    xc = np.clip(x - float(t) * g, lo, up)
    np.testing.assert_allclose(c, w_transpose(mem) @ (xc - x), rtol=1e-9, atol=1e-10)
    t_ref = first_minimiser(x, g, lo, up, b)
    np.testing.assert_allclose(xc, np.clip(x - t_ref * g, lo, up), atol=1e-9)
    # brute force: q decreases up to t*, and not past it
    q = lambda t: model_on_path(t, x, g, lo, up, b)  # noqa: E731
    grid = np.linspace(0.0, t_ref, 2001)
    assert q(t_ref) <= min(q(t) for t in grid) + 1e-9
    assert q(t_ref) <= q(t_ref + 1e-4) + 1e-12


@pytest.mark.parametrize("seed", range(6))
def test_groups_of_equal_breakpoints_are_walked_whole(seed, walk_time):
    # 24 variables in 4 groups that meet their bounds together: the slope
    # inside a group depends on the order it is passed, and is not the path's
    x, g, lo, up, pairs, m = grouped_problem(seed)
    mem = memory_of(pairs, x.size, m)
    t, _, _ = walk_time(*[jnp.asarray(v) for v in (x, g, lo, up)], mem)
    t_ref = first_minimiser(x, g, lo, up, dense_bfgs(pairs, m))
    assert float(t) == pytest.approx(t_ref, rel=1e-10)


def test_cauchy_is_the_projected_point_at_the_time():
    x, g, lo, up, pairs, m = problem(4)
    mem = memory_of(pairs, x.size, m)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    xc = np.asarray(cauchy(*args, mem, compact(mem), jnp.float64)[0])
    t = first_minimiser(x, g, lo, up, dense_bfgs(pairs, m))
    np.testing.assert_allclose(xc, np.clip(x - t * g, lo, up), atol=1e-9)
    assert np.all(xc >= lo) and np.all(xc <= up)


def test_empty_memory_is_steepest_descent_projected():
    # B = I: q'(t) = -|g_moving|^2 (1 - t), so t* = 1 unless the path bends
    x = jnp.array([0.5, 0.5, 0.0])
    g = jnp.array([0.2, -0.1, 0.3])
    mem = new_memory(x, 3, jnp.float64)
    t = cauchy_walk(x, g, -1.0, 1.0, mem, compact(mem), jnp.float64).t
    assert float(t) == pytest.approx(1.0)


def test_skip_runs_no_round():
    x, g, lo, up, pairs, m = problem(0)
    mem = memory_of(pairs, x.size, m)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    assert int(cauchy_walk(*args, mem, compact(mem), jnp.float64).rounds) > 0
    walked = cauchy_walk(*args, mem, compact(mem), jnp.float64, skip=True)
    assert int(walked.rounds) == 0 and float(walked.t) == 0
    np.testing.assert_array_equal(walked.c, 0)


@pytest.mark.parametrize("others_move", [True, False])
def test_ties_larger_than_a_chunk_are_stepped_over(monkeypatch, others_move):
    # 30 variables meet their bounds at t = 0.5: with chunks of 4 that group
    # never fits and is passed by one step over. When the 10 others move, the
    # walk goes on past it; when they never move, nothing moves past the
    # group and the walk stops there, in the round that steps over it. Either
    # way C = W^T z where the walk stops
    monkeypatch.setattr(_breakpoints, "CHUNK", 4)
    monkeypatch.setattr(_breakpoints, "BUCKETS", 8)
    rng = np.random.default_rng(5)
    n, m = 40, 3
    pairs = random_pairs(n, 3, rng)
    x, lo, up = np.zeros(n), -np.ones(n), np.ones(n)
    g = np.zeros(n)
    g[:30] = 2.0 * rng.choice([-1.0, 1.0], 30)
    if others_move:
        g[30:] = rng.uniform(0.1, 0.5, 10)
    mem = memory_of(pairs, n, m)
    t_ref = first_minimiser(x, g, lo, up, dense_bfgs(pairs, m))
    assert (t_ref == 0.5) is not others_move
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    t, c, rounds = cauchy_walk(*args, mem, compact(mem), jnp.float64)
    assert float(t) == pytest.approx(t_ref, rel=1e-10)
    assert int(rounds) >= (2 if others_move else 1)
    z = np.clip(x - float(t) * g, lo, up) - x
    np.testing.assert_allclose(c, w_transpose(mem) @ z, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_a_minimiser_before_the_first_breakpoint_carries_its_c(seed, walk_time):
    # a loose box: the model's minimiser comes before any bound is met
    x, g, _, _, pairs, m = problem(seed)
    lo, up = x - 1e3, x + 1e3
    mem = memory_of(pairs, x.size, m)
    t, c, _ = walk_time(*[jnp.asarray(v) for v in (x, g, lo, up)], mem)
    tb = np.abs(np.where(g > 0, x - lo, up - x) / np.where(g != 0, g, 1))
    assert 0 < float(t) < tb.min()
    np.testing.assert_allclose(c, w_transpose(mem) @ (-float(t) * g), rtol=1e-10)


def test_rounds_after_the_first_take_wide_chunks(monkeypatch):
    assert not _breakpoints.wide_rounds(jnp.zeros(_breakpoints.WIDE_FROM - 1))
    assert _breakpoints.wide_rounds(jnp.zeros(_breakpoints.WIDE_FROM))
    # B = I (empty memory): the minimiser lies past all 60 breakpoints. With
    # chunks of 2 the first round walks 2, each later one WIDE x 2; the
    # point is the one-by-one walk's
    monkeypatch.setattr(_breakpoints, "CHUNK", 2)
    monkeypatch.setattr(_breakpoints, "BUCKETS", 16)
    monkeypatch.setattr(_breakpoints, "WIDE_FROM", 0)
    x, g, lo, up = long_walk(np.random.default_rng(8))
    n = x.size
    mem = new_memory(jnp.zeros(n), 3, jnp.float64)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    t, _, rounds = cauchy_walk(*args, mem, compact(mem), jnp.float64)
    t_ref = first_minimiser(x, g, lo, up, np.eye(n))
    assert float(t) == pytest.approx(t_ref, rel=1e-12)
    width = 2 * _breakpoints.WIDE
    assert int(rounds) <= 1 + -(-(n - 2) // width) + 2  # (+2: hash misses)
    assert int(rounds) < n // 2 - 2  # what chunks of 2 would take


@pytest.mark.parametrize("pushes", [1, 3, 4])
def test_a_filling_memory_walks_its_first_slots(monkeypatch, pushes):
    # 6 slots holding 1 or 3 pairs: the wide rounds read the first 3 slots
    # only (on large problems); 4 pairs: all 6. Either way the reference's
    # point, and C over all 2m columns (zero on the empty slots)
    monkeypatch.setattr(_memory, "FEW_FROM", 0)
    monkeypatch.setattr(_breakpoints, "WIDE_FROM", 0)
    monkeypatch.setattr(_breakpoints, "CHUNK", 2)
    monkeypatch.setattr(_breakpoints, "BUCKETS", 8)
    monkeypatch.setattr(_breakpoints, "hashed", lambda: False)
    m = 6
    rng = np.random.default_rng(pushes)
    # (a long walk: many wide rounds, each from the state the last left)
    long = (*long_walk(rng), random_pairs(60, pushes, rng), m)
    for seed in range(5):
        x, g, lo, up, pairs, _ = (
            long if seed == 4 else problem(seed, m=m, pushes=pushes)
        )
        mem = memory_of(pairs, x.size, m)
        assert bool(_memory.holds_at_most(mem, 3)) == (pushes <= 3)
        args = [jnp.asarray(v) for v in (x, g, lo, up)]
        t, c, rounds = cauchy_walk(*args, mem, compact(mem), jnp.float64)
        assert int(rounds) > 1  # (chunks of 2: wide rounds after the first)
        xc = np.clip(x - float(t) * g, lo, up)
        t_ref = first_minimiser(x, g, lo, up, dense_bfgs(pairs, m))
        np.testing.assert_allclose(xc, np.clip(x - t_ref * g, lo, up), atol=1e-9)
        want = w_transpose(mem) @ (xc - x)
        np.testing.assert_allclose(c, want, rtol=1e-9, atol=1e-10)


def test_tree_of_leaves_walks_as_one_vector(walk_time):
    # the same problem as a dict of a matrix and a vector: the same point
    x, g, lo, up, pairs, m = problem(3, ties=True)
    b = dense_bfgs(pairs, m)
    t_ref = first_minimiser(x, g, lo, up, b)

    def tree(v):
        return {"a": jnp.asarray(v[:8]).reshape(2, 4), "b": jnp.asarray(v[8:])}

    mem = new_memory(tree(x), m, jnp.float64)
    for s, y in pairs:
        mem = push(mem, tree(s), tree(y), jnp.float64)
    t, _, _ = walk_time(*map(tree, (x, g, lo, up)), mem)
    assert float(t) == pytest.approx(t_ref, rel=1e-9)


def test_a_walk_cut_at_max_rounds_stops_on_the_path_before_the_minimiser(
    monkeypatch,
):
    # chunks of 2 and a single round: the walk stands after the first chunk,
    # where the model has descended, short of the first minimiser
    monkeypatch.setattr(_breakpoints, "CHUNK", 2)
    monkeypatch.setattr(_breakpoints, "BUCKETS", 8)
    monkeypatch.setattr(_cauchy, "MAX_ROUNDS", 1)
    x, g, lo, up, pairs, m = grouped_problem(2)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    t, c, rounds = cauchy_walk(*args, mem, compact(mem), jnp.float64)
    t_ref = first_minimiser(x, g, lo, up, b)
    q = lambda t: model_on_path(t, x, g, lo, up, b)  # noqa: E731
    assert int(rounds) == 1
    z = np.clip(x - float(t) * g, lo, up) - x  # C where the walk stands
    np.testing.assert_allclose(c, w_transpose(mem) @ z, rtol=1e-9, atol=1e-10)
    assert 0 < float(t) < t_ref
    assert q(float(t)) < 0
    # the point walked to is a breakpoint group's time
    assert np.any(np.isclose(float(t), np.abs(x - np.where(g > 0, lo, up)) / np.abs(g)))
