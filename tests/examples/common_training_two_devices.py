"""Run by test_common_training.py in a subprocess with 2 forced CPU devices; prints JSON.

Trains the toy problem for a few steps with ``fit`` on a 2-device data mesh (interrupted and resumed
from a checkpoint on the way) and by hand on a 1-device mesh, and tries ``fit`` with a batch that
does not split over 2 devices.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

import common_training_toy as toy  # noqa: E402

from examples.common import (  # noqa: E402
    TrainState,
    fit,
    make_data_mesh,
    make_train_step,
    replicate,
    shard_batch,
)

NUM_STEPS = 3
SEED = 0


class Killed(Exception):
    """Stands in for the process dying."""


def train_with_fit(mesh: jax.sharding.Mesh, workdir: str) -> list:
    """``fit`` for NUM_STEPS steps on ``mesh``, killed after step 1 and resumed from checkpoint 1."""

    def train(batch_fn):
        config = {"num_train_steps": NUM_STEPS, "checkpoint_every": 1, "seed": SEED}
        return fit(
            init_fn=toy.init_fn,
            loss_fn=toy.loss_fn,
            optimizer=toy.OPTIMIZER,
            batch_fn=batch_fn,
            config={**config, "progress_bar": False},
            workdir=workdir,
            mesh=mesh,
        )

    def killed_after_step_1(step: int):
        if step == 1:
            raise Killed
        return toy.batch_fn(step)

    try:
        train(killed_after_step_1)
    except Killed:
        pass
    state = train(toy.batch_fn).state
    return to_lists((state.params, state.model_state))


def train_by_hand(mesh: jax.sharding.Mesh) -> list:
    """The same NUM_STEPS steps with ``make_train_step``, keys derived as ``fit`` documents."""
    init_key, train_key = jax.random.split(jax.random.key(SEED))
    params, model_state = jax.jit(toy.init_fn)(init_key)
    state = replicate(TrainState.create(params, model_state, toy.OPTIMIZER), mesh)
    sums = replicate({"loss": np.float32(0), "mae": np.float32(0)}, mesh)
    step = make_train_step(toy.loss_fn, toy.OPTIMIZER, mesh)
    for t in range(NUM_STEPS):
        state, sums = step(
            state, sums, shard_batch(toy.batch_fn(t), mesh), replicate(train_key, mesh)
        )
    return to_lists((state.params, state.model_state))


def to_lists(tree) -> list:
    return [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(jax.device_get(tree))]


def odd_batch_error() -> str:
    """Returns the error of ``fit`` on the 2-device mesh with a batch of 5."""
    with tempfile.TemporaryDirectory() as workdir:
        try:
            fit(
                init_fn=toy.init_fn,
                loss_fn=toy.loss_fn,
                optimizer=toy.OPTIMIZER,
                batch_fn=lambda step: toy.make_batch(step, batch_size=5),
                config={"num_train_steps": 1, "progress_bar": False},
                workdir=workdir,
            )
        except ValueError as e:
            return str(e)
    return "no error"


def main() -> None:
    two, one = make_data_mesh(), make_data_mesh(jax.devices()[:1])
    batch = shard_batch(toy.batch_fn(0), two)
    with tempfile.TemporaryDirectory() as tmp:
        sharded = train_with_fit(two, tmp)
    out = {
        "num_devices": len(jax.devices()),
        "shard_rows": [shard.data.shape[0] for shard in batch["x"].addressable_shards],
        "sharded": sharded,
        "single": train_by_hand(one),
        "odd_batch_error": odd_batch_error(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
