"""field / make_bounds / family_mask on equinox models, and the how-to's network."""

import ast
import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from howto_printed import HOWTO_PRINTED

import jaxbounds as jb
from jaxbounds._declare import FAMILY_KEY, LOWER_KEY, UPPER_KEY

INF = math.inf


# ------------------------------------------------------------------ field


def test_field_writes_bounds_and_family_into_the_metadata():
    f = jb.field(lower=0, upper=0.5, family="taus", metadata={"doc": "tau"})
    assert f.metadata == {
        "doc": "tau",
        LOWER_KEY: 0.0,
        UPPER_KEY: 0.5,
        FAMILY_KEY: "taus",
    }
    assert type(f.metadata[LOWER_KEY]) is float
    assert dict(jb.field(lower=-1.0).metadata) == {LOWER_KEY: -1.0}
    assert dict(jb.field().metadata) == {}


def test_field_passes_other_options_to_eqx_field():
    class M(eqx.Module):
        x: jax.Array = jb.field(lower=0.0, converter=jnp.asarray)
        n: int = jb.field(static=True, default=3)

    m = M(x=[1.0, 2.0])
    assert isinstance(m.x, jax.Array) and m.n == 3
    assert jb.paths(m) == ["x"]


def test_field_rejects_declarations_that_could_never_apply():
    with pytest.raises(ValueError, match="lower > upper"):
        jb.field(lower=1.0, upper=0.0)
    with pytest.raises(ValueError, match="no value satisfies"):
        jb.field(lower=INF)
    with pytest.raises(ValueError, match="NaN"):
        jb.field(upper=math.nan)
    with pytest.raises(ValueError, match="static field"):
        jb.field(lower=0.0, static=True)
    with pytest.raises(TypeError, match="real number.*set_where"):
        jb.field(lower=jnp.zeros(2))
    with pytest.raises(TypeError, match="bool"):
        jb.field(upper=True)
    with pytest.raises(ValueError, match="no value satisfies"):
        jb.field(upper=-INF)
    # A zero-width box is a fixed parameter: accepted.
    assert dict(jb.field(lower=0.5, upper=0.5).metadata) == {
        LOWER_KEY: 0.5,
        UPPER_KEY: 0.5,
    }
    with pytest.raises(TypeError, match="family.*str"):
        jb.field(family=["taus"])
    with pytest.raises(ValueError, match="conflicts"):
        jb.field(lower=0.0, metadata={LOWER_KEY: 1.0})


def test_field_accepts_metadata_that_repeats_its_declaration_and_refuses_another():
    # A field rebuilt from another field's metadata repeats the same values.
    same = {LOWER_KEY: 0.0, UPPER_KEY: 0.5, FAMILY_KEY: "taus", "doc": "tau"}
    f = jb.field(lower=0.0, upper=0.5, family="taus", metadata=same)
    assert dict(f.metadata) == same
    assert dict(jb.field(lower=0.0, metadata={LOWER_KEY: 0.0}).metadata) == {
        LOWER_KEY: 0.0
    }

    class M(eqx.Module):
        x: jax.Array = jb.field(lower=0.0, metadata={LOWER_KEY: 0.0})

    assert jb.make_bounds(M(jnp.ones(2)))[0].x == 0.0
    with pytest.raises(ValueError, match=r"metadata\['jaxbounds_lower'\] conflicts"):
        jb.field(lower=0.0, metadata={LOWER_KEY: 0.5})
    with pytest.raises(ValueError, match=r"metadata\['jaxbounds_family'\] conflicts"):
        jb.field(family="taus", metadata={FAMILY_KEY: "weights"})


# ------------------------------------------------------- make_bounds honours field


class Syn(eqx.Module):
    tau_syn: jax.Array = jb.field(lower=0.0, upper=0.5, family="taus")
    gain: jax.Array = jb.field(upper=10.0)
    w: jax.Array = jb.field(default=None)


class Layer(eqx.Module):
    syn: Syn = jb.field(lower=-1.0, family="synapse")
    bias: jax.Array = jb.field(default_factory=lambda: jnp.zeros(2))


def test_make_bounds_starts_from_the_declared_bounds():
    syn = Syn(tau_syn=jnp.full(2, 0.02), gain=jnp.ones(2), w=jnp.ones((2, 2)))
    lower, upper = jb.make_bounds(syn)
    assert (lower.tau_syn, lower.gain, lower.w) == (0.0, -INF, -INF)
    assert (upper.tau_syn, upper.gain, upper.w) == (0.5, 10.0, INF)


def test_innermost_declaration_wins_and_outer_ones_cover_the_rest():
    layer = Layer(syn=Syn(jnp.ones(2), jnp.ones(2), jnp.ones(2)))
    lower, upper = jb.make_bounds(layer)
    # Layer.syn declares lower=-1 for everything inside, Syn.tau_syn overrides.
    assert (lower.syn.tau_syn, lower.syn.gain, lower.syn.w) == (0.0, -1.0, -1.0)
    assert lower.bias == -INF
    assert (upper.syn.tau_syn, upper.syn.gain, upper.syn.w) == (0.5, 10.0, INF)


def test_none_holes_stay_none_in_declared_bounds():
    layer = Layer(syn=Syn(jnp.ones(2), jnp.ones(2)))  # w=None
    lower, upper = jb.make_bounds(layer)
    assert lower.syn.w is None and upper.syn.w is None
    params = eqx.filter(layer, lambda x: x is not layer.syn.gain)
    lower, upper = jb.make_bounds(params)
    assert lower.syn.gain is None and upper.syn.gain is None
    assert (lower.syn.tau_syn, upper.syn.tau_syn) == (0.0, 0.5)


def test_declared_bounds_are_enforced_by_bounds_cost():
    syn = Syn(tau_syn=jnp.array([-0.25, 0.75]), gain=jnp.array([11.0, 1.0]))
    cost = jb.bounds_cost(syn, *jb.make_bounds(syn))
    # exp(violation) per violating element, as in Rockpool's bounds_cost.
    np.testing.assert_allclose(
        float(cost), math.exp(0.25) + math.exp(0.25) + math.exp(1.0), rtol=1e-12
    )


# ------------------------------------------------------------------ family_mask


class Leaf(eqx.Module):
    tau: jax.Array = jb.field(family="taus")
    decay: jax.Array = jb.field(family="decays")
    bias: jax.Array = jb.field(default=None)


def test_family_mask_goes_through_nested_modules_lists_dicts_and_sequential():
    def leaf(x):
        return Leaf(jnp.full(2, x), jnp.full(2, 0.5), jnp.zeros(2))

    model = eqx.nn.Sequential(
        [
            leaf(0.1),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Sequential([leaf(0.2), leaf(0.3)]),
        ]
    )
    tree = {"net": model, "extra": [leaf(0.4)], "w": jnp.ones(3)}
    m = jb.family_mask(tree, "taus")
    assert [p for p, f in zip(jb.paths(m), jax.tree.leaves(m)) if f] == [
        "extra.0.tau",
        "net.layers.0.tau",
        "net.layers.2.layers.0.tau",
        "net.layers.2.layers.1.tau",
    ]
    assert jax.tree_util.tree_structure(m) == jax.tree_util.tree_structure(tree)
    assert m["net"].layers[1].fn is False and m["w"] is False


def test_family_declared_on_a_submodule_covers_it_unless_overridden():
    layer = Layer(syn=Syn(jnp.ones(2), jnp.ones(2), None))
    m = jb.family_mask(layer, "synapse")
    assert (m.syn.tau_syn, m.syn.gain, m.syn.w, m.bias) == (False, True, None, False)
    assert jb.family_mask(layer, "taus").syn.tau_syn is True


def test_family_mask_selects_parameters_for_eqx_filter_and_optax_masked():
    layer = Layer(syn=Syn(jnp.full(2, 0.02), jnp.ones(2), jnp.ones(2)))
    params = eqx.filter(layer, eqx.is_array)
    m = jb.family_mask(params, "taus")
    taus = eqx.filter(params, m)  # Rockpool's net.parameters("taus")
    assert jb.paths(taus) == ["syn.tau_syn"]
    opt = optax.masked(optax.sgd(0.1), m)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates.syn.tau_syn, [-0.1, -0.1])
    np.testing.assert_allclose(updates.syn.gain, [1.0, 1.0])  # passed through


def test_unknown_family_lists_the_declared_ones():
    layer = Layer(syn=Syn(jnp.ones(2), jnp.ones(2), None))
    with pytest.raises(ValueError, match="'tau'.*declared families: 'taus', 'synapse'"):
        jb.family_mask(layer, "tau")
    with pytest.raises(ValueError, match="no field of the model declares a family"):
        jb.family_mask({"w": jnp.ones(2)}, "taus")
    with pytest.raises(TypeError, match="str"):
        jb.family_mask(layer, 3)


# ------------------------------------- the how-to's nested network, with equinox


class Linear(eqx.Module):
    weight: jax.Array

    def __init__(self, n_in, n_out, *, key):
        self.weight = jax.random.normal(key, (n_in, n_out))

    def __call__(self, x, *, key=None):
        return x @ self.weight


class LIF(eqx.Module):
    """One step of a LIF neuron, with decay or time-constant parameters."""

    alpha: jax.Array | None = jb.field(family="decays")
    beta: jax.Array | None = jb.field(family="decays")
    tau_mem: jax.Array | None = jb.field(family="taus")
    tau_syn: jax.Array | None = jb.field(family="taus")
    bias: jax.Array = jb.field()
    threshold: jax.Array = jb.field()
    dt: float = jb.field(static=True, default=1e-3)

    def __init__(self, n, leak_mode="taus"):
        if leak_mode == "decays":
            self.alpha, self.beta = jnp.full(n, 0.5), jnp.full((n, 1), 0.5)
            self.tau_mem = self.tau_syn = None
        else:
            self.tau_mem, self.tau_syn = jnp.full(n, 0.02), jnp.full((n, 1), 0.02)
            self.alpha = self.beta = None
        self.bias, self.threshold = jnp.zeros(n), jnp.ones(n)

    def __call__(self, x, *, key=None):
        if self.alpha is not None:
            alpha, beta = self.alpha, self.beta[:, 0]
        else:
            alpha = jnp.exp(-self.dt / self.tau_mem)
            beta = jnp.exp(-self.dt / self.tau_syn[:, 0])
        i_syn = (1 - beta) * x
        v = (1 - alpha) * i_syn + self.bias
        return jax.nn.sigmoid(v - self.threshold)


class Residual(eqx.Module):
    layers: list

    def __init__(self, *layers):
        self.layers = list(layers)

    def __call__(self, x, *, key=None):
        y = x
        for layer in self.layers:
            y = layer(y)
        return x + y


def howto_network():
    k = jax.random.split(jax.random.key(0), 3)
    return eqx.nn.Sequential(
        [
            Linear(2, 3, key=k[0]),
            LIF(3, leak_mode="decays"),
            Residual(Linear(3, 3, key=k[1]), LIF(3, leak_mode="decays")),
            Linear(3, 5, key=k[2]),
            LIF(5, leak_mode="taus"),
        ]
    )


def printed_leaves(text):
    """``[(path, value)]`` of each printed dict, in printed order.

    Rockpool's module names ``2_TorchResidual`` become their index ``2``.
    """

    def walk(d, prefix):
        for k, v in d.items():
            key = re.sub(r"^(\d+)_\w+$", r"\1", k)
            if isinstance(v, dict):
                yield from walk(v, prefix + [key])
            else:
                yield ".".join(prefix + [key]), v

    lower, upper = text.strip().split("\n}\n{")
    trees = [lower + "}", "{" + upper]
    return [list(walk(ast.literal_eval(t.replace("inf", "1e999")), [])) for t in trees]


def bound_leaves(tree):
    """``[(path, value)]`` of a bound tree; ``Sequential``'s ``layers`` dropped."""
    ps = [".".join(k for k in p.split(".") if k != "layers") for p in jb.paths(tree)]
    return list(zip(ps, jax.tree.leaves(tree)))


def howto_bounds(net):
    """The how-to's bounds: decays in (0.5, 1), taus >= 0, tau_syn <= 0.5."""
    lb, ub = jb.make_bounds(net)
    lb = jb.set_where(lb, jb.family_mask(net, "decays"), 0.5)
    lb = jb.set_where(lb, jb.family_mask(net, "taus"), 0.0)
    ub = jb.set_where(ub, jb.family_mask(net, "decays"), 1.0)
    ub = jb.set_where(ub, "*.tau_syn", 500e-3)
    return lb, ub


def test_howto_nested_network_bounds_match_the_printed_rockpool_bounds():
    net = howto_network()
    lb, ub = howto_bounds(net)

    expected_lower, expected_upper = printed_leaves(HOWTO_PRINTED)
    assert len(expected_lower) == 15
    assert bound_leaves(lb) == expected_lower  # same paths, order and values
    assert bound_leaves(ub) == expected_upper
    # The unused leak parameters are None holes in the bounds, as in the model.
    assert lb.layers[1].tau_mem is None and ub.layers[4].alpha is None


def test_howto_nested_network_bounds_drive_bounds_cost_and_training():
    net = howto_network()
    lb, ub = howto_bounds(net)
    assert float(jb.bounds_cost(net, lb, ub)) == 0.0

    # Push three decays and one tau out of their boxes: exp(violation) each.
    bad = eqx.tree_at(lambda n: n.layers[2].layers[1].alpha, net, jnp.full(3, 1.25))
    bad = eqx.tree_at(
        lambda n: n.layers[4].tau_syn, bad, jnp.full((5, 1), 0.02).at[0].set(0.75)
    )
    expected = 3 * math.exp(0.25) + math.exp(0.25)
    np.testing.assert_allclose(float(jb.bounds_cost(bad, lb, ub)), expected, rtol=1e-6)

    # Building the bounds inside jit (from a traced model) gives the same cost.
    def cost_with_bounds_built_inside(model):
        return jb.bounds_cost(model, *howto_bounds(model))

    jitted = eqx.filter_jit(cost_with_bounds_built_inside)(bad)
    np.testing.assert_allclose(float(jitted), expected, rtol=1e-6)

    def loss(model, x):
        return jnp.mean(model(x) ** 2) + jb.bounds_cost(model, lb, ub)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(bad, jnp.ones(2))
    # d/dp exp(p - 1) at p = 1.25, plus the network's own gradient there.
    task_loss = eqx.filter_jit(eqx.filter_grad(lambda m, x: jnp.mean(m(x) ** 2)))
    task = task_loss(bad, jnp.ones(2))
    np.testing.assert_allclose(
        grads.layers[2].layers[1].alpha - task.layers[2].layers[1].alpha,
        np.full(3, math.exp(0.25)),
        rtol=1e-6,
    )


# ------------------------------------------------- ParameterBoundaryRegularizer


def test_parameter_boundary_regularizer_is_rockpools_summed_exp_boundary_loss():
    x = jnp.array([-1.0, 0.25, 0.5, 2.0], jnp.float64)
    xs = np.asarray(x)
    reg = jb.ParameterBoundaryRegularizer(lower_bound=0.0, upper_bound=1.0)
    expected = np.sum(np.exp(xs[xs > 1.0] - 1.0)) + np.sum(np.exp(0.0 - xs[xs < 0.0]))
    np.testing.assert_allclose(float(reg(x)), expected, rtol=1e-12)
    np.testing.assert_allclose(float(eqx.filter_jit(reg)(x)), expected, rtol=1e-12)
    only_lower = jb.ParameterBoundaryRegularizer(lower_bound=0.0)
    np.testing.assert_allclose(float(only_lower(x)), math.exp(1.0), rtol=1e-12)
    assert float(jb.ParameterBoundaryRegularizer()(x)) == 0.0
