"""Evaluation parity with scipy's L-BFGS-B (issue 25): as few evaluations.

On small box QPs and bounded Rosenbrock problems, `minimize` with scipy's
stopping rule spends at most 1.2x the evaluations scipy's L-BFGS-B spends
(scipy's own count, ``nfev``), reaches its value (within the relative
decrease the rule stops at), and never leaves the box. The QPs share one
function (the box and the start are arguments), and so do the Rosenbrock
problems of one size: three compilations in all.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds import minimize
from jaxbounds._lbfgsb._cauchy import cauchy
from jaxbounds._lbfgsb._dense import dense_step
from jaxbounds._lbfgsb._memory import compact, new_memory

from .problems import scipy_solve

#: scipy's defaults: the stopping rule both solvers get.
GTOL, FTOL = 1e-5, 2.220446049250313e-09

_RNG = np.random.default_rng(25)
_N = 40
_U, _ = np.linalg.qr(_RNG.normal(size=(_N, _N)))
Q = jnp.asarray((_U * np.geomspace(1e-2, 10.0, _N)) @ _U.T)
B = jnp.asarray(_RNG.normal(size=_N))


def box_qp(x):
    return 0.5 * x @ (Q @ x) - B @ x


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


CASES = {
    # (fun, x0, lower, upper)
    "box QP, tight": (box_qp, _RNG.uniform(-0.1, 0.1, _N), -0.1, 0.1),
    "box QP, medium": (box_qp, _RNG.uniform(-1, 1, _N), -1.0, 1.0),
    "box QP, loose": (box_qp, _RNG.uniform(-30, 30, _N), -30.0, 30.0),
    # (the line search before scipy's: 1.26x and 1.21x)
    "Rosenbrock, tight box": (rosen, np.tile([-1.2, 1.0], 10), -1.5, 0.8),
    "Rosenbrock, wide box": (rosen, np.tile([-1.2, 1.0], 5), -10.0, 10.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_evaluations_at_most_scipys_and_its_value(name):
    fun, x0, lo, up = CASES[name]
    x0 = jnp.asarray(x0, jnp.float64)
    lower = jnp.full_like(x0, lo)
    upper = jnp.full_like(x0, up)
    r = minimize(fun, x0, lower, upper, tol=GTOL, ftol=FTOL, memory_size=10)
    ref = scipy_solve(fun, x0, lo, up, gtol=GTOL, ftol=FTOL)
    assert bool(r.converged)
    assert int(r.num_fun_evals) <= 1.2 * ref.nfev, (int(r.num_fun_evals), ref.nfev)
    # scipy's value, up to the relative decrease at which both stop
    assert float(r.value) <= ref.fun + 2 * FTOL * max(1.0, abs(ref.fun))
    x = np.asarray(r.params)
    assert np.all(x >= lo) and np.all(x <= up)


# x - (x / g) g rounds to 1.1e-16 (also with a fused multiply-add): the
# breakpoint's own time leaves the variable just inside its bound
X_TIE, G_TIE = 0.8700199762323922, 5.8731509822418255


def test_a_variable_at_its_last_breakpoint_sits_on_the_bound():
    # B = I and every variable meets its bound: the Cauchy point is the last
    # breakpoint, where the tied variable must be at its bound exactly (a
    # hair inside, it would count as free and stall the subspace step)
    x = jnp.array([0.05, X_TIE])  # breakpoints 0.05, then 0.148 (the tie)
    g = jnp.array([1.0, G_TIE])
    assert float(x[1] - (x[1] / g[1]) * g[1]) > 0
    f64 = jnp.float64
    mem = new_memory(x, 3, f64)
    lo, up = jnp.zeros(2), jnp.ones(2)
    for xc in (
        cauchy(x, g, lo, up, mem, compact(mem), f64)[0],
        dense_step(x, g, lo, up, mem, f64)[0],
        jax.jit(lambda x, g: dense_step(x, g, lo, up, mem, f64)[0])(x, g),
    ):
        assert np.asarray(xc).tolist() == [0.0, 0.0]
