"""L-BFGS-B side by side: jaxbounds.minimize vs scipy's L-BFGS-B vs jaxopt's LBFGSB.

Issues 13 and 17. Runs in float64 (as scipy does), on CPU, and prints tables:

* a problem set (bounded Rosenbrock with many active bounds, a box QP, an
  unbounded problem, a time-constant fit, a 5-parameter pytree fit, a problem
  with fixed parameters): final value, function evaluations, warm time;
* ten random convex box QPs (n from 50 to 500, boxes from tight to loose):
  evaluations, values and whether our points stay inside the box, against
  scipy (no timing);
* a vmapped batch of independent time-constant fits, each with its own data
  and bounds, against scipy looping over them (its function compiled once):
  warm time and compile time;
* problems at scale against scipy in the same run: bounded least squares
  (a deconvolution with ``0 <= x <= 1``) at 10^4, 10^5 and 10^6 parameters
  and a 2-D obstacle problem (a membrane pushed onto an obstacle: many active
  bounds): value, evaluations, iterations, wall time and time per iteration.
  The 10^6 problem is capped at a few iterations (both solvers alike), so it
  measures the iteration, not the solve.

Every timing is taken ``--reps`` times (5 by default), the contenders
interleaved (one run of each in turn), and reported as the median with the
min-max range: a loaded machine shows as a wide range, not a wrong median.

All three solvers get the same stopping rule: projected-gradient infinity
norm <= ``GTOL``, or a relative decrease of the value <= ``FTOL`` (scipy's
defaults), ``m = 10``. jaxopt is optional (skipped when not installed).

    python benchmarks/lbfgsb.py [--quick] [--reps N] [--json PATH]
    python benchmarks/lbfgsb.py --dense-threshold 10 16 24 [--reps N]

``--dense-threshold`` times only the dense path of small problems against
the breakpoint walk, on a vmapped batch of 256 box QPs of each size (the
measurement behind ``DENSE_MAX``).

``--quick`` runs tiny sizes, 3 of the problems, one size at scale and 2
repetitions (a smoke test of the script, numbers meaningless).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import jaxbounds as jb  # noqa: E402
from jaxbounds._lbfgsb import _iteration  # noqa: E402

try:  # bench-only, optional
    import jaxopt  # noqa: E402
except ImportError:  # pragma: no cover
    jaxopt = None

GTOL = 1e-5
FTOL = 2.220446049250313e-09  # scipy's default (factr = 1e7)
MEMORY = 10


def interleaved(
    runs: dict[str, Callable[[], Any] | None], reps: int
) -> dict[str, dict[str, Any]]:
    """Time each of ``runs`` ``reps`` times, taking them in turn.

    Returns, for each name, the median, min and max wall time (results
    blocked on) and the last result.
    """
    times: dict[str, list[float]] = {k: [] for k, f in runs.items() if f is not None}
    last: dict[str, Any] = {}
    for _ in range(reps):
        for name in times:
            fn = runs[name]
            assert fn is not None
            t0 = time.perf_counter()
            last[name] = jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {
        name: dict(
            seconds=statistics.median(ts),
            seconds_min=min(ts),
            seconds_max=max(ts),
            reps=len(ts),
            result=last[name],
        )
        for name, ts in times.items()
    }


def spread(r: dict[str, Any]) -> str:
    """``median (min-max)`` in ms or s."""
    if r["seconds"] >= 1:
        return f"{r['seconds']:.2f} s ({r['seconds_min']:.2f}-{r['seconds_max']:.2f})"
    m = 1e3
    return (
        f"{m * r['seconds']:.1f} ms ({m * r['seconds_min']:.1f}-"
        f"{m * r['seconds_max']:.1f})"
    )


# -- problems -----------------------------------------------------------------


def rosenbrock(x: jax.Array) -> jax.Array:
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def problems(quick: bool) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(0)
    n_r = 10 if quick else 100
    n_q = 20 if quick else 200
    out: dict[str, dict[str, Any]] = {}
    out["bounded Rosenbrock"] = dict(
        fun=rosenbrock,
        x0=jnp.full(n_r, -1.2),
        lower=-2.0,
        upper=0.5,
        label=f"n={n_r}, box [-2, 0.5]",
    )
    a = rng.normal(size=(n_q, n_q))
    q = jnp.asarray(a @ a.T / n_q + 0.1 * np.eye(n_q))
    b = jnp.asarray(rng.normal(size=n_q))
    out["box QP"] = dict(
        fun=lambda x: 0.5 * x @ q @ x - b @ x,
        x0=jnp.zeros(n_q),
        lower=-0.5,
        upper=0.5,
        label=f"n={n_q}, box [-0.5, 0.5]",
    )
    x0 = np.tile([-1.2, 1.0], n_r // 2)
    out["unbounded"] = dict(
        fun=rosenbrock,
        x0=jnp.asarray(x0),
        lower=None,
        upper=None,
        label=f"Rosenbrock n={n_r}, no bounds",
    )
    t, trace = neuron_trace(rng, 200)
    out["time-constant fit"] = dict(
        fun=lambda p: exp_fit_loss(p, t, trace),
        x0={"amp": jnp.ones(3), "tau": jnp.array([1.0, 10.0, 100.0])},
        lower={"amp": 0.0, "tau": 0.5},
        upper={"amp": 20.0, "tau": 500.0},
        label="3 exponentials, 6 params",
    )
    ts = jnp.linspace(0.0, 10.0, 300)
    true = {"amp": 2.0, "decay": 0.3, "freq": 1.7, "phase": 0.4, "offset": -0.5}
    target = damped(true, ts) + 0.05 * jnp.asarray(rng.normal(size=ts.shape))
    out["5-parameter pytree fit"] = dict(
        fun=lambda p: jnp.sum((damped(p, ts) - target) ** 2),
        x0={"amp": 1.0, "decay": 1.0, "freq": 1.0, "phase": 0.0, "offset": 0.0},
        lower={"amp": 0.0, "decay": 0.0, "freq": 0.1, "phase": -3.2, "offset": -5},
        upper={"amp": 10.0, "decay": 5.0, "freq": 5.0, "phase": 3.2, "offset": 5.0},
        label="damped oscillation, dict of 5 scalars",
    )
    n_f = 10 if quick else 50
    fixed = np.arange(n_f) % 5 == 2
    lo = np.where(fixed, 0.3, -2.0)
    up = np.where(fixed, 0.3, 0.8)
    out["fixed parameters"] = dict(
        fun=rosenbrock,
        x0=jnp.full(n_f, -1.2),
        lower=jnp.asarray(lo),
        upper=jnp.asarray(up),
        label=f"Rosenbrock n={n_f}, every 5th fixed at 0.3, box [-2, 0.8]",
    )
    for p in out.values():  # scalars as float64 arrays: a pytree of leaves
        p["x0"] = jax.tree_util.tree_map(lambda v: jnp.asarray(v, float), p["x0"])
    if quick:  # (a smoke test: an array, a tree of scalars, fixed variables)
        out = {k: out[k] for k in QUICK_PROBLEMS}
    return out


#: The problems the quick run times (each costs both solvers' compiles).
QUICK_PROBLEMS = ("bounded Rosenbrock", "5-parameter pytree fit", "fixed parameters")


def damped(p: dict, t: jax.Array) -> jax.Array:
    return (
        p["amp"] * jnp.exp(-p["decay"] * t) * jnp.cos(p["freq"] * t + p["phase"])
        + p["offset"]
    )


def neuron_trace(rng: np.random.Generator, n: int) -> tuple[jax.Array, jax.Array]:
    """A response trace (ms) with three time constants, and a little noise."""
    t = jnp.linspace(0.0, 300.0, n)
    true = {"amp": jnp.array([3.0, 1.5, 0.5]), "tau": jnp.array([2.0, 20.0, 150.0])}
    clean = exp_model(true, t)
    return t, clean + 0.01 * jnp.asarray(rng.normal(size=n))


def exp_model(p: dict, t: jax.Array) -> jax.Array:
    return jnp.sum(p["amp"][:, None] * jnp.exp(-t[None, :] / p["tau"][:, None]), 0)


def exp_fit_loss(p: dict, t: jax.Array, trace: jax.Array) -> jax.Array:
    return jnp.sum((exp_model(p, t) - trace) ** 2)


# -- the three solvers ----------------------------------------------------------


def flat_bounds(x0: Any, lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray]:
    """The bounds as flat vectors (``ravel_pytree`` order), for scipy and jaxopt."""

    def side(bound: Any, inf: float) -> np.ndarray:
        if bound is None:
            bound = jax.tree_util.tree_map(lambda _: inf, x0)
        tree = jax.tree_util.tree_map(
            lambda x, b: jnp.broadcast_to(jnp.asarray(b, float), jnp.shape(x)),
            x0,
            bound,
        )
        return np.asarray(ravel_pytree(tree)[0])

    return side(lower, -math.inf), side(upper, math.inf)


def scipy_runner(
    fun: Callable,
    x0: Any,
    lower: Any,
    upper: Any,
    maxiter: int = 15000,
    gtol: float = GTOL,
    ftol: float = FTOL,
    callback: Callable[..., Any] | None = None,
) -> tuple[Callable[[], Any], Callable[[Any], dict[str, Any]]]:
    """scipy's L-BFGS-B on a jitted ``value_and_grad`` (compiled here, untimed)."""
    flat0, unravel = ravel_pytree(x0)
    lo, up = flat_bounds(x0, lower, upper)
    vg = jax.jit(jax.value_and_grad(lambda v: fun(unravel(v))))
    vg(flat0)  # compile outside the timing

    def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = vg(v)
        return float(value), np.asarray(grad)

    bounds = scipy.optimize.Bounds(lo, up)
    opts = dict(maxcor=MEMORY, gtol=gtol, ftol=ftol, maxiter=maxiter)

    def solve() -> Any:
        return scipy.optimize.minimize(
            fg, np.asarray(flat0), jac=True, method="L-BFGS-B", bounds=bounds,
            options=opts, callback=callback,
        )  # fmt: skip

    def summary(res: Any) -> dict[str, Any]:
        return dict(value=float(res.fun), evals=int(res.nfev), steps=int(res.nit))

    return solve, summary


def jaxopt_runner(
    fun: Callable, x0: Any, lower: Any, upper: Any
) -> tuple[Callable[[], Any], Callable[[Any], dict[str, Any]], float] | None:
    if jaxopt is None:
        return None
    flat0, unravel = ravel_pytree(x0)
    lo, up = flat_bounds(x0, lower, upper)
    solver = jaxopt.LBFGSB(
        fun=lambda v: fun(unravel(v)), maxiter=15000, tol=GTOL, history_size=MEMORY
    )
    run = jax.jit(lambda x, lo, up: solver.run(x, bounds=(lo, up)))
    t0 = time.perf_counter()
    jax.block_until_ready(run(flat0, lo, up))
    compile_s = time.perf_counter() - t0

    def summary(out: Any) -> dict[str, Any]:
        params, state = out
        return dict(
            value=float(fun(unravel(params))),
            evals=int(state.num_fun_eval),
            steps=int(state.iter_num),
        )

    return (lambda: run(flat0, lo, up)), summary, compile_s


def ours_runner(
    fun: Callable,
    x0: Any,
    lower: Any,
    upper: Any,
    max_steps: int = 15000,
    gtol: float = GTOL,
    ftol: float = FTOL,
) -> tuple[Callable[[], Any], Callable[[Any], dict[str, Any]], float]:
    """jaxbounds.minimize, jitted with the bounds as arguments (compiled here)."""
    run = jax.jit(
        lambda x, lo, up: jb.minimize(
            fun, x, lo, up, tol=gtol, ftol=ftol, memory_size=MEMORY,
            max_steps=max_steps,
        )
    )  # fmt: skip
    t0 = time.perf_counter()
    jax.block_until_ready(run(x0, lower, upper))
    compile_s = time.perf_counter() - t0

    def summary(r: Any) -> dict[str, Any]:
        return dict(
            value=float(r.value),
            evals=int(r.num_fun_evals),
            steps=int(r.num_steps),
            converged=bool(r.converged),
        )

    return (lambda: run(x0, lower, upper)), summary, compile_s


def contest(
    fun: Callable,
    x0: Any,
    lower: Any,
    upper: Any,
    reps: int,
    with_jaxopt: bool = True,
    max_steps: int = 15000,
) -> dict[str, Any]:
    """The contenders on one problem, interleaved: a row of results."""
    s_solve, s_sum = scipy_runner(fun, x0, lower, upper, max_steps)
    o_solve, o_sum, o_compile = ours_runner(fun, x0, lower, upper, max_steps)
    jx = jaxopt_runner(fun, x0, lower, upper) if with_jaxopt else None
    runs = {"scipy": s_solve, "jaxbounds": o_solve, "jaxopt": jx and jx[0]}
    timed_ = interleaved(runs, reps)
    row: dict[str, Any] = {}
    sums = {"scipy": s_sum, "jaxbounds": o_sum, "jaxopt": jx and jx[1]}
    for name, t in timed_.items():
        res = t.pop("result")
        summarize = sums[name]
        assert summarize is not None
        row[name] = {**summarize(res), **t}
        steps = max(row[name]["steps"], 1)
        row[name]["per_iteration_s"] = t["seconds"] / steps
    row["jaxbounds"]["compile_s"] = o_compile
    if jx is not None:
        row["jaxopt"]["compile_s"] = jx[2]
    else:
        row["jaxopt"] = None
    return row


# -- the box QPs: evaluations only -------------------------------------------------


def box_qps(quick: bool, seed: int = 25) -> dict[str, dict[str, Any]]:
    """Ten random convex box QPs (issue 25): ``n`` 50 to 500, boxes tight to loose.

    ``f(x) = x^T Q x / 2 - b^T x`` with ``Q = U diag(e) U^T`` (``U`` a random
    rotation, eigenvalues ``e`` log-spaced over three decades), ``b`` normal,
    the box ``[-w, w]`` with half-widths from 0.05 (most bounds active) to 50
    (none), the start a random point inside. ``quick``: one, n 20.
    """
    rng = np.random.default_rng(seed)
    count = 1 if quick else 10
    sizes = np.linspace(20, 20, count) if quick else np.linspace(50, 500, count)
    widths = np.geomspace(0.05, 50.0, count)
    order = rng.permutation(count)  # sizes and widths not in step
    out = {}
    for i, (n, w) in enumerate(zip(sizes.astype(int), widths[order])):
        u, _ = np.linalg.qr(rng.normal(size=(n, n)))
        q = jnp.asarray((u * np.geomspace(1e-2, 10.0, n)) @ u.T)
        b = jnp.asarray(rng.normal(size=n))

        def fun(x: jax.Array, q: jax.Array = q, b: jax.Array = b) -> jax.Array:
            return 0.5 * x @ (q @ x) - b @ x

        out[f"box QP {i + 1}"] = dict(
            fun=fun,
            x0=jnp.asarray(rng.uniform(-w, w, size=n)),
            lower=-float(w),
            upper=float(w),
            label=f"n={n}, box [-{w:.3g}, {w:.3g}]",
        )
    return out


def evaluations(p: dict[str, Any]) -> dict[str, Any]:
    """Both solvers once on ``p`` (no timing): values, evaluations, steps."""
    s_solve, s_sum = scipy_runner(p["fun"], p["x0"], p["lower"], p["upper"])
    o_solve, o_sum, _ = ours_runner(p["fun"], p["x0"], p["lower"], p["upper"])
    ref, r = s_sum(s_solve()), o_solve()
    ours = o_sum(r)
    flat = np.asarray(ravel_pytree(r.params)[0])
    lo, up = flat_bounds(p["x0"], p["lower"], p["upper"])
    ours["inside"] = bool(np.all(flat >= lo) & np.all(flat <= up))
    return dict(
        label=p["label"],
        scipy=ref,
        jaxbounds=ours,
        evals_ratio=ours["evals"] / ref["evals"],
        reached_scipy_value=reached(ours["value"], ref["value"]),
    )


# -- the batch of fits ------------------------------------------------------------


def batch(size: int, reps: int) -> dict[str, Any]:
    """``size`` neurons, each with its own trace and its own bound on tau."""
    rng = np.random.default_rng(1)
    n_t = 100
    t = jnp.linspace(0.0, 300.0, n_t)
    taus = np.sort(rng.uniform([1.0, 8.0, 60.0], [4.0, 30.0, 200.0], (size, 3)), 1)
    amps = rng.uniform(0.5, 3.0, (size, 3))
    traces = jax.vmap(lambda a, tau: exp_model({"amp": a, "tau": tau}, t))(
        jnp.asarray(amps), jnp.asarray(taus)
    )
    traces = traces + 0.01 * jnp.asarray(rng.normal(size=traces.shape))
    tau_max = jnp.asarray(rng.uniform(250.0, 400.0, size))  # per-neuron bound
    x0 = {"amp": jnp.ones(3), "tau": jnp.array([1.0, 10.0, 100.0])}

    def fit(trace: jax.Array, tmax: jax.Array) -> Any:
        return jb.minimize(
            lambda p: exp_fit_loss(p, t, trace),
            x0,
            {"amp": 0.0, "tau": 0.5},
            {"amp": 20.0, "tau": tmax},
            tol=GTOL,
            ftol=FTOL,
            memory_size=MEMORY,
        )

    ours = jax.jit(jax.vmap(fit))
    t0 = time.perf_counter()
    jax.block_until_ready(ours(traces, tau_max))
    compile_s = time.perf_counter() - t0
    # scipy: one compiled value_and_grad, data as an argument, a Python loop
    flat0, unravel = ravel_pytree(x0)
    vg = jax.jit(
        jax.value_and_grad(lambda v, trace: exp_fit_loss(unravel(v), t, trace))
    )
    vg(flat0, traces[0])

    def loop() -> list[Any]:
        results = []
        for i in range(size):
            trace = traces[i]
            bounds = [(0.0, 20.0)] * 3 + [(0.5, float(tau_max[i]))] * 3

            def fg(v: np.ndarray, trace: jax.Array = trace) -> tuple[float, np.ndarray]:
                value, grad = vg(v, trace)
                return float(value), np.asarray(grad)

            results.append(
                scipy.optimize.minimize(
                    fg,
                    np.asarray(flat0),
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options=dict(maxcor=MEMORY, gtol=GTOL, ftol=FTOL),
                )
            )
        return results

    runs: dict[str, Callable[[], Any] | None] = {
        "scipy": loop,
        "jaxbounds": lambda: ours(traces, tau_max),
    }
    jx: Any = None
    jcompile = 0.0
    if jaxopt is not None:
        solver = jaxopt.LBFGSB(
            fun=lambda v, trace: exp_fit_loss(unravel(v), t, trace),
            maxiter=15000,
            tol=GTOL,
            history_size=MEMORY,
        )

        def one(trace: jax.Array, tmax: jax.Array) -> Any:
            lo = jnp.array([0.0] * 3 + [0.5] * 3)
            up = jnp.concatenate([jnp.full(3, 20.0), jnp.full(3, tmax)])
            params, state = solver.run(flat0, (lo, up), trace)
            return exp_fit_loss(unravel(params), t, trace), state.num_fun_eval

        jx = jax.jit(jax.vmap(one))
        t0 = time.perf_counter()
        jax.block_until_ready(jx(traces, tau_max))
        jcompile = time.perf_counter() - t0
        runs["jaxopt"] = lambda: jx(traces, tau_max)
    timed_ = interleaved(runs, reps)
    out: dict[str, Any] = {"size": size}
    res = timed_["jaxbounds"].pop("result")
    out["jaxbounds"] = dict(
        **timed_["jaxbounds"],
        compile_s=compile_s,
        mean_value=float(jnp.mean(res.value)),
        evals=int(jnp.sum(res.num_fun_evals)),
        converged=int(jnp.sum(res.converged)),
        outer_trips=int(jnp.max(res.num_steps)),
        mean_steps=float(jnp.mean(res.num_steps)),
    )
    results = timed_["scipy"].pop("result")
    out["scipy"] = dict(
        **timed_["scipy"],
        mean_value=float(np.mean([r.fun for r in results])),
        evals=int(sum(r.nfev for r in results)),
    )
    if jx is not None:
        values, evals = timed_["jaxopt"].pop("result")
        out["jaxopt"] = dict(
            **timed_["jaxopt"],
            compile_s=jcompile,
            mean_value=float(jnp.mean(values)),
            evals=int(jnp.sum(evals)),
        )
    return out


def dense_threshold(sizes: list[int], reps: int) -> dict[int, Any]:
    """A batch of 256 box QPs of each size: the dense path against the walk."""
    chosen = _iteration.use_dense

    def solver(a: jax.Array, b: jax.Array, dense: bool) -> Callable[[], Any]:
        def fit(a: jax.Array, b: jax.Array) -> Any:
            x0 = jnp.zeros(b.shape[0])
            fun = lambda x: 0.5 * x @ a @ x - b @ x  # noqa: E731
            return jb.minimize(fun, x0, -0.5, 0.5, memory_size=MEMORY).value

        run = jax.jit(jax.vmap(fit))
        _iteration.use_dense = lambda x, m: dense  # the path taken at tracing
        try:
            jax.block_until_ready(run(a, b))
        finally:
            _iteration.use_dense = chosen
        return lambda: run(a, b)

    out = {}
    for n in sizes:
        rng = np.random.default_rng(n)
        r = rng.normal(size=(256, n, n))
        a = jnp.asarray(r @ r.transpose(0, 2, 1) / n + 0.1 * np.eye(n))
        b = jnp.asarray(rng.normal(size=(256, n)))
        runs = {"dense": solver(a, b, True), "walk": solver(a, b, False)}
        timed_ = interleaved(dict(runs), reps)
        gap = jnp.max(jnp.abs(timed_["dense"]["result"] - timed_["walk"]["result"]))
        print(
            f"n = {n:>3}: dense {spread(timed_['dense'])}, walk "
            f"{spread(timed_['walk'])}, values differ by {float(gap):.1g}",
            flush=True,
        )
        out[n] = {k: v["seconds"] for k, v in timed_.items()}
    return out


# -- problems at scale ----------------------------------------------------------------


def least_squares(n: int) -> dict[str, Any]:
    """Bounded deconvolution: ``min 0.5 |k * x - y|^2`` subject to ``0 <= x <= 1``."""
    rng = np.random.default_rng(2)
    kernel = jnp.exp(-jnp.arange(16) / 4.0)
    spikes = np.where(rng.uniform(size=n) < 0.02, rng.exponential(1.0, n), 0.0)
    clean = jnp.convolve(jnp.asarray(spikes), kernel, mode="full")[:n]
    y = clean + 0.05 * jnp.asarray(rng.normal(size=n))

    def fun(x: jax.Array) -> jax.Array:
        r = jnp.convolve(x, kernel, mode="full")[:n] - y
        return 0.5 * jnp.sum(r * r)

    # bounds as arrays: as constants, XLA would fold reductions over them
    return dict(fun=fun, x0=jnp.zeros(n), lower=jnp.zeros(n), upper=jnp.ones(n))


def obstacle(side: int) -> dict[str, Any]:
    """A membrane on a ``side x side`` grid pressed onto an obstacle.

    ``min sum |grad u|^2 / 2 - h^2 f sum u`` with ``u = 0`` on the boundary,
    ``f = -10`` (pushing down) and ``u >= psi``, a dome that reaches above the
    plane: the membrane rests on the dome where it is high (active bounds)
    and sags elsewhere (MINPACK-2's obstacle problem, in spirit).
    """
    h = 1.0 / (side + 1)
    grid = jnp.linspace(h, 1 - h, side)
    xx, yy = jnp.meshgrid(grid, grid, indexing="ij")
    psi = 0.1 - 1.0 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    force = -10.0

    def fun(u: jax.Array) -> jax.Array:
        p = jnp.pad(u, 1)
        dx = jnp.diff(p, axis=0)
        dy = jnp.diff(p, axis=1)
        return 0.5 * (jnp.sum(dx * dx) + jnp.sum(dy * dy)) - h * h * force * jnp.sum(u)

    return dict(
        fun=fun,
        x0=jnp.zeros((side, side)),
        lower=psi,
        upper=jnp.full((side, side), jnp.inf),
    )


def at_scale(quick: bool, reps: int) -> dict[str, Any]:
    """Least squares at 1e4, 1e5, 1e6 and the obstacle problem, against scipy."""
    cases: dict[str, tuple[dict[str, Any], int]] = {}
    sizes = [1_000] if quick else [10_000, 100_000, 1_000_000]
    for n in sizes:
        cap = 15000 if n < 1_000_000 else 15  # 1e6: the iteration, not the solve
        cases[f"least squares n={n:.0e}"] = (least_squares(n), cap)
    side = 16 if quick else 100
    cases[f"obstacle {side}x{side}"] = (obstacle(side), 15000)
    out = {}
    for name, (p, cap) in cases.items():
        row = contest(
            p["fun"], p["x0"], p["lower"], p["upper"], reps, False, max_steps=cap
        )
        row["capped_at"] = cap if cap < 15000 else None
        ours, ref = row["jaxbounds"], row["scipy"]
        row["iteration_ratio"] = ours["per_iteration_s"] / ref["per_iteration_s"]
        row["wall_ratio"] = ours["seconds"] / ref["seconds"]
        row["evals_ratio"] = ours["evals"] / ref["evals"]
        out[name] = row
        print(
            f"{name:<26} scipy {spread(ref):<28} {ref['steps']:>5} it "
            f"{ref['evals']:>5} ev  {1e3 * ref['per_iteration_s']:8.2f} ms/it  "
            f"value {ref['value']:.10g}"
        )
        print(
            f"{'':<26} ours  {spread(ours):<28} {ours['steps']:>5} it "
            f"{ours['evals']:>5} ev  {1e3 * ours['per_iteration_s']:8.2f} ms/it  "
            f"value {ours['value']:.10g}  (compile {ours['compile_s']:.1f} s)"
        )
    return out


#: Iteration ranges ``(first, last]`` timed at 1M: the first iteration, early
#: ones (the free set changes most) and late ones (it has settled).
PHASES = {"first": (0, 1), "early": (1, 6), "late": (30, 40)}
QUICK_PHASES = {"first": (0, 1), "early": (1, 3), "late": (3, 6)}


def phases(quick: bool, reps: int) -> dict[str, Any]:
    """Time per iteration at 1M in the first, early and late iterations.

    Both solvers run with ``gtol = ftol = 0`` (no early stop), so they take
    the same iterations (the evaluation counts are printed). Both are timed
    by stamps within one solve per repetition, interleaved: scipy's
    iterations by its callback; ours (one jitted `jb.minimize`, the loop a
    user runs) by a `jax.debug.callback` in the objective, each step ending
    at the evaluation of the point it accepted (its value is the step's
    entry in ``values``). (Differences of whole solves capped at ``k``
    steps, as before, carried each solve's noise into a phase: a late cell
    swung from 0.68x to 1.30x between runs.)
    """
    table = QUICK_PHASES if quick else PHASES
    side = 32 if quick else 1000
    cases = {f"obstacle {side}x{side}": obstacle(side)}
    if not quick:  # (the quick run, a smoke test, times one problem)
        cases[f"deconvolution n={side * side:.0e}"] = least_squares(side * side)
    return {name: phase_row(name, p, table, reps) for name, p in cases.items()}


def step_ends(
    start: float, evals: list[tuple[float, float]], values: Any
) -> list[float]:
    """Seconds from ``start`` to the end of each step: the time of the first
    evaluation, after the previous step's, whose value is the step's value.

    Raises:
        ValueError: a step's value is not among the evaluations after the
            previous step's (the stamps and the history disagree).
    """
    ends, i = [0.0], 0
    for v in np.asarray(values)[1:]:
        i += 1
        while i < len(evals) and evals[i][1] != v:
            i += 1
        if i == len(evals):
            raise ValueError(f"no evaluation after step {len(ends) - 1} has value {v}")
        ends.append(evals[i][0] - start)
    return ends


def phase_row(
    name: str, p: dict[str, Any], table: dict[str, tuple[int, int]], reps: int
) -> dict[str, Any]:
    """`phases` on one problem: a row of per-iteration times per phase."""
    last = max(b for _, b in table.values())
    stamps: list[float] = []
    scipy_solve, _ = scipy_runner(
        p["fun"], p["x0"], p["lower"], p["upper"], last, 0.0, 0.0,
        lambda *_: stamps.append(time.perf_counter()),
    )  # fmt: skip
    evals: list[tuple[float, float]] = []

    def fun(x: Any) -> jax.Array:
        value = p["fun"](x)
        note = lambda v: evals.append((time.perf_counter(), float(v)))  # noqa: E731
        jax.debug.callback(note, value, ordered=True)
        return value

    solve = ours_runner(fun, p["x0"], p["lower"], p["upper"], last, 0.0, 0.0)[0]
    per: dict[str, dict[str, list[float]]] = {
        ph: {"scipy": [], "jaxbounds": []} for ph in table
    }
    for _ in range(reps):
        stamps[:] = [time.perf_counter()]
        res = scipy_solve()
        evals.clear()
        t0 = time.perf_counter()
        r = jax.block_until_ready(solve())
        ends = step_ends(t0, evals, r.values)
        for ph, (a, b) in table.items():
            per[ph]["scipy"].append((stamps[b] - stamps[a]) / (b - a))
            per[ph]["jaxbounds"].append((ends[b] - ends[a]) / (b - a))
    row: dict[str, Any] = {
        "iterations": dict(scipy=int(res.nit), jaxbounds=int(r.num_steps)),
        "evals": dict(scipy=int(res.nfev), jaxbounds=int(r.num_fun_evals)),
        "values": dict(scipy=float(res.fun), jaxbounds=float(r.value)),
    }
    print(
        f"{name:<26} {last} iterations: scipy {res.nfev} ev, value {res.fun:.10g};"
        f" ours {int(r.num_fun_evals)} ev, value {float(r.value):.10g}"
    )
    for ph, (a, b) in table.items():
        cell: dict[str, Any] = {
            who: dict(
                seconds=statistics.median(v), seconds_min=min(v), seconds_max=max(v)
            )
            for who, v in per[ph].items()
        }
        cell["ratio"] = cell["jaxbounds"]["seconds"] / cell["scipy"]["seconds"]
        row[ph] = dict(cell, iterations=[a + 1, b])
        print(
            f"  {ph:<6} iterations {a + 1:>2}-{b:<3} per iteration: scipy "
            f"{spread(cell['scipy']):<26} ours {spread(cell['jaxbounds']):<26}"
            f" {cell['ratio']:.2f}x"
        )
    return row


# -- the report ----------------------------------------------------------------


def reached(ours: float, ref: float) -> bool:
    return ours <= ref + 1e-8 * max(1.0, abs(ref))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--reps", type=int, help="repetitions (5; 2 with --quick)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--dense-threshold", nargs="+", type=int, metavar="N", help="only this"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    reps = args.reps or (2 if quick else 5)
    if args.dense_threshold:
        dense_threshold(args.dense_threshold, reps)
        return 0

    results: dict[str, Any] = {
        "quick": quick,
        "reps": reps,
        "jax": jax.__version__,
        "jaxbounds_path": str(jb.__file__),
        "scipy": scipy.__version__,
        "jaxopt": None if jaxopt is None else getattr(jaxopt, "__version__", "yes"),
        "devices": str(jax.devices()),
        "gtol": GTOL,
        "ftol": FTOL,
        "problems": {},
    }
    print(
        f"L-BFGS-B, float64, m={MEMORY}, gtol={GTOL}, ftol={FTOL:.3g}; times: "
        f"median (min-max) of {reps} interleaved runs"
    )
    header = (
        f"{'problem':<24} {'solver':<10} {'value':>20} {'evals':>6} {'steps':>6} "
        f"  {'time':<26}"
    )
    print(header)
    print("-" * len(header))
    ratios = []
    for name, p in problems(quick).items():
        row = contest(p["fun"], p["x0"], p["lower"], p["upper"], reps)
        row["label"] = p["label"]
        for solver in ("scipy", "jaxopt", "jaxbounds"):
            r = row[solver]
            if r is None:
                continue
            print(
                f"{name:<24} {solver:<10} {r['value']:>20.12g} {r['evals']:>6} "
                f"{r['steps']:>6}   {spread(r):<26}"
            )
        ours, ref = row["jaxbounds"], row["scipy"]
        row["evals_ratio"] = ours["evals"] / ref["evals"]
        row["reached_scipy_value"] = reached(ours["value"], ref["value"])
        ratios.append(row["evals_ratio"])
        results["problems"][name] = row
    median = statistics.median(ratios)

    print()
    print("box QPs (evaluations only)")
    results["box_qps"] = {}
    for name, p in box_qps(quick).items():
        row = evaluations(p)
        results["box_qps"][name] = row
        ours, ref = row["jaxbounds"], row["scipy"]
        print(
            f"  {name:<10} {row['label']:<26} scipy {ref['evals']:>4} ev, ours "
            f"{ours['evals']:>4} ev ({row['evals_ratio']:.2f}x), value - scipy's "
            f"{ours['value'] - ref['value']:+.2g}, inside {ours['inside']}"
        )
    qp_ratios = [r["evals_ratio"] for r in results["box_qps"].values()]
    print(
        f"  median {statistics.median(qp_ratios):.3g}x, max {max(qp_ratios):.3g}x "
        "scipy's evaluations"
    )

    size = 8 if quick else 256
    bt = batch(size, reps)
    results["batch"] = bt
    speedup = bt["scipy"]["seconds"] / bt["jaxbounds"]["seconds"]
    bt["speedup_vs_scipy"] = speedup
    print()
    print(f"batch of {size} fits (3 time constants + 3 amplitudes each)")
    for solver in ("scipy", "jaxopt", "jaxbounds"):
        r = bt.get(solver)
        if r is None:
            continue
        comp = f"compile {r['compile_s']:.2f} s" if "compile_s" in r else ""
        print(
            f"  {solver:<10} warm {spread(r):<28} {comp:<18} evals "
            f"{r['evals']:>7}  mean value {r['mean_value']:.6g}"
        )
    print(
        f"  speedup {speedup:.2f}x (median over median); "
        f"{bt['jaxbounds']['outer_trips']} outer trips for a mean of "
        f"{bt['jaxbounds']['mean_steps']:.1f} steps"
    )

    print()
    print("at scale, against scipy (median (min-max), iterations, evaluations)")
    scale = at_scale(quick, reps)
    results["scale"] = scale
    print()
    print("per iteration at 1M, first / early / late iterations (no early stop)")
    results["phases"] = phases(quick, reps)
    if quick:  # the threshold's own run (--dense-threshold), at one tiny size
        print()
        results["dense_threshold"] = dense_threshold([4], reps)
    big = [r for r in scale.values() if r["capped_at"] is None]
    wall_to_optimum = max(r["wall_ratio"] for r in big)
    evals_scale = [r["evals_ratio"] for r in scale.values()] + qp_ratios
    largest = list(scale.values())[-2]  # the largest least squares problem

    targets = {
        "every problem reaches scipy's value": (
            all(r["reached_scipy_value"] for r in results["problems"].values())
            and all(r["reached_scipy_value"] for r in results["box_qps"].values())
            and all(r["jaxbounds"]["inside"] for r in results["box_qps"].values())
            and all(reached(r["jaxbounds"]["value"], r["scipy"]["value"]) for r in big),
            "all",
        ),
        "max evaluations / scipy": (max(ratios + evals_scale), "<= 1.2"),
        "median evaluations / scipy": (
            statistics.median(ratios + evals_scale),
            "<= 1.0",
        ),
        "batch speedup vs scipy loop": (speedup, ">= 15 (aim 30)"),
        "iteration at the largest n / scipy's": (
            largest["iteration_ratio"],
            "<= 1 (aim 0.5)",
        ),
        "wall to optimum / scipy's (worst)": (wall_to_optimum, "<= 1"),
    }
    met = {
        "every problem reaches scipy's value": targets[
            "every problem reaches scipy's value"
        ][0],
        "max evaluations / scipy": max(ratios + evals_scale) <= 1.2,
        "median evaluations / scipy": statistics.median(ratios + evals_scale) <= 1.0,
        "batch speedup vs scipy loop": speedup >= 15,
        "iteration at the largest n / scipy's": largest["iteration_ratio"] <= 1,
        "wall to optimum / scipy's (worst)": wall_to_optimum <= 1,
    }
    print()
    print(f"targets (small-problem median evaluations ratio {median:.3g})")
    results["targets"] = {}
    for key, (value, target) in targets.items():
        shown = value if isinstance(value, bool) else f"{value:.3g}"
        verdict = "met" if met[key] else "MISSED"
        print(f"  {key:<38} {shown!s:>8}  target {target:<16} {verdict}")
        results["targets"][key] = dict(value=value, target=target, met=bool(met[key]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
