"""Training and evaluation of the median regressors: one run of :func:`fit` per (aggregator, size).

``train_and_evaluate(config, workdir)`` sweeps ``config.aggregators`` x ``config.embedding_sizes``.
Each run trains in ``<workdir>/runs/<aggregator>_d<size>`` (metrics, TensorBoard, checkpoints) and
ends by writing ``result.json`` there. A killed job restarted with the same command skips the runs
that have a ``result.json`` and resumes the interrupted one from its last checkpoint. At the end it
writes ``<workdir>/results.json``, ``<workdir>/results.md`` (also printed) and
``<workdir>/mse_vs_embedding.png`` (the paper's Figure 3).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqagg
import solvers
from examples.common import count_params, fit, markdown_table, read_metrics
from examples.median import input_pipeline as ip
from examples.median import models

_log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
RESULTS_JSON, RESULTS_MD, FIGURE = "results.json", "results.md", "mse_vs_embedding.png"
# Settings that may change between a killed job and its restart; every other setting is fixed by the
# runs already in the workdir (their checkpoints and data depend on it).
_LOOP_FIELDS = {
    "aggregators",
    "embedding_sizes",
    "num_train_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "max_checkpoints_to_keep",
    "progress_bar",
}


def config_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-able dict (sequences become lists)."""
    if dataclasses.is_dataclass(config):
        values = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        values = dict(config)
    else:
        values = dict(vars(config))
    return {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in values.items()}


def check_config(config: Any) -> None:
    """Raises a ``ValueError`` that names the setting when the sweep cannot run as configured."""
    unknown = [a for a in config.aggregators if a not in models.AGGREGATORS]
    if unknown or not config.aggregators:
        raise ValueError(
            f"config.aggregators={tuple(config.aggregators)!r}: choose one or more of "
            f"{models.AGGREGATORS}."
        )
    sizes = tuple(config.embedding_sizes)
    if not sizes or any(not isinstance(d, int) or d < 1 for d in sizes):
        raise ValueError(f"config.embedding_sizes={sizes!r} must be positive ints, e.g. (4, 8).")
    if "attention" in config.aggregators and any(d % config.num_heads for d in sizes):
        raise ValueError(
            f"config.embedding_sizes={sizes!r}: attention needs multiples of num_heads="
            f"{config.num_heads}; drop the others or change num_heads."
        )
    if config.num_eval_sets % config.eval_batch_size:
        raise ValueError(
            f"config.eval_batch_size={config.eval_batch_size} must divide config.num_eval_sets="
            f"{config.num_eval_sets}."
        )


def make_model(config: Any, aggregator: str, embedding_size: int) -> models.MedianRegressor:
    """The regressor of ``config`` with the given aggregator and embedding size."""
    return models.MedianRegressor(
        aggregator=aggregator,
        embedding_size=embedding_size,
        embed_width=config.embed_width,
        embed_blocks=config.embed_blocks,
        output_width=config.output_width,
        output_blocks=config.output_blocks,
        num_heads=config.num_heads,
        potential_hidden=tuple(config.potential_hidden),
        ea_steps=config.ea_steps,
        implicit_max_steps=config.implicit_max_steps,
        implicit_tol=config.implicit_tol,
        implicit_step_size=config.implicit_step_size,
        implicit_momentum=config.implicit_momentum,
        implicit_regularizer=config.implicit_regularizer,
        implicit_ridge=config.implicit_ridge,
    )


def aux_weight(config: Any, aggregator: str) -> float:
    """The weight of the eq. 5 auxiliary loss for ``aggregator`` (unused by sum and attention)."""
    return config.implicit_aux_weight if aggregator == "ea_implicit" else config.aux_weight


# The factories below are cached so that equal arguments give the *same* function object: `fit`
# caches its compiled step by the identity of the loss function and optimizer, so a second run of the
# same model in one process (a test, a resume) does not compile again.


@functools.cache
def make_optimizer(
    learning_rate: float, grad_clip_norm: float, num_train_steps: int
) -> optax.GradientTransformation:
    """Adam with global-norm gradient clipping and a cosine decay to 10% of ``learning_rate``."""
    schedule = optax.cosine_decay_schedule(learning_rate, max(num_train_steps, 1), alpha=0.1)
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), optax.adam(schedule))


@functools.cache
def make_init_fn(model: models.MedianRegressor, set_size: int) -> Callable:
    """Returns ``fit``'s ``init_fn``: ``rng -> (params, {})``."""

    def init_fn(rng):
        params = model.init(rng, jnp.zeros((1, set_size, 1), jnp.float32))["params"]
        # Strip weak types (EquilibriumAggregation's `raw_regularizer` starts weakly typed): the first
        # optimiser update makes every leaf strongly typed, and a changed input type would compile
        # the train step a second time.
        return jax.tree.map(lambda p: p.astype(p.dtype), params), {}

    return init_fn


@functools.cache
def make_loss_fn(model: models.MedianRegressor, aux_weight: float) -> Callable:
    """Returns ``fit``'s loss: the MSE to the median, plus ``aux_weight`` x EA's eq. 5 loss.

    The metrics are ``mse`` and, for EA, ``aux_loss``, ``residual`` (mean final energy-gradient norm)
    and ``converged_fraction`` of the batch's inner solves.
    """

    def loss_fn(params, model_state, batch, rng):
        del rng  # The model is deterministic.
        pred, state = model.apply({"params": params}, batch["x"], mutable=[eqagg.DIAGNOSTICS])
        mse = jnp.mean(jnp.square(pred - batch["y"]))
        diag = models.diagnostics(state)
        loss = mse + aux_weight * diag["aux_loss"] if diag else mse
        return loss, ({"mse": mse, **diag}, model_state)

    return loss_fn


@functools.cache
def _jitted_forward(model: models.MedianRegressor) -> Callable:
    """``(params, x) -> (prediction, diagnostics)``, jitted once per model."""

    def forward(params, x):
        pred, state = model.apply({"params": params}, x, mutable=[eqagg.DIAGNOSTICS])
        return pred, models.diagnostics(state)

    return jax.jit(forward)


def make_eval_fn(
    model: models.MedianRegressor, data: Mapping[str, np.ndarray], batch_size: int
) -> Callable:
    """Returns ``eval_fn(params, model_state)``: MSE on the fixed evaluation sets.

    Metrics: ``mse`` (all sets), ``mse_<distribution>`` per distribution and, for EA, the mean
    ``residual`` and ``converged_fraction`` of the inner solves. The sets go through one jitted
    forward pass ``batch_size`` at a time (equal chunks, so the chunk means average exactly).
    """
    forward = _jitted_forward(model)
    chunks = [
        jnp.asarray(data["x"][i : i + batch_size]) for i in range(0, len(data["x"]), batch_size)
    ]

    def eval_fn(params, model_state) -> dict[str, float]:
        del model_state
        outputs = [forward(params, x) for x in chunks]
        pred = np.concatenate([np.asarray(p) for p, _ in outputs])
        err = np.square(pred.astype(np.float64) - data["y"])
        metrics = {"mse": float(err.mean())}
        for k, dist in enumerate(ip.DISTRIBUTIONS):
            metrics[f"mse_{dist.name}"] = float(err[data["kind"] == k].mean())
        for name in ("residual", "converged_fraction"):
            if name in outputs[0][1]:
                metrics[name] = float(np.mean([float(d[name]) for _, d in outputs]))
        return metrics

    return eval_fn


def training_seconds(history: Sequence[Mapping[str, Any]]) -> float:
    """Wall time of the training steps, from each logged window's ``steps_per_sec``.

    Includes compilation (inside the first window of each process), not evaluation or checkpoint
    saves; it survives resumes because ``metrics.jsonl`` does.
    """
    total, previous = 0.0, 0
    for record in history:
        if record["split"] == "train":
            if record.get("steps_per_sec"):
                total += (record["step"] - previous) / record["steps_per_sec"]
            previous = record["step"]
    return total


def train_run(
    config: Any,
    aggregator: str,
    embedding_size: int,
    eval_data: Mapping[str, np.ndarray],
    run_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Trains (or resumes) one model in ``run_dir``; writes and returns its ``result.json``.

    The result holds the final evaluation metrics, the parameter count, the training time and,
    for ``"ea_implicit"``, the fraction of this process's backward linear solves (one per training
    step) whose relative residual missed ``solvers.Implicit``'s default check, 1e-5.
    """
    run_dir = Path(run_dir)
    model = make_model(config, aggregator, embedding_size)
    init_fn = make_init_fn(model, config.set_size)

    def batch_fn(step: int) -> dict[str, np.ndarray]:
        return ip.train_batch(config.seed, step, config.batch_size, config.set_size)

    start = time.perf_counter()
    with warnings.catch_warnings(), solvers.record_backward_residuals() as backward:
        # Counted below instead of printed once per training step.
        warnings.simplefilter("ignore", solvers.ConvergenceWarning)
        result = fit(
            init_fn=init_fn,
            loss_fn=make_loss_fn(model, aux_weight(config, aggregator)),
            optimizer=make_optimizer(
                config.learning_rate, config.grad_clip_norm, config.num_train_steps
            ),
            batch_fn=batch_fn,
            eval_fn=make_eval_fn(model, eval_data, config.eval_batch_size),
            config=config,
            workdir=run_dir,
        )
        jax.effects_barrier()
    final = result.latest("eval") or {}
    summary = {
        "aggregator": aggregator,
        "embedding_size": embedding_size,
        "params": count_params(result.state.params),
        "steps": int(result.state.step),
        **{k: v for k, v in final.items() if k not in ("step", "split")},
        "train_seconds": training_seconds(read_metrics(run_dir)),
        "last_call_seconds": time.perf_counter() - start,
    }
    if aggregator == "ea_implicit" and backward.values:
        rtol = 10 * 1e-6  # solvers.Implicit's default check_rtol = 10 x linear_solver_tol.
        summary["backward_failed_fraction"] = float(np.mean(np.asarray(backward.values) > rtol))
    _atomic_write_json(run_dir / RESULT_FILE, summary)
    return summary


def _finished(path: Path, config: Any) -> dict[str, Any] | None:
    """The stored result of a run that reached ``num_train_steps``, else ``None``."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("steps") == config.num_train_steps else None


def _check_workdir_config(workdir: Path, config: Any) -> None:
    """Stores the config in ``workdir/config.json``; refuses a workdir made with other settings."""
    path = workdir / "config.json"
    current = config_dict(config)
    if path.is_file():
        stored = json.loads(path.read_text())
        changed = sorted(
            k
            for k in set(stored) | set(current)
            if k not in _LOOP_FIELDS and stored.get(k) != current.get(k)
        )
        if changed:
            raise ValueError(
                f"workdir {workdir} holds runs made with other settings ({', '.join(changed)}); "
                "use a new --workdir, or the settings of config.json there."
            )
    _atomic_write_json(path, current)


def train_and_evaluate(config: Any, workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Trains every (aggregator, embedding size) of ``config``; writes and prints the results.

    Args:
      config: a ``configs.default.Config`` (or any object with its fields).
      workdir: the output folder (see the module docstring for its layout).

    Returns:
      One result per run (see :func:`train_run`), in sweep order.

    Raises:
      ValueError: for an unknown aggregator, an embedding size attention cannot split into heads,
        or a workdir that holds runs made with other model or data settings.
    """
    check_config(config)
    start = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir_config(workdir, config)
    eval_data = ip.eval_set(config.seed, config.num_eval_sets, config.set_size)
    results = []
    for aggregator in config.aggregators:
        for size in config.embedding_sizes:
            run_dir = workdir / "runs" / f"{aggregator}_d{size}"
            result = _finished(run_dir / RESULT_FILE, config)
            if result is None:
                _log.info("Training %s, D=%d, in %s.", aggregator, size, run_dir)
                result = train_run(config, aggregator, size, eval_data, run_dir)
                _log.info(
                    "%s D=%d: eval MSE %.3g, %d params, %.0f s.",
                    aggregator,
                    size,
                    result.get("mse", math.nan),
                    result["params"],
                    result["train_seconds"],
                )
            else:
                _log.info("Skipping %s, D=%d: its run is finished.", aggregator, size)
            results.append(result)
    references = ip.label_baselines(eval_data)
    _atomic_write_json(workdir / RESULTS_JSON, {"runs": results, "references": references})
    text = results_markdown(results, references, config)
    (workdir / RESULTS_MD).write_text(text)
    plot_mse(results, references, workdir / FIGURE, title=f"{config.num_train_steps} steps")
    print(text)
    _log.info("Sweep done in %.0f s (this process).", time.perf_counter() - start)
    return results


LABELS = {
    "sum": "Sum (Deep Sets)",
    "attention": "Multi-head attention",
    "ea": "EA, unrolled",
    "ea_implicit": "EA, implicit",
}


def _cell(value: Any, fmt: str = "{:.3g}") -> str:
    return "" if value is None else fmt.format(value)


def results_markdown(
    results: Sequence[Mapping[str, Any]], references: Mapping[str, float], config: Any
) -> str:
    """The results as markdown: one row per run, a summary per aggregator, trivial predictors.

    ``converged`` and ``residual`` are the fraction of held-out sets whose inner solve reached
    ``||grad_y E|| <= tol`` and the mean ``||grad_y E||`` at the returned aggregate (EA only);
    ``backward failed`` is the fraction of training steps whose implicit backward solve missed its
    tolerance (``ea_implicit`` only).
    """
    rows = [
        {
            "aggregator": r["aggregator"],
            "D": r["embedding_size"],
            "params": r["params"],
            "eval MSE": _cell(r.get("mse")),
            **{
                f"MSE {d.name}": _cell(r.get(f"mse_{d.name}"))
                for d in ip.DISTRIBUTIONS  # Per distribution of the set.
            },
            "converged": _cell(r.get("converged_fraction"), "{:.2f}"),
            "residual": _cell(r.get("residual")),
            "backward failed": _cell(r.get("backward_failed_fraction"), "{:.2f}"),
            "train time (s)": _cell(r.get("train_seconds"), "{:.0f}"),
        }
        for r in results
    ]
    by_agg: dict[str, list[float]] = {}
    for r in results:
        if r.get("mse") is not None:
            by_agg.setdefault(r["aggregator"], []).append(r["mse"])
    geo = {a: float(np.exp(np.mean(np.log(v)))) for a, v in by_agg.items()}
    ref = geo.get("ea")
    summary = [
        {
            "aggregator": a,
            "geometric mean MSE over D": _cell(g),
            "best MSE": _cell(min(by_agg[a])),
            "/ EA unrolled": _cell(g / ref, "{:.2f}") if ref else "",
        }
        for a, g in geo.items()
    ]
    trivial = [
        {"predictor": "mean label (ignores the set)", "eval MSE": _cell(references["constant"])},
        {"predictor": "mean of the set", "eval MSE": _cell(references["sample_mean"])},
        {
            "predictor": "population median of the set's distribution",
            "eval MSE": _cell(references["population_median"]),
        },
    ]
    return (
        f"### Median estimation: eval MSE after {config.num_train_steps} steps "
        f"(batch {config.batch_size}, {config.num_eval_sets} held-out sets)\n\n"
        + markdown_table(rows)
        + "\n"
        + markdown_table(summary)
        + "\nTrivial predictors on the same sets:\n\n"
        + markdown_table(trivial)
    )


def plot_mse(
    results: Sequence[Mapping[str, Any]],
    references: Mapping[str, float],
    path: str | os.PathLike,
    *,
    title: str = "",
) -> Path:
    """Plots eval MSE against embedding size per aggregator (log-log), like the paper's Figure 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = sorted({r["embedding_size"] for r in results})
    for aggregator in dict.fromkeys(r["aggregator"] for r in results):
        points = sorted(
            (r["embedding_size"], r["mse"])
            for r in results
            if r["aggregator"] == aggregator and r.get("mse") is not None
        )
        if points:
            x, y = zip(*points, strict=True)
            ax.plot(x, y, marker="o", label=LABELS.get(aggregator, aggregator))
    ax.axhline(references["sample_mean"], color="gray", ls="--", lw=1, label="mean of the set")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("embedding size D")
    ax.set_ylabel("eval MSE")
    ax.set_title(f"Median estimation{': ' + title if title else ''}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _atomic_write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)
