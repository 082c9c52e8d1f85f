"""The subspace step against a dense solve over the free variables, in NumPy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._cauchy import cauchy
from jaxbounds._lbfgsb._memory import compact
from jaxbounds._lbfgsb._subspace import free_step, subspace

from .problems import dense_bfgs, memory_of, random_pairs
from .test_cauchy import problem


def reference(x, g, xc, lo, up, b):
    """Byrd et al. section 5.1 with a dense solve, then projection / truncation."""
    free = (xc > lo) & (xc < up)
    r = g + b @ (xc - x)
    du = np.zeros_like(x)
    du[free] = -np.linalg.solve(b[np.ix_(free, free)], r[free])
    projected = np.clip(xc + du, lo, up)
    if g @ (projected - x) < 0:
        return du, projected, "projected"
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(du > 0, (up - xc) / du, np.where(du < 0, (lo - xc) / du, 1))
    alpha = np.clip(room, 0, 1).min()
    return du, np.clip(xc + alpha * du, lo, up), "truncated"


@pytest.mark.parametrize("seed", range(10))
def test_subspace_step_is_the_dense_reduced_newton_step(seed):
    x, g, lo, up, pairs, m = problem(seed)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    cp = compact(mem)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    xc = cauchy(*args, mem, cp, jnp.float64)
    xa, ga, la, ua = args
    free, du = free_step(xa, ga, xc, la, ua, mem, cp, jnp.float64)
    du_ref, xbar_ref, _ = reference(x, g, np.asarray(xc), lo, up, b)
    np.testing.assert_allclose(du, du_ref, rtol=1e-8, atol=1e-10)
    xbar = np.asarray(subspace(xa, ga, xc, la, ua, mem, cp, jnp.float64))
    np.testing.assert_allclose(xbar, xbar_ref, rtol=1e-8, atol=1e-10)
    assert np.all(xbar >= lo) and np.all(xbar <= up)


def test_the_step_leaves_the_box_and_is_projected_back():
    # B = diag-dominant SPD, x_c inside, the Newton step overshoots the wall
    n = 4
    pairs = random_pairs(n, 3, np.random.default_rng(11))
    b = dense_bfgs(pairs, 3)
    mem = memory_of(pairs, n, 3)
    x = np.zeros(n)
    xc = np.full(n, 0.01)
    g = -b @ np.full(n, 5.0)  # the model's minimiser: x = 5, far past up = 1
    lo, up = np.full(n, -1.0), np.full(n, 1.0)
    du_ref, xbar_ref, branch = reference(x, g, xc, lo, up, b)
    assert branch == "projected" and np.any(xc + du_ref > up)
    xbar = subspace(
        *[jnp.asarray(v) for v in (x, g, xc, lo, up)],
        mem,
        compact(mem),
        jnp.float64,
    )
    np.testing.assert_allclose(xbar, xbar_ref, rtol=1e-10)
    np.testing.assert_array_equal(xbar, np.ones(n))


def test_no_descent_after_projection_truncates_at_the_box():
    # (found by search: the projected point goes uphill from x, so the step
    # stops at the first wall instead: Morales and Nocedal)
    rng = np.random.default_rng(832)
    n = 3
    pairs = random_pairs(n, 2, rng)
    b = dense_bfgs(pairs, 2)
    mem = memory_of(pairs, n, 2)
    x, g = np.zeros(n), rng.normal(size=n)
    lo, up = -rng.uniform(0.01, 1, n), rng.uniform(0.01, 1, n)
    xc = np.clip(x - 0.01 * g, lo, up)
    _, xbar_ref, branch = reference(x, g, xc, lo, up, b)
    assert branch == "truncated"
    xbar = subspace(
        *[jnp.asarray(v) for v in (x, g, xc, lo, up)],
        mem,
        compact(mem),
        jnp.float64,
    )
    np.testing.assert_allclose(xbar, xbar_ref, rtol=1e-10, atol=1e-14)
    assert float(g @ (np.asarray(xbar) - x)) < 0
