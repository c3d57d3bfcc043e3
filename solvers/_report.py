"""How numerical failure is reported: warnings, errors and a recorder for backward residuals.

Failures inside ``jit`` cannot raise at trace time, so they are reported from the host with
``jax.debug.callback``: a :class:`ConvergenceWarning` (policy ``"report"``) or a
:class:`NonConvergenceError` (policy ``"raise"``; under ``jit`` it surfaces wrapped in JAX's runtime
error, with this message inside).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import jax
import numpy as np
from jax import Array

POLICIES = ("report", "raise", "ignore")


class ConvergenceWarning(RuntimeWarning):
    """An inner solve or the backward linear solve of implicit differentiation did not converge."""


class NonConvergenceError(RuntimeError):
    """Raised (policy ``"raise"``) when a solve ends without meeting its tolerance."""


def check_policy(on_failure: str) -> str:
    """Validates a non-convergence policy name."""
    if on_failure not in POLICIES:
        raise ValueError(
            f"on_failure={on_failure!r} is not a policy; use one of {POLICIES}: 'report' records the "
            "failure in the result (and warns for backward solves), 'raise' raises "
            "NonConvergenceError, 'ignore' only records it."
        )
    return on_failure


class _Recorder:
    def __init__(self) -> None:
        self.values: list[float] = []


# Module-level, not thread-local: jax.debug.callback may run on another thread than the caller's.
_GLOBAL_RECORDERS: list[_Recorder] = []


@contextlib.contextmanager
def record_backward_residuals() -> Iterator[_Recorder]:
    """Collects the relative residual of every implicit backward linear solve run inside the block.

    Example:
      >>> import jax, jax.numpy as jnp, solvers
      >>> f = lambda y, a: jnp.sum((y - a) ** 2)
      >>> loss = lambda a: solvers.minimise(f, jnp.zeros(2), a, adjoint=solvers.Implicit()).value.sum()
      >>> with solvers.record_backward_residuals() as rec:
      ...     _ = jax.grad(loss)(jnp.ones(2)).block_until_ready()
      ...     jax.effects_barrier()
      >>> len(rec.values) == 1 and rec.values[0] < 1e-5
      True
    """
    rec = _Recorder()
    _GLOBAL_RECORDERS.append(rec)
    try:
        yield rec
    finally:
        jax.effects_barrier()
        _GLOBAL_RECORDERS.remove(rec)


_BACKWARD_FAILURES = [0]  # inaccurate backward solves so far in this process


def _host_backward(residual: np.ndarray, threshold: np.ndarray, policy: str) -> None:
    value = float(np.asarray(residual))
    for rec in list(_GLOBAL_RECORDERS):
        rec.values.append(value)
    if not value <= float(threshold):  # also catches NaN
        _BACKWARD_FAILURES[0] += 1
        count = _BACKWARD_FAILURES[0]
        # In a training loop this fires once per step: warn on the 1st, 10th, 100th, ... failure.
        if policy == "report" and count != 10 ** int(np.log10(count)):
            return
        msg = (
            f"implicit differentiation ({count} inaccurate backward solves so far; warnings are "
            "thinned to the 1st, 10th, 100th, ...): the backward linear solve reached relative "
            f"residual "
            f"{value:.3g} > {float(threshold):.3g}, so the gradient is inaccurate. Raise "
            "Implicit(linear_solver_maxiter=...), loosen linear_solver_tol, add ridge=..., or "
            "tighten the forward tol so the Hessian at the solution is positive definite."
        )
        if policy == "raise":
            raise NonConvergenceError(msg)
        if policy == "report":
            warnings.warn(msg, ConvergenceWarning, stacklevel=2)


def report_backward(residual: Array, threshold: float, policy: str) -> None:
    """Records a backward residual and warns or raises when it exceeds ``threshold``."""
    jax.debug.callback(_host_backward, residual, threshold, policy)


def _host_forward(converged: np.ndarray, residual: np.ndarray, tol: float) -> None:
    converged = np.asarray(converged)
    if not converged.all():
        bad = np.flatnonzero(~converged.reshape(-1))
        res = np.asarray(residual).reshape(-1)[bad]
        raise NonConvergenceError(
            f"{bad.size} of {converged.size} problems did not converge to ||grad E|| <= {tol:g} "
            f"(first indices {bad[:8].tolist()}, residuals {np.array2string(res[:8], precision=3)}). "
            "Increase max_steps, adjust step_size, or use on_failure='report' and inspect "
            "Solution.converged."
        )


def raise_if_not_converged(converged: Array, residual: Array, tol: float) -> None:
    """Raises :class:`NonConvergenceError` from the host when any problem did not converge."""
    jax.debug.callback(_host_forward, converged, residual, tol)
