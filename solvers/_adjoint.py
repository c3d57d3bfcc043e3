"""Differentiation modes ("adjoints"): how the minimiser returned by a forward iteration is
differentiated. Each is independent of the forward iteration it is paired with.

- :class:`Unrolled`: backprop through a fixed number of steps (the paper's explicit method).
- :class:`Implicit`: implicit function theorem on ``grad_y E(y*, args) = 0`` (jaxopt ``custom_root``).
- :class:`Truncated`: backprop through the last ``k`` of ``max_steps`` steps.
- :class:`OneStep`: Jacobian-free; differentiate one gradient step taken at the solution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._jaxopt import custom_root
from ._linear_solve import check_linear_solver, make_linear_solve
from ._loop import Trajectory, run_fixed, run_until
from ._pytree import pytree_dataclass, static_field


def _stop(tree):
    return jax.tree_util.tree_map(jax.lax.stop_gradient, tree)


class Adjoint:
    """Base class of differentiation modes.

    ``solve(iteration, value_and_grad, y0, args, energy_struct, on_failure) -> Trajectory``.
    """

    history_differentiable: bool = False
    uses_tolerance: bool = True

    def solve(
        self, iteration, value_and_grad, y0, args, energy_struct, on_failure
    ):  # pragma: no cover
        raise NotImplementedError


@pytree_dataclass
class Unrolled(Adjoint):
    """Backpropagate through exactly ``iteration.max_steps`` steps (``lax.scan``).

    Step size and momentum receive gradients, so they can be learned as in the paper.

    Args:
      checkpoint: rematerialise each step on the backward pass (the default): one more gradient
        evaluation per step, memory flat in the number of steps, and on CPU faster than keeping
        every step's activations (``lax.scan`` then stacks and copies them). ``False`` keeps them.
      unroll: ``lax.scan``'s unroll factor (``True`` unrolls every step: no loop overhead, longer
        compiles).
    """

    checkpoint: bool = static_field(default=True)
    unroll: int | bool = static_field(default=1)
    history_differentiable = True
    uses_tolerance = False

    def solve(self, iteration, value_and_grad, y0, args, energy_struct, on_failure):
        return run_fixed(
            iteration,
            value_and_grad,
            y0,
            args,
            iteration.max_steps,
            checkpoint=self.checkpoint,
            unroll=self.unroll,
        )


@pytree_dataclass
class Truncated(Adjoint):
    """Run ``iteration.max_steps`` steps, backpropagating only through the last ``k``.

    The first ``max_steps - k`` steps see stopped gradients (no memory kept for them); the result is
    the same forward value as :class:`Unrolled` with a biased, cheaper gradient.

    Args:
      k: number of trailing steps differentiated (``1 <= k <= max_steps``).
      checkpoint: rematerialise the differentiated steps (default; see :class:`Unrolled`).
      unroll: ``lax.scan``'s unroll factor.
    """

    k: int = static_field(default=5)
    checkpoint: bool = static_field(default=True)
    unroll: int | bool = static_field(default=1)
    history_differentiable = True
    uses_tolerance = False

    def solve(self, iteration, value_and_grad, y0, args, energy_struct, on_failure):
        total = iteration.max_steps
        if not 1 <= self.k <= total:
            raise ValueError(
                f"Truncated(k={self.k}) must satisfy 1 <= k <= max_steps={total}; lower k or raise "
                "the solver's max_steps."
            )
        head = total - self.k
        y, state = y0, None
        gn_head = en_head = None
        if head:
            first = run_fixed(_stop(iteration), value_and_grad, _stop(y0), _stop(args), head)
            y, state, gn_head, en_head = _stop(
                (first.value, first.state, first.grad_norms, first.energies)
            )
        # The momentum state carries over, so the forward value equals the unrolled one.
        last = run_fixed(
            iteration,
            value_and_grad,
            y,
            args,
            self.k,
            checkpoint=self.checkpoint,
            unroll=self.unroll,
            state0=state,
        )
        if head:
            gnorms = jnp.concatenate([gn_head, last.grad_norms])
            energies = jnp.concatenate([en_head, last.energies])
        else:
            gnorms, energies = last.grad_norms, last.energies
        return Trajectory(
            last.value, jnp.asarray(total, jnp.int32), gnorms, energies, last.last_update
        )


@pytree_dataclass
class Implicit(Adjoint):
    """Implicit-function-theorem gradients from ``grad_y E(y*, args) = 0``.

    The forward solve runs to ``iteration.tol`` (``lax.while_loop``, nothing stored per step). On
    the backward pass ``dy*/dargs = -H^{-1} d(grad_y E)/dargs`` with ``H`` the Hessian at ``y*``,
    solved with Hessian-vector products by ``linear_solver``. The relative residual of that solve is
    checked against ``check_rtol`` and reported (see :func:`solvers.record_backward_residuals`), so an
    inaccurate gradient is never silent. The step size and momentum get no gradient: ``y*`` does not
    depend on them.

    Args:
      linear_solver: ``"cg"`` (default; the Hessian at a minimum is symmetric positive definite;
        per example for batched problems, whose Hessian is block diagonal),
        ``"gmres"``, ``"bicgstab"`` or ``"normal_cg"``.
      linear_solver_tol: relative tolerance of the backward solve.
      linear_solver_maxiter: iteration cap of the backward solve.
      ridge: add ``ridge * I`` to the Hessian (helps nearly singular or indefinite Hessians).
      check_rtol: warn/raise when the backward relative residual exceeds this (default
        ``10 * linear_solver_tol``).
    """

    linear_solver: str = static_field(default="cg")
    linear_solver_tol: float = static_field(default=1e-6)
    linear_solver_maxiter: int = static_field(default=100)
    ridge: float = static_field(default=0.0)
    check_rtol: float | None = static_field(default=None)

    def __post_init__(self):
        check_linear_solver(self.linear_solver)

    def solve(self, iteration, value_and_grad, y0, args, energy_struct, on_failure):
        check_rtol = self.check_rtol if self.check_rtol is not None else 10 * self.linear_solver_tol
        linear_solve = make_linear_solve(
            self.linear_solver,
            tol=self.linear_solver_tol,
            maxiter=self.linear_solver_maxiter,
            ridge=self.ridge,
            check_rtol=check_rtol,
            on_failure=on_failure,
            batched=len(energy_struct.shape) > 0,
        )

        def optimality(y, args, iteration):
            return value_and_grad(y, args)[1]

        @custom_root(optimality, has_aux=True, solve=linear_solve)
        def forward(y, args, iteration):
            traj = run_until(iteration, value_and_grad, y, args, energy_struct)
            return traj.value, (traj.steps, traj.grad_norms, traj.energies, traj.last_update)

        # The iteration's own leaves (step size, momentum) get no gradient under implicit
        # differentiation, and passing them stopped avoids closing over traced values.
        y, aux = forward(_stop(y0), args, _stop(iteration))
        return Trajectory(y, *_stop(aux))


@pytree_dataclass
class OneStep(Adjoint):
    """Jacobian-free differentiation: solve without gradients, then differentiate one step at ``y*``.

    The returned value is exactly the forward solution ``y*``; its gradient is that of one gradient
    step ``y* - alpha * grad_y E(y*, args)`` with respect to ``args`` (and ``alpha``), i.e. the
    implicit gradient with the inverse Hessian replaced by ``alpha * I`` (Fung et al., 2022). Cheap
    and often good enough as a descent direction; not an accurate gradient.
    """

    def solve(self, iteration, value_and_grad, y0, args, energy_struct, on_failure):
        traj = run_until(_stop(iteration), value_and_grad, _stop(y0), _stop(args), energy_struct)
        y_star = _stop(traj.value)
        _, grad, _ = value_and_grad(y_star, args)
        # value == y*; derivative == that of y* - alpha * grad E(y*, args).
        stepped = iteration.gradient_step(grad, y_star)
        y = jax.tree_util.tree_map(lambda s, a: a + (s - jax.lax.stop_gradient(s)), stepped, y_star)
        return Trajectory(y, *_stop((traj.steps, traj.grad_norms, traj.energies, traj.last_update)))
