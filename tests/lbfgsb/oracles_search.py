"""scipy's own ``dcsrch`` (its pure-Python port) as the line search's reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from scipy.optimize._dcsrch import DCSRCH


def dcsrch_trials(f, lam0, lam_max, c1, c2, xtol):
    """The trial steps scipy's ``dcsrch`` evaluates on ``f``, and its answer.

    Returns ``(trials, step, again)``: ``again`` where scipy's search ends on
    a collapsed bracket, having evaluated its best step once more (its last
    trial, then its answer); a step at ``lam_max`` that still descends
    steeply is an answer too (scipy's L-BFGS-B accepts it), `None` if none.
    """
    trials = []
    # jitted, as the search evaluates it (eager rounding may differ in the
    # last bit, and a tie decides a branch)
    fj, gj = jax.jit(f), jax.jit(jax.grad(f))

    def phi(t):
        trials.append(float(t))
        return float(fj(jnp.asarray(t, jnp.float64)))

    def dphi(t):
        return float(gj(jnp.asarray(t, jnp.float64)))

    search = DCSRCH(phi, dphi, c1, c2, xtol, 0.0, lam_max)
    f0, d0 = float(fj(jnp.zeros((), jnp.float64))), dphi(0.0)
    trials.clear()
    step, _, _, task = search(min(lam0, lam_max), f0, d0, maxiter=20)
    if task.startswith(b"WARNING: STP = STPMAX"):
        return trials, trials[-1], False
    if task.startswith((b"WARNING: ROUNDING", b"WARNING: XTOL")):
        return trials, trials[-1], True
    return trials, step, False
