"""Equinox: bounds and families declared on fields, read back by `make_bounds`.

`field` stores declarations in an equinox field's metadata; this module
registers the walk that reads them (`jaxbounds._declare`), and tells
`jaxbounds._paths` that Python floats inside an `equinox.Module` are
hyperparameters, as `eqx.filter_grad` sees them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax

from ._constraints._declared import CONSTRAINT_KEY, checked_kinds
from ._declare import FAMILY_KEY, KEYS, checked, declarations, register_declarations
from ._paths import (
    PyTree,
    flatten_with_paths,
    is_none,
    nearest,
    path_str,
    pure_view,
    register_hyperparameter_node,
)


def _is_module(x: Any) -> bool:
    return isinstance(x, eqx.Module)


def _child(node: Any, entry: Any) -> Any:
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return getattr(node, entry.name)
    if isinstance(entry, jax.tree_util.DictKey):
        return node[entry.key]
    if isinstance(entry, jax.tree_util.SequenceKey):
        return node[entry.idx]
    raise LookupError(entry)


def _declared_along(root: PyTree, keypath: Sequence[Any]) -> dict[str, Any]:
    """The innermost `field` declarations along ``keypath``, by key.

    Walks from ``root`` down the key path; at each equinox module the field
    named by the next attribute key is looked up in the dataclass fields, and
    a declaration further down replaces one above, key by key.
    """
    found: dict[str, Any] = {}
    node = root
    for entry in keypath:
        if _is_module(node) and isinstance(entry, jax.tree_util.GetAttrKey):
            f = {f.name: f for f in dataclasses.fields(node)}.get(entry.name)
            if f is not None:
                meta = f.metadata
                keys = (*KEYS, CONSTRAINT_KEY)
                found.update({k: meta[k] for k in keys if meta.get(k) is not None})
        try:
            node = _child(node, entry)
        except (LookupError, TypeError, AttributeError):
            break
    return found


def _declarations(tree: Any) -> dict[str, dict[str, Any]] | None:
    """``{path: declarations}`` from `field` metadata; `None` without a module."""
    if not any(map(_is_module, jax.tree_util.tree_leaves(tree, is_leaf=_is_module))):
        return None
    out: dict[str, dict[str, Any]] = {}
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    for kp, _ in flat:
        found = _declared_along(tree, kp)
        if found:
            out[path_str(kp)] = found
    return out


register_declarations(_declarations)
register_hyperparameter_node(_is_module)


def field(
    *,
    lower: float | None = None,
    upper: float | None = None,
    family: str | None = None,
    constraint: Any = None,
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
        constraint: a constraint kind (`MaxNorm`, `Simplex`, ...) or a tuple
            of them, read by `Constraints.declared`.
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
    ours = checked(lower, upper, family, call="field")
    if constraint is not None:
        ours[CONSTRAINT_KEY] = checked_kinds(constraint, "field(constraint=...)")
    if ours and kwargs.get("static", False):
        raise ValueError(
            "a static field is not a pytree leaf, so `lower`, `upper`, "
            "`family` and `constraint` could never apply to it"
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
