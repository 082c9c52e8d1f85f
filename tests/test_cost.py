"""`_cost`: bounds_cost against NumPy and Rockpool, every dtype and transformation."""

import copy
import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb

from helpers import (
    FLOATS,
    PENALTIES,
    count_compilations,
    numpy_cost,
    numpy_exp_cost,
    numpy_exp_grad,
    numpy_grad,
    penalty_id,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from rockpool.training import jax_loss as rockpool_loss

# --- the seed how-to -------------------------------------------------------


def lif_params(dtype=jnp.float32):
    return {
        "tau_mem": jnp.array([0.02], dtype),
        "tau_syn": jnp.array([[0.02]], dtype),
        "bias": jnp.array([0.0], dtype),
        "threshold": jnp.array([1.0], dtype),
    }


def test_howto_flow_zero_inside_one_just_outside():
    params = lif_params()
    lower, upper = jb.make_bounds(params)
    assert lower == dict.fromkeys(params, -math.inf)
    assert upper == dict.fromkeys(params, math.inf)
    lower["tau_syn"] = 0.0
    upper["tau_syn"] = 200e-3
    assert float(jb.bounds_cost(params, lower, upper)) == 0.0

    outside = dict(params, tau_syn=jnp.array([[-1e-6]], jnp.float32))
    cost = float(jb.bounds_cost(outside, lower, upper))
    assert cost == pytest.approx(1.000001, rel=1e-6)


def test_howto_curve_across_unit_box_matches_formula():
    xs = np.linspace(-1, 2, 1001)
    costs = [
        float(jb.bounds_cost({"x": jnp.array(x)}, {"x": 0.0}, {"x": 1.0})) for x in xs
    ]
    expected = [numpy_exp_cost(x, 0.0, 1.0) for x in xs]
    np.testing.assert_allclose(costs, expected, rtol=1e-12)
    assert costs[0] == pytest.approx(math.e)  # x = -1


def test_gradient_matches_numpy_formula():
    p = jnp.array([-2.0, -1e-6, 0.0, 0.1, 0.2, 0.2 + 1e-3, 3.0])
    grad = jax.grad(jb.bounds_cost)({"t": p}, {"t": 0.0}, {"t": 0.2})["t"]
    np.testing.assert_allclose(grad, numpy_exp_grad(p, 0.0, 0.2), rtol=1e-12)


# --- Rockpool parity ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("violation", [1e-6, 0.5, 1.0, 5.0, 10.0, 14.0, 15.0])
def test_value_and_gradient_equal_rockpool_up_to_violation_15(dtype, violation):
    params = {
        "a": jnp.array([0.5, -violation, 0.0], dtype),
        "b": {"c": jnp.array([[1.0 + violation], [0.3]], dtype)},
    }
    lower = {"a": 0.0, "b": {"c": -1.0}}
    upper = {"a": 1.0, "b": {"c": 1.0}}
    ours = jb.bounds_cost(params, lower, upper)
    theirs = rockpool_loss.bounds_cost(params, lower, upper)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    g_ours = jax.grad(jb.bounds_cost)(params, lower, upper)
    g_theirs = jax.grad(rockpool_loss.bounds_cost)(params, lower, upper)
    for x, y in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_theirs)):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_array_bounds_equal_rockpool():
    key = jax.random.PRNGKey(0)
    p = jax.random.normal(key, (4, 5), jnp.float32) * 3
    lo = -jnp.linspace(0.0, 2.0, 5, dtype=jnp.float32)  # broadcasts over rows
    up = jnp.full((4, 1), 1.5, jnp.float32)
    ours = jb.bounds_cost({"p": p}, {"p": lo}, {"p": up})
    theirs = rockpool_loss.bounds_cost({"p": p}, {"p": lo}, {"p": up})
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


# --- overflow safety -------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.float64])
@pytest.mark.parametrize("distance", [20.0, 100.0, 1e4, 1e30])
def test_far_outside_is_finite_positive_and_points_back(dtype, distance):
    for side, p, sign in (("below", -distance, -1), ("above", 1.0 + distance, 1)):
        params = {"x": jnp.array([p, 0.5], dtype)}
        cost = jb.bounds_cost(params, {"x": 0.0}, {"x": 1.0})
        grad = jax.grad(jb.bounds_cost)(params, {"x": 0.0}, {"x": 1.0})["x"]
        assert np.isfinite(float(cost)) and float(cost) > 1.0, side
        assert grad.dtype == dtype
        g = float(grad[0])
        assert np.isfinite(g) and np.sign(g) == sign, side
        # continuation: value exp(15) * (1 + v - 15), slope exp(15)
        stored = float(jnp.array(p, dtype).astype(jnp.float64))
        v = -stored if sign == -1 else stored - 1.0
        np.testing.assert_allclose(float(cost), math.exp(15) * (1 + v - 15), rtol=1e-5)
        np.testing.assert_allclose(abs(g), math.exp(15), rtol=1e-2)


def test_rockpool_overflows_where_we_stay_finite():
    params = {"x": jnp.array([-200.0], jnp.float32)}
    assert np.isinf(float(rockpool_loss.bounds_cost(params, {"x": 0.0}, {"x": 1.0})))
    assert np.isfinite(float(jb.bounds_cost(params, {"x": 0.0}, {"x": 1.0})))


@pytest.mark.parametrize("dtype, switch", [(jnp.float64, 15.0), (jnp.float16, 10.0)])
def test_continuation_is_exp_up_to_the_switch_then_its_tangent(dtype, switch):
    # Violations on both sides of the documented switch, through bounds_cost:
    # exp(v) below it, exp(s) * (1 + v - s) above it (hand-written here).
    v = np.array([switch - 0.5, switch - 1e-2, switch + 1e-2, switch + 5.0])
    p = jnp.asarray(-v, dtype)
    x = np.asarray(p, np.float64)  # the violations as stored in dtype
    cost, grad = jax.value_and_grad(jb.bounds_cost)({"x": p}, {"x": 0.0}, {"x": 1.0})
    want = np.where(
        -x <= switch, np.exp(-x), math.exp(switch) * (1 + (-x - switch))
    ).sum()
    slope = np.where(-x <= switch, -np.exp(-x), -math.exp(switch))
    tol = 1e-12 if dtype == jnp.float64 else 1e-6
    np.testing.assert_allclose(float(cost), want, rtol=tol)
    np.testing.assert_allclose(np.asarray(grad["x"], np.float64), slope, rtol=1e-3)


def test_float16_anywhere_in_range_has_float16_finite_gradient():
    big = float(jnp.finfo(jnp.float16).max)
    params = {"x": jnp.array([-big, big, 0.5, -1e-3, 1.0 + 1e-3], jnp.float16)}
    lower, upper = {"x": -1.0}, {"x": 1.0}
    cost = jb.bounds_cost(params, lower, upper)
    grad = jax.grad(jb.bounds_cost)(params, lower, upper)["x"]
    assert cost.dtype == jnp.float32 and np.isfinite(float(cost))
    assert grad.dtype == jnp.float16
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))
    np.testing.assert_allclose(
        np.asarray(grad, np.float32)[:2], [-math.exp(10), math.exp(10)], rtol=1e-3
    )


def test_no_nan_under_debug_nans_with_infinite_array_bounds():
    params = {"x": jnp.array([-1e30, 0.0, 1e30], jnp.float32)}
    lower = {"x": jnp.array([-jnp.inf, 0.0, 0.0], jnp.float32)}
    upper = {"x": jnp.array([jnp.inf, jnp.inf, 1.0], jnp.float32)}
    with jax.debug_nans(True):
        cost, grad = jax.jit(jax.value_and_grad(jb.bounds_cost))(params, lower, upper)
        jax.block_until_ready(grad)
    assert np.isfinite(float(cost))
    assert np.all(np.isfinite(grad["x"]))
    assert float(grad["x"][0]) == 0.0 and float(grad["x"][2]) > 0


# --- dtypes ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_result_dtype_is_at_least_float32(dtype):
    params = {"x": jnp.array([-1.0, 2.0], dtype)}
    cost = jb.bounds_cost(params, {"x": 0.0}, {"x": 1.0})
    expected = jnp.float64 if dtype == jnp.float64 else jnp.float32
    assert cost.dtype == expected
    np.testing.assert_allclose(float(cost), 2 * math.e, rtol=1e-3)


def test_unbounded_tree_costs_float_zero():
    params = {"x": jnp.ones(3, jnp.float64), "f": jax.nn.relu}
    lower, upper = jb.make_bounds(params)
    cost = jb.bounds_cost(params, lower, upper)
    assert float(cost) == 0.0 and cost.dtype == jnp.float64


# --- transformations -------------------------------------------------------


def test_inside_user_jit_and_grad():
    params = {"x": jnp.array([-1.0, 0.5]), "w": jnp.ones(2)}
    lower, upper = {"x": 0.0, "w": -math.inf}, {"x": 1.0, "w": math.inf}

    @jax.jit
    def loss(p):
        return jnp.sum(p["w"] ** 2) + jb.bounds_cost(p, lower, upper)

    value, grads = jax.value_and_grad(loss)(params)
    np.testing.assert_allclose(value, 2 + math.e)
    np.testing.assert_allclose(grads["x"], [-math.e, 0.0])
    np.testing.assert_allclose(grads["w"], [2.0, 2.0])


def test_bounds_passed_as_jit_arguments():
    params = {"x": jnp.array([-1.0, 0.5])}
    f = jax.jit(jb.bounds_cost)
    np.testing.assert_allclose(f(params, {"x": 0.0}, {"x": 1.0}), math.e)
    np.testing.assert_allclose(f(params, {"x": -2.0}, {"x": 1.0}), 0.0)


def test_vmap_over_batch_of_parameter_trees():
    batch = {"x": jnp.array([[-1.0, 0.5], [0.5, 0.5], [2.0, -2.0]])}
    costs = jax.vmap(jb.bounds_cost, in_axes=(0, None, None))(
        batch, {"x": 0.0}, {"x": 1.0}
    )
    expected = [numpy_exp_cost(row, 0.0, 1.0) for row in np.asarray(batch["x"])]
    np.testing.assert_allclose(costs, expected, rtol=1e-12)


def test_vmap_with_array_bounds_batched_alongside():
    batch = {"x": jnp.array([[-1.0], [0.5]])}
    lows = {"x": jnp.array([[0.0], [1.0]])}
    costs = jax.vmap(jb.bounds_cost, in_axes=(0, 0, None))(batch, lows, {"x": 5.0})
    np.testing.assert_allclose(costs, [math.e, math.exp(0.5)])


def test_eager_calls_reuse_one_compilation():
    params = {"x": jnp.array([-1.0, 0.5])}
    lower, upper = {"x": 0.0}, {"x": 1.0}
    jb.bounds_cost(params, lower, upper)
    shifted = {"x": params["x"] + 1}  # (an eager add compiles too: outside)
    with count_compilations() as compiled:
        for _ in range(3):
            jb.bounds_cost(shifted, dict(lower), dict(upper))
    assert compiled == []


def test_unbounded_leaves_do_no_work_in_jaxpr():
    params = {"bounded": jnp.ones(3), "free": jnp.ones(1000)}
    lower = {"bounded": 0.0, "free": -math.inf}
    upper = {"bounded": 1.0, "free": math.inf}
    # Bounds closed over (Python floats), as a user's loss holds them.
    jaxpr = jax.make_jaxpr(lambda p: jb.bounds_cost(p, lower, upper))(params)
    free_var = jaxpr.jaxpr.invars[1]  # leaves in key order: bounded, free
    assert jaxpr.jaxpr.eqns  # the bounded leaf is computed
    assert all(free_var not in eqn.invars for eqn in jaxpr.jaxpr.eqns)
    assert str(jaxpr).count("1000]") == 1  # the free leaf: an input, used nowhere


# --- pytrees ----------------------------------------------------------------


class Block(NamedTuple):
    tau: jax.Array
    w: jax.Array


def test_tuples_lists_namedtuples():
    params = ([jnp.array([-1.0]), Block(jnp.array([2.0]), jnp.array([5.0]))],)
    lower, upper = jb.make_bounds(params)
    lower = ([0.0, Block(0.0, -math.inf)],)
    upper = ([math.inf, Block(1.0, math.inf)],)
    np.testing.assert_allclose(jb.bounds_cost(params, lower, upper), 2 * math.e)


def test_equinox_model_with_activation_and_filter_holes():
    model = eqx.nn.MLP(2, 2, 3, 1, key=jax.random.PRNGKey(0))
    lower, upper = jb.make_bounds(model)
    lower = eqx.tree_at(lambda m: m.layers[0].bias, lower, 10.0)
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    bias = np.asarray(model.layers[0].bias, np.float64)
    expected = numpy_exp_cost(bias, 10.0, math.inf)
    np.testing.assert_allclose(jb.bounds_cost(model, lower, upper), expected, 1e-6)
    np.testing.assert_allclose(jb.bounds_cost(params, lower, upper), expected, 1e-6)
    grads = eqx.filter_grad(lambda m: jb.bounds_cost(m, lower, upper))(model)
    np.testing.assert_allclose(
        grads.layers[0].bias, numpy_exp_grad(bias, 10.0, math.inf), rtol=1e-6
    )


def test_python_floats_in_plain_containers_are_parameters():
    # As jax.grad sees them: {"x": -1.0} is a parameter tree.
    np.testing.assert_allclose(
        jb.bounds_cost({"x": -1.0}, {"x": 0.0}, {"x": 1.0}), math.e, rtol=1e-6
    )
    grads = jax.grad(jb.bounds_cost)({"x": -1.0, "y": [2.5]}, *BOUNDS_XY)
    np.testing.assert_allclose(grads["x"], -math.e, rtol=1e-6)
    np.testing.assert_allclose(grads["y"][0], math.exp(0.5), rtol=1e-6)


BOUNDS_XY = ({"x": 0.0, "y": [0.0]}, {"x": 1.0, "y": [2.0]})


def test_python_float_fields_of_equinox_modules_are_hyperparameters():
    # As eqx.filter_grad sees them: a float field is static, not trained.
    class Cell(eqx.Module):
        tau: jax.Array
        dt: float = 1e-3

    cell = Cell(jnp.array([-1.0]))
    lower, upper = jb.make_bounds(cell)
    assert lower.dt is None and upper.dt is None and lower.tau == -math.inf
    with pytest.raises(TypeError, match=r"finite bound on 'dt'.*a float"):
        jb.bounds_cost(cell, Cell(0.0, 0.0), Cell(1.0, 1.0))  # type: ignore[arg-type]
    np.testing.assert_allclose(
        jb.bounds_cost(cell, Cell(0.0, None), Cell(1.0, None)),  # type: ignore
        math.e,
        rtol=1e-6,
    )


def test_inputs_not_mutated():
    # NumPy arrays and Python containers are mutable: a function that wrote
    # into them in place (or replaced a dict entry) would show here.
    params = {"x": np.array([-1.0, 0.5]), "y": [np.array([5.0]), 3.0]}
    lower = {"x": np.array([0.0, 0.0]), "y": [0.0, 0.0]}
    upper = {"x": 1.0, "y": [np.array([1.0]), 1.0]}
    trees = (params, lower, upper)
    copies = copy.deepcopy(trees)
    jb.bounds_cost(params, lower, upper)
    clipped = jb.clip_to_bounds(params, lower, upper)
    assert clipped is not params and clipped["y"] is not params["y"]
    for before, after in zip(copies, trees):
        assert before.keys() == after.keys() and len(before["y"]) == len(after["y"])
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
            assert type(a) is type(b)
            np.testing.assert_array_equal(a, b)


# --- errors -----------------------------------------------------------------


def test_extra_parameter_raises_naming_path():
    params = {"layers": [{"tau_syn": jnp.ones(2), "w": jnp.ones(2)}]}
    lower = {"layers": [{"tau_syn": 0.0}]}
    upper = {"layers": [{"tau_syn": 1.0}]}
    with pytest.raises(ValueError, match=r"layers\.0\.w"):
        jb.bounds_cost(params, lower, upper)
    with pytest.raises(ValueError, match=r"layers\.0\.w"):
        jb.bounds_cost(params, jb.make_bounds(params)[0], upper)
    # Rockpool silently ignores a parameter missing from both bound trees
    assert float(rockpool_loss.bounds_cost(params, lower, upper)) == 0.0


def test_renamed_key_raises_naming_first_difference():
    params = {"a": jnp.ones(1), "b": {"tau_mem": jnp.ones(1)}}
    lower = {"a": 0.0, "b": {"tau_men": 0.0}}
    with pytest.raises(ValueError, match=r"b\.tau_mem.*b\.tau_men"):
        jb.bounds_cost(params, lower, jb.make_bounds(params)[1])


def test_lower_above_upper_raises_naming_path():
    params = {"layers": [jnp.ones(1), {"tau_syn": jnp.ones(3)}]}
    lower = {"layers": [0.0, {"tau_syn": jnp.array([0.0, 2.0, 0.0])}]}
    upper = {"layers": [1.0, {"tau_syn": 1.0}]}
    with pytest.raises(ValueError, match=r"lower > upper at 'layers\.1\.tau_syn'"):
        jb.bounds_cost(params, lower, upper)
    with pytest.raises(ValueError, match=r"layers\.0"):
        jb.clip_to_bounds(params, {"layers": [2.0, {"tau_syn": 0.0}]}, upper)


def test_finite_bound_on_non_float_leaf_raises():
    params = {"steps": jnp.array(3), "f": jax.nn.relu, "x": jnp.ones(1)}
    lower, upper = jb.make_bounds(params)
    assert float(jb.bounds_cost(params, lower, upper)) == 0.0
    with pytest.raises(TypeError, match="'steps'"):
        jb.bounds_cost(params, dict(lower, steps=0.0), upper)
    with pytest.raises(TypeError, match="'f'"):
        jb.bounds_cost(params, lower, dict(upper, f=1.0))


def test_array_bound_that_does_not_broadcast_raises():
    params = {"w": jnp.ones((3, 4))}
    with pytest.raises(ValueError, match=r"'w'.*\(3,\)"):
        jb.bounds_cost(params, {"w": jnp.zeros(3)}, {"w": math.inf})


def test_bad_bound_types_raise():
    params = {"w": jnp.ones(2)}
    with pytest.raises(TypeError, match="'w'"):
        jb.bounds_cost(params, {"w": "0"}, {"w": 1.0})
    with pytest.raises(TypeError, match="'w'"):
        jb.bounds_cost(params, {"w": True}, {"w": 1.0})
    with pytest.raises(ValueError, match="NaN"):
        jb.bounds_cost(params, {"w": math.nan}, {"w": 1.0})


def test_one_sided_array_bound_is_checked_for_nan_and_impossible_values():
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="'w' contains NaN"):
        jb.bounds_cost(params, {"w": jnp.array([0.0, jnp.nan, 0.0])}, {"w": math.inf})
    with pytest.raises(ValueError, match=r"lower > upper at 'w', element \(1,\)"):
        jb.bounds_cost(params, {"w": jnp.array([0.0, jnp.inf, 0.0])}, {"w": None})
    with pytest.raises(ValueError, match=r"'w', element \(2,\)"):
        jb.clip_to_bounds(params, {"w": None}, {"w": jnp.array([0.0, 1.0, -jnp.inf])})


def test_unknown_penalty_raises():
    with pytest.raises(ValueError, match="unknown penalty 'cubic'"):
        jb.bounds_cost({"w": jnp.ones(1)}, {"w": 0.0}, {"w": 1.0}, penalty="cubic")


# --- other penalties ----------------------------------------------------------


@pytest.mark.parametrize("penalty", PENALTIES, ids=penalty_id)
def test_every_penalty_kind_matches_numpy_in_value_and_gradient(penalty):
    p = jnp.array([-2.0, -0.5, 0.0, 0.3, 1.0, 1.25, 4.0])
    cost, grads = jax.value_and_grad(jb.bounds_cost)(
        {"x": p}, {"x": 0.0}, {"x": 1.0}, penalty=penalty
    )
    np.testing.assert_allclose(cost, numpy_cost(p, 0.0, 1.0, penalty), rtol=1e-12)
    want = numpy_grad(p, 0.0, 1.0, penalty)
    np.testing.assert_allclose(grads["x"], want, rtol=1e-12)


def test_a_callable_penalty_is_applied_to_the_violation_as_is():
    p = np.array([-2.0, -0.5, 0.0, 0.3, 1.0, 1.25, 4.0])
    cost = jb.bounds_cost({"x": jnp.array(p)}, {"x": 0.0}, {"x": 1.0}, penalty=jnp.abs)
    np.testing.assert_allclose(cost, 2.0 + 0.5 + 0.25 + 3.0, rtol=1e-12)  # by hand


def test_callable_penalty_never_sees_inside_elements():
    seen = []

    def penalty(v):
        jax.debug.callback(lambda v: seen.append(np.asarray(v)), v)
        return jnp.log1p(v) / jnp.sqrt(v + 1e-30)  # infinite gradient at v = 0

    params = {"x": jnp.array([0.5, 2.0, -3.0])}
    with jax.debug_nans(True):
        g = jax.grad(jb.bounds_cost)(params, {"x": 0.0}, {"x": 1.0}, penalty=penalty)
    assert np.all(np.isfinite(g["x"])) and float(g["x"][0]) == 0.0
    assert seen, "the penalty was never evaluated"
    # Inside elements reach the penalty as 0 (never as a negative distance).
    assert all(np.all(s >= 0) for s in seen)
    assert any(np.any(s == 3.0) for s in seen) and any(np.any(s == 1.0) for s in seen)
