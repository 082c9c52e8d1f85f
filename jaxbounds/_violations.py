"""`violations`: which parameters are outside their bounds, as a report."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._compile import per_leaf
from ._constraints import _report
from ._constraints._report import aligned
from ._constraints._rules import NO_UPPER, given_constraints
from ._paths import PyTree
from ._plan import plan
from ._rounding import compute_dtype, violation


@dataclasses.dataclass(frozen=True)
class PathViolations:
    """How one leaf of a params tree sits against its bounds: a `ViolationReport` row.

    Plain Python numbers, read back from the device once, so a row can be
    logged, compared or asserted on without further transfers.

    Attributes:
        path: the leaf's dotted path (``"<root>"`` for a bare array).
        size: the number of elements of the leaf.
        below: how many elements are under ``lower``.
        above: how many elements are over ``upper``.
        worst_below: the largest distance under ``lower`` (0.0 where no
            element is below).
        worst_above: the largest distance over ``upper`` (0.0 where no
            element is above).
        nan: how many elements are NaN; a NaN is in no box, so it makes
            the row not `ok`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([-0.5, 0.1, jnp.nan])}
        >>> row = jb.violations(params, {"tau": 0.0}, {"tau": 1.0})["tau"]
        >>> row.size, row.below, row.worst_below, row.nan, row.ok
        (3, 1, 0.5, 1, False)
    """

    path: str
    size: int
    below: int
    above: int
    worst_below: float
    worst_above: float
    nan: int

    @property
    def ok(self) -> bool:
        """Whether every element of this leaf is inside its bounds."""
        return not (self.below or self.above or self.nan)


_COLUMNS = ("path", "size", "below", "worst below", "above", "worst above", "nan")


def _cells(row: PathViolations) -> tuple[str, ...]:
    def count(n: int) -> str:
        return str(n) if n else "-"

    def worst(n: int, v: float) -> str:
        return f"{v:.4g}" if n else "-"

    return (
        row.path,
        str(row.size),
        count(row.below),
        worst(row.below, row.worst_below),
        count(row.above),
        worst(row.above, row.worst_above),
        count(row.nan),
    )


@dataclasses.dataclass(frozen=True)
class ViolationReport:
    """Per-path bound violations of a params tree, as plain Python numbers.

    Returned by `violations`. ``report[path]`` looks a row up (a `KeyError`
    for a path that holds no float parameter). ``str(report)`` is an
    aligned table of the violating paths only, or one line when there are
    none, so a training loop can print it as it is.

    Attributes:
        rows: one `PathViolations` per float leaf of the params tree
            (bounded or not), in tree order.
        ok: whether every parameter element is inside its bounds and none
            is NaN.
        size: the number of parameter elements checked.
        violating: the rows with at least one element outside or NaN.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([-0.5, 0.1]), "w": jnp.ones(3)}
        >>> lower, upper = {"tau": 0.0, "w": None}, {"tau": 1.0, "w": None}
        >>> report = jb.violations(params, lower, upper)
        >>> report.ok, report.size, [r.path for r in report.violating]
        (False, 5, ['tau'])
        >>> report["w"].ok
        True
    """

    rows: tuple[PathViolations, ...]

    @property
    def ok(self) -> bool:
        """Whether every parameter element is inside its bounds (and none is NaN)."""
        return all(r.ok for r in self.rows)

    @property
    def size(self) -> int:
        """The number of parameter elements checked."""
        return sum(r.size for r in self.rows)

    @property
    def violating(self) -> tuple[PathViolations, ...]:
        """The rows with at least one element outside its bounds or NaN."""
        return tuple(r for r in self.rows if not r.ok)

    def __getitem__(self, path: str) -> PathViolations:
        for r in self.rows:
            if r.path == path:
                return r
        raise KeyError(f"no float parameter at path {path!r}")

    def __str__(self) -> str:
        bad = self.violating
        if not bad:
            return f"all {self.size} parameters within bounds"
        n = sum(r.below + r.above + r.nan for r in bad)
        lines = aligned([_COLUMNS, *(_cells(r) for r in bad)], left=1)
        return "\n".join([f"{n} of {self.size} parameters outside bounds:", *lines])


def _leaf_stats(p: jax.Array, lo: Any, up: Any) -> tuple[jax.Array, ...]:
    """One leaf's (below, above, worst below, worst above, nan), in one pass."""
    x = p.astype(compute_dtype(p.dtype))
    row = []
    for v in (violation(x, lo, None), violation(x, None, up)):  # > 0: outside
        out = v > 0
        row.append((jnp.sum(out), jnp.max(jnp.where(out, v, 0), initial=0)))
    (n_lo, w_lo), (n_up, w_up) = row
    return n_lo, n_up, w_lo, w_up, jnp.sum(jnp.isnan(x))


_violation_stats = per_leaf(_leaf_stats)


def violations(params: PyTree, lower: PyTree, upper: PyTree = NO_UPPER) -> Any:
    """Which parameters are outside their bounds, by path, on the host.

    For every float leaf: how many elements are below ``lower`` and above
    ``upper``, the worst violation on each side, and how many are NaN (a
    NaN is in no box, so it makes the report not ``ok``). Comparisons are
    made as `bounds_cost` makes them: in at least float32, with the bounds
    cast to that dtype, so ``report.ok`` exactly when the cost is zero (and
    nothing is NaN).

    Call it on concrete values, e.g. on the params a jitted training step
    returned: the numbers are computed in one compiled pass over the tree
    and read back to the host in one transfer. Bounds are checked as for
    `bounds_cost`.

    Args:
        params: the parameter tree (concrete values).
        lower: lower bounds shaped like ``params`` (see `bounds_cost`), or a
            `Constraints` (then ``upper`` is omitted and the result is a
            `ConstraintReport`, a row per rule and path).
        upper: upper bounds, likewise.

    Returns:
        A `ViolationReport` (a `ConstraintReport` for a `Constraints`).

    Raises:
        TypeError: called under a JAX transformation (inside `jax.jit`);
            the report is made of Python numbers. Also as `bounds_cost`.
        ValueError: as `bounds_cost`, naming the offending path.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([-0.5, 0.1, 0.3, -0.2]), "w": jnp.ones(3)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, 0.2
        >>> report = jb.violations(params, lower, upper)
        >>> report.ok, report["tau"].below, report["tau"].worst_below
        (False, 2, 0.5)
        >>> print(report)
        3 of 7 parameters outside bounds:
        path  size  below  worst below  above  worst above  nan
        tau      4      2          0.5      1          0.1    -
        >>> print(jb.violations(jb.clip_to_bounds(params, lower, upper), lower, upper))
        all 7 parameters within bounds
    """
    c = given_constraints(lower, upper, "violations")
    if c is not None:
        return _report.violations(params, c)
    pl = plan(params, lower, upper, every_param=True)
    leaves, lows, ups = pl.bounded(), pl.lows, pl.ups
    rows = [(path or "<root>", int(np.size(x))) for path, x in zip(pl.names(), leaves)]
    if any(
        isinstance(x, jax.core.Tracer) for x in jax.tree.leaves([leaves, lows, ups])
    ):
        raise TypeError(
            "violations() returns Python numbers, so it cannot run under a JAX "
            "transformation; call it outside jax.jit, e.g. on the params a "
            "jitted step returns (use bounds_cost for a traceable measure)"
        )
    stats = jax.device_get(_violation_stats(leaves, lows, ups))
    return ViolationReport(
        tuple(
            PathViolations(path, size, int(b), int(a), float(wb), float(wa), int(n))
            for (path, size), (b, a, wb, wa, n) in zip(rows, stats)
        )
    )
