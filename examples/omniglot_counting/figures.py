"""Figures of the Omniglot counting example (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_LABELS = {"sum": "Sum (Deep Sets)", "attention": "Attention (4 heads)", "ea": "EA"}


def _label(aggregator: str) -> str:
    return _LABELS.get(aggregator, aggregator)


def plot_accuracy(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike
) -> Path:
    """Plots accuracy over training per aggregator, from each run's ``metrics.jsonl`` records.

    Left: the fixed train-sample sets (solid) and the training batches (faint, a running mean over
    each log window). Right: the fixed test sets (evaluation alphabets).

    Args:
      histories: aggregator -> its records (``examples.common.read_metrics``).
      path: the PNG to write.

    Returns:
      ``path``.
    """
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for i, (aggregator, records) in enumerate(histories.items()):
        color = f"C{i}"
        train = [r for r in records if r["split"] == "train" and "accuracy" in r]
        evals = [r for r in records if r["split"] == "eval"]
        if train:
            ax_train.plot(
                [r["step"] for r in train],
                [r["accuracy"] for r in train],
                color=color,
                alpha=0.3,
                lw=1,
            )
        if evals:
            steps = [r["step"] for r in evals]
            ax_train.plot(
                steps,
                [r["train_accuracy"] for r in evals],
                "o-",
                color=color,
                label=_label(aggregator),
            )
            ax_test.plot(
                steps,
                [r["test_accuracy"] for r in evals],
                "o-",
                color=color,
                label=_label(aggregator),
            )
    ax_train.set_title("train alphabets (faint: training batches)")
    ax_test.set_title("test: unseen alphabets")
    for ax in (ax_train, ax_test):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("count accuracy")
    ax_train.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_examples(
    images: np.ndarray,
    counts: np.ndarray,
    predictions: Mapping[str, Sequence[int]],
    path: str | os.PathLike,
) -> Path:
    """Draws example sets, each as a 2 x 8 mosaic, with the true count and each model's prediction.

    Args:
      images: ``[S, N, 28, 28, 1]`` (ink = 1).
      counts: ``[S]`` true numbers of distinct characters.
      predictions: aggregator -> ``[S]`` predicted counts.
      path: the PNG to write.

    Returns:
      ``path``.
    """
    images = np.asarray(images)[..., 0]
    num_sets, set_size = images.shape[:2]
    cols = 8 if set_size % 8 == 0 else set_size
    rows = set_size // cols
    grid_cols = 2
    grid_rows = -(-num_sets // grid_cols)
    fig, axes = plt.subplots(
        grid_rows,
        grid_cols,
        # 4.2 inches per mosaic; its height follows from the mosaic's aspect, plus a title line.
        figsize=(4.2 * grid_cols, (4.2 * rows / cols + 0.4) * grid_rows + 0.3),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for s in range(num_sets):
        mosaic = images[s].reshape(rows, cols, *images.shape[2:])
        mosaic = np.pad(mosaic, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=0.35)
        mosaic = mosaic.transpose(0, 2, 1, 3).reshape(rows * mosaic.shape[2], -1)
        ax = axes.flat[s]
        ax.imshow(1.0 - mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        guesses = ", ".join(f"{_short(a)} {int(p[s])}" for a, p in predictions.items())
        ax.set_title(f"true {int(counts[s])} | {guesses}", fontsize=8)
    fig.suptitle(
        "Test sets (unseen alphabets): true and predicted number of characters", fontsize=9
    )
    return _save(fig, path)


def _short(aggregator: str) -> str:
    return {"attention": "attn"}.get(aggregator, aggregator)


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
