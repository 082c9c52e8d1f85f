"""add_bounds_penalty and project_to_bounds: optax transformations."""

import math
from collections.abc import Callable

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

import jaxbounds as jb

from helpers import FLOATS, PENALTIES, TOL, numpy_exp_grad, numpy_grad, penalty_id

NO_PARAMS = r"needs the params: call update\(updates, state, params\)"


def two_leaves(dtype=jnp.float32):
    params = {"tau": jnp.array([-1.0, 0.5, 3.0], dtype), "w": jnp.ones(3, dtype)}
    lower, upper = jb.make_bounds(params)
    lower["tau"], upper["tau"] = 0.0, 1.0
    return params, lower, upper


# --- add_bounds_penalty: numbers -------------------------------------------


def test_penalty_adds_scaled_exp_gradient_to_updates():
    params, lower, upper = two_leaves()
    grads = {"tau": jnp.array([0.1, 0.2, 0.3], jnp.float32), "w": jnp.ones(3)}
    tx = jb.add_bounds_penalty(lower, upper, scale=0.25)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = np.float64([0.1, 0.2, 0.3]) + 0.25 * numpy_exp_grad([-1, 0.5, 3], 0, 1)
    np.testing.assert_allclose(updates["tau"], expected, rtol=1e-6)
    assert updates["tau"].dtype == jnp.float32
    assert updates["w"] is grads["w"]


@pytest.mark.parametrize("penalty", PENALTIES, ids=penalty_id)
def test_penalty_adds_scale_times_the_numpy_gradient_for_every_penalty_kind(penalty):
    params = {
        "a": jnp.array([-2.0, 0.3, 4.0], jnp.float64),
        "b": jnp.array([[5.0, -5.0]], jnp.float64),
    }
    lower = {"a": jnp.array([0.0, 0.0, 1.0], jnp.float64), "b": -1.0}
    upper = {"a": 1.0, "b": jnp.array([2.0, 3.0], jnp.float64)}
    grads = {"a": jnp.array([0.5, -0.5, 1.0]), "b": jnp.array([[1.0, 2.0]])}
    tx = jb.add_bounds_penalty(lower, upper, 3.0, penalty=penalty)
    updates, _ = tx.update(grads, tx.init(params), params)
    for k in params:
        slope = numpy_grad(params[k], lower[k], upper[k], penalty)
        want = np.asarray(grads[k]) + 3.0 * slope
        np.testing.assert_allclose(updates[k], want, rtol=1e-12, err_msg=k)
    # hand-computed, quadratic: d/dp (0 - p)**2 at p = -2 is -4; (p - 2)**2 at 5: 6
    if penalty == "quadratic":
        assert float(updates["a"][0]) == 0.5 + 3.0 * -4.0
        assert float(updates["b"][0, 0]) == 1.0 + 3.0 * 6.0


def test_penalty_numbers_against_numpy_for_one_sided_bounds():
    p = jnp.array([-3.0, -0.5, 0.5, 2.5], jnp.float64)
    u = jnp.array([1.0, 2.0, 3.0, 4.0], jnp.float64)
    below = jb.add_bounds_penalty(0.0, None, 2.0)
    above = jb.add_bounds_penalty(-math.inf, 1.0, 2.0)
    got_below, _ = below.update(u, below.init(p), p)
    got_above, _ = above.update(u, above.init(p), p)
    np.testing.assert_allclose(
        got_below, np.asarray(u) + 2 * numpy_exp_grad(p, lower=0.0)
    )
    np.testing.assert_allclose(
        got_above, np.asarray(u) + 2 * numpy_exp_grad(p, upper=1.0)
    )
    # hand-computed: d/dp exp(0 - p) at p = -3 is -e^3
    assert float(got_below[0]) == pytest.approx(1.0 - 2 * math.exp(3.0))


@pytest.mark.parametrize("pdtype", FLOATS)
@pytest.mark.parametrize("udtype", FLOATS)
def test_penalty_keeps_update_dtype_and_rounds_once(pdtype, udtype):
    p = jnp.array([-2.0, 0.25, 3.5], pdtype)
    u = jnp.array([0.125, -0.5, 1.0], udtype)
    tx = jb.add_bounds_penalty(0.0, 1.0, 0.5)
    got, _ = tx.update(u, tx.init(p), p)
    assert got.dtype == udtype and got.shape == u.shape
    exact = np.asarray(u, np.float64) + 0.5 * numpy_exp_grad(
        np.asarray(p, np.float64), 0, 1
    )
    # the gradient is computed in at least float32, and in float64 for float64 params
    rtol = max(TOL[udtype], TOL[jnp.float64 if pdtype == jnp.float64 else jnp.float32])
    np.testing.assert_allclose(np.asarray(got, np.float64), exact, rtol=rtol)


def test_penalty_far_outside_is_finite_in_every_dtype_under_debug_nans():
    for dtype, far in [
        (jnp.float16, 6e4),
        (jnp.bfloat16, 1e30),
        (jnp.float32, 1e30),
        (jnp.float64, 1e300),
    ]:
        p = jnp.array([far, -far], dtype)
        tx = jb.add_bounds_penalty(0.0, 1.0)
        with jax.debug_nans(True):
            got, _ = jax.jit(tx.update)(jnp.zeros(2, dtype), tx.init(p), p)
        got = np.asarray(got, np.float64)
        assert np.all(np.isfinite(got)), (dtype, got)
        # pushes back towards the box: positive gradient above, negative below
        assert got[0] > 0 > got[1]


def test_penalty_float16_gradient_fits_float16():
    # float16 params switch to linear at v = 10, slope exp(10) = 22026.47
    p = jnp.array([30.0], jnp.float16)
    tx = jb.add_bounds_penalty(-math.inf, 0.0)
    got, _ = tx.update(jnp.zeros(1, jnp.float16), tx.init(p), p)
    assert float(got[0]) == pytest.approx(math.exp(10.0), rel=1e-3)


def test_penalty_inside_box_leaves_update_values_exact():
    p = jnp.array([0.1, 0.9], jnp.bfloat16)
    u = jnp.array([0.3, -0.7], jnp.bfloat16)
    tx = jb.add_bounds_penalty(0.0, 1.0, 10.0)
    got, _ = tx.update(u, tx.init(p), p)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(u))


# --- add_bounds_penalty: tree handling -------------------------------------


def test_penalty_passes_unbounded_and_none_updates_through_as_same_objects():
    params = {"a": jnp.array([-1.0]), "b": jnp.array([5.0]), "c": jnp.ones(2)}
    lower = {"a": 0.0, "b": 0.0, "c": -math.inf}
    upper = {"a": 1.0, "b": 1.0, "c": math.inf}
    updates = {"a": None, "b": jnp.zeros(1), "c": jnp.ones(2)}
    tx = jb.add_bounds_penalty(lower, upper)
    got, _ = tx.update(updates, tx.init(params), params)
    assert got["a"] is None
    assert got["c"] is updates["c"]
    np.testing.assert_allclose(got["b"], numpy_exp_grad([5.0], 0, 1))
    assert updates["b"][0] == 0.0  # input not mutated


def test_penalty_with_only_unbounded_leaves_returns_updates_object():
    params = {"w": jnp.ones(2)}
    lower, upper = jb.make_bounds(params)
    updates = {"w": jnp.ones(2)}
    tx = jb.add_bounds_penalty(lower, upper)
    got, _ = tx.update(updates, tx.init(params), params)
    assert got is updates


def test_penalty_zero_scale_is_a_no_op():
    params, lower, upper = two_leaves()
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = jb.add_bounds_penalty(lower, upper, 0.0)
    got, _ = tx.update(grads, tx.init(params), params)
    assert got is grads


def test_penalty_params_with_partition_holes_and_full_model_bounds():
    model = {"tau": jnp.array([2.0]), "fn": jax.nn.relu, "n": 3, "w": jnp.ones(2)}
    lower, upper = jb.make_bounds(model)
    upper["tau"] = 1.0
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    assert params["fn"] is None and params["n"] is None
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = jb.add_bounds_penalty(lower, upper)
    got, _ = tx.update(grads, tx.init(params), params)
    assert got["fn"] is None and got["n"] is None
    np.testing.assert_allclose(got["tau"], [math.e], rtol=1e-6)


def test_penalty_without_params_says_to_pass_them():
    params, lower, upper = two_leaves()
    tx = jb.add_bounds_penalty(lower, upper)
    with pytest.raises(ValueError, match=NO_PARAMS):
        tx.update(params, tx.init(params), None)


def test_penalty_bound_structure_mismatch_names_path():
    params = {"layers": [{"tau": jnp.ones(1)}, {"tau": jnp.ones(1)}]}
    lower = {"layers": [{"tau": 0.0}, {"tau_syn": 0.0}]}
    upper = {"layers": [{"tau": 1.0}, {"tau": 1.0}]}
    tx = jb.add_bounds_penalty(lower, upper)
    with pytest.raises(ValueError, match=r"layers\.1\.tau"):
        tx.update(params, tx.init(params), params)


def test_penalty_updates_structure_mismatch_names_path():
    params, lower, upper = two_leaves()
    tx = jb.add_bounds_penalty(lower, upper)
    with pytest.raises(ValueError, match=r"updates.*'w'"):
        tx.update({"tau": jnp.zeros(3), "x": jnp.zeros(3)}, None, params)


def test_penalty_bad_arguments_raise():
    with pytest.raises(ValueError, match="scale"):
        jb.add_bounds_penalty(0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="scale"):
        jb.add_bounds_penalty(0.0, 1.0, math.nan)
    with pytest.raises(ValueError, match="unknown penalty"):
        jb.add_bounds_penalty(0.0, 1.0, penalty="cubic")
    tx = jb.add_bounds_penalty({"i": 0.0}, {"i": 1.0})
    with pytest.raises(TypeError, match="'i'"):
        tx.update({"i": 1}, None, {"i": 1})


# --- add_bounds_penalty: optax integration ---------------------------------


def test_penalty_scale_schedule_counts_steps():
    p = jnp.array([-1.0], jnp.float32)
    schedule = optax.linear_schedule(0.0, 1.0, transition_steps=4)
    tx = jb.add_bounds_penalty(0.0, 1.0, schedule)
    state = tx.init(p)
    assert int(state.count) == 0
    step = jax.jit(tx.update)
    for k in range(6):
        got, state = step(jnp.zeros(1, jnp.float32), state, p)
        assert int(state.count) == k + 1
        # hand-computed: min(k / 4, 1) * d/dp exp(0 - p) at p = -1
        assert float(got[0]) == pytest.approx(-min(k / 4, 1.0) * math.e, rel=1e-6)


def test_penalty_scale_injected_as_hyperparameter():
    params, lower, upper = two_leaves()
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = optax.inject_hyperparams(jb.add_bounds_penalty)(lower, upper, scale=0.5)
    state = tx.init(params)
    got, state = jax.jit(tx.update)(grads, state, params)
    np.testing.assert_allclose(
        got["tau"], 0.5 * numpy_exp_grad([-1, 0.5, 3], 0, 1), 1e-6
    )
    state.hyperparams["scale"] = jnp.asarray(2.0, jnp.float32)
    got, state = jax.jit(tx.update)(grads, state, params)
    np.testing.assert_allclose(
        got["tau"], 2.0 * numpy_exp_grad([-1, 0.5, 3], 0, 1), 1e-6
    )


def test_penalty_schedule_through_inject_hyperparams():
    p = {"t": jnp.array([2.0], jnp.float32)}
    schedule = optax.exponential_decay(1.0, transition_steps=1, decay_rate=0.5)
    tx = optax.inject_hyperparams(jb.add_bounds_penalty)(
        {"t": 0.0}, {"t": 1.0}, schedule
    )
    state = tx.init(p)
    for k in range(3):
        got, state = tx.update({"t": jnp.zeros(1, jnp.float32)}, state, p)
        assert float(got["t"][0]) == pytest.approx(0.5**k * math.e, rel=1e-6)


def test_penalty_inside_optax_masked_only_touches_masked_in_leaves():
    params = {"a": jnp.array([2.0]), "b": jnp.array([2.0]), "c": jnp.array([2.0])}
    bounds = dict.fromkeys(params, 0.0), dict.fromkeys(params, 1.0)
    grads = jax.tree.map(jnp.zeros_like, params)
    mask = {"a": True, "b": False, "c": True}
    tx = optax.masked(jb.add_bounds_penalty(*bounds), mask)
    got, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_allclose(got["a"], [math.e])
    np.testing.assert_allclose(got["c"], [math.e])
    np.testing.assert_array_equal(got["b"], [0.0])
    eager, _ = tx.update(grads, tx.init(params), params)
    assert eager["b"] is grads["b"]


def test_penalty_inside_optax_masked_with_a_subtree_prefix_mask():
    params = {"enc": {"tau": jnp.array([2.0])}, "dec": {"tau": jnp.array([2.0])}}
    lower = {"enc": {"tau": 0.0}, "dec": {"tau": 0.0}}
    upper = {"enc": {"tau": 1.0}, "dec": {"tau": 1.0}}
    tx = optax.masked(jb.add_bounds_penalty(lower, upper), {"enc": True, "dec": False})
    grads = jax.tree.map(jnp.zeros_like, params)
    got, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(got["enc"]["tau"], [math.e])
    np.testing.assert_array_equal(got["dec"]["tau"], [0.0])


def test_penalty_inside_multisteps_accumulates_then_applies():
    p = {"t": jnp.array([2.0], jnp.float32)}
    inner = optax.chain(jb.add_bounds_penalty({"t": 0.0}, {"t": 1.0}), optax.sgd(0.1))
    tx = optax.MultiSteps(inner, every_k_schedule=2)
    state = tx.init(p)
    step = jax.jit(tx.update)
    u1, state = step({"t": jnp.array([1.0], jnp.float32)}, state, p)
    assert float(u1["t"][0]) == 0.0
    u2, state = step({"t": jnp.array([3.0], jnp.float32)}, state, p)
    # mean gradient 2.0 plus d/dp exp(p - 1) at p = 2, times -lr
    assert float(u2["t"][0]) == pytest.approx(-0.1 * (2.0 + math.e), rel=1e-6)


def test_penalty_under_vmap_matches_per_row():
    p = jnp.array([[-1.0, 0.5], [2.0, 3.0]], jnp.float32)
    tx = jb.add_bounds_penalty(0.0, 1.0, 0.5)
    batched = jax.vmap(lambda p: tx.update(jnp.zeros_like(p), tx.init(p), p)[0])(p)
    np.testing.assert_allclose(batched, 0.5 * numpy_exp_grad(p, 0.0, 1.0), rtol=1e-6)


def test_penalty_drives_far_outside_param_in_and_holds_it_near_the_bound():
    """A loss pulling outward with slope 1 against the penalty at scale 2.

    Just outside the bound the penalty slope is ``2 * exp(v) >= 2 > 1``, just
    inside it is 0: the parameter is pushed in and then hovers at the bound.
    It starts 5 outside, where the penalty slope is ``2 * e**5 ~ 300``.
    """
    lower, upper = {"x": -math.inf}, {"x": 1.0}
    tx = optax.chain(jb.add_bounds_penalty(lower, upper, 2.0), optax.adam(0.05))

    def loss(params):
        return -jnp.sum(params["x"])

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            updates, state = tx.update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), params["x"][0]

        return jax.lax.scan(step, (params, tx.init(params)), length=2000)[1]

    start = {"x": jnp.array([6.0], jnp.float32)}
    xs = np.asarray(run(start))
    inside = np.flatnonzero(xs <= 1.0)
    assert inside.size and inside[0] < 1200, inside[:1]
    after = xs[inside[0] :]
    assert np.all(np.abs(after - 1.0) < 0.05), (after.min(), after.max())
    assert np.all(np.abs(xs[-500:] - 1.0) < 0.02)

    # the same trajectory as writing the penalty into the loss by hand
    reference_tx = optax.adam(0.05)

    def penalised(params):
        return loss(params) + 2.0 * jb.bounds_cost(params, lower, upper)

    params, state = start, reference_tx.init(start)
    for k in range(40):
        updates, state = reference_tx.update(jax.grad(penalised)(params), state)
        params = optax.apply_updates(params, updates)
        assert float(params["x"][0]) == pytest.approx(xs[k], rel=1e-5)


# --- add_bounds_penalty / project_to_bounds: tracing ------------------------


@pytest.mark.parametrize(
    "make", [lambda lo, up: jb.add_bounds_penalty(lo, up, 0.1), jb.project_to_bounds]
)
def test_jaxpr_does_no_work_for_unbounded_leaf(make: Callable):
    params, lower, upper = two_leaves()
    tx = make(lower, upper)
    state = tx.init(params)
    closed = jax.make_jaxpr(lambda u, p: tx.update(u, state, p)[0])(params, params)
    jaxpr = closed.jaxpr
    # inputs: (updates tau, updates w, params tau, params w); outputs (tau, w)
    u_w, p_w = jaxpr.invars[1], jaxpr.invars[3]
    assert jaxpr.outvars[1] is u_w
    used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
    assert id(u_w) not in used and id(p_w) not in used
    # and the bounded leaf does get work
    assert id(jaxpr.invars[0]) in used and id(jaxpr.invars[2]) in used


@pytest.mark.parametrize(
    "make", [lambda lo, up: jb.add_bounds_penalty(lo, up, 0.1), jb.project_to_bounds]
)
def test_update_is_jit_compatible_and_agrees_with_eager(make: Callable):
    params, lower, upper = two_leaves()
    grads = {"tau": jnp.array([0.5, -2.0, 0.1], jnp.float32), "w": jnp.ones(3)}
    tx = make(lower, upper)
    eager, _ = tx.update(grads, tx.init(params), params)
    jitted, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    for k in params:
        np.testing.assert_array_equal(eager[k], jitted[k])


# --- project_to_bounds ------------------------------------------------------


def test_project_step_lands_on_numpy_clip_of_the_step():
    # multiples of 1/64 in float32: every sum and difference is exact
    rng = np.random.default_rng(1)
    p = rng.integers(-64, 64, 64) / 64
    u = rng.integers(-256, 256, 64) / 64
    lo = rng.integers(-64, 0, 64) / 64
    up = lo + rng.integers(0, 128, 64) / 64
    p = np.clip(p, lo, up)
    tx = jb.project_to_bounds(
        jnp.asarray(lo, jnp.float32), jnp.asarray(up, jnp.float32)
    )
    p32, u32 = jnp.asarray(p, jnp.float32), jnp.asarray(u, jnp.float32)
    got, _ = tx.update(u32, tx.init(p32), p32)
    new = optax.apply_updates(p32, got)
    np.testing.assert_array_equal(np.asarray(new, np.float64), np.clip(p + u, lo, up))


def test_project_float64_step_is_within_an_ulp_of_the_step_of_numpy_clip():
    rng = np.random.default_rng(1)
    p = rng.uniform(-1, 1, 256)
    u = rng.normal(0, 2, 256)
    lo = rng.uniform(-1, 0, 256)
    up = lo + rng.uniform(0, 2, 256)
    p = np.clip(p, lo, up)
    new, inside = check_projection(jnp.asarray(p), jnp.asarray(u), lo, up)
    assert np.all(inside)
    expected = np.clip(p + u, lo, up)
    # exact unless clip(p + u) - p has no float64 that lands on it
    step_ulp = np.spacing(np.abs(expected - p))
    assert np.all(np.abs(np.asarray(new) - expected) <= step_ulp)
    assert np.mean(np.asarray(new) == expected) > 0.9


def test_project_brings_outside_params_to_nearest_bound():
    params, lower, upper = two_leaves()
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = jb.project_to_bounds(lower, upper)
    updates, _ = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new["tau"], np.float32([0.0, 0.5, 1.0]))
    assert updates["w"] is zeros["w"]


def test_project_passes_none_updates_and_partition_holes_through():
    model = {"tau": jnp.array([2.0]), "fn": jax.nn.relu, "w": jnp.ones(2)}
    lower, upper = jb.make_bounds(model)
    lower["tau"], upper["tau"] = 0.0, 1.0
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    updates = {"tau": jnp.array([5.0]), "fn": None, "w": None}
    tx = jb.project_to_bounds(lower, upper)
    got, _ = tx.update(updates, tx.init(params), params)
    assert got["fn"] is None and got["w"] is None
    assert float(params["tau"][0] + got["tau"][0]) == 1.0


def test_project_without_params_says_to_pass_them():
    tx = jb.project_to_bounds(0.0, 1.0)
    with pytest.raises(ValueError, match=NO_PARAMS):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)), None)


@pytest.mark.parametrize("pdtype", FLOATS)
@pytest.mark.parametrize("udtype", [jnp.bfloat16, jnp.float32])
def test_project_keeps_update_dtype(pdtype, udtype):
    p = jnp.array([0.5, 0.25], pdtype)
    u = jnp.array([2.0, -2.0], udtype)
    tx = jb.project_to_bounds(0.0, 1.0)
    got, _ = tx.update(u, tx.init(p), p)
    assert got.dtype == udtype
    np.testing.assert_array_equal(
        np.asarray(optax.apply_updates(p, got), float), [1, 0]
    )


def compute(dtype):
    return np.float64 if dtype == jnp.float64 else np.float32


def inward_bounds(lo, up, dtype):
    """``lo``/``up`` (as the compute dtype sees them) rounded inwards into dtype."""
    c = compute(dtype)
    lo, up = np.asarray(lo, c), np.asarray(up, c)
    lo_d, up_d = jnp.asarray(lo, dtype), jnp.asarray(up, dtype)
    lo_d = jnp.where(np.asarray(lo_d, c) < lo, jnp.nextafter(lo_d, jnp.inf), lo_d)
    up_d = jnp.where(np.asarray(up_d, c) > up, jnp.nextafter(up_d, -jnp.inf), up_d)
    return lo_d, up_d


def brute_force(p, u, lo, up, dtype, span=4):
    """What the best update of u's dtype can reach, scanning 2*span+1 candidates.

    Returns (target, reachable_target, reachable_inside) per element.
    """
    lo_d, up_d = inward_bounds(lo, up, p.dtype)
    target = jnp.clip(optax.apply_updates(p, u), lo_d, up_d)
    c = compute(p.dtype)
    exact = np.asarray(target, np.float64) - np.asarray(p, np.float64)
    centre = jnp.asarray(exact, dtype)
    hit = np.zeros(p.shape, bool)
    inside = np.zeros(p.shape, bool)
    for direction in (-jnp.inf, jnp.inf):
        v = centre
        for _ in range(span + 1):
            r = optax.apply_updates(p, v)
            hit |= np.asarray(r == target)
            rc = np.asarray(r, c)
            inside |= (rc >= np.asarray(lo, c)) & (rc <= np.asarray(up, c))
            v = jnp.nextafter(v, jnp.asarray(direction, dtype))
    return target, hit, inside


def check_projection(p, u, lo, up, jit=True):
    """The three guarantees of project_to_bounds' docstring, elementwise."""
    tx = jb.project_to_bounds(lo, up)
    got, _ = (jax.jit(tx.update) if jit else tx.update)(u, tx.init(p), p)
    assert got.dtype == u.dtype
    new = optax.apply_updates(p, got)
    c = compute(p.dtype)
    new_c = np.asarray(new, c)
    is_inside = (new_c >= np.asarray(lo, c)) & (new_c <= np.asarray(up, c))
    p_c = np.asarray(p, c)
    started_inside = (p_c >= np.asarray(lo, c)) & (p_c <= np.asarray(up, c))
    target, reach_target, reach_inside = brute_force(p, u, lo, up, u.dtype)
    assert np.all(is_inside[started_inside])
    np.testing.assert_array_equal(
        np.asarray(new, np.float64)[reach_target],
        np.asarray(target, np.float64)[reach_target],
    )
    assert np.all(is_inside[reach_inside])
    return new, is_inside


@pytest.mark.parametrize("dtype", FLOATS)
def test_project_is_exact_on_adversarial_values(dtype):
    rng = np.random.default_rng(7)
    n = 4000
    scale = 10.0 ** rng.uniform(-3, 3.5, n)
    p = jnp.asarray(rng.choice([-1, 1], n) * scale, dtype)
    u = jnp.asarray(rng.normal(0, 1, n) * 10.0 ** rng.uniform(-3, 3.5, n), dtype)
    # narrow boxes: a few ulps wide (some degenerate), around random points
    centre = jnp.asarray(rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-2, 2, n), dtype)
    below = centre
    for _ in range(3):
        below = jnp.where(rng.random(n) < 0.5, jnp.nextafter(below, -jnp.inf), below)
    lo = np.asarray(below, compute(dtype))
    up = np.asarray(centre, compute(dtype)) + rng.integers(0, 2, n) * np.abs(lo) * 1e-7
    new, _ = check_projection(p, u, lo, up)
    # the naive update clip(p + u) - p lands outside somewhere: the test has teeth
    lo_d, up_d = inward_bounds(lo, up, dtype)
    naive_u = (jnp.clip(optax.apply_updates(p, u), lo_d, up_d) - p).astype(dtype)
    naive = np.asarray(optax.apply_updates(p, naive_u), compute(dtype))
    assert np.any((naive < lo) | (naive > up))


@settings(max_examples=50, deadline=None)
@given(
    p=st.floats(-(2.0**100), 2.0**100, width=32),
    u=st.floats(-(2.0**100), 2.0**100, width=32),
    lo=st.floats(-(2.0**20), 2.0**20, width=32, allow_subnormal=False),
    width=st.sampled_from([0.0, 1e-7, 1e-3, 1.0, 1e3]),
)
def test_project_guarantees_hold_for_arbitrary_float32(p, u, lo, width):
    up = np.float32(lo) + np.float32(abs(lo) * width + width)
    check_projection(
        jnp.array([p], jnp.float32),
        jnp.array([u], jnp.float32),
        np.float32([lo]),
        np.float32([up]),
        jit=False,
    )


def test_project_unreachable_box_gets_closest_then_enters():
    p = jnp.array([1e8], jnp.float32)
    tx = jb.project_to_bounds(0.1, 0.2)
    zeros = jnp.zeros(1, jnp.float32)
    u, _ = tx.update(zeros, tx.init(p), p)
    p1 = optax.apply_updates(p, u)
    # reachable values are multiples of 8 (float32 spacing at 1e8): 0 is closest
    assert float(p1[0]) == 0.0
    u, _ = tx.update(zeros, tx.init(p1), p1)
    p2 = optax.apply_updates(p1, u)
    assert float(p2[0]) == float(np.float32(0.1))


def test_project_mixed_dtypes_bfloat16_updates_float32_params():
    p = jnp.array([0.7, -3.0, 100.0], jnp.float32)
    u = jnp.array([1.0, 0.0, -1e4], jnp.bfloat16)
    check_projection(p, u, np.float32([0.1, 0.1, 0.1]), np.float32([0.9, 0.9, 0.9]))


def test_project_bfloat16_updates_of_float16_params_land_on_the_bound():
    """The free step 39.96875 + 0.5 is clipped to 40 exactly (hand-computed).

    The landing update 0.03125 is a bfloat16, but only the float16
    difference ``40 - 39.96875`` finds it: in bfloat16 both round to 40.
    """
    p = {"w": jnp.array([39.96875, -39.96875, 0.5], jnp.float16)}
    u = {"w": jnp.array([0.5, -0.5, 0.25], jnp.bfloat16)}
    tx = jb.project_to_bounds({"w": -40.0}, {"w": 40.0})
    out, _ = jax.jit(tx.update)(u, tx.init(p), p)
    assert out["w"].dtype == jnp.bfloat16
    new = optax.apply_updates(p, out)["w"]
    assert new.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(new, np.float32), [40.0, -40.0, 0.75])


@pytest.mark.slow
@pytest.mark.parametrize("make_opt", [lambda: optax.sgd(5.0), lambda: optax.adam(2.0)])
def test_project_500_large_random_steps_never_leave_the_box(make_opt):
    """float32 and bfloat16 leaves, array bounds and not representable float bounds."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    lo_a = jax.random.uniform(k1, (64,), jnp.float32, -1.0, 0.0)
    up_a = lo_a + jax.random.uniform(k2, (64,), jnp.float32, 0.0, 0.3)
    params, lower, upper = {}, {}, {}
    for name, dtype in [("f32", jnp.float32), ("bf16", jnp.bfloat16)]:
        params[name] = {
            "a": jnp.zeros(64, dtype),  # partly outside at the start
            "b": jnp.full(32, 5.0, dtype),  # all outside
            "free": jnp.zeros(8, dtype),
        }
        lower[name] = {"a": lo_a, "b": 0.3, "free": -math.inf}
        upper[name] = {"a": up_a, "b": 0.7, "free": math.inf}
    tx = optax.chain(make_opt(), jb.project_to_bounds(lower, upper))

    @jax.jit
    def run(params):
        def step(carry, key):
            params, state = carry
            grads = jax.tree.map(
                lambda x: (50 * jax.random.normal(key, x.shape)).astype(x.dtype), params
            )
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), params

        keys = jax.random.split(k3, 500)
        return jax.lax.scan(step, (params, tx.init(params)), keys)

    (final, _), history = run(params)
    # the stored params: every step, every element inside (bounds_cost sees 0)
    cost = jax.vmap(lambda p: jb.bounds_cost(p, lower, upper))(history)
    assert np.all(np.asarray(cost) == 0.0)
    for name, dtype in [("f32", jnp.float32), ("bf16", jnp.bfloat16)]:
        assert final[name]["a"].dtype == dtype and final[name]["b"].dtype == dtype
        a = np.asarray(history[name]["a"], np.float32)
        b = np.asarray(history[name]["b"], np.float32)
        assert np.all(a >= np.asarray(lo_a)) and np.all(a <= np.asarray(up_a))
        assert np.all(b >= np.float32(0.3)) and np.all(b <= np.float32(0.7))
        # the steps are large: bounds are hit, and the interior is visited too
        lo_in, up_in = (
            np.asarray(x, np.float32) for x in inward_bounds(lo_a, up_a, dtype)
        )
        assert np.any(a == lo_in) and np.any(a == up_in)
        assert np.any((a > lo_in) & (a < up_in))
        assert np.any(b == np.asarray(jnp.asarray(0.7, dtype), np.float32))


def test_project_inside_optax_masked():
    params = {"a": jnp.array([0.5]), "b": jnp.array([0.5])}
    bounds = dict.fromkeys(params, 0.0), dict.fromkeys(params, 1.0)
    grads = {"a": jnp.array([3.0]), "b": jnp.array([3.0])}
    tx = optax.masked(jb.project_to_bounds(*bounds), {"a": True, "b": False})
    got, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, got)
    assert float(new["a"][0]) == 1.0 and float(new["b"][0]) == 3.5


# --- an equinox model -------------------------------------------------------


class Neuron(eqx.Module):
    linear: eqx.nn.Linear
    tau: jax.Array
    activation: Callable = jax.nn.tanh

    def __call__(self, x):
        return self.activation(self.linear(x)) * self.tau


@pytest.mark.slow
def test_equinox_model_trained_with_filter_jit_and_partition():
    model = Neuron(eqx.nn.Linear(3, 2, key=jax.random.PRNGKey(0)), jnp.array(1.0))
    lower, upper = jb.make_bounds(model)
    lower = eqx.tree_at(lambda m: m.tau, lower, 0.5)
    upper = eqx.tree_at(lambda m: m.tau, upper, 2.0)
    # targets need tau = 4: the loss pulls tau out through the upper bound
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
    y = 4.0 * jnp.tanh(x[:, :2] * 0.5)

    optimizer = optax.chain(
        jb.add_bounds_penalty(lower, upper, 0.1),
        optax.adam(0.05),
        jb.project_to_bounds(lower, upper),
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    initial = params
    assert params.activation is None
    opt_state = optimizer.init(params)

    def loss(params):
        m = eqx.combine(params, static)
        return jnp.mean((jax.vmap(m)(x) - y) ** 2)

    @eqx.filter_jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    taus = []
    for _ in range(80):
        params, opt_state, value = step(params, opt_state)
        taus.append(float(params.tau))
    assert float(loss(params)) < 0.5 * float(loss(initial))
    assert all(0.5 <= t <= 2.0 for t in taus)
    assert taus[-1] == 2.0  # pinned exactly at the bound it is pulled through
    assert params.tau.dtype == model.tau.dtype
    assert eqx.combine(params, static).activation is jax.nn.tanh


def test_project_under_vmap_matches_per_row():
    p = jnp.array([[0.5, 2.0], [-3.0, 0.25]], jnp.float32)
    u = jnp.array([[1.0, 0.0], [0.5, -0.125]], jnp.float32)
    tx = jb.project_to_bounds(0.0, 1.0)
    got = jax.vmap(lambda p, u: tx.update(u, tx.init(p), p)[0])(p, u)
    new = np.asarray(optax.apply_updates(p, got))
    np.testing.assert_array_equal(new, np.clip(np.asarray(p + u), 0.0, 1.0))


def test_penalty_update_is_differentiable_in_params():
    # d/dp [u + s * exp(p - 1)] = s * exp(p - 1) above the bound (hand-computed)
    tx = jb.add_bounds_penalty(0.0, 1.0, 0.5)

    def first(p):
        return tx.update(jnp.zeros(1), tx.init(p), p)[0][0]

    g = jax.grad(first)(jnp.array([2.0], jnp.float64))
    assert float(g[0]) == pytest.approx(0.5 * math.e, rel=1e-6)


def test_penalty_callable_penalty_with_inject_hyperparams_static_args():
    p = {"t": jnp.array([2.0, -1.0], jnp.float32)}
    zeros = {"t": jnp.zeros(2, jnp.float32)}
    factory = optax.inject_hyperparams(jb.add_bounds_penalty, static_args="penalty")
    tx = factory({"t": 0.0}, {"t": 1.0}, 0.5, penalty=lambda v: v**2)
    got, _ = tx.update(zeros, tx.init(p), p)
    # hand-computed: 0.5 * d/dp (p - 1)**2 = 1.0 at p = 2; 0.5 * d/dp (0 - p)**2 = -1.0
    np.testing.assert_allclose(got["t"], [1.0, -1.0])
    # without static_args optax takes the callable for a schedule: a clear error
    tx = optax.inject_hyperparams(jb.add_bounds_penalty)(
        {"t": 0.0}, {"t": 1.0}, 0.5, penalty=lambda v: v**2
    )
    with pytest.raises(ValueError, match="unknown penalty"):
        tx.update(zeros, tx.init(p), p)


def test_masked_projection_on_partitioned_params_with_holes_at_float_leaves():
    # Train only the time constants: eqx.partition leaves None holes where the
    # other float arrays were, and optax.masked adds MaskedNode on top; the
    # bound trees are built from the full model.
    class Cell(eqx.Module):
        tau: jax.Array
        w: jax.Array
        b: jax.Array

    model = Cell(jnp.array([0.5, 0.9]), jnp.ones(2), jnp.zeros(2))
    lower, upper = jb.make_bounds(model)
    lower = eqx.tree_at(lambda c: (c.tau, c.w), lower, (0.0, -1.0))
    upper = eqx.tree_at(lambda c: (c.tau, c.w), upper, (1.0, 1.0))
    spec = Cell(tau=True, w=True, b=False)
    params, _ = eqx.partition(model, spec)  # b -> None
    tx = optax.masked(
        optax.chain(optax.sgd(1.0), jb.project_to_bounds(lower, upper)),
        Cell(tau=True, w=False, b=None),
    )
    grads = Cell(jnp.array([1.0, -1.0]), jnp.array([5.0, 5.0]), None)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new.tau, np.clip([0.5 - 1.0, 0.9 + 1.0], 0, 1))
    np.testing.assert_array_equal(new.w, [6.0, 6.0])  # masked out: passed through
    assert new.b is None


def test_projection_prefers_the_neighbour_that_hits_the_target_exactly():
    # In bfloat16, p + round(t - p) misses t now and then (the sum is rounded
    # twice), while a neighbour of the rounded difference hits it. A
    # zero-width box at t makes t the target whatever the update.
    rng = np.random.default_rng(7)
    p = jnp.asarray(rng.uniform(-1, 1, 20000), jnp.bfloat16)
    t = jnp.asarray(rng.uniform(-1, 1, 20000), jnp.bfloat16)
    d = (t.astype(jnp.float32) - p.astype(jnp.float32)).astype(jnp.bfloat16)
    misses = optax.apply_updates(p, d) != t
    hits = [
        optax.apply_updates(p, jnp.nextafter(d, jnp.full_like(d, side))) == t
        for side in (jnp.inf, -jnp.inf)
    ]
    exact = np.asarray(~misses | hits[0] | hits[1])
    assert int(np.sum(np.asarray(misses) & exact)) > 0  # the cases this is about
    params = {"x": p}
    # A zero-width box, and a lower bound alone with a step far below it: the
    # target is t both times (the second lets a miss above t stay inside).
    for upper, step in ((t, 0.0), (None, -1e4)):
        tx = jb.project_to_bounds({"x": t}, {"x": upper})
        grads = {"x": jnp.full_like(p, step)}
        updates, _ = tx.update(grads, tx.init(params), params)
        new = np.asarray(optax.apply_updates(params, updates)["x"], np.float32)
        np.testing.assert_array_equal(new[exact], np.asarray(t, np.float32)[exact])


def test_penalty_is_added_to_the_update_and_rounded_once():
    # bfloat16 has 8 significant bits: 1 + 2**-8 is a tie between 1 and
    # 1 + 2**-7. A penalty gradient of 2**-8 * (1 + 2**-12) tips the tie
    # upwards when the sum is rounded once; rounding the gradient into
    # bfloat16 first (to 2**-8) would make it a tie, rounded to even (1.0).
    scale = 2.0**-8 * (1 + 2.0**-12)
    params = {"w": jnp.array([-1.0], jnp.bfloat16)}
    tx = jb.add_bounds_penalty({"w": 0.0}, {"w": None}, scale, penalty="linear")
    grads = {"w": jnp.array([-1.0], jnp.bfloat16)}
    updates, _ = tx.update(grads, tx.init(params), params)
    # d/dp linear penalty below the bound is -1: the update is -1 - scale
    assert updates["w"].dtype == jnp.bfloat16
    assert float(updates["w"][0]) == -(1 + 2.0**-7)
