"""Declared bounds: what a model says about its own parameters.

A model can carry its bounds: `jaxbounds.field(lower=, upper=, family=)` on
an equinox field, ``nnx.Param(x, lower=, upper=, family=)`` in flax nnx.
Each framework adapter registers a *declarer* here that reads its own
metadata; `declarations` asks them in turn. So `make_bounds`,
`family_mask` and `load_bounds` read declarations without knowing any
framework, and every declaration is checked once, by `checked`, whichever
framework it comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._validate import scalar_bound

#: Declaration keys (also the equinox field-metadata keys).
LOWER_KEY = "jaxbounds_lower"
UPPER_KEY = "jaxbounds_upper"
FAMILY_KEY = "jaxbounds_family"
KEYS = (LOWER_KEY, UPPER_KEY, FAMILY_KEY)

#: ``declarer(tree)`` gives ``{path: {key: value}}`` for a tree of its kind, or None.
Declarer = Callable[[Any], "dict[str, dict[str, Any]] | None"]
_DECLARERS: list[Declarer] = []


def register_declarations(declarer: Declarer) -> None:
    """Let `declarations` read a framework's own bound metadata (used by adapters)."""
    if declarer not in _DECLARERS:
        _DECLARERS.append(declarer)


def declarations(tree: Any) -> dict[str, dict[str, Any]]:
    """Declared ``lower`` / ``upper`` / ``family`` per dotted path of ``tree``.

    The first registered declarer that recognises ``tree`` answers; paths
    without declarations are absent, and a tree no declarer knows declares
    nothing.
    """
    for declarer in _DECLARERS:
        found = declarer(tree)
        if found is not None:
            return found
    return {}


def checked(
    lower: Any = None,
    upper: Any = None,
    family: Any = None,
    *,
    call: str,
    on: str = "",
) -> dict[str, Any]:
    """One declaration, validated, as ``{key: value}`` without the `None` entries.

    The one check of declared bounds, for every framework: each bound a real
    number (arrays belong on the bound trees), ``lower <= upper``, a family
    a str. ``call`` and ``on`` are how the declaration reads in a message:
    ``call="field"``, or ``call="nnx.Param", on="on 'tau'"``.

    Raises:
        TypeError: a bound that is not a real number, a family not a str.
        ValueError: a NaN bound, one no value satisfies, ``lower > upper``.
    """
    on = f" {on}" if on else ""
    found: dict[str, Any] = {}
    for side, key, value in (("lower", LOWER_KEY, lower), ("upper", UPPER_KEY, upper)):
        if value is None:
            continue
        what = f"{call}({side}=...){on}"
        bound = scalar_bound(value, what, side)
        if bound is None:
            raise TypeError(
                f"{what} must be a real number, got {type(value).__name__}; "
                "set array bounds on the bound trees with `set_where`"
            )
        found[key] = bound
    lo, up = found.get(LOWER_KEY), found.get(UPPER_KEY)
    if lo is not None and up is not None and lo > up:
        raise ValueError(f"{call}(lower={lo}, upper={up}){on}: lower > upper")
    if family is not None:
        if not isinstance(family, str):
            raise TypeError(
                f"{call}(family=...){on} must be a str, got {type(family).__name__}"
            )
        found[FAMILY_KEY] = family
    return found
