"""Side-by-side timings: jaxbounds against a per-leaf reference, Rockpool and the floor.

Every case times its variants in one process, interleaved (one call of each
variant per round, the order rotating from round to round), after warm-up
calls, and reports the median over the rounds; every call is followed by
``jax.block_until_ready``. Before timing, the variants of a case are checked
to compute the same numbers, so a fast wrong answer cannot pass.

Cases (issue 6):

1. ``bounds_cost`` called eagerly on an SNN-like dict tree (50 blocks of
   ``weight`` 64x64, ``tau_mem`` 64, ``tau_syn`` 64x1, ``threshold`` 64; the
   time constants bounded) against a per-leaf reference written the way
   Rockpool's ``training.jax_loss.bounds_cost`` is written, and Rockpool itself
   when it is installed (``pip install -e ".[bench]"``).
2. ``jax.jit(jax.value_and_grad(cost))`` on a 10M-element unbounded weight plus
   1000 bounded time constants, against the reference jitted and the floor
   ``value_and_grad(sum(tau**2))`` over the same tree.
3. The same on one fully bounded 10M-element leaf, against the floor
   ``value_and_grad(sum(p**2))``.
4. Compile time (trace, lower, compile, caches cleared) of case 2's and case
   1's jitted gradient, against the reference's.
5. One jitted optimizer step on 10M params: ``chain(add_bounds_penalty, adam)``
   with 1% of the params bounded, and ``chain(adam, project_to_bounds)`` with
   all of them bounded, against ``adam`` alone.
6. Compile time (trace, lower, compile, caches cleared) of one jitted
   optimizer step on trees of 300 and 3,000 small leaves, a third of them
   bounded: ``chain(adam, project_to_bounds)`` and
   ``chain(add_bounds_penalty, adam)`` against ``adam`` alone (issue 11).

Bound trees are closed over by the jitted functions (as in a training loss),
so their Python-float infinities are static and unbounded leaves cost nothing.

Usage::

    python benchmarks/run.py                 # full run (about 12 minutes on 2 cores)
    python benchmarks/run.py --cases 1,2,3,4,5   # without case 6 (about 2 minutes)
    python benchmarks/run.py --quick         # tiny sizes, a few seconds
    python benchmarks/run.py --size 1000000 --repeats 10 --cases 2,3

Prints a table of medians and ratios and writes JSON to
``benchmarks/out/results.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxbounds as jb

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "results.json"


# ---------------------------------------------------------------- references


def reference_bounds_cost(params: Any, lower_bounds: Any, upper_bounds: Any) -> Any:
    """Rockpool's ``training.jax_loss.bounds_cost`` (v3.1), line for line.

    One small computation per leaf, each leaf's bounds clipped to +-2**31 and
    the leaf costs collected into an array and summed; no leaf is skipped.
    """
    params, _ = jax.tree_util.tree_flatten(params)
    lower_bounds, _ = jax.tree_util.tree_flatten(lower_bounds)
    upper_bounds, _ = jax.tree_util.tree_flatten(upper_bounds)

    def bound(p: Any, lower: Any, upper: Any) -> Any:
        lb_cost_all = jnp.exp(-(p - jnp.clip(lower, min=-(2**31))))
        ub_cost_all = jnp.exp(-(jnp.clip(upper, max=2**31 - 1) - p))
        lb_cost = jnp.nansum(jnp.where(p < lower, lb_cost_all, 0.0))
        ub_cost = jnp.nansum(jnp.where(p > upper, ub_cost_all, 0.0))
        return lb_cost + ub_cost

    return jnp.sum(jnp.array(list(map(bound, params, lower_bounds, upper_bounds))))


def floor_cost(params: Any, lower: Any, upper: Any) -> Any:
    """``sum(p**2)`` over the bounded leaves: the least a penalty can compute."""
    bounded = [
        p
        for p, lo in zip(
            jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(lower)
        )
        if lo != -math.inf
    ]
    return sum(jnp.sum(p**2) for p in bounded)


def rockpool_bounds_cost(cfg: argparse.Namespace) -> Callable[..., Any] | None:
    """Rockpool's own ``bounds_cost`` when Rockpool is installed, else None."""
    if cfg.no_rockpool:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Rockpool warns about missing torch
            from rockpool.training.jax_loss import bounds_cost
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return bounds_cost


def rockpool_skipped(cfg: argparse.Namespace) -> list[str]:
    if cfg.no_rockpool:
        return ["rockpool (--no-rockpool)"]
    return ["rockpool (not installed; pip install -e '.[bench]')"]


# ---------------------------------------------------------------- models


def snn_params(blocks: int, width: int, seed: int = 0) -> dict[str, Any]:
    """An SNN-like dict tree: per block a weight, two time constants, a threshold.

    About a tenth of the time constants lie outside ``[1e-3, 0.1]`` (below and
    above), so the cost and its gradient are not zero.
    """
    rng = np.random.default_rng(seed)

    def tau(shape: tuple[int, ...]) -> jax.Array:
        return jnp.asarray(rng.uniform(-0.005, 0.105, shape), jnp.float32)

    return {
        f"block_{b:03d}": {
            "weight": jnp.asarray(rng.normal(size=(width, width)), jnp.float32),
            "tau_mem": tau((width,)),
            "tau_syn": tau((width, 1)),
            "threshold": jnp.asarray(rng.normal(size=(width,)), jnp.float32),
        }
        for b in range(blocks)
    }


TAU_LOWER, TAU_UPPER = 1e-3, 0.1


def bound_time_constants(params: Any) -> tuple[Any, Any]:
    """Bounds ``[TAU_LOWER, TAU_UPPER]`` on every ``tau_*`` leaf, none elsewhere."""
    lower, upper = jb.make_bounds(params)
    is_tau = [p.rsplit(".", 1)[-1].startswith("tau") for p in jb.paths(params)]
    flat_lo, treedef = jax.tree_util.tree_flatten(lower)
    flat_up = treedef.flatten_up_to(upper)
    flat_lo = [TAU_LOWER if t else b for t, b in zip(is_tau, flat_lo)]
    flat_up = [TAU_UPPER if t else b for t, b in zip(is_tau, flat_up)]
    return treedef.unflatten(flat_lo), treedef.unflatten(flat_up)


def big_model(size: int, n_tau: int, seed: int = 1) -> dict[str, Any]:
    """A ``size``-element weight (unbounded) and ``n_tau`` time constants."""
    rng = np.random.default_rng(seed)
    return {
        "weight": jnp.asarray(rng.normal(size=size), jnp.float32),
        "tau": jnp.asarray(rng.uniform(-0.005, 0.105, n_tau), jnp.float32),
    }


# ---------------------------------------------------------------- timing


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, block_s: float
) -> dict[str, list[float]]:
    """Seconds per call of each function, measured round-robin.

    Each round times every function once, as a block of back-to-back calls
    lasting about ``block_s`` (one call for slow functions), divided by the
    number of calls, as `timeit` does: a fast function is timed in a steady
    state, not right after a slow neighbour has evicted it from the caches.
    The starting function rotates from round to round.
    """
    names = list(fns)
    number = {}
    for name in names:
        for _ in range(warmup):
            block(fns[name]())
        start = time.perf_counter()
        block(fns[name]())
        once = time.perf_counter() - start
        number[name] = max(1, min(1000, round(block_s / max(once, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, n = fns[name], number[name]
            start = time.perf_counter()
            for _ in range(n):
                block(fn())
            times[name].append((time.perf_counter() - start) / n)
    return times


def compile_seconds(
    builders: dict[str, Callable[[], Callable[[], Any]]], repeats: int
) -> dict[str, list[float]]:
    """Seconds from a fresh jitted function to a compiled executable.

    ``builders[name]()`` returns a zero-argument function that traces, lowers
    and compiles. All of JAX's in-memory caches (traces, lowerings and
    compiled executables, including jaxbounds' internal jitted functions) are
    cleared before each measurement, so every one is a cold compile.
    """
    times: dict[str, list[float]] = {name: [] for name in builders}
    names = list(builders)
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            compile_now = builders[name]()
            jax.clear_caches()
            start = time.perf_counter()
            compile_now()
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return float(np.median(xs))


# ---------------------------------------------------------------- checks


def assert_close(name: str, got: Any, want: Any, rtol: float = 1e-4) -> None:
    """Raise if two trees of numbers differ (the variants must agree)."""
    got_leaves = jax.tree_util.tree_leaves(got)
    want_leaves = jax.tree_util.tree_leaves(want)
    if len(got_leaves) != len(want_leaves):
        raise AssertionError(f"{name}: {len(got_leaves)} vs {len(want_leaves)} leaves")
    for g, w in zip(got_leaves, want_leaves):
        np.testing.assert_allclose(
            np.asarray(g, np.float64),
            np.asarray(w, np.float64),
            rtol=rtol,
            atol=1e-6,
            err_msg=name,
        )


# ---------------------------------------------------------------- cases


def target(ratio: float, op: str, bound: float) -> dict[str, Any]:
    met = ratio >= bound if op == ">=" else ratio <= bound
    return {"ratio": ratio, "target": f"{op} {bound:g}", "met": bool(met)}


def case_eager(cfg: argparse.Namespace) -> dict[str, Any]:
    params = snn_params(cfg.blocks, cfg.width)
    lower, upper = bound_time_constants(params)
    fns = {
        "jaxbounds": lambda: jb.bounds_cost(params, lower, upper),
        "reference": lambda: reference_bounds_cost(params, lower, upper),
    }
    rockpool = rockpool_bounds_cost(cfg)
    if rockpool is not None:
        fns["rockpool"] = lambda: rockpool(params, lower, upper)
    want = fns["reference"]()
    for name, fn in fns.items():
        assert_close(f"case 1 {name}", fn(), want)
    times = interleaved(fns, cfg.repeats, cfg.warmup, cfg.block)
    med = {name: median(ts) for name, ts in times.items()}
    result = {
        "description": f"eager bounds_cost, SNN dict tree of "
        f"{len(jax.tree_util.tree_leaves(params))} leaves",
        "median_s": med,
        "targets": {
            "reference / jaxbounds": target(
                med["reference"] / med["jaxbounds"], ">=", 50
            ),
        },
    }
    if rockpool is not None:
        result["info"] = {"rockpool / jaxbounds": med["rockpool"] / med["jaxbounds"]}
    else:
        result["skipped"] = rockpool_skipped(cfg)
    return result


def case_sparse(cfg: argparse.Namespace) -> dict[str, Any]:
    params = big_model(cfg.size, cfg.n_tau)
    lower, upper = jb.make_bounds(params)
    lower["tau"], upper["tau"] = TAU_LOWER, TAU_UPPER
    variants = {
        "jaxbounds": lambda p: jb.bounds_cost(p, lower, upper),
        "reference": lambda p: reference_bounds_cost(p, lower, upper),
        "floor": lambda p: jnp.sum(p["tau"] ** 2),
    }
    rockpool = rockpool_bounds_cost(cfg)
    if rockpool is not None:
        variants["rockpool"] = lambda p: rockpool(p, lower, upper)
    jitted = {k: jax.jit(jax.value_and_grad(f)) for k, f in variants.items()}
    want = jitted["reference"](params)
    for name in jitted:
        if name != "floor":
            assert_close(f"case 2 {name}", jitted[name](params), want)
    fns = {k: (lambda f=f: f(params)) for k, f in jitted.items()}
    med = {
        k: median(ts)
        for k, ts in interleaved(fns, cfg.repeats, cfg.warmup, cfg.block).items()
    }
    result = {
        "description": f"jit(value_and_grad), {cfg.size:,} unbounded + "
        f"{cfg.n_tau} bounded elements",
        "median_s": med,
        "targets": {
            "reference / jaxbounds": target(
                med["reference"] / med["jaxbounds"], ">=", 4
            ),
            "jaxbounds / floor": target(med["jaxbounds"] / med["floor"], "<=", 1.2),
        },
    }
    if rockpool is not None:
        result["info"] = {"rockpool / jaxbounds": med["rockpool"] / med["jaxbounds"]}
    else:
        result["skipped"] = rockpool_skipped(cfg)
    return result


def case_dense(cfg: argparse.Namespace) -> dict[str, Any]:
    variants = {
        "jaxbounds": lambda p: jb.bounds_cost(p, 0.0, 1.0),
        "reference": lambda p: reference_bounds_cost(p, 0.0, 1.0),
        "floor": lambda p: jnp.sum(p**2),
    }
    jitted = {k: jax.jit(jax.value_and_grad(f)) for k, f in variants.items()}
    med: dict[str, float] = {}
    # The target is at the full size. A fifth of it (8 MB at 10M) is also
    # timed: there the allocator reuses the gradient's buffer, the floor's
    # sum(p**2) runs from cache, and the exp penalty's arithmetic shows.
    for size, suffix in ((cfg.size, ""), (max(1, cfg.size // 5), " (size / 5)")):
        rng = np.random.default_rng(2)
        p = jnp.asarray(rng.uniform(-0.1, 1.1, size), jnp.float32)
        # Float32 sums of 10M terms in different orders agree to about 1e-4.
        got, want = jitted["jaxbounds"](p), jitted["reference"](p)
        assert_close("case 3", got, want, rtol=1e-3)
        fns = {k + suffix: (lambda f=f, p=p: f(p)) for k, f in jitted.items()}
        times = interleaved(fns, cfg.repeats, cfg.warmup, cfg.block)
        med.update({k: median(ts) for k, ts in times.items()})
    small = " (size / 5)"
    return {
        "description": f"jit(value_and_grad), one fully bounded {cfg.size:,}-"
        "element leaf",
        "median_s": med,
        "targets": {
            "jaxbounds / floor": target(med["jaxbounds"] / med["floor"], "<=", 1.5),
        },
        "info": {
            "reference / jaxbounds": med["reference"] / med["jaxbounds"],
            "jaxbounds / floor" + small: med["jaxbounds" + small]
            / med["floor" + small],
            "reference / jaxbounds" + small: med["reference" + small]
            / med["jaxbounds" + small],
        },
    }


def case_compile(cfg: argparse.Namespace) -> dict[str, Any]:
    big = big_model(cfg.size, cfg.n_tau)
    big_lo, big_up = jb.make_bounds(big)
    big_lo["tau"], big_up["tau"] = TAU_LOWER, TAU_UPPER
    snn = snn_params(cfg.blocks, cfg.width)
    snn_lo, snn_up = bound_time_constants(snn)

    def builder(cost: Callable, params: Any, lower: Any, upper: Any) -> Callable:
        def build() -> Callable[[], Any]:
            f = jax.jit(jax.value_and_grad(lambda p: cost(p, lower, upper)))
            return lambda: f.lower(params).compile()

        return build

    builders = {
        "case 2 jaxbounds": builder(jb.bounds_cost, big, big_lo, big_up),
        "case 2 reference": builder(reference_bounds_cost, big, big_lo, big_up),
        "case 2 floor": builder(floor_cost, big, big_lo, big_up),
        "case 1 jaxbounds": builder(jb.bounds_cost, snn, snn_lo, snn_up),
        "case 1 reference": builder(reference_bounds_cost, snn, snn_lo, snn_up),
        "case 1 floor": builder(floor_cost, snn, snn_lo, snn_up),
    }
    med = {
        k: median(ts)
        for k, ts in compile_seconds(builders, cfg.compile_repeats).items()
    }
    return {
        "description": "compile time of jit(value_and_grad) (trace + lower + "
        "compile, caches cleared)",
        "median_s": med,
        "targets": {
            f"case {c}: jaxbounds / reference": target(
                med[f"case {c} jaxbounds"] / med[f"case {c} reference"], "<=", 0.5
            )
            for c in (2, 1)
        },
        "info": {
            f"case {c}: floor / reference": med[f"case {c} floor"]
            / med[f"case {c} reference"]
            for c in (2, 1)
        },
    }


def optimizer_step(tx: optax.GradientTransformation) -> Callable:
    @jax.jit
    def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def case_optimizer(cfg: argparse.Namespace) -> dict[str, Any]:
    if not hasattr(jb, "add_bounds_penalty") or not hasattr(jb, "project_to_bounds"):
        return {"skipped": ["jaxbounds has no add_bounds_penalty / project_to_bounds"]}
    n_bounded = max(1, cfg.size // 100)
    rng = np.random.default_rng(3)
    params = {
        "weight": jnp.asarray(rng.normal(size=cfg.size - n_bounded), jnp.float32),
        "tau": jnp.asarray(rng.uniform(-0.005, 0.105, n_bounded), jnp.float32),
    }
    grads = jax.tree_util.tree_map(
        lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params
    )
    some_lo, some_up = jb.make_bounds(params)
    some_lo["tau"], some_up["tau"] = TAU_LOWER, TAU_UPPER
    all_lo = {"weight": -3.0, "tau": TAU_LOWER}
    all_up = {"weight": 3.0, "tau": TAU_UPPER}
    adam = optax.adam(1e-3)
    txs = {
        "adam": adam,
        "penalty + adam (1% bounded)": optax.chain(
            jb.add_bounds_penalty(some_lo, some_up, 1e-2), adam
        ),
        "adam + projection (all bounded)": optax.chain(
            adam, jb.project_to_bounds(all_lo, all_up)
        ),
    }
    steps = {k: optimizer_step(tx) for k, tx in txs.items()}
    states = {k: tx.init(params) for k, tx in txs.items()}

    # The penalty step must equal adam on grads + 1e-2 * grad(bounds_cost).
    pen_grads = jax.tree_util.tree_map(
        lambda g, c: g + 1e-2 * c,
        grads,
        jax.grad(jb.bounds_cost)(params, some_lo, some_up),
    )
    assert_close(
        "case 5 penalty",
        steps["penalty + adam (1% bounded)"](
            params, states["penalty + adam (1% bounded)"], grads
        )[0],
        steps["adam"](params, states["adam"], pen_grads)[0],
        rtol=1e-6,
    )
    assert_close(
        "case 5 projection",
        steps["adam + projection (all bounded)"](
            params, states["adam + projection (all bounded)"], grads
        )[0],
        jb.clip_to_bounds(
            steps["adam"](params, states["adam"], grads)[0], all_lo, all_up
        ),
        rtol=1e-6,
    )
    fns = {k: (lambda k=k: steps[k](params, states[k], grads)) for k in steps}
    med = {
        k: median(ts)
        for k, ts in interleaved(fns, cfg.repeats, cfg.warmup, cfg.block).items()
    }
    return {
        "description": f"one jitted optimizer step, {cfg.size:,} params",
        "median_s": med,
        "targets": {
            "penalty step / adam": target(
                med["penalty + adam (1% bounded)"] / med["adam"], "<=", 1.10
            ),
            "projection step / adam": target(
                med["adam + projection (all bounded)"] / med["adam"], "<=", 1.25
            ),
        },
    }


def many_leaves(n_leaves: int, seed: int = 4) -> tuple[Any, Any, Any]:
    """``n_leaves`` leaves in blocks of (weight 8x8, bias 8, tau 8); taus bounded.

    So a third of the leaves are bounded, as in a network whose every layer
    has a time constant. Returns ``(params, lower, upper)``.
    """
    rng = np.random.default_rng(seed)
    params = {
        f"block{i}": {
            "weight": jnp.asarray(rng.normal(size=(8, 8)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=8), jnp.float32),
            "tau": jnp.asarray(rng.uniform(-0.005, 0.105, 8), jnp.float32),
        }
        for i in range(max(1, n_leaves // 3))
    }
    lower, upper = jb.make_bounds(params)
    lower = jb.set_where(lower, "*tau", TAU_LOWER)
    upper = jb.set_where(upper, "*tau", TAU_UPPER)
    return params, lower, upper


def case_optimizer_compile(cfg: argparse.Namespace) -> dict[str, Any]:
    med: dict[str, float] = {}
    targets: dict[str, Any] = {}
    for n in cfg.compile_leaves:
        params, lower, upper = many_leaves(n)
        grads = jax.tree_util.tree_map(jnp.ones_like, params)
        adam = optax.adam(1e-3)
        txs = {
            "adam": adam,
            "adam + projection": optax.chain(adam, jb.project_to_bounds(lower, upper)),
            "penalty + adam": optax.chain(
                jb.add_bounds_penalty(lower, upper, 1e-2), adam
            ),
        }

        def builder(
            tx: optax.GradientTransformation, params: Any = params, grads: Any = grads
        ) -> Callable:
            def build() -> Callable[[], Any]:
                state = tx.init(params)
                step = optimizer_step(tx)
                return lambda: step.lower(params, state, grads).compile()

            return build

        times = compile_seconds(
            {f"{k}, {n} leaves": builder(tx) for k, tx in txs.items()},
            cfg.compile_repeats,
        )
        med.update({k: median(ts) for k, ts in times.items()})
        for k in ("adam + projection", "penalty + adam"):
            targets[f"{k} / adam, {n} leaves"] = target(
                med[f"{k}, {n} leaves"] / med[f"adam, {n} leaves"], "<=", 1.25
            )
    return {
        "description": "compile time of one jitted optimizer step (trace + lower "
        "+ compile, caches cleared), a third of the leaves bounded",
        "median_s": med,
        "targets": targets,
    }


CASES: dict[int, tuple[str, Callable[[argparse.Namespace], dict[str, Any]]]] = {
    1: ("eager bounds_cost, SNN tree", case_eager),
    2: ("jit grad, big unbounded leaf + bounded time constants", case_sparse),
    3: ("jit grad, one big fully bounded leaf", case_dense),
    4: ("compile time", case_compile),
    5: ("optimizer step", case_optimizer),
    6: ("optimizer compile time, many leaves", case_optimizer_compile),
}


# ---------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def table(results: dict[str, Any]) -> str:
    lines = []
    for key, res in results["cases"].items():
        lines.append(f"case {key}: {res.get('description', CASES[int(key)][0])}")
        for name, s in res.get("median_s", {}).items():
            lines.append(f"    {name:<34} {s * 1e3:11.3f} ms")
        for name, t in res.get("targets", {}).items():
            mark = "ok" if t["met"] else "MISSED"
            lines.append(
                f"    {name:<34} {t['ratio']:11.3f}x   target {t['target']:<7} {mark}"
            )
        for name, r in res.get("info", {}).items():
            lines.append(f"    {name:<34} {r:11.3f}x")
        for why in res.get("skipped", []):
            lines.append(f"    skipped: {why}")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few repeats")
    ap.add_argument("--size", type=int, help="elements of the big leaves (10M)")
    ap.add_argument("--n-tau", type=int, help="bounded time constants (1000)")
    ap.add_argument("--blocks", type=int, help="blocks of the SNN tree (50)")
    ap.add_argument("--width", type=int, help="neurons per SNN block (64)")
    ap.add_argument("--repeats", type=int, help="timed rounds per case (30)")
    ap.add_argument("--warmup", type=int, help="untimed rounds first (3)")
    ap.add_argument("--compile-repeats", type=int, help="cold compiles (5)")
    ap.add_argument("--block", type=float, help="seconds per timed block (0.02)")
    ap.add_argument(
        "--compile-leaves", help="leaf counts of case 6 (300,3000)", default=None
    )
    ap.add_argument("--cases", default="1,2,3,4,5,6", help="e.g. 1,3")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path")
    ap.add_argument(
        "--no-rockpool",
        action="store_true",
        help="leave Rockpool out even if installed",
    )
    cfg = ap.parse_args(argv)
    full = dict(
        size=10_000_000,
        n_tau=1000,
        blocks=50,
        width=64,
        repeats=30,
        warmup=3,
        compile_repeats=5,
        block=0.02,
    )
    quick = dict(
        size=20_000,
        n_tau=100,
        blocks=4,
        width=8,
        repeats=3,
        warmup=1,
        compile_repeats=1,
        block=0.002,
    )
    for k, v in (quick if cfg.quick else full).items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    if cfg.compile_leaves is None:
        cfg.compile_leaves = "30" if cfg.quick else "300,3000"
    cfg.compile_leaves = [int(n) for n in str(cfg.compile_leaves).split(",")]
    cfg.cases = [int(c) for c in cfg.cases.split(",") if c.strip()]
    unknown = [c for c in cfg.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {sorted(CASES)}")
    return cfg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse(argv)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(),
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()
        },
        "cases": {},
    }
    for c in cfg.cases:
        name, run = CASES[c]
        print(f"running case {c}: {name} ...", file=sys.stderr, flush=True)
        results["cases"][str(c)] = run(cfg)
    results["seconds"] = time.perf_counter() - start
    targets = [
        t for r in results["cases"].values() for t in r.get("targets", {}).values()
    ]
    results["all_targets_met"] = all(t["met"] for t in targets)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(
        f"{sum(t['met'] for t in targets)}/{len(targets)} targets met in "
        f"{results['seconds']:.0f} s; JSON written to {cfg.out}"
    )
    return results


if __name__ == "__main__":
    main()
