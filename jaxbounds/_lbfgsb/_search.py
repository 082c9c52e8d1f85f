"""The line search: a step meeting the strong Wolfe conditions, inside the box.

Along ``phi(lam) = f(P(x + lam d))`` with ``lam`` in ``(0, lam_max]``, where
``lam_max`` is the step to the nearest wall (scipy's ``lnsrlb``). Trials grow
by cubic extrapolation until the minimum is bracketed, then the bracket is
narrowed by safeguarded cubic interpolation (Moré and Thuente's scheme, with
scipy's constants ``c1 = 1e-3``, ``c2 = 0.9``). A step at the wall that
still descends is accepted: past the wall there is nowhere to go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._tree import tmap

#: Function evaluations per line search.
MAX_EVALS = 20
#: Line search constants (scipy's L-BFGS-B): sufficient decrease and curvature.
C1 = 1e-3
C2 = 0.9


def cubic_min(a: Any, fa: Any, da: Any, b: Any, fb: Any, db: Any) -> Any:
    """The minimiser of the cubic through two points with slopes (``inf`` if none).

    NaN-free (also for equal or non-finite points), for ``jax_debug_nans``.

    Examples:
        >>> # f(t) = t^3 - 3t: f(0) = 0, f'(0) = -3, f(2) = 2, f'(2) = 9
        >>> print(float(cubic_min(0.0, 0.0, -3.0, 2.0, 2.0, 9.0)))
        1.0
    """
    ok = jnp.isfinite(fa) & jnp.isfinite(fb) & jnp.isfinite(da) & jnp.isfinite(db)
    ok = ok & (a != b)
    fa, fb, da, db = (jnp.where(ok, v, 0) for v in (fa, fb, da, db))
    d1 = da + db - 3 * (fa - fb) / jnp.where(ok, a - b, 1)
    disc = d1**2 - da * db
    ok = ok & (disc >= 0)
    d2 = jnp.sign(b - a) * jnp.sqrt(jnp.where(ok, disc, 0))
    den = db - da + 2 * d2
    ok = ok & (den != 0)
    t = b - (b - a) * (db + d2 - d1) / jnp.where(ok, den, 1)
    return jnp.where(ok, t, jnp.inf)


class Search(NamedTuple):
    """The line search's state."""

    evals: jax.Array
    lam: jax.Array  # next trial
    lo: jax.Array  # best step with sufficient decrease (0: none yet)
    f_lo: jax.Array
    d_lo: jax.Array
    hi: jax.Array  # the other end of the bracket, once bracketed
    f_hi: jax.Array
    d_hi: jax.Array
    bracketed: jax.Array
    done: jax.Array
    aux: Any  # (x, g, extra) at ``lo``


def line_search(
    phi: Callable[[Any], tuple[Any, Any, Any]],
    f0: Any,
    d0: Any,
    lam0: Any,
    lam_max: Any,
    aux0: Any,
    dtype: Any,
    skip: Any = False,
) -> tuple[Any, Any, Any, Any]:
    """A step ``lam`` in ``(0, lam_max]`` meeting the strong Wolfe conditions.

    Args:
        phi: ``phi(lam) -> (f, slope, aux)``, the value and the slope along
            the direction at step ``lam``, and whatever else to keep.
        f0: ``phi(0)``.
        d0: the slope at 0 (negative for a descent direction).
        lam0: the first trial.
        lam_max: the largest step (the wall).
        aux0: ``aux`` at 0.
        dtype: the dtype of the scalars.
        skip: a flag; when true, ``phi`` is never evaluated (a finished fit
            in a batch) and the result is ``lam = 0``.

    Returns:
        ``(lam, f, aux, evaluations)``; ``lam`` is 0 when no step with
        sufficient decrease was found. Non-finite values count as too long
        a step.

    Examples:
        >>> import jax.numpy as jnp
        >>> def phi(lam):  # f(x) = (x - 30)^2 from x = 0 along d = 1
        ...     return (lam - 30.0) ** 2, 2 * (lam - 30.0), None
        >>> f32 = jnp.float32
        >>> lam, f, _, evals = line_search(phi, 900.0, -60.0, 1.0, 1e10, None, f32)
        >>> print(float(lam), int(evals))  # 1 is too short; 4x it meets Wolfe
        4.0 2
    """

    def cond(s: Search) -> Any:
        return ~s.done & (s.evals < MAX_EVALS)

    def body(s: Search) -> Search:
        lam = s.lam
        f, dphi, aux = phi(lam)
        f = f.astype(dtype)
        dphi = dphi.astype(dtype)
        finite = jnp.isfinite(f) & jnp.isfinite(dphi)
        too_far = ~finite | (f > f0 + C1 * lam * d0) | (f >= s.f_lo) & (s.lo > 0)
        flat = jnp.abs(dphi) <= -C2 * d0
        accept = ~too_far & (flat | (~s.bracketed & (dphi < 0) & (lam >= lam_max)))
        # update the bracket
        to_hi = too_far
        swap = ~too_far & ~flat & s.bracketed & (dphi * (s.hi - s.lo) >= 0)
        swap = swap | (~too_far & ~flat & ~s.bracketed & (dphi >= 0))
        new_lo = ~too_far
        hi = jnp.where(to_hi, lam, jnp.where(swap, s.lo, s.hi))
        f_hi = jnp.where(to_hi, f, jnp.where(swap, s.f_lo, s.f_hi))
        d_hi = jnp.where(to_hi, dphi, jnp.where(swap, s.d_lo, s.d_hi))
        bracketed = s.bracketed | to_hi | swap
        lo = jnp.where(new_lo, lam, s.lo)
        f_lo = jnp.where(new_lo, f, s.f_lo)
        d_lo = jnp.where(new_lo, dphi, s.d_lo)
        aux = tmap(lambda a, b: jnp.where(new_lo, a, b), aux, s.aux)
        # the next trial
        width = jnp.abs(hi - lo)
        left = jnp.minimum(lo, hi) + 0.1 * width
        right = jnp.maximum(lo, hi) - 0.1 * width
        cubic = cubic_min(lo, f_lo, d_lo, hi, f_hi, d_hi)
        inner = jnp.where(
            jnp.isfinite(cubic) & (cubic >= left) & (cubic <= right),
            cubic,
            0.5 * (lo + hi),
        )
        grow = cubic_min(s.lo, s.f_lo, s.d_lo, lam, f, dphi)
        grow = jnp.where(
            jnp.isfinite(grow) & (grow > lam),
            jnp.clip(grow, 1.1 * lam, 4 * lam),
            4 * lam,
        )
        nxt = jnp.where(bracketed, inner, jnp.minimum(grow, lam_max))
        tiny = bracketed & (width <= 1e-10 * jnp.maximum(lo, hi))
        done = accept | tiny
        return Search(
            s.evals + 1, nxt, lo, f_lo, d_lo, hi, f_hi, d_hi, bracketed, done, aux
        )

    f0 = jnp.asarray(f0, dtype)
    d0 = jnp.asarray(d0, dtype)
    zero = jnp.zeros((), dtype)
    init = Search(
        evals=jnp.zeros((), jnp.int32),
        lam=jnp.minimum(lam0, lam_max).astype(dtype),
        lo=zero,
        f_lo=f0,
        d_lo=d0,
        hi=zero,
        f_hi=f0,
        d_hi=d0,
        bracketed=jnp.zeros((), bool),
        done=jnp.zeros((), bool) | skip,
        aux=aux0,
    )
    s = jax.lax.while_loop(cond, body, init)
    return s.lo, s.f_lo, s.aux, s.evals
