"""`_rockpool`: Rockpool's names against Rockpool and its documented formulas.

``summed_exp_boundary_loss``, ``ParameterBoundaryRegularizer`` (torch_loss) and
``bounds_clip`` (jax_loss).
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from rockpool.training import jax_loss as rockpool_loss


def test_clip_to_bounds_equals_rockpool_bounds_clip():
    params = {"a": jnp.array([-1.0, 0.5, 2.0]), "b": jnp.array([3.0, -3.0])}
    lower = {"a": 0.0, "b": -1.0}
    upper = {"a": 1.0, "b": 1.0}
    ours = jb.bounds_clip(params, lower, upper)
    theirs = rockpool_loss.bounds_clip(params, lower, upper)
    for k in params:
        np.testing.assert_array_equal(ours[k], theirs[k])


def test_summed_exp_boundary_loss_matches_torch_formula():
    y = np.array([-3.0, -0.1, 0.0, 0.5, 1.0, 1.2])
    expected = np.sum(np.exp(y - 1.0)[y > 1.0]) + np.sum(np.exp(0.0 - y)[y < 0.0])
    got = jb.summed_exp_boundary_loss(jnp.array(y), 0.0, 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_summed_exp_boundary_loss_zero_bound_is_a_real_bound():
    y = jnp.array([-1.0, 2.0])
    np.testing.assert_allclose(jb.summed_exp_boundary_loss(y, lower_bound=0.0), math.e)
    np.testing.assert_allclose(
        jb.summed_exp_boundary_loss(y, upper_bound=0.0), math.e**2
    )
    assert float(jb.summed_exp_boundary_loss(y)) == 0.0


def test_summed_exp_boundary_loss_overflow_safe_and_checked():
    y = jnp.array([-1e30], jnp.float32)
    assert np.isfinite(float(jb.summed_exp_boundary_loss(y, lower_bound=0.0)))
    with pytest.raises(ValueError, match="lower > upper"):
        jb.summed_exp_boundary_loss(y, 1.0, 0.0)
    with pytest.raises(TypeError, match="must be real"):
        jb.summed_exp_boundary_loss(jnp.array([1j]), 0.0)


def test_summed_exp_boundary_loss_promotes_integer_data_as_torch_does():
    # torch: int tensor - float bound is a float tensor; the cost follows.
    got = jb.summed_exp_boundary_loss(jnp.array([-1, 0, 3]), 0.0, 2.0)
    np.testing.assert_allclose(got, math.e + math.e, rtol=1e-6)
    got = jb.summed_exp_boundary_loss([True, False], upper_bound=0.5)
    np.testing.assert_allclose(got, math.exp(0.5), rtol=1e-6)


def test_parameter_boundary_regularizer_is_a_module():
    reg = jb.ParameterBoundaryRegularizer(lower_bound=1e-3, upper_bound=1e-1)
    tau = jnp.array([1e-4, 5e-2, 0.5])
    expected = math.exp(1e-3 - 1e-4) + math.exp(0.5 - 1e-1)
    np.testing.assert_allclose(reg(tau), expected, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(reg)(tau), expected, rtol=1e-12)
    only_lower = jb.ParameterBoundaryRegularizer(lower_bound=1e-4)
    np.testing.assert_allclose(only_lower(jnp.array([0.0, 9.0])), math.exp(1e-4))
