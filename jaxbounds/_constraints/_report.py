"""`violations(params, c)`: a row per rule and path, on the host."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from .._compile import compiled
from .._paths import PyTree
from ._cost import distances
from ._resolve import BOUNDS, Resolution, resolve
from ._rules import Constraints


def aligned(
    table: list[tuple[str, ...]], left: int, last_left: bool = False
) -> list[str]:
    """The rows of a text table with aligned columns, the first ``left`` to the left.

    The one table layout of the reports (`ViolationReport`,
    `ConstraintReport`): two spaces between columns, text columns
    left-aligned (the first ``left``, and the last with ``last_left``),
    numbers right-aligned.
    """
    widths = [max(len(line[k]) for line in table) for k in range(len(table[0]))]
    last = len(widths) - 1
    return [
        "  ".join(
            c.ljust(w) if k < left or (last_left and k == last) else c.rjust(w)
            for k, (c, w) in enumerate(zip(line, widths))
        ).rstrip()
        for line in table
    ]


@dataclasses.dataclass(frozen=True)
class RuleViolations:
    """How the units of one path sit against one rule: a `ConstraintReport` row.

    Attributes:
        rule: the rule as named in errors (``"bounds"`` for the bound trees).
        path: the leaf's path (``"a <= b"`` for a relation).
        units: how many units the rule sees there.
        outside: how many units are outside the set (distance > 0, or NaN).
        worst: the largest distance to the set (0.0 if none is outside);
            for a relation ``a <= b - margin``, the largest gap
            ``a - (b - margin)``, in the parameters' own units (a pair 0.01
            out of order reads 0.01, where its Euclidean distance to the
            half-plane, which `constraint_cost` penalises, is 0.01 / sqrt(2)).
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
        lines = aligned(table, left=2, last_left=len(table[0]) > len(head))
        return "\n".join(
            [f"{len(bad)} of {len(self.rows)} rule/path pairs violated:", *lines]
        )


@functools.partial(compiled, static=("res",))
def _stats(xs: tuple, lows: list, ups: list, kinds: tuple, *, res: Resolution) -> list:
    """Per rule and path: ``(units, outside, worst, summary)``.

    A relation's worst is its gap, in the rule's own units.
    """
    keys = res.constrained()
    by_key = dict(zip(keys, xs))
    found = distances(res, kinds, dict(zip(keys, lows)), dict(zip(keys, ups)), by_key)
    summaries = [
        {} if rule == BOUNDS else kinds[rule].summary(by_key[j])
        for j, rules in res.on_leaf
        for rule in rules
    ] + [{} for _ in res.relations]
    first_relation = len(found) - len(res.relations)
    out = []
    for i, ((_, _, d), summary) in enumerate(zip(found, summaries)):
        if i >= first_relation:  # a relation: its gap, in the rule's units
            rule, a, b = res.relations[i - first_relation]
            d = jnp.maximum(kinds[rule].gap(by_key[a], by_key[b]), 0)
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

    Rows come in rule order, as declared (the bound trees first), and within
    a rule in tree order. A unit is outside where `constraint_cost` sees it
    outside, so ``report.ok`` exactly when the cost is 0 (and nothing is
    NaN). ``worst`` is the distance to the set, except for a relation,
    whose worst is the gap ``a - (b - margin)`` in the parameters' units.
    Call it on concrete values.

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
    keys = r.res.constrained()
    xs, lows, ups = r.numbers()
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves([xs, c])):
        raise TypeError(
            "violations() returns Python numbers, so it cannot run under a JAX "
            "transformation; use constraint_cost for a traceable measure"
        )
    rules: list[int] = []  # the rule of each row, in the order of the stats
    names: list[tuple[str, str]] = []
    for j, on in r.res.on_leaf:
        rules.extend(on)
        names.extend(
            (("bounds" if k == BOUNDS else c.name(k)), r.res.paths[j]) for k in on
        )
    for k, a, b in r.res.relations:
        rules.append(k)
        names.append((c.name(k), f"{r.res.paths[a]} <= {r.res.paths[b]}"))
    if not keys:
        return ConstraintReport(())
    stats = jax.device_get(_stats(xs, lows, ups, c.kinds, res=r.res))
    rows = [
        RuleViolations(rule, path, int(n), int(bad), float(w), _floats(summary))
        for (rule, path), (n, bad, w, summary) in zip(names, stats)
    ]
    # rule order as declared (the bound trees first), paths in tree order
    order = sorted(range(len(rows)), key=lambda i: rules[i])
    return ConstraintReport(tuple(rows[i] for i in order))
