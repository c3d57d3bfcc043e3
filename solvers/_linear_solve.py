"""Backward linear solvers for implicit differentiation, with their residual reported."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._jaxopt import jaxopt
from ._norms import dot, global_norm
from ._report import report_backward

# The Hessian of E at a minimum is symmetric positive (semi-)definite, so CG is the default.
_SOLVERS: dict[str, Callable] = {
    "cg": jaxopt.linear_solve.solve_cg,
    "gmres": jaxopt.linear_solve.solve_gmres,
    "bicgstab": jaxopt.linear_solve.solve_bicgstab,
    "normal_cg": jaxopt.linear_solve.solve_normal_cg,
    # One CG over the whole batch, even for batched problems (kept to measure what per-example
    # CG gains; see benchmarks/README.md).
    "batch_cg": jaxopt.linear_solve.solve_cg,
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


def _per_example_dot(u, v):
    return dot(u, v, batched=True)


def _scale(alpha, tree):
    return jax.tree_util.tree_map(
        lambda a: jnp.reshape(alpha, (-1,) + (1,) * (a.ndim - 1)) * a, tree
    )


def _axpy(alpha, x, y):
    """``alpha * x + y`` with one ``alpha`` per example."""
    return jax.tree_util.tree_map(jnp.add, _scale(alpha, x), y)


def solve_cg_per_example(matvec, b, *, tol: float, maxiter: int, ridge: float | None = None):
    """Conjugate gradients run separately for every example along the leading axis.

    For a batch of independent problems the Hessian is block diagonal, one block per example. One
    CG over the whole batch converges at the pace of the worst-conditioned spectrum of all blocks
    together; here every block gets its own step lengths and stops at its own relative tolerance
    ``||r_b|| <= tol * ||b_b||``, so a block of ``n`` unknowns converges in about ``n`` matvecs.
    Each iteration costs one batched matvec (examples that have converged keep their solution).
    """

    def op(v):
        av = matvec(v)
        return _axpy(jnp.asarray(ridge), v, av) if ridge else av

    x0 = jax.tree_util.tree_map(jnp.zeros_like, b)
    rs0 = _per_example_dot(b, b)
    threshold = tol**2 * rs0

    def cond(carry):
        i, _, _, _, rs = carry
        return (i < maxiter) & jnp.any(rs > threshold)

    def body(carry):
        i, x, r, p, rs = carry
        ap = op(p)
        pap = _per_example_dot(p, ap)
        active = (rs > threshold) & (pap != 0)
        alpha = jnp.where(active, rs / jnp.where(pap != 0, pap, 1.0), 0.0)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        rs_new = _per_example_dot(r, r)
        beta = jnp.where(active, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        p = _axpy(beta, p, r)
        return i + 1, x, r, p, jnp.where(active, rs_new, rs)

    _, x, _, _, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), x0, b, b, rs0))
    return x


def make_linear_solve(
    name: str,
    *,
    tol: float,
    maxiter: int,
    ridge: float,
    check_rtol: float,
    on_failure: str,
    batched: bool = False,
) -> Callable:
    """Returns ``solve(matvec, b) -> x`` that also reports ``||A x - b|| / ||b||``.

    The residual costs one extra Hessian-vector product; it is sent to
    :func:`solvers.record_backward_residuals` and, above ``check_rtol``, warns or raises according
    to ``on_failure``, so an inaccurate implicit gradient is never silent. For ``batched`` problems
    (independent examples along the leading axis) ``"cg"`` runs per example
    (:func:`solve_cg_per_example`); the other solvers treat the batch as one system.
    """
    base = _SOLVERS[check_linear_solver(name)]
    if batched and name == "cg":
        base = solve_cg_per_example

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
