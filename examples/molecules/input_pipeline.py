"""Batches of molecule graphs padded to one fixed size, so a jitted step compiles once.

Graphs are packed greedily, in a (seeded, per-epoch) shuffled order, into a
``jraph.GraphsTuple`` until the next graph would overflow a :class:`PaddingBudget` of nodes, edges
and graphs; ``jraph.pad_with_graphs`` then pads it to exactly that budget (one padding graph holds
the spare nodes and edges, empty graphs fill the rest). Every batch therefore has the same shapes,
and every graph of the split appears exactly once per epoch.

The budget comes from the data, as in flax's ``ogbg_molpcba`` example (which sizes
``jraph.dynamically_batch`` from the mean graph size): :func:`estimate_padding_budget` draws random
batches of ``batch_size`` graphs and takes a high percentile of their total nodes and edges, so nearly
every batch holds ``batch_size`` graphs and little is padding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import NamedTuple

import jraph
import numpy as np
from jax.typing import ArrayLike

from . import dataset as dataset_lib

log = logging.getLogger(__name__)


class PaddingBudget(NamedTuple):
    """Sizes every padded batch has: nodes, (directed) edges and graphs, padding included."""

    n_node: int
    n_edge: int
    n_graph: int


class Batch(NamedTuple):
    """One padded batch (a pytree: pass it straight to a jitted step).

    Attributes:
      graphs: ``jraph.GraphsTuple`` with ``nodes`` ``int32[n_node, 9]``, ``edges``
        ``int32[n_edge, 3]``, ``senders``/``receivers`` ``int32[n_edge]``, ``n_node``/``n_edge``
        ``int32[n_graph]`` and ``globals=None``.
      labels: ``float32[n_graph, num_tasks]``; 0 where missing or padding.
      label_mask: ``bool[n_graph, num_tasks]``; True where a real graph has a label.
      graph_mask: ``bool[n_graph]``; True for real graphs (they come first).
      graph_index: ``int32[n_graph]``; each real graph's index in the dataset, -1 for padding.
    """

    graphs: jraph.GraphsTuple
    labels: np.ndarray
    label_mask: np.ndarray
    graph_mask: np.ndarray
    graph_index: np.ndarray


def load_dataset(
    name: str = "tox21", data_dir: str | os.PathLike | None = None, **kwargs
) -> dataset_lib.GraphDataset:
    """Loads a molecule dataset by name: ``ogbg_molpcba`` from TFDS, any other from MoleculeNet CSVs.

    Args:
      name: ``tox21`` (default), ``toxcast``, ``hiv``, ``muv``, ``sider``, ``clintox``, ``bbbp``,
        ``bace`` (``ogbg-mol`` prefixes allowed), or ``ogbg_molpcba``/``pcba``.
      data_dir: the ``EQAGG_DATA_DIR`` root for MoleculeNet; TFDS's data dir for pcba.
      **kwargs: passed to :func:`~.dataset.load_moleculenet` or
        :func:`~.tfds_source.load_ogbg_molpcba` (``cache``, ``cache_dir``, ...).
    """
    if name.lower().replace("-", "_").removeprefix("ogbg_mol") == "pcba":
        from .tfds_source import load_ogbg_molpcba  # lazy: pulls in tensorflow_datasets

        return load_ogbg_molpcba(data_dir, **kwargs)
    return dataset_lib.load_moleculenet(name, data_dir, **kwargs)


def _round_up(x: float, multiple: int) -> int:
    return int(multiple * np.ceil(x / multiple))


def estimate_padding_budget(
    dataset: dataset_lib.GraphDataset,
    batch_size: int,
    *,
    split: str | ArrayLike = "train",
    percentile: float = 99.0,
    num_samples: int = 2000,
    multiple: int = 64,
    seed: int = 0,
) -> PaddingBudget:
    """Chooses a padding budget for batches of ``batch_size`` graphs from the data's statistics.

    ``n_node`` and ``n_edge`` are the ``percentile`` of the total nodes and edges of
    ``num_samples`` random batches of ``batch_size`` graphs, at least the largest single graph
    (plus the one node the padding graph needs), rounded up to ``multiple``. ``n_graph`` is
    ``batch_size + 1`` (one padding graph). A batch that would overflow is closed early, so with the
    99th percentile about 1% of batches hold fewer than ``batch_size`` graphs.

    Args:
      dataset: the graphs.
      batch_size: graphs per batch (before padding); at least 1.
      split: a part name or graph indices to take the statistics from.
      percentile: of the batch totals, in (0, 100].
      num_samples: random batches drawn.
      multiple: round node and edge counts up to this (64 suits accelerators).
      seed: of the random batches (the budget is deterministic).

    Example:
      >>> ds = load_dataset("tox21")  # doctest: +SKIP
      >>> estimate_padding_budget(ds, 128)  # doctest: +SKIP
      PaddingBudget(n_node=2432, n_edge=4992, n_graph=129)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100]; got {percentile}.")
    indices = _indices(dataset, split)
    n_node, n_edge = dataset.n_node[indices], dataset.n_edge[indices]
    draws = np.random.default_rng(seed).integers(0, len(indices), size=(num_samples, batch_size))
    nodes = max(np.percentile(n_node[draws].sum(1), percentile), n_node.max()) + 1
    edges = max(np.percentile(n_edge[draws].sum(1), percentile), n_edge.max())
    budget = PaddingBudget(_round_up(nodes, multiple), _round_up(edges, multiple), batch_size + 1)
    log.info(
        "%s: nodes/graph mean %.1f p99 %d max %d; edges/graph mean %.1f max %d -> %s",
        dataset.name, n_node.mean(), np.percentile(n_node, 99), n_node.max(), n_edge.mean(),
        n_edge.max(), budget,
    )  # fmt: skip
    return budget


def _indices(dataset: dataset_lib.GraphDataset, split: str | ArrayLike) -> np.ndarray:
    indices = dataset.split(split) if isinstance(split, str) else np.asarray(split, np.int64)
    if indices.ndim != 1 or len(indices) == 0:
        raise ValueError(
            f"split must name a non-empty part or be a 1-D array of graph indices; got {split!r}."
        )
    return indices


def _check_budget(
    dataset: dataset_lib.GraphDataset, indices: np.ndarray, budget: PaddingBudget
) -> None:
    if budget.n_graph < 2:
        raise ValueError(
            f"budget.n_graph must be >= 2 (one real graph, one padding graph); got {budget}."
        )
    too_big = (dataset.n_node[indices] >= budget.n_node) | (dataset.n_edge[indices] > budget.n_edge)
    if too_big.any():
        g = int(indices[np.flatnonzero(too_big)[0]])
        raise ValueError(
            f"Graph {g} ({dataset.n_node[g]} nodes, {dataset.n_edge[g]} edges) does not fit the "
            f"budget {budget} (a batch needs one spare node); use estimate_padding_budget."
        )


def plan_batches(
    dataset: dataset_lib.GraphDataset,
    split: str | ArrayLike,
    budget: PaddingBudget,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
) -> list[np.ndarray]:
    """Returns the graph indices of each batch of one epoch (no arrays are built).

    The order is ``split`` as given, or with ``shuffle`` a permutation drawn from
    ``np.random.default_rng([seed, epoch])``: the same ``(seed, epoch)`` gives the same batches.
    """
    indices = _indices(dataset, split)
    _check_budget(dataset, indices, budget)
    if shuffle:
        indices = indices[np.random.default_rng([seed, epoch]).permutation(len(indices))]
    max_nodes, max_edges, max_graphs = budget.n_node - 1, budget.n_edge, budget.n_graph - 1
    batches, start, nodes, edges = [], 0, 0, 0
    for pos, (nn, ne) in enumerate(
        zip(dataset.n_node[indices].tolist(), dataset.n_edge[indices].tolist(), strict=True)
    ):
        if nodes + nn > max_nodes or edges + ne > max_edges or pos - start == max_graphs:
            batches.append(indices[start:pos])
            start, nodes, edges = pos, 0, 0
        nodes += nn
        edges += ne
    batches.append(indices[start:])
    return batches


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each start ``s`` and count ``c``."""
    shift = np.repeat(starts - np.cumsum(counts) + counts, counts)
    return np.arange(int(counts.sum()), dtype=np.int64) + shift


def make_batch(
    dataset: dataset_lib.GraphDataset, graph_ids: ArrayLike, budget: PaddingBudget
) -> Batch:
    """Builds the padded :class:`Batch` of the graphs ``graph_ids`` (in that order).

    Raises:
      RuntimeError: from ``jraph.pad_with_graphs`` if the graphs do not fit ``budget``.
    """
    ids = np.asarray(graph_ids, np.int64)
    n_node, n_edge = dataset.n_node[ids], dataset.n_edge[ids]
    node_rows = _ranges(dataset.node_offsets[ids], n_node)
    edge_rows = _ranges(dataset.edge_offsets[ids], n_edge)
    first_node = np.repeat(np.cumsum(n_node) - n_node, n_edge).astype(np.int32)
    graphs = jraph.GraphsTuple(
        nodes=dataset.node_feat[node_rows],
        edges=dataset.edge_feat[edge_rows],
        senders=dataset.senders[edge_rows] + first_node,
        receivers=dataset.receivers[edge_rows] + first_node,
        n_node=n_node.astype(np.int32),
        n_edge=n_edge.astype(np.int32),
        globals=None,
    )
    graphs = jraph.pad_with_graphs(graphs, budget.n_node, budget.n_edge, budget.n_graph)
    labels = np.full((budget.n_graph, dataset.num_tasks), np.nan, np.float32)
    labels[: len(ids)] = dataset.labels[ids]
    label_mask = ~np.isnan(labels)
    graph_index = np.full(budget.n_graph, -1, np.int32)
    graph_index[: len(ids)] = ids
    return Batch(
        graphs=graphs,
        labels=np.where(label_mask, labels, 0.0).astype(np.float32),
        label_mask=label_mask,
        graph_mask=graph_index >= 0,
        graph_index=graph_index,
    )


def iterate_batches(
    dataset: dataset_lib.GraphDataset,
    split: str | ArrayLike,
    budget: PaddingBudget,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
) -> Iterator[Batch]:
    """Yields the padded batches of one epoch over ``split`` (see :func:`plan_batches`).

    Example:
      >>> ds = load_dataset("tox21")  # doctest: +SKIP
      >>> budget = estimate_padding_budget(ds, 128)  # doctest: +SKIP
      >>> for batch in iterate_batches(ds, "train", budget, shuffle=True, seed=0, epoch=3):  # doctest: +SKIP
      ...     state = train_step(state, batch)
    """
    for ids in plan_batches(dataset, split, budget, shuffle=shuffle, seed=seed, epoch=epoch):
        yield make_batch(dataset, ids, budget)


def repeat_batches(
    dataset: dataset_lib.GraphDataset,
    split: str | ArrayLike,
    budget: PaddingBudget,
    *,
    seed: int = 0,
    start_step: int = 0,
) -> Iterator[Batch]:
    """Yields shuffled training batches forever, epoch after epoch, starting at batch ``start_step``.

    Batch ``k`` depends only on ``(seed, k)``, so a run resumed at step ``k`` sees the same batches
    as an uninterrupted one (skipped batches are planned, not built).
    """
    step, epoch = 0, 0
    while True:
        plan = plan_batches(dataset, split, budget, shuffle=True, seed=seed, epoch=epoch)
        if step + len(plan) <= start_step:
            step += len(plan)
        else:
            for ids in plan:
                if step >= start_step:
                    yield make_batch(dataset, ids, budget)
                step += 1
        epoch += 1
