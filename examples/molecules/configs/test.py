"""A smoke run in seconds: a handful of tox21 molecules, a tiny model, a few steps."""

from __future__ import annotations

from . import Config


def get_config() -> Config:
    """The tiny configuration used by the end-to-end test."""
    return Config(
        dataset="tox21",
        max_graphs_per_split=48,
        model="gin",
        readout="sum",
        num_layers=2,
        features=8,
        ea_steps=2,
        ea_hidden=(8,),
        batch_size=16,
        eval_batch_size=32,
        num_train_steps=6,
        log_every=2,
        eval_every=3,
        checkpoint_every=3,
        progress_bar=False,
    )
