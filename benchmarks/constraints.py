"""Constraint sets beyond boxes, timed side by side (issue 16's performance rows).

Every case times its variants in one process, interleaved (one block of calls
of each variant per round, the starting variant rotating), after warm-up and
a check that the variants compute the same numbers. Reported per variant: the
median over the rounds with the min and max, and the ratio of medians
against the reference named in the row, with the issue's target.

Rows:

1. ``chain(adam, project_to_constraints(c))`` with ``MaxNorm(axis=0)`` on
   every kernel of a ~10M-parameter MLP, one jitted step, against the floor:
   adam and a hand-written max-norm rescale jitted together (target <=
   1.1x); ``chain(adam, project_to_bounds)`` against adam and a hand-written
   clip (<= 1.1x). Each step's passes over memory are counted from its
   compiled HLO (`hlo_passes`).
2. Compile time of those steps at 300 leaves, against the floors' (<= 1.5x).
3. ``project`` with ``MaxNorm(axis=0)`` on one 4096x2048 kernel (jitted)
   against the hand-written ``jnp`` formula and against
   ``optax.projections.projection_l2_ball`` under ``jax.vmap`` (<= 1.2x each).
4. ``Simplex`` over 4,096 rows of 64 against ``projection_simplex`` under
   ``vmap`` (<= 1.2x).
5. ``Ordered`` over 4,096 rows of 64 against a NumPy pool-adjacent-violators
   loop (reported only).
6. ``jax.grad(constraint_cost)`` on the 10M MLP against a hand-written
   ``jnp.linalg.norm`` penalty (<= 1.5x).
7. ``project`` with ``Orthogonal`` / ``SpectralNorm`` / ``PSD`` on 64 stacked
   256x256 matrices against hand-written ``jnp.linalg.svd`` / ``eigh`` code
   (<= 1.2x each).
8. ``constrain`` with ``Orthogonal(map="expm")`` on 64 stacked 256x256 raw
   matrices, forward and backward, against a hand-written
   ``jax.scipy.linalg.expm`` of the skew matrix (<= 1.2x).
9. ``projected(adam, c)`` (the step projected in Adam's metric) against
   ``chain(adam, project_to_constraints(c))`` with ``MaxNorm(axis=0)`` on
   every kernel of the 10M MLP (<= 1.5x).
10. The same with only relations and intervals (``LessEqual`` between the
   two halves of every bias, both in ``[-1, 1]``) (<= 1.1x).
11. ``project(..., metric=d)`` with ``Simplex`` over 4,096 rows of 64
   against the Euclidean ``project`` (<= 1.5x).

Usage::

    python benchmarks/constraints.py            # about a minute on 2 cores
    python benchmarks/constraints.py --quick    # tiny sizes, a few seconds
    python benchmarks/constraints.py --rounds 7 --out /tmp/c.json
    python benchmarks/constraints.py --cases 7,8 --stack-shape 16,128,128
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxbounds as jb

from hlo_passes import passes


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def interleaved(variants: dict[str, Callable[[], Any]], rounds: int, budget: float):
    """Per variant, seconds per call in each round (blocks of ~``budget`` s)."""
    for f in variants.values():  # warm-up
        block(f())
    counts = {}
    for name, f in variants.items():
        t0 = time.perf_counter()
        block(f())
        dt = time.perf_counter() - t0
        counts[name] = max(1, int(budget / max(dt, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            f, n = variants[name], counts[name]
            t0 = time.perf_counter()
            for _ in range(n):
                out = f()
            block(out)
            times[name].append((time.perf_counter() - t0) / n)
    return times


def summary(ts: list[float]) -> dict[str, float]:
    return {"median": float(np.median(ts)), "min": min(ts), "max": max(ts)}


def mlp(dims: list[int], seed: int = 0) -> dict[str, Any]:
    keys = jax.random.split(jax.random.key(seed), len(dims))
    return {
        f"layer{i}": {
            "kernel": jax.random.normal(k, (a, b), jnp.float32) / np.sqrt(a),
            "bias": jnp.zeros(b, jnp.float32),
        }
        for i, (k, a, b) in enumerate(zip(keys, dims[:-1], dims[1:]))
    }


def step_fn(tx: optax.GradientTransformation) -> Callable:
    @jax.jit
    def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def hand_max_norm(params: Any, radius: float = 1.0) -> Any:
    """Every kernel rescaled to norm <= radius per column, as a user writes it."""

    def one(path: Any, x: jax.Array) -> jax.Array:
        if "kernel" not in jax.tree_util.keystr(path):
            return x
        n = jnp.sqrt(jnp.sum(jnp.square(x), axis=0, keepdims=True))
        return x * jnp.minimum(1.0, radius / jnp.where(n > 0, n, 1.0))

    return jax.tree_util.tree_map_with_path(one, params)


def steps(params: Any) -> dict[str, Callable[[], tuple[Callable, Any]]]:
    """The contenders of rows 1 and 2: adam, the floors, jaxbounds' chains.

    A floor is the same maths written by hand with adam, jitted together,
    without exactness: adam then a max-norm rescale, adam then a clip.
    """
    c = jb.Constraints(("*.kernel", jb.MaxNorm(1.0, axis=0)))
    lower = jax.tree.map(lambda x: -0.05, params)
    upper = jax.tree.map(lambda x: 0.05, params)

    def then(after: Callable[[Any], Any]) -> Callable[[], tuple[Callable, Any]]:
        def make() -> tuple[Callable, Any]:
            tx = optax.adam(1e-3)

            def step(p: Any, s: Any, g: Any) -> tuple[Any, Any]:
                u, s = tx.update(g, s, p)
                return after(optax.apply_updates(p, u)), s

            return step, tx.init(params)

        return make

    def chain(last: optax.GradientTransformation) -> Callable[[], tuple]:
        def make() -> tuple[Callable, Any]:
            tx = optax.chain(optax.adam(1e-3), last)

            def step(p: Any, s: Any, g: Any) -> tuple[Any, Any]:
                u, s = tx.update(g, s, p)
                return optax.apply_updates(p, u), s

            return step, tx.init(params)

        return make

    def clip(p: Any) -> Any:
        return jax.tree.map(jnp.clip, p, lower, upper)

    return {
        "adam": then(lambda p: p),
        "floor: adam + max-norm rescale": then(hand_max_norm),
        "adam + project_to_constraints": chain(jb.project_to_constraints(c)),
        "floor: adam + clip": then(clip),
        "adam + project_to_bounds": chain(jb.project_to_bounds(lower, upper)),
    }


#: Which floor each chain is measured against (rows 1 and 2).
FLOORS = {
    "adam + project_to_constraints": "floor: adam + max-norm rescale",
    "adam + project_to_bounds": "floor: adam + clip",
}


def case_optimizer(cfg: argparse.Namespace) -> dict[str, Any]:
    params = mlp(cfg.dims)
    grads = jax.tree.map(lambda x: jnp.full_like(x, 1e-3), params)
    size = sum(x.size for x in jax.tree.leaves(params))
    variants, counted = {}, {}
    for name, make in steps(params).items():
        step, state = make()
        reads, writes = passes(step, params, state, grads, unit=4 * size)
        counted[name] = {"reads": reads, "writes": writes}
        jitted = jax.jit(step)
        variants[name] = lambda j=jitted, s=state: j(params, s, grads)[0]
    for ours, floor in FLOORS.items():  # the same numbers, to rounding
        for a, b in zip(
            jax.tree.leaves(variants[ours]()), jax.tree.leaves(variants[floor]())
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    times = interleaved(variants, cfg.rounds, cfg.budget)
    return {
        "params": int(size),
        "times": times,
        "passes": counted,
        "pairs": FLOORS,
        "reference": ["adam", *FLOORS.values()],
        "target": 1.1,
    }


def case_compile(cfg: argparse.Namespace) -> dict[str, Any]:
    n_layers = cfg.leaves // 2
    params = mlp([16] * (n_layers + 1), seed=1)
    grads = jax.tree.map(jnp.ones_like, params)
    makers = steps(params)
    times: dict[str, list[float]] = {k: [] for k in makers}
    names = list(makers)
    for r in range(max(3, cfg.rounds // 2)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            jax.clear_caches()
            step, state = makers[name]()
            t0 = time.perf_counter()
            jax.jit(step).lower(params, state, grads).compile()
            times[name].append(time.perf_counter() - t0)
    return {
        "leaves": 2 * n_layers,
        "times": times,
        "pairs": FLOORS,
        "reference": ["adam", *FLOORS.values()],
        "target": 1.5,
    }


def case_maxnorm(cfg: argparse.Namespace) -> dict[str, Any]:
    w = jax.random.normal(jax.random.key(2), cfg.kernel, jnp.float32)
    c = jb.Constraints(("w", jb.MaxNorm(1.0, axis=0)))
    ours = jax.jit(lambda w: jb.project({"w": w}, c)["w"])

    @jax.jit
    def formula(w: jax.Array) -> jax.Array:  # Keras' MaxNorm, written out
        n = jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True))
        return w * (jnp.clip(n, 0, 1.0) / (1e-7 + n))

    l2 = jax.jit(
        jax.vmap(lambda col: optax.projections.projection_l2_ball(col, 1.0), 1, 1)
    )
    np.testing.assert_allclose(ours(w), formula(w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(w), l2(w), rtol=1e-5, atol=1e-6)
    variants = {
        "jaxbounds project": lambda: ours(w),
        "jnp formula": lambda: formula(w),
        "optax l2_ball (vmap)": lambda: l2(w),
    }
    times = interleaved(variants, cfg.rounds, cfg.budget)
    return {
        "shape": list(cfg.kernel),
        "times": times,
        "reference": ["jnp formula", "optax l2_ball (vmap)"],
        "target": 1.2,
    }


def case_simplex(cfg: argparse.Namespace) -> dict[str, Any]:
    x = jax.random.normal(jax.random.key(3), cfg.rows, jnp.float32)
    c = jb.Constraints(("x", jb.Simplex(axis=-1)))
    ours = jax.jit(lambda x: jb.project({"x": x}, c)["x"])
    theirs = jax.jit(jax.vmap(optax.projections.projection_simplex))
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-6)
    variants = {
        "jaxbounds project": lambda: ours(x),
        "optax projection_simplex (vmap)": lambda: theirs(x),
    }
    times = interleaved(variants, cfg.rounds, cfg.budget)
    return {
        "shape": list(cfg.rows),
        "times": times,
        "reference": "optax projection_simplex (vmap)",
        "target": 1.2,
    }


def numpy_pav(rows: np.ndarray) -> np.ndarray:
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        sums, counts = [], []
        for v in row:
            sums.append(float(v))
            counts.append(1)
            while len(sums) > 1 and sums[-2] / counts[-2] > sums[-1] / counts[-1]:
                s, n = sums.pop(), counts.pop()
                sums[-1] += s
                counts[-1] += n
        out[i] = np.repeat(np.array(sums) / np.array(counts), counts)
    return out


def case_ordered(cfg: argparse.Namespace) -> dict[str, Any]:
    x = jax.random.normal(jax.random.key(4), cfg.rows, jnp.float32)
    xn = np.asarray(x, np.float64)
    c = jb.Constraints(("x", jb.Ordered(axis=-1)))
    ours = jax.jit(lambda x: jb.project({"x": x}, c)["x"])
    np.testing.assert_allclose(ours(x), numpy_pav(xn), atol=1e-5)
    variants = {
        "jaxbounds project": lambda: ours(x),
        "NumPy PAV loop": lambda: numpy_pav(xn),
    }
    times = interleaved(variants, max(3, cfg.rounds // 2), cfg.budget)
    return {
        "shape": list(cfg.rows),
        "times": times,
        "reference": "NumPy PAV loop",
        "target": None,
    }


def case_cost_grad(cfg: argparse.Namespace) -> dict[str, Any]:
    params = mlp(cfg.dims, seed=5)
    params = jax.tree.map(lambda x: x * 3, params)  # columns outside, below v = 15
    c = jb.Constraints(("*.kernel", jb.MaxNorm(1.0, axis=0)))
    ours = jax.jit(jax.grad(lambda p: jb.constraint_cost(p, c)))

    def hand(p: Any) -> jax.Array:
        total = 0.0
        for layer in p.values():
            v = jnp.linalg.norm(layer["kernel"], axis=0) - 1.0
            total = total + jnp.sum(
                jnp.where(v > 0, jnp.exp(jnp.where(v > 0, v, 0)), 0)
            )
        return total

    theirs = jax.jit(jax.grad(hand))
    ga, gb = ours(params), theirs(params)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    variants = {
        "jaxbounds grad(constraint_cost)": lambda: ours(params),
        "grad(hand-written norm penalty)": lambda: theirs(params),
    }
    times = interleaved(variants, cfg.rounds, cfg.budget)
    return {
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "times": times,
        "reference": "grad(hand-written norm penalty)",
        "target": 1.5,
    }


def _step_pair(params: Any, grads: Any, c: Any) -> dict[str, Callable[[], Any]]:
    txs = {
        "projected(adam, c)": jb.projected(optax.adam(1e-3), c),
        "chain(adam, project_to_constraints)": optax.chain(
            optax.adam(1e-3), jb.project_to_constraints(c)
        ),
    }
    variants = {}
    for name, tx in txs.items():
        step, state = step_fn(tx), tx.init(params)
        state = step(params, state, grads)[1]  # a state with a metric in it
        variants[name] = lambda step=step, state=state: step(params, state, grads)[0]
    for f in variants.values():
        assert jb.violations(f(), c).ok
    return variants


def case_projected_norms(cfg: argparse.Namespace) -> dict[str, Any]:
    params = mlp(cfg.dims, seed=6)
    params = jax.tree.map(lambda x: x * 3, params)  # columns outside
    c = jb.Constraints(("*.kernel", jb.MaxNorm(1.0, axis=0)))
    return _projected_case(cfg, params, c, seed=0, target=1.5)


def case_projected_relations(cfg: argparse.Namespace) -> dict[str, Any]:
    params = mlp(cfg.dims, seed=7)
    for layer in params.values():  # two halves of every bias, related
        half = layer.pop("bias").shape[0] // 2
        layer["lo"] = jnp.linspace(0.5, -0.5, half)
        layer["hi"] = jnp.zeros(half)
    rules = [jb.LessEqual(f"{k}.lo", f"{k}.hi") for k in params]
    c = jb.Constraints(("*.lo", jb.Interval(-1.0, 1.0)), *rules)
    return _projected_case(cfg, params, c, seed=1, target=1.1)


def _projected_case(
    cfg: argparse.Namespace, params: Any, c: Any, seed: int, target: float
) -> dict[str, Any]:
    """`projected(adam)` against the chain on ``params``, with small random grads."""
    rng = np.random.default_rng(seed)
    grads = jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape) * 1e-3, x.dtype), params
    )
    times = interleaved(_step_pair(params, grads, c), cfg.rounds, cfg.budget)
    return {
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "times": times,
        "reference": "chain(adam, project_to_constraints)",
        "target": target,
    }


def case_weighted_simplex(cfg: argparse.Namespace) -> dict[str, Any]:
    x = jax.random.normal(jax.random.key(8), cfg.rows, jnp.float32)
    d = jnp.exp(jax.random.normal(jax.random.key(9), cfg.rows, jnp.float32))
    c = jb.Constraints(("x", jb.Simplex(axis=-1)))
    weighted = jax.jit(lambda x, d: jb.project({"x": x}, c, metric={"x": d})["x"])
    plain = jax.jit(lambda x: jb.project({"x": x}, c)["x"])
    np.testing.assert_allclose(weighted(x, jnp.ones_like(d)), plain(x), atol=1e-6)
    variants = {
        "project(metric=d)": lambda: weighted(x, d),
        "project (Euclidean)": lambda: plain(x),
    }
    times = interleaved(variants, cfg.rounds, cfg.budget)
    return {
        "shape": list(cfg.rows),
        "times": times,
        "reference": "project (Euclidean)",
        "target": 1.5,
    }


HIGHEST = jax.lax.Precision.HIGHEST


def case_matrix_project(cfg: argparse.Namespace) -> dict[str, Any]:
    x = jax.random.normal(jax.random.key(6), cfg.stack, jnp.float32)

    def ours(kind: jb.Constraint) -> Callable:
        c = jb.Constraints(("w", kind))
        return jax.jit(lambda x: jb.project({"w": x}, c)["w"])

    @jax.jit
    def polar(x: jax.Array) -> jax.Array:
        u, _, vh = jnp.linalg.svd(x, full_matrices=False)
        return jnp.matmul(u, vh, precision=HIGHEST)

    @jax.jit
    def clip(x: jax.Array) -> jax.Array:
        u, s, vh = jnp.linalg.svd(x, full_matrices=False)
        return jnp.matmul(u * jnp.minimum(s, 1.0)[..., None, :], vh, precision=HIGHEST)

    @jax.jit
    def psd(x: jax.Array) -> jax.Array:
        w, v = jnp.linalg.eigh((x + x.mT) / 2)
        return jnp.matmul(
            v * jnp.maximum(w, 0.0)[..., None, :], v.mT, precision=HIGHEST
        )

    pairs = {
        "Orthogonal": (ours(jb.Orthogonal()), polar),
        "SpectralNorm": (ours(jb.SpectralNorm(1.0)), clip),
        "PSD": (ours(jb.PSD()), psd),
    }
    for a, b in pairs.values():
        np.testing.assert_allclose(a(x), b(x), atol=2e-3)
    out = {}
    for name, (a, b) in pairs.items():
        variants = {
            f"jaxbounds project ({name})": lambda a=a: a(x),
            f"hand-written ({name})": lambda b=b: b(x),
        }
        out[name] = {
            "shape": list(cfg.stack),
            "times": interleaved(variants, cfg.rounds, cfg.budget),
            "reference": f"hand-written ({name})",
            "target": 1.2,
        }
    return out


def case_orthogonal_constrain(cfg: argparse.Namespace) -> dict[str, Any]:
    raw = jax.random.normal(jax.random.key(7), cfg.stack, jnp.float32) * 0.1
    g = jax.random.normal(jax.random.key(8), cfg.stack, jnp.float32)
    c = jb.Constraints(("w", jb.Orthogonal(map="expm")))

    def ours(raw: jax.Array) -> jax.Array:
        return jnp.sum(jb.constrain({"w": raw}, c)["w"] * g)

    def hand(raw: jax.Array) -> jax.Array:  # PyTorch's matrix_exp form
        a = jnp.tril(raw, -1)
        return jnp.sum(jax.scipy.linalg.expm(a - a.mT) * g)

    fa = jax.jit(jax.value_and_grad(ours))
    fb = jax.jit(jax.value_and_grad(hand))
    np.testing.assert_allclose(fa(raw)[1], fb(raw)[1], rtol=1e-3, atol=1e-3)
    variants = {
        "jaxbounds constrain (expm), fwd+bwd": lambda: fa(raw),
        "hand-written expm, fwd+bwd": lambda: fb(raw),
    }
    return {
        "shape": list(cfg.stack),
        "times": interleaved(variants, cfg.rounds, cfg.budget),
        "reference": "hand-written expm, fwd+bwd",
        "target": 1.2,
    }


CASES = {
    1: ("optimizer step, 10M MLP", case_optimizer),
    2: ("optimizer compile, 300 leaves", case_compile),
    3: ("MaxNorm project", case_maxnorm),
    4: ("Simplex project", case_simplex),
    5: ("Ordered project", case_ordered),
    6: ("constraint_cost gradient, 10M MLP", case_cost_grad),
    7: ("matrix project", case_matrix_project),
    8: ("Orthogonal constrain (expm)", case_orthogonal_constrain),
    9: ("projected(adam) step, MaxNorm, 10M MLP", case_projected_norms),
    10: ("projected(adam) step, relations + intervals", case_projected_relations),
    11: ("Simplex project in a metric", case_weighted_simplex),
}


def report(name: str, res: dict[str, Any]) -> list[str]:
    stats = {k: summary(v) for k, v in res["times"].items()}
    refs = (
        res["reference"] if isinstance(res["reference"], list) else [res["reference"]]
    )
    if "pairs" in res:
        pairs = list(res["pairs"].items())
    else:
        ours = next(k for k in stats if k not in refs)
        pairs = [(ours, ref) for ref in refs]
    lines = [f"## {name}"]
    for k, s in stats.items():
        counted = res.get("passes", {}).get(k)
        extra = (
            f"  passes: read {counted['reads']:.2f}, write {counted['writes']:.2f}"
            if counted
            else ""
        )
        lines.append(
            f"  {k:34s} median {s['median'] * 1e3:10.3f} ms  "
            f"(min {s['min'] * 1e3:.3f}, max {s['max'] * 1e3:.3f}){extra}"
        )
    res["ratios"] = {}
    target = res["target"]
    for mine, ref in pairs:
        ratio = stats[mine]["median"] / stats[ref]["median"]
        res["ratios"][f"{mine} / {ref}"] = ratio
        verdict = "" if target is None else ("  ok" if ratio <= target else "  MISS")
        shown = "" if target is None else f" (target <= {target}x)"
        lines.append(f"  {mine} vs {ref}: {ratio:.2f}x{shown}{verdict}")
    if "pairs" in res:
        for mine, _ in pairs:
            ratio = stats[mine]["median"] / stats["adam"]["median"]
            lines.append(f"  {mine} vs adam: {ratio:.2f}x (reported)")
    res["stats"] = stats
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes")
    ap.add_argument("--cases", default="1,2,3,4,5,6,7,8,9,10,11")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--stack-shape", default=None, help="matrix cases' shape, e.g. 16,128,128"
    )
    ap.add_argument("--out", default="benchmarks/out/constraints.json")
    cfg = ap.parse_args()
    cfg.budget = 0.05
    if cfg.quick:
        cfg.dims, cfg.leaves, cfg.kernel, cfg.rows = (
            [64, 64, 32],
            20,
            (64, 32),
            (64, 16),
        )
        cfg.stack = (4, 16, 16)
        cfg.rounds, cfg.budget = 3, 0.005
    else:
        cfg.dims = [2048, 2048, 2048, 512]  # 9.4M parameters
        cfg.leaves, cfg.kernel, cfg.rows = 300, (4096, 2048), (4096, 64)
        cfg.stack = (64, 256, 256)
    if cfg.stack_shape:
        cfg.stack = tuple(int(v) for v in cfg.stack_shape.split(","))
    results = {
        "machine": platform.platform(),
        "backend": jax.default_backend(),
        "devices": str(jax.devices()),
        "rounds": cfg.rounds,
        "cases": {},
    }
    for k in (int(x) for x in cfg.cases.split(",")):
        name, fn = CASES[k]
        res = fn(cfg)
        parts = res if "times" not in res else {"": res}  # a case of several rows
        for sub, one in parts.items():
            full = f"{name}: {sub}" if sub else name
            print("\n".join(report(full, one)), flush=True)
            results["cases"][full] = one
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
