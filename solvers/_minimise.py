"""``minimise``: the one entry point that pairs a forward iteration with a differentiation mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ._adjoint import Adjoint, Unrolled
from ._iterations import Iteration, Nesterov
from ._norms import norm
from ._report import check_policy, raise_if_not_converged
from ._solution import Solution


def _check_y0(y0: Any, batched: bool) -> None:
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves:
        raise ValueError("y0 is an empty pytree: pass the starting point, e.g. jnp.zeros(dim).")
    for leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"y0 has a leaf of dtype {dtype}; minimisation needs floating-point values, e.g. "
                "y0.astype(jnp.float32)."
            )
    if batched:
        sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
        if None in sizes or len(sizes) != 1:
            raise ValueError(
                "batched=True needs every leaf of y0 to share a leading batch axis; got leading "
                f"sizes {sorted(map(str, sizes))}."
            )


def _energy_struct(fn: Callable, y0: Any, args: Any, batched: bool) -> jax.ShapeDtypeStruct:
    out = jax.eval_shape(fn, y0, args)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"fn(y, args) must return an array, got the pytree {out}.")
    if batched:
        batch = jnp.shape(jax.tree_util.tree_leaves(y0)[0])[0]
        if out.shape != (batch,):
            raise TypeError(
                f"with batched=True, fn(y, args) must return one energy per example, shape "
                f"({batch},); got shape {out.shape}."
            )
    elif out.shape != ():
        raise TypeError(
            f"fn(y, args) must return a scalar energy; got shape {out.shape}. Sum it, or pass "
            "batched=True if it returns one energy per independent example."
        )
    return out


def minimise(
    fn: Callable[[Any, Any], jax.Array],
    y0: Any,
    args: Any = None,
    *,
    solver: Iteration | None = None,
    adjoint: Adjoint | None = None,
    batched: bool = False,
    on_failure: str = "report",
) -> Solution:
    """Minimises ``fn(y, args)`` over ``y`` and differentiates the minimiser with respect to ``args``.

    ``solver`` chooses the forward iteration and ``adjoint`` how it is differentiated; the two are
    independent. Everything that must receive gradients goes in ``args`` (never closed over).

    Args:
      fn: the energy ``E(y, args)``; returns a scalar, or with ``batched=True`` a vector ``[B]`` of
        independent per-example energies (example ``i`` may depend only on ``y[i]``).
      y0: starting point (array or pytree of floating arrays).
      args: pytree of everything ``fn`` depends on.
      solver: a forward iteration: :class:`Nesterov` (default), :class:`GradientDescent`,
        :class:`FixedPointIteration`, :class:`AndersonAcceleration`,
        :class:`AcceleratedGradientDescent`.
      adjoint: :class:`Unrolled` (default), :class:`Implicit`, :class:`Truncated` or
        :class:`OneStep`.
      batched: solve ``B`` independent problems at once; convergence is reported per example.
      on_failure: ``"report"`` (default: recorded in ``Solution.converged``/``residual``; backward
        solves of implicit differentiation also warn), ``"raise"`` (:class:`NonConvergenceError`
        from the host, also under ``jit``), or ``"ignore"``.

    Returns:
      A :class:`Solution`.

    Raises:
      TypeError: if ``fn`` does not return a scalar (or ``[B]`` when batched) or ``y0`` is not
        floating point.
      ValueError: for inconsistent batch axes or unknown options.

    Example:
      >>> import jax, jax.numpy as jnp, solvers
      >>> energy = lambda y, a: jnp.sum((y - a) ** 2) + 0.5 * jnp.sum(y ** 2)
      >>> solve = lambda a: solvers.minimise(energy, jnp.zeros(2), a,
      ...     solver=solvers.Nesterov(step_size=0.2, max_steps=200, tol=1e-6),
      ...     adjoint=solvers.Implicit()).value
      >>> jax.grad(lambda a: solve(a).sum())(jnp.ones(2))  # y* = a / 1.5
      Array([0.6666..., 0.6666...], dtype=float32)
    """
    solver = Nesterov() if solver is None else solver
    adjoint = Unrolled() if adjoint is None else adjoint
    if not callable(fn):
        raise TypeError(f"fn must be a callable energy fn(y, args); got {type(fn).__name__}.")
    if not isinstance(solver, Iteration):
        raise TypeError(
            f"solver must be a solvers iteration (e.g. solvers.Nesterov()); got {solver!r}."
        )
    if not isinstance(adjoint, Adjoint):
        raise TypeError(
            f"adjoint must be a differentiation mode (e.g. solvers.Implicit()); got {adjoint!r}."
        )
    check_policy(on_failure)
    _check_y0(y0, batched)
    energy_struct = _energy_struct(fn, y0, args, batched)

    def value_and_grad(y, args):
        def total(y):
            energies = fn(y, args)
            return jnp.sum(energies), energies

        (_, energies), grad = jax.value_and_grad(total, has_aux=True)(y)
        return energies, grad, norm(grad, batched)

    traj = adjoint.solve(solver, value_and_grad, y0, args, energy_struct, on_failure)
    _, _, residual = value_and_grad(traj.value, args)
    converged = jnp.isfinite(residual) & (residual <= solver.tol)
    if on_failure == "raise":
        raise_if_not_converged(converged, residual, solver.tol)
    return Solution(
        value=traj.value,
        residual=residual,
        converged=converged,
        steps=traj.steps,
        grad_norms=traj.grad_norms,
        energies=traj.energies,
        last_update=traj.last_update,
        tol=solver.tol,
        history_differentiable=adjoint.history_differentiable,
    )
