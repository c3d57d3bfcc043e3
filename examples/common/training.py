"""The training loop shared by every example: ``fit`` = jit + data parallel + logs + checkpoints.

A run is a pure function of ``(config.seed, step)``: the RNG of step ``t`` is
``jax.random.fold_in(key, t)`` and its batch is ``batch_fn(t)``. Together with checkpoints that hold
everything that changes (:class:`TrainState` and the running sums of the metrics being averaged), a
run killed at any moment and restarted with the same arguments ends with bit-identical parameters
and the same ``metrics.jsonl`` as a run never interrupted.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

import eqagg

from .checkpointing import Checkpointer
from .config import TrainConfig
from .metrics import MetricsWriter, read_metrics
from .progress import progress_bar, show_metrics
from .sharding import batch_sharding, make_data_mesh, replicate, replicated_sharding, shard_batch
from .train_state import TrainState

PyTree = Any
Metrics = dict[str, jax.Array]
InitFn = Callable[[jax.Array], tuple[PyTree, PyTree]]
LossFn = Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[jax.Array, tuple[Metrics, PyTree]]]
BatchFn = Callable[[int], PyTree]
EvalFn = Callable[[PyTree, PyTree], Mapping[str, Any]]
TrainStep = Callable[[TrainState, Metrics, PyTree, jax.Array], tuple[TrainState, Metrics]]


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      state: the final train state (replicated over the mesh).
      history: every record of ``metrics.jsonl``, including those logged before a resume.
    """

    state: TrainState
    history: tuple[dict[str, Any], ...]

    def latest(self, split: str) -> dict[str, Any] | None:
        """Returns the last logged record of ``split`` (e.g. ``"eval"``), or ``None``."""
        return next((r for r in reversed(self.history) if r["split"] == split), None)


def make_train_step(
    loss_fn: LossFn, optimizer: optax.GradientTransformation, mesh: Mesh
) -> TrainStep:
    """Returns the jitted step ``(state, metric_sums, batch, key) -> (state, metric_sums)``.

    The step draws ``rng = fold_in(key, state.step)``, differentiates ``loss_fn``, applies the
    optimiser and adds this step's metrics (``loss`` and those returned by ``loss_fn``) to
    ``metric_sums``. State, sums and key are replicated over ``mesh``; the batch is split along its
    leading axis, so the mean over the batch inside ``loss_fn`` becomes a cross-device reduction.

    Args:
      loss_fn: ``(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))`` with
        scalar ``loss`` and a dict of scalar ``metrics``.
      optimizer: the optax transformation.
      mesh: a 1-D data mesh (:func:`~examples.common.sharding.make_data_mesh`).
    """

    def step(state: TrainState, sums: Metrics, batch: PyTree, key: jax.Array):
        rng = jax.random.fold_in(key, state.step)
        grad_fn = jax.value_and_grad(_loss_and_metrics(loss_fn), has_aux=True)
        (_, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            model_state=model_state,
            opt_state=opt_state,
        )
        return state, jax.tree.map(jnp.add, sums, metrics)

    replicated = replicated_sharding(mesh)
    return jax.jit(
        step,
        in_shardings=(replicated, replicated, batch_sharding(mesh), replicated),
        out_shardings=(replicated, replicated),
        compiler_options=eqagg.cpu_compiler_options(),
        # No buffer donation: the state just handed to an asynchronous checkpoint save must stay
        # alive, and these examples are small. Donating argument 0 would halve state memory.
    )


def fit(
    *,
    init_fn: InitFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_fn: BatchFn,
    config: TrainConfig | Mapping[str, Any] | Any,
    workdir: str | os.PathLike,
    eval_fn: EvalFn | None = None,
    mesh: Mesh | None = None,
) -> FitResult:
    """Trains, logging, evaluating and checkpointing; resumes from ``workdir`` if it has a checkpoint.

    Each step ``t`` (0-based) trains on ``batch_fn(t)`` with RNG ``fold_in(train_key, t)``. After
    step ``t`` the state's step is ``n = t + 1``, and when ``n`` is a multiple of
    ``config.log_every`` / ``eval_every`` / ``checkpoint_every`` (or ``n = num_train_steps``) the mean
    training metrics since the last log are written, ``eval_fn`` is called, and a checkpoint is saved,
    in that order.

    Multi-host: call ``jax.distributed.initialize()`` first; every process calls ``fit`` with the same
    arguments and its ``batch_fn`` returns that process's part of the global batch (see
    :mod:`examples.common.sharding`); only process 0 writes metrics.

    Args:
      init_fn: ``rng -> (params, model_state)``; ``model_state`` is e.g. flax ``batch_stats`` or
        ``{}``.
      loss_fn: ``(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))``, with a
        scalar ``loss`` and a dict of scalar ``metrics`` (the mean over the batch).
      optimizer: an optax transformation.
      batch_fn: ``step -> batch``, a pytree of arrays whose leading axis is the batch. Must be a
        deterministic function of the step (and the seed), so that a resumed run sees the same data.
      config: a :class:`TrainConfig`, or any config with its fields (see
        :meth:`TrainConfig.from_config`).
      workdir: where ``metrics.jsonl``, ``tb/`` and ``checkpoints/`` go.
      eval_fn: optional ``(params, model_state) -> dict of scalars``, logged as split ``"eval"``.
      mesh: the data mesh; defaults to all devices. Its size must divide the batch size.

    Returns:
      The final state and the metrics history.

    Raises:
      ValueError: if the batch size is not a multiple of the number of devices, or the config or
        metrics are malformed (the message names the argument).
    """
    config = TrainConfig.from_config(config)
    mesh = make_data_mesh() if mesh is None else mesh
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    with Checkpointer(workdir, max_to_keep=config.max_checkpoints_to_keep) as ckpt:
        start = ckpt.latest_step() or 0
        init = _jitted_init(init_fn, optimizer, mesh)
        if start >= config.num_train_steps:  # Nothing left to train, e.g. a finished job rerun.
            state = _restore(ckpt, start, init, init_key, {})[0] if start else init(init_key)
            return FitResult(state=state, history=tuple(read_metrics(workdir)))
        batch = shard_batch(batch_fn(start), mesh)  # Before compiling: a bad batch fails fast.
        zero_sums = _zero_metric_sums(loss_fn, jax.eval_shape(init, init_key), batch, mesh)
        if start:
            state, sums = _restore(ckpt, start, init, init_key, zero_sums)
        else:
            state, sums = init(init_key), zero_sums
        with MetricsWriter(workdir, resume_step=start) as writer:
            run = _Run(
                config=config,
                mesh=mesh,
                key=replicate(train_key, mesh),
                zero_sums=zero_sums,
                train_step=_cached_train_step(loss_fn, optimizer, mesh),
                batch_fn=batch_fn,
                eval_fn=eval_fn,
                writer=writer,
                ckpt=ckpt,
            )
            state = _loop(run, state, sums, batch, start)
            return FitResult(state=state, history=tuple(writer.history))


def _restore(
    ckpt: Checkpointer, step: int, init: Callable, init_key: jax.Array, zero_sums: Metrics
) -> tuple[TrainState, Metrics]:
    """Restores the state (shaped and sharded like ``init``'s output) and metric sums of ``step``."""
    targets = {"state": jax.eval_shape(init, init_key)}
    if zero_sums:
        targets["metric_sums"] = zero_sums
    restored = ckpt.restore(step, targets)
    return restored["state"], restored.get("metric_sums", {})


_cached_train_step = functools.lru_cache(maxsize=8)(make_train_step)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What stays fixed during the loop of one :func:`fit` call."""

    config: TrainConfig
    mesh: Mesh
    key: jax.Array
    zero_sums: Metrics
    train_step: TrainStep
    batch_fn: BatchFn
    eval_fn: EvalFn | None
    writer: MetricsWriter
    ckpt: Checkpointer


def _loop(run: _Run, state: TrainState, sums: Metrics, batch: PyTree, start: int) -> TrainState:
    """Runs steps ``start .. num_train_steps - 1``; see :func:`fit` for what happens when."""
    config, total = run.config, run.config.num_train_steps
    bar = progress_bar(total, start, enabled=config.progress_bar and jax.process_index() == 0)
    last_time, last_step = time.perf_counter(), start
    try:
        for t in range(start, total):
            batch = batch if t == start else shard_batch(run.batch_fn(t), run.mesh)
            state, sums = run.train_step(state, sums, batch, run.key)
            n = t + 1
            bar.update(1)
            if n % config.log_every == 0 or n == total:
                metrics = _window_mean(sums, n, config.log_every)
                rate = (n - last_step) / (time.perf_counter() - last_time)
                run.writer.write(n, "train", metrics, steps_per_sec=rate)
                show_metrics(bar, metrics, rate)
                sums, last_time, last_step = run.zero_sums, time.perf_counter(), n
            if run.eval_fn is not None and (n % config.eval_every == 0 or n == total):
                run.writer.write(n, "eval", dict(run.eval_fn(state.params, state.model_state)))
            if n % config.checkpoint_every == 0 or n == total:
                run.writer.flush()
                run.ckpt.save(n, {"state": state, "metric_sums": sums})
    finally:
        bar.close()
    return state


@functools.lru_cache(maxsize=8)
def _jitted_init(init_fn: InitFn, optimizer: optax.GradientTransformation, mesh: Mesh):
    """Returns ``key -> TrainState`` at step 0, jitted (one compile instead of one per op).

    Cached so that calling :func:`fit` again in one process (resume, tests) does not recompile.
    """

    def init(key: jax.Array) -> TrainState:
        params, model_state = init_fn(key)
        return TrainState.create(params, model_state, optimizer)

    return jax.jit(init, out_shardings=replicated_sharding(mesh))


def _loss_and_metrics(loss_fn: LossFn) -> LossFn:
    """Wraps ``loss_fn`` so that its metrics include ``loss`` and are float32 scalars."""

    def wrapped(params, model_state, batch, rng):
        loss, (metrics, new_model_state) = loss_fn(params, model_state, batch, rng)
        metrics = {**metrics, "loss": loss}
        for name, value in metrics.items():
            if jnp.shape(value) != ():
                raise ValueError(
                    f"loss_fn returned metric {name!r} of shape {jnp.shape(value)}; metrics and the "
                    "loss must be scalars (take the mean over the batch)."
                )
        return loss, ({k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}, new_model_state)

    return wrapped


def _zero_metric_sums(loss_fn: LossFn, state: TrainState, batch: PyTree, mesh: Mesh) -> Metrics:
    """Returns ``{name: 0.0}`` for each metric of ``loss_fn`` (found by tracing, not running, it)."""
    key = jax.random.key(0)  # Only its shape matters here.
    _, (metrics, _) = jax.eval_shape(
        _loss_and_metrics(loss_fn), state.params, state.model_state, batch, key
    )
    return replicate({name: jnp.zeros((), jnp.float32) for name in metrics}, mesh)


def _window_mean(sums: Metrics, n: int, log_every: int) -> dict[str, float]:
    """Means over the steps since the previous multiple of ``log_every`` (the current log window)."""
    count = n - ((n - 1) // log_every) * log_every
    return {name: float(value) / count for name, value in jax.device_get(sums).items()}
