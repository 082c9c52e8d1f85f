"""constrain / unconstrain: the bijections, their numerics, their use in training."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import jaxbounds as jb

from helpers import FLOATS, LOW


def wide(dtype):
    """The dtype jaxbounds computes in for ``dtype`` params (at least float32)."""
    return np.float64 if jnp.dtype(dtype) == jnp.float64 else np.float32


# --- independent float64 NumPy references ------------------------------------


def np_sigmoid(x):
    x = np.asarray(x, np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def np_softplus(x):
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def np_constrain(x, lo, up):
    """The documented maps, in float64."""
    x = np.asarray(x, np.float64)
    if lo is not None and up is not None:
        return lo + (up - lo) * np_sigmoid(x)
    if lo is not None:
        return lo + np_softplus(x)
    if up is not None:
        return up - np_softplus(-x)
    return x


def np_slope(x, lo, up):
    """d constrain / d raw, analytically: (up - lo) * s(x) * s(-x)."""
    return (up - lo) * np_sigmoid(x) * np_sigmoid(-np.asarray(x, np.float64))


def one(x, lo, up):
    """constrain on a single-leaf tree."""
    return jb.constrain({"x": x}, {"x": lo}, {"x": up})["x"]


def inv(p, lo, up):
    return jb.unconstrain({"x": p}, {"x": lo}, {"x": up})["x"]


# --- the maps ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_two_sided_is_scaled_sigmoid(dtype):
    x = jnp.linspace(-30, 30, 241, dtype=dtype)
    for lo, up in [(0.0, 1.0), (-3.0, 7.5), (1e-3, 2e-1), (-1e4, -1e4 + 1e-2)]:
        got = np.asarray(one(x, lo, up), np.float64)
        ref = np_constrain(x, lo, up)
        # error relative to the distance to the nearer bound: this is what the
        # nearer-bound formulation keeps accurate
        near = np.minimum(ref - lo, up - ref)
        eps = np.finfo(wide(dtype)).eps
        tol = 8 * eps * (near * (1 + np.abs(np.asarray(x))) + max(abs(lo), abs(up)))
        np.testing.assert_array_less(np.abs(got - ref), tol + 1e-300)
        assert got.dtype == np.float64 and one(x, lo, up).dtype == dtype


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_one_sided_are_shifted_and_mirrored_softplus(dtype):
    x = jnp.linspace(-40, 40, 161, dtype=dtype)
    rtol = 8 * np.finfo(wide(dtype)).eps
    np.testing.assert_allclose(one(x, 2.0, None), 2.0 + np_softplus(x), rtol=rtol)
    np.testing.assert_allclose(
        one(x, -math.inf, -1.5), -1.5 - np_softplus(-x), rtol=rtol
    )
    # the softplus itself is accurate where it is tiny, not just the sum
    np.testing.assert_allclose(one(x, 0.0, math.inf), np_softplus(x), rtol=rtol)


def test_hand_computed_values():
    f32 = jnp.float32
    assert float(one(f32(0.0), 0.0, 0.2)) == pytest.approx(0.1)
    assert float(one(f32(math.log(3.0)), 0.0, 4.0)) == pytest.approx(3.0, rel=1e-6)
    assert float(one(f32(0.0), 1.0, None)) == pytest.approx(1.0 + math.log(2.0))
    assert float(one(f32(0.0), None, 1.0)) == pytest.approx(1.0 - math.log(2.0))
    assert float(inv(f32(3.0), 0.0, 4.0)) == pytest.approx(math.log(3.0), rel=1e-6)
    assert float(inv(f32(1.0 + math.log(2.0)), 1.0, None)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_unbounded_none_and_non_float_leaves_are_passed_through():
    act = jax.nn.relu
    raw = {"w": jnp.arange(3.0), "hole": None, "n": 3, "f": act, "t": jnp.ones(2)}
    lower = {"w": -math.inf, "hole": None, "n": -math.inf, "f": -math.inf, "t": 0.0}
    upper = {"w": math.inf, "hole": None, "n": math.inf, "f": math.inf, "t": None}
    for fn in (jb.constrain, jb.unconstrain):
        out = fn(raw, lower, upper)
        assert out["w"] is raw["w"] and out["hole"] is None
        assert out["n"] == 3 and out["f"] is act
    assert float(jb.constrain(raw, lower, upper)["t"][0]) == pytest.approx(
        math.log1p(math.e)
    )


def test_array_bounds_with_infinities_choose_the_map_per_element():
    lo = jnp.array([0.0, -jnp.inf, 2.0, -jnp.inf, -1.0])
    up = jnp.array([1.0, 1.0, jnp.inf, jnp.inf, -1.0])
    x = jnp.array([0.3, -2.0, 5.0, 7.0, 4.0])
    got = one(x, lo, up)
    want = [
        np_constrain(0.3, 0.0, 1.0),
        np_constrain(-2.0, None, 1.0),
        np_constrain(5.0, 2.0, None),
        7.0,
        -1.0,  # zero-width box
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    back = inv(got, lo, up)
    np.testing.assert_allclose(back[:4], x[:4], rtol=1e-9)
    assert float(back[4]) == 0.0
    # gradients: finite everywhere, the slope of each map
    g = jax.grad(lambda x: jnp.sum(one(x, lo, up)))(x)
    want_g = [np_slope(0.3, 0.0, 1.0), np_sigmoid(2.0), np_sigmoid(5.0), 1.0, 0.0]
    np.testing.assert_allclose(g, want_g, rtol=1e-12)


def test_bounds_broadcast_against_the_parameter():
    x = jnp.zeros((2, 3))
    lo = jnp.array([0.0, 1.0, 2.0])
    got = jb.constrain({"x": x}, {"x": lo}, {"x": 10.0})["x"]
    np.testing.assert_allclose(got, np.broadcast_to(lo + (10.0 - lo) / 2, (2, 3)))


# --- the float32 trap and extreme values -------------------------------------


def test_naive_scaled_sigmoid_has_zero_gradient_at_17_ours_does_not():
    naive = jax.grad(lambda x: 0.0 + 1.0 * jax.nn.sigmoid(x))
    assert float(naive(jnp.float32(17.0))) == 0.0  # the trap
    ours = jax.grad(lambda x: one(x, 0.0, 1.0))
    assert float(ours(jnp.float32(17.0))) == pytest.approx(np_slope(17.0, 0.0, 1.0))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-3.0, 7.5), (5.0, 5.001), (1e3, 1e5)])
def test_gradient_is_analytic_and_nonzero_up_to_80(dtype, bounds):
    lo, up = bounds
    x = jnp.concatenate([jnp.linspace(-80, 80, 161), jnp.array([-80.0, 80.0])])
    x = x.astype(dtype)
    g = jax.vmap(jax.grad(lambda x: one(x, lo, up)))(x)
    assert g.dtype == dtype
    assert bool(jnp.all(g > 0))
    # the bounds as the computation sees them: in the compute dtype
    lo_c, up_c = (float(wide(dtype)(b)) for b in bounds)
    np.testing.assert_allclose(
        g, np_slope(x, lo_c, up_c), rtol=64 * np.finfo(dtype).eps
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_one_sided_gradients_are_sigmoids_nonzero_at_80(dtype):
    x = jnp.array([-80.0, -20.0, 0.0, 20.0, 80.0], dtype)
    for lo, up, ref in [(1.0, None, np_sigmoid(x)), (None, 1.0, np_sigmoid(-x))]:
        g = jax.vmap(jax.grad(lambda x, lo=lo, up=up: one(x, lo, up)))(x)
        assert bool(jnp.all(g > 0))
        np.testing.assert_allclose(g, ref, rtol=16 * np.finfo(dtype).eps)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (None, 2.0), (-2.0, None), (0.1, 0.2)])
def test_extreme_raw_values_give_finite_values_in_the_box(dtype, bounds):
    lo, up = bounds
    big = float(jnp.finfo(dtype).max)
    x = jnp.array([-big, -1e4, -80.0, -17.0, 0.0, 17.0, 80.0, 1e4, big], dtype)
    with jax.debug_nans(True):
        y = one(x, lo, up)
        g = jax.vmap(jax.grad(lambda x: one(x, lo, up).astype(jnp.float32)))(x)
    yw = np.asarray(y.astype(jnp.float32 if dtype != jnp.float64 else dtype))
    assert np.all(np.isfinite(np.asarray(g, np.float64)))
    if lo is not None and up is not None:
        assert np.all(np.isfinite(yw))
    else:
        # the open side reaches only as far as the raw value: finite up to +-1e4
        assert np.all(np.isfinite(yw[1:-1]))
    cast = wide(dtype)
    if lo is not None:
        assert np.all(yw >= cast(lo))
    if up is not None:
        assert np.all(yw <= cast(up))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_box_as_wide_as_the_dtype_does_not_overflow(dtype):
    big = float(jnp.finfo(dtype).max)
    lo, up = -0.9 * big, 0.9 * big
    x = jnp.array([-100.0, -1.0, 0.0, 1.0, 100.0], dtype)
    with jax.debug_nans(True):
        y = one(x, lo, up)
        g = jax.vmap(jax.grad(lambda x: one(x, lo, up)))(x)
    assert np.all(np.isfinite(np.asarray(y))) and np.all(np.isfinite(np.asarray(g)))
    s = np_sigmoid(x)
    np.testing.assert_allclose(y, lo * (1 - s) + up * s, rtol=1e-6)
    np.testing.assert_allclose(g[1:4], up * (2 * s[1:4] * (1 - s[1:4])), rtol=1e-6)
    np.testing.assert_allclose(inv(y, lo, up)[1:4], x[1:4], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_unconstrain_of_a_bound_is_finite_and_maps_back(dtype):
    limit = 80.0 if dtype == jnp.float32 else 700.0
    p = jnp.array([1.0, 3.0], dtype)
    raw = inv(p, 1.0, 3.0)
    np.testing.assert_array_equal(raw, [-limit, limit])
    np.testing.assert_array_equal(one(raw, 1.0, 3.0), p)
    g = jax.vmap(jax.grad(lambda x: one(x, 1.0, 3.0)))(raw)
    assert bool(jnp.all(g > 0))  # not stuck: the gradient is still there
    # one-sided: the bound side is clamped at -limit, the open side is not
    assert float(inv(jnp.array(2.0, dtype), 2.0, None)) == -limit
    assert float(inv(jnp.array(2.0, dtype), None, 2.0)) == limit
    assert float(inv(jnp.array(1e30, dtype), 2.0, None)) == pytest.approx(1e30)
    # a zero-width box
    assert float(inv(jnp.array(5.0, dtype), 5.0, 5.0)) == 0.0
    assert float(one(jnp.array(123.0, dtype), 5.0, 5.0)) == 5.0


@pytest.mark.slow
def test_inverse_is_accurate_near_the_bounds_float32():
    eps = float(np.finfo(np.float32).eps)
    p = np.array([1e-30, 1e-20, 1e-10, 1e-7, 0.5, 1 - 2**-23, 1 - 2**-24], np.float32)
    raw = inv(jnp.asarray(p), 0.0, 1.0)
    # the exact logit of p, in float64
    ref = np.log(p.astype(np.float64)) - np.log1p(-p.astype(np.float64))
    np.testing.assert_allclose(raw, ref, rtol=2 * eps)
    # back again: raw itself is a float32 (error eps * |raw|), which becomes a
    # relative error eps * |raw| of the distance to the bound, no more
    back = np.asarray(one(raw, 0.0, 1.0), np.float64)
    near = np.minimum(p, 1 - p.astype(np.float64))
    assert np.all(np.abs(back - p) <= 2 * eps * np.abs(ref) * near + eps / 4)
    # near a bound of 1.0 the distance is resolved to float32's spacing there
    q = np.array([1 + 2**-23, 1 + 2**-20, 3 - 2**-22], np.float32)
    np.testing.assert_array_equal(one(inv(jnp.asarray(q), 1.0, 3.0), 1.0, 3.0), q)
    # one-sided: tiny and huge distances
    v = np.array([1e-30, 1e-6, 1.0, 1e6, 1e30], np.float32)
    raw = inv(jnp.asarray(2.0 + v), 2.0, None)
    np.testing.assert_array_equal(one(raw, 2.0, None), np.float32(2.0) + v)
    raw = inv(jnp.asarray(v), 0.0, None)
    v64 = v.astype(np.float64)  # log(expm1(v)), without overflow
    np.testing.assert_allclose(raw, v64 + np.log(-np.expm1(-v64)), rtol=2 * eps)
    np.testing.assert_allclose(one(raw, 0.0, None), v, rtol=70 * eps)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_is_computed_in_float32_and_cast_back(dtype):
    x = jnp.linspace(-12, 12, 97).astype(dtype)
    for lo, up in [(0.0, 1.0), (0.1, 0.2), (-3.0, None), (None, 7.0)]:
        y = one(x, lo, up)
        assert y.dtype == dtype
        ref = np_constrain(np.asarray(x, np.float32), lo, up).astype(np.float32)
        # float32 result rounded to the dtype (and pulled in by an ulp where
        # rounding would leave the box)
        info = jnp.finfo(dtype)
        np.testing.assert_allclose(
            y.astype(np.float32),
            ref,
            rtol=2 * float(info.eps),
            atol=float(info.smallest_subnormal),
        )
        assert float(jb.bounds_cost({"x": y}, {"x": lo}, {"x": up})) == 0.0


@pytest.mark.slow
def test_float16_rounding_never_leaves_the_box():
    # float16(0.1) = 0.09998 < 0.1: a value rounded onto the bound is pulled in
    y = one(jnp.full(3, -30.0, jnp.float16), 0.1, 0.2)
    assert float(y[0]) > 0.1
    assert float(y[0]) == float(jnp.nextafter(jnp.float16(0.1), jnp.float16(1)))
    g = jax.grad(lambda x: one(x, 0.1, 0.2).astype(jnp.float32).sum())
    # the gradient still flows where the value was pulled in (in float32 it
    # would be 0.1 * 9.4e-14; it underflows only once cast to float16)
    g32 = jax.grad(lambda x: one(x, 0.1, 0.2).sum())(jnp.full(3, -10.0, jnp.float32))
    g16 = g(jnp.full(3, -10.0, jnp.float16))
    tiny = float(jnp.finfo(jnp.float16).smallest_subnormal)  # g is subnormal
    np.testing.assert_allclose(g16.astype(np.float32), g32, rtol=1e-3, atol=tiny)


# --- transformations ---------------------------------------------------------


@pytest.mark.slow
def test_jit_vmap_grad_agree_with_eager():
    params = {
        "tau": jnp.array([0.01, 0.05, 0.15]),
        "g": jnp.array(2.0),
        "w": jnp.ones(2),
    }
    lower, upper = jb.make_bounds(params)
    lower["tau"], upper["tau"] = 0.0, 0.2
    lower["g"] = 1.0
    raw = jb.unconstrain(params, lower, upper)
    eager = jb.constrain(raw, lower, upper)
    jitted = jax.jit(jb.constrain)(raw, lower, upper)
    chex_equal = jax.tree_util.tree_map(np.testing.assert_array_equal, eager, jitted)
    del chex_equal
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), eager, params
    )
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, a + 1.0, a - 1.0]), raw)
    out = jax.vmap(lambda r: jb.constrain(r, lower, upper))(batch)
    for k in range(3):
        row = [leaf[k] for leaf in jax.tree_util.tree_leaves(batch)]
        single = jb.constrain(
            jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(batch), row),
            lower,
            upper,
        )
        for a, b in zip(
            jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(single)
        ):
            np.testing.assert_allclose(a[k], b, rtol=1e-12)
    back = jax.vmap(lambda p: jb.unconstrain(p, lower, upper))(out)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
        back,
        batch,
    )
    g = jax.grad(lambda r: jnp.sum(jb.constrain(r, lower, upper)["tau"]))(raw)
    np.testing.assert_allclose(g["tau"], np_slope(raw["tau"], 0.0, 0.2), rtol=1e-12)
    assert float(jnp.sum(jnp.abs(g["w"]))) == 0.0


def test_vmap_over_array_bounds_and_gradient_wrt_bounds():
    x = jnp.array([-1.0, 0.5, 3.0])
    los = jnp.array([[0.0], [1.0]])
    out = jax.vmap(lambda lo: one(x, lo, 4.0))(los)
    np.testing.assert_allclose(out[1], np_constrain(x, 1.0, 4.0), rtol=1e-12)
    # d/dlo = sigmoid(-x), d/dup = sigmoid(x), as for lo + (up - lo) * sigmoid(x)
    lo, up = jnp.array([0.0, 0.0, 0.0]), jnp.array([2.0, 2.0, 2.0])
    glo, gup = jax.grad(lambda lo, up: jnp.sum(one(x, lo, up)), argnums=(0, 1))(lo, up)
    np.testing.assert_allclose(glo, np_sigmoid(-x), rtol=1e-12)
    np.testing.assert_allclose(gup, np_sigmoid(x), rtol=1e-12)
    glo = jax.grad(lambda lo: jnp.sum(one(x, lo, None)))(jnp.array(1.0))
    assert float(glo) == 3.0


@pytest.mark.slow
def test_debug_nans_on_bounds_holes_and_the_bound_itself():
    lo = jnp.array([0.0, -jnp.inf, 0.0])
    up = jnp.array([1.0, jnp.inf, jnp.inf])
    p = jnp.array([0.0, 5.0, 0.0])  # on the bounds
    with jax.debug_nans(True):
        raw = inv(p, lo, up)
        g = jax.grad(lambda p: jnp.sum(inv(p, lo, up)))(p)
        h = jax.grad(lambda r: jnp.sum(one(r, lo, up)))(raw)
        hh = jax.grad(jax.grad(lambda r: one(r, 0.0, 1.0)))(jnp.float64(3.0))
    assert np.all(np.isfinite(np.asarray(raw))) and np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(h) > 0)
    # second derivative of the sigmoid map: w * s(x) s(-x) (s(-x) - s(x))
    s, t = np_sigmoid(3.0), np_sigmoid(-3.0)
    assert float(hh) == pytest.approx(s * t * (t - s), rel=1e-10)


# --- validation --------------------------------------------------------------


def test_unconstrain_rejects_values_outside_the_box_naming_the_path():
    params = {"layers": [{"tau": jnp.array([0.1, 0.3])}, {"tau": jnp.array([0.1])}]}
    lower, upper = jb.make_bounds(params)
    upper["layers"][0]["tau"] = 0.2
    with pytest.raises(ValueError, match=r"layers\.0\.tau .*1 .*0\.1"):
        jb.unconstrain(params, lower, upper)
    nan = {"layers": [{"tau": jnp.array([jnp.nan, 0.1])}, {"tau": jnp.array([0.1])}]}
    with pytest.raises(ValueError, match=r"layers\.0\.tau"):
        jb.unconstrain(nan, lower, upper)


def test_unconstrain_under_jit_treats_outside_values_as_on_the_bound():
    f = jax.jit(lambda p: inv(p, 0.0, 1.0))
    np.testing.assert_array_equal(f(jnp.array([-1.0, 2.0])), [-700.0, 700.0])


def test_bad_bounds_raise_naming_the_path():
    raw = {"a": {"b": jnp.zeros(2)}, "n": 1}
    with pytest.raises(ValueError, match=r"lower > upper at 'a\.b'"):
        jb.constrain(
            raw, {"a": {"b": 1.0}, "n": -math.inf}, {"a": {"b": 0.0}, "n": 1.0}
        )
    with pytest.raises(TypeError, match="'n'"):
        jb.constrain(raw, {"a": {"b": 0.0}, "n": 0.0}, {"a": {"b": 1.0}, "n": math.inf})
    with pytest.raises(ValueError, match=r"'a\.b'.*shape \(3,\)"):
        jb.unconstrain(
            raw, {"a": {"b": jnp.zeros(3)}, "n": -math.inf}, jb.make_bounds(raw)[1]
        )
    with pytest.raises(ValueError, match="structure"):
        jb.constrain(raw, {"a": 0.0, "n": -math.inf}, jb.make_bounds(raw)[1])


def test_inputs_are_not_mutated():
    raw = {"x": np.array([0.0, 1.0]), "y": [jnp.array(0.5)]}
    lower = {"x": np.array([0.0, -1.0]), "y": [0.0]}
    upper = {"x": 2.0, "y": [1.0]}
    copies = jax.tree_util.tree_map(np.array, (raw, lower, upper))
    jb.unconstrain(jb.constrain(raw, lower, upper), lower, upper)
    jax.tree_util.tree_map(np.testing.assert_array_equal, (raw, lower, upper), copies)


# --- property tests ----------------------------------------------------------

dtypes = st.sampled_from(FLOATS)


@st.composite
def boxes(draw, dtype):
    """A box representable in ``dtype``: ``(lo, up)``, ``None`` for an open side."""
    kind = draw(st.sampled_from(["two", "lower", "upper"]))
    scale = 1e2 if dtype in LOW else 1e6
    lo = draw(st.floats(-scale, scale))
    width = draw(st.floats(1e-2 if dtype in LOW else 1e-5, scale))
    lo = float(np.asarray(jnp.asarray(lo, dtype), np.float64))
    up = float(np.asarray(jnp.asarray(lo + width, dtype), np.float64))
    assume(up > lo)
    return (lo, up) if kind == "two" else (lo, None) if kind == "lower" else (None, up)


def as_array(b):
    """A bound as a 0-d array: a traced argument, so examples share one compile."""
    return None if b is None else np.asarray(b, np.float64)


def tolerance(p, lo, up, raw, dtype):
    """Round-trip error allowed: relative to the distance to the nearer bound.

    ``raw`` is stored in ``dtype`` (relative error eps), and the map turns an
    error ``e`` in ``raw`` into a relative error ``e`` in that distance; plus
    a few ulps of the values themselves.
    """
    eps = float(jnp.finfo(dtype).eps)
    dists = [np.abs(p - b) for b in (lo, up) if b is not None]
    near = np.minimum(*dists) if len(dists) == 2 else dists[0]
    scale = max(abs(b) for b in (lo, up) if b is not None)
    return 8 * eps * (np.abs(raw) + 1) * near + 4 * eps * (np.abs(p) + scale)


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(data=st.data(), dtype=dtypes)
def test_property_round_trip_inside(data, dtype):
    lo, up = data.draw(boxes(dtype))
    fracs = np.array(
        data.draw(st.lists(st.floats(1e-6, 1 - 1e-6), min_size=8, max_size=8))
    )
    if lo is not None and up is not None:
        p = lo + fracs * (up - lo)
    else:
        dist = (1e-2 if dtype in LOW else 1e-3) / fracs
        p = lo + dist if lo is not None else up - dist
    p = jnp.asarray(p, dtype)
    pw = np.asarray(p, np.float64)
    cw = wide(dtype)
    assume(lo is None or np.all(pw > cw(lo)))
    assume(up is None or np.all(pw < cw(up)))
    raw = inv(p, as_array(lo), as_array(up))
    assert raw.dtype == dtype
    back = np.asarray(one(raw, as_array(lo), as_array(up)), np.float64)
    tol = tolerance(pw, lo, up, np.asarray(raw, np.float64), dtype)
    assert np.all(np.abs(back - pw) <= tol), (back, pw, tol)


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(data=st.data(), dtype=dtypes)
def test_property_monotone_and_in_range(data, dtype):
    lo, up = data.draw(boxes(dtype))
    xs = data.draw(st.lists(st.floats(-120, 120), min_size=16, max_size=16))
    x = jnp.asarray(np.sort(xs), dtype)
    y = one(x, as_array(lo), as_array(up))
    yw = np.asarray(y, np.float64)
    assert np.all(np.diff(yw) >= 0)
    # in range as jaxbounds compares (in at least float32): zero bounds cost
    cw = wide(dtype)
    ycw = np.asarray(y.astype(cw))
    assert lo is None or np.all(ycw >= cw(lo))
    assert up is None or np.all(ycw <= cw(up))
    cost = jb.bounds_cost({"x": y}, {"x": as_array(lo)}, {"x": as_array(up)})
    assert float(cost) == 0.0
    # the inverse is monotone too
    r = np.asarray(inv(y, as_array(lo), as_array(up)), np.float64)
    assert np.all(np.diff(r) >= 0)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(
    x=st.floats(-80, 80),
    lo=st.floats(-1e3, 1e3),
    width=st.floats(1e-3, 1e3),
    dtype=st.sampled_from([jnp.float32, jnp.float64]),
)
def test_property_gradient_matches_analytic_slope(x, lo, width, dtype):
    cw = wide(dtype)
    lo, up = cw(lo), cw(lo + width)
    assume(up > lo)
    x = cw(x)
    grad = jax.jit(jax.grad(lambda r, lo, up: one(r, lo, up)))
    g = grad(jnp.asarray(x, dtype), as_array(lo), as_array(up))
    assert float(g) > 0
    ref = np_slope(np.float64(x), np.float64(lo), np.float64(up))
    assert float(g) == pytest.approx(float(ref), rel=128 * float(jnp.finfo(dtype).eps))


# --- equinox: optimise raw, constrain at the top of the loss -----------------


class Filter(eqx.Module):
    tau: jax.Array
    gain: jax.Array
    act: Callable = eqx.field(static=True, default=jnp.tanh)

    def __call__(self, t):
        return self.gain * jnp.exp(-t / self.tau)


@pytest.mark.slow
def test_equinox_model_trains_through_constrain_and_stays_in_the_box():
    model = Filter(tau=jnp.array(0.05), gain=jnp.array(1.0))
    lower, upper = jb.make_bounds(model)
    lower = eqx.tree_at(lambda m: (m.tau, m.gain), lower, (0.01, 0.0))
    upper = eqx.tree_at(lambda m: m.tau, upper, 0.1)
    t = jnp.linspace(0, 0.5, 50)

    def run(target_tau):
        target = 2.0 * jnp.exp(-t / target_tau)
        raw = jb.unconstrain(model, lower, upper)
        opt = optax.adam(0.05)
        state = opt.init(eqx.filter(raw, eqx.is_inexact_array))

        @eqx.filter_jit
        def step(raw, state):
            def loss(raw):
                m = jb.constrain(raw, lower, upper)
                return jnp.mean((m(t) - target) ** 2)

            grads = eqx.filter_grad(loss)(raw)
            updates, state = opt.update(grads, state)
            return eqx.apply_updates(raw, updates), state

        taus = []
        for _ in range(300):
            raw, state = step(raw, state)
            taus.append(float(jb.constrain(raw, lower, upper).tau))
        return jb.constrain(raw, lower, upper), np.array(taus)

    # the optimum inside the box is found
    fitted, taus = run(0.03)
    assert float(fitted.tau) == pytest.approx(0.03, rel=1e-3)
    assert float(fitted.gain) == pytest.approx(2.0, rel=1e-3)
    # an optimum beyond the upper bound: pressed against it, never beyond
    fitted, taus = run(0.5)
    assert np.all((taus > 0.01) & (taus <= np.float32(0.1)))
    assert 0.099 < float(fitted.tau) <= np.float32(0.1)
    assert jb.violations(fitted, lower, upper).ok


@pytest.mark.slow  # runs examples/reparam.py
def test_two_sided_map_is_monotone_through_zero_for_awkward_boxes():
    # Near raw = 0 both halves of the map land on the midpoint; rounding
    # must not make the map step down there (boxes with inexact midpoints).
    rng = np.random.default_rng(11)
    lo = rng.uniform(-3, 3, 64).astype(np.float32)
    width = (10.0 ** rng.uniform(-3, 3, 64)).astype(np.float32)
    raw = jnp.asarray(np.linspace(-1e-6, 1e-6, 201, dtype=np.float32))
    for a, w in zip(lo, width):
        b = np.float32(a + w)
        y = np.asarray(jb.constrain({"x": raw}, {"x": float(a)}, {"x": float(b)})["x"])
        assert np.all(np.diff(y) >= 0), (a, b)
