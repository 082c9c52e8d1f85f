"""Independent NumPy references for the constraint kinds (no jaxbounds inside)."""

from __future__ import annotations

import numpy as np


def keras_max_norm(w: np.ndarray, max_value: float, axis) -> np.ndarray:
    """Keras' ``MaxNorm.__call__`` (epsilon 1e-7) in NumPy float64."""
    w = np.asarray(w, np.float64)
    norms = np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))
    desired = np.clip(norms, 0, max_value)
    return w * (desired / (1e-7 + norms))


def simplex_row(v: np.ndarray, total: float = 1.0) -> np.ndarray:
    """The sort-based projection onto {y >= 0, sum y = total} (Held et al.)."""
    v = np.asarray(v, np.float64)
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = 0
    for j in range(len(u)):
        if u[j] - (css[j] - total) / (j + 1) > 0:
            rho = j
    theta = (css[rho] - total) / (rho + 1)
    return np.maximum(v - theta, 0)


def l1_ball_row(v: np.ndarray, r: float) -> np.ndarray:
    """Duchi et al.'s projection onto the L1 ball of radius r."""
    v = np.asarray(v, np.float64)
    if np.abs(v).sum() <= r:
        return v
    return np.sign(v) * simplex_row(np.abs(v), r)


def pav_row(y: np.ndarray) -> np.ndarray:
    """Isotonic regression by a plain pool-adjacent-violators loop."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in np.asarray(y, np.float64):
        blocks.append([v, 1.0])
        while len(blocks) > 1 and (
            blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]
        ):
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return np.concatenate([np.full(int(c), s / c) for s, c in blocks])


def per_row(fn, x: np.ndarray, axis: int, *args) -> np.ndarray:
    """``fn`` applied to every 1-D slice of ``x`` along ``axis``."""
    return np.apply_along_axis(lambda r: fn(r, *args), axis, np.asarray(x, np.float64))


def jitted(method: str):
    """``f(kind, x)``: ``kind.<method>(x)`` compiled, cached on the kind's static part."""
    import jax

    return jax.jit(lambda kind, x: getattr(kind, method)(x))
