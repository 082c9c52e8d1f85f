"""The line search: Moré and Thuente's, as scipy's L-BFGS-B runs it, inside the box.

Along ``phi(lam) = f(P(x + lam d))`` with ``lam`` in ``(0, lam_max]``, where
``lam_max`` is the step to the nearest wall (scipy's ``lnsrlb``), the
search of Moré and Thuente (1994; MINPACK-2's ``dcsrch`` and ``dcstep``)
with scipy's constants: sufficient decrease ``C1 = 1e-3``, curvature
``C2 = 0.9``, relative bracket width ``XTOL = 0.1``. Trial for trial it
takes the steps scipy's takes, so both spend the same evaluations. It
stops, as scipy's, when a step meets the strong Wolfe conditions, when a
step at the wall still descends steeply (past the wall there is nowhere to
go), or when the bracket is too narrow to go on (then with the best step).
Two rules differ, both in favour of fewer evaluations or a safer step:

- when the bracket has collapsed, scipy evaluates its best step once more
  before it returns it; here the best step's value and gradient are kept, so
  it comes back without an evaluation;
- when the bracket collapses on a trial that is worse than the best step,
  the best step is returned (scipy returns the last trial, even uphill).

A non-finite value counts as a step too long: the bracket closes there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._tree import tmap

#: Function evaluations per line search (scipy's ``maxls``).
MAX_EVALS = 20
#: Line search constants (scipy's L-BFGS-B): sufficient decrease, curvature,
#: and the relative width at which a bracket counts as collapsed.
C1 = 1e-3
C2 = 0.9
XTOL = 0.1
#: Before the minimum is bracketed, the next trial lies this many times the
#: last step's length beyond the last trial (at least, at most).
XTRAP_LO = 1.1
XTRAP_HI = 4.0


def _div(a: Any, b: Any) -> Any:
    """``a / b``, 0 where ``b`` is 0 (NaN-free, for unused branches)."""
    ok = b != 0
    return jnp.where(ok, a / jnp.where(ok, b, 1), 0)


def _gamma(a: Any, fa: Any, da: Any, b: Any, fb: Any, db: Any) -> tuple[Any, Any]:
    """``(theta, gamma)`` of the cubic through ``(a, fa, da)`` and ``(b, fb, db)``.

    ``gamma = sqrt(theta^2 - da db)`` (0 where negative), scaled against
    overflow; its sign is the caller's.
    """
    theta = _div(3 * (fa - fb), b - a) + da + db
    s = jnp.maximum(jnp.abs(theta), jnp.maximum(jnp.abs(da), jnp.abs(db)))
    ts, as_, bs = _div(theta, s), _div(da, s), _div(db, s)
    return theta, s * jnp.sqrt(jnp.maximum(ts * ts - as_ * bs, 0))


def dcstep(
    stx: Any, fx: Any, dx: Any, sty: Any, fy: Any, dy: Any,
    stp: Any, fp: Any, dp: Any, brackt: Any, stmin: Any, stmax: Any,
) -> tuple[Any, ...]:  # fmt: skip
    """One safeguarded step of Moré and Thuente's search.

    ``(stx, fx, dx)`` is the best step so far, ``(sty, fy, dy)`` the other
    end of the interval, ``(stp, fp, dp)`` the last trial. Four cases: a
    higher value (the minimum is bracketed: cubic, or halfway to the
    quadratic), slopes of opposite signs (bracketed: cubic or secant), a
    slope shrinking in magnitude (cubic or secant, kept inside the
    interval), a slope not shrinking (cubic to ``sty``, or the extrapolation
    limit).

    Returns:
        ``(stx, fx, dx, sty, fy, dy, next trial, brackt, moved)``, with
        ``moved`` whether the best step is now ``stp``.

    Examples:
        >>> # phi(t) = (t - 2)^2 from 0 (slope -4); at 1: 1 and slope -2
        >>> out = dcstep(0.0, 4.0, -4.0, 0.0, 4.0, -4.0, 1.0, 1.0, -2.0,
        ...              False, 1.1, 5.0)
        >>> print(float(out[6]))  # the secant through both slopes: 2
        2.0
    """
    stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stmin, stmax = (
        jnp.asarray(v)
        for v in (stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stmin, stmax)
    )
    sgnd = dp * jnp.sign(dx)
    higher = fp > fx
    opposite = ~higher & (sgnd < 0)
    shrinks = ~higher & ~opposite & (jnp.abs(dp) < jnp.abs(dx))
    fwd = stp > stx
    theta, gamma = _gamma(stx, fx, dx, stp, fp, dp)
    secant = stp + _div(dp, dp - dx) * (stx - stp)
    # 1: a higher value
    g1 = jnp.where(stp < stx, -gamma, gamma)
    r1 = _div((g1 - dx) + theta, ((g1 - dx) + g1) + dp)
    c1 = stx + r1 * (stp - stx)
    q1 = stx + (_div(dx, _div(fx - fp, stp - stx) + dx) / 2) * (stp - stx)
    f1 = jnp.where(jnp.abs(c1 - stx) < jnp.abs(q1 - stx), c1, c1 + (q1 - c1) / 2)
    # 2: slopes of opposite signs
    g2 = jnp.where(fwd, -gamma, gamma)
    r2 = _div((g2 - dp) + theta, ((g2 - dp) + g2) + dx)
    c2 = stp + r2 * (stx - stp)
    f2 = jnp.where(jnp.abs(c2 - stp) > jnp.abs(secant - stp), c2, secant)
    # 3: the slope shrinks (gamma = 0: the cubic does not turn up ahead)
    r3 = _div((g2 - dp) + theta, (g2 + (dx - dp)) + g2)
    c3 = jnp.where(
        (r3 < 0) & (gamma != 0),
        stp + r3 * (stx - stp),
        jnp.where(fwd, stmax, stmin),
    )
    closer = jnp.abs(c3 - stp) < jnp.abs(secant - stp)
    inner = jnp.where(closer, c3, secant)
    limit = stp + 0.66 * (sty - stp)
    inner = jnp.where(fwd, jnp.minimum(limit, inner), jnp.maximum(limit, inner))
    farther = jnp.abs(c3 - stp) > jnp.abs(secant - stp)
    outer = jnp.clip(jnp.where(farther, c3, secant), stmin, stmax)
    f3 = jnp.where(brackt, inner, outer)
    # 4: the slope does not shrink
    theta4, gamma4 = _gamma(stp, fp, dp, sty, fy, dy)
    g4 = jnp.where(stp > sty, -gamma4, gamma4)
    r4 = _div((g4 - dp) + theta4, ((g4 - dp) + g4) + dy)
    f4 = jnp.where(brackt, stp + r4 * (sty - stp), jnp.where(fwd, stmax, stmin))
    nxt = jnp.where(higher, f1, jnp.where(opposite, f2, jnp.where(shrinks, f3, f4)))
    # the interval
    to_y = higher | opposite
    new_sty = jnp.where(higher, stp, jnp.where(opposite, stx, sty))
    new_fy = jnp.where(higher, fp, jnp.where(opposite, fx, fy))
    new_dy = jnp.where(higher, dp, jnp.where(opposite, dx, dy))
    moved = ~higher
    stx, fx, dx = (jnp.where(moved, a, b) for a, b in ((stp, stx), (fp, fx), (dp, dx)))
    return stx, fx, dx, new_sty, new_fy, new_dy, nxt, brackt | to_y, moved


class Search(NamedTuple):
    """The line search's state (``dcsrch``'s, and the points to return)."""

    evals: jax.Array
    stp: jax.Array  # next trial
    brackt: jax.Array
    stage2: jax.Array  # psi(stp) <= 0 and phi'(stp) >= 0 seen
    stx: jax.Array  # best step
    fx: jax.Array
    gx: jax.Array
    sty: jax.Array  # other end of the interval
    fy: jax.Array
    gy: jax.Array
    stmin: jax.Array
    stmax: jax.Array
    width: jax.Array
    width1: jax.Array
    done: jax.Array
    last: jax.Array  # whether the result is the last trial (else the best step)
    lam: jax.Array  # the result's step and value, once done
    f_lam: jax.Array
    aux: Any  # at the last trial
    aux_x: Any  # at the best step


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
    """A step ``lam`` in ``(0, lam_max]`` by Moré and Thuente's search (scipy's).

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
        ``(lam, f, aux, evaluations)``: a step meeting the strong Wolfe
        conditions, or one at the wall with sufficient decrease and a steep
        slope, or the best step when the bracket collapsed; ``lam`` is 0
        when none was found (within `MAX_EVALS`, a best step with sufficient
        decrease is returned).

    Examples:
        >>> import jax.numpy as jnp
        >>> def phi(lam):  # f(x) = (x - 30)^2 from x = 0 along d = 1
        ...     return (lam - 30.0) ** 2, 2 * (lam - 30.0), None
        >>> f32 = jnp.float32
        >>> lam, f, _, evals = line_search(phi, 900.0, -60.0, 1.0, 1e10, None, f32)
        >>> print(float(lam), int(evals))  # 1 is too short; 5 (4x further) is Wolfe
        5.0 2
    """
    f0 = jnp.asarray(f0, dtype)
    d0 = jnp.asarray(d0, dtype)
    lam_max = jnp.asarray(lam_max, dtype)
    gtest = C1 * d0
    # a non-finite value is replaced by one above f0 (with a flat slope)
    too_high = f0 + jnp.abs(f0) + 1

    def cond(s: Search) -> Any:
        return ~s.done & (s.evals < MAX_EVALS)

    def body(s: Search) -> Search:
        stp = s.stp
        f, g, aux = phi(stp)
        f, g = f.astype(dtype), g.astype(dtype)
        finite = jnp.isfinite(f) & jnp.isfinite(g)
        f = jnp.where(finite, f, too_high)
        g = jnp.where(finite, g, 0)
        ftest = f0 + stp * gtest
        stage2 = s.stage2 | ((f <= ftest) & (g >= 0))
        collapsed = s.brackt & (
            (stp <= s.stmin) | (stp >= s.stmax) | (s.stmax - s.stmin <= XTOL * s.stmax)
        )
        at_wall = (stp >= lam_max) & (f <= ftest) & (g <= gtest)
        wolfe = (f <= ftest) & (jnp.abs(g) <= -C2 * d0)
        stop = finite & (wolfe | at_wall | collapsed)
        # a collapse on a trial worse than the best step returns the best step
        last_ok = wolfe | at_wall | (f <= s.fx)
        # the next trial: on psi = phi - gtest * lam while the value is lower
        # but the decrease not sufficient, in the first stage
        shift = jnp.where(~stage2 & (f <= s.fx) & (f > ftest), gtest, 0)
        stx, fx, gx, sty, fy, gy, nxt, brackt, moved = dcstep(
            s.stx, s.fx - s.stx * shift, s.gx - shift,
            s.sty, s.fy - s.sty * shift, s.gy - shift,
            stp, f - stp * shift, g - shift, s.brackt, s.stmin, s.stmax,
        )  # fmt: skip
        fx, fy = fx + stx * shift, fy + sty * shift
        gx, gy = gx + shift, gy + shift
        # bisect when the interval did not shrink enough in two steps
        span = jnp.abs(sty - stx)
        nxt = jnp.where(
            brackt & (span >= 0.66 * s.width1), stx + 0.5 * (sty - stx), nxt
        )
        width1 = jnp.where(brackt, s.width, s.width1)
        width = jnp.where(brackt, span, s.width)
        stmin = jnp.where(brackt, jnp.minimum(stx, sty), nxt + XTRAP_LO * (nxt - stx))
        stmax = jnp.where(brackt, jnp.maximum(stx, sty), nxt + XTRAP_HI * (nxt - stx))
        nxt = jnp.clip(nxt, 0, lam_max)
        nxt = jnp.where(jnp.isfinite(nxt), nxt, stx + 0.5 * (sty - stx))
        # no progress possible: the best step, with what was kept there
        stuck = brackt & (
            (nxt <= stmin) | (nxt >= stmax) | (stmax - stmin <= XTOL * stmax)
        )
        last = stop & last_ok
        lam = jnp.where(last, stp, jnp.where(stop, s.stx, stx))
        f_lam = jnp.where(last, f, jnp.where(stop, s.fx, fx))
        keep = stop & ~last_ok  # the best step before this trial
        return Search(
            evals=s.evals + 1,
            stp=nxt,
            brackt=brackt,
            stage2=stage2,
            stx=jnp.where(keep, s.stx, stx),
            fx=jnp.where(keep, s.fx, fx),
            gx=gx,
            sty=sty,
            fy=fy,
            gy=gy,
            stmin=stmin,
            stmax=stmax,
            width=width,
            width1=width1,
            done=stop | stuck,
            last=last,
            lam=lam,
            f_lam=f_lam,
            aux=aux,
            aux_x=tmap(lambda a, b: jnp.where(moved & ~keep, a, b), aux, s.aux_x),
        )

    zero = jnp.zeros((), dtype)
    stp0 = jnp.minimum(lam0, lam_max).astype(dtype)
    false = jnp.zeros((), bool)
    init = Search(
        evals=jnp.zeros((), jnp.int32),
        stp=stp0,
        brackt=false,
        stage2=false,
        stx=zero,
        fx=f0,
        gx=d0,
        sty=zero,
        fy=f0,
        gy=d0,
        stmin=zero,
        stmax=stp0 + XTRAP_HI * stp0,
        width=lam_max,
        width1=2 * lam_max,
        done=false | skip,
        last=false,
        lam=zero,
        f_lam=f0,
        aux=aux0,
        aux_x=aux0,
    )
    s = jax.lax.while_loop(cond, body, init)
    # out of evaluations: the best step, if it decreased enough; a value equal
    # to f0 (a step so short that x + step rounds back to x, where the test
    # above rounds to true) is no decrease: the search failed, as scipy's
    # after 20 backtracks
    enough = (s.stx > 0) & (s.fx < f0) & (s.fx <= f0 + C1 * s.stx * d0)
    lam = jnp.where(s.done, s.lam, jnp.where(enough, s.stx, 0))
    f_lam = jnp.where(s.done, s.f_lam, s.fx)
    aux = tmap(lambda a, b: jnp.where(s.done & s.last, a, b), s.aux, s.aux_x)
    return lam, f_lam, aux, s.evals
