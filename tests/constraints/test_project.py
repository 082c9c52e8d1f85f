"""`project` on trees and the client idioms: jit, vmap, equinox, nnx, no recompiles."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxbounds as jb
from constraints.oracles import keras_max_norm

from helpers import count_compilations

X = np.random.default_rng(0).normal(size=(4, 3)) * 2
PARAMS = {"w": jnp.asarray(X), "b": jnp.zeros(3), "n": jnp.arange(3)}


def test_unconstrained_leaves_are_the_same_objects():
    out = jb.project(PARAMS, jb.Constraints(("w", jb.MaxNorm(1.0, axis=0))))
    assert out["b"] is PARAMS["b"] and out["n"] is PARAMS["n"]
    np.testing.assert_allclose(out["w"], keras_max_norm(X, 1.0, 0), rtol=1e-6)


def test_under_jit_with_constraints_as_argument():
    f = jax.jit(jb.project)
    f(PARAMS, jb.Constraints(("w", jb.MaxNorm(0.25, axis=0))))
    with count_compilations() as compiled:  # the radius is data
        for r in (0.5, 1.0, 2.0):
            got = f(PARAMS, jb.Constraints(("w", jb.MaxNorm(r, axis=0))))["w"]
            np.testing.assert_allclose(got, keras_max_norm(X, r, 0), rtol=1e-6)
    assert compiled == []


def test_no_recompiles_over_twenty_radii():
    radii = np.linspace(0.5, 3.0, 20)
    jb.project(PARAMS, jb.Constraints(("w", jb.MaxNorm(0.1, axis=0))))
    with count_compilations() as compiled:
        outs = [
            jb.project(PARAMS, jb.Constraints(("w", jb.MaxNorm(float(r), axis=0))))
            for r in radii
        ]
    assert compiled == []
    for r, out in zip(radii, outs):
        np.testing.assert_allclose(out["w"], keras_max_norm(X, r, 0), rtol=1e-6)


def test_vmap_over_radii_matches_a_loop():
    radii = jnp.linspace(0.5, 3.0, 6)

    def one(r):
        return jb.project(PARAMS, jb.Constraints(("w", jb.MaxNorm(r, axis=0))))["w"]

    batched = jax.vmap(one)(radii)
    for r, b in zip(radii, batched):
        np.testing.assert_array_equal(b, one(float(r)))


def test_equinox_module_and_filter_jit():
    model = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    model = eqx.tree_at(lambda m: m.weight, model, model.weight * 10)
    c = jb.Constraints(("weight", jb.MaxNorm(1.0, axis=1)))  # (out, in): a row per unit
    out = eqx.filter_jit(jb.project)(model, c)
    assert isinstance(out, eqx.nn.Linear)
    np.testing.assert_allclose(
        out.weight, keras_max_norm(model.weight, 1.0, 1), rtol=1e-6
    )
    assert out.bias is not None


def test_nnx_module():
    from flax import nnx

    layer = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    layer.kernel.set_value(layer.kernel.get_value() * 10)
    c = jb.Constraints(("kernel", jb.MaxNorm(1.0, axis=0)))
    out = jb.project(nnx.state(layer, nnx.Param), c)
    np.testing.assert_allclose(
        out["kernel"].get_value(),
        keras_max_norm(layer.kernel.get_value(), 1.0, 0),
        rtol=1e-6,
    )


def test_bounds_join_in():
    c = jb.Constraints(
        ("w", jb.MaxNorm(1.0, axis=0)),
        bounds=({"w": None, "b": 0.5, "n": None}, {"w": None, "b": None, "n": None}),
    )
    out = jb.project(PARAMS, c)
    np.testing.assert_array_equal(out["b"], 0.5)
