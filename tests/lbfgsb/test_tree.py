"""The solver's tree arithmetic against NumPy on the ravelled vectors.

Every function of `_tree` works leaf by leaf on a pytree; the reference
ravels the tree into one float64 vector (or an ``(m, n)`` matrix for a
memory) and uses NumPy's own dot products, minima and masks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._tree import (
    GRAM_BLOCK,
    clip_tree,
    free_grams,
    largest,
    leaves,
    mem_combine,
    mem_dot,
    reach,
    row_shape,
    smallest,
    total,
    vdot,
)

jax.config.update("jax_enable_x64", True)

SHAPES = {"a": (3, 4), "b": (5,), "c": ()}


def random_tree(rng, lead=()):
    return {k: rng.normal(size=lead + s) for k, s in SHAPES.items()}


def ravel(tree, lead=()):
    """A tree's leaves as one vector (or rows of one, with a leading axis)."""
    n = int(np.prod(lead))
    return np.concatenate(
        [np.asarray(v, float).reshape(n or 1, -1) for v in leaves(tree)], axis=1
    ).reshape(lead + (-1,))


def as_jax(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


def test_vdot_and_total_are_numpy_dot_and_sum():
    rng = np.random.default_rng(0)
    a, b = random_tree(rng), random_tree(rng)
    got = vdot(as_jax(a), as_jax(b), jnp.float64)
    np.testing.assert_allclose(float(got), ravel(a) @ ravel(b), rtol=1e-13)
    assert got.dtype == jnp.float64
    # accumulated in the dtype asked for, over float32 leaves
    half = vdot(jax.tree_util.tree_map(jnp.float32, a), as_jax(b), jnp.float32)
    assert half.dtype == jnp.float32
    assert float(total([], jnp.float32)) == 0.0
    assert float(total([jnp.array(1.5), jnp.array(2)], jnp.float64)) == 3.5


@pytest.mark.parametrize("fn, ref", [(largest, max), (smallest, min)])
def test_largest_and_smallest_and_their_empty_value(fn, ref):
    values = [jnp.array(2.0), jnp.array(-3.5, jnp.float32), jnp.array(7)]
    assert float(fn(values, jnp.float64, 0.0)) == ref(2.0, -3.5, 7.0, 0.0)
    # no values: the given empty value, in the dtype
    out = fn([], jnp.float32, math.inf)
    assert out.dtype == jnp.float32 and float(out) == math.inf
    assert float(fn([], jnp.float64, -1.0)) == -1.0
    # the empty value takes part: it is the start of the fold
    assert float(fn([jnp.array(5.0)], jnp.float64, 10.0)) == ref(5.0, 10.0)


def numpy_reach(x, d, lo, up, cap):
    """The largest ``a`` in ``[0, cap]`` with ``lo <= x + a d <= up``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(d > 0, (up - x) / d, np.where(d < 0, (lo - x) / d, np.inf))
    return min(cap, float(np.min(np.clip(a, 0, np.inf), initial=np.inf)))


@pytest.mark.parametrize("cap", [1.0, math.inf])
def test_reach_is_the_step_to_the_nearest_wall(cap):
    rng = np.random.default_rng(1)
    x = random_tree(rng)
    d = random_tree(rng)
    lo = jax.tree_util.tree_map(lambda v: v - rng.uniform(0.1, 3, v.shape), x)
    up = jax.tree_util.tree_map(lambda v: v + rng.uniform(0.1, 3, v.shape), x)
    lo["b"][1], up["a"][0, 0] = -np.inf, np.inf  # open sides
    d["b"][2] = 0.0  # a coordinate that does not move
    got = reach(*map(as_jax, (x, d, lo, up)), jnp.float64, cap)
    want = numpy_reach(*(ravel(t) for t in (x, d, lo, up)), cap)
    assert float(got) == pytest.approx(want, rel=1e-14)
    # the point reached is inside, and on a wall unless the cap binds
    end = ravel(x) + float(got) * ravel(d)
    assert np.all(end >= ravel(lo) - 1e-12) and np.all(end <= ravel(up) + 1e-12)


def test_reach_without_walls_in_the_way_is_the_cap():
    x = {"a": jnp.zeros(3)}
    d = {"a": jnp.array([1.0, -1.0, 0.0])}
    lo, up = {"a": jnp.full(3, -jnp.inf)}, {"a": jnp.full(3, jnp.inf)}
    assert float(reach(x, d, lo, up, jnp.float64, math.inf)) == math.inf
    assert float(reach(x, d, lo, up, jnp.float64, 1e10)) == 1e10
    # a point on its wall, pushed into it: no step
    up = {"a": jnp.array([0.0, 1.0, 1.0])}
    assert float(reach(x, d, lo, up, jnp.float64, 1.0)) == 0.0


def test_clip_tree_is_numpy_clip():
    rng = np.random.default_rng(2)
    x = random_tree(rng)
    lo = jax.tree_util.tree_map(lambda v: np.full(v.shape, -0.5), x)
    up = jax.tree_util.tree_map(lambda v: np.full(v.shape, 0.3), x)
    up["b"][:] = np.inf
    got = clip_tree(*map(as_jax, (x, lo, up)))
    np.testing.assert_array_equal(ravel(got), np.clip(ravel(x), ravel(lo), ravel(up)))
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(x)


@pytest.mark.parametrize("flat_rows", [False, True], ids=["shaped rows", "flat rows"])
def test_mem_dot_and_mem_combine_are_matrix_products(flat_rows):
    rng = np.random.default_rng(3)
    m, k = 4, 3
    mem = random_tree(rng, (m,))
    vs = random_tree(rng, (k,))
    stored = {key: v.reshape(m, -1) for key, v in mem.items()} if flat_rows else mem
    points = [as_jax({key: v[i] for key, v in vs.items()}) for i in range(k)]
    got = mem_dot(as_jax(stored), points, jnp.float64)
    assert got.shape == (m, k)
    np.testing.assert_allclose(got, ravel(mem, (m,)) @ ravel(vs, (k,)).T, rtol=1e-13)
    coef = rng.normal(size=m)
    like = as_jax({key: np.zeros(sh) for key, sh in SHAPES.items()})
    comb = mem_combine(jnp.asarray(coef), as_jax(stored), like)
    assert {k: v.shape for k, v in comb.items()} == SHAPES
    np.testing.assert_allclose(ravel(comb), coef @ ravel(mem, (m,)), rtol=1e-13)


def test_memory_rows_are_flat_and_free_grams_read_them():
    assert row_shape(jnp.zeros((3, 4, 5))) == (60,)
    assert row_shape(jnp.zeros(())) == (1,)
    rng = np.random.default_rng(5)
    m = 3
    s, y = random_tree(rng, (m,)), random_tree(rng, (m,))
    free = {k: rng.uniform(size=sh) < 0.5 for k, sh in SHAPES.items()}
    r = random_tree(rng)
    flat = [{k: v.reshape(m, -1) for k, v in t.items()} for t in (s, y)]
    shaped = free_grams(*map(as_jax, (s, y, free, r)), jnp.float64)
    flat_rows = free_grams(*map(as_jax, (*flat, free, r)), jnp.float64)
    for a, b in zip(shaped, flat_rows):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_free_grams_of_a_long_row_add_up_its_blocks():
    # a row past two blocks, with a tail: the blocked sum equals NumPy's
    rng = np.random.default_rng(6)
    m, n = 3, 2 * GRAM_BLOCK + 37
    s, y = rng.normal(size=(m, n)), rng.normal(size=(m, n))
    z = rng.uniform(size=n) < 0.5
    r = rng.normal(size=n)
    grams, dots = free_grams(*map(jnp.asarray, (s, y, z, r)), jnp.float64)
    yy, sy, ss = grams
    np.testing.assert_allclose(yy, y[:, z] @ y[:, z].T, rtol=1e-12)
    np.testing.assert_allclose(sy, s[:, z] @ y[:, z].T, rtol=1e-12)
    np.testing.assert_allclose(ss, s[:, ~z] @ s[:, ~z].T, rtol=1e-12)
    # and W^T r from the same blocks
    np.testing.assert_allclose(dots, np.stack([y @ r, s @ r]), rtol=1e-12)


def test_free_grams_are_the_masked_gram_matrices():
    rng = np.random.default_rng(4)
    m = 3
    s, y = random_tree(rng, (m,)), random_tree(rng, (m,))
    free = {k: rng.uniform(size=sh) < 0.5 for k, sh in SHAPES.items()}
    r = random_tree(rng)
    (yy, sy, ss), dots = free_grams(*map(as_jax, (s, y, free, r)), jnp.float64)
    sm, ym, z = ravel(s, (m,)), ravel(y, (m,)), ravel(free).astype(bool)
    np.testing.assert_allclose(yy, ym[:, z] @ ym[:, z].T, rtol=1e-12)
    np.testing.assert_allclose(sy, sm[:, z] @ ym[:, z].T, rtol=1e-12)
    np.testing.assert_allclose(ss, sm[:, ~z] @ sm[:, ~z].T, rtol=1e-12)
    np.testing.assert_allclose(dots, np.stack([ym @ ravel(r), sm @ ravel(r)]))


@pytest.mark.parametrize("n", [2 * GRAM_BLOCK + 37, 301], ids=["blocked", "one"])
def test_free_grams_of_the_first_slots_read_those_rows_only(n):
    # a memory filling up: the products of its first k rows, zero elsewhere
    rng = np.random.default_rng(7)
    m, k = 5, 2
    s, y = rng.normal(size=(m, n)), rng.normal(size=(m, n))
    z = rng.uniform(size=n) < 0.5
    r = rng.normal(size=n)
    grams, dots = free_grams(*map(jnp.asarray, (s, y, z, r)), jnp.float64, slots=k)
    want = np.zeros((3, m, m))
    sk, yk = s[:k], y[:k]
    want[:, :k, :k] = [
        yk[:, z] @ yk[:, z].T,
        sk[:, z] @ yk[:, z].T,
        sk[:, ~z] @ sk[:, ~z].T,
    ]
    np.testing.assert_allclose(grams, want, rtol=1e-12, atol=0)
    want_dots = np.zeros((2, m))
    want_dots[:, :k] = [yk @ r, sk @ r]
    np.testing.assert_allclose(dots, want_dots, rtol=1e-12, atol=0)
