"""The model's recurrences over a sorted chunk of breakpoints, against NumPy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxbounds._lbfgsb._memory import compact
from jaxbounds._lbfgsb._segments import walk

from .problems import memory_of, random_pairs


def numpy_slope(t, gg, p, c, pairs):
    """``-(1 - theta t) G - C^T M P`` with ``M`` from the pairs, in NumPy."""
    s, y = (np.array(v) for v in zip(*pairs))  # rows: oldest first
    theta = y[-1] @ y[-1] / (s[-1] @ y[-1])
    sy = s @ y.T
    minv = np.block(
        [[-np.diag(np.diag(sy)), np.tril(sy, -1).T], [np.tril(sy, -1), theta * s @ s.T]]
    )
    return -(1 - theta * t) * gg - c @ np.linalg.solve(minv, p)


def test_walk_reads_the_slope_only_after_a_whole_group():
    # two breakpoints at t = 1: after the first alone the slope is positive,
    # after both it is negative, so the path goes on descending past t = 1
    pairs = random_pairs(6, 2, np.random.default_rng(0))
    mem = memory_of(pairs, 6, 2)
    gg, a = 3.825, 0.5
    p = np.array([-0.038, 0.796, -0.576, -0.808])
    c = np.array([0.976, 1.226, 1.342, -1.273])
    g = np.array([0.734, 1.268, 0.0])
    w = np.array([[-1.559, 0.453, 0.643, 1.874], [-1.115, -0.067, 2.586, -0.879]])
    c1 = c + (1 - a) * p
    p1, p2 = p + g[0] * w[0], p + g[0] * w[0] + g[1] * w[1]
    assert numpy_slope(1.0, gg - g[0] ** 2, p1, c1, pairs) > 0.1
    assert numpy_slope(1.0, gg - g[0] ** 2 - g[1] ** 2, p2, c1, pairs) < -0.1
    chunk = (
        jnp.array([1.0, 1.0, np.inf]),
        jnp.asarray(g),
        jnp.asarray(np.vstack([w, np.zeros(4)])),
    )
    state = tuple(map(jnp.asarray, (gg, p, c)))
    stop, _, _, a_new, (gg_new, p_new, c_new) = walk(a, state, chunk, compact(mem))
    assert not bool(stop) and float(a_new) == 1.0
    np.testing.assert_allclose(gg_new, gg - g[0] ** 2 - g[1] ** 2)
    np.testing.assert_allclose(p_new, p2)
    np.testing.assert_allclose(c_new, c1)
