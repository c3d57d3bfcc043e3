"""tox21 on a CPU: OGB's GCN/GIN, narrower and much shorter, so that the README's 12-run sweep
(GCN, GIN x sum, EA x 3 seeds) takes about half an hour on a shared 2-core CPU.

Measured there (see ``examples/molecules/README.md``): a step of 64 graphs takes 0.03 s (GCN) or
0.08 s (GIN) with the sum readout and 0.30 s or 0.36 s with EA, whose first compilation takes a few
minutes; the sweep took 27 min. Hence 64-d instead of 300-d node embeddings, 4 EA inner steps
instead of 15 (a two-layer 64-d potential), and 500 steps of 64 graphs: about 5 epochs of the
6,257 training molecules, where OGB trains 100. Everything else is OGB's: 5 layers, batch norm,
dropout 0.5, Adam 1e-3, no virtual node.
"""

from __future__ import annotations

from . import Config


def get_config() -> Config:
    """The CPU configuration for tox21."""
    return Config(
        dataset="tox21",
        model="gin",
        readout="sum",
        features=64,
        ea_steps=4,
        ea_hidden=(64, 64),
        batch_size=64,
        eval_batch_size=256,
        num_train_steps=500,
        log_every=25,  # eval_every / log_every = 4: most timing windows hold no evaluation
        eval_every=100,
        checkpoint_every=500,
    )
