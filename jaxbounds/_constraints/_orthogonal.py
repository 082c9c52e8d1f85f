"""`Orthogonal`: orthonormal columns or rows (SVD; Cayley map or matrix exponential)."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from .._rounding import compute_dtype
from ._kind import norm2
from ._matrix import MatrixKind, margin, matrix_axes, mm, straight


def polar(m: jax.Array) -> jax.Array:
    """``U V^T`` of ``m``'s thin SVD: the nearest orthonormal columns (rows)."""
    u, _, vh = jnp.linalg.svd(m, full_matrices=False)
    return mm(u, vh)


def gram_error(m: jax.Array) -> jax.Array:
    """``max |W^T W - I|`` (tall) or ``max |W W^T - I|`` (wide), per matrix."""
    r, c = m.shape[-2:]
    g = mm(m.mT, m) if r >= c else mm(m, m.mT)
    return jnp.max(jnp.abs(g - jnp.eye(min(r, c), dtype=m.dtype)), axis=(-2, -1))


def _skew(raw: jax.Array) -> jax.Array:
    """``A - A^T`` with ``A`` the lower triangle of tall ``raw`` padded square."""
    m, n = raw.shape[-2:]
    low = jnp.pad(jnp.tril(raw, -1), [(0, 0)] * (raw.ndim - 1) + [(0, m - n)])
    return low - low.mT


class Orthogonal(MatrixKind):
    """Orthonormal columns (tall units) or rows (wide units); square: orthogonal.

    Projection: the polar factor ``U V^T`` of the thin SVD, the nearest such
    matrix in Frobenius norm. A unit with ``max |W^T W - I|`` (``W W^T``
    when wide) within `tolerance` (``2 eps`` of the leaf's dtype plus the
    margin of the compute dtype) counts as on the set: its distance is 0
    and `project` returns it unchanged. The distance of any other unit is
    ``||W - polar(W)||_F``.

    `constrain` maps a raw matrix of the unit's shape as PyTorch's
    ``parametrizations.orthogonal``: ``S = A - A^T`` with ``A`` the strict
    lower triangle of the first ``n`` columns (tall; padded to ``m x m``),
    then the first ``n`` columns of ``cayley(S) = (I - S/2)^-1 (I + S/2)``
    (``map="cayley"``, the default) or of ``expm(S)`` (``map="expm"``).
    Both reach only the component of the identity: a square result has
    ``det = +1`` (a reflection is never reached), and Cayley misses the
    matrices with eigenvalue -1. `unconstrain` inverts the Cayley map in
    closed form, ``C = 2 Q_2 (Q_1 + I)^-1`` and
    ``B = (2 (Q_1 - I) + C^T Q_2) (Q_1 + I)^-1`` for the top (``n x n``)
    and bottom blocks of a tall ``Q`` (defined where ``Q_1 + I`` is
    invertible); a square ``Q`` with ``det = -1``, which no raw value
    reaches, is taken with its last column negated, so
    ``constrain(unconstrain(Q))`` is ``Q`` exactly when ``det Q = +1``. For
    ``map="expm"`` it takes the principal logarithm ``2 arctan(B / 2)`` of
    the Cayley inverse ``B`` (square units only; a `ValueError` otherwise).
    The raw's strict upper triangle (and diagonal) is unused, and returned
    as zeros. A result of `constrain` is checked (one Gram product) and, if
    off the set by more than the tolerance (large raw values), replaced by
    its polar factor with the map's gradient.

    Attributes:
        axes: the (row, column) axes of a unit.
        map: ``"cayley"`` or ``"expm"``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import Orthogonal
        >>> print(Orthogonal().project(jnp.array([[2.0, 0.0], [0.0, -0.5]])))
        [[ 1.  0.]
         [ 0. -1.]]
    """

    map: str = eqx.field(static=True, default="cayley", kw_only=True)
    equality: ClassVar[bool] = True
    reported: ClassVar[dict[str, str]] = {"max|W^T W - I|": "max"}

    def __check_init__(self) -> None:
        if self.map not in ("cayley", "expm"):
            raise ValueError(
                f"Orthogonal's map must be 'cayley' or 'expm', got {self.map!r}"
            )

    def tolerance(self, x: jax.Array) -> float:
        """How far from 0 ``max |W^T W - I|`` may be for a unit on the set."""
        m, n = (x.shape[a] for a in matrix_axes(self.axes, x.ndim))
        cd = compute_dtype(x.dtype)
        return 2 * float(jnp.finfo(x.dtype).eps) + margin(max(m, n), cd)

    def measures(self, x: jax.Array) -> dict[str, jax.Array]:
        m, back, _ = self.split(jnp.asarray(x))
        return {"max|W^T W - I|": self.per_unit(gram_error(m), back)}

    def project(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, back, _ = self.split(x)
        on = gram_error(m) <= self.tolerance(x)
        y = jnp.where(on[..., None, None], m, polar(m))
        return back(y).astype(x.dtype)

    def distance(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, back, _ = self.split(x)
        on = gram_error(m) <= self.tolerance(x)
        d = norm2(m - jax.lax.stop_gradient(polar(m)), (-2, -1))
        return back(jnp.where(on[..., None, None], 0, d))

    def _tall(self, m: jax.Array) -> tuple[jax.Array, bool]:
        wide = m.shape[-2] < m.shape[-1]
        return (m.mT if wide else m), wide

    def constrain(self, raw: jax.Array) -> jax.Array:
        raw = jnp.asarray(raw)
        m, back, _ = self.split(raw)
        t, wide = self._tall(m)
        rows, cols = t.shape[-2:]
        s = _skew(t)
        eye = jnp.eye(rows, dtype=t.dtype)
        if self.map == "cayley":
            q = jnp.linalg.solve(eye - s / 2, (eye + s / 2)[..., :cols])
        else:
            q = jsl.expm(s)[..., :cols]
        ok = gram_error(q) <= self.tolerance(raw)
        fixed = jax.lax.cond(  # the SVD only when some unit is off the set
            jnp.all(ok),
            lambda q: q,
            lambda q: jnp.where(ok[..., None, None], q, polar(q)),
            jax.lax.stop_gradient(q),
        )
        q = straight(q, jax.lax.stop_gradient(fixed))
        return back(q.mT if wide else q).astype(raw.dtype)

    def unconstrain(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        m, back, _ = self.split(x)
        q, wide = self._tall(m)
        rows, cols = q.shape[-2:]
        if self.map == "expm" and rows != cols:
            raise ValueError(
                "Orthogonal(map='expm').unconstrain needs square units (no closed "
                "inverse for tall or wide ones); use map='cayley'"
            )
        if rows == cols:  # det -1 is not reached: take Q with its last column negated
            sign = jnp.linalg.slogdet(q)[0]
            q = (
                q
                * jnp.where(jnp.arange(cols) == cols - 1, sign[..., None], 1)[
                    ..., None, :
                ]
            )
        q1, q2 = q[..., :cols, :], q[..., cols:, :]
        eye = jnp.eye(cols, dtype=q.dtype)
        mt = (q1 + eye).mT

        def right_solve(b: jax.Array) -> jax.Array:  # b (q1 + I)^-1
            return jnp.linalg.solve(mt, b.mT).mT

        c = right_solve(2 * q2)
        b = right_solve(2 * (q1 - eye) + mm(c.mT, q2))
        if self.map == "expm":  # log(cayley(b)) = 2 arctan(b / 2), via eigh of i b
            w, v = jnp.linalg.eigh(1j * b)
            f = mm(v * (2 * jnp.arctan(w / 2))[..., None, :], v.conj().mT)
            b = jnp.real(-1j * f).astype(q.dtype)
        raw = jnp.concatenate([jnp.tril(b, -1), c], axis=-2)
        return back(raw.mT if wide else raw).astype(x.dtype)
