"""Bounds to and from JSON, keyed by dotted path, to keep them with checkpoints.

The file is plain JSON, readable and diffable, one path per line::

    {
      "format": "jaxbounds.bounds",
      "version": 1,
      "bounds": {
        "layers.0.tau_syn": {"lower": 0.0, "upper": 0.2},
        "layers.0.w": {"lower": "-inf", "upper": "inf"},
        "layers.1.b": {"lower": null, "upper": {"dtype": "float32", "shape": [2], ...}}
      }
    }

A bound is a number, ``"inf"`` / ``"-inf"`` (JSON has no infinities; Python's
``Infinity`` is not portable), ``null`` (no bound on that side, as `None` in a
bound tree), or an array: ``{"dtype", "shape", "data"}`` with the values as
nested lists (``"data": [-1.0, "-inf"]``). A bare nested list is read as an
array too (for hand-written files). Floats are written with Python's
shortest round-tripping repr, so values (float16/bfloat16/float32 ones
included) load back bit for bit.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._bounds import make_bounds
from ._paths import PyTree, flatten_with_paths, pure_view, structure_error
from ._plan import plan
from ._validate import check_order, scalar_bound

FORMAT = "jaxbounds.bounds"
VERSION = 1
_INF = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
_SIDES = ("lower", "upper")


# -- encoding ------------------------------------------------------------------


def _encode_float(x: float, where: str) -> float | str:
    if math.isnan(x):
        raise ValueError(f"{where} is NaN; a bound cannot be NaN")
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _encode_list(data: Any, where: str) -> Any:
    if isinstance(data, list):
        return [_encode_list(d, where) for d in data]
    return _encode_float(data, where) if isinstance(data, float) else data


def _encode(bound: Any, side: str, where: str) -> Any:
    """One bound leaf as a JSON value."""
    if bound is None:
        return None
    value = scalar_bound(bound, where, side)
    if value is not None:
        return _encode_float(value, where)
    if not (hasattr(bound, "shape") and hasattr(bound, "dtype")):
        raise TypeError(
            f"{where} must be a float, an array or None, got {type(bound).__name__}"
        )
    if isinstance(bound, jax.core.Tracer):
        raise TypeError(f"{where} is a traced value; save bounds outside jax.jit")
    arr = np.asarray(bound)
    if jnp.issubdtype(arr.dtype, jnp.floating):
        data = arr.astype(np.float64).tolist()
    elif jnp.issubdtype(arr.dtype, jnp.integer):
        data = arr.tolist()
    else:
        raise TypeError(f"{where} has dtype {arr.dtype}; a bound must be real-valued")
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "data": _encode_list(data, where),
    }


def _check_pair(path: str, lo: Any, up: Any) -> None:
    """Raise if the concrete bounds ``lo`` and ``up`` do not broadcast or cross."""
    if lo is None or up is None:
        return
    try:
        np.broadcast_shapes(np.shape(lo), np.shape(up))
    except ValueError:
        raise ValueError(
            f"bounds at {path!r}: lower has shape {np.shape(lo)} and upper "
            f"{np.shape(up)}, which do not broadcast together"
        ) from None
    check_order(lo, up, lambda: repr(path))


def save_bounds(path: str | os.PathLike, lower: PyTree, upper: PyTree) -> None:
    """Write ``lower`` and ``upper`` to a JSON file, keyed by dotted path.

    Keep the bounds next to a checkpoint, and get them back for the same
    model with `load_bounds`. Every leaf of the bound trees is written
    (infinite ones too, so that bounds loosened from a `field` default stay
    loosened); `None` bounds are written as ``null``. Arrays keep their
    dtype and shape. The file is written to a temporary name and renamed,
    so a crash never leaves half a file.

    Paths rather than tree positions are the keys, so a file stays readable
    by eye, survives reordering of a model's fields, and tells which entry
    no longer fits when the model changes.

    Args:
        path: the file to write (replaced if it exists).
        lower: the lower bound tree (see `make_bounds`); concrete values.
        upper: the upper bound tree, with the structure of ``lower``.

    Raises:
        ValueError: ``lower`` and ``upper`` have different structures, two
            leaves have the same dotted path (dict keys containing dots), a
            bound is NaN, or ``lower > upper`` somewhere; the path is named.
        TypeError: a bound is not a number, a real array or None, or is
            traced (inside `jax.jit`).

    Examples:
        >>> import json, os, tempfile
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.ones(2), "w": jnp.zeros(3)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, jnp.array([0.5, 1.0])
        >>> path = os.path.join(tempfile.mkdtemp(), "bounds.json")
        >>> jb.save_bounds(path, lower, upper)
        >>> open(path).read().splitlines()[:4]
        ['{', '  "format": "jaxbounds.bounds",', '  "version": 1,', '  "bounds": {']
        >>> doc = json.load(open(path))
        >>> doc["bounds"]["w"]
        {'lower': '-inf', 'upper': 'inf'}
        >>> doc["bounds"]["tau"]
        {'lower': 0.0, 'upper': {'dtype': 'float32', 'shape': [2], 'data': [0.5, 1.0]}}
    """
    lower, _ = pure_view(lower)
    upper, _ = pure_view(upper)
    lows, lo_def = flatten_with_paths(lower)
    ups, up_def = flatten_with_paths(upper)
    if lo_def != up_def:
        error = structure_error(lower, upper, "upper", ref_name="`lower`")
        raise ValueError(f"`lower` and `upper` do not have the same structure: {error}")
    entries: dict[str, dict[str, Any]] = {}
    for (key, lo), (_, up) in zip(lows, ups):
        if key in entries:
            raise ValueError(
                f"two leaves have the dotted path {key!r} (a dict key containing "
                "'.'?); paths must be unique to be saved"
            )
        entries[key] = {
            side: _encode(b, side, f"{side} bound at {key!r}")
            for side, b in zip(_SIDES, (lo, up))
        }
        _check_pair(key, lo, up)
    lines = [
        f"    {json.dumps(p)}: {json.dumps(e, allow_nan=False)}"
        for p, e in entries.items()
    ]
    text = (
        "{\n"
        f'  "format": "{FORMAT}",\n'
        f'  "version": {VERSION},\n'
        '  "bounds": {' + ("\n" + ",\n".join(lines) + "\n  " if lines else "") + "}\n"
        "}\n"
    )
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# -- decoding ------------------------------------------------------------------


def _decode_float(x: Any, where: str) -> float:
    if isinstance(x, str) and x.strip().lower() in _INF:
        return _INF[x.strip().lower()]
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{where}: expected a number, 'inf' or '-inf', got {x!r}")
    return float(x)


def _decode_list(data: Any, where: str) -> Any:
    if isinstance(data, list):
        return [_decode_list(d, where) for d in data]
    return _decode_float(data, where)


def _decode(value: Any, where: str) -> Any:
    """One JSON value as a bound leaf: None, a float or an array."""
    if value is None:
        return None
    if isinstance(value, list):
        return jnp.asarray(np.asarray(_decode_list(value, where), np.float64))
    if isinstance(value, dict):
        if set(value) != {"dtype", "shape", "data"}:
            raise ValueError(
                f"{where}: an array is written as {{'dtype', 'shape', 'data'}}, "
                f"got keys {sorted(value)}"
            )
        try:
            dtype = jnp.dtype(value["dtype"])
        except TypeError:
            raise ValueError(f"{where}: unknown dtype {value['dtype']!r}") from None
        data = np.asarray(_decode_list(value["data"], where), np.float64)
        if list(data.shape) != list(value["shape"]):
            raise ValueError(
                f"{where}: data has shape {list(data.shape)}, but shape says "
                f"{value['shape']}"
            )
        return jnp.asarray(data.astype(dtype))
    return _decode_float(value, where)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    for k in keys:
        if keys.count(k) > 1:
            raise ValueError(f"key {k!r} appears twice")
    return dict(pairs)


def load_bounds(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, PyTree]:
    """Read bounds written by `save_bounds`, as ``(lower, upper)`` trees like ``like``.

    ``like`` is the params tree (or model) the bounds are for. Paths absent
    from the file get ``make_bounds(like)``'s defaults (infinite, or the
    declarations: ``field(lower=, upper=)`` on equinox, ``nnx.Param(...,
    lower=, upper=)`` on a flax nnx model); every path in the file must
    exist in ``like``, and the result is checked as `bounds_cost` checks
    bounds (array bounds broadcast to the parameter, ``lower <= upper``,
    finite bounds only on float leaves). Array bounds come back as JAX
    arrays of their saved dtype (float64 ones as float32 unless x64 is on).

    Filling in from ``like`` means a file written for an older model still
    loads onto a model that gained parameters, and the checks mean a file
    for another model fails here, naming the path, not later inside a loss.

    Args:
        path: a file written by `save_bounds`.
        like: the params tree or model the bounds are for; only its
            structure, paths, shapes and declared bounds are read.

    Returns:
        ``(lower, upper)``, two trees with the structure of ``like``.

    Raises:
        ValueError: the file is not a jaxbounds bounds file, a path in it is
            not in ``like``, or a bound is malformed or does not fit; the
            message names the file and the path.
        TypeError: a finite bound lands on a leaf of ``like`` that is not a
            float array.

    Examples:
        >>> import os, tempfile
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.ones(2), "w": jnp.zeros(3)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"], upper["tau"] = 0.0, jnp.array([0.2, 0.5])
        >>> path = os.path.join(tempfile.mkdtemp(), "bounds.json")
        >>> jb.save_bounds(path, lower, upper)
        >>> lo, up = jb.load_bounds(path, like=params)
        >>> lo, up["tau"]
        ({'tau': 0.0, 'w': -inf}, Array([0.2, 0.5], dtype=float32))
        >>> wrong = {"tau": jnp.ones(3), "w": jnp.zeros(3)}
        >>> jb.load_bounds(path, like=wrong)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...bounds.json: upper bound at 'tau' has shape (2,), which ...
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            doc = json.load(f, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: not valid JSON ({e})") from None
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(
            f"{name}: not a jaxbounds bounds file (no 'format': {FORMAT!r})"
        )
    if doc.get("version") != VERSION:
        raise ValueError(
            f"{name}: bounds file version {doc.get('version')!r}; this jaxbounds "
            f"reads version {VERSION}"
        )
    keys = {"format", "version", "bounds"}
    if set(doc) != keys or not isinstance(doc["bounds"], dict):
        raise ValueError(
            f"{name}: expected the keys 'format', 'version' and 'bounds' (an "
            f"object keyed by path), got {sorted(doc)}"
        )

    default = make_bounds(like)  # before the view: it reads nnx declarations
    like, _ = pure_view(like)
    named, treedef = flatten_with_paths(like)
    index: dict[str, int | None] = {}
    for i, (p, _) in enumerate(named):
        index[p] = None if p in index else i  # None: ambiguous
    sides = [treedef.flatten_up_to(tree) for tree in default]
    for p, entry in doc["bounds"].items():
        if p not in index:
            raise ValueError(f"{name}: path {p!r} is not in `like`")
        if index[p] is None:
            raise ValueError(f"{name}: path {p!r} names two leaves of `like`")
        if not isinstance(entry, dict) or not set(entry) <= set(_SIDES):
            raise ValueError(
                f"{name}: at {p!r}, expected an object with 'lower' and/or "
                f"'upper', got {entry!r}"
            )
        for s, side in enumerate(_SIDES):
            if side in entry:
                where = f"{name}: {side} bound at {p!r}"
                sides[s][index[p]] = _decode(entry[side], where)
    lower, upper = (jax.tree_util.tree_unflatten(treedef, leaves) for leaves in sides)
    try:
        plan(like, lower, upper)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{name}: {e}") from None
    return lower, upper
