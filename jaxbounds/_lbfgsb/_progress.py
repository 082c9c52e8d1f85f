"""Progress lines for a long fit, printed from inside the compiled loop.

`minimize(..., verbose=k)` calls `report` once an iteration; the line is
printed every ``k`` steps (and at the last) through `jax.debug.callback`,
so it works under `jax.jit`. Under `jax.vmap` the batch prints one summary
line (fits still running, the spread of their values, the largest
projected-gradient norm) rather than a line per fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

from ._tree import leaves, tmap, total


def active_bounds(x: Any, lo: Any, up: Any) -> jax.Array:
    """How many variables sit on a bound."""
    at = tmap(lambda x, lo, up: jnp.sum((x == lo) | (x == up)), x, lo, up)
    return total(leaves(at), jnp.int32)


def one_line(step: Any, value: Any, pg: Any, evals: Any, active: Any) -> str:
    """The progress line of one fit.

    Examples:
        >>> print(one_line(10, 0.5, 1e-3, 14, 3))
        step     10  value  5.000000e-01  pg 1.000e-03  evals     14  active 3
    """
    return (
        f"step {int(step):6d}  value {float(value): .6e}  pg {float(pg):.3e}  "
        f"evals {int(evals):6d}  active {int(active)}"
    )


def batch_line(step: Any, value: Any, pg: Any, evals: Any, running: Any) -> str:
    """The progress line of a batch of fits (arrays with one entry a fit).

    Examples:
        >>> import numpy as np
        >>> print(batch_line(5, np.array([1.0, 2.0, 4.0]), np.array([1e-3, 1e-7, 0.1]),
        ...                  np.array([6, 7, 9]), np.array([True, False, True])))
        step      5  running 2/3  value min  1.000e+00 median  2.000e+00 max  4.000e+00  pg max 1.000e-01  evals 22
    """  # noqa: E501
    value = np.asarray(value, float)
    pg = np.asarray(pg, float)
    return (
        f"step {int(step):6d}  running {int(np.sum(running))}/{np.size(running)}  "
        f"value min {np.min(value): .3e} median {np.median(value): .3e} "
        f"max {np.max(value): .3e}  pg max {np.max(pg):.3e}  "
        f"evals {int(np.sum(evals))}"
    )


def reporter(every: int, write: Callable[[str], Any] = print) -> Callable[..., Any]:
    """``report(step, value, pg, evals, active, running)``, printing every ``every``.

    ``step`` is the steps taken, ``running`` whether the fit goes on after
    this step. A line is written when ``step`` is a multiple of ``every`` or
    the fit (under `jax.vmap`: the whole batch) has stopped.
    """

    def show_one(step: Any, value: Any, pg: Any, evals: Any, active: Any) -> None:
        write(one_line(step, value, pg, evals, active))

    def show_batch(step: Any, value: Any, pg: Any, evals: Any, run: Any) -> None:
        write(batch_line(np.max(step), value, pg, evals, run))

    @custom_vmap
    def report(
        step: Any, value: Any, pg: Any, evals: Any, active: Any, running: Any
    ) -> Any:
        due = (step % every == 0) | ~running
        jax.lax.cond(
            due,
            lambda: jax.debug.callback(show_one, step, value, pg, evals, active),
            lambda: None,
        )
        return step

    @report.def_vmap
    def _(
        size: int,
        batched: list[bool],
        step: Any,
        value: Any,
        pg: Any,
        evals: Any,
        active: Any,
        running: Any,
    ) -> tuple[Any, bool]:
        args = [
            a if b else jnp.broadcast_to(a, (size, *jnp.shape(a)))
            for a, b in zip(
                (step, value, pg, evals, running), batched[:4] + batched[5:]
            )
        ]
        step, value, pg, evals, running = args
        trip = jnp.max(step)
        due = (trip % every == 0) | ~jnp.any(running)
        jax.lax.cond(
            due,
            lambda: jax.debug.callback(show_batch, step, value, pg, evals, running),
            lambda: None,
        )
        return step, True

    return report
