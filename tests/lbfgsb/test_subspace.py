"""The subspace step against a dense solve over the free variables, in NumPy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb import _kept
from jaxbounds._lbfgsb._cauchy import cauchy
from jaxbounds._lbfgsb._kept import new_kept, sync
from jaxbounds._lbfgsb._memory import compact
from jaxbounds._lbfgsb._subspace import free_step, subspace

from .problems import dense_bfgs, memory_of, problem, random_pairs, reference


@pytest.mark.parametrize("seed", range(10))
def test_subspace_step_is_the_dense_reduced_newton_step(seed):
    x, g, lo, up, pairs, m = problem(seed)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    cp = compact(mem)
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    xc, _ = cauchy(*args, mem, cp, jnp.float64)
    xa, ga, la, ua = args
    kept = new_kept(xa, m, jnp.float64)
    free, du, _ = free_step(xa, ga, xc, la, ua, mem, kept, cp, jnp.float64)
    du_ref, xbar_ref, _ = reference(x, g, np.asarray(xc), lo, up, b)
    np.testing.assert_allclose(du, du_ref, rtol=1e-8, atol=1e-10)
    xbar = np.asarray(subspace(xa, ga, xc, la, ua, mem, kept, cp, jnp.float64)[0])
    np.testing.assert_allclose(xbar, xbar_ref, rtol=1e-8, atol=1e-10)
    assert np.all(xbar >= lo) and np.all(xbar <= up)


@pytest.mark.parametrize("seed", range(4))
def test_subspace_step_from_kept_products_is_the_dense_one(seed, monkeypatch):
    # the leaf keeps its products (as one of 4096 variables or more would):
    # kept at an earlier mask, brought to this one by `sync`'s update, and
    # ``W^T r`` from the kept Gram matrices (S^T Z S = S^T S - S_A^T S_A)
    monkeypatch.setattr(_kept, "KEEP_FROM", 1)
    x, g, lo, up, pairs, m = problem(seed, n=40)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    cp = compact(mem)
    xa, ga, la, ua = (jnp.asarray(v) for v in (x, g, lo, up))
    earlier = jnp.asarray(np.random.default_rng(seed).uniform(size=x.size) < 0.5)
    kept = new_kept(xa, m, jnp.float64)._replace(written=mem.age >= 0)
    kept, _, _ = sync(mem, kept, earlier, xa, jnp.float64)  # built at `earlier`
    xc, _ = cauchy(xa, ga, la, ua, mem, cp, jnp.float64)
    free, du, kept = free_step(xa, ga, xc, la, ua, mem, kept, cp, jnp.float64)
    assert 0 < int(jnp.sum(free != earlier)) <= _kept.budget(x.size)  # (updated)
    du_ref, _, _ = reference(x, g, np.asarray(xc), lo, up, b)
    np.testing.assert_allclose(du, du_ref, rtol=1e-8, atol=1e-10)


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
    xbar, _ = subspace(
        *[jnp.asarray(v) for v in (x, g, xc, lo, up)],
        mem,
        new_kept(jnp.zeros(n), mem.age.shape[0], jnp.float64),
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
    xbar, _ = subspace(
        *[jnp.asarray(v) for v in (x, g, xc, lo, up)],
        mem,
        new_kept(jnp.zeros(n), mem.age.shape[0], jnp.float64),
        compact(mem),
        jnp.float64,
    )
    np.testing.assert_allclose(xbar, xbar_ref, rtol=1e-10, atol=1e-14)
    assert float(g @ (np.asarray(xbar) - x)) < 0
