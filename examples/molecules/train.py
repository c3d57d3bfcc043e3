"""Training and evaluation of the molecule models with the shared loop (:func:`examples.common.fit`).

The task loss is OGB's: binary cross-entropy with logits, averaged over the labelled (graph, task)
entries of real graphs. With Equilibrium Aggregation anywhere in the model, the auxiliary loss of
eq. 5 (the mean squared energy gradient over the inner steps, summed over EA layers) is added with
weight ``config.aux_weight``. Every ``eval_every`` steps the model is scored on the validation and
test parts with OGB's metric (ROC-AUC for tox21, AP for pcba); as OGB's ``main_pyg.py`` does, the
reported test score is the one at the evaluation with the best validation score.

Batches: each device gets one padded ``jraph.GraphsTuple`` of ``batch_size / num_devices`` graphs
(:mod:`.input_pipeline`); ``batch_fn`` stacks them along a leading device axis (so ``fit`` can split
the batch over the ``"data"`` mesh) and :func:`merge_device_batches` joins them into one graph
batch inside the step. Batch ``k`` is a function of ``(seed, k)`` only, so runs resume exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax

import eqagg
from examples.common import count_params, fit

from . import input_pipeline, metrics, models
from .configs import Config
from .dataset import GraphDataset

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
SUMMARY_FILE = "summary.json"


def create_model(config: Config, num_tasks: int, pna_avg_log_degree: float | None = None):
    """Returns the :class:`~.models.MoleculeGNN` that ``config`` describes."""
    return models.MoleculeGNN(
        num_tasks=num_tasks,
        gnn_type=config.model,
        num_layers=config.num_layers,
        features=config.features,
        dropout_rate=config.dropout_rate,
        virtual_node=config.virtual_node,
        readout=config.readout,
        local_aggregation=config.local_aggregation,
        aggregators=models.AggregatorConfig(
            ea_steps=config.ea_steps,
            ea_hidden=tuple(config.ea_hidden),
            ea_method=config.ea_method,
            attention_heads=config.attention_heads,
            pna_avg_log_degree=pna_avg_log_degree,
        ),
    )


def masked_bce_with_logits(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean binary cross-entropy with logits over the entries where ``mask`` is True (0 if none).

    Example:
      >>> float(masked_bce_with_logits(jnp.zeros((2, 2)), jnp.ones((2, 2)),
      ...                              jnp.array([[True, False], [False, False]])))  # log 2
      0.6931471824645996
    """
    losses = optax.sigmoid_binary_cross_entropy(logits, labels)
    return jnp.sum(jnp.where(mask, losses, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def merge_device_batches(batch: input_pipeline.Batch) -> input_pipeline.Batch:
    """Joins a stack of ``k`` padded batches (leading axis ``k``) into one padded batch.

    Node indices of part ``i`` are shifted by ``i * n_node``; a batch without the leading axis is
    returned unchanged. Real graphs are then no longer all at the front: use ``graph_mask``.
    """
    g = batch.graphs
    if g.n_node.ndim == 1:
        return batch
    k, n_node = g.nodes.shape[:2]
    offsets = (jnp.arange(k, dtype=jnp.int32) * n_node)[:, None]

    def flat(x):
        return x.reshape((-1, *x.shape[2:]))

    graphs = jraph.GraphsTuple(
        nodes=flat(g.nodes),
        edges=flat(g.edges),
        senders=flat(g.senders + offsets),
        receivers=flat(g.receivers + offsets),
        n_node=flat(g.n_node),
        n_edge=flat(g.n_edge),
        globals=None,
    )
    return input_pipeline.Batch(
        graphs,
        flat(batch.labels),
        flat(batch.label_mask),
        flat(batch.graph_mask),
        flat(batch.graph_index),
    )


class TrainBatches:
    """``batch_fn`` for :func:`~examples.common.fit`: step -> this process's stacked device batches.

    Step ``t`` uses batches ``t * D + p * L + i`` (``i < L``) of the endless shuffled stream
    :func:`~.input_pipeline.repeat_batches`, with ``D`` devices in all and ``L`` on process ``p``;
    so each step is a function of ``(seed, t)`` only. Consecutive calls read the stream onwards;
    any other step restarts it there (planning, not building, the batches skipped).
    """

    def __init__(
        self,
        dataset: GraphDataset,
        indices: np.ndarray,
        budget: input_pipeline.PaddingBudget,
        *,
        seed: int,
        num_devices: int,
        local_devices: int,
        process_index: int = 0,
    ) -> None:
        self._args = (dataset, indices, budget)
        self._seed = seed
        self._per_step, self._local = num_devices, local_devices
        self._offset = process_index * local_devices
        self._stream: Iterator[input_pipeline.Batch] | None = None
        self._position = 0  # index of the stream's next batch

    def __call__(self, step: int) -> input_pipeline.Batch:
        first = step * self._per_step + self._offset
        if self._stream is None or not 0 <= first - self._position < self._per_step:
            self._stream = input_pipeline.repeat_batches(
                *self._args, seed=self._seed, start_step=first
            )
            self._position = first
        for _ in range(first - self._position):  # other processes' batches
            next(self._stream)
        parts = [next(self._stream) for _ in range(self._local)]
        self._position = first + self._local
        return jax.tree.map(lambda *xs: np.stack(xs), *parts)


def _split_indices(dataset: GraphDataset, limit: int | None) -> dict[str, np.ndarray]:
    parts = {part: dataset.split(part) for part in SPLITS}
    if limit is not None:
        parts = {part: idx[:limit] for part, idx in parts.items()}
    return parts


def _per_device_batch_size(batch_size: int, num_devices: int) -> int:
    if batch_size % num_devices:
        raise ValueError(
            f"config.batch_size={batch_size} is not a multiple of the {num_devices} devices; set "
            f"it to a multiple of {num_devices}."
        )
    return batch_size // num_devices


def make_evaluator(model, dataset: GraphDataset, parts: Mapping[str, np.ndarray], config: Config):
    """Returns ``eval_fn(params, model_state) -> {"valid_<metric>", "test_<metric>", losses}``.

    The evaluation batches are built once; every graph of the parts is scored once, with running
    batch-norm averages and no dropout.
    """
    metric = metrics.metric_for_dataset(dataset.name)
    union = np.concatenate([parts["valid"], parts["test"]])
    budget = input_pipeline.estimate_padding_budget(
        dataset, config.eval_batch_size, split=union, percentile=config.padding_percentile
    )
    batches = {
        part: list(input_pipeline.iterate_batches(dataset, parts[part], budget))
        for part in ("valid", "test")
    }

    @jax.jit
    def predict(params, model_state, batch):
        logits = model.apply(
            {"params": params, **model_state}, batch.graphs, batch.graph_mask, train=False
        )
        loss = masked_bce_with_logits(logits, batch.labels, batch.label_mask)
        return logits, loss * jnp.sum(batch.label_mask), jnp.sum(batch.label_mask)

    def eval_fn(params, model_state) -> dict[str, float]:
        results = {}
        for part, part_batches in batches.items():
            logits, labels, loss_sum, count = [], [], 0.0, 0
            for b in part_batches:
                out, batch_loss, batch_count = predict(params, model_state, b)
                real = b.graph_mask
                logits.append(np.asarray(out)[real])
                labels.append(np.where(b.label_mask, b.labels, np.nan)[real])
                loss_sum += float(batch_loss)
                count += int(batch_count)
            results[f"{part}_{metric}"] = _score(
                np.concatenate(labels), np.concatenate(logits), metric, part
            )
            results[f"{part}_loss"] = loss_sum / max(count, 1)
        return results

    return eval_fn


def _score(labels: np.ndarray, logits: np.ndarray, metric: str, part: str) -> float:
    """OGB's score, or NaN (with a warning) when no task of a tiny part has both classes."""
    try:
        return metrics.evaluate(labels, logits, metric).value
    except ValueError as e:
        if "No task has both" not in str(e):
            raise
        log.warning("%s: %s; logging NaN.", part, e)
        return float("nan")


def train_and_evaluate(
    config: Config, workdir: str | os.PathLike, *, dataset: GraphDataset | None = None
) -> dict[str, Any]:
    """Trains ``config``'s model, evaluating on valid and test; resumes from ``workdir``.

    Args:
      config: a :class:`~.configs.Config`.
      workdir: where ``metrics.jsonl``, checkpoints and ``summary.json`` go.
      dataset: the graphs to use instead of loading ``config.dataset`` (tests).

    Returns:
      The run's summary (also written to ``workdir/summary.json``): the test score at the best
      validation evaluation, that validation score and step, the final scores, the time per
      training step, the parameter count and the run's wall time.
    """
    start = time.perf_counter()
    if dataset is None:
        dataset = input_pipeline.load_dataset(config.dataset, config.data_dir)
    parts = _split_indices(dataset, config.max_graphs_per_split)
    num_devices, local_devices = jax.device_count(), jax.local_device_count()
    per_device = _per_device_batch_size(config.batch_size, num_devices)
    budget = input_pipeline.estimate_padding_budget(
        dataset, per_device, split=parts["train"], percentile=config.padding_percentile
    )
    delta = None
    if config.readout == "pna":  # PNA's degree statistic: log-sizes of the training graphs
        delta = eqagg.pna_degree_statistics(dataset.n_node[parts["train"]])
    model = create_model(config, dataset.num_tasks, delta)
    example = input_pipeline.make_batch(dataset, parts["train"][:1], budget)
    uses_ea = "ea" in (config.readout, config.local_aggregation)
    aux_weight = config.aux_weight if uses_ea else 0.0

    def init_fn(rng):
        variables = model.init(rng, example.graphs, example.graph_mask, train=False)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss_fn(params, model_state, batch, rng):
        batch = merge_device_batches(batch)
        logits, state = model.apply(
            {"params": params, **model_state},
            batch.graphs,
            batch.graph_mask,
            train=True,
            rngs={"dropout": rng},
            mutable=[eqagg.DIAGNOSTICS, "batch_stats"],
        )
        bce = masked_bce_with_logits(logits, batch.labels, batch.label_mask)
        aux = eqagg.collect_auxiliary_loss(state.get(eqagg.DIAGNOSTICS, {}))
        loss = bce + aux_weight * aux
        return loss, ({"bce": bce, "aux_loss": aux}, {"batch_stats": state["batch_stats"]})

    batch_fn = TrainBatches(
        dataset,
        parts["train"],
        budget,
        seed=config.seed,
        num_devices=num_devices,
        local_devices=local_devices,
        process_index=jax.process_index(),
    )
    result = fit(
        init_fn=init_fn,
        loss_fn=loss_fn,
        optimizer=optax.adam(config.learning_rate),
        batch_fn=batch_fn,
        eval_fn=make_evaluator(model, dataset, parts, config),
        config=config,
        workdir=workdir,
    )
    summary = summarize_run(
        result.history,
        metric=metrics.metric_for_dataset(dataset.name),
        config=config,
        num_params=count_params(result.state.params),
        wall_seconds=time.perf_counter() - start,
    )
    summary["padding_budget"] = budget._asdict()
    if jax.process_index() == 0:
        Path(workdir, SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    log.info("Run summary: %s", {k: v for k, v in summary.items() if k != "config"})
    return summary


def summarize_run(
    history: Sequence[Mapping[str, Any]],
    *,
    metric: str,
    config: Config,
    num_params: int,
    wall_seconds: float,
) -> dict[str, Any]:
    """Reduces a run's ``metrics.jsonl`` records to the numbers of the results table.

    The best evaluation is the first with the highest validation score (OGB's ``np.argmax`` over
    epochs; a NaN score, from a part too small to score, counts as the lowest). The time per step is the median over the logging windows after the first one (which
    includes compilation); a window that contains an evaluation counts it too, so ``eval_every``
    much larger than ``log_every`` keeps the median clean.
    """
    evals = [r for r in history if r["split"] == "eval"]
    if not evals:
        raise ValueError("The run has no evaluation records; set eval_every <= num_train_steps.")
    best = max(evals, key=lambda r: (np.nan_to_num(r[f"valid_{metric}"], nan=-np.inf), -r["step"]))
    rates = [r["steps_per_sec"] for r in history if r["split"] == "train"]
    rates = rates[1:] if len(rates) > 1 else rates
    return {
        "metric": metric,
        "best_step": best["step"],
        "valid": best[f"valid_{metric}"],
        "test": best[f"test_{metric}"],
        "final_valid": evals[-1][f"valid_{metric}"],
        "final_test": evals[-1][f"test_{metric}"],
        "seconds_per_step": float(1.0 / np.median(rates)) if rates else float("nan"),
        "num_params": num_params,
        "wall_seconds": wall_seconds,
        "num_train_steps": config.num_train_steps,
        "config": dataclasses.asdict(config),
    }


def read_summary(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """Returns the ``summary.json`` of a finished run, or ``None``."""
    path = Path(workdir, SUMMARY_FILE)
    return json.loads(path.read_text()) if path.exists() else None
