"""`_paths`: dotted key paths, flattening with paths, structure checks."""

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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


def _keystr_paths(tree):
    """Dotted paths written independently from jax.tree_util.keystr."""
    out = []
    for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        s = jax.tree_util.keystr(kp)  # e.g. "['layers'][1].tau_syn"
        for a, b in (
            ("']['", "."),
            ("['", "."),
            ("']", ""),
            ("][", "."),
            ("[", "."),
            ("]", ""),
        ):
            s = s.replace(a, b)
        out.append(s.lstrip("."))
    return out


def test_paths_name_dict_keys_attributes_and_indices_in_tree_leaves_order():
    tree = {
        "layers": [{"tau_syn": jnp.ones(2), "w": jnp.ones(3)}, (jnp.zeros(1),)],
        "0_LinearJax": {"weight": jnp.ones((2, 3))},
        "pair": Pair(1.0, jnp.ones(1)),
    }
    ps = jb.paths(tree)
    assert ps == [
        "0_LinearJax.weight",
        "layers.0.tau_syn",
        "layers.0.w",
        "layers.1.0",
        "pair.tau",
        "pair.w",
    ]
    assert ps == _keystr_paths(tree)
    assert len(ps) == len(jax.tree_util.tree_leaves(tree))


def test_paths_of_equinox_sequential_and_filtered_model_skip_none_holes():
    model = eqx.nn.Sequential(
        [eqx.nn.Linear(2, 3, key=jax.random.key(0)), eqx.nn.Lambda(jax.nn.relu)]
    )
    assert jb.paths(model) == ["layers.0.weight", "layers.0.bias", "layers.1.fn"]
    params = eqx.filter(model, eqx.is_array)
    assert jb.paths(params) == ["layers.0.weight", "layers.0.bias"]
    assert jb.paths(jnp.ones(2)) == [""]


class _Cell(eqx.Module):
    w: Any  # a None hole
    b: jax.Array
    c: float  # a hyperparameter, as eqx.filter_grad sees it


def test_none_holes_inside_a_module_keep_later_python_floats_in_place():
    """A Module with a `None` field, then Python floats: each leaf keeps its flag.

    Hand-computed: ``cell.c`` is a hyperparameter (left alone); the dict's
    floats ``m`` and ``n`` and the arrays are parameters (projected to 1,
    linear cost ``2 + 4 + 3 + 2``).
    """
    params = {
        "cell": _Cell(None, jnp.array([3.0]), 5.0),
        "m": 5.0,
        "n": 4.0,
        "z": jnp.array([3.0]),
    }
    c = jb.Constraints(("*", jb.Interval(0.0, 1.0)))
    out = jb.project(params, c)
    assert out["cell"].w is None
    assert type(out["cell"].c) is float and out["cell"].c == 5.0
    np.testing.assert_array_equal(out["cell"].b, [1.0])
    assert float(out["m"]) == 1.0 and float(out["n"]) == 1.0
    np.testing.assert_array_equal(out["z"], [1.0])
    assert float(jb.constraint_cost(params, c, penalty="linear")) == 11.0
