"""make_bounds, paths and structure checks (the `_tree` foundation)."""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import jaxbounds as jb
from jaxbounds._paths import check_same_structure


class Pair(NamedTuple):
    tau: jax.Array
    w: jax.Array


def test_paths_follow_tree_leaves_order_with_dotted_keys():
    tree = {
        "0_LinearJax": {"weight": jnp.ones((2, 3))},
        "layers": [{"tau_syn": jnp.ones(2)}, Pair(jnp.ones(1), jnp.ones(1))],
    }
    assert jb.paths(tree) == [
        "0_LinearJax.weight",
        "layers.0.tau_syn",
        "layers.1.tau",
        "layers.1.w",
    ]
    assert len(jb.paths(tree)) == len(jax.tree.leaves(tree))


def test_make_bounds_mirrors_dicts_lists_namedtuples():
    params = {"a": [jnp.ones(2), (jnp.ones(1),)], "p": Pair(jnp.ones(1), jnp.ones(2))}
    lower, upper = jb.make_bounds(params)
    assert lower == {"a": [-math.inf, (-math.inf,)], "p": Pair(-math.inf, -math.inf)}
    assert upper == {"a": [math.inf, (math.inf,)], "p": Pair(math.inf, math.inf)}
    assert isinstance(lower["p"], Pair)


def test_make_bounds_on_equinox_model_keeps_structure():
    model = eqx.nn.MLP(2, 2, 4, 1, key=jax.random.PRNGKey(0))
    lower, upper = jb.make_bounds(model)
    is_none = lambda x: x is None  # noqa: E731
    assert jax.tree.structure(lower, is_leaf=is_none) == jax.tree.structure(model)
    assert lower.layers[0].weight == -math.inf and upper.layers[1].bias == math.inf
    assert lower.activation is None  # not a parameter: no bound, never selected


def test_make_bounds_keeps_filter_holes():
    model = eqx.nn.MLP(2, 2, 4, 1, key=jax.random.PRNGKey(0))
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    lower, _ = jb.make_bounds(params)
    assert lower.activation is None and lower.layers[0].weight == -math.inf
    check_same_structure(params, jb.make_bounds(model)[0], "lower")


def test_make_bounds_does_not_touch_params():
    params = {"x": jnp.ones(2)}
    jb.make_bounds(params)
    assert list(params) == ["x"] and params["x"].shape == (2,)


def test_structure_check_names_first_difference_in_deep_tree():
    params = {"layers": [{"tau_syn": jnp.ones(1)}, {"tau_syn": jnp.ones(1)}]}
    bounds = {"layers": [{"tau_syn": 0.0}, {"tau_mem": 0.0}]}
    with pytest.raises(ValueError, match=r"'layers\.1\.tau_syn'.*'layers\.1\.tau_mem'"):
        check_same_structure(params, bounds, "lower")


def test_structure_check_reports_missing_trailing_leaf():
    params = {"layers": [jnp.ones(1), jnp.ones(1)]}
    with pytest.raises(ValueError, match=r"`upper` has no entry for 'layers\.1'"):
        check_same_structure(params, {"layers": [0.0]}, "upper")


def test_structure_check_reports_container_type_difference():
    params = Pair(jnp.ones(1), jnp.ones(1))
    with pytest.raises(ValueError, match="container types"):
        check_same_structure(params, {"tau": 0.0, "w": 0.0}, "lower")


def test_prefix_bound_tree_is_rejected_with_path():
    params = {"layer": {"w": jnp.ones(1), "b": jnp.ones(1)}}
    with pytest.raises(ValueError, match=r"'layer\.b'.*'layer'"):
        jb.bounds_cost(params, {"layer": 0.0}, jb.make_bounds(params)[1])
