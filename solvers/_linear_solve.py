"""Backward linear solvers for implicit differentiation, with their residual reported."""

from __future__ import annotations

from collections.abc import Callable

import jax

from ._jaxopt import jaxopt
from ._norms import global_norm
from ._report import report_backward

# The Hessian of E at a minimum is symmetric positive (semi-)definite, so CG is the default.
_SOLVERS: dict[str, Callable] = {
    "cg": jaxopt.linear_solve.solve_cg,
    "gmres": jaxopt.linear_solve.solve_gmres,
    "bicgstab": jaxopt.linear_solve.solve_bicgstab,
    "normal_cg": jaxopt.linear_solve.solve_normal_cg,
}
LINEAR_SOLVERS = tuple(_SOLVERS)


def check_linear_solver(name: str) -> str:
    """Validates a backward linear-solver name."""
    if name not in _SOLVERS:
        raise ValueError(
            f"linear_solver={name!r} is not known; use one of {LINEAR_SOLVERS} ('cg' suits the "
            "symmetric Hessian of a minimum; 'gmres'/'bicgstab' tolerate indefinite ones)."
        )
    return name


def make_linear_solve(
    name: str,
    *,
    tol: float,
    maxiter: int,
    ridge: float,
    check_rtol: float,
    on_failure: str,
) -> Callable:
    """Returns ``solve(matvec, b) -> x`` that also reports ``||A x - b|| / ||b||``.

    The residual costs one extra Hessian-vector product; it is sent to
    :func:`solvers.record_backward_residuals` and, above ``check_rtol``, warns or raises according
    to ``on_failure``, so an inaccurate implicit gradient is never silent.
    """
    base = _SOLVERS[check_linear_solver(name)]

    def solve(matvec, b):
        x = base(matvec, b, tol=tol, maxiter=maxiter, ridge=ridge or None)
        residual = jax.tree_util.tree_map(lambda ax, bb: ax - bb, matvec(x), b)
        if ridge:
            residual = jax.tree_util.tree_map(lambda r, xx: r + ridge * xx, residual, x)
        b_norm = global_norm(b)
        rel = global_norm(residual) / jax.numpy.where(b_norm > 0, b_norm, 1.0)
        report_backward(rel, check_rtol, on_failure)
        return x

    return solve
