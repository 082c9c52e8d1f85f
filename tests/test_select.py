"""`_select`: mask and set_where, selecting pytree leaves by glob, predicate or mask."""

import copy
import math
import zlib
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbounds as jb

from helpers import FLOATS

SETTINGS = settings(max_examples=50, deadline=None)


class Pair(NamedTuple):
    first: object
    second: object


class Block(eqx.Module):
    tau_syn: jax.Array
    bias: jax.Array
    act: object = jax.nn.relu


# ---------------------------------------------------------------------------- mask


def _params():
    return {
        "lif": {"tau_syn": jnp.ones(2), "tau_mem": jnp.ones(2), "bias": jnp.zeros(2)},
        "out": {"weight": jnp.ones((2, 2)), "tau_syn": jnp.full(2, 0.5)},
    }


def test_glob_mask_matches_dotted_paths_with_fnmatch_semantics():
    m = jb.mask(_params(), "*tau_*")
    assert m == {
        "lif": {"bias": False, "tau_mem": True, "tau_syn": True},
        "out": {"tau_syn": True, "weight": False},
    }
    # ``*`` crosses dots, ``?`` is one character, matching is case-sensitive.
    assert jb.mask(_params(), "lif.tau_?yn")["lif"]["tau_syn"] is True
    assert jb.mask(_params(), "out.*")["out"] == {"tau_syn": True, "weight": True}
    with pytest.raises(ValueError, match="matches no leaf"):
        jb.mask(_params(), "*TAU*")


def test_callable_selector_gets_dotted_path_and_leaf_but_never_a_hole():
    seen = []

    def where(path, leaf):
        seen.append((path, None if leaf is None else leaf.shape))
        return leaf.ndim == 2

    params = {"a": jnp.ones((2, 2)), "b": None, "c": [jnp.ones(3), None]}
    m = jb.mask(params, where)
    assert m == {"a": True, "b": None, "c": [False, None]}
    assert seen == [("a", (2, 2)), ("c.0", (3,))]


def test_callable_selector_must_return_a_bool():
    with pytest.raises(TypeError, match="'lif.bias'.*must be a bool, got NoneType"):
        jb.mask(_params(), lambda path, leaf: None if "bias" in path else False)
    with pytest.raises(TypeError, match="'lif.bias'.*shape \\(2,\\)"):
        jb.mask(_params(), lambda path, leaf: leaf > 0)
    # NumPy and 0-d JAX bools are fine.
    m = jb.mask(_params(), lambda path, leaf: jnp.all(leaf == 0.5))
    assert m["out"]["tau_syn"] is True and m["lif"]["tau_syn"] is False


def test_bool_tree_selector_is_returned_as_is_and_checked():
    params = _params()
    selected = jax.tree.map(lambda x: bool(x.ndim == 2), params)
    assert jb.mask(params, selected) == selected
    assert jb.mask(params, jax.tree.map(np.bool_, selected)) == selected
    wrong = {"lif": selected["lif"]}
    with pytest.raises(ValueError, match="'out.tau_syn'"):
        jb.mask(params, wrong)
    with pytest.raises(TypeError, match="'lif.bias'.*must be a bool, got float"):
        jb.mask(params, jax.tree.map(lambda _: 1.0, params))
    with pytest.raises(TypeError, match="'lif.bias'.*shape \\(2,\\)"):
        jb.mask(params, jax.tree.map(lambda x: x > 0, params))
    with pytest.raises(TypeError, match="got None"):
        jb.mask(params, None)


def test_bool_tree_selector_cannot_be_traced():
    params = _params()
    selected = jax.tree.map(lambda x: jnp.asarray(x.ndim == 2), params)
    with pytest.raises(TypeError, match="traced"):
        jax.jit(lambda m: jb.mask(params, m))(selected)


def test_masks_of_filtered_and_full_models_apply_to_each_others_bounds():
    model = Block(jnp.ones(2), jnp.zeros(2))
    params = eqx.filter(model, eqx.is_array)  # act -> None
    # A mask built on the filtered params: its None means "not selected".
    m = jb.mask(params, "*")
    assert m.act is None
    full_lower, _ = jb.make_bounds(model)
    new = jb.set_where(full_lower, m, 0.0)
    assert (new.tau_syn, new.bias, new.act) == (0.0, 0.0, None)
    # A mask built on the full model, applied to bounds with a hole: the hole stays.
    params_lower, _ = jb.make_bounds(params)
    new = jb.set_where(params_lower, jb.mask(model, "*"), 0.0)
    assert (new.tau_syn, new.bias, new.act) == (0.0, 0.0, None)


def test_equinox_module_mask_is_read_as_a_tree_although_modules_are_callable():
    class Cell(eqx.Module):
        tau_syn: object
        bias: object

        def __call__(self, x):
            return x * self.tau_syn + self.bias

    cell = Cell(jnp.ones(2), jnp.zeros(2))
    selected = Cell(tau_syn=True, bias=False)
    assert callable(selected)
    m = jb.mask(cell, selected)
    assert isinstance(m, Cell) and (m.tau_syn, m.bias) == (True, False)
    lower, _ = jb.make_bounds(cell)
    assert jb.set_where(lower, selected, 0.0).tau_syn == 0.0


def test_selectors_never_select_leaves_that_are_not_parameters():
    block = Block(jnp.ones(2), jnp.zeros(2))
    assert jb.mask(block, "*").act is False
    asked = []
    m = jb.mask(block, lambda path, leaf: asked.append(path) or True)
    assert (m.tau_syn, m.bias, m.act) == (True, True, False)
    assert asked == ["tau_syn", "bias"]  # the predicate never sees the function


def test_bool_leaves_are_never_selected_although_bool_is_an_int():
    tree = {
        "flag": True,
        "off": False,
        "np_flag": np.bool_(True),
        "jax_flag": jnp.array(True),
        "n": 3,  # an int bound value: selectable
        "x": 0.5,
        "w": jnp.ones(2),
    }
    picked = ("n", "w", "x")
    want = {k: k in picked for k in tree}
    asked = []
    assert jb.mask(tree, "*") == want
    assert jb.mask(tree, lambda path, leaf: asked.append(path) or True) == want
    assert sorted(asked) == list(picked)  # the predicate never sees a bool
    for where in ("*", lambda path, leaf: True):
        new = jb.set_where(tree, where, 7.0)
        assert all(new[k] is tree[k] for k in tree if k not in picked)
        assert all(new[k] == 7.0 for k in picked)


def test_broad_selectors_on_an_mlp_bound_tree_bound_parameters_only():
    model = eqx.nn.MLP(2, 2, 3, 1, key=jax.random.key(0))
    lower, upper = jb.make_bounds(model)
    lower = jb.set_where(lower, "*", 0.0)
    upper = jb.set_where(upper, lambda path, leaf: True, 1.0)
    assert lower.activation is None and lower.final_activation is None
    assert lower.layers[0].weight == 0.0 and upper.layers[1].bias == 1.0
    # bounds_cost accepts the result (no bound landed on a function).
    assert float(jb.bounds_cost(model, lower, upper)) > 0


def test_selecting_nothing_raises_and_lists_the_nearest_paths():
    with pytest.raises(ValueError) as info:
        jb.mask(_params(), "*tau_sin")
    msg = str(info.value)
    assert "'*tau_sin' matches no leaf" in msg
    nearest = msg.split("nearest paths: ")[1].split(", ")
    assert set(nearest[:2]) == {"'lif.tau_syn'", "'out.tau_syn'"}
    with pytest.raises(
        ValueError, match="predicate selector selects no leaf.*lif.bias"
    ):
        jb.mask(_params(), lambda path, leaf: False)
    with pytest.raises(ValueError, match="bool tree selector selects no leaf"):
        jb.mask(_params(), jax.tree.map(lambda _: False, _params()))
    with pytest.raises(ValueError, match="no leaves"):
        jb.set_where({"a": None}, "*", 0.0)
    cell = Block(jnp.ones(2), jnp.zeros(2))
    with pytest.raises(ValueError, match="bool tree selector selects no leaf"):
        jb.mask(cell, Block(False, False, False))  # a Module, yet not a predicate


def test_mask_keeps_none_holes_and_drives_optax_masked():
    model = eqx.nn.MLP(2, 2, 3, 1, key=jax.random.key(1))
    params, _ = eqx.partition(model, eqx.is_array)
    m = jb.mask(params, "*bias")
    assert jax.tree_util.tree_structure(m) == jax.tree_util.tree_structure(params)
    assert m.activation is None and m.layers[0].bias is True
    opt = optax.masked(optax.sgd(0.5), m)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    for path, u in zip(jb.paths(updates), jax.tree_util.tree_leaves(updates)):
        expected = -0.5 if path.endswith("bias") else 1.0  # masked-out: passed through
        np.testing.assert_array_equal(u, np.full(u.shape, expected))


# ------------------------------------------------------------------------ set_where


def test_set_where_replaces_exactly_the_selected_leaves():
    params = _params()
    lower, upper = jb.make_bounds(params)
    lower = jb.set_where(lower, "*tau_*", 0.0)
    upper = jb.set_where(upper, "out.tau_syn", 0.5)
    assert lower == {
        "lif": {"bias": -math.inf, "tau_mem": 0.0, "tau_syn": 0.0},
        "out": {"tau_syn": 0.0, "weight": -math.inf},
    }
    assert upper == {
        "lif": {"bias": math.inf, "tau_mem": math.inf, "tau_syn": math.inf},
        "out": {"tau_syn": 0.5, "weight": math.inf},
    }


def test_set_where_never_mutates_and_passes_other_leaves_through():
    params = _params()
    before = copy.deepcopy(params)
    new = jb.set_where(params, "lif.bias", jnp.full(2, 7.0, jnp.float16))
    assert jax.tree.all(
        jax.tree.map(lambda a, b: bool(jnp.all(a == b)), params, before)
    )
    assert new["lif"]["bias"].dtype == jnp.float16
    assert new["lif"]["tau_syn"] is params["lif"]["tau_syn"]
    assert new is not params and new["lif"] is not params["lif"]


def test_set_where_on_equinox_model_keeps_type_holes_and_static_fields():
    model = eqx.nn.Sequential(
        [eqx.nn.Linear(2, 3, key=jax.random.key(0)), eqx.nn.Lambda(jax.nn.relu)]
    )
    params, static = eqx.partition(model, eqx.is_array)
    lower, _ = jb.make_bounds(params)
    lower = jb.set_where(lower, "*.bias", -1.0)
    assert isinstance(lower, eqx.nn.Sequential)
    assert lower.layers[0].bias == -1.0 and lower.layers[0].weight == -math.inf
    assert lower.layers[1].fn is None
    assert lower.layers[0].in_features == 2  # static field kept


def test_set_where_rejects_values_that_would_change_the_structure():
    # None is one leaf here (an open bound), so it is accepted.
    assert jb.set_where(_params(), "*bias", None)["lif"]["bias"] is None
    with pytest.raises(TypeError, match="single leaf"):
        jb.set_where(_params(), "*bias", (0.0, 1.0))


def test_set_where_with_a_traced_value_under_jit_grad_and_vmap():
    params = {"tau": jnp.array([0.2, 0.9], jnp.float64), "w": jnp.ones(2, jnp.float64)}
    lower, upper = jb.make_bounds(params)

    def cost(v):
        return jb.bounds_cost(params, jb.set_where(lower, "tau", v), upper)

    # Lower bound v above 0.2 (and maybe 0.9): cost = sum exp(v - p) over p < v.
    def reference(v):
        p = np.array([0.2, 0.9])
        return np.sum(np.where(p < v, np.exp(v - p), 0.0))

    np.testing.assert_allclose(jax.jit(cost)(0.5), reference(0.5), rtol=1e-12)
    # d/dv exp(v - p) = exp(v - p): the gradient has the cost's formula.
    np.testing.assert_allclose(jax.grad(cost)(0.5), reference(0.5), rtol=1e-12)
    vs = jnp.array([0.0, 0.5, 1.0], jnp.float64)
    np.testing.assert_allclose(
        jax.vmap(cost)(vs), [reference(v) for v in [0.0, 0.5, 1.0]], rtol=1e-12
    )
    with jax.debug_nans(True):
        assert float(jax.jit(jax.grad(cost))(0.1)) == 0.0


@pytest.mark.parametrize("dtype", FLOATS)
def test_set_where_keeps_the_value_dtype_and_bounds_apply_in_every_dtype(dtype):
    params = {"tau": jnp.array([-0.5, 0.25], dtype), "w": jnp.zeros(2, dtype)}
    lower, upper = jb.make_bounds(params)
    value = jnp.zeros((), dtype)
    lower = jb.set_where(lower, "tau", value)
    assert lower["tau"] is value and lower["tau"].dtype == dtype
    cost = jb.bounds_cost(params, lower, upper)
    np.testing.assert_allclose(float(cost), math.exp(0.5), rtol=1e-2)


def test_a_glob_mask_and_set_where_through_it_give_the_hand_computed_trees():
    lower, _ = jb.make_bounds(_params())
    m = jb.mask(_params(), "*tau_syn")
    assert m == {
        "lif": {"bias": False, "tau_mem": False, "tau_syn": True},
        "out": {"tau_syn": True, "weight": False},
    }
    want = {
        "lif": {"bias": -math.inf, "tau_mem": -math.inf, "tau_syn": 0.0},
        "out": {"tau_syn": 0.0, "weight": -math.inf},
    }
    assert jb.set_where(lower, m, 0.0) == want
    assert jb.set_where(lower, "*tau_syn", 0.0) == want


# ------------------------------------------------------------- property tests

KEYS = st.sampled_from(["a", "b", "tau_syn", "tau_mem", "w", "0_Linear"])
LEAVES = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.integers(0, 3).map(lambda n: np.arange(n, dtype=np.float32)),
    st.integers(1, 3).map(lambda n: jnp.ones(n, jnp.float32)),
    st.none(),
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.dictionaries(KEYS, children, max_size=3),
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.builds(Pair, children, children),
    ),
    max_leaves=12,
)


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree, is_leaf=lambda x: x is None)


def _same(a, b):
    """Same structure and, leaf for leaf, equal values of equal types."""
    if jax.tree_util.tree_structure(a, is_leaf=lambda x: x is None) != (
        jax.tree_util.tree_structure(b, is_leaf=lambda x: x is None)
    ):
        return False
    for x, y in zip(_leaves(a), _leaves(b)):
        if type(x) is not type(y) or not np.array_equal(np.asarray(x), np.asarray(y)):
            return False
    return True


@st.composite
def tree_and_selector(draw):
    tree = draw(TREES)
    ps = jb.paths(tree)
    kind = draw(st.sampled_from(["glob", "mask", "predicate"]))
    if tree is None:  # `where=None` is rejected as a TypeError, tested above
        kind = "glob"
    if kind == "glob":
        if ps and draw(st.booleans()):
            p = draw(st.sampled_from(ps))
            where = p[: draw(st.integers(0, len(p)))] + "*"
        else:
            where = draw(st.sampled_from(["*", "*tau*", "*.0", "a*", "zzz"]))
    elif kind == "mask":
        flags = iter(draw(st.lists(st.booleans(), min_size=len(ps), max_size=len(ps))))
        where = jax.tree.map(lambda _: next(flags), tree)
    else:
        salt = draw(st.integers(0, 3))

        def where(path, leaf):
            return zlib.crc32(path.encode()) % 4 != salt

    return tree, where


@SETTINGS
@given(tree_and_selector(), st.sampled_from([123.5, np.float32(2.0), jnp.ones(2)]))
def test_property_set_where_touches_exactly_the_masked_leaves_and_never_mutates(
    case, value
):
    tree, where = case
    snapshot = copy.deepcopy(tree)
    try:
        m = jb.mask(tree, where)
    except ValueError:  # nothing selected: set_where must refuse too
        with pytest.raises(ValueError, match="select|match"):
            jb.set_where(tree, where, value)
        return
    new = jb.set_where(tree, where, value)
    assert _same(tree, snapshot)  # input untouched
    assert jax.tree_util.tree_structure(new, is_leaf=lambda x: x is None) == (
        jax.tree_util.tree_structure(tree, is_leaf=lambda x: x is None)
    )
    for old, flag, leaf in zip(_leaves(tree), _leaves(m), _leaves(new)):
        if old is None:
            assert flag is None and leaf is None
        elif flag:
            assert leaf is value
        else:
            assert flag is False and leaf is old


@SETTINGS
@given(tree_and_selector(), st.sampled_from([-1.0, jnp.zeros(3)]))
def test_property_set_where_round_trips_with_mask(case, value):
    tree, where = case
    try:
        m = jb.mask(tree, where)
    except ValueError:
        return
    assert jb.mask(tree, m) == m  # a mask selects itself
    new = jb.set_where(tree, where, value)
    # Paths do not change, so the selection on the result is the same ...
    assert jb.mask(new, m) == m
    assert jb.mask(new, where) == m  # globs and these predicates read only paths
    # ... and setting through the mask is setting through the selector.
    assert _same(jb.set_where(tree, m, value), new)
    # Every leaf these trees hold is a float, an int or a float array: "*"
    # selects them all (written independently: every non-None leaf).
    everything = jax.tree.map(lambda _: value, tree)
    assert jb.mask(tree, "*") == jax.tree.map(lambda _: True, tree)
    assert _same(jb.set_where(tree, jb.mask(tree, "*"), value), everything)
    assert _same(jb.set_where(tree, "*", value), everything)
