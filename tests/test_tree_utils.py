"""jaxbounds.tree_utils against Rockpool's own utilities.tree_utils."""

import ast
import copy
import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from howto_printed import HOWTO_PRINTED
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbounds as jb
import jaxbounds.tree_utils as tu

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # rockpool warns that torch is missing
    import rockpool.training.jax_loss as rjl
    import rockpool.utilities.tree_utils as rtu

SETTINGS = settings(max_examples=50, deadline=None)
INF = math.inf


def same(a, b):
    """Same container types, same key order, equal leaves (NumPy semantics)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            type(a) is type(b)
            and list(a) == list(b)
            and all(same(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, eqx.Module) or isinstance(b, eqx.Module):
        la, ta = jax.tree_util.tree_flatten(a, is_leaf=lambda x: x is None)
        lb, tb = jax.tree_util.tree_flatten(b, is_leaf=lambda x: x is None)
        return ta == tb and all(map(same, la, lb))
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and np.array_equal(np.asarray(a), np.asarray(b))


def rockpool_tree():
    """Module.parameters() of the how-to's torch network, as plain dicts."""
    rng = np.random.default_rng(0)

    def lif_decays(n):
        return {
            "alpha": np.full(n, 0.5),
            "beta": np.full((n, 1), 0.5),
            "bias": np.zeros(n),
            "threshold": np.ones(n),
        }

    return {
        "0_LinearTorch": {"weight": rng.normal(size=(2, 3))},
        "1_LIFTorch": lif_decays(3),
        "2_TorchResidual": {
            "0_LinearTorch": {"weight": rng.normal(size=(3, 3))},
            "1_LIFTorch": lif_decays(3),
        },
        "3_LinearTorch": {"weight": rng.normal(size=(3, 5))},
        "4_LIFTorch": {
            "tau_mem": np.full(5, 0.02),
            "tau_syn": np.full((5, 1), 0.02),
            "bias": np.zeros(5),
            "threshold": np.ones(5),
        },
    }


def family(params, names):
    """What Rockpool's net.parameters(family) / attributes_named return: a sub-tree."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            sub = family(v, names)
            if sub:
                out[k] = sub
        elif k in names:
            out[k] = v
    return out


def parse_printed(text):
    """The how-to's printed dicts as Python dicts (``inf`` -> float('inf'))."""
    lower, upper = text.strip().split("\n}\n{")
    as_dict = lambda s: ast.literal_eval(s.replace("inf", "1e999"))  # noqa: E731
    return as_dict(lower + "}"), as_dict("{" + upper)


def test_parse_printed_reads_the_howto_output():
    lower, upper = parse_printed(HOWTO_PRINTED)
    assert lower["4_LIFTorch"] == {
        "tau_mem": 0.0,
        "tau_syn": 0.0,
        "bias": -INF,
        "threshold": -INF,
    }
    assert upper["2_TorchResidual"]["1_LIFTorch"]["beta"] == 1.0
    assert len(list(rtu.branches(lower))) == len(list(rtu.branches(upper))) == 15


# ------------------------------------------------ the how-to flow, nested dicts


def torch_make_bounds(params):
    """The body of Rockpool's torch_loss.make_bounds (torch itself is not needed)."""
    lower = rtu.tree_map(copy.deepcopy(params), lambda _: -float("inf"))
    upper = rtu.tree_map(copy.deepcopy(params), lambda _: float("inf"))
    return lower, upper


def howto_flow(t, make_bounds, params):
    lb, ub = make_bounds(params)
    lb = t.set_matching(lb, family(params, {"alpha", "beta"}), 0.5)
    lb = t.set_matching(lb, family(params, {"tau_mem", "tau_syn"}), 0.0)
    ub = t.set_matching(ub, family(params, {"alpha", "beta"}), 1.0)
    ub = t.set_matching(ub, family(params, {"tau_syn"}), 500e-3)
    return lb, ub


def test_howto_nested_network_flow_on_dicts_is_identical_to_rockpool():
    params = rockpool_tree()
    before = copy.deepcopy(params)
    ours = howto_flow(tu, torch_make_bounds, params)
    theirs = howto_flow(rtu, torch_make_bounds, params)
    assert same(ours[0], theirs[0]) and same(ours[1], theirs[1])
    # ... and leaf for leaf (in order) what the how-to prints.
    printed = parse_printed(HOWTO_PRINTED)
    assert same(ours[0], printed[0]) and same(ours[1], printed[1])
    assert same(params, before)


def test_howto_flow_with_jaxbounds_make_bounds_gives_the_printed_bounds():
    params = rockpool_tree()
    lb, ub = howto_flow(tu, jb.make_bounds, params)
    printed = parse_printed(HOWTO_PRINTED)
    # jb.make_bounds goes through jax.tree_util, which sorts dict keys.
    assert lb == printed[0] and ub == printed[1]
    # The same bounds set with set_where globs.
    lo, up = jb.make_bounds(params)
    lo = jb.set_where(lo, "*.alpha", 0.5)
    lo = jb.set_where(lo, "*.beta", 0.5)
    lo = jb.set_where(lo, "*.tau_*", 0.0)
    up = jb.set_where(up, lambda path, _: path.split(".")[-1] in ("alpha", "beta"), 1.0)
    up = jb.set_where(up, "*tau_syn", 0.5)
    assert lo == printed[0] and up == printed[1]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside Rockpool's init
def test_howto_jax_flow_with_a_real_rockpool_network():
    from rockpool.nn.combinators import Residual, Sequential
    from rockpool.nn.modules import LIFJax, LinearJax

    net = Sequential(
        LinearJax((2, 3)),
        LIFJax(3),
        Residual(LinearJax((3, 3)), LIFJax(3)),
        LinearJax((3, 5)),
        LIFJax(5),
    )
    lb, ub = rjl.make_bounds(net.parameters())
    for t in (tu, rtu):
        lo = t.set_matching(lb, net.parameters("taus"), 0.0)
        up = t.set_matching(ub, net.attributes_named("tau_syn"), 0.5)
        if t is tu:
            ours = lo, up
    assert same(ours[0], lo) and same(ours[1], up)
    assert ours[0]["2_JaxResidual"]["1_LIFJax"] == {
        "bias": -INF,
        "tau_mem": 0.0,
        "tau_syn": 0.0,
        "threshold": -INF,
    }
    assert (
        ours[1]["4_LIFJax"]["tau_syn"] == 0.5 and ours[1]["4_LIFJax"]["tau_mem"] == INF
    )
    # The network's own parameters are inside the bounds.
    assert float(jb.bounds_cost(net.parameters(), *ours)) == 0.0


# ------------------------------------------------------------ function by function

DICT_KEYS = st.sampled_from(["b", "a", "tau_syn", "alpha", "0_Linear", "w"])
DICT_LEAVES = st.one_of(
    st.floats(-5, 5, allow_nan=False),
    st.integers(-3, 3),
    st.integers(1, 3).map(lambda n: np.linspace(0, 1, n)),
)
DICT_TREES = st.recursive(
    DICT_LEAVES,
    lambda children: st.dictionaries(DICT_KEYS, children, min_size=1, max_size=3),
    max_leaves=10,
).filter(lambda t: isinstance(t, dict))


@st.composite
def dict_and_subtree(draw):
    full = draw(DICT_TREES)
    chosen = draw(st.lists(st.sampled_from(list(rtu.branches(full))), min_size=1))
    target = {}
    for branch in chosen:
        node = target
        for key in branch[:-1]:
            node = node.setdefault(key, {})
        node[branch[-1]] = draw(DICT_LEAVES)
    return full, target


@SETTINGS
@given(DICT_TREES)
def test_branches_get_nested_and_tree_find_equal_rockpool_on_dicts(tree):
    assert list(tu.branches(tree)) == list(rtu.branches(tree))
    assert list(tu.branches(tree, ["root"])) == list(rtu.branches(tree, ["root"]))
    for branch in rtu.branches(tree):
        assert same(tu.get_nested(tree, branch), rtu.get_nested(tree, branch))
    truth = rtu.tree_map(tree, lambda x: bool(np.size(x) == 1 and np.all(x)))
    assert list(tu.tree_find(truth)) == list(rtu.tree_find(truth))


@SETTINGS
@given(dict_and_subtree(), st.sampled_from([0.5, -INF, np.float32(2.0)]))
def test_set_functions_and_prototype_equal_rockpool_on_dicts(case, value):
    full, target = case
    snapshot = copy.deepcopy(full)
    assert same(
        tu.set_matching(full, target, value), rtu.set_matching(full, target, value)
    )
    branch = next(rtu.branches(target))
    assert same(tu.set_nested(full, branch, value), rtu.set_nested(full, branch, value))
    proto = rtu.make_prototype_tree(full, target)
    assert same(tu.make_prototype_tree(full, target), proto)
    assert same(
        tu.set_matching_select(full, proto, value),
        rtu.set_matching_select(full, proto, value),
    )
    assert same(full, snapshot)


@SETTINGS
@given(DICT_TREES, DICT_TREES)
def test_tree_update_equals_rockpool_on_dicts(target, additional):
    snapshot = copy.deepcopy((target, additional))
    try:
        expected = rtu.tree_update(target, additional)
    except (TypeError, AttributeError):  # Rockpool recursing into a number
        return
    assert same(tu.tree_update(target, additional), expected)
    assert same((target, additional), snapshot)


def test_tree_update_replaces_a_leaf_where_rockpool_would_recurse_into_it():
    with pytest.raises(AttributeError):
        rtu.tree_update({"a": 1.0}, {"a": {"b": 2.0}})
    assert tu.tree_update({"a": 1.0}, {"a": {"b": 2.0}}) == {"a": {"b": 2.0}}


def test_make_prototype_tree_reproduces_rockpools_documented_example():
    target_tree = {"a": 0, "b": {"b2": 0}}
    full_tree = {"a": 1, "b": {"b1": 2, "b2": 3}, "c": 4, "d": 5}
    expected = {"a": True, "b": {"b1": False, "b2": True}, "c": False, "d": False}
    assert same(tu.make_prototype_tree(full_tree, target_tree), expected)
    assert same(rtu.make_prototype_tree(full_tree, target_tree), expected)


def test_inplace_mutates_dicts_like_rockpool_and_returns_the_same_object():
    for fn, args in [
        (tu.set_nested, (("1_LIFTorch", "alpha"), 0.5)),
        (tu.set_matching, ({"4_LIFTorch": {"tau_syn": 0}}, 0.5)),
        (tu.set_matching_select, ({"3_LinearTorch": {"weight": True}}, 0.0)),
        (tu.tree_update, ({"4_LIFTorch": {"extra": 1.0}},)),
    ]:
        ours = rjl.make_bounds(rockpool_tree())[0]
        theirs = copy.deepcopy(ours)
        out = fn(ours, *args, inplace=True)
        ref = getattr(rtu, fn.__name__)(theirs, *args, inplace=True)
        assert out is ours and ref is theirs and same(ours, theirs)


def test_results_share_no_mutable_object_with_the_inputs():
    params = rockpool_tree()
    addition = {"4_LIFTorch": {"extra": {"x": np.zeros(2)}}}
    out = tu.tree_update(params, addition)
    out["1_LIFTorch"]["alpha"][0] = 99.0
    out["4_LIFTorch"]["extra"]["x"][0] = 99.0
    assert params["1_LIFTorch"]["alpha"][0] == 0.5
    assert addition["4_LIFTorch"]["extra"]["x"][0] == 0.0
    out = tu.set_matching(params, {"3_LinearTorch": {"weight": 0}}, 0.0)
    out["0_LinearTorch"]["weight"][0, 0] = 99.0
    out["2_TorchResidual"]["1_LIFTorch"]["bias"] = 5.0
    assert params["0_LinearTorch"]["weight"][0, 0] != 99.0
    assert isinstance(params["2_TorchResidual"]["1_LIFTorch"]["bias"], np.ndarray)


# ---------------------------------------------------------------- errors


def test_a_missing_branch_is_a_key_error_naming_the_nearest_branches():
    params = rockpool_tree()
    with pytest.raises(KeyError, match="nearest branches: 4_LIFTorch.tau_syn"):
        tu.set_matching(params, {"4_LIFTorch": {"tau_sin": 0}}, 0.0)
    with pytest.raises(KeyError, match="no key '5_LIFTorch'"):
        tu.get_nested(params, ("5_LIFTorch", "tau_syn"))
    with pytest.raises(KeyError, match="goes through a leaf"):
        tu.get_nested(params, ("4_LIFTorch", "tau_syn", 0))
    # Rockpool's set_nested silently inserts; it documents the leaf must exist.
    with pytest.raises(KeyError, match="not in tree"):
        tu.set_nested(params, ("4_LIFTorch", "tau_sin"), 0.0)
    with pytest.raises(ValueError, match="at least one key"):
        tu.set_nested(params, (), 0.0)


def test_setting_nothing_is_an_error_not_a_silent_no_op():
    lb, _ = jb.make_bounds(rockpool_tree())
    with pytest.raises(ValueError, match="target_tree has no leaves"):
        tu.set_matching(lb, family(rockpool_tree(), {"tau"}), 0.0)
    with pytest.raises(ValueError, match="no leaf of target_tree is true"):
        tu.set_matching_select(lb, jax.tree.map(lambda _: False, lb), 0.0)


def test_prototype_of_a_target_outside_the_full_tree_is_an_error():
    with pytest.raises(ValueError, match="order of arguments"):
        tu.make_prototype_tree({"a": 1}, {"a": 1, "b": {"c": 2}})


def test_truth_of_an_array_leaf_must_be_single():
    with pytest.raises(TypeError, match=r"\('m', 'x'\).*shape \(2,\)"):
        list(tu.tree_find({"m": {"x": np.ones(2)}}))


def test_inplace_on_immutable_containers_is_an_error_before_any_change():
    tree = {"a": {"x": 1.0}, "b": (2.0, 3.0)}
    with pytest.raises(TypeError, match=r"\('b', 0\).*tuple.*inplace=False"):
        tu.set_matching(tree, {"a": {"x": 0}, "b": [0, 0]}, 9.0, inplace=True)
    assert tree == {"a": {"x": 1.0}, "b": (2.0, 3.0)}
    assert tu.set_matching(tree, {"a": {"x": 0}, "b": [0, 0]}, 9.0) == {
        "a": {"x": 9.0},
        "b": (9.0, 9.0),
    }


def test_tree_update_cannot_insert_into_fixed_containers():
    with pytest.raises(KeyError, match=r"\('t', 2\)"):
        tu.tree_update({"t": (1.0, 2.0)}, {"t": {2: 5.0}})
    with pytest.raises(TypeError, match="tree of updates"):
        tu.tree_update({"a": 1.0}, 2.0)


# ---------------------------------------------- any pytree, and JAX's conventions


class Pair(NamedTuple):
    first: object
    second: object


class Cell(eqx.Module):
    tau_syn: jax.Array
    bias: jax.Array
    act: object = jax.nn.relu


def model():
    return {
        "layers": [
            Cell(jnp.full(2, 0.02), jnp.zeros(2)),
            Cell(jnp.ones(1), jnp.ones(1)),
        ],
        "pair": Pair(jnp.ones(3), None),
    }


def test_branches_walk_lists_tuples_namedtuples_and_modules_through_key_paths():
    assert list(tu.branches(model())) == [
        ("layers", 0, "tau_syn"),
        ("layers", 0, "bias"),
        ("layers", 0, "act"),
        ("layers", 1, "tau_syn"),
        ("layers", 1, "bias"),
        ("layers", 1, "act"),
        ("pair", "first"),
    ]
    assert tu.get_nested(model(), ("layers", 1, "bias")).shape == (1,)
    assert tu.get_nested(model(), ("pair", "second")) is None


def test_set_matching_on_a_model_with_an_eqx_filter_target_skips_the_holes():
    m = model()
    lb, _ = jb.make_bounds(m)
    target = eqx.filter(m, lambda x: eqx.is_array(x) and x.shape == (2,))
    assert list(tu.branches(target)) == [
        ("layers", 0, "tau_syn"),
        ("layers", 0, "bias"),
    ]
    new = tu.set_matching(lb, target, 0.0)
    assert isinstance(new["layers"][0], Cell) and isinstance(new["pair"], Pair)
    assert jb.paths(new) == jb.paths(lb)
    assert [p for p, v in zip(jb.paths(new), jax.tree.leaves(new)) if v == 0.0] == [
        "layers.0.tau_syn",
        "layers.0.bias",
    ]
    with pytest.raises(TypeError, match="Cell, which is immutable"):
        tu.set_matching(lb, target, 0.0, inplace=True)
    # Hand-computed: the two filtered leaves set, the function's None kept.
    want = {
        "layers": [Cell(0.0, 0.0, None), Cell(-INF, -INF, None)],
        "pair": Pair(-INF, None),
    }
    assert same(new, want)


def test_prototype_and_select_on_a_model_mark_and_set_the_target_branches():
    m = model()
    target = {"layers": [{"tau_syn": 1}, {"tau_syn": 1}]}
    proto = tu.make_prototype_tree(m, target)
    # Hand-computed: True at both tau_syn, False at every other leaf (the
    # activation function too), and the hole stays a hole.
    want = {
        "layers": [Cell(True, False, False), Cell(True, False, False)],
        "pair": Pair(False, None),
    }
    assert same(proto, want)
    one = tu.make_prototype_tree(m, {"layers": {1: {"tau_syn": 1}}})  # a branch
    want["layers"][0] = Cell(False, False, False)
    assert same(one, want)
    lb, _ = jb.make_bounds(m)
    want = {
        "layers": [Cell(0.0, -INF, None), Cell(0.0, -INF, None)],
        "pair": Pair(-INF, None),
    }
    assert same(tu.set_matching_select(lb, proto, 0.0), want)


def test_tree_update_with_a_filtered_module_replaces_only_its_leaves():
    old, new = Cell(jnp.ones(2), jnp.zeros(2)), Cell(jnp.full(2, 5.0), jnp.full(2, 7.0))
    merged = tu.tree_update(old, eqx.filter(new, lambda x: x is new.bias))
    np.testing.assert_array_equal(merged.tau_syn, old.tau_syn)
    np.testing.assert_array_equal(merged.bias, new.bias)
    merged = tu.tree_update(model(), {"layers": {1: {"bias": 3.0}}})
    assert merged["layers"][1].bias == 3.0 and isinstance(merged["layers"], list)


def test_none_is_an_empty_subtree_as_in_jax_not_a_leaf_as_in_rockpool():
    tree = {"a": None, "b": 1.0}
    assert list(rtu.branches(tree)) == [("a",), ("b",)]
    assert list(tu.branches(tree)) == [("b",)]
    assert tu.tree_update({"a": 1.0}, {"a": None}) == {"a": 1.0}
    assert tu.make_prototype_tree(tree, {"b": 0}) == {"a": None, "b": True}
