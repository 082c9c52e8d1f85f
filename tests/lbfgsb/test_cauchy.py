"""The generalized Cauchy point against the piecewise quadratic, in NumPy.

The reference walks the projected path ``x(t) = P(x - t g)`` segment by
segment with the dense BFGS matrix (an implementation independent of the
solver's bracketing probes), and a fine grid checks that the point found is
the path's *first* local minimiser.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._cauchy import breakpoints, cauchy, cauchy_time
from jaxbounds._lbfgsb._memory import compact, new_memory

from .problems import dense_bfgs, memory_of, random_pairs


def model_on_path(t, x, g, lo, up, b):
    """``q(t) = g.z + z.B z / 2`` with ``z = P(x - t g) - x``."""
    z = np.clip(x - t * g, lo, up) - x
    return g @ z + 0.5 * z @ b @ z


def first_minimiser(x, g, lo, up, b):
    """The first local minimiser of ``q`` along the path: the segment walk."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = np.where(g < 0, (x - up) / g, np.where(g > 0, (x - lo) / g, np.inf))
    tb = np.maximum(tb, 0)
    starts = np.unique(np.concatenate([[0.0], tb[np.isfinite(tb)]]))
    ends = np.append(starts[1:], np.inf)
    for t0, t1 in zip(starts, ends):
        z = np.clip(x - t0 * g, lo, up) - x
        d = np.where(tb > t0, -g, 0.0)
        f1 = g @ d + d @ b @ z
        f2 = d @ b @ d
        if f1 >= 0:
            return t0
        if f2 > 0 and t0 - f1 / f2 < t1:
            return t0 - f1 / f2
    return starts[-1]


def problem(seed, n=12, m=4, pushes=6, ties=False):
    rng = np.random.default_rng(seed)
    pairs = random_pairs(n, pushes, rng)
    lo = -rng.uniform(0.1, 2.0, n)
    up = rng.uniform(0.1, 2.0, n)
    lo[0], up[1] = -np.inf, np.inf
    x = rng.uniform(lo.clip(-2), up.clip(max=2))
    g = 3 * rng.normal(size=n)
    if ties:  # several variables meet their bounds at the same time
        x[:6] = 0.0
        lo[:6], up[:6] = -1.0, 1.0
        g[:6] = np.array([2.0, -2.0, 2.0, 0.5, -0.5, 0.0])
    x[2] = lo[2]  # at a bound, pushed against it: blocked from the start
    g[2] = abs(g[2])
    return x, g, lo, up, pairs, m


#: Seed 1 has a local minimiser inside a segment, then a lower one later: the
#: probing search (which reads the slope only just after probed breakpoints)
#: steps over the first. The point it takes is still a local minimiser with
#: a lower model value (`test_cauchy_point_is_a_local_minimiser_no_worse`),
#: so the method stays convergent, but it is not the breakpoint walk's.
SKIPS_INTERIOR = pytest.mark.xfail(
    strict=True, reason="probing search may step over an interior minimiser"
)
SEEDS = [0, pytest.param(1, marks=SKIPS_INTERIOR), 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_cauchy_point_is_the_first_minimiser_of_the_path(seed, ties):
    x, g, lo, up, pairs, m = problem(seed, ties=ties)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    xc = np.asarray(cauchy(*args, mem, compact(mem), jnp.float64))
    t_ref = first_minimiser(x, g, lo, up, b)
    np.testing.assert_allclose(xc, np.clip(x - t_ref * g, lo, up), atol=1e-9)
    # brute force: q decreases up to t*, and not past it
    q = lambda t: model_on_path(t, x, g, lo, up, b)  # noqa: E731
    grid = np.linspace(0.0, t_ref, 2001)
    assert q(t_ref) <= min(q(t) for t in grid) + 1e-9
    assert q(t_ref) <= q(t_ref + 1e-4) + 1e-12
    assert np.all(xc >= lo) and np.all(xc <= up)


@pytest.mark.parametrize("seed", range(8))
def test_cauchy_point_is_a_local_minimiser_no_worse(seed):
    x, g, lo, up, pairs, m = problem(seed)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    t, _ = cauchy_time(*args, mem, compact(mem), jnp.float64)
    t = float(t)
    q = lambda t: model_on_path(t, x, g, lo, up, b)  # noqa: E731
    assert q(t) <= q(first_minimiser(x, g, lo, up, b)) + 1e-9
    assert q(t) <= min(q(t - 1e-5), q(t + 1e-5)) + 1e-12
    assert q(t) < 0  # a decrease of the model: g is not zero here


def test_empty_memory_is_steepest_descent_projected():
    # B = I: q'(t) = -|g_moving|^2 (1 - t), so t* = 1 unless the path bends
    x = jnp.array([0.5, 0.5, 0.0])
    g = jnp.array([0.2, -0.1, 0.3])
    mem = new_memory(x, 3, jnp.float64)
    t, _ = cauchy_time(x, g, -1.0, 1.0, mem, compact(mem), jnp.float64)
    assert float(t) == pytest.approx(1.0)


def test_skip_runs_no_round():
    x, g, lo, up, pairs, m = problem(0)
    mem = memory_of(pairs, x.size, m)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    _, rounds = cauchy_time(*args, mem, compact(mem), jnp.float64)
    assert int(rounds) > 0
    _, rounds = cauchy_time(*args, mem, compact(mem), jnp.float64, skip=True)
    assert int(rounds) == 0


def test_breakpoints():
    x = jnp.array([0.0, 0.5, 0.5, 1.0, 0.3])
    g = jnp.array([1.0, 2.0, -1.0, -1.0, 0.0])
    np.testing.assert_array_equal(
        breakpoints(x, g, 0.0, 1.0), [0.0, 0.25, 0.5, 0.0, np.inf]
    )
