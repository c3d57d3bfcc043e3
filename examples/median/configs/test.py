"""Tiny configuration for smoke tests and CI: all four aggregators, one size, a few steps on tiny nets."""

from __future__ import annotations

import dataclasses

from examples.median.configs import default


def get_config() -> default.Config:
    """Returns the smoke-test configuration (seconds of training; compiling dominates)."""
    return dataclasses.replace(
        default.get_config(),
        embedding_sizes=(4,),
        set_size=20,
        embed_width=8,
        embed_blocks=1,
        output_width=8,
        output_blocks=1,
        potential_hidden=(8,),
        ea_steps=2,
        implicit_max_steps=20,
        batch_size=8,
        num_train_steps=4,
        log_every=2,
        eval_every=4,
        checkpoint_every=2,
        progress_bar=False,
        num_eval_sets=40,
        eval_batch_size=20,
    )
