"""flax nnx: Modules, States and Variables seen as plain nested dicts.

Every jaxbounds function sees a tree through `jaxbounds._paths.pure_view`.
This module registers the view for flax nnx objects, so that

- an `nnx.Module` is seen as its `nnx.Param` variables (what
  ``nnx.Optimizer(..., wrt=nnx.Param)`` trains), as nested dicts of arrays:
  ``{"cells": {0: {"tau": Array, ...}}}``;
- an `nnx.State` (from `nnx.state`, `nnx.split`, `nnx.as_pure`, or what
  `nnx.Optimizer` hands its transformation) is seen as the same nested dicts,
  with its Variables replaced by their values (`nnx.to_pure_dict`);
- a single `nnx.Variable` is seen as its value.

So paths name the attributes (``cells.0.tau``, never ``cells.0.tau.value``),
and a bound tree made from any of these views (a plain nested dict) serves
all of them. Outputs shaped like the params (clipped params, optax updates,
constrained params) come back as the kind that went in: a Module as a new
Module (its other variables copied, the input untouched), a State as a
State with the same Variable types and metadata, a Variable as a Variable.

`nnx.Param(value, lower=..., upper=..., family=...)` metadata is read by
`make_bounds` and `family_mask` (as `jaxbounds.field` is for equinox),
through `jaxbounds._declare.register_declarations`. A pure State
(`nnx.as_pure`) has lost that metadata: make bounds from the Module or from
`nnx.state(model, nnx.Param)`.

flax is optional: nothing here imports it. A tree is looked at as an nnx
object only when ``flax.nnx`` is already in `sys.modules` (an nnx object
cannot exist otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax

from ._constraints._declared import CONSTRAINT_KEY, checked_kinds
from ._declare import checked, register_declarations
from ._paths import PyTree, path_str, register_view


def _nnx() -> Any:
    """The ``flax.nnx`` module if something imported it already, else `None`."""
    return sys.modules.get("flax.nnx")


def _flat_state(nnx: Any, state: Any) -> tuple[list[tuple[Any, Any]], Any]:
    """``[(key path, Variable or value)]`` and treedef, as `nnx.to_flat_state` walks.

    The walk goes through the State and the dicts inside it and stops at
    everything else (a Variable, an array, `None`, an `optax.MaskedNode`),
    so a value is never split further than `nnx.to_pure_dict` splits it.
    """
    return jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: not isinstance(x, (dict, nnx.State))
    )


def _value(nnx: Any, leaf: Any) -> Any:
    return leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf


def _lookup(pure: Any, keypath: Any) -> Any:
    node = pure
    for entry in keypath:
        try:
            node = node[entry.key]
        except (KeyError, TypeError, IndexError):
            raise ValueError(
                f"cannot put a result back into the nnx State: it has no entry "
                f"for {path_str(keypath)!r}"
            ) from None
    return node


def _state_view(nnx: Any, state: Any) -> tuple[PyTree, Callable[[PyTree], Any]]:
    flat, treedef = _flat_state(nnx, state)
    pure: dict = {}
    for keypath, leaf in flat:
        node = pure
        for entry in keypath[:-1]:
            node = node.setdefault(entry.key, {})
        if keypath:
            node[keypath[-1].key] = _value(nnx, leaf)

    def restore(pure_like: PyTree) -> Any:
        new = []
        for keypath, leaf in flat:
            x = _lookup(pure_like, keypath)
            new.append(leaf.replace(value=x) if isinstance(leaf, nnx.Variable) else x)
        return jax.tree_util.tree_unflatten(treedef, new)

    return pure, restore


def _module_view(nnx: Any, module: Any) -> tuple[PyTree, Callable[[PyTree], Any]]:
    pure, restore_params = _state_view(nnx, nnx.state(module, nnx.Param))

    def restore(pure_like: PyTree) -> Any:
        new = nnx.clone(module)
        nnx.update(new, restore_params(pure_like))
        return new

    return pure, restore


def _view(tree: Any) -> tuple[PyTree, Callable[[PyTree], Any]] | None:
    """The pure view of an nnx Module, State or Variable; `None` for anything else."""
    nnx = _nnx()
    if nnx is None:
        return None
    if isinstance(tree, nnx.Module):
        return _module_view(nnx, tree)
    if isinstance(tree, nnx.State):
        return _state_view(nnx, tree)
    if isinstance(tree, nnx.Variable):
        return tree.get_value(), lambda x: tree.replace(value=x)
    return None


def _variables(tree: Any) -> list[tuple[str, Any]] | None:
    """``[(path, leaf)]`` of an nnx object, leaves Variables or values; else `None`."""
    nnx = _nnx()
    if nnx is None:
        return None
    if isinstance(tree, nnx.Variable):
        return [("", tree)]
    if isinstance(tree, nnx.Module):
        tree = nnx.state(tree, nnx.Param)
    if not isinstance(tree, nnx.State):
        return None
    return [(path_str(kp), leaf) for kp, leaf in _flat_state(nnx, tree)[0]]


def _declarations(tree: Any) -> dict[str, dict[str, Any]] | None:
    """``{path: declarations}`` from nnx Variable metadata; `None` if not nnx."""
    leaves = _variables(tree)
    if leaves is None:
        return None
    nnx = _nnx()
    out = {}
    for path, leaf in leaves:
        if isinstance(leaf, nnx.Variable):
            meta = leaf.get_metadata()
            on = repr(path) if path else "the root"
            found = checked(
                meta.get("lower"),
                meta.get("upper"),
                meta.get("family"),
                call="nnx.Param",
                on=f"on {on}",
            )
            if meta.get("constraint") is not None:
                found[CONSTRAINT_KEY] = checked_kinds(
                    meta["constraint"], f"nnx.Param on {on}"
                )
            if found:
                out[path] = found
    return out


register_view(_view)
register_declarations(_declarations)
