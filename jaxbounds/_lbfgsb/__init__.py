"""L-BFGS-B on pytrees: the optax transformation `lbfgsb` and the solver `minimize`.

Byrd, Lu, Nocedal and Zhu (1995), "A limited memory algorithm for bound
constrained optimization", with the correction of Morales and Nocedal
(2011), written with tree operations: every vector of the method (iterate,
gradient, the ``m`` stored pairs) is a pytree shaped like the parameters,
reduced leaf by leaf; only the ``2m x 2m`` matrices of the compact
representation ``B = theta I - W M W^T`` (``W = [Y, theta S]``) are dense.

One idea per module, as optimistix splits solver, search and helpers:

- `_tree`: tree arithmetic (dot products, reductions, memory products);
- `_params`: params split into parameter leaves and bounds, and joined back
  (the only module that reads the core);
- `_memory`: the stored pairs and their compact representation;
- `_breakpoints`: the path's breakpoints, and the next chunk of them;
- `_cauchy`: the generalized Cauchy point (the walk over the chunks);
- `_dense`: small problems, the Cauchy point and subspace step densely;
- `_subspace`: subspace minimisation over the free variables;
- `_search`: the strong Wolfe line search inside the box;
- `_iteration`: the solver as optimistix shapes one: a `SolverState`,
  `start`, `init`, `step` (one iteration of the four) and `terminate`;
- `_progress`: the progress lines of ``verbose``;
- `_minimize`: `minimize`, one `jax.lax.while_loop` of `step` until `terminate`;
- `_optax`: `lbfgsb`, the optax transformation (one `step` per update).
"""

from ._minimize import MinimizeResult, minimize
from ._optax import LbfgsbState, lbfgsb

__all__ = ["LbfgsbState", "MinimizeResult", "lbfgsb", "minimize"]
