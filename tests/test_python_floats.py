"""Python floats in plain containers are parameters, through every public function.

As `jax.grad` and optax see them: ``{"tau": 0.5}`` is a parameter tree, in
dicts, lists, tuples and NamedTuples. Results for bounded leaves may be 0-d
arrays (as `jax.grad` returns them); unbounded ones come back as they were.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbounds as jb

from helpers import linesearch_step, numpy_exp_cost, numpy_exp_grad


class Pair(NamedTuple):
    a: float
    b: float


def trees():
    """(params, lower, upper) of one shape in each plain container kind."""
    return [
        (
            {"tau": -0.5, "gain": 2.0},
            {"tau": 0.0, "gain": None},
            {"tau": 1.0, "gain": None},
        ),
        ([3.0, 0.25], [0.0, 0.0], [1.0, 1.0]),
        ((0.5, -2.0), (None, -1.0), (0.0, math.inf)),
        (Pair(0.1, 4.0), Pair(0.2, 1.0), Pair(0.3, 2.0)),
    ]


def flat(tree):
    return [float(x) for x in jax.tree.leaves(tree)]


def numpy_clip(params, lower, upper):
    out = []
    for p, lo, up in zip(
        *(
            jax.tree.leaves(t, is_leaf=lambda x: x is None)
            for t in (params, lower, upper)
        )
    ):
        lo = -np.inf if lo is None else lo
        up = np.inf if up is None else up
        out.append(float(np.clip(p, lo, up)))
    return out


def leaves3(params, lower, upper):
    return zip(
        *(
            jax.tree.leaves(t, is_leaf=lambda x: x is None)
            for t in (params, lower, upper)
        )
    )


@pytest.mark.parametrize("case", range(4))
def test_make_bounds_bounds_every_float(case):
    params = trees()[case][0]
    lower, upper = jb.make_bounds(params)
    assert type(lower) is type(params)
    assert jax.tree.leaves(lower) == [-math.inf] * 2
    assert jax.tree.leaves(upper) == [math.inf] * 2
    assert jb.mask(params, "*") == jax.tree.map(lambda _: True, params)


@pytest.mark.parametrize("case", range(4))
def test_cost_and_its_gradient_match_numpy(case):
    params, lower, upper = trees()[case]
    expected = sum(
        numpy_exp_cost(p, lo, up) for p, lo, up in leaves3(params, lower, upper)
    )
    np.testing.assert_allclose(
        jb.bounds_cost(params, lower, upper), expected, rtol=1e-6
    )
    grads = jax.grad(jb.bounds_cost)(params, lower, upper)
    want = [
        float(numpy_exp_grad(p, lo, up)) for p, lo, up in leaves3(params, lower, upper)
    ]
    np.testing.assert_allclose(flat(grads), want, rtol=1e-6)


@pytest.mark.parametrize("case", range(4))
def test_clip_and_violations_match_numpy(case):
    params, lower, upper = trees()[case]
    clipped = jb.clip_to_bounds(params, lower, upper)
    assert type(clipped) is type(params)
    np.testing.assert_allclose(flat(clipped), numpy_clip(params, lower, upper))
    report = jb.violations(params, lower, upper)
    outside = [
        not (lo is None or p >= lo) or not (up is None or p <= up)
        for p, lo, up in leaves3(params, lower, upper)
    ]
    assert [not r.ok for r in report.rows] == outside
    assert report.size == 2
    assert jb.violations(clipped, lower, upper).ok


def test_clip_gives_optax_projection_box_numbers_on_float_trees():
    # optax's own test cases (projections/_projections_test.py)
    tree = (-1.0, {"k1": 2.0, "k2": (2.0, 3.0)}, 3.0)
    lower = (0.0, {"k1": 0.0, "k2": (0.0, 0.0)}, 0.0)
    upper = (2.0, {"k1": 2.0, "k2": (2.0, 2.0)}, 2.0)
    got = jb.clip_to_bounds(tree, lower, upper)
    want = optax.projections.projection_box(tree, lower, upper)
    assert flat(got) == flat(want) == [0.0, 2.0, 2.0, 2.0, 2.0]
    x = jnp.array([-1.0, 2.0, 3.0])
    np.testing.assert_array_equal(
        jb.clip_to_bounds((x, x), (0.0, 0.0), (2.0, 2.0))[1],
        optax.projections.projection_box(x, 0.0, 2.0),
    )


def test_clip_gives_optax_projection_non_negative_numbers_on_float_trees():
    tree = (-1.0, {"k1": 1.0, "k2": (1.0, 1.0)}, 1.0)
    lower = jax.tree.map(lambda _: 0.0, tree)
    upper = jax.tree.map(lambda _: None, tree)
    got = jb.clip_to_bounds(tree, lower, upper)
    want = optax.projections.projection_non_negative(tree)
    assert flat(got) == flat(want) == [0.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("case", range(4))
def test_optax_transformations_step_float_trees(case):
    params, lower, upper = trees()[case]
    grads = jax.tree.map(lambda _: 1.0, params)
    tx = optax.chain(optax.sgd(0.1), jb.project_to_bounds(lower, upper))
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    stepped = jax.tree.map(lambda p: p - 0.1, params)
    np.testing.assert_allclose(flat(new), numpy_clip(stepped, lower, upper), rtol=1e-6)

    tx = jb.add_bounds_penalty(lower, upper, scale=0.5)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    want = [
        1.0 + 0.5 * float(numpy_exp_grad(p, lo, up))
        for p, lo, up in leaves3(params, lower, upper)
    ]
    np.testing.assert_allclose(flat(updates), want, rtol=1e-6)


@pytest.mark.parametrize("case", [0, 3])
def test_constrain_round_trips_float_trees(case):
    params, lower, upper = trees()[case]
    inside = jb.clip_to_bounds(params, lower, upper)
    inside = jax.tree.map(
        lambda p, lo, up: (
            float(p)
            if lo is None or up is None or lo < float(p) < up
            else (lo + up) / 2
        ),
        inside,
        lower,
        upper,
        is_leaf=lambda x: x is None,
    )
    raw = jb.unconstrain(inside, lower, upper)
    back = jb.constrain(raw, lower, upper)
    np.testing.assert_allclose(flat(back), flat(inside), rtol=1e-5)


@pytest.mark.slow
def test_minimize_and_lbfgsb_fit_a_dict_of_floats():
    params = {"tau": 0.5, "gain": 2.0}
    lower, upper = {"tau": 0.6, "gain": None}, {"tau": 1.0, "gain": None}

    def fun(q):
        return (q["tau"] - 0.2) ** 2 + (q["gain"] - 3.0) ** 2

    result = jb.minimize(fun, params, lower, upper)
    np.testing.assert_allclose(
        [result.params["gain"], result.params["tau"]], [3.0, 0.6], rtol=1e-6
    )
    tx = jb.lbfgsb(lower, upper)
    state = tx.init(params)
    step = linesearch_step(tx, fun)
    for _ in range(5):
        params, state, _ = step(params, state)
    np.testing.assert_allclose([params["gain"], params["tau"]], [3.0, 0.6], rtol=1e-5)


def test_save_and_load_bounds_of_a_float_tree(tmp_path):
    params = {"tau": 0.5, "gain": 2.0, "n": 3}
    lower, upper = jb.make_bounds(params)
    assert lower["n"] is None
    lower["tau"] = 0.1
    path = tmp_path / "b.json"
    jb.save_bounds(path, lower, upper)
    assert jb.load_bounds(path, like=params) == (lower, upper)


def test_constraints_act_on_python_floats():
    params = {"tau_syn": 0.3, "tau_mem": 0.1, "w": [3.0, 4.0]}
    c = jb.Constraints(
        jb.LessEqual("tau_syn", "tau_mem"), ("w.*", jb.Interval(0.0, 1.0))
    )
    out = jb.project(params, c)
    # the violating pair moves to its midpoint; the list is clipped
    np.testing.assert_allclose([out["tau_syn"], out["tau_mem"]], [0.2, 0.2])
    np.testing.assert_allclose(flat(out["w"]), [1.0, 1.0])
    distance = math.hypot(0.1, 0.1)  # of (0.3, 0.1) to the line a = b
    expected = math.exp(distance) + math.exp(2.0) + math.exp(3.0)
    np.testing.assert_allclose(jb.constraint_cost(params, c), expected, rtol=1e-6)
    assert [r.path for r in jb.violations(params, c).violating] == [
        "tau_syn <= tau_mem",  # rule 0, as declared
        "w.0",
        "w.1",
    ]
