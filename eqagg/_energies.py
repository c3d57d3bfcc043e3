"""Energies: the scaled set energy of eq. 3/13 and the built-in potentials of Table 1 / Appendix B.

A per-element potential is ``F(x, y, params) -> scalar`` for one element ``x [d]`` and the aggregate
``y [D]``. The energy of set ``s`` with ``N_s`` real elements is

    E_s(y) = R(y) + s(N_s) * sum_{i in s} F(x_i, y, params)                         (eq. 3, 13)

with ``R(y) = lambda * ||y||^2`` (or any callable ``R(y) -> scalar``) and the set-size scaling ``s``:
``"sum"`` (1), ``"mean"`` (``1 / max(N, 1)``) or ``"sublinear"`` (``1 / sqrt(N + eps)``, the paper's
Appendix C.2 default: the energy still grows with ``N``, but sublinearly).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

SCALINGS = ("sublinear", "sum", "mean")
Potential = Callable[[Array, Array, Any], Array]
Regularizer = float | Callable[[Array], Array]


def check_scaling(scaling: str) -> str:
    """Validates a set-size scaling name."""
    if scaling not in SCALINGS:
        raise ValueError(
            f"scaling={scaling!r} is not known; use one of {SCALINGS} ('sublinear' = "
            "1/sqrt(N + eps), the paper's Appendix C.2)."
        )
    return scaling


def set_size_scale(counts: Array, scaling: str, eps: float) -> Array:
    """The factor ``s(N)`` multiplying the summed potentials of each set (eq. 13)."""
    if scaling == "sum":
        return jnp.ones_like(counts)
    if scaling == "mean":
        return 1.0 / jnp.maximum(counts, 1.0)
    return jax.lax.rsqrt(counts + eps)


def regularizer_value(regularizer: Regularizer, y: Array) -> Array:
    """``R(y)`` for one aggregate ``y [D]``: ``lambda * ||y||^2`` for a float ``lambda``."""
    if callable(regularizer):
        return regularizer(y)
    return regularizer * jnp.sum(jnp.square(y))


@dataclasses.dataclass(frozen=True)
class EnergySpec:
    """A potential with the regulariser, scaling and latent size it is meant to be used with.

    Passed as ``energy_fn`` to :func:`eqagg.solve_aggregation`, it supplies defaults for
    ``regularizer`` and ``scaling`` (explicit arguments still win), sets the latent size
    (``features``: ``None`` means the input dimension ``d``, or ``d + extra_features``) and maps the
    minimiser to the returned value with ``readout`` (e.g. attention's normalisation).

    Attributes:
      potential: ``F(x, y, params) -> scalar``.
      regularizer: ``lambda`` of ``lambda * ||y||^2``, or a callable ``R(y)``.
      scaling: ``"sum"``, ``"mean"`` or ``"sublinear"``.
      extra_features: latent size is ``d + extra_features`` when ``features`` is not given.
      readout: maps the minimiser ``y* [..., D]`` to the aggregate returned as ``value``.
      name: shown in reprs and error messages.
    """

    potential: Potential
    regularizer: Regularizer = 0.0
    scaling: str = "sum"
    extra_features: int = 0
    readout: Callable[[Array], Array] | None = None
    name: str = "custom"

    def __call__(self, x: Array, y: Array, params: Any = None) -> Array:
        return self.potential(x, y, params)


def mean_energy() -> EnergySpec:
    """Table 1, mean: ``F(x, y) = ||x - y||^2``, no regulariser -> ``y* = mean_i x_i``.

    Example:
      >>> import jax.numpy as jnp, eqagg
      >>> x = jnp.array([[0.0], [1.0], [5.0]])
      >>> r = eqagg.solve_aggregation(eqagg.mean_energy(), x, method="implicit")
      >>> bool(jnp.allclose(r.value, 2.0, atol=1e-4))
      True
    """
    return EnergySpec(lambda x, y, p: jnp.sum(jnp.square(x - y)), 0.0, "mean", name="mean")


def median_energy(delta: float = 1e-2) -> EnergySpec:
    """Table 1, median, per coordinate: ``F(x, y) = sum_k sqrt((x_k - y_k)^2 + delta^2) - delta``.

    A smoothed ``|x - y|`` (pseudo-Huber): its minimiser is the coordinate-wise median up to an error
    of order ``delta`` (exact as ``delta -> 0``), and it stays differentiable so the solve converges.
    Curvature is at most ``1/delta`` per element, so use a step size of about ``delta``.
    """

    def potential(x, y, p):
        return jnp.sum(jnp.sqrt(jnp.square(x - y) + delta**2) - delta)

    return EnergySpec(potential, 0.0, "mean", name="median")


def sum_energy() -> EnergySpec:
    """Table 1, sum: ``F(x, y) = -x . y`` with ``R(y) = ||y||^2 / 2`` -> ``y* = sum_i x_i``."""
    return EnergySpec(lambda x, y, p: -jnp.dot(x, y), 0.5, "sum", name="sum")


def max_energy(sharpness: float = 100.0, weight: float = 2.0) -> EnergySpec:
    """Table 1, max, per coordinate: a smoothed hinge with a linear prior.

    ``E(y) = sum_k y_k + weight * sum_i sum_k softplus(b (x_ik - y_k)) / b`` with ``b = sharpness``.
    Below the maximum the hinge terms pull ``y`` up with slope ``>= weight / 2 > 1``; above it the
    prior's slope 1 wins, so ``y*_k`` lies in ``[max_i x_ik, max_i x_ik + log(weight * N) / b]``.
    Curvature is at most ``weight * b * N / 4``: use a step size below its inverse.
    """
    if weight <= 1:
        raise ValueError(f"max_energy(weight={weight}) must exceed 1 so the hinge beats the prior.")

    def potential(x, y, p):
        return weight * jnp.sum(jax.nn.softplus(sharpness * (x - y))) / sharpness

    return EnergySpec(potential, jnp.sum, "sum", name="max")


def attention_energy() -> EnergySpec:
    """Appendix B: attention pooling with a learned query ``q`` (``params``) as an equilibrium.

    The aggregate is split as ``y = [u, v]`` (``u [d]``, ``v`` scalar); with
    ``F(x, y, q) = -exp(q . x) (x . u + v)`` and ``R(y) = ||y||^2 / 2`` the minimiser is
    ``u* = sum_i w_i x_i``, ``v* = sum_i w_i`` with ``w_i = exp(q . x_i)``, and the readout
    ``u* / v*`` is softmax attention ``sum_i softmax(q . x)_i x_i``.
    """

    def potential(x, y, q):
        return -jnp.exp(jnp.dot(q, x)) * (jnp.dot(x, y[:-1]) + y[-1])

    def readout(y):
        return y[..., :-1] / y[..., -1:]

    return EnergySpec(potential, 0.5, "sum", extra_features=1, readout=readout, name="attention")
