"""Forward iterations backed by jaxopt (archived upstream, so it stays behind this interface).

Each class adapts one jaxopt solver to the :class:`~solvers._iterations.Iteration` protocol by
calling its ``init_state``/``update``; the loop, the stopping rule and the differentiation mode are
ours, so swapping the backend touches only this file.

jaxopt measures progress with one norm over the whole pytree, so for batched problems the per-step
``grad_norms`` recorded here are that global norm, repeated for each example; the final residual and
``converged`` flags of the :class:`~solvers.Solution` are still exact and per example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._iterations import Iteration, _check_common
from ._jaxopt import jaxopt
from ._pytree import pytree_dataclass, static_field


def _gd_map(value_and_grad, step_size):
    """``T(y) = y - eta * grad E(y)``: its fixed points are the stationary points of ``E``."""

    def fixed_point_fun(y, args):
        _, grad, _ = value_and_grad(y, args)
        return jax.tree_util.tree_map(lambda a, g: a - step_size * g, y, grad)

    return fixed_point_fun


class _JaxoptIteration(Iteration):
    def _solver(self, value_and_grad):  # pragma: no cover - interface
        raise NotImplementedError

    def _grad_norm_from_error(self, error):
        return error / self.step_size

    def init(self, value_and_grad, y0, args):
        return self._solver(value_and_grad).init_state(y0, args)

    def step(self, value_and_grad, y, state, args):
        y_next, state_next = self._solver(value_and_grad).update(y, state, args)
        # Per-example shape of energies: evaluate shapes only (no compute) to broadcast.
        energy_shape = jax.eval_shape(lambda a, b: value_and_grad(a, b)[0], y, args).shape
        nan = jnp.full(energy_shape, jnp.nan)
        gnorm = jnp.broadcast_to(self._grad_norm_from_error(state_next.error), energy_shape)
        return y_next, state_next, nan, gnorm


@pytree_dataclass
class FixedPointIteration(_JaxoptIteration):
    """jaxopt's ``FixedPointIteration`` on ``T(y) = y - step_size * grad E(y)`` (gradient descent).

    Args:
      step_size: ``eta`` of the map ``T``.
      max_steps: cap on iterations.
      tol: stop when ``||grad E|| <= tol`` (jaxopt's global norm over the batch).
    """

    step_size: ArrayLike = 0.1
    max_steps: int = static_field(default=500)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("FixedPointIteration", self.max_steps, self.tol)

    def _solver(self, value_and_grad):
        return jaxopt.FixedPointIteration(
            fixed_point_fun=_gd_map(value_and_grad, self.step_size),
            maxiter=self.max_steps,
            tol=self.tol,
            implicit_diff=False,
            jit=False,
        )


@pytree_dataclass
class AndersonAcceleration(_JaxoptIteration):
    """jaxopt's ``AndersonAcceleration`` on ``T(y) = y - step_size * grad E(y)``.

    Anderson mixing extrapolates from the last ``history_size`` iterates; on smooth energies it needs
    far fewer gradient evaluations than plain fixed-point iteration. For batched problems the mixing
    weights are shared across the batch (jaxopt solves one least-squares problem for the whole
    pytree).

    Args:
      step_size: ``eta`` of the map ``T``.
      history_size: number of past iterates mixed.
      beta: damping of the mixing.
      ridge: Tikhonov regularisation of the mixing least-squares problem.
      max_steps: cap on iterations.
      tol: stop when ``||T(y) - y|| / eta <= tol`` (global norm).
    """

    step_size: ArrayLike = 0.1
    history_size: int = static_field(default=5)
    beta: float = static_field(default=1.0)
    ridge: float = static_field(default=1e-5)
    max_steps: int = static_field(default=500)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("AndersonAcceleration", self.max_steps, self.tol)

    def _solver(self, value_and_grad):
        return jaxopt.AndersonAcceleration(
            fixed_point_fun=_gd_map(value_and_grad, self.step_size),
            history_size=self.history_size,
            beta=self.beta,
            ridge=self.ridge,
            maxiter=self.max_steps,
            tol=self.tol,
            implicit_diff=False,
            jit=False,
        )


@pytree_dataclass
class AcceleratedGradientDescent(_JaxoptIteration):
    """jaxopt's ``GradientDescent`` with ``acceleration=True`` (FISTA-style momentum schedule).

    Args:
      step_size: fixed step size (> 0).
      max_steps: cap on iterations.
      tol: stop when jaxopt's error (the gradient norm at the extrapolated point) is below ``tol``.
    """

    step_size: ArrayLike = 0.1
    max_steps: int = static_field(default=500)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("AcceleratedGradientDescent", self.max_steps, self.tol)

    def _grad_norm_from_error(self, error):
        return error

    def _solver(self, value_and_grad):
        def fun(y, args):
            energy, grad, _ = value_and_grad(y, args)
            return jnp.sum(energy), grad

        return jaxopt.GradientDescent(
            fun=fun,
            value_and_grad=True,
            # A callable, because jaxopt compares a plain step size with 0 in Python, which fails
            # when the step size is traced (learned, or passed through implicit differentiation).
            stepsize=lambda _: self.step_size,
            acceleration=True,
            maxiter=self.max_steps,
            tol=self.tol,
            implicit_diff=False,
            jit=False,
        )
