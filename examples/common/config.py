"""The training-loop settings every example shares, read from any example config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`examples.common.training.fit` (the model and data settings live elsewhere).

    Attributes:
      num_train_steps: total number of optimiser steps of the run (a resumed run counts the steps
        already done).
      log_every: write the mean of the training metrics over the last ``log_every`` steps.
      eval_every: call ``eval_fn`` every ``eval_every`` steps (and always after the last step).
      checkpoint_every: save a checkpoint every ``checkpoint_every`` steps (and after the last step).
      seed: seeds the initialisation and the per-step RNG ``fold_in(key, step)``.
      max_checkpoints_to_keep: how many of the newest checkpoints are kept on disk.
      progress_bar: show a tqdm bar; it is hidden anyway when stderr is not a terminal (CI).
    """

    num_train_steps: int
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    seed: int = 0
    max_checkpoints_to_keep: int = 3
    progress_bar: bool = True

    def __post_init__(self) -> None:
        for field in ("log_every", "eval_every", "checkpoint_every", "max_checkpoints_to_keep"):
            _check_int(field, getattr(self, field), minimum=1)
        _check_int("num_train_steps", self.num_train_steps, minimum=0)
        _check_int("seed", self.seed, minimum=None)

    @classmethod
    def from_config(cls, config: Any) -> TrainConfig:
        """Builds a ``TrainConfig`` from the matching fields of an example's config.

        Args:
          config: a ``TrainConfig`` (returned as is), a mapping, or any object with attributes
            (a frozen dataclass, ``types.SimpleNamespace``, ``ml_collections.ConfigDict``). Fields it
            lacks keep their defaults; other fields (model, data) are ignored.

        Returns:
          The training settings.

        Raises:
          ValueError: if ``num_train_steps`` is missing or a value is out of range.

        Example:
          >>> TrainConfig.from_config({"num_train_steps": 10, "learning_rate": 1e-3}).log_every
          100
        """
        if isinstance(config, cls):
            return config
        get = config.get if isinstance(config, Mapping) else lambda k, d: getattr(config, k, d)
        missing = object()
        values = {}
        for field in dataclasses.fields(cls):
            value = get(field.name, missing)
            if value is not missing:
                values[field.name] = value
        if "num_train_steps" not in values:
            raise ValueError(
                f"config has no 'num_train_steps' (got {type(config).__name__}); add "
                "num_train_steps=<int> to the example's configs/default.py."
            )
        return cls(**values)


def _check_int(name: str, value: Any, *, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"config.{name} must be an int, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"config.{name} must be >= {minimum}, got {value}; set it in the config.")
