"""The free-set Gram matrices kept from step to step, against NumPy from scratch."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb import _memory
from jaxbounds._lbfgsb._kept import Kept, budget, new_kept, sync
from jaxbounds._lbfgsb._memory import new_memory, push, reset

SHAPES = {"big": (64, 80), "small": (3,)}  # 5120 >= KEEP_FROM; 3 redone every step


class Both(NamedTuple):
    """A memory with its kept products, as the solver's state carries them."""

    mem: Any
    kept: Kept

    def __getattr__(self, name):  # (the fields of either)
        return getattr(self.kept if name in Kept._fields else self.mem, name)


def fresh(x, m, dtype):
    return Both(new_memory(x, m, dtype), new_kept(x, m, dtype))


@functools.partial(jax.jit, static_argnums=3)
def PUSH(both, s, y, dtype, keep=True):
    """`push`, marking the written slot as the solver's step does (a new age)."""
    mem = push(both.mem, s, y, dtype, keep)
    written = both.kept.written | (mem.age != both.mem.age)
    return Both(mem, both.kept._replace(written=written))


@functools.partial(jax.jit, static_argnums=2)
def SYNC(both, free, dtype, refresh=False):
    """`sync`, with ``r`` the mask as 1.5 and 0 (a reduced gradient's zeros)."""
    r = {k: jnp.where(z, 1.5, 0.0).astype(dtype) for k, z in free.items()}
    kept, grams, dots = sync(both.mem, both.kept, free, r, dtype, refresh)
    return Both(both.mem, kept), grams, dots


def numpy_dots(mem, free):
    """``Y^T r`` and ``S^T r`` for `SYNC`'s ``r`` over every leaf."""
    m = mem.age.shape[0]
    s = np.concatenate([np.asarray(mem.s[k], float).reshape(m, -1) for k in SHAPES], 1)
    y = np.concatenate([np.asarray(mem.y[k], float).reshape(m, -1) for k in SHAPES], 1)
    r = np.concatenate([1.5 * np.asarray(free[k]).reshape(-1) for k in SHAPES])
    return np.stack([y @ r, s @ r])


def numpy_grams(mem, free, keys=tuple(SHAPES)):
    """``Y_F^T Y_F``, ``S_F^T Y_F``, ``S_A^T S_A`` over the leaves ``keys``."""
    m = mem.age.shape[0]
    s = np.concatenate([np.asarray(mem.s[k], float).reshape(m, -1) for k in keys], 1)
    y = np.concatenate([np.asarray(mem.y[k], float).reshape(m, -1) for k in keys], 1)
    z = np.concatenate([np.asarray(free[k]).reshape(-1) for k in keys])
    return np.stack([(y * z) @ y.T, (s * z) @ y.T, (s * ~z) @ s.T])


def random_tree(rng, dtype):
    return {k: jnp.asarray(rng.normal(size=v), dtype) for k, v in SHAPES.items()}


def flip(free, rng, count):
    """``free`` with ``count`` variables of the big leaf (and one small) flipped."""
    big = np.asarray(free["big"]).copy().reshape(-1)
    big[rng.choice(big.size, count, replace=False)] ^= True
    small = np.asarray(free["small"]).copy()
    small[rng.integers(3)] ^= True
    return {"big": jnp.asarray(big.reshape(SHAPES["big"])), "small": jnp.asarray(small)}


def synced(rng, m, pushes, dtype):
    """A memory of ``m`` slots after ``pushes`` random pairs, and its products
    kept at a random mask (returned too)."""
    mem = fresh(random_tree(rng, dtype), m, dtype)
    for _ in range(pushes):
        mem = PUSH(mem, random_tree(rng, dtype), random_tree(rng, dtype), dtype)
    free = {k: jnp.asarray(rng.uniform(size=v) < 0.5) for k, v in SHAPES.items()}
    mem, _, _ = SYNC(mem, free, dtype)
    return mem, free


@pytest.mark.parametrize(
    "dtype, rtol", [(jnp.float64, 1e-12), (jnp.float32, 2e-4)], ids=["f64", "f32"]
)
def test_kept_products_equal_the_masked_products_over_many_steps(dtype, rtol):
    # pushes (some rejected) and free sets that change by up to K variables:
    # every step but the first is incremental, and equals NumPy from scratch
    rng = np.random.default_rng(5)
    m = 4
    mem = fresh(random_tree(rng, dtype), m, dtype)
    free = {k: jnp.asarray(rng.uniform(size=v) < 0.5) for k, v in SHAPES.items()}
    incremental = 0
    for step in range(14):
        keep = step % 5 != 3
        mem = PUSH(mem, random_tree(rng, dtype), random_tree(rng, dtype), dtype, keep)
        free = flip(free, rng, [0, 1, 37, budget(5120)][step % 4])
        mem, grams, dots = SYNC(mem, free, dtype)
        want = numpy_grams(mem, free)
        scale = np.abs(want).max()
        np.testing.assert_allclose(grams, want, rtol=rtol, atol=rtol * scale)
        # W^T r from the same passes, incremental or from scratch
        want = numpy_dots(mem, free)
        np.testing.assert_allclose(
            dots, want, rtol=rtol, atol=rtol * np.abs(want).max()
        )
        assert not np.any(mem.written)
        incremental += int(np.max(mem.stale) > 0)
        # the memory keeps the big leaf's part
        kept = numpy_grams(mem, free, ("big",))
        np.testing.assert_allclose(mem.grams, kept, rtol=rtol, atol=rtol * scale)
    assert incremental >= 12  # (the first step starts from the empty mask: K < 5120)


def test_more_changes_than_the_budget_or_two_pushes_recompute_from_scratch():
    rng = np.random.default_rng(6)
    dtype = jnp.float64
    mem, free = synced(rng, 3, 3, dtype)
    mem = PUSH(mem, random_tree(rng, dtype), random_tree(rng, dtype), dtype)
    mem, _, _ = SYNC(mem, free, dtype)
    assert np.max(mem.stale) > 0  # incremental
    for count, pushes in [(budget(5120) + 1, 1), (2, 2)]:
        for _ in range(pushes):
            mem = PUSH(mem, random_tree(rng, dtype), random_tree(rng, dtype), dtype)
        free = flip(free, rng, count)
        mem, grams, _ = SYNC(mem, free, dtype)
        np.testing.assert_allclose(grams, numpy_grams(mem, free), rtol=1e-12)
        np.testing.assert_array_equal(mem.stale, 0)  # from scratch


@pytest.mark.parametrize("corrupt", ["drift", "negative"])
def test_drifted_products_are_refreshed(corrupt):
    rng = np.random.default_rng(7)
    dtype = jnp.float64
    mem = fresh(random_tree(rng, dtype), 3, dtype)
    free = {k: jnp.asarray(rng.uniform(size=v) < 0.5) for k, v in SHAPES.items()}
    for _ in range(4):
        mem = PUSH(mem, random_tree(rng, dtype), random_tree(rng, dtype), dtype)
        free = flip(free, rng, 5)
        mem, _, _ = SYNC(mem, free, dtype)
    assert np.max(mem.stale) > 0
    # the stalest slot other than the next fresh row: the one the check reads
    order = np.argsort(-np.asarray(mem.stale), kind="stable")
    k = int(order[1])
    yy = mem.grams[0]
    bad = yy[k, k] * (1 + 1e-9) if corrupt == "drift" else -1.0
    mem = mem._replace(kept=mem.kept._replace(grams=mem.grams.at[0, k, k].set(bad)))
    mem, grams, _ = SYNC(mem, free, dtype)  # no change, no push: a check only
    np.testing.assert_array_equal(mem.stale, 0)  # refreshed from scratch
    np.testing.assert_allclose(grams, numpy_grams(mem, free), rtol=1e-12)
    # and a refresh can be asked for
    mem, grams, _ = SYNC(mem, free, dtype, True)
    np.testing.assert_array_equal(mem.stale, 0)


def test_a_filling_memory_rebuilds_from_its_first_slots(monkeypatch):
    # 4 slots, emptied by a reset and holding one pair again: the rebuild
    # reads the first 2 slots (on large problems), so the empty slots' stale
    # rows give no products; the next steps update, with no drift found in
    # those empty slots
    monkeypatch.setattr(_memory, "FEW_FROM", 0)
    rng = np.random.default_rng(9)
    dtype = jnp.float64
    mem, free = synced(rng, 4, 4, dtype)
    mem = Both(reset(mem.mem), mem.kept)
    mem = PUSH(mem, random_tree(rng, dtype), random_tree(rng, dtype), dtype)
    mem, grams, dots = SYNC(mem, free, dtype, True)
    np.testing.assert_array_equal(mem.stale, 0)  # from scratch
    want, want_dots = numpy_grams(mem, free), numpy_dots(mem, free)
    np.testing.assert_allclose(grams[:, :1, :1], want[:, :1, :1], rtol=1e-12)
    np.testing.assert_allclose(dots[:, :1], want_dots[:, :1], rtol=1e-12)
    big = numpy_grams(mem, free, ("big",))
    np.testing.assert_allclose(mem.grams[:, :1, :1], big[:, :1, :1], rtol=1e-12)
    # (slots 2 and 3 unread: their stale rows give no products)
    np.testing.assert_array_equal(mem.grams[:, 2:, :], 0)
    np.testing.assert_array_equal(mem.grams[:, :, 2:], 0)
    for count in (3, 5):
        free = flip(free, rng, count)
        mem, grams, _ = SYNC(mem, free, dtype)
        np.testing.assert_allclose(
            grams[:, :1, :1], numpy_grams(mem, free)[:, :1, :1], rtol=1e-12
        )
    assert np.max(mem.stale) == 2  # updated, not rebuilt


def test_kept_products_under_vmap():
    # three fits, each with its own pairs and free sets; under vmap the
    # fallback is a select, and each fit's products are still its own
    rng = np.random.default_rng(8)
    dtype = jnp.float64
    batch = 3

    def stacked(make):
        trees = [make() for _ in range(batch)]
        return jax.tree_util.tree_map(lambda *v: jnp.stack(v), *trees)

    mem = jax.vmap(lambda x: fresh(x, 3, dtype))(
        stacked(lambda: random_tree(rng, dtype))
    )
    frees = [{k: jnp.asarray(rng.uniform(size=v) < 0.5) for k, v in SHAPES.items()}]
    frees = frees * batch
    vsync = jax.jit(jax.vmap(lambda mem, free: SYNC(mem, free, dtype)))
    vpush = jax.jit(jax.vmap(lambda mem, s, y: PUSH(mem, s, y, dtype)))
    for _ in range(5):
        s = stacked(lambda: random_tree(rng, dtype))
        mem = vpush(mem, s, stacked(lambda: random_tree(rng, dtype)))
        # fit 0 changes little, fit 1 over the budget, fit 2 not at all
        frees = [flip(frees[0], rng, 3), flip(frees[1], rng, 400), frees[2]]
        free = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *frees)
        mem, grams, _ = vsync(mem, free)
        for b in range(batch):
            one = jax.tree_util.tree_map(lambda v, b=b: v[b], mem)
            np.testing.assert_allclose(
                grams[b], numpy_grams(one, frees[b]), rtol=1e-12, atol=1e-12
            )
