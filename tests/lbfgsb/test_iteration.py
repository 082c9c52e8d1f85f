"""The solver's init / step / terminate: the points a step evaluates, the pairs
it keeps, the memory emptied when its line search fails, the stopping test."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._iteration import (
    MAX_STALL,
    Problem,
    init,
    keep_pair,
    pg_norm,
    start,
    step,
    terminate,
)
from jaxbounds._lbfgsb._memory import new_memory

from .problems import memory_of, random_pairs

F64 = jnp.float64


def state_at(problem, x, mem, first=False):
    """A solver state at ``x`` with the memory ``mem`` (after a step, or the first)."""
    state = init(problem, start(problem, x), mem.age.shape[0])
    return state._replace(memory=mem, steps=jnp.asarray(0 if first else 1))


def one_step(fun, x, lo, up, mem, first=False):
    """One step of ``fun`` from ``x``; also the points it evaluated."""
    seen = []

    def value_and_grad(x):
        jax.debug.callback(lambda v: seen.append(np.asarray(v).copy()), x)
        return jax.value_and_grad(fun)(x)

    problem = Problem(value_and_grad, lo, up, None, F64)
    new = step(problem, state_at(problem, x, mem, first))
    jax.effects_barrier()
    seen = seen[1:]  # (the start's evaluation)
    return new.here, new.memory, int(new.searched), bool(new.ok), seen


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
    new, _, evals, ok, seen = one_step(
        lambda x: c @ x, x, lo, up, new_memory(x, 3, F64)
    )
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
    new, mem, _, ok, _ = one_step(
        lambda x: -jnp.sum(x**2), x, -1.0, 1.0, new_memory(x, 3, F64)
    )
    assert ok and float(new.x[0]) == 1.0
    assert np.all(np.asarray(mem.age) == -1)  # nothing stored
    # convex: the pair is stored
    new, mem, _, ok, _ = one_step(
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
    new, mem2, _, ok, seen = one_step(fun, x, -1.0, 0.2, mem)
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

    problem = Problem(vg, lo, up, None, F64)
    run = jax.jit(lambda state: step(problem, state))
    state = init(problem, start(problem, jnp.zeros(n)), 4)
    incremental = 0
    for _ in range(10):
        state = run(state)
        assert bool(state.ok)
        mem, kept = state.memory, state.kept
        s, y, z = np.asarray(mem.s), np.asarray(mem.y), np.asarray(kept.free)
        want = np.stack([(y * z) @ y.T, (s * z) @ y.T, (s * ~z) @ s.T])
        same = ~np.asarray(kept.written)
        assert same.sum() >= 3
        np.testing.assert_allclose(
            np.asarray(kept.grams)[:, same][:, :, same],
            want[:, same][:, :, same],
            rtol=1e-10,
            atol=1e-10,
        )
        incremental += int(np.max(kept.stale) > 0)
    assert incremental >= 3


def quadratic(x):
    return jnp.sum((x - 2.0) ** 2)


def test_init_projects_the_start_and_counts_its_evaluation():
    problem = Problem(jax.value_and_grad(quadratic), -1.0, 1.0, None, F64)
    state = init(problem, start(problem, jnp.array([-3.0, 0.5])), 4)
    np.testing.assert_array_equal(state.here.x, [-1.0, 0.5])
    assert float(state.here.f) == 9.0 + 2.25
    np.testing.assert_array_equal(state.here.g, [-6.0, -3.0])
    assert float(state.pg) == 2.0  # P(x - g) - x = [1, 1] - x
    assert int(state.steps) == 0 and int(state.evals) == 1
    assert np.all(np.asarray(state.memory.age) == -1)
    assert state.update is None
    assert bool(state.ok) and not bool(state.failed)


def test_start_keeps_a_given_value_inside_and_evaluates_outside():
    calls = []

    def vg(x):
        calls.append(1)
        return jax.value_and_grad(quadratic)(x)

    # relative to the params (the optax form): the point lands on params + u
    params = jnp.array([0.5, 0.25])
    problem = Problem(vg, -1.0, 1.0, params, F64)
    here = start(problem, params, jnp.asarray(7.0), jnp.array([1.0, 2.0]))
    assert float(here.f) == 7.0  # inside: the given value is used
    np.testing.assert_array_equal(here.g, [1.0, 2.0])
    outside = jnp.array([3.0, 0.25])
    problem = Problem(vg, -1.0, 1.0, outside, F64)
    here = start(problem, outside, jnp.asarray(7.0), jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(here.x, [1.0, 0.25])
    assert float(here.f) == float(quadratic(here.x))  # projected: evaluated


def state_with(**fields):
    problem = Problem(jax.value_and_grad(quadratic), -1.0, 1.0, None, F64)
    state = init(problem, start(problem, jnp.array([0.0, 0.5])), 2)
    return state._replace(**{k: jnp.asarray(v) for k, v in fields.items()})


@pytest.mark.parametrize(
    "fields, done, converged",
    [
        (dict(pg=1e-7), True, True),  # the projected gradient is small
        (dict(pg=1.0), False, False),
        (dict(pg=1e-7, ok=False), False, False),  # after a failed search: no
        (dict(pg=1.0, failed=True, ok=False), True, False),  # a second failure
        (dict(pg=1.0, stall=MAX_STALL), True, False),
        (dict(pg=1.0, stall=MAX_STALL - 1), False, False),
        # a full step with a relative decrease below ftol (1e-3 here)
        (dict(pg=1.0, steps=1, searched=1, f_prev=4.00001), True, True),
        (dict(pg=1.0, steps=1, searched=2, f_prev=4.00001), False, False),
        (dict(pg=1.0, steps=1, searched=1, f_prev=4.1), False, False),
        (dict(pg=1.0, steps=0, searched=1, f_prev=4.00001), False, False),
    ],
)
def test_terminate(fields, done, converged):
    state = state_with(**fields)
    state = state._replace(here=state.here._replace(f=jnp.asarray(4.0)))
    got = terminate(state, jnp.asarray(1e-6), jnp.asarray(1e-3))
    assert (bool(got[0]), bool(got[1])) == (done, converged)


def test_terminate_stops_unconverged_on_a_nan_value():
    state = state_with(pg=0.0)
    state = state._replace(here=state.here._replace(f=jnp.asarray(jnp.nan)))
    done, converged = terminate(state, jnp.asarray(1e-6), jnp.asarray(0.0))
    assert bool(done) and not bool(converged)


def lying(x):
    """``sum(x^2)`` with the gradient's sign flipped: every step goes uphill."""
    f, g = jax.value_and_grad(lambda x: jnp.sum(x**2))(x)
    return f, -g


def test_a_failed_line_search_keeps_the_point_and_empties_the_memory():
    # the model says the step descends (g.d < 0), the function rises along
    # it: no trial meets the sufficient decrease, the line search fails
    n = 6
    pairs = random_pairs(n, 3, np.random.default_rng(7))
    mem = memory_of(pairs, n, 4)
    problem = Problem(lying, -5.0, 5.0, None, F64)
    x = jnp.linspace(0.5, 1.5, n)
    state = state_at(problem, x, mem)
    assert np.sum(np.asarray(state.memory.age) >= 0) == 3
    new = step(problem, state)
    assert not bool(new.ok) and int(new.searched) > 1
    np.testing.assert_array_equal(new.here.x, x)  # the point stays
    assert float(new.here.f) == float(state.here.f)
    # the memory is emptied (B = I); it was not empty, so this is no failure yet
    assert np.all(np.asarray(new.memory.age) == -1)
    assert float(new.memory.theta) == 1.0
    assert not bool(new.failed)
    assert not bool(terminate(new, jnp.asarray(1e-9), jnp.asarray(0.0))[0])
    # the next step, from B = I, fails again: with nothing left, the solve stops
    again = step(problem, new)
    assert not bool(again.ok) and bool(again.failed)
    done, converged = terminate(again, jnp.asarray(1e-9), jnp.asarray(0.0))
    assert bool(done) and not bool(converged)
