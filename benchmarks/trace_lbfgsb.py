"""Evaluation parity with scipy's L-BFGS-B, problem by problem and step by step.

Issue 25. Two tools, both float64 on CPU, ``m = 10``, the same stopping rule
for both solvers (``gtol``, ``ftol`` as in ``benchmarks/lbfgsb.py``):

* ``counts``: function evaluations of `jaxbounds.minimize` against scipy's on
  the public set (``benchmarks/lbfgsb.py``'s problems), bounded Rosenbrock
  with a tight and a wide box, and its ten random box QPs; the
  ratio, the final values, and whether our points stay inside the box;
* ``trace``: both solvers iteration by iteration on one problem. For scipy
  every call of ``fun`` is recorded and grouped by its ``callback``; for ours
  each `iteration` is run on its own (jitted), with the Cauchy point and the
  subspace point computed beside it. Per iteration: the evaluations, the
  first trial step and the accepted one (as multiples of ``d = x_bar - x``),
  the distance between the two solvers' directions, the memory update or
  skip, and the value.

    python benchmarks/trace_lbfgsb.py counts [--only NAME]
    python benchmarks/trace_lbfgsb.py trace "box QP 1" [--steps N]

scipy's direction is read from its first trial: with ``stp = 1`` (every
iteration after the first, and the first on a fully boxed problem) the first
trial point is the subspace point ``x_bar`` itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import jaxbounds as jb  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import lbfgsb as bench  # noqa: E402

GTOL, FTOL, MEMORY = bench.GTOL, bench.FTOL, bench.MEMORY


def rosenbrocks() -> dict[str, dict[str, Any]]:
    """Bounded Rosenbrock with a tight and a wide box."""
    n = 20
    x0 = jnp.asarray(np.tile([-1.2, 1.0], n // 2))
    return {
        "Rosenbrock tight box": dict(
            fun=bench.rosenbrock, x0=x0, lower=-1.5, upper=0.8,
            label=f"n={n}, box [-1.5, 0.8]",
        ),
        "Rosenbrock wide box": dict(
            fun=bench.rosenbrock, x0=x0, lower=-10.0, upper=10.0,
            label=f"n={n}, box [-10, 10]",
        ),
    }  # fmt: skip


def extra() -> dict[str, dict[str, Any]]:
    """More of the kinds the issue names: fits from other data and starts."""
    out = {}
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        t, trace = bench.neuron_trace(rng, 200)
        amp0 = jnp.asarray(rng.uniform(0.2, 5.0, 3))
        tau0 = jnp.asarray(np.sort(rng.uniform(1.0, 300.0, 3)))
        out[f"time-constant fit {seed}"] = dict(
            fun=lambda p, t=t, y=trace: bench.exp_fit_loss(p, t, y),
            x0={"amp": amp0, "tau": tau0},
            lower={"amp": 0.0, "tau": 0.5}, upper={"amp": 20.0, "tau": 500.0},
            label=f"3 exponentials, seed {seed}",
        )  # fmt: skip
    ts = jnp.linspace(0.0, 10.0, 300)
    true = {"amp": 2.0, "decay": 0.3, "freq": 1.7, "phase": 0.4, "offset": -0.5}
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        target = bench.damped(true, ts) + 0.05 * jnp.asarray(rng.normal(size=300))
        x0 = {k: jnp.asarray(float(v)) for k, v in zip(
            true, rng.uniform([0.5, 0.1, 1.2, -1, -1], [4, 1, 2.2, 1, 1]))}  # fmt: skip
        out[f"pytree fit {seed}"] = dict(
            fun=lambda p, y=target: jnp.sum((bench.damped(p, ts) - y) ** 2),
            x0=x0,
            lower={"amp": 0.0, "decay": 0.0, "freq": 0.1, "phase": -3.2,
                   "offset": -5.0},
            upper={"amp": 10.0, "decay": 5.0, "freq": 5.0, "phase": 3.2,
                   "offset": 5.0},
            label=f"damped oscillation, seed {seed}",
        )  # fmt: skip
    for lo, up in ((-0.5, 0.5), (-3.0, 3.0), (-100.0, 100.0)):
        out[f"Rosenbrock box [{lo:g}, {up:g}]"] = dict(
            fun=bench.rosenbrock, x0=jnp.full(30, -1.2), lower=lo, upper=up,
            label="n=30 from -1.2",
        )  # fmt: skip
    return out


def all_problems(quick: bool = False, more: bool = False) -> dict[str, dict]:
    out = dict(bench.problems(quick))
    out.update(rosenbrocks())
    out.update(bench.box_qps(False))
    if more:
        out.update(extra())
    return out


def scipy_run(p: dict[str, Any]) -> dict[str, Any]:
    """scipy's L-BFGS-B; every evaluation recorded, grouped by iteration."""
    flat0, unravel = ravel_pytree(p["x0"])
    lo, up = bench.flat_bounds(p["x0"], p["lower"], p["upper"])
    vg = jax.jit(jax.value_and_grad(lambda v: p["fun"](unravel(v))))
    calls: list[tuple[np.ndarray, float, np.ndarray]] = []
    marks: list[int] = []

    def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = vg(v)
        calls.append((np.array(v), float(value), np.asarray(grad)))
        return float(value), np.asarray(grad)

    res = scipy.optimize.minimize(
        fg, np.asarray(flat0), jac=True, method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(lo, up),
        callback=lambda *a: marks.append(len(calls)),
        options=dict(maxcor=MEMORY, gtol=GTOL, ftol=FTOL, maxiter=15000),
    )  # fmt: skip
    return dict(res=res, calls=calls, marks=marks, lo=lo, up=up)


def ours_run(p: dict[str, Any]) -> Any:
    run = jax.jit(
        lambda x, lo, up: jb.minimize(
            p["fun"], x, lo, up, tol=GTOL, ftol=FTOL, memory_size=MEMORY,
            max_steps=15000,
        )
    )  # fmt: skip
    return run(p["x0"], p["lower"], p["upper"])


def inside(x: Any, p: dict[str, Any]) -> bool:
    flat, _ = ravel_pytree(x)
    lo, up = bench.flat_bounds(p["x0"], p["lower"], p["upper"])
    v = np.asarray(flat)
    return bool(np.all(v >= lo) & np.all(v <= up))


def counts(only: str | None, more: bool = False) -> None:
    probs = all_problems(more=more)
    if only:
        probs = {k: v for k, v in probs.items() if only in k}
    print(f"{'problem':<24} {'label':<30} {'scipy':>6} {'ours':>6} {'ratio':>6} "
          f"{'value - scipy':>14} {'inside':>6}")  # fmt: skip
    ratios = []
    for name, p in probs.items():
        s = scipy_run(p)["res"]
        o = ours_run(p)
        ratio = int(o.num_fun_evals) / int(s.nfev)
        ratios.append(ratio)
        dv = float(o.value) - float(s.fun)
        print(
            f"{name:<24} {p['label']:<30} {int(s.nfev):>6} {int(o.num_fun_evals):>6} "
            f"{ratio:>6.2f} {dv:>14.3g} {inside(o.params, p)!s:>6}",
            flush=True,
        )
    print(f"median ratio {statistics.median(ratios):.3f}, max {max(ratios):.3f}")


def trace(name: str, steps: int) -> None:
    """Both solvers side by side, iteration by iteration."""
    from jaxbounds._lbfgsb._cauchy import cauchy
    from jaxbounds._lbfgsb._dense import dense_step, use_dense
    from jaxbounds._lbfgsb._iteration import Problem, SolverState, init, start
    from jaxbounds._lbfgsb._iteration import step as solver_step
    from jaxbounds._lbfgsb._memory import compact
    from jaxbounds._lbfgsb._subspace import subspace

    p = all_problems(more=True)[name]
    flat0, unravel = ravel_pytree(p["x0"])
    lo, up = bench.flat_bounds(p["x0"], p["lower"], p["upper"])
    lo, up = jnp.asarray(lo), jnp.asarray(up)
    fun = lambda v: p["fun"](unravel(v))  # noqa: E731
    dtype = jnp.float64
    seen: list[np.ndarray] = []

    def record(v: Any) -> None:
        seen.append(np.asarray(v))

    def vg(v: Any) -> Any:
        jax.debug.callback(record, v)
        return jax.value_and_grad(fun)(v)

    problem = Problem(vg, lo, up, None, dtype)

    @jax.jit
    def step(state: SolverState) -> Any:
        # the step's own parts, for the table, then the step itself
        here, mem = state.here, state.memory
        if use_dense(here.x, mem.age.shape[0]):
            xc, xbar = dense_step(here.x, here.g, lo, up, mem, dtype)
        else:
            cp = compact(mem)
            xc, c = cauchy(here.x, here.g, lo, up, mem, cp, dtype)
            xbar, _ = subspace(
                here.x, here.g, xc, lo, up, mem, state.kept, cp, dtype, c
            )
        return xc, xbar, solver_step(problem, state)

    s = scipy_run(p)
    state = init(problem, start(problem, flat0), MEMORY)
    x0 = state.here.x
    sc_calls, marks = s["calls"], [1] + s["marks"]
    print(f"{name}: {p['label']}; scipy {s['res'].nfev} evals, {s['res'].nit} its")
    print(
        f"{'it':>3} | {'sc ev':>5} {'sc stp1':>9} {'sc stp':>9} {'sc f':>14} | "
        f"{'ev':>3} {'stp1':>9} {'stp':>9} {'f':>14} {'mem':>4} | {'|d-d_sc|':>9} "
        f"{'|x-x_sc|':>9} {'free':>5}"
    )
    total = 1
    x_sc = np.asarray(x0)
    for k in range(steps):
        # scipy's iteration k: calls marks[k] .. marks[k+1]
        sc_line = " " * 43
        d_sc = None
        if k + 1 < len(marks):
            group = sc_calls[marks[k] : marks[k + 1]]
            first_x = group[0][0]
            x_new = group[-1][0]
            d_sc = first_x - x_sc
            sc_line = f"{len(group):>5} {'':>9} {'':>9} {group[-1][1]:>14.8g}"
        seen.clear()
        here, mem = state.here, state.memory
        xc, xbar, state = step(state)
        jax.block_until_ready(state)
        new, mem2, evals, ok = state.here, state.memory, state.searched, state.ok
        d = np.asarray(xbar - here.x)
        dn = float(np.linalg.norm(d)) or 1.0
        trials = [float(np.dot(v - np.asarray(here.x), d) / dn**2) for v in seen]
        kept = int(jnp.sum(mem2.age >= 0)) > int(jnp.sum(mem.age >= 0)) or (
            not np.array_equal(np.asarray(mem2.age), np.asarray(mem.age))
        )
        free = int(jnp.sum((xc > lo) & (xc < up)))
        total += int(evals)
        if d_sc is not None:
            # scipy's trial steps along its own d (taken from its first trial)
            sd = d_sc / (np.linalg.norm(d_sc) or 1.0)
            st = [float(np.dot(c[0] - x_sc, d_sc) / max(np.dot(d_sc, d_sc), 1e-300))
                  for c in group]  # fmt: skip
            sc_line = (
                f"{len(group):>5} {st[0]:>9.3g} {st[-1]:>9.3g} {group[-1][1]:>14.8g}"
            )
            dd = float(np.linalg.norm(d - d_sc))
            dx = float(np.linalg.norm(np.asarray(here.x) - x_sc))
            del sd
        else:
            dd = dx = float("nan")
        print(
            f"{k:>3} | {sc_line} | {int(evals):>3} {trials[0] if trials else 0:>9.3g} "
            f"{trials[-1] if trials else 0:>9.3g} {float(new.f):>14.8g} "
            f"{'upd' if kept else 'skip':>4} | {dd:>9.2e} {dx:>9.2e} {free:>5}"
        )
        if d_sc is not None:
            x_sc = x_new
        if not bool(ok):
            print("  line search failed: memory emptied")
    print(f"ours after {steps} iterations: {total} evaluations")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["counts", "trace"])
    ap.add_argument("name", nargs="?")
    ap.add_argument("--only")
    ap.add_argument("--more", action="store_true", help="and the extra fits")
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args(argv)
    if a.what == "counts":
        counts(a.only, a.more)
    else:
        trace(a.name, a.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
