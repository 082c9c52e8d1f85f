"""One iteration: the points it evaluates, the pairs it keeps, its stopping norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._iteration import Point, iteration, keep_pair, pg_norm
from jaxbounds._lbfgsb._memory import new_memory

from .problems import memory_of, random_pairs

F64 = jnp.float64


def step(fun, x, lo, up, mem, first=False):
    """One iteration of ``fun`` from ``x``; also the points it evaluated."""
    seen = []

    def value_and_grad(x):
        jax.debug.callback(lambda v: seen.append(np.asarray(v).copy()), x)
        return jax.value_and_grad(fun)(x)

    f, g = jax.value_and_grad(fun)(x)
    new, _, mem, evals, ok = iteration(
        value_and_grad, Point(x, f, g), None, lo, up, mem, first, F64
    )
    jax.effects_barrier()
    return new, mem, int(evals), bool(ok), seen


@pytest.mark.slow
def test_trial_points_are_clipped_into_the_box():
    # a linear descent: the step goes to the walls, where x + (up - x) can
    # round past up; every evaluated point must still be inside
    rng = np.random.default_rng(0)
    n = 2000
    lo, up = jnp.asarray(-rng.uniform(0.1, 1, n)), jnp.asarray(rng.uniform(0.1, 1, n))
    x = jnp.asarray(rng.uniform(-0.1, 0.1, n))
    c = jnp.asarray(10 * rng.normal(size=n))  # most steps reach a wall
    at_up = np.asarray(x - c > up)
    naive = np.asarray(x) + (np.asarray(up) - np.asarray(x))
    assert np.any(naive[at_up] > np.asarray(up)[at_up])  # (rounding overshoots)
    new, _, evals, ok, seen = step(lambda x: c @ x, x, lo, up, new_memory(x, 3, F64))
    assert ok and evals == len(seen) >= 1
    for p in seen:
        assert np.all(p >= np.asarray(lo)) and np.all(p <= np.asarray(up))
    # the step is to P(x - c): the walls reached (to rounding)
    np.testing.assert_allclose(new.x[at_up], up[at_up], rtol=1e-15)
    at_lo = np.asarray(x - c < lo)
    np.testing.assert_allclose(new.x[at_lo], lo[at_lo], rtol=1e-15)
    assert at_up.sum() + at_lo.sum() > n // 2


def test_a_pair_without_positive_curvature_is_not_stored():
    # concave along the step, accepted at the wall: s.y = -0.5
    x = jnp.array([0.5])
    new, mem, _, ok, _ = step(
        lambda x: -jnp.sum(x**2), x, -1.0, 1.0, new_memory(x, 3, F64)
    )
    assert ok and float(new.x[0]) == 1.0
    assert np.all(np.asarray(mem.age) == -1)  # nothing stored
    # convex: the pair is stored
    new, mem, _, ok, _ = step(
        lambda x: jnp.sum((x - 2.0) ** 2), x, -1.0, 1.0, new_memory(x, 3, F64)
    )
    assert ok and int(jnp.max(mem.age)) == 0


def test_keep_pair_is_scipys_curvature_test():
    eps = np.finfo(np.float64).eps
    s, g = jnp.array([1.0, 0.0]), jnp.array([-1.0, 0.0])
    for sy, kept in [(1.0, True), (2 * eps, True), (0.5 * eps, False), (0.0, False)]:
        y = jnp.array([sy, 3.0])
        assert bool(keep_pair(s, y, g, F64)) == kept, sy
    assert not bool(keep_pair(s, jnp.array([-1.0, 0.0]), g, F64))


def test_a_step_decreases_the_value_and_updates_memory_in_order():
    n = 6
    pairs = random_pairs(n, 3, np.random.default_rng(2))
    mem = memory_of(pairs, n, 4)
    fun = lambda x: jnp.sum((x - 0.3) ** 2 * jnp.arange(1.0, n + 1))  # noqa: E731
    x = jnp.zeros(n)
    new, mem2, _, ok, seen = step(fun, x, -1.0, 0.2, mem)
    assert ok and float(new.f) < float(fun(x))
    assert float(new.f) == float(fun(new.x))
    assert sorted(np.asarray(mem2.age).tolist()) == [0, 1, 2, 3]
    assert any(np.array_equal(p, np.asarray(new.x)) for p in seen)


def test_projected_gradient_norm():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, 50)
    x[:5], x[5:10] = -1.0, 1.0
    g = rng.normal(size=50)
    ref = np.abs(np.clip(x - g, -1, 1) - x).max()
    tree = {"a": jnp.asarray(x[:20]), "b": jnp.asarray(x[20:]).reshape(5, 6)}
    gt = {"a": jnp.asarray(g[:20]), "b": jnp.asarray(g[20:]).reshape(5, 6)}
    bounds = {"a": -1.0, "b": -1.0}, {"a": 1.0, "b": 1.0}
    assert float(pg_norm(tree, gt, *bounds, F64)) == pytest.approx(ref, rel=1e-15)


def test_the_kept_free_set_products_follow_the_iterations():
    # a large leaf (kept from step to step): after each iteration, the memory's
    # products equal the masked products of its pairs over the mask it keeps
    # (but for the slot written since, whose row the next step recomputes)
    rng = np.random.default_rng(4)
    n = 6000
    target = jnp.asarray(rng.normal(size=n))
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=n))

    def fun(x):
        return jnp.sum(w * (x - target) ** 2) + 0.01 * jnp.sum(x) ** 2

    lo, up = jnp.full(n, -0.5), jnp.full(n, 0.5)
    vg = jax.value_and_grad(fun)

    @jax.jit
    def run(here, mem, first):
        new, _, mem, _, ok = iteration(vg, here, None, lo, up, mem, first, F64)
        return new, mem, ok

    x = jnp.zeros(n)
    here = Point(x, *vg(x))
    mem = new_memory(x, 4, F64)
    incremental = 0
    for k in range(10):
        here, mem, ok = run(here, mem, k == 0)
        assert bool(ok)
        s, y, z = np.asarray(mem.s), np.asarray(mem.y), np.asarray(mem.free)
        want = np.stack([(y * z) @ y.T, (s * z) @ y.T, (s * ~z) @ s.T])
        same = ~np.asarray(mem.written)
        assert same.sum() >= 3
        np.testing.assert_allclose(
            np.asarray(mem.grams)[:, same][:, :, same],
            want[:, same][:, :, same],
            rtol=1e-10,
            atol=1e-10,
        )
        incremental += int(np.max(mem.stale) > 0)
    assert incremental >= 3
