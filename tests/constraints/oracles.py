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
    """``f(kind, x)``: ``kind.<method>(x)`` compiled, cached on the kind's statics."""
    import jax

    return jax.jit(lambda kind, x: getattr(kind, method)(x))


def midpoint_pair(a: np.ndarray, b: np.ndarray, margin: float = 0.0):
    """A violating pair moved to its midpoint, ``margin`` apart."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    bad = a > b - margin
    mid = (a + b - margin) / 2
    return np.where(bad, mid, a), np.where(bad, mid + margin, b)


def shared_upper(a: np.ndarray, b: float, margin: float = 0.0):
    """Project (a, b) onto {a_i <= b - margin} for one shared b, by a fixed point.

    ``t`` (the new b) solves ``t = (b + sum_{a_i + m > t} (a_i + m)) / (1 + k)``;
    iterate from ``t = b``, which increases monotonically to the solution.
    """
    v = np.asarray(a, np.float64) + margin
    t = float(b)
    for _ in range(10 * len(v) + 10):
        s = v > t
        t_new = (b + v[s].sum()) / (1 + s.sum())
        if t_new == t:
            break
        t = t_new
    return np.minimum(a, t - margin), t


def box_halfplane_pair(a, b, la, ua, lb, ub, m, da=1.0, db=1.0):
    """Per element pair, the nearest point of {box, a <= b - m}, by SciPy's SLSQP.

    Nearest in ``da (a' - a)**2 + db (b' - b)**2`` (default: Euclidean).
    """
    from scipy.optimize import minimize

    out_a, out_b = [], []
    for x, y, l1, u1, l2, u2, wa, wb in np.broadcast(a, b, la, ua, lb, ub, da, db):
        res = minimize(
            lambda v, x=x, y=y, wa=wa, wb=wb: (
                wa * (v[0] - x) ** 2 + wb * (v[1] - y) ** 2
            ),
            x0=[(l1 + u1) / 2, (l2 + u2) / 2],
            bounds=[(l1, u1), (l2, u2)],
            constraints=[{"type": "ineq", "fun": lambda v: v[1] - m - v[0]}],
            method="SLSQP",
            options={"ftol": 1e-14},
        )
        out_a.append(res.x[0])
        out_b.append(res.x[1])
    return np.array(out_a), np.array(out_b)


def variational_gap(x: dict, px: dict, zs: list[dict]) -> float:
    """``max_z <x - P(x), z - P(x)>`` over feasible ``z``: <= 0 at the projection."""
    worst = -np.inf
    for z in zs:
        s = sum(
            float(
                np.sum(
                    (np.asarray(x[k], np.float64) - np.asarray(px[k], np.float64))
                    * (np.asarray(z[k], np.float64) - np.asarray(px[k], np.float64))
                )
            )
            for k in x
        )
        worst = max(worst, s)
    return worst


def toward_zero(v: np.ndarray, dtype) -> np.ndarray:
    """``v`` cast into ``dtype`` with every magnitude rounded down (never up)."""
    v = np.asarray(v)
    y = v.astype(dtype)
    wrong = np.abs(y.astype(v.dtype)) > np.abs(v)
    return np.where(wrong, np.nextafter(y, np.zeros((), y.dtype)), y)


def max_norm_low_precision(x: np.ndarray, r: float, axis: int) -> np.ndarray:
    """`MaxNorm(r, axis)` of a float16 / bfloat16 ``x``, bit for bit.

    The L2 shrink in float32 by ``aim / n`` with ``aim = r (1 - 4 eps32)``
    (a few ulps inside, so that a norm summed in any order stays within
    ``r``), each magnitude rounded toward zero into ``x``'s dtype; units
    inside the ball unchanged. Bit for bit only where the float32 norm is one
    correctly rounded sum (units of two elements).
    """
    f32 = np.float32
    xc = np.asarray(x).astype(f32)
    n = np.sqrt(np.sum(np.square(xc), axis=axis, keepdims=True))
    aim = f32(r) * (f32(1) - f32(4) * np.finfo(f32).eps)
    outside = n > f32(r)
    shrunk = xc * (aim / np.where(outside, n, f32(1)))
    return np.where(outside, toward_zero(shrunk, x.dtype), x)


# -- matrix kinds: NumPy / SciPy references (float64, one matrix at a time) ----


def matrices(fn, x: np.ndarray, axes=(-2, -1)) -> np.ndarray:
    """``fn`` applied to every matrix of ``x`` over ``axes`` (rows, columns)."""
    m = np.moveaxis(np.asarray(x, np.float64), axes, (-2, -1))
    flat = m.reshape((-1,) + m.shape[-2:])
    out = np.stack([fn(a) for a in flat]).reshape(m.shape[:-2] + flat.shape[-2:])
    return np.moveaxis(out, (-2, -1), axes)


def polar_np(w: np.ndarray) -> np.ndarray:
    """The orthogonal polar factor by SciPy (a wide ``w``: transposed)."""
    from scipy.linalg import polar

    if w.shape[0] >= w.shape[1]:
        return polar(w)[0]
    return polar(w.T)[0].T


def spectral_clip_np(w: np.ndarray, r: float) -> np.ndarray:
    """The singular values of ``w`` clipped at ``r`` (``np.linalg.svd``)."""
    u, s, vh = np.linalg.svd(w, full_matrices=False)
    return (u * np.minimum(s, r)) @ vh


def psd_np(w: np.ndarray, lo: float) -> np.ndarray:
    """``(w + w^T) / 2``, its eigenvalues (``np.linalg.eigh``) clipped at ``lo``."""
    lam, v = np.linalg.eigh((w + w.T) / 2)
    return (v * np.maximum(lam, lo)) @ v.T


def skew_np(raw: np.ndarray) -> np.ndarray:
    """PyTorch's ``parametrizations.orthogonal`` skew matrix of a tall raw matrix."""
    m, n = raw.shape
    a = np.zeros((m, m))
    for i in range(m):
        for j in range(min(i, n)):
            a[i, j] = raw[i, j]
    return a - a.T


def cayley_np(raw: np.ndarray) -> np.ndarray:
    """First columns of ``(I - S/2)^-1 (I + S/2)`` (wide raw: transposed)."""
    if raw.shape[0] < raw.shape[1]:
        return cayley_np(raw.T).T
    s = skew_np(raw)
    eye = np.eye(len(s))
    return np.linalg.solve(eye - s / 2, eye + s / 2)[:, : raw.shape[1]]


def expm_orthogonal_np(raw: np.ndarray) -> np.ndarray:
    """First columns of ``scipy.linalg.expm(S)`` (wide raw: transposed)."""
    from scipy.linalg import expm

    if raw.shape[0] < raw.shape[1]:
        return expm_orthogonal_np(raw.T).T
    return expm(skew_np(raw))[:, : raw.shape[1]]


def lower_cholesky_np(raw: np.ndarray, lo: float) -> np.ndarray:
    """``L L^T + lo I``, ``L`` the lower triangle of raw with a softplus diagonal."""
    low = np.tril(raw, -1) + np.diag(np.logaddexp(0, np.diag(raw)))
    return low @ low.T + lo * np.eye(len(raw))


# -- projections in a diagonal metric d: argmin sum(d * (y - x)**2) -------------


def weighted_midpoint(a, b, da, db, margin: float = 0.0):
    """A violating pair moved to its d-weighted midpoint, ``margin`` apart."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    da, db = np.asarray(da, np.float64), np.asarray(db, np.float64)
    bad = a > b - margin
    new_a = (da * a + db * (b - margin)) / (da + db)
    return np.where(bad, new_a, a), np.where(bad, new_a + margin, b)


def weighted_simplex_row(v, d, total: float = 1.0) -> np.ndarray:
    """``max(v - tau / d, 0)`` with ``tau`` found by bisection on the sum."""
    v, d = np.asarray(v, np.float64), np.asarray(d, np.float64)
    lo, hi = float(np.min((v - total) * d)) - 1.0, float(np.max(v * d)) + 1.0
    for _ in range(200):
        tau = (lo + hi) / 2
        if np.maximum(v - tau / d, 0).sum() > total:
            lo = tau
        else:
            hi = tau
    return np.maximum(v - (lo + hi) / 2 / d, 0)


def weighted_l1_row(v, d, r: float) -> np.ndarray:
    """The L1 ball in the metric: signs kept, magnitudes on the weighted simplex."""
    v = np.asarray(v, np.float64)
    if np.abs(v).sum() <= r:
        return v
    return np.sign(v) * weighted_simplex_row(np.abs(v), d, r)


def weighted_radius_row(v, d, r: float, *, ball: bool = True) -> np.ndarray:
    """``d v / (d + lam)`` with ``||.|| == r``, ``lam`` by bisection (> -min d).

    With ``ball``, a row inside is kept (the ball); else it goes to the sphere.
    """
    v, d = np.asarray(v, np.float64), np.asarray(d, np.float64)
    if ball and np.linalg.norm(v) <= r:
        return v
    lo, hi = (
        -float(d.min()) * (1 - 1e-15),
        1e3 * float(d.max()) * (1 + np.abs(v).sum() / r),
    )
    for _ in range(400):
        lam = (lo + hi) / 2
        if np.linalg.norm(d * v / (d + lam)) > r:
            lo = lam
        else:
            hi = lam
    lam = (lo + hi) / 2
    return d * v / (d + lam)


def weighted_pav_row(y, w) -> np.ndarray:
    """Weighted isotonic regression by a plain pool-adjacent-violators loop."""
    blocks: list[list[float]] = []  # [weighted sum, weight, count]
    for v, c in zip(np.asarray(y, np.float64), np.asarray(w, np.float64)):
        blocks.append([c * v, c, 1])
        while len(blocks) > 1 and (
            blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]
        ):
            s, c2, k = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c2
            blocks[-1][2] += k
    return np.concatenate([np.full(int(k), s / c) for s, c, k in blocks])


def weighted_shared_upper(a, b: float, wa, wb: float, margin: float = 0.0):
    """(a, b) onto {a_i <= b - margin} in the metric (wa, wb), by a fixed point."""
    v = np.asarray(a, np.float64) + margin
    wa = np.asarray(wa, np.float64)
    t = float(b)
    for _ in range(10 * len(v) + 10):
        s = v > t
        t_new = (wb * b + (wa[s] * v[s]).sum()) / (wb + wa[s].sum())
        if t_new == t:
            break
        t = t_new
    return np.minimum(a, t - margin), t


def adam_metric(grads, b2: float = 0.999, eps: float = 1e-8) -> np.ndarray:
    """Adam's ``sqrt(nu_hat) + eps`` after the steps with ``grads`` (float64)."""
    nu = np.zeros_like(np.asarray(grads[0], np.float64))
    for g in grads:
        nu = b2 * nu + (1 - b2) * np.square(np.asarray(g, np.float64))
    return np.sqrt(nu / (1 - b2 ** len(grads))) + eps
