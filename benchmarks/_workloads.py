"""The benchmark workloads: the paper's three set encoders at their shapes, as train-step losses.

Each workload is an element encoder (shared by every aggregator, so cost ratios compare the
aggregator alone), an aggregator (sum pooling or EA with a given method) and a linear head with an
MSE loss. Shapes follow the paper: the median encoder (128 sets x 100 scalars, latent 16), an
Omniglot-sized batch of sets of 16 image embeddings, and a molecule readout over ragged graphs with
300-d node embeddings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import eqagg


@dataclasses.dataclass(frozen=True)
class Workload:
    """Shapes and inner-solver settings of one benchmark problem."""

    name: str
    num_sets: int
    set_size: int  # elements per set (mean size for ragged sets)
    in_features: int
    encoder: Sequence[int]  # element MLP before aggregation ([] = none)
    latent: int
    hidden: Sequence[int]
    ragged: bool
    step_size: float  # Nesterov settings under which the inner solve converges
    momentum: float
    anderson_step_size: float = 0.02  # the gradient step of per-set Anderson's fixed-point map


WORKLOADS = {
    "median": Workload("median", 128, 100, 1, (), 16, (64, 64), False, 0.005, 0.9),
    "omniglot": Workload("omniglot", 64, 16, 64, (), 64, (64, 64), False, 0.005, 0.9),
    "molecules": Workload("molecules", 128, 26, 300, (300,), 128, (128, 128), True, 0.005, 0.9),
}


def tiny(w: Workload) -> Workload:
    """A smoke-test version of a workload (seconds on a CPU)."""
    return dataclasses.replace(
        w,
        num_sets=8,
        set_size=6,
        in_features=min(w.in_features, 8),
        encoder=tuple(min(e, 8) for e in w.encoder),
        latent=4,
        hidden=(8,),
    )


def make_batch(w: Workload, seed: int = 0, dtype=np.float32) -> dict[str, Any]:
    """Inputs and targets; ragged workloads get a jraph-style segment layout with varied sizes."""
    rng = np.random.default_rng(seed)
    if w.ragged:
        sizes = rng.integers(max(1, w.set_size // 2), int(w.set_size * 1.5) + 1, size=w.num_sets)
        x = rng.normal(size=(int(sizes.sum()), w.in_features)).astype(dtype)
        ids = np.repeat(np.arange(w.num_sets), sizes).astype(np.int32)
        batch = {"x": x, "segment_ids": ids}
    else:
        batch = {"x": rng.normal(size=(w.num_sets, w.set_size, w.in_features)).astype(dtype)}
    batch["target"] = rng.normal(size=(w.num_sets, 1)).astype(dtype)
    return jax.tree_util.tree_map(jnp.asarray, batch)


class SetModel(nn.Module):
    """Element encoder -> aggregator -> linear head."""

    workload: Workload
    aggregator: str  # "sum" or "ea"
    ea_options: dict | None = None

    @nn.compact
    def __call__(self, x, segment_ids=None):
        w = self.workload
        for width in w.encoder:
            x = nn.relu(nn.Dense(width)(x))
        kwargs = {}
        if segment_ids is not None:
            kwargs = dict(segment_ids=segment_ids, num_segments=w.num_sets)
        if self.aggregator == "sum":  # Deep Sets: a linear rho to the same latent width
            y = nn.Dense(w.latent)(eqagg.SumAggregation()(x, **kwargs))
        else:
            ea = eqagg.EquilibriumAggregation(
                features=w.latent,
                hidden=tuple(w.hidden),
                step_size=w.step_size,
                momentum=w.momentum,
                **(self.ea_options or {}),
            )
            y, result = ea(x, **kwargs, return_result=True)
            self.sow("stats", "result", result)
        return nn.Dense(1)(y)


def make_loss(model: SetModel):
    """``loss(params, batch) -> (loss, AggregationResult | None)``."""

    def loss(params, batch):
        pred, state = model.apply(
            {"params": params}, batch["x"], batch.get("segment_ids"), mutable=["stats"]
        )
        result = state.get("stats", {}).get("result", (None,))[0]
        return jnp.mean((pred - batch["target"]) ** 2), result

    return loss


def init_params(w: Workload, batch, aggregator: str = "ea", seed: int = 1):
    """Parameters of the model with ``aggregator`` ("ea" or "sum")."""
    model = SetModel(w, aggregator)
    return model.init(jax.random.key(seed), batch["x"], batch.get("segment_ids"))["params"]
