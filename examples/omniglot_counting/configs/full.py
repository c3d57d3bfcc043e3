"""Paper-scale configuration for a GPU: a wider encoder, 128-d embeddings, many more steps."""

from __future__ import annotations

import dataclasses

from examples.omniglot_counting.configs import default


def get_config() -> default.Config:
    """Returns the paper-scale configuration (sized for one GPU; hours on a CPU)."""
    return dataclasses.replace(
        default.get_config(),
        encoder_widths=(32, 64, 128),
        embedding_features=128,
        ea_hidden=(128, 128),
        mlp_features=(128,),
        batch_size=32,
        learning_rate=3e-4,
        num_train_steps=50_000,
        log_every=100,
        eval_every=2_000,
        checkpoint_every=2_000,
        num_eval_sets=5_000,
        eval_batch_size=500,
    )
