"""Forward iterations: one step of an iterative minimiser of ``E(y, args)``.

An iteration is a pytree (its step size and momentum are leaves, so they can be learned when the
solve is differentiated by unrolling) with three methods:

- ``init(value_and_grad, y0, args) -> state``
- ``step(value_and_grad, y, state, args) -> (y_next, state_next, energy, grad_norm)`` where
  ``energy``/``grad_norm`` describe the point the step evaluated (NaN when not available);
- ``gradient_step(grad, y) -> y`` one plain gradient step, used by Jacobian-free differentiation.

``value_and_grad(y, args)`` returns ``(per-example energies, gradient pytree, per-example gradient
norms)``. The loop that repeats steps, and how it is differentiated, live in ``_adjoint.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._pytree import pytree_dataclass, static_field


class Iteration:
    """Base class of forward iterations (see the module docstring for the protocol)."""

    max_steps: int
    tol: float
    step_size: Any

    def init(self, value_and_grad, y0, args):  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, value_and_grad, y, state, args):  # pragma: no cover - interface
        raise NotImplementedError

    def gradient_step(self, grad, y):
        """``y - step_size * grad``: the map whose fixed points are the stationary points of E."""
        return jax.tree_util.tree_map(lambda a, g: a - self.step_size * g, y, grad)


def _check_common(name: str, max_steps: int, tol: float) -> None:
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"{name}(max_steps={max_steps!r}): max_steps must be a positive int.")
    if not tol >= 0:
        raise ValueError(f"{name}(tol={tol!r}): tol must be a non-negative float.")


@pytree_dataclass
class GradientDescent(Iteration):
    """Plain gradient descent, paper eq. 4: ``y_{t+1} = y_t - alpha * grad_y E(y_t)``.

    Args:
      step_size: ``alpha`` (a float or a traced scalar, learnable under unrolled differentiation).
      max_steps: number of steps (unrolled) or the cap on steps (tolerance-based solves).
      tol: stop when every example has ``||grad E|| <= tol``; also the bar for ``converged``.
    """

    step_size: ArrayLike = 0.1
    max_steps: int = static_field(default=100)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("GradientDescent", self.max_steps, self.tol)

    def init(self, value_and_grad, y0, args):
        return ()

    def step(self, value_and_grad, y, state, args):
        energy, grad, gnorm = value_and_grad(y, args)
        return self.gradient_step(grad, y), state, energy, gnorm


@pytree_dataclass
class Nesterov(Iteration):
    """Gradient descent with Nesterov momentum, as in the paper (Appendix C.4, Listing 2).

    The gradient is taken at the look-ahead point::

        g_t     = grad_y E(y_t + mu * v_t)
        v_{t+1} = mu * v_t - alpha * g_t
        y_{t+1} = y_t + v_{t+1}

    with ``v_0 = 0``. Both ``alpha`` (``step_size``) and ``mu`` (``momentum``) are pytree leaves, so
    they receive gradients under unrolled differentiation and can be learned end to end.

    Args:
      step_size: ``alpha > 0``.
      momentum: ``mu`` in ``[0, 1)``; 0 gives plain gradient descent.
      max_steps: number of steps (unrolled) or the cap on steps (tolerance-based solves).
      tol: stop when every example has ``||grad E|| <= tol``; also the bar for ``converged``.

    Example:
      >>> import jax.numpy as jnp, solvers
      >>> sol = solvers.minimise(lambda y, a: jnp.sum((y - a) ** 2), jnp.zeros(3), jnp.arange(3.0),
      ...                        solver=solvers.Nesterov(step_size=0.2, momentum=0.5, max_steps=50))
      >>> bool(jnp.allclose(sol.value, jnp.arange(3.0), atol=1e-4))
      True
    """

    step_size: ArrayLike = 0.1
    momentum: ArrayLike = 0.5
    max_steps: int = static_field(default=100)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("Nesterov", self.max_steps, self.tol)

    def init(self, value_and_grad, y0, args):
        return jax.tree_util.tree_map(jnp.zeros_like, y0)

    def step(self, value_and_grad, y, velocity, args):
        mu, alpha = self.momentum, self.step_size
        look = jax.tree_util.tree_map(lambda a, v: a + mu * v, y, velocity)
        energy, grad, gnorm = value_and_grad(look, args)
        velocity = jax.tree_util.tree_map(lambda v, g: mu * v - alpha * g, velocity, grad)
        y = jax.tree_util.tree_map(jnp.add, y, velocity)
        return y, velocity, energy, gnorm
