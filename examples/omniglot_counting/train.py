"""Training and evaluation of the Omniglot counting models: one run of :func:`fit` per aggregator.

``train_and_evaluate(config, workdir)`` trains each aggregator of ``config.aggregators`` in
``<workdir>/<aggregator>`` (metrics, TensorBoard, checkpoints), then writes ``<workdir>/results.md``
and the figures. Every run resumes from its checkpoints, and an aggregator whose run has finished
(``<workdir>/<aggregator>/summary.json``) is skipped, so a killed job restarted with the same
command carries on where it stopped.

Evaluation uses two fixed collections of sets, drawn once with ``config.eval_seed``:

* ``test``: sets from the evaluation alphabets (characters from alphabets never seen in training);
* ``train``: fresh sets from the background alphabets (the training characters, new combinations).

Both are drawn with the same seed, so they share the sequence of counts (the sampler draws the
counts first): train and test accuracy are measured on the same mix of counts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqagg
from examples.common import count_params, fit, read_metrics, write_markdown_table
from examples.omniglot_counting import fake_data, figures, models
from examples.omniglot_counting import input_pipeline as ip

_log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.md"
MIN_COUNT = 1  # Sets show MIN_COUNT..max_count distinct characters; class index = count - 1.


@dataclasses.dataclass(frozen=True)
class Data:
    """The images of both splits and the fixed evaluation sets.

    Attributes:
      train_images: background characters ``[classes, drawers, 28, 28]``.
      eval_sets: ``{"train": batch, "test": batch}``, each ``{"images": [S, N, 28, 28, 1],
        "count": [S]}``.
    """

    train_images: np.ndarray
    eval_sets: Mapping[str, Mapping[str, np.ndarray]]


def load_data(config: Any) -> Data:
    """Loads both splits (or makes the synthetic ones) and draws the fixed evaluation sets."""
    if config.fake_data:
        background = fake_data.fake_split(config.fake_num_classes, seed=0)
        evaluation = fake_data.fake_split(
            config.fake_num_classes, seed=1, first_class_id=ip.EVALUATION_CLASS_OFFSET
        )
    else:
        background = ip.load_omniglot("background", source=config.source, data_dir=config.data_dir)
        evaluation = ip.load_omniglot("evaluation", source=config.source, data_dir=config.data_dir)

    def fixed_sets(images: np.ndarray) -> dict[str, np.ndarray]:
        return _counting_sets(config, images, config.num_eval_sets, config.eval_seed).batch(0)

    return Data(
        train_images=background.images,
        eval_sets={"train": fixed_sets(background.images), "test": fixed_sets(evaluation.images)},
    )


def _counting_sets(config: Any, images: np.ndarray, batch_size: int, seed: int) -> ip.CountingSets:
    return ip.CountingSets(
        images,
        batch_size=batch_size,
        seed=seed,
        set_size=config.set_size,
        min_count=MIN_COUNT,
        max_count=config.max_count,
    )


def make_model(config: Any, aggregator: str) -> models.SetCounter:
    """The set model of ``config`` with the given aggregator."""
    return models.SetCounter(
        aggregator=aggregator,
        encoder_widths=tuple(config.encoder_widths),
        embedding_features=config.embedding_features,
        num_heads=config.num_heads,
        ea_steps=config.ea_steps,
        ea_hidden=tuple(config.ea_hidden),
        mlp_features=tuple(config.mlp_features),
        num_classes=config.max_count - MIN_COUNT + 1,
    )


def init_params(model: models.SetCounter, rng: jax.Array, example: Any) -> Any:
    """The model's initial parameters, every leaf with a fixed (not weak) dtype.

    A weakly typed leaf (``EquilibriumAggregation``'s ``raw_regularizer`` was one before commit
    31aba84) becomes a plain float32 after the first Adam update, and the jitted train step would
    compile a second time; this keeps one compile whatever the modules do.
    """
    params = model.init(rng, example)["params"]
    return jax.tree.map(lambda p: jnp.asarray(p, p.dtype), params)


def make_loss_fn(model: models.SetCounter, aux_weight: float) -> Callable:
    """Returns the ``fit`` loss: cross-entropy over counts, plus EA's auxiliary loss (eq. 5).

    The auxiliary term is ``aux_weight * collect_auxiliary_loss(diagnostics)``; it is zero for the
    aggregators that sow nothing (sum, attention).
    """

    def loss_fn(params, model_state, batch, rng):
        del rng  # The model is deterministic (no dropout).
        logits, state = model.apply(
            {"params": params}, batch["images"], mutable=[eqagg.DIAGNOSTICS]
        )
        labels = batch["count"] - MIN_COUNT
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        aux = eqagg.collect_auxiliary_loss(state.get(eqagg.DIAGNOSTICS, {}))
        metrics = {
            "cross_entropy": cross_entropy,
            "accuracy": jnp.mean(logits.argmax(-1) == labels),
            "aux_loss": aux,
        }
        return cross_entropy + aux_weight * aux, (metrics, model_state)

    return loss_fn


def make_predict_fn(model: models.SetCounter, batch_size: int) -> Callable:
    """Returns ``predict(params, images [S, N, ...]) -> logits [S, C]`` (numpy), in chunks.

    One jitted forward pass on ``batch_size`` sets; the last chunk is padded with copies of the
    first set, so nothing is compiled twice.
    """
    forward = jax.jit(lambda params, images: model.apply({"params": params}, images))

    def predict(params, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pad = batch_size - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(images[:1], pad, axis=0)])
            out.append(np.asarray(forward(params, chunk))[: batch_size - pad])
        return np.concatenate(out)

    return predict


def make_eval_fn(predict: Callable, eval_sets: Mapping[str, Mapping[str, np.ndarray]]) -> Callable:
    """Returns ``eval_fn(params, model_state)``: accuracy and cross-entropy on each fixed set."""

    def eval_fn(params, model_state) -> dict[str, float]:
        del model_state
        metrics = {}
        for split, sets in eval_sets.items():
            logits = predict(params, sets["images"])
            labels = sets["count"] - MIN_COUNT
            loss = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), labels)
            metrics[f"{split}_accuracy"] = float(np.mean(logits.argmax(-1) == labels))
            metrics[f"{split}_loss"] = float(jnp.mean(loss))
        return metrics

    return eval_fn


def train_aggregator(
    config: Any, aggregator: str, data: Data, workdir: str | os.PathLike
) -> dict[str, Any]:
    """Trains (or resumes) one aggregator's model in ``workdir`` and returns its summary.

    The summary (also written to ``workdir/summary.json``) holds the final evaluation, the number
    of parameters, the training time and the predicted counts of the first test sets (for the
    figure).
    """
    workdir = Path(workdir)
    model = make_model(config, aggregator)
    example = data.eval_sets["test"]["images"][:1]
    predict = make_predict_fn(model, config.eval_batch_size)
    sets = _counting_sets(config, data.train_images, config.batch_size, config.seed)

    def init_fn(rng):
        return init_params(model, rng, example), {}

    start = time.perf_counter()
    result = fit(
        init_fn=init_fn,
        loss_fn=make_loss_fn(model, config.aux_weight),
        optimizer=optax.adam(config.learning_rate),
        batch_fn=sets.batch,
        eval_fn=make_eval_fn(predict, data.eval_sets),
        config=config,
        workdir=workdir,
    )
    params = result.state.params
    shown = data.eval_sets["test"]["images"][: config.num_example_sets]
    summary = {
        "aggregator": aggregator,
        "steps": int(result.state.step),
        "params": count_params(params),
        **{k: v for k, v in (result.latest("eval") or {}).items() if k not in ("step", "split")},
        "train_seconds": training_seconds(read_metrics(workdir)),
        "last_call_seconds": time.perf_counter() - start,
        "example_predictions": (predict(params, shown).argmax(-1) + MIN_COUNT).tolist(),
    }
    _atomic_write_json(workdir / SUMMARY_FILE, summary)
    return summary


def training_seconds(history: list[Mapping[str, Any]]) -> float:
    """Wall time of the training steps, from the ``steps_per_sec`` of each logged window.

    Counts compilation (it happens in the first window of each process) but not evaluation or
    checkpointing; it survives resumes, as ``metrics.jsonl`` does.
    """
    total, previous = 0.0, 0
    for record in history:
        if record["split"] == "train":
            step = record["step"]
            if record.get("steps_per_sec"):
                total += (step - previous) / record["steps_per_sec"]
            previous = step
    return total


def _atomic_write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _finished(summary_path: Path, config: Any) -> dict[str, Any] | None:
    """The stored summary of a run that reached ``num_train_steps``, else ``None``."""
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    return summary if summary.get("steps") == config.num_train_steps else None


def train_and_evaluate(config: Any, workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Trains every aggregator of ``config``, then writes ``results.md`` and the figures.

    Args:
      config: a ``configs.default.Config`` (or any object with its fields).
      workdir: the output folder; ``<workdir>/<aggregator>`` holds each run.

    Returns:
      One summary per aggregator (see :func:`train_aggregator`).

    Raises:
      ValueError: when ``config.aggregators`` names an unknown aggregator.
    """
    unknown = [a for a in config.aggregators if a not in models.AGGREGATORS]
    if unknown or not config.aggregators:
        raise ValueError(
            f"config.aggregators={tuple(config.aggregators)!r}: choose one or more of "
            f"{models.AGGREGATORS}."
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = load_data(config)
    summaries = []
    for aggregator in config.aggregators:
        summary = _finished(workdir / aggregator / SUMMARY_FILE, config)
        if summary is None:
            _log.info("Training %s in %s.", aggregator, workdir / aggregator)
            summary = train_aggregator(config, aggregator, data, workdir / aggregator)
        else:
            _log.info("Skipping %s: its run is finished.", aggregator)
        summaries.append(summary)
    write_results(workdir, summaries)
    figures.plot_accuracy(
        {s["aggregator"]: read_metrics(workdir / s["aggregator"]) for s in summaries},
        workdir / "accuracy.png",
    )
    test_sets = data.eval_sets["test"]
    figures.plot_examples(
        test_sets["images"][: config.num_example_sets],
        test_sets["count"][: config.num_example_sets],
        {s["aggregator"]: s["example_predictions"] for s in summaries},
        workdir / "examples.png",
    )
    return summaries


def write_results(workdir: Path, summaries: list[Mapping[str, Any]]) -> Path:
    """Writes ``<workdir>/results.md``: accuracies, parameters and training time per aggregator."""
    rows = [
        {
            "aggregator": s["aggregator"],
            "train accuracy": s.get("train_accuracy"),
            "test accuracy": s.get("test_accuracy"),
            "train loss": s.get("train_loss"),
            "test loss": s.get("test_loss"),
            "params": s["params"],
            "steps": s["steps"],
            "train time (s)": round(s["train_seconds"]),
        }
        for s in summaries
    ]
    return write_markdown_table(workdir / RESULTS_FILE, rows, float_format="{:.3f}")
