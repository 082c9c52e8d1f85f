"""`_clip`: clip_to_bounds, the projection onto the box."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb

from helpers import FLOATS


@pytest.mark.parametrize("dtype", FLOATS)
def test_clip_rounds_bounds_inward_so_cost_is_zero(dtype):
    params = {"x": jnp.array([-5.0, 0.05, 0.7, 5.0], dtype)}
    lower, upper = {"x": 0.1}, {"x": 0.3}
    clipped = jb.clip_to_bounds(params, lower, upper)["x"]
    assert clipped.dtype == dtype
    as64 = np.asarray(clipped.astype(jnp.float32), np.float64)
    assert float(jb.bounds_cost({"x": clipped}, lower, upper)) == 0.0
    # nearest representable values inside [0.1, 0.3] as the cost sees them
    assert np.all(as64 >= np.float32(0.1)) and np.all(as64 <= np.float32(0.3))
    np.testing.assert_allclose(as64, [0.1, 0.1, 0.3, 0.3], rtol=1e-2)


def test_clip_keeps_unbounded_and_non_float_leaves_identical():
    w = jnp.ones(3)
    params = {"w": w, "n": 3, "f": jax.nn.relu, "hole": None, "x": jnp.array([2.0])}
    lower, upper = jb.make_bounds(params)
    upper["x"] = 1.0
    out = jb.clip_to_bounds(params, lower, upper)
    assert out["w"] is w and out["n"] == 3 and out["f"] is jax.nn.relu
    assert out["hole"] is None
    np.testing.assert_array_equal(out["x"], [1.0])


def test_clip_with_array_bounds_under_jit_and_vmap():
    p = jnp.array([[-1.0, 0.5, 3.0], [0.2, 9.0, -9.0]])
    lo = jnp.array([0.0, 0.0, 1.0])
    up = jnp.array([[1.0], [2.0]])
    expected = np.clip(np.asarray(p), np.asarray(lo), np.asarray(up))
    out = jax.jit(jb.clip_to_bounds)({"p": p}, {"p": lo}, {"p": up})["p"]
    np.testing.assert_array_equal(out, expected)
    rows = jax.vmap(jb.clip_to_bounds, in_axes=({"p": 0}, None, {"p": 0}))(
        {"p": p}, {"p": lo}, {"p": up}
    )["p"]
    np.testing.assert_array_equal(rows, expected)
