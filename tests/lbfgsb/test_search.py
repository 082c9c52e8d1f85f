"""The line search against the strong Wolfe conditions, on 1-D functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._search import C1, C2, MAX_EVALS, cubic_min, line_search

F64 = jnp.float64


def search(f, lam0=1.0, lam_max=1e10, skip=False):
    """Run the line search on ``phi = f`` (value and slope from `jax.grad`)."""
    phi = lambda lam: (f(lam), jax.grad(f)(lam), None)  # noqa: E731
    f0 = f(jnp.zeros((), F64))
    d0 = jax.grad(f)(jnp.zeros((), F64))
    lam, f_lam, _, evals = line_search(
        phi, f0, d0, jnp.asarray(lam0, F64), jnp.asarray(lam_max, F64), None, F64, skip
    )
    return float(lam), float(f_lam), int(evals), float(f0), float(d0)


FUNCTIONS = {
    "quadratic, far minimum": lambda t: (t - 30.0) ** 2,
    "quadratic, near minimum": lambda t: (t - 0.1) ** 2,
    "quartic": lambda t: (t - 2.0) ** 4 - 3 * t,
    "cosine": lambda t: jnp.cos(3 * t + 0.3),
    "steep then flat": lambda t: -jnp.tanh(20 * t) + 0.01 * t**2,
    # (Moré and Thuente's first test function)
    "more-thuente 1": lambda t: -t / (t**2 + 2.0),
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


def test_cubic_minimiser():
    # through f(t) = t^3 - 3t at 0 and 2: its minimiser is 1; and a parabola's
    assert float(cubic_min(0.0, 0.0, -3.0, 2.0, 2.0, 9.0)) == pytest.approx(1.0)
    p = np.polynomial.Polynomial([1.0, -4.0, 2.0])  # vertex at 1
    d = p.deriv()
    got = cubic_min(0.0, p(0.0), d(0.0), 3.0, p(3.0), d(3.0))
    assert float(got) == pytest.approx(1.0)
    assert float(cubic_min(1.0, 0.0, -1.0, 1.0, 0.0, -1.0)) == np.inf
