"""Breakpoint selection: the path's breakpoints, the chunk sizes, the gathered chunk.

Against hand-computed times and the chunk's breakpoints found in NumPy.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb import _breakpoints
from jaxbounds._lbfgsb._breakpoints import (
    breakpoints,
    chunk_rows,
    gather_chunk,
    one_chunk,
)
from jaxbounds._lbfgsb._memory import compact, new_memory, push


def test_breakpoints():
    x = jnp.array([0.0, 0.5, 0.5, 1.0, 0.3])
    g = jnp.array([1.0, 2.0, -1.0, -1.0, 0.0])
    np.testing.assert_array_equal(
        breakpoints(x, g, 0.0, 1.0), [0.0, 0.25, 0.5, 0.0, np.inf]
    )


def test_chunks_are_about_n_over_64_between_the_bounds():
    assert _breakpoints.sizes_for(10**6) == (_breakpoints.CHUNK, _breakpoints.BUCKETS)
    assert _breakpoints.sizes_for(10**5) == (1024, _breakpoints.BUCKETS // 8)
    assert _breakpoints.sizes_for(300_000) == (4096, _breakpoints.BUCKETS // 2)
    small = (_breakpoints.MIN_CHUNK, _breakpoints.BUCKETS // 8)
    assert _breakpoints.sizes_for(10) == small
    # the rounds after a walk's first: chunks and slots WIDE times larger
    wide = _breakpoints.WIDE
    assert wide > 1
    assert _breakpoints.sizes_for(10**6, wide=True) == (
        wide * _breakpoints.CHUNK,
        wide * _breakpoints.BUCKETS,
    )


@pytest.mark.parametrize("hashes", [1, 2])
def test_gather_chunk_takes_each_breakpoint_once_and_reports_the_first_miss(
    monkeypatch, hashes
):
    # 60 breakpoints in (a, top] hashed into 64 slots: many collide
    monkeypatch.setattr(_breakpoints, "hashed", lambda: True)
    monkeypatch.setattr(_breakpoints, "CHUNK", 64)
    monkeypatch.setattr(_breakpoints, "BUCKETS", 64)
    monkeypatch.setattr(_breakpoints, "HASHES", hashes)
    rng = np.random.default_rng(0)
    tb = {"u": rng.uniform(0, 1, (7, 9)), "v": rng.uniform(0, 1, 40)}
    g = {k: rng.normal(size=v.shape) for k, v in tb.items()}
    x = {k: np.zeros(v.shape) for k, v in tb.items()}
    mem = new_memory(x, 2, jnp.float64)
    s = {k: rng.normal(size=v.shape) for k, v in tb.items()}
    y = {k: 2 * v for k, v in s.items()}
    mem = push(mem, s, y, jnp.float64)
    cp = compact(mem)
    a, top = 0.2, 0.8
    as_jax = lambda tree: {k: jnp.asarray(v) for k, v in tree.items()}  # noqa: E731
    t, gc, every, missed = gather_chunk(as_jax(tb), as_jax(g), a, top, jnp.float64)
    w = chunk_rows(as_jax(tb), every, mem, cp, jnp.float64)
    flat_t = np.concatenate([tb["u"].ravel(), tb["v"]])
    flat_g = np.concatenate([g["u"].ravel(), g["v"]])
    flat_s = np.concatenate([s["u"].ravel(), s["v"]])
    flat_y = np.concatenate([y["u"].ravel(), y["v"]])
    chunk = (flat_t > a) & (flat_t <= top)
    t, gc, w = np.asarray(t), np.asarray(gc), np.asarray(w)
    got = np.isfinite(t)
    # each gathered time is a breakpoint of the chunk, none twice
    idx = [int(np.flatnonzero(flat_t == v)[0]) for v in t[got]]
    assert len(set(idx)) == len(idx) and all(chunk[i] for i in idx)
    np.testing.assert_array_equal(np.asarray(every)[got], idx)
    np.testing.assert_array_equal(gc[got], flat_g[idx])
    theta = float(cp.theta)
    np.testing.assert_allclose(w[got][:, 0], flat_y[idx])
    np.testing.assert_allclose(w[got][:, 2], theta * flat_s[idx])
    assert np.all(w[:, [1, 3]] == 0)  # the empty slot takes no part
    # the miss is the smallest chunk time not gathered; some were
    missing = np.setdiff1d(np.flatnonzero(chunk), idx)
    assert got.sum() > 0 and (missing.size > 0 or hashes > 1)
    assert float(missed) == (flat_t[missing].min() if missing.size else np.inf)


def test_one_chunk_counts_every_leaf(monkeypatch):
    monkeypatch.setattr(_breakpoints, "CHUNK", 10)
    assert one_chunk({"a": jnp.zeros((2, 3)), "b": jnp.zeros(4)})
    assert not one_chunk({"a": jnp.zeros((2, 3)), "b": jnp.zeros(5)})


@pytest.mark.parametrize("chunk", [64, 32])
def test_one_device_compaction_takes_every_breakpoint_or_reports_overflow(
    monkeypatch, chunk
):
    # one compaction of the mask: no misses; 54 slots for a chunk of 64 hold
    # the breakpoints in (a, top], 36 for a chunk of 32 do not (-inf)
    monkeypatch.setattr(_breakpoints, "hashed", lambda: False)
    monkeypatch.setattr(_breakpoints, "CHUNK", chunk)
    rng = np.random.default_rng(1)
    tb = {"u": rng.uniform(0, 1, (7, 9)), "v": rng.uniform(0, 1, 40)}
    g = {k: rng.normal(size=v.shape) for k, v in tb.items()}
    as_jax = lambda tree: {k: jnp.asarray(v) for k, v in tree.items()}  # noqa: E731
    a, top = 0.3, 0.8
    t, gc, every, missed = gather_chunk(as_jax(tb), as_jax(g), a, top, jnp.float64)
    flat_t = np.concatenate([tb["u"].ravel(), tb["v"]])
    flat_g = np.concatenate([g["u"].ravel(), g["v"]])
    inside = np.flatnonzero((flat_t > a) & (flat_t <= top))
    assert t.shape == (chunk + chunk // 8,)
    assert (inside.size <= t.shape[0]) == (chunk == 64)
    if inside.size <= t.shape[0]:
        assert float(missed) == np.inf
        got = np.isfinite(np.asarray(t))
        np.testing.assert_array_equal(np.asarray(t)[got], flat_t[inside])
        np.testing.assert_array_equal(np.asarray(gc)[got], flat_g[inside])
        np.testing.assert_array_equal(np.asarray(every)[got], inside)
        np.testing.assert_array_equal(np.asarray(every)[~got], -1)
        assert got.sum() == inside.size
    else:
        assert float(missed) == -np.inf
