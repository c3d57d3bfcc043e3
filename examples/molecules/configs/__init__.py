"""Configurations of the molecules example: ``default`` (tox21 on a CPU), ``test`` (seconds),
``molpcba`` (the paper's scale, for a GPU).

Each module has ``get_config() -> Config``. :class:`Config` is a frozen dataclass (this project does
not depend on ``ml_collections``); change fields with ``dataclasses.replace`` (``main.py`` does this
for its flags). The training-loop fields are those of :class:`examples.common.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import importlib

NAMES = ("default", "test", "molpcba")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run of :func:`examples.molecules.train.train_and_evaluate` reads.

    Attributes:
      dataset: ``tox21`` (or another MoleculeNet name) or ``ogbg_molpcba`` (TFDS).
      data_dir: the data root (``None``: ``$EQAGG_DATA_DIR``; TFDS's default for pcba).
      max_graphs_per_split: keep only the first graphs of each part (tiny smoke runs); ``None``
        keeps all.
      model: ``"gcn"`` or ``"gin"`` (OGB's reference models).
      readout: ``"sum"``, ``"mean"``, ``"attention"``, ``"pna"`` or ``"ea"``.
      local_aggregation: ``"sum"`` (OGB) or ``"ea"`` over the incoming edge messages of each node.
      virtual_node: OGB's virtual node (the paper's Table uses the plain models).
      num_layers, features, dropout_rate: OGB's 5, 300, 0.5.
      ea_steps, ea_hidden, ea_method: Equilibrium Aggregation's inner steps, potential widths and
        differentiation (see :class:`eqagg.EquilibriumAggregation`).
      attention_heads: heads of the attention readout (the paper's MHA baseline: 4).
      aux_weight: weight of EA's auxiliary loss (eq. 5, the mean squared energy gradient over the
        inner steps, summed over EA layers) added to the task loss; 0 without EA.
      learning_rate: Adam's step size (OGB: 1e-3).
      batch_size: graphs per optimiser step over all devices (OGB: 32).
      eval_batch_size: graphs per evaluation batch.
      padding_percentile: of random batches' node/edge totals, sets the padding budget.
      num_train_steps, log_every, eval_every, checkpoint_every, seed, max_checkpoints_to_keep,
        progress_bar: the shared training loop's settings.
    """

    dataset: str = "tox21"
    data_dir: str | None = None
    max_graphs_per_split: int | None = None
    model: str = "gin"
    readout: str = "sum"
    local_aggregation: str = "sum"
    virtual_node: bool = False
    num_layers: int = 5
    features: int = 300
    dropout_rate: float = 0.5
    ea_steps: int = 15
    ea_hidden: tuple[int, ...] = (300, 300)
    ea_method: str = "unrolled"
    attention_heads: int = 4
    aux_weight: float = 0.01
    learning_rate: float = 1e-3
    batch_size: int = 32
    eval_batch_size: int = 256
    padding_percentile: float = 99.0
    num_train_steps: int = 100_000
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    seed: int = 0
    max_checkpoints_to_keep: int = 2
    progress_bar: bool = True


def get_config(name: str = "default") -> Config:
    """Returns the configuration ``name`` (one of :data:`NAMES`).

    Example:
      >>> get_config("test").dataset
      'tox21'
    """
    if name not in NAMES:
        raise ValueError(f"Unknown config {name!r}; choose one of {NAMES}.")
    return importlib.import_module(f"{__name__}.{name}").get_config()
