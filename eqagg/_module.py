"""``EquilibriumAggregation``: the paper's aggregator as a Flax Linen module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ._aggregate import AggregationResult, auxiliary_loss, solve_aggregation
from ._potential import init_resnet_potential, project_elements, resnet_potential

DIAGNOSTICS = "diagnostics"


def _inverse_softplus(v: float) -> float:
    return float(np.log(np.expm1(v)))


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def diagnostics_of(result: AggregationResult) -> dict[str, Array]:
    """The auxiliary loss (eq. 5) and the Figure 5 convergence statistics of one EA call."""
    return {
        "aux_loss": auxiliary_loss(result),
        "residual": jnp.mean(result.residual),
        "last_update": jnp.max(result.last_update),
        "converged_fraction": jnp.mean(result.converged.astype(jnp.float32)),
    }


def sow_diagnostics(module: nn.Module, result: AggregationResult) -> None:
    """Stores :func:`diagnostics_of` in the ``"diagnostics"`` collection."""
    for name, value in diagnostics_of(result).items():
        module.sow(DIAGNOSTICS, name, value)


def collect_auxiliary_loss(diagnostics: Any) -> Array:
    """Sums every ``aux_loss`` sown by EA layers in a ``"diagnostics"`` collection.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> ea = eqagg.EquilibriumAggregation(features=4, hidden=(8,))
      >>> x = jnp.ones((2, 5, 1))
      >>> variables = ea.init(jax.random.key(0), x)
      >>> y, state = ea.apply(variables, x, mutable=["diagnostics"])
      >>> float(eqagg.collect_auxiliary_loss(state["diagnostics"])) >= 0
      True
    """
    losses = [
        v
        for path, v in jax.tree_util.tree_leaves_with_path(diagnostics)
        if any(getattr(k, "key", None) == "aux_loss" for k in path)
    ]
    return sum((jnp.sum(v) for v in losses), jnp.zeros(()))


class EquilibriumAggregation(nn.Module):
    """Equilibrium Aggregation (paper eq. 3): each set's aggregate minimises a learned energy.

    ``y* = argmin_y  lambda ||y||^2 + s(N) sum_i F_theta(x_i, y)`` with ``F_theta`` the ResNet
    potential of Appendix C.1 (LayerNorm, tanh, sum-of-squares output; see
    :mod:`eqagg._potential`), ``s`` the set-size scaling of Appendix C.2, ``y0 = 0`` (C.3), and
    ``steps`` inner Nesterov steps (C.4) whose step size (softplus, > 0), momentum (sigmoid, in
    (0, 1)) and ``lambda`` (softplus, > 0) are learned. The element-only part of the potential's
    first layer is computed once per call, not once per inner step.

    Call convention (shared with every aggregator in :mod:`eqagg`): ``x`` one set ``[N, d]``, a
    padded batch ``[B, N, d]`` with optional ``mask [B, N]``, or ragged ``[T, d]`` with
    ``segment_ids``/``num_segments`` (jraph).

    The auxiliary loss (eq. 5) and the convergence statistics of Figure 5 (mean final gradient norm
    ``residual``, max-norm of the last update ``last_update``, ``converged_fraction``) are sown into
    the ``"diagnostics"`` collection: apply with ``mutable=["diagnostics"]`` and add
    ``aux_weight * collect_auxiliary_loss(state["diagnostics"])`` to the task loss. Or call with
    ``return_result=True`` for the full :class:`AggregationResult`.

    Attributes:
      features: latent size ``D`` of the aggregate.
      hidden: widths of the potential's hidden layers.
      potential_features: width of the output whose squares are summed (1 as in PyTorch Geometric).
      steps: inner steps of ``"unrolled"`` / ``"truncated"`` (paper: 5 to 15).
      max_steps: cap on inner steps of the tolerance-based methods (``"implicit"``, ``"one_step"``).
      method: ``"unrolled"`` (paper), ``"implicit"``, ``"truncated"``, ``"one_step"``.
      solver: forward iteration name (default Nesterov).
      scaling: ``"sublinear"`` (paper), ``"sum"`` or ``"mean"``.
      step_size, momentum, regularizer: initial values of the learned quantities. The defaults keep
        the inner solve stable at initialisation: the freshly initialised potential's Hessian in
        ``y`` reaches ~50-200 on sets of 100 scalars, so steps much above ``1 / 100`` diverge.
      learn_step_size, learn_momentum: learn them (only meaningful for unrolled / truncated).
      options: extra options for :func:`solve_aggregation` (e.g. ``{"tol": 1e-5}`` for implicit).

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> ea = eqagg.EquilibriumAggregation(features=16, hidden=(32, 32), steps=5)
      >>> x = jax.random.normal(jax.random.key(0), (8, 100, 1))      # 8 sets of 100 scalars
      >>> variables = ea.init(jax.random.key(1), x)
      >>> ea.apply(variables, x).shape
      (8, 16)
    """

    features: int
    hidden: Sequence[int] = (64, 64)
    potential_features: int = 1
    steps: int = 5
    max_steps: int = 1000
    method: str = "unrolled"
    solver: str | None = None
    scaling: str = "sublinear"
    step_size: float = 0.01
    momentum: float = 0.5
    regularizer: float = 1.0
    learn_step_size: bool = True
    learn_momentum: bool = True
    options: dict | None = None

    def _scalar(self, name: str, value: float, learn: bool) -> Array:
        if learn:
            return self.param(name, lambda _: jnp.asarray(value, jnp.float32))
        return jnp.asarray(value, jnp.float32)

    @nn.compact
    def __call__(
        self,
        x: Array,
        mask: Array | None = None,
        *,
        segment_ids: Array | None = None,
        num_segments: int | None = None,
        return_result: bool = False,
    ):
        x = jnp.asarray(x)
        potential = self.param(
            "potential",
            lambda key: init_resnet_potential(
                key, x.shape[-1], self.features, tuple(self.hidden), self.potential_features
            ),
        )
        raw = {
            "step_size": self._scalar(
                "raw_step_size", _inverse_softplus(self.step_size), self.learn_step_size
            ),
            "momentum": self._scalar("raw_momentum", _logit(self.momentum), self.learn_momentum),
            "regularizer": self.param(
                "raw_regularizer",
                lambda _: jnp.asarray(_inverse_softplus(self.regularizer), jnp.float32),
            ),
        }
        result = equilibrium_aggregate(
            self, potential, raw, x, mask=mask, segment_ids=segment_ids, num_segments=num_segments
        )
        sow_diagnostics(self, result)
        return (result.value, result) if return_result else result.value


def equilibrium_aggregate(
    config: Any,
    potential: dict[str, Array],
    raw: dict[str, Array],
    x: Array,
    *,
    mask: Array | None = None,
    segment_ids: Array | None = None,
    num_segments: int | None = None,
) -> AggregationResult:
    """The functional core shared by the Linen and NNX modules.

    Args:
      config: any object with the module's hyper-parameter attributes (``features``, ``steps``,
        ``max_steps``, ``method``, ``solver``, ``scaling``, ``options``).
      potential: the ResNet potential's parameters (:func:`init_resnet_potential`).
      raw: unconstrained ``step_size`` (softplus), ``momentum`` (sigmoid), ``regularizer``
        (softplus).
    """
    options = dict(config.options or {})
    tolerance_based = config.method in ("implicit", "one_step")
    options.setdefault("steps", config.max_steps if tolerance_based else config.steps)
    options.setdefault("step_size", jax.nn.softplus(raw["step_size"]))
    if (config.solver or "nesterov") == "nesterov":
        options.setdefault("momentum", jax.nn.sigmoid(raw["momentum"]))
    return solve_aggregation(
        resnet_potential,
        project_elements(potential, x),
        potential,
        mask=mask,
        segment_ids=segment_ids,
        num_segments=num_segments,
        features=config.features,
        regularizer=jax.nn.softplus(raw["regularizer"]),
        scaling=config.scaling,
        method=config.method,
        solver=config.solver,
        **options,
    )
