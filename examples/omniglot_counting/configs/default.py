"""Default configuration: all three aggregators in about 15 minutes on a 2-core CPU.

The paper's setup at a smaller scale: the same task (sets of 16 images, 1..10 distinct characters,
train on the background alphabets, test on the evaluation alphabets) and the same three aggregators
(sum, 4-head attention, EA with 10 inner steps), but a narrow encoder and a few hundred steps. See
``full.py`` for a GPU-sized run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of one run of :func:`examples.omniglot_counting.train.train_and_evaluate`.

    Attributes:
      aggregators: which of ``"sum"``, ``"attention"``, ``"ea"`` to train, one after the other, each
        in ``<workdir>/<aggregator>``.
      data_dir: the folder holding ``omniglot/`` (default ``$EQAGG_DATA_DIR``, else
        ``../shared/data``).
      source: ``"auto"`` (npz, else zip), ``"npz"``, ``"zip"`` or ``"tfds"``.
      fake_data: use the synthetic characters of ``fake_data.py`` instead of Omniglot (tests).
      fake_num_classes: characters per split of the synthetic data.
      set_size: images per set (16 in the paper).
      max_count: sets show ``1..max_count`` distinct characters; the model has ``max_count`` outputs.
      encoder_widths: channels of the encoder's three stride-2 residual blocks.
      embedding_features: size of each image's embedding and of the attention / EA aggregate.
      num_heads: heads of the attention aggregator.
      ea_steps: inner steps of EA (unrolled Nesterov).
      ea_hidden: hidden widths of EA's ResNet potential.
      mlp_features: hidden widths of the MLP between aggregate and logits.
      aux_weight: weight of EA's auxiliary loss (eq. 5), the mean squared norm of the energy's
        gradient over the inner steps (~2-20 at initialisation here, against a cross-entropy of
        log 10 = 2.3). 0.001: with 0.01, EA's energy went flat in our CPU runs (the auxiliary loss
        fell to ~0.01 while the cross-entropy stayed at log 10, i.e. the aggregate stopped
        depending on the set); with 0.001 the auxiliary loss stays ~1 and the model starts to
        learn. The paper swept this weight only on MOLPCBA.
      batch_size: sets per training step.
      learning_rate: Adam's step size.
      num_train_steps, log_every, eval_every, checkpoint_every, seed, progress_bar: the shared
        training loop's settings (``examples.common.TrainConfig``).
      num_eval_sets: size of the fixed test set (sets drawn from the evaluation alphabets) and of
        the fixed train-sample set (fresh sets drawn from the background alphabets).
      eval_seed: seed of both fixed sets (the training stream uses ``seed``).
      eval_batch_size: sets per forward pass during evaluation.
      num_example_sets: sets shown in the figure of example predictions.
    """

    aggregators: Sequence[str] = ("sum", "attention", "ea")
    data_dir: str | None = None
    source: str = "auto"
    fake_data: bool = False
    fake_num_classes: int = 30
    set_size: int = 16
    max_count: int = 10
    encoder_widths: Sequence[int] = (8, 16, 32)
    embedding_features: int = 64
    num_heads: int = 4
    ea_steps: int = 10
    ea_hidden: Sequence[int] = (64, 64)
    mlp_features: Sequence[int] = (64,)
    aux_weight: float = 0.001
    batch_size: int = 16
    learning_rate: float = 1e-3
    num_train_steps: int = 1000
    log_every: int = 50
    eval_every: int = 200
    checkpoint_every: int = 200
    seed: int = 0
    progress_bar: bool = True
    num_eval_sets: int = 512
    eval_seed: int = 1234
    eval_batch_size: int = 128
    num_example_sets: int = 6


def get_config() -> Config:
    """Returns the default (2-core CPU) configuration."""
    return Config()
