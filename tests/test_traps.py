"""Traps users hit with optax and Rockpool, and the ways out that jaxbounds documents.

- schedule-free: `project_to_bounds` keeps the training params inside, not the
  evaluation params; the documented wrapper (docs/nnx.md) keeps both inside;
- `optax.lbfgs` + `project_to_bounds` is silently wrong (cached value and
  gradient belong to the unprojected point);
- `optax.inject_hyperparams(jb.add_bounds_penalty)` takes callable bound
  trees (equinox modules) for schedules: `static_args` is the fix;
- Rockpool drop-in: integer data, `None` target leaves, a safe LIF tau lower
  bound, the regulariser's return value.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbounds as jb
import jaxbounds.tree_utils as tu

from helpers import gradient_steps, linesearch_step

ROOT = Path(__file__).resolve().parent.parent

# -- schedule-free -----------------------------------------------------------------

#: A separable weighted quadratic: its minimiser on the box [0, 1] is clip(C).
C = np.array([-1.0, 0.5, 2.0, 0.3, 1.2], np.float32)
WEIGHTS = np.array([1.0, 1.0, 1.0, 3.0, 0.5], np.float32)
OPTIMUM = np.clip(C, 0.0, 1.0)  # [0, 0.5, 1, 0.3, 1]


def quadratic(p: dict) -> jax.Array:
    return jnp.sum(WEIGHTS * (p["tau"] - C) ** 2)


def box() -> tuple[dict, dict, dict]:
    params = {"tau": jnp.full(5, 0.5, jnp.float32)}
    lower, upper = jb.make_bounds(params)
    lower["tau"], upper["tau"] = 0.0, 1.0
    return params, lower, upper


def documented_recipe() -> object:
    """``keep_schedule_free_inside`` exactly as docs/nnx.md defines it."""
    source = (ROOT / "docs" / "nnx.md").read_text(encoding="utf-8")
    start = source.index("def keep_schedule_free_inside")
    block = source[start : source.index("```", start)]
    namespace: dict = {"jax": jax, "jb": jb, "optax": optax}
    exec(compile(block, "docs/nnx.md", "exec"), namespace)
    return namespace["keep_schedule_free_inside"]


def run_schedule_free(tx, params: dict, steps: int = 300) -> tuple[dict, object]:
    return gradient_steps(tx, quadratic, params, steps)


def test_schedule_free_eval_params_leave_the_box_with_project_to_bounds_alone():
    params, lower, upper = box()
    tx = optax.chain(
        optax.contrib.schedule_free_adamw(0.1), jb.project_to_bounds(lower, upper)
    )
    y, state = run_schedule_free(tx, params)
    x = optax.contrib.schedule_free_eval_params(state[0], y)["tau"]
    assert np.all((y["tau"] >= 0) & (y["tau"] <= 1))  # training params inside
    assert x[0] > 1.5 and x[2] < -1.0  # evaluation params far outside
    # and clipping them afterwards is no recipe: the wrong side of the box
    clipped = np.asarray(jb.clip_to_bounds({"tau": x}, lower, upper)["tau"])
    assert clipped[0] == 1.0 and OPTIMUM[0] == 0.0
    assert clipped[2] == 0.0 and OPTIMUM[2] == 1.0


def test_documented_schedule_free_recipe_keeps_everything_inside_at_the_optimum():
    keep_schedule_free_inside = documented_recipe()
    params, lower, upper = box()
    tx = optax.chain(
        keep_schedule_free_inside(optax.contrib.schedule_free_adamw(0.1), lower, upper),
        jb.project_to_bounds(lower, upper),
    )
    y, state = run_schedule_free(tx, params)
    sf = state[0]
    x = optax.contrib.schedule_free_eval_params(sf, y)["tau"]
    for seq in (y["tau"], sf.z["tau"]):
        assert np.all((np.asarray(seq) >= 0) & (np.asarray(seq) <= 1))
    assert np.all((np.asarray(x) >= -1e-6) & (np.asarray(x) <= 1 + 1e-6))
    np.testing.assert_allclose(x, OPTIMUM, atol=1e-3)
    np.testing.assert_allclose(y["tau"], OPTIMUM, atol=1e-3)
    # inside coordinates follow plain schedule-free (nothing changes there)
    free, fstate = run_schedule_free(optax.contrib.schedule_free_adamw(0.1), params)
    fx = optax.contrib.schedule_free_eval_params(fstate, free)["tau"]
    np.testing.assert_allclose(np.asarray(x)[[1, 3]], np.asarray(fx)[[1, 3]], atol=1e-5)


# -- optax.lbfgs ---------------------------------------------------------------------

A = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, 0.3], [0.5, 0.3, 1.0]])
B = np.array([2.0, -3.0, 1.0])


def coupled(p: dict) -> jax.Array:
    x = p["x"]
    return 0.5 * x @ A @ x - B @ x + 0.1 * jnp.sum(x**4)


def bounded_optimum() -> tuple[np.ndarray, float]:
    """The minimiser on [0, 1]^3 by SciPy's L-BFGS-B (or enumeration of faces)."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    f = jax.jit(jax.value_and_grad(lambda x: coupled({"x": x})))

    def fun(x):
        v, g = f(jnp.asarray(x))
        return float(v), np.asarray(g, np.float64)

    res = scipy_optimize.minimize(
        fun,
        np.full(3, 0.5),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0, 1)] * 3,
        options={"ftol": 1e-15, "gtol": 1e-12},
    )
    return res.x, float(res.fun)


@pytest.mark.slow
def test_optax_lbfgs_then_project_to_bounds_is_silently_wrong():
    x_star, f_star = bounded_optimum()
    params = {"x": jnp.full(3, 0.5)}
    lower, upper = jb.make_bounds(params)
    lower["x"], upper["x"] = 0.0, 1.0
    tx = optax.chain(optax.lbfgs(), jb.project_to_bounds(lower, upper))
    step = linesearch_step(tx, coupled)
    state = tx.init(params)
    stale = 0
    for _ in range(100):
        before = float(coupled(params))
        params, state, value = step(params, state)
        stale += not np.isclose(float(value), before, rtol=1e-9)
    # the cached value is the unprojected point's, not the params'
    assert stale > 0
    # inside the box, but not at the bounded optimum
    assert np.all((np.asarray(params["x"]) >= 0) & (np.asarray(params["x"]) <= 1))
    assert float(coupled(params)) > f_star + 0.02
    assert np.max(np.abs(np.asarray(params["x"]) - x_star)) > 0.1
    minimize = getattr(jb, "minimize", None)
    if minimize is not None:  # the bounded solver, where it is available
        result = minimize(coupled, {"x": jnp.full(3, 0.5)}, lower, upper)
        assert float(result.value) == pytest.approx(f_star, abs=1e-6)


# -- inject_hyperparams --------------------------------------------------------------


def mlp_and_bounds():
    mlp = eqx.nn.MLP(2, 1, 3, 1, key=jax.random.key(0))
    params = eqx.filter(mlp, eqx.is_inexact_array)
    lower, upper = jb.make_bounds(mlp)
    lower = jb.set_where(lower, "layers.0.bias", 0.25)
    upper = jb.set_where(upper, "layers.1.weight", -0.1)
    return mlp, params, lower, upper


def test_inject_hyperparams_calls_callable_bound_trees_as_schedules():
    mlp, params, lower, upper = mlp_and_bounds()
    assert callable(lower)  # an equinox module with __call__
    tx = optax.inject_hyperparams(jb.add_bounds_penalty)(lower, upper, scale=0.5)
    with pytest.raises(Exception, match="matmul"):  # optax calls lower(count)
        tx.init(params)


def test_inject_hyperparams_with_static_bounds_matches_the_plain_transformation():
    mlp, params, lower, upper = mlp_and_bounds()
    schedule = optax.linear_schedule(0.0, 1.0, 4)
    tx = optax.inject_hyperparams(
        jb.add_bounds_penalty, static_args=("lower", "upper")
    )(lower, upper, scale=schedule)
    state = tx.init(params)
    grads = jax.tree.map(jnp.zeros_like, params)
    b = np.asarray(params.layers[0].bias, np.float64)
    w = np.asarray(params.layers[1].weight, np.float64)
    for step in range(4):
        updates, state = tx.update(grads, state, params)
        s = step / 4
        assert float(state.hyperparams["scale"]) == pytest.approx(s)
        want_b = -s * np.where(b < 0.25, np.exp(0.25 - b), 0.0)
        want_w = s * np.where(w > -0.1, np.exp(w + 0.1), 0.0)
        np.testing.assert_allclose(updates.layers[0].bias, want_b, rtol=1e-6)
        np.testing.assert_allclose(updates.layers[1].weight, want_w, rtol=1e-6)
        plain, _ = jb.add_bounds_penalty(lower, upper, s).update(grads, (), params)
        for u, v in zip(jax.tree.leaves(updates), jax.tree.leaves(plain)):
            np.testing.assert_allclose(u, v, rtol=1e-6)


class Calibrated(eqx.Module):
    """A bound tree of a model whose __call__ accepts a scalar step count."""

    gain: object

    def __call__(self, x):
        return x * 1.0


def test_inject_hyperparams_error_names_static_args_when_the_call_succeeds():
    params = Calibrated(jnp.array([2.0, -1.0]))
    lower, upper = jb.make_bounds(params)
    lower = jb.set_where(lower, "gain", 0.0)
    tx = optax.inject_hyperparams(jb.add_bounds_penalty)(lower, upper, scale=0.5)
    with pytest.raises(ValueError, match="static_args"):
        state = tx.init(params)
        tx.update(jax.tree.map(jnp.zeros_like, params), state, params)


# -- Rockpool drop-in -----------------------------------------------------------------


def rockpool_summed_exp_boundary_loss(data, lower_bound=None, upper_bound=None):
    """Rockpool's torch_loss.summed_exp_boundary_loss, line for line in NumPy.

    torch promotes an integer tensor minus a float bound to torch's default
    float dtype; NumPy promotes it to float64 (the comparison is in float64).
    """
    data = np.asarray(data)
    upper_loss = lower_loss = 0.0
    if upper_bound:
        u = np.exp(data - upper_bound)
        upper_loss = np.sum(u[u > 1])
    if lower_bound:
        v = np.exp(lower_bound - data)
        lower_loss = np.sum(v[v > 1])
    return lower_loss + upper_loss


@pytest.mark.parametrize(
    "data",
    [np.array([-1, 2, 1, 0]), np.array([[3], [-2]], np.int8), np.array([True, False])],
)
def test_summed_exp_boundary_loss_promotes_integer_data_as_rockpool(data):
    got = jb.summed_exp_boundary_loss(jnp.asarray(data), 0.5, 1.5)
    assert got.dtype == jnp.zeros(()).dtype  # JAX's default float
    want = rockpool_summed_exp_boundary_loss(data, 0.5, 1.5)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    assert float(want) > 0
    reg = jb.ParameterBoundaryRegularizer(lower_bound=0.5, upper_bound=1.5)
    assert float(reg(jnp.asarray(data))) == pytest.approx(float(want), rel=1e-6)


def test_regularizer_returns_a_scalar_and_the_migration_table_says_so():
    reg = jb.ParameterBoundaryRegularizer(lower_bound=0.0)
    out = reg(jnp.array([-1.0, 2.0]))
    assert isinstance(out, jax.Array) and out.shape == ()
    page = (ROOT / "docs" / "rockpool_migration.md").read_text(encoding="utf-8")
    row = next(
        line for line in page.splitlines() if "ParameterBoundaryRegularizer(" in line
    )
    assert "loss, _, _ = reg(x)" in row and "scalar" in row
    # Rockpool's is a TorchModule, whose Rockpool-API call returns a triple
    spec = importlib.util.find_spec("rockpool")
    if spec is not None and spec.submodule_search_locations:
        source = Path(spec.submodule_search_locations[0], "nn", "modules", "torch")
        text = (source / "torch_module.py").read_text(encoding="utf-8")
        assert "return output_data, new_states, record_dict" in text


def rockpool_tree_utils():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Rockpool warns that torch is missing
        return pytest.importorskip("rockpool.utilities.tree_utils")


@pytest.mark.parametrize(
    "target",
    [
        {"a": None, "b": {"b2": None}},
        {"b": {"b1": None, "b2": 0}},
        {"c": None},
        {"a": None, "b": {"b1": None, "b2": None}, "c": None},
    ],
)
def test_none_target_leaves_select_as_in_rockpool(target):
    rtu = rockpool_tree_utils()
    full = {"a": 1.0, "b": {"b1": 2.0, "b2": 3.0}, "c": 4.0}
    assert tu.make_prototype_tree(full, target) == rtu.make_prototype_tree(full, target)
    assert tu.set_matching(full, target, 0.0) == rtu.set_matching(full, target, 0.0)
    assert full == {"a": 1.0, "b": {"b1": 2.0, "b2": 3.0}, "c": 4.0}  # not mutated


def test_none_target_leaves_on_rockpool_parameters():
    rtu = rockpool_tree_utils()
    params = {
        "1_LIFJax": {"tau_mem": np.full(3, 0.02), "bias": np.zeros(3)},
        "3_LIFJax": {"tau_mem": np.full(5, 0.02), "bias": np.zeros(5)},
    }
    lb, _ = jb.make_bounds(params)
    target = {"1_LIFJax": {"tau_mem": None}, "3_LIFJax": {"tau_mem": None}}
    got = tu.set_matching(lb, target, 1e-3)
    assert got == rtu.set_matching(lb, target, 1e-3)
    assert jb.mask(got, lambda path, x: x == 1e-3) == tu.make_prototype_tree(lb, target)


def test_equinox_filter_holes_are_still_skipped():
    class Cell(eqx.Module):
        tau: jax.Array
        bias: jax.Array

    cell = Cell(jnp.ones(2), jnp.zeros(2))
    target = eqx.filter(cell, lambda x: x is cell.tau)  # bias -> None, a hole
    lb, _ = jb.make_bounds(cell)
    new = tu.set_matching(lb, target, 0.5)
    assert (new.tau, new.bias) == (0.5, -math.inf)
    proto = tu.make_prototype_tree(cell, target)
    assert (proto.tau, proto.bias) == (True, False)


def rockpool_lif_network():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Rockpool warns that torch is missing
        pytest.importorskip("rockpool")
        from rockpool.nn.combinators import Sequential
        from rockpool.nn.modules import LIFJax, LinearJax

        np.random.seed(0)
        return Sequential(LinearJax((2, 3)), LIFJax(3), LinearJax((3, 5)), LIFJax(5))


def train_rockpool(net, tau_lower: float, steps: int = 10):
    """The migration page's recipe on Rockpool's own network and forward pass."""
    params = net.parameters()
    lb, ub = jb.make_bounds(params)
    lb = jb.set_where(lb, "*.tau_*", tau_lower)
    ub = jb.set_where(ub, "*.tau_syn", 500e-3)
    optimizer = optax.chain(
        jb.add_bounds_penalty(lb, ub), optax.adam(5e-2), jb.project_to_bounds(lb, ub)
    )
    rng = np.random.default_rng(0)
    inp = jnp.asarray(rng.random((1, 50, 2)), jnp.float32)
    target = jnp.asarray(rng.random((1, 50, 5)), jnp.float32)

    def eval_loss(p):
        output, _, _ = net.set_attributes(p)(inp)
        return jnp.mean((output - target) ** 2)

    @jax.jit
    def step(p, state):
        updates, state = optimizer.update(jax.grad(eval_loss)(p), state, p)
        return optax.apply_updates(p, updates), state

    p, state, history = params, optimizer.init(params), []
    for _ in range(steps):
        p, state = step(p, state)
        history.append(p)
    return history, lb, ub


@pytest.mark.slow
def test_rockpool_lif_with_a_zero_tau_bound_goes_nan():
    net = rockpool_lif_network()
    history, _, _ = train_rockpool(net, 0.0, steps=3)
    taus = [np.asarray(p["1_LIFJax"]["tau_mem"]) for p in history]
    # the projection puts tau on 0, where d/dtau exp(-dt / tau) is 0 * inf
    assert np.any(taus[0] == 0.0)
    assert all(np.isnan(np.asarray(x)).all() for x in jax.tree.leaves(history[-1]))


@pytest.mark.slow
def test_rockpool_lif_with_the_documented_tau_bound_trains_without_nan():
    net = rockpool_lif_network()
    dt = net[1].dt
    assert dt == pytest.approx(1e-3)
    history, lb, ub = train_rockpool(net, dt, steps=10)
    for p in history:
        assert not any(np.isnan(np.asarray(x)).any() for x in jax.tree.leaves(p))
    last = history[-1]
    assert float(jb.bounds_cost(last, lb, ub)) == 0.0
    tau = np.concatenate(
        [np.ravel(last[k]["tau_mem"]) for k in ("1_LIFJax", "3_LIFJax")]
    )
    dt_here = np.asarray(dt, tau.dtype)  # the params' dtype (float64 in the tests)
    assert np.all(tau >= dt_here) and np.any(tau == dt_here)
    # the documented recipe uses exactly this bound
    page = (ROOT / "docs" / "rockpool_migration.md").read_text(encoding="utf-8")
    assert 'jb.set_where(lb, "*.tau_*", dt)' in page
