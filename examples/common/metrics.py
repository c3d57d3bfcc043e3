"""Metrics of a run: a JSON-lines file (``metrics.jsonl``) and TensorBoard summaries (``tb/``).

Each logged step is one JSON object per line: ``{"step": 100, "split": "train", "loss": 0.3, ...,
"steps_per_sec": 51.2}``. On resume from a checkpoint at step ``s`` the records after ``s`` (written
by the interrupted run, and about to be recomputed) are dropped, so the file of a resumed run equals
that of an uninterrupted one apart from :data:`TIMING_KEYS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
TIMING_KEYS = ("steps_per_sec",)
"""Record fields that depend on wall-clock time, not on the computation."""


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a ``metrics.jsonl`` file; a torn last line (process killed mid-write) is skipped.

    Args:
      path: the file, or the workdir that holds it.

    Returns:
      The records in file order; ``[]`` if the file does not exist.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsWriter:
    """Appends metrics to ``workdir/metrics.jsonl`` and to TensorBoard events in ``workdir/tb``.

    Only process 0 writes files (multi-host); the others keep an empty history.

    Args:
      workdir: the run's directory (created if needed).
      resume_step: the step the run restarts from (0 for a fresh run); records with a larger step are
        removed from the file and TensorBoard is told to discard its events after it.
    """

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int = 0) -> None:
        self._enabled = jax.process_index() == 0
        self._path = Path(workdir) / METRICS_FILE
        self._history: list[dict[str, Any]] = []
        self._file = None
        self._tb = None
        if self._enabled:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._history = [r for r in read_metrics(self._path) if r["step"] <= resume_step]
            _atomic_write(self._path, "".join(_dumps(r) for r in self._history))
            self._file = self._path.open("a")
            self._tb = _summary_writer(Path(workdir) / TENSORBOARD_DIR, purge_step=resume_step + 1)

    @property
    def history(self) -> list[dict[str, Any]]:
        """All records of the run so far, including those kept from before a resume."""
        return list(self._history)

    def write(
        self, step: int, split: str, metrics: Mapping[str, Any], **extra: float
    ) -> dict[str, Any]:
        """Logs scalar ``metrics`` (and ``extra`` fields such as ``steps_per_sec``) at ``step``.

        Args:
          step: the number of optimiser steps done.
          split: e.g. ``"train"`` or ``"eval"``; TensorBoard tags are ``"<split>/<name>"``.
          metrics: name -> scalar.
          **extra: more scalar fields, e.g. timings listed in :data:`TIMING_KEYS`.

        Returns:
          The record written.

        Raises:
          ValueError: if a metric is called ``step`` or ``split``, or is not a scalar.
        """
        values = {**metrics, **extra}
        for name in ("step", "split"):
            if name in values:
                raise ValueError(f"metric name {name!r} is reserved; rename that metric.")
        record = {
            "step": int(step),
            "split": split,
            **{k: _scalar(k, v) for k, v in values.items()},
        }
        if self._enabled:
            self._history.append(record)
            self._file.write(_dumps(record))
            self._file.flush()
            for name in values:
                self._tb.add_scalar(f"{split}/{name}", record[name], int(step))
        return record

    def flush(self) -> None:
        """Forces everything written so far to disk (called before each checkpoint)."""
        if self._enabled:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the files."""
        if self._enabled and self._file is not None:
            self.flush()
            self._file.close()
            self._tb.close()
            self._file = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _scalar(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"metric {name!r} must be a scalar, got {value!r}; reduce it (e.g. jnp.mean) first."
        ) from None


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _summary_writer(logdir: Path, purge_step: int) -> Any:
    from tensorboardX import SummaryWriter  # An `examples` extra; imported only when writing.

    return SummaryWriter(str(logdir), purge_step=purge_step)
