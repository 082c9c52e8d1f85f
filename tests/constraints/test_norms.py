"""MaxNorm (ord 1, 2, inf), MinMaxNorm, UnitNorm against NumPy, every axis and dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from constraints.oracles import (
    jitted,
    keras_max_norm,
    l1_ball_row,
    max_norm_low_precision,
    per_row,
)
from jaxbounds import MaxNorm, MinMaxNorm, UnitNorm

project, distance = jitted("project"), jitted("distance")
constrain, unconstrain = jitted("constrain"), jitted("unconstrain")

DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]
AXES = [0, -1, None, (0, 2)]


def _x(shape=(5, 4, 3), scale=3.0, seed=0):
    return np.random.default_rng(seed).normal(size=shape) * scale


def _cd(dtype):
    return np.float64 if dtype == jnp.float64 else np.float32


@pytest.mark.parametrize("axis", AXES)
def test_max_norm_l2_is_keras_formula(axis):
    x = _x()
    got = project(MaxNorm(1.5, axis=axis), jnp.asarray(x))
    np.testing.assert_allclose(got, keras_max_norm(x, 1.5, axis), rtol=1e-6)


@pytest.mark.parametrize("axis", [0, 2])
def test_max_norm_l1_is_duchi(axis):
    x = _x()
    got = project(MaxNorm(2.0, axis=axis, ord=1), jnp.asarray(x))
    np.testing.assert_allclose(got, per_row(l1_ball_row, x, axis, 2.0), atol=1e-12)


def test_max_norm_inf_clips():
    x = _x()
    got = project(MaxNorm(0.5, axis=0, ord=np.inf), jnp.asarray(x))
    np.testing.assert_array_equal(got, np.clip(x, -0.5, 0.5))


def _norms(y, axis, ord):
    """Norms of ``y`` per unit, summed by NumPy in the compute dtype."""
    y = np.asarray(y)
    if ord == 2:
        return np.sqrt(np.sum(np.square(y), axis=axis))
    if ord == 1:
        return np.sum(np.abs(y), axis=axis)
    return np.max(np.abs(y), axis=axis)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ord", [pytest.param(1, marks=pytest.mark.slow), 2, np.inf])
def test_max_norm_holds_exactly(dtype, ord):
    # a Python-float radius not representable in any dtype; the inequality
    # as computed (NumPy's own summation, in the compute dtype)
    r, axes = 1.1, (0, (0, 2))
    x = jnp.asarray(_x(scale=5.0), dtype)
    ys = jax.jit(lambda x: [project(MaxNorm(r, axis=a, ord=ord), x) for a in axes])(x)
    for axis, y in zip(axes, ys):
        assert y.dtype == x.dtype
        yc = np.asarray(y.astype(_cd(dtype)))
        n = _norms(yc, axis, ord)
        assert (n <= _cd(dtype)(r)).all(), n.max()
        # and it is the projection, to the dtype's precision
        ref = project(
            MaxNorm(r, axis=axis, ord=ord), jnp.asarray(np.asarray(x, np.float64))
        )
        tol = float(jnp.finfo(dtype).eps) * 8
        np.testing.assert_allclose(yc, np.asarray(ref), atol=tol * 5, rtol=tol)


def test_max_norm_inside_is_untouched():
    x = jnp.asarray(_x(scale=0.01), jnp.float32)
    assert (project(MaxNorm(1.0, axis=0), x) == x).all()


def test_max_norm_distance_and_gradient():
    x = _x()
    d = distance(MaxNorm(1.0, axis=0), jnp.asarray(x))
    n = np.linalg.norm(x, axis=0, keepdims=True)
    np.testing.assert_allclose(d, np.maximum(n - 1.0, 0), rtol=1e-12)
    g = jax.grad(lambda x: distance(MaxNorm(1.0, axis=0), x).sum())(jnp.asarray(x))
    np.testing.assert_allclose(g, np.where(n > 1, x / n, 0), rtol=1e-12)
    d1 = distance(MaxNorm(1.0, axis=0, ord=1), jnp.asarray(x))
    ref = per_row(l1_ball_row, x, 0, 1.0)
    np.testing.assert_allclose(d1, np.linalg.norm(x - ref, axis=0, keepdims=True))


@pytest.mark.parametrize(
    "ord",
    [
        pytest.param(1, marks=pytest.mark.slow),
        2,
        pytest.param(np.inf, marks=pytest.mark.slow),
    ],
)
def test_max_norm_radial_map_round_trip(ord):
    c = MaxNorm(2.0, axis=0, ord=ord)
    u = jnp.asarray(_x(scale=0.5))
    x = constrain(c, u)
    n = np.asarray(c.measure(x))
    assert (n < 2.0).all()
    np.testing.assert_allclose(unconstrain(c, x), u, rtol=1e-6, atol=1e-9)
    far = constrain(c, jnp.full((3, 2), 1e4))
    np.testing.assert_allclose(far, project(c, jnp.full((3, 2), 1e4)), rtol=1e-12)
    assert (np.asarray(c.measure(far)) <= 2.0).all()


def test_max_norm_errors():
    with pytest.raises(ValueError, match="max_value must be a finite number > 0"):
        MaxNorm(0.0)
    with pytest.raises(ValueError, match="max_value"):
        MaxNorm(-1.0, axis=0)
    with pytest.raises(ValueError, match="ord must be 1, 2 or inf"):
        MaxNorm(1.0, ord=3)
    with pytest.raises(ValueError, match="out of range"):
        project(MaxNorm(1.0, axis=2), jnp.ones((2, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, pytest.param(1, marks=pytest.mark.slow), None])
def test_min_max_norm(dtype, axis):
    x = _x((6, 5), seed=1)
    x[:, 0] *= 1e-3  # one tiny unit for axis=0
    lo, hi = 0.7, 1.3
    ref = (
        x
        * np.clip(np.linalg.norm(x, axis=axis, keepdims=True), lo, hi)
        / np.linalg.norm(x, axis=axis, keepdims=True)
    )
    y = jax.jit(lambda x: project(MinMaxNorm(lo, hi, axis=axis), x))(
        jnp.asarray(x, dtype)
    )
    yc = jnp.asarray(y).astype(_cd(dtype))
    n = jnp.sqrt(jnp.sum(yc * yc, axis=axis))
    assert bool(
        jnp.all((n <= jnp.asarray(hi, yc.dtype)) & (n >= jnp.asarray(lo, yc.dtype)))
    )
    tol = float(jnp.finfo(dtype).eps) * 8
    np.testing.assert_allclose(yc, ref, rtol=tol, atol=tol)


def test_min_max_norm_zero_unit_stays_and_violates():
    c = MinMaxNorm(0.5, 1.0, axis=0)
    x = jnp.array([[0.0, 3.0], [0.0, 4.0]])
    y = project(c, x)
    np.testing.assert_allclose(y, [[0.0, 0.6], [0.0, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(distance(c, y), [[0.5, 0.0]], atol=1e-7)
    with pytest.raises(ValueError, match="min_value <= max_value"):
        MinMaxNorm(2.0, 1.0)


def test_min_max_norm_map_lands_in_shell():
    c = MinMaxNorm(0.5, 2.0, axis=0)
    u = jnp.asarray(_x((4, 3)))
    n = np.linalg.norm(np.asarray(constrain(c, u)), axis=0)
    assert ((n >= 0.5 - 1e-6) & (n <= 2.0)).all()
    x = project(c, jnp.asarray(_x((4, 3), seed=3)))
    np.testing.assert_allclose(constrain(c, unconstrain(c, x)), x, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, pytest.param((0, 1), marks=pytest.mark.slow)])
def test_unit_norm(dtype, axis):
    x = _x((4, 3, 2), seed=2)
    y = project(UnitNorm(axis=axis), jnp.asarray(x, dtype))
    n = np.linalg.norm(
        np.asarray(y.astype(jnp.float64)).reshape(-1)
        if axis is None
        else np.asarray(y.astype(jnp.float64)),
        axis=None if axis is None else axis,
    )
    np.testing.assert_allclose(n, 1.0, atol=4 * float(jnp.finfo(dtype).eps))
    # the projected point is on the set as the distance sees it
    assert float(jnp.max(distance(UnitNorm(axis=axis), y))) == 0.0
    ref = x / np.linalg.norm(x, axis=axis, keepdims=True)
    np.testing.assert_allclose(
        np.asarray(y.astype(jnp.float64)), ref, atol=2 * float(jnp.finfo(dtype).eps)
    )
    d = distance(UnitNorm(axis=axis), jnp.asarray(x))
    np.testing.assert_allclose(
        d, np.abs(np.linalg.norm(x, axis=axis, keepdims=True) - 1)
    )


def test_vmap_over_radii_is_a_loop():
    x = jnp.asarray(_x((5, 4)))
    radii = jnp.linspace(0.5, 3.0, 7)
    batched = jax.jit(jax.vmap(lambda r: project(MaxNorm(r, axis=0), x)))(radii)
    loop = jax.jit(lambda r: project(MaxNorm(r, axis=0), x))
    for r, b in zip(radii, batched):
        np.testing.assert_array_equal(b, loop(float(r)))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["f16", "bf16"])
def test_max_norm_low_precision_units_are_rounded_toward_zero_bit_for_bit(dtype):
    """The shrunk unit is rounded toward zero into the leaf's dtype, not to nearest.

    Units of two elements (one correctly rounded float32 sum), so the NumPy
    oracle is exact; the data has elements whose nearest rounding is upward,
    which `fit`'s norm check alone would not pin.
    """
    x = (np.random.default_rng(5).normal(size=(2, 16)) * 3).astype(dtype)
    want = max_norm_low_precision(x, 1.0, 0)
    xc = x.astype(np.float32)
    n = np.sqrt(np.sum(np.square(xc), axis=0, keepdims=True))
    aim = np.float32(1) - 4 * np.finfo(np.float32).eps
    nearest = (xc * (aim / n)).astype(dtype)  # the shrink rounded to nearest
    assert (n > 1).all() and (nearest != want).any()  # the data tells them apart
    bits = np.uint16
    got = np.asarray(project(MaxNorm(1.0, axis=0), jnp.asarray(x)))
    np.testing.assert_array_equal(got.view(bits), want.view(bits))
    c = jb.Constraints(("w", MaxNorm(1.0, axis=0)))
    got = np.asarray(jb.project({"w": jnp.asarray(x)}, c)["w"])
    np.testing.assert_array_equal(got.view(bits), want.view(bits))
