"""The state a training run carries from step to step (and saves in checkpoints)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

PyTree = Any


class TrainState(struct.PyTreeNode):
    """Everything that changes during training; a pytree, so it can be jitted and checkpointed.

    Attributes:
      step: number of optimiser steps done so far (an int32 scalar array).
      params: the trainable parameters.
      model_state: non-trainable state updated by the forward pass, e.g. flax ``batch_stats``;
        ``{}`` when the model has none.
      opt_state: the optax optimiser state.
    """

    step: jax.Array
    params: PyTree
    model_state: PyTree
    opt_state: optax.OptState

    @classmethod
    def create(
        cls, params: PyTree, model_state: PyTree, optimizer: optax.GradientTransformation
    ) -> TrainState:
        """Returns the state at step 0.

        Args:
          params: initial trainable parameters.
          model_state: initial non-trainable state (``{}`` if none).
          optimizer: the optax transformation whose state is initialised from ``params``.

        Example:
          >>> import optax, jax.numpy as jnp
          >>> TrainState.create({"w": jnp.ones(3)}, {}, optax.sgd(0.1)).step
          Array(0, dtype=int32)
        """
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=optimizer.init(params),
        )
