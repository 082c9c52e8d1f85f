"""Bounds on parameters sharded over a 2-D device mesh.

Run: python examples/sharded.py   (prints as it goes; writes no files)

On a machine with one CPU this runs on 8 simulated host devices (the
XLA flag below); with accelerators it uses all of them. jaxbounds needs no
changes for sharded parameters: bound trees follow the parameters (Python
float bounds are simply part of the compiled program; array bounds are
placed like their parameters), the jitted step keeps every sharding, and the
only communication the bounds add is the scalar sum of the cost.
Multi-host: call ``jax.distributed.initialize()`` first and build the global
arrays with ``jax.make_array_from_callback``; the rest is unchanged.
"""

import os

# XLA fixes the number of host devices when JAX starts its CPU backend, so the
# flag must be set before the first JAX computation (here: before the import).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import re  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxbounds as jb  # noqa: E402


def mesh_for(devices: list) -> jax.sharding.Mesh:
    """A ("data", "model") mesh over all ``devices``: (2, n/2) when n is even."""
    data = 2 if len(devices) % 2 == 0 else 1
    return jax.make_mesh(
        (data, len(devices) // data), ("data", "model"), devices=devices
    )


def shard_like(bound, param: jax.Array):
    """``bound`` placed like ``param``: floats stay floats, arrays follow ``param``.

    A bound that broadcasts (shape ``(n, 1)`` for an ``(n, m)`` parameter) is
    split along the parameter's mesh axes where it has the full extent, and
    replicated along its size-1 axes, so every device holds exactly the part
    of the bound its part of the parameter needs.
    """
    if not hasattr(bound, "shape"):
        return bound
    spec = tuple(param.sharding.spec) + (None,) * param.ndim
    spec = spec[: param.ndim][param.ndim - bound.ndim :]
    spec = P(*(None if n == 1 else s for n, s in zip(bound.shape, spec)))
    return jax.device_put(bound, NamedSharding(param.sharding.mesh, spec))


def collectives(compiled_hlo: str) -> dict:
    """How often each communicating instruction occurs in a compiled program."""
    ops = re.findall(
        r"\b(all-gather|all-to-all|collective-permute|reduce-scatter|all-reduce)"
        r"(?:-start)?\(",
        compiled_hlo,
    )
    return {op: ops.count(op) for op in sorted(set(ops))}


def problem(mesh: jax.sharding.Mesh) -> tuple:
    """Host (NumPy) params, bounds and targets; sizes fit the mesh."""
    data, model = mesh.devices.shape
    n_in, n_hidden, n_out = 8 * data, 16 * model, 4
    rng = np.random.default_rng(0)
    params = {
        "w_in": 0.5 * rng.normal(size=(n_in, n_hidden)).astype(np.float32),
        "tau_syn": rng.uniform(0.01, 0.05, size=n_hidden).astype(np.float32),
        "w_out": 0.5 * rng.normal(size=(n_hidden, n_out)).astype(np.float32),
        "bias": np.zeros(n_out, np.float32),
    }
    lower, upper = jb.make_bounds(params)
    lower["w_in"], upper["w_in"] = -1.0, 1.0  # scalars: replicated by nature
    lower["tau_syn"] = rng.uniform(0.002, 0.01, size=n_hidden).astype(np.float32)
    upper["tau_syn"] = 0.1
    limit = rng.uniform(0.5, 1.0, size=(n_hidden, 1)).astype(np.float32)  # per row
    lower["w_out"], upper["w_out"] = -limit, limit
    # The task pulls every parameter past its bounds.
    targets = {
        k: 3.0 * rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()
    }
    targets["tau_syn"] = np.full(n_hidden, -0.05, np.float32)
    return params, lower, upper, targets


def train(params: dict, lower: dict, upper: dict, targets: dict, steps: int = 20):
    """adam on the task, the bounds penalty in the chain, projected each step."""
    optimizer = optax.chain(
        jb.add_bounds_penalty(lower, upper, scale=0.1),
        optax.adam(0.05),
        jb.project_to_bounds(lower, upper),
    )

    def loss(p: dict) -> jax.Array:
        return sum(jnp.mean((p[k] - targets[k]) ** 2) for k in p)

    @jax.jit
    def step(p: dict, state: optax.OptState) -> tuple:
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = optimizer.update(grads, state, p)
        return value, optax.apply_updates(p, updates), state

    state = optimizer.init(params)
    compiled = step.lower(params, state).compile()
    for _ in range(steps):
        value, params, state = compiled(params, state)
    return float(value), params, compiled.as_text()


def main() -> None:
    devices = jax.devices()
    mesh = mesh_for(devices)
    print(f"{len(devices)} {devices[0].platform} devices, mesh {dict(mesh.shape)}")
    host_params, host_lower, host_upper, host_targets = problem(mesh)

    # - Parameters sharded over the mesh; bounds and targets placed like them.
    specs = {
        "w_in": P("data", "model"),
        "tau_syn": P("model"),
        "w_out": P("model", None),
        "bias": P(),
    }
    params = {
        k: jax.device_put(v, NamedSharding(mesh, specs[k]))
        for k, v in host_params.items()
    }
    lower = jax.tree.map(shard_like, host_lower, params)
    upper = jax.tree.map(shard_like, host_upper, params)
    targets = jax.tree.map(shard_like, host_targets, params)
    for k in params:
        lo = lower[k]
        lo = f"array, {lo.sharding.spec}" if hasattr(lo, "sharding") else lo
        print(f"  {k:8s} {params[k].sharding.spec!s:18s} lower bound: {lo}")

    # - The jaxbounds functions compile to programs without gathers.
    hlo = jax.jit(jax.value_and_grad(jb.bounds_cost)).lower(params, lower, upper)
    print(
        "value_and_grad(bounds_cost) communicates:",
        collectives(hlo.compile().as_text()),
    )
    hlo = jax.jit(jb.clip_to_bounds).lower(params, lower, upper)
    print(
        "clip_to_bounds communicates:",
        collectives(hlo.compile().as_text()) or "nothing",
    )

    # - Train sharded, and the same on a single device.
    print(f"cost before training: {float(jb.bounds_cost(params, lower, upper)):.4f}")
    value, trained, hlo = train(params, lower, upper, targets)
    one = jax.devices()[0]
    on_one = [
        jax.device_put(t, one)
        for t in (host_params, host_lower, host_upper, host_targets)
    ]
    value_one, trained_one, _ = train(*on_one)

    found = collectives(hlo)
    print(f"training step communicates: {found}")
    print(f"final loss: {value:.4f} sharded, {value_one:.4f} on one device")
    diff = max(np.max(np.abs(np.asarray(trained[k]) - trained_one[k])) for k in trained)
    print(f"largest parameter difference sharded vs one device: {diff:.2e}")
    cost = float(jb.bounds_cost(trained, lower, upper))
    print(f"cost after training (projected each step): {cost}")
    kept = all(
        trained[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim)
        for k in params
    )
    print(f"every parameter kept its sharding: {kept}")

    # The claims above, checked (the smoke test runs this script).
    assert kept and cost == 0.0 and diff < 1e-4
    assert set(found) <= {"all-reduce"}, found


if __name__ == "__main__":
    main()
