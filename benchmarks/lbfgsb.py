"""L-BFGS-B side by side: jaxbounds.minimize vs scipy's L-BFGS-B vs jaxopt's LBFGSB.

Issue 13. Runs in float64 (as scipy does), on CPU, and prints one table:

* a problem set (bounded Rosenbrock with many active bounds, a box QP, an
  unbounded problem, a time-constant fit, a 5-parameter pytree fit, a problem
  with fixed parameters): final value, function evaluations, warm time;
* a vmapped batch of independent time-constant fits, each with its own data
  and bounds, against scipy looping over them (its function compiled once):
  warm time and compile time;
* the cost of one iteration on a 1M-parameter bounded least-squares problem
  (non-negative deconvolution), against one ``value_and_grad`` evaluation.

All three solvers get the same stopping rule: projected-gradient infinity
norm <= ``GTOL``, or a relative decrease of the value <= ``FTOL`` (scipy's
defaults), ``m = 10``. jaxopt is optional (skipped when not installed).

    python benchmarks/lbfgsb.py [--quick] [--json PATH]

``--quick`` runs tiny sizes (a smoke test, numbers meaningless).
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

try:  # bench-only, optional
    import jaxopt  # noqa: E402
except ImportError:  # pragma: no cover
    jaxopt = None

GTOL = 1e-5
FTOL = 2.220446049250313e-09  # scipy's default (factr = 1e7)
MEMORY = 10


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` (its result blocked on), and the last result."""
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


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
    return out


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


def run_scipy(fun: Callable, x0: Any, lower: Any, upper: Any) -> dict[str, Any]:
    flat0, unravel = ravel_pytree(x0)
    lo, up = flat_bounds(x0, lower, upper)
    vg = jax.jit(jax.value_and_grad(lambda v: fun(unravel(v))))
    vg(flat0)  # compile outside the timing

    def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = vg(v)
        return float(value), np.asarray(grad)

    bounds = list(
        zip(np.where(np.isinf(lo), None, lo), np.where(np.isinf(up), None, up))
    )

    def solve() -> Any:
        return scipy.optimize.minimize(
            fg,
            np.asarray(flat0),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=dict(maxcor=MEMORY, gtol=GTOL, ftol=FTOL, maxiter=15000),
        )

    seconds, res = timed(solve, 3)
    return dict(
        value=float(res.fun), evals=int(res.nfev), steps=int(res.nit), seconds=seconds
    )


def run_jaxopt(fun: Callable, x0: Any, lower: Any, upper: Any) -> dict[str, Any] | None:
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
    seconds, (params, state) = timed(lambda: run(flat0, lo, up), 3)
    return dict(
        value=float(fun(unravel(params))),
        evals=int(state.num_fun_eval),
        steps=int(state.iter_num),
        seconds=seconds,
        compile_s=compile_s,
    )


def run_ours(fun: Callable, x0: Any, lower: Any, upper: Any) -> dict[str, Any]:
    run = jax.jit(
        lambda x, lo, up: jb.minimize(
            fun, x, lo, up, tol=GTOL, ftol=FTOL, memory_size=MEMORY, max_steps=15000
        )
    )
    t0 = time.perf_counter()
    jax.block_until_ready(run(x0, lower, upper))
    compile_s = time.perf_counter() - t0
    seconds, r = timed(lambda: run(x0, lower, upper), 5)
    return dict(
        value=float(r.value),
        evals=int(r.num_fun_evals),
        steps=int(r.num_steps),
        seconds=seconds,
        compile_s=compile_s,
        converged=bool(r.converged),
    )


# -- the batch of fits ------------------------------------------------------------


def batch(size: int) -> dict[str, Any]:
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
    warm, res = timed(lambda: ours(traces, tau_max), 3)
    out: dict[str, Any] = {
        "size": size,
        "jaxbounds": dict(
            seconds=warm,
            compile_s=compile_s,
            mean_value=float(jnp.mean(res.value)),
            evals=int(jnp.sum(res.num_fun_evals)),
            converged=int(jnp.sum(res.converged)),
        ),
    }
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

    scipy_s, results = timed(loop, 2)
    out["scipy"] = dict(
        seconds=scipy_s,
        mean_value=float(np.mean([r.fun for r in results])),
        evals=int(sum(r.nfev for r in results)),
    )
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
        jwarm, (values, evals) = timed(lambda: jx(traces, tau_max), 3)
        out["jaxopt"] = dict(
            seconds=jwarm,
            compile_s=jcompile,
            mean_value=float(jnp.mean(values)),
            evals=int(jnp.sum(evals)),
        )
    return out


# -- one iteration at 1M parameters ------------------------------------------------


def large(n: int, quick: bool) -> dict[str, Any]:
    """Non-negative deconvolution: ``min 0.5 |k * x - y|^2`` subject to ``x >= 0``."""
    rng = np.random.default_rng(2)
    kernel = jnp.exp(-jnp.arange(16) / 4.0)
    spikes = np.where(rng.uniform(size=n) < 0.02, rng.exponential(1.0, n), 0.0)
    clean = jnp.convolve(jnp.asarray(spikes), kernel, mode="full")[:n]
    y = clean + 0.05 * jnp.asarray(rng.normal(size=n))

    def fun(x: jax.Array) -> jax.Array:
        r = jnp.convolve(x, kernel, mode="full")[:n] - y
        return 0.5 * jnp.sum(r * r)

    x0 = jnp.zeros(n)
    vg = jax.jit(jax.value_and_grad(fun))
    vg(x0)
    repeats = 3 if quick else 20
    vg_s, _ = timed(lambda: vg(x0), repeats)

    # bounds as arguments: as constants, XLA would fold reductions over them
    lo, up = jnp.zeros(n), jnp.full(n, jnp.inf)

    def run_for(steps: int) -> Callable[[], Any]:
        f = jax.jit(
            lambda x, lo, up: jb.minimize(fun, x, lo, up, max_steps=steps, tol=0.0)
        )
        jax.block_until_ready(f(x0, lo, up))
        return lambda: f(x0, lo, up)

    k1, k2 = (2, 6) if quick else (5, 25)
    t1, r1 = timed(run_for(k1), 1)
    t2, r2 = timed(run_for(k2), 1)
    per_iter = (t2 - t1) / (int(r2.num_steps) - int(r1.num_steps))
    evals = (int(r2.num_fun_evals) - int(r1.num_fun_evals)) / (
        int(r2.num_steps) - int(r1.num_steps)
    )
    out = dict(
        n=n,
        value_and_grad_s=vg_s,
        iteration_s=per_iter,
        evals_per_iteration=evals,
        ratio=per_iter / vg_s,
    )
    # scipy at the same size, for scale
    lo_hi = [(0.0, None)] * n

    def scipy_for(steps: int) -> Callable[[], Any]:
        def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = vg(v)
            return float(value), np.asarray(grad)

        return lambda: scipy.optimize.minimize(
            fg,
            np.zeros(n),
            jac=True,
            method="L-BFGS-B",
            bounds=lo_hi,
            options=dict(maxcor=MEMORY, maxiter=steps, gtol=0.0, ftol=0.0),
        )

    s1, a = timed(scipy_for(k1), 1)
    s2, b = timed(scipy_for(k2), 1)
    out["scipy_iteration_s"] = (s2 - s1) / max(b.nit - a.nit, 1)
    return out


# -- the report ----------------------------------------------------------------


def reached(ours: float, ref: float) -> bool:
    return ours <= ref + 1e-8 * max(1.0, abs(ref))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    quick = args.quick

    results: dict[str, Any] = {
        "quick": quick,
        "jax": jax.__version__,
        "scipy": scipy.__version__,
        "jaxopt": None if jaxopt is None else getattr(jaxopt, "__version__", "yes"),
        "devices": str(jax.devices()),
        "gtol": GTOL,
        "ftol": FTOL,
        "problems": {},
    }
    print(f"L-BFGS-B, float64, m={MEMORY}, gtol={GTOL}, ftol={FTOL:.3g}")
    header = (
        f"{'problem':<24} {'solver':<10} {'value':>20} {'evals':>6} {'steps':>6} "
        f"{'time ms':>9}"
    )
    print(header)
    print("-" * len(header))
    ratios = []
    for name, p in problems(quick).items():
        row: dict[str, Any] = {"label": p["label"]}
        args_ = (p["fun"], p["x0"], p["lower"], p["upper"])
        row["scipy"] = run_scipy(*args_)
        row["jaxopt"] = run_jaxopt(*args_)
        row["jaxbounds"] = run_ours(*args_)
        for solver in ("scipy", "jaxopt", "jaxbounds"):
            r = row[solver]
            if r is None:
                continue
            print(
                f"{name:<24} {solver:<10} {r['value']:>20.12g} {r['evals']:>6} "
                f"{r['steps']:>6} {1e3 * r['seconds']:>9.2f}"
            )
        ours, ref = row["jaxbounds"], row["scipy"]
        row["evals_ratio"] = ours["evals"] / ref["evals"]
        row["reached_scipy_value"] = reached(ours["value"], ref["value"])
        ratios.append(row["evals_ratio"])
        results["problems"][name] = row
    median = statistics.median(ratios)

    size = 8 if quick else 256
    bt = batch(size)
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
            f"  {solver:<10} warm {r['seconds']:8.3f} s  {comp:<18} evals "
            f"{r['evals']:>7}  mean value {r['mean_value']:.6g}"
        )

    n = 10_000 if quick else 1_000_000
    lg = large(n, quick)
    results["large"] = lg
    print()
    print(f"bounded least squares, n={n}: non-negative deconvolution")
    print(
        f"  value_and_grad {1e3 * lg['value_and_grad_s']:.2f} ms, one iteration "
        f"{1e3 * lg['iteration_s']:.2f} ms ({lg['evals_per_iteration']:.2f} "
        f"evaluations), ratio {lg['ratio']:.2f}; scipy iteration "
        f"{1e3 * lg['scipy_iteration_s']:.2f} ms"
    )

    targets = {
        "every problem reaches scipy's value": (
            all(r["reached_scipy_value"] for r in results["problems"].values()),
            "all",
        ),
        "max evaluations / scipy": (max(ratios), "<= 1.5"),
        "median evaluations / scipy": (median, "<= 1.0"),
        "batch speedup vs scipy loop": (speedup, ">= 10 (aim 30)"),
        "1M iteration / value_and_grad": (lg["ratio"], "<= 3"),
    }
    met = {
        "every problem reaches scipy's value": targets[
            "every problem reaches scipy's value"
        ][0],
        "max evaluations / scipy": max(ratios) <= 1.5,
        "median evaluations / scipy": median <= 1.0,
        "batch speedup vs scipy loop": speedup >= 10,
        "1M iteration / value_and_grad": lg["ratio"] <= 3,
    }
    print()
    print("targets")
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
