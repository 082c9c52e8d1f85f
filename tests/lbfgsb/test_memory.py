"""The memory and its compact form against a dense BFGS matrix built in NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._memory import (
    FEW_FROM,
    b_times,
    compact,
    few_slots,
    first_columns,
    first_slots,
    holds_at_most,
    inv_spd,
    new_memory,
    push,
    reset,
    w_dot,
    widen,
)

from .problems import dense_bfgs, memory_of, random_pairs


@pytest.mark.parametrize("pushes", [1, 3, 5, 8])
def test_compact_form_equals_dense_bfgs(pushes):
    # 8 pushes into 5 slots: the memory wraps and forgets the oldest 3
    n, m = 7, 5
    rng = np.random.default_rng(pushes)
    pairs = random_pairs(n, pushes, rng)
    mem = memory_of(pairs, n, m)
    dense = dense_bfgs(pairs, m)
    cp = compact(mem)
    for _ in range(3):
        v = rng.normal(size=n)
        got = np.asarray(b_times(mem, cp, jnp.asarray(v), jnp.float64))
        np.testing.assert_allclose(got, dense @ v, rtol=1e-10, atol=1e-10)
    # the stored products are the pairs' own
    kept = pairs[-m:]
    order = np.argsort(np.asarray(mem.age))[-len(kept) :]
    s = np.stack([p[0] for p in kept])
    y = np.stack([p[1] for p in kept])
    np.testing.assert_allclose(np.asarray(mem.ss)[np.ix_(order, order)], s @ s.T)
    np.testing.assert_allclose(np.asarray(mem.sy)[np.ix_(order, order)], s @ y.T)
    assert float(mem.theta) == pytest.approx(y[-1] @ y[-1] / (s[-1] @ y[-1]))


def test_compact_form_on_a_tree_of_leaves():
    # the same pairs as one vector and split over two leaves of a tree
    n, m = 6, 3
    pairs = random_pairs(n, 4, np.random.default_rng(7))
    dense = dense_bfgs(pairs, m)
    tree = lambda v: {"a": jnp.asarray(v[:2]), "b": jnp.asarray(v[2:]).reshape(2, 2)}  # noqa: E731
    mem = new_memory(tree(np.zeros(n)), m, jnp.float64)
    for s, y in pairs:
        mem = push(mem, tree(s), tree(y), jnp.float64)
    v = np.arange(1.0, n + 1)
    got = b_times(mem, compact(mem), tree(v), jnp.float64)
    flat = np.concatenate([np.asarray(got["a"]), np.asarray(got["b"]).ravel()])
    np.testing.assert_allclose(flat, dense @ v, rtol=1e-10)


def test_empty_and_reset_memory_is_the_identity():
    n = 4
    mem = memory_of(random_pairs(n, 3, np.random.default_rng(1)), n, 3)
    v = jnp.arange(1.0, n + 1)
    for empty in (new_memory(jnp.zeros(n), 3, jnp.float64), reset(mem)):
        np.testing.assert_array_equal(b_times(empty, compact(empty), v, jnp.float64), v)


def test_inverse_of_small_spd_matrices():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 20):
        a = rng.normal(size=(n, n))
        spd = a @ a.T + 0.1 * np.eye(n)
        got = jax.jit(inv_spd)(jnp.asarray(spd))
        np.testing.assert_allclose(got, np.linalg.inv(spd), rtol=1e-8, atol=1e-10)


def test_push_gives_the_written_slot_a_new_age_and_nothing_else():
    # (the solver marks a slot written for the kept products by its new age)
    mem = new_memory(jnp.zeros(3), 2, jnp.float64)
    one = jnp.ones(3)
    for _ in range(3):  # the slots wrap: the oldest is written, ages grow
        before = np.asarray(mem.age)
        mem = push(mem, one, 2 * one, jnp.float64)
        changed = np.asarray(mem.age) != before
        assert changed.sum() == 1 and np.asarray(mem.age)[changed] > before.max()
    skipped = push(mem, one, 3 * one, jnp.float64, keep=False)
    np.testing.assert_array_equal(skipped.age, mem.age)
    np.testing.assert_array_equal(skipped.s, mem.s)


def test_rows_are_stored_flat_and_read_back_in_the_point_shape():
    # a matrix leaf's pairs are stored as flat rows (XLA's CPU backend copies a
    # multi-dimensional memory around its in-place writes); products and W u
    # are those of the pairs in their own shape
    rng = np.random.default_rng(7)
    x = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(2)}
    mem = new_memory(x, 2, jnp.float64)
    assert mem.s["w"].shape == (2, 12) and mem.y["b"].shape == (2, 2)
    s = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=2)}
    y = {"w": s["w"] + 0.1 * rng.normal(size=(3, 4)), "b": 2 * s["b"]}
    mem = push(
        mem, *(jax.tree_util.tree_map(jnp.asarray, t) for t in (s, y)), jnp.float64
    )
    np.testing.assert_array_equal(mem.s["w"][0], s["w"].reshape(-1))
    flat_s = np.concatenate([s["w"].reshape(-1), s["b"]])
    flat_y = np.concatenate([y["w"].reshape(-1), y["b"]])
    np.testing.assert_allclose(mem.sy[0, 0], flat_s @ flat_y, rtol=1e-13)
    v = {
        "w": jnp.asarray(rng.normal(size=(3, 4))),
        "b": jnp.asarray(rng.normal(size=2)),
    }
    bv = b_times(mem, compact(mem), v, jnp.float64)
    assert bv["w"].shape == (3, 4)
    # one pair: B v = theta v - W M W^T v, the BFGS update of theta I
    theta = (flat_y @ flat_y) / (flat_s @ flat_y)
    b0 = theta * np.eye(14)
    bs = b0 @ flat_s
    dense = (
        b0
        - np.outer(bs, bs) / (flat_s @ bs)
        + np.outer(flat_y, flat_y) / (flat_s @ flat_y)
    )
    flat_v = np.concatenate([np.asarray(v["w"]).reshape(-1), np.asarray(v["b"])])
    got = np.concatenate([np.asarray(bv["w"]).reshape(-1), np.asarray(bv["b"])])
    np.testing.assert_allclose(got, dense @ flat_v, rtol=1e-10)


def test_few_slots_only_for_large_problems_with_two_slots_or_more():
    assert few_slots(10, FEW_FROM) == 5
    assert few_slots(7, FEW_FROM) == 3
    assert few_slots(10, FEW_FROM - 1) == 0
    assert few_slots(1, FEW_FROM) == 0


@pytest.mark.parametrize("pushes", [1, 2, 3])
def test_the_first_slots_of_a_filling_memory_are_the_same_matrix(pushes):
    # 6 slots holding 1 to 3 pairs: the first 3 give the same B, and the
    # W^T v of their 2 * 3 columns, widened, is the memory's own
    n, m, k = 7, 6, 3
    rng = np.random.default_rng(pushes)
    mem = memory_of(random_pairs(n, pushes, rng), n, m)
    assert bool(holds_at_most(mem, k))
    few = first_slots(mem, k)
    v = jnp.asarray(rng.normal(size=n))
    np.testing.assert_allclose(
        b_times(few, compact(few), v, jnp.float64),
        b_times(mem, compact(mem), v, jnp.float64),
        rtol=1e-13,
    )
    wv = w_dot(mem, compact(mem), [v], jnp.float64)[:, 0]
    wv_few = w_dot(few, compact(few), [v], jnp.float64)[:, 0]
    np.testing.assert_array_equal(widen(wv_few, m), wv)
    np.testing.assert_array_equal(first_columns(wv, k), wv_few)


def test_holds_at_most_counts_the_slots_in_use():
    n, m = 4, 4
    pairs = random_pairs(n, 6, np.random.default_rng(2))
    mem = new_memory(jnp.zeros(n), m, jnp.float64)
    held = []
    for s, y in pairs:
        mem = push(mem, jnp.asarray(s), jnp.asarray(y), jnp.float64)
        held.append(bool(holds_at_most(mem, 2)))
    assert held == [True, True, False, False, False, False]
    # a reset memory fills from its first slot again
    mem = push(
        reset(mem), jnp.asarray(pairs[0][0]), jnp.asarray(pairs[0][1]), jnp.float64
    )
    assert bool(holds_at_most(mem, 1)) and not bool(holds_at_most(mem, 0))
