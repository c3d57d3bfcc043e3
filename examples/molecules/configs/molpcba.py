"""The paper's MOLPCBA setting (section 5.3), for one GPU.

OGB's GCN/GIN at full size (5 layers, 300-d, dropout 0.5; 256 graphs per step as flax's
``ogbg_molpcba`` example rather than OGB's 32, to keep the accelerator busy), Equilibrium
Aggregation with 15 inner steps and a two-layer 300-d potential, ogbg-molpcba read through TFDS
(``tfds.data_source("ogbg_molpcba")``, prepared beforehand; see ``examples/molecules/README.md``).
The paper trained for 2M steps (Appendix E.2); 100k steps of 256 graphs are about 73 epochs.
"""

from __future__ import annotations

from . import Config


def get_config() -> Config:
    """The paper-scale configuration for ogbg-molpcba (mean average precision)."""
    return Config(
        dataset="ogbg_molpcba",
        model="gin",
        readout="ea",
        features=300,
        num_layers=5,
        dropout_rate=0.5,
        ea_steps=15,
        ea_hidden=(300, 300),
        batch_size=256,
        eval_batch_size=1024,
        num_train_steps=100_000,
        log_every=100,
        eval_every=5000,
        checkpoint_every=5000,
    )
