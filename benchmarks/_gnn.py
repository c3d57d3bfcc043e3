"""The tox21 GCN of the molecules example with a sum or an EA readout: cost of the readout in a
whole model (the paper's Appendix E.2 measures EA-2/5/10 at 1.42x/1.84x/2.86x of sum on MOLPCBA).

The batch is 64 real tox21 molecules when ``$EQAGG_DATA_DIR`` holds MoleculeNet's tox21 CSV (see
``examples/molecules``), else 64 generated molecule-sized graphs (random atom/bond categories, a
ring plus chords, 10-40 atoms); the result says which. The model is the example's OGB GCN (5
layers, batch norm, dropout) at the example's CPU width (64) or OGB's (300); the train step is
forward + backward of the masked BCE loss (gradients only, no optimizer update), jitted whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class GNNWorkload:
    name: str = "tox21_gcn"
    model: str = "gcn"
    features: int = 64
    num_layers: int = 5
    batch_size: int = 64
    ea_hidden: tuple[int, ...] = (64, 64)


def tiny(w: GNNWorkload) -> GNNWorkload:
    return dataclasses.replace(w, features=8, num_layers=2, batch_size=4, ea_hidden=(8,))


def _generated_batch(batch_size: int, seed: int = 0):
    """Molecule-shaped random graphs as an example ``Batch`` (no RDKit, no data files)."""
    import jraph

    from examples.molecules import input_pipeline
    from examples.molecules.features import get_atom_feature_dims, get_bond_feature_dims

    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 41, size=batch_size)
    nodes, edges, senders, receivers = [], [], [], []
    offset = 0
    for n in sizes:
        ring = [(i, (i + 1) % n) for i in range(n)]
        chords = [tuple(rng.choice(n, 2, replace=False)) for _ in range(n // 5)]
        pairs = ring + chords
        for a, b in pairs:  # directed both ways, as in the example
            senders += [offset + a, offset + b]
            receivers += [offset + b, offset + a]
        nodes.append(np.stack([rng.integers(0, d, n) for d in get_atom_feature_dims()], 1))
        edges.append(
            np.stack([rng.integers(0, d, 2 * len(pairs)) for d in get_bond_feature_dims()], 1)
        )
        offset += n
    n_edge = np.array([e.shape[0] for e in edges], np.int32)
    graphs = jraph.GraphsTuple(
        nodes=np.concatenate(nodes).astype(np.int32),
        edges=np.concatenate(edges).astype(np.int32),
        senders=np.asarray(senders, np.int32),
        receivers=np.asarray(receivers, np.int32),
        n_node=sizes.astype(np.int32),
        n_edge=n_edge,
        globals=None,
    )
    budget_nodes = int(64 * np.ceil((sizes.sum() + 1) / 64))
    budget_edges = int(64 * np.ceil((n_edge.sum() + 1) / 64))
    graphs = jraph.pad_with_graphs(graphs, budget_nodes, budget_edges, batch_size + 1)
    labels = rng.integers(0, 2, size=(batch_size + 1, 12)).astype(np.float32)
    mask = np.ones_like(labels, bool)
    mask[-1] = False
    graph_mask = np.arange(batch_size + 1) < batch_size
    return input_pipeline.Batch(
        graphs, labels * mask, mask, graph_mask, np.where(graph_mask, 0, -1).astype(np.int32)
    )


def make_batch(w: GNNWorkload, data_dir: str | None) -> tuple[Any, str]:
    """A padded batch of ``w.batch_size`` tox21 molecules, or generated ones without the data."""
    from examples.molecules import input_pipeline

    if data_dir is not None:
        try:
            dataset = input_pipeline.load_dataset("tox21", data_dir)
        except FileNotFoundError:
            dataset = None
        if dataset is not None:
            budget = input_pipeline.estimate_padding_budget(dataset, w.batch_size)
            ids = np.arange(w.batch_size)
            source = f"the first {w.batch_size} tox21 molecules"
            return input_pipeline.make_batch(dataset, ids, budget), source
    return _generated_batch(w.batch_size), "generated molecule-sized graphs"


def make_model(w: GNNWorkload, readout: str, ea_options: dict | None = None):
    from examples.molecules import models

    return models.MoleculeGNN(
        num_tasks=12,
        gnn_type=w.model,
        num_layers=w.num_layers,
        features=w.features,
        readout=readout,
        aggregators=models.AggregatorConfig(
            ea_steps=(ea_options or {}).get("steps", 5), ea_hidden=tuple(w.ea_hidden)
        ),
    )


def grad_fn(model):
    """``(params, batch_stats, batch) -> grads`` of the example's masked BCE loss."""
    from examples.molecules.train import masked_bce_with_logits

    def loss(params, batch_stats, batch):
        logits, _ = model.apply(
            {"params": params, "batch_stats": batch_stats},
            batch.graphs,
            batch.graph_mask,
            train=True,
            rngs={"dropout": jax.random.key(0)},
            mutable=["batch_stats", "diagnostics"],
        )
        return masked_bce_with_logits(logits, batch.labels, batch.label_mask)

    return jax.grad(loss)


def init(model, batch):
    variables = model.init(jax.random.key(0), batch.graphs, batch.graph_mask, train=False)
    return variables["params"], variables["batch_stats"]


def as_device(batch):
    return jax.tree_util.tree_map(jnp.asarray, batch)
