"""jaxbounds._lbfgsb._params: parameter leaves, their bounds, and the way back."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
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


def test_a_constraints_of_intervals_is_the_intersection_box():
    params = {"tau": jnp.ones(2), "w": jnp.ones(3), "g": 0.5, "n": 1}
    bounds = (
        {"tau": 0.5, "w": None, "g": None, "n": None},
        {"tau": None, "w": jnp.array([1.0, 2.0, 3.0]), "g": None, "n": None},
    )
    c = jb.Constraints(
        ("tau", jb.Interval(0.0, 1.0)), ("*", jb.Interval(-2.0, None)), bounds=bounds
    )
    sp = split(params, c)
    # per leaf, the larger lower bound and the smaller upper bound
    np.testing.assert_array_equal(sp.lo["tau"], [0.5, 0.5])
    np.testing.assert_array_equal(sp.up["tau"], [1.0, 1.0])
    np.testing.assert_array_equal(sp.lo["w"], [-2.0] * 3)
    np.testing.assert_array_equal(sp.up["w"], [1.0, 2.0, 3.0])
    assert float(sp.lo["g"]) == -2.0 and float(sp.up["g"]) == math.inf
    assert sp.lo["n"] is None

    def fun(p):
        return jnp.sum((p["tau"] - 3.0) ** 2) + jnp.sum((p["w"] + 5.0) ** 2)

    result = jb.minimize(fun, params, c)
    np.testing.assert_allclose(result.params["tau"], [1.0, 1.0])
    np.testing.assert_allclose(result.params["w"], [-2.0] * 3)


@pytest.mark.parametrize(
    "c, match",
    [
        (
            jb.Constraints(("w", jb.MaxNorm(1.0))),
            r"minimize takes boxes only, and rule 0 \('w', MaxNorm\) puts a "
            r"MaxNorm on 'w'.*constrain",
        ),
        (
            jb.Constraints(jb.LessEqual("w", "tau")),
            r"minimize takes boxes only, and rule 0 .* relates 'w'.*constrain",
        ),
    ],
)
def test_other_kinds_and_relations_point_to_constrain(c, match):
    params = {"tau": jnp.ones(2), "w": jnp.ones(2)}
    with pytest.raises(ValueError, match=match):
        jb.minimize(lambda p: jnp.sum(p["w"]), params, c)


def test_upper_is_required_with_bound_trees_and_refused_with_constraints():
    params = {"w": jnp.ones(2)}
    with pytest.raises(TypeError, match=r"lbfgsb: `upper` is missing"):
        jb.lbfgsb({"w": 0.0}).init(params)
    c = jb.Constraints(("w", jb.Interval(0.0, 1.0)))
    with pytest.raises(TypeError, match=r"a Constraints alone, without `upper`"):
        jb.minimize(lambda p: jnp.sum(p["w"]), params, c, {"w": 1.0})


def test_none_is_still_a_bound_tree_for_a_single_array():
    # None as the whole bound tree of a bare array: no bound on that side
    result = jb.minimize(lambda x: jnp.sum((x - 2.0) ** 2), jnp.zeros(2), 1.0, None)
    np.testing.assert_allclose(result.params, [2.0, 2.0])
    result = jb.minimize(lambda x: jnp.sum((x - 2.0) ** 2), jnp.zeros(2), None, 1.5)
    np.testing.assert_allclose(result.params, [1.5, 1.5])
