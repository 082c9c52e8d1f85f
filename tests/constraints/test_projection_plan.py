"""Closed forms of intersections against NumPy, and which form the plan picks."""

import jax.numpy as jnp
import numpy as np

import jaxbounds as jb
from constraints.oracles import box_halfplane_pair, keras_max_norm, pav_row, per_row
from jaxbounds._constraints._project import plan_of
from jaxbounds._constraints._resolve import resolve

RNG = np.random.default_rng(0)


def _pair_form(item):
    return "alone" if item.rules_a is None else "box"


def _forms(params, c):
    return sorted(
        (
            type(item).__name__,
            getattr(item, "form", None) or _pair_form(item),
        )
        for group in plan_of(resolve(params, c), c)
        for item in group
    )


def test_ball_after_orthant():
    x = RNG.normal(size=(5, 4)) * 2
    params = {"w": jnp.asarray(x)}
    c = jb.Constraints(("w", jb.MaxNorm(1.0, axis=0)), bounds=({"w": 0.0}, {"w": None}))
    assert _forms(params, c) == [("OnLeaf", "ball+")]
    got = jb.project(params, c)["w"]
    np.testing.assert_allclose(got, keras_max_norm(np.maximum(x, 0), 1.0, 0), atol=1e-6)
    c2 = jb.Constraints(("w", jb.MaxNorm(1.0, axis=0)), ("w", jb.Interval(0.0)))
    np.testing.assert_array_equal(jb.project(params, c2)["w"], got)


def test_ordered_with_constant_interval():
    x = RNG.normal(size=(4, 6))
    params = {"t": jnp.asarray(x)}
    c = jb.Constraints(("t", jb.Ordered()), ("t", jb.Interval(-0.5, 0.5)))
    assert _forms(params, c) == [("OnLeaf", "ordered+box")]
    ref = np.clip(per_row(pav_row, x, 1), -0.5, 0.5)
    np.testing.assert_allclose(jb.project(params, c)["t"], ref, atol=1e-12)


def test_relation_with_intervals_is_box_cut_by_half_plane():
    a, b = RNG.uniform(-1, 2, size=12), RNG.uniform(-1, 2, size=12)
    params = {"a": jnp.asarray(a), "b": jnp.asarray(b)}
    c = jb.Constraints(
        jb.LessEqual("a", "b", 0.1),
        ("a", jb.Interval(0.0, 1.0)),
        bounds=({"a": None, "b": 0.2}, {"a": None, "b": 1.5}),
    )
    assert _forms(params, c) == [("OnPair", "box")]
    got = jb.project(params, c)
    ra, rb = box_halfplane_pair(a, b, 0.0, 1.0, 0.2, 1.5, 0.1)
    np.testing.assert_allclose(got["a"], ra, atol=1e-6)
    np.testing.assert_allclose(got["b"], rb, atol=1e-6)
    assert (np.asarray(got["a"]) <= np.asarray(got["b"]) - 0.1).all()


def test_intervals_merge_and_other_mixes_go_to_dykstra():
    params = {"w": jnp.ones((3, 2)), "a": jnp.ones(2), "b": jnp.ones((3, 2))}
    c = jb.Constraints(("w", jb.Interval(0.0, 2.0)), ("w", jb.Interval(-1.0, 1.0)))
    assert _forms(params, c) == [("OnLeaf", "box")]
    np.testing.assert_array_equal(
        jb.project({"w": jnp.array([3.0, -3.0])}, c)["w"], [1.0, 0.0]
    )
    c = jb.Constraints(("w", jb.MaxNorm(1.0, axis=0)), ("w", jb.Interval(0.2)))
    assert _forms(params, c) == [("OnLeaf", "box"), ("OnLeaf", "kind")]
    c = jb.Constraints(jb.LessEqual("a", "b"), ("b", jb.MaxNorm(1.0)))
    assert _forms(params, c) == [("OnLeaf", "kind"), ("OnPair", "alone")]
