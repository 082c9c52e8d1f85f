"""Axes of units (jaxbounds/_constraints/_axes.py) against hand-written values
and NumPy's moveaxis / reshape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from jaxbounds._constraints._axes import as_rows, static_axis, unit_axes

# -- static_axis -------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis, want",
    [
        (None, None),
        (0, 0),
        (-2, -2),
        (np.int64(1), 1),
        ((0, 2), (0, 2)),
        ([2, -1], (2, -1)),
        ((np.int32(0), 1), (0, 1)),
        ((), ()),
    ],
)
def test_static_axis_is_none_an_int_or_a_tuple_of_ints(axis, want):
    got = static_axis(axis)
    assert got == want
    assert type(got) is type(want)
    if isinstance(got, tuple):
        assert all(type(a) is int for a in got)
    hash(got)  # a static field: hashable


@pytest.mark.parametrize(
    "axis", [True, False, 1.0, "0", "01", (0, 1.5), (True,), {"a": 0}]
)
def test_static_axis_refuses_what_is_not_an_axis(axis):
    with pytest.raises(TypeError, match="axis must be None, an int or a tuple of ints"):
        static_axis(axis)


def test_kinds_take_their_axis_through_static_axis():
    assert jb.MaxNorm(1.0, axis=np.int64(1)).axis == 1
    assert jb.MaxNorm(1.0, axis=[0, 2]).axis == (0, 2)
    with pytest.raises(TypeError, match="axis must be"):
        jb.MaxNorm(1.0, axis="0")


# -- unit_axes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis, ndim, want",
    [
        (None, 3, (0, 1, 2)),
        (None, 0, ()),
        (0, 3, (0,)),
        (-1, 3, (2,)),
        (-3, 3, (0,)),
        ((2, 0), 3, (0, 2)),
        ((-1, 0), 2, (0, 1)),
        ((), 2, ()),
    ],
)
def test_unit_axes_are_non_negative_and_sorted(axis, ndim, want):
    assert unit_axes(axis, ndim) == want


@pytest.mark.parametrize(
    "axis, ndim, match",
    [
        (3, 3, "axis 3 is out of range for a leaf of 3 dimension"),
        (-4, 3, "axis -4 is out of range for a leaf of 3 dimension"),
        (0, 0, "axis 0 is out of range for a leaf of 0 dimension"),
        ((0, 5), 2, "axis 5 is out of range for a leaf of 2 dimension"),
        ((1, 1), 2, r"axis \(1, 1\) names an axis twice"),
        ((1, -1), 2, r"axis \(1, -1\) names an axis twice"),
    ],
)
def test_unit_axes_errors(axis, ndim, match):
    with pytest.raises(ValueError, match=match):
        unit_axes(axis, ndim)


# -- as_rows -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, axes",
    [
        ((2, 3, 4), (0,)),
        ((2, 3, 4), (2,)),
        ((2, 3, 4), (1,)),
        ((2, 3, 4), (0, 2)),
        ((2, 3, 4), (0, 1, 2)),
        ((2, 3, 4), ()),
        ((5,), (0,)),
        ((), ()),
    ],
)
def test_as_rows_is_moveaxis_then_reshape_and_back_is_its_inverse(shape, axes):
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    rest = [a for a in range(x.ndim) if a not in axes]
    unit = int(np.prod([shape[a] for a in axes]))
    want = np.moveaxis(x, list(axes), list(range(len(rest), x.ndim)))
    want = want.reshape(-1, unit)
    rows, back = as_rows(jnp.asarray(x), axes)
    assert rows.shape == want.shape
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_array_equal(back(rows), x)
    # a function of the rows, mapped back: the unit sums land on every element
    sums = back(jnp.broadcast_to(rows.sum(axis=1, keepdims=True), rows.shape))
    np.testing.assert_array_equal(
        sums, np.broadcast_to(x.sum(axis=axes, keepdims=True), shape)
    )


def test_as_rows_under_jit_and_vmap():
    x = np.random.default_rng(0).normal(size=(4, 3, 2))

    def norms(v):
        rows, back = as_rows(v, (0, 2))
        n = jnp.linalg.norm(rows, axis=1, keepdims=True)
        return back(jnp.broadcast_to(n, rows.shape))

    want = np.broadcast_to(np.linalg.norm(x, axis=(0, 2), keepdims=True), x.shape)
    np.testing.assert_allclose(jax.jit(norms)(jnp.asarray(x)), want, rtol=1e-12)
    batch = np.stack([x, 2 * x])
    got = jax.vmap(norms)(jnp.asarray(batch))
    np.testing.assert_allclose(got, np.stack([want, 2 * want]), rtol=1e-12)
