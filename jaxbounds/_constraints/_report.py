"""`violations(params, c)`: a row per rule and path, on the host."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from .._paths import PyTree
from ._cost import distances
from ._resolve import BOUNDS, resolve
from ._rules import Constraints


@dataclasses.dataclass(frozen=True)
class RuleViolations:
    """How the units of one path sit against one rule: a `ConstraintReport` row.

    Attributes:
        rule: the rule as named in errors (``"bounds"`` for the bound trees).
        path: the leaf's path (``"a <= b"`` for a relation).
        units: how many units the rule sees there.
        outside: how many units are outside the set (distance > 0, or NaN).
        worst: the largest distance to the set (0.0 if none is outside).
        summary: the kind's own named quantities (`Constraint.summary`: the
            matrix kinds' largest singular value, smallest eigenvalue, ...).
    """

    rule: str
    path: str
    units: int
    outside: int
    worst: float
    summary: tuple[tuple[str, float], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every unit is in its set."""
        return self.outside == 0


@dataclasses.dataclass(frozen=True)
class ConstraintReport:
    """The rows of `violations` for a `Constraints`; ``str()`` is a table."""

    rows: tuple[RuleViolations, ...]

    @property
    def ok(self) -> bool:
        """Whether every unit of every rule is in its set."""
        return all(r.ok for r in self.rows)

    @property
    def violating(self) -> tuple[RuleViolations, ...]:
        """The rows with at least one unit outside its set (as `ViolationReport`)."""
        return tuple(r for r in self.rows if not r.ok)

    def __getitem__(self, path: str) -> RuleViolations:
        for row in self.rows:
            if row.path == path:
                return row
        raise KeyError(path)

    def __str__(self) -> str:
        bad = self.violating
        if not bad:
            return f"all {len(self.rows)} rule/path pairs satisfied"
        head: tuple[str, ...] = ("rule", "path", "units", "outside", "worst")
        table = [head] + [
            (r.rule, r.path, str(r.units), str(r.outside), f"{r.worst:.6g}")
            for r in bad
        ]
        if any(r.summary for r in bad):
            table = [(*head, "summary")] + [
                (*line, ", ".join(f"{k} {v:.6g}" for k, v in r.summary))
                for line, r in zip(table[1:], bad)
            ]
        widths = [max(len(line[k]) for line in table) for k in range(len(table[0]))]
        lines = [
            "  ".join(
                c.ljust(w) if k < 2 or k == len(head) else c.rjust(w)
                for k, (c, w) in enumerate(zip(line, widths))
            ).rstrip()
            for line in table
        ]
        return "\n".join(
            [f"{len(bad)} of {len(self.rows)} rule/path pairs violated:", *lines]
        )


@functools.partial(jax.jit, static_argnames=("res", "keys"))
def _stats(xs: tuple, kinds: tuple, lows: tuple, ups: tuple, *, res, keys) -> list:
    found = distances(
        res,
        kinds,
        dict(zip(keys, lows)),
        dict(zip(keys, ups)),
        dict(zip(keys, xs)),
    )
    summaries = [
        {} if rule == BOUNDS else kinds[rule].summary(xs[keys.index(j)])
        for j, rules in res.on_leaf
        for rule in rules
    ] + [{} for _ in res.relations]
    out = []
    for (_, _, d), summary in zip(found, summaries):
        bad = (d > 0) | jnp.isnan(d)
        out.append(
            (
                d.size,
                jnp.sum(bad),
                jnp.max(jnp.where(jnp.isnan(d), jnp.inf, d), initial=0),
                summary,
            )
        )
    return out


def _floats(summary: dict) -> tuple[tuple[str, float], ...]:
    return tuple((k, float(v)) for k, v in summary.items())


def violations(params: PyTree, c: Constraints) -> ConstraintReport:
    """Which units are outside their sets, a row per rule and path.

    Distances are those of `constraint_cost`, so ``report.ok`` exactly when
    the cost is 0 (and nothing is NaN). Call it on concrete values.

    Args:
        params: the parameter tree.
        c: the `Constraints`.

    Returns:
        A `ConstraintReport`.

    Raises:
        TypeError: under a JAX transformation; also as `project`.
        ValueError: as `project`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> c = jb.Constraints(("w", jb.MaxNorm(1.0, axis=0)))
        >>> print(jb.violations({"w": jnp.array([[3.0, 0.1], [4.0, 0.1]])}, c))
        1 of 1 rule/path pairs violated:
        rule                   path  units  outside  worst
        rule 0 ('w', MaxNorm)  w         2        1      4
    """
    r = resolve(params, c)
    keys = r.res.leaves()
    xs = tuple(jnp.asarray(r.leaves[j]) for j in keys)
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves([xs, c])):
        raise TypeError(
            "violations() returns Python numbers, so it cannot run under a JAX "
            "transformation; use constraint_cost for a traceable measure"
        )
    names: list[tuple[str, str]] = []
    for j, rules in r.res.on_leaf:
        names.extend(
            (("bounds" if k == BOUNDS else c.name(k)), r.res.paths[j]) for k in rules
        )
    for k, a, b in r.res.relations:
        names.append((c.name(k), f"{r.res.paths[a]} <= {r.res.paths[b]}"))
    if not keys:
        return ConstraintReport(())
    stats = jax.device_get(
        _stats(
            xs,
            c.kinds,
            tuple(r.lows.get(j) for j in keys),
            tuple(r.ups.get(j) for j in keys),
            res=r.res,
            keys=keys,
        )
    )
    return ConstraintReport(
        tuple(
            RuleViolations(rule, path, int(n), int(bad), float(w), _floats(summary))
            for (rule, path), (n, bad, w, summary) in zip(names, stats)
        )
    )
