"""The immutable result of :func:`solvers.minimise`."""

from __future__ import annotations

from typing import Any

from jax import Array

from ._pytree import pytree_dataclass, static_field


@pytree_dataclass
class Solution:
    """What a minimisation returned, and how well it converged.

    Per-example fields have a leading batch axis when the problem was solved with ``batched=True``
    (one independent problem per leading index of ``y``); otherwise they are scalars.

    Attributes:
      value: the minimiser ``y*`` (same structure as ``y0``).
      residual: ``||grad_y E(y*, args)||`` at the returned value, per example. Implicit gradients are
        only as accurate as this is small.
      converged: ``residual <= tol`` and finite, per example. Never true for NaN/Inf inputs.
      steps: number of iterations taken (the same for every example of a batch).
      grad_norms: ``[max_steps, ...]`` norm of the gradient the iteration evaluated at each step (at
        the look-ahead point for Nesterov); NaN after ``steps`` and where a backend does not expose
        it per example.
      energies: ``[max_steps, ...]`` energy at the same points; NaN where not recorded.
      last_update: ``max |y_T - y_{T-1}|`` of the final step, per example (the paper's Figure 5
        convergence statistic, with ``residual``).
      tol: the tolerance ``converged`` was judged against.
      history_differentiable: whether ``grad_norms``/``energies`` carry gradients (true for
        unrolled and truncated differentiation, whose auxiliary loss (eq. 5) needs them).
    """

    value: Any
    residual: Array
    converged: Array
    steps: Array
    grad_norms: Array
    energies: Array
    last_update: Array
    tol: float = static_field(default=0.0)
    history_differentiable: bool = static_field(default=False)
