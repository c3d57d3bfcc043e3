"""Runs a grid of (model, readout, seed) and writes ``results.md``: our numbers beside OGB's and the
paper's.

Each run trains in ``<workdir>/<dataset>_<model>_<readout>[_local-ea]/seed<k>`` (a finished run,
one with a ``summary.json`` for the same number of steps, is not run again; an interrupted one
resumes from its checkpoint). ``results.md`` summarises every run found under ``workdir``, so
sweeps run at different times into one workdir end up in one table.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from examples.common import markdown_table

from . import train
from .configs import Config

log = logging.getLogger(__name__)

RESULTS_FILE = "results.md"
SWEEP_LOG = "sweeps.jsonl"

# OGB's reference GCN / GIN (300-d, 5 layers, dropout 0.5, batch 32, 100 epochs, 10 seeds) on
# ogbg-moltox21, test and validation ROC-AUC, as reported by OGB (Hu et al. 2020) and cited since.
OGB_TOX21 = (
    {"model": "GCN", "readout": "mean", "test": "0.7529 ± 0.0069", "valid": "0.7951 ± 0.0095"},
    {"model": "GIN", "readout": "mean", "test": "0.7491 ± 0.0051", "valid": "0.7881 ± 0.0083"},
)

# The paper's Table (section 5.3): ogbg-molpcba test mean average precision, OGB's GCN / GIN
# (300-d), only the global readout varies; EA with 15 inner steps (from NOTES.md).
PAPER_MOLPCBA = (
    {"model": "GCN", "sum": 0.203, "attention (MHA)": 0.229, "pna": 0.209, "ea": 0.252},
    {"model": "GIN", "sum": 0.232, "attention (MHA)": 0.234, "pna": 0.244, "ea": 0.246},
    {"model": "(not stated)", "ea (local + global)": 0.258},
)


def run_name(config: Config) -> str:
    """``<dataset>_<model>_<readout>[_local-ea]``: the folder of a (model, readout) cell."""
    local = "_local-ea" if config.local_aggregation == "ea" else ""
    return f"{config.dataset}_{config.model}_{config.readout}{local}"


def run_sweep(
    base: Config,
    workdir: str | os.PathLike,
    *,
    models: Sequence[str],
    readouts: Sequence[str],
    seeds: Sequence[int],
) -> list[dict[str, Any]]:
    """Trains every (model, readout, seed) of the grid on ``base`` and writes ``results.md``.

    Returns:
      The summaries of the runs of this grid (see :func:`~.train.train_and_evaluate`).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start, load_before = time.perf_counter(), os.getloadavg()
    summaries = []
    for model, readout, seed in itertools.product(models, readouts, seeds):
        config = dataclasses.replace(base, model=model, readout=readout, seed=seed)
        run_dir = workdir / run_name(config) / f"seed{seed}"
        summary = train.read_summary(run_dir)
        if summary is None or summary["num_train_steps"] != config.num_train_steps:
            log.info("Training %s seed %d in %s.", run_name(config), seed, run_dir)
            summary = train.train_and_evaluate(config, run_dir)
        summaries.append(summary)
    record = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "grid": {
            "models": list(models),
            "readouts": list(readouts),
            "local_aggregation": base.local_aggregation,
            "seeds": list(seeds),
            "steps": base.num_train_steps,
        },
        "config": dataclasses.asdict(base),
        "wall_seconds": time.perf_counter() - start,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
    }
    with (workdir / SWEEP_LOG).open("a") as f:
        f.write(json.dumps(record) + "\n")
    path = write_results(workdir)
    log.info("Sweep took %.0f s; results in %s.", record["wall_seconds"], path)
    return summaries


def collect(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Groups every ``summary.json`` under ``workdir`` by run cell: mean and std over seeds."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(workdir).glob("*/seed*/" + train.SUMMARY_FILE)):
        cells.setdefault(path.parent.parent.name, []).append(json.loads(path.read_text()))
    rows = []
    for runs in cells.values():
        config = runs[0]["config"]
        test, valid = (np.array([r[k] for r in runs], float) for k in ("test", "valid"))
        local = " + EA local" if config["local_aggregation"] == "ea" else ""
        rows.append(
            {
                "dataset": config["dataset"],
                "model": config["model"].upper(),
                "readout": config["readout"] + local,
                "seeds": len(runs),
                f"test {runs[0]['metric']}": _mean_std(test),
                f"valid {runs[0]['metric']}": _mean_std(valid),
                "ms / step": 1000 * float(np.median([r["seconds_per_step"] for r in runs])),
                "params": runs[0]["num_params"],
                "steps": config["num_train_steps"],
                "min / run": float(np.mean([r["wall_seconds"] for r in runs])) / 60,
            }
        )
    return rows


def _mean_std(values: np.ndarray) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def write_results(workdir: str | os.PathLike) -> Path:
    """Writes ``workdir/results.md``: our table, the sweep's wall time and load, the references."""
    workdir = Path(workdir)
    rows = collect(workdir)
    sweeps = [json.loads(line) for line in (workdir / SWEEP_LOG).read_text().splitlines()]
    lines = [
        "# Results",
        "",
        "Test score at the evaluation with the best validation score (OGB's protocol), mean ± std "
        "over seeds (sample std); `ms / step` is the median time of a training step after "
        "compilation; `min / run` includes compilation, evaluation and checkpoints.",
        "",
        markdown_table(rows, float_format="{:.1f}") if rows else "(no finished runs)\n",
        "Sweeps (wall time, 1/5/15-min load average before and after, CPUs):",
        "",
    ]
    for s in sweeps:
        lines.append(
            f"- {s['time']}: {s['grid']} in {s['wall_seconds'] / 60:.1f} min; load "
            f"{_load(s['load_average_before'])} -> {_load(s['load_average_after'])} on "
            f"{s['cpu_count']} CPUs ({s['machine']})"
        )
    lines += [
        "",
        "## References (not re-run here)",
        "",
        "OGB's GCN / GIN on ogbg-moltox21 (300-d, 5 layers, 100 epochs, mean readout, 10 seeds):",
        "",
        markdown_table(list(OGB_TOX21)),
        "The paper's Table, ogbg-molpcba test mean average precision (300-d GCN / GIN, EA with 15 "
        "inner steps):",
        "",
        markdown_table(list(PAPER_MOLPCBA), float_format="{:.3f}"),
    ]
    path = workdir / RESULTS_FILE
    path.write_text("\n".join(lines))
    return path


def _load(load: Sequence[float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)
