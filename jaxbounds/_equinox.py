"""Equinox integration: bounds and families declared on fields, and a regulariser."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

from ._bounds import FAMILY_KEY, LOWER_KEY, UPPER_KEY, declarations, scalar_bound
from ._paths import PyTree, flatten_with_paths, nearest, pure_view


def _declared_bound(value: Any, side: str) -> float | None:
    if value is None:
        return None
    bound = scalar_bound(value, f"field({side}=...)", side)
    if bound is None:
        raise TypeError(
            f"field({side}=...) must be a real number, got {type(value).__name__}; "
            "set array bounds on the bound trees with `set_where`"
        )
    return bound


def field(
    *,
    lower: float | None = None,
    upper: float | None = None,
    family: str | None = None,
    **kwargs: Any,
) -> Any:
    """`equinox.field` that also declares default bounds and a parameter family.

    ``lower`` / ``upper`` become the starting values of `make_bounds` for every
    leaf under this field (instead of ``-inf`` / ``inf``); ``family`` names a
    group of parameters (Rockpool's ``Parameter(family="taus")``) that
    `family_mask` selects. On a field that holds a sub-module the declaration
    covers all of its leaves, and a declaration further down wins. The values
    are stored in the field's ``metadata`` (other metadata passed in
    ``kwargs`` is kept); everything else goes to `equinox.field` unchanged.

    Declaring bounds on the field keeps them next to the parameter they
    constrain, so every model built from the class starts from the same box
    and `make_bounds` needs no path strings. The declared values are only
    defaults: edit the trees `make_bounds` returns to change them per model.

    Args:
        lower: the default lower bound of every leaf under the field, a real
            number (`None`: no bound, ``-inf`` in `make_bounds`). Equal to
            ``upper`` is a zero-width box, which is fine.
        upper: the default upper bound, likewise (`None`: ``inf``).
        family: the name of a parameter family, for `family_mask`.
        **kwargs: passed to `equinox.field` (``default``, ``converter``,
            ``metadata``, ...).

    Returns:
        The `dataclasses.Field` that `equinox.field` returns, with the
        declarations in its ``metadata``.

    Raises:
        ValueError: ``lower > upper``, a NaN bound, a bound no value
            satisfies (``lower=inf``, ``upper=-inf``), ``static=True``
            together with a declaration (a static field is not a pytree leaf,
            so it could never apply), or ``metadata`` that already holds a
            different declaration.
        TypeError: a bound that is not a real number (a bool, an array: set
            array bounds on the bound trees with `set_where`), or a
            ``family`` that is not a str.

    Examples:
        >>> import equinox as eqx
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> class LIF(eqx.Module):
        ...     tau_syn: jnp.ndarray = jb.field(lower=0.0, upper=0.5, family="taus")
        ...     bias: jnp.ndarray = jb.field(default_factory=lambda: jnp.zeros(2))
        >>> lower, upper = jb.make_bounds(LIF(tau_syn=jnp.full(2, 0.02)))
        >>> lower.tau_syn, upper.tau_syn, lower.bias
        (0.0, 0.5, -inf)
    """
    lo = _declared_bound(lower, "lower")
    up = _declared_bound(upper, "upper")
    if lo is not None and up is not None and lo > up:
        raise ValueError(f"field(lower={lo}, upper={up}): lower > upper")
    if family is not None and not isinstance(family, str):
        raise TypeError(f"field(family=...) must be a str, got {type(family).__name__}")
    ours = {LOWER_KEY: lo, UPPER_KEY: up, FAMILY_KEY: family}
    ours = {k: v for k, v in ours.items() if v is not None}
    if ours and kwargs.get("static", False):
        raise ValueError(
            "a static field is not a pytree leaf, so `lower`, `upper` and "
            "`family` could never apply to it"
        )
    metadata = dict(kwargs.pop("metadata", None) or {})
    clash = [k for k in ours if k in metadata and metadata[k] != ours[k]]
    if clash:
        raise ValueError(f"metadata[{clash[0]!r}] conflicts with field()'s argument")
    return eqx.field(metadata={**metadata, **ours}, **kwargs)


def family_mask(model: PyTree, name: str) -> PyTree:
    """A bool tree with ``model``'s structure: `True` on leaves of family ``name``.

    The equivalent of Rockpool's ``net.parameters("taus")``: a leaf belongs
    to the family declared by the innermost `field(family=...)` on its way
    from the root, through nested modules, lists/tuples/dicts of modules and
    `equinox.nn.Sequential`. `None` holes stay `None`, so the mask can be used
    with `optax.masked`, `eqx.filter` and `set_where` on ``model``, on
    ``eqx.filter(model, ...)`` and on bound trees from `make_bounds`.

    Families let a recipe say "every time constant" once, however deep the
    model is and however its leaves are named, instead of a glob per model.

    Args:
        model: an equinox model (or a tree of them), possibly filtered.
        name: the family, as declared with ``field(family=name)``.

    Returns:
        A tree of `True` / `False` (and `None` at holes) with the structure
        of ``model``.

    Raises:
        ValueError: no leaf is in ``name``; the message lists the declared
            families, nearest first.
        TypeError: ``name`` is not a str.

    Examples:
        >>> import equinox as eqx
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> class LIF(eqx.Module):
        ...     tau_syn: jnp.ndarray = jb.field(family="taus")
        ...     bias: jnp.ndarray = jb.field(family="biases")
        >>> lif = LIF(tau_syn=jnp.ones(2), bias=jnp.zeros(2))
        >>> m = jb.family_mask(lif, "taus")
        >>> m.tau_syn, m.bias
        (True, False)
        >>> lower, _ = jb.make_bounds(lif)
        >>> jb.set_where(lower, m, 0.0).tau_syn
        0.0
    """
    if not isinstance(name, str):
        raise TypeError(f"family name must be a str, got {type(name).__name__}")
    declared = declarations(model)
    flat, treedef = flatten_with_paths(pure_view(model)[0])
    families = [
        None if x is None else declared.get(path, {}).get(FAMILY_KEY)
        for path, x in flat
    ]
    flags = [None if x is None else f == name for (_, x), f in zip(flat, families)]
    if not any(flags):
        known = sorted({f for f in families if f is not None})
        if not known:
            raise ValueError(
                f"no leaf is in family {name!r}: no field of the model declares "
                "a family (use jaxbounds.field(family=...))"
            )
        raise ValueError(
            f"no leaf is in family {name!r}; declared families: "
            + ", ".join(repr(f) for f in nearest(name, known, n=len(known)))
        )
    return jax.tree_util.tree_unflatten(treedef, flags)
