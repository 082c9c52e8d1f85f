"""`minimize`: checked against scipy and the KKT conditions, end to end.

References are independent of the code under test: scipy's L-BFGS-B
(Fortran) for the optimum, the KKT conditions computed from `jax.grad`, and
the points `fun` was evaluated at, recorded with `jax.debug.callback`.
Problems are small and their functions defined once, so each compiles once.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import jaxbounds as jb
from jaxbounds import lbfgsb, minimize

from .problems import PROBLEMS, N, kkt, rosen, scipy_solve
from helpers import count_compilations

#: float32 at 1M: a projected gradient of 1e-5 (the gradient's own rounding
#: is about 1e-6), each coordinate within 1e-5, the value within 1e-7 relative.
TOL32, X32, F32 = 1e-5, 1e-5, 1e-7

#: The points where `recorded` was evaluated, in order.
SEEN: list[np.ndarray] = []


def _record(x):
    SEEN.append(np.asarray(x).copy())


def recorded(x):
    jax.debug.callback(_record, x, ordered=True)
    return rosen(x)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_reaches_scipy_optimum_and_kkt(name):
    fun, x0, lo, up = PROBLEMS[name]
    x0 = jnp.full(N, x0, jnp.float64)
    tol = 1e-8
    # (the same bound arrays in both solves: tolerances are arguments, so the
    # second solve reuses the first one's compilation)
    box = jnp.asarray(lo, float), jnp.asarray(up, float)
    r = minimize(fun, x0, *box, tol=tol)
    assert bool(r.converged)
    ref = scipy_solve(fun, x0, lo, up)
    assert float(r.value) <= ref.fun + 1e-12 * max(1.0, abs(ref.fun))
    # about as few evaluations as scipy, with scipy's stopping rule
    rule = dict(gtol=1e-5, ftol=2.2e-9)
    quick = minimize(fun, x0, *box, tol=rule["gtol"], ftol=rule["ftol"])
    assert int(quick.num_fun_evals) <= 1.5 * scipy_solve(fun, x0, lo, up, **rule).nfev
    np.testing.assert_allclose(np.asarray(r.params), ref.x, atol=1e-6)
    pg, g, at_lo, at_up = kkt(fun, r.params, lo, up)
    # (the gradient computed here, outside the solver, differs by rounding)
    assert pg <= 2 * tol
    assert np.all(g[at_lo] >= -2 * tol) and np.all(g[at_up] <= 2 * tol)
    free = ~at_lo & ~at_up
    assert np.all(np.abs(g[free]) <= 2 * tol)
    if name == "rosenbrock, many active bounds":
        assert at_up.any()  # a bound holds descent back here
    # the value is the function's at the returned params
    assert float(r.value) == pytest.approx(float(fun(r.params)), rel=1e-14)


def test_never_evaluates_outside_and_counts_every_evaluation():
    lo = jnp.asarray(PROBLEMS["rosenbrock, mixed bounds"][2])
    up = jnp.asarray(PROBLEMS["rosenbrock, mixed bounds"][3])
    x0 = jnp.zeros(N)  # partly outside: projected in first
    SEEN.clear()
    r = minimize(recorded, x0, lo, up, tol=1e-8)
    jax.effects_barrier()
    assert bool(r.converged)
    pts = np.stack(SEEN)
    # some line searches took more than one evaluation
    assert len(pts) == int(r.num_fun_evals) > int(r.num_steps) + 1 > 5
    assert np.all(pts >= np.asarray(lo)) and np.all(pts <= np.asarray(up))
    # the start outside was projected onto the box
    np.testing.assert_array_equal(pts[0], np.clip(x0, lo, up))
    assert any(np.array_equal(p, np.asarray(r.params)) for p in pts)


@pytest.mark.slow
def test_fixed_parameters_stay_fixed_and_infinite_sides():
    def fun(p):
        return rosen(p["x"]) + jnp.sum((p["y"] - 3.0) ** 2)

    params = {"x": jnp.zeros(N), "y": jnp.zeros(3)}
    fixed = jnp.array([0.3, 0.7, 1.2])
    x_lo = jnp.full(N, -jnp.inf).at[2].set(0.25)
    x_up = jnp.full(N, jnp.inf).at[2].set(0.25).at[5].set(0.5)
    r = minimize(fun, params, {"x": x_lo, "y": fixed}, {"x": x_up, "y": fixed})
    assert bool(r.converged)
    np.testing.assert_array_equal(r.params["y"], fixed)
    assert float(r.params["x"][2]) == 0.25
    assert float(r.params["x"][5]) <= 0.5
    g = jax.grad(fun)(r.params)["x"]
    free = np.ones(N, bool)
    free[[2]] = False
    free[5] = float(r.params["x"][5]) < 0.5
    assert np.abs(np.asarray(g)[free]).max() <= 1e-6


@jax.jit
def fit(data, lo, up):
    """A batchable fit: its own data and its own bounds."""

    def fun(x):
        t = jnp.linspace(0.0, 1.0, 8)
        return jnp.sum((x[0] * jnp.exp(-t / x[1]) + x[2] - data) ** 2)

    return minimize(fun, jnp.array([1.0, 0.5, 0.0]), lo, up, tol=1e-7)


@pytest.mark.slow
def test_vmap_over_problems_with_their_own_bounds_matches_one_by_one():
    t = jnp.linspace(0.0, 1.0, 8)
    amps = jnp.array([1.0, 2.0, -1.0, 0.5])
    taus = jnp.array([0.2, 0.5, 0.05, 1.0])
    data = amps[:, None] * jnp.exp(-t / taus[:, None]) + 0.1
    lo = jnp.array([[-5.0, 0.1, -1], [0.0, 0.1, -1], [-5, 0.1, 0.2], [-5, 0.01, -1]])
    up = jnp.array([[5.0, 2.0, 1], [1.5, 2.0, 1], [5, 2.0, 1], [5, 0.5, 1]])
    batch = jax.jit(jax.vmap(fit))(data, lo, up)
    assert batch.params.shape == (4, 3)
    for i in range(4):
        one = fit(data[i], lo[i], up[i])
        np.testing.assert_allclose(batch.params[i], one.params, rtol=1e-7, atol=1e-9)
        assert bool(batch.converged[i]) and bool(one.converged)
    # bounds held where they bind (problems 1, 2 and 3)
    assert float(batch.params[1, 0]) == 1.5
    assert float(batch.params[2, 2]) == 0.2
    assert float(batch.params[3, 1]) == 0.5
    # traced scalar bounds under vmap
    scal = jax.vmap(lambda d, u: fit(d, 0.0, u))(data[:2], jnp.array([0.5, 9]))
    assert float(scal.params[0, 0]) == 0.5 and float(scal.params[1, 0]) < 9


@pytest.mark.slow
def test_nan_stops_unconverged_and_max_steps():
    r = minimize(lambda x: jnp.sum(jnp.log(x)), -jnp.ones(3), -2.0, 2.0)
    assert not bool(r.converged)
    assert int(r.num_steps) == 0 and int(r.num_fun_evals) == 1
    assert np.isnan(float(r.value))
    r = minimize(rosen, jnp.full(N, -1.2), -2.0, 0.5, max_steps=3)
    assert not bool(r.converged) and int(r.num_steps) == 3


class Cell(eqx.Module):
    tau: jax.Array
    w: jax.Array
    n: int
    k: jax.Array
    act: object
    hole: object  # None: an eqx.filter hole


def loss(m):
    return jnp.sum((m.tau - 1.0) ** 2) + jnp.sum((m.w - m.act(m.k * m.n)) ** 2)


def test_pytree_with_none_holes_and_int_leaves():
    model = Cell(
        jnp.array([3.0, 0.01]), jnp.ones(2), 3, jnp.array([1, 2]), jnp.sinh, None
    )
    lower, upper = jb.make_bounds(model)
    lower = jb.set_where(lower, "tau", 0.05)
    upper = jb.set_where(jb.set_where(upper, "tau", 2.0), "w", 20.0)
    r = minimize(loss, model, lower, upper)
    assert bool(r.converged)
    np.testing.assert_allclose(r.params.tau, [1.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(r.params.w, [np.sinh(3.0), 20.0], atol=1e-5)
    # leaves that are not parameters pass through untouched
    assert r.params.n == 3 and r.params.act is jnp.sinh and r.params.hole is None
    assert r.params.k is model.k
    # a finite bound on an int leaf is an error that names it
    with pytest.raises(TypeError, match="k"):
        bad = eqx.tree_at(lambda c: c.k, lower, 0.0, is_leaf=lambda x: x is None)
        minimize(loss, model, bad, upper)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_float32_and_float64(dtype):
    x0 = jnp.full(N, -1.2, dtype)
    r = minimize(rosen, x0, -2.0, 0.5, tol=1e-4 if dtype == jnp.float32 else 1e-9)
    assert r.params.dtype == dtype and r.value.dtype == dtype
    assert bool(r.converged)
    ref = scipy_solve(rosen, x0, -2.0, 0.5)
    np.testing.assert_allclose(np.asarray(r.params, float), ref.x, atol=1e-3)
    assert np.all(np.asarray(r.params) <= 0.5) and np.all(np.asarray(r.params) >= -2)


def test_bad_bound_trees_raise_naming_the_path():
    params = {"a": jnp.zeros(2), "b": {"tau": jnp.ones(3)}}
    with pytest.raises(ValueError, match="b.tau"):
        minimize(rosen, params, {"a": 0.0, "b": {"tau": 1.0}}, {"a": 1.0, "b": 0.5})
    with pytest.raises(ValueError, match="b.tau"):
        minimize(
            rosen, params, {"a": 0.0, "b": {"tau": 2.0}}, {"a": 1.0, "b": {"tau": 1.0}}
        )
    with pytest.raises(ValueError, match="tau"):
        lbfgsb({"a": 0.0, "b": {}}, {"a": 1.0, "b": {}}).init(params)


#: Calls of `counted`, one per fit per evaluation (also under vmap).
CALLS: list[int] = []


def counted(x):
    jax.debug.callback(lambda v: CALLS.append(1), x[0])
    return rosen(x)


@pytest.mark.slow  # over 5 s: a solve with a callback, which JAX never caches
def test_a_finished_fit_in_a_batch_takes_no_inner_trips():
    # fit 1 is done at its start (a loose tol); fit 0 runs for many steps.
    # Under vmap the batch evaluates `fun` for both fits on every trip, so
    # the trips are the running fit's evaluations exactly: the finished fit
    # drives no line search (and no Cauchy rounds) of its own
    starts = jnp.stack([jnp.full(N, -1.2), jnp.full(N, 0.3)])
    tols = jnp.array([1e-8, 1e4])
    CALLS.clear()
    solve = jax.jit(jax.vmap(lambda x, t: minimize(counted, x, -2.0, 0.5, tol=t)))
    r = solve(starts, tols)
    jax.effects_barrier()
    assert int(r.num_steps[1]) == 0 and int(r.num_fun_evals[1]) == 1
    assert int(r.num_steps[0]) > 10
    assert len(CALLS) == 2 * int(r.num_fun_evals[0])


@pytest.mark.slow
def test_the_tree_path_at_fifty_parameters_reaches_scipy():
    # n = 50 > 4 m: the bracketing Cauchy search and the Gram-matrix subspace
    # step, end to end (the problems above take the dense path)
    n = 50
    x0 = jnp.full(n, -1.2)
    r = minimize(rosen, x0, -2.0, 0.5, tol=1e-8)
    assert bool(r.converged)
    ref = scipy_solve(rosen, x0, -2.0, 0.5)
    assert float(r.value) <= ref.fun + 1e-12 * max(1.0, abs(ref.fun))
    np.testing.assert_allclose(np.asarray(r.params), ref.x, atol=1e-6)
    rule = dict(gtol=1e-5, ftol=2.2e-9)
    quick = minimize(rosen, x0, -2.0, 0.5, tol=rule["gtol"], ftol=rule["ftol"])
    ref_quick = scipy_solve(rosen, x0, -2.0, 0.5, **rule)
    assert int(quick.num_fun_evals) <= 1.5 * ref_quick.nfev


@pytest.mark.slow
def test_float32_at_a_million_parameters_reaches_the_float64_optimum():
    # 0.5 sum a (x - c)^2 + 0.5 (v.x)^2 / n in [0, 1]: a third of the
    # variables end on a bound, and the coupling makes it non-separable
    n = 1_000_000
    rng = np.random.default_rng(7)
    a, c, v = rng.uniform(1.0, 10.0, n), rng.uniform(-0.5, 1.5, n), rng.normal(size=n)

    def fun(x, a, c, v):
        return 0.5 * jnp.sum(a * (x - c) ** 2) + 0.5 * jnp.dot(v, x) ** 2 / n

    # the optimum in float64, from its KKT conditions: with s = v.x,
    # x = clip(c - s v / (n a), 0, 1), and s - v.x(s) is increasing in s, so
    # its root is one scalar solve (scipy's L-BFGS-B agreed to 3e-7 and took
    # 9 s; this takes 0.05 s)
    def optimum(s):
        return np.clip(c - (s / n) * v / a, 0.0, 1.0)

    span = np.abs(v).sum()
    s = scipy.optimize.brentq(lambda s: s - v @ optimum(s), -span, span, xtol=1e-12)
    best = optimum(s)
    args64 = [jnp.asarray(u, jnp.float64) for u in (a, c, v)]
    args32 = [jnp.asarray(u, jnp.float32) for u in (a, c, v)]
    run = jax.jit(
        lambda x0, lo, up, args: minimize(
            lambda x: fun(x, *args), x0, lo, up, tol=TOL32
        )
    )
    zeros = jnp.zeros(n, jnp.float32)
    r = run(zeros, zeros, jnp.ones(n, jnp.float32), args32)
    assert bool(r.converged) and r.params.dtype == jnp.float32
    x = np.asarray(r.params, np.float64)
    assert np.all((x >= 0) & (x <= 1))
    np.testing.assert_allclose(x, best, atol=X32)
    f64, f_best = (float(fun(jnp.asarray(u), *args64)) for u in (x, best))
    assert f64 <= f_best * (1 + F32)


def tau_fit(p):
    return (p["tau"] - 2.0) ** 2 + jnp.sum((p["w"] - 1.0) ** 2)


def test_changing_float_bounds_and_starts_compiles_nothing():
    # Python floats are data: after the first call, ten changed bounds and
    # starts are ten runs of the one compiled solve (the infinite side, None,
    # stays the static pattern)
    def fit(k):
        params = {"tau": 0.5 + 0.01 * k, "w": jnp.zeros(3)}
        lower = {"tau": 0.1 * k, "w": -1.0 - k}
        upper = {"tau": 1.0 + 0.05 * k, "w": None}
        return minimize(tau_fit, params, lower, upper)

    fit(0)
    with count_compilations() as compiled:
        for k in range(1, 11):
            r = fit(k)
            assert float(r.params["tau"]) == pytest.approx(1.0 + 0.05 * k)
            np.testing.assert_allclose(r.params["w"], 1.0, rtol=1e-5)
    assert compiled == []
