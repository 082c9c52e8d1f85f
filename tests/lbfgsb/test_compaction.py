"""Compaction of a mask's true entries, against NumPy's ``flatnonzero``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb import _compaction
from jaxbounds._lbfgsb._compaction import first_true, first_true_sparse


def expected(mask, cap):
    found = np.flatnonzero(mask)[:cap]
    out = np.full(cap, -1)
    out[: found.size] = found
    return out, found.size < np.count_nonzero(mask)


@pytest.mark.parametrize("count", [0, 1, 9, 10, 11, 40])
def test_first_true_fills_the_slots_in_order_and_flags_more_than_they_hold(count):
    # 10 slots; the mask's true entries at random places of 1000
    rng = np.random.default_rng(count)
    mask = np.zeros(1000, bool)
    mask[rng.choice(1000, count, replace=False)] = True
    pos, over = first_true(jnp.asarray(mask), 10)
    want, want_over = expected(mask, 10)
    np.testing.assert_array_equal(pos, want)
    assert bool(over) == want_over == (count > 10)


N = 200_003  # (not a multiple of the block width: the last block is padded)


def clustered(rng, blocks, per_block):
    """A mask whose true entries lie in ``blocks`` random blocks."""
    width = _compaction.SPARSE_WIDTH
    mask = np.zeros(N, bool)
    starts = rng.choice(N // width + 1, blocks, replace=False) * width
    for s in starts:
        idx = s + rng.choice(width, per_block, replace=False)
        mask[idx[idx < N]] = True
    return mask


@pytest.mark.parametrize(
    ("blocks", "per_block", "cap"),
    [
        (0, 0, 16),  # nothing true
        (1, 3, 16),
        (_compaction.SPARSE_BLOCKS, 2, 200),  # as many blocks as are scanned
        (_compaction.SPARSE_BLOCKS + 1, 2, 200),  # one more: the full scan
        (5, 40, 64),  # more true entries than slots
        (150, 1, 512),
    ],
)
def test_first_true_sparse_is_first_true(blocks, per_block, cap):
    rng = np.random.default_rng(blocks * 1000 + per_block)
    mask = clustered(rng, blocks, per_block)
    if blocks:  # the last entry and a block's edges
        mask[[N - 1, 1023, 1024]] = True
    want, want_over = expected(mask, cap)
    for fn in (first_true_sparse, jax.jit(first_true_sparse, static_argnums=1)):
        pos, over = fn(jnp.asarray(mask), cap)
        np.testing.assert_array_equal(pos, want)
        assert bool(over) == want_over


def test_first_true_sparse_on_a_small_mask_is_the_plain_scan():
    mask = np.zeros((30, 40), bool)  # fewer entries than the blocks it scans
    mask[3, 7] = mask[29, 39] = True
    pos, over = first_true_sparse(jnp.asarray(mask), 3)
    np.testing.assert_array_equal(pos, [127, 1199, -1])
    assert not bool(over)
