"""Omniglot counting example: the set model, its loss, and the training entry point.

Everything runs on the synthetic characters of ``fake_data.py`` with tiny widths; the end-to-end run
of ``configs/test.py`` is marked slow (it compiles three models).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqagg
from examples.common import TIMING_KEYS, read_metrics
from examples.omniglot_counting import input_pipeline as ip
from examples.omniglot_counting import main, models, train
from examples.omniglot_counting.configs import test as test_config

AGGREGATORS = models.AGGREGATORS
SET_SIZE = 16


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Nothing is written to ~/.cache (the fake data is never cached anyway)."""
    monkeypatch.setenv("EQAGG_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def config():
    return test_config.get_config()


@pytest.fixture(scope="module")
def data(config):
    return train.load_data(config)


def _model(config, aggregator):
    return train.make_model(config, aggregator)


def _shuffle_within_sets(images, seed):
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(SET_SIZE) for _ in range(len(images))])
    return np.take_along_axis(images, perms[:, :, None, None, None], axis=1)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_model_shapes_permutation_invariance_and_independent_sets(config, data, aggregator):
    """One compile per aggregator: init and two forward passes on batches of 8 sets in one jit."""
    model = _model(config, aggregator)
    sets = data.eval_sets["test"]["images"][:4]
    others = data.eval_sets["train"]["images"][:8]

    @jax.jit
    def run(key, batch, other_batch):
        params = train.init_params(model, key, batch[:1])
        apply = lambda x: model.apply({"params": params}, x)
        return apply(batch), apply(other_batch)

    batch = np.concatenate([sets, _shuffle_within_sets(sets, 0)])
    logits, alone = map(
        np.asarray, run(jax.random.key(1), batch, np.concatenate([sets[:1], others[1:]]))
    )
    assert logits.shape == (8, config.max_count)
    assert np.isfinite(logits).all()
    # Permuting the images of a set: float32 sums in another order differ by a few ulps of ~1.
    np.testing.assert_allclose(logits[4:], logits[:4], atol=1e-5)
    # A set's logits do not depend on the other sets of the batch (GroupNorm, not BatchNorm).
    np.testing.assert_allclose(alone[0], logits[0], atol=1e-5)
    # Only EA has a "diagnostics" collection (the auxiliary loss of eq. 5); nothing else is state.
    collections = set(jax.eval_shape(model.init, jax.random.key(0), sets[:1]))
    assert collections == ({"params", eqagg.DIAGNOSTICS} if aggregator == "ea" else {"params"})


def test_unknown_aggregator_is_named(config, data):
    with pytest.raises(ValueError, match="'max'.*choose one of"):
        _model(config, "max").init(jax.random.key(0), data.eval_sets["test"]["images"][:1])


def test_short_training_lowers_the_loss_and_compiles_once(config, data):
    """Twenty Adam steps of EA on one fixed batch of the fixture lower the loss; one compile.

    The loss is the cross-entropy plus ``aux_weight`` times EA's auxiliary loss (eq. 5).
    """
    model = _model(config, "ea")
    sets = train._counting_sets(config, data.train_images, batch_size=8, seed=0)
    batch = jax.tree.map(jnp.asarray, sets.batch(0))
    params = train.init_params(model, jax.random.key(0), batch["images"][:1])
    optimizer = optax.adam(3e-3)
    aux_weight = 0.5  # Large, so that a dropped auxiliary term shows in the check below.
    loss_fn = train.make_loss_fn(model, aux_weight)

    @jax.jit
    def step(params, opt_state):
        (loss, (metrics, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, {}, batch, None
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics

    opt_state = optimizer.init(params)
    losses = []
    for _ in range(20):
        params, opt_state, loss, metrics = step(params, opt_state)
        losses.append(float(loss))
        assert metrics["aux_loss"] > 0
        # The same float32 terms, added in the same order.
        np.testing.assert_allclose(
            loss, metrics["cross_entropy"] + aux_weight * metrics["aux_loss"], rtol=1e-6
        )
    assert step._cache_size() == 1
    assert np.isfinite(losses).all()
    # From ~log(10) + aux these 20 steps take off well over 0.1 (a tiny model fits 8 sets slowly,
    # and the auxiliary term falls fast); fails if gradients do not reach the model.
    assert np.mean(losses[-5:]) < losses[0] - 0.1, losses


def test_fixed_evaluation_sets_are_seeded(config):
    first, second = train.load_data(config), train.load_data(config)
    for split in ("train", "test"):
        np.testing.assert_array_equal(
            first.eval_sets[split]["images"], second.eval_sets[split]["images"]
        )
        assert len(first.eval_sets[split]["count"]) == config.num_eval_sets
    # Test sets come from the other (evaluation) characters.
    assert not np.array_equal(first.eval_sets["train"]["images"], first.eval_sets["test"]["images"])


def test_training_seconds_adds_the_logged_windows():
    history = [
        {"step": 10, "split": "train", "steps_per_sec": 2.0},
        {"step": 10, "split": "eval", "test_accuracy": 0.5},
        {"step": 30, "split": "train", "steps_per_sec": 4.0},
    ]
    assert train.training_seconds(history) == pytest.approx(10 / 2 + 20 / 4)


def test_main_rejects_unknown_aggregators(tmp_path):
    with pytest.raises(ValueError, match="config.aggregators"):
        main.main(["--workdir", str(tmp_path), "--config", "test", "--aggregators", "sum,mean"])


@pytest.mark.slow
def test_test_config_end_to_end_and_skips_finished_runs(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    main.main(["--workdir", str(workdir), "--config", "test"])
    results = (workdir / "results.md").read_text()
    for aggregator in AGGREGATORS:
        assert f"| {aggregator} |" in results
        summary = json.loads((workdir / aggregator / train.SUMMARY_FILE).read_text())
        assert summary["steps"] == test_config.get_config().num_train_steps
        assert 0.0 <= summary["test_accuracy"] <= 1.0
    for figure in ("accuracy.png", "examples.png"):
        assert (workdir / figure).stat().st_size > 1000

    # A restart trains nothing: every aggregator's run is finished.
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train, "train_aggregator", fail)
    again = train.train_and_evaluate(test_config.get_config(), workdir)
    assert [s["aggregator"] for s in again] == list(AGGREGATORS)


class _Killed(Exception):
    """Stands in for the job being killed."""


@pytest.mark.slow
def test_killed_job_resumes_and_skips_finished_aggregators(tmp_path, monkeypatch):
    """Killed during the second aggregator: a restart skips the first and resumes the second.

    The resumed run ends with the same metrics as a run never interrupted.
    """
    config = dataclasses.replace(test_config.get_config(), aggregators=("sum", "attention"))
    killed = tmp_path / "killed"
    original_batch = ip.CountingSets.batch

    def batch_or_kill(self, step):
        # Training step 3 of the second aggregator, after its checkpoint at step 2.
        if step == 3 and (killed / "sum" / train.SUMMARY_FILE).exists():
            raise _Killed()
        return original_batch(self, step)

    monkeypatch.setattr(ip.CountingSets, "batch", batch_or_kill)
    with pytest.raises(_Killed):
        train.train_and_evaluate(config, killed)
    sum_summary = (killed / "sum" / train.SUMMARY_FILE).read_text()
    assert not (killed / "attention" / train.SUMMARY_FILE).exists()
    monkeypatch.setattr(ip.CountingSets, "batch", original_batch)

    trained = []
    original_train_aggregator = train.train_aggregator

    def record(config, aggregator, *args, **kwargs):
        trained.append(aggregator)
        return original_train_aggregator(config, aggregator, *args, **kwargs)

    monkeypatch.setattr(train, "train_aggregator", record)
    train.train_and_evaluate(config, killed)
    assert trained == ["attention"]
    assert (killed / "sum" / train.SUMMARY_FILE).read_text() == sum_summary

    uninterrupted = tmp_path / "uninterrupted"
    train.train_and_evaluate(dataclasses.replace(config, aggregators=("attention",)), uninterrupted)

    def records(workdir):
        return [
            {k: v for k, v in r.items() if k not in TIMING_KEYS}
            for r in read_metrics(workdir / "attention")
        ]

    assert records(killed) == records(uninterrupted)
