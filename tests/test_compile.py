"""jaxbounds._compile: the one jit boundary (`compiled`) and `per_leaf`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbounds._compile import compiled, per_leaf

from helpers import count_compilations


def affine(p, lo, up, u, *, scale):
    return p * scale + (0 if lo is None else lo) + (0 if up is None else up) + u


def test_per_leaf_maps_fn_over_leaves_bounds_and_extra_lists():
    kernel = per_leaf(affine)
    leaves = [jnp.array([1.0, 2.0]), 3.0]  # a Python-float leaf becomes an array
    got = kernel(leaves, [0.5, None], [None, 10.0], [1.0, 2.0], scale=2.0)
    np.testing.assert_allclose(got[0], [2 + 0.5 + 1, 4 + 0.5 + 1])
    np.testing.assert_allclose(got[1], 6 + 10 + 2)
    assert isinstance(got[1], jax.Array) and got[1].shape == ()


def test_changing_float_bounds_and_shared_values_compiles_nothing():
    kernel = per_leaf(affine)
    leaves = [jnp.ones(2), jnp.ones(3)]
    kernel(leaves, [0.0, 1.0], [None, 2.0], [0.0, 0.0], scale=1.0)  # warm up
    with count_compilations() as seen:
        for k in map(float, range(5)):
            got = kernel(leaves, [k, 1.0], [None, 2.0 * k], [0.0, 0.0], scale=k)
            np.testing.assert_allclose(got[0], k + k)
    assert seen == []


def test_a_new_bound_pattern_is_a_new_compilation():
    kernel = per_leaf(affine)
    leaves = [jnp.ones(2)]
    kernel(leaves, [0.0], [None], [0.0], scale=1.0)
    with count_compilations() as seen:
        kernel(leaves, [None], [None], [0.0], scale=1.0)
    assert len(seen) == 1


def test_static_arguments_are_compile_time_constants():
    calls = []

    def fn(p, lo, up, *, mode):
        calls.append(mode)  # runs while tracing only
        return p + 1 if mode == "plus" else p - 1

    kernel = per_leaf(fn, static=("mode",))
    leaves = [jnp.zeros(2)]
    np.testing.assert_array_equal(kernel(leaves, [0.0], [None], mode="plus")[0], 1)
    np.testing.assert_array_equal(kernel(leaves, [0.0], [None], mode="minus")[0], -1)
    kernel(leaves, [1.0], [None], mode="plus")
    assert calls == ["plus", "minus"]


def test_inside_a_callers_jit_the_kernel_is_traced_into_its_program():
    seen = []

    @compiled
    def kernel(leaves, lows, ups):
        seen.append(type(lows[0]).__name__)
        return [p + lo for p, lo in zip(leaves, lows)]

    out = jax.jit(lambda x: kernel([x], [0.5], [None])[0])(jnp.ones(2))
    np.testing.assert_allclose(out, 1.5)
    # the caller's constant bound reached the kernel as it is (not packed)
    assert seen == ["float"]
