"""Constraints.declared: jb.field(constraint=) on equinox, nnx.Param(constraint=)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from constraints.oracles import keras_max_norm


class Layer(eqx.Module):
    w: jnp.ndarray = jb.field(constraint=jb.MaxNorm(1.0, axis=0))
    thr: jnp.ndarray = jb.field(constraint=(jb.Ordered(), jb.Interval(0.0, 1.0)))
    tau_syn: jnp.ndarray = jb.field(lower=0.0)
    tau_mem: jnp.ndarray = jb.field(upper=0.5)


def _layer():
    return Layer(
        w=jnp.array([[3.0, 0.1], [4.0, 0.1]]),
        thr=jnp.array([0.9, 0.2, 1.5]),
        tau_syn=jnp.array([-0.1, 0.3]),
        tau_mem=jnp.array([0.2, 0.9]),
    )


def test_equinox_declarations_and_extra_rules():
    m = _layer()
    c = jb.Constraints.declared(m, jb.LessEqual("tau_syn", "tau_mem"))
    out = jb.project(m, c)
    np.testing.assert_allclose(out.w, keras_max_norm(m.w, 1.0, 0), rtol=1e-6)
    np.testing.assert_allclose(out.thr, [0.55, 0.55, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out.tau_syn, [0.0, 0.3])
    np.testing.assert_allclose(out.tau_mem, [0.2, 0.5])
    assert jb.violations(out, c).ok
    assert len(jb.violations(out, c).rows) == 6


def test_field_rejects_non_kinds():
    with pytest.raises(TypeError, match="constraint must be a Constraint kind"):
        jb.field(constraint=1.0)
    with pytest.raises(TypeError, match="relations between leaves go in Constraints"):
        jb.field(constraint=jb.LessEqual("a", "b"))
    with pytest.raises(ValueError, match="static field"):
        jb.field(constraint=jb.MaxNorm(1.0), static=True)


def test_nnx_param_metadata():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(
                jnp.array([[3.0], [4.0]]), constraint=jb.MaxNorm(1.0, axis=0)
            )
            self.p = nnx.Param(jnp.array([2.0, 0.0, 0.0]), constraint=jb.Simplex())
            self.tau = nnx.Param(jnp.array([-1.0]), lower=0.0)

    net = Net()
    c = jb.Constraints.declared(net)
    out = jb.project(nnx.state(net, nnx.Param), c)
    np.testing.assert_allclose(out["w"].get_value().ravel(), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(out["p"].get_value(), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out["tau"].get_value(), [0.0])
    with pytest.raises(TypeError, match="nnx.Param on 'bad'"):

        class Bad(nnx.Module):
            def __init__(self):
                self.bad = nnx.Param(jnp.ones(2), constraint="max-norm")

        jb.Constraints.declared(Bad())
