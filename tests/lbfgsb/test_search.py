"""The line search against the strong Wolfe conditions and scipy's ``dcsrch``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._search import C1, C2, MAX_EVALS, dcstep, line_search

from .oracles_search import dcsrch_trials

F64 = jnp.float64


#: The trial steps of the running `traced_search` (one test at a time per
#: process; each test empties it first).
TRIALS: list[float] = []


@functools.cache
def _compiled(f, record=False):
    """The line search on ``phi = f`` (value and slope from `jax.grad`), jitted
    once per function: the first trial and the wall are arguments, so a
    test's cases share one compile. ``record``: trials go to `TRIALS`."""

    def phi(lam):
        if record:
            jax.debug.callback(lambda v: TRIALS.append(float(v)), lam)
        return f(lam), jax.grad(f)(lam), None

    def run(lam0, lam_max):
        f0 = f(jnp.zeros((), F64))
        d0 = jax.grad(f)(jnp.zeros((), F64))
        lam, f_lam, _, evals = line_search(phi, f0, d0, lam0, lam_max, None, F64)
        return lam, f_lam, evals, f0, d0

    return jax.jit(run)


def search(f, lam0=1.0, lam_max=1e10):
    """``(lam, f(lam), evaluations, f(0), f'(0))`` of the search on ``f``."""
    out = _compiled(f)(jnp.asarray(lam0, F64), jnp.asarray(lam_max, F64))
    lam, f_lam, evals, f0, d0 = out
    return float(lam), float(f_lam), int(evals), float(f0), float(d0)


def traced_search(f, lam0, lam_max):
    """`search`, with the trial steps it evaluated, in order."""
    TRIALS.clear()
    out = _compiled(f, True)(jnp.asarray(lam0, F64), jnp.asarray(lam_max, F64))
    lam, _, evals, _, _ = out
    jax.effects_barrier()
    return float(lam), int(evals), list(TRIALS)


def _wiggly(t, beta=0.01, k=39):
    # a kink smoothed over [1 - beta, 1 + beta], and a ripple: long searches
    phi0 = jnp.where(
        t <= 1 - beta,
        1 - t,
        jnp.where(t >= 1 + beta, t - 1, (t - 1) ** 2 / (2 * beta) + beta / 2),
    )
    return phi0 + 2 * (1 - beta) / (k * jnp.pi) * jnp.sin(k * jnp.pi * t / 2)


def _yanai(t, b1, b2):
    def gamma(b):
        return (1 + b**2) ** 0.5 - b

    return gamma(b1) * jnp.sqrt((1 - t) ** 2 + b2**2) + gamma(b2) * jnp.sqrt(
        t**2 + b1**2
    )


FUNCTIONS = {
    "quadratic, far minimum": lambda t: (t - 30.0) ** 2,
    "quadratic, near minimum": lambda t: (t - 0.1) ** 2,
    # at 1: lower, but not by enough (scipy's modified function)
    "quadratic, minimum near half": lambda t: (t - 0.5001) ** 2,
    "quartic": lambda t: (t - 2.0) ** 4 - 3 * t,
    "cosine": lambda t: jnp.cos(3 * t + 0.3),
    "steep then flat": lambda t: -jnp.tanh(20 * t) + 0.01 * t**2,
    # (Moré and Thuente's first test function)
    "more-thuente 1": lambda t: -t / (t**2 + 2.0),
}
#: Long searches that may end on a collapsed bracket, as scipy's do (Moré
#: and Thuente's third and fifth test functions)
HARD = {
    "more-thuente 2": lambda t: (t + 0.004) ** 5 - 2 * (t + 0.004) ** 4,
    "more-thuente 3": lambda t: _wiggly(t),
    "more-thuente 4": lambda t: _yanai(t, 0.001, 0.001),
    "more-thuente 5": lambda t: _yanai(t, 0.01, 0.001),
    "more-thuente 6": lambda t: _yanai(t, 0.001, 0.01),
    # a bracket that shrinks too slowly: the search bisects it (from 1)
    "ripple": lambda t: (t - 0.3) ** 2 + 0.05 * jnp.sin(10 * t),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("lam0", [1e-3, 1.0, 10.0])
def test_step_meets_the_strong_wolfe_conditions(name, lam0):
    f = FUNCTIONS[name]
    lam, f_lam, evals, f0, d0 = search(f, lam0)
    assert d0 < 0 and 0 < lam and evals < MAX_EVALS
    assert f_lam == float(f(lam))
    # sufficient decrease and (strong) curvature, checked in NumPy terms
    assert f_lam <= f0 + C1 * lam * d0
    assert abs(float(jax.grad(f)(jnp.asarray(lam, F64)))) <= C2 * abs(d0)


def test_an_increase_is_never_accepted():
    # phi(1) is 5e-4 above phi(0) and flat there: the curvature test alone
    # would accept it; sufficient decrease must not (its sign flipped would)
    f = lambda t: -t + 2.0015 * t**2 - 1.001 * t**3  # noqa: E731
    assert float(f(1.0)) == pytest.approx(5e-4)
    assert abs(float(jax.grad(f)(1.0))) < 1e-12
    lam, f_lam, _, f0, d0 = search(f, 1.0)
    assert lam != 1.0
    assert f_lam <= f0 + C1 * lam * d0 < f0


def test_step_at_the_wall_still_descending_is_accepted_at_once():
    # a linear descent: nothing flat before the wall at lam_max = 2
    lam, f_lam, evals, _, _ = search(lambda t: -t, 1.0, lam_max=2.0)
    assert lam == 2.0 and f_lam == -2.0
    assert evals == 2  # 1, then the wall (4x growth capped at 2)
    lam, _, evals, _, _ = search(lambda t: -t, 5.0, lam_max=2.0)
    assert lam == 2.0 and evals == 1


def test_non_finite_values_count_as_too_long():
    f = lambda t: jnp.where(t > 0.5, jnp.nan, (t - 2.0) ** 2)  # noqa: E731
    lam, f_lam, _, f0, d0 = search(f, 1.0)
    assert 0 < lam <= 0.5 and f_lam <= f0 + C1 * lam * d0


def test_skip_evaluates_nothing():
    calls = []

    def phi(lam):
        jax.debug.callback(lambda: calls.append(1))
        return (lam - 3.0) ** 2, 2 * (lam - 3.0), None

    lam, _, _, evals = line_search(phi, 9.0, -6.0, 1.0, 1e10, None, F64, True)
    jax.effects_barrier()
    assert float(lam) == 0.0 and int(evals) == 0 and not calls


@pytest.mark.parametrize("name", [*FUNCTIONS, *HARD])
@pytest.mark.parametrize(
    "lam0, lam_max", [(1e-3, 1e10), (1.0, 1e10), (10.0, 1e10), (1.0, 1.5)]
)
def test_trials_are_scipys(name, lam0, lam_max):
    # the same trial steps, one for one, as scipy's own dcsrch (its pure
    # Python port), so the same evaluations; and the same accepted step
    f = {**FUNCTIONS, **HARD}[name]
    # (scipy's lnsrlb's constants, written out: not ours)
    ref, ref_stp, again = dcsrch_trials(f, lam0, lam_max, 1e-3, 0.9, 0.1)
    lam, evals, trials = traced_search(f, lam0, lam_max)
    assert evals == len(trials)
    assert ref_stp is not None
    # on a collapsed bracket, scipy's evaluates its best step once more: here
    # it was kept, and comes back without an evaluation
    np.testing.assert_allclose(trials, ref[:-1] if again else ref, rtol=1e-10)
    assert lam == pytest.approx(ref_stp, rel=1e-10)


def test_dcstep_cases():
    # hand-computed: phi(t) = (t - 2)^2, from (0, 4, -4)
    def nxt(stp, brackt=False, stmin=1.1, stmax=5.0):
        fp, dp = (stp - 2.0) ** 2, 2 * (stp - 2.0)
        out = dcstep(0.0, 4.0, -4.0, 0.0, 4.0, -4.0, stp, fp, dp, brackt, stmin, stmax)
        return float(out[6]), bool(out[7]), bool(out[8])

    # slope shrinks: the secant (exact on a parabola) is the minimiser
    assert nxt(1.0) == (2.0, False, True)
    # opposite slopes: bracketed, the secant again
    assert nxt(3.0) == (pytest.approx(2.0), True, True)
    # a higher value at 5 (9 > 4): bracketed; cubic = quadratic = 2
    assert nxt(5.0) == (pytest.approx(2.0), True, False)
    # a steeper descent (linear): the extrapolation limit
    out = dcstep(0.0, 0.0, -1.0, 0.0, 0.0, -1.0, 1.0, -1.0, -1.0, False, 1.1, 5.0)
    assert float(out[6]) == 5.0 and not bool(out[7])


def test_dcstep_is_scipys_dcstep_in_every_case():
    # random trials on random cubics with ripples, bracketed or not: our step
    # is scipy's own dcstep's (its Python port) in each of its four cases,
    # the bracketed third case's limit (0.66 of the way to sty) included
    from scipy.optimize._dcsrch import dcstep as scipy_dcstep

    rng = np.random.default_rng(11)
    ours = jax.jit(dcstep)
    cases = {"higher": 0, "opposite": 0, "shrinks, bracketed": 0, "steeper": 0}
    limited = 0
    for _ in range(400):
        a, b, c, w = rng.normal(size=4)

        def phi(t, a=a, b=b, c=c, w=w):
            return a * t**3 + b * t**2 + c * t + 0.1 * w * np.sin(5 * t)

        def dphi(t, a=a, b=b, c=c, w=w):
            return 3 * a * t**2 + 2 * b * t + c + 0.5 * w * np.cos(5 * t)

        stx, sty = rng.uniform(-1, 1, 2)
        brackt = bool(rng.uniform() < 0.5)
        if brackt:
            stp = stx + rng.uniform(0.05, 0.95) * (sty - stx)
            stmin, stmax = min(stx, sty), max(stx, sty)
        else:
            stp = stx + rng.choice([-1, 1]) * rng.uniform(0.1, 1.0)
            stmin, stmax = stp + 1.1 * (stp - stx), stp + 4.0 * (stp - stx)
            stmin, stmax = min(stmin, stmax), max(stmin, stmax)
        args = (stx, phi(stx), dphi(stx), sty, phi(sty), dphi(sty))
        args += (stp, phi(stp), dphi(stp), brackt, stmin, stmax)
        with np.errstate(invalid="ignore"):
            ref = scipy_dcstep(*args)
        if not np.isfinite(ref[6]):
            # (random data a search never meets: scipy's port takes the root
            # of a negative number, ours of 0)
            continue
        got = ours(*(jnp.asarray(v, F64) for v in args[:9]), brackt, stmin, stmax)
        np.testing.assert_allclose(
            [float(v) for v in got[:7]], ref[:7], rtol=1e-9, atol=1e-12
        )
        assert bool(got[7]) == ref[7]
        fx, dx, fp, dp = args[1], args[2], args[7], args[8]
        if fp > fx:
            cases["higher"] += 1
        elif dp * np.sign(dx) < 0:
            cases["opposite"] += 1
        elif abs(dp) < abs(dx):
            if brackt:
                cases["shrinks, bracketed"] += 1
                reach = stp + 0.66 * (sty - stp)
                limited += bool(np.isclose(ref[6], reach, rtol=1e-12))
        else:
            cases["steeper"] += 1
    assert min(cases.values()) >= 10, cases
    assert limited >= 3
