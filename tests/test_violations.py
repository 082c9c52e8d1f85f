"""`_violations`: the per-path report and its table, against NumPy counts."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbounds as jb

from helpers import FLOATS, count_compilations, numpy_violations


def np_row(p, lo, up):
    """(below, above, worst below, worst above, nan) in float64 NumPy.

    Values as stored, bounds as the cost compares them (at least float32).
    """
    vb, va = numpy_violations(p, lo, up)
    return (
        int(np.sum(vb > 0)),
        int(np.sum(va > 0)),
        float(np.max(vb, initial=0.0, where=vb > 0)),
        float(np.max(va, initial=0.0, where=va > 0)),
        int(np.sum(np.isnan(np.asarray(vb)))),
    )


def as_tuple(row):
    return (row.below, row.above, row.worst_below, row.worst_above, row.nan)


def test_counts_and_worst_match_numpy_with_array_bounds():
    rng = np.random.default_rng(0)
    params = {
        "a": jnp.asarray(rng.normal(size=(4, 5))),
        "b": [jnp.asarray(rng.normal(size=7)), jnp.asarray(rng.normal(size=()))],
    }
    lower = {"a": jnp.asarray(rng.normal(size=5) - 1), "b": [-0.5, -math.inf]}
    upper = {"a": 0.5, "b": [jnp.asarray(rng.uniform(0, 1, size=7)), 0.0]}
    report = jb.violations(params, lower, upper)
    assert [r.path for r in report.rows] == ["a", "b.0", "b.1"]
    assert [r.size for r in report.rows] == [20, 7, 1]
    for row, p, lo, up in [
        (report["a"], params["a"], lower["a"], upper["a"]),
        (report["b.0"], params["b"][0], -0.5, upper["b"][0]),
        (report["b.1"], params["b"][1], -math.inf, 0.0),
    ]:
        assert as_tuple(row) == pytest.approx(np_row(p, lo, up), rel=1e-12)
    assert report.size == 28
    assert not report.ok


def test_hand_computed_report_and_table():
    params = {
        "tau_mem": jnp.array([0.05, -0.01, 0.5, 0.25], jnp.float32),
        "tau_syn": jnp.array([0.02], jnp.float32),
        "bias": jnp.array([1.0, jnp.nan, 2.0], jnp.float32),
    }
    lower = {"tau_mem": 0.0, "tau_syn": 0.0, "bias": -math.inf}
    upper = {"tau_mem": 0.2, "tau_syn": 0.2, "bias": math.inf}
    report = jb.violations(params, lower, upper)
    row = report["tau_mem"]
    assert (row.below, row.above) == (1, 2)
    assert row.worst_below == pytest.approx(0.01)
    assert row.worst_above == pytest.approx(0.3)
    assert report["tau_syn"].ok and report["bias"].nan == 1
    assert [r.path for r in report.violating] == ["bias", "tau_mem"]
    assert str(report) == (
        "4 of 8 parameters outside bounds:\n"
        "path     size  below  worst below  above  worst above  nan\n"
        "bias        3      -            -      -            -    1\n"
        "tau_mem     4      1         0.01      2          0.3    -"
    )


def test_all_within_bounds_is_one_line():
    params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(2), "n": 3, "hole": None}
    lower, upper = jb.make_bounds(params)
    lower["w"], upper["w"] = 0.0, 1.0
    report = jb.violations(params, lower, upper)
    assert report.ok
    assert str(report) == "all 14 parameters within bounds"
    assert [r.path for r in report.rows] == ["b", "w"]  # no int, no hole
    assert report.violating == ()


def test_elements_on_the_bound_are_inside():
    params = {"x": jnp.array([0.0, 1.0], jnp.float32)}
    assert jb.violations(params, {"x": 0.0}, {"x": 1.0}).ok


def test_root_leaf_and_lookup_of_a_missing_path():
    report = jb.violations(jnp.array([2.0]), 0.0, 1.0)
    assert report.rows[0].path == "<root>"
    assert report["<root>"].above == 1
    with pytest.raises(KeyError, match="nope"):
        report["nope"]


@pytest.mark.parametrize("dtype", FLOATS)
def test_counts_and_worst_match_numpy_on_stored_values_in_every_dtype(dtype):
    # Stored values against bounds in the compute dtype (at least float32):
    # float16(0.1) = 0.09998 is below a lower bound of 0.1, bfloat16(0.1) =
    # 0.10010 is not, float64's 0.1 is on it; clipping fixes every dtype.
    params = {"x": jnp.array([0.1, 0.15, 0.3, 0.2, jnp.nan], dtype)}
    lower, upper = {"x": 0.1}, {"x": 0.2}
    report = jb.violations(params, lower, upper)
    want = np_row(params["x"], 0.1, 0.2)
    assert as_tuple(report["x"]) == pytest.approx(want, rel=1e-6)
    below = {jnp.float16: 1, jnp.bfloat16: 0, jnp.float32: 0, jnp.float64: 0}
    assert report["x"].below == below[dtype] and report["x"].nan == 1
    assert report["x"].above == (2 if dtype == jnp.bfloat16 else 1)  # bf16(0.2) > 0.2
    clipped = jb.clip_to_bounds(params, lower, upper)
    assert jb.violations(clipped, lower, upper)["x"].nan == 1  # the NaN stays
    assert jb.violations(clipped, lower, upper)["x"].below == 0
    assert jb.violations(clipped, lower, upper)["x"].above == 0


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.floats(-10, 10, allow_subnormal=False), min_size=6, max_size=6, unique=True
    ),
    lo=st.floats(-5, 0, allow_subnormal=False),
    width=st.floats(0, 5, allow_subnormal=False),
)
def test_property_counts_and_worst_match_numpy_and_ok_iff_none_outside(
    values, lo, width
):
    # no subnormals: XLA flushes them to zero on CPU, NumPy does not
    params = {"x": jnp.asarray(values, jnp.float64)}
    lower, upper = {"x": np.asarray(lo)}, {"x": np.asarray(lo + width)}
    report = jb.violations(params, lower, upper)
    ref = np_row(values, lo, lo + width)
    assert as_tuple(report["x"]) == pytest.approx(ref, rel=1e-12, abs=1e-300)
    x = np.asarray(values)
    outside = int(np.sum((x < lo) | (x > lo + width)))
    assert report["x"].below + report["x"].above == outside
    assert report.ok == (outside == 0)


def test_equinox_model_with_holes_and_static_fields():
    model = eqx.nn.MLP(2, 1, 3, 1, key=jax.random.PRNGKey(0))
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    lower, upper = jb.make_bounds(model)
    lower = eqx.tree_at(lambda m: m.layers[0].weight, lower, 0.0)
    report = jb.violations(params, lower, upper)
    w = np.asarray(model.layers[0].weight)
    assert report["layers.0.weight"].below == int(np.sum(w < 0))
    assert report["layers.0.weight"].worst_below == pytest.approx(float(-w.min()))
    assert [r.path for r in report.violating] == ["layers.0.weight"]


def test_on_the_host_after_a_jitted_step_not_inside_jit():
    params = {"tau": jnp.array([0.05, 0.15])}
    lower, upper = {"tau": 0.0}, {"tau": 0.2}
    opt = optax.sgd(1.0)
    state = opt.init(params)

    @jax.jit
    def step(p, state):
        grads = jax.grad(lambda p: jnp.sum(p["tau"]))(p)  # pushes tau down by 1
        updates, state = opt.update(grads, state)
        return optax.apply_updates(p, updates), state

    params, state = step(params, state)
    report = jb.violations(params, lower, upper)
    assert report["tau"].below == 2
    assert report["tau"].worst_below == pytest.approx(0.95)
    with pytest.raises(TypeError, match="outside jax.jit"):
        jax.jit(lambda p: jb.violations(p, lower, upper).ok)(params)


def test_one_compiled_pass_reused_for_the_same_structure():
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    lower, upper = {"a": 0.0, "b": jnp.zeros(2)}, {"a": 2.0, "b": 0.5}
    jb.violations(params, lower, upper)
    scaled = [jax.tree.map(lambda x, s=s: x * s, params) for s in (0.5, 3.0, -1.0)]
    with count_compilations() as compiled:
        for scale, tree in zip((0.5, 3.0, -1.0), scaled):
            jb.violations(tree, lower, {"a": 2.0 + scale, "b": 0.5})
    assert compiled == []


def test_bad_bounds_raise_naming_the_path():
    params = {"layer": {"w": jnp.ones(3)}}
    with pytest.raises(ValueError, match=r"lower > upper at 'layer\.w'"):
        jb.violations(params, {"layer": {"w": 1.0}}, {"layer": {"w": 0.0}})
    with pytest.raises(ValueError, match=r"'layer\.w'.*shape \(2,\)"):
        jb.violations(params, {"layer": {"w": jnp.zeros(2)}}, {"layer": {"w": 1.0}})


def test_report_is_plain_python_not_a_pytree():
    report = jb.violations({"x": jnp.array([2.0])}, {"x": 0.0}, {"x": 1.0})
    assert jax.tree_util.tree_leaves(report) == [report]
    row = report["x"]
    assert isinstance(row.below, int) and isinstance(row.worst_above, float)
    assert isinstance(report, jb.ViolationReport)
