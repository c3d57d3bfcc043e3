"""Flax NNX version of :class:`eqagg.EquilibriumAggregation` (same functional core).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from eqagg.nnx import EquilibriumAggregation
  >>> ea = EquilibriumAggregation(1, 16, hidden=(32, 32), rngs=nnx.Rngs(0))
  >>> ea(jnp.ones((4, 10, 1))).shape
  (4, 16)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx
from jax import Array

from ._module import _inverse_softplus, _logit, diagnostics_of, equilibrium_aggregate
from ._potential import init_resnet_potential

__all__ = ["EquilibriumAggregation"]


class EquilibriumAggregation(nnx.Module):
    """Equilibrium Aggregation (paper eq. 3) as an NNX module.

    Same model and hyper-parameters as the Linen :class:`eqagg.EquilibriumAggregation`, plus
    ``in_features`` (NNX creates parameters eagerly). The last call's diagnostics (auxiliary loss of
    eq. 5, mean residual, max last update, converged fraction) are kept in ``self.diagnostics``, an
    ``nnx.Intermediate`` holding a dict of arrays (``ea.diagnostics.get_value()``); the full result is returned with
    ``return_result=True``.
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        hidden: Sequence[int] = (64, 64),
        potential_features: int = 1,
        steps: int = 5,
        max_steps: int = 1000,
        method: str = "unrolled",
        solver: str | None = None,
        scaling: str = "sublinear",
        step_size: float = 0.01,
        momentum: float = 0.5,
        regularizer: float = 1.0,
        learn_step_size: bool = True,
        learn_momentum: bool = True,
        options: dict | None = None,
        rngs: nnx.Rngs,
    ):
        self.features, self.steps, self.max_steps = features, steps, max_steps
        self.method, self.solver, self.scaling = method, solver, scaling
        self.options = options
        params = init_resnet_potential(
            rngs.params(), in_features, features, tuple(hidden), potential_features
        )
        self.potential = nnx.data({k: nnx.Param(v) for k, v in params.items()})
        step = jnp.asarray(_inverse_softplus(step_size), jnp.float32)
        mom = jnp.asarray(_logit(momentum), jnp.float32)
        self.raw_step_size = nnx.Param(step) if learn_step_size else nnx.Variable(step)
        self.raw_momentum = nnx.Param(mom) if learn_momentum else nnx.Variable(mom)
        self.raw_regularizer = nnx.Param(jnp.asarray(_inverse_softplus(regularizer), jnp.float32))
        self.diagnostics = nnx.Intermediate(None)

    def __call__(
        self,
        x: Array,
        mask: Array | None = None,
        *,
        segment_ids: Array | None = None,
        num_segments: int | None = None,
        return_result: bool = False,
    ):
        potential = {k: v[...] for k, v in self.potential.items()}
        raw = {
            "step_size": self.raw_step_size[...],
            "momentum": self.raw_momentum[...],
            "regularizer": self.raw_regularizer[...],
        }
        result = equilibrium_aggregate(
            self,
            potential,
            raw,
            jnp.asarray(x),
            mask=mask,
            segment_ids=segment_ids,
            num_segments=num_segments,
        )
        self.diagnostics.set_value(diagnostics_of(result))
        return (result.value, result) if return_result else result.value
