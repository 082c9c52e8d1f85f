"""Problems and independent references shared by the solver's tests (oracles:
the segment walk of the Cauchy point, the dense subspace step, dense BFGS).

scipy's L-BFGS-B (Fortran) for optima, the KKT conditions from `jax.grad`.
Functions are defined once, so each compiles once per test session.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

N = 10


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


_RNG = np.random.default_rng(0)
_A = _RNG.normal(size=(12, N))
Q = jnp.asarray(_A.T @ _A / 12 + 0.05 * np.eye(N))
B = jnp.asarray(_RNG.normal(size=N))


def quad(x):
    return 0.5 * x @ Q @ x - B @ x + 0.1 * jnp.sum(x**4)


def scipy_solve(fun, x0, lo, up, gtol=1e-10, ftol=1e-15):
    vg = jax.jit(jax.value_and_grad(fun))

    def fg(x):
        v, g = vg(jnp.asarray(x))
        return float(v), np.asarray(g, dtype=float)

    bounds = list(zip(np.broadcast_to(lo, x0.shape), np.broadcast_to(up, x0.shape)))
    res = scipy.optimize.minimize(
        fg,
        np.asarray(x0, float),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options=dict(gtol=gtol, ftol=ftol, maxiter=2000, maxcor=10),
    )
    return res


def kkt(fun, x, lo, up):
    """Projected gradient, and the gradient at active bounds."""
    g = np.asarray(jax.grad(fun)(x))
    x = np.asarray(x)
    lo = np.broadcast_to(lo, x.shape)
    up = np.broadcast_to(up, x.shape)
    pg = np.abs(np.clip(x - g, lo, up) - x).max()
    return pg, g, x == lo, x == up


PROBLEMS = {
    "rosenbrock, many active bounds": (rosen, -1.2, -2.0, 0.5),
    "rosenbrock, mixed bounds": (
        rosen,
        0.0,
        np.array([-np.inf, 0.2, -1, -np.inf, 1.1, -3, 0, -np.inf, -1, 0.3]),
        np.array([np.inf, 0.6, np.inf, 2, 3, 0.1, np.inf, 0.4, 0.3, 0.35]),
    ),
    "quartic QP in a box": (quad, 0.0, -0.3, 0.4),
    "quartic, unbounded": (quad, 1.0, -np.inf, np.inf),
}


# -- a memory and its dense twin ----------------------------------------------------


def random_pairs(n, count, rng):
    """``count`` pairs ``(s, y)`` with ``y = A s``, ``A`` SPD: ``s.y > 0``."""
    a = rng.normal(size=(n, n))
    spd = a @ a.T / n + 0.5 * np.eye(n)
    out = []
    for _ in range(count):
        s = rng.normal(size=n)
        out.append((s, spd @ s + 0.05 * rng.normal(size=n)))
    return out


def memory_of(pairs, n, m, dtype=jnp.float64):
    """The solver's memory after pushing ``pairs`` in order (slots wrap at ``m``)."""
    from jaxbounds._lbfgsb._memory import new_memory, push

    mem = new_memory(jnp.zeros(n, dtype), m, dtype)
    for s, y in pairs:
        mem = push(mem, jnp.asarray(s, dtype), jnp.asarray(y, dtype), dtype)
    return mem


def dense_bfgs(pairs, m):
    """``B`` by ``m`` dense BFGS updates of ``theta I`` (NumPy, float64).

    The last ``m`` pairs, oldest first; ``theta = y.y / s.y`` of the newest.
    """
    kept = pairs[-m:]
    s, y = kept[-1]
    n = s.shape[0]
    b = (y @ y) / (s @ y) * np.eye(n)
    for s, y in kept:
        bs = b @ s
        b = b - np.outer(bs, bs) / (s @ bs) + np.outer(y, y) / (y @ s)
    return b


# -- Cauchy-point problems and the segment walk in NumPy ------------------------------


def model_on_path(t, x, g, lo, up, b):
    """``q(t) = g.z + z.B z / 2`` with ``z = P(x - t g) - x``."""
    z = np.clip(x - t * g, lo, up) - x
    return g @ z + 0.5 * z @ b @ z


def first_minimiser(x, g, lo, up, b):
    """The first local minimiser of ``q`` along the path: the segment walk."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = np.where(g < 0, (x - up) / g, np.where(g > 0, (x - lo) / g, np.inf))
    tb = np.maximum(tb, 0)
    starts = np.unique(np.concatenate([[0.0], tb[np.isfinite(tb)]]))
    ends = np.append(starts[1:], np.inf)
    for t0, t1 in zip(starts, ends):
        z = np.clip(x - t0 * g, lo, up) - x
        d = np.where(tb > t0, -g, 0.0)
        f1 = g @ d + d @ b @ z
        f2 = d @ b @ d
        if f1 >= 0:
            return t0
        if f2 > 0 and t0 - f1 / f2 < t1:
            return t0 - f1 / f2
    return starts[-1]


def problem(seed, n=12, m=4, pushes=6, ties=False):
    rng = np.random.default_rng(seed)
    pairs = random_pairs(n, pushes, rng)
    lo = -rng.uniform(0.1, 2.0, n)
    up = rng.uniform(0.1, 2.0, n)
    lo[0], up[1] = -np.inf, np.inf
    x = rng.uniform(lo.clip(-2), up.clip(max=2))
    g = 3 * rng.normal(size=n)
    if ties:  # several variables meet their bounds at the same time
        x[:6] = 0.0
        lo[:6], up[:6] = -1.0, 1.0
        g[:6] = np.array([2.0, -2.0, 2.0, 0.5, -0.5, 0.0])
    x[2] = lo[2]  # at a bound, pushed against it: blocked from the start
    g[2] = abs(g[2])
    return x, g, lo, up, pairs, m


def grouped_problem(seed, n=24, m=4):
    rng = np.random.default_rng(seed)
    pairs = random_pairs(n, 6, rng)
    x, lo, up = np.zeros(n), -np.ones(n), np.ones(n)
    g = rng.choice([0.5, 1.0, 2.0, 4.0], n) * rng.choice([-1.0, 1.0], n)
    return x, g, lo, up, pairs, m


def long_walk(rng, n=60):
    """``(x, g, lo, up)`` in ``[0, 1]`` with steep gradients: the Cauchy
    point lies past many breakpoints (a walk of many rounds)."""
    x, lo, up = np.full(n, 0.5), np.zeros(n), np.ones(n)
    g = rng.uniform(0.6, 50.0, n) * rng.choice([-1.0, 1.0], n)
    return x, g, lo, up


def reference(x, g, xc, lo, up, b):
    """Byrd et al. section 5.1 with a dense solve, then projection / truncation."""
    free = (xc > lo) & (xc < up)
    r = g + b @ (xc - x)
    du = np.zeros_like(x)
    du[free] = -np.linalg.solve(b[np.ix_(free, free)], r[free])
    projected = np.clip(xc + du, lo, up)
    if g @ (projected - x) < 0:
        return du, projected, "projected"
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(du > 0, (up - xc) / du, np.where(du < 0, (lo - xc) / du, 1))
    alpha = np.clip(room, 0, 1).min()
    return du, np.clip(xc + alpha * du, lo, up), "truncated"
