"""A tiny regression task shared by the training-loop tests and their two-device subprocess.

A 2-layer MLP of width 8 with BatchNorm (so ``model_state`` is not empty) and Dropout (so the
per-step RNG matters) fits ``y = x @ W`` in float32. Everything is module level so that jitted
functions, which ``fit`` caches by identity, are compiled once per process.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

BATCH_SIZE = 16
NUM_FEATURES = 4
W_TRUE = np.linspace(0.25, 1.0, NUM_FEATURES, dtype=np.float32)
OPTIMIZER = optax.adam(3e-2)


class MLP(nn.Module):
    """Dense(width, no bias) -> BatchNorm -> relu -> Dropout -> Dense(1)."""

    width: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Dense(self.width, use_bias=False)(x)  # A bias before BatchNorm has zero gradient.
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
        return nn.Dense(1)(x)[:, 0]


MODEL = MLP()


def make_batch(step: int, batch_size: int = BATCH_SIZE) -> dict[str, np.ndarray]:
    """The batch of ``step``: a pure function of the step, as ``fit`` requires."""
    rng = np.random.default_rng([0, step])
    x = rng.normal(size=(batch_size, NUM_FEATURES)).astype(np.float32)
    return {"x": x, "y": x @ W_TRUE}


def batch_fn(step: int) -> dict[str, np.ndarray]:
    """``fit``'s batch function."""
    return make_batch(step)


def init_fn(rng: jax.Array):
    """Returns ``(params, model_state)``."""
    variables = MODEL.init(rng, jnp.zeros((1, NUM_FEATURES)), train=False)
    return variables["params"], {"batch_stats": variables["batch_stats"]}


def loss_fn(params, model_state, batch, rng):
    """Mean squared error, with the mean absolute error as an extra metric."""
    pred, new_model_state = MODEL.apply(
        {"params": params, **model_state},
        batch["x"],
        train=True,
        rngs={"dropout": rng},
        mutable=["batch_stats"],
    )
    error = pred - batch["y"]
    return jnp.mean(error**2), ({"mae": jnp.mean(jnp.abs(error))}, new_model_state)


EVAL_BATCH = make_batch(10**6, batch_size=256)


@jax.jit
def eval_fn(params, model_state):
    """Mean squared error on a fixed held-out batch."""
    pred = MODEL.apply({"params": params, **model_state}, EVAL_BATCH["x"], train=False)
    return {"mse": jnp.mean((pred - EVAL_BATCH["y"]) ** 2)}
