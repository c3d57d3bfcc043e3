"""Tests of the shared training plumbing in ``examples/common`` on a tiny regression task.

The expensive parts (compiling the toy model's init and train step, one uninterrupted reference run)
happen once per module: ``fit`` caches its jitted functions by the identity of ``init_fn``,
``loss_fn``, the optimizer and the mesh, which the toy module defines once.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import common_training_toy as toy
import jax
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from examples.common import (
    TIMING_KEYS,
    FitResult,
    TrainConfig,
    check_batch,
    count_params,
    fit,
    markdown_table,
    read_metrics,
)

# Checkpoint 3 and 6 fall inside log windows (4 steps), so resuming from 6 must restore the running
# sums of the metrics; evaluation at 5 and 10 and at the end (12).
CONFIG = TrainConfig(
    num_train_steps=12, log_every=4, eval_every=5, checkpoint_every=3, seed=3, progress_bar=False
)
KILL_AT = 8  # batch_fn(8) raises: steps 1..8 are done, step 8 is logged, the last checkpoint is 6.


class SimulatedKill(Exception):
    """Stands in for the process dying in the middle of a run."""


def run(workdir: Path, batch_fn=toy.batch_fn, config: TrainConfig = CONFIG) -> FitResult:
    return fit(
        init_fn=toy.init_fn,
        loss_fn=toy.loss_fn,
        optimizer=toy.OPTIMIZER,
        batch_fn=batch_fn,
        eval_fn=toy.eval_fn,
        config=config,
        workdir=workdir,
    )


def killed_at(step: int):
    def batch_fn(t: int):
        if t == step:
            raise SimulatedKill(f"killed before step {t}")
        return toy.batch_fn(t)

    return batch_fn


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def leaves(state) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, FitResult]:
    """One uninterrupted run of CONFIG."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return workdir, run(workdir)


def test_training_lowers_the_loss(reference):
    _, result = reference
    initial = toy.eval_fn(*toy.init_fn(jax.random.key(CONFIG.seed)))["mse"]
    final = result.latest("eval")["mse"]
    # The target y = x @ W has variance sum(W**2) = 1.875; 12 Adam steps must reach well below.
    assert final < 0.5 * float(initial), (float(initial), final)
    train = [r["loss"] for r in result.history if r["split"] == "train"]
    assert train[-1] < train[0]


def test_killed_and_resumed_run_equals_uninterrupted_run(reference, tmp_path):
    ref_dir, ref = reference
    with pytest.raises(SimulatedKill):
        run(tmp_path, batch_fn=killed_at(KILL_AT))
    # The kill left a metrics record after the last checkpoint; the resumed run must replace it.
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [3, 6]
    assert read_metrics(tmp_path)[-1]["step"] == KILL_AT

    resumed = run(tmp_path)

    for got, want in zip(leaves(resumed.state), leaves(ref.state), strict=True):
        np.testing.assert_array_equal(got, want)  # Same computation on the same data: bit-exact.
    assert without_timing(read_metrics(tmp_path)) == without_timing(read_metrics(ref_dir))
    assert without_timing(resumed.history) == without_timing(ref.history)


def test_rerunning_a_finished_run_changes_nothing(reference):
    workdir, ref = reference
    before = (workdir / "metrics.jsonl").read_text()
    again = run(workdir)
    for got, want in zip(leaves(again.state), leaves(ref.state), strict=True):
        np.testing.assert_array_equal(got, want)
    assert (workdir / "metrics.jsonl").read_text() == before


def test_metrics_file_has_one_record_per_logged_step(reference):
    workdir, result = reference
    records = read_metrics(workdir)
    assert [(r["step"], r["split"]) for r in records] == [
        (4, "train"), (5, "eval"), (8, "train"), (10, "eval"), (12, "train"), (12, "eval"),
    ]  # fmt: skip
    for r in records:
        expected = {"loss", "mae", "steps_per_sec"} if r["split"] == "train" else {"mse"}
        assert set(r) == {"step", "split"} | expected
    assert all(r["steps_per_sec"] > 0 for r in records if r["split"] == "train")
    assert records == list(result.history)


def test_tensorboard_events_hold_the_logged_scalars(reference):
    workdir, _ = reference
    (event_file,) = (workdir / "tb").glob("events.out.tfevents.*")
    scalars = {}
    for event in read_events(event_file):
        for value in event.summary.value:
            scalars[(value.tag, event.step)] = value.simple_value
    expected = {(f"{r['split']}/{k}", r["step"]): v for r in read_metrics(workdir)
                for k, v in r.items() if k not in ("step", "split")}  # fmt: skip
    assert scalars.keys() == expected.keys()
    # TensorBoard stores float32; the JSON file has the same numbers as float64.
    np.testing.assert_allclose(list(scalars.values()), list(expected.values()), rtol=1e-6)


def read_events(path: Path):
    """Parses a TFRecord file of ``Event`` protos (8-byte length, 4-byte CRC, data, 4-byte CRC)."""
    data, offset = path.read_bytes(), 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        yield event


def test_two_device_data_parallel_step_equals_single_device_step():
    script = Path(__file__).with_name("common_training_two_devices.py")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["num_devices"] == 2
    assert out["shard_rows"] == [toy.BATCH_SIZE // 2] * 2  # The batch really is split.
    for sharded, single in zip(out["sharded"], out["single"], strict=True):
        # The sharded gradient is a sum of per-device partial sums (another float32 summation
        # order), so values agree to a few ulps (~1e-7 relative) on O(1) numbers, not bit-exactly.
        np.testing.assert_allclose(sharded, single, rtol=1e-6, atol=1e-6)
    assert "batch size 5" in out["odd_batch_error"]
    assert "batch_size to a multiple of 2" in out["odd_batch_error"]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"x": np.zeros((5, 3)), "y": np.zeros(5)}, "batch size 5 .* not divisible by the 2"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(6)}, "disagree on the leading"),
        ({"x": np.zeros((4, 3)), "w": np.float32(1)}, "'w'.* is a scalar"),
    ],
)
def test_bad_batches_are_rejected_with_a_fix(batch, message):
    with pytest.raises(ValueError, match=message):
        check_batch(batch, num_devices=2)


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="config.log_every must be >= 1"):
        TrainConfig(num_train_steps=10, log_every=0)
    with pytest.raises(ValueError, match="no 'num_train_steps'"):
        TrainConfig.from_config({"learning_rate": 0.1})


def test_count_params_of_the_toy_mlp():
    params, _ = toy.init_fn(jax.random.key(0))
    width, d = 8, toy.NUM_FEATURES
    # Dense(d -> width, no bias) + BatchNorm scale and bias + Dense(width -> 1) with bias.
    assert count_params(params) == d * width + 2 * width + width + 1


def test_markdown_table():
    rows = [{"model": "eqagg", "mae": 0.123456}, {"model": "sum|pool", "time_s": 3}]
    assert markdown_table(rows) == (
        "| model | mae | time_s |\n"
        "| --- | --- | --- |\n"
        "| eqagg | 0.1235 |  |\n"
        "| sum\\|pool |  | 3 |\n"
    )


@pytest.mark.parametrize("module", ["config", "parameters", "sharding", "tables", "train_state"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"examples.common.{module}"))
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.slow
def test_sigkilled_process_resumes_to_the_uninterrupted_result(tmp_path):
    """Kills real training processes (SIGKILL, no clean-up) at several moments, then resumes.

    Unlike the simulated kill above, the resumed run recompiles in a fresh process and may find a
    checkpoint or a metrics line half-written.
    """
    config = dataclasses.replace(CONFIG, num_train_steps=40, log_every=3, checkpoint_every=2)
    script = Path(__file__).with_name("common_training_killable.py")
    args = [sys.executable, str(script), str(tmp_path / "killed"), json.dumps(vars(config))]
    for delay in (0.05, 0.37, 0.61):  # Seconds after the first metrics line: spread over the run.
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first_record = len(read_metrics(tmp_path / "killed")) + 1
        while len(read_metrics(tmp_path / "killed")) < first_record and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(delay)
        proc.kill()
        proc.wait()
    ref = run(tmp_path / "reference", config=config)
    resumed = run(tmp_path / "killed", config=config)
    for got, want in zip(leaves(resumed.state), leaves(ref.state), strict=True):
        np.testing.assert_array_equal(got, want)
    assert without_timing(resumed.history) == without_timing(ref.history)
