"""`_bounds`: make_bounds (bound templates of a params tree) and Box."""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxbounds as jb
from jaxbounds._paths import check_same_structure

from helpers import count_compilations, numpy_exp_cost, numpy_exp_grad, numpy_tree_cost


class Pair(NamedTuple):
    tau: jax.Array
    w: jax.Array


# --- make_bounds --------------------------------------------------------------


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


def test_numpy_float_arrays_and_scalars_are_parameters():
    # As jax.grad and eqx.is_inexact_array see them; NumPy ints and bools are not.
    params = {
        "w": np.array([-0.5, 0.25]),
        "s": np.float32(-1.0),
        "h": np.float16(2.5),
        "n": np.arange(3),
        "i": np.int32(3),
        "b": np.bool_(True),
    }
    lower, upper = jb.make_bounds(params)
    floats = ("w", "s", "h")
    assert lower == {k: -math.inf if k in floats else None for k in params}
    assert upper == {k: math.inf if k in floats else None for k in params}
    lower.update(w=0.0, s=0.0, h=0.0)
    upper.update(w=1.0, s=1.0, h=2.0)
    cost = jb.bounds_cost(params, lower, upper)
    want = numpy_tree_cost(params, lower, upper)
    np.testing.assert_allclose(want, 2 * math.exp(0.5) + math.e, rtol=1e-12)  # by hand
    np.testing.assert_allclose(float(cost), want, rtol=1e-6)
    grads = jax.grad(jb.bounds_cost)(
        {k: params[k] for k in floats},
        *({k: t[k] for k in floats} for t in (lower, upper)),
    )
    for k in floats:
        np.testing.assert_allclose(
            np.asarray(grads[k], np.float64),
            numpy_exp_grad(params[k], lower[k], upper[k]),
            rtol=1e-3,
            err_msg=k,
        )


# --- Box: the static pattern through jax.jit -----------------------------------


def _eqns(jaxpr) -> int:
    """Equations of a jaxpr, those of nested jaxprs (inner jit calls) included."""
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _eqns(inner)
    return n


def test_box_keeps_unbounded_leaves_free_of_work_under_jit():
    def tree(n_free):
        params = {"tau": jnp.ones(3)} | {f"w{i}": jnp.ones(4) for i in range(n_free)}
        lower, upper = jb.make_bounds(params)
        lower["tau"], upper["tau"] = 0.0, 2.0
        return params, lower, upper

    def size(n_free, boxed):
        params, lower, upper = tree(n_free)
        if boxed:
            f = lambda p, box: jb.bounds_cost(p, *box)  # noqa: E731
            return _eqns(jax.make_jaxpr(f)(params, jb.Box(lower, upper)).jaxpr)
        return _eqns(jax.make_jaxpr(jb.bounds_cost)(params, lower, upper).jaxpr)

    assert size(1, boxed=True) == size(30, boxed=True)  # no operation per free leaf
    assert size(30, boxed=False) > size(1, boxed=False)  # plain arguments: traced


def test_box_values_are_arguments_and_can_be_vmapped():
    params = {"tau": jnp.array([-0.5, 0.25]), "w": jnp.ones(2)}
    cost = jax.jit(lambda p, box: jb.bounds_cost(p, *box))
    with count_compilations() as compiled:
        for lo in (0.0, 0.1, -1.0):
            got = cost(
                params, jb.Box({"tau": lo, "w": -math.inf}, {"tau": 1.0, "w": None})
            )
            np.testing.assert_allclose(
                float(got), numpy_exp_cost(params["tau"], lo, 1.0), rtol=1e-12
            )
    assert len(compiled) <= 1
    lows, ups = jnp.array([0.0, 0.3]), jnp.array([1.0, 0.5])
    boxes = jb.Box({"tau": lows, "w": -math.inf}, {"tau": ups, "w": None})
    costs = jax.vmap(cost, in_axes=(None, 0))(params, boxes)
    for b in range(2):
        want = numpy_exp_cost(params["tau"], float(lows[b]), float(ups[b]))
        np.testing.assert_allclose(costs[b], want, rtol=1e-12)


def test_box_round_trips_its_trees_and_pattern():
    lower = {"a": -math.inf, "b": 0.5, "c": None, "d": jnp.zeros(2)}
    upper = {"a": math.inf, "b": math.inf, "c": None, "d": 3.0}
    box = jb.Box(lower, upper)
    leaves, treedef = jax.tree_util.tree_flatten(box)
    assert len(leaves) == 3  # 0.5, zeros(2), 3.0: the infinities and None are static
    lo, up = jax.tree_util.tree_unflatten(treedef, leaves)
    assert lo["a"] == -math.inf and lo["c"] is None and up["b"] == math.inf
    assert lo["b"] == 0.5 and up["d"] == 3.0
