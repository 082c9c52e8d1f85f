"""Matrix kinds: `Orthogonal`, `SpectralNorm` and `PSD`.

The unit is the matrix over ``axes`` (rows, then columns); the other axes
are a batch (a stack of recurrent matrices, a conv kernel's positions).
Everything is computed in the compute dtype (at least float32: 16-bit
leaves are projected in float32 and rounded back), with matrix products at
``Precision.HIGHEST`` (no TF32). Results are aimed inside by the relative
margin `margin` (``(16 + 2 k) eps``, ``k`` the longer side), so that the
singular values or eigenvalues that `distance` and `violations` recompute
see them inside; 16-bit results are checked after rounding and fixed where
the rounding moved them out. In a metric (weighted) projection,
`projected`, the matrix kinds take their Euclidean projection: no closed
form exists in a diagonal metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._boxmap import raw_limit, softplus_inverse
from .._rounding import compute_dtype, directed
from ._kind import Constraint, concrete, norm2, positive

HIGHEST = jax.lax.Precision.HIGHEST
#: Unrolled checks of a 16-bit result after rounding (each one SVD / eigh).
FIX_STEPS = 3


def _axes(axes: Any) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in axes)
    except (TypeError, ValueError):
        raise TypeError(
            f"axes must be two ints (rows, columns), got {axes!r}"
        ) from None
    return a, b


def matrix_axes(axes: tuple[int, int], ndim: int) -> tuple[int, int]:
    """``axes`` as non-negative (rows, columns) of a leaf of ``ndim`` dimensions.

    Raises:
        ValueError: fewer than 2 dimensions, an axis out of range, or twice.
    """
    if ndim < 2:
        raise ValueError(
            f"a matrix kind needs a leaf of at least 2 dimensions, got {ndim}"
        )
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axes {axes} are out of range for a leaf of {ndim} dims")
    a, b = axes[0] % ndim, axes[1] % ndim
    if a == b:
        raise ValueError(f"axes {axes} name one axis twice")
    return a, b


def margin(k: int, dtype: Any) -> float:
    """The relative margin inside a set for a ``k``-long matrix in ``dtype``."""
    return (16 + 2 * k) * float(jnp.finfo(dtype).eps)


def mm(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` in full precision (no TF32 on GPUs)."""
    return jnp.matmul(a, b, precision=HIGHEST)


def sigma_max(m: jax.Array) -> jax.Array:
    """The largest singular value per matrix (differentiable)."""
    return jnp.linalg.svd(m, compute_uv=False)[..., 0]


def straight(y: jax.Array, fixed: jax.Array) -> jax.Array:
    """``fixed`` as value, ``y``'s gradient (a fix-up that keeps the map's slope)."""
    return y + jax.lax.stop_gradient(fixed - y)


class MatrixKind(Constraint):
    """The shared frame: units over ``axes``, checks, moving axes to the end.

    In `projected` (a diagonal metric) the matrix kinds take their Euclidean
    projection, as `project` does. In `project_to_constraints` they land on
    the nearest stored value; in float32 and float64 the margin absorbs the
    ulp a landing can miss by, but a 16-bit update that cannot land exactly
    on the projection (a first step from far outside) can leave the stored
    value a rounding outside, until the next step.
    """

    axes: Any = eqx.field(static=True, default=(-2, -1), converter=_axes, kw_only=True)
    #: The per-unit quantities `violations` reports (name -> "max" or "min").
    reported: ClassVar[dict[str, str]] = {}

    def units(self, ndim: int) -> tuple[int, ...]:
        return tuple(sorted(matrix_axes(self.axes, ndim)))

    def check(self, leaf: Any) -> None:
        if jnp.iscomplexobj(leaf):
            raise ValueError(
                f"{type(self).__name__} takes real leaves; complex (unitary) "
                "matrices are not supported"
            )
        matrix_axes(self.axes, jnp.ndim(leaf))

    def split(self, x: jax.Array) -> tuple[jax.Array, Callable, Any]:
        """``x``'s units as ``(..., rows, cols)`` in the compute dtype, and back."""
        self.check(x)
        ax = matrix_axes(self.axes, x.ndim)
        cd = compute_dtype(x.dtype)
        m = jnp.moveaxis(x, ax, (-2, -1)).astype(cd)

        def back(y: jax.Array) -> jax.Array:
            return jnp.moveaxis(y, (-2, -1), ax)

        return m, back, cd

    def per_unit(self, v: jax.Array, back: Callable) -> jax.Array:
        """A value per matrix as an array with the unit axes kept (size 1)."""
        return back(v[..., None, None])

    def project_in_metric(self, x: jax.Array, d: Any) -> jax.Array:
        """Euclidean `project`: matrix sets have no closed form in a metric."""
        del d
        return self.project(x)

    def measures(self, x: jax.Array) -> dict[str, jax.Array]:
        """The quantities of `reported` per unit (compute dtype, unit axes kept)."""
        raise NotImplementedError

    def summary(self, x: jax.Array) -> dict[str, jax.Array]:
        per = self.measures(x)
        pick = {"max": jnp.max, "min": jnp.min}
        return {k: pick[how](per[k]) for k, how in self.reported.items()}


def _shrink(y: jax.Array, r: jax.Array) -> jax.Array:
    """16-bit ``y`` scaled down where rounding put ``sigma_max`` past ``r``."""
    dtype = y.dtype
    cd = compute_dtype(dtype)
    eps = float(jnp.finfo(dtype).eps)
    for k in range(FIX_STEPS):
        m = y.astype(cd)
        s = sigma_max(m)[..., None, None]
        bad = s > r
        factor = r / jnp.where(bad, s, 1) * (1 - eps * 4**k / 4)
        y = jnp.where(bad, directed(m * factor, dtype, "toward_zero"), y)
    return y


class SpectralNorm(MatrixKind):
    """The largest singular value of every unit at most ``max_value``.

    Projection clips the singular values at ``max_value`` (units already
    inside are returned unchanged); clipped ones aim at ``max_value (1 -
    margin)``, so the recomputed ``sigma_max`` is within ``max_value``. The
    distance is ``||W - P(W)||_F`` (with ``P`` clipping at ``max_value``
    itself), 0 when the SVD's largest value is within ``max_value``.

    `constrain` is ``W min(1, aim / sigma_max(W))`` (surjective onto the
    ball of radius ``aim``, not bijective; `unconstrain` returns ``W``
    itself). ``sigma_max`` is exact (an SVD) by default; with
    ``power_iterations=k > 0`` it is estimated as PyTorch's
    ``spectral_norm`` does, by ``k`` steps of the power method on ``W^T W``
    from a fixed start vector, all ones (recomputed per call, no state), with
    ``u^T W v`` differentiated at fixed ``u``, ``v``. That estimate is never
    above ``sigma_max`` and its relative error decays as ``(s_2 / s_1)^(4k)``
    (``s_2``: the second singular value), so the result can exceed
    ``max_value`` by the factor ``sigma_max / estimate``: project where the
    bound must hold.

    Attributes:
        max_value: the bound ``> 0`` (a float, or a traced / batched value).
        axes: the (row, column) axes of a unit.
        power_iterations: 0 (exact) or the power method's steps in `constrain`.

    Raises:
        ValueError: a concrete ``max_value`` that is not > 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import SpectralNorm
        >>> w = jnp.array([[3.0, 0.0], [0.0, 0.5]])
        >>> print(SpectralNorm(1.0).project(w).round(4))
        [[1.  0. ]
         [0.  0.5]]
    """

    max_value: Any
    power_iterations: int = eqx.field(static=True, default=0, kw_only=True)
    reported: ClassVar[dict[str, str]] = {"sigma_max": "max"}

    def __check_init__(self) -> None:
        positive(self.max_value, "SpectralNorm's max_value")

    def measures(self, x: jax.Array) -> dict[str, jax.Array]:
        m, back, _ = self.split(jnp.asarray(x))
        return {"sigma_max": self.per_unit(sigma_max(m), back)}

    def _aim(self, m: jax.Array) -> tuple[jax.Array, jax.Array]:
        r = jnp.asarray(self.max_value, m.dtype)
        return r, r * (1 - margin(max(m.shape[-2:]), m.dtype))

    def project(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, back, cd = self.split(x)
        r, aim = self._aim(m)
        u, s, vh = jnp.linalg.svd(m, full_matrices=False)
        clipped = mm(u * jnp.minimum(s, aim)[..., None, :], vh)
        y = jnp.where((s[..., :1] > r)[..., None], clipped, m).astype(x.dtype)
        if cd != x.dtype:
            y = _shrink(y, r)
        return back(y)

    def distance(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, back, _ = self.split(x)
        r = jnp.asarray(self.max_value, m.dtype)
        u, s, vh = jax.lax.stop_gradient(jnp.linalg.svd(m, full_matrices=False))
        target = mm(u * jnp.minimum(s, r)[..., None, :], vh)
        d = norm2(m - target, (-2, -1))
        return back(jnp.where((s[..., :1] > r)[..., None], d, 0))

    def _estimate(self, m: jax.Array) -> jax.Array:
        if not self.power_iterations:
            return sigma_max(m)
        fixed = jax.lax.stop_gradient(m)

        def unit(v: jax.Array) -> jax.Array:
            n = jnp.linalg.norm(v, axis=-1, keepdims=True)
            return v / jnp.maximum(n, jnp.finfo(v.dtype).tiny)

        def step(_: int, v: jax.Array) -> jax.Array:  # v <- W^T W v, normalised
            w = jnp.einsum("...ij,...j->...i", fixed, v, precision=HIGHEST)
            return unit(jnp.einsum("...ij,...i->...j", fixed, w, precision=HIGHEST))

        v0 = unit(jnp.ones(m.shape[:-2] + m.shape[-1:], m.dtype))
        v = jax.lax.fori_loop(0, self.power_iterations, step, v0)
        u = jnp.einsum("...ij,...j->...i", fixed, v, precision=HIGHEST)
        u = jax.lax.stop_gradient(unit(u))
        return jnp.einsum("...i,...ij,...j->...", u, m, v, precision=HIGHEST)

    def constrain(self, raw: jax.Array) -> jax.Array:
        raw = jnp.asarray(raw)
        m, back, cd = self.split(raw)
        r, aim = self._aim(m)
        s = self._estimate(m)
        pos = s > 0
        scale = jnp.minimum(1, aim / jnp.where(pos, s, 1))
        y = (m * jnp.where(pos, scale, 1)[..., None, None]).astype(raw.dtype)
        if cd != raw.dtype and not self.power_iterations:
            y = straight(y, jax.lax.stop_gradient(_shrink(y, r)))
        return back(y)

    def unconstrain(self, x: jax.Array) -> jax.Array:
        return jnp.asarray(x)


def _lift(y: jax.Array, lo: jax.Array) -> jax.Array:
    """16-bit symmetric ``y``, its diagonal raised where ``eig_min < lo``."""
    dtype = y.dtype
    cd = compute_dtype(dtype)
    eye = jnp.eye(y.shape[-1], dtype=bool)
    for k in range(FIX_STEPS):
        m = y.astype(cd)
        w = jnp.linalg.eigvalsh(m)
        short = (lo - w[..., :1])[..., None]
        scale = jnp.max(jnp.abs(w), axis=-1)[..., None, None]
        lift = jnp.where(eye, short + margin(y.shape[-1], cd) * 4**k * scale, 0)
        y = jnp.where(short > 0, directed(m + lift, dtype, "up"), y)
    return y


class PSD(MatrixKind):
    """Symmetric units with every eigenvalue at least ``min_eig`` (square units).

    Projection symmetrises, ``(W + W^T) / 2``, then clips the eigenvalues
    (``eigh``) at ``min_eig``: the nearest such matrix in Frobenius norm.
    Clipped ones aim at ``min_eig + margin (|min_eig| + max |eig|)``, so the
    recomputed smallest eigenvalue is at least ``min_eig``; the result is
    exactly symmetric. A unit counts as inside (distance 0) when its
    asymmetry ``max |W - W^T|`` is within ``2 eps`` of its largest entry
    and the smallest eigenvalue of its symmetric part is at least
    ``min_eig``; otherwise the distance is ``||W - P(W)||_F``.

    `constrain` is ``L L^T + min_eig I`` with ``L`` lower triangular with
    a softplus diagonal (bijective onto the interior); `unconstrain` by
    Cholesky. A result that rounding put below ``min_eig`` is projected
    (with the map's gradient).

    Attributes:
        min_eig: the smallest eigenvalue allowed (a float, or traced).
        axes: the (row, column) axes of a unit (of equal sizes).

    Raises:
        ValueError: a concrete ``min_eig`` that is not finite; (at `check`)
            a non-square unit.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import PSD
        >>> print(PSD().project(jnp.array([[1.0, 2.0], [2.0, 1.0]])).round(4))
        [[1.5 1.5]
         [1.5 1.5]]
    """

    min_eig: Any = 0.0
    reported: ClassVar[dict[str, str]] = {"eig_min": "min", "asymmetry": "max"}

    def __check_init__(self) -> None:
        v = concrete(self.min_eig)
        if v is not None and not math.isfinite(v):
            raise ValueError(f"PSD's min_eig must be a finite number, got {v!r}")

    def check(self, leaf: Any) -> None:
        super().check(leaf)
        a, b = matrix_axes(self.axes, jnp.ndim(leaf))
        shape = jnp.shape(leaf)
        if shape[a] != shape[b]:
            raise ValueError(f"PSD needs square units, got {shape[a]} x {shape[b]}")

    def _parts(self, x: jax.Array) -> tuple:
        m, back, cd = self.split(x)
        sym = (m + m.mT) / 2
        asym = jnp.max(jnp.abs(m - m.mT), axis=(-2, -1))
        return m, sym, asym, back, cd, jnp.asarray(self.min_eig, cd)

    def measures(self, x: jax.Array) -> dict[str, jax.Array]:
        _, sym, asym, back, _, _ = self._parts(jnp.asarray(x))
        w = jnp.linalg.eigvalsh(sym)[..., 0]
        return {
            "eig_min": self.per_unit(w, back),
            "asymmetry": self.per_unit(asym, back),
        }

    def _inside(self, x: jax.Array, m: jax.Array, asym: jax.Array, w: jax.Array):
        top = jnp.max(jnp.abs(m), axis=(-2, -1))
        tol = 2 * float(jnp.finfo(x.dtype).eps) * top
        return (asym <= tol) & (w[..., 0] >= jnp.asarray(self.min_eig, m.dtype))

    def project(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, sym, _, back, cd, lo = self._parts(x)
        w, v = jnp.linalg.eigh(sym)
        scale = jnp.max(jnp.abs(w), axis=-1, keepdims=True)
        aim = lo + margin(m.shape[-1], cd) * (jnp.abs(lo) + scale)
        p = mm(v * jnp.maximum(w, aim)[..., None, :], v.mT)
        p = (p + p.mT) / 2
        y = jnp.where((w[..., :1] >= lo)[..., None], sym, p).astype(x.dtype)
        if cd != x.dtype:
            y = _lift(y, lo)
        return back(y)

    def distance(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, sym, asym, back, _, lo = self._parts(x)
        w, v = jax.lax.stop_gradient(jnp.linalg.eigh(sym))
        target = mm(v * jnp.maximum(w, lo)[..., None, :], v.mT)
        d = norm2(m - target, (-2, -1))
        return back(jnp.where(self._inside(x, m, asym, w)[..., None, None], 0, d))

    def constrain(self, raw: jax.Array) -> jax.Array:
        raw = jnp.asarray(raw)
        m, back, cd = self.split(raw)
        d = jnp.diagonal(m, axis1=-2, axis2=-1)
        eye = jnp.eye(m.shape[-1], dtype=cd)
        l_mat = jnp.tril(m, -1) + eye * jax.nn.softplus(d)[..., None, :]
        y = mm(l_mat, l_mat.mT) + jnp.asarray(self.min_eig, cd) * eye
        y = ((y + y.mT) / 2).astype(raw.dtype)
        out = back(y)
        return straight(out, jax.lax.stop_gradient(self.project(out)))

    def unconstrain(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, back, cd = self.split(x)
        eye = jnp.eye(m.shape[-1], dtype=cd)
        chol = jnp.linalg.cholesky(m - jnp.asarray(self.min_eig, cd) * eye)
        d = jnp.diagonal(chol, axis1=-2, axis2=-1)
        raw = (
            jnp.tril(chol, -1) + eye * softplus_inverse(d, raw_limit(cd))[..., None, :]
        )
        return back(raw).astype(x.dtype)
