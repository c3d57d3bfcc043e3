"""Paper-scale configuration for one GPU: wider networks, bigger batches, a wider sweep, 200k steps.

The paper trains for 10 million steps and averages 5 seeds; 200k steps per run x 24 runs is already
a day-scale job on one GPU (EA costs a few times a sum model per step). Raise ``num_train_steps``
and run several ``seed`` values in separate workdirs to get closer to the paper's protocol.
"""

from __future__ import annotations

import dataclasses

from examples.median.configs import default


def get_config() -> default.Config:
    """Returns the paper-scale configuration (sized for one GPU; days on a CPU)."""
    return dataclasses.replace(
        default.get_config(),
        embedding_sizes=(4, 8, 16, 32, 64, 128),
        embed_width=128,
        embed_blocks=2,
        output_width=128,
        output_blocks=2,
        potential_hidden=(128, 128),
        implicit_max_steps=500,
        implicit_tol=1e-4,
        batch_size=128,
        learning_rate=1e-3,
        num_train_steps=200_000,
        log_every=500,
        eval_every=10_000,
        checkpoint_every=10_000,
        max_checkpoints_to_keep=2,
        num_eval_sets=80_000,
        eval_batch_size=2_000,
    )
