"""`interval_bounds` (jaxbounds/_constraints/_boxes.py): the box of a
`Constraints` made of intervals, against hand-computed intersections."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from jaxbounds._constraints._boxes import interval_bounds

PARAMS = {
    "w": jnp.array([1.0, 2.0, 3.0]),
    "t": jnp.array(0.5),
    "f": 3.0,
    "free": jnp.ones(2),
    "n": jnp.arange(2),
    "hole": None,
}


def test_unconstrained_params_are_infinite_and_the_rest_none():
    lo, up = interval_bounds(PARAMS, jb.Constraints(), "minimize")
    assert lo == {
        "w": -math.inf,
        "t": -math.inf,
        "f": -math.inf,
        "free": -math.inf,
        "n": None,
        "hole": None,
    }
    assert up == {k: (None if v is None else math.inf) for k, v in lo.items()}


def test_several_intervals_intersect_on_each_leaf():
    c = jb.Constraints(
        ("w", jb.Interval(0.0, 2.0)),
        ("*", jb.Interval(-1.0, 1.5)),  # every float param, the Python float too
        ("t", jb.Interval(lower=0.2)),
        ("t", jb.Interval(upper=0.9)),
        ("w", jb.Interval()),  # open: no change
    )
    lo, up = interval_bounds(PARAMS, c, "minimize")
    assert lo == {"w": 0.0, "t": 0.2, "f": -1.0, "free": -1.0, "n": None, "hole": None}
    assert up == {"w": 1.5, "t": 0.9, "f": 1.5, "free": 1.5, "n": None, "hole": None}
    # Python floats stay Python floats (a Box keeps them static)
    assert all(type(v) is float for v in lo.values() if v is not None)


def test_bound_trees_and_intervals_intersect_elementwise():
    lower = {
        "w": jnp.array([0.5, -3.0, 0.1]),
        "t": None,
        "f": 1.0,
        "free": None,
        "n": None,
        "hole": None,
    }
    upper = {
        "w": None,
        "t": 0.8,
        "f": None,
        "free": jnp.array([4.0, 0.5]),
        "n": None,
        "hole": None,
    }
    c = jb.Constraints(
        ("w", jb.Interval(0.0, 2.0)),
        ("free", jb.Interval(-2.0, 1.0)),
        ("t", jb.Interval(0.3, 1.0)),
        bounds=(lower, upper),
    )
    lo, up = interval_bounds(PARAMS, c, "minimize")
    np.testing.assert_array_equal(lo["w"], [0.5, 0.0, 0.1])
    assert up["w"] == 2.0
    assert (lo["t"], up["t"]) == (0.3, 0.8)
    assert (lo["f"], up["f"]) == (1.0, math.inf)
    assert lo["free"] == -2.0
    np.testing.assert_array_equal(up["free"], [1.0, 0.5])
    assert lo["n"] is lo["hole"] is up["n"] is up["hole"] is None


@pytest.mark.slow
def test_the_box_minimizes_like_its_bound_trees():
    c = jb.Constraints(("w", jb.Interval(0.0, 2.0)), ("*", jb.Interval(-1.0, 1.5)))
    params = {"w": jnp.zeros(3), "v": jnp.zeros(2)}

    def fun(p):
        return jnp.sum((p["w"] - 3.0) ** 2) + jnp.sum((p["v"] + 5.0) ** 2)

    out = jb.minimize(fun, params, c).params
    np.testing.assert_allclose(out["w"], [1.5, 1.5, 1.5])
    np.testing.assert_allclose(out["v"], [-1.0, -1.0])


class _Layer(eqx.Module):
    w: jax.Array
    b: jax.Array
    scale: float  # a hyperparameter: not a parameter


def test_trees_have_the_params_structure_for_a_module():
    m = _Layer(jnp.ones((2, 2)), jnp.zeros(2), 2.0)
    c = jb.Constraints(("w", jb.Interval(-1.0, 1.0)))
    lo, up = interval_bounds(m, c, "minimize")
    assert isinstance(lo, _Layer) and isinstance(up, _Layer)
    assert (lo.w, lo.b, lo.scale) == (-1.0, -math.inf, None)
    assert (up.w, up.b, up.scale) == (1.0, math.inf, None)


@pytest.mark.parametrize(
    "c, match",
    [
        (
            jb.Constraints(("w", jb.Interval(0.0, 1.0)), ("t", jb.MaxNorm(1.0))),
            r"^lbfgsb takes boxes only, and rule 1 \('t', MaxNorm\) puts a MaxNorm "
            r"on 't': .*jaxbounds.constrain\(raw, c\).*project_to_constraints",
        ),
        (
            jb.Constraints(("w", jb.Simplex())),
            r"^lbfgsb takes boxes only, and rule 0 \('w', Simplex\) puts a Simplex "
            r"on 'w'",
        ),
        (
            jb.Constraints(("w", jb.Interval(0.0, 1.0)), jb.LessEqual("t", "w")),
            r"^lbfgsb takes boxes only, and rule 1 LessEqual\('t', 'w'\) relates "
            r"'t' to another leaf: .*jaxbounds.constrain\(raw, c\).*jaxbounds.project",
        ),
    ],
)
def test_other_kinds_and_relations_are_refused_naming_rule_and_path(c, match):
    with pytest.raises(ValueError, match=match):
        interval_bounds(PARAMS, c, "lbfgsb")
