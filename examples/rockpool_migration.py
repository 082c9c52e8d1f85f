"""Migrating from Rockpool: the same constrained optimisation, before and after.

Rockpool's how-to "Configure and perform constrained optimization" (its JAX
part), step by step. Each step runs the Rockpool code ("before") and the
jaxbounds code ("after") on the same parameter dictionary and checks that the
results agree; the last step shows what jaxbounds does differently, and why.

Rockpool is optional. With it installed (``pip install rockpool``) the
parameters come from a Rockpool network and both halves run; without it the
same dictionary is built by hand and only the jaxbounds half runs.

Run: python examples/rockpool_migration.py   (prints as it goes; writes no files)
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxbounds as jb
from jaxbounds import tree_utils as jtu

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Rockpool warns about optional torch
        from rockpool.nn.combinators import Sequential
        from rockpool.nn.modules import LIFJax, LinearJax
        from rockpool.training import jax_loss as rp_loss
        from rockpool.utilities import tree_utils as rp_tu
except ImportError:
    rp_loss = None

#: LIFJax's time step (its ``dt`` default): the smallest safe time constant.
#: Rockpool's how-to bounds the taus below by 0.0, but a LIF decay
#: exp(-dt / tau) has a non-finite gradient at tau = 0 (0 * inf), so a
#: projection that puts a tau on 0 turns every parameter into NaN at the next
#: step. One time step is the smallest tau a discrete-time LIF can resolve.
DT = 1e-3


def rockpool_network() -> tuple[dict, dict, dict]:
    """The how-to's network: params, ``net.parameters("taus")`` and
    ``net.attributes_named("tau_syn")``."""
    np.random.seed(0)
    net = Sequential(LinearJax((2, 3)), LIFJax(3), LinearJax((3, 5)), LIFJax(5))
    return (
        net.parameters(),
        net.parameters("taus"),
        net.attributes_named("tau_syn"),
    )


def handmade_parameters() -> dict:
    """What ``net.parameters()`` returns for the how-to's network."""
    rng = np.random.default_rng(0)

    def lif(n: int) -> dict:
        return {
            "bias": jnp.zeros(n),
            "tau_mem": jnp.full(n, 0.02),
            "tau_syn": jnp.full((n, 1), 0.02),
            "threshold": jnp.ones(n),
        }

    return {
        "0_LinearJax": {"weight": rng.standard_normal((2, 3))},
        "1_LIFJax": lif(3),
        "2_LinearJax": {"weight": rng.standard_normal((3, 5))},
        "3_LIFJax": lif(5),
    }


def same(a: object, b: object) -> bool:
    """Whether two trees have the same structure and equal leaves."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(np.array_equal(x, y) for x, y in zip(la, lb))


def check(label: str, ok: bool) -> None:
    print(f"  {label}: {'same' if ok else 'DIFFERENT'}")
    if not ok:
        raise SystemExit(f"Rockpool and jaxbounds disagree: {label}")


def main() -> None:
    rockpool = rp_loss is not None
    if rockpool:
        rp_cost_fn = jax.jit(rp_loss.bounds_cost)  # one compilation, not one per op
        params, taus, tau_syns = rockpool_network()
        print("Parameters from Rockpool's Sequential(LinearJax, LIFJax, ...)")
    else:
        params = handmade_parameters()
        print("Rockpool is not installed: jaxbounds half only, on a handmade dict")
    print("paths:", jb.paths(params))

    # - 1. Bound templates
    print("\n1. make_bounds")
    print("  before: lb, ub = rockpool.training.jax_loss.make_bounds(params)")
    print("  after:  lb, ub = jaxbounds.make_bounds(params)")
    lb, ub = jb.make_bounds(params)
    if rockpool:
        rp_lb, rp_ub = rp_loss.make_bounds(params)
        check("lower and upper templates", same(lb, rp_lb) and same(ub, rp_ub))

    # - 2. Bounds on parameter families
    print("\n2. Bounds on families of parameters")
    print(f"  (lower bound on the taus: one time step, dt = {DT}, not 0.0)")
    print('  before: lb = tu.set_matching(lb, net.parameters("taus"), dt)')
    print('          ub = tu.set_matching(ub, net.attributes_named("tau_syn"), 0.5)')
    print('  after:  lb = jaxbounds.set_where(lb, "*.tau_*", dt)')
    print('          ub = jaxbounds.set_where(ub, "*.tau_syn", 0.5)')
    print("  (or the Rockpool lines unchanged, with jaxbounds.tree_utils as tu)")
    lb = jb.set_where(lb, "*.tau_*", DT)
    ub = jb.set_where(ub, "*.tau_syn", 0.5)
    print("  lower:", lb)
    print("  upper:", ub)
    if rockpool:
        rp_lb = rp_tu.set_matching(rp_lb, taus, DT)
        rp_ub = rp_tu.set_matching(rp_ub, tau_syns, 0.5)
        check("bounds from the selectors", same(lb, rp_lb) and same(ub, rp_ub))
        check(
            "bounds from jaxbounds.tree_utils.set_matching",
            same(jtu.set_matching(rp_loss.make_bounds(params)[0], taus, DT), lb),
        )

    # - 3. The cost, on parameters that leave their bounds
    print("\n3. bounds_cost")
    print("  before: rockpool.training.jax_loss.bounds_cost(params, lb, ub)")
    print("  after:  jaxbounds.bounds_cost(params, lb, ub)")
    bad = jb.set_where(params, "1_LIFJax.tau_mem", jnp.array([-0.01, 0.02, -2.0]))
    bad = jb.set_where(bad, "3_LIFJax.tau_syn", jnp.full((5, 1), 0.7))
    cost = jb.bounds_cost(bad, lb, ub)
    print(f"  jaxbounds: {float(cost):.6f}")
    if rockpool:
        rp_cost = rp_cost_fn(bad, rp_lb, rp_ub)
        print(f"  Rockpool:  {float(rp_cost):.6f}")
        check("cost", np.allclose(cost, rp_cost, rtol=1e-6))

    # - 4. A training step: the cost in the loss, or the penalty in the chain
    print("\n4. Training: the cost in the loss (as in Rockpool), or in the optimiser")
    print("  before: loss = task(p) + bounds_cost(p, lb, ub); optax.adam(1e-3)")
    print("  after:  the same, or loss = task(p) and")
    print(
        "          optax.chain(jaxbounds.add_bounds_penalty(lb, ub), optax.adam(1e-3))"
    )

    def task(p: dict) -> jax.Array:  # pulls every tau towards -0.05 (invalid)
        taus = [x for path, x in zip(jb.paths(p), jax.tree.leaves(p)) if "tau" in path]
        return sum(jnp.sum((t + 0.05) ** 2) for t in taus)

    def train(loss, optimizer, steps: int = 100) -> dict:
        @jax.jit
        def step(p: dict, state: optax.OptState) -> tuple:
            updates, state = optimizer.update(jax.grad(loss)(p), state, p)
            return optax.apply_updates(p, updates), state

        p, state = params, optimizer.init(params)
        for _ in range(steps):
            p, state = step(p, state)
        return p

    in_loss = train(lambda p: task(p) + jb.bounds_cost(p, lb, ub), optax.adam(1e-3))
    in_chain = train(task, optax.chain(jb.add_bounds_penalty(lb, ub), optax.adam(1e-3)))
    check(
        "100 Adam steps, penalty in the loss vs in the chain",
        jax.tree.all(jax.tree.map(np.allclose, in_loss, in_chain)),
    )
    if rockpool:
        rp_trained = train(
            lambda p: task(p) + rp_cost_fn(p, rp_lb, rp_ub),
            optax.adam(1e-3),
        )
        check(
            "100 Adam steps, jaxbounds vs Rockpool cost in the loss",
            jax.tree.all(jax.tree.map(np.allclose, in_loss, rp_trained)),
        )
    print(f"  1_LIFJax.tau_mem after training: {in_loss['1_LIFJax']['tau_mem']}")

    # - 5. Clipping
    print("\n5. Clipping back into the bounds")
    print("  before: params = rockpool.training.jax_loss.bounds_clip(params, lb, ub)")
    print("  after:  params = jaxbounds.clip_to_bounds(params, lb, ub)")
    print("          (or jaxbounds.project_to_bounds(lb, ub) last in the optax chain)")
    clipped = jb.clip_to_bounds(in_loss, lb, ub)
    print(f"  {jb.violations(clipped, lb, ub)}")
    if rockpool:
        check("clipped", same(clipped, rp_loss.bounds_clip(in_loss, rp_lb, rp_ub)))
    projected = train(
        task,
        optax.chain(
            jb.add_bounds_penalty(lb, ub),
            optax.adam(1e-3),
            jb.project_to_bounds(lb, ub),
        ),
    )
    print(f"  trained with project_to_bounds: {jb.violations(projected, lb, ub)}")

    # - 6. What differs
    print("\n6. What jaxbounds does differently")
    far = jb.set_where(params, "1_LIFJax.tau_mem", jnp.full(3, -100.0))
    grad = jax.grad(jb.bounds_cost)(far, lb, ub)["1_LIFJax"]["tau_mem"][0]
    print(
        f"  tau_mem = -100 (100 below its bound): jaxbounds cost "
        f"{float(jb.bounds_cost(far, lb, ub)):.4g}, gradient {float(grad):.4g}"
    )
    if rockpool:
        rp_grad = jax.jit(jax.grad(rp_loss.bounds_cost))(far, rp_lb, rp_ub)
        print(
            f"  Rockpool: cost {float(rp_cost_fn(far, rp_lb, rp_ub))}, "
            f"gradient {float(rp_grad['1_LIFJax']['tau_mem'][0])} (exp overflows)"
        )
    forgot = {k: dict(v) for k, v in ub.items()}
    del forgot["3_LIFJax"]["tau_syn"]  # an upper bound left out by mistake
    if rockpool:
        rp_forgot = {k: dict(v) for k, v in rp_ub.items()}
        del rp_forgot["3_LIFJax"]["tau_syn"]
        print(
            "  an upper bound dict missing '3_LIFJax.tau_syn': Rockpool's cost is "
            f"{float(rp_cost_fn(bad, rp_lb, rp_forgot)):.6f} "
            f"(the full cost is {float(rp_cost):.6f}: after the gap the bounds "
            "pair with the wrong leaves, and the last leaf goes unchecked)"
        )
    try:
        jb.bounds_cost(bad, lb, forgot)
    except ValueError as err:
        print(f"  jaxbounds raises ValueError: {err}")


if __name__ == "__main__":
    main()
