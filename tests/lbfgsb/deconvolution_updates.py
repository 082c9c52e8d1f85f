"""A few `jb.lbfgsb` updates on the bounded deconvolution, for a subprocess.

``python deconvolution_updates.py N STEPS [float32|float64]`` prints ``ok`` and
the value after the updates, or dies: `jb.lbfgsb` at 1M parameters once
crashed inside XLA's CPU runtime on this problem, and a crash takes the
whole process, so the test runs this script in subprocesses.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxbounds as jb

from helpers import linesearch_step


def main(n: int, steps: int, dtype: str) -> None:
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(2)
    kernel = jnp.exp(-jnp.arange(16) / 4.0)
    spikes = np.where(rng.uniform(size=n) < 0.02, rng.exponential(1.0, n), 0.0)
    clean = jnp.convolve(jnp.asarray(spikes), kernel, mode="full")[:n]
    y = clean + 0.05 * jnp.asarray(rng.normal(size=n))

    def fun(x):
        r = jnp.convolve(x, kernel, mode="full")[:n] - y
        return 0.5 * jnp.sum(r * r)

    # a one-sided box: the wall at +inf (an earlier crash's trigger)
    solver = jb.lbfgsb(jnp.zeros(n), jnp.full(n, jnp.inf))
    step = linesearch_step(solver, fun)
    params = jnp.zeros(n)
    state = solver.init(params)
    for _ in range(steps):
        params, state, _ = step(params, state)
    value = float(state.value)
    assert np.isfinite(value) and value < float(fun(jnp.zeros(n)))
    assert bool(jnp.all(params >= 0))
    print("ok", value)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
