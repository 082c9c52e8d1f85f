"""The diagonal preconditioner of an optax optimizer, read from its state.

An adaptive optimizer steps in its own diagonal metric: Adam's update is
``-lr m_hat / (sqrt(nu_hat) + eps)``, so its metric is ``d = sqrt(nu_hat)
+ eps``, and the projection that keeps the constrained optimum a fixed point
of the projected step is taken in ``d`` (`projected(tx, c, metric="auto")`).
`preconditioner` reads ``d`` from the state that ``tx.update`` returned (the
preconditioner the step just used), one tree like the params:

- ``ScaleByAdamState`` (adam, adamw, nadam, nadamw, radam, lamb, yogi):
  ``sqrt(nu / (1 - b2**count) + eps_root) + eps``; adamax (same state, its
  ``nu`` an infinity norm with ``eps`` inside): ``nu``;
- ``ScaleByAmsgradState`` (amsgrad): ``sqrt(nu_max + eps_root) + eps``;
- ``ScaleByBeliefState`` (adabelief): ``sqrt(nu / (1 - b2**count)) + eps``;
- ``ScaleByRmsState`` (rmsprop): ``sqrt(nu + eps)`` (``eps_in_sqrt``, the
  default) or ``sqrt(nu) + eps``, with ``nu / (1 - decay**count)`` under
  ``bias_correction``; ``ScaleByRStdDevState`` (centred rmsprop) the same of
  ``nu - mu**2``;
- ``ScaleByRssState`` (adagrad): the root sum of squares ``sqrt(sum + eps)``;
- no preconditioner, the identity (`None`): sgd and momentum (``TraceState``:
  the step is a multiple of the gradient), lion (``ScaleByLionState``: every
  coordinate moves by the same ``lr``, a sign, so none is weighted against
  another), schedules and the other states without a per-element scale.

The hyperparameters (``b2``, ``eps``, ...) are read where the step read
them: `inject_hyperparams`' ``hyperparams``, else the closure of the
``scale_by_*`` update that ``tx`` chains (`hints`), else optax's defaults.
Wrappers are looked through: `optax.chain` (tuples), `inject_hyperparams`
(``inner_state``), `optax.MultiSteps` (``inner_opt_state``),
`optax.masked` (``inner_state``, masked leaves are holes),
`optax.multi_transform` (``inner_states``). Several preconditioners (a
chain of two, or partitions) multiply. A state with a per-element scale
that is not understood (adafactor's factored moments, sm3, novograd, ...)
raises, naming it and pointing to ``metric=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class Hint(NamedTuple):
    """A ``scale_by_*`` update found in a transformation, with its closure values."""

    name: str  # "scale_by_adam", "scale_by_rms", ...
    values: dict[str, Any]  # its hyperparameters, by argument name


_UPDATE = re.compile(r"^(scale_by_\w+)\.<locals>\.update_fn$")

#: Which ``scale_by_*`` updates leave which state.
_MAKERS = {
    "ScaleByAdamState": (
        "scale_by_adam",
        "scale_by_radam",
        "scale_by_yogi",
        "scale_by_adamax",
    ),
    "ScaleByAmsgradState": ("scale_by_amsgrad",),
    "ScaleByBeliefState": ("scale_by_belief",),
    "ScaleByRmsState": ("scale_by_rms",),
    "ScaleByRmsWithCountState": ("scale_by_rms",),
    "ScaleByRStdDevState": ("scale_by_stddev",),
    "ScaleByRStdDevWithCountState": ("scale_by_stddev",),
    "ScaleByRssState": ("scale_by_rss",),
}

#: optax's defaults where neither a hint nor `inject_hyperparams` says.
_DEFAULTS = {
    "ScaleByAdamState": {"b2": 0.999, "eps": 1e-8, "eps_root": 0.0},
    "ScaleByAmsgradState": {"eps": 1e-8, "eps_root": 0.0},
    "ScaleByBeliefState": {"b2": 0.999, "eps": 1e-16},
    "ScaleByRmsState": {"eps": 1e-8, "eps_in_sqrt": True},
    "ScaleByRmsWithCountState": {"decay": 0.9, "eps": 1e-8, "eps_in_sqrt": True},
    "ScaleByRStdDevState": {"eps": 1e-8, "eps_in_sqrt": True},
    "ScaleByRStdDevWithCountState": {"decay": 0.9, "eps": 1e-8, "eps_in_sqrt": True},
    "ScaleByRssState": {"eps": 1e-7},
}

#: States with a per-element (or per-leaf) scale that `preconditioner` does
#: not read, with the optimizer they come from.
_NOT_UNDERSTOOD = {
    "FactoredState": "adafactor (factored second moments)",
    "ScaleBySM3State": "sm3",
    "ScaleByNovogradState": "novograd",
    "ScaleByAdanState": "adan",
    "ScaleByRpropState": "rprop",
    "ScaleByAdaDeltaState": "adadelta",
    "ScaleByLBFGSState": "lbfgs",
}

#: Fields that hold a second moment in states of other optimizers.
_MOMENT_FIELDS = frozenset(
    {"nu", "nu_max", "v", "v_row", "v_col", "sum_of_squares", "hessian"}
)


def _closure(fn: Any) -> dict[str, Any]:
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    if code is None:
        return {}
    out = {}
    for name, cell in zip(code.co_freevars, cells):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return out


def hints(tx: Any) -> tuple[Hint, ...]:
    """The ``scale_by_*`` updates inside ``tx``, in the order their states appear.

    Found by walking the closures of ``tx.update`` (`optax.chain` keeps its
    parts there, `optax.masked` its inner transformation, `optax.MultiSteps`
    its optimizer on the instance). A transformation built another way
    gives no hints, and optax's defaults are used.
    """
    found: list[Hint] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if depth > 16 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, optax.GradientTransformation):
            walk(obj.update, depth + 1)
        elif isinstance(obj, (tuple, list)):
            for x in obj:
                walk(x, depth + 1)
        elif hasattr(obj, "__func__") and hasattr(obj, "__self__"):  # a method
            walk(obj.__func__, depth + 1)
            walk(getattr(obj.__self__, "__dict__", {}), depth + 1)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x, depth + 1)
        elif hasattr(obj, "init") and hasattr(obj, "update"):  # optax.MultiSteps
            walk(obj.update, depth + 1)
        elif callable(obj) and hasattr(obj, "__code__"):
            values = _closure(obj)
            match = _UPDATE.match(getattr(obj, "__qualname__", ""))
            if match:
                found.append(Hint(match.group(1), values))
                return
            for x in values.values():
                walk(x, depth + 1)

    walk(tx, 0)
    return tuple(found)


def _hole(x: Any) -> bool:
    return x is None or isinstance(x, optax.MaskedNode)


def _map(fn: Callable[..., Any], *trees: Any) -> Any:
    """``fn`` over the array leaves of ``trees``; holes stay holes."""
    return jax.tree_util.tree_map(
        lambda *xs: xs[0] if _hole(xs[0]) else fn(*xs), *trees, is_leaf=_hole
    )


def _corrected(v: Any, decay: Any, count: Any) -> Any:
    """``v / (1 - decay**count)``: optax's bias correction (count >= 1)."""
    c = jnp.maximum(jnp.asarray(count), 1)
    return _map(lambda x: x / (1 - jnp.asarray(decay, x.dtype) ** c).astype(x.dtype), v)


def _root(v: Any, eps: Any, inside: Any) -> Any:
    if inside:
        return _map(lambda x: jnp.sqrt(x + eps), v)
    return _map(lambda x: jnp.sqrt(x) + eps, v)


def _read(state: Any, name: str, hint: str | None, h: dict[str, Any]) -> Any:
    """``d`` of one understood state."""
    if name == "ScaleByAdamState":
        if hint == "scale_by_adamax":
            return state.nu
        nu = _corrected(state.nu, h["b2"], state.count)
        nu = _map(lambda x: x + h.get("eps_root", 0.0), nu)
        return _root(nu, h["eps"], False)
    if name == "ScaleByAmsgradState":
        nu = _map(lambda x: x + h.get("eps_root", 0.0), state.nu_max)
        return _root(nu, h["eps"], False)
    if name == "ScaleByBeliefState":
        return _root(_corrected(state.nu, h["b2"], state.count), h["eps"], False)
    nu = state.sum_of_squares if name == "ScaleByRssState" else state.nu
    if name.startswith("ScaleByRStdDev"):
        mu = state.mu
        if name.endswith("WithCountState"):
            mu = _corrected(mu, h["decay"], state.count)
    if name.endswith("WithCountState"):
        nu = _corrected(nu, h["decay"], state.count)
    if name.startswith("ScaleByRStdDev"):
        nu = _map(lambda n, m: n - jnp.square(m), nu, mu)
    if name == "ScaleByRssState":
        return _root(nu, h["eps"], True)
    return _root(nu, h["eps"], h.get("eps_in_sqrt", True))


def preconditioner(state: Any, found: tuple[Hint, ...] = ()) -> Any:
    """The diagonal metric ``d`` the step that left ``state`` used, or `None`.

    Args:
        state: an optax state (after ``tx.update``).
        found: `hints` of the transformation, matched to the understood
            states in order.

    Returns:
        A tree like the params (`None` where a leaf has no metric, e.g.
        masked), or `None` when the state has no preconditioner (identity).

    Raises:
        ValueError: a preconditioner that is not understood, naming it.
    """
    pending = list(found)
    out: list[Any] = []

    def take(name: str) -> Hint | None:
        for i, hint in enumerate(pending):
            if hint.name in _MAKERS[name]:
                return pending.pop(i)
        return None

    def walk(s: Any, hyper: dict[str, Any] | None) -> None:
        name = type(s).__name__
        if name in _MAKERS:
            hint = take(name)
            h = dict(_DEFAULTS[name])
            if hint is not None:
                h.update({k: v for k, v in hint.values.items() if k in h})
            if hyper is not None:
                h.update({k: v for k, v in hyper.items() if k in h})
            out.append(_read(s, name, hint and hint.name, h))
            return
        if name in _NOT_UNDERSTOOD or (
            hasattr(s, "_fields") and _MOMENT_FIELDS & set(s._fields)
        ):
            what = _NOT_UNDERSTOOD.get(name, name)
            raise ValueError(
                f"projected(metric='auto') does not understand the "
                f"preconditioner of {what} ({name}): pass metric='euclidean', "
                "or metric=fn(state, params) -> d, a tree like the params"
            )
        fields = getattr(s, "_fields", None)
        if fields is not None:
            inner = dict(hyper or {})
            if "hyperparams" in fields:  # inject_hyperparams
                inner.update(s.hyperparams)
            for f in ("inner_state", "inner_opt_state", "inner_states"):
                if f in fields:
                    walk(getattr(s, f), inner if "hyperparams" in fields else hyper)
            return
        if isinstance(s, (tuple, list)):
            for x in s:
                walk(x, hyper)
        elif isinstance(s, dict):
            for x in s.values():
                walk(x, hyper)

    walk(state, None)
    if not out:
        return None
    d = out[0]
    for other in out[1:]:
        d = jax.tree_util.tree_map(
            lambda x, y: y if _hole(x) else (x if _hole(y) else x * y),
            d,
            other,
            is_leaf=_hole,
        )
    return jax.tree_util.tree_map(lambda x: None if _hole(x) else x, d, is_leaf=_hole)
