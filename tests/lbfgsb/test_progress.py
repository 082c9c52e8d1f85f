"""`minimize`'s history (values, projected-gradient norms) and ``verbose`` lines."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds import minimize
from jaxbounds._lbfgsb._progress import active_bounds

from .problems import N, rosen

LINE = re.compile(r"step +(\d+)  value +(\S+)  pg (\S+)  evals +(\d+)  active (\d+)")


def test_history_holds_each_steps_value_then_nan():
    x0 = jnp.full(N, -1.2)
    # (the default max_steps, 1000: the solve of test_verbose_off_prints_nothing
    # and of test_float32_and_float64, compiled once; the tolerance is data)
    r = minimize(rosen, x0, -2.0, 0.5, tol=1e-8)
    k = int(r.num_steps)
    assert r.values.shape == r.pg_norms.shape == (1001,)
    vals, pgs = np.asarray(r.values), np.asarray(r.pg_norms)
    assert np.all(np.isfinite(vals[: k + 1])) and np.all(np.isnan(vals[k + 1 :]))
    assert np.all(np.isfinite(pgs[: k + 1])) and np.all(np.isnan(pgs[k + 1 :]))
    # the start (projected into the box), and the end
    x = np.clip(np.asarray(x0), -2.0, 0.5)
    assert vals[0] == pytest.approx(float(rosen(jnp.asarray(x))), rel=1e-14)
    g = np.asarray(jax.grad(rosen)(jnp.asarray(x)))
    assert pgs[0] == pytest.approx(np.abs(np.clip(x - g, -2.0, 0.5) - x).max())
    assert vals[k] == float(r.value) and pgs[k] <= 1e-8 < pgs[0]
    assert np.all(np.diff(vals[: k + 1]) <= 0)  # every accepted step decreases


def test_history_stops_at_max_steps():
    r = minimize(rosen, jnp.full(N, -1.2), -2.0, 0.5, max_steps=3)
    assert r.values.shape == (4,) and np.all(np.isfinite(r.values))
    assert float(r.values[3]) == float(r.value)


@pytest.mark.slow  # over 5 s: a solve with a callback, which JAX never caches
def test_verbose_prints_every_k_steps_and_the_last_under_jit(capsys):
    solve = jax.jit(lambda x: minimize(rosen, x, -2.0, 0.5, tol=1e-8, verbose=5))
    r = solve(jnp.full(N, -1.2))
    jax.effects_barrier()
    lines = [LINE.search(s) for s in capsys.readouterr().out.splitlines()]
    assert all(lines) and lines
    steps = [int(m.group(1)) for m in lines]
    k = int(r.num_steps)
    assert steps == [*range(5, k, 5), k] or steps == list(range(5, k + 1, 5))
    # each line is the history's entry at its step
    for m, s in zip(lines, steps):
        assert float(m.group(2)) == pytest.approx(float(r.values[s]), rel=1e-6)
        assert float(m.group(3)) == pytest.approx(float(r.pg_norms[s]), rel=1e-3)
    last = lines[-1]
    assert int(last.group(4)) == int(r.num_fun_evals)
    assert int(last.group(5)) == int(active_bounds(r.params, -2.0, 0.5)) > 0


def test_verbose_off_prints_nothing(capsys):
    minimize(rosen, jnp.full(N, -1.2), -2.0, 0.5)
    jax.effects_barrier()
    assert capsys.readouterr().out == ""


@pytest.mark.slow  # over 5 s: a solve with a callback, which JAX never caches
def test_verbose_under_vmap_prints_one_summary_per_report(capsys):
    starts = jnp.stack([jnp.full(N, v) for v in (-1.2, 0.0, 0.3, -0.5)])
    batch = jax.jit(
        jax.vmap(lambda x: minimize(rosen, x, -2.0, 0.5, tol=1e-8, verbose=10))
    )
    r = batch(starts)
    jax.effects_barrier()
    out = capsys.readouterr().out.splitlines()
    assert out and all("running" in s and "/4" in s for s in out)
    trips = int(r.num_steps.max())
    assert len(out) == len(range(10, trips, 10)) + 1  # not one line per fit
    last = re.search(r"running (\d+)/4.*evals (\d+)", out[-1])
    assert last and int(last.group(1)) == 0
    assert int(last.group(2)) == int(r.num_fun_evals.sum())
