"""One process of a 2-process (multi-host) jaxbounds run on CPU.

Started twice by ``test_sharded.py::test_multi_process_run`` as
``python multihost_worker.py PROCESS_ID PORT``: the two processes join through
`jax.distributed` (gloo collectives over localhost), four host devices each,
and shard one parameter over a (2, 4) mesh spanning both, so no process
holds the whole array. Prints one JSON line of results.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_platforms", "cpu")


def main(process_id: int, port: str) -> None:
    jax.distributed.initialize(
        f"localhost:{port}", num_processes=2, process_id=process_id
    )
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import jaxbounds as jb

    mesh = jax.make_mesh((2, 4), ("data", "model"))
    sharding = NamedSharding(mesh, P("data", "model"))

    def global_array(x: np.ndarray) -> jax.Array:
        # Every process knows the whole value here; each places only its shards.
        return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])

    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 32)).astype(np.float32)
    lo = rng.uniform(-1.0, -0.2, size=w.shape).astype(np.float32)
    params, lower, upper = {"w": global_array(w)}, {"w": global_array(lo)}, {"w": 0.5}

    def shard_error(x: jax.Array, reference: np.ndarray) -> float:
        """Largest relative error of this process's shards of ``x``."""
        return max(
            float(
                np.max(
                    np.abs(np.asarray(s.data, np.float64) - reference[s.index])
                    / np.maximum(np.abs(reference[s.index]), 1e-30)
                )
            )
            for s in x.addressable_shards
        )

    # Independent references, in float64 NumPy.
    w64, lo64 = w.astype(np.float64), lo.astype(np.float64)
    below, above = lo64 - w64, w64 - 0.5
    cost = np.sum(
        np.where(below > 0, np.exp(below), 0) + np.where(above > 0, np.exp(above), 0)
    )
    grad = np.where(below > 0, -np.exp(below), 0) + np.where(
        above > 0, np.exp(above), 0
    )
    clip = np.minimum(np.maximum(w64, lo64), 0.5)

    result = {
        "process": jax.process_index(),
        "devices": [jax.device_count(), jax.local_device_count()],
        "fully_addressable": params["w"].is_fully_addressable,
        "cost_reference": float(cost),
    }
    result["cost_jit"] = float(jax.jit(jb.bounds_cost)(params, lower, upper))
    grads = jax.jit(jax.grad(jb.bounds_cost))(params, lower, upper)["w"]
    clipped = jax.jit(jb.clip_to_bounds)(params, lower, upper)["w"]
    result["grad_error"] = shard_error(grads, grad)
    result["clip_error"] = shard_error(clipped, clip)
    result["shardings_kept"] = [
        x.sharding.is_equivalent_to(sharding, 2) for x in (grads, clipped)
    ]
    # Eager calls validate concrete bounds: that must work on arrays no single
    # process can read whole, and agree across processes.
    try:
        result["cost_eager"] = float(jb.bounds_cost(params, lower, upper))
        eager_clip = jb.clip_to_bounds(params, lower, upper)["w"]
        result["clip_eager_error"] = shard_error(eager_clip, clip)
        crossed = {
            "w": global_array(
                np.where(np.arange(w.size).reshape(w.shape) == 37, 1.0, lo)
            )
        }
        try:
            jb.bounds_cost(params, crossed, upper)
            result["crossed_bounds_error"] = None
        except ValueError as e:
            result["crossed_bounds_error"] = str(e)
    except Exception as e:  # noqa: BLE001 - reported to the test, which fails
        result["eager_failure"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
