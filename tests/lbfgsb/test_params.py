"""jaxbounds._lbfgsb._params: parameter leaves, their bounds, and the way back."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxbounds._lbfgsb._params import join, split, updates_like


def test_split_broadcasts_and_rounds_bounds_inward_per_parameter():
    params = {"h": jnp.zeros(3, jnp.float16), "g": 0.5, "n": 2}
    lower = {"h": 0.1, "g": None, "n": None}
    upper = {"h": jnp.array([1.0, 2.0, 3.0]), "g": 1.0, "n": None}
    sp = split(params, lower, upper)
    lo, up = sp.lo, sp.up
    assert lo["n"] is None and up["n"] is None
    assert lo["h"].dtype == jnp.float16 and lo["h"].shape == (3,)
    # float16(0.1) = 0.09998 is below 0.1: the lower bound rounds up
    np.testing.assert_array_equal(lo["h"], np.full(3, 0.10004, np.float16))
    np.testing.assert_array_equal(up["h"], [1.0, 2.0, 3.0])
    assert float(lo["g"]) == -math.inf and float(up["g"]) == 1.0


def test_join_and_updates_like_write_back_into_the_params_tree():
    params = {"h": jnp.zeros(2), "g": 0.5, "n": 2, "z": jnp.ones(3, jnp.int32)}
    sp = split(
        params,
        {"h": 0.0, "g": None, "n": None, "z": None},
        {"h": 1.0, "g": None, "n": None, "z": None},
    )
    assert sp.x["n"] is None and sp.x["z"] is None
    new = join(sp, {"h": jnp.ones(2), "g": jnp.asarray(0.25), "n": None, "z": None})
    np.testing.assert_array_equal(new["h"], [1.0, 1.0])
    assert float(new["g"]) == 0.25 and new["n"] == 2 and new["z"] is params["z"]
    u = updates_like(
        sp, {"h": jnp.full(2, 3.0), "g": jnp.asarray(1.0), "n": None, "z": None}
    )
    np.testing.assert_array_equal(u["h"], [3.0, 3.0])
    assert u["n"] is None  # not an array: no update
    np.testing.assert_array_equal(u["z"], np.zeros(3))  # an array: a zero update
