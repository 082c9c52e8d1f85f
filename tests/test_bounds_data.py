"""Bounds are data: jit arguments, changing values, vmap over bounds, every leaf kind.

The numbers are checked against the NumPy reference in `helpers`, never
against jaxbounds itself.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbounds as jb

from helpers import (
    FLOATS,
    TOL,
    count_compilations,
    numpy_exp_cost,
    numpy_exp_grad,
)


def mixed_params(dtype):
    """A float leaf among leaves that are not parameters."""
    return {
        "x": jnp.array([-0.5, 0.25, 1.75], dtype),
        "n": jnp.array(3, jnp.int32),
        "flag": jnp.array(True),
        "z": jnp.array([1 + 2j, -3j], jnp.complex64),
        "hole": None,
    }


def mixed_bounds(dtype):
    lower = {"x": 0.0, "n": -math.inf, "flag": -math.inf, "z": -math.inf, "hole": None}
    upper = {"x": 1.0, "n": math.inf, "flag": math.inf, "z": math.inf, "hole": None}
    return lower, upper


# --- jit with bounds as arguments ---------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_jit_with_bound_arguments_on_int_bool_complex_and_none_leaves(dtype):
    params = mixed_params(dtype)
    lower, upper = mixed_bounds(dtype)
    want = numpy_exp_cost(params["x"], 0.0, 1.0)
    want_grad = numpy_exp_grad(params["x"], 0.0, 1.0)

    @jax.jit
    def value_and_grad(params, lower, upper):
        def loss(x):
            return jb.bounds_cost({**params, "x": x}, lower, upper)

        return jax.value_and_grad(loss)(params["x"])

    cost, grad = value_and_grad(params, lower, upper)
    np.testing.assert_allclose(float(cost), want, rtol=TOL[dtype])
    np.testing.assert_allclose(np.asarray(grad, np.float64), want_grad, rtol=TOL[dtype])
    # equinox's idiom: filter_jit / filter_grad over the whole tree.
    cost, grads = eqx.filter_jit(eqx.filter_value_and_grad(jb.bounds_cost))(
        params, lower, upper
    )
    np.testing.assert_allclose(float(cost), want, rtol=TOL[dtype])
    np.testing.assert_allclose(
        np.asarray(grads["x"], np.float64), want_grad, rtol=TOL[dtype]
    )
    clipped = jax.jit(jb.clip_to_bounds)(params, lower, upper)
    np.testing.assert_array_equal(
        np.asarray(clipped["x"], np.float64),
        np.clip(np.asarray(params["x"], float), 0, 1),
    )
    assert clipped["n"] is not None and int(clipped["n"]) == 3
    np.testing.assert_array_equal(clipped["z"], params["z"])


@pytest.mark.parametrize("dtype", FLOATS)
def test_optax_and_bijections_take_bounds_as_jit_arguments(dtype):
    params = mixed_params(dtype)
    del params["hole"]
    lower, upper = mixed_bounds(dtype)
    del lower["hole"], upper["hole"]
    grads = jax.tree.map(jnp.zeros_like, params)

    @jax.jit
    def step(params, lower, upper):
        tx = optax.chain(
            jb.add_bounds_penalty(lower, upper, 0.5),
            optax.sgd(0.0),
            jb.project_to_bounds(lower, upper),
        )
        updates, _ = tx.update(grads, tx.init(params), params)
        raw = jb.unconstrain(jb.clip_to_bounds(params, lower, upper), lower, upper)
        return optax.apply_updates(params, updates), jb.constrain(raw, lower, upper)

    new, back = step(params, lower, upper)
    x = np.asarray(params["x"], np.float64)
    np.testing.assert_array_equal(np.asarray(new["x"], np.float64), np.clip(x, 0, 1))
    assert int(new["n"]) == 3 and bool(new["flag"])
    np.testing.assert_array_equal(new["z"], params["z"])
    inside = np.asarray(back["x"], np.float64)
    assert np.all((inside >= 0) & (inside <= 1))
    np.testing.assert_allclose(inside, np.clip(x, 0, 1), atol=10 * TOL[dtype])


def test_a_traced_bound_on_a_non_parameter_is_ignored_a_concrete_one_is_an_error():
    params = {"x": jnp.array([-1.0]), "n": jnp.array(2), "z": jnp.array([1j])}
    traced = jax.jit(jb.bounds_cost)(
        params, {"x": 0.0, "n": 5.0, "z": 1.0}, {"x": 1.0, "n": None, "z": None}
    )
    np.testing.assert_allclose(float(traced), math.e, rtol=1e-12)
    with pytest.raises(TypeError, match=r"finite bound on 'n'.*int"):
        jb.bounds_cost(
            params, {"x": 0.0, "n": 5.0, "z": None}, {"x": 1.0, "n": None, "z": None}
        )
    with pytest.raises(TypeError, match=r"finite bound on 'z'.*complex"):
        jb.clip_to_bounds(
            params,
            {"x": 0.0, "n": None, "z": None},
            {"x": 1.0, "n": None, "z": jnp.ones(1)},
        )
    # A concrete array of the open side's infinity is no bound at all.
    ok = jb.bounds_cost(
        params,
        {"x": 0.0, "n": None, "z": jnp.full(1, -jnp.inf)},
        {"x": 1.0, "n": None, "z": None},
    )
    np.testing.assert_allclose(float(ok), math.e, rtol=1e-12)


# --- complex leaves are not parameters ----------------------------------------


def test_unbounded_complex_leaves_are_skipped_everywhere():
    params = {"w": jnp.array([2.0, -1.0]), "z": jnp.array([1 + 1j, 2 - 1j])}
    lower, upper = jb.make_bounds(params)
    assert lower["z"] is None and upper["z"] is None
    lower["w"], upper["w"] = 0.0, 1.0
    np.testing.assert_allclose(float(jb.bounds_cost(params, lower, upper)), 2 * math.e)
    assert jb.clip_to_bounds(params, lower, upper)["z"] is params["z"]
    report = jb.violations(params, lower, upper)
    assert [r.path for r in report.rows] == ["w"] and report["w"].below == 1
    inside = jb.clip_to_bounds(params, lower, upper)
    raw = jb.unconstrain(inside, lower, upper)
    assert raw["z"] is params["z"]
    assert jb.constrain(raw, lower, upper)["z"] is params["z"]
    tx = jb.project_to_bounds(lower, upper)
    grads = {"w": jnp.zeros(2), "z": jnp.zeros(2, jnp.complex64)}
    updates, _ = tx.update(grads, tx.init(params), params)
    assert updates["z"] is grads["z"]


def test_a_bounded_complex_leaf_raises_naming_its_path():
    params = {"layer": {"z": jnp.array([1 + 1j])}}
    for fn in (jb.bounds_cost, jb.clip_to_bounds, jb.violations, jb.constrain):
        with pytest.raises(TypeError, match=r"'layer\.z'.*complex"):
            fn(params, {"layer": {"z": 0.0}}, {"layer": {"z": None}})


# --- vmap over bounds ---------------------------------------------------------


def test_vmap_over_bounds_matches_numpy_per_batch_member():
    params = {"tau": jnp.array([0.01, 0.05, 0.2]), "w": jnp.ones(2)}
    lows = jnp.array([0.0, 0.02, 0.1, 0.3])
    ups = jnp.array([0.1, 0.04, 0.15, 1.0])
    lower = {"tau": lows, "w": -math.inf}
    upper = {"tau": ups, "w": math.inf}
    axes = ({"tau": 0, "w": None},) * 2
    cost = jax.vmap(lambda lo, up: jb.bounds_cost(params, lo, up), in_axes=axes)
    grad = jax.vmap(
        lambda lo, up: jax.grad(jb.bounds_cost)(params, lo, up), in_axes=axes
    )
    clip = jax.vmap(lambda lo, up: jb.clip_to_bounds(params, lo, up), in_axes=axes)
    costs, grads, clipped = cost(lower, upper), grad(lower, upper), clip(lower, upper)
    for b, (lo, up) in enumerate(zip(np.asarray(lows), np.asarray(ups))):
        np.testing.assert_allclose(
            costs[b], numpy_exp_cost(params["tau"], lo, up), rtol=1e-12
        )
        np.testing.assert_allclose(
            grads["tau"][b], numpy_exp_grad(params["tau"], lo, up), rtol=1e-12
        )
        np.testing.assert_array_equal(clipped["tau"][b], np.clip(params["tau"], lo, up))
        np.testing.assert_array_equal(grads["w"][b], np.zeros(2))


def test_vmap_over_bounds_of_the_optax_transformations():
    params = {"tau": jnp.array([0.5, -0.5])}
    grads = {"tau": jnp.array([1.0, -1.0])}

    def step(lo, up):
        tx = optax.chain(
            jb.add_bounds_penalty({"tau": lo}, {"tau": up}, 1.0),
            optax.sgd(0.1),
            jb.project_to_bounds({"tau": lo}, {"tau": up}),
        )
        updates, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, updates)["tau"]

    lows, ups = jnp.array([0.0, -1.0]), jnp.array([1.0, 0.3])
    got = jax.vmap(step)(lows, ups)
    for b, (lo, up) in enumerate(zip(np.asarray(lows), np.asarray(ups))):
        p = np.asarray(params["tau"], np.float64)
        g = np.asarray(grads["tau"], np.float64) + numpy_exp_grad(params["tau"], lo, up)
        want = np.clip(p - 0.1 * g, lo, up)
        np.testing.assert_allclose(got[b], want, rtol=1e-12)


# --- no recompilation ---------------------------------------------------------


def test_forty_eager_calls_with_changing_float_bounds_compile_nothing():
    params = {"tau": jnp.array([0.01, 0.05, 0.2]), "w": jnp.ones(3), "n": 2}
    lower, upper = jb.make_bounds(params)
    inside = {"tau": jnp.array([0.3, 0.4, 0.45]), "w": jnp.ones(3), "n": 2}
    grads = jax.tree.map(jnp.zeros_like, {"tau": params["tau"], "w": params["w"]})

    def run(lo, up):
        lower["tau"], upper["tau"] = lo, up
        out = [
            jb.bounds_cost(params, lower, upper),
            jax.grad(jb.bounds_cost)({"tau": params["tau"]}, {"tau": lo}, {"tau": up}),
            jb.clip_to_bounds(params, lower, upper),
            jb.violations(params, lower, upper).ok,
            jb.constrain(params, lower, upper),
            jb.unconstrain(inside, lower, upper),
        ]
        for tx in (
            jb.add_bounds_penalty({"tau": lo, "w": None}, {"tau": up, "w": None}),
            jb.project_to_bounds({"tau": lo, "w": None}, {"tau": up, "w": None}),
        ):
            out.append(
                tx.update(
                    grads, tx.init(grads), {"tau": params["tau"], "w": params["w"]}
                )
            )
        return out

    run(0.1, 0.5)  # compile once
    with count_compilations() as compiled:
        for i in range(40):
            run(0.1 + i * 1e-3, 0.5 + i * 1e-2)
    assert compiled == []
    assert float(jb.bounds_cost(params, {"tau": 0.3, "w": None, "n": None}, upper)) > 0


def test_the_counter_does_see_a_compilation():
    with count_compilations() as compiled:
        jax.jit(lambda x: x * 3.5 + 1)(jnp.ones(7))
    assert compiled


# --- traced infinities --------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_traced_infinite_bounds_cost_nothing_and_give_no_nan(dtype):
    params = {"x": jnp.array([-1e4, 0.5, 1e4], dtype)}
    lower, upper = {"x": -jnp.inf}, {"x": jnp.inf}
    with jax.debug_nans(True):
        cost, grads = jax.jit(jax.value_and_grad(jb.bounds_cost))(params, lower, upper)
        clipped = jax.jit(jb.clip_to_bounds)(params, lower, upper)
        raw = jax.jit(jb.constrain)(params, lower, upper)
        back = jax.jit(jb.unconstrain)(params, lower, upper)
        one_sided = jax.jit(jax.grad(jb.bounds_cost))(params, {"x": 0.0}, upper)
    assert float(cost) == 0.0
    np.testing.assert_array_equal(np.asarray(grads["x"], np.float64), np.zeros(3))
    for out in (clipped, raw, back):
        np.testing.assert_array_equal(out["x"], params["x"])
    assert np.all(np.isfinite(np.asarray(one_sided["x"], np.float64)))
    assert float(one_sided["x"][0]) < 0 and float(one_sided["x"][2]) == 0


# --- structure errors in words ------------------------------------------------


def test_missing_and_extra_entries_are_named_in_words():
    params = {"lif": {"tau_mem": jnp.ones(1), "tau_syn": jnp.ones(1)}}
    lower = {"lif": {"tau_mem": 0.0}}
    with pytest.raises(
        ValueError, match=r"`lower` has no entry for 'lif\.tau_syn'"
    ) as e:
        jb.bounds_cost(params, lower, jb.make_bounds(params)[1])
    assert "PyTreeDef" not in str(e.value)
    upper = {"lif": {"tau_mem": 1.0, "tau_syn": 1.0}, "bias": 1.0}
    with pytest.raises(
        ValueError, match=r"`upper` has 'bias', which params does not have"
    ):
        jb.clip_to_bounds(params, jb.make_bounds(params)[0], upper)


def test_a_bound_for_a_whole_subtree_is_explained():
    params = {"layer": {"w": jnp.ones(1), "b": jnp.ones(1)}}
    with pytest.raises(
        ValueError, match=r"'layer' is a subtree.*set_where\(lower, 'layer\.\*'"
    ):
        jb.bounds_cost(params, {"layer": 0.0}, jb.make_bounds(params)[1])


def test_container_type_differences_are_said_without_treedefs():
    class Pair(eqx.Module):
        a: jax.Array
        b: jax.Array

    params = {"m": Pair(jnp.ones(1), jnp.ones(1))}
    with pytest.raises(
        ValueError, match=r"at 'm', params holds a Pair and `lower` holds a dict"
    ) as e:
        jb.bounds_cost(params, {"m": {"a": 0.0, "b": 0.0}}, jb.make_bounds(params)[1])
    assert "PyTreeDef" not in str(e.value)


def test_bounds_made_inside_optax_masked_are_explained():
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    seen = {}

    def grab():
        def init(p):
            seen["p"] = p
            return optax.EmptyState()

        return optax.GradientTransformation(init, lambda u, s, p=None: (u, s))

    optax.masked(grab(), {"a": True, "b": False}).init(params)
    lower, upper = jb.make_bounds(seen["p"])  # a tree with MaskedNode in it
    with pytest.raises(ValueError, match=r"MaskedNode at 'b'.*optax\.masked") as e:
        jb.bounds_cost(params, lower, jb.make_bounds(params)[1])
    assert "PyTreeDef" not in str(e.value)


# --- zero-width boxes ---------------------------------------------------------


def test_zero_width_boxes_are_accepted_everywhere(tmp_path):
    params = {"fixed": jnp.array([0.25, 0.5, 0.75]), "free": jnp.ones(1)}
    lower, upper = jb.make_bounds(params)
    lower["fixed"], upper["fixed"] = 0.5, 0.5
    np.testing.assert_allclose(
        float(jb.bounds_cost(params, lower, upper)), 2 * math.exp(0.25), rtol=1e-12
    )
    np.testing.assert_array_equal(
        jb.clip_to_bounds(params, lower, upper)["fixed"], [0.5] * 3
    )
    np.testing.assert_array_equal(
        jb.constrain(params, lower, upper)["fixed"], [0.5] * 3
    )
    jb.save_bounds(tmp_path / "b.json", lower, upper)
    lo, up = jb.load_bounds(tmp_path / "b.json", like=params)
    assert lo["fixed"] == up["fixed"] == 0.5
    tx = optax.chain(optax.sgd(1.0), jb.project_to_bounds(lower, upper))
    grads = {"fixed": jnp.array([1.0, -1.0, 0.0]), "free": jnp.ones(1)}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(
        optax.apply_updates(params, updates)["fixed"], [0.5] * 3
    )


# --- validation branches ------------------------------------------------------


@pytest.mark.parametrize(
    "lower, upper, error, match",
    [
        (True, 1.0, TypeError, r"lower bound at 'x' is a bool"),
        (0.0, np.bool_(True), TypeError, r"upper bound at 'x' is a bool"),
        (math.nan, 1.0, ValueError, r"lower bound at 'x' is NaN"),
        (math.inf, None, ValueError, r"lower bound at 'x' is inf: no value"),
        (None, -math.inf, ValueError, r"upper bound at 'x' is -inf: no value"),
        (2.0, 1.0, ValueError, r"lower > upper at 'x': 2.0 > 1.0"),
        (np.float32(0.0), 1, None, None),  # NumPy and int scalars are numbers
        ("0", 1.0, TypeError, r"lower bound at 'x' must be a float, an array or None"),
        (jnp.zeros(3, jnp.complex64), 1.0, TypeError, r"dtype complex64.*real"),
        (jnp.zeros((2, 3)), 1.0, ValueError, r"shape \(2, 3\).*\(3,\)"),
        (jnp.zeros((1, 3)), 1.0, ValueError, r"shape \(1, 3\).*\(3,\)"),
        (jnp.array([0.0, jnp.nan, 0.0]), 1.0, ValueError, r"'x' contains NaN"),
        (None, jnp.array([1.0, -jnp.inf, 1.0]), ValueError, r"lower > upper at 'x'"),
    ],
)
def test_every_bound_validation_branch(lower, upper, error, match):
    params = {"x": jnp.array([0.5, 0.5, 0.5])}
    if error is None:
        assert float(jb.bounds_cost(params, {"x": lower}, {"x": upper})) == 0.0
        return
    with pytest.raises(error, match=match):
        jb.bounds_cost(params, {"x": lower}, {"x": upper})


def test_the_crossing_element_named_is_the_first_that_crosses():
    params = {"w": jnp.zeros((2, 3))}
    lower = {"w": jnp.array([[0.0, 0.0, 5.0], [9.0, 0.0, 0.0]])}
    upper = {"w": jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])}
    with pytest.raises(
        ValueError, match=r"lower > upper at 'w', element \(0, 2\): 5.0 > 1.0"
    ):
        jb.bounds_cost(params, lower, upper)


def test_paths_name_every_key_kind():
    class Node(eqx.Module):
        attr: jax.Array

    # FlattenedIndexKey: a pytree registered without keys (here, a custom class).
    @jax.tree_util.register_pytree_node_class
    class Plain:
        def __init__(self, x):
            self.x = x

        def tree_flatten(self):
            return (self.x,), None

        @classmethod
        def tree_unflatten(cls, aux, children):
            return cls(*children)

    tree = {"d": [Node(jnp.ones(1)), (jnp.ones(1),)], "p": Plain(jnp.ones(1))}
    assert jb.paths(tree) == ["d.0.attr", "d.1.0", "p.0"]
    lower = jax.tree.map(lambda _: 0.0, tree)
    upper = {"d": [Node(1.0), (1.0,)], "p": Plain(-1.0)}
    with pytest.raises(ValueError, match=r"lower > upper at 'p\.0'"):
        jb.bounds_cost(tree, lower, upper)
