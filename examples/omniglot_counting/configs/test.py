"""Tiny configuration for smoke tests: synthetic characters, a few steps, seconds on a CPU."""

from __future__ import annotations

import dataclasses

from examples.omniglot_counting.configs import default


def get_config() -> default.Config:
    """Returns the smoke-test configuration (``fake_data.py``'s characters, no real data needed)."""
    return dataclasses.replace(
        default.get_config(),
        fake_data=True,
        fake_num_classes=12,
        encoder_widths=(4, 4, 8),
        embedding_features=8,
        ea_steps=2,
        ea_hidden=(8,),
        mlp_features=(8,),
        batch_size=4,
        num_train_steps=4,
        log_every=2,
        eval_every=2,
        checkpoint_every=2,
        progress_bar=False,
        num_eval_sets=8,
        eval_batch_size=4,
        num_example_sets=2,
    )
