"""Thresholds that end a round of the walk: from two passes, and from the
walk's one histogram.

Against the breakpoints counted in NumPy (before and at the threshold) and
a histogram of their bit patterns built by ``np.bincount``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb import _breakpoints
from jaxbounds._lbfgsb._threshold import histogram, threshold, threshold_from


def _after(t, a):
    """NumPy: the smallest breakpoint after ``a`` and the largest finite one."""
    later = t[t > a]
    return later.min(), later[np.isfinite(later)].max()


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32, jnp.float16])
@pytest.mark.parametrize("a", [0.0, 0.7])
def test_threshold_leaves_at_most_a_chunk_before_it_and_about_that_many(dtype, a):
    # 100k breakpoints (chunks of 1024) spread over ten decades, some blocked
    # (0), some never met (inf), a tree of two leaves
    rng = np.random.default_rng(4)
    t = np.exp(rng.uniform(-11.0, 11.0, 100_000)).astype(dtype)
    t[::7], t[3::11] = 0.0, np.inf
    tree = {"a": jnp.asarray(t[:30_000]), "b": jnp.asarray(t[30_000:].reshape(-1, 10))}
    chunk, _ = _breakpoints.sizes_for(t.size)
    t_lo, t_hi = _after(t, a)
    top = float(threshold(tree, a, t_lo, t_hi, dtype))
    assert t_lo <= top <= t_hi
    before = np.sum((t > a) & (t < top))
    assert before <= chunk  # the chunk's slots hold them
    assert np.sum((t > a) & (t <= top)) > chunk // 2  # and the round walks far


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_threshold_ends_at_the_last_breakpoint_when_all_fit_and_at_a_tie(dtype):
    t = np.array([0.0, 3.0, 1.5, np.inf, 2.0, 0.25], dtype)
    top = threshold(jnp.asarray(t), 0.0, 0.25, 3.0, dtype)
    assert float(top) == 3.0  # all fit: the walk takes them all at once
    # 5000 equal breakpoints (a tie group larger than a chunk): T is the tie
    tie = jnp.full(5000, 0.5, dtype)
    assert float(threshold(tie, 0.0, 0.5, 0.5, dtype)) == 0.5
    # none left after a (t_lo inf, t_hi -inf): inf, not NaN
    none = threshold(jnp.asarray(t), 5.0, np.inf, -np.inf, dtype)
    assert float(none) == np.inf


def _spread(dtype):
    """100k breakpoints over ten decades, some blocked (0), some never met
    (inf), as a tree of two leaves; and the same flat."""
    rng = np.random.default_rng(4)
    t = np.exp(rng.uniform(-11.0, 11.0, 100_000)).astype(dtype)
    t[::7], t[3::11] = 0.0, np.inf
    tree = {"a": jnp.asarray(t[:30_000]), "b": jnp.asarray(t[30_000:].reshape(-1, 10))}
    return tree, t


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_histogram_counts_each_breakpoint_in_the_bin_of_its_bit_pattern(dtype):
    tree, t = _spread(dtype)
    t_lo, t_hi = _after(t, 0.0)
    h = histogram(tree, t_lo, t_hi, dtype)
    # NumPy: equal steps of the bit patterns from t_lo's to t_hi's
    as_int = {8: np.int64, 4: np.int32, 2: np.int16}[np.dtype(dtype).itemsize]
    bits = t[(t > 0) & np.isfinite(t)].view(as_int).astype(np.int64)
    lo_b, hi_b = int(t_lo.view(as_int)), int(t_hi.view(as_int))
    bins = 2048  # a power of two near 100k / 32
    width = (hi_b - lo_b) // bins + 1
    assert int(h.lo) == lo_b and int(h.width) == width
    counts = np.bincount((bits - lo_b) // width, minlength=bins)
    np.testing.assert_array_equal(h.cum, np.cumsum(counts))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("wide", [False, True])
def test_threshold_from_the_histogram_leaves_at_most_a_chunk_and_about_that_many(
    dtype, wide
):
    tree, t = _spread(dtype)
    h = histogram(tree, *_after(t, 0.0), dtype)
    chunk, _ = _breakpoints.sizes_for(t.size, wide)
    # rounds of a walk: a at 0, then at breakpoints walked so far
    finite = np.sort(t[(t > 0) & np.isfinite(t)])
    for a in (0.0, finite[5000], finite[40_000]):
        t_lo, t_hi = _after(t, a)
        top, ok = threshold_from(h, t_lo, t_hi, t.size, dtype, wide)
        assert bool(ok) and t_lo < float(top) <= t_hi
        before = np.sum((t > a) & (t < float(top)))
        assert before <= chunk  # the chunk's slots hold them
        assert np.sum((t > a) & (t <= float(top))) > chunk // 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threshold_from_ends_at_the_last_breakpoint_or_defers_a_fine_cluster(dtype):
    t = np.array([0.0, 3.0, 1.5, np.inf, 2.0, 0.25], dtype)
    h = histogram(jnp.asarray(t), 0.25, 3.0, dtype)
    top, ok = threshold_from(h, 0.25, 3.0, t.size, dtype)
    assert bool(ok) and float(top) == 3.0  # all fit: the walk takes them all
    # 5000 breakpoints in one bin (a chunk is 1024): not ok, `threshold` refines
    cluster = 1.0 + (np.arange(5000) % 50) * np.finfo(dtype).eps  # 50 patterns
    t = np.concatenate([cluster, [1e-3, 1e3]]).astype(dtype)
    h = histogram(jnp.asarray(t), 1e-3, 1e3, dtype)
    _, ok = threshold_from(h, float(t.min()), 1e3, t.size, dtype)
    assert bool(ok)  # the bin of 1e-3 holds one breakpoint
    _, ok = threshold_from(h, 1.0, 1e3, t.size, dtype)
    assert not bool(ok)
