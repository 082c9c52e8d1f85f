"""Selectors: which leaves of a tree to touch (`mask`, `set_where`).

A selector is a tree of bools with the tree's structure (optax mask style,
recognised first since an equinox module is itself callable), a glob string
matched with `fnmatch` against the dotted path, or a callable
``(path, leaf) -> bool``. Only leaves that can hold a bound are candidates:
parameters (real float arrays, Python floats) and the number / array leaves
of bound trees.
`None` holes, and what `make_bounds` marks as no parameter (`None`), are
never selected.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeAlias

import equinox as eqx
import jax
import numpy as np

from ._paths import (
    PyTree,
    check_same_structure,
    flatten_with_paths,
    is_none,
    is_param_leaf,
    nearest,
    pure_view,
)

#: A selector: a glob string, a predicate ``(path, leaf) -> bool`` or a bool tree.
Where: TypeAlias = str | Callable[[str, Any], bool] | PyTree


def selectable(leaf: Any) -> bool:
    """Whether a selector may pick ``leaf``: a parameter or a bound value.

    Parameters are real float arrays and Python floats; bound trees hold
    Python numbers and real arrays. Functions, bools, strings, complex and
    integer arrays and `None` are neither.
    """
    if leaf is None or isinstance(leaf, bool):
        return False
    return isinstance(leaf, (int, float)) or is_param_leaf(leaf)


def _as_bool(x: Any, what: str, path: str) -> bool:
    """``x`` as a Python bool if it is a concrete boolean scalar, else TypeError."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, jax.core.Tracer):
        raise TypeError(
            f"{what} at path {path or '<root>'!r} is a traced value; selections "
            "decide which leaves to touch and must be known outside jit"
        )
    if hasattr(x, "dtype") and hasattr(x, "shape") and x.dtype == bool:
        if x.shape == ():
            return bool(x)
        raise TypeError(
            f"{what} at path {path or '<root>'!r} is a bool array of shape "
            f"{tuple(x.shape)}; a selector picks whole leaves, so it must be a "
            "single bool"
        )
    raise TypeError(
        f"{what} at path {path or '<root>'!r} must be a bool, got {type(x).__name__}"
    )


def _nothing_selected(where: Any, kind: str, all_paths: list[str]) -> ValueError:
    if not all_paths:
        return ValueError(
            f"the {kind} selector matches nothing: the tree has no leaves"
        )
    if kind == "glob":
        query = where.replace("*", "").replace("?", "")
        hint = nearest(query, all_paths)
        return ValueError(
            f"selector {where!r} matches no leaf path; nearest paths: "
            + ", ".join(repr(p) for p in hint)
        )
    shown = all_paths[:8] + (["..."] if len(all_paths) > 8 else [])
    return ValueError(
        f"the {kind} selector selects no leaf; the tree's paths are: "
        + ", ".join(shown)
    )


def selection(tree: PyTree, where: Where) -> tuple[list[tuple[str, Any]], Any, list]:
    """``(leaves with paths, treedef, flags)``: the leaves ``where`` picks in ``tree``.

    ``flags[i]`` is a bool for a leaf and `None` for a `None` hole; a leaf
    that is not `selectable` is never picked (a predicate is not asked).
    Raises `ValueError` (listing the nearest paths) when nothing is selected.
    """
    if where is None:
        raise TypeError(
            "`where` must be a glob string, a callable (path, leaf) -> bool or a "
            "tree of bools with the tree's structure; got None"
        )
    tree, _ = pure_view(tree)
    leaves, treedef = flatten_with_paths(tree)
    marks: list[Any] = [None] * len(leaves)
    if isinstance(where, str):
        kind = "glob"
    elif callable(where) and not isinstance(where, eqx.Module):
        kind = "predicate"
    else:
        kind = "bool tree"
        where, _ = pure_view(where)
        check_same_structure(tree, where, "where", ref_name="the tree")
        marks = jax.tree_util.tree_leaves(where, is_leaf=is_none)

    chosen: Any = where

    def pick(path: str, leaf: Any, mark: Any) -> bool:
        if kind == "glob":
            return fnmatch.fnmatchcase(path, chosen)
        if kind == "predicate":
            return _as_bool(chosen(path, leaf), "`where` returned a value", path)
        return mark is not None and _as_bool(mark, "the `where` leaf", path)

    flags = [
        None if x is None else (selectable(x) and pick(p, x, m))
        for (p, x), m in zip(leaves, marks)
    ]
    if not any(flags):
        raise _nothing_selected(where, kind, [p for p, x in leaves if x is not None])
    return leaves, treedef, flags


def mask(tree: PyTree, where: Where) -> PyTree:
    """A tree of bools with ``tree``'s structure: `True` where ``where`` selects.

    ``where`` is one of (tried in this order):

    - a tree of bools with ``tree``'s structure (an optax mask; an
      `equinox.Module` is always read as a tree, never as a predicate, since
      modules are callable). `None` in it means "not selected";
    - a glob string matched with `fnmatch.fnmatchcase` against each leaf's
      dotted path (`paths`); ``*`` also matches dots, so ``"*tau_*"`` finds
      ``layers.1.tau_syn``;
    - a callable ``(path, leaf) -> bool``, given the dotted path and the leaf.

    Only leaves that can hold a bound are candidates: parameters (real float
    arrays, Python floats) and the Python numbers and arrays of bound trees. An
    activation function, a bool flag, an int counter or a complex array is
    never selected (`False`), and in a bound tree from `make_bounds` such
    leaves are `None`, so a broad glob such as ``"*"`` bounds parameters
    only. `None` holes (`eqx.filter`) are never selected and stay `None` in
    the mask, so the mask has the exact structure of ``tree`` and can be
    passed to `optax.masked`. Selections must be concrete (not traced)
    values.

    A selector that selects nothing raises `ValueError` listing the nearest
    paths: a typo in a pattern should not silently leave parameters unbounded.

    Args:
        tree: a params tree, a bound tree or a model.
        where: the selector.

    Returns:
        A tree of bools (and `None` holes) with the structure of ``tree``.

    Raises:
        ValueError: nothing is selected, or a bool tree has another structure.
        TypeError: a predicate or bool tree gives something other than a bool.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"lif": {"tau_syn": jnp.ones(2), "bias": jnp.zeros(2)}}
        >>> jb.mask(params, "*tau_*")
        {'lif': {'bias': False, 'tau_syn': True}}
        >>> jb.mask(params, lambda path, leaf: path.endswith("bias"))
        {'lif': {'bias': True, 'tau_syn': False}}
    """
    _, treedef, flags = selection(tree, where)
    return jax.tree_util.tree_unflatten(treedef, flags)


def set_where(tree: PyTree, where: Where, value: Any) -> PyTree:
    """A copy of ``tree`` with every leaf selected by ``where`` replaced by ``value``.

    ``where`` is as in `mask`. ``value`` (a float or an array) replaces each
    selected leaf as a whole and is not broadcast or cast here: bounds are
    validated against the parameters by `bounds_cost` and friends, which name
    the path of any bad value. The input tree is never mutated; unselected
    leaves are passed through as they are, `None` holes stay `None`. ``value``
    may be a traced value (inside `jax.jit`); the selection may not.

    Args:
        tree: usually a bound tree from `make_bounds`.
        where: the selector, as in `mask`.
        value: the new leaf: a float, `None` (unbounded) or an array.

    Returns:
        A new tree; ``tree`` is not mutated.

    Raises:
        ValueError: nothing is selected (as in `mask`).
        TypeError: ``value`` is not a single leaf.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"lif": {"tau_syn": jnp.ones(2), "bias": jnp.zeros(2)}}
        >>> lower, upper = jb.make_bounds(params)
        >>> jb.set_where(lower, "*tau_*", 0.0)
        {'lif': {'bias': -inf, 'tau_syn': 0.0}}
    """
    value_def = jax.tree_util.tree_structure(value)
    if value is not None and not jax.tree_util.treedef_is_leaf(value_def):
        raise TypeError(
            "`value` must be a single leaf (a float or an array), got "
            f"{type(value).__name__}: it would change the tree's structure"
        )
    leaves, treedef, flags = selection(tree, where)
    new = [value if f else x for (_, x), f in zip(leaves, flags)]
    return jax.tree_util.tree_unflatten(treedef, new)
