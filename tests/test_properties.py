"""Property tests for bounds_cost and clip_to_bounds over random trees and dtypes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbounds as jb

from helpers import FLOATS, numpy_tree_cost

pytestmark = pytest.mark.slow  # 40 random trees per test, each compiled anew
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def leaf_with_bounds(draw):
    """A parameter leaf and its bounds: static floats, infinities or arrays."""
    dtype = draw(st.sampled_from(FLOATS))
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    values = draw(
        st.lists(
            st.floats(-40, 40, allow_nan=False, width=16),
            min_size=math.prod(shape),
            max_size=math.prod(shape),
        )
    )
    p = jnp.asarray(np.reshape(values, shape), dtype)
    lo = draw(st.one_of(st.just(-math.inf), st.floats(-20, 0, width=16)))
    width = draw(st.floats(0, 20, width=16))
    if width < 0.5 and lo != -math.inf:
        # A box narrower than the dtype's spacing may hold no representable
        # value at all (clip_to_bounds documents that case); pin to one.
        lo = float(jnp.asarray(lo, dtype).astype(jnp.float64))
        width = 0.0
    up = math.inf if draw(st.booleans()) else (0.0 if lo == -math.inf else lo) + width
    if shape and draw(st.booleans()):  # array bound over the last axis
        lo_arr = np.full(shape[-1:], lo, np.float32)
        lo_arr[0] = min(lo, up)
        lo = jnp.asarray(lo_arr)
    return p, lo, up


@st.composite
def trees(draw):
    """A nested dict/list/tuple tree of leaves with parallel bound trees."""
    n = draw(st.integers(1, 5))
    items = [draw(leaf_with_bounds()) for _ in range(n)]
    layout = draw(st.sampled_from(["dict", "list", "nested"]))
    if layout == "dict":
        build = lambda xs: {f"k{i}": x for i, x in enumerate(xs)}  # noqa: E731
    elif layout == "list":
        build = list
    else:
        build = lambda xs: {"layers": [(x,) for x in xs]}  # noqa: E731
    return tuple(build([it[j] for it in items]) for j in range(3))


@SETTINGS
@given(trees())
def test_cost_matches_numpy_is_nonnegative_zero_iff_inside_and_finite(tree):
    params, lower, upper = tree
    with jax.debug_nans(True):
        cost, grads = jax.value_and_grad(jb.bounds_cost)(params, lower, upper)
    cost = float(cost)
    expected = numpy_tree_cost(params, lower, upper)
    assert cost >= 0 and np.isfinite(cost)
    np.testing.assert_allclose(cost, expected, rtol=2e-5, atol=1e-6)
    assert (cost == 0) == (expected == 0)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)):
        assert g.dtype == p.dtype
        assert np.all(np.isfinite(np.asarray(g.astype(jnp.float32))))


@SETTINGS
@given(trees())
def test_clip_gives_zero_cost_keeps_dtype_and_inside_values(tree):
    params, lower, upper = tree
    clipped = jb.clip_to_bounds(params, lower, upper)
    assert float(jb.bounds_cost(clipped, lower, upper)) == 0.0
    was_inside = float(jb.bounds_cost(params, lower, upper)) == 0.0
    for c, p in zip(jax.tree.leaves(clipped), jax.tree.leaves(params)):
        assert c.dtype == p.dtype and c.shape == p.shape
        if was_inside:
            np.testing.assert_array_equal(
                np.asarray(c, np.float64), np.asarray(p, np.float64)
            )
